//! The one error type of the dashboard's handlers.
use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::history::QueryError;

#[derive(Debug)]
pub enum AppError {
    /// A malformed parameter (400): `{"error": "invalid limit: ...", "param": "limit"}`.
    BadRequest { param: String, reason: String },
    /// An unknown id or endpoint (404).
    NotFound(String),
    /// Another client-visible status with a message that is safe to show (409, 415, 429, 504 ...).
    Status(StatusCode, String),
    /// Anything else (500): logged with its details; the client only learns that it happened.
    Internal(anyhow::Error),
}

impl AppError {
    pub fn bad(param: impl Into<String>, reason: impl Into<String>) -> Self {
        AppError::BadRequest { param: param.into(), reason: reason.into() }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            AppError::BadRequest { param, reason } => {
                (StatusCode::BAD_REQUEST, json!({ "error": format!("invalid {param}: {reason}"), "param": param }))
            }
            AppError::NotFound(what) => (StatusCode::NOT_FOUND, json!({ "error": what })),
            AppError::Status(status, what) => (status, json!({ "error": what })),
            AppError::Internal(e) => {
                tracing::error!("dashboard: internal error: {e:#}");
                (StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": "internal error (details are in the daemon's log)" }))
            }
        };
        (status, Json(body)).into_response()
    }
}

impl From<QueryError> for AppError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Invalid { param, reason } => AppError::BadRequest { param: param.to_string(), reason },
            QueryError::Db(e) => e.into(),
            other => AppError::Internal(other.into()),
        }
    }
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        AppError::Internal(e)
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        if crate::history::db::is_interrupted(&e) {
            // The read pool's statement timeout: a query too broad for the history's size.
            return AppError::Status(
                StatusCode::SERVICE_UNAVAILABLE,
                "the query took too long and was stopped; narrow it (host, process, since)".into(),
            );
        }
        AppError::Internal(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read stopped by the read pool's statement timeout is a 503 that says to narrow the
    /// query, not a 500.
    #[tokio::test]
    async fn a_timed_out_read_is_a_503() {
        let dir = tempfile::tempdir().unwrap();
        let pools = crate::history::db::open_pools(
            &dir.path().join("t.db"),
            crate::history::db::ReaderOptions { connections: 1, statement_timeout: std::time::Duration::from_millis(100) },
        )
        .await
        .unwrap();
        let e = sqlx::query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c")
            .fetch_one(&pools.reader)
            .await
            .map(|_| ())
            .unwrap_err();
        let res = AppError::from(QueryError::Db(e)).into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
