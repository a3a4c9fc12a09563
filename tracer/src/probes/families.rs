//! The probe families, declared in one place.
//!
//! A family is one kind of activity the daemon sees (TCP connects, DNS messages, one TLS
//! library's plaintext ...): the eBPF programs that see it (in `tracer-ebpf`), where they
//! attach, and the records they emit. Its name is the one the start-up report, `/api/health`,
//! the runs table and the metrics' `family` label show ([`super::ProbeStatus::family`]).
//!
//! To add a family: write its programs in `tracer-ebpf`; if it emits a record of a new kind,
//! add the [`EventKind`] and its record to `tracer-common` and its decoder to
//! `crate::stream::events` (one function per kind, `decode_<kind>`; `decode_record` matches on every
//! kind, so a kind without a decoder does not compile); then declare the family here and list
//! it in [`FAMILIES`]. The loader ([`super::Probes::load`]) attaches what is declared here and
//! nothing else.
//!
//! The loader walks [`FAMILIES`] once per kind of attach point, in this order: tracepoints;
//! BTF tracepoints; uprobes in libc (first, so that a process that becomes traced gets them
//! before its TLS libraries' ones); uprobes in the TLS libraries found (in the order they
//! were found); uprobes at functions found by code signature. Within a kind, families
//! attach in the order of [`FAMILIES`], and each family's points in the order declared.
//!
//! Kernel variants: where a family can see the same thing in more than one way (a
//! tracepoint that older kernels lack, a kprobe beside it, a BPF helper that is 5.15+), the
//! set is a [`Points::OneOf`]: [`Variant`]s in order of preference, each with what it
//! [`Need`]s from the kernel. The loader takes the first one this kernel meets
//! ([`super::variants`]; `tracer run --probe-variant FAMILY=NAME` forces one), and the
//! start-up report and `/api/health` say which each family got and why, and what no variant
//! could give here. To add a variant (a kprobe or fentry that sees the same facts cheaper),
//! write its programs on the same `try_*` functions as the existing ones and add a
//! [`Variant`] to the family's choice.
//!
//! Tracepoint layouts are not part of a variant: every tracepoint program reads its fields
//! where the kernel's format file says (`tracer_common::layout`), so one program serves
//! every kernel; a field the kernel lacks is named in [`Tracepoint::if_missing`] with what
//! stands in for it.
use tracer_common::{
    EventKind,
    layout::{self, TpFields},
};

use super::libs::LibFamily;

/// One probe family (see the module documentation).
#[derive(Debug)]
pub struct Family {
    /// Its name in [`super::ProbeStatus::family`].
    pub name: &'static str,
    /// The record kinds its programs emit; each is decoded by its function in
    /// `crate::stream::events` (`decode_connect` for [`EventKind::Connect`] ...).
    pub emits: &'static [EventKind],
    /// Where its programs attach, and when.
    pub attach: &'static [Attach],
}

/// A set of attach points of one kind, and when the loader attaches them.
#[derive(Debug)]
pub struct Attach {
    pub when: When,
    pub points: Points,
}

/// When a set of attach points is attached, by the run's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// Unless the client filter sees the socket calls at libc instead (`--pid`, `--comm` or
    /// `-- COMMAND` without `--syscall-tracepoints`): the socket calls of every process, at
    /// the socket layer where the kernel has it (6.3+), else at the syscall tracepoints (one
    /// of which sends every system call of every process through the kernel's slow path).
    SocketCallsAtSyscalls,
    /// Only when the client filter sees the socket calls at libc, in the traced processes.
    SocketCallsAtLibc,
    /// With TLS plaintext on (not `--no-tls`).
    Tls,
}

