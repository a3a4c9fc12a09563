//! The lab origins (hyper, HTTP/1.1 and HTTP/2; TLS by tokio-rustls with ALPN h2, http/1.1).
//!
//! | listener | serves |
//! | --- | --- |
//! | 10.77.0.2:80 (`http://shop.test/`) | 301 `Location: https://www.shop.test<path>` |
//! | 10.77.0.2:443 (`https://shop.test/`) | the same redirect |
//! | 10.77.0.3:443 (`https://www.shop.test/`, `edge.cdn.test`) | `/` (HTML page), `/echo`, `/bytes/N`, `/account` (sets a cookie; its script sends it with a bearer token) |
//! | 10.77.0.4:443 (`https://static.shop.test/`) | `/app.css`, `/app.js`, `/logo.png`, `/echo`, `/bytes/N` |
//! | 10.77.0.6:443 (`https://badcert.shop.test/`) | the page, behind a certificate the lab CA did not sign |
//!
//! Faults on `www.shop.test` and `static.shop.test`: `/status/N` answers with status N
//! (100 < N < 600, e.g. `/status/503`); `/stall` sends its head (`Content-Length: 2048`) and
//! 1024 bytes of body, then holds the connection for [`STALL_HOLD`] and closes it.
//!
//! With HTTP/3 advertised (`LabConfig::http3`), every response over TLS carries
//! `Alt-Svc: h3=":443"; ma=86400`; `super::h3` serves the same routes over QUIC.
//!
//! Every response waits `LabConfig::think_time` before its head and sends its body at
//! `LabConfig::body_bytes_per_sec` when set. Plain-HTTP listeners also accept HTTP/2 with prior
//! knowledge (h2c).

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::{HttpRequestRecord, LabConfig, LabStats, hosts};

/// Most connections accepted per listener over the lab's life.
const MAX_CONNECTIONS: u64 = 1_000_000;
/// A TLS handshake must finish within this.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this long, whatever it is doing.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);
/// How long `/stall` holds its connection after half of its body.
pub const STALL_HOLD: Duration = Duration::from_secs(10);
/// `/stall`'s announced body length; half of it is sent.
pub const STALL_BODY_LEN: usize = 2048;
/// Largest body `/bytes/N` serves.
const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// The page at `https://www.shop.test/`.
pub const PAGE_HTML: &str = "<!doctype html>
<html lang=\"en\">
<head>
<meta charset=\"utf-8\">
<title>Lab Shop</title>
<link rel=\"stylesheet\" href=\"https://static.shop.test/app.css\">
<script src=\"https://static.shop.test/app.js\" defer></script>
</head>
<body>
<h1>Lab Shop</h1>
<img src=\"https://static.shop.test/logo.png\" alt=\"logo\" width=\"16\" height=\"16\">
<p id=\"status\">tracer test lab page</p>
</body>
</html>
";
const APP_CSS: &str = "body { font-family: sans-serif; margin: 2em; }\nh1 { color: #c82828; }\n";
const APP_JS: &str = "document.addEventListener('DOMContentLoaded', () => {\n  document.getElementById('status').textContent = 'loaded';\n});\n";
/// A 16x16 red PNG.
const LOGO_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x10, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x91, 0x68,
    0x36, 0x00, 0x00, 0x00, 0x16, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x38, 0xa1, 0xa1, 0x41,
    0x12, 0x62, 0x18, 0xd5, 0x30, 0xaa, 0x61, 0xf8, 0x6a, 0x00, 0x00, 0x7c, 0x33, 0x18, 0x10, 0xfa,
    0x24, 0xa3, 0xe5, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];
/// Body of `/echo`.
pub const ECHO_BODY: &str = "tracer-lab echo ok\n";

/// A stand-in credential: `/account` sets it as a cookie and its script sends it as a bearer
/// token and a query value, so that tests can check it is stored and shown nowhere.
pub const LAB_SECRET: &str = "S3CR3T";

