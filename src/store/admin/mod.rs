//! The SQL of the admin API. The configuration tables (partners, buyers, offers, campaigns,
//! contracts) share one set of statements, written once here and generic over [`Table`]: each
//! table declares its name, its columns and its row type once (`crate::resources`), and the
//! statements are built from those static lists, never from input.
//!
//! Binds stay few whatever the table: a create or a patch passes the row's written columns as
//! one `jsonb` value, expanded by `jsonb_populate_record(NULL::<table>, $3)` into the table's own
//! column types; the other binds are the tenant and the id. A JSON `null` is SQL `NULL`.
//!
//! The accounts' ledgers (`books`), statements (`statements`), inspection (`inspect`) and the summary (`reports`) have
//! statements of their own.

pub mod books;
pub mod inspect;
pub mod kept;
pub mod overview;
pub mod pings_list;
pub mod reports;
pub mod returns;
pub mod rows;
pub mod statements;

use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

/// A configuration table: its name, its columns and its row type, declared once
/// (`crate::resources`).
pub trait Table {
    /// The table's name.
    const NAME: &'static str;
    /// The select list of [`Table::Row`] (`tenant_id, id, …, created_at, updated_at`).
    const COLUMNS: &'static str;
    /// The columns a create or a patch writes.
    const WRITTEN: &'static [&'static str];
    /// The columns only a create writes (a campaign's posting key hash).
    const CREATED: &'static [&'static str];
    /// Which rows the configuration snapshot loads (SQL condition).
    const LOADED: &'static str;
    type Row: for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static;
    fn id(row: &Self::Row) -> Uuid;
}

/// Row locks taken by a read. A GET takes none, so it never queues behind a post's or a
/// write's transaction on the same row; a write's read locks the row it is about to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    None,
    ForWrite,
}

fn sql(text: String) -> AssertSqlSafe<String> {
    // Built from the `Table` constants only: no input reaches the text.
    AssertSqlSafe(text)
}

/// The tenant's row `id`, locked as `lock` says.
pub async fn load<T: Table>(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    lock: Lock,
) -> Result<Option<T::Row>, sqlx::Error> {
    let lock = match lock {
        Lock::None => "",
        Lock::ForWrite => " FOR NO KEY UPDATE",
    };
    sqlx::query_as(sql(format!(
        "SELECT {} FROM {} WHERE tenant_id = $1 AND id = $2{lock}",
        T::COLUMNS,
        T::NAME
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Up to `limit` of the tenant's rows after the id `after`, in id (creation) order.
pub async fn list<'c, T: Table>(
    db: impl PgExecutor<'c>,
    tenant: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<T::Row>, sqlx::Error> {
    sqlx::query_as(sql(format!(
        "SELECT {} FROM {} WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
        T::COLUMNS,
        T::NAME
    )))
    .bind(tenant)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Inserts the row `id`; `values` holds the written (and created) columns.
pub async fn insert<T: Table>(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    values: &Value,
) -> Result<T::Row, sqlx::Error> {
    let columns = T::WRITTEN
        .iter()
        .chain(T::CREATED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let statement = format!(
        "INSERT INTO {table} (tenant_id, id, {columns})
         SELECT $1, $2, {columns} FROM jsonb_populate_record(NULL::{table}, $3)
         RETURNING {returning}",
        table = T::NAME,
        returning = T::COLUMNS
    );
    write::<T>(conn, statement, (tenant, id, values)).await
}

/// Replaces the written columns of the row `id` with `values`.
pub async fn update<T: Table>(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    values: &Value,
) -> Result<T::Row, sqlx::Error> {
    let columns = T::WRITTEN.join(", ");
    let statement = format!(
        "UPDATE {table} SET ({columns}) =
             (SELECT {columns} FROM jsonb_populate_record(NULL::{table}, $3))
         WHERE tenant_id = $1 AND id = $2 RETURNING {returning}",
        table = T::NAME,
        returning = T::COLUMNS
    );
    write::<T>(conn, statement, (tenant, id, values)).await
}

/// Runs a write of the row: `$1` the tenant, `$2` the id, `$3` the values.
async fn write<T: Table>(
    conn: &mut PgConnection,
    statement: String,
    (tenant, id, values): (Uuid, Uuid, &Value),
) -> Result<T::Row, sqlx::Error> {
    sqlx::query_as(sql(statement))
        .bind(tenant)
        .bind(id)
        .bind(values)
        .fetch_one(conn)
        .await
}

/// Archives the row `id`: it stays for the history that points at it.
pub async fn archive<'c, T: Table>(
    db: impl PgExecutor<'c>,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<T::Row>, sqlx::Error> {
    sqlx::query_as(sql(format!(
        "UPDATE {} SET status = 'archived' WHERE tenant_id = $1 AND id = $2 RETURNING {}",
        T::NAME,
        T::COLUMNS
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Whether the tenant has the row of `T`: another tenant's id is as unknown as a made-up one.
pub async fn exists<T: Table>(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    exists_in(conn, T::NAME, tenant, id).await
}

/// [`exists`] in the table named `table`: one of the [`Table::NAME`]s, never input.
pub async fn exists_in(
    conn: &mut PgConnection,
    table: &'static str,
    tenant: Uuid,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(sql(format!(
        "SELECT EXISTS (SELECT 1 FROM {table} WHERE tenant_id = $1 AND id = $2)"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_one(conn)
    .await
}

/// The rows the configuration snapshot loads, of one tenant or (`None`) of all, in id order.
pub async fn loaded<T: Table>(
    conn: &mut PgConnection,
    tenant: Option<Uuid>,
) -> Result<Vec<T::Row>, sqlx::Error> {
    sqlx::query_as(sql(format!(
        "SELECT {} FROM {} WHERE ($1::uuid IS NULL OR tenant_id = $1) AND {}
         ORDER BY tenant_id, id",
        T::COLUMNS,
        T::NAME,
        T::LOADED
    )))
    .bind(tenant)
    .fetch_all(conn)
    .await
}
