//! The real components a benchmark starts on loopback: `catalogd serve` from the release
//! build, the target fleet, PostgreSQL and `nats-server` (the test suites' own harnesses,
//! included by path so there is one way to start them), and readers of the daemon's
//! `/readyz` and `/metrics`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

#[path = "../../tests/support/postgres.rs"]
pub mod postgres;

#[path = "../../tests/support/nats.rs"]
pub mod nats;

/// The HS256 key every benchmark daemon is configured with.
pub const JWT_KEY: &str = "bench-key-0123456789abcdef0123456789abcdef";

/// Where the release binaries are: next to this runner's own executable.
pub fn release_bin(name: &str) -> PathBuf {
    let me = std::env::current_exe().expect("current_exe");
    me.with_file_name(name)
}

/// A token for `tenant` with the admin scope, signed with [`JWT_KEY`].
pub fn admin_token(tenant: &str) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("k");
    std::fs::write(&key, JWT_KEY)?;
    let auth = catalogd::auth::Authenticator::from_config(&catalogd::config::AuthConfig {
        jwt_secret_file: Some(key),
        ..Default::default()
    })?;
    Ok(auth.mint(
        tenant,
        "bench",
        &["integrations.admin".into()],
        Duration::from_secs(24 * 3600),
        chrono::Utc::now(),
    )?)
}

/// A daemon's directory and configuration file.
pub struct DaemonDir {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl DaemonDir {
    /// A config with the REST API and metrics on free loopback ports, loopback targets
    /// allowed by the egress policy, the benchmark JWT key and `database_url`; `extra` is
    /// appended (TOML sections the figure needs, e.g. `[nats]`). `{dir}` in `database_url`
    /// is replaced by the daemon's directory.
    pub fn new(database_url: &str, extra: &str) -> anyhow::Result<DaemonDir> {
        let dir = tempfile::tempdir()?;
        let key = dir.path().join("jwt.key");
        std::fs::write(&key, JWT_KEY)?;
        let url = database_url.replace("{dir}", &dir.path().display().to_string());
        let config = dir.path().join("catalogd.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
                 [database]\nurl = \"{url}\"\n[auth]\njwt_secret_file = \"{}\"\n\
                 [log]\nlevel = \"info\"\n[egress]\nallow_private = true\n{extra}",
                key.display()
            ),
        )?;
        Ok(DaemonDir { dir, config })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `catalogd serve` on this directory and waits (up to `ready_within`) for its
    /// REST API and metrics listeners.
    pub fn start(&self, ready_within: Duration) -> anyhow::Result<Daemon> {
        let mut command = Command::new(release_bin("catalogd"));
        command
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .args(["serve", "--config", self.config.to_str().unwrap()]);
        Daemon::start(command, ready_within)
    }
}

/// A running `catalogd serve`; killed on drop if still running.
pub struct Daemon {
    pub child: Child,
    /// When the process was spawned: start-up figures count from here.
    pub spawned: Instant,
    /// `http://127.0.0.1:port` of the REST API and of `/metrics`.
    pub api: String,
    pub metrics: String,
    log: mpsc::Receiver<String>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub fn start(mut command: Command, ready_within: Duration) -> anyhow::Result<Daemon> {
        let spawned = Instant::now();
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("spawning catalogd (did scripts/bench.sh build it?)")?;
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut daemon = Daemon {
            child,
            spawned,
            api: String::new(),
            metrics: String::new(),
            log: rx,
        };
        let deadline = Instant::now() + ready_within;
        // The two listeners are logged in either order.
        let mut api = None;
        let mut metrics = None;
        while api.is_none() || metrics.is_none() {
            let line = daemon.next_line(deadline)?;
            let addr = line
                .split("addr=")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .map(|a| format!("http://{a}"));
            if line.contains("REST API listening") {
                api = addr;
            } else if line.contains("metrics listening") {
                metrics = addr;
            }
        }
        daemon.api = api.unwrap();
        daemon.metrics = metrics.unwrap();
        Ok(daemon)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn next_line(&mut self, deadline: Instant) -> anyhow::Result<String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("catalogd did not log what was expected in time");
            }
            match self.log.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => return Ok(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        bail!("catalogd exited with {status}");
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("catalogd closed its log"),
            }
        }
    }

    /// The `/readyz` JSON.
    pub async fn readyz(&self, client: &reqwest::Client) -> anyhow::Result<serde_json::Value> {
        Ok(client
            .get(format!("{}/readyz", self.api))
            .send()
            .await?
            .json()
            .await?)
    }

    /// The `/metrics` text.
    pub async fn scrape(&self, client: &reqwest::Client) -> anyhow::Result<String> {
        Ok(client
            .get(format!("{}/metrics", self.metrics))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(anyhow!("catalogd did not stop on SIGTERM"))
    }
}

