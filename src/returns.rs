//! Returns (docs/returns.md): the pure decisions. A contract's return settings parsed and
//! validated, a request's checks in the contract's order, the limit's arithmetic (integers),
//! the period's bounds in the tenant's timezone. No I/O: the handler reads the facts and
//! writes (`api::admin::returns`, `store::admin::returns`).

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::auction::{CapPeriod, ConfigError, period_start, pointer_token};

/// The period a contract's return limit counts over, in the tenant's timezone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReturnPeriod {
    Day,
    /// From Monday.
    Week,
    #[default]
    Month,
}

impl ReturnPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    fn cap_period(self) -> CapPeriod {
        match self {
            Self::Day => CapPeriod::Day,
            Self::Week => CapPeriod::Week,
            Self::Month => CapPeriod::Month,
        }
    }

    /// A span from a period's start that always lands inside the next period, whatever the
    /// DST changes (days of 23 to 25 h, months of 28 to 31 days).
    fn into_next(self) -> Duration {
        match self {
            Self::Day => Duration::hours(36),
            Self::Week => Duration::hours(7 * 24 + 12),
            Self::Month => Duration::days(32),
        }
    }
}

impl FromStr for ReturnPeriod {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            "month" => Ok(Self::Month),
            _ => Err(()),
        }
    }
}

/// The current period `[start, end)` at `now`, its boundaries at local midnight in `tz`
/// (a day, a week from Monday, a calendar month).
pub fn period_bounds(
    period: ReturnPeriod,
    now: DateTime<Utc>,
    tz: Tz,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = period_start(period.cap_period(), now, tz);
    let end = period_start(period.cap_period(), start + period.into_next(), tz);
    (start, end)
}

/// Whether an approved return takes the partner's payout back (an offer's `return_policy`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ReturnPolicy {
    #[default]
    ReversePayout,
    ExchangeAbsorbs,
}

impl ReturnPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReversePayout => "reverse_payout",
            Self::ExchangeAbsorbs => "exchange_absorbs",
        }
    }

    /// What an approved return of a sale paying `payout_cents` debits the partner.
    pub fn reversed_cents(self, payout_cents: i64) -> i64 {
        match self {
            Self::ReversePayout => payout_cents.max(0),
            Self::ExchangeAbsorbs => 0,
        }
    }
}

impl FromStr for ReturnPolicy {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "reverse_payout" => Ok(Self::ReversePayout),
            "exchange_absorbs" => Ok(Self::ExchangeAbsorbs),
            _ => Err(()),
        }
    }
}

/// A contract's `returns` (migration 0017's defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnSettings {
    pub allowed: bool,
    pub window_days: u32,
    pub max_percent: u32,
    pub period: ReturnPeriod,
    pub auto_approve: bool,
    pub reasons: Vec<String>,
}

/// The reasons a contract accepts unless it names its own.
pub const DEFAULT_REASONS: [&str; 7] = [
    "bad_phone",
    "bad_email",
    "duplicate",
    "not_interested",
    "wrong_person",
    "fraud",
    "other",
];

/// A reason as `/metrics` counts it: one of [`DEFAULT_REASONS`], else `custom`.
pub fn metric_reason(reason: &str) -> &'static str {
    DEFAULT_REASONS
        .iter()
        .find(|known| **known == reason)
        .copied()
        .unwrap_or("custom")
}

impl Default for ReturnSettings {
    fn default() -> Self {
        ReturnSettings {
            allowed: false,
            window_days: 7,
            max_percent: 10,
            period: ReturnPeriod::Month,
            auto_approve: false,
            reasons: DEFAULT_REASONS.iter().map(|r| (*r).to_owned()).collect(),
        }
    }
}

