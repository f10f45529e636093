//! The `require_mx` email rule's DNS look-ups (docs/validation.md), at the edge: made at the
//! post only (and a direct post), only when the server's `mx_lookup` setting is on, after every
//! other check of the lead passed. The decisions are pure, in `auction::validation::mx`.
//!
//! Each domain's verdict is kept in memory (at most [`CAPACITY`] domains) for as long as
//! `mx::after_mx` / `mx::after_addresses` say: the records' TTL within 30 s and 1 h, 5 min for a
//! domain that receives no mail, 30 s for a failed look-up. Concurrent posts to one domain
//! share one look-up. A timeout or a failure passes the lead (open), counted in
//! `gavel_email_mx_checks_total{outcome="passed_open"}`.
//!
//! No log line names the address or its domain (only the look-up's outcome, at debug level).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::{Resolver, TokioResolver};
use serde_json::{Map, Value};

use crate::auction::validation::mx::{self, AfterMx, Answer, Exchange, FAILED, Failure, Verdict};
use crate::auction::{CompiledSchema, LeadError};
use crate::config::Settings;

/// How many domains' verdicts are kept at most.
pub const CAPACITY: u64 = 50_000;

/// The look-ups of one process: off (`mx_lookup = false`), or a resolver and its cache.
pub struct MxLookup {
    inner: Option<Inner>,
}

struct Inner {
    resolver: TokioResolver,
    cache: moka::future::Cache<String, Kept>,
    timeout: Duration,
}

/// A verdict and how long it is kept.
#[derive(Debug, Clone, Copy)]
struct Kept {
    verdict: Verdict,
    keep: Duration,
}

struct KeepFor;

impl moka::Expiry<String, Kept> for KeepFor {
    fn expire_after_create(&self, _: &String, kept: &Kept, _: Instant) -> Option<Duration> {
        Some(kept.keep)
    }
}

