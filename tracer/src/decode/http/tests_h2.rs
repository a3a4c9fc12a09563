//! HTTP/2 decoding: frames built by hand, header blocks by loona-hpack's encoder (literal
//! strings and a dynamic table), the RFC 7541 Huffman examples, and a real server (hyper).
use loona_hpack::Encoder;

use super::test_util::{Feeder, header, one};
use super::{Direction, HTTP2_PREFACE, HttpExchange, MAX_STREAMS, Protocol};

pub(crate) const DATA: u8 = 0;
pub(crate) const HEADERS: u8 = 1;
pub(crate) const RST_STREAM: u8 = 3;
pub(crate) const SETTINGS: u8 = 4;
pub(crate) const PUSH_PROMISE: u8 = 5;
pub(crate) const GOAWAY: u8 = 7;
pub(crate) const WINDOW_UPDATE: u8 = 8;
pub(crate) const CONTINUATION: u8 = 9;
pub(crate) const ES: u8 = 0x1;
pub(crate) const EH: u8 = 0x4;
pub(crate) const PADDED: u8 = 0x8;
pub(crate) const PRIO: u8 = 0x20;

pub(crate) fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut v = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub(crate) fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in pairs {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &p)
}

pub(crate) fn enc(e: &mut Encoder<'static>, h: &[(&str, &str)]) -> Vec<u8> {
    e.encode(h.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
}

fn padded(content: &[u8], pad: u8) -> Vec<u8> {
    let mut v = vec![pad];
    v.extend_from_slice(content);
    v.extend(std::iter::repeat_n(0u8, pad as usize));
    v
}

pub(crate) fn req<'a>(method: &'a str, path: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", method),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", path),
    ]
}

/// Preface and client SETTINGS.
pub(crate) fn client_start() -> Vec<u8> {
    [HTTP2_PREFACE, &settings(&[(2, 0), (4, 1 << 20)])].concat()
}

fn by_stream(v: &[HttpExchange], id: u32) -> &HttpExchange {
    v.iter()
        .find(|e| e.stream_id == Some(id))
        .unwrap_or_else(|| panic!("no stream {id} in {v:#?}"))
}

