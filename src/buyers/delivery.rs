//! Lead delivery (SPEC §3.2): POST the sold lead to the winning contract's delivery URL and
//! read whether the buyer accepted it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use chrono::{DateTime, Utc};

use super::Exchange;
use super::breaker::{BreakerSettings, Endpoint, Ticket};
use crate::auction::{ConfigError, SaleType};
use crate::integration::response::{Answer, Call, Legacy, Outcome, ResponseConfig, Unreadable};
use crate::integration::{CallContext, CallNames};
use crate::money::Money;

/// Longest buyer answer kept with a sale.
pub const MAX_STORED_ANSWER: usize = 4096;

/// A contract's `delivery` column.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    pub url: String,
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub accept: Option<AcceptRule>,
    #[serde(default)]
    pub reason_path: Option<String>,
    /// How the call is made (docs/buyer-integrations.md); absent: the native JSON body.
    #[serde(default)]
    pub request: Option<crate::integration::RequestConfig>,
    /// How the answer is read (docs/buyer-integrations.md), compiled with `accept` and
    /// `reason_path` by [`DeliveryConfig::parse`].
    #[serde(default)]
    pub response: ResponseConfig,
}

/// The sale is accepted only if the JSON value at `path` equals `equals`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptRule {
    pub path: String,
    pub equals: Value,
}

impl DeliveryConfig {
    /// Reads a `delivery` column; errors point under `/delivery`.
    pub fn parse(value: &Value) -> Result<DeliveryConfig, Vec<ConfigError>> {
        let mut config: DeliveryConfig = serde_json::from_value(value.clone()).map_err(|e| {
            vec![ConfigError::new(
                "/delivery",
                crate::auction::shape_error(&e),
            )]
        })?;
        let mut errors = Vec::new();
        match reqwest::Url::parse(&config.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => errors.push(ConfigError::new("/delivery/url", "must be an http(s) URL")),
        }
        errors.extend(crate::auction::check_headers(
            &config.headers,
            "/delivery/headers",
        ));
        if let Some(request) = &config.request {
            errors.extend(request.errors("/delivery/request", crate::integration::Call::Delivery));
        }
        if config
            .timeout_ms
            .is_some_and(|t| !(1..=60_000).contains(&t))
        {
            errors.push(ConfigError::new(
                "/delivery/timeout_ms",
                "must be between 1 and 60000",
            ));
        }
        let pointers = [
            (
                "/delivery/accept/path",
                config.accept.as_ref().map(|a| a.path.as_str()),
            ),
            ("/delivery/reason_path", config.reason_path.as_deref()),
        ];
        for (at, pointer) in pointers {
            if pointer.is_some_and(|p| !p.is_empty() && !p.starts_with('/')) {
                errors.push(ConfigError::new(
                    at,
                    "must be a JSON pointer such as /status",
                ));
            }
        }
        let legacy = Legacy {
            accept: config.accept.as_ref().map(|a| (a.path.as_str(), &a.equals)),
            reason_path: config.reason_path.as_deref(),
            ..Legacy::default()
        };
        if let Err(found) = config
            .response
            .compile(Call::Delivery, &legacy, "/delivery")
        {
            errors.extend(found);
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    pub fn timeout(&self, default_ms: u64) -> Duration {
        Duration::from_millis(self.timeout_ms.map_or(default_ms, u64::from))
    }
}

/// What the buyer receives.
#[derive(Serialize)]
pub struct DeliveryRequest<'a> {
    pub lead_id: Uuid,
    pub ping_id: Uuid,
    pub offer: &'a str,
    pub sale_type: SaleType,
    pub price: Money,
    pub rtb_ref: Option<&'a str>,
    pub test: bool,
    pub lead: &'a Map<String, Value>,
    pub consent: &'a Map<String, Value>,
    /// The offer, campaign, partner and sub-ids for a `request` template (not in the native
    /// body).
    #[serde(skip)]
    pub names: CallNames<'a>,
}

impl<'a> DeliveryRequest<'a> {
    /// What a `request` template reads of this call.
    pub fn context(&self) -> CallContext<'a> {
        CallContext {
            consent: Some(self.consent),
            lead_id: Some(self.lead_id),
            sale_type: Some(self.sale_type),
            price: Some(self.price),
            rtb_ref: self.rtb_ref,
            ..CallContext::at_ping(self.lead, self.ping_id, self.test, self.names)
        }
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// The buyer has this consumer already (its own dedup): the sale ends `duplicate`.
    Duplicate(String),
    /// The buyer read the lead and declined it (a readable 2xx or 4xx answer).
    Rejected(String),
    /// No usable answer: timeout, connection error, 5xx, unreadable answer.
    Failed(String),
}

/// The delivery's outcome with what the buyer answered, for the record.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub verdict: Verdict,
    pub http_status: Option<u16>,
    pub answer: Option<String>,
    pub elapsed: Duration,
}

