//! The post's own two writes, grouped as the sales' (`store::group`): the claim of its ping
//! (with its lead stored) and its finish (the winners' dispositions, its answer, its
//! `posting_log` row). Under load, the posts claiming or finishing at the same moment share
//! one statement and one commit; alone, a post's statement runs at once. Each statement also
//! builds the check constraints of every table it writes once, not once per post (PostgreSQL
//! builds them at each statement's start: a tenth of its time in the hot-contract bench).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::group::{Group, GroupStatement, REPLAN_EVERY_SECOND, by_ordinal, column};
use super::sales::PostSource;
use crate::pii::StoredLead;
use crate::post::{PostKind, PostStatus, SaleStatus};

pub enum Claim {
    /// This request owns the post: the lead is stored under `lead_id`. The suppression lists
    /// (of those the claim was given) that hold the consumer.
    Won { suppressed_lists: Vec<Uuid> },
    /// Another request claimed the ping first, with a body of this hash.
    Lost { body_sha256: Vec<u8> },
}

/// A post's claim of its ping, as the grouped statement takes it (owned: it may wait in a
/// group's queue).
pub struct ClaimRequest {
    source: PostSource,
    ping_id: Uuid,
    body_sha256: Vec<u8>,
    lead_id: Uuid,
    lead: Map<String, Value>,
    pii_key_id: String,
    pii_sealed: Vec<u8>,
    consumer_hashes: Vec<[u8; 32]>,
    suppression_lists: Vec<Uuid>,
    test: bool,
    now: DateTime<Utc>,
}

/// The claims of posts made at the same moment.
pub struct ClaimPosts;

impl GroupStatement for ClaimPosts {
    const NAME: &'static str = "post_claim";
    const DROP_ABANDONED: bool = true;
    const REPLAN_EVERY: Option<std::time::Duration> = REPLAN_EVERY_SECOND;
    type Request = ClaimRequest;
    /// The suppression lists holding the consumer, when this request claimed the ping.
    type Answer = Option<Vec<Uuid>>;
    const MAX_REQUESTS: usize = 64;
    const MAX_WORK: usize = 2_000;

    fn work(claim: &ClaimRequest) -> usize {
        1 + claim.consumer_hashes.len()
    }

    async fn run(
        db: &mut PgConnection,
        claims: &[ClaimRequest],
    ) -> Result<Vec<Option<Vec<Uuid>>>, sqlx::Error> {
        claim_all(db, claims).await
    }
}

/// Claims the ping for this post and stores the lead (its PII sealed: `crate::pii`), in one
/// transaction, grouped with the claims of the posts made at the same moment; only the first
/// of concurrent posts of a ping wins. The same statement looks the consumer's hashes up in
/// `suppression_lists` (no round trip of its own).
#[allow(clippy::too_many_arguments)]
pub async fn claim(
    claims: &Group<ClaimPosts>,
    db: &PgPool,
    source: &PostSource,
    ping_id: Uuid,
    body_sha256: &[u8; 32],
    lead_id: Uuid,
    lead: StoredLead,
    consumer_hashes: &[[u8; 32]],
    suppression_lists: &[Uuid],
    test: bool,
    now: DateTime<Utc>,
) -> Result<Claim, sqlx::Error> {
    let request = ClaimRequest {
        source: *source,
        ping_id,
        body_sha256: body_sha256.to_vec(),
        lead_id,
        lead: lead.clear,
        pii_key_id: lead.sealed.key_id,
        pii_sealed: lead.sealed.bytes,
        consumer_hashes: consumer_hashes.to_vec(),
        suppression_lists: suppression_lists.to_vec(),
        test,
        now,
    };
    if let Some(suppressed_lists) = claims.run(request).await? {
        return Ok(Claim::Won { suppressed_lists });
    }
    // Claimed by another request: committed before this one's statement (or in the same group,
    // whose commit came before this answer).
    let hash = sqlx::query_scalar!(
        "SELECT post_body_sha256 FROM posting_log WHERE tenant_id = $1 AND id = $2",
        source.tenant_id,
        ping_id,
    )
    .fetch_one(db)
    .await?;
    Ok(Claim::Lost {
        body_sha256: hash.unwrap_or_default(),
    })
}

