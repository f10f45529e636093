//! Routing (docs/revenue-recovery.md §2–3: the waterfall, round robin, weighted) and win and
//! loss notices (§7), with buyers and their notice endpoints as real HTTP servers on 127.0.0.1.

use std::time::{Duration, Instant};

use gavel::money::{ExtraDecimals, Money};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, ping_lead};
use crate::harness::{TestApp, spawn_app};

/// A delivery endpoint at `route` answering `{"status": status}`; accepted when "accepted".
async fn delivery(server: &MockServer, route: &str, status: &str) -> Value {
    Mock::given(method("POST"))
        .and(path(route))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": status })))
        .mount(server)
        .await;
    json!({ "url": format!("{}{route}", server.uri()), "timeout_ms": 2000,
            "accept": { "path": "/status", "equals": "accepted" } })
}

/// A fixed exclusive price, delivered to `delivery`, at `priority`.
fn fixed(cents: i64, priority: i32, delivery: Value) -> ContractSpec {
    ContractSpec {
        priority,
        delivery: Some(delivery),
        ..ContractSpec::fixed(Some(cents), None)
    }
}

async fn set_offer(exchange: &Exchange, distribution: &str, strategy: &str) {
    sqlx::query("UPDATE offers SET distribution = $2, strategy = $3 WHERE id = $1")
        .bind(exchange.offer_id)
        .bind(distribution)
        .bind(strategy)
        .execute(&exchange.pool)
        .await
        .unwrap();
}

async fn set_notices(exchange: &Exchange, contract: Uuid, win: Option<&str>, loss: Option<&str>) {
    sqlx::query("UPDATE contracts SET win_url = $2, loss_url = $3 WHERE id = $1")
        .bind(contract)
        .bind(win)
        .bind(loss)
        .execute(&exchange.pool)
        .await
        .unwrap();
}

async fn ping(app: &TestApp, exchange: &Exchange) -> Value {
    let (status, answer) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("bids")),
        "{answer}"
    );
    answer
}

