//! The connection table: connects, TCP state changes and the kernel's error reports joined
//! into connections.
//!
//! A connection starts at a `connect` record (process, fd, destination, kernel socket
//! address) when a TCP state change was seen inside the call. A connect that failed without
//! one (ENETUNREACH before any SYN, or a UDP connect such as Chromium's IPv6 reachability
//! probe) is a connection too, already failed and without a socket address, unless its
//! destination is a DNS server's port 53. A new connect on a process's fd number ends the
//! connection that had it. At the connect the connection gets its lookup (see
//! [`super::dns_index`]) and joins its client's open page load (a failed connect is a
//! failure of that page load).
//!
//! TCP state changes join by socket address: CLOSE -> SYN_SENT (the SYN), SYN_SENT ->
//! ESTABLISHED (which gives the source address), and the close: the first of CLOSE,
//! FIN_WAIT1 and CLOSE_WAIT. Who closed an established connection first is ESTABLISHED ->
//! FIN_WAIT1 (the client) or -> CLOSE_WAIT (the server). Socket addresses are reused: a
//! CLOSE -> SYN_SENT on an address whose connection already had its SYN is a new socket. The
//! SYN and its outcome may arrive before their connect record (same call, another CPU):
//! they are held by socket address (at most 8 each, 4,096 sockets) and applied at the
//! connect. When a socket that got past SYN_SENT reaches CLOSE, its exchanges are flushed and
//! its fd number no longer leads to it (the number is reused for files).
//!
//! A failed connect takes its reason from the syscall's return (not EINPROGRESS), or from
//! the kernel's error report (inet_sk_error_report: ECONNREFUSED for a RST, ETIMEDOUT when
//! the SYN retries ran out). A report names a socket only by its addresses: it goes to the
//! newest connection to that destination from that source (or from a source not known yet)
//! if that one is still open. A socket the client closed in SYN_SENT with no report is a
//! client that gave up waiting ([`CLIENT_GAVE_UP_IN_SYN_SENT`]); a report that comes later
//! still names the reason. A report that finds no connection (a refused non-blocking
//! connect's RST, reported before its connect record) is held by destination: the connect
//! takes it when its held state changes closed it in SYN_SENT, if the report came after the
//! SYN.
//!
//! Connections are forgotten oldest first beyond `max_connections`, and `max_idle` after
//! their last event.
use std::collections::HashMap;
use std::net::SocketAddr;

use tracer_common::TlsLib;

use super::failures::{self, CLIENT_GAVE_UP_IN_SYN_SENT};
use super::model::{Connection, TlsSession};
use super::plaintext::HeldRecv;
use super::{Stitcher, arrivals::Arrivals, wire};
use crate::stream::events::{Event, TcpState};
use std::sync::Arc;

use super::caps::InFlightBodies;
use crate::decode::http::HttpConnection;

pub(super) struct ConnState {
    pub(super) id: u64,
    pub(super) tgid: u32,
    pub(super) pid: u32,
    pub(super) comm: String,
    pub(super) fd: i32,
    pub(super) skaddr: u64,
    pub(super) src: Option<SocketAddr>,
    pub(super) dst: Option<SocketAddr>,
    pub(super) connect_start_ns: u64,
    pub(super) syn_sent_ns: Option<u64>,
    pub(super) established_ns: Option<u64>,
    pub(super) closed_ns: Option<u64>,
    pub(super) error: Option<String>,
    pub(super) tls_lib: Option<TlsLib>,
    pub(super) hs_start_ns: Option<u64>,
    pub(super) hs_end_ns: Option<u64>,
    pub(super) hs_failed: bool,
    /// Who closed an established connection first: Some(true) the client (ESTABLISHED ->
    /// FIN_WAIT1), Some(false) the server (ESTABLISHED -> CLOSE_WAIT).
    pub(super) client_closed_first: Option<bool>,
    /// The page load closed while this open connection still owed a response, after
    /// `response_timeout` of silence: its unfinished exchanges were flushed then.
    pub(super) response_timed_out: bool,
    pub(super) first_data_ns: Option<u64>,
    /// The connection's lookup (see the dns_index module).
    pub(super) dns: Option<u64>,
    pub(super) http: HttpConnection,
    /// A receive that may have been a peek, not yet fed (see the plaintext module).
    pub(super) held: Option<HeldRecv>,
    /// Plaintext seen at the socket itself (port 80): library calls on it are not TLS.
    pub(super) plain_data: bool,
    /// The library object (SSL*, PRFileDesc*) the connection's plaintext came through.
    pub(super) data_obj: Option<u64>,
    /// TLS records seen in the socket's own traffic (kernel side), when the socket probes
    /// capture it: timing and SNI without the library's help.
    pub(super) wire: Option<wire::WireTls>,
    pub(super) exchanges: u32,
    /// Whether a request has been given the connection's set-up phases.
    pub(super) setup_attributed: bool,
    pub(super) last_ns: u64,
    /// A QUIC connection: its datagrams' tracker (see the quic module).
    pub(super) quic: Option<Box<super::quic::QuicConn>>,
    /// With `--capture-bodies`: the budget its decoder's unfinished bodies come out of, and
    /// the bytes it holds of it (given back as they become requests, and when it is dropped).
    pub(super) bodies: Option<Arc<InFlightBodies>>,
    pub(super) body_bytes: u64,
}

