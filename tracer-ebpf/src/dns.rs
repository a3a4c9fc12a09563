//! DNS messages over port 53, captured at the system calls real resolvers use here:
//! glibc (`connect` + `sendmmsg` of A and AAAA, `recvfrom`), Chromium (`connect` + `sendto`,
//! `read`/`recvfrom`), and `sendmsg`/`recvmsg`/`recvmmsg` users.
//!
//! A socket becomes a DNS socket when it is connected to port 53 or sends to port 53; its
//! receives are then captured too. The map is cleaned on `close(2)` and bounded by LRU.
//!
//! With the client filter on, the same functions run from libc uprobes in the traced
//! processes instead (`crate::libc`): the arguments are the same, read from registers.
//!
//! The same syscall programs also let the TLS probes learn which fd a TLS object writes to
//! (see `tls::learn_fd`), so the hot read/write tracepoints are attached once, not twice.
use aya_ebpf::{
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::TracePointContext,
};
use tracer_common::{
    DIR_RECV, DIR_SEND, DNS_CAPTURE_MAX, DNS_FLAG_TCP, DNS_HEAD, DnsEvent, DnsSyscall, EventKind, SockAddr,
    TlsLib,
};

use crate::common::{
    CallArgs, CallRet, fd_key, header, now, pid_tgid, read_user_bytes, read_user_sockaddr, submit_cut,
};
use crate::filter;
use crate::tls;

/// What a watched socket is, by (tgid, fd): one map, so that each read, write and close of
/// every process costs one lookup here, not one per kind.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Socket {
    /// The destination (DNS sockets: the server, reported with each message).
    pub peer: SockAddr,
    pub kind: u8,
    /// DNS_FLAG_TCP for a DNS socket over TCP.
    pub flags: u8,
    pub _pad: [u8; 2],
    /// Wire sockets: calls left to capture.
    pub budget: u32,
}

/// Talks to port 53: its messages are DNS.
pub const KIND_DNS: u8 = 1;
/// A TCP socket connected to port 80: its traffic is HTTP without TLS.
pub const KIND_PLAIN: u8 = 2;
/// A TCP socket connected to port 443: its first records on the wire (ClientHello with SNI
/// and ALPN, the server's answer, the first application data) time the handshake and name
/// the server even where no TLS library is probed; after the budget the ciphertext is of no
/// use, so capture stops.
pub const KIND_WIRE: u8 = 3;
pub const WIRE_CALLS: u32 = 16;

/// Sockets talking to port 53, 80 or 443, by (tgid, fd) at the syscall tracepoints (cleaned
/// on `close(2)`), or by kernel socket address at the socket-layer hooks (`crate::sock`:
/// cleaned at the TCP state change to CLOSE). The two kinds of key cannot meet: a kernel
/// address has its top bits set, a tgid is below 2^22. LRU-bounded.
#[map]
pub static SOCKETS: LruHashMap<u64, Socket> = LruHashMap::with_max_entries(16384, 0);

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

#[inline(always)]
pub fn key_of(fd: i32) -> u64 {
    fd_key((pid_tgid() >> 32) as u32, fd)
}

#[inline(always)]
fn remember(fd: i32, kind: u8, peer: &SockAddr, budget: u32) {
    let s = Socket { peer: *peer, kind, flags: 0, _pad: [0; 2], budget };
    let _ = SOCKETS.insert(&key_of(fd), &s, 0);
}

/// Called at connect: a socket to port 53, 80 or 443 is watched from now on.
pub fn remember_connected(fd: i32, dst: &SockAddr) {
    match dst.port {
        53 => remember(fd, KIND_DNS, dst, 0),
        // Plain HTTP: marked now, used only once the connect is on its way; a UDP socket to
        // port 80 carries no HTTP/1 and is ignored by the decoder.
        80 => remember(fd, KIND_PLAIN, dst, 0),
        443 => remember(fd, KIND_WIRE, dst, WIRE_CALLS),
        // With the filter, closes are seen at libc, and glibc also closes by inlined
        // syscalls: an fd's old kind must not stick to its next socket. (Unfiltered, the
        // close tracepoint sees them all, and the connect path stays one lookup shorter.)
        _ => {
            if filter::enabled() {
                let _ = SOCKETS.remove(&key_of(fd));
            }
        }
    }
}