#[test]
fn three_streams_interleaved() {
    let mut ce = Encoder::new();
    let mut se = Encoder::new();
    let mut f = Feeder::new();

    let mut h1 = req("GET", "/a");
    h1.extend([("user-agent", "t/1"), ("x-client-id", "abc")]);
    let b1 = enc(&mut ce, &h1);
    let c1 = [
        client_start(),
        frame(WINDOW_UPDATE, 0, 0, &[0, 0x0f, 0, 1]),
        frame(HEADERS, EH | ES, 1, &b1),
    ]
    .concat();
    let (c1_start, c1_ts) = f.send(&c1);
    assert_eq!(f.conn.protocol(), Some(Protocol::Http2));
    f.recv(&[settings(&[(3, 100)]), frame(SETTINGS, 1, 0, &[])].concat());

    // Stream 3: HEADERS with priority, the block continued in a CONTINUATION; it reuses
    // x-client-id from the dynamic table.
    let mut h3 = req("GET", "/b");
    h3.push(("x-client-id", "abc"));
    let b3 = enc(&mut ce, &h3);
    let (b3a, b3b) = b3.split_at(3);
    let h3_payload = [&[0x80, 0, 0, 1, 200][..], b3a].concat();
    // Stream 5: padded HEADERS, two DATA frames (the first padded).
    let mut h5 = req("POST", "/upload");
    h5.push(("content-type", "application/json"));
    let b5 = enc(&mut ce, &h5);
    let c2 = [
        frame(HEADERS, ES | PRIO, 3, &h3_payload),
        frame(CONTINUATION, EH, 3, b3b),
        frame(HEADERS, EH | PADDED, 5, &padded(&b5, 7)),
        frame(DATA, PADDED, 5, &padded(b"0123456789", 5)),
        frame(DATA, ES, 5, b"abcdef"),
    ]
    .concat();
    let (_, c2_ts) = f.send(&c2);

    let rb1 = enc(
        &mut se,
        &[
            (":status", "200"),
            ("content-type", "text/html"),
            ("x-server", "s1"),
        ],
    );
    let rb3 = enc(&mut se, &[(":status", "404"), ("x-server", "s1")]);
    let rb5 = enc(&mut se, &[(":status", "201")]);
    let r2 = [
        frame(HEADERS, EH, 1, &rb1),
        frame(DATA, 0, 1, &[b'a'; 100]),
        frame(HEADERS, EH, 3, &rb3),
        frame(HEADERS, EH, 5, &rb5),
        frame(DATA, ES, 1, &[b'b'; 50]),
        frame(DATA, ES | PADDED, 3, &padded(&[b'c'; 20], 10)),
        frame(DATA, ES, 5, &[]),
    ]
    .concat();
    // Split inside the first frame header, and inside DATA(1).
    let (_, r_ts1) = f.recv(&r2[..4]);
    let (_, r_ts2) = f.recv(&r2[4..60]);
    assert!(f.take().is_empty());
    let (_, r_ts3) = f.recv(&r2[60..]);
    assert!(r_ts1 < r_ts2 && r_ts2 < r_ts3);
    let v = f.take();
    assert_eq!(
        v.iter().map(|e| e.stream_id).collect::<Vec<_>>(),
        [Some(1), Some(3), Some(5)]
    );

    let e1 = by_stream(&v, 1);
    assert_eq!(
        (
            e1.method.as_deref(),
            e1.scheme.as_deref(),
            e1.authority.as_deref(),
            e1.path.as_deref()
        ),
        (Some("GET"), Some("https"), Some("example.com"), Some("/a"))
    );
    assert_eq!(e1.status, Some(200));
    assert_eq!(e1.request_header_bytes, b1.len() as u64);
    assert_eq!(e1.response_header_bytes, rb1.len() as u64);
    assert_eq!((e1.request_body_bytes, e1.response_body_bytes), (0, 150));
    assert_eq!((e1.request_start_ns, e1.request_end_ns), (c1_start, c1_ts));
    assert_eq!(
        e1.response_start_ns,
        Some(r_ts1),
        "the chunk where HEADERS started"
    );
    assert_eq!(e1.response_end_ns, Some(r_ts3));
    assert_eq!(header(&e1.request_headers, "user-agent"), Some("t/1"));
    assert_eq!(header(&e1.request_headers, "x-client-id"), Some("abc"));
    assert!(e1.request_headers.iter().all(|(n, _)| !n.starts_with(':')));
    assert_eq!(
        header(&e1.response_headers, "content-type"),
        Some("text/html")
    );
    assert!(e1.complete);

    let e3 = by_stream(&v, 3);
    assert_eq!((e3.path.as_deref(), e3.status), (Some("/b"), Some(404)));
    assert_eq!(header(&e3.request_headers, "x-client-id"), Some("abc"));
    assert_eq!(header(&e3.response_headers, "x-server"), Some("s1"));
    assert_eq!(e3.request_header_bytes, (5 + b3.len()) as u64);
    assert_eq!(e3.response_body_bytes, 20, "padding is not body");
    assert!(e3.complete);

    let e5 = by_stream(&v, 5);
    assert_eq!(
        (e5.method.as_deref(), e5.path.as_deref(), e5.status),
        (Some("POST"), Some("/upload"), Some(201))
    );
    assert_eq!(e5.request_header_bytes, (1 + b5.len() + 7) as u64);
    assert_eq!(e5.request_body_bytes, 16);
    assert_eq!(e5.request_end_ns, c2_ts);
    assert_eq!(e5.response_body_bytes, 0);
    assert_eq!(
        header(&e5.request_headers, "content-type"),
        Some("application/json")
    );
    assert!(e5.complete);
    assert!(f.conn.errors().is_empty(), "{:?}", f.conn.errors());
    assert!(f.flush().is_empty());
}

