//! Uprobes enabled per process, for the client filter (`--pid`, `--comm`, `-- COMMAND`; see
//! `crate::filter`, which says which processes are traced): an untraced process never hits
//! their breakpoints, so a busy server that is not traced keeps its speed.
//!
//! How ([`SharedUprobes`]): each probe point is defined once as a tracefs uprobe event (group
//! `tracer_<daemon pid>`), and the BPF program is attached to it once, through a perf event
//! bound to the daemon itself (the "anchor", which never fires: the daemon calls no TLS
//! function). A traced process then gets one more perf event per probe point, bound to it,
//! without a program, opened with `inherit`: the kernel copies those events into every child
//! and thread the process creates, inside fork, before the child runs, so a curl that a
//! traced shell starts is covered from its first instruction. The kernel installs a uprobe's
//! breakpoints only into the address spaces of the tasks its perf events are bound to (and
//! keeps them across exec: libraries the new program maps get them as they are mapped), and
//! runs the program for all of them. The daemon opens inherited events itself for the
//! processes that become traced without being forked by a traced one: those seeded at
//! start-up, the `-- COMMAND` (before it runs), and with `--comm` a process that execs NAME.
//! Because the kernel's copies proved unreliable in one case (see
//! `crate::filter::ClientFilter::on_event`), a forked child also gets events of its own, not
//! inherited, when it execs. Opening an event costs well under a millisecond when the
//! process is covered already, a walk of the file's mappings otherwise; closing one after
//! its process exited is nearly free, because the probe stays registered through its anchor.
//! (aya's `UProbeScope::OneProcess` makes each process's attach point a probe of its own:
//! measured on this kernel, each one takes ~130 ms to detach, holding a lock every attach
//! needs, and attaching can wait for an RCU grace period: longer than a curl takes to reach
//! its first TLS call.)
use std::{
    collections::BTreeMap,
    os::fd::{AsFd as _, AsRawFd, FromRawFd, OwnedFd},
    path::PathBuf,
};

use anyhow::{Context as _, bail};
use aya::{Ebpf, programs::UProbe};

use super::{
    ProbeStatus, SCOPE_PER_PROCESS,
    uprobes::{AttachAt, SymbolOffsets, UprobeTarget},
};
use crate::procfs;

/// Uprobes defined once and enabled per process (see the module documentation).
pub struct SharedUprobes {
    tracefs: PathBuf,
    group: String,
    next: usize,
    /// Every target with its probe events, in the order added.
    targets: Vec<SharedTarget>,
    /// Per-process perf events, by tgid and target index.
    procs: BTreeMap<u32, BTreeMap<usize, Vec<OwnedFd>>>,
    /// `/sys/kernel/rcu_expedited`, set around each attach (None: `--no-expedited-attach`).
    expedite: Option<PathBuf>,
}

struct SharedTarget {
    target: UprobeTarget,
    events: Vec<ProbeEvent>,
}

struct ProbeEvent {
    name: String,
    id: u64,
    /// The perf event that holds the program, bound to the daemon.
    anchor: Option<OwnedFd>,
}

impl SharedUprobes {
    /// Mount tracefs if needed and remove the probe events a daemon that died left behind.
    pub fn new(expedite: bool) -> anyhow::Result<SharedUprobes> {
        let tracefs = PathBuf::from(super::system::TRACEFS);
        super::system::ensure_tracefs()?;
        anyhow::ensure!(tracefs.join("uprobe_events").exists(), "{}/uprobe_events missing: no uprobe events in this kernel", tracefs.display());
        remove_stale_groups(&tracefs);
        raise_fd_limit();
        Ok(SharedUprobes {
            group: format!("tracer_{}", std::process::id()),
            tracefs,
            next: 0,
            targets: Vec::new(),
            procs: BTreeMap::new(),
            expedite: expedite.then(|| PathBuf::from(RCU_EXPEDITED)),
        })
    }

