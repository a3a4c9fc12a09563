//! QUIC connections from their UDP datagrams: the stitcher's entry point for what the kernel
//! side captures of UDP port 443 ([`Stitcher::on_quic_datagram`], [`QuicDatagram`]).
//!
//! A QUIC connection is a connection of its page load like a TCP one:
//! - it starts with the client's first Initial packet on a flow (process, socket, server
//!   address) the stitcher has no connection for; its lookup is the one that gave the
//!   server's address (the HTTPS record's `alpn` is in that lookup's answers);
//! - its datagrams, both ways and in order, go to a [`QuicTracker`] (`crate::decode::quic`):
//!   version, SNI, ALPN offered, cipher, 0-RTT, Retry, Version Negotiation;
//! - the handshake is the client's first Initial to its first 1-RTT packet. HAR: `connect` and
//!   `ssl` are both that handshake (as Chrome writes them for QUIC), `tcp` is -1; the
//!   connection's `tls` is the TLS 1.3 session inside it (library `quic`), `established_ns`
//!   its end;
//! - until part 2 names the HTTP/3 requests inside, a connection that got through its
//!   handshake is one opaque entry ([`Stitcher::quic_request`]): protocol `HTTP/3` (HAR
//!   `httpVersion` `h3`), `send` the client's first 1-RTT datagrams, `wait` until the server's
//!   next one, `receive` to the server's last, and the bytes each way after the handshake;
//! - a QUIC attempt that fails is a failed entry of its own, beside the TCP connection the
//!   client fell back to (`QuicSession::fell_back_to`), its failure ([`quic_failure`]) in the
//!   connect phase: ICMP port unreachable (the kernel's error report on the client's
//!   connected socket) is `ERR_QUIC_PROTOCOL_ERROR`, a CONNECTION_CLOSE from the server in
//!   the clear or no answer at all `ERR_QUIC_HANDSHAKE_FAILED`, with what was seen; the
//!   connection's own `error` is the code. An attempt that a client abandons
//!   because TCP won the race looks like one that got no answer in time: the text says so
//!   when a TCP connection to the server came after it.
//!
//! Bounded like the rest: the flows index holds at most `max_connections` entries (oldest
//! forgotten first), and each tracker keeps a bounded state (`crate::decode::quic`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use super::Stitcher;
use super::connections::ConnState;
use super::requests::OpaqueOrigin;
use super::model::{Connection, PageLoad, QuicSession, Request, Timings, TlsSession, ms};
use crate::clock::round_stored_ms;
use crate::decode::Direction;
use crate::decode::quic::{Header, LongType, QuicTracker, Sender, parse_packet, version_name};
use crate::failure::{Code, Failure, Phase};

/// One UDP datagram of a traced process to or from port 443, as the kernel side reports it.
#[derive(Debug, Clone, Copy)]
pub struct QuicDatagram<'a> {
    /// Kernel time of the send or receive (CLOCK_MONOTONIC ns).
    pub ts_ns: u64,
    pub tgid: u32,
    pub pid: u32,
    pub comm: &'a str,
    /// The socket's fd in the process (-1 when not known).
    pub fd: i32,
    /// The client's address, when known.
    pub local: Option<SocketAddr>,
    /// The server's address.
    pub peer: SocketAddr,
    /// `Send`: from the client to the server.
    pub direction: Direction,
    /// The datagram's length.
    pub len: u32,
    /// Its first bytes, as captured (a prefix of `len`).
    pub data: &'a [u8],
}

/// A flow: process, socket, server.
type FlowKey = (u32, i32, SocketAddr);

/// The QUIC side of a connection.
#[derive(Debug, Default)]
pub(super) struct QuicConn {
    tracker: QuicTracker,
    /// The kernel's error report for the flow (ECONNREFUSED after ICMP port unreachable).
    icmp_error: Option<(u64, String)>,
    /// The server's first datagram after the client's first 1-RTT one: the opaque exchange's
    /// answer starts there (`wait` ends).
    answer_ns: Option<u64>,
}