impl Drop for ConnState {
    fn drop(&mut self) {
        if let Some(b) = &self.bodies {
            b.release(self.body_bytes);
        }
    }
}

impl ConnState {
    /// A connection just seen to start at `start_ns` (a connect, or a QUIC connection's first
    /// datagram), with nothing known of it yet but who opened it and the lookup that gave
    /// its address; the callers set what their first event tells.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn opened(
        id: u64,
        tgid: u32,
        pid: u32,
        comm: String,
        fd: i32,
        start_ns: u64,
        dns: Option<u64>,
        body_limit: usize,
        bodies: Option<Arc<InFlightBodies>>,
    ) -> ConnState {
        ConnState {
            id,
            tgid,
            pid,
            comm,
            fd,
            skaddr: 0,
            src: None,
            dst: None,
            connect_start_ns: start_ns,
            syn_sent_ns: None,
            established_ns: None,
            closed_ns: None,
            error: None,
            tls_lib: None,
            hs_start_ns: None,
            hs_end_ns: None,
            hs_failed: false,
            client_closed_first: None,
            response_timed_out: false,
            first_data_ns: None,
            dns,
            http: HttpConnection::with_body_limit(body_limit),
            held: None,
            plain_data: false,
            data_obj: None,
            wire: None,
            exchanges: 0,
            setup_attributed: false,
            last_ns: start_ns,
            quic: None,
            bodies: bodies.filter(|_| body_limit > 0),
            body_bytes: 0,
        }
    }

    /// Whether the connection still holds its page load open at `now` as a connect in
    /// progress (bounded by `timeout`).
    pub(super) fn connecting(&self, now: u64, timeout: u64) -> bool {
        self.established_ns.is_none() && self.closed_ns.is_none() && now.saturating_sub(self.connect_start_ns) < timeout
    }

    /// Whether an exchange on this open connection still waits for (the rest of) its response.
    pub(super) fn owes_response(&self) -> bool {
        self.closed_ns.is_none() && self.http.open_exchanges() > 0
    }

    /// The connection as a page load shows it (its request count is filled in by the page load).
    pub(super) fn model(&self) -> Connection {
        let lib = self.tls_lib.filter(|l| *l != TlsLib::None);
        let wire = self.wire.as_ref();
        let quic = self.quic_model();
        let tls = if let Some((_, tls)) = &quic {
            Some(tls.clone())
        } else {
            (lib.is_some() || wire.is_some()).then(|| {
            // The library's own handshake calls first, then the records on the wire, then
            // (estimated) TCP connected .. first plaintext.
            let wire_hs = wire.and_then(|w| w.handshake());
            let start = self.hs_start_ns.or(wire_hs.map(|(s, _)| s));
            let end = self.hs_end_ns.or(wire_hs.and_then(|(_, e)| e));
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
                handshake_start_ns: start.or(self.established_ns),
                handshake_end_ns: end.or(self.first_data_ns),
                estimated: start.is_none() || end.is_none(),
                version: wire.and_then(|w| w.server_version).map(crate::decode::tls::version_name),
                cipher: wire.and_then(|w| w.cipher_suite).map(crate::decode::tls::cipher_suite_name),
                alpn: self.http.protocol().map(|p| match p {
                    crate::decode::http::Protocol::Http2 => "h2".to_string(),
                    crate::decode::http::Protocol::Http1 => "http/1.1".to_string(),
                    crate::decode::http::Protocol::Http3 => "h3".to_string(),
                }),
                sni: wire.and_then(|w| w.sni.clone()),
            }
            })
        };
        Connection {
            tgid: self.tgid,
            pid: self.pid,
            comm: self.comm.clone(),
            fd: self.fd,
            skaddr: self.skaddr,
            src: self.src.map(|a| a.to_string()),
            dst: self.dst.map(|a| a.to_string()),
            connect_start_ns: self.connect_start_ns,
            established_ns: self.established_ns,
            closed_ns: self.closed_ns,
            error: failures::connection_error(self),
            tls,
            requests: 0,
            quic: quic.map(|(q, _)| q),
        }
    }
}

