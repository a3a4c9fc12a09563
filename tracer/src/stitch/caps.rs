//! Caps: what the stitcher holds in memory is bounded whatever the traffic. A client that
//! never goes quiet would otherwise keep one page load open for ever, gathering requests,
//! connections and lookups; a thousand clients would keep a thousand open.
//!
//! | cap ([`Cap`]) | default | when it bites |
//! | --- | --- | --- |
//! | `page_requests` | 1,000 | a page load holding this many requests (failed entries included), connections or lookups is closed |
//! | `page_age` | 5 min | a page load open this long (from its first activity) is closed |
//! | `open_pages` | 1,024 | beyond this many open page loads, the oldest (by start) is closed |
//! | `captured_bytes` | 64 MiB | beyond this many bytes of plaintext held by the open page loads (their requests' URLs, headers and bodies), the oldest holding any is closed, until they are within it; body bytes of unfinished exchanges past as much again are refused |
//! | `connections` | 16,384 | beyond this many connections the oldest is forgotten; the open page load holding it is closed first |
//! | `lookups` | 16,384 | beyond this many lookups the oldest is forgotten; the open page load holding it is closed first |
//!
//! Nothing a page load holds is lost: a page load closed by a cap is
//! delivered like any other, marked [`PageCut`] (its cap, and the cap's value), and its
//! client's next work opens a new page load. Exchanges still in flight on its connections
//! finish into that next one. A connection or lookup forgotten while no open page load holds
//! it is an idle keep-alive connection or an old answer: it is only counted. A page load
//! with no entry (bare lookups) is not reported, cut or not, as when it closes by quiet.
//!
//! Each bite is counted ([`CapsHit`]: `/api/health`'s `pipeline.stitcher.caps_hit` and
//! `tracer_caps_hit_total{cap=...}`), and [`Held`] says what is held now. Caps are checked
//! after each event and tick, before page loads close by quiet, in a fixed order (each page
//! load's own caps in client order, then the open pages, then the captured bytes), and the
//! holders of connections and lookups as they are forgotten, so a replay gives the same page
//! loads every time. Body bytes of exchanges still being decoded are bounded per connection
//! by `--capture-bodies`' limit and, all connections together, by a budget of their own of
//! the same size ([`InFlightBodies`]): past it, body bytes are not captured (the body is
//! marked truncated) and each body cut short is counted as a bite of `captured_bytes`.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::Stitcher;
use super::model::{Cap, PageCut, Request};
use super::page_loads::OpenPage;

/// How many times each cap bit since the start.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CapsHit {
    pub page_requests: u64,
    pub page_age: u64,
    pub open_pages: u64,
    pub connections: u64,
    pub lookups: u64,
    pub captured_bytes: u64,
}

impl CapsHit {
    pub fn get(&self, cap: Cap) -> u64 {
        match cap {
            Cap::PageRequests => self.page_requests,
            Cap::PageAge => self.page_age,
            Cap::OpenPages => self.open_pages,
            Cap::Connections => self.connections,
            Cap::Lookups => self.lookups,
            Cap::CapturedBytes => self.captured_bytes,
        }
    }

    fn add(&mut self, cap: Cap, n: u64) {
        let slot = match cap {
            Cap::PageRequests => &mut self.page_requests,
            Cap::PageAge => &mut self.page_age,
            Cap::OpenPages => &mut self.open_pages,
            Cap::Connections => &mut self.connections,
            Cap::Lookups => &mut self.lookups,
            Cap::CapturedBytes => &mut self.captured_bytes,
        };
        *slot += n;
    }
}

/// What the stitcher holds now ([`Stitcher::stats`]): the quantities the caps bound.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Held {
    pub open_pages: u64,
    /// Requests held by all open page loads.
    pub open_page_requests: u64,
    /// The largest open page load's size as `page_requests` counts it.
    pub largest_open_page: u64,
    pub connections: u64,
    pub lookups: u64,
    pub captured_bytes: u64,
    /// Body bytes of exchanges still being decoded (`--capture-bodies`).
    pub in_flight_body_bytes: u64,
}

