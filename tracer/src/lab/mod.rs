//! Test lab: a small, controlled internet inside a private network namespace.
//!
//! [`Lab::start`] creates a network namespace (`tracer-lab-<pid>-<n>`), gives its loopback the
//! lab host addresses (10.77.0.1 .. 10.77.0.9 and fd77::1 .. fd77::9), points `/etc/netns/<ns>/resolv.conf` at the lab's DNS server and
//! runs, inside the namespace, on a dedicated OS thread with its own single-threaded tokio
//! runtime:
//!
//! * an authoritative DNS server (UDP + TCP port 53 on 127.0.0.1 and 10.77.0.1) for the zone
//!   `test.` (see [`hosts`]);
//! * the origins `http://shop.test/` (301 to `https://www.shop.test/`),
//!   `https://www.shop.test/` (an HTML page) and `https://static.shop.test/` (its
//!   sub-resources), speaking HTTP/1.1 and HTTP/2 (ALPN `h2`, `http/1.1`) with a certificate
//!   issued by a lab CA generated at start ([`Lab::ca_pem_path`]);
//! * with [`LabConfig::http3`], the same origins over HTTP/3 on UDP 443 (quinn + h3, ALPN `h3`),
//!   advertised by `Alt-Svc` and the HTTPS record, or a UDP port that drops or refuses, so that
//!   a client's fallback to TCP can be tested (see [`Http3`]).
//!
//! Clients run inside the namespace with [`Lab::exec_command`] (`ip netns exec <ns> ...`), which
//! makes them use the lab DNS server. Nothing in the lab is reachable from outside the namespace
//! and nothing inside it can reach anything but the lab (the namespace has only loopback).
//!
//! Dropping the [`Lab`] stops the servers and deletes the namespace, `/etc/netns/<ns>/` and the
//! lab's temporary directory. [`cleanup_stale`] removes what crashed test processes left behind.
//!
//! Everything needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN); see [`check_privileges`].

mod dns;
mod h3;
mod http;
mod netns;
mod pki;
pub mod support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_h3;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

pub use http::{ECHO_BODY, LAB_SECRET, PAGE_HTML};
pub use netns::cleanup_stale;

/// Names and addresses of the lab's hosts. All addresses exist only on the loopback device of
/// the lab's network namespace.
pub mod hosts {
    use std::net::Ipv4Addr;

    /// The zone the lab DNS server is authoritative for.
    pub const ZONE: &str = "test";
    /// Address of the lab DNS server besides 127.0.0.1 (the name server `ns.test`).
    pub const DNS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    /// `shop.test`: plain HTTP on port 80 (and HTTPS on 443), both redirect (301) to
    /// `https://www.shop.test/`.
    pub const SHOP: &str = "shop.test";
    pub const SHOP_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
    /// `www.shop.test`: CNAME to [`EDGE`]; the page lives on the edge address.
    pub const WWW: &str = "www.shop.test";
    /// `edge.cdn.test`: HTTPS on port 443 serving the page, `/echo` and `/bytes/N`.
    pub const EDGE: &str = "edge.cdn.test";
    pub const EDGE_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
    /// `static.shop.test`: HTTPS on port 443 serving `/app.css`, `/app.js`, `/logo.png`,
    /// `/echo` and `/bytes/N`.
    pub const STATIC: &str = "static.shop.test";
    pub const STATIC_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 4);
    /// `refused.shop.test`: resolves, but nothing listens there (connections are refused).
    pub const REFUSED: &str = "refused.shop.test";
    pub const REFUSED_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 5);
    /// `badcert.shop.test`: HTTPS on port 443 with a certificate for this name that a throwaway
    /// CA signed, not the lab CA (clients that trust the lab CA fail the handshake).
    pub const BADCERT: &str = "badcert.shop.test";
    pub const BADCERT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 6);
    /// `blackhole.shop.test`: resolves to an address routed into the namespace's loopback but
    /// not on it; with forwarding off the kernel drops the SYNs silently (connect times out).
    pub const BLACKHOLE: &str = "blackhole.shop.test";
    pub const BLACKHOLE_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
    /// `silent.shop.test`: the lab DNS server receives queries for it and never answers (a DNS
    /// server that is down, as a client sees it: its lookup times out).
    pub const SILENT: &str = "silent.shop.test";
    /// Addresses 10.77.0.1 ..= 10.77.0.9 are put on the namespace's loopback; .7 .. .9 are spare
    /// (no name, nothing listening).
    pub const FIRST_HOST: u8 = 1;
    pub const LAST_HOST: u8 = 9;

    /// The IPv6 twin of a lab IPv4 address (10.77.0.N -> fd77::N). These are always on the
    /// namespace's loopback; DNS hands them out (AAAA) and servers listen on them only when
    /// [`super::LabConfig::ipv6`] is set.
    pub fn v6_of(v4: Ipv4Addr) -> std::net::Ipv6Addr {
        std::net::Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, u16::from(v4.octets()[3]))
    }
}

