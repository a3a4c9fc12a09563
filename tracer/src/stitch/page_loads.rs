//! Page loads: opening one per client, closing it when the client has been quiet, and
//! assembling what it holds into a [`PageLoad`].
//!
//! **Opening.** Any network activity of a client (a DNS query or answer, a connect, a TLS
//! handshake call, plaintext or TLS records on a connection), and any failure, opens a page
//! load when the client has none open; everything the client does meanwhile belongs to it:
//! its new lookups and connections, its failures, and the requests of its connections. A
//! navigation starts a new one ([`super::navigation`]).
//!
//! **Closing.** A page load closes when its client has been quiet for `quiet` (default
//! 500 ms, measured from its last activity to the latest event's or tick's time) and nothing
//! still holds it open: no unanswered lookup (until `dns_timeout`, 5 s, after its last
//! query), no connect in progress (until `connect_timeout`, 3 s), no request waiting for
//! its response on an open connection (until `response_timeout`, 30 s, of the connection's
//! silence; such an exchange is then reported as it stands), and no redirect the client has
//! not followed yet (until `redirect_hold`, 5 s, after its response). Receives held back as possible
//! peeks are fed as real ones first. A cap can close it earlier, while its client is still
//! busy (`caps.rs`: 1,000 requests, 5 minutes, ...): then it is marked as cut, and the
//! client's next activity opens the next one.
//!
//! **What it holds.** A browser's background work is split off first
//! ([`super::navigation`]). Then lookups that never got an answer and TLS handshakes that
//! never finished on connections that carried nothing are failures too. The page load's
//! entries are its requests, one opaque request per connection whose TLS was seen only on
//! the wire (in a process whose TLS library calls are not seen), and one failed entry per
//! failure that no request on the same connection covers, sorted by start; connections and
//! lookups are indexed as the page load's own vectors. A page load with no entry (a bare
//! lookup) is not reported. Its URL and status come from the redirect chain; its `error` is
//! the last hop's, else, when no entry has an HTTP status, the first error among its entries.
use std::collections::HashMap;

use super::Stitcher;
use super::model::{PageLoad, Request};
use super::navigation::redirect_chain;
use super::progress::Reported;

/// A page load being collected for one client.
pub(super) struct OpenPage {
    pub(super) started_ns: u64,
    pub(super) last_activity_ns: u64,
    pub(super) requests: Vec<Request>,
    /// Global connection / lookup ids used, in first-use order.
    pub(super) conns: Vec<u64>,
    pub(super) lookups: Vec<u64>,
    /// Failures without a request (failed lookup, refused connect): (time, connection, lookup).
    pub(super) failures: Vec<(u64, Option<u64>, Option<u64>)>,
    /// URL of the browser navigation that started this page load (its redirect chain starts there).
    pub(super) navigation: Option<String>,
    /// Network events of its client so far (for the live view).
    pub(super) events: u64,
    /// Whether it is a page load in progress for the live view: it saw activity other than
    /// on connections to the daemon's own destinations ([`super::progress`]).
    pub(super) shown: bool,
    /// What [`Stitcher::progress`] last reported of it; None: not reported (yet).
    pub(super) reported: Option<Reported>,
    /// Plaintext bytes its requests hold (the `captured_bytes` cap, `caps.rs`).
    pub(super) captured_bytes: u64,
}

impl OpenPage {
    pub(super) fn new(started_ns: u64, last_activity_ns: u64, navigation: Option<String>) -> Self {
        Self {
            started_ns,
            last_activity_ns,
            requests: Vec::new(),
            conns: Vec::new(),
            lookups: Vec::new(),
            failures: Vec::new(),
            navigation,
            events: 0,
            shown: false,
            reported: None,
            captured_bytes: 0,
        }
    }
}

impl OpenPage {
    /// Whether its latest request is a redirect whose response ended less than `hold` before
    /// `now`: the client has not followed it yet (the follow would be a later request).
    pub(super) fn awaits_redirect(&self, now: u64, hold: u64) -> bool {
        let Some(last) = self.requests.iter().max_by_key(|r| r.started_ns) else { return false };
        last.redirect_to.is_some() && now.saturating_sub(last.ended_ns) < hold
    }
}

impl Stitcher {
    /// Network activity of `tgid` at `ts` (on connection `conn`; None: a lookup): its
    /// client's page load is open and not quiet.
    pub(super) fn activity(&mut self, tgid: u32, ts: u64, conn: Option<u64>) {
        let client = self.procs.client_of(tgid);
        let shows = self.shows(conn);
        let page = self.open_page(client, ts);
        page.last_activity_ns = page.last_activity_ns.max(ts);
        page.events += 1;
        page.shown |= shows;
    }

    pub(super) fn open_page(&mut self, client: u32, ts: u64) -> &mut OpenPage {
        self.pages.entry(client).or_insert_with(|| OpenPage::new(ts, ts, None))
    }

