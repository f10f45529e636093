//! `POST /v1/ping`: the auction end to end, through HTTP and a real PostgreSQL, with buyers'
//! bidding endpoints as real HTTP servers on 127.0.0.1.

use std::time::{Duration, Instant};

use gavel::money::{ExtraDecimals, Money};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, outcome_of, ping_lead};
use crate::harness::spawn_app;

fn cents(value: &Value) -> i64 {
    Money::from_json(value, ExtraDecimals::Reject)
        .unwrap_or_else(|e| panic!("{value}: {e}"))
        .cents()
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_fixed_price_auction_answers_bids_and_records_every_contract(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let (_, exclusive) = exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), Some(1250)))
        .await;
    let (_, shared_a) = exchange
        .buyer_with(100_000, ContractSpec::fixed(None, Some(1050)))
        .await;
    let (_, shared_b) = exchange
        .buyer_with(100_000, ContractSpec::fixed(None, Some(910)))
        .await;
    let app = spawn_app(pool.clone()).await;

    let before = chrono::Utc::now();
    let (status, answer) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(status, 200, "{answer}");
    // Hybrid: the best exclusive bid (40.00) reaches the 25.00 floor, so it sells exclusive,
    // and the partner earns 70 % of it.
    assert_eq!(answer["status"], "bids");
    assert_eq!(answer["sale_type"], "exclusive");
    assert_eq!(cents(&answer["payout"]), 2800);
    let bids = answer["bids"].as_array().unwrap();
    assert_eq!(bids.len(), 1);
    assert_eq!(cents(&bids[0]["payout"]), 2800);
    assert!(bids[0]["bid_id"].as_str().unwrap().parse::<Uuid>().is_ok());
    assert_eq!(
        answer["post_url"],
        app.url("/v1/post"),
        "from the bound address when no public_url is set"
    );
    let expires: chrono::DateTime<chrono::Utc> =
        answer["expires_at"].as_str().unwrap().parse().unwrap();
    assert!((expires - before).num_seconds() >= 299 && (expires - before).num_seconds() <= 301);
    assert!(answer["took_ms"].as_u64().is_some());
    assert!(
        answer.get("price").is_none() && !answer.to_string().contains("4000"),
        "buyer prices stay hidden"
    );

    let ping_id = answer["ping_id"].as_str().unwrap();
    let (status, view) = app.ping_view(&exchange.admin_key, ping_id).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "bids");
    assert_eq!(view["contracts"].as_array().unwrap().len(), 3);
    let won = outcome_of(&view, exclusive);
    assert_eq!(won["outcome"], "won");
    assert_eq!(cents(&won["exclusive_bid"]), 4000);
    assert_eq!(won["bid_id"], bids[0]["bid_id"]);
    for loser in [shared_a, shared_b] {
        assert_eq!(outcome_of(&view, loser)["outcome"], "outbid");
    }
    assert_eq!(cents(&view["winners"][0]["price"]), 4000);

    // The ping's own record holds its non-PII lead and result.
    let (result, lead): (String, Value) = sqlx::query_as(
        "SELECT result, lead FROM posting_log WHERE tenant_id = $1 AND id = $2::uuid",
    )
    .bind(exchange.tenant_id)
    .bind(ping_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((result.as_str(), lead), ("bids", ping_lead()));
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn multisell_sells_the_best_shared_bids_one_per_buyer(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    let buyer = exchange.buyer(100_000).await;
    let best = exchange
        .contract(buyer, ContractSpec::fixed(None, Some(2000)))
        .await;
    let same_buyer = exchange
        .contract(buyer, ContractSpec::fixed(None, Some(1900)))
        .await;
    let (_, second) = exchange
        .buyer_with(100_000, ContractSpec::fixed(None, Some(1500)))
        .await;
    let (_, third) = exchange
        .buyer_with(100_000, ContractSpec::fixed(None, Some(1000)))
        .await;
    let (_, fourth) = exchange
        .buyer_with(100_000, ContractSpec::fixed(None, Some(500)))
        .await;
    let app = spawn_app(pool).await;

    let (_, answer) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(answer["sale_type"], "shared");
    let payouts: Vec<i64> = answer["bids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| cents(&b["payout"]))
        .collect();
    assert_eq!(
        payouts,
        [1400, 1050, 700],
        "70 % of 20.00, 15.00 and 10.00, best first"
    );
    assert_eq!(cents(&answer["payout"]), 3150);

    let (_, view) = app
        .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
        .await;
    for (contract, outcome) in [
        (best, "won"),
        (second, "won"),
        (third, "won"),
        (same_buyer, "outbid"),
        (fourth, "outbid"),
    ] {
        assert_eq!(outcome_of(&view, contract)["outcome"], outcome);
    }
}

/// Today's period start of `period` for a tenant in New York.
fn period_start_now(period: gavel::auction::CapPeriod) -> chrono::DateTime<chrono::Utc> {
    gavel::auction::period_start(period, chrono::Utc::now(), chrono_tz::America::New_York)
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn every_decline_reason_is_recorded_and_visible_to_the_operator(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let rtb = MockServer::start().await;
    let buyer_answer = |status: u16, body: &str, delay_ms: u64| {
        ResponseTemplate::new(status)
            .set_body_string(body)
            .set_delay(Duration::from_millis(delay_ms))
    };
    for (route, response) in [
        ("/no-bid", ResponseTemplate::new(204)),
        ("/slow", buyer_answer(200, r#"{"exclusive_bid": 99}"#, 5000)),
        ("/broken", buyer_answer(500, "oops", 0)),
        ("/garbage", buyer_answer(200, "<html>not json", 0)),
    ] {
        Mock::given(method("POST"))
            .and(path(route))
            .respond_with(response)
            .mount(&rtb)
            .await;
    }

    let (_, winner) = exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), Some(2000)))
        .await;
    let (_, outbid) = exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(3000), Some(1800)))
        .await;
    let (_, paused) = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                status: Some("paused"),
                ..ContractSpec::fixed(Some(5000), None)
            },
        )
        .await;
    let (paused_buyer, buyer_paused) = exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(5000), None))
        .await;
    sqlx::query("UPDATE buyers SET status = 'paused' WHERE id = $1")
        .bind(paused_buyer)
        .execute(&pool)
        .await
        .unwrap();
    let (_, filtered) = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                filters: Some(json!([{ "field": "age", "op": "gte", "value": 18 },
                                     { "field": "state", "op": "in", "value": ["CA", "NV"] }])),
                ..ContractSpec::fixed(Some(5000), None)
            },
        )
        .await;
    let (_, closed) = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                schedule: Some(json!({ "days": {} })),
                ..ContractSpec::fixed(Some(5000), None)
            },
        )
        .await;
    let (_, capped) = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                caps: Some(json!([{ "period": "day", "max_leads": 3 }])),
                ..ContractSpec::fixed(Some(5000), None)
            },
        )
        .await;
    sqlx::query(
        "INSERT INTO cap_counters (tenant_id, contract_id, period, period_start, leads) VALUES ($1, $2, 'day', $3, 3)",
    )
    .bind(exchange.tenant_id)
    .bind(capped)
    .bind(period_start_now(gavel::auction::CapPeriod::Day))
    .execute(&pool)
    .await
    .unwrap();
    let email_hash = sha256_hex("ada@example.com");
    let (dedup_buyer, duplicate) = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                dedup_days: 30,
                ..ContractSpec::fixed(Some(5000), None)
            },
        )
        .await;
    sqlx::query(
        "INSERT INTO dedup_keys (tenant_id, key_hash, buyer_id, offer_id, kind, sold_at, sale_id)
         VALUES ($1, decode($2, 'hex'), $3, $4, 'email', now() - interval '3 days', gen_random_uuid())",
    )
    .bind(exchange.tenant_id)
    .bind(&email_hash)
    .bind(dedup_buyer)
    .bind(exchange.offer_id)
    .execute(&pool)
    .await
    .unwrap();
    let (_, broke) = exchange
        .buyer_with(3999, ContractSpec::fixed(Some(4000), None))
        .await;
    let (_, no_bid) = exchange
        .buyer_with(
            100_000,
            ContractSpec::rtb(format!("{}/no-bid", rtb.uri()), 150),
        )
        .await;
    let (_, timed_out) = exchange
        .buyer_with(
            100_000,
            ContractSpec::rtb(format!("{}/slow", rtb.uri()), 150),
        )
        .await;
    let (_, rtb_error) = exchange
        .buyer_with(
            100_000,
            ContractSpec::rtb(format!("{}/broken", rtb.uri()), 150),
        )
        .await;
    let (_, invalid) = exchange
        .buyer_with(
            100_000,
            ContractSpec::rtb(format!("{}/garbage", rtb.uri()), 150),
        )
        .await;
    // 70 % of 6.00 is 4.20, under the ping's 5.00 floor.
    let (_, below_floor) = exchange
        .buyer_with(100_000, ContractSpec::fixed(None, Some(600)))
        .await;
    let app = spawn_app(pool).await;

    let started = Instant::now();
    let (status, answer) = app
        .ping(
            &exchange.posting_key,
            json!({ "lead": ping_lead(), "dedup": { "email_sha256": email_hash }, "min_payout": 5.00 }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the slow buyer delayed the ping: {:?}",
        started.elapsed()
    );
    assert_eq!(answer["status"], "bids");

    let (_, view) = app
        .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
        .await;
    let expect = [
        (winner, "won", None),
        (outbid, "outbid", Some("outbid")),
        (paused, "declined", Some("contract_paused")),
        (buyer_paused, "declined", Some("buyer_paused")),
        (filtered, "declined", Some("filtered")),
        (closed, "declined", Some("outside_schedule")),
        (capped, "declined", Some("cap_reached")),
        (duplicate, "declined", Some("duplicate")),
        (broke, "declined", Some("insufficient_funds")),
        (no_bid, "declined", Some("rtb_no_bid")),
        (timed_out, "declined", Some("rtb_timeout")),
        (rtb_error, "declined", Some("rtb_error")),
        (invalid, "declined", Some("rtb_invalid")),
        (below_floor, "declined", Some("below_floor")),
    ];
    assert_eq!(view["contracts"].as_array().unwrap().len(), expect.len());
    for (contract, outcome, reason) in expect {
        let entry = outcome_of(&view, contract);
        assert_eq!(entry["outcome"], outcome, "{entry}");
        assert_eq!(entry["reason"].as_str(), reason, "{entry}");
    }
    assert_eq!(
        outcome_of(&view, filtered)["detail"],
        "/filters/1",
        "the failing filter's pointer"
    );
    assert!(
        outcome_of(&view, capped)["detail"]
            .as_str()
            .unwrap()
            .contains("day")
    );
    let timeout_ms = outcome_of(&view, timed_out)["rtb_ms"].as_i64().unwrap();
    assert!((140..1000).contains(&timeout_ms), "rtb_ms {timeout_ms}");
    assert!(outcome_of(&view, no_bid)["rtb_ms"].as_i64().is_some());
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_contract_without_a_price_for_the_offers_sale_type_declines(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let (_, shared_only) = exchange
        .buyer_with(100_000, ContractSpec::fixed(None, Some(1500)))
        .await;
    let app = spawn_app(pool).await;
    let (_, answer) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(answer["status"], "no_bids");
    assert!(answer.get("expires_at").is_none() && answer["bids"] == json!([]));
    let (_, view) = app
        .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(
        outcome_of(&view, shared_only)["reason"],
        "no_price_for_sale_type"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn rtb_bids_are_read_truncated_capped_and_the_request_carries_the_ping_only(pool: PgPool) {
    let exchange = Exchange::create(&pool, "optimize").await;
    let rtb = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/bid"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "exclusive_bid": "45.129", "shared_bid": 12.345, "ref": "buyer-ref-1"
        })))
        .mount(&rtb)
        .await;
    Mock::given(method("POST"))
        .and(path("/capped"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "result": { "ex": 99.99 }, "id": 7 })),
        )
        .mount(&rtb)
        .await;
    let (_, bidder) = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                pricing: Some(
                    json!({ "type": "rtb", "url": format!("{}/bid", rtb.uri()), "timeout_ms": 300,
                                      "headers": { "X-Buyer-Key": "secret-1" } }),
                ),
                ..Default::default()
            },
        )
        .await;
    let (_, custom) = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                pricing: Some(json!({ "type": "rtb", "url": format!("{}/capped", rtb.uri()), "max_bid_cents": 5000,
                                      "exclusive_bid_path": "/result/ex", "ref_path": "/id" })),
                ..Default::default()
            },
        )
        .await;
    let app = spawn_app(pool.clone()).await;

    let (status, answer) = app
        .ping(
            &exchange.posting_key,
            json!({ "lead": ping_lead(), "test": true }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (_, view) = app
        .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
        .await;
    let read = outcome_of(&view, bidder);
    assert_eq!(
        cents(&read["exclusive_bid"]),
        4512,
        "45.129 truncated to the cent"
    );
    assert_eq!(
        cents(&read["shared_bid"]),
        1234,
        "12.345 truncated to the cent"
    );
    let cut = outcome_of(&view, custom);
    assert_eq!(
        cents(&cut["exclusive_bid"]),
        5000,
        "99.99 cut to max_bid 50.00"
    );
    assert!(cut["shared_bid"].is_null());
    // Optimize: exclusive 50.00 beats the shared total 12.34: the capped buyer wins exclusive.
    assert_eq!(answer["sale_type"], "exclusive");
    assert_eq!(cents(&answer["payout"]), 3500);
    assert_eq!(view["test"], true, "a test ping is recorded as test");

    let refs: Vec<Option<String>> =
        sqlx::query_scalar("SELECT rtb_ref FROM lead_distribution WHERE ping_id = $1::uuid ORDER BY rtb_ref NULLS LAST")
            .bind(answer["ping_id"].as_str().unwrap())
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(refs, [Some("7".to_owned()), Some("buyer-ref-1".to_owned())]);

    let requests = rtb.received_requests().await.unwrap();
    let request = requests.iter().find(|r| r.url.path() == "/bid").unwrap();
    assert_eq!(request.headers["x-buyer-key"], "secret-1");
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["ping_id"], answer["ping_id"]);
    assert_eq!(body["offer"], "auto-insurance");
    assert_eq!(body["sale_types"], json!(["exclusive", "shared"]));
    assert_eq!(
        body["lead"],
        ping_lead(),
        "exactly the ping's fields, no PII"
    );
    assert_eq!(body["test"], true);
    assert_eq!(body["tmax_ms"], 300);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn bad_pings_get_problem_details_with_pointers_and_never_echo_pii(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), None))
        .await;
    let app = spawn_app(pool.clone()).await;
    let key = exchange.posting_key.clone();

    let secret = "ada.lovelace@example.com";
    let (status, problem) = app
        .ping(&key, json!({ "lead": { "state": "TX", "zip": "7500", "email": secret, "credit": "meh", "shoe_size": 9 } }))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        problem["code"], "pii_in_ping",
        "the most serious error leads"
    );
    let errors: Vec<(String, String)> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["pointer"].as_str().unwrap().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("/lead/email", "pii_in_ping"),
        ("/lead/shoe_size", "unknown_field"),
        ("/lead/zip", "invalid_field"),
        ("/lead/credit", "invalid_field"),
    ] {
        assert!(
            errors.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} in {errors:?}"
        );
    }
    assert!(
        !problem.to_string().contains(secret),
        "PII echoed: {problem}"
    );

    let (status, problem) = app.ping(&key, json!({ "lead": { "zip": "75001" } })).await;
    assert_eq!(
        (status, problem["errors"][0]["pointer"].as_str()),
        (422, Some("/lead/state"))
    );
    let (status, problem) = app
        .ping(&key, json!({ "lead": ping_lead(), "min_payout": 1.234 }))
        .await;
    assert_eq!(
        (status, problem["errors"][0]["pointer"].as_str()),
        (422, Some("/min_payout"))
    );
    let (status, problem) = app
        .ping(
            &key,
            json!({ "lead": ping_lead(), "dedup": { "email_sha256": "abc" } }),
        )
        .await;
    assert_eq!(
        (status, problem["errors"][0]["pointer"].as_str()),
        (422, Some("/dedup/email_sha256"))
    );

    let (status, problem) = app.ping("pk_unknown", json!({ "lead": ping_lead() })).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let no_key = app
        .client
        .post(app.url("/v1/ping"))
        .json(&json!({ "lead": ping_lead() }))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    // The key may also come in the body.
    let (status, _) = app
        .ping("", json!({ "posting_key": key, "lead": ping_lead() }))
        .await;
    assert_eq!(status, 200);

    let malformed = app
        .client
        .post(app.url("/v1/ping"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{\"lead\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        malformed.headers()["content-type"],
        "application/problem+json"
    );
    let not_json = app
        .client
        .post(app.url("/v1/ping"))
        .bearer_auth(&key)
        .body("lead=1")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);

    // Refused pings are recorded, without their lead.
    let refused: Vec<(String, i32, Option<Value>)> = sqlx::query_as(
        "SELECT result, http_status, lead FROM posting_log WHERE tenant_id = $1 AND http_status <> 200 ORDER BY created_at",
    )
    .bind(exchange.tenant_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(refused.len(), 4);
    assert_eq!((refused[0].0.as_str(), refused[0].1), ("pii_in_ping", 422));
    assert!(refused.iter().all(|r| r.2.is_none()));
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn paused_campaigns_are_refused_and_the_rate_limit_answers_429(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    sqlx::query("UPDATE campaigns SET ping_rate_per_second = 3 WHERE id = $1")
        .bind(exchange.campaign_id)
        .execute(&pool)
        .await
        .unwrap();
    let app = spawn_app(pool.clone()).await;
    let body = json!({ "lead": ping_lead() });

    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(app.ping(&exchange.posting_key, body.clone()).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let limited = app
        .client
        .post(app.url("/v1/ping"))
        .bearer_auth(&exchange.posting_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(
        limited.json::<Value>().await.unwrap()["code"],
        "rate_limited"
    );

    sqlx::query("UPDATE partners SET status = 'paused' WHERE id = $1")
        .bind(exchange.partner_id)
        .execute(&pool)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, problem) = app.ping(&exchange.posting_key, body).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("campaign_paused"))
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_contract_paused_in_sql_stops_bidding_within_a_second(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let (_, contract) = exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), None))
        .await;
    let app = spawn_app(pool.clone()).await;
    let body = json!({ "lead": ping_lead() });
    assert_eq!(
        app.ping(&exchange.posting_key, body.clone()).await.1["status"],
        "bids"
    );

    sqlx::query("UPDATE contracts SET status = 'paused' WHERE tenant_id = $1 AND id = $2")
        .bind(exchange.tenant_id)
        .bind(contract)
        .execute(&pool)
        .await
        .unwrap();
    let changed = Instant::now();
    loop {
        let (_, answer) = app.ping(&exchange.posting_key, body.clone()).await;
        if answer["status"] == "no_bids" {
            let (_, view) = app
                .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
                .await;
            assert_eq!(outcome_of(&view, contract)["reason"], "contract_paused");
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "still bidding after {:?}",
            changed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_consumer_sold_on_the_offer_within_its_window_is_a_duplicate(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    sqlx::query("UPDATE offers SET dedup_days = 30 WHERE id = $1")
        .bind(exchange.offer_id)
        .execute(&pool)
        .await
        .unwrap();
    let (buyer, _) = exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), None))
        .await;
    let phone_hash = sha256_hex("2145550123");
    sqlx::query(
        "INSERT INTO dedup_keys (tenant_id, key_hash, buyer_id, offer_id, kind, sold_at, sale_id)
         VALUES ($1, decode($2, 'hex'), $3, $4, 'phone', now() - interval '29 days', gen_random_uuid())",
    )
    .bind(exchange.tenant_id)
    .bind(&phone_hash)
    .bind(buyer)
    .bind(exchange.offer_id)
    .execute(&pool)
    .await
    .unwrap();
    let app = spawn_app(pool.clone()).await;

    let (_, answer) = app
        .ping(
            &exchange.posting_key,
            json!({ "lead": ping_lead(), "dedup": { "phone_sha256": phone_hash } }),
        )
        .await;
    assert_eq!(answer["status"], "duplicate");
    let (_, view) = app
        .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(view["status"], "duplicate");
    assert_eq!(view["contracts"], json!([]), "no auction ran");

    // Another consumer is auctioned as usual.
    let (_, answer) = app
        .ping(
            &exchange.posting_key,
            json!({ "lead": ping_lead(), "dedup": { "phone_sha256": sha256_hex("2145550199") } }),
        )
        .await;
    assert_eq!(answer["status"], "bids");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_admin_view_is_scoped_to_the_keys_tenant(pool: PgPool) {
    let mine = Exchange::create(&pool, "hybrid").await;
    let other = Exchange::create(&pool, "hybrid").await;
    mine.buyer_with(100_000, ContractSpec::fixed(Some(4000), None))
        .await;
    let app = spawn_app(pool).await;
    let (_, answer) = app
        .ping(&mine.posting_key, json!({ "lead": ping_lead() }))
        .await;
    let ping_id = answer["ping_id"].as_str().unwrap();

    assert_eq!(app.ping_view(&mine.admin_key, ping_id).await.0, 200);
    let (status, problem) = app.ping_view(&other.admin_key, ping_id).await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
    assert_eq!(app.ping_view("ak_nope", ping_id).await.0, 401);
    assert_eq!(app.ping_view(&mine.admin_key, "not-a-uuid").await.0, 404);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn configuration_still_reloads_after_the_listener_connection_is_lost(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let (_, contract) = exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), None))
        .await;
    let app = spawn_app(pool.clone()).await;
    let body = json!({ "lead": ping_lead() });
    assert_eq!(
        app.ping(&exchange.posting_key, body.clone()).await.1["status"],
        "bids"
    );

    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE 'LISTEN%') AS k",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(killed, 1, "one configuration listener");
    sqlx::query("UPDATE contracts SET pricing = '{\"type\": \"fixed\", \"exclusive_cents\": 4100}' WHERE id = $1")
        .bind(contract)
        .execute(&pool)
        .await
        .unwrap();

    let changed = Instant::now();
    loop {
        let (_, answer) = app.ping(&exchange.posting_key, body.clone()).await;
        if cents(&answer["payout"]) == 2870 {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(3),
            "the new price never arrived: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pings answered at once share their records' write (group commit): every ping still finds
/// its own record, with its own contracts' rows and its own bid ids, as soon as it is answered.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn concurrent_pings_each_find_their_own_complete_record(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let mut contracts = Vec::new();
    for cents in [4000, 3000, 2000] {
        let (_, contract) = exchange
            .buyer_with(100_000, ContractSpec::fixed(Some(cents), Some(1000)))
            .await;
        contracts.push(contract);
    }
    let app = spawn_app(pool.clone()).await;

    let answers = futures::future::join_all(
        (0..40).map(|_| app.ping(&exchange.posting_key, json!({ "lead": ping_lead() }))),
    )
    .await;
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
        assert_eq!(answer["status"], "bids");
        let ping_id: Uuid = answer["ping_id"].as_str().unwrap().parse().unwrap();
        let rows: Vec<(Uuid, String, Option<Uuid>)> = sqlx::query_as(
            "SELECT contract_id, outcome, bid_id FROM lead_distribution
             WHERE tenant_id = $1 AND ping_id = $2 ORDER BY contract_id",
        )
        .bind(exchange.tenant_id)
        .bind(ping_id)
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            contracts,
            "one row per contract, for this ping"
        );
        let won: Vec<_> = rows.iter().filter(|r| r.1 == "won").collect();
        assert_eq!(won.len(), 1);
        assert_eq!(won[0].0, contracts[0]);
        assert_eq!(won[0].2.unwrap().to_string(), answer["bids"][0]["bid_id"]);
        let result: String = sqlx::query_scalar(
            "SELECT result FROM posting_log WHERE tenant_id = $1 AND id = $2 AND kind = 'ping'",
        )
        .bind(exchange.tenant_id)
        .bind(ping_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(result, "bids");
    }
    let pings: i64 = sqlx::query_scalar("SELECT count(*) FROM posting_log WHERE tenant_id = $1")
        .bind(exchange.tenant_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(pings, 40);
}

/// A ping of `exchange`'s campaign to record directly, answered now with `result`.
fn ping_record(exchange: &Exchange, result: &'static str) -> gavel::store::pings::PingRecord {
    gavel::store::pings::PingRecord {
        tenant_id: exchange.tenant_id,
        ping_id: Uuid::now_v7(),
        campaign_id: exchange.campaign_id,
        partner_id: exchange.partner_id,
        offer_id: exchange.offer_id,
        created_at: chrono::Utc::now(),
        latency_us: 100,
        http_status: 200,
        result,
        test: false,
        lead: None,
        min_payout: None,
        sale_type: None,
        payout: None,
        expires_at: None,
        sub_ids: None,
        routing: None,
    }
}

/// A record the database refuses fails alone: the pings written in the same group are kept.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_ping_record_the_database_refuses_does_not_take_its_group_down(pool: PgPool) {
    use gavel::auction::{Prices, SaleType};
    use gavel::store::group::Group;
    use gavel::store::pings::{DistributionRow, PingWrite, RecordPings, Win};

    let exchange = Exchange::create(&pool, "hybrid").await;
    let (buyer, contract) = exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), None))
        .await;
    let records = Group::<RecordPings>::start(pool.clone());
    let write = |valid: bool| {
        let ping = ping_record(&exchange, "no_bids");
        // A winner at a negative price is refused (distribution_winners.price_cents >= 0).
        let row = DistributionRow {
            contract_id: contract,
            buyer_id: buyer,
            bid: Prices {
                exclusive: Some(Money::from_cents(4000)),
                shared: None,
            },
            rtb_ms: None,
            rtb_ref: None,
            win: (!valid).then(|| Win {
                bid_id: Uuid::now_v7(),
                sale_type: SaleType::Exclusive,
                price: Money::from_cents(-1),
                payout: Money::from_cents(0),
            }),
            reason: valid.then(|| "outbid".parse().unwrap()),
            detail: None,
            rtb_answer: None,
            runner_up_rank: None,
        };
        PingWrite::new(ping, vec![row])
    };
    let writes: Vec<PingWrite> = (0..30).map(|i| write(i != 7)).collect();
    let ids: Vec<Uuid> = writes.iter().map(|w| w.ping.ping_id).collect();
    let results = futures::future::join_all(writes.into_iter().map(|w| records.run(w))).await;
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result.is_ok(), i != 7, "ping {i}: {result:?}");
    }
    let kept: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM posting_log WHERE tenant_id = $1 AND id = ANY($2) ORDER BY id",
    )
    .bind(exchange.tenant_id)
    .bind(&ids)
    .fetch_all(&pool)
    .await
    .unwrap();
    let expected: Vec<Uuid> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 7)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(kept, expected);
}

