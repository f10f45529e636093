//! `gavel bench`: the load harness, shipped with Gavel as pgbench ships with PostgreSQL.
//!
//! One command on a fresh machine: it starts a private PostgreSQL (unless a database URL is
//! configured), seeds a benchmark tenant, serves its buyers' endpoints in-process, starts a
//! Gavel server as a child process, drives pings (and posts) at a fixed concurrency or a fixed
//! arrival rate, then runs pgbench with the ping's own write and the post's reservation on the
//! same PostgreSQL, so that every figure can be read as a ratio to the machine's ceiling.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::config::Settings;
use crate::keys;
use crate::store::local_pg::{LocalPgOptions, LocalPostgres};

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Fixed-price contracts on the offer (filters, schedule, caps, dedup and funds active).
    #[arg(long, default_value_t = 30)]
    pub contracts: usize,
    /// Contracts priced by real-time bidding, answered by the harness's own buyers.
    #[arg(long, default_value_t = 0)]
    pub rtb_buyers: usize,
    /// The RTB buyers' answer time, and its spread (uniform, ±).
    #[arg(long, default_value_t = 20)]
    pub rtb_latency_ms: u64,
    #[arg(long, default_value_t = 5)]
    pub rtb_jitter_ms: u64,
    /// Share of RTB answers that are HTTP 500 (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub rtb_failure_rate: f64,
    /// The RTB contracts' timeout.
    #[arg(long, default_value_t = 200)]
    pub rtb_timeout_ms: u32,
    /// Make one RTB buyer sleep this long on every call (e.g. 5000, with --rtb-timeout-ms 150).
    #[arg(long)]
    pub slow_buyer_ms: Option<u64>,
    /// Closed loop: this many clients, each sending its next request when the last is answered.
    #[arg(long, default_value_t = 8, conflicts_with = "rate")]
    pub concurrency: usize,
    /// Open loop: this many pings a second, whatever the answers' speed (latency counted from
    /// the planned send time, so that queueing is not hidden).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Seconds of measured load (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Share of the pings with bids that are then posted (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub post_fraction: f64,
    /// Measure posts alone: first ping (closed loop, `--concurrency` clients, untimed as
    /// posts) for `--duration` seconds, then post those pings, `--concurrency` at a time.
    #[arg(long, conflicts_with_all = ["rate", "post_fraction"])]
    pub posts_only: bool,
    /// The server's bound on auctions in flight.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Seconds of each pgbench run (0: no pgbench).
    #[arg(long, default_value_t = 5)]
    pub pgbench_seconds: u64,
    /// pgbench's client counts, comma-separated: each script runs once per count and its
    /// best rate is the ceiling (default: the load's own concurrency, or 8 in open loop).
    #[arg(long, value_delimiter = ',')]
    pub pgbench_clients: Vec<usize>,
    /// Print the results as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(mut micros: Vec<u64>) -> Latency {
        if micros.is_empty() {
            return Latency::default();
        }
        micros.sort_unstable();
        let at = |q: f64| {
            micros[((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1] as f64
                / 1000.0
        };
        Latency {
            count: micros.len(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: at(1.0),
        }
    }
}

/// One pgbench run: a script at one client count.
#[derive(Debug, Serialize)]
pub struct PgbenchRun {
    pub script: &'static str,
    pub clients: usize,
    pub tps: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: String,
    pub contracts: usize,
    pub rtb_buyers: usize,
    pub duration_s: f64,
    pub pings_sent: u64,
    pub pings_per_s: f64,
    pub ping_latency: Latency,
    pub pings_with_bids: u64,
    pub posts_sent: u64,
    pub posts_per_s: f64,
    pub post_latency: Latency,
    pub posts_sold: u64,
    /// Answers other than 200, by status.
    pub errors: std::collections::BTreeMap<u16, u64>,
    /// Requests that failed before an HTTP answer.
    pub transport_errors: u64,
    pub server_peak_rss_mib: Option<f64>,
    /// pgbench's best rate over its client counts, and the rate at each count.
    pub pgbench_ping_write_tps: Option<f64>,
    pub pgbench_reservation_tps: Option<f64>,
    pub pgbench_runs: Vec<PgbenchRun>,
    /// Pings per second over pgbench's rate for the ping's own write.
    pub ping_ratio_to_pgbench: Option<f64>,
    pub post_ratio_to_pgbench: Option<f64>,
    /// RTB scenarios: each ping's slowest buyer answer (as the buyer measured it, from the
    /// request read to the answer), and what the ping took beyond it — Gavel's own part of
    /// the ping, HTTP both ways included.
    pub rtb_slowest_answer: Option<Latency>,
    pub rtb_ping_beyond_slowest: Option<Latency>,
}

/// Runs the whole harness and prints its report.
pub async fn run(settings: Settings, options: BenchOptions) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("gavel-bench-{}", std::process::id()));
    let (url, local) = match &settings.database_url {
        Some(url) => (url.clone(), None),
        None => {
            let dir = scratch.clone();
            let options = LocalPgOptions {
                ephemeral: true,
                max_connections: 300,
                port: None,
            };
            let local =
                tokio::task::spawn_blocking(move || LocalPostgres::start(&dir, &options)).await??;
            crate::store::local_pg::ensure_database(&local.url("postgres"), "gavel_bench").await?;
            (local.url("gavel_bench"), Some(local))
        }
    };
    let result = run_against(&settings, &options, &url).await;
    if let Some(local) = local {
        tokio::task::spawn_blocking(move || local.stop()).await??;
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let report = result?;
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

async fn run_against(settings: &Settings, options: &BenchOptions, url: &str) -> Result<Report> {
    let pool = crate::store::connect_and_migrate(url, settings).await?;
    let buyers = FakeBuyers::start(options).await?;
    let seeded = seed(&pool, options, buyers.address).await?;
    let server = ServerProcess::start(url, options.max_in_flight).await?;
    let load = drive(&server.base, &seeded.posting_key, options).await?;
    let (rtb_slowest_answer, rtb_ping_beyond_slowest) = buyers.beyond_slowest(&load);
    let rss = server.peak_rss_mib();
    server.stop().await;
    let pgbench_runs = if options.pgbench_seconds > 0 {
        pgbench(url, &pool, &seeded, options).await?
    } else {
        Vec::new()
    };
    let best = |script: &str| {
        pgbench_runs
            .iter()
            .filter(|run| run.script == script)
            .map(|run| run.tps)
            .reduce(f64::max)
    };
    let pgbench = (best(PING_WRITE), best(RESERVATION));
    pool.close().await;
    let duration = load.elapsed.as_secs_f64();
    let pings_per_s = load.pings as f64 / duration;
    let posts_per_s = load.posts as f64 / load.post_elapsed.unwrap_or(load.elapsed).as_secs_f64();
    Ok(Report {
        mode: match options.rate {
            Some(rate) => format!("open loop, {rate} pings/s"),
            None if options.posts_only => {
                format!("closed loop, {} clients, posts only", options.concurrency)
            }
            None => format!("closed loop, {} clients", options.concurrency),
        },
        contracts: options.contracts,
        rtb_buyers: options.rtb_buyers,
        duration_s: duration,
        pings_sent: load.pings,
        pings_per_s,
        ping_latency: Latency::of(load.ping_micros),
        pings_with_bids: load.pings_with_bids,
        posts_sent: load.posts,
        posts_per_s,
        post_latency: Latency::of(load.post_micros),
        posts_sold: load.posts_sold,
        errors: load.errors,
        transport_errors: load.transport_errors,
        server_peak_rss_mib: rss,
        pgbench_ping_write_tps: pgbench.0,
        pgbench_reservation_tps: pgbench.1,
        pgbench_runs,
        ping_ratio_to_pgbench: pgbench.0.map(|tps| pings_per_s / tps),
        rtb_slowest_answer,
        rtb_ping_beyond_slowest,
        post_ratio_to_pgbench: pgbench
            .1
            .filter(|_| load.posts > 0)
            .map(|tps| posts_per_s / tps),
    })
}

fn print_report(report: &Report) {
    let latency = |l: &Latency| {
        format!(
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        )
    };
    println!(
        "gavel bench: {} · {} fixed contracts · {} RTB buyers · {:.1} s",
        report.mode, report.contracts, report.rtb_buyers, report.duration_s
    );
    println!(
        "  pings  {:>8} sent, {:>9.1}/s, {} with bids · {}",
        report.pings_sent,
        report.pings_per_s,
        report.pings_with_bids,
        latency(&report.ping_latency)
    );
    if report.posts_sent > 0 {
        println!(
            "  posts  {:>8} sent, {:>9.1}/s, {} sold · {}",
            report.posts_sent,
            report.posts_per_s,
            report.posts_sold,
            latency(&report.post_latency)
        );
    }
    if let (Some(slowest), Some(beyond)) =
        (&report.rtb_slowest_answer, &report.rtb_ping_beyond_slowest)
    {
        println!("  slowest RTB answer of each ping · {}", latency(slowest));
        println!("  ping beyond its slowest RTB answer · {}", latency(beyond));
    }
    println!(
        "  errors {:?}, transport errors {}",
        report.errors, report.transport_errors
    );
    if let Some(rss) = report.server_peak_rss_mib {
        println!("  server peak RSS {rss:.1} MiB");
    }
    let runs = |script: &str| {
        let runs: Vec<String> = report
            .pgbench_runs
            .iter()
            .filter(|run| run.script == script)
            .map(|run| format!("{} clients {:.0}", run.clients, run.tps))
            .collect();
        if runs.len() > 1 {
            format!(" (best of: {})", runs.join(", "))
        } else {
            String::new()
        }
    };
    if let (Some(tps), Some(ratio)) = (report.pgbench_ping_write_tps, report.ping_ratio_to_pgbench)
    {
        println!(
            "  pgbench, the ping's own write: {tps:.0} tps{} · pings at {:.0} % of it",
            runs(PING_WRITE),
            ratio * 100.0
        );
    }
    if let Some(tps) = report.pgbench_reservation_tps {
        let ratio = report.post_ratio_to_pgbench.map_or(String::new(), |r| {
            format!(" · posts at {:.0} % of it", r * 100.0)
        });
        println!(
            "  pgbench, the post's reservation: {tps:.0} tps{}{ratio}",
            runs(RESERVATION)
        );
    }
}

/// The harness's buyers: bid endpoints with a latency distribution and a failure rate, and a
/// delivery endpoint that accepts everything.
struct FakeBuyers {
    address: SocketAddr,
    behaviour: BuyerBehaviour,
}

#[derive(Clone)]
struct BuyerBehaviour {
    latency_ms: u64,
    jitter_ms: u64,
    failure_rate: f64,
    slow_ms: Option<u64>,
    calls: Arc<AtomicU64>,
    /// Each ping's slowest answer so far (microseconds from the request read to the answer
    /// sent), by ping id.
    slowest: Arc<std::sync::Mutex<std::collections::HashMap<Uuid, u64>>>,
}

impl FakeBuyers {
    async fn start(options: &BenchOptions) -> Result<FakeBuyers> {
        let behaviour = BuyerBehaviour {
            latency_ms: options.rtb_latency_ms,
            jitter_ms: options.rtb_jitter_ms,
            failure_rate: options.rtb_failure_rate,
            slow_ms: options.slow_buyer_ms,
            calls: Arc::new(AtomicU64::new(0)),
            slowest: Arc::default(),
        };
        let router = axum::Router::new()
            .route("/rtb", post(bid))
            .route("/rtb/slow", post(slow_bid))
            .route(
                "/deliver",
                post(|| async { Json(json!({ "status": "accepted" })) }),
            )
            .with_state(behaviour.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(FakeBuyers { address, behaviour })
    }

    /// Each ping with bids: its slowest buyer's answer time and the ping's time beyond it;
    /// `None` when no buyer here answered a timed ping, or when one of them never answers
    /// (`--slow-buyer-ms`). In open loop the ping's time counts from its planned send, so a
    /// late send counts in the time beyond.
    fn beyond_slowest(&self, load: &Load) -> (Option<Latency>, Option<Latency>) {
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
    // Slept on an OS thread (nanosleep wakes within tens of microseconds), not on tokio's
    // timer, whose millisecond ticks would make every buyer up to 1 ms slower than drawn.
    if delay_us > 0 {
        let delay = Duration::from_micros(delay_us);
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(delay)).await;
    }
    // The time this answer really took here (a late wake-up is the buyer's, not Gavel's).
    if let Ok(request) = serde_json::from_slice::<BidRequestPing>(&body) {
        let took = started.elapsed().as_micros() as u64;
        let mut slowest = behaviour.slowest.lock().expect("the buyers' lock");
        let answer = slowest.entry(request.ping_id).or_default();
        *answer = (*answer).max(took);
    }
    if fail {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    Json(json!({ "exclusive_bid": "31.50", "shared_bid": 9.75, "ref": "bench" })).into_response()
}

async fn slow_bid(State(behaviour): State<BuyerBehaviour>) -> Response {
    tokio::time::sleep(Duration::from_millis(behaviour.slow_ms.unwrap_or(5000))).await;
    Json(json!({ "exclusive_bid": 99 })).into_response()
}

struct Seeded {
    tenant_id: Uuid,
    campaign_id: Uuid,
    partner_id: Uuid,
    offer_id: Uuid,
    buyer_id: Uuid,
    contract_id: Uuid,
    lead_id: Uuid,
    posting_key: String,
}

/// A fresh benchmark tenant: the auto-insurance offer in hybrid mode, one campaign without a
/// rate limit, funded buyers, and contracts whose checks all run and pass for the bench lead.
async fn seed(db: &PgPool, options: &BenchOptions, buyers: SocketAddr) -> Result<Seeded> {
    let tenant = crate::store::tenants::create(db, "Benchmark", "America/New_York").await?;
    let tenant_id = tenant.tenant_id;
    let (offer_id, partner_id, campaign_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let posting_key = keys::generate(keys::POSTING_KEY_PREFIX);
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO offers (tenant_id, id, name, mode, max_buyers, exclusive_floor_cents, fields)
         VALUES ($1, $2, 'auto-insurance', 'hybrid', 3, 2500, $3)",
    )
    .bind(tenant_id)
    .bind(offer_id)
    .bind(crate::demo::offer_fields())
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO partners (tenant_id, id, name) VALUES ($1, $2, 'Bench partner')")
        .bind(tenant_id)
        .bind(partner_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO campaigns (tenant_id, id, partner_id, offer_id, posting_key_hash, payout_type, payout_percent)
         VALUES ($1, $2, $3, $4, $5, 'revshare', 70)",
    )
    .bind(tenant_id)
    .bind(campaign_id)
    .bind(partner_id)
    .bind(offer_id)
    .bind(&keys::hash(&posting_key)[..])
    .execute(&mut *tx)
    .await?;
    let all_week: serde_json::Map<String, Value> =
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .map(|day| (day.to_string(), json!([["00:00", "24:00"]])))
            .collect();
    let schedule = json!({ "timezone": "America/Chicago", "days": all_week });
    let delivery = json!({ "url": format!("http://{buyers}/deliver"), "timeout_ms": 2000,
                           "accept": { "path": "/status", "equals": "accepted" } });
    let mut first = None;
    let total = options.contracts + options.rtb_buyers;
    for i in 0..total {
        // Two contracts per buyer, as exchanges have; each buyer can afford anything.
        let buyer_id = Uuid::now_v7();
        sqlx::query("INSERT INTO buyers (tenant_id, id, name, balance_cents) VALUES ($1, $2, $3, 100000000000)")
            .bind(tenant_id)
            .bind(buyer_id)
            .bind(format!("Buyer {i}"))
            .execute(&mut *tx)
            .await?;
        let rtb = i >= options.contracts;
        let pricing = if !rtb {
            json!({ "type": "fixed", "exclusive_cents": 2000 + (i * 37) % 4000, "shared_cents": 500 + (i * 13) % 1000 })
        } else if options.slow_buyer_ms.is_some() && i == options.contracts {
            json!({ "type": "rtb", "url": format!("http://{buyers}/rtb/slow"), "timeout_ms": options.rtb_timeout_ms })
        } else {
            json!({ "type": "rtb", "url": format!("http://{buyers}/rtb"), "timeout_ms": options.rtb_timeout_ms })
        };
        let contract_id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO contracts (tenant_id, id, buyer_id, offer_id, name, priority, pricing, filters, schedule, caps,
                                    dedup_days, delivery)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 30, $11)",
        )
        .bind(tenant_id)
        .bind(contract_id)
        .bind(buyer_id)
        .bind(offer_id)
        .bind(format!("Contract {i}"))
        .bind((i % 3) as i32)
        .bind(pricing)
        .bind(json!([
            { "field": "state", "op": "in", "value": ["TX", "OK", "LA"] },
            { "any": [ { "field": "homeowner", "op": "eq", "value": true },
                       { "field": "credit", "op": "in", "value": ["excellent", "good"] } ] },
            { "field": "age", "op": "between", "value": [25, 64] },
            { "field": "zip", "op": "prefix", "value": ["750", "751", "752"] }
        ]))
        .bind(&schedule)
        .bind(json!([{ "period": "day", "max_leads": 1000000000 }, { "period": "month", "max_spend_cents": 100000000000i64 }]))
        .bind(&delivery)
        .execute(&mut *tx)
        .await?;
        first.get_or_insert((buyer_id, contract_id));
    }
    let (buyer_id, contract_id) = first.context("the bench needs at least one contract")?;
    // A lead for pgbench's reservation transaction to hang its sales on.
    let lead_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO leads (tenant_id, id, ping_id, campaign_id, partner_id, offer_id, lead)
         VALUES ($1, $2, gen_random_uuid(), $3, $4, $5, '{}')",
    )
    .bind(tenant_id)
    .bind(lead_id)
    .bind(campaign_id)
    .bind(partner_id)
    .bind(offer_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Seeded {
        tenant_id,
        campaign_id,
        partner_id,
        offer_id,
        buyer_id,
        contract_id,
        lead_id,
        posting_key,
    })
}