/// (destination, source) of a TCP connection, each unknown until seen.
type AddrPair = (Option<SocketAddr>, Option<SocketAddr>);

/// A TCP state change seen before its connect record: (old, new, time, source).
type EarlyState = (TcpState, TcpState, u64, Option<SocketAddr>);

/// What a state change did that reaches beyond the connection.
pub(super) enum StateChange {
    Nothing,
    /// The connect failed (SYN_SENT -> CLOSE): a failure of the process's page load.
    ConnectFailed { tgid: u32 },
    /// The socket closed: its exchanges are over.
    Closed,
}

#[derive(Default)]
pub(super) struct Connections {
    pub(super) by_id: HashMap<u64, ConnState>,
    /// Connection ids, oldest first: the order they are forgotten in.
    order: Arrivals,
    pub(super) by_fd: HashMap<(u32, i32), u64>,
    pub(super) by_sk: HashMap<u64, u64>,
    /// Connections by (destination, source as known so far), for the error reports, which
    /// name a socket only by its addresses: a lookup costs the same with 16,384 connections
    /// kept as with ten (a scan of all of them was 82% of the daemon in a connect storm).
    pub(super) by_tuple: HashMap<AddrPair, Vec<u64>>,
    /// State changes seen before their connect record (same call, other CPU or order).
    early_states: HashMap<u64, Vec<EarlyState>>,
    /// TCP error reports that matched no connection yet, by destination (time, errno name):
    /// a refused non-blocking connect's RST is reported before its connect record arrives.
    early_errors: HashMap<SocketAddr, (u64, String)>,
}

impl Connections {
    pub(super) fn get(&self, id: u64) -> Option<&ConnState> {
        self.by_id.get(&id)
    }

    pub(super) fn get_mut(&mut self, id: u64) -> Option<&mut ConnState> {
        self.by_id.get_mut(&id)
    }

    /// The connection a process's fd number leads to.
    pub(super) fn on_fd(&self, tgid: u32, fd: i32) -> Option<u64> {
        self.by_fd.get(&(tgid, fd)).copied()
    }

    /// All connection ids, in the order they were made.
    pub(super) fn sorted_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.by_id.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// A QUIC connection: indexed by address pair (an ICMP error report names it so), not by
    /// fd (its socket's calls carry no TCP plaintext).
    pub(super) fn insert_quic(&mut self, c: ConnState) {
        let (id, dst) = (c.id, c.dst);
        self.by_id.insert(id, c);
        self.order.push(id);
        self.by_tuple.entry((dst, None)).or_default().push(id);
    }

    fn insert(&mut self, c: ConnState) {
        let (id, key, dst) = (c.id, (c.tgid, c.fd), c.dst);
        self.by_id.insert(id, c);
        self.order.push(id);
        self.by_tuple.entry((dst, None)).or_default().push(id);
        self.by_fd.insert(key, id);
    }

    /// Index a new connection by its socket address. Returns the state changes seen before it.
    fn index_socket(&mut self, skaddr: u64, id: u64) -> Vec<EarlyState> {
        self.by_sk.insert(skaddr, id);
        self.early_states.remove(&skaddr).unwrap_or_default()
    }

    /// The kernel's reason for a connect that failed before its record arrived.
    fn take_early_error(&mut self, id: u64, dst: Option<SocketAddr>) {
        if let Some(c) = self.by_id.get_mut(&id)
            && let Some((ts, err)) = dst.and_then(|d| self.early_errors.get(&d)).cloned()
            && c.error.as_deref() == Some(CLIENT_GAVE_UP_IN_SYN_SENT)
            && ts >= c.syn_sent_ns.unwrap_or(c.connect_start_ns)
        {
            c.error = Some(err);
            if let Some(d) = dst {
                self.early_errors.remove(&d);
            }
        }
    }

