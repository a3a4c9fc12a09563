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
//! Kernel variants (issue 19, not built yet): a family that can attach in more than one way
//! (a kprobe or fentry beside its tracepoints; tracepoint field offsets read from the
//! kernel's format files instead of compiled in) will list those ways as variants, each an
//! [`Attach`] list like today's [`Family::attach`], and the loader will pick one per kernel
//! and report which and why. Today every family has the one way declared here.
use tracer_common::EventKind;

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
    /// `-- COMMAND` without `--syscall-tracepoints`): one syscall tracepoint sends every
    /// system call of every process through the kernel's slow path.
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
}

/// A tracefs tracepoint and the program attached to it.
#[derive(Debug)]
pub struct Tracepoint {
    pub program: &'static str,
    pub category: &'static str,
    pub name: &'static str,
    /// The fields the program reads at offsets compiled into it, checked against the
    /// tracepoint's format file before attaching (a kernel with another layout is refused,
    /// not misread). Empty: the program reads none (syscall tracepoints read their
    /// arguments, whose layout is the syscall ABI).
    pub fields: &'static [(&'static str, usize)],
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
const fn probe(entry: &'static str, ret: Option<&'static str>, function: &'static str) -> ProbedFunction {
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
];

const fn syscall(program: &'static str, name: &'static str) -> Tracepoint {
    Tracepoint { program, category: "syscalls", name, fields: &[] }
}

/// `connect(2)` of every process, at its syscall tracepoints.
pub static TCP_CONNECT: Family = Family {
    name: "tcp_connect",
    emits: &[EventKind::Connect],
    attach: &[Attach {
        when: When::SocketCallsAtSyscalls,
        points: Points::Tracepoints(&[
            syscall("sys_enter_connect", "sys_enter_connect"),
            syscall("sys_exit_connect", "sys_exit_connect"),
        ]),
    }],
};

/// `sock:inet_sock_set_state` fields the program reads.
const SET_STATE_FIELDS: &[(&str, usize)] = &[
    ("skaddr", 8),
    ("oldstate", 16),
    ("newstate", 20),
    ("sport", 24),
    ("dport", 26),
    ("family", 28),
    ("protocol", 30),
    ("saddr", 32),
    ("daddr", 36),
    ("saddr_v6", 40),
    ("daddr_v6", 56),
];
/// `sock:inet_sk_error_report` fields the program reads.
const ERROR_REPORT_FIELDS: &[(&str, usize)] = &[
    ("error", 8),
    ("sport", 12),
    ("dport", 14),
    ("family", 16),
    ("protocol", 18),
    ("saddr", 20),
    ("daddr", 24),
    ("saddr_v6", 28),
    ("daddr_v6", 44),
];

/// TCP state changes of client sockets and socket errors (refused, timed out); with the
/// client filter, also the connects no libc probe saw (caught at their SYN).
pub static TCP_STATE: Family = Family {
    name: "tcp_state",
    emits: &[EventKind::TcpState, EventKind::SockError, EventKind::Connect],
    attach: &[
        Attach {
            when: When::Always,
            points: Points::Tracepoints(&[
                Tracepoint {
                    program: "inet_sock_set_state",
                    category: "sock",
                    name: "inet_sock_set_state",
                    fields: SET_STATE_FIELDS,
                },
                Tracepoint {
                    program: "inet_sk_error_report",
                    category: "sock",
                    name: "inet_sk_error_report",
                    fields: ERROR_REPORT_FIELDS,
                },
            ]),
        },
        // The connects the libc probes cannot see (before a process's uprobes are in, or by
        // raw syscall), caught at their SYN instead.
        Attach {
            when: When::SocketCallsAtLibc,
            points: Points::BtfTracepoint(BtfTracepoint {
                program: "connect_without_libc",
                tracepoint: "inet_sock_set_state",
                report_as: "sock:inet_sock_set_state (connects no libc probe saw)",
            }),
        },
    ],
};

