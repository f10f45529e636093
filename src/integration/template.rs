//! Text templates (`request.template`, templated header values): one minijinja environment
//! per request, compiled once; every value escaped for the request's format by the engine.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::Arc;

use minijinja::value::{Object, ObjectRepr, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};

use super::fields::{self, write_json_string, write_url_text, write_xml_text};
use super::request::{CallContext, Format, MAX_RENDERED_BYTES, Named, RenderError};
use crate::auction::{ConfigError, pointer_token};

/// The rendering work a template may do per call (minijinja's fuel: roughly instructions).
const FUEL: u64 = 50_000;
/// How deep a template may nest (loops, conditions, includes of itself).
const RECURSION_LIMIT: usize = 16;

/// The functions minijinja provides besides the context (not context names).
const GLOBALS: [&str; 4] = ["range", "dict", "namespace", "loop"];

/// A request's templates: `body` and `header:<name>`.
pub struct Templates {
    env: Environment<'static>,
}

/// A number written exactly as its text (a price `12.50`, a lead number with more digits than
/// an f64 holds): a JSON number in JSON, its text elsewhere.
#[derive(Debug)]
struct RawNumber(String);

impl Object for RawNumber {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn escape_name(format: Format) -> &'static str {
    match format {
        Format::Json => "json",
        Format::Xml => "xml",
        Format::Form | Format::Query => "url",
    }
}

/// A value as plain text: absent is empty, a number or boolean as written.
fn plain(value: &Value) -> String {
    if value.is_undefined() || value.is_none() {
        String::new()
    } else if value.kind() == minijinja::value::ValueKind::Bool {
        // As JSON, forms and XML write it (minijinja's own text is Python's `True`).
        value.is_true().to_string()
    } else if let Some(text) = value.as_str() {
        text.to_owned()
    } else {
        value.to_string()
    }
}

fn write_json_value(out: &mut String, value: &Value) -> Result<(), Error> {
    if let Some(raw) = value.downcast_object_ref::<RawNumber>() {
        out.push_str(&raw.0);
    } else if value.is_undefined() || value.is_none() {
        out.push_str("null");
    } else if let Some(text) = value.as_str() {
        write_json_string(out, text);
    } else {
        let json = serde_json::to_string(value).map_err(|_| {
            Error::new(
                ErrorKind::BadSerialization,
                "a value cannot be written as JSON",
            )
        })?;
        out.push_str(&json);
    }
    Ok(())
}

fn filter_error(filter: &str, why: String) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("the {filter} filter: the value {why}"),
    )
}

