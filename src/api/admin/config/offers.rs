//! Offers: lead types, each with its field schema and distribution mode (declared in
//! `crate::resources::offers`).

use std::str::FromStr;

use serde_json::{Map, Value};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::{Resource, invalid};
use crate::api::Problem;
use crate::api::admin::input::Input;
use crate::api::admin::{headers, outbound};
use crate::app::AppState;
use crate::auction::{
    CascadeRules, CompiledFilter, CompiledSchema, ConfigError, Distribution, Mode, OfferRules,
    Strategy,
};
use crate::money::Money;
use crate::resources::Kind;
use crate::resources::offers::{Offer, OfferRow, OfferValues};
use crate::returns::ReturnPolicy;
use crate::store::admin::rows;

pub fn router() -> OpenApiRouter<AppState> {
    resource_router()
}

/// `mode`: required.
pub struct ModeField;

impl Kind for ModeField {
    type Row = String;
    type View = Mode;
    type Stored = Mode;
    fn view(row: &String) -> Mode {
        // The column's CHECK allows only the four modes.
        Mode::from_str(row).unwrap_or(Mode::Exclusive)
    }
    fn read(input: &mut Input<'_>, key: &str) -> Mode {
        match input.value(key).map(|v| v.as_str().map(Mode::from_str)) {
            Some(Some(Ok(mode))) => mode,
            Some(_) => {
                input.error(key, "must be exclusive, multisell, hybrid or optimize");
                Mode::Exclusive
            }
            None => {
                input.error(key, "is required");
                Mode::Exclusive
            }
        }
    }
}

/// A text choice with a default when left out: `values` names them for the error.
fn read_choice<T: FromStr + Default>(input: &mut Input<'_>, key: &str, values: &str) -> T {
    match input.value(key).map(|v| v.as_str().map(T::from_str)) {
        None => T::default(),
        Some(Some(Ok(value))) => value,
        Some(_) => {
            input.error(key, format!("must be {values}"));
            T::default()
        }
    }
}

/// `cascade`: `{"max_attempts", "deadline_ms"}`, each with its default when left out.
pub struct CascadeField;

impl Kind for CascadeField {
    type Row = Value;
    type View = CascadeRules;
    type Stored = Value;
    fn view(row: &Value) -> CascadeRules {
        CascadeRules::parse(row, "").unwrap_or_default()
    }
    fn read(input: &mut Input<'_>, key: &str) -> Value {
        let Some(value) = input.value(key) else {
            return CascadeRules::default().to_value();
        };
        match CascadeRules::parse(value, &format!("/{key}")) {
            Ok(rules) => rules.to_value(),
            Err(errors) => {
                input.push(errors);
                CascadeRules::default().to_value()
            }
        }
    }
}

/// `distribution`: `auction` (the default) or `waterfall`.
pub struct DistributionField;

impl Kind for DistributionField {
    type Row = String;
    type View = Distribution;
    type Stored = Distribution;
    fn view(row: &String) -> Distribution {
        // The column's CHECK allows only the two.
        Distribution::from_str(row).unwrap_or_default()
    }
    fn read(input: &mut Input<'_>, key: &str) -> Distribution {
        read_choice(input, key, "auction or waterfall")
    }
}

/// `strategy`: `price` (the default), `round_robin` or `weighted`.
pub struct StrategyField;

impl Kind for StrategyField {
    type Row = String;
    type View = Strategy;
    type Stored = Strategy;
    fn view(row: &String) -> Strategy {
        Strategy::from_str(row).unwrap_or_default()
    }
    fn read(input: &mut Input<'_>, key: &str) -> Strategy {
        read_choice(input, key, "price, round_robin or weighted")
    }
}

/// `return_policy`: `reverse_payout` (the default) or `exchange_absorbs`.
pub struct ReturnPolicyField;

impl Kind for ReturnPolicyField {
    type Row = String;
    type View = ReturnPolicy;
    type Stored = ReturnPolicy;
    fn view(row: &String) -> ReturnPolicy {
        // The column's CHECK allows only the two.
        ReturnPolicy::from_str(row).unwrap_or_default()
    }
    fn read(input: &mut Input<'_>, key: &str) -> ReturnPolicy {
        read_choice(input, key, "reverse_payout or exchange_absorbs")
    }
}

/// `require_consent`: the consent keys a post must carry, none when left out.
pub struct ConsentKeys;

impl Kind for ConsentKeys {
    type Row = Value;
    type View = Vec<String>;
    type Stored = Vec<String>;
    fn view(row: &Value) -> Vec<String> {
        serde_json::from_value(row.clone()).unwrap_or_default()
    }
    fn read(input: &mut Input<'_>, key: &str) -> Vec<String> {
        match input.value(key) {
            None => Vec::new(),
            Some(value) => {
                serde_json::from_value::<Vec<String>>(value.clone()).unwrap_or_else(|_| {
                    input.error(key, "must be a list of consent keys");
                    Vec::new()
                })
            }
        }
    }
}