/// A Gavel server run as a child process (so that its memory is its own).
struct ServerProcess {
    child: tokio::process::Child,
    base: String,
}

impl ServerProcess {
    async fn start(url: &str, max_in_flight: usize) -> Result<ServerProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let exe: PathBuf = std::env::current_exe()?;
        let mut command = tokio::process::Command::new(exe);
        command
            .arg("serve")
            .env("GAVEL_DATABASE_URL", url)
            .env("GAVEL_LISTEN", format!("127.0.0.1:{port}"))
            .env("GAVEL_LOG_LEVEL", "warn")
            .env("GAVEL_MAX_IN_FLIGHT_AUCTIONS", max_in_flight.to_string())
            // The harness's buyers run on this machine.
            .env("GAVEL_OUTBOUND_ALLOW", "127.0.0.1/32")
            .env_remove("GAVEL_CONFIG")
            .stdout(Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().context("cannot start the Gavel server")?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = client.get(format!("{base}/readyz")).send().await
                && response.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("the Gavel server did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(ServerProcess { child, base })
    }

    /// The server's peak resident memory (Linux: VmHWM).
    fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

#[derive(Default)]
struct Load {
    elapsed: Duration,
    /// The posting phase's own time, in `--posts-only` mode.
    post_elapsed: Option<Duration>,
    pings: u64,
    pings_with_bids: u64,
    ping_micros: Vec<u64>,
    posts: u64,
    posts_sold: u64,
    post_micros: Vec<u64>,
    /// Pings with bids: their ids and latencies.
    pings_with_bids_timed: Vec<(Uuid, u64)>,
    errors: std::collections::BTreeMap<u16, u64>,
    transport_errors: u64,
}

/// One ping, and its post for a share of those with bids.
struct Outcome {
    ping: Result<(u16, u64, bool), ()>,
    /// The id of a ping with bids.
    ping_id: Option<Uuid>,
    post: Option<Result<(u16, u64, bool), ()>>,
}

async fn one_lead(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    post_fraction: f64,
    planned: Instant,
) -> Outcome {
    let (ping, ping_id) = send_ping(client, base, key, planned).await;
    let post = match &ping_id {
        Some(ping_id) if rand::random_bool(post_fraction.clamp(0.0, 1.0)) => {
            Some(send_post(client, base, key, ping_id).await)
        }
        _ => None,
    };
    Outcome {
        ping,
        ping_id: ping_id.and_then(|id| id.as_str()?.parse().ok()),
        post,
    }
}

/// A ping: its status, latency (from `planned`) and whether it got bids, and its id if so.
async fn send_ping(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    planned: Instant,
) -> (Result<(u16, u64, bool), ()>, Option<Value>) {
    let sent = client
        .post(format!("{base}/v1/ping"))
        .bearer_auth(key)
        // A new consumer each time (its email's hash, as a seller sends it): the buyers' and the
        // offer's dedup are looked up for every ping and never match.
        .json(&json!({
            "lead": { "state": "TX", "zip": "75001", "age": 42, "homeowner": true, "credit": "good" },
            "dedup": { "email_sha256": hex::encode(crate::keys::hash(&format!("bench{}@example.com", rand::random::<u64>()))) }
        }))
        .send()
        .await;
    let Ok(response) = sent else {
        return (Err(()), None);
    };
    let status = response.status().as_u16();
    let mut body: Value = response.json().await.unwrap_or(Value::Null);
    let micros = planned.elapsed().as_micros() as u64;
    let bids = status == 200 && body["status"] == "bids";
    let ping_id = bids.then(|| body["ping_id"].take());
    (Ok((status, micros, bids)), ping_id)
}

/// The post of a ping with bids, for a new consumer: its status, latency and whether it sold.
async fn send_post(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    ping_id: &Value,
) -> Result<(u16, u64, bool), ()> {
    let started = Instant::now();
    let n: u64 = rand::random();
    let response = client
        .post(format!("{base}/v1/post"))
        .bearer_auth(key)
        .json(&json!({
            "ping_id": ping_id,
            "lead": { "state": "TX", "zip": "75001", "age": 42, "homeowner": true, "credit": "good",
                      "first_name": "Ada", "email": format!("bench{n}@example.com"),
                      "phone": format!("214{:07}", n % 10_000_000) },
            "consent": { "text": "I agree" }
        }))
        .send()
        .await
        .map_err(|_| ())?;
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    Ok((
        status,
        started.elapsed().as_micros() as u64,
        answer["status"] == "sold",
    ))
}

/// `--posts-only`: pings for `duration` (recorded as pings), then their posts, `concurrency`
/// at a time, until they are all posted or `duration` has passed again.
async fn drive_posts_only(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    options: &BenchOptions,
) -> Result<Load> {
    let clients = options.concurrency.max(1);
    let measured = Duration::from_secs(options.duration);
    let mut load = Load::default();
    let pinging_until = Instant::now() + measured;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, base, key) = (client.clone(), base.to_owned(), key.to_owned());
        workers.spawn(async move {
            let mut pinged = Vec::new();
            while Instant::now() < pinging_until {
                pinged.push(send_ping(&client, &base, &key, Instant::now()).await);
            }
            pinged
        });
    }
    let mut ping_ids = Vec::new();
    while let Some(pinged) = workers.join_next().await {
        for (ping, ping_id) in pinged? {
            load.add(Outcome {
                ping,
                ping_id: None,
                post: None,
            });
            ping_ids.extend(ping_id);
        }
    }
    load.elapsed = measured;

