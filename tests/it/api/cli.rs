//! The `catalogd` binary as an operator runs it: the quick start with a generated key,
//! `token`, `migrate`, `--config` on every subcommand, unknown keys, and graceful shutdown.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{database_url, integration, Backend};
use catalogd_testkit::Daemon;

/// How long a daemon may take to start listening.
const READY: Duration = Duration::from_secs(60);

fn catalogd(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_catalogd"));
    command.current_dir(dir).env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("CATALOGD__") {
            command.env_remove(key);
        }
    }
    command
}

fn mint(dir: &Path, extra: &[&str]) -> String {
    let output = catalogd(dir)
        .args([
            "token",
            "--tenant",
            "acme",
            "--scope",
            "integrations.admin",
            "--subject",
            "ops",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

async fn quick_start(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(backend, dir.path()).await;
    // No configuration at all besides the port and database: the key is generated.
    let mut daemon = Daemon::start(
        {
            let mut c = catalogd(dir.path());
            c.env("CATALOGD__HTTP__LISTEN", "127.0.0.1:0")
                .env("CATALOGD__DATABASE__URL", &url);
            c
        },
        READY,
    )
    .expect("catalogd serve starts");
    let key = dir.path().join("data/jwt-hs256.key");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "generated key is private");
    }
    let token = mint(dir.path(), &["--ttl", "10m"]);
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/api/v1/integrations", daemon.api))
        .bearer_auth(&token)
        .json(&integration("from-the-cli"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["createdBy"], "ops");
    assert_eq!(created["tenantId"], "acme");

    let status = daemon.terminate().unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    // The generated key is never printed.
    let secret = std::fs::read_to_string(&key).unwrap();
    let rest = daemon.rest_of_log();
    assert!(!rest.join("\n").contains(secret.trim()));
    // The stop logs its steps in order, each with the time since the signal, so an operator
    // whose pod is killed at the end of its grace period can see which step took the time.
    let mut from = 0;
    for step in [
        "stopping: checks held, draining requests",
        "stopping: requests drained elapsed_ms=",
        "stopping: monitor actors stopped elapsed_ms=",
        "stopping: check results written elapsed_ms=",
        "stopping: events relayed elapsed_ms=",
        ": stopped elapsed_ms=",
    ] {
        let found = rest[from..]
            .iter()
            .position(|line| line.contains(step))
            .unwrap_or_else(|| panic!("no {step:?} after line {from} in {rest:#?}"));
        from += found + 1;
    }
}

async fn config_flag_works_with_every_subcommand(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(backend, dir.path()).await;
    let config = dir.path().join("custom.toml");
    std::fs::write(
        dir.path().join("secret.key"),
        "a-test-key-with-enough-entropy-0123456789",
    )
    .unwrap();
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"{url}\"\n[auth]\njwt_secret_file = \"{}\"\n",
            dir.path().join("secret.key").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    for args in [
        vec!["--config", config, "migrate"],
        vec!["migrate", "--config", config],
    ] {
        let output = catalogd(dir.path()).args(&args).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let before = mint(dir.path(), &["--config", config]);
    let mut daemon = Daemon::start(
        {
            let mut c = catalogd(dir.path());
            c.args(["serve", "--config", config]);
            c
        },
        READY,
    )
    .expect("catalogd serve starts");
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/integrations", daemon.api))
        .bearer_auth(&before)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "a token minted with --config is accepted"
    );
    assert!(
        !dir.path().join("data/jwt-hs256.key").exists(),
        "no key generated when one is configured"
    );
    assert!(daemon.terminate().unwrap().success());

    let output = catalogd(dir.path())
        .args(["audit", "verify", "--config", config])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("intact"));
}

#[test]
fn unknown_configuration_keys_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[database]\nurll = \"sqlite://x\"\n").unwrap();
    let output = catalogd(dir.path())
        .args(["migrate", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("urll"));

    let output = catalogd(dir.path())
        .arg("migrate")
        .env("CATALOGD__MONITOR__INTERVALL", "5s")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("intervall"));

    let output = catalogd(dir.path())
        .args(["serve", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
}

#[test]
fn serve_help_explains_the_configuration() {
    let output = catalogd(Path::new("."))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "CATALOGD__SECTION__KEY",
        "--config",
        "[database]",
        "jwt_secret_file",
        "degraded_after",
    ] {
        assert!(help.contains(needle), "serve --help mentions {needle}");
    }
}

