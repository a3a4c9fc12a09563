//! HTTP exchanges from the two plaintext byte streams of one TLS (or plain TCP) connection.
//!
//! The kernel reports, per connection, the plaintext each `SSL_read`/`SSL_write` (or the
//! GnuTLS/NSPR equivalent) moved: `len` bytes, of which only the first `captured` (by default
//! 4 KiB) are carried. A call that moved more leaves a *gap* of `len - captured` unknown bytes
//! at its end. [`HttpConnection`] is fed these chunks in order, per direction (the two
//! directions interleaved by time), and turns them into [`HttpExchange`]s:
//!
//! - **HTTP/1.x** (`httparse` for the heads): Content-Length and chunked bodies (decoded body
//!   bytes are counted), keep-alive and pipelining, bodies delimited by the close, 1xx interim
//!   responses, HEAD/204/304, and `101`/`CONNECT` tunnels (after which nothing is decoded).
//! - **HTTP/2** (detected by the client preface, or by a plausible frame sequence when the
//!   connection was already open): frames in both directions, HEADERS/CONTINUATION/
//!   PUSH_PROMISE decoded with HPACK (`loona-hpack`, one decoder per direction), DATA counted
//!   per stream (without padding), END_STREAM, RST_STREAM, GOAWAY.
//!
//! Gaps: body bytes inside a gap are counted from the call's length. A message head cut by a
//! gap makes its exchange partial (what was captured of the head is kept). An HTTP/2 frame
//! header inside a gap desynchronises that direction: it is not decoded again until a later
//! chunk starts with a frame sequence that checks out against the streams being tracked, and
//! the HPACK decoder then starts from an empty dynamic table. An empty table never yields a
//! wrong header: a reference to an entry added before the restart fails to decode (that header
//! block is reported as undecodable), while entries added after it are mirrored exactly.
//!
//! Nothing here logs, prints or stores plaintext: header values are returned to the caller
//! (the storage layer redacts secrets). Every buffer and list is bounded (see the constants),
//! and hostile input never panics.
//!
//! `complete` on an exchange is `true` exactly when `partial_reason` is `None`: the request
//! and its response were seen from start to end with nothing missing.

mod h1;
pub(crate) mod h2;
mod start_line;
#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests_bodies;
#[cfg(test)]
mod tests_fuzz;
#[cfg(test)]
mod tests_h1;
#[cfg(test)]
pub(crate) mod tests_h2;

use serde::Serialize;

pub use super::Direction;
pub use start_line::{FIRST_LINE_MAX, HTTP2_PREFACE, first_line, is_http2_preface};

/// Most bytes of one HTTP/1 message head, or of one HTTP/2 header block, buffered.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields kept per message (further ones are dropped).
pub const MAX_HEADER_FIELDS: usize = 128;
/// Most bytes (names + values) of header fields kept per message.
pub const MAX_HEADER_FIELD_BYTES: usize = 32 * 1024;
/// Most HTTP/2 streams tracked at once; the oldest is given up (emitted incomplete) beyond.
pub const MAX_STREAMS: usize = 256;
/// Most HTTP/1 requests waiting for their response (pipelining depth).
pub const MAX_OUTSTANDING_REQUESTS: usize = 32;
/// Largest HPACK dynamic table accepted (browsers advertise 64 KiB).
pub const MAX_HPACK_TABLE: usize = 64 * 1024;
/// Most bytes held while the protocol is not known yet.
pub const MAX_UNDECIDED_BYTES: usize = 64 * 1024;
/// Most entries in [`HttpConnection::errors`].
pub const MAX_ERRORS: usize = 64;
/// Most exchanges held between two [`HttpConnection::take_exchanges`] calls; further ones are
/// dropped and counted in [`HttpConnection::exchanges_dropped`].
pub const MAX_PENDING_EXCHANGES: usize = 4096;

/// Client chunks looked at before giving up on recognising the protocol.
const MAX_UNRECOGNISED_CHUNKS: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Http1,
    Http2,
    /// HTTP/3 over QUIC ([`crate::decode::h3`]).
    Http3,
}

