//! Posted leads' PII at rest (docs/pii.md): sealed in the database, so a `pg_dump` of a
//! database after real sales (a buyer on 127.0.0.1 quoting the lead in its answers) holds none
//! of the consumer's values; the operator still reads the whole lead; keys rotate with
//! `gavel pii rotate`; a database without its key shows the non-PII fields, never a 500.

use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::process::Command;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::cli::gavel;
use crate::fixtures::{ContractSpec, Exchange, consent, ping_lead};
use crate::harness::{TestApp, database_url, spawn_app_with, test_settings};

const FIRST_NAME: &str = "Philippa";
const EMAIL: &str = "philippa.quartermaine@example.org";
const PHONE: &str = "(312) 555-0147";
const TRUSTEDFORM: &str = "https://cert.trustedform.com/9f1c2e7d44";

fn posted_lead() -> Value {
    let mut lead = ping_lead();
    lead["first_name"] = json!(FIRST_NAME);
    lead["email"] = json!(EMAIL);
    lead["phone"] = json!(PHONE);
    lead
}

fn posted_consent() -> Value {
    let mut consent = consent();
    consent["trustedform_cert_url"] = json!(TRUSTEDFORM);
    consent
}

/// Every form of the consumer's values a dump could hold.
fn personal() -> Vec<String> {
    [FIRST_NAME, EMAIL, PHONE, "3125550147", TRUSTEDFORM]
        .iter()
        .map(|v| v.to_ascii_lowercase())
        .collect()
}

/// Two buyers on 127.0.0.1 that quote the lead back: one accepts (its answer names the
/// consumer), one rejects with the email as its reason.
async fn quoting_buyers(exchange: &Exchange, server: &MockServer) {
    let accepted = json!({ "status": "accepted",
                           "echo": { "name": FIRST_NAME, "email": EMAIL, "phone": "3125550147" } });
    Mock::given(method("POST"))
        .and(path("/accepts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(accepted))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rejects"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "status": "rejected", "reason": format!("already have {EMAIL}") }),
        ))
        .mount(server)
        .await;
    for (endpoint, price) in [("/accepts", 3000), ("/rejects", 2900)] {
        let delivery = json!({ "url": format!("{}{endpoint}", server.uri()), "timeout_ms": 2000,
                               "accept": { "path": "/status", "equals": "accepted" },
                               "reason_path": "/reason" });
        exchange
            .buyer_with(
                100_000,
                ContractSpec {
                    delivery: Some(delivery),
                    ..ContractSpec::fixed(None, Some(price))
                },
            )
            .await;
    }
}

/// A ping and its post, sold to the accepting buyer: the lead's id.
async fn sell(app: &TestApp, exchange: &Exchange) -> Uuid {
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
            json!({ "ping_id": ping["ping_id"], "lead": posted_lead(), "consent": posted_consent() }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "partially_sold", "{answer}");
    for value in personal() {
        assert!(
            !answer.to_string().to_ascii_lowercase().contains(&value),
            "the post's answer quotes {value}: {answer}"
        );
    }
    answer["lead_id"].as_str().unwrap().parse().unwrap()
}

