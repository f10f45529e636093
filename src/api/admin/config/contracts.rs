//! Contracts: a buyer buying on one offer (declared in `crate::resources::contracts`). Header
//! values are write-only (`headers`), and the URLs are checked against the outbound address
//! policy (`outbound`) when saved.

use serde_json::{Map, Value};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::{Resource, invalid};
use crate::api::Problem;
use crate::api::admin::input::{Input, amounts_from_cents, amounts_to_cents};
use crate::api::admin::{headers, outbound};
use crate::app::AppState;
use crate::auction::{
    CompiledCaps, CompiledFilter, CompiledSchedule, CompiledSchema, ConfigError, Pricing,
};
use crate::buyers::breaker::{Endpoint, EndpointHealth};
use crate::buyers::delivery::DeliveryConfig;
use crate::integration::UrlTemplate;
use crate::resources::Kind;
use crate::resources::contracts::{Contract, ContractRow, ContractValues};
use crate::returns::ReturnSettings;
use crate::store::admin::rows;

pub fn router() -> OpenApiRouter<AppState> {
    resource_router()
}

/// Amounts of `pricing` stored as `<name>_cents`.
const PRICE_AMOUNTS: &[&str] = &["exclusive", "shared", "max_bid"];
/// Amounts of a cap stored as `<name>_cents`.
const CAP_AMOUNTS: &[&str] = &["max_spend"];

/// `pricing`: its amounts in cents, its header values masked in answers.
pub struct PricingSection;

impl Kind for PricingSection {
    type Row = Value;
    type View = Value;
    type Stored = Value;
    fn view(row: &Value) -> Value {
        let mut pricing = row.clone();
        if let Value::Object(object) = &mut pricing {
            amounts_from_cents(object, PRICE_AMOUNTS);
        }
        headers::mask_section(&mut pricing);
        pricing
    }
    fn read(input: &mut Input<'_>, _key: &str) -> Value {
        read_pricing(input)
    }
}

/// `caps`: spend limits in cents.
pub struct CapsList;

impl Kind for CapsList {
    type Row = Value;
    type View = Value;
    type Stored = Value;
    fn view(row: &Value) -> Value {
        let mut caps = row.clone();
        if let Value::Array(items) = &mut caps {
            for cap in items.iter_mut().filter_map(Value::as_object_mut) {
                amounts_from_cents(cap, CAP_AMOUNTS);
            }
        }
        caps
    }
    fn read(input: &mut Input<'_>, _key: &str) -> Value {
        read_caps(input)
    }
}

/// `delivery`: required, its header values masked in answers (checked in `check`).
pub struct DeliverySection;

impl Kind for DeliverySection {
    type Row = Value;
    type View = Value;
    type Stored = Value;
    fn view(row: &Value) -> Value {
        let mut delivery = row.clone();
        headers::mask_section(&mut delivery);
        delivery
    }
    fn read(input: &mut Input<'_>, key: &str) -> Value {
        match input.value(key) {
            Some(delivery) => delivery.clone(),
            None => {
                input.error(key, "is required");
                Value::Null
            }
        }
    }
}

/// `win_url`, `loss_url`: a notice's URL template (docs/revenue-recovery.md §7), or none;
/// refused when it does not compile, names a variable a notice does not have, or does not
/// render an http(s) URL.
pub struct NoticeUrl;

impl Kind for NoticeUrl {
    const NULLABLE: bool = true;
    type Row = Option<String>;
    type View = Option<String>;
    type Stored = Option<String>;
    fn view(row: &Option<String>) -> Option<String> {
        row.clone()
    }
    fn read(input: &mut Input<'_>, key: &str) -> Option<String> {
        let source = input.text(key, 2000)?;
        if let Err(errors) = UrlTemplate::compile(&source, &format!("/{key}")) {
            input.push(errors);
        }
        Some(source)
    }
}

/// `returns`: the contract's return settings (docs/returns.md), every key stored, each left
/// out taking its default on a create and keeping its stored value in a PATCH (`restore`).
pub struct ReturnsSection;

