//! `gavel demo`'s seed: idempotent, funded once, fresh keys on each run.

use std::net::SocketAddr;

use gavel_cli::demo;
use sqlx::PgPool;

async fn count(pool: &PgPool, sql: &'static str, tenant: uuid::Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(tenant)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn key_is_live(pool: &PgPool, sql: &'static str, key: &str) -> bool {
    sqlx::query_scalar(sql)
        .bind(&gavel::keys::hash(key)[..])
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn seeding_twice_leaves_one_demo_tenant_funded_once_with_fresh_keys(pool: PgPool) {
    let first_address: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let first = demo::seed(&pool, first_address).await.unwrap();
    let second = demo::seed(&pool, "0.0.0.0:9999".parse().unwrap())
        .await
        .unwrap();
    let tenant = second.tenant_id;
    assert_eq!(first.tenant_id, tenant);

    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tenants, 1);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM offers WHERE tenant_id = $1",
            tenant
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM partners WHERE tenant_id = $1",
            tenant
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM campaigns WHERE tenant_id = $1",
            tenant
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM buyers WHERE tenant_id = $1",
            tenant
        )
        .await,
        8
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM contracts WHERE tenant_id = $1",
            tenant
        )
        .await,
        8
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM contracts WHERE tenant_id = $1 AND pricing->>'type' = 'rtb'",
            tenant
        )
        .await,
        3
    );

    // Funded once: each balance equals its ledger, which holds one opening entry.
    let ledger_rows = count(
        &pool,
        "SELECT count(*) FROM ledger_entries WHERE tenant_id = $1",
        tenant,
    )
    .await;
    assert_eq!(ledger_rows, 8);
    let mismatched = count(
        &pool,
        "SELECT count(*) FROM buyers b WHERE tenant_id = $1 AND balance_cents <> (
             SELECT coalesce(sum(amount_cents), 0) FROM ledger_entries l
             WHERE l.tenant_id = b.tenant_id AND l.buyer_id = b.id) OR balance_cents <= 0",
        tenant,
    )
    .await;
    assert_eq!(mismatched, 0);

    // The second run's keys work; the first run's admin key was revoked, its posting key replaced.
    let admin_live =
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL)";
    let posting_live =
        "SELECT EXISTS (SELECT 1 FROM campaigns WHERE posting_key_hash = $1 AND status = 'active')";
    assert!(key_is_live(&pool, admin_live, &second.admin_key).await);
    assert!(!key_is_live(&pool, admin_live, &first.admin_key).await);
    assert!(key_is_live(&pool, posting_live, &second.posting_key).await);
    assert!(!key_is_live(&pool, posting_live, &first.posting_key).await);

    // The buyers' endpoints follow the server's current address (0.0.0.0 reached as loopback).
    let urls: Vec<String> = sqlx::query_scalar(
        "SELECT delivery->>'url' FROM contracts WHERE tenant_id = $1
         UNION ALL SELECT pricing->>'url' FROM contracts WHERE tenant_id = $1 AND pricing ? 'url'",
    )
    .bind(tenant)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(urls.len(), 11);
    assert!(
        urls.iter()
            .all(|u| u.starts_with("http://127.0.0.1:9999/demo/buyers/")),
        "{urls:?}"
    );

    // The printed instructions carry the live posting key.
    let text = demo::instructions(&second);
    assert!(
        text.contains(&second.posting_key)
            && text.contains("/v1/ping")
            && text.contains("/v1/post")
    );
}

#[test]
fn the_instructions_name_the_readmes_command_and_keep_a_redirected_log_whole() {
    let seeded = demo::Seeded {
        tenant_id: uuid::Uuid::nil(),
        admin_key: "admin".into(),
        posting_key: "posting".into(),
        base_url: "http://127.0.0.1:8080".into(),
    };
    let text = demo::instructions(&seeded);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    assert!(readme.contains(&format!("\n{}\n", demo::RUN_AGAIN)));
    assert!(text.contains(&format!("Run `{}` again", demo::RUN_AGAIN)));
    // `tee /dev/stderr` reopens a redirected log and truncates it.
    assert!(!text.contains("/dev/stderr"), "{text}");
}
