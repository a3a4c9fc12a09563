//! The lab origins over HTTP/3 (quinn + h3): the same sites as `super::http`, on UDP port 443
//! of each HTTPS origin's address, with ALPN `h3` and the same certificates.
//!
//! | endpoint | serves |
//! | --- | --- |
//! | 10.77.0.2:443/udp (`shop.test`) | 301 `Location: https://www.shop.test<path>` |
//! | 10.77.0.3:443/udp (`www.shop.test`, `edge.cdn.test`) | the page and everything `super::http` serves there |
//! | 10.77.0.4:443/udp (`static.shop.test`) | the sub-resources |
//! | 10.77.0.6:443/udp (`badcert.shop.test`) | the page, behind the certificate the lab CA did not sign |
//!
//! Only with [`Http3::On`](super::Http3::On): with `Drop` or `Refuse` nothing listens on UDP 443
//! (an nftables rule drops the packets, or the kernel answers with ICMP port unreachable).
//!
//! Routes, think time, throttle and the faults are `super::http`'s: `/status/N` answers with N;
//! `/stall` sends its head (`content-length: 2048`) and 1024 bytes, holds the stream for
//! [`STALL_HOLD`] and then resets it (`H3_INTERNAL_ERROR`: HTTP/3's way of a connection
//! closed mid-body). Every request is logged as `HTTP/3` in the lab's request log, and every
//! completed QUIC handshake is counted ([`super::Lab::quic_handshake_count`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::{Buf, Bytes};
use hyper::header::{self, HeaderValue};
use hyper::Response;
use quinn::crypto::rustls::QuicServerConfig;

use super::http::{ALT_SVC_H3, LISTENERS, STALL_BODY_LEN, STALL_HOLD, Site, route};
use super::{HttpRequestRecord, LabConfig, LabStats, hosts};

/// Most QUIC connections accepted per endpoint over the lab's life.
const MAX_CONNECTIONS: u64 = 1_000_000;
/// Most requests served per connection.
const MAX_REQUESTS_PER_CONNECTION: u64 = 100_000;
/// A QUIC handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this long, whatever it is doing (as over TCP).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);
/// An idle connection is closed after this (quinn's idle timeout; the client's counts too).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request body read (the lab's routes ignore bodies; this bounds what is drained).
const MAX_REQUEST_BODY: usize = 1024 * 1024;

struct H3Site {
    site: Site,
    local: SocketAddr,
    think_time: Duration,
    bytes_per_sec: Option<u64>,
    stats: Arc<LabStats>,
}

/// Binds a QUIC endpoint on UDP 443 of every HTTPS origin (when HTTP/3 is served) and spawns
/// its accept loop on the current (lab) runtime.
pub(crate) async fn start(
    config: &LabConfig,
    stats: Arc<LabStats>,
    tls: Arc<rustls::ServerConfig>,
    badcert_tls: Arc<rustls::ServerConfig>,
) -> Result<()> {
    if !config.http3.served() {
        return Ok(());
    }
    let quic_config = |tls: Arc<rustls::ServerConfig>| -> Result<quinn::ServerConfig> {
        let crypto = QuicServerConfig::try_from(tls).context("a QUIC server config")?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(
            IDLE_TIMEOUT.try_into().expect("30 s is a valid idle timeout"),
        ));
        server.transport_config(Arc::new(transport));
        Ok(server)
    };
    let good = quic_config(tls)?;
    let bad = quic_config(badcert_tls)?;
    for (v4, port, site, is_tls) in LISTENERS {
        if !is_tls {
            continue;
        }
        let mut ips: Vec<IpAddr> = vec![v4.into()];
        if config.ipv6 {
            ips.push(hosts::v6_of(v4).into());
        }
        for ip in ips {
            let local = SocketAddr::new(ip, port);
            let server = if v4 == hosts::BADCERT_ADDR {
                bad.clone()
            } else {
                good.clone()
            };
            let endpoint = quinn::Endpoint::server(server, local)
                .with_context(|| format!("binding the HTTP/3 origin {local}/udp"))?;
            let ctx = Arc::new(H3Site {
                site,
                local,
                think_time: config.think_time,
                bytes_per_sec: config.body_bytes_per_sec.filter(|r| *r > 0),
                stats: stats.clone(),
            });
            tokio::spawn(accept_loop(endpoint, ctx));
        }
    }
    Ok(())
}

