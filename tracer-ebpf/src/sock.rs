//! The socket calls at the socket layer, not at the syscall tracepoints: the `sock:`
//! tracepoints on 6.3+, kprobes at `inet_sendmsg` / `inet_recvmsg` before that.
//!
//! Any enabled `syscalls:` tracepoint sends every system call of every process through the
//! kernel's tracing slow path (a task flag set on every task): `dd bs=1` ran at half its
//! speed under an unfiltered daemon. `sock:sock_send_length` and `sock:sock_recv_length`
//! fire only from `sock_sendmsg` / `sock_recvmsg`, so only socket work pays for them:
//! `write`/`read`/`writev`/`readv` on a socket, `send*`/`recv*`, one firing per message of
//! `sendmmsg`/`recvmmsg`. They fire after the call: a send's bytes are still in the user's
//! buffer, a receive's are already there, and `ret` is what moved.
//!
//! Their arguments are `(struct sock *sk, int ret, int flags)`; the system call's own (fd,
//! buffer, msghdr, mmsghdr, destination) are its saved user registers, read through
//! `bpf_task_pt_regs` (tp_btf, 5.15+) as `libc::connect_without_libc` does: `orig_ax` is the
//! syscall's number, `di`, `si`, `dx`, `r10`, `r8` its arguments. A firing from anything but
//! one of the socket system calls below (io_uring, sendfile, splice, the kernel's own
//! sockets) is left alone.
//!
//! Kernels before 6.3 (Debian's 5.10 and 6.1) have no `sock_send_length`; they have kprobes:
//! the `kprobe` variant ([`sock_call_entry`] and its returns) sees the same calls one step
//! further in, at the address family's send and receive, and reads the user registers from
//! the top of the task's kernel stack (5.10 has no `bpf_task_pt_regs`).
//!
//! Which sockets are watched (the same as at the syscall tracepoints, `crate::dns`):
//! - port 53 (DNS): a socket whose peer is port 53 (its `skc_dport`), UDP or TCP, needs no
//!   map at all; an unconnected UDP socket becomes a DNS socket when it sends to port 53
//!   (kept in [`SOCKETS`] by socket address until LRU expiry: UDP has no close to see);
//! - ports 80 and 443 (plain HTTP, the TLS wire capture's first 16 calls): TCP sockets whose
//!   connect was seen ([`remember_sk`], from either connect variant), removed at their state
//!   change to CLOSE (`net::try_set_state`), so no `close(2)` probe is needed.
//!
//! Every other socket costs one kernel read (its peer port) and a compare.
use aya_ebpf::{
    helpers::generated::{bpf_get_current_task, bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_task_pt_regs},
    macros::{btf_tracepoint, kprobe, kretprobe, map},
    maps::{LruHashMap, PerCpuArray},
    programs::{BtfTracePointContext, ProbeContext, RetProbeContext},
};
use tracer_common::{
    AF_INET, AF_INET6, DIR_RECV, DIR_SEND, DNS_FLAG_TCP, DnsSyscall, EventKind,
    QUIC_CAPTURE_MAX, QUIC_HEAD, QuicDatagramEvent, SockAddr, TlsLib,
    layout::{PT_REGS_SIZE, THREAD_SIZE},
};

use crate::common::{header, now, pid_tgid, read_kernel, read_user_sockaddr, submit_cut};
use crate::dns::{
    self, IoVec, KIND_DNS, KIND_PLAIN, KIND_WIRE, MMSG_MAX, MMSGHDR_SIZE, PLAIN_IOV_MAX, SOCKETS, Socket, WIRE_CALLS,
};
use crate::{filter, koff, net, tls};

/// Set by the `dns` family's `sock_length` variant (`tracer_common::layout::SOCK_HOOKS`).
#[unsafe(no_mangle)]
static SOCK_HOOKS: u32 = 0;

/// Set by the `tls_fd` family's `sock_length` variant (`tracer_common::layout::SOCK_TLS_FD`).
#[unsafe(no_mangle)]
static SOCK_TLS_FD: u32 = 0;

#[inline(always)]
pub fn hooks_on() -> bool {
    unsafe { core::ptr::read_volatile(&SOCK_HOOKS) != 0 }
}