impl Kind for ReturnsSection {
    type Row = Value;
    type View = Value;
    type Stored = Value;
    fn view(row: &Value) -> Value {
        ReturnSettings::parse(row, "").map_or_else(|_| row.clone(), |s| s.to_value())
    }
    fn read(input: &mut Input<'_>, key: &str) -> Value {
        let Some(value) = input.value(key) else {
            return ReturnSettings::default().to_value();
        };
        match ReturnSettings::parse(value, &format!("/{key}")) {
            Ok(settings) => settings.to_value(),
            Err(errors) => {
                input.push(errors);
                ReturnSettings::default().to_value()
            }
        }
    }
}

/// The stored `pricing` and `delivery` of the answer's hidden `stored_secrets`.
pub fn stored_secrets(row: &ContractRow) -> [Value; 2] {
    [row.pricing.clone(), row.delivery.clone()]
}

/// `endpoint_health` is not in the row: [`Resource::answered`] adds it.
pub fn endpoint_health_unknown(_row: &ContractRow) -> Option<EndpointHealth> {
    None
}

impl Resource for Contract {
    /// This process's view of the contract's endpoints (`buyers::breaker`).
    fn answered(mut self, state: &AppState, tenant: Uuid) -> Self {
        let breakers = state.http.breakers();
        let now = state.clock.now();
        let health = |endpoint| breakers.health(tenant, self.id, endpoint, now);
        let rtb = self.pricing.get("type").and_then(Value::as_str) == Some("rtb");
        self.endpoint_health = Some(EndpointHealth {
            rtb: rtb.then(|| health(Endpoint::Rtb)),
            delivery: Some(health(Endpoint::Delivery)),
        });
        self
    }

    /// Checks a contract's sections as the auction compiles them; its offer must be the
    /// tenant's, and its filters must fit the offer's field schema.
    async fn check(
        conn: &mut PgConnection,
        tenant: Uuid,
        input: &mut Input<'_>,
        values: &ContractValues,
    ) -> Result<(), Problem> {
        let ContractValues {
            offer_id,
            schedule,
            pricing,
            delivery,
            filters,
            suppression_list_ids,
            ..
        } = values;
        let offer_id = *offer_id;
        super::suppression_lists::check_attached(conn, tenant, input, suppression_list_ids).await?;
        if let Err(errors) = CompiledSchedule::compile(schedule.as_ref().unwrap_or(&Value::Null)) {
            input.extend(errors);
        }
        if !delivery.is_null()
            && let Err(errors) = DeliveryConfig::parse(delivery)
        {
            input.extend(errors);
        }
        if !offer_id.is_nil() {
            let fields = rows::offer_fields(&mut *conn, tenant, offer_id).await?;
            match fields.map(|f| CompiledSchema::compile(&f)) {
                None => input.error("offer_id", "no such offer"),
                Some(Ok(schema)) => {
                    if let Err(errors) = CompiledFilter::compile(filters, &schema) {
                        input.extend(errors);
                    }
                    input.extend(crate::integration::check_contract_requests(
                        pricing,
                        Some(delivery),
                        &schema,
                    ));
                }
                // An offer broken by an SQL edit: its schema is the offer's problem to report.
                Some(Err(_)) => input.error("offer_id", "the offer's field schema is invalid"),
            }
        }
        Ok(())
    }

    async fn check_sent(state: &AppState, sent: &Map<String, Value>) -> Result<(), Problem> {
        outbound::check_contract_urls(state.http.policy(), sent).await
    }

    /// Masked header values keep the stored secret (a create has none to keep).
    /// A PATCH's part of `returns` keeps the rest of the stored settings.
    fn restore(body: &mut Map<String, Value>, current: Option<&Contract>) -> Result<(), Problem> {
        if let (Some(current), Some(sent)) = (current, body.get_mut("returns")) {
            *sent = crate::returns::merge_patch(&current.returns, sent);
        }
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
