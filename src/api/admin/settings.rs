//! The tenant's own settings: the failing-buyer breaker's (docs/revenue-recovery.md §5) and
//! how long posted leads' PII is kept (docs/pii.md#retention-and-erasure).
//! `PATCH` merges what it sends into the current settings, validates the result (a 422
//! `invalid_config` with the pointer of each broken rule) and answers once this process's
//! configuration snapshot has it.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::api::Problem;
use crate::api::extract::{AdminTenant, JsonObject};
use crate::app::AppState;
use crate::auction::ConfigError;
use crate::buyers::breaker::BreakerSettings;
use crate::store::settings;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings, update_settings))
        .route_layer(axum::middleware::from_fn(
            crate::api::extract::read_your_writes,
        ))
}

/// The tenant's settings.
#[derive(Serialize, ToSchema)]
pub struct Settings {
    /// The failing-buyer breaker, per contract and endpoint, in each Gavel process.
    breaker: BreakerSettings,
    /// Days a posted lead's PII is kept (1 to 3650), then erased by a job that runs every
    /// minute (its non-PII fields, sales and money stay); `null`: kept until erased.
    pii_retention_days: Option<u32>,
}

/// The keys of `breaker`, each with its range.
const RANGES: [(&str, u32, u32); 3] = [
    ("failures", 1, 100),
    ("window_ms", 100, 3_600_000),
    ("cooldown_ms", 100, 3_600_000),
];

async fn current(state: &AppState, tenant: Uuid) -> Result<BreakerSettings, Problem> {
    settings::breaker(&state.db, tenant)
        .await?
        .ok_or_else(Problem::not_found)
}

/// The tenant's settings.
#[utoipa::path(get, path = "/v1/admin/settings", tag = "settings",
    responses((status = 200, body = Settings)))]
async fn get_settings(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
) -> Result<Json<Settings>, Problem> {
    Ok(Json(Settings {
        breaker: current(&state, tenant).await?,
        pii_retention_days: retention(&state, tenant).await?,
    }))
}

async fn retention(state: &AppState, tenant: Uuid) -> Result<Option<u32>, Problem> {
    let days = crate::store::pii::retention_days(&state.db, tenant).await?;
    Ok(days.and_then(|d| u32::try_from(d).ok()))
}

/// Changes some of the tenant's settings: `{"breaker": {"failures": 3}}` changes that one.
#[utoipa::path(patch, path = "/v1/admin/settings", tag = "settings",
    request_body(content = Settings, description = "Any subset; the merged result is validated"),
    responses((status = 200, body = Settings)))]
async fn update_settings(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    JsonObject(body): JsonObject,
) -> Result<Json<Settings>, Problem> {
    let mut breaker = current(&state, tenant).await?;
    let mut pii_retention_days = retention(&state, tenant).await?;
    read(&body, &mut breaker, &mut pii_retention_days).map_err(Problem::invalid_config)?;
    // Both or neither.
    let mut tx = state.db.begin().await?;
    settings::set_breaker(&mut *tx, tenant, &breaker).await?;
    crate::store::pii::set_retention_days(
        &mut *tx,
        tenant,
        pii_retention_days.and_then(|d| i32::try_from(d).ok()),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(Settings {
        breaker,
        pii_retention_days,
    }))
}

/// Reads a PATCH body into `breaker`; every broken rule with its pointer.
fn read(
    body: &Map<String, Value>,
    breaker: &mut BreakerSettings,
    pii_retention_days: &mut Option<u32>,
) -> Result<(), Vec<ConfigError>> {
    let mut errors = Vec::new();
    match body.get("pii_retention_days") {
        None => {}
        Some(Value::Null) => *pii_retention_days = None,
        Some(value) => match within(value, 1, 3650) {
            Some(days) => *pii_retention_days = Some(days),
            None => errors.push(ConfigError::new(
                "/pii_retention_days",
                "must be an integer from 1 to 3650, or null",
            )),
        },
    }
    for key in body
        .keys()
        .filter(|key| *key != "breaker" && *key != "pii_retention_days")
    {
        errors.push(ConfigError::new(
            format!("/{}", crate::auction::pointer_token(key)),
            "unknown setting",
        ));
    }
    let patch = match body.get("breaker") {
        None => return finish(errors),
        Some(Value::Object(patch)) => patch,
        Some(_) => {
            errors.push(ConfigError::new("/breaker", "must be an object"));
            return finish(errors);
        }
    };
    for (key, value) in patch {
        let at = format!("/breaker/{}", crate::auction::pointer_token(key));
        let Some(&(_, min, max)) = RANGES.iter().find(|(name, ..)| name == key) else {
            errors.push(ConfigError::new(at, "unknown setting"));
            continue;
        };
        let Some(n) = within(value, min, max) else {
            errors.push(ConfigError::new(
                at,
                format!("must be an integer from {min} to {max}"),
            ));
            continue;
        };
        match key.as_str() {
            "failures" => breaker.failures = n,
            "window_ms" => breaker.window_ms = n,
            _ => breaker.cooldown_ms = n,
        }
    }
    finish(errors)
}

fn within(value: &Value, min: u32, max: u32) -> Option<u32> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (min..=max).contains(n))
}

fn finish(errors: Vec<ConfigError>) -> Result<(), Vec<ConfigError>> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patched(body: Value) -> Result<BreakerSettings, Vec<String>> {
        let Value::Object(body) = body else {
            unreachable!()
        };
        let mut breaker = BreakerSettings::default();
        read(&body, &mut breaker, &mut None)
            .map(|()| breaker)
            .map_err(|errors| {
                let mut pointers: Vec<String> = errors.into_iter().map(|e| e.pointer).collect();
                pointers.sort();
                pointers
            })
    }

    #[test]
    fn a_patch_changes_what_it_sends_and_points_at_each_broken_rule() {
        let changed = patched(json!({ "breaker": { "failures": 2, "cooldown_ms": 900 } }));
        assert_eq!(
            changed,
            Ok(BreakerSettings {
                failures: 2,
                cooldown_ms: 900,
                ..BreakerSettings::default()
            })
        );
        assert_eq!(patched(json!({})), Ok(BreakerSettings::default()));
        assert_eq!(
            patched(
                json!({ "breaker": { "failures": 0, "window_ms": 1.5, "cooldown_ms": "9",
                "other": 1 }, "x": 1 })
            ),
            Err(vec![
                "/breaker/cooldown_ms".to_owned(),
                "/breaker/failures".to_owned(),
                "/breaker/other".to_owned(),
                "/breaker/window_ms".to_owned(),
                "/x".to_owned(),
            ])
        );
        assert_eq!(
            patched(json!({ "breaker": [] })),
            Err(vec!["/breaker".to_owned()])
        );
    }
}
