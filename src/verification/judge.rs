//! The pure decisions of a verification step: whether the consent's evidence may be sent at
//! all (a TrustedForm certificate URL, a LeadiD), and what a provider's answer says (pass,
//! fail with the provider's reason, or unavailable: no usable answer). Assumptions about the
//! providers' answers are written in docs/verification.md.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::buyers::Exchange;
use crate::buyers::delivery::Verdict;

text_codes! {
    /// How a step ended.
    pub enum Outcome {
        /// The provider verified the consent.
        Passed,
        /// The consent's evidence is missing or invalid, or the provider said no.
        Failed,
        /// No usable answer: timeout, connection error, 5xx, malformed answer, breaker open.
        Unavailable,
    }
}

/// A step's verdict: its outcome, a stable code, the reason in words (the provider's when it
/// gave one; never PII once `run` has masked it, never credentials) and, for a definitive
/// answer, until when it may be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub outcome: Outcome,
    pub code: &'static str,
    pub reason: Option<String>,
    /// How long the answer may be reused (the cache); `None`: not at all.
    pub valid_until: Option<DateTime<Utc>>,
}

/// A TrustedForm certificate is valid 72 h after the form was submitted: a pass is reused at
/// most that long (less when the answer says when the certificate expires).
pub const TRUSTEDFORM_VALIDITY: Duration = Duration::hours(72);
/// A Jornaya answer is reused for a day (the answer says no expiry).
pub const JORNAYA_VALIDITY: Duration = Duration::hours(24);
/// A provider's "no" about a certificate is reused for an hour.
pub const FAILURE_VALIDITY: Duration = Duration::hours(1);
/// Longest provider reason kept.
const MAX_REASON: usize = 300;

impl Judgement {
    pub fn passed(valid_until: DateTime<Utc>) -> Self {
        Judgement {
            outcome: Outcome::Passed,
            code: "verified",
            reason: None,
            valid_until: Some(valid_until),
        }
    }

    /// A definitive "no" (reused for [`FAILURE_VALIDITY`] when `now` is given).
    pub fn failed(
        code: &'static str,
        reason: impl Into<String>,
        now: Option<DateTime<Utc>>,
    ) -> Self {
        Judgement {
            outcome: Outcome::Failed,
            code,
            reason: Some(reason.into()),
            valid_until: now.map(|now| now + FAILURE_VALIDITY),
        }
    }

    pub fn unavailable(code: &'static str, reason: impl Into<String>) -> Self {
        Judgement {
            outcome: Outcome::Unavailable,
            code,
            reason: Some(reason.into()),
            valid_until: None,
        }
    }

    /// Why there is no answer to read: the call timed out, failed or answered too much.
    pub fn of_exchange(exchange: &Exchange, timeout_ms: u128) -> Option<Self> {
        match exchange {
            Exchange::Answer { .. } => None,
            Exchange::TimedOut => Some(Self::unavailable(
                "timeout",
                format!("no answer within {timeout_ms} ms"),
            )),
            Exchange::Failed(error) => Some(Self::unavailable(
                "provider_error",
                format!("the call failed: {error}"),
            )),
            Exchange::TooLarge { .. } => Some(Self::unavailable(
                "malformed_answer",
                "answer larger than 64 KiB",
            )),
        }
    }
}

/// The certificate id of a TrustedForm certificate URL: `https://cert.trustedform.com/`
/// followed by 40 hex digits, nothing else (no other host, port, user, query or fragment).
/// Anything else fails `invalid_certificate_url` without a call: the step's credentials go to
/// TrustedForm only, never to a host the partner chose.
pub fn certificate_id(text: &str) -> Result<String, Judgement> {
    let refused = || {
        Judgement::failed(
            "invalid_certificate_url",
            "the certificate URL is not https://cert.trustedform.com/ followed by a certificate id",
            None,
        )
    };
    let url = url::Url::parse(text.trim()).map_err(|_| refused())?;
    let id = url.path().strip_prefix('/').unwrap_or_default();
    let sound = url.scheme() == "https"
        && url.host_str() == Some("cert.trustedform.com")
        && url.port().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none()
        && id.len() == 40
        && id.bytes().all(|b| b.is_ascii_hexdigit());
    if sound {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(refused())
    }
}

