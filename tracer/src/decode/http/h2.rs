//! HTTP/2 (RFC 9113): frames in both directions, header blocks decoded with HPACK.
//!
//! Each direction ([`Dir`]) reads frames with a small state machine that survives frames
//! split across chunks and payloads that run into a capture gap (the frame is then handled with
//! what was captured, and the rest skipped by its length). A frame *header* inside a gap loses
//! the frame boundaries: the direction is then skipped until a chunk starts with a frame
//! sequence that checks out (known frame types, lengths, flags and stream ids of streams being
//! tracked), after which decoding goes on with a fresh HPACK decoder.
//!
//! HPACK: a fresh decoder (empty dynamic table) is always safe to continue with. Every entry
//! the peer's encoder adds from then on is added to ours in the same order, so our table is a
//! newest-first prefix of the encoder's (ours is allowed to be larger, 64 KiB, until the
//! encoder announces its size): an index either names the same entry on both sides, or lies
//! past our table and fails. So after any header block that could not be decoded (cut by a
//! gap, too large, HPACK error, a CONTINUATION whose start was missed) the decoder is replaced
//! by a fresh one, and later blocks either decode correctly or fail; never wrong values.
use std::collections::BTreeMap;

use loona_hpack::Decoder;

use super::{
    Direction, FieldList, GoAway, HTTP2_PREFACE, HttpExchange, MAX_HEAD_BYTES, MAX_HPACK_TABLE,
    MAX_STREAMS, Protocol, Sink, dir_name,
};

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

/// SETTINGS_MAX_FRAME_SIZE's initial value.
const DEFAULT_MAX_FRAME: u32 = 16_384;
/// SETTINGS entries looked at per frame.
const MAX_SETTINGS: usize = 64;

pub(super) struct H2 {
    /// [client->server, server->client].
    dirs: [Dir; 2],
    streams: BTreeMap<u32, Stream>,
    /// Highest stream id seen opened (client or pushed).
    max_stream: u32,
    /// The first request's stream: the request that opened the connection.
    first_request: Option<u32>,
    goaway: Option<GoAway>,
}

struct Dir {
    dir: Direction,
    preface_left: usize,
    frame: FrameState,
    hpack: Decoder<'static>,
    hpack_allowed: usize,
    /// A header block waiting for its CONTINUATION frames.
    block: Option<Block>,
    /// Frame boundaries lost: skipping until a chunk starts at one.
    desync: bool,
    /// The largest frame this direction may carry (from the other direction's SETTINGS).
    max_frame: u32,
}

#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    len: u32,
    ty: u8,
    flags: u8,
    stream: u32,
}

enum FrameState {
    Header {
        buf: [u8; 9],
        n: usize,
        start_ns: u64,
        ts: u64,
    },
    Payload(Payload),
}

struct Payload {
    fh: FrameHeader,
    keep: Vec<u8>,
    keep_max: usize,
    remaining: u32,
    truncated: bool,
    start_ns: u64,
    ts: u64,
}

struct Block {
    stream: u32,
    promised: Option<u32>,
    end_stream: bool,
    data: Vec<u8>,
    broken: Option<&'static str>,
    wire: u64,
    start_ns: u64,
    ts: u64,
}

struct Stream {
    ex: HttpExchange,
    has_request: bool,
    req_done: bool,
    resp_final: bool,
}

/// A decoded header block (HPACK here, QPACK in [`crate::decode::h3`]).
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub(crate) method: Option<String>,
    pub(crate) scheme: Option<String>,
    pub(crate) authority: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) fields: FieldList,
}

impl Decoded {
    /// One decoded field: a pseudo-header into its slot (the first one counts: a repeated
    /// pseudo-header is malformed anyway, and a big value referenced many times is copied
    /// once), unknown pseudo-headers dropped, the rest into the bounded field list.
    pub(crate) fn add(&mut self, name: &[u8], value: &[u8]) {
        let slot = match name {
            b":method" => &mut self.method,
            b":scheme" => &mut self.scheme,
            b":authority" => &mut self.authority,
            b":path" => &mut self.path,
            b":status" => &mut self.status,
            n if n.starts_with(b":") => return,
            _ => {
                self.fields.push(name, value);
                return;
            }
        };
        if slot.is_none() {
            *slot = Some(String::from_utf8_lossy(value).into_owned());
        }
    }
}

