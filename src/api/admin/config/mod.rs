//! The tenant's configuration (SPEC §4): partners, buyers, offers, campaigns and contracts.
//!
//! Every resource follows the same steps, written once here and generic over [`Resource`]: read
//! the body into stored values (collecting every broken rule, checked by the same compile
//! functions the auction uses), then write, scoped by the tenant. A `PATCH` validates the
//! resource as it would be after the patch. `DELETE` archives: the row stays for the history
//! that points at it. Running servers pick a change up through the configuration tables' NOTIFY
//! triggers, as they do for SQL edits; this process answers a write once its own snapshot
//! includes it (`extract::read_your_writes`).
//!
//! A resource is declared once, in `crate::resources` (its row, table, answer, stored values,
//! writable fields and their reading); its module here holds its [`Resource`] hooks (checks
//! across fields or against other rows, the kinds of its special fields) and one
//! [`resource_routes!`] naming its routes (see `docs/admin-resources.md`).

pub(crate) mod buyers;
pub(crate) mod campaigns;
pub(crate) mod contracts;
pub(crate) mod offers;
pub(crate) mod partners;
pub(crate) mod suppression_lists;

use std::future::Future;

use serde_json::{Map, Value};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::input::{Input, merged};
use super::{PageQuery, page, parse_id};
use crate::api::Problem;
use crate::app::AppState;
use crate::auction::ConfigError;
use crate::resources::Declared;
use crate::store::admin::{self as store, Lock, Table};

pub use buyers::find_buyer;
pub use partners::find_partner;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(partners::router())
        .merge(buyers::router())
        .merge(offers::router())
        .merge(campaigns::router())
        .merge(contracts::router())
        .merge(suppression_lists::router())
        .route_layer(axum::middleware::from_fn(
            crate::api::extract::read_your_writes,
        ))
}

/// A configuration resource of the admin API: its declaration (`crate::resources`), the answer
/// type, with the hooks of its checks.
pub trait Resource: Declared + 'static {
    /// Checks of the values read (`Declared::read_fields`) across fields or against other rows
    /// (a reference's row must be the tenant's), each broken rule noted in `input` with its
    /// pointer (the caller answers 422 with all of them); `Err` only for a failure of ours.
    fn check(
        _conn: &mut PgConnection,
        _tenant: Uuid,
        _input: &mut Input<'_>,
        _values: &Self::Values,
    ) -> impl Future<Output = Result<(), Problem>> + Send {
        async { Ok(()) }
    }

    /// Checks of what a create or a patch sends that need no transaction (name resolution),
    /// made before one opens so that no row lock waits for them.
    fn check_sent(
        _state: &AppState,
        _sent: &Map<String, Value>,
    ) -> impl Future<Output = Result<(), Problem>> + Send {
        async { Ok(()) }
    }

    /// Puts back what an answer masks, before the body is read: a create's body (`None`) or a
    /// PATCH's merged body with the current resource.
    fn restore(_body: &mut Map<String, Value>, _current: Option<&Self>) -> Result<(), Problem> {
        Ok(())
    }

    /// Checks a PATCH's values against other rows before they are written.
    fn check_update(
        _conn: &mut PgConnection,
        _tenant: Uuid,
        _id: Uuid,
        _values: &Self::Values,
    ) -> impl Future<Output = Result<(), Problem>> + Send {
        async { Ok(()) }
    }

    /// Adds to an answer what is not in its row (a contract's `endpoint_health`, this
    /// process's view of its buyer's endpoints).
    fn answered(self, _state: &AppState, _tenant: Uuid) -> Self {
        self
    }

    /// The answer to a failed write; a resource answers 422 for the constraints a body can
    /// break (an offer's unique name).
    fn write_error(error: sqlx::Error) -> Problem {
        error.into()
    }
}

fn invalid(errors: Vec<ConfigError>) -> Problem {
    Problem::invalid_config(errors)
}

/// The resource, locked against other writers for a write (`Lock::ForWrite`).
async fn find<R: Resource>(conn: &mut PgConnection, tenant: Uuid, id: Uuid) -> Result<R, Problem> {
    load::<R>(conn, tenant, id, Lock::ForWrite).await
}

async fn load<R: Resource>(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    lock: Lock,
) -> Result<R, Problem> {
    store::load::<R::Table>(conn, tenant, id, lock)
        .await?
        .map(R::from)
        .ok_or_else(Problem::not_found)
}

