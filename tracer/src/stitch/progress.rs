//! Page loads in progress: what the stitcher tells a live view about the page loads it holds
//! open, before they finish ([`Stitcher::progress`]).
//!
//! A page load is reported once it is *shown*: when its client did something other than
//! talk to one of the daemon's own destinations ([`Stitcher::ignore_in_progress`]: the
//! dashboard's viewers, the OTLP collector). Then, at each call, [`PageProgress::Opened`]
//! for a page load not reported yet, [`PageProgress::Active`] for one whose activity changed,
//! and [`PageProgress::Closed`] for every reported one that closed since (with or without a
//! page load to deliver: a bare lookup closes without one). The finished page loads
//! themselves are what [`Stitcher::on_event`], [`Stitcher::tick`] and [`Stitcher::finish`]
//! return.
//!
//! Nothing here decides anything about the page loads themselves: the replay of a recorded
//! stream gives the same page loads whether or not anyone asks for progress.
use std::net::SocketAddr;

use super::Stitcher;

/// What happened to an open page load since the last [`Stitcher::progress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageProgress {
    /// The client's page load opened at `started_ns` (its first network activity). `name`
    /// is the client's, as its page load will show it (`chromium`, not `Chrome_ChildIOT`).
    Opened { client: u32, name: String, started_ns: u64 },
    /// The client's open page load saw activity: its latest at `last_ns`, `events` network
    /// events so far.
    Active { client: u32, last_ns: u64, events: u64 },
    /// The client's open page load closed.
    Closed { client: u32 },
}

/// Destinations whose connections do not make a page load in progress (an unspecified IP
/// matches every address with that port).
#[derive(Debug, Default)]
pub(super) struct OwnDestinations(Vec<SocketAddr>);

impl OwnDestinations {
    pub(super) fn covers(&self, dst: Option<SocketAddr>) -> bool {
        let Some(dst) = dst else { return false };
        self.0.iter().any(|a| a.port() == dst.port() && (a.ip().is_unspecified() || a.ip() == dst.ip()))
    }
}

/// What [`Stitcher::progress`] last said about an open page load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reported {
    last_ns: u64,
    events: u64,
}

impl Stitcher {
    /// Connections to `addr` (the dashboard's listen address, the OTLP collector) do not make
    /// their client's page load one in progress. They are still stitched: only
    /// [`progress`](Self::progress) leaves them out.
    pub fn ignore_in_progress(&mut self, addr: SocketAddr) {
        self.own.0.push(addr);
    }

    /// Whether activity on connection `conn` (None: a lookup) makes a page load shown.
    pub(super) fn shows(&self, conn: Option<u64>) -> bool {
        self.own.0.is_empty() || !conn.and_then(|id| self.conns.get(id)).is_some_and(|c| self.own.covers(c.dst))
    }

