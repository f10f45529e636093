//! The OpenAPI 3.1 document, built from the same registration as the router (every route is
//! added with `utoipa_axum::routes!` from its handler's `#[utoipa::path]`), so the two cannot
//! drift. What is common to whole groups of routes (security, error answers) is added here
//! once, by path.

use std::sync::Arc;

use axum::Extension;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

use crate::api::ErrorCode;
use crate::api::problem::{FieldError, ProblemBody};

/// The security scheme of the partner routes: a campaign's posting key (also accepted as
/// the body field `posting_key`).
pub const POSTING_KEY: &str = "posting_key";
/// The security scheme of the admin routes: a tenant's admin key.
pub const ADMIN_KEY: &str = "admin_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gavel",
        description = "Multi-tenant ping/post lead auction server. Errors are \
            application/problem+json (RFC 9457) with a stable `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(ProblemBody, ErrorCode, FieldError)),
    tags(
        (name = "partner", description = "Partner API (SPEC §2), authenticated by a posting key"),
        (name = "partners"), (name = "buyers"), (name = "offers"), (name = "campaigns"),
        (name = "contracts"), (name = "inspection"), (name = "reports"),
        (name = "returns", description = "Buyers' returns of sold leads (docs/returns.md)"),
        (name = "settings", description = "The tenant's own settings"),
        (name = "operations", description = "Liveness, readiness and this document")
    )
)]
struct BaseDocument;

/// The document before the routes are added.
pub fn base() -> utoipa::openapi::OpenApi {
    let mut document = BaseDocument::openapi();
    let components = document.components.get_or_insert_with(Default::default);
    for (name, description) in [
        (POSTING_KEY, "A campaign's posting key (pk_…)"),
        (ADMIN_KEY, "A tenant's admin key (ak_…)"),
    ] {
        components.add_security_scheme(
            name,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            ),
        );
    }
    document
}

/// The error answers a group of routes can give, each a problem+json body.
const PARTNER_ERRORS: &[(&str, &str)] = &[
    ("400", "malformed_json"),
    ("401", "unauthorized"),
    ("403", "campaign_paused"),
    ("404", "ping_not_found"),
    (
        "409",
        "already_posted, ping_not_postable, idempotency_key_reused, idempotency_key_in_progress (with Retry-After)",
    ),
    ("410", "ping_expired"),
    ("413", "payload_too_large"),
    ("415", "unsupported_media_type"),
    (
        "422",
        "invalid_field, unknown_field, pii_in_ping, ping_post_mismatch, consent_required; with an offer's validation rules (docs/validation.md): invalid_phone, invalid_email, disposable_email, invalid_zip, zip_state_mismatch; at the post with require_mx: email_domain_unreachable",
    ),
    ("429", "rate_limited (with Retry-After)"),
    ("503", "unavailable, overloaded"),
];
const ADMIN_ERRORS: &[(&str, &str)] = &[
    ("400", "malformed_json"),
    ("401", "unauthorized"),
    (
        "404",
        "not_found: an unknown id, or another tenant's (never 403)",
    ),
    (
        "409",
        "idempotency_key_reused, idempotency_key_in_progress (with Retry-After): the Idempotency-Key of the money routes (buyers' funds, partners' payments and adjustments)",
    ),
    ("415", "unsupported_media_type"),
    (
        "422",
        "invalid_config (every broken rule in errors[], each with its JSON pointer), or invalid_field for a query parameter",
    ),
    ("503", "unavailable"),
];

/// Adds to every operation its security scheme and its error answers, by route group.
pub fn complete(document: &mut utoipa::openapi::OpenApi) {
    for (path, item) in document.paths.paths.iter_mut() {
        let (scheme, errors) = if path.starts_with("/v1/admin/") {
            (Some(ADMIN_KEY), ADMIN_ERRORS)
        } else if path.starts_with("/v1/") {
            (Some(POSTING_KEY), PARTNER_ERRORS)
        } else {
            (None, &[][..])
        };
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            if let Some(scheme) = scheme {
                operation.security =
                    Some(vec![SecurityRequirement::new(scheme, Vec::<String>::new())]);
            }
            // OpenAPI requires a description on every response.
            for (status, response) in operation.responses.responses.iter_mut() {
                if let RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    response.description = match status.as_str() {
                        "201" => "Created",
                        _ => "OK",
                    }
                    .to_owned();
                }
            }
            for (status, codes) in errors {
                let problem = ResponseBuilder::new()
                    .description(format!("problem+json: {codes}"))
                    .content(
                        "application/problem+json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build();
                operation
                    .responses
                    .responses
                    .entry((*status).to_owned())
                    .or_insert(problem.into());
            }
        }
    }
}

