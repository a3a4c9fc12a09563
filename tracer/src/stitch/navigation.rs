//! Browser navigations: what starts a page load of its own, what of a navigation's page load
//! is a browser's background work, and the redirect chain.
//!
//! **A navigation** is a browser's request for a tab's document: `sec-fetch-mode: navigate`
//! on secure origins; on plain HTTP, where browsers send no fetch metadata,
//! `upgrade-insecure-requests: 1`. When its exchange is decoded, unless its URL is where a
//! request of the client's open page load redirected to, it starts a new page load: what the
//! client did before the navigation (before its lookup started, when it opened its
//! connection) is closed as a page load of its own. The navigation's connection (and its
//! lookup, when it opened the connection), the connections and lookups that started at or
//! after it, the failures of those, and the requests on those connections that started at or
//! after it move to the new one. Receives held back as possible peeks on the page load's other connections are
//! fed first (by the time a client navigates they were real: a redirect's response among them).
//!
//! **Background work.** When a page load that a navigation started closes, what another of
//! the browser's processes than those that made its HTTP requests did (Chromium's browser process
//! resolving its update hosts), and connects that failed before any SYN to an address no
//! lookup gave (Chromium's IPv6 reachability probe, a UDP connect to 2001:4860:4860::8888),
//! are split off and reported as a page load of their own.
//!
//! **Redirects** (3xx with Location, then a request for that URL) are hops of the same page
//! load. The redirect chain starts at the navigation (else the first HTTP request, else the
//! first failure, else the first opaque exchange) and follows each hop's Location to the first later request
//! for that URL. The page load's URL is the chain's first hop's, its status the last hop's.
use std::collections::HashSet;

use super::Stitcher;
use super::model::Request;
use super::page_loads::OpenPage;
use super::requests::header;

impl Stitcher {
    /// A navigation request just decoded on connection `conn` of `client`.
    pub(super) fn on_navigation(&mut self, client: u32, conn: u64, req: &Request) {
        // Responses held back as possible peeks are real by the time the client
        // navigates (a redirect's response among them).
        self.release_held_in_page(client, Some(conn));
        let follows_redirect = self.pages.get(&client).is_some_and(|p| {
            req.url.is_some() && p.requests.iter().any(|r| r.redirect_to.is_some() && r.redirect_to == req.url)
        });
        if !follows_redirect {
            let lookup = if req.new_connection { self.conns.get(conn).and_then(|c| c.dns) } else { None };
            self.split_for_navigation(client, req.started_ns, conn, lookup, req.url.clone());
        }
    }

    /// A navigation starts a page load of its own. What the client did before it (the previous
    /// page load, or a browser's background lookups and connects) is closed as its own page
    /// load; what the navigation itself started (its lookup and connection, and everything
    /// that started at or after it) moves to the new one.
    fn split_for_navigation(&mut self, client: u32, nav_start: u64, conn: u64, lookup: Option<u64>, url: Option<String>) {
        let Some(mut old) = self.pages.remove(&client) else {
            self.open_page(client, nav_start).navigation = url;
            return;
        };
        let conn_moves = |s: &Self, id: &u64| *id == conn || s.conns.get(*id).is_some_and(|c| c.connect_start_ns >= nav_start);
        let lookup_moves = |s: &Self, id: &u64| Some(*id) == lookup || s.dns.get(*id).is_some_and(|l| l.started_ns >= nav_start);
        let mut new = OpenPage::new(nav_start, old.last_activity_ns.max(nav_start), url);
        new.shown = old.shown;
        let (moved, kept): (Vec<u64>, Vec<u64>) = old.conns.iter().partition(|id| conn_moves(self, id));
        old.conns = kept;
        new.conns = moved;
        let (moved, kept): (Vec<u64>, Vec<u64>) = old.lookups.iter().partition(|id| lookup_moves(self, id));
        old.lookups = kept;
        new.lookups = moved;
        let (moved, kept): (Vec<_>, Vec<_>) = old.failures.iter().partition(|(ts, c, l)| {
            c.is_some_and(|c| new.conns.contains(&c))
                || l.is_some_and(|l| new.lookups.contains(&l))
                || (c.is_none() && l.is_none() && *ts >= nav_start)
        });
        old.failures = kept;
        new.failures = moved;
        let (moved, kept): (Vec<Request>, Vec<Request>) = std::mem::take(&mut old.requests)
            .into_iter()
            .partition(|r| r.started_ns >= nav_start && r.connection.is_some_and(|c| new.conns.contains(&(c as u64))));
        old.requests = kept;
        new.requests = moved;
        old.recount_captured();
        new.recount_captured();
        if let Some(done) = self.close_open_page(client, old) {
            self.finished.push(done);
        }
        self.pages.insert(client, new);
    }

