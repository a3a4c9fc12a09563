//! Streams by type (RFC 9114 6): a client-initiated bidirectional stream is a request stream
//! (one exchange); a unidirectional one says its type in its first varint: control (0x00:
//! SETTINGS, GOAWAY, MAX_PUSH_ID, CANCEL_PUSH), push (0x01: counted, not decoded), QPACK encoder
//! (0x02: its bytes build the sender's dynamic table) and decoder (0x03: acknowledgements, not
//! needed to decode), any other (reserved "grease" types included) skipped. Server-initiated
//! bidirectional streams have no meaning in HTTP/3 and are skipped.

use std::collections::VecDeque;

use super::frames::{self, Event, Frame, FrameReader, VarintAcc};
use super::qpack::Section;
use super::reassembly::{Piece, Reassembly};
use super::{H3Connection, H3GoAway, H3Settings, HOLE_WAIT_NS, MAX_BLOCKED_SECTIONS, MAX_STREAMS, MAX_UNI_STREAMS, side_name};
use crate::decode::http::h2::{Decoded, apply_request};
use crate::decode::http::{HttpExchange, Protocol};

const SETTINGS_QPACK_MAX_TABLE_CAPACITY: u64 = 0x01;
const SETTINGS_MAX_FIELD_SECTION_SIZE: u64 = 0x06;
const SETTINGS_QPACK_BLOCKED_STREAMS: u64 = 0x07;
const H3_NO_ERROR: u64 = 0x100;

pub(super) struct Stream {
    /// [client->server, server->client].
    pub(super) halves: [Half; 2],
    role: Role,
}

#[derive(Default)]
pub(super) struct Half {
    pub(super) rx: Reassembly,
    reader: FrameReader,
    /// HEADERS frames waiting (in order) for QPACK entries.
    waiting: VecDeque<Frame>,
    /// The stream ended while sections waited.
    fin_pending: bool,
}

pub(super) struct Request {
    ex: HttpExchange,
    req_any: bool,
    req_headers: bool,
    pub(super) resp_final: bool,
}

enum Role {
    Request(Box<Request>),
    /// A unidirectional stream whose type is not read yet.
    Uni(VarintAcc),
    Control,
    Encoder,
    /// Decoder, push, unknown types, server-initiated bidirectional: bytes not read.
    Skip,
}

impl Stream {
    pub(super) fn is_request(&self) -> bool {
        matches!(self.role, Role::Request(_))
    }

    pub(super) fn request(&self) -> Option<&Request> {
        match &self.role {
            Role::Request(r) => Some(r),
            _ => None,
        }
    }
}

fn who(i: usize) -> &'static str {
    if i == 0 { "client" } else { "server" }
}

impl H3Connection {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_stream(&mut self, i: usize, ts: u64, id: u64, offset: u64, data: Vec<u8>, fin: bool, missing: u64) {
        // Which direction may carry this stream's bytes: bidirectional ones both (the client
        // opens them), unidirectional ones their initiator's.
        let ok = match id % 4 {
            0 | 1 => true,
            2 => i == 0,
            _ => i == 1,
        };
        if !ok {
            self.sink.error(format!("HTTP/3 {}: STREAM frame on stream {id}, which only the peer sends on", side_name(i)));
            return;
        }
        if self.is_closed(id) || !self.open(id, ts) {
            return;
        }
        let Some(s) = self.streams.get_mut(&id) else { return };
        if missing > 0 {
            self.stats.lost_stream_bytes[i] = self.stats.lost_stream_bytes[i].saturating_add(missing);
        }
        if let Some(p) = s.halves[i].rx.insert(offset, data, missing, fin, ts) {
            self.sink.error(format!("HTTP/3 {} stream {id}: {p}", side_name(i)));
        }
        if self.encoder[i] == Some(id) {
            self.qpack[i].high = s.halves[i].rx.high();
        }
        self.drain(id, i);
    }

