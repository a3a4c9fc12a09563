//! HTTP/3 for the fetcher: quinn (QUIC, with the fetcher's rustls trust and session store) and
//! h3, over a *connected* UDP socket per connection, as Chromium opens one, so that an ICMP
//! port unreachable comes back as ECONNREFUSED and ends the attempt at once. The socket is
//! wrapped: its datagrams are counted, their writes stamped (the end of the send phase, as
//! for TCP), and decoded with [`crate::decode::quic`] (the daemon's own decoder): the cipher
//! (quinn does not expose it), Retry, the ClientHello's packets and the handshake as the wire
//! shows it.
//!
//! **When the fetcher uses HTTP/3** (modelled on Chromium):
//! - `--http3` ([`Http3Mode::Force`]): every https origin over QUIC, never TCP (like
//!   Chromium's `--origin-to-force-quic-on`); a failed QUIC handshake fails the request.
//! - by default ([`Http3Mode::Auto`]): an https origin on port 443 gets QUIC when the
//!   host's HTTPS DNS record lists `h3` in its `alpn` (asked with A and AAAA, as Chromium asks
//!   it), or when an earlier response of the page load from that origin said
//!   `Alt-Svc: h3=":443"`; otherwise TCP. So a first visit without an HTTPS record is TCP, and
//!   later connections to the origin are QUIC, as in Chromium. QUIC goes first; TCP starts
//!   when QUIC fails (ICMP unreachable, a close from the server, a rejected certificate) or
//!   has not finished its handshake within [`RACE_DELAY`]; the QUIC attempt is then
//!   abandoned and recorded with its reason, the TCP connection says it fell back
//!   (`Connection::fell_back_from`), and the origin is not tried over QUIC again in that page
//!   load (Chromium marks the alternative service broken). Chromium waits so for the TCP job
//!   once QUIC is known to work on the network (1.5 x the smoothed RTT); a fixed 300 ms is
//!   the fetcher's.
//! - `--http1.1` or `--no-http3` ([`Http3Mode::Off`]): never.
//!
//! 0-RTT: a QUIC connection to a host this page load already had one with (its session
//! ticket is in the load's store) sends its first requests as 0-RTT data, as browsers do.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf as _, Bytes};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime as _, TokioRuntime, UdpPoller};
use tokio::sync::Notify;

use super::conn::IoStats;
use super::model::{QuicInfo, QuicReason, Timed, TlsInfo};
use crate::failure::{Code, Failure, Phase};
use super::tls::{TlsSetup, certificate_info, tls_failure};
use crate::clock::{Span, monotonic_ns};
use crate::decode::Direction;
use crate::decode::quic::{QuicSummary, QuicTracker, version_name};

/// How long QUIC has to finish its handshake before TCP starts (default mode).
pub const RACE_DELAY: Duration = Duration::from_millis(300);
/// A connection's driver ends after this long whatever it does (as over TCP).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);
/// quinn's idle timeout: an idle connection is closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the fetcher uses HTTP/3 (see the module doc for the rule).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Http3Mode {
    /// As a browser: QUIC when the HTTPS record or an Alt-Svc advertises h3, racing TCP.
    #[default]
    Auto,
    /// QUIC for every https origin, no TCP.
    Force,
    /// Never.
    Off,
}

/// What a QUIC connection's socket saw, shared with the fetcher.
#[derive(Debug)]
pub(crate) struct Wire {
    pub(crate) stats: Arc<IoStats>,
    tracker: Mutex<QuicTracker>,
    /// When an ICMP error came back (the socket is connected), and which.
    refused: Mutex<Option<(u64, io::ErrorKind)>>,
    refused_notify: Notify,
    /// Set once the server said whether it took the 0-RTT data.
    zero_rtt_accepted: tokio::sync::watch::Sender<Option<bool>>,
}

impl Default for Wire {
    fn default() -> Wire {
        Wire {
            stats: Arc::default(),
            tracker: Mutex::default(),
            refused: Mutex::default(),
            refused_notify: Notify::new(),
            zero_rtt_accepted: tokio::sync::watch::Sender::new(None),
        }
    }
}

