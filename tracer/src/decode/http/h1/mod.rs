//! HTTP/1.x: heads with `httparse`, bodies by Content-Length, chunked coding or the close.
//!
//! Each direction has its own parser ([`Side`]). Requests open exchanges in order; each
//! response goes to the oldest exchange still waiting for one. When a direction cannot be
//! followed (a parse error, the start of a message inside a capture gap), it is *lost* until a
//! later chunk starts with something that looks like a message start: a request line, or
//! `HTTP/1.x NNN`. Requests and responses nearly always start at the start of a library call,
//! so this finds the next message quickly.
use std::collections::VecDeque;

use super::{Direction, HttpExchange, MAX_HEAD_BYTES, MAX_OUTSTANDING_REQUESTS, Protocol, Sink, dir_name};

mod body;
mod head;

use body::{Body, Chunked, Step};
pub(super) use head::{looks_like_request, looks_like_response};
use head::{Head, field, looks_like_start, parse_head, parse_partial_head, split_target};

pub(super) struct H1 {
    req: Side,
    resp: Side,
    open: VecDeque<Open>,
    next_id: u64,
}

/// An exchange in flight.
struct Open {
    id: u64,
    ex: HttpExchange,
    is_head: bool,
    is_connect: bool,
    /// The final (non-1xx) response head was seen.
    response_final: bool,
}

#[derive(Default)]
struct Side {
    phase: Phase,
    head: Vec<u8>,
    head_start_ns: u64,
    head_ts: u64,
    /// The exchange whose body this side is reading.
    cur: Option<u64>,
}

#[derive(Default)]
enum Phase {
    #[default]
    Head,
    Body(Body),
    /// Skipping until a chunk starts with a message start.
    Lost,
    /// After 101 Switching Protocols or a successful CONNECT: not HTTP any more.
    Tunnel,
}

impl H1 {
    pub(super) fn new() -> Self {
        H1 {
            req: Side::default(),
            resp: Side::default(),
            open: VecDeque::new(),
            next_id: 0,
        }
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
        let mut side = std::mem::take(self.side_mut(dir));
        let mut pos = 0usize;
        let mut chunk_start = true;
        // Every turn consumes bytes or changes the phase; the bound is a safety net.
        let mut turns = 2 * data.len() + 8;
        while pos < data.len() && turns > 0 {
            turns -= 1;
            let rest = &data[pos..];
            match &mut side.phase {
                Phase::Tunnel => pos = data.len(),
                Phase::Lost => {
                    if chunk_start && looks_like_start(dir, rest) {
                        side.phase = Phase::Head;
                    } else {
                        pos = data.len();
                    }
                }
                Phase::Head => pos += self.head_bytes(&mut side, dir, start_ns, ts, rest, sink),
                Phase::Body(body) => {
                    if chunk_start
                        && matches!(body, Body::Blind { .. })
                        && looks_like_start(dir, rest)
                    {
                        self.end_blind(&mut side, dir, sink);
                        side.phase = Phase::Head;
                        continue;
                    }
                    let limit = sink.body_limit;
                    let cur = side.cur;
                    if limit > 0
                        && let (Some(id), Body::Blind { .. }) = (cur, &body)
                        && let Some(o) = self.get(id)
                    {
                        // Framing lost: which bytes are body is a guess; none are kept.
                        o.ex.body_missing(dir, limit);
                    }
                    let step = body.feed(rest, &mut |bytes: &[u8]| {
                        if limit > 0
                            && let Some(o) = cur.and_then(|id| self.get(id))
                        {
                            o.ex.capture_body(dir, bytes, limit, &mut sink.budget);
                        }
                    });
                    pos += step.consumed as usize;
                    self.after_step(&mut side, dir, ts, step, 0, sink);
                }
            }
            chunk_start = false;
        }
        if gap > 0 {
            self.gap(&mut side, dir, ts, gap, sink);
        }
        // The end of a blind body, checked where the call ended.
        if let Phase::Body(Body::Blind {
            length,
            chunked,
            seen,
        }) = &side.phase
        {
            let by_length = length.is_some_and(|l| *seen >= l);
            let by_terminator = *chunked && gap == 0 && data.ends_with(b"0\r\n\r\n");
            if by_length || by_terminator {
                self.end_blind(&mut side, dir, sink);
                side.phase = Phase::Head;
            }
        }
        *self.side_mut(dir) = side;
    }

