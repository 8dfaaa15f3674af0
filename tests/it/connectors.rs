//! Every connector against a local fake of its vendor: healthy, and each failure class it can
//! produce; staged diagnostics; declarative providers; offline mode.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use catalogd::config::{EgressConfig, OfflineConfig, PluginsConfig, SecretBackend, SecretsConfig};
use catalogd::connectors::{ConnectionTestReport, Connectors, Target};
use catalogd::integration::IntegrationType;
use catalogd_actors::ports::Probe;
use catalogd_actors::{CheckOutcome, FailureClass, SystemClock};
use serde_json::{json, Value};

use crate::helpers::connectors_with;
use catalogd_testkit::fakes::{self, Fake, UPSTREAM_BODY_MARKER};

const TIMEOUT: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(300);

const TOKEN: &str = "tok-connectors-1";
const USER_PASSWORD: &str = "robot:pa55-connectors";

/// A secrets directory with the credentials the fakes expect, and connectors that read it.
struct Harness {
    _secrets: tempfile::TempDir,
    connectors: Connectors,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(OfflineConfig::default(), None)
    }

    fn with(offline: OfflineConfig, plugins: Option<PathBuf>) -> Harness {
        let secrets = tempfile::tempdir().unwrap();
        for (path, value) in [
            ("t/any/token", TOKEN),
            ("t/any/wrong-token", "not-the-token"),
            ("t/any/basic", USER_PASSWORD),
            ("t/any/wrong-basic", "robot:wrong"),
            ("t/any/pat", ":tok-connectors-1"),
            ("t/any/wrong-pat", ":not-the-token"),
            ("t/any/app-key", fakes::GITHUB_APP_PRIVATE_KEY),
            ("t/any/not-a-key", "-----BEGIN RSA PRIVATE KEY-----\nnope\n"),
        ] {
            let file = secrets.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, format!("{value}\n")).unwrap();
        }
        let connectors = Connectors::new(
            &EgressConfig {
                allow_private: true,
                ..EgressConfig::default()
            },
            &offline,
            &PluginsConfig {
                directory: plugins.unwrap_or_else(|| PathBuf::from("does-not-exist")),
            },
            &SecretsConfig {
                backends: vec![SecretBackend::File],
                directory: secrets.path().to_owned(),
                env_prefix: "CATALOGD_TEST_CONNECTORS_".to_owned(),
                cache_ttl: Duration::from_secs(30),
            },
            Arc::new(SystemClock),
        )
        .unwrap();
        Harness {
            _secrets: secrets,
            connectors,
        }
    }

    async fn check(&self, target: &Target) -> CheckOutcome {
        self.connectors.check(target, TIMEOUT).await
    }

    async fn test(&self, target: &Target) -> ConnectionTestReport {
        let report = self.connectors.test(target, TIMEOUT).await;
        assert_never_echoes_upstream(&report);
        report
    }
}

fn target(provider: &str, fake: &Fake) -> Target {
    Target::new(provider, Some(&fake.url()))
}

fn fail(class: FailureClass) -> CheckOutcome {
    CheckOutcome::Failure(class)
}

fn assert_never_echoes_upstream(report: &ConnectionTestReport) {
    let text = serde_json::to_string(report).unwrap();
    assert!(!text.contains(UPSTREAM_BODY_MARKER), "{text}");
    assert!(!text.contains(TOKEN) && !text.contains("pa55"), "{text}");
}

fn stage_names(report: &ConnectionTestReport) -> Vec<&str> {
    report.stages.iter().map(|s| s.name.as_str()).collect()
}

fn last_message(report: &ConnectionTestReport) -> &str {
    &report.stages.last().unwrap().message
}

// ---------------------------------------------------------------- http

#[tokio::test]
async fn http_healthy_and_status_classes() {
    let h = Harness::new();
    let fake = fakes::start(fakes::http_target()).await;
    let with = |config: Value| target("http", &fake).with_configuration(config);

    assert_eq!(
        h.check(&with(json!({"path": "/ok"}))).await,
        CheckOutcome::Success
    );
    assert_eq!(
        h.check(&with(json!({"path": "/ok", "method": "HEAD"})))
            .await,
        CheckOutcome::Success
    );
    assert_eq!(
        h.check(&with(
            json!({"path": "/ok", "method": "POST", "body": {"ping": 1}})
        ))
        .await,
        CheckOutcome::Success
    );
    assert_eq!(
        h.check(&with(json!({"path": "/status/503"}))).await,
        fail(FailureClass::HttpStatus)
    );
    assert_eq!(
        h.check(&with(json!({"path": "/status/404"}))).await,
        fail(FailureClass::HttpStatus)
    );
    assert_eq!(
        h.check(&with(
            json!({"path": "/status/503", "expectedStatus": [503]})
        ))
        .await,
        CheckOutcome::Success
    );
    assert_eq!(
        h.check(&with(json!({"path": "/status/429"}))).await,
        fail(FailureClass::RateLimited)
    );
    // Redirects are followed, up to egress.max_redirects (5).
    assert_eq!(
        h.check(&with(json!({"path": "/redirect/3"}))).await,
        CheckOutcome::Success
    );
    assert_eq!(
        h.check(&with(json!({"path": "/redirect/9"}))).await,
        fail(FailureClass::HttpStatus)
    );
    let report = h.test(&with(json!({"path": "/status/503"}))).await;
    assert_eq!(report.failure_class, Some(FailureClass::HttpStatus));
    assert_eq!(last_message(&report), "HTTP 503 (expected 200-399)");
}

