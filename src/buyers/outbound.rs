//! The outbound address policy: which addresses Gavel may call for a tenant (RTB requests,
//! deliveries, and any later webhook). A tenant's admin chooses these URLs, so without a policy
//! any tenant could make Gavel call its cloud's metadata service, the database, other internal
//! services or Gavel's own admin routes (server-side request forgery).
//!
//! Refused unless `outbound_allow` names them: loopback, unspecified, "this network", private
//! (RFC 1918), carrier-grade NAT (100.64/10), link-local (169.254/16, fe80::/10, which holds the
//! metadata address 169.254.169.254), unique-local (fc00::/7, which holds fd00:ec2::254),
//! site-local, multicast, broadcast and reserved addresses, IPv6 addresses that embed an IPv4
//! address (mapped, compatible, NAT64, 6to4) judged by that IPv4 address, and the metadata host
//! names.
//!
//! Checked three times: when a contract is saved (the literal address, and what the name resolves
//! to then), before each call on the URL's literal address or name (the HTTP client does not
//! resolve an IP literal), and at connect time on every address the name resolves to (a resolver
//! on the client drops refused addresses), so DNS rebinding or a URL written in SQL cannot get
//! around it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Host;

/// Names that are the cloud metadata service wherever they resolve (GCE answers both).
const METADATA_NAMES: [&str; 2] = ["metadata.google.internal", "metadata"];

/// Why an address or name may not be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Loopback,
    Unspecified,
    Private,
    SharedNat,
    LinkLocal,
    UniqueLocal,
    Multicast,
    Broadcast,
    Reserved,
    Metadata,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Loopback => "a loopback address",
            Refusal::Unspecified => "an unspecified address",
            Refusal::Private => "a private address",
            Refusal::SharedNat => "a carrier-grade NAT address",
            Refusal::LinkLocal => "a link-local address",
            Refusal::UniqueLocal => "a unique-local address",
            Refusal::Multicast => "a multicast address",
            Refusal::Broadcast => "the broadcast address",
            Refusal::Reserved => "a reserved address",
            Refusal::Metadata => "the cloud metadata service",
        }
    }
}