impl Wire {
    /// What the decoder made of the connection's datagrams so far.
    pub(crate) fn summary(&self) -> QuicSummary {
        self.tracker.lock().map(|t| t.summary().clone()).unwrap_or_default()
    }

    /// Fills in what is known only later: the wire's handshake, datagrams, 0-RTT's fate.
    pub(crate) fn complete(&self, info: &mut QuicInfo) {
        let s = self.summary();
        info.wire_handshake = match (s.first_initial_ns, s.first_1rtt_ns) {
            (Some(a), Some(b)) => Some(Span::new(a, b).into()),
            _ => None,
        };
        info.client_hello_packets = s.client_hello_packets;
        info.retry = s.retry.is_some();
        info.datagrams_sent = s.sent.datagrams;
        info.datagrams_received = s.received.datagrams;
        if info.zero_rtt {
            info.zero_rtt_accepted = *self.zero_rtt_accepted.borrow();
        }
    }

    fn refused_by_icmp(&self, kind: io::ErrorKind) {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some((monotonic_ns(), kind));
        self.refused_notify.notify_one();
    }

    fn saw(&self, dir: Direction, datagram: &[u8]) {
        match dir {
            Direction::Send => self.stats.wrote(datagram.len()),
            Direction::Recv => self.stats.read(datagram.len()),
        }
        if let Ok(mut t) = self.tracker.lock() {
            t.feed(monotonic_ns(), dir, datagram);
        }
    }
}

/// quinn's UDP socket with every datagram seen by [`Wire`] (GSO batches and GRO buffers are
/// cut into their datagrams).
#[derive(Debug)]
struct ObservedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    wire: Arc<Wire>,
}

impl AsyncUdpSocket for ObservedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        if let Err(e) = self.inner.try_send(transmit) {
            // An ICMP error already pending on the connected socket is reported to whichever
            // call comes first, a send too.
            if e.kind() == io::ErrorKind::ConnectionRefused {
                self.wire.refused_by_icmp(e.kind());
            }
            return Err(e);
        }
        let seg = transmit.segment_size.unwrap_or(transmit.contents.len()).max(1);
        for d in transmit.contents.chunks(seg) {
            self.wire.saw(Direction::Send, d);
        }
        Ok(())
    }

    fn poll_recv(&self, cx: &mut Context, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> Poll<io::Result<usize>> {
        match self.inner.poll_recv(cx, bufs, meta) {
            Poll::Ready(Ok(n)) => {
                for (buf, m) in bufs.iter().zip(meta.iter()).take(n) {
                    let stride = m.stride.max(1);
                    for d in buf[..m.len.min(buf.len())].chunks(stride) {
                        self.wire.saw(Direction::Recv, d);
                    }
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                // ICMP port unreachable on the connected socket. quinn would stop its
                // endpoint on this error; it carries on after a ConnectionReset, and the
                // fetcher ends the attempt itself.
                self.wire.refused_by_icmp(e.kind());
                Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, e)))
            }
            other => other,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }
    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }
    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// Waits for an error on the (connected) socket until `stop`: an ICMP port unreachable sets
/// it. quinn would not see it in time: an error wakes no reader (tokio reports it only to
/// those who ask for error readiness) and quinn's sends swallow it.
async fn watch_icmp(socket: std::net::UdpSocket, wire: Arc<Wire>, mut stop: tokio::sync::oneshot::Receiver<()>) {
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;
    // SAFETY: the AsyncFd owns `socket` (an open std UdpSocket, a duplicate of quinn's) for
    // its whole life and never swaps it; its raw fd is that socket's.
    let Ok(fd) = (unsafe { AsyncFd::register_with_interest(socket, Interest::ERROR) }) else { return };
    // Bounded: each turn is an error event; a handshake sees one or two.
    for _ in 0..8 {
        let mut guard = tokio::select! {
            g = fd.ready(Interest::ERROR) => match g {
                Ok(g) => g,
                Err(_) => return,
            },
            _ = &mut stop => return,
        };
        match fd.get_ref().take_error() {
            Ok(Some(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                wire.refused_by_icmp(e.kind());
                return;
            }
            _ => guard.clear_ready(),
        }
    }
}

/// The request side of an HTTP/3 connection (cheap to clone: one per request).
#[derive(Clone)]
pub(crate) struct H3Sender {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    conn: quinn::Connection,
    /// Keeps the endpoint (its socket and driver) alive as long as a handle exists.
    _endpoint: quinn::Endpoint,
}

impl H3Sender {
    pub(crate) fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }
}

