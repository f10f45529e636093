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
    spec: Arc<RequestSpec>,
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
        RequestConfig {
            spec: Arc::new(spec),
            compiled,
        }
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
                    let mut parts = name.name.split('.');
                    let top = parts.next().unwrap_or_default();
                    // The offer, campaign and partner have an id and a name, nothing else.
                    let unknown_part = matches!(top, "offer" | "campaign" | "partner")
                        && parts
                            .next()
                            .is_some_and(|part| part != "id" && part != "name");
                    let known = !unknown_part && (Call::Rtb.has(top) || Call::Delivery.has(top));
                    (unknown_part || !call.has(top)).then(|| {
                        let message = if known {
                            format!("names {}, which {} does not have", name.name, call.label())
                        } else {
                            format!("names {}, which is not in the call's context", name.name)
                        };
                        ConfigError::new(format!("{at}{}", name.pointer), message)
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

    /// The request for one call ([`CompiledRequest::render`]).
    pub fn render(&self, url: &str, context: &CallContext<'_>) -> Result<Rendered, RenderError> {
        self.compiled()
            .ok_or_else(|| RenderError::new("the request's configuration is invalid"))?
            .render(url, context)
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
        // Built at most once, only when a template renders (a field map reads the call directly).
        let mut templates_context = None;
        let text = match &self.body {
            Body::Fields(fields) => fields.render(self.format, &self.root, context)?,
            Body::Template => self
                .templates
                .as_ref()
                .ok_or_else(|| RenderError::new("the template did not compile"))?
                .render(
                    "body",
                    templates_context.get_or_insert_with(|| Templates::context(context)),
                )?,
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
                        .render(
                            template,
                            templates_context.get_or_insert_with(|| Templates::context(context)),
                        )?;
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

impl<'a> CallContext<'a> {
    /// What every call knows: the lead, the ping, whether it is a test, the names; the
    /// delivery's and the RTB call's own parts are added by each.
    pub fn at_ping(
        lead: &'a Map<String, Value>,
        ping_id: Uuid,
        test: bool,
        names: CallNames<'a>,
    ) -> CallContext<'a> {
        CallContext {
            lead,
            consent: None,
            ping_id,
            test,
            lead_id: None,
            sale_type: None,
            price: None,
            rtb_ref: None,
            sale_types: &[],
            tmax_ms: None,
            names,
        }
    }

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
                None => Some(format!(
                    "names lead.{field}, which the offer's schema does not have"
                )),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lead() -> Map<String, Value> {
        let Value::Object(lead) = json!({
            "first_name": "Ann \"Nan\" <b>&amp;</b>",
            "last_name": "O'Brien\nline2 é ☃",
            "email": "  Ann@Example.COM ",
            "phone": "+1 (555) 123-4567",
            "dob": "1980-02-29",
            "zip": "75001",
            "credit": "good",
            "age": 42,
            "income": "123456789.123456789012",
            "note": "a&b=c d+e%f",
        }) else {
            unreachable!()
        };
        lead
    }

    fn schema() -> CompiledSchema {
        CompiledSchema::compile(&json!([
            { "name": "first_name", "type": "string", "pii": true },
            { "name": "last_name", "type": "string", "pii": true },
            { "name": "email", "type": "email", "pii": true },
            { "name": "phone", "type": "phone", "pii": true },
            { "name": "dob", "type": "date" },
            { "name": "zip", "type": "string" },
            { "name": "credit", "type": "string" },
            { "name": "age", "type": "integer" },
            { "name": "income", "type": "number" },
            { "name": "note", "type": "string" },
        ]))
        .unwrap()
    }

    fn render_with(request: Value, call: Call) -> Result<Rendered, RenderError> {
        let config = RequestConfig::deserialize(&request).unwrap();
        assert_eq!(config.errors("/r", call), [], "{request}");
        let lead = lead();
        let schema = schema();
        let Value::Object(consent) = json!({"tcpa": true, "text": "I agree & <ok>"}) else {
            unreachable!()
        };
        let context = CallContext {
            lead: &lead,
            consent: Some(&consent),
            ping_id: Uuid::nil(),
            test: true,
            lead_id: Some(Uuid::max()),
            sale_type: Some(SaleType::Exclusive),
            price: Some(Money::from_cents(1250)),
            rtb_ref: Some("ref-1"),
            sale_types: &[SaleType::Exclusive, SaleType::Shared],
            tmax_ms: Some(150),
            names: CallNames {
                offer: Some(Named {
                    id: Uuid::nil(),
                    name: "auto",
                }),
                campaign: Some(Named {
                    id: Uuid::nil(),
                    name: "",
                }),
                partner: Some(Named {
                    id: Uuid::nil(),
                    name: "P&Q",
                }),
                sub_ids: None,
                schema: Some(&schema),
            },
        };
        config
            .compiled()
            .unwrap()
            .render("https://buyer.example/in?k=1", &context)
    }

    fn render(request: Value) -> Rendered {
        render_with(request, Call::Delivery).unwrap()
    }

    fn body(rendered: &Rendered) -> String {
        String::from_utf8(rendered.body.clone().unwrap()).unwrap()
    }

    fn field_map() -> Value {
        json!({
            "FirstName": "lead.first_name",
            "LastName": "lead.last_name",
            "Credit": { "from": "lead.credit", "map": { "excellent": "A", "good": "B" }, "default": "C" },
            "Missing": { "from": "lead.nothing", "default": "none" },
            "Gone": "lead.nothing",
            "Phone": { "from": "lead.phone", "transform": ["digits", "phone:(###) ###-####"] },
            "EmailHash": { "from": "lead.email", "transform": ["trim", "lower", "sha256"] },
            "BirthDate": { "from": "lead.dob", "transform": ["date:%m/%d/%Y"] },
            "Source": { "value": "gavel" },
            "FullName": { "concat": ["lead.first_name", { "value": " " }, "lead.last_name"] },
            "applicant/zip": "lead.zip",
            "applicant/age": "lead.age",
            "Income": "lead.income",
            "Price": "price",
            "Note": "lead.note",
            "Partner": "partner.name",
        })
    }

    #[test]
    fn a_json_field_map_keeps_types_nests_and_escapes() {
        let rendered = render(json!({ "fields": field_map() }));
        assert_eq!(rendered.method, reqwest::Method::POST);
        assert_eq!(rendered.content_type.as_ref().unwrap(), "application/json");
        assert_eq!(rendered.url, "https://buyer.example/in?k=1");
        let text = body(&rendered);
        let sent: Value = crate::exact_json::from_slice(text.as_bytes()).unwrap();
        let lead = lead();
        assert_eq!(sent["FirstName"], lead["first_name"]);
        assert_eq!(sent["LastName"], lead["last_name"]);
        assert_eq!(sent["Credit"], "B");
        assert_eq!(sent["Missing"], "none");
        assert!(sent.get("Gone").is_none());
        assert_eq!(sent["Phone"], "(555) 123-4567");
        assert_eq!(
            sent["EmailHash"],
            crate::integration::fields::sha256("ann@example.com")
        );
        assert_eq!(sent["BirthDate"], "02/29/1980");
        assert_eq!(sent["Source"], "gavel");
        assert_eq!(
            sent["FullName"],
            format!(
                "{} {}",
                lead["first_name"].as_str().unwrap(),
                lead["last_name"].as_str().unwrap()
            )
        );
        assert_eq!(sent["applicant"], json!({"zip": "75001", "age": 42}));
        // Exact numbers: the price as a decimal, a long number as written.
        assert!(text.contains(r#""Price":12.50"#), "{text}");
        assert!(
            text.contains(r#""Income":123456789.123456789012"#),
            "{text}"
        );
        assert_eq!(sent["Partner"], "P&Q");
    }

    #[test]
    fn an_xml_field_map_escapes_entities_under_its_root() {
        let rendered = render(json!({ "format": "xml", "root": "Lead", "fields": field_map() }));
        assert_eq!(rendered.content_type.as_ref().unwrap(), "application/xml");
        let text = body(&rendered);
        assert!(
            text.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><Lead>"#),
            "{text}"
        );
        assert!(
            text.contains(
                "<FirstName>Ann &quot;Nan&quot; &lt;b&gt;&amp;amp;&lt;/b&gt;</FirstName>"
            )
        );
        assert!(text.contains("<LastName>O&apos;Brien&#10;line2 é ☃</LastName>"));
        assert!(text.contains("<applicant><age>42</age><zip>75001</zip></applicant>"));
        assert!(text.contains("<Gone></Gone>"));
        assert!(text.contains("<Price>12.50</Price>"));
        assert!(text.ends_with("</Lead>"));
    }

    #[test]
    fn form_and_query_field_maps_url_encode_names_and_values() {
        let rendered = render(json!({ "format": "form", "fields": field_map() }));
        assert_eq!(
            rendered.content_type.as_ref().unwrap(),
            "application/x-www-form-urlencoded"
        );
        let text = body(&rendered);
        let pairs: HashMap<String, String> = url::form_urlencoded::parse(text.as_bytes())
            .into_owned()
            .collect();
        let lead = lead();
        assert_eq!(pairs["Note"], lead["note"].as_str().unwrap());
        assert_eq!(pairs["FirstName"], lead["first_name"].as_str().unwrap());
        assert_eq!(pairs["applicant/zip"], "75001");
        assert_eq!(pairs["Price"], "12.50");
        assert!(!pairs.contains_key("Gone"));

        let rendered = render(json!({ "method": "GET", "format": "query",
            "fields": { "zip": "lead.zip", "note": "lead.note" } }));
        assert_eq!(rendered.method, reqwest::Method::GET);
        assert!(rendered.body.is_none() && rendered.content_type.is_none());
        assert_eq!(
            rendered.url,
            "https://buyer.example/in?k=1&note=a%26b%3Dc+d%2Be%25f&zip=75001"
        );
    }

    use std::collections::HashMap;

    #[test]
    fn text_templates_escape_every_value_for_their_format() {
        let rendered = render(json!({ "template":
            "{\"first\": {{ lead.first_name }}, \"last\": {{ lead.last_name }}, \"age\": {{ lead.age }}, \
             \"income\": {{ lead.income }}, \"price\": {{ price }}, \"none\": {{ lead.nothing }}, \
             \"phone\": {{ lead.phone|phone('###-###-####') }}, \"h\": {{ lead.email|trim|lower|md5 }}, \
             \"safe\": {{ lead.first_name|safe }}, \"consent\": {{ consent.text }}}" }));
        let text = body(&rendered);
        let sent: Value = crate::exact_json::from_slice(text.as_bytes()).unwrap();
        let lead = lead();
        assert_eq!(sent["first"], lead["first_name"]);
        assert_eq!(sent["last"], lead["last_name"]);
        assert_eq!(sent["safe"], lead["first_name"]);
        assert_eq!(sent["age"], 42);
        assert!(
            text.contains("\"income\": 123456789.123456789012"),
            "{text}"
        );
        assert!(text.contains("\"price\": 12.50"), "{text}");
        assert_eq!(sent["none"], Value::Null);
        assert_eq!(sent["phone"], "555-123-4567");
        assert_eq!(
            sent["h"],
            crate::integration::fields::md5("ann@example.com")
        );
        assert_eq!(sent["consent"], "I agree & <ok>");

        let rendered = render(json!({ "format": "xml",
            "template": "<lead><n>{{ lead.first_name }}</n><l>{{ lead.last_name|upper }}</l><d>{{ lead.dob|date('%d.%m.%Y') }}</d><t>{{ test }}</t></lead>" }));
        assert_eq!(
            body(&rendered),
            "<lead><n>Ann &quot;Nan&quot; &lt;b&gt;&amp;amp;&lt;/b&gt;</n><l>O&apos;BRIEN&#10;LINE2 É ☃</l><d>29.02.1980</d><t>true</t></lead>"
        );

        // An `autoescape` block does not turn the format's escaping off.
        let rendered = render(json!({ "format": "xml",
            "template": "{% autoescape false %}<n>{{ lead.first_name }}</n>{% endautoescape %}" }));
        assert_eq!(
            body(&rendered),
            "<n>Ann &quot;Nan&quot; &lt;b&gt;&amp;amp;&lt;/b&gt;</n>"
        );
        let rendered = render(json!({
            "template": "{% autoescape false %}{\"n\": {{ lead.first_name }}}{% endautoescape %}" }));
        let sent: Value = serde_json::from_str(&body(&rendered)).unwrap();
        assert_eq!(sent["n"], lead["first_name"]);

        let rendered = render(json!({ "format": "form",
            "template": "note={{ lead.note }}&first={{ lead.first_name }}&zip={{ lead.zip|digits }}" }));
        let pairs: HashMap<String, String> = url::form_urlencoded::parse(&rendered.body.unwrap())
            .into_owned()
            .collect();
        assert_eq!(pairs["note"], lead["note"].as_str().unwrap());
        assert_eq!(pairs["first"], lead["first_name"].as_str().unwrap());
        assert_eq!(pairs.len(), 3);
    }

    #[test]
    fn headers_render_and_content_type_can_be_overridden() {
        let rendered = render(
            json!({ "format": "xml", "content_type": "text/xml; charset=utf-8",
            "headers": { "X-Api-Key": "k_123", "X-Lead": "lead-{{ lead_id }}" },
            "template": "<a/>" }),
        );
        assert_eq!(rendered.content_type.unwrap(), "text/xml; charset=utf-8");
        let headers: Vec<(String, String)> = rendered
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            headers,
            [
                ("x-api-key".to_owned(), "k_123".to_owned()),
                ("x-lead".to_owned(), format!("lead-{}", Uuid::max())),
            ]
        );
        // A header rendered with a newline is refused, its value never quoted.
        let error = render_with(
            json!({ "headers": { "X-Name": "{{ lead.last_name }}" }, "template": "{}" }),
            Call::Delivery,
        )
        .unwrap_err();
        assert!(
            error.0.contains("X-Name") || error.0.contains("x-name"),
            "{error}"
        );
        assert!(!error.0.contains("Brien"));
    }

    #[test]
    fn render_errors_never_quote_lead_values() {
        for request in [
            json!({ "template": "{\"a\": \"{{ lead.last_name }}\"}" }),
            json!({ "template": "{{ lead.last_name|phone('###-###-####') }}" }),
            json!({ "template": "{{ lead.last_name|date('%Y') }}" }),
            json!({ "template": "{% for i in range(100000) %}{{ lead.last_name }}{% endfor %}" }),
            json!({ "template": "{{ lead.last_name - 5 }}" }),
            json!({ "fields": { "p": { "from": "lead.last_name", "transform": ["phone:###-###-####"] } } }),
            json!({ "fields": { "n": { "from": "lead.last_name", "transform": ["number"] } } }),
        ] {
            let error = render_with(request.clone(), Call::Delivery).unwrap_err();
            assert!(!error.0.contains("Brien"), "{request}: {error}");
        }
        let too_big = render_with(
            json!({ "format": "form", "template": "{% for i in range(2000) %}{{ lead.first_name }}{{ lead.first_name }}{% endfor %}" }),
            Call::Delivery,
        )
        .unwrap_err();
        assert!(
            too_big.0.contains("64 KiB") || too_big.0.contains("fuel"),
            "{too_big}"
        );
    }

    fn pointers(request: Value, call: Call) -> Vec<String> {
        match RequestConfig::deserialize(&request) {
            Ok(config) => config
                .errors("/pricing/request", call)
                .into_iter()
                .map(|e| e.pointer)
                .collect(),
            Err(_) => vec!["<shape>".to_owned()],
        }
    }

    #[test]
    fn requests_are_checked_with_pointers() {
        assert_eq!(
            pointers(
                json!({ "fields": { "Phone": { "from": "lead.phone", "transform": ["digits", "bogus", "phone:##"] },
                    "A": { "from": "lead.a", "value": 1 }, "B": "nothing.here", "C": { "concat": ["lead.a", 5] },
                    "D": { "value": [1] }, "E": { "from": "lead.e", "map_default": "x" }, "F": { "form": "lead.f" } } }),
                Call::Delivery
            ),
            [
                "/pricing/request/fields/A",
                "/pricing/request/fields/B",
                "/pricing/request/fields/C/concat/1",
                "/pricing/request/fields/D/value",
                "/pricing/request/fields/E/map_default",
                "/pricing/request/fields/F/form",
                "/pricing/request/fields/F",
                "/pricing/request/fields/Phone/transform/1",
                "/pricing/request/fields/Phone/transform/2",
            ]
        );
        assert_eq!(
            pointers(json!({ "method": "GET", "fields": {} }), Call::Rtb),
            ["/pricing/request/method"]
        );
        // A misspelt part of the offer, campaign or partner is refused like any unknown name.
        assert_eq!(
            pointers(
                json!({ "template": "{{ offer.nmae }} {{ partner.name }} {{ campaign.id }}" }),
                Call::Rtb
            ),
            ["/pricing/request/template"]
        );
        assert_eq!(
            pointers(json!({ "fields": {}, "template": "x" }), Call::Rtb),
            ["/pricing/request"]
        );
        assert_eq!(
            pointers(json!({ "template": "{{ lead.a " }), Call::Rtb),
            ["/pricing/request/template"]
        );
        assert_eq!(
            pointers(
                json!({ "format": "xml", "fields": { "a/b": "lead.x", "a": "lead.y", "1x": "lead.z" } }),
                Call::Rtb
            ),
            ["/pricing/request/fields/1x", "/pricing/request/fields/a~1b"]
        );
        assert_eq!(
            pointers(
                json!({ "headers": { "Host": "x", "X-A": "a\nb{{ ping_id }}", "Content-Type": "text/plain" },
                        "content_type": "bad\nvalue", "template": "{}" }),
                Call::Rtb
            ),
            [
                "/pricing/request/content_type",
                "/pricing/request/headers/Content-Type",
                "/pricing/request/headers/Host",
                "/pricing/request/headers/X-A",
            ]
        );
        // Names outside the call's context.
        assert_eq!(
            pointers(
                json!({ "fields": { "p": "price", "c": "consent.tcpa", "t": "tmax_ms" } }),
                Call::Rtb
            ),
            ["/pricing/request/fields/c", "/pricing/request/fields/p"]
        );
        assert_eq!(
            pointers(
                json!({ "template": "{{ lead_id }}{{ secret }}{% for x in range(3) %}{{ x }}{{ loop.index }}{% endfor %}",
                        "headers": { "X-Ref": "{{ rtb_ref }}" } }),
                Call::Rtb
            ),
            [
                "/pricing/request/headers/X-Ref",
                "/pricing/request/template",
                "/pricing/request/template",
            ]
        );
        assert_eq!(
            pointers(json!({ "fields": { "t": "tmax_ms" } }), Call::Delivery).len(),
            1
        );
        assert_eq!(
            pointers(json!({ "bogus": 1, "fields": {} }), Call::Rtb),
            ["<shape>"]
        );
    }

    #[test]
    fn contract_requests_are_checked_against_the_offer_schema() {
        let schema = schema();
        let pricing = json!({ "type": "rtb", "url": "https://b.example",
            "request": { "fields": { "Zip": "lead.zip", "Mail": "lead.email", "Nope": "lead.nope" },
                         "headers": { "X-Mail": "{{ lead.first_name }}" } } });
        let delivery = json!({ "url": "https://b.example",
            "request": { "template": "{{ lead.email }}{{ lead.shoe_size }}" } });
        let errors = check_contract_requests(&pricing, Some(&delivery), &schema);
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/pricing/request/fields/Mail",
                "/pricing/request/fields/Nope",
                "/pricing/request/headers/X-Mail",
                "/delivery/request/template",
            ]
        );
        assert!(errors[0].message.contains("PII"));
        assert!(errors[3].message.contains("shoe_size"));
        let fixed = json!({ "type": "fixed", "exclusive_cents": 100,
            "request": { "fields": { "Mail": "lead.email" } } });
        assert!(check_contract_requests(&fixed, None, &schema).is_empty());
    }
}