    /// Puts a new connection (an id never attached before) into its client's open page.
    pub(super) fn attach_new_connection(&mut self, tgid: u32, conn: u64, lookup: Option<u64>) {
        let client = self.procs.client_of(tgid);
        let ts = self.conns.by_id[&conn].connect_start_ns;
        let page = self.open_page(client, ts);
        // No search of page.conns: the id is new (a connect storm made that search quadratic).
        page.conns.push(conn);
        if let Some(l) = lookup
            && !page.lookups.contains(&l)
        {
            page.lookups.push(l);
        }
    }

    pub(super) fn record_failure(&mut self, tgid: u32, ts: u64, conn: Option<u64>, lookup: Option<u64>) {
        let client = self.procs.client_of(tgid);
        let shows = self.shows(conn);
        let page = self.open_page(client, ts);
        page.shown |= shows;
        // The same failure can be seen twice (a refused connect's RST may be reported before
        // and after its connect record): once is enough.
        if !page.failures.iter().any(|(_, c, l)| *c == conn && *l == lookup) {
            page.failures.push((ts, conn, lookup));
        }
    }

    /// A request decoded on connection `conn` joins its client's open page load.
    pub(super) fn add_request(&mut self, client: u32, conn: u64, req: Request) {
        let shows = self.shows(Some(conn));
        let page = self.open_page(client, req.started_ns);
        page.shown |= shows;
        if !page.conns.contains(&conn) {
            page.conns.push(conn);
        }
        page.started_ns = page.started_ns.min(req.started_ns);
        page.last_activity_ns = page.last_activity_ns.max(req.ended_ns);
        page.captured_bytes += super::caps::captured_bytes(&req);
        page.requests.push(req);
        self.stats.requests += 1;
    }

    /// Feed the receives held back as possible peeks on `client`'s page load's connections
    /// (but `except`) as real ones.
    pub(super) fn release_held_in_page(&mut self, client: u32, except: Option<u64>) {
        let held: Vec<u64> = self
            .pages
            .get(&client)
            .map(|p| {
                p.conns.iter().copied().filter(|c| Some(*c) != except && self.conns.get(*c).is_some_and(|c| c.held.is_some())).collect()
            })
            .unwrap_or_default();
        for id in held {
            self.release_held(id);
        }
    }

