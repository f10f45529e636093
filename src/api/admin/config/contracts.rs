//! Contracts: a buyer buying on one offer. Header values are write-only (`headers`), and the
//! URLs are checked against the outbound address policy (`outbound`) when saved.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::{Resource, exists, invalid};
use crate::api::Problem;
use crate::api::admin::input::{Input, amounts_from_cents, amounts_to_cents};
use crate::api::admin::{headers, outbound};
use crate::app::AppState;
use crate::auction::{
    CompiledCaps, CompiledFilter, CompiledSchedule, CompiledSchema, ConfigError, Pricing, Status,
};
use crate::buyers::delivery::DeliveryConfig;
use crate::store::admin::rows::{self, Buyers, ContractRow, Contracts};

pub fn router() -> OpenApiRouter<AppState> {
    resource_router()
}

super::resource_view! {
    /// A buyer buying on one offer (SPEC §4.5). Amounts in `pricing` (`exclusive`, `shared`,
    /// `max_bid`) and caps (`max_spend`) are decimal numbers.
    pub struct Contract {
        buyer_id: Uuid,
        offer_id: Uuid,
        name: String,
        status: Status,
        priority: i32,
        #[schema(value_type = Object)]
        pricing: Value,
        #[schema(value_type = Vec<Object>)]
        filters: Value,
        #[schema(value_type = Option<Object>)]
        schedule: Option<Value>,
        #[schema(value_type = Vec<Object>)]
        caps: Value,
        dedup_days: i32,
        /// Header values are write-only: shown masked (`super::headers`).
        #[schema(value_type = Object)]
        delivery: Value,
        /// The stored `pricing` and `delivery`, secrets unmasked, for a PATCH that sends masked
        /// values back; never shown.
        #[serde(skip)]
        stored_secrets: [Value; 2],
    }
}

/// Amounts of `pricing` stored as `<name>_cents`.
const PRICE_AMOUNTS: &[&str] = &["exclusive", "shared", "max_bid"];
/// Amounts of a cap stored as `<name>_cents`.
const CAP_AMOUNTS: &[&str] = &["max_spend"];

impl From<ContractRow> for Contract {
    fn from(row: ContractRow) -> Self {
        let stored_secrets = [row.pricing.clone(), row.delivery.clone()];
        let mut pricing = row.pricing;
        if let Value::Object(object) = &mut pricing {
            amounts_from_cents(object, PRICE_AMOUNTS);
        }
        headers::mask_section(&mut pricing);
        let mut delivery = row.delivery;
        headers::mask_section(&mut delivery);
        let mut caps = row.caps;
        if let Value::Array(items) = &mut caps {
            for cap in items.iter_mut().filter_map(Value::as_object_mut) {
                amounts_from_cents(cap, CAP_AMOUNTS);
            }
        }
        Contract {
            id: row.id,
            buyer_id: row.buyer_id,
            offer_id: row.offer_id,
            name: row.name,
            status: rows::status(&row.status),
            priority: row.priority,
            pricing,
            filters: row.filters,
            schedule: row.schedule,
            caps,
            dedup_days: row.dedup_days,
            delivery,
            created_at: row.created_at,
            updated_at: row.updated_at,
            stored_secrets,
        }
    }
}

/// A contract in its stored form (amounts in cents), checked by the auction's own compilers.
#[derive(Serialize)]
pub struct ContractValues {
    buyer_id: Uuid,
    offer_id: Uuid,
    name: String,
    status: &'static str,
    priority: i64,
    pricing: Value,
    filters: Value,
    schedule: Option<Value>,
    caps: Value,
    dedup_days: i64,
    delivery: Value,
}

