//! The dashboard server. Until the dashboard lands it serves a placeholder page and the
//! health API. Assets come from `web/`, embedded in the binary.
use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    http::header,
    response::{Html, IntoResponse},
    routing::get,
};

use crate::stream::StreamStats;

#[derive(Clone)]
pub struct AppState {
    pub health: Arc<Health>,
}

/// What /api/health reports.
pub struct Health {
    pub started: std::time::Instant,
    pub db_path: std::path::PathBuf,
    pub probes: serde_json::Value,
    pub kernel: serde_json::Value,
    pub stats: Arc<StreamStats>,
    /// Stitcher and history-writer counters, refreshed every second by the daemon.
    pub live: Arc<std::sync::Mutex<serde_json::Value>>,
}

static INDEX_HTML: &str = include_str!("../../web/index.html");
static STYLE_CSS: &str = include_str!("../../web/style.css");

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route("/assets/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css")], STYLE_CSS) }))
        .route("/api/health", get(health))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let h = &state.health;
    let db_bytes = std::fs::metadata(&h.db_path).map(|m| m.len()).unwrap_or(0);
    Json(serde_json::json!({
        "uptime_s": h.started.elapsed().as_secs(),
        "db_path": h.db_path,
        "db_bytes": db_bytes,
        "kernel": h.kernel,
        "probes": h.probes,
        "events": h.stats.snapshot(),
        "pipeline": h.live.lock().map(|v| v.clone()).unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt as _;

    fn state() -> AppState {
        AppState {
            health: Arc::new(Health {
                started: std::time::Instant::now(),
                db_path: "/nonexistent/tracer.db".into(),
                probes: serde_json::json!([{"family": "tcp_state", "attached": true}]),
                kernel: serde_json::json!({"kprobes": false}),
                stats: Arc::new(StreamStats::default()),
                live: Default::default(),
            }),
        }
    }

    #[tokio::test]
    async fn health_reports_probes_and_counters() {
        let state = state();
        state.health.stats.kernel_lost.store(7, std::sync::atomic::Ordering::Relaxed);
        let res = app(state).oneshot(Request::get("/api/health").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["probes"][0]["family"], "tcp_state");
        assert_eq!(v["events"]["kernel_lost"], 7);
    }

    #[tokio::test]
    async fn serves_placeholder_and_404s() {
        let res = app(state()).oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let res = app(state()).oneshot(Request::get("/nope").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
}
