//! A contract's caps (SPEC §4.5): compiled limits, where each period starts in the tenant's
//! timezone, and whether one more sale fits.
//!
//! Usage is counted per contract and period (one `cap_counters` row holds both the lead count
//! and the spend of a period), so a contract has at most one cap per period and kind.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::Value;

use crate::money::{MAX_CENTS, Money};

use super::config::{CapPeriod, ConfigError, from_json_at};

/// What a cap limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapLimit {
    /// At most this many sales in the period.
    Leads(i64),
    /// At most this much spent in the period.
    Spend(Money),
}

/// One cap, ready to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledCap {
    period: CapPeriod,
    limit: CapLimit,
    /// Names the cap in a `cap_reached` decline: `day max_leads 100`, `month max_spend 5000.00`.
    label: String,
}

/// How much of one period a contract has used (a `cap_counters` row; zero when none exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapUsage {
    pub leads: i64,
    pub spend: Money,
}

/// A contract's usage in the current period of every period kind, as read by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeriodUsage([CapUsage; 5]);

impl PeriodUsage {
    /// Usage of the current `period`.
    pub fn get(&self, period: CapPeriod) -> CapUsage {
        self.0[period.index()]
    }

    /// Records the usage of the current `period`.
    pub fn set(&mut self, period: CapPeriod, usage: CapUsage) {
        self.0[period.index()] = usage;
    }
}

impl CompiledCap {
    /// The cap's period.
    pub fn period(&self) -> CapPeriod {
        self.period
    }

    /// The cap's limit.
    pub fn limit(&self) -> CapLimit {
        self.limit
    }

    /// Human name of the cap, used as a decline's detail.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether one more sale at `price` stays within the cap, given the period's `usage`.
    pub fn fits(&self, usage: CapUsage, price: Money) -> bool {
        match self.limit {
            CapLimit::Leads(max) => usage.leads.saturating_add(1) <= max,
            CapLimit::Spend(max) => {
                usage.spend.cents().saturating_add(price.cents()) <= max.cents()
            }
        }
    }

    /// Whether no sale at all fits: the lead count is reached or the spend is used up.
    pub fn is_full(&self, usage: CapUsage) -> bool {
        !self.fits(usage, Money::from_cents(1))
    }
}

/// A contract's caps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompiledCaps {
    caps: Vec<CompiledCap>,
}

/// One element of the `caps` column, as stored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredCap {
    period: CapPeriod,
    max_leads: Option<i64>,
    max_spend_cents: Option<i64>,
}

impl CompiledCaps {
    /// Compiles a contract's `caps` column
    /// (`[{"period":"day","max_leads":100},{"period":"month","max_spend_cents":500000}]`);
    /// errors point under `/caps`.
    pub fn compile(caps: &Value) -> Result<CompiledCaps, Vec<ConfigError>> {
        let Value::Array(items) = caps else {
            return Err(vec![ConfigError::new("/caps", "must be an array of caps")]);
        };
        let mut errors = Vec::new();
        let mut compiled: Vec<CompiledCap> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = format!("/caps/{i}");
            let stored: StoredCap = match from_json_at(item, &at) {
                Ok(stored) => stored,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let period = stored.period;
            let limit = match (stored.max_leads, stored.max_spend_cents) {
                (Some(leads), None) if leads >= 0 => CapLimit::Leads(leads),
                (None, Some(cents)) if (0..=MAX_CENTS).contains(&cents) => {
                    CapLimit::Spend(Money::from_cents(cents))
                }
                (Some(_), None) => {
                    errors.push(ConfigError::new(
                        format!("{at}/max_leads"),
                        "must not be negative",
                    ));
                    continue;
                }
                (None, Some(_)) => {
                    errors.push(ConfigError::new(
                        format!("{at}/max_spend_cents"),
                        "must be a non-negative amount of cents",
                    ));
                    continue;
                }
                _ => {
                    errors.push(ConfigError::new(
                        at,
                        "a cap has exactly one of max_leads or max_spend_cents",
                    ));
                    continue;
                }
            };
            let label = match limit {
                CapLimit::Leads(max) => format!("{period} max_leads {max}"),
                CapLimit::Spend(max) => format!("{period} max_spend {max}"),
            };
            let same_kind = |other: &CompiledCap| {
                other.period == period
                    && matches!(
                        (other.limit, limit),
                        (CapLimit::Leads(_), CapLimit::Leads(_))
                            | (CapLimit::Spend(_), CapLimit::Spend(_))
                    )
            };
            if compiled.iter().any(same_kind) {
                errors.push(ConfigError::new(
                    at,
                    format!("duplicate cap: {period} already has this kind of limit"),
                ));
                continue;
            }
            compiled.push(CompiledCap {
                period,
                limit,
                label,
            });
        }
        if errors.is_empty() {
            Ok(CompiledCaps { caps: compiled })
        } else {
            Err(errors)
        }
    }

