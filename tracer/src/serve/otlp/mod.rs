//! OpenTelemetry export (`--otlp-endpoint URL`): every page load as a trace, sent as OTLP/HTTP
//! protobuf (`POST URL/v1/traces`) to a collector (the OpenTelemetry Collector, Jaeger, Tempo
//! ...). How page loads become spans: [`spans`].
//!
//! Tracing never waits for the collector. The daemon hands each page load to a bounded queue
//! with `try_send` ([`OtlpSender::offer`]); a full queue drops it and counts it. One task
//! batches what arrives (up to `batch_max` page loads, or what came within `flush_every`),
//! encodes it and posts it. A failed post (connection refused, timeout, HTTP 429/502/503/504)
//! is retried with exponential back-off (doubling from `backoff_first` up to `backoff_max`,
//! with jitter, honouring `Retry-After`) up to `attempts` times; then the batch is dropped and
//! counted. Other HTTP errors (400: the collector will never take it) drop it at once. While
//! a batch waits, new page loads queue up to `queue` and are dropped beyond it.
//!
//! The exporter's own connections are traced like any process's. Page loads of the daemon
//! whose every request went to the collector are not reported ([`OtlpSender::is_own`]):
//! otherwise a collector that is down would make a failed page load per retry, each
//! exported in turn.
pub mod spans;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{Request, StatusCode, body::Bytes, header};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message as _;
use serde::Serialize;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

pub use spans::HostInfo;

use crate::{clock::WallOffset, stitch::model::PageLoad};

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("invalid --otlp-endpoint {url:?}: {reason}")]
    Endpoint { url: String, reason: String },
    #[error("OTLP exporter: loading the system's CA certificates: {0}")]
    Roots(std::io::Error),
}

#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// Where to POST: the collector's base URL with `/v1/traces` appended ([`traces_url`]).
    pub endpoint: url::Url,
    /// Page loads waiting for export; more are dropped (counted).
    pub queue: usize,
    /// Most page loads in one export request.
    pub batch_max: usize,
    /// How long the first page load of a batch waits for others.
    pub flush_every: Duration,
    /// Bound on one export request (connect + send + answer).
    pub timeout: Duration,
    /// Tries per batch, the first one included.
    pub attempts: u32,
    pub backoff_first: Duration,
    pub backoff_max: Duration,
    /// Sent with every export (`--otlp-header`): an API key, a tenant. Values are marked
    /// sensitive, so they are never shown by Debug or logged.
    pub headers: Vec<(header::HeaderName, header::HeaderValue)>,
    /// Gzip the request body (`--otlp-compression gzip`; `Content-Encoding: gzip`).
    pub gzip: bool,
}

impl OtlpConfig {
    pub fn new(endpoint: url::Url) -> Self {
        Self {
            endpoint,
            queue: 2048,
            batch_max: 256,
            flush_every: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            attempts: 5,
            backoff_first: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            headers: Vec::new(),
            gzip: false,
        }
    }
}

/// `--otlp-header NAME=VALUE` (also the comma-separated list of `TRACER_OTLP_HEADERS`, as
/// `OTEL_EXPORTER_OTLP_HEADERS` has it, with %-encoded values): one header for every export.
/// The error names the header but never shows its value.
pub fn parse_header(s: &str) -> Result<(header::HeaderName, header::HeaderValue), String> {
    let (name, value) = s.split_once('=').ok_or_else(|| "expected NAME=VALUE".to_string())?;
    let name = name.trim();
    let parsed = header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a header name"))?;
    if matches!(parsed, header::CONTENT_TYPE | header::CONTENT_ENCODING | header::CONTENT_LENGTH | header::HOST) {
        return Err(format!("{name} is set by the exporter itself"));
    }
    let value = percent_encoding::percent_decode_str(value.trim())
        .decode_utf8()
        .map_err(|_| format!("the value of {name} is not UTF-8 once %-decoded"))?;
    let mut value =
        header::HeaderValue::from_str(&value).map_err(|_| format!("the value of {name} has characters a header cannot hold"))?;
    value.set_sensitive(true);
    Ok((parsed, value))
}

/// The body as posted: gzip-compressed when asked for.
fn encode_body(config: &OtlpConfig, body: Vec<u8>) -> Vec<u8> {
    if !config.gzip {
        return body;
    }
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    gz.write_all(&body).and_then(|()| gz.finish()).unwrap_or(body)
}

