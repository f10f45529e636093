//! Suppression lists' entries as an upload names them (docs/suppression.md): a JSON batch
//! (`hashes`, `emails`, `phones`) or a CSV file with a header naming its `email`, `phone` or
//! `hash` columns. Every entry becomes the SHA-256 of the normalized value, as the dedup keys
//! and the consumer hashes of a lead are (`auction::normalize_email`, `normalize_phone`), so
//! that a list built from hashes elsewhere and one uploaded in clear match the same consumers.
//! Pure: the values are never kept, only their hashes; an error names where, never the value.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::auction::{is_email, normalize_email, normalize_phone};

/// The most entries one request adds or removes: one transaction of about a second. A list of
/// millions is uploaded in batches.
pub const MAX_ENTRIES_PER_REQUEST: usize = 100_000;

/// The most errors an answer lists (the first ones; `detail` says how many there were).
const MAX_ERRORS: usize = 20;

/// What is wrong with an upload: the pointers of its bad values (`/emails/3`, or for a CSV
/// `/rows/12/phone`, the row counted from 1 after the header), and how many there were.
#[derive(Debug, PartialEq, Eq)]
pub struct BadEntries {
    pub pointers: Vec<String>,
    pub count: usize,
    pub message: String,
}

impl BadEntries {
    fn one(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointers: vec![pointer.into()],
            count: 1,
            message: message.into(),
        }
    }
}

/// The kind of an entry's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Email,
    Phone,
    Hash,
}

impl EntryKind {
    fn of_key(key: &str) -> Option<Self> {
        match key.trim().to_ascii_lowercase().as_str() {
            "email" | "emails" => Some(Self::Email),
            "phone" | "phones" => Some(Self::Phone),
            "hash" | "hashes" | "sha256" => Some(Self::Hash),
            _ => None,
        }
    }

    /// The hash of one value, or what is wrong with it.
    fn hash(self, value: &str) -> Result<[u8; 32], &'static str> {
        match self {
            Self::Email => {
                let email = normalize_email(value);
                if !is_email(&email) {
                    return Err("not an email address");
                }
                Ok(Sha256::digest(email.as_bytes()).into())
            }
            Self::Phone => normalize_phone(value)
                .map(|phone| Sha256::digest(phone.as_bytes()).into())
                .ok_or("not a phone number of 10 digits"),
            Self::Hash => {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(value.trim(), &mut hash)
                    .map_err(|_| "not a SHA-256 in hex (64 characters)")?;
                Ok(hash)
            }
        }
    }
}

/// Collects hashes and the pointers of bad values, bounded in both.
#[derive(Default)]
struct Collected {
    hashes: Vec<[u8; 32]>,
    bad: Vec<String>,
    bad_count: usize,
    message: Option<&'static str>,
}

impl Collected {
    fn add(&mut self, kind: EntryKind, value: &str, pointer: impl FnOnce() -> String) {
        match kind.hash(value) {
            Ok(hash) => self.hashes.push(hash),
            Err(message) => {
                self.bad_count += 1;
                self.message.get_or_insert(message);
                if self.bad.len() < MAX_ERRORS {
                    self.bad.push(pointer());
                }
            }
        }
    }

    fn finish(mut self) -> Result<Vec<[u8; 32]>, BadEntries> {
        if self.bad_count > 0 {
            let count = self.bad_count;
            let first = self.message.unwrap_or("a bad value");
            return Err(BadEntries {
                pointers: self.bad,
                count,
                message: format!("{count} bad value(s), the first: {first}"),
            });
        }
        if self.hashes.len() > MAX_ENTRIES_PER_REQUEST {
            return Err(BadEntries::one(
                "",
                format!("at most {MAX_ENTRIES_PER_REQUEST} entries per request: send batches"),
            ));
        }
        self.hashes.sort_unstable();
        self.hashes.dedup();
        Ok(self.hashes)
    }
}

/// A JSON batch: `{"hashes": [hex…], "emails": […], "phones": […]}`, any of the three, at
/// least one value in all.
pub fn from_json(body: &Map<String, Value>) -> Result<Vec<[u8; 32]>, BadEntries> {
    let mut collected = Collected::default();
    let mut values = 0;
    for (key, value) in body {
        let pointer_key = crate::auction::pointer_token(key);
        let Some(kind) = EntryKind::of_key(key).filter(|_| key.ends_with('s')) else {
            return Err(BadEntries::one(
                format!("/{pointer_key}"),
                "unknown field: send hashes, emails or phones",
            ));
        };
        let Some(items) = value.as_array() else {
            return Err(BadEntries::one(
                format!("/{pointer_key}"),
                "must be a list of strings",
            ));
        };
        values += items.len();
        if values > MAX_ENTRIES_PER_REQUEST {
            return Err(BadEntries::one(
                format!("/{pointer_key}"),
                format!("at most {MAX_ENTRIES_PER_REQUEST} entries per request: send batches"),
            ));
        }
        for (n, item) in items.iter().enumerate() {
            let text = item.as_str().unwrap_or("\u{0}");
            collected.add(kind, text, || format!("/{pointer_key}/{n}"));
        }
    }
    if values == 0 {
        return Err(BadEntries::one(
            "/hashes",
            "send at least one of hashes, emails or phones",
        ));
    }
    collected.finish()
}

