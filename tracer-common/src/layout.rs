//! Where this kernel keeps what the programs read, set by the daemon at load time.
//!
//! Tracepoint records change layout between kernels (`sched:sched_process_fork` keeps
//! `child_pid` at offset 44 on 6.1 and at 20 on 6.18; `sched_process_exit` has no
//! `group_dead` before 6.16), and kernel structures differ between builds. aya-ebpf has no
//! CO-RE field relocations, so nothing of this is compiled in as fact:
//! - each tracepoint program reads its fields through a [`TpLayout`] global, filled by the
//!   daemon from the tracepoint's `format` file. When every field sits where the program was
//!   compiled to read it, `compiled` is 1 and the program reads them with plain loads from
//!   its record (the verifier prunes the other path); otherwise it copies the record once and
//!   reads each field at the offset the format file gave. A field the kernel lacks is
//!   [`MISSING`], and the program gets the same fact another way or reports it unavailable.
//! - offsets inside kernel structures come from the kernel's BTF, parsed by the daemon
//!   ([`KernelOffsets`]).
//!
//! Globals in `.rodata` are constants to the verifier once the map is frozen (aya freezes
//! it), so the layout costs nothing at run time.

/// An offset the kernel does not have (a field missing from a tracepoint, a member not in BTF).
pub const MISSING: u32 = u32::MAX;

/// Fields a [`TpLayout`] can hold.
pub const LAYOUT_FIELDS_MAX: usize = 12;

/// Where one tracepoint's fields are on this kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpLayout {
    /// 1: every field is at its compiled offset (read in place); 0: the record's first
    /// `size` bytes are copied and each field read at `off`.
    pub compiled: u32,
    /// Bytes of the record (its last field's end), at most the program's buffer.
    pub size: u32,
    /// Per field, in the order of the tracepoint's [`TpFields::fields`]: its offset, or
    /// [`MISSING`].
    pub off: [u32; LAYOUT_FIELDS_MAX],
}

impl TpLayout {
    /// Every field where `fields` says (what the programs are compiled with).
    pub const fn compiled(fields: &TpFields) -> TpLayout {
        let mut off = [MISSING; LAYOUT_FIELDS_MAX];
        let mut size = 0;
        let mut i = 0;
        while i < fields.fields.len() {
            off[i] = fields.fields[i].offset;
            let end = fields.fields[i].offset + fields.fields[i].size;
            if end > size {
                size = end;
            }
            i += 1;
        }
        TpLayout { compiled: 1, size, off }
    }
}

/// One field a program reads from a tracepoint record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpField {
    pub name: &'static str,
    /// Where the programs are compiled to read it (this is 6.18's layout).
    pub offset: u32,
    pub size: u32,
}

/// The fields a tracepoint's program reads, the global its layout goes into, and the buffer
/// its program copies a record into when the layout differs.
#[derive(Clone, Copy, Debug)]
pub struct TpFields {
    pub category: &'static str,
    pub name: &'static str,
    /// The [`TpLayout`] global's symbol.
    pub global: &'static str,
    /// Largest record the program can copy.
    pub buffer: u32,
    pub fields: &'static [TpField],
}

const fn f(name: &'static str, offset: u32, size: u32) -> TpField {
    TpField { name, offset, size }
}

/// `sock:inet_sock_set_state`.
pub mod set_state {
    use super::*;
    pub const SKADDR: usize = 0;
    pub const OLDSTATE: usize = 1;
    pub const NEWSTATE: usize = 2;
    pub const SPORT: usize = 3;
    pub const DPORT: usize = 4;
    pub const FAMILY: usize = 5;
    pub const PROTOCOL: usize = 6;
    pub const SADDR: usize = 7;
    pub const DADDR: usize = 8;
    pub const SADDR_V6: usize = 9;
    pub const DADDR_V6: usize = 10;
    pub const TP: TpFields = TpFields {
        category: "sock",
        name: "inet_sock_set_state",
        global: "LAYOUT_SET_STATE",
        buffer: 80,
        fields: &[
            f("skaddr", 8, 8),
            f("oldstate", 16, 4),
            f("newstate", 20, 4),
            f("sport", 24, 2),
            f("dport", 26, 2),
            f("family", 28, 2),
            f("protocol", 30, 2),
            f("saddr", 32, 4),
            f("daddr", 36, 4),
            f("saddr_v6", 40, 16),
            f("daddr_v6", 56, 16),
        ],
    };
}