/// `--otlp-endpoint`: an `http://` or `https://` URL. The collector's base URL gets
/// `/v1/traces` appended (as `OTEL_EXPORTER_OTLP_ENDPOINT` does); a URL whose path already
/// ends in `/v1/traces` is used as it is.
pub fn traces_url(endpoint: &str) -> Result<url::Url, OtlpError> {
    let bad = |reason: &str| OtlpError::Endpoint { url: endpoint.to_string(), reason: reason.to_string() };
    let mut u = url::Url::parse(endpoint).map_err(|e| bad(&e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https (OTLP over HTTP, protobuf)"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(bad("no query or fragment allowed"));
    }
    if !u.path().ends_with("/v1/traces") {
        let path = format!("{}/v1/traces", u.path().trim_end_matches('/'));
        u.set_path(&path);
    }
    Ok(u)
}

/// The exporter's counters (`/metrics`, `/api/health`).
#[derive(Debug, Default)]
pub struct OtlpStats {
    accepted: AtomicU64,
    exported_page_loads: AtomicU64,
    exported_spans: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_export_failed: AtomicU64,
    rejected_spans: AtomicU64,
    failed_attempts: AtomicU64,
    own_ignored: AtomicU64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OtlpCounters {
    /// Page loads waiting in the queue or in the batch being sent.
    pub queued: u64,
    pub exported_page_loads: u64,
    pub exported_spans: u64,
    /// Refused because the queue was full.
    pub dropped_queue_full: u64,
    /// In a batch that could not be delivered (retries exhausted, or refused by the collector).
    pub dropped_export_failed: u64,
    /// Spans the collector said it rejected (partial success).
    pub rejected_spans: u64,
    /// Export requests that failed, retries included.
    pub failed_attempts: u64,
    /// The exporter's own page loads (to the collector), not reported.
    pub own_ignored: u64,
}

impl OtlpStats {
    pub fn snapshot(&self) -> OtlpCounters {
        let exported = self.exported_page_loads.load(Relaxed);
        let failed = self.dropped_export_failed.load(Relaxed);
        let accepted = self.accepted.load(Relaxed);
        OtlpCounters {
            queued: accepted.saturating_sub(exported + failed),
            exported_page_loads: exported,
            exported_spans: self.exported_spans.load(Relaxed),
            dropped_queue_full: self.dropped_queue_full.load(Relaxed),
            dropped_export_failed: failed,
            rejected_spans: self.rejected_spans.load(Relaxed),
            failed_attempts: self.failed_attempts.load(Relaxed),
            own_ignored: self.own_ignored.load(Relaxed),
        }
    }
}

/// Recognises the exporter's own traffic: page loads of this process to the collector.
#[derive(Debug, Clone)]
struct Collector {
    pid: u32,
    host: String,
    port: u16,
    addrs: Vec<IpAddr>,
}

impl Collector {
    /// `host`: a request's host (`name`, `name:port`, or `ip:port` for a failed connect).
    fn is_collector(&self, host: Option<&str>, dst: Option<SocketAddr>) -> bool {
        let host_port = host.and_then(|h| h.parse::<SocketAddr>().ok().map(|a| a.port()).or_else(|| {
            h.rsplit_once(':').filter(|(n, _)| !n.contains(':')).and_then(|(_, p)| p.parse::<u16>().ok())
        }));
        let host = host.map(|h| crate::history::store::strip_port(h).to_ascii_lowercase());
        let host_ip = host.as_deref().and_then(|h| h.parse::<IpAddr>().ok());
        let port_ok = dst.map(|d| d.port()).or(host_port).is_none_or(|p| p == self.port);
        let named = host.as_deref() == Some(self.host.as_str());
        let addressed = dst.is_some_and(|d| self.addrs.contains(&d.ip())) || host_ip.is_some_and(|ip| self.addrs.contains(&ip));
        port_ok && (named || addressed)
    }
}

/// The daemon's end of the queue. Never blocks.
#[derive(Debug, Clone)]
pub struct OtlpSender {
    tx: mpsc::Sender<PageLoad>,
    stats: Arc<OtlpStats>,
    collector: Collector,
}

impl OtlpSender {
    /// Queues a copy of the page load; false (counted) when the queue is full.
    pub fn offer(&self, page: &PageLoad) -> bool {
        match self.tx.try_send(page.clone()) {
            Ok(()) => {
                self.stats.accepted.fetch_add(1, Relaxed);
                true
            }
            Err(_) => {
                self.stats.dropped_queue_full.fetch_add(1, Relaxed);
                false
            }
        }
    }

    /// A page load of the daemon itself whose every request went to the collector (counted).
    pub fn is_own(&self, page: &PageLoad) -> bool {
        if page.client.tgid != self.collector.pid || page.requests.is_empty() {
            return false;
        }
        let own = page.requests.iter().all(|r| {
            let dst = r.connection.and_then(|c| page.connections.get(c)).and_then(|c| c.dst.as_deref()).and_then(|d| d.parse().ok());
            self.collector.is_collector(r.host.as_deref(), dst)
        });
        if own {
            self.stats.own_ignored.fetch_add(1, Relaxed);
        }
        own
    }

    pub fn stats(&self) -> Arc<OtlpStats> {
        self.stats.clone()
    }

    /// The collector's socket addresses as resolved at start-up (for the live view to ignore).
    pub fn collector_addrs(&self) -> Vec<SocketAddr> {
        self.collector.addrs.iter().map(|ip| SocketAddr::new(*ip, self.collector.port)).collect()
    }
}

/// The exporter task.
#[derive(Debug)]
pub struct OtlpHandle {
    stats: Arc<OtlpStats>,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl OtlpHandle {
    /// Sends what is queued (one try, no back-off) and stops, within `limit`. Drop every
    /// [`OtlpSender`] first.
    pub async fn finish(self, limit: Duration) -> OtlpCounters {
        let _ = self.stop.send(true);
        let abort = self.join.abort_handle();
        if tokio::time::timeout(limit, self.join).await.is_err() {
            abort.abort();
            tracing::warn!("OTLP exporter: still sending after {limit:?} at shutdown, abandoned");
        }
        self.stats.snapshot()
    }
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Starts the exporter on the current runtime. `wall` maps the page loads' monotonic times to
/// unix time.
pub async fn spawn_exporter(config: OtlpConfig, host: HostInfo, wall: WallOffset) -> Result<(OtlpSender, OtlpHandle), OtlpError> {
    let stats = Arc::new(OtlpStats::default());
    let endpoint = &config.endpoint;
    let chost = endpoint.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let port = endpoint.port_or_known_default().unwrap_or(80);
    // Resolved once, to recognise the exporter's own connections; a name that does not
    // resolve now is still recognised by its name.
    let addrs = match tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host((chost.as_str(), port))).await {
        Ok(Ok(it)) => it.map(|a| a.ip()).collect(),
        _ => Vec::new(),
    };
    let collector = Collector { pid: std::process::id(), host: chost, port, addrs };
    let client = http_client(&config)?;
    let (tx, rx) = mpsc::channel(config.queue.max(1));
    let (stop, stopped) = watch::channel(false);
    let join = tokio::spawn(run(config, host, wall, client, rx, stopped, stats.clone()));
    Ok((OtlpSender { tx, stats: stats.clone(), collector }, OtlpHandle { stats, stop, join }))
}

fn http_client(config: &OtlpConfig) -> Result<HttpClient, OtlpError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match builder.with_provider_and_native_roots(provider.clone()) {
        Ok(b) => b,
        // Only an https collector needs them.
        Err(e) if config.endpoint.scheme() == "https" => return Err(OtlpError::Roots(e)),
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| OtlpError::Roots(std::io::Error::other(e)))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.timeout));
    let connector = builder.https_or_http().enable_http1().wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector))
}

