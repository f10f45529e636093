//! JSON read without losing a number's decimal value.
//!
//! serde_json keeps a JSON number as an `i64`, a `u64` or an `f64`. A decimal with more than
//! 15 significant digits (or an integer beyond 64 bits) does not survive the `f64`:
//! `12.999999999999999999` becomes `13.0`, and an amount read from it would be 13.00 where
//! SPEC §1 says exact, then truncated: 12.99. Rather than make every `Value` in Gavel keep its
//! numbers as text (serde_json's `arbitrary_precision`, which changes number equality and
//! allocates for every number of every ping), the few numbers that would change are written
//! as strings of their own text before parsing. [`crate::money::Money::from_json`] reads a
//! numeric string exactly, so an amount keeps its value (an admin amount with many decimals is
//! refused, a buyer's bid is truncated to the cent); where a plain number is required, such a
//! value is refused as not a number rather than silently rounded.
//!
//! The common case costs one pass over the bytes and no allocation.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde_json::Value;

/// Parses `bytes` as JSON, numbers that an `f64` would change read as strings of their text.
pub fn from_slice(bytes: &[u8]) -> serde_json::Result<Value> {
    serde_json::from_slice(&quote_inexact_numbers(bytes))
}

/// `bytes` with every number that does not survive an `f64` made a string of its own text;
/// the same bytes (borrowed) when there is none, or when `bytes` is not valid JSON (so that
/// quoting cannot make an invalid document valid: the caller's parse reports it).
pub fn quote_inexact_numbers(bytes: &[u8]) -> Cow<'_, [u8]> {
    let spans = inexact_number_spans(bytes);
    if spans.is_empty() || serde_json::from_slice::<IgnoredAny>(bytes).is_err() {
        return Cow::Borrowed(bytes);
    }
    let mut quoted = Vec::with_capacity(bytes.len() + 2 * spans.len());
    let mut from = 0;
    for (start, end) in spans {
        quoted.extend_from_slice(&bytes[from..start]);
        quoted.push(b'"');
        quoted.extend_from_slice(&bytes[start..end]);
        quoted.push(b'"');
        from = end;
    }
    quoted.extend_from_slice(&bytes[from..]);
    Cow::Owned(quoted)
}

/// Whether `text` is a number that [`quote_inexact_numbers`] made a string of (or a string
/// spelled like one): a check that requires a JSON number accepts it as the number it is.
pub fn is_inexact_number(text: &str) -> bool {
    Decimal::parse(text).is_some() && !survives_f64(text)
}

/// Where the numbers outside strings are that an `f64` would change.
fn inexact_number_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                if let Ok(text) = std::str::from_utf8(&bytes[start..i])
                    && !survives_f64(text)
                {
                    spans.push((start, i));
                }
            }
            _ => i += 1,
        }
    }
    spans
}

/// Whether serde_json reads `text` (a JSON number) without changing its decimal value: an
/// integer it keeps as `i64`/`u64`, a decimal of at most 15 significant digits (DBL_DIG: such a
/// decimal is the shortest text of its `f64`, which is what serde_json writes back), or one
/// whose `f64` writes back as the same decimal.
fn survives_f64(text: &str) -> bool {
    if !text.contains(['.', 'e', 'E']) {
        return text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok();
    }
    let Some(decimal) = Decimal::parse(text) else {
        return true; // Not a number: serde_json refuses it anyway.
    };
    if decimal.digit_count() <= 15 && (-290..=290).contains(&decimal.exponent) {
        return true;
    }
    let Some(written) = text
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
    else {
        return false;
    };
    let written = written.to_string();
    Decimal::parse(&written).is_some_and(|back| back.same_value(&decimal))
}

/// A decimal as significant digits (no leading or trailing zeros) × 10^exponent.
#[derive(Debug, PartialEq, Eq)]
struct Decimal<'a> {
    negative: bool,
    /// The significant digits, possibly split by the decimal point: (before, after).
    digits: (&'a str, &'a str),
    exponent: i64,
}

