//! One direction of one QUIC stream put back in order from its STREAM frames: frames may come
//! out of order, twice (a retransmission, or the same packet captured twice), overlapping, or
//! cut short by the capture (their missing bytes are known lost at once). What is in order is
//! handed on as [`Piece`]s: bytes, bytes known lost, and the end of the stream.
//!
//! A *hole* (bytes not yet seen before bytes that were) is waited for: QUIC is reliable, so a
//! packet the network lost comes again, and captures can be reordered. It is given up (its
//! bytes handed on as lost) by [`Reassembly::give_up`], which the connection calls when the hole
//! has waited [`super::HOLE_WAIT_NS`], when the caller reports missed packets, when the pieces
//! held pass [`MAX_PENDING_BYTES`] or [`MAX_PENDING_PIECES`], and at the end.

use std::collections::BTreeMap;

/// Most bytes held beyond a hole, per stream direction.
pub const MAX_PENDING_BYTES: usize = 256 * 1024;
/// Most separate pieces held beyond a hole, per stream direction.
pub const MAX_PENDING_PIECES: usize = 128;

/// What the stream hands on, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Piece {
    /// Bytes, with the timestamp of the packet that carried them.
    Data(Vec<u8>, u64),
    /// Bytes that will never be seen (cut by the capture, or a hole given up).
    Lost(u64, u64),
    /// The stream's end (its final size): every byte before it was handed on.
    Fin(u64),
}

#[derive(Debug)]
enum Held {
    Data(Vec<u8>),
    Lost(u64),
}

