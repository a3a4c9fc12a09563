//! A realistic connection replayed reordered, with packets dropped, cut at every length,
//! mutated, and random bytes (a deterministic PRNG): nothing may panic, every list stays
//! bounded, and an exchange reported complete is exactly the one of the clean run.

use super::test_util::*;
use super::{Direction, H3Connection, HttpExchange, MAX_ERRORS};
use crate::decode::http::{MAX_HEADER_FIELD_BYTES, MAX_HEADER_FIELDS};
use crate::test_rng::Rng;

/// Rounds per random test; `TRACER_FUZZ_ROUNDS` runs more (the seeds are fixed).
fn rounds() -> usize {
    std::env::var("TRACER_FUZZ_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
}

type Packets = Vec<(Direction, Vec<u8>)>;

/// Settings, both encoder streams in use, three requests (one POST), interim and final
/// responses, trailers, frames split across packets.
fn transcript() -> Packets {
    use Direction::{Recv, Send};
    let s = settings(&[(0x01, 4096), (0x07, 16)]);
    let cenc = [set_capacity(4096), insert_static_name(AUTHORITY, "shop.test"), insert_literal("user-agent", "t/1")].concat();
    let senc = [set_capacity(4096), insert_static_name(44, "text/css")].concat();
    let req = |path: &str| {
        [prefix(3, false, 0), indexed_static(GET), indexed_static(HTTPS), indexed_dynamic(1), literal_static_name(PATH, path), indexed_dynamic(0)].concat()
    };
    let post = [prefix(3, false, 0), indexed_static(20), indexed_static(HTTPS), indexed_dynamic(1), literal_static_name(PATH, "/form")].concat();
    let r0 = [h3(1, &req("/")), vec![]].concat();
    let r4 = [h3(1, &post), h3(0, &[b'p'; 300]), h3(1, &[prefix(0, false, 0), literal("x-sum", "9")].concat())].concat();
    let r8 = h3(1, &req("/style.css"));
    let resp = |body: usize| [h3(1, &[prefix(2, true, 0), indexed_static(STATUS_200), indexed_post_base(0)].concat()), h3(0, &vec![b'b'; body])].concat();
    let s0 = [h3(1, &static_response(103, &[("link", "</s.css>")])), resp(1200)].concat();
    let s4 = resp(10);
    let s8 = resp(600);
    vec![
        (Send, [stream(2, 0, &[[0u8].as_slice(), &s].concat(), false), stream(6, 0, &[[2u8].as_slice(), &cenc].concat(), false)].concat()),
        (Send, [noise(), stream(0, 0, &r0, true), stream(4, 0, &r4[..100], false)].concat()),
        (Recv, [stream(3, 0, &[[0u8].as_slice(), &s].concat(), false), stream(7, 0, &[[2u8].as_slice(), &senc].concat(), false)].concat()),
        (Send, [stream(4, 100, &r4[100..], true), stream(8, 0, &r8, true)].concat()),
        (Recv, stream(0, 0, &s0[..700], false)),
        (Recv, [stream(0, 700, &s0[700..], true), stream(4, 0, &s4, true)].concat()),
        (Recv, stream(8, 0, &s8[..300], false)),
        (Recv, [noise(), stream(8, 300, &s8[300..], true)].concat()),
        (Send, [noise(), stop_sending(12, 0x10c)].concat()),
        (Recv, close_application(0x100, "bye")),
    ]
}

/// Feeds the packets (each cut to `captured` when given), checks the invariants of every
/// exchange, and returns them by stream.
fn run(packets: &[(Direction, Vec<u8>, usize)], gaps: &[usize]) -> Vec<HttpExchange> {
    let mut c = H3Connection::with_body_limit(64);
    let mut moved = [0u64; 2];
    let mut xs = Vec::new();
    for (n, (dir, p, captured)) in packets.iter().enumerate() {
        let ts = 1_000_000 * (n as u64 + 1);
        if gaps.contains(&n) {
            c.feed_gap(*dir, ts);
        }
        moved[usize::from(*dir == Direction::Recv)] += p.len() as u64;
        c.feed_packet(*dir, ts, None, p.len() as u32, &p[..(*captured).min(p.len())]);
        assert!(c.errors().len() <= MAX_ERRORS);
        assert!(c.open_exchanges() <= super::MAX_STREAMS);
        if n % 3 == 0 {
            xs.extend(c.take_exchanges(false));
        }
    }
    xs.extend(c.take_exchanges(true));
    assert!(c.take_exchanges(true).is_empty(), "a second flush found more");
    let mut sums = [0u64; 2];
    for x in &xs {
        check(x);
        sums[0] = sums[0].saturating_add(x.request_header_bytes.saturating_add(x.request_body_bytes));
        sums[1] = sums[1].saturating_add(x.response_header_bytes.saturating_add(x.response_body_bytes));
    }
    let lost = c.stats().lost_stream_bytes;
    for i in 0..2 {
        assert!(sums[i] <= moved[i].saturating_add(lost[i]), "exchanges hold {sums:?} of {moved:?} bytes moved, {lost:?} lost");
    }
    xs.sort_by_key(|x| x.stream_id);
    xs
}

pub(super) fn check(x: &HttpExchange) {
    assert_eq!(x.complete, x.partial_reason.is_none(), "{x:?}");
    for h in [&x.request_headers, &x.response_headers] {
        assert!(h.len() <= MAX_HEADER_FIELDS);
        assert!(h.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>() <= MAX_HEADER_FIELD_BYTES);
    }
    assert!(x.request_start_ns <= x.request_end_ns, "{x:?}");
    if let (Some(s), Some(e)) = (x.response_start_ns, x.response_end_ns) {
        assert!(s <= e, "{x:?}");
    }
    for b in [&x.request_body, &x.response_body].into_iter().flatten() {
        assert!(b.data.len() <= 64);
    }
}

fn whole(p: &Packets) -> Vec<(Direction, Vec<u8>, usize)> {
    p.iter().map(|(d, b)| (*d, b.clone(), b.len())).collect()
}

/// What must agree with the clean run for an exchange reported complete.
fn key(x: &HttpExchange) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {} {} {} {}",
        x.stream_id, x.method, x.authority, x.path, x.status, x.request_headers, x.response_headers,
        x.request_header_bytes, x.request_body_bytes, x.response_header_bytes, x.response_body_bytes
    )
}

