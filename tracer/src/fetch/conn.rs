//! One connection: TCP connect attempts (tokio), the TLS handshake (rustls), and the HTTP/1.1
//! or HTTP/2 handshake (hyper's client connection API), each timed on the monotonic clock. The
//! socket is wrapped so that the bytes it moves and the moments it writes are known.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::clock::{Span, monotonic_ns};
use super::model::{ConnectAttempt, TlsInfo};
use crate::failure::{Code, Failure, Phase};
use super::tls::{TlsSetup, certificate_info, tls_failure, version_name};

/// A connection's driver task ends after this long whatever it does.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);
/// Write time stamps kept per connection (enough for a page's burst of HTTP/2 requests).
const WRITE_LOG: usize = 256;

/// What a connection's socket did.
#[derive(Debug, Default)]
pub(crate) struct IoStats {
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    /// Monotonic ns of recent writes (oldest first).
    writes: Mutex<VecDeque<u64>>,
}

impl IoStats {
    fn wrote(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.bytes_written.fetch_add(n as u64, Ordering::Relaxed);
        let now = monotonic_ns();
        if let Ok(mut w) = self.writes.lock() {
            if w.len() >= WRITE_LOG {
                w.pop_front();
            }
            w.push_back(now);
        }
    }

    /// The first socket write at or after `t`: when a request issued at `t` was handed to the
    /// kernel (the end of the send phase).
    pub(crate) fn first_write_since(&self, t: u64) -> Option<u64> {
        self.writes.lock().ok()?.iter().copied().find(|w| *w >= t)
    }
}

/// A TCP stream that counts bytes and stamps writes.
pub(crate) struct TimedIo {
    inner: TcpStream,
    stats: Arc<IoStats>,
}

impl TimedIo {
    pub(crate) fn new(inner: TcpStream, stats: Arc<IoStats>) -> TimedIo {
        TimedIo { inner, stats }
    }
    pub(crate) fn raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.inner.as_raw_fd()
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let n = buf.filled().len() - before;
            self.stats.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.stats.wrote(n);
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.stats.wrote(n);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The browser's error for a failed connect.
pub(crate) fn connect_failure(addr: SocketAddr, e: &io::Error) -> Failure {
    let errno = e.raw_os_error();
    let (code, name) = match errno {
        Some(libc::ECONNREFUSED) => (Code::ConnectionRefused, "ECONNREFUSED"),
        Some(libc::ETIMEDOUT) => (Code::ConnectionTimedOut, "ETIMEDOUT"),
        Some(libc::EHOSTUNREACH) => (Code::AddressUnreachable, "EHOSTUNREACH"),
        Some(libc::ENETUNREACH) => (Code::AddressUnreachable, "ENETUNREACH"),
        Some(libc::ECONNRESET) => (Code::ConnectionReset, "ECONNRESET"),
        Some(libc::EADDRNOTAVAIL) => (Code::AddressInvalid, "EADDRNOTAVAIL"),
        Some(libc::EACCES) | Some(libc::EPERM) => (Code::AccessDenied, "EACCES"),
        _ if e.kind() == io::ErrorKind::TimedOut => (Code::ConnectionTimedOut, "timeout"),
        _ => (Code::ConnectionFailed, "error"),
    };
    let reason = match errno {
        Some(_) => format!("connect to {addr}: {} ({name})", strip_os_error(e)),
        None => format!("connect to {addr}: {e}"),
    };
    Failure::new(Phase::Connect, code, reason)
}

/// `Connection refused` from `Connection refused (os error 111)`.
fn strip_os_error(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Tries each address in order until one connects. Returns every attempt, and the stream.
pub(crate) async fn tcp_connect(
    addrs: &[IpAddr],
    port: u16,
    timeout: Duration,
) -> (Vec<ConnectAttempt>, Option<TcpStream>) {
    let mut attempts = Vec::new();
    for ip in addrs {
        let addr = SocketAddr::new(*ip, port);
        let start = monotonic_ns();
        let socket = match ip {
            IpAddr::V4(_) => TcpSocket::new_v4(),
            IpAddr::V6(_) => TcpSocket::new_v6(),
        };
        let result = match socket {
            Ok(s) => match tokio::time::timeout(timeout, s.connect(addr)).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {timeout:?}"),
                )),
            },
            Err(e) => Err(e),
        };
        let span = Span::since(start).into();
        match result {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                attempts.push(ConnectAttempt {
                    address: addr,
                    span,
                    failure: None,
                });
                return (attempts, Some(stream));
            }
            Err(e) => attempts.push(ConnectAttempt {
                address: addr,
                span,
                failure: Some(connect_failure(addr, &e)),
            }),
        }
    }
    (attempts, None)
}

