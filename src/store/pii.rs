//! Stored leads' PII (docs/pii.md): sealing them again under the active key (`gavel pii
//! rotate`: the rows sealed under an older key, and the rows stored before PII was sealed, in
//! batches in primary-key order, each batch one statement, a row changed meanwhile left as it
//! is), and erasing it (a consumer's request, a tenant's retention).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use crate::pii::PiiKeys;

/// What a rotation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    /// Rows sealed under an older key, now under the active one.
    pub resealed: u64,
    /// Rows stored before PII was sealed, now sealed.
    pub sealed: u64,
    /// Rows sealed under a key `pii_keys` does not list (or altered): left as they are.
    pub unreadable: u64,
}

const BATCH: i64 = 500;

struct Row {
    tenant_id: Uuid,
    id: Uuid,
    lead: Json<Map<String, Value>>,
    consent: Json<Map<String, Value>>,
    pii_key_id: Option<String>,
    pii_sealed: Option<Vec<u8>>,
    /// The offer's PII fields, for a row stored before sealing (its `lead` is whole).
    pii_fields: Vec<String>,
}

/// Seals every lead not under the active key under it.
pub async fn rotate(db: &PgPool, keys: &PiiKeys) -> Result<Rotated, sqlx::Error> {
    let active = keys.active_id();
    let mut done = Rotated::default();
    let mut after = (Uuid::nil(), Uuid::nil());
    loop {
        let rows = sqlx::query_as!(
            Row,
            r#"SELECT l.tenant_id, l.id, l.lead AS "lead: Json<Map<String, Value>>",
                      l.consent AS "consent: Json<Map<String, Value>>", l.pii_key_id, l.pii_sealed,
                      ARRAY(SELECT f ->> 'name' FROM jsonb_array_elements(o.fields) f
                            WHERE f ->> 'pii' = 'true') AS "pii_fields!"
               FROM leads l
               JOIN offers o ON o.tenant_id = l.tenant_id AND o.id = l.offer_id
               WHERE (l.tenant_id, l.id) > ($1, $2) AND l.pii_key_id IS DISTINCT FROM $3
                 AND l.pii_erased_at IS NULL
               ORDER BY l.tenant_id, l.id
               LIMIT $4"#,
            after.0,
            after.1,
            active,
            BATCH,
        )
        .fetch_all(db)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(done);
        };
        after = (last.tenant_id, last.id);

        let (mut tenants, mut ids, mut old_keys, mut clears, mut new_keys, mut sealed) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for row in rows {
            let (clear, lead, consent) = match (&row.pii_key_id, &row.pii_sealed) {
                (Some(key_id), Some(bytes)) => {
                    match keys.open_lead(row.tenant_id, row.id, key_id, bytes) {
                        Ok((lead, consent)) => (row.lead.0, lead, consent),
                        Err(_) => {
                            done.unreadable += 1;
                            continue;
                        }
                    }
                }
                _ => {
                    let mut clear = row.lead.0.clone();
                    for field in &row.pii_fields {
                        clear.remove(field);
                    }
                    (clear, row.lead.0, row.consent.0)
                }
            };
            let stored = keys.seal_lead(row.tenant_id, row.id, clear, &lead, &consent);
            if row.pii_key_id.is_some() {
                done.resealed += 1;
            } else {
                done.sealed += 1;
            }
            tenants.push(row.tenant_id);
            ids.push(row.id);
            old_keys.push(row.pii_key_id);
            clears.push(Value::Object(stored.clear).to_string());
            new_keys.push(stored.sealed.key_id);
            sealed.push(stored.sealed.bytes);
        }
        sqlx::query!(
            "UPDATE leads l SET lead = n.clear::jsonb, consent = '{}', pii_key_id = n.key_id,
                    pii_sealed = n.sealed
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::bytea[])
                 AS n (tenant_id, id, old_key_id, clear, key_id, sealed)
             WHERE l.tenant_id = n.tenant_id AND l.id = n.id
               AND l.pii_key_id IS NOT DISTINCT FROM n.old_key_id",
            &tenants,
            &ids,
            &old_keys as &[Option<String>],
            &clears,
            &new_keys,
            &sealed,
        )
        .execute(db)
        .await?;
    }
}

