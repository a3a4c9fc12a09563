//! One page load: the document (and its redirects), then, with `page`, its sub-resources in
//! parallel over the shared connection pool. Every phase is stamped on the monotonic clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Empty};
use futures_util::FutureExt;
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use tokio::sync::OnceCell;
use url::Url;

use super::address::{Origin, check_fetchable, request_target, request_url};
use crate::clock::{Span, monotonic_ns, now_unix_ms, ns_to_ms, round_fetch_ms};
use super::conn::{IoStats, Sender};
use super::dns::Dns;
use super::model::{Connection, DnsLookup, Entry, Header, Initiator, PageLoad, Timed, Timings};
use crate::failure::{Code, Failure, Phase};
use super::page;
use super::pool::{Lease, Pool, Slot};
use super::tls::TlsSetup;
use super::{FetchError, FetchOptions};

mod quic_setup;
mod establish;
#[cfg(test)]
mod tests;

/// Largest document body kept for HTML parsing (the rest is counted, not kept).
const MAX_DOCUMENT_BODY: usize = 8 * 1024 * 1024;

/// A lookup's outcome, shared by every connection to that host during the load.
#[derive(Clone)]
pub(super) struct Resolved {
    dns_id: usize,
    addrs: Vec<IpAddr>,
    /// The HTTPS record's alpn (`h3` ...), when it was asked for.
    pub(super) https_alpn: Vec<String>,
    failure: Option<Failure>,
}

#[derive(Default)]
pub(super) struct Recorder {
    entries: Vec<Entry>,
    pub(super) connections: Vec<Connection>,
    pub(super) stats: Vec<Option<Arc<IoStats>>>,
    /// What the sockets of QUIC connections saw (by connection id).
    pub(super) wires: Vec<Option<Arc<super::quic::Wire>>>,
    dns: Vec<DnsLookup>,
}

impl Recorder {
    /// A new connection to `origin` (its lookup `dns_id`), filled in by `fill` before anyone
    /// sees it, with what its socket's I/O counts and, for QUIC, what the wire showed.
    /// Returns its id (its position in `connections`).
    pub(super) fn open_connection(
        &mut self,
        origin: &Origin,
        dns_id: Option<usize>,
        stats: Option<Arc<IoStats>>,
        wire: Option<Arc<super::quic::Wire>>,
        fill: impl FnOnce(&mut Connection),
    ) -> usize {
        let id = self.connections.len();
        let mut c = Connection {
            id,
            origin: origin.to_string(),
            host: origin.host.clone(),
            dns_id,
            attempts: Vec::new(),
            remote: None,
            local: None,
            connect: None,
            tls: None,
            http_version: None,
            requests: 0,
            bytes_sent: 0,
            bytes_received: 0,
            failure: None,
            quic: None,
            fell_back_from: None,
        };
        fill(&mut c);
        self.connections.push(c);
        self.stats.push(stats);
        self.wires.push(wire);
        id
    }
}

pub(crate) struct Ctx {
    pub(super) opts: FetchOptions,
    dns: Dns,
    pub(super) tls: TlsSetup,
    pool: Pool,
    rec: Mutex<Recorder>,
    host_cache: Mutex<HashMap<String, Arc<OnceCell<Resolved>>>>,
    /// HTTP/3 discovery: origins whose responses said `Alt-Svc: h3` (the port), and origins
    /// whose QUIC attempt failed in this load (not tried again).
    pub(super) alt_svc: Mutex<HashMap<Origin, u16>>,
    pub(super) quic_broken: Mutex<std::collections::HashSet<Origin>>,
}

/// Timings of a connection set-up, as seen by the request that triggered it.
#[derive(Default)]
pub(super) struct Setup {
    dns: Option<Span>,
    dns_id: Option<usize>,
    pub(super) connect: Option<Span>,
    pub(super) tls: Option<Span>,
    pub(super) connection_id: Option<usize>,
}

