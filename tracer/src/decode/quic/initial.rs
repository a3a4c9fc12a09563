//! Initial packets without keys of our own: their keys are derived from the destination
//! connection ID of the client's first Initial (RFC 9001 5.2, RFC 9369 3.3.1), with rustls'
//! `quic` module (HKDF, AES-128-GCM packet protection and AES header protection from *ring*).
//! Decrypted, an Initial holds frames (RFC 9000 17.2.2: only PADDING, PING, ACK, CRYPTO and
//! CONNECTION_CLOSE); the CRYPTO frames carry the TLS ClientHello and ServerHello, put back
//! together by [`CryptoStream`].

use rustls::quic::{DirectionalKeys, Keys, Version};
use rustls::Side;

use super::packet::{Header, LongType, MAX_CID_LEN, Packet, VERSION_1, VERSION_2};
use super::QuicError;
pub use super::frames::Frame;

/// Who sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sender {
    Client,
    Server,
}

/// The Initial keys of one connection (both directions), from the client's first destination
/// connection ID (or, after a Retry, the connection ID the Retry gave).
pub struct InitialKeys {
    version: u32,
    client: DirectionalKeys,
    server: DirectionalKeys,
}

impl std::fmt::Debug for InitialKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitialKeys").field("version", &self.version).finish_non_exhaustive()
    }
}

impl InitialKeys {
    /// Keys for `version` (1 or 2) and the client's destination connection ID `dcid`.
    pub fn new(version: u32, dcid: &[u8]) -> Result<InitialKeys, QuicError> {
        let v = match version {
            VERSION_1 => Version::V1,
            VERSION_2 => Version::V2,
            other => return Err(QuicError::UnsupportedVersion(other)),
        };
        if dcid.len() > MAX_CID_LEN {
            return Err(QuicError::ConnectionIdTooLong(dcid.len()));
        }
        let suite = match rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256 {
            rustls::SupportedCipherSuite::Tls13(s) => s,
            _ => unreachable!("TLS13_AES_128_GCM_SHA256 is a TLS 1.3 suite"),
        };
        let quic = suite.quic_suite().ok_or(QuicError::UnsupportedVersion(version))?;
        // Side::Client: `local` is what the client sends, `remote` what the server sends.
        let Keys { local, remote } = quic.keys(dcid, Side::Client, v);
        Ok(InitialKeys { version, client: local, server: remote })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// Removes header protection from the Initial packet `packet` (the bytes of one packet of
    /// a datagram, as [`Packet`] cut them) sent by `sender`, and decrypts it. Returns the
    /// packet number and the plaintext payload (its frames).
    pub fn open(&self, sender: Sender, packet: &[u8], pn_offset: usize) -> Result<(u64, Vec<u8>), QuicError> {
        let keys = match sender {
            Sender::Client => &self.client,
            Sender::Server => &self.server,
        };
        let sample_len = keys.header.sample_len();
        let sample_at = pn_offset + 4;
        let Some(sample) = packet.get(sample_at..sample_at + sample_len) else {
            return Err(QuicError::Truncated {
                what: "header protection sample",
                got: packet.len().saturating_sub(sample_at),
                needed: sample_len,
            });
        };
        let sample = sample.to_vec();
        let mut header = packet[..pn_offset + 4].to_vec();
        {
            let (first, rest) = header.split_at_mut(1);
            keys.header
                .decrypt_in_place(&sample, &mut first[0], &mut rest[pn_offset - 1..pn_offset + 3])
                .map_err(|e| QuicError::Decrypt(format!("header protection: {e}")))?;
        }
        let pn_len = usize::from(header[0] & 3) + 1;
        header.truncate(pn_offset + pn_len);
        // Reserved bits (0x0c) must be zero once unprotected (RFC 9000 17.2).
        if header[0] & 0x0c != 0 {
            return Err(QuicError::Decrypt(format!(
                "reserved bits 0x{:02x} set after removing header protection (wrong keys?)",
                header[0] & 0x0c
            )));
        }
        let mut pn: u64 = 0;
        for b in &header[pn_offset..] {
            pn = pn << 8 | u64::from(*b);
        }
        let mut payload = packet[pn_offset + pn_len..].to_vec();
        let plain_len = keys
            .packet
            .decrypt_in_place(pn, &header, &mut payload)
            .map_err(|_| QuicError::Decrypt(format!("packet {pn} did not authenticate with the Initial keys")))?
            .len();
        payload.truncate(plain_len);
        Ok((pn, payload))
    }
}

/// Parses the frames of a decrypted Initial (or Handshake) payload: only the types RFC 9000
/// 17.2.2 allows there (PADDING, PING, ACK, CRYPTO, CONNECTION_CLOSE of the transport); any
/// other is an error. The frames themselves are read by [`super::frames`].
pub fn parse_frames(payload: &[u8]) -> Result<Vec<Frame>, QuicError> {
    let mut frames = Vec::new();
    super::frames::parse_into(payload, payload.len(), |ty| matches!(ty, 0x00..=0x03 | 0x06 | 0x1c), &mut frames)?;
    Ok(frames)
}

/// Decrypts the Initial packet `packet` of `datagram` and parses its frames.
pub fn open_initial(
    keys: &InitialKeys,
    sender: Sender,
    datagram: &[u8],
    packet: &Packet,
) -> Result<(u64, Vec<Frame>), QuicError> {
    let Header::Long { ty: LongType::Initial, pn_offset, .. } = packet.header else {
        return Err(QuicError::Malformed(format!("a {} packet is not an Initial", packet.header.kind())));
    };
    let bytes = &datagram[packet.start..packet.start + packet.len];
    let (pn, payload) = keys.open(sender, bytes, pn_offset)?;
    Ok((pn, parse_frames(&payload)?))
}

/// Most bytes a crypto stream keeps: a ClientHello or a server's Initial flight is a few KB.
pub const MAX_CRYPTO_STREAM: usize = super::super::tls::MAX_HANDSHAKE_MESSAGE;
/// Most separate pieces held while waiting for a gap to be filled.
const MAX_PENDING_PIECES: usize = 64;

/// One direction's CRYPTO stream of the Initial packet number space, put back together from
/// frames that may arrive out of order, repeated (retransmissions) or overlapping; Chromium
/// sends a ClientHello's pieces in shuffled order on purpose ("chaos protection").
#[derive(Clone, Debug, Default)]
pub struct CryptoStream {
    /// The contiguous bytes from offset 0.
    contiguous: Vec<u8>,
    /// Pieces beyond a gap: (offset, bytes).
    pending: Vec<(u64, Vec<u8>)>,
    /// Bytes past [`MAX_CRYPTO_STREAM`] or beyond the pending bound, dropped.
    pub dropped: u64,
}

impl CryptoStream {
    /// The bytes from offset 0 that have all arrived.
    pub fn contiguous(&self) -> &[u8] {
        &self.contiguous
    }

