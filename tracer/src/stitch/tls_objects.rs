//! TLS library objects joined to their connections, and the handshake's timing.
//!
//! A TLS library call names a library object (SSL*, a GnuTLS session, PRFileDesc*). Handshake
//! entry/return and plaintext calls join their connection through the socket fd, per
//! process: the fd of the call's own syscalls when the probe saw them, else the object's fd
//! learned from SSL_set_fd or an earlier call. A handshake entry seen before its object's fd
//! is known (the fd is learned inside the first call) is kept, and gives the handshake's
//! start once the fd is known.
//!
//! The handshake starts at the first entry and ends at the first return that says done (1
//! for OpenSSL, BoringSSL and rustls, 0 for the others). A return that is neither done nor
//! "would block", before it ended, marks it failed (named in [`super::failures`]).
//!
//! Processes whose TLS library calls are seen (a handshake, or plaintext through any library
//! but NSPR, whose PR_Read/PR_Write are generic I/O) are noted: for them TLS records on the
//! wire are only a complement, never an opaque request of their own ([`super::wire`]).
//!
//! The object -> fd map is cleared when it holds more than four times `max_connections`.
use std::collections::{HashMap, HashSet};

use tracer_common::TlsLib;

use super::Stitcher;
use crate::stream::events::{Event, HandshakePhase};

#[derive(Default)]
pub(super) struct TlsObjects {
    /// (tgid, object) -> socket fd.
    fds: HashMap<(u32, u64), i32>,
    /// Handshake entries seen before the TLS object's fd was known (it is learned inside
    /// the first call), by (tgid, object).
    pending_start: HashMap<(u32, u64), u64>,
    /// Processes whose TLS library calls are seen (plaintext or handshake): for them the
    /// wire records are only a complement, never a stand-in for requests.
    library_tgids: HashSet<u32>,
}

impl TlsObjects {
    pub(super) fn learn_fd(&mut self, tgid: u32, obj: u64, fd: i32) {
        self.fds.insert((tgid, obj), fd);
    }

    /// The socket fd of a call: its own (`fd` >= 0), else its object's.
    pub(super) fn fd_of(&self, tgid: u32, obj: u64, fd: i32) -> Option<i32> {
        if fd >= 0 { Some(fd) } else { self.fds.get(&(tgid, obj)).copied() }
    }

    /// `tgid`'s TLS library calls are seen (the set is bounded by `max`).
    pub(super) fn saw_library(&mut self, tgid: u32, max: usize) {
        if self.library_tgids.len() < max {
            self.library_tgids.insert(tgid);
        }
    }

    pub(super) fn library_seen(&self, tgid: u32) -> bool {
        self.library_tgids.contains(&tgid)
    }

    /// A handshake call: the socket fd it is on, if known, with the start of an entry seen
    /// before the fd was.
    fn handshake_fd(&mut self, tgid: u32, obj: u64, fd: i32, phase: HandshakePhase, ts: u64) -> Option<(i32, Option<u64>)> {
        let fd = self.fd_of(tgid, obj, fd);
        if fd.is_none() && phase == HandshakePhase::Enter && self.pending_start.len() < 65_536 {
            self.pending_start.entry((tgid, obj)).or_insert(ts);
        }
        let fd = fd?;
        self.fds.insert((tgid, obj), fd);
        Some((fd, self.pending_start.remove(&(tgid, obj))))
    }

    pub(super) fn evict(&mut self, max: usize) {
        if self.fds.len() > max {
            self.fds.clear();
            self.pending_start.clear();
        }
    }
}

impl Stitcher {
    pub(super) fn on_tls_handshake(&mut self, ev: &Event, lib: Option<TlsLib>, obj: u64, fd: i32, phase: HandshakePhase, ret: i64) {
        self.tls.saw_library(ev.tgid, self.cfg.max_processes);
        let Some((fd, pending_start)) = self.tls.handshake_fd(ev.tgid, obj, fd, phase, ev.ts_ns) else { return };
        let Some(id) = self.conns.on_fd(ev.tgid, fd) else { return };
        self.activity(ev.tgid, ev.ts_ns, Some(id));
        let c = self.conns.get_mut(id).expect("indexed connection");
        c.tls_lib = lib;
        c.last_ns = ev.ts_ns;
        if let Some(start) = pending_start {
            c.hs_start_ns.get_or_insert(start);
        }
        match phase {
            HandshakePhase::Enter => {
                c.hs_start_ns.get_or_insert(ev.ts_ns);
            }
            HandshakePhase::Return => {
                let done = match lib {
                    Some(TlsLib::OpenSsl) | Some(TlsLib::BoringSsl) | Some(TlsLib::Rustls) => ret == 1,
                    _ => ret == 0,
                };
                let would_block = tracer_common::handshake_would_block(lib.map_or(0, |l| l as u8), ret);
                if done {
                    c.hs_end_ns.get_or_insert(ev.ts_ns);
                } else if !would_block && c.hs_end_ns.is_none() {
                    c.hs_failed = true;
                }
            }
        }
    }
}
