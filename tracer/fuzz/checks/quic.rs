//! The QUIC packet parser, the Initial decryption and frame parser, the transport parameters
//! and the connection tracker (`decode::quic`).
//!
//! The input is a list of records `[kind u8][length u16 BE][bytes]`:
//! - kind 0 / 1: a raw datagram from the client / the server (hostile headers, Retry, VN);
//! - kind 2 / 3: the plaintext frames of an Initial from the client / the server, which this
//!   target seals with the connection's Initial keys so that the fuzzer's frames get past the
//!   AEAD into the frame parser, the CRYPTO reassembly and the ClientHello/ServerHello parsers;
//! - kind 4: the client's original destination connection ID (at most 20 bytes; the keys);
//! - kind 5: switch the sealed packets to QUIC version 2 (and back).
use rustls::Side;
use rustls::quic::Version;
use tracer::decode::Direction;
use tracer::decode::quic::{
    QuicTracker, VERSION_1, VERSION_2, parse_frames, parse_transport_parameters, split_datagram_lossy,
    tracker::MAX_ERRORS_KEPT,
};

/// An Initial from `side` carrying `payload` (padded to the header-protection sample), keyed
/// by `dcid`, as a real client or server would send it.
fn seal(version: u32, side: Side, dcid: &[u8], scid: &[u8], pn: u32, payload: &[u8]) -> Vec<u8> {
    let suite = match rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256 {
        rustls::SupportedCipherSuite::Tls13(s) => s,
        _ => unreachable!(),
    };
    let v = if version == VERSION_2 { Version::V2 } else { Version::V1 };
    let keys = suite.quic_suite().unwrap().keys(dcid, side, v);
    let mut payload = payload.to_vec();
    if payload.len() < 20 {
        payload.resize(20, 0);
    }
    let ty = if version == VERSION_2 { 1 } else { 0 };
    let mut header = vec![0xc0 | ty << 4 | 3];
    header.extend(version.to_be_bytes());
    let (to, from) = if side == Side::Client { (dcid, scid) } else { (scid, dcid) };
    header.push(to.len() as u8);
    header.extend_from_slice(to);
    header.push(from.len() as u8);
    header.extend_from_slice(from);
    header.push(0); // no token
    let length = 4 + payload.len() + 16;
    header.extend((0x4000 | length as u16).to_be_bytes());
    let pn_offset = header.len();
    header.extend(pn.to_be_bytes());
    let tag = keys.local.packet.encrypt_in_place(u64::from(pn), &header, &mut payload).unwrap();
    payload.extend_from_slice(tag.as_ref());
    let sample = payload[..16].to_vec();
    let (first, rest) = header.split_at_mut(1);
    keys.local.header.encrypt_in_place(&sample, &mut first[0], &mut rest[pn_offset - 1..pn_offset + 3]).unwrap();
    header.extend(payload);
    header
}

/// The target on one input (the fuzz target and the corpus replay test call it).
pub fn run(data: &[u8]) {
    let mut tracker = QuicTracker::new();
    let mut dcid: Vec<u8> = vec![0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
    let scid: Vec<u8> = vec![0xf0, 0x67];
    let mut version = VERSION_1;
    let (mut sent, mut received, mut datagrams) = (0u64, 0u64, 0u64);
    let mut rest = data;
    let mut pn = 0u32;
    while let [kind, hi, lo, tail @ ..] = rest {
        let len = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len()).min(16383 - 64);
        let (bytes, next) = tail.split_at(len);
        rest = next;
        let ts = 1_000 * (datagrams + 1);
        match kind % 6 {
            0 | 1 => {
                let _ = split_datagram_lossy(bytes, Some(dcid.len()));
                let _ = parse_transport_parameters(bytes);
                let dir = if kind % 6 == 0 { Direction::Send } else { Direction::Recv };
                tracker.feed(ts, dir, bytes);
                if dir == Direction::Send { sent += bytes.len() as u64 } else { received += bytes.len() as u64 }
                datagrams += 1;
            }
            2 | 3 => {
                if let Ok(frames) = parse_frames(bytes) {
                    assert!(frames.len() <= bytes.len());
                }
                let side = if kind % 6 == 2 { Side::Client } else { Side::Server };
                let packet = seal(version, side, &dcid, &scid, pn, bytes);
                pn = pn.wrapping_add(1);
                let dir = if side == Side::Client { Direction::Send } else { Direction::Recv };
                tracker.feed(ts, dir, &packet);
                if dir == Direction::Send { sent += packet.len() as u64 } else { received += packet.len() as u64 }
                datagrams += 1;
            }
            4 => dcid = bytes[..bytes.len().min(20)].to_vec(),
            _ => version = if version == VERSION_1 { VERSION_2 } else { VERSION_1 },
        }
    }
    let s = tracker.summary();
    // Everything counted came in; what is kept is bounded.
    assert_eq!((s.sent.bytes, s.received.bytes), (sent, received));
    assert_eq!(s.sent.datagrams + s.received.datagrams, datagrams);
    assert!(s.errors.len() <= MAX_ERRORS_KEPT && s.errors.len() as u64 <= s.errors_total);
    assert!(u64::from(s.client_hello_packets) <= s.sent.datagrams);
    assert!(s.zero_rtt_packets <= s.sent.packets);
    if let (Some(first), Some(done)) = (s.first_initial_ns, s.first_1rtt_ns) {
        assert!(first <= done);
        assert_eq!(s.handshake_ns(), Some(done - first));
    }
    // Names from the wire reach logs and the database: printable, bounded.
    if let Some(sni) = &s.sni {
        assert!(!sni.is_empty() && sni.len() <= 255 && sni.bytes().all(|b| b.is_ascii_graphic()), "SNI {sni:?}");
    }
    for proto in &s.alpn {
        assert!(!proto.is_empty() && proto.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
    }
    if let Some(c) = &s.close {
        assert!(c.reason.bytes().all(|b| b == b' ' || b.is_ascii_graphic()), "{:?}", c.reason);
    }
    serde_json::to_string(s).expect("a summary serialises");
}

