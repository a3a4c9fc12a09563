//! The live event stream: one task drains the ring buffer (`AsyncFd` around `RingBuf`),
//! decodes each record ([`events`]) and hands it to consumers through a bounded channel. The
//! reader never waits on a consumer: when the channel is full the event is dropped and counted.
//! [`printer`] writes events as the `--print` / `--json` lines.
pub mod events;
pub mod printer;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc};
use tracer_common::{EventKind, maps};

use crate::probes::Probes;
use events::{Event, decode_record};

/// Counters the health view and the log report.
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Records read from the ring buffer.
    pub received: AtomicU64,
    /// Records that could not be decoded (each logged once per kind of error).
    pub malformed: AtomicU64,
    /// Decoded events dropped because the consumer queue was full.
    pub queue_dropped: AtomicU64,
    /// Records the kernel could not write (ring buffer full), as last read from LOST.
    pub kernel_lost: AtomicU64,
    /// Per kind received, indexed by kind number.
    pub by_kind: [AtomicU64; tracer_common::KIND_SLOTS as usize],
}

impl StreamStats {
    pub fn snapshot(&self) -> serde_json::Value {
        let by_kind: serde_json::Map<String, serde_json::Value> = EventKind::ALL
            .iter()
            .map(|k| (k.name().to_string(), self.by_kind[*k as usize].load(Ordering::Relaxed).into()))
            .collect();
        serde_json::json!({
            "received": self.received.load(Ordering::Relaxed),
            "malformed": self.malformed.load(Ordering::Relaxed),
            "queue_dropped": self.queue_dropped.load(Ordering::Relaxed),
            "kernel_lost": self.kernel_lost.load(Ordering::Relaxed),
            "by_kind": by_kind,
        })
    }
}

/// How often the ring buffer is drained when the probes did not wake the reader: the most
/// an event waits in the ring under a light load.
pub const DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Start draining the ring buffer of `probes`. Returns the event receiver.
pub fn spawn_reader(
    probes: &mut Probes,
    capacity: usize,
    stats: Arc<StreamStats>,
) -> anyhow::Result<mpsc::Receiver<Event>> {
    spawn_ring_task(probes, capacity, stats, |bytes| decode_record(bytes))
}

/// Like [`spawn_reader`], but hands out each record's raw bytes together with its decoded
/// form (for `--record` and the golden-file recorder). Records hold plaintext: callers
/// write them only when a user asked for it.
pub fn spawn_raw_reader(
    probes: &mut Probes,
    capacity: usize,
    stats: Arc<StreamStats>,
) -> anyhow::Result<mpsc::Receiver<(Vec<u8>, Event)>> {
    spawn_ring_task(probes, capacity, stats, |bytes| decode_record(bytes).map(|e| (bytes.to_vec(), e)))
}

fn spawn_ring_task<T: Send + 'static>(
    probes: &mut Probes,
    capacity: usize,
    stats: Arc<StreamStats>,
    decode: fn(&[u8]) -> Result<T, events::RecordError>,
) -> anyhow::Result<mpsc::Receiver<T>> {
    let map = probes.ebpf.take_map(maps::EVENTS).context("EVENTS map missing")?;
    let ring: RingBuf<MapData> = RingBuf::try_from(map)?;
    // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd owns the RingBuf, and
    // always reports that same fd.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering the ring buffer with tokio: {e}"))?;
    let (tx, rx) = mpsc::channel(capacity);
    tokio::spawn(async move {
        let mut warned_malformed = false;
        loop {
            // The probes wake this task only when a batch has built up (see wakeup_flags in
            // tracer-ebpf): otherwise the ring is drained every DRAIN_INTERVAL.
            match tokio::time::timeout(DRAIN_INTERVAL, fd.readable_mut()).await {
                Ok(Ok(mut guard)) => {
                    let open = drain(guard.get_inner_mut(), decode, &stats, &tx, &mut warned_malformed);
                    guard.clear_ready();
                    if !open {
                        return;
                    }
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::error!("ring buffer poll failed: {e}");
                    return;
                }
                Err(_) => {}
            }
            if !drain(fd.get_mut(), decode, &stats, &tx, &mut warned_malformed) {
                return;
            }
        }
    });
    Ok(rx)
}

/// Decodes and forwards every record waiting in the ring. False when the consumer is gone.
fn drain<T>(
    ring: &mut RingBuf<MapData>,
    decode: fn(&[u8]) -> Result<T, events::RecordError>,
    stats: &StreamStats,
    tx: &mpsc::Sender<T>,
    warned_malformed: &mut bool,
) -> bool {
    while let Some(item) = ring.next() {
        stats.received.fetch_add(1, Ordering::Relaxed);
        match decode(&item) {
            Ok(ev) => {
                if let Some(k) = raw_kind(&item) {
                    stats.by_kind[k].fetch_add(1, Ordering::Relaxed);
                }
                match tx.try_send(ev) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        stats.queue_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            Err(e) => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                if !*warned_malformed {
                    tracing::warn!("malformed record from the kernel (further ones only counted): {e}");
                    *warned_malformed = true;
                }
            }
        }
    }
    true
}

fn raw_kind(b: &[u8]) -> Option<usize> {
    let k = u32::from_ne_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    (k < tracer_common::KIND_SLOTS as usize).then_some(k)
}
