//! The router tests' harness: a fresh SQLite store behind a fault switch, a fixed clock, token
//! minting, and requests sent with `oneshot`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use catalogd_actors::{Clock, EventKind, Lifecycle, Thresholds};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use tower::ServiceExt as _;
use uuid::Uuid;

use super::error::PROBLEM_CONTENT_TYPE;
use crate::app::App;
use crate::auth::{Authenticator, SCOPE_ADMIN, SCOPE_READ};
use crate::config::AuthConfig;
use crate::integration::{Author, Change, CheckSummary, Integration, TestSummary};
use crate::maintenance::{MaintenanceWindow, WindowChange};
use crate::providers::ProviderRegistry;
use crate::store::{
    AuditEntry, AuditQuery, ChainReport, CheckCommit, JsonPage, ListQuery, Page, Store, StoreError,
    StoreOptions,
};

/// The real SQLite store behind a switch: `down` makes every call fail like an unreachable
/// database, and `delay_ms` slows every call down, for the timeout test.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    pub down: AtomicBool,
    pub delay_ms: AtomicU64,
}

impl FaultyStore {
    async fn fault(&self) -> Result<(), StoreError> {
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("pool timed out".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.fault().await?;
        self.inner.ping().await
    }

    async fn create(&self, integration: &Integration) -> Result<(), StoreError> {
        self.fault().await?;
        self.inner.create(integration).await
    }

    async fn get(&self, tenant_id: &str, id: Uuid) -> Result<Option<Integration>, StoreError> {
        self.fault().await?;
        self.inner.get(tenant_id, id).await
    }

    async fn list(&self, tenant_id: &str, q: &ListQuery) -> Result<Page<Integration>, StoreError> {
        self.fault().await?;
        self.inner.list(tenant_id, q).await
    }

    async fn list_json(&self, tenant_id: &str, q: &ListQuery) -> Result<JsonPage, StoreError> {
        self.fault().await?;
        self.inner.list_json(tenant_id, q).await
    }

    async fn change(
        &self,
        author: &Author,
        id: Uuid,
        change: Change,
        now: DateTime<Utc>,
    ) -> Result<Option<Integration>, StoreError> {
        self.fault().await?;
        self.inner.change(author, id, change, now).await
    }

    async fn list_audit(
        &self,
        tenant_id: &str,
        q: &AuditQuery,
    ) -> Result<Page<AuditEntry>, StoreError> {
        self.fault().await?;
        self.inner.list_audit(tenant_id, q).await
    }

    async fn verify_audit(&self, tenant_id: Option<&str>) -> Result<ChainReport, StoreError> {
        self.fault().await?;
        self.inner.verify_audit(tenant_id).await
    }

    async fn put_status_page(
        &self,
        author: &Author,
        config: &crate::store::status_pages::StatusPageConfig,
        now: DateTime<Utc>,
    ) -> Result<crate::store::status_pages::StoredStatusPage, StoreError> {
        self.fault().await?;
        self.inner.put_status_page(author, config, now).await
    }

    async fn record_test(
        &self,
        author: &Author,
        id: Uuid,
        test: &TestSummary,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.fault().await?;
        self.inner.record_test(author, id, test, now).await
    }

    async fn monitored_page(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Integration>, StoreError> {
        self.fault().await?;
        self.inner.monitored_page(after, limit).await
    }

    async fn monitored_versions(&self) -> Result<Vec<(Uuid, i64)>, StoreError> {
        self.fault().await?;
        self.inner.monitored_versions().await
    }

    async fn load(&self, id: Uuid) -> Result<Option<Integration>, StoreError> {
        self.fault().await?;
        self.inner.load(id).await
    }

    async fn commit_check(
        &self,
        id: Uuid,
        expected_version: i64,
        lifecycle: Lifecycle,
        event: Option<EventKind>,
        flap: Option<catalogd_actors::FlapState>,
        check: CheckSummary,
        now: DateTime<Utc>,
        claim: Option<crate::cluster::Claim>,
    ) -> Result<CheckCommit, StoreError> {
        self.fault().await?;
        self.inner
            .commit_check(
                id,
                expected_version,
                lifecycle,
                event,
                flap,
                check,
                now,
                claim,
            )
            .await
    }

    async fn commit_maintenance(
        &self,
        id: Uuid,
        expected_version: i64,
        lifecycle: Lifecycle,
        maintenance: Option<catalogd_actors::Maintenance>,
        event: Option<EventKind>,
        now: DateTime<Utc>,
        claim: Option<crate::cluster::Claim>,
    ) -> Result<CheckCommit, StoreError> {
        self.fault().await?;
        self.inner
            .commit_maintenance(
                id,
                expected_version,
                lifecycle,
                maintenance,
                event,
                now,
                claim,
            )
            .await
    }

    async fn import_counted(
        &self,
        author: &Author,
        operations: Vec<crate::store::ImportOp>,
        now: DateTime<Utc>,
        progress: &crate::store::ImportProgress,
    ) -> Result<(), StoreError> {
        self.fault().await?;
        self.inner
            .import_counted(author, operations, now, progress)
            .await
    }

    async fn create_window(&self, window: &MaintenanceWindow) -> Result<(), StoreError> {
        self.fault().await?;
        self.inner.create_window(window).await
    }

    async fn get_window(
        &self,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<MaintenanceWindow>, StoreError> {
        self.fault().await?;
        self.inner.get_window(tenant_id, id).await
    }

    async fn list_windows(&self, tenant_id: &str) -> Result<Vec<MaintenanceWindow>, StoreError> {
        self.fault().await?;
        self.inner.list_windows(tenant_id).await
    }

    async fn change_window(
        &self,
        author: &Author,
        id: Uuid,
        change: WindowChange,
        now: DateTime<Utc>,
    ) -> Result<Option<MaintenanceWindow>, StoreError> {
        self.fault().await?;
        self.inner.change_window(author, id, change, now).await
    }

    async fn all_windows(&self) -> Result<Vec<MaintenanceWindow>, StoreError> {
        self.fault().await?;
        self.inner.all_windows().await
    }

    async fn set_suppressed_by(
        &self,
        id: Uuid,
        suppressed_by: &[Uuid],
        claim: Option<crate::cluster::Claim>,
    ) -> Result<CheckCommit, StoreError> {
        self.fault().await?;
        self.inner.set_suppressed_by(id, suppressed_by, claim).await
    }

    async fn dependencies(
        &self,
        tenant_id: &str,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, catalogd_actors::Status, Vec<Uuid>)>, StoreError> {
        self.fault().await?;
        self.inner.dependencies(tenant_id, ids).await
    }
}

pub struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap()
    }
}

/// A router over a fresh SQLite database (wrapped in a [`FaultyStore`]) with a generated
/// HS256 key, both in a temporary directory.
pub struct TestApp {
    pub router: Router,
    pub store: Arc<FaultyStore>,
    auth: Arc<Authenticator>,
    _dir: tempfile::TempDir,
}

/// A response, its body parsed as JSON (`Null` when empty).
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestResponse {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// Asserts a problem+json response with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: StatusCode, code: &str) {
        assert_eq!((self.status, self.code()), (status, code), "{}", self.body);
        assert_eq!(self.header(header::CONTENT_TYPE), PROBLEM_CONTENT_TYPE);
        assert_eq!(
            self.body["type"],
            format!("https://catalogd.dev/problems/{code}")
        );
    }

