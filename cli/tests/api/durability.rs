//! Pings committed without waiting for the WAL flush (`ping_synchronous_commit = false`,
//! docs/durability.md): what a database crash can lose is the last moments of ping records,
//! and a post of such a ping must fail cleanly, selling and charging nothing.

use serde_json::json;
use sqlx::PgPool;

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, ping_lead};
use crate::harness::spawn_app;

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
