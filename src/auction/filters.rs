//! A contract's filters (SPEC §4.5), compiled against the offer's schema once per configuration
//! load and evaluated against each ping's prepared lead without allocating.
//!
//! Semantics chosen where the SPEC is silent:
//! - A filter on a field the lead lacks does not hold, whatever its op (`ne` and `not_in`
//!   included), except `missing`; a `not` group simply negates its filter.
//! - `eq`/`in` compare typed values: numbers by value (`42` = `42.0`), dates as dates, strings
//!   exactly (case-sensitive), `email` and `phone` in their normalized form.
//! - `prefix` and `matches` fit `string` fields only (SPEC §4.5), `matches` searches anywhere
//!   in the value (anchor with `^…$`).
//! - `in`/`not_in` need a non-empty list, groups at least one filter, `exists`/`missing` no value;
//!   unknown keys are errors (they are usually typos).

use std::borrow::Cow;
use std::cmp::Ordering;

use regex::Regex;
use serde_json::{Map, Value};

use super::config::{ConfigError, FieldType};
use super::schema::{CompiledSchema, PreparedLead, scalar_of};
use super::value::Scalar;

mod words;
pub use words::{describe_filter, explain_filtered};

/// A contract's filters, all of which must hold.
#[derive(Debug)]
pub struct CompiledFilter {
    /// Each top-level filter with its pointer (`/filters/<i>`), reported when it fails.
    filters: Vec<(String, Node)>,
}

#[derive(Debug)]
enum Node {
    Leaf { field: usize, test: Test },
    Any(Vec<Node>),
    All(Vec<Node>),
    Not(Box<Node>),
}