pub async fn deliver(
    http: &super::Outbound,
    config: &DeliveryConfig,
    timeout: Duration,
    request: &DeliveryRequest<'_>,
) -> Delivery {
    let started = Instant::now();
    let exchange = match &config.request {
        None => super::post_json(http, &config.url, &config.headers, request, timeout).await,
        Some(template) => match template.render(&config.url, &request.context()) {
            Ok(rendered) => super::send_rendered(http, rendered, &config.headers, timeout).await,
            // A request that cannot be rendered makes no call: the sale fails with the reason.
            Err(error) => {
                return Delivery {
                    verdict: Verdict::Failed(error.to_string()),
                    http_status: None,
                    answer: None,
                    elapsed: started.elapsed(),
                };
            }
        },
    };
    let verdict = verdict_of(config, &exchange, timeout);
    let (http_status, answer) = match &exchange {
        Exchange::Answer { status, body } => (
            Some(*status),
            Some(truncate(&String::from_utf8_lossy(body))),
        ),
        Exchange::TooLarge { status } => (Some(*status), None),
        Exchange::Failed(_) | Exchange::TimedOut => (None, None),
    };
    // What the buyer answered is kept (the sale's record, the post's answer): the lead's
    // values it quotes are masked first, so no PII is stored in the clear (docs/pii.md).
    let personal = crate::pii::personal_values(request.lead, request.consent);
    let mask = |text: String| crate::pii::redact(&text, &personal);
    let verdict = match verdict {
        Verdict::Accepted => Verdict::Accepted,
        Verdict::Duplicate(reason) => Verdict::Duplicate(mask(reason)),
        Verdict::Rejected(reason) => Verdict::Rejected(mask(reason)),
        Verdict::Failed(reason) => Verdict::Failed(mask(reason)),
    };
    Delivery {
        verdict,
        http_status,
        answer: answer.map(mask),
        elapsed: started.elapsed(),
    }
}

/// Before a delivery: the contract's delivery endpoint's breaker lets the call through
/// (`Ok`, to give to [`record`]), or the delivery fails at once without a call (`Err`:
/// `failed`, reason "buyer unavailable: …").
pub fn admit(
    http: &super::Outbound,
    tenant: Uuid,
    contract: Uuid,
    settings: &BreakerSettings,
    now: DateTime<Utc>,
) -> Result<Ticket, Delivery> {
    http.breakers()
        .admit(tenant, contract, Endpoint::Delivery, now, settings)
        .map_err(|open| Delivery {
            verdict: Verdict::Failed(format!("buyer unavailable: {}", open.detail())),
            http_status: None,
            answer: None,
            elapsed: Duration::ZERO,
        })
}

/// After a delivery let through by `ticket`: its outcome for the breaker (a failure: no
/// answer in time, no connection, or a 5xx).
pub fn record(
    http: &super::Outbound,
    tenant: Uuid,
    contract: Uuid,
    settings: &BreakerSettings,
    ticket: Ticket,
    delivered: &Delivery,
    now: DateTime<Utc>,
) {
    let failed = match delivered.http_status {
        Some(status) => status >= 500,
        None => matches!(delivered.verdict, Verdict::Failed(_)),
    };
    http.breakers().record(
        tenant,
        contract,
        Endpoint::Delivery,
        ticket,
        failed,
        now,
        settings,
    );
}

/// The verdict on what came of a delivery: the answer read by the contract's rules
/// ([`judge`]), or why there is no answer to read.
pub fn verdict_of(config: &DeliveryConfig, exchange: &Exchange, timeout: Duration) -> Verdict {
    match exchange {
        Exchange::Answer { status, body } => judge(config, *status, body),
        Exchange::TooLarge { .. } => Verdict::Failed("answer larger than 64 KiB".to_owned()),
        Exchange::Failed(error) => Verdict::Failed(format!("delivery failed: {error}")),
        Exchange::TimedOut => {
            Verdict::Failed(format!("no answer within {} ms", timeout.as_millis()))
        }
    }
}

