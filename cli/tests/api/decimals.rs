//! Exact decimals wherever a number arrives: a buyer's bid with more digits than an f64 holds
//! is truncated to the cent (never rounded up), and an admin amount with many decimals is
//! refused (never rounded to a neighbouring cent).

use gavel::money::{ExtraDecimals, Money};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, outcome_of, ping_lead};
use crate::harness::spawn_app;

fn cents(value: &Value) -> i64 {
    Money::from_json(value, ExtraDecimals::Reject)
        .unwrap_or_else(|e| panic!("{value}: {e}"))
        .cents()
}

/// An answer written as raw text, so its number reaches Gavel exactly as spelled.
fn raw_answer(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_bid_with_many_decimals_is_truncated_to_the_cent(pool: PgPool) {
    let exchange = Exchange::create(&pool, "optimize").await;
    let buyer = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/native"))
        .respond_with(raw_answer(
            r#"{"exclusive_bid": 12.999999999999999999, "shared_bid": 4.999999999999999999999}"#,
        ))
        .mount(&buyer)
        .await;
    Mock::given(method("POST"))
        .and(path("/nested"))
        .respond_with(raw_answer(
            r#"{"offer": {"bids": [{"cpl": 12.999999999999999999}]}}"#,
        ))
        .mount(&buyer)
        .await;
    let (_, native) = exchange
        .buyer_with(
            100_000,
            ContractSpec::rtb(format!("{}/native", buyer.uri()), 500),
        )
        .await;
    let (_, nested) = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                pricing: Some(
                    json!({ "type": "rtb", "url": format!("{}/nested", buyer.uri()),
                                      "timeout_ms": 500, "shared_bid_path": "/offer/bids/0/cpl" }),
                ),
                ..Default::default()
            },
        )
        .await;
    let app = spawn_app(pool.clone()).await;

    let (status, answer) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(status, 200, "{answer}");
    let (_, view) = app
        .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
        .await;
    let read = outcome_of(&view, native);
    assert_eq!(cents(&read["exclusive_bid"]), 1299, "{read}");
    assert_eq!(cents(&read["shared_bid"]), 499, "{read}");
    let read = outcome_of(&view, nested);
    assert_eq!(cents(&read["shared_bid"]), 1299, "{read}");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn admin_amounts_with_many_decimals_are_refused_not_rounded(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyer = exchange.buyer(0).await;
    let app = spawn_app(pool.clone()).await;
    let key = &exchange.admin_key;
    let funds = format!("/v1/admin/buyers/{buyer}/funds");

    let response = app
        .client
        .post(app.url(&funds))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(r#"{"amount": 12.999999999999999999}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["errors"][0]["pointer"], "/amount", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("at most 2 decimals"),
        "{problem}"
    );
    let balance: i64 = sqlx::query_scalar("SELECT balance_cents FROM buyers WHERE id = $1")
        .bind(buyer)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(balance, 0, "nothing credited");

    let response = app
        .client
        .post(app.url("/v1/admin/contracts"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"buyer_id": "{buyer}", "offer_id": "{}", "name": "Exact",
                 "pricing": {{"type": "fixed", "exclusive": 40.000000000000000001}},
                 "delivery": {{"url": "https://buyer.example/leads"}}}}"#,
            exchange.offer_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(
        problem["errors"][0]["pointer"], "/pricing/exclusive",
        "{problem}"
    );

    // Two decimals, however spelled, are still read exactly.
    let (status, receipt) = app
        .admin(Method::POST, &funds, key, Some(json!({ "amount": 12.99 })))
        .await;
    assert_eq!(status, 201, "{receipt}");
    assert_eq!(cents(&receipt["balance"]), 1299);
}