fn complete_ones_match(xs: &[HttpExchange], reference: &[HttpExchange]) {
    for x in xs.iter().filter(|x| x.complete) {
        let r = reference.iter().find(|r| r.stream_id == x.stream_id).unwrap_or_else(|| panic!("no stream {:?} in the clean run", x.stream_id));
        assert_eq!(key(x), key(r));
    }
}

#[test]
fn the_clean_run() {
    let xs = run(&whole(&transcript()), &[]);
    let got: Vec<String> = xs.iter().map(|x| format!("{:?} {:?} {:?} {}", x.stream_id, x.path, x.status, x.complete)).collect();
    assert_eq!(got, ["Some(0) Some(\"/\") Some(200) true", "Some(4) Some(\"/form\") Some(200) true", "Some(8) Some(\"/style.css\") Some(200) true"]);
    assert_eq!(xs[1].method.as_deref(), Some("POST"));
    assert_eq!(xs[2].response_headers, vec![("content-type".to_string(), "text/css".to_string())]);
}

#[test]
fn any_order_within_each_direction_gives_the_clean_exchanges() {
    // The client's packets in any order, then the server's in any order (a response never
    // before its request), the close last: control and encoder streams after the field
    // sections that need them, frames of one stream reversed.
    let clean = run(&whole(&transcript()), &[]);
    let mut rng = Rng(0x5eed_0001);
    let shuffle = |v: &mut Packets, rng: &mut Rng| {
        for i in (1..v.len()).rev() {
            v.swap(i, rng.below(i + 1));
        }
    };
    for _ in 0..rounds() {
        let mut t = transcript();
        let close = t.pop().unwrap();
        let (mut sends, mut recvs): (Packets, Packets) = t.into_iter().partition(|(d, _)| *d == Direction::Send);
        shuffle(&mut sends, &mut rng);
        shuffle(&mut recvs, &mut rng);
        let p: Packets = sends.into_iter().chain(recvs).chain([close]).collect();
        let xs = run(&whole(&p), &[]);
        assert_eq!(xs.iter().map(key).collect::<Vec<_>>(), clean.iter().map(key).collect::<Vec<_>>(), "order {p:?}");
        assert!(xs.iter().all(|x| x.complete), "{xs:?}");
    }
}

#[test]
fn a_dropped_packet_leaves_the_others_right() {
    let clean = run(&whole(&transcript()), &[]);
    let t = transcript();
    for drop in 0..t.len() {
        for gap in [false, true] {
            let p: Packets = t.iter().enumerate().filter(|(i, _)| *i != drop).map(|(_, x)| x.clone()).collect();
            let gaps = if gap { vec![drop] } else { vec![] };
            let xs = run(&whole(&p), &gaps);
            complete_ones_match(&xs, &clean);
            assert!(xs.iter().any(|x| !x.complete) || drop >= 8, "dropping packet {drop} cost nothing: {xs:?}");
        }
    }
}

#[test]
fn every_cut_length_of_every_packet() {
    let clean = run(&whole(&transcript()), &[]);
    let t = transcript();
    for n in 0..t.len() {
        for captured in (0..t[n].1.len()).step_by(7) {
            let mut p = whole(&t);
            p[n].2 = captured;
            let xs = run(&p, &[]);
            complete_ones_match(&xs, &clean);
        }
    }
}

#[test]
fn mutated_and_random_packets_never_panic() {
    let mut rng = Rng(0x5eed_0002);
    let t = transcript();
    for _ in 0..rounds() {
        let mut p = whole(&t);
        for _ in 0..1 + rng.below(4) {
            let k = rng.below(p.len());
            let b = &mut p[k].1;
            if b.is_empty() {
                continue;
            }
            let at = rng.below(b.len());
            match rng.below(3) {
                0 => b[at] ^= 1 << rng.below(8),
                1 => b[at] = rng.next() as u8,
                _ => {
                    b.truncate(at);
                    p[k].2 = p[k].2.min(at);
                }
            }
            p[k].2 = p[k].2.min(p[k].1.len());
        }
        run(&p, &[rng.below(12)]);
        // Random bytes, and random frames of plausible types.
        let mut q = Vec::new();
        for _ in 0..rng.below(12) {
            let dir = if rng.below(2) == 0 { Direction::Send } else { Direction::Recv };
            let n = rng.below(60);
            let mut b = rng.bytes(n);
            if rng.below(2) == 0 {
                let id = rng.below(20) as u64;
                b = stream(id, rng.below(40) as u64, &b, rng.below(4) == 0);
            }
            let n = b.len();
            q.push((dir, b, n - rng.below(n + 1) / 4));
        }
        run(&q, &[rng.below(12)]);
    }
}