/// The rendered document, shared by every request.
#[derive(Clone)]
pub struct Document(pub Arc<String>);

/// This OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of every route", content_type = "application/json")))]
pub async fn document(Extension(Document(json)): Extension<Document>) -> Response {
    let mut response = json.as_str().to_owned().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    use regex::Regex;

    /// Every `.rs` file under `dir`, with its code.
    fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                // Comments left out: a doc's example declares nothing.
                let text = std::fs::read_to_string(&path).unwrap();
                let code: Vec<&str> = text
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("//"))
                    .collect();
                out.push((path.display().to_string(), code.join("\n")));
            }
        }
    }

    /// The component name each schema of the source registers, with where: a
    /// `#[derive(ToSchema)]` struct or enum (its name, or its `#[schema(as = …)]`), a hand-written
    /// `impl ToSchema for`, and the types the resource macros declare (`view X, row …` of
    /// `resource!`, `page = X` of `resource_routes!`).
    fn registered_names() -> BTreeMap<String, Vec<String>> {
        let mut files = Vec::new();
        sources(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let derive = Regex::new(r"#\[derive\(([^\]]*?)\)\]").unwrap();
        let item = Regex::new(r"\b(?:struct|enum)\s+(\$?[A-Za-z_][A-Za-z0-9_]*)").unwrap();
        let renamed = Regex::new(r"#\[schema\([^\]]*?\bas\s*=\s*([A-Za-z0-9_:]+)").unwrap();
        let by_hand = Regex::new(
            r"impl(?:<[^>]*>)?\s+(?:utoipa::)?ToSchema\s+for\s+([A-Za-z_][A-Za-z0-9_]*)",
        )
        .unwrap();
        let macro_names = Regex::new(
            r"\bview\s+([A-Z][A-Za-z0-9_]*)\s*,\s*row\b|\bpage\s*=\s*([A-Z][A-Za-z0-9_]*)",
        )
        .unwrap();
        let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (file, text) in &files {
            for found in derive.captures_iter(text) {
                if !found[1].contains("ToSchema") {
                    continue;
                }
                let rest = &text[found.get(0).unwrap().end()..];
                let Some(declared) = item.captures(rest) else {
                    continue;
                };
                let between = &rest[..declared.get(0).unwrap().start()];
                let name = match renamed.captures(between) {
                    Some(r) => r[1].rsplit("::").next().unwrap().to_owned(),
                    None => declared[1].to_owned(),
                };
                // A macro's own `$name`: its invocations are read below.
                if !name.starts_with('$') {
                    names.entry(name).or_default().push(file.clone());
                }
            }
            for found in by_hand.captures_iter(text) {
                names
                    .entry(found[1].to_owned())
                    .or_default()
                    .push(file.clone());
            }
            for found in macro_names.captures_iter(text) {
                let name = found.get(1).or_else(|| found.get(2)).unwrap().as_str();
                names.entry(name.to_owned()).or_default().push(file.clone());
            }
        }
        names
    }

    /// utoipa keys components by name only: two Rust types registering one name leave one
    /// schema, and the other type's routes document the wrong body. So every name is one type's,
    /// and (to keep this scan honest) every component of the document is one the scan found.
    #[test]
    fn every_component_name_is_one_rust_type() {
        let names = registered_names();
        let clashes: Vec<_> = names.iter().filter(|(_, files)| files.len() > 1).collect();
        assert!(
            clashes.is_empty(),
            "schema names registered by more than one Rust type (rename one, or \
             #[schema(as = …)]): {clashes:?}"
        );
        let (_, mut document) = crate::api::routes().split_for_parts();
        super::complete(&mut document);
        let components: BTreeSet<String> = document
            .components
            .map(|c| c.schemas.into_keys().collect())
            .unwrap_or_default();
        assert!(components.len() > 40, "{components:?}");
        let unseen: Vec<_> = components
            .iter()
            .filter(|name| !names.contains_key(*name))
            .collect();
        assert!(
            unseen.is_empty(),
            "components this test's scan of src/ does not see (teach registered_names their \
             kind of declaration): {unseen:?}"
        );
    }
}
