//! The NATS control service against a real `nats-server`: the same answers as REST for the
//! same requests (every endpoint × token × tenant, plus conflicts and validation), discovery
//! under `$SRV`, and two daemons sharing the queue group.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::helpers::{self, Backend};
use async_nats::HeaderMap;
use catalogd::app::App as AppState;
use catalogd::auth::{SCOPE_ADMIN, SCOPE_READ};
use catalogd::control::Operation;
use catalogd::control::{self, ControlService};
use catalogd::startup::Application;
use catalogd_testkit::{eventually, NatsServer};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// A daemon (REST on a random port) with a control service on a test NATS server.
struct ControlApp {
    address: String,
    http: reqwest::Client,
    state: AppState,
    nats: async_nats::Client,
    control: Option<ControlService>,
    _shutdown: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl ControlApp {
    /// Offline mode keeps connection tests and checks off the network; the daemon's own NATS
    /// connection is off, so the only control service is the one started here.
    async fn spawn(backend: Backend, nats_url: &str) -> ControlApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = helpers::test_config(backend, dir.path()).await;
        config.offline.enabled = true;
        config.nats.url = String::new();
        let app = Application::build(&config)
            .await
            .expect("application builds");
        let state = app.state().clone();
        let address = format!("http://127.0.0.1:{}", app.port());
        let (shutdown, stopped) = oneshot::channel();
        tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let nats = async_nats::connect(nats_url)
            .await
            .expect("connect to NATS");
        let control = control::start(nats.clone(), state.clone())
            .await
            .expect("control service starts");
        ControlApp {
            address,
            http: reqwest::Client::new(),
            state,
            nats,
            control: Some(control),
            _shutdown: shutdown,
            _dir: dir,
        }
    }

    fn token(&self, who: Who) -> Option<String> {
        let mint = |tenant: &str, scopes: &[&str], ttl: u64, now| {
            let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
            self.state
                .auth
                .mint(tenant, "op", &scopes, Duration::from_secs(ttl), now)
                .unwrap()
        };
        let now = chrono::Utc::now();
        match who {
            Who::Reader => Some(mint(TENANT, &[SCOPE_READ], 3600, now)),
            Who::Admin => Some(mint(TENANT, &[SCOPE_ADMIN], 3600, now)),
            Who::Nobody => None,
            Who::BadToken => Some("garbage".to_owned()),
            Who::Expired => Some(mint(
                TENANT,
                &[SCOPE_ADMIN, SCOPE_READ],
                60,
                now - chrono::Duration::hours(3),
            )),
            Who::OtherAdmin => Some(mint(OTHER_TENANT, &[SCOPE_ADMIN], 3600, now)),
        }
    }

    async fn rest(&self, method: reqwest::Method, path: &str, token: Option<&str>) -> Answer {
        self.rest_with(method, path, token, None).await
    }

    async fn rest_with(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status < 300 {
            Answer::Ok(body)
        } else {
            Answer::Error {
                status,
                error: format!(
                    "{}: {}",
                    body["code"].as_str().unwrap(),
                    body["detail"].as_str().unwrap()
                ),
            }
        }
    }

    async fn nats(&self, endpoint: &str, token: Option<&str>, payload: &Value) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            headers.insert("Authorization", format!("Bearer {token}").as_str());
        }
        let message = self
            .nats
            .request_with_headers(
                format!("integrations.control.{endpoint}"),
                headers,
                payload.to_string().into(),
            )
            .await
            .expect("a reply");
        nats_answer(&message)
    }

    /// A new integration of `tenant` (through REST), brought into `state`.
    async fn fixture(&self, tenant: Tenant, state: Fixture, name: &str) -> String {
        let who = match tenant {
            Tenant::Own => Who::Admin,
            Tenant::Other => Who::OtherAdmin,
        };
        let token = self.token(who).unwrap();
        let Answer::Ok(created) = self
            .rest_with(
                reqwest::Method::POST,
                "/api/v1/integrations",
                Some(&token),
                Some(&helpers::integration(name)),
            )
            .await
        else {
            panic!("create {name}");
        };
        let id = created["integrationId"].as_str().unwrap().to_owned();
        let mut steps = Vec::new();
        if matches!(state, Fixture::Active | Fixture::Paused) {
            steps.push(("activate", None));
        }
        if state == Fixture::Paused {
            steps.push(("pause", Some(json!({"reason": "maintenance"}))));
        }
        for (step, body) in steps {
            let path = format!("/api/v1/integrations/{id}/{step}");
            let answer = self
                .rest_with(reqwest::Method::POST, &path, Some(&token), body.as_ref())
                .await;
            assert!(matches!(answer, Answer::Ok(_)), "{step} {name}: {answer:?}");
        }
        id
    }
}

