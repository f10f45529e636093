//! Buyer caps (docs/revenue-recovery.md §4): a buyer's caps count its sales on all its
//! contracts, never oversold under concurrent posts, declined at the ping once full, given back
//! when a sale is released, shown to the operator.

use futures::future::join_all;
use gavel::money::{ExtraDecimals, Money};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
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

/// A pool of its own for the server, larger than a test database's default, for the races.
async fn big_pool(_: PgPoolOptions, connect: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(30)
        .connect_with(connect)
        .await
        .unwrap()
}

/// A delivery endpoint answering `status` ("accepted" or anything else, a rejection).
async fn delivery(server: &MockServer, status: &str) -> Value {
    Mock::given(method("POST"))
        .and(path("/leads"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "status": status, "message": "not today" })),
        )
        .mount(server)
        .await;
    json!({ "url": format!("{}/leads", server.uri()), "timeout_ms": 2000,
            "accept": { "path": "/status", "equals": "accepted" }, "reason_path": "/message" })
}

/// The ages that reach each of the three contracts of `three_contracts`.
const AGES: [i64; 3] = [25, 42, 60];

/// Three contracts of `buyer` at `price_cents` (exclusive), each taking one band of ages, so
/// that pings spread over them; `caps` are each contract's own, `deliveries` their delivery
/// (cycled).
async fn three_contracts(
    exchange: &Exchange,
    buyer: Uuid,
    price_cents: i64,
    caps: Value,
    deliveries: &[&Value],
) -> Vec<Uuid> {
    let bands = [
        json!([{ "field": "age", "op": "lt", "value": 30 }]),
        json!([{ "field": "age", "op": "gte", "value": 30 }, { "field": "age", "op": "lt", "value": 50 }]),
        json!([{ "field": "age", "op": "gte", "value": 50 }]),
    ];
    let mut contracts = Vec::new();
    for (n, filters) in bands.into_iter().enumerate() {
        let spec = ContractSpec {
            filters: Some(filters),
            caps: Some(caps.clone()),
            delivery: Some(deliveries[n % deliveries.len()].clone()),
            ..ContractSpec::fixed(Some(price_cents), None)
        };
        contracts.push(exchange.contract(buyer, spec).await);
    }
    contracts
}

async fn set_buyer_caps(pool: &PgPool, buyer: Uuid, caps: Value) {
    sqlx::query("UPDATE buyers SET caps = $2 WHERE id = $1")
        .bind(buyer)
        .bind(caps)
        .execute(pool)
        .await
        .unwrap();
}

fn lead_of_age(age: i64) -> Value {
    let mut lead = ping_lead();
    lead["age"] = json!(age);
    lead
}

/// `count` pings, their ages cycling over `AGES`; each must have a bid.
async fn pings(app: &TestApp, key: &str, count: usize) -> Vec<(i64, Value)> {
    let mut pings = Vec::new();
    for n in 0..count {
        let age = AGES[n % AGES.len()];
        let (status, answer) = app.ping(key, json!({ "lead": lead_of_age(age) })).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("bids")),
            "{answer}"
        );
        pings.push((age, answer));
    }
    pings
}

fn post_body(n: usize, age: i64, ping: &Value) -> Value {
    let mut lead = full_lead();
    lead["age"] = json!(age);
    lead["email"] = json!(format!("consumer{n}@example.com"));
    lead["phone"] = json!(format!("(214) 555-{:04}", n));
    json!({ "ping_id": ping["ping_id"], "lead": lead, "consent": consent() })
}

