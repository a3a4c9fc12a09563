//! Loading the eBPF object and attaching every probe family, each on its own: a probe that
//! fails to attach is reported and skipped, never takes the others down.
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use aya::{
    Ebpf, EbpfLoader,
    programs::{
        BtfTracePoint, TracePoint, UProbe,
        tp_btf::BtfTracePointLinkId,
        trace_point::TracePointLinkId,
        uprobe::{UProbeLinkId, UProbeScope},
    },
};
use serde::Serialize;
use tracer_common::{TLS_CAPTURE_MAX, globals, maps};

pub mod boringssl;
pub mod libs;
pub mod system;

use libs::{LibFamily, TlsLibrary};

/// The eBPF object built by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Plaintext bytes copied per TLS call (1..=16384).
    pub tls_capture_bytes: u32,
    /// Ring buffer size in bytes (a power of two multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// Attach the TLS uprobes.
    pub tls: bool,
    /// Extra library files to probe besides those found (tests, bundled copies).
    pub extra_libraries: Vec<TlsLibrary>,
    /// Client filter (`--pid`, `--comm`, `-- COMMAND`): off by default (trace everything).
    pub filter: KernelFilter,
}

/// The client filter as the kernel programs are loaded with it (load-time constants).
#[derive(Debug, Clone, Default)]
pub struct KernelFilter {
    /// Trace only the processes in the TRACED map. The TLS uprobes are then enabled per
    /// traced process (see [`crate::filter`]) instead of for every process.
    pub enabled: bool,
    /// `--comm NAME`: a process that execs into this comm becomes traced (first 15 bytes).
    pub comm: Option<String>,
    /// `--syscall-tracepoints`: with the filter, the socket calls are still seen at the
    /// syscall tracepoints (every process pays their slow path), not at libc per process.
    pub syscall_tracepoints: bool,
    /// `--no-expedited-attach`: per-process attaches wait for normal RCU grace periods (see
    /// [`crate::filter::ExpeditedRcu`]).
    pub no_expedited_attach: bool,
}

/// `comm` as the kernel keeps it: at most 15 bytes, NUL-padded to 16.
pub fn comm_key(name: &str) -> [u8; tracer_common::TASK_COMM_LEN] {
    let mut out = [0u8; tracer_common::TASK_COMM_LEN];
    let b = name.as_bytes();
    let n = b.len().min(tracer_common::TASK_COMM_LEN - 1);
    out[..n].copy_from_slice(&b[..n]);
    out
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            tls_capture_bytes: tracer_common::TLS_CAPTURE_DEFAULT as u32,
            ring_buffer_bytes: 16 * 1024 * 1024,
            tls: true,
            extra_libraries: Vec::new(),
            filter: KernelFilter::default(),
        }
    }
}

/// One attach point and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeStatus {
    /// tcp_connect, tcp_state, dns, tls_fd, process, tls_openssl, tls_gnutls, tls_nspr, tls_nss
    pub family: String,
    /// "tracepoint syscalls:sys_enter_connect", "uprobe SSL_write", "uretprobe SSL_read" ...
    pub point: String,
    /// The library file for uprobes.
    pub target: Option<PathBuf>,
    /// tracepoint | tp_btf | uprobe | uretprobe
    pub variant: &'static str,
    pub attached: bool,
    pub error: Option<String>,
    /// Uprobes only: "all_processes" (attached to the file for everyone), or "per_process"
    /// (client filter on: the probe is defined and its program attached once, and it is
    /// enabled for each traced process; see [`crate::filter::SharedUprobes`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'static str>,
}

impl ProbeStatus {
    /// The status of one attach point after an attempt: attached, or the error's chain.
    pub fn outcome<T>(
        family: impl Into<String>,
        point: impl Into<String>,
        target: Option<PathBuf>,
        variant: &'static str,
        scope: Option<&'static str>,
        result: &anyhow::Result<T>,
    ) -> Self {
        Self {
            family: family.into(),
            point: point.into(),
            target,
            variant,
            attached: result.is_ok(),
            error: result.as_ref().err().map(|e| format!("{e:#}")),
            scope,
        }
    }
}

