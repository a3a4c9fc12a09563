//! The page-load history: storing stitched [`PageLoad`]s in SQLite (schema in
//! `migrations/0003_page_loads.sql`), the background writer, retention, the queries behind the
//! CLI and the dashboard, HAR 1.2 export, and the `history` / `show` / `export` / `compare`
//! commands. Every SQL statement of the daemon is in this module.
//!
//! - [`db`]: opening the database (migrations, WAL, permissions) and `daemon_runs`.
//! - [`store`]: one transaction per page load (or per batch) over every table.
//! - [`writer`]: a bounded queue in front of the store, batching, drop and error counters;
//!   it reports each stored row's summary (the live feed's `page_load` event).
//! - [`retention`]: pruning by age and by count, and its timer task.
//! - [`query`]: filtered, sorted, paged listings and single page loads.
//! - [`counts`]: client names and the busiest hosts and clients.
//! - [`baselines`]: the `baselines` table (reference fetches, stored whole).
//! - [`baseline`]: the latest reference fetch of a URL (`tracer fetch`) and the comparison.
//! - [`har`]: HAR 1.2 export.
//! - [`render`]: terminal output (tables, the waterfall).
//! - [`cli`]: the subcommands, wired in `main.rs`.
//!
//! Times: page loads carry CLOCK_MONOTONIC ns (the kernel's clock). They are turned into unix
//! ms once, when stored, with a [`WallOffset`](crate::clock::WallOffset); the row's
//! `started_at_ms` is the anchor from which every later wall-clock time of that page load is
//! derived (monotonic time restarts at boot, so the offset of the day it was read back would be
//! wrong).
use std::time::Duration;

use crate::stitch::model::PageLoad;

pub mod baseline;
pub mod baselines;
pub mod cli;
pub mod counts;
pub mod db;
pub mod db_path;
pub mod har;
pub mod query;
pub mod render;
pub mod retention;
pub mod store;
pub mod writer;

pub use baseline::{Baseline, Comparison, compare, latest_baseline};
pub use har::to_har;
pub use query::{Filter, Page, PageLoadSummary, PageRequest, QueryError, Sort, StatusClass, get, list};
pub use retention::{RetentionConfig, parse_retain, prune, spawn_pruner};
pub use store::{insert_page_load, insert_page_loads, summary_of};
pub use writer::{HistoryCounters, HistorySender, OnStored, WriterConfig, WriterHandle, spawn_writer};
pub use db::record_run_counters;

/// A page load as stored: its row id, the wall-clock anchor (`page_loads.started_at_ms`) and
/// the page load itself (`detail_json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredPageLoad {
    pub id: i64,
    /// Unix ms of `page.started_ns`.
    pub started_at_ms: i64,
    pub page: PageLoad,
}

impl StoredPageLoad {
    /// Unix time in ms (fractional) of a monotonic timestamp of this page load.
    pub fn wall_ms(&self, monotonic_ns: u64) -> f64 {
        self.started_at_ms as f64 + (monotonic_ns as f64 - self.page.started_ns as f64) / 1e6
    }
}

impl From<StoredPageLoad> for (i64, PageLoad) {
    fn from(s: StoredPageLoad) -> Self {
        (s.id, s.page)
    }
}

/// `30d`, `12h`, `15m`, `45s`: a whole number followed by one unit (s, m, h, d).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let unit_at = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(unit_at);
    let bad = || format!("invalid duration {s:?}: expected a whole number followed by s, m, h or d (e.g. 30d, 12h)");
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).map(Duration::from_secs).ok_or_else(|| format!("invalid duration {s:?}: too large"))
}

/// A point in time for `--since` / `--until`: a duration ago (`1h`, `30m`, `2d`) or an RFC 3339
/// timestamp (`2026-04-14T10:00:00Z`). Returns unix ms.
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(d) = parse_duration(s) {
        return Ok(now_ms.saturating_sub(d.as_millis().min(i64::MAX as u128) as i64));
    }
    match time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339) {
        Ok(t) => Ok((t.unix_timestamp_nanos() / 1_000_000) as i64),
        Err(_) => Err(format!(
            "invalid time {s:?}: expected a duration ago (30m, 1h, 2d) or an RFC 3339 timestamp (2026-04-14T10:00:00Z)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(12 * 3600));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration(" 45s ").unwrap(), Duration::from_secs(45));
        for bad in ["", "d", "30", "30w", "-1d", "1.5h", "30 d", "1d2h", "99999999999999999999d"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("invalid duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn times() {
        let now = 1_776_000_000_000;
        assert_eq!(parse_time("1h", now).unwrap(), now - 3_600_000);
        assert_eq!(parse_time("2d", now).unwrap(), now - 2 * 86_400_000);
        assert_eq!(parse_time("2026-04-14T10:00:00Z", now).unwrap(), 1_776_160_800_000);
        assert_eq!(parse_time("2026-04-14T12:00:00.5+02:00", now).unwrap(), 1_776_160_800_500);
        let e = parse_time("yesterday", now).unwrap_err();
        assert!(e.contains("RFC 3339"), "{e}");
    }
}