impl Templates {
    /// Compiles `sources` (name, text) for `format`; returns, with the templates, every
    /// context name each template reads (`lead.email`, `price`, …).
    #[allow(clippy::type_complexity)]
    pub fn compile(
        format: Format,
        sources: &[(String, String)],
    ) -> Result<(Templates, Vec<(String, String)>), Vec<ConfigError>> {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        let body_escape = escape_name(format);
        env.set_auto_escape_callback(move |name| {
            AutoEscape::Custom(
                if name == "body" {
                    body_escape
                } else {
                    "header"
                }
                .into(),
            )
        });
        env.set_formatter(move |out, state: &mut State, value| {
            // Every value is escaped, `|safe` or not: a template never writes a lead value raw.
            // The escaping is the format's, decided here by the template (the body or a
            // header), never by `state.auto_escape()`: a `{% autoescape false %}` block would
            // change that one.
            let mut text = String::new();
            let escape = if state.name() == "body" {
                body_escape
            } else {
                "header"
            };
            match escape {
                "json" => write_json_value(&mut text, value)?,
                "xml" => write_xml_text(&mut text, &plain(value)),
                "url" => write_url_text(&mut text, &plain(value)),
                _ => text = plain(value),
            }
            fmt::Write::write_str(out, &text)
                .map_err(|_| Error::new(ErrorKind::WriteFailure, "the output is full"))
        });
        env.add_filter("digits", |value: Value| fields::digits(&plain(&value)));
        env.add_filter("phone", |value: Value, pattern: String| {
            fields::phone(&plain(&value), &pattern).map_err(|why| filter_error("phone", why))
        });
        env.add_filter("date", |value: Value, format: String| {
            fields::date(&plain(&value), &format).map_err(|why| filter_error("date", why))
        });
        env.add_filter("sha256", |value: Value| fields::sha256(&plain(&value)));
        env.add_filter("md5", |value: Value| fields::md5(&plain(&value)));
        let mut errors = Vec::new();
        let pointer = |name: &str| match name.strip_prefix("header:") {
            Some(header) => format!("/headers/{}", pointer_token(header)),
            None => "/template".to_owned(),
        };
        for (name, source) in sources {
            if let Err(error) = env.add_template_owned(name.clone(), source.clone()) {
                let mut message = format!("does not compile: {}", error.kind());
                if let Some(detail) = error.detail() {
                    message.push_str(&format!(" ({detail})"));
                }
                if let Some(line) = error.line() {
                    message.push_str(&format!(" at line {line}"));
                }
                errors.push(ConfigError::new(pointer(name), message));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut used = Vec::new();
        for (name, _) in sources {
            let template = env
                .get_template(name)
                .map_err(|_| vec![ConfigError::new(pointer(name), "does not compile")])?;
            let mut names: Vec<String> = template
                .undeclared_variables(true)
                .into_iter()
                .filter(|n| !GLOBALS.contains(&n.split('.').next().unwrap_or_default()))
                .collect();
            names.sort();
            used.extend(names.into_iter().map(|n| (name.clone(), n)));
        }
        Ok((Templates { env }, used))
    }

    /// The context as the templates read it: built once per call, shared by the body and the
    /// headers (a minijinja value is reference-counted).
    pub fn context(context: &CallContext<'_>) -> Value {
        context_value(context)
    }

    /// Renders the template `name` for `context` ([`Templates::context`]), at most 64 KiB.
    pub fn render(&self, name: &str, context: &Value) -> Result<String, RenderError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|_| RenderError::new("the template is missing"))?;
        let mut out = Capped {
            buffer: Vec::with_capacity(512),
            full: false,
        };
        let result = template.render_captured_to(context, &mut out);
        if out.full {
            return Err(RenderError::new("the body is larger than 64 KiB"));
        }
        if let Err(error) = result {
            // The kind and line only: an error's detail may quote a value.
            let mut message = format!("the template failed: {}", error.kind());
            if let Some(line) = error.line() {
                message.push_str(&format!(" at line {line}"));
            }
            return Err(RenderError::new(message));
        }
        String::from_utf8(out.buffer).map_err(|_| RenderError::new("the output is not UTF-8"))
    }
}

/// A writer that refuses more than `MAX_RENDERED_BYTES`.
struct Capped {
    buffer: Vec<u8>,
    full: bool,
}

impl io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buffer.len() + bytes.len() > MAX_RENDERED_BYTES {
            self.full = true;
            return Err(io::Error::other("output over 64 KiB"));
        }
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn json_value(value: &serde_json::Value) -> Value {
    Value::from(minijinja::value::Serde(value))
}

fn map_value(map: &serde_json::Map<String, serde_json::Value>) -> Value {
    Value::from(
        map.iter()
            .map(|(k, v)| (k.clone(), json_value(v)))
            .collect::<BTreeMap<String, Value>>(),
    )
}

fn named(named: Named<'_>) -> Value {
    let mut map = BTreeMap::new();
    map.insert("id", Value::from(named.id.to_string()));
    if !named.name.is_empty() {
        map.insert("name", Value::from(named.name));
    }
    Value::from(map)
}

