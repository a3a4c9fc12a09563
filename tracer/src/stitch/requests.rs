//! Exchanges -> requests: each HTTP exchange the decoder finished becomes a request with HAR
//! timings, in its client's open page load.
//!
//! A request's URL is its scheme (the exchange's, else https when the connection is TLS),
//! its host (the exchange's authority, else the connection's lookup's name, else the
//! destination address), the destination port unless it is the default (443 with TLS, else
//! 80) or the host names one, and its path with query values redacted. A 3xx response's Location, resolved against that URL and
//! redacted, is where it redirects to.
//!
//! The connection's set-up belongs to the request that opened it, as in browsers' dev tools:
//! the first exchange on an HTTP/1 connection, the connection's first stream on HTTP/2 (it
//! may end after later streams). That request starts at its lookup's start (else the
//! connect's) and pays the set-up phases:
//! - dns: the lookup's start to the end of name resolution (see [`super::dns_index`]);
//!   blocked: from there to the connect;
//! - tcp: the SYN (else the connect call) to ESTABLISHED;
//! - ssl (TLS only): ESTABLISHED (else the handshake's first call) to the handshake's end
//!   (else the end seen on the wire, else the first plaintext): as in HAR, it includes the
//!   client's TLS set-up before its first handshake call;
//! - connect: tcp + ssl.
//!
//! Every request has send (request start to end), wait (request end to the response's first
//! byte) and receive (to the response's end). Later requests on the connection start at
//! their request and have -1 for the set-up phases. How an exchange that did not complete
//! is named is in [`super::failures`].
//!
//! Besides decoded exchanges, a page load's entries are one opaque request per connection
//! whose TLS was seen only on the wire (in a process with no probed TLS library), and one
//! failed entry per failure no request covers ([`super::page_loads`]).
use super::connections::ConnState;
use super::failures;
use super::model::{Connection, DnsLookup, Request, Timings, ms};
use super::navigation::{is_navigation, resolve_location};
use super::{Stitcher, dns_index::LookupState};
use crate::decode::http::HttpExchange;
use crate::clock::round_stored_ms;

impl Stitcher {
    /// Turn connection `id`'s finished exchanges into requests (`flush`: its unfinished ones
    /// too, as they stand: the connection is over).
    pub(super) fn drain_exchanges(&mut self, id: u64, flush: bool) {
        let Some(c) = self.conns.get_mut(id) else { return };
        if flush {
            c.feed_held();
        }
        let exchanges = c.http.take_exchanges(flush);
        if exchanges.is_empty() {
            return;
        }
        let bodies: usize = exchanges.iter().flat_map(|x| [&x.request_body, &x.response_body]).flatten().map(|b| b.data.len()).sum();
        c.bodies_taken(bodies as u64);
        let tgid = c.tgid;
        for x in exchanges {
            let req = self.make_request(id, &x);
            let client = self.procs.client_of(tgid);
            if is_navigation(&x.request_headers) {
                self.on_navigation(client, id, &req);
            }
            self.add_request(client, id, req);
        }
    }