/// Pings recorded by one statement each keep exactly their own contracts' outcomes, however
/// many winners and other contracts each has: the winners' rows and every other contract's
/// element of the ping's declines read back, through `lead_distribution`, as they were written.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn pings_recorded_together_each_keep_their_own_contracts_outcomes(pool: PgPool) {
    use gavel::auction::{Prices, SaleType};
    use gavel::store::group::GroupStatement;
    use gavel::store::pings::{DistributionRow, PingWrite, RecordPings, Win};

    let exchange = Exchange::create(&pool, "hybrid").await;
    let reasons = [
        "filtered",
        "cap_reached",
        "rtb_timeout",
        "below_floor",
        "outbid",
    ];
    // (winners, others) per ping: none of either, only winners, only others, both, and so
    // many others that they are split off into a write of their own.
    let shapes = [
        (0, 0),
        (2, 0),
        (0, 1),
        (1, 3),
        (0, 7),
        (2, 5),
        (1, 1),
        (2, 40),
    ];
    let mut writes: Vec<PingWrite> = shapes
        .iter()
        .enumerate()
        .map(|(p, &(winners, others))| {
            let ping = ping_record(&exchange, if winners > 0 { "bids" } else { "no_bids" });
            let mut rows = Vec::new();
            for w in 0..winners {
                rows.push(DistributionRow {
                    contract_id: Uuid::now_v7(),
                    buyer_id: Uuid::now_v7(),
                    bid: Prices {
                        exclusive: None,
                        shared: Some(Money::from_cents(1000 + w)),
                    },
                    rtb_ms: Some(w as i32),
                    rtb_ref: Some(format!("ref-{p}-{w}")),
                    win: Some(Win {
                        bid_id: Uuid::now_v7(),
                        sale_type: SaleType::Shared,
                        price: Money::from_cents(1000 + w),
                        payout: Money::from_cents(700 + w),
                    }),
                    reason: None,
                    detail: None,
                    rtb_answer: None,
                    runner_up_rank: None,
                });
            }
            for o in 0..others {
                let reason = reasons[(p + o) % reasons.len()];
                let bid = matches!(reason, "outbid" | "below_floor");
                rows.push(DistributionRow {
                    contract_id: Uuid::now_v7(),
                    buyer_id: Uuid::now_v7(),
                    bid: Prices {
                        exclusive: bid.then(|| Money::from_cents(500 + o as i64)),
                        shared: None,
                    },
                    rtb_ms: (reason == "rtb_timeout").then_some(150),
                    rtb_ref: None,
                    win: None,
                    reason: Some(reason.parse().unwrap()),
                    detail: (o % 2 == 0).then(|| format!("detail {p}.{o}")),
                    rtb_answer: None,
                    runner_up_rank: None,
                });
            }
            PingWrite::new(ping, rows)
        })
        .collect();
    // Written in the same statement as the rest: the ping's row once, all its outcomes.
    let declines: Vec<PingWrite> = writes
        .iter_mut()
        .filter_map(PingWrite::split_declines)
        .collect();
    assert_eq!(declines.len(), 1, "only the ping of 40 declines");
    writes.extend(declines);
    let mut connection = pool.acquire().await.unwrap();
    RecordPings::run(&mut connection, &writes).await.unwrap();
    let pings: i64 = sqlx::query_scalar("SELECT count(*) FROM posting_log WHERE tenant_id = $1")
        .bind(exchange.tenant_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(pings, shapes.len() as i64, "one row per ping");

    #[derive(Debug, PartialEq, sqlx::FromRow)]
    struct Row {
        contract_id: Uuid,
        buyer_id: Uuid,
        outcome: String,
        reason: Option<String>,
        detail: Option<String>,
        exclusive_bid_cents: Option<i64>,
        shared_bid_cents: Option<i64>,
        rtb_ms: Option<i32>,
        rtb_ref: Option<String>,
        bid_id: Option<Uuid>,
        sale_type: Option<String>,
        price_cents: Option<i64>,
        payout_cents: Option<i64>,
    }
    for write in writes.iter().filter(|w| !w.declines_only) {
        let stored: Vec<Row> = sqlx::query_as(
            "SELECT contract_id, buyer_id, outcome, reason, detail, exclusive_bid_cents, shared_bid_cents,
                    rtb_ms, rtb_ref, bid_id, sale_type, price_cents, payout_cents
             FROM lead_distribution WHERE tenant_id = $1 AND ping_id = $2 ORDER BY contract_id",
        )
        .bind(write.ping.tenant_id)
        .bind(write.ping.ping_id)
        .fetch_all(&pool)
        .await
        .unwrap();
        let mut expected: Vec<Row> = writes
            .iter()
            .filter(|w| w.ping.ping_id == write.ping.ping_id)
            .flat_map(|w| &w.rows)
            .map(|r| Row {
                contract_id: r.contract_id,
                buyer_id: r.buyer_id,
                outcome: r.outcome().to_string(),
                reason: r.reason.map(|reason| reason.to_string()),
                detail: r.detail.clone(),
                exclusive_bid_cents: r.bid.exclusive.map(Money::cents),
                shared_bid_cents: r.bid.shared.map(Money::cents),
                rtb_ms: r.rtb_ms,
                rtb_ref: r.rtb_ref.clone(),
                bid_id: r.win.map(|w| w.bid_id),
                sale_type: r.win.map(|w| w.sale_type.as_str().to_owned()),
                price_cents: r.win.map(|w| w.price.cents()),
                payout_cents: r.win.map(|w| w.payout.cents()),
            })
            .collect();
        expected.sort_by_key(|row| row.contract_id);
        assert_eq!(stored, expected, "ping with {} contracts", expected.len());
    }
}

