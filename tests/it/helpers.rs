//! `spawn_app`: the real application on a random port with a fresh database per test, on
//! SQLite or on a real PostgreSQL, plus small request helpers.

use std::sync::Arc;
use std::time::Duration;

use catalogd::auth::{Authenticator, SCOPE_ADMIN, SCOPE_READ};
use catalogd::config::Config;
use catalogd::startup::Application;
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub use crate::storm::JWT_KEY;
pub use catalogd_testkit::{database_url, Backend};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub auth: Arc<Authenticator>,
    pub database_url: String,
    pub dir: tempfile::TempDir,
    /// The monitor engine's counters (restarts, running actors).
    pub engine_stats: Arc<catalogd_actors::EngineCounters>,
    /// `http://127.0.0.1:port/metrics`.
    pub metrics_url: String,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A configuration for tests: port 0, a fresh database, a known HS256 key file.
pub async fn test_config(backend: Backend, dir: &std::path::Path) -> Config {
    let key_file = dir.join("jwt.key");
    std::fs::write(&key_file, JWT_KEY).unwrap();
    let mut config = Config::default();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    config.http.body_limit_bytes = 64 * 1024;
    config.database.url = database_url(backend, dir).await;
    config.database.sqlite_synchronous = catalogd::config::SqliteSynchronous::Normal;
    config.auth.jwt_secret_file = Some(key_file);
    config
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(backend, dir.path()).await;
    spawn_with_config(config, dir).await
}

pub async fn spawn_with_config(config: Config, dir: tempfile::TempDir) -> TestApp {
    let app = Application::build(&config)
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let auth = app.state().auth.clone();
    let engine_stats = app.engine_stats();
    let metrics_url = format!("http://{}/metrics", app.metrics_addr());
    let (tx, rx) = oneshot::channel();
    tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    TestApp {
        address,
        client: crate::helpers::http_client(Duration::from_secs(30)),
        auth,
        database_url: config.database.url.clone(),
        dir,
        engine_stats,
        metrics_url,
        shutdown: Some(tx),
    }
}

impl TestApp {
    /// Runs the `catalogd` binary against this app's database, as an operator would:
    /// `(exit code, stdout, stderr)`.
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_catalogd"))
            .args(args)
            .current_dir(self.dir.path())
            .env("CATALOGD__DATABASE__URL", &self.database_url)
            .env(
                "CATALOGD__AUTH__GENERATED_KEY_FILE",
                self.dir.path().join("cli.key"),
            )
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    pub fn token(&self, tenant: &str, subject: &str, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        self.auth
            .mint(
                tenant,
                subject,
                &scopes,
                Duration::from_secs(3600),
                chrono::Utc::now(),
            )
            .unwrap()
    }

    pub fn admin(&self, tenant: &str) -> String {
        self.token(tenant, &format!("{tenant}-admin"), &[SCOPE_ADMIN])
    }

    pub fn reader(&self, tenant: &str) -> String {
        self.token(tenant, &format!("{tenant}-reader"), &[SCOPE_READ])
    }