/// What the lab should look like. `LabConfig::default()` gives a fast lab without delays.
#[derive(Clone, Debug)]
pub struct LabConfig {
    /// Delay before each DNS answer is sent (per query, UDP and TCP).
    pub dns_delay: Duration,
    /// TTL of every record the lab DNS server answers with (also the SOA minimum used for
    /// negative caching).
    pub dns_ttl: u32,
    /// When set, AAAA queries are answered with the hosts' IPv6 addresses (fd77::N) and the
    /// servers listen on them too. When not set, AAAA queries for existing names answer NOERROR
    /// without records (NODATA). (The fd77::N addresses are on the namespace's loopback either
    /// way, so that glibc's getaddrinfo asks for A and AAAA as on an ordinary machine.)
    pub ipv6: bool,
    /// Server think time: delay between receiving a request and sending the response head.
    pub think_time: Duration,
    /// Throttle for response bodies, in bytes per second (`None`: as fast as possible).
    pub body_bytes_per_sec: Option<u64>,
    /// HTTP/3 on UDP port 443 of the HTTPS origins, and whether it is advertised.
    pub http3: Http3,
}

/// What the lab's HTTPS origins do on UDP port 443, and whether they advertise HTTP/3
/// (`Alt-Svc: h3=":443"; ma=86400` on every HTTPS response over TCP, and `h3` first in the
/// ALPN of `edge.cdn.test`'s HTTPS record).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Http3 {
    /// Not advertised, and nothing listens on UDP 443 (a forced HTTP/3 client gets ICMP port
    /// unreachable). Today's TCP-only lab, the default: browsers in the tests do not switch to
    /// QUIC behind the tracer's back.
    #[default]
    Off,
    /// Served (quinn + h3: the same pages, redirects and faults as over TCP) and advertised.
    On,
    /// Advertised, but every UDP packet to port 443 is dropped without an answer (an nftables
    /// rule in the namespace's input hook): a client's QUIC attempt times out.
    Drop,
    /// Advertised, but nothing listens on UDP 443: the kernel answers each packet with ICMP
    /// port unreachable, and a connected UDP socket gets ECONNREFUSED.
    Refuse,
}

impl Http3 {
    /// Whether the origins say they speak HTTP/3 (Alt-Svc and the HTTPS record).
    pub fn advertised(self) -> bool {
        self != Http3::Off
    }
    /// Whether the origins listen on UDP 443.
    pub fn served(self) -> bool {
        self == Http3::On
    }
    pub fn name(self) -> &'static str {
        match self {
            Http3::Off => "off",
            Http3::On => "on",
            Http3::Drop => "drop",
            Http3::Refuse => "refuse",
        }
    }
}

impl std::str::FromStr for Http3 {
    type Err = String;
    fn from_str(s: &str) -> Result<Http3, String> {
        match s {
            "off" => Ok(Http3::Off),
            "on" => Ok(Http3::On),
            "drop" => Ok(Http3::Drop),
            "refuse" => Ok(Http3::Refuse),
            _ => Err(format!("{s:?} is not one of off, on, drop, refuse")),
        }
    }
}