    /// The connection a state change of socket `skaddr` applies to; one seen before its
    /// connect record is held for it.
    fn on_socket(&mut self, skaddr: u64, old: TcpState, new: TcpState, ts: u64, src: Option<SocketAddr>) -> Option<u64> {
        // Socket addresses are reused: a fresh CLOSE -> SYN_SENT is a new socket,
        // whatever connection had this address before.
        if old == TcpState::Close
            && new == TcpState::SynSent
            && let Some(prev) = self.by_sk.get(&skaddr).copied()
            && self.by_id.get(&prev).is_none_or(|c| c.syn_sent_ns.is_some())
        {
            self.by_sk.remove(&skaddr);
        }
        let id = self.by_sk.get(&skaddr).copied();
        if id.is_none() && (old == TcpState::Close && new == TcpState::SynSent || old == TcpState::SynSent) {
            let v = self.early_states.entry(skaddr).or_default();
            if v.len() < 8 {
                v.push((old, new, ts, src));
            }
            if self.early_states.len() > 4096 {
                // Bounded: states whose connect never came are dropped.
                let k = *self.early_states.keys().next().expect("non-empty");
                self.early_states.remove(&k);
            }
        }
        id
    }

    fn apply_state(&mut self, id: u64, old: TcpState, new: TcpState, ts: u64, src: Option<SocketAddr>) -> StateChange {
        let Some(c) = self.by_id.get_mut(&id) else { return StateChange::Nothing };
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
                return StateChange::ConnectFailed { tgid: c.tgid };
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
                    return StateChange::Closed;
                }
            }
            _ => {}
        }
        StateChange::Nothing
    }

    /// The kernel's error report for a TCP socket, known only by its addresses.
    fn tcp_error(&mut self, ts: u64, error: &str, src: Option<SocketAddr>, dst: Option<SocketAddr>) {
        let conn = self.conn_by_tuple(src, dst).filter(|id| {
            // A connection closed before this report's socket was connected is
            // another one: this report's connect record is still to come.
            self.by_id.get(id).is_some_and(|c| c.closed_ns.is_none() || c.error.as_deref() == Some(CLIENT_GAVE_UP_IN_SYN_SENT))
        });
        if let Some(id) = conn {
            if let Some(c) = self.by_id.get_mut(&id) {
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
            self.early_errors.insert(dst, (ts, error.to_string()));
        }
    }

    /// The newest TCP connection to `dst` from `src`, or from a source not known yet. QUIC
    /// connections are left out: their error reports are UDP's (`Stitcher::on_quic_error`), and
    /// Firefox's QUIC sockets are unconnected (no source known), so the newest connection to a
    /// server "from a source not known yet" was often its QUIC one, which took the EPIPE of the
    /// client's TCP connection to the same server (seen in the lab as a QUIC attempt's error
    /// `EUNKNOWN`).
    fn conn_by_tuple(&self, src: Option<SocketAddr>, dst: Option<SocketAddr>) -> Option<u64> {
        let unknown_src = self.by_tuple.get(&(dst, None)).into_iter().flatten();
        let known_src = src.and_then(|_| self.by_tuple.get(&(dst, src))).into_iter().flatten();
        unknown_src
            .chain(known_src)
            .filter_map(|id| self.by_id.get(id))
            .filter(|c| c.quic.is_none())
            .max_by_key(|c| c.connect_start_ns)
            .map(|c| c.id)
    }

    fn unindex_tuple(&mut self, id: u64, dst: Option<SocketAddr>, src: Option<SocketAddr>) {
        if let std::collections::hash_map::Entry::Occupied(mut e) = self.by_tuple.entry((dst, src)) {
            e.get_mut().retain(|x| *x != id);
            if e.get().is_empty() {
                e.remove();
            }
        }
    }

    /// The ids that [`Self::evict`] would forget for the count bound `max`, oldest first.
    pub(super) fn oldest_beyond(&self, max: usize) -> Vec<u64> {
        self.order.beyond(&self.by_id, max)
    }

    /// How many connections are held.
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Forgets the oldest beyond `max` and those idle more than `max_idle` before `now`. Returns how
    /// many were forgotten, and how many of them for the count bound (a cap that bit).
    pub(super) fn evict(&mut self, now: u64, max: usize, max_idle: u64) -> (u64, u64) {
        let gone = self.order.evict(&mut self.by_id, now, max, max_idle, |c| c.last_ns);
        for (id, c) in &gone.items {
            self.unindex_tuple(*id, c.dst, c.src);
            if self.by_fd.get(&(c.tgid, c.fd)) == Some(id) {
                self.by_fd.remove(&(c.tgid, c.fd));
            }
            if self.by_sk.get(&c.skaddr) == Some(id) {
                self.by_sk.remove(&c.skaddr);
            }
        }
        (gone.items.len() as u64, gone.by_cap)
    }
}

