//! An offer's field schema, compiled once per configuration load, and lead validation against it
//! (SPEC §2.1, §2.2, §4.2).
//!
//! Rules beyond the SPEC's letter, chosen here:
//! - `null` is the same as an absent field (so a required field sent as `null` is missing, and a
//!   PII field sent as `null` in a ping reveals nothing and is not refused).
//! - A required `string`, `email` or `phone` field that is blank (only whitespace) is missing.
//! - `pattern` is a regex searched anywhere in the value, like JSON Schema's: anchor it with
//!   `^…$`.
//! - For `string`, `min`/`max` bound the length in characters.
//! - `email` is checked after trimming: one `@`, a non-empty local part, a domain with an inner
//!   dot, no whitespace. `phone` keeps its digits only and must leave 10 (11 with a leading `1`).
//! - Errors are ordered by code, `pii_in_ping` first, then `unknown_field` (in the lead's key
//!   order), then `invalid_field` (in schema order), so a response's top-level code is the
//!   gravest; each field has at most one error. No message ever contains a value.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use regex::Regex;
use serde::Serialize;
use serde_json::{Map, Value};

use super::config::{ConfigError, FieldSpec, FieldType, from_json_at};
use super::validation::FieldRules;
use super::validation::zip::{ZipProblem, zip_state_problem};
use super::value::{Num, Scalar, parse_date, pointer_token};

/// Longest field name an offer may declare.
const MAX_FIELD_NAME_CHARS: usize = 100;

text_codes! {
    /// The code of one lead error, as in SPEC §2.4.
    pub enum LeadErrorCode {
        PiiInPing,
        UnknownField,
        InvalidField,
        PingPostMismatch,
        ConsentRequired,
        InvalidPhone,
        InvalidEmail,
        DisposableEmail,
        InvalidZip,
        ZipStateMismatch,
        EmailDomainUnreachable,
    }
}

/// One problem of a lead: the field (`/lead/<field>`), its code, and the rule broken
/// (never the value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeadError {
    pub pointer: String,
    pub code: LeadErrorCode,
    pub message: String,
}

/// An offer's fields, ready to validate leads and to back filters.
#[derive(Debug)]
pub struct CompiledSchema {
    fields: Vec<CompiledField>,
    by_name: HashMap<String, usize>,
}

/// One field of the schema with its rules compiled.
#[derive(Debug)]
pub(crate) struct CompiledField {
    pub(crate) name: String,
    /// `/lead/<name>`, escaped.
    pointer: String,
    pub(crate) field_type: FieldType,
    required: bool,
    pub(crate) pii: bool,
    pattern: Option<Regex>,
    allowed: Option<Vec<Scalar<'static>>>,
    min: Option<Bound>,
    max: Option<Bound>,
    /// The opt-in rules of the field's `validation` option (docs/validation.md).
    rules: FieldRules,
    /// The index of the state field a ZIP field's `zip_state` names.
    state_field: Option<usize>,
}

/// A `min`/`max` of a field, in the form its type compares by.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// A value bound of an `integer`, `number` or `date` field.
    Value(BoundValue),
    /// A length bound of a `string` field, in characters.
    Length(u64),
}

#[derive(Debug, Clone, Copy)]
enum BoundValue {
    Num(Num),
    Date(chrono::NaiveDate),
}

impl BoundValue {
    fn as_scalar(self) -> Scalar<'static> {
        match self {
            BoundValue::Num(n) => Scalar::Num(n),
            BoundValue::Date(d) => Scalar::Date(d),
        }
    }
}

/// The typed value of `value` for a field of `field_type`, or `None` when it does not fit.
/// Email and phone come back normalized.
pub(crate) fn scalar_of(field_type: FieldType, value: &Value) -> Option<Scalar<'_>> {
    match (field_type, value) {
        (FieldType::String, Value::String(s)) => Some(Scalar::Str(Cow::Borrowed(s))),
        (FieldType::Integer, Value::Number(n)) => n.as_i64().map(|i| Scalar::Num(Num::Int(i))),
        (FieldType::Number, _) => Num::from_json(value).map(Scalar::Num),
        (FieldType::Boolean, Value::Bool(b)) => Some(Scalar::Bool(*b)),
        (FieldType::Date, Value::String(s)) => parse_date(s).map(Scalar::Date),
        (FieldType::Email, Value::String(s)) => {
            is_email(s.trim()).then(|| Scalar::Str(Cow::Owned(normalize_email(s))))
        }
        (FieldType::Phone, Value::String(s)) => {
            normalize_phone(s).map(|p| Scalar::Str(Cow::Owned(p)))
        }
        _ => None,
    }
}

