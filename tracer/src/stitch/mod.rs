//! Stitching: from a stream of kernel events to page loads.
//!
//! The algorithm (also in the README) is deterministic: it only looks at the events and
//! their kernel timestamps, in the order they arrive, so a recorded stream always gives the
//! same page loads.
//!
//! 1. **Processes.** fork/exec events build a process table (the daemon seeds it from /proc
//!    for processes that started before it). A *client* is the root of a process tree: walk
//!    up from the process that did the work while the parent runs the same program (same
//!    path or same file name: a launcher and what it runs; an exec of `/proc/self/exe`, how
//!    Chromium starts its helpers, keeps the program). The client is named by that root
//!    (`chromium`, `firefox-esr`), not by a thread (`Chrome_ChildIOT`, `Socket Thread`).
//! 2. **Connections** start at a TCP `connect` (fd, destination, kernel socket address);
//!    state changes join by socket address (those that arrive before the connect record
//!    are held back briefly), giving SYN_SENT -> ESTABLISHED and the close. A failed
//!    connect takes its reason from the syscall return or the socket's error report. Once a
//!    socket is CLOSE its fd number no longer leads to it (the number is reused for files).
//! 3. **DNS.** Queries sent by a process are grouped into one lookup per name: types asked
//!    together (A + AAAA + HTTPS) or one after the other (an HTTPS query, then getaddrinfo's
//!    A + AAAA, within 100 ms of the last answer); answers join by (process, message id). A
//!    connection's lookup is the latest lookup by the same client whose answer held the
//!    connected address before the connect (the A answer may come before the HTTPS one);
//!    when the first request names its host, the lookup of that name is preferred (not the
//!    client's own lookup of the CNAME target), and lookups of its CNAME targets made before
//!    the connect extend the dns phase.
//! 4. **TLS.** Handshake entry/return and plaintext calls join their connection through the
//!    socket fd (from the library call's own syscalls or SSL_set_fd), per process. NSPR's
//!    PR_Write/PR_Read are generic I/O: on a plain socket (whose bytes the socket probes
//!    carry) they are not TLS, and through another PRFileDesc than the connection's they are
//!    file I/O on a reused fd number; both are ignored. Without library plaintext, TLS
//!    records in the socket's own traffic (when captured) give the handshake's timing and
//!    SNI and one opaque exchange per connection (see [`wire`]).
//! 5. **HTTP.** Each connection's plaintext (TLS, or the socket itself on port 80) is fed in
//!    order to an HTTP/1.1 / HTTP/2 decoder; each finished exchange becomes a request with
//!    HAR timings: dns (lookup), connect (TCP + TLS), ssl, send, wait, receive. Only the
//!    first request on a connection pays dns/connect/ssl. A receive that may be a peek
//!    (recv(2), NSPR's PR_Recv) is held back until the next receive shows whether it
//!    re-delivers the same bytes.
//! 6. **Page loads.** Any network activity of a client (a DNS query, a connect, plaintext)
//!    opens a page load when none is open; everything the client does meanwhile belongs to
//!    it. It closes when the client has been quiet for `quiet` (default 500 ms): no
//!    activity, no unanswered lookup, no connect in progress and no request waiting for its
//!    response (bounded by `response_timeout`). A browser navigation (`sec-fetch-mode:
//!    navigate`; on plain HTTP, where browsers send no fetch metadata,
//!    `upgrade-insecure-requests: 1`) that is not the target of a redirect in the open page
//!    load starts a new one: what the client did before the navigation's lookup/connect
//!    started is closed as its own page load, what the navigation started moves with it.
//!    Redirects (3xx with Location, then a request for that URL) are hops of the same page
//!    load; the redirect chain starts at the navigation, and the page load's status is the
//!    last hop's. A browser's background work is not part of a navigation's page load: the
//!    lookups and connects of another of its processes than those that made the page's
//!    requests, and connects that failed before a SYN to an address no lookup gave
//!    (Chromium's IPv6 probe) are reported as a page load of their own. Page loads with
//!    neither a request nor a failure (a bare lookup) are not reported.
pub mod model;
#[cfg(test)]
pub(crate) mod sample;
#[cfg(test)]
mod tests;
pub mod wire;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use model::{ClientInfo, Connection, DnsLookup, PageLoad, Request, Timings, TlsSession, ms};
use tracer_common::{TlsFunc, TlsLib};

use crate::stream::events::{Direction, Event, EventBody, HandshakePhase, TcpState};
use tracer_common::DnsSyscall;
use crate::decode::http::{HttpConnection, HttpExchange};

/// A query for a name and type still unanswered, at most this long after the first, is a
/// retry of it.
const DNS_RETRY_WINDOW_NS: u64 = 30_000_000_000;

/// Lookups of one name by one process that are still matched against (see lookup_index).
const LOOKUPS_PER_NAME: usize = 4;

/// A query for another type of a name answered at most this long ago continues that lookup.
const SEQUENTIAL_LOOKUP_GAP_NS: u64 = 100_000_000;

#[derive(Debug, Clone)]
pub struct StitchConfig {
    /// A page load ends after the client has been network-idle this long.
    pub quiet_ns: u64,
    /// A lookup with no answer after this long is a failed one.
    pub dns_timeout_ns: u64,
    /// A connect with no outcome after this long no longer holds a page load open.
    pub connect_timeout_ns: u64,
    /// A request still waiting for its response holds its page load open while its
    /// connection has seen activity within this long (a slow server's think time).
    pub response_timeout_ns: u64,
    /// Bounds on in-flight state: oldest evicted first.
    pub max_connections: usize,
    pub max_lookups: usize,
    pub max_processes: usize,
    /// Connections (and lookups) idle for this long are forgotten.
    pub max_idle_ns: u64,
    /// Body bytes kept per HTTP message (`--capture-bodies`); 0, the default, keeps none.
    pub body_limit: usize,
}