#[tokio::test]
async fn http_header_and_json_assertions() {
    let h = Harness::new();
    let fake = fakes::start(fakes::http_target()).await;
    let with = |config: Value| target("http", &fake).with_configuration(config);
    for (config, expected) in [
        (
            json!({"path": "/json", "jsonPath": {"path": "$.status", "equals": "UP"}}),
            None,
        ),
        (
            json!({"path": "/json", "jsonPath": {"path": "$.checks[*].ok", "equals": true}}),
            None,
        ),
        (
            json!({"path": "/json", "jsonPath": {"path": "$.checks[0].name"}}),
            None,
        ),
        (
            json!({"path": "/json", "header": {"name": "x-service", "contains": "catalog"}}),
            None,
        ),
        (
            json!({"path": "/json", "header": {"name": "X-Service", "equals": "catalog-api/1.2"}}),
            None,
        ),
        (
            json!({"path": "/json", "jsonPath": {"path": "$.status", "equals": "DOWN"}}),
            Some(FailureClass::Assertion),
        ),
        (
            json!({"path": "/json", "jsonPath": {"path": "$.missing"}}),
            Some(FailureClass::Assertion),
        ),
        (
            json!({"path": "/ok", "jsonPath": {"path": "$.status"}}),
            Some(FailureClass::Assertion),
        ),
        (
            json!({"path": "/big", "jsonPath": {"path": "$.status"}}),
            Some(FailureClass::Assertion),
        ),
        (
            json!({"path": "/json", "header": {"name": "x-service", "equals": "other"}}),
            Some(FailureClass::Assertion),
        ),
        (
            json!({"path": "/json", "header": {"name": "x-absent"}}),
            Some(FailureClass::Assertion),
        ),
    ] {
        let outcome = h.check(&with(config.clone())).await;
        let expected = expected.map_or(CheckOutcome::Success, fail);
        assert_eq!(outcome, expected, "{config}");
    }
    let report = h
        .test(&with(
            json!({"path": "/json", "jsonPath": {"path": "$.status", "equals": "DOWN"}}),
        ))
        .await;
    assert_eq!(last_message(&report), "JSON path $.status does not match");
}

#[tokio::test]
async fn http_credentials_from_auth_refs() {
    let h = Harness::new();
    let fake = fakes::start(fakes::github(TOKEN)).await;
    let bearer = target("http", &fake)
        .with_auth_ref("ref://t/any/token")
        .with_configuration(json!({"path": "/user", "authScheme": "bearer"}));
    assert_eq!(h.check(&bearer).await, CheckOutcome::Success);
    let wrong = bearer.clone().with_auth_ref("ref://t/any/wrong-token");
    assert_eq!(h.check(&wrong).await, fail(FailureClass::Auth));

    let header_ref = target("http", &fake).with_configuration(json!({
        "path": "/user",
        "headers": {"Authorization": "ref://t/any/bearer-header", "Accept": "application/json"}
    }));
    // The referenced secret does not exist: config, not a panic.
    assert_eq!(h.check(&header_ref).await, fail(FailureClass::Config));

    // A 401 without credentials is an unexpected status, not an auth failure.
    let anonymous = target("http", &fake).with_configuration(json!({"path": "/user"}));
    assert_eq!(h.check(&anonymous).await, fail(FailureClass::HttpStatus));

    // The connection test: reachability without the credentials, then with them.
    let report = h.test(&bearer).await;
    assert!(report.success, "{report:?}");
    assert_eq!(stage_names(&report), ["dns", "tcp", "http", "auth"]);
    assert_eq!(report.stages[2].message, "HTTP 401");
    assert_eq!(report.stages[3].message, "HTTP 200");
    let report = h.test(&wrong).await;
    assert_eq!(report.failure_class, Some(FailureClass::Auth));
    assert_eq!(last_message(&report), "HTTP 401: credentials rejected");
    let recorded = fake.recorded();
    assert!(recorded.iter().any(|r| r
        .headers
        .get("authorization")
        .is_some_and(|v| v == "Bearer tok-connectors-1")));
}

#[tokio::test]
async fn http_bad_configuration_is_config() {
    let h = Harness::new();
    let fake = fakes::start(fakes::http_target()).await;
    for config in [
        json!({"method": "DELETE"}),
        json!({"expectedStatus": []}),
        json!({"expectedStatus": [99]}),
        json!({"jsonPath": {"path": "$["}}),
        json!({"header": {"equals": "x"}}),
        json!({"headers": {"Host": "evil"}}),
        json!({"headers": {"X-A": 3}}),
        json!({"authScheme": "digest"}),
        json!({"body": "x"}),
    ] {
        let t = target("http", &fake).with_configuration(config.clone());
        assert_eq!(h.check(&t).await, fail(FailureClass::Config), "{config}");
    }
    let no_base_url = Target::new("http", None);
    assert_eq!(h.check(&no_base_url).await, fail(FailureClass::Config));
    let report = h.test(&no_base_url).await;
    assert_eq!(stage_names(&report), ["config"]);
    assert_eq!(last_message(&report), "the integration has no baseUrl");
    let unknown = Target::new("no-such-provider", Some(&fake.url()));
    assert_eq!(h.check(&unknown).await, fail(FailureClass::Config));
    assert_eq!(fake.requests(), 0);
}

#[tokio::test]
async fn network_failures_are_classified() {
    let h = Harness::new();
    // Timeout: a server that accepts and never answers.
    let fake = fakes::start(fakes::http_target()).await;
    fake.control.hang();
    let started = Instant::now();
    let outcome = h.connectors.check(&target("http", &fake), SHORT).await;
    assert_eq!(outcome, fail(FailureClass::Timeout));
    assert!(started.elapsed() < SHORT + Duration::from_secs(2));
    let report = h.connectors.test(&target("http", &fake), SHORT).await;
    assert_eq!(report.failure_class, Some(FailureClass::Timeout));
    assert_eq!(stage_names(&report), ["dns", "tcp", "http"]);
    assert_eq!(last_message(&report), "timed out after 300 ms");

    // Connection refused.
    let port = fakes::closed_port().await;
    let refused = Target::new("http", Some(&format!("http://127.0.0.1:{port}/")));
    assert_eq!(h.check(&refused).await, fail(FailureClass::Connect));
    let report = h.test(&refused).await;
    assert_eq!(stage_names(&report), ["dns", "tcp"]);
    assert_eq!(report.stages[0].message, "address literal, no lookup");
    assert_eq!(last_message(&report), "connection refused");

    // TLS: a plain TCP server speaking garbage to a TLS client.
    let (addr, _server) = fakes::garbage_server().await;
    let tls = Target::new("http", Some(&format!("https://{addr}/")));
    assert_eq!(h.check(&tls).await, fail(FailureClass::Tls));
    let report = h.test(&tls).await;
    assert_eq!(stage_names(&report), ["dns", "tcp", "tls"]);
    assert!(!report.stages[2].success);

    // Garbage to an HTTP client.
    let garbage = Target::new("http", Some(&format!("http://{addr}/")));
    assert_eq!(h.check(&garbage).await, fail(FailureClass::HttpStatus));
}