    let queue = std::sync::Arc::new(std::sync::Mutex::new(ping_ids));
    let started = Instant::now();
    let posting_until = started + measured;
    let mut posters = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, base, key, queue) = (
            client.clone(),
            base.to_owned(),
            key.to_owned(),
            queue.clone(),
        );
        posters.spawn(async move {
            let mut posted = Vec::new();
            while Instant::now() < posting_until {
                let next = queue.lock().expect("the queue's lock").pop();
                let Some(ping_id) = next else { break };
                posted.push(send_post(&client, &base, &key, &ping_id).await);
            }
            posted
        });
    }
    while let Some(posted) = posters.join_next().await {
        for post in posted? {
            load.add_post(post);
        }
    }
    load.post_elapsed = Some(started.elapsed());
    Ok(load)
}

impl Load {
    fn add(&mut self, outcome: Outcome) {
        self.pings += 1;
        match outcome.ping {
            Ok((status, micros, bids)) => {
                if status == 200 {
                    self.ping_micros.push(micros);
                    self.pings_with_bids += u64::from(bids);
                    self.pings_with_bids_timed
                        .extend(outcome.ping_id.map(|ping_id| (ping_id, micros)));
                } else {
                    *self.errors.entry(status).or_default() += 1;
                }
            }
            Err(()) => self.transport_errors += 1,
        }
        if let Some(post) = outcome.post {
            self.add_post(post);
        }
    }

