//! JSON request bodies read in one pass into a `Value`, refusing what `serde_json::Value`
//! accepts silently: a key given twice in one object (the last one would win, so
//! `{"amount": 1, "amount": -1000}` would move −1000) and NUL characters (PostgreSQL cannot
//! store them in text). Either comes back with the JSON pointer of the offending place.

use std::cell::RefCell;
use std::fmt;
use std::sync::OnceLock;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body was refused.
#[derive(Debug)]
pub enum Refusal {
    /// Not JSON (serde_json's message: a line and column, never the text around them).
    Syntax(serde_json::Error),
    /// The pointer of a key given twice in its object.
    DuplicateKey(String),
    /// The pointer of a key or string holding a NUL character.
    Nul(String),
}

/// Parses `bytes` as one JSON value (serde_json's nesting limit of 128 applies).
pub fn parse(bytes: &[u8]) -> Result<Value, Refusal> {
    let found = Found::default();
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict(&found)
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    match (parsed, found.0.into_inner()) {
        (Ok(value), _) => Ok(value),
        (Err(_), Some((kind, mut path))) => {
            path.reverse();
            let pointer: String = path
                .iter()
                .map(|token| format!("/{}", crate::auction::pointer_token(token)))
                .collect();
            Err(match kind {
                Kind::DuplicateKey => Refusal::DuplicateKey(pointer),
                Kind::Nul => Refusal::Nul(pointer),
            })
        }
        (Err(error), None) => Err(Refusal::Syntax(error)),
    }
}

#[derive(Clone, Copy)]
enum Kind {
    DuplicateKey,
    Nul,
}

/// The refusal found, with its path built innermost first as the error unwinds (so a body
/// that is accepted pays for no path at all).
#[derive(Default)]
struct Found(RefCell<Option<(Kind, Vec<String>)>>);

impl Found {
    fn refuse<E: de::Error>(&self, kind: Kind, token: Option<String>) -> E {
        *self.0.borrow_mut() = Some((kind, token.into_iter().collect()));
        E::custom("refused")
    }

    /// Adds `token` to the path of a refusal found inside it.
    fn within<T, E>(&self, result: Result<T, E>, token: impl FnOnce() -> String) -> Result<T, E> {
        if result.is_err()
            && let Some((_, path)) = self.0.borrow_mut().as_mut()
        {
            path.push(token());
        }
        result
    }
}

#[derive(Clone, Copy)]
struct Strict<'a>(&'a Found);

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// The key of a number when serde_json's `arbitrary_precision` feature is on (another crate
/// may turn it on): numbers then come as one-entry maps holding their text.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

fn arbitrary_precision() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        serde_json::from_str::<Number>("1.10").is_ok_and(|n| n.to_string() == "1.10")
    })
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.visit_string(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        if v.contains('\0') {
            return Err(self.0.refuse(Kind::Nul, None));
        }
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            let index = items.len();
            match self
                .0
                .within(seq.next_element_seed(self), || index.to_string())?
            {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.is_empty() && key == NUMBER_TOKEN && arbitrary_precision() {
                let text: String = access.next_value()?;
                return text
                    .parse::<Number>()
                    .map(Value::Number)
                    .map_err(de::Error::custom);
            }
            if key.contains('\0') {
                return Err(self.0.refuse(Kind::Nul, Some(key)));
            }
            if map.contains_key(&key) {
                return Err(self.0.refuse(Kind::DuplicateKey, Some(key)));
            }
            let value = match access.next_value_seed(self) {
                Ok(value) => value,
                Err(error) => return self.0.within(Err(error), || key),
            };
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> String {
        match parse(text.as_bytes()) {
            Err(Refusal::DuplicateKey(pointer)) => format!("dup {pointer}"),
            Err(Refusal::Nul(pointer)) => format!("nul {pointer}"),
            Err(Refusal::Syntax(_)) => "syntax".to_owned(),
            Ok(value) => format!("ok {value}"),
        }
    }

    #[test]
    fn parses_like_serde_json() {
        for text in [
            r#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}], "c": 18446744073709551615}"#,
            "[]",
            "\"\\u00e9\"",
            "1e300",
        ] {
            let expected: Value = serde_json::from_str(text).unwrap();
            assert_eq!(parse(text.as_bytes()).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn refuses_duplicate_keys_with_their_pointer_at_any_depth() {
        assert_eq!(refused(r#"{"amount": 1, "amount": -1000}"#), "dup /amount");
        assert_eq!(
            refused(r#"{"lead": {"zip": "1", "a/b": [0, {"x~": 1, "x~": 2}]}}"#),
            "dup /lead/a~1b/1/x~0"
        );
        assert_eq!(
            refused(r#"{"a": {"b": 1}, "c": {"b": 2}}"#),
            r#"ok {"a":{"b":1},"c":{"b":2}}"#
        );
    }

    #[test]
    fn refuses_nul_in_keys_and_strings_and_bad_json() {
        assert_eq!(
            refused(r#"{"lead": {"name": "a\u0000b"}}"#),
            "nul /lead/name"
        );
        assert_eq!(
            refused(r#"{"lead": [{"k\u0000": 1}]}"#),
            "nul /lead/0/k\u{0}"
        );
        assert_eq!(refused(r#"{"a": 1,}"#), "syntax");
        assert_eq!(refused(r#"{"a": 1} x"#), "syntax");
        assert_eq!(refused(&"[".repeat(200)), "syntax");
        assert_eq!(refused("1e400"), "syntax");
    }
}
