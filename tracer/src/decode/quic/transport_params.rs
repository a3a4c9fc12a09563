//! QUIC transport parameters (RFC 9000 18), as a client sends them in its ClientHello's
//! quic_transport_parameters extension: the limits it announces (idle timeout, flow control,
//! streams), its connection IDs, and what it supports (datagrams, greasing the QUIC bit).

use serde::Serialize;

use super::packet::{ConnectionId, MAX_CID_LEN};
use super::{QuicError, Reader};

/// Most parameters read (a real client sends 10-20; GREASE parameters included).
const MAX_PARAMETERS: usize = 128;

/// The parameters that say something about the client; the others are counted by id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TransportParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_idle_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_udp_payload_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_max_data: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_max_stream_data_bidi_local: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_max_stream_data_bidi_remote: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_max_stream_data_uni: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_max_streams_bidi: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_max_streams_uni: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_delay_exponent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ack_delay_ms: Option<u64>,
    pub disable_active_migration: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_connection_id_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_source_connection_id: Option<ConnectionId>,
    /// RFC 9221: the client takes DATAGRAM frames up to this size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_datagram_frame_size: Option<u64>,
    /// RFC 9287: the client accepts packets whose fixed bit is greased.
    pub grease_quic_bit: bool,
    /// RFC 9368: the version the client chose and the ones it would take.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub available_versions: Vec<u32>,
    /// Ids of the other parameters, in order (GREASE ids `31 * N + 27` included).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<u64>,
}

/// Parses the body of a quic_transport_parameters extension. Repeated parameters are an
/// error (RFC 9000 7.4); a known parameter whose value does not fit its type is one too.
pub fn parse_transport_parameters(bytes: &[u8]) -> Result<TransportParameters, QuicError> {
    let mut r = Reader::new(bytes);
    let mut tp = TransportParameters::default();
    let mut seen: Vec<u64> = Vec::new();
    while !r.is_empty() {
        if seen.len() >= MAX_PARAMETERS {
            return Err(QuicError::Malformed(format!("more than {MAX_PARAMETERS} transport parameters")));
        }
        let id = r.varint("transport parameter id")?;
        let len = r.varint("transport parameter length")?;
        let len = usize::try_from(len).map_err(|_| QuicError::Malformed(format!("parameter length {len}")))?;
        let value = r.take(len, "transport parameter value")?;
        if seen.contains(&id) {
            return Err(QuicError::Malformed(format!("transport parameter 0x{id:x} sent twice")));
        }
        seen.push(id);
        let int = || -> Result<u64, QuicError> {
            let mut v = Reader::new(value);
            let n = v.varint("transport parameter value")?;
            if !v.is_empty() {
                return Err(QuicError::Malformed(format!(
                    "transport parameter 0x{id:x}: {} bytes after its integer",
                    v.rest().len()
                )));
            }
            Ok(n)
        };
        match id {
            0x01 => tp.max_idle_timeout_ms = Some(int()?),
            0x03 => tp.max_udp_payload_size = Some(int()?),
            0x04 => tp.initial_max_data = Some(int()?),
            0x05 => tp.initial_max_stream_data_bidi_local = Some(int()?),
            0x06 => tp.initial_max_stream_data_bidi_remote = Some(int()?),
            0x07 => tp.initial_max_stream_data_uni = Some(int()?),
            0x08 => tp.initial_max_streams_bidi = Some(int()?),
            0x09 => tp.initial_max_streams_uni = Some(int()?),
            0x0a => tp.ack_delay_exponent = Some(int()?),
            0x0b => tp.max_ack_delay_ms = Some(int()?),
            0x0c => {
                if !value.is_empty() {
                    return Err(QuicError::Malformed("disable_active_migration with a value".into()));
                }
                tp.disable_active_migration = true;
            }
            0x0e => tp.active_connection_id_limit = Some(int()?),
            0x0f => {
                if value.len() > MAX_CID_LEN {
                    return Err(QuicError::ConnectionIdTooLong(value.len()));
                }
                tp.initial_source_connection_id = Some(ConnectionId(value.to_vec()));
            }
            0x11 => {
                if value.is_empty() || value.len() % 4 != 0 {
                    return Err(QuicError::Malformed(format!("version_information of {} bytes", value.len())));
                }
                tp.available_versions = value
                    .chunks_exact(4)
                    .take(32)
                    .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
                    .collect();
            }
            0x20 => tp.max_datagram_frame_size = Some(int()?),
            0x2ab2 => {
                if !value.is_empty() {
                    return Err(QuicError::Malformed("grease_quic_bit with a value".into()));
                }
                tp.grease_quic_bit = true;
            }
            // original_destination_connection_id (0x00), stateless_reset_token (0x02),
            // preferred_address (0x0d) and retry_source_connection_id (0x10) are the server's.
            other => tp.other.push(other),
        }
    }
    Ok(tp)
}
