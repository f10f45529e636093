//! Posted leads' PII at rest (docs/pii.md): the lead and its consent are sealed with
//! XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`: a 24-byte random nonce per row is safe
//! at any volume, unlike AES-GCM's 12 bytes) under the active key of `pii_keys`, the key's id
//! stored beside the sealed bytes. The row's tenant and lead id are the associated data, so a
//! sealed value copied into another row does not open. Older keys stay listed to read the rows
//! they sealed until `gavel pii rotate` has sealed those again under the active key.

use std::borrow::Cow;
use std::fmt;

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Why a server without keys does not start.
pub const NO_KEYS: &str = "pii_keys is not set: posted leads' PII is sealed at rest with it \
    (docs/pii.md); make a key with `gavel pii new-key` and set GAVEL_PII_KEYS";

/// The bytes of a nonce, first in a sealed value.
const NONCE_LEN: usize = 24;
/// What a sealed value is bound to besides its row: the format, so that another use of the
/// same keys can never be confused with this one.
const CONTEXT: &[u8] = b"gavel lead pii v1";

/// The keys PII is sealed with: the first is the active one (every new write), the others
/// only open what they sealed. `Debug` shows the ids, never a key.
#[derive(Clone)]
pub struct PiiKeys {
    keys: Vec<(String, [u8; 32])>,
}

impl fmt::Debug for PiiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(f, "PiiKeys({} keys: {})", ids.len(), ids.join(", "))
    }
}

/// A value sealed under the key `key_id`: nonce, then ciphertext and tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("sealed with key {0}, which pii_keys does not list")]
    UnknownKey(String),
    #[error("the sealed value does not open with key {0} (altered, or another row's)")]
    Corrupt(String),
}

impl PiiKeys {
    /// `id:hex[,id:hex…]`: ids of letters, digits, `-` and `_`, each key 32 bytes in 64 hex
    /// digits. Empty: no keys.
    pub fn parse(text: &str) -> Result<Option<PiiKeys>, String> {
        let mut keys: Vec<(String, [u8; 32])> = Vec::new();
        for (n, entry) in text.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let which = n + 1;
            let Some((id, hex_key)) = entry.split_once(':') else {
                return Err(format!("key {which} must be id:key (64 hex digits)"));
            };
            let valid_id = !id.is_empty()
                && id.len() <= 32
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid_id {
                return Err(format!(
                    "key {which}'s id must be 1 to 32 letters, digits, - or _"
                ));
            }
            let mut key = [0u8; 32];
            if hex::decode_to_slice(hex_key.trim(), &mut key).is_err() {
                return Err(format!("key {id} must be 32 bytes in 64 hex digits"));
            }
            if keys.iter().any(|(other, _)| other == id) {
                return Err(format!("key id {id} is listed twice"));
            }
            keys.push((id.to_owned(), key));
        }
        Ok((!keys.is_empty()).then_some(PiiKeys { keys }))
    }

    /// A new random key, as `pii_keys` lists it: `id:hex`.
    pub fn generate(id: &str) -> String {
        let key = chacha20poly1305::Key::generate();
        format!("{id}:{}", hex::encode(key.as_slice()))
    }

    /// A new key's id when none is given: `k` and today's date (`k20261204`).
    pub fn dated_id() -> String {
        format!("k{}", chrono::Utc::now().format("%Y%m%d"))
    }

    /// The id of the key new writes use.
    pub fn active_id(&self) -> &str {
        &self.keys[0].0
    }

    fn cipher(&self, key_id: &str) -> Option<XChaCha20Poly1305> {
        self.keys
            .iter()
            .find(|(id, _)| id == key_id)
            .and_then(|(_, key)| XChaCha20Poly1305::new_from_slice(key).ok())
    }

    fn associated_data(tenant: Uuid, lead: Uuid) -> Vec<u8> {
        [CONTEXT, tenant.as_bytes(), lead.as_bytes()].concat()
    }

    /// `plain` sealed under the active key, bound to the tenant's lead.
    pub fn seal(&self, tenant: Uuid, lead: Uuid, plain: &[u8]) -> Sealed {
        let key_id = self.active_id().to_owned();
        let cipher = self.cipher(&key_id).expect("the active key is listed");
        let nonce = XNonce::generate();
        let aad = Self::associated_data(tenant, lead);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .expect("encrypting into a Vec cannot fail");
        Sealed {
            key_id,
            bytes: [nonce.as_slice(), &sealed].concat(),
        }
    }

    /// What [`PiiKeys::seal`] sealed for the tenant's lead.
    pub fn open(
        &self,
        tenant: Uuid,
        lead: Uuid,
        key_id: &str,
        bytes: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        let cipher = self
            .cipher(key_id)
            .ok_or_else(|| OpenError::UnknownKey(key_id.to_owned()))?;
        let corrupt = || OpenError::Corrupt(key_id.to_owned());
        if bytes.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| corrupt())?;
        let aad = Self::associated_data(tenant, lead);
        cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| corrupt())
    }
}

/// A lead's or a consent's fields.
pub type Fields = Map<String, Value>;

/// A posted lead as stored: its non-PII fields in the clear, the whole lead and its consent
/// sealed.
pub struct StoredLead {
    pub clear: Map<String, Value>,
    pub sealed: Sealed,
}

/// The sealed part of a stored lead.
#[derive(Serialize, Deserialize)]
struct SealedLead<'a> {
    lead: Cow<'a, Map<String, Value>>,
    consent: Cow<'a, Map<String, Value>>,
}

