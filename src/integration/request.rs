//! A call's `request` (docs/buyer-integrations.md): method, format, content type, headers and
//! the body (a field map or a text template), compiled once and rendered per call.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::fields::{FieldMap, NameRef};
use super::template::Templates;
use crate::auction::{CompiledSchema, ConfigError, FieldType, SaleType, pointer_token};
use crate::money::Money;

/// Which outbound call a request is for: what its context holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// The RTB call at the ping: no PII, no sale yet.
    Rtb,
    /// The delivery at the post.
    Delivery,
}

impl Call {
    /// Whether the context of this call has `name` (its first part: `lead`, `price`, …).
    pub fn has(self, top: &str) -> bool {
        match top {
            "lead" | "ping_id" | "test" | "offer" | "campaign" | "partner" | "sub_ids" => true,
            "consent" | "lead_id" | "sale_type" | "price" | "rtb_ref" => self == Call::Delivery,
            "sale_types" | "tmax_ms" => self == Call::Rtb,
            _ => false,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Call::Rtb => "an RTB call",
            Call::Delivery => "a delivery",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Post,
    Put,
    Get,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Form,
    Xml,
    Query,
}

impl Format {
    /// The body's content type (none for `query`).
    pub fn content_type(self) -> Option<&'static str> {
        match self {
            Format::Json => Some("application/json"),
            Format::Form => Some("application/x-www-form-urlencoded"),
            Format::Xml => Some("application/xml"),
            Format::Query => None,
        }
    }
}

/// The `request` object as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// A section's `request`: as written (what is stored and compared) and compiled (what each
/// call renders). Compilation errors point below the request (`/fields/Phone/transform/0`);
/// [`RequestConfig::errors`] puts them under the section.
#[derive(Clone)]
pub struct RequestConfig {
    spec: RequestSpec,
    compiled: Result<Arc<CompiledRequest>, Vec<ConfigError>>,
}

impl fmt::Debug for RequestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestConfig")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl PartialEq for RequestConfig {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl Eq for RequestConfig {}

impl Serialize for RequestConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.spec.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RequestConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spec = RequestSpec::deserialize(deserializer)?;
        Ok(RequestConfig::compile(spec))
    }
}

impl RequestConfig {
    pub fn compile(spec: RequestSpec) -> RequestConfig {
        let compiled = CompiledRequest::compile(&spec).map(Arc::new);
        RequestConfig { spec, compiled }
    }

    pub fn spec(&self) -> &RequestSpec {
        &self.spec
    }

    /// Every error of the request for `call`, under `at` (`/pricing/request`): compilation,
    /// and names outside the call's context.
    pub fn errors(&self, at: &str, call: Call) -> Vec<ConfigError> {
        let relocate = |e: &ConfigError| ConfigError::new(format!("{at}{}", e.pointer), &e.message);
        match &self.compiled {
            Err(errors) => errors.iter().map(relocate).collect(),
            Ok(compiled) => compiled
                .names
                .iter()
                .filter_map(|name| {
                    let top = name.name.split('.').next().unwrap_or_default();
                    (!call.has(top)).then(|| {
                        ConfigError::new(
                            format!("{at}{}", name.pointer),
                            format!("names {}, which {} does not have", name.name, call.label()),
                        )
                    })
                })
                .collect(),
        }
    }

    /// The compiled request; `None` only for a request whose errors were reported (a section
    /// read without [`RequestConfig::errors`] being checked).
    pub fn compiled(&self) -> Option<&CompiledRequest> {
        self.compiled.as_deref().ok()
    }
}

/// A compiled request.
pub struct CompiledRequest {
    method: reqwest::Method,
    format: Format,
    content_type: Option<HeaderValue>,
    headers: Vec<(HeaderName, HeaderPart)>,
    root: String,
    body: Body,
    templates: Option<Templates>,
    /// Every context name the request reads, with where (for the save-time checks).
    names: Vec<NameRef>,
}

enum HeaderPart {
    Fixed(HeaderValue),
    /// Rendered by the template named `header:<name>`.
    Template(String),
}

enum Body {
    Fields(FieldMap),
    Template,
}

/// The longest body (or query string) a request renders.
pub const MAX_RENDERED_BYTES: usize = 64 * 1024;