/// The context as minijinja reads it.
fn context_value(context: &CallContext<'_>) -> Value {
    let mut map: BTreeMap<&'static str, Value> = BTreeMap::new();
    let lead: BTreeMap<String, Value> = context
        .lead
        .iter()
        .map(|(key, value)| {
            let value = match value {
                serde_json::Value::String(text)
                    if context.is_number_field(key)
                        && crate::exact_json::is_inexact_number(text) =>
                {
                    Value::from_object(RawNumber(text.clone()))
                }
                other => json_value(other),
            };
            (key.clone(), value)
        })
        .collect();
    map.insert("lead", Value::from(lead));
    if let Some(consent) = context.consent {
        map.insert("consent", map_value(consent));
    }
    if let Some(sub_ids) = context.names.sub_ids {
        map.insert("sub_ids", map_value(sub_ids));
    }
    map.insert("ping_id", Value::from(context.ping_id.to_string()));
    map.insert("test", Value::from(context.test));
    if let Some(lead_id) = context.lead_id {
        map.insert("lead_id", Value::from(lead_id.to_string()));
    }
    if let Some(sale_type) = context.sale_type {
        map.insert("sale_type", Value::from(sale_type.as_str()));
    }
    if let Some(price) = context.price {
        map.insert("price", Value::from_object(RawNumber(price.to_string())));
    }
    if let Some(rtb_ref) = context.rtb_ref {
        map.insert("rtb_ref", Value::from(rtb_ref));
    }
    if !context.sale_types.is_empty() {
        map.insert(
            "sale_types",
            Value::from(
                context
                    .sale_types
                    .iter()
                    .map(|t| Value::from(t.as_str()))
                    .collect::<Vec<_>>(),
            ),
        );
    }
    if let Some(tmax_ms) = context.tmax_ms {
        map.insert("tmax_ms", Value::from(tmax_ms));
    }
    for (key, value) in [
        ("offer", context.names.offer),
        ("campaign", context.names.campaign),
        ("partner", context.names.partner),
    ] {
        if let Some(value) = value {
            map.insert(key, named(value));
        }
    }
    Value::from(map)
}

/// What a notice's URL template (`win_url`, `loss_url`: docs/revenue-recovery.md §7) may read.
pub const NOTICE_VARIABLES: [&str; 7] = [
    "ping_id",
    "lead_id",
    "ref",
    "price",
    "reason",
    "contract_id",
    "sale_type",
];

/// A notice's URL template, compiled once when the configuration loads with the machinery of
/// a `request` template: sandboxed, bounded, every value URL-encoded.
pub struct UrlTemplate {
    templates: Templates,
    /// Rendered with sample values.
    sample: String,
}

/// The value a template is rendered with at compile time to find where variables land.
const SAMPLE_MARKER: &str = "gavelsamplevalue";

impl fmt::Debug for UrlTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UrlTemplate")
    }
}

impl UrlTemplate {
    /// Compiles `source`; refuses (errors at `pointer`) a template that does not compile, that
    /// names a variable a notice does not have, or that does not render an http(s) URL.
    pub fn compile(source: &str, pointer: &str) -> Result<UrlTemplate, Vec<ConfigError>> {
        let at = |message: String| vec![ConfigError::new(pointer, message)];
        let (templates, used) =
            Templates::compile(Format::Query, &[("body".to_owned(), source.to_owned())]).map_err(
                |errors| {
                    errors
                        .into_iter()
                        .map(|e| ConfigError::new(pointer, e.message))
                        .collect::<Vec<_>>()
                },
            )?;
        let unknown: Vec<&str> = used
            .iter()
            .map(|(_, name)| name.split('.').next().unwrap_or_default())
            .filter(|name| !NOTICE_VARIABLES.contains(name))
            .collect();
        if !unknown.is_empty() {
            return Err(at(format!(
                "names {}, which a notice does not have (it has {})",
                unknown.join(", "),
                NOTICE_VARIABLES.join(", ")
            )));
        }
        let template = UrlTemplate {
            templates,
            sample: String::new(),
        };
        // Rendered with a marker for every value, then with every value empty: the scheme,
        // the user, the host and the port must be the template's own, the same in both (a
        // buyer's ref, or any value, must not choose where a notice goes).
        let render = |value: &str| {
            let values: Vec<(&str, String)> = NOTICE_VARIABLES
                .iter()
                .map(|name| (*name, value.to_owned()))
                .collect();
            template
                .render(&values)
                .map_err(|error| at(format!("cannot be rendered: {}", error.0)))
        };
        let (marked, empty) = (render(SAMPLE_MARKER)?, render("")?);
        let parse = |rendered: &str| match url::Url::parse(rendered) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(url),
            _ => Err(at("must render an http(s) URL".to_owned())),
        };
        let marked_url = parse(&marked)?;
        let authority = |url: &url::Url| {
            (
                url.scheme().to_owned(),
                url.username().to_owned(),
                url.password().map(str::to_owned),
                url.host_str().map(str::to_owned),
                url.port(),
            )
        };
        let own = authority(&marked_url);
        let marked_in = |part: Option<&str>| {
            part.is_some_and(|p| p.to_ascii_lowercase().contains(SAMPLE_MARKER))
        };
        let chosen_by_a_value = marked_in(Some(&own.1))
            || marked_in(own.2.as_deref())
            || marked_in(own.3.as_deref())
            || url::Url::parse(&empty).map_or(true, |url| authority(&url) != own);
        if chosen_by_a_value {
            return Err(at(
                "must name its host itself: a variable may not choose the scheme, user, host or \
                 port (use them in the path or the query)"
                    .to_owned(),
            ));
        }
        let sample = render("x")?;
        Ok(UrlTemplate { sample, ..template })
    }

    /// The URL rendered with a sample value (`x`) for every variable: its host is the one
    /// every notice goes to (the outbound address policy checks it at save).
    pub fn sample(&self) -> &str {
        &self.sample
    }

    /// The URL for `values` (name, text), each URL-encoded; a variable not given is empty.
    pub fn render(&self, values: &[(&str, String)]) -> Result<String, RenderError> {
        let context: BTreeMap<&str, Value> = values
            .iter()
            .map(|(name, value)| (*name, Value::from(value.as_str())))
            .collect();
        self.templates.render("body", &Value::from(context))
    }
}

