//! A transition storm against `catalogd serve` child processes: a daemon on its own SQLite
//! file and config, flapping scripted integrations, and REST pause/resume traffic between
//! SIGKILLs. Shared by the engine and events crash tests. Also minting a token with the
//! test key, which those tests share.

use std::process::Command;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};

use catalogd_testkit::Daemon;

/// The HS256 key every test daemon is configured with.
pub const JWT_KEY: &str = "test-key-0123456789abcdef0123456789abcdef";

/// A token for `tenant` with the admin scope, signed with [`JWT_KEY`].
pub fn admin_token(tenant: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, JWT_KEY).unwrap();
    catalogd::auth::Authenticator::from_config(&catalogd::config::AuthConfig {
        jwt_secret_file: Some(key),
        ..Default::default()
    })
    .unwrap()
    .mint(
        tenant,
        "ops",
        &["integrations.admin".into()],
        Duration::from_secs(3600),
        chrono::Utc::now(),
    )
    .unwrap()
}

/// An `in-memory` integration that cycles through `script`, checked every `interval` seconds.
pub fn scripted(name: &str, script: &[&str], interval: u32) -> Value {
    json!({
        "name": name,
        "type": "host",
        "provider": "in-memory",
        "configuration": {"script": script},
        "healthCheck": {"intervalSeconds": interval, "timeoutSeconds": 1},
    })
}

/// Three failures then a success, every second: an active integration degrades and recovers
/// every four checks.
pub const FLAPPING: &[&str] = &[
    "failure:http_status",
    "failure:http_status",
    "failure:http_status",
    "success",
];

/// A daemon's directory, SQLite database and config file, restartable after SIGKILL.
pub struct Storm {
    pub dir: tempfile::TempDir,
    pub config: std::path::PathBuf,
}

impl Storm {
    /// `extra` is appended to the configuration (e.g. a `[nats]` section).
    pub fn new(extra: &str) -> Storm {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("jwt.key");
        std::fs::write(&key, JWT_KEY).unwrap();
        let config = dir.path().join("catalogd.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"sqlite://{}/catalogd.db\"\n\
                 [auth]\njwt_secret_file = \"{}\"\n[monitor]\nreconcile_interval = \"2s\"\n\
                 [history]\nflush_interval = \"200ms\"\n{extra}",
                dir.path().display(),
                key.display()
            ),
        )
        .unwrap();
        Storm { dir, config }
    }

    pub fn start(&self) -> Daemon {
        let mut command = Command::new(env!("CARGO_BIN_EXE_catalogd"));
        command
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .args(["serve", "--config", self.config.to_str().unwrap()]);
        Daemon::start(command, Duration::from_secs(60)).expect("catalogd serve starts")
    }

    pub fn database_url(&self) -> String {
        format!("sqlite://{}/catalogd.db", self.dir.path().display())
    }
}

/// Creates and submits `count` flapping integrations; returns their ids.
pub async fn create_flapping(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    count: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let body = scripted(&format!("flap-{i:02}"), FLAPPING, 1);
        let created: Value = crate::helpers::json_of(
            client
                .post(format!("{base}/api/v1/integrations"))
                .bearer_auth(token)
                .json(&body),
        )
        .await;
        let id = created["integrationId"].as_str().unwrap().to_owned();
        let response = client
            .post(format!("{base}/api/v1/integrations/{id}/submit"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        ids.push(id);
    }
    ids
}

/// Pauses and resumes random integrations until `until`, so REST changes interleave with the
/// monitor's transitions. Errors are expected (the daemon may be mid-restart) and ignored.
pub async fn pause_and_resume(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    ids: &[String],
    until: Instant,
) {
    while Instant::now() < until {
        let id = &ids[rand::rng().random_range(0..ids.len())];
        let _ = client
            .post(format!("{base}/api/v1/integrations/{id}/pause"))
            .bearer_auth(token)
            .json(&json!({"reason": "storm"}))
            .send()
            .await;
        let _ = client
            .post(format!("{base}/api/v1/integrations/{id}/resume"))
            .bearer_auth(token)
            .send()
            .await;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}
