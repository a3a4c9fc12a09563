//! The DNS lookup index: queries and answers grouped into lookups, and which lookup gave a
//! connection its address.
//!
//! **Grouping.** A process's queries for one name are one lookup:
//! - a query whose id and type a lookup of that name started less than 2 s ago still waits
//!   for is a retransmission, and changes nothing;
//! - a resolver's retry of a question still unanswered (a new id, seconds later: glibc and
//!   hickory wait 5 s) joins the unanswered lookup that asked that type, within 30 s of its
//!   start;
//! - another type of the name joins a lookup started less than 2 s ago that is unanswered or
//!   got its last answer at most 100 ms ago (types asked together, A + AAAA + HTTPS, or one
//!   after the other: Firefox's HTTPS query, then getaddrinfo's A + AAAA); the lookup reopens;
//! - any other query starts a new lookup, which goes into its client's open page load.
//!
//! Answers join by (process, DNS id). An answer settles its question's type (the retries of
//! it too); the lookup ends when no question waits. Its addresses, CNAME chain and smallest
//! TTL are collected from all answers; a NOERROR wins over a sibling question's NXDOMAIN or
//! SERVFAIL (the AAAA of a name with IPv4 only). A lookup of one address family alone (A or
//! AAAA) that gets NOERROR without an address, within 5 s of a lookup of the name by the same
//! process that gave an address, did not fail (GLib's resolver asks the families in separate
//! threads, sometimes seconds apart). A lookup that ends without a NOERROR answer
//! holding an address failed (see [`super::failures`]) and is a failure of its page load, unless it asked only
//! for HTTPS records. An ICMP error from a DNS server fails the newest unanswered lookup
//! sent to it; a lookup still unanswered when its page load closes timed out.
//!
//! **A connection's lookup** is the latest lookup by the same client (any of its processes)
//! whose answer held the connected address before the connect started: the time that counts
//! is the last answer received by then, once an answer with an address came (a client may
//! connect as soon as the A answer is in, before the HTTPS answer: Firefox). When the
//! connection's first request names its host, the lookup of that name that gave the address
//! is preferred (Firefox resolves www.shop.test, then its CNAME target edge.cdn.test itself),
//! and the client's lookups of the CNAME targets, started after it and answered before the
//! connect, extend the dns phase ([`DnsIndex::resolution_end`]).
//!
//! Only the newest [`LOOKUPS_PER_NAME`] lookups of each process and name are matched against
//! (by queries, connects and requests), so matching costs the same with 16,384 lookups kept
//! as with ten; older ones stay in their page loads. Lookups are forgotten oldest first
//! beyond `max_lookups`, and `max_idle` after they started.
use std::collections::{HashMap, VecDeque};

/// How far apart a family-only lookup (AAAA alone) and its name's resolution with the other
/// family may be for the first not to count as failed (GLib re-asked AAAA 0.8 s later).
const FAMILY_SIBLING_NS: u64 = 5_000_000_000;
use std::net::{IpAddr, SocketAddr};

use super::model::DnsLookup;
use super::process_tree::ProcessTree;
use super::{IdCounter, Stitcher, arrivals::Arrivals, failures};
use crate::decode::dns::{DnsMessage, DnsQuestion};
use crate::stream::events::Event;

/// A query for a name and type still unanswered, at most this long after the first, is a
/// retry of it.
const DNS_RETRY_WINDOW_NS: u64 = 30_000_000_000;

/// Lookups of one name by one process that are still matched against (see `DnsIndex::by_name`).
pub(super) const LOOKUPS_PER_NAME: usize = 4;

/// A query for another type of a name answered at most this long ago continues that lookup.
const SEQUENTIAL_LOOKUP_GAP_NS: u64 = 100_000_000;

/// Only a lookup started at most this long ago takes a retransmission or another type.
const RECENT_LOOKUP_NS: u64 = 2_000_000_000;

