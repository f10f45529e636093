//! Snapshots of what clients read: the OpenAPI document as served and every problem+json body,
//! each produced by a real request the way a partner or an operator meets it. A changed answer
//! fails here with a diff (`cargo insta review` to accept a deliberate change).

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use gavel::clock::FixedClock;
use regex::Regex;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, ping_lead};
use crate::harness::{TestApp, spawn_app, spawn_app_with, spawn_app_with_clock, test_settings};

/// Ids and times differ on every run: they become placeholders.
fn redacted(value: Value) -> Value {
    let uuid = Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    let time = Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)").unwrap();
    match value {
        Value::String(text) => {
            let text = uuid.replace_all(&text, "[uuid]");
            Value::String(time.replace_all(&text, "[time]").into_owned())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(redacted).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, redacted(v))).collect())
        }
        other => other,
    }
}

/// The HTTP status, `Retry-After` and body of a problem+json answer (which it must be).
async fn problem(request: RequestBuilder) -> Value {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    assert_eq!(
        headers.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/problem+json"),
        "{status}: {text}"
    );
    let retry_after = headers
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], status, "{text}");
    redacted(json!({ "status": status, "retry_after": retry_after, "body": body }))
}

fn ping(app: &TestApp, key: &str) -> RequestBuilder {
    app.client.post(app.url("/v1/ping")).bearer_auth(key)
}

fn post(app: &TestApp, key: &str) -> RequestBuilder {
    app.client.post(app.url("/v1/post")).bearer_auth(key)
}