    pub(super) fn flush(&mut self, sink: &mut Sink) {
        let mut resp = std::mem::take(&mut self.resp);
        if matches!(resp.phase, Phase::Body(Body::UntilClose)) {
            // The close delimits this body: complete.
            if let Some(id) = resp.cur {
                self.finish(id, None, sink);
            }
        } else if matches!(resp.phase, Phase::Body(Body::Blind { .. })) {
            self.end_blind(&mut resp, Direction::Recv, sink);
        }
        while let Some(mut o) = self.open.pop_front() {
            o.ex.mark_partial(if o.response_final {
                "connection closed before the response ended"
            } else {
                "connection closed before a response"
            });
            sink.emit(o.ex);
        }
        self.req = Side::default();
        self.resp = Side::default();
    }

    /// Exchanges begun and not finished yet (a request waiting for its response).
    pub(super) fn open_count(&self) -> usize {
        self.open.len()
    }

    fn side_mut(&mut self, dir: Direction) -> &mut Side {
        match dir {
            Direction::Send => &mut self.req,
            Direction::Recv => &mut self.resp,
        }
    }

    fn get(&mut self, id: u64) -> Option<&mut Open> {
        self.open.iter_mut().find(|o| o.id == id)
    }

    /// Bytes of `rest` used while reading a head.
    fn head_bytes(
        &mut self,
        side: &mut Side,
        dir: Direction,
        start_ns: u64,
        ts: u64,
        rest: &[u8],
        sink: &mut Sink,
    ) -> usize {
        let mut skip = 0;
        if side.head.is_empty() {
            // Empty lines before a message are ignored (RFC 9112, section 2.2).
            while skip < rest.len() && (rest[skip] == b'\r' || rest[skip] == b'\n') {
                skip += 1;
            }
            if skip == rest.len() {
                return skip;
            }
            side.head_start_ns = start_ns;
            side.head_ts = ts;
        }
        let rest = &rest[skip..];
        let before = side.head.len();
        let take = rest.len().min(MAX_HEAD_BYTES - before);
        side.head.extend_from_slice(&rest[..take]);
        match parse_head(dir, &side.head) {
            Ok(Some(head)) => {
                let used = head.len.saturating_sub(before).min(take);
                side.head.clear();
                self.on_head(side, dir, head, ts, None, 0, sink);
                skip + used
            }
            Ok(None) if side.head.len() < MAX_HEAD_BYTES => skip + take,
            Ok(None) => {
                self.lose(side, dir, "message head larger than 64 KiB", sink);
                skip + rest.len()
            }
            Err(e) => {
                let why = format!("HTTP/1 {} head not parseable: {e}", dir_name(dir));
                self.lose(side, dir, &why, sink);
                skip + rest.len()
            }
        }
    }

    /// A complete head (or, with `cut`, the captured part of one whose end fell into a gap of
    /// `gap` bytes).
    #[allow(clippy::too_many_arguments)]
    fn on_head(
        &mut self,
        side: &mut Side,
        dir: Direction,
        head: Head,
        ts: u64,
        cut: Option<&str>,
        gap: u64,
        sink: &mut Sink,
    ) {
        match dir {
            Direction::Send => self.on_request(side, head, ts, cut, gap, sink),
            Direction::Recv => self.on_response(side, head, ts, cut, gap, sink),
        }
    }

