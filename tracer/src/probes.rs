//! Loading the eBPF object and attaching every probe family, each on its own: a probe that
//! fails to attach is reported and skipped, never takes the others down.
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use aya::{
    Ebpf, EbpfLoader,
    programs::{
        TracePoint, UProbe,
        trace_point::TracePointLinkId,
        uprobe::{UProbeLinkId, UProbeScope},
    },
};
use serde::Serialize;
use tracer_common::{TLS_CAPTURE_MAX, globals, maps};

use crate::libs::{LibFamily, TlsLibrary};
use crate::system;

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
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            tls_capture_bytes: tracer_common::TLS_CAPTURE_DEFAULT as u32,
            ring_buffer_bytes: 16 * 1024 * 1024,
            tls: true,
            extra_libraries: Vec::new(),
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
    /// tracepoint | uprobe | uretprobe
    pub variant: &'static str,
    pub attached: bool,
    pub error: Option<String>,
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
}

/// One attached link: its program's name and id.
#[derive(Debug)]
pub enum Attachment {
    TracePoint(&'static str, TracePointLinkId),
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
        system::check_privileges(system::effective_caps())?;
        let mut warnings = Vec::new();
        if system::ensure_tracefs()? {
            tracing::info!("mounted tracefs at {} (it was not mounted)", system::TRACEFS);
        }
        let capture = config.tls_capture_bytes.clamp(1, TLS_CAPTURE_MAX as u32);
        let mut ebpf = EbpfLoader::new()
            .override_global(globals::TLS_CAPTURE_BYTES, &capture, true)
            .map_max_entries(maps::EVENTS, config.ring_buffer_bytes)
            .load(EBPF_OBJECT)
            .context("loading the eBPF object")?;

        let mut status = Vec::new();
        let mut links = Vec::new();
        for &(family, program, category, name, fields) in TRACEPOINTS {
            let result = attach_tracepoint(&mut ebpf, program, category, name, fields)
                .map(|id| links.push(Attachment::TracePoint(program, id)));
            status.push(ProbeStatus {
                family: family.to_string(),
                point: format!("tracepoint {category}:{name}"),
                target: None,
                variant: "tracepoint",
                attached: result.is_ok(),
                error: result.err().map(|e| format!("{e:#}")),
            });
        }

        let mut libraries = Vec::new();
        let mut boringssl_checked = Vec::new();
        if config.tls {
            let (mut libs, w) = crate::libs::find_tls_libraries();
            warnings.extend(w);
            for extra in config.extra_libraries.iter().chain(crate::libs::fetcher_binaries().iter()) {
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
                status.extend(attach_library(&mut ebpf, lib, &mut links));
            }
            libraries = libs;
            let (bssl, w) = attach_boringssl(&mut ebpf, &mut boringssl_checked, &mut links);
            status.extend(bssl);
            warnings.extend(w);
        }
        Ok(Probes { ebpf, status, kernel: kernel_support(), libraries, warnings, boringssl_checked, links })
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
                Attachment::UProbe(prog, id) => {
                    if let Some(Ok(up)) = self.ebpf.program_mut(prog).map(<&mut UProbe>::try_from) {
                        if let Ok(l) = up.take_link(id) {
                            owned.push(Box::new(l));
                        }
                    }
                }
            }
        }
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
        n
    }
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
    let mut status = Vec::new();
    let mut warnings = Vec::new();
    for path in crate::boringssl::candidates() {
        if done.contains(&path) {
            continue;
        }
        done.push(path.clone());
        let found = match crate::boringssl::find_cached(&path, Path::new(crate::boringssl::DEFAULT_CACHE_DIR)) {
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
                status.push(ProbeStatus {
                    family: "tls_boringssl".into(),
                    point: "uprobe SSL_write/SSL_read/SSL_do_handshake (by signature)".into(),
                    target: Some(path.clone()),
                    variant: "uprobe",
                    attached: false,
                    error: Some(e.to_string()),
                });
                continue;
            }
        };
        for (entry, ret, name, offset) in found.attach_points() {
            let r = attach_uprobe_at(ebpf, ret, offset, &path).map(|id| links.push(Attachment::UProbe(ret, id)));
            let ret_ok = r.is_ok();
            status.push(ProbeStatus {
                family: "tls_boringssl".into(),
                point: format!("uretprobe {name} @ {offset:#x}"),
                target: Some(path.clone()),
                variant: "uretprobe",
                attached: r.is_ok(),
                error: r.err().map(|e| format!("{e:#}")),
            });
            let r = if ret_ok {
                attach_uprobe_at(ebpf, entry, offset, &path).map(|id| links.push(Attachment::UProbe(entry, id)))
            } else {
                Err(anyhow::anyhow!("skipped: its return probe did not attach"))
            };
            status.push(ProbeStatus {
                family: "tls_boringssl".into(),
                point: format!("uprobe {name} @ {offset:#x}"),
                target: Some(path.clone()),
                variant: "uprobe",
                attached: r.is_ok(),
                error: r.err().map(|e| format!("{e:#}")),
            });
        }
    }
    (status, warnings)
}

fn attach_uprobe_at(ebpf: &mut Ebpf, program: &str, offset: u64, path: &Path) -> anyhow::Result<UProbeLinkId> {
    let up: &mut UProbe = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} not in the object"))?
        .try_into()?;
    if up.fd().is_err() {
        up.load().with_context(|| format!("verifier rejected {program}"))?;
    }
    up.attach(offset, path, UProbeScope::AllProcesses)
        .with_context(|| format!("attaching at {offset:#x} in {}", path.display()))
}

fn attach_uprobe(ebpf: &mut Ebpf, program: &str, symbol: &str, path: &Path) -> anyhow::Result<UProbeLinkId> {
    let up: &mut UProbe = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} not in the object"))?
        .try_into()?;
    if up.fd().is_err() {
        up.load().with_context(|| format!("verifier rejected {program}"))?;
    }
    up.attach(symbol, path, UProbeScope::AllProcesses)
        .with_context(|| format!("attaching to {symbol} in {}", path.display()))
}

/// Attach every probe of a library's family; each attach point reported on its own.
pub fn attach_library(ebpf: &mut Ebpf, lib: &TlsLibrary, links: &mut Vec<Attachment>) -> Vec<ProbeStatus> {
    let family = format!("tls_{}", lib.family.name());
    let mut out = Vec::new();
    for &(entry, ret, symbol) in uprobes_for(lib.family) {
        // Return probe first: an entry without its return would leave calls in flight.
        let mut ok = true;
        if let Some(ret) = ret {
            let r = attach_uprobe(ebpf, ret, symbol, &lib.path).map(|id| links.push(Attachment::UProbe(ret, id)));
            ok = r.is_ok();
            out.push(ProbeStatus {
                family: family.clone(),
                point: format!("uretprobe {symbol}"),
                target: Some(lib.path.clone()),
                variant: "uretprobe",
                attached: r.is_ok(),
                error: r.err().map(|e| format!("{e:#}")),
            });
        }
        let r = if ok {
            attach_uprobe(ebpf, entry, symbol, &lib.path).map(|id| links.push(Attachment::UProbe(entry, id)))
        } else {
            Err(anyhow::anyhow!("skipped: its return probe did not attach"))
        };
        out.push(ProbeStatus {
            family: family.clone(),
            point: format!("uprobe {symbol}"),
            target: Some(lib.path.clone()),
            variant: "uprobe",
            attached: r.is_ok(),
            error: r.err().map(|e| format!("{e:#}")),
        });
    }
    out
}
