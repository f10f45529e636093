//! pgbench on the same PostgreSQL, for the machine's ceiling.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use sqlx::PgPool;
use uuid::Uuid;

use super::seed::Seeded;
use super::{BenchOptions, PgbenchRun};

/// pgbench on the same PostgreSQL: the ping's own write (its posting_log row and its
/// contracts' outcomes, as the load recorded them) and the post's reservation transaction.
pub(super) async fn pgbench(
    url: &str,
    db: &PgPool,
    seeded: &Seeded,
    options: &BenchOptions,
) -> Result<Vec<PgbenchRun>> {
    if which("pgbench").is_none() {
        tracing::warn!(
            "pgbench is not installed (Debian: apt-get install postgresql-client); no ratios"
        );
        return Ok(Vec::new());
    }
    let (tenant, campaign, partner, offer) = (
        seeded.tenant_id,
        seeded.campaign_id,
        seeded.partner_id,
        seeded.offer_id,
    );
    let recorded = recorded_ping(db, tenant).await?;
    let ping_write = format!("{};\n", ping_write_statement(db, tenant, recorded).await?);
    let naive_ping_write = format!(
        "{};\n",
        naive_ping_write_statement(db, tenant, recorded).await?
    );
    let (buyer, contract, lead) = (seeded.buyer_id, seeded.contract_id, seeded.lead_id);
    // The reservation as a post makes it (one call, committed on its own): a daily leads cap
    // and a monthly spend cap, the buyer's debit, the pending sale and its ledger entry. The
    // buyer's dedup lookup is left out (window 0): pgbench never settles its sales, so it
    // would look through every earlier one as still pending. pgbench does a little less
    // than a post here, so the ratio errs against Gavel.
    let reservation = format!(
        "SELECT gavel_reserve('{tenant}', gen_random_uuid(), '{lead}', gen_random_uuid(), gen_random_uuid(), \
         '{contract}', '{buyer}', '{campaign}', '{partner}', '{offer}', 'exclusive', 1000, 700, false, 60000, now(), \
         ARRAY[sha256(random()::text::bytea), sha256(random()::text::bytea)], 0, ARRAY['day', 'month'], \
         ARRAY[date_trunc('day', now()), date_trunc('month', now())], \
         ARRAY[1000000000, 9223372036854775807]::bigint[], ARRAY[9223372036854775807, 100000000000]::bigint[], \
         '[]', gen_random_uuid());\n"
    );
    // The reservation runs on one hot contract and buyer, as in the post race.
    let clients = match options.pgbench_clients.as_slice() {
        [] => vec![options.rate.map_or(options.concurrency, |_| 8).max(1)],
        list => list.iter().map(|&c| c.max(1)).collect(),
    };
    let mut runs = Vec::new();
    for (name, script) in [
        (PING_WRITE, &ping_write),
        (NAIVE_PING_WRITE, &naive_ping_write),
        (RESERVATION, &reservation),
    ] {
        for &clients in &clients {
            if let Some(tps) = run_pgbench(url, script, clients, options.pgbench_seconds).await? {
                runs.push(PgbenchRun {
                    script: name,
                    clients,
                    tps,
                });
            }
        }
    }
    sqlx::query("DROP TABLE IF EXISTS bench_naive_distribution")
        .execute(db)
        .await?;
    Ok(runs)
}

/// pgbench's scripts, as `PgbenchRun::script` names them.
pub(super) const PING_WRITE: &str = "ping_write";
/// The same ping written the naive way: its row and one row per contract (issue 21's yardstick
/// for the maximum rate).
pub(super) const NAIVE_PING_WRITE: &str = "naive_ping_write";
pub(super) const RESERVATION: &str = "reservation";

/// A ping the load recorded (one with bids, if any), for pgbench to write again.
async fn recorded_ping(db: &PgPool, tenant_id: Uuid) -> Result<Uuid> {
    let ping_id: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM posting_log l WHERE tenant_id = $1 AND kind = 'ping'
           AND EXISTS (SELECT 1 FROM lead_distribution d WHERE d.tenant_id = l.tenant_id AND d.ping_id = l.id)
         ORDER BY result = 'bids' DESC, created_at DESC LIMIT 1",
    )
    .bind(tenant_id)
    .fetch_optional(db)
    .await?;
    ping_id.context("the load recorded no ping for pgbench to write again")
}

