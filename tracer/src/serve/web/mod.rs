//! The dashboard: an axum server for the single-page front-end in `web/` (embedded in the
//! binary, no Node.js needed) and the JSON API behind every view.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` and `GET /assets/{file}` | the front-end (HTML, CSS, JS modules) |
//! | `GET /api/page-loads` | history list: filters, sort, paging ([`crate::history::query::parse_params`]) |
//! | `GET /api/page-loads/{id}` | one whole page load |
//! | `GET /api/page-loads/{id}/har` | HAR 1.2 download |
//! | `GET /api/page-loads/{id}/compare` | the page load next to the latest reference fetch of its URL |
//! | `POST /api/fetch` | run the reference fetcher now, store the result as a baseline |
//! | `GET /api/processes` | client names in the history, for the process filter |
//! | `GET /api/health` | probes, variants, event rates, lost events, DB size, uptime |
//! | `GET /api/live` | Server-Sent Events: finished page loads and the ones in progress |
//! | `GET /metrics` | Prometheus metrics ([`crate::serve::metrics::Metrics::encode`]) |
//!
//! Errors: [`AppError`]. A malformed parameter is a 400 whose JSON names it, an unknown id a
//! 404, and anything else a 500 that is logged and says nothing more.
mod api;
pub mod auth;
mod error;
pub mod live;
pub mod tls;
pub mod token;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use sqlx::SqlitePool;

pub use error::AppError;
pub use live::LiveHub;

use crate::{fetch::FetchOptions, stream::StreamStats};

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub health: Arc<Health>,
    /// The history database (page loads and baselines), read-only in the daemon (its
    /// statements bounded in time: `history::db::Pools`).
    pub pool: SqlitePool,
    /// Where `POST /api/fetch` stores its baseline (the daemon's maintenance connection).
    pub write_pool: SqlitePool,
    /// Live feed: finished page loads and the ones in progress.
    pub live: Arc<LiveHub>,
    /// How `POST /api/fetch` runs the reference fetcher.
    pub fetch: Arc<FetchSettings>,
    /// What `GET /metrics` shows (the daemon replaces it with the one its page loads feed).
    pub metrics: Arc<crate::serve::metrics::Metrics>,
    /// Who may use the dashboard ([`auth`]): nobody until a token is set.
    pub access: auth::Access,
}

impl AppState {
    pub fn new(health: Health, pool: SqlitePool, live: Arc<LiveHub>) -> Self {
        let metrics = Arc::new(crate::serve::metrics::Metrics::new(Default::default(), health.stats.clone()));
        Self {
            health: Arc::new(health),
            write_pool: pool.clone(),
            pool,
            live,
            fetch: Arc::new(FetchSettings::default()),
            metrics,
            access: auth::Access::default(),
        }
    }

    pub fn with_access(mut self, access: auth::Access) -> Self {
        self.access = access;
        self
    }

    pub fn with_write_pool(mut self, pool: SqlitePool) -> Self {
        self.write_pool = pool;
        self
    }
}

/// What /api/health reports.
pub struct Health {
    pub started: Instant,
    pub db_path: PathBuf,
    pub probes: serde_json::Value,
    pub kernel: serde_json::Value,
    pub stats: Arc<StreamStats>,
    /// Stitcher and history-writer counters, refreshed every second by the daemon.
    pub live: Arc<Mutex<serde_json::Value>>,
}

/// `POST /api/fetch`: the fetcher's options (nameservers from resolv.conf unless set), a bound
/// on the whole run, and how many may run at once.
pub struct FetchSettings {
    pub options: FetchOptions,
    /// The whole fetch (every phase, redirects included) is abandoned after this.
    pub deadline: Duration,
    gate: tokio::sync::Semaphore,
}

impl FetchSettings {
    pub fn new(options: FetchOptions, deadline: Duration, concurrent: usize) -> Self {
        Self { options, deadline, gate: tokio::sync::Semaphore::new(concurrent.max(1)) }
    }
}

impl Default for FetchSettings {
    fn default() -> Self {
        let options = FetchOptions {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            dns_timeout: Some(Duration::from_secs(3)),
            max_subresources: 50,
            ..FetchOptions::default()
        };
        Self::new(options, Duration::from_secs(20), 2)
    }
}

/// The front-end, embedded at build time.
struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $mime:literal) => {
        Asset { name: $name, mime: $mime, body: include_bytes!(concat!("../../../../web/", $name)) }
    };
}

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("util.js", "text/javascript; charset=utf-8"),
    asset!("live.js", "text/javascript; charset=utf-8"),
    asset!("history.js", "text/javascript; charset=utf-8"),
    asset!("page.js", "text/javascript; charset=utf-8"),
    asset!("waterfall.js", "text/javascript; charset=utf-8"),
    asset!("health.js", "text/javascript; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

fn asset_response(a: &Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(a.mime)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        a.body,
    )
        .into_response()
}

