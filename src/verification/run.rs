//! Running an offer's verification steps on a posted lead, in order: each step's call behind
//! its provider's breaker (as a buyer's endpoint, per tenant), within its timeout, its
//! definitive answer kept per certificate (`super::cache`). A required step that does not pass
//! ends the post `consent_unverified` (`crate::post`); the steps after it are not run.

use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::cache::{self, Key};
use super::judge::{self, Judgement, Outcome};
use super::{Provider, Step, StepKind};
use crate::app::AppState;
use crate::buyers::breaker::{Endpoint, exchange_failed};
use crate::buyers::delivery::{self, DeliveryConfig};
use crate::buyers::{self, Exchange};
use crate::integration::{CallContext, CallNames};
use crate::post::settle::PostedLead;

/// One step's result, as the explain shows it and the lead keeps it: never PII (the
/// provider's words are masked of the lead's values), never credentials.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// Its place in the offer's `verification` (0 first).
    pub step: usize,
    #[serde(rename = "type")]
    pub provider: Provider,
    pub required: bool,
    pub outcome: Outcome,
    /// A stable code: `verified`, or why not (docs/verification.md).
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The answer was a kept one: no call was made.
    pub cached: bool,
    pub took_ms: u64,
}

/// What an offer's steps found for a lead.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub steps: Vec<StepResult>,
}

impl Report {
    /// The required step that did not pass, if one did not: the post is `consent_unverified`.
    pub fn refusal(&self) -> Option<&StepResult> {
        self.steps
            .iter()
            .find(|s| s.required && s.outcome != Outcome::Passed)
    }

    /// The steps as stored with the lead (`leads.verification`).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(&self.steps).unwrap_or(Value::Null)
    }
}

/// The breaker key of a provider: TrustedForm's and Jornaya's are one each per tenant; a
/// hook's is its URL's origin's.
fn breaker_id(kind: &StepKind) -> Uuid {
    match kind {
        StepKind::Trustedform { .. } => Uuid::new_v5(&Uuid::NAMESPACE_URL, b"gavel:trustedform"),
        StepKind::Jornaya { .. } => Uuid::new_v5(&Uuid::NAMESPACE_URL, b"gavel:jornaya"),
        StepKind::Http(config) => {
            let origin = url::Url::parse(&config.url)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_default();
            Uuid::new_v5(
                &Uuid::NAMESPACE_URL,
                format!("gavel:hook:{origin}").as_bytes(),
            )
        }
    }
}

/// Runs `steps` for `posted`, in order, stopping after a required step that did not pass.
pub async fn verify(state: &AppState, posted: &PostedLead, steps: &[Step]) -> Report {
    let personal = crate::pii::personal_values(&posted.lead, &posted.consent);
    let mut report = Report::default();
    for step in steps {
        let started = Instant::now();
        let (mut judgement, cached) = run_step(state, posted, step).await;
        // A provider's words may quote what it was sent: the lead's values are masked.
        judgement.reason = judgement
            .reason
            .map(|reason| crate::pii::redact(&reason, &personal));
        crate::meters::verification(step.kind.provider().as_str(), judgement.outcome.as_str());
        report.steps.push(StepResult {
            step: step.index,
            provider: step.kind.provider(),
            required: step.required,
            outcome: judgement.outcome,
            code: judgement.code,
            reason: judgement.reason,
            cached,
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
        if step.required && judgement.outcome != Outcome::Passed {
            break;
        }
    }
    report
}

/// The text of a consent key, or the step's failure when the consent has none.
fn consent_text<'a>(posted: &'a PostedLead, field: &str) -> Result<&'a str, Judgement> {
    posted
        .consent
        .get(field)
        .and_then(Value::as_str)
        .filter(|text| !text.trim().is_empty())
        .ok_or_else(|| {
            Judgement::failed(
                "missing_consent",
                format!("the consent has no {field}"),
                None,
            )
        })
}

