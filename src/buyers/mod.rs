//! Outbound HTTP to buyers: real-time bid requests during the ping, deliveries during the post.
//! Every call goes through the one shared `reqwest::Client` (pooled connections) and carries its
//! own timeout, so a slow or broken buyer costs only its own time.

pub mod delivery;
pub mod outbound;
pub mod rtb;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use serde::Serialize;

pub use outbound::Outbound;

/// What came of POSTing JSON to a buyer.
#[derive(Debug)]
pub enum Exchange {
    Answer {
        status: u16,
        body: Bytes,
    },
    /// An answer over `MAX_ANSWER_BYTES`, not read.
    TooLarge {
        status: u16,
    },
    /// No complete answer within the timeout.
    TimedOut,
    /// The connection failed (refused, reset, DNS, TLS); the text names no lead data.
    Failed(String),
}

/// POSTs `body` as JSON to `url` with `headers`, and reads the answer, all within `timeout`.
/// A call the outbound address policy refuses is `Failed` with the policy's reason.
pub async fn post_json<T: Serialize>(
    http: &Outbound,
    url: &str,
    headers: &BTreeMap<String, String>,
    body: &T,
    timeout: Duration,
) -> Exchange {
    // Parsed once here (the client would parse it anyway): the client does not resolve an IP
    // literal, so its address is checked now.
    let url = match reqwest::Url::parse(url) {
        Ok(url) => url,
        Err(_) => return Exchange::Failed("the URL is invalid".to_owned()),
    };
    if let Err(refused) = http.policy().check_url(&url) {
        return Exchange::Failed(refused.to_string());
    }
    let mut call = http.client().post(url).json(body);
    for (name, value) in headers {
        call = call.header(name, value);
    }
    let exchange = async {
        let response = call.send().await?;
        let status = response.status().as_u16();
        Ok::<_, reqwest::Error>((status, read_answer(response).await?))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok((status, Some(body)))) => Exchange::Answer { status, body },
        Ok(Ok((status, None))) => Exchange::TooLarge { status },
        Ok(Err(error)) if error.is_timeout() => Exchange::TimedOut,
        Ok(Err(error)) => Exchange::Failed(match outbound::refusal_in(&error) {
            Some(refused) => refused.to_string(),
            None => error.without_url().to_string(),
        }),
        Err(_) => Exchange::TimedOut,
    }
}

/// The most Gavel reads of a buyer's answer: an answer is a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Reads a buyer's answer, refusing one over `MAX_ANSWER_BYTES` (`Ok(None)`).
async fn read_answer(mut response: reqwest::Response) -> Result<Option<Bytes>, reqwest::Error> {
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
