//! Tenants and their admin API keys.

use std::str::FromStr;

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::keys;

#[derive(Debug, thiserror::Error)]
pub enum CreateTenantError {
    #[error("unknown timezone {0:?}: use an IANA name such as America/New_York")]
    UnknownTimezone(String),
    #[error("the tenant name must be 1 to 200 characters")]
    BadName,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What `gavel tenant create` prints: the admin key is shown this once.
#[derive(Debug, Serialize)]
pub struct NewTenant {
    pub tenant_id: Uuid,
    pub admin_key: String,
}

/// Creates a tenant and its first admin API key, in one transaction.
pub async fn create(
    db: &PgPool,
    name: &str,
    timezone: &str,
) -> Result<NewTenant, CreateTenantError> {
    if chrono_tz::Tz::from_str(timezone).is_err() {
        return Err(CreateTenantError::UnknownTimezone(timezone.to_owned()));
    }
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(CreateTenantError::BadName);
    }
    let tenant_id = Uuid::now_v7();
    let mut tx = db.begin().await?;
    sqlx::query("INSERT INTO tenants (id, name, timezone) VALUES ($1, $2, $3)")
        .bind(tenant_id)
        .bind(name.trim())
        .bind(timezone)
        .execute(&mut *tx)
        .await?;
    let admin_key = insert_admin_key(&mut tx, tenant_id, "created with the tenant").await?;
    tx.commit().await?;
    Ok(NewTenant {
        tenant_id,
        admin_key,
    })
}

/// Issues a new admin key for `tenant_id` and returns its text (stored only hashed).
pub async fn insert_admin_key(
    conn: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    label: &str,
) -> Result<String, sqlx::Error> {
    let key = keys::generate(keys::ADMIN_KEY_PREFIX);
    sqlx::query("INSERT INTO api_keys (tenant_id, id, key_hash, label) VALUES ($1, $2, $3, $4)")
        .bind(tenant_id)
        .bind(Uuid::now_v7())
        .bind(&keys::hash(&key)[..])
        .bind(label)
        .execute(conn)
        .await?;
    Ok(key)
}

/// The tenant of a valid (not revoked) admin key, by the key's hash.
pub async fn admin_key_tenant(
    db: &mut sqlx::PgConnection,
    key_hash: &[u8; 32],
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
        .bind(&key_hash[..])
        .fetch_optional(db)
        .await
}

/// A tenant's timezone, as stored (for a tenant the configuration snapshot does not hold yet).
pub async fn timezone(db: &sqlx::PgPool, tenant_id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT timezone FROM tenants WHERE id = $1")
        .bind(tenant_id)
        .fetch_optional(db)
        .await
}