impl CompiledRequest {
    fn compile(spec: &RequestSpec) -> Result<CompiledRequest, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut names = Vec::new();
        let format = spec.format.unwrap_or_default();
        let method = match spec.method.unwrap_or_default() {
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Get => reqwest::Method::GET,
        };
        if method == reqwest::Method::GET && format != Format::Query {
            errors.push(ConfigError::new(
                "/method",
                "a GET sends no body: its format must be query",
            ));
        }
        let content_type = match &spec.content_type {
            None => format.content_type().map(HeaderValue::from_static),
            Some(text) => match HeaderValue::from_str(text) {
                Ok(value) if !text.trim().is_empty() && text.len() <= 256 => Some(value),
                _ => {
                    errors.push(ConfigError::new(
                        "/content_type",
                        "must be a media type such as text/xml; charset=utf-8 (visible ASCII)",
                    ));
                    None
                }
            },
        };
        if spec.content_type.is_some() && format == Format::Query {
            errors.push(ConfigError::new(
                "/content_type",
                "a query request sends no body, so no content type",
            ));
        }
        if spec.root.is_some() && (format != Format::Xml || spec.fields.is_none()) {
            errors.push(ConfigError::new(
                "/root",
                "names the root element of an XML field map only",
            ));
        }
        let root = spec.root.clone().unwrap_or_else(|| "lead".to_owned());
        if !super::fields::is_xml_name(&root) {
            errors.push(ConfigError::new("/root", "is not an XML element name"));
        }
        // The headers: the section's rules for names and fixed parts; templated values are
        // checked once rendered.
        let mut sources: Vec<(String, String)> = Vec::new();
        let mut static_parts = BTreeMap::new();
        for (name, value) in &spec.headers {
            if value.contains("{{") || value.contains("{%") {
                static_parts.insert(name.clone(), template_static_text(value));
                sources.push((format!("header:{name}"), value.clone()));
            } else {
                static_parts.insert(name.clone(), value.clone());
            }
        }
        errors.extend(crate::auction::check_headers(&static_parts, "/headers"));
        let body = match (&spec.fields, &spec.template) {
            (Some(fields), None) => Body::Fields(FieldMap::compile(
                fields,
                format,
                "/fields",
                &mut names,
                &mut errors,
            )),
            (None, Some(template)) => {
                sources.push(("body".to_owned(), template.clone()));
                Body::Template
            }
            _ => {
                errors.push(ConfigError::new(
                    "",
                    "needs exactly one of fields (a field map) or template (a text template)",
                ));
                Body::Template
            }
        };
        let templates = if sources.is_empty() {
            None
        } else {
            match Templates::compile(format, &sources) {
                Ok((templates, used)) => {
                    for (template, name) in used {
                        let pointer = match template.strip_prefix("header:") {
                            Some(header) => format!("/headers/{}", pointer_token(header)),
                            None => "/template".to_owned(),
                        };
                        names.push(NameRef { pointer, name });
                    }
                    Some(templates)
                }
                Err(failed) => {
                    errors.extend(failed);
                    None
                }
            }
        };
        for name in &names {
            let top = name.name.split('.').next().unwrap_or_default();
            if !Call::Rtb.has(top) && !Call::Delivery.has(top) {
                errors.push(ConfigError::new(
                    &name.pointer,
                    format!("names {}, which is not in the call's context", name.name),
                ));
            }
        }
        let headers = spec
            .headers
            .iter()
            .filter_map(|(name, value)| {
                let header = HeaderName::from_bytes(name.as_bytes()).ok()?;
                let part = if value.contains("{{") || value.contains("{%") {
                    HeaderPart::Template(format!("header:{name}"))
                } else {
                    HeaderPart::Fixed(HeaderValue::from_str(value).ok()?)
                };
                Some((header, part))
            })
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CompiledRequest {
            method,
            format,
            content_type,
            headers,
            root,
            body,
            templates,
            names,
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The lead fields this request reads, with the pointer (below the request) of each.
    pub fn lead_fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.names.iter().filter_map(|n| {
            n.name
                .strip_prefix("lead.")
                .map(|field| (n.pointer.as_str(), field.split('.').next().unwrap_or(field)))
        })
    }

    /// The request for one call: `url` (with the query, for `query`), the headers and the body.
    pub fn render(&self, url: &str, context: &CallContext<'_>) -> Result<Rendered, RenderError> {
        let text = match &self.body {
            Body::Fields(fields) => fields.render(self.format, &self.root, context)?,
            Body::Template => self
                .templates
                .as_ref()
                .ok_or_else(|| RenderError::new("the template did not compile"))?
                .render("body", context)?,
        };
        if text.len() > MAX_RENDERED_BYTES {
            return Err(RenderError::new("the body is larger than 64 KiB"));
        }
        if self.format == Format::Json
            && matches!(self.body, Body::Template)
            && let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(&text)
        {
            return Err(RenderError::new(format!(
                "the rendered body is not valid JSON (line {}, column {})",
                error.line(),
                error.column()
            )));
        }
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, part) in &self.headers {
            let value = match part {
                HeaderPart::Fixed(value) => value.clone(),
                HeaderPart::Template(template) => {
                    let text = self
                        .templates
                        .as_ref()
                        .ok_or_else(|| RenderError::new("the template did not compile"))?
                        .render(template, context)?;
                    HeaderValue::from_str(&text)
                        .ok()
                        .filter(|_| text.len() <= 4096)
                        .ok_or_else(|| {
                            RenderError::new(format!(
                                "header {name} rendered a value that is not valid in a header"
                            ))
                        })?
                }
            };
            headers.push((name.clone(), value));
        }
        let (url, body) = if self.format == Format::Query {
            let mut url = url.to_owned();
            if !text.is_empty() {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&text);
            }
            (url, None)
        } else {
            (url.to_owned(), Some(text.into_bytes()))
        };
        Ok(Rendered {
            method: self.method.clone(),
            url,
            content_type: self.content_type.clone(),
            headers,
            body,
        })
    }
}

