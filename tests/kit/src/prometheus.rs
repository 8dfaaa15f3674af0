//! A real Prometheus for the observability tests: one scrape target, rule files, a 1 s scrape
//! and evaluation interval, on a free loopback port with its store in a temp directory; killed
//! on drop. Readiness is the caller's to poll (its queries answer "unreachable" until then).
//! Also [`metric_sum`], the one reader of a `/metrics` text the tests and the runner share.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub struct Prometheus {
    child: Child,
    pub url: String,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `metrics_url` (`http://host:port/metrics`) and evaluates `rule_files`.
    pub fn start(metrics_url: &str, rule_files: &[PathBuf]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let target = metrics_url
            .trim_start_matches("http://")
            .trim_end_matches("/metrics");
        let rules: String = rule_files
            .iter()
            .map(|file| format!("  - {}\n", file.display()))
            .collect();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{rules}\
                 scrape_configs:\n  - job_name: catalogd\n    static_configs:\n      - targets: ['{target}']\n",
            ),
        )
        .unwrap();
        let port = crate::free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus is installed");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What Prometheus has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `(status, result)` of an instant query; `status` is Prometheus's (parse errors too).
    pub async fn query(&self, client: &reqwest::Client, expr: &str) -> (String, Vec<Value>) {
        let response = client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await;
        let Ok(response) = response else {
            return ("unreachable".into(), Vec::new());
        };
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let status = body["status"].as_str().unwrap_or("none").to_owned();
        if status != "success" {
            return (format!("{status}: {}", body["error"]), Vec::new());
        }
        let result = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (status, result)
    }
}

/// Sums the samples of metric `name` in a `/metrics` text: every label set of a bare name, or
/// the one series when `name` carries its labels (`name{label="value"}`); `None` if absent.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value = rest.rsplit(' ').next()?.parse::<f64>().ok()?;
        *found.get_or_insert(0.0) += value;
    }
    found
}
