//! Configuration types, in the shapes stored in PostgreSQL (money as integer cents inside JSON),
//! and the structured error every compile step reports.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::integration::response::{Call, Legacy, ResponseConfig, Rules};
use crate::money::{MAX_CENTS, Money};

use super::value::is_json_pointer;

/// One problem in a configuration document: where (a JSON pointer rooted at the column,
/// e.g. `/filters/1/any/0/op`) and why. The admin API answers these as 422 `invalid_config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct ConfigError {
    pub pointer: String,
    pub message: String,
}

impl ConfigError {
    /// An error at `pointer`.
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// Deserializes `value` as `T`, reporting a shape error at `pointer`.
pub(crate) fn from_json_at<T: DeserializeOwned>(
    value: &Value,
    pointer: &str,
) -> Result<T, ConfigError> {
    T::deserialize(value).map_err(|e| ConfigError::new(pointer, shape_error(&e)))
}

/// serde's message for a value of the wrong shape, without the value: serde quotes it
/// ("unknown variant `…`", "invalid type: string \"…\""), and no error repeats what was sent.
/// What is expected (Gavel's own names) comes last and is kept.
pub fn shape_error(error: &impl std::fmt::Display) -> String {
    let message = error.to_string();
    let quoting = [
        "invalid type",
        "invalid value",
        "unknown variant",
        "unknown field",
    ];
    match quoting.iter().find(|kind| message.starts_with(*kind)) {
        Some(kind) => match message.rsplit_once(", expected ") {
            Some((_, expected)) => format!("{kind}, expected {expected}"),
            None => (*kind).to_owned(),
        },
        None => message,
    }
}

/// The status column of partners, buyers, offers, campaigns and contracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Paused,
    Archived,
}

/// An offer's distribution mode (SPEC §5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Exclusive,
    Multisell,
    Hybrid,
    Optimize,
}

/// How an offer ranks its bids (docs/revenue-recovery.md §2): one auction by the strategy,
/// or tier by tier (highest `priority` first), offered one at a time through the cascade.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    #[default]
    Auction,
    Waterfall,
}

/// The order among bids (docs/revenue-recovery.md §3).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// SPEC §5.4: price first (within a tier for a waterfall).
    #[default]
    Price,
    /// Priority, then the contract longest without a sale; the price ignored above the floor.
    RoundRobin,
    /// Priority, then a draw in proportion to each contract's `weight`, seeded by the ping.
    Weighted,
}

/// What a winner buys: the lead alone, or one of up to `max_buyers` shares.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SaleType {
    Exclusive,
    Shared,
}

/// The period of a cap; counters roll at its boundary in the tenant's timezone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CapPeriod {
    Hour,
    Day,
    /// From Monday.
    Week,
    Month,
    /// Since the contract began: one period starting at the Unix epoch.
    Total,
}

impl CapPeriod {
    /// Every period, shortest first.
    pub const ALL: [CapPeriod; 5] = [
        CapPeriod::Hour,
        CapPeriod::Day,
        CapPeriod::Week,
        CapPeriod::Month,
        CapPeriod::Total,
    ];