impl Resource for Contract {
    type Table = Contracts;
    type View = Contract;
    type Values = ContractValues;
    const FIELDS: &'static [&'static str] = super::fields![
        buyer_id offer_id name status priority pricing filters schedule caps dedup_days delivery
    ];

    /// Reads a contract; its buyer and offer must be the tenant's, and its filters must fit
    /// the offer's field schema.
    async fn read(
        conn: &mut PgConnection,
        tenant: Uuid,
        input: &mut Input<'_>,
    ) -> Result<ContractValues, Problem> {
        let buyer_id = input.id("buyer_id");
        let offer_id = input.id("offer_id");
        let name = input.name("name");
        let status = input.status();
        let priority = input.integer("priority", i64::from(i32::MIN)..=i64::from(i32::MAX), 0);
        let dedup_days = input.integer("dedup_days", 0..=365, 0);
        let pricing = read_pricing(input);
        let caps = read_caps(input);
        let schedule = input.value("schedule").cloned();
        if let Err(errors) = CompiledSchedule::compile(schedule.as_ref().unwrap_or(&Value::Null)) {
            input.extend(errors);
        }
        let delivery = match input.value("delivery") {
            Some(delivery) => {
                if let Err(errors) = DeliveryConfig::parse(delivery) {
                    input.extend(errors);
                }
                delivery.clone()
            }
            None => {
                input.error("delivery", "is required");
                Value::Null
            }
        };
        let filters = input
            .value("filters")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        if !buyer_id.is_nil() && !exists::<Buyers>(conn, tenant, buyer_id).await? {
            input.error("buyer_id", "no such buyer");
        }
        if !offer_id.is_nil() {
            let fields = rows::offer_fields(&mut *conn, tenant, offer_id).await?;
            match fields.map(|f| CompiledSchema::compile(&f)) {
                None => input.error("offer_id", "no such offer"),
                Some(Ok(schema)) => {
                    if let Err(errors) = CompiledFilter::compile(&filters, &schema) {
                        input.extend(errors);
                    }
                    input.extend(crate::integration::check_contract_requests(
                        &pricing,
                        Some(&delivery),
                        &schema,
                    ));
                }
                // An offer broken by an SQL edit: its schema is the offer's problem to report.
                Some(Err(_)) => input.error("offer_id", "the offer's field schema is invalid"),
            }
        }
        Ok(ContractValues {
            buyer_id,
            offer_id,
            name,
            status: status.as_str(),
            priority,
            pricing,
            filters,
            schedule,
            caps,
            dedup_days,
            delivery,
        })
    }

    async fn check_sent(state: &AppState, sent: &Map<String, Value>) -> Result<(), Problem> {
        outbound::check_contract_urls(state.http.policy(), sent).await
    }

    /// Masked header values keep the stored secret (a create has none to keep).
    fn restore(body: &mut Map<String, Value>, current: Option<&Contract>) -> Result<(), Problem> {
        let masked = headers::restore_masked(body, current.map(|c| &c.stored_secrets));
        if masked.is_empty() {
            Ok(())
        } else {
            Err(invalid(masked))
        }
    }
}

/// `pricing` with its amounts in cents, checked as the auction reads it.
fn read_pricing(input: &mut Input<'_>) -> Value {
    let Some(value) = input.value("pricing") else {
        input.error("pricing", "is required");
        return Value::Null;
    };
    let Value::Object(object) = value else {
        input.error("pricing", "must be a fixed or rtb pricing object");
        return Value::Null;
    };
    let mut stored = object.clone();
    let errors = amounts_to_cents(&mut stored, PRICE_AMOUNTS, "/pricing");
    let stored = Value::Object(stored);
    if errors.is_empty() {
        if let Err(errors) = Pricing::parse(&stored) {
            input.extend(errors);
        }
    } else {
        input.push(errors);
    }
    stored
}

/// `caps` with spend limits in cents; each cap has one positive limit.
fn read_caps(input: &mut Input<'_>) -> Value {
    let Some(value) = input.value("caps") else {
        return Value::Array(Vec::new());
    };
    let Value::Array(items) = value else {
        input.error("caps", "must be a list of caps");
        return Value::Array(Vec::new());
    };
    let mut errors = Vec::new();
    let mut stored = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("/caps/{i}");
        let Value::Object(cap) = item else {
            errors.push(ConfigError::new(at, "must be a cap object"));
            continue;
        };
        let mut cap = cap.clone();
        // An absent limit may be written as null; stored, a null would count as present.
        cap.retain(|_, value| !value.is_null());
        errors.extend(amounts_to_cents(&mut cap, CAP_AMOUNTS, &at));
        if cap
            .get("max_leads")
            .and_then(Value::as_i64)
            .is_some_and(|n| n < 1)
        {
            errors.push(ConfigError::new(
                format!("{at}/max_leads"),
                "must be at least 1",
            ));
        }
        stored.push(Value::Object(cap));
    }
    let stored = Value::Array(stored);
    if errors.is_empty() {
        if let Err(errors) = CompiledCaps::compile(&stored) {
            input.extend(errors);
        }
    } else {
        input.push(errors);
    }
    stored
}

super::resource_routes! {
    resource = Contract, view = Contract, page = ContractPage, tag = "contracts",
    collection = "/v1/admin/contracts", item = "/v1/admin/contracts/{id}",
    list = list_contracts,
    create = create_contract,
    get = get_contract,
    update = update_contract,
    /// Archives the contract: it leaves auctions; its outcomes and sales stay readable.
    archive = archive_contract,
}