/// How a redirect chain ended.
struct Chain {
    final_url: Url,
    body: Option<Bytes>,
    mime: Option<String>,
    failure: Option<Failure>,
    end_ns: u64,
}

/// What went wrong after a connection was had.
struct ExchangeError {
    failure: Failure,
    /// Nothing came back and the connection was an old one: a browser retries on a new one.
    retry: bool,
}

impl Ctx {
    pub(crate) fn new(opts: FetchOptions) -> Result<Ctx, FetchError> {
        let dns = Dns::new(opts.nameservers.as_deref(), opts.dns_timeout)?;
        let tls = TlsSetup::new(opts.cacert.as_deref(), opts.insecure, opts.http1_only)?;
        let pool = Pool::new(opts.max_connections_per_host);
        Ok(Ctx {
            opts,
            dns,
            tls,
            pool,
            rec: Mutex::default(),
            host_cache: Mutex::default(),
            alt_svc: Mutex::default(),
            quic_broken: Mutex::default(),
        })
    }

    pub(super) fn rec(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.rec.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves `host` once per page load; later connections reuse the answer (the span is
    /// then `None`, as for a browser's host cache). A lookup still running is joined. With
    /// `https` the first lookup asks for the HTTPS record too.
    async fn resolve(&self, host: &str, https: bool) -> (Resolved, Option<Span>) {
        let cell = {
            let mut m = self.host_cache.lock().unwrap_or_else(|e| e.into_inner());
            m.entry(host.to_owned()).or_default().clone()
        };
        if let Some(r) = cell.get() {
            return (r.clone(), None);
        }
        let start = monotonic_ns();
        let r = cell
            .get_or_init(|| async {
                let mut l = self.dns.lookup(0, host, https).await;
                let mut rec = self.rec();
                l.id = rec.dns.len();
                let r = Resolved {
                    dns_id: l.id,
                    addrs: l.addresses.clone(),
                    https_alpn: l.https_alpn.clone(),
                    failure: l.failure.clone(),
                };
                rec.dns.push(l);
                r
            })
            .await
            .clone();
        (r, Some(Span::since(start)))
    }

    /// One request, from the pool to the body's last byte.
    async fn run_request(
        &self,
        url: &Url,
        initiator: &Initiator,
        hop: u32,
        redirected_from: Option<usize>,
        keep_body: bool,
    ) -> (Entry, Option<Bytes>) {
        let origin = Origin::of(url);
        let start = monotonic_ns();
        let mut e = Entry {
            id: 0,
            initiator: initiator.clone(),
            redirected_from,
            hop,
            method: "GET".into(),
            url: request_url(url).to_string(),
            origin: origin.to_string(),
            span: Span::new(start, start).into(),
            timings: Timings::default(),
            connection_id: None,
            connection_reused: false,
            dns_id: None,
            server_address: None,
            http_version: None,
            request_headers: Vec::new(),
            request_headers_size: None,
            status: None,
            status_text: None,
            response_headers: Vec::new(),
            response_headers_size: None,
            body_size: 0,
            mime_type: None,
            redirect_url: None,
            failure: None,
        };
        let mut body = None;
        for attempt in 0..2 {
            let slot = self.pool.acquire(&origin, self.opts.timeout).await;
            let got = monotonic_ns();
            e.timings = Timings {
                blocked: Some(Span::new(start, got).into()),
                ..Timings::default()
            };
            let mut lease = match slot {
                None => {
                    e.failure = Some(Failure::new(
                        Phase::Blocked,
                        Code::TimedOut,
                        format!(
                            "no connection to {origin} became free within {:?}",
                            self.opts.timeout
                        ),
                    ));
                    break;
                }
                Some(Slot::Reuse(lease)) => {
                    e.connection_reused = true;
                    lease
                }
                Some(Slot::Connect(permit)) => {
                    e.connection_reused = false;
                    let result = self.establish(&origin).await;
                    let (Ok((_, setup)) | Err((_, setup))) = &result;
                    e.timings.dns = setup.dns.map(Timed::from);
                    e.timings.connect = setup.connect.map(Timed::from);
                    e.timings.tls = setup.tls.map(Timed::from);
                    e.dns_id = setup.dns_id;
                    e.connection_id = setup.connection_id;
                    match result {
                        Ok((conn, _)) => permit.established(conn),
                        Err((f, _)) => {
                            e.failure = Some(f);
                            break;
                        }
                    }
                }
            };
            e.connection_id = Some(lease.conn().id);
            e.server_address = Some(lease.conn().remote);
            match self
                .exchange(&mut e, &mut lease, url, &origin, keep_body)
                .await
            {
                Ok(b) => {
                    lease.reusable = true;
                    body = b;
                    e.failure = None;
                    break;
                }
                Err(x) => {
                    e.failure = Some(x.failure);
                    if !(x.retry && e.connection_reused && attempt == 0) {
                        break;
                    }
                }
            }
        }
        let end = [
            e.timings.receive,
            e.timings.wait,
            e.timings.send,
            e.timings.tls,
            e.timings.connect,
            e.timings.dns,
        ]
        .iter()
        .flatten()
        .map(|t| t.end_ns)
        .max()
        .unwrap_or(start)
        .max(if e.failure.is_some() {
            monotonic_ns()
        } else {
            start
        });
        e.span = Span::new(start, end).into();
        (e, body)
    }

    /// Sends the request on the leased connection and reads the whole response.
    async fn exchange(
        &self,
        e: &mut Entry,
        lease: &mut Lease,
        url: &Url,
        origin: &Origin,
        keep_body: bool,
    ) -> Result<Option<Bytes>, ExchangeError> {
        let timeout = self.opts.timeout;
        let conn = lease.conn();
        let is_h2 = conn.sender.multiplexed();
        let is_h3 = matches!(conn.sender, Sender::H3(_));
        if let Sender::H1(s) = &mut conn.sender {
            // An idle HTTP/1.1 connection must be ready for the next request.
            match tokio::time::timeout(timeout, s.ready()).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    return Err(ExchangeError {
                        failure: http_failure(Phase::Send, &err, false),
                        retry: true,
                    });
                }
                Err(_) => {
                    return Err(ExchangeError {
                        failure: Failure::new(
                            Phase::Send,
                            Code::TimedOut,
                            "connection never became ready",
                        ),
                        retry: true,
                    });
                }
            }
        }
        e.http_version = Some(conn.sender.version().to_owned());
        let accept = match &e.initiator {
            Initiator::Document => {
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
            }
            Initiator::Element { tag } if tag == "img" => {
                "image/avif,image/webp,image/png,image/*;q=0.8,*/*;q=0.5"
            }
            Initiator::Element { tag } if tag == "link" => "text/css,*/*;q=0.1",
            Initiator::Element { .. } => "*/*",
        };
        let target = request_target(url);
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        let uri = if is_h2 {
            headers.push((":method".into(), "GET".into()));
            headers.push((":authority".into(), authority.clone()));
            headers.push((":scheme".into(), origin.scheme.clone()));
            headers.push((":path".into(), target.clone()));
            format!("{}://{}{}", origin.scheme, authority, target)
        } else {
            headers.push(("host".into(), authority.clone()));
            target.clone()
        };
        headers.push(("user-agent".into(), self.opts.user_agent.clone()));
        headers.push(("accept".into(), accept.into()));
        headers.extend(self.opts.extra_headers.iter().cloned());
        let mut builder = Request::builder().method(Method::GET).uri(&uri);
        for (n, v) in headers.iter().filter(|(n, _)| !n.starts_with(':')) {
            builder = builder.header(n.as_str(), v.as_str());
        }
        let req = builder
            .body(Empty::<Bytes>::new())
            .map_err(|err| ExchangeError {
                failure: Failure::new(
                    Phase::Send,
                    Code::InvalidUrl,
                    format!("building the request: {err}"),
                ),
                retry: false,
            })?;
        if !is_h2 {
            let size = format!("GET {target} HTTP/1.1\r\n").len()
                + headers
                    .iter()
                    .map(|(n, v)| n.len() + v.len() + 4)
                    .sum::<usize>()
                + 2;
            e.request_headers_size = Some(size as u64);
        }
        e.request_headers = headers
            .into_iter()
            .map(|(name, value)| Header { name, value })
            .collect();
        if is_h3 {
            let keep = if keep_body { MAX_DOCUMENT_BODY } else { 0 };
            return self.exchange_h3(e, lease, url, &uri, keep).await.map_err(|failure| ExchangeError { failure, retry: false });
        }
        let conn = lease.conn();

        let send_start = monotonic_ns();
        // hyper queues the request when send_request is called, before the future is polled.
        let response = match &mut conn.sender {
            Sender::H1(s) => s.send_request(req).boxed(),
            Sender::H2(s) => s.send_request(req).boxed(),
            Sender::H3(_) => unreachable!("HTTP/3 exchanges are made by exchange_h3"),
        };
        // A new HTTP/2 connection's first stream is this request; now others may use it.
        lease.share();
        let conn = lease.conn();
        let sent = tokio::time::timeout(timeout, response).await;
        let head_at = monotonic_ns();
        let send_end = conn
            .stats
            .first_write_since(send_start)
            .unwrap_or(send_start)
            .min(head_at);
        e.timings.send = Some(Span::new(send_start, send_end).into());
        e.timings.wait = Some(Span::new(send_end, head_at).into());
        let resp = match sent {
            Err(_) => {
                return Err(ExchangeError {
                    failure: Failure::new(
                        Phase::Wait,
                        Code::TimedOut,
                        format!("no response within {timeout:?}"),
                    ),
                    retry: false,
                });
            }
            Ok(Err(err)) => {
                let phase = if conn
                    .stats
                    .bytes_read
                    .load(std::sync::atomic::Ordering::Relaxed)
                    > 0
                {
                    Phase::Wait
                } else {
                    Phase::Send
                };
                let retry = err.is_canceled() || err.is_closed() || err.is_incomplete_message();
                return Err(ExchangeError {
                    failure: http_failure(phase, &err, is_h2),
                    retry,
                });
            }
            Ok(Ok(r)) => r,
        };

        let status = resp.status();
        e.status = Some(status.as_u16());
        e.status_text = Some(
            resp.extensions()
                .get::<hyper::ext::ReasonPhrase>()
                .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
                .or_else(|| status.canonical_reason().map(str::to_owned))
                .unwrap_or_default(),
        );
        e.response_headers = resp
            .headers()
            .iter()
            .map(|(n, v)| Header {
                name: n.as_str().to_owned(),
                value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            })
            .collect();
        if !is_h2 {
            let line = format!(
                "HTTP/1.1 {} {}\r\n",
                status.as_u16(),
                e.status_text.as_deref().unwrap_or("")
            );
            let size = line.len()
                + e.response_headers
                    .iter()
                    .map(|h| h.name.len() + h.value.len() + 4)
                    .sum::<usize>()
                + 2;
            e.response_headers_size = Some(size as u64);
        }
        self.learn_alt_svc(origin, &e.response_headers);
        e.mime_type = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if is_redirect(status) {
            e.redirect_url = resp
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| url.join(l.trim()).ok())
                .map(|u| u.to_string());
        }

