//! A connection's two byte streams cut into library or socket calls at points the fuzzer
//! chooses, as the kernel reports them: each call moved `len` bytes of which only the first
//! part may have been captured (the rest is a gap). Shared by the `http` and `tls_wire` targets.
//!
//! Layout (arbitrary's derive): the cuts, the client stream's length, then both streams. A
//! seed with no cuts is `00`, the client length as two little-endian bytes, the client's bytes
//! and the server's bytes (see `make_seeds.py`).

use arbitrary::Arbitrary;
use tracer::decode::Direction;

#[derive(Arbitrary, Debug)]
pub struct Cut {
    /// Which stream this call moves: the server's (`Recv`) or the client's (`Send`).
    pub recv: bool,
    /// Captured bytes of the call (cut to what is left of the stream).
    pub captured: u16,
    /// Bytes the call moved past the captured ones (not seen).
    pub gap: u16,
    /// Time the call took, and since the previous one.
    pub elapsed_ns: u8,
    /// Ask the decoder for its finished results after this call.
    pub take: bool,
}

#[derive(Arbitrary, Debug)]
pub struct Transcript<'a> {
    pub cuts: Vec<Cut>,
    pub client_len: u16,
    pub streams: &'a [u8],
}

/// One call as fed to a decoder.
pub struct Call<'a> {
    pub dir: Direction,
    pub start_ns: u64,
    pub ts_ns: u64,
    /// Bytes the call moved (`data.len()` plus the gap).
    pub len: u32,
    pub data: &'a [u8],
    /// The caller should take the finished results now.
    pub take: bool,
}

impl<'a> Transcript<'a> {
    /// Every call in order: first the fuzzer's cuts, then what is left of the client's stream,
    /// then of the server's, in calls of at most 4 KiB (the default capture).
    pub fn calls(&self) -> Vec<Call<'a>> {
        let split = usize::from(self.client_len).min(self.streams.len());
        let streams: [&'a [u8]; 2] = [&self.streams[..split], &self.streams[split..]];
        let mut pos = [0usize; 2];
        let mut now: u64 = 1_000_000;
        let mut calls = Vec::new();
        for cut in &self.cuts {
            let d = usize::from(cut.recv);
            let rest = &streams[d][pos[d]..];
            let captured = usize::from(cut.captured).min(rest.len());
            if captured == 0 && cut.gap == 0 {
                continue;
            }
            let start_ns = now;
            now += u64::from(cut.elapsed_ns);
            calls.push(Call {
                dir: if cut.recv { Direction::Recv } else { Direction::Send },
                start_ns,
                ts_ns: now,
                len: (captured + usize::from(cut.gap)) as u32,
                data: &rest[..captured],
                take: cut.take,
            });
            pos[d] = (pos[d] + captured + usize::from(cut.gap)).min(streams[d].len());
        }
        for (d, dir) in [(0, Direction::Send), (1, Direction::Recv)] {
            for chunk in streams[d][pos[d]..].chunks(4096) {
                let start_ns = now;
                now += 100;
                calls.push(Call { dir, start_ns, ts_ns: now, len: chunk.len() as u32, data: chunk, take: false });
            }
        }
        calls
    }
}