/// `sock:inet_sk_error_report` (5.14+).
pub mod error_report {
    use super::*;
    pub const ERROR: usize = 0;
    pub const SPORT: usize = 1;
    pub const DPORT: usize = 2;
    pub const FAMILY: usize = 3;
    pub const PROTOCOL: usize = 4;
    pub const SADDR: usize = 5;
    pub const DADDR: usize = 6;
    pub const SADDR_V6: usize = 7;
    pub const DADDR_V6: usize = 8;
    pub const TP: TpFields = TpFields {
        category: "sock",
        name: "inet_sk_error_report",
        global: "LAYOUT_ERROR_REPORT",
        buffer: 64,
        fields: &[
            f("error", 8, 4),
            f("sport", 12, 2),
            f("dport", 14, 2),
            f("family", 16, 2),
            f("protocol", 18, 2),
            f("saddr", 20, 4),
            f("daddr", 24, 4),
            f("saddr_v6", 28, 16),
            f("daddr_v6", 44, 16),
        ],
    };
}

/// `sched:sched_process_fork` (child_pid at 44 on 5.10-6.12, where the comms are arrays).
pub mod fork {
    use super::*;
    pub const CHILD_PID: usize = 0;
    pub const TP: TpFields =
        TpFields { category: "sched", name: "sched_process_fork", global: "LAYOUT_FORK", buffer: 64, fields: &[f("child_pid", 20, 4)] };
}

/// `sched:sched_process_exec`.
pub mod exec {
    use super::*;
    /// `__data_loc char[] filename`: offset (low 16 bits) and length (high 16) in the record.
    pub const FILENAME: usize = 0;
    pub const TP: TpFields =
        TpFields { category: "sched", name: "sched_process_exec", global: "LAYOUT_EXEC", buffer: 32, fields: &[f("filename", 8, 4)] };
}

/// `sched:sched_process_exit` (`group_dead` only since 6.16).
pub mod exit {
    use super::*;
    pub const GROUP_DEAD: usize = 0;
    pub const TP: TpFields =
        TpFields { category: "sched", name: "sched_process_exit", global: "LAYOUT_EXIT", buffer: 48, fields: &[f("group_dead", 32, 1)] };
}

/// Every tracepoint whose fields a program reads.
pub const TRACEPOINTS: [&TpFields; 5] = [&set_state::TP, &error_report::TP, &fork::TP, &exec::TP, &exit::TP];

/// Offsets inside kernel structures, from the kernel's BTF; [`MISSING`] where BTF lacks the
/// member (or the kernel has no BTF). Global `KERNEL_OFFSETS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.signal` (a pointer).
    pub task_signal: u32,
    /// `signal_struct.live` (atomic_t): the thread group's live threads; 0 once the last
    /// one has started to exit.
    pub signal_live: u32,
    /// `task_struct.stack`: the kernel stack, whose top holds the user registers of a task's
    /// system call (`bpf_task_pt_regs` does this on 5.15+).
    pub task_stack: u32,
    /// `sock.sk_err` (int).
    pub sk_err: u32,
    /// `sock.__sk_common.skc_family` (u16).
    pub skc_family: u32,
    /// `skc_num`: local port, host order (u16).
    pub skc_num: u32,
    /// `skc_dport`: remote port, network order (u16).
    pub skc_dport: u32,
    /// `skc_rcv_saddr`, `skc_daddr` (IPv4, 4 bytes each).
    pub skc_rcv_saddr: u32,
    pub skc_daddr: u32,
    /// `skc_v6_rcv_saddr`, `skc_v6_daddr` (16 bytes each).
    pub skc_v6_rcv_saddr: u32,
    pub skc_v6_daddr: u32,
    /// `sock.sk_protocol` (u16 since 5.6).
    pub sk_protocol: u32,
    /// `socket.sk` (a pointer): the `struct sock` of a `struct socket`, which the kprobes at
    /// `inet_sendmsg` / `inet_recvmsg` are given.
    pub socket_sk: u32,
}