/// A reason code: `^[a-z][a-z0-9_]{0,39}$` (bounded, so metrics may count by it).
pub fn is_reason_code(text: &str) -> bool {
    let mut chars = text.chars();
    text.len() <= 40
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl ReturnSettings {
    pub const WINDOW_DAYS: std::ops::RangeInclusive<u32> = 1..=90;
    pub const MAX_PERCENT: std::ops::RangeInclusive<u32> = 0..=100;
    pub const MAX_REASONS: usize = 20;

    /// Reads `value` (an object; a key left out keeps its default), every broken rule with
    /// its pointer under `at`. No error repeats a value sent.
    pub fn parse(value: &Value, at: &str) -> Result<Self, Vec<ConfigError>> {
        let mut settings = Self::default();
        let Some(object) = value.as_object() else {
            return Err(vec![ConfigError::new(
                at,
                "must be an object {\"allowed\", \"window_days\", \"max_percent\", \"period\", \"auto_approve\", \"reasons\"}",
            )]);
        };
        let mut errors = Vec::new();
        for (key, value) in object {
            let pointer = format!("{at}/{}", pointer_token(key));
            let mut error = |message: String| errors.push(ConfigError::new(&pointer, message));
            match key.as_str() {
                "allowed" | "auto_approve" => match value.as_bool() {
                    Some(flag) if key == "allowed" => settings.allowed = flag,
                    Some(flag) => settings.auto_approve = flag,
                    None => error("must be true or false".into()),
                },
                "window_days" | "max_percent" => {
                    let range = if key == "window_days" {
                        Self::WINDOW_DAYS
                    } else {
                        Self::MAX_PERCENT
                    };
                    match value
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| range.contains(n))
                    {
                        Some(n) if key == "window_days" => settings.window_days = n,
                        Some(n) => settings.max_percent = n,
                        None => error(format!(
                            "must be a whole number from {} to {}",
                            range.start(),
                            range.end()
                        )),
                    }
                }
                "period" => match value.as_str().map(ReturnPeriod::from_str) {
                    Some(Ok(period)) => settings.period = period,
                    _ => error("must be day, week or month".into()),
                },
                "reasons" => match read_reasons(value, &pointer) {
                    Ok(reasons) => settings.reasons = reasons,
                    Err(mut broken) => errors.append(&mut broken),
                },
                _ => error("unknown field".into()),
            }
        }
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(errors)
        }
    }

    /// The settings as stored: every key, so that a later default changes no contract.
    pub fn to_value(&self) -> Value {
        json!({
            "allowed": self.allowed,
            "window_days": self.window_days,
            "max_percent": self.max_percent,
            "period": self.period.as_str(),
            "auto_approve": self.auto_approve,
            "reasons": self.reasons,
        })
    }

    /// Stored settings, as the workflow reads them: a value broken by an SQL edit reads as
    /// returns off rather than failing.
    pub fn from_stored(value: &Value) -> Self {
        Self::parse(value, "").unwrap_or_else(|_| ReturnSettings {
            allowed: false,
            ..Self::default()
        })
    }

    /// The returns allowed in a period with `sold` sales: `max_percent` % of them, rounded
    /// down (integers only).
    pub fn allowed_in_period(&self, sold: i64) -> i64 {
        sold.max(0).saturating_mul(i64::from(self.max_percent)) / 100
    }

    /// The last instant a sale settled at `settled_at` may be returned (exclusive).
    pub fn window_end(&self, settled_at: DateTime<Utc>) -> DateTime<Utc> {
        settled_at + Duration::hours(24 * i64::from(self.window_days))
    }
}

fn read_reasons(value: &Value, at: &str) -> Result<Vec<String>, Vec<ConfigError>> {
    let shape = || {
        vec![ConfigError::new(
            at,
            format!(
                "must be a list of 1 to {} reason codes",
                ReturnSettings::MAX_REASONS
            ),
        )]
    };
    let Some(items) = value.as_array() else {
        return Err(shape());
    };
    if items.is_empty() || items.len() > ReturnSettings::MAX_REASONS {
        return Err(shape());
    }
    let mut errors = Vec::new();
    let mut reasons: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item.as_str() {
            Some(code) if is_reason_code(code) => {
                if reasons.iter().any(|r| r == code) {
                    errors.push(ConfigError::new(format!("{at}/{i}"), "appears twice"));
                } else {
                    reasons.push(code.to_owned());
                }
            }
            _ => errors.push(ConfigError::new(
                format!("{at}/{i}"),
                "must be a code of a lowercase letter then up to 39 lowercase letters, digits or _",
            )),
        }
    }
    if errors.is_empty() {
        Ok(reasons)
    } else {
        Err(errors)
    }
}