impl Default for StitchConfig {
    fn default() -> Self {
        Self {
            quiet_ns: 500_000_000,
            dns_timeout_ns: 5_000_000_000,
            connect_timeout_ns: 3_000_000_000,
            response_timeout_ns: 30_000_000_000,
            max_connections: 16_384,
            max_lookups: 16_384,
            max_processes: 65_536,
            max_idle_ns: 600_000_000_000,
            body_limit: 0,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct ProcInfo {
    ppid: Option<u32>,
    comm: String,
    exe: Option<String>,
}

struct ConnState {
    id: u64,
    tgid: u32,
    pid: u32,
    comm: String,
    fd: i32,
    skaddr: u64,
    src: Option<SocketAddr>,
    dst: Option<SocketAddr>,
    connect_start_ns: u64,
    syn_sent_ns: Option<u64>,
    established_ns: Option<u64>,
    closed_ns: Option<u64>,
    error: Option<String>,
    tls_lib: Option<TlsLib>,
    hs_start_ns: Option<u64>,
    hs_end_ns: Option<u64>,
    hs_failed: bool,
    /// Who closed an established connection first: Some(true) the client (ESTABLISHED ->
    /// FIN_WAIT1), Some(false) the server (ESTABLISHED -> CLOSE_WAIT).
    client_closed_first: Option<bool>,
    /// The page load closed while this open connection still owed a response, after
    /// `response_timeout` of silence: its unfinished exchanges were flushed then.
    response_timed_out: bool,
    first_data_ns: Option<u64>,
    dns: Option<u64>,
    http: HttpConnection,
    /// A receive that may have been a peek, not yet fed (see `feed_with`).
    held: Option<HeldRecv>,
    /// Plaintext seen at the socket itself (port 80): library calls on it are not TLS.
    plain_data: bool,
    /// The library object (SSL*, PRFileDesc*) the connection's plaintext came through.
    data_obj: Option<u64>,
    /// TLS records seen in the socket's own traffic (kernel side), when the socket probes
    /// capture it: timing and SNI without the library's help.
    wire: Option<wire::WireTls>,
    exchanges: u32,
    /// Whether a request has been given the connection's set-up phases.
    setup_attributed: bool,
    last_ns: u64,
}

impl LookupState {
    /// When the lookup had given its address(es) as far as a connect at `before` is
    /// concerned: the last answer received by then, once an answer with an address came.
    fn known_by(&self, before: u64) -> Option<u64> {
        if self.address_ns.is_none_or(|a| a > before) {
            return None;
        }
        self.answered_ns.iter().copied().filter(|t| *t <= before).max()
    }
}

struct HeldRecv {
    start_ns: u64,
    ts_ns: u64,
    len: u32,
    data: Vec<u8>,
    across_sends: bool,
}

/// Whether a receive may have been a peek (MSG_PEEK / PR_MSG_PEEK): see `feed_with`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peek {
    No,
    UntilNext,
    AcrossSends,
}

struct LookupState {
    id: u64,
    tgid: u32,
    comm: String,
    name: String,
    qtypes: Vec<String>,
    /// Queries sent and not answered: (id, type).
    pending: Vec<(u16, String)>,
    started_ns: u64,
    /// The last query sent (a retry waits for its answer anew).
    asked_ns: u64,
    /// Every DNS id asked under this lookup (at most 16), to forget them with it.
    asked_ids: Vec<u16>,
    ended_ns: Option<u64>,
    /// When each answer arrived (a client may connect once the A answer is in, before the
    /// HTTPS answer: Firefox).
    answered_ns: Vec<u64>,
    /// When the first answer with an address arrived.
    address_ns: Option<u64>,
    rcode: Option<String>,
    cname_chain: Vec<String>,
    addresses: Vec<IpAddr>,
    min_ttl: Option<u32>,
    server: Option<SocketAddr>,
    error: Option<String>,
}

/// A page load being collected for one client.
struct OpenPage {
    started_ns: u64,
    last_activity_ns: u64,
    requests: Vec<Request>,
    /// Global connection / lookup ids used, in first-use order.
    conns: Vec<u64>,
    lookups: Vec<u64>,
    /// Failures without a request (failed lookup, refused connect): (time, connection, lookup).
    failures: Vec<(u64, Option<u64>, Option<u64>)>,
    /// URL of the browser navigation that started this page load (its redirect chain starts there).
    navigation: Option<String>,
}

/// (destination, source) of a TCP connection, each unknown until seen.
type AddrPair = (Option<SocketAddr>, Option<SocketAddr>);

pub struct Stitcher {
    cfg: StitchConfig,
    now_ns: u64,
    procs: HashMap<u32, ProcInfo>,
    proc_order: VecDeque<u32>,
    conns: HashMap<u64, ConnState>,
    conn_order: VecDeque<u64>,
    next_id: u64,
    by_fd: HashMap<(u32, i32), u64>,
    by_sk: HashMap<u64, u64>,
    /// Connections by (destination, source as known so far), for the error reports, which
    /// name a socket only by its addresses: a lookup costs the same with 16,384 connections
    /// kept as with ten (a scan of all of them was 82% of the daemon in a connect storm).
    by_tuple: HashMap<AddrPair, Vec<u64>>,
    /// State changes seen before their connect record (same call, other CPU or order).
    early_states: HashMap<u64, Vec<(TcpState, TcpState, u64, Option<SocketAddr>)>>,
    /// TCP error reports that matched no connection yet, by destination (time, errno name):
    /// a refused non-blocking connect's RST is reported before its connect record arrives.
    early_errors: HashMap<SocketAddr, (u64, String)>,
    tls_fd: HashMap<(u32, u64), i32>,
    /// Handshake entries seen before the TLS object's fd was known (it is learned inside
    /// the first call), by (tgid, object).
    tls_pending_start: HashMap<(u32, u64), u64>,
    lookups: HashMap<u64, LookupState>,
    lookup_order: VecDeque<u64>,
    /// The newest lookups by process and name (at most LOOKUPS_PER_NAME each, oldest
    /// first): the only ones a new query, a connect or a request is matched against, so
    /// that matching costs the same with 16,384 lookups kept as with ten. Older ones stay
    /// in their page loads.
    lookup_index: HashMap<u32, HashMap<String, VecDeque<u64>>>,
    /// (tgid, DNS id) -> lookup
    dns_ids: HashMap<(u32, u16), u64>,
    pages: BTreeMap<u32, OpenPage>,
    /// Page loads closed while handling an event (a new navigation), returned with the next batch.
    finished: Vec<PageLoad>,
    /// Processes whose TLS library calls are seen (plaintext or handshake): for them the
    /// wire records are only a complement, never a stand-in for requests.
    library_tgids: std::collections::HashSet<u32>,
    /// Counters for the health view.
    pub stats: StitchStats,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct StitchStats {
    pub page_loads: u64,
    pub requests: u64,
    /// Plaintext for sockets the stitcher never saw connect (server side, or opened before
    /// the daemon started).
    pub unattributed_data: u64,
    pub evicted_connections: u64,
    pub evicted_lookups: u64,
}

impl Stitcher {
    pub fn new(cfg: StitchConfig) -> Self {
        Self {
            cfg,
            now_ns: 0,
            procs: HashMap::new(),
            proc_order: VecDeque::new(),
            conns: HashMap::new(),
            conn_order: VecDeque::new(),
            next_id: 1,
            by_fd: HashMap::new(),
            by_sk: HashMap::new(),
            by_tuple: HashMap::new(),
            early_states: HashMap::new(),
            early_errors: HashMap::new(),
            tls_fd: HashMap::new(),
            tls_pending_start: HashMap::new(),
            lookups: HashMap::new(),
            lookup_order: VecDeque::new(),
            lookup_index: HashMap::new(),
            dns_ids: HashMap::new(),
            pages: BTreeMap::new(),
            finished: Vec::new(),
            library_tgids: Default::default(),
            stats: StitchStats::default(),
        }
    }

    /// Seed the process table from /proc (processes that started before the daemon).
    pub fn learn_process(&mut self, tgid: u32, ppid: Option<u32>, comm: String, exe: Option<String>) {
        self.insert_proc(tgid, ProcInfo { ppid, comm, exe });
    }

    fn insert_proc(&mut self, tgid: u32, info: ProcInfo) {
        if self.procs.insert(tgid, info).is_none() {
            self.proc_order.push_back(tgid);
            while self.proc_order.len() > self.cfg.max_processes {
                if let Some(old) = self.proc_order.pop_front() {
                    self.procs.remove(&old);
                }
            }
        }
    }

    /// Feed one event. Returns the page loads that this event's time closed.
    pub fn on_event(&mut self, ev: &Event) -> Vec<PageLoad> {
        self.now_ns = self.now_ns.max(ev.ts_ns);
        self.handle(ev);
        let done = self.close_idle(self.now_ns);
        // After closing: a page load that just ended still had its connections.
        self.evict();
        done
    }

    /// Advance time without an event (live timer). Returns page loads that closed.
    pub fn tick(&mut self, now_ns: u64) -> Vec<PageLoad> {
        self.now_ns = self.now_ns.max(now_ns);
        let done = self.close_idle(self.now_ns);
        // Connections that never close are forgotten by age even when nothing else happens.
        self.evict();
        done
    }

    /// End of stream: close everything still open.
    pub fn finish(&mut self) -> Vec<PageLoad> {
        // In connection order, so that a replay gives the same page loads every time.
        let mut ids: Vec<u64> = self.conns.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.drain_exchanges(id, true);
        }
        let clients: Vec<u32> = self.pages.keys().copied().collect();
        let mut out: Vec<PageLoad> = clients.into_iter().filter_map(|c| self.close_page(c)).collect();
        // Page loads closed on the way (a navigation that split the page) come first.
        let mut done = std::mem::take(&mut self.finished);
        done.append(&mut out);
        done
    }

    fn handle(&mut self, ev: &Event) {
        match &ev.body {
            EventBody::Fork { child_pid } => {
                let parent = self.procs.get(&ev.tgid).cloned().unwrap_or(ProcInfo {
                    ppid: None,
                    comm: ev.comm.clone(),
                    exe: None,
                });
                self.insert_proc(*child_pid, ProcInfo { ppid: Some(ev.tgid), comm: ev.comm.clone(), exe: parent.exe });
            }
            EventBody::Exec { filename } => {
                let prev = self.procs.get(&ev.tgid);
                let ppid = prev.and_then(|p| p.ppid);
                // A process that re-executes itself (Chromium starts its helpers with
                // `/proc/self/exe`) keeps the program it had.
                let exe = if filename.starts_with("/proc/self/") || filename.starts_with("/proc/thread-self/") {
                    prev.and_then(|p| p.exe.clone()).or_else(|| Some(filename.clone()))
                } else {
                    Some(filename.clone())
                };
                self.insert_proc(ev.tgid, ProcInfo { ppid, comm: ev.comm.clone(), exe });
            }
            EventBody::Exit => {}
            EventBody::Connect { fd, ret, error, dst, skaddr, tcp, duration_ns } => {
                if !*tcp && *ret != 0 && *ret != -115 && dst.is_some_and(|d| d.port() != 53) {
                    // A TCP connect that failed before SYN (e.g. ENETUNREACH) still counts.
                    self.new_connection(ev, *fd, *dst, 0, *duration_ns, error.map(str::to_string));
                } else if *tcp {
                    let err = if *ret < 0 && *ret != -115 { error.map(str::to_string) } else { None };
                    self.new_connection(ev, *fd, *dst, *skaddr, *duration_ns, err);
                }
            }
            EventBody::TcpState { skaddr, old, new, src, .. } => {
                // Socket addresses are reused: a fresh CLOSE -> SYN_SENT is a new socket,
                // whatever connection had this address before.
                if *old == TcpState::Close && *new == TcpState::SynSent {
                    if let Some(prev) = self.by_sk.get(skaddr).copied() {
                        if self.conns.get(&prev).is_none_or(|c| c.syn_sent_ns.is_some()) {
                            self.by_sk.remove(skaddr);
                        }
                    }
                }
                match self.by_sk.get(skaddr).copied() {
                    Some(id) => self.apply_state(id, *old, *new, ev.ts_ns, *src),
                    None => {
                        if *old == TcpState::Close && *new == TcpState::SynSent
                            || *old == TcpState::SynSent
                        {
                            let v = self.early_states.entry(*skaddr).or_default();
                            if v.len() < 8 {
                                v.push((*old, *new, ev.ts_ns, *src));
                            }
                            if self.early_states.len() > 4096 {
                                // Bounded: states whose connect never came are dropped.
                                let k = *self.early_states.keys().next().expect("non-empty");
                                self.early_states.remove(&k);
                            }
                        }
                    }
                }
            }
            // A report without an error (the kernel reports again as the error is taken).
            EventBody::SockError { errno: 0, .. } => {}
            EventBody::SockError { error, dst, src, protocol, .. } => {
                if *protocol == 6 {
                    let conn = self.conn_by_tuple(*src, *dst).filter(|id| {
                        // A connection closed before this report's socket was connected is
                        // another one: this report's connect record is still to come.
                        self.conns.get(id).is_some_and(|c| c.closed_ns.is_none() || c.error.as_deref() == Some(CLIENT_GAVE_UP_IN_SYN_SENT))
                    });
                    if let Some(id) = conn {
                        if let Some(c) = self.conns.get_mut(&id) {
                            // The kernel's reason wins over the guess made at the close.
                            if c.error.is_none() || c.error.as_deref() == Some(CLIENT_GAVE_UP_IN_SYN_SENT) {
                                c.error = Some(error.to_string());
                            }
                        }
                    } else if let Some(dst) = dst {
                        if self.early_errors.len() >= 4096 {
                            // Bounded: reports whose connect never came are dropped.
                            let k = *self.early_errors.keys().next().expect("non-empty");
                            self.early_errors.remove(&k);
                        }
                        self.early_errors.insert(*dst, (ev.ts_ns, error.to_string()));
                    }
                } else if dst.is_some_and(|d| d.port() == 53) {
                    // ICMP error from a DNS server: fail the newest unanswered lookup to it.
                    if let Some(l) = self
                        .lookups
                        .values_mut()
                        .filter(|l| l.ended_ns.is_none() && l.server == *dst)
                        .max_by_key(|l| l.started_ns)
                    {
                        let server = dst.map(|d| d.to_string()).unwrap_or_default();
                        l.error = Some(format!("ERR_NAME_NOT_RESOLVED (DNS server {server} unreachable: {error})"));
                        l.ended_ns = Some(ev.ts_ns);
                        let (tgid, id) = (l.tgid, l.id);
                        self.record_failure(tgid, ev.ts_ns, None, Some(id));
                    }
                }
            }
            EventBody::Dns { direction, message: Ok(m), peer, .. } => match direction {
                Direction::Send => self.dns_query(ev, m, *peer),
                Direction::Recv => self.dns_answer(ev, m),
            },
            EventBody::Dns { .. } => {}
            EventBody::TlsFd { tls_obj, fd, .. } => {
                self.tls_fd.insert((ev.tgid, *tls_obj), *fd);
            }
            EventBody::TlsHandshake { lib, tls_obj, fd, phase, ret, .. } => {
                if self.library_tgids.len() < self.cfg.max_processes {
                    self.library_tgids.insert(ev.tgid);
                }
                let fd = if *fd >= 0 { Some(*fd) } else { self.tls_fd.get(&(ev.tgid, *tls_obj)).copied() };
                if fd.is_none() && *phase == HandshakePhase::Enter {
                    if self.tls_pending_start.len() < 65_536 {
                        self.tls_pending_start.entry((ev.tgid, *tls_obj)).or_insert(ev.ts_ns);
                    }
                }
                if let Some(fd) = fd {
                    self.tls_fd.insert((ev.tgid, *tls_obj), fd);
                    let pending = self.tls_pending_start.remove(&(ev.tgid, *tls_obj));
                    if let Some(id) = self.by_fd.get(&(ev.tgid, fd)).copied() {
                        self.activity(ev.tgid, ev.ts_ns);
                        let c = self.conns.get_mut(&id).expect("indexed connection");
                        c.tls_lib = *lib;
                        c.last_ns = ev.ts_ns;
                        if let Some(start) = pending {
                            c.hs_start_ns.get_or_insert(start);
                        }
                        match phase {
                            HandshakePhase::Enter => {
                                c.hs_start_ns.get_or_insert(ev.ts_ns);
                            }
                            HandshakePhase::Return => {
                                let done = match lib {
                                    Some(TlsLib::OpenSsl) | Some(TlsLib::BoringSsl) | Some(TlsLib::Rustls) => *ret == 1,
                                    _ => *ret == 0,
                                };
                                let would_block = tracer_common::handshake_would_block(lib.map_or(0, |l| l as u8), *ret);
                                if done {
                                    c.hs_end_ns.get_or_insert(ev.ts_ns);
                                } else if !would_block && c.hs_end_ns.is_none() {
                                    c.hs_failed = true;
                                }
                            }
                        }
                    }
                }
            }
            EventBody::TlsData { lib, func, tls_obj, fd, direction, len, duration_ns, data, .. } => {
                if *lib != Some(TlsLib::Nspr) && self.library_tgids.len() < self.cfg.max_processes {
                    // (NSPR's PR_Read/PR_Write are generic I/O: not proof of TLS visibility.)
                    self.library_tgids.insert(ev.tgid);
                }
                let fd = if *fd >= 0 { Some(*fd) } else { self.tls_fd.get(&(ev.tgid, *tls_obj)).copied() };
                let Some(id) = fd.and_then(|fd| self.by_fd.get(&(ev.tgid, fd)).copied()) else {
                    self.stats.unattributed_data += 1;
                    return;
                };
                let c = self.conns.get_mut(&id).expect("indexed connection");
                if *lib == Some(TlsLib::Nspr) {
                    // NSPR's PR_Write/PR_Read are its generic I/O: on a plain socket (whose
                    // bytes the socket probes already carry) they are not TLS, and on a file
                    // that reuses a closed socket's fd number they are no network traffic at
                    // all (another PRFileDesc than the one the connection's data came through).
                    if c.plain_data {
                        // The socket read inside this PR_Read was a real one, not a peek.
                        if *func == Some(TlsFunc::PR_Read) && *direction == Direction::Recv {
                            self.release_held(id);
                        }
                        return;
                    }
                    if c.data_obj.is_some_and(|o| o != *tls_obj) {
                        self.stats.unattributed_data += 1;
                        return;
                    }
                }
                c.data_obj.get_or_insert(*tls_obj);
                // NSPR's calls say nothing of TLS by themselves: NSS's handshake (which sets
                // the library) or the HTTPS port does. Plain HTTP on another port than 80 is
                // seen only through them.
                let nspr_plain = *lib == Some(TlsLib::Nspr) && c.dst.is_none_or(|d| d.port() != 443);
                if c.tls_lib.is_none() && !nspr_plain {
                    c.tls_lib = *lib;
                }
                if let Some(fd) = fd {
                    self.tls_fd.insert((ev.tgid, *tls_obj), fd);
                }
                // NSPR's PR_Recv is how Firefox peeks (PR_MSG_PEEK) at a socket's next byte.
                let peek = if *func == Some(TlsFunc::PR_Recv) { Peek::AcrossSends } else { Peek::No };
                self.feed_with(id, ev, *direction, *duration_ns, *len, data, peek);
            }
            EventBody::SocketData { fd, direction, len, duration_ns, data, syscall, .. } => {
                let Some(id) = self.by_fd.get(&(ev.tgid, *fd)).copied() else {
                    self.stats.unattributed_data += 1;
                    return;
                };
                let c = self.conns.get_mut(&id).expect("indexed connection");
                // TLS on the wire (the socket probes capture a TLS port's traffic): records,
                // not HTTP. A connection's first bytes decide.
                if c.wire.is_none() && !c.plain_data && *direction == Direction::Send && wire::starts_tls(data) {
                    c.wire = Some(wire::WireTls::default());
                }
                if let Some(w) = c.wire.as_mut() {
                    let start = ev.ts_ns.saturating_sub(*duration_ns);
                    w.feed(*direction, start, ev.ts_ns, *len, data);
                    c.last_ns = ev.ts_ns;
                    self.activity(ev.tgid, ev.ts_ns);
                    return;
                }
                c.plain_data = true;
                // recv(2) may be a MSG_PEEK (wget peeks at a response head, then reads it).
                let peek = if matches!(syscall, Some(DnsSyscall::Recvfrom) | Some(DnsSyscall::Recvmsg)) {
                    Peek::UntilNext
                } else {
                    Peek::No
                };
                self.feed_with(id, ev, *direction, *duration_ns, *len, data, peek);
            }
        }
    }

    /// Feed one call's bytes to the connection's HTTP decoder. A receive that may have been a
    /// peek is held back: when the next receive on the connection re-delivers the same bytes,
    /// the held one was a peek and is dropped; otherwise it is fed before that receive.
    /// `Peek::UntilNext` (recv(2), where a real receive is the common case) also releases it at
    /// the next send; `Peek::AcrossSends` (NSPR's PR_Recv, a browser's liveness peek) does not.
    #[allow(clippy::too_many_arguments)]
    fn feed_with(&mut self, id: u64, ev: &Event, dir: Direction, duration_ns: u64, len: u32, data: &[u8], peek: Peek) {
        self.activity(ev.tgid, ev.ts_ns);
        let c = self.conns.get_mut(&id).expect("indexed connection");
        let start = ev.ts_ns.saturating_sub(duration_ns);
        c.first_data_ns.get_or_insert(start);
        c.last_ns = ev.ts_ns;
        let keep_held = dir == Direction::Send && c.held.as_ref().is_some_and(|h| h.across_sends);
        if !keep_held {
            if let Some(h) = c.held.take() {
                let n = h.data.len().min(data.len());
                let peeked = dir == Direction::Recv && n > 0 && h.data[..n] == data[..n];
                if !peeked {
                    c.http.feed(Direction::Recv, h.start_ns, h.ts_ns, h.len, &h.data);
                }
            }
        }
        if peek != Peek::No && dir == Direction::Recv {
            c.held = Some(HeldRecv {
                start_ns: start,
                ts_ns: ev.ts_ns,
                len,
                data: data.to_vec(),
                across_sends: peek == Peek::AcrossSends,
            });
        } else {
            c.http.feed(dir, start, ev.ts_ns, len, data);
        }
        self.drain_exchanges(id, false);
    }

    /// Feed a held-back receive: nothing re-delivered it, so it was a real one.
    fn release_held(&mut self, id: u64) {
        if let Some(c) = self.conns.get_mut(&id) {
            if let Some(h) = c.held.take() {
                c.http.feed(Direction::Recv, h.start_ns, h.ts_ns, h.len, &h.data);
                self.drain_exchanges(id, false);
            }
        }
    }

    fn new_connection(&mut self, ev: &Event, fd: i32, dst: Option<SocketAddr>, skaddr: u64, duration_ns: u64, error: Option<String>) {
        // The same fd reused: the old connection is over.
        if let Some(old) = self.by_fd.remove(&(ev.tgid, fd)) {
            self.drain_exchanges(old, true);
        }
        let id = self.next_id;
        self.next_id += 1;
        let start = ev.ts_ns.saturating_sub(duration_ns);
        let dns = dst.and_then(|d| self.lookup_for(ev.tgid, d.ip(), start));
        let mut c = ConnState {
            id,
            tgid: ev.tgid,
            pid: ev.pid,
            comm: ev.comm.clone(),
            fd,
            skaddr,
            src: None,
            dst,
            connect_start_ns: start,
            syn_sent_ns: None,
            established_ns: None,
            closed_ns: None,
            error,
            tls_lib: None,
            hs_start_ns: None,
            hs_end_ns: None,
            hs_failed: false,
            client_closed_first: None,
            response_timed_out: false,
            first_data_ns: None,
            dns,
            http: HttpConnection::with_body_limit(self.cfg.body_limit),
            held: None,
            plain_data: false,
            data_obj: None,
            wire: None,
            exchanges: 0,
            setup_attributed: false,
            last_ns: ev.ts_ns,
        };
        if c.error.is_some() {
            c.closed_ns = Some(ev.ts_ns);
        }
        self.conns.insert(id, c);
        self.conn_order.push_back(id);
        self.by_tuple.entry((dst, None)).or_default().push(id);
        self.by_fd.insert((ev.tgid, fd), id);
        if skaddr != 0 {
            self.by_sk.insert(skaddr, id);
            for (old, new, ts, src) in self.early_states.remove(&skaddr).unwrap_or_default() {
                self.apply_state(id, old, new, ts, src);
            }
            // The kernel's reason for a connect that failed before its record arrived.
            if let Some(c) = self.conns.get_mut(&id) {
                if let Some((ts, err)) = dst.and_then(|d| self.early_errors.get(&d)).cloned() {
                    if c.error.as_deref() == Some(CLIENT_GAVE_UP_IN_SYN_SENT) && ts >= c.syn_sent_ns.unwrap_or(c.connect_start_ns) {
                        c.error = Some(err);
                        if let Some(d) = dst {
                            self.early_errors.remove(&d);
                        }
                    }
                }
            }
        }
        self.activity(ev.tgid, start);
        self.attach_new_connection(ev.tgid, id, dns);
        if self.conns[&id].error.is_some() {
            self.record_failure(ev.tgid, ev.ts_ns, Some(id), None);
        }
        self.evict();
    }

    fn apply_state(&mut self, id: u64, old: TcpState, new: TcpState, ts: u64, src: Option<SocketAddr>) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        c.last_ns = c.last_ns.max(ts);
        match (old, new) {
            (TcpState::Close, TcpState::SynSent) => c.syn_sent_ns = Some(ts),
            (TcpState::SynSent, TcpState::Established) => {
                c.established_ns = Some(ts);
                let (dst, old_src) = (c.dst, c.src);
                c.src = src;
                if old_src != src {
                    self.unindex_tuple(id, dst, old_src);
                    self.by_tuple.entry((dst, src)).or_default().push(id);
                }
            }
            (TcpState::SynSent, TcpState::Close) => {
                c.closed_ns = Some(ts);
                // A RST (ECONNREFUSED) or the SYN retries running out (ETIMEDOUT) are reported
                // (inet_sk_error_report) before the socket closes. Without a report, the
                // client closed its socket while the SYN was unanswered: it gave up waiting.
                if c.error.is_none() {
                    c.error = Some(CLIENT_GAVE_UP_IN_SYN_SENT.into());
                }
                let (tgid, failed) = (c.tgid, true);
                if failed {
                    self.record_failure(tgid, ts, Some(id), None);
                }
            }
            (_, TcpState::Close) | (_, TcpState::FinWait1) | (_, TcpState::CloseWait) | (_, TcpState::LastAck) => {
                if old == TcpState::Established && c.client_closed_first.is_none() {
                    c.client_closed_first = match new {
                        TcpState::FinWait1 => Some(true),
                        TcpState::CloseWait => Some(false),
                        _ => None,
                    };
                }
                if c.closed_ns.is_none() && matches!(new, TcpState::Close | TcpState::FinWait1 | TcpState::CloseWait) {
                    c.closed_ns = Some(ts);
                }
                if new == TcpState::Close {
                    let sk = c.skaddr;
                    if self.by_sk.get(&sk) == Some(&id) {
                        self.by_sk.remove(&sk);
                    }
                    // Nothing more can be read or written on a closed socket: a later call on
                    // the same fd number is on another file.
                    let key = (c.tgid, c.fd);
                    if self.by_fd.get(&key) == Some(&id) {
                        self.by_fd.remove(&key);
                    }
                    self.drain_exchanges(id, true);
                }
            }
            _ => {}
        }
    }

    /// The newest connection to `dst` from `src`, or from a source not known yet.
    fn conn_by_tuple(&self, src: Option<SocketAddr>, dst: Option<SocketAddr>) -> Option<u64> {
        let unknown_src = self.by_tuple.get(&(dst, None)).into_iter().flatten();
        let known_src = src.and_then(|_| self.by_tuple.get(&(dst, src))).into_iter().flatten();
        unknown_src.chain(known_src).filter_map(|id| self.conns.get(id)).max_by_key(|c| c.connect_start_ns).map(|c| c.id)
    }

    fn unindex_tuple(&mut self, id: u64, dst: Option<SocketAddr>, src: Option<SocketAddr>) {
        if let std::collections::hash_map::Entry::Occupied(mut e) = self.by_tuple.entry((dst, src)) {
            e.get_mut().retain(|x| *x != id);
            if e.get().is_empty() {
                e.remove();
            }
        }
    }

    fn dns_query(&mut self, ev: &Event, m: &crate::decode::dns::DnsMessage, peer: Option<SocketAddr>) {
        if m.is_response {
            return;
        }
        let Some(q) = m.questions.first() else { return };
        self.activity(ev.tgid, ev.ts_ns);
        // A retry (same id) changes nothing. Siblings asked together (A + AAAA + HTTPS, not
        // yet all answered) share one lookup; the same type asked again is a new lookup.
        let now = ev.ts_ns;
        let same_name: Vec<u64> = self.indexed_lookups(ev.tgid, &q.name);
        let recent = |l: &LookupState| now.saturating_sub(l.started_ns) < 2_000_000_000;
        if self.lookups_in(&same_name).into_iter().filter(|l| recent(l)).any(|l| l.pending.iter().any(|(id, t)| *id == m.id && *t == q.qtype)) {
            return;
        }
        // A resolver's retry of a question still unanswered (a new id, seconds later: glibc
        // and hickory wait 5 s) is the same lookup, as a browser shows it.
        let retried = self.lookups_in(&same_name).into_iter().find(|l| {
            l.ended_ns.is_none() && l.qtypes.contains(&q.qtype) && now.saturating_sub(l.started_ns) < DNS_RETRY_WINDOW_NS
        });
        if let Some(id) = retried.map(|l| l.id) {
            let l = self.lookups.get_mut(&id).expect("indexed lookup");
            if l.pending.len() < 16 {
                l.pending.push((m.id, q.qtype.clone()));
            }
            l.asked_ns = now;
            self.remember_dns_id(ev.tgid, m.id, id);
            return;
        }
        // Types asked one after the other are one lookup too (Firefox asks for the HTTPS
        // record, then getaddrinfo asks for A + AAAA): a lookup answered moments ago is
        // reopened for the new type.
        let sibling = self.lookups_in(&same_name)
            .into_iter()
            .filter(|l| recent(l))
            .filter(|l| {
                l.ended_ns.is_none_or(|e| now.saturating_sub(e) <= SEQUENTIAL_LOOKUP_GAP_NS) && !l.qtypes.contains(&q.qtype)
            })
            .max_by_key(|l| l.started_ns)
            .map(|l| l.id)
            .and_then(|id| self.lookups.get_mut(&id));
        let id = match sibling {
            Some(l) => {
                l.qtypes.push(q.qtype.clone());
                l.pending.push((m.id, q.qtype.clone()));
                l.ended_ns = None;
                l.id
            }
            None => {
                let id = self.next_id;
                self.next_id += 1;
                self.lookups.insert(
                    id,
                    LookupState {
                        id,
                        tgid: ev.tgid,
                        comm: ev.comm.clone(),
                        name: q.name.clone(),
                        qtypes: vec![q.qtype.clone()],
                        pending: vec![(m.id, q.qtype.clone())],
                        started_ns: ev.ts_ns,
                        asked_ns: ev.ts_ns,
                        asked_ids: Vec::new(),
                        ended_ns: None,
                        answered_ns: Vec::new(),
                        address_ns: None,
                        rcode: None,
                        cname_chain: Vec::new(),
                        addresses: Vec::new(),
                        min_ttl: None,
                        server: peer,
                        error: None,
                    },
                );
                self.lookup_order.push_back(id);
                let names = self.lookup_index.entry(ev.tgid).or_default();
                let ids = names.entry(q.name.clone()).or_default();
                ids.push_back(id);
                if ids.len() > LOOKUPS_PER_NAME {
                    ids.pop_front();
                }
                let client = self.client_of(ev.tgid);
                self.open_page(client, ev.ts_ns).lookups.push(id);
                id
            }
        };
        self.remember_dns_id(ev.tgid, m.id, id);
        self.evict();
    }

    fn remember_dns_id(&mut self, tgid: u32, dns_id: u16, lookup: u64) {
        self.dns_ids.insert((tgid, dns_id), lookup);
        if let Some(l) = self.lookups.get_mut(&lookup) {
            if l.asked_ids.len() < 16 && !l.asked_ids.contains(&dns_id) {
                l.asked_ids.push(dns_id);
            }
        }
    }

    fn lookups_in(&self, ids: &[u64]) -> Vec<&LookupState> {
        ids.iter().filter_map(|id| self.lookups.get(id)).collect()
    }

    /// The indexed lookups of `name` by `tgid`, oldest first.
    fn indexed_lookups(&self, tgid: u32, name: &str) -> Vec<u64> {
        self.lookup_index.get(&tgid).and_then(|m| m.get(name)).map(|v| v.iter().copied().collect()).unwrap_or_default()
    }

    /// The indexed lookups of `tgid`'s client: its processes' lookups a connect or a request
    /// of `tgid` may have used.
    fn client_lookups(&self, tgid: u32) -> impl Iterator<Item = &LookupState> + '_ {
        let client = self.client_of(tgid);
        self.lookup_index
            .iter()
            .filter(move |(t, _)| **t == tgid || self.client_of(**t) == client)
            .flat_map(|(_, names)| names.values().flatten())
            .filter_map(|id| self.lookups.get(id))
    }

