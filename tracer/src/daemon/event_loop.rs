//! The event loop: kernel events in batches through the client filter, the printer and the
//! stitcher into the fan-out, with the timers around them, until a signal or the end of
//! `-- COMMAND`.
//!
//! | turn | what |
//! | --- | --- |
//! | a batch of events | each: the filter's per-process attach, the printer, the stitcher; finished page loads to the fan-out |
//! | every 100 ms | the stitcher's clock (page loads whose client went quiet close), its open page loads to the live hub |
//! | every second | lost-event counters, the writer's counters, the filter's tick, the health view's pipeline counters, the events/s sample |
//! | every `--rescan` | TLS libraries loaded since the last look get their probes |
//! | `-- COMMAND` exits | 300 ms later the loop ends (its last records may still be in the ring buffer) |
//! | Ctrl-C, SIGTERM | the loop ends |
use std::{
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use super::fan_out::FanOut;
use crate::{
    clock::monotonic_ns,
    filter::{
        ClientFilter,
        command::{self, CommandEnd, CommandHandle},
    },
    probes::Probes,
    stitch::Stitcher,
    stream::{StreamStats, events::Event},
};

/// The most events taken from the queue per turn of the event loop.
const EVENT_BATCH: usize = 256;

/// What the loop works with; the daemon owns it all and gets it back at the end.
pub(super) struct EventLoop<'a> {
    pub(super) events: mpsc::Receiver<Event>,
    pub(super) probes: &'a mut Probes,
    pub(super) filter: Option<&'a mut ClientFilter>,
    pub(super) stitcher: &'a mut Stitcher,
    pub(super) fan_out: &'a FanOut,
    pub(super) stats: Arc<StreamStats>,
    /// The health view's pipeline counters (`/api/health`'s `pipeline`), refreshed every second.
    pub(super) health: Arc<Mutex<serde_json::Value>>,
    pub(super) command: Option<CommandHandle>,
    /// How often to look for TLS libraries that processes loaded since the last look.
    pub(super) rescan: Duration,
}

/// How the loop ended.
pub(super) struct LoopEnd {
    /// 0, or the status of `-- COMMAND`.
    pub(super) exit_code: u8,
    /// `-- COMMAND` could not be waited for.
    pub(super) command_error: Option<String>,
}

impl EventLoop<'_> {
    pub(super) async fn run(mut self) -> anyhow::Result<LoopEnd> {
        let mut end = LoopEnd { exit_code: 0, command_error: None };
        let mut stop_at: Option<tokio::time::Instant> = None;
        let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut each_second = tokio::time::interval(Duration::from_secs(1));
        let mut stitch_tick = tokio::time::interval(Duration::from_millis(100));
        let mut rescan_tick = tokio::time::interval(self.rescan);
        rescan_tick.tick().await; // the first tick is immediate; libraries were just scanned
        let mut last_lost: u64 = 0;
        let mut newest_event_ns: u64 = 0;
        let mut batch = Vec::with_capacity(EVENT_BATCH);
        loop {
            tokio::select! {
                // Events in batches: one turn of this select per batch, not per event (at 180k
                // events/s the per-turn cost of its eight branches showed).
                n = self.events.recv_many(&mut batch, EVENT_BATCH) => {
                    if n == 0 { break }
                    newest_event_ns = self.on_events(&mut batch, newest_event_ns);
                }
                _ = stitch_tick.tick() => {
                    // A page load closes after its client's quiet window. While the daemon is
                    // behind (events still queued), the clock for that is the newest event read,
                    // not now: otherwise a busy client's page load is cut into pieces by events
                    // that were already made but not yet read (seen under benchmark 3's load).
                    let now = if self.events.is_empty() { monotonic_ns() } else { newest_event_ns };
                    for page in self.stitcher.tick(now) {
                        self.fan_out.page_load(page);
                    }
                    self.fan_out.progress(&self.stitcher.progress());
                }
                _ = each_second.tick() => self.each_second(&mut last_lost),
                _ = rescan_tick.tick() => self.rescan_libraries(),
                ended = command::wait_command(&mut self.command) => {
                    eprintln!("{ended}: detaching");
                    if let CommandEnd::Failed(e) = &ended {
                        end.command_error = Some(e.clone());
                        break;
                    }
                    end.exit_code = ended.code();
                    // Its last records may still be on their way through the ring buffer.
                    stop_at = Some(tokio::time::Instant::now() + Duration::from_millis(300));
                }
                _ = command::sleep_until(stop_at) => break,
                _ = tokio::signal::ctrl_c() => { eprintln!("interrupted: detaching"); break }
                _ = sigterm.recv() => { eprintln!("terminated: detaching"); break }
            }
        }
        Ok(end)
    }

    /// One batch: each event through the filter, the printer and the stitcher. Returns the
    /// newest event time seen.
    fn on_events(&mut self, batch: &mut Vec<Event>, mut newest_event_ns: u64) -> u64 {
        let mut finished = false;
        for ev in batch.drain(..) {
            newest_event_ns = newest_event_ns.max(ev.ts_ns);
            if let Some(f) = self.filter.as_deref_mut() {
                f.on_event(self.probes, &ev);
            }
            self.fan_out.event(&ev);
            for page in self.stitcher.on_event(&ev) {
                finished = true;
                self.fan_out.page_load(page);
            }
        }
        if finished {
            // The live view drops a finished page load from those in progress now, not at the
            // next tick: its stored row is about to be announced.
            self.fan_out.progress(&self.stitcher.progress());
        }
        newest_event_ns
    }

    fn each_second(&mut self, last_lost: &mut u64) {
        let metrics = &self.fan_out.metrics;
        if let Ok(counts) = self.probes.lost_counts() {
            let total: u64 = counts.iter().map(|(_, n)| n).sum();
            if total > *last_lost {
                let detail: Vec<String> = counts.iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{k}={n}")).collect();
                tracing::warn!("ring buffer full: {} events lost so far ({})", total, detail.join(" "));
                *last_lost = total;
            }
            self.stats.kernel_lost.store(total, Ordering::Relaxed);
            metrics.runtime.set_kernel_lost(&counts);
        }
        let history = self.fan_out.history.counters();
        metrics.runtime.set_history(history.clone());
        if let Some(f) = self.filter.as_deref_mut() {
            f.tick(self.probes);
        }
        let stitch = self.stitcher.stats();
        metrics.runtime.set_stitch(stitch.clone());
        if let Ok(mut h) = self.health.lock() {
            *h = serde_json::json!({
                "stitcher": stitch,
                "history": history,
                "filter": self.filter.as_ref().map(|f| f.snapshot()),
                "otlp": self.fan_out.otlp.as_ref().map(|o| o.stats().snapshot()),
            });
        }
        self.fan_out.live.sample_events(self.stats.received.load(Ordering::Relaxed));
        let dropped = self.stats.queue_dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::debug!("{dropped} events dropped at the consumer queue");
        }
    }

    fn rescan_libraries(&mut self) {
        let new = self.probes.attach_new_libraries();
        if !new.is_empty() {
            self.fan_out.metrics.runtime.set_probes(&self.probes.status);
        }
        for st in new {
            let target = st.target.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
            let outcome = if st.attached { "attached".to_string() } else { format!("FAILED: {}", st.error.unwrap_or_default()) };
            eprintln!("  new library: {} {target} {outcome}", st.point);
        }
    }
}