#[cfg(test)]
mod notice_tests {
    use super::*;

    #[test]
    fn a_notice_url_encodes_its_values_and_refuses_unknown_names_and_other_schemes() {
        let template = UrlTemplate::compile(
            "https://b.example/win?p={{ price }}&r={{ reason }}",
            "/win_url",
        )
        .unwrap();
        let url = template
            .render(&[
                ("price", "12.50".to_owned()),
                ("reason", "a b&c=d".to_owned()),
            ])
            .unwrap();
        assert_eq!(url, "https://b.example/win?p=12.50&r=a+b%26c%3Dd");
        let unknown =
            UrlTemplate::compile("https://b.example/?e={{ lead.email }}", "/loss_url").unwrap_err();
        assert_eq!(unknown[0].pointer, "/loss_url");
        assert!(
            unknown[0].message.contains("lead"),
            "{}",
            unknown[0].message
        );
        let broken = UrlTemplate::compile("https://b.example/{{ price", "/win_url").unwrap_err();
        assert!(broken[0].message.starts_with("does not compile"));
        for bad in ["ftp://b.example/{{ ref }}", "{{ ref }}", "/relative"] {
            let refused = UrlTemplate::compile(bad, "/win_url").unwrap_err();
            assert_eq!(refused[0].message, "must render an http(s) URL");
        }
    }

    #[test]
    fn a_notice_url_whose_host_a_variable_chooses_is_refused() {
        for bad in [
            "http://{{ ref }}/x",
            "http://{{ ref }}",
            "https://a{{ ref }}.example/x",
            "http://b.example:{{ price }}/x",
            "http://{{ ref }}@b.example/x",
            "http://{% if ref %}a{% else %}b{% endif %}.example/x",
        ] {
            let refused = UrlTemplate::compile(bad, "/win_url").unwrap_err();
            assert_eq!(refused[0].pointer, "/win_url");
            assert!(
                refused[0].message.starts_with("must name its host itself")
                    || refused[0].message == "must render an http(s) URL",
                "{bad}: {}",
                refused[0].message
            );
        }
        let host = UrlTemplate::compile("http://{{ ref }}/x", "/win_url").unwrap_err();
        assert!(host[0].message.starts_with("must name its host itself"));
        let fine = UrlTemplate::compile(
            "https://b.example:8443/n/{{ ref }}?p={{ price }}#{{ reason }}",
            "/loss_url",
        )
        .unwrap();
        assert_eq!(fine.sample(), "https://b.example:8443/n/x?p=x#x");
    }
}