#[tokio::test]
async fn names_resolve_through_the_resolver_and_unresolvable_names_are_dns() {
    use catalogd::egress::{EgressClient, ResolverOverrides};
    let fake = fakes::start(fakes::http_target()).await;
    let resolver = ResolverOverrides::new()
        .with("fake.test", &["127.0.0.1".parse().unwrap()])
        .with("nothing.test", &[]);
    let egress = EgressClient::new(&EgressConfig {
        allow_private: true,
        ..EgressConfig::default()
    })
    .with_resolver(Arc::new(resolver));
    let connectors = connectors_with(egress, &SecretsConfig::default());
    let port = fake.addr.port();
    let named = Target::new("http", Some(&format!("http://fake.test:{port}/ok")));
    assert_eq!(
        connectors.check(&named, TIMEOUT).await,
        CheckOutcome::Success
    );
    let report = connectors.test(&named, TIMEOUT).await;
    assert_eq!(report.stages[0].message, "resolved 1 address");
    assert!(fake
        .recorded()
        .iter()
        .all(|r| r.headers.get("host").unwrap() == &format!("fake.test:{port}")));
    let nowhere = Target::new("http", Some("http://nothing.test/"));
    assert_eq!(
        connectors.check(&nowhere, TIMEOUT).await,
        fail(FailureClass::Dns)
    );
    let report = connectors.test(&nowhere, TIMEOUT).await;
    assert_eq!(stage_names(&report), ["dns"]);
}

// ---------------------------------------------------------------- tcp

#[tokio::test]
async fn tcp_connects_through_the_policy() {
    let h = Harness::new();
    let fake = fakes::start(fakes::http_target()).await;
    let port = fake.addr.port();
    let tcp = |address: String| {
        Target::new("tcp", None).with_configuration(json!({ "address": address }))
    };
    assert_eq!(
        h.check(&tcp(format!("127.0.0.1:{port}"))).await,
        CheckOutcome::Success
    );
    assert_eq!(
        h.check(&tcp(format!("2130706433:{port}"))).await,
        CheckOutcome::Success
    );
    let closed = fakes::closed_port().await;
    assert_eq!(
        h.check(&tcp(format!("127.0.0.1:{closed}"))).await,
        fail(FailureClass::Connect)
    );
    for bad in ["127.0.0.1", "127.0.0.1:0", "a@b:1", ""] {
        assert_eq!(
            h.check(&tcp(bad.to_owned())).await,
            fail(FailureClass::Config)
        );
    }
    let report = h.test(&tcp(format!("127.0.0.1:{port}"))).await;
    assert!(report.success);
    assert_eq!(stage_names(&report), ["dns", "tcp"]);
    assert_eq!(report.stages[1].message, "connected");
}

// ---------------------------------------------------------------- harbor

#[tokio::test]
async fn harbor_components_and_authenticated_test() {
    let h = Harness::new();
    let unhealthy = Arc::new(AtomicBool::new(false));
    let fake = fakes::start(fakes::harbor(USER_PASSWORD, unhealthy.clone())).await;
    let harbor = target("harbor", &fake).with_auth_ref("ref://t/any/basic");
    assert_eq!(h.check(&harbor).await, CheckOutcome::Success);
    let report = h.test(&harbor).await;
    assert!(report.success, "{report:?}");
    assert_eq!(stage_names(&report), ["dns", "tcp", "http", "auth"]);
    assert_eq!(report.stages[2].message, "all 3 components healthy");

    let wrong = target("harbor", &fake).with_auth_ref("ref://t/any/wrong-basic");
    assert_eq!(h.check(&wrong).await, CheckOutcome::Success);
    let report = h.test(&wrong).await;
    assert_eq!(report.failure_class, Some(FailureClass::Auth));
    assert_eq!(stage_names(&report), ["dns", "tcp", "http", "auth"]);

    unhealthy.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(h.check(&harbor).await, fail(FailureClass::Assertion));
    let report = h.test(&harbor).await;
    assert_eq!(last_message(&report), "component jobservice is unhealthy");
    unhealthy.store(false, std::sync::atomic::Ordering::SeqCst);

    fake.control.fail_with(503, &[]);
    assert_eq!(h.check(&harbor).await, fail(FailureClass::HttpStatus));
    fake.control.fail_with(429, &[("retry-after", "30")]);
    assert_eq!(h.check(&harbor).await, fail(FailureClass::RateLimited));
    fake.control.fail_with(200, &[]);
    assert_eq!(h.check(&harbor).await, fail(FailureClass::Assertion));
}

// ---------------------------------------------------------------- oci-registry

