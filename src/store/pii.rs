//! Sealing stored leads again under the active key (`gavel pii rotate`, docs/pii.md): the rows
//! sealed under an older key, and the rows stored before PII was sealed. Batches of rows in
//! primary-key order; each batch is one statement, and a row changed meanwhile (by another
//! rotation) is left as it is.

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
