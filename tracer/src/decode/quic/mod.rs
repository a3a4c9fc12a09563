//! QUIC packets without the endpoints' keys: what anyone on the path can read of a QUIC
//! connection, which is a good deal more than of TCP + TLS, because the Initial packets are
//! encrypted with keys derived from a connection ID sent in the clear (RFC 9001 5.2).
//!
//! | module | what it reads |
//! | --- | --- |
//! | [`packet`] | long and short headers of versions 1 and 2, Version Negotiation, Retry (and its integrity tag), the packets coalesced in one datagram |
//! | [`frames`] | the frames of a decrypted payload, every RFC 9000 type and DATAGRAM, a payload captured only in part included (STREAM data cut short keeps its offsets) |
//! | [`initial`] | the Initial keys (rustls' `quic` module: HKDF, AES-128-GCM, header protection), an Initial's frames, the CRYPTO stream put back together across packets and out of order |
//! | [`transport_params`] | the client's QUIC transport parameters (in its ClientHello) |
//! | [`tracker`] | one connection fed its datagrams in order, both directions: SNI, ALPN offered, transport parameters, the ServerHello's cipher, 0-RTT, Retry, Version Negotiation, a CONNECTION_CLOSE in the clear, and the handshake's timing |
//!
//! The ClientHello and ServerHello themselves are parsed by [`crate::decode::tls`], which
//! takes a bare handshake message here (QUIC has no TLS record layer).
//!
//! What stays hidden on the wire: everything after the Initials (Handshake and 1-RTT packets
//! are under keys from the TLS key exchange), so the ALPN the server chose (it is in the
//! encrypted EncryptedExtensions: with one protocol offered, as browsers do for `h3`, it can only
//! be that one), the certificate, and the HTTP/3 requests. The handshake's end is seen as the
//! client's first 1-RTT packet. The plaintext of 1-RTT packets, as probes on a client's AEAD
//! calls capture it, is read by [`frames::parse_payload`] and [`crate::decode::h3`].
//!
//! Every function takes hostile bytes (a datagram is whatever a socket moved) and returns an
//! error that names what was wrong; none panics, and everything kept is bounded
//! (`MAX_PACKETS_PER_DATAGRAM`, `MAX_CRYPTO_STREAM`, `MAX_ERRORS_KEPT` ...).

pub mod frames;
pub mod initial;
pub mod packet;
pub mod tracker;
pub mod transport_params;

#[cfg(test)]
pub(crate) mod test_packets;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_frames;
#[cfg(test)]
pub(crate) mod tests_recorded;

pub use frames::{Frame, ParsedPayload, parse_payload};
pub use initial::{CryptoStream, InitialKeys, Sender, parse_frames};
pub use packet::{
    ConnectionId, Header, LongType, Packet, VERSION_1, VERSION_2, parse_packet, retry_integrity_ok,
    split_datagram, split_datagram_lossy, version_name,
};
pub use tracker::{CloseInfo, QuicSummary, QuicTracker, RetryInfo, Traffic};
pub use transport_params::{TransportParameters, parse_transport_parameters};

/// Why QUIC bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuicError {
    /// The data ends before a length it declares (or a fixed-size field).
    #[error("QUIC data truncated in the {what}: {got} byte(s) present, {needed} needed")]
    Truncated { what: &'static str, got: usize, needed: usize },
    #[error("a connection ID of {0} bytes (QUIC v1/v2 allow at most 20)")]
    ConnectionIdTooLong(usize),
    #[error("QUIC version 0x{0:08x} has no Initial keys this decoder knows (versions 1 and 2)")]
    UnsupportedVersion(u32),
    #[error("undecryptable: {0}")]
    Decrypt(String),
    #[error("malformed QUIC packet: {0}")]
    Malformed(String),
}

/// A cursor over bytes whose reads fail, naming the field, instead of running past the end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
    pub(crate) fn offset(&self) -> usize {
        self.pos
    }
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }
    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], QuicError> {
        let rest = self.rest();
        if rest.len() < n {
            return Err(QuicError::Truncated { what, got: rest.len(), needed: n });
        }
        self.pos += n;
        Ok(&rest[..n])
    }
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, QuicError> {
        Ok(self.take(1, what)?[0])
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, QuicError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A variable-length integer (RFC 9000 16): the first byte's two high bits give its
    /// length, 1, 2, 4 or 8 bytes.
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, QuicError> {
        let first = self.peek().ok_or(QuicError::Truncated { what, got: 0, needed: 1 })?;
        let len = 1usize << (first >> 6);
        let b = self.take(len, what)?;
        let mut v = u64::from(b[0] & 0x3f);
        for x in &b[1..] {
            v = v << 8 | u64::from(*x);
        }
        Ok(v)
    }
}

/// Printable ASCII as is, anything else as `\xNN` (reason phrases, names from the wire).
pub(crate) fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b.iter().take(256) {
        if c.is_ascii_graphic() || c == b' ' {
            s.push(char::from(c));
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    if b.len() > 256 {
        s.push_str("...");
    }
    s
}
