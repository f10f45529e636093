//! Reading admin request bodies: every value is converted to its stored form (money to
//! cents), and every problem is collected with its JSON pointer, in the API's names, so that
//! one 422 lists them all.

use std::ops::RangeInclusive;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::api::Problem;
use crate::auction::{ConfigError, Status};
use crate::money::{ExtraDecimals, Money, MoneyError};

/// A body being read. Keys outside the resource's writable fields are errors.
pub struct Input<'a> {
    object: &'a Map<String, Value>,
    errors: Vec<ConfigError>,
}

impl<'a> Input<'a> {
    pub fn new(object: &'a Map<String, Value>, writable: &[&str]) -> Self {
        let errors = object
            .keys()
            .filter(|key| !writable.contains(&key.as_str()))
            .map(|key| ConfigError::new(pointer(key), "unknown or read-only field"))
            .collect();
        Input { object, errors }
    }

    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::new(pointer(key), message));
    }

    /// Errors of the pure core, whose pointers name the stored columns (`/caps/0/max_spend_cents`),
    /// renamed to the API's fields (`/caps/0/max_spend`).
    pub fn extend(&mut self, errors: Vec<ConfigError>) {
        self.errors.extend(errors.into_iter().map(api_names));
    }

    /// Errors already in the API's names.
    pub fn push(&mut self, errors: Vec<ConfigError>) {
        self.errors.extend(errors);
    }

    /// The value of `key`; JSON `null` counts as absent.
    pub fn value(&self, key: &str) -> Option<&'a Value> {
        self.object.get(key).filter(|v| !v.is_null())
    }

    /// A required name: 1 to 200 characters, trimmed.
    pub fn name(&mut self, key: &str) -> String {
        match self.value(key).map(Value::as_str) {
            Some(Some(text)) if (1..=200).contains(&text.trim().chars().count()) => {
                text.trim().to_owned()
            }
            Some(_) => {
                self.error(key, "must be a text of 1 to 200 characters");
                String::new()
            }
            None => {
                self.error(key, "is required");
                String::new()
            }
        }
    }

    /// An optional text of at most `max` characters; absent or `null` is none.
    pub fn text(&mut self, key: &str, max: usize) -> Option<String> {
        match self.value(key).map(Value::as_str) {
            None => None,
            Some(Some(text)) if text.chars().count() <= max => Some(text.to_owned()),
            Some(_) => {
                self.error(key, format!("must be a text of at most {max} characters"));
                None
            }
        }
    }

    /// `active` (the default), `paused` or `archived` (what `DELETE` sets).
    pub fn status(&mut self) -> Status {
        match self
            .value("status")
            .map(|v| v.as_str().map(Status::from_str))
        {
            None => Status::Active,
            Some(Some(Ok(status))) => status,
            Some(_) => {
                self.error("status", "must be active, paused or archived");
                Status::Active
            }
        }
    }

    /// An amount of at least zero with at most 2 decimals.
    pub fn money(&mut self, key: &str, default: Money) -> Money {
        match self.value(key) {
            None => default,
            Some(value) => match read_money(value) {
                Ok(money) if !money.is_negative() => money,
                Ok(_) => {
                    self.error(key, "must not be negative");
                    default
                }
                Err(message) => {
                    self.error(key, message);
                    default
                }
            },
        }
    }

    /// A whole number within `range`.
    pub fn integer(&mut self, key: &str, range: RangeInclusive<i64>, default: i64) -> i64 {
        match self.value(key) {
            None => default,
            Some(value) => match value.as_i64().filter(|n| range.contains(n)) {
                Some(n) => n,
                None => {
                    self.error(
                        key,
                        format!(
                            "must be a whole number from {} to {}",
                            range.start(),
                            range.end()
                        ),
                    );
                    default
                }
            },
        }
    }

    /// A required id.
    pub fn id(&mut self, key: &str) -> Uuid {
        match self.value(key).and_then(Value::as_str).map(str::parse) {
            Some(Ok(id)) => id,
            Some(Err(_)) => {
                self.error(key, "must be an id");
                Uuid::nil()
            }
            None => {
                self.error(key, "is required");
                Uuid::nil()
            }
        }
    }

    /// The collected errors, or `Ok` when there are none.
    pub fn finish(self) -> Result<(), Vec<ConfigError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// The pointer of a top-level key.
fn pointer(key: &str) -> String {
    format!("/{}", crate::auction::pointer_token(key))
}

