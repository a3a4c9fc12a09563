//! DNS messages over port 53, captured at the system calls real resolvers use here:
//! glibc (`connect` + `sendmmsg` of A and AAAA, `recvfrom`), Chromium (`connect` + `sendto`,
//! `read`/`recvfrom`), and `sendmsg`/`recvmsg`/`recvmmsg` users.
//!
//! A socket becomes a DNS socket when it is connected to port 53 or sends to port 53; its
//! receives are then captured too. The map is cleaned on `close(2)` and bounded by LRU.
//!
//! The same syscall programs also let the TLS probes learn which fd a TLS object writes to
//! (see `tls::learn_fd`), so the hot read/write tracepoints are attached once, not twice.
use aya_ebpf::{
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap},
    programs::TracePointContext,
};
use tracer_common::{
    DIR_RECV, DIR_SEND, DNS_CAPTURE_MAX, DNS_FLAG_TCP, DnsEvent, DnsSyscall, EventKind, SockAddr,
    TlsLib,
};

use crate::common::{
    EVENTS, count_lost, fd_key, header, now, pid_tgid, read_user_bytes, read_user_sockaddr,
    wakeup_flags,
};
use crate::filter;
use crate::tls;

#[derive(Clone, Copy)]
#[repr(C)]
pub struct DnsSocket {
    pub peer: SockAddr,
    pub flags: u8,
    pub _pad: [u8; 7],
}

/// Sockets talking to port 53, by (tgid, fd).
#[map]
static DNS_SOCKETS: LruHashMap<u64, DnsSocket> = LruHashMap::with_max_entries(16384, 0);

#[derive(Clone, Copy)]
#[repr(C)]
struct PendingRecv {
    /// Buffer (read, recvfrom) or `struct msghdr *` / `struct mmsghdr *`.
    ptr: u64,
    start_ns: u64,
    fd: i32,
    syscall: u8,
    /// 1: a port-80 socket (plain HTTP), 0: a DNS socket.
    plain: u8,
    _pad: [u8; 2],
}

/// TCP sockets connected to port 80, by (tgid, fd): their plaintext is HTTP without TLS.
/// Cleaned on close; LRU-bounded.
#[map]
static PLAIN_SOCKETS: LruHashMap<u64, u8> = LruHashMap::with_max_entries(16384, 0);

/// TCP sockets connected to port 443, by (tgid, fd) -> calls left to capture. Their first
/// records on the wire (ClientHello with SNI and ALPN, the server's answer, the first
/// application data) time the handshake and name the server even where no TLS library is
/// probed; after the budget the ciphertext is of no use, so capture stops. LRU-bounded,
/// cleaned on close.
#[map]
static WIRE_SOCKETS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(16384, 0);
const WIRE_CALLS: u32 = 16;

pub fn remember_wire_socket(fd: i32) {
    let tgid = (pid_tgid() >> 32) as u32;
    let _ = WIRE_SOCKETS.insert(&fd_key(tgid, fd), &WIRE_CALLS, 0);
}

/// Whether this call on `fd` is captured: a port-80 socket always, a port-443 socket while
/// its budget lasts. `spend`: this call moves data now (sends); receives check at entry and
/// spend at exit, only when bytes arrived (non-blocking reads often return EAGAIN).
#[inline(always)]
fn capture_socket(fd: i32, spend: bool) -> bool {
    if is_plain_socket(fd) {
        return true;
    }
    let tgid = (pid_tgid() >> 32) as u32;
    let key = fd_key(tgid, fd);
    let Some(left) = WIRE_SOCKETS.get_ptr_mut(&key) else { return false };
    unsafe {
        if *left == 0 {
            let _ = WIRE_SOCKETS.remove(&key);
            return false;
        }
        if spend {
            *left -= 1;
        }
    }
    true
}

#[inline(always)]
fn spend_wire_budget(fd: i32) {
    let tgid = (pid_tgid() >> 32) as u32;
    if let Some(left) = WIRE_SOCKETS.get_ptr_mut(&fd_key(tgid, fd)) {
        unsafe {
            if *left > 0 {
                *left -= 1;
            }
        }
    }
}

pub fn remember_plain_socket(fd: i32) {
    let tgid = (pid_tgid() >> 32) as u32;
    let _ = PLAIN_SOCKETS.insert(&fd_key(tgid, fd), &1, 0);
}

#[inline(always)]
fn is_plain_socket(fd: i32) -> bool {
    let tgid = (pid_tgid() >> 32) as u32;
    unsafe { PLAIN_SOCKETS.get(&fd_key(tgid, fd)) }.is_some()
}

