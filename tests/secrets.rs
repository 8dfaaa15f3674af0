//! AuthRef secrets: the file and env backends, their order, re-reading, the TTL, path
//! safety, redaction; and the canary test: planted secret values must never appear in
//! anything catalogd emits (logs at TRACE, test reports, outcomes, errors) while every
//! connector runs its check and test paths, failures included.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use catalogd::config::{EgressConfig, OfflineConfig, PluginsConfig, SecretBackend, SecretsConfig};
use catalogd::connectors::{Connectors, Target};
use catalogd::secrets::{AuthRef, SecretError, SecretResolver};
use catalogd_actors::SystemClock;
use catalogd_testkit::fakes;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(5);

fn config(
    directory: &Path,
    backends: &[SecretBackend],
    prefix: &str,
    ttl: Duration,
) -> SecretsConfig {
    SecretsConfig {
        backends: backends.to_vec(),
        directory: directory.to_owned(),
        env_prefix: prefix.to_owned(),
        cache_ttl: ttl,
    }
}

fn plant(directory: &Path, path: &str, value: &str) {
    let file = directory.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, value).unwrap();
}

fn resolve(resolver: &SecretResolver, auth_ref: &str) -> Result<String, SecretError> {
    resolver
        .resolve_str(auth_ref)
        .map(|value| value.expose().to_owned())
}

#[test]
fn file_backend_reads_the_tree_and_trims_one_newline() {
    let dir = tempfile::tempdir().unwrap();
    plant(dir.path(), "team/harbor/robot", "s3cret\n");
    plant(dir.path(), "team/harbor/two-newlines", "line\n\n");
    plant(dir.path(), "team/harbor/crlf", "windows\r\n");
    plant(
        dir.path(),
        "team/harbor/pem",
        "-----BEGIN-----\nabc\n-----END-----\n",
    );
    let resolver = SecretResolver::new(&config(
        dir.path(),
        &[SecretBackend::File],
        "UNUSED_",
        Duration::from_secs(30),
    ));
    assert_eq!(
        resolve(&resolver, "ref://team/harbor/robot").unwrap(),
        "s3cret"
    );
    assert_eq!(
        resolve(&resolver, "ref://team/harbor/two-newlines").unwrap(),
        "line\n"
    );
    assert_eq!(
        resolve(&resolver, "ref://team/harbor/crlf").unwrap(),
        "windows"
    );
    assert_eq!(
        resolve(&resolver, "ref://team/harbor/pem").unwrap(),
        "-----BEGIN-----\nabc\n-----END-----"
    );
    let error = resolve(&resolver, "ref://team/harbor/absent").unwrap_err();
    assert_eq!(
        error.to_string(),
        "AuthRef ref://team/harbor/absent is not resolvable (tried: file)"
    );
    // A directory where a file is expected.
    std::fs::create_dir_all(dir.path().join("team/harbor/dir")).unwrap();
    assert!(matches!(
        resolve(&resolver, "ref://team/harbor/dir"),
        Err(SecretError::Backend {
            reason: "not a regular file",
            ..
        })
    ));
}

#[test]
fn env_backend_names_and_backend_order() {
    let dir = tempfile::tempdir().unwrap();
    plant(dir.path(), "ops/gitlab.com/api-token", "from-file");
    std::env::set_var("CATALOGD_TEST_ORDER_OPS_GITLAB_COM_API_TOKEN", "from-env");
    std::env::set_var("CATALOGD_TEST_ORDER_OPS_JENKINS_USER", "env-only");
    let file_first = SecretResolver::new(&config(
        dir.path(),
        &[SecretBackend::File, SecretBackend::Env],
        "CATALOGD_TEST_ORDER_",
        Duration::ZERO,
    ));
    let env_first = SecretResolver::new(&config(
        dir.path(),
        &[SecretBackend::Env, SecretBackend::File],
        "CATALOGD_TEST_ORDER_",
        Duration::ZERO,
    ));
    assert_eq!(
        resolve(&file_first, "ref://ops/gitlab.com/api-token").unwrap(),
        "from-file"
    );
    assert_eq!(
        resolve(&env_first, "ref://ops/gitlab.com/api-token").unwrap(),
        "from-env"
    );
    // A backend without the secret falls through to the next.
    assert_eq!(
        resolve(&file_first, "ref://ops/jenkins/user").unwrap(),
        "env-only"
    );
    let file_only = SecretResolver::new(&config(
        dir.path(),
        &[SecretBackend::File],
        "CATALOGD_TEST_ORDER_",
        Duration::ZERO,
    ));
    assert!(resolve(&file_only, "ref://ops/jenkins/user").is_err());
    let none = SecretResolver::new(&config(dir.path(), &[], "X_", Duration::ZERO));
    assert_eq!(
        resolve(&none, "ref://ops/jenkins/user")
            .unwrap_err()
            .to_string(),
        "AuthRef ref://ops/jenkins/user is not resolvable (tried: no backend configured)"
    );
    assert_eq!(
        AuthRef::parse("ref://ops/gitlab.com/api-token")
            .unwrap()
            .env_var("P_"),
        "P_OPS_GITLAB_COM_API_TOKEN"
    );
}

