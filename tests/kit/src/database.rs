//! The two databases every storage-facing test runs against, and a fresh, empty one of either
//! for each test: a SQLite file in a temp directory, or a new database on the one PostgreSQL
//! server of the test process ([`crate::postgres`]).

use std::path::Path;

/// The two databases every storage-facing test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database: its URL, and for SQLite the directory that holds the file
/// (removed on drop).
pub struct FreshDatabase {
    pub backend: Backend,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl FreshDatabase {
    /// A fresh database of `backend`, SQLite in a temp directory of its own.
    pub async fn new(backend: Backend) -> FreshDatabase {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("create a temp dir");
                FreshDatabase {
                    backend,
                    url: database_url(backend, dir.path()).await,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => FreshDatabase {
                backend,
                url: database_url(backend, Path::new("")).await,
                _dir: None,
            },
        }
    }
}

/// The URL of a fresh database of `backend`; for SQLite a file `catalogd.db` in `dir`, which
/// the caller keeps (a daemon's own directory).
pub async fn database_url(backend: Backend, dir: &Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("catalogd.db").display()),
        Backend::Postgres => crate::postgres::fresh_database_url().await,
    }
}

/// Generates a `sqlite` and a `postgres` test from each `async fn name(backend: Backend)` in
/// scope.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}
