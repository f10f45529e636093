//! Pings committed without waiting for the WAL flush (`ping_synchronous_commit = false`,
//! docs/durability.md): what a database crash can lose is the last moments of ping records,
//! and a post of such a ping must fail cleanly, selling and charging nothing.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, ping_lead};
use crate::harness::{spawn_app, spawn_app_with, test_settings};

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_post_of_a_ping_whose_record_was_lost_is_ping_not_found_and_sells_nothing(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let (buyer, _) = exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(1000), None))
        .await;
    let app = spawn_app(pool.clone()).await;
    assert!(
        !crate::harness::test_settings().ping_synchronous_commit,
        "pings do not wait for the flush by default"
    );

    let (status, ping) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(
        (status, ping["status"].as_str()),
        (200, Some("bids")),
        "{ping}"
    );
    // A crash before the WAL flush loses the ping's record whole: its row and its contracts'.
    for statement in [
        "DELETE FROM distribution_winners WHERE tenant_id = $1",
        "DELETE FROM distribution_declines WHERE tenant_id = $1",
        "DELETE FROM posting_log WHERE tenant_id = $1",
    ] {
        sqlx::query(statement)
            .bind(exchange.tenant_id)
            .execute(&pool)
            .await
            .unwrap();
    }

    let (status, problem) = app
        .post(
            &exchange.posting_key,
            json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() }),
        )
        .await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(problem["code"], "ping_not_found");
    let leads: i64 = sqlx::query_scalar("SELECT count(*) FROM leads WHERE tenant_id = $1")
        .bind(exchange.tenant_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(leads, 0, "no lead is stored");
    assert_eq!(
        exchange.buyer_books(buyer).await,
        (100_000, 100_000),
        "the buyer is charged nothing: balance and ledger"
    );
}

/// `ping_record_max_wait_ms`: a database that cannot write the ping's record (a disk stalled on
/// a flush, here a lock held on `posting_log`) holds up the record, not the ping's answer; a post
/// of the ping that arrives meanwhile waits for the record, then sells as usual.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_ping_whose_record_write_stalls_answers_within_its_bound_and_its_post_waits_for_the_record(
    pool: PgPool,
) {
    let buyer_server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": "accepted" })))
        .mount(&buyer_server)
        .await;
    let exchange = Exchange::create(&pool, "exclusive").await;
    let delivery = json!({ "url": format!("{}/leads", buyer_server.uri()), "timeout_ms": 1000,
                           "accept": { "path": "/status", "equals": "accepted" } });
    let (buyer, _) = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                delivery: Some(delivery),
                ..ContractSpec::fixed(Some(1000), None)
            },
        )
        .await;
    let mut settings = test_settings();
    settings.ping_record_max_wait_ms = 100;
    let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;
    let tenant_id = exchange.tenant_id;
    let pings = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM posting_log WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(&pool)
            .await
            .unwrap()
    };

    // The stall: no write into posting_log until this transaction ends (reads go on).
    let mut stall = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE posting_log IN EXCLUSIVE MODE")
        .execute(&mut *stall)
        .await
        .unwrap();
    let (status, ping) = tokio::time::timeout(
        Duration::from_secs(5),
        app.ping(&exchange.posting_key, json!({ "lead": ping_lead() })),
    )
    .await
    .expect("the ping answers while its record cannot be written");
    assert_eq!(
        (status, ping["status"].as_str()),
        (200, Some("bids")),
        "{ping}"
    );
    assert_eq!(
        pings(pool.clone()).await,
        0,
        "answered before its record was written"
    );

    let post = app.post(
        &exchange.posting_key,
        json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() }),
    );
    let mut post = std::pin::pin!(post);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut post)
            .await
            .is_err(),
        "the post waits for the ping's record rather than answer ping_not_found"
    );
    stall.commit().await.unwrap();
    let (status, answer) = post.await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("sold")),
        "{answer}"
    );
    assert!(
        pings(pool.clone()).await >= 1,
        "the ping's record was written"
    );
    assert_eq!(
        exchange.buyer_books(buyer).await,
        (99_000, 99_000),
        "the buyer is charged once: balance and ledger"
    );
}