/// A PATCH's `returns` over the stored one: the keys sent replace the stored ones, the others
/// keep their value (docs/returns.md). Anything but two objects is the patch as sent (to be
/// reported by `parse`).
pub fn merge_patch(stored: &Value, patch: &Value) -> Value {
    match (stored, patch) {
        (Value::Object(stored), Value::Object(patch)) => {
            let mut merged: Map<String, Value> = stored.clone();
            merged.extend(patch.clone());
            Value::Object(merged)
        }
        _ => patch.clone(),
    }
}

/// The cap counters an approved return gives back: the sale's `reserved_caps` (written by
/// `store::sales::reserve`) whose period is still the current one at `now` (a period already
/// over is left as it was counted), the contract's and the buyer's, each in the order
/// reserved (the lock order).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CapsGiveBack {
    pub periods: Vec<String>,
    pub starts: Vec<DateTime<Utc>>,
    pub buyer_periods: Vec<String>,
    pub buyer_starts: Vec<DateTime<Utc>>,
}

pub fn caps_to_give_back(reserved_caps: &Value, now: DateTime<Utc>, tz: Tz) -> CapsGiveBack {
    let mut give_back = CapsGiveBack::default();
    let current = |period: Option<&Value>, start: Option<&Value>| {
        let period = CapPeriod::from_str(period?.as_str()?).ok()?;
        let start = DateTime::parse_from_rfc3339(start?.as_str()?)
            .ok()?
            .to_utc();
        (period_start(period, now, tz) == start).then(|| (period.as_str().to_owned(), start))
    };
    for entry in reserved_caps.as_array().into_iter().flatten() {
        if let Some((period, start)) = current(entry.get("period"), entry.get("period_start")) {
            give_back.periods.push(period);
            give_back.starts.push(start);
        }
        if let Some((period, start)) =
            current(entry.get("buyer_period"), entry.get("buyer_period_start"))
        {
            give_back.buyer_periods.push(period);
            give_back.buyer_starts.push(start);
        }
    }
    give_back
}

/// What a return request is judged on (docs/returns.md, "The workflow").
#[derive(Debug, Clone)]
pub struct RequestFacts<'a> {
    /// The sale's status (`sold`, …, `returned`).
    pub sale_status: &'a str,
    pub test: bool,
    /// When the sale was settled (sold).
    pub settled_at: Option<DateTime<Utc>>,
    /// A return of the sale already requested or approved.
    pub open_return: Option<Uuid>,
    pub settings: &'a ReturnSettings,
    pub reason: &'a str,
    pub now: DateTime<Utc>,
    /// The contract's returns requested in the current period, denied ones aside (this one
    /// not included).
    pub returns_in_period: i64,
    /// The contract's sales sold in the current period (sold or since returned).
    pub sold_in_period: i64,
}

/// Why a request is refused, in the order the checks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    SaleNotReturnable,
    AlreadyReturned(Uuid),
    NotAllowed,
    ReasonNotAllowed(Vec<String>),
    WindowClosed {
        settled_at: DateTime<Utc>,
        window_days: u32,
    },
    LimitReached {
        used: i64,
        allowed: i64,
    },
}

