//! The failing-buyer breaker (docs/revenue-recovery.md §5): an endpoint that keeps failing
//! stops costing pings and posts their timeouts, and comes back through one probe.

use std::time::{Duration, Instant};

use futures::future::join;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, outcome_of, ping_lead};
use crate::harness::{TestApp, spawn_app};

impl TestApp {
    async fn set_breaker(&self, key: &str, breaker: Value) {
        let body = json!({ "breaker": breaker });
        let (status, answer) = self
            .admin(
                reqwest::Method::PATCH,
                "/v1/admin/settings",
                key,
                Some(body),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    async fn endpoint_health(&self, key: &str, contract: Uuid) -> Value {
        let path = format!("/v1/admin/contracts/{contract}");
        let (status, answer) = self.admin(reqwest::Method::GET, &path, key, None).await;
        assert_eq!(status, 200, "{answer}");
        answer["endpoint_health"].clone()
    }

    async fn metrics_text(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    }
}

/// The value of the sample `series` in Prometheus text (0 when absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn answer_with(server: &MockServer, response: ResponseTemplate) {
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(response)
        .mount(server)
        .await;
}

async fn calls(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

/// Pings; returns the answer and the contract's outcome in the explain.
async fn ping_outcome(app: &TestApp, exchange: &Exchange, contract: Uuid) -> (Value, Value) {
    let (status, answer) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(status, 200, "{answer}");
    let ping_id = answer["ping_id"].as_str().unwrap();
    let (status, view) = app.ping_view(&exchange.admin_key, ping_id).await;
    assert_eq!(status, 200, "{view}");
    (answer, outcome_of(&view, contract).clone())
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_failing_rtb_buyer_is_declined_without_a_call_until_one_probe_finds_it_healthy(
    pool: PgPool,
) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let rtb = MockServer::start().await;
    // A buyer that answers too late: every call costs the ping its 600 ms timeout.
    answer_with(
        &rtb,
        ResponseTemplate::new(200)
            .set_body_json(json!({ "exclusive_bid": 40 }))
            .set_delay(Duration::from_millis(3000)),
    )
    .await;
    let (_, contract) = exchange
        .buyer_with(
            100_000,
            ContractSpec::rtb(format!("{}/bid", rtb.uri()), 600),
        )
        .await;
    let app = spawn_app(pool.clone()).await;
    app.set_breaker(
        &exchange.admin_key,
        json!({ "failures": 3, "window_ms": 60000, "cooldown_ms": 2000 }),
    )
    .await;
    let health = app.endpoint_health(&exchange.admin_key, contract).await;
    assert_eq!(health["rtb"]["state"], "closed", "{health}");
    assert_eq!(health["delivery"]["state"], "closed", "{health}");

    for n in 1..=3 {
        let (_, outcome) = ping_outcome(&app, &exchange, contract).await;
        assert_eq!(outcome["reason"], "rtb_timeout", "{outcome}");
        assert_eq!(calls(&rtb).await, n);
        if n == 2 {
            let health = app.endpoint_health(&exchange.admin_key, contract).await;
            assert_eq!(health["rtb"]["state"], "closed", "{health}");
            assert_eq!(health["rtb"]["consecutive_failures"], 2, "{health}");
        }
    }

    // Open: the contract is declined at once, without a call.
    let health = app.endpoint_health(&exchange.admin_key, contract).await;
    assert_eq!(health["rtb"]["state"], "open", "{health}");
    assert_eq!(health["rtb"]["consecutive_failures"], 3, "{health}");
    let opened_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(health["rtb"]["opened_at"].clone()).unwrap();
    let retry_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(health["rtb"]["retry_at"].clone()).unwrap();
    assert_eq!(retry_at - opened_at, chrono::Duration::milliseconds(2000));
    assert_eq!(health["delivery"]["state"], "closed", "{health}");
    let metrics = app.metrics_text().await;
    assert!(
        sample(&metrics, r#"gavel_breakers_open{endpoint="rtb"}"#) >= 1.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            r#"gavel_breaker_transitions_total{endpoint="rtb",to="open"}"#
        ) >= 1.0
    );

    let started = Instant::now();
    let (answer, outcome) = ping_outcome(&app, &exchange, contract).await;
    let took = started.elapsed();
    assert_eq!(answer["status"], "no_bids", "{answer}");
    assert_eq!(outcome["outcome"], "declined", "{outcome}");
    assert_eq!(outcome["reason"], "buyer_unavailable", "{outcome}");
    let detail = outcome["detail"].as_str().unwrap();
    assert!(
        detail.contains("RTB endpoint") && detail.contains(" since ") && detail.contains(" until "),
        "{detail}"
    );
    assert_eq!(outcome["rtb_ms"], Value::Null, "{outcome}");
    assert_eq!(calls(&rtb).await, 3, "no call while the breaker is open");
    assert!(took < Duration::from_millis(500), "the ping took {took:?}");

    // After the cool-down: half-open. The buyer is healthy again (a little slow): of two
    // pings at once, exactly one makes the probe call.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let health = app.endpoint_health(&exchange.admin_key, contract).await;
    assert_eq!(health["rtb"]["state"], "half_open", "{health}");
    answer_with(
        &rtb,
        ResponseTemplate::new(200)
            .set_body_json(json!({ "exclusive_bid": 40 }))
            .set_delay(Duration::from_millis(400)),
    )
    .await;
    let ((first, _), (second, _)) = join(
        ping_outcome(&app, &exchange, contract),
        ping_outcome(&app, &exchange, contract),
    )
    .await;
    assert_eq!(calls(&rtb).await, 1, "one probe");
    let mut statuses = [first["status"].clone(), second["status"].clone()];
    statuses.sort_by_key(ToString::to_string);
    assert_eq!(statuses, [json!("bids"), json!("no_bids")]);

    // The probe's success closed it: the next ping calls and bids.
    let health = app.endpoint_health(&exchange.admin_key, contract).await;
    assert_eq!(
        health["rtb"],
        json!({ "state": "closed", "consecutive_failures": 0, "opened_at": null, "retry_at": null })
    );
    let (answer, outcome) = ping_outcome(&app, &exchange, contract).await;
    assert_eq!(answer["status"], "bids", "{answer}");
    assert_eq!(outcome["outcome"], "won", "{outcome}");
    assert_eq!(calls(&rtb).await, 2);

    // The list shows it too; a fixed-price contract has no RTB endpoint.
    let (_, fixed) = exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(1000), None))
        .await;
    let (status, list) = app
        .admin(
            reqwest::Method::GET,
            "/v1/admin/contracts",
            &exchange.admin_key,
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    let of = |id: Uuid| {
        items
            .iter()
            .find(|c| c["id"] == id.to_string())
            .unwrap_or_else(|| panic!("{id} not listed: {list}"))["endpoint_health"]
            .clone()
    };
    assert_eq!(of(contract)["rtb"]["state"], "closed");
    assert_eq!(of(fixed)["rtb"], Value::Null);
    assert_eq!(of(fixed)["delivery"]["state"], "closed");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_failing_delivery_endpoint_fails_the_next_sale_without_a_call(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let delivery = MockServer::start().await;
    answer_with(&delivery, ResponseTemplate::new(503)).await;
    let spec = ContractSpec {
        delivery: Some(json!({ "url": format!("{}/leads", delivery.uri()), "timeout_ms": 1000 })),
        ..ContractSpec::fixed(Some(4000), None)
    };
    let (_, contract) = exchange.buyer_with(100_000, spec).await;
    let app = spawn_app(pool.clone()).await;
    app.set_breaker(
        &exchange.admin_key,
        json!({ "failures": 2, "cooldown_ms": 60000 }),
    )
    .await;

    // Three pings with bids while the breaker is closed.
    let mut pings = Vec::new();
    for _ in 0..3 {
        let (answer, _) = ping_outcome(&app, &exchange, contract).await;
        assert_eq!(answer["status"], "bids", "{answer}");
        pings.push(answer);
    }
    let post = |ping: &Value| json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() });
    for (n, ping) in pings[..2].iter().enumerate() {
        let (status, answer) = app.post(&exchange.posting_key, post(ping)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["results"][0]["status"], "failed", "{answer}");
        assert_eq!(calls(&delivery).await, n + 1);
    }
    let health = app.endpoint_health(&exchange.admin_key, contract).await;
    assert_eq!(health["rtb"], Value::Null, "{health}");
    assert_eq!(health["delivery"]["state"], "open", "{health}");
    assert_eq!(health["delivery"]["consecutive_failures"], 2, "{health}");

