//! The migrations and what the schema itself enforces.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

const TABLES: [&str; 24] = [
    "tenants",
    "contract_stats",
    "api_keys",
    "partners",
    "buyers",
    "offers",
    "campaigns",
    "contracts",
    "cap_counters",
    "dedup_keys",
    "posting_log",
    "distribution_winners",
    "distribution_declines",
    "leads",
    "lead_sales",
    "ledger_entries",
    "idempotency_keys",
    "buyer_cap_counters",
    "returns",
    "console_sessions",
    "erasures",
    "lead_consumers",
    "suppression_lists",
    "suppression_entries",
];

#[sqlx::test(migrations = false)]
async fn migrations_build_the_whole_schema_on_an_empty_database(pool: PgPool) {
    gavel::MIGRATOR.run(&pool).await.unwrap();
    // Running them again (a second server starting) changes nothing.
    gavel::MIGRATOR.run(&pool).await.unwrap();

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations'
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut expected: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    expected.sort();
    assert_eq!(tables, expected);
    // The audit trail's one row per contract that saw a ping, over the two tables that keep it.
    let views: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.views WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(views, ["lead_distribution"]);
    // The database's decline reasons are the auction's, in the same order.
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT unnest(enum_range(NULL::decline_reason))::text")
            .fetch_all(&pool)
            .await
            .unwrap();
    let codes: Vec<&str> = gavel::auction::DeclineReason::ALL
        .iter()
        .map(|r| r.as_str())
        .collect();
    assert_eq!(reasons, codes);

    // Every table but tenants leads its primary key with tenant_id (sharding by tenant).
    let first_key_columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text
         FROM pg_index i
         JOIN pg_class c ON c.oid = i.indrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
         WHERE i.indisprimary AND c.relname <> '_sqlx_migrations'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(first_key_columns.len(), TABLES.len());
    for (table, column) in first_key_columns {
        let expected = if table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        assert_eq!(column, expected, "primary key of {table}");
    }

    // So does every index but the key-hash lookups, where the key names its tenant.
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text
         FROM pg_index i
         JOIN pg_class c ON c.oid = i.indexrelid
         JOIN pg_class t ON t.oid = i.indrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = 'public'
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
         WHERE t.relname NOT IN ('tenants', '_sqlx_migrations')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (index, column) in indexes {
        let expected = match index.as_str() {
            "api_keys_key_hash" => "key_hash",
            "campaigns_posting_key_hash" => "posting_key_hash",
            "console_sessions_token" => "token_hash",
            _ => "tenant_id",
        };
        assert_eq!(column, expected, "index {index}");
    }
}