#[inline(always)]
fn tls_fd_on() -> bool {
    unsafe { core::ptr::read_volatile(&SOCK_TLS_FD) != 0 }
}

const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;

/// A UDP socket to or from port 443 (QUIC): its first [`QUIC_CALLS`] calls are captured.
const KIND_QUIC: u8 = 4;
/// Sends and receives captured per QUIC socket: the handshake (the client's Initials, the
/// server's Initial and Handshake flights, the client's first 1-RTT packets) and the first
/// exchanges; past them the datagrams are ciphertext of no use here.
const QUIC_CALLS: u32 = 64;

// x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl: a kernel ABI).
const NR_READ: u64 = 0;
const NR_WRITE: u64 = 1;
const NR_READV: u64 = 19;
const NR_WRITEV: u64 = 20;
const NR_CONNECT: u64 = 42;
const NR_SENDTO: u64 = 44;
const NR_RECVFROM: u64 = 45;
const NR_SENDMSG: u64 = 46;
const NR_RECVMSG: u64 = 47;
const NR_RECVMMSG: u64 = 299;
const NR_SENDMMSG: u64 = 307;

/// `__USER_CS`: the saved registers are a 64-bit user task's system call (a kernel thread's
/// are zero, a 32-bit task's numbers are another table).
const USER_CS: u64 = 0x33;

/// The saved user registers this module reads, `struct pt_regs` from `r10` to `cs`
/// (arch/x86/include/asm/ptrace.h), read with one helper call.
#[repr(C)]
#[derive(Clone, Copy)]
struct Regs {
    r10: u64,
    r9: u64,
    r8: u64,
    ax: u64,
    cx: u64,
    dx: u64,
    si: u64,
    di: u64,
    orig_ax: u64,
    ip: u64,
    cs: u64,
}

/// Offset of `r10` in `struct pt_regs` (r15, r14, r13, r12, bp, bx, r11 come first).
const PT_REGS_R10: u64 = 7 * 8;

/// Where the current task's saved user registers are, by `bpf_task_pt_regs` (5.15+, and
/// `bpf_get_current_task_btf` 5.11+: tp_btf programs on 6.1 and later).
#[inline(always)]
pub fn regs_by_helper() -> u64 {
    unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as u64 }
}

/// Where the current task's saved user registers are on kernels without those helpers (5.10):
/// the top of its kernel stack (`task_struct.stack` + THREAD_SIZE - sizeof(struct pt_regs),
/// as `task_pt_regs()` computes them on x86_64), `stack` at its offset from the kernel's BTF.
#[inline(always)]
pub fn regs_on_stack() -> u64 {
    let task = unsafe { bpf_get_current_task() };
    let stack: u64 = read_kernel(task, koff!(task_stack));
    if stack == 0 { 0 } else { stack + THREAD_SIZE - PT_REGS_SIZE }
}

/// The current task's system call: its number and arguments, when it is a 64-bit user
/// task's. `regs`: where its saved user registers are ([`regs_by_helper`], [`regs_on_stack`]).
#[inline(always)]
fn syscall_regs(regs: impl Fn() -> u64) -> Option<Regs> {
    let regs = regs();
    if regs == 0 {
        return None;
    }
    let mut r = core::mem::MaybeUninit::<Regs>::uninit();
    let rc = unsafe {
        bpf_probe_read_kernel(r.as_mut_ptr() as *mut _, core::mem::size_of::<Regs>() as u32, (regs + PT_REGS_R10) as *const _)
    };
    if rc < 0 {
        return None;
    }
    let r = unsafe { r.assume_init() };
    if r.cs != USER_CS { None } else { Some(r) }
}

/// The record's syscall for a socket system call's number; None for anything else.
#[inline(always)]
fn syscall_of(nr: u64) -> Option<DnsSyscall> {
    match nr {
        NR_WRITE => Some(DnsSyscall::Write),
        NR_READ => Some(DnsSyscall::Read),
        NR_SENDTO => Some(DnsSyscall::Sendto),
        NR_RECVFROM => Some(DnsSyscall::Recvfrom),
        NR_SENDMSG => Some(DnsSyscall::Sendmsg),
        NR_RECVMSG => Some(DnsSyscall::Recvmsg),
        NR_SENDMMSG => Some(DnsSyscall::Sendmmsg),
        NR_RECVMMSG => Some(DnsSyscall::Recvmmsg),
        NR_WRITEV => Some(DnsSyscall::Writev),
        NR_READV => Some(DnsSyscall::Readv),
        _ => None,
    }
}

