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
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .with_context(|| format!("database path {}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .with_context(|| format!("opening database {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    MIGRATOR.run(&pool).await.with_context(|| format!("migrating {}", path.display()))?;
    Ok(pool)
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
