//! A `filtered` decline in words, for the operator (the admin explain of a ping): which filter
//! failed, the field, the operator, the contract's values and the ping's value. Built when an
//! operator asks, never on the ping's path, from the contract's filters and the offer's schema
//! as they are now and the ping's recorded (PII-free) lead.
//!
//! A PII field's value is never written out: only whether the ping has one (filters refuse PII
//! fields, and a ping never carries them, but the words do not rely on either).

use serde_json::{Map, Value};

use super::super::schema::{CompiledSchema, PreparedLead};
use super::{Node, compile_node};

/// At most this many of a list's values are written out.
const MAX_LISTED: usize = 20;
/// A value longer than this many characters is cut.
const MAX_CHARS: usize = 100;

/// Why the filter at `pointer` (`/filters/<i>`, as the decline recorded it) of a contract whose
/// `filters` column is `filters` declined a ping whose recorded lead is `lead`, on an offer
/// whose fields compile to `schema`. For example `state is TX, but the contract requires
/// state to be one of CA, NY`.
///
/// `None` when the words cannot be told: the filter no longer compiles, or there
/// is no filter at `pointer` any more (the caller falls back to the pointer). When the filter
/// holds for the lead now (it was changed since), the words say so.
pub fn explain_filtered(
    filters: &Value,
    pointer: &str,
    schema: &CompiledSchema,
    lead: &Map<String, Value>,
) -> Option<String> {
    let index: usize = pointer.strip_prefix("/filters/")?.parse().ok()?;
    let item = filters.as_array()?.get(index)?;
    let node = compile_node(item, pointer, schema, &mut Vec::new())?;
    let prepared = schema.prepare(lead);
    let words = Words {
        schema,
        lead,
        prepared: &prepared,
    };
    if node.holds(&prepared) {
        return Some(format!(
            "the ping's values pass this filter now ({})",
            words.condition(&node, item)
        ));
    }
    Some(words.failure(&node, item))
}

struct Words<'a> {
    schema: &'a CompiledSchema,
    lead: &'a Map<String, Value>,
    prepared: &'a PreparedLead<'a>,
}

impl Words<'_> {
    /// Why `node` (compiled from `item`) does not hold for the lead.
    fn failure(&self, node: &Node, item: &Value) -> String {
        match node {
            Node::Leaf { field, .. } => format!(
                "{}, but the contract requires {}",
                self.fact(*field),
                requirement(item, false)
            ),
            Node::All(nodes) => {
                let children = children(item, "all");
                nodes
                    .iter()
                    .zip(children)
                    .find(|(node, _)| !node.holds(self.prepared))
                    .map(|(node, child)| self.failure(node, child))
                    .unwrap_or_default()
            }
            Node::Any(nodes) => {
                let children = children(item, "any");
                let mut reasons = nodes
                    .iter()
                    .zip(children)
                    .map(|(node, child)| self.failure(node, child));
                if nodes.len() == 1 {
                    return reasons.next().unwrap_or_default();
                }
                let reasons: Vec<String> = reasons.collect();
                format!(
                    "none of the contract's alternatives held: {}",
                    reasons.join("; or ")
                )
            }
            Node::Not(inner) => {
                let inner_item = item.get("not").unwrap_or(&Value::Null);
                match inner.as_ref() {
                    Node::Leaf { field, .. } => format!(
                        "{}, but the contract requires {}",
                        self.fact(*field),
                        requirement(inner_item, true)
                    ),
                    group => {
                        let mut fields = Vec::new();
                        fields_of(group, &mut fields);
                        let facts: Vec<String> = fields.iter().map(|&f| self.fact(f)).collect();
                        format!(
                            "{}, but the contract requires not ({})",
                            facts.join(", "),
                            self.condition(group, inner_item)
                        )
                    }
                }
            }
        }
    }

    /// What `node` requires, without the lead's values.
    fn condition(&self, node: &Node, item: &Value) -> String {
        let group = |nodes: &[Node], kind: &str| {
            let parts: Vec<String> = nodes
                .iter()
                .zip(children(item, kind))
                .map(|(node, child)| self.condition(node, child))
                .collect();
            format!("{kind} of: {}", parts.join("; "))
        };
        match node {
            Node::Leaf { .. } => requirement(item, false),
            Node::All(nodes) => group(nodes, "all"),
            Node::Any(nodes) => group(nodes, "any"),
            Node::Not(inner) => {
                let inner_item = item.get("not").unwrap_or(&Value::Null);
                match inner.as_ref() {
                    Node::Leaf { .. } => requirement(inner_item, true),
                    group => format!("not ({})", self.condition(group, inner_item)),
                }
            }
        }
    }

    /// The lead's value of the field at `index`: `age is 17`, `the ping has no zip`, and for a
    /// PII field only whether it is set.
    fn fact(&self, index: usize) -> String {
        let field = self.schema.field(index);
        let name = &field.name;
        match self.lead.get(name).filter(|v| !v.is_null()) {
            None => format!("the ping has no {name}"),
            Some(_) if field.pii => format!("the ping's {name} is set"),
            Some(value) => format!("{name} is {}", shown(value)),
        }
    }
}

