//! Client filters for `tracer run`: `--pid PID` (with its descendants), `--comm NAME`, and
//! `-- COMMAND ARGS` (start a command and trace just its tree).
//!
//! The kernel side does the filtering (see `tracer-ebpf/src/filter.rs`): with the filter on,
//! every program drops events of processes that are not in the `TRACED` map, and the
//! fork/exec/exit programs keep that map up to date (a traced parent's children are traced;
//! with `--comm`, a process that execs into NAME becomes traced; an exiting process is
//! removed). This module seeds the map at start-up from /proc, starts the command of
//! `-- COMMAND` with its pid in the map before it runs, and enables the TLS uprobes **per
//! traced process** as traced processes appear, so that an untraced process never hits a
//! TLS breakpoint: a busy server that is not traced keeps its speed.
//!
//! How the uprobes are made per process ([`SharedUprobes`]): each probe point is defined once
//! as a tracefs uprobe event (group `tracer_<daemon pid>`), and the BPF program is attached to
//! it once, through a perf event bound to the daemon itself (the "anchor", which never fires:
//! the daemon calls no TLS function). A traced process then gets one more perf event per
//! probe point, bound to it, without a program, opened with `inherit`: the kernel copies
//! those events into every child and thread the process creates, inside fork, before the
//! child runs, so a curl that a traced shell starts is covered from its first instruction.
//! The kernel installs a uprobe's breakpoints only into the address spaces of the tasks its
//! perf events are bound to (and keeps them across exec: libraries the new program maps get
//! them as they are mapped), and runs the program for all of them. The daemon opens
//! inherited events itself for the processes that become traced without being forked by a
//! traced one: those seeded at start-up, the `-- COMMAND` (before it runs), and with
//! `--comm` a process that execs NAME. Because the kernel's copies proved unreliable in one
//! case (see [`ClientFilter::on_event`]), a forked child also gets events of its own, not
//! inherited, when it execs. Opening an event costs well under a millisecond when the
//! process is covered already, a walk of the file's mappings otherwise; closing one after
//! its process exited is nearly free, because the probe stays registered through its anchor.
//! (aya's `UProbeScope::OneProcess` makes each process's attach point a probe of its own:
//! measured on this kernel, each one takes ~130 ms to detach, holding a lock every attach
//! needs, and attaching can wait for an RCU grace period: longer than a curl takes to reach
//! its first TLS call.)
use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
    os::fd::{AsFd as _, AsRawFd, FromRawFd, OwnedFd},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
    programs::UProbe,
};
use serde::Serialize;
use tracer_common::maps;

use crate::{
    events::{Event, EventBody},
    procfs::{self, ProcEntry},
    probes::{
        libs::{LibFamily, TlsLibrary},
        AttachAt, KernelFilter, ProbeStatus, Probes, SCOPE_PER_PROCESS, SymbolOffsets, UprobeTarget, comm_key,
    },
};

/// Which clients `tracer run` traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterSpec {
    /// `--pid PID`: that process and its descendants (current and future).
    Pid(u32),
    /// `--comm NAME`: processes whose comm is NAME (now, or after an exec), and their
    /// descendants.
    Comm(String),
    /// `-- COMMAND ARGS`: start the command, trace its tree, stop when it exits.
    Command(Vec<OsString>),
}

impl FilterSpec {
    /// The load-time settings of the kernel programs.
    pub fn kernel(&self) -> KernelFilter {
        KernelFilter {
            enabled: true,
            comm: match self {
                FilterSpec::Comm(c) => Some(c.clone()),
                _ => None,
            },
            ..KernelFilter::default()
        }
    }

