//! Small encoders for the tests: QUIC frames, HTTP/3 frames, QPACK instructions and field
//! lines, written from the RFCs' layouts (not copies of their examples).

use super::{Direction, H3Connection};

/// A QUIC variable-length integer in its shortest form.
pub(crate) fn varint(v: u64) -> Vec<u8> {
    if v < 1 << 6 {
        vec![v as u8]
    } else if v < 1 << 14 {
        (0x4000 | v as u16).to_be_bytes().to_vec()
    } else if v < 1 << 30 {
        (0x8000_0000 | v as u32).to_be_bytes().to_vec()
    } else {
        (0xc000_0000_0000_0000 | v).to_be_bytes().to_vec()
    }
}

/// A STREAM frame with offset and length (type 0x0e, 0x0f with FIN).
pub(crate) fn stream(id: u64, offset: u64, data: &[u8], fin: bool) -> Vec<u8> {
    [vec![0x0e | u8::from(fin)], varint(id), varint(offset), varint(data.len() as u64), data.to_vec()].concat()
}

/// A STREAM frame without the LEN bit: its data runs to the end of the packet.
pub(crate) fn stream_to_end(id: u64, offset: u64, data: &[u8], fin: bool) -> Vec<u8> {
    [vec![0x0c | u8::from(fin)], varint(id), varint(offset), data.to_vec()].concat()
}

pub(crate) fn reset_stream(id: u64, code: u64, final_size: u64) -> Vec<u8> {
    [vec![0x04], varint(id), varint(code), varint(final_size)].concat()
}

pub(crate) fn stop_sending(id: u64, code: u64) -> Vec<u8> {
    [vec![0x05], varint(id), varint(code)].concat()
}

pub(crate) fn close_transport(code: u64, frame_type: u64, reason: &str) -> Vec<u8> {
    [vec![0x1c], varint(code), varint(frame_type), varint(reason.len() as u64), reason.as_bytes().to_vec()].concat()
}

pub(crate) fn close_application(code: u64, reason: &str) -> Vec<u8> {
    [vec![0x1d], varint(code), varint(reason.len() as u64), reason.as_bytes().to_vec()].concat()
}

/// An ACK with one range and ECN counts, a PING and MAX_DATA: frames an HTTP/3 packet carries
/// around its STREAM frames.
pub(crate) fn noise() -> Vec<u8> {
    [vec![0x03], varint(7), varint(0), varint(0), varint(3), varint(1), varint(2), varint(3), vec![0x01], vec![0x10], varint(1 << 20)]
        .concat()
}

/// An HTTP/3 frame.
pub(crate) fn h3(ty: u64, payload: &[u8]) -> Vec<u8> {
    [varint(ty), varint(payload.len() as u64), payload.to_vec()].concat()
}

/// A SETTINGS frame.
pub(crate) fn settings(pairs: &[(u64, u64)]) -> Vec<u8> {
    h3(0x04, &pairs.iter().flat_map(|(k, v)| [varint(*k), varint(*v)].concat()).collect::<Vec<u8>>())
}

/// A QPACK prefixed integer: `flags` in the bits above the `bits`-bit prefix.
pub(crate) fn qint(flags: u8, bits: u8, v: u64) -> Vec<u8> {
    let max = if bits == 8 { 0xff } else { (1u64 << bits) - 1 };
    if v < max {
        return vec![flags | v as u8];
    }
    let mut out = vec![flags | max as u8];
    let mut rest = v - max;
    while rest >= 128 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
    out
}

/// A string literal without Huffman: `flags` above the length's `bits`-bit prefix.
pub(crate) fn qstr(flags: u8, bits: u8, s: &str) -> Vec<u8> {
    [qint(flags, bits, s.len() as u64), s.as_bytes().to_vec()].concat()
}

/// The field section prefix: Required Insert Count (already encoded) and Base as a delta.
pub(crate) fn prefix(encoded_ric: u64, base_below: bool, delta: u64) -> Vec<u8> {
    [qint(0, 8, encoded_ric), qint(if base_below { 0x80 } else { 0 }, 7, delta)].concat()
}