/// The request's checks, the first that fails answering.
pub fn check_request(facts: &RequestFacts<'_>) -> Result<(), Refusal> {
    let settings = facts.settings;
    let Some(settled_at) = facts
        .settled_at
        .filter(|_| facts.sale_status == "sold" && !facts.test)
    else {
        return Err(Refusal::SaleNotReturnable);
    };
    if let Some(id) = facts.open_return {
        return Err(Refusal::AlreadyReturned(id));
    }
    if !settings.allowed {
        return Err(Refusal::NotAllowed);
    }
    if !settings.reasons.iter().any(|r| r == facts.reason) {
        return Err(Refusal::ReasonNotAllowed(settings.reasons.clone()));
    }
    if facts.now >= settings.window_end(settled_at) {
        return Err(Refusal::WindowClosed {
            settled_at,
            window_days: settings.window_days,
        });
    }
    let allowed = settings.allowed_in_period(facts.sold_in_period);
    if facts.returns_in_period.max(0) + 1 > allowed {
        return Err(Refusal::LimitReached {
            used: facts.returns_in_period,
            allowed,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use proptest::prelude::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn metrics_count_the_default_reasons_by_name_and_any_other_as_custom() {
        for reason in DEFAULT_REASONS {
            assert_eq!(metric_reason(reason), reason);
        }
        assert_eq!(metric_reason("h2_race_probe"), "custom");
        assert_eq!(metric_reason("bad_phone2"), "custom");
    }

    #[test]
    fn settings_default_as_the_migration_and_read_every_error_with_its_pointer() {
        let defaults = ReturnSettings::parse(&json!({}), "/returns").unwrap();
        assert_eq!(defaults, ReturnSettings::default());
        assert_eq!(
            defaults.to_value(),
            json!({"allowed": false, "window_days": 7, "max_percent": 10, "period": "month",
                   "auto_approve": false, "reasons": ["bad_phone", "bad_email", "duplicate",
                   "not_interested", "wrong_person", "fraud", "other"]})
        );
        let errors = ReturnSettings::parse(
            &json!({"allowed": "yes", "window_days": 0, "max_percent": 101, "period": "year",
                    "auto_approve": 1, "reasons": ["ok", "Bad", "ok"], "extra": 1}),
            "/returns",
        )
        .unwrap_err();
        let mut pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        pointers.sort_unstable();
        assert_eq!(
            pointers,
            [
                "/returns/allowed",
                "/returns/auto_approve",
                "/returns/extra",
                "/returns/max_percent",
                "/returns/period",
                "/returns/reasons/1",
                "/returns/reasons/2",
                "/returns/window_days",
            ]
        );
        assert!(ReturnSettings::parse(&json!({"reasons": []}), "/r").is_err());
        let many: Vec<String> = (0..21).map(|n| format!("r{n}")).collect();
        assert!(ReturnSettings::parse(&json!({ "reasons": many }), "/r").is_err());
        assert!(ReturnSettings::parse(&json!([]), "/r").is_err());
        assert!(is_reason_code(&format!("a{}", "b".repeat(39))));
        assert!(!is_reason_code(&format!("a{}", "b".repeat(40))));
        assert!(!is_reason_code("1abc") && !is_reason_code("") && !is_reason_code("a-b"));
    }

    #[test]
    fn a_patch_keeps_the_keys_it_does_not_send() {
        let stored = ReturnSettings::default().to_value();
        let merged = merge_patch(&stored, &json!({"allowed": true, "max_percent": 20}));
        let settings = ReturnSettings::parse(&merged, "").unwrap();
        assert!(settings.allowed);
        assert_eq!((settings.max_percent, settings.window_days), (20, 7));
        assert_eq!(merge_patch(&stored, &json!(5)), json!(5));
    }

    #[test]
    fn the_limit_rounds_down() {
        let settings = ReturnSettings::default();
        assert_eq!(settings.allowed_in_period(9), 0);
        assert_eq!(settings.allowed_in_period(10), 1);
        assert_eq!(settings.allowed_in_period(19), 1);
        assert_eq!(settings.allowed_in_period(20), 2);
        let all = ReturnSettings {
            max_percent: 100,
            ..ReturnSettings::default()
        };
        assert_eq!(all.allowed_in_period(3), 3);
        assert_eq!(all.allowed_in_period(i64::MAX), i64::MAX / 100);
    }

    fn facts<'a>(settings: &'a ReturnSettings) -> RequestFacts<'a> {
        RequestFacts {
            sale_status: "sold",
            test: false,
            settled_at: Some(at("2026-11-02T12:00:00Z")),
            open_return: None,
            settings,
            reason: "bad_phone",
            now: at("2026-11-03T12:00:00Z"),
            returns_in_period: 0,
            sold_in_period: 10,
        }
    }

    #[test]
    fn the_checks_run_in_the_documented_order() {
        let on = ReturnSettings {
            allowed: true,
            ..ReturnSettings::default()
        };
        let off = ReturnSettings::default();
        assert_eq!(check_request(&facts(&on)), Ok(()));
        // Everything wrong at once: the sale's status answers first.
        let mut all_wrong = facts(&off);
        all_wrong.sale_status = "returned";
        all_wrong.open_return = Some(Uuid::nil());
        all_wrong.reason = "nope";
        all_wrong.now = at("2027-01-01T00:00:00Z");
        all_wrong.sold_in_period = 0;
        assert_eq!(check_request(&all_wrong), Err(Refusal::SaleNotReturnable));
        let mut test = facts(&on);
        test.test = true;
        assert_eq!(check_request(&test), Err(Refusal::SaleNotReturnable));
        all_wrong.sale_status = "sold";
        assert_eq!(
            check_request(&all_wrong),
            Err(Refusal::AlreadyReturned(Uuid::nil()))
        );
        all_wrong.open_return = None;
        assert_eq!(check_request(&all_wrong), Err(Refusal::NotAllowed));
        all_wrong.settings = &on;
        assert!(matches!(
            check_request(&all_wrong),
            Err(Refusal::ReasonNotAllowed(reasons)) if reasons.len() == 7
        ));
        all_wrong.reason = "other";
        assert_eq!(
            check_request(&all_wrong),
            Err(Refusal::WindowClosed {
                settled_at: at("2026-11-02T12:00:00Z"),
                window_days: 7
            })
        );
        all_wrong.now = at("2026-11-09T11:59:59Z");
        assert_eq!(
            check_request(&all_wrong),
            Err(Refusal::LimitReached {
                used: 0,
                allowed: 0
            })
        );
        all_wrong.sold_in_period = 10;
        assert_eq!(check_request(&all_wrong), Ok(()));
        all_wrong.returns_in_period = 1;
        assert_eq!(
            check_request(&all_wrong),
            Err(Refusal::LimitReached {
                used: 1,
                allowed: 1
            })
        );
    }

    #[test]
    fn the_window_ends_window_days_times_24_hours_after_the_sale() {
        let on = ReturnSettings {
            allowed: true,
            window_days: 1,
            ..ReturnSettings::default()
        };
        let mut request = facts(&on);
        request.now = at("2026-11-03T11:59:59Z");
        assert_eq!(check_request(&request), Ok(()));
        request.now = at("2026-11-03T12:00:00Z");
        assert!(matches!(
            check_request(&request),
            Err(Refusal::WindowClosed { .. })
        ));
    }

    #[test]
    fn only_the_current_periods_are_given_back() {
        let now = at("2026-11-04T15:00:00Z");
        let reserved = json!([
            {"period": "day", "period_start": "2026-11-04T05:00:00Z"},
            {"period": "month", "period_start": "2026-11-01T04:00:00Z"},
            {"period": "total", "period_start": "1970-01-01T00:00:00Z"},
            {"period": "hour", "period_start": "2026-11-04T14:00:00Z"},
            {"scope": "buyer", "buyer_period": "week", "buyer_period_start": "2026-11-02T05:00:00Z"},
            {"scope": "buyer", "buyer_period": "day", "buyer_period_start": "2026-11-03T05:00:00Z"},
            {"period": 5}
        ]);
        let give_back = caps_to_give_back(&reserved, now, New_York);
        assert_eq!(give_back.periods, ["day", "month", "total"]);
        assert_eq!(give_back.starts[0], at("2026-11-04T05:00:00Z"));
        assert_eq!(give_back.buyer_periods, ["week"]);
        assert_eq!(
            caps_to_give_back(&json!([]), now, New_York),
            CapsGiveBack::default()
        );
    }

    #[test]
    fn periods_are_local_days_weeks_from_monday_and_months() {
        // 2026-11-01 is a Sunday; New York leaves DST at 2 a.m. that day.
        let now = at("2026-11-04T15:00:00Z");
        assert_eq!(
            period_bounds(ReturnPeriod::Day, now, New_York),
            (at("2026-11-04T05:00:00Z"), at("2026-11-05T05:00:00Z"))
        );
        assert_eq!(
            period_bounds(ReturnPeriod::Week, now, New_York),
            (at("2026-11-02T05:00:00Z"), at("2026-11-09T05:00:00Z"))
        );
        assert_eq!(
            period_bounds(ReturnPeriod::Month, now, New_York),
            (at("2026-11-01T04:00:00Z"), at("2026-12-01T05:00:00Z"))
        );
        // The day DST ends is 25 hours long.
        assert_eq!(
            period_bounds(ReturnPeriod::Day, at("2026-11-01T12:00:00Z"), New_York),
            (at("2026-11-01T04:00:00Z"), at("2026-11-02T05:00:00Z"))
        );
        assert_eq!(
            period_bounds(ReturnPeriod::Month, at("2027-02-10T00:00:00Z"), Tz::UTC),
            (at("2027-02-01T00:00:00Z"), at("2027-03-01T00:00:00Z"))
        );
    }

    proptest! {
        /// Every instant lies in its period, whose end is the next period's start.
        #[test]
        fn periods_tile_time(
            seconds in 1_600_000_000i64..2_000_000_000,
            period in prop::sample::select(vec![ReturnPeriod::Day, ReturnPeriod::Week, ReturnPeriod::Month]),
            tz in prop::sample::select(vec![Tz::UTC, New_York, chrono_tz::Europe::London,
                                            chrono_tz::Australia::Lord_Howe, chrono_tz::Asia::Kolkata]),
        ) {
            let now = DateTime::from_timestamp(seconds, 0).unwrap();
            let (start, end) = period_bounds(period, now, tz);
            prop_assert!(start <= now && now < end);
            prop_assert_eq!(period_bounds(period, end, tz).0, end);
            let hours = (end - start).num_hours();
            let (low, high) = match period {
                ReturnPeriod::Day => (22, 26),
                ReturnPeriod::Week => (7 * 24 - 2, 7 * 24 + 2),
                ReturnPeriod::Month => (28 * 24 - 2, 31 * 24 + 2),
            };
            prop_assert!((low..=high).contains(&hours), "{hours}");
        }

        /// The limit never lets a period's returns exceed max_percent % of its sales, and
        /// always lets the last one allowed through.
        #[test]
        fn the_limit_is_never_overshot(sold in 0i64..100_000, percent in 0u32..=100, used in 0i64..20_000) {
            let settings = ReturnSettings { allowed: true, max_percent: percent, ..ReturnSettings::default() };
            let mut request = facts(&settings);
            request.sold_in_period = sold;
            request.returns_in_period = used;
            let accepted = check_request(&request).is_ok();
            prop_assert_eq!(accepted, (used + 1) * 100 <= sold * i64::from(percent));
        }

        /// Any settings written read back the same, and parsing never panics.
        #[test]
        fn settings_round_trip(allowed: bool, auto: bool, window in 1u32..=90, percent in 0u32..=100,
                               period in prop::sample::select(vec!["day", "week", "month"]),
                               reasons in prop::collection::hash_set("[a-z][a-z0-9_]{0,39}", 1..=20)) {
            let reasons: Vec<String> = reasons.into_iter().collect();
            let value = json!({"allowed": allowed, "auto_approve": auto, "window_days": window,
                               "max_percent": percent, "period": period, "reasons": reasons});
            let settings = ReturnSettings::parse(&value, "/returns").unwrap();
            prop_assert_eq!(settings.to_value(), value);
        }
    }
}