    /// Position of this period in `CapPeriod::ALL`.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Error of `FromStr` for the text enums of the database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {text:?}")]
pub struct UnknownVariant {
    kind: &'static str,
    text: String,
}

macro_rules! text_enum {
    ($type:ident, $kind:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $type {
            /// The stable text of this value, as stored and sent.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl FromStr for $type {
            type Err = UnknownVariant;

            fn from_str(text: &str) -> Result<Self, UnknownVariant> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(UnknownVariant { kind: $kind, text: text.to_owned() }),
                }
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(Status, "status", { Active => "active", Paused => "paused", Archived => "archived" });
text_enum!(Mode, "mode", {
    Exclusive => "exclusive", Multisell => "multisell", Hybrid => "hybrid", Optimize => "optimize",
});
text_enum!(Distribution, "distribution", { Auction => "auction", Waterfall => "waterfall" });
text_enum!(Strategy, "strategy", {
    Price => "price", RoundRobin => "round_robin", Weighted => "weighted",
});
text_enum!(SaleType, "sale type", { Exclusive => "exclusive", Shared => "shared" });
text_enum!(CapPeriod, "cap period", {
    Hour => "hour", Day => "day", Week => "week", Month => "month", Total => "total",
});

impl Mode {
    /// The sale types this mode may sell, as sent to RTB buyers in `sale_types`.
    pub fn sale_types(self) -> &'static [SaleType] {
        match self {
            Mode::Exclusive => &[SaleType::Exclusive],
            Mode::Multisell => &[SaleType::Shared],
            Mode::Hybrid | Mode::Optimize => &[SaleType::Exclusive, SaleType::Shared],
        }
    }
}

/// The auction rules of an offer (its other columns are the caller's business).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferRules {
    pub mode: Mode,
    /// How many buyers a shared sale may have (1–100).
    #[serde(default = "default_max_buyers")]
    pub max_buyers: u32,
    /// Hybrid's threshold: an exclusive bid at least this high sells exclusive.
    #[serde(default)]
    pub exclusive_floor: Money,
    /// Offer-level dedup window in days (0 = off, at most 365).
    #[serde(default)]
    pub dedup_days: u32,
    /// Consent keys a post must carry.
    #[serde(default)]
    pub require_consent: Vec<String>,
    /// Ranking by one auction or tier by tier.
    #[serde(default)]
    pub distribution: Distribution,
    /// The order among bids.
    #[serde(default)]
    pub strategy: Strategy,
}

impl OfferRules {
    /// How the ping records its routing (`posting_log.routing`): `None` for the defaults
    /// (`auction`/`price`), so a default ping writes nothing more.
    pub fn routing_label(&self) -> Option<&'static str> {
        use Distribution::{Auction, Waterfall};
        use Strategy::{Price, RoundRobin, Weighted};
        match (self.distribution, self.strategy) {
            (Auction, Price) => None,
            (Auction, RoundRobin) => Some("auction/round_robin"),
            (Auction, Weighted) => Some("auction/weighted"),
            (Waterfall, Price) => Some("waterfall/price"),
            (Waterfall, RoundRobin) => Some("waterfall/round_robin"),
            (Waterfall, Weighted) => Some("waterfall/weighted"),
        }
    }
}

/// A recorded routing label back into its distribution and strategy (`None`: the defaults).
pub fn parse_routing_label(label: Option<&str>) -> (Distribution, Strategy) {
    label
        .and_then(|l| l.split_once('/'))
        .and_then(|(d, s)| Some((d.parse().ok()?, s.parse().ok()?)))
        .unwrap_or_default()
}

fn default_max_buyers() -> u32 {
    3
}

