//! Settings: `config/default.toml` (compiled in), then an optional file, then `GAVEL_*`
//! environment variables. Every value is checked at start-up; a bad one stops Gavel with a
//! message that names the setting.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

pub const DEFAULTS: &str = include_str!("../config/default.toml");

/// Environment variables that configure the process but are not settings.
const NOT_SETTINGS: &[&str] = &["GAVEL_CONFIG"];

/// What a post's request needs beyond its RTB round and delivery: claiming, reserving,
/// completing (with retries of a moment) and answering.
pub const POST_MARGIN_MS: u64 = 4000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// When the console's session cookie is marked `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecureCookie {
    /// When the request came over https (the public URL is https, or a proxy says so).
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    /// `None` when empty: derived from the address Gavel listens on.
    #[serde(deserialize_with = "empty_as_none")]
    pub public_url: Option<String>,
    /// `None` when empty: Gavel runs its own PostgreSQL in `data_dir`.
    #[serde(deserialize_with = "empty_as_none")]
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
    pub pool_size: u32,
    pub db_acquire_timeout_ms: u64,
    pub body_limit_bytes: usize,
    pub request_timeout_ms: u64,
    pub header_read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_connections: usize,
    pub rtb_timeout_ms: u64,
    pub delivery_timeout_ms: u64,
    pub delivery_timeout_max_ms: u64,
    pub max_in_flight_auctions: usize,
    pub max_waiting_retries: usize,
    pub notice_queue_size: usize,
    pub notice_concurrency: usize,
    pub idempotency_key_hours: u32,
    pub statement_timeout_ms: u64,
    /// Whether a ping's record waits for PostgreSQL's WAL flush (docs/durability.md).
    pub ping_synchronous_commit: bool,
    /// How long a ping waits for its record's write before answering without it, the write
    /// going on (docs/durability.md); 0: a ping always waits.
    pub ping_record_max_wait_ms: u64,
    /// Whether a ping that waited for its buyers' bids answers as soon as its record is handed
    /// to its write, not once written (docs/durability.md); only while
    /// `ping_record_max_wait_ms` > 0 and `ping_synchronous_commit` is off.
    pub rtb_answer_before_record: bool,
    pub report_max_days: u32,
    pub console_session_hours: u32,
    pub console_secure_cookie: SecureCookie,
    pub max_concurrent_reports: usize,
    pub max_rtb_calls_per_ping: usize,
    pub state_cache_ms: u64,
    pub shutdown_grace_seconds: u64,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Networks (CIDRs, addresses) and host names Gavel may call for tenants although the
    /// outbound address policy refuses them (`buyers::outbound`). In the environment: a
    /// comma-separated list.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub outbound_allow: Vec<String>,
    /// The keys posted leads' PII is sealed with at rest, the active one first
    /// (`crate::pii`, docs/pii.md). `None` when empty: `serve` on a configured database
    /// refuses to start; the demo and Gavel's private PostgreSQL keep a generated key in
    /// `data_dir`.
    #[serde(deserialize_with = "crate::pii::deserialize_keys")]
    pub pii_keys: Option<crate::pii::PiiKeys>,
    /// Where TrustedForm certificates are retained (docs/verification.md); only tests change
    /// it. Never per offer: a tenant cannot send its credentials elsewhere.
    pub trustedform_base_url: String,
    /// Where Jornaya's TCPA Guardian answers (docs/verification.md); only tests change it.
    pub jornaya_base_url: String,
    /// Whether an email field's `require_mx` rule looks up the domain's mail exchangers at
    /// the post (docs/validation.md). Off: the rule is ignored (and counted as `disabled`).
    pub mx_lookup: bool,
    /// The nameservers the MX look-up asks (`ip` or `ip:port`); empty: the system's
    /// (`/etc/resolv.conf`). In the environment: a comma-separated list.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub mx_nameservers: Vec<String>,
    /// How long a post waits for one domain's MX look-up (its A/AAAA fallback included)
    /// before the rule passes open.
    pub mx_timeout_ms: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Loads the settings from the defaults, `file` (if any) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Same as [`Settings::load`] with the environment given explicitly (tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = env
            .into_iter()
            .filter(|(key, _)| key.starts_with("GAVEL_") && !NOT_SETTINGS.contains(&key.as_str()))
            .collect();
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            builder = builder.add_source(File::from(file).required(true));
        }
        let settings: Settings = builder
            .add_source(
                Environment::with_prefix("GAVEL")
                    .prefix_separator("_")
                    .source(Some(env)),
            )
            .build()
            .and_then(Config::try_deserialize)
            .map_err(|error| ConfigError(error.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |setting: &str, why: &str| Err(ConfigError(format!("{setting}: {why}")));
        if let Some(public_url) = &self.public_url {
            match reqwest::Url::parse(public_url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
                _ => {
                    return bad(
                        "public_url",
                        "must be an http(s) URL such as https://gavel.example.com",
                    );
                }
            }
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return bad(
                "database_url",
                "must be a postgres:// URL, or empty for a private PostgreSQL",
            );
        }
        if self.pool_size == 0 {
            return bad("pool_size", "must be at least 1");
        }
        if self.db_acquire_timeout_ms == 0 {
            return bad("db_acquire_timeout_ms", "must be at least 1");
        }
        if self.body_limit_bytes < 1024 {
            return bad("body_limit_bytes", "must be at least 1024");
        }
        if !(1..=1_000_000).contains(&self.notice_queue_size) {
            return bad("notice_queue_size", "must be between 1 and 1000000");
        }
        if !(1..=10_000).contains(&self.notice_concurrency) {
            return bad("notice_concurrency", "must be between 1 and 10000");
        }
        if self.max_in_flight_auctions == 0 {
            return bad("max_in_flight_auctions", "must be at least 1");
        }
        if !(100..=3_600_000).contains(&self.statement_timeout_ms) {
            return bad(
                "statement_timeout_ms",
                "must be between 100 and 3600000 (one hour)",
            );
        }
        if self.ping_record_max_wait_ms > 60_000 {
            return bad("ping_record_max_wait_ms", "must be at most 60000");
        }
        if !(1..=720).contains(&self.console_session_hours) {
            return bad("console_session_hours", "must be between 1 and 720");
        }
        if !(1..=3660).contains(&self.report_max_days) {
            return bad("report_max_days", "must be between 1 and 3660");
        }
        if !(1..=64).contains(&self.max_concurrent_reports) {
            return bad("max_concurrent_reports", "must be between 1 and 64");
        }
        if !(1..=1000).contains(&self.max_rtb_calls_per_ping) {
            return bad("max_rtb_calls_per_ping", "must be between 1 and 1000");
        }
        if self.state_cache_ms > 10_000 {
            return bad("state_cache_ms", "must be at most 10000");
        }
        if self.request_timeout_ms == 0 {
            return bad("request_timeout_ms", "must be at least 1");
        }
        if self.header_read_timeout_ms == 0 {
            return bad("header_read_timeout_ms", "must be at least 1");
        }
        // hyper's header timer also runs while a keep-alive connection waits for its next
        // request: an idle connection never outlives it, so a longer idle timeout would lie.
        if !(1..=self.header_read_timeout_ms).contains(&self.idle_timeout_ms) {
            return bad(
                "idle_timeout_ms",
                "must be between 1 and header_read_timeout_ms",
            );
        }
        if self.max_connections == 0 {
            return bad("max_connections", "must be at least 1");
        }
        if !(1..=2000).contains(&self.rtb_timeout_ms) {
            return bad("rtb_timeout_ms", "must be between 1 and 2000");
        }
        if !(1..=60_000).contains(&self.delivery_timeout_ms) {
            return bad("delivery_timeout_ms", "must be between 1 and 60000");
        }
        if !(1..=60_000).contains(&self.delivery_timeout_max_ms) {
            return bad("delivery_timeout_max_ms", "must be between 1 and 60000");
        }
        if self.delivery_timeout_ms > self.delivery_timeout_max_ms {
            return bad(
                "delivery_timeout_ms",
                "must be at most delivery_timeout_max_ms",
            );
        }
        // A post's request must outlast its slowest settlement: the direct post's RTB round
        // (a contract may set up to MAX_RTB_TIMEOUT_MS, whatever the default), the longest
        // delivery, and the database work around them.
        let rtb_max = u64::from(crate::auction::MAX_RTB_TIMEOUT_MS);
        let needed = self.delivery_timeout_max_ms + rtb_max + POST_MARGIN_MS;
        if self.request_timeout_ms < needed {
            return bad(
                "request_timeout_ms",
                &format!(
                    "must be at least delivery_timeout_max_ms + {rtb_max} (the longest RTB timeout) + {POST_MARGIN_MS} ({needed})"
                ),
            );
        }
        if !(24..=720).contains(&self.idempotency_key_hours) {
            return bad("idempotency_key_hours", "must be between 24 and 720");
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return bad("log_level", &error.to_string());
        }
        if let Err(error) = crate::buyers::outbound::Policy::from_allow_list(&self.outbound_allow) {
            return bad("outbound_allow", &error);
        }
        for (name, url) in [
            ("trustedform_base_url", &self.trustedform_base_url),
            ("jornaya_base_url", &self.jornaya_base_url),
        ] {
            let sound = url::Url::parse(url).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.query().is_none() && u.has_host()
            });
            if !sound {
                return bad(name, "must be an http(s) URL without a query");
            }
        }
        if let Err(error) = self.mx_nameserver_addresses() {
            return bad("mx_nameservers", &error);
        }
        if !(1..=10_000).contains(&self.mx_timeout_ms) {
            return bad("mx_timeout_ms", "must be between 1 and 10000");
        }
        Ok(())
    }

    /// The nameservers of `mx_nameservers`: an address (port 53) or `address:port`
    /// (`[v6]:port` for IPv6).
    pub fn mx_nameserver_addresses(&self) -> Result<Vec<SocketAddr>, String> {
        self.mx_nameservers
            .iter()
            .map(|entry| {
                entry
                    .parse::<SocketAddr>()
                    .or_else(|_| {
                        entry
                            .parse::<std::net::IpAddr>()
                            .map(|ip| SocketAddr::new(ip, 53))
                    })
                    .map_err(|_| format!("{entry} is not an IP address, or an address and a port"))
            })
            .collect()
    }

    pub fn mx_timeout(&self) -> Duration {
        Duration::from_millis(self.mx_timeout_ms)
    }

    /// The outbound address policy of `outbound_allow` (validated at load), refusing Gavel's
    /// own `public_url` host too.
    pub fn outbound_policy(&self) -> crate::buyers::outbound::Policy {
        crate::buyers::outbound::Policy::from_allow_list(&self.outbound_allow)
            .unwrap_or_default()
            .refusing_own_url(self.public_url.as_deref())
    }

    pub fn state_cache_ttl(&self) -> Duration {
        Duration::from_millis(self.state_cache_ms)
    }

    pub fn db_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.db_acquire_timeout_ms)
    }

    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    /// The bound on a ping's wait for its record (`None`: it always waits).
    pub fn ping_record_max_wait(&self) -> Option<Duration> {
        (self.ping_record_max_wait_ms > 0)
            .then(|| Duration::from_millis(self.ping_record_max_wait_ms))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The longest a delivery may take: a contract's own `timeout_ms` is cut to it.
    pub fn delivery_timeout_max(&self) -> Duration {
        Duration::from_millis(self.delivery_timeout_max_ms)
    }

    /// When a post still settling answers `202 settling` rather than wait on: a moment before
    /// the request timeout would cut it with a 503.
    pub fn post_answer_deadline(&self) -> Duration {
        let timeout = self.request_timeout();
        timeout.saturating_sub((timeout / 4).min(Duration::from_secs(1)))
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }

    /// Sets `public_url` from the bound address when none is configured (0.0.0.0 is reached
    /// as 127.0.0.1).
    pub fn resolve_public_url(&mut self, bound: SocketAddr) {
        if self.public_url.is_none() {
            let host = if bound.ip().is_unspecified() {
                SocketAddr::new([127, 0, 0, 1].into(), bound.port())
            } else {
                bound
            };
            self.public_url = Some(format!("http://{host}"));
        }
    }

    /// `public_url` joined with an absolute path, without a doubled slash.
    pub fn public_url_for(&self, path: &str) -> String {
        let base = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen));
        format!("{}{path}", base.trim_end_matches('/'))
    }
}

