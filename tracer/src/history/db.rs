//! The SQLite database: opened (and created 0600 in a 0700 directory) at start-up, with the
//! migrations in `migrations/` applied and WAL on; and `daemon_runs`, one row per start of the
//! daemon (when it ran, its probes, what it lost).
use std::{os::unix::fs::PermissionsExt, path::Path, str::FromStr, time::Duration};

use anyhow::Context as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::clock::now_unix_ms;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub async fn open(path: &Path) -> anyhow::Result<SqlitePool> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod 0700 {}", dir.display()))?;
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options(path)?.create_if_missing(true))
        .await
        .with_context(|| format!("opening database {}", path.display()))?;
    chmod_private(path)?;
    MIGRATOR.run(&pool).await.with_context(|| format!("migrating {}", path.display()))?;
    Ok(pool)
}

fn options(path: &Path) -> anyhow::Result<SqliteConnectOptions> {
    Ok(SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .with_context(|| format!("database path {}", path.display()))?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5)))
}

/// Creates `path` 0600 when missing (never through a symlink), and makes it 0600 when not.
fn create_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    chmod_private(path)
}

/// 0600, through a descriptor opened without following a symlink (a chmod by path would
/// follow one to whatever it points at).
fn chmod_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("opening {} to make it private", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600)).with_context(|| format!("chmod 0600 {}", path.display()))
}

/// The daemon's connections to its database, kept apart so that a slow reader never holds up
/// the history writer:
/// * `writer`: one connection, the history writer's alone (page loads as they complete);
/// * `maintenance`: one connection for the other writes (run records, retention, the baselines
///   `POST /api/fetch` stores), which are rare and may wait for each other;
/// * `reader`: read-only connections for the API, the dashboard and the metrics' start-up
///   read, each statement interrupted after [`ReaderOptions::statement_timeout`] (an
///   `url=` substring scan over a large history can take seconds).
///
/// SQLite's WAL lets the readers read while the writer writes; only writers wait for each
/// other (for at most `busy_timeout`, 5 s).
#[derive(Clone, Debug)]
pub struct Pools {
    pub writer: SqlitePool,
    pub maintenance: SqlitePool,
    pub reader: SqlitePool,
}

#[derive(Clone, Copy, Debug)]
pub struct ReaderOptions {
    pub connections: u32,
    pub statement_timeout: Duration,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self { connections: 4, statement_timeout: Duration::from_secs(5) }
    }
}

/// Opens (creates, migrates) the database and returns its three pools ([`Pools`]). Every
/// connection is opened now and kept for the run (no idle timeout, no maximum lifetime).
pub async fn open_pools(path: &Path, reader: ReaderOptions) -> anyhow::Result<Pools> {
    // Created 0600 before SQLite opens it, whatever the umask: SQLite gives the -wal and -shm
    // files it makes later the database file's mode.
    create_private(path)?;
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options(path)?.create_if_missing(true))
        .await
        .with_context(|| format!("opening database {}", path.display()))?;
    chmod_private(path)?;
    MIGRATOR.run(&writer).await.with_context(|| format!("migrating {}", path.display()))?;
    let maintenance = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options(path)?)
        .await
        .with_context(|| format!("opening database {} (maintenance connection)", path.display()))?;
    let timeout = reader.statement_timeout;
    let reader = SqlitePoolOptions::new()
        .max_connections(reader.connections.max(1))
        .min_connections(reader.connections.max(1))
        .idle_timeout(None)
        .max_lifetime(None)
        .after_connect(move |conn, _| Box::pin(async move { arm_statement_timeout(conn, timeout).await }))
        .before_acquire(move |conn, _| Box::pin(async move { arm_statement_timeout(conn, timeout).await.map(|()| true) }))
        .connect_with(options(path)?.read_only(true))
        .await
        .with_context(|| format!("opening database {} (read-only connections)", path.display()))?;
    Ok(Pools { writer, maintenance, reader })
}

/// SQLite has no statement timeout; its progress handler, called every 1000 virtual-machine
/// steps (microseconds), interrupts the statement once `timeout` has passed since the
/// connection was taken from the pool, which a query on the pool does for each statement. The
/// statement then fails with SQLITE_INTERRUPT ([`is_interrupted`]).
async fn arm_statement_timeout(conn: &mut sqlx::SqliteConnection, timeout: Duration) -> Result<(), sqlx::Error> {
    let started = std::time::Instant::now();
    conn.lock_handle().await?.set_progress_handler(1000, move || started.elapsed() < timeout);
    Ok(())
}

