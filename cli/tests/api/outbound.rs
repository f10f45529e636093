//! The outbound address policy: internal addresses refused when a contract is saved and again
//! when Gavel calls (a URL written in SQL, a name resolving to loopback), redirects not
//! followed, and calls working where `outbound_allow` allows them.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, outcome_of, ping_lead};
use crate::harness::{TestApp, spawn_app, spawn_app_with, test_settings};

/// A Gavel that allows nothing internal, as production runs by default.
async fn spawn_strict_app(pool: PgPool) -> TestApp {
    let mut settings = test_settings();
    settings.outbound_allow.clear();
    spawn_app_with(pool, settings, axum::Router::new()).await
}

fn contract_body(exchange: &Exchange, buyer: Uuid, rtb_url: &str, delivery_url: &str) -> Value {
    json!({
        "buyer_id": buyer, "offer_id": exchange.offer_id, "name": "Outbound",
        "pricing": { "type": "rtb", "url": rtb_url, "timeout_ms": 300 },
        "delivery": { "url": delivery_url }
    })
}

/// The pointers of a 422 `invalid_config` answer.
fn refused_pointers(status: u16, answer: &Value) -> Vec<String> {
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["code"], "invalid_config", "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("refused by the outbound address policy"),
        "{answer}"
    );
    answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap().to_owned())
        .collect()
}

