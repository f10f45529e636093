//! `POST /v1/admin/contracts/{id}/test`: the operator's debugger for a new buyer, with real
//! buyers on 127.0.0.1.

use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, ping_lead};
use crate::harness::{TestApp, spawn_app};

const SECRET: &str = "buyer-api-key-0123456789-abcdef";

/// A buyer bidding in XML (`/bid`) and answering deliveries with a line of text (`/lead`).
async fn xml_and_text_buyer() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/bid"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-buyer-trace", "t-17")
                .set_body_raw(
                    r#"<answer ref="B-9"><price>38.505</price></answer>"#,
                    "application/xml",
                ),
        )
        .mount(&server)
        .await;
    Mock::given(path("/lead"))
        .respond_with(ResponseTemplate::new(200).set_body_string("REJECTED: zip not served"))
        .mount(&server)
        .await;
    server
}

fn contract(server: &MockServer) -> ContractSpec {
    ContractSpec {
        pricing: Some(json!({
            "type": "rtb", "url": format!("{}/bid", server.uri()), "timeout_ms": 1500,
            "headers": { "Authorization": SECRET },
            "request": { "format": "xml",
                         "template": "<ping id=\"{{ ping_id }}\"><zip>{{ lead.zip }}</zip><test>{{ test }}</test></ping>" },
            "response": { "format": "xml", "exclusive_bid": { "path": "/answer/price" },
                          "ref": { "path": "/answer/@ref" } }
        })),
        delivery: Some(json!({
            "url": format!("{}/lead", server.uri()), "timeout_ms": 1500,
            "request": { "format": "form",
                         "fields": { "first": "lead.first_name", "phone": { "from": "lead.phone", "transform": ["digits"] },
                                     "price": "price", "tf": "consent.trustedform_cert_url" } },
            "response": { "format": "text", "accepted": { "regex": "^OK", "exists": true },
                          "reason": { "regex": "^REJECTED: (.*)$" } }
        })),
        ..Default::default()
    }
}

async fn try_contract(app: &TestApp, admin_key: &str, id: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(app.url(&format!("/v1/admin/contracts/{id}/test")))
        .bearer_auth(admin_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_contracts_calls_are_shown_sent_as_tests_and_read_by_its_rules(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyer = xml_and_text_buyer().await;
    let (_, contract_id) = exchange.buyer_with(100_000, contract(&buyer)).await;
    let app = spawn_app(pool.clone()).await;
    let id = contract_id.to_string();
    let key = &exchange.admin_key;

    // Rendered only: the XML the buyer would receive, its secret masked, nothing sent.
    let (status, shown) = try_contract(
        &app,
        key,
        &id,
        json!({ "call": "rtb", "lead": ping_lead() }),
    )
    .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["sent"], false);
    let body = shown["request"]["body"].as_str().unwrap();
    assert!(body.contains("<zip>75001</zip><test>true</test>"), "{body}");
    assert_eq!(shown["request"]["method"], "POST");
    let headers = shown["request"]["headers"].as_array().unwrap();
    assert!(
        headers.contains(&json!(["Authorization", "••••cdef"])),
        "{shown}"
    );
    assert!(!shown.to_string().contains(SECRET));
    assert!(headers.contains(&json!(["Gavel-Test", "true"])), "{shown}");
    assert!(shown["reading"].is_null() && shown["answer"].is_null());
    assert!(buyer.received_requests().await.unwrap().is_empty());

    // Sent: marked as a test; the exact bid and the reference as the auction would read them.
    let (status, sent) = try_contract(
        &app,
        key,
        &id,
        json!({ "call": "rtb", "lead": ping_lead(), "send": true }),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let received = buyer.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].headers.get("gavel-test").unwrap(), "true");
    assert_eq!(received[0].headers.get("authorization").unwrap(), SECRET);
    assert_eq!(sent["answer"]["status"], 200);
    assert!(
        sent["answer"]["headers"]
            .as_array()
            .unwrap()
            .contains(&json!(["x-buyer-trace", "t-17"])),
        "{sent}"
    );
    assert_eq!(
        sent["reading"],
        json!({ "outcome": "bid", "exclusive_bid": 38.50, "ref": "B-9" })
    );

    // A delivery: the form as sent, and the buyer's rejection read from its own words.
    let (status, delivered) = try_contract(
        &app,
        key,
        &id,
        json!({ "call": "delivery", "lead": full_lead(), "consent": consent(),
                "price": 12.5, "send": true }),
    )
    .await;
    assert_eq!(status, 200, "{delivered}");
    let form = delivered["request"]["body"].as_str().unwrap();
    assert!(
        form.contains("first=Ada") && form.contains("phone=2145550123"),
        "{form}"
    );
    assert!(form.contains("price=12.50"), "{form}");
    assert_eq!(delivered["answer"]["body"], "REJECTED: zip not served");
    assert_eq!(delivered["reading"]["outcome"], "rejected");
    assert_eq!(delivered["reading"]["reason"], "buyer: zip not served");

    // Nothing was sold, charged or recorded.
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM posting_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    let sales: i64 = sqlx::query_scalar("SELECT count(*) FROM lead_sales")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((recorded, sales), (0, 0));
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_trial_checks_its_lead_and_its_tenant(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let other = Exchange::create(&pool, "exclusive").await;
    let buyer = xml_and_text_buyer().await;
    let (_, contract_id) = exchange.buyer_with(100_000, contract(&buyer)).await;
    let app = spawn_app(pool.clone()).await;
    let id = contract_id.to_string();

    // An RTB call is made at the ping: its lead has no PII.
    let mut lead = ping_lead();
    lead["email"] = json!("ada@example.com");
    let (status, problem) = try_contract(
        &app,
        &exchange.admin_key,
        &id,
        json!({ "call": "rtb", "lead": lead, "send": true }),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["pointer"], "/lead/email");
    assert_eq!(problem["errors"][0]["code"], "pii_in_ping");

    let (status, problem) = try_contract(
        &app,
        &exchange.admin_key,
        &id,
        json!({ "call": "bid", "lead": ping_lead(), "send": "yes" }),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/call", "/send"]);

    // Another tenant's contract does not exist for this key.
    let (status, _) = try_contract(
        &app,
        &other.admin_key,
        &id,
        json!({ "call": "rtb", "lead": ping_lead() }),
    )
    .await;
    assert_eq!(status, 404);
    assert!(buyer.received_requests().await.unwrap().is_empty());
}
