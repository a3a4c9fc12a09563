//! Probes on the kernel they run on: every family attaches, the report names the variant
//! each choice got; every variant this kernel can run gives the same facts; and the
//! programs' other layout paths (a record copied and read at its format file's offsets, a
//! field the kernel lacks) give the same process tree and state changes as the compiled
//! one. `cargo xtask kernels` runs this on Debian's 5.10, 6.1 and 6.12 too, where those
//! paths are the real ones.
//!
//! Root only (they load the real probes). Under CI (`CI=true`) a skip is a failure.
use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener, TcpStream},
    process::Command,
    time::Duration,
};

use tracer::{
    probes::{
        LayoutOverride, ProbeConfig, Probes,
        families::{self, Points},
        kernel::KernelSurvey,
        variants,
    },
    stream::events::{EventBody, TcpState},
};

mod support;
use support::{root_or_skip, traced::Traced};

/// The variants of `family`'s choice about `what` that this kernel can run.
fn runnable(family: &str, what: &str) -> Vec<&'static str> {
    let survey = KernelSurvey::of_this_kernel();
    families::attach_sets()
        .filter(|(f, _)| f.name == family)
        .filter_map(|(_, a)| match &a.points {
            Points::OneOf(c) if c.what == what => Some(c),
            _ => None,
        })
        .flat_map(|c| c.variants.iter())
        .filter(|v| variants::unmet(&survey, v.needs).is_none())
        .map(|v| v.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_attaches_and_the_report_names_each_choice() {
    if !root_or_skip("variants_report") {
        return;
    }
    let probes = Probes::load(&ProbeConfig { tls: false, ..Default::default() }).expect("loading probes");
    let failed: Vec<String> = probes.status.iter().filter(|s| !s.attached).map(|s| format!("{}: {:?}", s.point, s.error)).collect();
    assert!(failed.is_empty(), "on {}: {failed:#?}", probes.kernel.release);
    let report = probes.kernel.report();
    eprintln!("{report}");
    let errors = probes.kernel.variants.iter().find(|v| v.family == "tcp_state" && v.what == "error reports").expect("the error reports' choice");
    assert!(errors.variant.is_some(), "no error report variant on this kernel: {report}");
    assert!(report.contains("variant: tcp_state error reports: "), "{report}");
    // Unfiltered, where the socket-layer hooks exist, no syscall tracepoint is attached (each
    // would put every system call of every process on the kernel's slow path).
    let syscall_tps: Vec<&str> =
        probes.status.iter().filter(|s| s.attached && s.point.starts_with("tracepoint syscalls:")).map(|s| s.point.as_str()).collect();
    let dns = runnable("dns", "socket calls");
    let sock = dns.contains(&"sock_length") || dns.contains(&"kprobe");
    assert_eq!(syscall_tps.is_empty(), sock, "{syscall_tps:?}: {report}");
    for family in ["tcp_connect", "dns", "tls_fd"] {
        assert!(report.contains(&format!("variant: {family} ")), "{family}: {report}");
    }
    // Every layout that differs from the compiled one is named, with its field.
    let survey = KernelSurvey::of_this_kernel();
    for l in survey.layouts.iter().filter(|l| !l.differences.is_empty()) {
        assert!(probes.kernel.layouts.iter().any(|s| s.contains(l.fields.name)), "{}: {report}", l.fields.name);
    }
    assert!(probes.kernel.unavailable.iter().all(|u| !u.cost.is_empty()), "{report}");
}

/// A refused connect's reason, under each error report variant this kernel runs: the
/// tracepoint (5.14+), the kprobe (kprobes), sk_err at the close (BTF).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_keeps_its_reason_under_each_error_report_variant() {
    if !root_or_skip("variants_errors") {
        return;
    }
    let names = runnable("tcp_state", "error reports");
    // sk_err at the close needs only BTF, which the daemon requires: at least it and one more.
    assert!(names.len() >= 2 && names.contains(&"sk_err_at_close"), "{names:?}");
    for name in names {
        let forced: BTreeMap<String, String> = [("tcp_state".to_string(), name.to_string())].into();
        let mut t = Traced::start(ProbeConfig { tls: false, variants: forced, ..Default::default() }).await;
        let chosen = t.probes.kernel.variants.iter().find(|v| v.what == "error reports").and_then(|v| v.variant.clone());
        assert!(chosen.as_deref().is_some_and(|c| c.starts_with(name)), "{name}: {chosen:?}");
        let closed: SocketAddr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(tokio::net::TcpStream::connect(closed).await.is_err());
        t.wait_for(&format!("ECONNREFUSED to {closed} under variant {name}"), Duration::from_secs(60), |e| {
            matches!(&e.body, EventBody::SockError { errno: 111, dst: Some(d), .. } if *d == closed)
        })
        .await;
        eprintln!("error reports variant {name}: refused connect reported");
    }
}