/// One request and its response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpExchange {
    pub protocol: Protocol,
    /// HTTP/2 stream id, or the QUIC stream id of an HTTP/3 request stream (`None` for one past
    /// `u32::MAX`: a billion requests on one connection); `None` for HTTP/1.
    pub stream_id: Option<u32>,
    pub method: Option<String>,
    /// `:scheme` (HTTP/2) or the scheme of an absolute-form request target (HTTP/1); `None`
    /// otherwise: the caller knows whether the connection was TLS.
    pub scheme: Option<String>,
    /// `:authority`, else the Host header.
    pub authority: Option<String>,
    pub path: Option<String>,
    /// Final (non-1xx) status.
    pub status: Option<u16>,
    /// Lower-case names, values as seen (HTTP/2 pseudo-headers are in the fields above, not
    /// here). At most [`MAX_HEADER_FIELDS`] fields and [`MAX_HEADER_FIELD_BYTES`] bytes.
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    /// HTTP/1: bytes of the head (start line to the empty line). HTTP/2: payload bytes of the
    /// HEADERS/CONTINUATION frames (compressed, without the 9-byte frame headers), trailers
    /// and 1xx heads included.
    pub request_header_bytes: u64,
    /// Decoded body bytes: without chunked framing (HTTP/1) or padding (HTTP/2).
    pub request_body_bytes: u64,
    pub response_header_bytes: u64,
    pub response_body_bytes: u64,
    /// `start_ns` (call entry) of the chunk that carried the first request byte.
    pub request_start_ns: u64,
    /// `ts_ns` (call return) of the chunk that carried the last request byte seen.
    pub request_end_ns: u64,
    /// `ts_ns` of the chunk that carried the (final) status line / HEADERS.
    pub response_start_ns: Option<u64>,
    /// `ts_ns` of the chunk that carried the last response byte seen.
    pub response_end_ns: Option<u64>,
    /// `partial_reason.is_none()`.
    pub complete: bool,
    /// Why this exchange is incomplete or approximate (reasons joined by "; ").
    pub partial_reason: Option<String>,
    /// The bodies as decoded (no chunked framing or padding; content-encoding kept), only
    /// when body capture is on ([`HttpConnection::with_body_limit`]) and the message had one.
    pub request_body: Option<CapturedBody>,
    pub response_body: Option<CapturedBody>,
}

/// The first bytes of a message body, at most the configured limit: always an exact prefix
/// of the body (nothing is kept after a hole).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CapturedBody {
    /// Base64 in JSON.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
    /// Bytes are missing: past the limit, lost in a capture gap, or framing lost.
    pub truncated: bool,
}

impl HttpExchange {
    pub(crate) fn new(protocol: Protocol) -> Self {
        HttpExchange {
            protocol,
            stream_id: None,
            method: None,
            scheme: None,
            authority: None,
            path: None,
            status: None,
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            request_header_bytes: 0,
            request_body_bytes: 0,
            response_header_bytes: 0,
            response_body_bytes: 0,
            request_start_ns: 0,
            request_end_ns: 0,
            response_start_ns: None,
            response_end_ns: None,
            complete: false,
            partial_reason: None,
            request_body: None,
            response_body: None,
        }
    }

    pub(crate) fn body_mut(&mut self, dir: Direction) -> &mut Option<CapturedBody> {
        match dir {
            Direction::Send => &mut self.request_body,
            Direction::Recv => &mut self.response_body,
        }
    }

    /// Keeps body bytes, at most `limit` in all (0: capture is off), and no more than the
    /// connection's `budget` has room for (what it refuses is missing: the body is truncated).
    pub(crate) fn capture_body(&mut self, dir: Direction, bytes: &[u8], limit: usize, budget: &mut BodyBudget) {
        if limit == 0 || bytes.is_empty() {
            return;
        }
        let body = self.body_mut(dir).get_or_insert_with(CapturedBody::default);
        if body.truncated {
            // The kept bytes stay an exact prefix of the body: nothing after a hole.
            return;
        }
        let room = limit.saturating_sub(body.data.len());
        let wanted = room.min(bytes.len());
        let n = wanted.min(budget.room);
        body.data.extend_from_slice(&bytes[..n]);
        budget.room -= n;
        budget.captured += n as u64;
        if n < wanted {
            budget.refused += 1;
        }
        if n < bytes.len() {
            body.truncated = true;
        }
    }

