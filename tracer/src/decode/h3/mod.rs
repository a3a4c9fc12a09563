//! HTTP/3 exchanges (RFC 9114) from the decrypted QUIC packet payloads of one connection, both
//! directions: what the AEAD probes of issue 22 capture (one payload per packet sealed or
//! opened), turned into the same [`HttpExchange`]s as HTTP/1 and HTTP/2 ([`Protocol::Http3`]).
//!
//! | module | what it does |
//! | --- | --- |
//! | `mod.rs` | [`H3Connection`]: the packets in, the QUIC frames dispatched to streams, gaps, the close, the bounds |
//! | `reassembly.rs` | one stream direction put back in order (out of order, retransmitted, overlapping, cut short), holes waited for and given up |
//! | `streams.rs` | streams by type: request streams into exchanges; control (SETTINGS, GOAWAY), QPACK encoder and decoder, push and unknown (grease) unidirectional streams |
//! | `frames.rs` | HTTP/3 frames read from a stream's bytes as they arrive |
//! | `qpack.rs`, `qpack_static.rs` | QPACK: the dynamic table from the encoder stream, field sections, blocked sections; why our own |
//!
//! **Input.** [`H3Connection::feed_packet`] takes one packet's plaintext (its frames): `len`
//! bytes of which the captured `payload` is a prefix. The packets of the two directions come
//! interleaved by time; within a stream, frames may come out of order, twice or overlapping
//! (retransmissions, a packet captured twice), and a packet number, when given, drops a packet
//! seen again within the last 32 of its direction. [`H3Connection::feed_gap`] says packets of
//! one direction were missed (the probe lost them).
//!
//! **Gaps.** A stream's offsets show what is missing, so a missed packet or a payload cut short
//! costs the streams it carried and no other: bytes cut off a STREAM frame are known lost at
//! once; a hole (bytes after it seen, not it) is waited for, because QUIC retransmits what the
//! network lost, and given up after [`HOLE_WAIT_NS`] of later packets, when the caller reports a
//! gap in that direction, beyond the bounds on what a stream holds, or at the end. Lost bytes
//! inside a DATA frame only leave the captured body short; lost bytes where a frame's type or
//! length was end the reading of that stream direction, and its exchange is partial (it still
//! ends with the stream's FIN). A HEADERS frame cut short makes its exchange partial; QPACK
//! needs no restart (see `qpack.rs`). A payload whose frames cannot all be read (cut inside a
//! frame header, or malformed) is taken as far as it was read.
//!
//! **Exchanges.** A request stream (client-initiated bidirectional) is one exchange: its
//! request HEADERS (method, scheme, authority, path; other fields lower-case, bounded as in
//! HTTP/2), DATA counted as body bytes, trailers; the server's interim (1xx) HEADERS, the final
//! one (status and fields) and its trailers. Header byte counts are HEADERS payload bytes
//! (QPACK-compressed, without the frame's type and length; 1xx and trailers included), body
//! bytes are DATA payload bytes. Timings as in HTTP/2, from the one timestamp per packet:
//! `request_start_ns` the packet with the request's first byte, `request_end_ns` the last,
//! `response_start_ns` the packet that began the final HEADERS, `response_end_ns` the last
//! response byte. It ends with the response's FIN, a RESET_STREAM either way or the client's
//! STOP_SENDING (the reason says which), a server's GOAWAY that excludes it, a CONNECTION_CLOSE,
//! or the flush. `stream_id` is the QUIC stream ID (`None` past `u32::MAX`).
//!
//! Nothing here logs plaintext; every list and buffer is bounded (the constants here, in
//! `reassembly.rs` and `qpack.rs`, and HTTP/2's [`MAX_STREAMS`] request streams at once), and no
//! input panics.

mod frames;
mod qpack;
mod qpack_static;
mod reassembly;
mod streams;
#[cfg(test)]
pub(crate) mod test_util;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fuzz;
#[cfg(test)]
mod tests_qpack;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;