async fn index() -> Response {
    asset_response(&ASSETS[0])
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => asset_response(a),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// `GET /metrics`: the OpenMetrics text of [`AppState::metrics`].
async fn metrics(State(s): State<AppState>) -> Response {
    let body = s.metrics.encode();
    ([(header::CONTENT_TYPE, HeaderValue::from_static(crate::serve::metrics::CONTENT_TYPE))], body).into_response()
}

/// Every route. Add new ones here, before the layers: the access check ([`auth::check`]) and
/// the security headers then cover them too.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/page-loads", get(api::list))
        .route("/page-loads/{id}", get(api::detail))
        .route("/page-loads/{id}/har", get(api::har))
        .route("/page-loads/{id}/compare", get(api::compare))
        .route("/fetch", post(api::fetch_now))
        .route("/processes", get(api::processes))
        .route("/health", get(api::health))
        .route("/live", get(live::sse))
        .fallback(|| async { AppError::NotFound("no such API endpoint".into()) });
    Router::new()
        .route("/", get(index))
        .route("/favicon.ico", get(|| async { asset_response(&ASSETS[ASSETS.len() - 1]) }))
        .route("/assets/{name}", get(asset))
        .nest("/api", api)
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(state.access.clone(), auth::check))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Content-Security-Policy of every response: only this origin's own scripts, styles and
/// connections (no inline script, nothing from elsewhere), never framed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard shows traffic of the whole machine: no sniffing, no framing, no referrers.
async fn security_headers(mut res: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt as _;

    async fn state() -> (tempfile::TempDir, AppState) {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::history::db::open(&dir.path().join("t.db")).await.unwrap();
        let health = Health {
            started: Instant::now(),
            db_path: "/nonexistent/tracer.db".into(),
            probes: serde_json::json!([{"family": "tcp_state", "attached": true}]),
            kernel: serde_json::json!({"kprobes": false}),
            stats: Arc::new(StreamStats::default()),
            live: Default::default(),
        };
        let access = auth::Access::new("127.0.0.1".parse().unwrap(), TOKEN, None).unwrap();
        (dir, AppState::new(health, pool, Arc::new(LiveHub::new(crate::clock::WallOffset::now()))).with_access(access))
    }

    const TOKEN: &str = "unit-test-token-0123456789";

    /// `GET path` with the token.
    fn get(path: &str) -> Request<Body> {
        Request::get(path).header(header::AUTHORIZATION, format!("Bearer {TOKEN}")).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn every_response_carries_the_security_headers() {
        let (_dir, state) = state().await;
        for path in ["/", "/assets/app.js", "/api/health", "/api/page-loads?limit=x", "/api/nope"] {
            let res = app(state.clone()).oneshot(get(path)).await.unwrap();
            let h = res.headers();
            let csp = h.get("content-security-policy").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
            assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{path}: CSP {csp:?}");
            assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
            assert_eq!(h.get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]), "{path}");
            assert!(h.get("access-control-allow-origin").is_none(), "{path}: no CORS");
        }
    }

    #[tokio::test]
    async fn health_reports_probes_and_counters() {
        let (_dir, state) = state().await;
        state.health.stats.kernel_lost.store(7, std::sync::atomic::Ordering::Relaxed);
        let res = app(state).oneshot(get("/api/health")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["probes"][0]["family"], "tcp_state");
        assert_eq!(v["events"]["kernel_lost"], 7);
        assert_eq!(v["lost_events"], 7);
    }

    #[tokio::test]
    async fn serves_assets_and_404s() {
        let (_dir, state) = state().await;
        for (path, mime) in [("/", "text/html"), ("/assets/app.js", "text/javascript"), ("/assets/style.css", "text/css")] {
            let res = app(state.clone()).oneshot(get(path)).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert!(res.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with(mime), "{path}");
        }
        for path in ["/nope", "/assets/nope.js", "/assets/../Cargo.toml"] {
            let res = app(state.clone()).oneshot(get(path)).await.unwrap();
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    /// `/metrics` is a route of the dashboard's router: its layers (security headers, and any
    /// access check added there) apply to it.
    #[tokio::test]
    async fn serves_the_metrics_through_the_router() {
        let (_dir, mut state) = state().await;
        let m = Arc::new(crate::serve::metrics::Metrics::new(Default::default(), state.health.stats.clone()));
        m.observe(&crate::stitch::sample::redirect_page(0));
        state.metrics = m;
        let res = app(state).oneshot(get("/metrics")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], crate::serve::metrics::CONTENT_TYPE);
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "the router's layers apply");
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.lines().any(|l| l == "tracer_page_loads_total{host=\"shop.test\",client=\"curl\"} 1"), "{text}");
    }

    /// Every JS module the front-end imports is embedded (an import of a missing file would
    /// only fail in the browser).
    #[test]
    fn every_imported_module_is_embedded() {
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js") || a.name.ends_with(".html")) {
            let text = std::str::from_utf8(a.body).unwrap();
            for part in text.split("/assets/").skip(1) {
                let name: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-').collect();
                assert!(ASSETS.iter().any(|x| x.name == name), "{} refers to /assets/{name}, which is not embedded", a.name);
            }
            assert!(!text.contains(" onclick=") && !text.contains("<script>"), "{}: inline script", a.name);
        }
    }
}