    /// Define every point of `target` (symbols resolved to file offsets) and attach its
    /// programs through the anchors. One status entry per attach point, scope per_process;
    /// a return probe that fails skips its entry probe. Only points that attached are kept.
    pub fn add_target(&mut self, ebpf: &mut Ebpf, mut target: UprobeTarget) -> Vec<ProbeStatus> {
        let symbols = SymbolOffsets::of_target(&target);
        let mut out = Vec::new();
        let mut kept = Vec::new();
        let mut events = Vec::new();
        for mut p in std::mem::take(&mut target.points) {
            let at = match (p.at, &symbols) {
                (AttachAt::Symbol(sym), Some(Ok(table))) => table.offset(sym),
                (AttachAt::Symbol(_), Some(Err(e))) => Err(anyhow::anyhow!("{e:#}")),
                (AttachAt::Offset(o) | AttachAt::FoundOffset(o), _) => Ok(o),
                (AttachAt::Symbol(sym), None) => Err(anyhow::anyhow!("symbol {sym}: no symbol table")),
            };
            let status = |kind: &'static str, r: &anyhow::Result<ProbeEvent>| {
                ProbeStatus::outcome(&target.family, p.label(kind), Some(target.path.clone()), kind, Some(SCOPE_PER_PROCESS), r)
            };
            let mut point_events = Vec::new();
            let mut ok = true;
            if let Some(ret) = p.ret {
                let r = match &at {
                    Ok(off) => self.define(ebpf, ret, true, &target.path, *off),
                    Err(e) => Err(anyhow::anyhow!("{e:#}")),
                };
                out.push(status("uretprobe", &r));
                match r {
                    Ok(ev) => point_events.push(ev),
                    Err(_) => ok = false,
                }
            }
            let r = match (&at, ok) {
                (Ok(off), true) => self.define(ebpf, p.entry, false, &target.path, *off),
                (Err(e), _) => Err(anyhow::anyhow!("{e:#}")),
                (_, false) => Err(anyhow::anyhow!("skipped: its return probe did not attach")),
            };
            out.push(status("uprobe", &r));
            match r {
                Ok(ev) => {
                    point_events.push(ev);
                    if let (AttachAt::Symbol(_), Ok(off)) = (p.at, at) {
                        p.at = AttachAt::Offset(off);
                    }
                    kept.push(p);
                    events.extend(point_events);
                }
                Err(_) => self.remove_events(point_events),
            }
        }
        target.points = kept;
        if !events.is_empty() {
            self.targets.push(SharedTarget { target, events });
        }
        out
    }

    /// One probe point: a tracefs uprobe event and the anchor that runs `program` for it.
    fn define(&mut self, ebpf: &mut Ebpf, program: &str, ret: bool, path: &std::path::Path, offset: u64) -> anyhow::Result<ProbeEvent> {
        let up: &mut UProbe = ebpf.program_mut(program).with_context(|| format!("program {program} not in the object"))?.try_into()?;
        if up.fd().is_err() {
            up.load().with_context(|| format!("verifier rejected {program}"))?;
        }
        let prog_fd = up.fd()?.as_fd().as_raw_fd();
        let p = path.to_str().filter(|p| !p.contains(char::is_whitespace)).with_context(|| format!("{}: a path tracefs cannot take", path.display()))?;
        let name = format!("{}{}_{}", if ret { "r" } else { "p" }, self.next, program);
        self.next += 1;
        let def = format!("{}:{}/{} {}:{:#x}\n", if ret { "r" } else { "p" }, self.group, name, p, offset);
        self.write_events(&def).with_context(|| format!("defining {}", def.trim()))?;
        let mut ev = ProbeEvent { name, id: 0, anchor: None };
        let attach = (|| -> anyhow::Result<()> {
            let id_path = self.tracefs.join("events").join(&self.group).join(&ev.name).join("id");
            ev.id = std::fs::read_to_string(&id_path).with_context(|| format!("reading {}", id_path.display()))?.trim().parse()?;
            let anchor = perf_open(ev.id, std::process::id() as i32, Open::Anchor).context("perf_event_open (anchor)")?;
            // SAFETY: valid perf event fd and program fd; the ioctls take an int argument.
            if unsafe { libc::ioctl(anchor.as_raw_fd(), PERF_EVENT_IOC_SET_BPF, prog_fd) } != 0 {
                bail!("PERF_EVENT_IOC_SET_BPF: {}", std::io::Error::last_os_error());
            }
            // SAFETY: as above.
            if unsafe { libc::ioctl(anchor.as_raw_fd(), PERF_EVENT_IOC_ENABLE, 0) } != 0 {
                bail!("PERF_EVENT_IOC_ENABLE: {}", std::io::Error::last_os_error());
            }
            ev.anchor = Some(anchor);
            Ok(())
        })();
        if let Err(e) = attach {
            self.remove_events(vec![ev]);
            return Err(e.context(format!("attaching {program} at {offset:#x} in {}", path.display())));
        }
        Ok(ev)
    }

    fn write_events(&self, text: &str) -> std::io::Result<()> {
        use std::io::Write as _;
        // Append: opening it for writing without O_APPEND would clear everyone's probes.
        std::fs::OpenOptions::new().append(true).open(self.tracefs.join("uprobe_events"))?.write_all(text.as_bytes())
    }

    fn remove_events(&self, events: Vec<ProbeEvent>) {
        for mut ev in events {
            drop(ev.anchor.take());
            let _ = self.write_events(&format!("-:{}/{}\n", self.group, ev.name));
        }
    }

    /// Open for process `pid` the events of the targets from index `from` on that it does
    /// not have yet. Returns the failures.
    ///
    /// Opening an event normally makes the kernel walk the address spaces that map the file
    /// and put breakpoints into the process's (a walk that can wait for an RCU grace period;
    /// it is skipped when another event already covers the process). With
    /// [`Open::InheritFresh`] (a process that has not exec'd yet) everything it will map gets
    /// the breakpoints as it maps it and the walk is skipped; the maps are looked at again
    /// afterwards, and a file that is mapped by then gets the walk after all.
    pub fn attach(&mut self, pid: u32, from: usize, how: Open) -> Vec<String> {
        let known = self.procs.get(&pid);
        let mut order: Vec<usize> =
            (from..self.targets.len()).filter(|i| !known.is_some_and(|have| have.contains_key(i))).collect();
        if order.is_empty() {
            return Vec::new();
        }
        let _fast = self.expedite.as_deref().and_then(ExpeditedRcu::begin);
        let mut errors = Vec::new();
        let mut unwalked = Vec::new();
        // A perf event is bound to one thread, and only that thread's forks inherit it: a
        // child forked by another thread that already ran (a test harness thread, a
        // browser's launcher thread) would get its uprobes only at its exec, a few ms late.
        // Every running thread gets inherited events too (cheap: the process is covered by
        // then, no walk); threads created later inherit them.
        let threads: Vec<u32> =
            if how == Open::Inherit { procfs::threads(pid).into_iter().filter(|&t| t != pid).collect() } else { Vec::new() };
        // The files the process maps already go first: with `--pid`, and after an exec that
        // the daemon read late (under load), by when the dynamic loader has mapped every
        // library the program links. In target order (libc, NSPR, NSS, GnuTLS, OpenSSL, ...)
        // libssl's events waited behind 21 for NSPR, NSS and GnuTLS, 13 of them for files a
        // curl here never maps (it maps GnuTLS through librtmp). Checked with strace: with
        // `--pid` of a Python process that maps libssl, its OpenSSL events now follow libc's.
        let mapped = if how == Open::InheritFresh { Vec::new() } else { procfs::mapped_paths(pid) };
        order.sort_by_key(|&i| !mapped.contains(&self.targets[i].target.path));
        let have = self.procs.entry(pid).or_default();
        for i in order {
            let t = &self.targets[i];
            let mut fds = open_all(&t.events, pid, how, &t.target.path, &mut errors);
            if how == Open::InheritFresh && fds.len() == t.events.len() {
                unwalked.push(i);
            }
            for &tid in &threads {
                // A thread that exits meanwhile is no failure: its forks are over.
                fds.extend(open_all(&t.events, tid, Open::Inherit, &t.target.path, &mut Vec::new()));
            }
            have.insert(i, fds);
        }
        if !unwalked.is_empty() {
            let now = procfs::mapped_paths(pid);
            for i in unwalked {
                let t = &self.targets[i];
                if now.contains(&t.target.path) {
                    let more = open_all(&t.events, pid, Open::Own, &t.target.path, &mut errors);
                    have.entry(i).or_default().extend(more);
                }
            }
        }
        errors
    }

    /// Probe points defined (each one anchor).
    pub fn anchor_count(&self) -> usize {
        self.targets.iter().map(|t| t.events.len()).sum()
    }

    pub fn target_count(&self) -> usize {
        self.targets.len()
    }

    pub fn detach(&mut self, pid: u32) {
        self.procs.remove(&pid);
    }

    /// Per-process events held, in total and per family.
    pub fn counts(&self) -> (usize, BTreeMap<String, usize>) {
        let mut total = 0;
        let mut by_family: BTreeMap<String, usize> = BTreeMap::new();
        for have in self.procs.values() {
            for (i, fds) in have {
                total += fds.len();
                *by_family.entry(self.targets[*i].target.family.clone()).or_default() += fds.len();
            }
        }
        (total, by_family)
    }

    /// The targets (files and attach points) that traced processes get.
    pub fn targets(&self) -> impl Iterator<Item = &UprobeTarget> {
        self.targets.iter().map(|t| &t.target)
    }
}