    fn dns_answer(&mut self, ev: &Event, m: &crate::decode::dns::DnsMessage) {
        if !m.is_response {
            return;
        }
        let Some(id) = self.dns_ids.get(&(ev.tgid, m.id)).copied() else { return };
        self.activity(ev.tgid, ev.ts_ns);
        let Some(l) = self.lookups.get_mut(&id) else { return };
        // One answer settles its question, and the retries of it (a resolver may use one
        // id for A and AAAA: the question's type tells them apart).
        match m.questions.first() {
            Some(q) => l.pending.retain(|(_, t)| *t != q.qtype),
            None => {
                if let Some(i) = l.pending.iter().position(|(id, _)| *id == m.id) {
                    l.pending.remove(i);
                }
            }
        }
        if l.pending.is_empty() {
            l.ended_ns = Some(ev.ts_ns);
        }
        if l.answered_ns.len() < 64 {
            l.answered_ns.push(ev.ts_ns);
        }
        let chain = m.cname_chain();
        if chain.len() > l.cname_chain.len() {
            l.cname_chain = chain;
        }
        for a in m.addresses() {
            l.address_ns.get_or_insert(ev.ts_ns);
            if !l.addresses.contains(&a) {
                l.addresses.push(a);
            }
        }
        if let Some(ttl) = m.answers.iter().map(|a| a.ttl).min() {
            l.min_ttl = Some(l.min_ttl.map_or(ttl, |t| t.min(ttl)));
        }
        // NOERROR wins over NXDOMAIN/SERVFAIL from a sibling query (AAAA of a v4-only name).
        if l.rcode.as_deref() != Some("NOERROR") {
            l.rcode = Some(m.rcode.clone());
        }
        if l.pending.is_empty() {
            l.error = match l.rcode.as_deref() {
                Some("NOERROR") if !l.addresses.is_empty() => None,
                Some("NOERROR") => Some("ERR_NAME_NOT_RESOLVED (no address)".into()),
                Some("NXDOMAIN") => Some("ERR_NAME_NOT_RESOLVED".into()),
                Some(other) => Some(format!("ERR_NAME_NOT_RESOLVED ({other})")),
                None => None,
            };
            if l.error.is_some() && !l.qtypes.iter().all(|t| t == "HTTPS") {
                let (tgid, ts) = (l.tgid, ev.ts_ns);
                self.record_failure(tgid, ts, None, Some(id));
            }
        }
    }

