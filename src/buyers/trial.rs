//! A contract's outbound call tried by the operator (`POST /v1/admin/contracts/{id}/test`):
//! the request rendered exactly as the auction or the post would send it, sent only when asked
//! (marked as a test), and the buyer's answer read by the contract's own rules. Nothing is
//! reserved, charged or recorded.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::delivery::{self, DeliveryRequest, Verdict};
use super::rtb::{self, BidRequest};
use super::{Exchange, Outbound};
use crate::auction::{Pricing, SaleType};
use crate::integration::{CallNames, RenderError, Rendered};
use crate::money::Money;

/// The header that marks a test call, besides `test: true` in the body's context.
pub const TEST_HEADER: &str = "Gavel-Test";

/// The most of a buyer's answer shown.
pub const SHOWN_ANSWER_BYTES: usize = 4096;

/// Which of the contract's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialCall {
    Rtb,
    Delivery,
}

/// What the operator's lead stands for in the call.
pub struct TrialInput<'a> {
    pub lead: &'a Map<String, Value>,
    pub consent: &'a Map<String, Value>,
    pub sale_types: &'static [SaleType],
    /// The delivery's sale type and price.
    pub sale_type: SaleType,
    pub price: Money,
    pub rtb_ref: Option<&'a str>,
    pub tmax_ms: u32,
    pub delivery_timeout: Duration,
    pub names: CallNames<'a>,
}

/// The request as it is sent; header values are the caller's to mask.
#[derive(Debug, Clone, Serialize)]
pub struct ShownRequest {
    pub method: String,
    pub url: String,
    /// In the order sent: the section's `headers`, then the request's own, then the body's
    /// type and the test marker.
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

/// The buyer's answer.
#[derive(Debug, Clone, Serialize)]
pub struct ShownAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body was longer than [`SHOWN_ANSWER_BYTES`] and is cut.
    pub body_truncated: bool,
}

/// How the contract's rules read the answer (or the failure of the call).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reading {
    /// Delivery: `accepted`, `duplicate`, `rejected` or `failed`. RTB: `bid`, or the decline
    /// reason (`rtb_no_bid`, `rtb_invalid`, `rtb_error`, `rtb_timeout`).
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclusive_bid: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_bid: Option<Money>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// What the trial found.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// The request, or why it could not be rendered for this lead (then nothing is sent).
    pub request: Result<ShownRequest, String>,
    pub render_us: u64,
    pub sent: bool,
    pub answer: Option<ShownAnswer>,
    pub call_ms: Option<u64>,
    pub reading: Option<Reading>,
}

/// Renders the contract's `call` for the operator's lead and, when `send`, sends it and reads
/// the answer by the contract's rules.
pub async fn try_call(
    http: &Outbound,
    contract: &crate::store::snapshot::Contract,
    call: TrialCall,
    input: &TrialInput<'_>,
    send: bool,
) -> Trial {
    let ids = (Uuid::now_v7(), Uuid::now_v7());
    let started = Instant::now();
    let prepared = prepare(contract, call, input, ids);
    let render_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let (rendered, section_headers, timeout) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            return Trial {
                request: Err(error.to_string()),
                render_us,
                sent: false,
                answer: None,
                call_ms: None,
                reading: None,
            };
        }
    };
    let shown = show_request(&rendered, section_headers);
    if !send {
        return Trial {
            request: Ok(shown),
            render_us,
            sent: false,
            answer: None,
            call_ms: None,
            reading: None,
        };
    }
    let started = Instant::now();
    let (exchange, answer_headers) =
        super::send_trial(http, rendered, section_headers, timeout).await;
    let call_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let answer = match &exchange {
        Exchange::Answer { status, body } => {
            let text = String::from_utf8_lossy(body);
            let cut = super::clean_text(&text, SHOWN_ANSWER_BYTES);
            Some(ShownAnswer {
                status: *status,
                headers: answer_headers,
                body_truncated: cut.len() < text.len(),
                body: cut,
            })
        }
        Exchange::TooLarge { status } => Some(ShownAnswer {
            status: *status,
            headers: answer_headers,
            body: String::new(),
            body_truncated: true,
        }),
        Exchange::TimedOut | Exchange::Failed(_) => None,
    };
    Trial {
        request: Ok(shown),
        render_us,
        sent: true,
        answer,
        call_ms: Some(call_ms),
        reading: Some(read(contract, call, &exchange, timeout)),
    }
}

type Prepared<'c> = (
    Rendered,
    &'c std::collections::BTreeMap<String, String>,
    Duration,
);