/// Reads a buyer's answer by the contract's response rules (docs/buyer-integrations.md,
/// "Delivery: the verdict"; without rules, SPEC §3.2): a `status` rule, else the status's
/// class, else the answer's conditions, `duplicate` before `rejected` before `accepted`.
pub fn judge(config: &DeliveryConfig, status: u16, body: &[u8]) -> Verdict {
    let rules = config.response.rules(Call::Delivery);
    let body = Answer::decode(body, rules.format);
    let answer = Answer::new(&body, rules.format);
    // A number in the answer keeps its text (a reason or a code quoted exactly).
    let reason = || {
        let stated = rules.reason.as_ref().and_then(|at| answer.text_at(at));
        format!(
            "buyer: {}",
            truncate(&stated.unwrap_or_else(|| format!("HTTP {status}")))
        )
    };
    if let Some(outcome) = rules.status(status) {
        return match outcome {
            Outcome::Accepted => Verdict::Accepted,
            Outcome::Duplicate => Verdict::Duplicate(reason()),
            Outcome::Rejected => Verdict::Rejected(reason()),
            // Only a delivery's verdicts pass the configuration's check.
            _ => Verdict::Failed(reason()),
        };
    }
    if !(200..500).contains(&status) {
        return Verdict::Failed(format!("buyer answered HTTP {status}"));
    }
    // A redirect or a client error is the buyer's considered answer: not this lead.
    if status >= 300 {
        return Verdict::Rejected(reason());
    }
    let read = || -> Result<Verdict, Unreadable> {
        let holds = |condition: &Option<_>| match condition {
            Some(condition) => answer.holds(condition).map(Some),
            None => Ok(None),
        };
        if holds(&rules.duplicate)? == Some(true) {
            return Ok(Verdict::Duplicate(reason()));
        }
        if holds(&rules.rejected)? == Some(true) {
            return Ok(Verdict::Rejected(reason()));
        }
        Ok(match holds(&rules.accepted)? {
            Some(false) => Verdict::Rejected(reason()),
            Some(true) | None => Verdict::Accepted,
        })
    };
    read().unwrap_or_else(|unreadable| Verdict::Failed(format!("unreadable answer ({unreadable})")))
}

