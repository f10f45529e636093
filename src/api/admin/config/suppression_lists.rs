//! Suppression lists (declared in `crate::resources::suppression_lists`; docs/suppression.md):
//! the generic routes, the entries' uploads (a JSON batch or a CSV file, in batches of up to
//! 100,000), and the check that the lists an offer or a contract names are the tenant's.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::Resource;
use crate::api::admin::input::Input;
use crate::api::admin::parse_id;
use crate::api::extract::{AdminTenant, JsonObject};
use crate::api::{ErrorCode, FieldError, Problem};
use crate::app::AppState;
use crate::auction::ConfigError;
use crate::resources::suppression_lists::{SuppressionList, SuppressionLists};
use crate::store::suppression::{self, Changed};
use crate::suppression::{BadEntries, from_csv, from_json};

/// An upload's body limit: 100,000 CSV rows of a hash each, with room.
const UPLOAD_LIMIT_BYTES: usize = 8 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    resource_router().merge(
        OpenApiRouter::new()
            .routes(routes!(add_entries, remove_entries))
            .routes(routes!(look_up_entries))
            .layer(DefaultBodyLimit::max(UPLOAD_LIMIT_BYTES)),
    )
}

impl Resource for SuppressionList {}

/// Notes an error for each of `ids` (an offer's or a contract's `suppression_list_ids`) that is
/// not one of the tenant's lists. An archived list may stay attached: it suppresses no more
/// (a PATCH of the offer for another field must not fail on it).
pub async fn check_attached(
    conn: &mut PgConnection,
    tenant: Uuid,
    input: &mut Input<'_>,
    ids: &[Uuid],
) -> Result<(), Problem> {
    if ids.is_empty() {
        return Ok(());
    }
    let found = suppression::existing(conn, tenant, ids).await?;
    for (n, id) in ids.iter().enumerate() {
        if !found.contains(id) {
            input.push(vec![ConfigError::new(
                format!("/suppression_list_ids/{n}"),
                "no such suppression list",
            )]);
        }
    }
    Ok(())
}

/// What a batch of entries did to the list.
#[derive(Serialize, ToSchema)]
pub struct EntriesChanged {
    /// Distinct consumers the batch named.
    received: usize,
    /// Entries added (removed) by it: those already on (absent from) the list are not counted.
    changed: i64,
    /// The list's entries now.
    entry_count: i64,
}

impl From<BadEntries> for Problem {
    fn from(bad: BadEntries) -> Problem {
        let errors = bad
            .pointers
            .into_iter()
            .map(|pointer| FieldError {
                pointer,
                code: ErrorCode::InvalidField,
            })
            .collect();
        Problem::new(ErrorCode::InvalidField)
            .detail(bad.message)
            .with_errors(errors)
    }
}

/// The hashes a request names: a JSON batch, or a CSV file (`text/csv`).
async fn read_entries(request: Request) -> Result<Vec<[u8; 32]>, Problem> {
    let csv = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().to_ascii_lowercase().starts_with("text/csv"));
    if csv {
        let bytes = Bytes::from_request(request, &())
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::new(ErrorCode::PayloadTooLarge)
                        .detail("at most 8 MiB per request: send batches")
                } else {
                    Problem::new(ErrorCode::MalformedJson).detail("the body could not be read")
                }
            })?;
        return Ok(from_csv(&bytes)?);
    }
    let JsonObject(body) = JsonObject::from_request(request, &()).await?;
    Ok(from_json(&body)?)
}

/// How many of a batch's consumers a list holds.
#[derive(Serialize, ToSchema)]
pub struct EntriesFound {
    /// Distinct consumers the batch named.
    checked: usize,
    /// How many of them are on the list.
    listed: i64,
}

/// The list, if it is the tenant's (another tenant's is not found, whatever the body).
async fn own_list(state: &AppState, tenant: Uuid, id: &str) -> Result<Uuid, Problem> {
    let list_id = parse_id(id)?;
    let mut conn = state.db.acquire().await?;
    if !crate::store::admin::exists::<SuppressionLists>(&mut conn, tenant, list_id).await? {
        return Err(Problem::not_found());
    }
    Ok(list_id)
}

async fn change_entries(
    state: &AppState,
    tenant: Uuid,
    id: &str,
    request: Request,
    add: bool,
) -> Result<Json<EntriesChanged>, Problem> {
    let list_id = own_list(state, tenant, id).await?;
    let hashes = read_entries(request).await?;
    let changed = if add {
        suppression::add(&state.db, tenant, list_id, &hashes).await?
    } else {
        suppression::remove(&state.db, tenant, list_id, &hashes).await?
    };
    let Changed {
        changed,
        entry_count,
    } = changed.ok_or_else(Problem::not_found)?;
    Ok(Json(EntriesChanged {
        received: hashes.len(),
        changed,
        entry_count,
    }))
}

/// Adds consumers to the list: a JSON batch `{"hashes": […], "emails": […], "phones": […]}`
/// (SHA-256 in hex of the normalized email or phone, or the values themselves, hashed here
/// and never kept), or a CSV file (`Content-Type: text/csv`) whose header names its `email`,
/// `phone` or `hash` columns. At most 100,000 entries and 8 MiB per request; a bad value
/// refuses the whole batch (422, its pointer: `/emails/3`, or `/rows/12/phone` for a CSV).
#[utoipa::path(post, path = "/v1/admin/suppression-lists/{id}/entries", tag = "suppression",
    params(("id" = Uuid, Path)),
    request_body(content((Object = "application/json"), (String = "text/csv"))),
    responses((status = 200, body = EntriesChanged)))]
async fn add_entries(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    request: Request,
) -> Result<Json<EntriesChanged>, Problem> {
    change_entries(&state, tenant, &id, request, true).await
}

/// Removes consumers from the list: the same bodies as the upload.
#[utoipa::path(delete, path = "/v1/admin/suppression-lists/{id}/entries", tag = "suppression",
    params(("id" = Uuid, Path)),
    request_body(content((Object = "application/json"), (String = "text/csv"))),
    responses((status = 200, body = EntriesChanged)))]
async fn remove_entries(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    request: Request,
) -> Result<Json<EntriesChanged>, Problem> {
    change_entries(&state, tenant, &id, request, false).await
}

/// Whether consumers are on the list (a consumer's request, an audit): the same bodies as the
/// upload; answers how many of them the list holds. Nothing is written or logged.
#[utoipa::path(post, path = "/v1/admin/suppression-lists/{id}/lookup", tag = "suppression",
    params(("id" = Uuid, Path)),
    request_body(content((Object = "application/json"), (String = "text/csv"))),
    responses((status = 200, body = EntriesFound)))]
async fn look_up_entries(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    request: Request,
) -> Result<Json<EntriesFound>, Problem> {
    let list_id = own_list(&state, tenant, &id).await?;
    let hashes = read_entries(request).await?;
    let listed = suppression::count_listed(&state.db, tenant, list_id, &hashes).await?;
    Ok(Json(EntriesFound {
        checked: hashes.len(),
        listed,
    }))
}

super::resource_routes! {
    resource = SuppressionList, view = SuppressionList, page = SuppressionListPage,
    tag = "suppression",
    collection = "/v1/admin/suppression-lists", item = "/v1/admin/suppression-lists/{id}",
    /// The tenant's suppression lists, oldest first.
    list = list_suppression_lists,
    create = create_suppression_list,
    get = get_suppression_list,
    update = update_suppression_list,
    /// Archives the list: it suppresses no more (its entries stay).
    archive = archive_suppression_list,
}