impl OfferRules {
    /// Checks the ranges of SPEC §4.2; pointers name the offer's fields.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        if !(1..=100).contains(&self.max_buyers) {
            errors.push(ConfigError::new("/max_buyers", "must be between 1 and 100"));
        }
        if self.exclusive_floor.is_negative() {
            errors.push(ConfigError::new("/exclusive_floor", "must not be negative"));
        }
        if self.dedup_days > 365 {
            errors.push(ConfigError::new("/dedup_days", "must be between 0 and 365"));
        }
        if self.distribution == Distribution::Waterfall
            && matches!(self.mode, Mode::Hybrid | Mode::Optimize)
        {
            errors.push(ConfigError::new(
                "/distribution",
                "a waterfall sells to one buyer at a time: it needs mode exclusive or multisell",
            ));
        }
        for (i, key) in self.require_consent.iter().enumerate() {
            if key.trim().is_empty() {
                errors.push(ConfigError::new(
                    format!("/require_consent/{i}"),
                    "must not be empty",
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// An offer's cascade at post (docs/revenue-recovery.md §1): how many further attempts a
/// failed winner's slot gets from the ping's runner-ups (0: none), and for how long after the
/// post began one may start. Stored as `{"max_attempts": 3, "deadline_ms": 10000}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CascadeRules {
    /// Further attempts per failed slot, 0 to 20 (0 turns the cascade off).
    pub max_attempts: u32,
    /// No attempt starts later than this after the post began, 100 to 60000 ms: within the
    /// minute after which the interrupted-sale sweep may answer a post with none pending.
    pub deadline_ms: u32,
}

impl Default for CascadeRules {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            deadline_ms: 10_000,
        }
    }
}

impl CascadeRules {
    pub const MAX_ATTEMPTS: std::ops::RangeInclusive<u32> = 0..=20;
    pub const DEADLINE_MS: std::ops::RangeInclusive<u32> = 100..=60_000;

    /// Reads `{"max_attempts", "deadline_ms"}` (either may be left out: its default), every
    /// problem with its pointer under `at` (`/cascade`).
    pub fn parse(value: &Value, at: &str) -> Result<Self, Vec<ConfigError>> {
        let mut rules = Self::default();
        let Some(object) = value.as_object() else {
            return Err(vec![ConfigError::new(
                at,
                "must be an object {\"max_attempts\", \"deadline_ms\"}",
            )]);
        };
        let mut errors = Vec::new();
        for (key, value) in object {
            let pointer = format!("{at}/{}", super::pointer_token(key));
            let (target, range) = match key.as_str() {
                "max_attempts" => (&mut rules.max_attempts, Self::MAX_ATTEMPTS),
                "deadline_ms" => (&mut rules.deadline_ms, Self::DEADLINE_MS),
                _ => {
                    errors.push(ConfigError::new(pointer, "unknown field"));
                    continue;
                }
            };
            match value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| range.contains(n))
            {
                Some(n) => *target = n,
                None => errors.push(ConfigError::new(
                    pointer,
                    format!(
                        "must be a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )),
            }
        }
        if errors.is_empty() {
            Ok(rules)
        } else {
            Err(errors)
        }
    }

    /// The stored (and answered) shape.
    pub fn to_value(self) -> Value {
        serde_json::json!({ "max_attempts": self.max_attempts, "deadline_ms": self.deadline_ms })
    }
}

/// A campaign's payout rule (SPEC §4.3), in the API's shape:
/// `{"type":"revshare","percent":70}`, `{"type":"margin","amount":3.00}`,
/// `{"type":"fixed","amount":8.00}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PayoutRule {
    /// A share of the price in basis points (70.00 % = 7000), truncated to the cent.
    Revshare {
        #[serde(rename = "percent", with = "percent_basis_points")]
        percent_bp: u32,
    },
    /// The price minus `amount`, never below zero.
    Margin { amount: Money },
    /// `amount` per sale, never above the price.
    Fixed { amount: Money },
}

/// Percent as a JSON number 0–100 with at most 2 decimals ⇄ basis points; parsed exactly,
/// like money (hundredths of a percent are exactly "cents" of a percent).
mod percent_basis_points {
    use super::*;

    pub fn serialize<S: Serializer>(bp: &u32, serializer: S) -> Result<S::Ok, S::Error> {
        Money::from_cents(i64::from(*bp)).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
        let hundredths = Money::deserialize(deserializer)?.cents();
        u32::try_from(hundredths)
            .ok()
            .filter(|bp| *bp <= 10_000)
            .ok_or_else(|| serde::de::Error::custom("percent must be between 0 and 100"))
    }
}

/// A field type of an offer's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Integer,
    Number,
    Boolean,
    Date,
    Email,
    Phone,
}

text_enum!(FieldType, "field type", {
    String => "string", Integer => "integer", Number => "number", Boolean => "boolean",
    Date => "date", Email => "email", Phone => "phone",
});

impl FieldType {
    /// Types with an order (`gt`, `gte`, `lt`, `lte`, `between`).
    pub fn is_ordered(self) -> bool {
        matches!(
            self,
            FieldType::Integer | FieldType::Number | FieldType::Date
        )
    }
}

/// One field of an offer's `fields` column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// A regex the value must match somewhere (use `^…$` to anchor); `string` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub pii: bool,
    /// The allowed values; `string`, `integer`, `number` and `date`.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
    /// Lower bound: the value (`integer`, `number`), a `YYYY-MM-DD` date, or a length in
    /// characters (`string`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Value>,
    /// Upper bound, like `min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Value>,
    /// Opt-in lead validation rules (docs/validation.md): `{"nanp": true}` for a `phone`,
    /// `{"strict_syntax": true, "refuse_disposable": true}` for an `email`,
    /// `{"zip_state": "<state field>"}` for a `string` holding a US ZIP code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Value>,
}

