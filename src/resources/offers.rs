//! Offers: lead types, each with its field schema and distribution mode.

use super::prelude::*;
use crate::api::admin::config::offers::{
    CascadeField, ConsentKeys, DistributionField, ModeField, ReturnPolicyField, StrategyField,
    VerificationSteps, stored_verification,
};
use crate::auction::{CascadeRules, Distribution, Strategy};

super::resource! {
    /// A lead type: its field schema and its distribution mode (SPEC §4.2).
    view Offer, row OfferRow, table Offers = "offers", values OfferValues;
    fields {
        name: String = Name,
        status: Status = State,
        mode: Mode = ModeField,
        max_buyers: i32 = Int<1, 100, 3>,
        exclusive_floor as exclusive_floor_cents: Money = Cents,
        ping_ttl_seconds: i32 = Int<1, 86_400, 300>,
        dedup_days: i32 = Int<0, 365, 0>,
        require_consent: Vec<String> = ConsentKeys,
        /// `[{"name","type","pattern","enum","min","max","pii","required","validation"}]`
        /// (`validation`: opt-in lead rules, docs/validation.md).
        #[schema(value_type = Vec<Object>)]
        fields: Value = List,
        /// The deadline of the offer's pings when a ping sends no `max_wait_ms` (10–60000 ms;
        /// `null`: none): every RTB call is cut at the time left (docs/revenue-recovery.md).
        max_wait_ms: Option<i32> = OptionalInt<10, 60_000>,
        /// `auction` (the default) or `waterfall` (tier by tier; exclusive or multisell only).
        distribution: Distribution = DistributionField,
        /// `price` (the default), `round_robin` or `weighted`.
        strategy: Strategy = StrategyField,
        /// The cascade at post: a failed winner's slot is offered to the ping's runner-ups,
        /// at most `max_attempts` (0–20, 0: off) of them, none started later than
        /// `deadline_ms` (100–60000) after the post began.
        cascade: CascadeRules = CascadeField,
        /// What an approved return does to the partner's payout: `reverse_payout` (the
        /// default: taken back) or `exchange_absorbs` (the partner keeps it).
        return_policy: crate::returns::ReturnPolicy = ReturnPolicyField,
        /// The tenant's suppression lists every contract of the offer is checked against
        /// (docs/suppression.md), at most 20.
        suppression_list_ids: Vec<Uuid> = IdList,
        /// Consent verification at post, in order (docs/verification.md): steps of `type`
        /// `trustedform`, `jornaya` or `http`, each `required` (default true) with its
        /// `timeout_ms`. Credentials (`api_key`, `account_code`, `audit_key`, header values)
        /// are write-only: shown masked.
        #[schema(value_type = Vec<Object>)]
        verification: Value = VerificationSteps,
        /// The stored `verification`, credentials unmasked, for a PATCH that sends masked
        /// values back; never shown.
        #[serde(skip)]
        hidden stored_verification: Value = stored_verification,
    }
}