/// One step: its answer, and whether it was a kept one.
async fn run_step(state: &AppState, posted: &PostedLead, step: &Step) -> (Judgement, bool) {
    let tenant = posted.source.tenant_id;
    let now = state.clock.now();
    // What is sent, and the cache key of a definitive answer (none for a hook).
    let prepared = match &step.kind {
        StepKind::Trustedform {
            api_key,
            consent_field,
            match_lead,
            vendor,
        } => trustedform_call(state, posted, api_key, consent_field, *match_lead, vendor),
        StepKind::Jornaya {
            account_code,
            audit_key,
            provider_code,
            consent_field,
            ..
        } => jornaya_call(
            state,
            posted,
            account_code,
            audit_key,
            provider_code,
            consent_field,
        ),
        StepKind::Http(_) => Ok(None),
    };
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(refused) => return (refused, false),
    };
    if let Some(call) = &prepared
        && let Some(kept) = state.verifications.get(&call.key, now)
    {
        return (kept, true);
    }
    let breaker = &posted.campaign.tenant.breaker;
    let id = breaker_id(&step.kind);
    let ticket = match state
        .http
        .breakers()
        .admit(tenant, id, Endpoint::Verification, now, breaker)
    {
        Ok(ticket) => ticket,
        Err(open) => {
            let until = open
                .until
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            return (
                Judgement::unavailable(
                    "verification_unavailable",
                    format!("the provider is failing: no call until {until}"),
                ),
                false,
            );
        }
    };
    let timeout = step.timeout;
    let (exchange, judgement) =
        match (&step.kind, prepared) {
            (StepKind::Http(config), _) => hook(state, posted, config, step).await,
            (kind, Some(call)) => {
                let exchange = buyers::verification_call(
                    &state.http,
                    &call.url,
                    call.basic.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                    &call
                        .headers
                        .iter()
                        .map(|(n, v)| (*n, v.as_str()))
                        .collect::<Vec<_>>(),
                    Some((call.content_type, call.body)),
                    timeout,
                )
                .await;
                let now = state.clock.now();
                let judgement = Judgement::of_exchange(&exchange, timeout.as_millis())
                    .unwrap_or_else(|| match (&exchange, kind) {
                        (
                            Exchange::Answer { status, body },
                            StepKind::Trustedform { match_lead, .. },
                        ) => {
                            judge::read_trustedform(*status, body, *match_lead && call.matched, now)
                        }
                        (
                            Exchange::Answer { status, body },
                            StepKind::Jornaya {
                                require_consent, ..
                            },
                        ) => judge::read_jornaya(*status, body, *require_consent, now),
                        _ => Judgement::unavailable("provider_error", "no answer"),
                    });
                if judgement.outcome != Outcome::Unavailable {
                    state.verifications.put(call.key, &judgement, now);
                }
                (exchange, judgement)
            }
            (_, None) => (
                Exchange::Failed(String::new()),
                Judgement::unavailable("provider_error", "no call was prepared"),
            ),
        };
    state.http.breakers().record(
        tenant,
        id,
        Endpoint::Verification,
        ticket,
        exchange_failed(&exchange),
        state.clock.now(),
        breaker,
    );
    (judgement, false)
}

/// A provider's call, ready to send.
struct ProviderCall {
    url: String,
    basic: Option<(String, String)>,
    headers: Vec<(&'static str, String)>,
    content_type: &'static str,
    body: Vec<u8>,
    key: Key,
    /// A match-lead was asked (the lead has an email or a phone).
    matched: bool,
}

/// TrustedForm v4: `POST {base}/{certificate id}`, Basic `API:{api_key}`, `api-version: 4.0`,
/// `{"retain": {"reference", "vendor"}, "match_lead": {"email", "phone"}}`. A certificate URL
/// that is not TrustedForm's fails here, without a call.
fn trustedform_call(
    state: &AppState,
    posted: &PostedLead,
    api_key: &str,
    consent_field: &str,
    match_lead: bool,
    vendor: &Option<String>,
) -> Result<Option<ProviderCall>, Judgement> {
    let certificate = judge::certificate_id(consent_text(posted, consent_field)?)?;
    let consumer = if match_lead {
        posted.campaign.offer.schema.consumer_keys(&posted.lead)
    } else {
        Vec::new()
    };
    let value_of = |kind: &str| {
        consumer
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.clone())
    };
    let (email, phone) = (value_of("email"), value_of("phone"));
    let mut body = json!({
        "retain": {
            "reference": posted.lead_id,
            "vendor": vendor.as_deref().unwrap_or(&posted.campaign.offer.name),
        }
    });
    let matched = email.is_some() || phone.is_some();
    if matched {
        let mut lead = Map::new();
        if let Some(email) = &email {
            lead.insert("email".to_owned(), Value::String(email.clone()));
        }
        if let Some(phone) = &phone {
            lead.insert("phone".to_owned(), Value::String(phone.clone()));
        }
        body["match_lead"] = Value::Object(lead);
    }
    let base = state.settings.trustedform_base_url.trim_end_matches('/');
    let key = cache::key(&[
        posted.source.tenant_id.as_bytes(),
        b"trustedform",
        api_key.as_bytes(),
        certificate.as_bytes(),
        email.as_deref().unwrap_or_default().as_bytes(),
        phone.as_deref().unwrap_or_default().as_bytes(),
    ]);
    Ok(Some(ProviderCall {
        url: format!("{base}/{certificate}"),
        basic: Some(("API".to_owned(), api_key.to_owned())),
        headers: vec![
            ("api-version", "4.0".to_owned()),
            ("accept", "application/json".to_owned()),
        ],
        content_type: "application/json",
        body: body.to_string().into_bytes(),
        key,
        matched,
    }))
}