#[test]
fn a_changed_file_is_read_again_before_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    plant(dir.path(), "s/p/k", "first");
    let resolver = SecretResolver::new(&config(
        dir.path(),
        &[SecretBackend::File],
        "UNUSED_",
        Duration::from_secs(3600),
    ));
    assert_eq!(resolve(&resolver, "ref://s/p/k").unwrap(), "first");
    plant(dir.path(), "s/p/k", "second-rotated");
    assert_eq!(resolve(&resolver, "ref://s/p/k").unwrap(), "second-rotated");
    std::fs::remove_file(dir.path().join("s/p/k")).unwrap();
    assert!(resolve(&resolver, "ref://s/p/k").is_err());
}

#[tokio::test]
async fn cached_values_live_at_most_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    plant(dir.path(), "s/p/k", "value-A");
    let file = dir.path().join("s/p/k");
    // Long enough that the read right after the rewrite is surely within it on a busy box.
    let ttl = Duration::from_secs(2);
    let resolver = SecretResolver::new(&config(dir.path(), &[SecretBackend::File], "UNUSED_", ttl));
    assert_eq!(resolve(&resolver, "ref://s/p/k").unwrap(), "value-A");
    // Rewrite with the same length and put the modification time back: only the TTL can
    // notice.
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    let mut handle = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&file)
        .unwrap();
    handle.write_all(b"value-B").unwrap();
    handle.set_modified(modified).unwrap();
    drop(handle);
    assert_eq!(resolve(&resolver, "ref://s/p/k").unwrap(), "value-A");
    assert!(
        catalogd_testkit::holds_within(Duration::from_secs(10), || {
            resolve(&resolver, "ref://s/p/k").unwrap() == "value-B"
        })
        .await
    );
    // With a zero TTL nothing is cached at all.
    let uncached = SecretResolver::new(&config(
        dir.path(),
        &[SecretBackend::File],
        "UNUSED_",
        Duration::ZERO,
    ));
    assert_eq!(resolve(&uncached, "ref://s/p/k").unwrap(), "value-B");
    let mut handle = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&file)
        .unwrap();
    handle.write_all(b"value-C").unwrap();
    handle
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1))
        .unwrap();
    drop(handle);
    assert_eq!(resolve(&uncached, "ref://s/p/k").unwrap(), "value-C");
}

#[test]
fn references_cannot_escape_the_directory() {
    let root = tempfile::tempdir().unwrap();
    let secrets = root.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    plant(root.path(), "outside/p/k", "must-not-be-read");
    plant(root.path(), "k", "must-not-be-read");
    let resolver = SecretResolver::new(&config(
        &secrets,
        &[SecretBackend::File, SecretBackend::Env],
        "CATALOGD_TEST_ESCAPE_",
        Duration::ZERO,
    ));
    for raw in [
        "ref://../outside/p",
        "ref://../p/k",
        "ref://s/../k",
        "ref://s/p/..",
        "ref://./p/k",
        "ref://s/p/../../k",
        "ref://s/p/k/../../../k",
        "ref:///p/k",
        "ref://s//k",
        "ref://s/p/%2e%2e",
        "ref://s/p/k\0",
        "ref://s\\..\\k/p/k",
    ] {
        assert_eq!(
            resolver.resolve_str(raw).unwrap_err(),
            SecretError::Invalid,
            "{raw:?}"
        );
    }
}

