//! Socket calls at libc's boundary, for the client filter (`--pid`, `--comm`, `-- COMMAND`).
//!
//! Unfiltered, connect, DNS and plain HTTP are seen at syscall tracepoints. But enabling any
//! syscall tracepoint sends every system call of every process through the kernel's slow
//! path, so with the filter on an untraced server paid for tracing it did not ask for
//! (benchmark 4: nginx at 0.89 of its speed). With the filter on, the daemon attaches these
//! programs instead, as uprobes on libc's functions of the same names, enabled only in the
//! traced processes (`tracer::probes::per_process::SharedUprobes`), and no syscall
//! tracepoint at all.
//! Each is a thin wrapper around the very function the tracepoint uses: the arguments are
//! the same, read from registers. What this path cannot see: DNS and plain HTTP made without
//! libc (static binaries, Go) or before the process's uprobes are in, and a connect's errno
//! when it fails before any SYN. Connects libc's probes miss are caught at their SYN
//! (`connect_without_libc`).
use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel,
    macros::{btf_tracepoint, uprobe, uretprobe},
    programs::{BtfTracePointContext, ProbeContext, RetProbeContext},
};
use tracer_common::DnsSyscall;

use crate::common::NoAddr;
use crate::{dns, filter, net, sock};

macro_rules! entry {
    ($name:ident, $body:expr) => {
        #[uprobe]
        pub fn $name(ctx: ProbeContext) -> u32 {
            match ($body)(&ctx) {
                Ok(r) | Err(r) => r,
            }
        }
    };
}

entry!(libc_connect, net::try_enter_connect);

#[uretprobe]
pub fn libc_connect_ret(ctx: RetProbeContext) -> u32 {
    match net::try_exit_connect(&ctx, true) {
        Ok(r) | Err(r) => r,
    }
}

entry!(libc_write, dns::on_write);
entry!(libc_send, |ctx| dns::on_sendto(&NoAddr(ctx)));
entry!(libc_sendto, dns::on_sendto);
entry!(libc_sendmsg, dns::on_sendmsg);
entry!(libc_sendmmsg, dns::on_sendmmsg);
entry!(libc_writev, dns::on_writev);

entry!(libc_read, |ctx| dns::enter_recv(ctx, DnsSyscall::Read));
// recv(fd, buf, len, flags) is recvfrom without an address: the same capture.
entry!(libc_recv, |ctx| dns::enter_recv(ctx, DnsSyscall::Recvfrom));
entry!(libc_recvfrom, |ctx| dns::enter_recv(ctx, DnsSyscall::Recvfrom));
entry!(libc_recvmsg, |ctx| dns::enter_recv(ctx, DnsSyscall::Recvmsg));
entry!(libc_recvmmsg, |ctx| dns::enter_recv(ctx, DnsSyscall::Recvmmsg));
entry!(libc_readv, |ctx| dns::enter_recv(ctx, DnsSyscall::Readv));

/// One return program for every receive: the pending entry says which call it was.
#[uretprobe]
pub fn libc_recv_ret(ctx: RetProbeContext) -> u32 {
    match dns::exit_recv(&ctx) {
        Ok(r) | Err(r) => r,
    }
}

// Also at `__close_nocancel`, which glibc's resolver closes its sockets with.
entry!(libc_close, dns::on_close);

/// x86_64 `struct pt_regs`: where the saved user registers of a system call are
/// (arch/x86/include/asm/ptrace.h: a kernel ABI, the layout of every syscall entry).
const PT_REGS_SI: usize = 13 * 8;
const PT_REGS_DI: usize = 14 * 8;
const PT_REGS_ORIG_AX: usize = 15 * 8;
const NR_CONNECT: u64 = 42;

/// A saved user register of the current task's system call.
#[inline(always)]
fn syscall_reg(regs: u64, offset: usize) -> Result<u64, u32> {
    let mut v: u64 = 0;
    let r = unsafe { bpf_probe_read_kernel(&mut v as *mut u64 as *mut _, 8, (regs + offset as u64) as *const _) };
    if r < 0 { Err(0) } else { Ok(v) }
}

/// A TCP connect that no libc probe saw: made before the process's uprobes were in (a
/// program `--comm` caught at its exec gets them a few ms later), or by a raw system call
/// (static binaries, Go). Its CLOSE -> SYN_SENT runs inside connect(2), in the caller's
/// context, so the fd and the address are the syscall's arguments, in the task's saved
/// user registers (`bpf_task_pt_regs`, tp_btf only). Reported there and then: the outcome
/// comes with the state changes and error report, as for any non-blocking connect.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn connect_without_libc(ctx: BtfTracePointContext) -> u32 {
    match try_connect_without_libc(&ctx) {
        Ok(r) | Err(r) => r,
    }
}

/// [`connect_without_libc`] for kernels without `bpf_task_pt_regs` (5.15+) or
/// `bpf_get_current_task_btf` (5.11+), such as 5.10: the saved user registers are the top of
/// the task's kernel stack (`task_struct.stack` + THREAD_SIZE - sizeof(struct pt_regs), as
/// `task_pt_regs()` computes them on x86_64), `stack` at its offset from the kernel's BTF.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn connect_without_libc_stack(ctx: BtfTracePointContext) -> u32 {
    match try_connect_at_syn(&ctx, sock::regs_on_stack) {
        Ok(r) | Err(r) => r,
    }
}

fn try_connect_without_libc(ctx: &BtfTracePointContext) -> Result<u32, u32> {
    try_connect_at_syn(ctx, sock::regs_by_helper)
}

#[inline(always)]
fn try_connect_at_syn(ctx: &BtfTracePointContext, user_regs: impl Fn() -> u64) -> Result<u32, u32> {
    // Only attached with the filter on; the constant makes the rest dead code otherwise.
    if !filter::enabled() {
        return Ok(0);
    }
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    if !net::is_connect_start(old, new) || filter::skip() || net::connect_in_flight() {
        return Ok(0);
    }
    let regs = user_regs();
    if regs == 0 || syscall_reg(regs, PT_REGS_ORIG_AX)? != NR_CONNECT {
        // io_uring and the like: not a connect(2) of this task.
        return Ok(0);
    }
    let sk: u64 = ctx.arg(0);
    net::report_connect_at_syn(sk, syscall_reg(regs, PT_REGS_DI)? as i32, syscall_reg(regs, PT_REGS_SI)?)
}