/// Body bytes captured by the connections' HTTP decoders for exchanges not finished yet
/// (`--capture-bodies`), all connections together: each connection holds its share
/// (`ConnState::body_bytes`) and gives it back when its exchanges become requests or it is
/// dropped.
#[derive(Debug)]
pub(super) struct InFlightBodies {
    limit: u64,
    used: AtomicU64,
    /// Bodies cut short for want of room, not yet counted in `caps_hit`.
    refused: AtomicU64,
}

impl InFlightBodies {
    pub(super) fn new(limit: u64) -> Self {
        InFlightBodies { limit, used: AtomicU64::new(0), refused: AtomicU64::new(0) }
    }

    /// What may still be captured.
    pub(super) fn room(&self) -> usize {
        usize::try_from(self.limit.saturating_sub(self.used.load(Relaxed))).unwrap_or(usize::MAX)
    }

    pub(super) fn took(&self, captured: u64, refused: u64) {
        self.used.fetch_add(captured, Relaxed);
        self.refused.fetch_add(refused, Relaxed);
    }

    pub(super) fn release(&self, n: u64) {
        self.used.fetch_sub(n.min(self.used.load(Relaxed)), Relaxed);
    }

    pub(super) fn used(&self) -> u64 {
        self.used.load(Relaxed)
    }
}

/// The plaintext a request holds: its URL parts, headers and bodies.
pub(super) fn captured_bytes(r: &Request) -> u64 {
    let s = |o: &Option<String>| o.as_ref().map_or(0, String::len);
    let headers: usize = r.request_headers.iter().chain(&r.response_headers).map(|h| h.name.len() + h.value.len()).sum();
    let bodies: usize = [&r.request_body, &r.response_body].into_iter().flatten().map(|b| b.data.len()).sum();
    (s(&r.url) + s(&r.host) + s(&r.path) + s(&r.method) + s(&r.redirect_to) + s(&r.content_type) + headers + bodies) as u64
}

impl OpenPage {
    /// Its size as the `page_requests` cap counts it.
    pub(super) fn size(&self) -> usize {
        (self.requests.len() + self.failures.len()).max(self.conns.len()).max(self.lookups.len())
    }

    /// Recounts `captured_bytes` after requests moved between page loads.
    pub(super) fn recount_captured(&mut self) {
        self.captured_bytes = self.requests.iter().map(captured_bytes).sum();
    }
}

impl Stitcher {
    /// Close the page loads the caps end, as cut (see the module docs for the order).
    pub(super) fn apply_caps(&mut self) {
        if let Some(b) = &self.bodies {
            let refused = b.refused.swap(0, Relaxed);
            self.stats.caps_hit.add(Cap::CapturedBytes, refused);
        }
        let now = self.now_ns;
        let (max_requests, max_age) = (self.cfg.page_max_requests, self.cfg.page_max_age_ns);
        let own: Vec<(u32, Cap, u64)> = self
            .pages
            .iter()
            .filter_map(|(&client, p)| {
                if p.size() >= max_requests {
                    Some((client, Cap::PageRequests, max_requests as u64))
                } else if now.saturating_sub(p.started_ns) >= max_age {
                    Some((client, Cap::PageAge, max_age / 1_000_000))
                } else {
                    None
                }
            })
            .collect();
        for (client, cap, limit) in own {
            self.cut_page(client, cap, limit);
        }

        let max_open = self.cfg.max_open_pages;
        while self.pages.len() > max_open {
            let Some(oldest) = self.oldest_page(|_| true) else { break };
            self.cut_page(oldest, Cap::OpenPages, max_open as u64);
        }

        let max_bytes = self.cfg.max_captured_bytes;
        let mut held: u64 = self.pages.values().map(|p| p.captured_bytes).sum();
        while held > max_bytes {
            let Some(oldest) = self.oldest_page(|p| p.captured_bytes > 0) else { break };
            held -= self.pages[&oldest].captured_bytes;
            self.cut_page(oldest, Cap::CapturedBytes, max_bytes);
        }
    }

