//! The operator console at `/console` (docs/console.md): server-rendered HTML (maud), served
//! by Gavel itself, with htmx vendored as a static file for small enhancements. Every page
//! works without JavaScript.
//!
//! - `session`: sign-in with an admin key, the session cookie, CSRF, sign-out.
//! - `admin`: the console's in-process client of the admin API: what a page shows and what
//!   an action does is the admin API's answer, for the session's tenant.
//! - `view`: the layout and the small parts every page uses (money, times in the tenant's
//!   timezone, tables, badges, bars).
//! - `pages`: one module per section (Today, Auctions, Contracts and buyers, Partners and
//!   campaigns, Reports).

pub mod admin;
mod pages;
pub mod session;
pub mod view;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::app::AppState;
pub use admin::{Admin, AdminApi, Amount, ApiProblem};
pub use session::{Console, CsrfForm};
pub use view::Page;

/// Every console route. `api` is the admin API's router with its state (see `admin`).
pub fn router(api: AdminApi) -> Router<AppState> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/today") }))
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/today") }),
        )
        .route("/console/static/htmx.min.js", get(htmx))
        .route("/console/static/console.css", get(stylesheet))
        .merge(session::routes())
        .merge(pages::routes())
        // Any other console path: the console's own Not found page, not the API's JSON.
        .route("/console/{*rest}", get(|| async { ConsoleError::NotFound }))
        .layer(axum::middleware::from_fn(protective_headers))
        .layer(axum::Extension(api))
}

/// htmx 2.0.11 (BSD-2-Clause), vendored: the console needs no CDN.
const HTMX: &str = include_str!("static/htmx-2.0.11.min.js");
const STYLESHEET: &str = include_str!("static/console.css");

async fn htmx() -> Response {
    static_file("text/javascript; charset=utf-8", HTMX)
}

async fn stylesheet() -> Response {
    static_file("text/css; charset=utf-8", STYLESHEET)
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The console's pages hold the tenant's data: never cached, never framed, scripts and
/// styles from Gavel only (no inline script or style, so an injected one does not run).
async fn protective_headers(request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/console/static/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    if !is_static {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "same-origin");
    response
}

/// What a console request can end in besides its page.
#[derive(Debug)]
pub enum ConsoleError {
    /// No live session: to the sign-in page, then back.
    SignIn {
        next: String,
    },
    /// A form without the session's CSRF token (or from another origin).
    Forbidden,
    NotFound,
    /// The admin API refused (its problem is shown as it is).
    Api(ApiProblem),
    /// The database is unavailable: try again.
    Unavailable,
    Internal,
}

impl From<sqlx::Error> for ConsoleError {
    fn from(error: sqlx::Error) -> Self {
        if crate::store::is_unavailable(&error) {
            ConsoleError::Unavailable
        } else {
            tracing::error!(%error, "console: database error");
            ConsoleError::Internal
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, detail) = match self {
            ConsoleError::SignIn { next } => {
                let to = format!("/console/sign-in?next={}", view::url_encode(&next));
                return Redirect::to(&to).into_response();
            }
            ConsoleError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Forbidden".to_owned(),
                "The form was not sent from this console's page (its CSRF token is missing or \
                 stale). Reload the page and try again."
                    .to_owned(),
            ),
            ConsoleError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found".to_owned(),
                "There is no such page, or it belongs to another tenant.".to_owned(),
            ),
            ConsoleError::Api(problem) => (
                StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST),
                problem.title.clone(),
                view::problem_text(&problem),
            ),
            ConsoleError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable".to_owned(),
                "The database is unavailable at the moment. Try again shortly.".to_owned(),
            ),
            ConsoleError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong".to_owned(),
                "The console could not show this page. The server's log says why.".to_owned(),
            ),
        };
        (status, view::error_page(&title, &detail)).into_response()
    }
}