#[test]
fn rst_stream_ends_a_stream_incomplete() {
    let mut ce = Encoder::new();
    let mut se = Encoder::new();
    let mut f = Feeder::new();
    let c = [
        client_start(),
        frame(HEADERS, EH | ES, 1, &enc(&mut ce, &req("GET", "/cancel"))),
        frame(HEADERS, EH | ES, 3, &enc(&mut ce, &req("GET", "/refused"))),
    ]
    .concat();
    f.send(&c);
    f.recv(
        &[
            frame(HEADERS, EH, 1, &enc(&mut se, &[(":status", "200")])),
            frame(DATA, 0, 1, &[0; 10]),
        ]
        .concat(),
    );
    let (_, t) = f.recv(&frame(RST_STREAM, 0, 3, &7u32.to_be_bytes()));
    let refused = one(f.take());
    assert_eq!((refused.stream_id, refused.status), (Some(3), None));
    assert_eq!(
        refused.partial_reason.as_deref(),
        Some("RST_STREAM REFUSED_STREAM from the server")
    );
    f.send(&frame(RST_STREAM, 0, 1, &8u32.to_be_bytes()));
    let cancelled = one(f.take());
    assert_eq!(
        (cancelled.path.as_deref(), cancelled.status),
        (Some("/cancel"), Some(200))
    );
    assert_eq!(cancelled.response_body_bytes, 10);
    assert_eq!(cancelled.response_end_ns, Some(t - 10));
    assert_eq!(
        cancelled.partial_reason.as_deref(),
        Some("RST_STREAM CANCEL from the client")
    );
    assert!(!cancelled.complete);
    // Frames of a reset stream are ignored.
    f.recv(&frame(DATA, ES, 1, b"late"));
    assert!(f.flush().is_empty());
}

#[test]
fn gap_inside_data_payload_is_counted() {
    let mut se = Encoder::new();
    let mut f = Feeder::new();
    f.send(
        &[
            client_start(),
            frame(
                HEADERS,
                EH | ES,
                1,
                &enc(&mut Encoder::new(), &req("GET", "/big")),
            ),
        ]
        .concat(),
    );
    // HEADERS + a 40000-byte DATA frame, read 16 KiB at a time, 4 KiB captured: the frame's
    // payload runs through three gaps.
    let r = [
        frame(HEADERS, EH, 1, &enc(&mut se, &[(":status", "200")])),
        frame(DATA, 0, 1, &vec![7u8; 40_000]),
    ]
    .concat();
    f.calls(Direction::Recv, &r, 16_384, 4096);
    assert!(f.take().is_empty());
    let (_, t) = f.recv(&frame(DATA, ES | PADDED, 1, &padded(b"tail!", 3)));
    let ex = one(f.take());
    assert_eq!((ex.status, ex.response_body_bytes), (Some(200), 40_005));
    assert_eq!(ex.response_end_ns, Some(t));
    assert!(ex.complete, "{:?}", ex.partial_reason);
    assert!(f.conn.errors().is_empty(), "{:?}", f.conn.errors());
}