impl std::fmt::Debug for MxLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MxLookup")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl MxLookup {
    /// The look-ups `settings` ask for: none when `mx_lookup` is off; else a resolver of
    /// `mx_nameservers`, or of the system's configuration when it is empty.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        if !settings.mx_lookup {
            return Ok(MxLookup { inner: None });
        }
        let timeout = settings.mx_timeout();
        let nameservers = settings
            .mx_nameserver_addresses()
            .map_err(anyhow::Error::msg)
            .context("mx_nameservers")?;
        let mut builder = if nameservers.is_empty() {
            TokioResolver::builder_tokio()
                .context("mx_lookup: cannot read the system's nameservers (/etc/resolv.conf); set mx_nameservers")?
        } else {
            let servers = nameservers
                .iter()
                .map(|&address| nameserver(address))
                .collect();
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let options = builder.options_mut();
        options.timeout = timeout;
        options.attempts = 1;
        // The verdicts are kept here (one entry per domain, bounded); the resolver keeps none.
        options.cache_size = 0;
        let resolver = builder
            .build()
            .context("mx_lookup: cannot build the resolver")?;
        let cache = moka::future::Cache::builder()
            .max_capacity(CAPACITY)
            .expire_after(KeepFor)
            .build();
        Ok(MxLookup {
            inner: Some(Inner {
                resolver,
                cache,
                timeout,
            }),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The verdict on `domain` (lower-cased, no trailing dot), from the cache or the DNS;
    /// `None` when the look-ups are off.
    pub async fn verdict(&self, domain: &str) -> Option<Verdict> {
        let inner = self.inner.as_ref()?;
        let kept = inner
            .cache
            .get_with(domain.to_owned(), async {
                let started = Instant::now();
                let (verdict, keep) =
                    match tokio::time::timeout(inner.timeout, look_up(&inner.resolver, domain))
                        .await
                    {
                        Ok(decided) => decided,
                        Err(_) => (Verdict::Unknown(Failure::Timeout), FAILED),
                    };
                let outcome = outcome_of(verdict);
                crate::meters::mx_lookup(outcome, started.elapsed());
                tracing::debug!(outcome, "email domain MX look-up");
                Kept { verdict, keep }
            })
            .await;
        Some(kept.verdict)
    }
}

/// `address` asked over UDP, and TCP for a truncated answer.
fn nameserver(address: SocketAddr) -> NameServerConfig {
    let mut config = NameServerConfig::udp_and_tcp(address.ip());
    for connection in &mut config.connections {
        connection.port = address.port();
    }
    config
}

fn outcome_of(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Deliverable => "deliverable",
        Verdict::Unreachable(why) => why.as_str(),
        Verdict::Unknown(failure) => failure.as_str(),
    }
}

/// The MX question, then, without MX records, the A and AAAA questions (at once).
async fn look_up(resolver: &TokioResolver, domain: &str) -> (Verdict, Duration) {
    // Fully qualified: no search domain is ever appended.
    let Ok(name) = Name::from_utf8(format!("{domain}.")) else {
        return (Verdict::Unknown(Failure::Other), FAILED);
    };
    let mx = answer_of(resolver.mx_lookup(name.clone()).await, |data| match data {
        RData::MX(mx) => Some(Exchange {
            is_root: mx.exchange.is_root(),
        }),
        _ => None,
    });
    match mx::after_mx(&mx) {
        AfterMx::Decided(verdict, keep) => (verdict, keep),
        AfterMx::AskAddresses => {
            let (a, aaaa) = tokio::join!(
                resolver.ipv4_lookup(name.clone()),
                resolver.ipv6_lookup(name)
            );
            let a = answer_of(a, |data| matches!(data, RData::A(_)).then_some(()));
            let aaaa = answer_of(aaaa, |data| matches!(data, RData::AAAA(_)).then_some(()));
            mx::after_addresses(&a, &aaaa)
        }
    }
}

/// A look-up's result as the pure rule reads it: the records of the type asked (CNAMEs on
/// the way left out), or what the error says.
fn answer_of<T>(
    result: Result<hickory_resolver::lookup::Lookup, NetError>,
    read: impl Fn(&RData) -> Option<T>,
) -> Answer<T> {
    match result {
        Ok(lookup) => {
            let mut ttl_secs = u32::MAX;
            let records = lookup
                .answers()
                .iter()
                .filter_map(|record| {
                    let found = read(&record.data)?;
                    ttl_secs = ttl_secs.min(record.ttl);
                    Some(found)
                })
                .collect::<Vec<T>>();
            if records.is_empty() {
                Answer::NoRecords
            } else {
                Answer::Found { records, ttl_secs }
            }
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(none))) => {
            if none.response_code == ResponseCode::NXDomain {
                Answer::NoDomain
            } else {
                Answer::NoRecords
            }
        }
        Err(NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))) => {
            Answer::Failed(Failure::ServFail)
        }
        Err(NetError::Timeout) => Answer::Failed(Failure::Timeout),
        Err(_) => Answer::Failed(Failure::Other),
    }
}

/// The `require_mx` rules of a post's lead (already valid in every other way): the errors of
/// the email fields whose domain receives no mail. With the look-ups off, or no such rule,
/// nothing is asked.
pub async fn check_lead(
    lookup: &MxLookup,
    schema: &CompiledSchema,
    lead: &Map<String, Value>,
) -> Result<(), Vec<LeadError>> {
    let checks = schema.mx_checks(lead);
    if checks.is_empty() {
        return Ok(());
    }
    let mut errors = Vec::new();
    for check in checks {
        let outcome = match lookup.verdict(&check.domain).await {
            None => "disabled",
            Some(Verdict::Deliverable) => "deliverable",
            Some(Verdict::Unknown(_)) => "passed_open",
            Some(Verdict::Unreachable(_)) => {
                errors.push(check.refusal());
                "refused"
            }
        };
        crate::meters::mx_check(outcome);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