pub const SCOPE_ALL: &str = "all_processes";
pub const SCOPE_PER_PROCESS: &str = "per_process";

/// Where in a file a uprobe goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachAt {
    Symbol(&'static str),
    /// A file offset (BoringSSL found by signature; symbols resolved for per-process use).
    Offset(u64),
}

/// One function to probe: entry program, optional return program.
#[derive(Debug, Clone)]
pub struct UprobePoint {
    pub entry: &'static str,
    pub ret: Option<&'static str>,
    /// The function's name, for reports.
    pub name: &'static str,
    pub at: AttachAt,
}

/// A file to put uprobes in, with its attach points.
#[derive(Debug, Clone)]
pub struct UprobeTarget {
    /// tls_openssl, tls_gnutls, tls_nspr, tls_nss, tls_fetcher, tls_boringssl
    pub family: String,
    pub path: PathBuf,
    pub points: Vec<UprobePoint>,
}

impl UprobePoint {
    /// "uprobe SSL_write"; BoringSSL's points, found by signature, carry their offset.
    pub fn label(&self, kind: &str) -> String {
        match self.at {
            AttachAt::Offset(o) if self.entry.starts_with("boringssl_") => format!("{kind} {} @ {o:#x}", self.name),
            _ => format!("{kind} {}", self.name),
        }
    }
}

/// What this kernel offers, and so which variant of connect/state/udp probes is used.
#[derive(Debug, Clone, Serialize)]
pub struct KernelSupport {
    pub kprobes: bool,
    pub reason: String,
}

pub fn kernel_support() -> KernelSupport {
    let kprobes = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    let reason = if kprobes {
        "kprobes available; the tracepoint variants are used because they already see connect, \
         every TCP state change and each DNS syscall (no kprobe variant is built yet)"
            .to_string()
    } else {
        "kprobes unavailable (no /sys/bus/event_source/devices/kprobe: CONFIG_KPROBES unset); \
         fentry is not used either: the tracepoint variants are complete on their own"
            .to_string()
    };
    KernelSupport { kprobes, reason }
}

pub struct Probes {
    pub ebpf: Ebpf,
    pub status: Vec<ProbeStatus>,
    pub kernel: KernelSupport,
    pub libraries: Vec<TlsLibrary>,
    pub warnings: Vec<String>,
    /// Binaries already examined for built-in BoringSSL.
    pub boringssl_checked: Vec<PathBuf>,
    /// Every attachment, so that shutdown can detach them all at once (see `detach_all`).
    pub links: Vec<Attachment>,
    /// Client filter on: the TLS uprobes, defined once and enabled per traced process (see
    /// [`crate::filter::SharedUprobes`]). None: attached for every process.
    pub shared: Option<crate::filter::SharedUprobes>,
    /// The kernel programs were loaded with the client filter on.
    pub filtered: bool,
}