pub use super::Direction;
use super::http::Sink;
pub use super::http::{HttpExchange, MAX_ERRORS, MAX_PENDING_EXCHANGES, MAX_STREAMS, Protocol};
use super::quic::{Frame, Sender, parse_payload};
pub use qpack::{MAX_QPACK_TABLE, QpackError};
pub use reassembly::{MAX_PENDING_BYTES, MAX_PENDING_PIECES};

/// How long (by the packets' timestamps) a hole in a stream, or a field section blocked on
/// QPACK entries, is waited for before it is given up.
pub const HOLE_WAIT_NS: u64 = 1_000_000_000;
/// Most unidirectional streams tracked per connection (control, QPACK and push streams, grease).
pub const MAX_UNI_STREAMS: usize = 32;
/// Most field sections waiting for QPACK entries, per direction.
pub const MAX_BLOCKED_SECTIONS: usize = 64;
/// Packet numbers remembered per direction to drop a packet captured twice.
const RECENT_PACKETS: usize = 32;
/// Finished stream IDs remembered individually (older ones by a watermark).
const MAX_CLOSED_REMEMBERED: usize = 4096;

/// The connection's CONNECTION_CLOSE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct H3Close {
    pub ts_ns: u64,
    pub by: Sender,
    /// CONNECTION_CLOSE 0x1d (an HTTP/3 error code) rather than 0x1c (a transport one).
    pub application: bool,
    pub code: u64,
    /// The code's name (`H3_NO_ERROR`, `PROTOCOL_VIOLATION`, `CRYPTO_ERROR (alert 40)` ...).
    pub code_name: String,
    /// The frame type that caused a transport close.
    pub frame_type: Option<u64>,
    /// The reason phrase (escaped).
    pub reason: String,
}

/// A GOAWAY on a control stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct H3GoAway {
    pub from_server: bool,
    /// The server's: the first request stream it will not process; the client's: a push ID.
    pub id: u64,
}

/// The SETTINGS one side sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct H3Settings {
    pub qpack_max_table_capacity: Option<u64>,
    pub max_field_section_size: Option<u64>,
    pub qpack_blocked_streams: Option<u64>,
    /// Other settings (grease, extensions), counted.
    pub others: u32,
}

/// Counts of what was seen, per direction `[client->server, server->client]` where it has one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct H3Stats {
    pub packets: [u64; 2],
    /// Packets dropped as seen before (same packet number).
    pub duplicate_packets: [u64; 2],
    /// Gaps the caller reported.
    pub gaps: [u64; 2],
    /// Payloads whose frames could not all be read.
    pub unreadable_payloads: [u64; 2],
    /// Bytes of streams given up as lost (cut off, or holes).
    pub lost_stream_bytes: [u64; 2],
    pub request_streams: u64,
    pub push_promises: u64,
    pub push_streams: u64,
    /// Unidirectional streams of unknown (or reserved) types, skipped.
    pub unknown_streams: u64,
    /// Field sections that waited for QPACK entries.
    pub blocked_sections: u64,
}

/// The HTTP/3 decoder of one QUIC connection.
pub struct H3Connection {
    sink: Sink,
    streams: BTreeMap<u64, streams::Stream>,
    /// [the client's field sections (requests), the server's].
    qpack: [qpack::Decoder; 2],
    /// Each side's control stream SETTINGS.
    settings: [Option<H3Settings>; 2],
    /// Each side's control and encoder stream, once their type was read.
    control: [Option<u64>; 2],
    encoder: [Option<u64>; 2],
    closed: BTreeSet<u64>,
    closed_below: u64,
    close: Option<H3Close>,
    goaway: Option<H3GoAway>,
    first_request: Option<u64>,
    stats: H3Stats,
    recent: [VecDeque<u64>; 2],
    uni_streams: usize,
    /// Field sections waiting, per direction.
    blocked: [usize; 2],
}

