//! Fills a store with N monitored integrations before a daemon starts, so start-up, memory
//! and API figures are measured on a catalog of the size named.

use catalogd::integration::{HealthCheck, Integration, IntegrationSpec, IntegrationType};
use catalogd::store::{self, StoreOptions};
use catalogd_actors::{Clock, Status, SystemClock, Thresholds};
use futures::StreamExt;

/// What to seed.
pub struct Seed<'a> {
    pub tenant: &'a str,
    pub count: usize,
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub status: Status,
    /// Integration `i`'s (provider, base URL, configuration).
    pub target: &'a (dyn Fn(usize) -> Target + Sync),
}

pub struct Target {
    pub provider: String,
    pub base_url: Option<String>,
    pub configuration: serde_json::Map<String, serde_json::Value>,
}

impl Target {
    /// An `http` check of `url`.
    pub fn http(url: String) -> Target {
        Target {
            provider: "http".into(),
            base_url: Some(url),
            configuration: Default::default(),
        }
    }
}

/// Creates the integrations through the store (migrations included), so the rows are exactly
/// what the API would have written.
pub async fn seed(database_url: &str, seed: &Seed<'_>) -> anyhow::Result<()> {
    let store = store::open(&StoreOptions {
        url: database_url.to_owned(),
        password: None,
        max_connections: 4,
        sqlite_synchronous_full: false,
        default_thresholds: Thresholds::default(),
    })
    .await?;
    let clock = SystemClock;
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..seed.count)
        .map(|i| {
            let store = store.clone();
            let now = clock.now();
            let target = (seed.target)(i);
            async move {
                let spec = IntegrationSpec {
                    name: format!("bench-{i:07}"),
                    description: None,
                    kind: IntegrationType::Host,
                    provider: target.provider,
                    base_url: target.base_url,
                    auth_ref: None,
                    configuration: target.configuration,
                    environment: None,
                    tags: vec![],
                    owner_id: None,
                    health_check: HealthCheck {
                        interval_seconds: Some(seed.interval_seconds),
                        timeout_seconds: Some(seed.timeout_seconds),
                        ..Default::default()
                    },
                };
                let mut integration = Integration::new(seed.tenant, spec, "bench", now);
                integration.status = seed.status;
                store.create(&integration).await?;
                Ok(())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect()
}
