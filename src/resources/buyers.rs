//! Buyers: companies buying leads. `balance_cents` changes only with a ledger entry
//! (`store::admin::books`), never through a body.

use super::prelude::*;
use crate::api::admin::config::contracts::CapsList;

super::resource! {
    /// A company buying leads. `balance` changes only through the ledger (funds and sales).
    view Buyer, row BuyerRow, table Buyers = "buyers", values BuyerValues;
    fields {
        name: String = Name,
        status: Status = State,
        /// How far below zero the balance may go.
        credit_limit as credit_limit_cents: Money = Cents,
        #[schema(read_only)]
        read_only balance as balance_cents: Money = Cents,
        /// Caps over all the buyer's contracts, shaped like a contract's `caps`
        /// (`max_spend` a decimal amount).
        #[schema(value_type = Vec<Object>)]
        caps: Value = CapsList,
    }
}