impl Default for H3Connection {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn idx(dir: Direction) -> usize {
    match dir {
        Direction::Send => 0,
        Direction::Recv => 1,
    }
}

pub(crate) fn side_name(i: usize) -> &'static str {
    if i == 0 { "client->server" } else { "server->client" }
}

impl H3Connection {
    pub fn new() -> Self {
        H3Connection {
            sink: Sink::new(0),
            streams: BTreeMap::new(),
            qpack: Default::default(),
            settings: [None, None],
            control: [None, None],
            encoder: [None, None],
            closed: BTreeSet::new(),
            closed_below: 0,
            close: None,
            goaway: None,
            first_request: None,
            stats: H3Stats::default(),
            recent: Default::default(),
            uni_streams: 0,
            blocked: [0, 0],
        }
    }

    /// A decoder that keeps up to `limit` bytes of every message body (0: none), as
    /// [`crate::decode::http::HttpConnection::with_body_limit`].
    pub fn with_body_limit(limit: usize) -> Self {
        let mut c = Self::new();
        c.sink.body_limit = limit;
        c
    }

    /// At most `room` more body bytes are captured until the next call (as HTTP/1 and 2's).
    pub fn set_body_room(&mut self, room: usize) {
        self.sink.budget.room = room;
    }

    /// Body bytes captured, and bodies cut short for want of room, since the last call.
    pub fn take_body_counts(&mut self) -> (u64, u64) {
        self.sink.budget.take_counts()
    }

    /// One decrypted packet: its payload (frames) was `len` bytes, of which `payload` was
    /// captured; `dir` is who sent it (`Send`: the client); `packet_number` when known.
    pub fn feed_packet(&mut self, dir: Direction, ts_ns: u64, packet_number: Option<u64>, len: u32, payload: &[u8]) {
        let i = idx(dir);
        let payload = &payload[..payload.len().min(len as usize)];
        if let Some(pn) = packet_number {
            if self.recent[i].contains(&pn) {
                self.stats.duplicate_packets[i] += 1;
                return;
            }
            if self.recent[i].len() >= RECENT_PACKETS {
                self.recent[i].pop_front();
            }
            self.recent[i].push_back(pn);
        }
        self.stats.packets[i] += 1;
        let parsed = parse_payload(payload, len as usize);
        if let Some(e) = &parsed.error {
            self.stats.unreadable_payloads[i] += 1;
            self.sink.error(format!("HTTP/3 {}: packet frames read as far as possible: {e}", side_name(i)));
        }
        for frame in parsed.frames {
            self.on_frame(i, ts_ns, frame);
        }
        self.check_waits(ts_ns, None);
    }

    /// Packets sent by `dir` around `ts_ns` were not captured: the holes its streams have now
    /// are given up at once (those that open later wait [`HOLE_WAIT_NS`]).
    pub fn feed_gap(&mut self, dir: Direction, ts_ns: u64) {
        let i = idx(dir);
        self.stats.gaps[i] += 1;
        self.sink.error(format!("HTTP/3 {}: packets not captured", side_name(i)));
        self.check_waits(ts_ns, Some(i));
    }

    /// Exchanges finished since the last call. With `flush` (the connection is gone), every
    /// open one too, marked incomplete with a reason.
    pub fn take_exchanges(&mut self, flush: bool) -> Vec<HttpExchange> {
        if flush {
            self.flush();
        }
        std::mem::take(&mut self.sink.out)
    }

    /// The CONNECTION_CLOSE, once seen.
    pub fn close(&self) -> Option<&H3Close> {
        self.close.as_ref()
    }

    /// The last GOAWAY seen.
    pub fn goaway(&self) -> Option<H3GoAway> {
        self.goaway
    }

    /// The SETTINGS `dir` sent, once seen.
    pub fn settings(&self, dir: Direction) -> Option<&H3Settings> {
        self.settings[idx(dir)].as_ref()
    }

    pub fn stats(&self) -> &H3Stats {
        &self.stats
    }