/// `sk`'s peer (address and port) from the socket itself.
#[inline(always)]
fn sk_peer(sk: u64, family: u16, port: u16) -> SockAddr {
    let mut a = SockAddr { family, port, _pad: 0, addr: [0; 16] };
    if family == AF_INET6 {
        a.addr = read_kernel(sk, koff!(skc_v6_daddr));
    } else if family == AF_INET {
        let v4: [u8; 4] = read_kernel(sk, koff!(skc_daddr));
        a.addr[0] = v4[0];
        a.addr[1] = v4[1];
        a.addr[2] = v4[2];
        a.addr[3] = v4[3];
    }
    a
}

/// A TCP socket connecting to port 53, 80 or 443 is watched from now on (called where a
/// connect is seen with its socket: the SYN, or the syscall's exit). Other ports: nothing.
#[inline(always)]
pub fn remember_sk(sk: u64, dst: &SockAddr) {
    let (kind, budget, flags) = match dst.port {
        53 => (KIND_DNS, 0, DNS_FLAG_TCP),
        80 => (KIND_PLAIN, 0, 0),
        443 => (KIND_WIRE, WIRE_CALLS, 0),
        _ => return,
    };
    if sk == 0 {
        return;
    }
    let s = Socket { peer: *dst, kind, flags, _pad: [0; 2], budget };
    let _ = SOCKETS.insert(&sk, &s, 0);
}

/// A TCP socket's end (its state change to CLOSE): forget it. A lookup first: a delete locks
/// its bucket even for a key that is not there, and most sockets are not watched.
#[inline(always)]
pub fn forget_sk(sk: u64) {
    if unsafe { SOCKETS.get(&sk) }.is_some() {
        let _ = SOCKETS.remove(&sk);
    }
}

/// What [`SOCKETS`] gives for a socket it does not hold.
const UNWATCHED: Socket =
    Socket { peer: SockAddr { family: 0, port: 0, _pad: 0, addr: [0; 16] }, kind: 0, flags: 0, _pad: [0; 2], budget: 0 };

/// Where a `sendmmsg`/`recvmmsg` is: the tracepoint fires once per message, and only the
/// order says which. By thread; removed after the call's last message, at its first failed
/// one, and (LRU) when a call ended without either (a message that failed before reaching
/// the socket, a `recvmmsg` timeout): the next call on another array, or of another
/// length, starts again at 0.
#[derive(Clone, Copy)]
#[repr(C)]
struct MmsgPos {
    /// The `struct mmsghdr` array.
    base: u64,
    vlen: u32,
    /// The message the next firing is about.
    next: u32,
}

#[map]
static MMSG_POS: LruHashMap<u64, MmsgPos> = LruHashMap::with_max_entries(4096, 0);

/// The index of this firing's message in its `sendmmsg`/`recvmmsg`, and the position kept
/// for the next firing.
#[inline(always)]
fn mmsg_index(base: u64, vlen: u64, ret: i32) -> u64 {
    let id = pid_tgid();
    let vlen = (vlen & 0xffff_ffff) as u32;
    let mut i: u32 = 0;
    let mut kept = false;
    if let Some(p) = unsafe { MMSG_POS.get(&id) } {
        kept = true;
        if p.base == base && p.vlen == vlen && p.next < vlen {
            i = p.next;
        }
    }
    if ret <= 0 || i + 1 >= vlen {
        if kept {
            let _ = MMSG_POS.remove(&id);
        }
    } else {
        let _ = MMSG_POS.insert(&id, &MmsgPos { base, vlen, next: i + 1 }, 0);
    }
    i as u64
}