#[tokio::test]
async fn oci_registry_challenge_and_token_exchange() {
    let h = Harness::new();
    let fake = fakes::start(fakes::oci_registry(USER_PASSWORD, TOKEN)).await;
    let registry = target("oci-registry", &fake)
        .with_auth_ref("ref://t/any/basic")
        .with_configuration(json!({"repository": "library/alpine"}));
    // 401 with a Bearer challenge is up.
    assert_eq!(h.check(&registry).await, CheckOutcome::Success);
    let report = h.test(&registry).await;
    assert!(report.success, "{report:?}");
    assert_eq!(stage_names(&report), ["dns", "tcp", "http", "auth"]);
    assert_eq!(report.stages[2].message, "HTTP 401 with a Bearer challenge");
    assert_eq!(report.stages[3].message, "authenticated: HTTP 200");
    let token_request = fake
        .recorded()
        .into_iter()
        .find(|r| r.path_and_query.starts_with("/token"))
        .unwrap();
    assert_eq!(
        token_request.path_and_query,
        "/token?service=fake-registry&scope=repository%3Alibrary%2Falpine%3Apull"
    );

    let wrong = registry.clone().with_auth_ref("ref://t/any/wrong-basic");
    let report = h.test(&wrong).await;
    assert_eq!(report.failure_class, Some(FailureClass::Auth));
    assert_eq!(stage_names(&report), ["dns", "tcp", "http", "auth"]);

    // A 401 without a challenge is not a registry.
    fake.control.fail_with(401, &[]);
    assert_eq!(h.check(&registry).await, fail(FailureClass::HttpStatus));
    fake.control.fail_with(502, &[]);
    assert_eq!(h.check(&registry).await, fail(FailureClass::HttpStatus));
    fake.control.fail_with(429, &[]);
    assert_eq!(h.check(&registry).await, fail(FailureClass::RateLimited));
    fake.control.fail_with(200, &[]);
    assert_eq!(h.check(&registry).await, CheckOutcome::Success);
    let report = h.test(&registry).await;
    assert_eq!(report.stages[3].message, "registry needs no authentication");
}

// ---------------------------------------------------------------- github-app

#[tokio::test]
async fn github_app_jwt_is_verified_by_the_server() {
    let h = Harness::new();
    let seen = Arc::new(Mutex::new(None));
    let fake = fakes::start(fakes::github_app(json!(424242), seen.clone())).await;
    let app = target("github-app", &fake)
        .with_auth_ref("ref://t/any/app-key")
        .with_configuration(json!({"appId": 424242}));
    assert_eq!(h.check(&app).await, CheckOutcome::Success);
    let jwt = seen.lock().unwrap().clone().unwrap();
    assert_eq!(jwt.iss, Some(json!(424242)));
    assert!((55..=65).contains(&(jwt.verified_at - jwt.iat)), "{jwt:?}");
    assert!(
        jwt.exp > jwt.verified_at && jwt.exp - jwt.verified_at <= 600,
        "{jwt:?}"
    );
    let report = h.test(&app).await;
    assert!(report.success, "{report:?}");
    assert_eq!(stage_names(&report), ["dns", "tcp", "http", "auth"]);

    // The wrong app id is refused by the server: auth.
    let other = app.clone().with_configuration(json!({"appId": 7}));
    assert_eq!(h.check(&other).await, fail(FailureClass::Auth));
    // Our side's problems are config.
    for bad in [
        app.clone().with_configuration(json!({})),
        app.clone().with_configuration(json!({"appId": true})),
        app.clone().with_auth_ref("ref://t/any/not-a-key"),
        app.clone().with_auth_ref("ref://t/any/missing"),
        Target::new("github-app", Some(&fake.url())).with_configuration(json!({"appId": 1})),
    ] {
        assert_eq!(h.check(&bad).await, fail(FailureClass::Config), "{bad:?}");
    }
    let report = h
        .test(&Target::new("github-app", Some(&fake.url())).with_configuration(json!({"appId": 1})))
        .await;
    assert_eq!(stage_names(&report), ["dns", "tcp", "http", "auth"]);
    assert_eq!(last_message(&report), "this provider needs an authRef");

    // GitHub's answers told apart.
    for (status, headers, class) in [
        (401, vec![], FailureClass::Auth),
        (403, vec![], FailureClass::Auth),
        (
            403,
            vec![("x-ratelimit-remaining", "0")],
            FailureClass::RateLimited,
        ),
        (403, vec![("retry-after", "60")], FailureClass::RateLimited),
        (429, vec![], FailureClass::RateLimited),
        (404, vec![], FailureClass::HttpStatus),
        (500, vec![], FailureClass::HttpStatus),
        (503, vec![], FailureClass::HttpStatus),
    ] {
        fake.control.fail_with(status, &headers);
        assert_eq!(h.check(&app).await, fail(class), "{status} {headers:?}");
    }
}

// ---------------------------------------------------------------- github, gitlab, gitea, jenkins

#[tokio::test]
async fn github_token() {
    let h = Harness::new();
    let fake = fakes::start(fakes::github(TOKEN)).await;
    let github = target("github", &fake).with_auth_ref("ref://t/any/token");
    assert_eq!(h.check(&github).await, CheckOutcome::Success);
    let report = h.test(&github).await;
    assert!(report.success, "{report:?}");
    assert!(fake.recorded().iter().any(|r| r.path_and_query == "/user"));
    let wrong = github.clone().with_auth_ref("ref://t/any/wrong-token");
    assert_eq!(h.check(&wrong).await, fail(FailureClass::Auth));
    fake.control
        .fail_with(403, &[("x-ratelimit-remaining", "0")]);
    assert_eq!(h.check(&github).await, fail(FailureClass::RateLimited));
    fake.control.fail_with(500, &[]);
    assert_eq!(h.check(&github).await, fail(FailureClass::HttpStatus));
}

#[tokio::test]
async fn gitlab_private_token() {
    let h = Harness::new();
    let fake = fakes::start(fakes::gitlab(TOKEN)).await;
    let gitlab = target("gitlab", &fake).with_auth_ref("ref://t/any/token");
    assert_eq!(h.check(&gitlab).await, CheckOutcome::Success);
    // Without an AuthRef, GitLab's 401 still shows it is up.
    assert_eq!(
        h.check(&target("gitlab", &fake)).await,
        CheckOutcome::Success
    );
    let wrong = gitlab.clone().with_auth_ref("ref://t/any/wrong-token");
    assert_eq!(h.check(&wrong).await, fail(FailureClass::Auth));
    let report = h.test(&wrong).await;
    assert_eq!(stage_names(&report), ["dns", "tcp", "http", "auth"]);
    assert_eq!(report.failure_class, Some(FailureClass::Auth));
    assert!(fake
        .recorded()
        .iter()
        .any(|r| r.headers.get("private-token").is_some_and(|v| v == TOKEN)));
}