    /// Decoding problems, at most [`MAX_ERRORS`]; the count of further ones is
    /// [`Self::errors_dropped`].
    pub fn errors(&self) -> &[String] {
        &self.sink.errors.list
    }

    pub fn errors_dropped(&self) -> u64 {
        self.sink.errors.dropped
    }

    /// Exchanges dropped because more than [`MAX_PENDING_EXCHANGES`] waited to be taken.
    pub fn exchanges_dropped(&self) -> u64 {
        self.sink.dropped
    }

    /// Request streams open.
    pub fn open_exchanges(&self) -> usize {
        self.streams.values().filter(|s| s.is_request()).count()
    }

    /// The connection's first request stream (the request that opened it).
    pub fn first_request_stream(&self) -> Option<u64> {
        self.first_request
    }

    /// The number of entries and bytes of each direction's QPACK dynamic table.
    pub fn qpack_tables(&self) -> [(usize, usize); 2] {
        [0, 1].map(|i| (self.qpack[i].table.len(), self.qpack[i].table.size()))
    }

    fn on_frame(&mut self, i: usize, ts: u64, frame: Frame) {
        match frame {
            Frame::Stream { id, offset, data, fin, missing } => self.on_stream(i, ts, id, offset, data, fin, missing),
            Frame::ResetStream { id, code, final_size } => self.on_reset(i, ts, id, code, final_size),
            Frame::StopSending { id, code } => self.on_stop_sending(i, id, code),
            Frame::ConnectionClose { code, frame_type, reason } => self.on_close(i, ts, false, code, Some(frame_type), reason),
            Frame::ApplicationClose { code, reason } => self.on_close(i, ts, true, code, None, reason),
            _ => {}
        }
    }

    fn on_close(&mut self, i: usize, ts: u64, application: bool, code: u64, frame_type: Option<u64>, reason: String) {
        let code_name = if application { h3_error_name(code) } else { transport_error_name(code) };
        let by = if i == 0 { Sender::Client } else { Sender::Server };
        self.sink.error(format!(
            "HTTP/3 CONNECTION_CLOSE from the {}: {code_name}{}",
            if i == 0 { "client" } else { "server" },
            if reason.is_empty() { String::new() } else { format!(" ({reason})") }
        ));
        let why = format!("connection closed by the {} ({code_name})", if i == 0 { "client" } else { "server" });
        if self.close.is_none() {
            self.close = Some(H3Close { ts_ns: ts, by, application, code, code_name, frame_type, reason });
        }
        let open: Vec<u64> = self.streams.iter().filter(|(_, s)| s.is_request()).map(|(id, _)| *id).collect();
        for id in open {
            self.finish(id, Some(&why));
        }
    }

    /// Whether the stream `id` has finished (its frames are ignored).
    fn is_closed(&self, id: u64) -> bool {
        id < self.closed_below || self.closed.contains(&id)
    }

    fn mark_closed(&mut self, id: u64) {
        self.closed.insert(id);
        while self.closed.len() > MAX_CLOSED_REMEMBERED {
            if let Some(first) = self.closed.pop_first() {
                self.closed_below = self.closed_below.max(first + 1);
            }
        }
    }

    /// Holes and blocked field sections that waited long enough (or, with `gap`, every hole
    /// of that direction) are given up.
    fn check_waits(&mut self, ts: u64, gap: Option<usize>) {
        let mut due: Vec<(u64, usize)> = Vec::new();
        for (id, s) in &self.streams {
            for (i, h) in s.halves.iter().enumerate() {
                let old = h.rx.hole_since.is_some_and(|t| ts.saturating_sub(t) >= HOLE_WAIT_NS);
                if h.rx.has_hole() && (old || gap == Some(i) || h.rx.over_bounds()) {
                    due.push((*id, i));
                }
            }
        }
        for (id, i) in due {
            if let Some(s) = self.streams.get_mut(&id) {
                let n = s.halves[i].rx.give_up(ts);
                self.stats.lost_stream_bytes[i] = self.stats.lost_stream_bytes[i].saturating_add(n);
            }
            self.drain(id, i);
        }
        self.expire_blocked(ts);
    }