impl<'a> Decimal<'a> {
    fn parse(text: &'a str) -> Option<Decimal<'a>> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i64>().ok()?),
            None => (unsigned, 0),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if !(whole.bytes().chain(fraction.bytes())).all(|b| b.is_ascii_digit()) {
            return None;
        }
        // value = whole.fraction × 10^exponent; strip the zeros that carry no digit.
        let mut exponent = exponent.checked_sub(i64::try_from(fraction.len()).ok()?)?;
        let mut whole = whole.trim_start_matches('0');
        let mut fraction = fraction;
        if whole.is_empty() {
            fraction = fraction.trim_start_matches('0');
        }
        let trimmed = fraction.trim_end_matches('0');
        exponent += i64::try_from(fraction.len() - trimmed.len()).ok()?;
        fraction = trimmed;
        if fraction.is_empty() {
            let trimmed = whole.trim_end_matches('0');
            exponent += i64::try_from(whole.len() - trimmed.len()).ok()?;
            whole = trimmed;
        }
        if whole.is_empty() && fraction.is_empty() {
            return Some(Decimal {
                negative: false,
                digits: ("", ""),
                exponent: 0,
            });
        }
        Some(Decimal {
            negative,
            digits: (whole, fraction),
            exponent,
        })
    }

    fn digit_count(&self) -> usize {
        self.digits.0.len() + self.digits.1.len()
    }

    /// Equal values, whatever their spelling (`1.5e3`, `1500.0`).
    fn same_value(&self, other: &Decimal<'_>) -> bool {
        self.negative == other.negative
            && self.exponent == other.exponent
            && self.digits.0.bytes().chain(self.digits.1.bytes()).eq(other
                .digits
                .0
                .bytes()
                .chain(other.digits.1.bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{ExtraDecimals, Money};
    use serde_json::json;

    #[test]
    fn numbers_an_f64_would_change_are_read_as_their_text() {
        let value = from_slice(
            br#"{"bid": 12.999999999999999999, "plain": 12.5, "int": 42, "neg": -7,
                 "big": 123456789012345678901234567890, "exp": 1.5e3, "zeros": 12.50000000000000000000,
                 "text": "a 1.00000000000000000001 b", "nested": [0.1000000000000000055511151231257827, {"x": -0.30000000000000000001}]}"#,
        )
        .unwrap();
        assert_eq!(value["bid"], json!("12.999999999999999999"));
        assert_eq!(value["plain"], json!(12.5));
        assert_eq!(value["int"], json!(42));
        assert_eq!(value["neg"], json!(-7));
        assert_eq!(value["big"], json!("123456789012345678901234567890"));
        assert_eq!(value["exp"], json!(1500.0));
        assert_eq!(value["zeros"], json!(12.5), "trailing zeros change nothing");
        assert_eq!(value["text"], json!("a 1.00000000000000000001 b"));
        assert_eq!(
            value["nested"][0],
            json!("0.1000000000000000055511151231257827")
        );
        assert_eq!(value["nested"][1]["x"], json!("-0.30000000000000000001"));
        let bid = Money::from_json(&value["bid"], ExtraDecimals::Truncate).unwrap();
        assert_eq!(bid, Money::from_cents(1299));
        assert!(Money::from_json(&value["bid"], ExtraDecimals::Reject).is_err());
        assert!(is_inexact_number("12.999999999999999999"));
        assert!(!is_inexact_number("12.99") && !is_inexact_number("abc"));
    }

    #[test]
    fn seventeen_digit_numbers_that_an_f64_writes_back_are_kept_as_numbers() {
        // 0.1 + 0.2 as serde_json writes it: its f64 reads back as the same text.
        let value =
            from_slice(b"[0.30000000000000004, 1e400, 18446744073709551615, -9223372036854775808]")
                .unwrap();
        assert!(value[0].is_number());
        assert_eq!(value[1], json!("1e400"), "out of range: kept as text");
        assert_eq!(value[2], json!(u64::MAX));
        assert_eq!(value[3], json!(i64::MIN));
    }

    proptest::proptest! {
        /// The shortcut (at most 15 significant digits survive) agrees with writing the f64
        /// back, and what is kept as a number reads back as the same decimal.
        #[test]
        fn the_shortcut_agrees_with_the_f64_written_back(
            digits in "[1-9][0-9]{0,19}",
            point in 0usize..21,
            exponent in -40i64..40,
        ) {
            let point = point.min(digits.len());
            let text = format!("{}.{}e{exponent}", &digits[..point], &digits[point..]);
            let text = if point == 0 { format!("0{text}") } else { text };
            let decimal = Decimal::parse(&text).unwrap();
            let written = serde_json::Number::from_f64(text.parse::<f64>().unwrap())
                .unwrap()
                .to_string();
            let same = Decimal::parse(&written).unwrap().same_value(&decimal);
            if decimal.digit_count() <= 15 {
                proptest::prop_assert!(same, "{text} -> {written}");
            }
            proptest::prop_assert_eq!(survives_f64(&text), same, "{} -> {}", text, written);
        }
    }

    #[test]
    fn invalid_json_stays_invalid() {
        for text in [
            &br#"{1.00000000000000000001: 1}"#[..],
            br#"[1.00000000000000000001"#,
            br#"{"a": 1.00000000000000000001 2}"#,
        ] {
            assert!(
                from_slice(text).is_err(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        assert!(matches!(
            quote_inexact_numbers(br#"{"a": 1.5}"#),
            Cow::Borrowed(_)
        ));
    }
}
