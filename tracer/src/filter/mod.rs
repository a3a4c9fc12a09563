//! Client filters for `tracer run`: `--pid PID` (with its descendants), `--comm NAME`, and
//! `-- COMMAND ARGS` (start a command and trace just its tree).
//!
//! The kernel side does the filtering (see `tracer-ebpf/src/filter.rs`): with the filter on,
//! every program drops events of processes that are not in the `TRACED` map, and the
//! fork/exec/exit programs keep that map up to date (a traced parent's children are traced;
//! with `--comm`, a process that execs into NAME becomes traced; an exiting process is
//! removed). This module seeds the map at start-up from /proc, follows the traced processes
//! as they fork, exec and exit, and has their uprobes (libc's socket calls, TLS) enabled
//! **per traced process** (`crate::probes::per_process` says how), so that an untraced
//! process never hits a breakpoint: a busy server that is not traced keeps its speed.
//! [`command`] starts the command of `-- COMMAND` with its pid in the map before it runs.
use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
};

use anyhow::{Context as _, bail};
use aya::maps::{HashMap as BpfHashMap, MapData};
use serde::Serialize;
use tracer_common::maps;

use crate::{
    stream::events::{Event, EventBody},
    probes::{
        KernelFilter, Probes, comm_key,
        libs::{LibFamily, TlsLibrary},
        per_process::Open,
    },
    procfs::{self, ProcEntry},
};

pub mod command;

use command::CommandHandle;

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
    /// attached before it runs its first instruction (see [`command::HeldCommand`]). Its
    /// stdin/stdout/stderr are the daemon's.
    pub fn spawn_command(&mut self, probes: &mut Probes, argv: &[OsString]) -> anyhow::Result<CommandHandle> {
        // Dropped on an error before its release: the child then exits without running.
        let held = command::HeldCommand::fork(argv)?;
        self.trace(held.pid)?;
        // Not exec'd yet: everything it maps from its exec on gets the breakpoints.
        self.attach_process(probes, held.pid, Open::InheritFresh);
        held.release()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