pub(super) struct LookupState {
    pub(super) id: u64,
    pub(super) tgid: u32,
    pub(super) comm: String,
    pub(super) name: String,
    pub(super) qtypes: Vec<String>,
    /// Queries sent and not answered: (id, type).
    pub(super) pending: Vec<(u16, String)>,
    pub(super) started_ns: u64,
    /// The last query sent (a retry waits for its answer anew).
    pub(super) asked_ns: u64,
    /// Every DNS id asked under this lookup (at most 16), to forget them with it.
    asked_ids: Vec<u16>,
    pub(super) ended_ns: Option<u64>,
    /// When each answer arrived (a client may connect once the A answer is in, before the
    /// HTTPS answer: Firefox).
    answered_ns: Vec<u64>,
    /// When the first answer with an address arrived.
    address_ns: Option<u64>,
    rcode: Option<String>,
    cname_chain: Vec<String>,
    addresses: Vec<IpAddr>,
    min_ttl: Option<u32>,
    server: Option<SocketAddr>,
    pub(super) error: Option<crate::failure::Failure>,
}

impl LookupState {
    /// When the lookup had given its address(es) as far as a connect at `before` is
    /// concerned: the last answer received by then, once an answer with an address came.
    fn known_by(&self, before: u64) -> Option<u64> {
        if self.address_ns.is_none_or(|a| a > before) {
            return None;
        }
        self.answered_ns.iter().copied().filter(|t| *t <= before).max()
    }

    /// Whether the lookup still holds its page load open at `now`: a question waits for its
    /// answer, asked less than `timeout` ago.
    pub(super) fn awaits_answer(&self, now: u64, timeout: u64) -> bool {
        self.ended_ns.is_none() && now.saturating_sub(self.asked_ns) < timeout
    }

    /// The lookup as a page load shows it.
    pub(super) fn model(&self) -> DnsLookup {
        DnsLookup {
            tgid: self.tgid,
            comm: self.comm.clone(),
            name: self.name.clone(),
            qtypes: self.qtypes.clone(),
            started_ns: self.started_ns,
            ended_ns: self.ended_ns,
            rcode: self.rcode.clone(),
            cname_chain: self.cname_chain.clone(),
            addresses: self.addresses.iter().map(|a| a.to_string()).collect(),
            min_ttl: self.min_ttl,
            server: self.server.map(|s| s.to_string()),
            error: self.error.clone(),
        }
    }
}

/// What a query did to the index.
pub(super) enum Asked {
    /// A retransmission or a resolver's retry of a lookup's question.
    Again,
    /// Another type of a lookup's name: it joined that lookup.
    AnotherType,
    /// A new lookup, with this id.
    New(u64),
}

#[derive(Default)]
pub(super) struct DnsIndex {
    pub(super) by_id: HashMap<u64, LookupState>,
    /// Lookup ids, oldest first: the order they are forgotten in.
    order: Arrivals,
    /// The newest lookups by process and name (at most LOOKUPS_PER_NAME each, oldest
    /// first): the only ones a new query, a connect or a request is matched against, so
    /// that matching costs the same with 16,384 lookups kept as with ten. Older ones stay
    /// in their page loads.
    pub(super) by_name: HashMap<u32, HashMap<String, VecDeque<u64>>>,
    /// (tgid, DNS id) -> lookup
    pub(super) by_dns_id: HashMap<(u32, u16), u64>,
}

impl DnsIndex {
    pub(super) fn get(&self, id: u64) -> Option<&LookupState> {
        self.by_id.get(&id)
    }

