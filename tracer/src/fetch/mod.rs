//! The reference fetcher: `tracer fetch URL` loads a URL the way a browser does, with every
//! phase measured, so that the daemon's kernel-side view can be checked against it.
//!
//! * the address bar: [`parse_address`] (scheme defaults to http, IDNA, percent-encoding);
//! * DNS with hickory-resolver against resolv.conf's servers (or [`FetchOptions::nameservers`]),
//!   its cache off, A and AAAA in parallel, CNAME chains, TTLs, NXDOMAIN/SERVFAIL/timeouts;
//! * TCP with tokio, one attempt per address in order;
//! * TLS with rustls: version, cipher suite, ALPN, SNI, the certificate chain;
//! * HTTP/1.1 or HTTP/2 (by ALPN) with hyper's client connections; redirects followed, each
//!   hop its own entry; connections shared per origin as a browser shares them;
//! * `page`: the document's `img`, `script` and stylesheet sub-resources in parallel, at most
//!   6 connections per origin.
//!
//! Every phase has its duration and its start and end on CLOCK_MONOTONIC (the clock of
//! `bpf_ktime_get_ns`), so the fetcher's timings can be laid over the traced events.
//!
//! ```no_run
//! # async fn f() -> Result<(), tracer::fetch::FetchError> {
//! let load = tracer::fetch::fetch("shop.test", &tracer::fetch::FetchOptions::default()).await?;
//! println!("{}", tracer::fetch::render::waterfall(&load));
//! let har = tracer::fetch::har::to_har(&load);
//! # Ok(()) }
//! ```

pub mod address;
pub mod cli;
mod conn;
mod dns;
mod engine;
pub mod har;
pub mod model;
pub mod probe_points;
pub mod page;
mod pool;
pub mod render;
pub(crate) mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use address::parse_address;
pub use model::*;

/// How to load.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Also fetch the document's sub-resources (`img`, `script`, `link rel=stylesheet`).
    pub page: bool,
    /// Follow 301/302/303/307/308 (each hop is its own entry).
    pub follow_redirects: bool,
    /// Most redirects followed; one more is `ERR_TOO_MANY_REDIRECTS`.
    pub max_redirects: u32,
    /// Most connections open at once per origin (browsers: 6).
    pub max_connections_per_host: usize,
    /// Name servers to ask instead of those of `/etc/resolv.conf`.
    pub nameservers: Option<Vec<SocketAddr>>,
    /// Per-query DNS timeout (default: resolv.conf's, or 5 s with `nameservers`).
    pub dns_timeout: Option<Duration>,
    /// Bound on each TCP connect attempt and on the TLS handshake.
    pub connect_timeout: Duration,
    /// Bound on waiting for a connection, for the response head, and for the body.
    pub timeout: Duration,
    /// Trust only the CA certificates in this PEM file (like curl's `--cacert`).
    pub cacert: Option<PathBuf>,
    /// Do not verify certificates (the chain is still recorded).
    pub insecure: bool,
    /// Offer only `http/1.1` in ALPN.
    pub http1_only: bool,
    /// Most sub-resources fetched with `page`.
    pub max_subresources: usize,
    pub user_agent: String,
    /// Sent with every request after the fetcher's own (`--header 'Name: value'`). Their
    /// values are redacted like the traced side's ([`crate::redact`]) in everything the load
    /// records: a credential given here is never stored or printed.
    pub extra_headers: Vec<(String, String)>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            page: false,
            follow_redirects: true,
            max_redirects: 20,
            max_connections_per_host: 6,
            nameservers: None,
            dns_timeout: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            cacert: None,
            insecure: false,
            http1_only: false,
            max_subresources: 200,
            user_agent: format!("tracer/{} (reference fetcher)", env!("CARGO_PKG_VERSION")),
            extra_headers: Vec::new(),
        }
    }
}

/// Why a load could not start. A load that started and failed in a phase (DNS, connect, TLS,
/// HTTP) is not an error: it is a [`PageLoad`] whose `error`/entries carry the [`crate::failure::Failure`].
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL {input:?}: {reason}")]
    InvalidUrl { input: String, reason: String },
    /// A bad option (unreadable `--cacert`, ...).
    #[error("{0}")]
    Usage(String),
    /// The machine's set-up (no resolv.conf, ...).
    #[error("{0}")]
    Setup(String),
}

impl FetchError {
    /// 2 for what the user typed, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            FetchError::InvalidUrl { .. } | FetchError::Usage(_) => 2,
            FetchError::Setup(_) => 1,
        }
    }
}

/// Loads `input` (what one would type in the address bar) and measures every phase.
pub async fn fetch(input: &str, opts: &FetchOptions) -> Result<PageLoad, FetchError> {
    engine::load(input, opts).await
}