fn admin(app: &TestApp, method: Method, path: &str, key: &str) -> RequestBuilder {
    app.client.request(method, app.url(path)).bearer_auth(key)
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_openapi_document_as_served(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    insta::assert_json_snapshot!("openapi", document);
    app.shut_down().await.unwrap();
}

/// Every refusal of the partner API and of the admin API that a request alone can cause.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn every_refusal_a_request_can_cause(pool: PgPool) {
    // A tenant whose pings get bids and whose posts are delivered and need consent.
    let exchange = Exchange::create(&pool, "hybrid").await;
    sqlx::query("UPDATE offers SET require_consent = '[\"trustedform_cert_url\"]' WHERE id = $1")
        .bind(exchange.offer_id)
        .execute(&pool)
        .await
        .unwrap();
    let buyers = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": "accepted" })))
        .mount(&buyers)
        .await;
    let delivery = json!({ "url": format!("{}/leads", buyers.uri()), "timeout_ms": 1000,
                           "accept": { "path": "/status", "equals": "accepted" } });
    let buyer = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                delivery: Some(delivery),
                ..ContractSpec::fixed(None, Some(1000))
            },
        )
        .await
        .0;
    // A tenant without buyers (its pings have no bids), one whose partner is paused and one
    // whose campaign takes one ping a second.
    let no_buyers = Exchange::create(&pool, "hybrid").await;
    let paused = Exchange::create(&pool, "hybrid").await;
    sqlx::query("UPDATE partners SET status = 'paused' WHERE id = $1")
        .bind(paused.partner_id)
        .execute(&pool)
        .await
        .unwrap();
    let slow = Exchange::create(&pool, "hybrid").await;
    sqlx::query("UPDATE campaigns SET ping_rate_per_second = 1 WHERE id = $1")
        .bind(slow.campaign_id)
        .execute(&pool)
        .await
        .unwrap();

    let start = Utc.with_ymd_and_hms(2026, 11, 25, 15, 0, 0).unwrap();
    let clock = Arc::new(FixedClock::new(start));
    let mut settings = test_settings();
    settings.body_limit_bytes = 4096;
    let panics = axum::Router::new().route("/test/panic", axum::routing::get(a_handler_with_a_bug));
    let app = spawn_app_with_clock(pool.clone(), settings, panics, clock.clone()).await;
    let key = exchange.posting_key.clone();
    let admin_key = exchange.admin_key.clone();
    let mut answers = Vec::<(&str, Value)>::new();

    // Keys.
    answers.push((
        "unauthorized_without_key",
        problem(
            app.client
                .post(app.url("/v1/ping"))
                .json(&json!({ "lead": ping_lead() })),
        )
        .await,
    ));
    answers.push((
        "unauthorized_unknown_posting_key",
        problem(ping(&app, "pk_unknown").json(&json!({ "lead": ping_lead() }))).await,
    ));
    answers.push((
        "unauthorized_without_admin_key",
        problem(app.client.get(app.url("/v1/admin/partners"))).await,
    ));
    answers.push((
        "unauthorized_unknown_admin_key",
        problem(admin(&app, Method::GET, "/v1/admin/partners", "ak_unknown")).await,
    ));
    answers.push((
        "campaign_paused",
        problem(ping(&app, &paused.posting_key).json(&json!({ "lead": ping_lead() }))).await,
    ));
    assert_eq!(
        app.ping(&slow.posting_key, json!({ "lead": ping_lead() }))
            .await
            .0,
        200
    );
    answers.push((
        "rate_limited_ping",
        problem(ping(&app, &slow.posting_key).json(&json!({ "lead": ping_lead() }))).await,
    ));

    // Bodies.
    answers.push((
        "unsupported_media_type",
        problem(ping(&app, &key).body("lead=1")).await,
    ));
    answers.push((
        "payload_too_large",
        problem(
            ping(&app, &key)
                .header("content-type", "application/json")
                .body(format!(
                    "{{\"lead\": {{\"pad\": \"{}\"}}}}",
                    "x".repeat(8192)
                )),
        )
        .await,
    ));
    for (name, body) in [
        ("malformed_json_syntax", "{\"lead\": "),
        ("malformed_json_not_an_object", "[1]"),
        (
            "malformed_json_duplicate_key",
            r#"{"lead": {"state": "TX", "state": "CA"}}"#,
        ),
        ("invalid_field_nul", r#"{"lead": {"state": "T\u0000X"}}"#),
    ] {
        let request = ping(&app, &key)
            .header("content-type", "application/json")
            .body(body);
        answers.push((name, problem(request).await));
    }

    // The ping's lead.
    let mut lead = ping_lead();
    lead["email"] = json!("ada.lovelace@example.com");
    lead["shoe_size"] = json!(9);
    lead["zip"] = json!("7500");
    answers.push((
        "pii_in_ping_with_every_error",
        problem(ping(&app, &key).json(&json!({ "lead": lead }))).await,
    ));
    let mut lead = ping_lead();
    lead["shoe_size"] = json!(9);
    answers.push((
        "unknown_field",
        problem(ping(&app, &key).json(&json!({ "lead": lead }))).await,
    ));
    let mut lead = ping_lead();
    lead["credit"] = json!("meh");
    answers.push((
        "invalid_field_lead",
        problem(ping(&app, &key).json(&json!({ "lead": lead }))).await,
    ));
    answers.push((
        "invalid_field_dedup",
        problem(
            ping(&app, &key)
                .json(&json!({ "lead": ping_lead(), "dedup": { "email_sha256": "abc" } })),
        )
        .await,
    ));

    // The post.
    let (status, pinged) = app.ping(&key, json!({ "lead": ping_lead() })).await;
    assert_eq!(
        (status, pinged["status"].as_str()),
        (200, Some("bids")),
        "{pinged}"
    );
    let post_body =
        json!({ "ping_id": pinged["ping_id"], "lead": full_lead(), "consent": consent() });
    answers.push((
        "invalid_field_without_ping_id",
        problem(post(&app, &key).json(&json!({ "lead": full_lead(), "consent": consent() }))).await,
    ));
    let mut unknown = post_body.clone();
    unknown["ping_id"] = json!(Uuid::now_v7());
    answers.push((
        "ping_not_found",
        problem(post(&app, &key).json(&unknown)).await,
    ));
    let mut swapped = post_body.clone();
    swapped["lead"]["state"] = json!("OK");
    answers.push((
        "ping_post_mismatch",
        problem(post(&app, &key).json(&swapped)).await,
    ));
    let mut no_consent = post_body.clone();
    no_consent["consent"]
        .as_object_mut()
        .unwrap()
        .remove("trustedform_cert_url");
    answers.push((
        "consent_required",
        problem(post(&app, &key).json(&no_consent)).await,
    ));
    let mut not_a_bid = post_body.clone();
    not_a_bid["bid_ids"] = json!([Uuid::now_v7()]);
    answers.push((
        "invalid_field_not_a_bid",
        problem(post(&app, &key).json(&not_a_bid)).await,
    ));
    let (status, no_bids) = app
        .ping(&no_buyers.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!((status, no_bids["status"].as_str()), (200, Some("no_bids")));
    answers.push((
        "ping_not_postable",
        problem(post(&app, &no_buyers.posting_key).json(
            &json!({ "ping_id": no_bids["ping_id"], "lead": full_lead(), "consent": consent() }),
        ))
        .await,
    ));
    let (status, sold) = app.post(&key, post_body.clone()).await;
    assert_eq!(status, 200, "{sold}");
    let mut other = post_body.clone();
    other["lead"]["first_name"] = json!("Grace");
    answers.push((
        "already_posted",
        problem(post(&app, &key).json(&other)).await,
    ));
    let (_, late) = app.ping(&key, json!({ "lead": ping_lead() })).await;
    clock.set(start + chrono::Duration::seconds(3600));
    answers.push((
        "ping_expired",
        problem(post(&app, &key).json(
            &json!({ "ping_id": late["ping_id"], "lead": full_lead(), "consent": consent() }),
        ))
        .await,
    ));

    // The admin API.
    answers.push((
        "not_found_route",
        problem(app.client.get(app.url("/nowhere"))).await,
    ));
    answers.push((
        "method_not_allowed",
        problem(app.client.get(app.url("/v1/ping"))).await,
    ));
    answers.push((
        "not_found_resource",
        problem(admin(
            &app,
            Method::GET,
            &format!("/v1/admin/buyers/{}", Uuid::now_v7()),
            &admin_key,
        ))
        .await,
    ));
    answers.push((
        "bad_request_repeated_query_parameter",
        problem(admin(
            &app,
            Method::GET,
            "/v1/admin/partners?limit=1&limit=2",
            &admin_key,
        ))
        .await,
    ));
    answers.push((
        "not_found_path_not_an_id",
        problem(admin(
            &app,
            Method::GET,
            "/v1/admin/buyers/not-an-id",
            &admin_key,
        ))
        .await,
    ));
    answers.push((
        "invalid_field_query",
        problem(admin(
            &app,
            Method::GET,
            "/v1/admin/partners?limit=0",
            &admin_key,
        ))
        .await,
    ));
    answers.push((
        "invalid_config",
        problem(
            admin(
                &app,
                Method::PATCH,
                &format!("/v1/admin/buyers/{buyer}"),
                &admin_key,
            )
            .json(&json!({ "balance": 1_000_000 })),
        )
        .await,
    ));
    let funds = format!("/v1/admin/buyers/{buyer}/funds");
    let credit = |idempotency_key: &str, amount: i64| {
        admin(&app, Method::POST, &funds, &admin_key)
            .header("idempotency-key", idempotency_key)
            .json(&json!({ "amount": amount, "note": "wire" }))
    };
    answers.push((
        "invalid_field_idempotency_key",
        problem(credit("not printable ✓", 10)).await,
    ));
    assert_eq!(credit("wire-1", 10).send().await.unwrap().status(), 201);
    answers.push((
        "idempotency_key_reused",
        problem(credit("wire-1", 20)).await,
    ));
    // The key's first request still running, as a crash would leave it until it expires.
    sqlx::query(
        "UPDATE idempotency_keys SET http_status = NULL, content_type = NULL, response = NULL
         WHERE tenant_id = $1 AND key = 'wire-1'",
    )
    .bind(exchange.tenant_id)
    .execute(&pool)
    .await
    .unwrap();
    answers.push((
        "idempotency_key_in_progress",
        problem(credit("wire-1", 10)).await,
    ));

    // A bug of ours.
    answers.push((
        "internal_panic",
        problem(app.client.get(app.url("/test/panic"))).await,
    ));

    for (name, answer) in answers {
        insta::assert_json_snapshot!(name, answer);
    }
    app.shut_down().await.unwrap();
}

async fn a_handler_with_a_bug() -> &'static str {
    panic!("a handler's bug")
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_request_over_its_time(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    let mut settings = test_settings();
    settings.request_timeout_ms = 300;
    let app = spawn_app_with(pool, settings, axum::Router::new()).await;
    // Half a body, then nothing: the request's time runs out while its body is read.
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    let head = format!(
        "POST /v1/admin/partners HTTP/1.1\r\nHost: gavel\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{{\"name\": ",
        exchange.admin_key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an answer");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{answer}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(head.contains("retry-after: 1"), "{head}");
    let body: Value = serde_json::from_str(body).unwrap();
    insta::assert_json_snapshot!("request_timeout", body);
    app.shut_down().await.unwrap();
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn an_auction_over_the_in_flight_bound(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let rtb = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "bid": 12.5 }))
                .set_delay(Duration::from_millis(800)),
        )
        .mount(&rtb)
        .await;
    exchange
        .buyer_with(
            100_000,
            ContractSpec::rtb(format!("{}/bid", rtb.uri()), 1500),
        )
        .await;
    let mut settings = test_settings();
    settings.max_in_flight_auctions = 1;
    let app = spawn_app_with(pool, settings, axum::Router::new()).await;
    let running = app.ping(&exchange.posting_key, json!({ "lead": ping_lead() }));
    let shed = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        problem(ping(&app, &exchange.posting_key).json(&json!({ "lead": ping_lead() }))).await
    };
    let ((status, _), shed) = tokio::join!(running, shed);
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("overloaded", shed);
    app.shut_down().await.unwrap();
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_database_that_is_gone(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let app = spawn_app(pool.clone()).await;
    pool.close().await;
    insta::assert_json_snapshot!(
        "unavailable_readiness",
        problem(app.client.get(app.url("/readyz"))).await
    );
    insta::assert_json_snapshot!(
        "unavailable",
        problem(admin(
            &app,
            Method::GET,
            "/v1/admin/partners",
            &exchange.admin_key
        ))
        .await
    );
}