/// Trims and lower-cases an email address, as hashed for dedup (SPEC §2.1).
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The 10 digits of a US phone number: digits only, a leading `1` dropped from 11 digits
/// (SPEC §2.1); `None` when that does not leave 10 digits.
pub fn normalize_phone(phone: &str) -> Option<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    match digits.len() {
        10 => Some(digits),
        11 if digits.starts_with('1') => Some(digits[1..].to_owned()),
        _ => None,
    }
}

/// Whether `text` looks like an email address: one `@`, a non-empty local part, a domain with
/// a dot that neither starts nor ends it, no whitespace.
pub fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && !text.contains(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

impl CompiledSchema {
    /// Compiles an offer's `fields` column; errors point under `/fields`.
    pub fn compile(fields: &Value) -> Result<CompiledSchema, Vec<ConfigError>> {
        let Value::Array(items) = fields else {
            return Err(vec![ConfigError::new(
                "/fields",
                "must be an array of fields",
            )]);
        };
        let mut errors = Vec::new();
        let mut schema = CompiledSchema {
            fields: Vec::with_capacity(items.len()),
            by_name: HashMap::new(),
        };
        let mut names = HashSet::new();
        // (field index, its pointer, the state field it names) for each `zip_state` rule.
        let mut pairs = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("/fields/{i}");
            let spec: FieldSpec = match from_json_at(item, &at) {
                Ok(spec) => spec,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if !names.insert(spec.name.clone()) {
                errors.push(ConfigError::new(
                    format!("{at}/name"),
                    "duplicate field name",
                ));
                continue;
            }
            if let Some(field) = compile_field(spec, &at, &mut errors) {
                if let Some(state) = &field.rules.zip_state {
                    pairs.push((schema.fields.len(), at, state.clone()));
                }
                schema
                    .by_name
                    .insert(field.name.clone(), schema.fields.len());
                schema.fields.push(field);
            }
        }
        for (index, at, state) in pairs {
            let at = format!("{at}/validation/zip_state");
            match schema.by_name.get(&state).copied() {
                None => errors.push(ConfigError::new(at, "names no field of this offer")),
                Some(s) if s == index => {
                    errors.push(ConfigError::new(at, "must name another field"))
                }
                Some(s) if schema.fields[s].field_type != FieldType::String => {
                    errors.push(ConfigError::new(at, "must name a field of type string"))
                }
                Some(s) => schema.fields[index].state_field = Some(s),
            }
        }
        if errors.is_empty() {
            Ok(schema)
        } else {
            Err(errors)
        }
    }

    /// Index of the field called `name`.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The type of the field called `name`, `None` when the offer has no such field.
    pub fn field_type(&self, name: &str) -> Option<FieldType> {
        self.index_of(name).map(|i| self.fields[i].field_type)
    }

    /// The field at `index`.
    pub(crate) fn field(&self, index: usize) -> &CompiledField {
        &self.fields[index]
    }

    /// The lead's fields that are not PII: what a direct post pings with.
    pub fn without_pii(&self, lead: &Map<String, Value>) -> Map<String, Value> {
        lead.iter()
            .filter(|(name, _)| {
                self.by_name
                    .get(name.as_str())
                    .is_some_and(|&i| !self.fields[i].pii)
            })
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }

    /// The normalized email and phone of a full lead (its `email` and `phone` typed fields),
    /// as dedup keys hash them.
    pub fn consumer_keys(&self, lead: &Map<String, Value>) -> Vec<(&'static str, String)> {
        self.fields
            .iter()
            .filter_map(|field| {
                let value = lead.get(&field.name)?.as_str()?;
                match field.field_type {
                    FieldType::Email => Some(("email", normalize_email(value))),
                    FieldType::Phone => Some(("phone", normalize_phone(value)?)),
                    _ => None,
                }
            })
            .collect()
    }

    /// Typed view of a (validated) lead, built once per ping and shared by every contract's
    /// filters; values that do not fit their field's type are left out.
    pub fn prepare<'a>(&self, lead: &'a Map<String, Value>) -> PreparedLead<'a> {
        let values = self
            .fields
            .iter()
            .map(|field| {
                lead.get(&field.name)
                    .and_then(|v| scalar_of(field.field_type, v))
            })
            .collect();
        PreparedLead { values }
    }

    fn validate(&self, lead: &Map<String, Value>, ping: bool) -> Result<(), Vec<LeadError>> {
        let mut pii_errors = Vec::new();
        let mut unknown_errors = Vec::new();
        for (name, value) in lead {
            match self.by_name.get(name.as_str()) {
                None => unknown_errors.push(LeadError {
                    pointer: format!("/lead/{}", pointer_token(name)),
                    code: LeadErrorCode::UnknownField,
                    message: format!("{name} is not a field of this offer"),
                }),
                Some(&i) if ping && self.fields[i].pii && !value.is_null() => {
                    pii_errors.push(LeadError {
                        pointer: self.fields[i].pointer.clone(),
                        code: LeadErrorCode::PiiInPing,
                        message: format!("{name} is PII and not allowed in a ping"),
                    })
                }
                Some(_) => {}
            }
        }
        let mut errors = pii_errors;
        errors.append(&mut unknown_errors);
        let mut erred = vec![false; self.fields.len()];
        for (i, field) in self.fields.iter().enumerate() {
            if ping && field.pii {
                continue;
            }
            let problem = match lead.get(&field.name).filter(|v| !v.is_null()) {
                None => field.required.then(|| "is required".to_owned()),
                Some(value) => field.check(value).err(),
            };
            if let Some(rule) = problem {
                erred[i] = true;
                errors.push(LeadError {
                    pointer: field.pointer.clone(),
                    code: LeadErrorCode::InvalidField,
                    message: format!("{} {rule}", field.name),
                });
            }
        }
        self.check_rules(lead, ping, &mut erred, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

impl CompiledSchema {
    /// The opt-in rules (docs/validation.md) of the fields that passed their type's checks,
    /// in schema order, after every `invalid_field`: a value's own rule, then a ZIP field's
    /// state, reported at both fields. A ping checks only non-PII fields (a pair only when
    /// both are); a blank value is not checked.
    fn check_rules(
        &self,
        lead: &Map<String, Value>,
        ping: bool,
        erred: &mut [bool],
        errors: &mut Vec<LeadError>,
    ) {
        let text_of = |field: &CompiledField| {
            lead.get(&field.name)
                .and_then(Value::as_str)
                .filter(|text| !text.trim().is_empty())
        };
        for (i, field) in self.fields.iter().enumerate() {
            if (ping && field.pii) || erred[i] {
                continue;
            }
            let Some(text) = text_of(field) else {
                continue;
            };
            let digits = match field.field_type {
                FieldType::Phone => normalize_phone(text),
                _ => None,
            };
            if let Some((code, rule)) = field.rules.check(text, digits.as_deref()) {
                erred[i] = true;
                errors.push(LeadError {
                    pointer: field.pointer.clone(),
                    code,
                    message: format!("{} {rule}", field.name),
                });
                continue;
            }
            let Some(s) = field.state_field else {
                continue;
            };
            let state = &self.fields[s];
            if (ping && state.pii) || erred[s] {
                continue;
            }
            let Some(state_text) = text_of(state) else {
                continue;
            };
            if zip_state_problem(text, state_text) == Some(ZipProblem::StateMismatch) {
                erred[i] = true;
                erred[s] = true;
                errors.push(LeadError {
                    pointer: field.pointer.clone(),
                    code: LeadErrorCode::ZipStateMismatch,
                    message: format!(
                        "{} is not a ZIP code of the state in {}",
                        field.name, state.name
                    ),
                });
                errors.push(LeadError {
                    pointer: state.pointer.clone(),
                    code: LeadErrorCode::ZipStateMismatch,
                    message: format!(
                        "{} is not the state of the ZIP code in {}",
                        state.name, field.name
                    ),
                });
            }
        }
    }
}

/// An email field whose `require_mx` rule asks for a DNS look-up at the post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxCheck {
    /// `/lead/<field>`.
    pub pointer: String,
    pub field: String,
    /// The address's domain, lower-cased, without a trailing dot.
    pub domain: String,
}

impl MxCheck {
    /// The lead's error when the domain receives no mail (never the address or the domain).
    pub fn refusal(&self) -> LeadError {
        LeadError {
            pointer: self.pointer.clone(),
            code: LeadErrorCode::EmailDomainUnreachable,
            message: format!("{} is at a domain that receives no email", self.field),
        }
    }
}

impl CompiledSchema {
    /// The email fields of a (validated) post's lead whose `require_mx` rule is on and that
    /// hold a value, in schema order: what the post looks up (docs/validation.md).
    pub fn mx_checks(&self, lead: &Map<String, Value>) -> Vec<MxCheck> {
        self.fields
            .iter()
            .filter(|field| field.rules.require_mx && field.field_type == FieldType::Email)
            .filter_map(|field| {
                let text = lead.get(&field.name)?.as_str()?;
                let domain = super::validation::email::domain_of(text)?;
                Some(MxCheck {
                    pointer: field.pointer.clone(),
                    field: field.name.clone(),
                    domain,
                })
            })
            .collect()
    }
}

/// Validates a ping's lead (SPEC §2.1): no PII, no unknown field, required non-PII fields
/// present, every value fitting its field. Returns every error, not only the first.
pub fn validate_ping(
    schema: &CompiledSchema,
    lead: &Map<String, Value>,
) -> Result<(), Vec<LeadError>> {
    schema.validate(lead, true)
}

/// Validates a post's lead (SPEC §2.2): every required field, PII included, present; no
/// unknown field; every value fitting its field. Returns every error.
pub fn validate_post(
    schema: &CompiledSchema,
    lead: &Map<String, Value>,
) -> Result<(), Vec<LeadError>> {
    schema.validate(lead, false)
}

/// Binds a post to its ping (SPEC §2.2): every non-PII field the ping carried must be in the
/// post with the same value (numbers by value, `42` = `42.0`; email and phone normalized).
/// Fields the ping did not carry may be added.
pub fn check_post_matches_ping(
    schema: &CompiledSchema,
    ping_lead: &Map<String, Value>,
    post_lead: &Map<String, Value>,
) -> Result<(), Vec<LeadError>> {
    let errors: Vec<LeadError> = schema
        .fields
        .iter()
        .filter(|field| !field.pii)
        .filter_map(|field| {
            let pinged = ping_lead.get(&field.name).filter(|v| !v.is_null())?;
            let posted = post_lead.get(&field.name).filter(|v| !v.is_null());
            let same = posted.is_some_and(|posted| {
                match (
                    scalar_of(field.field_type, pinged),
                    scalar_of(field.field_type, posted),
                ) {
                    (Some(a), Some(b)) => a == b,
                    _ => pinged == posted,
                }
            });
            (!same).then(|| LeadError {
                pointer: field.pointer.clone(),
                code: LeadErrorCode::PingPostMismatch,
                message: format!("{} differs from the ping", field.name),
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// A lead's values by schema field, typed once per ping.
#[derive(Debug)]
pub struct PreparedLead<'a> {
    values: Vec<Option<Scalar<'a>>>,
}

impl PreparedLead<'_> {
    /// The value of the field at `index`, if the lead has one.
    pub(crate) fn value(&self, index: usize) -> Option<&Scalar<'_>> {
        self.values.get(index).and_then(Option::as_ref)
    }

    /// A copy that owns its strings, to share with the tasks of an auction.
    pub fn into_owned(self) -> PreparedLead<'static> {
        PreparedLead {
            values: self
                .values
                .into_iter()
                .map(|v| v.map(Scalar::into_owned))
                .collect(),
        }
    }
}

impl CompiledField {
    /// The rule `value` breaks, as a phrase that follows the field name.
    fn check(&self, value: &Value) -> Result<(), String> {
        let Some(scalar) = scalar_of(self.field_type, value) else {
            return Err(match self.field_type {
                FieldType::String => "must be a string",
                FieldType::Integer => "must be an integer",
                FieldType::Number => "must be a number",
                FieldType::Boolean => "must be true or false",
                FieldType::Date => "must be a date (YYYY-MM-DD)",
                FieldType::Email => "must be an email address",
                FieldType::Phone => "must be a phone number with 10 digits",
            }
            .to_owned());
        };
        if let Scalar::Str(text) = &scalar
            && self.required
            && text.trim().is_empty()
        {
            return Err("is required".to_owned());
        }
        if let Some(allowed) = &self.allowed
            && !allowed.contains(&scalar)
        {
            return Err("must be one of the allowed values".to_owned());
        }
        if let (Some(pattern), Scalar::Str(text)) = (&self.pattern, &scalar)
            && !pattern.is_match(text)
        {
            return Err("must match the field's pattern".to_owned());
        }
        if let Some(min) = self.min
            && bound_cmp(&scalar, min).is_some_and(|o| o.is_lt())
        {
            return Err(match min {
                Bound::Length(n) => format!("must have at least {n} characters"),
                Bound::Value(_) => "is below the field's minimum".to_owned(),
            });
        }
        if let Some(max) = self.max
            && bound_cmp(&scalar, max).is_some_and(|o| o.is_gt())
        {
            return Err(match max {
                Bound::Length(n) => format!("must have at most {n} characters"),
                Bound::Value(_) => "is above the field's maximum".to_owned(),
            });
        }
        Ok(())
    }
}

/// How a value stands against a bound.
fn bound_cmp(value: &Scalar<'_>, bound: Bound) -> Option<std::cmp::Ordering> {
    match (value, bound) {
        (Scalar::Str(text), Bound::Length(n)) => Some((text.chars().count() as u64).cmp(&n)),
        (_, Bound::Value(bound)) => value.compare(&bound.as_scalar()),
        _ => None,
    }
}

/// Compiles one field's rules, pushing every error found under `at`.
fn compile_field(
    spec: FieldSpec,
    at: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<CompiledField> {
    let before = errors.len();
    let field_type = spec.field_type;
    if spec.name.is_empty() || spec.name.chars().count() > MAX_FIELD_NAME_CHARS {
        errors.push(ConfigError::new(
            format!("{at}/name"),
            format!("must have 1 to {MAX_FIELD_NAME_CHARS} characters"),
        ));
    }
    let pattern = spec.pattern.as_deref().and_then(|pattern| {
        if field_type != FieldType::String {
            errors.push(ConfigError::new(
                format!("{at}/pattern"),
                format!("pattern does not apply to type {field_type}"),
            ));
            return None;
        }
        Regex::new(pattern)
            .map_err(|e| {
                errors.push(ConfigError::new(
                    format!("{at}/pattern"),
                    format!("invalid regex: {e}"),
                ))
            })
            .ok()
    });
    let allowed = spec.allowed.as_ref().and_then(|values| {
        if !matches!(
            field_type,
            FieldType::String | FieldType::Integer | FieldType::Number | FieldType::Date
        ) {
            errors.push(ConfigError::new(
                format!("{at}/enum"),
                format!("enum does not apply to type {field_type}"),
            ));
            return None;
        }
        if values.is_empty() {
            errors.push(ConfigError::new(
                format!("{at}/enum"),
                "must list at least one value",
            ));
        }
        let mut allowed = Vec::with_capacity(values.len());
        for (j, value) in values.iter().enumerate() {
            match scalar_of(field_type, value) {
                Some(scalar) => allowed.push(scalar.into_owned()),
                None => errors.push(ConfigError::new(
                    format!("{at}/enum/{j}"),
                    format!("must be a {field_type}"),
                )),
            }
        }
        Some(allowed)
    });
    let min = spec
        .min
        .as_ref()
        .and_then(|v| compile_bound(field_type, v, &format!("{at}/min"), errors));
    let max = spec
        .max
        .as_ref()
        .and_then(|v| compile_bound(field_type, v, &format!("{at}/max"), errors));
    if let (Some(min), Some(max)) = (min, max) {
        let ordered = match (min, max) {
            (Bound::Length(lo), Bound::Length(hi)) => lo <= hi,
            (Bound::Value(lo), Bound::Value(hi)) => lo
                .as_scalar()
                .compare(&hi.as_scalar())
                .is_some_and(|o| o.is_le()),
            _ => true,
        };
        if !ordered {
            errors.push(ConfigError::new(
                format!("{at}/max"),
                "must not be below min",
            ));
        }
    }
    let rules = match &spec.validation {
        Some(value) => FieldRules::compile(value, field_type, at, errors).unwrap_or_default(),
        None => FieldRules::default(),
    };
    (errors.len() == before).then(|| CompiledField {
        pointer: format!("/lead/{}", pointer_token(&spec.name)),
        name: spec.name,
        field_type,
        required: spec.required,
        pii: spec.pii,
        pattern,
        allowed,
        min,
        max,
        rules,
        state_field: None,
    })
}

/// Compiles a `min` or `max` for a field of `field_type`.
fn compile_bound(
    field_type: FieldType,
    value: &Value,
    at: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Bound> {
    let bound = match field_type {
        FieldType::String => value.as_u64().map(Bound::Length),
        FieldType::Integer | FieldType::Number => {
            Num::from_json(value).map(|n| Bound::Value(BoundValue::Num(n)))
        }
        FieldType::Date => value
            .as_str()
            .and_then(parse_date)
            .map(|d| Bound::Value(BoundValue::Date(d))),
        FieldType::Boolean | FieldType::Email | FieldType::Phone => {
            errors.push(ConfigError::new(
                at,
                format!("min and max do not apply to type {field_type}"),
            ));
            return None;
        }
    };
    if bound.is_none() {
        let expected = match field_type {
            FieldType::String => "must be a length: a whole number of characters",
            FieldType::Date => "must be a date (YYYY-MM-DD)",
            _ => "must be a number",
        };
        errors.push(ConfigError::new(at, expected));
    }
    bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn auto_insurance() -> CompiledSchema {
        CompiledSchema::compile(&json!([
            { "name": "state", "type": "string", "pattern": "^[A-Z]{2}$", "required": true },
            { "name": "zip", "type": "string", "pattern": "^[0-9]{5}$", "required": true },
            { "name": "age", "type": "integer", "min": 18, "max": 99 },
            { "name": "homeowner", "type": "boolean" },
            { "name": "credit", "type": "string", "enum": ["excellent", "good", "fair", "poor"] },
            { "name": "income", "type": "number", "min": 0.5 },
            { "name": "birthday", "type": "date", "min": "1900-01-01", "max": "2030-12-31" },
            { "name": "nickname", "type": "string", "min": 2, "max": 5 },
            { "name": "first_name", "type": "string", "pii": true, "required": true },
            { "name": "email", "type": "email", "pii": true, "required": true },
            { "name": "phone", "type": "phone", "pii": true, "required": true }
        ]))
        .unwrap()
    }

    fn lead(value: Value) -> Map<String, Value> {
        let Value::Object(map) = value else {
            panic!("not an object")
        };
        map
    }

    fn codes(errors: &[LeadError]) -> Vec<(&str, &str)> {
        errors
            .iter()
            .map(|e| (e.pointer.as_str(), e.code.as_str()))
            .collect()
    }

    #[test]
    fn a_good_ping_and_post_pass() {
        let schema = auto_insurance();
        let ping = lead(
            json!({"state": "TX", "zip": "75001", "age": 42, "homeowner": true, "credit": "good"}),
        );
        assert_eq!(validate_ping(&schema, &ping), Ok(()));
        let mut post = ping.clone();
        post.extend(lead(
            json!({"first_name": "Ada", "email": " Ada@Example.com ", "phone": "(214) 555-0123"}),
        ));
        assert_eq!(validate_post(&schema, &post), Ok(()));
    }

    #[test]
    fn a_ping_reports_every_error_gravest_first() {
        let schema = auto_insurance();
        let ping = lead(json!({
            "zip": "7500", "age": 42.5, "credit": "great", "email": "ada@example.com",
            "favorite_color": "blue", "homeowner": "yes", "phone": null
        }));
        let errors = validate_ping(&schema, &ping).unwrap_err();
        assert_eq!(
            codes(&errors),
            [
                ("/lead/email", "pii_in_ping"),
                ("/lead/favorite_color", "unknown_field"),
                ("/lead/state", "invalid_field"),
                ("/lead/zip", "invalid_field"),
                ("/lead/age", "invalid_field"),
                ("/lead/homeowner", "invalid_field"),
                ("/lead/credit", "invalid_field"),
            ]
        );
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "email is PII and not allowed in a ping",
                "favorite_color is not a field of this offer",
                "state is required",
                "zip must match the field's pattern",
                "age must be an integer",
                "homeowner must be true or false",
                "credit must be one of the allowed values",
            ]
        );
    }

    #[test]
    fn errors_never_echo_a_value() {
        let schema = auto_insurance();
        let post = lead(json!({"state": "TX", "zip": "75001", "first_name": "Ada",
                               "email": "ada.lovelace@nowhere", "phone": "555-0123-SECRET"}));
        let errors = validate_post(&schema, &post).unwrap_err();
        assert_eq!(
            codes(&errors),
            [
                ("/lead/email", "invalid_field"),
                ("/lead/phone", "invalid_field")
            ]
        );
        for error in &errors {
            let text = serde_json::to_string(error).unwrap();
            assert!(
                !text.contains("lovelace") && !text.contains("0123") && !text.contains("SECRET"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_post_needs_every_required_field_pii_included() {
        let schema = auto_insurance();
        let post = lead(
            json!({"state": "TX", "zip": "75001", "first_name": "  ", "email": "ada@example.com"}),
        );
        let errors = validate_post(&schema, &post).unwrap_err();
        assert_eq!(
            codes(&errors),
            [
                ("/lead/first_name", "invalid_field"),
                ("/lead/phone", "invalid_field")
            ]
        );
        assert_eq!(errors[1].message, "phone is required");
    }

    #[test]
    fn numbers_bounds_dates_and_lengths_are_checked() {
        let schema = auto_insurance();
        let base = json!({"state": "TX", "zip": "75001"});
        let check = |extra: Value| {
            let mut ping = lead(base.clone());
            ping.extend(lead(extra));
            validate_ping(&schema, &ping).map_err(|e| e[0].message.clone())
        };
        assert_eq!(check(json!({"age": 18})), Ok(()));
        assert_eq!(check(json!({"age": 99})), Ok(()));
        assert_eq!(
            check(json!({"age": 17})),
            Err("age is below the field's minimum".into())
        );
        assert_eq!(
            check(json!({"age": 100})),
            Err("age is above the field's maximum".into())
        );
        assert_eq!(
            check(json!({"age": "42"})),
            Err("age must be an integer".into())
        );
        assert_eq!(check(json!({"income": 0.5})), Ok(()));
        assert_eq!(check(json!({"income": 1})), Ok(()));
        assert_eq!(
            check(json!({"income": 0.49})),
            Err("income is below the field's minimum".into())
        );
        assert_eq!(check(json!({"birthday": "2000-02-29"})), Ok(()));
        assert_eq!(
            check(json!({"birthday": "2001-02-29"})),
            Err("birthday must be a date (YYYY-MM-DD)".into())
        );
        assert_eq!(
            check(json!({"birthday": "1899-12-31"})),
            Err("birthday is below the field's minimum".into())
        );
        assert_eq!(check(json!({"nickname": "Añaé"})), Ok(()));
        assert_eq!(
            check(json!({"nickname": "A"})),
            Err("nickname must have at least 2 characters".into())
        );
        assert_eq!(
            check(json!({"nickname": "Adalove"})),
            Err("nickname must have at most 5 characters".into())
        );
        assert_eq!(check(json!({"age": null})), Ok(()));
    }

    #[test]
    fn emails_and_phones_normalize() {
        assert_eq!(normalize_email("  Ada@Example.COM "), "ada@example.com");
        assert_eq!(
            normalize_phone("(214) 555-0123").as_deref(),
            Some("2145550123")
        );
        assert_eq!(
            normalize_phone("+1 214 555 0123").as_deref(),
            Some("2145550123")
        );
        assert_eq!(
            normalize_phone("12145550123").as_deref(),
            Some("2145550123")
        );
        assert_eq!(normalize_phone("22145550123"), None);
        assert_eq!(normalize_phone("555-0123"), None);
        for good in ["ada@example.com", "a.b+c@mail.example.co.uk"] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "a@b@c.com",
            "ada @example.com",
            "ada@.com",
            "ada@example.",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn the_post_must_repeat_the_ping() {
        let schema = auto_insurance();
        let ping = lead(json!({"state": "TX", "zip": "75001", "age": 42, "income": 5}));
        let same = lead(
            json!({"state": "TX", "zip": "75001", "age": 42, "income": 5.0, "credit": "good", "email": "a@b.co"}),
        );
        assert_eq!(check_post_matches_ping(&schema, &ping, &same), Ok(()));
        let swapped = lead(json!({"state": "OK", "zip": "75001", "income": 5}));
        let errors = check_post_matches_ping(&schema, &ping, &swapped).unwrap_err();
        assert_eq!(
            codes(&errors),
            [
                ("/lead/state", "ping_post_mismatch"),
                ("/lead/age", "ping_post_mismatch")
            ]
        );
    }

    #[test]
    fn prepared_leads_hold_typed_values() {
        let schema = auto_insurance();
        let ping =
            lead(json!({"state": "TX", "age": 42, "homeowner": "not a bool", "income": 1.5}));
        let prepared = schema.prepare(&ping);
        let value = |name: &str| prepared.value(schema.index_of(name).unwrap()).cloned();
        assert_eq!(value("state"), Some(Scalar::Str(Cow::Borrowed("TX"))));
        assert_eq!(value("age"), Some(Scalar::Num(Num::Int(42))));
        assert_eq!(value("income"), Some(Scalar::Num(Num::Float(1.5))));
        assert_eq!(value("homeowner"), None);
        assert_eq!(value("zip"), None);
    }

    #[test]
    fn field_names_are_escaped_in_pointers() {
        let schema =
            CompiledSchema::compile(&json!([{"name": "a/b", "type": "string", "required": true}]))
                .unwrap();
        let errors = validate_ping(&schema, &Map::new()).unwrap_err();
        assert_eq!(errors[0].pointer, "/lead/a~1b");
    }

    fn with_rules() -> CompiledSchema {
        CompiledSchema::compile(&json!([
            { "name": "state", "type": "string", "required": true },
            { "name": "zip", "type": "string", "required": true,
              "validation": { "zip_state": "state" } },
            { "name": "email", "type": "email", "pii": true, "required": true,
              "validation": { "strict_syntax": true, "refuse_disposable": true } },
            { "name": "phone", "type": "phone", "pii": true, "required": true,
              "validation": { "nanp": true } },
            { "name": "work_phone", "type": "phone", "pii": true }
        ]))
        .unwrap()
    }

    #[test]
    fn rules_pass_a_real_lead() {
        let schema = with_rules();
        let ping = lead(json!({"state": "TX", "zip": "75001"}));
        assert_eq!(validate_ping(&schema, &ping), Ok(()));
        let post = lead(
            json!({"state": "tx", "zip": "75001-1234", "email": "Ada@Example.com",
                               "phone": "+1 (214) 555-0200", "work_phone": "(214) 555-0123"}),
        );
        assert_eq!(validate_post(&schema, &post), Ok(()));
    }

    #[test]
    fn a_ping_checks_the_zip_and_its_state() {
        let schema = with_rules();
        let errors =
            validate_ping(&schema, &lead(json!({"state": "CA", "zip": "75001"}))).unwrap_err();
        assert_eq!(
            codes(&errors),
            [
                ("/lead/zip", "zip_state_mismatch"),
                ("/lead/state", "zip_state_mismatch")
            ]
        );
        assert_eq!(
            errors[0].message,
            "zip is not a ZIP code of the state in state"
        );
        let errors =
            validate_ping(&schema, &lead(json!({"state": "TX", "zip": "7500"}))).unwrap_err();
        assert_eq!(codes(&errors), [("/lead/zip", "invalid_zip")]);
        // A type error is the field's one error; the pair is then not judged.
        let errors =
            validate_ping(&schema, &lead(json!({"state": 5, "zip": "75001"}))).unwrap_err();
        assert_eq!(codes(&errors), [("/lead/state", "invalid_field")]);
    }

    #[test]
    fn a_post_checks_pii_rules_and_never_echoes_them() {
        let schema = with_rules();
        let post = lead(
            json!({"state": "TX", "zip": "90210", "email": "ada.lovelace@mailinator.com",
                               "phone": "(214) 555-0123", "work_phone": "911-555-1234"}),
        );
        let errors = validate_post(&schema, &post).unwrap_err();
        assert_eq!(
            codes(&errors),
            [
                ("/lead/zip", "zip_state_mismatch"),
                ("/lead/state", "zip_state_mismatch"),
                ("/lead/email", "disposable_email"),
                ("/lead/phone", "invalid_phone"),
            ]
        );
        for error in &errors {
            let text = serde_json::to_string(error).unwrap();
            for value in ["90210", "lovelace", "mailinator", "214", "0123", "TX"] {
                assert!(!text.contains(value), "{text}");
            }
        }
        let post = lead(
            json!({"state": "TX", "zip": "75001", "email": "ada..x@example.com",
                               "phone": "2115550200"}),
        );
        assert_eq!(
            codes(&validate_post(&schema, &post).unwrap_err()),
            [
                ("/lead/email", "invalid_email"),
                ("/lead/phone", "invalid_phone")
            ]
        );
    }

    #[test]
    fn type_errors_come_before_rule_errors() {
        let schema = with_rules();
        let post = lead(
            json!({"state": "TX", "zip": "75001", "email": "ada@mailinator.com",
                               "phone": "12"}),
        );
        assert_eq!(
            codes(&validate_post(&schema, &post).unwrap_err()),
            [
                ("/lead/phone", "invalid_field"),
                ("/lead/email", "disposable_email")
            ]
        );
    }

    #[test]
    fn a_pii_state_is_paired_at_the_post_only() {
        let schema = CompiledSchema::compile(&json!([
            { "name": "zip", "type": "string", "validation": { "zip_state": "state" } },
            { "name": "state", "type": "string", "pii": true }
        ]))
        .unwrap();
        assert_eq!(
            validate_ping(&schema, &lead(json!({"zip": "75001"}))),
            Ok(())
        );
        let post = lead(json!({"zip": "75001", "state": "NY"}));
        assert_eq!(
            codes(&validate_post(&schema, &post).unwrap_err()),
            [
                ("/lead/zip", "zip_state_mismatch"),
                ("/lead/state", "zip_state_mismatch")
            ]
        );
        assert_eq!(
            validate_post(&schema, &lead(json!({"zip": "75001", "state": " "}))),
            Ok(())
        );
    }

    #[test]
    fn rules_that_do_not_fit_are_refused_with_pointers() {
        let errors = CompiledSchema::compile(&json!([
            { "name": "state", "type": "integer" },
            { "name": "zip", "type": "string", "validation": { "zip_state": "state" } },
            { "name": "zip2", "type": "string", "validation": { "zip_state": "nowhere" } },
            { "name": "zip3", "type": "string", "validation": { "zip_state": "zip3" } },
            { "name": "phone", "type": "string", "validation": { "nanp": true } },
            { "name": "email", "type": "phone", "validation": { "refuse_disposable": true } },
            { "name": "x", "type": "email", "validation": { "mx": true } }
        ]))
        .unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/fields/4/validation/nanp",
                "/fields/5/validation/refuse_disposable",
                "/fields/6/validation",
                "/fields/1/validation/zip_state",
                "/fields/2/validation/zip_state",
                "/fields/3/validation/zip_state",
            ]
        );
        assert_eq!(errors[3].message, "must name a field of type string");
        assert_eq!(errors[4].message, "names no field of this offer");
        assert_eq!(errors[5].message, "must name another field");
    }

    #[test]
    fn bad_schemas_are_reported_with_pointers() {
        let errors = CompiledSchema::compile(&json!([
            { "name": "state", "type": "string", "pattern": "([A-Z]" },
            { "name": "state", "type": "string" },
            { "name": "", "type": "text" },
            { "name": "ok", "type": "boolean", "pattern": "x", "enum": [true], "min": 1 },
            { "name": "age", "type": "integer", "enum": [1, "2"], "min": 10, "max": 5 },
            { "name": "day", "type": "date", "min": "2024-02-30" },
            { "name": "nick", "type": "string", "min": -1, "max": 1.5 },
            { "name": "x", "type": "string", "enum": [] },
            { "name": "", "type": "string" },
            { "name": "y", "type": "integer", "required": "yes" }
        ]))
        .unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/fields/0/pattern",
                "/fields/1/name",
                "/fields/2",
                "/fields/3/pattern",
                "/fields/3/enum",
                "/fields/3/min",
                "/fields/4/enum/1",
                "/fields/4/max",
                "/fields/5/min",
                "/fields/6/min",
                "/fields/6/max",
                "/fields/7/enum",
                "/fields/8/name",
                "/fields/9",
            ]
        );
        assert!(errors[0].message.starts_with("invalid regex"));
        assert_eq!(errors[1].message, "duplicate field name");
        assert!(CompiledSchema::compile(&json!({})).is_err());
    }
}
