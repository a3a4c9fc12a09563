//! Finding and attaching the probes: loading the eBPF object, then attaching every probe
//! family declared in [`families`], each attach point on its own: one that fails is reported
//! and skipped, never takes the others down.
//!
//! - [`families`]: what each probe family is (programs, attach points, the records it emits,
//!   its variants);
//! - [`kernel`]: what this kernel offers (kprobes, symbols, tracepoint layouts, BTF offsets);
//! - [`variants`]: the variant of each family this kernel gets, and the load-time globals;
//! - [`tracepoints`], [`uprobes`]: attaching the kinds of attach point, for every process;
//! - [`per_process`]: uprobes enabled per traced process, for the client filter;
//! - [`libs`], [`boringssl`]: finding the TLS libraries to probe, and BoringSSL's functions
//!   inside a stripped Chromium;
//! - [`system`]: the privilege and tracefs it all needs.
use std::path::PathBuf;

use anyhow::Context as _;
use aya::{
    Ebpf, EbpfLoader,
    programs::{
        BtfTracePoint, KProbe, TracePoint, UProbe, kprobe::KProbeLinkId, tp_btf::BtfTracePointLinkId,
        trace_point::TracePointLinkId, uprobe::UProbeLinkId,
    },
};
use serde::Serialize;
use tracer_common::{TLS_CAPTURE_MAX, globals, maps};

pub mod boringssl;
pub mod families;
pub mod freebl;
pub mod kernel;
pub mod kretprobe;
pub mod libs;
pub mod per_process;
pub mod quic_families;
pub mod system;
pub mod tracepoints;
pub mod uprobes;
pub mod variants;

pub use kernel::KernelSupport;
use families::{Points, UprobeFile, When};
use libs::{LibFamily, TlsLibrary};
use per_process::SharedUprobes;
use uprobes::{UprobeTarget, attach_target, library_target, symbol_points};

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
    /// Variants forced by family (`--probe-variant tcp_state=kprobe`); the others are chosen
    /// per kernel (see [`variants`]).
    pub variants: std::collections::BTreeMap<String, String>,
    /// Tests only: layouts as another kernel would have them (see [`LayoutOverride`]).
    pub layout_override: LayoutOverride,
}

/// Tests only: run the programs' other layout paths on this kernel. `copy`: every
/// tracepoint record is copied and read at the offsets of its format file, as on a kernel
/// whose layout differs from the compiled one; `drop_fields`: these `(tracepoint, field)`
/// are taken as missing, as on a kernel that lacks them (`sched_process_exit`'s
/// `group_dead` before 6.16).
#[derive(Debug, Clone, Default)]
pub struct LayoutOverride {
    pub copy: bool,
    pub drop_fields: Vec<(String, String)>,
}

impl LayoutOverride {
    fn apply(&self, survey: &mut kernel::KernelSurvey) {
        for found in &mut survey.layouts {
            let Ok(layout) = &mut found.layout else { continue };
            if self.copy && layout.compiled == 1 {
                layout.compiled = 0;
                found.differences.push("copied and read at its format file's offsets (test)".into());
            }
            for (tp, field) in &self.drop_fields {
                if tp != found.fields.name {
                    continue;
                }
                if let Some(i) = found.fields.fields.iter().position(|f| f.name == field) {
                    layout.off[i] = tracer_common::layout::MISSING;
                    layout.compiled = 0;
                    found.differences.push(format!("{field} missing (dropped by the test)"));
                }
            }
        }
    }
}

