//! The SSRF corpus over a whole daemon: payloads go in as a user sends them (REST create), and
//! each is exercised on every path that reaches out — the manual connection test, the
//! scheduled checks of the monitor engine, and declarative providers (the shipped ones, the
//! built-in ones and a plugin whose path template or redirect aims at denied addresses).
//!
//! The daemon runs with `egress.allow_private = false`; only 127.0.0.2 is opened
//! (`egress.allow`), where the test's own server stands in for a public host. Its names are
//! resolved by a DNS server the test starts (`egress.nameservers`), which also plays the DNS
//! rebinding attacker: a name answers the allowed address first and loopback afterwards. A
//! canary listens on denied addresses (127.0.0.1, 127.0.0.3, 127.255.255.254 and ::1) on the
//! same port as the allowed server, so a rebound name, a pin that slipped or a redirect that
//! was not checked would land on it: it must count 0 connections, and every payload must end
//! in the refusal expected of it (422 at create, failure class `config` with the egress
//! stage saying why on test and check).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::helpers::{spawn_with_config, test_config, Backend, TestApp};
use catalogd_testkit::{eventually, DnsServer};

const ALLOWED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Denied addresses the canary listens on, all on the allowed server's port.
const CANARY_ADDRESSES: &[&str] = &["127.0.0.1", "127.0.0.3", "127.255.255.254", "::1"];
const SECRET_REF: &str = "ref://ssrf/corpus/token";

/// Listeners on denied addresses that count every connection they accept.
struct Canary {
    accepted: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Canary {
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The stand-in for a public server, on 127.0.0.2: `/ok` answers 200, `/r/{n}` redirects as
/// the n-th entry of its table says; it records every path it is asked for.
struct Allowed {
    seen: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Allowed {
    fn asked(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

impl Drop for Allowed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Routes {
    redirects: Arc<Vec<(u16, String)>>,
}

async fn redirect(State(routes): State<Routes>, Path(n): Path<usize>) -> impl IntoResponse {
    let (status, location) = routes.redirects[n].clone();
    (
        StatusCode::from_u16(status).unwrap(),
        [("location", location)],
        "moved",
    )
}

/// Binds the allowed server's and every canary's listener on one port (retrying until a port
/// is free on all of them).
async fn listeners() -> (u16, TcpListener, Vec<TcpListener>) {
    'port: for _ in 0..100 {
        let first = TcpListener::bind((ALLOWED, 0)).await.unwrap();
        let port = first.local_addr().unwrap().port();
        let mut canaries = Vec::new();
        for address in CANARY_ADDRESSES {
            let ip: IpAddr = address.parse().unwrap();
            match TcpListener::bind(SocketAddr::new(ip, port)).await {
                Ok(listener) => canaries.push(listener),
                // No IPv6 on this machine: ::1 cannot be reached by anyone then.
                Err(_) if ip.is_ipv6() => {}
                Err(_) => continue 'port,
            }
        }
        return (port, first, canaries);
    }
    panic!("no port free on the allowed address and every canary address");
}

fn start_canary(listeners: Vec<TcpListener>) -> Canary {
    let accepted = Arc::new(AtomicUsize::new(0));
    let tasks = listeners
        .into_iter()
        .map(|listener| {
            let counter = accepted.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                while let Ok((mut stream, _)) = listener.accept().await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\ncanary")
                        .await;
                }
            })
        })
        .collect();
    Canary { accepted, tasks }
}

fn start_allowed(listener: TcpListener, redirects: Vec<(u16, String)>) -> Allowed {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let routes = Routes {
        redirects: Arc::new(redirects),
    };
    let record = seen.clone();
    let router = axum::Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/r/{n}", get(redirect))
        .with_state(routes)
        .layer(axum::middleware::from_fn(
            move |uri: Uri, request: axum::extract::Request, next: axum::middleware::Next| {
                record.lock().unwrap().push(uri.path().to_owned());
                next.run(request)
            },
        ));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Allowed { seen, task }
}

/// What a payload must end in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// 422 at create: validation refuses the URL itself.
    Refused,
    /// Created; every connection test and check fails with class `config`, and the test's
    /// egress stage says the policy (or the redirect's scheme) refused it.
    Denied,
    /// Created; the path template cannot leave the allowed host: every test and check reaches
    /// the allowed server (which answers 404) and nothing else.
    StaysOnHost,
    /// A rebinding name's first lookup (allowed when connected: the connection test succeeds
    /// on the allowed server), every later lookup denied (the checks fail with `config`).
    FirstLegAllowed,
}