    fn on_request(
        &mut self,
        side: &mut Side,
        head: Head,
        ts: u64,
        cut: Option<&str>,
        gap: u64,
        sink: &mut Sink,
    ) {
        let mut ex = HttpExchange::new(Protocol::Http1);
        let method = head.method.clone();
        let (scheme, authority, path) = split_target(head.target.as_deref());
        ex.scheme = scheme;
        // No user-info (`http://user:pw@host/` as an absolute-form target) past the decoder.
        ex.authority = authority.or_else(|| field(&head.fields, "host")).map(|a| crate::redact::authority(&a));
        ex.path = path;
        ex.method = method.clone();
        ex.request_header_bytes = head.len as u64;
        ex.request_start_ns = side.head_start_ns;
        ex.request_end_ns = ts;
        let mut body = None;
        if let Some(why) = cut {
            ex.mark_partial(why);
            body = match (head.content_length, head.chunked) {
                (_, true) => Some(Body::Blind {
                    length: None,
                    chunked: true,
                    seen: gap,
                }),
                (Ok(Some(l)), false) if l > 0 => Some(Body::Blind {
                    length: Some(l),
                    chunked: false,
                    seen: gap,
                }),
                _ => None,
            };
        } else if head.chunked {
            body = Some(Body::Chunked(Chunked::Size(Vec::new())));
        } else if head.other_te {
            ex.mark_partial("request Transfer-Encoding without chunked: body not delimited");
            body = Some(Body::Blind {
                length: None,
                chunked: false,
                seen: 0,
            });
        } else {
            match head.content_length {
                Ok(Some(l)) if l > 0 => body = Some(Body::Length(l)),
                Ok(_) => {}
                Err(()) => {
                    sink.error("HTTP/1 request with an invalid Content-Length");
                    ex.mark_partial("invalid request Content-Length");
                    body = Some(Body::Blind {
                        length: None,
                        chunked: false,
                        seen: 0,
                    });
                }
            }
        }
        ex.request_headers = head.fields.fields;
        let id = self.next_id;
        self.next_id += 1;
        let m = method.as_deref().unwrap_or("");
        self.open.push_back(Open {
            id,
            ex,
            is_head: m.eq_ignore_ascii_case("HEAD"),
            is_connect: m.eq_ignore_ascii_case("CONNECT"),
            response_final: false,
        });
        if self.open.len() > MAX_OUTSTANDING_REQUESTS
            && let Some(mut o) = self.open.pop_front()
        {
            sink.error("too many HTTP/1 requests without a response: oldest given up");
            o.ex.mark_partial("given up: too many requests waiting for a response");
            if self.resp.cur == Some(o.id) {
                self.resp.cur = None;
            }
            sink.emit(o.ex);
        }
        match body {
            Some(b) => {
                side.cur = Some(id);
                side.phase = Phase::Body(b);
            }
            None => {
                side.cur = None;
                side.phase = if cut.is_some() {
                    Phase::Lost
                } else {
                    Phase::Head
                };
            }
        }
    }

