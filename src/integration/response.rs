//! Response rules (docs/buyer-integrations.md, `response`): how a buyer's answer to an RTB
//! call or a delivery is read. A contract's `response` (and the older keys it replaces) is
//! checked and compiled once, when the configuration loads, into [`Rules`]; each call reads its
//! answer through an [`Answer`], which parses the body at most once, and only when a rule
//! needs it. What the rules mean (the verdict, the bid) is decided by the callers:
//! `buyers::delivery::judge` and `auction::parse_rtb_answer`.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::sync::{Arc, LazyLock};

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::xml::{self, XmlPath};
use crate::auction::{ConfigError, is_json_pointer};
use crate::money::{ExtraDecimals, Money};

/// Longest regular expression a rule may hold, in bytes.
const MAX_REGEX_BYTES: usize = 1024;
/// Bound on a compiled regular expression's size (the regex crate matches in linear time).
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Most values an `in` condition may list.
const MAX_IN_VALUES: usize = 100;

/// Which outbound call a `response` belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `pricing.response`.
    Rtb,
    /// `delivery.response`.
    Delivery,
}

impl Call {
    fn condition_keys(self) -> &'static [&'static str] {
        match self {
            Call::Rtb => &["no_bid", "rejected"],
            Call::Delivery => &["accepted", "duplicate", "rejected"],
        }
    }

    fn locator_keys(self) -> &'static [&'static str] {
        match self {
            Call::Rtb => &["exclusive_bid", "shared_bid", "ref", "reason"],
            Call::Delivery => &["reason"],
        }
    }

    fn outcomes(self) -> &'static [Outcome] {
        match self {
            Call::Rtb => &[Outcome::NoBid, Outcome::Rejected, Outcome::Error],
            Call::Delivery => &[
                Outcome::Accepted,
                Outcome::Duplicate,
                Outcome::Rejected,
                Outcome::Failed,
            ],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Call::Rtb => "an RTB call",
            Call::Delivery => "a delivery",
        }
    }
}

text_codes! {
    /// How an answer is parsed for a `path`.
    pub enum Format {
        Json,
        Xml,
        Text,
    }
}

text_codes! {
    /// What a `status` rule decides.
    pub enum Outcome {
        /// Delivery: the buyer took the lead.
        Accepted,
        /// Delivery: the buyer has this consumer already (its own dedup).
        Duplicate,
        /// Delivery: declined; RTB: a no-bid stating a reason.
        Rejected,
        /// Delivery: no usable answer.
        Failed,
        /// RTB: no bid.
        NoBid,
        /// RTB: the call failed (`rtb_error`).
        Error,
    }
}

/// Where a value is in an answer.
#[derive(Debug, Clone)]
pub enum Locator {
    /// A JSON pointer, in a JSON answer.
    Json(String),
    /// An element path, in an XML answer.
    Xml(XmlPath),
    /// A regular expression on the raw answer: its capture group `group` (0: the whole match).
    Regex { regex: Regex, group: usize },
}

impl Locator {
    /// How the locator is named in a message: its path, or `the <key> regex`.
    pub fn label(&self, key: &str) -> String {
        match self {
            Locator::Json(pointer) => pointer.clone(),
            Locator::Xml(_) | Locator::Regex { .. } => key.to_owned(),
        }
    }
}

/// A condition's test.
#[derive(Debug, Clone)]
pub enum Test {
    /// Compared as text.
    Equals(String),
    In(Vec<String>),
    Matches(Regex),
    Exists(bool),
    /// The older `accept` rule: the JSON value equals this one exactly.
    EqualsJson(Value),
}

/// A locator with a test.
#[derive(Debug, Clone)]
pub struct Condition {
    pub locator: Locator,
    pub test: Test,
}

/// A call's compiled response rules.
#[derive(Debug, Clone)]
pub struct Rules {
    pub format: Format,
    /// Exact codes, checked before classes.
    codes: Vec<(u16, Outcome)>,
    /// `1xx` … `5xx`, by the status's first digit.
    classes: [Option<Outcome>; 6],
    // Delivery.
    pub accepted: Option<Condition>,
    pub duplicate: Option<Condition>,
    // Both.
    pub rejected: Option<Condition>,
    pub reason: Option<Locator>,
    // RTB.
    pub no_bid: Option<Condition>,
    pub exclusive_bid: Option<Locator>,
    pub shared_bid: Option<Locator>,
    pub reference: Option<Locator>,
}

impl Rules {
    fn empty(format: Format) -> Rules {
        Rules {
            format,
            codes: Vec::new(),
            classes: [None; 6],
            accepted: None,
            duplicate: None,
            rejected: None,
            reason: None,
            no_bid: None,
            exclusive_bid: None,
            shared_bid: None,
            reference: None,
        }
    }

