//! Observability end to end: the daemon's `/metrics` with integrations in every state passes
//! `promtool check metrics`; a real Prometheus scrapes it and evaluates every PromQL
//! expression of every dashboard panel and every rule; `promtool check/test rules` pass;
//! per-integration series disappear with their integration and are off with
//! `metrics.per_integration = false`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use catalogd::auth::SCOPE_ADMIN;
use catalogd::config::Config;
use catalogd::startup::Application;
use catalogd_testkit::{eventually, metric_sum, poll, Prometheus};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::storm::JWT_KEY;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A daemon in this process, with its REST and metrics addresses.
struct App {
    api: String,
    metrics: String,
    token: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn spawn(tenant: &str, per_integration: bool) -> App {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path(), per_integration, Duration::from_millis(200));
    start(config, dir, tenant).await
}

/// A daemon's configuration in `dir`, its store-derived gauges re-read every `refresh`.
fn config_in(dir: &Path, per_integration: bool, refresh: Duration) -> Config {
    let key_file = dir.join("jwt.key");
    std::fs::write(&key_file, JWT_KEY).unwrap();
    let mut config = Config::default();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics.per_integration = per_integration;
    config.metrics.refresh = refresh;
    config.metrics.uptime_refresh = refresh.max(Duration::from_secs(1));
    config.database.url = format!("sqlite://{}", dir.join("catalogd.db").display());
    config.database.sqlite_synchronous = catalogd::config::SqliteSynchronous::Normal;
    config.auth.jwt_secret_file = Some(key_file);
    config.history.flush_interval = Duration::from_millis(100);
    config.monitor.reconcile_interval = Duration::from_secs(2);
    // No NATS in these tests: events wait in the outbox.
    config.nats.url = String::new();
    config
}

async fn start(config: Config, dir: tempfile::TempDir, tenant: &str) -> App {
    let app = Application::build(&config)
        .await
        .expect("application builds");
    let token = app
        .state()
        .auth
        .mint(
            tenant,
            "metrics-test",
            &[SCOPE_ADMIN.to_owned()],
            Duration::from_secs(3600),
            chrono::Utc::now(),
        )
        .unwrap();
    let api = format!("http://{}", app.local_addr());
    let metrics = format!("http://{}/metrics", app.metrics_addr());
    let (tx, rx) = oneshot::channel();
    tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    App {
        api,
        metrics,
        token,
        client: crate::helpers::http_client(Duration::from_secs(30)),
        _dir: dir,
        shutdown: Some(tx),
    }
}

impl App {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates an in-memory integration with `script`, submitted unless `draft`.
    async fn integration(&self, name: &str, script: &[&str], draft: bool) -> String {
        let body = json!({
            "name": name,
            "type": "scm",
            "provider": "in-memory",
            "configuration": {"script": script},
            "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 1},
        });
        let created = self
            .call(reqwest::Method::POST, "/api/v1/integrations", Some(body))
            .await;
        let id = created["integrationId"].as_str().unwrap().to_owned();
        if !draft {
            self.op(&id, "submit", None).await;
        }
        id
    }

    async fn op(&self, id: &str, op: &str, body: Option<Value>) {
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/integrations/{id}/{op}"),
            body,
        )
        .await;
    }

    async fn status(&self, id: &str) -> String {
        let body = self
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/integrations/{id}"),
                None,
            )
            .await;
        body["status"].as_str().unwrap_or_default().to_owned()
    }

    async fn scrape(&self) -> String {
        self.client
            .get(&self.metrics)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn wait_status(&self, id: &str, want: &str) {
        eventually(&format!("{id} {want}"), Duration::from_secs(30), || async {
            self.status(id).await == want
        })
        .await;
    }

    async fn wait_scrape(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        let every = Duration::from_millis(100);
        let scraped = poll(what, Duration::from_secs(30), every, || async {
            Some(self.scrape().await).filter(|body| condition(body))
        });
        match scraped.await {
            Ok(body) => body,
            Err(timed_out) => panic!("{timed_out}; last scrape:\n{}", self.scrape().await),
        }
    }
}

