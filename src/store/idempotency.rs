//! Idempotency keys (`Idempotency-Key` on `POST /v1/leads` and the funds route): the first
//! request with a key runs and its answer is kept; a retry with the same key and request gets
//! that answer; the same key with another request is refused. Kept `idempotency_key_hours`.

use sqlx::{FromRow, PgPool};
use uuid::Uuid;

/// Where a key is unique: its tenant, its route, and the route's scope (a direct post's
/// campaign; the tenant for funds).
#[derive(Clone)]
pub struct KeyScope {
    pub tenant_id: Uuid,
    pub route: &'static str,
    pub scope_id: Uuid,
    pub key: String,
}

/// A kept answer.
#[derive(Debug, FromRow)]
pub struct StoredAnswer {
    pub http_status: i32,
    pub content_type: Option<String>,
    pub response: Option<String>,
    pub ping_id: Option<Uuid>,
}

pub enum Begin {
    /// This request owns the key: run it, then `finish` (or `abandon`).
    Run,
    /// The key's first request answered this.
    Replay(StoredAnswer),
    /// The key was used with another request.
    Reused,
    /// The key's first request is still running.
    InProgress,
}

/// Takes `scope`'s key for a request hashed `request_sha256`, unless it is taken and not
/// expired. One statement: of concurrent requests with one key, exactly one gets `Run`.
pub async fn begin(
    db: &PgPool,
    scope: &KeyScope,
    request_sha256: &[u8; 32],
    keep_hours: u32,
) -> Result<Begin, sqlx::Error> {
    let taken = sqlx::query_scalar!(
        "INSERT INTO idempotency_keys (tenant_id, route, scope_id, key, request_sha256, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, now(), now() + $6 * interval '1 hour')
         ON CONFLICT (tenant_id, route, scope_id, key) DO UPDATE
         SET request_sha256 = EXCLUDED.request_sha256, http_status = NULL, content_type = NULL,
             response = NULL, ping_id = NULL, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
         WHERE idempotency_keys.expires_at < now()
         RETURNING true",
        scope.tenant_id,
        scope.route,
        scope.scope_id,
        scope.key,
        &request_sha256[..],
        f64::from(keep_hours),
    )
    .fetch_optional(db)
    .await?;
    if taken.is_some() {
        return Ok(Begin::Run);
    }
    let row = sqlx::query!(
        "SELECT request_sha256, http_status, content_type, response, ping_id FROM idempotency_keys
         WHERE tenant_id = $1 AND route = $2 AND scope_id = $3 AND key = $4",
        scope.tenant_id,
        scope.route,
        scope.scope_id,
        scope.key,
    )
    .fetch_optional(db)
    .await?;
    Ok(match row {
        // Cleaned up in between: the retry may run.
        None => Box::pin(begin(db, scope, request_sha256, keep_hours)).await?,
        Some(row) if row.request_sha256 != request_sha256 => Begin::Reused,
        Some(row) => match row.http_status {
            Some(http_status) => Begin::Replay(StoredAnswer {
                http_status,
                content_type: row.content_type,
                response: row.response,
                ping_id: row.ping_id,
            }),
            None => Begin::InProgress,
        },
    })
}

/// Keeps the key's first answer.
pub async fn finish(
    db: impl sqlx::PgExecutor<'_>,
    scope: &KeyScope,
    answer: &StoredAnswer,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE idempotency_keys SET http_status = $5, content_type = $6, response = $7, ping_id = $8
         WHERE tenant_id = $1 AND route = $2 AND scope_id = $3 AND key = $4",
        scope.tenant_id,
        scope.route,
        scope.scope_id,
        scope.key,
        answer.http_status,
        answer.content_type,
        answer.response,
        answer.ping_id,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Gives the key back (its request failed on our side and changed nothing the key covers): a
/// retry runs again.
pub async fn abandon(db: &PgPool, scope: &KeyScope) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM idempotency_keys
         WHERE tenant_id = $1 AND route = $2 AND scope_id = $3 AND key = $4 AND http_status IS NULL",
        scope.tenant_id,
        scope.route,
        scope.scope_id,
        scope.key,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes the expired keys of every tenant; returns how many.
pub async fn delete_expired(db: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "DELETE FROM idempotency_keys
         WHERE tenant_id IN (SELECT id FROM tenants) AND expires_at < now()",
    )
    .execute(db)
    .await?
    .rows_affected())
}
