//! Local fake vendor servers for the connector, egress and secrets tests. Each speaks the
//! vendor's documented responses on a loopback port, served by [`crate::target`]: its
//! [`Control`] flips any of them into a failure (a status with headers), a latency or hanging,
//! and counts and records requests.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The private key of the GitHub App the fakes know (test-only key material).
pub const GITHUB_APP_PRIVATE_KEY: &str = include_str!("github_app_test_key.pem");
pub const GITHUB_APP_PUBLIC_KEY: &str = include_str!("github_app_test_key.pub.pem");

pub use crate::target::{
    serve as start, serve_on as start_on, Control, Recorded, Server as Fake, UPSTREAM_BODY_MARKER,
};

/// A TCP listener that counts the connections it accepts and closes them.
pub struct Canary {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Canary {
    pub async fn start() -> Canary {
        Canary::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    pub async fn start_on(addr: SocketAddr) -> Canary {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\ncanary",
                    )
                    .await;
            }
        });
        Canary {
            addr,
            accepted,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP server that answers anything with bytes that are neither TLS nor HTTP.
pub async fn garbage_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream
                    .write_all(b"\x00\x01garbage garbage garbage\r\n\r\n")
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        }
    });
    (addr, task)
}

/// A port on which nothing listens (bound, then released).
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    listener.local_addr().unwrap().port()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn basic(user_password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

fn unauthorized(challenge: Option<String>) -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(json!({"message": format!("{UPSTREAM_BODY_MARKER} Bad credentials")})),
    )
        .into_response();
    if let Some(challenge) = challenge {
        response.headers_mut().insert(
            "www-authenticate",
            HeaderValue::try_from(challenge).unwrap(),
        );
    }
    response
}

/// Harbor: `/api/v2.0/health` (component `jobservice` unhealthy while `unhealthy` is set)
/// and `/api/v2.0/users/current` with basic auth.
pub fn harbor(user_password: &str, unhealthy: Arc<AtomicBool>) -> Router {
    let expected = basic(user_password);
    Router::new()
        .route(
            "/api/v2.0/health",
            get(move || {
                let unhealthy = unhealthy.load(Ordering::SeqCst);
                async move {
                    let jobservice = if unhealthy { "unhealthy" } else { "healthy" };
                    Json(json!({
                        "status": if unhealthy { "unhealthy" } else { "healthy" },
                        "components": [
                            {"name": "core", "status": "healthy"},
                            {"name": "jobservice", "status": jobservice,
                             "error": format!("{UPSTREAM_BODY_MARKER} dial tcp: refused")},
                            {"name": "registry", "status": "healthy"},
                        ]
                    }))
                }
            }),
        )
        .route(
            "/api/v2.0/users/current",
            get(move |headers: HeaderMap| async move {
                if header(&headers, "authorization") == Some(expected.as_str()) {
                    Json(json!({"user_id": 1, "username": "robot"})).into_response()
                } else {
                    unauthorized(None)
                }
            }),
        )
}

/// An OCI registry with token authentication (Docker Hub style): `/v2/` challenges with a
/// realm on this same server, `/token` exchanges basic credentials for `token`.
pub fn oci_registry(user_password: &str, token: &str) -> Router {
    let expected_basic = basic(user_password);
    let expected_bearer = format!("Bearer {token}");
    let token = token.to_owned();
    Router::new()
        .route(
            "/v2/",
            get(move |headers: HeaderMap| async move {
                if header(&headers, "authorization") == Some(expected_bearer.as_str()) {
                    return (StatusCode::OK, Json(json!({}))).into_response();
                }
                let host = header(&headers, "host").unwrap_or("127.0.0.1");
                unauthorized(Some(format!(
                    "Bearer realm=\"http://{host}/token\",service=\"fake-registry\""
                )))
            }),
        )
        .route(
            "/token",
            get(move |headers: HeaderMap, request: Request| async move {
                let query = request.uri().query().unwrap_or_default().to_owned();
                if !query.contains("service=fake-registry") {
                    return (StatusCode::BAD_REQUEST, "no service").into_response();
                }
                if header(&headers, "authorization") != Some(expected_basic.as_str()) {
                    return unauthorized(None);
                }
                Json(json!({"token": token, "expires_in": 300})).into_response()
            }),
        )
}

/// A registry whose `/v2/` answers 401 with a Bearer challenge pointing at `realm`.
pub fn oci_registry_with_realm(realm: &str) -> Router {
    let challenge = format!("Bearer realm=\"{realm}\",service=\"fake-registry\"");
    Router::new().route(
        "/v2/",
        get(move || async move { unauthorized(Some(challenge)) }),
    )
}