#[test]
fn frame_header_in_a_gap_desyncs_then_resyncs() {
    let mut ce = Encoder::new();
    let mut se = Encoder::new();
    let mut f = Feeder::new();
    f.send(
        &[
            client_start(),
            frame(HEADERS, EH | ES, 1, &enc(&mut ce, &req("GET", "/one"))),
        ]
        .concat(),
    );
    let r1 = [
        frame(
            HEADERS,
            EH,
            1,
            &enc(&mut se, &[(":status", "200"), ("x-server", "s1")]),
        ),
        frame(DATA, 0, 1, &[1; 5000]),
        frame(DATA, ES, 1, &[2; 10]),
    ]
    .concat();
    // One read, 4 KiB captured: the second DATA frame's header is in the gap.
    f.chunk(Direction::Recv, &r1, 4096);
    assert!(
        f.conn
            .errors()
            .iter()
            .any(|e| e.contains("frame header inside a capture gap")),
        "{:?}",
        f.conn.errors()
    );
    // Bytes that are not at a frame boundary produce nothing.
    f.recv(b"\x00\x00\x05\x00\x01\x00\x00\x00\x09hello, but stream 9 is unknown");
    f.recv(&[3u8; 300]);
    assert!(f.take().is_empty(), "no garbage exchanges");

    // New streams; the server's replies start a read each.
    for (id, path) in [(3u32, "/two"), (5, "/three"), (7, "/four")] {
        f.send(&frame(
            HEADERS,
            EH | ES,
            id,
            &enc(&mut ce, &req("GET", path)),
        ));
    }
    // Stream 3's response refers to x-server from before the gap: not decodable after the
    // restart, but its DATA still counts.
    let rb3 = enc(&mut se, &[(":status", "200"), ("x-server", "s1")]);
    f.recv(&[frame(HEADERS, EH, 3, &rb3), frame(DATA, ES, 3, b"three")].concat());
    // New entries after the restart are mirrored: x-new is added, then referred to.
    let rb5 = enc(&mut se, &[(":status", "201"), ("x-new", "n1")]);
    let rb7 = enc(&mut se, &[(":status", "202"), ("x-new", "n1")]);
    assert!(
        rb7.len() < rb5.len(),
        "the second one uses the dynamic table"
    );
    f.recv(
        &[
            frame(HEADERS, EH | ES, 5, &rb5),
            frame(HEADERS, EH | ES, 7, &rb7),
        ]
        .concat(),
    );
    let v = f.take();
    assert_eq!(v.len(), 3, "{v:#?}");
    let e3 = by_stream(&v, 3);
    assert_eq!(
        (e3.path.as_deref(), e3.status, e3.response_body_bytes),
        (Some("/two"), None, 5)
    );
    assert!(
        e3.partial_reason
            .as_deref()
            .unwrap()
            .contains("not decodable"),
        "{:?}",
        e3.partial_reason
    );
    let e5 = by_stream(&v, 5);
    assert_eq!(
        (
            e5.status,
            header(&e5.response_headers, "x-new"),
            e5.complete
        ),
        (Some(201), Some("n1"), true)
    );
    let e7 = by_stream(&v, 7);
    assert_eq!(
        (
            e7.status,
            header(&e7.response_headers, "x-new"),
            e7.complete
        ),
        (Some(202), Some("n1"), true)
    );
    assert!(
        f.conn.errors().iter().any(|e| e.contains("HPACK")),
        "{:?}",
        f.conn.errors()
    );

    let e1 = one(f.flush());
    assert_eq!(
        (e1.stream_id, e1.status, e1.response_body_bytes),
        (Some(1), Some(200), 5000)
    );
    let why = e1.partial_reason.as_deref().unwrap();
    assert!(
        why.contains("server->client bytes lost in a capture gap"),
        "{why}"
    );
    assert!(
        why.contains("connection closed before the response ended"),
        "{why}"
    );
}

#[test]
fn header_block_cut_by_a_gap_restarts_hpack() {
    let mut ce = Encoder::new();
    let mut se = Encoder::new();
    let mut f = Feeder::new();
    let mut h1 = req("GET", "/one");
    h1.push(("x-trace", "a1"));
    f.send(
        &[
            client_start(),
            frame(HEADERS, EH | ES, 1, &enc(&mut ce, &h1)),
        ]
        .concat(),
    );
    // A new entry (x-cut) and a long cookie (a static name: loona does not index it, so the
    // encoder's table keeps x-trace).
    let big = "b".repeat(6000);
    let mut h3 = req("GET", "/two");
    h3.extend([("x-cut", "1"), ("cookie", &big)]);
    // The HEADERS payload ends exactly where the write ends, inside its gap.
    f.chunk(
        Direction::Send,
        &frame(HEADERS, EH | ES, 3, &enc(&mut ce, &h3)),
        4096,
    );
    let mut h5 = req("GET", "/three");
    h5.push(("x-trace", "a1")); // an entry from before the cut: not decodable
    f.send(&frame(HEADERS, EH | ES, 5, &enc(&mut ce, &h5)));
    let mut h7 = req("GET", "/four");
    h7.push(("x-new", "n1")); // a new entry
    f.send(&frame(HEADERS, EH | ES, 7, &enc(&mut ce, &h7)));
    let mut h9 = req("GET", "/five");
    h9.push(("x-new", "n1")); // refers to it
    f.send(&frame(HEADERS, EH | ES, 9, &enc(&mut ce, &h9)));
    for id in [1, 3, 5, 7, 9] {
        f.recv(&frame(
            HEADERS,
            EH | ES,
            id,
            &enc(&mut se, &[(":status", "200")]),
        ));
    }
    let v = f.take();
    assert_eq!(v.len(), 5, "{v:#?}");
    assert!(v.iter().all(|e| e.status == Some(200)));
    let e1 = by_stream(&v, 1);
    assert_eq!(
        (
            e1.path.as_deref(),
            header(&e1.request_headers, "x-trace"),
            e1.complete
        ),
        (Some("/one"), Some("a1"), true)
    );
    let e3 = by_stream(&v, 3);
    assert_eq!(e3.method, None);
    assert_eq!(
        e3.partial_reason.as_deref(),
        Some("request header block cut by a capture gap")
    );
    let e5 = by_stream(&v, 5);
    assert_eq!(e5.path, None);
    assert_eq!(
        e5.partial_reason.as_deref(),
        Some("request header block not decodable (HPACK)")
    );
    let e7 = by_stream(&v, 7);
    assert_eq!(
        (
            e7.path.as_deref(),
            header(&e7.request_headers, "x-new"),
            e7.complete
        ),
        (Some("/four"), Some("n1"), true)
    );
    let e9 = by_stream(&v, 9);
    assert_eq!(
        (
            e9.path.as_deref(),
            header(&e9.request_headers, "x-new"),
            e9.complete
        ),
        (Some("/five"), Some("n1"), true)
    );
    let errors = f.conn.errors();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("stream 3: header block cut by a capture gap"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("HPACK decoding of stream 5 failed"),
        "{errors:?}"
    );
}