/// Report plaintext moved on a port-80 socket, in the TLS data record layout.
#[inline(always)]
fn emit_plain(fd: i32, buf: u64, len: u64, dir: u8, syscall: DnsSyscall, start_ns: u64) {
    let call = tls::TlsCall {
        start_ns,
        obj: 0,
        buf,
        ex_len: 0,
        fd,
        depth: 0,
        lib: TlsLib::None as u8,
        func: syscall as u8,
        direction: dir,
        _pad: 0,
        _pad2: 0,
    };
    tls::emit_plaintext(EventKind::SocketData, &call, len);
}

/// Receives in flight on DNS and port-80 sockets, by thread. Removed at syscall exit on every path.
#[map]
static RECVS: HashMap<u64, PendingRecv> = HashMap::with_max_entries(8192, 0);

pub fn remember_socket(fd: i32, peer: &SockAddr) {
    let tgid = (pid_tgid() >> 32) as u32;
    let s = DnsSocket { peer: *peer, flags: 0, _pad: [0; 7] };
    let _ = DNS_SOCKETS.insert(&fd_key(tgid, fd), &s, 0);
}

pub fn mark_tcp(fd: i32) {
    let tgid = (pid_tgid() >> 32) as u32;
    if let Some(s) = DNS_SOCKETS.get_ptr_mut(&fd_key(tgid, fd)) {
        unsafe { (*s).flags |= DNS_FLAG_TCP };
    }
}

#[inline(always)]
fn dns_socket(fd: i32) -> Option<DnsSocket> {
    let tgid = (pid_tgid() >> 32) as u32;
    unsafe { DNS_SOCKETS.get(&fd_key(tgid, fd)) }.copied()
}

/// Report one DNS message found at user address `buf`.
#[inline(always)]
fn emit(fd: i32, buf: u64, len: u64, dir: u8, syscall: DnsSyscall, sock: &DnsSocket) {
    let Some(mut entry) = EVENTS.reserve::<DnsEvent>(0) else {
        count_lost(EventKind::Dns);
        return;
    };
    let ev = entry.as_mut_ptr();
    unsafe {
        (*ev).header = header(EventKind::Dns, core::mem::size_of::<DnsEvent>());
        (*ev).fd = fd;
        (*ev).len = len as u32;
        (*ev).direction = dir;
        (*ev).syscall = syscall as u8;
        (*ev).flags = sock.flags;
        (*ev)._pad = 0;
        (*ev).peer = sock.peer;
        (*ev).captured =
            read_user_bytes((*ev).data.as_mut_ptr(), buf, len, DNS_CAPTURE_MAX);
    }
    entry.submit(wakeup_flags());
}

/// `struct msghdr` as user space lays it out on 64-bit.
#[repr(C)]
#[derive(Clone, Copy)]
struct MsgHdr {
    name: u64,
    namelen: u32,
    _pad0: u32,
    iov: u64,
    iovlen: u64,
    control: u64,
    controllen: u64,
    flags: u32,
    _pad1: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct IoVec {
    base: u64,
    len: u64,
}

/// `struct mmsghdr`: a msghdr and the byte count of that message.
const MMSGHDR_SIZE: u64 = 64;
const MMSG_LEN_OFFSET: u64 = 56;
/// glibc sends two (A + AAAA); a few more are cheap.
const MMSG_MAX: u64 = 4;

#[inline(always)]
fn read_msghdr(ptr: u64) -> Option<MsgHdr> {
    if ptr == 0 {
        return None;
    }
    unsafe { aya_ebpf::helpers::bpf_probe_read_user(ptr as *const MsgHdr) }.ok()
}

#[inline(always)]
fn first_iov(msg: &MsgHdr) -> Option<IoVec> {
    if msg.iov == 0 || msg.iovlen == 0 {
        return None;
    }
    unsafe { aya_ebpf::helpers::bpf_probe_read_user(msg.iov as *const IoVec) }.ok()
}

/// A socket that names port 53 as destination becomes a DNS socket.
#[inline(always)]
fn socket_for_send(fd: i32, dest: u64) -> Option<DnsSocket> {
    if let Some(s) = dns_socket(fd) {
        return Some(s);
    }
    let addr = read_user_sockaddr(dest)?;
    if addr.port != 53 {
        return None;
    }
    remember_socket(fd, &addr);
    dns_socket(fd)
}

macro_rules! tp {
    ($name:ident, $body:ident) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            match $body(&ctx) {
                Ok(r) | Err(r) => r,
            }
        }
    };
}

#[inline(always)]
fn arg(ctx: &TracePointContext, n: usize) -> Result<u64, u32> {
    unsafe { ctx.read_at::<u64>(16 + 8 * n) }.map_err(|_| 0u32)
}

// ---- sends ----