#[btf_tracepoint(function = "sock_send_length")]
pub fn sock_send_length(ctx: BtfTracePointContext) -> u32 {
    match try_sock_call(ctx.arg(0), ctx.arg(1), DIR_SEND, regs_by_helper) {
        Ok(r) | Err(r) => r,
    }
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn sock_recv_length(ctx: BtfTracePointContext) -> u32 {
    match try_sock_call(ctx.arg(0), ctx.arg(1), DIR_RECV, regs_by_helper) {
        Ok(r) | Err(r) => r,
    }
}

/// The `dns` family's `kprobe` variant (kernels before 6.3, which have no
/// `sock_send_length`: Debian's 5.10 and 6.1): the same calls at `inet_sendmsg` /
/// `inet_recvmsg` and their IPv6 twins, which every send and receive on an IPv4 or IPv6
/// socket passes through (`sock_sendmsg_nosec` / `sock_recvmsg_nosec` call them, where the
/// tracepoints fire on 6.3+), and nothing else does. The entry keeps the socket of a call
/// worth a look by task (one kernel read and a compare for the rest); the return reads what
/// moved, as the tracepoints do. The user registers are read from the kernel stack (5.10 has
/// no `bpf_task_pt_regs`).
#[kprobe]
pub fn sock_call_entry(ctx: ProbeContext) -> u32 {
    match try_sock_call_entry(&ctx) {
        Ok(r) | Err(r) => r,
    }
}

#[kretprobe]
pub fn sock_send_return(ctx: RetProbeContext) -> u32 {
    match try_sock_call_return(&ctx, DIR_SEND) {
        Ok(r) | Err(r) => r,
    }
}

#[kretprobe]
pub fn sock_recv_return(ctx: RetProbeContext) -> u32 {
    match try_sock_call_return(&ctx, DIR_RECV) {
        Ok(r) | Err(r) => r,
    }
}

/// The socket of each task's socket call in flight (kprobe variant), from its entry to its
/// return. LRU: a return the kernel missed (more blocked calls than kretprobe instances)
/// leaves an entry that the next call of the task overwrites, or that ages out.
#[map]
static SOCK_CALLS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(4096, 0);

#[inline(always)]
fn try_sock_call_entry(ctx: &ProbeContext) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    // inet_sendmsg(struct socket *sock, ...), inet_recvmsg(struct socket *sock, ...).
    let sock: u64 = ctx.arg(0).ok_or(0u32)?;
    let sk: u64 = read_kernel(sock, koff!(socket_sk));
    if sk == 0 {
        return Ok(0);
    }
    let port = u16::from_be(read_kernel::<u16>(sk, koff!(skc_dport)));
    if !watched(port) && !learning() {
        return Ok(0);
    }
    SOCK_CALLS.insert(&pid_tgid(), &sk, 0).map_err(|_| 0u32)?;
    Ok(0)
}

// Inlined into each return program: a frame of its own (464 bytes of stack) between the
// program's and `read_user_bytes`'s took the three past the verifier's 512 for all frames
// together ("combined stack size of 3 calls is 544").
#[inline(always)]
fn try_sock_call_return(ctx: &RetProbeContext, dir: u8) -> Result<u32, u32> {
    let key = pid_tgid();
    let sk = match unsafe { SOCK_CALLS.get(&key) } {
        Some(sk) => *sk,
        None => return Ok(0),
    };
    let _ = SOCK_CALLS.remove(&key);
    let ret: i64 = ctx.ret();
    try_sock_call(sk, ret as i32, dir, regs_on_stack)
}

/// The peer ports whose sockets the socket-layer programs look at: DNS, plain HTTP, the
/// port-443 wire capture and QUIC, and 0 (unconnected UDP: DNS or QUIC by destination).
#[inline(always)]
fn watched(port: u16) -> bool {
    port == 53 || port == 80 || port == 443 || port == 0
}

/// Only while some TLS call lacks its fd (nearly never): this call's fd is it.
#[inline(always)]
fn learning() -> bool {
    tls_fd_on() && tls::fd_unknown()
}

