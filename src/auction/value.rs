//! Typed scalar values shared by the schema, the filters and the lead: exact number
//! comparison, strict dates, and JSON pointer escaping.

use std::borrow::Cow;
use std::cmp::Ordering;

use chrono::NaiveDate;
use serde_json::Value;

/// A JSON number: an `i64` when it is an integer that fits, otherwise an `f64`.
///
/// Comparisons between the two kinds are exact: `42 == 42.0`, and
/// `9007199254740993 > 9007199254740992.0` although both are the same `f64`.
#[derive(Debug, Clone, Copy)]
pub enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    /// The number a JSON value holds, if it is one.
    pub fn from_json(value: &Value) -> Option<Num> {
        let Value::Number(n) = value else { return None };
        match n.as_i64() {
            Some(i) => Some(Num::Int(i)),
            None => n.as_f64().filter(|f| f.is_finite()).map(Num::Float),
        }
    }

    /// Exact total order over finite numbers.
    pub fn cmp_exact(self, other: Num) -> Ordering {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.cmp(&b),
            // Both finite (JSON has no NaN), so partial_cmp is total here; -0.0 equals 0.0.
            (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            (Num::Int(a), Num::Float(b)) => cmp_int_float(a, b),
            (Num::Float(a), Num::Int(b)) => cmp_int_float(b, a).reverse(),
        }
    }
}

impl PartialEq for Num {
    fn eq(&self, other: &Num) -> bool {
        self.cmp_exact(*other) == Ordering::Equal
    }
}

/// Compares an integer with a finite float without rounding either.
fn cmp_int_float(int: i64, float: f64) -> Ordering {
    // 2^63 is exactly representable; every i64 is below it and at or above -2^63.
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if float >= TWO_POW_63 {
        return Ordering::Less;
    }
    if float < -TWO_POW_63 {
        return Ordering::Greater;
    }
    let whole = float.trunc();
    // `whole` is within the i64 range here, so the cast is exact.
    match int.cmp(&(whole as i64)) {
        Ordering::Equal => 0.0_f64
            .partial_cmp(&(float - whole))
            .unwrap_or(Ordering::Equal),
        unequal => unequal,
    }
}

/// Parses `YYYY-MM-DD` strictly: four-digit year, two-digit month and day, a real calendar date.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    let well_formed = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !well_formed {
        return None;
    }
    let year = text[0..4].parse().ok()?;
    let month = text[5..7].parse().ok()?;
    let day = text[8..10].parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day)
}

/// A value of a lead field or a filter constant, in the form the field's type compares by.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// `string` as sent; `email` and `phone` in their normalized form.
    Str(Cow<'a, str>),
    Num(Num),
    Bool(bool),
    Date(NaiveDate),
}

impl Scalar<'_> {
    /// Order between two values of the same kind; `None` across kinds (or for booleans).
    pub fn compare(&self, other: &Scalar<'_>) -> Option<Ordering> {
        match (self, other) {
            (Scalar::Str(a), Scalar::Str(b)) => Some(a.as_ref().cmp(b.as_ref())),
            (Scalar::Num(a), Scalar::Num(b)) => Some(a.cmp_exact(*b)),
            (Scalar::Date(a), Scalar::Date(b)) => Some(a.cmp(b)),
            (Scalar::Bool(a), Scalar::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// The same value, owning its text.
    pub fn into_owned(self) -> Scalar<'static> {
        match self {
            Scalar::Str(s) => Scalar::Str(Cow::Owned(s.into_owned())),
            Scalar::Num(n) => Scalar::Num(n),
            Scalar::Bool(b) => Scalar::Bool(b),
            Scalar::Date(d) => Scalar::Date(d),
        }
    }
}

/// Escapes one reference token of a JSON pointer (RFC 6901): `~` → `~0`, `/` → `~1`.
pub fn pointer_token(token: &str) -> Cow<'_, str> {
    if token.contains(['~', '/']) {
        Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(token)
    }
}

/// Whether `text` is a syntactically valid JSON pointer (empty, or `/`-separated tokens
/// whose `~` escapes are `~0` or `~1`).
pub fn is_json_pointer(text: &str) -> bool {
    if text.is_empty() {
        return true;
    }
    text.starts_with('/')
        && text
            .split('~')
            .skip(1)
            .all(|rest| rest.starts_with(['0', '1']))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_exactly_across_integer_and_float() {
        let n = |v: Value| Num::from_json(&v).unwrap();
        assert_eq!(n(json!(42)), n(json!(42.0)));
        assert_eq!(n(json!(42)).cmp_exact(n(json!(42.5))), Ordering::Less);
        assert_eq!(n(json!(-3)).cmp_exact(n(json!(-3.5))), Ordering::Greater);
        assert_eq!(n(json!(-3)).cmp_exact(n(json!(-2.5))), Ordering::Less);
        // 2^53 + 1 is not representable as f64: an f64 comparison would call these equal.
        assert_eq!(
            Num::Int(9_007_199_254_740_993).cmp_exact(Num::Float(9_007_199_254_740_992.0)),
            Ordering::Greater
        );
        assert_eq!(
            Num::Int(i64::MAX).cmp_exact(Num::Float(9.3e18)),
            Ordering::Less
        );
        assert_eq!(
            Num::Int(i64::MIN).cmp_exact(Num::Float(-9.3e18)),
            Ordering::Greater
        );
        assert_eq!(
            Num::Float(1e300).cmp_exact(Num::Int(i64::MAX)),
            Ordering::Greater
        );
        assert_eq!(
            n(json!(18446744073709551615u64)).cmp_exact(Num::Int(i64::MAX)),
            Ordering::Greater
        );
        assert!(Num::from_json(&json!("42")).is_none());
    }

    #[test]
    fn dates_are_strict_calendar_dates() {
        assert_eq!(
            parse_date("2024-02-29"),
            NaiveDate::from_ymd_opt(2024, 2, 29)
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-05",
            "24-01-05",
            "2024/01/05",
            "2024-01-5 ",
            "",
            "２０２４-01-01",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn scalars_compare_within_a_kind_only() {
        let a = Scalar::Str(Cow::Borrowed("a"));
        assert_eq!(
            a.compare(&Scalar::Str(Cow::Borrowed("b"))),
            Some(Ordering::Less)
        );
        assert_eq!(a.compare(&Scalar::Num(Num::Int(1))), None);
        assert_eq!(Scalar::Num(Num::Int(2)), Scalar::Num(Num::Float(2.0)));
    }

    #[test]
    fn pointer_tokens_are_escaped() {
        assert_eq!(pointer_token("state"), "state");
        assert_eq!(pointer_token("a/b~c"), "a~1b~0c");
        assert!(is_json_pointer(""));
        assert!(is_json_pointer("/bid/0/a~1b"));
        assert!(!is_json_pointer("bid"));
        assert!(!is_json_pointer("/a~2"));
        assert!(!is_json_pointer("/a~"));
    }
}