struct Payload {
    family: &'static str,
    what: String,
    body: Value,
    expect: Expect,
    /// A path the allowed server must have been asked for (the first hop of a redirect).
    first_hop: Option<String>,
    /// A rebinding name and the denied address it answers after the allowed one.
    rebinding: Option<(String, IpAddr)>,
}

fn integration(provider: &str, base_url: Option<&str>, configuration: Value) -> Value {
    let mut body = json!({
        "type": "host",
        "provider": provider,
        "configuration": configuration,
        "healthCheck": {"intervalSeconds": 2, "timeoutSeconds": 2},
    });
    if let Some(url) = base_url {
        body["baseUrl"] = json!(url);
    }
    body
}

fn url_payload(family: &'static str, url: String, expect: Expect) -> Payload {
    Payload {
        family,
        body: integration("http", Some(&url), json!({})),
        what: url,
        expect,
        first_hop: None,
        rebinding: None,
    }
}

/// Names the DNS server answers, every one of them with a denied address (or a set that
/// holds one).
fn dns_names() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("loopback.ssrf.test", vec!["127.0.0.1"]),
        ("localhost", vec!["127.0.0.1"]),
        ("localhost.ssrf.test", vec!["127.0.0.1"]),
        ("loopback6.ssrf.test", vec!["::1"]),
        ("mapped.ssrf.test", vec!["::ffff:127.0.0.1"]),
        ("compat.ssrf.test", vec!["::127.0.0.1"]),
        ("siit.ssrf.test", vec!["::ffff:0:7f00:1"]),
        ("nat64.ssrf.test", vec!["64:ff9b::7f00:1"]),
        ("sixtofour.ssrf.test", vec!["2002:7f00:1::1"]),
        (
            "teredo.ssrf.test",
            vec!["2001:0:4136:e378:8000:63bf:80ff:fffe"],
        ),
        ("metadata.ssrf.test", vec!["169.254.169.254"]),
        ("metadata6.ssrf.test", vec!["fd00:ec2::254"]),
        ("metadata-nat64.ssrf.test", vec!["64:ff9b::a9fe:a9fe"]),
        ("private.ssrf.test", vec!["10.0.0.5"]),
        ("private172.ssrf.test", vec!["172.20.1.1"]),
        ("private192.ssrf.test", vec!["192.168.0.10"]),
        ("cgnat.ssrf.test", vec!["100.64.0.1"]),
        ("linklocal.ssrf.test", vec!["169.254.1.1"]),
        ("linklocal6.ssrf.test", vec!["fe80::1"]),
        ("ula.ssrf.test", vec!["fd12:3456::1"]),
        ("zero.ssrf.test", vec!["0.0.0.0"]),
        ("unspecified6.ssrf.test", vec!["::"]),
        ("broadcast.ssrf.test", vec!["255.255.255.255"]),
        ("multicast.ssrf.test", vec!["224.0.0.1"]),
        ("benchmark.ssrf.test", vec!["198.18.0.1"]),
        // Some answers allowed, one denied: the name is refused whole.
        ("mixed.ssrf.test", vec!["127.0.0.2", "127.0.0.1"]),
        ("mixed6.ssrf.test", vec!["127.0.0.2", "::1"]),
        (
            "mixed-metadata.ssrf.test",
            vec!["127.0.0.2", "169.254.169.254"],
        ),
    ]
}