/// GitHub with a token: `/rate_limit` and `/user` with `Authorization: Bearer`.
pub fn github(token: &str) -> Router {
    let expected = format!("Bearer {token}");
    let check = move |headers: HeaderMap| {
        let ok = header(&headers, "authorization") == Some(expected.as_str());
        async move {
            if ok {
                Json(json!({"login": "octocat", "resources": {"core": {"remaining": 4999}}}))
                    .into_response()
            } else {
                unauthorized(None)
            }
        }
    };
    Router::new()
        .route("/rate_limit", get(check.clone()))
        .route("/user", get(check))
}

/// What the GitHub App fake found in the last JWT it verified.
#[derive(Debug, Clone, Default)]
pub struct JwtSeen {
    pub iss: Option<Value>,
    pub iat: i64,
    pub exp: i64,
    pub verified_at: i64,
}

/// GitHub App: `/app` verifies the RS256 JWT with the app's public key and checks `iss`,
/// `iat` (about 60 s in the past) and `exp` (at most 10 minutes ahead).
pub fn github_app(app_id: Value, seen: Arc<Mutex<Option<JwtSeen>>>) -> Router {
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
    Router::new().route(
        "/app",
        get(move |headers: HeaderMap| {
            let app_id = app_id.clone();
            let seen = seen.clone();
            async move {
                let Some(token) =
                    header(&headers, "authorization").and_then(|h| h.strip_prefix("Bearer "))
                else {
                    return unauthorized(None);
                };
                let key = DecodingKey::from_rsa_pem(GITHUB_APP_PUBLIC_KEY.as_bytes()).unwrap();
                let mut validation = Validation::new(Algorithm::RS256);
                validation.leeway = 0;
                // jsonwebtoken only knows string issuers; GitHub takes numeric app ids too, so `iss`
                // is checked by hand below.
                validation.set_required_spec_claims(&["exp", "iat"]);
                let data = match decode::<Value>(token, &key, &validation) {
                    Ok(data) => data,
                    Err(e) => {
                        eprintln!("github-app fake: JWT refused: {e}");
                        return unauthorized(None);
                    }
                };
                let claims = data.claims;
                let now = chrono::Utc::now().timestamp();
                let iat = claims["iat"].as_i64().unwrap_or_default();
                let exp = claims["exp"].as_i64().unwrap_or_default();
                *seen.lock().unwrap() = Some(JwtSeen {
                    iss: Some(claims["iss"].clone()),
                    iat,
                    exp,
                    verified_at: now,
                });
                let iat_ok = (now - 70..=now - 50).contains(&iat);
                let exp_ok = exp > now && exp - now <= 600;
                if claims["iss"] != app_id || !iat_ok || !exp_ok {
                    return unauthorized(None);
                }
                Json(json!({"id": app_id, "slug": "catalogd-test"})).into_response()
            }
        }),
    )
}

/// GitLab: `/api/v4/version` with `PRIVATE-TOKEN`; 401 without.
pub fn gitlab(token: &str) -> Router {
    let token = token.to_owned();
    Router::new().route(
        "/api/v4/version",
        get(move |headers: HeaderMap| async move {
            match header(&headers, "private-token") {
                Some(t) if t == token => {
                    Json(json!({"version": "17.0.0", "revision": "abc"})).into_response()
                }
                _ => unauthorized(None),
            }
        }),
    )
}

/// Gitea: `/api/v1/version` without auth, `/api/v1/user` with `Authorization: token`.
pub fn gitea(token: &str) -> Router {
    let expected = format!("token {token}");
    Router::new()
        .route(
            "/api/v1/version",
            get(|| async { Json(json!({"version": "1.22.0"})) }),
        )
        .route(
            "/api/v1/user",
            get(move |headers: HeaderMap| async move {
                if header(&headers, "authorization") == Some(expected.as_str()) {
                    Json(json!({"login": "bot"})).into_response()
                } else {
                    unauthorized(None)
                }
            }),
        )
}

/// Jenkins: `/api/json` with basic auth; every response carries `X-Jenkins`, anonymous
/// callers get 403.
pub fn jenkins(user_password: &str) -> Router {
    let expected = basic(user_password);
    Router::new().route(
        "/api/json",
        get(move |headers: HeaderMap| async move {
            let mut response = match header(&headers, "authorization") {
                None => (StatusCode::FORBIDDEN, "anonymous").into_response(),
                Some(a) if a == expected => Json(json!({"mode": "NORMAL"})).into_response(),
                Some(_) => unauthorized(None),
            };
            response
                .headers_mut()
                .insert("x-jenkins", HeaderValue::from_static("2.452"));
            response
        }),
    )
}

