//! The history writer: a task that owns the receiving end of a bounded queue of page loads and
//! stores them in batches (up to `batch_max` page loads, or what arrived within `flush_every`
//! of the first one), one transaction per batch. Once a batch is committed, each of its page
//! loads' list row ([`PageLoadSummary`], id included) goes to [`WriterConfig::on_stored`]:
//! the live feed announces stored rows with it.
//!
//! Nothing here can stop the daemon. A full queue drops the page load on the sender's side
//! (counted); a batch that cannot be written (full disk, read-only file, locked database) is
//! logged, counted as dropped, and the writer goes on with the next one. A failed batch rolls
//! back on its own, so rows committed before it are never touched.
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use serde::Serialize;
use sqlx::SqlitePool;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{PageLoadSummary, store};
use crate::clock::WallOffset;
use crate::stitch::model::PageLoad;

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Page loads queued between the stitcher and the writer.
    pub capacity: usize,
    /// Most page loads written in one transaction.
    pub batch_max: usize,
    /// How long the first page load of a batch waits for others.
    pub flush_every: Duration,
    /// Monotonic -> wall clock mapping for this run.
    pub wall: WallOffset,
    /// Told of every page load once its row is committed.
    pub on_stored: Option<OnStored>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self { capacity: 1024, batch_max: 64, flush_every: Duration::from_millis(200), wall: WallOffset::now(), on_stored: None }
    }
}

/// The daemon writer's most page loads per transaction (see [`WriterConfig::daemon`]).
pub const DAEMON_BATCH_MAX: usize = 512;

impl WriterConfig {
    /// The daemon's writer (`tracer run`), which benchmark 6 times as it is. No waiting for a
    /// batch to fill: the writer takes whatever is queued when it is free. Under load batches
    /// still form while the previous one is written, and the live feed (which shows a page
    /// load once stored) is not held back by 200 ms (benchmark 8). When they form, they may
    /// be large: each transaction rewrites the index pages it touches into the write-ahead
    /// log and has a fixed cost of statements, so 20,000 1-request page loads took 7.5 s in
    /// batches of 64 and 4.0 s in batches of 512 (release build, load 4-6).
    pub fn daemon(wall: WallOffset, on_stored: OnStored) -> Self {
        Self { capacity: 4096, batch_max: DAEMON_BATCH_MAX, flush_every: Duration::ZERO, wall, on_stored: Some(on_stored) }
    }
}

/// What the writer calls with each stored page load's list row, in the order they were stored
/// (on the writer's task: it must not wait).
#[derive(Clone)]
pub struct OnStored(pub Arc<dyn Fn(PageLoadSummary) + Send + Sync>);

impl std::fmt::Debug for OnStored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnStored")
    }
}

#[derive(Debug, Default)]
struct Stats {
    queued: AtomicU64,
    written: AtomicU64,
    batches: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_write_failed: AtomicU64,
    write_errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// The writer's counters, for `/api/health` and the daemon's run record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HistoryCounters {
    /// Page loads accepted into the queue.
    pub queued: u64,
    /// Page loads committed.
    pub written: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Page loads lost in total: `dropped_queue_full + dropped_write_failed`.
    pub dropped: u64,
    /// Refused because the queue was full (or the writer had stopped).
    pub dropped_queue_full: u64,
    /// Lost with a batch that could not be written.
    pub dropped_write_failed: u64,
    /// Batches that could not be written.
    pub write_errors: u64,
    /// The last write error, as text.
    pub last_error: Option<String>,
}

impl Stats {
    fn snapshot(&self) -> HistoryCounters {
        let full = self.dropped_queue_full.load(Relaxed);
        let failed = self.dropped_write_failed.load(Relaxed);
        HistoryCounters {
            queued: self.queued.load(Relaxed),
            written: self.written.load(Relaxed),
            batches: self.batches.load(Relaxed),
            dropped: full + failed,
            dropped_queue_full: full,
            dropped_write_failed: failed,
            write_errors: self.write_errors.load(Relaxed),
            last_error: self.last_error.lock().map(|e| e.clone()).unwrap_or(None),
        }
    }
}