/// RFC 7541, C.4 (requests) and C.6 (responses, 256-byte table): Huffman-coded strings and
/// dynamic-table references, carried in HEADERS frames.
#[test]
fn rfc7541_huffman_examples() {
    let c4: [&[u8]; 3] = [
        &[
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ],
        &[
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
        ],
        &[
            0x82, 0x87, 0x85, 0xbf, 0x40, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f,
            0x89, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf,
        ],
    ];
    let c6: [&[u8]; 3] = [
        &[
            0x48, 0x82, 0x64, 0x02, 0x58, 0x85, 0xae, 0xc3, 0x77, 0x1a, 0x4b, 0x61, 0x96, 0xd0,
            0x7a, 0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20, 0x05, 0x95, 0x04, 0x0b, 0x81,
            0x66, 0xe0, 0x82, 0xa6, 0x2d, 0x1b, 0xff, 0x6e, 0x91, 0x9d, 0x29, 0xad, 0x17, 0x18,
            0x63, 0xc7, 0x8f, 0x0b, 0x97, 0xc8, 0xe9, 0xae, 0x82, 0xae, 0x43, 0xd3,
        ],
        &[0x48, 0x83, 0x64, 0x0e, 0xff, 0xc1, 0xc0, 0xbf],
        &[
            0x88, 0xc1, 0x61, 0x96, 0xd0, 0x7a, 0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20,
            0x05, 0x95, 0x04, 0x0b, 0x81, 0x66, 0xe0, 0x84, 0xa6, 0x2d, 0x1b, 0xff, 0xc0, 0x5a,
            0x83, 0x9b, 0xd9, 0xab, 0x77, 0xad, 0x94, 0xe7, 0x82, 0x1d, 0xd7, 0xf2, 0xe6, 0xc7,
            0xb3, 0x35, 0xdf, 0xdf, 0xcd, 0x5b, 0x39, 0x60, 0xd5, 0xaf, 0x27, 0x08, 0x7f, 0x36,
            0x72, 0xc1, 0xab, 0x27, 0x0f, 0xb5, 0x29, 0x1f, 0x95, 0x87, 0x31, 0x60, 0x65, 0xc0,
            0x03, 0xed, 0x4e, 0xe5, 0xb1, 0x06, 0x3d, 0x50, 0x07,
        ],
    ];
    let mut f = Feeder::new();
    // HEADER_TABLE_SIZE 256 for the server's encoder, as in C.6.
    f.send(&[HTTP2_PREFACE, &settings(&[(1, 256)])].concat());
    for (i, (q, r)) in c4.iter().zip(c6.iter()).enumerate() {
        let id = 1 + 2 * i as u32;
        f.send(&frame(HEADERS, EH | ES, id, q));
        f.recv(&frame(HEADERS, EH | ES, id, r));
    }
    let v = f.take();
    assert_eq!(v.len(), 3);
    let got: Vec<_> = v
        .iter()
        .map(|e| {
            (
                e.scheme.as_deref(),
                e.authority.as_deref(),
                e.path.as_deref(),
                e.status,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some("http"), Some("www.example.com"), Some("/"), Some(302)),
            (Some("http"), Some("www.example.com"), Some("/"), Some(307)),
            (
                Some("https"),
                Some("www.example.com"),
                Some("/index.html"),
                Some(200)
            ),
        ]
    );
    assert_eq!(
        header(&v[1].request_headers, "cache-control"),
        Some("no-cache")
    );
    assert_eq!(
        header(&v[2].request_headers, "custom-key"),
        Some("custom-value")
    );
    assert_eq!(
        header(&v[1].response_headers, "location"),
        Some("https://www.example.com")
    );
    assert_eq!(
        header(&v[2].response_headers, "date"),
        Some("Mon, 21 Oct 2013 20:13:22 GMT")
    );
    assert_eq!(
        header(&v[2].response_headers, "set-cookie"),
        Some("foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")
    );
    assert!(v.iter().all(|e| e.complete));
    assert!(f.conn.errors().is_empty(), "{:?}", f.conn.errors());
}