    /// Starts tracking stream `id`; false when it cannot be (bounds).
    fn open(&mut self, id: u64, ts: u64) -> bool {
        if self.streams.contains_key(&id) {
            return true;
        }
        let role = match id % 4 {
            0 => {
                let requests = self.streams.values().filter(|s| s.is_request()).count();
                if requests >= MAX_STREAMS
                    && let Some(old) = self.streams.iter().find(|(_, s)| s.is_request()).map(|(id, _)| *id)
                {
                    self.sink.error(format!("HTTP/3: more than {MAX_STREAMS} request streams open; stream {old} given up"));
                    self.finish(old, Some("given up: too many streams open at once"));
                }
                let mut ex = HttpExchange::new(Protocol::Http3);
                ex.stream_id = u32::try_from(id).ok();
                ex.request_start_ns = ts;
                ex.request_end_ns = ts;
                self.stats.request_streams += 1;
                self.first_request = Some(self.first_request.map_or(id, |f| f.min(id)));
                Role::Request(Box::new(Request { ex, req_any: false, req_headers: false, resp_final: false }))
            }
            1 => {
                self.sink.error(format!("HTTP/3: server-initiated bidirectional stream {id} (not used by HTTP/3): skipped"));
                Role::Skip
            }
            _ => {
                if self.uni_streams >= MAX_UNI_STREAMS {
                    self.sink.error(format!("HTTP/3: more than {MAX_UNI_STREAMS} unidirectional streams: stream {id} ignored"));
                    self.mark_closed(id);
                    return false;
                }
                self.uni_streams += 1;
                Role::Uni(VarintAcc::default())
            }
        };
        self.streams.insert(id, Stream { halves: Default::default(), role });
        true
    }

    /// Hands on what stream `id`'s direction `i` has in order.
    pub(super) fn drain(&mut self, id: u64, i: usize) {
        loop {
            let Some(s) = self.streams.get_mut(&id) else { return };
            let Some(piece) = s.halves[i].rx.pop() else { return };
            if let Piece::Lost(n, _) = piece
                && n > 0
            {
                self.sink.error(format!("HTTP/3 {} stream {id}: {n} bytes lost", side_name(i)));
            }
            self.on_piece(id, i, piece);
        }
    }

    fn on_piece(&mut self, id: u64, i: usize, piece: Piece) {
        let Some(s) = self.streams.get_mut(&id) else { return };
        // A unidirectional stream's type first.
        if let Role::Uni(acc) = &mut s.role {
            let rest = match &piece {
                Piece::Data(d, ts) => {
                    let (k, ty) = acc.feed(d);
                    match ty {
                        Some(ty) => Some((ty, d[k..].to_vec(), *ts)),
                        None => return,
                    }
                }
                Piece::Lost(..) => {
                    s.role = Role::Skip;
                    self.sink.error(format!("HTTP/3 {} stream {id}: its type was lost: skipped", side_name(i)));
                    return;
                }
                Piece::Fin(_) => return,
            };
            if let Some((ty, rest, ts)) = rest {
                self.set_uni_type(id, i, ty);
                if !rest.is_empty() {
                    self.on_piece(id, i, Piece::Data(rest, ts));
                }
            }
            return;
        }
        let Some(s) = self.streams.get_mut(&id) else { return };
        match &mut s.role {
            Role::Uni(_) | Role::Skip => {}
            Role::Encoder => match piece {
                Piece::Data(d, _) => {
                    if let Some(e) = self.qpack[i].encoder_bytes(&d) {
                        self.sink.error(format!("HTTP/3 {} QPACK encoder stream: {e}; no further insert read", side_name(i)));
                    }
                    self.retry_blocked(i);
                }
                Piece::Lost(..) => {
                    self.qpack[i].lost();
                    self.sink.error(format!(
                        "HTTP/3 {} QPACK encoder stream: bytes lost; field sections needing later entries fail",
                        side_name(i)
                    ));
                    self.retry_blocked(i);
                }
                Piece::Fin(_) => self.sink.error(format!("HTTP/3 {}: QPACK encoder stream closed", side_name(i))),
            },
            Role::Control => {
                let mut events = Vec::new();
                match piece {
                    Piece::Data(d, ts) => s.halves[i].reader.data(&d, ts, &mut events),
                    Piece::Lost(n, _) => s.halves[i].reader.lost(n, &mut events),
                    Piece::Fin(_) => self.sink.error(format!("HTTP/3 {}: control stream closed", side_name(i))),
                }
                for ev in events {
                    self.on_control(i, ev);
                }
            }
            Role::Request(r) => {
                let mut events = Vec::new();
                let h = &mut s.halves[i];
                match &piece {
                    Piece::Data(d, ts) => h.reader.data(d, *ts, &mut events),
                    Piece::Lost(n, _) => h.reader.lost(*n, &mut events),
                    Piece::Fin(_) => {}
                }
                if let Piece::Lost(1.., _) = piece {
                    r.ex.mark_partial(if i == 0 { "request bytes lost in a capture gap" } else { "response bytes lost in a capture gap" });
                }
                if let Piece::Data(_, ts) | Piece::Lost(_, ts) = piece {
                    if i == 0 {
                        if !r.req_any {
                            r.req_any = true;
                            r.ex.request_start_ns = ts;
                        }
                        r.ex.set_request_end(ts);
                    } else {
                        r.ex.set_response_end(ts);
                    }
                }
                for ev in events {
                    self.on_request_event(id, i, ev);
                }
                if let Piece::Fin(_) = piece {
                    self.on_request_fin(id, i);
                }
            }
        }
    }