/// A database recorded before the compact distribution (migration 0006) keeps every contract's
/// outcome: `lead_distribution` shows the same rows after the upgrade as the table held before.
#[sqlx::test(migrations = false)]
async fn upgrading_keeps_every_recorded_contract_outcome(pool: PgPool) {
    let before = tempfile::tempdir().unwrap();
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    for entry in std::fs::read_dir(&migrations).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0006" {
            std::fs::copy(&path, before.path().join(name)).unwrap();
        }
    }
    sqlx::migrate::Migrator::new(before.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();

    let (tenant, ping, other_ping, won_ping) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    // A winner (posted), an outbid contract, two declines (one with detail, one RTB timeout);
    // a ping whose only contract declined; a ping whose only contract won.
    sqlx::query(
        "INSERT INTO lead_distribution (tenant_id, ping_id, contract_id, buyer_id, created_at, outcome, reason,
                                        detail, exclusive_bid_cents, shared_bid_cents, rtb_ms, rtb_ref, bid_id,
                                        sale_type, price_cents, payout_cents, disposition)
         VALUES ($1, $2, gen_random_uuid(), gen_random_uuid(), '2026-11-01T10:00:00Z', 'won', NULL, NULL, 4000,
                 1500, 12, 'ref-1', gen_random_uuid(), 'exclusive', 4000, 2800, 'sold'),
                ($1, $2, gen_random_uuid(), gen_random_uuid(), '2026-11-01T10:00:00Z', 'outbid', 'outbid', NULL,
                 3000, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                ($1, $2, gen_random_uuid(), gen_random_uuid(), '2026-11-01T10:00:00Z', 'declined', 'filtered',
                 'state not in [CA]', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                ($1, $2, gen_random_uuid(), gen_random_uuid(), '2026-11-01T10:00:00Z', 'declined', 'rtb_timeout',
                 NULL, NULL, NULL, 150, NULL, NULL, NULL, NULL, NULL, NULL),
                ($1, $3, gen_random_uuid(), gen_random_uuid(), '2026-11-02T10:00:00Z', 'declined', 'cap_reached',
                 'daily leads cap', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                ($1, $4, gen_random_uuid(), gen_random_uuid(), '2026-11-03T10:00:00Z', 'won', NULL, NULL, NULL,
                 900, NULL, NULL, gen_random_uuid(), 'shared', 900, 600, NULL)",
    )
    .bind(tenant)
    .bind(ping)
    .bind(other_ping)
    .bind(won_ping)
    .execute(&pool)
    .await
    .unwrap();
    let every_row =
        "SELECT to_jsonb(d) - 'created_at' || jsonb_build_object('at', created_at::text)
                     FROM lead_distribution d ORDER BY ping_id, contract_id";
    let recorded: Vec<serde_json::Value> = sqlx::query_scalar(every_row)
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(recorded.len(), 6);

    gavel::MIGRATOR.run(&pool).await.unwrap();
    let upgraded: Vec<serde_json::Value> = sqlx::query_scalar(every_row)
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(upgraded, recorded);
    let kept: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM distribution_winners), (SELECT count(*) FROM distribution_declines)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        kept,
        (2, 2),
        "a row per winner, one declines row per ping with others"
    );

    // A process of the previous release, still running during the upgrade, records a ping and
    // then its winner's disposition through the view, as it did into the table.
    let late_ping = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO lead_distribution (tenant_id, ping_id, created_at, contract_id, buyer_id, outcome, reason,
                                        detail, exclusive_bid_cents, shared_bid_cents, rtb_ms, rtb_ref, bid_id,
                                        sale_type, price_cents, payout_cents)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::uuid[], $5::uuid[], $6::text[],
                              $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::int[], $12::text[],
                              $13::uuid[], $14::text[], $15::bigint[], $16::bigint[])",
    )
    .bind([tenant; 3])
    .bind([late_ping; 3])
    .bind([chrono::Utc::now(); 3])
    .bind([Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()])
    .bind([Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()])
    .bind(["won", "outbid", "declined"])
    .bind([None, Some("outbid"), Some("filtered")])
    .bind([None, None, Some("state")])
    .bind([Some(4000_i64), Some(3000), None])
    .bind([None::<i64>; 3])
    .bind([None::<i32>; 3])
    .bind([Some("ref"), None, None])
    .bind([Some(Uuid::now_v7()), None, None])
    .bind([Some("exclusive"), None, None])
    .bind([Some(4000_i64), None, None])
    .bind([Some(2800_i64), None, None])
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE lead_distribution d SET disposition = 'sold'
         WHERE d.tenant_id = $1 AND d.ping_id = $2 AND d.outcome = 'won'",
    )
    .bind(tenant)
    .bind(late_ping)
    .execute(&pool)
    .await
    .unwrap();
    type Outcome = (
        String,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<String>,
    );
    let late: Vec<Outcome> = sqlx::query_as(
        "SELECT outcome, reason, detail, exclusive_bid_cents, disposition FROM lead_distribution
             WHERE tenant_id = $1 AND ping_id = $2 ORDER BY outcome DESC",
    )
    .bind(tenant)
    .bind(late_ping)
    .fetch_all(&pool)
    .await
    .unwrap();
    let text = |s: &str| Some(s.to_owned());
    assert_eq!(
        late,
        [
            ("won".to_owned(), None, None, Some(4000), text("sold")),
            ("outbid".to_owned(), text("outbid"), None, Some(3000), None),
            (
                "declined".to_owned(),
                text("filtered"),
                text("state"),
                None,
                None
            ),
        ]
    );
}

