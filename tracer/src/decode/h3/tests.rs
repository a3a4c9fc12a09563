//! HTTP/3 connections built packet by packet with the encoders of `test_util.rs`.

use super::test_util::*;
use super::{Direction, HttpExchange, Protocol};

fn take(w: &mut Wire, flush: bool) -> Vec<HttpExchange> {
    w.conn.take_exchanges(flush)
}

fn only(w: &mut Wire) -> HttpExchange {
    let mut v = take(w, false);
    assert_eq!(v.len(), 1, "exactly one exchange: {v:#?}\nerrors: {:?}", w.conn.errors());
    v.remove(0)
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A GET on stream `id` with the static table only, answered 200 with `body`.
fn simple(w: &mut Wire, id: u64, path: &str, body: &[u8]) -> (u64, u64) {
    let t1 = w.send(&[stream(id, 0, &h3(1, &static_request(path, "shop.test")), true)]);
    let resp = [h3(1, &static_response(200, &[])), h3(0, body)].concat();
    let t2 = w.recv(&[stream(id, 0, &resp, true)]);
    (t1, t2)
}

#[test]
fn a_request_and_response_with_the_dynamic_table_on_both_sides() {
    let mut w = Wire::new();
    w.setup(4096);
    assert_eq!(w.conn.settings(Direction::Recv).and_then(|s| s.qpack_max_table_capacity), Some(4096));
    assert_eq!(w.conn.settings(Direction::Send).map(|s| s.others), Some(1), "the grease setting is counted");
    // The client's encoder stream (6): capacity, :authority by static name, a literal name.
    let enc = [set_capacity(4096), insert_static_name(AUTHORITY, "shop.test"), insert_literal("x-trace", "abc")].concat();
    w.send(&[stream(6, 1, &enc, false)]);
    // RIC 2 (encoded 2 % 256 + 1), Base 2: relative 1 is entry 0, relative 0 entry 1.
    let req = [
        prefix(3, false, 0),
        indexed_static(GET),
        indexed_static(HTTPS),
        indexed_dynamic(1),
        literal_static_name(PATH, "/cart?id=1"),
        indexed_dynamic(0),
        literal_dynamic_name(0, "def"),
    ]
    .concat();
    let t_req = w.send(&[noise(), stream(0, 0, &h3(1, &req), true)]);
    // The server's encoder stream (7) and a response using post-base indexing (Base 0).
    let senc = [set_capacity(4096), insert_static_name(44, "text/html"), insert_literal("x-served-by", "edge")].concat();
    let resp = [prefix(3, true, 1), indexed_static(STATUS_200), indexed_post_base(0), literal_post_base_name(1, "edge-2")].concat();
    let body = vec![b'x'; 300];
    let t_resp = w.recv(&[stream(7, 1, &senc, false), stream(0, 0, &[h3(1, &resp), h3(0, &body)].concat(), true)]);
    let x = only(&mut w);
    assert_eq!(x.protocol, Protocol::Http3);
    assert_eq!(x.stream_id, Some(0));
    assert_eq!(x.method.as_deref(), Some("GET"));
    assert_eq!(x.scheme.as_deref(), Some("https"));
    assert_eq!(x.authority.as_deref(), Some("shop.test"));
    assert_eq!(x.path.as_deref(), Some("/cart?id=1"));
    assert_eq!(x.request_headers, vec![("x-trace".into(), "abc".into()), ("x-trace".into(), "def".into())]);
    assert_eq!(x.status, Some(200));
    assert_eq!(x.response_headers, vec![("content-type".into(), "text/html".into()), ("x-served-by".into(), "edge-2".into())]);
    assert_eq!(x.request_header_bytes, req.len() as u64);
    assert_eq!(x.response_header_bytes, resp.len() as u64);
    assert_eq!((x.request_body_bytes, x.response_body_bytes), (0, 300));
    assert_eq!((x.request_start_ns, x.request_end_ns), (t_req, t_req));
    assert_eq!((x.response_start_ns, x.response_end_ns), (Some(t_resp), Some(t_resp)));
    assert!(x.complete, "{:?}", x.partial_reason);
    assert_eq!(w.conn.qpack_tables()[0].0, 2);
    assert_eq!(w.conn.qpack_tables()[1], (2, 32 + 12 + 9 + 32 + 11 + 4));
    assert!(w.conn.errors().is_empty(), "{:?}", w.conn.errors());
}

#[test]
fn streams_interleaved_across_packets() {
    let mut w = Wire::new();
    w.setup(0);
    let reqs: Vec<Vec<u8>> = ["/a", "/b", "/c"].iter().map(|p| h3(1, &static_request(p, "shop.test"))).collect();
    // Each request split in two packets, the three interleaved.
    let (a, b, c) = (&reqs[0], &reqs[1], &reqs[2]);
    w.send(&[stream(0, 0, &a[..3], false), stream(4, 0, &b[..5], false)]);
    w.send(&[stream(8, 0, &c[..1], false), stream(0, 3, &a[3..], true)]);
    w.send(&[stream(4, 5, &b[5..], true), stream(8, 1, &c[1..], true)]);
    let resp = |n: usize| [h3(1, &static_response(200, &[])), h3(0, &vec![b'r'; n])].concat();
    let (r0, r4, r8) = (resp(10), resp(20), resp(30));
    w.recv(&[stream(8, 0, &r8[..4], false), stream(4, 0, &r4, true)]);
    w.recv(&[stream(0, 0, &r0[..2], false), stream(8, 4, &r8[4..], true)]);
    w.recv(&[stream(0, 2, &r0[2..], true)]);
    let xs = take(&mut w, false);
    let got: Vec<(Option<u32>, Option<&str>, u64, bool)> =
        xs.iter().map(|x| (x.stream_id, x.path.as_deref(), x.response_body_bytes, x.complete)).collect();
    assert_eq!(got, vec![(Some(4), Some("/b"), 20, true), (Some(8), Some("/c"), 30, true), (Some(0), Some("/a"), 10, true)]);
    assert_eq!(w.conn.first_request_stream(), Some(0));
    assert_eq!(w.conn.open_exchanges(), 0);
}

#[test]
fn out_of_order_and_retransmitted_stream_frames() {
    let mut w = Wire::new();
    w.setup(0);
    let t_req = w.send(&[stream(0, 0, &h3(1, &static_request("/big", "shop.test")), true)]);
    let body: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let resp = [h3(1, &static_response(200, &[("server", "t")])), h3(0, &body)].concat();
    let (p1, p2, p3) = (&resp[..1000], &resp[1000..2000], &resp[2000..]);
    // The last piece first, then the first, a retransmission overlapping both, the first again.
    let t1 = w.recv(&[stream(0, 2000, p3, true)]);
    assert!(take(&mut w, false).is_empty(), "nothing before the hole is filled");
    let t2 = w.recv(&[stream(0, 0, p1, false)]);
    w.recv(&[stream(0, 500, &resp[500..1500], false), stream(0, 0, p1, false)]);
    w.send(&[stream(0, 0, &h3(1, &static_request("/big", "shop.test")), true)]); // the request again
    let t4 = w.recv(&[stream(0, 1000, p2, false)]);
    let x = only(&mut w);
    assert!(x.complete, "{:?}", x.partial_reason);
    assert_eq!(x.response_body_bytes, 3000);
    assert_eq!(header(&x.response_headers, "server"), Some("t"));
    assert_eq!(x.request_start_ns, t_req);
    assert_eq!(x.response_start_ns, Some(t2), "the final HEADERS came in the packet of offset 0");
    assert_eq!(x.response_end_ns, Some(t4));
    assert!(t1 < t2);
    assert_eq!(w.conn.stats().lost_stream_bytes, [0, 0]);
}

#[test]
fn a_packet_captured_twice_is_dropped_by_its_number() {
    let mut w = Wire::new();
    w.setup(0);
    let frames = [stream(0, 0, &h3(1, &static_request("/", "h")), true)].concat();
    w.conn.feed_packet(Direction::Send, 5_000_000, Some(9), frames.len() as u32, &frames);
    w.conn.feed_packet(Direction::Send, 5_000_001, Some(9), frames.len() as u32, &frames);
    assert_eq!(w.conn.stats().duplicate_packets, [1, 0]);
}

#[test]
fn a_missed_packet_makes_only_its_stream_partial() {
    let mut w = Wire::new();
    w.setup(0);
    w.send(&[stream(0, 0, &h3(1, &static_request("/one", "h")), true), stream(4, 0, &h3(1, &static_request("/two", "h")), true)]);
    let r0 = [h3(1, &static_response(200, &[])), h3(0, &[b'a'; 800])].concat();
    let r4 = [h3(1, &static_response(200, &[])), h3(0, &[b'b'; 800])].concat();
    w.recv(&[stream(0, 0, &r0[..400], false), stream(4, 0, &r4[..400], false)]);
    // The packet with stream 4's bytes 400..600 was not captured.
    w.recv(&[stream(0, 400, &r0[400..], true), stream(4, 600, &r4[600..], true)]);
    let x0 = only(&mut w);
    assert_eq!((x0.stream_id, x0.complete), (Some(0), true));
    w.conn.feed_gap(Direction::Recv, w.ts + 1);
    let x4 = only(&mut w);
    assert_eq!(x4.stream_id, Some(4));
    assert!(!x4.complete);
    assert_eq!(x4.partial_reason.as_deref(), Some("response bytes lost in a capture gap"));
    assert_eq!(x4.status, Some(200));
    assert_eq!(x4.response_body_bytes, 800, "the lost bytes were inside the DATA frame: counted");
    assert_eq!(w.conn.stats().lost_stream_bytes, [0, 200]);
    assert_eq!(w.conn.stats().gaps, [0, 1]);
}

#[test]
fn a_hole_is_given_up_after_the_wait() {
    let mut w = Wire::new();
    w.setup(0);
    w.send(&[stream(0, 0, &h3(1, &static_request("/", "h")), true)]);
    let r = [h3(1, &static_response(200, &[])), h3(0, &[1; 100])].concat();
    w.recv(&[stream(0, 0, &r[..20], false), stream(0, 50, &r[50..], true)]);
    assert!(take(&mut w, false).is_empty());
    w.ts += super::HOLE_WAIT_NS;
    w.send(&[noise()]);
    let x = only(&mut w);
    assert_eq!(x.partial_reason.as_deref(), Some("response bytes lost in a capture gap"));
    assert_eq!(x.response_body_bytes, 100, "the 30 lost bytes lay inside the DATA frame: {x:?}");
    assert_eq!(w.conn.stats().lost_stream_bytes, [0, 30]);
}

#[test]
fn a_truncated_payload_counts_what_was_cut() {
    let mut w = Wire::new();
    w.setup(0);
    w.send(&[stream(0, 0, &h3(1, &static_request("/t", "h")), true)]);
    let r = [h3(1, &static_response(200, &[])), h3(0, &vec![7u8; 1000])].concat();
    // The payload was 1000+ bytes, the probe copied 300 of them: the STREAM frame runs on.
    let payload = [noise(), stream_to_end(0, 0, &r, true)].concat();
    w.cut(Direction::Recv, &payload, 300);
    let x = only(&mut w);
    assert_eq!(x.status, Some(200));
    assert_eq!(x.response_body_bytes, 1000);
    assert_eq!(x.partial_reason.as_deref(), Some("response bytes lost in a capture gap"));
    assert!(w.conn.errors().iter().any(|e| e.contains("bytes lost")), "{:?}", w.conn.errors());

    // A payload cut inside a frame header: the frames before it are kept.
    let mut w = Wire::new();
    w.setup(0);
    let a = stream(0, 0, &h3(1, &static_request("/a", "h")), true);
    let b = stream(4, 0, &h3(1, &static_request("/b", "h")), true);
    let payload = [a.clone(), b].concat();
    w.cut(Direction::Send, &payload, a.len() + 2);
    assert_eq!(w.conn.stats().unreadable_payloads, [1, 0]);
    assert_eq!(w.conn.open_exchanges(), 1);
    let xs = take(&mut w, true);
    assert_eq!(xs[0].path.as_deref(), Some("/a"));
    assert_eq!(xs[0].partial_reason.as_deref(), Some("connection closed before a response"));
}

#[test]
fn reset_stream_and_stop_sending_end_an_exchange_with_a_reason() {
    let mut w = Wire::new();
    w.setup(0);
    simple(&mut w, 0, "/ok", b"fine");
    assert!(only(&mut w).complete);
    w.send(&[stream(4, 0, &h3(1, &static_request("/rejected", "h")), true), stream(8, 0, &h3(1, &static_request("/gone", "h")), true)]);
    w.recv(&[reset_stream(4, 0x10b, 0)]);
    let x = only(&mut w);
    assert_eq!((x.stream_id, x.path.as_deref()), (Some(4), Some("/rejected")));
    assert_eq!(x.partial_reason.as_deref(), Some("RESET_STREAM H3_REQUEST_REJECTED from the server"));
    // The server's STOP_SENDING with H3_NO_ERROR is no failure; the client's is.
    w.recv(&[stop_sending(8, 0x100), stream(8, 0, &h3(1, &static_response(200, &[])), false)]);
    assert!(take(&mut w, false).is_empty());
    w.send(&[stop_sending(8, 0x10c), reset_stream(8, 0x10c, 0)]);
    let x = only(&mut w);
    assert_eq!(x.status, Some(200));
    assert_eq!(x.partial_reason.as_deref(), Some("STOP_SENDING H3_REQUEST_CANCELLED from the client"));
    // Frames of a finished stream are ignored.
    w.recv(&[stream(8, 100, b"late", true), stream(4, 0, b"late", true)]);
    assert!(take(&mut w, true).is_empty());
}

#[test]
fn goaway_refuses_the_streams_past_it() {
    let mut w = Wire::new();
    w.setup(0);
    for id in [0u64, 4, 8, 12] {
        w.send(&[stream(id, 0, &h3(1, &static_request(&format!("/{id}"), "h")), true)]);
    }
    // Server control stream (3): SETTINGS was at offset 0..n; GOAWAY after it.
    let s = settings(&[(0x01, 0), (0x07, 16), (0x21, 5)]);
    let at = 1 + s.len() as u64;
    w.recv(&[stream(3, at, &h3(7, &varint(8)), false), stream(4, 0, &h3(1, &static_response(200, &[])), false)]);
    let xs = take(&mut w, false);
    let got: Vec<(Option<u32>, Option<&str>)> = xs.iter().map(|x| (x.stream_id, x.partial_reason.as_deref())).collect();
    assert_eq!(got, vec![(Some(8), Some("refused by GOAWAY")), (Some(12), Some("refused by GOAWAY"))]);
    assert_eq!(w.conn.goaway(), Some(super::H3GoAway { from_server: true, id: 8 }));
    // Stream 4 still completes; stream 0 is cut by the flush.
    w.recv(&[stream(4, 0, &h3(1, &static_response(200, &[])), true)]);
    let x = only(&mut w);
    assert_eq!((x.stream_id, x.complete), (Some(4), true));
    let xs = take(&mut w, true);
    assert_eq!(xs.len(), 1);
    assert_eq!(xs[0].partial_reason.as_deref(), Some("connection closed before a response"));
}

#[test]
fn connection_close_of_the_transport_and_of_the_application() {
    let mut w = Wire::new();
    w.setup(0);
    w.send(&[stream(0, 0, &h3(1, &static_request("/x", "h")), true)]);
    let t = w.send(&[close_transport(0xa, 0x08, "bad stream\n")]);
    let c = w.conn.close().expect("the close").clone();
    assert_eq!((c.ts_ns, c.by, c.application, c.code), (t, super::Sender::Client, false, 0xa));
    assert_eq!(c.code_name, "PROTOCOL_VIOLATION");
    assert_eq!(c.frame_type, Some(0x08));
    assert_eq!(c.reason, "bad stream\\x0a");
    let x = only(&mut w);
    assert_eq!(x.partial_reason.as_deref(), Some("connection closed by the client (PROTOCOL_VIOLATION)"));

    let mut w = Wire::new();
    w.setup(0);
    simple(&mut w, 0, "/", b"");
    w.recv(&[close_application(0x100, "")]);
    let c = w.conn.close().expect("the close");
    assert_eq!((c.application, c.code, c.code_name.as_str(), c.frame_type), (true, 0x100, "H3_NO_ERROR", None));
    assert_eq!(c.by, super::Sender::Server);
    assert!(only(&mut w).complete, "a finished exchange is not touched by the close");
    assert_eq!(super::transport_error_name(0x128), "CRYPTO_ERROR (TLS alert 40)");
}

#[test]
fn interim_responses_final_headers_and_trailers() {
    let mut w = Wire::new();
    w.setup(0);
    let req = h3(1, &static_request("/upload", "h"));
    let trailers = [prefix(0, false, 0), literal("x-checksum", "abc")].concat();
    let t_req = w.send(&[stream(0, 0, &[req.clone(), h3(0, b"body!"), h3(1, &trailers)].concat(), true)]);
    let early = static_response(103, &[("link", "</s.css>; rel=preload")]);
    let t_early = w.recv(&[stream(0, 0, &h3(1, &early), false)]);
    let fin = static_response(200, &[("content-type", "text/plain")]);
    let rtrail = [prefix(0, false, 0), literal("grpc-status", "0")].concat();
    let rest = [h3(1, &fin), h3(0, b"done"), h3(1, &rtrail)].concat();
    let off = h3(1, &early).len() as u64;
    let t_final = w.recv(&[stream(0, off, &rest[..5], false)]);
    let t_end = w.recv(&[stream(0, off + 5, &rest[5..], true)]);
    let x = only(&mut w);
    assert!(t_early < t_final);
    assert_eq!(x.status, Some(200));
    assert_eq!(x.response_headers, vec![("content-type".into(), "text/plain".into())]);
    assert_eq!(x.request_headers, vec![], "trailers are counted, not kept as headers");
    assert_eq!(x.request_header_bytes, (static_request("/upload", "h").len() + trailers.len()) as u64);
    assert_eq!(x.request_body_bytes, 5);
    assert_eq!(x.response_header_bytes, (early.len() + fin.len() + rtrail.len()) as u64);
    assert_eq!(x.response_body_bytes, 4);
    assert_eq!((x.request_start_ns, x.request_end_ns), (t_req, t_req));
    assert_eq!((x.response_start_ns, x.response_end_ns), (Some(t_final), Some(t_end)));
    assert!(x.complete);
}

#[test]
fn a_blocked_field_section_waits_for_the_encoder_stream() {
    let mut w = Wire::new();
    w.setup(1024);
    // The request needs entry 0 (RIC 1), which the encoder stream has not delivered yet.
    let req = [prefix(2, false, 0), indexed_static(GET), indexed_static(HTTPS), indexed_dynamic(0), literal_static_name(PATH, "/late")].concat();
    let t_req = w.send(&[stream(0, 0, &h3(1, &req), true)]);
    w.recv(&[stream(0, 0, &[h3(1, &static_response(200, &[])), h3(0, b"ok")].concat(), true)]);
    assert!(take(&mut w, false).is_empty(), "the exchange waits for its request headers");
    assert_eq!(w.conn.stats().blocked_sections, 1);
    w.send(&[stream(6, 1, &[set_capacity(1024), insert_static_name(AUTHORITY, "late.test")].concat(), false)]);
    let x = only(&mut w);
    assert_eq!(x.authority.as_deref(), Some("late.test"));
    assert_eq!(x.path.as_deref(), Some("/late"));
    assert_eq!(x.request_start_ns, t_req);
    assert!(x.complete, "{:?}", x.partial_reason);
}

#[test]
fn a_blocked_section_that_never_unblocks_fails_at_the_flush() {
    let mut w = Wire::new();
    w.setup(1024);
    let resp = [prefix(2, false, 0), indexed_dynamic(0)].concat();
    w.send(&[stream(0, 0, &h3(1, &static_request("/", "h")), true)]);
    w.recv(&[stream(0, 0, &h3(1, &resp), true)]);
    let xs = take(&mut w, true);
    assert_eq!(xs.len(), 1);
    assert_eq!(xs[0].status, None);
    assert_eq!(xs[0].partial_reason.as_deref(), Some("response headers blocked on QPACK entries that never arrived"));
}

#[test]
fn a_gap_on_the_encoder_stream_fails_only_the_sections_that_need_later_entries() {
    let mut w = Wire::new();
    w.setup(4096);
    let e1 = [set_capacity(4096), insert_literal("x-a", "1")].concat();
    let e2 = insert_literal("x-b", "2");
    let e3 = insert_literal("x-c", "3");
    w.send(&[stream(6, 1, &e1, false)]);
    // e2 was in a packet that was not captured; e3 comes after it.
    w.send(&[stream(6, 1 + (e1.len() + e2.len()) as u64, &e3, false)]);
    w.conn.feed_gap(Direction::Send, w.ts);
    // Stream 0 needs entry 0 only (RIC 1): decodable. Stream 4 needs entry 2 (RIC 3): not.
    let r0 = [prefix(2, false, 0), indexed_static(GET), indexed_dynamic(0), literal_static_name(PATH, "/0")].concat();
    let r4 = [prefix(4, false, 0), indexed_static(GET), indexed_dynamic(0), literal_static_name(PATH, "/4")].concat();
    w.send(&[stream(0, 0, &h3(1, &r0), true), stream(4, 0, &h3(1, &r4), true)]);
    w.recv(&[stream(0, 0, &h3(1, &static_response(200, &[])), true), stream(4, 0, &h3(1, &static_response(200, &[])), true)]);
    let xs = take(&mut w, false);
    assert_eq!(xs.len(), 2);
    assert_eq!(xs[0].request_headers, vec![("x-a".into(), "1".into())]);
    assert!(xs[0].complete);
    assert_eq!(xs[1].path, None, "never a wrong value");
    assert!(xs[1].partial_reason.as_deref().unwrap().contains("lost in a capture gap on the encoder stream"), "{:?}", xs[1].partial_reason);
}

#[test]
fn grease_streams_frames_and_settings_are_skipped() {
    let mut w = Wire::new();
    w.setup(0);
    // A client unidirectional stream of a reserved type (0x21 + 0x1f), with junk.
    w.send(&[stream(10, 0, &[varint(0x40), b"junk junk".to_vec()].concat(), true)]);
    // Reserved frame types on the request stream and on the control stream.
    let s = settings(&[(0x01, 0), (0x07, 16), (0x21, 5)]);
    w.send(&[stream(2, 1 + s.len() as u64, &h3(0x21 + 2 * 0x1f, b"grease"), false)]);
    let req = [h3(0x21, b"x"), h3(1, &static_request("/g", "h")), h3(0x5e, &[0; 40])].concat();
    w.send(&[stream(0, 0, &req, true)]);
    w.recv(&[stream(0, 0, &[h3(0x21 + 0x1f * 7, b""), h3(1, &static_response(200, &[])), h3(0, b"1")].concat(), true)]);
    // A push promise and a push stream (type 0x01) are counted.
    w.recv(&[stream(15, 0, &[varint(1), varint(0), h3(1, &static_response(200, &[]))].concat(), true)]);
    let x = only(&mut w);
    assert!(x.complete, "{:?}", x.partial_reason);
    assert_eq!((x.path.as_deref(), x.response_body_bytes), (Some("/g"), 1));
    assert_eq!(x.request_header_bytes, static_request("/g", "h").len() as u64);
    let st = w.conn.stats();
    assert_eq!((st.unknown_streams, st.push_streams), (1, 1));
    assert!(super::frames::is_grease(0x21 + 0x1f * 7) && !super::frames::is_grease(0x22));
    assert!(w.conn.errors().is_empty(), "{:?}", w.conn.errors());
}

#[test]
fn bodies_are_captured_when_asked() {
    let mut w = Wire::new();
    w.conn = super::H3Connection::with_body_limit(4);
    w.setup(0);
    simple(&mut w, 0, "/b", b"abcdefgh");
    let x = only(&mut w);
    let b = x.response_body.expect("captured");
    assert_eq!((b.data.as_slice(), b.truncated), (&b"abcd"[..], true));
    assert_eq!(w.conn.take_body_counts(), (4, 0));
}

#[test]
fn bounds_on_streams_hold() {
    let mut w = Wire::new();
    w.setup(0);
    for n in 0..(super::MAX_STREAMS as u64 + 10) {
        w.send(&[stream(4 * n, 0, &h3(1, &static_request("/", "h")), true)]);
    }
    assert_eq!(w.conn.open_exchanges(), super::MAX_STREAMS);
    let xs = take(&mut w, false);
    assert_eq!(xs.len(), 10);
    assert!(xs.iter().all(|x| x.partial_reason.as_deref() == Some("given up: too many streams open at once")));
    for n in 0..(super::MAX_UNI_STREAMS as u64 + 5) {
        w.send(&[stream(4 * n + 14, 0, &varint(0x21), false)]);
    }
    assert!(w.conn.errors().iter().any(|e| e.contains("unidirectional streams")));
}