#[tokio::test]
async fn gitea_token_optional() {
    let h = Harness::new();
    let fake = fakes::start(fakes::gitea(TOKEN)).await;
    let anonymous = target("gitea", &fake);
    assert_eq!(h.check(&anonymous).await, CheckOutcome::Success);
    let report = h.test(&anonymous).await;
    assert_eq!(stage_names(&report), ["dns", "tcp", "http"]);
    let with_token = anonymous.clone().with_auth_ref("ref://t/any/token");
    let report = h.test(&with_token).await;
    assert!(report.success, "{report:?}");
    assert_eq!(stage_names(&report), ["dns", "tcp", "http", "auth"]);
    let wrong = anonymous.clone().with_auth_ref("ref://t/any/wrong-token");
    let report = h.test(&wrong).await;
    assert_eq!(report.failure_class, Some(FailureClass::Auth));
    fake.control.fail_with(200, &[]);
    assert_eq!(h.check(&anonymous).await, fail(FailureClass::Assertion));
}

#[tokio::test]
async fn jenkins_basic_auth() {
    let h = Harness::new();
    let fake = fakes::start(fakes::jenkins(USER_PASSWORD)).await;
    let jenkins = target("jenkins", &fake).with_auth_ref("ref://t/any/basic");
    assert_eq!(h.check(&jenkins).await, CheckOutcome::Success);
    assert_eq!(
        h.check(&target("jenkins", &fake)).await,
        CheckOutcome::Success
    );
    let wrong = target("jenkins", &fake).with_auth_ref("ref://t/any/wrong-basic");
    assert_eq!(h.check(&wrong).await, fail(FailureClass::Auth));
    // Not Jenkins: no X-Jenkins header.
    fake.control.fail_with(200, &[]);
    assert_eq!(h.check(&jenkins).await, fail(FailureClass::Assertion));
}

// ---------------------------------------------------------------- in-memory

#[tokio::test]
async fn in_memory_script_cycles() {
    let h = Harness::new();
    let scripted = Target::new("in-memory", None).with_configuration(json!({
        "script": ["success", "failure:http_status", "timeout", "skipped", "failure:rate_limited"]
    }));
    let mut outcomes = Vec::new();
    for _ in 0..6 {
        outcomes.push(h.check(&scripted).await);
    }
    assert_eq!(
        outcomes,
        [
            CheckOutcome::Success,
            fail(FailureClass::HttpStatus),
            fail(FailureClass::Timeout),
            CheckOutcome::Skipped,
            fail(FailureClass::RateLimited),
            CheckOutcome::Success,
        ]
    );
    let report = h.test(&scripted).await;
    assert_eq!(report.failure_class, Some(FailureClass::HttpStatus));
    assert_eq!(stage_names(&report), ["script"]);
    let hanging = Target::new("in-memory", None).with_configuration(json!({"script": ["hang"]}));
    assert_eq!(
        h.connectors.check(&hanging, SHORT).await,
        fail(FailureClass::Timeout)
    );
    let bad = Target::new("in-memory", None).with_configuration(json!({"script": ["maybe"]}));
    assert_eq!(h.check(&bad).await, fail(FailureClass::Config));
    assert_eq!(
        h.check(&Target::new("in-memory", None)).await,
        CheckOutcome::Success
    );
}

#[tokio::test]
async fn probe_trait_reaches_the_connectors() {
    let h = Harness::new();
    let probe: Arc<dyn Probe<Target>> = Arc::new(h.connectors.clone());
    let scripted =
        Target::new("in-memory", None).with_configuration(json!({"script": ["failure:dns"]}));
    assert_eq!(
        probe.check(&scripted, TIMEOUT).await,
        fail(FailureClass::Dns)
    );
}

// ---------------------------------------------------------------- declarative providers