#[test]
fn values_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    plant(dir.path(), "s/p/k", "hunter2-value");
    let resolver = SecretResolver::new(&config(
        dir.path(),
        &[SecretBackend::File],
        "UNUSED_",
        Duration::from_secs(30),
    ));
    let value = resolver.resolve_str("ref://s/p/k").unwrap();
    assert_eq!(value.expose(), "hunter2-value");
    for text in [
        format!("{value:?}"),
        format!("{:?}", Some(value.clone())),
        format!("{resolver:?}"),
        format!("{:?}", resolver.resolve_str("ref://s/p/k")),
    ] {
        assert!(!text.contains("hunter2"), "{text}");
    }
    assert_eq!(format!("{value:?}"), "SecretValue([redacted])");
}

// ------------------------------------------------------------------ the canary test

const CANARY_TOKEN: &str = "CANARY-TOKEN-5b9f2c71e0";
const CANARY_WRONG_TOKEN: &str = "CANARY-WRONG-3f0a9d27";
const CANARY_USER: &str = "canary-user";
const CANARY_PASSWORD: &str = "CANARY-PASS-8e1d77b4";
const CANARY_ENV_TOKEN: &str = "CANARY-ENV-44c1b8e2";
const CANARY_REGISTRY_TOKEN: &str = "CANARY-REGISTRY-TOKEN-71aa";