    /// The latest lookup by the same client whose answer holds `ip` and ended by `before`.
    fn lookup_for(&self, tgid: u32, ip: IpAddr, before: u64) -> Option<u64> {
        self.client_lookups(tgid)
            .filter(|l| l.addresses.contains(&ip) && l.known_by(before).is_some())
            .max_by_key(|l| l.known_by(before))
            .map(|l| l.id)
    }

    /// The latest lookup of `name` by the same client whose answer holds `ip` and that
    /// ended by `before`.
    fn lookup_named(&self, tgid: u32, name: &str, ip: IpAddr, before: u64) -> Option<u64> {
        self.client_lookups(tgid)
            .filter(|l| l.name.eq_ignore_ascii_case(name) && l.addresses.contains(&ip) && l.known_by(before).is_some())
            .max_by_key(|l| l.known_by(before))
            .map(|l| l.id)
    }

    /// When name resolution ended for a connection that started at `before`: the lookup's
    /// end, or later when the client then looked up the lookup's CNAME targets itself.
    fn resolution_end(&self, lookup: u64, before: u64) -> Option<u64> {
        let l = self.lookups.get(&lookup)?;
        let mut end = l.known_by(before)?;
        if l.cname_chain.len() > 1 {
            for t in self.client_lookups(l.tgid) {
                if t.id != lookup
                    && l.cname_chain[1..].iter().any(|n| n.eq_ignore_ascii_case(&t.name))
                    && t.started_ns >= l.started_ns
                {
                    if let Some(e) = t.known_by(before) {
                        end = end.max(e);
                    }
                }
            }
        }
        Some(end)
    }