/// The attach points of one set.
#[derive(Debug)]
pub enum Points {
    /// Tracefs tracepoints.
    Tracepoints(&'static [Tracepoint]),
    /// A BTF tracepoint (`tp_btf`): the program reads the kernel's own structures, typed by
    /// the kernel's BTF.
    BtfTracepoint(BtfTracepoint),
    /// Uprobes at functions of a file found at run time: an entry program, and a return
    /// program where the function's result matters.
    Uprobes { file: UprobeFile, functions: &'static [ProbedFunction] },
    /// A kprobe on a kernel function.
    Kprobe(Kprobe),
    /// Ways of seeing the same thing, in order of preference (see the module documentation).
    OneOf(Choice),
}

/// A kprobe (or kretprobe) and its program.
#[derive(Debug)]
pub struct Kprobe {
    pub program: &'static str,
    pub function: &'static str,
    /// At the function's return (a kretprobe), not its entry.
    pub ret: bool,
}

impl Kprobe {
    /// Its kind in the report: "kprobe" or "kretprobe" (also its program's ELF section).
    pub fn kind(&self) -> &'static str {
        if self.ret { "kretprobe" } else { "kprobe" }
    }
}

/// Alternatives for one set of attach points.
#[derive(Debug)]
pub struct Choice {
    /// What the set sees, for the report ("error reports").
    pub what: &'static str,
    pub variants: &'static [Variant],
    /// What the user loses on a kernel where no variant works.
    pub without: &'static str,
}

/// One way of attaching a [`Choice`].
#[derive(Debug)]
pub struct Variant {
    /// Its name in the report and for `--probe-variant` ("tracepoint", "kprobe").
    pub name: &'static str,
    /// What it attaches to, for the report.
    pub uses: &'static str,
    pub needs: &'static [Need],
    /// Its attach points (none: a variant that only switches existing programs over, by
    /// `global`).
    pub points: &'static [Points],
    /// A `u32` global set to 1 when this variant is chosen.
    pub global: Option<&'static str>,
    /// What it does not see that another variant of the choice does, when chosen (the
    /// preferred variant may trade a fact for a price: the socket-layer connects lose the
    /// return code of connects that fail before their SYN, and stop slowing every syscall).
    pub misses: Option<&'static str>,
}

/// What a variant needs from the kernel (checked against [`super::kernel::KernelSurvey`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A tracefs tracepoint.
    Tracepoint(&'static str, &'static str),
    /// kprobes (`CONFIG_KPROBES`).
    Kprobes,
    /// A kernel function or BPF helper, by its name in /proc/kallsyms.
    Symbol(&'static str),
    /// Members of kernel structures in BTF, by [`super::kernel::BTF_MEMBERS`] name.
    Btf(&'static [&'static str]),
    /// Another family's choice got one of these variants (programs that share maps or
    /// globals, such as the socket-layer hooks of `dns`, `tls_fd` and `tcp_connect`). Not a
    /// kernel need: checked against the run's plan, and the family named must have its
    /// choice resolved first (see `super::variants::plan`).
    Variant(&'static str, &'static [&'static str]),
}

/// A tracefs tracepoint and the program attached to it.
#[derive(Debug)]
pub struct Tracepoint {
    pub program: &'static str,
    pub category: &'static str,
    pub name: &'static str,
    /// The fields the program reads, whose layout on this kernel the daemon reads from the
    /// tracepoint's format file and loads as the program's layout global. None: the program
    /// reads no field (syscall tracepoints read their arguments, whose layout is the syscall
    /// ABI).
    pub fields: Option<&'static TpFields>,
    /// Fields the program can do without, and what stands in for each (a missing field
    /// not named here keeps the tracepoint from attaching).
    pub if_missing: &'static [(&'static str, &'static str)],
}

/// A BTF tracepoint and its program.
#[derive(Debug)]
pub struct BtfTracepoint {
    pub program: &'static str,
    /// The kernel's tracepoint, by its name in BTF (`btf_trace_<name>`).
    pub tracepoint: &'static str,
    /// Its attach point in the report: "tp_btf " and this.
    pub report_as: &'static str,
}

/// Which file a set of uprobes goes into.
#[derive(Debug)]
pub enum UprobeFile {
    /// The C library processes link (`libc.so.6` in the linker cache).
    Libc {
        /// The set's attach point in the report when libc is not found: "uprobe " and this.
        report_as: &'static str,
        /// What is lost without it, for the start-up note.
        unseen: &'static str,
    },
    /// Every library of a TLS family: the linker cache, process maps, browsers' bundled
    /// copies, and for the fetcher the tracer binary itself (see `super::libs`).
    TlsLibrary(LibFamily),
    /// Binaries with BoringSSL compiled in, stripped (Chromium, Chrome, Electron): the
    /// functions are found by code signature (`super::boringssl`), at file offsets.
    FoundBySignature {
        /// A binary's attach point in the report when the search fails: "uprobe " and this.
        report_as: &'static str,
    },
    /// A library in the same directory as each library of a TLS family, at its symbols: NSS's
    /// `libnss3.so` beside each `libssl3.so` found (Firefox's bundled copy, the system's).
    BesideLibrary {
        library: LibFamily,
        /// The file's name, in the directory of each library of `library`.
        file: &'static str,
        /// Its attach point in the report when the file is not there.
        report_as: &'static str,
    },
    /// NSS's freebl (`libfreeblpriv3.so`, beside each library of `library` or in an `nss/`
    /// directory there), at functions it does not export but lists in the table
    /// `FREEBL_GetVector` returns (`super::freebl`), at file offsets.
    FreeblTable {
        library: LibFamily,
        /// Its attach point in the report when the file or the functions are not found.
        report_as: &'static str,
    },
}

/// One function to probe: its entry program and, where the result matters, its return
/// program (attached first: an entry without its return would leave calls in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbedFunction {
    /// The function: a symbol, or for [`UprobeFile::FoundBySignature`] the function the
    /// signature search locates.
    pub function: &'static str,
    pub entry: &'static str,
    pub ret: Option<&'static str>,
}

/// `(entry program, return program, function)`, the order of the tables below.
pub(super) const fn probe(entry: &'static str, ret: Option<&'static str>, function: &'static str) -> ProbedFunction {
    ProbedFunction { function, entry, ret }
}

/// Every family, in the order the loader attaches them (see the module documentation).
pub static FAMILIES: &[&Family] = &[
    &TCP_CONNECT,
    &TCP_STATE,
    &DNS,
    &TLS_FD,
    &PROCESS,
    &LIBC_SOCKETS,
    &TLS_OPENSSL,
    &TLS_GNUTLS,
    &TLS_NSPR,
    &TLS_NSS,
    &TLS_FETCHER,
    &TLS_BORINGSSL,
    &super::quic_families::QUIC_BORINGSSL,
    &super::quic_families::QUIC_NSS,
];

const fn syscall(program: &'static str, name: &'static str) -> Tracepoint {
    Tracepoint { program, category: "syscalls", name, fields: None, if_missing: &[] }
}

/// A tracepoint whose program reads `tp`'s fields.
const fn with_fields(program: &'static str, tp: &'static TpFields) -> Tracepoint {
    Tracepoint { program, category: tp.category, name: tp.name, fields: Some(tp), if_missing: &[] }
}

/// The name of the socket-layer variant of `dns`, `tls_fd` (and what `tcp_connect`'s
/// `tp_btf` needs beside it).
pub const SOCK_LENGTH: &str = "sock_length";
/// The name of the kprobe variant of `dns` and `tls_fd` (kernels before 6.3).
pub const KPROBE: &str = "kprobe";
/// The name of the syscall tracepoint variant of `tcp_connect`, `dns` and `tls_fd`.
pub const SYSCALLS: &str = "syscalls";
/// The variants of `dns` that see the socket calls at the socket layer (no syscall
/// tracepoint), whose maps and globals `tcp_connect`'s and `tls_fd`'s socket-layer variants
/// share.
pub const DNS_AT_SOCKET_LAYER: &[&str] = &[SOCK_LENGTH, KPROBE];

/// What the socket-layer hooks need: the two tracepoints (6.3+), the task's saved user
/// registers (`bpf_task_pt_regs`, 5.15+: the syscall's fd and buffers), and the socket's
/// peer from BTF.
pub const DNS_SOCK_NEEDS: &[Need] = &[
    Need::Tracepoint("sock", "sock_send_length"),
    Need::Tracepoint("sock", "sock_recv_length"),
    Need::Symbol("bpf_task_pt_regs"),
    Need::Btf(SOCK_PEER_MEMBERS),
];

/// What the kprobe variant needs (before 6.3: Debian's 5.10 and 6.1): kprobes at the address
/// families' send and receive, the socket of a `struct socket`, and the task's kernel stack
/// (whose top holds the user registers: 5.10 has no `bpf_task_pt_regs`).
///
/// On Debian's 5.10 receives that block in the kernel went unreported in 3 of 4 runs of
/// `tests/variants.rs` while the kretprobes had the kernel's default number of instances: one
/// there (see `probes::kretprobe`); they now get 4096.
pub const DNS_KPROBE_NEEDS: &[Need] = &[
    Need::Kprobes,
    Need::Symbol("inet_sendmsg"),
    Need::Symbol("inet_recvmsg"),
    Need::Symbol("inet6_sendmsg"),
    Need::Symbol("inet6_recvmsg"),
    Need::Btf(SOCK_PEER_MEMBERS),
    Need::Btf(&["socket.sk", "task_struct.stack"]),
];

/// The socket members the socket-layer hooks and the connects at the SYN read.
const SOCK_PEER_MEMBERS: &[&str] = &[
    "sock.skc_family",
    "sock.skc_dport",
    "sock.skc_daddr",
    "sock.skc_v6_daddr",
    "sock.sk_protocol",
    "sock.skc_num",
    "sock.skc_rcv_saddr",
    "sock.skc_v6_rcv_saddr",
];

/// What the kprobe variant cannot promise: a kretprobe has a fixed number of instances
/// (4096, `probes::kretprobe::MAXACTIVE`; the kernel's default where tracefs refuses to make
/// them), and a call blocked in the kernel holds one.
pub const KRETPROBE_LIMIT: &str = "with more than 4096 socket calls blocked in the kernel at once (kretprobe instances), the returns past them are missed (the kernel counts them in /sys/kernel/tracing/kprobe_profile)";

/// The price of any `syscalls:` tracepoint, for the report of a kernel that falls back to them.
pub const SYSCALLS_COST: &str = "every system call of every process goes through the kernel's tracing slow path (dd bs=1 ran at about half its speed)";

/// `connect(2)` of every process: at its SYN (no syscall tracepoint), or at its syscall
/// tracepoints.
pub static TCP_CONNECT: Family = Family {
    name: "tcp_connect",
    emits: &[EventKind::Connect],
    attach: &[Attach {
        when: When::SocketCallsAtSyscalls,
        points: Points::OneOf(Choice {
            what: "connects",
            variants: &[
                Variant {
                    name: "tp_btf",
                    uses: "tp_btf inet_sock_set_state at CLOSE -> SYN_SENT (inside connect(2)), the fd from the user registers by bpf_task_pt_regs",
                    needs: &[Need::Symbol("bpf_task_pt_regs"), Need::Btf(SOCK_PEER_MEMBERS), Need::Variant("dns", DNS_AT_SOCKET_LAYER)],
                    points: &[Points::BtfTracepoint(BtfTracepoint {
                        program: "connect_at_syn",
                        tracepoint: "inet_sock_set_state",
                        report_as: "sock:inet_sock_set_state (connects, at their SYN)",
                    })],
                    global: None,
                    misses: Some(
                        "a connect's own return: each TCP connect is reported in progress at its SYN and its outcome comes from the state changes and error reports; a connect that fails before any SYN (ENETUNREACH) and UDP connects are not seen",
                    ),
                },
                // bpf_task_pt_regs is 5.15+ (5.10 has the kprobe variant of dns).
                Variant {
                    name: "tp_btf_stack",
                    uses: "tp_btf inet_sock_set_state at CLOSE -> SYN_SENT (inside connect(2)), the fd from the user registers at the top of the task's kernel stack",
                    needs: &[Need::Btf(SOCK_PEER_MEMBERS), Need::Btf(&["task_struct.stack"]), Need::Variant("dns", DNS_AT_SOCKET_LAYER)],
                    points: &[Points::BtfTracepoint(BtfTracepoint {
                        program: "connect_at_syn_stack",
                        tracepoint: "inet_sock_set_state",
                        report_as: "sock:inet_sock_set_state (connects, at their SYN)",
                    })],
                    global: None,
                    misses: Some(
                        "a connect's own return: each TCP connect is reported in progress at its SYN and its outcome comes from the state changes and error reports; a connect that fails before any SYN (ENETUNREACH) and UDP connects are not seen",
                    ),
                },
                Variant {
                    name: SYSCALLS,
                    uses: "tracepoints syscalls:sys_enter_connect / sys_exit_connect",
                    needs: &[],
                    points: &[Points::Tracepoints(&[
                        syscall("sys_enter_connect", "sys_enter_connect"),
                        syscall("sys_exit_connect", "sys_exit_connect"),
                    ])],
                    global: None,
                    misses: Some(SYSCALLS_COST),
                },
            ],
            without: "connects are not seen",
        }),
    }],
};

/// The socket members the kprobe variant of the error reports reads.
const SOCK_MEMBERS: &[&str] = &[
    "sock.sk_err",
    "sock.skc_family",
    "sock.skc_num",
    "sock.skc_dport",
    "sock.skc_rcv_saddr",
    "sock.skc_daddr",
    "sock.skc_v6_rcv_saddr",
    "sock.skc_v6_daddr",
    "sock.sk_protocol",
];

/// TCP state changes of client sockets and socket errors (refused, timed out); with the
/// client filter, also the connects no libc probe saw (caught at their SYN).
pub static TCP_STATE: Family = Family {
    name: "tcp_state",
    emits: &[EventKind::TcpState, EventKind::SockError, EventKind::Connect],
    attach: &[
        Attach { when: When::Always, points: Points::Tracepoints(&[with_fields("inet_sock_set_state", &layout::set_state::TP)]) },
        Attach {
            when: When::Always,
            points: Points::OneOf(Choice {
                what: "error reports",
                variants: &[
                    Variant {
                        name: "tracepoint",
                        uses: "tracepoint sock:inet_sk_error_report",
                        needs: &[Need::Tracepoint("sock", "inet_sk_error_report")],
                        points: &[Points::Tracepoints(&[with_fields("inet_sk_error_report", &layout::error_report::TP)])],
                        global: None,
                        misses: None,
                    },
                    // 5.10 (Debian 11) has no inet_sk_error_report (5.14+), but kprobes.
                    Variant {
                        name: "kprobe",
                        uses: "kprobe sock_def_error_report",
                        needs: &[Need::Kprobes, Need::Symbol("sock_def_error_report"), Need::Btf(SOCK_MEMBERS)],
                        points: &[Points::Kprobe(Kprobe { program: "sock_def_error_report", function: "sock_def_error_report", ret: false })],
                        global: None,
                        misses: None,
                    },
                    Variant {
                        name: "sk_err_at_close",
                        uses: "sk_err read at a TCP socket's -> CLOSE (inet_sock_set_state)",
                        needs: &[Need::Btf(&["sock.sk_err"])],
                        points: &[],
                        global: Some(tracer_common::layout::ERRORS_AT_CLOSE),
                        misses: Some(
                            "UDP socket errors (an ICMP port unreachable: a DNS server that is down shows as a DNS timeout, not as refused)",
                        ),
                    },
                ],
                without: "refused and timed-out connects lose their reason (ECONNREFUSED, ETIMEDOUT) and UDP errors are not seen",
            }),
        },
        // The connects the libc probes cannot see (before a process's uprobes are in, or by
        // raw syscall), caught at their SYN instead.
        Attach {
            when: When::SocketCallsAtLibc,
            points: Points::OneOf(Choice {
                what: "connects no libc probe saw",
                variants: &[
                    Variant {
                        name: "tp_btf",
                        uses: "tp_btf inet_sock_set_state, user registers by bpf_task_pt_regs",
                        needs: &[Need::Symbol("bpf_task_pt_regs")],
                        points: &[Points::BtfTracepoint(BtfTracepoint {
                            program: "connect_without_libc",
                            tracepoint: "inet_sock_set_state",
                            report_as: "sock:inet_sock_set_state (connects no libc probe saw)",
                        })],
                        global: None,
                        misses: None,
                    },
                    // bpf_task_pt_regs is 5.15+.
                    Variant {
                        name: "tp_btf_stack",
                        uses: "tp_btf inet_sock_set_state, user registers at the top of the task's kernel stack",
                        needs: &[Need::Btf(&["task_struct.stack"])],
                        points: &[Points::BtfTracepoint(BtfTracepoint {
                            program: "connect_without_libc_stack",
                            tracepoint: "inet_sock_set_state",
                            report_as: "sock:inet_sock_set_state (connects no libc probe saw)",
                        })],
                        global: None,
                        misses: None,
                    },
                ],
                without: "with a client filter, connects made without libc (static binaries, Go) or before a process's uprobes are in are not seen",
            }),
        },
    ],
};

/// DNS messages over UDP and TCP port 53 (and plain HTTP on port 80 and the port-443 wire
/// capture, read by the same programs): at the socket layer, or at the syscall tracepoints
/// of the socket calls. At the socket layer also the first datagrams of UDP port 443 (QUIC).
pub static DNS: Family = Family {
    name: "dns",
    emits: &[EventKind::Dns, EventKind::SocketData, EventKind::QuicDatagram],
    attach: &[Attach {
        when: When::SocketCallsAtSyscalls,
        points: Points::OneOf(Choice {
            what: "socket calls",
            variants: &[
                Variant {
                    name: SOCK_LENGTH,
                    uses: "tp_btf sock_send_length / sock_recv_length (socket calls only), the syscall's arguments from the user registers by bpf_task_pt_regs",
                    needs: DNS_SOCK_NEEDS,
                    points: &[
                        Points::BtfTracepoint(BtfTracepoint {
                            program: "sock_send_length",
                            tracepoint: "sock_send_length",
                            report_as: "sock:sock_send_length",
                        }),
                        Points::BtfTracepoint(BtfTracepoint {
                            program: "sock_recv_length",
                            tracepoint: "sock_recv_length",
                            report_as: "sock:sock_recv_length",
                        }),
                    ],
                    global: Some(tracer_common::layout::SOCK_HOOKS),
                    misses: None,
                },
                // Before 6.3 (Debian's 5.10 and 6.1): the same calls one step further in.
                Variant {
                    name: KPROBE,
                    uses: "kprobes at inet_sendmsg / inet_recvmsg and inet6_sendmsg / inet6_recvmsg (socket calls only; kretprobes for what moved), the syscall's arguments from the user registers at the top of the task's kernel stack",
                    needs: DNS_KPROBE_NEEDS,
                    // The returns first: an entry without its return would leave calls in flight.
                    points: &[
                        Points::Kprobe(Kprobe { program: "sock_send_return", function: "inet_sendmsg", ret: true }),
                        Points::Kprobe(Kprobe { program: "sock_send_return", function: "inet6_sendmsg", ret: true }),
                        Points::Kprobe(Kprobe { program: "sock_recv_return", function: "inet_recvmsg", ret: true }),
                        Points::Kprobe(Kprobe { program: "sock_recv_return", function: "inet6_recvmsg", ret: true }),
                        Points::Kprobe(Kprobe { program: "sock_call_entry", function: "inet_sendmsg", ret: false }),
                        Points::Kprobe(Kprobe { program: "sock_call_entry", function: "inet6_sendmsg", ret: false }),
                        Points::Kprobe(Kprobe { program: "sock_call_entry", function: "inet_recvmsg", ret: false }),
                        Points::Kprobe(Kprobe { program: "sock_call_entry", function: "inet6_recvmsg", ret: false }),
                    ],
                    global: Some(tracer_common::layout::SOCK_HOOKS),
                    misses: Some(KRETPROBE_LIMIT),
                },
                Variant { name: SYSCALLS, uses: "tracepoints syscalls:sys_enter_*/sys_exit_* of the socket calls and close", needs: &[], points: &[Points::Tracepoints(DNS_SYSCALLS)], global: None, misses: Some(SYSCALLS_COST) },
            ],
            without: "DNS, plain HTTP and the TLS wire capture are not seen",
        }),
    }],
};

/// The syscall tracepoints of [`DNS`]'s `syscalls` variant.
const DNS_SYSCALLS: &[Tracepoint] = &[
            syscall("sys_enter_write", "sys_enter_write"),
            syscall("sys_enter_sendto", "sys_enter_sendto"),
            syscall("sys_enter_sendmsg", "sys_enter_sendmsg"),
            syscall("sys_enter_sendmmsg", "sys_enter_sendmmsg"),
            syscall("sys_enter_read", "sys_enter_read"),
            syscall("sys_enter_recvfrom", "sys_enter_recvfrom"),
            syscall("sys_enter_recvmsg", "sys_enter_recvmsg"),
            syscall("sys_enter_recvmmsg", "sys_enter_recvmmsg"),
            // One return program for every receive: the pending entry says which call it was.
            syscall("sys_exit_recv", "sys_exit_read"),
            syscall("sys_exit_recv", "sys_exit_recvfrom"),
            syscall("sys_exit_recv", "sys_exit_recvmsg"),
            syscall("sys_exit_recv", "sys_exit_recvmmsg"),
            syscall("sys_exit_recv", "sys_exit_readv"),
            syscall("sys_enter_close", "sys_enter_close"),
];

/// Which fd a TLS object uses (learnt from the read/write calls made while a TLS call is in
/// flight; see tracer-ebpf's `tls::learn_fd`), and plain HTTP written with writev.
pub static TLS_FD: Family = Family {
    name: "tls_fd",
    emits: &[EventKind::SocketData],
    attach: &[Attach {
        when: When::SocketCallsAtSyscalls,
        points: Points::OneOf(Choice {
            what: "fds under TLS calls, writev/readv",
            variants: &[
                Variant {
                    name: SOCK_LENGTH,
                    uses: "the socket-layer programs of dns's sock_length variant",
                    needs: &[Need::Variant("dns", &[SOCK_LENGTH])],
                    points: &[],
                    global: Some(tracer_common::layout::SOCK_TLS_FD),
                    misses: None,
                },
                Variant {
                    name: KPROBE,
                    uses: "the socket-layer programs of dns's kprobe variant",
                    needs: &[Need::Variant("dns", &[KPROBE])],
                    points: &[],
                    global: Some(tracer_common::layout::SOCK_TLS_FD),
                    misses: Some(KRETPROBE_LIMIT),
                },
                Variant {
                    name: SYSCALLS,
                    uses: "tracepoints syscalls:sys_enter_writev / sys_enter_readv, and dns's syscall programs",
                    // The fds are learnt in dns's read/write programs too.
                    needs: &[Need::Variant("dns", &[SYSCALLS])],
                    points: &[Points::Tracepoints(&[
                        syscall("sys_enter_writev", "sys_enter_writev"),
                        syscall("sys_enter_readv", "sys_enter_readv"),
                    ])],
                    global: None,
                    misses: Some(SYSCALLS_COST),
                },
            ],
            without: "TLS plaintext of objects whose fd was not set through the library is not joined to its connection",
        }),
    }],
};

/// Process trees: fork, exec, thread-group exit (and, with the client filter, the upkeep of
/// the kernel's TRACED map).
pub static PROCESS: Family = Family {
    name: "process",
    emits: &[EventKind::Fork, EventKind::Exec, EventKind::Exit],
    attach: &[Attach {
        when: When::Always,
        points: Points::Tracepoints(&[
            with_fields("sched_process_fork", &layout::fork::TP),
            with_fields("sched_process_exec", &layout::exec::TP),
            Tracepoint {
                if_missing: &[("group_dead", GROUP_DEAD_FROM_TASK)],
                ..with_fields("sched_process_exit", &layout::exit::TP)
            },
        ]),
    }],
};

/// What stands in for `sched_process_exit`'s `group_dead` (6.16+) on older kernels.
pub const GROUP_DEAD_FROM_TASK: &str = "the thread group's end is read from task->signal->live (BTF)";

/// Name of [`LIBC_SOCKETS`].
pub const LIBC_FAMILY: &str = "libc_sockets";

/// With the client filter: the socket calls the syscall tracepoints of [`TCP_CONNECT`],
/// [`DNS`] and [`TLS_FD`] see otherwise, at libc's functions of the same names (tracer-ebpf's
/// `libc` module), in the traced processes only.
pub static LIBC_SOCKETS: Family = Family {
    name: LIBC_FAMILY,
    emits: &[EventKind::Connect, EventKind::Dns, EventKind::SocketData],
    attach: &[Attach {
        when: When::SocketCallsAtLibc,
        points: Points::Uprobes {
            file: UprobeFile::Libc {
                report_as: "connect/send/recv/read/write/close",
                unseen: "connect, DNS and plain HTTP of the traced processes",
            },
            functions: &[
                probe("libc_connect", Some("libc_connect_ret"), "connect"),
                probe("libc_write", None, "write"),
                probe("libc_send", None, "send"),
                probe("libc_sendto", None, "sendto"),
                probe("libc_sendmsg", None, "sendmsg"),
                probe("libc_sendmmsg", None, "sendmmsg"),
                probe("libc_writev", None, "writev"),
                probe("libc_read", Some("libc_recv_ret"), "read"),
                probe("libc_recv", Some("libc_recv_ret"), "recv"),
                probe("libc_recvfrom", Some("libc_recv_ret"), "recvfrom"),
                probe("libc_recvmsg", Some("libc_recv_ret"), "recvmsg"),
                probe("libc_recvmmsg", Some("libc_recv_ret"), "recvmmsg"),
                probe("libc_readv", Some("libc_recv_ret"), "readv"),
                probe("libc_close", None, "close"),
                // glibc's resolver closes its sockets with this one.
                probe("libc_close", None, "__close_nocancel"),
            ],
        },
    }],
};

/// OpenSSL's libssl (1.1 and 3).
pub static TLS_OPENSSL: Family = Family {
    name: "tls_openssl",
    emits: &[EventKind::TlsData, EventKind::TlsHandshake, EventKind::TlsFd],
    attach: &[Attach {
        when: When::Tls,
        points: Points::Uprobes {
            file: UprobeFile::TlsLibrary(LibFamily::OpenSsl),
            functions: &[
                probe("ssl_write", Some("tls_data_ret"), "SSL_write"),
                probe("ssl_read", Some("tls_data_ret"), "SSL_read"),
                probe("ssl_write_ex", Some("tls_data_ret"), "SSL_write_ex"),
                probe("ssl_read_ex", Some("tls_data_ret"), "SSL_read_ex"),
                probe("ssl_do_handshake", Some("tls_handshake_ret"), "SSL_do_handshake"),
                probe("ssl_connect", Some("tls_handshake_ret"), "SSL_connect"),
                probe("ssl_set_fd", None, "SSL_set_fd"),
                probe("ssl_set_accept_state", None, "SSL_set_accept_state"),
                probe("tls_free", None, "SSL_free"),
            ],
        },
    }],
};

/// GnuTLS.
pub static TLS_GNUTLS: Family = Family {
    name: "tls_gnutls",
    emits: &[EventKind::TlsData, EventKind::TlsHandshake, EventKind::TlsFd],
    attach: &[Attach {
        when: When::Tls,
        points: Points::Uprobes {
            file: UprobeFile::TlsLibrary(LibFamily::GnuTls),
            functions: &[
                probe("gnutls_record_send", Some("tls_data_ret"), "gnutls_record_send"),
                probe("gnutls_record_recv", Some("tls_data_ret"), "gnutls_record_recv"),
                probe("gnutls_handshake", Some("tls_handshake_ret"), "gnutls_handshake"),
                probe("gnutls_transport_set_int2", None, "gnutls_transport_set_int2"),
                probe("tls_free", None, "gnutls_deinit"),
            ],
        },
    }],
};

/// NSPR: PR_Read/PR_Write carry NSS's plaintext (Firefox).
pub static TLS_NSPR: Family = Family {
    name: "tls_nspr",
    emits: &[EventKind::TlsData],
    attach: &[Attach {
        when: When::Tls,
        points: Points::Uprobes {
            file: UprobeFile::TlsLibrary(LibFamily::Nspr),
            functions: &[
                probe("pr_write", Some("tls_data_ret"), "PR_Write"),
                probe("pr_read", Some("tls_data_ret"), "PR_Read"),
                probe("pr_send", Some("tls_data_ret"), "PR_Send"),
                probe("pr_recv", Some("tls_data_ret"), "PR_Recv"),
                probe("tls_free", None, "PR_Close"),
            ],
        },
    }],
};

/// NSS's libssl3: the handshake.
pub static TLS_NSS: Family = Family {
    name: "tls_nss",
    emits: &[EventKind::TlsHandshake],
    attach: &[Attach {
        when: When::Tls,
        points: Points::Uprobes {
            file: UprobeFile::TlsLibrary(LibFamily::Nss),
            functions: &[probe("nss_force_handshake", Some("tls_handshake_ret"), "SSL_ForceHandshake")],
        },
    }],
};

/// The tracer's own fetcher (rustls), through its `tracer_tls_*` probe points
/// (`crate::fetch::probe_points`).
pub static TLS_FETCHER: Family = Family {
    name: "tls_fetcher",
    emits: &[EventKind::TlsData, EventKind::TlsHandshake, EventKind::TlsFd],
    attach: &[Attach {
        when: When::Tls,
        points: Points::Uprobes {
            file: UprobeFile::TlsLibrary(LibFamily::Fetcher),
            functions: &[
                probe("rustls_set_fd", None, "tracer_tls_set_fd"),
                probe("rustls_handshake", Some("tls_handshake_ret"), "tracer_tls_handshake"),
                probe("rustls_write", Some("tls_data_ret"), "tracer_tls_write"),
                probe("rustls_read", Some("tls_data_ret"), "tracer_tls_read"),
            ],
        },
    }],
};

/// The symbols [`TLS_FETCHER`] attaches to.
pub fn fetcher_symbols() -> Vec<&'static str> {
    TLS_FETCHER
        .attach
        .iter()
        .flat_map(|a| match a.points {
            Points::Uprobes { functions, .. } => functions.iter().map(|f| f.function).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// BoringSSL compiled into a stripped binary (Chromium): its functions found by code
/// signature. A build whose functions cannot be found is reported, not guessed: a uprobe at
/// a wrong offset can crash the browser. Its DNS and TCP are still traced.
pub static TLS_BORINGSSL: Family = Family {
    name: "tls_boringssl",
    emits: &[EventKind::TlsData, EventKind::TlsHandshake],
    attach: &[Attach {
        when: When::Tls,
        points: Points::Uprobes {
            file: UprobeFile::FoundBySignature { report_as: "SSL_write/SSL_read/SSL_do_handshake (by signature)" },
            functions: &[
                probe("boringssl_write", Some("tls_data_ret"), "SSL_write"),
                probe("boringssl_read", Some("tls_data_ret"), "SSL_read"),
                probe("boringssl_do_handshake", Some("tls_handshake_ret"), "SSL_do_handshake"),
            ],
        },
    }],
};

/// The attach point sets of every family, in loader order.
pub fn attach_sets() -> impl Iterator<Item = (&'static Family, &'static Attach)> {
    FAMILIES.iter().flat_map(|f| f.attach.iter().map(move |a| (*f, a)))
}

/// Every set of attach points, variants' included (each variant's once), with its family and
/// when it applies.
pub fn all_points() -> impl Iterator<Item = (&'static Family, When, &'static Points)> {
    attach_sets().flat_map(|(f, a)| {
        let inner: Vec<&'static Points> = match &a.points {
            Points::OneOf(choice) => choice.variants.iter().flat_map(|v| v.points.iter()).collect(),
            p => vec![p],
        };
        inner.into_iter().map(move |p| (f, a.when, p))
    })
}

/// One declared set of uprobes, with its family.
#[derive(Debug, Clone, Copy)]
pub struct UprobeSet {
    pub family: &'static Family,
    pub when: When,
    pub file: &'static UprobeFile,
    pub functions: &'static [ProbedFunction],
}

/// Every declared set of uprobes, in loader order.
pub fn uprobe_sets() -> impl Iterator<Item = UprobeSet> {
    attach_sets().filter_map(|(family, a)| match &a.points {
        Points::Uprobes { file, functions } => Some(UprobeSet { family, when: a.when, file, functions }),
        _ => None,
    })
}

/// The set of uprobes that goes into the libraries of TLS family `lib`.
pub fn for_tls_library(lib: LibFamily) -> Option<UprobeSet> {
    uprobe_sets().find(|s| matches!(s.file, UprobeFile::TlsLibrary(l) if *l == lib))
}

#[cfg(test)]
mod tests;