async fn post(app: &TestApp, exchange: &Exchange, ping: &Value) -> Value {
    let body = json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() });
    let (status, answer) = app.post(&exchange.posting_key, body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The contract that won `ping`, from its explain.
async fn winner_of(app: &TestApp, exchange: &Exchange, ping: &Value) -> Uuid {
    let (status, view) = app
        .ping_view(&exchange.admin_key, ping["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(status, 200);
    view["winners"][0]["contract_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn round_robin_sells_to_each_contract_of_a_tier_in_turn(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    set_offer(&exchange, "auction", "round_robin").await;
    let buyers = MockServer::start().await;
    let accepts = delivery(&buyers, "/leads", "accepted").await;
    let mut contracts = Vec::new();
    for cents in [5000, 3000, 1000] {
        let (_, contract) = exchange
            .buyer_with(100_000, fixed(cents, 0, accepts.clone()))
            .await;
        contracts.push(contract);
    }
    let app = spawn_app(pool.clone()).await;

    let mut sold = Vec::new();
    for _ in 0..3 {
        let ping = ping(&app, &exchange).await;
        sold.push(winner_of(&app, &exchange, &ping).await);
        let answer = post(&app, &exchange, &ping).await;
        assert_eq!(answer["status"], "sold", "{answer}");
    }
    // Each contract sold once, whatever its price: the highest price would have sold thrice.
    sold.sort();
    let mut expected = contracts.clone();
    expected.sort();
    assert_eq!(sold, expected);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn round_robin_turns_at_the_ping_before_any_sale(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    set_offer(&exchange, "auction", "round_robin").await;
    let mut contracts = Vec::new();
    for cents in [5000, 3000, 1000] {
        let (_, contract) = exchange
            .buyer_with(100_000, ContractSpec::fixed(Some(cents), None))
            .await;
        contracts.push(contract);
    }
    let app = spawn_app(pool.clone()).await;

    // Pings in a row, none posted (no sale moves a contract's last sale): each contract wins
    // one in turn, then the first again.
    let mut won = Vec::new();
    for _ in 0..4 {
        let ping = ping(&app, &exchange).await;
        won.push(winner_of(&app, &exchange, &ping).await);
    }
    let mut first_three = won[..3].to_vec();
    first_three.sort();
    let mut expected = contracts.clone();
    expected.sort();
    assert_eq!(first_three, expected, "{won:?}");
    assert_eq!(won[3], won[0]);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_ping_explains_the_routing_it_ran_with(pool: PgPool) {
    let weighted = Exchange::create(&pool, "exclusive").await;
    set_offer(&weighted, "auction", "weighted").await;
    weighted
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), None))
        .await;
    let default = Exchange::create(&pool, "exclusive").await;
    default
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), None))
        .await;
    let app = spawn_app(pool.clone()).await;

    let routed = ping(&app, &weighted).await;
    let plain = ping(&app, &default).await;
    let (_, view) = app
        .ping_view(&weighted.admin_key, routed["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(
        (view["distribution"].as_str(), view["strategy"].as_str()),
        (Some("auction"), Some("weighted")),
        "{view}"
    );
    let (_, view) = app
        .ping_view(&default.admin_key, plain["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(
        (view["distribution"].as_str(), view["strategy"].as_str()),
        (Some("auction"), Some("price"))
    );
    // A ping of the defaults records nothing more.
    let recorded: Vec<Option<String>> =
        sqlx::query_scalar("SELECT routing FROM posting_log WHERE kind = 'ping' ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(recorded, [Some("auction/weighted".to_owned()), None]);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_waterfall_direct_post_sells_to_the_highest_priority_tier(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    set_offer(&exchange, "waterfall", "price").await;
    let top = MockServer::start().await;
    let rich = MockServer::start().await;
    let top_delivery = delivery(&top, "/leads", "accepted").await;
    let rich_delivery = delivery(&rich, "/leads", "accepted").await;
    let (top_buyer, _) = exchange
        .buyer_with(100_000, fixed(1000, 2, top_delivery))
        .await;
    exchange
        .buyer_with(100_000, fixed(9000, 0, rich_delivery))
        .await;
    let app = spawn_app(pool.clone()).await;

    let body = json!({ "lead": full_lead(), "consent": consent() });
    let (status, _, text) = app
        .post_raw("/v1/leads", &exchange.posting_key, &body)
        .await;
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("sold")),
        "{answer}"
    );
    // The lower price of the higher tier sold (70 % of 10.00), and only its buyer had the lead.
    let payout = Money::from_json(&answer["payout"], ExtraDecimals::Reject).unwrap();
    assert_eq!(payout.cents(), 700);
    assert_eq!(top.received_requests().await.unwrap().len(), 1);
    assert!(rich.received_requests().await.unwrap().is_empty());
    assert_eq!(exchange.buyer_books(top_buyer).await, (99_000, 99_000));
}

/// Waits (up to a deadline) until `server` received `count` requests at `route`, then a
/// moment more to see that no more come; returns them.
async fn notices_at(server: &MockServer, route: &str, count: usize) -> Vec<Request> {
    let at = |requests: Vec<Request>| -> Vec<Request> {
        requests
            .into_iter()
            .filter(|r| r.url.path() == route)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = at(server.received_requests().await.unwrap());
        if got.len() >= count || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    at(server.received_requests().await.unwrap())
}

fn query(request: &Request) -> std::collections::HashMap<String, String> {
    request.url.query_pairs().into_owned().collect()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_winner_gets_a_win_notice_and_an_outbid_bidder_a_loss_notice_once_each(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyers = MockServer::start().await;
    let notices = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&notices)
        .await;
    Mock::given(method("POST"))
        .and(path("/bid"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "exclusive_bid": 20.00, "ref": "their ref/1" })),
        )
        .mount(&buyers)
        .await;
    let accepts = delivery(&buyers, "/leads", "accepted").await;
    let (_, winner) = exchange.buyer_with(100_000, fixed(5000, 0, accepts)).await;
    let (_, rtb) = exchange
        .buyer_with(
            100_000,
            ContractSpec::rtb(format!("{}/bid", buyers.uri()), 1000),
        )
        .await;
    let base = notices.uri();
    set_notices(
        &exchange,
        winner,
        Some(&format!(
            "{base}/win?ping={{{{ ping_id }}}}&lead={{{{ lead_id }}}}&price={{{{ price }}}}&type={{{{ sale_type }}}}"
        )),
        Some(&format!("{base}/lost?reason={{{{ reason }}}}")),
    )
    .await;
    set_notices(
        &exchange,
        rtb,
        Some(&format!("{base}/rtb-win")),
        Some(&format!(
            "{base}/loss?ping={{{{ ping_id }}}}&reason={{{{ reason }}}}&ref={{{{ ref }}}}&price={{{{ price }}}}&c={{{{ contract_id }}}}"
        )),
    )
    .await;
    let app = spawn_app(pool.clone()).await;

    let ping = ping(&app, &exchange).await;
    let ping_id = ping["ping_id"].as_str().unwrap().to_owned();
    let losses = notices_at(&notices, "/loss", 1).await;
    assert_eq!(losses.len(), 1, "one loss notice");
    let loss = query(&losses[0]);
    assert_eq!(loss["reason"], "outbid");
    assert_eq!(loss["ref"], "their ref/1");
    assert_eq!(loss["price"], "20.00");
    assert_eq!(loss["ping"], ping_id);
    assert_eq!(loss["c"], rtb.to_string());

    let answer = post(&app, &exchange, &ping).await;
    assert_eq!(answer["status"], "sold", "{answer}");
    let wins = notices_at(&notices, "/win", 1).await;
    assert_eq!(wins.len(), 1, "one win notice");
    let win = query(&wins[0]);
    assert_eq!(
        (win["ping"].as_str(), win["lead"].as_str()),
        (ping_id.as_str(), answer["lead_id"].as_str().unwrap())
    );
    assert_eq!(
        (win["price"].as_str(), win["type"].as_str()),
        ("50.00", "exclusive")
    );
    // Nothing else: no loss for the winner, no win for the outbid contract, no repeats.
    let all = notices.received_requests().await.unwrap();
    assert_eq!(
        all.len(),
        2,
        "{:?}",
        all.iter().map(|r| r.url.to_string()).collect::<Vec<_>>()
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gavel_notices_total{kind=\"win\",outcome=\"sent\"}"),
        "{metrics}"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_rejected_winner_gets_a_loss_notice_with_its_sale_status(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyers = MockServer::start().await;
    let notices = MockServer::start().await;
    // The notice endpoint fails once, then answers: the notice is tried again.
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&notices)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&notices)
        .await;
    let rejects = delivery(&buyers, "/leads", "rejected").await;
    let (_, contract) = exchange.buyer_with(100_000, fixed(5000, 0, rejects)).await;
    let base = notices.uri();
    set_notices(
        &exchange,
        contract,
        Some(&format!("{base}/win")),
        Some(&format!(
            "{base}/loss?reason={{{{ reason }}}}&lead={{{{ lead_id }}}}"
        )),
    )
    .await;
    let app = spawn_app(pool.clone()).await;

    let ping = ping(&app, &exchange).await;
    let answer = post(&app, &exchange, &ping).await;
    assert_eq!(answer["results"][0]["status"], "rejected", "{answer}");
    let losses = notices_at(&notices, "/loss", 2).await;
    // The 503, then the notice itself.
    assert_eq!(losses.len(), 2);
    let loss = query(&losses[1]);
    assert_eq!(loss["reason"], "rejected");
    assert_eq!(loss["lead"], "", "a loss names no lead");
    assert!(notices_at(&notices, "/win", 0).await.is_empty());
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn routing_and_notice_urls_are_checked_when_saved(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyer = exchange.buyer(0).await;
    let app = spawn_app(pool.clone()).await;
    let key = &exchange.admin_key;

    let offer = |mode: &str, distribution: &str| {
        json!({ "name": format!("{mode}-{distribution}"), "mode": mode,
                "distribution": distribution, "strategy": "weighted",
                "fields": crate::fixtures::offer_fields() })
    };
    let (status, answer) = app
        .admin(
            Method::POST,
            "/v1/admin/offers",
            key,
            Some(offer("hybrid", "waterfall")),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["errors"][0]["pointer"], "/distribution", "{answer}");
    let (status, answer) = app
        .admin(
            Method::POST,
            "/v1/admin/offers",
            key,
            Some(offer("multisell", "waterfall")),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        (answer["distribution"].as_str(), answer["strategy"].as_str()),
        (Some("waterfall"), Some("weighted"))
    );

    let contract = |extra: Value| {
        let mut body = json!({ "buyer_id": buyer, "offer_id": exchange.offer_id, "name": "c",
                               "pricing": { "type": "fixed", "exclusive": 10.00 },
                               "delivery": { "url": "http://127.0.0.1:9/leads" } });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (extra, pointer) in [
        (
            json!({ "win_url": "http://b.example/{{ lead.email }}" }),
            "/win_url",
        ),
        (
            json!({ "loss_url": "http://b.example/{{ reason" }),
            "/loss_url",
        ),
        (
            json!({ "loss_url": "ftp://b.example/{{ reason }}" }),
            "/loss_url",
        ),
        (json!({ "weight": 1001 }), "/weight"),
    ] {
        let (status, answer) = app
            .admin(
                Method::POST,
                "/v1/admin/contracts",
                key,
                Some(contract(extra)),
            )
            .await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["errors"][0]["pointer"], pointer, "{answer}");
    }
    let (status, answer) = app
        .admin(
            Method::POST,
            "/v1/admin/contracts",
            key,
            Some(contract(json!({ "weight": 0,
                "win_url": "https://b.example/win?p={{ price }}&ref={{ ref }}" }))),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        (&answer["weight"], &answer["win_url"], &answer["loss_url"]),
        (
            &json!(0),
            &json!("https://b.example/win?p={{ price }}&ref={{ ref }}"),
            &Value::Null
        )
    );
}
