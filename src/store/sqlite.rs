//! Opening the SQLite backend: connection settings and the embedded SQLite migrations. The
//! queries are shared with PostgreSQL (written once, generic over
//! [`super::backend::Backend`]).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::{StoreError, StoreOptions};

/// How long a statement waits for another connection's write lock before failing with
/// `SQLITE_BUSY`. Writers hold the lock for one short transaction each.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often [`checkpoint_in_background`] copies the WAL's committed pages into the database
/// file: often enough that the WAL stays about as small as SQLite's own checkpoints every
/// 1,000 pages kept it.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Opens (creating if missing) the database named by `options.url` and migrates it.
pub(super) async fn connect(options: &StoreOptions) -> Result<SqlitePool, StoreError> {
    without_memory_statistics();
    let synchronous = if options.sqlite_synchronous_full {
        SqliteSynchronous::Full
    } else {
        SqliteSynchronous::Normal
    };
    let connect = SqliteConnectOptions::from_str(&options.url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        // A batch's multi-row statements keep a statement journal, which SQLite spills to a
        // temporary file past 64 KiB: in memory it cost no `pwrite`s (5% of the daemon's CPU
        // at 3,000 checks/s, bench F4).
        // (A bigger page cache per connection saved another 2% in F4, the `pread`s of pages
        // read back, but each of the pool's connections grows its own: 32 MiB each added
        // about 1.8 KiB per integration to F1 at 100k. SQLite's default, 2 MiB, stays.)
        .pragma("temp_store", "memory");
    let in_memory = is_in_memory(&options.url);
    // No checkpoint inside a commit: by default the commit that takes the WAL past 1,000
    // pages copies them into the database file, holding up that writer and every writer
    // queued behind the write gate (a tenth of the SQLite threads' time at 10k
    // transitions/s, bench F6). `checkpoint_in_background` does it on another connection,
    // which WAL mode lets run beside the writer.
    let connect = if in_memory {
        connect
    } else {
        connect.pragma("wal_autocheckpoint", "0")
    };
    let pool = if in_memory {
        // An in-memory database lives as long as one of its connections does, and a shared
        // cache between several would trade SQLITE_BUSY for table-level SQLITE_LOCKED errors
        // that the busy timeout does not cover: keep exactly one connection, forever.
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        if let Some(parent) = connect.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
            }
        }
        SqlitePoolOptions::new().max_connections(options.max_connections.max(1))
    };
    // A connection to a local file cannot go stale the way a network connection can, so the
    // pool's ping before every acquire (a round trip to the connection's worker thread: a
    // channel send, a futex wake and a context switch each way) buys nothing. It showed as
    // 3% of the daemon's CPU in F4's profile (the history writer's and uptime reads'
    // acquires) and it doubles the round trips of every API read.
    let pool = pool
        .test_before_acquire(false)
        .connect_with(connect)
        .await?;
    sqlx::migrate!("migrations/sqlite").run(&pool).await?;
    if !in_memory {
        checkpoint_in_background(pool.clone());
    }
    Ok(pool)
}

/// Copies the WAL's committed pages into the database file every [`CHECKPOINT_EVERY`], on a
/// connection of `pool` and without the write gate: a `PASSIVE` checkpoint takes no lock a
/// writer waits for, so it runs on its connection's thread while writers commit. Pages a
/// reader may still need stay in the WAL for the next round, as with SQLite's own
/// checkpoints; once every page is copied, the next writer starts the WAL again from its
/// beginning, so it does not grow. Ends when the pool is closed (or with the runtime).
fn checkpoint_in_background(pool: SqlitePool) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(CHECKPOINT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            every.tick().await;
            if pool.is_closed() {
                return;
            }
            match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                Ok(_) => failing = false,
                Err(_) if pool.is_closed() => return,
                // Once per run of failures: the WAL grows until one succeeds.
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "SQLite checkpoint failed; the WAL grows until one succeeds");
                }
                Err(_) => {}
            }
        }
    });
}