/// A template's text without its `{{ … }}` and `{% … %}` parts: what a header's rules check
/// before it is rendered.
fn template_static_text(source: &str) -> String {
    let mut out = String::new();
    let mut rest = source;
    while let Some(start) = rest.find(['{']) {
        let (before, tail) = rest.split_at(start);
        out.push_str(before);
        let close = if tail.starts_with("{{") {
            "}}"
        } else if tail.starts_with("{%") {
            "%}"
        } else if tail.starts_with("{#") {
            "#}"
        } else {
            out.push('{');
            rest = &tail[1..];
            continue;
        };
        match tail.find(close) {
            Some(end) => rest = &tail[end + 2..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub method: reqwest::Method,
    pub url: String,
    /// The body's content type (none without a body).
    pub content_type: Option<HeaderValue>,
    /// `request.headers`, rendered (sent after the section's own `headers`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Vec<u8>>,
}

/// Why a request could not be rendered for this lead; the text never holds a lead value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request could not be rendered: {0}")]
pub struct RenderError(pub String);

impl RenderError {
    pub fn new(message: impl Into<String>) -> RenderError {
        RenderError(message.into())
    }
}

/// An offer, campaign or partner as the context shows it (an empty name is absent).
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    pub id: Uuid,
    pub name: &'a str,
}

/// What a call's context says of its offer, campaign and partner, and the partner's sub-ids.
#[derive(Clone, Copy, Default)]
pub struct CallNames<'a> {
    pub offer: Option<Named<'a>>,
    pub campaign: Option<Named<'a>>,
    pub partner: Option<Named<'a>>,
    pub sub_ids: Option<&'a Map<String, Value>>,
    /// The offer's schema (exact numbers, see [`CallContext::schema`]).
    pub schema: Option<&'a CompiledSchema>,
}

impl<'a> CallNames<'a> {
    /// The names of a campaign's call: its offer, itself (campaigns have no name: absent) and
    /// its partner.
    pub fn of(campaign: &'a crate::store::snapshot::CampaignContext) -> CallNames<'a> {
        let partner_id = campaign.campaign.partner_id;
        CallNames {
            offer: Some(Named {
                id: campaign.offer.id,
                name: &campaign.offer.name,
            }),
            campaign: Some(Named {
                id: campaign.campaign.id,
                name: "",
            }),
            partner: campaign
                .tenant
                .partner_names
                .get(&partner_id)
                .map(|name| Named {
                    id: partner_id,
                    name,
                }),
            sub_ids: None,
            schema: Some(&campaign.offer.schema),
        }
    }
}

/// What a request can read (the table in docs/buyer-integrations.md).
pub struct CallContext<'a> {
    pub lead: &'a Map<String, Value>,
    pub consent: Option<&'a Map<String, Value>>,
    pub ping_id: Uuid,
    pub test: bool,
    pub lead_id: Option<Uuid>,
    pub sale_type: Option<SaleType>,
    pub price: Option<Money>,
    pub rtb_ref: Option<&'a str>,
    pub sale_types: &'a [SaleType],
    pub tmax_ms: Option<u32>,
    /// The offer, campaign, partner and sub-ids; the offer's schema: a number field whose
    /// value has more digits than an f64 holds (kept as its text, `exact_json`) is still
    /// written as a number.
    pub names: CallNames<'a>,
}

impl CallContext<'_> {
    /// Whether the offer's schema types `field` as a number.
    pub fn is_number_field(&self, field: &str) -> bool {
        self.names.schema.is_some_and(|schema| {
            schema.index_of(field).is_some_and(|i| {
                matches!(
                    schema.field(i).field_type,
                    FieldType::Number | FieldType::Integer
                )
            })
        })
    }
}

/// The save-time checks of a contract's two requests against its offer's schema: a lead field
/// the offer does not have, or a PII field in the RTB call, is an error at its pointer. The
/// requests' own errors are reported by `Pricing::parse` and `DeliveryConfig::parse`.
pub fn check_contract_requests(
    pricing: &Value,
    delivery: Option<&Value>,
    schema: &CompiledSchema,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let sections = [
        (
            pricing
                .get("type")
                .filter(|t| *t == "rtb")
                .and_then(|_| pricing.get("request")),
            "/pricing/request",
            Call::Rtb,
        ),
        (
            delivery.and_then(|d| d.get("request")),
            "/delivery/request",
            Call::Delivery,
        ),
    ];
    for (request, at, call) in sections {
        let Some(request) = request else { continue };
        let Ok(config) = RequestConfig::deserialize(request) else {
            continue;
        };
        let Some(compiled) = config.compiled() else {
            continue;
        };
        for (pointer, field) in compiled.lead_fields() {
            let message = match schema.index_of(field) {
                None => Some(format!("names lead.{field}, which the offer's schema does not have")),
                Some(i) if call == Call::Rtb && schema.field(i).pii => Some(format!(
                    "names lead.{field}, a PII field: an RTB call is made at the ping, which has no PII"
                )),
                Some(_) => None,
            };
            if let Some(message) = message {
                errors.push(ConfigError::new(format!("{at}{pointer}"), message));
            }
        }
    }
    errors
}
