//! What an operator looks at: a contract's or a buyer's caps in their current periods, and a
//! posted lead with its consent and sales.

use std::str::FromStr;

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{SaleItem, SaleReturn, parse_id, returns_by_sale};
use crate::api::Problem;
use crate::api::extract::AdminTenant;
use crate::app::AppState;
use crate::auction::{CapLimit, CapPeriod, CompiledCaps, period_start};
use crate::money::Money;
use crate::store::admin::inspect;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(contract_caps))
        .routes(routes!(buyer_caps))
        .routes(routes!(lead_view))
}

/// A cap's limit, usage and what is left: lead counts, or amounts for spend caps.
#[derive(Serialize)]
#[serde(untagged)]
pub enum CapAmount {
    Leads(i64),
    Spend(Money),
}

/// One cap in its current period.
#[derive(Serialize, ToSchema)]
pub struct CapState {
    period: CapPeriod,
    /// `leads` or `spend`.
    kind: &'static str,
    /// A count of leads, or an amount for a spend cap (both JSON numbers).
    #[schema(value_type = Money)]
    limit: CapAmount,
    #[schema(value_type = Money)]
    used: CapAmount,
    #[schema(value_type = Money)]
    remaining: CapAmount,
    /// The period's first instant, at its boundary in the tenant's timezone.
    period_start: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ContractCaps {
    caps: Vec<CapState>,
}

/// The contract's caps: for each, the current period's start, usage and what remains.
#[utoipa::path(get, path = "/v1/admin/contracts/{id}/caps", tag = "contracts",
    params(("id" = Uuid, Path)), responses((status = 200, body = ContractCaps)))]
async fn contract_caps(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<ContractCaps>, Problem> {
    let contract_id = parse_id(&id)?;
    let row = inspect::contract_caps(&state.db, tenant, contract_id).await?;
    let (caps, timezone) = row.ok_or_else(Problem::not_found)?;
    let usage = inspect::cap_counters(&state.db, tenant, contract_id).await?;
    let caps = cap_states(&caps, &timezone, state.clock.now(), &usage);
    Ok(Json(ContractCaps { caps }))
}

/// The buyer's own caps, over all its contracts: for each, the current period's start, usage
/// and what remains, as a contract's caps are shown.
#[utoipa::path(get, path = "/v1/admin/buyers/{id}/caps", tag = "buyers",
    params(("id" = Uuid, Path)), responses((status = 200, body = ContractCaps)))]
async fn buyer_caps(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<ContractCaps>, Problem> {
    let buyer_id = parse_id(&id)?;
    let row = inspect::buyer_caps(&state.db, tenant, buyer_id).await?;
    let (caps, timezone) = row.ok_or_else(Problem::not_found)?;
    let usage = inspect::buyer_cap_counters(&state.db, tenant, buyer_id).await?;
    let caps = cap_states(&caps, &timezone, state.clock.now(), &usage);
    Ok(Json(ContractCaps { caps }))
}

/// Stored caps in their current periods, given their counters.
fn cap_states(
    caps: &Value,
    timezone: &str,
    now: DateTime<Utc>,
    usage: &[inspect::CapCounter],
) -> Vec<CapState> {
    // Both were checked when written; an SQL edit that broke them shows no caps rather than 500.
    let caps = CompiledCaps::compile(caps).unwrap_or_default();
    let timezone = Tz::from_str(timezone).unwrap_or(Tz::UTC);
    caps.iter()
        .map(|cap| {
            let start = period_start(cap.period(), now, timezone);
            let (leads, spend) = usage
                .iter()
                .find(|(period, at, _, _)| period == cap.period().as_str() && *at == start)
                .map_or((0, 0), |(_, _, leads, spend)| (i64::from(*leads), *spend));
            let (kind, limit, used, remaining) = match cap.limit() {
                CapLimit::Leads(max) => (
                    "leads",
                    CapAmount::Leads(max),
                    CapAmount::Leads(leads),
                    CapAmount::Leads((max - leads).max(0)),
                ),
                CapLimit::Spend(max) => (
                    "spend",
                    CapAmount::Spend(max),
                    CapAmount::Spend(Money::from_cents(spend)),
                    CapAmount::Spend(Money::from_cents((max.cents() - spend).max(0))),
                ),
            };
            CapState {
                period: cap.period(),
                kind,
                limit,
                used,
                remaining,
                period_start: start,
            }
        })
        .collect()
}

/// A posted lead: every field as posted (PII included: this is the operator's own record),
/// its consent, and the sale of each winner.
#[derive(Serialize, ToSchema)]
pub struct LeadView {
    id: Uuid,
    ping_id: Uuid,
    campaign_id: Uuid,
    partner_id: Uuid,
    offer_id: Uuid,
    /// The partner's name.
    partner_name: Option<String>,
    /// A campaign has no name of its own: its partner's and its offer's (`Partner → offer`).
    campaign_name: Option<String>,
    /// The offer's name.
    offer_name: Option<String>,
    #[schema(value_type = Object)]
    lead: Value,
    #[schema(value_type = Object)]
    consent: Value,
    /// How the lead's PII is stored (docs/pii.md).
    pii: PiiState,
    test: bool,
    created_at: DateTime<Utc>,
    sales: Vec<LeadSale>,
}

/// How a lead's PII is stored, and so what `lead` and `consent` show.
#[derive(Serialize, ToSchema, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PiiState {
    /// Sealed at rest, shown opened: the whole lead and its consent.
    Sealed,
    /// Stored before PII was sealed (`gavel pii rotate` seals it): shown as stored.
    NotSealed,
    /// Sealed with a key `pii_keys` no longer lists (or altered): only the non-PII fields
    /// are shown, the consent is empty.
    Unavailable,
    /// Erased (a consumer's request, the tenant's retention): only the non-PII fields remain.
    Erased,
}

