//! Batching for the consumers of finished page loads (the history writer, the OTLP exporter):
//! wait for one item, then take more until the batch is full or `flush_every` has passed.

use tokio::{sync::mpsc, time::Instant};

/// Fills `batch` (expected empty) from `rx`: waits for a first item, then takes more until
/// `batch_max` items or until `flush_every` after the first. Returns false when the channel
/// is closed (what was received is still in `batch`).
pub async fn recv_batch<T>(
    rx: &mut mpsc::Receiver<T>,
    batch: &mut Vec<T>,
    batch_max: usize,
    flush_every: std::time::Duration,
) -> bool {
    match rx.recv().await {
        Some(p) => batch.push(p),
        None => return false,
    }
    let deadline = Instant::now() + flush_every;
    while batch.len() < batch_max.max(1) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(p)) => batch.push(p),
            Ok(None) => return false,
            Err(_) => break,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fills_to_the_maximum_then_reports_a_closed_channel() {
        let (tx, mut rx) = mpsc::channel(16);
        for i in 0..5 {
            tx.send(i).await.unwrap();
        }
        let mut batch = Vec::new();
        assert!(recv_batch(&mut rx, &mut batch, 3, Duration::from_secs(60)).await);
        assert_eq!(batch, vec![0, 1, 2]);
        batch.clear();
        drop(tx);
        assert!(!recv_batch(&mut rx, &mut batch, 3, Duration::from_secs(60)).await);
        assert_eq!(batch, vec![3, 4], "what arrived before the close is kept");
        batch.clear();
        assert!(!recv_batch(&mut rx, &mut batch, 3, Duration::from_secs(60)).await);
        assert!(batch.is_empty());
    }

    #[tokio::test]
    async fn a_partial_batch_goes_after_flush_every() {
        let (tx, mut rx) = mpsc::channel(16);
        tx.send(1).await.unwrap();
        let mut batch = Vec::new();
        // The sender stays open and sends nothing more: the batch of one is returned.
        assert!(recv_batch(&mut rx, &mut batch, 10, Duration::from_millis(20)).await);
        assert_eq!(batch, vec![1]);
    }
}