    /// Root of the process tree: walk up while the parent runs the same program.
    fn client_of(&self, tgid: u32) -> u32 {
        let mut cur = tgid;
        for _ in 0..64 {
            let Some(p) = self.procs.get(&cur) else { break };
            let Some(ppid) = p.ppid else { break };
            let Some(parent) = self.procs.get(&ppid) else { break };
            let same = match (&p.exe, &parent.exe) {
                (Some(a), Some(b)) => same_program(a, b),
                _ => false,
            };
            if !same {
                break;
            }
            cur = ppid;
        }
        cur
    }

    fn client_info(&self, client: u32, fallback_comm: &str) -> ClientInfo {
        let p = self.procs.get(&client);
        let exe = p.and_then(|p| p.exe.clone());
        let name = exe
            .as_deref()
            .and_then(|e| e.rsplit('/').next())
            .map(str::to_string)
            .or_else(|| p.map(|p| p.comm.clone()))
            .unwrap_or_else(|| fallback_comm.to_string());
        ClientInfo { tgid: client, name, exe }
    }

    fn activity(&mut self, tgid: u32, ts: u64) {
        let client = self.client_of(tgid);
        let page = self.open_page(client, ts);
        page.last_activity_ns = page.last_activity_ns.max(ts);
    }

    fn open_page(&mut self, client: u32, ts: u64) -> &mut OpenPage {
        self.pages.entry(client).or_insert_with(|| OpenPage {
            started_ns: ts,
            last_activity_ns: ts,
            requests: Vec::new(),
            conns: Vec::new(),
            lookups: Vec::new(),
            failures: Vec::new(),
            navigation: None,
        })
    }

    /// Puts a new connection (an id never attached before) into its client's open page.
    fn attach_new_connection(&mut self, tgid: u32, conn: u64, lookup: Option<u64>) {
        let client = self.client_of(tgid);
        let ts = self.conns[&conn].connect_start_ns;
        let page = self.open_page(client, ts);
        // No search of page.conns: the id is new (a connect storm made that search quadratic).
        page.conns.push(conn);
        if let Some(l) = lookup {
            if !page.lookups.contains(&l) {
                page.lookups.push(l);
            }
        }
    }

    fn record_failure(&mut self, tgid: u32, ts: u64, conn: Option<u64>, lookup: Option<u64>) {
        let client = self.client_of(tgid);
        let page = self.open_page(client, ts);
        // The same failure can be seen twice (a refused connect's RST may be reported before
        // and after its connect record): once is enough.
        if !page.failures.iter().any(|(_, c, l)| *c == conn && *l == lookup) {
            page.failures.push((ts, conn, lookup));
        }
    }

