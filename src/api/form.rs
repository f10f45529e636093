//! Partner bodies sent as HTML forms (`application/x-www-form-urlencoded`, issue 16 item 6):
//! read into the same JSON object a JSON body would be, then checked by the same code, so a
//! form gets the same answers, error codes and pointers.
//!
//! How a form maps to the JSON body (docs/partner-forms.md):
//! - `posting_key`, `ping_id`, `min_payout`, `test`, `max_wait_ms` (a whole number): the
//!   top-level fields; `bid_ids` too, repeated (`bid_ids=…&bid_ids=…`, also `bid_ids[]`) or
//!   comma-separated;
//! - `lead[state]=TX`, `consent[ip]=…`, `dedup[email_sha256]=…`, `sub_ids[source]=…`: a key of
//!   the nested object; `consent[sellers]` (or `consent[sellers][]`) repeated is a list;
//! - any other key is a lead field (`state=TX&zip=75001`), except a well-known consent key
//!   (`trustedform_cert_url`, `jornaya_leadid`, `text`, `consented_at`, `ip`, `user_agent`,
//!   `page_url`, `sellers`) that the offer's schema does not name: that goes to `consent`;
//! - a lead value is typed by its field in the offer's schema: `integer` (JSON's integer
//!   syntax), `number` (JSON's number syntax, read exactly as a JSON body's number is),
//!   `boolean` (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, any case); anything else is a
//!   string as sent. `test` is a boolean the same way. A value that does not fit stays text, so
//!   the lead's validation refuses it at its pointer (`/lead/age`, `invalid_field`);
//! - an empty value is an absent field; a key sent twice (other than `bid_ids` and
//!   `consent[sellers]`) is `invalid_field` at its pointer.
//!
//! A key must be a name (letters, digits, `_`, `-`, `.`, and `[…]` for nesting) unless the
//! offer's schema names it as it is; a form that is not UTF-8, or whose keys are not names, is
//! `400 bad_request`. No answer quotes a value.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use crate::api::extract::JsonObject;
use crate::api::partner::invalid;
use crate::api::{ErrorCode, Problem};
use crate::auction::{CompiledSchema, FieldType, pointer_token};

/// The consent keys a form may send without `consent[…]` (SPEC §2.2's keys).
pub const FLAT_CONSENT_KEYS: [&str; 8] = [
    "trustedform_cert_url",
    "jornaya_leadid",
    "text",
    "consented_at",
    "ip",
    "user_agent",
    "page_url",
    "sellers",
];

/// The body of a partner request: a JSON object, or a form still to be typed by the offer's
/// schema (known only once the posting key is).
pub enum PartnerBody {
    Json(Map<String, Value>),
    Form(Form),
}

/// A form's pairs, decoded, in the order sent.
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequest<S> for PartnerBody {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        if !is_form(request.headers()) {
            // The JSON path, exactly as before.
            return match JsonObject::from_request(request, state).await {
                Ok(JsonObject(object)) => Ok(PartnerBody::Json(object)),
                Err(problem) if problem.code == ErrorCode::UnsupportedMediaType => {
                    Err(Problem::new(ErrorCode::UnsupportedMediaType).detail(
                        "send the body as application/json or application/x-www-form-urlencoded",
                    ))
                }
                Err(problem) => Err(problem),
            };
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::new(ErrorCode::PayloadTooLarge)
                } else {
                    Problem::new(ErrorCode::BadRequest).detail("the body could not be read")
                }
            })?;
        Form::parse(&bytes).map(PartnerBody::Form)
    }
}

/// `application/x-www-form-urlencoded`, in UTF-8 (a `charset` other than UTF-8 is not a form
/// Gavel reads).
fn is_form(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return false;
    }
    parts.all(|parameter| match parameter.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            let value = value.trim().trim_matches('"');
            value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")
        }
        _ => true,
    })
}

impl PartnerBody {
    /// The body's `posting_key` (a form's first).
    pub fn posting_key(&self) -> Option<&str> {
        self.top_level("posting_key")
    }

    /// A top-level string field, e.g. `ping_id`, before the body is typed.
    pub fn top_level(&self, key: &str) -> Option<&str> {
        match self {
            PartnerBody::Json(object) => object.get(key).and_then(Value::as_str),
            PartnerBody::Form(form) => form
                .pairs
                .iter()
                .find(|(k, v)| k == key && !v.is_empty())
                .map(|(_, v)| v.as_str()),
        }
    }