    /// A query sent by `ev`'s process.
    pub(super) fn query(&mut self, ev: &Event, dns_id: u16, q: &DnsQuestion, peer: Option<SocketAddr>, ids: &mut IdCounter) -> Asked {
        // A retry (same id) changes nothing. Siblings asked together (A + AAAA + HTTPS, not
        // yet all answered) share one lookup; the same type asked again is a new lookup.
        let now = ev.ts_ns;
        let same_name: Vec<u64> = self.indexed(ev.tgid, &q.name);
        let recent = |l: &LookupState| now.saturating_sub(l.started_ns) < RECENT_LOOKUP_NS;
        if self.lookups_in(&same_name).into_iter().filter(|l| recent(l)).any(|l| l.pending.iter().any(|(id, t)| *id == dns_id && *t == q.qtype)) {
            return Asked::Again;
        }
        // A resolver's retry of a question still unanswered (a new id, seconds later: glibc
        // and hickory wait 5 s) is the same lookup, as a browser shows it.
        let retried = self.lookups_in(&same_name).into_iter().find(|l| {
            l.ended_ns.is_none() && l.qtypes.contains(&q.qtype) && now.saturating_sub(l.started_ns) < DNS_RETRY_WINDOW_NS
        });
        if let Some(id) = retried.map(|l| l.id) {
            let l = self.by_id.get_mut(&id).expect("indexed lookup");
            if l.pending.len() < 16 {
                l.pending.push((dns_id, q.qtype.clone()));
            }
            l.asked_ns = now;
            self.remember_dns_id(ev.tgid, dns_id, id);
            return Asked::Again;
        }
        // Types asked one after the other are one lookup too (Firefox asks for the HTTPS
        // record, then getaddrinfo asks for A + AAAA): a lookup answered moments ago is
        // reopened for the new type.
        let sibling = self
            .lookups_in(&same_name)
            .into_iter()
            .filter(|l| recent(l))
            .filter(|l| {
                l.ended_ns.is_none_or(|e| now.saturating_sub(e) <= SEQUENTIAL_LOOKUP_GAP_NS) && !l.qtypes.contains(&q.qtype)
            })
            .max_by_key(|l| l.started_ns)
            .map(|l| l.id)
            .and_then(|id| self.by_id.get_mut(&id));
        let (id, asked) = match sibling {
            Some(l) => {
                l.qtypes.push(q.qtype.clone());
                l.pending.push((dns_id, q.qtype.clone()));
                l.ended_ns = None;
                (l.id, Asked::AnotherType)
            }
            None => {
                let id = ids.take();
                self.by_id.insert(
                    id,
                    LookupState {
                        id,
                        tgid: ev.tgid,
                        comm: ev.comm.clone(),
                        name: q.name.clone(),
                        qtypes: vec![q.qtype.clone()],
                        pending: vec![(dns_id, q.qtype.clone())],
                        started_ns: ev.ts_ns,
                        asked_ns: ev.ts_ns,
                        asked_ids: Vec::new(),
                        ended_ns: None,
                        answered_ns: Vec::new(),
                        address_ns: None,
                        rcode: None,
                        cname_chain: Vec::new(),
                        addresses: Vec::new(),
                        min_ttl: None,
                        server: peer,
                        error: None,
                    },
                );
                self.order.push(id);
                let names = self.by_name.entry(ev.tgid).or_default();
                let ids = names.entry(q.name.clone()).or_default();
                ids.push_back(id);
                if ids.len() > LOOKUPS_PER_NAME {
                    ids.pop_front();
                }
                (id, Asked::New(id))
            }
        };
        self.remember_dns_id(ev.tgid, dns_id, id);
        asked
    }

    fn remember_dns_id(&mut self, tgid: u32, dns_id: u16, lookup: u64) {
        self.by_dns_id.insert((tgid, dns_id), lookup);
        if let Some(l) = self.by_id.get_mut(&lookup)
            && l.asked_ids.len() < 16
            && !l.asked_ids.contains(&dns_id)
        {
            l.asked_ids.push(dns_id);
        }
    }

    /// The lookup an answer received by `tgid` belongs to.
    fn answered(&self, tgid: u32, dns_id: u16) -> Option<u64> {
        self.by_dns_id.get(&(tgid, dns_id)).copied()
    }