/// Everything written by tracing, at every level, from every thread.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || CaptureWriter(writer.clone()))
            .try_init()
            .expect("no other subscriber in this test binary");
        buffer
    })
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_secrets_never_appear_in_logs_reports_or_errors() {
    let logs = captured_logs();
    tracing::info!("canary test started");
    let dir = tempfile::tempdir().unwrap();
    let basic = format!("{CANARY_USER}:{CANARY_PASSWORD}");
    plant(dir.path(), "c/any/token", &format!("{CANARY_TOKEN}\n"));
    plant(dir.path(), "c/any/wrong-token", CANARY_WRONG_TOKEN);
    plant(dir.path(), "c/any/basic", &basic);
    plant(
        dir.path(),
        "c/any/wrong-basic",
        &format!("{CANARY_USER}:{CANARY_WRONG_TOKEN}"),
    );
    plant(dir.path(), "c/any/app-key", fakes::GITHUB_APP_PRIVATE_KEY);
    plant(dir.path(), "c/any/pat", &format!(":{CANARY_TOKEN}"));
    std::env::set_var("CATALOGD_CANARY_C_ENV_TOKEN", CANARY_ENV_TOKEN);
    let secrets = config(
        dir.path(),
        &[SecretBackend::File, SecretBackend::Env],
        "CATALOGD_CANARY_",
        Duration::from_secs(30),
    );
    // Every declarative provider the canary covers is built in: no plugin directory.
    let plugins = PluginsConfig {
        directory: dir.path().join("no-plugins"),
    };
    let build = |allow_private| {
        Connectors::new(
            &EgressConfig {
                allow_private,
                ..EgressConfig::default()
            },
            &OfflineConfig::default(),
            &plugins,
            &secrets,
            Arc::new(SystemClock),
        )
        .unwrap()
    };
    let open = build(true);
    let closed = build(false);

    // Vendor fakes expecting the canary credentials.
    let harbor = fakes::start(fakes::harbor(&basic, Arc::new(AtomicBool::new(false)))).await;
    let registry = fakes::start(fakes::oci_registry(&basic, CANARY_REGISTRY_TOKEN)).await;
    let github = fakes::start(fakes::github(CANARY_TOKEN)).await;
    let app = fakes::start(fakes::github_app(json!(99), Arc::new(Mutex::new(None)))).await;
    let gitlab = fakes::start(fakes::gitlab(CANARY_ENV_TOKEN)).await;
    let gitea = fakes::start(fakes::gitea(CANARY_TOKEN)).await;
    let jenkins = fakes::start(fakes::jenkins(&basic)).await;
    let http = fakes::start(fakes::github(CANARY_TOKEN)).await;
    let artifactory = fakes::start(fakes::artifactory(CANARY_TOKEN)).await;
    let nexus = fakes::start(fakes::nexus(&basic)).await;
    let sonar = fakes::start(fakes::sonarqube(
        CANARY_TOKEN,
        Arc::new(Mutex::new("UP".into())),
    ))
    .await;
    let bitbucket_cloud = fakes::start(fakes::bitbucket_cloud(CANARY_TOKEN)).await;
    let bitbucket_datacenter = fakes::start(fakes::bitbucket_datacenter(CANARY_TOKEN)).await;
    let azure = fakes::start(fakes::azure_devops("org", CANARY_TOKEN)).await;
    let circleci = fakes::start(fakes::circleci(CANARY_TOKEN)).await;
    let actions = fakes::start(fakes::github_actions("o", "r", CANARY_TOKEN)).await;
    let pipelines = fakes::start(fakes::gitlab_ci("g/p", CANARY_TOKEN)).await;
    let all = [
        &harbor,
        &registry,
        &github,
        &app,
        &gitlab,
        &gitea,
        &jenkins,
        &http,
        &artifactory,
        &nexus,
        &sonar,
    ];

    let on = |provider: &str, fake: &fakes::Fake, auth_ref: &str| {
        Target::new(provider, Some(&fake.url())).with_auth_ref(auth_ref)
    };
    let mut targets =
        vec![
        on("harbor", &harbor, "ref://c/any/basic"),
        on("harbor", &harbor, "ref://c/any/wrong-basic"),
        on("oci-registry", &registry, "ref://c/any/basic"),
        on("oci-registry", &registry, "ref://c/any/wrong-basic"),
        on("github", &github, "ref://c/any/token"),
        on("github", &github, "ref://c/any/wrong-token"),
        on("github-app", &app, "ref://c/any/app-key").with_configuration(json!({"appId": 99})),
        on("github-app", &app, "ref://c/any/app-key").with_configuration(json!({"appId": 5})),
        on("github-app", &app, "ref://c/any/token").with_configuration(json!({"appId": 99})),
        on("gitlab", &gitlab, "ref://c/env/token"),
        on("gitlab", &gitlab, "ref://c/any/wrong-token"),
        on("gitea", &gitea, "ref://c/any/token"),
        on("gitea", &gitea, "ref://c/any/wrong-token"),
        on("jenkins", &jenkins, "ref://c/any/basic"),
        on("jenkins", &jenkins, "ref://c/any/wrong-basic"),
        on("artifactory", &artifactory, "ref://c/any/token"),
        on("artifactory", &artifactory, "ref://c/any/wrong-token"),
        on("nexus", &nexus, "ref://c/any/basic"),
        on("nexus", &nexus, "ref://c/any/wrong-basic"),
        on("sonarqube", &sonar, "ref://c/any/token"),
        on("sonarqube", &sonar, "ref://c/any/wrong-token"),
        on("http", &http, "ref://c/any/token")
            .with_configuration(json!({"path": "/user", "authScheme": "bearer"})),
        on("http", &http, "ref://c/any/basic")
            .with_configuration(json!({"path": "/user", "authScheme": "basic"})),
        Target::new("http", Some(&http.url())).with_configuration(json!({
            "path": "/user",
            "headers": {"Authorization": "ref://c/any/wrong-token", "X-Token": "ref://c/env/token"}
        })),
        on("github", &github, "ref://c/any/absent"),
        Target::new("tcp", None).with_configuration(json!({"address": github.addr.to_string()})),
        Target::new("in-memory", None).with_configuration(json!({"script": ["failure:auth"]})),
        // The built-in declarative providers of DESIGN §12, right and wrong credentials.
        on("bitbucket", &bitbucket_cloud, "ref://c/any/token")
            .with_configuration(json!({"edition": "cloud"})),
        on("bitbucket", &bitbucket_cloud, "ref://c/any/wrong-token")
            .with_configuration(json!({"edition": "cloud"})),
        on("bitbucket", &bitbucket_datacenter, "ref://c/any/token"),
        on("bitbucket", &bitbucket_datacenter, "ref://c/any/wrong-token"),
        Target::new("azure-devops", Some(&format!("{}/org", azure.url())))
            .with_auth_ref("ref://c/any/pat"),
        Target::new("azure-devops", Some(&format!("{}/org", azure.url())))
            .with_auth_ref("ref://c/any/wrong-token"),
        on("circleci", &circleci, "ref://c/any/token"),
        on("circleci", &circleci, "ref://c/any/wrong-token"),
        on("github-actions", &actions, "ref://c/any/token")
            .with_configuration(json!({"owner": "o", "repo": "r"})),
        on("github-actions", &actions, "ref://c/any/wrong-token")
            .with_configuration(json!({"owner": "o", "repo": "r"})),
        on("gitlab-ci", &pipelines, "ref://c/any/token")
            .with_configuration(json!({"project": "g/p"})),
        on("gitlab-ci", &pipelines, "ref://c/any/wrong-token")
            .with_configuration(json!({"project": "g/p"})),
    ];
    let mut emitted = Vec::new();
    let mut run = |text: String| emitted.push(text);
    for connectors in [&open, &closed] {
        for target in &targets {
            let outcome = connectors.check(target, TIMEOUT).await;
            run(format!("{outcome:?}"));
            let report = connectors.test(target, TIMEOUT).await;
            run(serde_json::to_string(&report).unwrap());
            run(format!("{report:?}"));
        }
    }
    // Failure paths on the server side: hanging (timeout), 500, rate limits.
    targets.truncate(24);
    for (index, fake) in all.iter().enumerate() {
        match index % 3 {
            0 => fake.control.hang(),
            1 => fake.control.fail_with(500, &[]),
            _ => fake.control.fail_with(429, &[("retry-after", "1")]),
        }
    }
    for target in &targets {
        let outcome = open.check(target, Duration::from_millis(200)).await;
        run(format!("{outcome:?}"));
        let report = open.test(target, Duration::from_millis(200)).await;
        run(serde_json::to_string(&report).unwrap());
    }
    // Errors from the resolver itself.
    let resolver = SecretResolver::new(&secrets);
    for raw in [
        "ref://c/any/token",
        "ref://c/any/absent",
        "ref://c/env/token",
        "ref://c/../x",
    ] {
        let result = resolver.resolve_str(raw);
        run(format!("{result:?}"));
        if let Err(error) = result {
            run(error.to_string());
        }
    }
    run(format!("{open:?} {targets:?}"));

    // Everything that went out as a credential is a canary too: the Authorization headers,
    // the GitHub App JWTs, the registry token.
    let mut canaries: Vec<String> = [
        CANARY_TOKEN,
        CANARY_WRONG_TOKEN,
        CANARY_PASSWORD,
        CANARY_ENV_TOKEN,
        CANARY_REGISTRY_TOKEN,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    canaries.push(base64::engine::general_purpose::STANDARD.encode(&basic));
    canaries.extend(
        fakes::GITHUB_APP_PRIVATE_KEY
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .map(str::to_owned),
    );
    let mut credentials_seen = 0;
    for fake in all {
        for request in fake.recorded() {
            for name in ["authorization", "private-token", "x-token"] {
                if let Some(value) = request.headers.get(name) {
                    let value = value.to_str().unwrap();
                    let token = value.rsplit(' ').next().unwrap();
                    canaries.push(token.to_owned());
                    credentials_seen += 1;
                }
            }
        }
    }
    assert!(credentials_seen >= 30, "{credentials_seen}");
    // Give log writers on other threads a moment, then read everything.
    tracing::info!("canary test finished");
    assert!(
        catalogd_testkit::holds_within(Duration::from_secs(5), || {
            String::from_utf8_lossy(&logs.lock().unwrap()).contains("canary test finished")
        })
        .await
    );
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    // Controls: the capture sees TRACE events, and catalogd's failure paths did log.
    assert!(
        logs.contains("TRACE") && logs.contains("outcome=\"success\""),
        "no TRACE output captured"
    );
    assert!(
        logs.contains("failure_class"),
        "the failure paths logged nothing"
    );
    let haystacks: Vec<&str> = emitted
        .iter()
        .map(String::as_str)
        .chain([logs.as_str()])
        .collect();
    let mut hits = Vec::new();
    for canary in &canaries {
        for haystack in &haystacks {
            if haystack.contains(canary.as_str()) {
                hits.push(canary.clone());
            }
        }
    }
    println!(
        "canary test: {} canary values, {} haystacks ({} log bytes), {} hits",
        canaries.len(),
        haystacks.len(),
        logs.len(),
        hits.len()
    );
    assert!(hits.is_empty(), "canary values leaked: {hits:?}");
}