        let mut body = resp.into_body();
        let mut kept: Vec<u8> = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut received: u64 = 0;
        let result = loop {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => {
                    break Err(Failure::new(
                        Phase::Receive,
                        Code::TimedOut,
                        format!("body not complete within {timeout:?}"),
                    ));
                }
                Ok(None) => break Ok(()),
                Ok(Some(Err(err))) => break Err(http_failure(Phase::Receive, &err, is_h2)),
                Ok(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        received += d.len() as u64;
                        if keep_body && kept.len() < MAX_DOCUMENT_BODY {
                            let room = MAX_DOCUMENT_BODY - kept.len();
                            kept.extend_from_slice(&d[..d.len().min(room)]);
                        }
                    }
                }
            }
        };
        e.body_size = received;
        e.timings.receive = Some(Span::since(head_at).into());
        match result {
            Ok(()) => Ok(keep_body.then(|| Bytes::from(kept))),
            Err(failure) => Err(ExchangeError {
                failure,
                retry: false,
            }),
        }
    }

    fn push_entry(&self, e: Entry) -> usize {
        let mut rec = self.rec();
        rec.entries.push(e);
        rec.entries.len() - 1
    }

    /// A request and the redirects that follow from it, each hop its own entry.
    async fn follow(&self, first: Url, initiator: Initiator, keep_body: bool) -> Chain {
        let mut url = first;
        let mut prev: Option<usize> = None;
        let mut hop: u32 = 0;
        loop {
            let (entry, body) = self
                .run_request(&url, &initiator, hop, prev, keep_body)
                .await;
            let end_ns = entry.span.end_ns;
            let failure = entry.failure.clone();
            let status = entry.status.and_then(|s| StatusCode::from_u16(s).ok());
            let location = entry.redirect_url.clone();
            let mime = entry.mime_type.clone();
            let id = self.push_entry(entry);
            let done = |failure: Option<Failure>, body: Option<Bytes>| Chain {
                final_url: url.clone(),
                body,
                mime: mime.clone(),
                failure,
                end_ns,
            };
            if failure.is_some() {
                return done(failure, None);
            }
            let redirect = status.is_some_and(is_redirect) && self.opts.follow_redirects;
            if !redirect {
                return done(None, body);
            }
            let Some(next) = location else {
                // A redirect status without a usable Location is shown as it is.
                return done(None, body);
            };
            let next = match Url::parse(&next) {
                Ok(u) if check_fetchable(&u).is_ok() => u,
                _ => {
                    return done(
                        Some(Failure::new(
                            Phase::Redirect,
                            Code::UnsafeRedirect,
                            // The raw Location may carry credentials (user-info, a token in
                            // its query): the reason is stored and shown, so redacted.
                            format!("redirect to {} cannot be followed", crate::redact::url(&next)),
                        )),
                        None,
                    );
                }
            };
            if hop >= self.opts.max_redirects {
                return done(
                    Some(Failure::new(
                        Phase::Redirect,
                        Code::TooManyRedirects,
                        format!("more than {} redirects", self.opts.max_redirects),
                    )),
                    None,
                );
            }
            prev = Some(id);
            hop += 1;
            url = next;
        }
    }

    /// Orders the records by time and fills in what is known only at the end.
    fn finish(
        &self,
        input: &str,
        url: &Url,
        doc: &Chain,
        start: u64,
        started_at: i64,
        skipped: usize,
    ) -> PageLoad {
        let mut rec = std::mem::take(&mut *self.rec());
        let mut order: Vec<usize> = (0..rec.entries.len()).collect();
        order.sort_by_key(|&i| (rec.entries[i].span.start_ns, i));
        let mut new_id = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_id[old] = new;
        }
        let mut entries: Vec<Entry> = order.iter().map(|&i| rec.entries[i].clone()).collect();
        for (i, e) in entries.iter_mut().enumerate() {
            e.id = i;
            e.redirected_from = e.redirected_from.map(|p| new_id[p]);
        }
        for c in rec.connections.iter_mut() {
            c.requests = entries
                .iter()
                .filter(|e| e.connection_id == Some(c.id) && e.status.is_some())
                .count() as u32;
            if let Some(s) = &rec.stats[c.id] {
                c.bytes_sent = s.bytes_written.load(std::sync::atomic::Ordering::Relaxed);
                c.bytes_received = s.bytes_read.load(std::sync::atomic::Ordering::Relaxed);
            }
            if let (Some(q), Some(w)) = (c.quic.as_mut(), &rec.wires[c.id]) {
                w.complete(q);
            }
        }
        let end = entries
            .iter()
            .map(|e| e.span.end_ns)
            .max()
            .unwrap_or(start)
            .max(doc.end_ns);
        let span: Timed = Span::new(start, end).into();
        let mut load = PageLoad {
            input: input.to_owned(),
            url: url.to_string(),
            final_url: doc.final_url.to_string(),
            page: self.opts.page,
            started_at_unix_ms: started_at,
            total_ms: span.ms,
            span,
            document_ms: doc
                .failure
                .is_none()
                .then(|| round_fetch_ms(ns_to_ms(doc.end_ns.saturating_sub(start)))),
            entries,
            connections: rec.connections,
            dns: rec.dns,
            subresources_skipped: skipped,
            error: doc.failure.clone(),
            tracer_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        redact_load(&mut load);
        load
    }
}

