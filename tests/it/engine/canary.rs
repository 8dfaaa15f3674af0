//! No secret ever leaks: canary secrets behind AuthRefs are used by every token-bearing
//! connector on success and failure paths, with trace logging on, and then searched for in
//! everything catalogd emitted — its logs, every API response, and the raw database files
//! (integrations, audit trail, outbox events, health history).

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::JWT_KEY;
use crate::storm::admin_token;
use catalogd_testkit::{eventually, Daemon, Mode, Target};

const CANARY_TOKEN: &str = "canary-token-7f3a9c1e5b";
const CANARY_PASSWORD: &str = "canary-password-b8e2d4";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_secrets_never_leave_the_connectors() {
    let _heavy = crate::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("jwt.key");
    std::fs::write(&key, JWT_KEY).unwrap();
    // The file backend holds one secret, the env backend the other.
    let secrets = dir.path().join("secrets/prod/jenkins");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("robot"), format!("robot:{CANARY_PASSWORD}\n")).unwrap();
    let config = dir.path().join("catalogd.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"sqlite://{0}/catalogd.db\"\n\
             [auth]\njwt_secret_file = \"{1}\"\n[egress]\nallow_private = true\n\
             [secrets]\ndirectory = \"{0}/secrets\"\n[history]\nflush_interval = \"100ms\"\n",
            dir.path().display(),
            key.display()
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_catalogd"));
    command
        .current_dir(dir.path())
        .env("RUST_LOG", "trace")
        .env("CATALOGD_SECRET_PROD_GITLAB_TOKEN", CANARY_TOKEN)
        .env("CATALOGD_SECRET_PROD_GITHUB_TOKEN", CANARY_TOKEN)
        .env("CATALOGD_SECRET_PROD_GITEA_TOKEN", CANARY_TOKEN)
        .env(
            "CATALOGD_SECRET_PROD_HARBOR_ROBOT",
            format!("robot:{CANARY_PASSWORD}"),
        )
        .env(
            "CATALOGD_SECRET_PROD_HTTP_TOKEN",
            format!("Bearer {CANARY_TOKEN}"),
        )
        .args(["serve", "--config", config.to_str().unwrap()]);
    let mut daemon =
        Daemon::start(command, Duration::from_secs(60)).expect("catalogd serve starts");
    let base = daemon.api.clone();

    let token = admin_token("acme");
    let client = crate::helpers::http_client(Duration::from_secs(20));
    let mut responses: Vec<String> = Vec::new();

    let target = Target::start().await;
    let integrations = [
        json!({"name": "gitlab", "type": "scm", "provider": "gitlab", "baseUrl": target.url, "authRef": "ref://prod/gitlab/token"}),
        json!({"name": "github", "type": "scm", "provider": "github", "baseUrl": target.url, "authRef": "ref://prod/github/token"}),
        json!({"name": "gitea", "type": "scm", "provider": "gitea", "baseUrl": target.url, "authRef": "ref://prod/gitea/token"}),
        json!({"name": "jenkins", "type": "ci", "provider": "jenkins", "baseUrl": target.url, "authRef": "ref://prod/jenkins/robot"}),
        json!({"name": "harbor", "type": "registry", "provider": "harbor", "baseUrl": target.url, "authRef": "ref://prod/harbor/robot"}),
        json!({"name": "http", "type": "host", "provider": "http", "baseUrl": target.url,
               "configuration": {"headers": {"Authorization": "ref://prod/http/token"}}}),
        json!({"name": "unresolvable", "type": "scm", "provider": "gitlab", "baseUrl": target.url, "authRef": "ref://prod/gitlab/missing"}),
    ];
    let mut ids = Vec::new();
    for mut body in integrations {
        body["healthCheck"] = json!({"intervalSeconds": 1, "timeoutSeconds": 1});
        let response = client
            .post(format!("{base}/api/v1/integrations"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 201, "{text}");
        let created: Value = serde_json::from_str(&text).unwrap();
        ids.push(created["integrationId"].as_str().unwrap().to_owned());
        responses.push(text);
    }
    let post = |id: &str, op: &str| {
        let request = client
            .post(format!("{base}/api/v1/integrations/{id}/{op}"))
            .bearer_auth(&token);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    // Success paths, then failures (500s and hangs): tests and monitor checks.
    for id in &ids {
        responses.push(post(id, "test").await);
        responses.push(post(id, "submit").await);
    }
    for mode in [Mode::Failing, Mode::Hanging, Mode::Healthy] {
        target.set(mode);
        let seen = target.requests();
        eventually(
            "checks run in this mode",
            Duration::from_secs(20),
            || async { target.requests() >= seen + 12 },
        )
        .await;
        for id in &ids {
            responses.push(post(id, "test").await);
        }
    }
    for id in &ids {
        for path in ["", "/health", "/history"] {
            let url = format!("{base}/api/v1/integrations/{id}{path}");
            responses.push(
                client
                    .get(url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap(),
            );
        }
    }
    responses.push(
        client
            .get(format!("{base}/api/v1/audit?limit=500"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(daemon.terminate().unwrap().success());
    let logs = daemon.rest_of_log();
    assert!(
        logs.len() > 100,
        "trace logging was on ({} lines)",
        logs.len()
    );

    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("catalogd.db")
        {
            files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    assert!(!files.is_empty());
    let mut hits = Vec::new();
    for canary in [CANARY_TOKEN, CANARY_PASSWORD] {
        hits.extend(
            logs.iter()
                .filter(|l| l.contains(canary))
                .map(|l| format!("log: {l}")),
        );
        hits.extend(
            responses
                .iter()
                .filter(|r| r.contains(canary))
                .map(|r| format!("response: {r}")),
        );
        for (name, bytes) in &files {
            if bytes.windows(canary.len()).any(|w| w == canary.as_bytes()) {
                hits.push(format!("database file {name}"));
            }
        }
    }
    assert!(hits.is_empty(), "{} canary hits: {hits:#?}", hits.len());
    // The canaries were really used: the target received them (as a token, and inside the
    // Basic credentials of jenkins and harbor).
    let received = target.credentials();
    assert!(
        received.iter().any(|c| c.contains(CANARY_TOKEN)),
        "the token reached the target"
    );
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("robot:{CANARY_PASSWORD}"));
    assert!(
        received.iter().any(|c| c.contains(&basic)),
        "the password reached the target"
    );
}