/// The layout paths of other kernels, on this one: every record copied and read at its
/// format file's offsets, and `sched_process_exit` without `group_dead` (as before 6.16):
/// a thread that ends is not the process's end, a child's fork, exec and exit are seen, and
/// a connect's state changes carry its 4-tuple.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_trees_and_state_changes_with_layouts_from_the_format_files() {
    if !root_or_skip("variants_layouts") {
        return;
    }
    let layout_override =
        LayoutOverride { copy: true, drop_fields: vec![("sched_process_exit".into(), "group_dead".into())] };
    let mut t = Traced::start(ProbeConfig { tls: false, layout_override, ..Default::default() }).await;
    assert!(t.probes.kernel.layouts.iter().any(|l| l.contains("group_dead missing")), "{:?}", t.probes.kernel.layouts);
    let me = std::process::id();

    // A thread of this process ends: not an exit of the process.
    std::thread::spawn(|| ()).join().unwrap();
    let mut child = Command::new("sh").args(["-c", "exit 0"]).spawn().unwrap();
    let child_pid = child.id();
    assert!(child.wait().unwrap().success());
    t.wait_for("this process's fork of sh", Duration::from_secs(60), |e| {
        e.tgid == me && matches!(&e.body, EventBody::Fork { child_pid: c } if *c == child_pid)
    })
    .await;
    t.wait_for("sh's exec", Duration::from_secs(60), |e| e.tgid == child_pid && matches!(&e.body, EventBody::Exec { .. })).await;
    t.wait_for("sh's exit", Duration::from_secs(60), |e| e.tgid == child_pid && matches!(e.body, EventBody::Exit)).await;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let local = tokio::task::spawn_blocking(move || {
        let s = TcpStream::connect(server).unwrap();
        let _peer = listener.accept().unwrap();
        s.local_addr().unwrap()
    })
    .await
    .unwrap();
    t.wait_for("ESTABLISHED with the connect's 4-tuple", Duration::from_secs(60), |e| {
        matches!(&e.body, EventBody::TcpState { new: TcpState::Established, src: Some(s), dst: Some(d), .. } if *s == local && *d == server)
    })
    .await;
    let exits_of_me = t.seen.iter().filter(|e| e.tgid == me && matches!(e.body, EventBody::Exit)).count();
    assert_eq!(exits_of_me, 0, "a thread's end was taken for the process's");
}

/// The variants of the socket calls' families to run here: every set this kernel can run
/// (the socket-layer hooks: the `sock:` tracepoints on 6.3+, the kprobes where the kernel has
/// them, each with connects at the SYN or at the syscalls; the syscall tracepoints
/// everywhere), as `--probe-variant` would force them.
fn socket_call_variant_sets() -> Vec<BTreeMap<String, String>> {
    let dns = runnable("dns", "socket calls");
    let mut sets = Vec::new();
    for layer in ["sock_length", "kprobe"] {
        if dns.contains(&layer) {
            sets.push([("dns".to_string(), layer.to_string())].into());
            sets.push([("dns".to_string(), layer.to_string()), ("tcp_connect".to_string(), "syscalls".to_string())].into());
        }
    }
    assert!(dns.contains(&"syscalls"), "{dns:?}");
    sets.push([("dns".to_string(), "syscalls".to_string())].into());
    sets
}