impl Default for LabConfig {
    fn default() -> Self {
        Self {
            dns_delay: Duration::ZERO,
            dns_ttl: 60,
            ipv6: false,
            think_time: Duration::ZERO,
            body_bytes_per_sec: None,
            http3: Http3::Off,
        }
    }
}

/// The lab is missing a privilege it needs. `Lab::start` returns it (inside `anyhow::Error`,
/// so `err.downcast_ref::<MissingPrivilege>()` tells it apart from real failures).
#[derive(Debug, thiserror::Error)]
#[error(
    "tracer::lab needs root: this process (effective uid {euid}) lacks {missing}; creating network \
     namespaces and entering them needs CAP_SYS_ADMIN, configuring their addresses needs \
     CAP_NET_ADMIN, and writing /etc/netns/<ns>/resolv.conf needs root"
)]
pub struct MissingPrivilege {
    /// Comma separated list of what is missing, e.g. `root, CAP_SYS_ADMIN, CAP_NET_ADMIN`.
    pub missing: String,
    pub euid: u32,
}

/// Checks that this process may build a lab (effective uid 0 with CAP_SYS_ADMIN and
/// CAP_NET_ADMIN in its effective capability set).
pub fn check_privileges() -> std::result::Result<(), MissingPrivilege> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let cap_eff = crate::procfs::effective_caps();
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    let mut missing = Vec::new();
    if euid != 0 {
        missing.push("root");
    }
    if cap_eff & (1 << CAP_SYS_ADMIN) == 0 {
        missing.push("CAP_SYS_ADMIN");
    }
    if cap_eff & (1 << CAP_NET_ADMIN) == 0 {
        missing.push("CAP_NET_ADMIN");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MissingPrivilege {
            missing: missing.join(", "),
            euid,
        })
    }
}

/// Transport a DNS query arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsTransport {
    Udp,
    Tcp,
}

/// One DNS query the lab server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQueryRecord {
    /// Query name, lowercase, without the trailing dot (e.g. `www.shop.test`).
    pub name: String,
    /// Query type as a number (1 = A, 28 = AAAA, 65 = HTTPS, ...).
    pub qtype: u16,
    pub transport: DnsTransport,
    /// Response code sent back (0 = NOERROR, 3 = NXDOMAIN, ...).
    pub rcode: u16,
    /// Local address the query arrived at (127.0.0.1:53 or 10.77.0.1:53).
    pub server: SocketAddr,
    /// The client's address (its source port identifies the client socket).
    pub client: SocketAddr,
    /// How many queries the server had received when it answered this one: shows which
    /// queries were in flight together (an A + AAAA pair answered in parallel was received
    /// before either answer).
    pub received_by_then: u64,
}

/// One HTTP request an origin received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequestRecord {
    /// Local address of the origin (e.g. 10.77.0.3:443).
    pub server: SocketAddr,
    /// Whether the connection was TLS (always for HTTP/3, which is QUIC).
    pub tls: bool,
    /// `Host` header or `:authority`.
    pub host: String,
    pub method: String,
    /// Path and query.
    pub path: String,
    /// `HTTP/1.1`, `HTTP/2` or `HTTP/3` (or `HTTP/1.0`).
    pub version: String,
    pub status: u16,
}

/// Most records the lab keeps per log (older ones are dropped).
const LOG_CAP: usize = 100_000;

/// Counters and logs shared with the server thread.
#[derive(Default)]
pub(crate) struct LabStats {
    dns_queries: AtomicU64,
    dns_log: Mutex<Vec<DnsQueryRecord>>,
    tcp_accepts: AtomicU64,
    tls_handshakes: AtomicU64,
    quic_handshakes: AtomicU64,
    http_log: Mutex<Vec<HttpRequestRecord>>,
}

