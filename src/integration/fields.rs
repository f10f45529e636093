//! Field maps (`request.fields`): one entry per buyer field, a value taken from the call's
//! context, with a default, a value map and transforms (`transforms.rs`, which the text
//! templates use as filters too).

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value};

use super::request::{CallContext, Format, MAX_RENDERED_BYTES, Named, RenderError};
use crate::auction::{ConfigError, pointer_token};

pub use super::transforms::{
    Transform, date, digits, is_json_number, md5, phone, sha256, write_json_string, write_url_text,
    write_xml_text,
};

/// A name of the call's context (`lead.first_name`, `ping_id`, `offer.name`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Lead(String),
    Consent(String),
    SubId(String),
    PingId,
    Test,
    LeadId,
    SaleType,
    Price,
    RtbRef,
    SaleTypes,
    TmaxMs,
    OfferId,
    OfferName,
    CampaignId,
    CampaignName,
    PartnerId,
    PartnerName,
}

impl Source {
    /// Reads `lead.first_name` and the like; `None` for a name outside the context.
    pub fn parse(text: &str) -> Option<Source> {
        if let Some((head, key)) = text.split_once('.') {
            if key.is_empty() {
                return None;
            }
            return Some(match (head, key) {
                ("lead", key) => Source::Lead(key.to_owned()),
                ("consent", key) => Source::Consent(key.to_owned()),
                ("sub_ids", key) => Source::SubId(key.to_owned()),
                ("offer", "id") => Source::OfferId,
                ("offer", "name") => Source::OfferName,
                ("campaign", "id") => Source::CampaignId,
                ("campaign", "name") => Source::CampaignName,
                ("partner", "id") => Source::PartnerId,
                ("partner", "name") => Source::PartnerName,
                _ => return None,
            });
        }
        Some(match text {
            "ping_id" => Source::PingId,
            "test" => Source::Test,
            "lead_id" => Source::LeadId,
            "sale_type" => Source::SaleType,
            "price" => Source::Price,
            "rtb_ref" => Source::RtbRef,
            "sale_types" => Source::SaleTypes,
            "tmax_ms" => Source::TmaxMs,
            _ => return None,
        })
    }

    /// The context name as written (`lead.x`), for the save-time checks.
    pub fn name(&self) -> Cow<'_, str> {
        match self {
            Source::Lead(key) => Cow::Owned(format!("lead.{key}")),
            Source::Consent(key) => Cow::Owned(format!("consent.{key}")),
            Source::SubId(key) => Cow::Owned(format!("sub_ids.{key}")),
            Source::PingId => "ping_id".into(),
            Source::Test => "test".into(),
            Source::LeadId => "lead_id".into(),
            Source::SaleType => "sale_type".into(),
            Source::Price => "price".into(),
            Source::RtbRef => "rtb_ref".into(),
            Source::SaleTypes => "sale_types".into(),
            Source::TmaxMs => "tmax_ms".into(),
            Source::OfferId => "offer.id".into(),
            Source::OfferName => "offer.name".into(),
            Source::CampaignId => "campaign.id".into(),
            Source::CampaignName => "campaign.name".into(),
            Source::PartnerId => "partner.id".into(),
            Source::PartnerName => "partner.name".into(),
        }
    }

    /// The value in `context`: absent when the context does not have it.
    pub fn resolve<'a>(&self, context: &'a CallContext<'_>) -> Val<'a> {
        let uuid = |id: uuid::Uuid| Val::Str(Cow::Owned(id.to_string()));
        let names = &context.names;
        let name = |named: Option<Named<'a>>| match named {
            Some(named) if !named.name.is_empty() => Val::Str(Cow::Borrowed(named.name)),
            _ => Val::Absent,
        };
        match self {
            Source::Lead(key) => match context.lead.get(key) {
                Some(Value::String(text))
                    if context.is_number_field(key)
                        && crate::exact_json::is_inexact_number(text) =>
                {
                    Val::Num(Cow::Borrowed(text))
                }
                Some(value) => Val::from_json(value),
                None => Val::Absent,
            },
            Source::Consent(key) => context
                .consent
                .and_then(|c| c.get(key))
                .map_or(Val::Absent, Val::from_json),
            Source::SubId(key) => context
                .names
                .sub_ids
                .and_then(|s| s.get(key))
                .map_or(Val::Absent, Val::from_json),
            Source::PingId => uuid(context.ping_id),
            Source::Test => Val::Bool(context.test),
            Source::LeadId => context.lead_id.map_or(Val::Absent, uuid),
            Source::SaleType => context
                .sale_type
                .map_or(Val::Absent, |t| Val::Str(t.as_str().into())),
            Source::Price => context
                .price
                .map_or(Val::Absent, |p| Val::Num(Cow::Owned(p.to_string()))),
            Source::RtbRef => context
                .rtb_ref
                .map_or(Val::Absent, |r| Val::Str(Cow::Borrowed(r))),
            Source::SaleTypes => Val::List(
                context
                    .sale_types
                    .iter()
                    .map(|t| t.as_str().to_owned())
                    .collect(),
            ),
            Source::TmaxMs => context
                .tmax_ms
                .map_or(Val::Absent, |t| Val::Num(Cow::Owned(t.to_string()))),
            Source::OfferId => names.offer.map_or(Val::Absent, |n| uuid(n.id)),
            Source::OfferName => name(names.offer),
            Source::CampaignId => names.campaign.map_or(Val::Absent, |n| uuid(n.id)),
            Source::CampaignName => name(names.campaign),
            Source::PartnerId => names.partner.map_or(Val::Absent, |n| uuid(n.id)),
            Source::PartnerName => name(names.partner),
        }
    }
}