/// Which connection each flow is.
#[derive(Default)]
pub(super) struct QuicFlows {
    by_flow: HashMap<FlowKey, u64>,
    order: VecDeque<FlowKey>,
    /// Error reports on UDP 443 sockets that came before the datagram whose ICMP error they
    /// are ([`EarlyError`]), newest last.
    early_errors: VecDeque<EarlyError>,
}

/// An error report (ICMP port unreachable) for a QUIC connection whose first datagram's record
/// has not come yet. On loopback, as in the lab, the kernel answers inside the `sendto` that
/// sent the datagram, so the report is submitted before the record of that send (measured with
/// Chromium 156 against the lab's `refuse` mode: the report 7 µs before the Initial's record).
struct EarlyError {
    ts_ns: u64,
    /// The client's socket (connected: UDP errors are reported only on connected sockets).
    local: SocketAddr,
    server: SocketAddr,
    error: String,
}

/// Most early error reports held; older ones go first.
const MAX_EARLY_ERRORS: usize = 64;
/// How long before a connection's first datagram its error report may be: the report comes
/// microseconds before the record (above), and the client's port tells connections apart.
const EARLY_ERROR_WINDOW_NS: u64 = 100_000_000;

impl QuicFlows {
    fn keep_early_error(&mut self, e: EarlyError) {
        if self.early_errors.len() >= MAX_EARLY_ERRORS {
            self.early_errors.pop_front();
        }
        self.early_errors.push_back(e);
    }

    /// The report kept for the connection whose first datagram went from `local` to `server`
    /// at `ts_ns`.
    fn take_early_error(&mut self, local: Option<SocketAddr>, server: SocketAddr, ts_ns: u64) -> Option<(u64, String)> {
        let local = local?;
        let i = self.early_errors.iter().rposition(|e| {
            e.local == local && e.server == server && e.ts_ns <= ts_ns && ts_ns - e.ts_ns <= EARLY_ERROR_WINDOW_NS
        })?;
        self.early_errors.remove(i).map(|e| (e.ts_ns, e.error))
    }

    fn insert(&mut self, key: FlowKey, id: u64, max: usize) {
        if self.by_flow.insert(key, id).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > max.max(1) {
            if let Some(old) = self.order.pop_front() {
                self.by_flow.remove(&old);
            }
        }
    }
}

/// Whether a datagram from the client starts a QUIC connection: a long-header Initial (or a
/// long header of a version only a Version Negotiation will answer).
fn starts_connection(data: &[u8]) -> bool {
    matches!(
        parse_packet(data, None).map(|(h, _)| h),
        Ok(Header::Long { ty: LongType::Initial, .. } | Header::UnknownVersion { .. })
    )
}

impl Stitcher {
    /// Entry point: one datagram of UDP port 443. Returns the page loads its time closed (as
    /// [`Stitcher::on_event`] does).
    pub fn on_quic_datagram(&mut self, d: &QuicDatagram<'_>) -> Vec<PageLoad> {
        self.now_ns = self.now_ns.max(d.ts_ns);
        self.quic_datagram(d);
        self.apply_caps();
        let mut done = self.close_idle(self.now_ns);
        self.evict();
        done.append(&mut self.finished);
        done
    }