/// A loopback address whose ports 53, 80 and 443 are free for this test (root binds them).
fn free_loopback(n: u8) -> std::net::Ipv4Addr {
    for last in 1..=250u8 {
        let ip = std::net::Ipv4Addr::new(127, 79, n, last);
        let free = [53u16, 80, 443].iter().all(|p| TcpListener::bind((ip, *p)).is_ok())
            && std::net::UdpSocket::bind((ip, 53)).is_ok();
        if free {
            return ip;
        }
    }
    panic!("no free 127.79.{n}.x with ports 53, 80 and 443");
}

/// A DNS query for `name` with `id`.
fn query(id: u16, name: &str) -> Vec<u8> {
    use hickory_proto::{
        op::{Message, Query},
        rr::{Name, RecordType},
    };
    let mut m = Message::new();
    m.set_id(id).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// `addr` (IPv4: the tests' loopback addresses) as the kernel's `sockaddr_in`.
fn sockaddr_in(addr: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(a) = addr else { panic!("{addr}: not IPv4") };
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as u16;
    sin.sin_port = a.port().to_be();
    sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
    sin
}

/// Two datagrams of `fd` by `recvmmsg`, retried (bounded) while the second is not there yet.
fn recvmmsg_two(fd: i32) {
    let mut rbufs = [[0u8; 2048]; 2];
    let mut riovs = [
        libc::iovec { iov_base: rbufs[0].as_mut_ptr().cast(), iov_len: 2048 },
        libc::iovec { iov_base: rbufs[1].as_mut_ptr().cast(), iov_len: 2048 },
    ];
    let mut rmsgs: [libc::mmsghdr; 2] = unsafe { std::mem::zeroed() };
    for (m, iov) in rmsgs.iter_mut().zip(riovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut got = 0;
    for _ in 0..50 {
        let r = unsafe { libc::recvmmsg(fd, rmsgs[got..].as_mut_ptr(), (2 - got) as u32, 0, std::ptr::null_mut()) };
        assert!(r > 0, "recvmmsg");
        got += r as usize;
        if got == 2 {
            break;
        }
    }
    assert_eq!(got, 2, "recvmmsg: both datagrams");
}

/// Every path of the socket calls the families cover, under each variant set this kernel
/// runs: DNS over a connected UDP socket (send + read, write + read, sendmmsg + recvmmsg)
/// and an unconnected one (sendto + recvfrom, sendmsg + recvmsg); plain HTTP on port 80
/// (writev out, read in) joined to its connect; the port-443 wire capture's budget of 16
/// calls; the report naming each family's variant, and no `syscalls:` tracepoint where the
/// socket-layer hooks are used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_calls_are_seen_alike_under_each_variant() {
    if !root_or_skip("variants_socket_calls") {
        return;
    }
    use std::os::fd::AsRawFd;
    use tracer::stream::events::{Direction, Event};
    use tracer_common::DnsSyscall;
    let me = std::process::id();
    for (n, forced) in socket_call_variant_sets().into_iter().enumerate() {
        let ip = free_loopback(n as u8);
        let mut t = Traced::start(ProbeConfig { tls: false, variants: forced.clone(), ..Default::default() }).await;
        let got = |family: &str| {
            t.probes.kernel.variants.iter().find(|v| v.family == family).and_then(|v| v.variant.clone()).unwrap_or_default()
        };
        let name = |v: String| v.split(' ').next().unwrap_or_default().to_string();
        let sock = ["sock_length", "kprobe"].contains(&name(got("dns")).as_str());
        let at_syn = got("tcp_connect").starts_with("tp_btf");
        // tls_fd follows dns: the same socket-layer programs, or the syscall tracepoints.
        assert_eq!(name(got("tls_fd")), name(got("dns")), "{forced:?}");
        let syscall_tps: Vec<&str> =
            t.probes.status.iter().filter(|s| s.attached && s.point.starts_with("tracepoint syscalls:")).map(|s| s.point.as_str()).collect();
        assert_eq!(syscall_tps.is_empty(), sock && at_syn, "{forced:?}: {syscall_tps:?}");
        eprintln!("variants {forced:?}: dns {}, tcp_connect {}, tls_fd {}", got("dns"), got("tcp_connect"), got("tls_fd"));

        // The DNS server: answers each query with itself, QR set, for a bounded time.
        let server = std::net::UdpSocket::bind((ip, 53)).unwrap();
        server.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let responder = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            for _ in 0..600 {
                if stop2.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if let Ok((len, from)) = server.recv_from(&mut buf) {
                    buf[2] |= 0x80;
                    let _ = server.send_to(&buf[..len], from);
                }
            }
        });
        let dns: SocketAddr = (ip, 53).into();
        let (q1, q2, q3a, q3b, q4, q5) = (
            query(0x1101, "send.test"),
            query(0x1102, "write.test"),
            query(0x1103, "mmsg-a.test"),
            query(0x1104, "mmsg-b.test"),
            query(0x1105, "sendto.test"),
            query(0x1106, "sendmsg.test"),
        );
        let (qs, dns2) = ((q1.clone(), q2.clone(), q3a.clone(), q3b.clone(), q4.clone(), q5.clone()), dns);
        tokio::task::spawn_blocking(move || {
            let (q1, q2, q3a, q3b, q4, q5) = qs;
            let mut buf = [0u8; 512];
            // Connected: send + read, write + read, sendmmsg + recvmmsg.
            let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.connect(dns2).unwrap();
            c.send(&q1).unwrap();
            assert!(unsafe { libc::read(c.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0);
            assert!(unsafe { libc::write(c.as_raw_fd(), q2.as_ptr().cast(), q2.len()) } > 0);
            assert!(unsafe { libc::read(c.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0);
            let mut iovs = [
                libc::iovec { iov_base: q3a.as_ptr() as *mut _, iov_len: q3a.len() },
                libc::iovec { iov_base: q3b.as_ptr() as *mut _, iov_len: q3b.len() },
            ];
            let mut msgs: [libc::mmsghdr; 2] = unsafe { std::mem::zeroed() };
            for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
            }
            assert_eq!(unsafe { libc::sendmmsg(c.as_raw_fd(), msgs.as_mut_ptr(), 2, 0) }, 2);
            // Both answers, one call.
            recvmmsg_two(c.as_raw_fd());
            // Unconnected: sendto + recvfrom, sendmsg + recvmsg.
            let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            u.send_to(&q4, dns2).unwrap();
            u.recv_from(&mut buf).unwrap();
            let mut sin = sockaddr_in(dns2);
            let mut iov = libc::iovec { iov_base: q5.as_ptr() as *mut _, iov_len: q5.len() };
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = &mut sin as *mut _ as *mut _;
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            assert!(unsafe { libc::sendmsg(u.as_raw_fd(), &msg, 0) } > 0);
            let mut riov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
            let mut rmsg: libc::msghdr = unsafe { std::mem::zeroed() };
            rmsg.msg_iov = &mut riov;
            rmsg.msg_iovlen = 1;
            assert!(unsafe { libc::recvmsg(u.as_raw_fd(), &mut rmsg, 0) } > 0);
        })
        .await
        .unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        responder.join().unwrap();
        let dns_is = |e: &Event, id: u16, dir: Direction, sc: DnsSyscall| {
            e.tgid == me
                && matches!(&e.body, EventBody::Dns { direction, syscall: Some(s), message: Ok(m), peer, .. }
                    if *direction == dir && *s == sc && m.id == id && *peer == Some(dns))
        };
        let cases = [
            (0x1101, Direction::Send, DnsSyscall::Sendto),
            (0x1101, Direction::Recv, DnsSyscall::Read),
            (0x1102, Direction::Send, DnsSyscall::Write),
            (0x1102, Direction::Recv, DnsSyscall::Read),
            (0x1103, Direction::Send, DnsSyscall::Sendmmsg),
            (0x1104, Direction::Send, DnsSyscall::Sendmmsg),
            (0x1103, Direction::Recv, DnsSyscall::Recvmmsg),
            (0x1104, Direction::Recv, DnsSyscall::Recvmmsg),
            (0x1105, Direction::Send, DnsSyscall::Sendto),
            (0x1105, Direction::Recv, DnsSyscall::Recvfrom),
            (0x1106, Direction::Send, DnsSyscall::Sendmsg),
            (0x1106, Direction::Recv, DnsSyscall::Recvmsg),
        ];
        for (id, dir, sc) in cases {
            t.wait_for(&format!("{forced:?}: DNS {id:#x} {dir:?} by {sc:?} from {dns}"), Duration::from_secs(20), |e| dns_is(e, id, dir, sc))
                .await;
        }

        // Plain HTTP on port 80: writev out (head and body in two iovecs), read in.
        let web = TcpListener::bind((ip, 80)).unwrap();
        let web_addr = web.local_addr().unwrap();
        let (client_fd, local) = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut c = TcpStream::connect(web_addr).unwrap();
            let (mut s, _) = web.accept().unwrap();
            let head = b"POST /v HTTP/1.1\r\nHost: v.test\r\nContent-Length: 4\r\n\r\n";
            let body = b"ping";
            let iovs = [
                libc::iovec { iov_base: head.as_ptr() as *mut _, iov_len: head.len() },
                libc::iovec { iov_base: body.as_ptr() as *mut _, iov_len: body.len() },
            ];
            assert_eq!(unsafe { libc::writev(c.as_raw_fd(), iovs.as_ptr(), 2) }, (head.len() + body.len()) as isize);
            let mut req = vec![0u8; head.len() + body.len()];
            s.read_exact(&mut req).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
            let mut resp = [0u8; 64];
            assert!(unsafe { libc::read(c.as_raw_fd(), resp.as_mut_ptr().cast(), resp.len()) } > 0);
            c.flush().unwrap();
            (c.as_raw_fd(), c.local_addr().unwrap())
        })
        .await
        .unwrap();
        let connect = t
            .wait_for(&format!("{forced:?}: the connect to {web_addr}"), Duration::from_secs(20), |e| {
                e.tgid == me && matches!(&e.body, EventBody::Connect { dst: Some(d), .. } if *d == web_addr)
            })
            .await;
        let EventBody::Connect { fd, ret, skaddr, tcp, .. } = connect.body.clone() else { unreachable!() };
        assert_eq!((fd, ret, tcp), (client_fd, if at_syn { -115 } else { 0 }, true), "{forced:?}");
        assert_ne!(skaddr, 0);
        let plain = |dir: Direction, start: &'static str, sc: DnsSyscall| {
            move |e: &Event| {
                e.tgid == me
                    && matches!(&e.body, EventBody::SocketData { fd, direction, syscall: Some(s), first_line: Some(l), .. }
                        if *fd == client_fd && *direction == dir && *s == sc && l.starts_with(start))
            }
        };
        t.wait_for(&format!("{forced:?}: the request's head by writev"), Duration::from_secs(20), plain(Direction::Send, "POST /v HTTP/1.1", DnsSyscall::Writev))
            .await;
        t.wait_for(&format!("{forced:?}: the response by read"), Duration::from_secs(20), plain(Direction::Recv, "HTTP/1.1 200 OK", DnsSyscall::Read))
            .await;
        let _ = local;

        // Port 443: the first 16 calls of the connection, no more.
        let tls = TcpListener::bind((ip, 443)).unwrap();
        let tls_addr = tls.local_addr().unwrap();
        let wire_fd = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut c = TcpStream::connect(tls_addr).unwrap();
            let (mut s, _) = tls.accept().unwrap();
            let record = [0x16u8, 0x03, 0x01, 0x00, 0x04, 1, 2, 3, 4];
            for _ in 0..20 {
                c.write_all(&record).unwrap();
            }
            let mut sink = vec![0u8; record.len() * 20];
            s.read_exact(&mut sink).unwrap();
            c.as_raw_fd()
        })
        .await
        .unwrap();
        let record_start = [0x16u8, 0x03, 0x01, 0x00, 0x04];
        let is_wire = |e: &Event| {
            e.tgid == me
                && matches!(&e.body, EventBody::SocketData { fd, direction: Direction::Send, data, .. }
                    if *fd == wire_fd && data.starts_with(&record_start))
        };
        t.wait_for(&format!("{forced:?}: the wire capture of {tls_addr}"), Duration::from_secs(20), is_wire).await;
        t.drain_for(Duration::from_millis(500)).await;
        let captured = t.seen.iter().filter(|e| is_wire(e)).count();
        assert_eq!(captured, 16, "{forced:?}: the port-443 socket's first 16 calls, no more");
    }
}