/// A value on its way to the buyer.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    /// Not in the context (or null): a default applies.
    Absent,
    Bool(bool),
    /// A number as its exact JSON text.
    Num(Cow<'a, str>),
    Str(Cow<'a, str>),
    /// A list of texts (`sale_types`).
    List(Vec<String>),
    /// An array or object of the lead, written as JSON.
    Json(&'a Value),
}

impl<'a> Val<'a> {
    pub fn from_json(value: &'a Value) -> Val<'a> {
        match value {
            Value::Null => Val::Absent,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => Val::Num(Cow::Owned(n.to_string())),
            Value::String(s) => Val::Str(Cow::Borrowed(s)),
            other => Val::Json(other),
        }
    }

    fn from_fixed(value: &'a Value) -> Val<'a> {
        Val::from_json(value)
    }

    /// The value as text (a number or boolean as written in JSON).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Val::Absent => Cow::Borrowed(""),
            Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Val::Num(n) | Val::Str(n) => Cow::Borrowed(n),
            Val::List(items) => Cow::Owned(items.join(",")),
            Val::Json(value) => Cow::Owned(value.to_string()),
        }
    }

    fn into_owned(self) -> Val<'static> {
        match self {
            Val::Absent => Val::Absent,
            Val::Bool(b) => Val::Bool(b),
            Val::Num(n) => Val::Num(Cow::Owned(n.into_owned())),
            Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
            Val::List(items) => Val::List(items),
            Val::Json(value) => Val::Str(Cow::Owned(value.to_string())),
        }
    }

    /// Writes the value as a JSON value.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Val::Absent => out.push_str("null"),
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Val::Num(n) => out.push_str(n),
            Val::Str(s) => write_json_string(out, s),
            Val::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(out, item);
                }
                out.push(']');
            }
            Val::Json(value) => out.push_str(&value.to_string()),
        }
    }
}

/// Where a field's value comes from.
#[derive(Debug, Clone)]
enum Producer {
    From(Source),
    Fixed(Value),
    Concat(Vec<Part>),
}

#[derive(Debug, Clone)]
enum Part {
    Source(Source),
    Fixed(Value),
}

/// One buyer field, compiled.
#[derive(Debug, Clone)]
struct Field {
    /// The buyer field's name as written (`applicant/zip`).
    name: String,
    producer: Producer,
    default: Option<Value>,
    map: Option<HashMap<String, Value>>,
    map_default: Option<Value>,
    transforms: Vec<Transform>,
}