/// The stitcher's end of the queue. Cloneable; never blocks.
#[derive(Debug, Clone)]
pub struct HistorySender {
    tx: mpsc::Sender<PageLoad>,
    stats: Arc<Stats>,
}

impl HistorySender {
    /// Queues a page load without waiting (`try_send`); returns false (and counts it as dropped) when the
    /// queue is full or the writer has stopped.
    pub fn send(&self, page: PageLoad) -> bool {
        self.counted(self.tx.try_send(page).is_ok())
    }

    /// Queues a page load, waiting for room in the queue: for a tool that must store every
    /// page load it hands over (the benchmarks' seeder). The daemon's stitcher never waits
    /// ([`send`](Self::send)). Returns false (counted as dropped) when the writer has stopped.
    pub async fn send_waiting(&self, page: PageLoad) -> bool {
        self.counted(self.tx.send(page).await.is_ok())
    }

    /// Counts a page load as queued, or as dropped when it was refused.
    fn counted(&self, queued: bool) -> bool {
        let counter = if queued { &self.stats.queued } else { &self.stats.dropped_queue_full };
        counter.fetch_add(1, Relaxed);
        queued
    }

    /// Page loads refused by [`send`](Self::send) so far (queue full or writer gone).
    pub fn dropped(&self) -> u64 {
        self.stats.dropped_queue_full.load(Relaxed)
    }

    pub fn counters(&self) -> HistoryCounters {
        self.stats.snapshot()
    }
}

/// The writer task. It ends when every [`HistorySender`] is dropped, after writing what was
/// queued.
#[derive(Debug)]
pub struct WriterHandle {
    stats: Arc<Stats>,
    join: JoinHandle<()>,
}

impl WriterHandle {
    pub fn counters(&self) -> HistoryCounters {
        self.stats.snapshot()
    }

    /// Waits for the writer to drain the queue and stop (drop every sender first).
    pub async fn join(self) -> HistoryCounters {
        let _ = self.join.await;
        self.stats.snapshot()
    }
}

/// Starts the writer on the current tokio runtime.
pub fn spawn_writer(pool: SqlitePool, config: WriterConfig) -> (HistorySender, WriterHandle) {
    let (tx, rx) = mpsc::channel(config.capacity.max(1));
    let stats = Arc::new(Stats::default());
    let sender = HistorySender { tx, stats: stats.clone() };
    let join = tokio::spawn(run(pool, config, rx, stats.clone()));
    (sender, WriterHandle { stats, join })
}

async fn run(pool: SqlitePool, config: WriterConfig, mut rx: mpsc::Receiver<PageLoad>, stats: Arc<Stats>) {
    let batch_max = config.batch_max.max(1);
    let mut batch: Vec<PageLoad> = Vec::with_capacity(batch_max);
    let mut open = true;
    while open {
        open = crate::batch::recv_batch(&mut rx, &mut batch, batch_max, config.flush_every).await;
        if batch.is_empty() {
            break;
        }
        write_batch(&pool, &config, &mut batch, &stats).await;
    }
    tracing::debug!("history writer stopped");
}

async fn write_batch(pool: &SqlitePool, config: &WriterConfig, batch: &mut Vec<PageLoad>, stats: &Stats) {
    let n = batch.len() as u64;
    match store::insert_page_loads(pool, batch, config.wall).await {
        Ok(ids) => {
            stats.written.fetch_add(n, Relaxed);
            stats.batches.fetch_add(1, Relaxed);
            if let Some(OnStored(tell)) = &config.on_stored {
                for (id, page) in ids.into_iter().zip(batch.iter()) {
                    tell(store::summary_of(id, page, config.wall));
                }
            }
        }
        Err(e) => {
            let errors = stats.write_errors.fetch_add(1, Relaxed) + 1;
            stats.dropped_write_failed.fetch_add(n, Relaxed);
            let text = format!("{e:#}");
            // Every failure is counted; the log says the first ten and then every 100th.
            if errors <= 10 || errors.is_multiple_of(100) {
                tracing::warn!(page_loads = n, errors, "history: could not write a batch, dropped: {text}");
            }
            if let Ok(mut last) = stats.last_error.lock() {
                *last = Some(text);
            }
        }
    }
    batch.clear();
}
