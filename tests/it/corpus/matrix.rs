//! The tenant × operation × scope matrix, on REST and on the NATS control service: every
//! operation with no token, a read token and an admin token of the tenant that owns the
//! integration, and an admin token of another tenant, each on the owner's integration and on
//! an unknown id. The table says what each answers; wherever the caller may not see the
//! integration (another tenant, or refused before the id is looked at), the answer about the
//! existing id is the same as about an unknown id, byte for byte (status, the headers a client
//! reads, body): nothing tells an outsider that the id exists. The daemon sets no request ids,
//! so only `date` is left out of the comparison. Refused calls leave the integration as it was.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{self, Backend, TestApp};

const OWNER: &str = "acme";
const OUTSIDER: &str = "globex";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cred {
    NoToken,
    OwnerRead,
    OwnerAdmin,
    OutsiderAdmin,
}

const CREDS: [Cred; 4] = [
    Cred::NoToken,
    Cred::OwnerRead,
    Cred::OwnerAdmin,
    Cred::OutsiderAdmin,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    List,
    Get,
    Create,
    Update,
    Delete,
    Submit,
    Test,
    Pause,
    Resume,
    Activate,
    Health,
    History,
    Audit,
    AuditOfIntegration,
}

const OPS: [Op; 14] = [
    Op::List,
    Op::Get,
    Op::Create,
    Op::Update,
    Op::Delete,
    Op::Submit,
    Op::Test,
    Op::Pause,
    Op::Resume,
    Op::Activate,
    Op::Health,
    Op::History,
    Op::Audit,
    Op::AuditOfIntegration,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Draft,
    Active,
    Paused,
}

impl Op {
    fn admin_only(self) -> bool {
        !matches!(self, Op::List | Op::Get | Op::Health | Op::History)
    }

    /// Whether the operation names one integration (in the path or the query).
    fn takes_id(self) -> bool {
        !matches!(self, Op::List | Op::Create | Op::Audit)
    }

    /// The NATS endpoint offering the operation, if any.
    fn nats(self) -> Option<&'static str> {
        Some(match self {
            Op::List => "list",
            Op::Get => "get",
            Op::Health => "health",
            Op::Test => "test",
            Op::Submit => "submit",
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::Activate => "activate",
            _ => return None,
        })
    }

    /// The state in which the owner's admin succeeds, the body it sends and its status.
    fn happy(self) -> (State, Option<Value>, u16) {
        match self {
            Op::Create => (State::Draft, Some(helpers::integration("created")), 201),
            Op::Update => {
                let mut body = helpers::integration("renamed");
                body["version"] = json!(1);
                (State::Draft, Some(body), 200)
            }
            Op::Delete => (State::Draft, None, 204),
            Op::Pause => (State::Active, Some(json!({"reason": "maintenance"})), 200),
            Op::Resume => (State::Paused, None, 200),
            Op::Activate => (State::Draft, Some(json!({"comment": "approved"})), 200),
            _ => (State::Draft, None, 200),
        }
    }

    /// REST method and path on integration `id`.
    fn rest(self, id: &str) -> (Method, String) {
        let item = format!("/api/v1/integrations/{id}");
        match self {
            Op::List => (Method::GET, "/api/v1/integrations?limit=500".into()),
            Op::Create => (Method::POST, "/api/v1/integrations".into()),
            Op::Get => (Method::GET, item),
            Op::Update => (Method::PUT, item),
            Op::Delete => (Method::DELETE, item),
            Op::Health => (Method::GET, format!("{item}/health")),
            Op::History => (Method::GET, format!("{item}/history")),
            Op::Audit => (Method::GET, "/api/v1/audit?limit=500".into()),
            Op::AuditOfIntegration => (Method::GET, format!("/api/v1/audit?integrationId={id}")),
            Op::Submit | Op::Test | Op::Pause | Op::Resume | Op::Activate => {
                let name = format!("{self:?}").to_lowercase();
                (Method::POST, format!("{item}/{name}"))
            }
        }
    }
}

/// The status the owner's integration gets: a token first (401), then the scope (403), then
/// the tenant (404 for id operations; an outsider's list, create and audit see only their own
/// tenant, and the audit of a foreign integration is an empty page, as for an unknown one).
fn expected(op: Op, cred: Cred) -> u16 {
    let (_, _, success) = op.happy();
    match cred {
        Cred::NoToken => 401,
        Cred::OwnerRead if op.admin_only() => 403,
        Cred::OutsiderAdmin if op.takes_id() && op != Op::AuditOfIntegration => 404,
        _ => success,
    }
}