catalogd_testkit::both_backends!(quick_start, config_flag_works_with_every_subcommand);

/// `catalogd serve` in `dir` on the database `url`, on free ports, without NATS.
fn serve_on(dir: &Path, url: &str) -> Command {
    let mut command = catalogd(dir);
    command
        .arg("serve")
        .env("CATALOGD__HTTP__LISTEN", "127.0.0.1:0")
        .env("CATALOGD__METRICS__LISTEN", "127.0.0.1:0")
        .env("CATALOGD__NATS__URL", "")
        .env("CATALOGD__DATABASE__URL", url);
    command
}

/// Runs `command` (a `catalogd serve` expected to refuse to start) to its exit, which must come
/// within [`READY`]; returns the exit status and everything it printed.
fn exit_of(mut command: Command) -> (std::process::ExitStatus, String) {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + READY;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("catalogd serve did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, said)
}

/// SQLite is single-node: a second `catalogd serve` on the database file another one serves
/// refuses to start and says why, the first one is unaffected, and once it has stopped the
/// file can be served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_one_sqlite_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(Backend::Sqlite, dir.path()).await;
    let serve = || serve_on(dir.path(), &url);
    let mut first = Daemon::start(serve(), READY).expect("the first daemon starts");
    let (status, said) = exit_of(serve());
    assert!(!status.success(), "{said}");
    for needle in [
        "another catalogd is already serving the SQLite database",
        "catalogd.db",
        "single-node",
        "PostgreSQL",
    ] {
        assert!(said.contains(needle), "the refusal says {needle:?}: {said}");
    }
    let client = reqwest::Client::new();
    let ready = first
        .readyz(&client)
        .await
        .expect("the first daemon still serves");
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(first.terminate().unwrap().success());
    let mut again =
        Daemon::start(serve(), READY).expect("the file is free once the first has stopped");
    assert!(again.terminate().unwrap().success());
}

/// A PostgreSQL server that acknowledges commits it can lose (`synchronous_commit = off`) is
/// refused at start with an error saying why and how to go on; allowed, it starts with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_postgres_durability_is_refused_unless_allowed() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(Backend::Postgres, dir.path()).await;
    let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE \"{name}\" SET synchronous_commit = off"
    ))
    .execute(&mut connection)
    .await
    .unwrap();
    let serve = |allow: bool| {
        let mut command = serve_on(dir.path(), &url);
        if allow {
            command.env("CATALOGD__DATABASE__ALLOW_UNSAFE_DURABILITY", "true");
        }
        command
    };

    let (status, said) = exit_of(serve(false));
    assert!(!status.success(), "{said}");
    for needle in [
        "synchronous_commit = off",
        "database.allow_unsafe_durability = true",
    ] {
        assert!(said.contains(needle), "the refusal says {needle:?}: {said}");
    }

    let mut daemon = Daemon::start(serve(true), READY).expect("allowed, catalogd serve starts");
    assert!(
        daemon
            .startup_log()
            .iter()
            .any(|line| line.contains("WARN") && line.contains("allow_unsafe_durability = true")),
        "the start warns that durability is unsafe: {:#?}",
        daemon.startup_log()
    );
    let status = daemon.terminate().unwrap();
    assert!(
        status.success(),
        "graceful shutdown exits 0, got {status}: {:#?}",
        daemon.rest_of_log()
    );
}