    fn on_response(
        &mut self,
        side: &mut Side,
        head: Head,
        ts: u64,
        cut: Option<&str>,
        gap: u64,
        sink: &mut Sink,
    ) {
        let status = head.status.unwrap_or(0);
        let id = match self.open.iter().find(|o| !o.response_final) {
            Some(o) => o.id,
            None => {
                // A response without a request we saw (it was lost, or came before the
                // capture started).
                let id = self.next_id;
                self.next_id += 1;
                let mut ex = HttpExchange::new(Protocol::Http1);
                ex.request_start_ns = side.head_start_ns;
                ex.request_end_ns = side.head_start_ns;
                ex.mark_partial("request not captured");
                self.open.push_back(Open {
                    id,
                    ex,
                    is_head: false,
                    is_connect: false,
                    response_final: false,
                });
                id
            }
        };
        let start_ns = side.head_ts;
        let Some(o) = self.get(id) else { return };
        o.ex.response_header_bytes = o.ex.response_header_bytes.saturating_add(head.len as u64);
        o.ex.set_response_end(ts);
        if (100..200).contains(&status) && status != 101 {
            // Interim (100 Continue, 103 Early Hints): the final head follows, unless a gap
            // hid where this one ends (and so, likely, the final one).
            match cut {
                None => side.phase = Phase::Head,
                Some(why) => self.lose(side, Direction::Recv, why, sink),
            }
            return;
        }
        o.response_final = true;
        o.ex.status = head.status;
        o.ex.response_start_ns = Some(start_ns);
        o.ex.response_headers = head.fields.fields;
        let no_body = o.is_head || status == 204 || status == 304;
        let tunnel = status == 101 || (o.is_connect && (200..300).contains(&status));
        if let Some(why) = cut {
            o.ex.mark_partial(why);
        }
        side.cur = Some(id);
        if tunnel {
            self.finish(id, None, sink);
            side.phase = Phase::Tunnel;
            self.req.phase = Phase::Tunnel;
            side.cur = None;
            return;
        }
        if no_body {
            self.finish(id, None, sink);
            side.phase = if cut.is_some() {
                Phase::Lost
            } else {
                Phase::Head
            };
            return;
        }
        let body = if cut.is_some() {
            match (head.content_length, head.chunked) {
                (_, true) => Body::Blind {
                    length: None,
                    chunked: true,
                    seen: gap,
                },
                (Ok(Some(l)), false) => Body::Blind {
                    length: Some(l),
                    chunked: false,
                    seen: gap,
                },
                _ => Body::Blind {
                    length: None,
                    chunked: false,
                    seen: gap,
                },
            }
        } else if head.chunked {
            Body::Chunked(Chunked::Size(Vec::new()))
        } else if head.other_te {
            Body::UntilClose
        } else {
            match head.content_length {
                Ok(Some(0)) => {
                    self.finish(id, None, sink);
                    side.phase = Phase::Head;
                    return;
                }
                Ok(Some(l)) => Body::Length(l),
                Ok(None) => Body::UntilClose,
                Err(()) => {
                    sink.error("HTTP/1 response with an invalid Content-Length");
                    if let Some(o) = self.get(id) {
                        o.ex.mark_partial("invalid response Content-Length: body size approximate");
                    }
                    Body::Blind {
                        length: None,
                        chunked: false,
                        seen: 0,
                    }
                }
            }
        };
        side.phase = Phase::Body(body);
    }

    /// Applies a body step: counts bytes, ends the message, or switches to blind framing.
    fn after_step(
        &mut self,
        side: &mut Side,
        dir: Direction,
        ts: u64,
        step: Step,
        leftover_gap: u64,
        sink: &mut Sink,
    ) {
        if let Some(id) = side.cur {
            self.count(dir, id, step.counted, ts);
        }
        if step.done {
            self.message_done(side, dir, sink);
            if leftover_gap > 0 {
                self.lose(
                    side,
                    dir,
                    "start of the next message inside a capture gap",
                    sink,
                );
            }
        } else if let Some(why) = step.lost {
            if let Some(o) = side.cur.and_then(|id| self.get(id)) {
                o.ex.mark_partial(why);
                o.ex.body_missing(dir, sink.body_limit);
            }
            side.phase = Phase::Body(Body::Blind {
                length: None,
                chunked: true,
                seen: leftover_gap,
            });
        }
    }