    /// Connections and lookups about to be forgotten for their count bound (by `evict`, right
    /// after): the page load holding one is closed first, so that it keeps them.
    pub(super) fn cut_holders_of_oldest(&mut self) {
        let max_conns = self.cfg.max_connections;
        for id in self.conns.oldest_beyond(max_conns) {
            let holder = self.conns.get(id).map(|c| self.procs.client_of(c.tgid));
            if let Some(client) = holder.filter(|client| self.pages.get(client).is_some_and(|p| p.conns.contains(&id))) {
                self.cut_page_only(client, Cap::Connections, max_conns as u64);
            }
        }
        let max_lookups = self.cfg.max_lookups;
        for id in self.dns.oldest_beyond(max_lookups) {
            let holder = self.dns.get(id).map(|l| self.procs.client_of(l.tgid));
            if let Some(client) = holder.filter(|client| self.pages.get(client).is_some_and(|p| p.lookups.contains(&id))) {
                self.cut_page_only(client, Cap::Lookups, max_lookups as u64);
            }
        }
    }

    /// The open page load that started first among those `pred` takes (client order on a tie).
    fn oldest_page(&self, pred: impl Fn(&OpenPage) -> bool) -> Option<u32> {
        self.pages.iter().filter(|(_, p)| pred(p)).min_by_key(|(c, p)| (p.started_ns, **c)).map(|(c, _)| *c)
    }

    /// A cap bit on `client`'s page load: it closes, marked as cut.
    fn cut_page(&mut self, client: u32, cap: Cap, limit: u64) {
        self.stats.caps_hit.add(cap, 1);
        self.cut_page_only(client, cap, limit);
    }

    /// Close `client`'s page load as cut by `cap`, without counting (the connection and
    /// lookup caps count what they forget, in `evict`).
    fn cut_page_only(&mut self, client: u32, cap: Cap, limit: u64) {
        if let Some(mut page) = self.close_page(client) {
            page.cut = Some(PageCut { cap, limit });
            self.finished.push(page);
        }
    }

    /// Count connections and lookups forgotten for their count bound.
    pub(super) fn count_evicted(&mut self, connections: u64, lookups: u64) {
        self.stats.caps_hit.add(Cap::Connections, connections);
        self.stats.caps_hit.add(Cap::Lookups, lookups);
    }

