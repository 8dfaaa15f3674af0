//! Configuration: built-in defaults, then a TOML file, then `CATALOGD__SECTION__KEY`
//! environment overrides, merged with figment. Unknown keys are an error everywhere.
//!
//! Secrets (the JWT key, the database password) are never values in this structure: the
//! configuration names a file or an environment variable, and [`crate::auth`] / the store read
//! them at start-up into `secrecy` types.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The file used when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "config/catalogd.toml";
/// Prefix of environment overrides; `__` separates section and key.
pub const ENV_PREFIX: &str = "CATALOGD__";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub monitor: MonitorConfig,
    pub history: HistoryConfig,
    pub egress: EgressConfig,
    pub offline: OfflineConfig,
    pub plugins: PluginsConfig,
    pub secrets: SecretsConfig,
    pub nats: NatsConfig,
    pub events: EventsConfig,
    pub metrics: MetricsConfig,
    pub cluster: ClusterConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the REST API.
    pub listen: SocketAddr,
    /// Largest accepted request body; larger bodies get 413.
    pub body_limit_bytes: usize,
    /// Requests taking longer than this are answered 503 and abandoned.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Requests per tenant (see [`RateLimitConfig`]).
    pub rate_limit: RateLimitConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            body_limit_bytes: 256 * 1024,
            request_timeout: Duration::from_secs(30),
            rate_limit: RateLimitConfig::default(),
        }
    }
}

/// `[http.rate_limit]`: a token bucket per authenticated tenant; a tenant over it is
/// answered 429 `rate_limited` with `Retry-After`. `/healthz`, `/readyz` and the OpenAPI
/// document are not limited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained requests per second per tenant; 0 disables the limit.
    pub per_second: u32,
    /// Requests a tenant may send at once above the sustained rate (the bucket's size).
    pub burst: u32,
}

impl Default for RateLimitConfig {
    /// Generous: above what one tenant's client reaches on the benchmark box (about 2k
    /// list requests per second), so only a runaway client meets it.
    fn default() -> Self {
        RateLimitConfig {
            per_second: 10_000,
            burst: 20_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` (created if missing) or `postgres://user@host/db`.
    pub url: String,
    /// File holding the PostgreSQL password, when it is not in the URL's environment.
    pub password_file: Option<PathBuf>,
    /// Name of an environment variable holding the PostgreSQL password.
    pub password_env: Option<String>,
    pub max_connections: u32,
    /// SQLite `synchronous` pragma: `full` (durable on power loss, the default) or `normal`.
    pub sqlite_synchronous: SqliteSynchronous,
    /// Start on a PostgreSQL server with `synchronous_commit = off` (which acknowledges
    /// commits it can still lose in a crash). Refused by default: no transition may go
    /// unaudited or its event unsent.
    pub allow_unsafe_durability: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://data/catalogd.db".to_owned(),
            password_file: None,
            password_env: None,
            max_connections: 8,
            sqlite_synchronous: SqliteSynchronous::Full,
            allow_unsafe_durability: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    Full,
    Normal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `catalogd=debug,sqlx=warn`; `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// File holding the HS256 key.
    pub jwt_secret_file: Option<PathBuf>,
    /// Name of an environment variable holding the HS256 key.
    pub jwt_secret_env: Option<String>,
    /// PEM public key (RSA or EC P-256) for RS256 / ES256 tokens.
    pub jwt_public_key_file: Option<PathBuf>,
    /// PEM private key matching `jwt_public_key_file`; only `catalogd token` needs it.
    pub jwt_private_key_file: Option<PathBuf>,
    /// Where the HS256 key is generated when no key is configured.
    pub generated_key_file: PathBuf,
    /// Required `iss` claim, if set.
    pub issuer: Option<String>,
    /// Required `aud` claim, if set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_secret_file: None,
            jwt_secret_env: None,
            jwt_public_key_file: None,
            jwt_private_key_file: None,
            generated_key_file: PathBuf::from("data/jwt-hs256.key"),
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
        }
    }
}

/// `[metrics]`: the Prometheus exporter (see [`crate::metrics`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the Prometheus `/metrics` listener, separate from the REST API.
    pub listen: SocketAddr,
    /// Per-integration series (`catalogd_integration_*`): a handful per integration.
    pub per_integration: bool,
    /// How often integration counts, statuses and labels are re-read from the store.
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
    /// How often the per-integration uptime ratios are recomputed from the health history.
    #[serde(with = "humantime_serde")]
    pub uptime_refresh: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: "127.0.0.1:9464".parse().expect("valid default address"),
            per_integration: true,
            refresh: Duration::from_secs(15),
            uptime_refresh: Duration::from_secs(300),
        }
    }
}

/// `[cluster]`: several daemons on one PostgreSQL (DESIGN §9, see [`crate::cluster`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// How this daemon appears in `/readyz`, logs, metrics and the lease tables; unique per
    /// daemon. Unset: the host name and a random suffix, new at every start.
    pub node_id: Option<String>,
    /// Integrations are hashed into this many shards; fixed per database.
    pub shards: u32,
    /// A shard whose owner has not renewed its lease for this long may be taken.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often leases are renewed; unset: a third of `lease_ttl`.
    #[serde(with = "humantime_serde")]
    pub renew_interval: Option<Duration>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: None,
            shards: 256,
            lease_ttl: Duration::from_secs(15),
            renew_interval: None,
        }
    }
}

impl ClusterConfig {
    /// `renew_interval`, or its default.
    pub fn renew_interval(&self) -> Duration {
        self.renew_interval.unwrap_or(self.lease_ttl / 3)
    }
}

/// `[nats]`: the NATS connection events are published on (see [`crate::nats`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// `nats://host:port` (or `tls://`, or a comma-separated list); empty disables NATS, and
    /// events then wait in the outbox.
    pub url: String,
    /// A `.creds` file (user JWT and NKey seed), as issued by `nsc`.
    pub credentials_file: Option<PathBuf>,
    /// Name of an environment variable holding a server token.
    pub token_env: Option<String>,
    /// PEM CA certificate(s) trusted for the server's TLS certificate; setting it requires TLS.
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".to_owned(),
            credentials_file: None,
            token_env: None,
            tls_ca_file: None,
        }
    }
}

