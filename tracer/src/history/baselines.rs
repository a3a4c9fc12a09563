//! The `baselines` table (migration 0002): reference fetches (`tracer fetch --db`, the
//! dashboard's `POST /api/fetch`), each stored whole as JSON with its URL, time, total and
//! failure code. [`super::baseline`] compares traced page loads with them.

use anyhow::Context as _;
use sqlx::sqlite::SqlitePool;

use crate::fetch::model::PageLoad;

/// One stored baseline.
#[derive(Clone, Debug)]
pub struct StoredBaseline {
    pub id: i64,
    pub url: String,
    pub fetched_at_ms: i64,
    pub total_ms: f64,
    pub error: Option<String>,
    pub load: PageLoad,
}

/// The failure code a baseline is stored with: the load's own, else its first entry's.
pub fn error_code(load: &PageLoad) -> Option<String> {
    load.error.as_ref().or_else(|| load.entries.iter().find_map(|e| e.failure.as_ref())).map(|f| f.code.to_string())
}

/// Stores a load as a baseline in the database at `db` (`tracer fetch --db`), opened (and
/// migrated) for it; returns the row id.
pub async fn store_in(db: &std::path::Path, load: &PageLoad) -> anyhow::Result<i64> {
    let pool = super::db::open(db).await?;
    let id = store_baseline(&pool, load).await?;
    pool.close().await;
    Ok(id)
}

/// Stores a load as a baseline for its URL; returns the row id.
pub async fn store_baseline(pool: &SqlitePool, load: &PageLoad) -> anyhow::Result<i64> {
    let json = serde_json::to_string(load).context("serialising the page load")?;
    let error = error_code(load);
    let id = sqlx::query!(
        "INSERT INTO baselines (url, final_url, fetched_at_ms, total_ms, error, result_json) VALUES (?, ?, ?, ?, ?, ?)",
        load.url,
        load.final_url,
        load.started_at_unix_ms,
        load.total_ms,
        error,
        json
    )
    .execute(pool)
    .await
    .context("storing the baseline")?
    .last_insert_rowid();
    Ok(id)
}

/// The newest baselines of `url` (as stored: after address-bar parsing), newest first.
pub async fn baselines_for(pool: &SqlitePool, url: &str, limit: i64) -> anyhow::Result<Vec<StoredBaseline>> {
    let rows = sqlx::query!(
        r#"SELECT id AS "id!", url, fetched_at_ms, total_ms, error, result_json FROM baselines WHERE url = ?
         ORDER BY fetched_at_ms DESC, id DESC LIMIT ?"#,
        url,
        limit
    )
    .fetch_all(pool)
    .await
    .context("reading baselines")?;
    rows.into_iter()
        .map(|r| {
            let load = serde_json::from_str(&r.result_json).with_context(|| format!("baseline {}: bad result_json", r.id))?;
            Ok(StoredBaseline { id: r.id, url: r.url, fetched_at_ms: r.fetched_at_ms, total_ms: r.total_ms, error: r.error, load })
        })
        .collect()
}

/// The reference fetch stored as baseline `id`, or None for an unknown id.
pub async fn baseline_load(pool: &SqlitePool, id: i64) -> anyhow::Result<Option<PageLoad>> {
    let json = sqlx::query_scalar!("SELECT result_json FROM baselines WHERE id = ?", id)
        .fetch_optional(pool)
        .await
        .with_context(|| format!("reading baseline {id}"))?;
    json.map(|j| serde_json::from_str(&j).with_context(|| format!("baseline {id}: bad result_json"))).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Span;
    use crate::failure::{Code, Failure, Phase};
    use crate::fetch::model::*;

    fn load(url: &str, error: Option<Failure>) -> PageLoad {
        PageLoad {
            input: url.into(),
            url: url.into(),
            final_url: url.into(),
            page: false,
            started_at_unix_ms: 1_700_000_000_000,
            span: Span::new(1_000, 2_000_000).into(),
            total_ms: 2.0,
            document_ms: Some(2.0),
            entries: vec![],
            connections: vec![],
            dns: vec![],
            subresources_skipped: 0,
            error,
            tracer_version: "test".into(),
        }
    }

    #[tokio::test]
    async fn stores_and_reads_baselines() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::history::db::open(&dir.path().join("t.db")).await.unwrap();
        let a = store_baseline(&pool, &load("http://shop.test/", None))
            .await
            .unwrap();
        let f = Failure::new(Phase::Dns, Code::NameNotResolved, "NXDOMAIN");
        let b = store_baseline(&pool, &load("http://shop.test/", Some(f)))
            .await
            .unwrap();
        store_baseline(&pool, &load("http://other.test/", None))
            .await
            .unwrap();
        let got = baselines_for(&pool, "http://shop.test/", 10).await.unwrap();
        assert_eq!(got.iter().map(|b| b.id).collect::<Vec<_>>(), vec![b, a]);
        assert_eq!(got[0].error.as_deref(), Some("ERR_NAME_NOT_RESOLVED"));
        assert_eq!(got[1].load, load("http://shop.test/", None));
        assert_eq!(baseline_load(&pool, a).await.unwrap(), Some(load("http://shop.test/", None)));
        assert_eq!(baseline_load(&pool, 999).await.unwrap(), None);
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM baselines")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 3);
    }
}