    /// Body bytes that could not be kept (a capture gap, framing lost).
    pub(crate) fn body_missing(&mut self, dir: Direction, limit: usize) {
        if limit > 0 {
            self.body_mut(dir).get_or_insert_with(CapturedBody::default).truncated = true;
        }
    }

    /// Adds a reason (once; the text stays bounded).
    pub(crate) fn mark_partial(&mut self, reason: &str) {
        const MAX_REASON: usize = 512;
        match &mut self.partial_reason {
            None => self.partial_reason = Some(reason.to_string()),
            Some(r) => {
                if !r.split("; ").any(|x| x == reason) && r.len() + reason.len() + 2 <= MAX_REASON {
                    r.push_str("; ");
                    r.push_str(reason);
                }
            }
        }
    }

    pub(crate) fn set_response_end(&mut self, ts: u64) {
        self.response_end_ns = Some(self.response_end_ns.map_or(ts, |e| e.max(ts)));
    }

    pub(crate) fn set_request_end(&mut self, ts: u64) {
        self.request_end_ns = self.request_end_ns.max(ts);
    }
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// A GOAWAY frame seen on an HTTP/2 connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GoAway {
    /// Sent by the server (seen on the receive side).
    pub from_server: bool,
    pub last_stream_id: u32,
    pub error_code: u32,
}

/// A bounded list of decoding problems.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    pub(crate) list: Vec<String>,
    pub(crate) dropped: u64,
}

impl Errors {
    pub(crate) fn push(&mut self, msg: impl Into<String>) {
        if self.list.len() < MAX_ERRORS {
            self.list.push(msg.into());
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }
}

/// Body bytes a decoder may still capture ([`HttpConnection::set_body_room`]), and what it
/// captured and refused since [`HttpConnection::take_body_counts`].
pub(crate) struct BodyBudget {
    pub(crate) room: usize,
    pub(crate) captured: u64,
    /// Message bodies cut short for want of room.
    pub(crate) refused: u64,
}

impl BodyBudget {
    /// Bytes captured and bodies cut short since the last call.
    pub(crate) fn take_counts(&mut self) -> (u64, u64) {
        (std::mem::take(&mut self.captured), std::mem::take(&mut self.refused))
    }
}

impl Default for BodyBudget {
    fn default() -> Self {
        BodyBudget { room: usize::MAX, captured: 0, refused: 0 }
    }
}

/// Where finished exchanges and problems go.
pub(crate) struct Sink {
    pub(crate) out: Vec<HttpExchange>,
    pub(crate) dropped: u64,
    pub(crate) errors: Errors,
    /// Body bytes to keep per message; 0 keeps none (the default: bodies hold secrets).
    pub(crate) body_limit: usize,
    pub(crate) budget: BodyBudget,
}

impl Sink {
    pub(crate) fn new(body_limit: usize) -> Self {
        Sink { out: Vec::new(), dropped: 0, errors: Errors::default(), body_limit, budget: BodyBudget::default() }
    }