/// One socket call of `sk` that moved `ret` bytes (or failed), either direction, from any
/// socket-layer variant; `regs`: where the task's saved user registers are.
#[inline(always)]
fn try_sock_call(sk: u64, ret: i32, dir: u8, regs: impl Fn() -> u64) -> Result<u32, u32> {
    if filter::skip() {
        return Ok(0);
    }
    let learn = learning();
    let port = u16::from_be(read_kernel::<u16>(sk, koff!(skc_dport)));
    let watched = watched(port);
    if !watched && !learn {
        return Ok(0);
    }
    let mut family: u16 = 0;
    if watched {
        family = read_kernel::<u16>(sk, koff!(skc_family));
    }
    let inet = family == AF_INET || family == AF_INET6;
    if !inet && !learn {
        // Unix sockets (port 0) and the rest.
        return Ok(0);
    }
    let regs = syscall_regs(regs).ok_or(0u32)?;
    let syscall = syscall_of(regs.orig_ax).ok_or(0u32)?;
    let fd = regs.di as i32;
    if learn {
        tls::learn_fd(fd);
    }
    if !inet || !hooks_on() {
        return Ok(0);
    }
    if port == 53 {
        let flags = if read_kernel::<u16>(sk, koff!(sk_protocol)) == IPPROTO_TCP { DNS_FLAG_TCP } else { 0 };
        let s = Socket { peer: sk_peer(sk, family, port), kind: KIND_DNS, flags, _pad: [0; 2], budget: 0 };
        return dns_call(&regs, syscall, fd, dir, ret, &s);
    }
    // Not an Option: a None's payload is undefined, and the verifier refuses a copy of it
    // that the compiler makes (an uninitialised register spilled). Kind 0: not watched.
    let known: Socket = match unsafe { SOCKETS.get(&sk) } {
        Some(s) => *s,
        None => UNWATCHED,
    };
    if port == 443 && read_kernel::<u16>(sk, koff!(sk_protocol)) == IPPROTO_UDP {
        return quic_call(sk, &regs, syscall, fd, dir, ret, &known, sk_peer(sk, family, port), family);
    }
    if port == 0 && dir == DIR_RECV && known.kind == KIND_QUIC {
        return quic_call(sk, &regs, syscall, fd, dir, ret, &known, known.peer, family);
    }
    if port == 0 {
        // An unconnected socket: DNS when it sends to port 53; its receives are DNS once it
        // has (the map). Each send is checked: a UDP socket's memory is reused by the next
        // one, and a mark seen on a send elsewhere is dropped.
        let s = if dir == DIR_SEND {
            match send_destination(&regs, syscall) {
                Some(peer) if peer.port == 443 => {
                    return quic_call(sk, &regs, syscall, fd, dir, ret, &known, peer, family);
                }
                Some(peer) if peer.port == 53 => {
                    let s = Socket { peer, kind: KIND_DNS, flags: 0, _pad: [0; 2], budget: 0 };
                    if known.kind != KIND_DNS {
                        let _ = SOCKETS.insert(&sk, &s, 0);
                    }
                    s
                }
                _ => {
                    if known.kind != 0 {
                        let _ = SOCKETS.remove(&sk);
                    }
                    return Ok(0);
                }
            }
        } else if known.kind == KIND_DNS {
            known
        } else {
            return Ok(0);
        };
        return dns_call(&regs, syscall, fd, dir, ret, &s);
    }
    // Ports 80 and 443: TCP sockets whose connect was seen.
    if known.kind == 0 {
        return Ok(0);
    }
    let s = known;
    if ret <= 0 || !dns::capture(sk, &s, true) {
        return Ok(0);
    }
    data_call(&regs, syscall, fd, dir, ret as u64)
}