#[derive(Debug)]
enum Test {
    Exists,
    Missing,
    Eq(Scalar<'static>),
    Ne(Scalar<'static>),
    In(ValueSet),
    NotIn(ValueSet),
    Compare(Comparison, Scalar<'static>),
    Between(Scalar<'static>, Scalar<'static>),
    Prefix(Vec<String>),
    Matches(Regex),
}

#[derive(Debug, Clone, Copy)]
enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Comparison {
    fn holds(self, order: Ordering) -> bool {
        match self {
            Comparison::Gt => order.is_gt(),
            Comparison::Gte => order.is_ge(),
            Comparison::Lt => order.is_lt(),
            Comparison::Lte => order.is_le(),
        }
    }
}

/// The values of an `in`/`not_in`: strings sorted for binary search (zip lists can be long),
/// other kinds scanned.
#[derive(Debug)]
enum ValueSet {
    Strings(Vec<String>),
    Scalars(Vec<Scalar<'static>>),
}

impl ValueSet {
    fn new(values: Vec<Scalar<'static>>) -> ValueSet {
        if values.iter().all(|v| matches!(v, Scalar::Str(_))) {
            let mut strings: Vec<String> = values
                .into_iter()
                .filter_map(|v| match v {
                    Scalar::Str(s) => Some(s.into_owned()),
                    _ => None,
                })
                .collect();
            strings.sort_unstable();
            strings.dedup();
            ValueSet::Strings(strings)
        } else {
            ValueSet::Scalars(values)
        }
    }

    fn contains(&self, value: &Scalar<'_>) -> bool {
        match (self, value) {
            (ValueSet::Strings(strings), Scalar::Str(s)) => strings
                .binary_search_by(|probe| probe.as_str().cmp(s))
                .is_ok(),
            (ValueSet::Strings(_), _) => false,
            (ValueSet::Scalars(scalars), _) => scalars.contains(value),
        }
    }
}

impl CompiledFilter {
    /// Compiles a contract's `filters` column against the offer's schema; errors point under
    /// `/filters` (e.g. `/filters/1/any/0/op`).
    pub fn compile(
        filters: &Value,
        schema: &CompiledSchema,
    ) -> Result<CompiledFilter, Vec<ConfigError>> {
        let Value::Array(items) = filters else {
            return Err(vec![ConfigError::new(
                "/filters",
                "must be an array of filters",
            )]);
        };
        let mut errors = Vec::new();
        let mut compiled = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = format!("/filters/{i}");
            if let Some(node) = compile_node(item, &at, schema, &mut errors) {
                compiled.push((at, node));
            }
        }
        if errors.is_empty() {
            Ok(CompiledFilter { filters: compiled })
        } else {
            Err(errors)
        }
    }

    /// `Ok` when every filter holds, otherwise the pointer of the first that does not
    /// (`/filters/2`; for a group, the group's pointer).
    pub fn evaluate(&self, lead: &PreparedLead<'_>) -> Result<(), &str> {
        match self.filters.iter().find(|(_, node)| !node.holds(lead)) {
            Some((pointer, _)) => Err(pointer),
            None => Ok(()),
        }
    }
}

impl Node {
    fn holds(&self, lead: &PreparedLead<'_>) -> bool {
        match self {
            Node::Leaf { field, test } => test.holds(lead.value(*field)),
            Node::Any(nodes) => nodes.iter().any(|n| n.holds(lead)),
            Node::All(nodes) => nodes.iter().all(|n| n.holds(lead)),
            Node::Not(node) => !node.holds(lead),
        }
    }
}

impl Test {
    fn holds(&self, value: Option<&Scalar<'_>>) -> bool {
        let Some(value) = value else {
            return matches!(self, Test::Missing);
        };
        match self {
            Test::Exists => true,
            Test::Missing => false,
            Test::Eq(constant) => value == constant,
            Test::Ne(constant) => value != constant,
            Test::In(set) => set.contains(value),
            Test::NotIn(set) => !set.contains(value),
            Test::Compare(comparison, constant) => {
                value.compare(constant).is_some_and(|o| comparison.holds(o))
            }
            Test::Between(low, high) => {
                value.compare(low).is_some_and(Ordering::is_ge)
                    && value.compare(high).is_some_and(Ordering::is_le)
            }
            Test::Prefix(prefixes) => match value {
                Scalar::Str(text) => prefixes.iter().any(|p| text.starts_with(p.as_str())),
                _ => false,
            },
            Test::Matches(regex) => match value {
                Scalar::Str(text) => regex.is_match(text),
                _ => false,
            },
        }
    }
}

/// Compiles one filter or group found at `at`, pushing every error under it.
fn compile_node(
    value: &Value,
    at: &str,
    schema: &CompiledSchema,
    errors: &mut Vec<ConfigError>,
) -> Option<Node> {
    let Value::Object(object) = value else {
        errors.push(ConfigError::new(
            at,
            "must be an object: a filter or an any/all/not group",
        ));
        return None;
    };
    let mut kinds = ["field", "any", "all", "not"]
        .into_iter()
        .filter_map(|kind| object.get(kind).map(|body| (kind, body)));
    let (Some((kind, body)), None) = (kinds.next(), kinds.next()) else {
        errors.push(ConfigError::new(
            at,
            "must have exactly one of field, any, all or not",
        ));
        return None;
    };
    let allowed_keys: &[&str] = if kind == "field" {
        &["field", "op", "value"]
    } else {
        &[kind]
    };
    let before = errors.len();
    for key in object
        .keys()
        .filter(|k| !allowed_keys.contains(&k.as_str()))
    {
        errors.push(ConfigError::new(format!("{at}/{key}"), "unknown key"));
    }
    let node = match kind {
        "any" | "all" => {
            let group_at = format!("{at}/{kind}");
            match body {
                Value::Array(items) if !items.is_empty() => {
                    let nodes: Vec<Node> = items
                        .iter()
                        .enumerate()
                        .filter_map(|(j, item)| {
                            compile_node(item, &format!("{group_at}/{j}"), schema, errors)
                        })
                        .collect();
                    Some(if kind == "any" {
                        Node::Any(nodes)
                    } else {
                        Node::All(nodes)
                    })
                }
                _ => {
                    errors.push(ConfigError::new(
                        group_at,
                        "must be a non-empty array of filters",
                    ));
                    None
                }
            }
        }
        "not" => {
            compile_node(body, &format!("{at}/not"), schema, errors).map(|n| Node::Not(Box::new(n)))
        }
        _ => compile_leaf(object, at, schema, errors),
    };
    // A node is kept only when nothing under it failed, so a broken group never half-compiles.
    node.filter(|_| errors.len() == before)
}

/// Compiles `{"field": …, "op": …, "value": …}` found at `at`.
fn compile_leaf(
    object: &Map<String, Value>,
    at: &str,
    schema: &CompiledSchema,
    errors: &mut Vec<ConfigError>,
) -> Option<Node> {
    let field_at = format!("{at}/field");
    let op_at = format!("{at}/op");
    let Some(name) = object.get("field").and_then(Value::as_str) else {
        errors.push(ConfigError::new(field_at, "must be a field name"));
        return None;
    };
    let Some(index) = schema.index_of(name) else {
        errors.push(ConfigError::new(field_at, format!("unknown field {name}")));
        return None;
    };
    let field = schema.field(index);
    if field.pii {
        errors.push(ConfigError::new(
            field_at,
            format!("{name} is PII: filters see only the ping's fields"),
        ));
        return None;
    }
    let field_type = field.field_type;
    let Some(op) = object.get("op").and_then(Value::as_str) else {
        errors.push(ConfigError::new(op_at, "must be an op name"));
        return None;
    };
    let fits = match op {
        "eq" | "ne" | "in" | "not_in" | "exists" | "missing" => true,
        "gt" | "gte" | "lt" | "lte" | "between" => field_type.is_ordered(),
        "prefix" | "matches" => field_type == FieldType::String,
        _ => {
            errors.push(ConfigError::new(op_at, format!("unknown op {op}")));
            return None;
        }
    };
    if !fits {
        errors.push(ConfigError::new(
            op_at,
            format!("op {op} does not fit field {name} of type {field_type}"),
        ));
        return None;
    }
    let value_at = format!("{at}/value");
    let value = object.get("value");
    let needs_value = !matches!(op, "exists" | "missing");
    match (value, needs_value) {
        (Some(_), false) => {
            errors.push(ConfigError::new(
                value_at,
                format!("op {op} takes no value"),
            ));
            return None;
        }
        (None, true) => {
            errors.push(ConfigError::new(value_at, format!("op {op} needs a value")));
            return None;
        }
        _ => {}
    }
    let value = value.unwrap_or(&Value::Null);
    let constant = |v: &Value, v_at: &str, errors: &mut Vec<ConfigError>| {
        let scalar = constant_of(field_type, v);
        if scalar.is_none() {
            errors.push(ConfigError::new(
                v_at,
                format!("must be a value of type {field_type}"),
            ));
        }
        scalar
    };
    let test = match op {
        "exists" => Test::Exists,
        "missing" => Test::Missing,
        "eq" => Test::Eq(constant(value, &value_at, errors)?),
        "ne" => Test::Ne(constant(value, &value_at, errors)?),
        "gt" => Test::Compare(Comparison::Gt, constant(value, &value_at, errors)?),
        "gte" => Test::Compare(Comparison::Gte, constant(value, &value_at, errors)?),
        "lt" => Test::Compare(Comparison::Lt, constant(value, &value_at, errors)?),
        "lte" => Test::Compare(Comparison::Lte, constant(value, &value_at, errors)?),
        "in" | "not_in" => {
            let Some(items) = value.as_array().filter(|items| !items.is_empty()) else {
                errors.push(ConfigError::new(
                    value_at,
                    format!("op {op} needs a non-empty list"),
                ));
                return None;
            };
            let scalars: Vec<Scalar<'static>> = items
                .iter()
                .enumerate()
                .filter_map(|(k, item)| constant(item, &format!("{value_at}/{k}"), errors))
                .collect();
            if scalars.len() != items.len() {
                return None;
            }
            let set = ValueSet::new(scalars);
            if op == "in" {
                Test::In(set)
            } else {
                Test::NotIn(set)
            }
        }
        "between" => {
            let bounds = value.as_array().filter(|items| items.len() == 2);
            let Some([low, high]) = bounds.map(|b| [&b[0], &b[1]]) else {
                errors.push(ConfigError::new(value_at, "between needs [low, high]"));
                return None;
            };
            let low = constant(low, &format!("{value_at}/0"), errors);
            let high = constant(high, &format!("{value_at}/1"), errors);
            let (low, high) = (low?, high?);
            if low.compare(&high).is_none_or(Ordering::is_gt) {
                errors.push(ConfigError::new(
                    value_at,
                    "between needs [low, high] with low ≤ high",
                ));
                return None;
            }
            Test::Between(low, high)
        }
        "prefix" => {
            let prefixes = match value {
                Value::String(s) => Some(vec![s.clone()]),
                Value::Array(items) if !items.is_empty() => items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect(),
                _ => None,
            };
            let Some(prefixes) = prefixes else {
                errors.push(ConfigError::new(
                    value_at,
                    "prefix needs a string or a non-empty list of strings",
                ));
                return None;
            };
            Test::Prefix(prefixes)
        }
        _ => {
            let Some(pattern) = value.as_str() else {
                errors.push(ConfigError::new(value_at, "matches needs a regex string"));
                return None;
            };
            match Regex::new(pattern) {
                Ok(regex) => Test::Matches(regex),
                Err(e) => {
                    errors.push(ConfigError::new(value_at, format!("invalid regex: {e}")));
                    return None;
                }
            }
        }
    };
    Some(Node::Leaf { field: index, test })
}

/// A filter constant for a field of `field_type`; an `integer` field compares with any number.
fn constant_of(field_type: FieldType, value: &Value) -> Option<Scalar<'static>> {
    let as_type = if field_type == FieldType::Integer {
        FieldType::Number
    } else {
        field_type
    };
    scalar_of(as_type, value).map(|s| match s {
        Scalar::Str(Cow::Borrowed(text)) => Scalar::Str(Cow::Owned(text.to_owned())),
        other => other.into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> CompiledSchema {
        CompiledSchema::compile(&json!([
            { "name": "state", "type": "string", "required": true },
            { "name": "zip", "type": "string" },
            { "name": "age", "type": "integer" },
            { "name": "income", "type": "number" },
            { "name": "homeowner", "type": "boolean" },
            { "name": "credit", "type": "string" },
            { "name": "moved_on", "type": "date" },
            { "name": "work_email", "type": "email" },
            { "name": "office_phone", "type": "phone" },
            { "name": "email", "type": "email", "pii": true }
        ]))
        .unwrap()
    }

    fn holds(filters: Value, lead: Value) -> Result<(), String> {
        let schema = schema();
        let filter = CompiledFilter::compile(&filters, &schema).unwrap();
        let Value::Object(lead) = lead else {
            panic!("lead is not an object")
        };
        let prepared = schema.prepare(&lead);
        filter.evaluate(&prepared).map_err(str::to_owned)
    }

    fn compile_errors(filters: Value) -> Vec<(String, String)> {
        CompiledFilter::compile(&filters, &schema())
            .unwrap_err()
            .into_iter()
            .map(|e| (e.pointer, e.message))
            .collect()
    }

    #[test]
    fn the_spec_example_holds_and_fails_where_expected() {
        let filters = json!([
            { "field": "state", "op": "in", "value": ["TX", "OK"] },
            { "any": [ { "field": "homeowner", "op": "eq", "value": true },
                       { "field": "credit", "op": "in", "value": ["excellent", "good"] } ] },
            { "field": "age", "op": "between", "value": [25, 64] },
            { "field": "zip", "op": "prefix", "value": ["750", "751"] }
        ]);
        let good =
            json!({"state": "TX", "zip": "75001", "age": 42, "homeowner": false, "credit": "good"});
        assert_eq!(holds(filters.clone(), good), Ok(()));
        let cases = [
            (
                json!({"state": "CA", "zip": "75001", "age": 42, "homeowner": true}),
                "/filters/0",
            ),
            (
                json!({"state": "TX", "zip": "75001", "age": 42, "homeowner": false, "credit": "poor"}),
                "/filters/1",
            ),
            (
                json!({"state": "TX", "zip": "75001", "age": 42}),
                "/filters/1",
            ),
            (
                json!({"state": "TX", "zip": "75001", "age": 65, "homeowner": true}),
                "/filters/2",
            ),
            (
                json!({"state": "TX", "zip": "75001", "homeowner": true}),
                "/filters/2",
            ),
            (
                json!({"state": "TX", "zip": "76001", "age": 25, "homeowner": true}),
                "/filters/3",
            ),
        ];
        for (lead, pointer) in cases {
            assert_eq!(
                holds(filters.clone(), lead.clone()),
                Err(pointer.to_owned()),
                "{lead}"
            );
        }
    }

    #[test]
    fn every_op_behaves() {
        let lead = json!({"state": "TX", "zip": "75001", "age": 42, "income": 52000.5, "homeowner": true,
                          "moved_on": "2024-03-01", "work_email": "Ada@Example.com", "office_phone": "+1 (214) 555-0123"});
        let holding = [
            json!({"field": "age", "op": "eq", "value": 42.0}),
            json!({"field": "age", "op": "ne", "value": 41}),
            json!({"field": "age", "op": "in", "value": [1, 42]}),
            json!({"field": "age", "op": "not_in", "value": [1, 2]}),
            json!({"field": "age", "op": "gt", "value": 41.5}),
            json!({"field": "age", "op": "gte", "value": 42}),
            json!({"field": "age", "op": "lt", "value": 43}),
            json!({"field": "age", "op": "lte", "value": 42}),
            json!({"field": "age", "op": "between", "value": [42, 42]}),
            json!({"field": "income", "op": "between", "value": [52000.5, 60000]}),
            json!({"field": "income", "op": "gt", "value": 52000}),
            json!({"field": "moved_on", "op": "gt", "value": "2024-02-29"}),
            json!({"field": "moved_on", "op": "between", "value": ["2024-01-01", "2024-12-31"]}),
            json!({"field": "homeowner", "op": "eq", "value": true}),
            json!({"field": "zip", "op": "prefix", "value": "75"}),
            json!({"field": "zip", "op": "matches", "value": "^7[0-9]{4}$"}),
            json!({"field": "state", "op": "exists"}),
            json!({"field": "credit", "op": "missing"}),
            json!({"field": "work_email", "op": "eq", "value": "ada@example.COM"}),
            json!({"field": "office_phone", "op": "in", "value": ["214-555-0123"]}),
            json!({"not": {"field": "state", "op": "eq", "value": "tx"}}),
            json!({"all": [{"field": "state", "op": "eq", "value": "TX"}, {"field": "age", "op": "gt", "value": 18}]}),
        ];
        for filter in holding {
            assert_eq!(holds(json!([filter]), lead.clone()), Ok(()), "{filter}");
        }
        let failing = [
            json!({"field": "age", "op": "eq", "value": 42.5}),
            json!({"field": "age", "op": "ne", "value": 42}),
            json!({"field": "age", "op": "not_in", "value": [42]}),
            json!({"field": "age", "op": "gt", "value": 42}),
            json!({"field": "age", "op": "lt", "value": 42}),
            json!({"field": "moved_on", "op": "lt", "value": "2024-03-01"}),
            json!({"field": "zip", "op": "prefix", "value": ["76", "8"]}),
            json!({"field": "zip", "op": "matches", "value": "^8"}),
            json!({"field": "state", "op": "missing"}),
            json!({"field": "credit", "op": "exists"}),
            // A field the lead lacks fails every op but `missing`, `ne` and `not_in` included.
            json!({"field": "credit", "op": "ne", "value": "poor"}),
            json!({"field": "credit", "op": "not_in", "value": ["poor"]}),
            json!({"any": [{"field": "state", "op": "eq", "value": "OK"}, {"field": "age", "op": "lt", "value": 18}]}),
            json!({"not": {"field": "state", "op": "exists"}}),
        ];
        for filter in failing {
            assert_eq!(
                holds(json!([filter]), lead.clone()),
                Err("/filters/0".to_owned()),
                "{filter}"
            );
        }
    }

    #[test]
    fn long_in_lists_are_searched_exactly() {
        let zips: Vec<String> = (0..5000).map(|i| format!("{:05}", i * 7)).collect();
        let filters = json!([{"field": "zip", "op": "in", "value": zips}]);
        assert_eq!(holds(filters.clone(), json!({"zip": "00700"})), Ok(()));
        assert!(holds(filters, json!({"zip": "00701"})).is_err());
    }

    #[test]
    fn an_empty_filter_list_always_holds() {
        assert_eq!(holds(json!([]), json!({})), Ok(()));
    }

    #[test]
    fn bad_filters_are_reported_with_pointers() {
        let errors = compile_errors(json!([
            { "field": "nope", "op": "eq", "value": 1 },
            { "any": [ { "field": "state", "op": "gt", "value": "A" },
                       { "field": "age", "op": "between", "value": [64, 25] } ] },
            { "field": "email", "op": "exists" },
            { "field": "work_email", "op": "prefix", "value": "ada" },
            { "field": "zip", "op": "matches", "value": "([0-9]" },
            { "field": "age", "op": "in", "value": [1, "2"] },
            { "field": "age", "op": "like", "value": 1 },
            { "field": "state", "op": "exists", "value": true },
            { "field": "state", "op": "eq" },
            { "field": "state", "op": "in", "value": [] },
            { "not": { "field": "moved_on", "op": "gt", "value": "2024-02-30" } },
            { "all": [] },
            { "field": "state", "any": [] },
            { "field": "state", "op": "eq", "value": "TX", "values": ["TX"] },
            "state = TX",
            { "field": "age", "op": "between", "value": [1] },
            { "field": "zip", "op": "prefix", "value": ["75", 76] },
            { "field": 3, "op": "eq", "value": 1 },
            { "field": "homeowner", "op": "eq", "value": "yes" },
            { "field": "homeowner", "op": "lt", "value": true }
        ]));
        let pointers: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/filters/0/field",
                "/filters/1/any/0/op",
                "/filters/1/any/1/value",
                "/filters/2/field",
                "/filters/3/op",
                "/filters/4/value",
                "/filters/5/value/1",
                "/filters/6/op",
                "/filters/7/value",
                "/filters/8/value",
                "/filters/9/value",
                "/filters/10/not/value",
                "/filters/11/all",
                "/filters/12",
                "/filters/13/values",
                "/filters/14",
                "/filters/15/value",
                "/filters/16/value",
                "/filters/17/field",
                "/filters/18/value",
                "/filters/19/op",
            ]
        );
        assert_eq!(errors[0].1, "unknown field nope");
        assert_eq!(errors[1].1, "op gt does not fit field state of type string");
        assert_eq!(errors[2].1, "between needs [low, high] with low ≤ high");
        assert_eq!(
            errors[3].1,
            "email is PII: filters see only the ping's fields"
        );
        assert!(errors[5].1.starts_with("invalid regex"));
        assert_eq!(compile_errors(json!({"field": "state"}))[0].0, "/filters");
    }
}
