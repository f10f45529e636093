//! A post's consent (SPEC §2.2): carried verbatim to buyers, with the offer's required keys
//! present and the known keys well-formed.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::schema::{LeadError, LeadErrorCode};
use super::value::pointer_token;

/// Checks `consent` against the offer's `required` keys; every problem is reported, none
/// echoes a value.
pub fn validate_consent(
    consent: &Map<String, Value>,
    required: &[String],
) -> Result<(), Vec<LeadError>> {
    let mut errors = Vec::new();
    let error = |key: &str, code, message: String| LeadError {
        pointer: format!("/consent/{}", pointer_token(key)),
        code,
        message,
    };
    for key in required {
        let present = match consent.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::String(text)) => !text.trim().is_empty(),
            Some(Value::Array(items)) => !items.is_empty(),
            Some(_) => true,
        };
        if !present {
            errors.push(error(
                key,
                LeadErrorCode::ConsentRequired,
                format!("{key} is required by this offer"),
            ));
        }
    }
    let text = |key: &str| consent.get(key).filter(|v| !v.is_null());
    if let Some(value) = text("trustedform_cert_url") {
        let https = value
            .as_str()
            .and_then(|s| reqwest::Url::parse(s).ok())
            .is_some_and(|u| u.scheme() == "https" && u.host().is_some());
        if !https {
            errors.push(error(
                "trustedform_cert_url",
                LeadErrorCode::InvalidField,
                "trustedform_cert_url must be an https URL".into(),
            ));
        }
    }
    if let Some(value) = text("ip")
        && value
            .as_str()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .is_none()
    {
        errors.push(error(
            "ip",
            LeadErrorCode::InvalidField,
            "ip must be an IPv4 or IPv6 address".into(),
        ));
    }
    if let Some(value) = text("consented_at")
        && value
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .is_none()
    {
        errors.push(error(
            "consented_at",
            LeadErrorCode::InvalidField,
            "consented_at must be an RFC 3339 time".into(),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn consent(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn complete_consent_passes_and_extra_keys_are_allowed() {
        let good = consent(json!({
            "trustedform_cert_url": "https://cert.trustedform.com/2a6b", "text": "I agree",
            "consented_at": "2026-11-25T17:04:12Z", "ip": "2001:db8::7", "sellers": ["Acme"], "custom": 1
        }));
        assert_eq!(
            validate_consent(&good, &["trustedform_cert_url".into(), "text".into()]),
            Ok(())
        );
    }

    #[test]
    fn missing_required_keys_and_bad_formats_are_each_reported() {
        let bad = consent(json!({
            "trustedform_cert_url": "http://cert.trustedform.com/2a6b", "text": "  ",
            "consented_at": "yesterday", "ip": "203.0.113.999"
        }));
        let errors = validate_consent(&bad, &["text".into(), "jornaya_leadid".into()]).unwrap_err();
        let found: Vec<(&str, LeadErrorCode)> = errors
            .iter()
            .map(|e| (e.pointer.as_str(), e.code))
            .collect();
        assert_eq!(
            found,
            [
                ("/consent/text", LeadErrorCode::ConsentRequired),
                ("/consent/jornaya_leadid", LeadErrorCode::ConsentRequired),
                ("/consent/trustedform_cert_url", LeadErrorCode::InvalidField),
                ("/consent/ip", LeadErrorCode::InvalidField),
                ("/consent/consented_at", LeadErrorCode::InvalidField),
            ]
        );
        assert!(
            errors
                .iter()
                .all(|e| !e.message.contains("203.0.113.999") && !e.message.contains("yesterday"))
        );
    }
}
