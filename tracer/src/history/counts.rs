//! Counts over the whole history: the clients behind the dashboard's process filter
//! (`GET /api/processes`), and the busiest hosts and clients, which get the metrics' label
//! slots first (`serve::metrics::top_labels`).
use serde::Serialize;
use sqlx::SqlitePool;

use super::QueryError;

/// A client name with its number of stored page loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientCount {
    pub name: String,
    pub page_loads: i64,
}

/// Client names with their page loads, most first (ties by name), at most `limit`.
pub async fn clients(pool: &SqlitePool, limit: i64) -> Result<Vec<ClientCount>, QueryError> {
    Ok(sqlx::query_as!(
        ClientCount,
        r#"SELECT pr.name, COUNT(*) AS "page_loads!: i64" FROM page_loads p JOIN processes pr ON pr.id = p.process_id
         GROUP BY pr.name ORDER BY COUNT(*) DESC, pr.name LIMIT ?"#,
        limit
    )
    .fetch_all(pool)
    .await?)
}

/// The hosts (as stored: maybe with a port and capitals) of the most requests, at most `limit`.
pub async fn busiest_hosts(pool: &SqlitePool, limit: i64) -> Result<Vec<String>, QueryError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT host AS "host!" FROM requests WHERE host IS NOT NULL AND host != '' GROUP BY host ORDER BY COUNT(*) DESC LIMIT ?"#,
        limit
    )
    .fetch_all(pool)
    .await?)
}

/// The client names of the most page loads, at most `limit`.
pub async fn busiest_clients(pool: &SqlitePool, limit: i64) -> Result<Vec<String>, QueryError> {
    Ok(sqlx::query_scalar!(
        "SELECT p.name FROM page_loads l JOIN processes p ON p.id = l.process_id GROUP BY p.name ORDER BY COUNT(*) DESC LIMIT ?",
        limit
    )
    .fetch_all(pool)
    .await?)
}
