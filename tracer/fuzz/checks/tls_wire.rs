//! TLS records on the wire (`stitch::wire::WireTls`): a connection's socket traffic cut into
//! calls, with gaps, in both directions.
use tracer::decode::Direction;
use tracer::stitch::wire::{WireTls, starts_tls};
use crate::transcript::Transcript;

/// The target on one input (the fuzz target and the corpus replay test call it).
pub fn run(t: Transcript) {
    let calls = t.calls();
    let mut wire = WireTls::default();
    let mut moved = [0u64; 2];
    if let Some(first) = calls.iter().find(|c| c.dir == Direction::Send) {
        let _ = starts_tls(first.data);
    }
    for c in &calls {
        let d = usize::from(c.dir == Direction::Recv);
        moved[d] += u64::from(c.len);
        wire.feed(c.dir, c.start_ns, c.ts_ns, c.len, c.data);
        if c.take {
            check(&wire, &moved);
        }
    }
    check(&wire, &moved);
}


fn check(wire: &WireTls, moved: &[u64; 2]) {
    // Every record counted had its 5-byte header inside the bytes moved.
    for d in 0..2 {
        let records: u64 = wire.records[d].iter().map(|n| u64::from(*n)).sum();
        assert!(records * 5 <= moved[d], "{records} records in {} bytes", moved[d]);
    }
    if let Some((start, end)) = wire.handshake() {
        if let Some(end) = end {
            assert!(start <= end, "handshake ends ({end}) before it starts ({start})");
        }
    }
    if let (Some(s), Some(e)) = (wire.app_recv_start_ns, wire.app_recv_end_ns) {
        assert!(s <= e);
    }
    if let Some(sni) = &wire.sni {
        assert!(sni.bytes().all(|b| b.is_ascii_graphic()));
    }
}
