//! A connection's plaintext: which calls carry it, and the order it reaches the HTTP decoder.
//!
//! Plaintext comes from TLS library calls (joined through the socket fd, see
//! [`super::tls_objects`]) or from the socket itself, whose bytes the socket probes capture
//! on port 80 (plain HTTP) and, for its first calls, on port 443. A connection whose first
//! captured call is a send that starts with a TLS record carries records, not plaintext
//! ([`super::wire`]). Bytes for a socket no connect was seen for (server side, or opened
//! before the daemon started) are only counted (`unattributed_data`).
//!
//! NSPR's PR_Write/PR_Read are its generic I/O. On a plain socket (whose bytes the socket
//! probes already carry) they are not TLS, and through another PRFileDesc than the one the
//! connection's plaintext came through they are file I/O on a reused fd number: both are
//! ignored. NSPR's calls make a connection TLS only on port 443 (NSS's handshake calls, seen
//! first, say so too): plain HTTP on another port than 80 is seen only through them.
//!
//! Each connection's plaintext is fed in order to its HTTP/1.1 / HTTP/2 decoder
//! (`crate::decode::http`); each call fed (and each call carrying records) is activity of the
//! client's page load. A receive that may have been a peek (a recvfrom(2) or recvmsg(2) on
//! the socket: wget peeks at a response head with recv(2) and MSG_PEEK; NSPR's PR_Recv,
//! Firefox's liveness peek with PR_MSG_PEEK) is held back: when the next receive re-delivers
//! the same bytes, the held one was a peek and is dropped; otherwise it is fed before that
//! receive. A held socket receive is also fed at the next send; a held PR_Recv is not. Held receives are fed as real ones when the socket closes,
//! when another connection of the page load carries a navigation, when the page load
//! closes, and (on a plain socket) at an NSPR PR_Read, whose socket read was a real one.
use tracer_common::{DnsSyscall, TlsFunc, TlsLib};

use super::connections::ConnState;
use super::{Stitcher, wire};
use crate::stream::events::{Direction, Event};

/// One read or write call's bytes on a connection.
#[derive(Clone, Copy)]
pub(super) struct DataCall<'a> {
    pub(super) direction: Direction,
    /// Bytes the call moved (more than `data` when the capture was cut short).
    pub(super) len: u32,
    pub(super) duration_ns: u64,
    pub(super) data: &'a [u8],
}

/// A receive held back as a possible peek.
pub(super) struct HeldRecv {
    start_ns: u64,
    ts_ns: u64,
    len: u32,
    data: Vec<u8>,
    across_sends: bool,
}

/// Whether a receive may have been a peek (MSG_PEEK / PR_MSG_PEEK).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peek {
    No,
    /// Held until the next receive or send (recv(2): a real receive is the common case).
    UntilNext,
    /// Held across sends, until the next receive (NSPR's PR_Recv, a browser's liveness peek).
    AcrossSends,
}

impl ConnState {
    /// Bytes to the decoder, its captured bodies within the in-flight budget (`caps.rs`).
    fn feed_http(&mut self, dir: Direction, start_ns: u64, ts_ns: u64, len: u32, data: &[u8]) {
        let Some(bodies) = &self.bodies else {
            self.http.feed(dir, start_ns, ts_ns, len, data);
            return;
        };
        self.http.set_body_room(bodies.room());
        self.http.feed(dir, start_ns, ts_ns, len, data);
        let (captured, refused) = self.http.take_body_counts();
        bodies.took(captured, refused);
        self.body_bytes += captured;
    }

    /// The bodies of exchanges taken from the decoder are a request's now: their bytes go
    /// back to the in-flight budget.
    pub(super) fn bodies_taken(&mut self, n: u64) {
        let n = n.min(self.body_bytes);
        self.body_bytes -= n;
        if let Some(b) = &self.bodies {
            b.release(n);
        }
    }

    /// Feed a held-back receive: nothing re-delivered it, so it was a real one. Returns
    /// whether there was one.
    pub(super) fn feed_held(&mut self) -> bool {
        let Some(h) = self.held.take() else { return false };
        self.feed_http(Direction::Recv, h.start_ns, h.ts_ns, h.len, &h.data);
        true
    }

    /// Feed one call's bytes to the HTTP decoder, settling the held receive first and
    /// holding this one if it may be a peek.
    fn feed(&mut self, call: DataCall, start: u64, ts: u64, peek: Peek) {
        let keep_held = call.direction == Direction::Send && self.held.as_ref().is_some_and(|h| h.across_sends);
        if !keep_held && let Some(h) = self.held.take() {
            let n = h.data.len().min(call.data.len());
            let peeked = call.direction == Direction::Recv && n > 0 && h.data[..n] == call.data[..n];
            if !peeked {
                self.feed_http(Direction::Recv, h.start_ns, h.ts_ns, h.len, &h.data);
            }
        }
        if peek != Peek::No && call.direction == Direction::Recv {
            self.held = Some(HeldRecv {
                start_ns: start,
                ts_ns: ts,
                len: call.len,
                data: call.data.to_vec(),
                across_sends: peek == Peek::AcrossSends,
            });
        } else {
            self.feed_http(call.direction, start, ts, call.len, call.data);
        }
    }
}

