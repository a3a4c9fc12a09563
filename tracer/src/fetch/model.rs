//! The result of one page load: every request (redirect hop or sub-resource) with its phase
//! timings, every connection and every DNS lookup. Serialisable with serde; stored as a
//! baseline and turned into HAR 1.2 by [`super::har`].

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::clock::{Span, ns_to_ms, round_fetch_ms};
use crate::failure::{Failure, Phase};

/// A phase's time span, serialised with its duration: `{"start_ns", "end_ns", "ms"}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timed {
    /// CLOCK_MONOTONIC ns (the clock of `bpf_ktime_get_ns`).
    pub start_ns: u64,
    pub end_ns: u64,
    pub ms: f64,
}

impl From<Span> for Timed {
    fn from(s: Span) -> Timed {
        Timed {
            start_ns: s.start_ns,
            end_ns: s.end_ns,
            ms: round_fetch_ms(s.ms()),
        }
    }
}

impl Timed {
    pub fn span(&self) -> Span {
        Span::new(self.start_ns, self.end_ns)
    }
}

/// The phases of one request. `None`: the phase did not happen for this request (no DNS on
/// a reused connection, no TLS for http://, ...). HAR writes those as -1.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub blocked: Option<Timed>,
    pub dns: Option<Timed>,
    /// TCP connect, the successful attempt plus any failed ones before it (without TLS).
    pub connect: Option<Timed>,
    pub tls: Option<Timed>,
    pub send: Option<Timed>,
    /// Time to first byte after sending: server processing plus a round trip.
    pub wait: Option<Timed>,
    pub receive: Option<Timed>,
}

impl Timings {
    pub fn get(&self, p: Phase) -> Option<&Timed> {
        match p {
            Phase::Blocked => self.blocked.as_ref(),
            Phase::Dns => self.dns.as_ref(),
            Phase::Connect => self.connect.as_ref(),
            Phase::Tls => self.tls.as_ref(),
            Phase::Send => self.send.as_ref(),
            Phase::Wait => self.wait.as_ref(),
            Phase::Receive => self.receive.as_ref(),
            Phase::Redirect => None,
        }
    }
    /// Milliseconds of a phase, `None` when it did not happen.
    pub fn ms(&self, p: Phase) -> Option<f64> {
        self.get(p).map(|t| t.ms)
    }
}

/// What started a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Initiator {
    /// The address bar (the document, and each of its redirect hops).
    Document,
    /// An element of the document: `img`, `script` or `link` (stylesheet).
    Element { tag: String },
}

/// One HTTP header as sent or received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// One request: a redirect hop, the document, or a sub-resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in `PageLoad::entries` (ordered by start).
    pub id: usize,
    pub initiator: Initiator,
    /// The entry whose redirect led here.
    pub redirected_from: Option<usize>,
    /// How many redirects came before this request in its chain (0 for the first).
    pub hop: u32,
    pub method: String,
    /// The URL requested (no fragment).
    pub url: String,
    /// `https://www.shop.test` (scheme, host, non-default port).
    pub origin: String,
    /// From when the request was issued to its last byte (or its failure).
    pub span: Timed,
    pub timings: Timings,
    /// `PageLoad::connections[id]` the request went over (`None` when none was set up).
    pub connection_id: Option<usize>,
    /// The connection had been set up by an earlier request.
    pub connection_reused: bool,
    /// `PageLoad::dns[id]` made for this request's connection (`None` when none was made).
    pub dns_id: Option<usize>,
    pub server_address: Option<SocketAddr>,
    /// `HTTP/1.1` or `HTTP/2`.
    pub http_version: Option<String>,
    pub request_headers: Vec<Header>,
    /// Request head size in bytes (HTTP/1.1; `None` for HTTP/2, whose headers are compressed).
    pub request_headers_size: Option<u64>,
    pub status: Option<u16>,
    pub status_text: Option<String>,
    pub response_headers: Vec<Header>,
    /// Response head size in bytes (HTTP/1.1 only).
    pub response_headers_size: Option<u64>,
    /// Body bytes received.
    pub body_size: u64,
    pub mime_type: Option<String>,
    /// The resolved `Location` of a redirect response.
    pub redirect_url: Option<String>,
    pub failure: Option<Failure>,
}

impl Entry {
    pub fn duration_ms(&self) -> f64 {
        self.span.ms
    }
}

/// One TCP connect attempt (one per address tried).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectAttempt {
    pub address: SocketAddr,
    pub span: Timed,
    /// `None` on success.
    pub failure: Option<Failure>,
}

/// A certificate the server presented (leaf first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    /// RFC 3339 (UTC).
    pub not_before: String,
    pub not_after: String,
    pub serial: String,
    /// DNS names and IP addresses of the subjectAltName extension.
    pub subject_alt_names: Vec<String>,
}

