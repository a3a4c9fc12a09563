//! TCP connect and state changes, from tracepoints only (this path must work on kernels
//! without kprobes/fentry).
//!
//! `sys_enter_connect` remembers the destination per thread; `inet_sock_set_state`
//! CLOSE -> SYN_SENT, which runs inside the same `connect(2)` in process context, adds the
//! kernel socket address; `sys_exit_connect` reports both with the return code. Later state
//! changes (SYN_SENT -> ESTABLISHED runs in softirq, with no useful pid) are joined to the
//! connect by that socket address.
use aya_ebpf::{
    macros::{kprobe, map, tracepoint},
    maps::HashMap,
    programs::{ProbeContext, TracePointContext},
};
use tracer_common::{
    AF_INET, AF_INET6, CONNECT_AT_SYN, CONNECT_ERRNO_UNSEEN, CONNECT_TCP, ConnectEvent, EventKind, SockAddr, SockErrorEvent,
    TcpStateEvent,
    layout::{self, TpLayout},
};

use crate::common::{
    CallArgs, CallRet, EVENTS, Record, count_lost, header, now, pid_tgid, read_kernel, read_user_sockaddr, submit, wakeup_flags,
};
use crate::{dns, filter, koff, sock, tp_get, tp_get16};

const TCP_SYN_SENT: i32 = 2;
const TCP_FIN_WAIT2: i32 = 5;
const TCP_CLOSE: i32 = 7;
const TCP_LAST_ACK: i32 = 9;
const TCP_CLOSING: i32 = 11;
const IPPROTO_TCP: u16 = 6;
const EINPROGRESS: i32 = 115;

#[derive(Clone, Copy)]
#[repr(C)]
pub struct PendingConnect {
    pub start_ns: u64,
    pub skaddr: u64,
    pub fd: i32,
    pub flags: u32,
    pub dst: SockAddr,
}

/// In-flight `connect(2)` calls by thread. Removed at syscall exit on every path.
#[map]
static CONNECTS: HashMap<u64, PendingConnect> = HashMap::with_max_entries(8192, 0);

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    match try_enter_connect(&ctx) {
        Ok(r) | Err(r) => r,
    }
}

/// `connect(fd, addr, len)`, from the tracepoint or libc's `connect` (`crate::libc`).
pub fn try_enter_connect<A: CallArgs>(ctx: &A) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    let fd = ctx.get(0)? as i32;
    let dst = note_connect(fd, ctx.get(1)?).ok_or(0u32)?;
    let pending = PendingConnect { start_ns: now(), skaddr: 0, fd, flags: 0, dst };
    let _ = CONNECTS.insert(&pid_tgid(), &pending, 0);
    Ok(0)
}

/// What every connect's start does, however it was seen: its destination (IPv4/IPv6 only:
/// unix sockets and the rest are of no interest), kept for the filter's error reports, and
/// the socket watched when the port is 53, 80 or 443.
#[inline(always)]
fn note_connect(fd: i32, uaddr: u64) -> Option<SockAddr> {
    let dst = read_user_sockaddr(uaddr)?;
    if filter::enabled() {
        // Error reports carry no socket address: keep those about this destination.
        filter::add_flow(&dst);
    }
    // With the socket-layer hooks the watched sockets are kept by socket address, from
    // the connect's exit (`try_exit_connect`), and nothing reads the ones kept by fd.
    if !sock::hooks_on() {
        dns::remember_connected(fd, &dst);
    }
    Some(dst)
}

/// CLOSE -> SYN_SENT: a TCP connect starting, inside connect(2).
#[inline(always)]
pub fn is_connect_start(old: i32, new: i32) -> bool {
    old == TCP_CLOSE && new == TCP_SYN_SENT
}

/// Whether a probe saw this thread enter connect (libc's, or the syscall tracepoint).
#[inline(always)]
pub fn connect_in_flight() -> bool {
    unsafe { CONNECTS.get(&pid_tgid()) }.is_some()
}

/// A connect no entry probe saw, reported at its SYN (see `libc::connect_without_libc`):
/// as the entry would have remembered it and the exit reported it, with EINPROGRESS.
pub fn report_connect_at_syn(skaddr: u64, fd: i32, uaddr: u64) -> Result<u32, u32> {
    let dst = note_connect(fd, uaddr).ok_or(0u32)?;
    submit_connect_at_syn(skaddr, fd, dst)
}

