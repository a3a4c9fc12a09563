//! Socket calls at libc's boundary, for the client filter (`--pid`, `--comm`, `-- COMMAND`).
//!
//! Unfiltered, connect, DNS and plain HTTP are seen at syscall tracepoints. But enabling any
//! syscall tracepoint sends every system call of every process through the kernel's slow
//! path, so with the filter on an untraced server paid for tracing it did not ask for
//! (benchmark 4: nginx at 0.89 of its speed). With the filter on, the daemon attaches these
//! programs instead, as uprobes on libc's functions of the same names, enabled only in the
//! traced processes (`tracer::filter::SharedUprobes`), and no syscall tracepoint at all.
//! Each is a thin wrapper around the very function the tracepoint uses: the arguments are
//! the same, read from registers. What this path cannot see: system calls made without
//! libc (static binaries, Go), and a connect's errno when it fails before any SYN.
use aya_ebpf::{
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::DnsSyscall;

use crate::common::NoAddr;
use crate::{dns, net};

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