/// Reads a body: its keys must be writable fields, its values sound, the rows it refers to
/// the tenant's.
async fn read<R: Resource>(
    conn: &mut PgConnection,
    tenant: Uuid,
    body: &Map<String, Value>,
) -> Result<R::Values, Problem> {
    let mut input = Input::new(body, R::FIELDS);
    let values = R::read_fields(&mut input);
    for (key, table, id) in R::references(&values) {
        if !id.is_nil() && !store::exists_in(conn, table, tenant, id).await? {
            let noun = key.strip_suffix("_id").unwrap_or(key);
            input.error(key, format!("no such {noun}"));
        }
    }
    R::check(conn, tenant, &mut input, &values).await?;
    input.finish().map_err(invalid)?;
    Ok(values)
}

/// Stored values as the one `jsonb` value the store writes. A create writes exactly the
/// written and created columns of the declaration (`crate::resources`), a patch exactly the
/// written ones: a value the table does not declare would be dropped, a declared one left out
/// written as NULL, without a word. Both lists come from the same declaration (a field of
/// several columns names those it writes), and the extra columns of a create from its handler,
/// so a mismatch is refused in every build, not only in tests.
#[derive(Clone, Copy, PartialEq)]
enum Write {
    Create,
    Patch,
}

fn stored<R: Resource>(
    values: &R::Values,
    extra: Map<String, Value>,
    write: Write,
) -> Result<Value, Problem> {
    let mut object = match serde_json::to_value(values) {
        Ok(Value::Object(object)) => object,
        other => {
            return Err(crate::Error::Fault(format!(
                "the values of {} are not an object: {other:?}",
                R::Table::NAME
            ))
            .into());
        }
    };
    object.extend(extra);
    let expected = R::Table::WRITTEN.iter().chain(if write == Write::Create {
        R::Table::CREATED
    } else {
        &[]
    });
    let declared = object.len() == expected.clone().count()
        && expected.clone().all(|column| object.contains_key(*column));
    if !declared {
        return Err(crate::Error::Fault(format!(
            "the values of {} are not the written columns of its declaration (crate::resources): {:?}",
            R::Table::NAME,
            object.keys().collect::<Vec<_>>()
        ))
        .into());
    }
    Ok(Value::Object(object))
}

/// One page of the tenant's resources, oldest first, and the next page's cursor.
async fn list<R: Resource>(
    state: &AppState,
    tenant: Uuid,
    query: &PageQuery,
) -> Result<(Vec<R>, Option<String>), Problem> {
    let request = query.read()?;
    let rows = store::list::<R::Table>(&state.db, tenant, request.after, request.limit + 1).await?;
    let (rows, next_cursor) = page(rows, request.limit, R::Table::id);
    let answered = |row| R::from(row).answered(state, tenant);
    Ok((rows.into_iter().map(answered).collect(), next_cursor))
}

/// Creates a resource; `created` holds columns only a create writes.
async fn create<R: Resource>(
    state: &AppState,
    tenant: Uuid,
    mut body: Map<String, Value>,
    created: Map<String, Value>,
) -> Result<R, Problem> {
    R::restore(&mut body, None)?;
    R::check_sent(state, &body).await?;
    let mut tx = state.db.begin().await?;
    let values = read::<R>(&mut tx, tenant, &body).await?;
    let row = store::insert::<R::Table>(
        &mut tx,
        tenant,
        Uuid::now_v7(),
        &stored::<R>(&values, created, Write::Create)?,
    )
    .await
    .map_err(R::write_error)?;
    tx.commit().await?;
    Ok(R::from(row).answered(state, tenant))
}

async fn get<R: Resource>(state: &AppState, tenant: Uuid, id: &str) -> Result<R, Problem> {
    let mut conn = state.db.acquire().await?;
    let found = load::<R>(&mut conn, tenant, parse_id(id)?, Lock::None).await?;
    Ok(found.answered(state, tenant))
}

async fn update<R: Resource>(
    state: &AppState,
    tenant: Uuid,
    id: &str,
    patch: Map<String, Value>,
) -> Result<R, Problem> {
    let id = parse_id(id)?;
    R::check_sent(state, &patch).await?;
    let mut tx = state.db.begin().await?;
    let current = find::<R>(&mut tx, tenant, id).await?;
    let mut body = merged(&current, patch, R::FIELDS, R::nullable)?;
    R::restore(&mut body, Some(&current))?;
    let values = read::<R>(&mut tx, tenant, &body).await?;
    R::check_update(&mut tx, tenant, id, &values).await?;
    let row = store::update::<R::Table>(
        &mut tx,
        tenant,
        id,
        &stored::<R>(&values, Map::new(), Write::Patch)?,
    )
    .await
    .map_err(R::write_error)?;
    tx.commit().await?;
    Ok(R::from(row).answered(state, tenant))
}

async fn archive<R: Resource>(state: &AppState, tenant: Uuid, id: &str) -> Result<R, Problem> {
    store::archive::<R::Table>(&state.db, tenant, parse_id(id)?)
        .await?
        .map(|row| R::from(row).answered(state, tenant))
        .ok_or_else(Problem::not_found)
}

