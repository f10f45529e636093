//! A ping's deadline (`max_wait_ms`, docs/revenue-recovery.md §6): a slow RTB buyer is cut at
//! the time left, and the ping answers by its deadline.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, outcome_of, ping_lead};
use crate::harness::spawn_app;

/// Gavel's own part of a ping beyond its deadline (a few ms), with room for a busy 2-core CI.
const OUR_PART: Duration = Duration::from_millis(200);

/// A buyer that bids 30.00 after three seconds: later than its contract's 2 s timeout, by a
/// margin (at exactly 2 s the answer and the timeout race on a loaded machine).
async fn slow_buyer() -> MockServer {
    let rtb = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/bid"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "exclusive": 30.00 }))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&rtb)
        .await;
    rtb
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_ping_with_max_wait_ms_answers_by_its_deadline_with_the_bids_it_has(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let rtb = slow_buyer().await;
    let fixed = exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(1000), None))
        .await
        .1;
    let slow = exchange
        .buyer_with(
            100_000,
            ContractSpec::rtb(format!("{}/bid", rtb.uri()), 2000),
        )
        .await
        .1;
    let app = spawn_app(pool).await;
    // A first ping opens the server's connections (on a busy CI, more than the deadline):
    // the deadline bounds the auction, not the process's start.
    let (status, _) = app
        .ping(
            &exchange.posting_key,
            json!({ "lead": ping_lead(), "max_wait_ms": 50 }),
        )
        .await;
    assert_eq!(status, 200);

    let started = Instant::now();
    let (status, answer) = app
        .ping(
            &exchange.posting_key,
            json!({ "lead": ping_lead(), "max_wait_ms": 50 }),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{answer}");
    assert!(
        took < Duration::from_millis(50) + OUR_PART,
        "answered in {took:?}, not by its 50 ms deadline"
    );
    assert_eq!(
        answer["status"], "bids",
        "the fixed-price bid sells: {answer}"
    );
    let (_, view) = app
        .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(outcome_of(&view, fixed)["outcome"], "won");
    assert_eq!(outcome_of(&view, slow)["reason"], "rtb_timeout", "{view}");
    // The buyer was told how long it had: the time left, not its contract's 2 s.
    // (On a loaded machine the request may reach the buyer after the ping has answered.)
    let mut requests = rtb.received_requests().await.unwrap();
    for _ in 0..60 {
        if !requests.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        requests = rtb.received_requests().await.unwrap();
    }
    let sent: Value = serde_json::from_slice(&requests[0].body).unwrap();
    let tmax = sent["tmax_ms"].as_u64().unwrap();
    assert!((1..=50).contains(&tmax), "tmax_ms {tmax}");

    // Without a deadline the ping waits for its buyer's own 2 s timeout.
    let started = Instant::now();
    let (_, answer) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(1900));
    let (_, view) = app
        .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(
        outcome_of(&view, slow)["detail"],
        "no answer within 2000 ms"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn an_offers_max_wait_ms_is_the_default_and_both_are_validated(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let rtb = slow_buyer().await;
    let slow = exchange
        .buyer_with(
            100_000,
            ContractSpec::rtb(format!("{}/bid", rtb.uri()), 2000),
        )
        .await
        .1;
    let app = spawn_app(pool).await;
    let offer_path = format!("/v1/admin/offers/{}", exchange.offer_id);

    let (status, problem) = app
        .admin(
            Method::PATCH,
            &offer_path,
            &exchange.admin_key,
            Some(json!({ "max_wait_ms": 5 })),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["pointer"], "/max_wait_ms");
    let (status, offer) = app
        .admin(
            Method::PATCH,
            &offer_path,
            &exchange.admin_key,
            Some(json!({ "max_wait_ms": 80 })),
        )
        .await;
    assert_eq!(status, 200, "{offer}");
    assert_eq!(offer["max_wait_ms"], 80);

    let started = Instant::now();
    let (status, answer) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "no_bids");
    assert!(
        took < Duration::from_millis(80) + OUR_PART,
        "answered in {took:?}, not by the offer's 80 ms deadline"
    );
    let (_, view) = app
        .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(outcome_of(&view, slow)["reason"], "rtb_timeout");

    for bad in [json!(9), json!(60_001), json!("50"), json!(12.5)] {
        let (status, problem) = app
            .ping(
                &exchange.posting_key,
                json!({ "lead": ping_lead(), "max_wait_ms": bad }),
            )
            .await;
        assert_eq!(status, 422, "{bad}: {problem}");
        assert_eq!(problem["errors"][0]["pointer"], "/max_wait_ms", "{bad}");
    }
}
