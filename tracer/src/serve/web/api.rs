//! The JSON API's handlers.
use std::sync::atomic::Ordering;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppError, AppState};
use crate::{
    fetch::{self, FetchError},
    history::{self, Baseline, StoredPageLoad, baselines, counts, query},
};

/// Query parameters `GET /api/page-loads` accepts.
const LIST_PARAMS: [&str; 9] = ["host", "url", "process", "status", "since", "until", "sort", "limit", "offset"];

/// `GET /api/page-loads?host=&url=&process=&status=&since=&until=&sort=&limit=&offset=`
pub(super) async fn list(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Value>, AppError> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect();
    if let Some((k, _)) = pairs.iter().find(|(k, _)| !LIST_PARAMS.contains(&k.as_str())) {
        return Err(AppError::bad(k.clone(), format!("unknown parameter (known: {})", LIST_PARAMS.join(", "))));
    }
    // An empty value (a blank form field) means "no filter".
    let pairs: Vec<(&str, &str)> =
        pairs.iter().filter(|(_, v)| !v.trim().is_empty()).map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (filter, sort, page) = query::parse_params(pairs)?;
    let result = query::list(&s.pool, &filter, sort, page).await?;
    Ok(Json(json!({
        "items": result.items,
        "total": result.total,
        "total_capped": result.total_capped,
        "limit": result.limit,
        "offset": result.offset,
        "sort": sort,
    })))
}

fn parse_id(raw: &str) -> Result<i64, AppError> {
    match raw.parse::<i64>() {
        Ok(id) if id >= 0 => Ok(id),
        _ => Err(AppError::bad("id", format!("{raw:?} is not a page-load id (a whole number)"))),
    }
}

async fn load(s: &AppState, raw: &str) -> Result<StoredPageLoad, AppError> {
    let id = parse_id(raw)?;
    history::get(&s.pool, id).await?.ok_or_else(|| AppError::NotFound(format!("no page load {id}")))
}

/// `GET /api/page-loads/{id}`: `{id, started_at_ms, page}`.
pub(super) async fn detail(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<StoredPageLoad>, AppError> {
    Ok(Json(load(&s, &id).await?))
}

/// `GET /api/page-loads/{id}/har`: HAR 1.2, as a download.
pub(super) async fn har(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, AppError> {
    let stored = load(&s, &id).await?;
    let body = serde_json::to_vec_pretty(&history::to_har(std::slice::from_ref(&stored)))
        .map_err(|e| AppError::Internal(e.into()))?;
    let disposition = format!("attachment; filename=\"page-load-{}.har\"", stored.id);
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).map_err(|e| AppError::Internal(e.into()))?),
        ],
        body,
    )
        .into_response())
}

/// The TLS sessions a reference fetch saw, with the certificates (the traced side has none).
async fn baseline_tls(s: &AppState, baseline_id: i64) -> Result<Vec<Value>, AppError> {
    let Some(load) = baselines::baseline_load(&s.pool, baseline_id).await? else { return Ok(Vec::new()) };
    Ok(load
        .connections
        .iter()
        .filter_map(|c| {
            c.tls.as_ref().map(|t| {
                json!({
                    "host": c.host,
                    "origin": c.origin,
                    "remote": c.remote,
                    "sni": t.sni,
                    "version": t.version,
                    "cipher": t.cipher_suite,
                    "alpn": t.alpn,
                    "resumed": t.resumed,
                    "verified": t.verified,
                    "handshake_ms": t.span.ms,
                    "certificates": t.certificates,
                    "failure": t.failure,
                })
            })
        })
        .collect())
}