/// Redirect targets, each a denied place in some spelling; the allowed server sends each
/// with each of these statuses in turn.
fn redirect_targets(p: u16) -> Vec<String> {
    vec![
        format!("http://127.0.0.1:{p}/"),
        format!("http://2130706433:{p}/"),
        format!("http://0x7f.1:{p}/"),
        format!("http://0177.0.0.1:{p}/"),
        format!("http://127.1:{p}/"),
        format!("http://[::1]:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://[64:ff9b::7f00:1]:{p}/"),
        format!("//127.0.0.1:{p}/scheme-relative"),
        format!("https://127.0.0.1:{p}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
        format!("http://loopback.ssrf.test:{p}/"),
        format!("http://localhost:{p}/"),
        format!("http://mapped.ssrf.test:{p}/"),
        "http://metadata.ssrf.test/latest/meta-data/".to_owned(),
        format!("http://0:{p}/"),
        format!("http://10.0.0.1:{p}/"),
        format!("gopher://127.0.0.1:{p}/_stats"),
        "file:///etc/passwd".to_owned(),
    ]
}

/// IP literals in the encodings a URL parser normalizes (decimal, octal, hex, short forms,
/// percent-encoded and full-width digits, a trailing dot, IPv4 embedded in IPv6 text):
/// validation refuses them at create (a host must be a dotted quad or IPv6 hex groups, so the
/// OpenAPI document's pattern is exact), and they reach test and check through redirects,
/// where the parsed, normalized address meets the policy.
fn encoded_literals(p: u16) -> Vec<String> {
    vec![
        format!("http://2130706433:{p}/"),
        format!("http://0x7f000001:{p}/"),
        format!("http://0177.0.0.1:{p}/"),
        format!("http://0x7f.1:{p}/"),
        format!("http://127.1:{p}/"),
        format!("http://127.0.1:{p}/"),
        format!("http://0177.1:{p}/"),
        format!("http://017700000001:{p}/"),
        format!("http://0x7f.0x0.0x0.0x1:{p}/"),
        format!("http://0X7F.0.0.1:{p}/"),
        format!("http://127.000.000.001:{p}/"),
        format!("http://127.0.0.1.:{p}/"),
        format!("http://%31%32%37.0.0.1:{p}/"),
        format!("http://\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}:{p}/"),
        format!("http://127\u{3002}0\u{3002}0\u{3002}1:{p}/"),
        format!("http://0:{p}/"),
        format!("http://2130706435:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://[0:0:0:0:0:ffff:127.0.0.1]:{p}/"),
        format!("http://[::127.0.0.1]:{p}/"),
        format!("http://[::ffff:0:127.0.0.1]:{p}/"),
        format!("http://[64:ff9b::127.0.0.1]:{p}/"),
        "http://0xa9fea9fe/latest/meta-data/".to_owned(),
        "http://2852039166/latest/meta-data/".to_owned(),
        "http://0251.0376.0251.0376/".to_owned(),
        "http://[::ffff:169.254.169.254]/".to_owned(),
    ]
}

/// Programs `name` to answer the allowed address on its next lookup and `rebound` after.
fn rebind(dns: &DnsServer, name: &str, rebound: IpAddr) {
    dns.sequence(name, vec![vec![IpAddr::V4(ALLOWED)], vec![rebound]]);
}

/// Builds the corpus and the allowed server's redirect table it needs.
fn corpus(p: u16, dns: &DnsServer) -> (Vec<Payload>, Vec<(u16, String)>) {
    let allowed = format!("http://{ALLOWED}:{p}");
    let mut list = Vec::new();
    let mut redirects: Vec<(u16, String)> = Vec::new();
    let mut route = |status: u16, location: String| {
        redirects.push((status, location));
        format!("/r/{}", redirects.len() - 1)
    };

    // IP literals: loopback in every encoding the URL parser normalizes, IPv6 embeddings,
    // metadata, private, shared, special-purpose ranges.
    for url in [
        format!("http://127.0.0.1:{p}/"),
        format!("http://0.0.0.0:{p}/"),
        format!("http://127.0.0.3:{p}/"),
        format!("http://127.255.255.254:{p}/"),
        format!("https://127.0.0.1:{p}/"),
        format!("HTTP://127.0.0.1:{p}/"),
        format!("http://127.0.0.1:{p}/?@{ALLOWED}"),
        format!("http://[::1]:{p}/"),
        format!("http://[0:0:0:0:0:0:0:1]:{p}/"),
        format!("http://[::ffff:7f00:1]:{p}/"),
        format!("http://[::7f00:1]:{p}/"),
        format!("http://[64:ff9b::7f00:1]:{p}/"),
        format!("http://[2002:7f00:1::]:{p}/"),
        format!("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{p}/"),
        format!("http://[::]:{p}/"),
        format!("http://[fe80::1]:{p}/"),
        format!("http://[fc00::1]:{p}/"),
        format!("http://[fd12:3456::1]:{p}/"),
        format!("http://[fec0::1]:{p}/"),
        format!("http://[ff02::1]:{p}/"),
        format!("http://[2001:db8::1]:{p}/"),
        format!("http://[::ffff:a00:1]:{p}/"),
        format!("http://[64:ff9b:1::7f00:1]:{p}/"),
        format!("http://[100::1]:{p}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://169.254.169.254:{p}/"),
        "http://169.254.170.2/v2/credentials".to_owned(),
        "http://100.100.100.200/latest/meta-data/".to_owned(),
        "http://192.0.0.192/opc/v2/instance/".to_owned(),
        "http://168.63.129.16/machine".to_owned(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
        "http://[fd20:ce::254]/computeMetadata/v1/".to_owned(),
        "http://[64:ff9b::a9fe:a9fe]/".to_owned(),
        "http://[2002:a9fe:a9fe::1]/".to_owned(),
        format!("http://10.0.0.1:{p}/"),
        format!("http://172.16.0.1:{p}/"),
        format!("http://172.31.255.254:{p}/"),
        format!("http://192.168.1.1:{p}/"),
        format!("http://100.64.0.1:{p}/"),
        format!("http://100.127.255.254:{p}/"),
        format!("http://169.254.0.1:{p}/"),
        format!("http://224.0.0.1:{p}/"),
        format!("http://239.255.255.250:{p}/"),
        format!("http://255.255.255.255:{p}/"),
        format!("http://240.0.0.1:{p}/"),
        format!("http://192.0.0.8:{p}/"),
        format!("http://192.0.2.1:{p}/"),
        format!("http://192.88.99.1:{p}/"),
        format!("http://198.18.0.1:{p}/"),
        "http://198.51.100.7/".to_owned(),
        "http://203.0.113.9/".to_owned(),
    ] {
        list.push(url_payload("literal", url, Expect::Denied));
    }

    for url in encoded_literals(p) {
        list.push(url_payload("encoded", url, Expect::Refused));
    }

    // Tricks that validation refuses outright: userinfo, fragments, zone ids, schemes.
    for url in [
        format!("http://{ALLOWED}@127.0.0.1:{p}/"),
        format!("http://user:pass@127.0.0.1:{p}/"),
        format!("http://{ALLOWED}:{p}@127.0.0.1:{p}/"),
        format!("http://127.0.0.1:{p}#@{ALLOWED}:{p}/"),
        format!("http://127.0.0.1:{p}/#{ALLOWED}"),
        format!("http://[fe80::1%25lo]:{p}/"),
        format!("http://[::1%25lo]:{p}/"),
        format!("http://127.0.0.1 :{p}/"),
        format!("http://127.0.0.1\t:{p}/"),
        format!("http://[::1]]:{p}/"),
        format!("gopher://127.0.0.1:{p}/_stats"),
        format!("ftp://127.0.0.1:{p}/"),
        format!("dict://127.0.0.1:{p}/info"),
        "file:///etc/passwd".to_owned(),
        format!("//127.0.0.1:{p}/"),
        format!("127.0.0.1:{p}"),
        "http://256.0.0.1/".to_owned(),
        "http:///".to_owned(),
    ] {
        list.push(url_payload("refused", url, Expect::Refused));
    }

    // A backslash is a path separator in http URLs: what looks like userinfo is a path, and
    // the host is what precedes it.
    list.push(url_payload(
        "refused",
        format!("http://127.0.0.1:{p}\\@{ALLOWED}/"),
        Expect::Denied,
    ));
    list.push(url_payload(
        "refused",
        format!("http://{ALLOWED}:{p}\\@127.0.0.1:{p}/"),
        Expect::StaysOnHost,
    ));

    // Names resolved by the test's DNS server to denied addresses.
    for (name, addresses) in dns_names() {
        let addresses: Vec<IpAddr> = addresses.iter().map(|a| a.parse().unwrap()).collect();
        dns.set(name, &addresses);
        list.push(url_payload(
            "dns",
            format!("http://{name}:{p}/"),
            Expect::Denied,
        ));
    }
    for url in [
        format!("http://LOOPBACK.SSRF.TEST:{p}/"),
        format!("http://loopback.ssrf.test.:{p}/"),
        // IDNA maps these to localhost.ssrf.test (punycode/Unicode bypasses).
        format!("http://\u{24db}\u{24de}\u{24d2}\u{24d0}\u{24db}\u{24d7}\u{24de}\u{24e2}\u{24e3}.ssrf.test:{p}/"),
        format!("http://LOCALHOST.ssrf.test:{p}/"),
        format!("http://\u{ff4c}oopback.ssrf.test:{p}/"),
    ] {
        list.push(url_payload("dns", url, Expect::Denied));
    }

    // Redirects from the allowed server to denied places, every status, relative and
    // absolute, and chains of allowed hops that end there.
    let mut targets = redirect_targets(p);
    // (A Location header is ASCII: the full-width and ideographic forms cannot be one.)
    for encoded in encoded_literals(p).into_iter().filter(|url| url.is_ascii()) {
        if !targets.contains(&encoded) {
            targets.push(encoded);
        }
    }
    for (n, target) in targets.into_iter().enumerate() {
        let status = [301, 302, 303, 307, 308][n % 5];
        let path = route(status, target.clone());
        list.push(Payload {
            family: "redirect",
            what: format!("{status} to {target}"),
            body: integration("http", Some(&format!("{allowed}{path}")), json!({})),
            expect: Expect::Denied,
            first_hop: Some(path),
            rebinding: None,
        });
    }
    for (n, target) in [
        format!("http://127.0.0.1:{p}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://loopback.ssrf.test:{p}/"),
        format!("http://[::ffff:7f00:1]:{p}/"),
    ]
    .into_iter()
    .enumerate()
    {
        // A chain: relative, then absolute by address, then by an allowed name, then out.
        let last = route(307, target.clone());
        let by_name = route(302, format!("http://allowed.ssrf.test:{p}{last}"));
        let absolute = route(301, format!("{allowed}{by_name}"));
        let first = route(308, absolute.clone());
        list.push(Payload {
            family: "redirect",
            what: format!("chain {n} of 4 hops to {target}"),
            body: integration("http", Some(&format!("{allowed}{first}")), json!({})),
            expect: Expect::Denied,
            first_hop: Some(last),
            rebinding: None,
        });
    }
    dns.set("allowed.ssrf.test", &[IpAddr::V4(ALLOWED)]);

    // DNS rebinding: each name answers the allowed address on its first lookup and a denied
    // one on every later lookup (the sequence starts over before the checks, so the manual
    // test and the first check both see the allowed answer first). Redirecting to the same
    // name makes one request resolve it twice; the second hop must be refused, never dialled
    // at the first hop's address or the new one.
    for (n, rebound) in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "169.254.169.254"]
        .into_iter()
        .enumerate()
    {
        for status in [302, 307] {
            let name = format!("rb-{status}-{n}.ssrf.test");
            let rebound: IpAddr = rebound.parse().unwrap();
            rebind(dns, &name, rebound);
            let path = route(status, format!("http://{name}:{p}/ok"));
            list.push(Payload {
                family: "rebinding",
                what: format!("{name}: allowed, then {rebound} on the redirect"),
                body: integration("http", Some(&format!("http://{name}:{p}{path}")), json!({})),
                expect: Expect::Denied,
                first_hop: Some(path),
                rebinding: Some((name, rebound)),
            });
        }
    }
    // Without a redirect: the connection test and the first check (each the first lookup)
    // may reach the allowed address they resolved; every check after that resolves a denied
    // address and is refused.
    for (n, rebound) in ["127.0.0.1", "::1"].into_iter().enumerate() {
        let name = format!("rb-plain-{n}.ssrf.test");
        let rebound: IpAddr = rebound.parse().unwrap();
        rebind(dns, &name, rebound);
        list.push(Payload {
            family: "rebinding",
            what: format!("{name}: allowed, then {rebound}"),
            body: integration("http", Some(&format!("http://{name}:{p}/ok")), json!({})),
            expect: Expect::FirstLegAllowed,
            first_hop: None,
            rebinding: Some((name, rebound)),
        });
    }

    // The tcp connector goes through the same policy.
    for address in [
        format!("127.0.0.1:{p}"),
        format!("2130706433:{p}"),
        format!("0x7f.1:{p}"),
        format!("0:{p}"),
        format!("[::1]:{p}"),
        format!("[::ffff:127.0.0.1]:{p}"),
        format!("loopback.ssrf.test:{p}"),
        format!("localhost:{p}"),
        format!("mixed.ssrf.test:{p}"),
        "169.254.169.254:80".to_owned(),
    ] {
        list.push(Payload {
            family: "tcp",
            what: format!("tcp {address}"),
            body: integration("tcp", None, json!({ "address": address })),
            expect: Expect::Denied,
            first_hop: None,
            rebinding: None,
        });
    }

    // Declarative providers: built-in definitions aimed at denied base URLs ...
    for provider in [
        "github",
        "gitlab",
        "gitea",
        "jenkins",
        "artifactory",
        "nexus",
        "sonarqube",
        "bitbucket",
        "azure-devops",
        "circleci",
    ] {
        for url in [
            format!("http://127.0.0.1:{p}"),
            format!("http://[::ffff:7f00:1]:{p}"),
            format!("http://loopback.ssrf.test:{p}"),
            "http://169.254.169.254".to_owned(),
        ] {
            let mut body = integration(provider, Some(&url), json!({}));
            body["authRef"] = json!(SECRET_REF);
            list.push(Payload {
                family: "declarative",
                what: format!("{provider} at {url}"),
                body,
                expect: Expect::Denied,
                first_hop: None,
                rebinding: None,
            });
        }
    }
    // ... and the plugin, whose path comes from configuration, at the allowed server, which
    // redirects it to a denied address.
    for target in redirect_targets(p) {
        let path = route(307, target.clone());
        let hop = path.trim_start_matches("/r/").to_owned();
        list.push(Payload {
            family: "declarative",
            what: format!("plugin hop {hop} to {target}"),
            body: integration("ssrf-hop", Some(&allowed), json!({ "hop": hop })),
            expect: Expect::Denied,
            first_hop: Some(path),
            rebinding: None,
        });
    }
    // A configuration value cannot move the plugin's request off its base URL's host: it is
    // percent-encoded into the path.
    for hop in [
        format!("@127.0.0.1:{p}/"),
        format!("//127.0.0.1:{p}/"),
        format!("http://127.0.0.1:{p}/"),
        format!("\\\\127.0.0.1:{p}\\"),
        "../../../ok".to_owned(),
        format!("%2f%2f127.0.0.1:{p}"),
        format!("?x=1#@127.0.0.1:{p}"),
    ] {
        list.push(Payload {
            family: "declarative",
            what: format!("plugin hop {hop:?}"),
            body: integration("ssrf-hop", Some(&allowed), json!({ "hop": hop })),
            expect: Expect::StaysOnHost,
            first_hop: None,
            rebinding: None,
        });
    }
    (list, redirects)
}

/// The plugin whose request path is `/r/{{config.hop}}` on the integration's base URL.
const PLUGIN: &str = r#"
name = "ssrf-hop"
description = "SSRF corpus: the request path comes from the integration's configuration"

[request]
path = "/r/{{config.hop}}"

[expect]
status = [200]
"#;

async fn spawn_daemon(dns: &DnsServer, keep_alive: bool) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(Backend::Sqlite, dir.path()).await;
    config.egress.allow_private = false;
    config.egress.allow = vec![format!("{ALLOWED}/32").parse().unwrap()];
    config.egress.nameservers = vec![dns.addr];
    config.egress.keep_alive = keep_alive;
    config.history.flush_interval = Duration::from_millis(100);
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("ssrf-hop.toml"), PLUGIN).unwrap();
    config.plugins.directory = plugins;
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(secrets.join("ssrf/corpus")).unwrap();
    std::fs::write(secrets.join("ssrf/corpus/token"), "user:corpus-password").unwrap();
    config.secrets.directory = secrets;
    spawn_with_config(config, dir).await
}

