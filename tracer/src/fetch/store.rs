//! Baselines in the daemon's SQLite database (table `baselines`, migration 0002).

use anyhow::Context as _;
use sqlx::sqlite::SqlitePool;

use super::model::PageLoad;

/// One stored baseline.
#[derive(Clone, Debug)]
pub struct Baseline {
    pub id: i64,
    pub url: String,
    pub fetched_at_ms: i64,
    pub total_ms: f64,
    pub error: Option<String>,
    pub load: PageLoad,
}

/// Stores a load as a baseline for its URL; returns the row id.
pub async fn store_baseline(pool: &SqlitePool, load: &PageLoad) -> anyhow::Result<i64> {
    let json = serde_json::to_string(load).context("serialising the page load")?;
    let error = load
        .error
        .as_ref()
        .or_else(|| load.entries.iter().find_map(|e| e.failure.as_ref()))
        .map(|f| f.code.to_string());
    let id = sqlx::query(
        "INSERT INTO baselines (url, final_url, fetched_at_ms, total_ms, error, result_json) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&load.url)
    .bind(&load.final_url)
    .bind(load.started_at_unix_ms)
    .bind(load.total_ms)
    .bind(error)
    .bind(json)
    .execute(pool)
    .await
    .context("storing the baseline")?
    .last_insert_rowid();
    Ok(id)
}

/// The newest baselines of `url` (as stored: after address-bar parsing), newest first.
pub async fn baselines_for(
    pool: &SqlitePool,
    url: &str,
    limit: i64,
) -> anyhow::Result<Vec<Baseline>> {
    let rows: Vec<(i64, String, i64, f64, Option<String>, String)> = sqlx::query_as(
        "SELECT id, url, fetched_at_ms, total_ms, error, result_json FROM baselines WHERE url = ? \
         ORDER BY fetched_at_ms DESC, id DESC LIMIT ?",
    )
    .bind(url)
    .bind(limit)
    .fetch_all(pool)
    .await
    .context("reading baselines")?;
    rows.into_iter()
        .map(|(id, url, fetched_at_ms, total_ms, error, json)| {
            let load = serde_json::from_str(&json)
                .with_context(|| format!("baseline {id}: bad result_json"))?;
            Ok(Baseline {
                id,
                url,
                fetched_at_ms,
                total_ms,
                error,
                load,
            })
        })
        .collect()
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
        let pool = crate::db::open(&dir.path().join("t.db")).await.unwrap();
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
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM baselines")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 3);
    }
}
