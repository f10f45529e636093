//! The cascade at post (docs/revenue-recovery.md §1): a refused winner's slot offered to the
//! ping's runner-ups, one at a time, with real buyers on 127.0.0.1 and exact money.

use std::time::Duration;

use gavel::money::{ExtraDecimals, Money};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, outcome_of, ping_lead};
use crate::harness::{TestApp, spawn_app};

fn cents(value: &Value) -> i64 {
    Money::from_json(value, ExtraDecimals::Reject)
        .unwrap_or_else(|e| panic!("{value}: {e}"))
        .cents()
}

fn accepts() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "status": "accepted" }))
}

fn rejects() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({ "status": "rejected", "message": "no thanks" }))
}

/// A buyer's delivery endpoint at `route` of `server`, answering `response`.
async fn endpoint(server: &MockServer, route: &str, response: ResponseTemplate) -> Value {
    Mock::given(method("POST"))
        .and(path(route))
        .respond_with(response)
        .mount(server)
        .await;
    json!({ "url": format!("{}{route}", server.uri()), "timeout_ms": 2000,
            "accept": { "path": "/status", "equals": "accepted" }, "reason_path": "/message" })
}

/// A buyer (funded with 1,000.00) with one fixed-price contract delivering to `route`.
async fn bidder(
    exchange: &Exchange,
    server: &MockServer,
    route: &str,
    response: ResponseTemplate,
    pricing: ContractSpec,
) -> (Uuid, Uuid) {
    let delivery = endpoint(server, route, response).await;
    exchange
        .buyer_with(
            100_000,
            ContractSpec {
                delivery: Some(delivery),
                ..pricing
            },
        )
        .await
}

fn exclusive(cents: i64) -> ContractSpec {
    ContractSpec::fixed(Some(cents), None)
}

async fn set_cascade(exchange: &Exchange, cascade: Value) {
    sqlx::query("UPDATE offers SET cascade = $2 WHERE id = $1")
        .bind(exchange.offer_id)
        .bind(cascade)
        .execute(&exchange.pool)
        .await
        .unwrap();
}

/// How many deliveries `route` received.
async fn delivered(server: &MockServer, route: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == route)
        .count()
}

async fn ping(app: &TestApp, exchange: &Exchange, body: Value) -> Value {
    let (status, answer) = app.ping(&exchange.posting_key, body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("bids")),
        "{answer}"
    );
    answer
}

fn post_body(ping: &Value) -> Value {
    json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() })
}

async fn partner_earned(exchange: &Exchange) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(amount_cents), 0)::bigint FROM ledger_entries
         WHERE tenant_id = $1 AND partner_id = $2 AND kind = 'sale'",
    )
    .bind(exchange.tenant_id)
    .bind(exchange.partner_id)
    .fetch_one(&exchange.pool)
    .await
    .unwrap()
}