    /// The body as the JSON object the partner API reads, a form's values typed by `schema`.
    pub fn into_object(self, schema: &CompiledSchema) -> Result<Map<String, Value>, Problem> {
        match self {
            PartnerBody::Json(object) => Ok(object),
            PartnerBody::Form(form) => form.into_object(schema),
        }
    }
}

/// Where a form's key goes in the JSON body.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    /// `posting_key`, `ping_id`, `min_payout`, `test` or `max_wait_ms`.
    Top(&'a str),
    BidIds,
    Lead(&'a str),
    Consent(&'a str),
    Sellers,
    Dedup(&'a str),
    SubIds(&'a str),
    /// `lead`, `consent`, `dedup` or `sub_ids` without a key.
    Bare(&'a str),
}

impl Target<'_> {
    fn pointer(&self) -> String {
        match self {
            Target::Top(key) | Target::Bare(key) => format!("/{key}"),
            Target::BidIds => "/bid_ids".to_owned(),
            Target::Lead(key) => format!("/lead/{}", pointer_token(key)),
            Target::Consent(key) => format!("/consent/{}", pointer_token(key)),
            Target::Sellers => "/consent/sellers".to_owned(),
            Target::Dedup(key) => format!("/dedup/{}", pointer_token(key)),
            Target::SubIds(key) => format!("/sub_ids/{}", pointer_token(key)),
        }
    }
}

/// A key that may be echoed in a pointer: letters, digits, `_`, `-`, `.`.
fn is_name(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 100
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `head[a][b]…` as `["head", "a", "b", …]`; `None` when the brackets do not close.
fn segments(key: &str) -> Option<Vec<&str>> {
    let (head, mut rest) = key.split_at(key.find('[')?);
    let mut parts = vec![head];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        parts.push(&inner[..end]);
        rest = &inner[end + 1..];
    }
    Some(parts)
}

fn malformed_key() -> Problem {
    Problem::new(ErrorCode::BadRequest)
        .detail("a key of the form is not a name (letters, digits, _ - . and [key] for nesting)")
}

/// Where `key` goes; the schema decides between a lead field and a flat consent key.
fn target<'a>(key: &'a str, schema: &CompiledSchema) -> Result<Target<'a>, Problem> {
    // A field of the offer is itself, whatever its name.
    if schema.field_type(key).is_some() {
        return Ok(Target::Lead(key));
    }
    if let Some(parts) = segments(key) {
        return match parts.as_slice() {
            ["bid_ids", _] => Ok(Target::BidIds),
            ["lead", field] if schema.field_type(field).is_some() || is_name(field) => {
                Ok(Target::Lead(field))
            }
            ["consent", "sellers"] | ["consent", "sellers", _] => Ok(Target::Sellers),
            ["consent", name] if is_name(name) => Ok(Target::Consent(name)),
            ["dedup", name] if is_name(name) => Ok(Target::Dedup(name)),
            ["sub_ids", name] if is_name(name) => Ok(Target::SubIds(name)),
            _ => Err(malformed_key()),
        };
    }
    if !is_name(key) {
        return Err(malformed_key());
    }
    Ok(match key {
        "posting_key" | "ping_id" | "min_payout" | "test" | "max_wait_ms" => Target::Top(key),
        "bid_ids" => Target::BidIds,
        "lead" | "consent" | "dedup" | "sub_ids" => Target::Bare(key),
        "sellers" => Target::Sellers,
        _ if FLAT_CONSENT_KEYS.contains(&key) => Target::Consent(key),
        _ => Target::Lead(key),
    })
}

/// A form's boolean: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, any case.
fn boolean(text: &str) -> Option<bool> {
    const TRUE: [&str; 4] = ["true", "1", "yes", "on"];
    const FALSE: [&str; 4] = ["false", "0", "no", "off"];
    if TRUE.iter().any(|t| text.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| text.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

/// A lead value typed by its field; text when it does not fit (the validation refuses it).
fn typed(field_type: Option<FieldType>, text: String) -> Value {
    match field_type {
        Some(FieldType::Integer) => match serde_json::from_str::<serde_json::Number>(&text) {
            Ok(number) if number.as_i64().is_some() => Value::Number(number),
            _ => Value::String(text),
        },
        // As a JSON body's number: a value an f64 holds exactly is a number, one it would
        // change stays its own text (refused as not a number, never rounded).
        Some(FieldType::Number) => match crate::exact_json::from_slice(text.as_bytes()) {
            Ok(Value::Number(number)) if !text.trim().is_empty() && text.trim() == text => {
                Value::Number(number)
            }
            _ => Value::String(text),
        },
        Some(FieldType::Boolean) => boolean(&text).map_or(Value::String(text), Value::Bool),
        _ => Value::String(text),
    }
}

/// Puts `value` at `key` of `object`, refusing a key sent twice.
fn insert_once(
    object: &mut Map<String, Value>,
    key: &str,
    value: Value,
    target: &Target,
) -> Result<(), Problem> {
    if object.contains_key(key) {
        return Err(invalid(
            &target.pointer(),
            ErrorCode::InvalidField,
            "sent more than once",
        ));
    }
    object.insert(key.to_owned(), value);
    Ok(())
}

impl Form {
    /// Decodes a form: `&`-separated `key=value` pairs, `+` as a space, `%XX` as a byte (a `%`
    /// not followed by two hex digits is itself); the result must be UTF-8.
    pub fn parse(bytes: &[u8]) -> Result<Form, Problem> {
        let mut pairs = Vec::new();
        for part in bytes.split(|b| *b == b'&') {
            if part.is_empty() {
                continue;
            }
            let (key, value) = match part.iter().position(|b| *b == b'=') {
                Some(at) => (&part[..at], &part[at + 1..]),
                None => (part, &[][..]),
            };
            pairs.push((decode(key)?, decode(value)?));
        }
        Ok(Form { pairs })
    }

    fn into_object(self, schema: &CompiledSchema) -> Result<Map<String, Value>, Problem> {
        let mut body = Map::new();
        let (mut lead, mut consent, mut dedup, mut sub_ids) =
            (Map::new(), Map::new(), Map::new(), Map::new());
        let (mut bid_ids, mut sellers) = (Vec::new(), Vec::new());
        for (key, value) in self.pairs {
            let target = target(&key, schema)?;
            if value.contains('\0') {
                // PostgreSQL cannot store a NUL character in text.
                return Err(invalid(
                    &target.pointer(),
                    ErrorCode::InvalidField,
                    "text must not contain NUL characters",
                ));
            }
            if value.is_empty() {
                continue;
            }
            match target {
                Target::Top(name) => {
                    let value = match name {
                        "test" => boolean(&value).map_or(Value::String(value), Value::Bool),
                        "max_wait_ms" => value
                            .parse::<u64>()
                            .map_or(Value::String(value), Value::from),
                        _ => Value::String(value),
                    };
                    insert_once(&mut body, name, value, &target)?;
                }
                Target::BidIds => bid_ids.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|id| !id.is_empty())
                        .map(|id| Value::String(id.to_owned())),
                ),
                Target::Lead(name) => {
                    let value = typed(schema.field_type(name), value);
                    insert_once(&mut lead, name, value, &target)?;
                }
                Target::Consent(name) => {
                    insert_once(&mut consent, name, Value::String(value), &target)?
                }
                Target::Sellers => sellers.push(Value::String(value)),
                Target::Dedup(name) => {
                    insert_once(&mut dedup, name, Value::String(value), &target)?
                }
                Target::SubIds(name) => {
                    insert_once(&mut sub_ids, name, Value::String(value), &target)?
                }
                Target::Bare(name) => {
                    return Err(invalid(
                        &target.pointer(),
                        ErrorCode::InvalidField,
                        &format!("in a form, send {name}[<key>]=<value>"),
                    ));
                }
            }
        }
        if !sellers.is_empty() {
            let target = Target::Sellers;
            insert_once(&mut consent, "sellers", Value::Array(sellers), &target)?;
        }
        if !bid_ids.is_empty() {
            body.insert("bid_ids".to_owned(), Value::Array(bid_ids));
        }
        // A form always has a lead: an empty one is reported field by field.
        body.insert("lead".to_owned(), Value::Object(lead));
        for (name, object) in [("consent", consent), ("dedup", dedup), ("sub_ids", sub_ids)] {
            if !object.is_empty() {
                body.insert(name.to_owned(), Value::Object(object));
            }
        }
        Ok(body)
    }
}

/// One key or value of a form, decoded.
fn decode(raw: &[u8]) -> Result<String, Problem> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let escaped = (raw[i] == b'%')
            .then(|| Some((hex(*raw.get(i + 1)?)?, hex(*raw.get(i + 2)?)?)))
            .flatten();
        match (raw[i], escaped) {
            (_, Some((high, low))) => {
                bytes.push(high << 4 | low);
                i += 2;
            }
            (b'+', None) => bytes.push(b' '),
            (byte, None) => bytes.push(byte),
        }
        i += 1;
    }
    String::from_utf8(bytes).map_err(|_| {
        Problem::new(ErrorCode::BadRequest)
            .detail("the form is not UTF-8 (percent-encode its UTF-8 bytes)")
    })
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> CompiledSchema {
        CompiledSchema::compile(&json!([
            { "name": "state", "type": "string" },
            { "name": "age", "type": "integer" },
            { "name": "income", "type": "number" },
            { "name": "homeowner", "type": "boolean" },
            { "name": "email", "type": "email", "pii": true },
            { "name": "ip", "type": "string" }
        ]))
        .unwrap()
    }

    fn object(form: &str) -> Result<Value, Problem> {
        Form::parse(form.as_bytes())?
            .into_object(&schema())
            .map(Value::Object)
    }

    #[test]
    fn flat_and_nested_keys_make_the_json_body() {
        let body = object(
            "posting_key=pk_1&state=TX&lead[age]=42&income=1234.5&homeowner=Yes\
             &trustedform_cert_url=https%3A%2F%2Fcert.example%2F1&consent[text]=I+agree\
             &sellers=A&consent[sellers][]=B&dedup[email_sha256]=ab&sub_ids[src]=s1\
             &bid_ids=a,b&bid_ids=c&test=0&min_payout=5.00&ip=1.2.3.4&consent[ip]=5.6.7.8\
             &max_wait_ms=50",
        )
        .unwrap();
        assert_eq!(
            body,
            json!({
                "posting_key": "pk_1", "test": false, "min_payout": "5.00", "max_wait_ms": 50,
                "bid_ids": ["a", "b", "c"],
                "lead": { "state": "TX", "age": 42, "income": 1234.5, "homeowner": true,
                          "ip": "1.2.3.4" },
                "consent": { "trustedform_cert_url": "https://cert.example/1", "text": "I agree",
                             "sellers": ["A", "B"], "ip": "5.6.7.8" },
                "dedup": { "email_sha256": "ab" },
                "sub_ids": { "src": "s1" }
            })
        );
    }

    #[test]
    fn values_that_do_not_fit_stay_text_and_empty_ones_are_absent() {
        let body = object("age=4x&homeowner=maybe&income=1e999&state=&email=").unwrap();
        assert_eq!(
            body,
            json!({ "lead": { "age": "4x", "homeowner": "maybe", "income": "1e999" } })
        );
        let body = object("age=42.0&income=12.999999999999999999").unwrap();
        assert_eq!(
            body,
            json!({ "lead": { "age": "42.0", "income": "12.999999999999999999" } })
        );
    }

    #[test]
    fn escapes_are_decoded_and_unicode_kept() {
        let body = object("state=a%26b%3Dc%2Bd+e%25%zz%C3%A9%E2%9C%93").unwrap();
        assert_eq!(body["lead"]["state"], "a&b=c+d e%%zzé✓");
    }

    #[test]
    fn malformed_forms_are_refused_without_quoting_them() {
        let twice = object("state=TX&lead[state]=OK").unwrap_err();
        assert_eq!(twice.code, ErrorCode::InvalidField);
        assert_eq!(twice.errors[0].pointer, "/lead/state");
        let junk = object("{\"lead\":{\"state\":\"qZ7mk=1\"}}").unwrap_err();
        assert_eq!(junk.code, ErrorCode::BadRequest);
        let bare = object("lead=1").unwrap_err();
        assert_eq!(bare.errors[0].pointer, "/lead");
        let nul = object("sub_ids[a]=x%00").unwrap_err();
        assert_eq!(nul.errors[0].pointer, "/sub_ids/a");
        assert_eq!(
            Form::parse(b"state=%FF").err().map(|p| p.code),
            Some(ErrorCode::BadRequest)
        );
    }

    #[test]
    fn only_utf8_forms_are_forms() {
        let headers = |ct: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, ct.parse().unwrap());
            headers
        };
        assert!(is_form(&headers("application/x-www-form-urlencoded")));
        assert!(is_form(&headers(
            "Application/X-WWW-Form-URLEncoded; charset=UTF-8"
        )));
        assert!(!is_form(&headers(
            "application/x-www-form-urlencoded; charset=iso-8859-1"
        )));
        assert!(!is_form(&headers("multipart/form-data; boundary=x")));
    }
}