/// DNS messages over UDP and TCP port 53 (and plain HTTP on port 80, read by the same
/// programs), at the syscall tracepoints of the socket calls.
pub static DNS: Family = Family {
    name: "dns",
    emits: &[EventKind::Dns, EventKind::SocketData],
    attach: &[Attach {
        when: When::SocketCallsAtSyscalls,
        points: Points::Tracepoints(&[
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
        ]),
    }],
};

/// Which fd a TLS object uses (learnt from the read/write calls made while a TLS call is in
/// flight; see tracer-ebpf's `tls::learn_fd`), and plain HTTP written with writev.
pub static TLS_FD: Family = Family {
    name: "tls_fd",
    emits: &[EventKind::SocketData],
    attach: &[Attach {
        when: When::SocketCallsAtSyscalls,
        points: Points::Tracepoints(&[
            syscall("sys_enter_writev", "sys_enter_writev"),
            syscall("sys_enter_readv", "sys_enter_readv"),
        ]),
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
            Tracepoint {
                program: "sched_process_fork",
                category: "sched",
                name: "sched_process_fork",
                fields: &[("child_pid", 20)],
            },
            Tracepoint {
                program: "sched_process_exec",
                category: "sched",
                name: "sched_process_exec",
                fields: &[("filename", 8)],
            },
            Tracepoint {
                program: "sched_process_exit",
                category: "sched",
                name: "sched_process_exit",
                fields: &[("group_dead", 32)],
            },
        ]),
    }],
};

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
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every program named here, with the kind of section it must be in.
    fn programs() -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        for (_, a) in attach_sets() {
            match &a.points {
                Points::Tracepoints(tps) => out.extend(tps.iter().map(|t| (t.program, "tracepoint"))),
                Points::BtfTracepoint(b) => out.push((b.program, "tp_btf")),
                Points::Uprobes { functions, .. } => {
                    for f in *functions {
                        out.push((f.entry, "uprobe"));
                        out.extend(f.ret.map(|r| (r, "uretprobe")));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_program_named_is_in_the_ebpf_object_as_its_kind() {
        use object::{Object, ObjectSection, ObjectSymbol};
        let file = object::File::parse(super::super::EBPF_OBJECT).expect("the eBPF object parses");
        for (program, kind) in programs() {
            let sym = file.symbols().find(|s| s.name() == Ok(program)).unwrap_or_else(|| panic!("program {program} not in the object"));
            let section = sym.section_index().and_then(|i| file.section_by_index(i).ok()).expect("a program's section");
            let name = section.name().unwrap_or_default();
            assert!(name == kind || name.starts_with(&format!("{kind}/")), "{program} is in section {name}, not {kind}");
        }
    }

    #[test]
    fn names_are_unique_and_every_kind_has_a_family() {
        let names: BTreeSet<&str> = FAMILIES.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), FAMILIES.len());
        for kind in EventKind::ALL {
            assert!(FAMILIES.iter().any(|f| f.emits.contains(&kind)), "no family emits {kind:?}");
        }
        assert!(FAMILIES.iter().all(|f| !f.emits.is_empty() && !f.attach.is_empty()));
    }

    /// The client filter's promise: no syscall tracepoint while it sees the calls at libc.
    #[test]
    fn syscall_tracepoints_give_way_to_libc() {
        for (f, a) in attach_sets() {
            if let Points::Tracepoints(tps) = a.points {
                for t in tps.iter().filter(|t| t.category == "syscalls") {
                    assert_eq!(a.when, When::SocketCallsAtSyscalls, "{}: {}", f.name, t.name);
                }
            }
        }
    }

    #[test]
    fn every_tls_library_family_is_declared_with_its_report_name() {
        for lib in LibFamily::ALL.into_iter().chain([LibFamily::Fetcher]) {
            let set = for_tls_library(lib).unwrap_or_else(|| panic!("{lib:?} undeclared"));
            assert_eq!(set.family.name, format!("tls_{}", lib.name()));
            assert!(!set.functions.is_empty());
        }
    }
}