/// `https://www.shop.test/account`: a page whose script (not deferred, so the page's load
/// waits for it) sends a synchronous request carrying the cookie the page set and a bearer
/// token, like a web app's API call.
const ACCOUNT_HTML: &str = "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Account</title>
<script src=\"/account.js\"></script>
</head><body><p id=\"status\">account</p></body></html>
";
const ACCOUNT_JS: &str = "var x = new XMLHttpRequest();
x.open('GET', '/echo?token=S3CR3T', false);
x.setRequestHeader('Authorization', 'Bearer S3CR3T');
x.send();
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Site {
    /// shop.test: redirects everything to https://www.shop.test.
    Redirect,
    /// www.shop.test / edge.cdn.test: the page.
    Www,
    /// static.shop.test: the page's sub-resources.
    Static,
}

/// The origin listeners: address, port, site, TLS. The TLS ones also serve HTTP/3 on UDP
/// (see `super::h3`).
pub(super) const LISTENERS: [(Ipv4Addr, u16, Site, bool); 5] = [
    (hosts::SHOP_ADDR, 80, Site::Redirect, false),
    (hosts::SHOP_ADDR, 443, Site::Redirect, true),
    (hosts::EDGE_ADDR, 443, Site::Www, true),
    (hosts::STATIC_ADDR, 443, Site::Static, true),
    (hosts::BADCERT_ADDR, 443, Site::Www, true),
];

/// The Alt-Svc value the HTTPS origins send when HTTP/3 is advertised: the same host, UDP port
/// 443, for a day (Chromium and Firefox remember it per origin).
pub(super) const ALT_SVC_H3: &str = "h3=\":443\"; ma=86400";

struct SiteCtx {
    site: Site,
    local: SocketAddr,
    tls: bool,
    /// Send `Alt-Svc: h3` (HTTPS origins with HTTP/3 advertised).
    alt_svc: bool,
    think_time: Duration,
    bytes_per_sec: Option<u64>,
    stats: Arc<LabStats>,
}

/// Binds every origin listener and spawns its accept loop on the current (lab) runtime.
pub(crate) async fn start(
    config: &LabConfig,
    stats: Arc<LabStats>,
    tls: Arc<rustls::ServerConfig>,
    badcert_tls: Arc<rustls::ServerConfig>,
) -> Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let badcert_acceptor = TlsAcceptor::from(badcert_tls);
    for (v4, port, site, tls) in LISTENERS {
        let mut ips: Vec<IpAddr> = vec![v4.into()];
        if config.ipv6 {
            ips.push(hosts::v6_of(v4).into());
        }
        for ip in ips {
            let local = SocketAddr::new(ip, port);
            let listener = TcpListener::bind(local)
                .await
                .with_context(|| format!("binding origin {local}"))?;
            let ctx = Arc::new(SiteCtx {
                site,
                local,
                tls,
                alt_svc: tls && config.http3.advertised(),
                think_time: config.think_time,
                bytes_per_sec: config.body_bytes_per_sec.filter(|r| *r > 0),
                stats: stats.clone(),
            });
            let acceptor = tls.then(|| {
                if v4 == hosts::BADCERT_ADDR {
                    badcert_acceptor.clone()
                } else {
                    acceptor.clone()
                }
            });
            tokio::spawn(accept_loop(listener, acceptor, ctx));
        }
    }
    Ok(())
}

