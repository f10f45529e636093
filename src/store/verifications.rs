//! What a post's consent verification steps found (docs/verification.md), kept with its lead
//! (`leads.verification`, written with the post's answer by `posts::finish_post`).

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// The steps' results of the lead posted for `ping_id`: `None` before the post, or when its
/// offer had no steps.
pub async fn of_ping(
    db: &PgPool,
    tenant_id: Uuid,
    ping_id: Uuid,
) -> Result<Option<Value>, sqlx::Error> {
    let found = sqlx::query_scalar!(
        "SELECT verification FROM leads WHERE tenant_id = $1 AND ping_id = $2",
        tenant_id,
        ping_id,
    )
    .fetch_optional(db)
    .await?;
    Ok(found.flatten())
}