/// Erases the PII of the tenant's leads of one consumer (a lead holding any of `hashes`): the
/// sealed lead and consent, its consumer hashes, and for a lead stored before sealing the PII
/// fields of its clear `lead`; its non-PII fields, sales and money stay. Records the request
/// (how the consumer was named, how many leads, when: no PII), in the same transaction.
pub async fn erase_consumer(
    db: &PgPool,
    tenant: Uuid,
    matched_by: &str,
    hashes: &[[u8; 32]],
    now: DateTime<Utc>,
) -> Result<(Uuid, i64), sqlx::Error> {
    let hashes: Vec<Vec<u8>> = hashes.iter().map(|h| h.to_vec()).collect();
    let mut tx = db.begin().await?;
    let erased = sqlx::query!(
        "WITH found AS (
             SELECT DISTINCT lead_id FROM lead_consumers WHERE tenant_id = $1 AND consumer_hash = ANY($2)),
         unlinked AS (
             DELETE FROM lead_consumers c USING found WHERE c.tenant_id = $1 AND c.lead_id = found.lead_id)
         UPDATE leads l SET pii_sealed = NULL, pii_key_id = NULL, pii_erased_at = $3, consent = '{}',
                lead = CASE WHEN l.pii_key_id IS NOT NULL THEN l.lead
                            ELSE l.lead - ARRAY(SELECT f ->> 'name' FROM offers o, jsonb_array_elements(o.fields) f
                                                WHERE o.tenant_id = l.tenant_id AND o.id = l.offer_id
                                                  AND f ->> 'pii' = 'true') END
         FROM found
         WHERE l.tenant_id = $1 AND l.id = found.lead_id AND l.pii_erased_at IS NULL",
        tenant,
        &hashes,
        now,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let id = Uuid::now_v7();
    let erased = i64::try_from(erased).unwrap_or(i64::MAX);
    sqlx::query!(
        "INSERT INTO erasures (tenant_id, id, matched_by, leads_erased, requested_at)
         VALUES ($1, $2, $3, $4, $5)",
        tenant,
        id,
        matched_by,
        i32::try_from(erased).unwrap_or(i32::MAX),
        now,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((id, erased))
}

/// Erases, as [`erase_consumer`] does, the PII of leads older than their tenant's
/// `pii_retention_days`, at most `limit` leads of each tenant: the number erased.
pub async fn erase_expired(
    db: &PgPool,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let erased = sqlx::query!(
        "WITH expired AS (
             SELECT x.tenant_id, x.id
             FROM tenants t
             CROSS JOIN LATERAL (
                 SELECT tenant_id, id FROM leads
                 WHERE tenant_id = t.id AND pii_erased_at IS NULL
                   AND created_at < $1::timestamptz - make_interval(days => t.pii_retention_days)
                 ORDER BY created_at LIMIT $2) x
             WHERE t.pii_retention_days IS NOT NULL),
         unlinked AS (
             DELETE FROM lead_consumers c USING expired
             WHERE c.tenant_id = expired.tenant_id AND c.lead_id = expired.id)
         UPDATE leads l SET pii_sealed = NULL, pii_key_id = NULL, pii_erased_at = $1, consent = '{}',
                lead = CASE WHEN l.pii_key_id IS NOT NULL THEN l.lead
                            ELSE l.lead - ARRAY(SELECT f ->> 'name' FROM offers o, jsonb_array_elements(o.fields) f
                                                WHERE o.tenant_id = l.tenant_id AND o.id = l.offer_id
                                                  AND f ->> 'pii' = 'true') END
         FROM expired
         WHERE l.tenant_id = expired.tenant_id AND l.id = expired.id",
        now,
        limit,
    )
    .execute(db)
    .await?
    .rows_affected();
    Ok(erased)
}

/// One erasure request as recorded.
pub struct Erasure {
    pub id: Uuid,
    pub matched_by: String,
    pub leads_erased: i32,
    pub requested_at: DateTime<Utc>,
}

/// The tenant's erasure requests, newest first (at most `limit`).
pub async fn erasures(db: &PgPool, tenant: Uuid, limit: i64) -> Result<Vec<Erasure>, sqlx::Error> {
    sqlx::query_as!(
        Erasure,
        "SELECT id, matched_by, leads_erased, requested_at FROM erasures
         WHERE tenant_id = $1 ORDER BY requested_at DESC, id DESC LIMIT $2",
        tenant,
        limit,
    )
    .fetch_all(db)
    .await
}

/// The tenant's `pii_retention_days` (`None`: kept until erased); `Err` RowNotFound: no tenant.
pub async fn retention_days(db: &PgPool, tenant: Uuid) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT pii_retention_days FROM tenants WHERE id = $1",
        tenant
    )
    .fetch_one(db)
    .await
}

/// Sets the tenant's `pii_retention_days`.
pub async fn set_retention_days(
    db: impl sqlx::PgExecutor<'_>,
    tenant: Uuid,
    days: Option<i32>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE tenants SET pii_retention_days = $2 WHERE id = $1",
        tenant,
        days
    )
    .execute(db)
    .await?;
    Ok(())
}