    /// SPEC §3's reading of a call with no `response` and none of the older keys.
    pub fn native(call: Call) -> &'static Rules {
        static RTB: LazyLock<Rules> = LazyLock::new(|| {
            compile(Call::Rtb, None, &Legacy::default(), "/pricing").expect("native rules")
        });
        static DELIVERY: LazyLock<Rules> = LazyLock::new(|| {
            compile(Call::Delivery, None, &Legacy::default(), "/delivery").expect("native rules")
        });
        match call {
            Call::Rtb => &RTB,
            Call::Delivery => &DELIVERY,
        }
    }

    /// The `status` rule for an HTTP status: its exact code, else its class.
    pub fn status(&self, status: u16) -> Option<Outcome> {
        self.codes
            .iter()
            .find(|(code, _)| *code == status)
            .map(|(_, outcome)| *outcome)
            .or_else(|| {
                self.classes
                    .get(usize::from(status / 100))
                    .copied()
                    .flatten()
            })
    }
}

/// The older keys a `response` replaces, as the contract sets them.
#[derive(Debug, Default)]
pub struct Legacy<'a> {
    /// Delivery `accept`: `{path, equals}`.
    pub accept: Option<(&'a str, &'a Value)>,
    pub reason_path: Option<&'a str>,
    pub exclusive_bid_path: Option<&'a str>,
    pub shared_bid_path: Option<&'a str>,
    pub ref_path: Option<&'a str>,
}

/// The `response` key of `pricing` or `delivery`: kept as written (stored and answered as
/// is), with the rules compiled from it and the older keys when the configuration is parsed.
#[derive(Debug, Clone, Default)]
pub struct ResponseConfig {
    raw: Option<Value>,
    rules: Option<Arc<Rules>>,
}

impl ResponseConfig {
    /// Whether the contract has no `response` key.
    pub fn is_absent(&self) -> bool {
        self.raw.is_none()
    }

    /// The `response` key as written.
    pub fn raw(&self) -> Option<&Value> {
        self.raw.as_ref()
    }

    /// Compiles the rules (see [`compile`]) and keeps them; errors point under `at`.
    pub fn compile(
        &mut self,
        call: Call,
        legacy: &Legacy<'_>,
        at: &str,
    ) -> Result<(), Vec<ConfigError>> {
        let rules = compile(call, self.raw.as_ref(), legacy, at)?;
        self.rules = Some(Arc::new(rules));
        Ok(())
    }

    /// The compiled rules; SPEC §3's when not compiled (a configuration always is, by its
    /// `parse`).
    pub fn rules(&self, call: Call) -> &Rules {
        self.rules.as_deref().unwrap_or_else(|| Rules::native(call))
    }
}

/// Equal when written the same: the rules are compiled from what is written.
impl PartialEq for ResponseConfig {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for ResponseConfig {}

impl Serialize for ResponseConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ResponseConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(ResponseConfig {
            raw: Option::<Value>::deserialize(deserializer)?,
            rules: None,
        })
    }
}

