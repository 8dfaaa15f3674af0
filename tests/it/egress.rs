//! SSRF payloads against the egress policy, through the real connectors.
//!
//! A canary listener on 127.0.0.1 counts every connection it accepts; every payload targets
//! it, directly or after resolution or redirects. The dialer used here records where
//! catalogd tried to connect and sends any connection that is not to the allowed fake
//! server (127.0.0.2) to the canary instead, so a policy bypass can never reach a real
//! private or metadata address, and is counted either way. Every payload must end as a
//! classified failure with **0** canary connections; the positive controls show the same
//! canary does count when the policy allows it.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use catalogd::config::{EgressConfig, SecretsConfig};
use catalogd::connectors::{Connectors, Target};
use catalogd::egress::{Dial, EgressClient, Resolve, ResolverOverrides, TcpDialer};
use catalogd_actors::{CheckOutcome, FailureClass};
use serde_json::json;
use tokio::net::TcpStream;

use catalogd_testkit::fakes::{self, Canary, UPSTREAM_BODY_MARKER};
use catalogd_testkit::holds_within;

const TIMEOUT: Duration = Duration::from_secs(5);
const ALLOWED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Records every address catalogd dials; anything but the pass-through addresses goes to
/// the canary.
struct CanaryDialer {
    canary: SocketAddr,
    passthrough: HashSet<IpAddr>,
    dialled: Mutex<Vec<SocketAddr>>,
    redirected: AtomicUsize,
}

impl CanaryDialer {
    fn new(canary: SocketAddr, passthrough: &[IpAddr]) -> Arc<CanaryDialer> {
        Arc::new(CanaryDialer {
            canary,
            passthrough: passthrough.iter().copied().collect(),
            dialled: Mutex::new(Vec::new()),
            redirected: AtomicUsize::new(0),
        })
    }

    fn dialled(&self) -> Vec<SocketAddr> {
        self.dialled.lock().unwrap().clone()
    }
}

#[async_trait]
impl Dial for CanaryDialer {
    async fn dial(&self, address: SocketAddr) -> io::Result<TcpStream> {
        self.dialled.lock().unwrap().push(address);
        if self.passthrough.contains(&address.ip()) {
            TcpStream::connect(address).await
        } else {
            self.redirected.fetch_add(1, Ordering::SeqCst);
            TcpStream::connect(self.canary).await
        }
    }
}

fn resolver() -> ResolverOverrides {
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    ResolverOverrides::new()
        .with("rebind.test", &[ip("127.0.0.1")])
        .with("metadata.test", &[ip("169.254.169.254")])
        .with("mixed.test", &[ip("93.184.216.34"), ip("127.0.0.1")])
        .with("v6mapped.test", &[ip("::ffff:127.0.0.1")])
        .with("nat64.test", &[ip("64:ff9b::7f00:1")])
        .with("private.test", &[ip("10.0.0.5")])
        .with("ula.test", &[ip("fd12:3456::1")])
        .with("allowed.test", &[IpAddr::V4(ALLOWED)])
}

fn connectors(
    egress: EgressConfig,
    dialer: Arc<dyn Dial>,
    resolver: Arc<dyn Resolve>,
) -> Connectors {
    let egress = EgressClient::new(&egress)
        .with_dialer(dialer)
        .with_resolver(resolver);
    crate::helpers::connectors_with(egress, &SecretsConfig::default())
}

fn default_policy() -> EgressConfig {
    EgressConfig {
        allow: vec![format!("{ALLOWED}/32").parse().unwrap()],
        ..EgressConfig::default()
    }
}

/// One payload and the failure classes it may legitimately end in.
struct Payload {
    what: String,
    target: Target,
    classes: &'static [FailureClass],
}

const CONFIG: &[FailureClass] = &[FailureClass::Config];
/// A name the system resolver may or may not know.
const CONFIG_OR_DNS: &[FailureClass] = &[FailureClass::Config, FailureClass::Dns];
const REDIRECT_LOOP: &[FailureClass] = &[FailureClass::HttpStatus];

fn url_payload(url: String, classes: &'static [FailureClass]) -> Payload {
    Payload {
        what: url.clone(),
        target: Target::new("http", Some(&url)),
        classes,
    }
}