async fn accept_loop(listener: TcpListener, acceptor: Option<TlsAcceptor>, ctx: Arc<SiteCtx>) {
    for _ in 0..MAX_CONNECTIONS {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::debug!("lab origin {}: accept: {e}", ctx.local);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        ctx.stats.tcp_accepted();
        let _ = tcp.set_nodelay(true);
        let (acceptor, ctx) = (acceptor.clone(), ctx.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, serve_connection(tcp, acceptor, ctx))
                .await;
        });
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    acceptor: Option<TlsAcceptor>,
    ctx: Arc<SiteCtx>,
) {
    let svc_ctx = ctx.clone();
    let service = hyper::service::service_fn(move |req| handle(req, svc_ctx.clone()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    match acceptor {
        None => {
            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
        }
        Some(acceptor) => {
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!("lab origin {}: TLS handshake: {e}", ctx.local);
                    return;
                }
                Err(_) => return,
            };
            ctx.stats.tls_handshake_done();
            match tls.get_ref().1.alpn_protocol() {
                Some(b"h2") => builder = builder.http2_only(),
                Some(_) => builder = builder.http1_only(),
                None => {}
            }
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        }
    }
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

async fn handle(
    req: Request<Incoming>,
    ctx: Arc<SiteCtx>,
) -> std::result::Result<Response<LabBody>, Infallible> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let req_path = req.uri().path().to_owned();
    let (status, content_type, body, location): (StatusCode, &str, Bytes, Option<String>) =
        route(ctx.site, &req_path, &path);
    if !ctx.think_time.is_zero() {
        tokio::time::sleep(ctx.think_time).await;
    }
    ctx.stats.http_request(HttpRequestRecord {
        server: ctx.local,
        tls: ctx.tls,
        host,
        method: req.method().as_str().to_owned(),
        path,
        version: version_str(req.version()).to_owned(),
        status: status.as_u16(),
    });
    let stall = ctx.site != Site::Redirect && req_path == "/stall";
    let len = if stall { STALL_BODY_LEN } else { body.len() };
    let body = if stall {
        LabBody::stalled(body)
    } else {
        LabBody::new(body, ctx.bytes_per_sec)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::SERVER, HeaderValue::from_static("tracer-lab"));
    if let Some(loc) = location
        && let Ok(v) = HeaderValue::from_str(&loc)
    {
        h.insert(header::LOCATION, v);
    }
    if ctx.alt_svc {
        h.insert(header::ALT_SVC, HeaderValue::from_static(ALT_SVC_H3));
    }
    if ctx.site == Site::Www && req_path == "/account" {
        h.insert(
            header::SET_COOKIE,
            HeaderValue::from_static("sid=S3CR3T; Path=/; Secure; HttpOnly; SameSite=Lax"),
        );
    }
    Ok(resp)
}

/// Status, content type, body and Location for a request path.
pub(super) fn route(
    site: Site,
    path: &str,
    path_and_query: &str,
) -> (StatusCode, &'static str, Bytes, Option<String>) {
    const HTML: &str = "text/html; charset=utf-8";
    const TEXT: &str = "text/plain; charset=utf-8";
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            TEXT,
            Bytes::from_static(b"not found\n"),
            None,
        )
    };
    let bytes = |n: &str| match n.parse::<u64>() {
        Ok(n) if n <= MAX_BYTES => (
            StatusCode::OK,
            "application/octet-stream",
            Bytes::from(
                (0..n)
                    .map(|i| b"0123456789abcdef"[(i % 16) as usize])
                    .collect::<Vec<u8>>(),
            ),
            None,
        ),
        _ => not_found(),
    };
    match (site, path) {
        (Site::Redirect, _) => {
            let to = format!("https://{}{}", hosts::WWW, path_and_query);
            let body = format!("<html><body><a href=\"{to}\">moved</a></body></html>\n");
            (
                StatusCode::MOVED_PERMANENTLY,
                HTML,
                Bytes::from(body),
                Some(to),
            )
        }
        // A redirect the fetcher must refuse (not http or https), with credentials in its
        // Location: they must not reach the stored failure reason.
        (Site::Www, "/unsafe-redirect") => (
            StatusCode::FOUND,
            TEXT,
            Bytes::from_static(b"moved\n"),
            Some(format!("ftp://user:{LAB_SECRET}@files.shop.test/x?token={LAB_SECRET}")),
        ),
        (Site::Www, "/account") => (
            StatusCode::OK,
            HTML,
            Bytes::from_static(ACCOUNT_HTML.as_bytes()),
            None,
        ),
        (Site::Www, "/account.js") => (
            StatusCode::OK,
            "text/javascript",
            Bytes::from_static(ACCOUNT_JS.as_bytes()),
            None,
        ),
        (Site::Www, "/" | "/index.html") => (
            StatusCode::OK,
            HTML,
            Bytes::from_static(PAGE_HTML.as_bytes()),
            None,
        ),
        (Site::Static, "/app.css") => (
            StatusCode::OK,
            "text/css",
            Bytes::from_static(APP_CSS.as_bytes()),
            None,
        ),
        (Site::Static, "/app.js") => (
            StatusCode::OK,
            "text/javascript",
            Bytes::from_static(APP_JS.as_bytes()),
            None,
        ),
        (Site::Static, "/logo.png") => (
            StatusCode::OK,
            "image/png",
            Bytes::from_static(LOGO_PNG),
            None,
        ),
        (Site::Www | Site::Static, "/echo") => (
            StatusCode::OK,
            TEXT,
            Bytes::from_static(ECHO_BODY.as_bytes()),
            None,
        ),
        (Site::Www | Site::Static, "/stall") => (
            StatusCode::OK,
            "application/octet-stream",
            Bytes::from(vec![b's'; STALL_BODY_LEN / 2]),
            None,
        ),
        (Site::Www | Site::Static, p) => {
            if let Some(n) = p.strip_prefix("/bytes/") {
                return bytes(n);
            }
            let status = p
                .strip_prefix("/status/")
                .and_then(|n| n.parse::<u16>().ok())
                .filter(|n| (101..600).contains(n))
                .and_then(|n| StatusCode::from_u16(n).ok());
            match status {
                Some(status) => (
                    status,
                    TEXT,
                    Bytes::from(format!("status {}\n", status.as_u16())),
                    None,
                ),
                None => not_found(),
            }
        }
    }
}