/// The filters of a group `{"<kind>": [...]}`.
fn children<'a>(item: &'a Value, kind: &str) -> &'a [Value] {
    item.get(kind)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The fields a node reads, each once, in order.
fn fields_of(node: &Node, fields: &mut Vec<usize>) {
    match node {
        Node::Leaf { field, .. } => {
            if !fields.contains(field) {
                fields.push(*field);
            }
        }
        Node::All(nodes) | Node::Any(nodes) => nodes.iter().for_each(|n| fields_of(n, fields)),
        Node::Not(inner) => fields_of(inner, fields),
    }
}

/// A contract's filter (a leaf, or an `all`/`any`/`not` group) as a requirement in words,
/// without a lead: `state to be one of CA, NY`, `any of: age to be at least 50; homeowner to be
/// true`. For the console's contract page.
pub fn describe_filter(item: &Value) -> String {
    let group = |kind: &str| {
        let parts: Vec<String> = children(item, kind).iter().map(describe_filter).collect();
        format!("{kind} of: {}", parts.join("; "))
    };
    if item.get("all").is_some() {
        group("all")
    } else if item.get("any").is_some() {
        group("any")
    } else if let Some(inner) = item.get("not") {
        if inner.get("field").is_some() {
            requirement(inner, true)
        } else {
            format!("not ({})", describe_filter(inner))
        }
    } else {
        requirement(item, false)
    }
}

/// A leaf filter `{"field", "op", "value"}` as a requirement: `state to be one of CA, NY`, or
/// with `negated`, `state not to be one of CA, NY`. The filter compiled, so its shape is right.
fn requirement(item: &Value, negated: bool) -> String {
    let field = item.get("field").and_then(Value::as_str).unwrap_or("?");
    let op = item.get("op").and_then(Value::as_str).unwrap_or("?");
    let value = item.get("value").unwrap_or(&Value::Null);
    // Ordered strings are dates (the only ordered type written as a string).
    let date = value.is_string();
    let (positive, verb) = match op {
        "eq" => (true, format!("be {}", shown(value))),
        "ne" => (false, format!("be {}", shown(value))),
        "in" => (true, format!("be one of {}", listed(value, ", "))),
        "not_in" => (false, format!("be one of {}", listed(value, ", "))),
        "gt" if date => (true, format!("be after {}", shown(value))),
        "gt" => (true, format!("be greater than {}", shown(value))),
        "gte" if date => (true, format!("be on or after {}", shown(value))),
        "gte" => (true, format!("be at least {}", shown(value))),
        "lt" if date => (true, format!("be before {}", shown(value))),
        "lt" => (true, format!("be less than {}", shown(value))),
        "lte" if date => (true, format!("be on or before {}", shown(value))),
        "lte" => (true, format!("be at most {}", shown(value))),
        "between" => {
            let bound = |i: usize| shown(value.get(i).unwrap_or(&Value::Null));
            (true, format!("be between {} and {}", bound(0), bound(1)))
        }
        "prefix" => (true, format!("start with {}", listed(value, " or "))),
        "matches" => (true, format!("match the pattern {}", shown(value))),
        "exists" => (true, "be set".to_owned()),
        "missing" => (false, "be set".to_owned()),
        other => (true, format!("pass {other} {}", shown(value))),
    };
    if positive != negated {
        format!("{field} to {verb}")
    } else {
        format!("{field} not to {verb}")
    }
}