/// The nesting of a JSON or XML body: each node a name and either a field or more nodes.
#[derive(Debug, Clone)]
enum Node {
    Leaf(usize),
    Branch(Vec<(String, Node)>),
}

/// A compiled field map.
#[derive(Debug, Clone)]
pub struct FieldMap {
    fields: Vec<Field>,
    /// For JSON and XML: the fields nested by `/`.
    tree: Vec<(String, Node)>,
}

/// A name of the context a field map or template reads, with the pointer of where it is
/// written (for the save-time checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRef {
    pub pointer: String,
    pub name: String,
}

/// Most fields a field map may have.
pub const MAX_FIELDS: usize = 500;
/// Most parts of one `concat`.
pub const MAX_CONCAT_PARTS: usize = 50;

impl FieldMap {
    /// Compiles `fields` (at `at`, e.g. `/pricing/request/fields`) for `format`; every name
    /// read is added to `names`.
    pub fn compile(
        fields: &Map<String, Value>,
        format: Format,
        at: &str,
        names: &mut Vec<NameRef>,
        errors: &mut Vec<ConfigError>,
    ) -> FieldMap {
        let mut compiled = Vec::with_capacity(fields.len());
        if fields.len() > MAX_FIELDS {
            errors.push(ConfigError::new(at, format!("at most {MAX_FIELDS} fields")));
        }
        for (name, entry) in fields.iter().take(MAX_FIELDS) {
            let pointer = format!("{at}/{}", pointer_token(name));
            if name.is_empty() {
                errors.push(ConfigError::new(&pointer, "a buyer field needs a name"));
                continue;
            }
            if let Some(field) = compile_field(name, entry, &pointer, names, errors) {
                compiled.push(field);
            }
        }
        let mut tree = Vec::new();
        if matches!(format, Format::Json | Format::Xml) {
            for (index, field) in compiled.iter().enumerate() {
                let pointer = format!("{at}/{}", pointer_token(&field.name));
                let parts: Vec<&str> = field.name.split('/').collect();
                if parts.iter().any(|p| p.is_empty()) {
                    errors.push(ConfigError::new(
                        &pointer,
                        "a nested name has no empty part: applicant/zip",
                    ));
                    continue;
                }
                if format == Format::Xml && !parts.iter().all(|p| is_xml_name(p)) {
                    errors.push(ConfigError::new(
                        &pointer,
                        "is not an XML element name (a letter or _ first, then letters, digits, -, _ or .)",
                    ));
                    continue;
                }
                if !insert(&mut tree, &parts, index) {
                    errors.push(ConfigError::new(
                        &pointer,
                        "collides with another field's nesting (a field cannot also hold fields)",
                    ));
                }
            }
        }
        FieldMap {
            fields: compiled,
            tree,
        }
    }

    /// Each field's value for `context`, in the field map's order; stops as soon as their
    /// text passes the body's bound (many fields or parts reading one long lead value).
    fn values<'a>(&self, context: &'a CallContext<'_>) -> Result<Vec<Val<'a>>, RenderError> {
        let mut values = Vec::with_capacity(self.fields.len());
        let mut size = 0;
        for field in &self.fields {
            let value = field.value(context).map_err(|why| {
                RenderError::new(format!("buyer field {}: the value {why}", field.name))
            })?;
            size += field.name.len() + value.text().len();
            if size > MAX_RENDERED_BYTES {
                return Err(RenderError::new("the body is larger than 64 KiB"));
            }
            values.push(value);
        }
        Ok(values)
    }

    /// The body (json, xml, form) or the query string (query) for `context`.
    pub fn render(
        &self,
        format: Format,
        root: &str,
        context: &CallContext<'_>,
    ) -> Result<String, RenderError> {
        let values = self.values(context)?;
        let mut out = String::with_capacity(64 * self.fields.len() + 16);
        match format {
            Format::Json => write_json_object(&mut out, &self.tree, &values),
            Format::Xml => {
                out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
                out.push('<');
                out.push_str(root);
                out.push('>');
                write_xml_nodes(&mut out, &self.tree, &values);
                out.push_str("</");
                out.push_str(root);
                out.push('>');
            }
            Format::Form | Format::Query => {
                for (field, value) in self.fields.iter().zip(&values) {
                    if *value == Val::Absent {
                        continue;
                    }
                    if !out.is_empty() {
                        out.push('&');
                    }
                    write_url_text(&mut out, &field.name);
                    out.push('=');
                    write_url_text(&mut out, &value.text());
                }
            }
        }
        Ok(out)
    }
}