    /// The handler behind [`Self::on_quic_datagram`] (for `handle` once datagrams are events).
    pub(super) fn quic_datagram(&mut self, d: &QuicDatagram<'_>) {
        let key = (d.tgid, d.fd, d.peer);
        let data = &d.data[..d.data.len().min(d.len as usize)];
        let mut id = self.quic_flows.by_flow.get(&key).copied().filter(|id| self.conns.get(*id).is_some());
        let mut new_connection = false;
        if d.direction == Direction::Send && starts_connection(data) {
            // A new connection on the flow: an Initial to another original destination ID
            // after the old connection's handshake.
            let new_dcid = match parse_packet(data, None) {
                Ok((Header::Long { dcid, .. }, _)) => Some(dcid),
                _ => None,
            };
            let old = id.and_then(|i| self.conns.get(i)).and_then(|c| c.quic.as_ref()).map(|q| q.tracker.summary());
            let same = old.is_some_and(|s| {
                !s.handshake_done()
                    || new_dcid.is_none()
                    || s.original_dcid == new_dcid
                    || s.retry.as_ref().map(|r| &r.new_dcid) == new_dcid.as_ref()
            });
            if !same {
                id = Some(self.new_quic_connection(d));
                self.quic_flows.insert(key, id.expect("just made"), self.cfg.max_connections);
                new_connection = true;
            }
        }
        let Some(id) = id else {
            // Not a connection seen from its start (the daemon began later): nothing to say.
            self.stats.unattributed_data += 1;
            return;
        };
        let c = self.conns.get_mut(id).expect("connection");
        c.last_ns = c.last_ns.max(d.ts_ns);
        if c.src.is_none() {
            c.src = d.local;
        }
        let q = c.quic.as_mut().expect("a QUIC connection");
        if d.direction == Direction::Recv && q.answer_ns.is_none() && q.tracker.summary().first_1rtt_ns.is_some_and(|t| t <= d.ts_ns) {
            q.answer_ns = Some(d.ts_ns);
        }
        q.tracker.feed_partial(d.ts_ns, d.direction, data, d.len as usize);
        let s = q.tracker.summary();
        if c.established_ns.is_none() {
            c.established_ns = s.first_1rtt_ns;
        }
        c.first_data_ns = c.first_data_ns.or(s.first_1rtt_ns);
        let tgid = c.tgid;
        self.activity(tgid, d.ts_ns, Some(id));
        if new_connection && let Some((ts, error)) = self.quic_flows.take_early_error(d.local, d.peer, d.ts_ns) {
            self.fail_quic(id, ts, &error);
        }
    }

    fn new_quic_connection(&mut self, d: &QuicDatagram<'_>) -> u64 {
        let id = self.ids.take();
        let dns = self.dns.lookup_for(&self.procs, d.tgid, d.peer.ip(), d.ts_ns);
        let mut conn = ConnState::opened(id, d.tgid, d.pid, d.comm.to_owned(), d.fd, d.ts_ns, dns, 0, None);
        conn.src = d.local;
        conn.dst = Some(d.peer);
        conn.setup_attributed = true;
        conn.quic = Some(Box::default());
        self.conns.insert_quic(conn);
        self.activity(d.tgid, d.ts_ns, Some(id));
        self.attach_new_connection(d.tgid, id, dns);
        self.evict();
        id
    }

    /// The kernel's error report on a UDP socket to port 443 (ICMP port unreachable on the
    /// client's connected socket, from `src`): the QUIC attempt to that server failed. Returns
    /// whether a QUIC connection took it; a report for a connection not seen yet is kept for
    /// its first datagram ([`EarlyError`]).
    pub(super) fn on_quic_error(&mut self, ts: u64, error: &str, src: Option<SocketAddr>, dst: Option<SocketAddr>) -> bool {
        let Some(dst) = dst.filter(|d| d.port() == 443) else { return false };
        let newest = self
            .quic_flows
            .by_flow
            .iter()
            .filter(|((_, _, peer), _)| *peer == dst)
            .filter_map(|(_, id)| self.conns.get(*id))
            .filter(|c| c.quic.as_ref().is_some_and(|q| !q.tracker.summary().handshake_done()))
            // The client's port, where both are known, tells its attempts apart.
            .filter(|c| src.is_none() || c.src.is_none_or(|s| s.ip().is_unspecified() || Some(s) == src))
            .max_by_key(|c| c.connect_start_ns)
            .map(|c| c.id);
        let Some(id) = newest else {
            if let Some(local) = src {
                self.quic_flows.keep_early_error(EarlyError { ts_ns: ts, local, server: dst, error: error.to_string() });
            }
            return false;
        };
        self.fail_quic(id, ts, error);
        true
    }

    /// QUIC connection `id` failed with the kernel's `error` at `ts` (the first report only).
    fn fail_quic(&mut self, id: u64, ts: u64, error: &str) {
        let Some(c) = self.conns.get_mut(id) else { return };
        if let Some(q) = c.quic.as_mut()
            && q.icmp_error.is_none()
        {
            q.icmp_error = Some((ts, error.to_string()));
            c.error = Some(quic_error(c).unwrap_or_default());
            // An early report (before the first datagram's record) closes it at its start.
            let at = ts.max(c.connect_start_ns);
            c.closed_ns = Some(at);
            let tgid = c.tgid;
            self.record_failure(tgid, at, Some(id), None);
        }
    }