    fn add_post(&mut self, post: Result<(u16, u64, bool), ()>) {
        self.posts += 1;
        match post {
            Ok((status, micros, sold)) => {
                if status == 200 {
                    self.post_micros.push(micros);
                    self.posts_sold += u64::from(sold);
                } else {
                    *self.errors.entry(status).or_default() += 1;
                }
            }
            Err(()) => self.transport_errors += 1,
        }
    }
}

/// Drives the load: one second of warm-up, then `duration` seconds measured.
async fn drive(base: &str, key: &str, options: &BenchOptions) -> Result<Load> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()?;
    if options.posts_only {
        let warm_up = Instant::now() + Duration::from_secs(1);
        while Instant::now() < warm_up {
            one_lead(&client, base, key, 1.0, Instant::now()).await;
        }
        return drive_posts_only(&client, base, key, options).await;
    }
    // The warm-up is the measured load itself, unrecorded: the server's connection pools
    // (to PostgreSQL, from the harness) reach the size this load needs, so the first measured
    // second does not pay for opening connections that steady state keeps open.
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    drop(receiver);
    drive_for(&client, base, key, options, Duration::from_secs(1), sender).await?;

    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    let measured = Duration::from_secs(options.duration);
    let started = Instant::now();
    drive_for(&client, base, key, options, measured, sender).await?;
    let mut load = Load::default();
    while let Some(outcome) = receiver.recv().await {
        load.add(outcome);
    }
    load.elapsed = started.elapsed().max(measured);
    Ok(load)
}