/// What a load records is kept like what the daemon traces ([`crate::redact`]): URLs without
/// user-info and query values, header values only on the safe list. It is printed, stored as
/// a baseline and served by the dashboard, and baselines are matched to traced page loads by
/// their (equally redacted) URL.
fn redact_load(load: &mut PageLoad) {
    use crate::redact;
    load.input = redact::url(&load.input);
    load.url = redact::url(&load.url);
    load.final_url = redact::url(&load.final_url);
    for e in &mut load.entries {
        e.url = redact::url(&e.url);
        e.redirect_url = e.redirect_url.as_deref().map(redact::url);
        for h in e.request_headers.iter_mut().chain(e.response_headers.iter_mut()) {
            h.value = redact::header_value(&h.name, &h.value);
        }
        e.mime_type = e.mime_type.as_deref().map(|v| redact::header_value("content-type", v));
    }
}

fn is_redirect(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The first value of header `name` (lower-case) in a response's header list.
fn header_value(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

/// The browser's error for a failed HTTP exchange.
fn http_failure(phase: Phase, e: &hyper::Error, h2: bool) -> Failure {
    let io = std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>());
    let code = if e.is_parse() || e.is_parse_status() {
        Code::InvalidHttpResponse
    } else if e.is_timeout() {
        Code::TimedOut
    } else if io.is_some_and(|i| i.kind() == std::io::ErrorKind::ConnectionReset) {
        Code::ConnectionReset
    } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        if phase == Phase::Receive {
            Code::ContentLengthMismatch
        } else {
            Code::EmptyResponse
        }
    } else if h2 {
        Code::Http2ProtocolError
    } else {
        Code::Failed
    };
    let mut reason = e.to_string();
    let mut src = std::error::Error::source(e);
    for _ in 0..4 {
        let Some(s) = src else { break };
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        src = s.source();
    }
    Failure::new(phase, code, reason)
}