    /// Split a browser's background work off a navigation's page load that is closing: the
    /// lookups and connects of its other processes, and connects that failed before a SYN
    /// to an address no lookup gave. Returns it as a page load of its own.
    pub(super) fn take_background(&self, open: &mut OpenPage) -> Option<OpenPage> {
        open.navigation.as_ref()?;
        let fg: HashSet<u32> = open.requests.iter().filter(|r| r.method.is_some()).map(|r| r.tgid).collect();
        if fg.is_empty() {
            return None;
        }
        let conn_bg = |id: &u64| {
            self.conns.get(*id).is_some_and(|c| {
                !fg.contains(&c.tgid) || (c.skaddr == 0 && c.dns.is_none() && c.error.is_some() && c.exchanges == 0)
            })
        };
        let lookup_bg = |id: &u64| self.dns.get(*id).is_some_and(|l| !fg.contains(&l.tgid));
        let (bg_conns, conns): (Vec<u64>, Vec<u64>) = open.conns.iter().partition(|id| conn_bg(id));
        let (bg_lookups, lookups): (Vec<u64>, Vec<u64>) = open.lookups.iter().partition(|id| lookup_bg(id));
        let (bg_failures, failures): (Vec<_>, Vec<_>) = open
            .failures
            .iter()
            .partition(|(_, c, l)| c.is_some_and(|c| bg_conns.contains(&c)) || l.is_some_and(|l| bg_lookups.contains(&l)));
        if bg_conns.is_empty() && bg_lookups.is_empty() {
            return None;
        }
        open.conns = conns;
        open.lookups = lookups;
        open.failures = failures;
        let mut background = OpenPage::new(open.started_ns, open.last_activity_ns, None);
        background.conns = bg_conns;
        background.lookups = bg_lookups;
        background.failures = bg_failures;
        Some(background)
    }
}

/// A browser's navigation request (the document of a tab, not a sub-resource): Fetch
/// metadata says so on secure origins (`sec-fetch-mode: navigate`); on plain HTTP, where
/// browsers send no fetch metadata, the navigation is the request that asks to be upgraded
/// (`upgrade-insecure-requests: 1`, sent by Chromium and Firefox on navigations only).
pub(super) fn is_navigation(headers: &[(String, String)]) -> bool {
    match header(headers, "sec-fetch-mode") {
        Some(mode) => mode == "navigate",
        None => header(headers, "upgrade-insecure-requests").is_some_and(|v| v.trim() == "1"),
    }
}

/// Absolute URL of a Location header relative to the request URL, redacted.
pub(super) fn resolve_location(base: Option<&str>, loc: &str) -> String {
    match base.and_then(|b| url::Url::parse(b).ok()).and_then(|b| b.join(loc.trim()).ok()) {
        Some(u) => crate::redact::url(u.as_str()),
        None => crate::redact::url(loc.trim()),
    }
}

/// Follow 3xx Location hops from the navigation (a browser's) or else the first request.
pub(super) fn redirect_chain(requests: &[Request], navigation: Option<&str>) -> Vec<usize> {
    let nav = navigation.and_then(|u| requests.iter().position(|r| r.method.is_some() && r.url.as_deref() == Some(u)));
    // Else the first HTTP request, else the first failure, else the first opaque (TLS-only)
    // exchange. A request before a failure: a client's failed background lookup at start
    // (netsurf's search-provider icon host, an ad-block list's host) must not title the page
    // load that the client then made, nor give it its error.
    let Some(first) = nav
        .or_else(|| requests.iter().position(|r| r.method.is_some()))
        .or_else(|| requests.iter().position(|r| r.error.is_some()))
        .or_else(|| (!requests.is_empty()).then_some(0))
    else {
        return Vec::new();
    };
    let mut chain = vec![first];
    let mut used = vec![false; requests.len()];
    used[first] = true;
    while let Some(next_url) = requests[*chain.last().expect("non-empty")].redirect_to.clone() {
        let after = requests[*chain.last().expect("non-empty")].started_ns;
        match requests
            .iter()
            .enumerate()
            .find(|(i, r)| !used[*i] && r.started_ns >= after && r.url.as_deref() == Some(next_url.as_str()))
        {
            Some((i, _)) => {
                used[i] = true;
                chain.push(i);
            }
            None => break,
        }
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::{Code, Failure, Phase};

    fn get(url: &str, status: u16, redirect_to: Option<&str>, started_ns: u64) -> Request {
        Request {
            method: Some("GET".into()),
            url: Some(url.into()),
            status: Some(status),
            redirect_to: redirect_to.map(str::to_string),
            started_ns,
            ..Default::default()
        }
    }

    /// Without a navigation the chain starts at the first HTTP request, even when a failure
    /// came first (netsurf's lookup of its search provider's host, NXDOMAIN in the lab, before
    /// its page); a page load with only failures starts at the first of them.
    #[test]
    fn the_chain_starts_at_the_first_request_not_at_an_earlier_failure() {
        let failed = Request {
            url: Some("www.google.com".into()),
            error: Some(Failure::bare(Phase::Dns, Code::NameNotResolved)),
            started_ns: 1,
            ..Default::default()
        };
        let requests = vec![
            failed.clone(),
            get("http://shop.test/", 301, Some("https://www.shop.test/"), 2),
            get("https://www.shop.test/", 200, None, 3),
        ];
        assert_eq!(redirect_chain(&requests, None), vec![1, 2]);
        assert_eq!(redirect_chain(&[failed.clone()], None), vec![0]);
        assert_eq!(redirect_chain(&[failed, Request { started_ns: 5, ..Default::default() }], None), vec![0]);
    }
}
