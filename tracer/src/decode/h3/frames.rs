//! HTTP/3 frames (RFC 9114 section 7) read from one stream direction's bytes in order, as they
//! arrive: a frame's type and length (QUIC varints) may be split across packets, its payload
//! may run into bytes lost by the capture. DATA payload is handed on as it comes (counted and
//! optionally captured, never buffered); other frames are kept, up to a bound per type, until
//! they end. Bytes lost inside a payload only cut that frame; bytes lost where a frame's type
//! or length was lose the frame boundaries, and the rest of the stream is not read
//! ([`Event::Desync`]).

use crate::decode::http::MAX_HEAD_BYTES;

pub(super) const DATA: u64 = 0x00;
pub(super) const HEADERS: u64 = 0x01;
pub(super) const CANCEL_PUSH: u64 = 0x03;
pub(super) const SETTINGS: u64 = 0x04;
pub(super) const PUSH_PROMISE: u64 = 0x05;
pub(super) const GOAWAY: u64 = 0x07;
pub(super) const MAX_PUSH_ID: u64 = 0x0d;

/// Most bytes of a SETTINGS frame looked at (a few dozen settings).
const MAX_SETTINGS_BYTES: usize = 1024;

/// Whether `ty` is a reserved ("grease") type of the form 0x1f * N + 0x21 (RFC 9114 7.2.8 and
/// 6.2.3; the same form is used for stream types and settings).
pub(super) fn is_grease(ty: u64) -> bool {
    ty >= 0x21 && (ty - 0x21).is_multiple_of(0x1f)
}

/// A QUIC variable-length integer read a byte at a time (it may be split across packets).
#[derive(Debug, Default)]
pub(super) struct VarintAcc {
    buf: [u8; 8],
    n: usize,
}

impl VarintAcc {
    pub(super) fn started(&self) -> bool {
        self.n > 0
    }

    /// Takes bytes from `data` until the integer is complete: how many were taken, and the
    /// value once complete (the accumulator is then empty again).
    pub(super) fn feed(&mut self, data: &[u8]) -> (usize, Option<u64>) {
        let mut used = 0;
        for &b in data {
            self.buf[self.n] = b;
            self.n += 1;
            used += 1;
            let want = 1usize << (self.buf[0] >> 6);
            if self.n == want {
                let mut v = u64::from(self.buf[0] & 0x3f);
                for x in &self.buf[1..want] {
                    v = v << 8 | u64::from(*x);
                }
                self.n = 0;
                return (used, Some(v));
            }
        }
        (used, None)
    }
}

/// A frame other than DATA, as far as it was kept.
#[derive(Debug)]
pub(super) struct Frame {
    pub(super) ty: u64,
    /// The payload length the frame declared.
    pub(super) len: u64,
    /// The payload as kept (at most the type's bound).
    pub(super) payload: Vec<u8>,
    /// Payload bytes were lost in the capture.
    pub(super) truncated: bool,
    /// The payload was longer than the bound for its type: not all was kept.
    pub(super) oversize: bool,
    /// Timestamp of the packet that carried the frame's first byte.
    pub(super) ts: u64,
}

#[derive(Debug)]
pub(super) enum Event {
    /// DATA payload bytes.
    Data(Vec<u8>),
    /// DATA payload bytes lost in the capture.
    DataLost(u64),
    /// Any other frame, ended.
    Frame(Frame),
    /// Frame boundaries lost: nothing more of the stream is read.
    Desync(&'static str),
}

#[derive(Debug)]
enum State {
    Type { acc: VarintAcc, ts: u64 },
    Len { ty: u64, acc: VarintAcc, ts: u64 },
    Payload { remaining: u64, frame: Frame },
}

/// One stream direction's frame reader.
#[derive(Debug)]
pub(super) struct FrameReader {
    state: State,
    dead: bool,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader { state: State::Type { acc: VarintAcc::default(), ts: 0 }, dead: false }
    }
}

fn keep_limit(ty: u64) -> usize {
    match ty {
        HEADERS | PUSH_PROMISE => MAX_HEAD_BYTES,
        SETTINGS => MAX_SETTINGS_BYTES,
        GOAWAY | MAX_PUSH_ID | CANCEL_PUSH => 8,
        _ => 0,
    }
}

impl FrameReader {
    /// Whether the bytes so far end at a frame boundary.
    pub(super) fn at_boundary(&self) -> bool {
        self.dead || matches!(&self.state, State::Type { acc, .. } if !acc.started())
    }

    /// The next bytes of the stream, carried by a packet of timestamp `ts`.
    pub(super) fn data(&mut self, mut data: &[u8], ts: u64, out: &mut Vec<Event>) {
        while !data.is_empty() && !self.dead {
            match &mut self.state {
                State::Type { acc, ts: t } => {
                    if !acc.started() {
                        *t = ts;
                    }
                    let (k, v) = acc.feed(data);
                    data = &data[k..];
                    if let Some(ty) = v {
                        self.state = State::Len { ty, acc: VarintAcc::default(), ts: *t };
                    }
                }
                State::Len { ty, acc, ts: t } => {
                    let (k, v) = acc.feed(data);
                    data = &data[k..];
                    if let Some(len) = v {
                        let (ty, t) = (*ty, *t);
                        self.begin(ty, len, t, out);
                    }
                }
                State::Payload { remaining, frame } => {
                    let k = (*remaining).min(data.len() as u64) as usize;
                    if frame.ty == DATA {
                        out.push(Event::Data(data[..k].to_vec()));
                    } else {
                        let room = keep_limit(frame.ty).saturating_sub(frame.payload.len()).min(k);
                        frame.payload.extend_from_slice(&data[..room]);
                        if room < k {
                            frame.oversize = true;
                        }
                    }
                    *remaining -= k as u64;
                    data = &data[k..];
                    if *remaining == 0 {
                        self.end(out);
                    }
                }
            }
        }
    }

    /// `n` bytes of the stream were lost in the capture.
    pub(super) fn lost(&mut self, mut n: u64, out: &mut Vec<Event>) {
        while n > 0 && !self.dead {
            match &mut self.state {
                State::Payload { remaining, frame } => {
                    let k = (*remaining).min(n);
                    if frame.ty == DATA {
                        out.push(Event::DataLost(k));
                    } else {
                        frame.truncated = true;
                    }
                    *remaining -= k;
                    n -= k;
                    if *remaining == 0 {
                        self.end(out);
                    }
                }
                _ => {
                    self.dead = true;
                    out.push(Event::Desync("a frame's type or length lost in a capture gap"));
                }
            }
        }
    }

    fn begin(&mut self, ty: u64, len: u64, ts: u64, out: &mut Vec<Event>) {
        let frame = Frame {
            ty,
            len,
            payload: Vec::with_capacity(keep_limit(ty).min(len as usize)),
            truncated: false,
            oversize: false,
            ts,
        };
        self.state = State::Payload { remaining: len, frame };
        if len == 0 {
            self.end(out);
        }
    }

    fn end(&mut self, out: &mut Vec<Event>) {
        let next = State::Type { acc: VarintAcc::default(), ts: 0 };
        if let State::Payload { frame, .. } = std::mem::replace(&mut self.state, next)
            && frame.ty != DATA
        {
            out.push(Event::Frame(frame));
        }
    }
}
