//! The real components a benchmark starts on loopback: `catalogd serve` from the release
//! build and the target fleet; PostgreSQL, `nats-server`, the daemon child process and
//! polling come from the test kit (`catalogd-testkit`), so there is one way to start them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context as _};

pub use catalogd_testkit::{metric_sum, nats, poll, postgres, Daemon};

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
