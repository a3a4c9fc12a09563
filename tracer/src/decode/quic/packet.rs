//! QUIC packet headers (RFC 8999 invariants, RFC 9000 17, RFC 9369 3.2): long and short
//! headers, Version Negotiation and Retry (with its integrity tag, RFC 9001 5.8), and the
//! packets coalesced in one UDP datagram. Nothing here needs a key: header protection hides
//! only the packet number and the low bits of the first byte.

use serde::Serialize;

use super::{QuicError, Reader};

/// QUIC version 1 (RFC 9000).
pub const VERSION_1: u32 = 0x0000_0001;
/// QUIC version 2 (RFC 9369).
pub const VERSION_2: u32 = 0x6b33_43cf;
/// Longest connection ID a QUIC v1/v2 packet may carry (RFC 9000 17.2).
pub const MAX_CID_LEN: usize = 20;
/// Most packets taken from one datagram: a datagram coalesces at most one packet per
/// encryption level plus a short one (4); more is hostile input.
pub const MAX_PACKETS_PER_DATAGRAM: usize = 8;
/// Most versions kept from a Version Negotiation packet.
pub const MAX_VN_VERSIONS: usize = 32;

/// `QUICv1`, `QUICv2`, or the number for others (`0xff00001d` for draft 29, GREASE
/// `0x?a?a?a?a`).
pub fn version_name(v: u32) -> String {
    match v {
        VERSION_1 => "QUICv1".into(),
        VERSION_2 => "QUICv2".into(),
        0 => "version negotiation".into(),
        v if v & 0x0f0f_0f0f == 0x0a0a_0a0a => format!("0x{v:08x} (reserved: forces version negotiation)"),
        v if v >> 8 == 0xff_0000 => format!("draft-{}", v & 0xff),
        v => format!("0x{v:08x}"),
    }
}

/// A connection ID, shown as lower-case hex.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub Vec<u8>);

impl ConnectionId {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Serialize for ConnectionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The type of a long-header packet. Version 2 numbers them differently (RFC 9369 3.2); this
/// is the meaning, whatever the bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LongType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

impl LongType {
    /// The type from the two type bits of the first byte, for `version`.
    pub fn from_bits(bits: u8, version: u32) -> LongType {
        let v1 = [LongType::Initial, LongType::ZeroRtt, LongType::Handshake, LongType::Retry];
        if version == VERSION_2 {
            // v2: Initial 0b01, 0-RTT 0b10, Handshake 0b11, Retry 0b00.
            [LongType::Retry, LongType::Initial, LongType::ZeroRtt, LongType::Handshake][usize::from(bits & 3)]
        } else {
            v1[usize::from(bits & 3)]
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            LongType::Initial => "Initial",
            LongType::ZeroRtt => "0-RTT",
            LongType::Handshake => "Handshake",
            LongType::Retry => "Retry",
        }
    }
}

/// One packet's header, as far as it can be read without keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Header {
    /// A long header packet of a known version: Initial, 0-RTT or Handshake. Its payload
    /// (packet number included) is `packet[pn_offset..]`, protected.
    Long {
        ty: LongType,
        version: u32,
        dcid: ConnectionId,
        scid: ConnectionId,
        /// Initial packets only: the token (from a Retry or a NEW_TOKEN frame); its length.
        token_len: usize,
        /// Where the (protected) packet number starts.
        pn_offset: usize,
    },
    /// A Retry (RFC 9000 17.2.5): the server's new connection ID (`scid`) and a token.
    Retry {
        version: u32,
        dcid: ConnectionId,
        scid: ConnectionId,
        token: Vec<u8>,
        /// The last 16 bytes: the Retry Integrity Tag.
        integrity_tag: [u8; 16],
    },
    /// A Version Negotiation packet (version 0): the versions the server supports.
    VersionNegotiation {
        dcid: ConnectionId,
        scid: ConnectionId,
        versions: Vec<u32>,
    },
    /// A long header with a version this decoder does not know: only the invariant fields.
    UnknownVersion {
        version: u32,
        dcid: ConnectionId,
        scid: ConnectionId,
    },
    /// A short (1-RTT) header. The destination connection ID is `dcid_len` bytes when the
    /// caller knew it, else not read.
    Short { dcid: Option<ConnectionId> },
}

