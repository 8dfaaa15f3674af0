//! Opening the PostgreSQL backend: connection settings and the embedded PostgreSQL
//! migrations. The queries are shared with SQLite (written once, generic over
//! [`super::backend::Backend`]).

use std::str::FromStr;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::{StoreError, StoreOptions};

/// Connects to the server named by `options.url` and migrates the database. The password
/// from `database.password_file` / `password_env`, if any, replaces one in the URL.
pub(super) async fn connect(options: &StoreOptions) -> Result<PgPool, StoreError> {
    let mut connect = PgConnectOptions::from_str(&options.url)?;
    if let Some(password) = &options.password {
        connect = connect.password(password.expose_secret());
    }
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .connect_with(connect)
        .await?;
    // sqlx takes an advisory lock around the migrations, so several daemons starting at
    // once against one database migrate it exactly once.
    sqlx::migrate!("migrations/postgres").run(&pool).await?;
    Ok(pool)
}
