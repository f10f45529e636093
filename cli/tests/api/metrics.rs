//! `/metrics` and load shedding.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use sqlx::PgPool;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, ping_lead};
use crate::harness::{TestApp, spawn_app, spawn_app_with, test_settings};

/// Parses Prometheus text: every sample line is `name{labels} value`; returns the samples.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            assert!(
                comment.starts_with(" HELP ") || comment.starts_with(" TYPE "),
                "bad comment: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels: {line}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        samples.insert(series.to_owned(), value);
    }
    samples
}

async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    parse_prometheus(&response.text().await.unwrap())
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn metrics_parse_and_move_with_pings_posts_and_deliveries(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let buyers = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&buyers)
        .await;
    let spec = ContractSpec {
        delivery: Some(json!({ "url": buyers.uri() })),
        ..ContractSpec::fixed(Some(4000), None)
    };
    exchange.buyer_with(100_000, spec).await;
    let app = spawn_app(pool).await;

    let before = scrape(&app).await;
    let (_, ping) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    let (status, _) = app
        .post(
            &exchange.posting_key,
            json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() }),
        )
        .await;
    assert_eq!(status, 200);
    let after = scrape(&app).await;

    for series in [
        "gavel_pings_total{status=\"bids\"}",
        "gavel_posts_total{status=\"sold\"}",
        "gavel_deliveries_total{outcome=\"accepted\"}",
        "gavel_sales_total{status=\"sold\"}",
        "gavel_contract_outcomes_total{outcome=\"won\",reason=\"none\"}",
        "gavel_http_requests_total{route=\"/v1/ping\",status=\"200\"}",
        "gavel_ping_duration_seconds_count",
    ] {
        assert!(
            value(&after, series) >= value(&before, series) + 1.0,
            "{series} did not move"
        );
    }
    // Buckets fine enough to tell 1 ms from 5 ms.
    for bucket in ["0.001", "0.005"] {
        assert!(
            after.contains_key(&format!(
                "gavel_ping_duration_seconds_bucket{{le=\"{bucket}\"}}"
            )),
            "no {bucket} bucket"
        );
    }
    // Both pools served the ping: its grouped statements hold connections of their own.
    for pool in ["main", "ping_groups"] {
        let open = value(
            &after,
            &format!("gavel_db_pool_connections{{pool=\"{pool}\",state=\"in_use\"}}"),
        ) + value(
            &after,
            &format!("gavel_db_pool_connections{{pool=\"{pool}\",state=\"idle\"}}"),
        );
        assert!(open >= 1.0, "no connection open in the {pool} pool");
    }
    assert!(after.contains_key("gavel_auctions_in_flight"));
    assert!(
        !after
            .keys()
            .any(|k| k.contains(&exchange.tenant_id.to_string())),
        "no tenant ids in labels"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn beyond_the_in_flight_limit_auctions_are_refused_at_once_then_served_again(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_millis(400)))
        .mount(&slow)
        .await;
    exchange
        .buyer_with(100_000, ContractSpec::rtb(slow.uri(), 1000))
        .await;
    let mut settings = test_settings();
    settings.max_in_flight_auctions = 2;
    let app = spawn_app_with(pool, settings, axum::Router::new()).await;

    let burst = (0..20).map(|_| async {
        let response = app
            .client
            .post(app.url("/v1/ping"))
            .bearer_auth(&exchange.posting_key)
            .json(&json!({ "lead": ping_lead() }))
            .send()
            .await
            .unwrap();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        (
            status,
            retry_after,
            body["code"].as_str().map(str::to_owned),
        )
    });
    let answers = join_all(burst).await;
    let served = answers
        .iter()
        .filter(|(status, _, _)| *status == 200)
        .count();
    let shed: Vec<_> = answers
        .iter()
        .filter(|(status, _, _)| *status == 503)
        .collect();
    assert!(served >= 2, "{answers:?}");
    assert!(!shed.is_empty(), "nothing was shed: {answers:?}");
    assert!(
        shed.iter()
            .all(|(_, retry, code)| retry.as_deref() == Some("1")
                && code.as_deref() == Some("overloaded"))
    );
    assert_eq!(served + shed.len(), 20);

    // Once the burst is over, pings are served again.
    let (status, answer) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("no_bids")));
}
