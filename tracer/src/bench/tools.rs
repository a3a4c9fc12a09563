//! Workloads: a loopback DNS server and a DNS query loop, and a connect storm. The
//! `tracer bench-tool` entry points that run them as processes of their own are in
//! [`super::bench_tool`].
use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

/// A minimal authoritative DNS server on `127.0.77.N:53`: every A question is answered with
/// 127.0.0.1 (TTL 0), everything else with an empty NOERROR. Port 53 because that is how the
/// daemon recognises DNS. It stops when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub answered: Arc<AtomicU64>,
    /// The serving thread's id (0 until it runs), for its CPU time.
    pub tid: Arc<std::sync::atomic::AtomicU32>,
}

/// Keeps the calling thread on CPU 0. Benchmark 1's DNS ping-pong runs both ends there: a
/// query then wakes its server on the same CPU by a direct switch. Spread over two CPUs,
/// each wake-up left an idle CPU first, whose exit latency (a VM's halt) set the rate: the
/// loop ran 4x faster with the daemon running than without, because the daemon kept a CPU
/// from idling.
pub fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

impl DnsServer {
    /// `pinned`: serve from CPU 0 (see [`pin_to_cpu0`]).
    pub fn start(pinned: bool) -> Result<DnsServer> {
        // A 127/8 address of our own: other developers' servers on 127.0.0.1:53 do not clash.
        let mut last_err = None;
        for i in 0..50u32 {
            let n = ((std::process::id() + i) % 200 + 20) as u8;
            let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 77, n), 53));
            match UdpSocket::bind(addr) {
                Ok(sock) => {
                    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
                    let stop = Arc::new(AtomicBool::new(false));
                    let answered = Arc::new(AtomicU64::new(0));
                    let tid = Arc::new(std::sync::atomic::AtomicU32::new(0));
                    let (s, a, t) = (stop.clone(), answered.clone(), tid.clone());
                    let thread = std::thread::Builder::new()
                        .name("bench-dnssrv".into())
                        .spawn(move || {
                            // SAFETY: gettid has no preconditions.
                            t.store(unsafe { libc::gettid() } as u32, Ordering::Relaxed);
                            if pinned {
                                pin_to_cpu0();
                            }
                            serve_dns(sock, &s, &a)
                        })?;
                    return Ok(DnsServer { addr, stop, thread: Some(thread), answered, tid });
                }
                Err(e) => last_err = Some(e),
            }
        }
        bail!("no free 127.0.77.N:53 for the benchmark's DNS server: {:?}", last_err)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_dns(sock: UdpSocket, stop: &AtomicBool, answered: &AtomicU64) {
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else { continue };
        if let Some(resp) = dns_answer(&buf[..n]) {
            let _ = sock.send_to(&resp, peer);
            answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A DNS query for `name`, type A, recursion desired.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The answer to a one-question query: A 127.0.0.1 for type A, empty otherwise. None for
/// something that is not a query.
pub fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    loop {
        let len = *query.get(i)? as usize;
        if len == 0 {
            i += 1;
            break;
        }
        if len > 63 {
            return None;
        }
        i += 1 + len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let end = i + 4;
    if query.len() < end {
        return None;
    }
    let mut r = query[..end].to_vec();
    r[2] = 0x85; // QR, AA, RD
    r[3] = 0x80; // RA, NOERROR
    r[8..12].copy_from_slice(&[0, 0, 0, 0]); // no authority/additional
    if qtype == 1 {
        r[6..8].copy_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1]);
    } else {
        r[6..8].copy_from_slice(&0u16.to_be_bytes());
    }
    Some(r)
}

/// The first A address of an answer.
pub fn dns_first_a(answer: &[u8]) -> Option<Ipv4Addr> {
    // The answers of `dns_answer` are the only ones read here: fixed layout after the question.
    let tail = answer.get(answer.len().checked_sub(4)?..)?;
    (u16::from_be_bytes([*answer.get(6)?, *answer.get(7)?]) > 0).then(|| Ipv4Addr::new(tail[0], tail[1], tail[2], tail[3]))
}

