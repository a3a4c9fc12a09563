//! Stitching: from a stream of kernel events to page loads.
//!
//! This module's docs are the description of the algorithm (the README points here; each file's own doc holds its rules). It is
//! deterministic: only the events and their kernel timestamps, in the order they arrive,
//! decide, so a recorded stream always gives the same page loads.
//!
//! [`Stitcher::on_event`] hands each event to the handler of its kind, then closes the page
//! loads that the event's time ended (`quiet` after their client's last activity, see
//! `page_loads.rs`) and forgets state past its bounds. [`Stitcher::tick`] only advances time
//! (the live timer); [`Stitcher::finish`] ends a stream: every connection's unfinished
//! exchanges are flushed (in connection order) and every open page load is closed.
//!
//! The pieces, in the order a record goes through them:
//!
//! 1. `process_tree.rs`: fork/exec build a process table; a page load belongs to a *client*,
//!    the root of a process tree running one program (`chromium`, not `Chrome_ChildIOT`).
//! 2. `connections.rs`: a connection starts at a `connect`; TCP state changes and the
//!    kernel's error reports join it by socket address and by address pair.
//! 3. `dns_index.rs`: queries and answers become lookups; a connection's lookup is the one
//!    of its client that gave the connected address.
//! 4. `tls_objects.rs`: TLS library calls join their connection through the socket fd; the
//!    handshake's start, end or failure. `wire.rs`: TLS records in the socket's own traffic,
//!    for clients whose library is not probed.
//! 5. `plaintext.rs`: which calls carry a connection's plaintext (library calls, or the
//!    socket itself for plain HTTP), fed in order to the HTTP/1.1 / HTTP/2 decoder
//!    (`crate::decode::http`); a receive that may be a peek is held back.
//! 6. `requests.rs`: each finished exchange becomes a request with HAR timings; the
//!    connection's set-up (dns, connect, ssl) goes to its first request.
//! 7. `page_loads.rs`: any network activity of a client opens a page load, which closes when
//!    the client has been quiet; failures without a request, and TLS exchanges seen only on
//!    the wire, become entries of it. `navigation.rs`: a browser navigation starts a page
//!    load of its own, a browser's background work is split off, redirects are hops of one
//!    page load.
//! 8. `failures.rs`: every failure ([`crate::failure::Failure`]): Chromium's net error code,
//!    what was seen, and the phase that failed.
//!
//! Beside the page loads: `progress.rs` reports the open ones to a live view as they open,
//! see activity and close ([`Stitcher::progress`]), leaving out the daemon's own traffic.
//!
//! QUIC connections come from UDP port 443 datagrams instead of steps 2-6: `quic.rs`
//! ([`Stitcher::on_quic_datagram`]) makes them connections of their page load, with their
//! handshake and one opaque HTTP/3 entry each.
//!
//! In-flight state is bounded ([`StitchConfig`]): connections and lookups are forgotten
//! oldest first beyond `max_connections` / `max_lookups` and once older than `max_idle`
//! (connections since their last event, lookups since their start), processes oldest first
//! beyond `max_processes`. Page loads are bounded too (`caps.rs`): one closes at a request
//! cap (1,000 requests, connections or lookups) or an age cap (5 minutes) even while its
//! client is busy, the oldest closes beyond 1,024 open ones or 64 MiB of captured plaintext
//! held, and an open page load holding a connection or lookup about to be forgotten for its
//! count bound closes first. Each is delivered marked as cut ([`model::PageCut`]), and the
//! client's next work opens a new page load; each bite is counted ([`caps::CapsHit`]). Caps
//! are checked after each event and tick, before page loads close by quiet.
mod arrivals;
pub mod caps;
mod connections;
mod dns_index;
mod failures;
pub mod model;
mod navigation;
mod page_loads;
mod plaintext;
mod process_tree;
pub mod progress;
mod quic;
mod requests;
#[cfg(test)]
pub(crate) mod sample;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_quic;
mod tls_objects;
pub mod wire;

use std::collections::BTreeMap;

use model::PageLoad;
pub use quic::QuicDatagram;

use crate::stream::events::{Direction, Event, EventBody};
use connections::Connections;
use dns_index::DnsIndex;
use page_loads::OpenPage;
use plaintext::DataCall;
use process_tree::ProcessTree;
use progress::OwnDestinations;
use tls_objects::TlsObjects;