/// A built-in declarative provider against a fake of its vendor's documented API.
struct BuiltinCase {
    provider: &'static str,
    fake: fn() -> axum::Router,
    /// Appended to the fake's URL to make the base URL (an organization, a context path).
    base_path: &'static str,
    configuration: Value,
    auth_ref: &'static str,
    wrong_auth_ref: &'static str,
    /// The request path (with query) the check sends.
    check_path: &'static str,
    /// The header that carries the credential, and its value.
    credential: (&'static str, String),
    /// Vendor-specific statuses and what they mean.
    extra: &'static [(u16, FailureClass)],
}

fn bearer() -> (&'static str, String) {
    ("authorization", format!("Bearer {TOKEN}"))
}

fn basic_header(user_password: &str) -> (&'static str, String) {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
    ("authorization", format!("Basic {encoded}"))
}

fn builtin_cases() -> Vec<BuiltinCase> {
    vec![
        BuiltinCase {
            provider: "artifactory",
            fake: || fakes::artifactory(TOKEN),
            base_path: "",
            configuration: json!({}),
            auth_ref: "ref://t/any/token",
            wrong_auth_ref: "ref://t/any/wrong-token",
            check_path: "/artifactory/api/system/ping",
            credential: bearer(),
            extra: &[],
        },
        BuiltinCase {
            provider: "nexus",
            fake: || fakes::nexus(USER_PASSWORD),
            base_path: "",
            configuration: json!({}),
            auth_ref: "ref://t/any/basic",
            wrong_auth_ref: "ref://t/any/wrong-basic",
            check_path: "/service/rest/v1/status",
            credential: basic_header(USER_PASSWORD),
            extra: &[],
        },
        BuiltinCase {
            provider: "sonarqube",
            fake: || fakes::sonarqube(TOKEN, Arc::new(Mutex::new("UP".to_owned()))),
            base_path: "",
            configuration: json!({}),
            auth_ref: "ref://t/any/token",
            wrong_auth_ref: "ref://t/any/wrong-token",
            check_path: "/api/system/status",
            credential: bearer(),
            extra: &[],
        },
        BuiltinCase {
            provider: "bitbucket",
            fake: || fakes::bitbucket_cloud(TOKEN),
            base_path: "",
            configuration: json!({"edition": "cloud"}),
            auth_ref: "ref://t/any/token",
            wrong_auth_ref: "ref://t/any/wrong-token",
            check_path: "/2.0/user",
            credential: bearer(),
            extra: &[],
        },
        BuiltinCase {
            provider: "bitbucket",
            fake: || fakes::bitbucket_datacenter(TOKEN),
            base_path: "",
            // Not api.bitbucket.org and no edition: Data Center.
            configuration: json!({}),
            auth_ref: "ref://t/any/token",
            wrong_auth_ref: "ref://t/any/wrong-token",
            check_path: "/rest/api/1.0/projects?limit=1",
            credential: bearer(),
            extra: &[],
        },
        BuiltinCase {
            provider: "azure-devops",
            fake: || fakes::azure_devops("fabrikam", TOKEN),
            base_path: "/fabrikam",
            configuration: json!({}),
            auth_ref: "ref://t/any/pat",
            wrong_auth_ref: "ref://t/any/wrong-pat",
            check_path: "/fabrikam/_apis/projects?api-version=7.1&$top=1",
            credential: basic_header(&format!(":{TOKEN}")),
            // A bad PAT gets 203 and a sign-in page.
            extra: &[(203, FailureClass::Auth)],
        },
        BuiltinCase {
            provider: "circleci",
            fake: || fakes::circleci(TOKEN),
            base_path: "",
            configuration: json!({}),
            auth_ref: "ref://t/any/token",
            wrong_auth_ref: "ref://t/any/wrong-token",
            check_path: "/api/v2/me",
            credential: ("circle-token", TOKEN.to_owned()),
            extra: &[],
        },
        BuiltinCase {
            provider: "github-actions",
            fake: || fakes::github_actions("octo-org", "hello-world", TOKEN),
            base_path: "",
            configuration: json!({"owner": "octo-org", "repo": "hello-world"}),
            auth_ref: "ref://t/any/token",
            wrong_auth_ref: "ref://t/any/wrong-token",
            check_path: "/repos/octo-org/hello-world/actions/runs?per_page=1",
            credential: bearer(),
            extra: &[],
        },
        BuiltinCase {
            provider: "gitlab-ci",
            fake: || fakes::gitlab_ci("group/project", TOKEN),
            base_path: "",
            configuration: json!({"project": "group/project"}),
            auth_ref: "ref://t/any/token",
            wrong_auth_ref: "ref://t/any/wrong-token",
            check_path: "/api/v4/projects/group%2Fproject/pipelines?per_page=1",
            credential: ("private-token", TOKEN.to_owned()),
            extra: &[],
        },
    ]
}

/// Every built-in declarative provider, without any plugin file: healthy with its credential
/// where the vendor documents it, and each failure class (`auth` for a wrong credential and
/// for 401/403, `rate_limited` for 429 with Retry-After, `http_status` otherwise), on the
/// check and the connection test alike.
#[tokio::test]
async fn builtin_declarative_providers_against_their_vendors_apis() {
    let h = Harness::new();
    for case in builtin_cases() {
        let name = format!("{} {}", case.provider, case.check_path);
        assert!(h.connectors.providers().contains(case.provider), "{name}");
        let fake = fakes::start((case.fake)()).await;
        let base = format!("{}{}", fake.url(), case.base_path);
        let good = Target::new(case.provider, Some(&base))
            .with_configuration(case.configuration.clone())
            .with_auth_ref(case.auth_ref);

        assert_eq!(h.check(&good).await, CheckOutcome::Success, "{name}");
        let request = fake.recorded().pop().expect("the check reached the fake");
        assert_eq!(request.path_and_query, case.check_path, "{name}");
        let (header, value) = &case.credential;
        assert_eq!(
            request.headers.get(*header).and_then(|v| v.to_str().ok()),
            Some(value.as_str()),
            "{name}: the credential in {header}"
        );
        let report = h.test(&good).await;
        assert!(report.success, "{name}: {report:?}");
        assert_eq!(
            stage_names(&report),
            ["dns", "tcp", "http", "auth"],
            "{name}"
        );

        let wrong = good.clone().with_auth_ref(case.wrong_auth_ref);
        assert_eq!(h.check(&wrong).await, fail(FailureClass::Auth), "{name}");
        assert_eq!(
            h.test(&wrong).await.failure_class,
            Some(FailureClass::Auth),
            "{name}"
        );

        let extra = case
            .extra
            .iter()
            .map(|(status, class)| (*status, vec![], *class));
        for (status, headers, class) in [
            (401, vec![], FailureClass::Auth),
            (403, vec![], FailureClass::Auth),
            (429, vec![("retry-after", "30")], FailureClass::RateLimited),
            (
                403,
                vec![("x-ratelimit-remaining", "0")],
                FailureClass::RateLimited,
            ),
            (404, vec![], FailureClass::HttpStatus),
            (500, vec![], FailureClass::HttpStatus),
            (503, vec![("retry-after", "5")], FailureClass::HttpStatus),
        ]
        .into_iter()
        .chain(extra)
        {
            fake.control.fail_with(status, &headers);
            assert_eq!(
                h.check(&good).await,
                fail(class),
                "{name}: {status} {headers:?}"
            );
            assert_eq!(
                h.test(&good).await.failure_class,
                Some(class),
                "{name}: test, {status} {headers:?}"
            );
        }
        fake.control.heal();
        assert_eq!(h.check(&good).await, CheckOutcome::Success, "{name} healed");
    }
}

#[tokio::test]
async fn builtin_providers_say_what_they_lack() {
    let h = Harness::new();
    let fake = fakes::start(fakes::anything()).await;
    // Providers that need a credential refuse to run without an AuthRef.
    for provider in ["bitbucket", "azure-devops", "circleci"] {
        let t = target(provider, &fake);
        assert_eq!(h.check(&t).await, fail(FailureClass::Config), "{provider}");
    }
    // The repository and the project come from the configuration.
    let t = target("github-actions", &fake).with_auth_ref("ref://t/any/token");
    assert_eq!(h.check(&t).await, fail(FailureClass::Config));
    let t = target("gitlab-ci", &fake).with_auth_ref("ref://t/any/token");
    assert_eq!(h.check(&t).await, fail(FailureClass::Config));
    let t = target("bitbucket", &fake)
        .with_auth_ref("ref://t/any/token")
        .with_configuration(json!({"edition": "server-2000"}));
    assert_eq!(h.check(&t).await, fail(FailureClass::Config));
    assert_eq!(fake.requests(), 0);
}

#[tokio::test]
async fn builtin_provider_specifics() {
    let h = Harness::new();
    // SonarQube answers a bad token on validate with 200 {"valid": false}: the condition says
    // auth; a server not UP is an assertion failure.
    let status = Arc::new(Mutex::new("UP".to_owned()));
    let fake = fakes::start(fakes::sonarqube(TOKEN, status.clone())).await;
    let sonar = target("sonarqube", &fake).with_auth_ref("ref://t/any/token");
    let anonymous = target("sonarqube", &fake);
    assert_eq!(h.check(&anonymous).await, CheckOutcome::Success);
    *status.lock().unwrap() = "DB_MIGRATION_NEEDED".to_owned();
    assert_eq!(h.check(&sonar).await, fail(FailureClass::Assertion));
    // Artifactory's ping must say OK.
    let fake = fakes::start(fakes::artifactory(TOKEN)).await;
    let artifactory = target("artifactory", &fake).with_auth_ref("ref://t/any/token");
    fake.control.fail_with(200, &[]);
    assert_eq!(h.check(&artifactory).await, fail(FailureClass::Assertion));
}

/// `plugins.directory` still adds providers and replaces a built-in declarative one of the
/// same name; a provider written in code cannot be replaced.
#[tokio::test]
async fn a_plugin_replaces_a_builtin_declarative_provider() {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::write(
        plugins.path().join("nexus.toml"),
        "name = \"nexus\"\n[request]\npath = \"/service/rest/v1/status/writable\"\n",
    )
    .unwrap();
    let h = Harness::with(OfflineConfig::default(), Some(plugins.path().to_owned()));
    let fake = fakes::start(fakes::anything()).await;
    assert_eq!(
        h.check(&target("nexus", &fake)).await,
        CheckOutcome::Success
    );
    assert_eq!(
        fake.recorded().pop().unwrap().path_and_query,
        "/service/rest/v1/status/writable"
    );
    assert_eq!(
        h.connectors
            .providers()
            .names()
            .filter(|n| *n == "nexus")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_new_provider_needs_only_a_file() {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::write(
        plugins.path().join("acme.toml"),
        r#"
name = "acme-ci"
requires_auth = true

[request]
path = "/api/{{config.project}}/health"
headers = { "X-Api-Key" = "{{secret}}", Accept = "application/json" }

[expect]
status = [200]
json = [{ path = "$.healthy", equals = true }]
"#,
    )
    .unwrap();
    std::fs::write(plugins.path().join("README.md"), "not a definition").unwrap();
    let h = Harness::with(OfflineConfig::default(), Some(plugins.path().to_owned()));
    assert!(h.connectors.providers().contains("acme-ci"));
    assert!(h.connectors.providers().needs_base_url("acme-ci"));

    let router = axum::Router::new().route(
        "/api/{project}/health",
        axum::routing::get(
            |axum::extract::Path(project): axum::extract::Path<String>,
             headers: axum::http::HeaderMap| async move {
                let key_ok = headers.get("x-api-key").is_some_and(|v| v == TOKEN);
                axum::Json(json!({"healthy": key_ok && project == "a b"}))
            },
        ),
    );
    let fake = fakes::start(router).await;
    let acme = target("acme-ci", &fake)
        .with_auth_ref("ref://t/any/token")
        .with_configuration(json!({"project": "a b"}));
    assert_eq!(h.check(&acme).await, CheckOutcome::Success);
    assert!(fake
        .recorded()
        .iter()
        .any(|r| r.path_and_query == "/api/a%20b/health"));
    let wrong = acme.clone().with_auth_ref("ref://t/any/wrong-token");
    assert_eq!(h.check(&wrong).await, fail(FailureClass::Assertion));
    let without = target("acme-ci", &fake).with_configuration(json!({"project": "a b"}));
    assert_eq!(h.check(&without).await, fail(FailureClass::Config));
    let no_project = target("acme-ci", &fake).with_auth_ref("ref://t/any/token");
    assert_eq!(h.check(&no_project).await, fail(FailureClass::Config));
}

#[test]
fn bad_or_clashing_definitions_fail_start_up() {
    for (file, needle) in [
        (
            "name = \"harbor\"\n[request]\npath = \"/\"\n",
            "already defined",
        ),
        (
            "name = \"x\"\n[request]\npath = \"/\"\nauth = \"kerberos\"\n",
            "kerberos",
        ),
    ] {
        let plugins = tempfile::tempdir().unwrap();
        std::fs::write(plugins.path().join("p.toml"), file).unwrap();
        let error = Connectors::new(
            &EgressConfig::default(),
            &OfflineConfig::default(),
            &PluginsConfig {
                directory: plugins.path().to_owned(),
            },
            &SecretsConfig::default(),
            Arc::new(SystemClock),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("p.toml") && error.contains(needle),
            "{error}"
        );
    }
}

// ---------------------------------------------------------------- offline mode

#[tokio::test]
async fn offline_mode_skips_without_touching_the_network() {
    let fake = fakes::start(fakes::http_target()).await;
    let offline = OfflineConfig {
        enabled: true,
        feed_allowlist: vec!["LOCALHOST.".to_owned()],
    };
    let h = Harness::with(offline, None);
    let skipped = [
        target("http", &fake),
        target("harbor", &fake).with_auth_ref("ref://t/any/basic"),
        target("github-app", &fake),
        target("http", &fake).with_kind(IntegrationType::Feed),
        Target::new("tcp", None).with_configuration(json!({"address": fake.addr.to_string()})),
    ];
    for t in &skipped {
        assert_eq!(h.check(t).await, CheckOutcome::Skipped, "{t:?}");
        let report = h.test(t).await;
        assert!(report.skipped && !report.success && report.failure_class.is_none());
        assert!(report
            .stages
            .iter()
            .all(|s| !s.success && s.message == "skipped: offline mode"));
    }
    let report = h.test(&skipped[1]).await;
    assert_eq!(stage_names(&report), ["dns", "tcp", "http", "auth"]);
    assert_eq!(fake.requests(), 0);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["skipped"], json!(true));

    // A feed on an allowlisted host is still checked.
    let port = fake.addr.port();
    let feed = Target::new("http", Some(&format!("http://localhost:{port}/ok")))
        .with_kind(IntegrationType::Feed);
    assert_eq!(h.check(&feed).await, CheckOutcome::Success);
    assert_eq!(fake.requests(), 1);
    // In-memory integrations never touch the network and keep running.
    let memory = Target::new("in-memory", None);
    assert_eq!(h.check(&memory).await, CheckOutcome::Success);
}

// ---------------------------------------------------------------- secrets and reports

#[tokio::test]
async fn unresolvable_auth_ref_is_config_not_a_panic() {
    let h = Harness::new();
    let fake = fakes::start(fakes::anything()).await;
    for provider in [
        "github",
        "gitlab",
        "jenkins",
        "github-app",
        "harbor",
        "oci-registry",
        "gitea",
    ] {
        let t = target(provider, &fake)
            .with_auth_ref("ref://t/any/absent")
            .with_configuration(json!({"appId": 1}));
        let report = h.test(&t).await;
        assert_eq!(
            report.failure_class,
            Some(FailureClass::Config),
            "{provider} {report:?}"
        );
        let message = last_message(&report);
        assert!(
            message.contains("ref://t/any/absent") && message.contains("not resolvable"),
            "{message}"
        );
    }
    for provider in ["github", "gitlab", "jenkins", "github-app"] {
        let t = target(provider, &fake)
            .with_auth_ref("ref://t/any/absent")
            .with_configuration(json!({"appId": 1}));
        assert_eq!(h.check(&t).await, fail(FailureClass::Config), "{provider}");
    }
}

#[tokio::test]
async fn report_wire_format() {
    let h = Harness::new();
    let fake = fakes::start(fakes::http_target()).await;
    let ok = target("http", &fake).with_configuration(json!({"path": "/ok"}));
    let report = h.test(&ok).await;
    let json = serde_json::to_value(&report).unwrap();
    let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["failureClass", "latencyMs", "stages", "success", "testedAt"]
    );
    assert_eq!(json["failureClass"], Value::Null);
    let stage = json["stages"][0].as_object().unwrap();
    let mut keys: Vec<_> = stage.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["durationMs", "message", "name", "success"]);
    assert!(json["testedAt"].as_str().unwrap().ends_with('Z'));
    let failed = h
        .test(&target("http", &fake).with_configuration(json!({"path": "/status/500"})))
        .await;
    assert_eq!(
        serde_json::to_value(&failed).unwrap()["failureClass"],
        json!("http_status")
    );
}