    fn set_uni_type(&mut self, id: u64, i: usize, ty: u64) {
        let role = match ty {
            0x00 if self.control[i].is_none() => {
                self.control[i] = Some(id);
                Role::Control
            }
            0x02 if self.encoder[i].is_none() => {
                self.encoder[i] = Some(id);
                if let Some(s) = self.streams.get(&id) {
                    self.qpack[i].high = s.halves[i].rx.high();
                }
                Role::Encoder
            }
            0x00 | 0x02 => {
                self.sink.error(format!("HTTP/3 {}: a second {} stream ({id}): skipped", side_name(i), if ty == 0 { "control" } else { "QPACK encoder" }));
                Role::Skip
            }
            0x01 => {
                self.stats.push_streams += 1;
                Role::Skip
            }
            0x03 => Role::Skip,
            _ => {
                self.stats.unknown_streams += 1;
                if !frames::is_grease(ty) {
                    self.sink.error(format!("HTTP/3 {}: stream {id} of unknown type 0x{ty:x}: skipped", side_name(i)));
                }
                Role::Skip
            }
        };
        if let Some(s) = self.streams.get_mut(&id) {
            s.role = role;
        }
    }

    fn on_control(&mut self, i: usize, ev: Event) {
        match ev {
            Event::Frame(f) if f.ty == frames::SETTINGS => {
                let mut set = H3Settings::default();
                let mut acc = VarintAcc::default();
                let mut vals = Vec::new();
                let mut rest = &f.payload[..];
                while !rest.is_empty() {
                    let (k, v) = acc.feed(rest);
                    rest = &rest[k..];
                    vals.extend(v);
                }
                for pair in vals.chunks_exact(2) {
                    match pair[0] {
                        SETTINGS_QPACK_MAX_TABLE_CAPACITY => set.qpack_max_table_capacity = Some(pair[1]),
                        SETTINGS_MAX_FIELD_SECTION_SIZE => set.max_field_section_size = Some(pair[1]),
                        SETTINGS_QPACK_BLOCKED_STREAMS => set.qpack_blocked_streams = Some(pair[1]),
                        _ => set.others = set.others.saturating_add(1),
                    }
                }
                if f.truncated || f.oversize {
                    self.sink.error(format!("HTTP/3 {}: SETTINGS not all read", side_name(i)));
                }
                if self.settings[i].is_some() {
                    self.sink.error(format!("HTTP/3 {}: a second SETTINGS frame: ignored", side_name(i)));
                    return;
                }
                // This side's limit is on the peer's encoder; absent, it is 0 (no dynamic table).
                self.qpack[1 - i].set_max_capacity(set.qpack_max_table_capacity.unwrap_or(0));
                self.settings[i] = Some(set);
                self.retry_blocked(1 - i);
            }
            Event::Frame(f) if f.ty == frames::GOAWAY => {
                let (_, id) = VarintAcc::default().feed(&f.payload);
                let Some(id) = id else { return };
                let from_server = i == 1;
                self.goaway = Some(H3GoAway { from_server, id });
                self.sink.error(format!("HTTP/3 GOAWAY from the {}: {id}", who(i)));
                if from_server {
                    let refused: Vec<u64> = self
                        .streams
                        .range(id..)
                        .filter(|(_, s)| s.request().is_some_and(|r| !r.resp_final))
                        .map(|(id, _)| *id)
                        .collect();
                    for id in refused {
                        self.finish(id, Some("refused by GOAWAY"));
                    }
                }
            }
            Event::Frame(f) if matches!(f.ty, frames::DATA | frames::HEADERS | frames::PUSH_PROMISE) => {
                self.sink.error(format!("HTTP/3 {}: frame type 0x{:x} on the control stream: skipped", side_name(i), f.ty));
            }
            Event::Data(_) | Event::DataLost(_) => {}
            Event::Desync(why) => self.sink.error(format!("HTTP/3 {} control stream: {why}", side_name(i))),
            Event::Frame(_) => {} // MAX_PUSH_ID, CANCEL_PUSH, reserved and unknown types
        }
    }