/// A QUIC connection attempt's outcome: the connection or its failure, and what was seen.
pub(crate) struct QuicOutcome {
    pub(crate) result: Result<H3Sender, Failure>,
    pub(crate) info: QuicInfo,
    pub(crate) tls: TlsInfo,
    pub(crate) wire: Arc<Wire>,
    pub(crate) local: Option<SocketAddr>,
}

/// Opens a QUIC connection to `addr` for `host` and sets up HTTP/3 on it, within `timeout`.
pub(crate) async fn connect(tls: &TlsSetup, host: &str, addr: SocketAddr, reason: QuicReason, timeout: Duration) -> QuicOutcome {
    let start = monotonic_ns();
    let wire = Arc::new(Wire::default());
    let mut info = QuicInfo {
        version: version_name(crate::decode::quic::VERSION_1),
        reason,
        span: Span::new(start, start).into(),
        wire_handshake: None,
        client_hello_packets: 0,
        zero_rtt: false,
        zero_rtt_accepted: None,
        retry: false,
        datagrams_sent: 0,
        datagrams_received: 0,
        failure: None,
    };
    let mut tls_info = TlsInfo::starting(start, host, !tls.insecure());
    let mut local = None;
    let result = attempt(tls, host, addr, timeout, &wire, &mut info, &mut tls_info, &mut local).await;
    if result.is_err() {
        // From the connect (or, when it failed before, from the set-up) to the failure.
        info.span = Span::since(info.span.start_ns.max(start)).into();
        tls_info.span = info.span;
    }
    let s = wire.summary();
    tls_info.cipher_suite = s.cipher_suite.clone();
    tls_info.version = s.tls_version.clone();
    let result = result.inspect_err(|f| {
        info.failure = Some(f.clone());
        if f.phase == Phase::Tls {
            tls_info.failure = Some(f.clone());
        }
    });
    wire.complete(&mut info);
    QuicOutcome { result, info, tls: tls_info, wire, local }
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    tls: &TlsSetup,
    host: &str,
    addr: SocketAddr,
    timeout: Duration,
    wire: &Arc<Wire>,
    info: &mut QuicInfo,
    tls_info: &mut TlsInfo,
    local: &mut Option<SocketAddr>,
) -> Result<H3Sender, Failure> {
    let setup_failure = |what: &str, e: &dyn std::fmt::Display| {
        Failure::new(Phase::Connect, Code::QuicProtocolError, format!("{what}: {e}"))
    };
    let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0".parse().expect("an address") } else { "[::]:0".parse().expect("an address") };
    let socket = std::net::UdpSocket::bind(bind).map_err(|e| setup_failure("binding a UDP socket", &e))?;
    // Connected, as Chromium's: the kernel then reports ICMP errors to it.
    socket.connect(addr).map_err(|e| super::conn::connect_failure(addr, &e))?;
    socket.set_nonblocking(true).map_err(|e| setup_failure("the UDP socket", &e))?;
    *local = socket.local_addr().ok();
    // Until the handshake is over (this function returns), watch the socket for the error.
    let (_stop_watching, stop) = tokio::sync::oneshot::channel::<()>();
    if let Ok(copy) = socket.try_clone() {
        tokio::spawn(watch_icmp(copy, wire.clone(), stop));
    }
    let inner = TokioRuntime.wrap_udp_socket(socket).map_err(|e| setup_failure("the UDP socket", &e))?;
    let observed: Arc<dyn AsyncUdpSocket> = Arc::new(ObservedSocket { inner, wire: wire.clone() });
    let endpoint = quinn::Endpoint::new_with_abstract_socket(quinn::EndpointConfig::default(), None, observed, Arc::new(TokioRuntime))
        .map_err(|e| setup_failure("a QUIC endpoint", &e))?;
    let (config, verdicts) = tls.quic_client_config().map_err(|e| setup_failure("the TLS config", &e))?;
    let crypto = QuicClientConfig::try_from(config).map_err(|e| setup_failure("the QUIC TLS config", &e))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("30 s is a valid idle timeout")));
    client.transport_config(Arc::new(transport));
    // The handshake starts with the connect: what came before is the client's set-up.
    info.span = Span::new(monotonic_ns(), monotonic_ns()).into();
    let start = info.span.start_ns;
    let connecting = endpoint
        .connect_with(client, addr, host)
        .map_err(|e| Failure::new(Phase::Connect, Code::QuicProtocolError, format!("connect to {addr}: {e}")))?;

    // What the load's verifier saw for this host: its chain, and its rejection.
    let verdict = || verdicts.lock().ok().and_then(|m| m.get(host).cloned());
    let chain = || verdict().map(|(c, _)| c.iter().map(|d| certificate_info(d)).collect::<Vec<_>>()).unwrap_or_default();
    let conn = match connecting.into_0rtt() {
        Ok((conn, accepted)) => {
            info.zero_rtt = true;
            tls_info.resumed = true;
            let wire = wire.clone();
            tokio::spawn(async move {
                let ok = tokio::time::timeout(IDLE_TIMEOUT, accepted).await.unwrap_or(false);
                wire.zero_rtt_accepted.send_replace(Some(ok));
            });
            conn
        }
        Err(connecting) => {
            let refused = wire.refused_notify.notified();
            tokio::select! {
                r = tokio::time::timeout(timeout, connecting) => match r {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(e)) => {
                        tls_info.certificates = chain();
                        return Err(connection_failure(addr, &e, verdict().and_then(|(_, r)| r)));
                    }
                    Err(_) => {
                        return Err(Failure::new(
                            Phase::Connect,
                            Code::QuicHandshakeFailed,
                            format!("no QUIC handshake with {addr} within {timeout:?} ({} Initial datagram(s) sent, {} received)",
                                wire.summary().sent.datagrams, wire.summary().received.datagrams),
                        ));
                    }
                },
                () = refused => {
                    return Err(Failure::new(
                        Phase::Connect,
                        Code::QuicProtocolError,
                        format!("ICMP port unreachable from {addr} (ECONNREFUSED): nothing listens on UDP port {}", addr.port()),
                    ));
                }
            }
        }
    };
    // The handshake's end as the fetcher sees it; with 0-RTT nothing was waited for.
    info.span = Span::since(start).into();
    tls_info.span = info.span;
    tls_info.certificates = chain();
    tls_info.alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .map(|p| String::from_utf8_lossy(&p).into_owned())
        .or_else(|| Some("h3".to_owned()));
    let (mut driver, send) = h3::client::builder()
        .build::<_, _, Bytes>(h3_quinn::Connection::new(conn.clone()))
        .await
        .map_err(|e| Failure::new(Phase::Connect, Code::QuicProtocolError, format!("HTTP/3 set-up with {addr}: {e}")))?;
    tokio::spawn(async move {
        let _ = tokio::time::timeout(CONNECTION_LIFETIME, std::future::poll_fn(|cx| driver.poll_close(cx))).await;
    });
    Ok(H3Sender { send, conn, _endpoint: endpoint })
}

