//! Least privilege for `tracer run`.
//!
//! Linux capabilities belong to threads, not processes. The daemon uses that:
//!
//! * **Runtime threads** (tokio workers and blocking threads: the dashboard, the history
//!   writer, the ring-buffer reader, the reference fetcher, SQLite's connection threads they
//!   start) drop every capability, from every set including the bounding set, as they start
//!   ([`drop_all_on_this_thread`], installed with the runtime's `on_thread_start`). Everything
//!   reachable from the network runs there.
//! * **The main thread** loads and attaches the probes, opens the database and binds the
//!   dashboard. Once that is done (and the `-- COMMAND` child has been forked, with the
//!   caller's rights) it keeps only [`KEEP_AFTER_START`] ([`keep_only_on_this_thread`]): what
//!   attaching uprobes to libraries that appear later (the 10 s rescan) and to processes that
//!   become traced later (`--pid`, `--comm`) needs, and what reading the kernel's counters
//!   needs. It drops the rest from its bounding set too, so that nothing it could exec gets
//!   them back.
//!
//! Files: the daemon stays uid 0, so it can still open the database it created (0600 in a 0700
//! directory it owns) without CAP_DAC_OVERRIDE; a database in a directory root does not own
//! must be reachable by root without capabilities.
use caps::{CapSet, Capability, CapsHashSet};

/// What the main thread keeps after start-up, and why:
/// * `CAP_BPF`: map reads and updates (lost-event counters, the filter's traced-process map)
///   and attaching programs to new perf events;
/// * `CAP_PERFMON`: opening perf events for uprobes defined in tracefs (the client filter's
///   per-process uprobes, for processes that become traced later);
/// * `CAP_SYS_PTRACE`: those perf events on other users' processes, and reading their
///   `/proc/PID/maps` to find the TLS libraries they loaded;
/// * `CAP_DAC_READ_SEARCH`: reading those libraries (and their ELF symbols) where root
///   without capabilities could not.
pub const KEEP_AFTER_START: &[Capability] =
    &[Capability::CAP_BPF, Capability::CAP_PERFMON, Capability::CAP_SYS_PTRACE, Capability::CAP_DAC_READ_SEARCH];

/// Without a client filter, a TLS library that appears after start-up (the 10 s rescan) is
/// attached for every process through perf's uprobe PMU, and on this kernel that needs
/// `CAP_SYS_ADMIN` as well (measured: `perf_event_open` answers EACCES with CAP_PERFMON and
/// the others above). With a filter (`--pid`, `--comm`, `-- COMMAND`) or `--no-tls` it is not
/// kept, but where `kernel.perf_event_paranoid` is above 2: Debian's and Ubuntu's kernels
/// (3 and 4 by default) refuse every `perf_event_open` without `CAP_SYS_ADMIN`, so a filter's
/// per-process uprobes for processes traced later need it (seen on Debian's 6.1: EACCES for
/// each of them, and a `--comm wget` run that saw none of wget's TLS).
pub fn keep_after_start(all_process_uprobes: bool) -> Vec<Capability> {
    keep_after_start_with(all_process_uprobes, perf_event_paranoid())
}

/// [`keep_after_start`] for a given `kernel.perf_event_paranoid` (None: unreadable).
pub fn keep_after_start_with(all_process_uprobes: bool, paranoid: Option<i32>) -> Vec<Capability> {
    let mut keep = KEEP_AFTER_START.to_vec();
    if all_process_uprobes || paranoid.is_some_and(|p| p > 2) {
        keep.push(Capability::CAP_SYS_ADMIN);
    }
    keep
}

/// `kernel.perf_event_paranoid` (2 upstream by default; Debian 3, Ubuntu 4).
pub fn perf_event_paranoid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid").ok()?.trim().parse().ok()
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("dropping capabilities ({what}): {source}")]
    Caps {
        what: &'static str,
        #[source]
        source: caps::errors::CapsError,
    },
    #[error("the {set} set still holds {caps} after the drop")]
    StillHeld { set: &'static str, caps: String },
}

fn err(what: &'static str) -> impl FnOnce(caps::errors::CapsError) -> PrivilegeError {
    move |source| PrivilegeError::Caps { what, source }
}

