//! Pieces of synthetic page loads, for tests/history.rs and tests/dashboard.rs: a traced GET
//! request, its phase timings, and a reference fetcher's entries (for baselines).
use tracer::{
    failure::Failure,
    fetch::model::{Entry, Initiator, Timed, Timings as FetchTimings},
    stitch::model::{ClientInfo, DnsLookup, PageLoad, Request, Timings},
};

pub const MS: u64 = 1_000_000;

/// A request's phases in ms (-1: the phase did not happen); `connect` is TCP plus TLS, as in
/// HAR. No `blocked` phase.
pub fn timings(dns: f64, tcp: f64, ssl: f64, send: f64, wait: f64, receive: f64) -> Timings {
    let connect = if tcp < 0.0 { -1.0 } else { tcp + ssl.max(0.0) };
    Timings { blocked: -1.0, dns, connect, tcp, ssl, send, wait, receive }
}

/// A traced `GET url` of `client` (process `tgid`, thread `tgid + 1`) that starts at
/// `started_ns` and lasts its phases: `connection` and `dns` index the page load's lists, and
/// a request with a connection of its own is on a new one.
#[allow(clippy::too_many_arguments)]
pub fn request(
    (client, tgid): (&str, u32),
    connection: Option<usize>,
    dns: Option<usize>,
    url: &str,
    host: &str,
    path: &str,
    protocol: &str,
    status: Option<u16>,
    started_ns: u64,
    t: Timings,
    response_bytes: u64,
) -> Request {
    let ended_ns = started_ns + (t.total() * 1e6) as u64;
    Request {
        connection,
        dns,
        tgid,
        pid: tgid + 1,
        comm: client.into(),
        method: Some("GET".into()),
        url: Some(url.into()),
        host: Some(host.into()),
        path: Some(path.into()),
        protocol: Some(protocol.into()),
        stream_id: None,
        status,
        redirect_to: None,
        content_type: Some("text/html".into()),
        request_headers: vec![],
        response_headers: vec![],
        request_bytes: 78,
        response_bytes,
        response_header_bytes: 120.min(response_bytes),
        started_ns,
        ended_ns,
        timings: t,
        new_connection: connection.is_some(),
        error: None,
        complete: status.is_some(),
        request_body: None,
        response_body: None,
    }
}

/// The page load of a name that did not resolve: `request` (of `url`, no connection, no
/// status) after `lookup`, which failed with `error`, 2 ms from `started_ns`.
pub fn failed_lookup(client: ClientInfo, url: String, started_ns: u64, request: Request, lookup: DnsLookup, error: &str) -> PageLoad {
    PageLoad {
        client,
        url: Some(url),
        started_ns,
        ended_ns: started_ns + 2 * MS,
        status: None,
        error: Some(Failure::from_text(error)),
        requests: vec![request],
        connections: vec![],
        dns: vec![lookup],
        redirect_chain: vec![0],
        cut: None,
    }
}

/// A phase of the reference fetcher that starts `start_ms` after `t0` (monotonic ns).
pub fn timed(t0: u64, start_ms: f64, ms: f64) -> Option<Timed> {
    let s = t0 + (start_ms * 1e6) as u64;
    Some(Timed { start_ns: s, end_ns: s + (ms * 1e6) as u64, ms })
}

/// The phases of a reference fetch's two hops that starts at `t0`: `http://` (dns, connect,
/// send, wait, receive), then `https://` (also TLS) from 4 ms on, its wait 4 ms.
pub fn fetched_redirect_timings(t0: u64) -> (FetchTimings, FetchTimings) {
    let timed = |start_ms: f64, ms: f64| timed(t0, start_ms, ms);
    let hop = FetchTimings {
        dns: timed(0.0, 1.0),
        connect: timed(1.0, 0.5),
        send: timed(1.5, 0.1),
        wait: timed(1.6, 2.0),
        receive: timed(3.6, 0.2),
        ..Default::default()
    };
    let doc = FetchTimings {
        dns: timed(4.0, 1.0),
        connect: timed(5.0, 0.5),
        tls: timed(5.5, 2.5),
        send: timed(8.0, 0.1),
        wait: timed(8.1, 4.0),
        receive: timed(12.1, 1.0),
        ..Default::default()
    };
    (hop, doc)
}

/// Entry `id` of a reference fetch that starts at `t0`: hop `id` of a redirect chain (over
/// HTTP/1.1, a connection and a lookup of its own), `GET url` answered with `status`.
pub fn fetched_entry(t0: u64, id: usize, url: &str, status: u16, timings: FetchTimings, initiator: Initiator) -> Entry {
    Entry {
        id,
        initiator,
        redirected_from: id.checked_sub(1),
        hop: id as u32,
        method: "GET".into(),
        url: url.into(),
        origin: url.split('/').take(3).collect::<Vec<_>>().join("/"),
        span: timed(t0, 0.0, 10.0).unwrap(),
        timings,
        connection_id: Some(id),
        connection_reused: false,
        dns_id: Some(id),
        server_address: None,
        http_version: Some("HTTP/1.1".into()),
        request_headers: vec![],
        request_headers_size: None,
        status: Some(status),
        status_text: None,
        response_headers: vec![],
        response_headers_size: None,
        body_size: 0,
        mime_type: None,
        redirect_url: None,
        failure: None,
    }
}
