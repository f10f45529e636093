//! Sign-in with an admin key, the session cookie, CSRF and sign-out (docs/console.md).
//!
//! The session cookie `gavel_console` holds a random token (only its SHA-256 is stored) and is
//! `HttpOnly`, `SameSite=Strict`, `Path=/console`, `Secure` over https. Every form carries the
//! session's CSRF token (a hidden field, or the `X-CSRF-Token` header for htmx), checked on
//! every POST together with the `Origin` header when the browser sends one. The sign-in form,
//! before there is a session, is protected the same way by a short-lived cookie of its own
//! (double submit).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono_tz::Tz;
use maud::{Markup, html};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::admin::{Admin, AdminApi};
use super::{ConsoleError, view};
use crate::app::AppState;
use crate::config::SecureCookie;
use crate::keys;
use crate::store::console::{self as store, NewSession, Session};

const SESSION_COOKIE: &str = "gavel_console";
const SIGN_IN_COOKIE: &str = "gavel_console_sign_in";
const FLASH_COOKIE: &str = "gavel_console_flash";
/// The largest form the console reads.
const FORM_LIMIT: usize = 64 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
}

/// A signed-in request: its session, the admin API as its tenant sees it, and the tenant's
/// timezone and currency for what pages show.
#[derive(Clone)]
pub struct Console {
    pub session: Session,
    pub admin: Admin,
    pub timezone: Tz,
    /// A message left by the previous action (shown once, then cleared).
    pub flash: Option<String>,
    secure: bool,
}

impl Console {
    pub fn tenant(&self) -> uuid::Uuid {
        self.session.tenant_id
    }

    /// The hidden field every form of the session carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.session.csrf_token); }
    }

    /// A redirect after an action (303: the browser follows with a GET), with a message the
    /// next page shows once.
    pub fn done(&self, to: &str, message: &str) -> Response {
        let cookie = format!(
            "{FLASH_COOKIE}={}; Path=/console; Max-Age=60; HttpOnly; SameSite=Strict{}",
            view::url_encode(message),
            secure_attribute(self.secure)
        );
        (
            [(header::SET_COOKIE, cookie)],
            Redirect::to(&format!("/console{}", to.trim_start_matches("/console"))),
        )
            .into_response()
    }

    /// The header that clears the flash once shown.
    pub(super) fn clear_flash(&self) -> Option<String> {
        self.flash.as_ref().map(|_| {
            format!(
                "{FLASH_COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict{}",
                secure_attribute(self.secure)
            )
        })
    }
}

impl FromRequestParts<AppState> for Console {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ConsoleError> {
        if let Some(console) = parts.extensions.get::<Console>() {
            return Ok(console.clone());
        }
        let next = || ConsoleError::SignIn {
            next: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
        };
        let token = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(next)?;
        let session = store::find(&state.db, &keys::hash(&token))
            .await?
            .ok_or_else(next)?;
        let api = parts
            .extensions
            .get::<AdminApi>()
            .ok_or(ConsoleError::Internal)?;
        let console = Console {
            admin: Admin::new(api, session.tenant_id),
            timezone: session.timezone.parse().unwrap_or(Tz::UTC),
            flash: cookie(&parts.headers, FLASH_COOKIE).map(|text| view::url_decode(&text)),
            secure: is_secure(state, &parts.headers),
            session,
        };
        parts.extensions.insert(console.clone());
        Ok(console)
    }
}

/// A form of a signed-in page, its CSRF token checked: the session and the form's fields
/// (`T` ignores the `csrf` field).
pub struct CsrfForm<T> {
    pub console: Console,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ConsoleError> {
        let (mut parts, body) = request.into_parts();
        let console = Console::from_request_parts(&mut parts, state).await?;
        let bytes = read_form(&parts.headers, body).await?;
        let sent =
            form_field(&bytes, "csrf").or_else(|| header_text(&parts.headers, "x-csrf-token"));
        if !same_origin(state, &parts)
            || !sent.is_some_and(|sent| same_secret(&sent, &console.session.csrf_token))
        {
            return Err(ConsoleError::Forbidden);
        }
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|error| {
            ConsoleError::Api(super::ApiProblem {
                status: 400,
                code: "bad_request".into(),
                title: "The form is malformed".into(),
                detail: Some(error.to_string()),
                errors: Vec::new(),
            })
        })?;
        Ok(CsrfForm { console, form })
    }
}

async fn read_form(headers: &HeaderMap, body: axum::body::Body) -> Result<Bytes, ConsoleError> {
    let is_form = header_text(headers, header::CONTENT_TYPE.as_str())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let bytes = axum::body::to_bytes(body, FORM_LIMIT)
        .await
        .map_err(|_| ConsoleError::Forbidden)?;
    if !is_form && !bytes.is_empty() {
        return Err(ConsoleError::Forbidden);
    }
    Ok(bytes)
}