/// At most `MAX_STORED_ANSWER` bytes of a buyer's text, safe to store.
fn truncate(text: &str) -> String {
    super::clean_text(text, MAX_STORED_ANSWER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(accept: bool) -> DeliveryConfig {
        DeliveryConfig::parse(&if accept {
            json!({ "url": "https://buyer.example/leads", "accept": { "path": "/status", "equals": "accepted" },
                    "reason_path": "/message" })
        } else {
            json!({ "url": "https://buyer.example/leads", "reason_path": "/error/text" })
        })
        .unwrap()
    }

    #[test]
    fn an_older_accept_rule_compares_null_exactly() {
        let rule = DeliveryConfig::parse(
            &json!({ "url": "https://buyer.example/leads", "accept": { "path": "/error", "equals": null } }),
        )
        .unwrap();
        assert_eq!(judge(&rule, 200, br#"{"error":null}"#), Verdict::Accepted);
        assert!(matches!(
            judge(&rule, 200, br#"{"error":"bad zip"}"#),
            Verdict::Rejected(_)
        ));
        assert!(matches!(judge(&rule, 200, br#"{}"#), Verdict::Rejected(_)));
    }

    #[test]
    fn answers_are_judged_by_status_and_the_accept_rule() {
        let rule = config(true);
        assert_eq!(
            judge(&rule, 200, br#"{"status":"accepted"}"#),
            Verdict::Accepted
        );
        assert_eq!(
            judge(
                &rule,
                200,
                br#"{"status":"rejected","message":"out of area"}"#
            ),
            Verdict::Rejected("buyer: out of area".into())
        );
        assert_eq!(
            judge(&rule, 200, b"OK"),
            Verdict::Failed("unreadable answer (not JSON)".into())
        );
        assert_eq!(
            judge(&rule, 422, br#"{"message":"duplicate lead"}"#),
            Verdict::Rejected("buyer: duplicate lead".into())
        );
        assert_eq!(
            judge(&rule, 503, b""),
            Verdict::Failed("buyer answered HTTP 503".into())
        );
        assert_eq!(
            judge(&rule, 302, b""),
            Verdict::Rejected("buyer: HTTP 302".into())
        );

        let plain = config(false);
        assert_eq!(judge(&plain, 201, b"thanks"), Verdict::Accepted);
        assert_eq!(
            judge(&plain, 400, br#"{"error":{"text":"bad zip"}}"#),
            Verdict::Rejected("buyer: bad zip".into())
        );
        assert_eq!(
            judge(&plain, 400, b"nope"),
            Verdict::Rejected("buyer: HTTP 400".into())
        );
    }

    #[test]
    fn bad_delivery_settings_are_reported_with_pointers() {
        let errors = DeliveryConfig::parse(
            &json!({ "url": "ftp://x", "timeout_ms": 0, "reason_path": "message" }),
        )
        .unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/delivery/url",
                "/delivery/timeout_ms",
                "/delivery/reason_path"
            ]
        );
        assert!(DeliveryConfig::parse(&json!({ "url": "https://x", "secret": 1 })).is_err());
        let errors = DeliveryConfig::parse(&json!({ "url": "https://x",
            "headers": { "Authorization": "Bearer a\r\nHost: evil", "Transfer-Encoding": "chunked" } }))
        .unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/delivery/headers/Authorization",
                "/delivery/headers/Transfer-Encoding"
            ]
        );
    }

    fn rules(response: serde_json::Value) -> DeliveryConfig {
        DeliveryConfig::parse(
            &json!({ "url": "https://buyer.example/leads", "response": response }),
        )
        .unwrap()
    }

    #[test]
    fn duplicate_comes_before_rejected_before_accepted() {
        let config = rules(json!({
            "accepted": { "path": "/status", "in": ["ok", "accepted"] },
            "duplicate": { "path": "/dup", "equals": true },
            "rejected": { "path": "/error", "exists": true },
            "reason": { "path": "/message" }
        }));
        let verdict = |body: &str| judge(&config, 200, body.as_bytes());
        assert_eq!(
            verdict(r#"{"status":"ok","dup":true,"error":"x","message":"seen it"}"#),
            Verdict::Duplicate("buyer: seen it".into())
        );
        assert_eq!(
            verdict(r#"{"status":"ok","dup":"true","error":"x"}"#),
            Verdict::Duplicate("buyer: HTTP 200".into())
        );
        assert_eq!(
            verdict(r#"{"status":"ok","error":"x","message":"outside our area"}"#),
            Verdict::Rejected("buyer: outside our area".into())
        );
        assert_eq!(verdict(r#"{"status":"accepted"}"#), Verdict::Accepted);
        assert_eq!(
            verdict(r#"{"status":"maybe","message":"hmm"}"#),
            Verdict::Rejected("buyer: hmm".into())
        );
        assert_eq!(
            verdict("<ok/>"),
            Verdict::Failed("unreadable answer (not JSON)".into())
        );
        // Without an accepted condition, a 2xx answer no other condition holds for is accepted.
        let config = rules(json!({ "rejected": { "path": "/error", "exists": true } }));
        assert_eq!(judge(&config, 200, br#"{"id":1}"#), Verdict::Accepted);
    }

    #[test]
    fn status_rules_decide_before_the_answer() {
        let config = rules(json!({
            "status": { "409": "duplicate", "4xx": "rejected", "5xx": "failed", "202": "accepted" },
            "accepted": { "path": "/status", "equals": "ok" },
            "reason": { "path": "/message" }
        }));
        assert_eq!(
            judge(&config, 409, br#"{"message":"already sold to us"}"#),
            Verdict::Duplicate("buyer: already sold to us".into())
        );
        assert_eq!(
            judge(&config, 404, b""),
            Verdict::Rejected("buyer: HTTP 404".into())
        );
        assert_eq!(
            judge(&config, 502, br#"{"message":"down"}"#),
            Verdict::Failed("buyer: down".into())
        );
        assert_eq!(judge(&config, 202, b"queued"), Verdict::Accepted);
        assert_eq!(
            judge(&config, 200, br#"{"status":"no"}"#),
            Verdict::Rejected("buyer: HTTP 200".into())
        );
        // Statuses without a rule read as SPEC §3.2 says.
        assert_eq!(
            judge(&config, 302, b""),
            Verdict::Rejected("buyer: HTTP 302".into())
        );
        let plain = rules(json!({ "status": { "409": "duplicate" } }));
        assert_eq!(
            judge(&plain, 503, b""),
            Verdict::Failed("buyer answered HTTP 503".into())
        );
        assert_eq!(
            judge(&plain, 409, b""),
            Verdict::Duplicate("buyer: HTTP 409".into())
        );
    }

    #[test]
    fn xml_answers_are_judged_by_element_paths() {
        let config = rules(json!({
            "format": "xml",
            "accepted": { "path": "/PostResponse/@result", "equals": "success" },
            "duplicate": { "path": "/PostResponse/Errors/Error[1]/@code", "equals": "DUP" },
            "reason": { "path": "/PostResponse/Errors/Error" }
        }));
        let verdict = |body: &str| judge(&config, 200, body.as_bytes());
        assert_eq!(
            verdict(
                r#"<?xml version="1.0"?><PostResponse result="success"><LeadId>9</LeadId></PostResponse>"#
            ),
            Verdict::Accepted
        );
        assert_eq!(
            verdict(
                r#"<PostResponse result="failure"><Errors><Error code="DUP">Duplicate lead</Error></Errors></PostResponse>"#
            ),
            Verdict::Duplicate("buyer: Duplicate lead".into())
        );
        assert_eq!(
            verdict(
                r#"<ns:PostResponse xmlns:ns="urn:b" result="failure"><ns:Errors><ns:Error code="ZIP">Bad &lt;zip&gt;</ns:Error></ns:Errors></ns:PostResponse>"#
            ),
            Verdict::Rejected("buyer: Bad <zip>".into())
        );
        assert_eq!(
            verdict(r#"{"result":"success"}"#),
            Verdict::Failed("unreadable answer (not XML)".into())
        );
        // An answer in ISO-8859-1 is read as such.
        assert_eq!(
            judge(
                &config,
                200,
                b"<PostResponse result=\"failure\"><Errors><Error>D\xe9j\xe0 vu</Error></Errors></PostResponse>"
            ),
            Verdict::Rejected("buyer: D\u{e9}j\u{e0} vu".into())
        );
    }

    #[test]
    fn text_answers_are_judged_by_regexes() {
        // A condition needs a test.
        let errors = DeliveryConfig::parse(&json!({ "url": "https://x", "response": {
            "format": "text", "accepted": { "regex": "^ok" } } }))
        .unwrap_err();
        assert_eq!(errors[0].pointer, "/delivery/response/accepted");
        let config = rules(json!({
            "format": "text",
            "accepted": { "regex": "^(?i)accepted", "exists": true },
            "duplicate": { "regex": "^DUPLICATE", "exists": true },
            "rejected": { "regex": "^result=(\\w+)", "in": ["rejected", "error"] },
            "reason": { "regex": "reason=([^&]+)" }
        }));
        let verdict = |body: &str| judge(&config, 200, body.as_bytes());
        assert_eq!(verdict("Accepted|lead 42"), Verdict::Accepted);
        assert_eq!(
            verdict("DUPLICATE reason=seen"),
            Verdict::Duplicate("buyer: seen".into())
        );
        assert_eq!(
            verdict("result=rejected&reason=outside our area"),
            Verdict::Rejected("buyer: outside our area".into())
        );
        assert_eq!(
            verdict("result=pending"),
            Verdict::Rejected("buyer: HTTP 200".into())
        );
    }

    #[test]
    fn the_older_keys_beside_their_response_rules_are_refused() {
        let errors = DeliveryConfig::parse(&json!({ "url": "https://x",
            "accept": { "path": "/status", "equals": "ok" },
            "reason_path": "/message",
            "response": { "accepted": { "path": "/s", "equals": "ok" }, "reason": { "regex": "(.*)" } } }))
        .unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/delivery/accept", "/delivery/reason_path"]);
        let errors = DeliveryConfig::parse(&json!({ "url": "https://x",
            "response": { "accepted": { "regex": "([a-z]+", "equals": "ok" } } }))
        .unwrap_err();
        assert_eq!(errors[0].pointer, "/delivery/response/accepted/regex");
        // The older keys alone, or with other rules, keep working.
        let config = DeliveryConfig::parse(&json!({ "url": "https://x",
            "accept": { "path": "/status", "equals": "ok" },
            "response": { "status": { "409": "duplicate" } } }))
        .unwrap();
        assert_eq!(
            judge(&config, 200, br#"{"status":"ok"}"#),
            Verdict::Accepted
        );
        assert_eq!(
            judge(&config, 409, b""),
            Verdict::Duplicate("buyer: HTTP 409".into())
        );
    }

    #[test]
    fn long_answers_are_cut_at_a_character_boundary() {
        let long = "é".repeat(3000);
        let cut = truncate(&long);
        assert!(cut.len() <= MAX_STORED_ANSWER && long.starts_with(&cut));
    }
}
