//! HTTP/1.x decoding.
use super::test_util::{Feeder, header, one};
use super::{Direction, Protocol};

const GET_INDEX: &[u8] = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test/1\r\nAccept: */*\r\n\r\n";

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\n\r\n").into_bytes()
}

fn ok(body: &[u8]) -> Vec<u8> {
    let mut v = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    v.extend_from_slice(body);
    v
}

#[test]
fn single_get_with_content_length() {
    let mut f = Feeder::new();
    let (s1, t1) = f.send(GET_INDEX);
    assert_eq!(f.conn.protocol(), Some(Protocol::Http1));
    assert!(f.take().is_empty());
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 11\r\n\r\n";
    let (_, t2) = f.recv(&[&head[..], b"hello"].concat());
    assert!(f.take().is_empty(), "the body is not complete yet");
    let (_, t3) = f.recv(b" world");
    let ex = one(f.take());
    assert_eq!(ex.protocol, Protocol::Http1);
    assert_eq!(ex.stream_id, None);
    assert_eq!(ex.method.as_deref(), Some("GET"));
    assert_eq!(ex.path.as_deref(), Some("/index.html?q=1"));
    assert_eq!(ex.authority.as_deref(), Some("example.com"));
    assert_eq!(ex.scheme, None);
    assert_eq!(ex.status, Some(200));
    assert_eq!(ex.request_header_bytes, GET_INDEX.len() as u64);
    assert_eq!(ex.request_body_bytes, 0);
    assert_eq!(ex.response_header_bytes, head.len() as u64);
    assert_eq!(ex.response_body_bytes, 11);
    assert_eq!((ex.request_start_ns, ex.request_end_ns), (s1, t1));
    assert_eq!(ex.response_start_ns, Some(t2));
    assert_eq!(ex.response_end_ns, Some(t3));
    assert!(ex.complete);
    assert_eq!(ex.partial_reason, None);
    assert_eq!(header(&ex.request_headers, "user-agent"), Some("test/1"));
    assert_eq!(header(&ex.request_headers, "host"), Some("example.com"));
    assert_eq!(
        header(&ex.response_headers, "content-type"),
        Some("text/html")
    );
    assert_eq!(ex.request_headers.len(), 3);
    assert!(f.conn.errors().is_empty(), "{:?}", f.conn.errors());
    assert!(f.flush().is_empty());
}

#[test]
fn keep_alive_three_requests() {
    let mut f = Feeder::new();
    let (s1, _) = f.send(&get("/a"));
    f.recv(&ok(b"aaa"));
    let a = one(f.take());

    let post_head = b"POST /b HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\n\r\n";
    let (s2, _) = f.send(&[&post_head[..], b"12"].concat());
    let (_, t2) = f.send(b"345");
    assert!(f.take().is_empty());
    let created = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    let (_, t2r) = f.recv(created);
    let b = one(f.take());

    f.send(&get("/c"));
    let (_, t3) = f.recv(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found");
    let c = one(f.take());

    assert_eq!(
        (a.method.as_deref(), a.path.as_deref(), a.status),
        (Some("GET"), Some("/a"), Some(200))
    );
    assert_eq!(a.response_body_bytes, 3);
    assert_eq!(a.request_start_ns, s1);

    assert_eq!(
        (b.method.as_deref(), b.path.as_deref(), b.status),
        (Some("POST"), Some("/b"), Some(201))
    );
    assert_eq!(b.request_body_bytes, 5);
    assert_eq!(b.request_header_bytes, post_head.len() as u64);
    assert_eq!((b.request_start_ns, b.request_end_ns), (s2, t2));
    assert_eq!(b.response_header_bytes, created.len() as u64);
    assert_eq!(b.response_body_bytes, 0);
    assert_eq!(
        (b.response_start_ns, b.response_end_ns),
        (Some(t2r), Some(t2r))
    );

    assert_eq!(
        (c.path.as_deref(), c.status, c.response_body_bytes),
        (Some("/c"), Some(404), 9)
    );
    assert_eq!(c.response_end_ns, Some(t3));
    assert!(a.complete && b.complete && c.complete);
    assert!(f.conn.errors().is_empty(), "{:?}", f.conn.errors());
}

const CHUNKED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
/// 4 + 5 + 26 = 35 body bytes, a chunk extension and a trailer.
const CHUNKED_BODY: &[u8] =
    b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\n";

#[test]
fn chunked_response_split_everywhere() {
    let resp = [CHUNKED_HEAD, CHUNKED_BODY].concat();
    let n = resp.len();
    for i in 0..=n {
        for j in i..=n {
            let mut f = Feeder::new();
            f.send(&get("/wiki"));
            let mut last_ts = 0;
            for part in [&resp[..i], &resp[i..j], &resp[j..]] {
                if !part.is_empty() {
                    last_ts = f.recv(part).1;
                }
            }
            let ex = one(f.take());
            assert_eq!(ex.response_body_bytes, 35, "split at {i}, {j}");
            assert_eq!(ex.response_header_bytes, CHUNKED_HEAD.len() as u64);
            assert_eq!(ex.response_end_ns, Some(last_ts), "split at {i}, {j}");
            assert!(ex.complete, "split at {i}, {j}: {:?}", ex.partial_reason);
            assert!(
                f.conn.errors().is_empty(),
                "split at {i}, {j}: {:?}",
                f.conn.errors()
            );
            // The connection is still in step.
            if i % 17 == 0 && j % 13 == 0 {
                f.send(&get("/next"));
                f.recv(&ok(b"next"));
                let next = one(f.take());
                assert_eq!(
                    (next.path.as_deref(), next.response_body_bytes),
                    (Some("/next"), 4)
                );
            }
        }
    }
}

#[test]
fn chunked_request_body() {
    let mut f = Feeder::new();
    f.send(b"PUT /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
    let (_, t) = f.send(b"a\r\n0123456789\r\n0\r\n\r\n");
    f.recv(b"HTTP/1.1 204 No Content\r\n\r\n");
    let ex = one(f.take());
    assert_eq!(
        (
            ex.method.as_deref(),
            ex.request_body_bytes,
            ex.request_end_ns
        ),
        (Some("PUT"), 13, t)
    );
    assert_eq!((ex.status, ex.response_body_bytes), (Some(204), 0));
    assert!(ex.complete);
}

#[test]
fn body_bigger_than_capture_is_counted() {
    let mut f = Feeder::new();
    f.send(&get("/big"));
    let body = vec![b'x'; 100_000];
    let resp = ok(&body);
    // Reads of 16 KiB, 4 KiB captured each.
    let (_, last) = f.calls(Direction::Recv, &resp, 16_384, 4096);
    let ex = one(f.take());
    assert_eq!(ex.response_body_bytes, 100_000);
    assert_eq!(ex.response_end_ns, Some(last));
    assert!(ex.complete, "{:?}", ex.partial_reason);
    // Still in step afterwards.
    f.send(&get("/after"));
    f.recv(&ok(b"12"));
    let next = one(f.take());
    assert_eq!(
        (
            next.path.as_deref(),
            next.response_body_bytes,
            next.complete
        ),
        (Some("/after"), 2, true)
    );
    assert!(f.conn.errors().is_empty(), "{:?}", f.conn.errors());
}

#[test]
fn chunked_with_gaps_inside_chunk_data_is_exact() {
    let mut f = Feeder::new();
    f.send(&get("/chunky"));
    let mut resp = CHUNKED_HEAD.to_vec();
    resp.extend_from_slice(b"8000\r\n");
    resp.extend(std::iter::repeat_n(b'y', 0x8000));
    resp.extend_from_slice(b"\r\n0\r\n\r\n");
    // Only chunk data falls into the gaps: the size lines are captured.
    let (_, last) = f.calls(Direction::Recv, &resp, 16_384, 4096);
    let ex = one(f.take());
    assert_eq!(ex.response_body_bytes, 0x8000);
    assert_eq!(ex.response_end_ns, Some(last));
    assert!(ex.complete, "{:?}", ex.partial_reason);
}

#[test]
fn chunked_framing_lost_in_a_gap_ends_at_the_terminator() {
    let mut f = Feeder::new();
    f.send(&get("/gz"));
    let mut body = Vec::new();
    for _ in 0..10 {
        body.extend_from_slice(b"bb8\r\n"); // 3000
        body.extend(std::iter::repeat_n(b'z', 3000));
        body.extend_from_slice(b"\r\n");
    }
    // Two big reads (size lines inside their gaps), then the terminator in a small one.
    let first = [CHUNKED_HEAD, &body[..16_000]].concat();
    f.chunk(Direction::Recv, &first, 4096);
    assert!(f.take().is_empty());
    f.chunk(Direction::Recv, &body[16_000..], 4096);
    assert!(f.take().is_empty(), "no end seen yet");
    let (_, t) = f.recv(b"0\r\n\r\n");
    let ex = one(f.take());
    assert!(!ex.complete);
    assert!(
        ex.partial_reason
            .as_deref()
            .unwrap()
            .contains("chunked framing"),
        "{:?}",
        ex.partial_reason
    );
    // Approximate: at least the data before the loss, at most everything after the head.
    assert!(ex.response_body_bytes >= 3000 && ex.response_body_bytes <= body.len() as u64 + 5);
    assert_eq!(ex.response_end_ns, Some(t));
    f.send(&get("/after"));
    f.recv(&ok(b"fine"));
    let next = one(f.take());
    assert_eq!(
        (next.status, next.response_body_bytes, next.complete),
        (Some(200), 4, true)
    );
}

#[test]
fn head_response_has_no_body() {
    let mut f = Feeder::new();
    f.send(b"HEAD /file HTTP/1.1\r\nHost: h\r\n\r\n");
    let (_, t) = f.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n");
    let ex = one(f.take());
    assert_eq!(
        (ex.method.as_deref(), ex.status, ex.response_body_bytes),
        (Some("HEAD"), Some(200), 0)
    );
    assert_eq!(header(&ex.response_headers, "content-length"), Some("5000"));
    assert_eq!(ex.response_end_ns, Some(t));
    assert!(ex.complete);
    f.send(&get("/next"));
    f.recv(&ok(b"ok"));
    let next = one(f.take());
    assert_eq!(
        (next.path.as_deref(), next.response_body_bytes),
        (Some("/next"), 2)
    );
}

#[test]
fn not_modified_has_no_body() {
    let mut f = Feeder::new();
    f.send(b"GET /logo.png HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"abc\"\r\n\r\n");
    f.recv(b"HTTP/1.1 304 Not Modified\r\nETag: \"abc\"\r\nContent-Length: 1234\r\n\r\n");
    let ex = one(f.take());
    assert_eq!(
        (ex.status, ex.response_body_bytes, ex.complete),
        (Some(304), 0, true)
    );
    assert_eq!(
        header(&ex.request_headers, "if-none-match"),
        Some("\"abc\"")
    );
    f.send(&get("/x"));
    f.recv(b"HTTP/1.1 204 No Content\r\n\r\n");
    let next = one(f.take());
    assert_eq!((next.path.as_deref(), next.status), (Some("/x"), Some(204)));
}

#[test]
fn response_until_close() {
    let mut f = Feeder::new();
    f.send(b"GET / HTTP/1.0\r\n\r\n");
    let (_, t1) = f.recv(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nsome ");
    f.chunk(Direction::Recv, &[b'b'; 10_000], 4096);
    let (_, t3) = f.recv(b"end");
    assert!(f.take().is_empty(), "the body ends with the close");
    let ex = one(f.flush());
    assert_eq!(ex.status, Some(200));
    assert_eq!(ex.response_body_bytes, 5 + 10_000 + 3);
    assert_eq!(
        (ex.response_start_ns, ex.response_end_ns),
        (Some(t1), Some(t3))
    );
    assert!(ex.complete, "{:?}", ex.partial_reason);
}

#[test]
fn gap_inside_response_headers_with_content_length() {
    let mut f = Feeder::new();
    f.send(&get("/cookies"));
    let cookie = "c".repeat(6000);
    let head =
        format!("HTTP/1.1 200 OK\r\nContent-Length: 50\r\nX-A: 1\r\nSet-Cookie: {cookie}\r\n\r\n");
    let resp = [head.as_bytes(), &[b'p'; 50]].concat();
    let (_, t) = f.chunk(Direction::Recv, &resp, 4096);
    let ex = one(f.take());
    assert_eq!(ex.status, Some(200));
    assert!(!ex.complete);
    let why = ex.partial_reason.as_deref().unwrap();
    assert!(
        why.contains("response headers cut by a capture gap"),
        "{why}"
    );
    assert_eq!(header(&ex.response_headers, "x-a"), Some("1"));
    assert_eq!(
        header(&ex.response_headers, "set-cookie"),
        None,
        "the cut header is not kept"
    );
    assert_eq!(
        ex.response_header_bytes, 4096,
        "what was captured of the head"
    );
    assert_eq!(ex.response_body_bytes, 50);
    assert_eq!(
        (ex.response_start_ns, ex.response_end_ns),
        (Some(t), Some(t))
    );
    assert!(
        f.conn.errors().iter().any(|e| e.contains("headers cut")),
        "{:?}",
        f.conn.errors()
    );
    // Back in step for the next exchange.
    f.send(&get("/next"));
    f.recv(&ok(b"next!"));
    let next = one(f.take());
    assert_eq!(
        (next.path.as_deref(), next.status, next.response_body_bytes),
        (Some("/next"), Some(200), 5)
    );
    assert!(next.complete);
}

#[test]
fn gap_inside_response_headers_without_length_ends_at_next_response() {
    let mut f = Feeder::new();
    f.send(&get("/one"));
    let head = format!(
        "HTTP/1.1 302 Found\r\nLocation: /two\r\nX-Big: {}\r\n\r\n",
        "v".repeat(5000)
    );
    f.chunk(Direction::Recv, head.as_bytes(), 4096);
    f.chunk(Direction::Recv, &[b'q'; 8000], 4096);
    assert!(f.take().is_empty());
    f.send(&get("/two"));
    f.recv(&ok(b"two"));
    let v = f.take();
    assert_eq!(v.len(), 2, "{v:#?}");
    assert_eq!(
        (v[0].path.as_deref(), v[0].status, v[0].complete),
        (Some("/one"), Some(302), false)
    );
    assert_eq!(header(&v[0].response_headers, "location"), Some("/two"));
    assert_eq!(
        (v[1].path.as_deref(), v[1].status, v[1].complete),
        (Some("/two"), Some(200), true)
    );
    assert_eq!(v[1].response_body_bytes, 3);
}

#[test]
fn gap_inside_request_headers() {
    let mut f = Feeder::new();
    let req = format!(
        "GET /r HTTP/1.1\r\nHost: h\r\nCookie: {}\r\n\r\n",
        "k".repeat(5000)
    );
    f.chunk(Direction::Send, req.as_bytes(), 4096);
    f.recv(&ok(b"resp"));
    let ex = one(f.take());
    assert_eq!(
        (
            ex.method.as_deref(),
            ex.path.as_deref(),
            ex.authority.as_deref()
        ),
        (Some("GET"), Some("/r"), Some("h"))
    );
    assert_eq!((ex.status, ex.response_body_bytes), (Some(200), 4));
    assert!(
        ex.partial_reason
            .as_deref()
            .unwrap()
            .contains("request headers cut"),
        "{:?}",
        ex.partial_reason
    );
    f.send(&get("/s"));
    f.recv(&ok(b""));
    let next = one(f.take());
    assert_eq!((next.path.as_deref(), next.complete), (Some("/s"), true));
}

#[test]
fn interim_100_continue_is_skipped() {
    let mut f = Feeder::new();
    let head =
        b"POST /upload HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    f.send(head);
    let cont = b"HTTP/1.1 100 Continue\r\n\r\n";
    f.recv(cont);
    assert!(f.take().is_empty());
    let (_, tb) = f.send(b"data");
    let fin = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let (_, tr) = f.recv(fin);
    let ex = one(f.take());
    assert_eq!(
        (ex.status, ex.request_body_bytes, ex.request_end_ns),
        (Some(200), 4, tb)
    );
    assert_eq!(
        ex.response_header_bytes,
        (cont.len() + fin.len() - 2) as u64
    );
    assert_eq!(ex.response_start_ns, Some(tr));
    assert!(ex.complete);
}

#[test]
fn pipelined_requests_and_responses() {
    let mut f = Feeder::new();
    let reqs = [
        get("/1"),
        b"HEAD /2 HTTP/1.1\r\nHost: shop.test\r\n\r\n".to_vec(),
        get("/3"),
    ]
    .concat();
    f.send(&reqs);
    let resps = [
        ok(b"one"),
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n".to_vec(),
    ]
    .concat();
    f.recv(&resps);
    let v = f.take();
    assert_eq!(v.len(), 3, "{v:#?}");
    let got: Vec<_> = v
        .iter()
        .map(|e| (e.path.as_deref(), e.response_body_bytes, e.complete))
        .collect();
    assert_eq!(
        got,
        [
            (Some("/1"), 3, true),
            (Some("/2"), 0, true),
            (Some("/3"), 2, true)
        ]
    );
}

#[test]
fn flush_marks_unfinished_exchanges() {
    let mut f = Feeder::new();
    f.send(&get("/slow"));
    f.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    f.send(&get("/never"));
    assert!(f.take().is_empty());
    let v = f.flush();
    assert_eq!(v.len(), 2);
    assert_eq!(
        (v[0].path.as_deref(), v[0].status, v[0].response_body_bytes),
        (Some("/slow"), Some(200), 10)
    );
    assert_eq!(
        v[0].partial_reason.as_deref(),
        Some("connection closed before the response ended")
    );
    assert_eq!((v[1].path.as_deref(), v[1].status), (Some("/never"), None));
    assert_eq!(
        v[1].partial_reason.as_deref(),
        Some("connection closed before a response")
    );
    assert!(v.iter().all(|e| !e.complete));
}

#[test]
fn garbage_response_then_resync() {
    let mut f = Feeder::new();
    f.send(&get("/a"));
    f.recv(b"\x00\x01\x02 definitely not http\r\n\r\n");
    let a = one(f.take());
    assert_eq!(
        (a.path.as_deref(), a.status, a.complete),
        (Some("/a"), None, false)
    );
    assert!(!f.conn.errors().is_empty());
    f.recv(b"more garbage");
    f.send(&get("/b"));
    f.recv(&ok(b"bee"));
    let b = one(f.take());
    assert_eq!(
        (
            b.path.as_deref(),
            b.status,
            b.response_body_bytes,
            b.complete
        ),
        (Some("/b"), Some(200), 3, true)
    );
}

#[test]
fn request_line_written_in_pieces() {
    let mut f = Feeder::new();
    let (s, _) = f.send(b"GE");
    // A method prefix is enough to choose HTTP/1 (the head is then put together).
    assert_eq!(f.conn.protocol(), Some(Protocol::Http1));
    f.send(b"T /pieces HTTP/1.1\r\nHo");
    let (_, t) = f.send(b"st: h\r\n\r\n");
    assert_eq!(f.conn.protocol(), Some(Protocol::Http1));
    f.recv(&ok(b""));
    let ex = one(f.take());
    assert_eq!(
        (
            ex.method.as_deref(),
            ex.path.as_deref(),
            ex.authority.as_deref()
        ),
        (Some("GET"), Some("/pieces"), Some("h"))
    );
    assert_eq!((ex.request_start_ns, ex.request_end_ns), (s, t));
}

#[test]
fn upgrade_101_stops_decoding() {
    let mut f = Feeder::new();
    f.send(b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    f.recv(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello");
    f.send(b"\x81\x85abcdefghi");
    let ex = one(f.take());
    assert_eq!((ex.status, ex.complete), (Some(101), true));
    assert!(f.flush().is_empty());
    assert!(f.conn.errors().is_empty(), "{:?}", f.conn.errors());
}

#[test]
fn absolute_form_target_and_response_before_request() {
    let mut f = Feeder::new();
    f.recv(&ok(b"early"));
    f.send(b"GET http://proxy.test:8080/p?x=1 HTTP/1.1\r\nHost: other\r\n\r\n");
    f.recv(&ok(b""));
    let v = f.take();
    assert_eq!(v.len(), 2, "{v:#?}");
    assert_eq!(
        (v[0].method.as_deref(), v[0].response_body_bytes),
        (None, 5)
    );
    assert_eq!(v[0].partial_reason.as_deref(), Some("request not captured"));
    assert_eq!(
        (
            v[1].scheme.as_deref(),
            v[1].authority.as_deref(),
            v[1].path.as_deref()
        ),
        (Some("http"), Some("proxy.test:8080"), Some("/p?x=1"))
    );
}

/// Requests are recognised by the start-line rule (`start_line`, RFC 9112): any token is a
/// method, so a connection opened by one that the decoder's old rule refused (lower case, a
/// dot) is decoded, and found again after a loss; a run of spaces is not a request line.
#[test]
fn request_line_rule_chooses_the_protocol_and_resyncs() {
    let mut f = Feeder::new();
    f.send(b"m.search /lower HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(f.conn.protocol(), Some(Protocol::Http1));
    f.recv(&ok(b"x"));
    let ex = one(f.take());
    assert_eq!(
        (ex.method.as_deref(), ex.path.as_deref(), ex.status),
        (Some("m.search"), Some("/lower"), Some(200))
    );

    f.send(b"\x00\x01 not a request\r\n\r\n");
    assert!(!f.conn.errors().is_empty());
    f.send(b"get /again HTTP/1.1\r\nHost: h\r\n\r\n");
    f.recv(&ok(b"bee"));
    let v = f.flush();
    assert!(
        v.iter().any(|x| x.method.as_deref() == Some("get") && x.path.as_deref() == Some("/again") && x.status == Some(200)),
        "{v:#?}"
    );

    let mut f = Feeder::new();
    f.send(b"GET  /double HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(f.conn.protocol(), None);
}

/// User-info in an absolute-form target (`GET http://user:pw@host/ HTTP/1.1`, through a
/// proxy) or in a Host header is dropped by the decoder; the path keeps no credentials.
#[test]
fn user_info_in_an_absolute_form_target_is_dropped() {
    let mut f = Feeder::new();
    f.send(b"GET http://user:S3CR3T@proxy.test:8080/p HTTP/1.1\r\nHost: other\r\n\r\n");
    f.recv(&ok(b""));
    f.send(b"GET /q HTTP/1.1\r\nHost: u:S3CR3T@shop.test\r\n\r\n");
    f.recv(&ok(b""));
    let v = f.take();
    assert_eq!(v.len(), 2, "{v:#?}");
    assert_eq!((v[0].authority.as_deref(), v[0].path.as_deref()), (Some("proxy.test:8080"), Some("/p")));
    assert_eq!(v[1].authority.as_deref(), Some("shop.test"));
    // The Host header itself is kept as seen here; what is stored of it goes through
    // `redact::header_value`, which drops the user-info too.
}