fn form_field(bytes: &[u8], name: &str) -> Option<String> {
    form_urlencoded(bytes)
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

fn form_urlencoded(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(bytes).unwrap_or_default()
}

/// Compares two secrets in time independent of where they differ (their hashes).
fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// A POST's `Origin`, when the browser sends one, names this console: a form of another site
/// is refused even before its token is checked. This console is the public URL's host when
/// it is set (a proxy may rewrite `Host`), else the host the request was sent to (a proxy's
/// `X-Forwarded-Host`, the request's authority, its `Host`).
fn same_origin(state: &AppState, parts: &Parts) -> bool {
    let Some(origin) = header_text(&parts.headers, header::ORIGIN.as_str()) else {
        return true;
    };
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_default();
    let public = state
        .settings
        .public_url
        .as_deref()
        .and_then(|url| url::Url::parse(url).ok())
        .and_then(|url| {
            let host = url.host_str()?.to_owned();
            Some(match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        });
    let hosts = [
        public,
        header_text(&parts.headers, "x-forwarded-host"),
        parts.uri.authority().map(|a| a.to_string()),
        header_text(&parts.headers, header::HOST.as_str()),
    ];
    hosts
        .into_iter()
        .flatten()
        .any(|host| !host.is_empty() && host.eq_ignore_ascii_case(&origin_host))
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty())
}

fn is_secure(state: &AppState, headers: &HeaderMap) -> bool {
    match state.settings.console_secure_cookie {
        SecureCookie::Always => true,
        SecureCookie::Never => false,
        SecureCookie::Auto => {
            state
                .settings
                .public_url
                .as_deref()
                .is_some_and(|url| url.starts_with("https://"))
                || header_text(headers, "x-forwarded-proto").is_some_and(|p| p == "https")
        }
    }
}

fn secure_attribute(secure: bool) -> &'static str {
    if secure { "; Secure" } else { "" }
}

fn random_token() -> String {
    keys::generate("")
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Where to go after signing in: a console page, never another site.
fn console_path(next: Option<&str>) -> String {
    console_page(
        next.filter(|path| !path.starts_with("/console/sign-")),
        "/console/today",
    )
}

/// `path` when it is a page of the console (never another site, nothing a `Location` header
/// cannot hold), else `default`: where a form returns to.
pub fn console_page(path: Option<&str>, default: &str) -> String {
    match path {
        Some(path)
            if path.starts_with("/console/")
                && !path.contains("//")
                && !path.contains('\\')
                && !path.chars().any(|c| c.is_control()) =>
        {
            path.to_owned()
        }
        _ => default.to_owned(),
    }
}

async fn sign_in_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Response {
    sign_in_form(
        &state,
        &headers,
        StatusCode::OK,
        &console_path(query.next.as_deref()),
        None,
    )
}

/// The sign-in page, with a fresh sign-in token in its cookie and its form.
fn sign_in_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    error: Option<&str>,
) -> Response {
    let token = random_token();
    let cookie = format!(
        "{SIGN_IN_COOKIE}={token}; Path=/console; Max-Age=3600; HttpOnly; SameSite=Strict{}",
        secure_attribute(is_secure(state, headers))
    );
    let body = view::sign_in_page(&token, next, error);
    (status, [(header::SET_COOKIE, cookie)], body).into_response()
}

#[derive(Deserialize)]
struct SignIn {
    key: String,
    csrf: String,
    next: Option<String>,
}

async fn sign_in(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ConsoleError> {
    let (parts, body) = request.into_parts();
    let bytes = read_form(&parts.headers, body).await?;
    let form: SignIn = serde_urlencoded::from_bytes(&bytes).map_err(|_| ConsoleError::Forbidden)?;
    let expected = cookie(&parts.headers, SIGN_IN_COOKIE);
    if !same_origin(&state, &parts) || !expected.is_some_and(|t| same_secret(&t, &form.csrf)) {
        return Err(ConsoleError::Forbidden);
    }
    let next = console_path(form.next.as_deref());
    let key_hash = keys::hash(form.key.trim());
    let tenant = state
        .config
        .admin_tenant(&key_hash)
        .await
        .map_err(ConsoleError::from)?;
    let Some(tenant_id) = tenant else {
        return Ok(sign_in_form(
            &state,
            &parts.headers,
            StatusCode::UNAUTHORIZED,
            &next,
            Some("That is not an admin key of this Gavel (or it was revoked)."),
        ));
    };
    let token = random_token();
    let hours = state.settings.console_session_hours;
    store::open(
        &state.db,
        NewSession {
            tenant_id,
            token_hash: &keys::hash(&token),
            key_hash: &key_hash,
            csrf_token: &random_token(),
            expires_at: chrono::Utc::now() + chrono::Duration::hours(i64::from(hours)),
        },
    )
    .await?;
    let secure = secure_attribute(is_secure(&state, &parts.headers));
    let session = format!(
        "{SESSION_COOKIE}={token}; Path=/console; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        u64::from(hours) * 3600
    );
    let clear =
        format!("{SIGN_IN_COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict{secure}");
    let mut response = Redirect::to(&next).into_response();
    let headers = response.headers_mut();
    for cookie in [session, clear] {
        if let Ok(value) = cookie.parse() {
            headers.append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

#[derive(Deserialize)]
struct SignOut {}

async fn sign_out(
    State(state): State<AppState>,
    CsrfForm { console, .. }: CsrfForm<SignOut>,
) -> Result<Response, ConsoleError> {
    store::close(&state.db, console.tenant(), console.session.id).await?;
    let clear = format!(
        "{SESSION_COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict{}",
        secure_attribute(console.secure)
    );
    Ok((
        [(header::SET_COOKIE, clear)],
        Redirect::to("/console/sign-in"),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_returns_to_a_console_page_only() {
        let to = |path| console_page(Some(path), "/console/today");
        assert_eq!(to("/console/contracts/1"), "/console/contracts/1");
        for elsewhere in [
            "https://evil.example/console/",
            "//evil.example",
            "/console//evil.example",
            "/console/\\evil",
            "/console/x\ny",
            "/consolex",
            "",
        ] {
            assert_eq!(to(elsewhere), "/console/today", "{elsewhere:?}");
        }
        assert_eq!(console_path(Some("/console/sign-out")), "/console/today");
        assert_eq!(console_path(None), "/console/today");
    }
}
