//! `Idempotency-Key` on `POST /v1/admin/buyers/{id}/funds` and `POST /v1/leads`: a retry
//! replays the first answer and does nothing else; another body is 409; concurrent requests
//! with one key run once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use futures::future::join_all;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead};
use crate::harness::{TestApp, spawn_app, spawn_app_with, test_settings};

/// Sends `body` to `path` with `bearer` and (if any) `key`; returns the status, whether it was
/// replayed, and the body's text.
pub(crate) async fn send(
    app: &TestApp,
    path: &str,
    bearer: &str,
    key: Option<&str>,
    body: &Value,
) -> (u16, bool, String) {
    let mut request = app
        .client
        .post(app.url(path))
        .bearer_auth(bearer)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (status, replayed, response.text().await.unwrap())
}

async fn funds_entries(pool: &PgPool, buyer_id: Uuid) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT amount_cents FROM ledger_entries WHERE buyer_id = $1 AND kind = 'funds' ORDER BY id",
    )
    .bind(buyer_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

fn code(text: &str) -> Value {
    serde_json::from_str::<Value>(text).unwrap()["code"].clone()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_funds_retry_with_its_key_credits_once(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyer_id = exchange.buyer(1000).await;
    let app = spawn_app(pool.clone()).await;
    let path = format!("/v1/admin/buyers/{buyer_id}/funds");
    let admin = exchange.admin_key.clone();
    let body = json!({ "amount": 500.00, "note": "wire 1123" });

    let (status, replayed, first) = send(&app, &path, &admin, Some("wire-1123"), &body).await;
    assert_eq!((status, replayed), (201, false), "{first}");
    let (status, replayed, again) = send(&app, &path, &admin, Some("wire-1123"), &body).await;
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again, first, "the same answer, byte for byte");
    assert_eq!(funds_entries(&pool, buyer_id).await, [1000, 50_000]);
    assert_eq!(exchange.buyer_books(buyer_id).await, (51_000, 51_000));

    // The same key with another body: refused, nothing moves.
    let other = json!({ "amount": 600.00, "note": "wire 1123" });
    let (status, _, text) = send(&app, &path, &admin, Some("wire-1123"), &other).await;
    assert_eq!(
        (status, code(&text)),
        (409, json!("idempotency_key_reused")),
        "{text}"
    );
    // Another tenant's identical key is its own.
    let elsewhere = Exchange::create(&pool, "exclusive").await;
    let their_buyer = elsewhere.buyer(0).await;
    let their_path = format!("/v1/admin/buyers/{their_buyer}/funds");
    let (status, replayed, _) = send(
        &app,
        &their_path,
        &elsewhere.admin_key,
        Some("wire-1123"),
        &body,
    )
    .await;
    assert_eq!((status, replayed), (201, false));
    // Without the header, as before: each request moves money.
    for _ in 0..2 {
        assert_eq!(send(&app, &path, &admin, None, &body).await.0, 201);
    }
    assert_eq!(
        funds_entries(&pool, buyer_id).await,
        [1000, 50_000, 50_000, 50_000]
    );

    // Eight at once with one new key: one credit.
    let racing = (0..8).map(|_| send(&app, &path, &admin, Some("wire-2000"), &body));
    let answers = join_all(racing).await;
    for (status, _, text) in &answers {
        assert!(
            *status == 201 || (*status == 409 && code(text) == "idempotency_key_in_progress"),
            "{status} {text}"
        );
    }
    assert_eq!(funds_entries(&pool, buyer_id).await.len(), 5);
    assert_eq!(exchange.buyer_books(buyer_id).await, (201_000, 201_000));
    // A bad key is refused.
    let (status, _, _) = send(&app, &path, &admin, Some("has space"), &body).await;
    assert_eq!(status, 422);
}

/// A buyer's delivery endpoint that counts its deliveries and accepts after `delay`.
async fn counting_buyer(delay: Duration) -> (Value, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    let router = axum::Router::new().route(
        "/leads",
        post(move || {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                Json(json!({ "status": "accepted" }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let delivery = json!({ "url": format!("http://{address}/leads"), "timeout_ms": 10_000,
                           "accept": { "path": "/status", "equals": "accepted" } });
    (delivery, count)
}

fn direct_body(email: &str) -> Value {
    let mut lead = full_lead();
    lead["email"] = json!(email);
    json!({ "lead": lead, "consent": consent() })
}

async fn sales_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM lead_sales WHERE status = 'sold'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_direct_post_retry_with_its_key_sells_once(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let (delivery, delivered) = counting_buyer(Duration::ZERO).await;
    let spec = ContractSpec {
        delivery: Some(delivery),
        ..ContractSpec::fixed(Some(4000), None)
    };
    exchange.buyer_with(100_000, spec).await;
    let app = spawn_app(pool.clone()).await;
    let key = exchange.posting_key.clone();

    let body = direct_body("ada@example.com");
    let (status, replayed, first) = send(&app, "/v1/leads", &key, Some("lead-1"), &body).await;
    assert_eq!((status, replayed), (200, false), "{first}");
    assert_eq!(
        serde_json::from_str::<Value>(&first).unwrap()["status"],
        "sold"
    );
    let (status, replayed, again) = send(&app, "/v1/leads", &key, Some("lead-1"), &body).await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(again, first);
    assert_eq!(delivered.load(Ordering::SeqCst), 1, "delivered once");
    assert_eq!(sales_count(&pool).await, 1, "sold once");

    let other = direct_body("grace@example.com");
    let (status, _, text) = send(&app, "/v1/leads", &key, Some("lead-1"), &other).await;
    assert_eq!(
        (status, code(&text)),
        (409, json!("idempotency_key_reused")),
        "{text}"
    );
    assert_eq!(sales_count(&pool).await, 1);

    // Two at once with one key: one auction, one sale.
    let body = direct_body("alan@example.com");
    let (a, b) = tokio::join!(
        send(&app, "/v1/leads", &key, Some("lead-2"), &body),
        send(&app, "/v1/leads", &key, Some("lead-2"), &body)
    );
    let statuses = [a.0, b.0];
    assert!(statuses.contains(&200), "{a:?} {b:?}");
    assert_eq!(sales_count(&pool).await, 2);
    assert_eq!(delivered.load(Ordering::SeqCst), 2);
    let pings: i64 = sqlx::query_scalar("SELECT count(*) FROM posting_log WHERE kind = 'ping'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(pings, 2, "one auction per key");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_settling_direct_post_is_completed_by_its_keys_retry(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let (delivery, delivered) = counting_buyer(Duration::from_millis(2500)).await;
    let spec = ContractSpec {
        delivery: Some(delivery),
        ..ContractSpec::fixed(Some(4000), None)
    };
    exchange.buyer_with(100_000, spec).await;
    let mut settings = test_settings();
    settings.request_timeout_ms = 2000;
    let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;
    let key = exchange.posting_key.clone();
    let body = direct_body("ada@example.com");

    let (status, _, text) = send(&app, "/v1/leads", &key, Some("slow-1"), &body).await;
    assert_eq!(status, 202, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["status"],
        "settling"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, replayed, text) = send(&app, "/v1/leads", &key, Some("slow-1"), &body).await;
    assert_eq!((status, replayed), (200, true), "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["status"],
        "sold"
    );
    assert_eq!(delivered.load(Ordering::SeqCst), 1);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_direct_post_whose_client_hung_up_keeps_its_answer_for_the_keys_retry(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let (delivery, delivered) = counting_buyer(Duration::from_millis(1000)).await;
    let spec = ContractSpec {
        delivery: Some(delivery),
        ..ContractSpec::fixed(Some(4000), None)
    };
    exchange.buyer_with(100_000, spec).await;
    let app = spawn_app(pool.clone()).await;
    let key = exchange.posting_key.clone();
    let body = direct_body("ada@example.com");

    // The client gives up while the buyer takes the lead: the request's handler is dropped.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(app.url("/v1/leads"))
        .bearer_auth(&key)
        .header("Idempotency-Key", "hung-up-1")
        .json(&body)
        .send()
        .await;
    assert!(gave_up.is_err(), "the client was expected to give up");

    // Once the sale is done, the key's retry is answered what happened, not "in progress".
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, replayed, text) = send(&app, "/v1/leads", &key, Some("hung-up-1"), &body).await;
    assert_eq!((status, replayed), (200, true), "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["status"],
        "sold"
    );
    assert_eq!(delivered.load(Ordering::SeqCst), 1);
    assert_eq!(sales_count(&pool).await, 1);
}
