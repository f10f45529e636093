//! Read-your-writes of the admin API, and fair sharing between tenants: the statement timeout,
//! the report's bounds, the bound on RTB calls per ping, admin keys checked in memory, and
//! admin reads that take no row locks.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, offer_fields, outcome_of, ping_lead};
use crate::harness::{TestApp, spawn_app, spawn_app_with, test_settings};

async fn created(app: &TestApp, path: &str, key: &str, body: Value) -> Value {
    let (status, answer) = app.admin(Method::POST, path, key, Some(body)).await;
    assert_eq!(status, 201, "POST {path}: {answer}");
    answer
}

fn id(resource: &Value) -> &str {
    resource["id"].as_str().unwrap()
}

async fn admin_key(pool: &PgPool) -> String {
    gavel::store::tenants::create(pool, "Fair Test", "America/New_York")
        .await
        .unwrap()
        .admin_key
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_ping_sent_right_after_an_admin_write_sees_it(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let key = admin_key(&pool).await;
    for round in 0..30 {
        let offer = created(
            &app,
            "/v1/admin/offers",
            &key,
            json!({ "name": format!("offer {round}"), "mode": "multisell", "fields": offer_fields() }),
        )
        .await;
        let partner = created(&app, "/v1/admin/partners", &key, json!({ "name": "P" })).await;
        let campaign = created(
            &app,
            "/v1/admin/campaigns",
            &key,
            json!({ "partner_id": id(&partner), "offer_id": id(&offer),
                    "payout": { "type": "revshare", "percent": 70 } }),
        )
        .await;
        let posting_key = campaign["posting_key"].as_str().unwrap();
        let (status, answer) = app.ping(posting_key, json!({ "lead": ping_lead() })).await;
        assert_eq!(
            (status, &answer["status"]),
            (200, &json!("no_bids")),
            "round {round}: a new campaign's key works at once: {answer}"
        );
        let buyer = created(
            &app,
            "/v1/admin/buyers",
            &key,
            json!({ "name": "B", "credit_limit": 1000.00 }),
        )
        .await;
        let contract = created(
            &app,
            "/v1/admin/contracts",
            &key,
            json!({ "buyer_id": id(&buyer), "offer_id": id(&offer), "name": "C",
                    "pricing": { "type": "fixed", "shared": 12.50 },
                    "delivery": { "url": "http://127.0.0.1:9/leads" } }),
        )
        .await;
        let (status, answer) = app.ping(posting_key, json!({ "lead": ping_lead() })).await;
        assert_eq!(
            (status, &answer["status"]),
            (200, &json!("bids")),
            "round {round}: a new contract bids at once: {answer}"
        );

        // A pause, then a rotated key: each holds for the very next ping.
        let (status, _) = app
            .admin(
                Method::PATCH,
                &format!("/v1/admin/contracts/{}", id(&contract)),
                &key,
                Some(json!({ "status": "paused" })),
            )
            .await;
        assert_eq!(status, 200);
        let (_, answer) = app.ping(posting_key, json!({ "lead": ping_lead() })).await;
        assert_eq!(answer["status"], "no_bids", "round {round}: {answer}");
        let (status, rotated) = app
            .admin(
                Method::POST,
                &format!("/v1/admin/campaigns/{}/rotate-key", id(&campaign)),
                &key,
                None,
            )
            .await;
        assert_eq!(status, 200, "{rotated}");
        let (status, answer) = app.ping(posting_key, json!({ "lead": ping_lead() })).await;
        assert_eq!(
            status, 401,
            "round {round}: the old key fails at once: {answer}"
        );
        let new_key = rotated["posting_key"].as_str().unwrap();
        let (status, answer) = app.ping(new_key, json!({ "lead": ping_lead() })).await;
        assert_eq!(
            status, 200,
            "round {round}: the new key works at once: {answer}"
        );
    }
}

/// A pool on the test's database whose sessions have the server's settings (the statement
/// timeout among them), as `gavel serve` makes it.
async fn server_pool(pool: &PgPool, settings: &gavel::config::Settings, size: u32) -> PgPool {
    let options = gavel::store::session_options((*pool.connect_options()).clone(), settings);
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_millis(settings.db_acquire_timeout_ms))
        .connect_with(options)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn admin_reads_answer_while_a_transaction_holds_the_row(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let (buyer, contract) = exchange
        .buyer_with(100_000, ContractSpec::fixed(None, Some(1000)))
        .await;
    let app = spawn_app(pool.clone()).await;
    // A post on this buyer holds its row until it commits; a write here holds it the same way.
    let mut post = pool.begin().await.unwrap();
    sqlx::query("UPDATE buyers SET balance_cents = balance_cents WHERE tenant_id = $1 AND id = $2")
        .bind(exchange.tenant_id)
        .bind(buyer)
        .execute(&mut *post)
        .await
        .unwrap();
    sqlx::query("UPDATE contracts SET priority = priority WHERE tenant_id = $1 AND id = $2")
        .bind(exchange.tenant_id)
        .bind(contract)
        .execute(&mut *post)
        .await
        .unwrap();
    for path in [
        format!("/v1/admin/buyers/{buyer}"),
        format!("/v1/admin/contracts/{contract}"),
        format!("/v1/admin/campaigns/{}", exchange.campaign_id),
    ] {
        let answer = app
            .client
            .get(app.url(&path))
            .bearer_auth(&exchange.admin_key)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} waited for the row lock: {e}"));
        assert_eq!(answer.status(), 200, "GET {path}");
    }
    post.rollback().await.unwrap();
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_report_range_longer_than_the_setting_is_refused(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let mut settings = test_settings();
    settings.report_max_days = 7;
    let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;
    let report = |query: String| {
        let app = &app;
        let key = exchange.admin_key.clone();
        async move {
            let answer = app
                .client
                .get(app.url(&format!("/v1/admin/reports/summary?{query}")))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            (status, answer.json::<Value>().await.unwrap())
        }
    };
    let (status, answer) =
        report("from=2026-01-01T00:00:00Z&to=2026-01-08T00:00:01Z&group_by=buyer".to_owned()).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["errors"][0]["pointer"], "/query/from", "{answer}");
    assert!(
        answer["detail"].as_str().unwrap().contains("7 days"),
        "{answer}"
    );
    // Without `from` the range is the longest allowed; a week is accepted.
    let (status, answer) =
        report("from=2026-01-01T00:00:00Z&to=2026-01-08T00:00:00Z".to_owned()).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = report("group_by=contract".to_owned()).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = report("from=2020-01-01T00:00:00Z".to_owned()).await;
    assert_eq!(
        status, 422,
        "a from long ago with no to is refused too: {answer}"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_statement_past_the_statement_timeout_answers_503_not_500(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let buyer = exchange.buyer(100_000).await;
    let mut settings = test_settings();
    settings.statement_timeout_ms = 300;
    let server_pool = server_pool(&pool, &settings, 10).await;
    let app = spawn_app_with(server_pool.clone(), settings, axum::Router::new()).await;

    // Another session holds what the report and a buyer's change need, far longer than 300 ms.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE lead_sales IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *holder)
        .await
        .unwrap();
    sqlx::query("UPDATE buyers SET balance_cents = balance_cents WHERE tenant_id = $1 AND id = $2")
        .bind(exchange.tenant_id)
        .bind(buyer)
        .execute(&mut *holder)
        .await
        .unwrap();

    let started = Instant::now();
    let answer = app
        .client
        .get(app.url("/v1/admin/reports/summary"))
        .bearer_auth(&exchange.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    assert!(answer.headers().contains_key("retry-after"));
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["code"], "unavailable", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("statement timeout"),
        "{body}"
    );
    let (status, body) = app
        .admin(
            Method::PATCH,
            &format!("/v1/admin/buyers/{buyer}"),
            &exchange.admin_key,
            Some(json!({ "name": "Renamed" })),
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (503, &json!("unavailable")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    holder.rollback().await.unwrap();

    // Once the lock is gone, the same requests succeed.
    let (status, body) = app
        .admin(
            Method::PATCH,
            &format!("/v1/admin/buyers/{buyer}"),
            &exchange.admin_key,
            Some(json!({ "name": "Renamed" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.shut_down().await.unwrap();
    server_pool.close().await;
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_ping_calls_at_most_the_bound_of_rtb_buyers_best_ranked_first(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    let rtb = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/bid"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "shared_bid": "10.00" })))
        .mount(&rtb)
        .await;
    let mut contracts = Vec::new();
    for priority in [0, 3, 1, 2] {
        let mut spec = ContractSpec::rtb(format!("{}/bid", rtb.uri()), 500);
        spec.priority = priority;
        contracts.push((priority, exchange.buyer_with(100_000, spec).await.1));
    }
    let mut settings = test_settings();
    settings.max_rtb_calls_per_ping = 2;
    let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;

    let (status, answer) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("bids")),
        "{answer}"
    );
    assert_eq!(rtb.received_requests().await.unwrap().len(), 2);
    let (_, view) = app
        .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
        .await;
    for (priority, contract) in contracts {
        let entry = outcome_of(&view, contract);
        if priority >= 2 {
            assert!(
                entry["rtb_ms"].is_number(),
                "priority {priority} was called: {entry}"
            );
            assert_ne!(entry["reason"], "rtb_limit", "{entry}");
        } else {
            assert_eq!(
                (&entry["outcome"], &entry["reason"]),
                (&json!("declined"), &json!("rtb_limit")),
                "priority {priority}: {entry}"
            );
            assert!(entry["detail"].as_str().unwrap().contains('2'), "{entry}");
        }
    }
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_contract_naming_no_rtb_timeout_gets_the_servers_rtb_timeout_ms(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    let rtb = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/bid"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "shared_bid": "10.00" }))
                .set_delay(Duration::from_millis(500)),
        )
        .mount(&rtb)
        .await;
    // No `timeout_ms`: 500 ms is beyond the built-in 200 ms, within the server's 1500 ms.
    let spec = ContractSpec {
        pricing: Some(json!({ "type": "rtb", "url": format!("{}/bid", rtb.uri()) })),
        ..Default::default()
    };
    exchange.buyer_with(100_000, spec).await;
    let mut settings = test_settings();
    settings.rtb_timeout_ms = 1500;
    let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;

    let (status, answer) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("bids")),
        "{answer}"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn admin_keys_are_checked_in_memory_new_ones_work_and_revoked_ones_stop(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let mut settings = test_settings();
    settings.db_acquire_timeout_ms = 500;
    let server_pool = server_pool(&pool, &settings, 3).await;
    let app = spawn_app_with(server_pool.clone(), settings, axum::Router::new()).await;
    let buyers = |key: String| {
        let app = &app;
        async move {
            let (status, _) = app.admin(Method::GET, "/v1/admin/buyers", &key, None).await;
            status
        }
    };

    // A key issued while the server runs works at once; revoked, it stops within 1 s.
    let mut tx = pool.begin().await.unwrap();
    let second = gavel::store::tenants::insert_admin_key(&mut tx, exchange.tenant_id, "second")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(buyers(second.clone()).await, 200);
    sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE label = 'second'")
        .execute(&pool)
        .await
        .unwrap();
    let revoked = Instant::now();
    while buyers(second.clone()).await != 401 {
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "the revoked key still works"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // With every connection of the server taken, wrong keys are still refused at once:
    // only a few a second are looked up in the database.
    let mut held = Vec::new();
    while let Ok(Ok(connection)) =
        tokio::time::timeout(Duration::from_millis(300), server_pool.acquire()).await
    {
        held.push(connection);
    }
    let mut slow = 0;
    for _ in 0..40 {
        let started = Instant::now();
        let status = buyers(gavel::keys::generate(gavel::keys::ADMIN_KEY_PREFIX)).await;
        assert_eq!(status, 401);
        if started.elapsed() > Duration::from_millis(150) {
            slow += 1;
        }
    }
    assert!(slow <= 5, "{slow} of 40 wrong keys waited for the database");
    drop(held);
    app.shut_down().await.unwrap();
    server_pool.close().await;
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn reports_beyond_the_concurrency_bound_wait_then_answer_429(pool: PgPool) {
    let first = Exchange::create(&pool, "hybrid").await;
    let second = Exchange::create(&pool, "hybrid").await;
    let mut settings = test_settings();
    settings.max_concurrent_reports = 1;
    // A report waits for a slot a third of this: 1 s.
    settings.request_timeout_ms = 3000;
    let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;
    let report = |key: String| {
        let client = app.client.clone();
        let url = app.url("/v1/admin/reports/summary");
        async move {
            let answer = client.get(url).bearer_auth(key).send().await.unwrap();
            let status = answer.status().as_u16();
            let retry_after = answer.headers().contains_key("retry-after");
            (status, retry_after, answer.json::<Value>().await.unwrap())
        }
    };
    // The first tenant's report holds the process's only slot while it waits for a lock.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE lead_sales IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let running = tokio::spawn(report(first.admin_key.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let (status, retry_after, body) = report(second.admin_key.clone()).await;
    assert_eq!((status, retry_after), (429, true), "{body}");
    assert_eq!(body["code"], "rate_limited");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "it waited its turn first"
    );
    holder.rollback().await.unwrap();
    let (status, _, body) = running.await.unwrap();
    assert_eq!(status, 200, "{body}");
    // With the slot free again, the second tenant's report runs.
    let (status, _, body) = report(second.admin_key.clone()).await;
    assert_eq!(status, 200, "{body}");
}
