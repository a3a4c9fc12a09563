//! A new connection of the load: DNS, then QUIC when the origin advertises it (the QUIC side is
//! `super::quic_setup`), else or on its failure TCP, TLS and the HTTP handshake.

use std::net::IpAddr;
use std::sync::Arc;

use super::super::address::Origin;
use super::super::conn::{self, IoStats, TimedIo};
use super::super::model::Timed;
use super::super::pool::Conn;
use super::super::probe_points::{TlsObject, Traced};
use super::{Ctx, Setup};
use crate::clock::Span;
use crate::failure::{Code, Failure, Phase};

impl Ctx {
    /// DNS, then QUIC (HTTP/3) when the origin advertises it (see `super::quic` for the rule),
    /// else or on its failure TCP, TLS and the HTTP handshake, for a new connection to `origin`.
    pub(super) async fn establish(&self, origin: &Origin) -> Result<(Conn, Setup), (Failure, Setup)> {
        let mut setup = Setup::default();
        let (addrs, https_alpn) = match origin.host.parse::<IpAddr>() {
            Ok(ip) => (vec![ip], Vec::new()),
            Err(_) => {
                let (r, span) = self.resolve(&origin.host, self.asks_https_record(origin)).await;
                setup.dns = span;
                setup.dns_id = Some(r.dns_id);
                if let Some(f) = r.failure {
                    return Err((f, setup));
                }
                (r.addrs, r.https_alpn)
            }
        };
        let mut fell_back_from = None;
        if let Some((reason, port)) = self.quic_reason(origin, &https_alpn) {
            match self.establish_quic(origin, &addrs, port, reason, &mut setup).await {
                Ok(conn) => return Ok((conn, setup)),
                Err(f) if reason == super::super::model::QuicReason::Forced => return Err((f, setup)),
                // Too slow or failed: TCP, as a browser falls back.
                Err(_) => fell_back_from = setup.connection_id,
            }
        }
        let quic_start = setup.connect.map(|s| s.start_ns);
        let id = self.rec().open_connection(origin, setup.dns_id, None, None, |c| c.fell_back_from = fell_back_from);
        setup.connection_id = Some(id);
        setup.tls = None;

        let (attempts, stream) =
            conn::tcp_connect(&addrs, origin.port, self.opts.connect_timeout).await;
        if let (Some(first), Some(last)) = (attempts.first(), attempts.last()) {
            // After a QUIC attempt, connect counts from it: it was a failed attempt before this.
            let start = quic_start.unwrap_or(first.span.start_ns).min(first.span.start_ns);
            setup.connect = Some(Span::new(start, last.span.end_ns));
        }
        let failure = attempts.last().and_then(|a| a.failure.clone());
        {
            let mut rec = self.rec();
            let c = &mut rec.connections[id];
            c.attempts = attempts;
            c.connect = setup.connect.map(Timed::from);
            if let Some(s) = &stream {
                c.remote = s.peer_addr().ok();
                c.local = s.local_addr().ok();
            }
            c.failure = failure.clone();
        }
        let Some(stream) = stream else {
            let f = failure.unwrap_or_else(|| {
                Failure::new(
                    Phase::Connect,
                    Code::NameNotResolved,
                    "no address to connect to",
                )
            });
            return Err((f, setup));
        };
        let remote = stream
            .peer_addr()
            .unwrap_or_else(|_| std::net::SocketAddr::new(addrs[0], origin.port));
        let stats = Arc::new(IoStats::default());
        self.rec().stats[id] = Some(stats.clone());
        let io = TimedIo::new(stream, stats.clone());

        let sender = if origin.is_tls() {
            // rustls has no library boundary the daemon could probe: these probe points are it.
            let obj = TlsObject::new(io.raw_fd());
            obj.handshake_started();
            match conn::tls_handshake(&self.tls, &origin.host, io, self.opts.connect_timeout).await
            {
                Ok((tls, info)) => {
                    obj.handshake_done();
                    setup.tls = Some(info.span.span());
                    let h2 = info.alpn.as_deref() == Some("h2");
                    self.rec().connections[id].tls = Some(info);
                    conn::http_handshake(Traced::new(tls, obj), h2).await
                }
                Err(info) => {
                    obj.handshake_failed();
                    setup.tls = Some(info.span.span());
                    let f = info.failure.clone().unwrap_or_else(|| {
                        Failure::new(Phase::Tls, Code::SslProtocolError, "handshake failed")
                    });
                    let mut rec = self.rec();
                    rec.connections[id].tls = Some(info);
                    rec.connections[id].failure = Some(f.clone());
                    return Err((f, setup));
                }
            }
        } else {
            conn::http_handshake(io, false).await
        };
        match sender {
            Ok(sender) => {
                self.rec().connections[id].http_version = Some(sender.version().to_owned());
                Ok((
                    Conn {
                        id,
                        sender,
                        stats,
                        remote,
                    },
                    setup,
                ))
            }
            Err(f) => {
                self.rec().connections[id].failure = Some(f.clone());
                Err((f, setup))
            }
        }
    }
}