async fn lead_view(app: &TestApp, exchange: &Exchange, lead_id: Uuid) -> Value {
    let response = app
        .client
        .get(app.url(&format!("/v1/admin/leads/{lead_id}")))
        .bearer_auth(&exchange.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `pg_dump` of the test's database, as plain SQL.
async fn dump(connect: &PgConnectOptions) -> String {
    let output = Command::new("pg_dump")
        .arg("--no-owner")
        .arg(database_url(connect))
        .output()
        .await
        .expect("pg_dump runs (PostgreSQL's client programs are installed with the server)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn found_in(dump: &str) -> Vec<String> {
    let dump = dump.to_ascii_lowercase();
    personal()
        .into_iter()
        .filter(|value| dump.contains(value.as_str()))
        .collect()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_dump_after_sales_holds_no_pii_and_the_operator_still_reads_the_lead(
    pool_options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool: PgPool = pool_options.connect_with(connect.clone()).await.unwrap();
    let exchange = Exchange::create(&pool, "multisell").await;
    let server = MockServer::start().await;
    quoting_buyers(&exchange, &server).await;
    let app = spawn_app_with(pool.clone(), test_settings(), axum::Router::new()).await;
    let lead_id = sell(&app, &exchange).await;

    let dumped = dump(&connect).await;
    assert!(
        dumped.contains(&lead_id.to_string()),
        "the dump holds the lead's row"
    );
    assert!(
        dumped.contains("Quote Funnel"),
        "the dump holds the tenant's data"
    );
    assert_eq!(found_in(&dumped), Vec::<String>::new(), "PII in the dump");

    // The operator's view opens the sealed lead: every field and the consent, as posted.
    let view = lead_view(&app, &exchange, lead_id).await;
    assert_eq!(view["pii"], "sealed");
    assert_eq!(view["lead"]["email"], EMAIL);
    assert_eq!(view["lead"]["phone"], PHONE);
    assert_eq!(view["consent"]["trustedform_cert_url"], TRUSTEDFORM);
    // What the buyers answered is kept, with the lead's values masked.
    let rejected = view["sales"]
        .as_array()
        .unwrap()
        .iter()
        .find(|sale| sale["status"] == "rejected")
        .unwrap_or_else(|| panic!("{view}"));
    assert_eq!(rejected["reason"], "buyer: already have •••", "{view}");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn rotation_seals_old_and_unsealed_rows_under_the_new_key(
    pool_options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool: PgPool = pool_options.connect_with(connect.clone()).await.unwrap();
    let exchange = Exchange::create(&pool, "multisell").await;
    let server = MockServer::start().await;
    quoting_buyers(&exchange, &server).await;
    let old_key = gavel::pii::PiiKeys::generate("old");
    let mut settings = test_settings();
    settings.pii_keys = gavel::pii::PiiKeys::parse(&old_key).unwrap();
    let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;
    let sealed_lead = sell(&app, &exchange).await;
    // A lead stored before PII was sealed: the whole lead and consent in the clear.
    let unsealed_lead = sell(&app, &exchange).await;
    sqlx::query(
        "UPDATE leads SET lead = $3, consent = $4, pii_key_id = NULL, pii_sealed = NULL
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(exchange.tenant_id)
    .bind(unsealed_lead)
    .bind(posted_lead())
    .bind(posted_consent())
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(
        lead_view(&app, &exchange, unsealed_lead).await["pii"],
        "not_sealed"
    );
    assert!(!found_in(&dump(&connect).await).is_empty());

    // The new key first, the old one still listed: `gavel pii rotate`.
    let new_key = gavel::pii::PiiKeys::generate("new");
    let rotate = || {
        let mut command = gavel();
        command
            .args(["pii", "rotate"])
            .env("GAVEL_DATABASE_URL", database_url(&connect))
            .env("GAVEL_PII_KEYS", format!("{new_key},{old_key}"));
        command
    };
    let output = rotate().output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        printed,
        json!({ "key_id": "new", "resealed": 1, "sealed": 1, "unreadable": 0 })
    );
    assert_eq!(found_in(&dump(&connect).await), Vec::<String>::new());
    // Run again, nothing is left to do.
    let again: Value = serde_json::from_slice(&rotate().output().await.unwrap().stdout).unwrap();
    assert_eq!(
        (again["resealed"].as_u64(), again["sealed"].as_u64()),
        (Some(0), Some(0))
    );

    // A server with the new key alone reads both leads whole.
    let mut settings = test_settings();
    settings.pii_keys = gavel::pii::PiiKeys::parse(&new_key).unwrap();
    let rotated = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;
    for lead in [sealed_lead, unsealed_lead] {
        let view = lead_view(&rotated, &exchange, lead).await;
        assert_eq!(
            (view["pii"].as_str(), view["lead"]["email"].as_str()),
            (Some("sealed"), Some(EMAIL)),
            "{view}"
        );
        assert_eq!(view["consent"]["trustedform_cert_url"], TRUSTEDFORM);
    }

    // Without the key, the lead's non-PII fields and its sales, never an error.
    let mut settings = test_settings();
    settings.pii_keys = gavel::pii::PiiKeys::parse(&old_key).unwrap();
    let keyless = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;
    let view = lead_view(&keyless, &exchange, sealed_lead).await;
    assert_eq!(view["pii"], "unavailable", "{view}");
    assert_eq!(view["lead"]["email"], Value::Null);
    assert_eq!(view["lead"]["state"], ping_lead()["state"]);
    assert_eq!(view["consent"], json!({}));
    assert_eq!(view["sales"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn serve_on_a_configured_database_without_a_key_refuses_to_start() {
    let mut command = gavel();
    // Refused before the database is reached: no server listens there.
    let output = command
        .arg("serve")
        .env("GAVEL_DATABASE_URL", "postgres://nobody@127.0.0.1:9/none")
        .env("GAVEL_LISTEN", "127.0.0.1:0")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("pii_keys is not set"), "{stderr}");

    let bad = gavel()
        .arg("serve")
        .env("GAVEL_PII_KEYS", "k1:not-hex")
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("key k1 must be 32 bytes"), "{stderr}");
    assert!(
        !stderr.contains("not-hex"),
        "the key's text is never shown: {stderr}"
    );
}

async fn admin(
    app: &TestApp,
    exchange: &Exchange,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut request = app
        .client
        .request(method, app.url(path))
        .bearer_auth(&exchange.admin_key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A ping and its post of a lead with this email and phone, sold: the lead's id.
async fn sell_to(app: &TestApp, exchange: &Exchange, email: &str, phone: &str) -> Uuid {
    let (_, ping) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    let mut lead = posted_lead();
    lead["email"] = json!(email);
    lead["phone"] = json!(phone);
    let (status, answer) = app
        .post(
            &exchange.posting_key,
            json!({ "ping_id": ping["ping_id"], "lead": lead, "consent": posted_consent() }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["lead_id"].as_str().unwrap().parse().unwrap()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn erasure_and_retention_remove_pii_and_leave_money_reports_and_dedup_exact(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    let server = MockServer::start().await;
    quoting_buyers(&exchange, &server).await;
    let app = spawn_app_with(pool.clone(), test_settings(), axum::Router::new()).await;
    let erased = sell_to(&app, &exchange, EMAIL, PHONE).await;
    let old = sell_to(
        &app,
        &exchange,
        "old.consumer@example.net",
        "(646) 555-0188",
    )
    .await;
    let kept = sell_to(
        &app,
        &exchange,
        "kept.consumer@example.net",
        "(718) 555-0163",
    )
    .await;
    let report = "/v1/admin/reports/summary?group_by=buyer";
    let money = || async {
        let (_, report) = admin(&app, &exchange, reqwest::Method::GET, report, None).await;
        let books: (i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(sum(amount_cents), 0)::bigint FROM ledger_entries WHERE tenant_id = $1",
        )
        .bind(exchange.tenant_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        let dedup: i64 = sqlx::query_scalar("SELECT count(*) FROM dedup_keys WHERE tenant_id = $1")
            .bind(exchange.tenant_id)
            .fetch_one(&pool)
            .await
            .unwrap();
        (report, books, dedup)
    };
    let before = money().await;
    assert!(before.2 > 0, "the sales wrote dedup keys");

    // Refused with a pointer, never echoing the value.
    let (status, problem) = admin(
        &app,
        &exchange,
        reqwest::Method::POST,
        "/v1/admin/erasure",
        Some(json!({ "phone": "555-01" })),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem.contains("\"/phone\"") && !problem.contains("555-01"),
        "{problem}"
    );

    // The consumer's email, written another way: their lead's PII is gone, the others' stay.
    let (status, done) = admin(
        &app,
        &exchange,
        reqwest::Method::POST,
        "/v1/admin/erasure",
        Some(json!({ "email": "  Philippa.QUARTERMAINE@example.org" })),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let done: Value = serde_json::from_str(&done).unwrap();
    assert_eq!(
        (done["matched_by"].as_str(), done["leads_erased"].as_i64()),
        (Some("email"), Some(1))
    );
    let view = lead_view(&app, &exchange, erased).await;
    assert_eq!(view["pii"], "erased", "{view}");
    assert_eq!(view["lead"]["email"], Value::Null);
    assert_eq!(view["lead"]["state"], ping_lead()["state"]);
    assert_eq!(view["consent"], json!({}));
    assert_eq!(
        view["sales"].as_array().map(Vec::len),
        Some(2),
        "its sales stay"
    );
    assert_eq!(
        lead_view(&app, &exchange, kept).await["lead"]["email"],
        "kept.consumer@example.net"
    );
    let (_, listed) = admin(
        &app,
        &exchange,
        reqwest::Method::GET,
        "/v1/admin/erasures",
        None,
    )
    .await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["erasures"][0]["id"], done["id"]);
    assert!(
        !listed
            .to_string()
            .to_ascii_lowercase()
            .contains("quartermaine")
    );
    // The same request again finds nothing left.
    let (_, again) = admin(
        &app,
        &exchange,
        reqwest::Method::POST,
        "/v1/admin/erasure",
        Some(json!({ "phone": PHONE })),
    )
    .await;
    assert!(again.contains("\"leads_erased\":0"), "{again}");

    // Retention: 30 days; a lead posted 31 days ago loses its PII at the job's next run.
    let (status, body) = admin(
        &app,
        &exchange,
        reqwest::Method::PATCH,
        "/v1/admin/settings",
        Some(json!({ "pii_retention_days": 0 })),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("/pii_retention_days"), "{body}");
    let (status, body) = admin(
        &app,
        &exchange,
        reqwest::Method::PATCH,
        "/v1/admin/settings",
        Some(json!({ "pii_retention_days": 30 })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"pii_retention_days\":30"), "{body}");
    sqlx::query("UPDATE leads SET created_at = created_at - interval '31 days' WHERE tenant_id = $1 AND id = $2")
        .bind(exchange.tenant_id)
        .bind(old)
        .execute(&pool)
        .await
        .unwrap();
    let erased_now = gavel::store::pii::erase_expired(&pool, chrono::Utc::now(), 100)
        .await
        .unwrap();
    assert_eq!(erased_now, 1);
    assert_eq!(lead_view(&app, &exchange, old).await["pii"], "erased");
    assert_eq!(lead_view(&app, &exchange, kept).await["pii"], "sealed");

    // Money, the report and dedup are as they were.
    assert_eq!(money().await, before);
}