impl FrameState {
    fn fresh() -> Self {
        FrameState::Header {
            buf: [0; 9],
            n: 0,
            start_ns: 0,
            ts: 0,
        }
    }
}

impl FrameHeader {
    fn parse(b: &[u8; 9]) -> Self {
        FrameHeader {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            ty: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }
}

fn new_decoder(allowed: usize) -> Decoder<'static> {
    let mut d = Decoder::new();
    // Larger than the encoder's table is harmless (see the module doc); must be set before
    // the allowed maximum, which this call asserts against.
    d.set_max_table_size(MAX_HPACK_TABLE);
    d.set_max_allowed_table_size(allowed);
    d
}

impl Dir {
    fn new(dir: Direction, preface: bool) -> Self {
        Dir {
            dir,
            preface_left: if preface { HTTP2_PREFACE.len() } else { 0 },
            frame: FrameState::fresh(),
            hpack: new_decoder(MAX_HPACK_TABLE),
            hpack_allowed: MAX_HPACK_TABLE,
            block: None,
            desync: false,
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

fn idx(dir: Direction) -> usize {
    match dir {
        Direction::Send => 0,
        Direction::Recv => 1,
    }
}

impl H2 {
    pub(super) fn new(preface: bool) -> Self {
        H2 {
            dirs: [
                Dir::new(Direction::Send, preface),
                Dir::new(Direction::Recv, false),
            ],
            streams: BTreeMap::new(),
            max_stream: 0,
            first_request: None,
            goaway: None,
        }
    }

    pub(super) fn goaway(&self) -> Option<GoAway> {
        self.goaway
    }

    pub(super) fn first_request(&self) -> Option<u32> {
        self.first_request
    }

    /// Streams open (a request waiting for its response, or a response still arriving).
    pub(super) fn open_count(&self) -> usize {
        self.streams.len()
    }

    pub(super) fn feed(
        &mut self,
        dir: Direction,
        start_ns: u64,
        ts: u64,
        data: &[u8],
        gap: u64,
        sink: &mut Sink,
    ) {
        let i = idx(dir);
        if self.dirs[i].desync {
            if !self.try_resync(dir, data, gap) {
                return;
            }
            sink.error(format!(
                "HTTP/2 {}: frames found again at the start of a chunk; HPACK restarted",
                dir_name(dir)
            ));
        }
        let mut pos = 0usize;
        if self.dirs[i].preface_left > 0 {
            let k = self.dirs[i].preface_left.min(data.len());
            pos += k;
            self.dirs[i].preface_left -= k;
            if self.dirs[i].preface_left > 0 && gap > 0 {
                self.desync(i, "preface cut by a capture gap", sink);
                return;
            }
        }
        while pos < data.len() {
            let rest = &data[pos..];
            let d = &mut self.dirs[i];
            match &mut d.frame {
                FrameState::Header {
                    buf,
                    n,
                    start_ns: s,
                    ts: t,
                } => {
                    if *n == 0 {
                        *s = start_ns;
                        *t = ts;
                    }
                    let k = (9 - *n).min(rest.len());
                    buf[*n..*n + k].copy_from_slice(&rest[..k]);
                    *n += k;
                    pos += k;
                    if *n == 9 {
                        let fh = FrameHeader::parse(buf);
                        let (s, t) = (*s, *t);
                        self.begin_payload(i, fh, s, t, ts, sink);
                    }
                }
                FrameState::Payload(p) => {
                    let k = (p.remaining as usize).min(rest.len());
                    let room = p.keep_max.saturating_sub(p.keep.len()).min(k);
                    p.keep.extend_from_slice(&rest[..room]);
                    p.remaining -= k as u32;
                    pos += k;
                    if p.remaining == 0 {
                        self.end_payload(i, ts, sink);
                    }
                }
            }
        }
        if gap > 0 {
            match &mut self.dirs[i].frame {
                FrameState::Header { .. } => {
                    self.desync(i, "frame header inside a capture gap", sink);
                }
                FrameState::Payload(p) => {
                    let k = u64::from(p.remaining).min(gap);
                    p.remaining -= k as u32;
                    p.truncated = true;
                    if p.remaining == 0 {
                        self.end_payload(i, ts, sink);
                    }
                    if gap > k {
                        self.desync(i, "frame header inside a capture gap", sink);
                    }
                }
            }
        }
    }

    pub(super) fn flush(&mut self, sink: &mut Sink) {
        for (_, mut s) in std::mem::take(&mut self.streams) {
            s.ex.mark_partial(if s.resp_final {
                "connection closed before the response ended"
            } else {
                "connection closed before a response"
            });
            sink.emit(s.ex);
        }
        for d in &mut self.dirs {
            d.block = None;
            d.frame = FrameState::fresh();
        }
    }

    fn begin_payload(
        &mut self,
        i: usize,
        fh: FrameHeader,
        start_ns: u64,
        first_ts: u64,
        ts: u64,
        sink: &mut Sink,
    ) {
        let d = &mut self.dirs[i];
        let keep_max = match fh.ty {
            // Body capture: the payload (bounded; the pad length byte and padding too).
            DATA if sink.body_limit > 0 => (fh.len as usize).min(sink.body_limit + 256),
            DATA if fh.flags & FLAG_PADDED != 0 => 1,
            HEADERS | PUSH_PROMISE => MAX_HEAD_BYTES,
            CONTINUATION => {
                MAX_HEAD_BYTES.saturating_sub(d.block.as_ref().map_or(0, |b| b.data.len()))
            }
            SETTINGS => 6 * MAX_SETTINGS,
            RST_STREAM => 4,
            GOAWAY => 8,
            _ => 0,
        };
        d.frame = FrameState::Payload(Payload {
            fh,
            keep: Vec::with_capacity(keep_max.min(fh.len as usize)),
            keep_max,
            remaining: fh.len,
            truncated: false,
            start_ns,
            ts: first_ts,
        });
        if fh.len == 0 {
            self.end_payload(i, ts, sink);
        }
    }

    /// The current frame's payload has been read (or skipped): handle the frame.
    fn end_payload(&mut self, i: usize, ts: u64, sink: &mut Sink) {
        let FrameState::Payload(p) =
            std::mem::replace(&mut self.dirs[i].frame, FrameState::fresh())
        else {
            return;
        };
        let dir = self.dirs[i].dir;
        let fh = p.fh;
        if let Some(b) = self.dirs[i].block.take() {
            if fh.ty == CONTINUATION && fh.stream == b.stream {
                self.dirs[i].block = Some(b);
            } else {
                sink.error(format!(
                    "HTTP/2 {}: header block of stream {} interrupted by a frame of type {}",
                    dir_name(dir),
                    b.stream,
                    fh.ty
                ));
                let b = Block {
                    broken: Some("header block interrupted"),
                    ..b
                };
                self.finish_block(i, b, ts, sink);
            }
        }
        // Bytes of the payload that were not kept although they were captured.
        let oversize = !p.truncated && p.keep.len() < fh.len as usize;
        match fh.ty {
            DATA => self.on_data(dir, fh, &p.keep, p.truncated, ts, sink),
            HEADERS | PUSH_PROMISE => {
                let mut off = 0usize;
                let mut pad = 0usize;
                let mut broken = None;
                if fh.flags & FLAG_PADDED != 0 {
                    match p.keep.first() {
                        Some(&n) => pad = usize::from(n),
                        None => broken = Some("header block cut by a capture gap"),
                    }
                    off += 1;
                }
                if fh.ty == HEADERS && fh.flags & FLAG_PRIORITY != 0 {
                    off += 5;
                }
                let mut promised = None;
                if fh.ty == PUSH_PROMISE {
                    promised = p
                        .keep
                        .get(off..off + 4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff);
                    off += 4;
                    if promised.is_none() {
                        // The promised id was not captured: nothing to attach the block to,
                        // but it still has to go through (and break) the HPACK state.
                        promised = Some(0);
                    }
                }
                let end = if p.truncated {
                    p.keep.len()
                } else {
                    (fh.len as usize).saturating_sub(pad)
                };
                if p.truncated {
                    broken = broken.or(Some("header block cut by a capture gap"));
                } else if oversize {
                    broken = Some("header block larger than 64 KiB");
                } else if off > end {
                    broken = Some("bad padding in a HEADERS frame");
                }
                let data = match (broken, p.keep.get(off..end)) {
                    (None, Some(b)) => b.to_vec(),
                    _ => Vec::new(),
                };
                let block = Block {
                    stream: fh.stream,
                    promised,
                    end_stream: fh.ty == HEADERS && fh.flags & FLAG_END_STREAM != 0,
                    data,
                    broken,
                    wire: u64::from(fh.len),
                    start_ns: p.start_ns,
                    ts: p.ts,
                };
                if fh.flags & FLAG_END_HEADERS != 0 {
                    self.finish_block(i, block, ts, sink);
                } else {
                    self.dirs[i].block = Some(block);
                }
            }
            CONTINUATION => match self.dirs[i].block.take() {
                Some(mut b) => {
                    b.wire = b.wire.saturating_add(u64::from(fh.len));
                    if p.truncated {
                        b.broken = b.broken.or(Some("header block cut by a capture gap"));
                    } else if oversize {
                        b.broken = b.broken.or(Some("header block larger than 64 KiB"));
                    }
                    if b.broken.is_none() {
                        b.data.extend_from_slice(&p.keep);
                    } else {
                        b.data = Vec::new();
                    }
                    if fh.flags & FLAG_END_HEADERS != 0 {
                        self.finish_block(i, b, ts, sink);
                    } else {
                        self.dirs[i].block = Some(b);
                    }
                }
                None => {
                    sink.error(format!(
                        "HTTP/2 {}: CONTINUATION without a header block; HPACK restarted",
                        dir_name(dir)
                    ));
                    self.reset_hpack(i);
                }
            },
            RST_STREAM => {
                let code = p
                    .keep
                    .get(..4)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if let Some(s) = self.streams.get(&fh.stream) {
                    let _ = s;
                    let why = format!(
                        "RST_STREAM {} from the {}",
                        error_name(code),
                        match dir {
                            Direction::Send => "client",
                            Direction::Recv => "server",
                        }
                    );
                    self.finish_stream(fh.stream, Some(&why), sink);
                }
            }
            SETTINGS if fh.flags & FLAG_ACK == 0 => {
                let other = 1 - i;
                for e in p.keep.chunks_exact(6) {
                    let id = u16::from_be_bytes([e[0], e[1]]);
                    let v = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
                    match id {
                        SETTINGS_HEADER_TABLE_SIZE => {
                            let allowed = (v as usize).min(MAX_HPACK_TABLE);
                            self.dirs[other].hpack_allowed = allowed;
                            self.dirs[other].hpack.set_max_allowed_table_size(allowed);
                        }
                        SETTINGS_MAX_FRAME_SIZE => {
                            self.dirs[other].max_frame = v.clamp(DEFAULT_MAX_FRAME, 0xff_ffff);
                        }
                        _ => {}
                    }
                }
            }
            GOAWAY => {
                if let Some(b) = p.keep.get(..8) {
                    let last = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff;
                    let code = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                    let from_server = dir == Direction::Recv;
                    self.goaway = Some(GoAway {
                        from_server,
                        last_stream_id: last,
                        error_code: code,
                    });
                    sink.error(format!(
                        "HTTP/2 GOAWAY from the {}: last stream {last}, {}",
                        if from_server { "server" } else { "client" },
                        error_name(code)
                    ));
                    if from_server {
                        let refused: Vec<u32> = self
                            .streams
                            .range(last.saturating_add(1)..)
                            .filter(|(id, s)| *id % 2 == 1 && !s.resp_final)
                            .map(|(id, _)| *id)
                            .collect();
                        for id in refused {
                            self.finish_stream(id, Some("refused by GOAWAY"), sink);
                        }
                    }
                }
            }
            _ => {} // PRIORITY, PING, WINDOW_UPDATE, unknown types
        }
    }

    fn on_data(&mut self, dir: Direction, fh: FrameHeader, keep: &[u8], truncated: bool, ts: u64, sink: &mut Sink) {
        let len = u64::from(fh.len);
        let mut approximate = false;
        let body = if fh.flags & FLAG_PADDED != 0 {
            match keep.first() {
                Some(&pad) if u64::from(pad) < len => len - 1 - u64::from(pad),
                Some(_) => {
                    sink.error(format!(
                        "HTTP/2 {}: DATA padding longer than the frame",
                        dir_name(dir)
                    ));
                    0
                }
                // The pad length itself fell into a gap: count the rest.
                None => {
                    approximate = true;
                    len.saturating_sub(1)
                }
            }
        } else {
            len
        };
        let Some(s) = self.streams.get_mut(&fh.stream) else {
            return;
        };
        if approximate {
            s.ex.mark_partial("DATA padding length not captured: body size approximate");
        }
        if sink.body_limit > 0 && body > 0 {
            let padded = fh.flags & FLAG_PADDED != 0;
            let from = usize::from(padded);
            let to = (from + body as usize).min(keep.len());
            if truncated || approximate {
                // Bytes fell into a capture gap: which ones is unknown.
                s.ex.body_missing(dir, sink.body_limit);
            } else {
                s.ex.capture_body(dir, keep.get(from..to).unwrap_or_default(), sink.body_limit, &mut sink.budget);
                if to < from + body as usize {
                    // More than was kept of this frame.
                    s.ex.body_missing(dir, sink.body_limit);
                }
            }
        }
        let end = fh.flags & FLAG_END_STREAM != 0;
        match dir {
            Direction::Send => {
                s.ex.request_body_bytes = s.ex.request_body_bytes.saturating_add(body);
                s.ex.set_request_end(ts);
                if end {
                    s.req_done = true;
                }
            }
            Direction::Recv => {
                s.ex.response_body_bytes = s.ex.response_body_bytes.saturating_add(body);
                s.ex.set_response_end(ts);
                if end {
                    self.finish_stream(fh.stream, None, sink);
                }
            }
        }
    }

    fn finish_block(&mut self, i: usize, block: Block, ts: u64, sink: &mut Sink) {
        let dir = self.dirs[i].dir;
        let mut broken = block.broken;
        let mut decoded = None;
        if broken.is_none() {
            match decode(&mut self.dirs[i].hpack, &block.data) {
                Ok(d) => decoded = Some(d),
                Err(e) => {
                    sink.error(format!(
                        "HTTP/2 {}: HPACK decoding of stream {} failed ({e}); HPACK restarted",
                        dir_name(dir),
                        block.stream
                    ));
                    broken = Some("header block not decodable (HPACK)");
                }
            }
        }
        if let Some(why) = block.broken {
            sink.error(format!(
                "HTTP/2 {}: stream {}: {why}; HPACK restarted",
                dir_name(dir),
                block.stream
            ));
        }
        if broken.is_some() {
            self.reset_hpack(i);
        }
        if let Some(d) = &decoded
            && d.fields.dropped
        {
            sink.error(format!(
                "HTTP/2 {}: stream {}: header list longer than kept",
                dir_name(dir),
                block.stream
            ));
        }
        match (dir, block.promised) {
            (Direction::Recv, Some(p)) => self.on_push(block, p, decoded, broken, ts, sink),
            (Direction::Send, Some(_)) => {}
            (Direction::Send, None) => self.on_request_headers(block, decoded, broken, ts, sink),
            (Direction::Recv, None) => self.on_response_headers(block, decoded, broken, ts, sink),
        }
    }

    fn open_stream(&mut self, id: u32, start_ns: u64, ts: u64, sink: &mut Sink) -> bool {
        if id == 0 {
            return false;
        }
        if !self.streams.contains_key(&id) {
            if self.streams.len() >= MAX_STREAMS
                && let Some((&old, _)) = self.streams.iter().next()
            {
                sink.error(format!(
                    "HTTP/2: more than {MAX_STREAMS} streams open; stream {old} given up"
                ));
                self.finish_stream(old, Some("given up: too many streams open at once"), sink);
            }
            let mut ex = HttpExchange::new(Protocol::Http2);
            ex.stream_id = Some(id);
            ex.request_start_ns = start_ns;
            ex.request_end_ns = ts;
            self.streams.insert(
                id,
                Stream {
                    ex,
                    has_request: false,
                    req_done: false,
                    resp_final: false,
                },
            );
            self.max_stream = self.max_stream.max(id);
        }
        true
    }

    fn on_request_headers(
        &mut self,
        block: Block,
        decoded: Option<Decoded>,
        broken: Option<&str>,
        ts: u64,
        sink: &mut Sink,
    ) {
        let id = block.stream;
        if id.is_multiple_of(2) || !self.open_stream(id, block.start_ns, ts, sink) {
            return;
        }
        self.first_request.get_or_insert(id);
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.ex.request_header_bytes = s.ex.request_header_bytes.saturating_add(block.wire);
        s.ex.set_request_end(ts);
        if !s.has_request {
            s.has_request = true;
            match decoded {
                Some(d) => apply_request(&mut s.ex, d),
                None => {
                    s.ex.mark_partial(&format!("request {}", broken.unwrap_or("headers lost")))
                }
            }
        }
        if block.end_stream {
            s.req_done = true;
        }
    }

    fn on_response_headers(
        &mut self,
        block: Block,
        decoded: Option<Decoded>,
        broken: Option<&str>,
        ts: u64,
        sink: &mut Sink,
    ) {
        let id = block.stream;
        if id == 0 {
            return;
        }
        if !self.streams.contains_key(&id) {
            if !self.open_stream(id, block.start_ns, block.start_ns, sink) {
                return;
            }
            if let Some(s) = self.streams.get_mut(&id) {
                s.req_done = true;
                s.ex.mark_partial("request not captured");
            }
        }
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.ex.response_header_bytes = s.ex.response_header_bytes.saturating_add(block.wire);
        s.ex.set_response_end(ts);
        match decoded {
            None => {
                if !s.resp_final {
                    s.resp_final = true;
                    s.ex.response_start_ns = Some(block.ts);
                }
                s.ex.mark_partial(&format!("response {}", broken.unwrap_or("headers lost")));
            }
            Some(d) => {
                let status = d
                    .status
                    .as_deref()
                    .and_then(|v| v.trim().parse::<u16>().ok());
                let interim = status.is_some_and(|c| (100..200).contains(&c));
                if !s.resp_final && !interim {
                    s.resp_final = true;
                    s.ex.status = status;
                    s.ex.response_start_ns = Some(block.ts);
                    s.ex.response_headers = d.fields.fields;
                    if status.is_none() {
                        s.ex.mark_partial("response without a valid :status");
                    }
                }
            }
        }
        if block.end_stream {
            self.finish_stream(id, None, sink);
        }
    }

    fn on_push(
        &mut self,
        block: Block,
        promised: u32,
        decoded: Option<Decoded>,
        broken: Option<&str>,
        ts: u64,
        sink: &mut Sink,
    ) {
        if promised == 0 || promised % 2 == 1 || self.streams.contains_key(&promised) {
            return;
        }
        if !self.open_stream(promised, block.start_ns, ts, sink) {
            return;
        }
        let Some(s) = self.streams.get_mut(&promised) else {
            return;
        };
        s.has_request = true;
        s.req_done = true;
        s.ex.request_header_bytes = block.wire;
        match decoded {
            Some(d) => apply_request(&mut s.ex, d),
            None => s.ex.mark_partial(&format!(
                "pushed request {}",
                broken.unwrap_or("headers lost")
            )),
        }
    }

    fn finish_stream(&mut self, id: u32, why: Option<&str>, sink: &mut Sink) {
        if let Some(mut s) = self.streams.remove(&id) {
            if let Some(w) = why {
                s.ex.mark_partial(w);
            }
            sink.emit(s.ex);
        }
    }

    fn reset_hpack(&mut self, i: usize) {
        let allowed = self.dirs[i].hpack_allowed;
        self.dirs[i].hpack = new_decoder(allowed);
    }

    fn desync(&mut self, i: usize, why: &str, sink: &mut Sink) {
        let dir = self.dirs[i].dir;
        sink.error(format!(
            "HTTP/2 {}: {why}; frame boundaries lost, direction skipped until a chunk starts \
             at a frame",
            dir_name(dir)
        ));
        let d = &mut self.dirs[i];
        d.desync = true;
        d.frame = FrameState::fresh();
        d.preface_left = 0;
        d.block = None;
        let why = format!("{} bytes lost in a capture gap", dir_name(dir));
        for s in self.streams.values_mut() {
            if dir == Direction::Recv || !s.req_done {
                s.ex.mark_partial(&why);
            }
        }
    }

    /// Whether `data` starts a frame sequence that fits the connection's state; if so,
    /// decoding of that direction restarts there.
    fn try_resync(&mut self, dir: Direction, data: &[u8], gap: u64) -> bool {
        let i = idx(dir);
        let max_frame = self.dirs[i].max_frame;
        let mut opened: Vec<u32> = Vec::new();
        let ok = frame_chain(data, gap, |fh| {
            if fh.len > max_frame || !frame_shape_ok(fh) {
                return false;
            }
            let tracked = |id: u32| self.streams.contains_key(&id) || opened.contains(&id);
            match (fh.ty, dir) {
                (DATA, Direction::Send) => {
                    self.streams.get(&fh.stream).is_some_and(|s| !s.req_done)
                        || opened.contains(&fh.stream)
                }
                (DATA, Direction::Recv) | (HEADERS, Direction::Recv) => tracked(fh.stream),
                (HEADERS, Direction::Send) => {
                    if self.streams.get(&fh.stream).is_some_and(|s| !s.req_done) {
                        true
                    } else if fh.stream % 2 == 1 && fh.stream > self.max_stream {
                        if opened.len() < 64 {
                            opened.push(fh.stream);
                        }
                        true
                    } else {
                        false
                    }
                }
                (RST_STREAM | WINDOW_UPDATE | PRIORITY, _) => {
                    fh.stream
                        <= self
                            .max_stream
                            .max(opened.iter().copied().max().unwrap_or(0))
                }
                (SETTINGS | PING | GOAWAY, _) => true,
                _ => false,
            }
        });
        if ok {
            let d = &mut self.dirs[i];
            d.desync = false;
            d.frame = FrameState::fresh();
            d.block = None;
            self.reset_hpack(i);
        }
        ok
    }
}

/// Lengths, flags and stream ids that fit the frame's type (RFC 9113, section 6). CONTINUATION
/// and PUSH_PROMISE never start a sequence we can use.
fn frame_shape_ok(fh: &FrameHeader) -> bool {
    match fh.ty {
        DATA => fh.stream != 0 && fh.flags & !(FLAG_END_STREAM | FLAG_PADDED) == 0,
        HEADERS => {
            fh.stream != 0
                && fh.flags & !(FLAG_END_STREAM | FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY)
                    == 0
        }
        PRIORITY => fh.stream != 0 && fh.len == 5 && fh.flags == 0,
        RST_STREAM => fh.stream != 0 && fh.len == 4 && fh.flags == 0,
        SETTINGS => {
            fh.stream == 0
                && fh.flags & !FLAG_ACK == 0
                && fh.len.is_multiple_of(6)
                && (fh.flags & FLAG_ACK == 0 || fh.len == 0)
        }
        PING => fh.stream == 0 && fh.len == 8 && fh.flags & !FLAG_ACK == 0,
        GOAWAY => fh.stream == 0 && fh.len >= 8 && fh.flags == 0,
        WINDOW_UPDATE => fh.len == 4 && fh.flags == 0,
        _ => false,
    }
}

/// Walks the frame headers of one chunk (`data` captured, then `gap` unknown bytes): every
/// header must be captured and pass `check`, and the last frame must end at or after the end of
/// the chunk (or its header continue in the next chunk).
fn frame_chain(data: &[u8], gap: u64, mut check: impl FnMut(&FrameHeader) -> bool) -> bool {
    let total = data.len() as u64 + gap;
    let mut off = 0u64;
    let mut frames = 0u32;
    while off < total {
        let o = off as usize;
        if off + 9 > data.len() as u64 {
            // A header not (fully) captured: fine only at the very end of a gapless chunk.
            return frames > 0 && gap == 0;
        }
        let mut b = [0u8; 9];
        b.copy_from_slice(&data[o..o + 9]);
        let fh = FrameHeader::parse(&b);
        if b[5] & 0x80 != 0 || !check(&fh) {
            return false;
        }
        frames += 1;
        off += 9 + u64::from(fh.len);
    }
    frames > 0
}

/// The first client chunk of a connection that was open before the capture started: does it
/// look like HTTP/2 frames?
pub(super) fn looks_like_frames(data: &[u8], gap: u64) -> bool {
    frame_chain(data, gap, |fh| {
        fh.len <= DEFAULT_MAX_FRAME
            && frame_shape_ok(fh)
            && match fh.ty {
                DATA | HEADERS => fh.stream % 2 == 1,
                _ => true,
            }
    })
}

fn decode(
    hpack: &mut Decoder<'static>,
    block: &[u8],
) -> Result<Decoded, loona_hpack::decoder::DecoderError> {
    let mut d = Decoded::default();
    hpack.decode_with_cb(block, |name, value| d.add(&name, &value))?;
    Ok(d)
}

pub(crate) fn apply_request(ex: &mut HttpExchange, d: Decoded) {
    ex.method = d.method;
    ex.scheme = d.scheme;
    ex.path = d.path;
    // No user-info (an `:authority` of `user:pw@host`) past the decoder.
    ex.authority = d
        .authority
        .or_else(|| d.fields.fields.iter().find(|(n, _)| n == "host").map(|(_, v)| v.clone()))
        .map(|a| crate::redact::authority(&a));
    ex.request_headers = d.fields.fields;
}

/// RFC 9113, section 7.
fn error_name(code: u32) -> String {
    let name = match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        other => return format!("error 0x{other:x}"),
    };
    name.to_string()
}
