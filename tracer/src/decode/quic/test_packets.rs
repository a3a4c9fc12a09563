//! Test-only QUIC packet building: Initial packets protected with rustls' Initial keys (the
//! same derivation the decoder uses, but its sealing side), Retry packets with a valid tag,
//! Version Negotiation, and ClientHellos of any size.

use rustls::Side;
use rustls::quic::Version;

use super::initial::Sender;
use super::packet::{VERSION_1, VERSION_2};

/// Bytes from hex, whitespace ignored.
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A QUIC variable-length integer.
pub(crate) fn varint(v: u64) -> Vec<u8> {
    match v {
        0..=63 => vec![v as u8],
        64..=16383 => (0x4000 | v as u16).to_be_bytes().to_vec(),
        16384..=0x3fff_ffff => (0x8000_0000 | v as u32).to_be_bytes().to_vec(),
        _ => (0xc000_0000_0000_0000 | v).to_be_bytes().to_vec(),
    }
}

pub(crate) fn crypto_frame(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend(varint(offset));
    f.extend(varint(data.len() as u64));
    f.extend_from_slice(data);
    f
}

/// The two type bits of a long header for `version` (`0` Initial, `1` 0-RTT, `2` Handshake in
/// version 1's numbering).
fn type_bits(version: u32, v1_type: u8) -> u8 {
    if version == VERSION_2 { (v1_type + 1) & 3 } else { v1_type }
}

fn rustls_version(version: u32) -> Version {
    match version {
        VERSION_1 => Version::V1,
        VERSION_2 => Version::V2,
        v => panic!("no keys for 0x{v:08x}"),
    }
}

/// An Initial packet from `sender` with `payload` (frames; padded with PADDING to `pad_to`
/// bytes of payload), keyed by `key_dcid`, with a 4-byte packet number `pn`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn initial(
    version: u32,
    sender: Sender,
    key_dcid: &[u8],
    dcid: &[u8],
    scid: &[u8],
    token: &[u8],
    pn: u32,
    payload: &[u8],
    pad_to: usize,
) -> Vec<u8> {
    let mut payload = payload.to_vec();
    if payload.len() < pad_to {
        payload.resize(pad_to, 0);
    }
    let mut header = vec![0xc0 | type_bits(version, 0) << 4 | 3];
    header.extend(version.to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend_from_slice(dcid);
    header.push(scid.len() as u8);
    header.extend_from_slice(scid);
    header.extend(varint(token.len() as u64));
    header.extend_from_slice(token);
    let length = 4 + payload.len() + 16;
    header.extend((0x4000 | length as u16).to_be_bytes());
    let pn_offset = header.len();
    header.extend(pn.to_be_bytes());
    seal(version, sender, key_dcid, header, pn_offset, payload)
}

/// A long-header packet of another type (1: 0-RTT, 2: Handshake in v1 numbering) with a
/// payload that is just bytes (nobody can decrypt it without the handshake's keys anyway).
pub(crate) fn opaque_long(version: u32, v1_type: u8, dcid: &[u8], scid: &[u8], payload_len: usize) -> Vec<u8> {
    let mut p = vec![0xc0 | type_bits(version, v1_type) << 4 | 3];
    p.extend(version.to_be_bytes());
    p.push(dcid.len() as u8);
    p.extend_from_slice(dcid);
    p.push(scid.len() as u8);
    p.extend_from_slice(scid);
    p.extend((0x4000 | (4 + payload_len) as u16).to_be_bytes());
    p.extend((0..4 + payload_len).map(|i| (i * 7) as u8));
    p
}

/// A short-header (1-RTT) packet to `dcid` with an opaque payload.
pub(crate) fn short(dcid: &[u8], payload_len: usize) -> Vec<u8> {
    let mut p = vec![0x43];
    p.extend_from_slice(dcid);
    p.extend((0..4 + payload_len).map(|i| (i * 13) as u8));
    p
}

/// Protects `header` (unprotected, ending with its packet number) and `payload`.
fn seal(version: u32, sender: Sender, key_dcid: &[u8], mut header: Vec<u8>, pn_offset: usize, mut payload: Vec<u8>) -> Vec<u8> {
    let suite = match rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256 {
        rustls::SupportedCipherSuite::Tls13(s) => s,
        _ => unreachable!(),
    };
    let side = match sender {
        Sender::Client => Side::Client,
        Sender::Server => Side::Server,
    };
    let keys = suite.quic_suite().unwrap().keys(key_dcid, side, rustls_version(version));
    let pn_len = usize::from(header[0] & 3) + 1;
    let mut pn = 0u64;
    for b in &header[pn_offset..pn_offset + pn_len] {
        pn = pn << 8 | u64::from(*b);
    }
    let tag = keys.local.packet.encrypt_in_place(pn, &header, &mut payload).unwrap();
    payload.extend_from_slice(tag.as_ref());
    let sample = payload[4 - pn_len..4 - pn_len + 16].to_vec();
    let (first, rest) = header.split_at_mut(1);
    keys.local
        .header
        .encrypt_in_place(&sample, &mut first[0], &mut rest[pn_offset - 1..pn_offset - 1 + pn_len])
        .unwrap();
    header.extend(payload);
    header
}

/// A Retry from the server to `client_scid`, with the server's new ID `new_scid` and a valid
/// integrity tag for the client's original destination ID `odcid`.
pub(crate) fn retry(version: u32, odcid: &[u8], client_scid: &[u8], new_scid: &[u8], token: &[u8]) -> Vec<u8> {
    use ring::aead;
    // The low four bits of a Retry's first byte are unused: the RFCs' samples set them.
    let mut p = vec![0xc0 | type_bits(version, 3) << 4 | 0x0f];
    p.extend(version.to_be_bytes());
    p.push(client_scid.len() as u8);
    p.extend_from_slice(client_scid);
    p.push(new_scid.len() as u8);
    p.extend_from_slice(new_scid);
    p.extend_from_slice(token);
    let (key, nonce) = if version == VERSION_2 {
        (hex("8fb4b01b56ac48e260fbcbcead7ccc92"), hex("d86969bc2d7c6d9990efb04a"))
    } else {
        (hex("be0c690b9f66575a1d766b54e368c84e"), hex("461599d35d632bf2239825bb"))
    };
    let mut pseudo = vec![odcid.len() as u8];
    pseudo.extend_from_slice(odcid);
    pseudo.extend_from_slice(&p);
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &key).unwrap());
    let tag = key
        .seal_in_place_separate_tag(
            aead::Nonce::try_assume_unique_for_key(&nonce).unwrap(),
            aead::Aad::from(&pseudo),
            &mut [],
        )
        .unwrap();
    p.extend_from_slice(tag.as_ref());
    p
}