impl Header {
    /// `Initial`, `0-RTT`, `Handshake`, `Retry`, `VN`, `1-RTT`, or `long (unknown version)`.
    pub fn kind(&self) -> &'static str {
        match self {
            Header::Long { ty, .. } => ty.name(),
            Header::Retry { .. } => "Retry",
            Header::VersionNegotiation { .. } => "VN",
            Header::UnknownVersion { .. } => "long (unknown version)",
            Header::Short { .. } => "1-RTT",
        }
    }
    pub fn version(&self) -> Option<u32> {
        match self {
            Header::Long { version, .. } | Header::Retry { version, .. } | Header::UnknownVersion { version, .. } => {
                Some(*version)
            }
            Header::VersionNegotiation { .. } => Some(0),
            Header::Short { .. } => None,
        }
    }
}

/// One packet of a datagram: its header and where it lies in the datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub header: Header,
    /// Offset of the packet's first byte in the datagram.
    pub start: usize,
    /// Its length in bytes (the rest of the datagram for short headers, Retry and VN).
    pub len: usize,
}

/// Splits a UDP datagram into its packets (RFC 9000 12.2: long-header packets carry a length,
/// a short-header packet runs to the datagram's end). `short_dcid_len` is the length of the
/// connection ID short headers carry towards this endpoint, when known.
///
/// Errors name the first packet that could not be read; the packets before it are not lost:
/// they are in the `Ok` part of [`split_datagram_lossy`].
pub fn split_datagram(datagram: &[u8], short_dcid_len: Option<usize>) -> Result<Vec<Packet>, QuicError> {
    let (packets, err) = split_datagram_lossy(datagram, short_dcid_len);
    match err {
        Some(e) => Err(e),
        None => Ok(packets),
    }
}

/// [`split_datagram`], keeping the packets read before an error. Bytes after the last packet
/// that are all zero are padding some stacks add to a datagram (not an error).
pub fn split_datagram_lossy(datagram: &[u8], short_dcid_len: Option<usize>) -> (Vec<Packet>, Option<QuicError>) {
    let mut packets = Vec::new();
    let mut start = 0;
    while start < datagram.len() {
        if packets.len() >= MAX_PACKETS_PER_DATAGRAM {
            return (packets, Some(QuicError::Malformed(format!(
                "more than {MAX_PACKETS_PER_DATAGRAM} packets coalesced in one datagram"
            ))));
        }
        let rest = &datagram[start..];
        if !packets.is_empty() && rest.iter().all(|b| *b == 0) {
            break;
        }
        match parse_packet(rest, short_dcid_len) {
            Ok((header, len)) => {
                let short = matches!(header, Header::Short { .. });
                packets.push(Packet { header, start, len });
                start += len;
                if short {
                    break;
                }
            }
            Err(e) => return (packets, Some(e)),
        }
    }
    if packets.is_empty() && datagram.is_empty() {
        return (packets, Some(QuicError::Truncated { what: "datagram", got: 0, needed: 1 }));
    }
    (packets, None)
}