    pub fn describe(&self) -> String {
        match self {
            FilterSpec::Pid(p) => format!("pid {p} and its descendants"),
            FilterSpec::Comm(c) => {
                let key = comm_key(c);
                let shown = String::from_utf8_lossy(tracer_common::cstr_bytes(&key)).into_owned();
                if shown.len() < c.len() {
                    format!("comm \"{shown}\" (\"{c}\" cut to the kernel's 15 bytes) and descendants")
                } else {
                    format!("comm \"{c}\" and descendants")
                }
            }
            FilterSpec::Command(argv) => {
                // Only the program: arguments may hold credentials (`curl -H 'Authorization: ...'`),
                // and this text is printed, logged and served by /api/health.
                let program = argv.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
                match argv.len().saturating_sub(1) {
                    0 => format!("the command `{program}` and its descendants"),
                    n => format!("the command `{program}` ({n} argument(s), not shown) and its descendants"),
                }
            }
        }
    }
}

/// `roots` and all their descendants among `procs`.
pub fn tree_of(roots: &BTreeSet<u32>, procs: &[ProcEntry]) -> BTreeSet<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out = BTreeSet::new();
    let mut todo: Vec<u32> = roots.iter().copied().collect();
    while let Some(p) = todo.pop() {
        if out.insert(p) {
            todo.extend(children.get(&p).into_iter().flatten().copied());
        }
    }
    out
}

/// Does `comm` (as /proc shows it) equal NAME as the kernel would keep it (15 bytes)?
pub fn comm_is(comm: &str, name: &str) -> bool {
    tracer_common::cstr_bytes(&comm_key(name)) == tracer_common::cstr_bytes(&comm_key(comm))
}

/// Per-process attach counters (health view, start-up and exit reports).
#[derive(Debug, Default, Clone, Serialize)]
pub struct FilterStats {
    /// What is traced ("pid 42 and its descendants" ...).
    pub filter: String,
    /// Living traced processes the daemon knows of.
    pub processes: usize,
    /// Of those, the ones with per-process events of their own (the others inherited them).
    pub roots: usize,
    /// Per-process events the daemon opened and holds now (one per probe point and root).
    pub attach_points: usize,
    /// Traced processes seen since start.
    pub processes_total: u64,
    /// Roots whose events were closed (after they and their descendants exited).
    pub detached_total: u64,
    /// Per-process attaches that failed (processes still alive).
    pub attach_failures: u64,
    /// The first few failures, spelled out.
    pub errors: Vec<String>,
    /// Per-process events per family (tls_openssl ...) held now.
    pub by_family: BTreeMap<String, usize>,
    /// Uprobe targets (files) the living processes have events for.
    pub targets_seen: usize,
}

/// The running client filter: the TRACED map and the per-process uprobes.
pub struct ClientFilter {
    spec: FilterSpec,
    traced: BpfHashMap<MapData, u32, u8>,
    /// Traced processes known to the daemon.
    procs: BTreeMap<u32, Proc>,
    pub stats: FilterStats,
}

#[derive(Debug, Clone, Copy)]
struct Proc {
    /// Start time (/proc/PID/stat), to tell a reused pid apart.
    start: Option<u64>,
    /// The traced process that forked it (its events were inherited from there).
    parent: Option<u32>,
    /// A root: it holds inherited-by-children events of its own (its children copied theirs
    /// from these), not only copies from its parent.
    own: bool,
    alive: bool,
}

const MAX_ERRORS: usize = 8;

impl ClientFilter {
    /// Take the TRACED map and seed it: `--pid` with the process and its descendants,
    /// `--comm` with the processes of that name and their descendants (none yet is fine);
    /// `-- COMMAND` starts empty ([`ClientFilter::spawn_command`] adds the command). Then
    /// open the per-process uprobe events for every seeded process.
    pub fn start(spec: FilterSpec, probes: &mut Probes) -> anyhow::Result<ClientFilter> {
        anyhow::ensure!(probes.filtered, "the probes were loaded without the client filter");
        let map = probes.ebpf.take_map(maps::TRACED).context("TRACED map missing")?;
        let traced = BpfHashMap::try_from(map).context("TRACED map")?;
        let mut f = ClientFilter {
            stats: FilterStats { filter: spec.describe(), ..Default::default() },
            spec,
            traced,
            procs: BTreeMap::new(),
        };
        let roots: BTreeSet<u32> = match &f.spec {
            FilterSpec::Pid(p) => {
                let Some(tgid) = procfs::tgid_of(*p) else { bail!("--pid {p}: no such process") };
                BTreeSet::from([tgid])
            }
            FilterSpec::Comm(name) => procfs::list_processes().into_iter().filter(|p| comm_is(&p.comm, name)).map(|p| p.pid).collect(),
            FilterSpec::Command(_) => BTreeSet::new(),
        };
        // Roots first: from then on the kernel adds their new children itself. Then the
        // descendants that exist already, twice over to catch children forked meanwhile by
        // descendants not yet in the map.
        let mut seeded = BTreeSet::new();
        for &p in &roots {
            f.trace(p)?;
            seeded.insert(p);
        }
        for _ in 0..2 {
            for p in tree_of(&seeded.clone(), &procfs::list_processes()) {
                if seeded.insert(p) {
                    f.trace(p)?;
                }
            }
        }
        // Each gets events of its own (children forked from now on inherit them).
        f.stats.targets_seen = probes.shared.as_ref().map_or(0, |s| s.target_count());
        for p in seeded {
            f.attach_process(probes, p, Open::Inherit);
        }
        Ok(f)
    }