impl Stitcher {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_connect(
        &mut self,
        ev: &Event,
        fd: i32,
        ret: i32,
        error: Option<&str>,
        dst: Option<SocketAddr>,
        skaddr: u64,
        tcp: bool,
        duration_ns: u64,
    ) {
        const EINPROGRESS: i32 = -115;
        if !tcp && ret != 0 && ret != EINPROGRESS && dst.is_some_and(|d| d.port() != 53) {
            // A connect that failed before any SYN (e.g. ENETUNREACH) still counts.
            self.new_connection(ev, fd, dst, 0, duration_ns, error.map(str::to_string));
        } else if tcp {
            let err = if ret < 0 && ret != EINPROGRESS { error.map(str::to_string) } else { None };
            self.new_connection(ev, fd, dst, skaddr, duration_ns, err);
        }
    }

    fn new_connection(&mut self, ev: &Event, fd: i32, dst: Option<SocketAddr>, skaddr: u64, duration_ns: u64, error: Option<String>) {
        // The same fd reused: the old connection is over.
        if let Some(old) = self.conns.by_fd.remove(&(ev.tgid, fd)) {
            self.drain_exchanges(old, true);
        }
        let id = self.ids.take();
        let start = ev.ts_ns.saturating_sub(duration_ns);
        let dns = dst.and_then(|d| self.dns.lookup_for(&self.procs, ev.tgid, d.ip(), start));
        let failed = error.is_some();
        let mut conn = ConnState::opened(id, ev.tgid, ev.pid, ev.comm.clone(), fd, start, dns, self.cfg.body_limit, self.bodies.clone());
        conn.skaddr = skaddr;
        conn.dst = dst;
        conn.closed_ns = failed.then_some(ev.ts_ns);
        conn.error = error;
        conn.last_ns = ev.ts_ns;
        self.conns.insert(conn);
        if skaddr != 0 {
            for (old, new, ts, src) in self.conns.index_socket(skaddr, id) {
                self.apply_state(id, old, new, ts, src);
            }
            self.conns.take_early_error(id, dst);
        }
        self.activity(ev.tgid, start, Some(id));
        self.attach_new_connection(ev.tgid, id, dns);
        if self.conns.by_id[&id].error.is_some() {
            self.record_failure(ev.tgid, ev.ts_ns, Some(id), None);
        }
        self.evict();
    }

    pub(super) fn on_tcp_state(&mut self, ts: u64, skaddr: u64, old: TcpState, new: TcpState, src: Option<SocketAddr>) {
        if let Some(id) = self.conns.on_socket(skaddr, old, new, ts, src) {
            self.apply_state(id, old, new, ts, src);
        }
    }

    fn apply_state(&mut self, id: u64, old: TcpState, new: TcpState, ts: u64, src: Option<SocketAddr>) {
        match self.conns.apply_state(id, old, new, ts, src) {
            StateChange::Nothing => {}
            StateChange::ConnectFailed { tgid } => self.record_failure(tgid, ts, Some(id), None),
            StateChange::Closed => self.drain_exchanges(id, true),
        }
    }

    /// The kernel's error report on a socket (inet_sk_error_report): a TCP connect's reason,
    /// or an ICMP error from a DNS server.
    pub(super) fn on_sock_error(&mut self, ts: u64, error: &str, protocol: u16, src: Option<SocketAddr>, dst: Option<SocketAddr>) {
        const IPPROTO_TCP: u16 = 6;
        if protocol == IPPROTO_TCP {
            self.conns.tcp_error(ts, error, src, dst);
        } else if dst.is_some_and(|d| d.port() == 53) {
            self.dns_server_unreachable(dst, error, ts);
        } else {
            self.on_quic_error(ts, error, src, dst);
        }
    }
}
