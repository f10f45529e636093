//! Contract headers: validated when saved (and when loaded from SQL), write-only in every
//! answer, still sent to the buyer, and kept by a GET-modify-PATCH that sends the masks back.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, ping_lead};
use crate::harness::spawn_app;

const RTB_SECRET: &str = "Bearer sk_live_0123456789abcdef1a2b";
const DELIVERY_SECRET: &str = "Basic dXNlcjpwYXNzd29yZDEyMzQ1Njc4OTA=";

async fn stored_headers(pool: &PgPool, contract: &str) -> (Value, Value) {
    sqlx::query_as(
        "SELECT pricing -> 'headers', delivery -> 'headers' FROM contracts WHERE id = $1::uuid",
    )
    .bind(contract)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn header_values_are_write_only_and_still_sent_to_the_buyer(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyer_id = exchange.buyer(100_000).await;
    let buyer = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "exclusive_bid": 40 })))
        .mount(&buyer)
        .await;
    let app = spawn_app(pool.clone()).await;
    let key = &exchange.admin_key;
    let body = json!({
        "buyer_id": buyer_id, "offer_id": exchange.offer_id, "name": "Secret",
        "pricing": { "type": "rtb", "url": format!("{}/bid", buyer.uri()), "timeout_ms": 500,
                     "headers": { "Authorization": RTB_SECRET, "X-Short": "tiny" } },
        "delivery": { "url": format!("{}/leads", buyer.uri()),
                      "headers": { "Authorization": DELIVERY_SECRET } }
    });
    let masked_pricing = json!({ "Authorization": "••••1a2b", "X-Short": "••••" });
    let masked_delivery = json!({ "Authorization": "••••OTA=" });

    let (status, created) = app
        .admin(Method::POST, "/v1/admin/contracts", key, Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["pricing"]["headers"], masked_pricing);
    assert_eq!(created["delivery"]["headers"], masked_delivery);
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/admin/contracts/{id}");
    let (_, got) = app.admin(Method::GET, &path, key, None).await;
    assert_eq!(got["pricing"]["headers"], masked_pricing);
    assert_eq!(got["delivery"]["headers"], masked_delivery);
    let (_, list) = app
        .admin(Method::GET, "/v1/admin/contracts", key, None)
        .await;
    assert_eq!(list["items"][0]["pricing"]["headers"], masked_pricing);
    assert_eq!(list["items"][0]["delivery"]["headers"], masked_delivery);
    assert!(!list.to_string().contains("sk_live") && !got.to_string().contains("dXNl"));

    // GET, modify, PATCH with the masks sent back: the secrets are kept.
    let mut edited = got.clone();
    edited["name"] = json!("Renamed");
    edited["pricing"]["headers"]["X-Added"] = json!("new-value");
    let writable = [
        "buyer_id",
        "offer_id",
        "name",
        "status",
        "priority",
        "pricing",
        "filters",
        "caps",
        "dedup_days",
        "delivery",
    ];
    let patch: serde_json::Map<String, Value> = edited
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| writable.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (status, patched) = app
        .admin(Method::PATCH, &path, key, Some(Value::Object(patch)))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["pricing"]["headers"]["Authorization"], "••••1a2b");
    let (pricing, delivery) = stored_headers(&pool, &id).await;
    assert_eq!(
        pricing,
        json!({ "Authorization": RTB_SECRET, "X-Short": "tiny", "X-Added": "new-value" })
    );
    assert_eq!(delivery, json!({ "Authorization": DELIVERY_SECRET }));

    // A mask cannot follow the contract to another host, nor be saved as a value.
    let (status, refused) = app
        .admin(
            Method::PATCH,
            &path,
            key,
            Some(
                json!({ "delivery": { "url": "https://elsewhere.example/leads",
                                       "headers": { "Authorization": "••••OTA=" } } }),
            ),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["errors"][0]["pointer"],
        "/delivery/headers/Authorization"
    );
    let (status, refused) = app
        .admin(
            Method::PATCH,
            &path,
            key,
            Some(
                json!({ "delivery": { "url": format!("{}/leads", buyer.uri()),
                                       "headers": { "X-Other": "••••OTA=" } } }),
            ),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["errors"][0]["pointer"], "/delivery/headers/X-Other");
    assert_eq!(
        stored_headers(&pool, &id).await.1,
        json!({ "Authorization": DELIVERY_SECRET })
    );

    // The buyer receives the secret itself.
    let deadline = Instant::now() + Duration::from_secs(5);
    let request = loop {
        let (status, answer) = app
            .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
            .await;
        assert_eq!(status, 200, "{answer}");
        if let Some(request) = buyer.received_requests().await.unwrap().pop() {
            break request;
        }
        assert!(Instant::now() < deadline, "the buyer was never called");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(request.headers["authorization"], RTB_SECRET);
    assert_eq!(request.headers["x-added"], "new-value");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn bad_header_names_and_values_are_refused_with_pointers(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyer_id = exchange.buyer(100_000).await;
    let buyer = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "exclusive_bid": 40 })))
        .mount(&buyer)
        .await;
    let app = spawn_app(pool.clone()).await;
    let (status, answer) = app
        .admin(
            Method::POST,
            "/v1/admin/contracts",
            &exchange.admin_key,
            Some(json!({
                "buyer_id": buyer_id, "offer_id": exchange.offer_id, "name": "Bad headers",
                "pricing": { "type": "rtb", "url": format!("{}/bid", buyer.uri()),
                             "headers": { "Host": "metadata.google.internal", "X-Ok": "fine",
                                          "Content-Length": "0", "Connection": "close" } },
                "delivery": { "url": format!("{}/leads", buyer.uri()),
                              "headers": { "Authorization": "Bearer a\r\nX-Injected: 1",
                                           "Transfer-Encoding": "chunked", "X/Bell": "a\u{7}b" } }
            })),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["code"], "invalid_config");
    let pointers: Vec<&str> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        [
            "/pricing/headers/Connection",
            "/pricing/headers/Content-Length",
            "/pricing/headers/Host",
            "/delivery/headers/Authorization",
            "/delivery/headers/Transfer-Encoding",
            "/delivery/headers/X~1Bell",
        ]
    );
    assert!(!answer.to_string().contains("X-Injected"), "{answer}");
    let contracts: i64 = sqlx::query_scalar("SELECT count(*) FROM contracts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(contracts, 0);

    // Written in SQL, such a contract is refused by the loader: its buyer is never called.
    let mut spec = ContractSpec::rtb(format!("{}/bid", buyer.uri()), 500);
    spec.pricing.as_mut().unwrap()["headers"] = json!({ "X-Evil": "a\r\nHost: internal" });
    exchange.buyer_with(100_000, spec).await;
    let app = spawn_app(pool.clone()).await;
    let (status, answer) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "no_bids", "{answer}");
    assert!(buyer.received_requests().await.unwrap().is_empty());
}