/// The connect record of a connect seen at its SYN (no return code yet: EINPROGRESS).
#[inline(always)]
pub fn submit_connect_at_syn(skaddr: u64, fd: i32, dst: SockAddr) -> Result<u32, u32> {
    let ev = ConnectEvent {
        header: header(EventKind::Connect, core::mem::size_of::<ConnectEvent>()),
        start_ns: now(),
        skaddr,
        fd,
        ret: -EINPROGRESS,
        flags: CONNECT_TCP | CONNECT_AT_SYN,
        _pad: 0,
        dst,
    };
    submit(&ev, EventKind::Connect);
    Ok(0)
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    match try_exit_connect(&ctx, false) {
        Ok(r) | Err(r) => r,
    }
}

/// `libc`: the return value is libc's, 0 or -1 with errno unseen. A -1 after a SYN went
/// out is reported as EINPROGRESS: the handshake's outcome comes with its state changes
/// and error report, as for any non-blocking connect. A -1 before any SYN is reported as
/// [`CONNECT_ERRNO_UNSEEN`].
pub fn try_exit_connect<R: CallRet>(ctx: &R, libc: bool) -> Result<u32, u32> {
    // No filter check: only a traced connect entry made the entry looked up here.
    let id = pid_tgid();
    let pending = match unsafe { CONNECTS.get(&id) } {
        Some(p) => *p,
        None => return Ok(0),
    };
    let _ = CONNECTS.remove(&id);
    let mut ret = ctx.ret()? as i32;
    let mut flags = pending.flags;
    if libc && ret < 0 {
        if flags & CONNECT_TCP != 0 {
            ret = -EINPROGRESS;
        } else {
            flags |= CONNECT_ERRNO_UNSEEN;
        }
    }
    if pending.flags & CONNECT_TCP != 0 {
        if sock::hooks_on() {
            sock::remember_sk(pending.skaddr, &pending.dst);
        } else if pending.dst.port == 53 {
            dns::mark_tcp(pending.fd);
        }
    }
    let ev = ConnectEvent {
        header: header(EventKind::Connect, core::mem::size_of::<ConnectEvent>()),
        start_ns: pending.start_ns,
        skaddr: pending.skaddr,
        fd: pending.fd,
        ret,
        flags,
        _pad: 0,
        dst: pending.dst,
    };
    submit(&ev, EventKind::Connect);
    Ok(0)
}

#[unsafe(no_mangle)]
static LAYOUT_SET_STATE: TpLayout = TpLayout::compiled(&layout::set_state::TP);
#[unsafe(no_mangle)]
static LAYOUT_ERROR_REPORT: TpLayout = TpLayout::compiled(&layout::error_report::TP);

/// 1 on kernels without an error report to attach to (see `tracer_common::layout`): a
/// socket's `sk_err` is reported at its -> CLOSE instead.
#[unsafe(no_mangle)]
static ERRORS_AT_CLOSE: u32 = 0;

type SetState<'a> = Record<'a, 80>;

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let rec: SetState<'_> = Record::new(&ctx, &LAYOUT_SET_STATE);
    match try_set_state(&rec) {
        Ok(r) | Err(r) => r,
    }
}

/// An address and port out of a tracepoint record: `read_addr!(rec, LAYOUT, TP, family,
/// port field, IPv4 field, IPv6 field)`.
macro_rules! read_addr {
    ($rec:expr, $layout:ident, $tp:path, $family:expr, $port:path, $v4:path, $v6:path) => {{
        let port: u16 = tp_get!($rec, $layout, $tp, $port);
        let mut a = SockAddr { family: $family, port, _pad: 0, addr: [0; 16] };
        if $family == AF_INET6 {
            a.addr = tp_get16!($rec, $layout, $tp, $v6);
        } else if $family == AF_INET {
            let v4: u32 = tp_get!($rec, $layout, $tp, $v4);
            let b = v4.to_ne_bytes();
            a.addr[0] = b[0];
            a.addr[1] = b[1];
            a.addr[2] = b[2];
            a.addr[3] = b[3];
        }
        a
    }};
}

/// A field of `sock:inet_sock_set_state`.
macro_rules! ss {
    ($rec:expr, $i:ident) => {
        tp_get!($rec, LAYOUT_SET_STATE, layout::set_state::TP, layout::set_state::$i)
    };
}