/// Skips of the cycled script keep the status where the leading entries put it.
fn hold(head: &[&'static str]) -> Vec<&'static str> {
    let mut script = head.to_vec();
    script.extend(std::iter::repeat_n("skipped", 300));
    script
}

/// Every PromQL expression of a dashboard: panel targets and query variables.
fn dashboard_exprs(path: &Path) -> Vec<String> {
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            // A row only groups the panels after it: no query, and none nested (not collapsed).
            assert!(
                panel["panels"].as_array().is_none_or(|p| p.is_empty()),
                "{}: row {} must not hide panels",
                path.display(),
                panel["title"]
            );
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"],
            "${datasource}",
            "{}: panel {} must use the datasource variable",
            path.display(),
            panel["title"]
        );
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "${datasource}");
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            // `label_values(selector, label)`: Grafana's function, not PromQL; the selector is.
            let inner = query
                .trim_start_matches("label_values(")
                .rsplit_once(',')
                .map(|(selector, _)| selector.to_owned())
                .unwrap();
            exprs.push(inner);
        }
    }
    exprs
}

/// `(is_alert, expr)` of every rule.
fn rule_exprs() -> Vec<(bool, String)> {
    let rules: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("prometheus/rules/catalogd.rules.yml")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let expr = rule["expr"].as_str().unwrap().to_owned();
            exprs.push((rule.get("alert").is_some(), expr));
        }
    }
    exprs
}

/// An alert's expression without its thresholds, split at `and`/`unless`: each part must
/// return data even while the alert (rightly) does not fire.
fn alert_parts(expr: &str) -> Vec<String> {
    let mut parts = vec![expr.to_owned()];
    for op in [" unless on (instance, job) ", " and "] {
        parts = parts
            .into_iter()
            .flat_map(|p| p.split(op).map(str::to_owned).collect::<Vec<_>>())
            .collect();
    }
    parts
        .into_iter()
        .map(|part| {
            let mut part = part.trim().to_owned();
            for cmp in [" > ", " == ", " < "] {
                if let Some((left, _)) = part.rsplit_once(cmp) {
                    part = left.trim().to_owned();
                }
            }
            part
        })
        .collect()
}

fn substitute(expr: &str, tenant: &str, integration: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$__interval", "5s")
        .replace("${datasource}", "prometheus")
        .replace("$tenant", tenant)
        .replace("$integration", integration)
}

/// The info-metric pattern (DESIGN §7) in a scrape: one `catalogd_integration_info` per
/// integration, with its name, type and provider; every other per-integration series labelled
/// `tenant` and `integration` only (plus `window` for uptime ratios); no URL or secret anywhere.
fn per_integration_labels(body: &str, tenant: &str, ids: &[&String]) {
    let mut infos = std::collections::HashMap::new();
    for line in body
        .lines()
        .filter(|l| l.starts_with("catalogd_integration_"))
    {
        let (name, rest) = line.split_once('{').unwrap_or_else(|| panic!("{line}"));
        let labels = &rest[..rest.rfind('}').unwrap()];
        let pairs: Vec<(&str, &str)> = labels
            .split("\",")
            .map(|pair| {
                let (key, value) = pair.split_once("=\"").unwrap();
                (key, value.trim_end_matches('"'))
            })
            .collect();
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
        let expected: &[&str] = match name {
            "catalogd_integration_info" => &["tenant", "integration", "name", "type", "provider"],
            "catalogd_integration_uptime_ratio" => &["tenant", "integration", "window"],
            _ => &["tenant", "integration"],
        };
        assert_eq!(keys, expected, "{line}");
        assert_eq!(pairs[0].1, tenant, "{line}");
        if name == "catalogd_integration_info" {
            assert!(line.ends_with("} 1"), "{line}");
            let previous = infos.insert(pairs[1].1.to_owned(), pairs[2].1.to_owned());
            assert!(previous.is_none(), "a second info series: {line}");
            assert_eq!(
                pairs[3..],
                [("type", "scm"), ("provider", "in-memory")],
                "{line}"
            );
        }
    }
    for id in ids {
        assert!(
            infos.contains_key(id.as_str()),
            "no info series for {id}:\n{body}"
        );
    }
    assert_eq!(infos.len(), ids.len(), "{infos:?}");
    assert!(!body.contains("ref://") && !body.contains("http://") && !body.contains("https://"));
}