#[test]
fn hpack_table_size_above_the_setting_is_an_error() {
    let mut f = Feeder::new();
    f.send(&[HTTP2_PREFACE, &settings(&[(1, 100)])].concat());
    f.send(&frame(
        HEADERS,
        EH | ES,
        1,
        &enc(&mut Encoder::new(), &req("GET", "/")),
    ));
    // A size update to 4096 (0x3f 0xe1 0x1f) then :status 200 (0x88).
    f.recv(&frame(HEADERS, EH | ES, 1, &[0x3f, 0xe1, 0x1f, 0x88]));
    let ex = one(f.take());
    assert_eq!(ex.status, None);
    assert!(
        f.conn.errors().iter().any(|e| e.contains("HPACK")),
        "{:?}",
        f.conn.errors()
    );
    // A size update within the setting is fine.
    f.send(&frame(
        HEADERS,
        EH | ES,
        3,
        &enc(&mut Encoder::new(), &req("GET", "/")),
    ));
    f.recv(&frame(HEADERS, EH | ES, 3, &[0x3f, 0x45, 0x88]));
    assert_eq!(one(f.take()).status, Some(200));
}

#[test]
fn goaway_refuses_later_streams() {
    let mut ce = Encoder::new();
    let mut se = Encoder::new();
    let mut f = Feeder::new();
    f.send(
        &[
            client_start(),
            frame(HEADERS, EH | ES, 1, &enc(&mut ce, &req("GET", "/kept"))),
            frame(HEADERS, EH | ES, 3, &enc(&mut ce, &req("GET", "/refused"))),
        ]
        .concat(),
    );
    let mut goaway = 1u32.to_be_bytes().to_vec();
    goaway.extend_from_slice(&0u32.to_be_bytes());
    f.recv(&frame(GOAWAY, 0, 0, &goaway));
    let refused = one(f.take());
    assert_eq!(
        (refused.stream_id, refused.partial_reason.as_deref()),
        (Some(3), Some("refused by GOAWAY"))
    );
    let g = f.conn.goaway().expect("goaway recorded");
    assert_eq!(
        (g.from_server, g.last_stream_id, g.error_code),
        (true, 1, 0)
    );
    assert!(f.conn.errors().iter().any(|e| e.contains("GOAWAY")));
    f.recv(&frame(
        HEADERS,
        EH | ES,
        1,
        &enc(&mut se, &[(":status", "200")]),
    ));
    let kept = one(f.take());
    assert_eq!(
        (kept.path.as_deref(), kept.status, kept.complete),
        (Some("/kept"), Some(200), true)
    );
}

#[test]
fn push_promise_opens_a_pushed_exchange() {
    let mut ce = Encoder::new();
    let mut se = Encoder::new();
    let mut f = Feeder::new();
    f.send(
        &[
            client_start(),
            frame(HEADERS, EH | ES, 1, &enc(&mut ce, &req("GET", "/"))),
        ]
        .concat(),
    );
    let promise = [
        &2u32.to_be_bytes()[..],
        &enc(&mut se, &req("GET", "/style.css")),
    ]
    .concat();
    let (push_start, _) = f.recv(&frame(PUSH_PROMISE, EH, 1, &promise));
    f.recv(
        &[
            frame(HEADERS, EH, 1, &enc(&mut se, &[(":status", "200")])),
            frame(
                HEADERS,
                EH,
                2,
                &enc(&mut se, &[(":status", "200"), ("content-type", "text/css")]),
            ),
            frame(DATA, ES, 2, b"body{}"),
            frame(DATA, ES, 1, b"<html>"),
        ]
        .concat(),
    );
    let v = f.take();
    assert_eq!(
        v.iter().map(|e| e.stream_id).collect::<Vec<_>>(),
        [Some(2), Some(1)]
    );
    let pushed = &v[0];
    assert_eq!(
        (
            pushed.path.as_deref(),
            pushed.status,
            pushed.response_body_bytes
        ),
        (Some("/style.css"), Some(200), 6)
    );
    assert_eq!(pushed.request_start_ns, push_start);
    assert_eq!(
        header(&pushed.response_headers, "content-type"),
        Some("text/css")
    );
    assert!(pushed.complete);
    assert_eq!(
        (v[1].path.as_deref(), v[1].response_body_bytes),
        (Some("/"), 6)
    );
}