    /// At a page load's close: QUIC attempts that never finished their handshake are failed
    /// entries (with their reason), like a TLS handshake that never finished.
    pub(super) fn quic_silent_failures(&mut self, conns: &[u64], failures: &mut Vec<(u64, Option<u64>, Option<u64>)>) {
        for id in conns {
            let Some(c) = self.conns.get_mut(*id) else { continue };
            if c.quic.as_ref().is_none_or(|q| q.tracker.summary().handshake_done()) {
                continue;
            }
            if c.error.is_none() {
                c.error = quic_error(c);
            }
            if !failures.iter().any(|(_, f, _)| *f == Some(*id)) {
                failures.push((c.connect_start_ns, Some(*id), None));
            }
        }
    }

    /// The opaque entry of a QUIC connection that got through its handshake (part 2 will
    /// name the HTTP/3 requests inside it).
    pub(super) fn quic_request(&self, c: &ConnState) -> Option<Request> {
        let q = c.quic.as_ref()?;
        let s = q.tracker.summary();
        let hs_end = s.first_1rtt_ns?;
        let hs_start = s.first_initial_ns.unwrap_or(c.connect_start_ns);
        let OpaqueOrigin { host, url, timings: mut t, started_ns } = self.opaque_origin(c, s.sni.clone(), hs_start);
        t.ssl = ms(hs_end.saturating_sub(hs_start));
        t.connect = t.ssl;
        // After the handshake: the client's first 1-RTT datagram starts the exchange, the
        // server's first datagram after it is the answer's start, its last one the end.
        let send_end = s.first_1rtt_ns.unwrap_or(hs_end);
        t.send = 0.0;
        let recv_end = s.received.last_ns.filter(|l| *l > send_end);
        let recv_start = recv_end.map(|end| q.answer_ns.unwrap_or(end).clamp(send_end, end));
        if let (Some(rs), Some(re)) = (recv_start, recv_end) {
            t.wait = ms(rs.saturating_sub(send_end));
            t.receive = ms(re.saturating_sub(rs));
        }
        let ended_ns = recv_end.unwrap_or(send_end).max(started_ns);
        Some(Request {
            connection: Some(c.id as usize),
            dns: c.dns.map(|l| l as usize),
            tgid: c.tgid,
            pid: c.pid,
            comm: c.comm.clone(),
            url,
            host,
            protocol: Some("HTTP/3".into()),
            request_bytes: s.sent.bytes,
            response_bytes: s.received.bytes,
            started_ns,
            ended_ns,
            timings: Timings { connect: round_stored_ms(t.connect), ..t },
            new_connection: true,
            complete: recv_end.is_some(),
            // Nothing of the HTTP/3 exchange is known yet.
            ..Request::default()
        })
    }
}

impl ConnState {
    /// The QUIC session of a QUIC connection, and its TLS session.
    pub(super) fn quic_model(&self) -> Option<(QuicSession, TlsSession)> {
        let s = self.quic.as_ref()?.tracker.summary();
        let session = QuicSession {
            version: s.version.map(version_name),
            handshake_start_ns: s.first_initial_ns,
            handshake_end_ns: s.first_1rtt_ns,
            original_dcid: s.original_dcid.as_ref().map(|d| d.to_string()),
            alpn_offered: s.alpn.clone(),
            zero_rtt: s.zero_rtt(),
            retry: s.retry.is_some(),
            version_negotiation: s.version_negotiation.iter().map(|v| version_name(*v)).collect(),
            datagrams_sent: s.sent.datagrams,
            datagrams_received: s.received.datagrams,
            bytes_sent: s.sent.bytes,
            bytes_received: s.received.bytes,
            fell_back_to: None,
        };
        let tls = TlsSession {
            library: "quic".into(),
            handshake_start_ns: s.first_initial_ns,
            handshake_end_ns: s.first_1rtt_ns,
            estimated: false,
            version: s.tls_version.clone(),
            cipher: s.cipher_suite.clone(),
            // The server's choice is encrypted: with one protocol offered it can only be that.
            alpn: (s.alpn.len() == 1).then(|| s.alpn[0].clone()),
            sni: s.sni.clone(),
        };
        Some((session, tls))
    }
}