/// The browser's error for a QUIC connection that did not come up.
fn connection_failure(addr: SocketAddr, e: &quinn::ConnectionError, rejection: Option<rustls::Error>) -> Failure {
    use quinn::ConnectionError as E;
    if let Some(rejected) = rejection {
        // The certificate: the same codes as over TCP (ERR_CERT_AUTHORITY_INVALID ...).
        return tls_failure(&io::Error::other(rejected));
    }
    let crypto_alert = |code: u64| (0x100..=0x1ff).contains(&code).then_some(code - 0x100);
    match e {
        E::TimedOut => Failure::new(Phase::Connect, Code::QuicHandshakeFailed, format!("no answer from {addr} (QUIC idle timeout)")),
        E::VersionMismatch => Failure::new(Phase::Connect, Code::QuicProtocolError, format!("{addr} speaks no QUIC version we do")),
        E::ConnectionClosed(c) => {
            let code = u64::from(c.error_code);
            let what = match crypto_alert(code) {
                Some(120) => return Failure::new(Phase::Tls, Code::AlpnNegotiationFailed, format!("{addr} closed: no common application protocol (TLS alert 120)")),
                Some(alert) => format!("TLS alert {alert}"),
                None => format!("error 0x{code:x}"),
            };
            let phase = if crypto_alert(code).is_some() { Phase::Tls } else { Phase::Connect };
            Failure::new(phase, Code::QuicHandshakeFailed, format!("{addr} closed the connection: {what} {}", String::from_utf8_lossy(&c.reason)))
        }
        E::TransportError(t) => Failure::new(Phase::Tls, Code::QuicHandshakeFailed, format!("with {addr}: {t}")),
        other => Failure::new(Phase::Connect, Code::QuicProtocolError, format!("with {addr}: {other}")),
    }
}