/// One record for the datagrams of one call on a QUIC socket (see [`KIND_QUIC`]); kept by
/// socket address with its peer. A socket is taken on at a send that starts with a QUIC
/// long header (a client's Initial), not at a receive (a flow older than the daemon); its
/// budget starts again when such a send goes to another peer or after the budget ran out
/// (UDP socket memory is reused by the next socket, which has no close to see).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn quic_call(
    sk: u64,
    regs: &Regs,
    syscall: DnsSyscall,
    fd: i32,
    dir: u8,
    ret: i32,
    known: &Socket,
    peer: SockAddr,
    family: u16,
) -> Result<u32, u32> {
    // Which message of a sendmmsg/recvmmsg, and where its bytes and control data are.
    let (buf, msg) = match syscall {
        DnsSyscall::Write | DnsSyscall::Read | DnsSyscall::Sendto | DnsSyscall::Recvfrom => (regs.si, 0),
        DnsSyscall::Sendmsg | DnsSyscall::Recvmsg => (0, regs.si),
        DnsSyscall::Sendmmsg | DnsSyscall::Recvmmsg => (0, regs.si + mmsg_index(regs.si, regs.dx, ret) * MMSGHDR_SIZE),
        DnsSyscall::Writev | DnsSyscall::Readv => {
            let v: IoVec = unsafe { aya_ebpf::helpers::bpf_probe_read_user(regs.si as *const IoVec) }.map_err(|_| 0u32)?;
            (v.base, 0)
        }
    };
    if ret <= 0 {
        return Ok(0);
    }
    let mut segment: u16 = 0;
    let buf = if msg != 0 {
        let m = dns::read_msghdr(msg).ok_or(0u32)?;
        segment = cmsg_segment(&m, if dir == DIR_SEND { UDP_SEGMENT } else { UDP_GRO });
        dns::first_iov(&m).ok_or(0u32)?.base
    } else {
        buf
    };
    let mine = known.kind == KIND_QUIC && known.peer == peer;
    let spend = match mine {
        true if known.budget > 0 => true,
        _ => {
            // Not taken on (or spent): only a client's long-header send starts it (again).
            if dir != DIR_SEND {
                return Ok(0);
            }
            let first: u8 = unsafe { aya_ebpf::helpers::bpf_probe_read_user(buf as *const u8) }.map_err(|_| 0u32)?;
            if first & 0xc0 != 0xc0 {
                return Ok(0);
            }
            let s = Socket { peer, kind: KIND_QUIC, flags: 0, _pad: [0; 2], budget: QUIC_CALLS - 1 };
            let _ = SOCKETS.insert(&sk, &s, 0);
            false
        }
    };
    if spend && let Some(s) = SOCKETS.get_ptr_mut(&sk) {
        unsafe {
            if (*s).kind == KIND_QUIC && (*s).budget > 0 {
                (*s).budget -= 1;
            }
        }
    }
    let Some(ev) = QUIC_SCRATCH.get_ptr_mut(0) else { return Ok(0) };
    unsafe {
        (*ev).header = header(EventKind::QuicDatagram, 0);
        (*ev).fd = fd;
        (*ev).len = ret as u32;
        (*ev).segment = segment;
        (*ev).direction = dir;
        (*ev).syscall = syscall as u8;
        (*ev).local = sk_local(sk, family);
        (*ev).peer = peer;
        // Clamped, then masked on a value the compiler cannot see through: the verifier must
        // find the bound on the very register the helper gets (LLVM reused the unclamped
        // length otherwise, and the load was refused).
        let mut want = ret as u64;
        if want > QUIC_CAPTURE_MASK {
            want = QUIC_CAPTURE_MASK;
        }
        let want = core::ptr::read_volatile(&want) & QUIC_CAPTURE_MASK;
        let got = if want > 0
            && aya_ebpf::helpers::generated::bpf_probe_read_user((*ev).data.as_mut_ptr() as *mut _, want as u32, buf as *const _) == 0
        {
            want as u32
        } else {
            0
        };
        (*ev).captured = got;
        submit_cut(ev, QUIC_HEAD, got, EventKind::QuicDatagram);
    }
    Ok(0)
}

/// Bytes of a call a QUIC record holds at most: [`QUIC_CAPTURE_MAX`] - 1, a mask.
const QUIC_CAPTURE_MASK: u64 = QUIC_CAPTURE_MAX as u64 - 1;
const _: () = assert!(QUIC_CAPTURE_MAX.is_power_of_two());

/// Where a QUIC record is assembled (too large for the stack).
#[map]
static QUIC_SCRATCH: PerCpuArray<QuicDatagramEvent> = PerCpuArray::with_max_entries(1, 0);

/// `SOL_UDP` control messages: `UDP_SEGMENT` (a send's GSO segment size, u16) and
/// `UDP_GRO` (a receive's GRO segment size, int).
const SOL_UDP: u64 = 17;
const UDP_SEGMENT: u64 = 103;
const UDP_GRO: u64 = 104;

