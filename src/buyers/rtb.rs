//! The real-time bid request (SPEC §3.1): POST the PII-free lead to the contract's URL and
//! bring back what the buyer answered, within the contract's timeout.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Exchange;
use crate::auction::{RtbPricing, SaleType};

#[derive(Serialize)]
pub struct BidRequest<'a> {
    pub ping_id: Uuid,
    pub offer: &'a str,
    pub sale_types: &'a [SaleType],
    pub lead: &'a Map<String, Value>,
    pub test: bool,
    pub tmax_ms: u32,
}

/// Sends the bid request; never takes longer than its `tmax_ms`.
pub async fn request_bids(
    http: &super::Outbound,
    pricing: &RtbPricing,
    request: &BidRequest<'_>,
) -> (Exchange, Duration) {
    let started = Instant::now();
    let timeout = Duration::from_millis(u64::from(request.tmax_ms));
    let exchange = super::post_json(http, &pricing.url, &pricing.headers, request, timeout).await;
    (exchange, started.elapsed())
}