    /// The caps, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &CompiledCap> {
        self.caps.iter()
    }

    /// The first cap that no sale fits any more.
    pub fn first_full(&self, usage: &PeriodUsage) -> Option<&CompiledCap> {
        self.caps
            .iter()
            .find(|cap| cap.is_full(usage.get(cap.period)))
    }

    /// The first cap a sale at `price` would break.
    pub fn first_blocking(&self, usage: &PeriodUsage, price: Money) -> Option<&CompiledCap> {
        self.caps
            .iter()
            .find(|cap| !cap.fits(usage.get(cap.period), price))
    }
}

/// What a buyer's caps leave of its current periods (docs/revenue-recovery.md §4), computed
/// once per ping from the buyer's usage and checked for each of its contracts: the tightest
/// lead cap and the tightest spend cap. One more sale at a price fits every cap exactly when it
/// fits these two. `Copy` and a few words, as [`super::ContractState`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BuyerCapRoom {
    leads: Option<Room>,
    spend: Option<Room>,
}

/// One cap's room: what is left of its limit in the current period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Room {
    /// Leads, or cents, left (negative when an operator lowered the limit below the usage).
    left: i64,
    period: CapPeriod,
    limit: CapLimit,
}

impl BuyerCapRoom {
    /// The room the buyer's `caps` leave given its `usage` (no caps: room for anything).
    pub fn new(caps: &CompiledCaps, usage: &PeriodUsage) -> BuyerCapRoom {
        let mut room = BuyerCapRoom::default();
        for cap in caps.iter() {
            let used = usage.get(cap.period);
            let (slot, left) = match cap.limit {
                CapLimit::Leads(max) => (&mut room.leads, max.saturating_sub(used.leads)),
                CapLimit::Spend(max) => (
                    &mut room.spend,
                    max.cents().saturating_sub(used.spend.cents()),
                ),
            };
            // The tightest cap of each kind; the first in configuration order on a tie.
            if slot.is_none_or(|tightest| left < tightest.left) {
                *slot = Some(Room {
                    left,
                    period: cap.period,
                    limit: cap.limit,
                });
            }
        }
        room
    }

    /// The buyer has no caps.
    pub fn is_unlimited(&self) -> bool {
        self.leads.is_none() && self.spend.is_none()
    }

    /// The detail of a `cap_reached` decline when one more sale at `price` would pass a cap of
    /// the buyer's: "the buyer's day cap of 20 leads is reached", "the buyer's month spend cap of
    /// 5000.00 is reached".
    pub fn blocking(&self, price: Money) -> Option<String> {
        let leads = self.leads.filter(|room| room.left < 1);
        let spend = self.spend.filter(|room| room.left < price.cents());
        let room = leads.or(spend)?;
        Some(match room.limit {
            CapLimit::Leads(max) => {
                format!("the buyer's {} cap of {max} leads is reached", room.period)
            }
            CapLimit::Spend(max) => {
                format!("the buyer's {} spend cap of {max} is reached", room.period)
            }
        })
    }

    /// The detail of a `cap_reached` decline when no sale at all fits (a lead cap reached, or
    /// a spend cap used up).
    pub fn full(&self) -> Option<String> {
        self.blocking(Money::from_cents(1))
    }
}

/// The first instant of the `period` containing `now`, in the timezone `tz` (SPEC §4.5): the
/// hour, the day, the week from Monday, the month; `total` starts at the Unix epoch.
///
/// Boundaries are on the local wall clock. A boundary that does not exist (a DST gap, e.g. a
/// midnight skipped in America/Havana) starts at the first instant after the gap; one that
/// exists twice starts at its first occurrence, except an hour, whose second occurrence is a
/// period of its own.
pub fn period_start(period: CapPeriod, now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let local = now.with_timezone(&tz).naive_local();
    let date = local.date();
    let boundary = match period {
        CapPeriod::Total => return DateTime::UNIX_EPOCH,
        CapPeriod::Hour => local
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0)),
        CapPeriod::Day => Some(midnight(date)),
        CapPeriod::Week => Some(midnight(
            date - Duration::days(i64::from(date.weekday().num_days_from_monday())),
        )),
        CapPeriod::Month => date.with_day(1).map(midnight),
    }
    // Truncating a valid local time to its hour, or a date to its week or month, always works.
    .unwrap_or(local);
    match tz.from_local_datetime(&boundary) {
        LocalResult::Single(start) => start.with_timezone(&Utc),
        LocalResult::Ambiguous(first, second) => {
            let second = second.with_timezone(&Utc);
            if period == CapPeriod::Hour && second <= now {
                second
            } else {
                first.with_timezone(&Utc)
            }
        }
        LocalResult::None => first_instant_at_or_after(tz, boundary),
    }
}