/// The recorded ping's `posting_log` row as a `VALUES` row of literals, under a new id.
const PING_ROW: &str = "format(
    '(%L, gen_random_uuid(), ''ping'', %L, %L, %L, now(), %s, %s, %L, %L, %L, %L::bigint, %L, '
    '%L::bigint, now() + %s * interval ''1 second'')',
    p.tenant_id, p.campaign_id, p.partner_id, p.offer_id, p.latency_us, p.http_status, p.result,
    p.test, p.lead, p.min_payout_cents, p.sale_type, p.payout_cents,
    coalesce(extract(epoch FROM p.expires_at - p.created_at)::text, 'NULL'))";

const PING_INSERT: &str = "WITH ping AS (INSERT INTO posting_log (tenant_id, id, kind, campaign_id, \
     partner_id, offer_id, created_at, latency_us, http_status, result, test, lead, min_payout_cents, \
     sale_type, payout_cents, expires_at) VALUES";

/// The recorded ping's `posting_log` row as literals ([`PING_ROW`]), with `more` columns
/// selected beside it (`p` is the ping's row).
async fn recorded_literals<T>(db: &PgPool, more: &str, tenant_id: Uuid, ping_id: Uuid) -> Result<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    // Constants only: no value is spliced into the SQL.
    let sql = format!(
        "SELECT {PING_ROW}, {more} FROM posting_log p WHERE p.tenant_id = $1 AND p.id = $2"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id)
        .bind(ping_id)
        .fetch_one(db)
        .await?)
}

/// The ping's own write as one statement of literals: a ping the load recorded (one with
/// bids) and its contracts' outcomes, every column as Gavel wrote it, under new ids (and new
/// bid ids for its winners), so pgbench's rows are the rows Gavel writes.
async fn ping_write_statement(db: &PgPool, tenant_id: Uuid, ping_id: Uuid) -> Result<String> {
    let (ping, winners, declines): (String, Option<String>, Option<String>) = recorded_literals(
        db,
        "(SELECT string_agg(format(
              '(%L::uuid, %L::uuid, %L::uuid, %L::bigint, %L::bigint, %L::int, %L::text, %L::text, '
              '%L::bigint, %L::bigint)',
              w.tenant_id, w.contract_id, w.buyer_id, w.exclusive_bid_cents, w.shared_bid_cents, w.rtb_ms,
              w.rtb_ref, w.sale_type, w.price_cents, w.payout_cents), ', ')
          FROM distribution_winners w WHERE w.tenant_id = p.tenant_id AND w.ping_id = p.id),
         (SELECT format(
              '%L::uuid, %L::uuid[], %L::uuid[], %L::decline_reason[], %L::text[], %L::bigint[], '
              '%L::bigint[], %L::int[], %L::text[]',
              d.tenant_id, d.contract_ids, d.buyer_ids, d.reasons, d.details, d.exclusive_bids_cents,
              d.shared_bids_cents, d.rtb_ms, d.rtb_refs)
          FROM distribution_declines d WHERE d.tenant_id = p.tenant_id AND d.ping_id = p.id)",
        tenant_id,
        ping_id,
    )
    .await?;
    let mut statement = format!("{PING_INSERT} {ping} RETURNING id)");
    if let Some(winners) = winners {
        statement.push_str(&format!(
            ", winners AS (INSERT INTO distribution_winners (tenant_id, ping_id, created_at, contract_id, \
             buyer_id, exclusive_bid_cents, shared_bid_cents, rtb_ms, rtb_ref, bid_id, sale_type, price_cents, \
             payout_cents) SELECT v.tenant_id, ping.id, now(), v.contract_id, v.buyer_id, v.exclusive_bid_cents, \
             v.shared_bid_cents, v.rtb_ms, v.rtb_ref, gen_random_uuid(), v.sale_type, v.price_cents, \
             v.payout_cents FROM ping, (VALUES {winners}) AS v (tenant_id, contract_id, buyer_id, \
             exclusive_bid_cents, shared_bid_cents, rtb_ms, rtb_ref, sale_type, price_cents, payout_cents))"
        ));
    }
    match declines {
        Some(declines) => statement.push_str(&format!(
            " INSERT INTO distribution_declines (tenant_id, ping_id, created_at, contract_ids, buyer_ids, \
             reasons, details, exclusive_bids_cents, shared_bids_cents, rtb_ms, rtb_refs) \
             SELECT t, ping.id, now(), c, b, r, d, e, s, m, f FROM ping, \
             (VALUES ({declines})) AS v (t, c, b, r, d, e, s, m, f)"
        )),
        None => statement.push_str(" SELECT count(*) FROM ping"),
    }
    refuse_pgbench_variables(statement)
}