impl KernelOffsets {
    pub const UNKNOWN: KernelOffsets = KernelOffsets {
        task_signal: MISSING,
        signal_live: MISSING,
        task_stack: MISSING,
        sk_err: MISSING,
        skc_family: MISSING,
        skc_num: MISSING,
        skc_dport: MISSING,
        skc_rcv_saddr: MISSING,
        skc_daddr: MISSING,
        skc_v6_rcv_saddr: MISSING,
        skc_v6_daddr: MISSING,
        sk_protocol: MISSING,
        socket_sk: MISSING,
    };
}

/// Symbol of the [`KernelOffsets`] global.
pub const KERNEL_OFFSETS: &str = "KERNEL_OFFSETS";

/// `u32` global: 1 when the kernel has no error report the programs can attach to
/// (`sock:inet_sk_error_report` is 5.14+, and no kprobe variant): `inet_sock_set_state`
/// then reports a socket's `sk_err` at its -> CLOSE, which is where a refused or timed-out
/// connect ends.
pub const ERRORS_AT_CLOSE: &str = "ERRORS_AT_CLOSE";

/// `u32` global: 1 when the `dns` family sees the socket calls at the socket layer
/// (`sock:sock_send_length` / `sock_recv_length` on 6.3+, kprobes at `inet_sendmsg` /
/// `inet_recvmsg` before) instead of at the syscall tracepoints. The watched sockets are then kept by kernel socket address (not by tgid and
/// fd): added at the connect, removed at the TCP state change to CLOSE (UDP: LRU), so that
/// no `close(2)` probe is needed.
pub const SOCK_HOOKS: &str = "SOCK_HOOKS";

/// `u32` global: 1 when the `tls_fd` family's work (the fd under a TLS call, what `writev`
/// and `readv` move) is done by the socket-layer programs of [`SOCK_HOOKS`].
pub const SOCK_TLS_FD: &str = "SOCK_TLS_FD";

/// x86_64 `THREAD_SIZE` (16 KiB: PAGE_SIZE << 2; Debian's kernels have no KASAN, which
/// doubles it) and `sizeof(struct pt_regs)`: the user registers of a task's system call are
/// the last `PT_REGS_SIZE` bytes of its kernel stack.
pub const THREAD_SIZE: u64 = 16384;
pub const PT_REGS_SIZE: u64 = 21 * 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_layouts_fit_their_buffers_and_the_global() {
        for tp in TRACEPOINTS {
            assert!(tp.fields.len() <= LAYOUT_FIELDS_MAX, "{}", tp.name);
            let l = TpLayout::compiled(tp);
            assert_eq!(l.compiled, 1);
            assert!(l.size <= tp.buffer, "{}: {} > {}", tp.name, l.size, tp.buffer);
            for (i, field) in tp.fields.iter().enumerate() {
                assert_eq!(l.off[i], field.offset);
            }
            assert!(l.off[tp.fields.len()..].iter().all(|&o| o == MISSING));
        }
        assert_eq!(TpLayout::compiled(&set_state::TP).size, 72);
        assert_eq!(set_state::TP.fields[set_state::DADDR_V6].name, "daddr_v6");
        assert_eq!(error_report::TP.fields[error_report::DADDR_V6].name, "daddr_v6");
    }
}
