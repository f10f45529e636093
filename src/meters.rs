//! Prometheus metrics. Labels are bounded and tenant-independent (route patterns, statuses,
//! reason codes), never ids or lead data.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Fine enough to tell 1 ms from 5 ms, wide enough for a 2 s RTB timeout.
const BUCKETS: [f64; 17] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.007_5, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use (one per process, shared by every server it
/// runs, as in the tests).
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .expect("the buckets are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

pub fn seconds(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64()
}

/// One HTTP request: by route pattern and status.
pub fn http_request(route: &str, status: u16, elapsed: Duration) {
    metrics::counter!("gavel_http_requests_total", "route" => route.to_owned(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("gavel_http_request_duration_seconds", "route" => route.to_owned())
        .record(seconds(elapsed));
}

/// A client connection closed at once because `max_connections` were open.
pub fn connection_refused() {
    metrics::counter!("gavel_connections_refused_total").increment(1);
}

/// A ping that ran its auction: `bids`, `no_bids` or `duplicate`.
pub fn ping(status: &'static str, elapsed: Duration) {
    metrics::counter!("gavel_pings_total", "status" => status).increment(1);
    metrics::histogram!("gavel_ping_duration_seconds").record(seconds(elapsed));
}

/// A win or loss notice: `sent`, `failed` (after its last try) or `dropped` (the queue full).
pub fn notice(kind: &'static str, outcome: &'static str) {
    metrics::counter!("gavel_notices_total", "kind" => kind, "outcome" => outcome).increment(1);
}

/// How contracts ended, counted per (outcome, reason) once per ping.
pub fn contract_outcomes(counts: &[((&'static str, &'static str), u64)]) {
    for ((outcome, reason), count) in counts {
        metrics::counter!("gavel_contract_outcomes_total", "outcome" => *outcome, "reason" => *reason).increment(*count);
    }
}

/// A bid request to a buyer: `bid` or its decline reason.
pub fn rtb_call(outcome: &'static str, elapsed: Duration) {
    metrics::counter!("gavel_rtb_calls_total", "outcome" => outcome).increment(1);
    metrics::histogram!("gavel_rtb_duration_seconds").record(seconds(elapsed));
}

/// A delivery: `accepted`, `duplicate` (the buyer's own dedup), `rejected` or `failed`.
pub fn delivery(outcome: &'static str, elapsed: Duration) {
    metrics::counter!("gavel_deliveries_total", "outcome" => outcome).increment(1);
    metrics::histogram!("gavel_delivery_duration_seconds").record(seconds(elapsed));
}

/// A consent verification step's outcome (docs/verification.md), by provider.
pub fn verification(provider: &'static str, outcome: &'static str) {
    metrics::counter!("gavel_verifications_total", "provider" => provider, "outcome" => outcome)
        .increment(1);
}

/// An email field's `require_mx` rule at a post (docs/validation.md): `deliverable`,
/// `refused`, `passed_open` (the DNS did not answer: timeout, SERVFAIL) or `disabled` (the
/// `mx_lookup` setting is off).
pub fn mx_check(outcome: &'static str) {
    metrics::counter!("gavel_email_mx_checks_total", "outcome" => outcome).increment(1);
}

/// An MX look-up made (not answered by the cache), by outcome: `deliverable`, `no_domain`,
/// `null_mx`, `no_mail_host`, `timeout`, `servfail` or `error`.
pub fn mx_lookup(outcome: &'static str, elapsed: Duration) {
    metrics::counter!("gavel_email_mx_lookups_total", "outcome" => outcome).increment(1);
    metrics::histogram!("gavel_email_mx_lookup_duration_seconds").record(seconds(elapsed));
}

/// A settled post: `sold`, `partially_sold` or `unsold`.
pub fn post(status: &str, elapsed: Duration) {
    metrics::counter!("gavel_posts_total", "status" => status.to_owned()).increment(1);
    metrics::histogram!("gavel_post_duration_seconds").record(seconds(elapsed));
}

/// One sale's final status.
pub fn sale(status: &'static str) {
    metrics::counter!("gavel_sales_total", "status" => status).increment(1);
}

/// A return requested (`status="requested"`) or decided (`approved`, `denied`), by its
/// reason: one of the default codes, else `custom` (a contract's own codes are not bounded
/// across contracts, so they never become series).
pub fn return_event(reason: &str, status: &'static str) {
    let reason = crate::returns::metric_reason(reason);
    metrics::counter!("gavel_returns_total", "reason" => reason, "status" => status).increment(1);
}

/// A buyer endpoint's breaker changed state (`to`: `open`, `half_open`, `closed`);
/// `open_change` is +1 when it left `closed`, -1 when it came back, else 0. The gauge counts
/// this process's breakers not closed (open or half-open), by endpoint.
pub fn breaker_transition(endpoint: &'static str, to: &'static str, open_change: i8) {
    metrics::counter!("gavel_breaker_transitions_total", "endpoint" => endpoint, "to" => to)
        .increment(1);
    let open = metrics::gauge!("gavel_breakers_open", "endpoint" => endpoint);
    match open_change {
        1 => open.increment(1.0),
        -1 => open.decrement(1.0),
        _ => {}
    }
}

/// A configuration reload: `tenant` or `all`.
pub fn config_reload(scope: &'static str) {
    metrics::counter!("gavel_config_reloads_total", "scope" => scope).increment(1);
}

/// An admin key not in the configuration snapshot, looked up in the database.
pub fn admin_key_lookup() {
    metrics::counter!("gavel_admin_key_lookups_total").increment(1);
}

/// A request refused because too many auctions were in flight.
pub fn shed() {
    metrics::counter!("gavel_shed_requests_total").increment(1);
}

/// Gauges read at scrape time.
/// `main` is the pool of everything but the ping's grouped statements (`ping_groups`).
pub fn gauges(
    main: &sqlx::PgPool,
    ping_groups: &sqlx::PgPool,
    sale_groups: &sqlx::PgPool,
    auctions_in_flight: usize,
) {
    for (name, pool) in [
        ("main", main),
        ("ping_groups", ping_groups),
        ("sale_groups", sale_groups),
    ] {
        let idle = pool.num_idle() as f64;
        metrics::gauge!("gavel_db_pool_connections", "pool" => name, "state" => "idle").set(idle);
        metrics::gauge!("gavel_db_pool_connections", "pool" => name, "state" => "in_use")
            .set(f64::from(pool.size()) - idle);
    }
    metrics::gauge!("gavel_auctions_in_flight").set(auctions_in_flight as f64);
}

/// A ping answered before its record's write completed: `reason` is `rtb` (it asked its
/// buyers for bids: `rtb_answer_before_record`) or `stalled` (past `ping_record_max_wait_ms`).
pub fn ping_record_behind(reason: &'static str) {
    metrics::counter!("gavel_ping_records_behind_total", "reason" => reason).increment(1);
}

/// A ping's record written behind its answer that could not be written.
pub fn ping_record_lost() {
    metrics::counter!("gavel_ping_records_lost_total").increment(1);
}

/// A ping's declines written behind its answer that could not be written.
pub fn ping_declines_lost() {
    metrics::counter!("gavel_ping_declines_lost_total").increment(1);
}

/// One grouped statement (`ping_state` read, `ping_record` write, `ping_declines`, `post_claim`,
/// `sale_reserve`, `sale_complete`, `post_finish`) serving `requests` pings or sales: the ratio of the two counters is the
/// average group size.
pub fn group_statement(statement: &'static str, requests: usize) {
    metrics::counter!("gavel_group_statements_total", "statement" => statement).increment(1);
    metrics::counter!("gavel_group_requests_total", "statement" => statement)
        .increment(requests as u64);
}
