//! The transforms of field maps (also the text templates' filters) and the escaping of a
//! value for each format.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::fields::Val;

/// A JSON string literal of `text`, quotes included.
pub fn write_json_string(out: &mut String, text: &str) {
    // serde_json escapes exactly as JSON requires; writing a &str cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// `text` with XML's five entities escaped (and no control character XML 1.0 forbids).
pub fn write_xml_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => {
                let _ = write!(out, "&#{};", c as u32);
            }
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
}

/// `text` URL-encoded as a form or query value (`application/x-www-form-urlencoded`).
pub fn write_url_text(out: &mut String, text: &str) {
    out.extend(url::form_urlencoded::byte_serialize(text.as_bytes()));
}

/// A transform of a field map, in the order written.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    Upper,
    Lower,
    Trim,
    Digits,
    Phone(String),
    Date(String),
    Sha256,
    Md5,
    String,
    Number,
}

impl Transform {
    /// Reads `upper`, `phone:(###) ###-####`, `date:%m/%d/%Y`, …
    pub fn parse(text: &str) -> Result<Transform, String> {
        if let Some(pattern) = text.strip_prefix("phone:") {
            return check_phone_pattern(pattern).map(|()| Transform::Phone(pattern.to_owned()));
        }
        if let Some(format) = text.strip_prefix("date:") {
            return check_date_format(format).map(|()| Transform::Date(format.to_owned()));
        }
        Ok(match text {
            "upper" => Transform::Upper,
            "lower" => Transform::Lower,
            "trim" => Transform::Trim,
            "digits" => Transform::Digits,
            // A US phone in E.164 (docs/validation.md): `+1` and its 10 digits.
            "e164" => Transform::Phone("+1##########".to_owned()),
            "sha256" => Transform::Sha256,
            "md5" => Transform::Md5,
            "string" => Transform::String,
            "number" => Transform::Number,
            _ => {
                return Err(
                    "unknown transform: one of upper, lower, trim, digits, e164, \
                            phone:<pattern>, date:<format>, sha256, md5, string, number"
                        .to_owned(),
                );
            }
        })
    }

    pub(super) fn apply<'a>(&self, value: Val<'a>) -> Result<Val<'a>, String> {
        if value == Val::Absent {
            return Ok(Val::Absent);
        }
        let text = || value.text().into_owned();
        Ok(match self {
            Transform::Upper => Val::Str(Cow::Owned(text().to_uppercase())),
            Transform::Lower => Val::Str(Cow::Owned(text().to_lowercase())),
            Transform::Trim => Val::Str(Cow::Owned(text().trim().to_owned())),
            Transform::Digits => Val::Str(Cow::Owned(digits(&text()))),
            Transform::Phone(pattern) => Val::Str(Cow::Owned(phone(&text(), pattern)?)),
            Transform::Date(format) => Val::Str(Cow::Owned(date(&text(), format)?)),
            Transform::Sha256 => Val::Str(Cow::Owned(sha256(&text()))),
            Transform::Md5 => Val::Str(Cow::Owned(md5(&text()))),
            Transform::String => Val::Str(Cow::Owned(text())),
            Transform::Number => {
                let text = text();
                let trimmed = text.trim();
                if is_json_number(trimmed) {
                    Val::Num(Cow::Owned(trimmed.to_owned()))
                } else {
                    return Err("is not a number".to_owned());
                }
            }
        })
    }
}

/// The digits of `text`.
pub fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

fn check_phone_pattern(pattern: &str) -> Result<(), String> {
    if pattern.chars().filter(|&c| c == '#').count() == 10 {
        Ok(())
    } else {
        Err("a phone pattern has exactly ten #, e.g. phone:(###) ###-####".to_owned())
    }
}

/// The 10-digit US number in `text` (a leading 1 of 11 digits dropped) laid out by
/// `pattern`, each `#` taking the next digit.
pub fn phone(text: &str, pattern: &str) -> Result<String, String> {
    let all = digits(text);
    let number = match all.len() {
        10 => all.as_str(),
        11 if all.starts_with('1') => &all[1..],
        _ => return Err("is not a 10-digit US phone number".to_owned()),
    };
    check_phone_pattern(pattern)?;
    let mut digits = number.chars();
    Ok(pattern
        .chars()
        .map(|c| match c {
            '#' => digits.next().unwrap_or('#'),
            other => other,
        })
        .collect())
}

fn check_date_format(format: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if format.is_empty() || StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        Err("is not a valid strftime format, e.g. date:%m/%d/%Y".to_owned())
    } else {
        Ok(())
    }
}

/// An RFC 3339 date (`2024-05-31`) or date-time formatted by `format` (strftime).
pub fn date(text: &str, format: &str) -> Result<String, String> {
    check_date_format(format)?;
    let text = text.trim();
    let formatted = if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        at.format(format)
    } else if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        // A date alone has no time: a format asking for one gets midnight.
        day.and_hms_opt(0, 0, 0)
            .map(|at| at.and_utc().fixed_offset())
            .ok_or_else(|| "is not a date".to_owned())?
            .format(format)
    } else {
        return Err("is not an RFC 3339 date".to_owned());
    };
    let mut out = String::new();
    write!(out, "{formatted}").map_err(|_| "cannot be formatted by this date format".to_owned())?;
    Ok(out)
}

pub fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

pub fn md5(text: &str) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(text.as_bytes()))
}

/// JSON's number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
pub fn is_json_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    let digits_from = |mut i: usize| {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        (i, i - start)
    };
    if bytes.first() == Some(&b'-') {
        i += 1;
    }
    let (end, count) = digits_from(i);
    if count == 0 || (count > 1 && bytes[i] == b'0') {
        return false;
    }
    i = end;
    if bytes.get(i) == Some(&b'.') {
        let (end, count) = digits_from(i + 1);
        if count == 0 {
            return false;
        }
        i = end;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let (end, count) = digits_from(i);
        if count == 0 {
            return false;
        }
        i = end;
    }
    i == bytes.len()
}