/// The GSO/GRO segment size among a msghdr's first control messages (0: none). A receive's
/// messages are already in the user's buffer when the tracepoint fires; its `msg_controllen`
/// is set only after, so the walk stops at the first empty header.
#[inline(always)]
fn cmsg_segment(m: &dns::MsgHdr, want: u64) -> u16 {
    if m.control == 0 {
        return 0;
    }
    let mut off = 0u64;
    let mut i = 0;
    while i < 4 {
        if off + 16 > m.controllen {
            break;
        }
        // struct cmsghdr: size_t len; int level; int type; then the data.
        let Ok(h) = (unsafe { aya_ebpf::helpers::bpf_probe_read_user((m.control + off) as *const [u64; 2]) }) else { break };
        let (len, level, ty) = (h[0], h[1] & 0xffff_ffff, h[1] >> 32);
        if len < 16 {
            break;
        }
        if level == SOL_UDP && ty == want {
            let v: u16 = unsafe { aya_ebpf::helpers::bpf_probe_read_user((m.control + off + 16) as *const u16) }.unwrap_or(0);
            return v;
        }
        off += (len + 7) & !7;
        i += 1;
    }
    0
}

/// `sk`'s own address and port.
#[inline(always)]
fn sk_local(sk: u64, family: u16) -> SockAddr {
    let mut a = SockAddr { family, port: read_kernel::<u16>(sk, koff!(skc_num)), _pad: 0, addr: [0; 16] };
    if family == AF_INET6 {
        a.addr = read_kernel(sk, koff!(skc_v6_rcv_saddr));
    } else if family == AF_INET {
        let v4: [u8; 4] = read_kernel(sk, koff!(skc_rcv_saddr));
        a.addr[0] = v4[0];
        a.addr[1] = v4[1];
        a.addr[2] = v4[2];
        a.addr[3] = v4[3];
    }
    a
}

/// Where a send on an unconnected socket goes: `sendto`'s address, `sendmsg`'s
/// `msg_name`, the first message's of `sendmmsg`.
#[inline(always)]
fn send_destination(regs: &Regs, syscall: DnsSyscall) -> Option<SockAddr> {
    let name = match syscall {
        DnsSyscall::Sendto => regs.r8,
        DnsSyscall::Sendmsg | DnsSyscall::Sendmmsg => dns::read_msghdr(regs.si)?.name,
        _ => return None,
    };
    read_user_sockaddr(name)
}

/// One DNS message moved by this firing (`ret` bytes): where its bytes are depends on the
/// system call.
#[inline(always)]
fn dns_call(regs: &Regs, syscall: DnsSyscall, fd: i32, dir: u8, ret: i32, s: &Socket) -> Result<u32, u32> {
    let (buf, len) = match syscall {
        DnsSyscall::Write | DnsSyscall::Read | DnsSyscall::Sendto | DnsSyscall::Recvfrom => {
            if ret <= 0 {
                return Ok(0);
            }
            (regs.si, ret as u64)
        }
        DnsSyscall::Sendmsg | DnsSyscall::Recvmsg => {
            if ret <= 0 {
                return Ok(0);
            }
            iov_of(regs.si, ret)?
        }
        DnsSyscall::Sendmmsg | DnsSyscall::Recvmmsg => {
            let i = mmsg_index(regs.si, regs.dx, ret);
            if ret <= 0 || i >= MMSG_MAX {
                return Ok(0);
            }
            iov_of(regs.si + i * MMSGHDR_SIZE, ret)?
        }
        // Not how resolvers write (and not captured at the syscall tracepoints either).
        DnsSyscall::Writev | DnsSyscall::Readv => return Ok(0),
    };
    dns::emit(fd, buf, len, dir, syscall, s);
    Ok(0)
}

/// The first iovec of the msghdr at `msg`, cut to the `ret` bytes the message moved.
#[inline(always)]
fn iov_of(msg: u64, ret: i32) -> Result<(u64, u64), u32> {
    let m = dns::read_msghdr(msg).ok_or(0u32)?;
    let v = dns::first_iov(&m).ok_or(0u32)?;
    let n = if (ret as u64) < v.len { ret as u64 } else { v.len };
    Ok((v.base, n))
}