/// `count` queries over one connected UDP socket (send + recv each), from a thread named
/// `bench-dns` on CPU 0, beside a pinned server. Returns (answered, seconds).
pub fn dns_loop(server: SocketAddr, count: u64) -> Result<(u64, f64)> {
    std::thread::Builder::new()
        .name("bench-dns".into())
        .spawn(move || -> Result<(u64, f64)> {
            pin_to_cpu0();
            let sock = UdpSocket::bind("127.0.0.1:0")?;
            sock.connect(server)?;
            sock.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut buf = [0u8; 512];
            let start = Instant::now();
            let mut ok = 0;
            for i in 0..count {
                let q = dns_query(i as u16, "www.bench.test");
                sock.send(&q)?;
                if sock.recv(&mut buf).is_ok() {
                    ok += 1;
                }
            }
            Ok((ok, start.elapsed().as_secs_f64()))
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("the DNS loop panicked"))?
}

/// A listener for connect storms: a deep backlog, and a thread (`bench-accept`) that accepts
/// and drops every connection.
pub struct StormListener {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StormListener {
    pub fn start() -> Result<StormListener> {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        sock.set_reuse_address(true)?;
        sock.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
        sock.listen(4096)?;
        let listener: TcpListener = sock.into();
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new().name("bench-accept".into()).spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => drop(c),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_micros(200))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        })?;
        Ok(StormListener { addr, stop, thread: Some(thread) })
    }
}

impl Drop for StormListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `count` TCP connects to `addr` from `threads` threads named `bench-connect`, each closed
/// with a reset (SO_LINGER 0, so that no TIME_WAIT sockets use up the ports). With `rate`
/// (connects/s, all threads together) they are paced in 1 ms steps; without, as fast as
/// possible. Returns (connects that succeeded, seconds).
pub fn connect_storm(addr: SocketAddr, count: u64, rate: Option<f64>, threads: usize) -> Result<(u64, f64)> {
    let threads = threads.max(1) as u64;
    let ok = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..threads {
        let n = count / threads + u64::from(t < count % threads);
        let ok = ok.clone();
        let per_thread_rate = rate.map(|r| r / threads as f64);
        handles.push(std::thread::Builder::new().name("bench-connect".into()).spawn(move || {
            let begin = Instant::now();
            for i in 0..n {
                if let Some(r) = per_thread_rate {
                    let due = Duration::from_secs_f64(i as f64 / r);
                    let now = begin.elapsed();
                    if due > now + Duration::from_micros(500) {
                        std::thread::sleep(due - now);
                    }
                }
                if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    let s = socket2::Socket::from(s);
                    let _ = s.set_linger(Some(Duration::ZERO));
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        })?);
    }
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("a connect thread panicked"))?;
    }
    Ok((ok.load(Ordering::Relaxed), start.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_query_and_answer() {
        let q = dns_query(0x1234, "www.bench.test");
        let a = dns_answer(&q).unwrap();
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(a[2] & 0x80, 0x80, "QR set");
        assert_eq!(dns_first_a(&a), Some(Ipv4Addr::LOCALHOST));
        // hickory reads it as a valid answer with one A record
        let m = hickory_proto::op::Message::from_vec(&a).unwrap();
        assert_eq!(m.answers().len(), 1);
        assert_eq!(m.queries()[0].name().to_ascii(), "www.bench.test.");
        // an answer is not answered, nor is garbage
        assert!(dns_answer(&a).is_none());
        assert!(dns_answer(&[0u8; 5]).is_none());
        let mut aaaa = q.clone();
        let n = aaaa.len();
        aaaa[n - 3] = 28;
        let a = dns_answer(&aaaa).unwrap();
        assert_eq!(dns_first_a(&a), None);
    }

    #[test]
    fn storm_and_dns_loop_count_their_work() {
        let l = StormListener::start().unwrap();
        let (ok, secs) = connect_storm(l.addr, 50, None, 2).unwrap();
        assert_eq!(ok, 50);
        assert!(secs > 0.0);
        let (ok, _) = connect_storm(l.addr, 20, Some(2000.0), 1).unwrap();
        assert_eq!(ok, 20);
    }
}