/// The same ping written as a naive design would: its `posting_log` row, then one row per
/// contract (every outcome's columns, as `lead_distribution` shows them) in a plain table with a
/// primary key, in one statement. The table has no check constraints, so this errs against
/// Gavel.
async fn naive_ping_write_statement(db: &PgPool, tenant_id: Uuid, ping_id: Uuid) -> Result<String> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_naive_distribution (
             tenant_id uuid NOT NULL, ping_id uuid NOT NULL, contract_id uuid NOT NULL,
             buyer_id uuid NOT NULL, created_at timestamptz NOT NULL, outcome text NOT NULL,
             reason text, detail text, exclusive_bid_cents bigint, shared_bid_cents bigint,
             rtb_ms integer, rtb_ref text, bid_id uuid, sale_type text, price_cents bigint,
             payout_cents bigint, PRIMARY KEY (tenant_id, ping_id, contract_id))",
    )
    .execute(db)
    .await?;
    let (ping, contracts): (String, String) = recorded_literals(
        db,
        "(SELECT string_agg(format(
              '(%L::uuid, %L::uuid, %L::uuid, %L::text, %L::text, %L::text, %L::bigint, %L::bigint, '
              '%L::int, %L::text, %L::text, %L::bigint, %L::bigint)',
              d.tenant_id, d.contract_id, d.buyer_id, d.outcome, d.reason, d.detail,
              d.exclusive_bid_cents, d.shared_bid_cents, d.rtb_ms, d.rtb_ref, d.sale_type,
              d.price_cents, d.payout_cents), ', ')
          FROM lead_distribution d WHERE d.tenant_id = p.tenant_id AND d.ping_id = p.id)",
        tenant_id,
        ping_id,
    )
    .await?;
    let statement = format!(
        "{PING_INSERT} {ping} RETURNING id) \
         INSERT INTO bench_naive_distribution (tenant_id, ping_id, contract_id, buyer_id, created_at, \
         outcome, reason, detail, exclusive_bid_cents, shared_bid_cents, rtb_ms, rtb_ref, bid_id, sale_type, \
         price_cents, payout_cents) \
         SELECT v.t, ping.id, v.c, v.b, now(), v.o, v.r, v.d, v.e, v.s, v.m, v.f, \
         CASE WHEN v.o = 'won' THEN gen_random_uuid() END, v.st, v.p, v.po \
         FROM ping, (VALUES {contracts}) AS v (t, c, b, o, r, d, e, s, m, f, st, p, po)"
    );
    refuse_pgbench_variables(statement)
}

/// pgbench reads `:name` as one of its variables, even inside a quoted value.
fn refuse_pgbench_variables(statement: String) -> Result<String> {
    let variable = statement.split("::").any(|part| {
        part.split(':')
            .skip(1)
            .any(|after| after.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
    });
    if variable {
        bail!("the recorded ping holds a ':' that pgbench would read as a variable");
    }
    Ok(statement)
}

async fn run_pgbench(url: &str, script: &str, clients: usize, seconds: u64) -> Result<Option<f64>> {
    let path = std::env::temp_dir().join(format!(
        "gavel-pgbench-{}-{}.sql",
        std::process::id(),
        Uuid::now_v7()
    ));
    std::fs::write(&path, script)?;
    // Prepared statements (`-M prepared`), as Gavel's own: parsing and planning each
    // statement anew would lower the ceiling Gavel is compared with. The plan mode stays
    // PostgreSQL's default, as on Gavel's main pool, where the reservation runs (the
    // ping-write script has no parameters: it is planned once either way).
    let output = tokio::process::Command::new("pgbench")
        .args([
            "-n",
            "-M",
            "prepared",
            "-T",
            &seconds.to_string(),
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-f",
        ])
        .arg(&path)
        .arg(url)
        .output()
        .await?;
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        tracing::warn!(stderr = %String::from_utf8_lossy(&output.stderr), "pgbench failed");
        return Ok(None);
    }
    Ok(stdout
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| {
            l.trim_start_matches("tps = ")
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        }))
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}
