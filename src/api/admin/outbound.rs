//! The outbound address policy when a contract is saved (`buyers::outbound`): its RTB and
//! delivery URLs, and its notice URLs (rendered with sample values), may not name, or resolve
//! to, an address Gavel refuses to call. Resolving a name
//! is I/O, so it is done here rather than in the auction's pure parsers; it runs before the
//! transaction opens, so no row lock is held while DNS answers.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::api::Problem;
use crate::auction::ConfigError;
use crate::buyers::outbound::{Policy, Refused};
use crate::integration::UrlTemplate;

/// How long a name may take to resolve at save time. A name that does not resolve in time (or
/// at all) is accepted: every call checks the addresses it resolves to then.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks the URLs a contract body (a create, or a patch) sets; 422 `invalid_config` with the
/// pointer of each refused URL.
pub(super) async fn check_contract_urls(
    policy: &Policy,
    body: &Map<String, Value>,
) -> Result<(), Problem> {
    let url_at = |section: &str| {
        body.get(section)
            .and_then(|value| value.get("url"))
            .and_then(Value::as_str)
    };
    // A notice URL's template is checked as rendered with sample values (its host is its
    // own: `UrlTemplate::compile` refuses one a variable chooses); one that does not compile
    // is the configuration parser's to report.
    let notice_at = |key: &str| {
        body.get(key)
            .and_then(Value::as_str)
            .and_then(|source| UrlTemplate::compile(source, "").ok())
    };
    let (win, loss) = (notice_at("win_url"), notice_at("loss_url"));
    let (pricing, delivery, win, loss) = tokio::join!(
        check(policy, url_at("pricing")),
        check(policy, url_at("delivery")),
        check(policy, win.as_ref().map(UrlTemplate::sample)),
        check(policy, loss.as_ref().map(UrlTemplate::sample)),
    );
    let errors: Vec<ConfigError> = [
        ("/pricing/url", pricing),
        ("/delivery/url", delivery),
        ("/win_url", win),
        ("/loss_url", loss),
    ]
    .into_iter()
    .filter_map(|(pointer, checked)| {
        let refused = checked.err()?;
        Some(ConfigError::new(
            pointer,
            format!("{refused} (an operator may allow it with the setting outbound_allow)"),
        ))
    })
    .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Problem::invalid_config(errors))
    }
}

/// Checks the URLs of an offer body's verification hooks (`/verification/<n>/url`), as a
/// contract's.
pub(super) async fn check_verification_urls(
    policy: &Policy,
    body: &Map<String, Value>,
) -> Result<(), Problem> {
    let Some(Value::Array(steps)) = body.get("verification") else {
        return Ok(());
    };
    let mut errors = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        if step.get("type").and_then(Value::as_str) != Some("http") {
            continue;
        }
        if let Err(refused) = check(policy, step.get("url").and_then(Value::as_str)).await {
            errors.push(ConfigError::new(
                format!("/verification/{index}/url"),
                format!("{refused} (an operator may allow it with the setting outbound_allow)"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Problem::invalid_config(errors))
    }
}

async fn check(policy: &Policy, url: Option<&str>) -> Result<(), Refused> {
    match url {
        Some(url) => policy.check_url_at_save(url, RESOLVE_TIMEOUT).await,
        None => Ok(()),
    }
}
