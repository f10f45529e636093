//! Outbound HTTP to buyers: real-time bid requests during the ping, deliveries during the post.
//! Every call goes through the one shared `reqwest::Client` (pooled connections) and carries its
//! own timeout, so a slow or broken buyer costs only its own time.

pub mod breaker;
pub mod delivery;
pub mod outbound;
pub mod rtb;
pub mod trial;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use serde::Serialize;

pub use outbound::Outbound;

use crate::integration::Rendered;

/// What came of a call to a buyer.
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
    match reqwest::Url::parse(url) {
        Ok(url) => post_json_to(http, &url, headers, body, timeout).await,
        Err(_) => invalid_url(),
    }
}

/// [`post_json`] to a URL parsed already (a contract's, parsed once rather than on each call).
pub async fn post_json_to<T: Serialize>(
    http: &Outbound,
    url: &reqwest::Url,
    headers: &BTreeMap<String, String>,
    body: &T,
    timeout: Duration,
) -> Exchange {
    if let Err(refused) = allowed(http, url) {
        return refused;
    }
    let mut call = http.client().post(url.clone()).json(body);
    for (name, value) in headers {
        call = call.header(name, value);
    }
    exchange(call, timeout, false).await.0
}

/// What a call to text that is no URL comes to.
pub fn invalid_url() -> Exchange {
    Exchange::Failed("the URL is invalid".to_owned())
}

/// A call to a consent verification provider (docs/verification.md): `body` with its
/// content type, `basic` credentials (user, password) and `headers`, under the outbound
/// address policy and within `timeout`, as a buyer's.
pub async fn verification_call(
    http: &Outbound,
    url: &str,
    basic: Option<(&str, &str)>,
    headers: &[(&str, &str)],
    body: Option<(&'static str, Vec<u8>)>,
    timeout: Duration,
) -> Exchange {
    let url = match checked_url(http, url) {
        Ok(url) => url,
        Err(refused) => return refused,
    };
    let mut call = http.client().post(url);
    if let Some((user, password)) = basic {
        call = call.basic_auth(user, Some(password));
    }
    for (name, value) in headers {
        call = call.header(*name, *value);
    }
    if let Some((content_type, body)) = body {
        call = call
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
    }
    exchange(call, timeout, false).await.0
}

/// GETs `url` (a win or loss notice) under the outbound address policy, within `timeout`.
pub async fn get(http: &Outbound, url: &str, timeout: Duration) -> Exchange {
    match checked_url(http, url) {
        Ok(url) => exchange(http.client().get(url), timeout, false).await.0,
        Err(refused) => refused,
    }
}

/// Sends a request rendered by the contract's `request` template (method, URL with its query,
/// body), with the section's `headers` then the request's own (which replace a header of the
/// same name), through the same outbound policy and timeout as [`post_json`].
pub async fn send_rendered(
    http: &Outbound,
    rendered: Rendered,
    headers: &BTreeMap<String, String>,
    timeout: Duration,
) -> Exchange {
    match rendered_call(http, rendered, headers) {
        Ok(call) => exchange(call, timeout, false).await.0,
        Err(refused) => refused,
    }
}

/// [`send_rendered`] for the operator's test of a contract: marked with the header
/// `Gavel-Test: true`, and the answer's headers kept.
pub async fn send_trial(
    http: &Outbound,
    rendered: Rendered,
    headers: &BTreeMap<String, String>,
    timeout: Duration,
) -> (Exchange, Vec<(String, String)>) {
    match rendered_call(http, rendered, headers) {
        Ok(call) => exchange(call.header(trial::TEST_HEADER, "true"), timeout, true).await,
        Err(refused) => (refused, Vec::new()),
    }
}

fn rendered_call(
    http: &Outbound,
    rendered: Rendered,
    headers: &BTreeMap<String, String>,
) -> Result<reqwest::RequestBuilder, Exchange> {
    let url = checked_url(http, &rendered.url)?;
    let mut call = http.client().request(rendered.method, url);
    for (name, value) in headers {
        call = call.header(name, value);
    }
    let mut own = reqwest::header::HeaderMap::with_capacity(rendered.headers.len() + 1);
    for (name, value) in rendered.headers {
        own.insert(name, value);
    }
    if let Some(body) = rendered.body {
        if let Some(content_type) = rendered.content_type {
            own.insert(reqwest::header::CONTENT_TYPE, content_type);
        }
        call = call.body(body);
    }
    Ok(call.headers(own))
}

/// `url` parsed and checked against the outbound address policy (the client does not resolve
/// an IP literal, so its address is checked now); `Err` is the call's outcome.
fn checked_url(http: &Outbound, url: &str) -> Result<reqwest::Url, Exchange> {
    let url = reqwest::Url::parse(url).map_err(|_| invalid_url())?;
    allowed(http, &url)?;
    Ok(url)
}

/// `url` checked against the outbound address policy; `Err` is the call's outcome.
fn allowed(http: &Outbound, url: &reqwest::Url) -> Result<(), Exchange> {
    http.policy()
        .check_url(url)
        .map_err(|refused| Exchange::Failed(refused.to_string()))
}

/// Sends `call` and reads the answer, all within `timeout`; the answer's headers too for a
/// trial (the auction's calls never read them: `HeaderMap` is not copied then).
async fn exchange(
    call: reqwest::RequestBuilder,
    timeout: Duration,
    keep_headers: bool,
) -> (Exchange, Vec<(String, String)>) {
    let exchange = async {
        let response = call.send().await?;
        let status = response.status().as_u16();
        let headers = if keep_headers {
            response
                .headers()
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), value)
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok::<_, reqwest::Error>((status, headers, read_answer(response).await?))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok((status, headers, Some(body)))) => (Exchange::Answer { status, body }, headers),
        Ok(Ok((status, headers, None))) => (Exchange::TooLarge { status }, headers),
        Ok(Err(error)) if error.is_timeout() => (Exchange::TimedOut, Vec::new()),
        Ok(Err(error)) => (
            Exchange::Failed(match outbound::refusal_in(&error) {
                Some(refused) => refused.to_string(),
                None => error.without_url().to_string(),
            }),
            Vec::new(),
        ),
        Err(_) => (Exchange::TimedOut, Vec::new()),
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