    pub fn expired(&self, tenant: &str) -> String {
        let scopes = vec![SCOPE_ADMIN.to_owned(), SCOPE_READ.to_owned()];
        let long_ago = chrono::Utc::now() - chrono::Duration::hours(3);
        self.auth
            .mint(tenant, "old", &scopes, Duration::from_secs(60), long_ago)
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    pub async fn create(&self, token: &str, body: &Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, "/api/v1/integrations", Some(token))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Creates an integration and returns it, asserting 201.
    pub async fn create_ok(&self, token: &str, body: &Value) -> Value {
        let response = self.create(token, body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 201, "create failed: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// `/readyz`: its status code and body.
    pub async fn readiness(&self) -> (u16, Value) {
        let response = self.client.get(self.url("/readyz")).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path, Some(token))
            .send()
            .await
            .unwrap()
    }

    /// Every item of a list, following `nextCursor` with the given page size.
    pub async fn list_all(&self, token: &str, query: &str, limit: u32) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100_000 {
            let mut path = format!("/api/v1/integrations?limit={limit}{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let response = self.get(token, &path).await;
            assert_eq!(response.status(), 200, "{path}");
            let page: Value = response.json().await.unwrap();
            let batch = page["items"].as_array().unwrap();
            assert!(batch.len() <= limit as usize);
            items.extend(batch.iter().cloned());
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
        }
        panic!("pagination did not terminate");
    }
}

/// A minimal valid integration body.
pub fn integration(name: &str) -> Value {
    json!({
        "name": name,
        "type": "registry",
        "provider": "harbor",
        "baseUrl": "https://harbor.example.com",
    })
}

/// Reads a problem+json response and returns `(status, code)`.
pub async fn problem(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(
        content_type.starts_with("application/problem+json"),
        "status {status}: content-type {content_type:?}, body {body}"
    );
    assert_eq!(body["status"], status, "{body}");
    (
        status,
        body["code"].as_str().unwrap_or_default().to_owned(),
        body,
    )
}

/// The outbox rows of one integration, in sequence order, read straight from the app's
/// database: `(sequence, event_type, subject, CloudEvent)`.
pub async fn outbox_rows(app: &TestApp, id: uuid::Uuid) -> Vec<(i64, String, String, Value)> {
    let sql = "SELECT sequence, event_type, subject, payload FROM outbox \
               WHERE integration_id = $1 ORDER BY sequence";
    let rows: Vec<(i64, String, String, String)> =
        read_rows(&app.database_url, sql, Some(id)).await;
    rows.into_iter()
        .map(|(sequence, kind, subject, payload)| {
            (
                sequence,
                kind,
                subject,
                serde_json::from_str(&payload).unwrap(),
            )
        })
        .collect()
}

/// Connectors over `egress` (a test resolver or dialer), online, without plugins.
pub fn connectors_with(
    egress: catalogd::egress::EgressClient,
    secrets: &catalogd::config::SecretsConfig,
) -> catalogd::connectors::Connectors {
    let context = catalogd::connectors::Context {
        egress,
        secrets: catalogd::secrets::SecretResolver::new(secrets),
        clock: Arc::new(catalogd_actors::SystemClock),
    };
    catalogd::connectors::Connectors::from_context(
        context,
        &catalogd::config::OfflineConfig::default(),
        &catalogd::config::PluginsConfig::default(),
    )
    .unwrap()
}

/// A spec with only what is required: a name, a type and the `http` provider.
pub fn minimal_spec(
    name: &str,
    kind: catalogd::integration::IntegrationType,
) -> catalogd::integration::IntegrationSpec {
    catalogd::integration::IntegrationSpec {
        name: name.to_owned(),
        description: None,
        kind,
        provider: "http".to_owned(),
        base_url: None,
        auth_ref: None,
        configuration: Default::default(),
        environment: None,
        tags: Vec::new(),
        owner_id: None,
        health_check: Default::default(),
        depends_on: Vec::new(),
    }
}

/// An HTTP client whose every request gives up after `timeout`, so a stuck daemon fails a
/// test instead of hanging it.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("a reqwest client")
}

/// Sends `request` and reads its JSON body; any failure fails the test.
pub async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// The rows of `sql` (with `id` bound as `$1`, if any), read on a connection of the test's own
/// to the database at `url`, SQLite or PostgreSQL by its scheme.
pub async fn read_rows<T>(url: &str, sql: &str, id: Option<uuid::Uuid>) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    use sqlx::Connection;
    if url.starts_with("sqlite") {
        let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
        let query = sqlx::query_as(sql);
        let query = match id {
            Some(id) => query.bind(id),
            None => query,
        };
        query.fetch_all(&mut connection).await.unwrap()
    } else {
        let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
        let query = sqlx::query_as(sql);
        let query = match id {
            Some(id) => query.bind(id),
            None => query,
        };
        query.fetch_all(&mut connection).await.unwrap()
    }
}

/// Store options for `url` as the store tests open it: no password, `max_connections`
/// connections, SQLite's relaxed sync (the tests do not pull the plug), default thresholds.
pub fn store_options(url: &str, max_connections: u32) -> catalogd::store::StoreOptions {
    catalogd::store::StoreOptions {
        url: url.to_owned(),
        password: None,
        max_connections,
        sqlite_synchronous_full: false,
        allow_unsafe_durability: false,
        default_thresholds: catalogd_actors::Thresholds::default(),
    }
}

/// The transition a monitor commits when its third failing check (a timeout) degrades
/// integration `id` at `version`, under `claim`.
pub async fn degrade(
    store: &dyn catalogd::store::Store,
    id: uuid::Uuid,
    version: i64,
    claim: catalogd::cluster::Claim,
) -> Result<catalogd::store::CheckCommit, catalogd::store::StoreError> {
    use catalogd_actors::{CheckOutcome, EventKind, FailureClass, Lifecycle, Status};
    store
        .commit_check(
            id,
            version,
            Lifecycle {
                status: Status::Degraded,
                consecutive_failures: 3,
                consecutive_successes: 0,
            },
            Some(EventKind::Unhealthy),
            None,
            catalogd::integration::CheckSummary {
                outcome: CheckOutcome::Failure(FailureClass::Timeout),
                started_at: chrono::Utc::now(),
                latency_ms: 1000,
            },
            chrono::Utc::now(),
            Some(claim),
        )
        .await
}