/// A reply: the body of a success, or the status and `code: detail` of an error.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Ok(Value),
    Error { status: u16, error: String },
}

impl Answer {
    fn status(&self) -> u16 {
        match self {
            Answer::Ok(_) => 200,
            Answer::Error { status, .. } => *status,
        }
    }

    /// Without the fields that differ between two calls or two fixtures.
    fn normalized(&self) -> Answer {
        const VOLATILE: &[&str] = &[
            "integrationId",
            "name",
            "createdAt",
            "modifiedAt",
            "lastTestedAt",
            "testedAt",
            "checkedAt",
            "latencyMs",
            "durationMs",
        ];
        fn strip(value: &mut Value) {
            match value {
                Value::Object(map) => {
                    map.retain(|key, _| !VOLATILE.contains(&key.as_str()));
                    map.values_mut().for_each(strip);
                }
                Value::Array(items) => items.iter_mut().for_each(strip),
                _ => {}
            }
        }
        match self {
            Answer::Ok(body) => {
                let mut body = body.clone();
                strip(&mut body);
                Answer::Ok(body)
            }
            // A JSON error's position is in the request body, which differs by transport
            // (the NATS payload also carries `integrationId`).
            Answer::Error { status, error } => Answer::Error {
                status: *status,
                error: match (error.find(" (line "), error.rfind(')')) {
                    (Some(start), Some(end)) if end > start => {
                        format!("{}{}", &error[..start], &error[end + 1..])
                    }
                    _ => error.clone(),
                },
            },
        }
    }
}

fn nats_answer(message: &async_nats::Message) -> Answer {
    let header = |name| {
        message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(name))
            .map(|value| value.as_str().to_owned())
    };
    match header("Nats-Service-Error-Code") {
        Some(status) => {
            assert!(message.payload.is_empty(), "an error has no payload");
            Answer::Error {
                status: status.parse().unwrap(),
                error: header("Nats-Service-Error").expect("Nats-Service-Error"),
            }
        }
        None => Answer::Ok(serde_json::from_slice(&message.payload).expect("a JSON reply")),
    }
}

/// How long the tests wait for an answer that must come.
const DEADLINE: Duration = Duration::from_secs(10);