/// Sends the load for `length` (open or closed loop, per the options); every lead's outcome
/// goes to `sender`. Returns when the last request is answered.
async fn drive_for(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    options: &BenchOptions,
    length: Duration,
    sender: tokio::sync::mpsc::UnboundedSender<Outcome>,
) -> Result<()> {
    let end = Instant::now() + length;
    match options.rate {
        Some(rate) => {
            // Open loop: a request every 1/rate seconds, each on its own task. The schedule
            // is kept by an OS thread (nanosleep wakes within tens of microseconds), not by
            // tokio's timer, whose millisecond ticks would send each request up to 1 ms late
            // and count that lateness as the server's.
            let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
            let (runtime, client, base, key) = (
                tokio::runtime::Handle::current(),
                client.clone(),
                base.to_owned(),
                key.to_owned(),
            );
            let fraction = options.post_fraction;
            let tasks = tokio::task::spawn_blocking(move || {
                let mut tasks = Vec::new();
                let mut next = Instant::now();
                while next < end {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    let (client, base, key, sender) =
                        (client.clone(), base.clone(), key.clone(), sender.clone());
                    let planned = next;
                    tasks.push(runtime.spawn(async move {
                        let _ =
                            sender.send(one_lead(&client, &base, &key, fraction, planned).await);
                    }));
                    next += period;
                }
                tasks
            })
            .await?;
            for task in tasks {
                task.await?;
            }
        }
        None => {
            let mut workers = Vec::new();
            for _ in 0..options.concurrency.max(1) {
                let (client, base, key, sender) = (
                    client.clone(),
                    base.to_owned(),
                    key.to_owned(),
                    sender.clone(),
                );
                let fraction = options.post_fraction;
                workers.push(tokio::spawn(async move {
                    while Instant::now() < end {
                        let _ = sender
                            .send(one_lead(&client, &base, &key, fraction, Instant::now()).await);
                    }
                }));
            }
            for worker in workers {
                worker.await?;
            }
        }
    }
    Ok(())
}

