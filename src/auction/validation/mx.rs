//! The `require_mx` rule's decisions, pure: what the DNS answers about an email domain mean
//! for a lead, and how long a verdict is kept. The look-ups themselves are at the edge
//! (`crate::validation_mx`), made at the post only.
//!
//! The choices (docs/validation.md):
//! - MX records with at least one real exchange: the domain receives mail.
//! - Only the null MX (`0 .`, RFC 7505): the domain says it receives no mail. Refused, and no
//!   fallback to its addresses (RFC 7505 §3 forbids it).
//! - NXDOMAIN: the domain does not exist. Refused.
//! - No MX record at all (NOERROR, empty): RFC 5321 §5.1's implicit MX, the domain's own A or
//!   AAAA address. A domain with either receives mail (a sender would deliver there); with
//!   neither, refused.
//! - A timeout, SERVFAIL or any other failure, of any of the look-ups: not the consumer's
//!   fault, so the rule passes open.

use std::time::Duration;

/// How long a deliverable verdict is kept at most, whatever the records' TTL.
pub const MAX_POSITIVE: Duration = Duration::from_secs(3600);
/// How long a deliverable verdict is kept at least (a TTL of 0 would make every post of a
/// burst look up again).
pub const MIN_POSITIVE: Duration = Duration::from_secs(30);
/// How long a refusing verdict (NXDOMAIN, null MX, no mail host) is kept.
pub const NEGATIVE: Duration = Duration::from_secs(300);
/// How long a failed look-up's pass is kept: an outage of the resolver does not make every
/// post to a domain wait out the timeout, and a recovered one is asked again soon.
pub const FAILED: Duration = Duration::from_secs(30);

/// Why a look-up gave no answer. Never the consumer's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer within the timeout.
    Timeout,
    /// The nameserver answered SERVFAIL.
    ServFail,
    /// Anything else: REFUSED, a malformed answer, no nameserver reachable.
    Other,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::ServFail => "servfail",
            Failure::Other => "error",
        }
    }
}

/// What a DNS question found, for one record type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// Records of the type asked (possibly none usable), with the smallest TTL among them.
    Found { records: Vec<T>, ttl_secs: u32 },
    /// The name exists but has no record of the type (NOERROR, no answer: "NODATA").
    NoRecords,
    /// The name does not exist (NXDOMAIN).
    NoDomain,
    /// No answer to judge.
    Failed(Failure),
}

/// One MX record, reduced to what the rule needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// The exchange is the root (`.`): with preference 0, RFC 7505's null MX.
    pub is_root: bool,
}

/// Why a domain receives no mail. No variant carries the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// NXDOMAIN.
    NoDomain,
    /// Only a null MX.
    NullMx,
    /// No MX, and no A or AAAA address to fall back to.
    NoMailHost,
}

impl Unreachable {
    pub fn as_str(self) -> &'static str {
        match self {
            Unreachable::NoDomain => "no_domain",
            Unreachable::NullMx => "null_mx",
            Unreachable::NoMailHost => "no_mail_host",
        }
    }
}

/// The rule's verdict on a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The domain receives mail: the lead passes.
    Deliverable,
    /// The domain receives no mail: the lead is refused.
    Unreachable(Unreachable),
    /// The DNS did not say: the lead passes (open).
    Unknown(Failure),
}

impl Verdict {
    /// Whether the lead is refused.
    pub fn refuses(self) -> bool {
        matches!(self, Verdict::Unreachable(_))
    }
}

/// What to do after the MX question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterMx {
    /// The verdict, and how long to keep it.
    Decided(Verdict, Duration),
    /// No MX record: ask for the domain's A and AAAA addresses (RFC 5321 §5.1).
    AskAddresses,
}

/// Judges the MX answer.
pub fn after_mx(answer: &Answer<Exchange>) -> AfterMx {
    match answer {
        Answer::Found { records, ttl_secs } if records.iter().any(|mx| !mx.is_root) => {
            AfterMx::Decided(Verdict::Deliverable, positive_for(*ttl_secs))
        }
        // Every exchange is the root: the null MX (a root exchange at any preference is no
        // host to deliver to either).
        Answer::Found { records, .. } if !records.is_empty() => {
            decided(Verdict::Unreachable(Unreachable::NullMx))
        }
        Answer::Found { .. } | Answer::NoRecords => AfterMx::AskAddresses,
        Answer::NoDomain => decided(Verdict::Unreachable(Unreachable::NoDomain)),
        Answer::Failed(failure) => decided(Verdict::Unknown(*failure)),
    }
}