/// A tenant with a partner, a buyer and an offer, inserted by plain SQL.
async fn tenant_with_basics(pool: &PgPool) -> (Uuid, Uuid, Uuid, Uuid) {
    let (tenant, partner, buyer, offer) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    sqlx::query("INSERT INTO tenants (id, name, timezone) VALUES ($1, 'T', 'America/Chicago')")
        .bind(tenant)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO partners (tenant_id, id, name) VALUES ($1, $2, 'P')")
        .bind(tenant)
        .bind(partner)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO buyers (tenant_id, id, name) VALUES ($1, $2, 'B')")
        .bind(tenant)
        .bind(buyer)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO offers (tenant_id, id, name, mode) VALUES ($1, $2, 'auto', 'hybrid')")
        .bind(tenant)
        .bind(offer)
        .execute(pool)
        .await
        .unwrap();
    (tenant, partner, buyer, offer)
}

async fn constraint_of(pool: &PgPool, sql: &'static str, tenant: Uuid, other: Uuid) -> String {
    let error = sqlx::query(sql)
        .bind(tenant)
        .bind(other)
        .execute(pool)
        .await
        .unwrap_err();
    match error {
        sqlx::Error::Database(db) => db.constraint().unwrap_or(db.message()).to_owned(),
        other => panic!("not a database error: {other}"),
    }
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn checks_and_foreign_keys_refuse_bad_configuration(pool: PgPool) {
    let (tenant, partner, buyer, offer) = tenant_with_basics(&pool).await;
    let (_, other_partner, _, _) = tenant_with_basics(&pool).await;

    let refused = [
        (
            "UPDATE buyers SET credit_limit_cents = -1 WHERE tenant_id = $1 AND id = $2",
            buyer,
            "buyers_credit_limit_cents_check",
        ),
        (
            "UPDATE offers SET mode = 'auction' WHERE tenant_id = $1 AND id = $2",
            offer,
            "offers_mode_check",
        ),
        (
            "UPDATE offers SET dedup_days = 366 WHERE tenant_id = $1 AND id = $2",
            offer,
            "offers_dedup_days_check",
        ),
        (
            "UPDATE offers SET exclusive_floor_cents = -5 WHERE tenant_id = $1 AND id = $2",
            offer,
            "offers_exclusive_floor_cents_check",
        ),
        (
            "UPDATE partners SET status = 'deleted' WHERE tenant_id = $1 AND id = $2",
            partner,
            "partners_status_check",
        ),
        (
            "UPDATE tenants SET timezone = 'Mars/Olympus_Mons' WHERE id = $1 AND $2 = $2",
            Uuid::nil(),
            "timezone_known",
        ),
    ];
    for (sql, id, constraint) in refused {
        assert_eq!(
            constraint_of(&pool, sql, tenant, id).await,
            constraint,
            "{sql}"
        );
    }

    // A campaign of this tenant cannot point at another tenant's partner.
    let campaign = "INSERT INTO campaigns (tenant_id, id, partner_id, offer_id, posting_key_hash, payout_type, payout_percent)
                    VALUES ($1, gen_random_uuid(), $2, (SELECT id FROM offers WHERE tenant_id = $1), sha256('k'), 'revshare', 70)";
    assert_eq!(
        constraint_of(&pool, campaign, tenant, other_partner).await,
        "campaigns_tenant_id_partner_id_fkey"
    );

    let percent = "INSERT INTO campaigns (tenant_id, id, partner_id, offer_id, posting_key_hash, payout_type, payout_percent)
                   VALUES ($1, gen_random_uuid(), $2, (SELECT id FROM offers WHERE tenant_id = $1), sha256('k'), 'revshare', 100.5)";
    assert_eq!(
        constraint_of(&pool, percent, tenant, partner).await,
        "campaigns_payout_percent_check"
    );
    let rule = "INSERT INTO campaigns (tenant_id, id, partner_id, offer_id, posting_key_hash, payout_type, payout_percent)
                VALUES ($1, gen_random_uuid(), $2, (SELECT id FROM offers WHERE tenant_id = $1), sha256('k'), 'fixed', 10)";
    assert_eq!(
        constraint_of(&pool, rule, tenant, partner).await,
        "campaigns_payout_rule"
    );

    // Contracts: caps need exactly one whole limit; prices are whole cents.
    for (caps, pricing) in [
        (
            json!([{ "period": "day", "max_leads": 10, "max_spend_cents": 100 }]),
            json!({ "type": "fixed", "shared_cents": 100 }),
        ),
        (
            json!([{ "period": "day" }]),
            json!({ "type": "fixed", "shared_cents": 100 }),
        ),
        (
            json!([{ "period": "fortnight", "max_leads": 10 }]),
            json!({ "type": "fixed", "shared_cents": 100 }),
        ),
        (
            json!([{ "period": "day", "max_leads": 2.5 }]),
            json!({ "type": "fixed", "shared_cents": 100 }),
        ),
        (json!([]), json!({ "type": "fixed", "shared_cents": 12.5 })),
        (
            json!([]),
            json!({ "type": "fixed", "exclusive_cents": -100 }),
        ),
        (json!([]), json!({ "type": "rtb" })),
    ] {
        let result = sqlx::query(
            "INSERT INTO contracts (tenant_id, id, buyer_id, offer_id, name, pricing, caps, delivery)
             VALUES ($1, gen_random_uuid(), $2, $3, 'c', $4, $5, '{\"url\": \"http://127.0.0.1:1/\"}')",
        )
        .bind(tenant)
        .bind(buyer)
        .bind(offer)
        .bind(&pricing)
        .bind(&caps)
        .execute(&pool)
        .await;
        assert!(
            result.is_err(),
            "accepted caps {caps} with pricing {pricing}"
        );
    }
    let good = sqlx::query(
        "INSERT INTO contracts (tenant_id, id, buyer_id, offer_id, name, pricing, caps, delivery)
         VALUES ($1, gen_random_uuid(), $2, $3, 'c', $4, $5, '{\"url\": \"http://127.0.0.1:1/\"}')",
    )
    .bind(tenant)
    .bind(buyer)
    .bind(offer)
    .bind(json!({ "type": "fixed", "exclusive_cents": 4000, "shared_cents": 1250 }))
    .bind(json!([{ "period": "day", "max_leads": 100 }, { "period": "month", "max_spend_cents": 500000 }]))
    .execute(&pool)
    .await;
    assert!(good.is_ok(), "{good:?}");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn configuration_changes_notify_running_servers_but_balance_changes_do_not(pool: PgPool) {
    let (tenant, _, buyer, offer) = tenant_with_basics(&pool).await;
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen("gavel_config").await.unwrap();

    sqlx::query("UPDATE offers SET max_buyers = 4 WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(offer)
        .execute(&pool)
        .await
        .unwrap();
    let note = tokio::time::timeout(Duration::from_secs(2), listener.recv())
        .await
        .unwrap()
        .unwrap();
    let payload: serde_json::Value = serde_json::from_str(note.payload()).unwrap();
    assert_eq!(payload, json!({ "table": "offers", "tenant_id": tenant }));

    // A sale moves the balance on every post: that must not reload configuration.
    sqlx::query(
        "UPDATE buyers SET balance_cents = balance_cents - 100 WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(buyer)
    .execute(&pool)
    .await
    .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.recv())
            .await
            .is_err(),
        "a balance change sent a configuration notification"
    );

    // A bulk change in one transaction is one notification per table and tenant.
    sqlx::query("UPDATE buyers SET status = 'paused' WHERE tenant_id = $1")
        .bind(tenant)
        .execute(&pool)
        .await
        .unwrap();
    let note = tokio::time::timeout(Duration::from_secs(2), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(note.payload()).unwrap(),
        json!({ "table": "buyers", "tenant_id": tenant })
    );
}
