//! Opening the PostgreSQL backend: connection settings and the embedded PostgreSQL
//! migrations. The queries are shared with SQLite (written once, generic over
//! [`super::backend::Backend`]).

use std::str::FromStr;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::{StoreError, StoreOptions};

/// How long PostgreSQL lets one of the daemon's sessions sit idle inside a transaction.
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "2s";

/// Connects to the server named by `options.url` and migrates the database. The password
/// from `database.password_file` / `password_env`, if any, replaces one in the URL.
pub(super) async fn connect(options: &StoreOptions) -> Result<PgPool, StoreError> {
    // A daemon never leaves a transaction idle: a session that does was stopped (SIGSTOP, a
    // stall) in the middle of a write. PostgreSQL ends it, so that the rows it locked (an
    // audit chain's head, a shard's lease) do not hold every other node up until it wakes.
    let mut connect = PgConnectOptions::from_str(&options.url)?.options([(
        "idle_in_transaction_session_timeout",
        IDLE_IN_TRANSACTION_TIMEOUT,
    )]);
    if let Some(password) = &options.password {
        connect = connect.password(password.expose_secret());
    }
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .connect_with(connect)
        .await?;
    check_durability(&pool, options.allow_unsafe_durability).await?;
    // sqlx takes an advisory lock around the migrations, so several daemons starting at
    // once against one database migrate it exactly once.
    sqlx::migrate!("migrations/postgres").run(&pool).await?;
    Ok(pool)
}

/// Refuses a server that acknowledges commits it can lose (`synchronous_commit = off`):
/// catalogd answers a change, and publishes its event, only once it is committed, so such a
/// commit lost in a crash is a transition without its audit entry or an event never sent.
/// `local`, `remote_write`, `on` and `remote_apply` all wait for the local WAL flush.
async fn check_durability(pool: &PgPool, allowed: bool) -> Result<(), StoreError> {
    let setting: String = sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
        .fetch_one(pool)
        .await?;
    if setting != "off" {
        return Ok(());
    }
    let refusal = StoreError::UnsafeDurability(setting);
    if !allowed {
        tracing::error!(%refusal, "refusing to start");
        return Err(refusal);
    }
    tracing::warn!(
        %refusal,
        "starting anyway: database.allow_unsafe_durability = true"
    );
    Ok(())
}