/// `verification`: the consent verification steps (docs/verification.md), `[]` when left
/// out, stored as written; every answer shows their credentials masked.
pub struct VerificationSteps;

impl Kind for VerificationSteps {
    type Row = Value;
    type View = Value;
    type Stored = Value;
    fn view(row: &Value) -> Value {
        let mut steps = row.clone();
        if let Value::Array(items) = &mut steps {
            for step in items.iter_mut() {
                mask_step(step);
            }
        }
        steps
    }
    fn read(input: &mut Input<'_>, key: &str) -> Value {
        let Some(value) = input.value(key) else {
            return Value::Array(Vec::new());
        };
        let value = value.clone();
        if let Err(errors) = crate::verification::parse(&value, &format!("/{key}")) {
            input.push(errors);
        }
        value
    }
}

fn provider_of(step: &Value) -> Option<crate::verification::Provider> {
    step.get("type")?.as_str()?.parse().ok()
}

/// A step's credentials masked: its secret keys, and a hook's header values.
fn mask_step(step: &mut Value) {
    let Some(provider) = provider_of(step) else {
        return;
    };
    headers::mask_section(step);
    for key in crate::verification::secret_keys(provider) {
        if let Some(Value::String(text)) = step.get_mut(*key) {
            *text = headers::mask(text);
        }
    }
}

/// Puts back the stored credentials of masked values sent back: a step's masked secret keeps
/// the stored one of the same step (same place, same type); a hook's header keeps it only
/// while the hook's URL keeps its origin. Any other masked value is refused.
fn restore_steps(sent: &mut Value, stored: Option<&Value>) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let Value::Array(items) = sent else {
        return errors;
    };
    for (index, step) in items.iter_mut().enumerate() {
        let Some(provider) = provider_of(step) else {
            continue;
        };
        let kept = stored
            .and_then(|s| s.get(index))
            .filter(|s| provider_of(s) == Some(provider));
        let at = format!("/verification/{index}");
        errors.extend(headers::restore_section(step, kept, &at));
        for key in crate::verification::secret_keys(provider) {
            let Some(Value::String(text)) = step.get_mut(*key) else {
                continue;
            };
            if !text.starts_with(headers::MASK) {
                continue;
            }
            let secret = kept
                .and_then(|s| s.get(*key))
                .and_then(Value::as_str)
                .filter(|secret| headers::mask(secret) == *text);
            match secret {
                Some(secret) => *text = secret.to_owned(),
                None => errors.push(ConfigError::new(
                    format!("{at}/{key}"),
                    "is a masked value: send the credential again",
                )),
            }
        }
    }
    errors
}

/// The stored `verification` of the answer's hidden `stored_verification`.
pub fn stored_verification(row: &OfferRow) -> Value {
    row.verification.clone()
}

impl Resource for Offer {
    /// A verification hook's URL under the outbound address policy, as a contract's.
    async fn check_sent(state: &AppState, sent: &Map<String, Value>) -> Result<(), Problem> {
        outbound::check_verification_urls(state.http.policy(), sent).await
    }

    /// Masked credentials of `verification` keep the stored ones (a create has none to keep).
    fn restore(body: &mut Map<String, Value>, current: Option<&Offer>) -> Result<(), Problem> {
        let Some(sent) = body.get_mut("verification") else {
            return Ok(());
        };
        let errors = restore_steps(sent, current.map(|c| &c.stored_verification));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(invalid(errors))
        }
    }

    /// The offer's rules as the auction checks them, and its field schema.
    async fn check(
        conn: &mut PgConnection,
        tenant: Uuid,
        input: &mut Input<'_>,
        values: &OfferValues,
    ) -> Result<(), Problem> {
        super::suppression_lists::check_attached(conn, tenant, input, &values.suppression_list_ids)
            .await?;
        let rules = OfferRules {
            mode: values.mode,
            max_buyers: u32::try_from(values.max_buyers).unwrap_or(3),
            exclusive_floor: Money::from_cents(values.exclusive_floor_cents),
            dedup_days: u32::try_from(values.dedup_days).unwrap_or(0),
            require_consent: values.require_consent.clone(),
            distribution: values.distribution,
            strategy: values.strategy,
        };
        if let Err(errors) = rules.validate() {
            input.extend(errors);
        }
        if let Err(errors) = CompiledSchema::compile(&values.fields) {
            input.extend(errors);
        }
        Ok(())
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