    fn drain_exchanges(&mut self, id: u64, flush: bool) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        if flush {
            if let Some(h) = c.held.take() {
                c.http.feed(Direction::Recv, h.start_ns, h.ts_ns, h.len, &h.data);
            }
        }
        let exchanges = c.http.take_exchanges(flush);
        if exchanges.is_empty() {
            return;
        }
        let tgid = c.tgid;
        for x in exchanges {
            let req = self.make_request(id, &x);
            let client = self.client_of(tgid);
            // A browser navigation that is not the previous redirect's target starts a new page load.
            if is_navigation(&x.request_headers) {
                // Responses held back as possible peeks are real by the time the client
                // navigates (a redirect's response among them).
                let held: Vec<u64> = self
                    .pages
                    .get(&client)
                    .map(|p| p.conns.iter().copied().filter(|c| *c != id && self.conns.get(c).is_some_and(|c| c.held.is_some())).collect())
                    .unwrap_or_default();
                for h in held {
                    self.release_held(h);
                }
                let follows_redirect = self.pages.get(&client).is_some_and(|p| {
                    req.url.is_some() && p.requests.iter().any(|r| r.redirect_to.is_some() && r.redirect_to == req.url)
                });
                if !follows_redirect {
                    let lookup = if req.new_connection { self.conns.get(&id).and_then(|c| c.dns) } else { None };
                    self.split_for_navigation(client, req.started_ns, id, lookup, req.url.clone());
                }
            }
            let page = self.open_page(client, req.started_ns);
            if !page.conns.contains(&id) {
                page.conns.push(id);
            }
            page.started_ns = page.started_ns.min(req.started_ns);
            page.last_activity_ns = page.last_activity_ns.max(req.ended_ns);
            page.requests.push(req);
            self.stats.requests += 1;
        }
    }

    fn make_request(&mut self, id: u64, x: &HttpExchange) -> Request {
        let c = self.conns.get_mut(&id).expect("connection");
        // The connection's set-up (DNS, TCP, TLS) belongs to the request that opened it, as
        // in browsers' dev tools: HTTP/1 exchanges end in order, but an HTTP/2 connection's
        // first stream may end after later ones.
        let first = !c.setup_attributed
            && match (x.stream_id, c.http.first_request_stream()) {
                (Some(stream), Some(opener)) => stream == opener,
                _ => true,
            };
        c.setup_attributed |= first;
        c.exchanges += 1;
        // The host the request names picks the connection's lookup when several gave its
        // address (Firefox resolves www.shop.test and then its CNAME target edge.cdn.test).
        if first {
            if let Some(name) = x.authority.as_deref().map(host_of) {
                let c = &self.conns[&id];
                if let Some(better) = c.dst.and_then(|d| self.lookup_named(c.tgid, &name, d.ip(), c.connect_start_ns)) {
                    self.conns.get_mut(&id).expect("connection").dns = Some(better);
                }
            }
        }
        let dns_end = self.conns[&id].dns.and_then(|l| self.resolution_end(l, self.conns[&id].connect_start_ns));
        let c = self.conns.get_mut(&id).expect("connection");
        let tls = c.tls_lib.is_some_and(|l| l != TlsLib::None) || c.wire.is_some();
        let scheme = x.scheme.clone().unwrap_or_else(|| if tls { "https".into() } else { "http".into() });
        let lookup = c.dns.and_then(|l| self.lookups.get(&l));
        let host = x
            .authority
            .clone()
            .or_else(|| lookup.map(|l| l.name.clone()))
            .or_else(|| c.dst.map(|d| d.ip().to_string()));
        let path = x.path.as_deref().map(redact_path);
        let default_port = if tls { 443 } else { 80 };
        let url = host.as_ref().map(|h| {
            let port = c.dst.map(|d| d.port()).filter(|p| *p != default_port && !h.contains(':'));
            format!("{scheme}://{h}{}{}", port.map(|p| format!(":{p}")).unwrap_or_default(), path.as_deref().unwrap_or("/"))
        });
        let redirect_to = if x.status.is_some_and(|s| (300..400).contains(&s)) {
            header(&x.response_headers, "location").map(|loc| resolve_location(url.as_deref(), loc))
        } else {
            None
        };

        let mut t = Timings::default();
        let established = c.established_ns;
        let tcp_start = c.syn_sent_ns.unwrap_or(c.connect_start_ns);
        if first {
            if let Some(l) = lookup {
                if let Some(end) = dns_end.or(l.ended_ns) {
                    t.dns = ms(end.saturating_sub(l.started_ns));
                    t.blocked = ms(c.connect_start_ns.saturating_sub(end));
                }
            }
            if let Some(est) = established {
                t.tcp = ms(est.saturating_sub(tcp_start));
            }
            if tls {
                // As in HAR and browsers' dev tools, TLS time runs from TCP connected to the
                // handshake's end: it includes the client's TLS set-up before its first
                // handshake call (the library-level span stays in the TLS session).
                let start = established.or(c.hs_start_ns);
                let end = c.hs_end_ns.or(c.wire.as_ref().and_then(|w| w.handshake_end_ns)).or(c.first_data_ns);
                if let (Some(s), Some(e)) = (start, end) {
                    t.ssl = ms(e.saturating_sub(s));
                }
            }
            if t.tcp >= 0.0 {
                t.connect = round_ms(t.tcp + t.ssl.max(0.0));
            }
        }
        t.send = ms(x.request_end_ns.saturating_sub(x.request_start_ns));
        if let Some(rs) = x.response_start_ns {
            t.wait = ms(rs.saturating_sub(x.request_end_ns));
            if let Some(re) = x.response_end_ns {
                t.receive = ms(re.saturating_sub(rs));
            }
        }
        let started_ns = if first {
            lookup.map(|l| l.started_ns).unwrap_or(c.connect_start_ns).min(x.request_start_ns)
        } else {
            x.request_start_ns
        };
        let ended_ns = x.response_end_ns.or(x.response_start_ns).unwrap_or(x.request_end_ns);
        let error = if x.complete {
            None
        } else if x.response_start_ns.is_none() {
            Some("ERR_EMPTY_RESPONSE".into())
        } else {
            Some(if c.response_timed_out && c.closed_ns.is_none() {
                format!(
                    "ERR_TIMED_OUT (the response did not end within {} s of silence; {} body bytes received)",
                    self.cfg.response_timeout_ns / 1_000_000_000,
                    x.response_body_bytes
                )
            } else {
                incomplete_response(x, c.client_closed_first)
            })
        };
        Request {
            // Global ids while the page load is open; indices once it closes.
            connection: Some(id as usize),
            dns: c.dns.filter(|_| first).map(|l| l as usize),
            tgid: c.tgid,
            pid: c.pid,
            comm: c.comm.clone(),
            method: x.method.clone(),
            url,
            host,
            path,
            protocol: Some(match x.protocol {
                crate::http::Protocol::Http1 => "HTTP/1.1".to_string(),
                crate::http::Protocol::Http2 => "HTTP/2".to_string(),
            }),
            stream_id: x.stream_id,
            status: x.status,
            redirect_to,
            content_type: header(&x.response_headers, "content-type").map(|v| crate::redact::header_value("content-type", v)),
            request_headers: crate::redact::headers(x.request_headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
            response_headers: crate::redact::headers(x.response_headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
            request_bytes: x.request_header_bytes + x.request_body_bytes,
            response_bytes: x.response_header_bytes + x.response_body_bytes,
            response_header_bytes: x.response_header_bytes,
            started_ns,
            ended_ns,
            timings: t,
            new_connection: first,
            error,
            complete: x.complete,
            request_body: x.request_body.clone(),
            response_body: x.response_body.clone(),
        }
    }

    fn close_idle(&mut self, now: u64) -> Vec<PageLoad> {
        let mut out = std::mem::take(&mut self.finished);
        let idle: Vec<u32> = self
            .pages
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.last_activity_ns) >= self.cfg.quiet_ns)
            .filter(|(_, p)| {
                // Unanswered lookups and connects in progress keep the page load open (bounded).
                let waiting_dns = p.lookups.iter().filter_map(|l| self.lookups.get(l)).any(|l| {
                    l.ended_ns.is_none() && now.saturating_sub(l.asked_ns) < self.cfg.dns_timeout_ns
                });
                let connecting = p.conns.iter().filter_map(|c| self.conns.get(c)).any(|c| {
                    c.established_ns.is_none()
                        && c.closed_ns.is_none()
                        && now.saturating_sub(c.connect_start_ns) < self.cfg.connect_timeout_ns
                });
                let awaiting_response = p.conns.iter().filter_map(|c| self.conns.get(c)).any(|c| {
                    c.closed_ns.is_none()
                        && c.http.open_exchanges() > 0
                        && now.saturating_sub(c.last_ns) < self.cfg.response_timeout_ns
                });
                !waiting_dns && !connecting && !awaiting_response
            })
            .map(|(c, _)| *c)
            .collect();
        for client in idle {
            // Responses still owed on open connections after `response_timeout` of silence
            // (a server that stalls mid-body) are reported as they stand, not dropped.
            let stalled: Vec<u64> = self.pages.get(&client).map_or_else(Vec::new, |p| {
                p.conns
                    .iter()
                    .copied()
                    .filter(|id| self.conns.get(id).is_some_and(|c| c.closed_ns.is_none() && c.http.open_exchanges() > 0))
                    .collect()
            });
            for id in stalled {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.response_timed_out = true;
                }
                self.drain_exchanges(id, true);
            }
            if let Some(p) = self.close_page(client) {
                out.push(p);
            }
        }
        out
    }

    /// A navigation starts a page load of its own. What the client did before it (the previous
    /// page load, or a browser's background lookups and connects) is closed as its own page
    /// load; what the navigation itself started (its lookup and connection, and everything
    /// that started at or after it) moves to the new one.
    fn split_for_navigation(&mut self, client: u32, nav_start: u64, conn: u64, lookup: Option<u64>, url: Option<String>) {
        let Some(mut old) = self.pages.remove(&client) else {
            self.open_page(client, nav_start).navigation = url;
            return;
        };
        let conn_moves = |s: &Self, id: &u64| *id == conn || s.conns.get(id).is_some_and(|c| c.connect_start_ns >= nav_start);
        let lookup_moves = |s: &Self, id: &u64| Some(*id) == lookup || s.lookups.get(id).is_some_and(|l| l.started_ns >= nav_start);
        let mut new = OpenPage {
            started_ns: nav_start,
            last_activity_ns: old.last_activity_ns.max(nav_start),
            requests: Vec::new(),
            conns: Vec::new(),
            lookups: Vec::new(),
            failures: Vec::new(),
            navigation: url,
        };
        let (moved, kept): (Vec<u64>, Vec<u64>) = old.conns.iter().partition(|id| conn_moves(self, id));
        old.conns = kept;
        new.conns = moved;
        let (moved, kept): (Vec<u64>, Vec<u64>) = old.lookups.iter().partition(|id| lookup_moves(self, id));
        old.lookups = kept;
        new.lookups = moved;
        let (moved, kept): (Vec<_>, Vec<_>) = old.failures.iter().partition(|(ts, c, l)| {
            c.is_some_and(|c| new.conns.contains(&c))
                || l.is_some_and(|l| new.lookups.contains(&l))
                || (c.is_none() && l.is_none() && *ts >= nav_start)
        });
        old.failures = kept;
        new.failures = moved;
        let (moved, kept): (Vec<Request>, Vec<Request>) = std::mem::take(&mut old.requests)
            .into_iter()
            .partition(|r| r.started_ns >= nav_start && r.connection.is_some_and(|c| new.conns.contains(&(c as u64))));
        old.requests = kept;
        new.requests = moved;
        if let Some(done) = self.close_open_page(client, old) {
            self.finished.push(done);
        }
        self.pages.insert(client, new);
    }

    fn close_page(&mut self, client: u32) -> Option<PageLoad> {
        // Receives held back as possible peeks are real ones by now.
        let held: Vec<u64> = self.pages.get(&client)?.conns.iter().copied().filter(|id| self.conns.get(id).is_some_and(|c| c.held.is_some())).collect();
        for id in held {
            self.release_held(id);
        }
        let open = self.pages.remove(&client)?;
        self.close_open_page(client, open)
    }

    fn close_open_page(&mut self, client: u32, mut open: OpenPage) -> Option<PageLoad> {
        // A browser's background work during a navigation is not part of the page: it is
        // reported on its own. That is what another of its processes than the ones that
        // loaded the page did (Chromium's browser process resolving its update hosts), and
        // connects that failed before sending a SYN to an address no lookup gave (Chromium's
        // IPv6 reachability probe, a UDP connect to 2001:4860:4860::8888).
        if open.navigation.is_some() {
            let fg: HashSet<u32> = open.requests.iter().filter(|r| r.method.is_some()).map(|r| r.tgid).collect();
            let conn_bg = |s: &Self, id: &u64| {
                s.conns.get(id).is_some_and(|c| {
                    !fg.contains(&c.tgid) || (c.skaddr == 0 && c.dns.is_none() && c.error.is_some() && c.exchanges == 0)
                })
            };
            let lookup_bg = |s: &Self, id: &u64| s.lookups.get(id).is_some_and(|l| !fg.contains(&l.tgid));
            if !fg.is_empty() {
                let (bg_conns, conns): (Vec<u64>, Vec<u64>) = open.conns.iter().partition(|id| conn_bg(self, id));
                let (bg_lookups, lookups): (Vec<u64>, Vec<u64>) = open.lookups.iter().partition(|id| lookup_bg(self, id));
                let (bg_failures, failures): (Vec<_>, Vec<_>) = open.failures.iter().partition(|(_, c, l)| {
                    c.is_some_and(|c| bg_conns.contains(&c)) || l.is_some_and(|l| bg_lookups.contains(&l))
                });
                if !bg_conns.is_empty() || !bg_lookups.is_empty() {
                    open.conns = conns;
                    open.lookups = lookups;
                    open.failures = failures;
                    let background = OpenPage {
                        started_ns: open.started_ns,
                        last_activity_ns: open.last_activity_ns,
                        requests: Vec::new(),
                        conns: bg_conns,
                        lookups: bg_lookups,
                        failures: bg_failures,
                        navigation: None,
                    };
                    if let Some(p) = self.close_open_page(client, background) {
                        self.finished.push(p);
                    }
                }
            }
        }
        // Lookups that never got an answer failed.
        for id in &open.lookups {
            if let Some(l) = self.lookups.get_mut(id) {
                if l.ended_ns.is_none() && !l.pending.is_empty() {
                    let server = l.server.map(|s| format!(" from {s}")).unwrap_or_default();
                    l.error.get_or_insert_with(|| format!("ERR_DNS_TIMED_OUT (no answer{server})"));
                    // Not a silently missing row: the lookup is a failed entry of its own.
                    if !open.failures.iter().any(|(_, _, f)| *f == Some(*id)) {
                        open.failures.push((l.started_ns, None, Some(*id)));
                    }
                }
            }
        }
        // Connections whose TLS handshake began and never finished (a certificate the client
        // rejected, a protocol error) and that carried nothing: failed entries too.
        for id in &open.conns {
            if let Some(c) = self.conns.get(id) {
                if c.exchanges == 0 && tls_failure(c).is_some() && !open.failures.iter().any(|(_, f, _)| *f == Some(*id)) {
                    open.failures.push((c.connect_start_ns, Some(*id), None));
                }
            }
        }
        let fallback_comm = open.requests.first().map(|r| r.comm.clone()).unwrap_or_default();
        let client_info = self.client_info(client, &fallback_comm);

        // Index connections and lookups as the page load's own vectors.
        let mut conn_index: HashMap<u64, usize> = HashMap::new();
        let mut connections = Vec::new();
        for id in &open.conns {
            if let Some(c) = self.conns.get(id) {
                conn_index.insert(*id, connections.len());
                connections.push(self.connection_model(c));
            }
        }
        let mut lookup_index: HashMap<u64, usize> = HashMap::new();
        let mut dns = Vec::new();
        for id in &open.lookups {
            if let Some(l) = self.lookups.get(id) {
                lookup_index.insert(*id, dns.len());
                dns.push(lookup_model(l));
            }
        }
        let mut requests = open.requests;
        // Connections whose TLS was seen only on the wire carry exchanges nobody decoded: one
        // opaque entry each (who, where, dns/tcp/ssl, and the records' timing).
        for id in &open.conns {
            if let Some(c) = self.conns.get(id) {
                // Only where no TLS library of the process is probed: elsewhere an idle
                // (speculative) connection's records are no request.
                if c.exchanges == 0
                    && c.wire.as_ref().is_some_and(|w| w.exchanged())
                    && !self.library_tgids.contains(&c.tgid)
                {
                    requests.push(self.opaque_request(c));
                }
            }
        }
        for r in &mut requests {
            r.connection = r.connection.and_then(|c| conn_index.get(&(c as u64)).copied());
            r.dns = r.dns.and_then(|l| lookup_index.get(&(l as u64)).copied());
        }
        for (i, c) in connections.iter_mut().enumerate() {
            c.requests = requests.iter().filter(|r| r.connection == Some(i)).count() as u32;
        }
        // Failures that no request covers become entries of their own.
        let mut failed_entries = Vec::new();
        for (ts, conn, lookup) in &open.failures {
            let ci = conn.and_then(|c| conn_index.get(&c).copied());
            let li = lookup.and_then(|l| lookup_index.get(&l).copied());
            if ci.is_some_and(|ci| requests.iter().any(|r| r.connection == Some(ci))) {
                continue;
            }
            failed_entries.push(self.failure_request(*ts, ci, li, &connections, &dns, conn.and_then(|c| self.conns.get(&c))));
        }
        requests.extend(failed_entries);
        requests.sort_by_key(|r| r.started_ns);

        if requests.is_empty() {
            return None;
        }
        let redirect_chain = redirect_chain(&requests, open.navigation.as_deref());
        let last_hop = redirect_chain.last().map(|i| &requests[*i]);
        let started_ns = requests.iter().map(|r| r.started_ns).min().unwrap_or(open.started_ns);
        let ended_ns = requests.iter().map(|r| r.ended_ns).max().unwrap_or(open.last_activity_ns).max(started_ns);
        let first = redirect_chain.first().map(|i| &requests[*i]);
        let error = last_hop.and_then(|r| r.error.clone()).or_else(|| {
            if requests.iter().all(|r| r.status.is_none()) { requests.iter().find_map(|r| r.error.clone()) } else { None }
        });
        self.stats.page_loads += 1;
        Some(PageLoad {
            client: client_info,
            url: first.and_then(|r| r.url.clone()),
            started_ns,
            ended_ns,
            status: last_hop.and_then(|r| r.status),
            error,
            requests,
            connections,
            dns,
            redirect_chain,
        })
    }

    /// An exchange over TLS seen only as records on the wire: no method, path or status.
    fn opaque_request(&self, c: &ConnState) -> Request {
        let w = c.wire.as_ref().expect("wire connection");
        let lookup = c.dns.and_then(|l| self.lookups.get(&l));
        let host = w
            .sni
            .clone()
            .or_else(|| lookup.map(|l| l.name.clone()))
            .or_else(|| c.dst.map(|d| d.ip().to_string()));
        let port = c.dst.map(|d| d.port()).filter(|p| *p != 443);
        let url = host.as_ref().map(|h| format!("https://{h}{}/", port.map(|p| format!(":{p}")).unwrap_or_default()));
        let mut t = Timings::default();
        if let Some(l) = lookup {
            if let Some(end) = self.resolution_end(l.id, c.connect_start_ns) {
                t.dns = ms(end.saturating_sub(l.started_ns));
                t.blocked = ms(c.connect_start_ns.saturating_sub(end));
            }
        }
        if let Some(est) = c.established_ns {
            t.tcp = ms(est.saturating_sub(c.syn_sent_ns.unwrap_or(c.connect_start_ns)));
            if let Some(end) = w.handshake_end_ns {
                t.ssl = ms(end.saturating_sub(est));
            }
            t.connect = round_ms(t.tcp + t.ssl.max(0.0));
        }
        let send_start = w.app_send_ns.unwrap_or(c.connect_start_ns);
        let send_end = w.app_send_end_ns.unwrap_or(send_start);
        t.send = ms(send_end.saturating_sub(send_start));
        if let Some(rs) = w.app_recv_start_ns {
            t.wait = ms(rs.saturating_sub(send_end));
            if let Some(re) = w.app_recv_end_ns {
                t.receive = ms(re.saturating_sub(rs));
            }
        }
        let started_ns = lookup.map(|l| l.started_ns).unwrap_or(c.connect_start_ns).min(c.connect_start_ns);
        let ended_ns = w.app_recv_end_ns.unwrap_or(send_end).max(started_ns);
        Request {
            connection: Some(c.id as usize),
            dns: c.dns.map(|l| l as usize),
            tgid: c.tgid,
            pid: c.pid,
            comm: c.comm.clone(),
            url,
            host,
            request_bytes: w.app_bytes_sent,
            response_bytes: w.app_bytes_received,
            started_ns,
            ended_ns,
            timings: t,
            new_connection: true,
            complete: w.app_recv_end_ns.is_some(),
            // Nothing of the HTTP exchange is known.
            ..Request::default()
        }
    }

    fn failure_request(
        &self,
        ts: u64,
        conn: Option<usize>,
        lookup: Option<usize>,
        connections: &[Connection],
        dns: &[DnsLookup],
        raw: Option<&ConnState>,
    ) -> Request {
        let c = conn.map(|i| &connections[i]);
        let l = lookup.map(|i| &dns[i]).or_else(|| {
            raw.and_then(|r| r.dns).and_then(|id| self.lookups.get(&id)).and_then(|x| dns.iter().find(|d| d.name == x.name))
        });
        let host = l.map(|l| l.name.clone()).or_else(|| c.and_then(|c| c.dst.clone()));
        let tls_error = raw.and_then(tls_failure);
        let error = match (c.and_then(|c| c.error.as_deref()), l.and_then(|l| l.error.clone())) {
            _ if tls_error.is_some() => tls_error.unwrap_or_default(),
            (Some("ECONNREFUSED"), _) => "ERR_CONNECTION_REFUSED".to_string(),
            (Some("ETIMEDOUT"), _) => {
                "ERR_CONNECTION_TIMED_OUT (SYN unanswered: the kernel gave up after its retries, ETIMEDOUT)".to_string()
            }
            (Some(CLIENT_GAVE_UP_IN_SYN_SENT), _) => format!(
                "ERR_CONNECTION_TIMED_OUT (SYN unanswered: the client closed the socket after {} ms)",
                c.and_then(|c| c.closed_ns.map(|e| ms(e.saturating_sub(c.connect_start_ns)))).unwrap_or(-1.0)
            ),
            (Some("ENETUNREACH"), _) | (Some("EHOSTUNREACH"), _) => "ERR_ADDRESS_UNREACHABLE".to_string(),
            (Some(other), _) => format!("ERR_CONNECTION_FAILED ({other})"),
            (None, Some(e)) => e,
            (None, None) => "ERR_FAILED".to_string(),
        };
        // The scheme is known only from the port of a connect; a failed lookup has none, so
        // its URL is just the host.
        let port = c.and_then(|c| c.dst.as_deref()).and_then(|d| d.parse::<SocketAddr>().ok()).map(|d| d.port());
        let scheme = match port {
            Some(443) => Some("https"),
            Some(80) => Some("http"),
            _ => None,
        };
        let mut t = Timings::default();
        let started = l.map(|l| l.started_ns).or(c.map(|c| c.connect_start_ns)).unwrap_or(ts);
        if let Some(l) = l {
            if let Some(e) = l.ended_ns {
                t.dns = ms(e.saturating_sub(l.started_ns));
            }
        }
        if let Some(c) = c {
            if let Some(closed) = c.closed_ns {
                t.connect = ms(closed.saturating_sub(c.connect_start_ns));
                t.tcp = t.connect;
            }
        }
        let ended = c.and_then(|c| c.closed_ns).or(l.and_then(|l| l.ended_ns)).unwrap_or(ts).max(started);
        let raw_c = raw;
        Request {
            connection: conn,
            dns: lookup.or_else(|| l.and_then(|l| dns.iter().position(|d| d == l))),
            tgid: raw_c.map(|r| r.tgid).or(l.map(|l| l.tgid)).unwrap_or(0),
            pid: raw_c.map(|r| r.pid).unwrap_or(0),
            comm: raw_c.map(|r| r.comm.clone()).or(l.map(|l| l.comm.clone())).unwrap_or_default(),
            url: host.as_ref().map(|h| match scheme {
                Some(scheme) => format!("{scheme}://{h}/"),
                None => h.clone(),
            }),
            host,
            started_ns: started,
            ended_ns: ended,
            timings: t,
            // A failed attempt is a first attempt: it paid for its lookup and connect.
            new_connection: true,
            error: Some(error),
            // No HTTP exchange happened.
            ..Request::default()
        }
    }

    fn connection_model(&self, c: &ConnState) -> Connection {
        let tls_error = tls_failure(c).map(|e| crate::metrics::reason_of(&e).to_string());
        let lib = c.tls_lib.filter(|l| *l != TlsLib::None);
        let wire = c.wire.as_ref();
        let tls = (lib.is_some() || wire.is_some()).then(|| {
            // The library's own handshake calls first, then the records on the wire, then
            // (estimated) TCP connected .. first plaintext.
            let wire_hs = wire.and_then(|w| w.handshake());
            let start = c.hs_start_ns.or(wire_hs.map(|(s, _)| s));
            let end = c.hs_end_ns.or(wire_hs.and_then(|(_, e)| e));
            TlsSession {
                library: match lib {
                    Some(TlsLib::OpenSsl) => "openssl",
                    Some(TlsLib::GnuTls) => "gnutls",
                    Some(TlsLib::Nspr) => "nspr",
                    Some(TlsLib::BoringSsl) => "boringssl",
                    Some(TlsLib::Rustls) => "rustls",
                    // No library plaintext: what the kernel saw of the records.
                    Some(TlsLib::None) | None => "wire",
                }
                .to_string(),
                handshake_start_ns: start.or(c.established_ns),
                handshake_end_ns: end.or(c.first_data_ns),
                estimated: start.is_none() || end.is_none(),
                version: wire.and_then(|w| w.server_version).map(crate::decode::tls::version_name),
                cipher: wire.and_then(|w| w.cipher_suite).map(crate::decode::tls::cipher_suite_name),
                alpn: c.http.protocol().map(|p| match p {
                    crate::http::Protocol::Http2 => "h2".to_string(),
                    crate::http::Protocol::Http1 => "http/1.1".to_string(),
                }),
                sni: wire.and_then(|w| w.sni.clone()),
            }
        });
        Connection {
            tgid: c.tgid,
            pid: c.pid,
            comm: c.comm.clone(),
            fd: c.fd,
            skaddr: c.skaddr,
            src: c.src.map(|a| a.to_string()),
            dst: c.dst.map(|a| a.to_string()),
            connect_start_ns: c.connect_start_ns,
            established_ns: c.established_ns,
            closed_ns: c.closed_ns,
            error: c.error.clone().or(tls_error).or_else(|| c.hs_failed.then(|| "TLS handshake failed".to_string())),
            tls,
            requests: 0,
        }
    }

    /// Forget the oldest state beyond the bounds, and what has been idle too long.
    fn evict(&mut self) {
        let now = self.now_ns;
        while self.conn_order.len() > self.cfg.max_connections
            || self.conn_order.front().is_some_and(|id| {
                self.conns.get(id).is_none_or(|c| now.saturating_sub(c.last_ns) > self.cfg.max_idle_ns)
            })
        {
            let Some(id) = self.conn_order.pop_front() else { break };
            if let Some(c) = self.conns.remove(&id) {
                self.stats.evicted_connections += 1;
                self.unindex_tuple(id, c.dst, c.src);
                if self.by_fd.get(&(c.tgid, c.fd)) == Some(&id) {
                    self.by_fd.remove(&(c.tgid, c.fd));
                }
                if self.by_sk.get(&c.skaddr) == Some(&id) {
                    self.by_sk.remove(&c.skaddr);
                }
            }
        }
        while self.lookup_order.len() > self.cfg.max_lookups
            || self.lookup_order.front().is_some_and(|id| {
                self.lookups.get(id).is_none_or(|l| now.saturating_sub(l.started_ns) > self.cfg.max_idle_ns)
            })
        {
            let Some(id) = self.lookup_order.pop_front() else { break };
            if let Some(l) = self.lookups.remove(&id) {
                self.stats.evicted_lookups += 1;
                for dns_id in &l.asked_ids {
                    if self.dns_ids.get(&(l.tgid, *dns_id)) == Some(&id) {
                        self.dns_ids.remove(&(l.tgid, *dns_id));
                    }
                }
                if let Some(names) = self.lookup_index.get_mut(&l.tgid) {
                    if let Some(ids) = names.get_mut(&l.name) {
                        ids.retain(|x| *x != id);
                        if ids.is_empty() {
                            names.remove(&l.name);
                        }
                    }
                    if names.is_empty() {
                        self.lookup_index.remove(&l.tgid);
                    }
                }
            }
        }
        if self.tls_fd.len() > self.cfg.max_connections * 4 {
            self.tls_fd.clear();
            self.tls_pending_start.clear();
        }
    }
}