/// The classifier: why `ip` is refused, if it is (before the allow list).
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => Refusal::Metadata,
        _ if ip.is_unspecified() => Refusal::Unspecified,
        _ if ip.is_broadcast() => Refusal::Broadcast,
        (0, ..) => Refusal::Unspecified,
        (127, ..) => Refusal::Loopback,
        (10, ..) => Refusal::Private,
        (172, 16..=31, _) => Refusal::Private,
        (192, 168, _) => Refusal::Private,
        (100, 64..=127, _) => Refusal::SharedNat,
        (169, 254, _) => Refusal::LinkLocal,
        (224..=239, ..) => Refusal::Multicast,
        (240..=255, ..) => Refusal::Reserved,
        // IETF protocol assignments (DS-Lite, NAT64 discovery) and benchmarking networks.
        (192, 0, 0) | (198, 18..=19, _) => Refusal::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some(Refusal::Metadata);
    }
    if ip.is_unspecified() {
        return Some(Refusal::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Refusal::Loopback);
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let segments = ip.segments();
    let first = segments[0];
    Some(match first {
        _ if first & 0xfe00 == 0xfc00 => Refusal::UniqueLocal,
        _ if first & 0xffc0 == 0xfe80 => Refusal::LinkLocal,
        // Site-local: deprecated, still routed inside some networks.
        _ if first & 0xffc0 == 0xfec0 => Refusal::UniqueLocal,
        _ if first & 0xff00 == 0xff00 => Refusal::Multicast,
        // NAT64 for local use (RFC 8215): reaches whatever IPv4 address the network maps.
        0x0064 if segments[1] == 0xff9b && segments[2] == 1 => Refusal::Reserved,
        // Teredo (2001::/32) tunnels to an IPv4 address through relays; documentation
        // (2001:db8::/32) is never a real buyer.
        0x2001 if segments[1] == 0 || segments[1] == 0x0db8 => Refusal::Reserved,
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address carries and reaches: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`), NAT64
/// (`64:ff9b::a.b.c.d`) and 6to4 (`2002:aabb:ccdd::/48`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] | [0, 0, 0, 0, 0xffff, 0, ..] => {
            Some(low)
        }
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// A refused call or configuration. The text names neither the host nor the address (a
/// delivery's reason reaches the partner, who has no business knowing the buyer's endpoint),
/// only the kind of address; it never holds lead data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by the outbound address policy: {0}")]
pub struct Refused(String);

impl Refused {
    fn address(why: Refusal) -> Self {
        Refused(format!("the host is {}", why.as_str()))
    }

    fn resolved(why: Refusal) -> Self {
        Refused(format!("the host name resolves to {}", why.as_str()))
    }

    fn name() -> Self {
        Self::address(Refusal::Metadata)
    }
}

/// `outbound_allow`, parsed: networks and host names Gavel may call even though the policy
/// would refuse them.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    networks: Vec<IpNet>,
    /// Lower case, without a trailing dot.
    names: Vec<String>,
    /// The host of Gavel's own `public_url`: a tenant's URL may not make Gavel call itself
    /// (its admin routes with the tenant's headers, or a ping that pings again).
    own_host: Option<String>,
}

impl Policy {
    /// Reads the entries of `outbound_allow`: CIDRs (`10.1.0.0/16`), addresses (a /32 or
    /// /128) and host names. An error names the entry that is none of these.
    pub fn from_allow_list<S: AsRef<str>>(entries: &[S]) -> Result<Policy, String> {
        let mut policy = Policy::default();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if let Ok(net) = entry.parse::<IpNet>() {
                policy.networks.push(net.trunc());
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                policy.networks.push(IpNet::from(ip));
            } else if matches!(Host::parse(entry), Ok(Host::Domain(_))) && !entry.contains('/') {
                policy.names.push(normal_name(entry));
            } else {
                return Err(format!(
                    "{entry:?} is not a CIDR, an IP address or a host name"
                ));
            }
        }
        Ok(policy)
    }

    /// The same policy, also refusing the host of `public_url` (Gavel itself) unless allowed.
    pub fn refusing_own_url(mut self, public_url: Option<&str>) -> Policy {
        self.own_host = public_url
            .and_then(|url| Url::parse(url).ok())
            .and_then(|url| url.host_str().map(normal_name));
        self
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(&ip))
    }

    fn allows_name(&self, host: &str) -> bool {
        !self.names.is_empty() && self.names.contains(&normal_name(host))
    }

    /// Whether `ip` may be called.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        let ip = ip.to_canonical();
        match classify(ip) {
            Some(why) if !self.allows_ip(ip) => Err(why),
            _ => Ok(()),
        }
    }

    /// The check before a call, with no I/O and no allocation: the URL's literal address, or
    /// its name against the metadata names. A name's addresses are checked by the resolver.
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        match url.host() {
            Some(Host::Ipv4(ip)) => self.check_literal(IpAddr::V4(ip))?,
            Some(Host::Ipv6(ip)) => self.check_literal(IpAddr::V6(ip))?,
            Some(Host::Domain(name)) => self.check_name(name)?,
            None => return Err(Refused("the URL has no host".to_owned())),
        }
        if let Some(own) = &self.own_host
            && url.host_str().is_some_and(|host| is_same_name(host, own))
            && !self.allows_host(url)
        {
            return Err(Refused("the host is Gavel itself".to_owned()));
        }
        Ok(())
    }

    /// Whether `outbound_allow` names the URL's host (its address or its name).
    fn allows_host(&self, url: &Url) -> bool {
        match url.host() {
            Some(Host::Ipv4(ip)) => self.allows_ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.allows_ip(IpAddr::V6(ip).to_canonical()),
            Some(Host::Domain(name)) => self.allows_name(name),
            None => false,
        }
    }

    fn check_literal(&self, ip: IpAddr) -> Result<(), Refused> {
        self.check_ip(ip).map_err(Refused::address)
    }

    fn check_name(&self, name: &str) -> Result<(), Refused> {
        let bare = name.strip_suffix('.').unwrap_or(name);
        if METADATA_NAMES
            .iter()
            .any(|metadata| bare.eq_ignore_ascii_case(metadata))
            && !self.allows_name(name)
        {
            return Err(Refused::name());
        }
        Ok(())
    }

    /// The check when a URL is saved: [`Policy::check_url`], then (for a name) every address it
    /// resolves to now must be allowed. A name that does not resolve within `timeout` is
    /// accepted: it is checked again on every call.
    pub async fn check_url_at_save(&self, url: &str, timeout: Duration) -> Result<(), Refused> {
        let Ok(url) = Url::parse(url) else {
            // Not a URL: the configuration's own parser reports it.
            return Ok(());
        };
        self.check_url(&url)?;
        let Some(Host::Domain(name)) = url.host() else {
            return Ok(());
        };
        if self.allows_name(name) {
            return Ok(());
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let lookup = tokio::net::lookup_host((name, port));
        let Ok(Ok(addresses)) = tokio::time::timeout(timeout, lookup).await else {
            return Ok(());
        };
        for address in addresses {
            if let Err(why) = self.check_ip(address.ip()) {
                return Err(Refused::resolved(why));
            }
        }
        Ok(())
    }
}

/// `host` (as the URL parser wrote it) and `normal` (from [`normal_name`]) name the same host.
fn is_same_name(host: &str, normal: &str) -> bool {
    host.strip_suffix('.')
        .unwrap_or(host)
        .eq_ignore_ascii_case(normal)
}

fn normal_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The client's resolver: the system's (getaddrinfo), keeping only the addresses the policy
/// allows; an error when none is left.
struct PolicyResolver {
    policy: Arc<Policy>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let host = name.as_str();
            policy.check_name(host)?;
            let allowed_name = policy.allows_name(host);
            let mut refused = None;
            let kept: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
                .await?
                .filter(|address| {
                    allowed_name
                        || policy
                            .check_ip(address.ip())
                            .map_err(|why| refused = Some(why))
                            .is_ok()
                })
                .collect();
            match (kept.is_empty(), refused) {
                (true, Some(why)) => Err(Refused::resolved(why).into()),
                _ => Ok(Box::new(kept.into_iter()) as Addrs),
            }
        })
    }
}

/// The one HTTP client for calls made for tenants, with its policy. Cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    policy: Arc<Policy>,
    /// The buyers' endpoints failing in this process (`super::breaker`).
    breakers: Arc<super::breaker::Breakers>,
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("policy", &self.policy)
            .finish()
    }
}

impl Outbound {
    pub fn new(policy: Policy) -> reqwest::Result<Self> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            // A buyer's redirect is an answer, not an instruction to re-send the lead elsewhere
            // (nor a way around the address policy).
            .redirect(reqwest::redirect::Policy::none())
            // Through a proxy, the policy would judge the proxy's address, not the buyer's.
            .no_proxy()
            .tcp_nodelay(true)
            .dns_resolver(Arc::new(PolicyResolver {
                policy: Arc::clone(&policy),
            }))
            .build()?;
        Ok(Outbound {
            client,
            policy,
            breakers: Arc::default(),
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn breakers(&self) -> &super::breaker::Breakers {
        &self.breakers
    }
}

/// The policy's refusal in a client error's causes, if it is one.
pub fn refusal_in(error: &reqwest::Error) -> Option<&Refused> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(refused);
        }
        cause = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_classified() {
        let cases = [
            ("169.254.169.254", Some(Refusal::Metadata)),
            ("fd00:ec2::254", Some(Refusal::Metadata)),
            ("::ffff:169.254.169.254", Some(Refusal::Metadata)),
            ("::169.254.169.254", Some(Refusal::Metadata)),
            ("64:ff9b::a9fe:a9fe", Some(Refusal::Metadata)),
            ("2002:a9fe:a9fe::1", Some(Refusal::Metadata)),
            ("::ffff:0:169.254.169.254", Some(Refusal::Metadata)),
            ("::ffff:0:7f00:1", Some(Refusal::Loopback)),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                Some(Refusal::Reserved),
            ),
            ("2001:db8::1", Some(Refusal::Reserved)),
            ("127.0.0.1", Some(Refusal::Loopback)),
            ("127.255.0.9", Some(Refusal::Loopback)),
            ("::1", Some(Refusal::Loopback)),
            ("::ffff:127.0.0.1", Some(Refusal::Loopback)),
            ("0.0.0.0", Some(Refusal::Unspecified)),
            ("0.1.2.3", Some(Refusal::Unspecified)),
            ("::", Some(Refusal::Unspecified)),
            ("10.0.0.1", Some(Refusal::Private)),
            ("172.16.0.1", Some(Refusal::Private)),
            ("172.31.255.255", Some(Refusal::Private)),
            ("192.168.1.1", Some(Refusal::Private)),
            ("::ffff:10.0.0.1", Some(Refusal::Private)),
            ("100.64.0.1", Some(Refusal::SharedNat)),
            ("100.127.255.255", Some(Refusal::SharedNat)),
            ("169.254.0.1", Some(Refusal::LinkLocal)),
            ("fe80::1", Some(Refusal::LinkLocal)),
            ("fc00::1", Some(Refusal::UniqueLocal)),
            ("fdff::1", Some(Refusal::UniqueLocal)),
            ("fec0::1", Some(Refusal::UniqueLocal)),
            ("224.0.0.1", Some(Refusal::Multicast)),
            ("239.255.255.250", Some(Refusal::Multicast)),
            ("ff02::1", Some(Refusal::Multicast)),
            ("255.255.255.255", Some(Refusal::Broadcast)),
            ("240.0.0.1", Some(Refusal::Reserved)),
            ("192.0.0.170", Some(Refusal::Reserved)),
            ("198.18.0.1", Some(Refusal::Reserved)),
            ("64:ff9b:1::1", Some(Refusal::Reserved)),
            // Public addresses, including their neighbours of the refused ranges.
            ("8.8.8.8", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("192.169.0.1", None),
            ("169.253.255.255", None),
            ("2606:4700::1111", None),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::808:808", None),
        ];
        for (text, expected) in cases {
            assert_eq!(classify(ip(text)), expected, "{text}");
        }
    }

    #[test]
    fn the_allow_list_admits_networks_and_names() {
        let policy =
            Policy::from_allow_list(&["127.0.0.1/32", "10.1.0.0/16", "fd12::1", "Buyer.Internal."])
                .unwrap();
        assert_eq!(policy.check_ip(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check_ip(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(policy.check_ip(ip("127.0.0.2")), Err(Refusal::Loopback));
        assert_eq!(policy.check_ip(ip("10.1.200.3")), Ok(()));
        assert_eq!(policy.check_ip(ip("10.2.0.1")), Err(Refusal::Private));
        assert_eq!(policy.check_ip(ip("fd12::1")), Ok(()));
        assert!(policy.allows_name("buyer.internal"));
        assert!(!policy.allows_name("other.internal"));
        for bad in ["10.0.0.0/33", "http://x", "a b", ""] {
            assert!(Policy::from_allow_list(&[bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls_are_judged_after_parsing() {
        let policy = Policy::default();
        let refused = |url: &str| policy.check_url(&Url::parse(url).unwrap()).is_err();
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://0xa9fea9fe/",
            "http://2852039166/",
            "http://0251.0376.0251.0376/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://10.0.0.1/",
            "http://0.0.0.0:8080/",
            "http://[::1]/",
            "http://127.1/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.google.internal./",
            "http://metadata/",
        ] {
            assert!(refused(url), "{url}");
        }
        for url in [
            "https://buyer.example/bid",
            "http://8.8.8.8/",
            "http://[2606:4700::1111]/",
        ] {
            assert!(!refused(url), "{url}");
        }
        let allowed = Policy::from_allow_list(&["metadata.google.internal"]).unwrap();
        assert!(
            allowed
                .check_url(&Url::parse("http://metadata.google.internal/").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn gavel_may_not_call_itself_unless_allowed() {
        let url = |text: &str| Url::parse(text).unwrap();
        let policy = Policy::default().refusing_own_url(Some("https://Gavel.example.com"));
        let refused = policy
            .check_url(&url(
                "https://gavel.example.com./v1/admin/campaigns/x/rotate-key",
            ))
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "refused by the outbound address policy: the host is Gavel itself"
        );
        assert!(
            policy
                .check_url(&url("https://buyer.example.com/bid"))
                .is_ok()
        );
        // The demo and the tests call buyers served next to Gavel: allowed explicitly.
        let local = Policy::from_allow_list(&["127.0.0.1/32"])
            .unwrap()
            .refusing_own_url(Some("http://127.0.0.1:8080"));
        assert!(
            local
                .check_url(&url("http://127.0.0.1:8080/demo/buyers/acme/rtb"))
                .is_ok()
        );
        let strict = Policy::default().refusing_own_url(Some("http://127.0.0.1:8080"));
        assert!(
            strict
                .check_url(&url("http://127.0.0.1:8080/v1/ping"))
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_name_resolving_to_a_refused_address_is_refused_at_save_and_by_the_resolver() {
        let policy = Policy::default();
        let error = policy
            .check_url_at_save("http://localhost:9/bid", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "refused by the outbound address policy: the host name resolves to a loopback address"
        );
        let resolver = PolicyResolver {
            policy: Arc::new(policy),
        };
        let error = resolver
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(error.downcast_ref::<Refused>().is_some(), "{error}");

        let allowed = PolicyResolver {
            policy: Arc::new(Policy::from_allow_list(&["127.0.0.1/32", "::1"]).unwrap()),
        };
        let addresses: Vec<SocketAddr> = allowed
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addresses.iter().all(|a| a.ip().is_loopback()) && !addresses.is_empty());
    }
}
