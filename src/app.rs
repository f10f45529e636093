//! Application state, the router with its middleware stack, and the server's life cycle.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderName;
use axum::response::IntoResponse;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::api::rate_limit::{CampaignRateLimits, ReportSlots};
use crate::api::{self, ErrorCode, Problem};
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::store::group::Group;
use crate::store::pings::RecordPings;
use crate::store::snapshot::ConfigStore;
use crate::store::state_cache::StateReader;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub db: PgPool,
    /// The connections of the ping's grouped statements (`store::grouped_statements_pool`).
    pub grouped_db: PgPool,
    pub settings: Settings,
    /// One client for every outbound call made for a tenant (buyers), so connections are pooled
    /// and reused, under the outbound address policy.
    pub http: crate::buyers::Outbound,
    /// The live configuration snapshot.
    pub config: Arc<ConfigStore>,
    pub rate_limits: CampaignRateLimits,
    pub report_slots: ReportSlots,
    pub clock: Arc<dyn Clock>,
    /// One permit per auction in flight: the load-shedding bound.
    pub auction_slots: Arc<Semaphore>,
    pub metrics: PrometheusHandle,
    /// Posts settling in their own tasks: shutdown waits for them.
    pub settlements: TaskTracker,
    /// The pings' state reads and records, grouped under load.
    pub ping_states: Arc<StateReader>,
    pub ping_records: Group<RecordPings>,
    /// Retries of posts still settling, waiting for their answer (bounded).
    pub post_waiters: crate::settle::PostWaiters,
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// Loads the configuration and starts following its changes.
    pub async fn build(db: PgPool, settings: Settings) -> Result<Self> {
        Self::build_with_clock(db, settings, Arc::new(SystemClock)).await
    }

    /// Auctions running now.
    pub fn auctions_in_flight(&self) -> usize {
        self.settings.max_in_flight_auctions - self.auction_slots.available_permits()
    }

    /// A slot for one more auction, or 503 `overloaded` at once when all are taken.
    pub fn auction_slot(&self) -> Result<OwnedSemaphorePermit, Problem> {
        Arc::clone(&self.auction_slots)
            .try_acquire_owned()
            .map_err(|_| {
                crate::meters::shed();
                Problem::new(ErrorCode::Overloaded).retry_after(1)
            })
    }

    pub async fn build_with_clock(
        db: PgPool,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let http = crate::buyers::Outbound::new(settings.outbound_policy())
            .context("cannot build the HTTP client")?;
        let config = ConfigStore::load(db.clone()).await?;
        tokio::spawn(Arc::clone(&config).follow_changes());
        // Sales a crash left pending are released before serving, then every minute.
        if let Err(error) = sweep_interrupted_sales(&db, clock.as_ref()).await {
            tracing::error!(error = %format!("{error:#}"), "the interrupted-sale sweep failed at start-up");
        }
        let grouped_db = crate::store::grouped_statements_pool(&db);
        let ping_states = Arc::new(StateReader::start(
            grouped_db.clone(),
            settings.state_cache_ttl(),
        ));
        tokio::spawn(sweep_every_minute(
            db.clone(),
            Arc::clone(&clock),
            Arc::clone(&ping_states),
        ));
        let rate_limits = CampaignRateLimits::default();
        let report_slots = ReportSlots::new(settings.max_concurrent_reports);
        let auction_slots = Arc::new(Semaphore::new(settings.max_in_flight_auctions));
        let metrics = crate::meters::handle();
        let ping_records = Group::start(grouped_db.clone());
        let post_waiters = crate::settle::PostWaiters::new(settings.max_waiting_retries);
        Ok(Self(Arc::new(AppInner {
            db,
            grouped_db,
            settings,
            http,
            config,
            rate_limits,
            report_slots,
            clock,
            auction_slots,
            metrics,
            settlements: TaskTracker::new(),
            ping_states,
            ping_records,
            post_waiters,
        })))
    }
}

