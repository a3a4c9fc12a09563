//! The live feed behind `GET /api/live` (Server-Sent Events), fed by the daemon's fan-out.
//!
//! * `page_load`: a finished page load, as soon as the history writer has stored it, with its
//!   id (the same summary as a row of `GET /api/page-loads`). The writer hands each stored
//!   row's summary to [`LiveHub::page_stored`], so every event names a row that exists.
//! * `progress`: the clients with a page load in progress, `{"open": [{tgid, comm, since_ms,
//!   last_ms, events}]}`; sent on connect and whenever the list changes. These are the
//!   stitcher's own open page loads ([`LiveHub::page_progress`] takes its
//!   [`PageProgress`] reports): `tgid` and `comm` are the client's (the root of its process
//!   tree, as its stored page load names it), `events` its network events so far. The
//!   stitcher leaves out the daemon's own traffic (the dashboard's viewers, the OTLP
//!   collector: [`crate::stitch::Stitcher::ignore_in_progress`]).
//! * `lagged`: this client missed `n` page loads (it was too slow); reload the list.
//!
//! The stream ends when the daemon shuts down ([`LiveHub::shutdown`]), so that the server's
//! graceful shutdown does not wait for browsers.
use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    extract::State,
    response::sse::{Event as SseEvent, KeepAlive, Sse},
};
use futures_util::stream::Stream;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use super::AppState;
use crate::{clock::WallOffset, history::PageLoadSummary, stitch::progress::PageProgress};

/// One client with a page load in progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenClient {
    pub tgid: u32,
    pub comm: String,
    /// Unix ms of its first network event.
    pub since_ms: i64,
    /// Unix ms of its latest one.
    pub last_ms: i64,
    pub events: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Progress {
    pub open: Vec<OpenClient>,
}

/// A message of the live feed.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    PageLoad { page_load: PageLoadSummary },
}

/// Most clients shown as in progress at once (the one with the oldest activity goes first).
const MAX_OPEN: usize = 256;

pub struct LiveHub {
    tx: broadcast::Sender<LiveEvent>,
    progress: watch::Sender<Progress>,
    /// The stitcher's open page loads, by client.
    open: Mutex<HashMap<u32, OpenClient>>,
    /// The run's monotonic -> wall clock mapping (the stored rows' too).
    wall: WallOffset,
    clients: Arc<AtomicUsize>,
    shutdown: watch::Sender<bool>,
    /// (when, events received so far), one sample a second, for events/s.
    rate: Mutex<VecDeque<(Instant, u64)>>,
}

