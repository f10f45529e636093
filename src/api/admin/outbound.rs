//! The outbound address policy when a contract is saved (`buyers::outbound`): its RTB and
//! delivery URLs may not name, or resolve to, an address Gavel refuses to call. Resolving a name
//! is I/O, so it is done here rather than in the auction's pure parsers; it runs before the
//! transaction opens, so no row lock is held while DNS answers.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::api::Problem;
use crate::auction::ConfigError;
use crate::buyers::outbound::{Policy, Refused};

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
    let (pricing, delivery) = tokio::join!(
        check(policy, url_at("pricing")),
        check(policy, url_at("delivery"))
    );
    let errors: Vec<ConfigError> = [("/pricing/url", pricing), ("/delivery/url", delivery)]
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

async fn check(policy: &Policy, url: Option<&str>) -> Result<(), Refused> {
    match url {
        Some(url) => policy.check_url_at_save(url, RESOLVE_TIMEOUT).await,
        None => Ok(()),
    }
}