/// A Version Negotiation packet listing `versions`.
pub(crate) fn version_negotiation(dcid: &[u8], scid: &[u8], versions: &[u32]) -> Vec<u8> {
    let mut p = vec![0x80 | 0x2a];
    p.extend(0u32.to_be_bytes());
    p.push(dcid.len() as u8);
    p.extend_from_slice(dcid);
    p.push(scid.len() as u8);
    p.extend_from_slice(scid);
    for v in versions {
        p.extend(v.to_be_bytes());
    }
    p
}

fn ext(ty: u16, data: &[u8]) -> Vec<u8> {
    let mut e = ty.to_be_bytes().to_vec();
    e.extend((data.len() as u16).to_be_bytes());
    e.extend_from_slice(data);
    e
}

/// A TLS 1.3 ClientHello handshake message (no record layer) for `sni` offering `alpn`, with
/// `transport_params` and a key share of `share_len` bytes for group `group` (1,216 for
/// X25519MLKEM768 makes it span two Initial packets, as Chromium's does).
pub(crate) fn client_hello(sni: &str, alpn: &[&str], transport_params: &[u8], group: u16, share_len: usize) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend([0x11; 32]);
    body.push(0);
    body.extend([0x00, 0x02, 0x13, 0x01]);
    body.extend([0x01, 0x00]);
    let mut exts = Vec::new();
    let mut sn = vec![0];
    sn.extend((sni.len() as u16).to_be_bytes());
    sn.extend_from_slice(sni.as_bytes());
    let mut list = (sn.len() as u16).to_be_bytes().to_vec();
    list.extend(sn);
    exts.extend(ext(0, &list));
    let mut protos = Vec::new();
    for a in alpn {
        protos.push(a.len() as u8);
        protos.extend_from_slice(a.as_bytes());
    }
    let mut alpn_ext = (protos.len() as u16).to_be_bytes().to_vec();
    alpn_ext.extend(protos);
    exts.extend(ext(16, &alpn_ext));
    exts.extend(ext(43, &[2, 0x03, 0x04]));
    let mut share = group.to_be_bytes().to_vec();
    share.extend((share_len as u16).to_be_bytes());
    share.extend((0..share_len).map(|i| i as u8));
    let mut ks = (share.len() as u16).to_be_bytes().to_vec();
    ks.extend(share);
    exts.extend(ext(51, &ks));
    exts.extend(ext(57, transport_params));
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut msg = vec![1];
    msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend(body);
    msg
}

/// A ServerHello handshake message choosing `suite`.
pub(crate) fn server_hello(suite: u16) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend([0x22; 32]);
    body.push(0);
    body.extend(suite.to_be_bytes());
    body.push(0);
    let exts = ext(43, &[0x03, 0x04]);
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut msg = vec![2];
    msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend(body);
    msg
}
