//! A contract's headers (`pricing.headers`, `delivery.headers`, and the `request.headers` of
//! each) are write-only: they often carry
//! the buyer's credentials, so every answer shows them masked, e.g. `"Authorization":
//! "••••1a2b"`. The last 4 characters are shown only for a value of at least 24 characters
//! (at least 20 stay hidden), so an operator can tell keys apart; a shorter value is `••••`.
//!
//! A masked value sent back (GET, modify, PATCH) keeps the stored secret, provided it is the
//! mask of the stored value of that header and the section's URL still has the same origin
//! (scheme, host and port): otherwise a tenant could re-point a contract at its own server and
//! receive the secret. Any other value starting with `••••` is refused, never saved.

use reqwest::Url;
use serde_json::{Map, Value};

use crate::auction::{ConfigError, pointer_token};

pub(super) const MASK: &str = "••••";
/// Values at least this long show their last 4 characters.
const SHOW_TAIL_FROM: usize = 24;

/// The sections of a contract that carry headers, with their stored form (for a PATCH).
pub(super) const SECTIONS: [&str; 2] = ["pricing", "delivery"];

/// How `value` is shown.
pub(super) fn mask(value: &str) -> String {
    let count = value.chars().count();
    if count >= SHOW_TAIL_FROM {
        let tail: String = value.chars().skip(count - 4).collect();
        format!("{MASK}{tail}")
    } else {
        MASK.to_owned()
    }
}

/// Where a section keeps header values: its own `headers` and its `request`'s.
const HEADER_PLACES: [&str; 2] = ["/headers", "/request/headers"];

/// Masks the header values of a section (`pricing` or `delivery`) in place: its `headers`
/// and its `request.headers`.
pub(super) fn mask_section(section: &mut Value) {
    for place in HEADER_PLACES {
        let Some(Value::Object(headers)) = section.pointer_mut(place) else {
            continue;
        };
        for value in headers.values_mut() {
            if let Value::String(text) = value {
                *value = Value::String(mask(text));
            }
        }
    }
}

/// Replaces the masked header values of `body` with the stored secrets of `stored` (the
/// contract's stored `pricing` and `delivery`, none for a create); errors for a masked value
/// that cannot be restored.
pub(super) fn restore_masked(
    body: &mut Map<String, Value>,
    stored: Option<&[Value; 2]>,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (i, section) in SECTIONS.iter().enumerate() {
        let Some(sent) = body.get_mut(*section) else {
            continue;
        };
        let stored = stored.map(|stored| &stored[i]);
        errors.extend(restore_section(sent, stored, &format!("/{section}")));
    }
    errors
}

/// [`restore_masked`] for one section with a `url` and headers (a contract's `pricing` or
/// `delivery`, an offer's verification hook), its errors under `at`.
pub(super) fn restore_section(
    sent: &mut Value,
    stored: Option<&Value>,
    at: &str,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let url = sent.get("url").and_then(Value::as_str).map(origin);
    let same_origin = url.is_some()
        && url
            == stored
                .and_then(|s| s.get("url"))
                .and_then(Value::as_str)
                .map(origin);
    for place in HEADER_PLACES {
        let Some(Value::Object(headers)) = sent.pointer_mut(place) else {
            continue;
        };
        for (name, value) in headers.iter_mut() {
            let Value::String(text) = value else {
                continue;
            };
            if !text.starts_with(MASK) {
                continue;
            }
            let secret = stored
                .and_then(|s| s.pointer(place))
                .and_then(|h| h.get(name.as_str()))
                .and_then(Value::as_str)
                .filter(|secret| mask(secret) == *text);
            let pointer = format!("{at}{place}/{}", pointer_token(name));
            match secret {
                Some(secret) if same_origin => *text = secret.to_owned(),
                Some(_) => errors.push(ConfigError::new(
                    pointer,
                    "is masked and the URL's host changed: send the header's value again",
                )),
                None => errors.push(ConfigError::new(
                    pointer,
                    "is a masked value: send the header's value",
                )),
            }
        }
    }
    errors
}