/// The lead's fields and consent as the operator may read them, opened with the process's keys.
fn opened(
    keys: &crate::pii::PiiKeys,
    tenant: Uuid,
    lead: &mut inspect::LeadRow,
) -> (Value, Value, PiiState) {
    let clear = (
        std::mem::take(&mut lead.lead),
        std::mem::take(&mut lead.consent),
    );
    if lead.pii_erased_at.is_some() {
        return (clear.0, clear.1, PiiState::Erased);
    }
    let (Some(key_id), Some(sealed)) = (&lead.pii_key_id, &lead.pii_sealed) else {
        return (clear.0, clear.1, PiiState::NotSealed);
    };
    match keys.open_lead(tenant, lead.id, key_id, sealed) {
        Ok((lead, consent)) => (
            Value::Object(lead),
            Value::Object(consent),
            PiiState::Sealed,
        ),
        Err(error) => {
            tracing::warn!(lead_id = %lead.id, %error, "a lead's PII does not open");
            (clear.0, clear.1, PiiState::Unavailable)
        }
    }
}

/// One sale of the lead, with the buyer's returns of it (oldest first).
#[derive(Serialize, ToSchema)]
pub struct LeadSale {
    #[serde(flatten)]
    sale: SaleItem,
    returns: Vec<SaleReturn>,
}

#[utoipa::path(get, path = "/v1/admin/leads/{id}", tag = "inspection",
    params(("id" = Uuid, Path)), responses((status = 200, body = LeadView)))]
async fn lead_view(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<LeadView>, Problem> {
    let (mut lead, sales, returns) = inspect::lead(&state.db, tenant, parse_id(&id)?)
        .await?
        .ok_or_else(Problem::not_found)?;
    let (fields, consent, pii) = opened(&state.pii, tenant, &mut lead);
    let mut returns = returns_by_sale(returns);
    Ok(Json(LeadView {
        id: lead.id,
        ping_id: lead.ping_id,
        campaign_id: lead.campaign_id,
        partner_id: lead.partner_id,
        offer_id: lead.offer_id,
        partner_name: lead.partner_name,
        campaign_name: lead.campaign_name,
        offer_name: lead.offer_name,
        lead: fields,
        consent,
        pii,
        test: lead.test,
        created_at: lead.created_at,
        sales: sales
            .into_iter()
            .map(|sale| LeadSale {
                returns: returns.remove(&sale.id).unwrap_or_default(),
                sale: SaleItem::from(sale),
            })
            .collect(),
    }))
}