async fn accept_loop(endpoint: quinn::Endpoint, ctx: Arc<H3Site>) {
    for _ in 0..MAX_CONNECTIONS {
        let Some(incoming) = endpoint.accept().await else {
            return;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, serve_connection(incoming, ctx)).await;
        });
    }
}

async fn serve_connection(incoming: quinn::Incoming, ctx: Arc<H3Site>) {
    let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, async { incoming.accept()?.await }).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!("lab HTTP/3 origin {}: handshake: {e}", ctx.local);
            return;
        }
        Err(_) => return,
    };
    ctx.stats.quic_handshake_done();
    let mut h3 = match h3::server::builder()
        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
        .await
    {
        Ok(h3) => h3,
        Err(e) => {
            tracing::debug!("lab HTTP/3 origin {}: HTTP/3 set-up: {e}", ctx.local);
            return;
        }
    };
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        match h3.accept().await {
            Ok(Some(resolver)) => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    match resolver.resolve_request().await {
                        Ok((req, stream)) => {
                            if let Err(e) = handle(req, stream, &ctx).await {
                                tracing::debug!("lab HTTP/3 origin {}: {e}", ctx.local);
                            }
                        }
                        Err(e) => tracing::debug!("lab HTTP/3 origin {}: request: {e}", ctx.local),
                    }
                });
            }
            Ok(None) => return,
            Err(e) => {
                tracing::debug!("lab HTTP/3 origin {}: connection: {e}", ctx.local);
                return;
            }
        }
    }
}

type Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

async fn handle(req: hyper::Request<()>, mut stream: Stream, ctx: &H3Site) -> Result<()> {
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
        .unwrap_or_default();
    let req_path = req.uri().path().to_owned();
    // The routes take no body; read what was sent (bounded) so the stream is consumed.
    let mut drained = 0usize;
    while drained < MAX_REQUEST_BODY {
        match stream.recv_data().await {
            Ok(Some(chunk)) => drained += chunk.remaining(),
            Ok(None) | Err(_) => break,
        }
    }
    let (status, content_type, body, location) = route(ctx.site, &req_path, &path);
    if !ctx.think_time.is_zero() {
        tokio::time::sleep(ctx.think_time).await;
    }
    ctx.stats.http_request(HttpRequestRecord {
        server: ctx.local,
        tls: true,
        host,
        method: req.method().as_str().to_owned(),
        path,
        version: "HTTP/3".to_owned(),
        status: status.as_u16(),
    });
    let stall = ctx.site != Site::Redirect && req_path == "/stall";
    let len = if stall { STALL_BODY_LEN } else { body.len() };
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::SERVER, HeaderValue::from_static("tracer-lab"));
    // Over HTTP/3 as well: a client that came by the HTTPS record learns it for the origin.
    h.insert(header::ALT_SVC, HeaderValue::from_static(ALT_SVC_H3));
    if let Some(loc) = location
        && let Ok(v) = HeaderValue::from_str(&loc)
    {
        h.insert(header::LOCATION, v);
    }
    if ctx.site == Site::Www && req_path == "/account" {
        h.insert(
            header::SET_COOKIE,
            HeaderValue::from_static("sid=S3CR3T; Path=/; Secure; HttpOnly; SameSite=Lax"),
        );
    }
    stream.send_response(resp).await.context("sending the response head")?;
    if stall {
        stream.send_data(body).await.context("sending the stalled body's part")?;
        tokio::time::sleep(STALL_HOLD).await;
        stream.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
        return Ok(());
    }
    send_body(&mut stream, body, ctx.bytes_per_sec).await?;
    stream.finish().await.context("finishing the response")?;
    Ok(())
}

/// Sends `body` whole, or at `rate` bytes per second in chunks of a 20th of a second's worth
/// (as `super::http` paces over TCP).
async fn send_body(stream: &mut Stream, body: Bytes, rate: Option<u64>) -> Result<()> {
    if body.is_empty() {
        return Ok(());
    }
    let Some(rate) = rate else {
        return stream.send_data(body).await.context("sending the body");
    };
    let chunk = (rate / 20).clamp(1, 16 * 1024) as usize;
    let start = tokio::time::Instant::now();
    let mut sent: u64 = 0;
    for i in 0..body.len().div_ceil(chunk) {
        let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
        tokio::time::sleep_until(due).await;
        let piece = body.slice(i * chunk..((i + 1) * chunk).min(body.len()));
        sent += piece.len() as u64;
        stream.send_data(piece).await.context("sending the body")?;
    }
    Ok(())
}