/// Pings of different tenants read their state in one grouped statement: each sees its own
/// tenant's buyers only (one tenant's funded buyer never lends its balance to the other's).
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn grouped_state_reads_keep_each_tenants_state_apart(pool: PgPool) {
    let funded = Exchange::create(&pool, "hybrid").await;
    funded
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), None))
        .await;
    let broke = Exchange::create(&pool, "hybrid").await;
    broke
        .buyer_with(0, ContractSpec::fixed(Some(4000), None))
        .await;
    let app = spawn_app(pool.clone()).await;

    let answers = futures::future::join_all((0..40).map(|i| {
        let key = if i % 2 == 0 {
            &funded.posting_key
        } else {
            &broke.posting_key
        };
        app.ping(key, json!({ "lead": ping_lead() }))
    }))
    .await;
    for (i, (status, answer)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "{answer}");
        let expected = if i % 2 == 0 { "bids" } else { "no_bids" };
        assert_eq!(answer["status"], expected, "ping {i}: {answer}");
    }
    let reasons: Vec<Option<String>> =
        sqlx::query_scalar("SELECT DISTINCT reason FROM lead_distribution WHERE tenant_id = $1")
            .bind(broke.tenant_id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(reasons, vec![Some("insufficient_funds".to_owned())]);
}