    /// An answer to lookup `id`. Returns the lookup's process when the answer ended it with a
    /// failure its page load shows.
    fn answer(&mut self, id: u64, ts: u64, m: &DnsMessage) -> Option<u32> {
        let l = self.by_id.get_mut(&id)?;
        // One answer settles its question, and the retries of it (a resolver may use one
        // id for A and AAAA: the question's type tells them apart).
        match m.questions.first() {
            Some(q) => l.pending.retain(|(_, t)| *t != q.qtype),
            None => {
                if let Some(i) = l.pending.iter().position(|(id, _)| *id == m.id) {
                    l.pending.remove(i);
                }
            }
        }
        if l.pending.is_empty() {
            l.ended_ns = Some(ts);
        }
        if l.answered_ns.len() < 64 {
            l.answered_ns.push(ts);
        }
        let chain = m.cname_chain();
        if chain.len() > l.cname_chain.len() {
            l.cname_chain = chain;
        }
        for a in m.addresses() {
            l.address_ns.get_or_insert(ts);
            if !l.addresses.contains(&a) {
                l.addresses.push(a);
            }
        }
        if let Some(ttl) = m.answers.iter().map(|a| a.ttl).min() {
            l.min_ttl = Some(l.min_ttl.map_or(ttl, |t| t.min(ttl)));
        }
        // NOERROR wins over NXDOMAIN/SERVFAIL from a sibling query (AAAA of a v4-only name).
        if l.rcode.as_deref() != Some("NOERROR") {
            l.rcode = Some(m.rcode.clone());
        }
        if l.pending.is_empty() {
            l.error = failures::lookup_error(l.rcode.as_deref(), !l.addresses.is_empty());
            // One address family asked on its own, answered NOERROR without an address, for a
            // name the process has just resolved with the other family: the name resolved.
            // GLib's resolver (WebKitGTK) asks A and AAAA in two threads, and at times AAAA
            // again on its own 0.8 s later: that lookup failed nothing.
            let one_family = !l.qtypes.is_empty() && (l.qtypes.iter().all(|t| t == "AAAA") || l.qtypes.iter().all(|t| t == "A"));
            let (tgid, name, started, rcode_ok) = (l.tgid, l.name.clone(), l.started_ns, l.rcode.as_deref() == Some("NOERROR"));
            if l.error.is_some() && one_family && rcode_ok && self.resolved_before(tgid, &name, id, started) {
                if let Some(l) = self.by_id.get_mut(&id) {
                    l.error = None;
                }
                return None;
            }
            let l = self.by_id.get(&id)?;
            if l.error.is_some() && !l.qtypes.iter().all(|t| t == "HTTPS") {
                return Some(l.tgid);
            }
        }
        None
    }

    /// Whether another lookup of `name` by `tgid` (not `id`) gave an address, within
    /// [`FAMILY_SIBLING_NS`] before `started`.
    fn resolved_before(&self, tgid: u32, name: &str, id: u64, started: u64) -> bool {
        self.indexed(tgid, name).iter().filter(|&&other| other != id).filter_map(|o| self.by_id.get(o)).any(|o| {
            !o.addresses.is_empty() && o.address_ns.is_some_and(|a| a <= started + FAMILY_SIBLING_NS && started <= a + FAMILY_SIBLING_NS)
        })
    }

    /// An ICMP error from DNS server `server`: the newest unanswered lookup sent to it failed.
    /// Returns (its process, its id).
    fn server_unreachable(&mut self, server: Option<SocketAddr>, error: &str, ts: u64) -> Option<(u32, u64)> {
        let l = self.by_id.values_mut().filter(|l| l.ended_ns.is_none() && l.server == server).max_by_key(|l| l.started_ns)?;
        l.error = Some(failures::dns_server_unreachable(server, error));
        l.ended_ns = Some(ts);
        Some((l.tgid, l.id))
    }

    /// A lookup that never got an answer when its page load closes failed. Returns when it
    /// started, if it did fail so.
    pub(super) fn time_out(&mut self, id: u64) -> Option<u64> {
        let l = self.by_id.get_mut(&id)?;
        if l.ended_ns.is_some() || l.pending.is_empty() {
            return None;
        }
        l.error.get_or_insert_with(|| failures::dns_timed_out(l.server));
        Some(l.started_ns)
    }

    fn lookups_in(&self, ids: &[u64]) -> Vec<&LookupState> {
        ids.iter().filter_map(|id| self.by_id.get(id)).collect()
    }

    /// The indexed lookups of `name` by `tgid`, oldest first.
    fn indexed(&self, tgid: u32, name: &str) -> Vec<u64> {
        self.by_name.get(&tgid).and_then(|m| m.get(name)).map(|v| v.iter().copied().collect()).unwrap_or_default()
    }