const TENANT: &str = "acme";
const OTHER_TENANT: &str = "globex";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Reader,
    Admin,
    Nobody,
    BadToken,
    Expired,
    /// Only for making the other tenant's fixtures.
    OtherAdmin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tenant {
    Own,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fixture {
    Draft,
    Active,
    Paused,
}

/// One request, sent to REST and to NATS.
#[derive(Debug, Clone)]
struct Case {
    operation: Operation,
    who: Who,
    tenant: Tenant,
    /// The state of the integration the request names.
    fixture: Fixture,
    /// The REST body (also the NATS payload, with `integrationId`).
    body: Option<Value>,
    /// `None`: a fresh fixture; `Some`: this raw id instead (malformed or unknown).
    raw_id: Option<&'static str>,
    expected: u16,
}

impl Case {
    fn mutates(&self) -> bool {
        !matches!(
            self.operation,
            Operation::List | Operation::Get | Operation::Health
        )
    }
}

/// The state in which an admin's request succeeds, and the body it sends.
fn happy_path(operation: Operation) -> (Fixture, Option<Value>) {
    match operation {
        Operation::Pause => (
            Fixture::Active,
            Some(json!({"reason": "maintenance", "ticket": "CHG-1"})),
        ),
        Operation::Resume => (
            Fixture::Paused,
            Some(json!({"reason": "maintenance over", "ticket": "CHG-2"})),
        ),
        Operation::Activate => (Fixture::Draft, Some(json!({"comment": "approved"}))),
        _ => (Fixture::Draft, None),
    }
}

/// REST's rules, which the control service must follow: a token first (401), then the
/// scope (403), then the tenant (404).
fn expected(operation: Operation, who: Who, tenant: Tenant) -> u16 {
    let read_only = operation.scope() == catalogd::auth::Scope::Read;
    match who {
        Who::Nobody | Who::BadToken | Who::Expired => 401,
        Who::Reader if !read_only => 403,
        _ if tenant == Tenant::Other && operation != Operation::List => 404,
        _ => 200,
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for operation in Operation::ALL {
        let (fixture, body) = happy_path(operation);
        for who in [
            Who::Reader,
            Who::Admin,
            Who::Nobody,
            Who::BadToken,
            Who::Expired,
        ] {
            for tenant in [Tenant::Own, Tenant::Other] {
                cases.push(Case {
                    operation,
                    who,
                    tenant,
                    fixture,
                    body: body.clone(),
                    raw_id: None,
                    expected: expected(operation, who, tenant),
                });
            }
        }
    }
    let admin = |operation, fixture, body, expected| Case {
        operation,
        who: Who::Admin,
        tenant: Tenant::Own,
        fixture,
        body,
        raw_id: None,
        expected,
    };
    cases.extend([
        // Bad transitions.
        admin(Operation::Resume, Fixture::Active, None, 409),
        admin(
            Operation::Pause,
            Fixture::Draft,
            Some(json!({"reason": "x"})),
            409,
        ),
        admin(Operation::Submit, Fixture::Active, None, 409),
        admin(Operation::Activate, Fixture::Paused, None, 409),
        // Validation.
        admin(Operation::Pause, Fixture::Active, Some(json!({})), 422),
        admin(
            Operation::Pause,
            Fixture::Active,
            Some(json!({"reason": "x".repeat(2000)})),
            422,
        ),
        admin(
            Operation::Activate,
            Fixture::Draft,
            Some(json!({"comment": "ok", "extra": 1})),
            400,
        ),
        admin(
            Operation::Pause,
            Fixture::Active,
            Some(json!({"reason": 5})),
            400,
        ),
        // A resume's reason and ticket are optional, and checked like a pause's.
        admin(Operation::Resume, Fixture::Paused, None, 200),
        admin(
            Operation::Resume,
            Fixture::Paused,
            Some(json!({"ticket": ""})),
            422,
        ),
        admin(
            Operation::Resume,
            Fixture::Paused,
            Some(json!({"reason": "x".repeat(2000)})),
            422,
        ),
        admin(
            Operation::Resume,
            Fixture::Paused,
            Some(json!({"reason": "ok", "comment": "no"})),
            400,
        ),
    ]);
    for (operation, raw_id) in [
        (Operation::Get, "not-a-uuid"),
        (Operation::Health, "00000000-0000-0000-0000-000000000000"),
        (Operation::Pause, "0195f5c4-7a3e-7000-8000-000000000000"),
    ] {
        let (fixture, body) = happy_path(operation);
        cases.push(Case {
            raw_id: Some(raw_id),
            ..admin(operation, fixture, body, 404)
        });
    }
    cases
}

/// The REST method, path and body of `case` on integration `id`.
fn rest_request(case: &Case, id: &str) -> (reqwest::Method, String) {
    match case.operation {
        Operation::List => (
            reqwest::Method::GET,
            "/api/v1/integrations?q=keep&status=draft&limit=2".to_owned(),
        ),
        Operation::Get => (reqwest::Method::GET, format!("/api/v1/integrations/{id}")),
        Operation::Health => (
            reqwest::Method::GET,
            format!("/api/v1/integrations/{id}/health"),
        ),
        operation => (
            reqwest::Method::POST,
            format!("/api/v1/integrations/{id}/{}", operation.name()),
        ),
    }
}

/// The NATS payload of `case` on integration `id`.
fn nats_payload(case: &Case, id: &str) -> Value {
    if case.operation == Operation::List {
        return json!({"q": "keep", "status": "draft", "limit": 2});
    }
    let mut payload = case.body.clone().unwrap_or_else(|| json!({}));
    payload["integrationId"] = json!(id);
    payload
}

async fn same_answers_as_rest(backend: Backend) {
    let nats = NatsServer::start();
    let app = ControlApp::spawn(backend, &nats.url()).await;
    // Three drafts that nothing changes, for the list: two pages of two.
    for name in ["keep-a", "keep-b", "keep-c"] {
        app.fixture(Tenant::Own, Fixture::Draft, name).await;
    }
    let mut statuses = BTreeMap::new();
    for (n, case) in cases().into_iter().enumerate() {
        let id_for = |raw: String| case.raw_id.map_or(raw, str::to_owned);
        let rest_id = id_for(
            app.fixture(case.tenant, case.fixture, &format!("rest-{n}"))
                .await,
        );
        let nats_id = if case.mutates() {
            id_for(
                app.fixture(case.tenant, case.fixture, &format!("nats-{n}"))
                    .await,
            )
        } else {
            rest_id.clone()
        };
        let token = app.token(case.who);
        let (method, path) = rest_request(&case, &rest_id);
        let rest = app
            .rest_with(method, &path, token.as_deref(), case.body.as_ref())
            .await;
        let endpoint = case.operation.name();
        let nats = app
            .nats(endpoint, token.as_deref(), &nats_payload(&case, &nats_id))
            .await;
        assert_eq!(rest.status(), case.expected, "REST {case:?}: {rest:?}");
        assert_eq!(rest.normalized(), nats.normalized(), "{case:?}");
        *statuses.entry(rest.status()).or_insert(0) += 1;
    }
    // The table covers every kind of answer it claims to.
    let seen: BTreeSet<u16> = statuses.keys().copied().collect();
    assert_eq!(
        seen,
        BTreeSet::from([200, 400, 401, 403, 404, 409, 422]),
        "{statuses:?}"
    );
}

/// The list's cursor from NATS pages REST, and back: one cursor format.
async fn list_pages_across_transports(backend: Backend) {
    let nats = NatsServer::start();
    let app = ControlApp::spawn(backend, &nats.url()).await;
    for name in ["page-a", "page-b", "page-c"] {
        app.fixture(Tenant::Own, Fixture::Draft, name).await;
    }
    let token = app.token(Who::Reader);
    let Answer::Ok(first) = app
        .nats("list", token.as_deref(), &json!({"limit": "2"}))
        .await
    else {
        panic!("list");
    };
    let cursor = first["nextCursor"].as_str().expect("a next page");
    let rest = app
        .rest(
            reqwest::Method::GET,
            &format!("/api/v1/integrations?limit=2&cursor={cursor}"),
            token.as_deref(),
        )
        .await;
    let nats = app
        .nats(
            "list",
            token.as_deref(),
            &json!({"limit": 2, "cursor": cursor}),
        )
        .await;
    assert_eq!(rest, nats);
    let Answer::Ok(second) = rest else {
        panic!("page 2")
    };
    assert_eq!(second["items"][0]["name"], "page-c");
    assert_eq!(second["nextCursor"], Value::Null);
    for (payload, query) in [
        (json!({"limit": 0}), "limit=0"),
        (json!({"cursor": "nope"}), "cursor=nope"),
        (json!({"bogus": "1"}), "bogus=1"),
        (json!({"type": "database"}), "type=database"),
    ] {
        let rest = app
            .rest(
                reqwest::Method::GET,
                &format!("/api/v1/integrations?{query}"),
                token.as_deref(),
            )
            .await;
        let nats = app.nats("list", token.as_deref(), &payload).await;
        assert_eq!(rest.status(), 400, "{query}");
        assert_eq!(rest, nats, "{query}");
    }
}

/// The seed's spellings (DESIGN §12), a table of what clients send and what it means.
const TYPE_SPELLINGS: &[(&str, Option<&str>)] = &[
    ("registry", Some("registry")),
    ("Registry", Some("registry")),
    ("SCM", Some("scm")),
    ("CI", Some("ci")),
    ("ContainerRegistry", Some("registry")),
    ("Host", Some("host")),
    ("registries", None),
    ("Regi stry", None),
    ("", None),
];

const PROVIDER_SPELLINGS: &[(&str, Option<&str>)] = &[
    ("in-memory", Some("in-memory")),
    ("InMemory", Some("in-memory")),
    ("in_memory", Some("in-memory")),
    ("IN-MEMORY", Some("in-memory")),
    ("GitHubApp", Some("github-app")),
    ("github_app", Some("github-app")),
    ("OciRegistry", Some("oci-registry")),
    ("DockerHub", Some("oci-registry")),
    ("SonarQube", Some("sonarqube")),
    ("GitLabCI", Some("gitlab-ci")),
    ("BitbucketServer", Some("bitbucket")),
    ("in memory", None),
    ("githubapp2", None),
];

const STATUS_SPELLINGS: &[(&str, Option<&str>)] = &[
    ("draft", Some("draft")),
    ("Draft", Some("draft")),
    ("PendingVerification", Some("pending_verification")),
    ("pending-verification", Some("pending_verification")),
    ("PENDING_VERIFICATION", Some("pending_verification")),
    ("Paused", Some("paused")),
    ("pending verification", None),
    ("Pending.Verification", None),
    ("healthy", None),
];

/// The seed's clients send `"type": "Registry"`, `"provider": "GitHubApp"` and filter by
/// `PendingVerification`: accepted in any case or hyphenation, over REST and NATS alike,
/// stored and shown canonical; anything else is still a clear 4xx naming the field.
async fn seed_spellings_on_both_transports(backend: Backend) {
    let nats = NatsServer::start();
    let app = ControlApp::spawn(backend, &nats.url()).await;
    let admin = app.token(Who::Admin);
    let admin = admin.as_deref();
    let create = |name: String, kind: &str, provider: &str| {
        let mut body = helpers::integration(&name);
        body["type"] = json!(kind);
        body["provider"] = json!(provider);
        // Every provider here but in-memory needs a baseUrl; in-memory ignores it.
        body["baseUrl"] = json!("https://seed.example.com");
        body
    };
    for (n, (kind, expected)) in TYPE_SPELLINGS.iter().enumerate() {
        let body = create(format!("type-{n}"), kind, "in-memory");
        let answer = app
            .rest_with(
                reqwest::Method::POST,
                "/api/v1/integrations",
                admin,
                Some(&body),
            )
            .await;
        match (expected, &answer) {
            (Some(canonical), Answer::Ok(created)) => {
                assert_eq!(created["type"], *canonical, "{kind:?}");
                let id = created["integrationId"].as_str().unwrap();
                let Answer::Ok(got) = app.nats("get", admin, &json!({"integrationId": id})).await
                else {
                    panic!("get {kind:?}");
                };
                assert_eq!(got["type"], *canonical, "{kind:?} as stored");
            }
            (None, Answer::Error { status, error }) => {
                assert_eq!(*status, 422, "{kind:?}");
                assert!(error.starts_with("unknown_type:"), "{kind:?}: {error}");
            }
            _ => panic!("{kind:?}: {answer:?}"),
        }
    }
    for (n, (provider, expected)) in PROVIDER_SPELLINGS.iter().enumerate() {
        let body = create(format!("provider-{n}"), "Registry", provider);
        let answer = app
            .rest_with(
                reqwest::Method::POST,
                "/api/v1/integrations",
                admin,
                Some(&body),
            )
            .await;
        match (expected, &answer) {
            (Some(canonical), Answer::Ok(created)) => {
                assert_eq!(created["provider"], *canonical, "{provider:?}");
                assert_eq!(created["type"], "registry");
            }
            (None, Answer::Error { status, error }) => {
                assert_eq!(*status, 422, "{provider:?}");
                assert!(
                    error.starts_with("unknown_provider:"),
                    "{provider:?}: {error}"
                );
            }
            _ => panic!("{provider:?}: {answer:?}"),
        }
    }

    // Filters: one pending integration among drafts; each spelling lists the same items on
    // both transports as the canonical value does.
    let pending = app
        .fixture(Tenant::Own, Fixture::Draft, "seed-pending")
        .await;
    let submitted = app
        .rest(
            reqwest::Method::POST,
            &format!("/api/v1/integrations/{pending}/submit"),
            admin,
        )
        .await;
    assert!(matches!(submitted, Answer::Ok(_)), "{submitted:?}");
    let reader = app.token(Who::Reader);
    let reader = reader.as_deref();
    let names = |answer: &Answer| match answer {
        Answer::Ok(page) => page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let filters = [
        ("status", STATUS_SPELLINGS),
        ("type", TYPE_SPELLINGS),
        ("provider", PROVIDER_SPELLINGS),
    ];
    for (parameter, table) in filters {
        for (raw, expected) in table.iter().filter(|(raw, _)| !raw.is_empty()) {
            let query = format!(
                "/api/v1/integrations?limit=500&{parameter}={}",
                urlencoding(raw)
            );
            let rest = app.rest(reqwest::Method::GET, &query, reader).await;
            let over_nats = app
                .nats("list", reader, &json!({ parameter: raw, "limit": 500 }))
                .await;
            assert_eq!(rest, over_nats, "{parameter}={raw:?}");
            match expected {
                Some(canonical) => {
                    let canonical_query =
                        format!("/api/v1/integrations?limit=500&{parameter}={canonical}");
                    let reference = app
                        .rest(reqwest::Method::GET, &canonical_query, reader)
                        .await;
                    assert_eq!(names(&rest), names(&reference), "{parameter}={raw:?}");
                    if parameter == "status" && *canonical == "pending_verification" {
                        assert_eq!(names(&rest), ["seed-pending"], "{raw:?}");
                    }
                    if let Answer::Ok(page) = &rest {
                        for item in page["items"].as_array().unwrap() {
                            assert_eq!(item[parameter], *canonical, "{parameter}={raw:?}");
                        }
                    }
                }
                // An unknown provider is only text: it matches nothing.
                None if parameter == "provider" => assert!(names(&rest).is_empty(), "{raw:?}"),
                None => {
                    assert_eq!(rest.status(), 400, "{parameter}={raw:?}");
                    let Answer::Error { error, .. } = &rest else {
                        unreachable!()
                    };
                    assert!(error.starts_with("invalid_filter:"), "{error}");
                }
            }
        }
    }
}

/// Percent-encodes a query value (spaces and punctuation in the refused spellings).
fn urlencoding(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A resume carries an optional reason and ticket (the seed's compliance rule), on REST and
/// NATS; the audit entry records them as a pause's, and the reason reaches the event.
async fn resume_is_audited_with_reason_and_ticket(backend: Backend) {
    let nats = NatsServer::start();
    let app = ControlApp::spawn(backend, &nats.url()).await;
    let admin = app.token(Who::Admin);
    let admin = admin.as_deref();
    let over_rest = app
        .fixture(Tenant::Own, Fixture::Paused, "resume-rest")
        .await;
    let over_nats = app
        .fixture(Tenant::Own, Fixture::Paused, "resume-nats")
        .await;
    let bare = app
        .fixture(Tenant::Own, Fixture::Paused, "resume-bare")
        .await;
    let body = json!({"reason": "vendor fixed the outage", "ticket": "INC-4711"});
    let answer = app
        .rest_with(
            reqwest::Method::POST,
            &format!("/api/v1/integrations/{over_rest}/resume"),
            admin,
            Some(&body),
        )
        .await;
    let Answer::Ok(resumed) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(resumed["status"], "active");
    assert_eq!(resumed["pauseReason"], Value::Null);
    let mut payload = body.clone();
    payload["integrationId"] = json!(over_nats);
    let answer = app.nats("resume", admin, &payload).await;
    assert!(matches!(answer, Answer::Ok(_)), "{answer:?}");
    let answer = app
        .rest(
            reqwest::Method::POST,
            &format!("/api/v1/integrations/{bare}/resume"),
            admin,
        )
        .await;
    assert!(matches!(answer, Answer::Ok(_)), "{answer:?}");

    for (id, reason, ticket) in [
        (
            &over_rest,
            json!("vendor fixed the outage"),
            json!("INC-4711"),
        ),
        (
            &over_nats,
            json!("vendor fixed the outage"),
            json!("INC-4711"),
        ),
        (&bare, Value::Null, Value::Null),
    ] {
        let Answer::Ok(page) = app
            .rest(
                reqwest::Method::GET,
                &format!("/api/v1/audit?integrationId={id}"),
                admin,
            )
            .await
        else {
            panic!("audit of {id}");
        };
        let entries = page["items"].as_array().unwrap();
        let pause = entries
            .iter()
            .find(|e| e["action"] == "integration.pause")
            .expect("a pause entry");
        assert_eq!(pause["reason"], "maintenance");
        let resume = entries
            .iter()
            .find(|e| e["action"] == "integration.resume")
            .expect("a resume entry");
        assert_eq!(resume["reason"], reason, "{id}");
        assert_eq!(resume["ticket"], ticket, "{id}");
        assert_eq!(resume["actor"], "op");
        assert_eq!(resume["after"]["status"], "active");
    }
}

catalogd_testkit::both_backends!(
    same_answers_as_rest,
    list_pages_across_transports,
    seed_spellings_on_both_transports,
    resume_is_audited_with_reason_and_ticket
);

/// Replies until `expected` arrived or `wait` passed.
async fn collect(
    subscriber: &mut async_nats::Subscriber,
    expected: usize,
    wait: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + wait;
    let mut replies = Vec::new();
    while replies.len() < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, subscriber.next()).await {
            // The server's "no responders" status when nobody listens is not an answer.
            Ok(Some(message)) if message.status.is_some() => {}
            Ok(Some(message)) => {
                replies.push(serde_json::from_slice(&message.payload).unwrap_or(Value::Null))
            }
            _ => break,
        }
    }
    replies
}

/// The answers of up to `instances` instances to `$SRV.<verb>.integrations` within `wait`.
async fn discover(
    client: &async_nats::Client,
    verb: &str,
    instances: usize,
    wait: Duration,
) -> Vec<Value> {
    let inbox = client.new_inbox();
    let mut subscriber = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(format!("$SRV.{verb}.integrations"), inbox, "".into())
        .await
        .unwrap();
    collect(&mut subscriber, instances, wait).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discoverable_and_shared_by_two_daemons() {
    let nats = NatsServer::start();
    let mut first = ControlApp::spawn(Backend::Sqlite, &nats.url()).await;
    let second = ControlApp::spawn(Backend::Sqlite, &nats.url()).await;
    let client = async_nats::connect(nats.url()).await.unwrap();

    // Each daemon starts its control service as it starts serving, after `spawn` returns:
    // wait until both answer before asking what they are.
    eventually("both instances answer PING", DEADLINE, || async {
        discover(&client, "PING", 2, Duration::from_millis(500))
            .await
            .len()
            == 2
    })
    .await;
    let infos = discover(&client, "INFO", 2, DEADLINE).await;
    assert_eq!(infos.len(), 2, "{infos:?}");
    let ids: BTreeSet<&str> = infos.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "two instances");
    for info in &infos {
        assert_eq!(info["name"], "integrations");
        assert_eq!(info["version"], "1.0.0");
        let endpoints: BTreeMap<&str, (&str, &str)> = info["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap(),
                    (
                        e["subject"].as_str().unwrap(),
                        e["queue_group"].as_str().unwrap(),
                    ),
                )
            })
            .collect();
        let expected: BTreeMap<&str, (String, &str)> = Operation::ALL
            .iter()
            .map(|op| {
                let subject = format!("integrations.control.{}", op.name());
                (op.name(), (subject, "q"))
            })
            .collect();
        let endpoints: BTreeMap<&str, (String, &str)> = endpoints
            .into_iter()
            .map(|(name, (subject, queue))| (name, (subject.to_owned(), queue)))
            .collect();
        assert_eq!(endpoints, expected, "{info}");
    }
    let pongs = discover(&client, "PING", 2, DEADLINE).await;
    assert_eq!(pongs.len(), 2, "{pongs:?}");
    assert!(pongs.iter().all(|p| p["name"] == "integrations"));

    // Each request is answered once, by one of the two.
    const REQUESTS: usize = 40;
    let token = first.token(Who::Reader).unwrap();
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    for _ in 0..REQUESTS {
        let mut headers = HeaderMap::new();
        headers.insert("Authorization", format!("Bearer {token}").as_str());
        client
            .publish_with_reply_and_headers(
                "integrations.control.list",
                inbox.clone(),
                headers,
                "{}".into(),
            )
            .await
            .unwrap();
    }
    let answered = collect(&mut replies, REQUESTS, DEADLINE).await;
    assert_eq!(answered.len(), REQUESTS);
    assert!(answered.iter().all(|a| a["items"] == json!([])));
    // No second answer follows (bounded wait for a message that must not come).
    let extra = tokio::time::timeout(Duration::from_millis(300), replies.next()).await;
    assert!(extra.is_err(), "a request was answered twice");
    let stats = discover(&client, "STATS", 2, DEADLINE).await;
    let per_instance: Vec<u64> = stats
        .iter()
        .map(|s| {
            s["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["name"] == "list")
                .map(|e| e["num_requests"].as_u64().unwrap())
                .sum()
        })
        .collect();
    assert_eq!(per_instance.iter().sum::<u64>(), REQUESTS as u64);
    assert!(per_instance.iter().all(|&n| n > 0), "{per_instance:?}");

    // A stopped instance leaves the group; the other answers everything.
    first.control.take().unwrap().stop().await;
    // Only one instance answers: waiting for a second one runs into the (short) deadline.
    let pongs = discover(&client, "PING", 2, Duration::from_millis(500)).await;
    assert_eq!(pongs.len(), 1, "{pongs:?}");
    for _ in 0..10 {
        let answer = second.nats("list", Some(&token), &json!({})).await;
        assert!(matches!(answer, Answer::Ok(_)), "{answer:?}");
    }
}

/// The daemon starts the service on its own NATS connection, even while NATS is down (the
/// REST API is not held up), serves once NATS is up, and stops the service at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_control_on_its_nats_connection() {
    let mut nats = NatsServer::new();
    let dir = tempfile::tempdir().unwrap();
    let mut config = helpers::test_config(Backend::Sqlite, dir.path()).await;
    config.nats.url = nats.url();
    let app = helpers::spawn_with_config(config, dir).await;
    let created = app
        .create_ok(&app.admin(TENANT), &helpers::integration("own"))
        .await;
    nats.start_again();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "Authorization",
        format!("Bearer {}", app.reader(TENANT)).as_str(),
    );
    let payload = json!({"integrationId": created["integrationId"]}).to_string();
    // The daemon connects in the background: retry until its service has subscribed.
    let deadline = Instant::now() + DEADLINE;
    let reply = loop {
        match client
            .request_with_headers(
                "integrations.control.get",
                headers.clone(),
                payload.clone().into(),
            )
            .await
        {
            Ok(reply) => break reply,
            Err(error) => {
                assert!(Instant::now() < deadline, "no control service: {error}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(nats_answer(&reply), Answer::Ok(created));
    drop(app);
    let deadline = Instant::now() + DEADLINE;
    while !discover(&client, "PING", 1, Duration::from_millis(200))
        .await
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the service outlived the daemon");
    }
}
