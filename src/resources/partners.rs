//! Partners: lead sources.

use super::prelude::*;

super::resource! {
    /// A lead source. `balance` (what the exchange owes it) changes only through its ledger
    /// (sales, returns, payments, adjustments).
    view Partner, row PartnerRow, table Partners = "partners", values PartnerValues;
    fields {
        name: String = Name,
        status: Status = State,
        #[schema(read_only)]
        read_only balance as balance_cents: Money = Cents,
    }
}