/// A datagram of `len` bytes that starts like a QUIC packet (`first`: 0xc3 a long-header
/// Initial, which takes a socket on; 0x43 a short header), tagged at byte 5.
fn quic_like(first: u8, tag: u8, len: usize) -> Vec<u8> {
    let mut d = vec![0u8; len];
    d[0] = first;
    d[1..5].copy_from_slice(&1u32.to_be_bytes());
    d[5] = tag;
    d
}

/// `sendmsg` of `buf` to `to` (or the connected peer), with a `UDP_SEGMENT` control message
/// when `segment` is not 0 (GSO: the kernel cuts the buffer into datagrams of that size).
fn sendmsg_gso(fd: i32, buf: &[u8], to: Option<SocketAddr>, segment: u16) -> isize {
    let mut sin = to.map(sockaddr_in);
    let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut _, iov_len: buf.len() };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if let Some(sin) = sin.as_mut() {
        msg.msg_name = sin as *mut _ as *mut _;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // u64 words: the control buffer must be aligned for cmsghdr.
    let mut control = [0u64; 8];
    if segment != 0 {
        let space = unsafe { libc::CMSG_SPACE(2) } as usize;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, segment);
        }
    }
    unsafe { libc::sendmsg(fd, &msg, 0) }
}

/// Every path a QUIC client's datagrams take, under each socket-layer variant this kernel
/// runs (`sock_length`, `kprobe`): a socket is taken on by a send that starts with a long
/// header, then its sends and receives are each one `quic_datagram` record with the call,
/// its length, the GSO/GRO segment size and the peer. Unconnected: sendto + recvfrom,
/// sendmsg with `UDP_SEGMENT` (one record for three datagrams), sendmmsg + recvmmsg (a record
/// per message), recvmsg on a `UDP_GRO` socket (a batch with its segment size where the kernel
/// keeps a loopback batch whole); connected: write + read, send + recv.
/// The `syscalls` variant has no QUIC capture (README *Probe variants*), so it is not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_datagrams_are_seen_on_every_call_path_under_each_variant() {
    if !root_or_skip("variants_quic_datagrams") {
        return;
    }
    use std::{net::UdpSocket, os::fd::AsRawFd};
    use tracer::stream::events::{Direction, Event};
    use tracer_common::DnsSyscall;
    let me = std::process::id();
    let layers: Vec<&str> = runnable("dns", "socket calls").into_iter().filter(|v| ["sock_length", "kprobe"].contains(v)).collect();
    assert!(!layers.is_empty() || std::env::var_os("CI").is_none(), "no socket-layer variant on this kernel: QUIC is not captured");
    for (n, layer) in layers.into_iter().enumerate() {
        let forced: BTreeMap<String, String> = [("dns".to_string(), layer.to_string())].into();
        let ip = free_loopback(100 + n as u8);
        let mut t = Traced::start(ProbeConfig { tls: false, variants: forced.clone(), ..Default::default() }).await;
        let server = UdpSocket::bind((ip, 443)).unwrap();
        let server_addr = server.local_addr().unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (u, c, gro_len, gro_segment) = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 8192];
            // The server takes `count` datagrams, checking each one's length and tag.
            let take = |count: usize, len: usize, tag: u8, buf: &mut [u8]| {
                let mut from = None;
                for _ in 0..count {
                    let (got, f) = server.recv_from(buf).unwrap();
                    assert_eq!((got, buf[5]), (len, tag), "the server's datagram");
                    from = Some(f);
                }
                from.unwrap()
            };
            // Unconnected.
            let u = UdpSocket::bind((ip, 0)).unwrap();
            u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            u.send_to(&quic_like(0xc3, 1, 1200), server_addr).unwrap();
            let u_addr = take(1, 1200, 1, &mut buf);
            server.send_to(&quic_like(0x43, 2, 100), u_addr).unwrap();
            assert_eq!(u.recv_from(&mut buf).unwrap().0, 100);
            assert_eq!(sendmsg_gso(u.as_raw_fd(), &quic_like(0xc3, 3, 3600), Some(server_addr), 1200), 3600, "GSO send");
            // Every GSO segment is a copy of the buffer's bytes at its offset: only the first
            // has the tag; the rest hold zeroes there.
            take(1, 1200, 3, &mut buf);
            take(2, 1200, 0, &mut buf);
            let (m4, m5) = (quic_like(0x43, 4, 1200), quic_like(0x43, 5, 1250));
            let mut iovs = [
                libc::iovec { iov_base: m4.as_ptr() as *mut _, iov_len: m4.len() },
                libc::iovec { iov_base: m5.as_ptr() as *mut _, iov_len: m5.len() },
            ];
            let mut sin = sockaddr_in(server_addr);
            let mut msgs: [libc::mmsghdr; 2] = unsafe { std::mem::zeroed() };
            for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_name = &mut sin as *mut _ as *mut _;
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            }
            assert_eq!(unsafe { libc::sendmmsg(u.as_raw_fd(), msgs.as_mut_ptr(), 2, 0) }, 2);
            take(1, 1200, 4, &mut buf);
            take(1, 1250, 5, &mut buf);
            server.send_to(&quic_like(0x43, 6, 80), u_addr).unwrap();
            server.send_to(&quic_like(0x43, 7, 90), u_addr).unwrap();
            recvmmsg_two(u.as_raw_fd());
            // GRO: with UDP_GRO on, a GSO batch from the loopback stays whole and recvmsg
            // returns it with its segment size.
            let on: libc::c_int = 1;
            let r = unsafe {
                libc::setsockopt(u.as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, (&on as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as u32)
            };
            assert_eq!(r, 0, "UDP_GRO");
            assert_eq!(sendmsg_gso(server.as_raw_fd(), &quic_like(0x43, 8, 3000), Some(u_addr), 1000), 3000);
            let mut riov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
            let mut control = [0u64; 8];
            let mut rmsg: libc::msghdr = unsafe { std::mem::zeroed() };
            rmsg.msg_iov = &mut riov;
            rmsg.msg_iovlen = 1;
            rmsg.msg_control = control.as_mut_ptr().cast();
            rmsg.msg_controllen = std::mem::size_of_val(&control);
            let gro_len = unsafe { libc::recvmsg(u.as_raw_fd(), &mut rmsg, 0) };
            // The segment size the application was told (no UDP_GRO message: one datagram).
            let mut gro_segment = 0u16;
            let mut cm = unsafe { libc::CMSG_FIRSTHDR(&rmsg) };
            while !cm.is_null() {
                unsafe {
                    if (*cm).cmsg_level == libc::SOL_UDP && (*cm).cmsg_type == libc::UDP_GRO {
                        gro_segment = std::ptr::read_unaligned(libc::CMSG_DATA(cm) as *const libc::c_int) as u16;
                    }
                    cm = libc::CMSG_NXTHDR(&rmsg, cm);
                }
            }
            // 6.1 and later hand a loopback GSO batch to a UDP_GRO socket whole; 5.10 cuts it into
            // its datagrams first (measured in the matrix's 5.10 guest: 1000 bytes, no
            // segment size). The record must say what the application got, either way.
            match gro_len {
                3000 => assert_eq!(gro_segment, 1000, "a GRO batch's segment size"),
                1000 => assert_eq!(gro_segment, 0, "a single datagram with a segment size"),
                other => panic!("recvmsg on the UDP_GRO socket returned {other}"),
            }
            // Connected: write + read, send + recv.
            let c = UdpSocket::bind((ip, 0)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.connect(server_addr).unwrap();
            let m9 = quic_like(0xc3, 9, 1200);
            assert_eq!(unsafe { libc::write(c.as_raw_fd(), m9.as_ptr().cast(), m9.len()) }, 1200);
            let c_addr = take(1, 1200, 9, &mut buf);
            server.send_to(&quic_like(0x43, 10, 60), c_addr).unwrap();
            assert_eq!(unsafe { libc::read(c.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }, 60);
            c.send(&quic_like(0x43, 11, 1100)).unwrap();
            take(1, 1100, 11, &mut buf);
            server.send_to(&quic_like(0x43, 12, 70), c_addr).unwrap();
            assert_eq!(c.recv(&mut buf).unwrap(), 70);
            // Kept open until the records are in: a closed socket's memory is reused.
            (u, c, gro_len as u32, gro_segment)
        })
        .await
        .unwrap();
        let (u_fd, c_fd) = (u.as_raw_fd(), c.as_raw_fd());
        let cases = [
            (u_fd, 1, Direction::Send, DnsSyscall::Sendto, 1200, 0),
            (u_fd, 2, Direction::Recv, DnsSyscall::Recvfrom, 100, 0),
            (u_fd, 3, Direction::Send, DnsSyscall::Sendmsg, 3600, 1200),
            (u_fd, 4, Direction::Send, DnsSyscall::Sendmmsg, 1200, 0),
            (u_fd, 5, Direction::Send, DnsSyscall::Sendmmsg, 1250, 0),
            (u_fd, 6, Direction::Recv, DnsSyscall::Recvmmsg, 80, 0),
            (u_fd, 7, Direction::Recv, DnsSyscall::Recvmmsg, 90, 0),
            (u_fd, 8, Direction::Recv, DnsSyscall::Recvmsg, gro_len, gro_segment),
            (c_fd, 9, Direction::Send, DnsSyscall::Write, 1200, 0),
            (c_fd, 10, Direction::Recv, DnsSyscall::Read, 60, 0),
            (c_fd, 11, Direction::Send, DnsSyscall::Sendto, 1100, 0),
            (c_fd, 12, Direction::Recv, DnsSyscall::Recvfrom, 70, 0),
        ];
        for (want_fd, tag, dir, sc, want_len, seg) in cases {
            let is = move |e: &Event| {
                e.tgid == me
                    && matches!(&e.body, EventBody::QuicDatagram { fd, direction, syscall: Some(s), len, segment, peer: Some(p), data, .. }
                        if *fd == want_fd && *direction == dir && *s == sc && data.get(5) == Some(&tag)
                            && (*len, *segment, *p) == (want_len, seg, server_addr))
            };
            let what = format!("{layer}: QUIC datagram {tag} {dir:?} by {sc:?}, {want_len} bytes, segment {seg}, peer {server_addr}");
            t.wait_for(&what, Duration::from_secs(20), is).await;
        }
        drop((u, c));
    }
}

