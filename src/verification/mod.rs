//! Consent verification on the post (issue 20 part 1, docs/verification.md): an offer's
//! `verification` steps, in order, each optional (`required: false` records without refusing):
//! TrustedForm (retain the certificate, match-lead against the posted email and phone),
//! Jornaya (TCPA Guardian on the LeadiD) and a generic HTTP hook.
//!
//! This module is the steps' configuration (read once when the configuration loads, like a
//! contract's `delivery`); `judge` reads a provider's answer into pass, fail or unavailable
//! (pure); `cache` keeps definitive answers per certificate; `run` makes the calls.

pub mod cache;
pub mod judge;
pub mod run;

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::auction::ConfigError;
use crate::buyers::delivery::DeliveryConfig;

pub use judge::{Judgement, Outcome};
pub use run::{Report, StepResult, verify};

/// Most steps an offer may have.
pub const MAX_STEPS: usize = 10;
/// A step's timeout when it names none, and the longest it may name.
pub const DEFAULT_TIMEOUT_MS: u32 = 3_000;
pub const MAX_TIMEOUT_MS: u32 = 10_000;
/// The most the steps' timeouts may add up to: the steps run one after the other before any
/// sale is reserved, and a post with no sale a minute after its claim is answered by the
/// interrupted-post sweep (`store::sales::answer_interrupted_posts`), so verification must end
/// well within that minute.
pub const MAX_TOTAL_TIMEOUT_MS: u32 = 20_000;
/// Longest credential (an API key, an account code) a step may hold.
const MAX_SECRET_CHARS: usize = 512;

/// The default certificate field of a TrustedForm step and LeadiD field of a Jornaya step.
pub const TRUSTEDFORM_FIELD: &str = "trustedform_cert_url";
pub const JORNAYA_FIELD: &str = "jornaya_leadid";

/// Where each provider answers; a server setting may replace them for tests
/// (`trustedform_base_url`, `jornaya_base_url`), never an offer: a tenant cannot redirect its
/// credentials.
pub const TRUSTEDFORM_BASE_URL: &str = "https://cert.trustedform.com";
pub const JORNAYA_BASE_URL: &str = "https://api.leadid.com";

text_codes! {
    /// A step's provider.
    pub enum Provider {
        Trustedform,
        Jornaya,
        Http,
    }
}

/// One verification step, compiled.
#[derive(Debug, Clone)]
pub struct Step {
    /// Its place in the offer's list (0 first), as the explain names it.
    pub index: usize,
    /// A failure ends the post `consent_unverified` (default); `false`: recorded only.
    pub required: bool,
    pub timeout: Duration,
    pub kind: StepKind,
}

#[derive(Clone)]
pub enum StepKind {
    Trustedform {
        api_key: String,
        /// The consent key holding the certificate URL.
        consent_field: String,
        /// Match the certificate against the posted email and phone.
        match_lead: bool,
        /// `retain.vendor`: the name the certificate is retained under (default: the offer's).
        vendor: Option<String>,
    },
    Jornaya {
        account_code: String,
        audit_key: String,
        /// `lpc`, the lead provider's code (default: the partner's id).
        provider_code: Option<String>,
        consent_field: String,
        /// The answer must say the consumer consented (default), not only that the LeadiD
        /// is authentic.
        require_consent: bool,
    },
    /// A contract delivery's `url`, `headers`, `request`, `response` (and older keys).
    Http(Box<DeliveryConfig>),
}

/// Credentials are never printed, not even by `Debug`.
impl std::fmt::Debug for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepKind::Trustedform { consent_field, .. } => f
                .debug_struct("Trustedform")
                .field("consent_field", consent_field)
                .finish_non_exhaustive(),
            StepKind::Jornaya { consent_field, .. } => f
                .debug_struct("Jornaya")
                .field("consent_field", consent_field)
                .finish_non_exhaustive(),
            StepKind::Http(config) => f.debug_tuple("Http").field(&config.url).finish(),
        }
    }
}

impl StepKind {
    pub fn provider(&self) -> Provider {
        match self {
            StepKind::Trustedform { .. } => Provider::Trustedform,
            StepKind::Jornaya { .. } => Provider::Jornaya,
            StepKind::Http(_) => Provider::Http,
        }
    }
}

/// The keys of each step type holding a credential (write-only: masked in every answer).
pub fn secret_keys(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Trustedform => &["api_key"],
        Provider::Jornaya => &["account_code", "audit_key"],
        // Its headers, masked as a contract delivery's.
        Provider::Http => &[],
    }
}