/// A list from a file, or comma-separated text from the environment (`GAVEL_OUTBOUND_ALLOW=
/// 127.0.0.1/32,buyer.internal`); empty entries are dropped.
fn list_or_comma_separated<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<String>),
        Text(String),
    }
    let entries = match ListOrText::deserialize(d)? {
        ListOrText::List(list) => list,
        ListOrText::Text(text) => text.split(',').map(str::to_owned).collect(),
    };
    Ok(entries
        .into_iter()
        .map(|entry| entry.trim().to_owned())
        .filter(|entry| !entry.is_empty())
        .collect())
}

fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(d)?;
    Ok(value.filter(|v| !v.trim().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(contents.as_bytes()).unwrap();
        file
    }

    #[test]
    fn defaults_apply_without_file_or_environment() {
        let settings = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.database_url, None);
        assert_eq!(settings.rtb_timeout_ms, 200);
        assert_eq!(settings.log_format, LogFormat::Text);
    }

    #[test]
    fn file_overrides_defaults_and_environment_overrides_file() {
        let f = file(
            "listen = \"0.0.0.0:9000\"\npool_size = 7\npublic_url = \"https://file.example\"\n",
        );
        let settings = Settings::load_from(
            Some(f.path()),
            env(&[
                ("GAVEL_POOL_SIZE", "11"),
                ("GAVEL_LOG_FORMAT", "json"),
                ("OTHER_POOL_SIZE", "3"),
            ]),
        )
        .unwrap();
        assert_eq!(
            settings.listen.to_string(),
            "0.0.0.0:9000",
            "file beats default"
        );
        assert_eq!(
            settings.public_url.as_deref(),
            Some("https://file.example"),
            "file beats default"
        );
        assert_eq!(settings.pool_size, 11, "environment beats file");
        assert_eq!(settings.log_format, LogFormat::Json);
    }

    #[test]
    fn environment_sets_database_url_and_empty_means_private_postgres() {
        let with_url = env(&[("GAVEL_DATABASE_URL", "postgres://u@db:5432/gavel")]);
        let settings = Settings::load_from(None, with_url).unwrap();
        assert_eq!(
            settings.database_url.as_deref(),
            Some("postgres://u@db:5432/gavel")
        );
        let settings = Settings::load_from(None, env(&[("GAVEL_DATABASE_URL", "")])).unwrap();
        assert_eq!(settings.database_url, None);
    }

    #[test]
    fn bad_values_name_their_setting() {
        let cases = [
            ("GAVEL_POOL_SIZE", "many", "pool_size"),
            ("GAVEL_POOL_SIZE", "0", "pool_size"),
            ("GAVEL_LISTEN", "localhost", "listen"),
            ("GAVEL_PUBLIC_URL", "gavel.example.com", "public_url"),
            ("GAVEL_RTB_TIMEOUT_MS", "5000", "rtb_timeout_ms"),
            ("GAVEL_LOG_FORMAT", "xml", "log_format"),
            ("GAVEL_DATABASE_URL", "mysql://x", "database_url"),
            ("GAVEL_BODY_LIMIT_BYTES", "-1", "body_limit_bytes"),
            ("GAVEL_STATEMENT_TIMEOUT_MS", "0", "statement_timeout_ms"),
            (
                "GAVEL_PING_RECORD_MAX_WAIT_MS",
                "60001",
                "ping_record_max_wait_ms",
            ),
            ("GAVEL_REPORT_MAX_DAYS", "0", "report_max_days"),
            ("GAVEL_CONSOLE_SESSION_HOURS", "0", "console_session_hours"),
            (
                "GAVEL_CONSOLE_SECURE_COOKIE",
                "maybe",
                "console_secure_cookie",
            ),
            (
                "GAVEL_MAX_CONCURRENT_REPORTS",
                "0",
                "max_concurrent_reports",
            ),
            (
                "GAVEL_MAX_RTB_CALLS_PER_PING",
                "0",
                "max_rtb_calls_per_ping",
            ),
            (
                "GAVEL_HEADER_READ_TIMEOUT_MS",
                "0",
                "header_read_timeout_ms",
            ),
            ("GAVEL_IDLE_TIMEOUT_MS", "0", "idle_timeout_ms"),
            ("GAVEL_IDLE_TIMEOUT_MS", "60000", "idle_timeout_ms"),
            ("GAVEL_MAX_CONNECTIONS", "0", "max_connections"),
            ("GAVEL_MX_TIMEOUT_MS", "0", "mx_timeout_ms"),
            ("GAVEL_MX_NAMESERVERS", "dns.example", "mx_nameservers"),
            ("GAVEL_MX_LOOKUP", "maybe", "mx_lookup"),
        ];
        for (key, value, setting) in cases {
            let error = Settings::load_from(None, env(&[(key, value)]))
                .unwrap_err()
                .to_string();
            assert!(error.contains(setting), "{key}={value}: {error}");
        }
    }

    #[test]
    fn outbound_allow_is_a_list_or_comma_separated_text() {
        let settings = Settings::load_from(None, env(&[])).unwrap();
        assert!(
            settings.outbound_allow.is_empty(),
            "nothing allowed by default"
        );
        let settings = Settings::load_from(
            None,
            env(&[("GAVEL_OUTBOUND_ALLOW", "127.0.0.1/32, buyer.internal,")]),
        )
        .unwrap();
        assert_eq!(settings.outbound_allow, ["127.0.0.1/32", "buyer.internal"]);
        let f = file("outbound_allow = [\"10.1.0.0/16\", \"fd00::/8\"]\n");
        let settings = Settings::load_from(Some(f.path()), env(&[])).unwrap();
        assert_eq!(settings.outbound_allow, ["10.1.0.0/16", "fd00::/8"]);
        let error = Settings::load_from(None, env(&[("GAVEL_OUTBOUND_ALLOW", "10.0.0.0/99")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("outbound_allow"), "{error}");
    }

    #[test]
    fn the_request_timeout_must_outlast_the_longest_delivery() {
        // 30 s does not cover a 60 s delivery: a post would be cut while its sale goes on.
        let error = Settings::load_from(None, env(&[("GAVEL_DELIVERY_TIMEOUT_MAX_MS", "60000")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("request_timeout_ms"), "{error}");
        let settings = Settings::load_from(
            None,
            env(&[
                ("GAVEL_DELIVERY_TIMEOUT_MAX_MS", "60000"),
                ("GAVEL_REQUEST_TIMEOUT_MS", "66000"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.delivery_timeout_max(), Duration::from_secs(60));
        // A contract may set a 2 s RTB timeout whatever `rtb_timeout_ms` says.
        let error = Settings::load_from(
            None,
            env(&[
                ("GAVEL_DELIVERY_TIMEOUT_MAX_MS", "60000"),
                ("GAVEL_REQUEST_TIMEOUT_MS", "64200"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("66000"), "{error}");
        let error = Settings::load_from(None, env(&[("GAVEL_DELIVERY_TIMEOUT_MS", "26000")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("delivery_timeout_ms"), "{error}");
    }

    #[test]
    fn mx_lookup_is_off_by_default_and_names_its_nameservers() {
        let settings = Settings::load_from(None, env(&[])).unwrap();
        assert!(!settings.mx_lookup);
        assert_eq!(settings.mx_nameserver_addresses().unwrap(), []);
        assert_eq!(settings.mx_timeout(), Duration::from_millis(1500));
        let settings = Settings::load_from(
            None,
            env(&[
                ("GAVEL_MX_LOOKUP", "true"),
                ("GAVEL_MX_NAMESERVERS", "10.0.0.2, 127.0.0.1:5353,[::1]:53"),
            ]),
        )
        .unwrap();
        assert!(settings.mx_lookup);
        let addresses: Vec<String> = settings
            .mx_nameserver_addresses()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(addresses, ["10.0.0.2:53", "127.0.0.1:5353", "[::1]:53"]);
    }

    #[test]
    fn unknown_setting_in_a_file_is_refused() {
        let f = file("pool_sise = 3\n");
        let error = Settings::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("pool_sise"), "{error}");
    }

    #[test]
    fn missing_config_file_is_refused() {
        let error = Settings::load_from(Some(Path::new("/nonexistent/gavel.toml")), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/gavel.toml"), "{error}");
    }
}