/// `[events]`: how the outbox relay publishes lifecycle events (see [`crate::relay`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// `auto`: publish to JetStream (acknowledged, deduplicated) when the server has it,
    /// else core NATS; `off`: always core NATS (best effort).
    pub jetstream: JetStreamMode,
    /// The JetStream stream capturing `integrations.events.>`.
    pub stream: String,
    /// Create or update the stream at start; `false` uses an existing stream as it is.
    pub manage_stream: bool,
    /// The stream's deduplication window (by `Nats-Msg-Id`), when catalogd manages it.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// Published outbox rows are deleted after this long.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// The relay looks for unpublished events at least this often.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Events published concurrently (never two of one integration at once).
    pub max_in_flight: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            jetstream: JetStreamMode::Auto,
            stream: "INTEGRATION_EVENTS".to_owned(),
            manage_stream: true,
            duplicate_window: Duration::from_secs(120),
            retention: Duration::from_secs(24 * 3600),
            sweep_interval: Duration::from_secs(1),
            max_in_flight: 256,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JetStreamMode {
    Auto,
    Off,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Default interval between health checks.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Default timeout of one check.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub degraded_after: u32,
    pub failed_after: u32,
    pub recover_after: u32,
    /// Failed integrations keep probing, backing off exponentially from their interval up to
    /// this cap.
    #[serde(with = "humantime_serde")]
    pub failed_backoff_max: Duration,
    /// How often the supervisor compares its actors with the store and repairs any drift.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// A crashed monitor actor is restarted after a backoff that doubles up to this cap.
    #[serde(with = "humantime_serde")]
    pub restart_backoff_max: Duration,
    /// Flap detection (DESIGN §10): this many transitions within `flap_window` make an
    /// integration flapping; 0 switches it off.
    pub flap_threshold: u32,
    #[serde(with = "humantime_serde")]
    pub flap_window: Duration,
    /// The network guard (DESIGN §10): on by default.
    pub network_guard: bool,
    /// The window the guard judges the network's health over (whole seconds).
    #[serde(with = "humantime_serde")]
    pub network_guard_window: Duration,
    /// The share of the window's checks (at least 20) that must fail with `dns`, `connect`
    /// or `timeout` for the network to be impaired (restored below half of it); in `(0, 1]`.
    pub network_guard_ratio: f64,
    /// Transitions to degraded/failed are held for at most this long from when an
    /// impairment began.
    #[serde(with = "humantime_serde")]
    pub network_guard_hold: Duration,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            degraded_after: 3,
            failed_after: 5,
            recover_after: 1,
            failed_backoff_max: Duration::from_secs(600),
            reconcile_interval: Duration::from_secs(60),
            restart_backoff_max: Duration::from_secs(60),
            flap_threshold: 6,
            flap_window: Duration::from_secs(30 * 60),
            network_guard: true,
            network_guard_window: Duration::from_secs(60),
            network_guard_ratio: 0.5,
            network_guard_hold: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Raw check results are kept this long; older ones survive only as hourly rollups.
    #[serde(with = "humantime_serde")]
    pub raw_retention: Duration,
    /// Hourly rollups are kept this long.
    #[serde(with = "humantime_serde")]
    pub hourly_retention: Duration,
    /// Daily rollups are kept this long (the status page's 90-day bar needs 90 days, the
    /// 30-day uptime ratio 30).
    #[serde(with = "humantime_serde")]
    pub rollup_retention: Duration,
    /// Check results are written in batches at least this often.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// A batch is written as soon as it holds this many results.
    pub batch_size: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            raw_retention: Duration::from_secs(24 * 3600),
            hourly_retention: Duration::from_secs(8 * 24 * 3600),
            rollup_retention: Duration::from_secs(90 * 24 * 3600),
            flush_interval: Duration::from_secs(1),
            batch_size: 5000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Allow checks to loopback, RFC 1918, link-local, CGNAT and ULA targets.
    pub allow_private: bool,
    /// CIDRs that are allowed even though they are private (metadata addresses included,
    /// but only when listed here explicitly).
    pub allow: Vec<ipnet::IpNet>,
    /// CIDRs that are always denied, on top of the built-in list.
    pub deny: Vec<ipnet::IpNet>,
    /// Redirects followed per check; each hop is checked against the policy again.
    pub max_redirects: u32,
    /// Reuse an idle connection to the same resolved address for the next check (off: a
    /// new TCP connection per check, so every check proves the target accepts connections,
    /// as blackbox_exporter and Kubernetes probes do).
    pub keep_alive: bool,
    /// An idle kept-alive connection is closed after this many seconds unused.
    pub keep_alive_idle_seconds: u32,
    /// DNS servers (`ip:port`, UDP with TCP fallback) that resolve check targets' names,
    /// instead of the system resolver; `/etc/hosts` is then not consulted. Empty: the
    /// system resolver.
    pub nameservers: Vec<SocketAddr>,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            allow_private: false,
            allow: Vec::new(),
            deny: Vec::new(),
            max_redirects: 5,
            keep_alive: false,
            keep_alive_idle_seconds: 90,
            nameservers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineConfig {
    /// Air-gap mode: network checks are skipped, not failed.
    pub enabled: bool,
    /// Hosts that `feed` integrations may still reach in offline mode.
    pub feed_allowlist: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Directory of declarative provider definitions (`*.toml`), loaded at start.
    pub directory: PathBuf,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            directory: PathBuf::from("plugins/"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Backends tried in order to resolve `ref://scope/provider/key`: `file` reads
    /// `<directory>/<scope>/<provider>/<key>`, `env` reads
    /// `<env_prefix><SCOPE>_<PROVIDER>_<KEY>` (upper-cased, other characters as `_`).
    pub backends: Vec<SecretBackend>,
    pub directory: PathBuf,
    pub env_prefix: String,
    /// A resolved secret is reused for at most this long; a changed file is re-read sooner.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        SecretsConfig {
            backends: vec![SecretBackend::File, SecretBackend::Env],
            directory: PathBuf::from("secrets/"),
            env_prefix: "CATALOGD_SECRET_".to_owned(),
            cache_ttl: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretBackend {
    File,
    Env,
}

impl MonitorConfig {
    pub fn thresholds(&self) -> catalogd_actors::Thresholds {
        catalogd_actors::Thresholds {
            degraded_after: self.degraded_after,
            failed_after: self.failed_after,
            recover_after: self.recover_after,
        }
    }

    pub fn flap_options(&self) -> catalogd_actors::FlapOptions {
        catalogd_actors::FlapOptions {
            threshold: self.flap_threshold,
            window: self.flap_window,
        }
    }

    /// The network guard's options; `None` when `monitor.network_guard` is off.
    pub fn network_guard_options(&self) -> Option<catalogd_actors::NetworkGuardOptions> {
        self.network_guard
            .then_some(catalogd_actors::NetworkGuardOptions {
                window: self.network_guard_window,
                ratio: self.network_guard_ratio,
                hold: self.network_guard_hold,
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Semantic(String),
}

impl Config {
    /// Loads the layered configuration. `file` is `--config`; without it
    /// [`DEFAULT_CONFIG_FILE`] is read when present.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, Env::prefixed(ENV_PREFIX).split("__"))
    }

    fn load_from(file: Option<&Path>, env: Env) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.into())),
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        let config: Config = figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Invalid(Box::new(e)))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let m = &self.monitor;
        let fail = |msg: &str| Err(ConfigError::Semantic(msg.to_owned()));
        if m.interval < Duration::from_secs(1) {
            return fail("monitor.interval must be at least 1s");
        }
        if m.timeout.is_zero() || m.timeout > m.interval {
            return fail("monitor.timeout must be positive and at most monitor.interval");
        }
        if m.degraded_after == 0 || m.recover_after == 0 || m.failed_after < m.degraded_after {
            return fail("monitor thresholds need degraded_after >= 1, failed_after >= degraded_after, recover_after >= 1");
        }
        if m.flap_threshold > 0 && m.flap_window.is_zero() {
            return fail("monitor.flap_window must be positive (or monitor.flap_threshold 0)");
        }
        if m.flap_threshold > 1000 {
            return fail("monitor.flap_threshold must be at most 1000 (0 switches it off)");
        }
        // Checked even while the guard is off, so switching it on cannot meet a bad value.
        if !(m.network_guard_ratio > 0.0 && m.network_guard_ratio <= 1.0) {
            return fail("monitor.network_guard_ratio must be greater than 0 and at most 1");
        }
        if m.network_guard_window < Duration::from_secs(1)
            || m.network_guard_window > Duration::from_secs(24 * 3600)
        {
            return fail("monitor.network_guard_window must be between 1s and 24h");
        }
        if m.network_guard_hold.is_zero() {
            return fail("monitor.network_guard_hold must be positive");
        }
        if self.database.max_connections == 0 {
            return fail("database.max_connections must be at least 1");
        }
        let c = &self.cluster;
        if c.shards == 0 || c.shards > 65_536 {
            return fail("cluster.shards must be between 1 and 65536");
        }
        if c.lease_ttl < Duration::from_secs(1) {
            return fail("cluster.lease_ttl must be at least 1s");
        }
        if c.renew_interval().is_zero() || c.renew_interval() * 2 > c.lease_ttl {
            return fail(
                "cluster.renew_interval must be positive and at most half of cluster.lease_ttl",
            );
        }
        if c.node_id.as_deref().is_some_and(|id| {
            id.is_empty()
                || id.len() > 128
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        }) {
            return fail(
                "cluster.node_id must be 1-128 characters of letters, digits, '-', '_' and '.'",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `toml` as the config file with `env` set, inside a figment jail so tests do not
    /// see each other's environment.
    // The closure's error type is figment's own, fixed by `Jail::expect_with`.
    #[allow(clippy::result_large_err)]
    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let mut result = Err(String::new());
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("c.toml", toml)?;
            for (k, v) in env {
                jail.set_env(k, v);
            }
            result = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string());
            Ok(())
        });
        result
    }

    #[test]
    fn flap_detection_keys_default_load_from_the_file_and_the_environment() {
        let c = load("", &[]).unwrap();
        assert_eq!(
            (c.monitor.flap_threshold, c.monitor.flap_window),
            (6, Duration::from_secs(1800))
        );
        let c = load(
            "[monitor]\nflap_threshold = 4\nflap_window = \"10m\"\n",
            &[("CATALOGD__MONITOR__FLAP_THRESHOLD", "8")],
        )
        .unwrap();
        assert_eq!(c.monitor.flap_options().threshold, 8);
        assert_eq!(c.monitor.flap_options().window, Duration::from_secs(600));
        // 0 switches detection off; a zero window with a threshold is refused.
        assert_eq!(
            load("[monitor]\nflap_threshold = 0\n", &[])
                .unwrap()
                .monitor
                .flap_threshold,
            0
        );
        let e = load("[monitor]\nflap_window = \"0s\"\n", &[]).unwrap_err();
        assert!(e.contains("monitor.flap_window"), "{e}");
    }

    #[test]
    fn network_guard_keys_default_load_from_the_file_and_the_environment_and_are_checked() {
        let c = load("", &[]).unwrap();
        assert_eq!(
            c.monitor.network_guard_options(),
            Some(catalogd_actors::NetworkGuardOptions::default())
        );
        let c = load(
            "[monitor]\nnetwork_guard_window = \"10s\"\nnetwork_guard_ratio = 0.4\n",
            &[
                ("CATALOGD__MONITOR__NETWORK_GUARD_HOLD", "3s"),
                ("CATALOGD__MONITOR__NETWORK_GUARD_RATIO", "0.25"),
            ],
        )
        .unwrap();
        let options = c.monitor.network_guard_options().unwrap();
        assert_eq!(options.window, Duration::from_secs(10));
        assert_eq!(options.ratio, 0.25);
        assert_eq!(options.hold, Duration::from_secs(3));
        let off = load("", &[("CATALOGD__MONITOR__NETWORK_GUARD", "false")]).unwrap();
        assert_eq!(off.monitor.network_guard_options(), None);
        for (toml, key) in [
            ("network_guard_ratio = 0.0", "monitor.network_guard_ratio"),
            ("network_guard_ratio = 1.5", "monitor.network_guard_ratio"),
            ("network_guard_ratio = -0.5", "monitor.network_guard_ratio"),
            ("network_guard_ratio = nan", "monitor.network_guard_ratio"),
            (
                "network_guard_window = \"0s\"",
                "monitor.network_guard_window",
            ),
            (
                "network_guard_window = \"2days\"",
                "monitor.network_guard_window",
            ),
            ("network_guard_hold = \"0s\"", "monitor.network_guard_hold"),
        ] {
            let e = load(&format!("[monitor]\n{toml}\n"), &[]).unwrap_err();
            assert!(e.contains(key), "{toml}: {e}");
        }
        let e = load("[monitor]\nnetwork_guard_hold = \"soon\"\n", &[]).unwrap_err();
        assert!(e.contains("network_guard_hold"), "{e}");
    }

    #[test]
    fn env_overrides_file_which_overrides_defaults() {
        let c = load(
            "[database]\nurl = \"sqlite://file.db\"\n[monitor]\ninterval = \"30s\"\n",
            &[
                ("CATALOGD__DATABASE__URL", "postgres://db/x"),
                ("CATALOGD__LOG__FORMAT", "json"),
            ],
        )
        .unwrap();
        assert_eq!(c.database.url, "postgres://db/x");
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.monitor.interval, Duration::from_secs(30));
        assert_eq!(c.monitor.timeout, Duration::from_secs(10));
    }

    #[test]
    fn defaults_match_design() {
        let c = Config::default();
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database.url, "sqlite://data/catalogd.db");
        assert_eq!(c.monitor.interval, Duration::from_secs(60));
        assert_eq!(
            c.monitor.thresholds(),
            catalogd_actors::Thresholds::default()
        );
    }

    #[test]
    fn documented_file_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_FILE);
        let config =
            Config::load_from(Some(&path), Env::prefixed("CATALOGD_TEST_UNUSED__")).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = load("[http]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n", &[]).unwrap_err();
        assert!(e.contains("lisen"), "{e}");
        let e = load("[htp]\n", &[]).unwrap_err();
        assert!(e.contains("htp"), "{e}");
        let e = load("", &[("CATALOGD__MONITOR__INTERVALL", "5s")]).unwrap_err();
        assert!(e.contains("intervall"), "{e}");
        let e = load("[monitor]\ninterval = \"2s\"\ntimeout = \"3s\"\n", &[]).unwrap_err();
        assert!(e.contains("monitor.timeout"), "{e}");
    }
}