/// Why a QUIC connection did not get through its handshake, in Chromium's words: always in
/// the connect phase (HAR's `connect` holds the QUIC handshake). `fell_back_to` is the page
/// load's TCP connection the client made after it ([`link_fallbacks`]).
pub(super) fn quic_failure(c: &ConnState, fell_back_to: Option<usize>) -> Option<Failure> {
    let q = c.quic.as_ref()?;
    let s = q.tracker.summary();
    if s.handshake_done() {
        return None;
    }
    let dst = c.dst.map(|d| d.to_string()).unwrap_or_default();
    let waited = s.sent.last_ns.zip(s.first_initial_ns).map(|(l, f)| ms(l.saturating_sub(f))).unwrap_or(0.0);
    let (code, detail) = if let Some((_, err)) = &q.icmp_error {
        (Code::QuicProtocolError, format!("ICMP port unreachable from {dst}: {err}"))
    } else if let Some(close) = &s.close {
        let what = match close.tls_alert() {
            Some(a) => format!("TLS alert {a}"),
            None => format!("error 0x{:x}", close.code),
        };
        let by = match close.by {
            Sender::Server => "the server",
            Sender::Client => "the client",
        };
        let closed = format!("{by} closed the connection: {what} {}", close.reason).trim_end().to_string();
        // A client that gives up on a silent server says so in its close (Chromium at its exit:
        // "error 0x0 70:net error"); the silence is the reason.
        let closed = match (&close.by, s.received.datagrams) {
            (Sender::Client, 0) => {
                format!("no answer from {dst} to {} datagram(s) in {waited} ms, then {closed}", s.sent.datagrams)
            }
            _ => closed,
        };
        (Code::QuicHandshakeFailed, closed)
    } else if !s.version_negotiation.is_empty() && s.server_hello_ns.is_none() {
        let offered: Vec<String> = s.version_negotiation.iter().map(|v| version_name(*v)).collect();
        (Code::QuicProtocolError, format!("version negotiation: {dst} offers {}", offered.join(", ")))
    } else {
        let detail = match s.received.datagrams {
            0 => format!("no answer from {dst} to {} datagram(s) in {waited} ms", s.sent.datagrams),
            n => format!("the handshake with {dst} did not finish: {n} datagram(s) received"),
        };
        (Code::QuicHandshakeFailed, detail)
    };
    let fallback = fell_back_to.map(|i| format!("; the client fell back to TCP, connection {i}")).unwrap_or_default();
    Some(Failure::new(Phase::Connect, code, format!("{detail}{fallback}")))
}

/// A failed QUIC connection's `error` (`connections.error`): the code of its failure, as for a
/// failed TLS handshake; the entry of the attempt has the whole failure.
fn quic_error(c: &ConnState) -> Option<String> {
    quic_failure(c, None).map(|f| f.code.to_string())
}

/// After a page load's connections are in their final order: each failed QUIC attempt names
/// the TCP connection to the same server that the client made after it (its fall back).
pub(super) fn link_fallbacks(connections: &mut [Connection]) {
    let tcp: Vec<(usize, String, u64)> = connections
        .iter()
        .enumerate()
        .filter(|(_, c)| c.quic.is_none())
        .filter_map(|(i, c)| Some((i, host_of(c.dst.as_deref()?)?, c.connect_start_ns)))
        .collect();
    for c in connections.iter_mut() {
        let Some(q) = c.quic.as_mut() else { continue };
        if q.handshake_end_ns.is_some() {
            continue;
        }
        let Some(host) = c.dst.as_deref().and_then(host_of) else { continue };
        q.fell_back_to = tcp.iter().filter(|(_, h, start)| *h == host && *start >= c.connect_start_ns).map(|(i, _, _)| *i).next();
    }
}

fn host_of(addr: &str) -> Option<String> {
    addr.parse::<SocketAddr>().ok().map(|a| a.ip().to_string())
}
