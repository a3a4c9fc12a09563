//! Everything the daemon reads from `/proc`, in one place: processes and their parents,
//! threads, executables and mapped files, capabilities, the kernel's release and the host
//! name. The parsers take the file's text, so that they are tested without a live /proc.
//!
//! A process that exits while it is read is not an error: the readers return None or
//! nothing for it.
//!
//! Not here: the benchmarks' CPU, memory and BPF accounting and nginx's worker processes
//! (`bench/util.rs`, `bench/mod.rs`, `bench/procs.rs`: other facts, read only by the
//! benchmarks).
use std::{collections::HashSet, path::PathBuf};

/// One process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEntry {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// Start time in clock ticks after boot (tells a reused pid apart).
    pub start: u64,
}

/// Parse `/proc/PID/stat`: "pid (comm) state ppid ... starttime(22nd field) ...". The comm
/// may hold spaces and parentheses, so it runs to the last ')'.
pub fn parse_stat(text: &str) -> Option<ProcEntry> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    Some(ProcEntry { pid, ppid, comm, start })
}

/// Process `pid` (None when it is gone).
pub fn process(pid: u32) -> Option<ProcEntry> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The pids /proc lists: thread-group leaders (it lists no threads at its top level).
pub fn pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).collect()
}

/// Every process.
pub fn list_processes() -> Vec<ProcEntry> {
    pids().into_iter().filter_map(process).collect()
}

/// Whether process `pid` exists (this process always does).
pub fn exists(pid: u32) -> bool {
    pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The process (thread group) a task id belongs to.
pub fn tgid_of(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok())
}

/// The task ids of process `pid`'s threads, its main thread included (`/proc/PID/task`).
pub fn threads(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// The path process `pid` runs, as `/proc/PID/exe` names it (in the process's own mount
/// namespace; " (deleted)" appended when the file was removed).
pub fn exe(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The file process `pid` runs, whatever mount namespace it is in: device and inode.
pub fn exe_identity(pid: u32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(format!("/proc/{pid}/exe")).ok().map(|m| (m.dev(), m.ino()))
}

/// `path` as process `pid` sees it, reached through its root (`/proc/PID/root`): a file of
/// another mount namespace.
pub fn in_root_of(pid: u32, path: &std::path::Path) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root{}", path.display()))
}

/// Executable file mappings of a process (empty when it is gone).
pub fn mapped_paths(pid: u32) -> Vec<PathBuf> {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).map(|m| parse_maps_paths(&m)).unwrap_or_default()
}

/// (pid, path) of every file-backed executable mapping of every process, once per path.
pub fn all_mapped_paths() -> Vec<(u32, PathBuf)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for pid in pids() {
        // A process that exited meanwhile maps nothing.
        for path in mapped_paths(pid) {
            if seen.insert(path.clone()) {
                out.push((pid, path));
            }
        }
    }
    out
}

/// Paths of executable file mappings in a /proc/PID/maps text.
pub fn parse_maps_paths(maps: &str) -> Vec<PathBuf> {
    maps.lines()
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let _range = cols.next()?;
            let perms = cols.next()?;
            let path = cols.nth(3)?;
            if !perms.contains('x') || !path.starts_with('/') || line.ends_with("(deleted)") {
                return None;
            }
            Some(PathBuf::from(path))
        })
        .collect()
}

/// `CapEff:` (the effective capabilities, a hex mask) of a `/proc/PID/status` text.
pub fn cap_eff(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// This thread group's effective capabilities (`/proc/self/status`); 0 when unreadable.
pub fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status").ok().and_then(|s| cap_eff(&s)).unwrap_or(0)
}

/// The effective capabilities of every thread of this process (`/proc/self/task/*/status`),
/// by thread id: capabilities belong to threads.
pub fn effective_caps_by_thread() -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return out };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Some(eff) = std::fs::read_to_string(e.path().join("status")).ok().as_deref().and_then(cap_eff) {
            out.push((tid, eff));
        }
    }
    out
}

/// The running kernel's release ("6.18.0-1-amd64"); empty when unreadable.
pub fn kernel_release() -> String {
    read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default()
}

/// The host name (None when unreadable or empty).
pub fn hostname() -> Option<String> {
    read_trimmed("/proc/sys/kernel/hostname")
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm_parses() {
        let s = "4242 (we (ird) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        let e = parse_stat(s).unwrap();
        assert_eq!((e.pid, e.ppid, e.comm.as_str(), e.start), (4242, 17, "we (ird) name", 987654));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
    }

    #[test]
    fn this_process_is_found_with_its_parent_and_threads() {
        let me = std::process::id();
        let e = process(me).unwrap();
        assert_eq!(e.pid, me);
        assert_eq!(tgid_of(me), Some(me));
        assert!(list_processes().iter().any(|p| p.pid == me && p.ppid == e.ppid));
        assert!(exists(me));
        assert!(threads(me).contains(&me));
        let exe = exe(me).unwrap();
        assert_eq!(in_root_of(me, &exe), PathBuf::from(format!("/proc/{me}/root{}", exe.display())));
        assert!(exe_identity(me).is_some());
        // The test binary maps itself executable.
        assert!(mapped_paths(me).iter().any(|p| p.file_name() == exe.file_name()), "{exe:?}");
    }

    #[test]
    fn maps_paths_keep_executable_file_mappings() {
        let maps = "\
7f00-7f10 r-xp 00000000 fe:01 123 /usr/lib/firefox-esr/libssl3.so
7f10-7f20 r--p 00000000 fe:01 123 /usr/lib/firefox-esr/libssl3.so
7f20-7f30 r-xp 00000000 00:00 0 [vdso]
7f30-7f40 r-xp 00000000 fe:01 9 /tmp/old.so (deleted)
";
        assert_eq!(parse_maps_paths(maps), vec![PathBuf::from("/usr/lib/firefox-esr/libssl3.so")]);
    }

    #[test]
    fn parses_cap_eff() {
        let s = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(cap_eff(s), Some(0x1ff_ffff_ffff));
        assert_eq!(cap_eff("Name:\tx\nCapEff:\t000000c000080004\n"), Some(0xc0_0008_0004));
        assert_eq!(cap_eff("Name: x\n"), None);
    }

    #[test]
    fn reads_the_kernel_release() {
        // `uname -r`'s answer: digits first ("6.18.0-...").
        assert!(kernel_release().starts_with(|c: char| c.is_ascii_digit()), "{:?}", kernel_release());
    }
}
