//! `POST /v1/post` and `POST /v1/leads`: delivery, atomic caps, exact money and safe retries,
//! with buyers' delivery endpoints as real HTTP servers on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures::future::join_all;
use gavel::clock::FixedClock;
use gavel::money::{ExtraDecimals, Money};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, outcome_of, ping_lead};
use crate::harness::{TestApp, spawn_app, spawn_app_with, spawn_app_with_clock, test_settings};

fn cents(value: &Value) -> i64 {
    Money::from_json(value, ExtraDecimals::Reject)
        .unwrap_or_else(|e| panic!("{value}: {e}"))
        .cents()
}

/// A delivery endpoint answering `response` at `route`.
async fn buyer_endpoint(server: &MockServer, route: &str, response: ResponseTemplate) -> Value {
    Mock::given(method("POST"))
        .and(path(route))
        .respond_with(response)
        .mount(server)
        .await;
    json!({ "url": format!("{}{route}", server.uri()), "timeout_ms": 1000,
            "accept": { "path": "/status", "equals": "accepted" }, "reason_path": "/message",
            "headers": { "Authorization": "Bearer buyer-secret" } })
}

fn accepts() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "status": "accepted" }))
}

fn with_delivery(spec: ContractSpec, delivery: Value) -> ContractSpec {
    ContractSpec {
        delivery: Some(delivery),
        ..spec
    }
}