/// The state a ping reads may be kept for `state_cache_ms`: this process's own changes are
/// seen by the very next ping, another process's once that time has passed.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn pings_see_this_processs_funds_at_once_and_another_processs_change_soon(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let (buyer, _) = exchange
        .buyer_with(0, ContractSpec::fixed(Some(4000), None))
        .await;
    let app = spawn_app(pool.clone()).await;
    let key = &exchange.posting_key;
    let ping_status = || async {
        let (status, answer) = app.ping(key, json!({ "lead": ping_lead() })).await;
        assert_eq!(status, 200, "{answer}");
        answer["status"].as_str().unwrap().to_owned()
    };

    // No funds: no bid (and the buyer's balance is now kept for a moment).
    assert_eq!(ping_status().await, "no_bids");
    let (status, _) = app
        .admin(
            reqwest::Method::POST,
            &format!("/v1/admin/buyers/{buyer}/funds"),
            &exchange.admin_key,
            Some(json!({ "amount": 100.00 })),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(ping_status().await, "bids");

    // Another Gavel process spends the balance (here, straight in the database).
    sqlx::query("UPDATE buyers SET balance_cents = 0 WHERE tenant_id = $1 AND id = $2")
        .bind(exchange.tenant_id)
        .bind(buyer)
        .execute(&pool)
        .await
        .unwrap();
    let kept_for = Duration::from_millis(crate::harness::test_settings().state_cache_ms);
    tokio::time::sleep(kept_for + Duration::from_millis(50)).await;
    assert_eq!(ping_status().await, "no_bids");
}
