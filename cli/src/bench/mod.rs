//! `gavel bench`: the load harness, shipped with Gavel as pgbench ships with PostgreSQL.
//!
//! One command on a fresh machine: it starts a private PostgreSQL (unless a database URL is
//! configured), seeds a benchmark tenant, serves its buyers' endpoints in-process, starts a
//! Gavel server as a child process, drives pings (and posts) at a fixed concurrency or a fixed
//! arrival rate, then runs pgbench with the ping's own write and the post's reservation on the
//! same PostgreSQL, so that every figure can be read as a ratio to the machine's ceiling.

mod alarm;
mod buyers;
mod load;
mod pgbench;
mod seed;
mod server;

use anyhow::Result;
use gavel::config::Settings;
use serde::Serialize;

use crate::local_pg::{LocalPgOptions, LocalPostgres};
use buyers::FakeBuyers;
use load::drive;
use pgbench::{NAIVE_PING_WRITE, PING_WRITE, RESERVATION, pgbench};
use seed::seed;
use server::ServerProcess;

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
    /// Share of deliveries the buyers reject (0 to 1): a post whose winner rejects goes on to
    /// the runner-ups (the cascade), so this measures what recovering a sale costs.
    #[arg(long, default_value_t = 0.0)]
    pub delivery_reject_rate: f64,
    /// The RTB contracts' timeout.
    #[arg(long, default_value_t = 200)]
    pub rtb_timeout_ms: u32,
    /// The RTB contracts call their buyers as a buyer with its own API: a form-encoded
    /// request from a field map (renamed fields, a value map, transforms) read back from an XML
    /// answer by response rules, instead of Gavel's native JSON both ways.
    #[arg(long)]
    pub rtb_templates: bool,
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
    /// Run the harness's own PostgreSQL as production runs it: its durable defaults (fsync
    /// and synchronous commit on), so that the disk's WAL flushes show in the tails. Without
    /// it the private cluster trades durability for speed. A server named by
    /// `GAVEL_DATABASE_URL` keeps its own settings: with `--durable` it must have them on.
    #[arg(long)]
    pub durable: bool,
    /// The harness's own PostgreSQL's `shared_buffers` (default: 1GB with `--durable`, as a
    /// production server is sized, so that a ping's reads rarely evict a page it must first
    /// flush the WAL for; PostgreSQL's own 128MB otherwise).
    #[arg(long)]
    pub shared_buffers: Option<String>,
    /// Seed a suppression list of this many consumers (random hashes) on the offer, so that
    /// every ping and post looks its consumer up in it (docs/suppression.md); 0: no list.
    #[arg(long, default_value_t = 0)]
    pub suppression_entries: u64,
    /// Run this Gavel executable's server instead of this one's (e.g. the previous build's),
    /// so that two builds are measured under the same harness.
    #[arg(long)]
    pub server_binary: Option<std::path::PathBuf>,
    /// Print the results as one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl BenchOptions {
    fn shared_buffers(&self) -> &str {
        match &self.shared_buffers {
            Some(size) => size,
            None if self.durable => "1GB",
            None => "128MB",
        }
    }
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
    pub(super) fn of(mut micros: Vec<u64>) -> Latency {
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

/// The pings sent in one second of the run.
#[derive(Debug, Serialize)]
pub struct Second {
    pub second: u64,
    pub count: usize,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Second {
    /// Slices `(second, micros)` samples by second.
    fn slices(mut samples: Vec<(u64, u64)>) -> Vec<Second> {
        samples.sort_unstable();
        samples
            .chunk_by(|a, b| a.0 == b.0)
            .map(|chunk| {
                let latency = Latency::of(chunk.iter().map(|(_, micros)| *micros).collect());
                Second {
                    second: chunk[0].0,
                    count: latency.count,
                    p99_ms: latency.p99_ms,
                    max_ms: latency.max_ms,
                }
            })
            .collect()
    }
}

/// A slow ping: when it was due to leave (since the measured run's start) and what it took.
#[derive(Debug, Serialize)]
pub struct SlowPing {
    pub at_ms: f64,
    pub latency_ms: f64,
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
    /// How the PostgreSQL measured commits: its `fsync` and `synchronous_commit`.
    pub postgres: Durability,
    pub contracts: usize,
    pub rtb_buyers: usize,
    /// The consumers on the offer's suppression list (0: none).
    pub suppression_entries: u64,
    pub duration_s: f64,
    pub pings_sent: u64,
    pub pings_per_s: f64,
    pub ping_latency: Latency,
    /// The pings' latency in each second of the run (by planned send time), for stalls
    /// that a whole run's percentiles hide.
    pub ping_seconds: Vec<Second>,
    /// The worst second's p99, and how many seconds had a p99 over 50 ms.
    pub worst_second_p99_ms: f64,
    pub seconds_over_50ms: usize,
    /// When the measured pings started, in milliseconds since the Unix epoch.
    pub started_at_unix_ms: Option<u64>,
    /// Each ping slower than 20 ms (at most the first 1,000), when it was due to leave: a
    /// stall lined up with the database's log or the machine's counters.
    pub slow_pings: Vec<SlowPing>,
    /// The server's own count of the measured pings slower than each bound (ms) from 10 ms,
    /// by its handler's clock: what of the slow pings happened inside the server.
    pub server_pings_over_ms: std::collections::BTreeMap<u32, u64>,
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
    /// The server's CPU time (all its threads) over the load, per request sent (pings and
    /// posts): its own work, apart from the latency's waits and the machine's noise.
    pub server_cpu_ms_per_request: Option<f64>,
    /// pgbench's best rate over its client counts, and the rate at each count.
    pub pgbench_ping_write_tps: Option<f64>,
    /// The same ping written naively: its row and one row per contract, one statement.
    pub pgbench_naive_ping_write_tps: Option<f64>,
    pub pgbench_reservation_tps: Option<f64>,
    pub pgbench_runs: Vec<PgbenchRun>,
    /// Pings per second over pgbench's rate for the ping's own write.
    pub ping_ratio_to_pgbench: Option<f64>,
    pub ping_ratio_to_naive_pgbench: Option<f64>,
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
                ephemeral: !options.durable,
                max_connections: 300,
                port: None,
                settings: vec![format!("shared_buffers={}", options.shared_buffers())],
            };
            let local =
                tokio::task::spawn_blocking(move || LocalPostgres::start(&dir, &options)).await??;
            crate::local_pg::ensure_database(&local.url("postgres"), "gavel_bench").await?;
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
    let pool = gavel::store::connect_and_migrate(url, settings).await?;
    let durability = Durability::of(&pool).await?;
    if options.durable && !durability.is_durable() {
        anyhow::bail!(
            "--durable: the configured PostgreSQL runs with fsync {} and synchronous_commit {}; \
             use a server with both on, or leave GAVEL_DATABASE_URL unset for the harness's own",
            durability.fsync,
            durability.synchronous_commit
        );
    }
    let buyers = FakeBuyers::start(options).await?;
    let seeded = seed(&pool, options, buyers.address).await?;
    let server =
        ServerProcess::start(url, options.max_in_flight, options.server_binary.as_deref()).await?;
    let cpu_before = server.cpu_time();
    let load = drive(&pool, &server.base, &seeded.posting_key, options).await?;
    let server_cpu = cpu_before
        .zip(server.cpu_time())
        .map(|(before, after)| after.saturating_sub(before));
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
    let naive = best(NAIVE_PING_WRITE);
    let ping_seconds = Second::slices(load.ping_seconds);
    let worst_second_p99_ms = ping_seconds.iter().map(|s| s.p99_ms).fold(0.0, f64::max);
    let seconds_over_50ms = ping_seconds.iter().filter(|s| s.p99_ms > 50.0).count();
    let started_at_unix_ms = load
        .started_at
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|since| since.as_millis() as u64);
    let mut slow_pings = load.slow_pings;
    slow_pings.sort_unstable();
    let slow_pings = slow_pings
        .into_iter()
        .take(1_000)
        .map(|(at, micros)| SlowPing {
            at_ms: at as f64 / 1000.0,
            latency_ms: micros as f64 / 1000.0,
        })
        .collect();
    pool.close().await;
    let duration = load.elapsed.as_secs_f64();
    let pings_per_s = load.pings as f64 / duration;
    let posts_per_s = load.posts as f64 / load.post_elapsed.unwrap_or(load.elapsed).as_secs_f64();
    Ok(Report {
        postgres: durability,
        mode: match options.rate {
            Some(rate) => format!("open loop, {rate} pings/s"),
            None if options.posts_only => {
                format!("closed loop, {} clients, posts only", options.concurrency)
            }
            None => format!("closed loop, {} clients", options.concurrency),
        },
        contracts: options.contracts,
        rtb_buyers: options.rtb_buyers,
        suppression_entries: options.suppression_entries,
        duration_s: duration,
        pings_sent: load.pings,
        pings_per_s,
        ping_latency: Latency::of(load.ping_micros),
        ping_seconds,
        worst_second_p99_ms,
        seconds_over_50ms,
        started_at_unix_ms,
        slow_pings,
        server_pings_over_ms: load.server_pings_over,
        pings_with_bids: load.pings_with_bids,
        posts_sent: load.posts,
        posts_per_s,
        post_latency: Latency::of(load.post_micros),
        posts_sold: load.posts_sold,
        errors: load.errors,
        transport_errors: load.transport_errors,
        server_peak_rss_mib: rss,
        server_cpu_ms_per_request: server_cpu
            .filter(|_| load.pings + load.posts > 0)
            .map(|cpu| cpu.as_secs_f64() * 1000.0 / (load.pings + load.posts) as f64),
        pgbench_ping_write_tps: pgbench.0,
        pgbench_reservation_tps: pgbench.1,
        pgbench_runs,
        ping_ratio_to_pgbench: pgbench.0.map(|tps| pings_per_s / tps),
        pgbench_naive_ping_write_tps: naive,
        ping_ratio_to_naive_pgbench: naive.map(|tps| pings_per_s / tps),
        rtb_slowest_answer,
        rtb_ping_beyond_slowest,
        post_ratio_to_pgbench: pgbench
            .1
            .filter(|_| load.posts > 0)
            .map(|tps| posts_per_s / tps),
    })
}