/// A gzip scrape (what Prometheus asks for) decodes to the same series as a plain one.
async fn same_series_gzipped(app: &App, plain: &str) {
    use std::io::Read as _;
    let response = app
        .client
        .get(&app.metrics)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let length: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let gz = response.bytes().await.unwrap();
    assert_eq!(gz.len(), length);
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    // Values of live series move between two scrapes; the per-integration series do not come
    // and go (every integration here holds its state). The plain scrape sends the cached
    // families first, the gzip one last: the format leaves the families' order free.
    let series = |text: &str| -> Vec<String> {
        let mut series: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("catalogd_integration_"))
            .map(|l| l[..l.rfind(' ').unwrap()].to_owned())
            .collect();
        series.sort();
        series
    };
    assert_eq!(series(&text), series(plain));
    assert!(text.contains("# TYPE catalogd_integrations gauge\n"));
}

/// Metrics of the NATS relay: absent from the scrape when no event was ever relayed.
const RELAY_METRICS: [&str; 3] = [
    "catalogd_outbox_backlog",
    "catalogd_events_published_total",
    "catalogd_event_publish_duration_seconds",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_scraped_checked_and_every_expression_evaluated() {
    let tenant = "acme-metrics";
    let app = spawn(tenant, true).await;

    let draft = app.integration("draft", &["success"], true).await;
    let pending = app.integration("pending", &["skipped"], false).await;
    let active = app.integration("active", &["success"], false).await;
    let degraded = app
        .integration(
            "degraded",
            &hold(&[
                "success",
                "failure:http_status",
                "failure:timeout",
                "failure:http_status",
            ]),
            false,
        )
        .await;
    let failed = app
        .integration(
            "failed",
            &hold(&[
                "success",
                "failure:dns",
                "failure:dns",
                "failure:dns",
                "failure:connect",
                "failure:dns",
            ]),
            false,
        )
        .await;
    let paused = app.integration("paused", &["success"], false).await;
    app.wait_status(&pending, "pending_verification").await;
    app.wait_status(&active, "active").await;
    app.wait_status(&degraded, "degraded").await;
    app.wait_status(&failed, "failed").await;
    app.wait_status(&paused, "active").await;
    app.op(&paused, "pause", Some(json!({"reason": "maintenance"})))
        .await;
    app.wait_status(&paused, "paused").await;
    assert_eq!(app.status(&draft).await, "draft");
    // A 404 for the REST error panels.
    let missing = app
        .client
        .get(format!(
            "{}/api/v1/integrations/{}",
            app.api,
            uuid::Uuid::new_v4()
        ))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Every status present, per-integration series for each, uptime computed.
    let body = app
        .wait_scrape("every state with uptime", |body| {
            ["draft", "pending_verification", "active", "degraded", "failed", "paused"]
                .iter()
                .all(|s| body.contains(&format!("catalogd_integrations{{tenant=\"{tenant}\",status=\"{s}\"}} 1")))
                && body.contains(&format!("catalogd_integration_info{{tenant=\"{tenant}\",integration=\"{degraded}\",name=\"degraded\",type=\"scm\",provider=\"in-memory\"}} 1\n"))
                && body.contains(&format!("catalogd_integration_uptime_ratio{{tenant=\"{tenant}\",integration=\"{active}\""))
                && body.contains("catalogd_transitions_total{from=\"degraded\",to=\"failed\"}")
        })
        .await;
    for name in [
        "catalogd_checks_total",
        "catalogd_check_duration_seconds_bucket",
        "catalogd_check_lateness_seconds_bucket",
        "catalogd_actors ",
        "catalogd_actor_restarts_total ",
        "catalogd_integrations_flapping ",
        "catalogd_integrations_suppressed ",
        "catalogd_http_requests_total",
        "catalogd_http_request_duration_seconds_bucket",
        "catalogd_integration_up{",
        "catalogd_integration_status{",
        "catalogd_integration_check_duration_seconds{",
        "catalogd_integration_info{",
        // A lone daemon is a cluster of one that owns every shard (DESIGN §9); its takeover,
        // loss and fencing counters are there at 0 for the cluster panels and alerts.
        "catalogd_shards_owned ",
        "catalogd_cluster_nodes ",
        "catalogd_cluster_shards ",
        "catalogd_shard_takeovers_total ",
        "catalogd_shard_losses_total ",
        "catalogd_fenced_writes_total{kind=\"results\"}",
    ] {
        assert!(body.contains(name), "{name} missing:\n{body}");
    }
    // HELP/TYPE for the relay's metrics come from our descriptions, once they are emitted.
    assert!(
        !body.contains("/api/v1/integrations/0"),
        "raw paths never label"
    );

    let ids = [&draft, &pending, &active, &degraded, &failed, &paused];
    per_integration_labels(&body, tenant, &ids);
    same_series_gzipped(&app, &body).await;

    // promtool check metrics: no problems at all.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    let problems = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && problems.trim().is_empty(),
        "promtool check metrics: {problems}"
    );

    // A real Prometheus scrapes the daemon.
    let prometheus = Prometheus::start(
        &app.metrics,
        &[root().join("prometheus/rules/catalogd.rules.yml")],
    );
    let client = reqwest::Client::new();
    poll(
        "prometheus scraped catalogd",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            let up = "count_over_time(up{job=\"catalogd\"}[1m]) >= 3 and up == 1";
            !prometheus.query(&client, up).await.1.is_empty()
        },
    )
    .await
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));
    // Recording rules have data only once their group has been evaluated after those
    // scrapes; on a loaded machine that can lag the scrapes by seconds. Wait for an
    // evaluation of every rule that started after this point, and healthy.
    let scraped = chrono::Utc::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rules: Value =
            crate::helpers::json_of(client.get(format!("{}/api/v1/rules", prometheus.url))).await;
        let all: Vec<&Value> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let evaluated = !all.is_empty()
            && all.iter().all(|rule| {
                rule["health"] == "ok"
                    && rule["lastEvaluation"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .is_some_and(|t| t > scraped)
            });
        if evaluated {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never evaluated every rule after scraping: {rules}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let relay_absent: Vec<&str> = RELAY_METRICS
        .iter()
        .copied()
        .filter(|name| !body.contains(&format!("\n{name}")))
        .collect();
    let mut checks: Vec<(String, String)> = Vec::new();
    for file in ["overview.json", "integration.json"] {
        for expr in dashboard_exprs(&root().join("grafana/dashboards").join(file)) {
            checks.push((format!("{file}: {expr}"), expr));
        }
    }
    for (alert, expr) in rule_exprs() {
        if alert {
            for part in alert_parts(&expr) {
                checks.push((format!("alert {expr} (part {part})"), part));
            }
        }
        checks.push((format!("rule {expr}"), expr));
    }
    let mut failures = Vec::new();
    let mut allowed = Vec::new();
    for (what, expr) in &checks {
        let expr = substitute(expr, tenant, &degraded);
        let is_alert_whole = what.starts_with("rule ")
            && rule_exprs()
                .iter()
                .any(|(a, e)| *a && substitute(e, tenant, &degraded) == expr);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, result) = prometheus.query(&client, &expr).await;
            if status != "success" {
                failures.push(format!("{what}: does not parse: {status}"));
                break;
            }
            if !result.is_empty() {
                break;
            }
            // Whole alert expressions rightly return nothing while not firing (their parts
            // were checked above); relay metrics exist only once the relay published.
            let relay_only = relay_absent.iter().any(|name| expr.contains(name));
            if is_alert_whole || relay_only {
                allowed.push(what.clone());
                break;
            }
            if Instant::now() > deadline {
                failures.push(format!("{what}: no data"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    println!(
        "evaluated {} expressions; allowed empty ({}): {allowed:#?}",
        checks.len(),
        allowed.len()
    );
    if !failures.is_empty() {
        // What Prometheus saw of the target and logged, to tell a failed scrape from a rule
        // that was not evaluated.
        let targets = client
            .get(format!("{}/api/v1/targets", prometheus.url))
            .send()
            .await
            .ok();
        let targets = match targets {
            Some(r) => r.text().await.unwrap_or_default(),
            None => String::new(),
        };
        let rules = client
            .get(format!("{}/api/v1/rules", prometheus.url))
            .send()
            .await
            .ok();
        let rules = match rules {
            Some(r) => r.text().await.unwrap_or_default(),
            None => String::new(),
        };
        let log = prometheus.log();
        panic!("{failures:#?}\ntargets: {targets}\nrules: {rules}\nprometheus log:\n{log}");
    }
    // The allow-list stays small and explicit: only whole alerts and relay metrics.
    assert!(allowed
        .iter()
        .all(|w| w.starts_with("rule ") || RELAY_METRICS.iter().any(|m| w.contains(m))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_integrations_lose_their_series() {
    let app = spawn("acme-delete", true).await;
    let doomed = app.integration("doomed", &["success"], false).await;
    let kept = app.integration("kept", &["success"], false).await;
    app.wait_scrape("series of both", |body| {
        body.contains(&format!(
            "catalogd_integration_up{{tenant=\"acme-delete\",integration=\"{doomed}\""
        )) && body.contains(&format!("integration=\"{kept}\""))
    })
    .await;
    app.client
        .delete(format!("{}/api/v1/integrations/{doomed}", app.api))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let body = app
        .wait_scrape("doomed's series gone", |body| !body.contains(&doomed))
        .await;
    assert!(body.contains(&format!("integration=\"{kept}\"")));
}

/// The refresh says how long its last pass took, so an operator can see what it costs at
/// the fleet's size (and why the passes space out: each waits nine times its length).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_reports_how_long_its_last_pass_took() {
    let app = spawn("acme-refresh", true).await;
    app.integration("one", &["success"], false).await;
    let body = app
        .wait_scrape("the refresh's duration", |body| {
            body.contains("\ncatalogd_metrics_refresh_duration_seconds ")
        })
        .await;
    let line = body
        .lines()
        .find(|line| line.starts_with("catalogd_metrics_refresh_duration_seconds "))
        .unwrap();
    let seconds: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    // A pass over a few integrations, in seconds (not milliseconds), even on a loaded box.
    assert!((0.0..5.0).contains(&seconds), "{line}");
    assert!(body.contains("# TYPE catalogd_metrics_refresh_duration_seconds gauge"));
}

/// The history writer's counters are exported: an operator sees the results written, and
/// whether any were refused (the database fell behind) or lost to failed writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_writer_reports_what_it_wrote_and_dropped() {
    let app = spawn("acme-history", false).await;
    let id = app.integration("one", &["success"], false).await;
    let body = app
        .wait_scrape("three results written", |body| {
            metric_sum(body, "catalogd_check_results_written_total").is_some_and(|v| v >= 3.0)
        })
        .await;
    for (kind, name) in [
        ("counter", "catalogd_check_results_written_total"),
        ("counter", "catalogd_check_results_dropped_total"),
        ("gauge", "catalogd_check_results_queued"),
    ] {
        assert!(body.contains(&format!("# TYPE {name} {kind}\n")), "{name}");
    }
    let written = metric_sum(&body, "catalogd_check_results_written_total").unwrap();
    for reason in ["queue_full", "write_failed"] {
        let series = format!("catalogd_check_results_dropped_total{{reason=\"{reason}\"}}");
        assert_eq!(metric_sum(&body, &series), Some(0.0), "{series}");
    }
    assert!(metric_sum(&body, "catalogd_check_results_queued").is_some_and(|v| v >= 0.0));
    // What the counter says was written is in the history.
    let history = app
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/integrations/{id}/history?resolution=raw&limit=1000"),
            None,
        )
        .await;
    let stored = history["items"].as_array().map_or(0, Vec::len) as f64;
    assert!(
        stored >= written,
        "history {stored}, written {written}: {history}"
    );
}

/// `catalogd_integrations` and the per-integration series are there from the first scrape
/// and follow each change at once; a new integration's `up` and uptime ratios come with its
/// first check. The refresh is an hour here, so only the start-up read and the changes
/// themselves can be what the scrapes show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_gauges_are_exported_from_the_start_and_follow_every_change() {
    let tenant = "acme-live";
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path(), true, Duration::from_secs(3600));
    // One integration stored before the daemon starts.
    let database =
        catalogd::store::Database::connect(&catalogd::startup::store_options(&config).unwrap())
            .await
            .unwrap();
    let existing = catalogd::integration::Integration::new(
        tenant,
        crate::helpers::minimal_spec("existing", catalogd::integration::IntegrationType::Host),
        "seed",
        chrono::Utc::now(),
    );
    database
        .store(config.monitor.thresholds())
        .create(&existing)
        .await
        .unwrap();
    let existing = existing.integration_id.to_string();
    let app = start(config, dir, tenant).await;
    let count = |status: &str, n: u32| {
        format!("catalogd_integrations{{tenant=\"{tenant}\",status=\"{status}\"}} {n}\n")
    };
    let series =
        |family: &str, id: &str| format!("{family}{{tenant=\"{tenant}\",integration=\"{id}\"");

    let body = app.scrape().await;
    for expected in [count("draft", 1), count("active", 0), count("failed", 0)] {
        assert!(
            body.contains(&expected),
            "first scrape lacks {expected}{body}"
        );
    }
    assert!(
        body.contains(&(series("catalogd_integration_status", &existing))),
        "{body}"
    );

    let fresh = app.integration("fresh", &["success"], false).await;
    let body = app.scrape().await;
    assert!(body.contains(&count("draft", 1)), "{body}");
    assert!(
        body.contains(&count("pending_verification", 1)) || body.contains(&count("active", 1)),
        "a submitted integration is counted at once: {body}"
    );
    assert!(
        body.contains(&series("catalogd_integration_status", &fresh)),
        "{body}"
    );
    app.wait_scrape(
        "the first check's up, uptime ratios and active count",
        |body| {
            let line_of = |family: &str, extra: &str| {
                body.lines().any(|line| {
                    line.starts_with(&series(family, &fresh))
                        && line.contains(extra)
                        && line.ends_with(" 1")
                })
            };
            body.contains(&count("active", 1))
                && line_of("catalogd_integration_up", "")
                && line_of("catalogd_integration_uptime_ratio", "window=\"1h\"")
                && line_of("catalogd_integration_uptime_ratio", "window=\"30d\"")
        },
    )
    .await;

    app.client
        .delete(format!("{}/api/v1/integrations/{existing}", app.api))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let body = app.scrape().await;
    assert!(
        body.contains(&count("draft", 0)),
        "an emptied status stays, at 0: {body}"
    );
    assert!(
        !body.contains(&existing),
        "the deleted integration's series go at once: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_integration_off_emits_none() {
    let app = spawn("acme-off", false).await;
    let id = app.integration("quiet", &["success"], false).await;
    app.wait_status(&id, "active").await;
    let body = app
        .wait_scrape("counts", |body| {
            body.contains("catalogd_integrations{tenant=\"acme-off\",status=\"active\"} 1")
        })
        .await;
    assert!(!body.contains("catalogd_integration_"), "{body}");
}

#[test]
fn promtool_checks_and_tests_the_rules() {
    let dir = root().join("prometheus/rules");
    for args in [
        vec!["check", "rules", "catalogd.rules.yml"],
        vec!["test", "rules", "catalogd.rules.test.yml"],
    ] {
        let output = Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("promtool is installed");
        assert!(
            output.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn dashboards_are_provisioned_with_the_datasource_variable() {
    for file in ["overview.json", "integration.json"] {
        let path = root().join("grafana/dashboards").join(file);
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let variables: Vec<&str> = dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert!(variables.contains(&"datasource"), "{file}");
        if file == "integration.json" {
            assert!(variables.contains(&"tenant") && variables.contains(&"integration"));
        }
        // No fixed datasource uid anywhere.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("\"uid\": \"P"), "{file}");
    }
    for file in [
        "grafana/provisioning/datasources/prometheus.yaml",
        "grafana/provisioning/dashboards/catalogd.yaml",
    ] {
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(root().join(file)).unwrap()).unwrap();
        assert_eq!(yaml["apiVersion"].as_u64(), Some(1), "{file}");
    }
}