async fn post(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let response = app
        .request(Method::POST, path, Some(token))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The failure classes of the check results in an integration's history, oldest first
/// (`"success"` for a success).
async fn checks(app: &TestApp, token: &str, id: &str) -> Vec<String> {
    let response = app
        .get(token, &format!("/api/v1/integrations/{id}/history"))
        .await;
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    let mut classes: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| match item["failureClass"].as_str() {
            Some(class) => class.to_owned(),
            None => item["outcome"].as_str().unwrap_or("?").to_owned(),
        })
        .collect();
    classes.reverse();
    classes
}

/// Whether a connection test's last stage says the egress policy refused the target: an
/// `egress` stage naming the denied kind of address, or the hop whose redirect left http(s).
fn egress_refusal(report: &Value) -> bool {
    let Some(last) = report["stages"].as_array().and_then(|stages| stages.last()) else {
        return false;
    };
    let message = last["message"].as_str().unwrap_or_default();
    last["success"] == false
        && ((last["name"] == "egress" && message.starts_with("address denied by egress policy ("))
            || message == "redirect to a scheme other than http or https refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_corpus_never_reaches_the_canary() {
    corpus_run(false).await;
}

/// The same with `egress.keep_alive`: scheduled checks then go through the connection pool,
/// which must check every name and address as a new connection does before reusing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_corpus_with_kept_alive_connections_never_reaches_the_canary() {
    corpus_run(true).await;
}