#[tokio::test]
async fn tls_certificates_are_verified() {
    use catalogd::egress::{tls_config, EgressClient, ResolverOverrides};
    let (addr, _server) = fakes::tls_server().await;
    let port = addr.port();
    // The default trust store does not know the test CA.
    let h = Harness::new();
    let by_ip = Target::new("http", Some(&format!("https://127.0.0.1:{port}/")));
    assert_eq!(h.check(&by_ip).await, fail(FailureClass::Tls));
    let report = h.test(&by_ip).await;
    assert_eq!(stage_names(&report), ["dns", "tcp", "tls"]);
    assert_eq!(last_message(&report), "certificate not trusted");

    // Trusting it, the same server is healthy; under another name it is a mismatch.
    let resolver = ResolverOverrides::new()
        .with("tls.test", &["127.0.0.1".parse().unwrap()])
        .with("wrong.test", &["127.0.0.1".parse().unwrap()]);
    let egress = EgressClient::new(&EgressConfig {
        allow_private: true,
        ..EgressConfig::default()
    })
    .with_resolver(Arc::new(resolver))
    .with_tls_config(Arc::new(tls_config(fakes::tls_roots())));
    let connectors = connectors_with(egress, &SecretsConfig::default());
    for url in [
        format!("https://127.0.0.1:{port}/"),
        format!("https://tls.test:{port}/"),
    ] {
        let report = connectors
            .test(&Target::new("http", Some(&url)), TIMEOUT)
            .await;
        assert!(report.success, "{url}: {report:?}");
        assert_eq!(stage_names(&report), ["dns", "tcp", "tls", "http"]);
        assert!(report.stages[2].message.ends_with("handshake complete"));
    }
    let wrong = Target::new("http", Some(&format!("https://wrong.test:{port}/")));
    assert_eq!(
        connectors.check(&wrong, TIMEOUT).await,
        fail(FailureClass::Tls)
    );
    let report = connectors.test(&wrong, TIMEOUT).await;
    assert_eq!(
        last_message(&report),
        "certificate does not match the host name"
    );
}