/// The buyers' attempts of an answer's first result: (buyer, status).
fn attempts_of(answer: &Value) -> Vec<(String, String)> {
    answer["results"][0]["attempts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|a| {
                    (
                        a["buyer_id"].as_str().unwrap().to_owned(),
                        a["status"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_rejected_exclusive_winner_cascades_to_the_runner_up_at_its_own_price(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let server = MockServer::start().await;
    let (a, a_contract) = bidder(&exchange, &server, "/a", rejects(), exclusive(5000)).await;
    let (b, b_contract) = bidder(&exchange, &server, "/b", accepts(), exclusive(4000)).await;
    let (c, _) = bidder(&exchange, &server, "/c", accepts(), exclusive(3000)).await;
    let app = spawn_app(pool.clone()).await;

    let ping = ping(&app, &exchange, json!({ "lead": ping_lead() })).await;
    let winner_bid = ping["bids"][0]["bid_id"].as_str().unwrap().to_owned();
    let (status, replayed, text) = app
        .post_raw("/v1/post", &exchange.posting_key, &post_body(&ping))
        .await;
    assert_eq!((status, replayed), (200, false), "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["status"], "sold", "{answer}");
    assert_eq!(
        cents(&answer["payout"]),
        2800,
        "70 % of the runner-up's 40.00"
    );
    let result = &answer["results"][0];
    assert_eq!(result["bid_id"].as_str(), Some(winner_bid.as_str()));
    assert_eq!(result["status"], "sold");
    assert_eq!(cents(&result["payout"]), 2800);
    assert!(result.get("reason").is_none(), "{result}");
    assert_eq!(
        attempts_of(&answer),
        [
            (a.to_string(), "rejected".to_owned()),
            (b.to_string(), "sold".to_owned())
        ]
    );
    let attempts = result["attempts"].as_array().unwrap();
    assert_eq!(
        (cents(&attempts[0]["price"]), cents(&attempts[0]["payout"])),
        (5000, 0)
    );
    assert_eq!(attempts[0]["reason"], "buyer: no thanks");
    assert_eq!(
        (cents(&attempts[1]["price"]), cents(&attempts[1]["payout"])),
        (4000, 2800)
    );
    assert!(attempts[1].get("reason").is_none());

    // The runner-up received the lead at its own price; the next one never did.
    assert_eq!(
        (
            delivered(&server, "/a").await,
            delivered(&server, "/b").await,
            delivered(&server, "/c").await
        ),
        (1, 1, 0)
    );
    let received = server.received_requests().await.unwrap();
    let to_b = received.iter().find(|r| r.url.path() == "/b").unwrap();
    let to_b: Value = serde_json::from_slice(&to_b.body).unwrap();
    assert_eq!(cents(&to_b["price"]), 4000);
    assert_eq!(to_b["sale_type"], "exclusive");

    // Money: only the runner-up paid, the partner earned its share of that price, every
    // buyer's balance is its ledger's sum, and the rejected winner's hold was given back.
    assert_eq!(exchange.buyer_books(a).await, (100_000, 100_000));
    assert_eq!(exchange.buyer_books(b).await, (96_000, 96_000));
    assert_eq!(exchange.buyer_books(c).await, (100_000, 100_000));
    assert_eq!(partner_earned(&exchange).await, 2800);
    let charged: i64 = sqlx::query_scalar(
        "SELECT -sum(amount_cents)::bigint FROM ledger_entries
         WHERE tenant_id = $1 AND account = 'buyer' AND kind <> 'funds'",
    )
    .bind(exchange.tenant_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        charged, 4000,
        "what buyers paid net is the one sale's price"
    );

    // A retry receives the same bytes.
    let (status, replayed, again) = app
        .post_raw("/v1/post", &exchange.posting_key, &post_body(&ping))
        .await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(again, text);

    // The explain lists both sales in order, and the runner-up's row shows its sale.
    let (status, view) = app
        .ping_view(&exchange.admin_key, ping["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(status, 200, "{view}");
    let sales = view["attempts"].as_array().unwrap();
    assert_eq!(sales.len(), 2, "{view:#}");
    assert_eq!(sales[0]["contract_id"], json!(a_contract));
    assert_eq!(sales[0]["attempt"], 0);
    assert_eq!(sales[0]["replaces_bid_id"], Value::Null);
    assert_eq!(sales[0]["status"], "rejected");
    assert_eq!(sales[0]["buyer_http_status"], 200);
    assert_eq!(sales[1]["contract_id"], json!(b_contract));
    assert_eq!(sales[1]["buyer_id"], json!(b));
    assert_eq!(sales[1]["attempt"], 1);
    assert_eq!(
        sales[1]["replaces_bid_id"].as_str(),
        Some(winner_bid.as_str())
    );
    assert_eq!(sales[1]["status"], "sold");
    assert_eq!(
        (cents(&sales[1]["price"]), cents(&sales[1]["payout"])),
        (4000, 2800)
    );
    assert!(sales[1]["delivery_ms"].is_number());
    let runner_up = outcome_of(&view, b_contract);
    assert_eq!(runner_up["outcome"], "outbid");
    assert_eq!(runner_up["sale"]["status"], "sold");
    assert_eq!(cents(&runner_up["sale"]["price"]), 4000);
    assert_eq!(outcome_of(&view, a_contract)["sale"]["status"], "rejected");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_cascade_stops_at_max_attempts(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    set_cascade(
        &exchange,
        json!({ "max_attempts": 2, "deadline_ms": 10000 }),
    )
    .await;
    let server = MockServer::start().await;
    let (a, _) = bidder(&exchange, &server, "/a", rejects(), exclusive(5000)).await;
    let (b, _) = bidder(&exchange, &server, "/b", rejects(), exclusive(4000)).await;
    let (c, _) = bidder(
        &exchange,
        &server,
        "/c",
        ResponseTemplate::new(500),
        exclusive(3000),
    )
    .await;
    bidder(&exchange, &server, "/d", rejects(), exclusive(2000)).await;
    let app = spawn_app(pool.clone()).await;

    let ping = ping(&app, &exchange, json!({ "lead": ping_lead() })).await;
    let (status, answer) = app.post(&exchange.posting_key, post_body(&ping)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "unsold", "{answer}");
    assert_eq!(cents(&answer["payout"]), 0);
    let result = &answer["results"][0];
    assert_eq!(result["status"], "failed", "the last attempt's status");
    assert_eq!(result["reason"], "buyer answered HTTP 500");
    assert_eq!(
        attempts_of(&answer),
        [
            (a.to_string(), "rejected".to_owned()),
            (b.to_string(), "rejected".to_owned()),
            (c.to_string(), "failed".to_owned())
        ]
    );
    assert_eq!(
        delivered(&server, "/d").await,
        0,
        "a third attempt was not made"
    );
    assert_eq!(partner_earned(&exchange).await, 0);
    for buyer in [a, b, c] {
        assert_eq!(exchange.buyer_books(buyer).await, (100_000, 100_000));
    }
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn no_attempt_starts_after_the_cascade_deadline(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    set_cascade(&exchange, json!({ "max_attempts": 5, "deadline_ms": 300 })).await;
    let server = MockServer::start().await;
    let (a, _) = bidder(&exchange, &server, "/a", rejects(), exclusive(5000)).await;
    let slow = rejects().set_delay(Duration::from_millis(700));
    let (b, _) = bidder(&exchange, &server, "/b", slow, exclusive(4000)).await;
    bidder(&exchange, &server, "/c", accepts(), exclusive(3000)).await;
    let app = spawn_app(pool.clone()).await;

    let ping = ping(&app, &exchange, json!({ "lead": ping_lead() })).await;
    let (status, answer) = app.post(&exchange.posting_key, post_body(&ping)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "unsold", "{answer}");
    assert_eq!(
        attempts_of(&answer),
        [
            (a.to_string(), "rejected".to_owned()),
            (b.to_string(), "rejected".to_owned())
        ],
        "the slow attempt started in time and ran to its end"
    );
    assert_eq!(
        delivered(&server, "/c").await,
        0,
        "none started after 300 ms"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_runner_up_whose_payout_falls_below_the_pings_floor_is_skipped(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let server = MockServer::start().await;
    bidder(&exchange, &server, "/a", rejects(), exclusive(5000)).await;
    bidder(&exchange, &server, "/b", accepts(), exclusive(4000)).await;
    let app = spawn_app(pool.clone()).await;

    // At the ping (70 %), the runner-up's payout is 28.00, above the ping's floor of 20.00.
    let ping = ping(
        &app,
        &exchange,
        json!({ "lead": ping_lead(), "min_payout": 20.00 }),
    )
    .await;
    // Then the campaign pays 45 %: the runner-up's 40.00 would pay 18.00.
    let response = app
        .client
        .patch(app.url(&format!("/v1/admin/campaigns/{}", exchange.campaign_id)))
        .bearer_auth(&exchange.admin_key)
        .json(&json!({ "payout": { "type": "revshare", "percent": 45 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    let (status, answer) = app.post(&exchange.posting_key, post_body(&ping)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "unsold", "{answer}");
    assert_eq!(answer["results"][0]["status"], "rejected");
    assert!(
        answer["results"][0].get("attempts").is_none(),
        "a skip is not an attempt: {answer}"
    );
    assert_eq!(delivered(&server, "/b").await, 0);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn refilled_shared_slots_never_sell_to_one_buyer_twice(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    sqlx::query("UPDATE offers SET max_buyers = 2 WHERE id = $1")
        .bind(exchange.offer_id)
        .execute(&pool)
        .await
        .unwrap();
    let server = MockServer::start().await;
    let shared = |cents: i64| ContractSpec::fixed(None, Some(cents));
    let (a, _) = bidder(&exchange, &server, "/a", rejects(), shared(2000)).await;
    let (b, _) = bidder(&exchange, &server, "/b", rejects(), shared(1900)).await;
    // Buyer x bids twice (its second contract ranks right after its first), buyer y once.
    let (x, _) = bidder(&exchange, &server, "/x1", accepts(), shared(1800)).await;
    let x2 = endpoint(&server, "/x2", accepts()).await;
    exchange
        .contract(
            x,
            ContractSpec {
                delivery: Some(x2),
                ..shared(1700)
            },
        )
        .await;
    let (y, _) = bidder(&exchange, &server, "/y", accepts(), shared(1600)).await;
    let app = spawn_app(pool.clone()).await;

    let ping = ping(&app, &exchange, json!({ "lead": ping_lead() })).await;
    assert_eq!(ping["bids"].as_array().unwrap().len(), 2, "{ping}");
    let (status, answer) = app.post(&exchange.posting_key, post_body(&ping)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "sold", "both slots refilled: {answer}");
    let mut buyers: Vec<String> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let attempts = r["attempts"].as_array().unwrap();
            assert_eq!(attempts.len(), 2, "{r}");
            attempts[1]["buyer_id"].as_str().unwrap().to_owned()
        })
        .collect();
    buyers.sort();
    let mut expected = vec![x.to_string(), y.to_string()];
    expected.sort();
    assert_eq!(buyers, expected);
    assert_eq!(
        (
            delivered(&server, "/x1").await,
            delivered(&server, "/x2").await,
            delivered(&server, "/y").await
        ),
        (1, 0, 1)
    );
    assert_eq!(exchange.buyer_books(x).await, (98_200, 98_200));
    assert_eq!(exchange.buyer_books(y).await, (98_400, 98_400));
    for buyer in [a, b] {
        assert_eq!(exchange.buyer_books(buyer).await, (100_000, 100_000));
    }
    assert_eq!(partner_earned(&exchange).await, 1260 + 1120);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn max_attempts_zero_turns_the_cascade_off(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    set_cascade(
        &exchange,
        json!({ "max_attempts": 0, "deadline_ms": 10000 }),
    )
    .await;
    let server = MockServer::start().await;
    bidder(&exchange, &server, "/a", rejects(), exclusive(5000)).await;
    bidder(&exchange, &server, "/b", accepts(), exclusive(4000)).await;
    let app = spawn_app(pool.clone()).await;

    let ping = ping(&app, &exchange, json!({ "lead": ping_lead() })).await;
    let (status, answer) = app.post(&exchange.posting_key, post_body(&ping)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({
            "lead_id": answer["lead_id"], "ping_id": ping["ping_id"], "status": "unsold",
            "payout": 0.0, "results": [{ "bid_id": ping["bids"][0]["bid_id"], "status": "rejected",
                                          "payout": 0.0, "reason": "buyer: no thanks" }]
        })
    );
    assert_eq!(delivered(&server, "/b").await, 0);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_offers_cascade_is_validated_with_pointers(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let app = spawn_app(pool.clone()).await;
    let url = app.url(&format!("/v1/admin/offers/{}", exchange.offer_id));
    let get = app
        .client
        .get(&url)
        .bearer_auth(&exchange.admin_key)
        .send()
        .await
        .unwrap();
    let offer: Value = get.json().await.unwrap();
    assert_eq!(
        offer["cascade"],
        json!({ "max_attempts": 3, "deadline_ms": 10000 })
    );
    let patch = |body: Value| {
        app.client
            .patch(&url)
            .bearer_auth(&exchange.admin_key)
            .json(&body)
            .send()
    };
    let refused = patch(json!({ "cascade": { "max_attempts": 21, "deadline_ms": 50 } }))
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let problem: Value = refused.json().await.unwrap();
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        ["/cascade/deadline_ms", "/cascade/max_attempts"],
        "{problem}"
    );
    let changed = patch(json!({ "cascade": { "max_attempts": 0 } }))
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let offer: Value = changed.json().await.unwrap();
    assert_eq!(
        offer["cascade"],
        json!({ "max_attempts": 0, "deadline_ms": 10000 })
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_sweep_answers_an_interrupted_cascade_as_the_post_would(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let server = MockServer::start().await;
    bidder(&exchange, &server, "/a", rejects(), exclusive(5000)).await;
    bidder(&exchange, &server, "/b", rejects(), exclusive(4500)).await;
    bidder(&exchange, &server, "/c", accepts(), exclusive(4000)).await;
    let app = spawn_app(pool.clone()).await;
    let ping = ping(&app, &exchange, json!({ "lead": ping_lead() })).await;
    let (status, _, answered) = app
        .post_raw("/v1/post", &exchange.posting_key, &post_body(&ping))
        .await;
    assert_eq!(status, 200, "{answered}");

    // As if the post's process had died before storing its answer: the sweep builds it from
    // the sales, each slot's final status across its attempts.
    sqlx::query(
        "UPDATE leads SET post_response = NULL, created_at = now() - interval '2 minutes'
         WHERE tenant_id = $1",
    )
    .bind(exchange.tenant_id)
    .execute(&pool)
    .await
    .unwrap();
    // The sold attempt returned since (its return approved before the sweep came): the post
    // is answered as it would have been, sold with its payout.
    sqlx::query(
        "UPDATE lead_sales SET status = 'returned' WHERE tenant_id = $1 AND status = 'sold'",
    )
    .bind(exchange.tenant_id)
    .execute(&pool)
    .await
    .unwrap();
    gavel::store::sales::release_interrupted(&pool, chrono::Utc::now())
        .await
        .unwrap();
    let (status, replayed, swept) = app
        .post_raw("/v1/post", &exchange.posting_key, &post_body(&ping))
        .await;
    assert_eq!((status, replayed), (200, true));
    let (first, second): (Value, Value) = (
        serde_json::from_str(&answered).unwrap(),
        serde_json::from_str(&swept).unwrap(),
    );
    assert_eq!(second["status"], "sold", "{swept}");
    assert_eq!(
        second["results"][0]["attempts"].as_array().unwrap().len(),
        3
    );
    assert_eq!(second, first);
    assert_eq!(swept, answered, "byte for byte");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn an_rtb_runner_up_receives_its_own_bid_and_ref(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let server = MockServer::start().await;
    bidder(&exchange, &server, "/a", rejects(), exclusive(5000)).await;
    let rtb = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "exclusive_bid": 41.50, "ref": "runner-ref-7" })),
        )
        .mount(&rtb)
        .await;
    let (b, _) = bidder(
        &exchange,
        &server,
        "/b",
        accepts(),
        ContractSpec::rtb(rtb.uri(), 1000),
    )
    .await;
    let app = spawn_app(pool.clone()).await;

    let ping = ping(&app, &exchange, json!({ "lead": ping_lead() })).await;
    let (status, answer) = app.post(&exchange.posting_key, post_body(&ping)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "sold", "{answer}");
    assert_eq!(cents(&answer["payout"]), 2905, "70 % of 41.50");
    let received = server.received_requests().await.unwrap();
    let to_b = received.iter().find(|r| r.url.path() == "/b").unwrap();
    let to_b: Value = serde_json::from_slice(&to_b.body).unwrap();
    assert_eq!(
        (cents(&to_b["price"]), to_b["rtb_ref"].as_str()),
        (4150, Some("runner-ref-7"))
    );
    assert_eq!(exchange.buyer_books(b).await, (95_850, 95_850));
}
