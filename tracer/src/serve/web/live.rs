//! The live feed behind `GET /api/live` (Server-Sent Events).
//!
//! * `page_load`: a finished page load, as soon as the history writer has stored it, with its
//!   id (the same summary as a row of `GET /api/page-loads`). [`spawn_live`] follows the
//!   `page_loads` table by id and broadcasts new rows, so every event names a row that exists.
//! * `progress`: the clients with a page load in progress, `{"open": [{tgid, comm, since_ms,
//!   last_ms, events}]}`; sent on connect and whenever it changes. The daemon feeds every
//!   event to [`LiveHub::observe`]: a client's connect or DNS query opens an entry, any of
//!   its network events keep it open, and it closes when its page load is delivered
//!   ([`LiveHub::page_done`]) or after the stitcher's quiet window without activity.
//!   Connections to the dashboard itself ([`LiveHub::ignore_destination`]) are not shown:
//!   they carry no request the stitcher can see, so they never become page loads.
//!   This follows the stitcher's rule for opening page loads but is kept apart from it
//!   (the stitcher's open page loads are private to it), so it is an indicator, not a count
//!   of the page loads that will be stored.
//! * `lagged`: this client missed `n` page loads (it was too slow); reload the list.
//!
//! The stream ends when the daemon shuts down ([`LiveHub::shutdown`]), so that the server's
//! graceful shutdown does not wait for browsers.
use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    net::SocketAddr,
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
use sqlx::{Row, SqlitePool};
use tokio::sync::{broadcast, watch};

use super::AppState;
use crate::{
    clock::WallOffset,
    stream::events::{Direction, Event, EventBody},
    history::PageLoadSummary,
    stitch::model::PageLoad,
};

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

struct Activity {
    comm: String,
    first_ns: u64,
    last_ns: u64,
    events: u64,
}

/// Most clients tracked as in progress at once (the oldest activity is forgotten first).
const MAX_OPEN: usize = 256;

pub struct LiveHub {
    tx: broadcast::Sender<LiveEvent>,
    progress: watch::Sender<Progress>,
    activity: Mutex<HashMap<u32, Activity>>,
    /// An entry without activity for this long is closed (the stitcher's quiet window plus slack).
    idle_ns: u64,
    wall: WallOffset,
    clients: Arc<AtomicUsize>,
    shutdown: watch::Sender<bool>,
    /// (when, events received so far), one sample a second, for events/s.
    rate: Mutex<VecDeque<(Instant, u64)>>,
    /// Connects to these addresses do not open an entry (the dashboard's own viewers).
    ignored: Mutex<Vec<SocketAddr>>,
}

impl LiveHub {
    /// `quiet_ns`: the stitcher's quiet window (a page load closes after that much idleness).
    pub fn new(quiet_ns: u64) -> Self {
        Self {
            tx: broadcast::channel(1024).0,
            progress: watch::channel(Progress::default()).0,
            activity: Mutex::new(HashMap::new()),
            idle_ns: quiet_ns + 300_000_000,
            wall: WallOffset::now(),
            clients: Arc::new(AtomicUsize::new(0)),
            shutdown: watch::channel(false).0,
            rate: Mutex::new(VecDeque::new()),
            ignored: Mutex::new(Vec::new()),
        }
    }

    /// Connections to `addr` (the dashboard's listen address; an unspecified IP matches any
    /// address with that port) are not page loads in progress.
    pub fn ignore_destination(&self, addr: SocketAddr) {
        if let Ok(mut v) = self.ignored.lock() {
            v.push(addr);
        }
    }