/// Checks and compiles a call's `response` (at `<at>/response`) with the older keys (at
/// `<at>/<key>`), every error reported. The older keys' own syntax is checked by their
/// section's `parse`.
pub fn compile(
    call: Call,
    response: Option<&Value>,
    legacy: &Legacy<'_>,
    at: &str,
) -> Result<Rules, Vec<ConfigError>> {
    let base = format!("{at}/response");
    let mut errors = Vec::new();
    let empty = Map::new();
    let object = match response {
        None => &empty,
        Some(Value::Object(object)) => object,
        Some(_) => {
            return Err(vec![ConfigError::new(
                base,
                "must be an object of response rules",
            )]);
        }
    };
    let format = match object.get("format") {
        None => Format::Json,
        Some(value) => match value.as_str().and_then(|f| f.parse().ok()) {
            Some(format) => format,
            None => {
                errors.push(ConfigError::new(
                    format!("{base}/format"),
                    "must be json, xml or text",
                ));
                Format::Json
            }
        },
    };
    let mut rules = Rules::empty(format);
    for (key, value) in object {
        let pointer = format!("{base}/{}", crate::auction::pointer_token(key));
        let key = key.as_str();
        if key == "format" {
            continue;
        }
        if key == "status" {
            read_status(call, value, &pointer, &mut rules, &mut errors);
        } else if call.condition_keys().contains(&key) {
            if let Some(condition) = read_condition(format, value, &pointer, &mut errors) {
                *match key {
                    "accepted" => &mut rules.accepted,
                    "duplicate" => &mut rules.duplicate,
                    "rejected" => &mut rules.rejected,
                    _ => &mut rules.no_bid,
                } = Some(condition);
            }
        } else if call.locator_keys().contains(&key) {
            if let Some(locator) = read_locator(format, value, &pointer, &mut errors) {
                *match key {
                    "exclusive_bid" => &mut rules.exclusive_bid,
                    "shared_bid" => &mut rules.shared_bid,
                    "ref" => &mut rules.reference,
                    _ => &mut rules.reason,
                } = Some(locator);
            }
        } else {
            let mut known = vec!["format", "status"];
            known.extend(call.condition_keys());
            known.extend(call.locator_keys());
            errors.push(ConfigError::new(
                pointer,
                format!(
                    "is not a response rule of {}: {}",
                    call.name(),
                    known.join(", ")
                ),
            ));
        }
    }

    // The older keys: each compiles into the rule it stands for, never beside it.
    let mut older = |key: &str, replaces: &str| -> bool {
        if object.contains_key(replaces) {
            errors.push(ConfigError::new(
                format!("{at}/{key}"),
                format!("set either {key} or response.{replaces}, not both"),
            ));
            return false;
        }
        if format != Format::Json {
            errors.push(ConfigError::new(
                format!("{at}/{key}"),
                format!("is read as JSON: with response.format {format} use response.{replaces}"),
            ));
            return false;
        }
        true
    };
    let pointer = |path: &str| Locator::Json(path.to_owned());
    match call {
        Call::Delivery => {
            if let Some((path, equals)) = legacy.accept
                && older("accept", "accepted")
            {
                rules.accepted = Some(Condition {
                    locator: pointer(path),
                    test: Test::EqualsJson(equals.clone()),
                });
            }
        }
        Call::Rtb => {
            if let Some(path) = legacy.exclusive_bid_path
                && older("exclusive_bid_path", "exclusive_bid")
            {
                rules.exclusive_bid = Some(pointer(path));
            }
            if let Some(path) = legacy.shared_bid_path
                && older("shared_bid_path", "shared_bid")
            {
                rules.shared_bid = Some(pointer(path));
            }
            if let Some(path) = legacy.ref_path
                && older("ref_path", "ref")
            {
                rules.reference = Some(pointer(path));
            }
        }
    }
    if let Some(path) = legacy.reason_path
        && older("reason_path", "reason")
    {
        rules.reason = Some(pointer(path));
    }

    // SPEC §3.1's places of the bids and the reference, in JSON.
    if call == Call::Rtb {
        if format == Format::Json {
            rules
                .exclusive_bid
                .get_or_insert_with(|| pointer("/exclusive_bid"));
            rules
                .shared_bid
                .get_or_insert_with(|| pointer("/shared_bid"));
            rules.reference.get_or_insert_with(|| pointer("/ref"));
        } else if !object.contains_key("exclusive_bid") && !object.contains_key("shared_bid") {
            errors.push(ConfigError::new(
                base,
                format!("with format {format}, say where the bid is: exclusive_bid or shared_bid"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// `status`: `{"409": "duplicate", "4xx": "rejected"}`.
fn read_status(
    call: Call,
    value: &Value,
    at: &str,
    rules: &mut Rules,
    errors: &mut Vec<ConfigError>,
) {
    let Value::Object(statuses) = value else {
        errors.push(ConfigError::new(
            at,
            "must map HTTP statuses (409, 4xx) to verdicts",
        ));
        return;
    };
    for (key, outcome) in statuses {
        let pointer = format!("{at}/{}", crate::auction::pointer_token(key));
        let allowed = call.outcomes();
        let outcome = match outcome.as_str().and_then(|o| o.parse::<Outcome>().ok()) {
            Some(outcome) if allowed.contains(&outcome) => outcome,
            _ => {
                let words: Vec<&str> = allowed.iter().map(|o| o.as_str()).collect();
                errors.push(ConfigError::new(
                    &pointer,
                    format!("must be one of {}", words.join(", ")),
                ));
                continue;
            }
        };
        let bytes = key.as_bytes();
        if bytes.len() == 3
            && (b'1'..=b'5').contains(&bytes[0])
            && bytes[1..].eq_ignore_ascii_case(b"xx")
        {
            rules.classes[usize::from(bytes[0] - b'0')] = Some(outcome);
        } else if let Ok(code) = key.parse::<u16>()
            && (100..=599).contains(&code)
            && bytes.len() == 3
        {
            rules.codes.push((code, outcome));
        } else {
            errors.push(ConfigError::new(
                pointer,
                "must be an HTTP status (100 to 599) or a class (1xx to 5xx)",
            ));
        }
    }
}

const NOT_A_LOCATOR: &str = "must be a locator: {\"path\": …} or {\"regex\": …}";
const NOT_A_CONDITION: &str =
    "must be a condition such as {\"path\": \"/status\", \"equals\": \"ok\"}";

/// The JSON object `value`, or an error at `at` saying what it `must` be.
fn object_at<'v>(
    value: &'v Value,
    at: &str,
    must: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<&'v serde_json::Map<String, Value>> {
    let object = value.as_object();
    if object.is_none() {
        errors.push(ConfigError::new(at, must));
    }
    object
}

/// A locator: `{"path": …}` or `{"regex": …}`, with nothing else.
fn read_locator(
    format: Format,
    value: &Value,
    at: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Locator> {
    let object = object_at(value, at, NOT_A_LOCATOR, errors)?;
    for key in object.keys() {
        if !matches!(key.as_str(), "path" | "regex") {
            errors.push(ConfigError::new(
                format!("{at}/{}", crate::auction::pointer_token(key)),
                "is not part of a locator: path or regex",
            ));
        }
    }
    locate(format, object, at, errors)
}

/// The `path` or `regex` of a locator or condition.
fn locate(
    format: Format,
    object: &Map<String, Value>,
    at: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Locator> {
    match (object.get("path"), object.get("regex")) {
        (Some(_), Some(_)) => {
            errors.push(ConfigError::new(
                at,
                "has both a path and a regex: keep one",
            ));
            None
        }
        (None, None) => {
            errors.push(ConfigError::new(at, "needs a path or a regex"));
            None
        }
        (Some(path), None) => {
            let at = format!("{at}/path");
            let Some(path) = path.as_str() else {
                errors.push(ConfigError::new(at, "must be a string"));
                return None;
            };
            match format {
                Format::Json if is_json_pointer(path) => Some(Locator::Json(path.to_owned())),
                Format::Json => {
                    errors.push(ConfigError::new(
                        at,
                        "must be a JSON pointer such as /bid/amount",
                    ));
                    None
                }
                Format::Xml => match XmlPath::compile(path) {
                    Ok(path) => Some(Locator::Xml(path)),
                    Err(message) => {
                        errors.push(ConfigError::new(at, message));
                        None
                    }
                },
                Format::Text => {
                    errors.push(ConfigError::new(
                        at,
                        "a text answer has no paths: use a regex",
                    ));
                    None
                }
            }
        }
        (None, Some(regex)) => {
            let regex = compile_regex(regex, &format!("{at}/regex"), errors)?;
            let group = usize::from(regex.captures_len() > 1);
            Some(Locator::Regex { regex, group })
        }
    }
}

fn compile_regex(value: &Value, at: &str, errors: &mut Vec<ConfigError>) -> Option<Regex> {
    let Some(pattern) = value.as_str() else {
        errors.push(ConfigError::new(
            at,
            "must be a regular expression (a string)",
        ));
        return None;
    };
    if pattern.len() > MAX_REGEX_BYTES {
        errors.push(ConfigError::new(
            at,
            format!("is longer than {MAX_REGEX_BYTES} bytes"),
        ));
        return None;
    }
    match RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
    {
        Ok(regex) => Some(regex),
        Err(error) => {
            // The last line of the regex crate's message says what is wrong.
            let text = error.to_string();
            let why = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid")
                .trim()
                .trim_start_matches("error: ");
            errors.push(ConfigError::new(
                at,
                format!("is not a valid regular expression: {why}"),
            ));
            None
        }
    }
}

/// A condition: a locator and one test.
fn read_condition(
    format: Format,
    value: &Value,
    at: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Condition> {
    let object = object_at(value, at, NOT_A_CONDITION, errors)?;
    let mut tests = Vec::new();
    let mut valid = true;
    for (key, value) in object {
        let pointer = format!("{at}/{}", crate::auction::pointer_token(key));
        let test = match key.as_str() {
            "path" | "regex" => continue,
            "equals" => scalar_text(value)
                .map(Test::Equals)
                .ok_or("must be a string, number or boolean"),
            "in" => match value {
                Value::Array(items) if !items.is_empty() && items.len() <= MAX_IN_VALUES => items
                    .iter()
                    .map(scalar_text)
                    .collect::<Option<Vec<_>>>()
                    .map(Test::In)
                    .ok_or("must list strings, numbers or booleans"),
                _ => Err("must be a list of 1 to 100 values"),
            },
            "matches" => match compile_regex(value, &pointer, errors) {
                Some(regex) => Ok(Test::Matches(regex)),
                None => {
                    valid = false;
                    continue;
                }
            },
            "exists" => value
                .as_bool()
                .map(Test::Exists)
                .ok_or("must be true or false"),
            _ => {
                Err("is not part of a condition: path or regex, and equals, in, matches or exists")
            }
        };
        match test {
            Ok(test) => tests.push(test),
            Err(message) => {
                valid = false;
                errors.push(ConfigError::new(pointer, message));
            }
        }
    }
    let locator = locate(format, object, at, errors);
    let test = match tests.len() {
        1 => tests.pop(),
        0 if valid => {
            errors.push(ConfigError::new(
                at,
                "needs one test: equals, in, matches or exists",
            ));
            None
        }
        0 => None,
        _ => {
            errors.push(ConfigError::new(
                at,
                "has more than one test: keep one of equals, in, matches, exists",
            ));
            None
        }
    };
    Some(Condition {
        locator: locator?,
        test: test.filter(|_| valid)?,
    })
}

/// A configured value as the text it is compared as.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// The declared format could not parse the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable(pub Format);

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Format::Json => "not JSON",
            Format::Xml => "not XML",
            Format::Text => "not text",
        })
    }
}

/// A value found in an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Found<'a> {
    Json(&'a Value),
    Text(Cow<'a, str>),
}

impl Found<'_> {
    /// The value as text: a JSON string's own text, another JSON value as written.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Found::Json(Value::String(text)) => Cow::Borrowed(text),
            Found::Json(other) => Cow::Owned(other.to_string()),
            Found::Text(text) => Cow::Borrowed(text),
        }
    }

    /// An amount, exactly (a JSON number or numeric string, or decimal text), truncated to the
    /// cent; `Ok(None)` for an empty text.
    pub fn amount(&self) -> Result<Option<Money>, crate::money::MoneyError> {
        match self {
            Found::Json(value) => Money::from_json(value, ExtraDecimals::Truncate).map(Some),
            Found::Text(text) if text.trim().is_empty() => Ok(None),
            Found::Text(text) => Money::parse(text, ExtraDecimals::Truncate).map(Some),
        }
    }

    /// A reference: a JSON string or number, or a non-empty text.
    pub fn reference(&self) -> Option<Cow<'_, str>> {
        match self {
            Found::Json(Value::String(_) | Value::Number(_)) => Some(self.text()),
            Found::Json(_) => None,
            Found::Text(text) if text.is_empty() => None,
            Found::Text(text) => Some(Cow::Borrowed(text)),
        }
    }
}

enum Parsed<'a> {
    Json(Value),
    Xml(roxmltree::Document<'a>),
}

/// A buyer's answer being read: parsed once, on the first rule that needs it.
pub struct Answer<'a> {
    body: &'a [u8],
    format: Format,
    text: OnceCell<Cow<'a, str>>,
    parsed: OnceCell<Option<Parsed<'a>>>,
}