impl LabStats {
    fn push<T>(log: &Mutex<Vec<T>>, item: T) {
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= LOG_CAP {
            log.remove(0);
        }
        log.push(item);
    }
    pub(crate) fn dns_received(&self) {
        self.dns_queries.fetch_add(1, Ordering::SeqCst);
    }
    pub(crate) fn dns_answered(&self, mut rec: DnsQueryRecord) {
        rec.received_by_then = self.dns_queries.load(Ordering::SeqCst);
        Self::push(&self.dns_log, rec);
    }
    pub(crate) fn tcp_accepted(&self) {
        self.tcp_accepts.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn tls_handshake_done(&self) {
        self.tls_handshakes.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn quic_handshake_done(&self) {
        self.quic_handshakes.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn http_request(&self, rec: HttpRequestRecord) {
        Self::push(&self.http_log, rec);
    }
}

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running lab. Dropping it tears everything down.
pub struct Lab {
    config: LabConfig,
    stats: Arc<LabStats>,
    ca_pem: String,
    ca_pem_path: PathBuf,
    leaf_spki_sha256: String,
    key_log_path: PathBuf,
    // Field order matters for Drop: servers stop first, then the namespace goes, then the dir.
    servers: Option<netns::ServerThread>,
    ns: netns::Namespace,
    dir: TempDir,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("netns", &self.ns.name())
            .field("dir", &self.dir.0)
            .field("config", &self.config)
            .finish()
    }
}

impl Lab {
    /// Builds the lab: namespace, addresses, resolv.conf, CA + certificate, DNS server and
    /// origins. Returns once every server is listening.
    pub async fn start(config: LabConfig) -> Result<Lab> {
        check_privileges()?;
        // Best effort: remove what dead test processes left behind.
        if let Err(e) = cleanup_stale() {
            tracing::warn!("tracer::lab: cleanup of stale labs failed: {e:#}");
        }
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}{}-{}", netns::NAME_PREFIX, std::process::id(), n);

        let dir = TempDir::create(&name)?;
        let ns = netns::Namespace::create(&name)?;
        if config.http3 == Http3::Drop {
            ns.drop_udp_443()?;
        }

        let key_log_path = dir.0.join("server-keylog.txt");
        let pki = pki::LabPki::generate(&key_log_path)?;
        let ca_pem_path = dir.0.join("ca.pem");
        std::fs::write(&ca_pem_path, &pki.ca_pem)
            .with_context(|| format!("writing {}", ca_pem_path.display()))?;

        let stats = Arc::new(LabStats::default());
        let setup = netns::ServerSetup {
            config: config.clone(),
            stats: stats.clone(),
            tls: pki.server_config.clone(),
            badcert_tls: pki.badcert_config.clone(),
            h3_tls: pki.h3_config.clone(),
            badcert_h3_tls: pki.badcert_h3_config.clone(),
        };
        let servers = netns::ServerThread::spawn(&name, setup).await?;
        tracing::debug!("tracer::lab: lab {name} up");
        Ok(Lab {
            config,
            stats,
            ca_pem: pki.ca_pem,
            ca_pem_path,
            leaf_spki_sha256: pki.leaf_spki_sha256,
            key_log_path,
            servers: Some(servers),
            ns,
            dir,
        })
    }

    /// Name of the lab's network namespace (`tracer-lab-<pid>-<n>`).
    pub fn netns_name(&self) -> &str {
        self.ns.name()
    }

    /// `/run/netns/<ns>`: open it and `setns(fd, CLONE_NEWNET)` to enter the namespace.
    pub fn netns_path(&self) -> PathBuf {
        Path::new(netns::NETNS_RUN_DIR).join(self.ns.name())
    }

    /// The configuration the lab was started with.
    pub fn config(&self) -> &LabConfig {
        &self.config
    }

    /// `ip netns exec <ns> <program>`: add the program's arguments and run it. Inside, the
    /// program resolves names through the lab DNS server and only reaches lab hosts.
    pub fn exec_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.arg("netns")
            .arg("exec")
            .arg(self.ns.name())
            .arg(program);
        cmd
    }