/// The TLS handshake over `io`. The returned info carries the failure when it failed.
pub(crate) async fn tls_handshake(
    setup: &TlsSetup,
    host: &str,
    io: TimedIo,
    timeout: Duration,
) -> Result<(TlsStream<TimedIo>, TlsInfo), TlsInfo> {
    let start = monotonic_ns();
    let is_ip = host.parse::<IpAddr>().is_ok();
    let mut info = TlsInfo {
        span: Span::new(start, start).into(),
        sni: (!is_ip).then(|| host.to_owned()),
        version: None,
        cipher_suite: None,
        alpn: None,
        resumed: false,
        certificates: Vec::new(),
        verified: !setup.insecure(),
        failure: None,
    };
    let fail = |mut info: TlsInfo, f: Failure| {
        info.span = Span::since(start).into();
        info.failure = Some(f);
        info
    };
    let server_name = match ServerName::try_from(host.to_owned()) {
        Ok(n) => n,
        Err(e) => {
            return Err(fail(
                info,
                Failure::new(
                    Phase::Tls,
                    Code::SslProtocolError,
                    format!("server name {host}: {e}"),
                ),
            ));
        }
    };
    let (config, captured) = match setup.client_config() {
        Ok(c) => c,
        Err(e) => {
            return Err(fail(
                info,
                Failure::new(Phase::Tls, Code::SslProtocolError, e.to_string()),
            ));
        }
    };
    let chain = |captured: &super::tls::Captured| -> Vec<_> {
        captured
            .lock()
            .map(|c| c.iter().map(|d| certificate_info(d)).collect())
            .unwrap_or_default()
    };
    let result =
        tokio::time::timeout(timeout, TlsConnector::from(config).connect(server_name, io)).await;
    match result {
        Err(_) => {
            info.certificates = chain(&captured);
            Err(fail(
                info,
                Failure::new(
                    Phase::Tls,
                    Code::TimedOut,
                    format!("no TLS handshake within {timeout:?}"),
                ),
            ))
        }
        Ok(Err(e)) => {
            info.certificates = chain(&captured);
            Err(fail(info, tls_failure(&e)))
        }
        Ok(Ok(stream)) => {
            info.span = Span::since(start).into();
            let (_, c) = stream.get_ref();
            info.version = c.protocol_version().map(version_name);
            info.cipher_suite = c
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()));
            info.alpn = c
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            info.resumed = c.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            info.certificates = chain(&captured);
            if info.certificates.is_empty() {
                info.certificates = c
                    .peer_certificates()
                    .map(|cs| cs.iter().map(|d| certificate_info(d)).collect())
                    .unwrap_or_default();
            }
            Ok((stream, info))
        }
    }
}

/// The request side of an HTTP connection.
pub(crate) enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }
    pub(crate) fn version(&self) -> &'static str {
        match self {
            Sender::H1(_) => "HTTP/1.1",
            Sender::H2(_) => "HTTP/2",
        }
    }
}

/// Starts HTTP/2 (`h2`) or HTTP/1.1 over `io` and spawns the connection's driver.
pub(crate) async fn http_handshake<T>(io: T, h2: bool) -> Result<Sender, Failure>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    if h2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(|e| {
                Failure::new(
                    Phase::Send,
                    Code::Http2ProtocolError,
                    format!("HTTP/2 handshake: {e}"),
                )
            })?;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
        });
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = http1::Builder::new().handshake(io).await.map_err(|e| {
            Failure::new(
                Phase::Send,
                Code::ConnectionFailed,
                format!("HTTP/1.1 handshake: {e}"),
            )
        })?;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
        });
        Ok(Sender::H1(sender))
    }
}