/// A Jornaya LeadiD: a 36-character GUID (`8-4-4-4-12` hex digits).
pub fn leadid(text: &str) -> Result<String, Judgement> {
    let text = text.trim();
    let sound = text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if sound {
        Ok(text.to_ascii_uppercase())
    } else {
        Err(Judgement::failed(
            "invalid_leadid",
            "the LeadiD is not a 36-character token",
            None,
        ))
    }
}

fn text_at(answer: &Value, pointers: &[&str]) -> Option<String> {
    pointers.iter().find_map(|p| match answer.pointer(p)? {
        Value::String(text) if !text.trim().is_empty() => Some(text.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn short(text: String) -> String {
    crate::buyers::clean_text(&text, MAX_REASON)
}

fn object(body: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
}

/// An HTTP status that is no answer about the lead: the provider is failing or throttling
/// (5xx, 408, 429), or refused the step's credentials (401, 403: the operator's to fix).
fn status_unavailable(status: u16) -> Option<Judgement> {
    match status {
        401 | 403 => Some(Judgement::unavailable(
            "provider_error",
            format!("the provider refused the step's credentials (HTTP {status})"),
        )),
        408 | 429 => Some(Judgement::unavailable(
            "provider_error",
            format!("the provider is throttling or slow (HTTP {status})"),
        )),
        s if !(200..500).contains(&s) || (300..400).contains(&s) => Some(Judgement::unavailable(
            "provider_error",
            format!("the provider answered HTTP {status}"),
        )),
        _ => None,
    }
}

/// TrustedForm's v4 answer to retain (and match-lead) a certificate: `outcome` `success` or
/// `failure` decides, with `reason`; with match-lead, `match_lead.result.success` must be true;
/// `expires_at` (of `retain.results`, or the answer's) bounds how long a pass is reused. A 4xx
/// (an unknown or expired certificate) fails with the provider's message.
pub fn read_trustedform(
    status: u16,
    body: &[u8],
    match_lead: bool,
    now: DateTime<Utc>,
) -> Judgement {
    if let Some(judgement) = status_unavailable(status) {
        return judgement;
    }
    let answer = object(body);
    let reason_of = |answer: &Value| {
        text_at(
            answer,
            &["/reason", "/message", "/error", "/errors/0/message"],
        )
    };
    if status >= 400 {
        let reason = answer
            .as_ref()
            .and_then(reason_of)
            .unwrap_or_else(|| format!("HTTP {status}"));
        return Judgement::failed("certificate_failed", short(reason), Some(now));
    }
    let Some(answer) = answer else {
        return Judgement::unavailable("malformed_answer", "the answer is not a JSON object");
    };
    match answer.get("outcome").and_then(Value::as_str) {
        Some("success") => {}
        Some("failure") => {
            let reason = reason_of(&answer).unwrap_or_else(|| "outcome failure".to_owned());
            return Judgement::failed("certificate_failed", short(reason), Some(now));
        }
        _ => {
            return Judgement::unavailable(
                "malformed_answer",
                "the answer has no outcome of success or failure",
            );
        }
    }
    if match_lead {
        match answer
            .pointer("/match_lead/result/success")
            .and_then(Value::as_bool)
        {
            Some(true) => {}
            Some(false) => {
                let said = text_at(&answer, &["/match_lead/result/reason"])
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                return Judgement::failed(
                    "match_lead_failed",
                    short(format!(
                        "the certificate does not match the posted email or phone{said}"
                    )),
                    Some(now),
                );
            }
            None => {
                return Judgement::unavailable(
                    "malformed_answer",
                    "the answer has no match_lead.result.success",
                );
            }
        }
    }
    let longest = now + TRUSTEDFORM_VALIDITY;
    let expires = text_at(
        &answer,
        &[
            "/retain/results/expires_at",
            "/retain/result/expires_at",
            "/expires_at",
        ],
    )
    .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
    .map(|t| t.with_timezone(&Utc));
    match expires {
        Some(expires) if expires <= now => Judgement::failed(
            "certificate_failed",
            "the certificate has expired",
            Some(now),
        ),
        Some(expires) => Judgement::passed(expires.min(longest)),
        None => Judgement::passed(longest),
    }
}

/// A flag of Jornaya's answer: 1, true, "1", "true" or "yes" hold; 0, false, "0", "false",
/// "no" do not; anything else is unreadable.
fn flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => Some(true),
            "0" | "false" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Jornaya TCPA Guardian's answer to a LeadiD: `audit.authentic` must hold and, when the step
/// requires consent, `audit.consent`; an `error` object is no answer about the lead.
pub fn read_jornaya(
    status: u16,
    body: &[u8],
    require_consent: bool,
    now: DateTime<Utc>,
) -> Judgement {
    if let Some(judgement) = status_unavailable(status) {
        return judgement;
    }
    let Some(answer) = object(body) else {
        if status >= 400 {
            return Judgement::failed("not_authentic", format!("HTTP {status}"), Some(now));
        }
        return Judgement::unavailable("malformed_answer", "the answer is not a JSON object");
    };
    if let Some(error) = answer.get("error") {
        let message = text_at(error, &["/message"]).unwrap_or_else(|| "an error".to_owned());
        let code = text_at(error, &["/code"])
            .map(|c| format!(" {c}"))
            .unwrap_or_default();
        return Judgement::unavailable("provider_error", short(format!("error{code}: {message}")));
    }
    let Some(authentic) = answer.pointer("/audit/authentic").and_then(flag) else {
        return Judgement::unavailable("malformed_answer", "the answer has no audit.authentic");
    };
    if !authentic {
        return Judgement::failed(
            "not_authentic",
            "the LeadiD was not issued by Jornaya",
            Some(now),
        );
    }
    if require_consent {
        match answer.pointer("/audit/consent").and_then(flag) {
            Some(true) => {}
            Some(false) => {
                return Judgement::failed(
                    "consent_not_found",
                    "no TCPA consent was witnessed for this LeadiD",
                    Some(now),
                );
            }
            None => {
                return Judgement::unavailable(
                    "malformed_answer",
                    "the answer has no audit.consent",
                );
            }
        }
    }
    Judgement::passed(now + JORNAYA_VALIDITY)
}

/// A generic hook's answer, read by its `response` rules as a delivery's: accepted passes,
/// rejected (or duplicate) fails with the hook's reason, anything else is unavailable.
pub fn of_hook_verdict(verdict: &Verdict) -> Judgement {
    match verdict {
        Verdict::Accepted => Judgement {
            valid_until: None,
            ..Judgement::passed(DateTime::<Utc>::MIN_UTC)
        },
        Verdict::Rejected(reason) | Verdict::Duplicate(reason) => Judgement::failed(
            "hook_failed",
            short(reason.strip_prefix("buyer: ").unwrap_or(reason).to_owned()),
            None,
        ),
        Verdict::Failed(reason) => {
            let code = if reason.starts_with("unreadable") {
                "malformed_answer"
            } else if reason.starts_with("no answer within") {
                "timeout"
            } else {
                "provider_error"
            };
            Judgement::unavailable(
                code,
                short(reason.strip_prefix("buyer: ").unwrap_or(reason).to_owned()),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CERT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T17:05:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn only_trustedform_certificate_urls_are_read() {
        let good = format!("https://cert.trustedform.com/{CERT}");
        assert_eq!(certificate_id(&good), Ok(CERT.to_owned()));
        assert_eq!(
            certificate_id(&format!(
                "https://CERT.TrustedForm.com/{}",
                CERT.to_uppercase()
            )),
            Ok(CERT.to_owned())
        );
        for bad in [
            format!("http://cert.trustedform.com/{CERT}"),
            format!("https://cert.trustedform.com.evil.example/{CERT}"),
            format!("https://evil.example/{CERT}"),
            format!("https://127.0.0.1/{CERT}"),
            format!("https://cert.trustedform.com:8443/{CERT}"),
            format!("https://user:pw@cert.trustedform.com/{CERT}"),
            format!("https://evil.example@cert.trustedform.com/{CERT}"),
            format!("https://cert.trustedform.com/{CERT}?x=1"),
            format!("https://cert.trustedform.com/{CERT}#x"),
            format!("https://cert.trustedform.com/x/{CERT}"),
            "https://cert.trustedform.com/2a6b".to_owned(),
            "not a url".to_owned(),
        ] {
            let refused = certificate_id(&bad).unwrap_err();
            assert_eq!(
                (refused.outcome, refused.code),
                (Outcome::Failed, "invalid_certificate_url"),
                "{bad}"
            );
        }
    }

    #[test]
    fn leadids_are_guids() {
        assert_eq!(
            leadid("2b4f6a38-1c2d-4e5f-8a9b-0c1d2e3f4a5b"),
            Ok("2B4F6A38-1C2D-4E5F-8A9B-0C1D2E3F4A5B".to_owned())
        );
        assert!(leadid("2B4F6A38").is_err());
        assert!(leadid("2B4F6A38-1C2D-4E5F-8A9B-0C1D2E3F4A5Z").is_err());
    }

    #[test]
    fn trustedform_outcome_and_match_lead_decide() {
        let read = |status, body: Value, match_lead| {
            read_trustedform(status, body.to_string().as_bytes(), match_lead, now())
        };
        let pass = read(
            200,
            json!({"outcome": "success", "match_lead": {"result": {"success": true}},
                   "retain": {"results": {"expires_at": "2026-11-26T00:00:00Z"}}}),
            true,
        );
        assert_eq!(pass.outcome, Outcome::Passed);
        assert_eq!(
            pass.valid_until,
            Some(
                DateTime::parse_from_rfc3339("2026-11-26T00:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc)
            )
        );
        let unmatched = read(
            200,
            json!({"outcome": "success", "match_lead": {"result": {"success": false}}}),
            true,
        );
        assert_eq!(
            (unmatched.outcome, unmatched.code),
            (Outcome::Failed, "match_lead_failed")
        );
        // Without match-lead, the outcome alone decides; a pass lasts at most 72 h.
        let plain = read(200, json!({"outcome": "success"}), false);
        assert_eq!(plain.valid_until, Some(now() + TRUSTEDFORM_VALIDITY));
        let failure = read(
            200,
            json!({"outcome": "failure", "reason": "certificate expired"}),
            true,
        );
        assert_eq!(
            (failure.outcome, failure.reason.as_deref()),
            (Outcome::Failed, Some("certificate expired"))
        );
        let gone = read(404, json!({"message": "certificate not found"}), true);
        assert_eq!(
            (gone.outcome, gone.reason.as_deref()),
            (Outcome::Failed, Some("certificate not found"))
        );
        let expired = read(
            200,
            json!({"outcome": "success", "expires_at": "2026-11-25T00:00:00Z"}),
            false,
        );
        assert_eq!(expired.outcome, Outcome::Failed);
        for (status, body) in [
            (200, json!({"outcome": "maybe"})),
            (200, json!([1])),
            (200, json!({"outcome": "success"})),
        ] {
            assert_eq!(read(status, body, true).code, "malformed_answer");
        }
        assert_eq!(
            read_trustedform(200, b"<html>", false, now()).code,
            "malformed_answer"
        );
        for status in [500, 503, 429, 401, 302] {
            assert_eq!(
                read(status, json!({}), true).outcome,
                Outcome::Unavailable,
                "{status}"
            );
        }
    }

    #[test]
    fn jornaya_authentic_and_consent_decide() {
        let read =
            |body: Value, consent| read_jornaya(200, body.to_string().as_bytes(), consent, now());
        assert_eq!(
            read(json!({"audit": {"authentic": 1, "consent": 1}}), true).outcome,
            Outcome::Passed
        );
        assert_eq!(
            read(json!({"audit": {"authentic": "0"}}), true).code,
            "not_authentic"
        );
        assert_eq!(
            read(
                json!({"audit": {"authentic": true, "consent": false}}),
                true
            )
            .code,
            "consent_not_found"
        );
        assert_eq!(
            read(json!({"audit": {"authentic": 1, "consent": 0}}), false).outcome,
            Outcome::Passed
        );
        assert_eq!(read(json!({"audit": {}}), true).code, "malformed_answer");
        assert_eq!(
            read(json!({"audit": {"authentic": 1}}), true).code,
            "malformed_answer"
        );
        assert_eq!(
            read(json!({"error": {"code": 1050, "message": "bad"}}), true).outcome,
            Outcome::Unavailable
        );
    }

    #[test]
    fn hook_verdicts_read_as_pass_fail_or_unavailable() {
        assert_eq!(of_hook_verdict(&Verdict::Accepted).outcome, Outcome::Passed);
        let no = of_hook_verdict(&Verdict::Rejected("buyer: consent too old".to_owned()));
        assert_eq!(
            (no.outcome, no.reason.as_deref()),
            (Outcome::Failed, Some("consent too old"))
        );
        assert_eq!(
            of_hook_verdict(&Verdict::Failed("unreadable answer (x)".to_owned())).code,
            "malformed_answer"
        );
        assert_eq!(
            of_hook_verdict(&Verdict::Failed("no answer within 5 ms".to_owned())).code,
            "timeout"
        );
    }
}