/// The client filter as the kernel programs are loaded with it (load-time constants).
#[derive(Debug, Clone, Default)]
pub struct KernelFilter {
    /// Trace only the processes in the TRACED map. The uprobes are then enabled per traced
    /// process (see [`per_process`]; `crate::filter` says which) instead of for every process.
    pub enabled: bool,
    /// `--comm NAME`: a process that execs into this comm becomes traced (first 15 bytes).
    pub comm: Option<String>,
    /// `--syscall-tracepoints`: with the filter, the socket calls are still seen at the
    /// syscall tracepoints (every process pays their slow path), not at libc per process.
    pub syscall_tracepoints: bool,
    /// `--no-expedited-attach`: per-process attaches wait for normal RCU grace periods (see
    /// [`per_process::ExpeditedRcu`]).
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
            variants: Default::default(),
            layout_override: LayoutOverride::default(),
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
    /// tracepoint | tp_btf | kprobe | uprobe | uretprobe
    pub variant: &'static str,
    pub attached: bool,
    pub error: Option<String>,
    /// Uprobes only: "all_processes" (attached to the file for everyone), or "per_process"
    /// (client filter on: the probe is defined and its program attached once, and it is
    /// enabled for each traced process; see [`per_process::SharedUprobes`]).
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
    /// Client filter on: the uprobes, defined once and enabled per traced process (see
    /// [`per_process::SharedUprobes`]). None: attached for every process.
    pub shared: Option<SharedUprobes>,
    /// The kernel programs were loaded with the client filter on.
    pub filtered: bool,
    /// TLS plaintext probes wanted (not `--no-tls`): rescans attach new libraries only then.
    pub tls: bool,
}