    pub(crate) fn emit(&mut self, mut ex: HttpExchange) {
        ex.complete = ex.partial_reason.is_none();
        if self.out.len() < MAX_PENDING_EXCHANGES {
            self.out.push(ex);
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    pub(crate) fn error(&mut self, msg: impl Into<String>) {
        self.errors.push(msg);
    }
}

/// One chunk held while the protocol is not known yet.
struct Pending {
    dir: Direction,
    start_ns: u64,
    ts_ns: u64,
    len: u32,
    data: Vec<u8>,
}

#[derive(Default)]
struct Detect {
    pending: Vec<Pending>,
    bytes: usize,
    /// The client's first bytes while they are a prefix of the HTTP/2 preface.
    preface_prefix: Vec<u8>,
    seen_send: bool,
    unrecognised: u32,
}

enum State {
    Undecided(Detect),
    Http1(Box<h1::H1>),
    Http2(Box<h2::H2>),
    /// The client's bytes were not HTTP: nothing more is decoded.
    Unrecognised,
}

/// The HTTP decoder of one connection.
pub struct HttpConnection {
    state: State,
    sink: Sink,
}

impl Default for HttpConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpConnection {
    pub fn new() -> Self {
        HttpConnection {
            state: State::Undecided(Detect::default()),
            sink: Sink::new(0),
        }
    }

    /// A decoder that keeps up to `limit` bytes of every message body (0: none).
    pub fn with_body_limit(limit: usize) -> Self {
        let mut c = Self::new();
        c.sink.body_limit = limit;
        c
    }

    /// At most `room` more body bytes are captured (across all messages) until the next call;
    /// bytes past it are missing from their body, which is marked truncated. Unlimited by
    /// default. (The stitcher's global cap on captured bytes: `stitch/caps.rs`.)
    pub fn set_body_room(&mut self, room: usize) {
        self.sink.budget.room = room;
    }

    /// Body bytes captured, and message bodies cut short for want of room, since the last call.
    pub fn take_body_counts(&mut self) -> (u64, u64) {
        self.sink.budget.take_counts()
    }

    /// One library call's plaintext: `len` bytes moved, the first `data.len()` of them
    /// captured. `data` longer than `len` is cut to `len`.
    pub fn feed(&mut self, dir: Direction, start_ns: u64, ts_ns: u64, len: u32, data: &[u8]) {
        let data = &data[..data.len().min(len as usize)];
        let gap = u64::from(len) - data.len() as u64;
        match &mut self.state {
            State::Http1(h) => h.feed(dir, start_ns, ts_ns, data, gap, &mut self.sink),
            State::Http2(h) => h.feed(dir, start_ns, ts_ns, data, gap, &mut self.sink),
            State::Unrecognised => {}
            State::Undecided(_) => self.detect(dir, start_ns, ts_ns, len, data),
        }
    }

    /// Exchanges finished since the last call, in the order they finished. With `flush` (the
    /// connection closed), the unfinished ones too: a response delimited by the close is
    /// complete, every other one is marked incomplete with a reason.
    pub fn take_exchanges(&mut self, flush: bool) -> Vec<HttpExchange> {
        if flush {
            match &mut self.state {
                State::Http1(h) => h.flush(&mut self.sink),
                State::Http2(h) => h.flush(&mut self.sink),
                State::Undecided(_) | State::Unrecognised => {}
            }
        }
        std::mem::take(&mut self.sink.out)
    }

    pub fn protocol(&self) -> Option<Protocol> {
        match self.state {
            State::Http1(_) => Some(Protocol::Http1),
            State::Http2(_) => Some(Protocol::Http2),
            State::Undecided(_) | State::Unrecognised => None,
        }
    }

    /// Decoding problems (desynchronisation, HPACK failures, gaps inside headers, GOAWAY ...),
    /// at most [`MAX_ERRORS`]; the count of further ones is [`Self::errors_dropped`].
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

    /// Exchanges begun and not finished: requests waiting for (the rest of) their response.
    pub fn open_exchanges(&self) -> usize {
        match &self.state {
            State::Http1(h) => h.open_count(),
            State::Http2(h) => h.open_count(),
            State::Undecided(_) | State::Unrecognised => 0,
        }
    }

    /// The HTTP/2 stream of the connection's first request (the one that opened it). Its
    /// exchange may end after later streams' exchanges.
    pub fn first_request_stream(&self) -> Option<u32> {
        match &self.state {
            State::Http2(h) => h.first_request(),
            _ => None,
        }
    }

    /// The last HTTP/2 GOAWAY seen.
    pub fn goaway(&self) -> Option<GoAway> {
        match &self.state {
            State::Http2(h) => h.goaway(),
            _ => None,
        }
    }

    fn detect(&mut self, dir: Direction, start_ns: u64, ts_ns: u64, len: u32, data: &[u8]) {
        let State::Undecided(det) = &mut self.state else {
            return;
        };
        let chunk = Pending {
            dir,
            start_ns,
            ts_ns,
            len,
            data: data.to_vec(),
        };
        let decided = match dir {
            Direction::Send => {
                det.seen_send = true;
                let mut probe = det.preface_prefix.clone();
                let want = HTTP2_PREFACE.len() - probe.len();
                probe.extend_from_slice(&data[..data.len().min(want)]);
                if !probe.is_empty() && HTTP2_PREFACE.starts_with(&probe) {
                    if probe.len() == HTTP2_PREFACE.len() {
                        Some((Protocol::Http2, true))
                    } else {
                        // Not all of the preface yet (`data` is short, so fully captured).
                        det.preface_prefix = probe;
                        det.bytes += chunk.data.len();
                        det.pending.push(chunk);
                        return;
                    }
                } else if !det.preface_prefix.is_empty() || h1::looks_like_request(data) {
                    Some((Protocol::Http1, false))
                } else if h2::looks_like_frames(data, u64::from(len) - data.len() as u64) {
                    Some((Protocol::Http2, false))
                } else {
                    det.unrecognised += 1;
                    if det.unrecognised == 1 {
                        self.sink.error(
                            "client data is neither an HTTP/1 request nor HTTP/2; skipped until a \
                             chunk starts with one",
                        );
                    }
                    if det.unrecognised >= MAX_UNRECOGNISED_CHUNKS {
                        self.sink
                            .error("protocol not recognised: connection not decoded");
                        self.state = State::Unrecognised;
                    }
                    return;
                }
            }
            Direction::Recv => {
                if !det.seen_send && h1::looks_like_response(data) {
                    Some((Protocol::Http1, false))
                } else {
                    if det.bytes + chunk.data.len() > MAX_UNDECIDED_BYTES {
                        self.sink.error(
                            "server data before the protocol was known: too much held, chunk \
                             dropped",
                        );
                    } else {
                        det.bytes += chunk.data.len();
                        det.pending.push(chunk);
                    }
                    return;
                }
            }
        };
        let Some((protocol, preface)) = decided else {
            return;
        };
        let mut pending = std::mem::take(&mut det.pending);
        pending.push(chunk);
        self.state = match protocol {
            Protocol::Http1 => State::Http1(Box::new(h1::H1::new())),
            // HTTP/3 is QUIC's (`decode::h3`), never detected on a byte stream.
            Protocol::Http2 | Protocol::Http3 => {
                if !preface {
                    self.sink.error(
                        "HTTP/2 recognised without its preface (connection opened before the \
                         capture): HPACK starts from an empty table",
                    );
                }
                State::Http2(Box::new(h2::H2::new(preface)))
            }
        };
        for p in pending {
            let gap = u64::from(p.len) - p.data.len() as u64;
            match &mut self.state {
                State::Http1(h) => h.feed(p.dir, p.start_ns, p.ts_ns, &p.data, gap, &mut self.sink),
                State::Http2(h) => h.feed(p.dir, p.start_ns, p.ts_ns, &p.data, gap, &mut self.sink),
                _ => {}
            }
        }
    }
}

/// Lower-cased, lossily decoded header fields, bounded by [`MAX_HEADER_FIELDS`] and
/// [`MAX_HEADER_FIELD_BYTES`].
#[derive(Debug, Default)]
pub(crate) struct FieldList {
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) bytes: usize,
    pub(crate) dropped: bool,
}

impl FieldList {
    pub(crate) fn push(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len();
        if self.fields.len() >= MAX_HEADER_FIELDS || self.bytes + size > MAX_HEADER_FIELD_BYTES {
            self.dropped = true;
            return;
        }
        self.bytes += size;
        self.fields.push((
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
}

pub(crate) fn dir_name(dir: Direction) -> &'static str {
    match dir {
        Direction::Send => "client->server",
        Direction::Recv => "server->client",
    }
}
