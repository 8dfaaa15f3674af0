//! A PostgreSQL server for integration tests: one per test process, started on first use, gone
//! when the process exits, however it exits.
//!
//! `initdb` makes a throw-away cluster (trust auth, superuser `postgres`) in a temp directory
//! and `postgres` serves it on a free loopback port. PostgreSQL refuses to run as root, so when
//! the tests do, the cluster belongs to the `postgres` user and both run as it.
//!
//! Both run under a small shell wrapper whose stdin is a pipe held by this process and never
//! closed: when the test process ends (even killed), the pipe closes, the wrapper's `read`
//! returns, and it stops the server and removes the directory. No server outlives its tests.
//!
//! With `CATALOGD_TEST_PG_URL` set (a superuser URL of an existing server), that server is
//! used instead and nothing is started.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::OnceCell;

/// A superuser URL of an existing server to use instead of starting one.
pub const URL_ENV: &str = "CATALOGD_TEST_PG_URL";

/// How long a fresh cluster may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Creates the cluster (unless a previous attempt did), starts `postgres` in the background,
/// then waits for stdin (through fd 3, because a background job's stdin is /dev/null) to reach
/// end-of-file and stops the server with SIGINT (fast shutdown). End-of-file is sticky, so a
/// test process that dies while `initdb` runs still gets its server stopped as soon as it has
/// started. SIGINT is repeated until the server is gone because a background job of a
/// non-interactive shell starts with SIGINT ignored: one sent before postgres installs its
/// handler is lost. If the server exits by itself, the wrapper exits too, which the harness
/// notices.
/// `$1` is the cluster directory (data in `$1/data`, socket and logs in `$1`), `$2` the port.
/// The server is fast because it never syncs (`fsync=off`), not because it acknowledges
/// commits early: `synchronous_commit` keeps its default, `on`, which the daemon requires.
const WRAPPER: &str = r#"
exec 3<&0
if [ ! -d "$1/data" ]; then
    initdb -D "$1/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C \
        >"$1/initdb.log" 2>&1 || exit 1
fi
postgres -D "$1/data" -p "$2" -k "$1" -c listen_addresses=127.0.0.1 \
    -c fsync=off -c full_page_writes=off \
    -c max_connections=200 >"$1/postgres.log" 2>&1 &
pid=$!
(read _ <&3; while kill -INT "$pid" 2>/dev/null; do sleep 0.1; done) &
wait "$pid" && rm -rf "$1"
"#;

static SERVER: OnceCell<Server> = OnceCell::const_new();

struct Server {
    admin_url: String,
    /// Never dropped (statics are not): see the module comment.
    _stdin: Option<ChildStdin>,
    _wrapper: Option<Child>,
}

/// The superuser URL of the shared server, starting it on first use.
pub async fn admin_url() -> &'static str {
    &SERVER.get_or_init(start).await.admin_url
}

/// Creates a new, empty database on the shared server and returns its URL.
pub async fn fresh_database_url() -> String {
    let admin_url = admin_url().await;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("connect to the test server: {e}"));
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    let _ = admin.close().await;
    let mut url = url::Url::parse(admin_url).expect("admin url parses");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

async fn start() -> Server {
    if let Ok(url) = std::env::var(URL_ENV) {
        return Server {
            admin_url: url,
            _stdin: None,
            _wrapper: None,
        };
    }
    let as_root = running_as_root();
    if as_root {
        ensure_postgres_user();
    }
    let dir = tempfile::Builder::new()
        .prefix("catalogd-pg-")
        .tempdir()
        .expect("create a temp dir")
        .keep();
    if as_root {
        run(Command::new("chown").arg("postgres:postgres").arg(&dir));
    }
    // A port that was free a moment ago can be taken before postgres binds it: try again.
    let mut last_log = String::new();
    for _ in 0..3 {
        let port = crate::free_port();
        let mut wrapper = command(as_root, "sh");
        wrapper
            .arg("-c")
            .arg(WRAPPER)
            .arg("catalogd-test-postgres")
            .arg(&dir)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = wrapper.spawn().expect("spawn the postgres wrapper");
        let stdin = child.stdin.take();
        let admin_url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        match wait_ready(&admin_url, &mut child).await {
            Ok(()) => {
                return Server {
                    admin_url,
                    _stdin: stdin,
                    _wrapper: Some(child),
                }
            }
            Err(()) => last_log = read_logs(&dir),
        }
    }
    panic!(
        "test postgres in {} did not start:\n{last_log}",
        dir.display()
    );
}

/// Polls until the server accepts a connection. `Err` if the server exited; panics at the
/// deadline.
async fn wait_ready(admin_url: &str, wrapper: &mut Child) -> Result<(), ()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match PgConnection::connect(admin_url).await {
            Ok(connection) => {
                let _ = connection.close().await;
                return Ok(());
            }
            Err(error) => {
                if let Ok(Some(_)) = wrapper.try_wait() {
                    return Err(());
                }
                assert!(
                    Instant::now() < deadline,
                    "test postgres not ready after {READY_TIMEOUT:?}: {error}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `program`, run as the `postgres` user when we are root.
fn command(as_root: bool, program: &str) -> Command {
    if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", program]);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

fn ensure_postgres_user() {
    let exists = Command::new("id")
        .arg("postgres")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !exists {
        run(Command::new("useradd").args([
            "--system",
            "--home-dir",
            "/var/lib/postgresql",
            "--shell",
            "/bin/sh",
            "postgres",
        ]));
    }
}

fn read_logs(dir: &Path) -> String {
    ["initdb.log", "postgres.log"]
        .iter()
        .map(|name| {
            let path: PathBuf = dir.join(name);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| format!("({e})"));
            format!("--- {}\n{text}", path.display())
        })
        .collect::<Vec<_>>()
        .join("\n")
}