/// What a client sees of an answer, for byte-for-byte comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    status: u16,
    /// Every header but `date`.
    headers: BTreeMap<String, Vec<u8>>,
    body: Vec<u8>,
}

impl Seen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Matrix {
    app: TestApp,
    nats: async_nats::Client,
}

impl Matrix {
    fn token(&self, cred: Cred) -> Option<String> {
        match cred {
            Cred::NoToken => None,
            Cred::OwnerRead => Some(self.app.reader(OWNER)),
            Cred::OwnerAdmin => Some(self.app.admin(OWNER)),
            Cred::OutsiderAdmin => Some(self.app.admin(OUTSIDER)),
        }
    }

    /// A new integration of the owner, in `state`.
    async fn fixture(&self, state: State, name: &str) -> String {
        let admin = self.app.admin(OWNER);
        let created = self
            .app
            .create_ok(&admin, &helpers::integration(name))
            .await;
        let id = created["integrationId"].as_str().unwrap().to_owned();
        let mut steps = Vec::new();
        if matches!(state, State::Active | State::Paused) {
            steps.push(("activate", None));
        }
        if state == State::Paused {
            steps.push(("pause", Some(json!({"reason": "fixture"}))));
        }
        for (step, body) in steps {
            let mut request = self.app.request(
                Method::POST,
                &format!("/api/v1/integrations/{id}/{step}"),
                Some(&admin),
            );
            if let Some(body) = body {
                request = request.json(&body);
            }
            let status = request.send().await.unwrap().status();
            assert_eq!(status, 200, "{step} {name}");
        }
        id
    }

    /// The owner's view of `id`: its version, or `None` once deleted.
    async fn version(&self, id: &str) -> Option<i64> {
        let response = self
            .app
            .get(
                &self.app.admin(OWNER),
                &format!("/api/v1/integrations/{id}"),
            )
            .await;
        match response.status().as_u16() {
            404 => None,
            200 => response.json::<Value>().await.unwrap()["version"].as_i64(),
            other => panic!("owner's get of {id}: {other}"),
        }
    }

    async fn rest(&self, op: Op, cred: Cred, id: &str, body: Option<&Value>) -> Seen {
        let (method, path) = op.rest(id);
        let mut request = self.app.request(method, &path, self.token(cred).as_deref());
        if let Some(body) = body {
            // Serialised here so both calls of a pair send the same bytes.
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| name.as_str() != "date")
            .fold(BTreeMap::new(), |mut headers, (name, value)| {
                headers
                    .entry(name.as_str().to_owned())
                    .or_insert_with(Vec::new)
                    .extend_from_slice(value.as_bytes());
                headers
            });
        let body = response.bytes().await.unwrap().to_vec();
        Seen {
            status,
            headers,
            body,
        }
    }

    async fn nats_call(&self, endpoint: &str, cred: Cred, id: &str, body: Option<&Value>) -> Seen {
        let mut headers = HeaderMap::new();
        if let Some(token) = self.token(cred) {
            headers.insert("Authorization", format!("Bearer {token}").as_str());
        }
        let mut payload = body.cloned().unwrap_or_else(|| json!({}));
        if endpoint != "list" {
            payload["integrationId"] = json!(id);
        }
        let message = tokio::time::timeout(
            Duration::from_secs(30),
            self.nats.request_with_headers(
                format!("integrations.control.{endpoint}"),
                headers,
                payload.to_string().into(),
            ),
        )
        .await
        .expect("a NATS reply in time")
        .expect("a NATS reply");
        let headers: BTreeMap<String, Vec<u8>> = message
            .headers
            .iter()
            .flat_map(|headers| headers.iter())
            .map(|(name, values)| {
                let name: &str = name.as_ref();
                let joined: Vec<u8> = values
                    .iter()
                    .flat_map(|v| v.as_str().as_bytes().to_vec())
                    .collect();
                (name.to_owned(), joined)
            })
            .collect();
        let status = headers
            .get("Nats-Service-Error-Code")
            .map_or(200, |code| String::from_utf8_lossy(code).parse().unwrap());
        Seen {
            status,
            headers,
            body: message.payload.to_vec(),
        }
    }
}

