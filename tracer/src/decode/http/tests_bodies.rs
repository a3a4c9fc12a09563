//! Body capture (`--capture-bodies`): off by default; on, the kept bytes are an exact prefix
//! of the decoded body (no chunk framing or padding), at most the limit, and marked
//! truncated whenever anything is missing.
use loona_hpack::Encoder;

use super::Direction;
use super::test_util::{Feeder, one};
use super::tests_h2::{DATA, EH, ES, HEADERS, PADDED, client_start, enc, frame, req, settings};
use super::{CapturedBody, HTTP2_PREFACE};

fn body(data: &[u8], truncated: bool) -> Option<CapturedBody> {
    Some(CapturedBody { data: data.to_vec(), truncated })
}

#[test]
fn no_body_is_kept_by_default() {
    let mut f = Feeder::new();
    f.send(b"POST /login HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\npassword=S3");
    f.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret");
    let x = one(f.take());
    assert_eq!((x.request_body_bytes, x.response_body_bytes), (11, 6));
    assert_eq!((x.request_body, x.response_body), (None, None));
}

#[test]
fn http1_bodies_by_length_and_chunked_are_kept_without_framing() {
    let mut f = Feeder::with_body_limit(1024);
    f.send(b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n\r\na=1");
    f.send(b"&b=2");
    f.recv(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    f.recv(b"6\r\n world\r\n0\r\n\r\n");
    let x = one(f.take());
    assert_eq!(x.request_body, body(b"a=1&b=2", false));
    assert_eq!(x.response_body, body(b"hello world", false));
    // A message without a body has none.
    f.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    f.recv(b"HTTP/1.1 204 No Content\r\n\r\n");
    let x = one(f.take());
    assert_eq!((x.request_body, x.response_body), (None, None));
}

#[test]
fn a_body_past_the_limit_keeps_its_first_bytes_and_is_marked_truncated() {
    let mut f = Feeder::with_body_limit(4);
    f.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    f.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123");
    f.recv(b"456789");
    let x = one(f.take());
    assert_eq!(x.response_body_bytes, 10);
    assert_eq!(x.response_body, body(b"0123", true));
}

#[test]
fn nothing_is_kept_after_a_capture_gap() {
    let mut f = Feeder::with_body_limit(1024);
    f.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    f.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nabcd");
    // A read of 4 bytes of which none was captured, then the rest.
    f.chunk(Direction::Recv, b"efgh", 0);
    f.recv(b"ijkl");
    let x = one(f.take());
    assert_eq!(x.response_body_bytes, 12);
    assert_eq!(x.response_body, body(b"abcd", true));
}

#[test]
fn http2_data_frames_are_kept_without_padding_per_stream() {
    let mut f = Feeder::with_body_limit(1024);
    let (mut ce, mut se) = (Encoder::new(), Encoder::new());
    assert!(client_start().starts_with(HTTP2_PREFACE));
    f.send(&[client_start(), frame(HEADERS, EH, 1, &enc(&mut ce, &req("POST", "/up")))].concat());
    f.send(&frame(DATA, ES, 1, b"q=42"));
    f.send(&frame(HEADERS, EH | ES, 3, &enc(&mut ce, &req("GET", "/b"))));
    let status = |se: &mut Encoder<'static>| enc(se, &[(":status", "200")]);
    let mut padded = vec![3u8];
    padded.extend_from_slice(b"one ");
    padded.extend_from_slice(&[0, 0, 0]);
    f.recv(&[settings(&[]), frame(HEADERS, EH, 1, &status(&mut se)), frame(DATA, PADDED, 1, &padded)].concat());
    f.recv(&frame(HEADERS, EH, 3, &status(&mut se)));
    f.recv(&frame(DATA, ES, 3, b"other stream"));
    f.recv(&frame(DATA, ES, 1, b"two"));
    let mut xs = f.take();
    xs.sort_by_key(|x| x.stream_id);
    assert_eq!(xs.len(), 2, "{xs:#?}");
    assert_eq!(xs[0].request_body, body(b"q=42", false));
    assert_eq!(xs[0].response_body, body(b"one two", false));
    assert_eq!(xs[1].request_body, None);
    assert_eq!(xs[1].response_body, body(b"other stream", false));
}

#[test]
fn an_http2_frame_cut_by_a_gap_truncates_its_streams_body() {
    let mut f = Feeder::with_body_limit(1024);
    let (mut ce, mut se) = (Encoder::new(), Encoder::new());
    f.send(&[client_start(), frame(HEADERS, EH | ES, 1, &enc(&mut ce, &req("GET", "/")))].concat());
    f.recv(&[settings(&[]), frame(HEADERS, EH, 1, &enc(&mut se, &[(":status", "200")])), frame(DATA, 0, 1, b"first")].concat());
    let cut = frame(DATA, 0, 1, b"0123456789");
    f.chunk(Direction::Recv, &cut, 12); // the header and 3 payload bytes captured
    f.recv(&frame(DATA, ES, 1, b"last"));
    let x = one(f.take());
    assert_eq!(x.response_body_bytes, 19);
    assert_eq!(x.response_body, body(b"first", true));
}
