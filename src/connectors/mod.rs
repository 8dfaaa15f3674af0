//! Health-check connectors: one per provider, behind the [`Connector`] trait, collected in the
//! [`Connectors`] registry that the monitor actors (through `Probe`) and the REST `/test`
//! endpoint call.
//!
//! Code map:
//! - [`request`]: the one HTTP call-and-classify path (request template + success conditions).
//! - [`diagnostics`]: staged connection-test diagnostics and [`ConnectionTestReport`].
//! - [`declarative`]: providers defined by TOML files in `plugins.directory`; the built-in
//!   `github`, `gitlab`, `gitea`, `jenkins`, `artifactory`, `nexus`, `sonarqube`,
//!   `bitbucket`, `azure-devops`, `circleci`, `github-actions` and `gitlab-ci` providers are
//!   such definitions compiled in (a plugin file of the same name replaces one).
//! - [`http`], [`tcp`], [`harbor`], [`oci_registry`], [`github_app`], [`in_memory`]: the
//!   connectors that need code.
//!
//! Architecture invariants:
//! - A check or test always ends in a value: a [`Verdict`] with a failure class, never an
//!   `Err` or a hang (the registry enforces the timeout).
//! - Every connection goes through [`crate::egress::EgressClient`].
//! - Secrets are resolved from the AuthRef at the moment of use and go only into request
//!   headers. Messages are fixed phrases and status codes: no upstream body, header value or
//!   secret ever reaches a log line, a report or an error.

pub mod declarative;
pub mod diagnostics;
pub mod github_app;
pub mod harbor;
pub mod http;
pub mod in_memory;
pub mod oci_registry;
pub mod request;
pub mod tcp;

use crate::cluster::Claim;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use catalogd_actors::{CheckOutcome, Clock, FailureClass};
use serde_json::Value;
use url::Url;
use uuid::Uuid;

pub use diagnostics::{ConnectionTestReport, Diagnostics, StageReport};

use crate::config::{EgressConfig, OfflineConfig, PluginsConfig, SecretsConfig};
use crate::egress::{EgressClient, EgressError, Request, Response};
use crate::integration::{Integration, IntegrationType};
use crate::providers::ProviderRegistry;
use crate::secrets::{SecretError, SecretResolver, SecretValue};

/// Why a check failed: a bounded class and a short fixed phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: FailureClass,
    pub message: Cow<'static, str>,
}

impl Failure {
    pub fn new(class: FailureClass, message: impl Into<Cow<'static, str>>) -> Failure {
        Failure {
            class,
            message: message.into(),
        }
    }

