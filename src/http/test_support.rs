//! Test doubles for the router tests: an in-memory [`Store`] that follows the trait's
//! contract (tenant scoping, keyset paging, `apply_change`), a fixed clock, and a harness that
//! mints tokens and sends requests with `oneshot`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use catalogd_actors::{Clock, Thresholds};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use tower::ServiceExt as _;
use uuid::Uuid;

use super::AppState;
use crate::auth::{Authenticator, SCOPE_ADMIN, SCOPE_READ};
use crate::config::AuthConfig;
use crate::integration::{self, Actor, AuditRecord, Change, Integration};
use crate::providers::ProviderRegistry;
use crate::store::{AuditEntry, AuditQuery, ChainReport, ListQuery, Page, Store, StoreError};

/// A store in a mutex. `down` makes every call fail like an unreachable database; `delay`
/// slows `list` down, for the timeout test.
#[derive(Default)]
pub struct MemoryStore {
    data: Mutex<Data>,
    pub down: AtomicBool,
    pub delay_ms: AtomicU64,
}

#[derive(Default)]
struct Data {
    rows: Vec<Integration>,
    audit: Vec<AuditEntry>,
}

impl Data {
    fn record(&mut self, record: AuditRecord) {
        let sequence = self
            .audit
            .iter()
            .filter(|e| e.tenant_id == record.tenant_id)
            .count() as i64
            + 1;
        self.audit.push(AuditEntry {
            entry_id: Uuid::now_v7(),
            tenant_id: record.tenant_id,
            sequence,
            actor: record.actor,
            action: record.action,
            target_type: "integration".into(),
            target_id: record.target_id,
            before: record.before,
            after: record.after,
            reason: record.reason,
            ticket: record.ticket,
            occurred_at: record.occurred_at,
            prev_hash: String::new(),
            hash: String::new(),
        });
    }

    fn name_taken(&self, tenant_id: &str, name: &str, except: Option<Uuid>) -> bool {
        self.rows
            .iter()
            .any(|r| r.tenant_id == tenant_id && r.name == name && Some(r.integration_id) != except)
    }
}

impl MemoryStore {
    fn available(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Database(sqlx::Error::PoolTimedOut))
        } else {
            Ok(())
        }
    }
}

fn page<T>(mut items: Vec<T>, limit: u32) -> Page<T> {
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Page { items, has_more }
}

#[async_trait]
impl Store for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.available()
    }

    async fn create(&self, integration: &Integration) -> Result<(), StoreError> {
        self.available()?;
        let mut data = self.data.lock().unwrap();
        if data.name_taken(&integration.tenant_id, &integration.name, None) {
            return Err(StoreError::NameTaken);
        }
        data.rows.push(integration.clone());
        data.record(integration::created(integration));
        Ok(())
    }

    async fn get(&self, tenant_id: &str, id: Uuid) -> Result<Option<Integration>, StoreError> {
        self.available()?;
        let data = self.data.lock().unwrap();
        Ok(data
            .rows
            .iter()
            .find(|r| r.tenant_id == tenant_id && r.integration_id == id)
            .cloned())
    }

    async fn list(&self, tenant_id: &str, q: &ListQuery) -> Result<Page<Integration>, StoreError> {
        self.available()?;
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let data = self.data.lock().unwrap();
        let mut rows: Vec<Integration> = data
            .rows
            .iter()
            .filter(|r| r.tenant_id == tenant_id)
            .filter(|r| q.kind.is_none_or(|k| r.kind == k))
            .filter(|r| q.status.is_none_or(|s| r.status == s))
            .filter(|r| q.provider.as_ref().is_none_or(|p| &r.provider == p))
            .filter(|r| q.environment.is_none() || q.environment == r.environment)
            .filter(|r| q.tag.as_ref().is_none_or(|t| r.tags.contains(t)))
            .filter(|r| {
                q.name_prefix
                    .as_ref()
                    .is_none_or(|p| r.name.starts_with(p.as_str()))
            })
            .filter(|r| {
                q.after.as_ref().is_none_or(|(name, id)| {
                    (r.name.as_str(), r.integration_id) > (name.as_str(), *id)
                })
            })
            .cloned()
            .collect();
        rows.sort_by(|a, b| (&a.name, a.integration_id).cmp(&(&b.name, b.integration_id)));
        rows.truncate(q.limit as usize + 1);
        Ok(page(rows, q.limit))
    }

    async fn change(
        &self,
        actor: &Actor,
        id: Uuid,
        change: Change,
        now: DateTime<Utc>,
    ) -> Result<Option<Integration>, StoreError> {
        self.available()?;
        let mut data = self.data.lock().unwrap();
        let index = data
            .rows
            .iter()
            .position(|r| r.tenant_id == actor.tenant_id && r.integration_id == id)
            .ok_or(StoreError::NotFound)?;
        let applied = integration::apply_change(
            &data.rows[index],
            change,
            actor,
            Thresholds::default(),
            now,
        )?;
        if let Some(after) = &applied.after {
            if data.name_taken(&after.tenant_id, &after.name, Some(id)) {
                return Err(StoreError::NameTaken);
            }
            data.rows[index] = after.clone();
        } else {
            data.rows.remove(index);
        }
        data.record(applied.audit);
        Ok(applied.after)
    }

    async fn list_audit(
        &self,
        tenant_id: &str,
        q: &AuditQuery,
    ) -> Result<Page<AuditEntry>, StoreError> {
        self.available()?;
        let data = self.data.lock().unwrap();
        let entries = data
            .audit
            .iter()
            .filter(|e| e.tenant_id == tenant_id)
            .filter(|e| q.integration_id.is_none_or(|id| e.target_id == id))
            .filter(|e| q.after_seq.is_none_or(|after| e.sequence > after))
            .take(q.limit as usize + 1)
            .cloned()
            .collect();
        Ok(page(entries, q.limit))
    }

    async fn verify_audit(&self, _tenant_id: Option<&str>) -> Result<ChainReport, StoreError> {
        Ok(ChainReport {
            tenants: 0,
            entries: 0,
            problem: None,
        })
    }
}

pub struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap()
    }
}

/// A router over a [`MemoryStore`] with a generated HS256 key.
pub struct TestApp {
    pub router: Router,
    pub store: Arc<MemoryStore>,
    auth: Arc<Authenticator>,
    _key_dir: tempfile::TempDir,
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

    pub fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

impl TestApp {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    pub fn with(configure: impl FnOnce(&mut AppState)) -> Self {
        let key_dir = tempfile::tempdir().unwrap();
        let auth = Arc::new(
            Authenticator::from_config(&AuthConfig {
                generated_key_file: key_dir.path().join("key"),
                ..AuthConfig::default()
            })
            .unwrap(),
        );
        let store = Arc::new(MemoryStore::default());
        let mut state = AppState {
            store: store.clone(),
            auth: auth.clone(),
            clock: Arc::new(FixedClock),
            providers: Arc::new(ProviderRegistry::builtin()),
            default_thresholds: Thresholds::default(),
            default_interval_seconds: 60,
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(5),
        };
        configure(&mut state);
        TestApp {
            router: super::router(state),
            store,
            auth,
            _key_dir: key_dir,
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
