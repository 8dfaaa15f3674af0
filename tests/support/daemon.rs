//! A `catalogd serve` child process, as an operator runs it: started from a command, its
//! address read from its log, stopped with SIGTERM or SIGKILL.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `catalogd serve`; killed on drop if still running.
pub struct Daemon {
    pub child: Child,
    pub address: String,
    pub log: mpsc::Receiver<String>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub fn start(mut command: Command) -> Daemon {
        // Several daemons run at once in tests: never the default metrics port.
        if !command
            .get_envs()
            .any(|(key, _)| key == "CATALOGD__METRICS__LISTEN")
        {
            command.env("CATALOGD__METRICS__LISTEN", "127.0.0.1:0");
        }
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
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
            address: String::new(),
            log: rx,
        };
        let line = daemon.wait_for_log("REST API listening");
        let addr = line
            .split("addr=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        daemon.address = format!("http://{addr}");
        daemon
    }

    /// Waits for a log line containing `needle`, with a deadline.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.log.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!(
                            "catalogd exited with {status} before logging {needle:?}: {seen:#?}"
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("no log line {needle:?} within the deadline: {seen:#?}");
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("catalogd did not stop on SIGTERM");
    }
}

impl Daemon {
    /// SIGKILL: no shutdown hook runs, as in a crash or an OOM kill.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
