//! Honest failure codes: a database that is not there now is `503 unavailable` with
//! `Retry-After` on every route, never 500.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gavel_cli::local_pg::{LocalPgOptions, LocalPostgres};
use serde_json::json;

use crate::fixtures::{ContractSpec, Exchange, ping_lead};
use crate::harness::{spawn_app_with, test_settings};

/// One answer seen by the load loop.
#[derive(Debug)]
struct Seen {
    route: &'static str,
    status: u16,
    retry_after: bool,
    problem_json: bool,
}

#[tokio::test]
async fn a_fast_database_restart_under_load_answers_503_with_retry_after_never_500() {
    let dir = tempfile::Builder::new()
        .prefix("gavel-restart-")
        .tempdir_in("/tmp")
        .unwrap();
    let data_dir = dir.path().join("pg");
    let options = LocalPgOptions {
        ephemeral: true,
        max_connections: 50,
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
    let mut settings = test_settings();
    settings.db_acquire_timeout_ms = 300;
    let pool = gavel::store::connect_and_migrate(&cluster.url("postgres"), &settings)
        .await
        .unwrap();
    let exchange = Exchange::create(&pool, "multisell").await;
    exchange
        .buyer_with(1_000_000, ContractSpec::fixed(None, Some(1500)))
        .await;
    let app = Arc::new(spawn_app_with(pool, settings, axum::Router::new()).await);

    // The answers of a healthy database, per route.
    let healthy = [("ping", 200), ("post", 404), ("admin", 200)];
    let request = {
        let app = Arc::clone(&app);
        let (posting_key, admin_key) = (exchange.posting_key.clone(), exchange.admin_key.clone());
        move |route: &'static str| {
            let (app, posting_key, admin_key) =
                (Arc::clone(&app), posting_key.clone(), admin_key.clone());
            async move {
                let builder = match route {
                    "ping" => app
                        .client
                        .post(app.url("/v1/ping"))
                        .bearer_auth(&posting_key)
                        .json(&json!({ "lead": ping_lead() })),
                    "post" => app
                        .client
                        .post(app.url("/v1/post"))
                        .bearer_auth(&posting_key)
                        .json(&json!({ "ping_id": uuid::Uuid::now_v7(), "lead": ping_lead() })),
                    _ => app
                        .client
                        .get(app.url("/v1/admin/buyers"))
                        .bearer_auth(&admin_key),
                };
                let response = builder.send().await.unwrap();
                Seen {
                    route,
                    status: response.status().as_u16(),
                    retry_after: response.headers().contains_key("retry-after"),
                    problem_json: response
                        .headers()
                        .get("content-type")
                        .is_some_and(|v| v == "application/problem+json"),
                }
            }
        }
    };
    for (route, status) in healthy {
        assert_eq!(
            request(route).await.status,
            status,
            "{route} before the restart"
        );
    }

    // Light load: three clients, each a ping, a post and an admin GET in turn.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (request, stop) = (request.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    for (route, _) in healthy {
                        seen.push(request(route).await);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                seen
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap()
        .unwrap();
    // A key this process has not loaded (a tenant made a moment ago, say) cannot be checked
    // while the database is down: 503, not a 401 that would call a valid key unknown.
    let unknown = app
        .client
        .get(app.url("/v1/admin/buyers"))
        .bearer_auth(gavel::keys::generate(gavel::keys::ADMIN_KEY_PREFIX))
        .send()
        .await
        .unwrap();
    assert_eq!(
        unknown.status(),
        503,
        "an unknown key with the database down"
    );
    assert!(unknown.headers().contains_key("retry-after"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cluster = start(LocalPgOptions {
        port: Some(port),
        ..options
    })
    .await
    .unwrap()
    .unwrap();

    // Back to health on its own, on every route.
    let deadline = Instant::now() + Duration::from_secs(20);
    'recovering: loop {
        let mut all = true;
        for (route, status) in healthy {
            all &= request(route).await.status == status;
        }
        if all {
            break 'recovering;
        }
        assert!(Instant::now() < deadline, "the routes never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for client in clients {
        seen.extend(client.await.unwrap());
    }

    let failures: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.status >= 500 && s.status != 503)
        .collect();
    assert!(failures.is_empty(), "answers other than 503: {failures:?}");
    let unavailable: Vec<&Seen> = seen.iter().filter(|s| s.status == 503).collect();
    assert!(
        !unavailable.is_empty(),
        "the restart was never seen: {} answers",
        seen.len()
    );
    for answer in &unavailable {
        assert!(
            answer.retry_after && answer.problem_json,
            "a 503 without Retry-After or problem+json: {answer:?}"
        );
    }
    for route in ["ping", "post", "admin"] {
        assert!(
            unavailable.iter().any(|s| s.route == route),
            "{route} never answered 503: {seen:?}"
        );
    }

    drop(request);
    Arc::try_unwrap(app)
        .ok()
        .expect("the clients are done")
        .shut_down()
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap()
        .unwrap();
}
