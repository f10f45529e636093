//! The real-time bid request (SPEC §3.1): POST the PII-free lead to the contract's URL and
//! bring back what the buyer answered, within the contract's timeout.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Exchange;
use crate::auction::{RtbPricing, SaleType};
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
        None => super::post_json(http, &pricing.url, &pricing.headers, request, timeout).await,
        // A request that cannot be rendered makes no call: `rtb_error` with the reason.
        Some(config) => match config.render(&pricing.url, &request.context()) {
            Ok(rendered) => super::send_rendered(http, rendered, &pricing.headers, timeout).await,
            Err(error) => Exchange::Failed(error.to_string()),
        },
    };
    (exchange, started.elapsed())
}