/// The claims in one statement: for each, in order, the suppression lists holding its consumer
/// when it claimed its ping, else `None`. Two requests of the group posting the same ping: the
/// update takes the ping's row once, so one of them claims it.
async fn claim_all(
    db: &mut PgConnection,
    claims: &[ClaimRequest],
) -> Result<Vec<Option<Vec<Uuid>>>, sqlx::Error> {
    let cs = claims;
    // The consumers' hashes and the suppression lists, flattened: each names its request.
    let (mut hash_of, mut hashes, mut list_of, mut lists) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (index, c) in (1_i64..).zip(cs) {
        for hash in &c.consumer_hashes {
            hash_of.push(index);
            hashes.push(hash.to_vec());
        }
        for list in &c.suppression_lists {
            list_of.push(index);
            lists.push(*list);
        }
    }
    let leads: Vec<Json<&Map<String, Value>>> = cs.iter().map(|c| Json(&c.lead)).collect();
    let rows = sqlx::query!(
        r#"WITH r AS (
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::bytea[], $5::uuid[],
                                  $6::uuid[], $7::uuid[], $8::uuid[], $9::jsonb[], $10::bool[],
                                  $11::text[], $12::bytea[]) WITH ORDINALITY
                 AS r (tenant_id, ping_id, at, body, lead_id, campaign_id, partner_id, offer_id, lead,
                       test, key_id, sealed, ord)),
         h AS (SELECT * FROM unnest($13::bigint[], $14::bytea[]) AS h (req, hash)),
         claimed AS (
             UPDATE posting_log p SET post_claimed_at = r.at, post_body_sha256 = r.body, lead_id = r.lead_id
             FROM r
             WHERE p.tenant_id = r.tenant_id AND p.id = r.ping_id AND p.kind = 'ping'
               AND p.post_claimed_at IS NULL
             RETURNING r.*),
         stored AS (
             INSERT INTO leads (tenant_id, id, ping_id, campaign_id, partner_id, offer_id, lead, test,
                                created_at, pii_key_id, pii_sealed)
             SELECT tenant_id, lead_id, ping_id, campaign_id, partner_id, offer_id, lead, test, at,
                    key_id, sealed
             FROM claimed ORDER BY ord),
         consumers AS (
             INSERT INTO lead_consumers (tenant_id, consumer_hash, lead_id)
             SELECT DISTINCT claimed.tenant_id, h.hash, claimed.lead_id
             FROM claimed JOIN h ON h.req = claimed.ord)
         SELECT r.ord AS "ord!",
                EXISTS (SELECT 1 FROM claimed WHERE claimed.ord = r.ord) AS "claimed!",
                ARRAY(SELECT DISTINCT e.list_id
                      FROM unnest($15::bigint[], $16::uuid[]) AS l (req, list_id)
                      JOIN suppression_entries e ON e.tenant_id = r.tenant_id AND e.list_id = l.list_id
                      WHERE l.req = r.ord
                        AND e.hash IN (SELECT h.hash FROM h WHERE h.req = r.ord)) AS "suppressed_lists!"
         FROM r ORDER BY r.ord"#,
        &column(cs, |c| c.source.tenant_id),
        &column(cs, |c| c.ping_id),
        &column(cs, |c| c.now),
        &column(cs, |c| c.body_sha256.clone()),
        &column(cs, |c| c.lead_id),
        &column(cs, |c| c.source.campaign_id),
        &column(cs, |c| c.source.partner_id),
        &column(cs, |c| c.source.offer_id),
        &leads as _,
        &column(cs, |c| c.test),
        &column(cs, |c| c.pii_key_id.as_str()) as _,
        &column(cs, |c| c.pii_sealed.clone()),
        &hash_of,
        &hashes,
        &list_of,
        &lists,
    )
    .fetch_all(db)
    .await?;
    let claimed = rows
        .into_iter()
        .filter(|row| row.claimed)
        .map(|row| (row.ord, row.suppressed_lists));
    Ok(by_ordinal(cs.len(), claimed))
}

/// One winning bid's final disposition, for `distribution_winners`.
pub struct Disposition {
    pub contract_id: Uuid,
    pub status: SaleStatus,
}

/// A post's finish, as the grouped statement takes it.
pub struct Finish {
    source: PostSource,
    ping_id: Uuid,
    dispositions: Vec<Disposition>,
    response: String,
    log_id: Uuid,
    kind: PostKind,
    result: PostStatus,
    test: bool,
    latency_us: i64,
    now: DateTime<Utc>,
    verification: Option<Value>,
}

/// The finishes of posts answering at the same moment.
pub struct FinishPosts;

impl GroupStatement for FinishPosts {
    const NAME: &'static str = "post_finish";
    const REPLAN_EVERY: Option<std::time::Duration> = REPLAN_EVERY_SECOND;
    type Request = Finish;
    /// The stored answer's text, if the post's lead was found.
    type Answer = Option<String>;
    const MAX_REQUESTS: usize = 64;
    const MAX_WORK: usize = 2_000;

    fn work(finish: &Finish) -> usize {
        2 + finish.dispositions.len()
    }