/// A field of `sock:inet_sk_error_report`.
macro_rules! er {
    ($rec:expr, $i:ident) => {
        tp_get!($rec, LAYOUT_ERROR_REPORT, layout::error_report::TP, layout::error_report::$i)
    };
}

fn try_set_state(rec: &SetState<'_>) -> Result<u32, u32> {
    let protocol: u16 = ss!(rec, PROTOCOL);
    if protocol != IPPROTO_TCP {
        return Ok(0);
    }
    let skaddr: u64 = ss!(rec, SKADDR);
    let oldstate: i32 = ss!(rec, OLDSTATE);
    let newstate: i32 = ss!(rec, NEWSTATE);
    let family: u16 = ss!(rec, FAMILY);

    // Only the sockets of clients (and, with a filter, a traced process's listening ones) are
    // reported, kept by socket address: softirq transitions (SYN_SENT -> ESTABLISHED, -> CLOSE
    // on a RST) run with whatever task was interrupted. Accepted sockets (SYN_RECV -> ...) are
    // servers' and are not stitched: on a machine that also serves, they were half of the
    // state records (a loopback connect storm: 6 state changes per connect, 3 of them the
    // server's).
    if filter::sock_traced(skaddr) {
        if newstate == TCP_CLOSE {
            filter::remove_sock(skaddr);
            if sock::hooks_on() {
                // The socket-layer hooks' watched socket, if it was one: no close(2) probe.
                sock::forget_sk(skaddr);
            }
        }
    } else if oldstate == TCP_CLOSE
        && (newstate == TCP_SYN_SENT || filter::enabled() && newstate != TCP_CLOSE)
        && !filter::skip()
    {
        // CLOSE -> SYN_SENT (connect) or -> LISTEN (listen): process context.
        filter::add_sock(skaddr);
    } else {
        return Ok(0);
    }

    // Steps inside a close that the first one (FIN_WAIT1 or CLOSE_WAIT) and the last (CLOSE)
    // already tell: who closed first and when is known, the socket is not gone yet. One
    // record fewer per connection (6 -> 5 for a client that closes first).
    if newstate == TCP_FIN_WAIT2 || newstate == TCP_LAST_ACK || newstate == TCP_CLOSING {
        return Ok(0);
    }

    if is_connect_start(oldstate, newstate) {
        // Process context, inside connect(2): tie the socket to the pending call.
        if let Some(p) = CONNECTS.get_ptr_mut(&pid_tgid()) {
            unsafe {
                (*p).skaddr = skaddr;
                (*p).flags |= CONNECT_TCP;
            }
        }
    }

    use layout::set_state::{DADDR, DADDR_V6, DPORT, SADDR, SADDR_V6, SPORT, TP};
    let src = read_addr!(rec, LAYOUT_SET_STATE, TP, family, SPORT, SADDR, SADDR_V6);
    let dst = read_addr!(rec, LAYOUT_SET_STATE, TP, family, DPORT, DADDR, DADDR_V6);
    if newstate == TCP_CLOSE && unsafe { core::ptr::read_volatile(&ERRORS_AT_CLOSE) } != 0 {
        // No error report on this kernel: a refused connect (RST) or one the kernel gave up
        // on sets sk_err before the socket closes (tcp_reset, tcp_write_err), so it is read
        // here. A close the client chose leaves it 0.
        let error: i32 = read_kernel(skaddr, koff!(sk_err));
        if error != 0 {
            report_error(error, protocol, src, dst);
        }
    }
    // Written in place: with sk_err read at the close, the program's stack (record, copy
    // pointers, two addresses, the error record's call) went past 512 bytes on 6.1 (544).
    let size = core::mem::size_of::<TcpStateEvent>();
    let Some(mut entry) = EVENTS.reserve::<TcpStateEvent>(0) else {
        count_lost(EventKind::TcpState);
        return Ok(0);
    };
    let ev = entry.as_mut_ptr();
    unsafe {
        (*ev).header = header(EventKind::TcpState, size);
        (*ev).skaddr = skaddr;
        (*ev).oldstate = oldstate;
        (*ev).newstate = newstate;
        (*ev).src = src;
        (*ev).dst = dst;
        (*ev).protocol = protocol;
        (*ev)._pad = [0; 6];
    }
    entry.submit(wakeup_flags(size));
    Ok(0)
}