/// The one lookup of a read or write: what this socket is, if it is watched.
#[inline(always)]
fn socket(fd: i32) -> Option<Socket> {
    unsafe { SOCKETS.get(&key_of(fd)) }.copied()
}

/// Whether this call on a watched socket is captured as plaintext: a port-80 socket always,
/// a port-443 socket while its budget lasts. `spend`: this call moves data now (sends);
/// receives check at entry and spend at exit, only when bytes arrived (non-blocking reads
/// often return EAGAIN).
#[inline(always)]
pub fn capture(key: u64, s: &Socket, spend: bool) -> bool {
    match s.kind {
        KIND_PLAIN => true,
        KIND_WIRE => {
            if s.budget == 0 {
                return false;
            }
            if spend {
                spend_wire_budget(key);
            }
            true
        }
        _ => false,
    }
}

/// One call of a port-443 socket's budget spent (`key`: its [`SOCKETS`] key).
#[inline(always)]
pub fn spend_wire_budget(key: u64) {
    if let Some(s) = SOCKETS.get_ptr_mut(&key) {
        unsafe {
            if (*s).kind == KIND_WIRE && (*s).budget > 0 {
                (*s).budget -= 1;
            }
        }
    }
}

/// Report plaintext moved on a port-80 socket, in the TLS data record layout.
#[inline(always)]
pub fn emit_plain(fd: i32, buf: u64, len: u64, dir: u8, syscall: DnsSyscall, start_ns: u64) {
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
        fd_cached: 0,
        _pad2: 0,
    };
    tls::emit_plaintext(EventKind::SocketData, &call, len);
}

/// Receives in flight on DNS and port-80 sockets, by thread. Removed at syscall exit on every path.
#[map]
static RECVS: HashMap<u64, PendingRecv> = HashMap::with_max_entries(8192, 0);

pub fn mark_tcp(fd: i32) {
    if let Some(s) = SOCKETS.get_ptr_mut(&key_of(fd)) {
        unsafe {
            if (*s).kind == KIND_DNS {
                (*s).flags |= DNS_FLAG_TCP;
            }
        }
    }
}

/// Where a DNS record is built before it is sent cut to its message's length (the ring
/// buffer's reserve takes a constant size).
#[map]
static DNS_SCRATCH: PerCpuArray<DnsEvent> = PerCpuArray::with_max_entries(1, 0);

/// Report one DNS message found at user address `buf`.
#[inline(always)]
pub fn emit(fd: i32, buf: u64, len: u64, dir: u8, syscall: DnsSyscall, sock: &Socket) {
    let Some(ev) = DNS_SCRATCH.get_ptr_mut(0) else { return };
    unsafe {
        (*ev).header = header(EventKind::Dns, 0);
        (*ev).fd = fd;
        (*ev).len = len as u32;
        (*ev).direction = dir;
        (*ev).syscall = syscall as u8;
        (*ev).flags = sock.flags;
        (*ev)._pad = 0;
        (*ev).peer = sock.peer;
        let got = read_user_bytes((*ev).data.as_mut_ptr(), buf, len, DNS_CAPTURE_MAX);
        (*ev).captured = got;
        submit_cut(ev, DNS_HEAD, got, EventKind::Dns);
    }
}

/// `struct msghdr` as user space lays it out on 64-bit.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MsgHdr {
    pub name: u64,
    pub namelen: u32,
    pub _pad0: u32,
    pub iov: u64,
    pub iovlen: u64,
    pub control: u64,
    pub controllen: u64,
    pub flags: u32,
    pub _pad1: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct IoVec {
    pub base: u64,
    pub len: u64,
}