    async fn run(
        db: &mut PgConnection,
        finishes: &[Finish],
    ) -> Result<Vec<Option<String>>, sqlx::Error> {
        finish_all(db, finishes).await
    }
}

/// Records the post: each winner's disposition, the answer on the ping (for retries) and the
/// post's own `posting_log` row, in one transaction, grouped with the posts answering at the
/// same moment. Returns the stored answer's text, which every retry of this post receives
/// byte for byte.
#[allow(clippy::too_many_arguments)]
pub async fn finish_post(
    finishes: &Group<FinishPosts>,
    source: &PostSource,
    ping_id: Uuid,
    dispositions: Vec<Disposition>,
    // The answer as JSON text: stored as jsonb, which keeps each amount's two decimals.
    response: String,
    kind: PostKind,
    result: PostStatus,
    test: bool,
    latency_us: i64,
    now: DateTime<Utc>,
    // What the offer's consent verification steps found (docs/verification.md), if it has any.
    verification: Option<Value>,
) -> Result<String, sqlx::Error> {
    let finish = Finish {
        source: *source,
        ping_id,
        dispositions,
        response,
        log_id: Uuid::now_v7(),
        kind,
        result,
        test,
        latency_us,
        now,
        verification,
    };
    finishes
        .run(finish)
        .await?
        .map(super::sales::compact)
        .ok_or(sqlx::Error::RowNotFound)
}

/// The finishes in one statement: for each, in order, its lead's stored answer (`None`: no
/// lead). The answer is kept if the sweep answered first: every request of a post gets one
/// and the same answer.
async fn finish_all(
    db: &mut PgConnection,
    finishes: &[Finish],
) -> Result<Vec<Option<String>>, sqlx::Error> {
    let fs = finishes;
    let (mut disposition_of, mut contracts, mut statuses) = (Vec::new(), Vec::new(), Vec::new());
    for (index, f) in (1_i64..).zip(fs) {
        for d in &f.dispositions {
            disposition_of.push(index);
            contracts.push(d.contract_id);
            statuses.push(d.status.as_str());
        }
    }
    let verifications: Vec<Option<Json<&Value>>> = fs
        .iter()
        .map(|f| f.verification.as_ref().map(Json))
        .collect();
    let rows = sqlx::query!(
        r#"WITH r AS (
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[],
                                  $6::uuid[], $7::uuid[], $8::uuid[], $9::timestamptz[], $10::bigint[],
                                  $11::text[], $12::bool[], $13::jsonb[]) WITH ORDINALITY
                 AS r (tenant_id, ping_id, response, log_id, kind, campaign_id, partner_id, offer_id, at,
                       latency_us, result, test, verification, ord)),
         dispositions AS (
             UPDATE distribution_winners d SET disposition = u.status
             FROM unnest($14::bigint[], $15::uuid[], $16::text[]) AS u (req, contract_id, status)
             JOIN r ON r.ord = u.req
             WHERE d.tenant_id = r.tenant_id AND d.ping_id = r.ping_id AND d.contract_id = u.contract_id),
         logged AS (
             INSERT INTO posting_log (tenant_id, id, kind, campaign_id, partner_id, offer_id, ping_id, created_at,
                                      latency_us, http_status, result, test)
             SELECT tenant_id, log_id, kind, campaign_id, partner_id, offer_id, ping_id, at, latency_us, 200,
                    result, test
             FROM r ORDER BY ord)
         UPDATE leads l SET post_response = coalesce(l.post_response, r.response::jsonb),
                            verification = coalesce(l.verification, r.verification)
         FROM r
         WHERE l.tenant_id = r.tenant_id AND l.ping_id = r.ping_id
         RETURNING r.ord AS "ord!", l.post_response::text AS "post_response!""#,
        &column(fs, |f| f.source.tenant_id),
        &column(fs, |f| f.ping_id),
        &column(fs, |f| f.response.as_str()) as _,
        &column(fs, |f| f.log_id),
        &column(fs, |f| f.kind.as_str()) as _,
        &column(fs, |f| f.source.campaign_id),
        &column(fs, |f| f.source.partner_id),
        &column(fs, |f| f.source.offer_id),
        &column(fs, |f| f.now),
        &column(fs, |f| f.latency_us),
        &column(fs, |f| f.result.as_str()) as _,
        &column(fs, |f| f.test),
        &verifications as _,
        &disposition_of,
        &contracts,
        &statuses as _,
    )
    .fetch_all(db)
    .await?;
    Ok(by_ordinal(
        fs.len(),
        rows.into_iter().map(|row| (row.ord, row.post_response)),
    ))
}