/// A statement stopped by the reader's statement timeout (SQLITE_INTERRUPT, code 9).
pub fn is_interrupted(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("9"))
}

/// Records a start of the daemon; returns the run's id.
pub async fn record_start(pool: &SqlitePool, kernel: &str, probes_json: &str) -> anyhow::Result<i64> {
    let (now, version) = (now_unix_ms(), env!("CARGO_PKG_VERSION"));
    let id = sqlx::query!(
        "INSERT INTO daemon_runs (started_at_ms, version, kernel, probes_json) VALUES (?, ?, ?, ?)",
        now,
        version,
        kernel,
        probes_json
    )
    .execute(pool)
    .await
    .context("recording the daemon start")?
    .last_insert_rowid();
    Ok(id)
}

/// Saves the run's totals (lost in the kernel, dropped in user space).
pub async fn record_run_counters(pool: &SqlitePool, run_id: i64, lost: u64, dropped: u64) -> anyhow::Result<()> {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let (lost, dropped) = (clamp(lost), clamp(dropped));
    sqlx::query!("UPDATE daemon_runs SET lost_events = ?, dropped_events = ? WHERE id = ?", lost, dropped, run_id)
        .execute(pool)
        .await
        .context("recording the run's lost/dropped counters")?;
    Ok(())
}

/// Records the daemon's orderly stop.
pub async fn record_stop(pool: &SqlitePool, id: i64) -> anyhow::Result<()> {
    let now = now_unix_ms();
    sqlx::query!("UPDATE daemon_runs SET stopped_at_ms = ? WHERE id = ?", now, id)
        .execute(pool)
        .await
        .context("recording the daemon stop")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reader pool cannot write, and a runaway read is interrupted while the writer's own
    /// connection goes on writing.
    #[tokio::test]
    async fn reads_are_read_only_and_bounded_and_do_not_hold_up_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let pools = open_pools(&path, ReaderOptions { connections: 2, statement_timeout: Duration::from_millis(300) }).await.unwrap();
        let e = sqlx::query("INSERT INTO daemon_runs (started_at_ms, version, kernel, probes_json) VALUES (1, 'v', 'k', '[]')")
            .execute(&pools.reader)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("readonly"), "{e}");
        // Never ends on its own: counts forever.
        let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
        let reader = pools.reader.clone();
        let slow = tokio::spawn(async move {
            let t = std::time::Instant::now();
            (sqlx::query(endless).fetch_one(&reader).await.map(|_| ()), t.elapsed())
        });
        // Meanwhile the writer writes.
        let id = record_start(&pools.writer, "6.18", "[]").await.unwrap();
        let (result, took) = tokio::time::timeout(Duration::from_secs(20), slow).await.expect("the statement timeout fired").unwrap();
        let e = result.unwrap_err();
        assert!(is_interrupted(&e), "{e}");
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(10), "{took:?}");
        // The connection is re-armed for the next statement, which sees the writer's row.
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM daemon_runs WHERE id = ?").bind(id).fetch_one(&pools.reader).await.unwrap();
        assert_eq!(n, 1);
        for f in ["t.db", "t.db-wal", "t.db-shm"] {
            assert_eq!(std::fs::metadata(dir.path().join(f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
        }
    }

    #[tokio::test]
    async fn creates_private_db_and_records_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("tracer.db");
        let pool = open(&path).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        let id = record_start(&pool, "6.18", "[]").await.unwrap();
        record_stop(&pool, id).await.unwrap();
        let (stopped,): (Option<i64>,) = sqlx::query_as("SELECT stopped_at_ms FROM daemon_runs WHERE id = ?")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(stopped.unwrap() > 0);
        let mode: (String,) = sqlx::query_as("PRAGMA journal_mode").fetch_one(&pool).await.unwrap();
        assert_eq!(mode.0, "wal");
        // Opening again keeps the data (migrations already applied).
        drop(pool);
        let pool = open(&path).await.unwrap();
        let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM daemon_runs").fetch_one(&pool).await.unwrap();
        assert_eq!(n.0, 1);
    }
}