/// Every kprobe and kretprobe program passes this kernel's verifier, whether or not the
/// kernel can attach it (this machine has no kprobes; loading needs none): the limits every
/// kernel shares, such as 512 bytes of stack for all call frames together, are met before a
/// guest of the kernel matrix tries them. (The socket layer's kretprobes once took three
/// frames to 544 bytes, refused by 5.10 and 6.1.)
#[test]
fn every_kprobe_program_passes_the_verifier() {
    if !root_or_skip("variants_kprobe_programs_verify") {
        return;
    }
    let outcomes = tracer::probes::verify_kprobe_programs().expect("loading the eBPF object");
    all_verified(&outcomes, &["sock_def_error_report", "sock_call_entry", "sock_send_return", "sock_recv_return"]);
}

/// Every program of `outcomes` passed the verifier, and `expected` are among them.
fn all_verified(outcomes: &[(&str, Result<(), String>)], expected: &[&str]) {
    let names: Vec<&str> = outcomes.iter().map(|(n, _)| *n).collect();
    for expected in expected {
        assert!(names.contains(expected), "{expected} not declared: {names:?}");
    }
    let failed: Vec<String> = outcomes.iter().filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {}", &e[..e.len().min(600)]))).collect();
    assert!(failed.is_empty(), "{} of {} refused: {failed:#?}", failed.len(), outcomes.len());
    eprintln!("{} programs verified", outcomes.len());
}

/// Every uprobe and uretprobe program passes this kernel's verifier, loaded without a library
/// to attach to: the QUIC plaintext programs (`quic_*`, issue 22) attach only where a browser's
/// NSS or BoringSSL is found, so without this a kernel of the matrix might never judge them.
#[test]
fn every_uprobe_program_passes_the_verifier() {
    if !root_or_skip("variants_uprobe_programs_verify") {
        return;
    }
    let outcomes = tracer::probes::verify_uprobe_programs().expect("loading the eBPF object");
    all_verified(
        &outcomes,
        &[
            "quic_boringssl_seal",
            "quic_boringssl_open",
            "quic_aead_open_ret",
            "quic_nss_aead",
            "quic_freebl_chacha_seal",
            "quic_freebl_chacha_open",
            "quic_freebl_aes_aead",
            "quic_freebl_aes_ret",
        ],
    );
}