/// What one HTTP/3 exchange got: status, reason, headers, body.
pub(crate) struct H3Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Result<(), Failure>,
    pub(crate) body_bytes: u64,
    pub(crate) kept: Vec<u8>,
    pub(crate) send: Timed,
    pub(crate) wait: Timed,
    pub(crate) receive: Timed,
}

/// Sends `req` (absolute URI) and reads the whole response, timing send (to the first
/// datagram written after it), wait and receive as for TCP. `sent` runs once the request is
/// on its stream (a new connection's first stream: then it may be shared). Keeps at most
/// `keep` body bytes.
pub(crate) async fn exchange(
    sender: &mut H3Sender,
    stats: &IoStats,
    req: hyper::Request<()>,
    keep: usize,
    timeout: Duration,
    sent: impl FnOnce(),
) -> Result<H3Response, (Phase, Failure)> {
    let fail = |phase: Phase, code: Code, why: String| (phase, Failure::new(phase, code, why));
    let send_start = monotonic_ns();
    let mut stream = match tokio::time::timeout(timeout, sender.send.send_request(req)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(fail(Phase::Send, Code::QuicProtocolError, format!("sending the request: {e}"))),
        Err(_) => return Err(fail(Phase::Send, Code::TimedOut, format!("the request could not be sent within {timeout:?}"))),
    };
    sent();
    if let Err(e) = stream.finish().await {
        return Err(fail(Phase::Send, Code::QuicProtocolError, format!("ending the request: {e}")));
    }
    let head = tokio::time::timeout(timeout, stream.recv_response()).await;
    let head_at = monotonic_ns();
    let send_end = stats.first_write_since(send_start).unwrap_or(send_start).min(head_at);
    let (send, wait) = (Span::new(send_start, send_end).into(), Span::new(send_end, head_at).into());
    let resp = match head {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(fail(Phase::Wait, Code::QuicProtocolError, format!("no response: {e}"))),
        Err(_) => return Err(fail(Phase::Wait, Code::TimedOut, format!("no response within {timeout:?}"))),
    };
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let deadline = tokio::time::Instant::now() + timeout;
    let (mut body_bytes, mut kept) = (0u64, Vec::new());
    let body = loop {
        match tokio::time::timeout_at(deadline, stream.recv_data()).await {
            Err(_) => break Err(Failure::new(Phase::Receive, Code::TimedOut, format!("body not complete within {timeout:?}"))),
            Ok(Ok(None)) => break Ok(()),
            Ok(Ok(Some(mut chunk))) => {
                let n = chunk.remaining();
                body_bytes += n as u64;
                let data = chunk.copy_to_bytes(n);
                if kept.len() < keep {
                    kept.extend_from_slice(&data[..n.min(keep - kept.len())]);
                }
            }
            // A stream reset mid-body (the lab's /stall): the body is short.
            Ok(Err(e)) => break Err(Failure::new(Phase::Receive, Code::QuicProtocolError, format!("the body ended early after {body_bytes} bytes: {e}"))),
        }
    };
    Ok(H3Response {
        status: resp.status().as_u16(),
        headers,
        body,
        body_bytes,
        kept,
        send,
        wait,
        receive: Span::since(head_at).into(),
    })
}