async fn corpus_run(keep_alive: bool) {
    let dns = DnsServer::start().await;
    let (port, allowed_listener, canary_listeners) = listeners().await;
    let canary_addresses = canary_listeners.len();
    let canary = start_canary(canary_listeners);
    let (payloads, redirects) = corpus(port, &dns);
    let allowed = start_allowed(allowed_listener, redirects);

    // The canary counts: a connection from the test itself to each of its addresses.
    for address in CANARY_ADDRESSES.iter().take(canary_addresses) {
        let ip: IpAddr = address.parse().unwrap();
        drop(tokio::net::TcpStream::connect(SocketAddr::new(ip, port)).await);
    }
    eventually("the canary counts", Duration::from_secs(5), || async {
        canary.accepted() == canary_addresses
    })
    .await;
    let baseline = canary.accepted();

    let app = spawn_daemon(&dns, keep_alive).await;
    let admin = app.admin("ssrf");

    // Create: every payload as a user would send it.
    let mut created: Vec<(usize, String)> = Vec::new();
    let mut refused = 0;
    let mut wrong = Vec::new();
    for (n, payload) in payloads.iter().enumerate() {
        let mut body = payload.body.clone();
        body["name"] = json!(format!("ssrf-{n:03}"));
        let response = app.create(&admin, &body).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let expected = if payload.expect == Expect::Refused {
            422
        } else {
            201
        };
        if status != expected {
            wrong.push(format!("{}: {status} {text}", payload.what));
            continue;
        }
        match payload.expect {
            Expect::Refused => refused += 1,
            _ => {
                let id = serde_json::from_str::<Value>(&text).unwrap()["integrationId"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                created.push((n, id));
            }
        }
    }

    assert!(
        wrong.is_empty(),
        "unexpected answers to create:\n{}",
        wrong.join("\n")
    );

    // The manual connection test of each.
    let mut denied_on_test = 0;
    for (n, id) in &created {
        let payload = &payloads[*n];
        let (status, report) = post(&app, &admin, &format!("/api/v1/integrations/{id}/test")).await;
        assert_eq!(status, 200, "{}: {report}", payload.what);
        let text = report.to_string();
        assert!(!text.contains("canary"), "{}: {text}", payload.what);
        assert!(
            !text.contains("corpus-password"),
            "{}: {text}",
            payload.what
        );
        let as_expected = match payload.expect {
            Expect::Denied => {
                report["success"] == false
                    && report["failureClass"] == "config"
                    && egress_refusal(&report)
            }
            Expect::StaysOnHost => report["failureClass"] == "http_status",
            Expect::FirstLegAllowed => report["success"] == true,
            Expect::Refused => unreachable!("refused payloads are not created"),
        };
        if as_expected {
            denied_on_test += usize::from(payload.expect == Expect::Denied);
        } else {
            wrong.push(format!("{} ({:?}): {report}", payload.what, payload.expect));
        }
        assert_eq!(
            canary.accepted(),
            baseline,
            "{} reached the canary",
            payload.what
        );
    }

    assert!(
        wrong.is_empty(),
        "unexpected connection tests:\n{}",
        wrong.join("\n")
    );

    // Scheduled checks: submitted, each is checked at once and then every 2 s. Each
    // rebinding name first answers the allowed address again.
    for payload in &payloads {
        if let Some((name, rebound)) = &payload.rebinding {
            // Twice when the test followed the redirect to the same name.
            let lookups = if payload.first_hop.is_some() { 2 } else { 1 };
            assert_eq!(dns.lookups(name), lookups, "{}", payload.what);
            rebind(&dns, name, *rebound);
        }
    }
    for (_, id) in &created {
        let (status, body) = post(&app, &admin, &format!("/api/v1/integrations/{id}/submit")).await;
        assert_eq!(status, 200, "{body}");
    }
    let histories: Mutex<HashMap<String, Vec<String>>> = Mutex::new(HashMap::new());
    eventually(
        "two scheduled checks of every payload",
        Duration::from_secs(60),
        || async {
            for (_, id) in &created {
                let classes = checks(&app, &admin, id).await;
                if classes.len() < 2 {
                    return false;
                }
                histories.lock().unwrap().insert(id.clone(), classes);
            }
            true
        },
    )
    .await;
    let histories = histories.into_inner().unwrap();
    let mut denied_on_check = 0;
    for (n, id) in &created {
        let payload = &payloads[*n];
        let classes = &histories[id];
        let (first, rest) = match payload.expect {
            Expect::StaysOnHost => ("http_status", "http_status"),
            Expect::FirstLegAllowed => ("success", "config"),
            _ => ("config", "config"),
        };
        assert!(
            classes[0] == first && classes[1..].iter().all(|class| class == rest),
            "{}: {classes:?}",
            payload.what
        );
        denied_on_check += classes.iter().filter(|class| *class == "config").count();
    }

    // Each redirect's first hop really went through the allowed server, and each rebinding
    // name was asked again after its allowed answer.
    for payload in &payloads {
        if let Some(path) = &payload.first_hop {
            assert!(
                allowed.asked(path) >= 1,
                "{}: {path} not asked",
                payload.what
            );
        }
        if let Some((name, _)) = &payload.rebinding {
            assert!(
                dns.lookups(name) >= 2,
                "{}: {}",
                payload.what,
                dns.lookups(name)
            );
        }
    }
    assert_eq!(
        canary.accepted(),
        baseline,
        "connections reached the canary"
    );

    let families = payloads.iter().fold(HashMap::new(), |mut m, p| {
        *m.entry(p.family).or_insert(0) += 1;
        m
    });
    let mut families: Vec<_> = families.into_iter().collect();
    families.sort();
    assert!(payloads.len() >= 150, "{} payloads", payloads.len());
    println!(
        "ssrf corpus{}: {} payloads over create/test/check/declarative, {} connections reached the canary \
         ({refused} refused at create, {denied_on_test} denied on test, {denied_on_check} checks denied, \
         {} DNS queries, by family {families:?})",
        if keep_alive { " (keep-alive)" } else { "" },
        payloads.len(),
        canary.accepted() - baseline,
        dns.total_queries(),
    );
}