/// pgbench on the same PostgreSQL: the ping's own write (its posting_log row and its
/// contracts' outcomes, as the load recorded them) and the post's reservation transaction.
async fn pgbench(
    url: &str,
    db: &PgPool,
    seeded: &Seeded,
    options: &BenchOptions,
) -> Result<Vec<PgbenchRun>> {
    if which("pgbench").is_none() {
        tracing::warn!(
            "pgbench is not installed (Debian: apt-get install postgresql-client); no ratios"
        );
        return Ok(Vec::new());
    }
    let (tenant, campaign, partner, offer) = (
        seeded.tenant_id,
        seeded.campaign_id,
        seeded.partner_id,
        seeded.offer_id,
    );
    let ping_write = format!("{};\n", ping_write_statement(db, tenant).await?);
    let (buyer, contract, lead) = (seeded.buyer_id, seeded.contract_id, seeded.lead_id);
    // The reservation as a post makes it (one call, committed on its own): a daily leads cap
    // and a monthly spend cap, the buyer's debit, the pending sale and its ledger entry. The
    // buyer's dedup lookup is left out (window 0): pgbench never settles its sales, so it
    // would look through every earlier one as still pending. pgbench does a little less
    // than a post here, so the ratio errs against Gavel.
    let reservation = format!(
        "SELECT gavel_reserve('{tenant}', gen_random_uuid(), '{lead}', gen_random_uuid(), gen_random_uuid(), \
         '{contract}', '{buyer}', '{campaign}', '{partner}', '{offer}', 'exclusive', 1000, 700, false, 60000, now(), \
         ARRAY[sha256(random()::text::bytea), sha256(random()::text::bytea)], 0, ARRAY['day', 'month'], \
         ARRAY[date_trunc('day', now()), date_trunc('month', now())], \
         ARRAY[1000000000, 9223372036854775807]::bigint[], ARRAY[9223372036854775807, 100000000000]::bigint[], \
         '[]', gen_random_uuid());\n"
    );
    // The reservation runs on one hot contract and buyer, as in the post race.
    let clients = match options.pgbench_clients.as_slice() {
        [] => vec![options.rate.map_or(options.concurrency, |_| 8).max(1)],
        list => list.iter().map(|&c| c.max(1)).collect(),
    };
    let mut runs = Vec::new();
    for (name, script) in [(PING_WRITE, &ping_write), (RESERVATION, &reservation)] {
        for &clients in &clients {
            if let Some(tps) = run_pgbench(url, script, clients, options.pgbench_seconds).await? {
                runs.push(PgbenchRun {
                    script: name,
                    clients,
                    tps,
                });
            }
        }
    }
    Ok(runs)
}

