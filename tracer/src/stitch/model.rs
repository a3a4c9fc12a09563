//! What the stitcher produces: page loads made of requests, each with its connection, DNS
//! lookup and TLS session. Timestamps are CLOCK_MONOTONIC ns (the kernel's clock); `*_ms`
//! durations are HAR-style, -1 where a phase did not happen. Failures are stored in their
//! text form, `"error": "CODE (detail)"`, with `"error_phase"` beside it only where the code
//! does not give the phase ([`crate::failure::stored`]).
use serde::{Deserialize, Serialize};

use crate::failure::Failure;

pub use crate::decode::http::CapturedBody;
pub use crate::redact::Header;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PageLoad {
    /// The client: root of the process tree that did the work (a browser instance, curl).
    pub client: ClientInfo,
    /// URL of the first request (the navigation), or of the failed lookup/connect.
    pub url: Option<String>,
    pub started_ns: u64,
    pub ended_ns: u64,
    /// HTTP status of the last redirect hop's final response (the document).
    pub status: Option<u16>,
    /// First failure that prevented the document from loading, browser-style:
    /// ERR_NAME_NOT_RESOLVED, ERR_CONNECTION_REFUSED, ERR_CONNECTION_TIMED_OUT ...
    #[serde(flatten, with = "crate::failure::stored")]
    pub error: Option<Failure>,
    /// Requests in the order they started (redirect hops first).
    pub requests: Vec<Request>,
    pub connections: Vec<Connection>,
    pub dns: Vec<DnsLookup>,
    /// Indices into `requests`: the redirect chain from the first request to the document.
    pub redirect_chain: Vec<usize>,
    /// Set when a cap closed the page load before its client went quiet (`stitch/caps.rs`):
    /// what it holds is what the client did up to then, and its next work is a new page load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<PageCut>,
}

/// The caps on what the stitcher holds in memory (`stitch/caps.rs`); their names are the
/// stored `cut` values and the `cap` label of `tracer_caps_hit_total`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Cap {
    /// One page load's requests (failed entries included), connections or lookups.
    PageRequests,
    /// One page load's age.
    PageAge,
    /// Page loads open at once.
    OpenPages,
    /// Connections held (open page loads' and idle keep-alive ones).
    Connections,
    /// DNS lookups held (pending, and answered ones kept to join connections to).
    Lookups,
    /// Captured plaintext (URLs, headers, bodies) held by the open page loads.
    CapturedBytes,
}

impl Cap {
    pub const ALL: [Cap; 6] = [Cap::PageRequests, Cap::PageAge, Cap::OpenPages, Cap::Connections, Cap::Lookups, Cap::CapturedBytes];

    pub fn name(self) -> &'static str {
        match self {
            Cap::PageRequests => "page_requests",
            Cap::PageAge => "page_age",
            Cap::OpenPages => "open_pages",
            Cap::Connections => "connections",
            Cap::Lookups => "lookups",
            Cap::CapturedBytes => "captured_bytes",
        }
    }

    /// The `tracer run` option that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Cap::PageRequests => "--page-max-requests",
            Cap::PageAge => "--page-max-age",
            Cap::OpenPages => "--max-open-pages",
            Cap::Connections => "--max-connections",
            Cap::Lookups => "--max-lookups",
            Cap::CapturedBytes => "--max-captured-bytes",
        }
    }
}

/// Why a page load was cut: the cap and its value when it bit (ms for `page_age`, bytes for
/// `captured_bytes`, a count for the others).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct PageCut {
    pub cap: Cap,
    pub limit: u64,
}

impl PageCut {
    /// `cut at 1000 requests (--page-max-requests)`: what `tracer show`, HAR and the
    /// dashboard say.
    pub fn text(&self) -> String {
        let (cap, n) = (self.cap, self.limit);
        let what = match cap {
            Cap::PageRequests => format!("cut at {n} requests, connections or lookups"),
            Cap::PageAge => format!("cut at {} s of age", n as f64 / 1000.0),
            Cap::OpenPages => format!("cut as the oldest of {n} open page loads"),
            Cap::Connections => format!("cut as holder of the oldest of {n} connections"),
            Cap::Lookups => format!("cut as holder of the oldest of {n} DNS lookups"),
            Cap::CapturedBytes => format!("cut as the oldest holder of captured bytes beyond {n}"),
        };
        format!("{what} ({})", cap.flag())
    }
}