/// Response body: all at once, or fed by a pacing task at a fixed byte rate.
pub(crate) enum LabBody {
    Full(Option<Bytes>),
    /// `/stall`: the part of the body, then nothing until the deadline, then the end of the
    /// stream although the announced length was not reached (hyper then closes the
    /// connection).
    Stalled {
        part: Option<Bytes>,
        hold: Pin<Box<tokio::time::Sleep>>,
    },
    Paced {
        rx: mpsc::Receiver<Bytes>,
        remaining: u64,
    },
}

impl LabBody {
    fn stalled(part: Bytes) -> LabBody {
        LabBody::Stalled {
            part: Some(part),
            hold: Box::pin(tokio::time::sleep(STALL_HOLD)),
        }
    }

    fn new(body: Bytes, bytes_per_sec: Option<u64>) -> LabBody {
        let Some(rate) = bytes_per_sec else {
            return LabBody::Full(Some(body));
        };
        if body.is_empty() {
            return LabBody::Full(None);
        }
        let remaining = body.len() as u64;
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(pace(body, rate, tx));
        LabBody::Paced { rx, remaining }
    }
}

/// Sends `body` in chunks so that `rate` bytes per second go out: chunk k is released when
/// the bytes before it are due. Ends early when the receiver is gone.
async fn pace(body: Bytes, rate: u64, tx: mpsc::Sender<Bytes>) {
    let chunk = (rate / 20).clamp(1, 16 * 1024) as usize;
    let start = tokio::time::Instant::now();
    let mut sent: u64 = 0;
    let chunks = body.len().div_ceil(chunk);
    for i in 0..chunks {
        let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
        tokio::time::sleep_until(due).await;
        let piece = body.slice(i * chunk..((i + 1) * chunk).min(body.len()));
        sent += piece.len() as u64;
        if tx.send(piece).await.is_err() {
            return;
        }
    }
}

impl Body for LabBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            LabBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            LabBody::Stalled { part, hold } => match part.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => hold.as_mut().poll(cx).map(|()| None),
            },
            LabBody::Paced { rx, remaining } => match rx.poll_recv(cx) {
                Poll::Ready(Some(b)) => {
                    *remaining = remaining.saturating_sub(b.len() as u64);
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            LabBody::Full(b) => b.is_none(),
            LabBody::Stalled { .. } => false,
            LabBody::Paced { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            LabBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            LabBody::Stalled { .. } => SizeHint::with_exact(STALL_BODY_LEN as u64),
            LabBody::Paced { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}
