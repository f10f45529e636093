//! Application state, the router with its middleware stack, and the server's life cycle.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::response::IntoResponse;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as AutoBuilder;
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
use crate::store::pings::{RecordDeclines, RecordPings};
use crate::store::posts::{ClaimPosts, FinishPosts};
use crate::store::sales::{CompleteSales, ReserveSales};
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
    /// Refusals' records still being written behind their answers (bounded like pings').
    pub refusals_behind: Arc<Semaphore>,
    pub metrics: PrometheusHandle,
    /// Posts settling in their own tasks: shutdown waits for them.
    pub settlements: TaskTracker,
    /// The pings' state reads and records, grouped under load.
    pub ping_states: Arc<StateReader>,
    pub ping_records: Group<RecordPings>,
    /// The declines of pings of many contracts, written behind the pings' answers.
    pub ping_declines: Group<RecordDeclines>,
    /// The connections of the sales' grouped statements (`store::grouped_sales_pool`): as
    /// `grouped_db`'s, but committing as `db`'s (money moves there).
    pub sales_db: PgPool,
    /// The post's reservations and completions, grouped under load (one transaction takes a
    /// hot contract's and buyer's rows once for every sale settling at the same moment).
    pub sale_reservations: Group<ReserveSales>,
    pub sale_completions: Group<CompleteSales>,
    /// The post's claim of its ping and its finish, grouped the same way.
    pub post_claims: Group<ClaimPosts>,
    pub post_finishes: Group<FinishPosts>,
    /// Records written behind their pings' answers (`rtb_answer_before_record`,
    /// `ping_record_max_wait_ms`).
    pub pending_pings: crate::pending_pings::PendingPings,
    /// Pings whose declines are being written behind their answers (the ping's view waits).
    pub pending_declines: crate::pending_pings::PendingPings,
    /// Retries of posts still settling, waiting for their answer (bounded).
    pub post_waiters: crate::post::PostWaiters,
    /// The win and loss notices' queue (`crate::notices`).
    pub notices: crate::notices::Notices,
    /// The keys posted leads' PII is sealed with (`settings.pii_keys`, required).
    pub pii: crate::pii::PiiKeys,
    /// Consent verification answers kept per certificate (`crate::verification::cache`).
    pub verifications: crate::verification::cache::Cache,
    /// The email `require_mx` rule's look-ups, off unless `mx_lookup` (`crate::validation_mx`).
    pub mx: crate::validation_mx::MxLookup,
    /// The configuration listener and the minute's sweep, stopped by [`AppState::close`].
    background: Vec<tokio::task::AbortHandle>,
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

    /// Writes the record of a refused ping or post to its end, in a task tracked with the
    /// settlements (a shutdown waits for it), and waits for it at most
    /// `ping_record_max_wait_ms`: a refusal is answered once recorded unless the database
    /// stalls, as a ping is (docs/durability.md). At most `max_in_flight_auctions` refusals'
    /// records are left behind at once; past that, a refusal waits for its own (back-pressure,
    /// as for pings). A failure is logged: the answer stands.
    pub async fn record_refusal(
        &self,
        what: &'static str,
        write: impl Future<Output = Result<(), sqlx::Error>> + Send + 'static,
    ) {
        use tracing::Instrument;
        let mut written = self.settlements.spawn(
            async move {
                if let Err(error) = write.await {
                    tracing::warn!(%error, "cannot record a refused {what}");
                }
            }
            .in_current_span(),
        );
        if wait_at_most(self.settings.ping_record_max_wait(), &mut written)
            .await
            .is_some()
        {
            return;
        }
        match Arc::clone(&self.refusals_behind).try_acquire_owned() {
            // Held until the write ends.
            Ok(behind) => {
                self.settlements.spawn(async move {
                    let _ = written.await;
                    drop(behind);
                });
            }
            Err(_) => {
                let _ = written.await;
            }
        }
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
        let pii = settings.pii_keys.clone().context(crate::pii::NO_KEYS)?;
        let http = crate::buyers::Outbound::new(settings.outbound_policy())
            .context("cannot build the HTTP client")?;
        let mx = crate::validation_mx::MxLookup::from_settings(&settings)?;
        let config = ConfigStore::load(db.clone()).await?;
        let listener = tokio::spawn(Arc::clone(&config).follow_changes());
        // Sales a crash left pending are released before serving, then every minute.
        if let Err(error) = sweep_interrupted_sales(&db, clock.as_ref()).await {
            tracing::error!(error = %format!("{error:#}"), "the interrupted-sale sweep failed at start-up");
        }
        let grouped_db =
            crate::store::grouped_statements_pool(&db, settings.ping_synchronous_commit);
        let ping_states = Arc::new(StateReader::start(
            grouped_db.clone(),
            settings.state_cache_ttl(),
        ));
        let sweeper = tokio::spawn(sweep_every_minute(
            db.clone(),
            Arc::clone(&clock),
            Arc::clone(&ping_states),
        ));
        let rate_limits = CampaignRateLimits::default();
        let report_slots = ReportSlots::new(settings.max_concurrent_reports);
        let auction_slots = Arc::new(Semaphore::new(settings.max_in_flight_auctions));
        let refusals_behind = Arc::new(Semaphore::new(settings.max_in_flight_auctions));
        let metrics = crate::meters::handle();
        let ping_records = Group::start(grouped_db.clone());
        let ping_declines = Group::start(grouped_db.clone());
        let sales_db = crate::store::grouped_sales_pool(&db);
        let sale_reservations = Group::start(sales_db.clone());
        let sale_completions = Group::start(sales_db.clone());
        let post_claims = Group::start(sales_db.clone());
        let post_finishes = Group::start(sales_db.clone());
        let pending_pings =
            crate::pending_pings::PendingPings::new(settings.max_in_flight_auctions);
        let pending_declines =
            crate::pending_pings::PendingPings::new(settings.max_in_flight_auctions);
        let post_waiters = crate::post::PostWaiters::new(settings.max_waiting_retries);
        let (notices, notice_workers) = crate::notices::Notices::start(
            settings.notice_queue_size,
            settings.notice_concurrency,
            http.clone(),
        );
        let mut background = vec![listener.abort_handle(), sweeper.abort_handle()];
        background.extend(notice_workers);
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
            refusals_behind,
            metrics,
            settlements: TaskTracker::new(),
            pii,
            verifications: crate::verification::cache::Cache::default(),
            mx,
            ping_states,
            ping_records,
            ping_declines,
            sales_db,
            sale_reservations,
            sale_completions,
            post_claims,
            post_finishes,
            pending_pings,
            pending_declines,
            post_waiters,
            notices,
            background,
        })))
    }

    /// Once the server has stopped: stops the background tasks and closes the pools, so that
    /// every session ends from this side (a database stopped next cuts none, and nothing
    /// logs a lost connection as if it were a failure).
    pub async fn close(&self) {
        for task in &self.background {
            task.abort();
        }
        self.db.close().await;
        self.grouped_db.close().await;
        self.sales_db.close().await;
    }
}

