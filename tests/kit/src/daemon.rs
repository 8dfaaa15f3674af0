//! A `catalogd serve` child process, as an operator runs it: started from a command, ready
//! once it has logged both its metrics and its REST API listener, in either order (their
//! addresses are read from those lines), stopped with SIGTERM or SIGKILL. Failures are errors, not panics, so the
//! benchmark runner can report them; tests unwrap.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

/// How long a test daemon may take to stop on SIGTERM.
const STOP_WITHIN: Duration = Duration::from_secs(60);

/// A running `catalogd serve`; killed on drop if still running.
pub struct Daemon {
    pub child: Child,
    /// When the process was spawned: start-up figures count from here.
    pub spawned: Instant,
    /// `http://127.0.0.1:port` of the REST API and of `/metrics`.
    pub api: String,
    pub metrics: String,
    /// The daemon's stderr, a line at a time.
    log: mpsc::Receiver<String>,
    /// Lines read while waiting for the second listener, after the REST API's: still unread.
    unread: VecDeque<String>,
    /// Lines logged before the REST API listened.
    startup: Vec<String>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Spawns `command` (a `catalogd serve`) and waits, up to `ready_within`, for its metrics
    /// and REST API listeners. Unless the command's environment says otherwise, metrics listen
    /// on a free port: several daemons run at once, never on the default one.
    pub fn start(command: Command, ready_within: Duration) -> anyhow::Result<Daemon> {
        let mut daemon = Daemon::spawn(command)?;
        daemon.wait_ready(Instant::now() + ready_within)?;
        Ok(daemon)
    }

    /// Spawns `command` without waiting for anything: `api` and `metrics` stay empty until
    /// [`Daemon::wait_ready`] has seen both listeners. A chaos test kills daemons at random
    /// points, start-up included.
    pub fn spawn(mut command: Command) -> anyhow::Result<Daemon> {
        if !command
            .get_envs()
            .any(|(key, _)| key == "CATALOGD__METRICS__LISTEN")
        {
            command.env("CATALOGD__METRICS__LISTEN", "127.0.0.1:0");
        }
        let spawned = Instant::now();
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {:?}", command.get_program()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Daemon {
            child,
            spawned,
            api: String::new(),
            metrics: String::new(),
            log: rx,
            unread: VecDeque::new(),
            startup: Vec::new(),
        })
    }

    /// Waits, until `deadline`, for the metrics and REST API listeners of a daemon from
    /// [`Daemon::spawn`], and fills in `api` and `metrics`. Lines logged after the REST API's
    /// stay unread.
    pub fn wait_ready(&mut self, deadline: Instant) -> anyhow::Result<()> {
        // Lines before the REST API's are start-up noise; those after it stay unread.
        let mut seen = Vec::new();
        let mut api = None;
        let mut metrics = None;
        while api.is_none() || metrics.is_none() {
            let line = self
                .receive(deadline)
                .with_context(|| format!("waiting for the listeners; logged: {seen:#?}"))?;
            let addr = || {
                line.split("addr=")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
                    .map(|a| format!("http://{a}"))
                    .ok_or_else(|| anyhow!("no address in {line:?}"))
            };
            if line.contains("metrics listening") {
                metrics = Some(addr()?);
            } else if line.contains("REST API listening") {
                api = Some(addr()?);
            } else if api.is_some() {
                self.unread.push_back(line);
            } else {
                seen.push(line);
            }
        }
        self.api = api.unwrap_or_default();
        self.metrics = metrics.unwrap_or_default();
        self.startup = seen;
        Ok(())
    }

    /// What the daemon logged before its REST API listened.
    pub fn startup_log(&self) -> &[String] {
        &self.startup
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next unread log line, or an error at `deadline` or when the daemon exits.
    fn next_line(&mut self, deadline: Instant) -> anyhow::Result<String> {
        match self.unread.pop_front() {
            Some(line) => Ok(line),
            None => self.receive(deadline),
        }
    }

    /// The next line from the daemon's stderr, or an error at `deadline` or when it exits.
    fn receive(&mut self, deadline: Instant) -> anyhow::Result<String> {
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

    /// Waits, up to `within`, for a log line containing `needle` and returns it.
    pub fn wait_for_log(&mut self, needle: &str, within: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let line = self
                .next_line(deadline)
                .with_context(|| format!("waiting for {needle:?}; logged: {seen:#?}"))?;
            if line.contains(needle) {
                return Ok(line);
            }
            seen.push(line);
        }
    }

    /// The log lines not read yet (all of them once the daemon has exited).
    pub fn rest_of_log(&mut self) -> Vec<String> {
        self.unread.drain(..).chain(self.log.try_iter()).collect()
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

    /// SIGTERM, then waits for the exit and returns its status.
    pub fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        let signalled = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !signalled.success() {
            bail!("kill -TERM {} failed", self.child.id());
        }
        let deadline = Instant::now() + STOP_WITHIN;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(anyhow!(
            "catalogd did not stop on SIGTERM within {STOP_WITHIN:?}"
        ))
    }

    /// SIGKILL: no shutdown hook runs, as in a crash or an OOM kill.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