    /// What is held now.
    pub fn held(&self) -> Held {
        Held {
            open_pages: self.pages.len() as u64,
            open_page_requests: self.pages.values().map(|p| p.requests.len() as u64).sum(),
            largest_open_page: self.pages.values().map(|p| p.size() as u64).max().unwrap_or(0),
            connections: self.conns.len() as u64,
            lookups: self.dns.len() as u64,
            captured_bytes: self.pages.values().map(|p| p.captured_bytes).sum(),
            in_flight_body_bytes: self.bodies.as_ref().map_or(0, |b| b.used()),
        }
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::DnsSyscall;

    use super::super::tests::{SHOP, Sim, a, addr, ok};
    use super::*;
    use crate::stitch::StitchConfig;
    use crate::stitch::model::PageLoad;
    use crate::stream::events::Direction;

    const MS: u64 = 1_000_000;

    /// One request and its response on `fd`, over plain HTTP.
    fn exchange(s: &mut Sim, tgid: u32, fd: i32, path: &str) {
        let get = format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\n\r\n");
        s.socket(tgid, fd, Direction::Send, DnsSyscall::Write, get.as_bytes());
        s.socket(tgid, fd, Direction::Recv, DnsSyscall::Read, &ok("page"));
    }

    /// The stream through a stitcher with `cfg`: the page loads, the counters at the end, and
    /// the most that was held after any event.
    fn drive(s: &Sim, cfg: StitchConfig) -> (Vec<PageLoad>, CapsHit, Held) {
        let mut st = Stitcher::new(cfg);
        let mut out = Vec::new();
        let mut most = Held::default();
        for e in &s.events {
            out.extend(st.on_event(e));
            let h = st.held();
            most.open_pages = most.open_pages.max(h.open_pages);
            most.largest_open_page = most.largest_open_page.max(h.largest_open_page);
            most.connections = most.connections.max(h.connections);
            most.lookups = most.lookups.max(h.lookups);
            most.captured_bytes = most.captured_bytes.max(h.captured_bytes);
        }
        out.extend(st.finish());
        (out, st.stats().caps_hit, most)
    }

    fn cut_of(p: &PageLoad) -> Option<(Cap, u64)> {
        p.cut.map(|c| (c.cap, c.limit))
    }

    /// curl sends 25 requests back to back on one keep-alive connection: never quiet.
    fn busy_client() -> Sim {
        let mut s = Sim::new();
        s.exec(300, "/usr/bin/curl");
        s.connect(300, 5, addr(SHOP, 80), 0xa);
        for i in 0..25 {
            exchange(&mut s, 300, 5, &format!("/{i}"));
        }
        s
    }

    #[test]
    fn a_busy_page_load_is_cut_at_the_request_cap_and_the_next_work_opens_another() {
        let s = busy_client();
        let uncapped = s.run();
        assert_eq!(uncapped.len(), 1, "without the cap: one page load");
        assert_eq!(uncapped[0].requests.len(), 25);

        let (pages, hit, most) = drive(&s, StitchConfig { page_max_requests: 10, ..Default::default() });
        let sizes: Vec<usize> = pages.iter().map(|p| p.requests.len()).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        let cuts: Vec<_> = pages.iter().map(cut_of).collect();
        assert_eq!(cuts, vec![Some((Cap::PageRequests, 10)), Some((Cap::PageRequests, 10)), None]);
        // Nothing lost, nothing twice, in order.
        let paths: Vec<String> = pages.iter().flat_map(|p| &p.requests).map(|r| r.path.clone().unwrap()).collect();
        assert_eq!(paths, (0..25).map(|i| format!("/{i}")).collect::<Vec<_>>());
        // The connection's set-up belongs to its first request only; later pages still name it.
        assert!(pages[0].requests[0].new_connection);
        assert!(pages[1..].iter().all(|p| p.connections.len() == 1 && p.requests.iter().all(|r| !r.new_connection)));
        assert_eq!(hit.page_requests, 2);
        assert_eq!(most.largest_open_page, 9, "closed as it reaches the cap");
        assert!(pages[0].line().ends_with(", cut at 10 requests, connections or lookups (--page-max-requests)"), "{}", pages[0].line());
    }

    #[test]
    fn a_page_load_is_cut_at_the_age_cap() {
        // A request every 100 ms for 3 s: the 500 ms quiet window never passes.
        let mut s = Sim::new();
        s.exec(300, "/usr/bin/curl");
        s.connect(300, 5, addr(SHOP, 80), 0xa);
        for i in 0..30 {
            s.at(i * 100);
            exchange(&mut s, 300, 5, &format!("/{i}"));
        }
        assert_eq!(s.run().len(), 1, "without the cap: one page load");
        let (pages, hit, _) = drive(&s, StitchConfig { page_max_age_ns: 1_000 * MS, ..Default::default() });
        assert_eq!(pages.iter().map(|p| p.requests.len()).sum::<usize>(), 30);
        assert!(pages.len() >= 3, "{} page loads", pages.len());
        let (last, cut) = pages.split_last().unwrap();
        assert_eq!(last.cut, None, "the last one closes at the end of the stream");
        for p in cut {
            assert_eq!(cut_of(p), Some((Cap::PageAge, 1_000)));
            // Cut at the first event at or after the cap: one request's step late at most.
            assert!(p.ended_ns - p.started_ns < 1_000 * MS, "{} ms", p.total_ms());
        }
        assert_eq!(hit.page_age, cut.len() as u64);
    }

    #[test]
    fn beyond_the_open_page_cap_the_oldest_is_cut() {
        // Five clients, each with one request, all within the quiet window.
        let mut s = Sim::new();
        for c in 0..5u32 {
            s.exec(300 + c, "/usr/bin/curl");
            s.connect(300 + c, 5, addr(SHOP, 80), 0xa + u64::from(c));
            exchange(&mut s, 300 + c, 5, "/");
        }
        let (pages, hit, most) = drive(&s, StitchConfig { max_open_pages: 3, ..Default::default() });
        let by_client: Vec<(u32, Option<(Cap, u64)>)> = pages.iter().map(|p| (p.client.tgid, cut_of(p))).collect();
        assert_eq!(
            by_client,
            vec![(300, Some((Cap::OpenPages, 3))), (301, Some((Cap::OpenPages, 3))), (302, None), (303, None), (304, None)]
        );
        assert_eq!(hit.open_pages, 2);
        assert_eq!(most.open_pages, 3);
    }

    #[test]
    fn beyond_the_captured_bytes_cap_the_oldest_holder_is_cut() {
        let mut s = Sim::new();
        s.exec(300, "/usr/bin/curl");
        s.connect(300, 5, addr(SHOP, 80), 0xa);
        exchange(&mut s, 300, 5, "/first");
        s.exec(301, "/usr/bin/wget");
        s.connect(301, 6, addr(SHOP, 80), 0xb);
        for i in 0..4 {
            exchange(&mut s, 301, 6, &format!("/{i}"));
        }
        let one = super::captured_bytes(&s.run()[0].requests[0]);
        assert!(one > 20, "a request holds its URL and headers: {one}");
        // Room for three requests: the fourth overflows.
        let cap = 3 * one + one / 2;
        let (pages, hit, most) = drive(&s, StitchConfig { max_captured_bytes: cap, ..Default::default() });
        assert!(most.captured_bytes <= cap, "{} held, cap {cap}", most.captured_bytes);
        // curl's page load is the oldest: it goes first, then wget's own grows past the cap.
        assert_eq!(pages[0].client.tgid, 300);
        assert_eq!(cut_of(&pages[0]), Some((Cap::CapturedBytes, cap)));
        assert_eq!(pages.iter().map(|p| p.requests.len()).sum::<usize>(), 5);
        assert!(hit.captured_bytes >= 2, "{hit:?}");
        assert!(pages.iter().filter(|p| p.client.tgid == 301).any(|p| cut_of(p) == Some((Cap::CapturedBytes, cap))));
    }

    #[test]
    fn a_page_load_holding_a_connection_about_to_be_forgotten_is_cut_first_and_keeps_it() {
        let mut s = Sim::new();
        s.exec(300, "/usr/bin/curl");
        s.connect(300, 5, addr(SHOP, 80), 0xa);
        exchange(&mut s, 300, 5, "/");
        // Another client opens four connections: five in all, one over the cap.
        s.exec(301, "/usr/bin/wget");
        for fd in 0..4 {
            s.connect(301, 10 + fd, addr(SHOP, 80), 0x100 + fd as u64);
        }
        let cfg = StitchConfig { max_connections: 4, ..Default::default() };
        let (pages, hit, most) = drive(&s, cfg);
        let curl = pages.iter().find(|p| p.client.tgid == 300).unwrap();
        assert_eq!(cut_of(curl), Some((Cap::Connections, 4)));
        assert_eq!(curl.connections.len(), 1, "stored with its connection");
        assert_eq!(curl.requests[0].connection, Some(0));
        assert_eq!(hit.connections, 1);
        assert_eq!(most.connections, 4, "held after each event");
    }

    #[test]
    fn a_page_load_holding_a_lookup_about_to_be_forgotten_is_cut_first_and_keeps_it() {
        let mut s = Sim::new();
        s.exec(300, "/usr/bin/curl");
        s.query(300, 1, "shop.test", "A");
        s.answer(300, 1, "shop.test", "A", "NOERROR", vec![a("shop.test", SHOP)]);
        s.connect(300, 5, addr(SHOP, 80), 0xa);
        exchange(&mut s, 300, 5, "/");
        s.exec(301, "/usr/bin/wget");
        s.query(301, 2, "a.test", "A");
        s.query(301, 3, "b.test", "A");
        let (pages, hit, most) = drive(&s, StitchConfig { max_lookups: 2, ..Default::default() });
        let curl = pages.iter().find(|p| p.client.tgid == 300).unwrap();
        assert_eq!(cut_of(curl), Some((Cap::Lookups, 2)));
        assert_eq!(curl.dns.len(), 1, "stored with its lookup");
        assert_eq!(curl.requests[0].dns, Some(0));
        assert_eq!(hit.lookups, 1);
        assert_eq!(most.lookups, 2);
    }

    /// curl fetches `bodies` on one keep-alive connection, one after the other.
    fn bodies(bodies: &[usize]) -> Sim {
        let mut s = Sim::new();
        s.exec(300, "/usr/bin/curl");
        s.connect(300, 5, addr(SHOP, 80), 0xa);
        for (i, n) in bodies.iter().enumerate() {
            let get = format!("GET /{i} HTTP/1.1\r\nHost: shop.test\r\n\r\n");
            s.socket(300, 5, Direction::Send, DnsSyscall::Write, get.as_bytes());
            s.socket(300, 5, Direction::Recv, DnsSyscall::Read, &ok(&"b".repeat(*n)));
        }
        s
    }

    fn response_bodies(pages: &[PageLoad]) -> Vec<(usize, bool)> {
        pages.iter().flat_map(|p| &p.requests).filter_map(|r| r.response_body.as_ref()).map(|b| (b.data.len(), b.truncated)).collect()
    }

    #[test]
    fn bodies_still_being_decoded_beyond_the_cap_are_refused_and_counted() {
        let s = bodies(&[300]);
        let (pages, hit, _) = drive(&s, StitchConfig { body_limit: 1024, ..Default::default() });
        assert_eq!(response_bodies(&pages), vec![(300, false)], "below the cap: the whole body");
        assert_eq!(hit, CapsHit::default());

        let (pages, hit, most) = drive(&s, StitchConfig { body_limit: 1024, max_captured_bytes: 100, ..Default::default() });
        assert_eq!(response_bodies(&pages), vec![(100, true)], "the first 100 bytes, marked truncated");
        assert!(most.in_flight_body_bytes <= 100, "{most:?}");
        // One body cut short, and the page load holding more than 100 bytes cut.
        assert_eq!(hit.captured_bytes, 2, "{hit:?}");
        assert_eq!(cut_of(&pages[0]), Some((Cap::CapturedBytes, 100)));
    }

    #[test]
    fn a_body_that_became_a_request_gives_its_room_back() {
        // 300 + 300 in flight would not fit in 400; one after the other they do.
        let s = bodies(&[300, 300]);
        let mut st = Stitcher::new(StitchConfig { body_limit: 1024, max_captured_bytes: 400, ..Default::default() });
        let mut pages = Vec::new();
        for e in &s.events {
            pages.extend(st.on_event(e));
        }
        assert_eq!(st.held().in_flight_body_bytes, 0, "both bodies are requests' now");
        pages.extend(st.finish());
        assert_eq!(response_bodies(&pages), vec![(300, false), (300, false)]);
        // The open page load held both (over 400 bytes): it was cut, not the bodies.
        assert_eq!(cut_of(&pages[0]), Some((Cap::CapturedBytes, 400)));
    }

    #[test]
    fn the_default_caps_change_nothing_below_them() {
        let s = busy_client();
        let (pages, hit, _) = drive(&s, StitchConfig::default());
        assert_eq!(pages, s.run());
        assert!(pages.iter().all(|p| p.cut.is_none()));
        assert_eq!(hit, CapsHit::default());
    }
}