/// Posts every ping at once; returns each post's status.
async fn post_all_at_once(app: &TestApp, key: &str, pings: &[(i64, Value)]) -> Vec<String> {
    let posts = pings
        .iter()
        .enumerate()
        .map(|(n, (age, ping))| async move { app.post(key, post_body(n, *age, ping)).await });
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

/// The buyer's counters: (period, leads, spend in cents).
async fn buyer_counters(pool: &PgPool, buyer: Uuid) -> Vec<(String, i32, i64)> {
    sqlx::query_as(
        "SELECT period, leads, spend_cents FROM buyer_cap_counters WHERE buyer_id = $1 ORDER BY period",
    )
    .bind(buyer)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Sales by contract: how many each contract sold.
async fn sold_by_contract(pool: &PgPool, buyer: Uuid) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM lead_sales WHERE buyer_id = $1 AND status = 'sold' GROUP BY contract_id",
    )
    .bind(buyer)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn sixty_concurrent_posts_over_three_contracts_sell_exactly_a_buyers_lead_cap(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = big_pool(options, connect).await;
    let exchange = Exchange::create(&pool, "exclusive").await;
    let server = MockServer::start().await;
    let delivery = delivery(&server, "accepted").await;
    let buyer = exchange.buyer(1_000_000).await;
    let contracts = three_contracts(&exchange, buyer, 1000, json!([]), &[&delivery]).await;
    set_buyer_caps(&pool, buyer, json!([{ "period": "day", "max_leads": 20 }])).await;
    let app = spawn_app(pool.clone()).await;
    let key = exchange.posting_key.clone();

    // 60 pings, 20 on each contract, all bidding: none sold yet.
    let pings = pings(&app, &key, 60).await;
    let statuses = post_all_at_once(&app, &key, &pings).await;
    assert_eq!(
        (count(&statuses, "sold"), count(&statuses, "capped")),
        (20, 40),
        "{statuses:?}"
    );
    assert_eq!(
        buyer_counters(&pool, buyer).await,
        [("day".to_owned(), 20, 20_000)]
    );
    assert_eq!(sold_by_contract(&pool, buyer).await.iter().sum::<i64>(), 20);
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        20,
        "only sold leads were delivered"
    );
    assert_eq!(exchange.buyer_books(buyer).await, (980_000, 980_000));

    // Full: the next ping on each contract is declined, naming the buyer's cap.
    for (age, contract) in AGES.into_iter().zip(&contracts) {
        let (_, answer) = app.ping(&key, json!({ "lead": lead_of_age(age) })).await;
        assert_eq!(answer["status"], "no_bids", "{answer}");
        let (_, view) = app
            .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
            .await;
        let outcome = outcome_of(&view, *contract);
        assert_eq!(
            (&outcome["reason"], &outcome["detail"]),
            (
                &json!("cap_reached"),
                &json!("the buyer's day cap of 20 leads is reached")
            ),
            "{view:#}"
        );
    }

    // The operator sees it.
    let (status, caps) = app
        .admin(
            Method::GET,
            &format!("/v1/admin/buyers/{buyer}/caps"),
            &exchange.admin_key,
            None,
        )
        .await;
    assert_eq!(status, 200, "{caps}");
    let day = &caps["caps"][0];
    assert_eq!(
        (
            &day["period"],
            &day["kind"],
            &day["limit"],
            &day["used"],
            &day["remaining"]
        ),
        (
            &json!("day"),
            &json!("leads"),
            &json!(20),
            &json!(20),
            &json!(0)
        )
    );
    // Another tenant's operator does not see this buyer.
    let other = Exchange::create(&pool, "exclusive").await;
    let (status, _) = app
        .admin(
            Method::GET,
            &format!("/v1/admin/buyers/{buyer}/caps"),
            &other.admin_key,
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn sixty_concurrent_posts_never_overspend_a_buyers_spend_cap(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = big_pool(options, connect).await;
    let exchange = Exchange::create(&pool, "exclusive").await;
    let server = MockServer::start().await;
    let delivery = delivery(&server, "accepted").await;
    let buyer = exchange.buyer(1_000_000).await;
    // 20 sales of 12.50 fit in the buyer's 250.00. Each contract's own daily cap is far off,
    // but a sale the buyer's cap refuses took its contract's counter first, and gives it back.
    let contracts = three_contracts(
        &exchange,
        buyer,
        1250,
        json!([{ "period": "day", "max_leads": 1000 }]),
        &[&delivery],
    )
    .await;
    set_buyer_caps(
        &pool,
        buyer,
        json!([{ "period": "month", "max_spend_cents": 25_000 }]),
    )
    .await;
    let app = spawn_app(pool.clone()).await;
    let key = exchange.posting_key.clone();

    let pings = pings(&app, &key, 60).await;
    let statuses = post_all_at_once(&app, &key, &pings).await;
    assert_eq!(
        (count(&statuses, "sold"), count(&statuses, "capped")),
        (20, 40),
        "{statuses:?}"
    );
    assert_eq!(
        buyer_counters(&pool, buyer).await,
        [("month".to_owned(), 20, 25_000)]
    );
    let (leads, spend): (i64, i64) = sqlx::query_as(
        "SELECT sum(leads)::bigint, sum(spend_cents)::bigint FROM cap_counters WHERE contract_id = ANY($1)",
    )
    .bind(&contracts)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (leads, spend),
        (20, 25_000),
        "the contracts' counters count only the sales made"
    );
    assert_eq!(exchange.buyer_books(buyer).await, (975_000, 975_000));

    // Used up: the next ping is declined with the spend cap's name.
    let (_, answer) = app
        .ping(&key, json!({ "lead": lead_of_age(AGES[0]) }))
        .await;
    assert_eq!(answer["status"], "no_bids", "{answer}");
    let (_, view) = app
        .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(
        outcome_of(&view, contracts[0])["detail"],
        "the buyer's month spend cap of 250.00 is reached"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_released_sale_gives_the_buyers_counter_back_and_a_test_sale_takes_none(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let server = MockServer::start().await;
    let rejecting = delivery(&server, "rejected").await;
    let accepting = delivery(&MockServer::start().await, "accepted").await;
    let buyer = exchange.buyer(100_000).await;
    // The contract of AGES[2] accepts; the others reject.
    three_contracts(
        &exchange,
        buyer,
        1000,
        json!([]),
        &[&rejecting, &rejecting, &accepting],
    )
    .await;
    let app = spawn_app(pool.clone()).await;
    let key = exchange.posting_key.clone();

    // The operator sets the buyer's caps; a bad one is refused with its pointer.
    let caps_path = format!("/v1/admin/buyers/{buyer}");
    for (caps, pointer) in [
        (
            json!([{ "period": "day", "max_leads": 0 }]),
            "/caps/0/max_leads",
        ),
        (json!([{ "period": "year", "max_leads": 1 }]), "/caps/0"),
        (
            json!([{ "period": "day", "max_leads": 5 }, { "period": "day", "max_spend": -1 }]),
            "/caps/1/max_spend",
        ),
        (json!({ "period": "day" }), "/caps"),
    ] {
        let (status, problem) = app
            .admin(
                Method::PATCH,
                &caps_path,
                &exchange.admin_key,
                Some(json!({ "caps": caps })),
            )
            .await;
        assert_eq!(
            (status, &problem["code"]),
            (422, &json!("invalid_config")),
            "{problem}"
        );
        let pointers: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap())
            .collect();
        assert!(pointers.contains(&pointer), "{pointer}: {problem}");
    }
    let (status, patched) = app
        .admin(
            Method::PATCH,
            &caps_path,
            &exchange.admin_key,
            Some(json!({ "caps": [
                { "period": "day", "max_leads": 5 },
                { "period": "month", "max_spend": 100.50 }
            ] })),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(cents(&patched["caps"][1]["max_spend"]), 10_050);
    assert_eq!(
        patched["caps"][0],
        json!({ "period": "day", "max_leads": 5 })
    );

    // The buyer rejects the lead: its reservation, the buyer's counters included, goes back.
    let (_, ping) = app
        .ping(&key, json!({ "lead": lead_of_age(AGES[1]) }))
        .await;
    assert_eq!(ping["status"], "bids", "{ping}");
    let (status, answer) = app.post(&key, post_body(0, AGES[1], &ping)).await;
    assert_eq!(
        (status, answer["results"][0]["status"].as_str()),
        (200, Some("rejected")),
        "{answer}"
    );
    let reserved: Value =
        sqlx::query_scalar("SELECT reserved_caps FROM lead_sales WHERE buyer_id = $1")
            .bind(buyer)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        reserved.as_array().map(|caps| caps.len()),
        Some(2),
        "the buyer's day and month were reserved: {reserved}"
    );
    assert!(
        reserved[0]["scope"] == "buyer" && reserved[1]["scope"] == "buyer",
        "{reserved}"
    );
    assert_eq!(buyer_counters(&pool, buyer).await, []);
    assert_eq!(exchange.buyer_books(buyer).await, (100_000, 100_000));
    let (_, caps) = app
        .admin(
            Method::GET,
            &format!("/v1/admin/buyers/{buyer}/caps"),
            &exchange.admin_key,
            None,
        )
        .await;
    assert_eq!(
        (
            &caps["caps"][0]["used"],
            cents(&caps["caps"][1]["used"]),
            cents(&caps["caps"][1]["limit"])
        ),
        (&json!(0), 0, 10_050),
        "{caps}"
    );

    // A test sale counts against no cap, the buyer's included.
    let (_, ping) = app
        .ping(&key, json!({ "lead": lead_of_age(AGES[2]), "test": true }))
        .await;
    let (_, answer) = app.post(&key, post_body(1, AGES[2], &ping)).await;
    assert_eq!(answer["status"], "sold", "{answer}");
    assert_eq!(buyer_counters(&pool, buyer).await, []);
}