fn insert(tree: &mut Vec<(String, Node)>, parts: &[&str], index: usize) -> bool {
    let (first, rest) = parts.split_first().expect("a name has a part");
    let found = tree.iter().position(|(name, _)| name == first);
    if rest.is_empty() {
        if found.is_some() {
            return false;
        }
        tree.push(((*first).to_owned(), Node::Leaf(index)));
        return true;
    }
    let position = match found {
        Some(position) => position,
        None => {
            tree.push(((*first).to_owned(), Node::Branch(Vec::new())));
            tree.len() - 1
        }
    };
    match &mut tree[position].1 {
        Node::Branch(children) => insert(children, rest, index),
        Node::Leaf(_) => false,
    }
}

fn write_json_object(out: &mut String, nodes: &[(String, Node)], values: &[Val<'_>]) {
    out.push('{');
    let mut first = true;
    for (name, node) in nodes {
        if let Node::Leaf(index) = node
            && values[*index] == Val::Absent
        {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_json_string(out, name);
        out.push(':');
        match node {
            Node::Leaf(index) => values[*index].write_json(out),
            Node::Branch(children) => write_json_object(out, children, values),
        }
    }
    out.push('}');
}

fn write_xml_nodes(out: &mut String, nodes: &[(String, Node)], values: &[Val<'_>]) {
    for (name, node) in nodes {
        out.push('<');
        out.push_str(name);
        out.push('>');
        match node {
            Node::Leaf(index) => write_xml_text(out, &values[*index].text()),
            Node::Branch(children) => write_xml_nodes(out, children, values),
        }
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
}

/// An XML element name Gavel writes: ASCII letters, digits, `-`, `_`, `.`, a letter or `_`
/// first (no namespace prefix, never `xml…`).
pub fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.to_ascii_lowercase().starts_with("xml")
}

fn compile_source(
    text: &str,
    pointer: &str,
    names: &mut Vec<NameRef>,
    errors: &mut Vec<ConfigError>,
) -> Option<Source> {
    match Source::parse(text) {
        Some(source) => {
            names.push(NameRef {
                pointer: pointer.to_owned(),
                name: source.name().into_owned(),
            });
            Some(source)
        }
        None => {
            errors.push(ConfigError::new(
                pointer,
                "is not a name of the call's context (lead.<field>, consent.<key>, \
                 sub_ids.<key>, ping_id, lead_id, sale_type, price, rtb_ref, test, \
                 sale_types, tmax_ms, offer.id, offer.name, campaign.id, campaign.name, \
                 partner.id, partner.name)",
            ));
            None
        }
    }
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn compile_field(
    name: &str,
    entry: &Value,
    at: &str,
    names: &mut Vec<NameRef>,
    errors: &mut Vec<ConfigError>,
) -> Option<Field> {
    let before = errors.len();
    let mut field = Field {
        name: name.to_owned(),
        producer: Producer::Fixed(Value::Null),
        default: None,
        map: None,
        map_default: None,
        transforms: Vec::new(),
    };
    let object = match entry {
        Value::String(text) => {
            field.producer = Producer::From(compile_source(text, at, names, errors)?);
            return Some(field);
        }
        Value::Object(object) => object,
        _ => {
            errors.push(ConfigError::new(
                at,
                "must be a source such as \"lead.first_name\" or an object with from, value or concat",
            ));
            return None;
        }
    };
    for key in object.keys() {
        if !matches!(
            key.as_str(),
            "from" | "value" | "concat" | "default" | "map" | "map_default" | "transform"
        ) {
            errors.push(ConfigError::new(
                format!("{at}/{}", pointer_token(key)),
                "is not a key of a field (from, value, concat, default, map, map_default, transform)",
            ));
        }
    }
    let producers = ["from", "value", "concat"]
        .iter()
        .filter(|k| object.contains_key(**k))
        .count();
    if producers != 1 {
        errors.push(ConfigError::new(
            at,
            "needs exactly one of from, value or concat",
        ));
    }
    if let Some(from) = object.get("from") {
        let pointer = format!("{at}/from");
        match from.as_str() {
            Some(text) => {
                if let Some(source) = compile_source(text, &pointer, names, errors) {
                    field.producer = Producer::From(source);
                }
            }
            None => errors.push(ConfigError::new(
                pointer,
                "must be a source such as lead.zip",
            )),
        }
    }
    if let Some(value) = object.get("value") {
        if is_scalar(value) {
            field.producer = Producer::Fixed(value.clone());
        } else {
            errors.push(ConfigError::new(
                format!("{at}/value"),
                "must be a string, number or boolean",
            ));
        }
    }
    if let Some(concat) = object.get("concat") {
        let pointer = format!("{at}/concat");
        match concat.as_array() {
            Some(items) if items.len() > MAX_CONCAT_PARTS => errors.push(ConfigError::new(
                &pointer,
                format!("at most {MAX_CONCAT_PARTS} parts"),
            )),
            Some(items) if !items.is_empty() => {
                let mut parts = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let pointer = format!("{pointer}/{i}");
                    match item {
                        Value::String(text) => {
                            if let Some(source) = compile_source(text, &pointer, names, errors) {
                                parts.push(Part::Source(source));
                            }
                        }
                        Value::Object(part)
                            if part.len() == 1 && part.get("value").is_some_and(is_scalar) =>
                        {
                            parts.push(Part::Fixed(part["value"].clone()));
                        }
                        _ => errors.push(ConfigError::new(
                            pointer,
                            "must be a source or {\"value\": <text>}",
                        )),
                    }
                }
                field.producer = Producer::Concat(parts);
            }
            _ => errors.push(ConfigError::new(
                pointer,
                "must be a list of sources and {\"value\": …} parts",
            )),
        }
    }
    for key in ["default", "map_default"] {
        if let Some(value) = object.get(key) {
            if is_scalar(value) {
                let slot = if key == "default" {
                    &mut field.default
                } else {
                    &mut field.map_default
                };
                *slot = Some(value.clone());
            } else {
                errors.push(ConfigError::new(
                    format!("{at}/{key}"),
                    "must be a string, number or boolean",
                ));
            }
        }
    }
    if let Some(map) = object.get("map") {
        let pointer = format!("{at}/map");
        match map.as_object() {
            Some(entries) => {
                let mut compiled = HashMap::with_capacity(entries.len());
                for (key, value) in entries {
                    if is_scalar(value) {
                        compiled.insert(key.clone(), value.clone());
                    } else {
                        errors.push(ConfigError::new(
                            format!("{pointer}/{}", pointer_token(key)),
                            "must be a string, number or boolean",
                        ));
                    }
                }
                field.map = Some(compiled);
            }
            None => errors.push(ConfigError::new(
                pointer,
                "must be an object of values, e.g. {\"excellent\": \"A\"}",
            )),
        }
    }
    if object.contains_key("map_default") && !object.contains_key("map") {
        errors.push(ConfigError::new(format!("{at}/map_default"), "needs a map"));
    }
    if let Some(transforms) = object.get("transform") {
        let pointer = format!("{at}/transform");
        match transforms.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let pointer = format!("{pointer}/{i}");
                    match item.as_str().map(Transform::parse) {
                        Some(Ok(transform)) => field.transforms.push(transform),
                        Some(Err(why)) => errors.push(ConfigError::new(pointer, why)),
                        None => {
                            errors.push(ConfigError::new(pointer, "must be a transform's name"))
                        }
                    }
                }
            }
            None => errors.push(ConfigError::new(
                pointer,
                "must be a list of transforms, e.g. [\"trim\", \"lower\"]",
            )),
        }
    }
    (errors.len() == before).then_some(field)
}