/// Why a connection failed: ECONNREFUSED after a RST, ETIMEDOUT after SYN retries, ICMP
/// errors on UDP (a DNS server that is not there).
#[tracepoint]
pub fn inet_sk_error_report(ctx: TracePointContext) -> u32 {
    let rec: Record<'_, 64> = Record::new(&ctx, &LAYOUT_ERROR_REPORT);
    match try_error_report(&rec) {
        Ok(r) | Err(r) => r,
    }
}

fn try_error_report(rec: &Record<'_, 64>) -> Result<u32, u32> {
    use layout::error_report::{DADDR, DADDR_V6, DPORT, SADDR, SADDR_V6, SPORT, TP};
    let error: i32 = er!(rec, ERROR);
    if error == 0 {
        // The kernel reports again as the error is taken (sock_error): nothing to say.
        return Ok(0);
    }
    let family: u16 = er!(rec, FAMILY);
    let protocol: u16 = er!(rec, PROTOCOL);
    let dst = read_addr!(rec, LAYOUT_ERROR_REPORT, TP, family, DPORT, DADDR, DADDR_V6);
    if filter::enabled() && !filter::flow_traced(&dst) {
        return Ok(0);
    }
    report_error(error, protocol, read_addr!(rec, LAYOUT_ERROR_REPORT, TP, family, SPORT, SADDR, SADDR_V6), dst);
    Ok(0)
}

/// A socket error record, written in place in the ring buffer (the state change's program
/// has no stack left for a second record).
#[inline(always)]
fn report_error(error: i32, protocol: u16, src: SockAddr, dst: SockAddr) {
    let size = core::mem::size_of::<SockErrorEvent>();
    let Some(mut entry) = EVENTS.reserve::<SockErrorEvent>(0) else {
        count_lost(EventKind::SockError);
        return;
    };
    let ev = entry.as_mut_ptr();
    unsafe {
        (*ev).header = header(EventKind::SockError, size);
        (*ev).error = error;
        (*ev).protocol = protocol;
        (*ev)._pad = 0;
        (*ev).src = src;
        (*ev).dst = dst;
    }
    entry.submit(wakeup_flags(size));
}

/// The kprobe variant of the error report, for kernels without `sock:inet_sk_error_report`
/// (5.10): `sock_def_error_report(sk)`, which TCP (a RST, the SYN retries given up) and
/// UDP (an ICMP error: a DNS server that is down) call through `sk->sk_error_report` right
/// after setting `sk_err`. The socket's fields are read at offsets from the kernel's BTF.
#[kprobe]
pub fn sock_def_error_report(ctx: ProbeContext) -> u32 {
    match try_sock_error_report(&ctx) {
        Ok(r) | Err(r) => r,
    }
}

fn try_sock_error_report(ctx: &ProbeContext) -> Result<u32, u32> {
    let sk: u64 = ctx.arg(0).ok_or(0u32)?;
    let error: i32 = read_kernel(sk, koff!(sk_err));
    if error == 0 {
        return Ok(0);
    }
    let family: u16 = read_kernel(sk, koff!(skc_family));
    let protocol: u16 = read_kernel(sk, koff!(sk_protocol));
    let mut src = SockAddr { family, port: read_kernel::<u16>(sk, koff!(skc_num)), _pad: 0, addr: [0; 16] };
    let mut dst = SockAddr { family, port: u16::from_be(read_kernel::<u16>(sk, koff!(skc_dport))), _pad: 0, addr: [0; 16] };
    if family == AF_INET6 {
        src.addr = read_kernel(sk, koff!(skc_v6_rcv_saddr));
        dst.addr = read_kernel(sk, koff!(skc_v6_daddr));
    } else if family == AF_INET {
        let s: [u8; 4] = read_kernel(sk, koff!(skc_rcv_saddr));
        let d: [u8; 4] = read_kernel(sk, koff!(skc_daddr));
        src.addr[..4].copy_from_slice(&s);
        dst.addr[..4].copy_from_slice(&d);
    } else {
        return Ok(0);
    }
    if filter::enabled() && !filter::flow_traced(&dst) {
        return Ok(0);
    }
    report_error(error, protocol, src, dst);
    Ok(0)
}