impl Held {
    fn len(&self) -> u64 {
        match self {
            Held::Data(d) => d.len() as u64,
            Held::Lost(n) => *n,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Reassembly {
    /// Bytes handed on (or given up), from offset 0.
    delivered: u64,
    /// Pieces past `delivered`, not overlapping: offset -> (piece, ts).
    held: BTreeMap<u64, (Held, u64)>,
    held_bytes: usize,
    /// The final size, once a FIN (or RESET_STREAM) said it.
    fin: Option<u64>,
    fin_handed: bool,
    /// The highest offset seen (end of the furthest frame).
    high: u64,
    /// When the current hole was first seen (ts of the packet that showed it).
    pub(super) hole_since: Option<u64>,
}

impl Reassembly {
    /// Whether the end was handed on.
    pub(super) fn finished(&self) -> bool {
        self.fin_handed
    }

    pub(super) fn high(&self) -> u64 {
        self.high
    }

    /// Adds a STREAM frame's `data` at `offset`, followed by `missing` bytes that were not
    /// captured; `fin` when the frame ends the stream. Returns a problem to report, if any
    /// (a final size that disagrees with an earlier one, or bytes past it).
    pub(super) fn insert(&mut self, offset: u64, data: Vec<u8>, missing: u64, fin: bool, ts: u64) -> Option<String> {
        let end = offset.saturating_add(data.len() as u64).saturating_add(missing);
        let mut problem = None;
        if fin {
            problem = self.set_fin(end);
        }
        if let Some(f) = self.fin
            && end > f
        {
            return Some(format!("bytes up to offset {end} past the final size {f}: dropped"));
        }
        self.high = self.high.max(end);
        let data_end = offset + data.len() as u64;
        self.add(offset, Held::Data(data), ts);
        if missing > 0 {
            self.add(data_end, Held::Lost(missing), ts);
        }
        if self.has_hole() {
            self.hole_since.get_or_insert(ts);
        }
        problem
    }

    /// The stream's final size from a RESET_STREAM (or a FIN without data).
    pub(super) fn set_fin(&mut self, size: u64) -> Option<String> {
        match self.fin {
            Some(f) if f != size => Some(format!("final size {size} after final size {f}: the first kept")),
            Some(_) => None,
            None if size < self.high => {
                Some(format!("final size {size} below bytes seen up to {}: ignored", self.high))
            }
            None => {
                self.fin = Some(size);
                None
            }
        }
    }

    /// Puts `piece` at `offset`, keeping only what is not already delivered or held; a data
    /// piece replaces held lost ranges it covers (the same bytes seen again, complete).
    fn add(&mut self, offset: u64, piece: Held, ts: u64) {
        let len = piece.len();
        if len == 0 {
            return;
        }
        let mut start = offset.max(self.delivered);
        let end = offset.saturating_add(len);
        if start >= end {
            return;
        }
        if let Held::Data(_) = piece {
            // Lost ranges overlapping [start, end) are split around it.
            let lost: Vec<u64> = self
                .held
                .range(..end)
                .filter(|(o, (h, _))| matches!(h, Held::Lost(_)) && **o + h.len() > start)
                .map(|(o, _)| *o)
                .collect();
            for o in lost {
                if let Some((h, t)) = self.held.remove(&o) {
                    let e = o + h.len();
                    if o < start {
                        self.held.insert(o, (Held::Lost(start - o), t));
                    }
                    if e > end {
                        self.held.insert(end, (Held::Lost(e - end), t));
                    }
                }
            }
        }
        // Fill the uncovered sub-ranges of [start, end), left to right.
        let covering: Vec<(u64, u64)> = self
            .held
            .range(..end)
            .map(|(o, (h, _))| (*o, *o + h.len()))
            .filter(|(_, e)| *e > start)
            .collect();
        for (o, e) in covering.into_iter().chain(std::iter::once((end, end))) {
            if o > start {
                let piece_end = o.min(end);
                let sub = match &piece {
                    Held::Data(d) => {
                        Held::Data(d[(start - offset) as usize..(piece_end - offset) as usize].to_vec())
                    }
                    Held::Lost(_) => Held::Lost(piece_end - start),
                };
                if let Held::Data(d) = &sub {
                    self.held_bytes += d.len();
                }
                self.held.insert(start, (sub, ts));
            }
            start = start.max(e);
            if start >= end {
                break;
            }
        }
    }

    /// Whether the held pieces are past their bounds (the caller then gives the hole up).
    pub(super) fn over_bounds(&self) -> bool {
        self.held_bytes > MAX_PENDING_BYTES || self.held.len() > MAX_PENDING_PIECES
    }

    /// Whether bytes wait beyond a hole.
    pub(super) fn has_hole(&self) -> bool {
        self.held.keys().next().is_some_and(|&o| o > self.delivered)
            || self.fin.is_some_and(|f| !self.fin_handed && self.held.is_empty() && f > self.delivered)
    }

    /// Gives up the first hole: its bytes are handed on as lost by the next [`Self::pop`].
    /// A hole before a final size with nothing held after it is given up too. Returns the
    /// bytes given up.
    pub(super) fn give_up(&mut self, ts: u64) -> u64 {
        let next = match self.held.keys().next() {
            Some(&o) => o,
            None => match self.fin {
                Some(f) if f > self.delivered => f,
                _ => return 0,
            },
        };
        if next <= self.delivered {
            return 0;
        }
        let n = next - self.delivered;
        self.held.insert(self.delivered, (Held::Lost(n), ts));
        n
    }

    /// The next piece in stream order, if it is there.
    pub(super) fn pop(&mut self) -> Option<Piece> {
        if let Some((&o, _)) = self.held.first_key_value()
            && o <= self.delivered
        {
            let (o, (held, ts)) = self.held.pop_first()?;
            let skip = self.delivered - o;
            let out = match held {
                Held::Data(mut d) => {
                    self.held_bytes -= d.len();
                    if skip > 0 {
                        d.drain(..(skip as usize).min(d.len()));
                    }
                    self.delivered += d.len() as u64;
                    Piece::Data(d, ts)
                }
                Held::Lost(n) => {
                    let n = n.saturating_sub(skip);
                    self.delivered += n;
                    Piece::Lost(n, ts)
                }
            };
            if !self.has_hole() {
                self.hole_since = None;
            }
            return Some(out);
        }
        if !self.fin_handed && self.fin == Some(self.delivered) {
            self.fin_handed = true;
            self.hole_since = None;
            return Some(Piece::Fin(self.delivered));
        }
        None
    }
}
