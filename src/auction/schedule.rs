//! A contract's weekly schedule (SPEC §4.5): open intervals of local wall-clock time per weekday,
//! in the schedule's own timezone or the tenant's.
//!
//! An interval `["08:00", "18:00"]` is open from 08:00:00 up to, not including, 18:00:00 local
//! time; `"24:00"` (allowed as an end only) closes at the end of the day. Intervals may overlap;
//! one that crosses midnight is written as two. On DST days the wall clock decides: a skipped
//! local hour is simply never open, a repeated one is open both times.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::config::ConfigError;

const DAY_KEYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MINUTES_PER_DAY: u16 = 24 * 60;

/// When a contract buys: always, or on a weekly timetable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledSchedule {
    weekly: Option<Weekly>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Weekly {
    /// `None`: the tenant's timezone.
    timezone: Option<Tz>,
    /// Open `[start, end)` minutes of the local day, Monday first.
    days: [Vec<(u16, u16)>; 7],
}

impl CompiledSchedule {
    /// Always open (a `null` schedule).
    pub const ALWAYS_OPEN: CompiledSchedule = CompiledSchedule { weekly: None };

    /// Compiles a contract's `schedule` column (`null` = always open); errors point under
    /// `/schedule` (e.g. `/schedule/days/mon/0/1`).
    pub fn compile(schedule: &Value) -> Result<CompiledSchedule, Vec<ConfigError>> {
        let object = match schedule {
            Value::Null => return Ok(CompiledSchedule::ALWAYS_OPEN),
            Value::Object(object) => object,
            _ => {
                return Err(vec![ConfigError::new(
                    "/schedule",
                    "must be null or an object with days",
                )]);
            }
        };
        let mut errors = Vec::new();
        for key in object
            .keys()
            .filter(|k| !matches!(k.as_str(), "timezone" | "days"))
        {
            errors.push(ConfigError::new(format!("/schedule/{key}"), "unknown key"));
        }
        let timezone = match object.get("timezone") {
            None | Some(Value::Null) => None,
            Some(value) => {
                let tz = value.as_str().and_then(|name| name.parse::<Tz>().ok());
                if tz.is_none() {
                    errors.push(ConfigError::new(
                        "/schedule/timezone",
                        "must be an IANA timezone such as America/Chicago",
                    ));
                }
                tz
            }
        };
        let mut days: [Vec<(u16, u16)>; 7] = Default::default();
        match object.get("days") {
            Some(Value::Object(by_day)) => {
                for (key, intervals) in by_day {
                    let at = format!("/schedule/days/{key}");
                    match DAY_KEYS.iter().position(|d| d == key) {
                        Some(day) => days[day] = compile_day(intervals, &at, &mut errors),
                        None => errors.push(ConfigError::new(
                            at,
                            "unknown day: use mon, tue, wed, thu, fri, sat, sun",
                        )),
                    }
                }
            }
            _ => errors.push(ConfigError::new(
                "/schedule/days",
                "must be an object of weekdays",
            )),
        }
        if errors.is_empty() {
            Ok(CompiledSchedule {
                weekly: Some(Weekly { timezone, days }),
            })
        } else {
            Err(errors)
        }
    }

    /// Whether the contract buys at `now`, read on the wall clock of its timezone
    /// (`tenant_tz` when the schedule names none).
    pub fn is_open(&self, now: DateTime<Utc>, tenant_tz: Tz) -> bool {
        let Some(weekly) = &self.weekly else {
            return true;
        };
        let local = now.with_timezone(&weekly.timezone.unwrap_or(tenant_tz));
        let minute = (local.hour() * 60 + local.minute()) as u16;
        weekly.days[local.weekday().num_days_from_monday() as usize]
            .iter()
            .any(|&(start, end)| start <= minute && minute < end)
    }
}

