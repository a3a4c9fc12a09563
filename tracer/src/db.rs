//! The SQLite history: opened (and created 0600 in a 0700 directory) at start-up, with the
//! migrations in `migrations/` applied and WAL on.
use std::{os::unix::fs::PermissionsExt, path::Path, str::FromStr, time::Duration};

use anyhow::Context as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::clock::now_unix_ms;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub async fn open(path: &Path) -> anyhow::Result<SqlitePool> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("chmod 0700 {}", dir.display()))?;
        }
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

pub async fn record_start(pool: &SqlitePool, kernel: &str, probes_json: &str) -> anyhow::Result<i64> {
    let id = sqlx::query("INSERT INTO daemon_runs (started_at_ms, version, kernel, probes_json) VALUES (?, ?, ?, ?)")
        .bind(now_unix_ms())
        .bind(env!("CARGO_PKG_VERSION"))
        .bind(kernel)
        .bind(probes_json)
        .execute(pool)
        .await
        .context("recording the daemon start")?
        .last_insert_rowid();
    Ok(id)
}

pub async fn record_stop(pool: &SqlitePool, id: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE daemon_runs SET stopped_at_ms = ? WHERE id = ?")
        .bind(now_unix_ms())
        .bind(id)
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