/// A JSON number with at most 2 decimals (configuration never truncates). A number with more
/// digits than an f64 holds arrives as its text (`exact_json`) and is judged exactly: refused,
/// never rounded to a neighbouring cent.
pub fn read_money(value: &Value) -> Result<Money, &'static str> {
    let exact_text =
        matches!(value, Value::String(text) if crate::exact_json::is_inexact_number(text));
    if !value.is_number() && !exact_text {
        return Err("must be a number such as 12.50");
    }
    Money::from_json(value, ExtraDecimals::Reject).map_err(|e| match e {
        MoneyError::TooManyDecimals => "must have at most 2 decimals",
        MoneyError::TooLarge => "is too large",
        MoneyError::NotANumber => "must be a number such as 12.50",
    })
}

/// A core error with the API's field names: stored `*_cents` keys are plain amounts in the API.
fn api_names(error: ConfigError) -> ConfigError {
    let pointer = error
        .pointer
        .split('/')
        .map(|token| token.strip_suffix("_cents").unwrap_or(token))
        .collect::<Vec<_>>()
        .join("/");
    ConfigError::new(pointer, error.message.replace("_cents", ""))
}

/// The body a `PATCH` is validated as: the resource's current writable fields, with the
/// patch's keys replacing them (a key the resource does not have is kept, to be reported).
/// A `null` is refused where it would quietly reset a field to its default (`filters: null`
/// would make a contract buy everything): leave the field out to keep it. `nullable` names
/// the fields whose `null` is a value of their own (no schedule: always open; no rate: no
/// limit), as their kinds say (`resources::Kind::NULLABLE`).
pub fn merged(
    current: &impl Serialize,
    patch: Map<String, Value>,
    writable: &[&str],
    nullable: impl Fn(&str) -> bool,
) -> Result<Map<String, Value>, Problem> {
    let nulls: Vec<ConfigError> = patch
        .iter()
        .filter(|(key, value)| value.is_null() && !nullable(key))
        .map(|(key, _)| {
            ConfigError::new(format!("/{key}"), "cannot be null; leave it out to keep it")
        })
        .collect();
    if !nulls.is_empty() {
        return Err(Problem::invalid_config(nulls));
    }
    let mut merged = match serde_json::to_value(current) {
        Ok(Value::Object(object)) => object,
        _ => Map::new(),
    };
    merged.retain(|key, _| writable.contains(&key.as_str()));
    merged.extend(patch);
    Ok(merged)
}

/// Converts the amounts named `keys` of a JSON object (API: decimal numbers) to their stored
/// form (`<key>_cents`, whole cents); errors point at `<at>/<key>`. Stored names are refused in
/// the API so that each amount has one spelling.
pub fn amounts_to_cents(
    object: &mut Map<String, Value>,
    keys: &[&str],
    at: &str,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for key in keys {
        let stored = format!("{key}_cents");
        if object.contains_key(&stored) {
            errors.push(ConfigError::new(format!("{at}/{stored}"), "unknown field"));
            object.remove(&stored);
        }
        let Some(value) = object.remove(*key) else {
            continue;
        };
        match read_money(&value) {
            Ok(money) if money.cents() > 0 => {
                object.insert(stored, Value::from(money.cents()));
            }
            Ok(_) => errors.push(ConfigError::new(
                format!("{at}/{key}"),
                "must be above zero",
            )),
            Err(message) => errors.push(ConfigError::new(format!("{at}/{key}"), message)),
        }
    }
    errors
}

/// The reverse of [`amounts_to_cents`], for answers.
pub fn amounts_from_cents(object: &mut Map<String, Value>, keys: &[&str]) {
    for key in keys {
        if let Some(cents) = object
            .remove(&format!("{key}_cents"))
            .and_then(|v| v.as_i64())
        {
            let amount = serde_json::to_value(Money::from_cents(cents)).unwrap_or(Value::Null);
            object.insert((*key).to_owned(), amount);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_convert_both_ways_with_api_pointers() {
        let mut pricing = json!({"type": "fixed", "exclusive": 40.5, "shared": 12.345})
            .as_object()
            .unwrap()
            .clone();
        let errors = amounts_to_cents(&mut pricing, &["exclusive", "shared"], "/pricing");
        assert_eq!(errors[0].pointer, "/pricing/shared");
        assert_eq!(pricing["exclusive_cents"], json!(4050));
        amounts_from_cents(&mut pricing, &["exclusive"]);
        assert_eq!(
            Value::Object(pricing),
            json!({"type": "fixed", "exclusive": 40.50})
        );
    }

    #[test]
    fn core_pointers_take_the_api_names() {
        let error = api_names(ConfigError::new(
            "/caps/0/max_spend_cents",
            "needs max_spend_cents",
        ));
        assert_eq!(error.pointer, "/caps/0/max_spend");
        assert_eq!(error.message, "needs max_spend");
    }
}