    fn make_request(&mut self, id: u64, x: &HttpExchange) -> Request {
        let c = self.conns.get_mut(id).expect("connection");
        // The connection's set-up (DNS, TCP, TLS) belongs to the request that opened it, as
        // in browsers' dev tools: HTTP/1 exchanges end in order, but an HTTP/2 connection's
        // first stream may end after later ones.
        let first = !c.setup_attributed
            && match (x.stream_id, c.http.first_request_stream()) {
                (Some(stream), Some(opener)) => stream == opener,
                _ => true,
            };
        c.setup_attributed |= first;
        c.exchanges += 1;
        // The host the request names picks the connection's lookup when several gave its
        // address (Firefox resolves www.shop.test and then its CNAME target edge.cdn.test).
        if first && let Some(name) = x.authority.as_deref().map(host_of) {
            let c = self.conns.get(id).expect("connection");
            if let Some(better) = c.dst.and_then(|d| self.dns.lookup_named(&self.procs, c.tgid, &name, d.ip(), c.connect_start_ns)) {
                self.conns.get_mut(id).expect("connection").dns = Some(better);
            }
        }
        let c = self.conns.get(id).expect("connection");
        let dns_end = c.dns.and_then(|l| self.dns.resolution_end(&self.procs, l, c.connect_start_ns));
        let tls = c.tls_lib.is_some_and(|l| l != tracer_common::TlsLib::None) || c.wire.is_some();
        let lookup = c.dns.and_then(|l| self.dns.get(l));
        let host = x
            .authority
            .clone()
            .or_else(|| lookup.map(|l| l.name.clone()))
            .or_else(|| c.dst.map(|d| d.ip().to_string()));
        let path = x.path.as_deref().map(crate::redact::path);
        let url = host.as_deref().map(|h| request_url(x, c, tls, h, path.as_deref()));
        let redirect_to = if x.status.is_some_and(|s| (300..400).contains(&s)) {
            header(&x.response_headers, "location").map(|loc| resolve_location(url.as_deref(), loc))
        } else {
            None
        };
        let mut t = if first { setup_timings(c, lookup, dns_end, tls) } else { Timings::default() };
        t.send = ms(x.request_end_ns.saturating_sub(x.request_start_ns));
        if let Some(rs) = x.response_start_ns {
            t.wait = ms(rs.saturating_sub(x.request_end_ns));
            if let Some(re) = x.response_end_ns {
                t.receive = ms(re.saturating_sub(rs));
            }
        }
        let started_ns = if first {
            lookup.map(|l| l.started_ns).unwrap_or(c.connect_start_ns).min(x.request_start_ns)
        } else {
            x.request_start_ns
        };
        let ended_ns = x.response_end_ns.or(x.response_start_ns).unwrap_or(x.request_end_ns);
        Request {
            // Global ids while the page load is open; indices once it closes.
            connection: Some(id as usize),
            dns: c.dns.filter(|_| first).map(|l| l as usize),
            tgid: c.tgid,
            pid: c.pid,
            comm: c.comm.clone(),
            method: x.method.clone(),
            url,
            host,
            path,
            protocol: Some(match x.protocol {
                crate::decode::http::Protocol::Http1 => "HTTP/1.1".to_string(),
                crate::decode::http::Protocol::Http2 => "HTTP/2".to_string(),
                crate::decode::http::Protocol::Http3 => "HTTP/3".to_string(),
            }),
            stream_id: x.stream_id,
            status: x.status,
            redirect_to,
            content_type: header(&x.response_headers, "content-type").map(|v| crate::redact::header_value("content-type", v)),
            request_headers: crate::redact::headers(x.request_headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
            response_headers: crate::redact::headers(x.response_headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
            request_bytes: x.request_header_bytes + x.request_body_bytes,
            response_bytes: x.response_header_bytes + x.response_body_bytes,
            response_header_bytes: x.response_header_bytes,
            started_ns,
            ended_ns,
            timings: t,
            new_connection: first,
            error: failures::exchange_error(x, c, self.cfg.response_timeout_ns),
            complete: x.complete,
            request_body: x.request_body.clone(),
            response_body: x.response_body.clone(),
        }
    }

    /// What an opaque entry of connection `c` (TLS or QUIC seen only on the wire: no HTTP)
    /// knows up to its connection's set-up, which starts at `setup_start` (the connect; a QUIC
    /// connection's first Initial): its host (the SNI, else the looked-up name, else the
    /// address), its URL (the port when not 443), its dns and blocked phases, and its start.
    pub(super) fn opaque_origin(&self, c: &ConnState, sni: Option<String>, setup_start: u64) -> OpaqueOrigin {
        let lookup = c.dns.and_then(|l| self.dns.get(l));
        let host = sni.or_else(|| lookup.map(|l| l.name.clone())).or_else(|| c.dst.map(|d| d.ip().to_string()));
        let port = c.dst.map(|d| d.port()).filter(|p| *p != 443);
        let url = host.as_ref().map(|h| format!("https://{h}{}/", port.map(|p| format!(":{p}")).unwrap_or_default()));
        let mut timings = Timings::default();
        if let Some(l) = lookup
            && let Some(end) = self.dns.resolution_end(&self.procs, l.id, c.connect_start_ns)
        {
            timings.dns = ms(end.saturating_sub(l.started_ns));
            timings.blocked = ms(setup_start.saturating_sub(end));
        }
        let started_ns = lookup.map(|l| l.started_ns).unwrap_or(setup_start).min(setup_start);
        OpaqueOrigin { host, url, timings, started_ns }
    }

    /// An exchange over TLS seen only as records on the wire: no method, path or status.
    pub(super) fn opaque_request(&self, c: &ConnState) -> Request {
        let w = c.wire.as_ref().expect("wire connection");
        let OpaqueOrigin { host, url, timings: mut t, started_ns } = self.opaque_origin(c, w.sni.clone(), c.connect_start_ns);
        if let Some(est) = c.established_ns {
            t.tcp = ms(est.saturating_sub(c.syn_sent_ns.unwrap_or(c.connect_start_ns)));
            if let Some(end) = w.handshake_end_ns {
                t.ssl = ms(end.saturating_sub(est));
            }
            t.connect = round_stored_ms(t.tcp + t.ssl.max(0.0));
        }
        let send_start = w.app_send_ns.unwrap_or(c.connect_start_ns);
        let send_end = w.app_send_end_ns.unwrap_or(send_start);
        t.send = ms(send_end.saturating_sub(send_start));
        if let Some(rs) = w.app_recv_start_ns {
            t.wait = ms(rs.saturating_sub(send_end));
            if let Some(re) = w.app_recv_end_ns {
                t.receive = ms(re.saturating_sub(rs));
            }
        }
        let ended_ns = w.app_recv_end_ns.unwrap_or(send_end).max(started_ns);
        Request {
            connection: Some(c.id as usize),
            dns: c.dns.map(|l| l as usize),
            tgid: c.tgid,
            pid: c.pid,
            comm: c.comm.clone(),
            url,
            host,
            request_bytes: w.app_bytes_sent,
            response_bytes: w.app_bytes_received,
            started_ns,
            ended_ns,
            timings: t,
            new_connection: true,
            complete: w.app_recv_end_ns.is_some(),
            // Nothing of the HTTP exchange is known.
            ..Request::default()
        }
    }

    /// The entry of a failure no request covers: a failed lookup, a failed connect, a failed
    /// TLS handshake. `conn` and `lookup` index the page load's `connections` and `dns`;
    /// `raw` is the connection's state.
    pub(super) fn failure_request(
        &self,
        ts: u64,
        conn: Option<usize>,
        lookup: Option<usize>,
        connections: &[Connection],
        dns: &[DnsLookup],
        raw: Option<&ConnState>,
    ) -> Request {
        let c = conn.map(|i| &connections[i]);
        let l = lookup.map(|i| &dns[i]).or_else(|| {
            raw.and_then(|r| r.dns).and_then(|id| self.dns.get(id)).and_then(|x| dns.iter().find(|d| d.name == x.name))
        });
        // The name the client asked the server for (SNI) before the name it looked up: Firefox
        // reaches www.shop.test by its HTTPS record's target, so its lookup is edge.cdn.test.
        let sni = c.and_then(|c| c.tls.as_ref()).and_then(|t| t.sni.clone());
        let host = sni.or_else(|| l.map(|l| l.name.clone())).or_else(|| c.and_then(|c| c.dst.clone()));
        let error = failures::failed_entry_error(c, l, raw);
        // The scheme is known only from the port of a connect; a failed lookup has none, so
        // its URL is just the host.
        let port = c.and_then(|c| c.dst.as_deref()).and_then(|d| d.parse::<std::net::SocketAddr>().ok()).map(|d| d.port());
        let scheme = match port {
            Some(443) => Some("https"),
            Some(80) => Some("http"),
            _ => None,
        };
        let mut t = Timings::default();
        let started = l.map(|l| l.started_ns).or(c.map(|c| c.connect_start_ns)).unwrap_or(ts);
        if let Some(l) = l
            && let Some(e) = l.ended_ns
        {
            t.dns = ms(e.saturating_sub(l.started_ns));
        }
        if let Some(c) = c
            && let Some(closed) = c.closed_ns
        {
            t.connect = ms(closed.saturating_sub(c.connect_start_ns));
            // A QUIC attempt's connect is its handshake (HAR ssl within connect), no TCP.
            if c.quic.is_some() {
                t.ssl = t.connect;
            } else {
                t.tcp = t.connect;
            }
        }
        let ended = c.and_then(|c| c.closed_ns).or(l.and_then(|l| l.ended_ns)).unwrap_or(ts).max(started);
        Request {
            connection: conn,
            dns: lookup.or_else(|| l.and_then(|l| dns.iter().position(|d| d == l))),
            tgid: raw.map(|r| r.tgid).or(l.map(|l| l.tgid)).unwrap_or(0),
            pid: raw.map(|r| r.pid).unwrap_or(0),
            comm: raw.map(|r| r.comm.clone()).or(l.map(|l| l.comm.clone())).unwrap_or_default(),
            url: host.as_ref().map(|h| match scheme {
                Some(scheme) => format!("{scheme}://{h}/"),
                None => h.clone(),
            }),
            host,
            started_ns: started,
            ended_ns: ended,
            timings: t,
            // A failed attempt is a first attempt: it paid for its lookup and connect.
            new_connection: true,
            error: Some(error),
            // No HTTP exchange happened.
            ..Request::default()
        }
    }
}

/// `scheme://host[:port]/path` of an exchange on connection `c` whose host is `host`.
fn request_url(x: &HttpExchange, c: &ConnState, tls: bool, host: &str, path: Option<&str>) -> String {
    let scheme = x.scheme.clone().unwrap_or_else(|| if tls { "https".into() } else { "http".into() });
    let default_port = if tls { 443 } else { 80 };
    let port = c.dst.map(|d| d.port()).filter(|p| *p != default_port && !host.contains(':'));
    format!("{scheme}://{host}{}{}", port.map(|p| format!(":{p}")).unwrap_or_default(), path.unwrap_or("/"))
}

/// The set-up phases (dns, blocked, tcp, ssl, connect) of the request that opened connection
/// `c`; `dns_end` is when name resolution ended for it.
fn setup_timings(c: &ConnState, lookup: Option<&LookupState>, dns_end: Option<u64>, tls: bool) -> Timings {
    let mut t = Timings::default();
    let established = c.established_ns;
    let tcp_start = c.syn_sent_ns.unwrap_or(c.connect_start_ns);
    if let Some(l) = lookup
        && let Some(end) = dns_end.or(l.ended_ns)
    {
        t.dns = ms(end.saturating_sub(l.started_ns));
        t.blocked = ms(c.connect_start_ns.saturating_sub(end));
    }
    if let Some(est) = established {
        t.tcp = ms(est.saturating_sub(tcp_start));
    }
    if tls {
        // As in HAR and browsers' dev tools, TLS time runs from TCP connected to the
        // handshake's end: it includes the client's TLS set-up before its first
        // handshake call (the library-level span stays in the TLS session).
        let start = established.or(c.hs_start_ns);
        let end = c.hs_end_ns.or(c.wire.as_ref().and_then(|w| w.handshake_end_ns)).or(c.first_data_ns);
        if let (Some(s), Some(e)) = (start, end) {
            t.ssl = ms(e.saturating_sub(s));
        }
    }
    if t.tcp >= 0.0 {
        t.connect = round_stored_ms(t.tcp + t.ssl.max(0.0));
    }
    t
}

/// The host of an authority (`host:port`, `[v6]:port`), lower-case.
fn host_of(authority: &str) -> String {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        a.rsplit_once(':').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())).map_or(a, |(h, _)| h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The value of header `name` (case-insensitive), the first if repeated.
pub(super) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// See [`Stitcher::opaque_origin`].
pub(super) struct OpaqueOrigin {
    pub(super) host: Option<String>,
    pub(super) url: Option<String>,
    pub(super) timings: Timings,
    pub(super) started_ns: u64,
}