/// `GET /api/page-loads/{id}/compare`: `{page_load_id, url, comparison, baseline_tls}`;
/// `comparison` is null when the URL has no baseline yet.
pub(super) async fn compare(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, AppError> {
    let stored = load(&s, &id).await?;
    let url = stored.page.url.clone();
    let baseline = match &url {
        Some(u) => history::latest_baseline(&s.pool, u).await?,
        None => None,
    };
    let tls = match &baseline {
        Some(b) => baseline_tls(&s, b.id).await?,
        None => Vec::new(),
    };
    let comparison = baseline.map(|b| history::compare(&stored, b));
    Ok(Json(json!({
        "page_load_id": stored.id,
        "url": url,
        "comparison": comparison,
        "baseline_tls": tls,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FetchBody {
    url: String,
    /// Do not verify certificates (the chain is still recorded).
    #[serde(default)]
    insecure: bool,
    /// Also fetch the document's sub-resources.
    #[serde(default)]
    page: bool,
}

/// `POST /api/fetch {"url": "...", "insecure": false, "page": false}`: runs the reference
/// fetcher, stores the result as a baseline, returns `{baseline_id, baseline, load}`.
pub(super) async fn fetch_now(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, AppError> {
    // A JSON content type cannot be sent cross-site without a CORS preflight (which is never
    // granted): another site open in the user's browser cannot make the daemon fetch.
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(AppError::Status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the body as application/json".into()));
    }
    let req: FetchBody = serde_json::from_slice(&body).map_err(|e| {
        let msg = e.to_string();
        let param = if let Some(rest) = msg.strip_prefix("unknown field `") {
            rest.split('`').next().unwrap_or("body").to_string()
        } else if msg.starts_with("missing field `url`") {
            "url".to_string()
        } else {
            "body".to_string()
        };
        AppError::bad(param, msg)
    })?;
    let url = req.url.trim().to_string();
    if url.is_empty() {
        return Err(AppError::bad("url", "empty"));
    }
    if url.len() > 2048 {
        return Err(AppError::bad("url", "longer than 2048 characters"));
    }
    if let Err(e) = fetch::parse_address(&url) {
        return Err(AppError::bad("url", e.to_string()));
    }
    let Ok(_permit) = s.fetch.gate.try_acquire() else {
        return Err(AppError::Status(StatusCode::TOO_MANY_REQUESTS, "reference fetches are already running; try again".into()));
    };
    let mut opts = s.fetch.options.clone();
    opts.insecure = req.insecure;
    opts.page = req.page;
    let deadline = s.fetch.deadline;
    let load = match tokio::time::timeout(deadline, fetch::fetch(&url, &opts)).await {
        Err(_) => {
            return Err(AppError::Status(
                StatusCode::GATEWAY_TIMEOUT,
                format!("the reference fetch of {url} did not finish within {} s", deadline.as_secs()),
            ));
        }
        Ok(Err(e @ (FetchError::InvalidUrl { .. } | FetchError::Usage(_)))) => return Err(AppError::bad("url", e.to_string())),
        Ok(Err(e @ FetchError::Setup(_))) => {
            return Err(AppError::Status(StatusCode::SERVICE_UNAVAILABLE, format!("the reference fetcher cannot run: {e}")));
        }
        Ok(Ok(load)) => load,
    };
    let id = baselines::store_baseline(&s.write_pool, &load).await?;
    let error = baselines::error_code(&load);
    let stored = baselines::StoredBaseline {
        id,
        url: load.url.clone(),
        fetched_at_ms: load.started_at_unix_ms,
        total_ms: load.total_ms,
        error,
        load,
    };
    Ok(Json(json!({
        "baseline_id": id,
        "baseline": Baseline::from_fetch(&stored),
        "load": stored.load,
    })))
}

/// `GET /api/processes`: `[{name, page_loads}]`, most page loads first (at most 200).
pub(super) async fn processes(State(s): State<AppState>) -> Result<Json<Value>, AppError> {
    Ok(Json(json!(counts::clients(&s.pool, 200).await?)))
}

/// Bytes of the database file with its WAL and shared-memory files.
fn db_bytes(path: &std::path::Path) -> u64 {
    let size = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    };
    size("") + size("-wal") + size("-shm")
}

/// `GET /api/health`
pub(super) async fn health(State(s): State<AppState>) -> Json<Value> {
    let h = &s.health;
    let uptime = h.started.elapsed();
    let received = h.stats.received.load(Ordering::Relaxed);
    let events_per_s = s.live.events_per_s().unwrap_or_else(|| {
        let secs = uptime.as_secs_f64();
        if secs > 0.0 { received as f64 / secs } else { 0.0 }
    });
    let probes = h.probes.as_array().cloned().unwrap_or_default();
    let attached = probes.iter().filter(|p| p["attached"].as_bool().unwrap_or(false)).count();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": uptime.as_secs(),
        "db_path": h.db_path,
        "db_bytes": db_bytes(&h.db_path),
        "kernel": h.kernel,
        "probes": h.probes,
        "probes_attached": attached,
        "probes_total": probes.len(),
        "events": h.stats.snapshot(),
        "events_per_s": (events_per_s * 10.0).round() / 10.0,
        "lost_events": h.stats.kernel_lost.load(Ordering::Relaxed),
        "dropped_events": h.stats.queue_dropped.load(Ordering::Relaxed),
        "pipeline": h.live.lock().map(|v| v.clone()).unwrap_or_default(),
        "live": {
            "clients": s.live.clients(),
            "in_progress": s.live.progress().open.len(),
        },
    }))
}