    /// The indexed lookups of `tgid`'s client: its processes' lookups a connect or a request
    /// of `tgid` may have used.
    fn client_lookups<'a>(&'a self, procs: &'a ProcessTree, tgid: u32) -> impl Iterator<Item = &'a LookupState> + 'a {
        let client = procs.client_of(tgid);
        self.by_name
            .iter()
            .filter(move |(t, _)| **t == tgid || procs.client_of(**t) == client)
            .flat_map(|(_, names)| names.values().flatten())
            .filter_map(|id| self.by_id.get(id))
    }

    /// The latest lookup by the same client whose answer holds `ip` and ended by `before`.
    pub(super) fn lookup_for(&self, procs: &ProcessTree, tgid: u32, ip: IpAddr, before: u64) -> Option<u64> {
        self.client_lookups(procs, tgid)
            .filter(|l| l.addresses.contains(&ip) && l.known_by(before).is_some())
            .max_by_key(|l| l.known_by(before))
            .map(|l| l.id)
    }

    /// The latest lookup of `name` by the same client whose answer holds `ip` and that
    /// ended by `before`.
    pub(super) fn lookup_named(&self, procs: &ProcessTree, tgid: u32, name: &str, ip: IpAddr, before: u64) -> Option<u64> {
        self.client_lookups(procs, tgid)
            .filter(|l| l.name.eq_ignore_ascii_case(name) && l.addresses.contains(&ip) && l.known_by(before).is_some())
            .max_by_key(|l| l.known_by(before))
            .map(|l| l.id)
    }

    /// When name resolution ended for a connection that started at `before`: the lookup's
    /// end, or later when the client then looked up the lookup's CNAME targets itself.
    pub(super) fn resolution_end(&self, procs: &ProcessTree, lookup: u64, before: u64) -> Option<u64> {
        let l = self.by_id.get(&lookup)?;
        let mut end = l.known_by(before)?;
        if l.cname_chain.len() > 1 {
            for t in self.client_lookups(procs, l.tgid) {
                if t.id != lookup
                    && l.cname_chain[1..].iter().any(|n| n.eq_ignore_ascii_case(&t.name))
                    && t.started_ns >= l.started_ns
                    && let Some(e) = t.known_by(before)
                {
                    end = end.max(e);
                }
            }
        }
        Some(end)
    }

    /// The ids that [`Self::evict`] would forget for the count bound `max`, oldest first.
    pub(super) fn oldest_beyond(&self, max: usize) -> Vec<u64> {
        self.order.beyond(&self.by_id, max)
    }

    /// How many lookups are held.
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Forgets the oldest beyond `max` and those started more than `max_idle` before `now`. Returns how
    /// many were forgotten, and how many of them for the count bound (a cap that bit).
    pub(super) fn evict(&mut self, now: u64, max: usize, max_idle: u64) -> (u64, u64) {
        let gone = self.order.evict(&mut self.by_id, now, max, max_idle, |l| l.started_ns);
        for (id, l) in &gone.items {
            for dns_id in &l.asked_ids {
                if self.by_dns_id.get(&(l.tgid, *dns_id)) == Some(id) {
                    self.by_dns_id.remove(&(l.tgid, *dns_id));
                }
            }
            if let Some(names) = self.by_name.get_mut(&l.tgid) {
                if let Some(ids) = names.get_mut(&l.name) {
                    ids.retain(|x| x != id);
                    if ids.is_empty() {
                        names.remove(&l.name);
                    }
                }
                if names.is_empty() {
                    self.by_name.remove(&l.tgid);
                }
            }
        }
        (gone.items.len() as u64, gone.by_cap)
    }
}

impl Stitcher {
    pub(super) fn on_dns_query(&mut self, ev: &Event, m: &DnsMessage, peer: Option<SocketAddr>) {
        if m.is_response {
            return;
        }
        let Some(q) = m.questions.first() else { return };
        self.activity(ev.tgid, ev.ts_ns, None);
        match self.dns.query(ev, m.id, q, peer, &mut self.ids) {
            Asked::Again => {}
            Asked::AnotherType => self.evict(),
            Asked::New(id) => {
                let client = self.procs.client_of(ev.tgid);
                self.open_page(client, ev.ts_ns).lookups.push(id);
                self.evict();
            }
        }
    }

    pub(super) fn on_dns_answer(&mut self, ev: &Event, m: &DnsMessage) {
        if !m.is_response {
            return;
        }
        let Some(id) = self.dns.answered(ev.tgid, m.id) else { return };
        self.activity(ev.tgid, ev.ts_ns, None);
        if let Some(tgid) = self.dns.answer(id, ev.ts_ns, m) {
            self.record_failure(tgid, ev.ts_ns, None, Some(id));
        }
    }

    /// An ICMP error from a DNS server (the kernel's error report on a connected UDP socket).
    pub(super) fn dns_server_unreachable(&mut self, server: Option<SocketAddr>, error: &str, ts: u64) {
        if let Some((tgid, id)) = self.dns.server_unreachable(server, error, ts) {
            self.record_failure(tgid, ts, None, Some(id));
        }
    }
}
