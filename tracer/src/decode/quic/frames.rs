//! The frames of a decrypted QUIC packet payload, every type of RFC 9000 section 19 and the
//! DATAGRAM frame of RFC 9221: what an Initial carries ([`super::initial::parse_frames`]
//! allows only its five types) and what a 1-RTT packet carries (STREAM frames with the HTTP/3
//! bytes, RESET_STREAM, CONNECTION_CLOSE ...), read by [`parse_payload`].
//!
//! A payload may have been captured only in part (an AEAD probe copies at most a fixed number
//! of bytes of a longer packet): `len` says how long it was. A STREAM (or DATAGRAM) frame whose
//! data runs past the captured bytes is returned with what was captured and the count of the
//! bytes that were not ([`Frame::Stream`]'s `missing`), so the stream keeps its offsets; any
//! other frame cut short ends the parse with [`QuicError::Truncated`].
//!
//! QUIC frames have no generic length, so an unknown frame type ends the parse (what follows it
//! cannot be found); every known type is skipped by its own fields.

use super::{QuicError, Reader, escape};

/// A frame of a decrypted packet. Data is copied out of the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// PADDING bytes (a run counts as one frame).
    Padding(usize),
    Ping,
    /// ACK (0x02) or ACK with ECN counts (0x03): the ranges and counts are skipped.
    Ack { largest: u64 },
    Crypto { offset: u64, data: Vec<u8> },
    /// CONNECTION_CLOSE of the transport (0x1c): the error code (0x100 + a TLS alert for a
    /// crypto error), the frame type that caused it, and the reason phrase (escaped).
    ConnectionClose { code: u64, frame_type: u64, reason: String },
    /// CONNECTION_CLOSE of the application (0x1d): an HTTP/3 error code and the reason phrase
    /// (escaped).
    ApplicationClose { code: u64, reason: String },
    /// RESET_STREAM (0x04): the sender abandons its side of the stream at `final_size` bytes.
    ResetStream { id: u64, code: u64, final_size: u64 },
    /// STOP_SENDING (0x05): the sender asks its peer to stop sending on the stream.
    StopSending { id: u64, code: u64 },
    /// STREAM (0x08-0x0f): `data` at `offset`; `missing` more bytes of the frame were not
    /// captured (they follow `data`); `fin` marks the end of the stream at
    /// `offset + data.len() + missing`.
    Stream { id: u64, offset: u64, data: Vec<u8>, fin: bool, missing: u64 },
    /// NEW_TOKEN (0x07), its token skipped.
    NewToken,
    /// MAX_DATA (0x10).
    MaxData(u64),
    /// MAX_STREAM_DATA (0x11).
    MaxStreamData { id: u64, max: u64 },
    /// MAX_STREAMS (0x12 bidirectional, 0x13 unidirectional).
    MaxStreams { bidi: bool, max: u64 },
    /// DATA_BLOCKED (0x14).
    DataBlocked(u64),
    /// STREAM_DATA_BLOCKED (0x15).
    StreamDataBlocked { id: u64, limit: u64 },
    /// STREAMS_BLOCKED (0x16 bidirectional, 0x17 unidirectional).
    StreamsBlocked { bidi: bool, limit: u64 },
    /// NEW_CONNECTION_ID (0x18): the ID and its reset token are skipped.
    NewConnectionId { seq: u64, retire_prior_to: u64 },
    /// RETIRE_CONNECTION_ID (0x19).
    RetireConnectionId(u64),
    /// PATH_CHALLENGE (0x1a) and PATH_RESPONSE (0x1b), 8 bytes of data skipped.
    PathChallenge,
    PathResponse,
    HandshakeDone,
    /// DATAGRAM (0x30, 0x31; RFC 9221): its length; the data is not kept.
    Datagram { len: u64 },
}

/// Most frames read from one packet.
pub const MAX_FRAMES: usize = 256;
/// Most ACK ranges walked in one ACK frame.
const MAX_ACK_RANGES: u64 = 256;
/// The largest stream offset (and final size) QUIC allows, 2^62 - 1.
pub const MAX_OFFSET: u64 = (1 << 62) - 1;