async fn tenant_operation_scope_matrix(backend: Backend) {
    let server = catalogd_testkit::NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = helpers::test_config(backend, dir.path()).await;
    // Connection tests and checks stay off the network.
    config.offline.enabled = true;
    config.nats.url = server.url();
    let app = helpers::spawn_with_config(config, dir).await;
    let nats = async_nats::connect(server.url()).await.unwrap();
    let matrix = Matrix { app, nats };
    // The daemon's control service subscribes in the background.
    let started = Instant::now();
    loop {
        let answer = matrix
            .nats
            .request("integrations.control.list", "{}".into())
            .await;
        if answer.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no control service"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The outsider has an integration of its own, so its list and audit are not trivially empty.
    let outsider = matrix
        .app
        .create_ok(
            &matrix.app.admin(OUTSIDER),
            &helpers::integration("outsider-own"),
        )
        .await;
    let outsider_id = outsider["integrationId"].as_str().unwrap().to_owned();

    let mut cells = 0;
    let mut pairs = 0;
    let mut statuses: BTreeMap<(&str, u16), usize> = BTreeMap::new();
    for op in OPS {
        let (state, body, _) = op.happy();
        for cred in CREDS {
            let want = expected(op, cred);
            let name = format!("{op:?}-{cred:?}").to_lowercase();
            // REST: the owner's integration, then an unknown id.
            let id = matrix.fixture(state, &format!("rest-{name}")).await;
            let before = matrix.version(&id).await;
            let mut body = body.clone();
            if let Some(body) = body.as_mut().filter(|_| op == Op::Create) {
                body["name"] = json!(format!("created-{name}"));
            }
            let own = matrix.rest(op, cred, &id, body.as_ref()).await;
            assert_eq!(own.status, want, "REST {op:?} {cred:?}: {}", own.text());
            let refused = want >= 400;
            if refused {
                assert_eq!(matrix.version(&id).await, before, "REST {op:?} {cred:?}");
            }
            let text = own.text();
            if cred == Cred::OutsiderAdmin {
                assert!(!text.contains(&id), "{op:?} leaked the id: {text}");
                assert!(!text.contains(OWNER), "{op:?} leaked the owner: {text}");
            } else if cred != Cred::NoToken {
                assert!(!text.contains(&outsider_id), "{op:?} leaked: {text}");
            }
            *statuses.entry(("rest", own.status)).or_default() += 1;
            cells += 1;
            if op.takes_id() && (refused || cred == Cred::OutsiderAdmin) {
                let unknown = uuid::Uuid::now_v7().to_string();
                let other = matrix.rest(op, cred, &unknown, body.as_ref()).await;
                let normalise = |seen: &Seen, raw: &str| Seen {
                    body: seen.text().replace(raw, "<id>").into_bytes(),
                    ..seen.clone()
                };
                // The id appears in neither answer, so `normalise` only matters if it leaks,
                // and the assertion above catches that first.
                assert_eq!(
                    normalise(&own, &id),
                    normalise(&other, &unknown),
                    "REST {op:?} {cred:?}: the existing id answers unlike an unknown one"
                );
                pairs += 1;
            }

            // NATS: the same on the operation's endpoint.
            let Some(endpoint) = op.nats() else { continue };
            let id = matrix.fixture(state, &format!("nats-{name}")).await;
            let before = matrix.version(&id).await;
            let own = matrix.nats_call(endpoint, cred, &id, body.as_ref()).await;
            assert_eq!(own.status, want, "NATS {op:?} {cred:?}: {own:?}");
            if refused {
                assert_eq!(matrix.version(&id).await, before, "NATS {op:?} {cred:?}");
            }
            if cred == Cred::OutsiderAdmin {
                assert!(!own.text().contains(&id), "NATS {op:?} leaked: {own:?}");
            }
            *statuses.entry(("nats", own.status)).or_default() += 1;
            cells += 1;
            if op.takes_id() && (refused || cred == Cred::OutsiderAdmin) {
                let unknown = uuid::Uuid::now_v7().to_string();
                let other = matrix
                    .nats_call(endpoint, cred, &unknown, body.as_ref())
                    .await;
                assert_eq!(
                    own, other,
                    "NATS {op:?} {cred:?}: the existing id answers unlike an unknown one"
                );
                pairs += 1;
            }
        }
    }
    // The outsider's own integration is untouched by everything above.
    let response = matrix
        .app
        .get(
            &matrix.app.admin(OUTSIDER),
            &format!("/api/v1/integrations/{outsider_id}"),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["version"], 1);
    println!(
        "tenant matrix ({backend:?}): {} operations x {} credentials, {cells} cells \
         (REST and NATS), {pairs} existing/unknown pairs identical; by status {statuses:?}",
        OPS.len(),
        CREDS.len()
    );
    assert_eq!(cells, OPS.len() * CREDS.len() + 8 * CREDS.len());
}

catalogd_testkit::both_backends!(tenant_operation_scope_matrix);