/// Compiles one weekday's list of `[start, end]` intervals found at `at`.
fn compile_day(intervals: &Value, at: &str, errors: &mut Vec<ConfigError>) -> Vec<(u16, u16)> {
    let Value::Array(items) = intervals else {
        errors.push(ConfigError::new(
            at,
            "must be a list of [\"HH:MM\", \"HH:MM\"] intervals",
        ));
        return Vec::new();
    };
    let mut day = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let interval_at = format!("{at}/{i}");
        let Some([start, end]) = item
            .as_array()
            .and_then(|pair| <&[Value; 2]>::try_from(pair.as_slice()).ok())
        else {
            errors.push(ConfigError::new(
                interval_at,
                "must be [\"HH:MM\", \"HH:MM\"]",
            ));
            continue;
        };
        let start = start
            .as_str()
            .and_then(parse_clock)
            .filter(|&m| m < MINUTES_PER_DAY);
        let end = end.as_str().and_then(parse_clock);
        match (start, end) {
            (None, _) => errors.push(ConfigError::new(
                format!("{interval_at}/0"),
                "must be a time from 00:00 to 23:59",
            )),
            (_, None) => errors.push(ConfigError::new(
                format!("{interval_at}/1"),
                "must be a time from 00:00 to 24:00",
            )),
            (Some(start), Some(end)) if end <= start => {
                errors.push(ConfigError::new(
                    format!("{interval_at}/1"),
                    "must be after the start",
                ));
            }
            (Some(start), Some(end)) => day.push((start, end)),
        }
    }
    day
}