impl PiiKeys {
    /// The tenant's posted `lead` (with `consent`) as stored: `clear` its non-PII fields.
    pub fn seal_lead(
        &self,
        tenant: Uuid,
        lead_id: Uuid,
        clear: Map<String, Value>,
        lead: &Map<String, Value>,
        consent: &Map<String, Value>,
    ) -> StoredLead {
        let sealed = SealedLead {
            lead: Cow::Borrowed(lead),
            consent: Cow::Borrowed(consent),
        };
        let plain = serde_json::to_vec(&sealed).expect("a JSON map serializes");
        StoredLead {
            clear,
            sealed: self.seal(tenant, lead_id, &plain),
        }
    }

    /// The lead and consent [`PiiKeys::seal_lead`] sealed.
    pub fn open_lead(
        &self,
        tenant: Uuid,
        lead_id: Uuid,
        key_id: &str,
        bytes: &[u8],
    ) -> Result<(Fields, Fields), OpenError> {
        let plain = self.open(tenant, lead_id, key_id, bytes)?;
        let opened: SealedLead<'static> =
            serde_json::from_slice(&plain).map_err(|_| OpenError::Corrupt(key_id.to_owned()))?;
        Ok((opened.lead.into_owned(), opened.consent.into_owned()))
    }
}

/// The posted lead's values a buyer's answer might quote: every text of 4 characters or more
/// (and a phone number's digits), of the lead and its consent. Short codes (a state) stay.
pub fn personal_values(lead: &Map<String, Value>, consent: &Map<String, Value>) -> Vec<String> {
    let mut values = Vec::new();
    for value in lead.values().chain(consent.values()) {
        let text = match value {
            Value::String(text) => text.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            _ => continue,
        };
        if text.len() >= 4 {
            let digits: String = text.chars().filter(char::is_ascii_digit).collect();
            if digits.len() >= 7 && digits != text {
                values.push(digits);
            }
            values.push(text);
        }
    }
    // The longest first, so that a value inside another is not masked half.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values
}

/// `text` with each of `personal`'s values (in any ASCII case) replaced by `•••`.
pub fn redact(text: &str, personal: &[String]) -> String {
    let mut out = text.to_owned();
    for value in personal {
        let needle = value.to_ascii_lowercase();
        let mut at = 0;
        while let Some(found) = out.to_ascii_lowercase()[at..].find(&needle) {
            let start = at + found;
            out.replace_range(start..start + needle.len(), "•••");
            at = start + "•••".len();
        }
    }
    out
}

/// `pii_keys` in the settings: parsed and checked when they load.
pub fn deserialize_keys<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PiiKeys>, D::Error> {
    let text = String::deserialize(d)?;
    PiiKeys::parse(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> PiiKeys {
        PiiKeys::parse(text).unwrap().unwrap()
    }

    #[test]
    fn a_sealed_lead_opens_only_with_its_key_and_its_row() {
        let old = PiiKeys::generate("old");
        let new = PiiKeys::generate("new");
        let (tenant, lead) = (Uuid::now_v7(), Uuid::now_v7());
        let sealed = keys(&old).seal(tenant, lead, b"jane@example.com");
        assert_eq!(sealed.key_id, "old");
        assert!(
            !sealed.bytes.windows(4).any(|w| w == b"jane"),
            "the plain text is not in the sealed bytes"
        );

        // After a rotation the old key still opens what it sealed; new writes use the new one.
        let rotated = keys(&format!("{new},{old}"));
        assert_eq!(
            rotated.open(tenant, lead, "old", &sealed.bytes).unwrap(),
            b"jane@example.com"
        );
        assert_eq!(rotated.seal(tenant, lead, b"x").key_id, "new");
        // Without the old key, or in another row, or altered, it does not open.
        assert_eq!(
            keys(&new).open(tenant, lead, "old", &sealed.bytes),
            Err(OpenError::UnknownKey("old".into()))
        );
        let other_row = rotated.open(tenant, Uuid::now_v7(), "old", &sealed.bytes);
        assert_eq!(other_row, Err(OpenError::Corrupt("old".into())));
        let mut altered = sealed.bytes.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(rotated.open(tenant, lead, "old", &altered).is_err());
        // Two seals of the same text differ (a fresh nonce each).
        assert_ne!(
            keys(&old).seal(tenant, lead, b"x"),
            keys(&old).seal(tenant, lead, b"x")
        );
    }

    #[test]
    fn a_buyers_answer_quoting_the_lead_is_masked() {
        let personal = vec![
            "Ada@Example.com".to_owned(),
            "2145550123".to_owned(),
            "Lovelace".to_owned(),
        ];
        assert_eq!(
            redact(
                r#"{"email":"ada@example.com","phone":"2145550123","name":"LOVELACE","ok":true}"#,
                &personal
            ),
            r#"{"email":"•••","phone":"•••","name":"•••","ok":true}"#
        );
        assert_eq!(redact("accepted", &personal), "accepted");
    }

    #[test]
    fn the_setting_is_checked_and_never_shows_a_key() {
        assert!(PiiKeys::parse("").unwrap().is_none());
        assert!(PiiKeys::parse("k1").is_err());
        assert!(PiiKeys::parse("k1:abcd").is_err());
        assert!(PiiKeys::parse("bad id:00").is_err());
        let key = PiiKeys::generate("k1");
        assert!(
            PiiKeys::parse(&format!("{key},{key}")).is_err(),
            "an id twice"
        );
        let parsed = keys(&format!("{}, {key}", PiiKeys::generate("k2")));
        assert_eq!(parsed.active_id(), "k2");
        let shown = format!("{parsed:?}");
        assert_eq!(shown, "PiiKeys(2 keys: k2, k1)");
        assert!(!shown.contains(&key[3..]));
    }
}