/// Pings and returns the answer, which must have bids.
async fn ping_with_bids(app: &TestApp, key: &str) -> Value {
    let (status, answer) = app.ping(key, json!({ "lead": ping_lead() })).await;
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

/// A pool of its own for the server, larger than a test database's default, for the races.
async fn big_pool(_: PgPoolOptions, connect: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(30)
        .connect_with(connect)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_posted_lead_is_delivered_verbatim_charged_paid_and_recorded(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    sqlx::query(
        "UPDATE offers SET require_consent = '[\"trustedform_cert_url\", \"text\"]' WHERE id = $1",
    )
    .bind(exchange.offer_id)
    .execute(&pool)
    .await
    .unwrap();
    let buyers = MockServer::start().await;
    let delivery = buyer_endpoint(&buyers, "/leads", accepts()).await;
    let spec = ContractSpec {
        caps: Some(json!([{ "period": "day", "max_leads": 5 }])),
        dedup_days: 30,
        ..ContractSpec::fixed(Some(4000), Some(1250))
    };
    let (buyer, contract) = exchange
        .buyer_with(100_000, with_delivery(spec, delivery))
        .await;
    let app = spawn_app(pool.clone()).await;

    let ping = ping_with_bids(&app, &exchange.posting_key).await;
    let (status, answer) = app.post(&exchange.posting_key, post_body(&ping)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "sold");
    assert_eq!(cents(&answer["payout"]), 2800);
    assert_eq!(answer["results"][0]["status"], "sold");
    assert_eq!(answer["results"][0]["bid_id"], ping["bids"][0]["bid_id"]);
    let lead_id = answer["lead_id"].as_str().unwrap().to_owned();

    // The buyer received the lead and the consent verbatim.
    let received = buyers.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].headers["authorization"], "Bearer buyer-secret");
    let delivered: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(delivered["lead"], full_lead());
    assert_eq!(delivered["consent"], consent());
    assert_eq!(
        (delivered["lead_id"].as_str(), &delivered["ping_id"]),
        (Some(lead_id.as_str()), &ping["ping_id"])
    );
    assert_eq!(
        (delivered["sale_type"].as_str(), cents(&delivered["price"])),
        (Some("exclusive"), 4000)
    );
    assert_eq!(
        (delivered["test"].as_bool(), delivered["offer"].as_str()),
        (Some(false), Some("auto-insurance"))
    );

    // Money: the buyer paid the price, the partner earned its share, the books balance.
    assert_eq!(exchange.buyer_books(buyer).await, (96_000, 96_000));
    let partner_earned: i64 = sqlx::query_scalar(
        "SELECT sum(amount_cents)::bigint FROM ledger_entries WHERE tenant_id = $1 AND partner_id = $2 AND kind = 'sale'",
    )
    .bind(exchange.tenant_id)
    .bind(exchange.partner_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(partner_earned, 2800);

    // Records: the lead once (its PII and consent sealed, docs/pii.md), its sale, the cap
    // used, the consumer's dedup keys, the post.
    let (stored_lead, stored_consent, key_id, sealed): (Value, Value, String, Vec<u8>) =
        sqlx::query_as(
            "SELECT lead, consent, pii_key_id, pii_sealed FROM leads
             WHERE tenant_id = $1 AND id = $2::uuid",
        )
        .bind(exchange.tenant_id)
        .bind(&lead_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((stored_lead, stored_consent), (ping_lead(), json!({})));
    let (opened_lead, opened_consent) = crate::harness::test_pii_keys()
        .open_lead(
            exchange.tenant_id,
            lead_id.parse().unwrap(),
            &key_id,
            &sealed,
        )
        .unwrap();
    assert_eq!(
        (Value::Object(opened_lead), Value::Object(opened_consent)),
        (full_lead(), consent())
    );
    let used: i32 = sqlx::query_scalar("SELECT leads FROM cap_counters WHERE contract_id = $1")
        .bind(contract)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(used, 1);
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM dedup_keys WHERE buyer_id = $1 ORDER BY kind")
            .bind(buyer)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(keys, ["email", "phone"]);
    let (_, view) = app
        .ping_view(&exchange.admin_key, ping["ping_id"].as_str().unwrap())
        .await;
    let sale = &outcome_of(&view, contract)["sale"];
    assert_eq!(
        (
            sale["status"].as_str(),
            cents(&sale["price"]),
            cents(&sale["payout"])
        ),
        (Some("sold"), 4000, 2800)
    );
    let post_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM posting_log WHERE kind = 'post' AND result = 'sold' AND ping_id = $1::uuid")
        .bind(ping["ping_id"].as_str().unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(post_rows, 1);

    // The same consumer again: the buyer's dedup now declines at the ping.
    let (_, again) = app.ping(&exchange.posting_key, json!({ "lead": ping_lead(), "dedup": {
        "email_sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"ada@example.com")) } })).await;
    assert_eq!(again["status"], "no_bids");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn rejected_timed_out_and_failed_deliveries_release_caps_and_money_in_full(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    let buyers = MockServer::start().await;
    let capped = |shared: i64| ContractSpec {
        caps: Some(
            json!([{ "period": "day", "max_leads": 10 }, { "period": "month", "max_spend_cents": 100000 }]),
        ),
        ..ContractSpec::fixed(None, Some(shared))
    };
    let reject = buyer_endpoint(
        &buyers,
        "/reject",
        ResponseTemplate::new(200)
            .set_body_json(json!({ "status": "rejected", "message": "out of area" })),
    )
    .await;
    let mut slow = buyer_endpoint(
        &buyers,
        "/slow",
        accepts().set_delay(Duration::from_secs(3)),
    )
    .await;
    slow["timeout_ms"] = json!(200);
    let broken = buyer_endpoint(&buyers, "/broken", ResponseTemplate::new(500)).await;
    let (rejecting, _) = exchange
        .buyer_with(50_000, with_delivery(capped(1500), reject))
        .await;
    let (timing_out, _) = exchange
        .buyer_with(50_000, with_delivery(capped(1400), slow))
        .await;
    let (failing, _) = exchange
        .buyer_with(50_000, with_delivery(capped(1300), broken))
        .await;
    let app = spawn_app(pool.clone()).await;

    let ping = ping_with_bids(&app, &exchange.posting_key).await;
    let (status, answer) = app.post(&exchange.posting_key, post_body(&ping)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["status"].as_str(), cents(&answer["payout"])),
        (Some("unsold"), 0)
    );
    let results: Vec<(&str, &str)> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap(),
                r["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(results[0], ("rejected", "buyer: out of area"));
    assert_eq!(results[1].0, "failed");
    assert!(results[1].1.contains("200 ms"), "{results:?}");
    assert_eq!(results[2], ("failed", "buyer answered HTTP 500"));

    for buyer in [rejecting, timing_out, failing] {
        assert_eq!(
            exchange.buyer_books(buyer).await,
            (50_000, 50_000),
            "balance and ledger as before"
        );
    }
    let counters: i64 = sqlx::query_scalar("SELECT count(*) FROM cap_counters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        counters, 0,
        "a released reservation leaves no trace in the caps"
    );
    let kinds: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, count(*) FROM ledger_entries WHERE tenant_id = $1 AND kind <> 'funds' GROUP BY kind ORDER BY kind",
    )
    .bind(exchange.tenant_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        kinds,
        [("release".to_owned(), 3), ("sale".to_owned(), 3)],
        "each hold given back"
    );
}

/// `count` pings that all win on the offer's one contract.
async fn winning_pings(app: &TestApp, key: &str, count: usize) -> Vec<Value> {
    let mut pings = Vec::new();
    for _ in 0..count {
        pings.push(ping_with_bids(app, key).await);
    }
    pings
}

/// Posts every ping at once; returns each post's per-bid status.
async fn post_all_at_once(app: &TestApp, key: &str, pings: &[Value]) -> Vec<String> {
    let posts = pings.iter().enumerate().map(|(n, ping)| {
        let mut body = post_body(ping);
        body["lead"]["email"] = json!(format!("consumer{n}@example.com"));
        async move { app.post(key, body).await }
    });
    join_all(posts)
        .await
        .into_iter()
        .map(|(status, answer)| {
            assert_eq!(status, 200, "{answer}");
            answer["results"][0]["status"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn count(statuses: &[String], status: &str) -> usize {
    statuses.iter().filter(|s| *s == status).count()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn sixty_concurrent_posts_never_oversell_a_daily_lead_cap(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = big_pool(options, connect).await;
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyers = MockServer::start().await;
    let delivery = buyer_endpoint(&buyers, "/leads", accepts()).await;
    let spec = ContractSpec {
        caps: Some(json!([{ "period": "day", "max_leads": 20 }])),
        ..ContractSpec::fixed(Some(1000), None)
    };
    let (buyer, contract) = exchange
        .buyer_with(1_000_000, with_delivery(spec, delivery))
        .await;
    let app = spawn_app(pool.clone()).await;

    let pings = winning_pings(&app, &exchange.posting_key, 60).await;
    let statuses = post_all_at_once(&app, &exchange.posting_key, &pings).await;
    assert_eq!(
        (count(&statuses, "sold"), count(&statuses, "capped")),
        (20, 40),
        "{statuses:?}"
    );

    let used: i32 = sqlx::query_scalar("SELECT leads FROM cap_counters WHERE contract_id = $1")
        .bind(contract)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(used, 20);
    assert_eq!(
        buyers.received_requests().await.unwrap().len(),
        20,
        "only sold leads were delivered"
    );
    assert_eq!(exchange.buyer_books(buyer).await, (980_000, 980_000));
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn sixty_concurrent_posts_never_overspend_a_spend_cap(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = big_pool(options, connect).await;
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyers = MockServer::start().await;
    let delivery = buyer_endpoint(&buyers, "/leads", accepts()).await;
    // 20 sales of 12.50 fit in 250.00. The daily cap is far off, but each refused sale takes
    // its day's counter before the month's refuses it, and must give it back.
    let spec = ContractSpec {
        caps: Some(
            json!([{ "period": "day", "max_leads": 1000 }, { "period": "month", "max_spend_cents": 25000 }]),
        ),
        ..ContractSpec::fixed(Some(1250), None)
    };
    let (_, contract) = exchange
        .buyer_with(1_000_000, with_delivery(spec, delivery))
        .await;
    let app = spawn_app(pool.clone()).await;

    let pings = winning_pings(&app, &exchange.posting_key, 60).await;
    let statuses = post_all_at_once(&app, &exchange.posting_key, &pings).await;
    assert_eq!(
        (count(&statuses, "sold"), count(&statuses, "capped")),
        (20, 40),
        "{statuses:?}"
    );
    let counters: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT period, leads, spend_cents FROM cap_counters WHERE contract_id = $1 ORDER BY period",
    )
    .bind(contract)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        counters,
        vec![
            ("day".to_owned(), 20, 25_000),
            ("month".to_owned(), 20, 25_000)
        ],
        "the refused sales gave their day's counter back"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn thirty_concurrent_posts_never_overdraw_a_buyer(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = big_pool(options, connect).await;
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyers = MockServer::start().await;
    let delivery = buyer_endpoint(&buyers, "/leads", accepts()).await;
    // Funded for exactly 10 sales of 10.00, with 5.00 of credit: the 11th does not fit. The
    // refused sales take the daily cap's counter before the balance refuses them: they must
    // give it back.
    let spec = ContractSpec {
        caps: Some(json!([{ "period": "day", "max_leads": 1000 }])),
        ..ContractSpec::fixed(Some(1000), None)
    };
    let (buyer, contract) = exchange
        .buyer_with(10_000, with_delivery(spec, delivery))
        .await;
    sqlx::query("UPDATE buyers SET credit_limit_cents = 500 WHERE id = $1")
        .bind(buyer)
        .execute(&pool)
        .await
        .unwrap();
    let app = spawn_app(pool.clone()).await;

    let pings = winning_pings(&app, &exchange.posting_key, 30).await;
    let statuses = post_all_at_once(&app, &exchange.posting_key, &pings).await;
    assert_eq!(
        (
            count(&statuses, "sold"),
            count(&statuses, "insufficient_funds")
        ),
        (10, 20),
        "{statuses:?}"
    );
    let (ledger, balance) = exchange.buyer_books(buyer).await;
    assert_eq!(
        (ledger, balance),
        (0, 0),
        "never below minus the credit limit, and the books balance"
    );
    let used: i32 = sqlx::query_scalar("SELECT leads FROM cap_counters WHERE contract_id = $1")
        .bind(contract)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(used, 10, "the refused sales gave their cap counter back");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn identical_posts_racing_deliver_once_and_all_get_the_same_answer(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let buyers = MockServer::start().await;
    // A buyer that takes a moment, so that the retries arrive while the first post settles.
    let delivery = buyer_endpoint(
        &buyers,
        "/leads",
        accepts().set_delay(Duration::from_millis(300)),
    )
    .await;
    exchange
        .buyer_with(
            100_000,
            with_delivery(ContractSpec::fixed(Some(4000), None), delivery),
        )
        .await;
    let app = spawn_app(pool.clone()).await;

    let ping = ping_with_bids(&app, &exchange.posting_key).await;
    let body = post_body(&ping);
    let posts = (0..10).map(|_| app.post_raw("/v1/post", &exchange.posting_key, &body));
    let answers = join_all(posts).await;
    assert!(
        answers.iter().all(|(status, _, _)| *status == 200),
        "{answers:?}"
    );
    let first = &answers[0].2;
    assert!(
        answers.iter().all(|(_, _, text)| text == first),
        "every answer is the same"
    );
    assert_eq!(
        answers.iter().filter(|(_, replayed, _)| !replayed).count(),
        1,
        "one post did the work"
    );
    assert_eq!(
        buyers.received_requests().await.unwrap().len(),
        1,
        "one delivery"
    );
    assert!(
        first.contains("\"payout\":28.00"),
        "amounts keep two decimals: {first}"
    );

    // Later: the same body is replayed; another body is refused.
    let (status, replayed, text) = app.post_raw("/v1/post", &exchange.posting_key, &body).await;
    assert_eq!((status, replayed, &text), (200, true, first));
    let mut other = body.clone();
    other["lead"]["first_name"] = json!("Grace");
    let (status, answer) = app.post(&exchange.posting_key, other).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("already_posted"))
    );
    let sales: i64 = sqlx::query_scalar("SELECT count(*) FROM lead_sales")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sales, 1);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn posts_that_cannot_be_taken_are_refused_with_their_reason(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    sqlx::query("UPDATE offers SET require_consent = '[\"trustedform_cert_url\"]', ping_ttl_seconds = 60 WHERE id = $1")
        .bind(exchange.offer_id)
        .execute(&pool)
        .await
        .unwrap();
    let buyers = MockServer::start().await;
    let delivery = buyer_endpoint(&buyers, "/leads", accepts()).await;
    for price in [1500, 1400, 1300] {
        exchange
            .buyer_with(
                100_000,
                with_delivery(ContractSpec::fixed(None, Some(price)), delivery.clone()),
            )
            .await;
    }
    let start = Utc.with_ymd_and_hms(2026, 11, 25, 15, 0, 0).unwrap();
    let clock = Arc::new(FixedClock::new(start));
    let app = spawn_app_with_clock(
        pool.clone(),
        test_settings(),
        axum::Router::new(),
        clock.clone(),
    )
    .await;
    let key = exchange.posting_key.clone();
    let ping = ping_with_bids(&app, &key).await;

    let mut swapped = post_body(&ping);
    swapped["lead"]["state"] = json!("OK");
    let (status, problem) = app.post(&key, swapped).await;
    assert_eq!(
        (
            status,
            problem["code"].as_str(),
            problem["errors"][0]["pointer"].as_str()
        ),
        (422, Some("ping_post_mismatch"), Some("/lead/state"))
    );

    let mut dropped = post_body(&ping);
    dropped["lead"].as_object_mut().unwrap().remove("age");
    assert_eq!(
        app.post(&key, dropped).await.1["code"],
        "ping_post_mismatch",
        "a pinged field left out"
    );

    let mut no_consent = post_body(&ping);
    no_consent["consent"]
        .as_object_mut()
        .unwrap()
        .remove("trustedform_cert_url");
    let (status, problem) = app.post(&key, no_consent).await;
    assert_eq!(
        (status, problem["errors"][0]["pointer"].as_str()),
        (422, Some("/consent/trustedform_cert_url"))
    );
    assert_eq!(problem["code"], "consent_required");

    let mut bad_consent = post_body(&ping);
    bad_consent["consent"]["ip"] = json!("not-an-ip");
    let (status, problem) = app.post(&key, bad_consent).await;
    assert_eq!(
        (status, problem["errors"][0]["pointer"].as_str()),
        (422, Some("/consent/ip"))
    );

    let mut no_email = post_body(&ping);
    no_email["lead"].as_object_mut().unwrap().remove("email");
    let (status, problem) = app.post(&key, no_email).await;
    assert_eq!(
        (status, problem["errors"][0]["pointer"].as_str()),
        (422, Some("/lead/email"))
    );

    let mut unknown_bid = post_body(&ping);
    unknown_bid["bid_ids"] = json!([ping["bids"][0]["bid_id"], Uuid::now_v7()]);
    let (status, problem) = app.post(&key, unknown_bid).await;
    assert_eq!(
        (status, problem["errors"][0]["pointer"].as_str()),
        (422, Some("/bid_ids/1"))
    );

    // Another campaign's key cannot post this ping, even in the same tenant.
    let other_key = gavel::keys::generate("pk_");
    sqlx::query(
        "INSERT INTO campaigns (tenant_id, id, partner_id, offer_id, posting_key_hash, payout_type, payout_percent)
         VALUES ($1, gen_random_uuid(), $2, $3, $4, 'revshare', 50)",
    )
    .bind(exchange.tenant_id)
    .bind(exchange.partner_id)
    .bind(exchange.offer_id)
    .bind(&gavel::keys::hash(&other_key)[..])
    .execute(&pool)
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, problem) = app.post(&other_key, post_body(&ping)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("ping_not_found"))
    );

    // Nothing of the refused posts was written.
    let written: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM leads) + (SELECT count(*) FROM lead_sales)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(written, 0);
    assert!(buyers.received_requests().await.unwrap().is_empty());

    // After expires_at: 410.
    clock.set(start + chrono::Duration::seconds(61));
    let (status, problem) = app.post(&key, post_body(&ping)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (410, Some("ping_expired"))
    );

    // A subset of the bids: the others end not_accepted and are not delivered.
    clock.set(start + chrono::Duration::seconds(62));
    let ping = ping_with_bids(&app, &key).await;
    let mut subset = post_body(&ping);
    subset["bid_ids"] = json!([ping["bids"][0]["bid_id"], ping["bids"][2]["bid_id"]]);
    let (status, answer) = app.post(&key, subset).await;
    assert_eq!(status, 200, "{answer}");
    let statuses: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["sold", "not_accepted", "sold"]);
    assert_eq!(answer["status"], "sold", "every accepted bid sold");
    assert_eq!(buyers.received_requests().await.unwrap().len(), 2);

    // A ping without bids cannot be posted.
    sqlx::query("UPDATE contracts SET status = 'paused' WHERE tenant_id = $1")
        .bind(exchange.tenant_id)
        .execute(&pool)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, empty) = app.ping(&key, json!({ "lead": ping_lead() })).await;
    assert_eq!(empty["status"], "no_bids");
    let (status, problem) = app.post(&key, post_body(&empty)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("ping_not_postable"))
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_direct_post_pings_and_sells_in_one_call(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let buyers = MockServer::start().await;
    let delivery = buyer_endpoint(&buyers, "/leads", accepts()).await;
    let (buyer, _) = exchange
        .buyer_with(
            100_000,
            with_delivery(ContractSpec::fixed(Some(4000), None), delivery),
        )
        .await;
    let app = spawn_app(pool.clone()).await;

    let body = json!({ "lead": full_lead(), "consent": consent() });
    let (status, _, text) = app
        .post_raw("/v1/leads", &exchange.posting_key, &body)
        .await;
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["status"].as_str(), answer["sale_type"].as_str()),
        (Some("sold"), Some("exclusive"))
    );
    assert_eq!(cents(&answer["payout"]), 2800);
    assert_eq!(exchange.buyer_books(buyer).await, (96_000, 96_000));
    let delivered: Value =
        serde_json::from_slice(&buyers.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(delivered["lead"], full_lead());

    // The auction's ping holds no PII.
    let pinged: Value =
        sqlx::query_scalar("SELECT lead FROM posting_log WHERE kind = 'ping' AND id = $1::uuid")
            .bind(answer["ping_id"].as_str().unwrap())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(pinged, ping_lead());

    // With nobody to buy: no_bids, and no lead stored.
    sqlx::query("UPDATE buyers SET status = 'paused' WHERE id = $1")
        .bind(buyer)
        .execute(&pool)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _, text) = app
        .post_raw("/v1/leads", &exchange.posting_key, &body)
        .await;
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((status, answer["status"].as_str()), (200, Some("no_bids")));
    let leads: i64 = sqlx::query_scalar("SELECT count(*) FROM leads")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(leads, 1);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_test_ping_delivers_as_test_and_moves_no_money(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let buyers = MockServer::start().await;
    let delivery = buyer_endpoint(&buyers, "/leads", accepts()).await;
    let spec = ContractSpec {
        caps: Some(json!([{ "period": "day", "max_leads": 1 }])),
        dedup_days: 30,
        ..ContractSpec::fixed(Some(4000), None)
    };
    let (buyer, _) = exchange
        .buyer_with(100_000, with_delivery(spec, delivery))
        .await;
    let app = spawn_app(pool.clone()).await;

    for _ in 0..2 {
        let (_, ping) = app
            .ping(
                &exchange.posting_key,
                json!({ "lead": ping_lead(), "test": true }),
            )
            .await;
        let (status, answer) = app.post(&exchange.posting_key, post_body(&ping)).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("sold")),
            "a test sale uses no cap: {answer}"
        );
    }
    let delivered: Value =
        serde_json::from_slice(&buyers.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(delivered["test"], true);
    assert_eq!(exchange.buyer_books(buyer).await, (100_000, 100_000));
    let traces: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM ledger_entries WHERE kind <> 'funds') + (SELECT count(*) FROM cap_counters)
              + (SELECT count(*) FROM dedup_keys)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(traces, 0, "no ledger entry, cap use or dedup entry");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_daily_cap_rolls_at_midnight_in_the_tenants_timezone_not_utc(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyers = MockServer::start().await;
    let delivery = buyer_endpoint(&buyers, "/leads", accepts()).await;
    let spec = ContractSpec {
        caps: Some(json!([{ "period": "day", "max_leads": 1 }])),
        ..ContractSpec::fixed(Some(1000), None)
    };
    exchange
        .buyer_with(100_000, with_delivery(spec, delivery))
        .await;
    // 18:59 in New York is 23:59 UTC.
    let clock = Arc::new(FixedClock::new(
        Utc.with_ymd_and_hms(2026, 11, 25, 23, 59, 0).unwrap(),
    ));
    let app = spawn_app_with_clock(
        pool.clone(),
        test_settings(),
        axum::Router::new(),
        clock.clone(),
    )
    .await;
    let key = exchange.posting_key.clone();

    let ping = ping_with_bids(&app, &key).await;
    assert_eq!(app.post(&key, post_body(&ping)).await.1["status"], "sold");

    // UTC's midnight has passed (19:01 in New York): still the same day for the tenant.
    clock.set(Utc.with_ymd_and_hms(2026, 11, 26, 0, 1, 0).unwrap());
    let (_, answer) = app.ping(&key, json!({ "lead": ping_lead() })).await;
    assert_eq!(answer["status"], "no_bids");
    let (_, view) = app
        .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(view["contracts"][0]["reason"], "cap_reached");

    // 00:00:30 in New York: a new day.
    clock.set(Utc.with_ymd_and_hms(2026, 11, 26, 5, 0, 30).unwrap());
    let ping = ping_with_bids(&app, &key).await;
    let mut body = post_body(&ping);
    body["lead"]["email"] = json!("someone.else@example.com");
    assert_eq!(app.post(&key, body).await.1["status"], "sold");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_sale_left_pending_by_a_crash_is_released_at_start_up(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let spec = ContractSpec {
        caps: Some(json!([{ "period": "day", "max_leads": 5 }])),
        ..ContractSpec::fixed(Some(1000), None)
    };
    let (buyer, contract) = exchange.buyer_with(100_000, spec).await;
    let crashed = spawn_app(pool.clone()).await;
    let ping = ping_with_bids(&crashed, &exchange.posting_key).await;
    crashed.shut_down().await.unwrap();

    // What a server that died during the delivery leaves behind: a claimed ping, its lead, a
    // reservation of caps and funds, and no answer.
    let source = gavel::store::sales::PostSource {
        tenant_id: exchange.tenant_id,
        campaign_id: exchange.campaign_id,
        partner_id: exchange.partner_id,
        offer_id: exchange.offer_id,
    };
    let ping_id: Uuid = ping["ping_id"].as_str().unwrap().parse().unwrap();
    let long_ago = Utc::now() - chrono::Duration::minutes(10);
    let lead_id = Uuid::now_v7();
    let lead = full_lead().as_object().unwrap().clone();
    let stored = crate::harness::test_pii_keys().seal_lead(
        exchange.tenant_id,
        lead_id,
        serde_json::Map::new(),
        &lead,
        &serde_json::Map::new(),
    );
    let claims = gavel::store::group::Group::start(pool.clone());
    gavel::store::posts::claim(
        &claims,
        &pool,
        &source,
        ping_id,
        &[7; 32],
        lead_id,
        stored,
        &[],
        &[],
        false,
        long_ago,
    )
    .await
    .unwrap();
    let (_, bids) =
        gavel::store::sales::find_ping(&pool, exchange.tenant_id, exchange.campaign_id, ping_id)
            .await
            .unwrap()
            .found()
            .unwrap();
    let sale_id = Uuid::now_v7();
    let sale = gavel::store::sales::NewSale {
        source: &source,
        sale_id,
        lead_id,
        ping_id,
        bid: &bids[0],
        test: false,
        now: long_ago,
        // Its deadline passed minutes ago.
        pending_for: -chrono::Duration::minutes(5),
        dedup_days: 0,
        consumer_hashes: &[],
    };
    let caps = gavel::auction::CompiledCaps::compile(&json!([{ "period": "day", "max_leads": 5 }]))
        .unwrap();
    let no_buyer_caps = gavel::auction::CompiledCaps::default();
    let reservation = gavel::store::sales::Reservation::of(
        &sale,
        &caps,
        &no_buyer_caps,
        chrono_tz::America::New_York,
    );
    let mut connection = pool.acquire().await.unwrap();
    let outcomes = gavel::store::sales::reserve(&mut connection, &[reservation])
        .await
        .unwrap();
    assert_eq!(outcomes, [Ok(())]);
    drop(connection);
    assert_eq!(exchange.buyer_books(buyer).await, (99_000, 99_000));

    let app = spawn_app(pool.clone()).await;
    let (status, reason): (String, Option<String>) =
        sqlx::query_as("SELECT status, reason FROM lead_sales WHERE id = $1")
            .bind(sale_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), reason.as_deref()),
        ("failed", Some("interrupted"))
    );
    assert_eq!(
        exchange.buyer_books(buyer).await,
        (100_000, 100_000),
        "the money is back"
    );
    let counters: i64 =
        sqlx::query_scalar("SELECT count(*) FROM cap_counters WHERE contract_id = $1")
            .bind(contract)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(counters, 0, "the cap unit is back");

    // The operator sees it, and a retry of the post gets an answer.
    let listed: Value = app
        .client
        .get(app.url("/v1/admin/sales?status=failed"))
        .bearer_auth(&exchange.admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["id"], sale_id.to_string());
    assert_eq!(listed["items"][0]["reason"], "interrupted");
    let answer: Option<Value> =
        sqlx::query_scalar("SELECT post_response FROM leads WHERE ping_id = $1")
            .bind(ping_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(answer.unwrap()["results"][0]["status"], "failed");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_demos_printed_commands_sell_a_lead(pool: PgPool) {
    let app = spawn_app_with(
        pool.clone(),
        test_settings(),
        gavel_cli::demo::buyer_endpoints(),
    )
    .await;
    let seeded = gavel_cli::demo::seed(&pool, app.address).await.unwrap();
    // The config listener picks the seed up within a second.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let printed = gavel_cli::demo::instructions(&seeded);
    let script = shell_commands(&printed);
    let output = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .await
        .unwrap();
    let stdout = crate::harness::successful_stdout(&output);
    // The ping, the post, the ping's auction, the return's approval, the partner's statement
    // and the test delivery each print one JSON line.
    let printed: Vec<Value> = stdout
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("{stdout}")))
        .collect();
    assert_eq!(printed.len(), 6, "{stdout}");
    let answer = &printed[1];
    assert_eq!(answer["status"], "sold", "{answer}");
    // Granite (XML bids, XML delivery) outbids the others for a good-credit lead, and takes it.
    let auction = &printed[2];
    let granite = gavel_cli::demo::demo_id("contract/granite").to_string();
    let outcome = auction["contracts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["contract_id"] == granite.as_str())
        .unwrap_or_else(|| panic!("{auction}"));
    assert_eq!(outcome["outcome"], "won", "{auction}");
    assert_eq!(outcome["sale"]["status"], "sold", "{auction}");
    assert!(
        outcome["sale"]["buyer_response"]
            .as_str()
            .is_some_and(|r| r.contains("<status>accepted</status>")),
        "{auction}"
    );
    // The newest sale returned and approved: the buyer refunded its price, the partner's
    // payout taken back, both on the partner's statement.
    let approved = &printed[3];
    assert_eq!(approved["status"], "approved", "{approved}");
    assert_eq!(approved["price"], outcome["sale"]["price"], "{approved}");
    assert_eq!(approved["payout_reversed"], answer["payout"], "{approved}");
    let statement = &printed[4];
    assert_eq!(statement["totals"]["sale"], answer["payout"], "{statement}");
    assert_eq!(statement["totals"]["return"], json!(-29.40), "{statement}");
    assert_eq!(statement["closing_balance"], json!(0.0), "{statement}");
    // Hollis's test delivery: a form post, read as accepted from its line of text.
    let trial = &printed[5];
    assert_eq!(trial["sent"], true, "{trial}");
    let body = trial["request"]["body"].as_str().unwrap();
    assert!(
        body.contains("phone10=2145550123") && body.contains("credit_grade=B"),
        "{trial}"
    );
    // The campaign named in the command names its partner in the template's context.
    assert!(body.contains("src=gavel-Quote+Funnel+Media"), "{trial}");
    assert!(
        trial["answer"]["body"].as_str().unwrap().starts_with("OK "),
        "{trial}"
    );
    assert_eq!(trial["reading"]["outcome"], "accepted", "{trial}");

    let charged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_entries WHERE tenant_id = $1 AND account = 'buyer' AND kind = 'sale'",
    )
    .bind(seeded.tenant_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(charged >= 1, "the ledger shows the sale");
}

/// The shell commands of the demo's instructions: the lines from `PING…=` and `curl` on,
/// with their continuation lines, exactly as printed.
fn shell_commands(printed: &str) -> String {
    let mut script = Vec::new();
    let mut in_command = false;
    for line in printed.lines() {
        // A command, or a shell variable set from one (`PING=$(curl …`, `SALE_ID=$(…`).
        let assignment = line.split_once("=$(").is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        });
        if assignment || line.starts_with("curl ") {
            in_command = true;
        } else if line.trim().is_empty() {
            in_command = false;
        }
        if in_command {
            script.push(line);
        }
    }
    script.join("\n")
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn one_consumer_posted_twice_at_once_is_sold_once_to_a_deduping_buyer(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = big_pool(options, connect).await;
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyers = MockServer::start().await;
    // Slow enough that both posts reserve while the other is still delivering.
    let delivery = buyer_endpoint(
        &buyers,
        "/leads",
        accepts().set_delay(Duration::from_millis(300)),
    )
    .await;
    let spec = ContractSpec {
        dedup_days: 30,
        ..ContractSpec::fixed(Some(1000), None)
    };
    exchange
        .buyer_with(100_000, with_delivery(spec, delivery))
        .await;
    let app = spawn_app(pool.clone()).await;

    let pings = winning_pings(&app, &exchange.posting_key, 2).await;
    let posts = pings
        .iter()
        .map(|ping| app.post(&exchange.posting_key, post_body(ping)));
    let statuses: Vec<String> = join_all(posts)
        .await
        .into_iter()
        .map(|(_, answer)| answer["results"][0]["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        (count(&statuses, "sold"), count(&statuses, "duplicate")),
        (1, 1),
        "{statuses:?}"
    );
    assert_eq!(buyers.received_requests().await.unwrap().len(), 1);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_buyer_answer_with_nul_characters_is_stored_without_them(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyers = MockServer::start().await;
    let delivery = buyer_endpoint(
        &buyers,
        "/leads",
        ResponseTemplate::new(200).set_body_json(json!({ "status": "no", "message": "bad\0zip" })),
    )
    .await;
    let rtb = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "exclusive_bid": 20, "ref": "r\0ef" })),
        )
        .mount(&rtb)
        .await;
    let spec = ContractSpec {
        delivery: Some(delivery),
        ..ContractSpec::rtb(rtb.uri(), 500)
    };
    let (buyer, _) = exchange.buyer_with(100_000, spec).await;
    let app = spawn_app(pool.clone()).await;

    let ping = ping_with_bids(&app, &exchange.posting_key).await;
    let (status, answer) = app.post(&exchange.posting_key, post_body(&ping)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["status"], "rejected");
    assert_eq!(answer["results"][0]["reason"], "buyer: badzip");
    assert_eq!(exchange.buyer_books(buyer).await, (100_000, 100_000));

    // A partner's NUL is refused up front, with its pointer.
    let mut body = post_body(&ping);
    body["lead"]["first_name"] = json!("A\0da");
    let (status, problem) = app.post(&exchange.posting_key, body).await;
    assert_eq!(
        (status, problem["errors"][0]["pointer"].as_str()),
        (422, Some("/lead/first_name"))
    );
}

/// Equal bids go round-robin: each sale moves its contract to the back of the line, so the
/// contract that has gone longest without a sale wins the next tie.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn equal_bids_take_turns_as_each_sale_completes(pool: PgPool) {
    let server = MockServer::start().await;
    let exchange = Exchange::create(&pool, "exclusive").await;
    let mut contracts = Vec::new();
    for route in ["/a", "/b"] {
        let delivery = buyer_endpoint(&server, route, accepts()).await;
        let (_, contract) = exchange
            .buyer_with(
                100_000,
                with_delivery(ContractSpec::fixed(Some(4000), None), delivery),
            )
            .await;
        contracts.push(contract);
    }
    let app = spawn_app(pool.clone()).await;

    let mut winners = Vec::new();
    for _ in 0..4 {
        let ping = ping_with_bids(&app, &exchange.posting_key).await;
        let winner: Uuid = sqlx::query_scalar(
            "SELECT contract_id FROM lead_distribution
             WHERE tenant_id = $1 AND ping_id = $2::uuid AND outcome = 'won'",
        )
        .bind(exchange.tenant_id)
        .bind(ping["ping_id"].as_str().unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
        winners.push(winner);
        let (status, answer) = app.post(&exchange.posting_key, post_body(&ping)).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("sold")),
            "{answer}"
        );
    }
    let first = winners[0];
    let second = if first == contracts[0] {
        contracts[1]
    } else {
        contracts[0]
    };
    assert_eq!(winners, vec![first, second, first, second]);
}
