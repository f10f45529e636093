//! Suppression lists: consumers who must not be sold (docs/suppression.md). Their entries are
//! added and removed through their own routes (`api::admin::config::suppression_lists`).

use super::prelude::*;

super::resource! {
    /// A list of consumers (SHA-256 of the normalized email or phone) who must not be sold:
    /// attached to offers (`suppression_list_ids`: every contract of the offer) or to
    /// contracts. Only an `active` list suppresses.
    view SuppressionList, row SuppressionListRow, table SuppressionLists = "suppression_lists",
        values SuppressionListValues;
    fields {
        name: String = Name,
        status: Status = State,
        description: Option<String> = Text,
        /// How many consumers' hashes the list holds.
        #[schema(read_only)]
        read_only entry_count as entry_count: i64 = Count,
    }
}
