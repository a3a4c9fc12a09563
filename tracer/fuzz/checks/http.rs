//! The HTTP/1.1 and HTTP/2 (+HPACK) exchange decoder (`decode::http::HttpConnection`): a connection's
//! plaintext cut into library calls at fuzzer-chosen points, with gaps, in both directions.
use tracer::decode::Direction;
use tracer::decode::http::{
    HttpConnection, HttpExchange, MAX_ERRORS, MAX_HEADER_FIELD_BYTES, MAX_HEADER_FIELDS,
    MAX_OUTSTANDING_REQUESTS, MAX_PENDING_EXCHANGES, MAX_STREAMS, first_line, is_http2_preface,
};
use crate::transcript::Transcript;

/// Which stream carried the request: the server's for an HTTP/2 push (even stream id).
fn request_side(x: &HttpExchange) -> usize {
    usize::from(x.stream_id.is_some_and(|id| id % 2 == 0))
}

fn check(x: &HttpExchange, moved: &[u64; 2], body_limit: usize) {
    for (body, counted) in [(&x.request_body, x.request_body_bytes), (&x.response_body, x.response_body_bytes)] {
        if let Some(b) = body {
            assert!(body_limit > 0, "a body kept with capture off: {x:?}");
            assert!(b.data.len() <= body_limit, "{} body bytes kept, limit {body_limit}", b.data.len());
            assert!(b.data.len() as u64 <= counted, "{} body bytes kept of {counted} counted: {x:?}", b.data.len());
        }
    }
    assert_eq!(x.complete, x.partial_reason.is_none(), "complete disagrees with partial_reason: {x:?}");
    for headers in [&x.request_headers, &x.response_headers] {
        assert!(headers.len() <= MAX_HEADER_FIELDS, "{} header fields kept", headers.len());
        let bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        assert!(bytes <= MAX_HEADER_FIELD_BYTES, "{bytes} header bytes kept");
    }
    assert!(x.request_header_bytes + x.request_body_bytes <= moved[request_side(x)], "request bytes beyond what was moved: {x:?}");
    assert!(x.response_header_bytes + x.response_body_bytes <= moved[1], "response bytes beyond the server's: {x:?}");
    assert!(x.request_start_ns <= x.request_end_ns, "request ends before it starts: {x:?}");
    if let (Some(s), Some(e)) = (x.response_start_ns, x.response_end_ns) {
        assert!(s <= e, "response ends before it starts: {x:?}");
    }
}

/// The target on one input (the fuzz target and the corpus replay test call it).
pub fn run(t: Transcript) {
    let calls = t.calls();
    // Body capture off, tiny, or roomy: chosen by the input so all three get explored.
    let body_limit = [0, 7, 4096][calls.len() % 3];
    let mut conn = HttpConnection::with_body_limit(body_limit);
    let mut moved = [0u64; 2];
    let mut sums = [0u64; 2];
    let mut taken = Vec::new();
    for c in &calls {
        if c.dir == Direction::Send {
            let _ = first_line(c.data);
            let _ = is_http2_preface(c.data);
        }
        moved[usize::from(c.dir == Direction::Recv)] += u64::from(c.len);
        conn.feed(c.dir, c.start_ns, c.ts_ns, c.len, c.data);
        assert!(conn.errors().len() <= MAX_ERRORS);
        assert!(conn.open_exchanges() <= MAX_STREAMS.max(MAX_OUTSTANDING_REQUESTS) + 1);
        if c.take {
            taken.extend(conn.take_exchanges(false));
        }
    }
    let _ = conn.protocol();
    let _ = conn.goaway();
    let pending = conn.take_exchanges(false);
    assert!(pending.len() <= MAX_PENDING_EXCHANGES);
    taken.extend(pending);
    taken.extend(conn.take_exchanges(true));
    for x in &taken {
        check(x, &moved, body_limit);
        sums[request_side(x)] += x.request_header_bytes + x.request_body_bytes;
        sums[1] += x.response_header_bytes + x.response_body_bytes;
        serde_json::to_string(x).expect("an exchange serialises");
    }
    // Bytes are counted once: all exchanges together hold no more than was moved.
    assert!(sums[0] <= moved[0], "exchanges hold {} bytes of {} sent", sums[0], moved[0]);
    assert!(sums[1] <= moved[1], "exchanges hold {} bytes of {} received", sums[1], moved[1]);
    assert!(conn.take_exchanges(true).is_empty(), "a second flush found more exchanges");
}