/// Reads an offer's `verification` column; errors point under `at` (`/verification`).
pub fn parse(value: &Value, at: &str) -> Result<Vec<Step>, Vec<ConfigError>> {
    let Value::Array(items) = value else {
        return Err(vec![ConfigError::new(at, "must be a list of steps")]);
    };
    if items.len() > MAX_STEPS {
        return Err(vec![ConfigError::new(
            at,
            format!("has at most {MAX_STEPS} steps"),
        )]);
    }
    let mut steps = Vec::new();
    let mut errors = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match parse_step(index, item, &format!("{at}/{index}")) {
            Ok(step) => steps.push(step),
            Err(found) => errors.extend(found),
        }
    }
    let total: u128 = steps.iter().map(|step| step.timeout.as_millis()).sum();
    if errors.is_empty() && total > u128::from(MAX_TOTAL_TIMEOUT_MS) {
        errors.push(ConfigError::new(
            at,
            format!("the steps' timeout_ms add up to {total}: at most {MAX_TOTAL_TIMEOUT_MS}"),
        ));
    }
    if errors.is_empty() {
        Ok(steps)
    } else {
        Err(errors)
    }
}

/// Reads the keys of one step: each known key taken out of `object` as it is read, so that what
/// is left is unknown.
struct Keys<'a> {
    object: Map<String, Value>,
    at: &'a str,
    errors: Vec<ConfigError>,
}

impl Keys<'_> {
    fn pointer(&self, key: &str) -> String {
        format!("{}/{key}", self.at)
    }

    fn text(&mut self, key: &str, required: bool, max_chars: usize) -> Option<String> {
        match self.object.remove(key) {
            None | Some(Value::Null) if !required => None,
            None | Some(Value::Null) => {
                self.errors
                    .push(ConfigError::new(self.pointer(key), "is required"));
                None
            }
            Some(Value::String(text)) if !text.trim().is_empty() => {
                if text.chars().count() > max_chars {
                    self.errors.push(ConfigError::new(
                        self.pointer(key),
                        format!("has at most {max_chars} characters"),
                    ));
                } else if text.chars().any(char::is_control) {
                    self.errors.push(ConfigError::new(
                        self.pointer(key),
                        "must not hold control characters",
                    ));
                }
                Some(text)
            }
            Some(_) => {
                self.errors.push(ConfigError::new(
                    self.pointer(key),
                    "must be a non-empty string",
                ));
                None
            }
        }
    }

    fn flag(&mut self, key: &str, default: bool) -> bool {
        match self.object.remove(key) {
            None => default,
            Some(Value::Bool(flag)) => flag,
            Some(_) => {
                self.errors
                    .push(ConfigError::new(self.pointer(key), "must be true or false"));
                default
            }
        }
    }

    fn timeout(&mut self) -> Duration {
        let ms = match self.object.remove("timeout_ms") {
            None => DEFAULT_TIMEOUT_MS,
            Some(value) => match value.as_u64() {
                Some(ms) if (100..=u64::from(MAX_TIMEOUT_MS)).contains(&ms) => ms as u32,
                _ => {
                    self.errors.push(ConfigError::new(
                        self.pointer("timeout_ms"),
                        format!("must be a whole number of ms between 100 and {MAX_TIMEOUT_MS}"),
                    ));
                    DEFAULT_TIMEOUT_MS
                }
            },
        };
        Duration::from_millis(u64::from(ms))
    }

    fn finish(mut self) -> Vec<ConfigError> {
        let mut unknown: Vec<String> = self.object.keys().cloned().collect();
        unknown.sort();
        for key in unknown {
            self.errors.push(ConfigError::new(
                self.pointer(&key),
                "is not a key of this step type",
            ));
        }
        self.errors
    }
}