/// A contract's `pricing` column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Pricing {
    Fixed(FixedPricing),
    Rtb(RtbPricing),
}

/// `{"type":"fixed","exclusive_cents":4000,"shared_cents":1250}`; an absent price means the
/// contract does not buy that sale type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedPricing {
    #[serde(
        rename = "exclusive_cents",
        default,
        with = "optional_cents",
        skip_serializing_if = "Option::is_none"
    )]
    pub exclusive: Option<Money>,
    #[serde(
        rename = "shared_cents",
        default,
        with = "optional_cents",
        skip_serializing_if = "Option::is_none"
    )]
    pub shared: Option<Money>,
}

/// Default RTB timeout when neither the contract nor the server's `rtb_timeout_ms` names one
/// (SPEC §3.1).
pub const DEFAULT_RTB_TIMEOUT_MS: u32 = 200;
/// Longest RTB timeout a contract may set (SPEC §3.1).
pub const MAX_RTB_TIMEOUT_MS: u32 = 2000;

/// A buyer's URL as configured, parsed the first time it is called rather than on every call
/// (parsing a URL's host costs microseconds, and a ping calls every RTB contract's). A
/// `request` template's URL is rendered, so parsed, on each call.
/// Serialized as the text; equal when the texts are.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallUrl {
    text: String,
    #[serde(skip)]
    parsed: std::sync::OnceLock<Option<Box<url::Url>>>,
}

impl CallUrl {
    /// The URL parsed; `None` for text that is no URL.
    pub fn parsed(&self) -> Option<&url::Url> {
        self.parsed
            .get_or_init(|| url::Url::parse(&self.text).ok().map(Box::new))
            .as_deref()
    }
}

impl std::fmt::Debug for CallUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.text, f)
    }
}

impl std::ops::Deref for CallUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl PartialEq for CallUrl {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for CallUrl {}

impl From<String> for CallUrl {
    fn from(text: String) -> Self {
        CallUrl {
            text,
            parsed: std::sync::OnceLock::new(),
        }
    }
}

/// `{"type":"rtb","url":…,"timeout_ms":150,"headers":{…},"max_bid_cents":5000,
/// "exclusive_bid_path":"/x","shared_bid_path":"/y","ref_path":"/r"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtbPricing {
    pub url: CallUrl,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(
        rename = "max_bid_cents",
        default,
        with = "optional_cents",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_bid: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive_bid_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_bid_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_path: Option<String>,
    /// How the call is made (docs/buyer-integrations.md); absent: the native JSON body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<crate::integration::RequestConfig>,
    /// How the answer is read (docs/buyer-integrations.md), compiled with the keys above by
    /// [`Pricing::parse`].
    #[serde(default, skip_serializing_if = "ResponseConfig::is_absent")]
    pub response: ResponseConfig,
}

impl RtbPricing {
    /// The call's timeout: the contract's, or `default_ms` (the server's `rtb_timeout_ms`).
    pub fn timeout_ms_or(&self, default_ms: u32) -> u32 {
        self.timeout_ms.unwrap_or(default_ms)
    }

    /// How the buyer's answer is read.
    pub fn response_rules(&self) -> &Rules {
        self.response.rules(Call::Rtb)
    }

    /// JSON pointer of the exclusive bid in the answer.
    pub fn exclusive_bid_path(&self) -> &str {
        self.exclusive_bid_path
            .as_deref()
            .unwrap_or("/exclusive_bid")
    }