/// Judges the A and AAAA answers of a domain without MX records: an address of either kind
/// is the implicit MX. A failure of one passes open unless the other found an address.
pub fn after_addresses<A, B>(a: &Answer<A>, aaaa: &Answer<B>) -> (Verdict, Duration) {
    let found = |ttl: Option<u32>, other: Option<u32>| match (ttl, other) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    let ttl_of = |found: bool, ttl: u32| found.then_some(ttl);
    let a_ttl = match a {
        Answer::Found { records, ttl_secs } => ttl_of(!records.is_empty(), *ttl_secs),
        _ => None,
    };
    let aaaa_ttl = match aaaa {
        Answer::Found { records, ttl_secs } => ttl_of(!records.is_empty(), *ttl_secs),
        _ => None,
    };
    if let Some(ttl) = found(a_ttl, aaaa_ttl) {
        return (Verdict::Deliverable, positive_for(ttl));
    }
    if let Some(failure) = failure_of(a).or(failure_of(aaaa)) {
        return (Verdict::Unknown(failure), FAILED);
    }
    let verdict = if matches!(a, Answer::NoDomain) || matches!(aaaa, Answer::NoDomain) {
        Unreachable::NoDomain
    } else {
        Unreachable::NoMailHost
    };
    (Verdict::Unreachable(verdict), NEGATIVE)
}

fn failure_of<T>(answer: &Answer<T>) -> Option<Failure> {
    match answer {
        Answer::Failed(failure) => Some(*failure),
        _ => None,
    }
}

fn decided(verdict: Verdict) -> AfterMx {
    let keep = match verdict {
        Verdict::Deliverable => MAX_POSITIVE,
        Verdict::Unreachable(_) => NEGATIVE,
        Verdict::Unknown(_) => FAILED,
    };
    AfterMx::Decided(verdict, keep)
}

/// A deliverable verdict is kept for the records' TTL, within [`MIN_POSITIVE`] and
/// [`MAX_POSITIVE`].
pub fn positive_for(ttl_secs: u32) -> Duration {
    Duration::from_secs(u64::from(ttl_secs)).clamp(MIN_POSITIVE, MAX_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MX: Exchange = Exchange { is_root: false };
    const NULL: Exchange = Exchange { is_root: true };

    fn found<T>(records: Vec<T>, ttl_secs: u32) -> Answer<T> {
        Answer::Found { records, ttl_secs }
    }

    #[test]
    fn an_exchange_is_deliverable_for_its_ttl_within_bounds() {
        assert_eq!(
            after_mx(&found(vec![MX], 600)),
            AfterMx::Decided(Verdict::Deliverable, Duration::from_secs(600))
        );
        assert_eq!(
            after_mx(&found(vec![MX], 86_400)),
            AfterMx::Decided(Verdict::Deliverable, MAX_POSITIVE)
        );
        assert_eq!(
            after_mx(&found(vec![MX], 0)),
            AfterMx::Decided(Verdict::Deliverable, MIN_POSITIVE)
        );
        // A null MX beside a real exchange (a misconfiguration): the real one receives mail.
        assert_eq!(
            after_mx(&found(vec![NULL, MX], 600)),
            AfterMx::Decided(Verdict::Deliverable, Duration::from_secs(600))
        );
    }

    #[test]
    fn no_domain_and_the_null_mx_refuse_without_asking_addresses() {
        let refused = |why| AfterMx::Decided(Verdict::Unreachable(why), NEGATIVE);
        assert_eq!(after_mx(&Answer::NoDomain), refused(Unreachable::NoDomain));
        assert_eq!(
            after_mx(&found(vec![NULL], 600)),
            refused(Unreachable::NullMx)
        );
        assert!(Verdict::Unreachable(Unreachable::NullMx).refuses());
    }

    #[test]
    fn failures_pass_open() {
        for failure in [Failure::Timeout, Failure::ServFail, Failure::Other] {
            let AfterMx::Decided(verdict, keep) = after_mx(&Answer::Failed(failure)) else {
                panic!("{failure:?} asks addresses");
            };
            assert_eq!(verdict, Verdict::Unknown(failure));
            assert!(!verdict.refuses());
            assert_eq!(keep, FAILED);
        }
    }

    #[test]
    fn no_mx_falls_back_to_the_addresses() {
        assert_eq!(after_mx(&Answer::NoRecords), AfterMx::AskAddresses);
        assert_eq!(after_mx(&found(Vec::new(), 60)), AfterMx::AskAddresses);
        let none: Answer<()> = Answer::NoRecords;
        assert_eq!(
            after_addresses(&found(vec![()], 120), &none),
            (Verdict::Deliverable, Duration::from_secs(120))
        );
        assert_eq!(
            after_addresses(&none, &found(vec![()], 7200)),
            (Verdict::Deliverable, MAX_POSITIVE)
        );
        assert_eq!(
            after_addresses(&found(vec![()], 90), &found(vec![()], 60)),
            (Verdict::Deliverable, Duration::from_secs(60))
        );
        // An address wins over the other question's failure.
        assert_eq!(
            after_addresses(
                &found(vec![()], 90),
                &Answer::<()>::Failed(Failure::Timeout)
            ),
            (Verdict::Deliverable, Duration::from_secs(90))
        );
        assert_eq!(
            after_addresses(&none, &none),
            (Verdict::Unreachable(Unreachable::NoMailHost), NEGATIVE)
        );
        assert_eq!(
            after_addresses(&Answer::<()>::NoDomain, &none),
            (Verdict::Unreachable(Unreachable::NoDomain), NEGATIVE)
        );
        assert_eq!(
            after_addresses(&none, &Answer::<()>::Failed(Failure::ServFail)),
            (Verdict::Unknown(Failure::ServFail), FAILED)
        );
    }
}