impl Field {
    fn value<'a>(&self, context: &'a CallContext<'_>) -> Result<Val<'a>, String> {
        let mut value = match &self.producer {
            Producer::From(source) => source.resolve(context),
            Producer::Fixed(value) => Val::from_fixed(value).into_owned(),
            Producer::Concat(parts) => {
                let mut text = String::new();
                for part in parts {
                    match part {
                        Part::Source(source) => text.push_str(&source.resolve(context).text()),
                        Part::Fixed(value) => text.push_str(&Val::from_json(value).text()),
                    }
                }
                Val::Str(Cow::Owned(text))
            }
        };
        if value == Val::Absent
            && let Some(default) = &self.default
        {
            value = Val::from_json(default).into_owned();
        }
        if let Some(map) = &self.map
            && value != Val::Absent
        {
            let key = value.text();
            if let Some(mapped) = map.get(key.as_ref()).or(self.map_default.as_ref()) {
                value = Val::from_json(mapped).into_owned();
            }
        }
        for transform in &self.transforms {
            value = transform.apply(value)?;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_do_what_the_doc_says() {
        let apply = |t: &str, v: &str| {
            Transform::parse(t)
                .unwrap()
                .apply(Val::Str(v.into()))
                .map(|v| v.text().into_owned())
        };
        assert_eq!(apply("upper", "abé").unwrap(), "ABÉ");
        assert_eq!(apply("lower", "ABC").unwrap(), "abc");
        assert_eq!(apply("trim", "  a b ").unwrap(), "a b");
        assert_eq!(apply("digits", "(555) 123-4567").unwrap(), "5551234567");
        assert_eq!(
            apply("phone:(###) ###-####", "+1 555.123.4567").unwrap(),
            "(555) 123-4567"
        );
        assert_eq!(
            apply("phone:+1##########", "5551234567").unwrap(),
            "+15551234567"
        );
        assert_eq!(apply("e164", "(214) 555-0123").unwrap(), "+12145550123");
        assert!(apply("e164", "555-0123").is_err());
        assert!(apply("phone:###-###-####", "12345").is_err());
        assert_eq!(apply("date:%m/%d/%Y", "1980-02-29").unwrap(), "02/29/1980");
        assert_eq!(
            apply("date:%Y%m%d %H:%M", "2024-05-31T13:45:00Z").unwrap(),
            "20240531 13:45"
        );
        assert!(apply("date:%m/%d/%Y", "yesterday").is_err());
        assert_eq!(
            apply("sha256", "a@b.example").unwrap(),
            sha256("a@b.example")
        );
        assert_eq!(
            apply("md5", "").unwrap(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            apply("sha256", "").unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let number = Transform::Number.apply(Val::Str("12.50".into())).unwrap();
        assert_eq!(number, Val::Num("12.50".into()));
        assert!(Transform::Number.apply(Val::Str("12,5".into())).is_err());
        assert_eq!(
            Transform::String.apply(Val::Num("7".into())).unwrap(),
            Val::Str("7".into())
        );
        assert!(Transform::parse("phone:###").is_err());
        assert!(Transform::parse("date:%Q").is_err());
        assert!(Transform::parse("base64").is_err());
    }

    #[test]
    fn json_numbers_are_recognized_by_their_grammar() {
        for good in ["0", "-1", "12.50", "1e5", "1.5E-3", "12.999999999999999999"] {
            assert!(is_json_number(good), "{good}");
        }
        for bad in ["", "-", "01", "1.", ".5", "+1", "1e", "NaN", "1 2"] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn hostile_text_is_escaped_for_each_format() {
        let hostile = "a\"b<c>&d'\n=é&x=1";
        let mut json = String::new();
        write_json_string(&mut json, hostile);
        assert_eq!(serde_json::from_str::<String>(&json).unwrap(), hostile);
        let mut xml = String::new();
        write_xml_text(&mut xml, hostile);
        assert_eq!(xml, "a&quot;b&lt;c&gt;&amp;d&apos;&#10;=é&amp;x=1");
        let mut form = String::new();
        write_url_text(&mut form, hostile);
        let back: Vec<(String, String)> =
            url::form_urlencoded::parse(format!("k={form}").as_bytes())
                .into_owned()
                .collect();
        assert_eq!(back, [("k".to_owned(), hostile.to_owned())]);
    }
}
