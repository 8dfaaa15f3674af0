//! A real `nats-server -js` for integration tests, on a free loopback port with its JetStream
//! store in a temp directory; it can be stopped and started again on the same port and store
//! (a NATS outage, then recovery).
//!
//! The server runs under a small shell wrapper whose stdin is a pipe held by this process:
//! when the pipe closes — [`NatsServer::stop`], drop, or the test process dying, even by
//! SIGKILL — the wrapper's `read` returns and it stops the server with SIGTERM (a clean
//! shutdown that syncs the JetStream store). No server outlives its tests.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// `$1` the store directory, `$2` the port. See the module comment.
const WRAPPER: &str = r#"
exec 3<&0
nats-server -js -a 127.0.0.1 -p "$2" -sd "$1/jetstream" >>"$1/nats.log" 2>&1 &
pid=$!
(read _ <&3; kill -TERM "$pid" 2>/dev/null) &
wait "$pid"
"#;

pub struct NatsServer {
    port: u16,
    dir: tempfile::TempDir,
    running: Option<(Child, ChildStdin)>,
}

impl NatsServer {
    /// A server on a free port, not started yet (for "NATS is down from the start").
    pub fn new() -> NatsServer {
        let dir = tempfile::Builder::new()
            .prefix("catalogd-nats-")
            .tempdir()
            .expect("create a temp dir");
        NatsServer {
            port: crate::free_port(),
            dir,
            running: None,
        }
    }

    /// A started server.
    pub fn start() -> NatsServer {
        let mut server = NatsServer::new();
        server.start_again();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Starts the server (on the same port and store as before) and waits until it accepts
    /// connections.
    pub fn start_again(&mut self) {
        assert!(self.running.is_none(), "nats-server is already running");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("catalogd-test-nats")
            .arg(self.dir.path())
            .arg(self.port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server (is it installed?)");
        let stdin = child.stdin.take().expect("piped stdin");
        self.running = Some((child, stdin));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some((child, _)) = &mut self.running {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("nats-server exited with {status}: {}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server cleanly and waits until it is gone and the port is closed.
    pub fn stop(&mut self) {
        let Some((mut child, stdin)) = self.running.take() else {
            return;
        };
        drop(stdin);
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for NatsServer {
    fn default() -> NatsServer {
        NatsServer::new()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
