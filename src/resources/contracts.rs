//! Contracts: a buyer buying on one offer. Archived contracts take no part in auctions, so
//! the snapshot leaves them out.

use super::prelude::*;
use crate::api::admin::config::contracts::{
    CapsList, DeliverySection, NoticeUrl, PricingSection, ReturnsSection, endpoint_health_unknown,
    stored_secrets,
};
use crate::buyers::breaker::EndpointHealth;

super::resource! {
    /// A buyer buying on one offer (SPEC §4.5). Amounts in `pricing` (`exclusive`, `shared`,
    /// `max_bid`) and caps (`max_spend`) are decimal numbers.
    view Contract, row ContractRow, table Contracts = "contracts", values ContractValues,
        loads "status <> 'archived'";
    fields {
        buyer_id: Uuid = IdOf<Buyers>,
        // Must be the tenant's offer, with a schema the filters fit (`Resource::check`).
        offer_id: Uuid = Id,
        name: String = Name,
        status: Status = State,
        priority: i32 = Int<{ i32::MIN as i64 }, { i32::MAX as i64 }, 0>,
        #[schema(value_type = Object)]
        pricing: Value = PricingSection,
        #[schema(value_type = Vec<Object>)]
        filters: Value = List,
        #[schema(value_type = Option<Object>)]
        schedule: Option<Value> = OptionalJson,
        #[schema(value_type = Vec<Object>)]
        caps: Value = CapsList,
        dedup_days: i32 = Int<0, 365, 0>,
        /// Header values are write-only: shown masked (`super::headers`).
        #[schema(value_type = Object)]
        delivery: Value = DeliverySection,
        /// The stored `pricing` and `delivery`, secrets unmasked, for a PATCH that sends masked
        /// values back; never shown.
        #[serde(skip)]
        hidden stored_secrets: [Value; 2] = stored_secrets,
        /// The `weighted` strategy's weight, 0–1000 (0: only when no other contract of its
        /// tier bids).
        weight: i32 = Int<0, 1000, 100>,
        /// A URL template Gavel sends `GET` to when a sale of the contract completes `sold`.
        win_url: Option<String> = NoticeUrl,
        /// A URL template Gavel sends `GET` to when the contract's bid loses.
        loss_url: Option<String> = NoticeUrl,
        /// Returns of the contract's sales (docs/returns.md): `{"allowed", "window_days",
        /// "max_percent", "period", "auto_approve", "reasons"}`; a PATCH may send part of it.
        #[schema(value_type = Object)]
        returns: Value = ReturnsSection,
        /// The tenant's suppression lists this contract is checked against, besides its
        /// offer's (docs/suppression.md), at most 20.
        suppression_list_ids: Vec<Uuid> = IdList,
        /// This process's view of the breakers of the contract's RTB and delivery endpoints
        /// (docs/revenue-recovery.md §5); `rtb` is null for a fixed-price contract.
        #[schema(read_only)]
        hidden endpoint_health: Option<EndpointHealth> = endpoint_health_unknown,
    }
}