#[test]
fn connection_seen_after_its_preface() {
    let mut f = Feeder::new();
    // The capture started after the preface: the first client chunk is a HEADERS frame.
    f.send(&frame(
        HEADERS,
        EH | ES,
        41,
        &enc(&mut Encoder::new(), &req("GET", "/late")),
    ));
    assert_eq!(f.conn.protocol(), Some(Protocol::Http2));
    f.recv(&frame(
        HEADERS,
        EH | ES,
        41,
        &enc(&mut Encoder::new(), &[(":status", "204")]),
    ));
    let ex = one(f.take());
    assert_eq!(
        (ex.stream_id, ex.path.as_deref(), ex.status, ex.complete),
        (Some(41), Some("/late"), Some(204), true)
    );
    assert!(
        f.conn
            .errors()
            .iter()
            .any(|e| e.contains("without its preface"))
    );
}

#[test]
fn server_settings_before_the_client_preface_are_kept() {
    let mut f = Feeder::new();
    f.recv(&settings(&[(3, 100)]));
    assert_eq!(f.conn.protocol(), None);
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
        EH | ES,
        1,
        &enc(&mut Encoder::new(), &[(":status", "200")]),
    ));
    assert_eq!(one(f.take()).status, Some(200));
    assert!(f.conn.errors().is_empty(), "{:?}", f.conn.errors());
}

#[test]
fn streams_beyond_the_limit_are_given_up() {
    let mut ce = Encoder::new();
    let mut f = Feeder::new();
    f.send(&client_start());
    let n = MAX_STREAMS as u32 + 10;
    for i in 0..n {
        f.send(&frame(
            HEADERS,
            EH | ES,
            1 + 2 * i,
            &enc(&mut ce, &req("GET", "/many")),
        ));
    }
    let given_up = f.take();
    assert_eq!(given_up.len(), 10);
    assert_eq!(given_up[0].stream_id, Some(1));
    assert!(given_up.iter().all(|e| e.partial_reason.as_deref() == Some("given up: too many streams open at once")));
    assert_eq!(f.flush().len(), MAX_STREAMS);
}

/// The client side of the hyper test: three requests, one with a body.
fn hyper_client_bytes() -> Vec<u8> {
    let mut ce = Encoder::new();
    let mut out = client_start();
    let mut h = req("GET", "/small");
    h.push(("user-agent", "tracer-test"));
    out.extend(frame(HEADERS, EH | ES, 1, &enc(&mut ce, &h)));
    h[3] = (":path", "/big");
    out.extend(frame(HEADERS, EH | ES, 3, &enc(&mut ce, &h)));
    h[0] = (":method", "POST");
    h[3] = (":path", "/echo");
    out.extend(frame(HEADERS, EH, 5, &enc(&mut ce, &h)));
    out.extend(frame(DATA, ES, 5, b"abc"));
    out
}