impl Drop for SharedUprobes {
    /// Per-process events first, then the anchors (each unregisters its probe, the slow
    /// part), then the tracefs definitions, which the kernel refuses while events are open.
    fn drop(&mut self) {
        self.procs.clear();
        let mut events: Vec<ProbeEvent> = std::mem::take(&mut self.targets).into_iter().flat_map(|t| t.events).collect();
        // Each anchor's close waits for the kernel to unregister its probe (tens to hundreds
        // of ms); a few closes in parallel share some of that wait.
        let anchors: Vec<OwnedFd> = events.iter_mut().filter_map(|e| e.anchor.take()).collect();
        let per = anchors.len().div_ceil(128).max(1);
        let mut chunks: Vec<Vec<OwnedFd>> = Vec::new();
        for a in anchors {
            match chunks.last_mut() {
                Some(c) if c.len() < per => c.push(a),
                _ => chunks.push(vec![a]),
            }
        }
        std::thread::scope(|sc| {
            for c in chunks {
                sc.spawn(move || drop(c));
            }
        });
        self.remove_events(events);
    }
}

const RCU_EXPEDITED: &str = "/sys/kernel/rcu_expedited";

/// While alive, RCU grace periods are expedited machine-wide (`/sys/kernel/rcu_expedited` is 1),
/// if they were not already; dropping it puts back the 0 it found.
///
/// Why: opening a process's first uprobe event for a file it maps already (libc, after its
/// exec) makes the kernel walk its mappings with `dup_mmap_sem` held for writing, and taking
/// that lock waits for an RCU grace period. Measured with strace on the daemon while
/// `--comm curl` caught a curl (HZ=250, lazy RCU): the first `perf_event_open` took 13.7-15.4
/// ms and the other 70 about 5 ms together, against 0.2-1.6 ms for the first when expedited.
/// Those 15 ms were most of the start-up window in which a curl's DNS and TLS calls went
/// unseen (a curl in the lab runs for 15-20 ms). An expedited grace period costs the machine
/// an IPI per CPU instead of a wait; the setting is held for the few ms of one attach.
pub struct ExpeditedRcu {
    path: PathBuf,
}