#[derive(Debug, Clone)]
pub struct StitchConfig {
    /// A page load ends after the client has been network-idle this long.
    pub quiet_ns: u64,
    /// A page load whose latest request is a redirect not followed yet stays open this long
    /// after the redirect's response, quiet or not: under Xvfb on a loaded machine WebKitGTK
    /// paused 2.3 s between a 301 and its next lookup, falkon 1.5 s and Firefox 1.1 s, and the
    /// 500 ms quiet window stored the redirect and the page it led to as two page loads.
    pub redirect_hold_ns: u64,
    /// A lookup with no answer after this long is a failed one.
    pub dns_timeout_ns: u64,
    /// A connect with no outcome after this long no longer holds a page load open.
    pub connect_timeout_ns: u64,
    /// A request still waiting for its response holds its page load open while its
    /// connection has seen activity within this long (a slow server's think time).
    pub response_timeout_ns: u64,
    /// Bounds on in-flight state: oldest evicted first. The open page load holding an
    /// evicted connection or lookup is closed first, as cut (`caps.rs`).
    pub max_connections: usize,
    pub max_lookups: usize,
    pub max_processes: usize,
    /// A page load holding this many requests (failed entries included), connections or
    /// lookups closes, as cut (`caps.rs`).
    pub page_max_requests: usize,
    /// A page load open this long closes, as cut.
    pub page_max_age_ns: u64,
    /// Beyond this many open page loads, the oldest closes, as cut.
    pub max_open_pages: usize,
    /// Beyond this many bytes of plaintext (URLs, headers, bodies) held by the open page
    /// loads, the oldest holding any closes, as cut.
    pub max_captured_bytes: u64,
    /// Connections (and lookups) idle for this long are forgotten.
    pub max_idle_ns: u64,
    /// Body bytes kept per HTTP message (`--capture-bodies`); 0, the default, keeps none.
    pub body_limit: usize,
}

impl Default for StitchConfig {
    fn default() -> Self {
        Self {
            quiet_ns: 500_000_000,
            redirect_hold_ns: 5_000_000_000,
            dns_timeout_ns: 5_000_000_000,
            connect_timeout_ns: 3_000_000_000,
            response_timeout_ns: 30_000_000_000,
            max_connections: 16_384,
            max_lookups: 16_384,
            max_processes: 65_536,
            max_idle_ns: 600_000_000_000,
            page_max_requests: 1_000,
            page_max_age_ns: 300_000_000_000,
            max_open_pages: 1_024,
            max_captured_bytes: 64 * 1024 * 1024,
            body_limit: 0,
        }
    }
}

/// Counters for the health view (`/api/health`).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct StitchStats {
    pub page_loads: u64,
    pub requests: u64,
    /// Plaintext for sockets the stitcher never saw connect (server side, or opened before
    /// the daemon started).
    pub unattributed_data: u64,
    pub evicted_connections: u64,
    pub evicted_lookups: u64,
    /// How many times each cap bit (`caps.rs`).
    pub caps_hit: caps::CapsHit,
    /// What is held now: filled in by [`Stitcher::stats`].
    pub held: caps::Held,
}

/// Ids of connections and lookups. A request names its connection and lookup by these while
/// its page load is open; they become indices into the page load's own vectors when it
/// closes.
pub(crate) struct IdCounter(u64);

impl IdCounter {
    pub(crate) fn take(&mut self) -> u64 {
        let id = self.0;
        self.0 += 1;
        id
    }
}

pub struct Stitcher {
    cfg: StitchConfig,
    /// The latest time seen (events and ticks).
    now_ns: u64,
    /// One counter for connections and lookups.
    ids: IdCounter,
    procs: ProcessTree,
    conns: Connections,
    dns: DnsIndex,
    tls: TlsObjects,
    /// The open page load of each client (by the tgid of its root process).
    pages: BTreeMap<u32, OpenPage>,
    /// Page loads closed while handling an event (a new navigation), returned with the next batch.
    finished: Vec<PageLoad>,
    /// Clients whose page load closed after [`Stitcher::progress`] reported it, until its next call.
    closed: Vec<u32>,
    /// Destinations that do not make a page load in progress ([`Stitcher::ignore_in_progress`]).
    own: OwnDestinations,
    /// Which connection each UDP 443 flow is (`quic.rs`).
    quic_flows: quic::QuicFlows,
    /// Counters for the health view.
    pub stats: StitchStats,
    /// With `--capture-bodies`: the budget of unfinished exchanges' bodies (`caps.rs`).
    bodies: Option<std::sync::Arc<caps::InFlightBodies>>,
}

impl Stitcher {
    pub fn new(cfg: StitchConfig) -> Self {
        Self {
            now_ns: 0,
            ids: IdCounter(1),
            procs: ProcessTree::new(cfg.max_processes),
            conns: Connections::default(),
            dns: DnsIndex::default(),
            tls: TlsObjects::default(),
            pages: BTreeMap::new(),
            finished: Vec::new(),
            closed: Vec::new(),
            own: OwnDestinations::default(),
            quic_flows: quic::QuicFlows::default(),
            stats: StitchStats::default(),
            bodies: (cfg.body_limit > 0).then(|| std::sync::Arc::new(caps::InFlightBodies::new(cfg.max_captured_bytes))),
            cfg,
        }
    }

    /// Seed the process table from /proc (processes that started before the daemon).
    pub fn learn_process(&mut self, tgid: u32, ppid: Option<u32>, comm: String, exe: Option<String>) {
        self.procs.learn(tgid, ppid, comm, exe);
    }

    /// Feed one event. Returns the page loads that this event's time closed.
    pub fn on_event(&mut self, ev: &Event) -> Vec<PageLoad> {
        self.now_ns = self.now_ns.max(ev.ts_ns);
        self.handle(ev);
        self.apply_caps();
        let mut done = self.close_idle(self.now_ns);
        // After closing: a page load that just ended still had its connections.
        self.evict();
        // Page loads closed because they held what was just forgotten (`caps.rs`).
        done.append(&mut self.finished);
        done
    }