    pub fn config(message: impl Into<Cow<'static, str>>) -> Failure {
        Failure::new(FailureClass::Config, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

impl From<EgressError> for Failure {
    fn from(error: EgressError) -> Failure {
        Failure::new(error.failure_class(), error.to_string())
    }
}

impl From<SecretError> for Failure {
    fn from(error: SecretError) -> Failure {
        Failure::config(error.to_string())
    }
}

/// What a connector concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// Nothing was checked (offline mode, or a scripted skip).
    Skipped(&'static str),
    Failed(Failure),
}

impl Verdict {
    pub fn outcome(&self) -> CheckOutcome {
        match self {
            Verdict::Healthy => CheckOutcome::Success,
            Verdict::Skipped(_) => CheckOutcome::Skipped,
            Verdict::Failed(failure) => CheckOutcome::Failure(failure.class),
        }
    }

    fn failure(&self) -> Option<&Failure> {
        match self {
            Verdict::Failed(failure) => Some(failure),
            _ => None,
        }
    }
}

impl From<Result<(), Failure>> for Verdict {
    fn from(result: Result<(), Failure>) -> Verdict {
        match result {
            Ok(()) => Verdict::Healthy,
            Err(failure) => Verdict::Failed(failure),
        }
    }
}

/// A provider's health check, the two operations of the plugin contract. Both return a
/// value; timeouts are enforced by the caller.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// One periodic health check.
    async fn check_health(&self, session: &Session<'_>) -> Verdict;
    /// A staged connection test; stages are recorded in `session.diagnostics`.
    async fn test_connection(&self, session: &Session<'_>) -> Verdict;
    /// Whether the connector talks to the network (offline mode skips those).
    fn uses_network(&self) -> bool {
        true
    }
}

/// What a connector needs to reach the outside world.
#[derive(Clone)]
pub struct Context {
    pub egress: EgressClient,
    pub secrets: SecretResolver,
    pub clock: Arc<dyn Clock>,
}

/// One check or test of one target.
pub struct Session<'a> {
    pub target: &'a Target,
    pub context: &'a Context,
    pub diagnostics: &'a Diagnostics,
    /// The base URL, parsed on first use: a check needs it more than once (validation,
    /// then the request URL), and parsing (IDNA included) costs more than a clone.
    base: std::sync::OnceLock<Option<Url>>,
}

impl<'a> Session<'a> {
    /// A session for one check or test of `target`.
    pub fn new(target: &'a Target, context: &'a Context, diagnostics: &'a Diagnostics) -> Self {
        Session {
            target,
            context,
            diagnostics,
            base: std::sync::OnceLock::new(),
        }
    }

    /// The integration's base URL.
    pub fn base_url(&self) -> Result<Url, Failure> {
        let raw = self
            .target
            .base_url
            .as_deref()
            .ok_or_else(|| Failure::config("the integration has no baseUrl"))?;
        self.base
            .get_or_init(|| Url::parse(raw).ok())
            .clone()
            .ok_or_else(|| Failure::config("the baseUrl is not a valid URL"))
    }

    /// `path` (with its query) appended to the base URL's path.
    pub fn url(&self, path: &str) -> Result<Url, Failure> {
        let base = self.base_url()?;
        if path.is_empty() {
            return Ok(base);
        }
        let mut joined = base.clone();
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        let prefix = base.path().trim_end_matches('/');
        let suffix = path.trim_start_matches('/');
        joined.set_path(&format!("{prefix}/{suffix}"));
        if query.is_some() {
            joined.set_query(query);
        }
        Ok(joined)
    }

    /// The integration's secret, resolved now; `None` when it has no AuthRef.
    pub fn secret(&self) -> Result<Option<SecretValue>, Failure> {
        match &self.target.auth_ref {
            None => Ok(None),
            Some(raw) => Ok(Some(self.context.secrets.resolve_str(raw)?)),
        }
    }

    /// Sends through the egress client, reporting phases to the diagnostics.
    pub async fn send(&self, request: Request) -> Result<Response, Failure> {
        Ok(self.context.egress.send(request, self.diagnostics).await?)
    }
}

/// What a connector checks: the parts of an integration a probe needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub integration_id: Uuid,
    pub kind: IntegrationType,
    pub provider: String,
    pub base_url: Option<String>,
    pub auth_ref: Option<String>,
    pub configuration: serde_json::Map<String, Value>,
    /// The claim on its shard under which this node monitors the integration: what the
    /// monitor's writes are fenced with. The connectors ignore it. `None` outside a monitor.
    pub claim: Option<Claim>,
    /// The integration's tags and environment, which maintenance windows select by (DESIGN
    /// §10). The connectors ignore them.
    pub tags: Vec<String>,
    pub environment: Option<String>,
}

impl Target {
    /// A target with a fresh id, of type `host`, without AuthRef or configuration.
    pub fn new(provider: &str, base_url: Option<&str>) -> Target {
        Target {
            integration_id: Uuid::new_v4(),
            kind: IntegrationType::Host,
            provider: provider.to_owned(),
            base_url: base_url.map(str::to_owned),
            auth_ref: None,
            configuration: serde_json::Map::new(),
            claim: None,
            tags: Vec::new(),
            environment: None,
        }
    }

    pub fn with_kind(mut self, kind: IntegrationType) -> Target {
        self.kind = kind;
        self
    }

    pub fn with_auth_ref(mut self, auth_ref: &str) -> Target {
        self.auth_ref = Some(auth_ref.to_owned());
        self
    }

    /// Replaces the configuration with `configuration`, which must be a JSON object.
    pub fn with_configuration(mut self, configuration: Value) -> Target {
        self.configuration = match configuration {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        self
    }

    /// The host this target's checks connect to, for the offline feed allowlist.
    fn host(&self) -> Option<String> {
        let from_url = |raw: &str| {
            Url::parse(raw)
                .ok()
                .and_then(|url| url.host_str().map(str::to_owned))
        };
        match self.provider.as_str() {
            "tcp" => tcp::address_host(&self.configuration),
            _ => self.base_url.as_deref().and_then(from_url),
        }
    }
}

impl From<&Integration> for Target {
    fn from(integration: &Integration) -> Target {
        Target {
            integration_id: integration.integration_id,
            kind: integration.kind,
            provider: integration.provider.clone(),
            base_url: integration.base_url.clone(),
            auth_ref: integration.auth_ref.clone(),
            configuration: integration.configuration.clone(),
            claim: None,
            tags: integration.tags.clone(),
            environment: integration.environment.clone(),
        }
    }
}

/// Why the registry could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("cannot read the plugins directory {path}: {source}")]
    Directory {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("provider definition {path}: {reason}")]
    Definition {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// Why offline mode skipped a check.
const OFFLINE: &str = "offline mode";

/// Every connector, by provider name. Cheap to clone.
#[derive(Clone)]
pub struct Connectors {
    inner: Arc<Registry>,
}

struct Registry {
    context: Context,
    connectors: HashMap<String, Arc<dyn Connector>>,
    providers: ProviderRegistry,
    offline: bool,
    feed_allowlist: Vec<String>,
}

impl fmt::Debug for Connectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connectors")
            .field("providers", &self.inner.providers)
            .field("offline", &self.inner.offline)
            .finish_non_exhaustive()
    }
}

impl Connectors {
    /// The registry for a configuration: built-in connectors plus the declarative providers
    /// in `plugins.directory` (a missing directory means none).
    pub fn new(
        egress: &EgressConfig,
        offline: &OfflineConfig,
        plugins: &PluginsConfig,
        secrets: &SecretsConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Connectors, ConnectorError> {
        let context = Context {
            egress: EgressClient::new(egress),
            secrets: SecretResolver::new(secrets),
            clock,
        };
        Connectors::from_context(context, offline, plugins)
    }

    /// As [`Connectors::new`], with a prepared context (a custom resolver or dialer).
    pub fn from_context(
        context: Context,
        offline: &OfflineConfig,
        plugins: &PluginsConfig,
    ) -> Result<Connectors, ConnectorError> {
        let mut connectors: HashMap<String, Arc<dyn Connector>> = HashMap::new();
        connectors.insert("http".into(), Arc::new(http::HttpConnector));
        connectors.insert("tcp".into(), Arc::new(tcp::TcpConnector));
        connectors.insert("harbor".into(), Arc::new(harbor::connector()));
        connectors.insert(
            "oci-registry".into(),
            Arc::new(oci_registry::OciRegistryConnector),
        );
        connectors.insert("github-app".into(), Arc::new(github_app::connector()));
        connectors.insert(
            "in-memory".into(),
            Arc::new(in_memory::InMemoryConnector::default()),
        );
        // The providers written in code; a plugin cannot replace them.
        let coded: Vec<String> = connectors.keys().cloned().collect();
        for provider in declarative::builtin() {
            connectors.insert(provider.name.clone(), Arc::new(provider));
        }
        let mut extra = Vec::new();
        let mut overridden = Vec::new();
        for provider in declarative::load_directory(&plugins.directory)? {
            if coded.contains(&provider.name) {
                return Err(ConnectorError::Definition {
                    path: provider.source.clone(),
                    reason: format!(
                        "provider {} is already defined (built in, in code)",
                        provider.name
                    ),
                });
            }
            // A file named like a built-in declarative provider replaces it (DESIGN §12).
            if connectors.contains_key(&provider.name) {
                overridden.push(provider.name.clone());
            } else {
                extra.push(provider.name.clone());
            }
            connectors.insert(provider.name.clone(), Arc::new(provider));
        }
        if !extra.is_empty() || !overridden.is_empty() {
            tracing::info!(
                providers = ?extra,
                overridden = ?overridden,
                "declarative providers loaded"
            );
        }
        Ok(Connectors {
            inner: Arc::new(Registry {
                context,
                connectors,
                providers: ProviderRegistry::builtin().with_declarative(extra),
                offline: offline.enabled,
                feed_allowlist: offline
                    .feed_allowlist
                    .iter()
                    .map(|host| normalize_host(host))
                    .collect(),
            }),
        })
    }

    /// The provider names integrations may use.
    pub fn providers(&self) -> ProviderRegistry {
        self.inner.providers.clone()
    }

    /// One health check, bounded by `timeout`.
    pub async fn check(&self, target: &Target, timeout: Duration) -> CheckOutcome {
        let diagnostics = Diagnostics::disabled();
        let verdict = self
            .run(target, timeout, &diagnostics, Operation::Check)
            .await;
        log_verdict(target, "check", &verdict);
        verdict.outcome()
    }

    /// A staged connection test, bounded by `timeout`.
    pub async fn test(&self, target: &Target, timeout: Duration) -> ConnectionTestReport {
        let tested_at = self.inner.context.clock.now();
        let started = Instant::now();
        let diagnostics = Diagnostics::enabled();
        let verdict = self
            .run(target, timeout, &diagnostics, Operation::Test)
            .await;
        log_verdict(target, "test", &verdict);
        let stages = match &verdict {
            Verdict::Skipped(OFFLINE) => offline_stages(target, OFFLINE),
            verdict => diagnostics.finish(verdict.failure()),
        };
        ConnectionTestReport {
            success: verdict == Verdict::Healthy,
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            failure_class: verdict.failure().map(|failure| failure.class),
            tested_at,
            stages,
            skipped: matches!(verdict, Verdict::Skipped(_)),
        }
    }

    async fn run(
        &self,
        target: &Target,
        timeout: Duration,
        diagnostics: &Diagnostics,
        operation: Operation,
    ) -> Verdict {
        let Some(connector) = self.inner.connectors.get(&target.provider) else {
            return Verdict::Failed(Failure::config("unknown provider"));
        };
        if connector.uses_network() && self.skipped_offline(target) {
            return Verdict::Skipped(OFFLINE);
        }
        let session = Session::new(target, &self.inner.context, diagnostics);
        // A missing or malformed base URL is found before any stage runs, so the test
        // reports it as a `config` stage rather than as a failed network stage.
        if self.inner.providers.needs_base_url(&target.provider) {
            if let Err(failure) = session.base_url() {
                return Verdict::Failed(failure);
            }
        }
        let work = async {
            match operation {
                Operation::Check => connector.check_health(&session).await,
                Operation::Test => connector.test_connection(&session).await,
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(verdict) => verdict,
            Err(_) => {
                diagnostics.timed_out(timeout);
                Verdict::Failed(Failure::new(
                    FailureClass::Timeout,
                    format!("timed out after {} ms", timeout.as_millis()),
                ))
            }
        }
    }

    /// Offline mode skips every network check except feeds whose host is allowlisted.
    fn skipped_offline(&self, target: &Target) -> bool {
        if !self.inner.offline {
            return false;
        }
        let allowed = target.kind == IntegrationType::Feed
            && target.host().is_some_and(|host| {
                let host = normalize_host(&host);
                self.inner.feed_allowlist.contains(&host)
            });
        !allowed
    }
}

#[derive(Debug, Clone, Copy)]
enum Operation {
    Check,
    Test,
}

#[async_trait]
impl catalogd_actors::ports::Probe<Target> for Connectors {
    async fn check(&self, target: &Target, timeout: Duration) -> CheckOutcome {
        Connectors::check(self, target, timeout).await
    }

    /// The in-memory provider's outcomes are scripted: they say nothing about the network.
    fn reaches_network(&self, target: &Target) -> bool {
        target.provider != "in-memory"
    }
}

fn normalize_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The stages a test would have run, each marked skipped.
fn offline_stages(target: &Target, reason: &str) -> Vec<StageReport> {
    let https = target
        .base_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https:"));
    let mut names = vec!["dns", "tcp"];
    if target.provider != "tcp" {
        if https {
            names.push("tls");
        }
        names.push("http");
        if target.auth_ref.is_some() {
            names.push("auth");
        }
    }
    names
        .into_iter()
        .map(|name| StageReport {
            name: name.to_owned(),
            success: false,
            duration_ms: 0,
            message: format!("skipped: {reason}"),
        })
        .collect()
}

fn log_verdict(target: &Target, operation: &'static str, verdict: &Verdict) {
    match verdict {
        Verdict::Healthy => tracing::trace!(
            integration_id = %target.integration_id,
            provider = %target.provider,
            operation,
            outcome = "success",
        ),
        Verdict::Skipped(reason) => tracing::trace!(
            integration_id = %target.integration_id,
            provider = %target.provider,
            operation,
            outcome = "skipped",
            reason,
        ),
        Verdict::Failed(failure) => tracing::debug!(
            integration_id = %target.integration_id,
            provider = %target.provider,
            operation,
            outcome = "failure",
            failure_class = %failure.class,
            message = %failure.message,
        ),
    }
}