async fn contract_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM contracts")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn internal_addresses_in_every_spelling_are_refused_when_a_contract_is_saved(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyer = exchange.buyer(100_000).await;
    let app = spawn_strict_app(pool.clone()).await;
    let database_port = pool.connect_options().get_port();
    let gavel = app.address;
    let targets = [
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/bid".to_owned(),
        "http://[::ffff:169.254.169.254]/latest/meta-data/".to_owned(),
        "http://0xa9fea9fe/latest/meta-data/".to_owned(),
        "http://2852039166/latest/meta-data/".to_owned(),
        "http://metadata.google.internal/computeMetadata/v1/".to_owned(),
        format!("http://localhost:{}/", gavel.port()),
        format!("http://0.0.0.0:{}/", gavel.port()),
        "http://[::1]/".to_owned(),
        format!("http://127.0.0.1:{database_port}/"),
        format!(
            "http://{gavel}/v1/admin/campaigns/{}/rotate-key",
            exchange.campaign_id
        ),
    ];
    let public = "https://buyer.example/leads";
    for target in &targets {
        let (status, answer) = app
            .admin(
                Method::POST,
                "/v1/admin/contracts",
                &exchange.admin_key,
                Some(contract_body(&exchange, buyer, target, public)),
            )
            .await;
        assert_eq!(
            refused_pointers(status, &answer),
            ["/pricing/url"],
            "{target}"
        );
        let (status, answer) = app
            .admin(
                Method::POST,
                "/v1/admin/contracts",
                &exchange.admin_key,
                Some(contract_body(&exchange, buyer, public, target)),
            )
            .await;
        assert_eq!(
            refused_pointers(status, &answer),
            ["/delivery/url"],
            "{target}"
        );
    }
    assert_eq!(contract_count(&pool).await, 0, "nothing written");

    // A public name is accepted (it does not resolve here: checked again at each call), and a
    // patch to an internal address is refused without changing the contract.
    let (status, created) = app
        .admin(
            Method::POST,
            "/v1/admin/contracts",
            &exchange.admin_key,
            Some(contract_body(&exchange, buyer, public, public)),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let contract = format!("/v1/admin/contracts/{}", created["id"].as_str().unwrap());
    let (status, answer) = app
        .admin(
            Method::PATCH,
            &contract,
            &exchange.admin_key,
            Some(json!({ "delivery": { "url": "http://[::ffff:a9fe:a9fe]/" },
                         "pricing": { "type": "rtb", "url": "http://0251.0376.0251.0376/" } })),
        )
        .await;
    assert_eq!(
        refused_pointers(status, &answer),
        ["/pricing/url", "/delivery/url"]
    );
    let (_, current) = app
        .admin(Method::GET, &contract, &exchange.admin_key, None)
        .await;
    assert_eq!(current["pricing"]["url"], public);
    assert_eq!(current["delivery"]["url"], public);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn addresses_written_in_sql_are_refused_when_gavel_calls(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyer = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "exclusive_bid": 40 })))
        .mount(&buyer)
        .await;
    let port = buyer.address().port();
    // Written directly in the database: the admin API's check is not run.
    let (_, by_name) = exchange
        .buyer_with(
            100_000,
            ContractSpec::rtb(format!("http://localhost:{port}/bid"), 500),
        )
        .await;
    let (_, by_address) = exchange
        .buyer_with(
            100_000,
            ContractSpec::rtb(format!("http://127.0.0.1:{port}/bid"), 500),
        )
        .await;
    let app = spawn_strict_app(pool.clone()).await;

    let (status, answer) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "no_bids", "{answer}");
    assert!(
        buyer.received_requests().await.unwrap().is_empty(),
        "the buyer on 127.0.0.1 received nothing"
    );
    let (_, view) = app
        .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
        .await;
    let named = outcome_of(&view, by_name);
    assert_eq!(named["reason"], "rtb_error", "{named}");
    assert_eq!(
        named["detail"],
        "refused by the outbound address policy: the host name resolves to a loopback address"
    );
    let literal = outcome_of(&view, by_address);
    assert_eq!(literal["reason"], "rtb_error", "{literal}");
    assert_eq!(
        literal["detail"],
        "refused by the outbound address policy: the host is a loopback address"
    );

    // The same configuration with 127.0.0.1 allowed: the buyer is called and bids.
    let allowed = spawn_app(pool.clone()).await;
    let (status, answer) = allowed
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "bids", "{answer}");
    assert!(!buyer.received_requests().await.unwrap().is_empty());
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_buyers_redirect_is_not_followed(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "exclusive_bid": 40 })))
        .mount(&target)
        .await;
    let redirecting = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/bid"))
        .respond_with(
            ResponseTemplate::new(307).insert_header("location", format!("{}/bid", target.uri())),
        )
        .mount(&redirecting)
        .await;
    let (_, contract) = exchange
        .buyer_with(
            100_000,
            ContractSpec::rtb(format!("{}/bid", redirecting.uri()), 500),
        )
        .await;
    // 127.0.0.1 allowed: only the redirect policy stands between the two servers.
    let app = spawn_app(pool.clone()).await;

    let (status, answer) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "no_bids", "{answer}");
    assert_eq!(redirecting.received_requests().await.unwrap().len(), 1);
    assert!(
        target.received_requests().await.unwrap().is_empty(),
        "the redirect's target received nothing"
    );
    let (_, view) = app
        .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
        .await;
    let outcome = outcome_of(&view, contract);
    assert_eq!(outcome["reason"], "rtb_error", "{outcome}");
    assert_eq!(outcome["detail"], "HTTP 307");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_delivery_to_a_refused_address_fails_and_the_buyer_receives_nothing(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyer = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": "accepted" })))
        .mount(&buyer)
        .await;
    let (buyer_id, _) = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                delivery: Some(
                    json!({ "url": format!("http://localhost:{}/leads", buyer.address().port()) }),
                ),
                ..ContractSpec::fixed(Some(4000), None)
            },
        )
        .await;
    let app = spawn_strict_app(pool.clone()).await;

    let (status, ping) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(
        (status, ping["status"].as_str()),
        (200, Some("bids")),
        "{ping}"
    );
    let (status, answer) = app
        .post(
            &exchange.posting_key,
            json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "unsold", "{answer}");
    assert_eq!(answer["results"][0]["status"], "failed");
    assert_eq!(
        answer["results"][0]["reason"],
        "delivery failed: refused by the outbound address policy: the host name resolves to a loopback address"
    );
    assert!(buyer.received_requests().await.unwrap().is_empty());
    assert_eq!(
        exchange.buyer_books(buyer_id).await,
        (100_000, 100_000),
        "the buyer is not charged"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_contract_may_not_make_gavel_call_itself(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyer = exchange.buyer(100_000).await;
    let mut settings = test_settings();
    settings.public_url = Some("https://gavel.example.com".to_owned());
    let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;
    let (status, answer) = app
        .admin(
            Method::POST,
            "/v1/admin/contracts",
            &exchange.admin_key,
            Some(contract_body(
                &exchange,
                buyer,
                "https://GAVEL.example.com/v1/ping",
                "https://buyer.example/leads",
            )),
        )
        .await;
    assert_eq!(refused_pointers(status, &answer), ["/pricing/url"]);
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("the host is Gavel itself"),
        "{answer}"
    );
}