/// The routes of a resource, each with its OpenAPI operation: the handlers are thin, named
/// (their names are the operation ids) and documented per resource; the work is the generic
/// functions above. `create` may be left out for a resource that answers a create its own way.
macro_rules! resource_routes {
    (
        resource = $resource:ty, view = $view:ident, page = $page:ident, tag = $tag:literal,
        collection = $collection:literal, item = $item:literal,
        $(#[$list_doc:meta])* list = $list:ident,
        $(create = $(#[$create_doc:meta])* $create:ident,)?
        $(#[$get_doc:meta])* get = $get:ident,
        $(#[$update_doc:meta])* update = $update:ident,
        $(#[$archive_doc:meta])* archive = $archive:ident $(,)?
    ) => {
        /// One page of a list; pass `next_cursor` as `cursor` for the next (null: the last page).
        #[derive(serde::Serialize, utoipa::ToSchema)]
        pub struct $page {
            items: Vec<$view>,
            next_cursor: Option<String>,
        }

        fn resource_router() -> utoipa_axum::router::OpenApiRouter<crate::app::AppState> {
            utoipa_axum::router::OpenApiRouter::new()
                .routes(utoipa_axum::routes!($list $(, $create)?))
                .routes(utoipa_axum::routes!($get, $update, $archive))
        }

        $(#[$list_doc])*
        #[utoipa::path(get, path = $collection, tag = $tag, params(crate::api::admin::PageQuery),
            responses((status = 200, body = $page)))]
        async fn $list(
            axum::extract::State(state): axum::extract::State<crate::app::AppState>,
            crate::api::extract::AdminTenant(tenant): crate::api::extract::AdminTenant,
            axum::extract::Query(query): axum::extract::Query<crate::api::admin::PageQuery>,
        ) -> Result<axum::Json<$page>, crate::api::Problem> {
            let (items, next_cursor) = super::list::<$resource>(&state, tenant, &query).await?;
            Ok(axum::Json($page { items, next_cursor }))
        }

        $(
            $(#[$create_doc])*
            #[utoipa::path(post, path = $collection, tag = $tag,
                request_body = $view, responses((status = 201, body = $view)))]
            async fn $create(
                axum::extract::State(state): axum::extract::State<crate::app::AppState>,
                crate::api::extract::AdminTenant(tenant): crate::api::extract::AdminTenant,
                crate::api::extract::JsonObject(body): crate::api::extract::JsonObject,
            ) -> Result<(axum::http::StatusCode, axum::Json<$view>), crate::api::Problem> {
                let created =
                    super::create::<$resource>(&state, tenant, body, serde_json::Map::new()).await?;
                Ok((axum::http::StatusCode::CREATED, axum::Json(created)))
            }
        )?

        $(#[$get_doc])*
        #[utoipa::path(get, path = $item, tag = $tag,
            params(("id" = Uuid, Path)), responses((status = 200, body = $view)))]
        async fn $get(
            axum::extract::State(state): axum::extract::State<crate::app::AppState>,
            crate::api::extract::AdminTenant(tenant): crate::api::extract::AdminTenant,
            axum::extract::Path(id): axum::extract::Path<String>,
        ) -> Result<axum::Json<$view>, crate::api::Problem> {
            Ok(axum::Json(super::get::<$resource>(&state, tenant, &id).await?))
        }

        $(#[$update_doc])*
        #[utoipa::path(patch, path = $item, tag = $tag,
            params(("id" = Uuid, Path)),
            request_body(content = $view, description = "Any subset of the writable fields; the merged result is validated"),
            responses((status = 200, body = $view)))]
        async fn $update(
            axum::extract::State(state): axum::extract::State<crate::app::AppState>,
            crate::api::extract::AdminTenant(tenant): crate::api::extract::AdminTenant,
            axum::extract::Path(id): axum::extract::Path<String>,
            crate::api::extract::JsonObject(patch): crate::api::extract::JsonObject,
        ) -> Result<axum::Json<$view>, crate::api::Problem> {
            Ok(axum::Json(super::update::<$resource>(&state, tenant, &id, patch).await?))
        }

        $(#[$archive_doc])*
        #[utoipa::path(delete, path = $item, tag = $tag,
            params(("id" = Uuid, Path)), responses((status = 200, body = $view)))]
        async fn $archive(
            axum::extract::State(state): axum::extract::State<crate::app::AppState>,
            crate::api::extract::AdminTenant(tenant): crate::api::extract::AdminTenant,
            axum::extract::Path(id): axum::extract::Path<String>,
        ) -> Result<axum::Json<$view>, crate::api::Problem> {
            Ok(axum::Json(super::archive::<$resource>(&state, tenant, &id).await?))
        }
    };
}
use resource_routes;