/// One attached link: its program's name and id.
#[derive(Debug)]
pub enum Attachment {
    TracePoint(&'static str, TracePointLinkId),
    BtfTracePoint(&'static str, BtfTracePointLinkId),
    UProbe(&'static str, UProbeLinkId),
}

/// Tracepoint field offsets the eBPF programs are compiled with.
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
const FORK_FIELDS: &[(&str, usize)] = &[("child_pid", 20)];
const EXEC_FIELDS: &[(&str, usize)] = &[("filename", 8)];
const EXIT_FIELDS: &[(&str, usize)] = &[("group_dead", 32)];

/// (family, program, category, tracepoint, fields to verify)
const TRACEPOINTS: &[(&str, &str, &str, &str, &[(&str, usize)])] = &[
    ("tcp_connect", "sys_enter_connect", "syscalls", "sys_enter_connect", &[]),
    ("tcp_connect", "sys_exit_connect", "syscalls", "sys_exit_connect", &[]),
    ("tcp_state", "inet_sock_set_state", "sock", "inet_sock_set_state", SET_STATE_FIELDS),
    ("tcp_state", "inet_sk_error_report", "sock", "inet_sk_error_report", ERROR_REPORT_FIELDS),
    ("dns", "sys_enter_write", "syscalls", "sys_enter_write", &[]),
    ("dns", "sys_enter_sendto", "syscalls", "sys_enter_sendto", &[]),
    ("dns", "sys_enter_sendmsg", "syscalls", "sys_enter_sendmsg", &[]),
    ("dns", "sys_enter_sendmmsg", "syscalls", "sys_enter_sendmmsg", &[]),
    ("dns", "sys_enter_read", "syscalls", "sys_enter_read", &[]),
    ("dns", "sys_enter_recvfrom", "syscalls", "sys_enter_recvfrom", &[]),
    ("dns", "sys_enter_recvmsg", "syscalls", "sys_enter_recvmsg", &[]),
    ("dns", "sys_enter_recvmmsg", "syscalls", "sys_enter_recvmmsg", &[]),
    ("dns", "sys_exit_recv", "syscalls", "sys_exit_read", &[]),
    ("dns", "sys_exit_recv", "syscalls", "sys_exit_recvfrom", &[]),
    ("dns", "sys_exit_recv", "syscalls", "sys_exit_recvmsg", &[]),
    ("dns", "sys_exit_recv", "syscalls", "sys_exit_recvmmsg", &[]),
    ("dns", "sys_exit_recv", "syscalls", "sys_exit_readv", &[]),
    ("dns", "sys_enter_close", "syscalls", "sys_enter_close", &[]),
    ("tls_fd", "sys_enter_writev", "syscalls", "sys_enter_writev", &[]),
    ("tls_fd", "sys_enter_readv", "syscalls", "sys_enter_readv", &[]),
    ("process", "sched_process_fork", "sched", "sched_process_fork", FORK_FIELDS),
    ("process", "sched_process_exec", "sched", "sched_process_exec", EXEC_FIELDS),
    ("process", "sched_process_exit", "sched", "sched_process_exit", EXIT_FIELDS),
];

/// Family of the libc socket-call probes (client filter on).
pub const LIBC_FAMILY: &str = "libc_sockets";

/// With the client filter: the calls the syscall tracepoints see otherwise, at libc's
/// functions of the same names (tracer-ebpf's `libc` module): (entry, return, symbol).
const LIBC_POINTS: &[(&str, Option<&str>, &str)] = &[
    ("libc_connect", Some("libc_connect_ret"), "connect"),
    ("libc_write", None, "write"),
    ("libc_send", None, "send"),
    ("libc_sendto", None, "sendto"),
    ("libc_sendmsg", None, "sendmsg"),
    ("libc_sendmmsg", None, "sendmmsg"),
    ("libc_writev", None, "writev"),
    ("libc_read", Some("libc_recv_ret"), "read"),
    ("libc_recv", Some("libc_recv_ret"), "recv"),
    ("libc_recvfrom", Some("libc_recv_ret"), "recvfrom"),
    ("libc_recvmsg", Some("libc_recv_ret"), "recvmsg"),
    ("libc_recvmmsg", Some("libc_recv_ret"), "recvmmsg"),
    ("libc_readv", Some("libc_recv_ret"), "readv"),
    ("libc_close", None, "close"),
    // glibc's resolver closes its sockets with this one.
    ("libc_close", None, "__close_nocancel"),
];

/// The libc probe points in the file at `path`.
pub fn libc_target(path: PathBuf) -> UprobeTarget {
    UprobeTarget {
        family: LIBC_FAMILY.into(),
        path,
        points: symbol_points(LIBC_POINTS),
    }
}

/// The points of an (entry program, return program, symbol) table, at their symbols.
fn symbol_points(table: &[(&'static str, Option<&'static str>, &'static str)]) -> Vec<UprobePoint> {
    table.iter().map(|&(entry, ret, symbol)| UprobePoint { entry, ret, name: symbol, at: AttachAt::Symbol(symbol) }).collect()
}

/// What to attach in a library: (entry program, return program, symbol).
fn uprobes_for(family: LibFamily) -> &'static [(&'static str, Option<&'static str>, &'static str)] {
    match family {
        LibFamily::OpenSsl => &[
            ("ssl_write", Some("tls_data_ret"), "SSL_write"),
            ("ssl_read", Some("tls_data_ret"), "SSL_read"),
            ("ssl_write_ex", Some("tls_data_ret"), "SSL_write_ex"),
            ("ssl_read_ex", Some("tls_data_ret"), "SSL_read_ex"),
            ("ssl_do_handshake", Some("tls_handshake_ret"), "SSL_do_handshake"),
            ("ssl_connect", Some("tls_handshake_ret"), "SSL_connect"),
            ("ssl_set_fd", None, "SSL_set_fd"),
            ("ssl_set_accept_state", None, "SSL_set_accept_state"),
            ("tls_free", None, "SSL_free"),
        ],
        LibFamily::GnuTls => &[
            ("gnutls_record_send", Some("tls_data_ret"), "gnutls_record_send"),
            ("gnutls_record_recv", Some("tls_data_ret"), "gnutls_record_recv"),
            ("gnutls_handshake", Some("tls_handshake_ret"), "gnutls_handshake"),
            ("gnutls_transport_set_int2", None, "gnutls_transport_set_int2"),
            ("tls_free", None, "gnutls_deinit"),
        ],
        LibFamily::Nspr => &[
            ("pr_write", Some("tls_data_ret"), "PR_Write"),
            ("pr_read", Some("tls_data_ret"), "PR_Read"),
            ("pr_send", Some("tls_data_ret"), "PR_Send"),
            ("pr_recv", Some("tls_data_ret"), "PR_Recv"),
            ("tls_free", None, "PR_Close"),
        ],
        LibFamily::Nss => &[("nss_force_handshake", Some("tls_handshake_ret"), "SSL_ForceHandshake")],
        LibFamily::Fetcher => &[
            ("rustls_set_fd", None, "tracer_tls_set_fd"),
            ("rustls_handshake", Some("tls_handshake_ret"), "tracer_tls_handshake"),
            ("rustls_write", Some("tls_data_ret"), "tracer_tls_write"),
            ("rustls_read", Some("tls_data_ret"), "tracer_tls_read"),
        ],
    }
}

impl Probes {
    /// Load the object and attach everything. Fails only when nothing can work (no
    /// privilege, the object does not load); single probes that fail are in `status`.
    pub fn load(config: &ProbeConfig) -> anyhow::Result<Probes> {
        system::check_privileges(crate::procfs::effective_caps())?;
        let mut warnings = Vec::new();
        if system::ensure_tracefs()? {
            tracing::info!("mounted tracefs at {} (it was not mounted)", system::TRACEFS);
        }
        let capture = config.tls_capture_bytes.clamp(1, TLS_CAPTURE_MAX as u32);
        let filter_enabled: u32 = config.filter.enabled as u32;
        let filter_comm = match (&config.filter.comm, config.filter.enabled) {
            (Some(c), true) => comm_key(c),
            _ => [0u8; tracer_common::TASK_COMM_LEN],
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(globals::TLS_CAPTURE_BYTES, &capture, true)
            .override_global(globals::FILTER_ENABLED, &filter_enabled, true)
            .override_global(globals::FILTER_COMM, &filter_comm, true)
            .map_max_entries(maps::EVENTS, config.ring_buffer_bytes)
            .load(EBPF_OBJECT)
            .context("loading the eBPF object")?;

        let mut status = Vec::new();
        let mut links = Vec::new();
        for &(family, program, category, name, fields) in TRACEPOINTS {
            // With the client filter the socket calls are seen at libc in the traced
            // processes instead (below): one syscall tracepoint would slow every system
            // call of every process.
            if config.filter.enabled && !config.filter.syscall_tracepoints && category == "syscalls" {
                continue;
            }
            let result = attach_tracepoint(&mut ebpf, program, category, name, fields)
                .map(|id| links.push(Attachment::TracePoint(program, id)));
            status.push(ProbeStatus::outcome(family, format!("tracepoint {category}:{name}"), None, "tracepoint", None, &result));
        }

        let mut shared = match config.filter.enabled && (config.tls || !config.filter.syscall_tracepoints) {
            true => Some(
                crate::filter::SharedUprobes::new(!config.filter.no_expedited_attach).context("setting up per-process uprobes")?,
            ),
            false => None,
        };
        if config.filter.enabled && !config.filter.syscall_tracepoints {
            // The connects the libc probes cannot see (before a process's uprobes are in, or
            // by raw syscall), caught at their SYN instead.
            let result = attach_connect_without_libc(&mut ebpf).map(|id| links.push(Attachment::BtfTracePoint(CONNECT_WITHOUT_LIBC, id)));
            status.push(ProbeStatus::outcome("tcp_state", "tp_btf sock:inet_sock_set_state (connects no libc probe saw)", None, "tp_btf", None, &result));
        }
        if let Some(sh) = shared.as_mut().filter(|_| !config.filter.syscall_tracepoints) {
            // First: a process that becomes traced gets these before its TLS libraries.
            match libs::find_libc() {
                Ok(path) => status.extend(sh.add_target(&mut ebpf, libc_target(path))),
                Err(e) => {
                    warnings.push(format!("{e:#}: connect, DNS and plain HTTP of the traced processes are not seen"));
                    status.push(ProbeStatus::outcome(LIBC_FAMILY, "uprobe connect/send/recv/read/write/close", None, "uprobe", Some(SCOPE_PER_PROCESS), &Err::<(), _>(e)));
                }
            }
        }
        let mut libraries = Vec::new();
        let mut boringssl_checked = Vec::new();
        if config.tls {
            let (mut libs, w) = libs::find_tls_libraries();
            warnings.extend(w);
            for extra in config.extra_libraries.iter().chain(libs::fetcher_binaries().iter()) {
                if !libs.iter().any(|l| l.path == extra.path) {
                    libs.push(extra.clone());
                }
            }
            for fam in LibFamily::ALL {
                if !libs.iter().any(|l| l.family == fam) {
                    warnings.push(format!(
                        "no {} library found (linker cache, process maps): tls_{} probes skipped",
                        fam.name(),
                        fam.name()
                    ));
                }
            }
            for lib in &libs {
                match shared.as_mut() {
                    Some(sh) => status.extend(sh.add_target(&mut ebpf, library_target(lib))),
                    None => status.extend(attach_library(&mut ebpf, lib, &mut links)),
                }
            }
            libraries = libs;
            if let Some(sh) = shared.as_mut() {
                let (found, failed, w) = find_boringssl(&mut boringssl_checked);
                status.extend(failed);
                warnings.extend(w);
                for t in found {
                    status.extend(sh.add_target(&mut ebpf, t));
                }
            } else {
                let (bssl, w) = attach_boringssl(&mut ebpf, &mut boringssl_checked, &mut links);
                status.extend(bssl);
                warnings.extend(w);
            }
        }
        Ok(Probes {
            ebpf,
            status,
            kernel: kernel_support(),
            libraries,
            warnings,
            boringssl_checked,
            links,
            shared,
            filtered: config.filter.enabled,
        })
    }

    /// Attach to TLS libraries that appeared in process maps since the last scan (for every
    /// process; with the client filter: registered as new targets, which the filter then
    /// enables in the traced processes).
    pub fn attach_new_libraries(&mut self) -> Vec<ProbeStatus> {
        let (libs, _) = libs::find_tls_libraries();
        self.add_libraries(libs)
    }

    /// Attach (or, with the client filter, register) libraries not seen before, and
    /// BoringSSL in binaries not examined before.
    pub fn add_libraries(&mut self, libs: Vec<TlsLibrary>) -> Vec<ProbeStatus> {
        let mut out = Vec::new();
        for lib in libs {
            if self.libraries.iter().any(|l: &TlsLibrary| l.path == lib.path) {
                continue;
            }
            match self.shared.as_mut() {
                Some(sh) => out.extend(sh.add_target(&mut self.ebpf, library_target(&lib))),
                None => out.extend(attach_library(&mut self.ebpf, &lib, &mut self.links)),
            }
            self.libraries.push(lib);
        }
        let warnings = match self.shared.as_mut() {
            Some(sh) => {
                let (found, failed, warnings) = find_boringssl(&mut self.boringssl_checked);
                out.extend(failed);
                for t in found {
                    out.extend(sh.add_target(&mut self.ebpf, t));
                }
                warnings
            }
            None => {
                let (bssl, warnings) = attach_boringssl(&mut self.ebpf, &mut self.boringssl_checked, &mut self.links);
                out.extend(bssl);
                warnings
            }
        };
        for w in warnings {
            tracing::warn!("{w}");
        }
        self.status.extend(out.iter().cloned());
        out
    }

    /// Lost records per kind, summed over CPUs.
    pub fn lost_counts(&self) -> anyhow::Result<Vec<(tracer_common::EventKind, u64)>> {
        let lost: aya::maps::PerCpuArray<_, u64> = aya::maps::PerCpuArray::try_from(
            self.ebpf.map(maps::LOST).context("LOST map missing")?,
        )?;
        let mut out = Vec::new();
        for kind in tracer_common::EventKind::ALL {
            let per_cpu = lost.get(&(kind as u32), 0)?;
            out.push((kind, per_cpu.iter().sum()));
        }
        Ok(out)
    }
}

impl Probes {
    /// Detach everything, many links at once. Each uprobe's unregistration waits for an
    /// RCU grace period (synchronize_rcu_tasks_trace on recent kernels); one after another,
    /// ~70 attach points took 9-15 s to stop. Dropped from parallel threads, the waits share
    /// grace periods. Returns how many links were detached.
    pub fn detach_all(mut self) -> usize {
        let mut owned: Vec<Box<dyn Send>> = Vec::new();
        for link in std::mem::take(&mut self.links) {
            match link {
                Attachment::TracePoint(prog, id) => {
                    if let Some(Ok(tp)) = self.ebpf.program_mut(prog).map(<&mut TracePoint>::try_from) {
                        if let Ok(l) = tp.take_link(id) {
                            owned.push(Box::new(l));
                        }
                    }
                }
                Attachment::BtfTracePoint(prog, id) => {
                    if let Some(Ok(tp)) = self.ebpf.program_mut(prog).map(<&mut BtfTracePoint>::try_from) {
                        if let Ok(l) = tp.take_link(id) {
                            owned.push(Box::new(l));
                        }
                    }
                }
                Attachment::UProbe(prog, id) => {
                    if let Some(Ok(up)) = self.ebpf.program_mut(prog).map(<&mut UProbe>::try_from) {
                        if let Ok(l) = up.take_link(id) {
                            owned.push(Box::new(l));
                        }
                    }
                }
            }
        }
        // The per-process uprobes' anchors (client filter) close in parallel on their own.
        let anchors = self.shared.as_ref().map_or(0, |s| s.anchor_count());
        drop(self.shared.take());
        let n = owned.len();
        let per_thread = n.div_ceil(128).max(1);
        let mut threads = Vec::new();
        while !owned.is_empty() {
            let chunk: Vec<Box<dyn Send>> = owned.drain(..per_thread.min(owned.len())).collect();
            threads.push(std::thread::spawn(move || drop(chunk)));
        }
        for t in threads {
            let _ = t.join();
        }
        n + anchors
    }
}

const CONNECT_WITHOUT_LIBC: &str = "connect_without_libc";

/// The BTF tracepoint program of the client filter (tracer-ebpf's `libc` module).
fn attach_connect_without_libc(ebpf: &mut Ebpf) -> anyhow::Result<BtfTracePointLinkId> {
    let btf = aya::Btf::from_sys_fs().context("reading the kernel's BTF (/sys/kernel/btf/vmlinux)")?;
    let p: &mut BtfTracePoint = ebpf
        .program_mut(CONNECT_WITHOUT_LIBC)
        .with_context(|| format!("program {CONNECT_WITHOUT_LIBC} not in the object"))?
        .try_into()?;
    p.load("inet_sock_set_state", &btf).with_context(|| format!("verifier rejected {CONNECT_WITHOUT_LIBC}"))?;
    p.attach().context("attaching tp_btf/inet_sock_set_state")
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &str,
    category: &str,
    name: &str,
    fields: &[(&str, usize)],
) -> anyhow::Result<TracePointLinkId> {
    if !fields.is_empty() {
        let actual = system::tracepoint_fields(category, name)
            .with_context(|| format!("reading the format of {category}:{name}"))?;
        system::check_fields(&actual, fields).map_err(anyhow::Error::msg)?;
    }
    let tp: &mut TracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} not in the object"))?
        .try_into()?;
    // A program attached to several tracepoints is loaded once.
    if tp.fd().is_err() {
        tp.load().with_context(|| format!("verifier rejected {program}"))?;
    }
    tp.attach(category, name).with_context(|| format!("attaching {category}:{name}"))
}

/// BoringSSL compiled into a stripped binary (Chromium): found by code signature, attached
/// at file offsets. Binaries in `done` are skipped (rescans). A build whose functions cannot
/// be found is reported, not guessed: a uprobe at a wrong offset can crash the browser. Its
/// DNS and TCP are still traced.
pub fn attach_boringssl(
    ebpf: &mut Ebpf,
    done: &mut Vec<PathBuf>,
    links: &mut Vec<Attachment>,
) -> (Vec<ProbeStatus>, Vec<String>) {
    let (found, mut status, warnings) = find_boringssl(done);
    for target in found {
        status.extend(attach_target(ebpf, &target, links));
    }
    (status, warnings)
}

/// Find BoringSSL in the candidate binaries not examined yet: targets for those where it was
/// found, failure entries (and warnings) for those where it was not.
pub fn find_boringssl(done: &mut Vec<PathBuf>) -> (Vec<UprobeTarget>, Vec<ProbeStatus>, Vec<String>) {
    let mut targets = Vec::new();
    let mut status = Vec::new();
    let mut warnings = Vec::new();
    for path in boringssl::candidates() {
        if done.contains(&path) {
            continue;
        }
        done.push(path.clone());
        let found = match boringssl::find_cached(&path, Path::new(boringssl::DEFAULT_CACHE_DIR)) {
            Ok(f) => f,
            // Not a BoringSSL build at all (chrome_crashpad_handler and other helpers beside
            // the browser): nothing to trace, nothing to report.
            Err(e) if e.is_not_boringssl() => {
                tracing::debug!("{}: no BoringSSL inside", path.display());
                continue;
            }
            Err(e) => {
                warnings.push(format!(
                    "BoringSSL functions not found in {} ({e}): its TLS plaintext is not traced; DNS and TCP still are",
                    path.display()
                ));
                status.push(ProbeStatus::outcome(
                    "tls_boringssl",
                    "uprobe SSL_write/SSL_read/SSL_do_handshake (by signature)",
                    Some(path.clone()),
                    "uprobe",
                    None,
                    &Err::<(), _>(anyhow::anyhow!("{e}")),
                ));
                continue;
            }
        };
        let points = found
            .attach_points()
            .into_iter()
            .map(|(entry, ret, name, offset)| UprobePoint { entry, ret: Some(ret), name, at: AttachAt::Offset(offset) })
            .collect();
        targets.push(UprobeTarget { family: "tls_boringssl".into(), path, points });
    }
    (targets, status, warnings)
}

fn attach_uprobe(ebpf: &mut Ebpf, program: &str, at: AttachAt, path: &Path) -> anyhow::Result<UProbeLinkId> {
    let up: &mut UProbe = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} not in the object"))?
        .try_into()?;
    if up.fd().is_err() {
        up.load().with_context(|| format!("verifier rejected {program}"))?;
    }
    match at {
        AttachAt::Symbol(symbol) => up
            .attach(symbol, path, UProbeScope::AllProcesses)
            .with_context(|| format!("attaching to {symbol} in {}", path.display())),
        AttachAt::Offset(offset) => up
            .attach(offset, path, UProbeScope::AllProcesses)
            .with_context(|| format!("attaching at {offset:#x} in {}", path.display())),
    }
}

/// The attach points of a shared library's family.
pub fn library_target(lib: &TlsLibrary) -> UprobeTarget {
    UprobeTarget {
        family: format!("tls_{}", lib.family.name()),
        path: lib.path.clone(),
        points: symbol_points(uprobes_for(lib.family)),
    }
}

/// Attach every probe of a library's family for every process; each attach point reported
/// on its own.
pub fn attach_library(ebpf: &mut Ebpf, lib: &TlsLibrary, links: &mut Vec<Attachment>) -> Vec<ProbeStatus> {
    attach_target(ebpf, &library_target(lib), links)
}

/// Attach every point of `target` for every process. Return probe first: an entry without
/// its return would leave calls in flight.
pub fn attach_target(ebpf: &mut Ebpf, target: &UprobeTarget, links: &mut Vec<Attachment>) -> Vec<ProbeStatus> {
    let mut out = Vec::new();
    for p in &target.points {
        let mut ok = true;
        if let Some(ret) = p.ret {
            let r = attach_uprobe(ebpf, ret, p.at, &target.path).map(|id| links.push(Attachment::UProbe(ret, id)));
            ok = r.is_ok();
            out.push(ProbeStatus::outcome(&target.family, p.label("uretprobe"), Some(target.path.clone()), "uretprobe", Some(SCOPE_ALL), &r));
        }
        let r = if ok {
            attach_uprobe(ebpf, p.entry, p.at, &target.path).map(|id| links.push(Attachment::UProbe(p.entry, id)))
        } else {
            Err(anyhow::anyhow!("skipped: its return probe did not attach"))
        };
        out.push(ProbeStatus::outcome(&target.family, p.label("uprobe"), Some(target.path.clone()), "uprobe", Some(SCOPE_ALL), &r));
    }
    out
}

/// A file's symbols as uprobe file offsets (the translation aya applies to a symbol), so
/// that per-process probes are defined without aya's lookup.
pub(crate) struct SymbolOffsets {
    table: std::collections::HashMap<String, u64>,
}

impl SymbolOffsets {
    pub(crate) fn read(path: &Path) -> anyhow::Result<SymbolOffsets> {
        use object::{Object, ObjectSection, ObjectSymbol};
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let file = object::File::parse(&*data).with_context(|| format!("parsing {}", path.display()))?;
        let translate = matches!(file.kind(), object::ObjectKind::Dynamic | object::ObjectKind::Executable);
        let mut table = std::collections::HashMap::new();
        // Dynamic symbols first, like aya's lookup.
        for sym in file.dynamic_symbols().chain(file.symbols()) {
            let Ok(name) = sym.name() else { continue };
            if name.is_empty() || !sym.is_definition() || table.contains_key(name) {
                continue;
            }
            let offset = if translate {
                let Some(index) = sym.section_index() else { continue };
                let Ok(section) = file.section_by_index(index) else { continue };
                let Some((file_off, _)) = section.file_range() else { continue };
                sym.address() - section.address() + file_off
            } else {
                sym.address()
            };
            table.insert(name.to_string(), offset);
        }
        Ok(SymbolOffsets { table })
    }

    pub(crate) fn offset(&self, symbol: &str) -> anyhow::Result<u64> {
        self.table.get(symbol).copied().with_context(|| format!("symbol {symbol} not found"))
    }
}