    /// What happened to the open page loads since the last call: closes first, in the order
    /// they happened, then openings and activity in client order.
    pub fn progress(&mut self) -> Vec<PageProgress> {
        let mut out: Vec<PageProgress> = self.closed.drain(..).map(|client| PageProgress::Closed { client }).collect();
        for (&client, page) in self.pages.iter_mut().filter(|(_, p)| p.shown) {
            let now = Reported { last_ns: page.last_activity_ns, events: page.events };
            if page.reported.is_none() {
                // The name its page load will have: the first request's, connection's or
                // lookup's process only when the client is not in the process table.
                let fallback = page
                    .requests
                    .first()
                    .map(|r| r.comm.as_str())
                    .or_else(|| page.conns.first().and_then(|id| self.conns.get(*id)).map(|c| c.comm.as_str()))
                    .or_else(|| page.lookups.first().and_then(|id| self.dns.get(*id)).map(|l| l.comm.as_str()))
                    .unwrap_or_default();
                let name = self.procs.client_info(client, fallback).name;
                out.push(PageProgress::Opened { client, name, started_ns: page.started_ns });
            } else if page.reported == Some(now) {
                continue;
            }
            out.push(PageProgress::Active { client, last_ns: now.last_ns, events: now.events });
            page.reported = Some(now);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::DnsSyscall;

    use super::super::tests::{SHOP, Sim, addr, ok};
    use super::*;
    use crate::stitch::StitchConfig;
    use crate::stream::events::Direction;

    /// curl loads a page while a browser on the same machine watches the dashboard, then
    /// looks a name up.
    fn stream() -> Sim {
        let mut s = Sim::new();
        s.exec(300, "/usr/bin/curl");
        s.exec(77, "/usr/lib/chromium/chromium");
        s.query(300, 1, "shop.test", "A");
        s.connect(300, 5, addr(SHOP, 80), 0xa);
        s.socket(300, 5, Direction::Send, DnsSyscall::Sendto, b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n");
        s.socket(300, 5, Direction::Recv, DnsSyscall::Recvfrom, &ok("page"));
        let dashboard = addr([127, 0, 0, 1], 7878);
        s.connect(77, 9, dashboard, 0xd);
        s.socket(77, 9, Direction::Send, DnsSyscall::Write, b"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1:7878\r\n\r\n");
        s.socket(77, 9, Direction::Recv, DnsSyscall::Read, b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\nevent: progress\n");
        s.query(77, 2, "news.test", "A");
        s
    }

    #[test]
    fn open_page_loads_are_reported_as_they_open_change_and_close() {
        let s = stream();
        let mut st = Stitcher::new(StitchConfig::default());
        st.ignore_in_progress("0.0.0.0:7878".parse().unwrap());
        let mut pages = Vec::new();
        let mut reports = Vec::new();
        for (i, ev) in s.events.iter().enumerate() {
            pages.extend(st.on_event(ev));
            let r = st.progress();
            if i == 2 {
                // curl's lookup: its page load opens, named by its program.
                let t = ev.ts_ns;
                assert_eq!(
                    r,
                    vec![
                        PageProgress::Opened { client: 300, name: "curl".into(), started_ns: t },
                        PageProgress::Active { client: 300, last_ns: t, events: 1 },
                    ]
                );
            }
            reports.extend(r);
        }
        assert_eq!(st.progress(), vec![], "nothing new, nothing said");
        let opened: Vec<(u32, &str)> = reports
            .iter()
            .filter_map(|r| match r {
                PageProgress::Opened { client, name, .. } => Some((*client, name.as_str())),
                _ => None,
            })
            .collect();
        // The browser is shown only once it does more than talk to the dashboard.
        assert_eq!(opened, vec![(300, "curl"), (77, "chromium")]);
        let chromium_lookup = s.events.last().unwrap().ts_ns;
        let first_77 = reports.iter().position(|r| matches!(r, PageProgress::Opened { client: 77, .. })).unwrap();
        assert_eq!(reports[first_77 + 1], PageProgress::Active { client: 77, last_ns: chromium_lookup, events: 4 });
        let curl_events: Vec<u64> = reports
            .iter()
            .filter_map(|r| match r {
                PageProgress::Active { client: 300, events, .. } => Some(*events),
                _ => None,
            })
            .collect();
        assert_eq!(curl_events, vec![1, 2, 3, 4], "once per change");

        pages.extend(st.finish());
        assert_eq!(st.progress(), vec![PageProgress::Closed { client: 77 }, PageProgress::Closed { client: 300 }]);
        // Asking for progress changes no page load.
        assert_eq!(pages, s.run());
    }

    #[test]
    fn own_destinations() {
        let own = OwnDestinations(vec!["0.0.0.0:7878".parse().unwrap(), "10.0.0.5:4318".parse().unwrap()]);
        assert!(own.covers(Some("127.0.0.1:7878".parse().unwrap())));
        assert!(own.covers(Some("10.0.0.5:4318".parse().unwrap())));
        assert!(!own.covers(Some("10.0.0.6:4318".parse().unwrap())));
        assert!(!own.covers(Some("127.0.0.1:7879".parse().unwrap())));
        assert!(!own.covers(None));
    }
}