/// `writing`'s output if it ends within `bound` (`None`: however long it takes); `None` past
/// the bound, the future left to be awaited or dropped.
pub async fn wait_at_most<F: Future + Unpin>(
    bound: Option<std::time::Duration>,
    writing: &mut F,
) -> Option<F::Output> {
    match bound {
        Some(bound) => tokio::time::timeout(bound, writing).await.ok(),
        None => Some(writing.await),
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
        // Tenants' PII retention: what is due, a batch a tenant a minute.
        if let Err(error) = crate::store::pii::erase_expired(&db, clock.now(), 5_000).await {
            tracing::warn!(%error, "the PII retention job failed");
        }
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
    // Outermost first. Every answer, the timeout's and a panic's included, passes through
    // `track_http` (counted in /metrics) and `problem_json_errors` (always problem+json).
    let middleware = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
        ]))
        .layer(tower::util::MapRequestLayer::new(bound_request_id))
        .layer(tower::util::MapRequestLayer::new(mark_arrival))
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
        .layer(axum::middleware::from_fn(track_http))
        .layer(CatchPanicLayer::custom(|_| {
            Problem::new(ErrorCode::Internal).into_response()
        }))
        // Inside the panic catcher, whose answer is problem+json already.
        .layer(axum::middleware::map_response(problem_json_errors))
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            Problem::new(ErrorCode::RequestTimeout)
                .detail("the request took longer than the server's request timeout")
                .retry_after(1)
        }))
        .layer(tower::timeout::TimeoutLayer::new(
            settings.request_timeout(),
        ))
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes));

    let (api, _) = api::router_and_document();
    // The console calls the admin API in-process (`console::admin`).
    let console = crate::console::router(crate::console::AdminApi(
        api.clone().with_state(state.clone()),
    ));
    Router::new()
        .merge(api)
        .merge(console)
        .merge(extra)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware)
}

/// The longest `X-Request-Id` kept; a longer one, or one with other than printable ASCII, is
/// replaced with a fresh id before it is echoed or logged.
pub const MAX_REQUEST_ID_LEN: usize = 128;