fn parse_step(index: usize, item: &Value, at: &str) -> Result<Step, Vec<ConfigError>> {
    let Value::Object(object) = item else {
        return Err(vec![ConfigError::new(at, "must be a step object")]);
    };
    let provider = match object.get("type").and_then(Value::as_str).map(str::parse) {
        Some(Ok(provider)) => provider,
        _ => {
            return Err(vec![ConfigError::new(
                format!("{at}/type"),
                "must be trustedform, jornaya or http",
            )]);
        }
    };
    let mut keys = Keys {
        object: object.clone(),
        at,
        errors: Vec::new(),
    };
    keys.object.remove("type");
    let required = keys.flag("required", true);
    let timeout = keys.timeout();
    let kind = match provider {
        Provider::Trustedform => {
            let api_key = keys.text("api_key", true, MAX_SECRET_CHARS);
            let consent_field = keys.text("consent_field", false, 200);
            let match_lead = keys.flag("match_lead", true);
            let vendor = keys.text("vendor", false, 200);
            Some(StepKind::Trustedform {
                api_key: api_key.unwrap_or_default(),
                consent_field: consent_field.unwrap_or_else(|| TRUSTEDFORM_FIELD.to_owned()),
                match_lead,
                vendor,
            })
        }
        Provider::Jornaya => {
            let account_code = keys.text("account_code", true, MAX_SECRET_CHARS);
            let audit_key = keys.text("audit_key", true, MAX_SECRET_CHARS);
            let provider_code = keys.text("provider_code", false, 200);
            let consent_field = keys.text("consent_field", false, 200);
            let require_consent = keys.flag("require_consent", true);
            Some(StepKind::Jornaya {
                account_code: account_code.unwrap_or_default(),
                audit_key: audit_key.unwrap_or_default(),
                provider_code,
                consent_field: consent_field.unwrap_or_else(|| JORNAYA_FIELD.to_owned()),
                require_consent,
            })
        }
        Provider::Http => {
            // The rest is a contract delivery's section, read by the same code: its errors
            // come back under `/delivery` and are moved under the step.
            let mut section = std::mem::take(&mut keys.object);
            // Its timeout is the step's (bounded as every step's).
            section.remove("timeout_ms");
            match DeliveryConfig::parse(&Value::Object(section)) {
                Ok(config) => Some(StepKind::Http(Box::new(config))),
                Err(found) => {
                    keys.errors.extend(found.into_iter().map(|e| {
                        let rest = e.pointer.strip_prefix("/delivery").unwrap_or(&e.pointer);
                        ConfigError::new(format!("{at}{rest}"), e.message)
                    }));
                    None
                }
            }
        }
    };
    let errors = keys.finish();
    match kind {
        Some(kind) if errors.is_empty() => Ok(Step {
            index,
            required,
            timeout,
            kind,
        }),
        _ => Err(errors),
    }
}

/// What the explain and the post's answer show of a step's configuration.
#[derive(Debug, Clone, Serialize)]
pub struct StepName {
    pub step: usize,
    #[serde(rename = "type")]
    pub provider: Provider,
    pub required: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pointers(value: Value) -> Vec<String> {
        parse(&value, "/verification")
            .unwrap_err()
            .into_iter()
            .map(|e| e.pointer)
            .collect()
    }

    #[test]
    fn the_steps_timeouts_add_up_to_at_most_twenty_seconds() {
        let step = |ms: u32| json!({"type": "trustedform", "api_key": "K", "timeout_ms": ms});
        assert!(parse(&json!([step(10_000), step(10_000)]), "/verification").is_ok());
        let errors = parse(
            &json!([step(10_000), step(10_000), step(100)]),
            "/verification",
        )
        .err()
        .unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].pointer, "/verification");
    }

    #[test]
    fn steps_read_with_their_defaults() {
        let steps = parse(
            &json!([
                {"type": "trustedform", "api_key": "k_0123"},
                {"type": "jornaya", "account_code": "A", "audit_key": "B", "required": false,
                 "timeout_ms": 500},
                {"type": "http", "url": "https://verify.example/check",
                 "headers": {"X-Key": "s"}, "response": {"reason": {"path": "/why"}}}
            ]),
            "/verification",
        )
        .unwrap();
        assert_eq!(steps.len(), 3);
        assert!(steps[0].required);
        assert_eq!(steps[0].timeout, Duration::from_millis(3000));
        match &steps[0].kind {
            StepKind::Trustedform {
                consent_field,
                match_lead,
                ..
            } => {
                assert_eq!(consent_field, TRUSTEDFORM_FIELD);
                assert!(match_lead);
            }
            other => panic!("{other:?}"),
        }
        assert!(!steps[1].required);
        assert_eq!(steps[1].timeout, Duration::from_millis(500));
        assert_eq!(steps[2].kind.provider(), Provider::Http);
        assert_eq!(steps[2].index, 2);
    }

    #[test]
    fn every_broken_rule_has_its_pointer() {
        assert_eq!(
            pointers(json!([
                {"type": "trustedform"},
                {"type": "jornaya", "account_code": "A", "audit_key": 5, "timeout_ms": 20000},
                {"type": "http", "url": "ftp://x", "required": "yes"},
                {"type": "carrier-pigeon"},
                {"type": "trustedform", "api_key": "k", "base_url": "https://evil.example"},
            ])),
            [
                "/verification/0/api_key",
                "/verification/1/timeout_ms",
                "/verification/1/audit_key",
                "/verification/2/required",
                "/verification/2/url",
                "/verification/3/type",
                "/verification/4/base_url",
            ]
        );
        assert_eq!(pointers(json!({})), ["/verification"]);
        assert_eq!(pointers(json!([1])), ["/verification/0"]);
    }

    #[test]
    fn credentials_are_not_in_debug_output() {
        let steps = parse(
            &json!([{"type": "trustedform", "api_key": "sk_live_very_secret"},
                    {"type": "jornaya", "account_code": "acct_secret", "audit_key": "audit_secret"}]),
            "/verification",
        )
        .unwrap();
        let printed = format!("{steps:?}");
        assert!(!printed.contains("secret"), "{printed}");
    }
}