impl<'a> Answer<'a> {
    /// The body to read in `format`: an XML answer not in UTF-8 decoded (see
    /// [`xml::decode`]); any other as it is.
    pub fn decode(body: &[u8], format: Format) -> Cow<'_, [u8]> {
        match format {
            Format::Xml => xml::decode(body),
            Format::Json | Format::Text => Cow::Borrowed(body),
        }
    }

    /// An answer to read; an XML body must have been through [`Answer::decode`].
    pub fn new(body: &'a [u8], format: Format) -> Answer<'a> {
        Answer {
            body,
            format,
            text: OnceCell::new(),
            parsed: OnceCell::new(),
        }
    }

    /// The raw answer as text (invalid UTF-8 replaced).
    fn text(&self) -> &str {
        self.text.get_or_init(|| String::from_utf8_lossy(self.body))
    }

    fn parsed(&self) -> Result<&Parsed<'a>, Unreadable> {
        self.parsed
            .get_or_init(|| match self.format {
                // `exact_json` keeps every number as written: a bid is read exactly.
                Format::Json => crate::exact_json::from_slice(self.body)
                    .ok()
                    .map(Parsed::Json),
                Format::Xml => xml::parse(self.body).map(Parsed::Xml),
                Format::Text => None,
            })
            .as_ref()
            .ok_or(Unreadable(self.format))
    }

    /// The value at `locator`: `Ok(None)` when absent (a JSON `null` is absent), an error when
    /// the answer cannot be parsed for a path.
    pub fn find(&self, locator: &Locator) -> Result<Option<Found<'_>>, Unreadable> {
        Ok(match locator {
            Locator::Json(pointer) => match self.parsed()? {
                Parsed::Json(value) => value
                    .pointer(pointer)
                    .filter(|v| !v.is_null())
                    .map(Found::Json),
                Parsed::Xml(_) => None,
            },
            Locator::Xml(path) => match self.parsed()? {
                Parsed::Xml(doc) => path.find(doc).map(Found::Text),
                Parsed::Json(_) => None,
            },
            Locator::Regex { regex, group } => {
                let text = self.text();
                let found = if *group == 0 {
                    regex.find(text)
                } else {
                    regex.captures(text).and_then(|c| c.get(*group))
                };
                found.map(|m| Found::Text(Cow::Borrowed(m.as_str())))
            }
        })
    }

    /// Whether `condition` holds; an absent value holds only `exists: false`.
    pub fn holds(&self, condition: &Condition) -> Result<bool, Unreadable> {
        if let (Test::EqualsJson(expected), Locator::Json(pointer)) =
            (&condition.test, &condition.locator)
        {
            // The older `accept` compares JSON values exactly, `null` included.
            return Ok(match self.parsed()? {
                Parsed::Json(value) => value.pointer(pointer) == Some(expected),
                Parsed::Xml(_) => false,
            });
        }
        let Some(found) = self.find(&condition.locator)? else {
            return Ok(matches!(condition.test, Test::Exists(false)));
        };
        Ok(match &condition.test {
            Test::Exists(exists) => *exists,
            Test::EqualsJson(expected) => match &found {
                Found::Json(value) => *value == expected,
                Found::Text(_) => false,
            },
            Test::Equals(expected) => found.text() == expected.as_str(),
            Test::In(values) => {
                let text = found.text();
                values.iter().any(|v| *v == text)
            }
            Test::Matches(regex) => regex.is_match(&found.text()),
        })
    }

    /// The text at `locator`, if the answer has one (an unreadable answer has none).
    pub fn text_at(&self, locator: &Locator) -> Option<String> {
        self.find(locator)
            .ok()
            .flatten()
            .map(|found| found.text().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(call: Call, response: Value) -> Rules {
        compile(call, Some(&response), &Legacy::default(), "/delivery").unwrap()
    }

    fn errors(call: Call, response: Value, legacy: &Legacy<'_>) -> Vec<(String, String)> {
        let at = match call {
            Call::Rtb => "/pricing",
            Call::Delivery => "/delivery",
        };
        compile(call, Some(&response), legacy, at)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.pointer, e.message))
            .collect()
    }

    /// The pointers of the errors, sorted (the order of a JSON object's keys is not kept).
    fn pointers(call: Call, response: Value) -> Vec<String> {
        let mut pointers: Vec<String> = errors(call, response, &Legacy::default())
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        pointers.sort();
        pointers
    }

    fn holds(rules: &Rules, condition: &Option<Condition>, body: &str) -> Result<bool, Unreadable> {
        Answer::new(body.as_bytes(), rules.format).holds(condition.as_ref().unwrap())
    }

    #[test]
    fn json_conditions_compare_as_text() {
        let r = rules(
            Call::Delivery,
            json!({
                "accepted": { "path": "/status", "in": ["ok", "accepted"] },
                "duplicate": { "path": "/code", "equals": 1 },
                "rejected": { "path": "/message", "matches": "(?i)outside" },
                "reason": { "path": "/message" }
            }),
        );
        assert_eq!(holds(&r, &r.accepted, r#"{"status":"accepted"}"#), Ok(true));
        assert_eq!(holds(&r, &r.accepted, r#"{"status":"nope"}"#), Ok(false));
        assert_eq!(holds(&r, &r.accepted, r#"{}"#), Ok(false));
        assert_eq!(holds(&r, &r.duplicate, r#"{"code":1}"#), Ok(true));
        assert_eq!(holds(&r, &r.duplicate, r#"{"code":"1"}"#), Ok(true));
        assert_eq!(holds(&r, &r.duplicate, r#"{"code":2}"#), Ok(false));
        assert_eq!(holds(&r, &r.duplicate, r#"{"code":null}"#), Ok(false));
        assert_eq!(
            holds(&r, &r.rejected, r#"{"message":"Lead OUTSIDE area"}"#),
            Ok(true)
        );
        assert_eq!(
            holds(&r, &r.accepted, "not json"),
            Err(Unreadable(Format::Json))
        );
        let answer = Answer::new(br#"{"message":{"text":"x"}}"#, Format::Json);
        assert_eq!(
            answer.text_at(r.reason.as_ref().unwrap()).as_deref(),
            Some(r#"{"text":"x"}"#)
        );
    }

    #[test]
    fn exists_conditions_treat_null_and_absent_alike() {
        let r = rules(
            Call::Delivery,
            json!({
                "accepted": { "path": "/lead_id", "exists": true },
                "rejected": { "path": "/error", "exists": false }
            }),
        );
        assert_eq!(holds(&r, &r.accepted, r#"{"lead_id":0}"#), Ok(true));
        assert_eq!(holds(&r, &r.accepted, r#"{"lead_id":null}"#), Ok(false));
        assert_eq!(holds(&r, &r.rejected, r#"{"error":null}"#), Ok(true));
        assert_eq!(holds(&r, &r.rejected, r#"{"error":"x"}"#), Ok(false));
    }

    #[test]
    fn xml_conditions_read_elements_and_attributes() {
        let r = rules(
            Call::Delivery,
            json!({
                "format": "xml",
                "accepted": { "path": "/soap:Envelope/Body/Result/@status", "equals": "OK" },
                "duplicate": { "path": "/Envelope/Body/Result/Code[2]", "equals": 409 },
                "reason": { "path": "/Envelope/Body/Result/Message" }
            }),
        );
        let body = r#"<soap:Envelope xmlns:soap="urn:s"><soap:Body><x:Result xmlns:x="urn:x" status="OK">
            <x:Code>1</x:Code><x:Code>409</x:Code><x:Message>Already have it</x:Message></x:Result></soap:Body></soap:Envelope>"#;
        assert_eq!(holds(&r, &r.accepted, body), Ok(true));
        assert_eq!(holds(&r, &r.duplicate, body), Ok(true));
        let answer = Answer::new(body.as_bytes(), Format::Xml);
        assert_eq!(
            answer.text_at(r.reason.as_ref().unwrap()).as_deref(),
            Some("Already have it")
        );
        assert_eq!(
            holds(&r, &r.accepted, r#"{"status":"OK"}"#),
            Err(Unreadable(Format::Xml))
        );
    }

    #[test]
    fn regexes_read_their_first_group_or_the_whole_match() {
        let r = rules(
            Call::Rtb,
            json!({
                "format": "text",
                "exclusive_bid": { "regex": "bid=([0-9.]+)" },
                "ref": { "regex": "[A-Z]{3}-[0-9]+" },
                "no_bid": { "regex": "^(NO_BID|DECLINED)", "exists": true }
            }),
        );
        let answer = Answer::new(b"status=ok&bid=12.5&id=ABC-77", Format::Text);
        let bid = answer
            .find(r.exclusive_bid.as_ref().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(bid.amount(), Ok(Some(Money::from_cents(1250))));
        assert_eq!(
            answer.text_at(r.reference.as_ref().unwrap()).as_deref(),
            Some("ABC-77")
        );
        assert_eq!(holds(&r, &r.no_bid, "status=ok"), Ok(false));
        assert_eq!(holds(&r, &r.no_bid, "DECLINED: zip"), Ok(true));
        // A regex reads any answer, parseable or not.
        assert_eq!(holds(&r, &r.no_bid, "\u{fffd}NO_BID"), Ok(false));
    }

    #[test]
    fn amounts_are_exact_in_every_format() {
        let cents = |found: Found<'_>| found.amount().unwrap().map(Money::cents);
        assert_eq!(cents(Found::Text("38.505".into())), Some(3850));
        assert_eq!(cents(Found::Text(" 40 ".into())), Some(4000));
        assert_eq!(cents(Found::Text("".into())), None);
        assert_eq!(cents(Found::Json(&json!("40.00"))), Some(4000));
        assert_eq!(cents(Found::Json(&json!(12.5))), Some(1250));
        assert!(Found::Text("forty".into()).amount().is_err());
        assert!(Found::Json(&json!(true)).amount().is_err());
        let answer = Answer::new(br#"{"bid": 12.999999999999999999}"#, Format::Json);
        let found = answer.find(&Locator::Json("/bid".into())).unwrap().unwrap();
        assert_eq!(cents(found), Some(1299));
    }

    #[test]
    fn status_rules_match_a_code_before_its_class() {
        let r = rules(
            Call::Delivery,
            json!({ "status": { "409": "duplicate", "4xx": "rejected", "5XX": "failed", "200": "accepted" } }),
        );
        assert_eq!(r.status(409), Some(Outcome::Duplicate));
        assert_eq!(r.status(404), Some(Outcome::Rejected));
        assert_eq!(r.status(503), Some(Outcome::Failed));
        assert_eq!(r.status(200), Some(Outcome::Accepted));
        assert_eq!(r.status(201), None);
        assert_eq!(r.status(302), None);
    }

    #[test]
    fn native_rules_read_spec_3() {
        let rtb = Rules::native(Call::Rtb);
        assert_eq!(rtb.format, Format::Json);
        assert!(matches!(&rtb.exclusive_bid, Some(Locator::Json(p)) if p == "/exclusive_bid"));
        assert!(matches!(&rtb.shared_bid, Some(Locator::Json(p)) if p == "/shared_bid"));
        assert!(matches!(&rtb.reference, Some(Locator::Json(p)) if p == "/ref"));
        let delivery = Rules::native(Call::Delivery);
        assert!(delivery.accepted.is_none() && delivery.reason.is_none());
    }

    #[test]
    fn the_older_keys_compile_into_the_same_rules() {
        let equals = json!("accepted");
        let legacy = Legacy {
            accept: Some(("/status", &equals)),
            reason_path: Some("/message"),
            ..Legacy::default()
        };
        let r = compile(Call::Delivery, None, &legacy, "/delivery").unwrap();
        assert_eq!(holds(&r, &r.accepted, r#"{"status":"accepted"}"#), Ok(true));
        // `accept` compares JSON values exactly, as it always did.
        let one = json!(1);
        let legacy = Legacy {
            accept: Some(("/status", &one)),
            ..Legacy::default()
        };
        let r = compile(Call::Delivery, None, &legacy, "/delivery").unwrap();
        assert_eq!(holds(&r, &r.accepted, r#"{"status":1}"#), Ok(true));
        assert_eq!(holds(&r, &r.accepted, r#"{"status":"1"}"#), Ok(false));

        let legacy = Legacy {
            exclusive_bid_path: Some("/bid/x"),
            ref_path: Some("/id"),
            ..Legacy::default()
        };
        let r = compile(Call::Rtb, None, &legacy, "/pricing").unwrap();
        assert!(matches!(&r.exclusive_bid, Some(Locator::Json(p)) if p == "/bid/x"));
        assert!(matches!(&r.shared_bid, Some(Locator::Json(p)) if p == "/shared_bid"));
        assert!(matches!(&r.reference, Some(Locator::Json(p)) if p == "/id"));
    }

    #[test]
    fn an_older_key_beside_its_replacement_is_refused() {
        let equals = json!("ok");
        let legacy = Legacy {
            accept: Some(("/status", &equals)),
            reason_path: Some("/message"),
            ..Legacy::default()
        };
        let found = errors(
            Call::Delivery,
            json!({ "accepted": { "path": "/s", "equals": "ok" }, "reason": { "path": "/m" } }),
            &legacy,
        );
        let pointers: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(pointers, ["/delivery/accept", "/delivery/reason_path"]);
        assert!(found[0].1.contains("not both"));
        let legacy = Legacy {
            shared_bid_path: Some("/s"),
            ..Legacy::default()
        };
        let found = errors(
            Call::Rtb,
            json!({ "format": "xml", "exclusive_bid": { "path": "/r/bid" } }),
            &legacy,
        );
        assert_eq!(found[0].0, "/pricing/shared_bid_path");
        assert!(found[0].1.contains("read as JSON"), "{found:?}");
    }

    #[test]
    fn bad_rules_are_reported_at_their_pointers() {
        assert_eq!(
            pointers(
                Call::Delivery,
                json!({
                    "format": "text",
                    "status": { "409": "duplicate", "600": "failed", "4x": "rejected", "abc": "rejected",
                                "500": "no_bid", "2xx": 3 },
                    "accepted": { "regex": "(unclosed", "equals": "x" },
                    "duplicate": { "path": "/status", "equals": "dup" },
                    "rejected": { "regex": "no", "equals": "x", "in": ["y"] },
                    "reason": { "regex": ".*", "equals": "x" },
                    "exclusive_bid": { "regex": "x" }
                })
            ),
            [
                "/delivery/response/accepted/regex",
                "/delivery/response/duplicate/path",
                "/delivery/response/exclusive_bid",
                "/delivery/response/reason/equals",
                "/delivery/response/rejected",
                "/delivery/response/status/2xx",
                "/delivery/response/status/4x",
                "/delivery/response/status/500",
                "/delivery/response/status/600",
                "/delivery/response/status/abc",
            ]
        );
        assert_eq!(
            pointers(
                Call::Rtb,
                json!({
                    "format": "yaml",
                    "status": { "404": "duplicate", "204": "no_bid" },
                    "no_bid": { "path": "status", "equals": "none" },
                    "accepted": { "path": "/ok", "exists": true },
                    "ref": { "path": "/id", "regex": "x" },
                    "shared_bid": { },
                    "exclusive_bid": "/bid"
                })
            ),
            [
                "/pricing/response/accepted",
                "/pricing/response/exclusive_bid",
                "/pricing/response/format",
                "/pricing/response/no_bid/path",
                "/pricing/response/ref",
                "/pricing/response/shared_bid",
                "/pricing/response/status/404",
            ]
        );
        assert_eq!(
            pointers(
                Call::Rtb,
                json!({ "format": "xml", "ref": { "path": "/r/id" },
                        "rejected": { "path": "/r/@code", "in": [] },
                        "no_bid": { "path": "r/x", "matches": "[" } })
            ),
            [
                "/pricing/response",
                "/pricing/response/no_bid/matches",
                "/pricing/response/no_bid/path",
                "/pricing/response/rejected/in",
            ]
        );
        let found = errors(
            Call::Delivery,
            json!({ "accepted": { "regex": "(a" , "exists": true } }),
            &Legacy::default(),
        );
        assert_eq!(found[0].0, "/delivery/response/accepted/regex");
        assert!(found[0].1.starts_with("is not a valid regular expression"));
        assert!(!found[0].1.contains('\n'));
        assert!(compile(Call::Rtb, Some(&json!([])), &Legacy::default(), "/pricing").is_err());
    }

    #[test]
    fn response_config_keeps_what_was_written() {
        let written = json!({ "format": "xml", "shared_bid": { "path": "/r/bid" } });
        let mut config: ResponseConfig = serde_json::from_value(written.clone()).unwrap();
        assert!(matches!(
            config.rules(Call::Rtb).exclusive_bid,
            Some(Locator::Json(_))
        ));
        config
            .compile(Call::Rtb, &Legacy::default(), "/pricing")
            .unwrap();
        assert_eq!(config.rules(Call::Rtb).format, Format::Xml);
        assert_eq!(serde_json::to_value(&config).unwrap(), written);
        assert!(ResponseConfig::default().is_absent());
    }
}