    // The third post fails its sale at once, without a call; the buyer's funds are whole.
    let started = Instant::now();
    let (status, answer) = app.post(&exchange.posting_key, post(&pings[2])).await;
    assert_eq!(status, 200, "{answer}");
    assert!(started.elapsed() < Duration::from_millis(1000));
    let result = &answer["results"][0];
    assert_eq!(result["status"], "failed", "{answer}");
    assert!(
        result["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("buyer unavailable: ")),
        "{answer}"
    );
    assert_eq!(
        calls(&delivery).await,
        2,
        "no delivery while the breaker is open"
    );

    // And the next ping does not offer the lead to it.
    let (answer, outcome) = ping_outcome(&app, &exchange, contract).await;
    assert_eq!(answer["status"], "no_bids", "{answer}");
    assert_eq!(outcome["reason"], "buyer_unavailable", "{outcome}");
    assert!(
        outcome["detail"]
            .as_str()
            .is_some_and(|d| d.contains("delivery endpoint")),
        "{outcome}"
    );
    let metrics = app.metrics_text().await;
    assert!(
        sample(&metrics, r#"gavel_breakers_open{endpoint="delivery"}"#) >= 1.0,
        "{metrics}"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn breaker_settings_are_validated_and_each_tenants_own(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let other = Exchange::create(&pool, "exclusive").await;
    let app = spawn_app(pool.clone()).await;
    let get = |key: String| {
        let app = &app;
        async move {
            app.admin(reqwest::Method::GET, "/v1/admin/settings", &key, None)
                .await
        }
    };
    let defaults = json!({ "breaker": { "failures": 5, "window_ms": 30000, "cooldown_ms": 30000 },
                "pii_retention_days": null });
    assert_eq!(
        get(exchange.admin_key.clone()).await,
        (200, defaults.clone())
    );

    let response = app
        .client
        .patch(app.url("/v1/admin/settings"))
        .bearer_auth(&exchange.admin_key)
        .json(
            &json!({ "breaker": { "failures": 0, "window_ms": "fast", "cooldown_ms": 10,
            "color": "red" }, "theme": 1 }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_config", "{problem}");
    let mut pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    pointers.sort_unstable();
    assert_eq!(
        pointers,
        [
            "/breaker/color",
            "/breaker/cooldown_ms",
            "/breaker/failures",
            "/breaker/window_ms",
            "/theme"
        ]
    );
    // Nothing was written.
    assert_eq!(
        get(exchange.admin_key.clone()).await,
        (200, defaults.clone())
    );

    let (status, answer) = app
        .admin(
            reqwest::Method::PATCH,
            "/v1/admin/settings",
            &exchange.admin_key,
            Some(json!({ "breaker": { "failures": 2, "cooldown_ms": 4000 } })),
        )
        .await;
    let changed = json!({ "breaker": { "failures": 2, "window_ms": 30000, "cooldown_ms": 4000 },
                          "pii_retention_days": null });
    assert_eq!((status, &answer), (200, &changed));
    assert_eq!(get(exchange.admin_key.clone()).await, (200, changed));
    // The other tenant's are its own.
    assert_eq!(get(other.admin_key.clone()).await, (200, defaults));
    let (status, _) = app
        .admin(reqwest::Method::GET, "/v1/admin/settings", "ak_nope", None)
        .await;
    assert_eq!(status, 401);
}