/// How a vendor treats the credential in a request: none is anonymous, the expected one is
/// the user, anything else is refused (401), as real servers refuse bad credentials even on
/// endpoints that allow anonymous callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Authenticated,
    Refused,
}

fn caller(headers: &HeaderMap, name: &str, expected: &str) -> Caller {
    match header(headers, name) {
        None => Caller::Anonymous,
        Some(value) if value == expected => Caller::Authenticated,
        Some(_) => Caller::Refused,
    }
}

/// Artifactory: `/artifactory/api/system/ping` answers `OK` (anonymous or with the bearer
/// token); `/artifactory/api/system/version` needs the token.
pub fn artifactory(token: &str) -> Router {
    let expected = format!("Bearer {token}");
    let for_ping = expected.clone();
    Router::new()
        .route(
            "/artifactory/api/system/ping",
            get(move |headers: HeaderMap| async move {
                match caller(&headers, "authorization", &for_ping) {
                    Caller::Refused => unauthorized(None),
                    _ => "OK".into_response(),
                }
            }),
        )
        .route(
            "/artifactory/api/system/version",
            get(move |headers: HeaderMap| async move {
                match caller(&headers, "authorization", &expected) {
                    Caller::Authenticated => {
                        Json(json!({"version": "7.77.0", "revision": "77700900"})).into_response()
                    }
                    _ => unauthorized(None),
                }
            }),
        )
}

/// Nexus: `/service/rest/v1/status` (anonymous or with basic auth),
/// `/service/rest/v1/status/check` with basic auth.
pub fn nexus(user_password: &str) -> Router {
    let expected = basic(user_password);
    let for_status = expected.clone();
    Router::new()
        .route(
            "/service/rest/v1/status",
            get(move |headers: HeaderMap| async move {
                match caller(&headers, "authorization", &for_status) {
                    Caller::Refused => unauthorized(None),
                    _ => StatusCode::OK.into_response(),
                }
            }),
        )
        .route(
            "/service/rest/v1/status/check",
            get(move |headers: HeaderMap| async move {
                match caller(&headers, "authorization", &expected) {
                    Caller::Authenticated => Json(json!({
                        "Available CPUs": {"healthy": true, "message": "The host system is allocating a maximum of 4 cores"},
                        "Blob Stores": {"healthy": true, "message": null},
                    }))
                    .into_response(),
                    _ => unauthorized(None),
                }
            }),
        )
}

/// SonarQube: `/api/system/status` reports `status` (anonymous or with the bearer token);
/// `/api/authentication/validate` answers 200 `{"valid": false}` to a bad token.
pub fn sonarqube(token: &str, status: Arc<Mutex<String>>) -> Router {
    let expected = format!("Bearer {token}");
    let for_status = expected.clone();
    Router::new()
        .route(
            "/api/system/status",
            get(move |headers: HeaderMap| {
                let status = status.lock().unwrap().clone();
                let refused = caller(&headers, "authorization", &for_status) == Caller::Refused;
                async move {
                    if refused {
                        return unauthorized(None);
                    }
                    Json(json!({"id": "x", "version": "10.5", "status": status})).into_response()
                }
            }),
        )
        .route(
            "/api/authentication/validate",
            get(move |headers: HeaderMap| async move {
                let valid = header(&headers, "authorization") == Some(expected.as_str());
                Json(json!({"valid": valid}))
            }),
        )
}

/// Bitbucket Cloud: `/2.0/user` with an access token (`Authorization: Bearer`).
pub fn bitbucket_cloud(token: &str) -> Router {
    let expected = format!("Bearer {token}");
    Router::new().route(
        "/2.0/user",
        get(move |headers: HeaderMap| async move {
            match caller(&headers, "authorization", &expected) {
                Caller::Authenticated => Json(json!({
                    "type": "user", "uuid": "{d301aafa-d676-4ee0-88be-962be7417567}",
                    "username": "catalogd-bot", "display_name": "catalogd bot",
                    "account_id": "557058:ba8948b2-49da-43a9-9e8b-e7249b8e324a",
                }))
                .into_response(),
                _ => unauthorized(None),
            }
        }),
    )
}