impl Stitcher {
    pub(super) fn on_tls_data(&mut self, ev: &Event, lib: Option<TlsLib>, func: Option<TlsFunc>, obj: u64, fd: i32, call: DataCall) {
        if lib != Some(TlsLib::Nspr) {
            // (NSPR's PR_Read/PR_Write are generic I/O: not proof of TLS visibility.)
            self.tls.saw_library(ev.tgid, self.cfg.max_processes);
        }
        let fd = self.tls.fd_of(ev.tgid, obj, fd);
        let Some(id) = fd.and_then(|fd| self.conns.on_fd(ev.tgid, fd)) else {
            self.stats.unattributed_data += 1;
            return;
        };
        let c = self.conns.get_mut(id).expect("indexed connection");
        if lib == Some(TlsLib::Nspr) {
            // NSPR's PR_Write/PR_Read are its generic I/O: on a plain socket (whose
            // bytes the socket probes already carry) they are not TLS, and on a file
            // that reuses a closed socket's fd number they are no network traffic at
            // all (another PRFileDesc than the one the connection's data came through).
            if c.plain_data {
                // The socket read inside this PR_Read was a real one, not a peek.
                if func == Some(TlsFunc::PR_Read) && call.direction == Direction::Recv {
                    self.release_held(id);
                }
                return;
            }
            if c.data_obj.is_some_and(|o| o != obj) {
                self.stats.unattributed_data += 1;
                return;
            }
        }
        c.data_obj.get_or_insert(obj);
        // NSPR's calls say nothing of TLS by themselves: NSS's handshake (which sets
        // the library) or the HTTPS port does. Plain HTTP on another port than 80 is
        // seen only through them.
        let nspr_plain = lib == Some(TlsLib::Nspr) && c.dst.is_none_or(|d| d.port() != 443);
        if c.tls_lib.is_none() && !nspr_plain {
            c.tls_lib = lib;
        }
        if let Some(fd) = fd {
            self.tls.learn_fd(ev.tgid, obj, fd);
        }
        // NSPR's PR_Recv is how Firefox peeks (PR_MSG_PEEK) at a socket's next byte.
        let peek = if func == Some(TlsFunc::PR_Recv) { Peek::AcrossSends } else { Peek::No };
        self.feed_with(id, ev, call, peek);
    }

    pub(super) fn on_socket_data(&mut self, ev: &Event, fd: i32, syscall: Option<DnsSyscall>, call: DataCall) {
        let Some(id) = self.conns.on_fd(ev.tgid, fd) else {
            self.stats.unattributed_data += 1;
            return;
        };
        let c = self.conns.get_mut(id).expect("indexed connection");
        // TLS on the wire (the socket probes capture a TLS port's traffic): records,
        // not HTTP. A connection's first bytes decide.
        if c.wire.is_none() && !c.plain_data && call.direction == Direction::Send && wire::starts_tls(call.data) {
            c.wire = Some(wire::WireTls::default());
        }
        if let Some(w) = c.wire.as_mut() {
            let start = ev.ts_ns.saturating_sub(call.duration_ns);
            w.feed(call.direction, start, ev.ts_ns, call.len, call.data);
            c.last_ns = ev.ts_ns;
            self.activity(ev.tgid, ev.ts_ns, Some(id));
            return;
        }
        c.plain_data = true;
        // recv(2) may be a MSG_PEEK (wget peeks at a response head, then reads it).
        let peek = if matches!(syscall, Some(DnsSyscall::Recvfrom) | Some(DnsSyscall::Recvmsg)) {
            Peek::UntilNext
        } else {
            Peek::No
        };
        self.feed_with(id, ev, call, peek);
    }

    /// Feed one call's bytes to connection `id`'s HTTP decoder, then turn what it finished
    /// into requests.
    fn feed_with(&mut self, id: u64, ev: &Event, call: DataCall, peek: Peek) {
        self.activity(ev.tgid, ev.ts_ns, Some(id));
        let c = self.conns.get_mut(id).expect("indexed connection");
        let start = ev.ts_ns.saturating_sub(call.duration_ns);
        c.first_data_ns.get_or_insert(start);
        c.last_ns = ev.ts_ns;
        c.feed(call, start, ev.ts_ns, peek);
        self.drain_exchanges(id, false);
    }

    /// Feed connection `id`'s held-back receive as a real one.
    pub(super) fn release_held(&mut self, id: u64) {
        if self.conns.get_mut(id).is_some_and(|c| c.feed_held()) {
            self.drain_exchanges(id, false);
        }
    }
}
