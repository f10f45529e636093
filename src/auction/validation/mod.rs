//! Lead validation rules beyond a field's type (docs/validation.md): opt-in per field by the
//! field's `validation` option, compiled once with the offer's schema.
//!
//! - `phone`: `{"nanp": true}`: a dialable North American number ([`phone::nanp_problem`]).
//! - `email`: `{"strict_syntax": true, "refuse_disposable": true}`: a practical address
//!   syntax ([`email::syntax_problem`]); no disposable domain ([`email::is_disposable`]).
//!   `{"require_mx": true}`: a domain that receives mail; only its decisions are here
//!   ([`mx`]), the DNS look-up is at the post's edge (`crate::validation_mx`).
//! - `string`: `{"zip_state": "<state field>"}`: a US ZIP code, consistent with the state in
//!   the named field ([`zip::zip_state_problem`]).
//!
//! Everything here is pure: the data tables are compiled into the binary.

pub mod email;
pub mod mx;
pub mod phone;
pub mod zip;

use serde::Deserialize;
use serde_json::Value;

use super::config::{ConfigError, FieldType, from_json_at};
use super::schema::LeadErrorCode;

/// A field's `validation` option as written (every rule off by default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesSpec {
    #[serde(default)]
    nanp: bool,
    #[serde(default)]
    strict_syntax: bool,
    #[serde(default)]
    refuse_disposable: bool,
    #[serde(default)]
    require_mx: bool,
    #[serde(default)]
    zip_state: Option<String>,
}

/// The rules of one field, compiled.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldRules {
    /// `phone`: NANP area code and exchange rules.
    pub nanp: bool,
    /// `email`: the strict practical syntax.
    pub strict_syntax: bool,
    /// `email`: no disposable domain.
    pub refuse_disposable: bool,
    /// `email`: a domain that receives mail (MX, or A/AAAA without MX), looked up at the post
    /// only and only when the server's `mx_lookup` setting is on; not judged by [`Self::check`].
    pub require_mx: bool,
    /// `string`: the value is a US ZIP whose state is in the field so named.
    pub zip_state: Option<String>,
}

