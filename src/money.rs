//! Exact money: an amount is a whole number of cents (`i64`), never a float in arithmetic.
//!
//! JSON carries amounts as decimal numbers (`12.5`, `40`, `0.75`). serde_json hands a JSON
//! number to us as an `f64`; we turn it back into the shortest decimal text that reads back as
//! the same `f64` (what serde_json itself prints), which is the text that was sent for any
//! amount of up to 15 significant digits, and parse that text exactly. No arithmetic is done
//! on the float. Amounts are written as JSON numbers with two decimals (`27.30`).

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest amount Gavel handles: 10^13 cents (100 billion), far below where the f64 round trip
/// of a JSON number could lose a cent.
pub const MAX_CENTS: i64 = 10_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

/// What to do with digits beyond the cent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraDecimals {
    /// Configuration: more than two decimals is an error.
    Reject,
    /// Buyers' bids and shares of a price: cut toward zero, never rounded up.
    Truncate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("not a decimal amount")]
    NotANumber,
    #[error("more than 2 decimal places")]
    TooManyDecimals,
    #[error("amount too large")]
    TooLarge,
}

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_cents(cents: i64) -> Self {
        Money(cents)
    }

    pub const fn cents(self) -> i64 {
        self.0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Parses decimal text such as `12.5`, `-3`, `0.75`, `1e3` or `1.2345e1`.
    pub fn parse(text: &str, extra: ExtraDecimals) -> Result<Self, MoneyError> {
        let text = text.trim();
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => {
                let exponent: i32 = unsigned[at + 1..]
                    .parse()
                    .map_err(|_| MoneyError::NotANumber)?;
                (&unsigned[..at], exponent)
            }
            None => (unsigned, 0),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction)
        {
            return Err(MoneyError::NotANumber);
        }
        // The number is digits × 10^(exponent − fraction length); we want it × 100.
        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        let shift = exponent
            .saturating_sub(fraction.len() as i32)
            .saturating_add(2);
        let cents_digits: String = if shift >= 0 {
            if digits.is_empty() {
                String::new()
            } else {
                if digits.len() as i64 + i64::from(shift) > 15 {
                    return Err(MoneyError::TooLarge);
                }
                format!("{digits}{}", "0".repeat(shift as usize))
            }
        } else {
            let cut = (-(shift as i64)) as usize;
            let (kept, dropped) = if cut >= digits.len() {
                ("", digits)
            } else {
                digits.split_at(digits.len() - cut)
            };
            if extra == ExtraDecimals::Reject && dropped.bytes().any(|b| b != b'0') {
                return Err(MoneyError::TooManyDecimals);
            }
            kept.to_owned()
        };
        if cents_digits.len() > 15 {
            return Err(MoneyError::TooLarge);
        }
        let cents: i64 = if cents_digits.is_empty() {
            0
        } else {
            cents_digits.parse().unwrap_or(i64::MAX)
        };
        if cents > MAX_CENTS {
            return Err(MoneyError::TooLarge);
        }
        Ok(Money(if negative { -cents } else { cents }))
    }

    /// A JSON number or numeric string, as serde_json hands it over.
    pub fn from_json(value: &serde_json::Value, extra: ExtraDecimals) -> Result<Self, MoneyError> {
        match value {
            serde_json::Value::Number(n) => Money::parse(&n.to_string(), extra),
            serde_json::Value::String(s) => Money::parse(s, extra),
            _ => Err(MoneyError::NotANumber),
        }
    }

    /// `percent` (0–100, in hundredths: 7000 = 70 %) of this amount, truncated to the cent.
    pub fn percent_bp(self, basis_points: u32) -> Money {
        Money((i128::from(self.0) * i128::from(basis_points) / 10_000) as i64)
    }
}

/// In the OpenAPI document: a JSON number with at most two decimals.
impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Number)
            .description(Some("An exact amount with at most 2 decimals, e.g. 12.50"))
            .examples([serde_json::json!(12.5)])
            .into()
    }
}

impl utoipa::ToSchema for Money {}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Written as the number's exact text (27.30), never through a float.
        let raw = serde_json::value::RawValue::from_string(self.to_string())
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MoneyVisitor)
    }
}

