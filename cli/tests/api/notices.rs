//! Win and loss notices (docs/revenue-recovery.md §7): a slow notice endpoint holds up only its
//! own notices, test traffic sends none, and a notice URL is checked against the outbound
//! address policy when it is saved.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, ping_lead};
use crate::harness::{TestApp, spawn_app, spawn_app_with, test_settings};

async fn set_notices(exchange: &Exchange, contract: Uuid, win: Option<&str>, loss: Option<&str>) {
    sqlx::query("UPDATE contracts SET win_url = $2, loss_url = $3 WHERE id = $1")
        .bind(contract)
        .bind(win)
        .bind(loss)
        .execute(&exchange.pool)
        .await
        .unwrap();
}

async fn ping(app: &TestApp, exchange: &Exchange, test: bool) -> Value {
    let (status, answer) = app
        .ping(
            &exchange.posting_key,
            json!({ "lead": ping_lead(), "test": test }),
        )
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("bids")),
        "{answer}"
    );
    answer
}

/// The requests `server` received whose `ping` query value is `ping_id`.
async fn notices_of(server: &MockServer, ping_id: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.url
                .query_pairs()
                .any(|(k, v)| k == "ping" && v == ping_id)
        })
        .collect()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_slow_notice_endpoint_does_not_delay_another_contracts_notice(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    // A dead endpoint: every try runs into the notice's 2 s timeout (three tries each).
    let slow = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&slow)
        .await;
    let fast = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&fast)
        .await;
    exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(5000), None))
        .await;
    let (_, stuck) = exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(3000), None))
        .await;
    let (_, healthy) = exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(1000), None))
        .await;
    let loss = "/loss?ping={{ ping_id }}&reason={{ reason }}";
    set_notices(
        &exchange,
        stuck,
        None,
        Some(&format!("{}{loss}", slow.uri())),
    )
    .await;
    set_notices(
        &exchange,
        healthy,
        None,
        Some(&format!("{}{loss}", fast.uri())),
    )
    .await;
    let app = spawn_app(pool.clone()).await;

    // Every ping queues a loss for the dead endpoint and one for the healthy one: the dead
    // endpoint's notices pile up, in flight for seconds each, more of them than the four
    // workers that used to serve every tenant.
    for round in 0..8 {
        let answer = ping(&app, &exchange, false).await;
        let ping_id = answer["ping_id"].as_str().unwrap();
        let asked = Instant::now();
        loop {
            if !notices_of(&fast, ping_id).await.is_empty() {
                break;
            }
            assert!(
                asked.elapsed() < Duration::from_millis(1500),
                "ping {round}: the healthy endpoint's notice is held up by the dead one"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(
        !slow.received_requests().await.unwrap().is_empty(),
        "the dead endpoint was tried"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn test_pings_and_posts_send_no_notice(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyers = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/leads"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": "accepted" })))
        .mount(&buyers)
        .await;
    let notices = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&notices)
        .await;
    let delivery = json!({ "url": format!("{}/leads", buyers.uri()), "timeout_ms": 2000,
                           "accept": { "path": "/status", "equals": "accepted" } });
    let spec = |cents| ContractSpec {
        delivery: Some(delivery.clone()),
        ..ContractSpec::fixed(Some(cents), None)
    };
    let (_, winner) = exchange.buyer_with(100_000, spec(5000)).await;
    let (_, loser) = exchange.buyer_with(100_000, spec(1000)).await;
    let base = notices.uri();
    for contract in [winner, loser] {
        set_notices(
            &exchange,
            contract,
            Some(&format!("{base}/win?ping={{{{ ping_id }}}}")),
            Some(&format!("{base}/loss?ping={{{{ ping_id }}}}")),
        )
        .await;
    }
    let app = spawn_app(pool.clone()).await;

    let test_ping = ping(&app, &exchange, true).await;
    let body =
        json!({ "ping_id": test_ping["ping_id"], "lead": full_lead(), "consent": consent() });
    let (status, answer) = app.post(&exchange.posting_key, body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("sold")),
        "{answer}"
    );

    // The same with real traffic sends its notices: once they arrived, the test ping's would
    // have too.
    let real = ping(&app, &exchange, false).await;
    let body = json!({ "ping_id": real["ping_id"], "lead": full_lead(), "consent": consent() });
    let (status, answer) = app.post(&exchange.posting_key, body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("sold")),
        "{answer}"
    );
    let real_id = real["ping_id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while notices_of(&notices, real_id).await.len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all: Vec<String> = notices
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.to_string())
        .collect();
    assert_eq!(all.len(), 2, "the real ping's loss and win only: {all:?}");
    assert!(
        all.iter().all(|url| url.contains(real_id)),
        "nothing for the test ping: {all:?}"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_notice_url_to_a_refused_address_or_a_chosen_host_is_refused_when_saved(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyer = exchange.buyer(0).await;
    // As production runs by default: nothing internal allowed.
    let mut settings = test_settings();
    settings.outbound_allow.clear();
    let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;
    let key = &exchange.admin_key;
    let public = "https://buyer.example/leads";
    let contract = |extra: Value| {
        let mut body = json!({ "buyer_id": buyer, "offer_id": exchange.offer_id, "name": "c",
                               "pricing": { "type": "fixed", "exclusive": 10.00 },
                               "delivery": { "url": public } });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let pointers = |answer: &Value| -> Vec<String> {
        answer["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap().to_owned())
            .collect()
    };

    let metadata = "http://169.254.169.254/latest/meta-data?p={{ price }}&r={{ ref }}";
    for (extra, expected) in [
        (json!({ "win_url": metadata }), vec!["/win_url"]),
        (
            json!({ "loss_url": "http://10.0.0.1/loss?r={{ reason }}" }),
            vec!["/loss_url"],
        ),
        (
            json!({ "win_url": "http://[::1]/w", "loss_url": metadata }),
            vec!["/win_url", "/loss_url"],
        ),
    ] {
        let (status, answer) = app
            .admin(
                Method::POST,
                "/v1/admin/contracts",
                key,
                Some(contract(extra.clone())),
            )
            .await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (422, Some("invalid_config")),
            "{answer}"
        );
        assert_eq!(pointers(&answer), expected, "{extra}: {answer}");
        assert!(
            answer["detail"]
                .as_str()
                .unwrap()
                .contains("refused by the outbound address policy"),
            "{answer}"
        );
    }
    // A buyer's ref (or any value) may not choose the host.
    for template in ["http://{{ ref }}/x", "https://{{ ref }}.buyer.example/x"] {
        let (status, answer) = app
            .admin(
                Method::POST,
                "/v1/admin/contracts",
                key,
                Some(contract(json!({ "loss_url": template }))),
            )
            .await;
        assert_eq!(status, 422, "{template}: {answer}");
        assert_eq!(pointers(&answer), ["/loss_url"], "{answer}");
    }

    // A public name is accepted; a patch to an internal address is refused and changes nothing.
    let fine = "https://buyer.example/win?p={{ price }}";
    let (status, created) = app
        .admin(
            Method::POST,
            "/v1/admin/contracts",
            key,
            Some(contract(json!({ "win_url": fine }))),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let at = format!("/v1/admin/contracts/{}", created["id"].as_str().unwrap());
    let (status, answer) = app
        .admin(
            Method::PATCH,
            &at,
            key,
            Some(json!({ "win_url": "http://0xa9fea9fe/w" })),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(pointers(&answer), ["/win_url"], "{answer}");
    let (_, current) = app.admin(Method::GET, &at, key, None).await;
    assert_eq!(current["win_url"], fine);
}