    fn request_mut(&mut self, id: u64) -> Option<&mut Request> {
        match &mut self.streams.get_mut(&id)?.role {
            Role::Request(r) => Some(r),
            _ => None,
        }
    }

    fn on_request_event(&mut self, id: u64, i: usize, ev: Event) {
        let limit = self.sink.body_limit;
        let dir = if i == 0 { super::Direction::Send } else { super::Direction::Recv };
        match ev {
            Event::Data(bytes) => {
                let Some(s) = self.streams.get_mut(&id) else { return };
                let Role::Request(r) = &mut s.role else { return };
                let n = bytes.len() as u64;
                if i == 0 {
                    r.ex.request_body_bytes = r.ex.request_body_bytes.saturating_add(n);
                } else {
                    r.ex.response_body_bytes = r.ex.response_body_bytes.saturating_add(n);
                }
                r.ex.capture_body(dir, &bytes, limit, &mut self.sink.budget);
            }
            Event::DataLost(n) => {
                let Some(r) = self.request_mut(id) else { return };
                if i == 0 {
                    r.ex.request_body_bytes = r.ex.request_body_bytes.saturating_add(n);
                } else {
                    r.ex.response_body_bytes = r.ex.response_body_bytes.saturating_add(n);
                }
                r.ex.body_missing(dir, limit);
            }
            Event::Desync(why) => {
                let Some(r) = self.request_mut(id) else { return };
                r.ex.mark_partial(&format!("{} frames lost in a capture gap ({why})", if i == 0 { "request" } else { "response" }));
            }
            Event::Frame(f) => match f.ty {
                frames::HEADERS => self.on_headers_frame(id, i, f),
                frames::PUSH_PROMISE if i == 1 => self.stats.push_promises += 1,
                0x02 | 0x06 | 0x08 | 0x09 | frames::SETTINGS | frames::GOAWAY | frames::MAX_PUSH_ID | frames::CANCEL_PUSH
                | frames::PUSH_PROMISE => {
                    self.sink.error(format!("HTTP/3 {} stream {id}: frame type 0x{:x} not allowed on a request stream: skipped", side_name(i), f.ty));
                }
                _ => {} // reserved (grease) and unknown types
            },
        }
    }

    fn on_headers_frame(&mut self, id: u64, i: usize, f: Frame) {
        let Some(s) = self.streams.get_mut(&id) else { return };
        let Role::Request(r) = &mut s.role else { return };
        if i == 0 {
            r.ex.request_header_bytes = r.ex.request_header_bytes.saturating_add(f.len);
        } else {
            r.ex.response_header_bytes = r.ex.response_header_bytes.saturating_add(f.len);
            r.ex.set_response_end(f.ts);
        }
        if !s.halves[i].waiting.is_empty() {
            self.queue_blocked(id, i, f);
            return;
        }
        self.decode_headers(id, i, f);
    }

