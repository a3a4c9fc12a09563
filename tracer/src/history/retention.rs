//! Retention: the oldest page loads go first, by age (`--retain 30d`) and/or by count. Their
//! DNS lookups, connections, TLS sessions and requests go with them (`ON DELETE CASCADE`, which
//! needs `PRAGMA foreign_keys=ON` on the connection: sqlx sets it by default and `db::open`
//! asks for it explicitly). Processes left without any page load are removed too.
//!
//! Deleting is done in chunks of a few hundred page loads, one transaction each, so that the
//! writer waits little. The cascades are only fast with indexes on the child key columns that
//! 0003 does not index (`requests.connection_id`, `requests.dns_lookup_id`,
//! `tls_sessions.connection_id`): without them SQLite scans `requests` and `tls_sessions` once
//! per deleted connection / lookup (measured: 5000 of 10000 page loads pruned in 70 s without,
//! 0.35 s with them).
use std::time::Duration;

use anyhow::Context as _;
use sqlx::SqlitePool;
use tokio::task::JoinHandle;

use super::parse_duration;
use crate::clock::now_unix_ms;

/// Page loads deleted per transaction, so that the writer is never held up for long.
const CHUNK: i64 = 500;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Keep page loads younger than this.
    pub retain: Option<Duration>,
    /// Keep at most this many page loads (the newest).
    pub max_page_loads: Option<u64>,
}

/// The daemon's default retention: page loads older than this are deleted, so that a history
/// of everyone's browsing does not grow for ever unnoticed (`--retain 0` keeps everything).
pub const DEFAULT_RETAIN: &str = "30d";

/// `--retain`: [`parse_retain`], or `0` to keep everything (None).
pub fn parse_retain_flag(s: &str) -> Result<Option<Duration>, String> {
    if s.trim() == "0" { Ok(None) } else { parse_retain(s).map(Some) }
}

/// `--retain`: a positive whole number followed by s, m, h or d (`30d`).
pub fn parse_retain(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s).map_err(|e| e.replacen("invalid duration", "invalid retention", 1))?;
    if d.is_zero() {
        return Err(format!("invalid retention {s:?}: must be more than zero"));
    }
    Ok(d)
}

/// Deletes page loads started before now - `retain`, then the oldest beyond `max_page_loads`.
/// Returns how many page loads were deleted.
pub async fn prune(pool: &SqlitePool, retain: Option<Duration>, max_page_loads: Option<u64>) -> anyhow::Result<u64> {
    let mut deleted = 0u64;
    if let Some(retain) = retain {
        let cutoff = now_unix_ms().saturating_sub(i64::try_from(retain.as_millis()).unwrap_or(i64::MAX));
        loop {
            let n = sqlx::query!(
                "DELETE FROM page_loads WHERE id IN
                     (SELECT id FROM page_loads WHERE started_at_ms < ? ORDER BY started_at_ms, id LIMIT ?)",
                cutoff,
                CHUNK
            )
            .execute(pool)
            .await
            .context("pruning page loads by age")?
            .rows_affected();
            deleted += n;
            if n < CHUNK as u64 {
                break;
            }
        }
    }
    if let Some(max) = max_page_loads {
        let keep = i64::try_from(max).unwrap_or(i64::MAX);
        loop {
            // The newest `keep` stay; delete the oldest of the rest, a chunk at a time.
            let n = sqlx::query!(
                "DELETE FROM page_loads WHERE id IN
                     (SELECT id FROM page_loads ORDER BY started_at_ms ASC, id ASC
                      LIMIT MIN(?, MAX(0, (SELECT COUNT(*) FROM page_loads) - ?)))",
                CHUNK,
                keep
            )
            .execute(pool)
            .await
            .context("pruning page loads by count")?
            .rows_affected();
            deleted += n;
            if n < CHUNK as u64 {
                break;
            }
        }
    }
    if deleted > 0 {
        sqlx::query!("DELETE FROM processes WHERE NOT EXISTS (SELECT 1 FROM page_loads WHERE process_id = processes.id)")
            .execute(pool)
        .await
        .context("pruning processes without page loads")?;
    }
    Ok(deleted)
}

/// Runs [`prune`] now and then every `every`, logging what it deleted and any error. Does
/// nothing (and returns a finished task) when the config limits nothing.
pub fn spawn_pruner(pool: SqlitePool, config: RetentionConfig, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        if config.retain.is_none() && config.max_page_loads.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match prune(&pool, config.retain, config.max_page_loads).await {
                Ok(0) => {}
                Ok(n) => tracing::info!("history: pruned {n} page loads"),
                Err(e) => tracing::warn!("history: pruning failed: {e:#}"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_values() {
        assert_eq!(parse_retain("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_retain("90m").unwrap(), Duration::from_secs(90 * 60));
        let e = parse_retain("0d").unwrap_err();
        assert!(e.contains("more than zero"), "{e}");
        let e = parse_retain("30 days").unwrap_err();
        assert!(e.starts_with("invalid retention \"30 days\""), "{e}");
        assert!(e.contains("s, m, h or d"), "{e}");
        assert_eq!(parse_retain_flag("0").unwrap(), None, "--retain 0 keeps everything");
        assert_eq!(parse_retain_flag(DEFAULT_RETAIN).unwrap(), Some(Duration::from_secs(30 * 86_400)));
        assert!(parse_retain_flag("0d").is_err());
    }

    /// With the daemon's default, a page load 31 days old goes and one 29 days old stays.
    #[tokio::test]
    async fn the_default_retention_deletes_what_is_older_than_30_days() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::history::db::open(&dir.path().join("t.db")).await.unwrap();
        let day_ms = 86_400_000i64;
        // The same page load, stored once as started 31 days ago and once 29 days ago.
        let start_ns = 1_000_000_000u64;
        let mut ids = Vec::new();
        for days in [31, 29] {
            let wall = crate::clock::WallOffset((now_unix_ms() - days * day_ms) * 1_000_000 - start_ns as i64);
            ids.extend(crate::history::insert_page_loads(&pool, &[crate::stitch::sample::redirect_page(start_ns)], wall).await.unwrap());
        }
        let retain = parse_retain_flag(DEFAULT_RETAIN).unwrap();
        assert_eq!(prune(&pool, retain, None).await.unwrap(), 1);
        let left: Vec<(i64,)> = sqlx::query_as("SELECT id FROM page_loads").fetch_all(&pool).await.unwrap();
        assert_eq!(left, vec![(ids[1],)]);
        // --retain 0: nothing is deleted.
        assert_eq!(prune(&pool, parse_retain_flag("0").unwrap(), None).await.unwrap(), 0);
    }
}