tp!(sys_enter_write, try_write);
fn try_write(ctx: &TracePointContext) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    let fd = arg(ctx, 0)? as i32;
    tls::learn_fd(fd);
    if capture_socket(fd, true) {
        emit_plain(fd, arg(ctx, 1)?, arg(ctx, 2)?, DIR_SEND, DnsSyscall::Write, now());
        return Ok(0);
    }
    if let Some(s) = dns_socket(fd) {
        emit(fd, arg(ctx, 1)?, arg(ctx, 2)?, DIR_SEND, DnsSyscall::Write, &s);
    }
    Ok(0)
}

tp!(sys_enter_sendto, try_sendto);
fn try_sendto(ctx: &TracePointContext) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    let fd = arg(ctx, 0)? as i32;
    tls::learn_fd(fd);
    if capture_socket(fd, true) {
        emit_plain(fd, arg(ctx, 1)?, arg(ctx, 2)?, DIR_SEND, DnsSyscall::Sendto, now());
        return Ok(0);
    }
    if let Some(s) = socket_for_send(fd, arg(ctx, 4)?) {
        emit(fd, arg(ctx, 1)?, arg(ctx, 2)?, DIR_SEND, DnsSyscall::Sendto, &s);
    }
    Ok(0)
}

tp!(sys_enter_sendmsg, try_sendmsg);
fn try_sendmsg(ctx: &TracePointContext) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    let fd = arg(ctx, 0)? as i32;
    tls::learn_fd(fd);
    if capture_socket(fd, true) {
        let msg = read_msghdr(arg(ctx, 1)?).ok_or(0u32)?;
        emit_plain_iovs(fd, msg.iov, msg.iovlen, DnsSyscall::Sendmsg);
        return Ok(0);
    }
    let known = dns_socket(fd);
    // Reading the msghdr costs a copy: only do it for DNS sockets or unknown ones.
    let msg = read_msghdr(arg(ctx, 1)?).ok_or(0u32)?;
    let sock = match known {
        Some(s) => s,
        None => socket_for_send(fd, msg.name).ok_or(0u32)?,
    };
    let iov = first_iov(&msg).ok_or(0u32)?;
    emit(fd, iov.base, iov.len, DIR_SEND, DnsSyscall::Sendmsg, &sock);
    Ok(0)
}

tp!(sys_enter_sendmmsg, try_sendmmsg);
fn try_sendmmsg(ctx: &TracePointContext) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    let fd = arg(ctx, 0)? as i32;
    let mmsg = arg(ctx, 1)?;
    let vlen = arg(ctx, 2)? & 0xffff_ffff;
    let first = read_msghdr(mmsg).ok_or(0u32)?;
    let sock = match dns_socket(fd) {
        Some(s) => s,
        None => socket_for_send(fd, first.name).ok_or(0u32)?,
    };
    let mut i = 0u64;
    while i < MMSG_MAX && i < vlen {
        if let Some(msg) = read_msghdr(mmsg + i * MMSGHDR_SIZE) {
            if let Some(iov) = first_iov(&msg) {
                emit(fd, iov.base, iov.len, DIR_SEND, DnsSyscall::Sendmmsg, &sock);
            }
        }
        i += 1;
    }
    Ok(0)
}

/// iovecs of one writev/sendmsg reported on a port-80 socket (HTTP/1 clients such as
/// hyper write head and body with one writev).
const PLAIN_IOV_MAX: u64 = 4;

#[inline(always)]
fn emit_plain_iovs(fd: i32, iov: u64, iovlen: u64, syscall: DnsSyscall) {
    let start = now();
    let mut i = 0u64;
    while i < PLAIN_IOV_MAX && i < iovlen {
        if let Ok(v) = unsafe { aya_ebpf::helpers::bpf_probe_read_user((iov + i * 16) as *const IoVec) } {
            if v.len > 0 {
                emit_plain(fd, v.base, v.len, DIR_SEND, syscall, start);
            }
        }
        i += 1;
    }
}

// writev: TLS fd learning, and plain HTTP.
tp!(sys_enter_writev, try_writev);
fn try_writev(ctx: &TracePointContext) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    let fd = arg(ctx, 0)? as i32;
    tls::learn_fd(fd);
    if capture_socket(fd, true) {
        emit_plain_iovs(fd, arg(ctx, 1)?, arg(ctx, 2)?, DnsSyscall::Writev);
    }
    Ok(0)
}

tp!(sys_enter_readv, try_readv);
fn try_readv(ctx: &TracePointContext) -> Result<u32, u32> {
    enter_recv(ctx, DnsSyscall::Readv)
}

// ---- receives: remember the buffer at entry, copy what arrived at exit ----