/// The request the call would send (the native JSON body when the contract has no `request`).
fn prepare<'c>(
    contract: &'c crate::store::snapshot::Contract,
    call: TrialCall,
    input: &TrialInput<'_>,
    (ping_id, lead_id): (Uuid, Uuid),
) -> Result<Prepared<'c>, RenderError> {
    match call {
        TrialCall::Rtb => {
            let Pricing::Rtb(pricing) = contract.compiled.pricing() else {
                return Err(RenderError::new(
                    "the contract has a fixed price: no RTB call",
                ));
            };
            let request = BidRequest {
                ping_id,
                offer: input.names.offer.map_or("", |offer| offer.name),
                sale_types: input.sale_types,
                lead: input.lead,
                test: true,
                tmax_ms: pricing.timeout_ms_or(input.tmax_ms),
                names: input.names,
            };
            let rendered = match &pricing.request {
                Some(config) => config.render(&pricing.url, &request.context())?,
                None => native(&pricing.url, &request)?,
            };
            let timeout = Duration::from_millis(u64::from(request.tmax_ms));
            Ok((rendered, &pricing.headers, timeout))
        }
        TrialCall::Delivery => {
            let config = &contract.delivery;
            let request = DeliveryRequest {
                lead_id,
                ping_id,
                offer: input.names.offer.map_or("", |offer| offer.name),
                sale_type: input.sale_type,
                price: input.price,
                rtb_ref: input.rtb_ref,
                test: true,
                lead: input.lead,
                consent: input.consent,
                names: input.names,
            };
            let rendered = match &config.request {
                Some(template) => template.render(&config.url, &request.context())?,
                None => native(&config.url, &request)?,
            };
            Ok((rendered, &config.headers, input.delivery_timeout))
        }
    }
}

/// Gavel's own JSON body, as `post_json` sends it.
fn native<T: Serialize>(url: &str, body: &T) -> Result<Rendered, RenderError> {
    Ok(Rendered {
        method: reqwest::Method::POST,
        url: url.to_owned(),
        content_type: Some(reqwest::header::HeaderValue::from_static(
            "application/json",
        )),
        headers: Vec::new(),
        body: Some(serde_json::to_vec(body).map_err(|_| RenderError::new("the body is not JSON"))?),
    })
}

fn show_request(
    rendered: &Rendered,
    section_headers: &std::collections::BTreeMap<String, String>,
) -> ShownRequest {
    let mut headers: Vec<(String, String)> = section_headers
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    for (name, value) in &rendered.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers.retain(|(shown, _)| !shown.eq_ignore_ascii_case(name.as_str()));
        headers.push((name.as_str().to_owned(), value));
    }
    if rendered.body.is_some()
        && let Some(content_type) = &rendered.content_type
    {
        headers.push((
            "content-type".to_owned(),
            String::from_utf8_lossy(content_type.as_bytes()).into_owned(),
        ));
    }
    headers.push((TEST_HEADER.to_owned(), "true".to_owned()));
    ShownRequest {
        method: rendered.method.to_string(),
        url: rendered.url.clone(),
        headers,
        body: rendered
            .body
            .as_ref()
            .map(|body| String::from_utf8_lossy(body).into_owned()),
    }
}

/// The call's outcome as the auction or the post would record it.
fn read(
    contract: &crate::store::snapshot::Contract,
    call: TrialCall,
    exchange: &Exchange,
    timeout: Duration,
) -> Reading {
    match call {
        TrialCall::Delivery => {
            let (outcome, reason) =
                match delivery::verdict_of(&contract.delivery, exchange, timeout) {
                    Verdict::Accepted => ("accepted", None),
                    Verdict::Duplicate(reason) => ("duplicate", Some(reason)),
                    Verdict::Rejected(reason) => ("rejected", Some(reason)),
                    Verdict::Failed(reason) => ("failed", Some(reason)),
                };
            Reading {
                outcome: outcome.to_owned(),
                reason,
                ..Reading::default()
            }
        }
        TrialCall::Rtb => {
            let Pricing::Rtb(pricing) = contract.compiled.pricing() else {
                unreachable!("prepare refused a fixed price")
            };
            let tmax_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
            match rtb::read_reply(exchange, pricing, tmax_ms) {
                Ok(bid) => Reading {
                    outcome: "bid".to_owned(),
                    reason: None,
                    exclusive_bid: bid.exclusive,
                    shared_bid: bid.shared,
                    reference: bid.reference,
                },
                Err(decline) => Reading {
                    outcome: decline.reason.as_str().to_owned(),
                    reason: decline.detail,
                    ..Reading::default()
                },
            }
        }
    }
}
