//! The real-time bid request (SPEC §3.1): POST the PII-free lead to the contract's URL and
//! bring back what the buyer answered, within the contract's timeout.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

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

/// What came back from the buyer's endpoint, before it is read as bids.
#[derive(Debug)]
pub enum Reply {
    Answer {
        status: u16,
        body: Bytes,
    },
    /// No complete answer within the contract's timeout.
    TimedOut,
    /// The connection failed (refused, reset, DNS, TLS).
    Failed(String),
}

/// Sends the bid request; never takes longer than the contract's timeout.
pub async fn request_bids(
    http: &reqwest::Client,
    pricing: &RtbPricing,
    request: &BidRequest<'_>,
) -> (Reply, Duration) {
    let started = Instant::now();
    let timeout = Duration::from_millis(u64::from(pricing.timeout_ms()));
    let mut call = http.post(&pricing.url).json(request);
    for (name, value) in &pricing.headers {
        call = call.header(name, value);
    }
    let exchange = async {
        let response = call.send().await?;
        let status = response.status().as_u16();
        let body = super::read_answer(response).await?;
        Ok::<_, reqwest::Error>((status, body))
    };
    let reply = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok((status, Some(body)))) => Reply::Answer { status, body },
        Ok(Ok((_, None))) => Reply::Failed("answer larger than 64 KiB".to_owned()),
        Ok(Err(error)) if error.is_timeout() => Reply::TimedOut,
        // The error names the URL's host, never lead data.
        Ok(Err(error)) => Reply::Failed(error.without_url().to_string()),
        Err(_) => Reply::TimedOut,
    };
    (reply, started.elapsed())
}