    fn is_ignored(&self, dst: Option<&SocketAddr>) -> bool {
        let Some(dst) = dst else { return false };
        self.ignored.lock().is_ok_and(|v| {
            v.iter().any(|a| a.port() == dst.port() && (a.ip().is_unspecified() || a.ip() == dst.ip()))
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }

    /// Sends to every connected client; returns how many there were.
    pub fn broadcast(&self, ev: LiveEvent) -> usize {
        self.tx.send(ev).unwrap_or(0)
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

    /// One kernel event (the daemon calls this for every event it reads).
    pub fn observe(&self, ev: &Event) {
        let opens = match &ev.body {
            EventBody::Connect { dst, .. } if self.is_ignored(dst.as_ref()) => return,
            EventBody::Connect { tcp, .. } => *tcp,
            EventBody::Dns { direction, .. } => *direction == Direction::Send,
            EventBody::TlsData { .. } | EventBody::TlsHandshake { .. } | EventBody::SocketData { .. } => false,
            _ => return,
        };
        let Ok(mut a) = self.activity.lock() else { return };
        if let Some(e) = a.get_mut(&ev.tgid) {
            e.last_ns = e.last_ns.max(ev.ts_ns);
            e.events += 1;
        } else if opens {
            if a.len() >= MAX_OPEN {
                if let Some(oldest) = a.iter().min_by_key(|(_, e)| e.last_ns).map(|(k, _)| *k) {
                    a.remove(&oldest);
                }
            }
            // The process's name, not the thread's (Chrome_ChildIOT, tokio-rt-worker).
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", ev.tgid))
                .map(|s| s.trim_end().to_string())
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| ev.comm.clone());
            a.insert(ev.tgid, Activity { comm, first_ns: ev.ts_ns, last_ns: ev.ts_ns, events: 1 });
        }
    }

    /// A page load was delivered: its processes are no longer in progress.
    pub fn page_done(&self, page: &PageLoad) {
        let Ok(mut a) = self.activity.lock() else { return };
        a.remove(&page.client.tgid);
        for tgid in page
            .requests
            .iter()
            .map(|r| r.tgid)
            .chain(page.connections.iter().map(|c| c.tgid))
            .chain(page.dns.iter().map(|d| d.tgid))
        {
            a.remove(&tgid);
        }
        drop(a);
        self.publish(None);
    }

    /// Drops idle entries (when `now_ns` is given) and publishes the list when it changed.
    fn publish(&self, now_ns: Option<u64>) {
        let open = {
            let Ok(mut a) = self.activity.lock() else { return };
            if let Some(now) = now_ns {
                a.retain(|_, e| now.saturating_sub(e.last_ns) <= self.idle_ns);
            }
            let mut open: Vec<OpenClient> = a
                .iter()
                .map(|(tgid, e)| OpenClient {
                    tgid: *tgid,
                    comm: e.comm.clone(),
                    since_ms: self.wall.unix_ms(e.first_ns),
                    last_ms: self.wall.unix_ms(e.last_ns),
                    events: e.events,
                })
                .collect();
            open.sort_by_key(|o| (o.since_ms, o.tgid));
            open
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

    fn sample_rate(&self, received: u64) {
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

const SUMMARY_SQL: &str = "SELECT p.id, p.started_at_ms, pr.name, pr.tgid, p.url, p.host, p.status, p.error, p.total_ms,
        p.request_count, p.connection_count, p.redirect_count, p.bytes
 FROM page_loads p JOIN processes pr ON pr.id = p.process_id WHERE p.id > ? ORDER BY p.id LIMIT 200";

use crate::history::query::summary;

async fn max_id(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM page_loads").fetch_one(pool).await
}

/// Broadcasts the page loads stored after `after`; returns the last id seen.
async fn forward_new(pool: &SqlitePool, hub: &LiveHub, mut after: i64) -> Result<i64, sqlx::Error> {
    let max = max_id(pool).await?;
    if max < after {
        // Rows were deleted from the top (everything pruned); ids start again below.
        return Ok(max);
    }
    while max > after {
        let rows = sqlx::query(SUMMARY_SQL).bind(after).fetch_all(pool).await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get(0)?;
        for r in &rows {
            hub.broadcast(LiveEvent::PageLoad { page_load: summary(r)? });
        }
    }
    Ok(after)
}

/// The live feed's background work: forwards newly stored page loads (every 150 ms), expires
/// idle in-progress entries, and samples the event counter for events/s. Abort it at shutdown.
pub fn spawn_live(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let hub = state.live.clone();
        let pool = state.pool.clone();
        let mut after = max_id(&pool).await.unwrap_or(0);
        let mut tick = tokio::time::interval(Duration::from_millis(150));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sample: Option<Instant> = None;
        let mut errors = 0u64;
        loop {
            tick.tick().await;
            if *hub.shutdown.borrow() {
                break;
            }
            match forward_new(&pool, &hub, after).await {
                Ok(a) => after = a,
                Err(e) => {
                    errors += 1;
                    if errors <= 5 || errors.is_multiple_of(100) {
                        tracing::warn!("dashboard live feed: reading new page loads: {e}");
                    }
                }
            }
            hub.publish(Some(crate::clock::monotonic_ns()));
            if last_sample.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                hub.sample_rate(state.health.stats.received.load(Ordering::Relaxed));
                last_sample = Some(Instant::now());
            }
        }
    })
}