    fn flush(&mut self) {
        let ids: Vec<u64> = self.streams.keys().copied().collect();
        for &id in &ids {
            for i in 0..2 {
                // Every hole, then whatever it let through.
                for _ in 0..MAX_PENDING_PIECES + 2 {
                    let Some(s) = self.streams.get_mut(&id) else { break };
                    let n = s.halves[i].rx.give_up(0);
                    if n == 0 {
                        break;
                    }
                    self.stats.lost_stream_bytes[i] = self.stats.lost_stream_bytes[i].saturating_add(n);
                    self.drain(id, i);
                }
            }
        }
        self.expire_blocked(u64::MAX);
        let open: Vec<u64> = self.streams.iter().filter(|(_, s)| s.is_request()).map(|(id, _)| *id).collect();
        for id in open {
            let why = match self.streams.get(&id).and_then(|s| s.request()) {
                Some(r) if r.resp_final => "connection closed before the response ended",
                _ => "connection closed before a response",
            };
            self.finish(id, Some(why));
        }
    }
}

/// RFC 9114 8.1 and RFC 9204 6.
pub(crate) fn h3_error_name(code: u64) -> String {
    let name = match code {
        0x100 => "H3_NO_ERROR",
        0x101 => "H3_GENERAL_PROTOCOL_ERROR",
        0x102 => "H3_INTERNAL_ERROR",
        0x103 => "H3_STREAM_CREATION_ERROR",
        0x104 => "H3_CLOSED_CRITICAL_STREAM",
        0x105 => "H3_FRAME_UNEXPECTED",
        0x106 => "H3_FRAME_ERROR",
        0x107 => "H3_EXCESSIVE_LOAD",
        0x108 => "H3_ID_ERROR",
        0x109 => "H3_SETTINGS_ERROR",
        0x10a => "H3_MISSING_SETTINGS",
        0x10b => "H3_REQUEST_REJECTED",
        0x10c => "H3_REQUEST_CANCELLED",
        0x10d => "H3_REQUEST_INCOMPLETE",
        0x10e => "H3_MESSAGE_ERROR",
        0x10f => "H3_CONNECT_ERROR",
        0x110 => "H3_VERSION_FALLBACK",
        0x200 => "QPACK_DECOMPRESSION_FAILED",
        0x201 => "QPACK_ENCODER_STREAM_ERROR",
        0x202 => "QPACK_DECODER_STREAM_ERROR",
        other => return format!("error 0x{other:x}"),
    };
    name.to_string()
}

/// RFC 9000 20.1.
pub(crate) fn transport_error_name(code: u64) -> String {
    let name = match code {
        0x0 => "NO_ERROR",
        0x1 => "INTERNAL_ERROR",
        0x2 => "CONNECTION_REFUSED",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "STREAM_LIMIT_ERROR",
        0x5 => "STREAM_STATE_ERROR",
        0x6 => "FINAL_SIZE_ERROR",
        0x7 => "FRAME_ENCODING_ERROR",
        0x8 => "TRANSPORT_PARAMETER_ERROR",
        0x9 => "CONNECTION_ID_LIMIT_ERROR",
        0xa => "PROTOCOL_VIOLATION",
        0xb => "INVALID_TOKEN",
        0xc => "APPLICATION_ERROR",
        0xd => "CRYPTO_BUFFER_EXCEEDED",
        0xe => "KEY_UPDATE_ERROR",
        0xf => "AEAD_LIMIT_REACHED",
        0x10 => "NO_VIABLE_PATH",
        0x100..=0x1ff => return format!("CRYPTO_ERROR (TLS alert {})", code - 0x100),
        other => return format!("error 0x{other:x}"),
    };
    name.to_string()
}
