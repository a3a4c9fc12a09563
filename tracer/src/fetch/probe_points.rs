//! Probe points of the built-in fetcher. rustls is compiled into this binary, so there is
//! no TLS library boundary for the daemon to probe; these functions are that boundary.
//! They have the calling convention of OpenSSL's (object, buffer, length) -> length, so the
//! daemon attaches its usual TLS programs to them (the `tls_fetcher` family) and the fetcher's
//! own page loads are traced like any other client's. They do nothing else, and cost a
//! call each when nothing is attached.
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

// The daemon attaches to these functions by their symbol names, which the attach side lists
// in `probes::families::TLS_FETCHER`.

// Each body is distinct (a different marker value) so that the linker cannot fold two of
// them into one address, which would make one uprobe report both.

/// A TLS object is bound to socket `fd` (like `SSL_set_fd`).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tracer_tls_set_fd(obj: u64, fd: i32) -> i32 {
    std::hint::black_box((obj, fd, 0x5e7fd));
    1
}

/// Handshake step (like `SSL_do_handshake`): `state` 0 = starting (returns -1, "not done"),
/// 1 = done (returns 1), 2 = failed (returns 0).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tracer_tls_handshake(obj: u64, state: i32) -> i32 {
    std::hint::black_box((obj, 0x4a5d));
    match state {
        0 => -1,
        1 => 1,
        _ => 0,
    }
}

/// `len` plaintext bytes at `buf` were written (like `SSL_write`); returns `len`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tracer_tls_write(obj: u64, buf: *const u8, len: i32) -> i32 {
    std::hint::black_box((obj, buf, 0x3717e));
    len
}

/// `len` plaintext bytes at `buf` were read (like `SSL_read`); returns `len`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tracer_tls_read(obj: u64, buf: *const u8, len: i32) -> i32 {
    std::hint::black_box((obj, buf, 0x7ead));
    len
}

/// A TLS object id of this process (unique per connection; never 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsObject(u64);

impl TlsObject {
    pub fn new(fd: RawFd) -> TlsObject {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let obj = TlsObject(NEXT.fetch_add(1, Ordering::Relaxed));
        tracer_tls_set_fd(obj.0, fd);
        obj
    }
    pub fn handshake_started(self) {
        tracer_tls_handshake(self.0, 0);
    }
    pub fn handshake_done(self) {
        tracer_tls_handshake(self.0, 1);
    }
    pub fn handshake_failed(self) {
        tracer_tls_handshake(self.0, 2);
    }
}

/// Report data in calls of at most i32::MAX bytes.
fn report(f: extern "C" fn(u64, *const u8, i32) -> i32, obj: TlsObject, data: &[u8]) {
    for chunk in data.chunks(i32::MAX as usize) {
        f(obj.0, chunk.as_ptr(), chunk.len() as i32);
    }
}

/// A TLS stream whose plaintext passes through the probe points.
pub struct Traced<S> {
    inner: S,
    obj: TlsObject,
}

impl<S> Traced<S> {
    pub fn new(inner: S, obj: TlsObject) -> Self {
        Traced { inner, obj }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Traced<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                report(tracer_tls_read, self.obj, new);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Traced<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            report(tracer_tls_write, self.obj, &buf[..n.min(buf.len())]);
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
            let mut left = n;
            for b in bufs {
                if left == 0 {
                    break;
                }
                let take = left.min(b.len());
                report(tracer_tls_write, self.obj, &b[..take]);
                left -= take;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_points_are_distinct_functions() {
        let addrs = [
            tracer_tls_set_fd as *const () as usize,
            tracer_tls_handshake as *const () as usize,
            tracer_tls_write as *const () as usize,
            tracer_tls_read as *const () as usize,
        ];
        for i in 0..addrs.len() {
            for j in i + 1..addrs.len() {
                assert_ne!(addrs[i], addrs[j], "probe points {i} and {j} were folded together");
            }
        }
        assert_eq!(tracer_tls_write(1, b"abc".as_ptr(), 3), 3);
        assert_eq!(tracer_tls_handshake(1, 0), -1);
        assert_eq!(tracer_tls_handshake(1, 1), 1);
        assert_eq!(tracer_tls_handshake(1, 2), 0);
    }

    #[tokio::test]
    async fn traced_stream_passes_bytes_through_unchanged() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, mut b) = tokio::io::duplex(64);
        let mut t = Traced::new(a, TlsObject(7));
        t.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut got = [0u8; 18];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"GET / HTTP/1.1\r\n\r\n");
        b.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        let mut back = [0u8; 17];
        t.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"HTTP/1.1 200 OK\r\n");
    }
}