impl ExpeditedRcu {
    /// None when grace periods are expedited already (by someone else: left as it is) or the
    /// file cannot be read or written.
    pub fn begin(path: &std::path::Path) -> Option<ExpeditedRcu> {
        let now = std::fs::read_to_string(path).ok()?;
        if now.trim() != "0" {
            return None;
        }
        std::fs::write(path, "1").ok()?;
        Some(ExpeditedRcu { path: path.to_path_buf() })
    }
}

impl Drop for ExpeditedRcu {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.path, "0") {
            tracing::warn!("putting {} back to 0: {e}", self.path.display());
        }
    }
}

/// One per-process perf event per probe event; stops at the first failure.
fn open_all(events: &[ProbeEvent], pid: u32, how: Open, path: &std::path::Path, errors: &mut Vec<String>) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    for ev in events {
        match perf_open(ev.id, pid as i32, how) {
            Ok(fd) => fds.push(fd),
            Err(e) => {
                errors.push(format!("{} {}: {e}", path.display(), ev.name));
                break;
            }
        }
    }
    fds
}

/// Each traced process holds one perf event (fd) per probe point (and thread, see
/// [`SharedUprobes::attach`]): allow as many fds as the hard limit does.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid rlimit pointers.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Remove the uprobe events of daemons that are gone (a crash leaves them defined, though
/// disabled).
fn remove_stale_groups(tracefs: &std::path::Path) {
    let Ok(dir) = std::fs::read_dir(tracefs.join("events")) else { return };
    for group in dir.flatten() {
        let name = group.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("tracer_").and_then(|p| p.parse::<u32>().ok()) else { continue };
        if procfs::exists(pid) {
            continue;
        }
        let Ok(events) = std::fs::read_dir(group.path()) else { continue };
        for ev in events.flatten() {
            if ev.path().is_dir() {
                use std::io::Write as _;
                let line = format!("-:{}/{}\n", name, ev.file_name().to_string_lossy());
                if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(tracefs.join("uprobe_events")) {
                    let _ = f.write_all(line.as_bytes());
                }
            }
        }
    }
}