impl PageLoad {
    pub fn total_ms(&self) -> f64 {
        ms(self.ended_ns.saturating_sub(self.started_ns))
    }
    pub fn bytes(&self) -> u64 {
        self.requests.iter().map(|r| r.response_bytes).sum()
    }
    /// The line `tracer run --print` gives a finished page load: client, URL, outcome,
    /// total, requests, connections, bytes.
    pub fn line(&self) -> String {
        let p = self;
        format!(
            "PAGE LOAD {}[{}] {} {} {:.1} ms, {} requests over {} connections, {} bytes{}",
            p.client.name,
            p.client.tgid,
            p.url.as_deref().unwrap_or("?"),
            match (&p.status, &p.error) {
                (_, Some(e)) => e.text(),
                (Some(s), None) => s.to_string(),
                (None, None) => "-".into(),
            },
            p.total_ms(),
            p.requests.len(),
            p.connections.len(),
            p.bytes(),
            if p.redirect_chain.len() > 1 { format!(", {} redirect hops", p.redirect_chain.len() - 1) } else { String::new() },
        ) + &p.cut.map(|c| format!(", {}", c.text())).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientInfo {
    pub tgid: u32,
    /// Display name: the client root's name (firefox-esr, chromium, curl), not a thread name.
    pub name: String,
    pub exe: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Request {
    /// Index into `PageLoad::connections`; None for a failure before any connection.
    pub connection: Option<usize>,
    /// Index into `PageLoad::dns` for the lookup that gave this request's address.
    pub dns: Option<usize>,
    pub tgid: u32,
    pub pid: u32,
    pub comm: String,
    pub method: Option<String>,
    pub url: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub protocol: Option<String>,
    pub stream_id: Option<u32>,
    pub status: Option<u16>,
    /// Location of a 3xx response.
    pub redirect_to: Option<String>,
    pub content_type: Option<String>,
    /// Request headers as they may be kept ([`crate::redact`]): credentials and headers off
    /// the safe list have their value replaced; HTTP/2 pseudo-headers are in the fields above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers: Vec<Header>,
    /// Response headers, redacted likewise (`set-cookie` never keeps its value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers: Vec<Header>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub response_header_bytes: u64,
    pub started_ns: u64,
    pub ended_ns: u64,
    pub timings: Timings,
    /// First request on its connection (paid for dns/connect/ssl).
    pub new_connection: bool,
    #[serde(flatten, with = "crate::failure::stored")]
    pub error: Option<Failure>,
    pub complete: bool,
    /// Bodies, only with `tracer run --capture-bodies` (they hold passwords, tokens and
    /// personal data): the first bytes up to the limit, content-encoding as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<CapturedBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<CapturedBody>,
}

/// HAR 1.2 timings in ms, -1 when not applicable. As HAR 1.2 says, `connect` includes `ssl`;
/// `tcp` is the TCP handshake alone.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Timings {
    pub blocked: f64,
    pub dns: f64,
    pub connect: f64,
    pub tcp: f64,
    pub ssl: f64,
    pub send: f64,
    pub wait: f64,
    pub receive: f64,
}

impl Default for Timings {
    fn default() -> Self {
        Self { blocked: -1.0, dns: -1.0, connect: -1.0, tcp: -1.0, ssl: -1.0, send: -1.0, wait: -1.0, receive: -1.0 }
    }
}

impl Timings {
    /// HAR's entry time of these phases, unrounded: [`crate::har::entry_time`].
    pub fn total(&self) -> f64 {
        crate::har::entry_time([self.blocked, self.dns, self.connect, self.send, self.wait, self.receive])
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Connection {
    pub tgid: u32,
    pub pid: u32,
    pub comm: String,
    pub fd: i32,
    pub skaddr: u64,
    pub src: Option<String>,
    pub dst: Option<String>,
    pub connect_start_ns: u64,
    pub established_ns: Option<u64>,
    pub closed_ns: Option<u64>,
    /// What failed the connection, as the kernel or the handshake names it: the connect's
    /// errno name (ECONNREFUSED, ETIMEDOUT ...), else its failed TLS handshake's code. The
    /// failure of the page load's entry is its request's `error`.
    pub error: Option<String>,
    pub tls: Option<TlsSession>,
    /// Requests carried (keep-alive / HTTP/2 streams).
    pub requests: u32,
    /// A QUIC connection (UDP, HTTP/3): what its datagrams showed. Its `tls` is the TLS 1.3
    /// handshake inside QUIC (library `quic`); `skaddr` is 0 and `established_ns` the
    /// handshake's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic: Option<QuicSession>,
}

/// A QUIC connection as its datagrams show it without keys (`crate::decode::quic`): the
/// handshake runs from the client's first Initial to its first 1-RTT packet; in HAR that is
/// both `connect` and `ssl` (as Chrome writes it), `tcp` is -1.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct QuicSession {
    /// `QUICv1`, `QUICv2`.
    pub version: Option<String>,
    /// The client's first Initial packet.
    pub handshake_start_ns: Option<u64>,
    /// The client's first 1-RTT packet: the handshake is over for it.
    pub handshake_end_ns: Option<u64>,
    /// The destination connection ID of the client's first Initial (hex): the same connection
    /// in a packet capture.
    pub original_dcid: Option<String>,
    /// ALPN protocols the client offered (`h3`); the server's choice is encrypted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn_offered: Vec<String>,
    /// The client sent 0-RTT data (a resumed session).
    pub zero_rtt: bool,
    /// The server asked for a Retry first.
    pub retry: bool,
    /// The versions a Version Negotiation offered, when the server sent one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub version_negotiation: Vec<String>,
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The QUIC attempt failed and the client connected over TCP to the same server after it:
    /// that connection (an index into `PageLoad::connections` once stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fell_back_to: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TlsSession {
    /// openssl | gnutls | nspr | boring_ssl | wire | quic (the TLS inside a QUIC handshake)
    pub library: String,
    pub handshake_start_ns: Option<u64>,
    pub handshake_end_ns: Option<u64>,
    /// Set when the handshake was not seen and its end is taken from the first write.
    pub estimated: bool,
    pub version: Option<String>,
    pub cipher: Option<String>,
    pub alpn: Option<String>,
    pub sni: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DnsLookup {
    pub tgid: u32,
    pub comm: String,
    pub name: String,
    /// Query types asked together (A, AAAA, HTTPS).
    pub qtypes: Vec<String>,
    pub started_ns: u64,
    pub ended_ns: Option<u64>,
    pub rcode: Option<String>,
    pub cname_chain: Vec<String>,
    pub addresses: Vec<String>,
    pub min_ttl: Option<u32>,
    pub server: Option<String>,
    /// ERR_NAME_NOT_RESOLVED (SERVFAIL), ERR_DNS_TIMED_OUT ...
    #[serde(flatten, with = "crate::failure::stored")]
    pub error: Option<Failure>,
}

/// A duration in ns as ms at the stored resolution: [`crate::clock::stored_ms`].
pub fn ms(ns: u64) -> f64 {
    crate::clock::stored_ms(ns)
}
