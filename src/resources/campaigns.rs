//! Campaigns: a partner selling into one offer, with its posting key.

use super::prelude::*;
use crate::api::admin::config::campaigns::Payout;

super::resource! {
    /// A partner selling into one offer (SPEC §4.3).
    view Campaign, row CampaignRow, table Campaigns = "campaigns", values CampaignValues;
    fields {
        partner_id: Uuid = IdOf<Partners>,
        offer_id: Uuid = IdOf<Offers>,
        status: Status = State,
        /// `{"type":"revshare","percent":70}`, `{"type":"margin","amount":3.00}` or
        /// `{"type":"fixed","amount":8.00}`.
        #[schema(value_type = Object)]
        payout: PayoutRule = row Payout => [payout_type, payout_percent, payout_amount_cents],
        // The payout rule's columns; the percent is read in basis points by Postgres itself:
        // exact, no float (`CampaignRow::payout`).
        column payout_type: String,
        column payout_percent_bp: Option<i32> = "(payout_percent * 100)::int",
        column payout_amount_cents: Option<i64>,
        min_payout as min_payout_cents: Money = Cents,
        ping_rate_per_second: Option<i32> = OptionalInt<1, { i32::MAX as i64 }>,
        created posting_key_hash: Vec<u8>,
    }
}