    /// Adds a CRYPTO frame's data at `offset`.
    pub fn add(&mut self, offset: u64, data: &[u8]) {
        let end = offset.saturating_add(data.len() as u64);
        let have = self.contiguous.len() as u64;
        if end <= have {
            return; // a retransmission of what is there
        }
        if offset > MAX_CRYPTO_STREAM as u64 || end > MAX_CRYPTO_STREAM as u64 {
            self.dropped += data.len() as u64;
            return;
        }
        if offset <= have {
            let skip = (have - offset) as usize;
            self.contiguous.extend_from_slice(&data[skip..]);
            self.drain_pending();
        } else if self.pending.len() < MAX_PENDING_PIECES {
            self.pending.push((offset, data.to_vec()));
        } else {
            self.dropped += data.len() as u64;
        }
    }

    fn drain_pending(&mut self) {
        loop {
            let have = self.contiguous.len() as u64;
            let Some(i) = self.pending.iter().position(|(o, _)| *o <= have) else {
                return;
            };
            let (offset, data) = self.pending.swap_remove(i);
            let end = offset + data.len() as u64;
            if end > have {
                self.contiguous.extend_from_slice(&data[(have - offset) as usize..]);
            }
        }
    }

    /// The first handshake message, when all of it has arrived: `(type, whole message)`.
    pub fn first_message(&self) -> Option<(u8, &[u8])> {
        let b = &self.contiguous;
        let &[ty, a, l1, l2] = b.first_chunk::<4>()?;
        let len = 4 + (usize::from(a) << 16 | usize::from(l1) << 8 | usize::from(l2));
        b.get(..len).map(|m| (ty, m))
    }
}