/// Whether the measured PostgreSQL waits for the disk at each commit.
#[derive(Debug, Serialize)]
pub struct Durability {
    pub fsync: String,
    pub synchronous_commit: String,
    pub shared_buffers: String,
}

impl Durability {
    async fn of(pool: &sqlx::PgPool) -> Result<Durability> {
        let (fsync, synchronous_commit, shared_buffers) = sqlx::query_as(
            "SELECT current_setting('fsync'), current_setting('synchronous_commit'),
                    current_setting('shared_buffers')",
        )
        .fetch_one(pool)
        .await?;
        Ok(Durability {
            fsync,
            synchronous_commit,
            shared_buffers,
        })
    }

    /// Every commit is flushed to disk before it is acknowledged, as in production.
    pub fn is_durable(&self) -> bool {
        // `local`, `remote_write` and `remote_apply` flush locally too.
        self.fsync == "on" && self.synchronous_commit != "off"
    }
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
    if report.suppression_entries > 0 {
        println!(
            "  a suppression list of {} consumers on the offer",
            report.suppression_entries
        );
    }
    println!(
        "  PostgreSQL fsync {}, synchronous_commit {}, shared_buffers {}{}",
        report.postgres.fsync,
        report.postgres.synchronous_commit,
        report.postgres.shared_buffers,
        if report.postgres.is_durable() {
            " (durable, as in production)"
        } else {
            " (not durable: faster than production)"
        }
    );
    println!(
        "  pings  {:>8} sent, {:>9.1}/s, {} with bids · {}",
        report.pings_sent,
        report.pings_per_s,
        report.pings_with_bids,
        latency(&report.ping_latency)
    );
    if let Some(worst) = report
        .ping_seconds
        .iter()
        .max_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms))
    {
        println!(
            "  pings by second: worst p99 {:.2} ms (second {}), {} of {} seconds with a p99 over 50 ms",
            worst.p99_ms,
            worst.second,
            report.seconds_over_50ms,
            report.ping_seconds.len()
        );
    }
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
    if let Some(cpu) = report.server_cpu_ms_per_request {
        println!("  server CPU {cpu:.3} ms a request");
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
    if let (Some(tps), Some(ratio)) = (
        report.pgbench_naive_ping_write_tps,
        report.ping_ratio_to_naive_pgbench,
    ) {
        println!(
            "  pgbench, the same ping written naively (a row per contract): {tps:.0} tps{} · pings at {:.0} % of it",
            runs(NAIVE_PING_WRITE),
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