/// A CSV file whose header names at least one `email`, `phone` or `hash` column (other
/// columns are ignored); every non-empty cell of those columns is an entry.
pub fn from_csv(bytes: &[u8]) -> Result<Vec<[u8; 32]>, BadEntries> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|_| BadEntries::one("/rows/0", "the header cannot be read as CSV"))?
        .clone();
    let columns: Vec<(usize, EntryKind, String)> = header
        .iter()
        .enumerate()
        .filter_map(|(index, name)| {
            let kind = EntryKind::of_key(name)?;
            Some((
                index,
                kind,
                crate::auction::pointer_token(name.trim()).into_owned(),
            ))
        })
        .collect();
    if columns.is_empty() {
        return Err(BadEntries::one(
            "/rows/0",
            "the header must name an email, phone or hash column",
        ));
    }
    let mut collected = Collected::default();
    let mut record = csv::StringRecord::new();
    let mut row = 0usize;
    loop {
        row += 1;
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(_) => {
                return Err(BadEntries::one(
                    format!("/rows/{row}"),
                    "the row cannot be read as CSV (UTF-8, quotes)",
                ));
            }
        }
        for (index, kind, name) in &columns {
            let Some(cell) = record.get(*index).filter(|cell| !cell.is_empty()) else {
                continue;
            };
            collected.add(*kind, cell, || format!("/rows/{row}/{name}"));
        }
        if collected.hashes.len() > MAX_ENTRIES_PER_REQUEST {
            break;
        }
    }
    collected.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sha(text: &str) -> [u8; 32] {
        Sha256::digest(text.as_bytes()).into()
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn values_are_hashed_as_the_dedup_keys_are() {
        let hashes = from_json(&object(json!({
            "emails": [" Jane@Example.COM "],
            "phones": ["+1 (415) 555-2671"],
            "hashes": [hex::encode(sha("x"))],
        })))
        .unwrap();
        let mut expected = vec![sha("jane@example.com"), sha("4155552671"), sha("x")];
        expected.sort_unstable();
        assert_eq!(hashes, expected);
    }

    #[test]
    fn bad_values_are_pointed_at_and_never_echoed() {
        let error = from_json(&object(json!({
            "emails": ["ok@example.com", "not-an-email"],
            "phones": ["12"],
        })))
        .unwrap_err();
        assert_eq!(error.pointers, vec!["/emails/1", "/phones/0"]);
        assert_eq!(error.count, 2);
        assert!(!error.message.contains("not-an-email"));
    }

    #[test]
    fn unknown_fields_and_empty_batches_are_refused() {
        assert_eq!(
            from_json(&object(json!({"email": ["a@b.co"]})))
                .unwrap_err()
                .pointers,
            vec!["/email"]
        );
        assert!(from_json(&object(json!({"emails": []}))).is_err());
        assert!(from_json(&object(json!({"hashes": ["abc"]}))).is_err());
    }

    #[test]
    fn a_csv_reads_its_named_columns_and_skips_empty_cells() {
        let csv = "First Name,Email,Phone\nJane,jane@example.com,\nJohn,,415-555-2671\n";
        let hashes = from_csv(csv.as_bytes()).unwrap();
        let mut expected = vec![sha("jane@example.com"), sha("4155552671")];
        expected.sort_unstable();
        assert_eq!(hashes, expected);
    }

    #[test]
    fn a_csv_names_its_bad_rows_by_number_and_column() {
        let csv = "phone\n4155552671\n555\n";
        let error = from_csv(csv.as_bytes()).unwrap_err();
        assert_eq!(error.pointers, vec!["/rows/2/phone"]);
        assert!(from_csv(b"name\nJane\n").is_err());
    }

    #[test]
    fn duplicates_count_once() {
        let hashes = from_json(&object(json!({"emails": ["a@b.co", "A@B.CO"]}))).unwrap();
        assert_eq!(hashes.len(), 1);
    }
}
