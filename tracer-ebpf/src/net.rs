//! TCP connect and state changes, from tracepoints only (this path must work on kernels
//! without kprobes/fentry).
//!
//! `sys_enter_connect` remembers the destination per thread; `inet_sock_set_state`
//! CLOSE -> SYN_SENT, which runs inside the same `connect(2)` in process context, adds the
//! kernel socket address; `sys_exit_connect` reports both with the return code. Later state
//! changes (SYN_SENT -> ESTABLISHED runs in softirq, with no useful pid) are joined to the
//! connect by that socket address.
use aya_ebpf::{
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use tracer_common::{
    AF_INET, AF_INET6, CONNECT_AT_SYN, CONNECT_ERRNO_UNSEEN, CONNECT_TCP, ConnectEvent, EventKind, SockAddr, SockErrorEvent,
    TcpStateEvent,
};

use crate::common::{CallArgs, CallRet, header, now, pid_tgid, read_user_sockaddr, submit, tp_bytes16, tp_field};
use crate::dns;
use crate::filter;

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
    dns::remember_connected(fd, &dst);
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
    if pending.flags & CONNECT_TCP != 0 && pending.dst.port == 53 {
        dns::mark_tcp(pending.fd);
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

// sock:inet_sock_set_state field offsets (checked against the format file by the daemon).
const SS_SKADDR: usize = 8;
const SS_OLDSTATE: usize = 16;
const SS_NEWSTATE: usize = 20;
const SS_SPORT: usize = 24;
const SS_DPORT: usize = 26;
const SS_FAMILY: usize = 28;
const SS_PROTOCOL: usize = 30;
const SS_SADDR: usize = 32;
const SS_DADDR: usize = 36;
const SS_SADDR_V6: usize = 40;
const SS_DADDR_V6: usize = 56;

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    match try_set_state(&ctx) {
        Ok(r) | Err(r) => r,
    }
}

#[inline(always)]
fn read_addr(ctx: &TracePointContext, family: u16, port_off: usize, v4: usize, v6: usize) -> SockAddr {
    let port: u16 = tp_field(ctx, port_off);
    let mut a = SockAddr { family, port, _pad: 0, addr: [0; 16] };
    if family == AF_INET6 {
        a.addr = tp_bytes16(ctx, v6);
    } else if family == AF_INET {
        let b = tp_field::<u32>(ctx, v4).to_ne_bytes();
        a.addr[0] = b[0];
        a.addr[1] = b[1];
        a.addr[2] = b[2];
        a.addr[3] = b[3];
    }
    a
}

fn try_set_state(ctx: &TracePointContext) -> Result<u32, u32> {
    let protocol: u16 = tp_field(ctx, SS_PROTOCOL);
    if protocol != IPPROTO_TCP {
        return Ok(0);
    }
    let skaddr: u64 = tp_field(ctx, SS_SKADDR);
    let oldstate: i32 = tp_field(ctx, SS_OLDSTATE);
    let newstate: i32 = tp_field(ctx, SS_NEWSTATE);
    let family: u16 = tp_field(ctx, SS_FAMILY);

    // Only the sockets of clients (and, with a filter, a traced process's listening ones) are
    // reported, kept by socket address: softirq transitions (SYN_SENT -> ESTABLISHED, -> CLOSE
    // on a RST) run with whatever task was interrupted. Accepted sockets (SYN_RECV -> ...) are
    // servers' and are not stitched: on a machine that also serves, they were half of the
    // state records (a loopback connect storm: 6 state changes per connect, 3 of them the
    // server's).
    if filter::sock_traced(skaddr) {
        if newstate == TCP_CLOSE {
            filter::remove_sock(skaddr);
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

    let ev = TcpStateEvent {
        header: header(EventKind::TcpState, core::mem::size_of::<TcpStateEvent>()),
        skaddr,
        oldstate,
        newstate,
        src: read_addr(ctx, family, SS_SPORT, SS_SADDR, SS_SADDR_V6),
        dst: read_addr(ctx, family, SS_DPORT, SS_DADDR, SS_DADDR_V6),
        protocol,
        _pad: [0; 6],
    };
    submit(&ev, EventKind::TcpState);
    Ok(0)
}

// sock:inet_sk_error_report field offsets.
const ER_ERROR: usize = 8;
const ER_SPORT: usize = 12;
const ER_DPORT: usize = 14;
const ER_FAMILY: usize = 16;
const ER_PROTOCOL: usize = 18;
const ER_SADDR: usize = 20;
const ER_DADDR: usize = 24;
const ER_SADDR_V6: usize = 28;
const ER_DADDR_V6: usize = 44;

/// Why a connection failed: ECONNREFUSED after a RST, ETIMEDOUT after SYN retries, ICMP
/// errors on UDP (a DNS server that is not there).
#[tracepoint]
pub fn inet_sk_error_report(ctx: TracePointContext) -> u32 {
    match try_error_report(&ctx) {
        Ok(r) | Err(r) => r,
    }
}

fn try_error_report(ctx: &TracePointContext) -> Result<u32, u32> {
    let error: i32 = tp_field(ctx, ER_ERROR);
    if error == 0 {
        // The kernel reports again as the error is taken (sock_error): nothing to say.
        return Ok(0);
    }
    let family: u16 = tp_field(ctx, ER_FAMILY);
    let protocol: u16 = tp_field(ctx, ER_PROTOCOL);
    let dst = read_addr(ctx, family, ER_DPORT, ER_DADDR, ER_DADDR_V6);
    if filter::enabled() && !filter::flow_traced(&dst) {
        return Ok(0);
    }
    let ev = SockErrorEvent {
        header: header(EventKind::SockError, core::mem::size_of::<SockErrorEvent>()),
        error,
        protocol,
        _pad: 0,
        src: read_addr(ctx, family, ER_SPORT, ER_SADDR, ER_SADDR_V6),
        dst,
    };
    submit(&ev, EventKind::SockError);
    Ok(0)
}
