//! Truncation, gap-at-every-position, mutation and random-byte runs (a deterministic PRNG):
//! nothing may panic, every list stays bounded, and whatever is reported complete is right.
use loona_hpack::Encoder;

use super::test_util::Feeder;
use super::tests_h2::{
    CONTINUATION, DATA, EH, ES, HEADERS, PADDED, client_start, enc, frame, req, settings,
};
use super::{
    Direction, HTTP2_PREFACE, HttpConnection, HttpExchange, MAX_ERRORS, MAX_HEADER_FIELD_BYTES,
    MAX_HEADER_FIELDS,
};

use crate::test_rng::Rng;

/// Rounds per random test; `TRACER_FUZZ_ROUNDS` runs more (the seeds are fixed).
fn rounds() -> usize {
    std::env::var("TRACER_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

type Transcript = Vec<(Direction, Vec<u8>)>;

fn h1_transcript() -> Transcript {
    use Direction::{Recv, Send};
    vec![
        (Send, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n".to_vec()),
        (Recv, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello".to_vec()),
        (Send, b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\n\r\npayload".to_vec()),
        (Recv, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n".to_vec()),
        (Recv, b"10\r\n0123456789abcdef\r\n0\r\n\r\n".to_vec()),
        (Send, b"GET /c HTTP/1.1\r\nHost: h\r\n\r\nHEAD /d HTTP/1.1\r\nHost: h\r\n\r\n".to_vec()),
        (Recv, b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n".to_vec()),
        (Send, b"GET /e HTTP/1.1\r\nHost: h\r\n\r\n".to_vec()),
        (Recv, b"HTTP/1.1 200 OK\r\n\r\nuntil the close".to_vec()),
    ]
}

fn h2_transcript() -> Transcript {
    use Direction::{Recv, Send};
    let mut ce = Encoder::new();
    let mut se = Encoder::new();
    let mut h = req("GET", "/one");
    h.push(("x-client", "c1"));
    let c1 = [
        client_start(),
        frame(HEADERS, EH | ES, 1, &enc(&mut ce, &h)),
    ]
    .concat();
    h[3] = (":path", "/two");
    let b3 = enc(&mut ce, &h);
    let c2 = [
        frame(HEADERS, ES, 3, &b3[..4]),
        frame(CONTINUATION, EH, 3, &b3[4..]),
        frame(HEADERS, EH, 5, &enc(&mut ce, &req("POST", "/three"))),
        frame(DATA, ES | PADDED, 5, &[2, b'x', b'y', 0, 0]),
    ]
    .concat();
    let r1 = [
        settings(&[(3, 100)]),
        frame(
            HEADERS,
            EH,
            1,
            &enc(&mut se, &[(":status", "200"), ("x-server", "s")]),
        ),
        frame(DATA, 0, 1, &[b'd'; 300]),
    ]
    .concat();
    let r2 = [
        frame(
            HEADERS,
            EH | ES,
            3,
            &enc(&mut se, &[(":status", "404"), ("x-server", "s")]),
        ),
        frame(HEADERS, EH, 5, &enc(&mut se, &[(":status", "201")])),
        frame(DATA, ES, 1, &[b'e'; 20]),
        frame(DATA, ES, 5, b"done"),
    ]
    .concat();
    vec![(Send, c1), (Recv, r1), (Send, c2), (Recv, r2)]
}

/// Runs a transcript whole: the reference exchanges.
fn reference(t: &Transcript) -> Vec<HttpExchange> {
    let mut f = Feeder::new();
    for (dir, data) in t {
        f.chunk(*dir, data, data.len());
    }
    let mut v = f.take();
    v.extend(f.flush());
    v
}

fn key(e: &HttpExchange) -> (Option<u32>, Option<String>) {
    (e.stream_id, e.path.clone())
}

/// Checks that hold for any input.
fn check_bounds(conn: &HttpConnection, v: &[HttpExchange]) {
    assert!(conn.errors().len() <= MAX_ERRORS);
    for e in v {
        assert_eq!(e.complete, e.partial_reason.is_none(), "{e:?}");
        for h in [&e.request_headers, &e.response_headers] {
            assert!(h.len() <= MAX_HEADER_FIELDS);
            assert!(
                h.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
                    <= MAX_HEADER_FIELD_BYTES * 4
            );
        }
    }
}

/// Exchanges that a damaged run reports must agree with the reference where they claim to.
fn check_against(reference: &[HttpExchange], got: &[HttpExchange], what: &str) {
    for e in got {
        let Some(r) = reference
            .iter()
            .find(|r| key(r) == key(e) && e.path.is_some())
        else {
            continue;
        };
        if e.method.is_some() {
            assert_eq!(e.method, r.method, "{what}: {e:?}");
        }
        if e.status.is_some() {
            assert_eq!(e.status, r.status, "{what}: {e:?}");
        }
        let approximate = e
            .partial_reason
            .as_deref()
            .is_some_and(|p| p.contains("approximate"));
        if !approximate {
            assert!(
                e.response_body_bytes <= r.response_body_bytes,
                "{what}: {e:?} vs {r:?}"
            );
        }
        if e.complete && r.complete {
            assert_eq!(
                (e.response_body_bytes, e.request_body_bytes, e.status),
                (r.response_body_bytes, r.request_body_bytes, r.status),
                "{what}"
            );
        }
    }
}

#[test]
fn references_are_complete() {
    let h1 = reference(&h1_transcript());
    let got: Vec<_> = h1
        .iter()
        .map(|e| {
            (
                e.path.as_deref(),
                e.status,
                e.response_body_bytes,
                e.complete,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some("/a"), Some(200), 5, true),
            (Some("/b"), Some(200), 19, true),
            (Some("/c"), Some(304), 0, true),
            (Some("/d"), Some(200), 0, true),
            (Some("/e"), Some(200), 15, true),
        ]
    );
    let h2 = reference(&h2_transcript());
    let got: Vec<_> = h2
        .iter()
        .map(|e| (e.stream_id, e.status, e.response_body_bytes, e.complete))
        .collect();
    assert_eq!(
        got,
        [
            (Some(3), Some(404), 0, true),
            (Some(1), Some(200), 320, true),
            (Some(5), Some(201), 4, true)
        ]
    );
}

/// The capture stops after every possible byte (the connection then closes), and separately
/// the call holding that byte is captured only up to it (a gap from there to its end).
#[test]
fn every_prefix_and_every_gap_position() {
    for (name, t) in [("h1", h1_transcript()), ("h2", h2_transcript())] {
        let full = reference(&t);
        let total: usize = t.iter().map(|(_, d)| d.len()).sum();
        for cut in 0..=total {
            for gap_mode in [false, true] {
                let mut f = Feeder::new();
                let mut seen = 0usize;
                for (dir, data) in &t {
                    if seen >= cut {
                        if gap_mode {
                            // Later calls are whole again.
                            f.chunk(*dir, data, data.len());
                        }
                        continue;
                    }
                    let keep = (cut - seen).min(data.len());
                    if gap_mode {
                        f.chunk(*dir, data, keep);
                    } else {
                        f.chunk(*dir, &data[..keep], keep);
                    }
                    seen += data.len();
                }
                let mut v = f.take();
                v.extend(f.flush());
                let what = format!("{name} cut {cut} gap {gap_mode}");
                check_bounds(&f.conn, &v);
                assert!(v.len() <= full.len() + 2, "{what}: {v:#?}");
                // Cut short (without a gap), /e's body, delimited by the close, really is shorter.
                let comparable: Vec<_> = v
                    .iter()
                    .filter(|e| gap_mode || e.path.as_deref() != Some("/e"))
                    .cloned()
                    .collect();
                check_against(&full, &comparable, &what);
                if cut == total {
                    assert_eq!(v, full, "{what}");
                }
            }
        }
    }
}

/// Valid conversations with bytes flipped, dropped or duplicated, split at random places, with
/// random gaps.
#[test]
fn mutated_conversations() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let transcripts = [h1_transcript(), h2_transcript()];
    for round in 0..rounds() {
        let t = &transcripts[round % 2];
        let mut f = Feeder::new();
        for (dir, data) in t {
            let mut d = data.clone();
            for _ in 0..rng.below(4) {
                if d.is_empty() {
                    break;
                }
                let i = rng.below(d.len());
                match rng.below(4) {
                    0 => d[i] ^= 1 << rng.below(8),
                    1 => d[i] = rng.next() as u8,
                    2 => {
                        d.remove(i);
                    }
                    _ => d.insert(i, rng.next() as u8),
                }
            }
            // Split into calls, some with gaps.
            let mut rest = &d[..];
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len());
                let (call, tail) = rest.split_at(n);
                let captured = if rng.below(5) == 0 {
                    rng.below(n + 1)
                } else {
                    n
                };
                f.chunk(*dir, call, captured);
                rest = tail;
                if rng.below(3) == 0 {
                    let v = f.take();
                    check_bounds(&f.conn, &v);
                }
            }
        }
        let v = f.flush();
        check_bounds(&f.conn, &v);
        assert!(v.len() <= 16, "round {round}: {v:#?}");
    }
}

#[test]
fn random_bytes() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for round in 0..rounds() {
        let mut conn = HttpConnection::new();
        let mut n_out = 0usize;
        // Some rounds start like a real protocol so the decoders (not detection) see the junk.
        match round % 3 {
            0 => conn.feed(Direction::Send, 1, 2, 24, HTTP2_PREFACE),
            1 => conn.feed(Direction::Send, 1, 2, 18, b"GET / HTTP/1.1\r\n\r\n"),
            _ => {}
        }
        for _ in 0..rng.below(24) {
            let dir = if rng.below(2) == 0 {
                Direction::Send
            } else {
                Direction::Recv
            };
            let n = rng.below(600) as usize;
            let mut data = rng.bytes(n);
            if round % 3 == 0 && rng.below(2) == 0 {
                // Well-formed frame headers around random payloads (HPACK blocks included).
                data.clear();
                for _ in 0..1 + rng.below(6) {
                    let len = rng.below(48) as usize;
                    let ty = rng.below(11) as u8;
                    let flags = rng.next() as u8 & 0x2d;
                    let stream = [0, 1, 2, 3, 5][rng.below(5) as usize];
                    data.extend(frame(ty, flags, stream, &rng.bytes(len)));
                }
            }
            let n = data.len();
            if rng.below(4) == 0 && data.len() >= 9 {
                // A plausible frame header in front.
                let len = rng.below(64) as u32;
                data[..3].copy_from_slice(&len.to_be_bytes()[1..]);
                data[3] = rng.below(10) as u8;
                data[5..9].copy_from_slice(&(rng.below(8) as u32).to_be_bytes());
            }
            let len = if rng.below(6) == 0 {
                n as u32 + rng.below(1 << 20) as u32
            } else {
                n as u32
            };
            let t = 10 * round as u64;
            conn.feed(dir, t, t + 1, len, &data);
            let v = conn.take_exchanges(false);
            check_bounds(&conn, &v);
            n_out += v.len();
        }
        let v = conn.take_exchanges(true);
        check_bounds(&conn, &v);
        n_out += v.len();
        assert!(n_out <= 24 * 300, "round {round}");
    }
}

#[test]
fn hostile_inputs_stay_bounded() {
    // HPACK: a 4000-byte entry referenced 20000 times.
    let mut f = Feeder::new();
    f.send(
        &[
            client_start(),
            frame(
                HEADERS,
                EH | ES,
                1,
                &enc(&mut Encoder::new(), &req("GET", "/")),
            ),
        ]
        .concat(),
    );
    let mut block = vec![0x40, 5];
    block.extend_from_slice(b"x-big");
    block.extend_from_slice(&[0x7f, 0x81, 0x1e]); // length 127 + 3841 = 3968
    block.extend(std::iter::repeat_n(b'v', 3968));
    block.push(0x88);
    block.extend(std::iter::repeat_n(0xbe, 20_000)); // index 62: x-big
    let started = std::time::Instant::now();
    f.recv(&frame(HEADERS, EH | ES, 1, &block));
    let e = f.take().pop().expect("one exchange");
    assert_eq!(e.status, Some(200));
    assert!(e.response_headers.len() <= MAX_HEADER_FIELDS);
    let bytes: usize = e
        .response_headers
        .iter()
        .map(|(n, v)| n.len() + v.len())
        .sum();
    assert!(bytes <= MAX_HEADER_FIELD_BYTES, "{bytes}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));

    // A 16 MiB frame announced, never sent, and a call claiming 4 GiB.
    let mut f = Feeder::new();
    f.send(
        &[
            client_start(),
            frame(
                HEADERS,
                EH | ES,
                1,
                &enc(&mut Encoder::new(), &req("GET", "/")),
            ),
        ]
        .concat(),
    );
    f.recv(&frame(
        HEADERS,
        EH,
        1,
        &enc(&mut Encoder::new(), &[(":status", "200")]),
    ));
    f.recv(&[0xff, 0xff, 0xff, DATA, 0, 0, 0, 0, 1]);
    f.conn.feed(Direction::Recv, 1, 2, u32::MAX, b"abc");
    let e = f.flush().pop().unwrap();
    assert_eq!(e.response_body_bytes, 0xff_ffff);

    // An HTTP/1 head that never ends.
    let mut f = Feeder::new();
    f.send(b"GET / HTTP/1.1\r\n");
    for _ in 0..100 {
        f.send(&[b"X-Filler: ".as_slice(), &[b'a'; 1000], b"\r\n"].concat());
    }
    assert!(
        f.conn
            .errors()
            .iter()
            .any(|e| e.contains("larger than 64 KiB")),
        "{:?}",
        f.conn.errors()
    );

    // Many requests that are never answered.
    let mut f = Feeder::new();
    for i in 0..100 {
        f.send(format!("GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
    }
    let given_up = f.take();
    assert_eq!(given_up.len(), 100 - super::MAX_OUTSTANDING_REQUESTS);
    assert_eq!(given_up[0].path.as_deref(), Some("/0"));
    assert_eq!(f.flush().len(), super::MAX_OUTSTANDING_REQUESTS);

    // Errors are bounded.
    let mut f = Feeder::new();
    f.send(b"GET / HTTP/1.1\r\n\r\n");
    for _ in 0..1000 {
        f.recv(b"HTTP/1.1 999999 nonsense\r\n\r\n");
        f.recv(b"\x00garbage");
    }
    assert_eq!(f.conn.errors().len(), MAX_ERRORS);
    assert!(f.conn.errors_dropped() > 0);
}