    /// Advance time without an event (live timer). Returns page loads that closed.
    pub fn tick(&mut self, now_ns: u64) -> Vec<PageLoad> {
        self.now_ns = self.now_ns.max(now_ns);
        self.apply_caps();
        let mut done = self.close_idle(self.now_ns);
        // Connections that never close are forgotten by age even when nothing else happens.
        self.evict();
        done.append(&mut self.finished);
        done
    }

    /// End of stream: close everything still open.
    pub fn finish(&mut self) -> Vec<PageLoad> {
        // In connection order, so that a replay gives the same page loads every time.
        for id in self.conns.sorted_ids() {
            self.drain_exchanges(id, true);
        }
        let clients: Vec<u32> = self.pages.keys().copied().collect();
        let mut out: Vec<PageLoad> = clients.into_iter().filter_map(|c| self.close_page(c)).collect();
        // Page loads closed on the way (a navigation that split the page) come first.
        let mut done = std::mem::take(&mut self.finished);
        done.append(&mut out);
        done
    }

    /// One handler per event kind; each lives beside the state it changes.
    fn handle(&mut self, ev: &Event) {
        match &ev.body {
            EventBody::Fork { child_pid } => self.procs.fork(ev.tgid, &ev.comm, *child_pid),
            EventBody::Exec { filename } => self.procs.exec(ev.tgid, &ev.comm, filename),
            EventBody::Exit => {}
            EventBody::Connect { fd, ret, error, dst, skaddr, tcp, duration_ns } => {
                self.on_connect(ev, *fd, *ret, *error, *dst, *skaddr, *tcp, *duration_ns)
            }
            EventBody::TcpState { skaddr, old, new, src, .. } => self.on_tcp_state(ev.ts_ns, *skaddr, *old, *new, *src),
            // A report without an error (the kernel reports again as the error is taken).
            EventBody::SockError { errno: 0, .. } => {}
            EventBody::SockError { error, dst, src, protocol, .. } => self.on_sock_error(ev.ts_ns, error, *protocol, *src, *dst),
            EventBody::Dns { direction, message: Ok(m), peer, .. } => match direction {
                Direction::Send => self.on_dns_query(ev, m, *peer),
                Direction::Recv => self.on_dns_answer(ev, m),
            },
            EventBody::Dns { .. } => {}
            EventBody::TlsFd { tls_obj, fd, .. } => self.tls.learn_fd(ev.tgid, *tls_obj, *fd),
            EventBody::TlsHandshake { lib, tls_obj, fd, phase, ret, .. } => {
                self.on_tls_handshake(ev, *lib, *tls_obj, *fd, *phase, *ret)
            }
            EventBody::TlsData { lib, func, tls_obj, fd, direction, len, duration_ns, data, .. } => {
                let call = DataCall { direction: *direction, len: *len, duration_ns: *duration_ns, data };
                self.on_tls_data(ev, *lib, *func, *tls_obj, *fd, call)
            }
            EventBody::SocketData { fd, direction, len, duration_ns, data, syscall, .. } => {
                let call = DataCall { direction: *direction, len: *len, duration_ns: *duration_ns, data };
                self.on_socket_data(ev, *fd, *syscall, call)
            }
            // A call's datagrams (several with GSO/GRO), each on its own.
            EventBody::QuicDatagram { fd, direction, len, segment, local, peer: Some(peer), data, .. } => {
                for (n, bytes) in crate::stream::events::quic_segments(*len, *segment, data) {
                    self.quic_datagram(&quic::QuicDatagram {
                        ts_ns: ev.ts_ns,
                        tgid: ev.tgid,
                        pid: ev.pid,
                        comm: &ev.comm,
                        fd: *fd,
                        local: *local,
                        peer: *peer,
                        direction: *direction,
                        len: n,
                        data: bytes,
                    });
                }
            }
            EventBody::QuicDatagram { .. } => {}
            // QUIC plaintext at the AEAD (issue 22): the HTTP/3 decoder takes it up when it is
            // joined to its QUIC connection; until then it is only counted (the stream's
            // `by_kind`, on /api/health).
            EventBody::QuicPlaintext { .. } => {}
        }
    }

    /// Forget the oldest state beyond the bounds, and what has been idle too long.
    fn evict(&mut self) {
        self.cut_holders_of_oldest();
        let (now, cfg) = (self.now_ns, &self.cfg);
        let (conns, conns_by_cap) = self.conns.evict(now, cfg.max_connections, cfg.max_idle_ns);
        let (lookups, lookups_by_cap) = self.dns.evict(now, cfg.max_lookups, cfg.max_idle_ns);
        self.tls.evict(cfg.max_connections * 4);
        self.stats.evicted_connections += conns;
        self.stats.evicted_lookups += lookups;
        self.count_evicted(conns_by_cap, lookups_by_cap);
    }

    /// The counters, with what is held now.
    pub fn stats(&self) -> StitchStats {
        StitchStats { held: self.held(), ..self.stats.clone() }
    }
}
