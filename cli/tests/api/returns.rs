//! Returns (docs/returns.md): every refusal with its code, approvals and denials (idempotent,
//! 409 across, approved once under racing approvals), the contract's limit under racing
//! requests, auto-approval, caps given back, another tenant's 404, and the money conserved
//! after a seeded random mix of sales, funds, returns, approvals and denials.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::future::join_all;
use gavel::clock::FixedClock;
use gavel::money::{ExtraDecimals, Money};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, ping_lead};
use crate::harness::{TestApp, spawn_app_with_clock, test_settings};

fn cents(value: &Value) -> i64 {
    Money::from_json(value, ExtraDecimals::Reject)
        .unwrap_or_else(|e| panic!("{value}: {e}"))
        .cents()
}

/// A Tuesday in New York (EST), mid-month.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 10, 15, 0, 0).unwrap()
}

/// A pool of its own for the server, larger than a test database's default, for the races.
async fn big_pool(_: PgPoolOptions, connect: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(30)
        .connect_with(connect)
        .await
        .unwrap()
}

/// A delivery endpoint at `route` answering `status` (`accepted` sells).
async fn delivery(server: &MockServer, route: &str, status: &str) -> Value {
    Mock::given(method("POST"))
        .and(path(route.to_owned()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": status })))
        .mount(server)
        .await;
    json!({ "url": format!("{}{route}", server.uri()), "timeout_ms": 2000,
            "accept": { "path": "/status", "equals": "accepted" } })
}

/// The filters of an age band: pings of an age in `[low, high)` reach only its contract.
fn band(low: i64, high: i64) -> Value {
    json!([{ "field": "age", "op": "gte", "value": low }, { "field": "age", "op": "lt", "value": high }])
}

/// A contract of `buyer` selling exclusive at `price_cents` to the ages `[low, high)`, with
/// `returns` stored as given and `caps` (stored form).
#[allow(clippy::too_many_arguments)]
async fn contract(
    exchange: &Exchange,
    buyer: Uuid,
    price_cents: i64,
    (low, high): (i64, i64),
    returns: Value,
    caps: Value,
    delivery: &Value,
) -> Uuid {
    let spec = ContractSpec {
        filters: Some(band(low, high)),
        caps: Some(caps),
        delivery: Some(delivery.clone()),
        ..ContractSpec::fixed(Some(price_cents), None)
    };
    let id = exchange.contract(buyer, spec).await;
    sqlx::query("UPDATE contracts SET returns = $2 WHERE id = $1")
        .bind(id)
        .bind(returns)
        .execute(&exchange.pool)
        .await
        .unwrap();
    id
}

/// Returns allowed, a week's window, up to `max_percent` % of the month's sales.
fn allowed(max_percent: u32, reasons: &[&str]) -> Value {
    json!({ "allowed": true, "window_days": 7, "max_percent": max_percent, "period": "month",
            "auto_approve": false, "reasons": reasons })
}

async fn spawn(pool: &PgPool, clock: &Arc<FixedClock>) -> TestApp {
    spawn_app_with_clock(
        pool.clone(),
        test_settings(),
        axum::Router::new(),
        clock.clone(),
    )
    .await
}

/// Pings a lead of `age` and posts it (consumer `n`); the sale's id and status.
async fn sell(app: &TestApp, exchange: &Exchange, age: i64, n: usize) -> (Uuid, String) {
    let key = &exchange.posting_key;
    let mut lead = ping_lead();
    lead["age"] = json!(age);
    let (status, ping) = app.ping(key, json!({ "lead": lead })).await;
    assert_eq!(
        (status, ping["status"].as_str()),
        (200, Some("bids")),
        "{ping}"
    );
    let mut lead = full_lead();
    lead["age"] = json!(age);
    lead["email"] = json!(format!("consumer{n}@example.com"));
    lead["phone"] = json!(format!("(214) 555-{:04}", n % 10_000));
    let (status, answer) = app
        .post(
            key,
            json!({ "ping_id": ping["ping_id"], "lead": lead, "consent": consent() }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let bid: Uuid = answer["results"][0]["bid_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (sale, status): (Uuid, String) =
        sqlx::query_as("SELECT id, status FROM lead_sales WHERE tenant_id = $1 AND bid_id = $2")
            .bind(exchange.tenant_id)
            .bind(bid)
            .fetch_one(&exchange.pool)
            .await
            .unwrap();
    (sale, status)
}

/// An admin request; the status and the JSON body (null when none).
async fn admin(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn request_return(app: &TestApp, key: &str, sale: Uuid, body: Value) -> (u16, Value) {
    admin(
        app,
        key,
        Method::POST,
        &format!("/v1/admin/sales/{sale}/returns"),
        Some(body),
    )
    .await
}

async fn decide(app: &TestApp, key: &str, id: &str, decision: &str) -> (u16, Value) {
    admin(
        app,
        key,
        Method::POST,
        &format!("/v1/admin/returns/{id}/{decision}"),
        None,
    )
    .await
}

/// The tenant's returns.
async fn count_returns(pool: &PgPool, tenant: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM returns WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn sale_status(pool: &PgPool, sale: Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM lead_sales WHERE id = $1")
        .bind(sale)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The `return` ledger entries of a sale: (account, amount in cents, return id).
async fn return_entries(pool: &PgPool, sale: Uuid) -> Vec<(String, i64, Uuid)> {
    sqlx::query_as(
        "SELECT account, amount_cents, return_id FROM ledger_entries
         WHERE sale_id = $1 AND kind = 'return' ORDER BY account",
    )
    .bind(sale)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The partner's balance and the sum of its ledger.
async fn partner_books(exchange: &Exchange) -> (i64, i64) {
    sqlx::query_as(
        "SELECT balance_cents, (SELECT coalesce(sum(amount_cents), 0)::bigint FROM ledger_entries
                                WHERE tenant_id = $1 AND partner_id = $2)
         FROM partners WHERE tenant_id = $1 AND id = $2",
    )
    .bind(exchange.tenant_id)
    .bind(exchange.partner_id)
    .fetch_one(&exchange.pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn every_refusal_answers_its_code_in_order_and_writes_nothing(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let server = MockServer::start().await;
    let accepts = delivery(&server, "/leads", "accepted").await;
    let buyer = exchange.buyer(1_000_000).await;
    let open = contract(
        &exchange,
        buyer,
        4000,
        (18, 40),
        allowed(100, &["bad_phone", "other"]),
        json!([]),
        &accepts,
    )
    .await;
    // Returns off: the migration's default.
    exchange
        .contract(
            buyer,
            ContractSpec {
                filters: Some(band(40, 100)),
                delivery: Some(accepts.clone()),
                ..ContractSpec::fixed(Some(4000), None)
            },
        )
        .await;
    let clock = Arc::new(FixedClock::new(start()));
    let app = spawn(&pool, &clock).await;
    let key = exchange.admin_key.clone();
    let mut sales = Vec::new();
    for n in 0..4 {
        let (sale, status) = sell(&app, &exchange, 25, n).await;
        assert_eq!(status, "sold");
        sales.push(sale);
    }
    let (closed_sale, _) = sell(&app, &exchange, 60, 10).await;
    let books = exchange.buyer_books(buyer).await;
    let ok = json!({ "reason": "bad_phone" });

    // Unknown sale, malformed id, another tenant's: 404 whatever the body.
    let other = Exchange::create(&pool, "exclusive").await;
    for (sale, key) in [(Uuid::now_v7(), &key), (sales[0], &other.admin_key)] {
        let (status, problem) = request_return(&app, key, sale, json!({})).await;
        assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
        // Even a body that is no JSON object, or not JSON at all.
        for (content_type, body) in [("application/json", "[1"), ("text/plain", "reason")] {
            let response = app
                .client
                .post(app.url(&format!("/v1/admin/sales/{sale}/returns")))
                .bearer_auth(key)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 404, "{content_type} {body}");
        }
    }
    // The tenant's own sale: the body's refusal.
    let response = app
        .client
        .post(app.url(&format!("/v1/admin/sales/{}/returns", sales[0])))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("[1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let (status, _) = admin(
        &app,
        &key,
        Method::POST,
        "/v1/admin/sales/nope/returns",
        Some(ok.clone()),
    )
    .await;
    assert_eq!(status, 404);

    // The body: every rule with its pointer.
    let (status, problem) = request_return(
        &app,
        &key,
        sales[0],
        json!({ "reason": 5, "note": "x".repeat(501), "extra": 1 }),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("invalid_config"))
    );
    let mut pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    pointers.sort_unstable();
    assert_eq!(pointers, ["/extra", "/note", "/reason"], "{problem}");
    let (_, problem) = request_return(&app, &key, sales[0], json!({})).await;
    assert_eq!(problem["errors"][0]["pointer"], "/reason");

    // Not sold: a rejected sale (an SQL edit stands in for a buyer's rejection here).
    sqlx::query("UPDATE lead_sales SET status = 'rejected' WHERE id = $1")
        .bind(sales[3])
        .execute(&pool)
        .await
        .unwrap();
    let (status, problem) = request_return(&app, &key, sales[3], ok.clone()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("sale_not_returnable")),
        "{problem}"
    );
    // The contract does not allow returns.
    let (status, problem) = request_return(&app, &key, closed_sale, ok.clone()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("returns_not_allowed"))
    );
    // A reason the contract does not list: 422 at /reason, naming the allowed ones.
    let (status, problem) =
        request_return(&app, &key, sales[0], json!({ "reason": "fraud" })).await;
    assert_eq!(
        (
            status,
            problem["code"].as_str(),
            problem["errors"][0]["pointer"].as_str()
        ),
        (422, Some("return_reason_not_allowed"), Some("/reason"))
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("bad_phone, other"),
        "{problem}"
    );
    // The window: open until 7 × 24 h after the sale, closed from then.
    clock.set(start() + Duration::days(7));
    let (status, problem) = request_return(&app, &key, sales[1], ok.clone()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("return_window_closed"))
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("2026-11-10T15:00:00Z"),
        "{problem}"
    );
    assert_eq!(count_returns(&pool, exchange.tenant_id).await, 0);
    assert_eq!(exchange.buyer_books(buyer).await, books, "nothing moved");

    clock.set(start() + Duration::days(7) - Duration::seconds(1));
    let (status, first) = request_return(
        &app,
        &key,
        sales[1],
        json!({ "reason": "other", "note": "disconnected" }),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(
        (
            first["status"].as_str(),
            first["reason"].as_str(),
            first["note"].as_str()
        ),
        (Some("requested"), Some("other"), Some("disconnected"))
    );
    assert_eq!(first["payout_reversed"], Value::Null);
    assert_eq!(cents(&first["price"]), 4000);
    assert_eq!(first["sale_id"], sales[1].to_string());
    assert_eq!(first["contract_id"], open.to_string());
    // Already requested: named.
    let (status, problem) = request_return(&app, &key, sales[1], ok.clone()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("already_returned"))
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(first["id"].as_str().unwrap())
    );

    // The limit: a partial PATCH lowers max_percent and keeps the rest; 3 sales of 10 %
    // allow none.
    let (status, patched) = admin(
        &app,
        &key,
        Method::PATCH,
        &format!("/v1/admin/contracts/{open}"),
        Some(json!({ "returns": { "max_percent": 10 } })),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        patched["returns"],
        json!({ "allowed": true, "window_days": 7, "max_percent": 10, "period": "month",
                "auto_approve": false, "reasons": ["bad_phone", "other"] })
    );
    let (status, problem) = request_return(&app, &key, sales[2], ok.clone()).await;
    assert_eq!(
        (status, problem["code"].as_str(), problem["detail"].as_str()),
        (
            409,
            Some("return_limit_reached"),
            Some("1 of 0 returns allowed this month (10% of the contract's 3 sales in it)")
        )
    );
    // A broken setting: every pointer.
    let (status, problem) = admin(
        &app,
        &key,
        Method::PATCH,
        &format!("/v1/admin/contracts/{open}"),
        Some(json!({ "returns": { "window_days": 0, "period": "year", "reasons": [] } })),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"].as_array().unwrap().len(), 3, "{problem}");

    // A returned sale is not returnable again.
    let id = first["id"].as_str().unwrap();
    assert_eq!(decide(&app, &key, id, "approve").await.0, 200);
    let (status, problem) = request_return(&app, &key, sales[1], ok.clone()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("sale_not_returnable"))
    );
    assert_eq!(count_returns(&pool, exchange.tenant_id).await, 1);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn racing_approvals_approve_once_move_money_once_and_give_caps_back(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = big_pool(options, connect).await;
    let exchange = Exchange::create(&pool, "exclusive").await;
    let server = MockServer::start().await;
    let accepts = delivery(&server, "/leads", "accepted").await;
    let buyer = exchange.buyer(1_000_000).await;
    sqlx::query("UPDATE buyers SET caps = $2 WHERE id = $1")
        .bind(buyer)
        .bind(json!([{ "period": "week", "max_leads": 50 }]))
        .execute(&pool)
        .await
        .unwrap();
    let caps = json!([{ "period": "day", "max_leads": 10 }, { "period": "month", "max_spend_cents": 1_000_000 }]);
    let contract_id = contract(
        &exchange,
        buyer,
        4000,
        (18, 100),
        allowed(100, &["h2_race_probe", "other"]),
        caps,
        &accepts,
    )
    .await;
    let clock = Arc::new(FixedClock::new(start()));
    let app = spawn(&pool, &clock).await;
    let key = exchange.admin_key.clone();
    let (a, _) = sell(&app, &exchange, 30, 1).await;
    let (b, _) = sell(&app, &exchange, 31, 2).await;
    let caps_of = |path: String| {
        let (app, key) = (&app, &key);
        async move {
            let (status, caps) = admin(app, key, Method::GET, &path, None).await;
            assert_eq!(status, 200);
            caps["caps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| cents(&c["used"]))
                .collect::<Vec<i64>>()
        }
    };
    let contract_caps = format!("/v1/admin/contracts/{contract_id}/caps");
    let buyer_caps = format!("/v1/admin/buyers/{buyer}/caps");
    // Leads count as whole numbers, spend in cents.
    assert_eq!(caps_of(contract_caps.clone()).await, [200, 8000]);
    assert_eq!(caps_of(buyer_caps.clone()).await, [200]);
    let (balance_before, _) = exchange.buyer_books(buyer).await;

    let (status, requested) =
        request_return(&app, &key, a, json!({ "reason": "h2_race_probe" })).await;
    assert_eq!(status, 201, "{requested}");
    let id = requested["id"].as_str().unwrap().to_owned();

    // Eight approvals at once: one decides, the others find it decided the same way.
    let answers = join_all((0..8).map(|_| decide(&app, &key, &id, "approve"))).await;
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
        assert_eq!(answer["status"], "approved");
        assert_eq!(answer["decided_at"], answers[0].1["decided_at"]);
        assert_eq!(cents(&answer["payout_reversed"]), 2800, "70 % of 40.00");
    }
    assert_eq!(sale_status(&pool, a).await, "returned");
    let rid: Uuid = id.parse().unwrap();
    assert_eq!(
        return_entries(&pool, a).await,
        [
            ("buyer".to_owned(), 4000, rid),
            ("partner".to_owned(), -2800, rid)
        ]
    );
    let (balance, ledger) = exchange.buyer_books(buyer).await;
    assert_eq!(
        (balance, ledger),
        (balance_before + 4000, balance_before + 4000)
    );
    let (balance, ledger) = partner_books(&exchange).await;
    assert_eq!(balance, ledger);
    // One lead and its price given back to every current period's counter.
    assert_eq!(caps_of(contract_caps.clone()).await, [100, 4000]);
    assert_eq!(caps_of(buyer_caps.clone()).await, [100]);

    // Idempotent, and 409 across.
    let (status, again) = decide(&app, &key, &id, "approve").await;
    assert_eq!((status, &again), (200, &answers[0].1));
    let (status, problem) = decide(&app, &key, &id, "deny").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("return_already_decided"))
    );

    // A denial moves nothing; a denied return may be requested again.
    let (_, second) = request_return(&app, &key, b, json!({ "reason": "other" })).await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    let (status, denied) = admin(
        &app,
        &key,
        Method::POST,
        &format!("/v1/admin/returns/{second_id}/deny"),
        Some(json!({ "note": "the phone answers" })),
    )
    .await;
    assert_eq!(
        (
            status,
            denied["status"].as_str(),
            denied["decision_note"].as_str()
        ),
        (200, Some("denied"), Some("the phone answers"))
    );
    assert_eq!(denied["payout_reversed"], Value::Null);
    assert_eq!(decide(&app, &key, &second_id, "deny").await.0, 200);
    let (status, problem) = decide(&app, &key, &second_id, "approve").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("return_already_decided"))
    );
    assert_eq!(sale_status(&pool, b).await, "sold");
    assert!(return_entries(&pool, b).await.is_empty());
    assert_eq!(caps_of(contract_caps).await, [100, 4000]);
    let (status, third) = request_return(&app, &key, b, json!({ "reason": "other" })).await;
    assert_eq!((status, third["status"].as_str()), (201, Some("requested")));

    // The list: newest first, filtered, paged; one return; unknown and another tenant's 404.
    let (_, all) = admin(&app, &key, Method::GET, "/v1/admin/returns", None).await;
    let ids: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [third["id"].as_str().unwrap(), &second_id, &id]);
    let (_, page) = admin(&app, &key, Method::GET, "/v1/admin/returns?limit=2", None).await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = admin(
        &app,
        &key,
        Method::GET,
        &format!("/v1/admin/returns?limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(rest["items"][0]["id"], id.as_str());
    assert_eq!(rest["next_cursor"], Value::Null);
    for (query, expected) in [
        ("status=denied".to_owned(), vec![second_id.as_str()]),
        (format!("sale_id={a}"), vec![id.as_str()]),
        (
            format!(
                "buyer_id={buyer}&status=approved&contract_id={contract_id}&partner_id={}",
                exchange.partner_id
            ),
            vec![id.as_str()],
        ),
        ("from=2026-11-11T00:00:00Z".to_owned(), vec![]),
        (format!("buyer_id={}", Uuid::now_v7()), vec![]),
    ] {
        let (status, page) = admin(
            &app,
            &key,
            Method::GET,
            &format!("/v1/admin/returns?{query}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{query}");
        let got: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(got, expected, "{query}");
    }
    let (status, problem) = admin(
        &app,
        &key,
        Method::GET,
        "/v1/admin/returns?status=open",
        None,
    )
    .await;
    assert_eq!(
        (status, problem["errors"][0]["pointer"].as_str()),
        (422, Some("/query/status"))
    );
    let (status, one) = admin(
        &app,
        &key,
        Method::GET,
        &format!("/v1/admin/returns/{id}"),
        None,
    )
    .await;
    assert_eq!((status, &one), (200, &answers[0].1));
    let other = Exchange::create(&pool, "exclusive").await;
    for (method, path) in [
        (Method::GET, format!("/v1/admin/returns/{id}")),
        (Method::POST, format!("/v1/admin/returns/{id}/approve")),
        (Method::POST, format!("/v1/admin/returns/{id}/deny")),
        (Method::GET, format!("/v1/admin/returns/{}", Uuid::now_v7())),
        (
            Method::POST,
            format!("/v1/admin/returns/{}/approve", Uuid::now_v7()),
        ),
    ] {
        let key = if path.contains(&id) {
            &other.admin_key
        } else {
            &key
        };
        let (status, _) = admin(&app, key, method.clone(), &path, None).await;
        assert_eq!(status, 404, "{method} {path}");
    }
    let (_, theirs) = admin(
        &app,
        &other.admin_key,
        Method::GET,
        "/v1/admin/returns",
        None,
    )
    .await;
    assert_eq!(theirs["items"], json!([]));

    // Counted by status, and by reason when it is a default one: this contract's own code
    // counts as `custom` (other tests count there too), never as a series of its own.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for status in ["requested", "approved"] {
        let series = format!("gavel_returns_total{{reason=\"custom\",status=\"{status}\"}} ");
        assert!(metrics.contains(&series), "{series} in\n{metrics}");
    }
    assert!(!metrics.contains("h2_race_probe"), "{metrics}");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn auto_approve_approves_in_the_request_and_exchange_absorbs_keeps_the_payout(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let server = MockServer::start().await;
    let accepts = delivery(&server, "/leads", "accepted").await;
    let buyer = exchange.buyer(1_000_000).await;
    let mut settings = allowed(100, &["bad_phone"]);
    settings["auto_approve"] = json!(true);
    contract(
        &exchange,
        buyer,
        5000,
        (18, 100),
        settings,
        json!([]),
        &accepts,
    )
    .await;
    let clock = Arc::new(FixedClock::new(start()));
    let app = spawn(&pool, &clock).await;
    let key = exchange.admin_key.clone();
    let (status, offer) = admin(
        &app,
        &key,
        Method::PATCH,
        &format!("/v1/admin/offers/{}", exchange.offer_id),
        Some(json!({ "return_policy": "exchange_absorbs" })),
    )
    .await;
    assert_eq!(
        (status, offer["return_policy"].as_str()),
        (200, Some("exchange_absorbs"))
    );
    let (status, problem) = admin(
        &app,
        &key,
        Method::PATCH,
        &format!("/v1/admin/offers/{}", exchange.offer_id),
        Some(json!({ "return_policy": "refund" })),
    )
    .await;
    assert_eq!(
        (status, problem["errors"][0]["pointer"].as_str()),
        (422, Some("/return_policy"))
    );
    let (sale, _) = sell(&app, &exchange, 30, 1).await;
    let (before, _) = exchange.buyer_books(buyer).await;
    let (status, approved) =
        request_return(&app, &key, sale, json!({ "reason": "bad_phone" })).await;
    assert_eq!(status, 201, "{approved}");
    assert_eq!(approved["status"], "approved");
    assert_eq!(cents(&approved["payout_reversed"]), 0);
    assert!(approved["decided_at"].is_string());
    assert_eq!(sale_status(&pool, sale).await, "returned");
    let rid: Uuid = approved["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        return_entries(&pool, sale).await,
        [("buyer".to_owned(), 5000, rid)],
        "the partner keeps its payout"
    );
    assert_eq!(
        exchange.buyer_books(buyer).await,
        (before + 5000, before + 5000)
    );
    assert_eq!(partner_books(&exchange).await, (3500, 3500));
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn racing_requests_never_overshoot_the_contracts_limit(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = big_pool(options, connect).await;
    let exchange = Exchange::create(&pool, "exclusive").await;
    let server = MockServer::start().await;
    let accepts = delivery(&server, "/leads", "accepted").await;
    let buyer = exchange.buyer(10_000_000).await;
    contract(
        &exchange,
        buyer,
        3000,
        (18, 100),
        allowed(10, &["other"]),
        json!([]),
        &accepts,
    )
    .await;
    let clock = Arc::new(FixedClock::new(start()));
    let app = spawn(&pool, &clock).await;
    let key = exchange.admin_key.clone();
    let mut sales = Vec::new();
    for n in 0..30 {
        sales.push(sell(&app, &exchange, 30, n).await.0);
    }
    // 30 sales at 10 %: 3 returns. Twelve requests at once on twelve sales.
    let answers = join_all(
        sales[..12]
            .iter()
            .map(|sale| request_return(&app, &key, *sale, json!({ "reason": "other" }))),
    )
    .await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(created.len(), 3, "{answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != 201) {
        assert_eq!(
            (*status, body["code"].as_str()),
            (409, Some("return_limit_reached"))
        );
    }
    // Eight requests at once on another sale while the limit is reached: all refused, none
    // slips past it.
    let answers = join_all(
        (0..8).map(|_| request_return(&app, &key, sales[20], json!({ "reason": "other" }))),
    )
    .await;
    assert!(
        answers
            .iter()
            .all(|(status, body)| *status == 409 && body["code"] == "return_limit_reached"),
        "{answers:?}"
    );
    // A denial frees its place: eight requests at once on that sale make one return.
    let id = created[0]["id"].as_str().unwrap();
    assert_eq!(decide(&app, &key, id, "deny").await.0, 200);
    let answers = join_all(
        (0..8).map(|_| request_return(&app, &key, sales[20], json!({ "reason": "other" }))),
    )
    .await;
    let mut statuses: Vec<(u16, String)> = answers
        .iter()
        .map(|(s, b)| (*s, b["code"].as_str().unwrap_or("").to_owned()))
        .collect();
    statuses.sort();
    assert_eq!(statuses[0], (201, String::new()));
    assert!(
        statuses[1..]
            .iter()
            .all(|(s, code)| *s == 409 && code == "already_returned"),
        "{statuses:?}"
    );
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM returns WHERE tenant_id = $1 AND status <> 'denied'",
    )
    .bind(exchange.tenant_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(open, 3);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_sale_the_sweep_sold_days_after_its_creation_counts_in_the_period_it_was_sold(
    pool: PgPool,
) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let server = MockServer::start().await;
    let accepts = delivery(&server, "/leads", "accepted").await;
    let buyer = exchange.buyer(1_000_000).await;
    contract(
        &exchange,
        buyer,
        3000,
        (18, 100),
        allowed(100, &["other"]),
        json!([]),
        &accepts,
    )
    .await;
    let clock = Arc::new(FixedClock::new(start()));
    let app = spawn(&pool, &clock).await;
    let key = exchange.admin_key.clone();
    let (sale, status) = sell(&app, &exchange, 30, 1).await;
    assert_eq!(status, "sold");
    // Created on October 27 and left pending (Gavel down) until the sweep sold it on
    // November 10: it is November's sale, the only one, so 100 % allows one return.
    sqlx::query("UPDATE lead_sales SET created_at = '2026-10-27T15:00:00Z' WHERE id = $1")
        .bind(sale)
        .execute(&pool)
        .await
        .unwrap();
    let (status, body) = request_return(&app, &key, sale, json!({ "reason": "other" })).await;
    assert_eq!(status, 201, "{body}");
}

/// Sums by SQL for the conservation checks.
async fn sum(pool: &PgPool, tenant: Uuid, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(tenant)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn money_is_conserved_after_a_random_mix_of_sales_funds_payments_returns_and_decisions(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = big_pool(options, connect).await;
    let exchange = Exchange::create(&pool, "exclusive").await;
    let server = MockServer::start().await;
    let accepts = delivery(&server, "/leads", "accepted").await;
    let rejects = delivery(&server, "/nope", "rejected").await;
    let reasons = ["bad_phone", "other"];
    let mut buyers = Vec::new();
    let mut contracts = Vec::new();
    // Four age bands: three buyers whose deliveries accept (one with caps), one that rejects
    // (its sales are released).
    for (n, (low, high, price)) in [
        (18, 30, 3000),
        (30, 45, 4550),
        (45, 60, 6001),
        (60, 100, 2000),
    ]
    .into_iter()
    .enumerate()
    {
        let buyer = exchange.buyer(200_000).await;
        let caps = if n == 1 {
            json!([{ "period": "day", "max_leads": 1000 }])
        } else {
            json!([])
        };
        let endpoint = if n == 3 { &rejects } else { &accepts };
        let mut settings = allowed(100, &reasons);
        settings["auto_approve"] = json!(n == 2);
        contracts.push(
            contract(
                &exchange,
                buyer,
                price,
                (low, high),
                settings,
                caps,
                endpoint,
            )
            .await,
        );
        buyers.push(buyer);
    }
    let clock = Arc::new(FixedClock::new(start()));
    let app = spawn(&pool, &clock).await;
    let key = exchange.admin_key.clone();
    let mut rng = StdRng::seed_from_u64(18);
    let mut sold: Vec<Uuid> = Vec::new();
    let mut requested: Vec<String> = Vec::new();
    let mut payments = 0;
    for step in 0..100 {
        match rng.random_range(0..11) {
            0..4 => {
                let age = rng.random_range(18..100);
                let (sale, status) = sell(&app, &exchange, age, step).await;
                if status == "sold" {
                    sold.push(sale);
                }
            }
            4 => {
                let buyer = buyers[rng.random_range(0..buyers.len())];
                let amount = rng.random_range(-5_000..20_000) as f64 / 100.0;
                if amount != 0.0 {
                    let (status, _) = admin(
                        &app,
                        &key,
                        Method::POST,
                        &format!("/v1/admin/buyers/{buyer}/funds"),
                        Some(json!({ "amount": amount })),
                    )
                    .await;
                    assert_eq!(status, 201);
                }
            }
            5..7 if !sold.is_empty() => {
                let sale = sold[rng.random_range(0..sold.len())];
                let reason = reasons[rng.random_range(0..2)];
                let (status, body) =
                    request_return(&app, &key, sale, json!({ "reason": reason })).await;
                match status {
                    201 if body["status"] == "requested" => {
                        requested.push(body["id"].as_str().unwrap().to_owned());
                    }
                    201 => {}
                    409 => assert!(
                        ["already_returned", "sale_not_returnable"]
                            .contains(&body["code"].as_str().unwrap()),
                        "{body}"
                    ),
                    _ => panic!("{status} {body}"),
                }
            }
            7 if !requested.is_empty() => {
                // Racing approvals, sometimes a denial among them.
                let id = requested.swap_remove(rng.random_range(0..requested.len()));
                let deny_too = rng.random_bool(0.3);
                let decisions = (0..4).map(|n| {
                    let decision = if deny_too && n == 2 {
                        "deny"
                    } else {
                        "approve"
                    };
                    decide(&app, &key, &id, decision)
                });
                for (status, body) in join_all(decisions).await {
                    assert!(
                        status == 200 || body["code"] == "return_already_decided",
                        "{status} {body}"
                    );
                }
            }
            8 if !requested.is_empty() => {
                let id = requested.swap_remove(rng.random_range(0..requested.len()));
                assert_eq!(decide(&app, &key, &id, "deny").await.0, 200);
            }
            9 => {
                let policy = if rng.random_bool(0.5) {
                    "reverse_payout"
                } else {
                    "exchange_absorbs"
                };
                sqlx::query("UPDATE offers SET return_policy = $2 WHERE id = $1")
                    .bind(exchange.offer_id)
                    .bind(policy)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            10 => {
                // A payment out of part of what the partner is owed, or a correction.
                let owed = partner_books(&exchange).await.0;
                let (path, amount) = if owed > 100 && rng.random_bool(0.7) {
                    ("payments", rng.random_range(1..=owed))
                } else {
                    ("adjustments", rng.random_range(-500..500i64))
                };
                if amount != 0 {
                    let amount = format!(
                        "{}{}.{:02}",
                        if amount < 0 { "-" } else { "" },
                        amount.abs() / 100,
                        amount.abs() % 100
                    );
                    let (status, body) = admin(
                        &app,
                        &key,
                        Method::POST,
                        &format!("/v1/admin/partners/{}/{path}", exchange.partner_id),
                        Some(json!({ "amount": serde_json::from_str::<Value>(&amount).unwrap(), "note": "mix" })),
                    )
                    .await;
                    assert_eq!(status, 201, "{path} {amount}: {body}");
                    payments += usize::from(path == "payments");
                }
            }
            _ => {}
        }
    }
    let tenant = exchange.tenant_id;
    let approved = sum(
        &pool,
        tenant,
        "SELECT count(*) FROM returns WHERE tenant_id = $1 AND status = 'approved'",
    )
    .await;
    assert!(approved >= 3, "the mix approved {approved} returns");
    assert!(
        sum(
            &pool,
            tenant,
            "SELECT count(*) FROM returns WHERE tenant_id = $1 AND status = 'denied'"
        )
        .await
            >= 1
    );
    // Every buyer: balance == the sum of its ledger.
    for buyer in &buyers {
        let (ledger, balance) = exchange.buyer_books(*buyer).await;
        assert_eq!(balance, ledger, "buyer {buyer}");
    }
    // The partner: its balance is its ledger's sum: payouts, less reversals and payments.
    let (balance, ledger) = partner_books(&exchange).await;
    assert_eq!(balance, ledger);
    assert!(payments > 0, "the mix paid the partner");
    // Across the tenant: the buyers' sale, release and return entries are what the sales
    // charged net of the approved returns; the partner's are the payouts net of reversals.
    let buyer_flows = sum(&pool, tenant, "SELECT coalesce(sum(amount_cents), 0)::bigint FROM ledger_entries WHERE tenant_id = $1 AND account = 'buyer' AND kind IN ('sale', 'release', 'return')").await;
    let charged = sum(&pool, tenant, "SELECT coalesce(sum(price_cents), 0)::bigint FROM lead_sales WHERE tenant_id = $1 AND status IN ('sold', 'returned') AND NOT test").await;
    let refunded = sum(&pool, tenant, "SELECT coalesce(sum(price_cents), 0)::bigint FROM returns WHERE tenant_id = $1 AND status = 'approved'").await;
    assert_eq!(buyer_flows, -charged + refunded);
    let partner_sales = sum(&pool, tenant, "SELECT coalesce(sum(amount_cents), 0)::bigint FROM ledger_entries WHERE tenant_id = $1 AND account = 'partner' AND kind = 'sale'").await;
    let payouts = sum(&pool, tenant, "SELECT coalesce(sum(payout_cents), 0)::bigint FROM lead_sales WHERE tenant_id = $1 AND status IN ('sold', 'returned') AND NOT test").await;
    assert_eq!(partner_sales, payouts);
    let partner_returns = sum(&pool, tenant, "SELECT coalesce(sum(amount_cents), 0)::bigint FROM ledger_entries WHERE tenant_id = $1 AND account = 'partner' AND kind = 'return'").await;
    let reversed = sum(&pool, tenant, "SELECT coalesce(sum(payout_reversed_cents), 0)::bigint FROM returns WHERE tenant_id = $1 AND status = 'approved'").await;
    assert_eq!(partner_returns, -reversed);
    assert!(reversed > 0, "some approvals reversed a payout");
    // A sale is returned exactly when one approved return names it, with one buyer entry.
    let mismatched = sum(&pool, tenant, "SELECT count(*) FROM lead_sales s WHERE s.tenant_id = $1 AND (s.status = 'returned') <> EXISTS (SELECT 1 FROM returns r WHERE r.tenant_id = s.tenant_id AND r.sale_id = s.id AND r.status = 'approved')").await;
    assert_eq!(mismatched, 0);
    let entries = sum(&pool, tenant, "SELECT count(*) FROM ledger_entries WHERE tenant_id = $1 AND account = 'buyer' AND kind = 'return'").await;
    assert_eq!(entries, approved);
    // The capped contract's counter holds the leads it kept.
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM lead_sales WHERE contract_id = $1 AND status = 'sold'",
    )
    .bind(contracts[1])
    .fetch_one(&pool)
    .await
    .unwrap();
    let counted: Option<i32> =
        sqlx::query_scalar("SELECT leads FROM cap_counters WHERE contract_id = $1")
            .bind(contracts[1])
            .fetch_optional(&pool)
            .await
            .unwrap();
    assert_eq!(i64::from(counted.unwrap_or(0)), kept);
}