    /// Decodes (or queues) one HEADERS frame; false when it is blocked (and queued).
    fn decode_headers(&mut self, id: u64, i: usize, f: Frame) -> bool {
        let result = if f.truncated {
            Err("cut by a capture gap".to_string())
        } else if f.oversize {
            Err("larger than 64 KiB".to_string())
        } else {
            match self.qpack[i].section(&f.payload) {
                Section::Decoded(d) => Ok(d),
                Section::Blocked => {
                    self.queue_blocked(id, i, f);
                    return false;
                }
                Section::Failed(e) => {
                    self.sink.error(format!("HTTP/3 {} stream {id}: QPACK: {e}", side_name(i)));
                    Err(format!("not decodable: {e}"))
                }
            }
        };
        self.apply_headers(id, i, f.ts, result);
        true
    }

    fn queue_blocked(&mut self, id: u64, i: usize, f: Frame) {
        if self.blocked[i] >= MAX_BLOCKED_SECTIONS {
            self.sink.error(format!("HTTP/3 {} stream {id}: more than {MAX_BLOCKED_SECTIONS} field sections blocked", side_name(i)));
            self.apply_headers(id, i, f.ts, Err(format!("blocked: more than {MAX_BLOCKED_SECTIONS} field sections waited for QPACK entries")));
            return;
        }
        let Some(s) = self.streams.get_mut(&id) else { return };
        s.halves[i].waiting.push_back(f);
        self.blocked[i] += 1;
        self.stats.blocked_sections += 1;
    }

    /// The encoder stream (or SETTINGS) of direction `i` moved: blocked sections may decode.
    pub(super) fn retry_blocked(&mut self, i: usize) {
        if self.blocked[i] == 0 {
            return;
        }
        let ids: Vec<u64> = self.streams.iter().filter(|(_, s)| !s.halves[i].waiting.is_empty()).map(|(id, _)| *id).collect();
        for id in ids {
            while let Some(f) = self.streams.get_mut(&id).and_then(|s| s.halves[i].waiting.pop_front()) {
                self.blocked[i] -= 1;
                if !self.decode_headers(id, i, f) {
                    // Back in the queue, at its end: put it first again.
                    if let Some(s) = self.streams.get_mut(&id)
                        && let Some(f) = s.halves[i].waiting.pop_back()
                    {
                        s.halves[i].waiting.push_front(f);
                    }
                    break;
                }
            }
            self.after_unblock(id, i);
        }
    }