/// Turns off SQLite's memory statistics for the process, once, before its first connection.
///
/// With them on (the library's default), every `sqlite3_malloc` and `sqlite3_free` takes one
/// process-wide mutex to count bytes nobody reads here. sqlx copies each column value of a
/// row on its connection's worker thread and frees the copies on whichever thread drops the
/// row, so the worker and the runtime's threads fought over that mutex on every row read:
/// futex waits in the start-up's page reads and in every API read. The setting only takes
/// before SQLite initializes (it is refused, harmlessly, after), which is why it runs
/// before the first connection opens.
fn without_memory_statistics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_config` must not run while another thread uses SQLite. This runs
        // once, before the store's first connection; in the daemon every connection is
        // opened by `connect`, after this. A process that opened SQLite some other way first
        // (a test reading around the store) gets SQLITE_MISUSE here, and nothing changes.
        let status =
            unsafe { libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS, 0) };
        if status != libsqlite3_sys::SQLITE_OK {
            tracing::debug!(
                status,
                "SQLite was initialized already; memory statistics stay on"
            );
        }
    });
}

/// The database file `url` names; `None` for an in-memory database.
pub(super) fn file_of(url: &str) -> Result<Option<PathBuf>, StoreError> {
    if is_in_memory(url) {
        return Ok(None);
    }
    let options = SqliteConnectOptions::from_str(url)?;
    Ok(Some(options.get_filename().to_path_buf()))
}

/// Held by the one daemon serving a SQLite database: an exclusive lock on a file beside it
/// (`<database>.serve.lock`), released by the kernel when the process ends however it ends.
/// SQLite is single-node (DESIGN §9): two daemons on one file would both monitor every
/// integration and race each other's transitions.
#[derive(Debug)]
pub struct ServeLock {
    _file: std::fs::File,
}

/// Takes the serve lock of the database file `database`, or says who holds it.
pub(super) fn lock_for_serving(database: &Path) -> Result<ServeLock, StoreError> {
    let mut name = database.as_os_str().to_owned();
    name.push(".serve.lock");
    let path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| StoreError::Unavailable(format!("{}: {error}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(ServeLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse(database.to_path_buf())),
        Err(std::fs::TryLockError::Error(error)) => Err(StoreError::Unavailable(format!(
            "{}: {error}",
            path.display()
        ))),
    }
}

/// Whether `url` names an in-memory database (`sqlite::memory:`, `sqlite://:memory:`,
/// `sqlite:name?mode=memory`).
fn is_in_memory(url: &str) -> bool {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    path.ends_with(":memory:") || query.split('&').any(|pair| pair == "mode=memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With SQLite's own checkpoints off, committed pages still reach the database file
    /// while the pool stays open, and the WAL is started again rather than grown.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn committed_pages_reach_the_database_file_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.db");
        let options = StoreOptions {
            url: format!("sqlite://{}", file.display()),
            password: None,
            max_connections: 4,
            sqlite_synchronous_full: false,
            allow_unsafe_durability: false,
            default_thresholds: Default::default(),
        };
        let pool = connect(&options).await.unwrap();
        let (autocheckpoint,): (i64,) = sqlx::query_as("PRAGMA wal_autocheckpoint")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(autocheckpoint, 0, "commits must not checkpoint");
        sqlx::query("CREATE TABLE filler (n INTEGER, pad TEXT)")
            .execute(&pool)
            .await
            .unwrap();
        let size = |suffix: &str| {
            let mut name = file.clone().into_os_string();
            name.push(suffix);
            std::fs::metadata(name).map_or(0, |m| m.len())
        };
        let before = size("");
        let mut wal_after_first_round = 0;
        for round in 0..3 {
            // About 4 MB a round, far past the 1,000 pages at which SQLite would checkpoint.
            for _ in 0..40 {
                sqlx::query(
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
                     WHERE x < 100) INSERT INTO filler SELECT x, hex(randomblob(500)) FROM c",
                )
                .execute(&pool)
                .await
                .unwrap();
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while size("") < before + (round + 1) * 3_000_000 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "round {round}: the database file is {} bytes, the WAL {}",
                    size(""),
                    size("-wal")
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // The WAL starts again only at a write that finds every page copied: wait until
            // the file stops growing for a few checkpoints (the last one found nothing new).
            let mut settled = (size(""), std::time::Instant::now());
            while settled.1.elapsed() < CHECKPOINT_EVERY * 3 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "round {round}: the database file kept growing"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
                if size("") != settled.0 {
                    settled = (size(""), std::time::Instant::now());
                }
            }
            if round == 0 {
                wal_after_first_round = size("-wal");
            }
        }
        assert!(
            size("-wal") <= wal_after_first_round * 2,
            "the WAL grew from {wal_after_first_round} to {} bytes",
            size("-wal")
        );
    }

    #[test]
    fn recognises_in_memory_urls() {
        assert!(is_in_memory("sqlite::memory:"));
        assert!(is_in_memory("sqlite://:memory:"));
        assert!(is_in_memory("sqlite:file:x?mode=memory&cache=shared"));
        assert!(!is_in_memory("sqlite://data/catalogd.db"));
        assert!(!is_in_memory("sqlite://data/memory.db"));
    }
}