/// Loads `input` (see [`super::fetch`]).
pub(crate) async fn load(input: &str, opts: &FetchOptions) -> Result<PageLoad, FetchError> {
    let url = super::address::parse_address(input)?;
    let ctx = Arc::new(Ctx::new(opts.clone())?);
    let started_at = now_unix_ms();
    let start = monotonic_ns();
    let doc = ctx
        .follow(url.clone(), Initiator::Document, opts.page)
        .await;
    let mut skipped = 0;
    if opts.page
        && doc.failure.is_none()
        && page::is_html(doc.mime.as_deref())
        && let Some(body) = &doc.body
    {
        let (subs, more) = page::subresources(
            &String::from_utf8_lossy(body),
            &doc.final_url,
            opts.max_subresources,
        );
        skipped = more;
        let mut set = tokio::task::JoinSet::new();
        for s in subs {
            let ctx = ctx.clone();
            set.spawn(async move {
                ctx.follow(s.url, Initiator::Element { tag: s.tag }, false)
                    .await;
            });
        }
        while let Some(r) = set.join_next().await {
            if let Err(e) = r {
                tracing::warn!("fetch: a sub-resource task failed: {e}");
            }
        }
    }
    Ok(ctx.finish(input, &url, &doc, start, started_at, skipped))
}