/// The frames read from one payload.
#[derive(Debug, Default)]
pub struct ParsedPayload {
    pub frames: Vec<Frame>,
    /// Why the parse stopped early: the frames after this point are lost.
    pub error: Option<QuicError>,
}

/// Reads the frames of a decrypted payload of `len` bytes of which `payload` were captured
/// (`len` smaller than `payload.len()` is taken as `payload.len()`).
pub fn parse_payload(payload: &[u8], len: usize) -> ParsedPayload {
    let mut out = ParsedPayload::default();
    out.error = parse_into(payload, len.max(payload.len()), |_| true, &mut out.frames).err();
    out
}

/// The parser behind [`parse_payload`] and the Initials' `parse_frames`: `allowed` is asked
/// about each frame type before its fields are read.
pub(crate) fn parse_into(
    payload: &[u8],
    len: usize,
    allowed: impl Fn(u64) -> bool,
    frames: &mut Vec<Frame>,
) -> Result<(), QuicError> {
    let mut r = Reader::new(payload);
    let short = |r: &Reader<'_>| r.is_empty() && len > payload.len();
    // A frame whose data ran past the captured bytes accounts for them.
    let mut cut_absorbed = false;
    while !r.is_empty() {
        if frames.len() >= MAX_FRAMES {
            return Err(QuicError::Malformed(format!("more than {MAX_FRAMES} frames in one packet")));
        }
        let ty = r.varint("frame type")?;
        if !allowed(ty) {
            return Err(QuicError::Malformed(format!("frame type 0x{ty:x} is not allowed in an Initial packet")));
        }
        let frame = match ty {
            0x00 => {
                let mut n = 1;
                while r.peek() == Some(0) {
                    r.u8("padding")?;
                    n += 1;
                }
                Frame::Padding(n)
            }
            0x01 => Frame::Ping,
            0x02 | 0x03 => {
                let largest = r.varint("ACK largest acknowledged")?;
                r.varint("ACK delay")?;
                let ranges = r.varint("ACK range count")?;
                if ranges > MAX_ACK_RANGES {
                    return Err(QuicError::Malformed(format!("an ACK frame with {ranges} ranges")));
                }
                r.varint("ACK first range")?;
                for _ in 0..ranges {
                    r.varint("ACK gap")?;
                    r.varint("ACK range length")?;
                }
                if ty == 0x03 {
                    for what in ["ECT0 count", "ECT1 count", "ECN-CE count"] {
                        r.varint(what)?;
                    }
                }
                Frame::Ack { largest }
            }
            0x04 => {
                let id = r.varint("RESET_STREAM stream ID")?;
                let code = r.varint("RESET_STREAM error code")?;
                let final_size = r.varint("RESET_STREAM final size")?;
                Frame::ResetStream { id, code, final_size }
            }
            0x05 => {
                let id = r.varint("STOP_SENDING stream ID")?;
                let code = r.varint("STOP_SENDING error code")?;
                Frame::StopSending { id, code }
            }
            0x06 => {
                let offset = r.varint("CRYPTO offset")?;
                let n = length(r.varint("CRYPTO length")?, "CRYPTO length")?;
                let data = r.take(n, "CRYPTO data")?.to_vec();
                if offset.checked_add(n as u64).is_none_or(|end| end > MAX_OFFSET) {
                    return Err(QuicError::Malformed(format!("CRYPTO frame past 2^62-1 (offset {offset})")));
                }
                Frame::Crypto { offset, data }
            }
            0x07 => {
                let n = length(r.varint("NEW_TOKEN length")?, "NEW_TOKEN length")?;
                r.take(n, "NEW_TOKEN token")?;
                Frame::NewToken
            }
            0x08..=0x0f => {
                let id = r.varint("STREAM stream ID")?;
                let offset = if ty & 0x04 != 0 { r.varint("STREAM offset")? } else { 0 };
                // Without the LEN bit the data runs to the end of the packet.
                let n = if ty & 0x02 != 0 {
                    r.varint("STREAM length")?
                } else {
                    (len - r.offset()) as u64
                };
                if offset.checked_add(n).is_none_or(|end| end > MAX_OFFSET) {
                    return Err(QuicError::Malformed(format!("STREAM frame past 2^62-1 (offset {offset}, length {n})")));
                }
                let have = (r.rest().len() as u64).min(n);
                let data = r.take(have as usize, "STREAM data")?.to_vec();
                let missing = n - have;
                if missing > 0 {
                    if !short(&r) {
                        return Err(QuicError::Truncated { what: "STREAM data", got: have as usize, needed: n as usize });
                    }
                    cut_absorbed = true;
                }
                Frame::Stream { id, offset, data, fin: ty & 0x01 != 0, missing }
            }
            0x10 => Frame::MaxData(r.varint("MAX_DATA maximum")?),
            0x11 => {
                let id = r.varint("MAX_STREAM_DATA stream ID")?;
                let max = r.varint("MAX_STREAM_DATA maximum")?;
                Frame::MaxStreamData { id, max }
            }
            0x12 | 0x13 => Frame::MaxStreams { bidi: ty == 0x12, max: r.varint("MAX_STREAMS maximum")? },
            0x14 => Frame::DataBlocked(r.varint("DATA_BLOCKED limit")?),
            0x15 => {
                let id = r.varint("STREAM_DATA_BLOCKED stream ID")?;
                let limit = r.varint("STREAM_DATA_BLOCKED limit")?;
                Frame::StreamDataBlocked { id, limit }
            }
            0x16 | 0x17 => Frame::StreamsBlocked { bidi: ty == 0x16, limit: r.varint("STREAMS_BLOCKED limit")? },
            0x18 => {
                let seq = r.varint("NEW_CONNECTION_ID sequence number")?;
                let retire_prior_to = r.varint("NEW_CONNECTION_ID retire prior to")?;
                let n = usize::from(r.u8("NEW_CONNECTION_ID length")?);
                if !(1..=20).contains(&n) {
                    return Err(QuicError::ConnectionIdTooLong(n));
                }
                r.take(n, "NEW_CONNECTION_ID connection ID")?;
                r.take(16, "NEW_CONNECTION_ID stateless reset token")?;
                Frame::NewConnectionId { seq, retire_prior_to }
            }
            0x19 => Frame::RetireConnectionId(r.varint("RETIRE_CONNECTION_ID sequence number")?),
            0x1a | 0x1b => {
                r.take(8, "PATH_CHALLENGE/PATH_RESPONSE data")?;
                if ty == 0x1a { Frame::PathChallenge } else { Frame::PathResponse }
            }
            0x1c | 0x1d => {
                let code = r.varint("CONNECTION_CLOSE error code")?;
                let frame_type = if ty == 0x1c { Some(r.varint("CONNECTION_CLOSE frame type")?) } else { None };
                let n = length(r.varint("CONNECTION_CLOSE reason length")?, "CONNECTION_CLOSE reason length")?;
                let reason = escape(r.take(n, "CONNECTION_CLOSE reason")?);
                match frame_type {
                    Some(frame_type) => Frame::ConnectionClose { code, frame_type, reason },
                    None => Frame::ApplicationClose { code, reason },
                }
            }
            0x1e => Frame::HandshakeDone,
            0x30 | 0x31 => {
                let n = if ty == 0x31 { r.varint("DATAGRAM length")? } else { (len - r.offset()) as u64 };
                let have = (r.rest().len() as u64).min(n);
                r.take(have as usize, "DATAGRAM data")?;
                if have < n {
                    if !short(&r) {
                        return Err(QuicError::Truncated { what: "DATAGRAM data", got: have as usize, needed: n as usize });
                    }
                    cut_absorbed = true;
                }
                Frame::Datagram { len: n }
            }
            other => {
                return Err(QuicError::Malformed(format!(
                    "unknown frame type 0x{other:x}: the rest of the packet cannot be read"
                )));
            }
        };
        frames.push(frame);
    }
    if frames.is_empty() {
        return Err(QuicError::Malformed("a packet without frames".into()));
    }
    if len > payload.len() && !cut_absorbed {
        return Err(QuicError::Truncated { what: "packet payload", got: payload.len(), needed: len });
    }
    Ok(())
}

fn length(n: u64, what: &'static str) -> Result<usize, QuicError> {
    usize::try_from(n).map_err(|_| QuicError::Malformed(format!("{what} {n}")))
}
