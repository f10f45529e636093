//! PostgreSQL: the pool and the queries, one module per area. (Where the database comes from
//! is the `gavel` command's business: the server takes a URL.)

pub mod admin;
pub mod console;
pub mod errors;
pub mod group;
pub mod idempotency;
pub mod pii;
pub mod pings;
pub mod posts;
pub mod retry;
pub mod sales;
pub mod settings;
pub mod snapshot;
pub mod state_cache;
pub mod suppression;
pub mod tenants;
pub mod verifications;

use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::Settings;

pub use errors::is_unavailable;

pub fn pool_options(settings: &Settings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(settings.pool_size)
        .acquire_timeout(settings.db_acquire_timeout())
        // No health-check round trip before every use (two per ping): a connection broken by
        // a database restart fails its one query (503) and is replaced.
        .test_before_acquire(false)
}

/// The pool of the ping's grouped statements (its state read, its record's write, and the
/// declines a ping of many contracts writes behind its answer), beside `db` and on the same database, in sessions that plan each statement once.
///
/// PostgreSQL re-plans a prepared statement at each execution while it guesses a plan made
/// for the parameters' values may beat the generic one. The grouped statements find rows by
/// key, where both plans are the same, yet the state read was re-planned at almost every
/// ping: 0.2 ms of planning for 0.02 ms of execution (pg_stat_statements; BENCHMARKS.md,
/// session 6). Everything else keeps PostgreSQL's choice: the summary report over a month
/// runs three times slower on a generic plan.
///
/// Unless `wait_for_flush`, its sessions commit without waiting for the WAL flush
/// (`synchronous_commit = off`): the pings' records, which move no money
/// (docs/durability.md). Every other write goes through `db` and waits.
pub fn grouped_statements_pool(db: &PgPool, wait_for_flush: bool) -> PgPool {
    let commit = if wait_for_flush { "on" } else { "off" };
    let options = (*db.connect_options())
        .clone()
        .options(GROUPED_SESSION_SETTINGS)
        .options([("synchronous_commit", commit)]);
    // The state reads, the records and the declines written behind the pings' answers.
    grouped_pool(db, options, 3)
}

/// The pool of the post's grouped statements (its reservations and completions), beside `db`
/// and with `db`'s sessions' settings: commits as the database's `synchronous_commit` says
/// (money moves there), and PostgreSQL's own choice between generic and custom plans. Their
/// sessions' plans are made again every second (`GroupStatement::REPLAN_EVERY`): made once, on
/// a fresh database, the foreign keys' check of a ledger entry's sale looked it up by the
/// tenant alone (an index on `(tenant_id, lead_id)`, filtering on the id, chosen while
/// `lead_sales` was empty) and scanned the tenant's sales for every entry: 1.6 ms each after
/// 3,000 sales in `gavel bench`, where the sales' groups then made half the posts a second.
pub fn grouped_sales_pool(db: &PgPool) -> PgPool {
    // The reservations, the completions, the claims and the finishes.
    grouped_pool(db, (*db.connect_options()).clone(), 4)
}

fn grouped_pool(db: &PgPool, options: PgConnectOptions, groups: u32) -> PgPool {
    let grouped = PgPoolOptions::new()
        // The groups' kept connections, and two spare for a moment while a broken one is
        // replaced.
        .max_connections(groups * group::KEPT_CONNECTIONS + 2)
        .acquire_timeout(db.options().get_acquire_timeout())
        // Connections are kept, so acquired only at first and after a failure: then an idle
        // one is tested, lest it be a session the server ended too.
        .test_before_acquire(true)
        .connect_lazy_with(options);
    // Closed with `db`, so that whoever closes `db` (shutdown, a test) lets go of the database.
    // (Until then this task keeps the pool: each call makes a pool of its own.)
    let (main_closed, closing) = (db.close_event(), grouped.clone());
    tokio::spawn(async move {
        main_closed.await;
        closing.close().await;
    });
    grouped
}

/// The settings of the grouped statements' sessions (see [`grouped_statements_pool`]).
const GROUPED_SESSION_SETTINGS: [(&str, &str); 1] = [("plan_cache_mode", "force_generic_plan")];

/// The pool's session settings: a statement of a request runs for at most
/// `statement_timeout_ms` (a costly report or a long-held lock cannot keep connections every
/// tenant shares; the request answers 503). The grouped statements' sessions inherit it.
pub fn session_options(options: PgConnectOptions, settings: &Settings) -> PgConnectOptions {
    options.options([(
        "statement_timeout",
        settings.statement_timeout_ms.to_string(),
    )])
}

/// Connects and migrates, retrying while the database is unreachable (it may be starting, or
/// down for maintenance): a server that comes up before its database waits rather than dies.
pub async fn connect_and_migrate(url: &str, settings: &Settings) -> Result<PgPool> {
    let options: PgConnectOptions = url.parse().context("the database URL is not valid")?;
    let mut delay = Duration::from_millis(500);
    loop {
        // Migrations run on a connection of their own, without the statement timeout: one
        // rewrites a table (0006: 18 s on 3 M rows).
        let migrating = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await;
        let connected = match migrating {
            Ok(migrating) => {
                crate::MIGRATOR
                    .run(&migrating)
                    .await
                    .context("database migration failed")?;
                migrating.close().await;
                pool_options(settings)
                    .connect_with(session_options(options.clone(), settings))
                    .await
            }
            Err(error) => Err(error),
        };
        match connected {
            Ok(pool) => return Ok(pool),
            Err(error) => {
                tracing::warn!(
                    %error,
                    retry_in_ms = delay.as_millis() as u64,
                    "database unreachable at start-up; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Whether the database answers a statement now (readiness).
pub async fn answers(db: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(db).await.map(drop)
}
