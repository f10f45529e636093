//! A tenant's settings (`GET`/`PATCH /v1/admin/settings`): the failing-buyer breaker's, kept
//! in the tenants row and carried in the configuration snapshot.

use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::buyers::breaker::BreakerSettings;

/// The snapshot's read of the tenants (one, or all when `$1` is NULL) with their settings.
pub(super) const TENANTS_WITH_BREAKER: &str = "SELECT id, timezone, breaker_failures, \
     breaker_window_ms, breaker_cooldown_ms \
     FROM tenants WHERE $1::uuid IS NULL OR id = $1";

/// The breaker's columns of a tenants row.
#[derive(Debug, FromRow)]
pub struct BreakerRow {
    pub breaker_failures: i32,
    pub breaker_window_ms: i32,
    pub breaker_cooldown_ms: i32,
}

impl BreakerRow {
    /// The settings (the table's checks keep every value positive).
    pub fn settings(&self) -> BreakerSettings {
        let positive = |n: i32| u32::try_from(n).unwrap_or(1).max(1);
        BreakerSettings {
            failures: positive(self.breaker_failures),
            window_ms: positive(self.breaker_window_ms),
            cooldown_ms: positive(self.breaker_cooldown_ms),
        }
    }
}

/// The tenant's breaker settings (`None`: no such tenant).
pub async fn breaker(db: &PgPool, tenant: Uuid) -> Result<Option<BreakerSettings>, sqlx::Error> {
    let row = sqlx::query_as!(
        BreakerRow,
        "SELECT breaker_failures, breaker_window_ms, breaker_cooldown_ms FROM tenants WHERE id = $1",
        tenant
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| row.settings()))
}

/// Writes the tenant's breaker settings; the tenants trigger tells running servers.
pub async fn set_breaker(
    db: impl sqlx::PgExecutor<'_>,
    tenant: Uuid,
    settings: &BreakerSettings,
) -> Result<(), sqlx::Error> {
    let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    sqlx::query!(
        "UPDATE tenants SET breaker_failures = $2, breaker_window_ms = $3,
             breaker_cooldown_ms = $4
         WHERE id = $1",
        tenant,
        int(settings.failures),
        int(settings.window_ms),
        int(settings.cooldown_ms),
    )
    .execute(db)
    .await?;
    Ok(())
}