    /// JSON pointer of the shared bid in the answer.
    pub fn shared_bid_path(&self) -> &str {
        self.shared_bid_path.as_deref().unwrap_or("/shared_bid")
    }

    /// JSON pointer of the buyer's reference in the answer.
    pub fn ref_path(&self) -> &str {
        self.ref_path.as_deref().unwrap_or("/ref")
    }
}

/// Most headers a contract may send with a call.
pub const MAX_HEADERS: usize = 32;
/// Longest header value a contract may set, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 4096;

/// Headers Gavel sets itself or that govern the connection (hop-by-hop, RFC 9110 §7.6.1): a
/// tenant's value would contradict the request Gavel sends (request smuggling, a wrong host,
/// a second body type) or reach past the buyer.
const FORBIDDEN_HEADERS: [&str; 14] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "content-type",
    "content-encoding",
];

/// Checks the headers a contract sends with its calls (`pricing.headers`, `delivery.headers`):
/// each name an HTTP token not reserved for Gavel or the connection, each value without CR, LF,
/// NUL or another control character. Errors point at `<at>/<name>` and never quote
/// the value (a value may be a secret).
pub fn check_headers(headers: &BTreeMap<String, String>, at: &str) -> Vec<ConfigError> {
    use reqwest::header::{HeaderName, HeaderValue};
    let mut errors = Vec::new();
    if headers.len() > MAX_HEADERS {
        errors.push(ConfigError::new(
            at,
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (name, value) in headers {
        let pointer = format!("{at}/{}", super::value::pointer_token(name));
        let message = match HeaderName::from_bytes(name.as_bytes()) {
            Err(_) => Some("is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)"),
            Ok(parsed) if FORBIDDEN_HEADERS.contains(&parsed.as_str()) => {
                Some("is set by Gavel or the connection and cannot be configured")
            }
            Ok(parsed) if !seen.insert(parsed.clone()) => Some("repeats another header's name"),
            Ok(_) if value.len() > MAX_HEADER_VALUE_BYTES => {
                Some("value is longer than 4096 bytes")
            }
            // What the client accepts: visible ASCII, spaces and tabs.
            Ok(_) if HeaderValue::from_str(value).is_err() => Some(
                "value must be visible ASCII text, without CR, LF, NUL or other control characters",
            ),
            Ok(_) => None,
        };
        if let Some(message) = message {
            errors.push(ConfigError::new(pointer, message));
        }
    }
    errors
}

/// Optional money stored as integer cents.
mod optional_cents {
    use super::*;

    pub fn serialize<S: Serializer>(
        money: &Option<Money>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        money.map(Money::cents).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Money>, D::Error> {
        Ok(Option::<i64>::deserialize(deserializer)?.map(Money::from_cents))
    }
}

impl Pricing {
    /// Parses and checks a `pricing` column; errors point under `/pricing`.
    pub fn parse(value: &Value) -> Result<Pricing, Vec<ConfigError>> {
        let mut pricing: Pricing = from_json_at(value, "/pricing").map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        let mut check_amount = |amount: Option<Money>, key: &str| {
            if let Some(amount) = amount
                && !(1..=MAX_CENTS).contains(&amount.cents())
            {
                errors.push(ConfigError::new(
                    format!("/pricing/{key}"),
                    "must be a positive amount of cents",
                ));
            }
        };
        match &mut pricing {
            Pricing::Fixed(fixed) => {
                check_amount(fixed.exclusive, "exclusive_cents");
                check_amount(fixed.shared, "shared_cents");
                if fixed.exclusive.is_none() && fixed.shared.is_none() {
                    errors.push(ConfigError::new(
                        "/pricing",
                        "a fixed price needs exclusive_cents or shared_cents",
                    ));
                }
            }
            Pricing::Rtb(rtb) => {
                check_amount(rtb.max_bid, "max_bid_cents");
                errors.extend(check_headers(&rtb.headers, "/pricing/headers"));
                if !(rtb.url.starts_with("https://") || rtb.url.starts_with("http://"))
                    || rtb.url.contains(char::is_whitespace)
                {
                    errors.push(ConfigError::new(
                        "/pricing/url",
                        "must be an http or https URL",
                    ));
                }
                if let Some(timeout) = rtb.timeout_ms
                    && !(1..=MAX_RTB_TIMEOUT_MS).contains(&timeout)
                {
                    errors.push(ConfigError::new(
                        "/pricing/timeout_ms",
                        format!("must be between 1 and {MAX_RTB_TIMEOUT_MS}"),
                    ));
                }
                if let Some(request) = &rtb.request {
                    errors
                        .extend(request.errors("/pricing/request", crate::integration::Call::Rtb));
                }
                let paths = [
                    ("exclusive_bid_path", &rtb.exclusive_bid_path),
                    ("shared_bid_path", &rtb.shared_bid_path),
                    ("ref_path", &rtb.ref_path),
                ];
                for (key, path) in paths {
                    if path.as_deref().is_some_and(|p| !is_json_pointer(p)) {
                        errors.push(ConfigError::new(
                            format!("/pricing/{key}"),
                            "must be a JSON pointer such as /bid/amount",
                        ));
                    }
                }
                let legacy = Legacy {
                    exclusive_bid_path: rtb.exclusive_bid_path.as_deref(),
                    shared_bid_path: rtb.shared_bid_path.as_deref(),
                    ref_path: rtb.ref_path.as_deref(),
                    ..Legacy::default()
                };
                if let Err(found) = rtb.response.compile(Call::Rtb, &legacy, "/pricing") {
                    errors.extend(found);
                }
            }
        }
        if errors.is_empty() {
            Ok(pricing)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_enums_round_trip_their_stable_text() {
        for mode in [
            Mode::Exclusive,
            Mode::Multisell,
            Mode::Hybrid,
            Mode::Optimize,
        ] {
            assert_eq!(mode.as_str().parse::<Mode>(), Ok(mode));
            assert_eq!(serde_json::to_value(mode).unwrap(), json!(mode.as_str()));
        }
        assert_eq!("paused".parse::<Status>(), Ok(Status::Paused));
        assert!(
            "Paused"
                .parse::<Status>()
                .unwrap_err()
                .to_string()
                .contains("unknown status")
        );
        assert_eq!(SaleType::Shared.to_string(), "shared");
        assert_eq!("phone".parse::<FieldType>(), Ok(FieldType::Phone));
    }

    #[test]
    fn modes_name_the_sale_types_they_need() {
        assert_eq!(Mode::Exclusive.sale_types(), [SaleType::Exclusive]);
        assert_eq!(Mode::Multisell.sale_types(), [SaleType::Shared]);
        assert_eq!(
            Mode::Hybrid.sale_types(),
            [SaleType::Exclusive, SaleType::Shared]
        );
        assert_eq!(
            serde_json::to_value(Mode::Optimize.sale_types()).unwrap(),
            json!(["exclusive", "shared"])
        );
    }

    #[test]
    fn payout_rules_read_the_api_shape_exactly() {
        let rule: PayoutRule =
            serde_json::from_value(json!({"type": "revshare", "percent": 70})).unwrap();
        assert_eq!(rule, PayoutRule::Revshare { percent_bp: 7000 });
        let rule: PayoutRule =
            serde_json::from_value(json!({"type": "revshare", "percent": 33.33})).unwrap();
        assert_eq!(rule, PayoutRule::Revshare { percent_bp: 3333 });
        assert_eq!(
            serde_json::to_string(&rule).unwrap(),
            r#"{"type":"revshare","percent":33.33}"#
        );
        for bad in [
            json!({"type": "revshare", "percent": 100.01}),
            json!({"type": "revshare", "percent": -1}),
            json!({"type": "revshare", "percent": 12.345}),
            json!({"type": "fixed", "amount": 1, "x": 1}),
        ] {
            assert!(
                serde_json::from_value::<PayoutRule>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        let rule: PayoutRule =
            serde_json::from_value(json!({"type": "margin", "amount": 3.5})).unwrap();
        assert_eq!(
            rule,
            PayoutRule::Margin {
                amount: Money::from_cents(350)
            }
        );
    }

    #[test]
    fn offer_rules_have_defaults_and_ranges() {
        let rules: OfferRules = serde_json::from_value(json!({"mode": "hybrid"})).unwrap();
        assert_eq!(rules.max_buyers, 3);
        assert_eq!(rules.exclusive_floor, Money::ZERO);
        assert_eq!(rules.validate(), Ok(()));
        let bad = OfferRules {
            max_buyers: 0,
            dedup_days: 400,
            exclusive_floor: Money::from_cents(-1),
            require_consent: vec![" ".into()],
            ..rules
        };
        let pointers: Vec<_> = bad
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.pointer)
            .collect();
        assert_eq!(
            pointers,
            [
                "/max_buyers",
                "/exclusive_floor",
                "/dedup_days",
                "/require_consent/0"
            ]
        );
    }

    #[test]
    fn cascade_rules_read_their_ranges_with_pointers() {
        assert_eq!(
            CascadeRules::parse(&json!({}), "/cascade"),
            Ok(CascadeRules::default())
        );
        assert_eq!(
            CascadeRules::parse(
                &json!({"max_attempts": 0, "deadline_ms": 60000}),
                "/cascade"
            ),
            Ok(CascadeRules {
                max_attempts: 0,
                deadline_ms: 60_000
            })
        );
        let pointers: Vec<String> = CascadeRules::parse(
            &json!({"max_attempts": 21, "deadline_ms": 99.5, "x": 1}),
            "/cascade",
        )
        .unwrap_err()
        .into_iter()
        .map(|e| e.pointer)
        .collect();
        assert_eq!(
            pointers,
            [
                "/cascade/deadline_ms",
                "/cascade/max_attempts",
                "/cascade/x"
            ]
        );
        assert!(CascadeRules::parse(&json!(3), "/cascade").is_err());
    }

    #[test]
    fn fixed_pricing_reads_cents() {
        let pricing = Pricing::parse(
            &json!({"type": "fixed", "exclusive_cents": 4000, "shared_cents": 1250}),
        )
        .unwrap();
        assert_eq!(
            pricing,
            Pricing::Fixed(FixedPricing {
                exclusive: Some(Money::from_cents(4000)),
                shared: Some(Money::from_cents(1250))
            })
        );
        let shared_only = Pricing::parse(&json!({"type": "fixed", "shared_cents": 1})).unwrap();
        assert_eq!(
            shared_only,
            Pricing::Fixed(FixedPricing {
                exclusive: None,
                shared: Some(Money::from_cents(1))
            })
        );
        assert_eq!(
            serde_json::to_value(&shared_only).unwrap(),
            json!({"type": "fixed", "shared_cents": 1})
        );
    }

    #[test]
    fn rtb_pricing_has_defaults() {
        let Pricing::Rtb(rtb) =
            Pricing::parse(&json!({"type": "rtb", "url": "https://buyer.example/bid"})).unwrap()
        else {
            panic!("not rtb");
        };
        assert_eq!(rtb.timeout_ms_or(DEFAULT_RTB_TIMEOUT_MS), 200);
        assert_eq!(rtb.exclusive_bid_path(), "/exclusive_bid");
        assert_eq!(rtb.shared_bid_path(), "/shared_bid");
        assert_eq!(rtb.ref_path(), "/ref");
        assert_eq!(rtb.max_bid, None);
        let full = json!({"type": "rtb", "url": "https://b.example", "timeout_ms": 150, "headers": {"X-Key": "k"},
                          "max_bid_cents": 5000, "exclusive_bid_path": "/x", "shared_bid_path": "/y", "ref_path": "/r"});
        let pricing = Pricing::parse(&full).unwrap();
        assert_eq!(serde_json::to_value(&pricing).unwrap(), full);
    }

    #[test]
    fn a_buyer_url_is_parsed_once_and_compared_by_its_text() {
        let url = CallUrl::from("https://buyer.example/bid?x=1".to_owned());
        assert_eq!(
            url.parsed().and_then(|u| u.host_str()),
            Some("buyer.example")
        );
        assert!(std::ptr::eq(url.parsed().unwrap(), url.parsed().unwrap()));
        assert_eq!(
            url,
            CallUrl::from("https://buyer.example/bid?x=1".to_owned())
        );
        assert_eq!(&*url, "https://buyer.example/bid?x=1");
        assert_eq!(CallUrl::from("http://[bad".to_owned()).parsed(), None);
    }

    #[test]
    fn bad_pricing_is_reported_with_pointers() {
        let errors = |v: Value| -> Vec<String> {
            Pricing::parse(&v)
                .unwrap_err()
                .into_iter()
                .map(|e| e.pointer)
                .collect()
        };
        assert_eq!(errors(json!({"type": "fixed"})), ["/pricing"]);
        assert_eq!(
            errors(json!({"type": "fixed", "exclusive_cents": 0, "shared_cents": -5})),
            ["/pricing/exclusive_cents", "/pricing/shared_cents"]
        );
        assert_eq!(
            errors(json!({"type": "fixed", "exclusive": 40.0})),
            ["/pricing"]
        );
        assert_eq!(errors(json!({"type": "auction"})), ["/pricing"]);
        assert_eq!(errors(json!({"type": "rtb"})), ["/pricing"]);
        assert_eq!(
            errors(
                json!({"type": "rtb", "url": "ftp://x", "timeout_ms": 5000, "max_bid_cents": 0, "ref_path": "ref"})
            ),
            [
                "/pricing/max_bid_cents",
                "/pricing/url",
                "/pricing/timeout_ms",
                "/pricing/ref_path"
            ]
        );
        assert_eq!(
            errors(json!({"type": "rtb", "url": "https://x", "timeout_ms": 0})),
            ["/pricing/timeout_ms"]
        );
    }

    #[test]
    fn rtb_headers_are_checked_with_pointers_that_never_quote_the_value() {
        let errors = |headers: Value| -> Vec<(String, String)> {
            match Pricing::parse(
                &json!({"type": "rtb", "url": "https://b.example", "headers": headers}),
            ) {
                Ok(_) => Vec::new(),
                Err(errors) => errors.into_iter().map(|e| (e.pointer, e.message)).collect(),
            }
        };
        assert!(errors(json!({"Authorization": "Bearer abc", "X-Key": "k\tv"})).is_empty());
        let found = errors(json!({
            "Host": "internal", "content-length": "0", "Transfer-Encoding": "chunked",
            "Connection": "close", "Upgrade": "h2c", "X-Evil": "a\r\nX-Injected: 1",
            "X-Nul": "a\u{0}b", "X-Del": "\u{7f}", "Bad Name": "v", "a/b~c": "v", "": "v"
        }));
        let pointers: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/pricing/headers/",
                "/pricing/headers/Bad Name",
                "/pricing/headers/Connection",
                "/pricing/headers/Host",
                "/pricing/headers/Transfer-Encoding",
                "/pricing/headers/Upgrade",
                "/pricing/headers/X-Del",
                "/pricing/headers/X-Evil",
                "/pricing/headers/X-Nul",
                "/pricing/headers/a~1b~0c",
                "/pricing/headers/content-length",
            ]
        );
        assert!(
            found
                .iter()
                .all(|(_, message)| !message.contains("X-Injected"))
        );
        let repeated = errors(json!({"X-Key": "a", "x-key": "b"}));
        assert_eq!(repeated.len(), 1, "{repeated:?}");
        assert_eq!(errors(json!({"X-Long": "v".repeat(4097)})).len(), 1);
    }

    #[test]
    fn config_errors_display_pointer_and_message() {
        let error = ConfigError::new("/filters/0/op", "unknown op");
        assert_eq!(error.to_string(), "/filters/0/op: unknown op");
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            json!({"pointer": "/filters/0/op", "message": "unknown op"})
        );
    }
}
