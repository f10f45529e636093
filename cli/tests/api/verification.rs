//! Consent verification on the post (docs/verification.md): TrustedForm, Jornaya and a generic
//! hook, each against a local mock server; a failed required step ends the post
//! `consent_unverified` before any buyer is called or charged.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{body_partial_json, body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, ping_lead};
use crate::harness::{TestApp, spawn_app_with, test_settings};

const TF_KEY: &str = "tf_live_0123456789abcdef0123456789";
const PRICE_CENTS: i64 = 4000;
const FUNDS_CENTS: i64 = 100_000;

fn cert(n: u8) -> String {
    format!("{n:02x}").repeat(20)
}

fn cert_url(n: u8) -> String {
    format!("https://cert.trustedform.com/{}", cert(n))
}

fn leadid(n: u8) -> String {
    format!("{n:02X}B4F6A3-1C2D-4E5F-8A9B-0C1D2E3F4A5B")
}

/// A buyer that accepts every delivery.
async fn accepting_buyer() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "accepted"})))
        .mount(&server)
        .await;
    server
}

struct Setup {
    exchange: Exchange,
    app: TestApp,
    buyer: Uuid,
    buyer_server: MockServer,
}

/// An exclusive offer with `steps`, one buyer at 40.00 delivering to a mock, and Gavel with
/// its TrustedForm and Jornaya base URLs on the mocks given.
async fn setup(
    pool: &PgPool,
    steps: Value,
    trustedform: Option<&MockServer>,
    jornaya: Option<&MockServer>,
) -> Setup {
    let exchange = Exchange::create(pool, "exclusive").await;
    let buyer_server = accepting_buyer().await;
    let (buyer, _) = exchange
        .buyer_with(
            FUNDS_CENTS,
            ContractSpec {
                delivery: Some(json!({ "url": format!("{}/leads", buyer_server.uri()) })),
                ..ContractSpec::fixed(Some(PRICE_CENTS), None)
            },
        )
        .await;
    sqlx::query("UPDATE offers SET verification = $2 WHERE id = $1")
        .bind(exchange.offer_id)
        .bind(steps)
        .execute(pool)
        .await
        .unwrap();
    let mut settings = test_settings();
    // Nothing listens there: a step that reached it would fail loudly, not pass.
    settings.trustedform_base_url =
        trustedform.map_or("http://127.0.0.1:9".to_owned(), |s| s.uri());
    settings.jornaya_base_url = jornaya.map_or("http://127.0.0.1:9".to_owned(), |s| s.uri());
    let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;
    Setup {
        exchange,
        app,
        buyer,
        buyer_server,
    }
}

impl Setup {
    /// Pings, then posts the full lead with `consent`: the ping's id and the post's answer.
    async fn post(&self, consent: Value) -> (String, Value) {
        let (status, ping) = self
            .app
            .ping(&self.exchange.posting_key, json!({ "lead": ping_lead() }))
            .await;
        assert_eq!(
            (status, ping["status"].as_str()),
            (200, Some("bids")),
            "{ping}"
        );
        let ping_id = ping["ping_id"].as_str().unwrap().to_owned();
        let (status, answer) = self
            .app
            .post(
                &self.exchange.posting_key,
                json!({ "ping_id": ping_id, "lead": full_lead(), "consent": consent }),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        (ping_id, answer)
    }

    /// The explain's verification results of a ping.
    async fn verification(&self, ping_id: &str) -> Value {
        let (status, view) = self.app.ping_view(&self.exchange.admin_key, ping_id).await;
        assert_eq!(status, 200, "{view}");
        view["verification"].clone()
    }

    /// A console page, signed in with the tenant's admin key.
    async fn console_page(&self, path: &str) -> String {
        let base = self.app.url("");
        let (cookie, _) = crate::console::sign_in_http(&base, &self.exchange.admin_key, &[]).await;
        let page = reqwest::Client::new()
            .get(format!("{base}{path}"))
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200, "{path}");
        page.text().await.unwrap()
    }

    async fn deliveries(&self) -> usize {
        self.buyer_server.received_requests().await.unwrap().len()
    }

    /// The buyer's balance and the sum of its ledger entries.
    async fn books(&self) -> (i64, i64) {
        self.exchange.buyer_books(self.buyer).await
    }

