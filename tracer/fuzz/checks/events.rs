//! Ring-buffer records (`stream::events::decode_record`): raw bytes as the kernel (or anything that
//! writes to the ring buffer) hands them over, then the printers that show a decoded event, and
//! the split of a QUIC record into its GSO/GRO datagrams.
use tracer::stream::events::{EventBody, QUIC_SEGMENTS_MAX, decode_record, quic_segments};
use tracer::stream::printer::{json_line, text_line};

/// The target on one input (the fuzz target and the corpus replay test call it).
pub fn run(data: &[u8]) {
    let Ok(ev) = decode_record(data) else { return };
    // Nothing decoded is bigger than the record it came from.
    match &ev.body {
        EventBody::TlsData { data: d, captured, .. } | EventBody::SocketData { data: d, captured, .. } => {
            assert_eq!(d.len(), *captured as usize);
            assert!(d.len() <= data.len());
        }
        EventBody::Dns { raw, .. } => assert!(raw.len() <= tracer_common::DNS_CAPTURE_MAX),
        // A QUIC record's datagrams (GSO/GRO segments): bounded, each a slice of what was
        // captured, their lengths adding up to at most the call's.
        EventBody::QuicDatagram { data: d, captured, len, segment, .. } => {
            assert_eq!(d.len(), *captured as usize);
            let segs = quic_segments(*len, *segment, d);
            assert!(!segs.is_empty() && segs.len() <= QUIC_SEGMENTS_MAX);
            assert!(segs.iter().map(|(n, _)| u64::from(*n)).sum::<u64>() <= u64::from(*len).max(1) || segs.len() == 1);
            assert!(segs.iter().all(|(n, b)| b.len() <= *n as usize && b.len() <= d.len()));
        }
        _ => {}
    }
    assert!(ev.comm.len() <= tracer_common::TASK_COMM_LEN * 3, "comm of {} bytes", ev.comm.len());
    let text = text_line(&ev);
    assert!(!text.chars().any(char::is_control), "control characters in a printed event: {text:?}");
    let json = json_line(&ev);
    serde_json::from_str::<serde_json::Value>(&json).expect("the JSON line parses");
}