/// Releases the sales a crash left pending; true when it released any.
async fn sweep_interrupted_sales(db: &PgPool, clock: &dyn Clock) -> Result<bool> {
    // Expired idempotency keys go with the same minute's sweep.
    if let Err(error) = crate::store::idempotency::delete_expired(db).await {
        tracing::warn!(%error, "cannot delete expired idempotency keys");
    }
    let released = crate::store::sales::release_interrupted(db, clock.now()).await?;
    if !released.is_empty() {
        tracing::warn!(count = released.len(), sales = ?released, "released sales interrupted while pending");
    }
    Ok(!released.is_empty())
}

async fn sweep_every_minute(db: PgPool, clock: Arc<dyn Clock>, ping_states: Arc<StateReader>) {
    let mut timer = tokio::time::interval(std::time::Duration::from_secs(60));
    timer.tick().await;
    loop {
        timer.tick().await;
        match sweep_interrupted_sales(&db, clock.as_ref()).await {
            Ok(false) => {}
            Ok(true) => ping_states.forget_all(),
            // It may have released some sales before failing.
            Err(error) => {
                ping_states.forget_all();
                tracing::warn!(error = %format!("{error:#}"), "the interrupted-sale sweep failed");
            }
        }
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids are UUIDv7, so they sort by time in the logs.
#[derive(Clone, Copy)]
struct MakeRequestUuidV7;

impl MakeRequestId for MakeRequestUuidV7 {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        uuid::Uuid::now_v7()
            .to_string()
            .parse()
            .ok()
            .map(RequestId::new)
    }
}

/// The whole HTTP surface. `extra` routes (the demo's buyer endpoints) are merged in.
pub fn router(state: AppState, extra: Router<AppState>) -> Router {
    let settings = &state.settings;
    let middleware = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
        ]))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuidV7))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                // A 5xx is already in the response line; shedding must not flood the log.
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(CatchPanicLayer::custom(|_| {
            Problem::new(ErrorCode::Internal).into_response()
        }))
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            Problem::new(ErrorCode::Unavailable)
                .detail("the request took too long")
                .retry_after(1)
        }))
        .layer(tower::timeout::TimeoutLayer::new(
            settings.request_timeout(),
        ))
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        .layer(axum::middleware::from_fn(track_http));

    let (api, _) = api::router_and_document();
    Router::new()
        .merge(api)
        .merge(extra)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware)
}

/// Counts every request and its latency by route pattern and status.
async fn track_http(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    crate::meters::http_request(&route, response.status().as_u16(), started.elapsed());
    response
}

/// One span per request: method, route (the pattern, never ids or query strings) and request id.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("unmatched");
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", method = %request.method(), route, request_id)
}

async fn not_found() -> Problem {
    Problem::new(ErrorCode::NotFound)
}

async fn method_not_allowed() -> Problem {
    Problem::new(ErrorCode::MethodNotAllowed)
}

/// A bound server, ready to run. Binding first lets callers (tests, the demo) learn the port.
pub struct Server {
    listener: TcpListener,
    router: Router,
    settings: Settings,
    settlements: TaskTracker,
}

/// Binds the `listen` address, and takes the public URL from it when none is configured.
pub async fn bind_listener(settings: &mut Settings) -> Result<TcpListener> {
    let listen = settings.listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (setting `listen`)"))?;
    settings.resolve_public_url(listener.local_addr()?);
    Ok(listener)
}

impl Server {
    pub fn new(listener: TcpListener, state: AppState, extra: Router<AppState>) -> Self {
        let settings = state.settings.clone();
        let settlements = state.settlements.clone();
        Self {
            settlements,
            listener,
            router: router(state, extra),
            settings,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests
    /// finish, for at most the configured grace period.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = started_tx.send(());
        };
        let settlements = self.settlements;
        let serve = async move {
            axum::serve(self.listener, self.router)
                .with_graceful_shutdown(signal)
                .await?;
            // Posts keep settling after their requests are answered or gone.
            settlements.close();
            settlements.wait().await;
            Ok::<(), std::io::Error>(())
        };
        let grace = self.settings.shutdown_grace();
        tokio::select! {
            result = serve => result.context("the HTTP server failed"),
            _ = async { let _ = started_rx.await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_seconds = grace.as_secs(), "grace period over; exiting with requests in flight");
                Ok(())
            }
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
