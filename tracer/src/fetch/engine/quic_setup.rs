//! The engine's HTTP/3 side: which origins get QUIC (the rule is in `super::super::quic`),
//! setting up a QUIC connection as one of the load's connections, an exchange over it, and
//! what responses teach (`Alt-Svc`).

use std::net::{IpAddr, SocketAddr};

use url::Url;

use super::super::address::Origin;
use super::super::model::{Entry, Header, QuicReason};
use crate::failure::{Code, Failure};
use super::super::pool::{Conn, Lease};
use super::super::quic::{self, Http3Mode, RACE_DELAY};
use super::super::conn::Sender;
use super::{Ctx, Setup, is_redirect};

impl Ctx {
    /// Whether a lookup for `origin` asks for the HTTPS record: https on port 443 when HTTP/3
    /// may be discovered (Chromium asks it for the default port's name).
    pub(super) fn asks_https_record(&self, origin: &Origin) -> bool {
        origin.is_tls() && origin.port == 443 && self.http3_mode() == Http3Mode::Auto
    }

    fn http3_mode(&self) -> Http3Mode {
        if self.opts.http1_only { Http3Mode::Off } else { self.opts.http3 }
    }

    /// Whether (and why) a new connection to `origin` tries QUIC, and on which UDP port.
    pub(super) fn quic_reason(&self, origin: &Origin, https_alpn: &[String]) -> Option<(QuicReason, u16)> {
        if !origin.is_tls() {
            return None;
        }
        match self.http3_mode() {
            Http3Mode::Off => None,
            Http3Mode::Force => Some((QuicReason::Forced, origin.port)),
            Http3Mode::Auto => {
                if self.quic_broken.lock().unwrap_or_else(|e| e.into_inner()).contains(origin) {
                    return None;
                }
                if let Some(port) = self.alt_svc.lock().unwrap_or_else(|e| e.into_inner()).get(origin) {
                    return Some((QuicReason::AltSvc, *port));
                }
                (origin.port == 443 && https_alpn.iter().any(|a| a == "h3")).then_some((QuicReason::HttpsRecord, 443))
            }
        }
    }

    /// A QUIC connection to the origin's first address, recorded as a connection of the load
    /// (also when it fails: then it is the attempt a TCP connection fell back from). In the
    /// default mode it has [`RACE_DELAY`] to finish its handshake.
    pub(super) async fn establish_quic(
        &self,
        origin: &Origin,
        addrs: &[IpAddr],
        port: u16,
        reason: QuicReason,
        setup: &mut Setup,
    ) -> Result<Conn, Failure> {
        let addr = SocketAddr::new(addrs[0], port);
        let timeout = if reason == QuicReason::Forced { self.opts.connect_timeout } else { RACE_DELAY };
        let out = quic::connect(&self.tls, &origin.host, addr, reason, timeout).await;
        setup.tls = Some(out.info.span.span());
        // The attempt's span, for a TCP connection that follows to count from.
        setup.connect = Some(out.info.span.span());
        let id = self.rec().open_connection(origin, setup.dns_id, Some(out.wire.stats.clone()), Some(out.wire.clone()), |c| {
            c.remote = Some(addr);
            c.local = out.local;
            c.tls = Some(out.tls);
            c.http_version = out.result.is_ok().then(|| "HTTP/3".to_owned());
            c.failure = out.result.as_ref().err().cloned();
            c.quic = Some(out.info);
        });
        setup.connection_id = Some(id);
        match out.result {
            Ok(sender) => {
                // QUIC's handshake is the connect and the TLS phase at once (as in Chrome's HAR).
                setup.connect = None;
                Ok(Conn { id, sender: Sender::H3(sender), stats: out.wire.stats.clone(), remote: addr })
            }
            Err(f) => {
                self.quic_broken.lock().unwrap_or_else(|e| e.into_inner()).insert(origin.clone());
                Err(f)
            }
        }
    }

    /// One request over HTTP/3 on the leased connection; fills the entry as the TCP path does.
    pub(super) async fn exchange_h3(
        &self,
        e: &mut Entry,
        lease: &mut Lease,
        url: &Url,
        uri: &str,
        keep: usize,
    ) -> Result<Option<hyper::body::Bytes>, Failure> {
        let mut builder = hyper::Request::get(uri);
        for h in e.request_headers.iter().filter(|h| !h.name.starts_with(':')) {
            builder = builder.header(h.name.as_str(), h.value.as_str());
        }
        let req = builder.body(()).map_err(|err| Failure::new(super::Phase::Send, Code::InvalidUrl, format!("building the request: {err}")))?;
        let conn = lease.conn();
        let (Sender::H3(sender), stats) = (&mut conn.sender, conn.stats.clone()) else {
            unreachable!("an HTTP/3 lease")
        };
        let mut sender = sender.clone();
        // The new connection's first stream is on its way: others may use the connection.
        let r = quic::exchange(&mut sender, &stats, req, keep, self.opts.timeout, || lease.share()).await;
        let r = match r {
            Ok(r) => r,
            Err((_, f)) => return Err(f),
        };
        e.timings.send = Some(r.send);
        e.timings.wait = Some(r.wait);
        e.timings.receive = Some(r.receive);
        e.status = Some(r.status);
        e.status_text = hyper::StatusCode::from_u16(r.status).ok().and_then(|s| s.canonical_reason()).map(str::to_owned).or(Some(String::new()));
        e.response_headers = r.headers.iter().map(|(name, value)| Header { name: name.clone(), value: value.clone() }).collect();
        e.mime_type = super::header_value(&r.headers, "content-type");
        if hyper::StatusCode::from_u16(r.status).is_ok_and(is_redirect) {
            e.redirect_url = super::header_value(&r.headers, "location").and_then(|l| url.join(l.trim()).ok()).map(|u| u.to_string());
        }
        e.body_size = r.body_bytes;
        r.body?;
        Ok((keep > 0).then(|| hyper::body::Bytes::from(r.kept)))
    }

    /// Remembers an `Alt-Svc: h3` for the rest of the load (only over TCP: over QUIC it says
    /// what is already in use).
    pub(super) fn learn_alt_svc(&self, origin: &Origin, headers: &[Header]) {
        if !origin.is_tls() {
            return;
        }
        for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("alt-svc")) {
            let mut m = self.alt_svc.lock().unwrap_or_else(|e| e.into_inner());
            match quic::alt_svc_h3_port(&h.value, &origin.host) {
                Some(port) => {
                    m.insert(origin.clone(), port);
                }
                None if h.value.trim().eq_ignore_ascii_case("clear") => {
                    m.remove(origin);
                }
                None => {}
            }
        }
    }
}
