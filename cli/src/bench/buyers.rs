//! The harness's own buyers, served in-process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json};
use serde_json::json;
use uuid::Uuid;

use super::load::Load;
use super::{BenchOptions, Latency};

/// The harness's buyers: bid endpoints with a latency distribution and a failure rate, and a
/// delivery endpoint that accepts everything, or all but a share (`--delivery-reject-rate`).
pub(super) struct FakeBuyers {
    pub(super) address: SocketAddr,
    behaviour: BuyerBehaviour,
    /// Dropped with the buyers: their thread stops serving.
    _stop: tokio::sync::oneshot::Sender<()>,
}

#[derive(Clone)]
struct BuyerBehaviour {
    latency_ms: u64,
    jitter_ms: u64,
    failure_rate: f64,
    reject_rate: f64,
    slow_ms: Option<u64>,
    calls: Arc<AtomicU64>,
    /// Each ping's slowest answer so far (microseconds from the request read to the answer
    /// sent), by ping id.
    slowest: Arc<std::sync::Mutex<std::collections::HashMap<Uuid, u64>>>,
}

impl FakeBuyers {
    pub(super) async fn start(options: &BenchOptions) -> Result<FakeBuyers> {
        let behaviour = BuyerBehaviour {
            latency_ms: options.rtb_latency_ms,
            jitter_ms: options.rtb_jitter_ms,
            failure_rate: options.rtb_failure_rate,
            reject_rate: options.delivery_reject_rate,
            slow_ms: options.slow_buyer_ms,
            calls: Arc::new(AtomicU64::new(0)),
            slowest: Arc::default(),
        };
        let router = axum::Router::new()
            .route("/rtb", post(bid))
            .route("/rtb/slow", post(slow_bid))
            .route("/rtb/xml", post(xml_bid))
            .route("/deliver", post(deliver))
            .with_state(behaviour.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        // The buyers run on a thread of their own with a single-threaded runtime: they share
        // the machine's cores with the server under test, and a runtime of several workers
        // wakes them for one another's work (thread wake-ups are most of a buyer's CPU).
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // Built on its thread: a runtime may not be dropped in async code, as it would be if
        // the thread could not start.
        let (ready, started) = tokio::sync::oneshot::channel::<std::io::Result<()>>();
        std::thread::Builder::new()
            .name("bench-buyers".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return Ok(());
                    }
                };
                let _ = ready.send(Ok(()));
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    tokio::select! {
                        served = axum::serve(listener, router).into_future() => served,
                        _ = stopped => Ok(()),
                    }
                })
            })?;
        started.await??;
        Ok(FakeBuyers {
            address,
            behaviour,
            _stop: stop,
        })
    }

    /// Each ping with bids: its slowest buyer's answer time and the ping's time beyond it;
    /// `None` when no buyer here answered a timed ping, or when one of them never answers
    /// (`--slow-buyer-ms`). In open loop the ping's time counts from its planned send, so a
    /// late send counts in the time beyond.
    pub(super) fn beyond_slowest(&self, load: &Load) -> (Option<Latency>, Option<Latency>) {
        if self.behaviour.slow_ms.is_some() {
            return (None, None);
        }
        let slowest = self.behaviour.slowest.lock().expect("the buyers' lock");
        let (answers, beyond): (Vec<u64>, Vec<u64>) = load
            .pings_with_bids_timed
            .iter()
            .filter_map(|(ping_id, micros)| {
                let answer = *slowest.get(ping_id)?;
                Some((answer, micros.saturating_sub(answer)))
            })
            .unzip();
        if answers.is_empty() {
            return (None, None);
        }
        (Some(Latency::of(answers)), Some(Latency::of(beyond)))
    }
}

/// The one field of a bid request the harness's buyers read.
#[derive(serde::Deserialize)]
struct BidRequestPing {
    ping_id: Uuid,
}

async fn bid(State(behaviour): State<BuyerBehaviour>, body: axum::body::Bytes) -> Response {
    let ping_id = serde_json::from_slice::<BidRequestPing>(&body).map(|request| request.ping_id);
    if answer_late(&behaviour, ping_id.ok()).await {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    Json(json!({ "exclusive_bid": "31.50", "shared_bid": 9.75, "ref": "bench" })).into_response()
}

/// A buyer with its own API (`--rtb-templates`): a form post in, XML out, the same bids.
async fn xml_bid(
    State(behaviour): State<BuyerBehaviour>,
    Form(request): Form<BidRequestPing>,
) -> Response {
    if answer_late(&behaviour, Some(request.ping_id)).await {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/xml")],
        r#"<?xml version="1.0"?><response status="bid"><bid id="bench"><exclusive>31.50</exclusive><shared>9.75</shared></bid></response>"#,
    )
        .into_response()
}

/// Waits the drawn answer time and records it for the ping; true when this answer is to be
/// an HTTP 500 (`--rtb-failure-rate`).
async fn answer_late(behaviour: &BuyerBehaviour, ping_id: Option<Uuid>) -> bool {
    use rand::Rng;
    let started = Instant::now();
    // The answer time is drawn to the microsecond, uniformly in latency ± jitter.
    let (delay_us, fail) = {
        let mut rng = rand::rng();
        let spread = behaviour.jitter_ms as i64 * 1000;
        let offset = if spread > 0 {
            rng.random_range(-spread..=spread)
        } else {
            0
        };
        let delay = (behaviour.latency_ms as i64 * 1000 + offset).max(0) as u64;
        (
            delay,
            rng.random_bool(behaviour.failure_rate.clamp(0.0, 1.0)),
        )
    };
    behaviour.calls.fetch_add(1, Ordering::Relaxed);
    // On the harness's own timer thread, not tokio's timer, whose millisecond ticks would
    // make every buyer up to 1 ms slower than drawn and answer in bunches.
    super::alarm::sleep_until(started + Duration::from_micros(delay_us)).await;
    // The time this answer really took here (a late wake-up is the buyer's, not Gavel's).
    if let Some(ping_id) = ping_id {
        let took = started.elapsed().as_micros() as u64;
        let mut slowest = behaviour.slowest.lock().expect("the buyers' lock");
        let answer = slowest.entry(ping_id).or_default();
        *answer = (*answer).max(took);
    }
    fail
}

/// Accepts every lead, but a share `--delivery-reject-rate` of them.
async fn deliver(State(behaviour): State<BuyerBehaviour>) -> Json<serde_json::Value> {
    use rand::Rng;
    if rand::rng().random_bool(behaviour.reject_rate.clamp(0.0, 1.0)) {
        return Json(json!({ "status": "rejected", "reason": "bench: not this one" }));
    }
    Json(json!({ "status": "accepted" }))
}

async fn slow_bid(State(behaviour): State<BuyerBehaviour>) -> Response {
    tokio::time::sleep(Duration::from_millis(behaviour.slow_ms.unwrap_or(5000))).await;
    Json(json!({ "exclusive_bid": 99 })).into_response()
}