/// A real HTTP/2 server (hyper, whose HPACK encoder uses Huffman coding and its dynamic
/// table) answers three requests; its bytes are decoded as captured whole, and again with
/// 4 KiB captures of reads of several sizes, where nothing decoded may be wrong.
#[test]
fn real_server_hyper() {
    use std::convert::Infallible;

    use hyper::body::Incoming;
    use hyper::{Request, Response};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let client_bytes = hyper_client_bytes();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reads: Vec<Vec<u8>> = rt.block_on(async {
        let (client, server) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let body = match req.uri().path() {
                    "/small" => "hello".to_string(),
                    "/big" => "x".repeat(60_000),
                    _ => "ok".to_string(),
                };
                let resp = Response::builder()
                    .header("content-type", "text/plain")
                    .header("x-lab", "tracer")
                    .body(body)
                    .unwrap();
                Ok::<_, Infallible>(resp)
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(server), service)
                .await;
        });
        let (mut rd, mut wr) = tokio::io::split(client);
        wr.write_all(&client_bytes).await.unwrap();
        // Read until the decoder has all three exchanges (bounded in time).
        let mut check = Feeder::new();
        check.send(&client_bytes);
        let mut reads = Vec::new();
        let mut done = 0;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut buf = vec![0u8; 16_384];
        while done < 3 {
            let n = tokio::time::timeout_at(deadline, rd.read(&mut buf))
                .await
                .expect("the server answers in time")
                .unwrap();
            assert!(n > 0, "server closed early");
            if reads.is_empty() {
                wr.write_all(&frame(SETTINGS, 1, 0, &[])).await.unwrap();
            }
            reads.push(buf[..n].to_vec());
            check.recv(&buf[..n]);
            done += check.take().len();
        }
        reads
    });

    // Whole capture: everything exact.
    let mut f = Feeder::new();
    f.send(&client_bytes);
    for r in &reads {
        f.recv(r);
    }
    let v = f.take();
    assert_eq!(v.len(), 3, "{v:#?}");
    let expect = [
        (1, "GET", "/small", 5u64),
        (3, "GET", "/big", 60_000),
        (5, "POST", "/echo", 2),
    ];
    for (id, method, path, body) in expect {
        let e = by_stream(&v, id);
        assert_eq!(
            (e.method.as_deref(), e.path.as_deref(), e.status),
            (Some(method), Some(path), Some(200))
        );
        assert_eq!(e.response_body_bytes, body, "stream {id}");
        assert_eq!(
            header(&e.response_headers, "x-lab"),
            Some("tracer"),
            "stream {id}"
        );
        assert_eq!(
            header(&e.response_headers, "content-type"),
            Some("text/plain")
        );
        assert_eq!(
            header(&e.request_headers, "user-agent"),
            Some("tracer-test")
        );
        assert!(e.complete, "stream {id}: {:?}", e.partial_reason);
    }
    assert_eq!(by_stream(&v, 5).request_body_bytes, 3);
    assert!(f.conn.errors().is_empty(), "{:?}", f.conn.errors());

    // Small captures of the same bytes, cut into various call sizes: what is decoded is right,
    // and every stream comes out (complete or not).
    let server: Vec<u8> = reads.concat();
    for call in [1000, 4096, 5000, 9000, 16_384] {
        let mut f = Feeder::new();
        f.send(&client_bytes);
        f.calls(Direction::Recv, &server, call, 4096);
        let mut v = f.take();
        v.extend(f.flush());
        assert_eq!(v.len(), 3, "call {call}: {v:#?}");
        for e in &v {
            let (_, _, path, body) = expect
                .iter()
                .find(|x| Some(x.0) == e.stream_id)
                .expect("known stream");
            assert_eq!(e.path.as_deref(), Some(*path));
            assert!(e.status.is_none() || e.status == Some(200), "{e:?}");
            assert!(e.response_body_bytes <= *body, "call {call}: {e:?}");
            if e.complete {
                assert_eq!(e.response_body_bytes, *body, "call {call}: {e:?}");
                assert_eq!(header(&e.response_headers, "x-lab"), Some("tracer"));
            }
        }
    }
}

/// An `:authority` with user-info (`user:pw@host`) loses it in the decoder: nothing after it
/// (stitcher, history, HAR, OTLP) sees the password.
#[test]
fn user_info_in_the_authority_is_dropped() {
    let mut ce = Encoder::new();
    let mut se = Encoder::new();
    let mut f = Feeder::new();
    let h = [(":method", "GET"), (":scheme", "https"), (":authority", "user:S3CR3T@example.com"), (":path", "/")];
    let b = enc(&mut ce, &h);
    f.send(&[client_start(), frame(HEADERS, EH | ES, 1, &b)].concat());
    let rb = enc(&mut se, &[(":status", "200")]);
    f.recv(&[settings(&[]), frame(HEADERS, EH | ES, 1, &rb)].concat());
    let v = f.take();
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(v[0].authority.as_deref(), Some("example.com"));
}