/// Minutes since midnight of `HH:MM` (00:00–23:59, or 24:00).
fn parse_clock(text: &str) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(hours) || !two_digits(minutes) {
        return None;
    }
    let (hours, minutes): (u16, u16) = (hours.parse().ok()?, minutes.parse().ok()?);
    let minute = hours * 60 + minutes;
    (minutes < 60 && minute <= MINUTES_PER_DAY).then_some(minute)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::{Chicago, New_York};
    use chrono_tz::Asia::Kolkata;
    use serde_json::json;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn business_hours() -> CompiledSchedule {
        CompiledSchedule::compile(&json!({
            "timezone": "America/Chicago",
            "days": { "mon": [["08:00", "18:00"]], "tue": [["08:00", "12:00"], ["13:00", "18:00"]],
                      "sat": [["10:00", "14:00"]], "sun": [] }
        }))
        .unwrap()
    }

    #[test]
    fn null_is_always_open_and_empty_days_always_closed() {
        let open = CompiledSchedule::compile(&Value::Null).unwrap();
        assert!(open.is_open(at("2026-11-25T03:00:00Z"), New_York));
        let closed = CompiledSchedule::compile(&json!({"days": {}})).unwrap();
        for hour in 0..24 * 7 {
            let now = at("2026-11-23T00:00:00Z") + chrono::Duration::hours(hour);
            assert!(!closed.is_open(now, New_York));
        }
    }

    #[test]
    fn intervals_are_local_and_half_open() {
        let schedule = business_hours();
        // Monday 2026-11-23, Chicago is UTC-6.
        assert!(!schedule.is_open(at("2026-11-23T13:59:59Z"), New_York));
        assert!(schedule.is_open(at("2026-11-23T14:00:00Z"), New_York));
        assert!(schedule.is_open(at("2026-11-23T23:59:59Z"), New_York));
        assert!(!schedule.is_open(at("2026-11-24T00:00:00Z"), New_York));
        // Tuesday's lunch break.
        assert!(schedule.is_open(at("2026-11-24T17:59:00Z"), New_York));
        assert!(!schedule.is_open(at("2026-11-24T18:30:00Z"), New_York));
        assert!(schedule.is_open(at("2026-11-24T19:00:00Z"), New_York));
        // Wednesday is absent: closed; Sunday is [] : closed.
        assert!(!schedule.is_open(at("2026-11-25T18:00:00Z"), New_York));
        assert!(!schedule.is_open(at("2026-11-29T18:00:00Z"), New_York));
        // Saturday.
        assert!(schedule.is_open(at("2026-11-28T16:00:00Z"), New_York));
    }

    #[test]
    fn the_tenant_timezone_applies_when_the_schedule_names_none() {
        let schedule =
            CompiledSchedule::compile(&json!({"days": {"wed": [["09:00", "10:00"]]}})).unwrap();
        let now = at("2026-11-25T14:30:00Z"); // 09:30 New York, 08:30 Chicago, 20:00 Kolkata
        assert!(schedule.is_open(now, New_York));
        assert!(!schedule.is_open(now, Chicago));
        assert!(!schedule.is_open(now, Kolkata));
        assert!(schedule.is_open(at("2026-11-25T03:30:00Z"), Kolkata)); // 09:00 IST (UTC+5:30)
        assert!(!schedule.is_open(at("2026-11-25T04:30:00Z"), Kolkata)); // 10:00 IST
    }

    #[test]
    fn twenty_four_hundred_ends_the_day() {
        let schedule = CompiledSchedule::compile(
            &json!({"timezone": "UTC", "days": {"mon": [["22:00", "24:00"]]}}),
        )
        .unwrap();
        assert!(schedule.is_open(at("2026-11-23T23:59:59Z"), New_York));
        assert!(!schedule.is_open(at("2026-11-24T00:00:00Z"), New_York));
        assert!(!schedule.is_open(at("2026-11-23T21:59:59Z"), New_York));
    }

    #[test]
    fn spring_forward_follows_the_wall_clock() {
        // 2026-03-08 (a Sunday): New York skips 02:00–03:00 local (07:00Z is 03:00 EDT).
        let schedule = CompiledSchedule::compile(
            &json!({"days": {"sun": [["01:00", "02:30"], ["03:00", "04:00"]]}}),
        )
        .unwrap();
        assert!(schedule.is_open(at("2026-03-08T06:59:59Z"), New_York)); // 01:59:59 EST
        assert!(schedule.is_open(at("2026-03-08T07:00:00Z"), New_York)); // 03:00 EDT
        assert!(schedule.is_open(at("2026-03-08T07:59:59Z"), New_York)); // 03:59:59 EDT
        assert!(!schedule.is_open(at("2026-03-08T08:00:00Z"), New_York)); // 04:00 EDT
        // Eight-to-six on the same day is still 08:00–18:00 on the clock, now UTC-4.
        let day =
            CompiledSchedule::compile(&json!({"days": {"sun": [["08:00", "18:00"]]}})).unwrap();
        assert!(!day.is_open(at("2026-03-08T11:59:59Z"), New_York));
        assert!(day.is_open(at("2026-03-08T12:00:00Z"), New_York));
        assert!(!day.is_open(at("2026-03-08T22:00:00Z"), New_York));
    }

    #[test]
    fn fall_back_opens_the_repeated_hour_twice() {
        // 2026-11-01 (a Sunday): New York repeats 01:00–02:00 (05:00Z EDT, then 06:00Z EST).
        let schedule =
            CompiledSchedule::compile(&json!({"days": {"sun": [["01:00", "02:00"]]}})).unwrap();
        assert!(!schedule.is_open(at("2026-11-01T04:59:59Z"), New_York));
        assert!(schedule.is_open(at("2026-11-01T05:30:00Z"), New_York));
        assert!(schedule.is_open(at("2026-11-01T06:30:00Z"), New_York));
        assert!(!schedule.is_open(at("2026-11-01T07:00:00Z"), New_York)); // 02:00 EST
    }

    #[test]
    fn clock_times_are_strict() {
        assert_eq!(parse_clock("00:00"), Some(0));
        assert_eq!(parse_clock("23:59"), Some(1439));
        assert_eq!(parse_clock("24:00"), Some(1440));
        for bad in [
            "24:01", "8:00", "08:60", "0800", "08:00:00", "aa:bb", "", "25:00", "-1:00",
        ] {
            assert_eq!(parse_clock(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_schedules_are_reported_with_pointers() {
        let errors = CompiledSchedule::compile(&json!({
            "timezone": "Mars/Olympus",
            "days": { "mon": [["18:00", "08:00"], ["24:00", "24:00"], ["08:00"], ["07:00", "24:30"]],
                      "funday": [], "tue": "all day" },
            "tz": "UTC"
        }))
        .unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/schedule/tz",
                "/schedule/timezone",
                "/schedule/days/funday",
                "/schedule/days/mon/0/1",
                "/schedule/days/mon/1/0",
                "/schedule/days/mon/2",
                "/schedule/days/mon/3/1",
                "/schedule/days/tue",
            ]
        );
        assert_eq!(
            CompiledSchedule::compile(&json!({"timezone": "UTC"})).unwrap_err()[0].pointer,
            "/schedule/days"
        );
        assert_eq!(
            CompiledSchedule::compile(&json!([])).unwrap_err()[0].pointer,
            "/schedule"
        );
    }
}
