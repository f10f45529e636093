//! Suppression lists' entries (docs/suppression.md): added and removed in batches, each batch
//! one statement that also moves the list's `entry_count`. The look-ups of a ping and a post
//! are parts of their own statements (`pings::ReadStates`, `posts::claim`).

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// What a batch did to a list.
#[derive(Debug, Clone, Copy)]
pub struct Changed {
    /// Entries added (or removed) by this batch; those already there (or absent) are not.
    pub changed: i64,
    /// The list's entries after it.
    pub entry_count: i64,
}

/// Adds the hashes to the tenant's list; `None` when the list is not the tenant's.
pub async fn add(
    db: &PgPool,
    tenant_id: Uuid,
    list_id: Uuid,
    hashes: &[[u8; 32]],
) -> Result<Option<Changed>, sqlx::Error> {
    let hashes: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
    let row = sqlx::query!(
        r#"WITH list AS (
             SELECT id FROM suppression_lists WHERE tenant_id = $1 AND id = $2),
         added AS (
             INSERT INTO suppression_entries (tenant_id, list_id, hash)
             SELECT $1, list.id, hash FROM list, unnest($3::bytea[]) AS hash
             ON CONFLICT DO NOTHING
             RETURNING 1),
         counted AS (
             UPDATE suppression_lists SET entry_count = entry_count + (SELECT count(*) FROM added)
             WHERE tenant_id = $1 AND id = (SELECT id FROM list)
             RETURNING entry_count)
         SELECT (SELECT count(*) FROM added) AS "changed!", entry_count AS "entry_count!"
         FROM counted"#,
        tenant_id,
        list_id,
        &hashes as _,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| Changed {
        changed: row.changed,
        entry_count: row.entry_count,
    }))
}

/// Removes the hashes from the tenant's list; `None` when the list is not the tenant's.
pub async fn remove(
    db: &PgPool,
    tenant_id: Uuid,
    list_id: Uuid,
    hashes: &[[u8; 32]],
) -> Result<Option<Changed>, sqlx::Error> {
    let hashes: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
    let row = sqlx::query!(
        r#"WITH list AS (
             SELECT id FROM suppression_lists WHERE tenant_id = $1 AND id = $2),
         removed AS (
             DELETE FROM suppression_entries
             WHERE tenant_id = $1 AND list_id = (SELECT id FROM list) AND hash = ANY($3::bytea[])
             RETURNING 1),
         counted AS (
             UPDATE suppression_lists SET entry_count = entry_count - (SELECT count(*) FROM removed)
             WHERE tenant_id = $1 AND id = (SELECT id FROM list)
             RETURNING entry_count)
         SELECT (SELECT count(*) FROM removed) AS "changed!", entry_count AS "entry_count!"
         FROM counted"#,
        tenant_id,
        list_id,
        &hashes as _,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| Changed {
        changed: row.changed,
        entry_count: row.entry_count,
    }))
}

/// How many of the hashes the tenant's list holds.
pub async fn count_listed(
    db: &PgPool,
    tenant_id: Uuid,
    list_id: Uuid,
    hashes: &[[u8; 32]],
) -> Result<i64, sqlx::Error> {
    let hashes: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "listed!" FROM suppression_entries
         WHERE tenant_id = $1 AND list_id = $2 AND hash = ANY($3::bytea[])"#,
        tenant_id,
        list_id,
        &hashes as _,
    )
    .fetch_one(db)
    .await
}

/// Those of `ids` that are the tenant's lists.
pub async fn existing(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM suppression_lists WHERE tenant_id = $1 AND id = ANY($2)",
        tenant_id,
        ids,
    )
    .fetch_all(conn)
    .await
}