/// One attached link: its program's name and id.
#[derive(Debug)]
pub enum Attachment {
    TracePoint(&'static str, TracePointLinkId),
    BtfTracePoint(&'static str, BtfTracePointLinkId),
    KProbe(&'static str, KProbeLinkId),
    /// A kretprobe made through tracefs with [`kretprobe::MAXACTIVE`] instances.
    Kretprobe(kretprobe::TracefsKretprobe),
    UProbe(&'static str, UProbeLinkId),
}

impl Probes {
    /// Load the object and attach every family declared in [`families::FAMILIES`], in the
    /// order its documentation gives. Fails only when nothing can work (no privilege, the
    /// object does not load); single probes that fail are in `status`.
    pub fn load(config: &ProbeConfig) -> anyhow::Result<Probes> {
        system::check_privileges(crate::procfs::effective_caps())?;
        let mut warnings = Vec::new();
        if system::ensure_tracefs()? {
            tracing::info!("mounted tracefs at {} (it was not mounted)", system::TRACEFS);
        }
        for event in kretprobe::remove_stale(std::path::Path::new(system::TRACEFS)) {
            tracing::info!("removed kretprobe event {event}, left by a daemon that is gone");
        }
        let capture = config.tls_capture_bytes.clamp(1, TLS_CAPTURE_MAX as u32);
        let filter_enabled: u32 = config.filter.enabled as u32;
        let filter_comm = match (&config.filter.comm, config.filter.enabled) {
            (Some(c), true) => comm_key(c),
            _ => [0u8; tracer_common::TASK_COMM_LEN],
        };

        // With the client filter the socket calls are seen at libc in the traced processes
        // (unless --syscall-tracepoints): one syscall tracepoint would slow every system call
        // of every process.
        let sockets_at_libc = config.filter.enabled && !config.filter.syscall_tracepoints;
        let wanted = |when: When| match when {
            When::Always => true,
            When::SocketCallsAtSyscalls => !sockets_at_libc,
            When::SocketCallsAtLibc => sockets_at_libc,
            When::Tls => config.tls,
        };
        // What this kernel offers decides each family's variant and the programs' layouts.
        let started = std::time::Instant::now();
        let mut survey = kernel::KernelSurvey::of_this_kernel();
        config.layout_override.apply(&mut survey);
        tracing::debug!("probes: kernel survey (kallsyms, BTF, formats) in {:?}", started.elapsed());
        let plan = variants::plan(&survey, &wanted, &config.variants)?;
        tracing::debug!("probes: variants chosen (BTF read if needed) at {:?}", started.elapsed());
        let layouts = variants::layout_globals(&survey);
        let one: u32 = 1;
        let mut loader = EbpfLoader::new();
        loader
            .override_global(globals::TLS_CAPTURE_BYTES, &capture, true)
            .override_global(globals::FILTER_ENABLED, &filter_enabled, true)
            .override_global(globals::FILTER_COMM, &filter_comm, true)
            .override_global(tracer_common::layout::KERNEL_OFFSETS, &plan.offsets, true)
            .map_max_entries(maps::EVENTS, config.ring_buffer_bytes);
        for (global, layout) in &layouts {
            loader.override_global(global, layout, true);
        }
        for flag in &plan.flags {
            loader.override_global(flag, &one, true);
        }
        let mut ebpf = loader.load(EBPF_OBJECT).context("loading the eBPF object")?;
        tracing::debug!("probes: object loaded at {:?}", started.elapsed());

        let mut status = Vec::new();
        let mut links = Vec::new();
        let sets = || plan.points.iter().copied();
        for (family, _, points) in sets() {
            let Points::Tracepoints(tracepoints) = points else { continue };
            for tp in *tracepoints {
                let result = tracepoints::attach_tracepoint(&mut ebpf, tp, &survey)
                    .map(|id| links.push(Attachment::TracePoint(tp.program, id)));
                status.push(ProbeStatus::outcome(family.name, format!("tracepoint {}:{}", tp.category, tp.name), None, "tracepoint", None, &result));
            }
        }

        tracing::debug!("probes: tracepoints attached at {:?}", started.elapsed());
        // With the client filter every uprobe is enabled per traced process.
        let per_process = config.filter.enabled && families::uprobe_sets().any(|s| wanted(s.when));
        let mut shared = match per_process {
            true => Some(SharedUprobes::new(!config.filter.no_expedited_attach).context("setting up per-process uprobes")?),
            false => None,
        };
        let scope = if shared.is_some() { SCOPE_PER_PROCESS } else { SCOPE_ALL };
        // The kernel's BTF, read once for every tp_btf program (not at all without one).
        let mut kernel_btf = None;
        for (family, _, points) in sets() {
            let Points::BtfTracepoint(btf) = points else { continue };
            let result = tracepoints::attach_btf_tracepoint(&mut ebpf, btf, &mut kernel_btf)
                .map(|id| links.push(Attachment::BtfTracePoint(btf.program, id)));
            status.push(ProbeStatus::outcome(family.name, format!("tp_btf {}", btf.report_as), None, "tp_btf", None, &result));
        }
        for (family, _, points) in sets() {
            let Points::Kprobe(k) = points else { continue };
            let result = tracepoints::attach_kprobe(&mut ebpf, k).map(|a| links.push(a));
            status.push(ProbeStatus::outcome(family.name, format!("{} {}", k.kind(), k.function), None, k.kind(), None, &result));
        }
        for set in families::uprobe_sets().filter(|s| wanted(s.when)) {
            let UprobeFile::Libc { report_as, unseen } = set.file else { continue };
            match libs::find_libc() {
                Ok(path) => {
                    let target = UprobeTarget { family: set.family.name.into(), path, points: symbol_points(set.functions) };
                    status.extend(add_target(&mut ebpf, shared.as_mut(), &mut links, target));
                }
                Err(e) => {
                    warnings.push(format!("{e:#}: {unseen} are not seen"));
                    status.push(ProbeStatus::outcome(set.family.name, format!("uprobe {report_as}"), None, "uprobe", Some(scope), &Err::<(), _>(e)));
                }
            }
        }
        tracing::debug!("probes: tp_btf, kprobes and libc attached at {:?}", started.elapsed());
        let mut libraries = Vec::new();
        if families::uprobe_sets().any(|s| matches!(s.file, UprobeFile::TlsLibrary(_)) && wanted(s.when)) {
            let (mut libs, w) = libs::find_tls_libraries();
            warnings.extend(w);
            tracing::debug!("probes: TLS libraries found at {:?}", started.elapsed());
            let fetchers = libs::fetcher_binaries();
            tracing::debug!("probes: tracer binaries found at {:?}", started.elapsed());
            for extra in config.extra_libraries.iter().chain(fetchers.iter()) {
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
                status.extend(add_library(&mut ebpf, shared.as_mut(), &mut links, lib, &mut warnings));
                tracing::debug!("probes: {} attached at {:?}", lib.path.display(), started.elapsed());
            }
            libraries = libs;
        }
        tracing::debug!("probes: TLS libraries attached at {:?}", started.elapsed());
        let mut boringssl_checked = Vec::new();
        let (found, w) = add_found_by_signature(&mut ebpf, shared.as_mut(), &mut links, &mut boringssl_checked, &wanted);
        status.extend(found);
        warnings.extend(w);
        tracing::debug!("probes: all attached in {:?}", started.elapsed());
        Ok(Probes {
            ebpf,
            status,
            libraries,
            warnings,
            boringssl_checked,
            links,
            shared,
            filtered: config.filter.enabled,
            kernel: plan.support,
            tls: config.tls,
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
    /// Nothing with `--no-tls`: a rescan must not attach what the run was told to leave out.
    pub fn add_libraries(&mut self, libs: Vec<TlsLibrary>) -> Vec<ProbeStatus> {
        let mut out = Vec::new();
        if !self.tls {
            return out;
        }
        for lib in libs {
            if self.libraries.iter().any(|l: &TlsLibrary| l.path == lib.path) {
                continue;
            }
            let mut warnings = Vec::new();
            out.extend(add_library(&mut self.ebpf, self.shared.as_mut(), &mut self.links, &lib, &mut warnings));
            for w in warnings {
                tracing::warn!("{w}");
            }
            self.libraries.push(lib);
        }
        let (found, warnings) =
            add_found_by_signature(&mut self.ebpf, self.shared.as_mut(), &mut self.links, &mut self.boringssl_checked, &|_| true);
        out.extend(found);
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
                Attachment::KProbe(prog, id) => {
                    if let Some(Ok(k)) = self.ebpf.program_mut(prog).map(<&mut KProbe>::try_from) {
                        if let Ok(l) = k.take_link(id) {
                            owned.push(Box::new(l));
                        }
                    }
                }
                Attachment::Kretprobe(k) => owned.push(Box::new(k)),
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

/// Attach `target`'s uprobes for every process, or with the client filter (`shared`) define
/// them for the traced processes.
fn add_target(ebpf: &mut Ebpf, shared: Option<&mut SharedUprobes>, links: &mut Vec<Attachment>, target: UprobeTarget) -> Vec<ProbeStatus> {
    match shared {
        Some(sh) => sh.add_target(ebpf, target),
        None => attach_target(ebpf, &target, links),
    }
}

/// [`add_target`] for a TLS library, with its family's functions.
fn add_library(
    ebpf: &mut Ebpf,
    shared: Option<&mut SharedUprobes>,
    links: &mut Vec<Attachment>,
    lib: &TlsLibrary,
    warnings: &mut Vec<String>,
) -> Vec<ProbeStatus> {
    let mut shared = shared;
    let mut out = match library_target(lib) {
        Some(target) => add_target(ebpf, shared.as_deref_mut(), links, target),
        None => {
            warnings.push(format!("no probe family declares {} libraries: {} not probed", lib.family.name(), lib.path.display()));
            Vec::new()
        }
    };
    // Sets that go into a library beside this one (NSS's libnss3.so and freebl, for QUIC
    // plaintext).
    for set in families::uprobe_sets() {
        let found = match set.file {
            UprobeFile::BesideLibrary { library, file, report_as } if *library == lib.family => {
                uprobes::beside_library_target(set, file, report_as, &lib.path)
            }
            UprobeFile::FreeblTable { library, report_as } if *library == lib.family => uprobes::freebl_target(set, report_as, &lib.path),
            _ => continue,
        };
        match found {
            Ok(target) => out.extend(add_target(ebpf, shared.as_deref_mut(), links, target)),
            Err((status, warning)) => {
                warnings.push(warning);
                out.push(status);
            }
        }
    }
    out
}

/// The uprobe sets found by code signature (BoringSSL inside a stripped Chromium), in the
/// binaries not examined yet (`done`). A build whose functions cannot be found is reported,
/// not guessed: a uprobe at a wrong offset can crash the browser. Its DNS and TCP are still
/// traced. Returns the status entries (failures first) and warnings.
fn add_found_by_signature(
    ebpf: &mut Ebpf,
    mut shared: Option<&mut SharedUprobes>,
    links: &mut Vec<Attachment>,
    done: &mut Vec<PathBuf>,
    wanted: &dyn Fn(When) -> bool,
) -> (Vec<ProbeStatus>, Vec<String>) {
    let mut status = Vec::new();
    let sets: Vec<(families::UprobeSet, &str)> = families::uprobe_sets()
        .filter(|s| wanted(s.when))
        .filter_map(|set| match set.file {
            UprobeFile::FoundBySignature { report_as } => Some((set, *report_as)),
            _ => None,
        })
        .collect();
    let (found, failed, warnings) = uprobes::boringssl_targets(&sets, done);
    status.extend(failed);
    for target in found {
        status.extend(add_target(ebpf, shared.as_deref_mut(), links, target));
    }
    (status, warnings)
}

/// Load (verify, not attach) every kprobe and kretprobe program the families declare, with the
/// globals of their variants set and this kernel's BTF offsets: a kernel without kprobes (this
/// project's machines) still verifies kprobe programs, so the verifier's limits that every
/// kernel shares (the 512 bytes of stack for all frames together, the instruction count) are
/// checked here before a guest of the kernel matrix would find them. Returns each program's
/// outcome, the verifier's words on failure.
pub fn verify_kprobe_programs() -> anyhow::Result<Vec<(&'static str, Result<(), String>)>> {
    let survey = kernel::KernelSurvey::of_this_kernel();
    let offsets = survey.btf().map(|o| *o).unwrap_or(tracer_common::layout::KernelOffsets::UNKNOWN);
    let one: u32 = 1;
    let mut loader = EbpfLoader::new();
    loader.override_global(tracer_common::layout::KERNEL_OFFSETS, &offsets, true);
    let mut programs = Vec::new();
    for (_, _, points) in families::all_points() {
        let Points::Kprobe(k) = points else { continue };
        if !programs.contains(&k.program) {
            programs.push(k.program);
        }
    }
    for (_, a) in families::attach_sets() {
        let Points::OneOf(choice) = &a.points else { continue };
        for v in choice.variants.iter().filter(|v| v.points.iter().any(|p| matches!(p, Points::Kprobe(_)))) {
            if let Some(flag) = v.global {
                loader.override_global(flag, &one, true);
            }
        }
    }
    let mut ebpf = loader.load(EBPF_OBJECT).context("loading the eBPF object")?;
    Ok(load_each(&mut ebpf, programs, |p| {
        <&mut KProbe>::try_from(p).map_err(|e| format!("not a kprobe program: {e}"))?.load().map_err(|e| format!("{e:#}"))
    }))
}

/// Each of `programs` loaded by `load`: its outcome, the verifier's words on failure.
fn load_each(
    ebpf: &mut Ebpf,
    programs: Vec<&'static str>,
    load: impl Fn(&mut aya::programs::Program) -> Result<(), String>,
) -> Vec<(&'static str, Result<(), String>)> {
    programs
        .into_iter()
        .map(|name| (name, ebpf.program_mut(name).map_or_else(|| Err("not in the object".to_string()), &load)))
        .collect()
}

/// Load (verify, not attach) every uprobe and uretprobe program the families declare, as
/// [`verify_kprobe_programs`] does for kprobes: a kernel's verifier judges a uprobe program at
/// its first attach, which needs the library it probes (the QUIC plaintext programs need a
/// browser's NSS or BoringSSL), so a kernel of the matrix checks them here whatever is installed.
pub fn verify_uprobe_programs() -> anyhow::Result<Vec<(&'static str, Result<(), String>)>> {
    let mut programs = Vec::new();
    for (_, _, points) in families::all_points() {
        let Points::Uprobes { functions, .. } = points else { continue };
        for name in functions.iter().flat_map(|f| std::iter::once(f.entry).chain(f.ret)) {
            if !programs.contains(&name) {
                programs.push(name);
            }
        }
    }
    let mut ebpf = EbpfLoader::new().load(EBPF_OBJECT).context("loading the eBPF object")?;
    Ok(load_each(&mut ebpf, programs, |p| {
        <&mut UProbe>::try_from(p).map_err(|e| format!("not a uprobe program: {e}"))?.load().map_err(|e| format!("{e:#}"))
    }))
}