/// Bitbucket Data Center: `/rest/api/1.0/projects` with an HTTP access token (`Authorization:
/// Bearer`), a paged list; `/rest/api/1.0/application-properties`, the version (anonymous or
/// with the token).
pub fn bitbucket_datacenter(token: &str) -> Router {
    let expected = format!("Bearer {token}");
    let for_properties = expected.clone();
    Router::new()
        .route(
            "/rest/api/1.0/projects",
            get(move |headers: HeaderMap| async move {
                match caller(&headers, "authorization", &expected) {
                    Caller::Authenticated => Json(json!({
                        "size": 1, "limit": 1, "isLastPage": false, "start": 0, "nextPageStart": 1,
                        "values": [{"key": "PRJ", "id": 1, "name": "My Cool Project", "public": false, "type": "NORMAL"}],
                    }))
                    .into_response(),
                    _ => unauthorized(None),
                }
            }),
        )
        .route(
            "/rest/api/1.0/application-properties",
            get(move |headers: HeaderMap| async move {
                match caller(&headers, "authorization", &for_properties) {
                    Caller::Refused => unauthorized(None),
                    _ => Json(json!({
                        "version": "8.19.2", "buildNumber": "8019002",
                        "buildDate": "1712112420000", "displayName": "Bitbucket",
                    }))
                    .into_response(),
                }
            }),
        )
}

/// Azure DevOps: `/<organization>/_apis/projects?api-version=…` with a personal access token
/// as basic auth (any user name); 401 without credentials, 203 with a sign-in page for a bad
/// PAT (as Azure DevOps Services does).
pub fn azure_devops(organization: &str, pat: &str) -> Router {
    let pat = pat.to_owned();
    Router::new().route(
        &format!("/{organization}/_apis/projects"),
        get(move |headers: HeaderMap, request: Request| async move {
            let query = request.uri().query().unwrap_or_default().to_owned();
            if !query.contains("api-version=") {
                return (StatusCode::BAD_REQUEST, "api-version is required").into_response();
            }
            let authenticated = header(&headers, "authorization")
                .and_then(|value| value.strip_prefix("Basic "))
                .and_then(|encoded| {
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .ok()
                })
                .and_then(|decoded| String::from_utf8(decoded).ok())
                .is_some_and(|user_pat| {
                    user_pat.split_once(':').map(|(_, p)| p) == Some(pat.as_str())
                });
            if !authenticated {
                if headers.contains_key("authorization") {
                    return (
                        StatusCode::NON_AUTHORITATIVE_INFORMATION,
                        [("content-type", "text/html")],
                        format!("<html>{UPSTREAM_BODY_MARKER} Sign In</html>"),
                    )
                        .into_response();
                }
                return unauthorized(None);
            }
            Json(json!({"count": 1, "value": [{
                "id": "eb6e4656-77fc-42a1-9181-4c6d8e9da5d1", "name": "Fabrikam-Fiber-TFVC",
                "state": "wellFormed", "visibility": "private",
            }]}))
            .into_response()
        }),
    )
}

/// CircleCI: `/api/v2/me` with a personal API token in `Circle-Token`.
pub fn circleci(token: &str) -> Router {
    let token = token.to_owned();
    Router::new().route(
        "/api/v2/me",
        get(move |headers: HeaderMap| async move {
            match caller(&headers, "circle-token", &token) {
                Caller::Authenticated => Json(json!({
                    "id": "c6e2e2cd-d0ee-4253-be29-d076f9555602", "login": "catalogd-bot", "name": "catalogd bot",
                }))
                .into_response(),
                _ => (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"message": format!("{UPSTREAM_BODY_MARKER} You must log in first.")})),
                )
                    .into_response(),
            }
        }),
    )
}