/// Data (`ret` > 0 bytes) of a port-80 socket, or of a port-443 socket within its budget,
/// in the plain socket data record, as at the syscall tracepoints.
#[inline(always)]
fn data_call(regs: &Regs, syscall: DnsSyscall, fd: i32, dir: u8, ret: u64) -> Result<u32, u32> {
    let start = now();
    match syscall {
        DnsSyscall::Write | DnsSyscall::Read | DnsSyscall::Sendto | DnsSyscall::Recvfrom => {
            dns::emit_plain(fd, regs.si, ret, dir, syscall, start);
        }
        DnsSyscall::Sendmsg | DnsSyscall::Recvmsg => {
            let m = dns::read_msghdr(regs.si).ok_or(0u32)?;
            iovs(fd, m.iov, m.iovlen, ret, dir, syscall, start);
        }
        DnsSyscall::Writev | DnsSyscall::Readv => {
            if !tls_fd_on() {
                return Ok(0);
            }
            iovs(fd, regs.si, regs.dx, ret, dir, syscall, start);
        }
        // Not used on HTTP's TCP sockets.
        DnsSyscall::Sendmmsg | DnsSyscall::Recvmmsg => {}
    }
    Ok(0)
}

/// The first [`PLAIN_IOV_MAX`] iovecs of a call that moved `ret` bytes, each cut to what of
/// `ret` is left (a receive fills them in order).
#[inline(always)]
fn iovs(fd: i32, iov: u64, iovlen: u64, ret: u64, dir: u8, syscall: DnsSyscall, start: u64) {
    let mut left = ret;
    let mut i = 0u64;
    while i < PLAIN_IOV_MAX && i < iovlen && left > 0 {
        if let Ok(v) = unsafe { aya_ebpf::helpers::bpf_probe_read_user((iov + i * 16) as *const IoVec) } {
            let n = if v.len < left { v.len } else { left };
            if n > 0 {
                dns::emit_plain(fd, v.base, n, dir, syscall, start);
            }
            left -= n;
        }
        i += 1;
    }
}

/// The `tcp_connect` family's `tp_btf` variant: every TCP connect, at its CLOSE -> SYN_SENT,
/// which runs inside connect(2) in the caller's context (no `syscalls:` tracepoint). The
/// destination is the socket's; the fd is connect(2)'s first argument (-1 for a connect made
/// otherwise: io_uring, the kernel's own sockets). Reported with EINPROGRESS: the outcome comes with the state changes
/// and the error report, as for any non-blocking connect.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn connect_at_syn(ctx: BtfTracePointContext) -> u32 {
    match try_connect_at_syn(&ctx, regs_by_helper) {
        Ok(r) | Err(r) => r,
    }
}

/// [`connect_at_syn`] for kernels without `bpf_task_pt_regs` (5.10): the fd from the user
/// registers at the top of the task's kernel stack.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn connect_at_syn_stack(ctx: BtfTracePointContext) -> u32 {
    match try_connect_at_syn(&ctx, regs_on_stack) {
        Ok(r) | Err(r) => r,
    }
}

#[inline(always)]
fn try_connect_at_syn(ctx: &BtfTracePointContext, regs: impl Fn() -> u64) -> Result<u32, u32> {
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    if !net::is_connect_start(old, new) || filter::skip() {
        return Ok(0);
    }
    let sk: u64 = ctx.arg(0);
    let family = read_kernel::<u16>(sk, koff!(skc_family));
    let port = u16::from_be(read_kernel::<u16>(sk, koff!(skc_dport)));
    let dst = sk_peer(sk, family, port);
    // connect(2), or a TCP Fast Open send (sendto/sendmsg with MSG_FASTOPEN connects).
    let fd = match syscall_regs(regs) {
        Some(r) if r.orig_ax == NR_CONNECT || r.orig_ax == NR_SENDTO || r.orig_ax == NR_SENDMSG => r.di as i32,
        _ => -1,
    };
    if filter::enabled() {
        // Error reports carry no socket address: keep those about this destination.
        filter::add_flow(&dst);
    }
    if hooks_on() {
        remember_sk(sk, &dst);
    }
    net::submit_connect_at_syn(sk, fd, dst)
}

#[allow(dead_code)]
const _: () = assert!(core::mem::size_of::<Regs>() == 88 && TlsLib::None as u8 == 0);