/// Sums the samples of a metric (all label sets) in a `/metrics` text; `None` if absent.
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

/// Polls `condition` every `every` until it returns `Some` or `limit` passes.
pub async fn poll<T, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut condition: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = condition().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("not within {limit:?}: {what}");
        }
        tokio::time::sleep(every).await;
    }
}

/// The target fleet (`bench-target`): one HTTP server listening on `addrs` loopback
/// addresses (127.0.0.1, .2, …) on one port. Paths are the knobs:
/// `/ok`, `/status/{code}`, `/delay/{ms}`, `/hang` (answers never; the client times out).
pub struct TargetFleet {
    child: Child,
    pub port: u16,
    pub addrs: u32,
}

impl Drop for TargetFleet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One port for every fleet this runner process starts with [`TargetFleet::start_on`], so
/// URLs seeded once (see `seed::seeded_copy`) reach whichever fleet is running later.
pub fn fleet_port() -> u16 {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *PORT.get_or_init(|| {
        // A free port now; bench-target binds it with SO_REUSEADDR on every address.
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port")
    })
}

/// `http://127.0.0.{i % addrs + 1}:{fleet_port}{path}`.
pub fn fleet_url(i: usize, addrs: u32, path: &str) -> String {
    let host = (i as u32 % addrs) + 1;
    format!("http://127.0.0.{host}:{}{path}", fleet_port())
}

impl TargetFleet {
    pub fn start(addrs: u32) -> anyhow::Result<TargetFleet> {
        Self::spawn(addrs, None)
    }

    /// A fleet on [`fleet_port`] (retried briefly: the previous fleet's port may still be
    /// held for a moment after it was killed).
    pub fn start_on_fleet_port(addrs: u32) -> anyhow::Result<TargetFleet> {
        let mut last = None;
        for _ in 0..50 {
            match Self::spawn(addrs, Some(fleet_port())) {
                Ok(fleet) => return Ok(fleet),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last.unwrap())
    }

    fn spawn(addrs: u32, port: Option<u16>) -> anyhow::Result<TargetFleet> {
        let mut command = Command::new(release_bin("bench-target"));
        command.args(["--addrs", &addrs.to_string()]);
        if let Some(port) = port {
            command.args(["--port", &port.to_string()]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning bench-target")?;
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first)?;
        // `listening port=P addrs=K`
        let port = first
            .split("port=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| anyhow!("bench-target said {first:?}"))?;
        Ok(TargetFleet { child, port, addrs })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The base URL of target number `i`, spread over the listening addresses.
    pub fn base_url(&self, i: usize) -> String {
        let host = (i as u32 % self.addrs) + 1;
        format!("http://127.0.0.{host}:{}", self.port)
    }

    /// Requests served since start, read from the fleet's own counter (`GET /stats`).
    pub async fn served(&self, client: &reqwest::Client) -> anyhow::Result<u64> {
        Ok(self.counters(client).await?.0)
    }

    /// Forgets the distinct `/ok/{n}` paths served so far (`GET /reset`).
    pub async fn reset_distinct(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        client
            .get(format!("http://127.0.0.1:{}/reset", self.port))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// (requests served, distinct `n` of the `/ok/{n}` paths served) since start.
    pub async fn counters(&self, client: &reqwest::Client) -> anyhow::Result<(u64, u64)> {
        let text = client
            .get(format!("http://127.0.0.1:{}/stats", self.port))
            .send()
            .await?
            .text()
            .await?;
        let mut numbers = text.split_whitespace().map(str::parse::<u64>);
        let served = numbers.next().context("empty /stats")??;
        let distinct = numbers.next().unwrap_or(Ok(0))?;
        Ok((served, distinct))
    }
}
