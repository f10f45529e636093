//! Outbound HTTP to buyers: real-time bid requests during the ping, deliveries during the post.
//! Every call goes through the one shared `reqwest::Client` (pooled connections) and carries its
//! own timeout, so a slow or broken buyer costs only its own time.

pub mod delivery;
pub mod rtb;

use axum::body::Bytes;

/// The most Gavel reads of a buyer's answer: an answer is a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Reads a buyer's answer, refusing one over `MAX_ANSWER_BYTES` (`Ok(None)`).
pub async fn read_answer(mut response: reqwest::Response) -> Result<Option<Bytes>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(Bytes::from(body)))
}

/// A buyer's text made safe to store and show: no NUL (PostgreSQL refuses it in text), at most
/// `max_bytes`, cut at a character boundary.
pub fn clean_text(text: &str, max_bytes: usize) -> String {
    let mut clean: String = text.chars().filter(|c| *c != '\0').collect();
    if clean.len() > max_bytes {
        let mut end = max_bytes;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buyer_text_loses_nul_and_is_cut_at_a_character_boundary() {
        assert_eq!(clean_text("ab\0c", 10), "abc");
        let long = "é".repeat(10);
        let cut = clean_text(&long, 5);
        assert_eq!(cut, "éé");
    }
}