/// The `h3` alternative of an Alt-Svc header for the origin's own host: its port
/// (`h3=":443"; ma=86400`). `clear` or no h3 entry gives `None`.
pub(crate) fn alt_svc_h3_port(value: &str, host: &str) -> Option<u16> {
    for entry in value.split(',') {
        let entry = entry.trim();
        if entry.eq_ignore_ascii_case("clear") {
            return None;
        }
        let Some((proto, rest)) = entry.split_once('=') else { continue };
        if proto.trim() != "h3" {
            continue;
        }
        let authority = rest.split(';').next().unwrap_or("").trim().trim_matches('"');
        let (alt_host, port) = authority.rsplit_once(':')?;
        // Only the same host: another one would need its own certificate check and lookup.
        if !alt_host.is_empty() && !alt_host.eq_ignore_ascii_case(host) {
            continue;
        }
        if let Ok(p) = port.parse::<u16>() {
            return Some(p);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::quic::tests_recorded::{echo, echo_server_pem};

    /// A second connection to a host the load already reached resumes with 0-RTT; both are
    /// seen on the wire. (quinn against a raw echo server on 127.0.0.1: no root.)
    #[tokio::test]
    async fn a_second_connection_to_the_host_uses_0rtt() {
        let (server, _, pem) = echo_server_pem(false);
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pem).unwrap();
        let tls = TlsSetup::new(Some(&ca), false, false).unwrap();
        let addr = server.local_addr().unwrap();
        let first = connect(&tls, "quic.test", addr, QuicReason::Forced, Duration::from_secs(5)).await;
        let sender = first.result.expect("a QUIC connection");
        // A round trip after the handshake: the session ticket has come by then.
        assert_eq!(echo(&sender.conn, b"ping").await, b"ping");
        let mut info = first.info.clone();
        first.wire.complete(&mut info);
        assert!(!info.zero_rtt && info.failure.is_none());
        assert_eq!(first.tls.alpn.as_deref(), Some("h3"));
        assert!(first.tls.cipher_suite.as_deref().is_some_and(|c| c.starts_with("TLS13_")), "{:?}", first.tls);
        assert!(info.wire_handshake.is_some_and(|w| w.ms > 0.0), "{info:?}");

        let second = connect(&tls, "quic.test", addr, QuicReason::AltSvc, Duration::from_secs(5)).await;
        let sender2 = second.result.expect("a resumed QUIC connection");
        assert!(second.info.zero_rtt && second.tls.resumed, "{:?}", second.info);
        // Nothing was waited for but the connection's own set-up.
        assert!(second.info.span.ms < first.info.span.ms, "{:?} {:?}", second.info.span, first.info.span);
        assert_eq!(echo(&sender2.conn, b"early").await, b"early");
        let mut watch = second.wire.zero_rtt_accepted.subscribe();
        let accepted = tokio::time::timeout(Duration::from_secs(5), watch.wait_for(Option::is_some)).await;
        assert_eq!(*accepted.expect("the server's verdict on 0-RTT").unwrap(), Some(true));
        let mut info = second.info.clone();
        second.wire.complete(&mut info);
        assert_eq!(info.zero_rtt_accepted, Some(true));
        assert!(second.wire.summary().zero_rtt_packets > 0, "0-RTT packets on the wire");
    }

    #[test]
    fn alt_svc_names_the_h3_port_of_the_same_host() {
        assert_eq!(alt_svc_h3_port("h3=\":443\"; ma=86400", "www.shop.test"), Some(443));
        assert_eq!(alt_svc_h3_port("h2=\":443\", h3=\":8443\"", "a.test"), Some(8443));
        assert_eq!(alt_svc_h3_port("h3=\"www.shop.test:443\"", "www.shop.test"), Some(443));
        assert_eq!(alt_svc_h3_port("h3=\"other.test:443\"", "www.shop.test"), None);
        assert_eq!(alt_svc_h3_port("h3-29=\":443\"", "a.test"), None);
        assert_eq!(alt_svc_h3_port("clear", "a.test"), None);
        assert_eq!(alt_svc_h3_port("h3=\":x\"", "a.test"), None);
        assert_eq!(alt_svc_h3_port("", "a.test"), None);
    }
}