    /// Close the page loads whose client has been quiet at `now`; with those closed while
    /// handling the event (a navigation's split), first.
    pub(super) fn close_idle(&mut self, now: u64) -> Vec<PageLoad> {
        let mut out = std::mem::take(&mut self.finished);
        let cfg = &self.cfg;
        let idle: Vec<u32> = self
            .pages
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.last_activity_ns) >= cfg.quiet_ns)
            .filter(|(_, p)| {
                // Unanswered lookups and connects in progress keep the page load open (bounded).
                let waiting_dns = p.lookups.iter().filter_map(|l| self.dns.get(*l)).any(|l| l.awaits_answer(now, cfg.dns_timeout_ns));
                let connecting = p.conns.iter().filter_map(|c| self.conns.get(*c)).any(|c| c.connecting(now, cfg.connect_timeout_ns));
                let awaiting_response = p
                    .conns
                    .iter()
                    .filter_map(|c| self.conns.get(*c))
                    .any(|c| c.owes_response() && now.saturating_sub(c.last_ns) < cfg.response_timeout_ns);
                let following_redirect = p.awaits_redirect(now, cfg.redirect_hold_ns);
                !waiting_dns && !connecting && !awaiting_response && !following_redirect
            })
            .map(|(c, _)| *c)
            .collect();
        for client in idle {
            // Responses still owed on open connections after `response_timeout` of silence
            // (a server that stalls mid-body) are reported as they stand, not dropped.
            let stalled: Vec<u64> = self.pages.get(&client).map_or_else(Vec::new, |p| {
                p.conns.iter().copied().filter(|id| self.conns.get(*id).is_some_and(|c| c.owes_response())).collect()
            });
            for id in stalled {
                if let Some(c) = self.conns.get_mut(id) {
                    c.response_timed_out = true;
                }
                self.drain_exchanges(id, true);
            }
            if let Some(p) = self.close_page(client) {
                out.push(p);
            }
        }
        out
    }

    pub(super) fn close_page(&mut self, client: u32) -> Option<PageLoad> {
        if !self.pages.contains_key(&client) {
            return None;
        }
        // Receives held back as possible peeks are real ones by now.
        self.release_held_in_page(client, None);
        let open = self.pages.remove(&client)?;
        self.close_open_page(client, open)
    }

    pub(super) fn close_open_page(&mut self, client: u32, mut open: OpenPage) -> Option<PageLoad> {
        if open.reported.is_some() {
            self.closed.push(client);
        }
        // A browser's background work during a navigation is not part of the page: it is
        // reported on its own.
        if let Some(background) = self.take_background(&mut open)
            && let Some(p) = self.close_open_page(client, background)
        {
            self.finished.push(p);
        }
        self.add_silent_failures(&mut open);
        let fallback_comm = open.requests.first().map(|r| r.comm.clone()).unwrap_or_default();
        let client_info = self.procs.client_info(client, &fallback_comm);

        // Index connections and lookups as the page load's own vectors.
        let mut conn_index: HashMap<u64, usize> = HashMap::new();
        let mut connections = Vec::new();
        for id in &open.conns {
            if let Some(c) = self.conns.get(*id) {
                conn_index.insert(*id, connections.len());
                connections.push(c.model());
            }
        }
        let mut lookup_index: HashMap<u64, usize> = HashMap::new();
        let mut dns = Vec::new();
        for id in &open.lookups {
            if let Some(l) = self.dns.get(*id) {
                lookup_index.insert(*id, dns.len());
                dns.push(l.model());
            }
        }
        let mut requests = open.requests;
        // Connections whose TLS was seen only on the wire carry exchanges nobody decoded: one
        // opaque entry each (who, where, dns/tcp/ssl, and the records' timing).
        for id in &open.conns {
            if let Some(c) = self.conns.get(*id) {
                // Only where no TLS library of the process is probed: elsewhere an idle
                // (speculative) connection's records are no request.
                if c.exchanges == 0 && c.wire.as_ref().is_some_and(|w| w.exchanged()) && !self.tls.library_seen(c.tgid) {
                    requests.push(self.opaque_request(c));
                }
                // QUIC: one opaque HTTP/3 entry per connection that got through its handshake.
                if c.exchanges == 0
                    && let Some(r) = self.quic_request(c)
                {
                    requests.push(r);
                }
            }
        }
        for r in &mut requests {
            r.connection = r.connection.and_then(|c| conn_index.get(&(c as u64)).copied());
            r.dns = r.dns.and_then(|l| lookup_index.get(&(l as u64)).copied());
        }
        for (i, c) in connections.iter_mut().enumerate() {
            c.requests = requests.iter().filter(|r| r.connection == Some(i)).count() as u32;
        }
        super::quic::link_fallbacks(&mut connections);
        // Failures that no request covers become entries of their own.
        let mut failed_entries = Vec::new();
        for (ts, conn, lookup) in &open.failures {
            let ci = conn.and_then(|c| conn_index.get(&c).copied());
            let li = lookup.and_then(|l| lookup_index.get(&l).copied());
            if ci.is_some_and(|ci| requests.iter().any(|r| r.connection == Some(ci))) {
                continue;
            }
            failed_entries.push(self.failure_request(*ts, ci, li, &connections, &dns, conn.and_then(|c| self.conns.get(c))));
        }
        requests.extend(failed_entries);
        requests.sort_by_key(|r| r.started_ns);
        // Connections are final now: a failure on one whose set-up never finished is the set-up's.
        for r in &mut requests {
            if let Some(phase) = super::failures::settle_phase(r, &connections, &dns)
                && let Some(f) = &mut r.error
            {
                f.phase = phase;
            }
        }

        if requests.is_empty() {
            return None;
        }
        let redirect_chain = redirect_chain(&requests, open.navigation.as_deref());
        let last_hop = redirect_chain.last().map(|i| &requests[*i]);
        let started_ns = requests.iter().map(|r| r.started_ns).min().unwrap_or(open.started_ns);
        let ended_ns = requests.iter().map(|r| r.ended_ns).max().unwrap_or(open.last_activity_ns).max(started_ns);
        let first = redirect_chain.first().map(|i| &requests[*i]);
        let error = last_hop.and_then(|r| r.error.clone()).or_else(|| {
            if requests.iter().all(|r| r.status.is_none()) { requests.iter().find_map(|r| r.error.clone()) } else { None }
        });
        self.stats.page_loads += 1;
        Some(PageLoad {
            client: client_info,
            url: first.and_then(|r| r.url.clone()),
            started_ns,
            ended_ns,
            status: last_hop.and_then(|r| r.status),
            error,
            requests,
            connections,
            dns,
            redirect_chain,
            cut: None,
        })
    }

    /// Failures seen only as something that never happened: lookups that never got an answer,
    /// and connections whose TLS handshake began and never finished (a certificate the client
    /// rejected, a protocol error) and that carried nothing.
    fn add_silent_failures(&mut self, open: &mut OpenPage) {
        for id in &open.lookups {
            if let Some(started_ns) = self.dns.time_out(*id) {
                // Not a silently missing row: the lookup is a failed entry of its own.
                if !open.failures.iter().any(|(_, _, f)| *f == Some(*id)) {
                    open.failures.push((started_ns, None, Some(*id)));
                }
            }
        }
        for id in &open.conns {
            if let Some(c) = self.conns.get(*id)
                && c.exchanges == 0
                && super::failures::tls_failure(c).is_some()
                && !open.failures.iter().any(|(_, f, _)| *f == Some(*id))
            {
                open.failures.push((c.connect_start_ns, Some(*id), None));
            }
        }
        self.quic_silent_failures(&open.conns, &mut open.failures);
    }
}