    async fn post_log_result(&self, ping_id: &str) -> String {
        sqlx::query_scalar(
            "SELECT result FROM posting_log WHERE tenant_id = $1 AND ping_id = $2 AND kind <> 'ping'",
        )
        .bind(self.exchange.tenant_id)
        .bind(Uuid::parse_str(ping_id).unwrap())
        .fetch_one(&self.exchange.pool)
        .await
        .unwrap()
    }
}

fn consent_with(key: &str, value: &str) -> Value {
    let mut consent = consent();
    consent[key] = json!(value);
    consent
}

/// A refused post: its status, the step's code, nothing paid and the bid not sold.
fn assert_unverified(answer: &Value, code: &str) {
    assert_eq!(answer["status"], "consent_unverified", "{answer}");
    assert_eq!(answer["verification"]["code"], code, "{answer}");
    assert_eq!(answer["payout"].as_f64(), Some(0.0), "{answer}");
    assert_eq!(
        answer["results"][0]["status"], "consent_unverified",
        "{answer}"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn trustedform_pass_fail_timeout_and_malformed_answers(pool: PgPool) {
    let tf = MockServer::start().await;
    let answer = |n: u8, response: ResponseTemplate| {
        Mock::given(method("POST"))
            .and(path(format!("/{}", cert(n))))
            .respond_with(response)
    };
    answer(
        1,
        ResponseTemplate::new(200).set_body_json(json!({
            "outcome": "success",
            "match_lead": {"result": {"success": true, "email_match": true, "phone_match": true}},
            "retain": {"results": {"expires_at": "2099-01-01T00:00:00Z"}}
        })),
    )
    .mount(&tf)
    .await;
    answer(
        2,
        ResponseTemplate::new(200).set_body_json(json!({
            "outcome": "failure", "reason": "certificate expired"
        })),
    )
    .mount(&tf)
    .await;
    answer(
        3,
        ResponseTemplate::new(200)
            .set_body_json(json!({"outcome": "success"}))
            .set_delay(Duration::from_millis(1500)),
    )
    .mount(&tf)
    .await;
    answer(
        4,
        ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"),
    )
    .mount(&tf)
    .await;
    answer(
        5,
        ResponseTemplate::new(200).set_body_json(json!({
            "outcome": "success", "match_lead": {"result": {"success": false}}
        })),
    )
    .mount(&tf)
    .await;
    let setup = setup(
        &pool,
        json!([{"type": "trustedform", "api_key": TF_KEY, "timeout_ms": 300}]),
        Some(&tf),
        None,
    )
    .await;
    let funded = setup.books().await;

    // Refusals first: no buyer called, no money moved, the reason told and recorded.
    for (n, code, reason) in [
        (2, "certificate_failed", Some("certificate expired")),
        (3, "timeout", None),
        (4, "malformed_answer", None),
        (5, "match_lead_failed", None),
    ] {
        let (ping_id, answer) = setup
            .post(consent_with("trustedform_cert_url", &cert_url(n)))
            .await;
        assert_unverified(&answer, code);
        if let Some(reason) = reason {
            assert_eq!(
                answer["reason"],
                format!("trustedform: {reason}"),
                "{answer}"
            );
        }
        let steps = setup.verification(&ping_id).await;
        assert_eq!(
            steps[0]["outcome"],
            if code == "timeout" || code == "malformed_answer" {
                "unavailable"
            } else {
                "failed"
            }
        );
        assert_eq!(steps[0]["code"], code);
        assert_eq!(steps[0]["type"], "trustedform");
        assert_eq!(setup.post_log_result(&ping_id).await, "consent_unverified");
        // The console's page of the auction says it too.
        if code == "certificate_failed" {
            let page = setup
                .console_page(&format!("/console/auctions/{ping_id}"))
                .await;
            assert!(page.contains("Consent verification"), "{page}");
            assert!(page.contains("certificate_failed") && page.contains("certificate expired"));
        }
    }
    assert_eq!(setup.deliveries().await, 0, "no buyer is called");
    assert_eq!(setup.books().await, funded, "no money moved");

    // A verified certificate sells, once the provider was sent the key and the lead to match.
    let (ping_id, answer) = setup
        .post(consent_with("trustedform_cert_url", &cert_url(1)))
        .await;
    assert_eq!(answer["status"], "sold", "{answer}");
    assert_eq!(setup.deliveries().await, 1);
    assert_eq!(setup.books().await.0, funded.0 - PRICE_CENTS);
    let steps = setup.verification(&ping_id).await;
    assert_eq!(
        (steps[0]["outcome"].as_str(), steps[0]["cached"].as_bool()),
        (Some("passed"), Some(false))
    );
    let call = tf
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.url.path() == format!("/{}", cert(1)))
        .unwrap();
    let basic = format!("Basic {}", base64_of(&format!("API:{TF_KEY}")));
    assert_eq!(call.headers.get("authorization").unwrap(), basic.as_str());
    assert_eq!(call.headers.get("api-version").unwrap(), "4.0");
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(
        body["match_lead"],
        json!({"email": "ada@example.com", "phone": "2145550123"})
    );
    assert_eq!(body["retain"]["vendor"], "auto-insurance");

    // The same certificate and consumer again: the kept answer, no second call.
    let calls = tf.received_requests().await.unwrap().len();
    let (ping_id, answer) = setup
        .post(consent_with("trustedform_cert_url", &cert_url(1)))
        .await;
    assert_eq!(answer["status"], "sold", "{answer}");
    assert_eq!(tf.received_requests().await.unwrap().len(), calls);
    assert_eq!(setup.verification(&ping_id).await[0]["cached"], true);
}

/// Base64 (standard, padded), for the expected Basic credentials.
fn base64_of(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn credentials_never_reach_a_certificate_url_on_another_host(pool: PgPool) {
    let tf = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"outcome": "success",
            "match_lead": {"result": {"success": true}}})),
        )
        .mount(&tf)
        .await;
    // The partner's choice of host: any connection to it at all is counted (a TLS handshake
    // as much as a request).
    let evil = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = evil.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = evil.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let setup = setup(
        &pool,
        json!([{"type": "trustedform", "api_key": TF_KEY}]),
        Some(&tf),
        None,
    )
    .await;
    for url in [
        format!("https://127.0.0.1:{port}/{}", cert(1)),
        format!("https://localhost:{port}/{}", cert(1)),
        format!("https://cert.trustedform.com.localhost:{port}/{}", cert(1)),
        format!("https://cert.trustedform.com@127.0.0.1:{port}/{}", cert(1)),
    ] {
        let (_, answer) = setup.post(consent_with("trustedform_cert_url", &url)).await;
        assert_unverified(&answer, "invalid_certificate_url");
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the partner's host got nothing"
    );
    assert!(
        tf.received_requests().await.unwrap().is_empty(),
        "no certificate was sent at all"
    );
    assert_eq!(setup.deliveries().await, 0);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn jornaya_pass_fail_timeout_and_malformed_answers(pool: PgPool) {
    let jornaya = MockServer::start().await;
    let answer = |n: u8, response: ResponseTemplate| {
        Mock::given(method("POST"))
            .and(path("/SingleQuery"))
            .and(body_string_contains(format!("id={}", leadid(n))))
            .respond_with(response)
    };
    answer(
        1,
        ResponseTemplate::new(200).set_body_json(json!({"audit": {"authentic": 1, "consent": 1}})),
    )
    .mount(&jornaya)
    .await;
    answer(
        2,
        ResponseTemplate::new(200).set_body_json(json!({"audit": {"authentic": 0}})),
    )
    .mount(&jornaya)
    .await;
    answer(
        3,
        ResponseTemplate::new(200)
            .set_body_json(json!({"audit": {"authentic": 1, "consent": 1}}))
            .set_delay(Duration::from_millis(1500)),
    )
    .mount(&jornaya)
    .await;
    answer(
        4,
        ResponseTemplate::new(200).set_body_json(json!({"audit": "yes"})),
    )
    .mount(&jornaya)
    .await;
    let setup = setup(
        &pool,
        json!([{"type": "jornaya", "account_code": "ACCT-1", "audit_key": "AUDIT-SECRET-1",
                "provider_code": "quote-funnel", "timeout_ms": 300}]),
        None,
        Some(&jornaya),
    )
    .await;
    let funded = setup.books().await;
    for (n, code) in [
        (2, "not_authentic"),
        (3, "timeout"),
        (4, "malformed_answer"),
    ] {
        let (ping_id, answer) = setup.post(consent_with("jornaya_leadid", &leadid(n))).await;
        assert_unverified(&answer, code);
        assert_eq!(setup.verification(&ping_id).await[0]["code"], code);
    }
    // A LeadiD that is no token is refused without a call.
    let (_, answer) = setup
        .post(consent_with("jornaya_leadid", "not-a-leadid"))
        .await;
    assert_unverified(&answer, "invalid_leadid");
    let (_, answer) = setup.post(consent()).await;
    assert_unverified(&answer, "missing_consent");
    assert_eq!(setup.deliveries().await, 0);
    assert_eq!(setup.books().await, funded);

    let (ping_id, answer) = setup.post(consent_with("jornaya_leadid", &leadid(1))).await;
    assert_eq!(answer["status"], "sold", "{answer}");
    assert_eq!(setup.verification(&ping_id).await[0]["outcome"], "passed");
    assert_eq!(setup.books().await.0, funded.0 - PRICE_CENTS);
    let form = jornaya
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .find(|body| body.contains(&leadid(1)))
        .unwrap();
    let fields: Vec<&str> = form.split('&').collect();
    for field in [
        "lac=ACCT-1",
        "lak=AUDIT-SECRET-1",
        "lpc=quote-funnel",
        "format=json",
    ] {
        assert!(fields.contains(&field), "{form}");
    }
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn http_hook_pass_fail_timeout_and_malformed_answers(pool: PgPool) {
    let hook = MockServer::start().await;
    let answer = |scenario: &str, response: ResponseTemplate| {
        Mock::given(method("POST"))
            .and(path("/verify"))
            .and(body_partial_json(
                json!({"consent": {"scenario": scenario}}),
            ))
            .respond_with(response)
    };
    answer(
        "pass",
        ResponseTemplate::new(200).set_body_json(json!({"result": "pass"})),
    )
    .mount(&hook)
    .await;
    answer(
        "fail",
        ResponseTemplate::new(200)
            .set_body_json(json!({"result": "fail", "reason": "consent older than 90 days"})),
    )
    .mount(&hook)
    .await;
    answer(
        "slow",
        ResponseTemplate::new(200)
            .set_body_json(json!({"result": "pass"}))
            .set_delay(Duration::from_millis(1500)),
    )
    .mount(&hook)
    .await;
    answer(
        "garbled",
        ResponseTemplate::new(200).set_body_string("{not json"),
    )
    .mount(&hook)
    .await;
    let setup = setup(
        &pool,
        json!([{"type": "http", "url": format!("{}/verify", hook.uri()), "timeout_ms": 300,
                "headers": {"X-Hook-Key": "hook-secret-0123456789abcdef"},
                "accept": {"path": "/result", "equals": "pass"}, "reason_path": "/reason"}]),
        None,
        None,
    )
    .await;
    let funded = setup.books().await;
    for (scenario, code) in [
        ("fail", "hook_failed"),
        ("slow", "timeout"),
        ("garbled", "malformed_answer"),
    ] {
        let (_, answer) = setup.post(consent_with("scenario", scenario)).await;
        assert_unverified(&answer, code);
        if scenario == "fail" {
            assert_eq!(
                answer["reason"], "http: consent older than 90 days",
                "{answer}"
            );
        }
    }
    assert_eq!(setup.deliveries().await, 0);
    assert_eq!(setup.books().await, funded);
    let (ping_id, answer) = setup.post(consent_with("scenario", "pass")).await;
    assert_eq!(answer["status"], "sold", "{answer}");
    assert_eq!(setup.verification(&ping_id).await[0]["outcome"], "passed");
    let sent = &hook.received_requests().await.unwrap()[0];
    assert_eq!(
        sent.headers.get("x-hook-key").unwrap(),
        "hook-secret-0123456789abcdef"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn an_optional_step_is_recorded_without_refusing_and_a_direct_post_is_refused_too(
    pool: PgPool,
) {
    let tf = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"outcome": "failure",
            "reason": "unknown certificate"})),
        )
        .mount(&tf)
        .await;
    let setup = setup(
        &pool,
        json!([{"type": "trustedform", "api_key": TF_KEY, "required": false},
               {"type": "jornaya", "account_code": "A", "audit_key": "B"}]),
        Some(&tf),
        None,
    )
    .await;
    // The optional TrustedForm step fails and is recorded; the required Jornaya step finds no
    // LeadiD: the post is refused by the second step.
    let (ping_id, answer) = setup
        .post(consent_with("trustedform_cert_url", &cert_url(7)))
        .await;
    assert_unverified(&answer, "missing_consent");
    assert_eq!(answer["verification"]["step"], 1);
    let steps = setup.verification(&ping_id).await;
    assert_eq!(steps.as_array().unwrap().len(), 2, "{steps}");
    assert_eq!(
        (steps[0]["outcome"].as_str(), steps[0]["required"].as_bool()),
        (Some("failed"), Some(false))
    );
    assert!(!steps.to_string().contains("ada@example.com"));

    // The direct post (POST /v1/leads) is held to the same steps.
    let (status, _, text) = setup
        .app
        .post_raw(
            "/v1/leads",
            &setup.exchange.posting_key,
            &json!({"lead": full_lead(), "consent": consent_with("trustedform_cert_url", &cert_url(7))}),
        )
        .await;
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_unverified(&answer, "missing_consent");
    assert_eq!(setup.deliveries().await, 0);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn verification_credentials_are_write_only(pool: PgPool) {
    let setup = setup(&pool, json!([]), None, None).await;
    let app = &setup.app;
    let admin = &setup.exchange.admin_key;
    let offer = app.url(&format!("/v1/admin/offers/{}", setup.exchange.offer_id));
    let patch = |body: Value| {
        app.client
            .patch(&offer)
            .bearer_auth(admin)
            .json(&body)
            .send()
    };
    let steps = json!([
        {"type": "trustedform", "api_key": TF_KEY},
        {"type": "jornaya", "account_code": "acct-0123456789abcdef01234567", "audit_key": "short"},
        {"type": "http", "url": "https://verify.example/check",
         "headers": {"Authorization": "Bearer hook_0123456789abcdef0123456789"}}
    ]);
    let response = patch(json!({ "verification": steps })).await.unwrap();
    assert_eq!(response.status(), 200);
    let shown: Value = response.json().await.unwrap();
    let text = shown.to_string();
    for secret in [
        TF_KEY,
        "acct-0123456789abcdef01234567",
        "short",
        "hook_0123456789abcdef0123456789",
    ] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
    assert_eq!(shown["verification"][0]["api_key"], "••••6789");
    assert_eq!(shown["verification"][1]["audit_key"], "••••");

    // What GET shows, sent back, keeps the stored credentials.
    let response = patch(json!({ "verification": shown["verification"] }))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stored: Value = sqlx::query_scalar("SELECT verification FROM offers WHERE id = $1")
        .bind(setup.exchange.offer_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, steps);

    // A masked header moved to another host, a masked key at a step of another type, and
    // broken steps: 422 with each pointer.
    let mut moved = shown["verification"].clone();
    moved[2]["url"] = json!("https://attacker.example/collect");
    moved[0] = json!({"type": "jornaya", "account_code": "••••6789", "audit_key": "x"});
    moved
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "trustedform", "timeout_ms": 5}));
    let response = patch(json!({ "verification": moved })).await.unwrap();
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        [
            "/verification/0/account_code",
            "/verification/2/headers/Authorization"
        ],
        "{problem}"
    );
    let response = patch(json!({ "verification": [{"type": "trustedform", "timeout_ms": 5}] }))
        .await
        .unwrap();
    let problem: Value = response.json().await.unwrap();
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        ["/verification/0/timeout_ms", "/verification/0/api_key"],
        "{problem}"
    );
    // A hook may not call what the outbound address policy refuses.
    let response = patch(
        json!({ "verification": [{"type": "http", "url": "http://169.254.169.254/latest"}] }),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(
        problem["errors"][0]["pointer"], "/verification/0/url",
        "{problem}"
    );
}