/// Field lines.
pub(crate) fn indexed_static(i: u64) -> Vec<u8> {
    qint(0xc0, 6, i)
}
pub(crate) fn indexed_dynamic(relative: u64) -> Vec<u8> {
    qint(0x80, 6, relative)
}
pub(crate) fn indexed_post_base(i: u64) -> Vec<u8> {
    qint(0x10, 4, i)
}
pub(crate) fn literal_static_name(i: u64, value: &str) -> Vec<u8> {
    [qint(0x50, 4, i), qstr(0, 7, value)].concat()
}
pub(crate) fn literal_dynamic_name(relative: u64, value: &str) -> Vec<u8> {
    [qint(0x40, 4, relative), qstr(0, 7, value)].concat()
}
pub(crate) fn literal_post_base_name(i: u64, value: &str) -> Vec<u8> {
    [qint(0x00, 3, i), qstr(0, 7, value)].concat()
}
pub(crate) fn literal(name: &str, value: &str) -> Vec<u8> {
    [qstr(0x20, 3, name), qstr(0, 7, value)].concat()
}

/// Encoder instructions.
pub(crate) fn set_capacity(c: u64) -> Vec<u8> {
    qint(0x20, 5, c)
}
pub(crate) fn insert_static_name(i: u64, value: &str) -> Vec<u8> {
    [qint(0xc0, 6, i), qstr(0, 7, value)].concat()
}
pub(crate) fn insert_dynamic_name(relative: u64, value: &str) -> Vec<u8> {
    [qint(0x80, 6, relative), qstr(0, 7, value)].concat()
}
pub(crate) fn insert_literal(name: &str, value: &str) -> Vec<u8> {
    [qstr(0x40, 5, name), qstr(0, 7, value)].concat()
}
pub(crate) fn duplicate(relative: u64) -> Vec<u8> {
    qint(0, 5, relative)
}

/// The static table's :method GET, :scheme https, :path /, :status 200 ... as field lines.
pub(crate) const GET: u64 = 17;
pub(crate) const HTTPS: u64 = 23;
pub(crate) const STATUS_200: u64 = 25;
pub(crate) const AUTHORITY: u64 = 0;
pub(crate) const PATH: u64 = 1;

/// A request's field section without the dynamic table.
pub(crate) fn static_request(path: &str, host: &str) -> Vec<u8> {
    [prefix(0, false, 0), indexed_static(GET), indexed_static(HTTPS), literal_static_name(AUTHORITY, host), literal_static_name(PATH, path)]
        .concat()
}

/// A response's field section without the dynamic table.
pub(crate) fn static_response(status: u16, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut b = prefix(0, false, 0);
    if status == 200 {
        b.extend(indexed_static(STATUS_200));
    } else {
        b.extend(literal_static_name(24, &status.to_string())); // :status name
    }
    for (n, v) in extra {
        b.extend(literal(n, v));
    }
    b
}

/// A connection and a clock: each packet 1 ms after the previous.
pub(crate) struct Wire {
    pub(crate) conn: H3Connection,
    pub(crate) ts: u64,
    pn: [u64; 2],
}

impl Wire {
    pub(crate) fn new() -> Self {
        Wire { conn: H3Connection::new(), ts: 1_000_000, pn: [0, 0] }
    }

    /// One packet of `frames` from `dir`, all captured.
    pub(crate) fn packet(&mut self, dir: Direction, frames: &[Vec<u8>]) -> u64 {
        let payload = frames.concat();
        self.cut(dir, &payload, payload.len())
    }

    /// One packet whose first `captured` bytes were captured.
    pub(crate) fn cut(&mut self, dir: Direction, payload: &[u8], captured: usize) -> u64 {
        self.ts += 1_000_000;
        let i = usize::from(dir == Direction::Recv);
        self.pn[i] += 1;
        self.conn.feed_packet(dir, self.ts, Some(self.pn[i]), payload.len() as u32, &payload[..captured]);
        self.ts
    }

    pub(crate) fn send(&mut self, frames: &[Vec<u8>]) -> u64 {
        self.packet(Direction::Send, frames)
    }

    pub(crate) fn recv(&mut self, frames: &[Vec<u8>]) -> u64 {
        self.packet(Direction::Recv, frames)
    }

    /// Both control streams (client 2, server 3) with SETTINGS allowing a `capacity`-byte
    /// QPACK table, and both QPACK encoder streams (client 6, server 7) opened.
    pub(crate) fn setup(&mut self, capacity: u64) {
        let s = settings(&[(0x01, capacity), (0x07, 16), (0x21, 5)]);
        self.send(&[stream(2, 0, &[[0x00].as_slice(), &s].concat(), false), stream(6, 0, &[0x02], false)]);
        self.recv(&[stream(3, 0, &[[0x00].as_slice(), &s].concat(), false), stream(7, 0, &[0x02], false)]);
    }
}