async fn run(
    config: OtlpConfig,
    host: HostInfo,
    wall: WallOffset,
    client: HttpClient,
    mut rx: mpsc::Receiver<PageLoad>,
    mut stopped: watch::Receiver<bool>,
    stats: Arc<OtlpStats>,
) {
    let batch_max = config.batch_max.max(1);
    let mut batch: Vec<PageLoad> = Vec::with_capacity(batch_max);
    let mut open = true;
    let mut failures_logged = 0u64;
    while open {
        open = crate::batch::recv_batch(&mut rx, &mut batch, batch_max, config.flush_every).await;
        if batch.is_empty() {
            break;
        }
        let mut ids = random_bytes;
        let request = spans::export_request(&batch, &host, wall, &mut ids);
        let span_count: usize = request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        let body = Bytes::from(encode_body(&config, request.encode_to_vec()));
        let pages = batch.len() as u64;
        batch.clear();
        let closing = !open || *stopped.borrow();
        match send_with_retry(&config, &client, body, closing, &mut stopped, &stats).await {
            Ok(rejected) => {
                stats.exported_page_loads.fetch_add(pages, Relaxed);
                stats.exported_spans.fetch_add((span_count as u64).saturating_sub(rejected), Relaxed);
                stats.rejected_spans.fetch_add(rejected, Relaxed);
            }
            Err(e) => {
                stats.dropped_export_failed.fetch_add(pages, Relaxed);
                failures_logged += 1;
                // Every drop is counted; the log says the first ten and then every 100th.
                if failures_logged <= 10 || failures_logged.is_multiple_of(100) {
                    tracing::warn!(page_loads = pages, "OTLP export to {} failed, batch dropped: {e}", config.endpoint);
                }
            }
        }
    }
    tracing::debug!("OTLP exporter stopped");
}