#[inline(always)]
fn enter_recv(ctx: &TracePointContext, syscall: DnsSyscall) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    let fd = arg(ctx, 0)? as i32;
    tls::learn_fd(fd);
    let plain = matches!(syscall, DnsSyscall::Read | DnsSyscall::Recvfrom | DnsSyscall::Readv) && capture_socket(fd, false);
    if syscall == DnsSyscall::Readv && !plain {
        return Ok(0);
    }
    if !plain && dns_socket(fd).is_none() {
        return Ok(0);
    }
    let p = PendingRecv {
        ptr: arg(ctx, 1)?,
        start_ns: now(),
        fd,
        syscall: syscall as u8,
        plain: plain as u8,
        _pad: [0; 2],
    };
    let _ = RECVS.insert(&pid_tgid(), &p, 0);
    Ok(0)
}

#[inline(always)]
fn exit_recv(ctx: &TracePointContext) -> Result<u32, u32> {
    // No filter check: only a traced enter_recv made the entry looked up here.
    let id = pid_tgid();
    let p = match unsafe { RECVS.get(&id) } {
        Some(p) => *p,
        None => return Ok(0),
    };
    let _ = RECVS.remove(&id);
    let ret: i64 = unsafe { ctx.read_at(16) }.map_err(|_| 0u32)?;
    if ret <= 0 {
        return Ok(0);
    }
    if p.plain != 0 {
        spend_wire_budget(p.fd);
        let syscall = DnsSyscall::from_u8(p.syscall).ok_or(0u32)?;
        if syscall == DnsSyscall::Readv {
            // The first iovec: where a reader's data starts.
            let v: IoVec = unsafe { aya_ebpf::helpers::bpf_probe_read_user(p.ptr as *const IoVec) }.map_err(|_| 0u32)?;
            let n = if (ret as u64) < v.len { ret as u64 } else { v.len };
            emit_plain(p.fd, v.base, n, DIR_RECV, syscall, p.start_ns);
        } else {
            emit_plain(p.fd, p.ptr, ret as u64, DIR_RECV, syscall, p.start_ns);
        }
        return Ok(0);
    }
    let sock = dns_socket(p.fd).ok_or(0u32)?;
    let syscall = DnsSyscall::from_u8(p.syscall).ok_or(0u32)?;
    match syscall {
        DnsSyscall::Read | DnsSyscall::Recvfrom => {
            emit(p.fd, p.ptr, ret as u64, DIR_RECV, syscall, &sock);
        }
        DnsSyscall::Recvmsg => {
            let msg = read_msghdr(p.ptr).ok_or(0u32)?;
            let iov = first_iov(&msg).ok_or(0u32)?;
            let n = if (ret as u64) < iov.len { ret as u64 } else { iov.len };
            emit(p.fd, iov.base, n, DIR_RECV, syscall, &sock);
        }
        DnsSyscall::Recvmmsg => {
            // ret is the number of messages received.
            let mut i = 0u64;
            while i < MMSG_MAX && i < ret as u64 {
                let at = p.ptr + i * MMSGHDR_SIZE;
                if let Some(msg) = read_msghdr(at) {
                    let got: u32 = unsafe {
                        aya_ebpf::helpers::bpf_probe_read_user((at + MMSG_LEN_OFFSET) as *const u32)
                    }
                    .unwrap_or(0);
                    if let Some(iov) = first_iov(&msg) {
                        emit(p.fd, iov.base, got as u64, DIR_RECV, syscall, &sock);
                    }
                }
                i += 1;
            }
        }
        _ => {}
    }
    Ok(0)
}

tp!(sys_enter_read, try_enter_read);
fn try_enter_read(ctx: &TracePointContext) -> Result<u32, u32> {
    enter_recv(ctx, DnsSyscall::Read)
}
tp!(sys_enter_recvfrom, try_enter_recvfrom);
fn try_enter_recvfrom(ctx: &TracePointContext) -> Result<u32, u32> {
    enter_recv(ctx, DnsSyscall::Recvfrom)
}
tp!(sys_enter_recvmsg, try_enter_recvmsg);
fn try_enter_recvmsg(ctx: &TracePointContext) -> Result<u32, u32> {
    enter_recv(ctx, DnsSyscall::Recvmsg)
}
tp!(sys_enter_recvmmsg, try_enter_recvmmsg);
fn try_enter_recvmmsg(ctx: &TracePointContext) -> Result<u32, u32> {
    enter_recv(ctx, DnsSyscall::Recvmmsg)
}
// One exit program serves read, recvfrom, recvmsg and recvmmsg: the pending entry says which.
tp!(sys_exit_recv, exit_recv);

tp!(sys_enter_close, try_close);
fn try_close(ctx: &TracePointContext) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    let fd = arg(ctx, 0)? as i32;
    let tgid = (pid_tgid() >> 32) as u32;
    let _ = DNS_SOCKETS.remove(&fd_key(tgid, fd));
    let _ = PLAIN_SOCKETS.remove(&fd_key(tgid, fd));
    let _ = WIRE_SOCKETS.remove(&fd_key(tgid, fd));
    Ok(0)
}

#[allow(dead_code)]
const _: () = assert!(DNS_CAPTURE_MAX == 512);