struct MoneyVisitor;

impl Visitor<'_> for MoneyVisitor {
    type Value = Money;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an amount with at most 2 decimal places")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Money, E> {
        Money::parse(&v.to_string(), ExtraDecimals::Reject).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Money, E> {
        Money::parse(&v.to_string(), ExtraDecimals::Reject).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Money, E> {
        let text =
            serde_json::Number::from_f64(v).ok_or_else(|| E::custom("not a finite number"))?;
        Money::parse(&text.to_string(), ExtraDecimals::Reject).map_err(E::custom)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Money, E> {
        Money::parse(v, ExtraDecimals::Reject).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExtraDecimals::{Reject, Truncate};

    #[test]
    fn parses_decimal_text_exactly() {
        let cases = [
            ("12.5", 1250),
            ("40", 4000),
            ("0.75", 75),
            ("0.07", 7),
            ("-3.10", -310),
            ("1e3", 100_000),
            ("1.5e1", 1500),
            ("12.340", 1234),
            ("00.1", 10),
            (".5", 50),
            ("5.", 500),
        ];
        for (text, cents) in cases {
            assert_eq!(Money::parse(text, Reject), Ok(Money(cents)), "{text}");
        }
    }

    #[test]
    fn extra_decimals_are_rejected_or_truncated() {
        assert_eq!(
            Money::parse("12.345", Reject),
            Err(MoneyError::TooManyDecimals)
        );
        assert_eq!(Money::parse("12.345", Truncate), Ok(Money(1234)));
        assert_eq!(Money::parse("12.349999", Truncate), Ok(Money(1234)));
        assert_eq!(Money::parse("0.009", Truncate), Ok(Money(0)));
        assert_eq!(Money::parse("1.5e-3", Truncate), Ok(Money(0)));
        assert_eq!(Money::parse("-0.019", Truncate), Ok(Money(-1)));
    }

    #[test]
    fn refuses_what_is_not_an_amount() {
        for text in ["", "abc", "1.2.3", "1,50", "--1", "0x10", "1e", "."] {
            assert_eq!(
                Money::parse(text, Reject),
                Err(MoneyError::NotANumber),
                "{text:?}"
            );
        }
        assert_eq!(Money::parse("1e20", Reject), Err(MoneyError::TooLarge));
        assert_eq!(
            Money::parse("100000000001", Reject),
            Err(MoneyError::TooLarge)
        );
    }

    #[test]
    fn json_numbers_round_trip_without_float_arithmetic() {
        let parsed: Vec<Money> =
            serde_json::from_str("[12.5, 40, 0.75, \"19.99\", 0.1, 1234567.89]").unwrap();
        assert_eq!(
            parsed,
            [
                Money(1250),
                Money(4000),
                Money(75),
                Money(1999),
                Money(10),
                Money(123_456_789)
            ]
        );
        let text = serde_json::to_string(&parsed).unwrap();
        assert_eq!(text, "[12.50,40.00,0.75,19.99,0.10,1234567.89]");
        let bad: Result<Money, _> = serde_json::from_str("12.345");
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("more than 2 decimal places")
        );
    }

    #[test]
    fn every_cent_amount_survives_the_json_round_trip() {
        // Exhaustive over the first 10^6 cents, then a sweep of larger amounts.
        let amounts = (0..1_000_000).chain((0..1_000_000).map(|i| i * 9_999_991 % MAX_CENTS));
        for cents in amounts {
            let text = serde_json::to_string(&Money(cents)).unwrap();
            let back: Money = serde_json::from_str(&text).unwrap();
            assert_eq!(back, Money(cents), "{text}");
        }
    }

    #[test]
    fn percent_of_an_amount_is_truncated_to_the_cent() {
        assert_eq!(Money(1235).percent_bp(7000), Money(864)); // 70 % of 12.35 = 8.645
        assert_eq!(Money(1000).percent_bp(10_000), Money(1000));
        assert_eq!(Money(999).percent_bp(3333), Money(332));
        assert_eq!(Money(1).percent_bp(9999), Money(0));
    }
}