#[derive(Debug)]
enum Attempt {
    /// The collector took it; this many spans were rejected.
    Accepted(u64),
    /// Worth another try, after at least this long if the collector said so.
    Retry(String, Option<Duration>),
    /// Never worth another try.
    Fatal(String),
}

async fn send_with_retry(
    config: &OtlpConfig,
    client: &HttpClient,
    body: Bytes,
    closing: bool,
    stopped: &mut watch::Receiver<bool>,
    stats: &OtlpStats,
) -> Result<u64, String> {
    let mut delay = config.backoff_first;
    let attempts = if closing { 1 } else { config.attempts.max(1) };
    let mut last = String::new();
    for attempt in 1..=attempts {
        match post(config, client, body.clone()).await {
            Attempt::Accepted(rejected) => return Ok(rejected),
            Attempt::Fatal(e) => {
                stats.failed_attempts.fetch_add(1, Relaxed);
                return Err(e);
            }
            Attempt::Retry(e, after) => {
                stats.failed_attempts.fetch_add(1, Relaxed);
                last = e;
                if attempt == attempts || *stopped.borrow() {
                    break;
                }
                let wait = after.unwrap_or(delay).min(config.backoff_max);
                // Up to a quarter more, so that many daemons do not retry in step.
                let wait = wait + wait.mul_f64(jitter() * 0.25);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped.changed() => {}
                }
                delay = (delay * 2).min(config.backoff_max);
            }
        }
    }
    Err(format!("{last} (after {attempts} attempt(s))"))
}

async fn post(config: &OtlpConfig, client: &HttpClient, body: Bytes) -> Attempt {
    let mut req = Request::post(config.endpoint.as_str())
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .header(header::USER_AGENT, concat!("tracer/", env!("CARGO_PKG_VERSION")));
    for (name, value) in &config.headers {
        req = req.header(name, value);
    }
    if config.gzip {
        req = req.header(header::CONTENT_ENCODING, "gzip");
    }
    let req = match req.body(Full::new(body)) {
        Ok(r) => r,
        Err(e) => return Attempt::Fatal(format!("building the request: {e}")),
    };
    let res = match tokio::time::timeout(config.timeout, client.request(req)).await {
        Err(_) => return Attempt::Retry(format!("no answer within {:?}", config.timeout), None),
        Ok(Err(e)) => return Attempt::Retry(format!("{e}{}", source_chain(&e)), None),
        Ok(Ok(r)) => r,
    };
    let status = res.status();
    let retry_after = res
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = tokio::time::timeout(config.timeout, Limited::new(res.into_body(), 64 * 1024).collect()).await;
    let body = body.ok().and_then(Result::ok).map(|b| b.to_bytes()).unwrap_or_default();
    if status.is_success() {
        let rejected = ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| u64::try_from(p.rejected_spans).unwrap_or(0))
            .unwrap_or(0);
        return Attempt::Accepted(rejected);
    }
    let text = format!("HTTP {status}");
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            Attempt::Retry(text, retry_after)
        }
        _ => Attempt::Fatal(text),
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Random bytes from the kernel (getrandom(2)); trace and span ids.
pub fn random_bytes(buf: &mut [u8]) {
    let mut filled = 0;
    // Bounded: getrandom returns what it has; an error falls back below.
    for _ in 0..4 {
        if filled == buf.len() {
            return;
        }
        // SAFETY: the pointer and length describe the unfilled, writable tail of `buf`.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n <= 0 {
            break;
        }
        filled += n as usize;
    }
    // Not reached on Linux >= 3.17; ids need to be unique, not secret.
    let mut x = crate::clock::monotonic_ns() ^ (u64::from(std::process::id()) << 32);
    for b in &mut buf[filled..] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// 0.0 ..= 1.0
fn jitter() -> f64 {
    let mut b = [0u8; 2];
    random_bytes(&mut b);
    f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)
}

#[cfg(test)]
mod tests;