    pub fn spec(&self) -> &FilterSpec {
        &self.spec
    }

    /// Add a process to the kernel's TRACED map.
    pub fn trace(&mut self, tgid: u32) -> anyhow::Result<()> {
        self.traced.insert(tgid, 1, 0).with_context(|| format!("adding pid {tgid} to the TRACED map"))
    }

    /// Is the process in the kernel's TRACED map?
    pub fn is_traced(&self, tgid: u32) -> bool {
        self.traced.get(&tgid, 0).is_ok()
    }

    /// Living traced processes the daemon knows of.
    pub fn traced_processes(&self) -> Vec<u32> {
        self.procs.iter().filter(|(_, p)| p.alive).map(|(k, _)| *k).collect()
    }

    /// Processes with per-process events of their own (the others inherited theirs).
    pub fn roots(&self) -> Vec<u32> {
        self.procs.iter().filter(|(_, p)| p.own).map(|(k, _)| *k).collect()
    }

    /// The start-up line: what is traced, how many processes now, and how the uprobes (libc
    /// socket calls, TLS) are attached.
    pub fn describe(&self) -> String {
        let families: Vec<String> = self.stats.by_family.iter().map(|(f, n)| format!("{f} {n}")).collect();
        format!(
            "{}: {} process(es) traced now; uprobes per traced process ({} events on {} process(es), inherited by their children{})",
            self.stats.filter,
            self.stats.processes,
            self.stats.attach_points,
            self.stats.roots,
            if families.is_empty() { String::new() } else { format!("; {}", families.join(", ")) }
        )
    }

    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::to_value(&self.stats).unwrap_or_default()
    }

    fn note_error(&mut self, e: String) {
        self.stats.attach_failures += 1;
        if self.stats.errors.len() < MAX_ERRORS {
            tracing::warn!("per-process uprobe: {e}");
            self.stats.errors.push(e);
        }
    }

    fn refresh_stats(&mut self, probes: &Probes) {
        self.stats.processes = self.procs.values().filter(|p| p.alive).count();
        self.stats.roots = self.procs.values().filter(|p| p.own).count();
        let (points, by_family) = probes.shared.as_ref().map(|s| s.counts()).unwrap_or_default();
        self.stats.attach_points = points;
        self.stats.by_family = by_family;
    }

    /// Open per-process events of its own for process `tgid`, for every target: `how` says
    /// whether its children inherit them (see [`Open`]).
    pub fn attach_process(&mut self, probes: &mut Probes, tgid: u32, how: Open) {
        if self.procs.get(&tgid).is_some_and(|p| p.own && p.alive) {
            return;
        }
        let Some(entry) = procfs::process(tgid) else { return };
        let known = self.procs.get(&tgid).copied();
        let parent = known.and_then(|p| p.parent);
        self.procs.insert(tgid, Proc { start: Some(entry.start), parent, own: true, alive: true });
        if known.is_none() {
            self.stats.processes_total += 1;
        }
        if let Some(shared) = probes.shared.as_mut() {
            let errors = shared.attach(tgid, 0, how);
            if !errors.is_empty() {
                if procfs::process(tgid).is_none() {
                    // It exited while we attached: not a failure.
                    self.forget(probes, tgid);
                } else {
                    for e in errors {
                        self.note_error(format!("pid {tgid}: {e}"));
                    }
                }
            }
        }
        self.refresh_stats(probes);
    }

    /// A traced process forked a child: the kernel copied the parent's events into it.
    fn adopt(&mut self, probes: &Probes, child: u32, parent: u32) {
        let start = procfs::process(child).map(|e| e.start);
        self.procs.entry(child).or_insert(Proc { start, parent: Some(parent), own: false, alive: true });
        self.stats.processes_total += 1;
        self.refresh_stats(probes);
    }

    /// A process exited: free what no living process needs. The events of a root are the
    /// ones its children inherited theirs from, and closing them would take the children's
    /// along: they stay open while a descendant lives.
    fn exited(&mut self, probes: &mut Probes, tgid: u32) {
        if let Some(p) = self.procs.get_mut(&tgid) {
            p.alive = false;
        }
        self.collect(probes);
    }

    /// Drop dead processes without living descendants (closing a dead root's events).
    fn collect(&mut self, probes: &mut Probes) {
        // Dead leaves go first; a dead parent becomes a leaf once its children are gone.
        loop {
            let has_child = |pid: u32, procs: &BTreeMap<u32, Proc>| procs.values().any(|c| c.parent == Some(pid));
            let gone: Vec<u32> = self.procs.iter().filter(|(pid, p)| !p.alive && !has_child(**pid, &self.procs)).map(|(pid, _)| *pid).collect();
            if gone.is_empty() {
                break;
            }
            for pid in gone {
                self.forget(probes, pid);
            }
        }
        self.refresh_stats(probes);
    }

    fn forget(&mut self, probes: &mut Probes, tgid: u32) {
        if let Some(p) = self.procs.remove(&tgid) {
            if let Some(shared) = probes.shared.as_mut() {
                shared.detach(tgid);
            }
            if p.own {
                self.stats.detached_total += 1;
            }
        }
    }

    /// Learn of traced processes from the event stream (the kernel only reports traced
    /// processes when the filter is on).
    ///
    /// A child forked by a traced process has the uprobe events the kernel copied into it.
    /// Measured here, those copies do not always put breakpoints into what the child maps
    /// after an exec (when the child or a sibling mounts or unmounts in a new mount
    /// namespace, as `ip netns exec` does, some children got none), so every traced process
    /// also gets events of its own when it execs ([`Open::Own`]: cheap when the copies
    /// already cover it, a walk when they do not, a few ms after its exec).
    pub fn on_event(&mut self, probes: &mut Probes, ev: &Event) {
        match &ev.body {
            EventBody::Fork { child_pid } => {
                // Threads are tasks too: only a new thread group is a new process.
                if *child_pid != ev.tgid && procfs::tgid_of(*child_pid).is_none_or(|t| t == *child_pid) {
                    if !self.procs.contains_key(&ev.tgid) {
                        self.attach_process(probes, ev.tgid, Open::Inherit);
                    }
                    self.adopt(probes, *child_pid, ev.tgid);
                }
            }
            EventBody::Exec { .. } => match self.procs.get(&ev.tgid).copied() {
                // With --comm: it became traced by this exec; its children inherit.
                None => self.attach_process(probes, ev.tgid, Open::Inherit),
                Some(p) if !p.own => self.attach_own(probes, ev.tgid),
                Some(_) => {}
            },
            EventBody::Exit => self.exited(probes, ev.tgid),
            // Softirq-context events carry a random task.
            EventBody::TcpState { .. } | EventBody::SockError { .. } => {}
            _ => {
                // A traced process we did not know (its fork record lost to a full ring
                // buffer): events of its own.
                if !self.procs.contains_key(&ev.tgid) && self.is_traced(ev.tgid) {
                    self.attach_process(probes, ev.tgid, Open::Inherit);
                }
            }
        }
    }

    /// A forked child exec'd: events of its own, not inherited (see [`Self::on_event`]).
    fn attach_own(&mut self, probes: &mut Probes, tgid: u32) {
        let Some(shared) = probes.shared.as_mut() else { return };
        let errors = shared.attach(tgid, 0, Open::Own);
        if let Some(p) = self.procs.get_mut(&tgid) {
            // Not a root: its children inherited from its parent, not from these events.
            p.own = false;
        }
        if !errors.is_empty() && procfs::process(tgid).is_some() {
            for e in errors {
                self.note_error(format!("pid {tgid}: {e}"));
            }
        }
        self.refresh_stats(probes);
    }

    /// Periodic upkeep (every second): notice processes gone without an exit record;
    /// register TLS libraries that traced processes mapped and that were not known; give
    /// targets added since to every living traced process (inheritance happened before).
    pub fn tick(&mut self, probes: &mut Probes) {
        let mut new_libs: Vec<TlsLibrary> = Vec::new();
        let pids: Vec<(u32, Option<u64>)> = self.procs.iter().filter(|(_, p)| p.alive).map(|(k, p)| (*k, p.start)).collect();
        for (pid, start) in pids {
            match procfs::process(pid) {
                Some(e) if Some(e.start) == start => {}
                _ => {
                    if let Some(p) = self.procs.get_mut(&pid) {
                        p.alive = false;
                    }
                    continue;
                }
            }
            for path in procfs::mapped_paths(pid) {
                let Some(family) = path.file_name().and_then(|n| n.to_str()).and_then(LibFamily::of_file_name) else { continue };
                let canon = std::fs::canonicalize(&path).unwrap_or(path);
                if probes.libraries.iter().any(|l| l.path == canon) || new_libs.iter().any(|l| l.path == canon) {
                    continue;
                }
                new_libs.push(TlsLibrary { family, path: canon, source: format!("maps of traced pid {pid}") });
            }
        }
        self.collect(probes);
        if !new_libs.is_empty() && probes.shared.is_some() {
            for st in probes.add_libraries(new_libs) {
                eprintln!(
                    "  new library (per process): {} {} {}",
                    st.point,
                    st.target.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                    if st.attached { "ready".to_string() } else { format!("FAILED: {}", st.error.unwrap_or_default()) }
                );
            }
        }
        // Targets the rescan (here or the daemon's) added: to every living traced process.
        let Some(shared) = probes.shared.as_mut() else { return };
        let now = shared.target_count();
        let from = self.stats.targets_seen;
        if now > from {
            let alive: Vec<u32> = self.traced_processes();
            let mut errors = Vec::new();
            for pid in alive {
                errors.extend(shared.attach(pid, from, Open::Inherit).into_iter().map(|e| format!("pid {pid}: {e}")));
                // Its children inherit these from it now: it is a root for them.
                if let Some(p) = self.procs.get_mut(&pid) {
                    p.own = true;
                }
            }
            for e in errors {
                self.note_error(e);
            }
        }
        self.stats.targets_seen = now;
        self.refresh_stats(probes);
    }

    /// `-- COMMAND ARGS`: start the command with its pid in the TRACED map and its uprobes
    /// attached before it runs its first instruction. The child is forked, reports its pid
    /// through a pipe and waits on a second pipe until the daemon has added it; only then it
    /// execs. Its stdin/stdout/stderr are the daemon's.
    pub fn spawn_command(&mut self, probes: &mut Probes, argv: &[OsString]) -> anyhow::Result<CommandHandle> {
        use std::os::unix::process::CommandExt as _;
        let Some((program, args)) = argv.split_first() else { bail!("no command given after --") };
        let (pid_r, pid_w) = pipe()?;
        let (go_r, go_w) = pipe()?;
        let mut cmd = std::process::Command::new(program);
        cmd.args(args);
        let (pw, gr) = (pid_w.as_raw_fd(), go_r.as_raw_fd());
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (getpid, write, read) without allocating.
        unsafe {
            cmd.pre_exec(move || {
                let pid = libc::getpid() as u32;
                let bytes = pid.to_ne_bytes();
                if libc::write(pw, bytes.as_ptr().cast(), 4) != 4 {
                    return Err(std::io::Error::from_raw_os_error(libc::ECANCELED));
                }
                let mut b = [0u8; 1];
                loop {
                    let n = libc::read(gr, b.as_mut_ptr().cast(), 1);
                    if n == 1 {
                        return Ok(());
                    }
                    if n < 0 && *libc::__errno_location() == libc::EINTR {
                        continue;
                    }
                    // The daemon gave up: do not run untraced.
                    return Err(std::io::Error::from_raw_os_error(libc::ECANCELED));
                }
            })
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let name = program.to_string_lossy().into_owned();
        // Command::spawn returns only once the child has exec'd, which it does only after
        // the go byte: spawn (and then wait) on a thread of its own.
        std::thread::Builder::new()
            .name("tracer-command".into())
            .spawn(move || {
                let spawned = cmd.spawn();
                // The child has its copies (or exec'd/failed): close ours, so that a read
                // of the pid pipe ends if the child never wrote.
                drop((pid_w, go_r));
                let end = match spawned {
                    Ok(mut child) => child.wait().map(CommandEnd::Exited).unwrap_or_else(|e| CommandEnd::Failed(format!("waiting: {e}"))),
                    Err(e) => CommandEnd::Failed(format!("cannot run `{name}`: {e}")),
                };
                let _ = tx.send(end);
            })
            .context("starting the command thread")?;
        let pid = match read_pid(&pid_r, Duration::from_secs(10)) {
            Ok(p) => p,
            Err(e) => {
                drop(go_w);
                return Err(e);
            }
        };
        self.trace(pid)?;
        // Not exec'd yet: everything it maps from its exec on gets the breakpoints.
        self.attach_process(probes, pid, Open::InheritFresh);
        // Release it.
        let one = [1u8];
        // SAFETY: valid fd and buffer.
        if unsafe { libc::write(go_w.as_raw_fd(), one.as_ptr().cast(), 1) } != 1 {
            bail!("releasing the command: {}", std::io::Error::last_os_error());
        }
        drop(go_w);
        Ok(CommandHandle { pid, exit: Some(rx) })
    }
}

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
        let tracefs = PathBuf::from(crate::probes::system::TRACEFS);
        crate::probes::system::ensure_tracefs()?;
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
        let symbols = target.points.iter().any(|p| matches!(p.at, AttachAt::Symbol(_))).then(|| SymbolOffsets::read(&target.path));
        let mut out = Vec::new();
        let mut kept = Vec::new();
        let mut events = Vec::new();
        for mut p in std::mem::take(&mut target.points) {
            let at = match (p.at, &symbols) {
                (AttachAt::Symbol(sym), Some(Ok(table))) => table.offset(sym),
                (AttachAt::Symbol(_), Some(Err(e))) => Err(anyhow::anyhow!("{e:#}")),
                (AttachAt::Offset(o), _) => Ok(o),
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
                    if let Ok(off) = at {
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
        let threads = if how == Open::Inherit { procfs::threads(pid).into_iter().filter(|&t| t != pid).collect() } else { Vec::new() };
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
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_SAMPLE_RAW: u64 = 1 << 10;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
const FLAG_DISABLED: u64 = 1 << 0;
const FLAG_INHERIT: u64 = 1 << 1;
const FLAG_ENABLE_ON_EXEC: u64 = 1 << 12;

/// `struct perf_event_attr` up to `config2` (PERF_ATTR_SIZE_VER1, 72 bytes).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// Bit 0: disabled; bit 1: inherit; bit 12: enable_on_exec.
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
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
    /// ones it got from its parent; see [`ClientFilter::on_event`]).
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

/// How the command of `-- COMMAND` ended.
#[derive(Debug)]
pub enum CommandEnd {
    Exited(std::process::ExitStatus),
    /// It could not be started (or waited for).
    Failed(String),
}

impl CommandEnd {
    /// The daemon's exit code: the command's own, 128+signal when killed, 127 when it could
    /// not start.
    pub fn code(&self) -> u8 {
        use std::os::unix::process::ExitStatusExt as _;
        match self {
            CommandEnd::Exited(s) => match (s.code(), s.signal()) {
                (Some(c), _) => c as u8,
                (None, Some(sig)) => 128u8.saturating_add(sig as u8),
                _ => 1,
            },
            CommandEnd::Failed(_) => 127,
        }
    }
}

impl std::fmt::Display for CommandEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::os::unix::process::ExitStatusExt as _;
        match self {
            CommandEnd::Exited(s) => match (s.code(), s.signal()) {
                (Some(c), _) => write!(f, "command exited with status {c}"),
                (None, Some(sig)) => write!(f, "command killed by signal {sig}"),
                _ => write!(f, "command ended ({s})"),
            },
            CommandEnd::Failed(e) => write!(f, "command failed: {e}"),
        }
    }
}

/// The command started by `-- COMMAND`.
pub struct CommandHandle {
    pub pid: u32,
    exit: Option<tokio::sync::oneshot::Receiver<CommandEnd>>,
}

/// Wait for the command to end; pends forever when there is none (or it already ended).
pub async fn wait_command(handle: &mut Option<CommandHandle>) -> CommandEnd {
    let Some(rx) = handle.as_mut().and_then(|h| h.exit.as_mut()) else {
        return std::future::pending().await;
    };
    let end = rx.await.unwrap_or_else(|_| CommandEnd::Failed("its thread ended without a status".into()));
    if let Some(h) = handle.as_mut() {
        h.exit = None;
    }
    end
}

/// Sleep until `at`; pends forever when None.
pub async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Read the child's pid (4 bytes) with a bound on the wait.
fn read_pid(fd: &OwnedFd, timeout: Duration) -> anyhow::Result<u32> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    let deadline = std::time::Instant::now() + timeout;
    while got < 4 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            bail!("the command did not start within {timeout:?}");
        }
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            bail!("waiting for the command: {e}");
        }
        if r == 0 {
            continue;
        }
        // SAFETY: the buffer has 4 - got bytes left.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf[got..].as_mut_ptr().cast(), 4 - got) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            bail!("waiting for the command: {e}");
        }
        if n == 0 {
            bail!("the command could not be started (fork failed)");
        }
        got += n as usize;
    }
    Ok(u32::from_ne_bytes(buf))
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

    #[test]
    fn tree_follows_children_only() {
        let p = |pid, ppid| ProcEntry { pid, ppid, comm: String::new(), start: 0 };
        let procs = vec![p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(20, 1), p(21, 20)];
        assert_eq!(tree_of(&BTreeSet::from([10]), &procs), BTreeSet::from([10, 11, 12]));
        assert_eq!(tree_of(&BTreeSet::from([20, 12]), &procs), BTreeSet::from([12, 20, 21]));
        assert_eq!(tree_of(&BTreeSet::from([99]), &procs), BTreeSet::from([99]));
    }

    #[test]
    fn comm_compares_like_the_kernel() {
        assert!(comm_is("firefox-esr", "firefox-esr"));
        assert!(!comm_is("firefox", "firefox-esr"));
        // The kernel keeps 15 bytes.
        assert!(comm_is("a-very-long-pro", "a-very-long-program-name"));
        assert_eq!(&comm_key("wget")[..5], b"wget\0");
        assert_eq!(comm_key("0123456789abcdefgh")[15], 0);
    }

    #[test]
    fn describe_says_what_is_traced() {
        assert_eq!(FilterSpec::Pid(7).describe(), "pid 7 and its descendants");
        assert!(FilterSpec::Comm("a-very-long-program-name".into()).describe().contains("cut to"));
        let c = FilterSpec::Command(vec!["curl".into(), "-H".into(), "Authorization: Bearer S3CR3T".into()]);
        assert_eq!(c.describe(), "the command `curl` (2 argument(s), not shown) and its descendants");
        assert_eq!(FilterSpec::Command(vec!["true".into()]).describe(), "the command `true` and its descendants");
        assert_eq!(c.kernel().comm, None);
        assert_eq!(FilterSpec::Comm("wget".into()).kernel().comm.as_deref(), Some("wget"));
    }
}
