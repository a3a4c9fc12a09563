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
            let mut rbufs = [[0u8; 512]; 2];
            let mut riovs = [
                libc::iovec { iov_base: rbufs[0].as_mut_ptr().cast(), iov_len: 512 },
                libc::iovec { iov_base: rbufs[1].as_mut_ptr().cast(), iov_len: 512 },
            ];
            let mut rmsgs: [libc::mmsghdr; 2] = unsafe { std::mem::zeroed() };
            for (m, iov) in rmsgs.iter_mut().zip(riovs.iter_mut()) {
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
            }
            // Both answers, one call (the second may need a moment: wait for it).
            let mut got = 0;
            for _ in 0..50 {
                let r = unsafe { libc::recvmmsg(c.as_raw_fd(), rmsgs[got..].as_mut_ptr(), (2 - got) as u32, 0, std::ptr::null_mut()) };
                assert!(r > 0, "recvmmsg");
                got += r as usize;
                if got == 2 {
                    break;
                }
            }
            assert_eq!(got, 2);
            // Unconnected: sendto + recvfrom, sendmsg + recvmsg.
            let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            u.send_to(&q4, dns2).unwrap();
            u.recv_from(&mut buf).unwrap();
            let SocketAddr::V4(d4) = dns2 else { unreachable!() };
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_port = d4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(d4.ip().octets());
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