fn payloads(canary: u16, allowed: SocketAddr) -> Vec<Payload> {
    let p = canary;
    let mut list = Vec::new();
    // Alternate IPv4 encodings of 127.0.0.1 and friends, all normalized by the URL parser.
    for url in [
        format!("http://127.0.0.1:{p}/"),
        format!("http://2130706433:{p}/"),
        format!("http://0x7f000001:{p}/"),
        format!("http://0177.0.0.1:{p}/"),
        format!("http://0x7f.1:{p}/"),
        format!("http://127.1:{p}/"),
        format!("http://127.0.1:{p}/"),
        format!("http://0177.1:{p}/"),
        format!("http://017700000001:{p}/"),
        format!("http://0x7f.0x0.0x0.0x1:{p}/"),
        format!("http://127.000.000.001:{p}/"),
        format!("http://127.0.0.1.:{p}/"),
        format!("http://%31%32%37.0.0.1:{p}/"),
        format!("http://\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}:{p}/"),
        format!("http://127\u{3002}0\u{3002}0\u{3002}1:{p}/"),
        format!("http://0:{p}/"),
        format!("http://0.0.0.0:{p}/"),
        format!("http://127.0.0.3:{p}/"),
        format!("http://127.255.255.254:{p}/"),
        format!("http://evil.example@127.0.0.1:{p}/"),
        format!("http://127.0.0.1:{p}\\@evil.example/"),
        format!("https://127.0.0.1:{p}/"),
        // IPv6 forms: loopback, mapped, compatible, SIIT, NAT64, 6to4, unspecified, scoped.
        format!("http://[::1]:{p}/"),
        format!("http://[0:0:0:0:0:0:0:1]:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://[::ffff:7f00:1]:{p}/"),
        format!("http://[0:0:0:0:0:ffff:127.0.0.1]:{p}/"),
        format!("http://[::127.0.0.1]:{p}/"),
        format!("http://[::7f00:1]:{p}/"),
        format!("http://[::ffff:0:127.0.0.1]:{p}/"),
        format!("http://[64:ff9b::127.0.0.1]:{p}/"),
        format!("http://[2002:7f00:1::]:{p}/"),
        format!("http://[::]:{p}/"),
        format!("http://[fe80::1%25lo]:{p}/"),
        format!("http://[fe80::1]:{p}/"),
        format!("http://[fc00::1]:{p}/"),
        format!("http://[fd12:3456::1]:{p}/"),
        format!("http://[ff02::1]:{p}/"),
        format!("http://[2001:db8::1]:{p}/"),
        format!("http://[::ffff:a00:1]:{p}/"),
        // Metadata endpoints in every spelling.
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://169.254.169.254:{p}/"),
        "http://0xa9fea9fe/latest/meta-data/".to_owned(),
        "http://2852039166/latest/meta-data/".to_owned(),
        "http://0251.0376.0251.0376/".to_owned(),
        "http://169.254.170.2/v2/credentials".to_owned(),
        "http://100.100.100.200/latest/meta-data/".to_owned(),
        "http://192.0.0.192/opc/v2/instance/".to_owned(),
        "http://168.63.129.16/machine".to_owned(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
        "http://[fd20:ce::254]/computeMetadata/v1/".to_owned(),
        "http://[::ffff:169.254.169.254]/".to_owned(),
        "http://[64:ff9b::a9fe:a9fe]/".to_owned(),
        "http://[2002:a9fe:a9fe::1]/".to_owned(),
        // Private, shared, multicast, broadcast, reserved and documentation ranges.
        format!("http://10.0.0.1:{p}/"),
        format!("http://172.16.0.1:{p}/"),
        format!("http://192.168.1.1:{p}/"),
        format!("http://100.64.0.1:{p}/"),
        format!("http://224.0.0.1:{p}/"),
        format!("http://255.255.255.255:{p}/"),
        format!("http://240.0.0.1:{p}/"),
        format!("http://192.0.2.1:{p}/"),
        "http://198.51.100.7/".to_owned(),
        "http://203.0.113.9/".to_owned(),
        // Names that resolve to denied addresses.
        format!("http://rebind.test:{p}/"),
        "http://metadata.test/latest/meta-data/".to_owned(),
        format!("http://mixed.test:{p}/"),
        format!("http://v6mapped.test:{p}/"),
        format!("http://nat64.test:{p}/"),
        format!("http://private.test:{p}/"),
        format!("http://ula.test:{p}/"),
        // Schemes other than http(s).
        format!("gopher://127.0.0.1:{p}/_stats"),
        "file:///etc/passwd".to_owned(),
        format!("ftp://127.0.0.1:{p}/"),
        format!("dict://127.0.0.1:{p}/info"),
        format!("ldap://127.0.0.1:{p}/"),
    ] {
        list.push(url_payload(url, CONFIG));
    }
    // Names the system resolver answers from /etc/hosts (or not at all).
    for url in [
        format!("http://localhost:{p}/"),
        format!("http://LOCALHOST:{p}/"),
        format!("http://localhost.:{p}/"),
        format!("https://localhost:{p}/"),
    ] {
        list.push(url_payload(url, CONFIG_OR_DNS));
    }
    // The tcp connector goes through the same policy.
    for address in [
        format!("127.0.0.1:{p}"),
        format!("2130706433:{p}"),
        format!("0x7f.1:{p}"),
        format!("0:{p}"),
        format!("[::1]:{p}"),
        format!("[::ffff:127.0.0.1]:{p}"),
        format!("rebind.test:{p}"),
        "169.254.169.254:80".to_owned(),
    ] {
        list.push(Payload {
            what: format!("tcp {address}"),
            target: Target::new("tcp", None).with_configuration(json!({ "address": address })),
            classes: CONFIG,
        });
    }
    list.push(Payload {
        what: format!("tcp localhost:{p}"),
        target: Target::new("tcp", None)
            .with_configuration(json!({ "address": format!("localhost:{p}") })),
        classes: CONFIG_OR_DNS,
    });
    // Redirects from the allowed server to denied places, every status and form.
    let redirect = |path: &str, classes| Payload {
        what: format!("redirect {path}"),
        target: Target::new("http", Some(&format!("http://{allowed}")))
            .with_configuration(json!({ "path": path })),
        classes,
    };
    for path in [
        "/r301",
        "/r302",
        "/r303",
        "/r307",
        "/r308",
        "/scheme-relative",
        "/metadata",
        "/rebind",
        "/https",
        "/mapped",
        "/decimal",
        "/gopher",
        "/file",
        "/javascript",
        "/data",
    ] {
        list.push(redirect(path, CONFIG));
    }
    list.push(redirect("/localhost", CONFIG_OR_DNS));
    list.push(redirect("/loop", REDIRECT_LOOP));
    list.push(redirect("/redirect/9", REDIRECT_LOOP));
    list
}

fn redirect_routes(canary: u16) -> Vec<(&'static str, u16, String)> {
    let p = canary;
    vec![
        ("/r301", 301, format!("http://127.0.0.1:{p}/")),
        ("/r302", 302, format!("http://127.0.0.1:{p}/x")),
        ("/r303", 303, format!("http://2130706433:{p}/")),
        ("/r307", 307, format!("http://[::ffff:127.0.0.1]:{p}/")),
        ("/r308", 308, format!("http://0x7f.1:{p}/")),
        ("/scheme-relative", 302, format!("//127.0.0.1:{p}/")),
        (
            "/metadata",
            302,
            "http://169.254.169.254/latest/meta-data/".to_owned(),
        ),
        ("/rebind", 302, format!("http://rebind.test:{p}/")),
        ("/https", 302, format!("https://127.0.0.1:{p}/")),
        ("/mapped", 301, format!("http://[::ffff:7f00:1]:{p}/")),
        ("/decimal", 307, format!("http://2130706433:{p}/")),
        ("/gopher", 302, format!("gopher://127.0.0.1:{p}/_x")),
        ("/file", 302, "file:///etc/passwd".to_owned()),
        ("/javascript", 302, "javascript:alert(1)".to_owned()),
        ("/data", 302, "data:text/plain,hello".to_owned()),
        ("/localhost", 302, format!("http://localhost:{p}/")),
        ("/loop", 302, "/loop".to_owned()),
        ("/self", 302, "/ok".to_owned()),
    ]
}

#[tokio::test]
async fn ssrf_payloads_never_reach_the_canary() {
    let canary = Canary::start().await;
    let dialer = CanaryDialer::new(canary.addr, &[IpAddr::V4(ALLOWED)]);
    let routes = fakes::redirector(redirect_routes(canary.port()))
        .merge(fakes::http_target())
        .merge(fakes::oci_registry_with_realm(&format!(
            "http://127.0.0.1:{}/token",
            canary.port()
        )));
    let allowed = fakes::start_on(IpAddr::V4(ALLOWED), routes).await;
    let connectors = connectors(default_policy(), dialer.clone(), Arc::new(resolver()));
    std::env::set_var("CATALOGD_SECRET_T_REGISTRY_CREDS", "user:password");

    let payloads = payloads(canary.port(), allowed.addr);
    assert!(payloads.len() >= 60, "{} payloads", payloads.len());
    let mut denied_by_policy = 0;
    for payload in &payloads {
        let outcome = connectors.check(&payload.target, TIMEOUT).await;
        let CheckOutcome::Failure(class) = outcome else {
            panic!("{}: {outcome:?}", payload.what);
        };
        assert!(
            payload.classes.contains(&class),
            "{}: {class:?}",
            payload.what
        );
        let report = connectors.test(&payload.target, TIMEOUT).await;
        assert!(!report.success, "{}", payload.what);
        assert!(
            payload.classes.contains(&report.failure_class.unwrap()),
            "{}: {report:?}",
            payload.what
        );
        let text = serde_json::to_string(&report).unwrap();
        assert!(
            !text.contains(UPSTREAM_BODY_MARKER),
            "{}: {text}",
            payload.what
        );
        assert!(!text.contains("canary"), "{}: {text}", payload.what);
        assert!(!text.contains("password"), "{}: {text}", payload.what);
        if text.contains("denied by egress policy") {
            denied_by_policy += 1;
        }
        assert_eq!(canary.accepted(), 0, "{} reached the canary", payload.what);
    }
    assert_eq!(canary.accepted(), 0);
    assert_eq!(dialer.redirected.load(Ordering::SeqCst), 0);
    // Only the allowed server was ever dialled.
    assert!(dialer
        .dialled()
        .iter()
        .all(|address| address.ip() == IpAddr::V4(ALLOWED)));
    // The redirect payloads really went through the allowed server.
    assert!(allowed.requests() >= 18, "{}", allowed.requests());
    assert!(denied_by_policy >= 50, "{denied_by_policy}");
    println!(
        "{} SSRF payloads (+1 token realm), {denied_by_policy} denied by the policy, {} canary connections",
        payloads.len(),
        canary.accepted()
    );

    // A token realm from the registry's challenge, pointing at the canary: the check (no
    // token exchange) is fine, the connection test's token exchange is denied.
    let registry =
        Target::new("oci-registry", Some(&allowed.url())).with_auth_ref("ref://t/registry/creds");
    assert_eq!(
        connectors.check(&registry, TIMEOUT).await,
        CheckOutcome::Success
    );
    let report = connectors.test(&registry, TIMEOUT).await;
    assert_eq!(
        report.failure_class,
        Some(FailureClass::Config),
        "{report:?}"
    );
    assert_eq!(report.stages.last().unwrap().name, "egress");
    assert_eq!(canary.accepted(), 0);

    // Control: a redirect between paths of the allowed server is followed.
    let same_host =
        Target::new("http", Some(&allowed.url())).with_configuration(json!({"path": "/self"}));
    assert_eq!(
        connectors.check(&same_host, TIMEOUT).await,
        CheckOutcome::Success
    );
    let by_name = Target::new(
        "http",
        Some(&format!("http://allowed.test:{}/ok", allowed.addr.port())),
    );
    assert_eq!(
        connectors.check(&by_name, TIMEOUT).await,
        CheckOutcome::Success
    );
    assert_eq!(canary.accepted(), 0);
}

#[tokio::test]
async fn denials_say_why_without_echoing_the_target() {
    let canary = Canary::start().await;
    let dialer = CanaryDialer::new(canary.addr, &[]);
    let connectors = connectors(default_policy(), dialer, Arc::new(resolver()));
    for (url, reason) in [
        ("http://2130706433/", "loopback address"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata address"),
        ("http://metadata.test/", "cloud metadata address"),
        ("http://10.1.2.3/", "private network address"),
        ("http://[fd12::1]/", "unique local address"),
        ("http://0/", "unspecified address"),
    ] {
        let report = connectors
            .test(&Target::new("http", Some(url)), TIMEOUT)
            .await;
        assert_eq!(report.failure_class, Some(FailureClass::Config));
        let last = report.stages.last().unwrap();
        assert_eq!(last.name, "egress");
        assert_eq!(
            last.message,
            format!("address denied by egress policy ({reason})")
        );
    }
    assert_eq!(canary.accepted(), 0);
}

#[tokio::test]
async fn positive_control_the_canary_counts_when_allowed() {
    let canary = Canary::start().await;
    let open = EgressConfig {
        allow_private: true,
        ..EgressConfig::default()
    };
    // The real dialer reaches the canary when private addresses are allowed ...
    let connectors = connectors(open.clone(), Arc::new(TcpDialer), Arc::new(resolver()));
    let url = format!("http://127.0.0.1:{}/", canary.port());
    let outcome = connectors
        .check(&Target::new("http", Some(&url)), TIMEOUT)
        .await;
    assert_eq!(outcome, CheckOutcome::Success);
    assert!(holds_within(TIMEOUT, || canary.accepted() > 0).await);
    let before = canary.accepted();
    let decimal = format!("http://2130706433:{}/", canary.port());
    connectors
        .check(&Target::new("http", Some(&decimal)), TIMEOUT)
        .await;
    assert!(holds_within(TIMEOUT, || canary.accepted() > before).await);

    // ... and the test dialer sends any allowed address there, so a bypass would count.
    let dialer = CanaryDialer::new(canary.addr, &[]);
    let connectors = connectors_with(open, dialer.clone());
    let before = canary.accepted();
    let private = format!("http://10.0.0.1:{}/", canary.port());
    connectors
        .check(&Target::new("http", Some(&private)), TIMEOUT)
        .await;
    assert!(holds_within(TIMEOUT, || canary.accepted() > before).await);
    assert_eq!(
        dialer.dialled()[0].ip(),
        "10.0.0.1".parse::<IpAddr>().unwrap()
    );
    // Metadata stays closed even so.
    let metadata = Target::new("http", Some("http://169.254.169.254/"));
    assert_eq!(
        connectors.check(&metadata, TIMEOUT).await,
        CheckOutcome::Failure(FailureClass::Config)
    );
    assert_eq!(dialer.dialled().len(), 1);
}

fn connectors_with(egress: EgressConfig, dialer: Arc<CanaryDialer>) -> Connectors {
    connectors(egress, dialer, Arc::new(resolver()))
}

/// A resolver that answers a public address first and a loopback address afterwards.
struct Rebinding {
    calls: AtomicUsize,
}

#[async_trait]
impl Resolve for Rebinding {
    async fn resolve(&self, _host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
        let first = self.calls.fetch_add(1, Ordering::SeqCst) == 0;
        Ok(vec![if first {
            "93.184.216.34".parse().unwrap()
        } else {
            "127.0.0.1".parse().unwrap()
        }])
    }
}

#[tokio::test]
async fn dns_rebinding_connects_only_to_the_checked_address() {
    // The stand-in for the public server listens on 127.0.0.9, which the policy allows so
    // that the connected peer passes the after-connect check; 127.0.0.1 stays denied.
    let sink = Canary::start_on(SocketAddr::from(([127, 0, 0, 9], 0))).await;
    let dialer = CanaryDialer::new(sink.addr, &[]);
    let resolver = Arc::new(Rebinding {
        calls: AtomicUsize::new(0),
    });
    let policy = EgressConfig {
        allow: vec!["127.0.0.9/32".parse().unwrap()],
        ..EgressConfig::default()
    };
    let connectors = connectors(policy, dialer.clone(), resolver.clone());
    let target = Target::new("http", Some("http://rebinding.test/"));
    // First resolution: a public address, allowed and dialled (to the stand-in sink).
    assert_eq!(
        connectors.check(&target, TIMEOUT).await,
        CheckOutcome::Success
    );
    // Second: loopback, denied before any connection.
    assert_eq!(
        connectors.check(&target, TIMEOUT).await,
        CheckOutcome::Failure(FailureClass::Config)
    );
    let dialled = dialer.dialled();
    assert_eq!(dialled.len(), 1);
    assert_eq!(dialled[0].ip(), "93.184.216.34".parse::<IpAddr>().unwrap());
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn credentials_do_not_follow_a_redirect_to_another_origin() {
    // Two allowed servers: the first redirects to the second, which records what it gets.
    let second = fakes::start(fakes::http_target()).await;
    let routes = fakes::redirector(vec![("/away", 307, format!("{}/ok", second.url()))]);
    let first = fakes::start(routes).await;
    let secrets = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(secrets.path().join("t/x")).unwrap();
    std::fs::write(secrets.path().join("t/x/token"), "redirect-token").unwrap();
    let egress = EgressClient::new(&EgressConfig {
        allow_private: true,
        ..EgressConfig::default()
    });
    let connectors = crate::helpers::connectors_with(
        egress,
        &SecretsConfig {
            directory: secrets.path().to_owned(),
            ..SecretsConfig::default()
        },
    );
    let target = Target::new("http", Some(&first.url()))
        .with_auth_ref("ref://t/x/token")
        .with_configuration(json!({
            "path": "/away",
            "authScheme": "bearer",
            "headers": {"X-Api-Key": "ref://t/x/token", "X-Plain": "kept"}
        }));
    assert_eq!(
        connectors.check(&target, TIMEOUT).await,
        CheckOutcome::Success
    );
    let first_seen = &first.recorded()[0];
    assert_eq!(first_seen.headers["authorization"], "Bearer redirect-token");
    assert_eq!(first_seen.headers["x-api-key"], "redirect-token");
    let second_seen = &second.recorded()[0];
    assert!(second_seen.headers.get("authorization").is_none());
    assert!(second_seen.headers.get("x-api-key").is_none());
    assert_eq!(second_seen.headers["x-plain"], "kept");
}

#[tokio::test]
async fn the_connected_peer_is_checked_too() {
    // A dialer that lands somewhere other than the checked address (as a misbehaving
    // network path would): the peer address is denied and nothing is sent.
    let canary = Canary::start().await;
    let dialer = CanaryDialer::new(canary.addr, &[]);
    let connectors = connectors(default_policy(), dialer.clone(), Arc::new(resolver()));
    let report = connectors
        .test(&Target::new("http", Some("http://93.184.216.34/")), TIMEOUT)
        .await;
    assert_eq!(report.failure_class, Some(FailureClass::Config));
    assert_eq!(
        report.stages.last().unwrap().message,
        "address denied by egress policy (loopback address)"
    );
    assert_eq!(dialer.dialled().len(), 1);
    // The TCP connection was opened (and closed at once), but no request was sent.
    assert!(holds_within(TIMEOUT, || canary.accepted() == 1).await);
}

/// A request a [`PeerRecorder`] answered: the client's address and its `Connection` header.
type Seen = (SocketAddr, Option<String>);

/// A target that records the client address of every request it answers (one address per
/// TCP connection, so the number of distinct addresses is the number of connections) and the
/// request's `Connection` header.
struct PeerRecorder {
    addr: SocketAddr,
    peers: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PeerRecorder {
    async fn start_on(ip: IpAddr) -> PeerRecorder {
        use axum::extract::ConnectInfo;
        let peers = Arc::new(Mutex::new(Vec::new()));
        let seen = peers.clone();
        let router = axum::Router::new().route(
            "/ok",
            axum::routing::get(
                move |ConnectInfo(peer): ConnectInfo<SocketAddr>,
                      headers: axum::http::HeaderMap| {
                    let seen = seen.clone();
                    let connection = headers
                        .get(axum::http::header::CONNECTION)
                        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
                    async move {
                        seen.lock().unwrap().push((peer, connection));
                        "ok"
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, service).await;
        });
        PeerRecorder { addr, peers, task }
    }

    fn requests(&self) -> usize {
        self.peers.lock().unwrap().len()
    }

    fn connections(&self) -> usize {
        self.peers
            .lock()
            .unwrap()
            .iter()
            .map(|(peer, _)| peer)
            .collect::<HashSet<_>>()
            .len()
    }

    /// The `Connection` header of each request, in order.
    fn connection_headers(&self) -> Vec<Option<String>> {
        self.peers
            .lock()
            .unwrap()
            .iter()
            .map(|(_, connection)| connection.clone())
            .collect()
    }
}

impl Drop for PeerRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn keep_alive(on: bool) -> EgressConfig {
    EgressConfig {
        allow_private: true,
        keep_alive: on,
        ..EgressConfig::default()
    }
}

#[tokio::test]
async fn keep_alive_reuses_one_connection_for_several_checks() {
    let target = PeerRecorder::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let dialer = CanaryDialer::new(target.addr, &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let connectors = connectors(keep_alive(true), dialer.clone(), Arc::new(resolver()));
    let url = format!("http://{}/ok", target.addr);
    for _ in 0..5 {
        assert_eq!(
            connectors
                .check(&Target::new("http", Some(&url)), TIMEOUT)
                .await,
            CheckOutcome::Success
        );
    }
    assert_eq!(target.requests(), 5);
    assert_eq!(target.connections(), 1);
    assert_eq!(dialer.dialled().len(), 1);
    // A pooled connection is not asked to close.
    assert_eq!(target.connection_headers(), vec![None; 5]);
    // A connection test opens its own connection: its TCP stage is real.
    let report = connectors
        .test(&Target::new("http", Some(&url)), TIMEOUT)
        .await;
    assert!(report.success);
    assert!(report.stages.iter().any(|stage| stage.name == "tcp"));
    assert_eq!(target.connections(), 2);
}

#[tokio::test]
async fn without_keep_alive_every_check_opens_its_own_connection() {
    let target = PeerRecorder::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let connectors = connectors(keep_alive(false), Arc::new(TcpDialer), Arc::new(resolver()));
    let url = format!("http://{}/ok", target.addr);
    for _ in 0..5 {
        assert_eq!(
            connectors
                .check(&Target::new("http", Some(&url)), TIMEOUT)
                .await,
            CheckOutcome::Success
        );
    }
    assert_eq!(target.requests(), 5);
    assert_eq!(target.connections(), 5);
    // Each request says its connection ends with it (RFC 9112 §9.6), so the server closes
    // first and the checker keeps no TIME_WAIT socket per check.
    assert_eq!(
        target.connection_headers(),
        vec![Some("close".to_owned()); 5]
    );
}

#[tokio::test]
async fn a_kept_alive_connection_does_not_bypass_the_policy() {
    // The name first resolves to the allowed server, which leaves an idle connection in the
    // pool; then it rebinds to a denied address. The policy is checked on every check before
    // the pool is looked at, so the second check is refused and nothing is sent.
    let target = PeerRecorder::start_on(IpAddr::V4(ALLOWED)).await;
    let dialer = CanaryDialer::new(target.addr, &[IpAddr::V4(ALLOWED)]);
    struct Flip(AtomicUsize);
    #[async_trait]
    impl Resolve for Flip {
        async fn resolve(&self, _host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
            let first = self.0.fetch_add(1, Ordering::SeqCst) == 0;
            Ok(vec![if first {
                IpAddr::V4(ALLOWED)
            } else {
                "10.0.0.5".parse().unwrap()
            }])
        }
    }
    let policy = EgressConfig {
        keep_alive: true,
        ..default_policy()
    };
    let connectors = connectors(policy, dialer.clone(), Arc::new(Flip(AtomicUsize::new(0))));
    let url = format!("http://flip.test:{}/ok", target.addr.port());
    let check = Target::new("http", Some(&url));
    assert_eq!(
        connectors.check(&check, TIMEOUT).await,
        CheckOutcome::Success
    );
    assert_eq!(
        connectors.check(&check, TIMEOUT).await,
        CheckOutcome::Failure(FailureClass::Config)
    );
    assert_eq!(target.requests(), 1);
    assert_eq!(dialer.dialled().len(), 1);
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_is_replaced_once() {
    // A server that answers one request per connection with keep-alive headers, then closes
    // the connection: the pooled connection is stale when the next check takes it.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Closed soon after, while the client holds it idle.
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
        }
    });
    let connectors = connectors(keep_alive(true), Arc::new(TcpDialer), Arc::new(resolver()));
    let url = format!("http://{addr}/");
    for round in 1..=3 {
        assert_eq!(
            connectors
                .check(&Target::new("http", Some(&url)), TIMEOUT)
                .await,
            CheckOutcome::Success,
            "check {round}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    server.abort();
}