/// `struct mmsghdr`: a msghdr and the byte count of that message.
pub const MMSGHDR_SIZE: u64 = 64;
const MMSG_LEN_OFFSET: u64 = 56;
/// glibc sends two (A + AAAA); a few more are cheap.
pub const MMSG_MAX: u64 = 4;

#[inline(always)]
pub fn read_msghdr(ptr: u64) -> Option<MsgHdr> {
    if ptr == 0 {
        return None;
    }
    unsafe { aya_ebpf::helpers::bpf_probe_read_user(ptr as *const MsgHdr) }.ok()
}

#[inline(always)]
pub fn first_iov(msg: &MsgHdr) -> Option<IoVec> {
    if msg.iov == 0 || msg.iovlen == 0 {
        return None;
    }
    unsafe { aya_ebpf::helpers::bpf_probe_read_user(msg.iov as *const IoVec) }.ok()
}

/// A socket that is not watched and names port 53 as destination becomes a DNS socket.
#[inline(always)]
fn socket_for_send(fd: i32, known: Option<Socket>, dest: u64) -> Option<Socket> {
    if let Some(s) = known {
        return if s.kind == KIND_DNS { Some(s) } else { None };
    }
    let addr = read_user_sockaddr(dest)?;
    if addr.port != 53 {
        return None;
    }
    remember(fd, KIND_DNS, &addr, 0);
    socket(fd)
}

macro_rules! tp {
    ($name:ident, $body:expr) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            match ($body)(&ctx) {
                Ok(r) | Err(r) => r,
            }
        }
    };
}

// ---- sends ----

tp!(sys_enter_write, on_write);
pub fn on_write<A: CallArgs>(ctx: &A) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    let fd = ctx.get(0)? as i32;
    tls::learn_fd(fd);
    let Some(s) = socket(fd) else { return Ok(0) };
    if capture(key_of(fd), &s, true) {
        emit_plain(fd, ctx.get(1)?, ctx.get(2)?, DIR_SEND, DnsSyscall::Write, now());
    } else if s.kind == KIND_DNS {
        emit(fd, ctx.get(1)?, ctx.get(2)?, DIR_SEND, DnsSyscall::Write, &s);
    }
    Ok(0)
}

tp!(sys_enter_sendto, on_sendto);
/// Also `send` (through [`NoAddr`](crate::common::NoAddr)).
pub fn on_sendto<A: CallArgs>(ctx: &A) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    let fd = ctx.get(0)? as i32;
    tls::learn_fd(fd);
    let known = socket(fd);
    if let Some(s) = &known
        && capture(key_of(fd), s, true)
    {
        emit_plain(fd, ctx.get(1)?, ctx.get(2)?, DIR_SEND, DnsSyscall::Sendto, now());
        return Ok(0);
    }
    if let Some(s) = socket_for_send(fd, known, ctx.get(4)?) {
        emit(fd, ctx.get(1)?, ctx.get(2)?, DIR_SEND, DnsSyscall::Sendto, &s);
    }
    Ok(0)
}

tp!(sys_enter_sendmsg, on_sendmsg);
pub fn on_sendmsg<A: CallArgs>(ctx: &A) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    let fd = ctx.get(0)? as i32;
    tls::learn_fd(fd);
    let known = socket(fd);
    if let Some(s) = &known {
        if capture(key_of(fd), s, true) {
            let msg = read_msghdr(ctx.get(1)?).ok_or(0u32)?;
            emit_plain_iovs(fd, msg.iov, msg.iovlen, DnsSyscall::Sendmsg);
            return Ok(0);
        }
        if s.kind != KIND_DNS {
            return Ok(0);
        }
    }
    // Reading the msghdr costs a copy: only done for DNS sockets and unknown ones.
    let msg = read_msghdr(ctx.get(1)?).ok_or(0u32)?;
    let sock = socket_for_send(fd, known, msg.name).ok_or(0u32)?;
    let iov = first_iov(&msg).ok_or(0u32)?;
    emit(fd, iov.base, iov.len, DIR_SEND, DnsSyscall::Sendmsg, &sock);
    Ok(0)
}