impl FieldRules {
    /// Reads and checks a field's `validation` option (`at` is the field's pointer), pushing
    /// each rule that does not fit the field's type at its own pointer.
    pub fn compile(
        value: &Value,
        field_type: FieldType,
        at: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Option<FieldRules> {
        let at = format!("{at}/validation");
        if !value.is_object() {
            errors.push(ConfigError::new(at, "must be an object of rules"));
            return None;
        }
        let spec: RulesSpec = match from_json_at(value, &at) {
            Ok(spec) => spec,
            Err(e) => {
                errors.push(e);
                return None;
            }
        };
        let before = errors.len();
        let mut fits = |on: bool, rule: &str, types: &[FieldType]| {
            if on && !types.contains(&field_type) {
                let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
                errors.push(ConfigError::new(
                    format!("{at}/{rule}"),
                    format!(
                        "{rule} applies to type {}, not {field_type}",
                        names.join(" or ")
                    ),
                ));
            }
        };
        fits(spec.nanp, "nanp", &[FieldType::Phone]);
        fits(spec.strict_syntax, "strict_syntax", &[FieldType::Email]);
        fits(
            spec.refuse_disposable,
            "refuse_disposable",
            &[FieldType::Email],
        );
        fits(spec.require_mx, "require_mx", &[FieldType::Email]);
        fits(spec.zip_state.is_some(), "zip_state", &[FieldType::String]);
        if spec.zip_state.as_deref().is_some_and(str::is_empty) {
            errors.push(ConfigError::new(
                format!("{at}/zip_state"),
                "must name the offer's state field",
            ));
        }
        (errors.len() == before).then_some(FieldRules {
            nanp: spec.nanp,
            strict_syntax: spec.strict_syntax,
            refuse_disposable: spec.refuse_disposable,
            require_mx: spec.require_mx,
            zip_state: spec.zip_state,
        })
    }

    /// The rule a value of the field breaks, with its code and a phrase that follows the
    /// field name (never the value). `text` is the value as sent, already known to fit the
    /// field's type; `digits` its 10 normalized digits for a phone.
    pub fn check(&self, text: &str, phone_digits: Option<&str>) -> Option<(LeadErrorCode, String)> {
        if self.nanp
            && let Some(digits) = phone_digits
            && let Some(problem) = phone::nanp_problem(digits)
        {
            return Some((LeadErrorCode::InvalidPhone, problem.phrase().to_owned()));
        }
        if self.strict_syntax
            && let Some(problem) = email::syntax_problem(text.trim())
        {
            return Some((LeadErrorCode::InvalidEmail, problem.phrase().to_owned()));
        }
        if self.refuse_disposable && email::is_disposable(text) {
            return Some((
                LeadErrorCode::DisposableEmail,
                "is at a disposable email domain".to_owned(),
            ));
        }
        if self.zip_state.is_some() {
            match zip::zip_problem(text) {
                Some(zip::ZipProblem::Format) => {
                    return Some((
                        LeadErrorCode::InvalidZip,
                        "must be a US ZIP code (5 digits, or ZIP+4)".to_owned(),
                    ));
                }
                Some(_) => {
                    return Some((
                        LeadErrorCode::InvalidZip,
                        "is not a ZIP code in use".to_owned(),
                    ));
                }
                None => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(value: Value, field_type: FieldType) -> Result<FieldRules, Vec<String>> {
        let mut errors = Vec::new();
        FieldRules::compile(&value, field_type, "/fields/3", &mut errors).ok_or(
            errors
                .iter()
                .map(|e| format!("{} {}", e.pointer, e.message))
                .collect(),
        )
    }

    #[test]
    fn rules_compile_for_their_types_only() {
        assert_eq!(
            compile(json!({"nanp": true}), FieldType::Phone).unwrap(),
            FieldRules {
                nanp: true,
                ..FieldRules::default()
            }
        );
        assert!(
            compile(
                json!({"strict_syntax": true, "refuse_disposable": true}),
                FieldType::Email
            )
            .is_ok()
        );
        assert!(compile(json!({"zip_state": "state"}), FieldType::String).is_ok());
        assert_eq!(
            compile(json!({"require_mx": true}), FieldType::Email).unwrap(),
            FieldRules {
                require_mx: true,
                ..FieldRules::default()
            }
        );
        assert_eq!(
            compile(json!({"require_mx": true}), FieldType::Phone).unwrap_err(),
            ["/fields/3/validation/require_mx require_mx applies to type email, not phone"]
        );
        assert!(compile(json!({"require_mx": 1}), FieldType::Email).is_err());
        assert!(compile(json!({}), FieldType::Integer).is_ok());
        assert_eq!(
            compile(
                json!({"nanp": true, "refuse_disposable": true}),
                FieldType::String
            )
            .unwrap_err(),
            [
                "/fields/3/validation/nanp nanp applies to type phone, not string",
                "/fields/3/validation/refuse_disposable refuse_disposable applies to type email, not string",
            ]
        );
        assert_eq!(
            compile(json!({"zip_state": "state"}), FieldType::Integer).unwrap_err(),
            ["/fields/3/validation/zip_state zip_state applies to type string, not integer"]
        );
        assert_eq!(
            compile(json!({"zip_state": ""}), FieldType::String).unwrap_err(),
            ["/fields/3/validation/zip_state must name the offer's state field"]
        );
        let unknown = compile(json!({"nanpa": true}), FieldType::Phone).unwrap_err();
        assert!(
            unknown[0].starts_with("/fields/3/validation "),
            "{unknown:?}"
        );
        assert!(compile(json!({"nanp": "yes"}), FieldType::Phone).is_err());
        assert!(compile(json!([]), FieldType::Phone).is_err());
    }

    #[test]
    fn checks_name_their_code() {
        let rules = |v: Value, t| compile(v, t).unwrap();
        let phone = rules(json!({"nanp": true}), FieldType::Phone);
        assert_eq!(
            phone
                .check("(214) 555-0123", Some("2145550123"))
                .map(|e| e.0),
            Some(LeadErrorCode::InvalidPhone)
        );
        assert_eq!(phone.check("(214) 555-0200", Some("2145550200")), None);
        let email = rules(
            json!({"strict_syntax": true, "refuse_disposable": true}),
            FieldType::Email,
        );
        assert_eq!(
            email.check("ada@mailinator.com", None).map(|e| e.0),
            Some(LeadErrorCode::DisposableEmail)
        );
        assert_eq!(
            email.check("a..b@example.com", None).map(|e| e.0),
            Some(LeadErrorCode::InvalidEmail)
        );
        assert_eq!(email.check(" ada@example.com ", None), None);
        let zip = rules(json!({"zip_state": "state"}), FieldType::String);
        assert_eq!(
            zip.check("7500", None).map(|e| e.0),
            Some(LeadErrorCode::InvalidZip)
        );
        assert_eq!(
            zip.check("00001", None).map(|e| e.0),
            Some(LeadErrorCode::InvalidZip)
        );
        assert_eq!(zip.check("75001", None), None);
        assert_eq!(
            FieldRules::default().check("ada@mailinator.com", Some("2145550123")),
            None
        );
    }
}