    /// `field` of every element of the body's `items`, as strings (numbers included).
    pub fn item_fields(&self, field: &str) -> Vec<String> {
        self.body["items"]
            .as_array()
            .expect("a page body")
            .iter()
            .map(|item| match &item[field] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    }

    pub fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(configure: impl FnOnce(&mut App)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = crate::store::Database::connect(&StoreOptions {
            url: format!("sqlite://{}/catalogd.db", dir.path().display()),
            password: None,
            max_connections: 4,
            sqlite_synchronous_full: false,
            allow_unsafe_durability: false,
            default_thresholds: Thresholds::default(),
        })
        .await
        .unwrap();
        let sqlite = database.store(Thresholds::default());
        let store = Arc::new(FaultyStore {
            inner: sqlite,
            down: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
        });
        let auth = Arc::new(
            Authenticator::from_config(&AuthConfig {
                generated_key_file: dir.path().join("key"),
                ..AuthConfig::default()
            })
            .unwrap(),
        );
        let mut state = App {
            store: store.clone(),
            auth: auth.clone(),
            clock: Arc::new(FixedClock),
            providers: Arc::new(ProviderRegistry::builtin()),
            default_thresholds: Thresholds::default(),
            default_interval_seconds: 60,
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(5),
            engine: Arc::new(crate::monitoring::Detached),
            history: database.history(Default::default()),
            connectors: Arc::new(
                crate::connectors::Connectors::new(
                    &Default::default(),
                    &Default::default(),
                    &Default::default(),
                    &Default::default(),
                    Arc::new(FixedClock),
                )
                .unwrap(),
            ),
            monitor: crate::monitoring::MonitorDefaults {
                interval: Duration::from_secs(60),
                timeout: Duration::from_secs(10),
                thresholds: Thresholds::default(),
            },
            nats: crate::nats::NatsReadiness::default(),
            status_pages: database.status_pages(),
            maintenance: Arc::new(crate::app::status_page::StoredCalendar {
                store: store.clone(),
            }),
        };
        configure(&mut state);
        TestApp {
            router: super::router(state, super::rate_limit::RateLimiter::disabled()),
            store,
            auth,
            _dir: dir,
        }
    }

    pub fn token(&self, tenant: &str, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        self.auth
            .mint(
                tenant,
                "alice",
                &scopes,
                Duration::from_secs(600),
                Utc::now(),
            )
            .unwrap()
    }

    pub fn admin(&self, tenant: &str) -> String {
        self.token(tenant, &[SCOPE_ADMIN])
    }

    pub fn reader(&self, tenant: &str) -> String {
        self.token(tenant, &[SCOPE_READ])
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON response body")
        };
        TestResponse {
            status,
            headers,
            body,
        }
    }

    /// A request with an optional bearer token and an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> TestResponse {
        self.call_with(method, uri, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    /// Follows `nextCursor` from `uri` (whose query string must not be empty) and returns
    /// `field` of every item of every page.
    pub async fn all_pages(&self, uri: &str, token: &str, field: &str) -> Vec<String> {
        let mut values = Vec::new();
        let mut next = uri.to_owned();
        loop {
            let page = self.call(Method::GET, &next, Some(token), None).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            values.extend(page.item_fields(field));
            match page.body["nextCursor"].as_str() {
                Some(cursor) => next = format!("{uri}&cursor={cursor}"),
                None => {
                    assert!(page.body["nextCursor"].is_null(), "nextCursor is present");
                    return values;
                }
            }
        }
    }

    /// Creates an integration named `name` in `tenant` and returns its body.
    pub async fn create(&self, tenant: &str, name: &str) -> Value {
        let body = serde_json::json!({
            "name": name, "type": "registry", "provider": "harbor",
            "baseUrl": "https://harbor.example.com", "tags": ["team:core"],
        });
        let response = self
            .call(
                Method::POST,
                "/api/v1/integrations",
                Some(&self.admin(tenant)),
                Some(&body),
            )
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        response.body
    }
}