/// A URL's origin (scheme, host, port), or the text itself when it is not a URL.
fn origin(url: &str) -> String {
    Url::parse(url).map_or_else(|_| url.to_owned(), |u| u.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn long_values_show_their_last_four_characters_only() {
        assert_eq!(mask("Bearer sk_live_0123456789abcdef1a2b"), "••••1a2b");
        assert_eq!(mask("short-secret"), "••••");
        assert_eq!(mask(&"x".repeat(23)), "••••");
        assert_eq!(mask(""), "••••");
    }

    #[test]
    fn a_masked_value_sent_back_keeps_the_secret_only_on_the_same_origin() {
        let secret = "Bearer sk_live_0123456789abcdef1a2b";
        let stored = [
            json!({"type": "rtb", "url": "https://b.example/bid", "headers": {"Authorization": secret}}),
            json!({"url": "https://b.example/leads", "headers": {"X-Key": "short"}}),
        ];
        let mut body = json!({
            "pricing": {"type": "rtb", "url": "https://b.example/bid2", "headers": {"Authorization": "••••1a2b"}},
            "delivery": {"url": "https://b.example/leads", "headers": {"X-Key": "••••", "X-New": "plain"}},
        });
        let object = body.as_object_mut().unwrap();
        assert!(restore_masked(object, Some(&stored)).is_empty());
        assert_eq!(object["pricing"]["headers"]["Authorization"], secret);
        assert_eq!(object["delivery"]["headers"]["X-Key"], "short");
        assert_eq!(object["delivery"]["headers"]["X-New"], "plain");

        let mut moved = json!({
            "pricing": {"type": "rtb", "url": "https://attacker.example/bid", "headers": {"Authorization": "••••1a2b"}},
            "delivery": {"url": "https://b.example/leads", "headers": {"X-Key": "••••9999", "X/Other": "••••"}},
        });
        let errors = restore_masked(moved.as_object_mut().unwrap(), Some(&stored));
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/pricing/headers/Authorization",
                "/delivery/headers/X-Key",
                "/delivery/headers/X~1Other"
            ]
        );
        let mut created =
            json!({"delivery": {"url": "https://b.example", "headers": {"A": "••••"}}});
        assert_eq!(
            restore_masked(created.as_object_mut().unwrap(), None).len(),
            1
        );
        let mut created = json!({"delivery": {"url": "https://b.example",
            "request": {"headers": {"A": "••••"}}}});
        assert_eq!(
            restore_masked(created.as_object_mut().unwrap(), None).len(),
            1
        );
    }

    #[test]
    fn request_headers_are_masked_and_restored_like_the_sections_own() {
        let secret = "k_live_0123456789abcdef0123wxyz";
        let stored = [
            json!({"type": "rtb", "url": "https://b.example/bid",
                   "request": {"headers": {"X-Api-Key": secret, "X-Lead": "{{ ping_id }}"}}}),
            json!({"url": "https://b.example/leads"}),
        ];
        let mut shown = stored[0].clone();
        mask_section(&mut shown);
        assert_eq!(shown["request"]["headers"]["X-Api-Key"], "••••wxyz");
        assert_eq!(shown["request"]["headers"]["X-Lead"], "••••");
        let mut body = json!({"pricing": shown.clone()});
        let object = body.as_object_mut().unwrap();
        assert!(restore_masked(object, Some(&stored)).is_empty());
        assert_eq!(object["pricing"], stored[0]);
        let mut moved = json!({"pricing": shown});
        moved["pricing"]["url"] = json!("https://attacker.example/bid");
        let errors = restore_masked(moved.as_object_mut().unwrap(), Some(&stored));
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/pricing/request/headers/X-Api-Key",
                "/pricing/request/headers/X-Lead"
            ]
        );
    }
}