/// The TLS handshake of a connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TlsInfo {
    pub span: Timed,
    /// The server name sent (SNI); `None` for IP addresses, which are not sent.
    pub sni: Option<String>,
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: Option<String>,
    /// `TLS13_AES_256_GCM_SHA384`, ...
    pub cipher_suite: Option<String>,
    /// Protocol chosen by ALPN (`h2`, `http/1.1`), `None` when the server chose none.
    pub alpn: Option<String>,
    /// The session was resumed from an earlier connection of this page load.
    pub resumed: bool,
    /// The server's chain as sent, leaf first (also when verification failed).
    pub certificates: Vec<CertificateInfo>,
    /// `--insecure`: the chain was not verified.
    pub verified: bool,
    pub failure: Option<Failure>,
}

/// One connection (a TCP connection, with TLS for https).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    /// Position in `PageLoad::connections`.
    pub id: usize,
    pub origin: String,
    pub host: String,
    /// DNS lookup that gave the addresses.
    pub dns_id: Option<usize>,
    pub attempts: Vec<ConnectAttempt>,
    /// The address connected to.
    pub remote: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    /// TCP connect, from the first attempt's start to the connected attempt's end.
    pub connect: Option<Timed>,
    pub tls: Option<TlsInfo>,
    /// `HTTP/1.1` or `HTTP/2`, once set up.
    pub http_version: Option<String>,
    /// Requests this connection carried.
    pub requests: u32,
    /// Bytes written to / read from the socket (TLS records included).
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub failure: Option<Failure>,
}

/// One resource record of a DNS answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, ...
    pub rtype: String,
    pub ttl: u32,
    pub data: String,
}

/// One query (A or AAAA) of a lookup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DnsQuery {
    pub qtype: String,
    pub span: Timed,
    /// `NOERROR`, `NXDOMAIN`, `SERVFAIL`; `None` when no answer came (timeout, network error).
    pub rcode: Option<String>,
    pub records: Vec<DnsRecord>,
    /// What went wrong, when no records came back.
    pub error: Option<String>,
}

/// Where the addresses came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsSource {
    /// Queries to the name servers.
    Dns,
    /// `/etc/hosts`.
    HostsFile,
}

/// Resolving one host name (A and AAAA asked in parallel, like glibc's getaddrinfo).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DnsLookup {
    /// Position in `PageLoad::dns`.
    pub id: usize,
    pub host: String,
    pub source: DnsSource,
    /// From the first query out to the last answer in.
    pub span: Timed,
    /// The servers asked (`127.0.0.1:53`).
    pub nameservers: Vec<SocketAddr>,
    pub queries: Vec<DnsQuery>,
    /// `www.shop.test -> edge.cdn.test`: the host and each CNAME target, in order.
    pub cname_chain: Vec<String>,
    /// Addresses, in the order connections try them (IPv4 first, then IPv6).
    pub addresses: Vec<IpAddr>,
    /// Smallest TTL of the address records.
    pub min_ttl: Option<u32>,
    pub failure: Option<Failure>,
}

/// One page load: what `tracer fetch URL` measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageLoad {
    /// What was typed.
    pub input: String,
    /// The URL after address-bar parsing (scheme, IDNA, percent-encoding).
    pub url: String,
    /// The last URL of the document's redirect chain.
    pub final_url: String,
    /// Whether sub-resources were fetched (`--page`).
    pub page: bool,
    /// Wall clock at the start, Unix ms.
    pub started_at_unix_ms: i64,
    /// The whole load on the monotonic clock: from the first DNS query to the last byte.
    pub span: Timed,
    pub total_ms: f64,
    /// When the document's body was complete (ms since start).
    pub document_ms: Option<f64>,
    pub entries: Vec<Entry>,
    pub connections: Vec<Connection>,
    pub dns: Vec<DnsLookup>,
    /// Sub-resources found in the document beyond the limit, not fetched.
    pub subresources_skipped: usize,
    /// The failure that stopped the document (its redirect chain included).
    pub error: Option<Failure>,
    pub tracer_version: String,
}

impl PageLoad {
    /// True when the document or any sub-resource failed (a DNS, connect, TLS or HTTP error;
    /// an HTTP error status is not a failure).
    pub fn failed(&self) -> bool {
        self.error.is_some() || self.entries.iter().any(|e| e.failure.is_some())
    }

    /// The entries of the document's redirect chain, first request first.
    pub fn document_chain(&self) -> Vec<&Entry> {
        self.entries
            .iter()
            .filter(|e| e.initiator == Initiator::Document)
            .collect()
    }

    /// The last entry of the document chain.
    pub fn document(&self) -> Option<&Entry> {
        self.document_chain().into_iter().last()
    }

    /// Milliseconds from the load's start to a monotonic stamp.
    pub fn offset_ms(&self, ns: u64) -> f64 {
        ns_to_ms(ns.saturating_sub(self.span.start_ns))
    }
}