    /// Runs `f` on a new OS thread that has entered the lab namespace (sockets it creates
    /// belong to the lab). Do not enter namespaces on tokio worker threads; use this instead
    /// (and build a runtime inside `f` if you need async). The thread returns `Err` when it
    /// could not enter the namespace, else `Ok` with `f`'s value.
    pub fn spawn_in_netns<F, T>(&self, f: F) -> std::thread::JoinHandle<Result<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let path = self.netns_path();
        std::thread::spawn(move || {
            netns::enter_netns(&path)?;
            Ok(f())
        })
    }

    /// Path of the lab CA certificate (PEM). Pass it to clients (`curl --cacert`,
    /// `wget --ca-certificate`).
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// The lab CA certificate (PEM text).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Base64 of the SHA-256 of the SubjectPublicKeyInfo of the certificate the lab's origins
    /// serve (shop.test, www.shop.test, static.shop.test, edge.cdn.test): Chromium's
    /// `--ignore-certificate-errors-spki-list` value for it.
    pub fn leaf_spki_sha256(&self) -> &str {
        &self.leaf_spki_sha256
    }

    /// The lab's temporary directory (holds `ca.pem` and the server key log; removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// File where the servers write TLS secrets in SSLKEYLOGFILE format (one line per secret).
    pub fn server_key_log_path(&self) -> &Path {
        &self.key_log_path
    }

    /// IPv4 address a lab host name resolves to (following CNAMEs), e.g.
    /// `addr_of("www.shop.test") == Some(10.77.0.3)`. `None` for names that do not resolve.
    pub fn addr_of(&self, host: &str) -> Option<IpAddr> {
        dns::resolve_v4(host).map(IpAddr::V4)
    }

    /// IPv6 address of a lab host (only with [`LabConfig::ipv6`]).
    pub fn addr6_of(&self, host: &str) -> Option<Ipv6Addr> {
        if !self.config.ipv6 {
            return None;
        }
        dns::resolve_v4(host).map(hosts::v6_of)
    }

    /// Address of the DNS server named in the namespace's resolv.conf.
    pub fn dns_server(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53)
    }

    /// Number of DNS queries received so far (UDP and TCP, counted on arrival).
    pub fn dns_query_count(&self) -> u64 {
        self.stats.dns_queries.load(Ordering::Relaxed)
    }

    /// DNS queries answered so far, oldest first.
    pub fn dns_queries(&self) -> Vec<DnsQueryRecord> {
        self.stats
            .dns_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// TCP connections accepted by the origins so far.
    pub fn tcp_accept_count(&self) -> u64 {
        self.stats.tcp_accepts.load(Ordering::Relaxed)
    }

    /// TLS handshakes completed by the origins so far.
    pub fn tls_handshake_count(&self) -> u64 {
        self.stats.tls_handshakes.load(Ordering::Relaxed)
    }

    /// QUIC handshakes (HTTP/3 connections) completed by the origins so far.
    pub fn quic_handshake_count(&self) -> u64 {
        self.stats.quic_handshakes.load(Ordering::Relaxed)
    }

    /// HTTP requests served so far, oldest first.
    pub fn http_requests(&self) -> Vec<HttpRequestRecord> {
        self.stats
            .http_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Clears the DNS and HTTP logs and the counters.
    pub fn reset_stats(&self) {
        self.stats.dns_queries.store(0, Ordering::Relaxed);
        self.stats.tcp_accepts.store(0, Ordering::Relaxed);
        self.stats.tls_handshakes.store(0, Ordering::Relaxed);
        self.stats.quic_handshakes.store(0, Ordering::Relaxed);
        self.stats
            .dns_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.stats
            .http_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(servers) = self.servers.take() {
            servers.stop();
        }
        // `ns` and `dir` clean up in their own Drop impls (declared after `servers`).
    }
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn create(name: &str) -> Result<TempDir> {
        let path = std::env::temp_dir().join(name);
        if path.exists() {
            // Left by an earlier process with the same pid.
            let _ = std::fs::remove_dir_all(&path);
        }
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