impl LiveHub {
    pub fn new(wall: WallOffset) -> Self {
        Self {
            tx: broadcast::channel(1024).0,
            progress: watch::channel(Progress::default()).0,
            open: Mutex::new(HashMap::new()),
            wall,
            clients: Arc::new(AtomicUsize::new(0)),
            shutdown: watch::channel(false).0,
            rate: Mutex::new(VecDeque::new()),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }

    /// Sends to every connected client; returns how many there were.
    pub fn broadcast(&self, ev: LiveEvent) -> usize {
        self.tx.send(ev).unwrap_or(0)
    }

    /// A page load's row was committed: its summary goes to every connected client.
    pub fn page_stored(&self, page_load: PageLoadSummary) {
        self.broadcast(LiveEvent::PageLoad { page_load });
    }

    /// SSE clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Ends every live stream (daemon shutdown).
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// The stitcher's reports on its open page loads; publishes the list when it changed.
    pub fn page_progress(&self, reports: &[PageProgress]) {
        if reports.is_empty() {
            return;
        }
        let open = {
            let Ok(mut open) = self.open.lock() else { return };
            for r in reports {
                match r {
                    PageProgress::Opened { client, name, started_ns } => {
                        if open.len() >= MAX_OPEN
                            && !open.contains_key(client)
                            && let Some(oldest) = open.values().min_by_key(|o| (o.last_ms, o.tgid)).map(|o| o.tgid)
                        {
                            open.remove(&oldest);
                        }
                        let since_ms = self.wall.unix_ms(*started_ns);
                        open.insert(*client, OpenClient { tgid: *client, comm: name.clone(), since_ms, last_ms: since_ms, events: 0 });
                    }
                    PageProgress::Active { client, last_ns, events } => {
                        if let Some(o) = open.get_mut(client) {
                            o.last_ms = self.wall.unix_ms(*last_ns);
                            o.events = *events;
                        }
                    }
                    PageProgress::Closed { client } => {
                        open.remove(client);
                    }
                }
            }
            let mut list: Vec<OpenClient> = open.values().cloned().collect();
            list.sort_by_key(|o| (o.since_ms, o.tgid));
            list
        };
        self.progress.send_if_modified(|p| {
            // Event counts alone do not make a change worth sending.
            let same = p.open.len() == open.len()
                && p.open.iter().zip(&open).all(|(a, b)| a.tgid == b.tgid && a.comm == b.comm && a.since_ms == b.since_ms);
            if same {
                return false;
            }
            p.open = open;
            true
        });
    }

    /// Samples the count of events received (the daemon calls this once a second).
    pub fn sample_events(&self, received: u64) {
        if let Ok(mut r) = self.rate.lock() {
            r.push_back((Instant::now(), received));
            while r.len() > 11 {
                r.pop_front();
            }
        }
    }

    /// Events per second over the last ~10 s (None before two samples).
    pub fn events_per_s(&self) -> Option<f64> {
        let r = self.rate.lock().ok()?;
        let (t0, n0) = *r.front()?;
        let (t1, n1) = *r.back()?;
        let dt = t1.duration_since(t0).as_secs_f64();
        (dt > 0.0).then(|| n1.saturating_sub(n0) as f64 / dt)
    }
}

/// Counts a connected SSE client while it lives.
struct ClientGuard(Arc<AtomicUsize>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn json_event(name: &str, v: &impl Serialize) -> SseEvent {
    SseEvent::default().event(name).json_data(v).unwrap_or_else(|_| SseEvent::default().comment("unserializable"))
}

/// `GET /api/live`
pub(super) async fn sse(State(s): State<AppState>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let hub = s.live.clone();
    hub.clients.fetch_add(1, Ordering::Relaxed);
    struct St {
        rx: broadcast::Receiver<LiveEvent>,
        progress: watch::Receiver<Progress>,
        shutdown: watch::Receiver<bool>,
        first: bool,
        _guard: ClientGuard,
    }
    let st = St {
        rx: hub.subscribe(),
        progress: hub.progress.subscribe(),
        shutdown: hub.shutdown.subscribe(),
        first: true,
        _guard: ClientGuard(hub.clients.clone()),
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        if *st.shutdown.borrow() {
            return None;
        }
        if st.first {
            st.first = false;
            let p = st.progress.borrow_and_update().clone();
            return Some((Ok(json_event("progress", &p)), st));
        }
        let ev = tokio::select! {
            _ = st.shutdown.changed() => return None,
            r = st.rx.recv() => match r {
                Ok(LiveEvent::PageLoad { page_load }) => json_event("page_load", &page_load),
                Err(broadcast::error::RecvError::Lagged(n)) => SseEvent::default().event("lagged").data(n.to_string()),
                Err(broadcast::error::RecvError::Closed) => return None,
            },
            r = st.progress.changed() => {
                if r.is_err() {
                    return None;
                }
                let p = st.progress.borrow_and_update().clone();
                json_event("progress", &p)
            }
        };
        Some((Ok(ev), st))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn opened(client: u32, ms: u64) -> PageProgress {
        PageProgress::Opened { client, name: format!("c{client}"), started_ns: ms * MS }
    }

    #[test]
    fn progress_follows_the_stitchers_reports() {
        let hub = LiveHub::new(WallOffset(1_000_000_000)); // monotonic 0 is unix 1 s
        let mut changes = hub.progress.subscribe();
        hub.page_progress(&[opened(7, 20), PageProgress::Active { client: 7, last_ns: 25 * MS, events: 3 }, opened(5, 10)]);
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        let open = hub.progress().open;
        assert_eq!(
            open,
            vec![
                OpenClient { tgid: 5, comm: "c5".into(), since_ms: 1_010, last_ms: 1_010, events: 0 },
                OpenClient { tgid: 7, comm: "c7".into(), since_ms: 1_020, last_ms: 1_025, events: 3 },
            ],
            "oldest first"
        );
        // Activity alone is not worth a message; a close is, and a report of an unknown client
        // changes nothing.
        hub.page_progress(&[PageProgress::Active { client: 5, last_ns: 30 * MS, events: 9 }]);
        assert!(!changes.has_changed().unwrap());
        hub.page_progress(&[PageProgress::Closed { client: 7 }, PageProgress::Closed { client: 99 }]);
        assert!(changes.has_changed().unwrap());
        assert_eq!(hub.progress().open.iter().map(|o| (o.tgid, o.events)).collect::<Vec<_>>(), vec![(5, 9)]);
        // A navigation: the client's page load closes and a new one opens, in one batch.
        hub.page_progress(&[PageProgress::Closed { client: 5 }, opened(5, 40)]);
        assert_eq!(hub.progress().open.iter().map(|o| (o.tgid, o.since_ms)).collect::<Vec<_>>(), vec![(5, 1_040)]);
    }

    #[test]
    fn at_most_max_open_clients_the_least_recently_active_go_first() {
        let hub = LiveHub::new(WallOffset(0));
        let reports: Vec<PageProgress> = (0..MAX_OPEN as u32 + 2).map(|c| opened(c, 1_000 + c as u64)).collect();
        hub.page_progress(&reports);
        let open = hub.progress().open;
        assert_eq!(open.len(), MAX_OPEN);
        assert!(!open.iter().any(|o| o.tgid == 0 || o.tgid == 1), "the two least recently active went");
    }

    #[tokio::test]
    async fn stored_rows_reach_every_subscriber() {
        let hub = LiveHub::new(WallOffset(0));
        let mut a = hub.subscribe();
        let mut b = hub.subscribe();
        let row = crate::history::summary_of(42, &crate::stitch::sample::redirect_page(0), WallOffset(0));
        hub.page_stored(row.clone());
        for rx in [&mut a, &mut b] {
            let LiveEvent::PageLoad { page_load } = rx.recv().await.unwrap();
            assert_eq!(page_load, row);
        }
    }
}