/// Parses the packet at the start of `bytes`: its header and its length.
pub fn parse_packet(bytes: &[u8], short_dcid_len: Option<usize>) -> Result<(Header, usize), QuicError> {
    let mut r = Reader::new(bytes);
    let first = r.u8("first byte")?;
    if first & 0x80 == 0 {
        // Short header: 0b01SRRKPP. The fixed bit must be set (RFC 9000 17.3.1) unless the
        // peer allowed greasing it (RFC 9287); both are taken, as the packet ends the datagram.
        let dcid = match short_dcid_len {
            Some(n) if n <= MAX_CID_LEN => Some(ConnectionId(r.take(n, "short header connection ID")?.to_vec())),
            Some(n) => return Err(QuicError::ConnectionIdTooLong(n)),
            None => None,
        };
        return Ok((Header::Short { dcid }, bytes.len()));
    }
    let version = r.u32("version")?;
    let dcid = read_cid(&mut r, "destination connection ID", version)?;
    let scid = read_cid(&mut r, "source connection ID", version)?;
    if version == 0 {
        let mut versions = Vec::new();
        while !r.is_empty() {
            let v = r.u32("supported version")?;
            if versions.len() < MAX_VN_VERSIONS {
                versions.push(v);
            }
        }
        if versions.is_empty() {
            return Err(QuicError::Malformed("a Version Negotiation packet that lists no version".into()));
        }
        return Ok((Header::VersionNegotiation { dcid, scid, versions }, bytes.len()));
    }
    if version != VERSION_1 && version != VERSION_2 {
        // Unknown versions share only the invariants: the rest is opaque, to the datagram's end.
        return Ok((Header::UnknownVersion { version, dcid, scid }, bytes.len()));
    }
    // The fixed bit (0x40) may be clear: a peer that announced grease_quic_bit (RFC 9287) lets
    // the other side vary it, and quinn does, in long headers too.
    let ty = LongType::from_bits(first >> 4, version);
    if ty == LongType::Retry {
        let rest = r.rest();
        if rest.len() < 16 {
            return Err(QuicError::Truncated { what: "Retry integrity tag", got: rest.len(), needed: 16 });
        }
        let (token, tag) = rest.split_at(rest.len() - 16);
        if token.is_empty() {
            return Err(QuicError::Malformed("a Retry without a token".into()));
        }
        let integrity_tag: [u8; 16] = tag.try_into().expect("16 bytes");
        return Ok((Header::Retry { version, dcid, scid, token: token.to_vec(), integrity_tag }, bytes.len()));
    }
    let token_len = if ty == LongType::Initial {
        let n = r.varint("token length")?;
        let n = usize::try_from(n).map_err(|_| QuicError::Malformed(format!("token length {n}")))?;
        r.take(n, "token")?;
        n
    } else {
        0
    };
    let length = r.varint("length")?;
    let pn_offset = r.offset();
    let length = usize::try_from(length).map_err(|_| QuicError::Malformed(format!("length {length}")))?;
    // A packet number of 1-4 bytes and a 16-byte AEAD tag at the least (RFC 9001 5.4.2: the
    // header-protection sample needs 4 + 16 bytes after the packet number's start).
    if length < 20 {
        return Err(QuicError::Malformed(format!(
            "{} packet length {length} is shorter than a packet number and an AEAD tag",
            ty.name()
        )));
    }
    r.take(length, "packet payload")?;
    Ok((Header::Long { ty, version, dcid, scid, token_len, pn_offset }, pn_offset + length))
}

fn read_cid(r: &mut Reader<'_>, what: &'static str, version: u32) -> Result<ConnectionId, QuicError> {
    let n = usize::from(r.u8(what)?);
    // Versions 1 and 2 cap IDs at 20 bytes; the invariants allow 255 (RFC 8999 5.1).
    if n > MAX_CID_LEN && (version == VERSION_1 || version == VERSION_2) {
        return Err(QuicError::ConnectionIdTooLong(n));
    }
    Ok(ConnectionId(r.take(n, what)?.to_vec()))
}

/// Checks a Retry packet's integrity tag (RFC 9001 5.8, RFC 9369 3.3.3): AES-128-GCM, with the
/// version's fixed key and nonce, over the original destination connection ID and the Retry
/// packet without its tag. `retry` is the whole Retry packet.
pub fn retry_integrity_ok(version: u32, original_dcid: &[u8], retry: &[u8]) -> bool {
    use ring::aead;
    let (key, nonce): ([u8; 16], [u8; 12]) = match version {
        VERSION_1 => (
            [0xbe, 0x0c, 0x69, 0x0b, 0x9f, 0x66, 0x57, 0x5a, 0x1d, 0x76, 0x6b, 0x54, 0xe3, 0x68, 0xc8, 0x4e],
            [0x46, 0x15, 0x99, 0xd3, 0x5d, 0x63, 0x2b, 0xf2, 0x23, 0x98, 0x25, 0xbb],
        ),
        VERSION_2 => (
            [0x8f, 0xb4, 0xb0, 0x1b, 0x56, 0xac, 0x48, 0xe2, 0x60, 0xfb, 0xcb, 0xce, 0xad, 0x7c, 0xcc, 0x92],
            [0xd8, 0x69, 0x69, 0xbc, 0x2d, 0x7c, 0x6d, 0x99, 0x90, 0xef, 0xb0, 0x4a],
        ),
        _ => return false,
    };
    if retry.len() < 16 || original_dcid.len() > MAX_CID_LEN {
        return false;
    }
    let (body, tag) = retry.split_at(retry.len() - 16);
    let mut pseudo = Vec::with_capacity(1 + original_dcid.len() + body.len());
    pseudo.push(original_dcid.len() as u8);
    pseudo.extend_from_slice(original_dcid);
    pseudo.extend_from_slice(body);
    let Ok(unbound) = aead::UnboundKey::new(&aead::AES_128_GCM, &key) else {
        return false;
    };
    let key = aead::LessSafeKey::new(unbound);
    // The tag is an AEAD over an empty plaintext with the pseudo-packet as associated data.
    let mut in_out = tag.to_vec();
    key.open_in_place(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(&pseudo), &mut in_out)
        .is_ok()
}
