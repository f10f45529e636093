//! The real-time bid request (SPEC §3.1): POST the PII-free lead to the contract's URL and
//! bring back what the buyer answered, within the contract's timeout.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Exchange;
use crate::auction::{Decline, DeclineReason, RtbBid, RtbPricing, SaleType, parse_rtb_answer};
use crate::integration::{CallContext, CallNames};

#[derive(Serialize)]
pub struct BidRequest<'a> {
    pub ping_id: Uuid,
    pub offer: &'a str,
    pub sale_types: &'a [SaleType],
    pub lead: &'a Map<String, Value>,
    pub test: bool,
    pub tmax_ms: u32,
    /// The offer, campaign and partner for a `request` template (not in the native body).
    #[serde(skip)]
    pub names: CallNames<'a>,
}

impl<'a> BidRequest<'a> {
    /// What a `request` template reads of this call.
    pub fn context(&self) -> CallContext<'a> {
        CallContext {
            sale_types: self.sale_types,
            tmax_ms: Some(self.tmax_ms),
            ..CallContext::at_ping(self.lead, self.ping_id, self.test, self.names)
        }
    }
}

/// Sends the bid request; never takes longer than its `tmax_ms`.
pub async fn request_bids(
    http: &super::Outbound,
    pricing: &RtbPricing,
    request: &BidRequest<'_>,
) -> (Exchange, Duration) {
    let started = Instant::now();
    let timeout = Duration::from_millis(u64::from(request.tmax_ms));
    let exchange = match &pricing.request {
        None => match pricing.url.parsed() {
            Some(url) => super::post_json_to(http, url, &pricing.headers, request, timeout).await,
            None => super::invalid_url(),
        },
        // A request that cannot be rendered makes no call: `rtb_error` with the reason.
        Some(config) => match config.render(&pricing.url, &request.context()) {
            Ok(rendered) => super::send_rendered(http, rendered, &pricing.headers, timeout).await,
            Err(error) => Exchange::Failed(error.to_string()),
        },
    };
    (exchange, started.elapsed())
}

/// The bid read from what came of the request (SPEC §3.1): the answer read by the contract's
/// rules ([`parse_rtb_answer`]), or the decline for no answer (`rtb_invalid` for one too
/// large, `rtb_timeout`, `rtb_error`).
pub fn read_reply(reply: &Exchange, pricing: &RtbPricing, tmax_ms: u32) -> Result<RtbBid, Decline> {
    match reply {
        Exchange::Answer { status, body } => parse_rtb_answer(*status, body, pricing),
        Exchange::TooLarge { .. } => Err(Decline::with(
            DeclineReason::RtbInvalid,
            "answer larger than 64 KiB",
        )),
        Exchange::TimedOut => Err(Decline::with(
            DeclineReason::RtbTimeout,
            format!("no answer within {tmax_ms} ms"),
        )),
        Exchange::Failed(error) => Err(Decline::with(DeclineReason::RtbError, error.clone())),
    }
}