fn acceptable_request_id(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// Drops a client's `X-Request-Id` that is too long or not printable (or given twice), so that
/// `SetRequestIdLayer` makes a fresh one.
fn bound_request_id(mut request: Request) -> Request {
    let keep = {
        let mut values = request.headers().get_all(&REQUEST_ID).iter();
        match (values.next(), values.next()) {
            (None, _) => true,
            (Some(value), None) => acceptable_request_id(value.as_bytes()),
            (Some(_), Some(_)) => false,
        }
    };
    if !keep {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

/// Every error answer as problem+json: the extractors' rejections (a repeated or invalid query
/// parameter, a path that does not parse, a body over the limit…) are plain text from axum.
/// Their text is dropped, not passed on: it may quote what the client sent.
async fn problem_json_errors(response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    // The console's error pages are HTML, for a browser.
    if status.as_u16() < 400
        || response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|v| v == "application/problem+json" || v == "text/html; charset=utf-8")
    {
        return response;
    }
    let problem = match status {
        StatusCode::NOT_FOUND => Problem::new(ErrorCode::NotFound),
        StatusCode::METHOD_NOT_ALLOWED => Problem::new(ErrorCode::MethodNotAllowed),
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new(ErrorCode::PayloadTooLarge),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Problem::new(ErrorCode::UnsupportedMediaType),
        StatusCode::UNPROCESSABLE_ENTITY => {
            Problem::new(ErrorCode::InvalidField).detail("a parameter of the request is invalid")
        }
        status if status.is_server_error() => Problem::new(ErrorCode::Internal),
        _ => Problem::new(ErrorCode::BadRequest)
            .detail("a query parameter, path segment or header is missing, repeated or invalid"),
    };
    let mut answer = problem.into_response();
    // Keep what the original answer said beyond its body (`Allow` of a 405, `Retry-After`).
    for name in [axum::http::header::ALLOW, axum::http::header::RETRY_AFTER] {
        if let Some(value) = response.headers().get(&name) {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

/// When a request's head arrived, before its body was read: the request timeout counts from
/// here, so a post's answer deadline must too (a slow body leaves the handler less time).
#[derive(Clone, Copy, Debug)]
pub struct Arrived(pub std::time::Instant);

fn mark_arrival(mut request: Request) -> Request {
    request
        .extensions_mut()
        .insert(Arrived(std::time::Instant::now()));
    request
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
        let settings = self.settings.clone();
        let serve = async move {
            serve_connections(self.listener, self.router, &settings, signal).await;
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

/// Accepts connections until `signal`, then stops accepting, lets each connection finish its
/// requests in flight (closing it once idle) and returns when all are closed.
///
/// Served with hyper directly for what `axum::serve` does not expose: a client must send a
/// request's head within `header_read_timeout_ms` (hyper's timer runs from when the connection
/// starts waiting for a head: at connection and after each answer on a keep-alive connection;
/// hyper's `proto/h1/conn.rs`, `poll_read_head`), a connection with no request in flight is
/// closed after `idle_timeout_ms`, and at most `max_connections` are open at once.
async fn serve_connections(
    listener: TcpListener,
    router: Router,
    settings: &Settings,
    signal: impl Future<Output = ()>,
) {
    let mut builder = AutoBuilder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout());
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let idle = settings.idle_timeout();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let connections = TaskTracker::new();
    let mut signal = std::pin::pin!(signal);
    loop {
        let stream = tokio::select! {
            () = &mut signal => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // A connection reset before it was accepted is the client's; anything else
                    // (out of file descriptors) clears with time.
                    if !matches!(
                        error.kind(),
                        std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionRefused
                    ) {
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    continue;
                }
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Closed at once: a client told no now can go elsewhere; one left waiting in the
            // backlog holds its own resources and learns nothing.
            crate::meters::connection_refused();
            drop(stream);
            continue;
        };
        // An answer goes out at once, not held back by Nagle's algorithm behind an earlier
        // segment the client has not acknowledged yet.
        let _ = stream.set_nodelay(true);
        let (builder, router, stopping) = (Arc::clone(&builder), router.clone(), stopping.clone());
        connections.spawn(async move {
            serve_connection(&builder, stream, router, idle, stopping).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    connections.close();
    connections.wait().await;
}

/// Serves one connection until the client closes it, it is idle for `idle`, or shutdown.
async fn serve_connection(
    builder: &AutoBuilder<TokioExecutor>,
    stream: tokio::net::TcpStream,
    router: Router,
    idle: std::time::Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let busy = activity.begin();
            let router = router.clone();
            async move {
                let response = tower::ServiceExt::oneshot(router, request).await;
                drop(busy);
                response
            }
        })
    };
    let mut connection = std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service));
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            _ = stopping.wait_for(|stop| *stop), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = activity.idle_for(idle), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A connection's requests in flight, and when the last one ended.
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    since: std::sync::Mutex<tokio::time::Instant>,
}

/// One request in flight until dropped.
struct Busy(Arc<Activity>);

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            since: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Busy(Arc::clone(self))
    }

    fn idle_since(&self) -> Option<tokio::time::Instant> {
        let since = *self.since.lock().unwrap_or_else(|e| e.into_inner());
        (self.in_flight.load(std::sync::atomic::Ordering::Acquire) == 0).then_some(since)
    }

    /// Completes once no request has been in flight for `idle`.
    async fn idle_for(&self, idle: std::time::Duration) {
        loop {
            match self.idle_since() {
                Some(since) if since.elapsed() >= idle => return,
                Some(since) => tokio::time::sleep_until(since + idle).await,
                None => tokio::time::sleep(idle).await,
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.since.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Completes on SIGTERM or SIGINT. The handlers are installed by this call, not when the
/// future is first polled: a signal sent once the server says it serves must stop it gracefully
/// rather than kill it.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        let received = |signal: std::io::Result<tokio::signal::unix::Signal>| async move {
            match signal {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = received(interrupt) => {}, _ = received(terminate) => {} }
    }
}