tp!(sys_enter_sendmmsg, on_sendmmsg);
pub fn on_sendmmsg<A: CallArgs>(ctx: &A) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    let fd = ctx.get(0)? as i32;
    let mmsg = ctx.get(1)?;
    let vlen = ctx.get(2)? & 0xffff_ffff;
    let first = read_msghdr(mmsg).ok_or(0u32)?;
    let sock = socket_for_send(fd, socket(fd), first.name).ok_or(0u32)?;
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
pub const PLAIN_IOV_MAX: u64 = 4;

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
tp!(sys_enter_writev, on_writev);
pub fn on_writev<A: CallArgs>(ctx: &A) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    let fd = ctx.get(0)? as i32;
    tls::learn_fd(fd);
    if let Some(s) = socket(fd)
        && capture(key_of(fd), &s, true)
    {
        emit_plain_iovs(fd, ctx.get(1)?, ctx.get(2)?, DnsSyscall::Writev);
    }
    Ok(0)
}

tp!(sys_enter_readv, |ctx| enter_recv(ctx, DnsSyscall::Readv));

// ---- receives: remember the buffer at entry, copy what arrived at exit ----

#[inline(always)]
pub fn enter_recv<A: CallArgs>(ctx: &A, syscall: DnsSyscall) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    let fd = ctx.get(0)? as i32;
    tls::learn_fd(fd);
    let Some(s) = socket(fd) else { return Ok(0) };
    let plain = matches!(syscall, DnsSyscall::Read | DnsSyscall::Recvfrom | DnsSyscall::Readv) && capture(key_of(fd), &s, false);
    if syscall == DnsSyscall::Readv && !plain {
        return Ok(0);
    }
    if !plain && s.kind != KIND_DNS {
        return Ok(0);
    }
    let p = PendingRecv {
        ptr: ctx.get(1)?,
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
pub fn exit_recv<R: CallRet>(ctx: &R) -> Result<u32, u32> {
    // No filter check: only a traced enter_recv made the entry looked up here.
    let id = pid_tgid();
    let p = match unsafe { RECVS.get(&id) } {
        Some(p) => *p,
        None => return Ok(0),
    };
    let _ = RECVS.remove(&id);
    let mut ret = ctx.ret()?;
    if p.syscall == DnsSyscall::Recvmmsg as u8 {
        // recvmmsg returns an int: libc leaves the upper half of the register undefined.
        ret = ret as i32 as i64;
    }
    if ret <= 0 {
        return Ok(0);
    }
    if p.plain != 0 {
        spend_wire_budget(key_of(p.fd));
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
    let sock = socket(p.fd).ok_or(0u32)?;
    if sock.kind != KIND_DNS {
        return Ok(0);
    }
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

tp!(sys_enter_read, |ctx| enter_recv(ctx, DnsSyscall::Read));
tp!(sys_enter_recvfrom, |ctx| enter_recv(ctx, DnsSyscall::Recvfrom));
tp!(sys_enter_recvmsg, |ctx| enter_recv(ctx, DnsSyscall::Recvmsg));
tp!(sys_enter_recvmmsg, |ctx| enter_recv(ctx, DnsSyscall::Recvmmsg));
// One exit program serves read, recvfrom, recvmsg and recvmmsg: the pending entry says which.
tp!(sys_exit_recv, exit_recv);

tp!(sys_enter_close, on_close);
pub fn on_close<A: CallArgs>(ctx: &A) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    let key = key_of(ctx.get(0)? as i32);
    // A delete takes the bucket's lock even when the key is not there; a lookup does not.
    // Nearly every close is of an fd nobody watches.
    if unsafe { SOCKETS.get(&key) }.is_some() {
        let _ = SOCKETS.remove(&key);
    }
    Ok(0)
}

#[allow(dead_code)]
const _: () = assert!(DNS_CAPTURE_MAX == 512);
