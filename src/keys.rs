//! API keys and posting keys: random (190 bits), shown once, stored only as SHA-256.

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

/// Prefix of a tenant's admin API key.
pub const ADMIN_KEY_PREFIX: &str = "ak_";
/// Prefix of a campaign's posting key.
pub const POSTING_KEY_PREFIX: &str = "pk_";

/// A new key: the prefix and 32 random alphanumeric characters (log2(62^32) ≈ 190 bits).
pub fn generate(prefix: &str) -> String {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    format!("{prefix}{random}")
}

/// What the database stores and looks keys up by.
pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_distinct_and_hash_to_32_bytes() {
        let a = generate(ADMIN_KEY_PREFIX);
        let b = generate(ADMIN_KEY_PREFIX);
        assert!(a.starts_with("ak_") && a.len() == 35);
        assert_ne!(a, b);
        assert_eq!(hash(&a).len(), 32);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        // The same digest Postgres computes with sha256(convert_to(key, 'UTF8')).
        assert_eq!(
            hex::encode(hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
