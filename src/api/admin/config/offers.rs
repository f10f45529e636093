//! Offers: lead types, each with its field schema and distribution mode.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::{Resource, invalid};
use crate::api::Problem;
use crate::api::admin::input::Input;
use crate::app::AppState;
use crate::auction::{CompiledFilter, CompiledSchema, ConfigError, Mode, OfferRules, Status};
use crate::money::Money;
use crate::store::admin::rows::{self, OfferRow, Offers};

pub fn router() -> OpenApiRouter<AppState> {
    resource_router()
}

super::resource_view! {
    /// A lead type: its field schema and its distribution mode (SPEC §4.2).
    pub struct Offer {
        name: String,
        status: Status,
        mode: Mode,
        max_buyers: i32,
        exclusive_floor: Money,
        ping_ttl_seconds: i32,
        dedup_days: i32,
        require_consent: Vec<String>,
        /// `[{"name","type","pattern","enum","min","max","pii","required"}]`.
        #[schema(value_type = Vec<Object>)]
        fields: Value,
    }
}

impl From<OfferRow> for Offer {
    fn from(row: OfferRow) -> Self {
        // The column's CHECK allows only the four modes.
        let mode = row.mode().unwrap_or(Mode::Exclusive);
        let require_consent = row.require_consent().unwrap_or_default();
        Offer {
            id: row.id,
            name: row.name,
            status: rows::status(&row.status),
            mode,
            max_buyers: row.max_buyers,
            exclusive_floor: Money::from_cents(row.exclusive_floor_cents),
            ping_ttl_seconds: row.ping_ttl_seconds,
            dedup_days: row.dedup_days,
            require_consent,
            fields: row.fields,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Serialize)]
pub struct OfferValues {
    name: String,
    status: &'static str,
    mode: &'static str,
    max_buyers: u32,
    exclusive_floor_cents: i64,
    ping_ttl_seconds: i64,
    dedup_days: u32,
    require_consent: Vec<String>,
    fields: Value,
}

impl Resource for Offer {
    type Table = Offers;
    type View = Offer;
    type Values = OfferValues;
    const FIELDS: &'static [&'static str] = super::fields![
        name status mode max_buyers exclusive_floor ping_ttl_seconds dedup_days
        require_consent fields
    ];

    async fn read(
        _conn: &mut PgConnection,
        _tenant: Uuid,
        input: &mut Input<'_>,
    ) -> Result<OfferValues, Problem> {
        let name = input.name("name");
        let status = input.status();
        let mode = match input.value("mode").map(|v| v.as_str().map(Mode::from_str)) {
            Some(Some(Ok(mode))) => mode,
            Some(_) => {
                input.error("mode", "must be exclusive, multisell, hybrid or optimize");
                Mode::Exclusive
            }
            None => {
                input.error("mode", "is required");
                Mode::Exclusive
            }
        };
        let max_buyers = input.integer("max_buyers", 1..=100, 3);
        let exclusive_floor = input.money("exclusive_floor", Money::ZERO);
        let ping_ttl_seconds = input.integer("ping_ttl_seconds", 1..=86_400, 300);
        let dedup_days = input.integer("dedup_days", 0..=365, 0);
        let require_consent = match input.value("require_consent") {
            None => Vec::new(),
            Some(value) => {
                serde_json::from_value::<Vec<String>>(value.clone()).unwrap_or_else(|_| {
                    input.error("require_consent", "must be a list of consent keys");
                    Vec::new()
                })
            }
        };
        let rules = OfferRules {
            mode,
            max_buyers: u32::try_from(max_buyers).unwrap_or(3),
            exclusive_floor,
            dedup_days: u32::try_from(dedup_days).unwrap_or(0),
            require_consent,
        };
        if let Err(errors) = rules.validate() {
            input.extend(errors);
        }
        let fields = input
            .value("fields")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        if let Err(errors) = CompiledSchema::compile(&fields) {
            input.extend(errors);
        }
        Ok(OfferValues {
            name,
            status: status.as_str(),
            mode: rules.mode.as_str(),
            max_buyers: rules.max_buyers,
            exclusive_floor_cents: rules.exclusive_floor.cents(),
            ping_ttl_seconds,
            dedup_days: rules.dedup_days,
            require_consent: rules.require_consent,
            fields,
        })
    }

    /// The contracts of the offer must still compile against a changed field schema.
    async fn check_update(
        conn: &mut PgConnection,
        tenant: Uuid,
        id: Uuid,
        values: &OfferValues,
    ) -> Result<(), Problem> {
        let Ok(schema) = CompiledSchema::compile(&values.fields) else {
            return Ok(());
        };
        let contracts = rows::live_contract_filters(conn, tenant, id).await?;
        let errors: Vec<ConfigError> = contracts
            .iter()
            .filter_map(|(id, filters)| {
                let broken = CompiledFilter::compile(filters, &schema).err()?;
                Some(ConfigError::new(
                    "/fields",
                    format!(
                        "contract {id} filters on it: {}",
                        broken.first().map(ToString::to_string).unwrap_or_default()
                    ),
                ))
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(invalid(errors))
        }
    }

    /// Another live offer of the tenant already has this name (unique among non-archived
    /// offers).
    fn write_error(error: sqlx::Error) -> Problem {
        match &error {
            sqlx::Error::Database(db) if db.constraint() == Some("offers_name") => {
                invalid(vec![ConfigError::new(
                    "/name",
                    "another offer has this name",
                )])
            }
            _ => error.into(),
        }
    }
}

super::resource_routes! {
    resource = Offer, view = Offer, page = OfferPage, tag = "offers",
    collection = "/v1/admin/offers", item = "/v1/admin/offers/{id}",
    list = list_offers,
    create = create_offer,
    get = get_offer,
    /// Changes an offer; a new field schema must still fit the filters of its contracts.
    update = update_offer,
    /// Archives the offer: its campaigns stop selling; its pings and leads stay readable.
    archive = archive_offer,
}