/// GitHub Actions: `/repos/{owner}/{repo}/actions/runs` of `owner/repo` with a bearer token;
/// another repository is a 404.
pub fn github_actions(owner: &str, repo: &str, token: &str) -> Router {
    let expected = format!("Bearer {token}");
    let wanted = (owner.to_owned(), repo.to_owned());
    Router::new().route(
        "/repos/{owner}/{repo}/actions/runs",
        get(
            move |axum::extract::Path((owner, repo)): axum::extract::Path<(String, String)>,
                  headers: HeaderMap| async move {
                if caller(&headers, "authorization", &expected) != Caller::Authenticated {
                    return unauthorized(None);
                }
                if (owner, repo) != wanted {
                    return (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"})))
                        .into_response();
                }
                Json(json!({"total_count": 1, "workflow_runs": [{
                    "id": 30433642, "name": "Build", "status": "completed", "conclusion": "success",
                    "head_branch": "main", "run_number": 562,
                }]}))
                .into_response()
            },
        ),
    )
}

/// GitLab CI: `/api/v4/projects/:id/pipelines` of `project` (an id or a path, which the
/// client must URL-encode) with a `PRIVATE-TOKEN`; another project is a 404.
pub fn gitlab_ci(project: &str, token: &str) -> Router {
    let token = token.to_owned();
    let project = project.to_owned();
    Router::new().route(
        "/api/v4/projects/{id}/pipelines",
        get(
            move |axum::extract::Path(id): axum::extract::Path<String>,
                  headers: HeaderMap| async move {
                if caller(&headers, "private-token", &token) != Caller::Authenticated {
                    return unauthorized(None);
                }
                if id != project {
                    return (StatusCode::NOT_FOUND, Json(json!({"message": "404 Project Not Found"})))
                        .into_response();
                }
                Json(json!([{
                    "id": 47, "iid": 12, "project_id": 1, "status": "success", "source": "push",
                    "ref": "main", "sha": "a91957a858320c0e17f3a0eca7cfacbff50ea29a",
                }]))
                .into_response()
            },
        ),
    )
}

/// A generic target for the `http` connector: `/ok`, `/json`, `/status/{code}`,
/// `/redirect/{n}` (n hops then `/ok`), `/echo-headers`, `/big`.
pub fn http_target() -> Router {
    Router::new()
        .route("/ok", any(|| async { "ok" }))
        .route(
            "/json",
            get(|| async {
                let mut response = Json(json!({
                    "status": "UP",
                    "checks": [{"name": "db", "ok": true}, {"name": "cache", "ok": true}],
                    "secret_echo": UPSTREAM_BODY_MARKER,
                }))
                .into_response();
                response
                    .headers_mut()
                    .insert("x-service", HeaderValue::from_static("catalog-api/1.2"));
                response
            }),
        )
        .route(
            "/status/{code}",
            get(
                |axum::extract::Path(code): axum::extract::Path<u16>| async move {
                    (
                        StatusCode::from_u16(code).unwrap(),
                        format!("{UPSTREAM_BODY_MARKER} status page"),
                    )
                },
            ),
        )
        .route(
            "/redirect/{n}",
            get(
                |axum::extract::Path(n): axum::extract::Path<u32>| async move {
                    let location = if n == 0 {
                        "/ok".to_owned()
                    } else {
                        format!("/redirect/{}", n - 1)
                    };
                    (StatusCode::FOUND, [("location", location)], Body::empty())
                },
            ),
        )
        .route("/big", get(|| async { "x".repeat(1024 * 1024) }))
}

/// A server on `ip` whose every path redirects with `status` to `location`.
pub fn redirector(routes: Vec<(&'static str, u16, String)>) -> Router {
    let mut router = Router::new();
    for (path, status, location) in routes {
        router = router.route(
            path,
            any(move || {
                let location = location.clone();
                async move {
                    (
                        StatusCode::from_u16(status).unwrap(),
                        [("location", location)],
                        format!("{UPSTREAM_BODY_MARKER} moved"),
                    )
                }
            }),
        );
    }
    router
}

/// Answers every request 200 with a JSON body that satisfies the vendor health endpoints
/// (healthy harbor with no components, a version), so tests can reach later stages.
pub fn anything() -> Router {
    Router::new().fallback(|| async {
        let mut response =
            Json(json!({"status": "healthy", "components": [], "version": "1.0"})).into_response();
        response
            .headers_mut()
            .insert("x-jenkins", HeaderValue::from_static("2.452"));
        response
    })
}

/// The test CA (its key was thrown away after signing the server certificate) and a server
/// certificate for `tls.test` and 127.0.0.1.
pub const TLS_CA: &str = include_str!("tls_ca.pem");
const TLS_SERVER_CERT: &str = include_str!("tls_server.pem");
const TLS_SERVER_KEY: &str = include_str!("tls_server.key");

/// Trust roots holding only the test CA.
pub fn tls_roots() -> rustls::RootCertStore {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(TLS_CA.as_bytes()).unwrap())
        .unwrap();
    roots
}

/// An HTTPS server (test certificate) answering every request `200 ok`.
pub async fn tls_server() -> (SocketAddr, JoinHandle<()>) {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    use tokio::io::AsyncReadExt;
    let certificates = CertificateDer::pem_slice_iter(TLS_SERVER_CERT.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(TLS_SERVER_KEY.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certificates, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, task)
}
