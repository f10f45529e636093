//! The auction core: configuration compiled once per load, then pure per-ping decisions
//! (lead validation, each contract's checks, RTB answers, winner selection). No I/O here: the
//! caller reads state from the database, makes the HTTP calls and records the outcome.
//!
//! Flow of a ping: [`validate_ping`] → [`CompiledSchema::prepare`] → for each contract
//! [`CompiledContract::evaluate`] (then, for RTB, [`parse_rtb_answer`] and
//! [`CompiledContract::check_rtb_bid`]) → [`select`] with [`effective_floor`].

mod caps;
mod config;
mod consent;
mod evaluate;
mod filters;
mod outcome;
mod pricing;
mod schedule;
mod schema;
mod select;
pub mod validation;
mod value;

pub use caps::{
    BuyerCapRoom, CapLimit, CapUsage, CompiledCap, CompiledCaps, PeriodUsage, period_start,
};
pub use config::{
    CapPeriod, CascadeRules, ConfigError, DEFAULT_RTB_TIMEOUT_MS, Distribution, FieldSpec,
    FieldType, FixedPricing, MAX_RTB_TIMEOUT_MS, Mode, OfferRules, PayoutRule, Pricing, RtbPricing,
    SaleType, Status, Strategy, UnknownVariant, check_headers, parse_routing_label, shape_error,
};
pub use consent::validate_consent;
pub use evaluate::{
    CompiledContract, ContractConfig, ContractState, Decline, DeclineReason, Evaluation,
    PingContext, Precheck, Prices, RtbBid, parse_rtb_answer,
};
pub use filters::{CompiledFilter, describe_filter, explain_filtered};
pub use outcome::{ContractOutcome, PingStatus};
pub use pricing::{effective_floor, meets_floor};
pub use schedule::CompiledSchedule;
pub use schema::{
    CompiledSchema, LeadError, LeadErrorCode, MxCheck, PreparedLead, check_post_matches_ping,
    is_email, normalize_email, normalize_phone, validate_ping, validate_post,
};
pub use select::{
    Bid, DEFAULT_WEIGHT, Loser, RtbCandidate, Selection, Winner, rtb_calls, seed_of, select,
    select_seeded,
};
pub use value::{is_json_pointer, pointer_token};
