//! The real probes loaded in the test's process, and the events they send, awaited with a
//! bound.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc::Receiver;
use tracer::{
    probes::{ProbeConfig, Probes},
    stream::{StreamStats, events::Event, spawn_reader},
};

pub struct Traced {
    pub probes: Probes,
    pub rx: Receiver<Event>,
    /// Everything received so far, for failure messages and later assertions.
    pub seen: Vec<Event>,
}

impl Traced {
    pub async fn start(config: ProbeConfig) -> Traced {
        let mut probes = Probes::load(&config).expect("loading probes");
        let failed: Vec<_> = probes
            .status
            .iter()
            .filter(|s| !s.attached && s.target.is_none())
            .map(|s| format!("{}: {:?}", s.point, s.error))
            .collect();
        assert!(failed.is_empty(), "kernel probes failed to attach: {failed:#?}");
        let rx = spawn_reader(&mut probes, 1 << 16, Arc::new(StreamStats::default())).unwrap();
        Traced { probes, rx, seen: Vec::new() }
    }

    /// Wait (bounded) until an event matching `pred` arrives; return it.
    pub async fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Event) -> bool) -> Event {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return e.clone();
        }
        let timeout = tracer::lab::support::test_bound(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(e)) => {
                    let hit = pred(&e);
                    self.seen.push(e.clone());
                    if hit {
                        return e;
                    }
                }
                Ok(None) => panic!("event stream closed while waiting for {what}"),
                Err(_) => panic!("timed out after {timeout:?} waiting for {what}; {} events seen", self.seen.len()),
            }
        }
    }

    /// Everything that arrives within `d` (used after the awaited event, to collect its
    /// companions that the kernel already wrote).
    pub async fn drain_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(Some(e)) = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), self.rx.recv()).await {
            self.seen.push(e);
        }
    }
}