/// pgbench's scripts, as `PgbenchRun::script` names them.
const PING_WRITE: &str = "ping_write";
const RESERVATION: &str = "reservation";

/// The ping's own write as one statement of literals: a ping the load recorded (one with
/// bids) and its contracts' outcomes, every column as Gavel wrote it, under new ids (and new
/// bid ids for its winners), so pgbench's rows are the rows Gavel writes.
async fn ping_write_statement(db: &PgPool, tenant_id: Uuid) -> Result<String> {
    let ping_id: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM posting_log l WHERE tenant_id = $1 AND kind = 'ping'
           AND EXISTS (SELECT 1 FROM lead_distribution d WHERE d.tenant_id = l.tenant_id AND d.ping_id = l.id)
         ORDER BY result = 'bids' DESC, created_at DESC LIMIT 1",
    )
    .bind(tenant_id)
    .fetch_optional(db)
    .await?;
    let ping_id = ping_id.context("the load recorded no ping for pgbench to write again")?;
    let (ping, winners, declines): (String, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT format(
                    '(%L, gen_random_uuid(), ''ping'', %L, %L, %L, now(), %s, %s, %L, %L, %L, %L::bigint, %L, '
                    '%L::bigint, now() + %s * interval ''1 second'')',
                    p.tenant_id, p.campaign_id, p.partner_id, p.offer_id, p.latency_us, p.http_status, p.result,
                    p.test, p.lead, p.min_payout_cents, p.sale_type, p.payout_cents,
                    coalesce(extract(epoch FROM p.expires_at - p.created_at)::text, 'NULL')),
                (SELECT string_agg(format(
                     '(%L::uuid, %L::uuid, %L::uuid, %L::bigint, %L::bigint, %L::int, %L::text, %L::text, '
                     '%L::bigint, %L::bigint)',
                     w.tenant_id, w.contract_id, w.buyer_id, w.exclusive_bid_cents, w.shared_bid_cents, w.rtb_ms,
                     w.rtb_ref, w.sale_type, w.price_cents, w.payout_cents), ', ')
                 FROM distribution_winners w WHERE w.tenant_id = p.tenant_id AND w.ping_id = p.id),
                (SELECT format(
                     '%L::uuid, %L::uuid[], %L::uuid[], %L::decline_reason[], %L::text[], %L::bigint[], '
                     '%L::bigint[], %L::int[], %L::text[]',
                     d.tenant_id, d.contract_ids, d.buyer_ids, d.reasons, d.details, d.exclusive_bids_cents,
                     d.shared_bids_cents, d.rtb_ms, d.rtb_refs)
                 FROM distribution_declines d WHERE d.tenant_id = p.tenant_id AND d.ping_id = p.id)
         FROM posting_log p WHERE p.tenant_id = $1 AND p.id = $2",
    )
    .bind(tenant_id)
    .bind(ping_id)
    .fetch_one(db)
    .await?;
    let mut statement = format!(
        "WITH ping AS (INSERT INTO posting_log (tenant_id, id, kind, campaign_id, partner_id, offer_id, \
         created_at, latency_us, http_status, result, test, lead, min_payout_cents, sale_type, payout_cents, \
         expires_at) VALUES {ping} RETURNING id)"
    );
    if let Some(winners) = winners {
        statement.push_str(&format!(
            ", winners AS (INSERT INTO distribution_winners (tenant_id, ping_id, created_at, contract_id, \
             buyer_id, exclusive_bid_cents, shared_bid_cents, rtb_ms, rtb_ref, bid_id, sale_type, price_cents, \
             payout_cents) SELECT v.tenant_id, ping.id, now(), v.contract_id, v.buyer_id, v.exclusive_bid_cents, \
             v.shared_bid_cents, v.rtb_ms, v.rtb_ref, gen_random_uuid(), v.sale_type, v.price_cents, \
             v.payout_cents FROM ping, (VALUES {winners}) AS v (tenant_id, contract_id, buyer_id, \
             exclusive_bid_cents, shared_bid_cents, rtb_ms, rtb_ref, sale_type, price_cents, payout_cents))"
        ));
    }
    match declines {
        Some(declines) => statement.push_str(&format!(
            " INSERT INTO distribution_declines (tenant_id, ping_id, created_at, contract_ids, buyer_ids, \
             reasons, details, exclusive_bids_cents, shared_bids_cents, rtb_ms, rtb_refs) \
             SELECT t, ping.id, now(), c, b, r, d, e, s, m, f FROM ping, \
             (VALUES ({declines})) AS v (t, c, b, r, d, e, s, m, f)"
        )),
        None => statement.push_str(" SELECT count(*) FROM ping"),
    }
    // pgbench reads `:name` as one of its variables, even inside a quoted value.
    let variable = statement.split("::").any(|part| {
        part.split(':')
            .skip(1)
            .any(|after| after.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
    });
    if variable {
        bail!("the recorded ping holds a ':' that pgbench would read as a variable");
    }
    Ok(statement)
}

async fn run_pgbench(url: &str, script: &str, clients: usize, seconds: u64) -> Result<Option<f64>> {
    let path = std::env::temp_dir().join(format!(
        "gavel-pgbench-{}-{}.sql",
        std::process::id(),
        Uuid::now_v7()
    ));
    std::fs::write(&path, script)?;
    // Prepared statements (`-M prepared`), as Gavel's own: parsing and planning each
    // statement anew would lower the ceiling Gavel is compared with. The plan mode stays
    // PostgreSQL's default, as on Gavel's main pool, where the reservation runs (the
    // ping-write script has no parameters: it is planned once either way).
    let output = tokio::process::Command::new("pgbench")
        .args([
            "-n",
            "-M",
            "prepared",
            "-T",
            &seconds.to_string(),
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-f",
        ])
        .arg(&path)
        .arg(url)
        .output()
        .await?;
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        tracing::warn!(stderr = %String::from_utf8_lossy(&output.stderr), "pgbench failed");
        return Ok(None);
    }
    Ok(stdout
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| {
            l.trim_start_matches("tps = ")
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        }))
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}
