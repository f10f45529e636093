//! The load harness in its smoke mode: a few seconds, small numbers, every field present.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::harness::database_url;

/// Runs `gavel bench --json` with these arguments against the test's database; its report.
async fn bench(args: &[&str], connect: &PgConnectOptions) -> serde_json::Value {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .env("GAVEL_DATABASE_URL", database_url(connect))
        .env("GAVEL_LOG_LEVEL", "error")
        .output()
        .await
        .unwrap();
    let stdout = crate::harness::successful_stdout(&output);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_load_harness_runs_and_reports_every_figure(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let report = bench(
        &[
            "--duration",
            "2",
            "--contracts",
            "3",
            "--rtb-buyers",
            "2",
            "--rtb-latency-ms",
            "5",
            "--rate",
            "40",
            "--post-fraction",
            "0.5",
            "--pgbench-seconds",
            "1",
            "--pgbench-clients",
            "1,2",
        ],
        &connect,
    )
    .await;
    for field in [
        "postgres",
        "mode",
        "contracts",
        "rtb_buyers",
        "duration_s",
        "pings_sent",
        "pings_per_s",
        "ping_latency",
        "pings_with_bids",
        "posts_sent",
        "posts_per_s",
        "post_latency",
        "posts_sold",
        "errors",
        "transport_errors",
        "server_peak_rss_mib",
        "server_cpu_ms_per_request",
        "pgbench_ping_write_tps",
        "pgbench_reservation_tps",
        "pgbench_runs",
        "ping_ratio_to_pgbench",
        "post_ratio_to_pgbench",
        "pgbench_naive_ping_write_tps",
        "ping_ratio_to_naive_pgbench",
        "ping_seconds",
        "worst_second_p99_ms",
        "seconds_over_50ms",
        "rtb_slowest_answer",
        "rtb_ping_beyond_slowest",
    ] {
        assert!(report.get(field).is_some(), "no {field} in {report}");
    }
    for field in ["count", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"] {
        assert!(
            report["ping_latency"][field].is_number(),
            "no ping_latency.{field}"
        );
    }
    assert!(report["pings_sent"].as_u64().unwrap() >= 60, "{report}");
    assert_eq!(
        report["pings_with_bids"], report["ping_latency"]["count"],
        "every ping answered with bids"
    );
    assert!(report["posts_sold"].as_u64().unwrap() > 0, "{report}");
    // The pings second by second: every answered ping in one second of the run, the worst
    // second's p99 the largest.
    let seconds = report["ping_seconds"].as_array().unwrap();
    assert!(seconds.len() >= 2, "{report}");
    let counted: u64 = seconds.iter().map(|s| s["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, report["ping_latency"]["count"].as_u64().unwrap());
    let worst = seconds
        .iter()
        .map(|s| s["p99_ms"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(report["worst_second_p99_ms"].as_f64().unwrap(), worst);
    assert!(worst <= report["ping_latency"]["max_ms"].as_f64().unwrap());
    assert_eq!(report["errors"], serde_json::json!({}));
    assert!(report["server_peak_rss_mib"].as_f64().unwrap() > 1.0);
    // The server's CPU over the load, per request: some, and less than the run's whole time.
    let cpu = report["server_cpu_ms_per_request"].as_f64().unwrap();
    let requests = report["pings_sent"].as_f64().unwrap() + report["posts_sent"].as_f64().unwrap();
    assert!(
        cpu > 0.0 && cpu * requests < 2.0 * 1000.0 * report["duration_s"].as_f64().unwrap(),
        "{report}"
    );
    // Every ping's slowest buyer is known (5 ± 5 ms, as measured by the buyer), and the ping
    // took at least that long.
    let (slowest, beyond) = (
        &report["rtb_slowest_answer"],
        &report["rtb_ping_beyond_slowest"],
    );
    assert_eq!(slowest["count"], report["pings_with_bids"], "{report}");
    assert_eq!(beyond["count"], report["pings_with_bids"], "{report}");
    // The slower of two answers drawn in 0–10 ms: its median is about 7 ms.
    assert!(slowest["p50_ms"].as_f64().unwrap() >= 2.0, "{report}");
    assert!(
        report["ping_latency"]["p50_ms"].as_f64().unwrap() >= slowest["p50_ms"].as_f64().unwrap(),
        "{report}"
    );
    // pgbench's scripts run against the tenant the load wrote (when pgbench is installed).
    if std::process::Command::new("pgbench")
        .arg("--version")
        .output()
        .is_ok()
    {
        assert!(
            report["pgbench_ping_write_tps"].as_f64().unwrap() > 0.0,
            "{report}"
        );
        assert!(
            report["pgbench_reservation_tps"].as_f64().unwrap() > 0.0,
            "{report}"
        );
        // Each script ran at each client count; the ceiling is its best run.
        let runs = report["pgbench_runs"].as_array().unwrap();
        // The naive write (a row per contract) runs beside the compact one.
        assert!(
            report["pgbench_naive_ping_write_tps"].as_f64().unwrap() > 0.0,
            "{report}"
        );
        for (script, ceiling) in [
            ("ping_write", "pgbench_ping_write_tps"),
            ("naive_ping_write", "pgbench_naive_ping_write_tps"),
            ("reservation", "pgbench_reservation_tps"),
        ] {
            let runs: Vec<(u64, f64)> = runs
                .iter()
                .filter(|run| run["script"] == script)
                .map(|run| {
                    (
                        run["clients"].as_u64().unwrap(),
                        run["tps"].as_f64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(
                runs.iter().map(|r| r.0).collect::<Vec<_>>(),
                [1, 2],
                "{report}"
            );
            let best = runs.iter().map(|r| r.1).fold(0.0, f64::max);
            assert_eq!(report[ceiling].as_f64().unwrap(), best, "{report}");
        }
    }
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_posts_only_mode_posts_every_ping_it_made_and_counts_only_the_posting_time(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let report = bench(
        &[
            "--duration",
            "1",
            "--contracts",
            "1",
            "--concurrency",
            "4",
            "--posts-only",
            "--pgbench-seconds",
            "0",
        ],
        &connect,
    )
    .await;
    let pinged = report["pings_with_bids"].as_u64().unwrap();
    let posted = report["posts_sent"].as_u64().unwrap();
    assert!(pinged > 0 && posted > 0, "{report}");
    // Posting is faster than the ping and post it replaces: a second of pings can take up to
    // a second to post; every post either sold or got a buyer's dedup refusal.
    assert!(posted <= pinged, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert_eq!(report["post_latency"]["count"], report["posts_sent"]);
    let per_s = report["posts_per_s"].as_f64().unwrap();
    // The posting phase lasts 1 s and the posts then in flight; over both phases (2 s) the
    // rate would be half.
    assert!(
        per_s > posted as f64 / 1.5,
        "posts per second count the posting phase only: {report}"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn durable_figures_come_only_from_a_postgresql_that_flushes_every_commit(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = options.connect_with(connect.clone()).await.unwrap();
    // Against the tests' own server: refused unless it flushes every commit, and the report
    // says which it measured.
    let (fsync, synchronous_commit): (String, String) =
        sqlx::query_as("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
            .fetch_one(&pool)
            .await
            .unwrap();
    let args = [
        "--duration",
        "1",
        "--contracts",
        "1",
        "--rate",
        "20",
        "--pgbench-seconds",
        "0",
    ];
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .arg("bench")
        .args(args)
        .args(["--durable", "--json"])
        .env("GAVEL_DATABASE_URL", database_url(&connect))
        .env("GAVEL_LOG_LEVEL", "error")
        .output()
        .await
        .unwrap();
    if fsync == "on" && synchronous_commit != "off" {
        assert!(output.status.success());
    } else {
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--durable") && stderr.contains("fsync"),
            "{stderr}"
        );
    }
    let report = bench(&args, &connect).await;
    assert_eq!(report["postgres"]["fsync"], fsync.as_str());

    // The harness's own PostgreSQL, durable: fsync and synchronous commit on.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .arg("bench")
        .args(args)
        .args(["--durable", "--json"])
        .env_remove("GAVEL_DATABASE_URL")
        .env("GAVEL_LOG_LEVEL", "error")
        .output()
        .await
        .unwrap();
    let stdout = crate::harness::successful_stdout(&output);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // Durable and sized as production: fsync and synchronous commit on, shared_buffers 1GB.
    assert_eq!(
        report["postgres"],
        serde_json::json!({ "fsync": "on", "synchronous_commit": "on", "shared_buffers": "1GB" })
    );
    assert!(
        report["ping_latency"]["count"].as_u64().unwrap() > 0,
        "{report}"
    );
}