/// Keeps only `keep` in this thread's effective and permitted sets (of what it has), clears
/// its inheritable and ambient sets, and removes everything else from its bounding set (when
/// it may: that needs CAP_SETPCAP, which a daemon started with only CAP_BPF+CAP_PERFMON does
/// not have; then the bounding set is left as it is). Returns what the thread holds now.
pub fn keep_only_on_this_thread(keep: &[Capability]) -> Result<CapsHashSet, PrivilegeError> {
    let permitted = caps::read(None, CapSet::Permitted).map_err(err("reading the permitted set"))?;
    let keep: CapsHashSet = keep.iter().copied().filter(|c| permitted.contains(c)).collect();
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        let bounding = caps::read(None, CapSet::Bounding).map_err(err("reading the bounding set"))?;
        for cap in bounding.difference(&keep) {
            caps::drop(None, CapSet::Bounding, *cap).map_err(err("the bounding set"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(err("the ambient set"))?;
    caps::clear(None, CapSet::Inheritable).map_err(err("the inheritable set"))?;
    caps::set(None, CapSet::Effective, &keep).map_err(err("the effective set"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(err("the permitted set"))?;
    Ok(keep)
}

/// Drops every capability of this thread (see the module documentation), and checks that
/// none is left.
pub fn drop_all_on_this_thread() -> Result<(), PrivilegeError> {
    let kept = keep_only_on_this_thread(&[])?;
    verify_this_thread(&kept)
}

/// Reads this thread's sets back and fails unless effective and permitted are exactly `kept`,
/// inheritable and ambient are empty, and (when it could be changed) the bounding set holds
/// nothing more: a drop that did not take is an error, not a warning.
pub fn verify_this_thread(kept: &CapsHashSet) -> Result<(), PrivilegeError> {
    for (set, name, exact) in [
        (CapSet::Effective, "effective", true),
        (CapSet::Permitted, "permitted", true),
        (CapSet::Inheritable, "inheritable", false),
        (CapSet::Ambient, "ambient", false),
    ] {
        let now = caps::read(None, set).map_err(err("reading the sets back"))?;
        let expected: CapsHashSet = if exact { kept.clone() } else { CapsHashSet::new() };
        if now != expected {
            let extra: CapsHashSet = now.difference(&expected).copied().collect();
            return Err(PrivilegeError::StillHeld { set: name, caps: names(&extra) });
        }
    }
    Ok(())
}

/// Why the main thread keeps `cap` (the start-up report lists each one with it).
pub fn reason(cap: Capability) -> &'static str {
    match cap {
        Capability::CAP_BPF => "map reads and updates (lost-event counters, the traced-process map), attaching programs to new perf events",
        Capability::CAP_PERFMON => "opening perf events for uprobes on libraries and processes found later",
        Capability::CAP_SYS_PTRACE => "those perf events on other users' processes, and reading their /proc/PID/maps",
        Capability::CAP_DAC_READ_SEARCH => "reading TLS libraries (and their symbols) that root without capabilities could not",
        Capability::CAP_SYS_ADMIN => {
            "perf's uprobe PMU for all-process uprobes on libraries found later (no filter), or any perf_event_open where kernel.perf_event_paranoid > 2"
        }
        _ => "not expected to be kept",
    }
}

/// `CAP_BPF,CAP_PERFMON` (sorted), for the start-up report.
pub fn names(set: &CapsHashSet) -> String {
    let mut v: Vec<String> = set.iter().map(|c| c.to_string()).collect();
    v.sort();
    if v.is_empty() { "none".into() } else { v.join(",") }
}

/// The bit mask of a set of capabilities, as `/proc/PID/status` shows it.
pub fn mask(set: &[Capability]) -> u64 {
    set.iter().fold(0, |m, c| m | c.bitmask())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_admin_is_kept_for_all_process_uprobes_and_where_perf_needs_it() {
        let has = |keep: Vec<Capability>| keep.contains(&Capability::CAP_SYS_ADMIN);
        assert!(!has(keep_after_start_with(false, Some(2))) && !has(keep_after_start_with(false, None)));
        assert!(has(keep_after_start_with(true, Some(2))));
        assert!(has(keep_after_start_with(false, Some(3))) && has(keep_after_start_with(false, Some(4))));
    }

    #[test]
    fn masks_are_as_proc_shows_them() {
        assert_eq!(mask(&[Capability::CAP_BPF, Capability::CAP_PERFMON]), (1 << 39) | (1 << 38));
    }

    /// On a thread of its own (capabilities are per thread): keep two, then drop all. Checked
    /// through /proc, as an outside observer sees it. Needs a thread that has them (root).
    #[test]
    fn a_thread_drops_what_it_does_not_keep() {
        let permitted = caps::read(None, CapSet::Permitted).unwrap();
        if !permitted.contains(&Capability::CAP_SETPCAP) || !permitted.contains(&Capability::CAP_BPF) {
            eprintln!("SKIPPED a_thread_drops_what_it_does_not_keep: needs root");
            return;
        }
        std::thread::spawn(|| {
            let tid = unsafe { libc::gettid() } as u32;
            let eff = || crate::procfs::effective_caps_by_thread().into_iter().find(|(t, _)| *t == tid).map(|(_, e)| e).unwrap();
            let kept = keep_only_on_this_thread(&[Capability::CAP_BPF, Capability::CAP_PERFMON]).unwrap();
            assert_eq!(names(&kept), "CAP_BPF,CAP_PERFMON");
            assert_eq!(eff(), mask(&[Capability::CAP_BPF, Capability::CAP_PERFMON]));
            let bounding = caps::read(None, CapSet::Bounding).unwrap();
            assert!(!bounding.contains(&Capability::CAP_SYS_ADMIN), "bounding set: {bounding:?}");
            // Gone for good: raising a dropped one fails.
            assert!(caps::raise(None, CapSet::Effective, Capability::CAP_SYS_ADMIN).is_err());
            verify_this_thread(&kept).unwrap();
            // Verifying against less than is held fails, naming what is still there.
            let e = verify_this_thread(&[Capability::CAP_BPF].into_iter().collect()).unwrap_err();
            assert!(matches!(&e, PrivilegeError::StillHeld { set: "effective", caps } if caps == "CAP_PERFMON"), "{e}");
            drop_all_on_this_thread().unwrap();
            verify_this_thread(&CapsHashSet::new()).unwrap();
            assert_eq!(eff(), 0);
        })
        .join()
        .unwrap();
        // The test's own thread is untouched.
        assert!(caps::has_cap(None, CapSet::Effective, Capability::CAP_SYS_ADMIN).unwrap());
    }
}