fn midnight(date: NaiveDate) -> NaiveDateTime {
    date.and_time(chrono::NaiveTime::MIN)
}

/// The earliest instant whose local time in `tz` is at or after `local`, for a `local` time
/// that falls in a DST gap (so that instant is the transition itself).
fn first_instant_at_or_after(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    // Offsets are within ±15 h, so the answer lies within a day and a quarter of `local` read
    // as UTC; across a gap the local time only jumps forward, so the search is monotonic.
    let centre = local.and_utc().timestamp();
    let (mut before, mut after) = (centre - 30 * 3600, centre + 30 * 3600);
    let reaches = |secs: i64| {
        DateTime::from_timestamp(secs, 0)
            .is_some_and(|t| tz.from_utc_datetime(&t.naive_utc()).naive_local() >= local)
    };
    while after - before > 1 {
        let middle = before + (after - before) / 2;
        if reaches(middle) {
            after = middle
        } else {
            before = middle
        }
    }
    DateTime::from_timestamp(after, 0).unwrap_or(DateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::{Havana, New_York, Sao_Paulo};
    use chrono_tz::Asia::Kolkata;
    use chrono_tz::Australia::Lord_Howe;
    use serde_json::json;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn start(period: CapPeriod, now: &str, tz: Tz) -> String {
        period_start(period, at(now), tz).to_rfc3339()
    }

    #[test]
    fn days_start_at_local_midnight_not_utc() {
        // 2026-11-25 03:00Z is still the 24th in New York (UTC-5).
        assert_eq!(
            start(CapPeriod::Day, "2026-11-25T03:00:00Z", New_York),
            "2026-11-24T05:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Day, "2026-11-25T04:59:59Z", New_York),
            "2026-11-24T05:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Day, "2026-11-25T05:00:00Z", New_York),
            "2026-11-25T05:00:00+00:00"
        );
        // Summer: UTC-4.
        assert_eq!(
            start(CapPeriod::Day, "2026-07-04T12:00:00Z", New_York),
            "2026-07-04T04:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Day, "2026-07-04T12:00:00Z", Kolkata),
            "2026-07-03T18:30:00+00:00"
        );
    }

    #[test]
    fn hours_start_on_the_local_hour() {
        assert_eq!(
            start(CapPeriod::Hour, "2026-11-25T17:05:09.5Z", New_York),
            "2026-11-25T17:00:00+00:00"
        );
        // Half-hour offsets: Kolkata's hours start at :30 UTC.
        assert_eq!(
            start(CapPeriod::Hour, "2026-11-25T17:05:00Z", Kolkata),
            "2026-11-25T16:30:00+00:00"
        );
    }

    #[test]
    fn weeks_start_on_monday() {
        // Sunday 2026-11-29 23:00 New York = Monday 04:00Z: still the week of Monday the 23rd.
        assert_eq!(
            start(CapPeriod::Week, "2026-11-30T04:00:00Z", New_York),
            "2026-11-23T05:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Week, "2026-11-30T05:00:00Z", New_York),
            "2026-11-30T05:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Week, "2026-11-25T12:00:00Z", New_York),
            "2026-11-23T05:00:00+00:00"
        );
        // A week that contains the fall-back change starts at the EDT midnight.
        assert_eq!(
            start(CapPeriod::Week, "2026-11-01T12:00:00Z", New_York),
            "2026-10-26T04:00:00+00:00"
        );
    }

    #[test]
    fn months_roll_over_at_local_midnight() {
        assert_eq!(
            start(CapPeriod::Month, "2026-12-01T04:59:59Z", New_York),
            "2026-11-01T04:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Month, "2026-12-01T05:00:00Z", New_York),
            "2026-12-01T05:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Month, "2027-01-01T04:00:00Z", New_York),
            "2026-12-01T05:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Month, "2024-02-29T23:00:00Z", New_York),
            "2024-02-01T05:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Total, "2026-12-01T05:00:00Z", New_York),
            "1970-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn spring_forward_day_is_23_hours() {
        // 2026-03-08: New York goes from 02:00 EST to 03:00 EDT.
        assert_eq!(
            start(CapPeriod::Day, "2026-03-08T12:00:00Z", New_York),
            "2026-03-08T05:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Day, "2026-03-09T03:59:59Z", New_York),
            "2026-03-08T05:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Day, "2026-03-09T04:00:00Z", New_York),
            "2026-03-09T04:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Hour, "2026-03-08T06:59:59Z", New_York),
            "2026-03-08T06:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Hour, "2026-03-08T07:30:00Z", New_York),
            "2026-03-08T07:00:00+00:00"
        );
    }

    #[test]
    fn fall_back_day_is_25_hours_and_its_repeated_hour_counts_twice() {
        // 2026-11-01: New York repeats 01:00–02:00 (EDT, then EST).
        assert_eq!(
            start(CapPeriod::Day, "2026-11-01T04:00:00Z", New_York),
            "2026-11-01T04:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Day, "2026-11-02T04:59:59Z", New_York),
            "2026-11-01T04:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Hour, "2026-11-01T05:30:00Z", New_York),
            "2026-11-01T05:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Hour, "2026-11-01T06:30:00Z", New_York),
            "2026-11-01T06:00:00+00:00"
        );
    }

    #[test]
    fn a_skipped_midnight_starts_the_day_after_the_gap() {
        // 2024-03-10: Havana goes from 00:00 CST straight to 01:00 CDT (05:00Z).
        assert_eq!(
            start(CapPeriod::Day, "2024-03-10T12:00:00Z", Havana),
            "2024-03-10T05:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Day, "2024-03-10T04:59:59Z", Havana),
            "2024-03-09T05:00:00+00:00"
        );
        // 2018-11-04: São Paulo skipped midnight too (−03 → −02 at 03:00Z).
        assert_eq!(
            start(CapPeriod::Day, "2018-11-04T12:00:00Z", Sao_Paulo),
            "2018-11-04T03:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Week, "2018-11-06T12:00:00Z", Sao_Paulo),
            "2018-11-05T02:00:00+00:00"
        );
    }

    #[test]
    fn a_repeated_midnight_starts_the_day_at_its_first_occurrence() {
        // 2024-11-03: Havana goes from 01:00 CDT back to 00:00 CST, so midnight happens twice.
        assert_eq!(
            start(CapPeriod::Day, "2024-11-03T04:30:00Z", Havana),
            "2024-11-03T04:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Day, "2024-11-03T05:30:00Z", Havana),
            "2024-11-03T04:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Month, "2024-11-03T05:30:00Z", Havana),
            "2024-11-01T04:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Hour, "2024-11-03T04:30:00Z", Havana),
            "2024-11-03T04:00:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Hour, "2024-11-03T05:30:00Z", Havana),
            "2024-11-03T05:00:00+00:00"
        );
    }

    #[test]
    fn an_hour_whose_start_is_skipped_starts_at_the_transition() {
        // 2026-10-04: Lord Howe moves from 02:00 (+10:30) to 02:30 (+11) at 15:30Z on the 3rd.
        assert_eq!(
            start(CapPeriod::Hour, "2026-10-03T15:40:00Z", Lord_Howe),
            "2026-10-03T15:30:00+00:00"
        );
        assert_eq!(
            start(CapPeriod::Hour, "2026-10-03T15:29:00Z", Lord_Howe),
            "2026-10-03T14:30:00+00:00"
        );
    }

    #[test]
    fn period_starts_never_pass_now_and_are_stable_within_a_period() {
        for tz in [New_York, Havana, Lord_Howe, Kolkata, Sao_Paulo] {
            for period in CapPeriod::ALL {
                let mut now = at("2024-01-01T00:00:00Z");
                while now < at("2024-12-31T00:00:00Z") {
                    let begin = period_start(period, now, tz);
                    assert!(begin <= now, "{tz} {period} {now}");
                    assert_eq!(
                        period_start(period, begin, tz),
                        begin,
                        "{tz} {period} {now}"
                    );
                    now += Duration::minutes(97);
                }
            }
        }
    }

    fn usage(leads: i64, spend_cents: i64) -> PeriodUsage {
        let mut usage = PeriodUsage::default();
        usage.set(
            CapPeriod::Day,
            CapUsage {
                leads,
                spend: Money::from_cents(spend_cents),
            },
        );
        usage.set(
            CapPeriod::Month,
            CapUsage {
                leads,
                spend: Money::from_cents(spend_cents),
            },
        );
        usage
    }

    #[test]
    fn a_sale_fits_while_the_cap_holds_it() {
        let caps = CompiledCaps::compile(&json!([
            { "period": "day", "max_leads": 100 },
            { "period": "month", "max_spend_cents": 500000 }
        ]))
        .unwrap();
        let labels: Vec<&str> = caps.iter().map(CompiledCap::label).collect();
        assert_eq!(labels, ["day max_leads 100", "month max_spend 5000.00"]);
        let price = Money::from_cents(1250);
        assert_eq!(caps.first_blocking(&usage(99, 498_750), price), None);
        assert_eq!(
            caps.first_blocking(&usage(100, 0), price)
                .map(CompiledCap::label),
            Some("day max_leads 100")
        );
        assert_eq!(
            caps.first_blocking(&usage(0, 498_751), price)
                .map(CompiledCap::label),
            Some("month max_spend 5000.00")
        );
        assert_eq!(caps.first_full(&usage(0, 499_999)), None);
        assert_eq!(
            caps.first_full(&usage(0, 500_000)).map(CompiledCap::period),
            Some(CapPeriod::Month)
        );
        assert_eq!(
            caps.first_full(&usage(100, 500_000))
                .map(CompiledCap::period),
            Some(CapPeriod::Day)
        );
        // Another period's usage does not count.
        let mut other = PeriodUsage::default();
        other.set(
            CapPeriod::Week,
            CapUsage {
                leads: 1000,
                spend: Money::from_cents(10_000_000),
            },
        );
        assert_eq!(caps.first_full(&other), None);
        let zero = CompiledCaps::compile(&json!([{ "period": "total", "max_leads": 0 }])).unwrap();
        assert!(zero.first_full(&PeriodUsage::default()).is_some());
    }

    #[test]
    fn a_buyer_cap_room_is_its_tightest_caps() {
        let caps = CompiledCaps::compile(&json!([
            { "period": "month", "max_leads": 100 },
            { "period": "day", "max_leads": 20 },
            { "period": "day", "max_spend_cents": 10_000 }
        ]))
        .unwrap();
        let room = BuyerCapRoom::new(&caps, &usage(19, 8_000));
        assert!(!room.is_unlimited());
        assert_eq!(room.full(), None);
        assert_eq!(room.blocking(Money::from_cents(2_000)), None);
        assert_eq!(
            room.blocking(Money::from_cents(2_001)).as_deref(),
            Some("the buyer's day spend cap of 100.00 is reached")
        );
        // The 20th lead was the last: the day's lead cap names the decline, before the spend.
        let full = BuyerCapRoom::new(&caps, &usage(20, 10_000));
        assert_eq!(
            full.full().as_deref(),
            Some("the buyer's day cap of 20 leads is reached")
        );
        // The month's cap is the tighter one once the month has fewer leads left.
        let mut month = PeriodUsage::default();
        month.set(
            CapPeriod::Month,
            CapUsage {
                leads: 100,
                spend: Money::ZERO,
            },
        );
        assert_eq!(
            BuyerCapRoom::new(&caps, &month).full().as_deref(),
            Some("the buyer's month cap of 100 leads is reached")
        );
        // Usage beyond a limit lowered since is full too; no caps is room for anything.
        assert!(BuyerCapRoom::new(&caps, &usage(25, 0)).full().is_some());
        let none = BuyerCapRoom::new(&CompiledCaps::default(), &usage(1_000, 1_000_000));
        assert!(none.is_unlimited());
        assert_eq!(none.blocking(Money::from_cents(i64::MAX)), None);
    }

    #[test]
    fn bad_caps_are_reported_with_pointers() {
        let errors = CompiledCaps::compile(&json!([
            { "period": "year", "max_leads": 1 },
            { "period": "day", "max_leads": 1, "max_spend_cents": 1 },
            { "period": "day" },
            { "period": "day", "max_leads": -1 },
            { "period": "day", "max_spend_cents": -1 },
            { "period": "day", "max_leads": 10 },
            { "period": "day", "max_leads": 20 },
            { "period": "day", "max_spend": 20 }
        ]))
        .unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/caps/0",
                "/caps/1",
                "/caps/2",
                "/caps/3/max_leads",
                "/caps/4/max_spend_cents",
                "/caps/6",
                "/caps/7"
            ]
        );
        assert!(CompiledCaps::compile(&json!(null)).is_err());
        assert_eq!(
            CompiledCaps::compile(&json!([])).unwrap(),
            CompiledCaps::default()
        );
    }
}