/// Jornaya TCPA Guardian: `POST {base}/SingleQuery` with the form `lac`, `id` (the LeadiD),
/// `lak`, `lpc`, `format=json` (in the body, so that no credential is in a URL).
fn jornaya_call(
    state: &AppState,
    posted: &PostedLead,
    account_code: &str,
    audit_key: &str,
    provider_code: &Option<String>,
    consent_field: &str,
) -> Result<Option<ProviderCall>, Judgement> {
    let leadid = judge::leadid(consent_text(posted, consent_field)?)?;
    let provider = provider_code
        .clone()
        .unwrap_or_else(|| posted.campaign.campaign.partner_id.to_string());
    let form = [
        ("lac", account_code),
        ("id", leadid.as_str()),
        ("lak", audit_key),
        ("lpc", provider.as_str()),
        ("format", "json"),
    ];
    let body = serde_urlencoded::to_string(form).unwrap_or_default();
    let base = state.settings.jornaya_base_url.trim_end_matches('/');
    let key = cache::key(&[
        posted.source.tenant_id.as_bytes(),
        b"jornaya",
        account_code.as_bytes(),
        audit_key.as_bytes(),
        provider.as_bytes(),
        leadid.as_bytes(),
    ]);
    Ok(Some(ProviderCall {
        url: format!("{base}/SingleQuery"),
        basic: None,
        headers: vec![("accept", "application/json".to_owned())],
        content_type: "application/x-www-form-urlencoded",
        body: body.into_bytes(),
        key,
        matched: false,
    }))
}

/// What a hook receives without a `request` template.
#[derive(Serialize)]
struct HookBody<'a> {
    lead_id: Uuid,
    ping_id: Uuid,
    offer: &'a str,
    test: bool,
    lead: &'a Map<String, Value>,
    consent: &'a Map<String, Value>,
}

/// A generic hook: a delivery's call (its URL under the outbound address policy, headers,
/// `request` template) whose answer is read by its `response` rules: accepted passes.
async fn hook(
    state: &AppState,
    posted: &PostedLead,
    config: &DeliveryConfig,
    step: &Step,
) -> (Exchange, Judgement) {
    let timeout = step.timeout;
    let exchange = match &config.request {
        None => {
            let body = HookBody {
                lead_id: posted.lead_id,
                ping_id: posted.ping_id,
                offer: &posted.campaign.offer.name,
                test: posted.test,
                lead: &posted.lead,
                consent: &posted.consent,
            };
            buyers::post_json(&state.http, &config.url, &config.headers, &body, timeout).await
        }
        Some(template) => {
            let context = CallContext {
                consent: Some(&posted.consent),
                lead_id: Some(posted.lead_id),
                ..CallContext::at_ping(
                    &posted.lead,
                    posted.ping_id,
                    posted.test,
                    CallNames {
                        sub_ids: posted.sub_ids.as_deref(),
                        ..CallNames::of(&posted.campaign)
                    },
                )
            };
            match template.render(&config.url, &context) {
                Ok(rendered) => {
                    buyers::send_rendered(&state.http, rendered, &config.headers, timeout).await
                }
                Err(error) => {
                    return (
                        // Not the provider's failure: the breaker does not count it.
                        Exchange::Answer {
                            status: 200,
                            body: Default::default(),
                        },
                        Judgement::unavailable("request_error", error.to_string()),
                    );
                }
            }
        }
    };
    let judgement = Judgement::of_exchange(&exchange, timeout.as_millis()).unwrap_or_else(|| {
        judge::of_hook_verdict(&delivery::verdict_of(config, &exchange, timeout))
    });
    (exchange, judgement)
}
