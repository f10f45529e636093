//! The operator console's sessions (`migrations/0018_console_sessions.sql`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// A live session: its tenant (with the tenant's name and timezone, which every page shows)
/// and the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
    pub tenant_name: String,
    pub timezone: String,
    pub currency: String,
}

pub struct NewSession<'a> {
    pub tenant_id: Uuid,
    pub token_hash: &'a [u8; 32],
    pub key_hash: &'a [u8; 32],
    pub csrf_token: &'a str,
    pub expires_at: DateTime<Utc>,
}

/// Opens a session; also deletes the tenant's sessions that have expired (so the table holds
/// only the live ones and the recently expired of inactive tenants).
pub async fn open(db: &PgPool, new: NewSession<'_>) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "WITH expired AS (DELETE FROM console_sessions WHERE tenant_id = $1 AND expires_at <= now())
         INSERT INTO console_sessions (tenant_id, id, token_hash, key_hash, csrf_token, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        new.tenant_id,
        id,
        &new.token_hash[..],
        &new.key_hash[..],
        new.csrf_token,
        new.expires_at,
    )
    .execute(db)
    .await?;
    Ok(id)
}

/// The live session of a cookie's token: not expired, and its admin key not revoked.
pub async fn find(db: &PgPool, token_hash: &[u8; 32]) -> Result<Option<Session>, sqlx::Error> {
    sqlx::query_as!(
        Session,
        "SELECT s.id, s.tenant_id, s.csrf_token, s.expires_at,
                t.name AS tenant_name, t.timezone, t.currency
         FROM console_sessions s
         JOIN api_keys k ON k.tenant_id = s.tenant_id AND k.key_hash = s.key_hash
                        AND k.revoked_at IS NULL
         JOIN tenants t ON t.id = s.tenant_id
         WHERE s.token_hash = $1 AND s.expires_at > now()",
        &token_hash[..],
    )
    .fetch_optional(db)
    .await
}

/// Signs a session out.
pub async fn close(db: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM console_sessions WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        id
    )
    .execute(db)
    .await?;
    Ok(())
}
