//! Connections per origin, shared by the requests of one page load the way a browser shares
//! them: an HTTP/2 (or HTTP/3) connection carries every request to its origin; HTTP/1.1 connections carry
//! one request at a time, are kept for reuse, and at most `max_per_origin` are open at once.
//! While the first https connection to an origin is being set up, other requests wait for it
//! (it may turn out to be HTTP/2) instead of opening their own, as Chromium does. A new
//! HTTP/2 connection is shared only once the request that opened it has been sent: that
//! request is its first stream, so the set-up phases (DNS, connect, TLS) belong to the
//! same request here and in a trace of the wire.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::address::Origin;
use super::conn::{IoStats, Sender};

/// An established connection.
pub(crate) struct Conn {
    pub(crate) id: usize,
    pub(crate) sender: Sender,
    pub(crate) stats: Arc<IoStats>,
    pub(crate) remote: SocketAddr,
}

impl Conn {
    /// Another handle on a multiplexed (HTTP/2 or HTTP/3) connection.
    fn h2_clone(&self) -> Option<Conn> {
        let sender = match &self.sender {
            Sender::H2(s) => Sender::H2(s.clone()),
            Sender::H3(s) => Sender::H3(s.clone()),
            Sender::H1(_) => return None,
        };
        Some(Conn {
            id: self.id,
            sender,
            stats: self.stats.clone(),
            remote: self.remote,
        })
    }
}

#[derive(Default)]
struct State {
    h2: Option<Conn>,
    idle: Vec<Conn>,
    /// HTTP/1.1 connections open (idle or in use).
    open_h1: usize,
    /// Connections being set up.
    connecting: usize,
    /// Whether this origin spoke HTTP/2 on its last connection (`None`: not known yet).
    is_h2: Option<bool>,
}

struct OriginPool {
    state: Mutex<State>,
    notify: Notify,
}

impl OriginPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct Pool {
    origins: Mutex<HashMap<Origin, Arc<OriginPool>>>,
    max_per_origin: usize,
}

/// What a request got from the pool.
pub(crate) enum Slot {
    /// A connection set up earlier.
    Reuse(Lease),
    /// Permission to set up a new connection.
    Connect(ConnectPermit),
}

impl Pool {
    pub(crate) fn new(max_per_origin: usize) -> Pool {
        Pool {
            origins: Mutex::default(),
            max_per_origin: max_per_origin.max(1),
        }
    }

    fn origin(&self, origin: &Origin) -> Arc<OriginPool> {
        let mut m = self.origins.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(origin.clone())
            .or_insert_with(|| {
                Arc::new(OriginPool {
                    state: Mutex::default(),
                    notify: Notify::new(),
                })
            })
            .clone()
    }

    /// Waits (at most `timeout`) for a connection to `origin` or the right to open one.
    pub(crate) async fn acquire(&self, origin: &Origin, timeout: Duration) -> Option<Slot> {
        let op = self.origin(origin);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = op.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = op.lock();
                if let Some(c) = &st.h2 {
                    if !c.sender.is_closed() {
                        let conn = c.h2_clone().expect("h2 connection");
                        return Some(Slot::Reuse(Lease {
                            conn: Some(conn),
                            pool: op.clone(),
                            reusable: false,
                            unshared: None,
                        }));
                    }
                    st.h2 = None;
                }
                while let Some(c) = st.idle.pop() {
                    if !c.sender.is_closed() {
                        return Some(Slot::Reuse(Lease {
                            conn: Some(c),
                            pool: op.clone(),
                            reusable: false,
                            unshared: None,
                        }));
                    }
                    st.open_h1 = st.open_h1.saturating_sub(1);
                }
                let may_connect = match st.is_h2 {
                    // An HTTP/2 origin needs one connection: open one only when none is coming.
                    Some(true) => st.connecting == 0,
                    // Unknown: for https wait for the connection being set up (it may be h2).
                    None if origin.is_tls() && st.connecting > 0 => false,
                    _ => st.open_h1 + st.connecting < self.max_per_origin,
                };
                if may_connect {
                    st.connecting += 1;
                    return Some(Slot::Connect(ConnectPermit {
                        pool: Some(op.clone()),
                    }));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

/// The right to set up one connection; give it back with [`ConnectPermit::established`] or
/// by dropping it (the set-up failed).
pub(crate) struct ConnectPermit {
    pool: Option<Arc<OriginPool>>,
}

impl ConnectPermit {
    /// The new connection, leased to the request that set it up. An HTTP/2 connection is
    /// shared with other requests at [`Lease::share`] (or when the lease is dropped).
    pub(crate) fn established(mut self, conn: Conn) -> Lease {
        let op = self.pool.take().expect("permit used once");
        let unshared = conn.h2_clone();
        if unshared.is_none() {
            {
                let mut st = op.lock();
                st.connecting = st.connecting.saturating_sub(1);
                st.is_h2 = Some(false);
                st.open_h1 += 1;
            }
            op.notify.notify_waiters();
        }
        // Until it is shared the connection still counts as being set up: other requests
        // to the origin keep waiting for it rather than open their own.
        Lease {
            conn: Some(conn),
            pool: op,
            reusable: false,
            unshared,
        }
    }
}

impl Drop for ConnectPermit {
    fn drop(&mut self) {
        if let Some(op) = self.pool.take() {
            {
                let mut st = op.lock();
                st.connecting = st.connecting.saturating_sub(1);
            }
            op.notify.notify_waiters();
        }
    }
}

/// A connection in use by one request. An HTTP/1.1 connection goes back to the pool when the
/// lease is dropped with `reusable` set (its response was read to the end), else it is closed.
pub(crate) struct Lease {
    conn: Option<Conn>,
    pool: Arc<OriginPool>,
    pub(crate) reusable: bool,
    /// A new HTTP/2 connection not yet shared with the origin's other requests.
    unshared: Option<Conn>,
}

impl Lease {
    pub(crate) fn conn(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("leased connection")
    }

    /// Lets the origin's other requests use this new HTTP/2 connection (a no-op otherwise).
    pub(crate) fn share(&mut self) {
        let Some(shared) = self.unshared.take() else { return };
        {
            let mut st = self.pool.lock();
            st.connecting = st.connecting.saturating_sub(1);
            st.is_h2 = Some(true);
            if st.h2.as_ref().is_none_or(|c| c.sender.is_closed()) {
                st.h2 = Some(shared);
            }
        }
        self.pool.notify.notify_waiters();
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.share();
        let Some(conn) = self.conn.take() else { return };
        if let Sender::H1(_) = conn.sender {
            {
                let mut st = self.pool.lock();
                if self.reusable && !conn.sender.is_closed() {
                    st.idle.push(conn);
                } else {
                    st.open_h1 = st.open_h1.saturating_sub(1);
                }
            }
            self.pool.notify.notify_waiters();
        }
    }
}