/// A sum of phases, rounded like the phases themselves (two decimals of a ms), so that a
/// page load reads back from JSON exactly as it was built.
fn round_ms(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The host of an authority (`host:port`, `[v6]:port`), lower-case.
fn host_of(authority: &str) -> String {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        a.rsplit_once(':').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())).map_or(a, |(h, _)| h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether two executables are the same program: the same path, or the same file name (a
/// launcher and what it runs: `/usr/bin/firefox-esr` -> `/usr/lib/firefox-esr/firefox-esr`,
/// the `/usr/bin/chromium` script -> `/usr/lib/chromium/chromium`).
fn same_program(a: &str, b: &str) -> bool {
    a == b || (!a.is_empty() && a.rsplit('/').next() == b.rsplit('/').next())
}

fn lookup_model(l: &LookupState) -> DnsLookup {
    DnsLookup {
        tgid: l.tgid,
        comm: l.comm.clone(),
        name: l.name.clone(),
        qtypes: l.qtypes.clone(),
        started_ns: l.started_ns,
        ended_ns: l.ended_ns,
        rcode: l.rcode.clone(),
        cname_chain: l.cname_chain.clone(),
        addresses: l.addresses.iter().map(|a| a.to_string()).collect(),
        min_ttl: l.min_ttl,
        server: l.server.map(|s| s.to_string()),
        error: l.error.clone(),
    }
}

/// A browser's navigation request (the document of a tab, not a sub-resource): Fetch
/// metadata says so on secure origins (`sec-fetch-mode: navigate`); on plain HTTP, where
/// browsers send no fetch metadata, the navigation is the request that asks to be upgraded
/// (`upgrade-insecure-requests: 1`, sent by Chromium and Firefox on navigations only).
fn is_navigation(headers: &[(String, String)]) -> bool {
    match header(headers, "sec-fetch-mode") {
        Some(mode) => mode == "navigate",
        None => header(headers, "upgrade-insecure-requests").is_some_and(|v| v.trim() == "1"),
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Query values (and token-looking segments) redacted: they often carry tokens.
pub fn redact_path(path: &str) -> String {
    crate::redact::path(path)
}

/// Absolute URL of a Location header relative to the request URL, redacted.
fn resolve_location(base: Option<&str>, loc: &str) -> String {
    match base.and_then(|b| url::Url::parse(b).ok()).and_then(|b| b.join(loc.trim()).ok()) {
        Some(u) => crate::redact::url(u.as_str()),
        None => crate::redact::url(loc.trim()),
    }
}

/// Follow 3xx Location hops from the navigation (a browser's) or else the first request.
fn redirect_chain(requests: &[Request], navigation: Option<&str>) -> Vec<usize> {
    let nav = navigation.and_then(|u| requests.iter().position(|r| r.method.is_some() && r.url.as_deref() == Some(u)));
    // Else the first HTTP request or failure, else the first opaque (TLS-only) exchange.
    let Some(first) = nav
        .or_else(|| requests.iter().position(|r| r.method.is_some() || r.error.is_some()))
        .or_else(|| (!requests.is_empty()).then_some(0))
    else {
        return Vec::new();
    };
    let mut chain = vec![first];
    let mut used = vec![false; requests.len()];
    used[first] = true;
    while let Some(next_url) = requests[*chain.last().expect("non-empty")].redirect_to.clone() {
        let after = requests[*chain.last().expect("non-empty")].started_ns;
        match requests
            .iter()
            .enumerate()
            .find(|(i, r)| !used[*i] && r.started_ns >= after && r.url.as_deref() == Some(next_url.as_str()))
        {
            Some((i, _)) => {
                used[i] = true;
                chain.push(i);
            }
            None => break,
        }
    }
    chain
}

/// `ConnState::error` of a connect whose socket the client closed in SYN_SENT with no error
/// reported by the kernel: the client stopped waiting for the SYN's answer.
const CLIENT_GAVE_UP_IN_SYN_SENT: &str = "SYN_SENT closed by the client";

/// Why a connection's TLS handshake failed, browser-style, when it began and never finished
/// and the connection closed (or a library call said it failed) with nothing exchanged. The
/// reason is only as good as what is visible: an alert sent in the clear (TLS 1.2, or before
/// the server's first flight) names it; otherwise it is a generic protocol error.
fn tls_failure(c: &ConnState) -> Option<String> {
    let wire = c.wire.as_ref();
    let probed = c.tls_lib.is_some_and(|l| l != TlsLib::None);
    let started = c.hs_start_ns.is_some() || wire.is_some_and(|w| w.hello_ns.is_some());
    // With a probed library its handshake calls decide: under TLS 1.3 the client's encrypted
    // alert looks like its Finished on the wire.
    let finished = if probed {
        c.hs_end_ns.is_some()
    } else {
        wire.is_some_and(|w| w.handshake_end_ns.is_some()) && wire.is_none_or(|w| w.client_alert.is_none())
    } || c.exchanges > 0
        || c.first_data_ns.is_some();
    if !started || finished || c.error.is_some() || (c.closed_ns.is_none() && !c.hs_failed) {
        return None;
    }
    if let Some(a) = wire.and_then(|w| w.client_alert) {
        let code = match a {
            48 => "ERR_CERT_AUTHORITY_INVALID",
            45 => "ERR_CERT_DATE_INVALID",
            44 => "ERR_CERT_REVOKED",
            42 | 43 | 46 => "ERR_CERT_INVALID",
            40 | 70 | 71 => "ERR_SSL_VERSION_OR_CIPHER_MISMATCH",
            _ => "ERR_SSL_PROTOCOL_ERROR",
        };
        return Some(format!("{code} (the client sent TLS alert {} during the handshake)", alert_name(a)));
    }
    if let Some(a) = wire.and_then(|w| w.server_alert) {
        let code = if matches!(a, 40 | 70 | 71) { "ERR_SSL_VERSION_OR_CIPHER_MISMATCH" } else { "ERR_SSL_PROTOCOL_ERROR" };
        return Some(format!("{code} (the server sent TLS alert {} during the handshake)", alert_name(a)));
    }
    // No alert, no failed library call, and the client hung up: a connection the client
    // cancelled (a browser's speculative connect or a lost race: Firefox closes such sockets
    // mid-handshake), not a failure to report.
    if !c.hs_failed && c.client_closed_first != Some(false) {
        return None;
    }
    let who = match c.client_closed_first {
        Some(true) => "the client closed the connection",
        Some(false) => "the server closed the connection",
        None => "the library's handshake call failed",
    };
    Some(format!("ERR_SSL_PROTOCOL_ERROR (handshake not finished: {who}; no alert in the clear, so the reason is not visible)"))
}

/// RFC 8446 section 6 alert names, for the ones a failed handshake sends.
fn alert_name(a: u8) -> String {
    let name = match a {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        112 => "unrecognized_name",
        120 => "no_application_protocol",
        _ => return format!("{a}"),
    };
    format!("{name} ({a})")
}

/// The error of a response that did not complete. A body cut short by the connection's end is
/// named as Chromium names it: ERR_CONTENT_LENGTH_MISMATCH (announced length) or
/// ERR_INCOMPLETE_CHUNKED_ENCODING, with the bytes received and who closed first.
fn incomplete_response(x: &crate::http::HttpExchange, client_closed_first: Option<bool>) -> String {
    let reason = x.partial_reason.as_deref().unwrap_or("partial response");
    if reason != "connection closed before the response ended" {
        return x.partial_reason.clone().unwrap_or_else(|| "ERR_CONNECTION_CLOSED (partial response)".into());
    }
    let who = match client_closed_first {
        Some(true) => "the client closed the connection",
        Some(false) => "the server closed the connection",
        None => "the connection closed",
    };
    let length = header(&x.response_headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    let chunked = header(&x.response_headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    match length {
        Some(n) => format!("ERR_CONTENT_LENGTH_MISMATCH ({who} after {} of {n} body bytes)", x.response_body_bytes),
        None if chunked => format!("ERR_INCOMPLETE_CHUNKED_ENCODING ({who} after {} body bytes)", x.response_body_bytes),
        None => format!("ERR_CONNECTION_CLOSED ({who}: {reason})"),
    }
}