    /// Blocked sections that waited [`HOLE_WAIT_NS`] since their frame (all at `ts` u64::MAX)
    /// fail.
    pub(super) fn expire_blocked(&mut self, ts: u64) {
        for i in 0..2 {
            if self.blocked[i] == 0 {
                continue;
            }
            let ids: Vec<u64> = self
                .streams
                .iter()
                .filter(|(_, s)| s.halves[i].waiting.front().is_some_and(|f| ts.saturating_sub(f.ts) >= HOLE_WAIT_NS || ts == u64::MAX))
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                let frames: Vec<Frame> = match self.streams.get_mut(&id) {
                    Some(s) => s.halves[i].waiting.drain(..).collect(),
                    None => continue,
                };
                self.blocked[i] -= frames.len();
                for f in frames {
                    self.apply_headers(id, i, f.ts, Err("blocked on QPACK entries that never arrived".into()));
                }
                self.after_unblock(id, i);
            }
        }
    }

    /// Ends deferred by waiting sections go on once nothing waits (the response's end waits
    /// for the request's sections too).
    fn after_unblock(&mut self, id: u64, _i: usize) {
        for i in 0..2 {
            let Some(s) = self.streams.get_mut(&id) else { return };
            if s.halves[i].fin_pending && s.halves.iter().all(|h| h.waiting.is_empty()) {
                s.halves[i].fin_pending = false;
                self.on_request_fin(id, i);
            }
        }
    }

    fn apply_headers(&mut self, id: u64, i: usize, ts: u64, result: Result<Decoded, String>) {
        let Some(r) = self.request_mut(id) else { return };
        if i == 0 {
            if r.req_headers {
                if let Err(e) = result {
                    r.ex.mark_partial(&format!("request trailers {e}"));
                }
                return;
            }
            r.req_headers = true;
            match result {
                Ok(d) => apply_request(&mut r.ex, d),
                Err(e) => r.ex.mark_partial(&format!("request headers {e}")),
            }
            return;
        }
        match result {
            Err(e) => {
                if r.resp_final {
                    r.ex.mark_partial(&format!("response trailers {e}"));
                } else {
                    r.resp_final = true;
                    r.ex.response_start_ns = Some(ts);
                    r.ex.set_response_end(ts);
                    r.ex.mark_partial(&format!("response headers {e}"));
                }
            }
            Ok(d) => {
                let status = d.status.as_deref().and_then(|v| v.trim().parse::<u16>().ok());
                let interim = status.is_some_and(|c| (100..200).contains(&c));
                if !r.resp_final && !interim {
                    r.resp_final = true;
                    r.ex.status = status;
                    r.ex.response_start_ns = Some(ts);
                    r.ex.set_response_end(ts);
                    r.ex.response_headers = d.fields.fields;
                    if status.is_none() {
                        r.ex.mark_partial("response without a valid :status");
                    }
                }
            }
        }
    }

    fn on_request_fin(&mut self, id: u64, i: usize) {
        let Some(s) = self.streams.get_mut(&id) else { return };
        let at_boundary = s.halves[i].reader.at_boundary();
        let request_ended = s.halves[0].rx.finished();
        if s.halves.iter().any(|h| !h.waiting.is_empty()) {
            s.halves[i].fin_pending = true;
            return;
        }
        let Role::Request(r) = &mut s.role else { return };
        let side = if i == 0 { "request" } else { "response" };
        if !at_boundary {
            r.ex.mark_partial(&format!("{side} stream ended inside a frame"));
        }
        if i == 0 {
            if !r.req_headers {
                r.ex.mark_partial("request not captured");
            }
            return;
        }
        if !r.req_headers {
            r.ex.mark_partial("request not captured");
        } else if !request_ended {
            r.ex.mark_partial("request not seen to its end");
        }
        if !r.resp_final {
            r.ex.mark_partial("response ended without final headers");
        }
        self.finish(id, None);
    }

    pub(super) fn on_reset(&mut self, i: usize, ts: u64, id: u64, code: u64, final_size: u64) {
        if self.is_closed(id) {
            return;
        }
        let Some(s) = self.streams.get_mut(&id) else { return };
        if let Some(p) = s.halves[i].rx.set_fin(final_size) {
            self.sink.error(format!("HTTP/3 {} stream {id}: RESET_STREAM: {p}", side_name(i)));
        }
        let _ = ts;
        if s.is_request() {
            let why = format!("RESET_STREAM {} from the {}", super::h3_error_name(code), who(i));
            self.finish(id, Some(&why));
        } else {
            self.sink.error(format!("HTTP/3 {}: unidirectional stream {id} reset ({})", side_name(i), super::h3_error_name(code)));
            if self.encoder[i] == Some(id) {
                self.qpack[i].lost();
                self.retry_blocked(i);
            }
        }
    }

    pub(super) fn on_stop_sending(&mut self, i: usize, id: u64, code: u64) {
        if self.is_closed(id) || !self.streams.get(&id).is_some_and(|s| s.is_request()) {
            return;
        }
        let why = format!("STOP_SENDING {} from the {}", super::h3_error_name(code), who(i));
        if i == 0 {
            // The client gives the response up.
            self.finish(id, Some(&why));
        } else if code != H3_NO_ERROR {
            // The server will not read the rest of the request; its response may still come.
            if let Some(r) = self.request_mut(id) {
                r.ex.mark_partial(&why);
            }
        }
    }

    /// Emits stream `id`'s exchange (with `why` as a partial reason) and forgets the stream.
    pub(super) fn finish(&mut self, id: u64, why: Option<&str>) {
        let Some(s) = self.streams.remove(&id) else { return };
        for (i, h) in s.halves.iter().enumerate() {
            self.blocked[i] -= h.waiting.len();
        }
        self.mark_closed(id);
        if let Role::Request(mut r) = s.role {
            if s.halves.iter().any(|h| !h.waiting.is_empty()) {
                r.ex.mark_partial("headers blocked on QPACK entries that never arrived");
            }
            if let Some(w) = why {
                r.ex.mark_partial(w);
            }
            self.sink.emit(r.ex);
        } else {
            self.uni_streams = self.uni_streams.saturating_sub(1);
        }
    }
}
