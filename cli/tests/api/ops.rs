//! The server's life cycle: health, readiness through a database outage, graceful shutdown,
//! and start-up before the database is up.

use std::time::{Duration, Instant};

use axum::routing::get;
use gavel_cli::local_pg::{LocalPgOptions, LocalPostgres};
use sqlx::PgPool;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use crate::harness::{spawn_app, spawn_app_with, test_settings};

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn health_and_readiness_answer_with_request_ids(pool: PgPool) {
    let app = spawn_app(pool).await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let request_id = health.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        uuid::Uuid::parse_str(&request_id)
            .unwrap()
            .get_version_num(),
        7
    );

    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_ne!(
        ready.headers()["x-request-id"].to_str().unwrap(),
        request_id
    );

    // A caller's own request id is kept.
    let traced = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(traced.headers()["x-request-id"], "abc-123");

    let missing = app.client.get(app.url("/nowhere")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    app.shut_down().await.unwrap();
}

async fn status_of(client: &reqwest::Client, url: &str) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

/// Polls `url` until it answers `status`, for at most `within`.
async fn wait_for_status(client: &reqwest::Client, url: &str, status: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if status_of(client, url).await == status {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never answered {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readiness_follows_the_database_down_and_back_up_without_a_restart() {
    let dir = tempfile::Builder::new()
        .prefix("gavel-readyz-")
        .tempdir_in("/tmp")
        .unwrap();
    let data_dir = dir.path().join("pg");
    let options = LocalPgOptions {
        ephemeral: true,
        ..Default::default()
    };
    let start = {
        let data_dir = data_dir.clone();
        move |options: LocalPgOptions| {
            let data_dir = data_dir.clone();
            tokio::task::spawn_blocking(move || LocalPostgres::start(&data_dir, &options))
        }
    };
    let cluster = start(options.clone()).await.unwrap().unwrap();
    let port = cluster.port();
    let settings = test_settings();
    let pool = gavel::store::connect_and_migrate(&cluster.url("postgres"), &settings)
        .await
        .unwrap();
    let app = spawn_app_with(pool, settings, axum::Router::new()).await;
    let ready = app.url("/readyz");
    assert_eq!(status_of(&app.client, &ready).await, 200);

    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap()
        .unwrap();
    let down = app.client.get(&ready).send().await.unwrap();
    assert_eq!(down.status(), 503);
    assert_eq!(down.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = down.json().await.unwrap();
    assert_eq!(body["code"], "unavailable");
    assert_eq!(
        status_of(&app.client, &app.url("/healthz")).await,
        200,
        "alive while the database is down"
    );

    // The same cluster comes back on the same port: readiness recovers on its own.
    let cluster = start(LocalPgOptions {
        port: Some(port),
        ..options
    })
    .await
    .unwrap()
    .unwrap();
    wait_for_status(&app.client, &ready, 200, Duration::from_secs(10)).await;
    app.shut_down().await.unwrap();
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn start_up_waits_for_a_database_that_is_not_up_yet() {
    let dir = tempfile::Builder::new()
        .prefix("gavel-late-db-")
        .tempdir_in("/tmp")
        .unwrap();
    // Traversable, so the postgres user keeps the cluster (and its socket) where asked.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = dir.path().join("pg");
    let port = 5433;
    let url = format!(
        "postgres://postgres@localhost:{port}/postgres?host={}",
        data_dir.display()
    );
    let connecting =
        tokio::spawn(
            async move { gavel::store::connect_and_migrate(&url, &test_settings()).await },
        );

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !connecting.is_finished(),
        "gave up or connected before the database existed"
    );
    let cluster = tokio::task::spawn_blocking(move || {
        let options = LocalPgOptions {
            ephemeral: true,
            port: Some(port),
            ..Default::default()
        };
        LocalPostgres::start(&data_dir, &options)
    })
    .await
    .unwrap()
    .unwrap();

    let pool = tokio::time::timeout(Duration::from_secs(30), connecting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let migrated: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(migrated >= 1);
    pool.close().await;
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap()
        .unwrap();
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn shutdown_lets_in_flight_requests_finish_and_refuses_new_ones(pool: PgPool) {
    let slow = axum::Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            "finished"
        }),
    );
    let mut app = spawn_app_with(pool, test_settings(), slow).await;
    let in_flight = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url("/slow"));
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.begin_shutdown();
    assert_eq!(in_flight.await.unwrap(), "finished");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = reqwest::Client::new().get(app.url("/healthz")).send().await;
    assert!(
        fresh.is_err(),
        "a new connection was accepted after shutdown began"
    );
    app.shut_down().await.unwrap();
}

/// The ping's grouped statements plan once (their own sessions); everything else keeps
/// PostgreSQL's choice, which the summary report over long ranges needs; and closing the main
/// pool lets go of the database entirely.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn only_the_pings_grouped_statements_plan_once_and_both_pools_close_together(pool: PgPool) {
    let grouped = gavel::store::grouped_statements_pool(&pool, false);
    let show = |db: &PgPool, setting: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        show(&grouped, "plan_cache_mode").await,
        "force_generic_plan"
    );
    assert_eq!(show(&pool, "plan_cache_mode").await, "auto");
    // The pings' records do not wait for the WAL flush; with `ping_synchronous_commit` they
    // do, and every other write keeps the server's own setting (the tests' throwaway cluster
    // runs without waiting; production's waits).
    assert_eq!(show(&grouped, "synchronous_commit").await, "off");
    let waiting = gavel::store::grouped_statements_pool(&pool, true);
    assert_eq!(show(&waiting, "synchronous_commit").await, "on");
    waiting.close().await;

    pool.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !grouped.is_closed() {
        assert!(
            Instant::now() < deadline,
            "the grouped pool outlived the main one"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_private_postgresql_admits_no_other_local_account() {
    let dir = tempfile::Builder::new()
        .prefix("gavel-private-pg-")
        .tempdir_in("/tmp")
        .unwrap();
    let data_dir = dir.path().join("pg");
    // A port free on TCP: nothing else would answer there if the cluster listened on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cluster = tokio::task::spawn_blocking(move || {
        let options = LocalPgOptions {
            ephemeral: true,
            port: Some(port),
            ..Default::default()
        };
        LocalPostgres::start(&data_dir, &options)
    })
    .await
    .unwrap()
    .unwrap();

    // Gavel itself connects, through the socket.
    let url = cluster.url("postgres");
    let pool = PgPool::connect(&url).await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    pool.close().await;

    // No TCP: not on its port, and no rule would trust a TCP connection anyway.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the private PostgreSQL listens on TCP"
    );
    let rules = std::fs::read_to_string(cluster.data_dir().join("pg_hba.conf")).unwrap();
    assert!(
        rules
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .all(|l| l.starts_with("local ")),
        "{rules}"
    );

    // Another account of the machine (`nobody`) cannot reach the socket.
    if nix::unistd::Uid::effective().is_root() {
        let psql = gavel_cli::local_pg::find_binary("psql").unwrap();
        let output = std::process::Command::new(psql)
            .args(["-X", "-w", "-c", "SELECT 1", &url])
            .env("PGCONNECT_TIMEOUT", "5")
            .current_dir("/")
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "nobody connected: {stderr}");
        assert!(stderr.contains("Permission denied"), "{stderr}");
    }
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap()
        .unwrap();
}