/// `_IOW('$', 8, __u32)` and `_IO('$', 0)` from linux/perf_event.h.
pub(super) const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
pub(super) const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
pub(super) const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_SAMPLE_RAW: u64 = 1 << 10;
pub(super) const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
const FLAG_DISABLED: u64 = 1 << 0;
const FLAG_INHERIT: u64 = 1 << 1;
const FLAG_ENABLE_ON_EXEC: u64 = 1 << 12;

/// `struct perf_event_attr` up to `config2` (PERF_ATTR_SIZE_VER1, 72 bytes).
#[repr(C)]
#[derive(Default)]
pub(super) struct PerfEventAttr {
    pub type_: u32,
    pub size: u32,
    pub config: u64,
    pub sample_period: u64,
    pub sample_type: u64,
    pub read_format: u64,
    /// Bit 0: disabled; bit 1: inherit; bit 12: enable_on_exec.
    pub flags: u64,
    pub wakeup_events: u32,
    pub bp_type: u32,
    pub config1: u64,
    pub config2: u64,
}

/// How a perf event for a probe is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// The daemon's own event that carries the program.
    Anchor,
    /// A traced process's event, inherited by the children and threads it creates from now
    /// on; the kernel puts breakpoints into what the process has mapped already.
    Inherit,
    /// As `Inherit`, for a process that has not exec'd yet: the kernel skips looking at its
    /// current mappings (`enable_on_exec`).
    InheritFresh,
    /// A traced process's own event after its exec, not inherited (its children inherit the
    /// ones it got from its parent; see `crate::filter::ClientFilter::on_event`).
    Own,
}

/// A tracepoint perf event for tracefs event `id`, bound to process `pid` (all CPUs). The
/// per-process events are opened disabled (they only have to be in the probe's filter, not
/// count anything) and ask for no raw samples, so that the kernel lets them be inherited in
/// any process's fork.
fn perf_open(id: u64, pid: i32, how: Open) -> std::io::Result<OwnedFd> {
    let flags = match how {
        Open::Anchor => 0,
        Open::Inherit => FLAG_DISABLED | FLAG_INHERIT,
        Open::InheritFresh => FLAG_DISABLED | FLAG_INHERIT | FLAG_ENABLE_ON_EXEC,
        Open::Own => FLAG_DISABLED,
    };
    let attr = PerfEventAttr {
        type_: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: id,
        sample_type: if how == Open::Anchor { PERF_SAMPLE_RAW } else { 0 },
        flags,
        wakeup_events: 1,
        ..Default::default()
    };
    // SAFETY: a valid attr of the size it declares; the returned fd is ours.
    let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, &attr as *const PerfEventAttr, pid, -1i32, -1i32, PERF_FLAG_FD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expedited_rcu_is_set_for_its_life_and_put_back() {
        let dir = std::env::temp_dir().join(format!("tracer-rcu-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rcu_expedited");
        std::fs::write(&path, "0\n").unwrap();
        let guard = ExpeditedRcu::begin(&path).expect("0 is raised");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1");
        drop(guard);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0");
        // Someone else's 1 is left alone, before and after.
        std::fs::write(&path, "1\n").unwrap();
        assert!(ExpeditedRcu::begin(&path).is_none());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
        // No such file (a kernel without it): nothing to do, no error.
        assert!(ExpeditedRcu::begin(&dir.join("missing")).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