/// A value as an operator reads it: text without quotes, numbers and booleans as JSON, long
/// values cut.
fn shown(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > MAX_CHARS {
        let cut: String = text.chars().take(MAX_CHARS).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// A list of values (or one value), the first [`MAX_LISTED`] written out, joined by `sep`.
fn listed(value: &Value, sep: &str) -> String {
    let Value::Array(items) = value else {
        return shown(value);
    };
    let mut text = items
        .iter()
        .take(MAX_LISTED)
        .map(shown)
        .collect::<Vec<_>>()
        .join(sep);
    if items.len() > MAX_LISTED {
        text.push_str(&format!(" … ({} more)", items.len() - MAX_LISTED));
    }
    text
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
            { "name": "email", "type": "email", "pii": true }
        ]))
        .unwrap()
    }

    fn lead() -> Map<String, Value> {
        let Value::Object(lead) = json!({"state": "TX", "zip": "75001", "age": 17,
            "income": 52000.5, "homeowner": false, "moved_on": "2024-03-01"})
        else {
            unreachable!()
        };
        lead
    }

    /// The words for the first filter of `filters` against `lead()`.
    fn words(filter: Value) -> String {
        explain_filtered(&json!([filter]), "/filters/0", &schema(), &lead()).unwrap()
    }

    #[test]
    fn every_operator_is_told_in_words_with_both_values() {
        let cases = [
            (
                json!({"field": "state", "op": "eq", "value": "CA"}),
                "state is TX, but the contract requires state to be CA",
            ),
            (
                json!({"field": "state", "op": "ne", "value": "TX"}),
                "state is TX, but the contract requires state not to be TX",
            ),
            (
                json!({"field": "state", "op": "in", "value": ["CA", "NY"]}),
                "state is TX, but the contract requires state to be one of CA, NY",
            ),
            (
                json!({"field": "state", "op": "not_in", "value": ["TX", "OK"]}),
                "state is TX, but the contract requires state not to be one of TX, OK",
            ),
            (
                json!({"field": "age", "op": "gt", "value": 17}),
                "age is 17, but the contract requires age to be greater than 17",
            ),
            (
                json!({"field": "age", "op": "gte", "value": 18}),
                "age is 17, but the contract requires age to be at least 18",
            ),
            (
                json!({"field": "age", "op": "lt", "value": 17}),
                "age is 17, but the contract requires age to be less than 17",
            ),
            (
                json!({"field": "income", "op": "lte", "value": 50000}),
                "income is 52000.5, but the contract requires income to be at most 50000",
            ),
            (
                json!({"field": "age", "op": "between", "value": [25, 64]}),
                "age is 17, but the contract requires age to be between 25 and 64",
            ),
            (
                json!({"field": "moved_on", "op": "gt", "value": "2024-06-01"}),
                "moved_on is 2024-03-01, but the contract requires moved_on to be after 2024-06-01",
            ),
            (
                json!({"field": "moved_on", "op": "gte", "value": "2024-06-01"}),
                "moved_on is 2024-03-01, but the contract requires moved_on to be on or after 2024-06-01",
            ),
            (
                json!({"field": "moved_on", "op": "lt", "value": "2024-01-01"}),
                "moved_on is 2024-03-01, but the contract requires moved_on to be before 2024-01-01",
            ),
            (
                json!({"field": "moved_on", "op": "lte", "value": "2024-01-01"}),
                "moved_on is 2024-03-01, but the contract requires moved_on to be on or before 2024-01-01",
            ),
            (
                json!({"field": "homeowner", "op": "eq", "value": true}),
                "homeowner is false, but the contract requires homeowner to be true",
            ),
            (
                json!({"field": "zip", "op": "prefix", "value": ["760", "761", "762"]}),
                "zip is 75001, but the contract requires zip to start with 760 or 761 or 762",
            ),
            (
                json!({"field": "zip", "op": "prefix", "value": "8"}),
                "zip is 75001, but the contract requires zip to start with 8",
            ),
            (
                json!({"field": "zip", "op": "matches", "value": "^8[0-9]{4}$"}),
                "zip is 75001, but the contract requires zip to match the pattern ^8[0-9]{4}$",
            ),
            (
                json!({"field": "credit", "op": "exists"}),
                "the ping has no credit, but the contract requires credit to be set",
            ),
            (
                json!({"field": "zip", "op": "missing"}),
                "zip is 75001, but the contract requires zip not to be set",
            ),
            // A field the ping lacks fails every op but `missing`.
            (
                json!({"field": "credit", "op": "ne", "value": "poor"}),
                "the ping has no credit, but the contract requires credit not to be poor",
            ),
        ];
        for (filter, expected) in cases {
            assert_eq!(words(filter.clone()), expected, "{filter}");
        }
    }

    #[test]
    fn groups_say_which_part_failed() {
        assert_eq!(
            words(json!({"any": [
                {"field": "homeowner", "op": "eq", "value": true},
                {"field": "credit", "op": "in", "value": ["excellent", "good"]}]})),
            "none of the contract's alternatives held: homeowner is false, but the contract \
             requires homeowner to be true; or the ping has no credit, but the contract requires \
             credit to be one of excellent, good"
        );
        assert_eq!(
            words(json!({"all": [
                {"field": "state", "op": "eq", "value": "TX"},
                {"field": "age", "op": "gte", "value": 18}]})),
            "age is 17, but the contract requires age to be at least 18"
        );
        assert_eq!(
            words(json!({"not": {"field": "state", "op": "in", "value": ["TX"]}})),
            "state is TX, but the contract requires state not to be one of TX"
        );
        assert_eq!(
            words(json!({"not": {"all": [
                {"field": "state", "op": "eq", "value": "TX"},
                {"field": "age", "op": "lt", "value": 18}]}})),
            "state is TX, age is 17, but the contract requires not (all of: state to be TX; \
             age to be less than 18)"
        );
    }

    #[test]
    fn long_lists_and_values_are_cut() {
        let zips: Vec<String> = (0..25).map(|i| format!("{:05}", 80000 + i)).collect();
        let text = words(json!({"field": "zip", "op": "in", "value": zips}));
        assert!(text.ends_with("80018, 80019 … (5 more)"), "{text}");
        let long = "x".repeat(150);
        let text = words(json!({"field": "state", "op": "eq", "value": long}));
        assert!(text.ends_with(&format!("{}…", "x".repeat(100))), "{text}");
    }

    #[test]
    fn a_pii_value_is_never_written() {
        // Filters refuse PII fields, so a filter on one (the field made PII since) has no words.
        let filters = json!([{"field": "email", "op": "exists"}]);
        let mut lead = lead();
        lead.insert("email".into(), json!("ada@example.com"));
        assert_eq!(
            explain_filtered(&filters, "/filters/0", &schema(), &lead),
            None
        );
        // And the fact of a PII field says only whether it is set.
        let schema = schema();
        let prepared = schema.prepare(&lead);
        let words = Words {
            schema: &schema,
            lead: &lead,
            prepared: &prepared,
        };
        let email = schema.index_of("email").unwrap();
        assert_eq!(words.fact(email), "the ping's email is set");
        assert!(!words.fact(email).contains("ada"));
    }

    #[test]
    fn no_words_without_the_filter_and_a_filter_that_holds_now_says_so() {
        let filters = json!([{"field": "state", "op": "eq", "value": "TX"}]);
        assert_eq!(
            explain_filtered(&filters, "/filters/1", &schema(), &lead()),
            None
        );
        assert_eq!(
            explain_filtered(&filters, "/filters/x", &schema(), &lead()),
            None
        );
        assert_eq!(
            explain_filtered(
                &json!([{"field": "gone", "op": "exists"}]),
                "/filters/0",
                &schema(),
                &lead()
            ),
            None
        );
        assert_eq!(
            explain_filtered(&filters, "/filters/0", &schema(), &lead()).as_deref(),
            Some("the ping's values pass this filter now (state to be TX)")
        );
    }

    #[test]
    fn a_filter_is_described_without_a_lead() {
        assert_eq!(
            describe_filter(&json!({ "field": "state", "op": "in", "value": ["CA", "NY"] })),
            "state to be one of CA, NY"
        );
        assert_eq!(
            describe_filter(&json!({ "any": [
                { "field": "age", "op": "gte", "value": 50 },
                { "not": { "field": "homeowner", "op": "eq", "value": false } }
            ] })),
            "any of: age to be at least 50; homeowner not to be false"
        );
        assert_eq!(
            describe_filter(&json!({ "not": { "all": [{ "field": "zip", "op": "exists" }] } })),
            "not (all of: zip to be set)"
        );
    }
}
