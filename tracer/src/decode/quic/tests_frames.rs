//! Every RFC 9000 frame type (and DATAGRAM) through `parse_payload`, and payloads captured
//! only in part.

use super::frames::{Frame, parse_payload};
use super::{QuicError, parse_frames};
use crate::decode::h3::test_util::{close_application, close_transport, noise, reset_stream, stop_sending, stream, stream_to_end, varint};

#[test]
fn every_frame_type_is_read_and_skipped_by_its_fields() {
    let payload = [
        vec![0, 0, 0],
        noise(), // ACK with ECN counts, PING, MAX_DATA
        // ACK with one more range.
        [vec![0x02], varint(9), varint(1), varint(1), varint(0), varint(2), varint(3)].concat(),
        reset_stream(4, 0x10c, 77),
        stop_sending(8, 0x10b),
        [vec![0x06], varint(5), varint(2), b"ch".to_vec()].concat(),
        [vec![0x07], varint(3), b"tok".to_vec()].concat(),
        stream(0, 10, b"abc", true),
        [vec![0x11], varint(4), varint(100)].concat(),
        [vec![0x12], varint(100), vec![0x13], varint(3), vec![0x14], varint(5)].concat(),
        [vec![0x15], varint(4), varint(6), vec![0x16], varint(7), vec![0x17], varint(8)].concat(),
        [vec![0x18], varint(2), varint(1), vec![4], vec![1, 2, 3, 4], vec![0xaa; 16]].concat(),
        [vec![0x19], varint(1), vec![0x1a], vec![1; 8], vec![0x1b], vec![2; 8], vec![0x1e]].concat(),
        [vec![0x31], varint(2), b"dg".to_vec()].concat(),
        close_transport(0xa, 0x08, "why"),
        close_application(0x100, "done"),
        stream_to_end(12, 0, b"tail", false),
    ];
    let payload = payload.concat();
    let p = parse_payload(&payload, payload.len());
    assert_eq!(p.error, None);
    let f = &p.frames;
    assert_eq!(f[0], Frame::Padding(3));
    assert_eq!(f[1], Frame::Ack { largest: 7 });
    assert_eq!(f[2], Frame::Ping);
    assert_eq!(f[3], Frame::MaxData(1 << 20));
    assert_eq!(f[4], Frame::Ack { largest: 9 });
    assert_eq!(f[5], Frame::ResetStream { id: 4, code: 0x10c, final_size: 77 });
    assert_eq!(f[6], Frame::StopSending { id: 8, code: 0x10b });
    assert_eq!(f[7], Frame::Crypto { offset: 5, data: b"ch".to_vec() });
    assert_eq!(f[8], Frame::NewToken);
    assert_eq!(f[9], Frame::Stream { id: 0, offset: 10, data: b"abc".to_vec(), fin: true, missing: 0 });
    assert_eq!(f[10], Frame::MaxStreamData { id: 4, max: 100 });
    assert_eq!(f[11..14], [Frame::MaxStreams { bidi: true, max: 100 }, Frame::MaxStreams { bidi: false, max: 3 }, Frame::DataBlocked(5)]);
    assert_eq!(
        f[14..17],
        [Frame::StreamDataBlocked { id: 4, limit: 6 }, Frame::StreamsBlocked { bidi: true, limit: 7 }, Frame::StreamsBlocked { bidi: false, limit: 8 }]
    );
    assert_eq!(f[17], Frame::NewConnectionId { seq: 2, retire_prior_to: 1 });
    assert_eq!(f[18..22], [Frame::RetireConnectionId(1), Frame::PathChallenge, Frame::PathResponse, Frame::HandshakeDone]);
    assert_eq!(f[22], Frame::Datagram { len: 2 });
    assert_eq!(f[23], Frame::ConnectionClose { code: 0xa, frame_type: 0x08, reason: "why".into() });
    assert_eq!(f[24], Frame::ApplicationClose { code: 0x100, reason: "done".into() });
    assert_eq!(f[25], Frame::Stream { id: 12, offset: 0, data: b"tail".to_vec(), fin: false, missing: 0 });
    assert_eq!(f.len(), 26);
    // The Initial parser refuses what an Initial may not carry.
    assert!(parse_frames(&stop_sending(8, 0)).unwrap_err().to_string().contains("0x5 is not allowed"));
    assert!(parse_frames(&close_application(0, "")).is_err());
}

#[test]
fn a_payload_cut_by_the_capture() {
    let s = stream(4, 100, &[7u8; 50], true);
    let payload = [noise(), s.clone()].concat();
    // Cut inside the STREAM data: the rest is counted as missing, the FIN kept.
    let p = parse_payload(&payload[..payload.len() - 20], payload.len());
    assert_eq!(p.error, None);
    assert_eq!(p.frames.last(), Some(&Frame::Stream { id: 4, offset: 100, data: vec![7; 30], fin: true, missing: 20 }));
    // Without the LEN bit the frame runs to the end of the (longer) packet.
    let t = stream_to_end(4, 0, &[1u8; 40], false);
    let p = parse_payload(&t[..10], t.len());
    assert_eq!(p.frames, vec![Frame::Stream { id: 4, offset: 0, data: vec![1; 7], fin: false, missing: 33 }]);
    // Cut inside a frame header, or after whole frames: the frames before are kept, an error says so.
    let p = parse_payload(&payload[..noise().len() + 2], payload.len());
    assert_eq!(p.frames.len(), 3);
    assert!(matches!(p.error, Some(QuicError::Truncated { .. })), "{:?}", p.error);
    let p = parse_payload(&payload[..noise().len()], payload.len());
    assert!(matches!(p.error, Some(QuicError::Truncated { what: "packet payload", .. })));
    // The same STREAM frame, not cut, whose length runs past the payload: malformed data.
    let p = parse_payload(&payload[..payload.len() - 20], payload.len() - 20);
    assert!(matches!(p.error, Some(QuicError::Truncated { what: "STREAM data", .. })));
    // Unknown types end the parse; offsets past 2^62 are refused.
    assert!(parse_payload(&[0x01, 0x40, 0x99], 3).error.unwrap().to_string().contains("unknown frame type 0x99"));
    let huge = [vec![0x0e], varint(0), varint((1 << 62) - 1), varint(2), vec![0, 0]].concat();
    assert!(parse_payload(&huge, huge.len()).error.unwrap().to_string().contains("2^62"));
    assert!(parse_payload(&[0x18, 0, 0, 21], 4).error.is_some(), "a connection ID of 21 bytes");
}
