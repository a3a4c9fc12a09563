//! The HTTP/3 decoder (`decode::h3::H3Connection`) over decrypted QUIC packet payloads, and the
//! frame parser under it (`decode::quic::parse_payload`).
//!
//! The input is a list of records `[kind u8][length u16 BE][bytes]`:
//! - kind 0 / 1: a packet's payload (its QUIC frames) from the client / the server, captured
//!   whole;
//! - kind 2 / 3: the same, but the packet was longer than what was captured: `16 * bytes[0]`
//!   more bytes (a payload cut at the probe's capture limit), `bytes[1..]` captured;
//! - kind 4 / 5: packets from the client / the server were missed (a gap);
//! - kind 6: the exchanges finished so far are taken;
//! - kind 7: the previous packet again, with its packet number (a packet captured twice).
use tracer::decode::Direction;
use tracer::decode::h3::{H3Connection, HttpExchange, MAX_ERRORS, MAX_PENDING_EXCHANGES, MAX_QPACK_TABLE, MAX_STREAMS};
use tracer::decode::http::{MAX_HEADER_FIELD_BYTES, MAX_HEADER_FIELDS};
use tracer::decode::quic::parse_payload;

const BODY_LIMIT: usize = 32;

fn check(x: &HttpExchange) {
    assert_eq!(x.complete, x.partial_reason.is_none(), "complete disagrees with partial_reason: {x:?}");
    for headers in [&x.request_headers, &x.response_headers] {
        assert!(headers.len() <= MAX_HEADER_FIELDS, "{} header fields kept", headers.len());
        let bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        assert!(bytes <= MAX_HEADER_FIELD_BYTES, "{bytes} header bytes kept");
    }
    assert!(x.request_start_ns <= x.request_end_ns, "request ends before it starts: {x:?}");
    if let (Some(s), Some(e)) = (x.response_start_ns, x.response_end_ns) {
        assert!(s <= e, "response ends before it starts: {x:?}");
    }
    if x.response_start_ns.is_some() {
        assert!(x.response_end_ns.is_some(), "a response start without an end: {x:?}");
    }
    for (body, counted) in [(&x.request_body, x.request_body_bytes), (&x.response_body, x.response_body_bytes)] {
        if let Some(b) = body {
            assert!(b.data.len() <= BODY_LIMIT && b.data.len() as u64 <= counted, "body kept {} of {counted}: {x:?}", b.data.len());
        }
    }
    if let Some(r) = &x.partial_reason {
        assert!(r.len() <= 1024, "partial reason of {} bytes", r.len());
    }
}

/// The target on one input (the fuzz target and the corpus replay test call it); returns the
/// exchanges for the replay's look at the seeds.
pub fn run(data: &[u8]) -> Vec<HttpExchange> {
    let mut conn = H3Connection::with_body_limit(BODY_LIMIT);
    let mut rest = data;
    let mut ts = 0u64;
    let mut pn = [0u64; 2];
    let mut moved = [0u64; 2];
    let mut fed = 0u64;
    let mut taken = Vec::new();
    let mut last: Option<(Direction, u64, u32, Vec<u8>)> = None;
    while let [kind, hi, lo, tail @ ..] = rest {
        let len = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        ts += 1_000_000;
        let dir = if kind % 2 == 0 { Direction::Send } else { Direction::Recv };
        let i = usize::from(dir == Direction::Recv);
        match kind % 8 {
            0..=3 => {
                let (captured, extra) = match (kind % 8 >= 2, bytes.split_first()) {
                    (true, Some((e, b))) => (b, 16 * u32::from(*e)),
                    _ => (bytes, 0),
                };
                let total = captured.len() as u32 + extra;
                let parsed = parse_payload(captured, total as usize);
                assert!(parsed.frames.len() <= captured.len().max(1));
                pn[i] += 1;
                moved[i] += u64::from(total);
                fed += 1;
                conn.feed_packet(dir, ts, Some(pn[i]), total, captured);
                last = Some((dir, pn[i], total, captured.to_vec()));
            }
            4 | 5 => conn.feed_gap(dir, ts),
            6 => taken.extend(conn.take_exchanges(false)),
            _ => {
                if let Some((d, n, total, b)) = &last {
                    conn.feed_packet(*d, ts, Some(*n), *total, b);
                }
            }
        }
        assert!(conn.errors().len() <= MAX_ERRORS);
        assert!(conn.open_exchanges() <= MAX_STREAMS);
        for (entries, bytes) in conn.qpack_tables() {
            assert!(bytes <= MAX_QPACK_TABLE && entries <= MAX_QPACK_TABLE / 32);
        }
    }
    let stats = conn.stats().clone();
    assert!(stats.packets[0] + stats.packets[1] <= fed, "{stats:?} of {fed} packets fed");
    if let Some(c) = conn.close() {
        assert!(c.reason.chars().all(|c| c.is_ascii_graphic() || c == ' '), "reason not escaped: {c:?}");
        serde_json::to_string(c).expect("the close serialises");
    }
    let _ = (conn.goaway(), conn.settings(Direction::Send), conn.first_request_stream(), conn.errors_dropped());
    let pending = conn.take_exchanges(false);
    assert!(pending.len() <= MAX_PENDING_EXCHANGES);
    taken.extend(pending);
    taken.extend(conn.take_exchanges(true));
    assert_eq!(conn.open_exchanges(), 0, "the flush left exchanges open");
    let mut sums = [0u64; 2];
    for x in &taken {
        check(x);
        sums[0] = sums[0].saturating_add(x.request_header_bytes.saturating_add(x.request_body_bytes));
        sums[1] = sums[1].saturating_add(x.response_header_bytes.saturating_add(x.response_body_bytes));
        serde_json::to_string(x).expect("an exchange serialises");
    }
    // Bytes are counted once: all exchanges together hold no more than the packets carried,
    // and the stream bytes known lost (the offsets of later bytes say how many).
    let lost = conn.stats().lost_stream_bytes;
    for (i, way) in ["sent", "received"].iter().enumerate() {
        let bound = moved[i].saturating_add(lost[i]);
        assert!(sums[i] <= bound, "exchanges hold {} bytes of {} {way} and {} lost", sums[i], moved[i], lost[i]);
    }
    assert!(conn.take_exchanges(true).is_empty(), "a second flush found more exchanges");
    serde_json::to_string(&stats).expect("the stats serialise");
    taken
}