    fn gap(&mut self, side: &mut Side, dir: Direction, ts: u64, gap: u64, sink: &mut Sink) {
        match &mut side.phase {
            Phase::Tunnel | Phase::Lost => {}
            Phase::Head => {
                if side.head.is_empty() {
                    self.lose(side, dir, "start of a message inside a capture gap", sink);
                } else {
                    let head = std::mem::take(&mut side.head);
                    match parse_partial_head(dir, &head) {
                        Some(h) => {
                            let why = format!(
                                "{} headers cut by a capture gap after {} bytes",
                                match dir {
                                    Direction::Send => "request",
                                    Direction::Recv => "response",
                                },
                                head.len()
                            );
                            sink.error(format!("HTTP/1 {}: {why}", dir_name(dir)));
                            self.on_head(side, dir, h, ts, Some(&why), gap, sink);
                            if let Some(id) = side.cur {
                                self.touch(dir, id, ts);
                            }
                        }
                        None => self.lose(
                            side,
                            dir,
                            "message head cut by a capture gap before its first line ended",
                            sink,
                        ),
                    }
                }
            }
            Phase::Body(body) => {
                if let Some(o) = side.cur.and_then(|id| self.get(id)) {
                    o.ex.body_missing(dir, sink.body_limit);
                }
                let step = body.gap(gap);
                let leftover = gap - step.consumed.min(gap);
                self.after_step(side, dir, ts, step, leftover, sink);
            }
        }
    }

    /// Bytes of the body of exchange `id` in direction `dir`.
    fn count(&mut self, dir: Direction, id: u64, n: u64, ts: u64) {
        if let Some(o) = self.get(id) {
            match dir {
                Direction::Send => {
                    o.ex.request_body_bytes = o.ex.request_body_bytes.saturating_add(n);
                    o.ex.set_request_end(ts);
                }
                Direction::Recv => {
                    o.ex.response_body_bytes = o.ex.response_body_bytes.saturating_add(n);
                    o.ex.set_response_end(ts);
                }
            }
        }
    }

    fn touch(&mut self, dir: Direction, id: u64, ts: u64) {
        self.count(dir, id, 0, ts);
    }

    fn message_done(&mut self, side: &mut Side, dir: Direction, sink: &mut Sink) {
        side.phase = Phase::Head;
        let Some(id) = side.cur.take() else { return };
        if dir == Direction::Recv {
            self.finish(id, None, sink);
        }
    }

    /// Ends a blind body: its bytes are counted now.
    fn end_blind(&mut self, side: &mut Side, dir: Direction, sink: &mut Sink) {
        let Phase::Body(Body::Blind { length, seen, .. }) = std::mem::take(&mut side.phase) else {
            return;
        };
        side.phase = Phase::Head;
        let counted = match length {
            Some(l) => l.min(seen),
            None => seen,
        };
        if let Some(id) = side.cur {
            if let Some(o) = self.get(id)
                && length.is_none()
            {
                o.ex.mark_partial("body end found heuristically: size approximate");
            }
            self.count(dir, id, counted, 0);
        }
        self.message_done(side, dir, sink);
    }

    /// This direction cannot be followed: skip to the next message start. The exchange it was
    /// reading (or, for responses, the one waiting for this response) ends as partial.
    fn lose(&mut self, side: &mut Side, dir: Direction, why: &str, sink: &mut Sink) {
        sink.error(format!("HTTP/1 {}: {why}", dir_name(dir)));
        side.phase = Phase::Lost;
        side.head.clear();
        let cur = side.cur.take();
        match dir {
            Direction::Send => {
                if let Some(o) = cur.and_then(|id| self.get(id)) {
                    o.ex.mark_partial(why);
                }
            }
            Direction::Recv => {
                let target =
                    cur.or_else(|| self.open.iter().find(|o| !o.response_final).map(|o| o.id));
                if let Some(id) = target {
                    self.finish(id, Some(why), sink);
                }
            }
        }
    }

    fn finish(&mut self, id: u64, why: Option<&str>, sink: &mut Sink) {
        let Some(i) = self.open.iter().position(|o| o.id == id) else {
            return;
        };
        let Some(mut o) = self.open.remove(i) else {
            return;
        };
        if let Some(w) = why {
            o.ex.mark_partial(w);
        }
        if self.resp.cur == Some(id) {
            self.resp.cur = None;
        }
        sink.emit(o.ex);
    }
}

