//! The binaries worth analysing: Chromium-family browsers installed or running.
use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Well-known install paths of Chromium-family browsers.
pub(super) const KNOWN_PATHS: &[&str] = &[
    "/usr/lib/chromium/chromium",
    "/usr/lib/chromium-browser/chromium-browser",
    "/opt/google/chrome/chrome",
    "/opt/google/chrome-beta/chrome",
    "/opt/google/chrome-unstable/chrome",
];
/// Executable names that are Chromium-family browsers.
pub(super) const KNOWN_NAMES: &[&str] =
    &["chromium", "chromium-browser", "chrome", "google-chrome", "electron", "msedge", "brave"];

/// Whether an executable looks like a Chromium-family browser: a known name, or Chromium's
/// data files next to it (Electron apps have arbitrary names but ship these).
pub(super) fn looks_like_chromium(exe: &Path) -> bool {
    let Some(name) = exe.file_name().and_then(|n| n.to_str()) else { return false };
    if KNOWN_NAMES.contains(&name) || name.ends_with("electron") {
        return true;
    }
    let Some(dir) = exe.parent() else { return false };
    dir.join("icudtl.dat").is_file()
        && (dir.join("v8_context_snapshot.bin").is_file() || dir.join("snapshot_blob.bin").is_file())
}

/// Chromium-like binaries worth analysing: the well-known install paths that exist, and the
/// executables of running processes that look like Chromium, Chrome or Electron. A process in
/// another mount namespace is reached through `/proc/PID/root`. Deduplicated by inode.
pub fn candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let mut add = |p: PathBuf, seen: &mut Vec<(u64, u64)>| {
        if let Ok(m) = std::fs::metadata(&p)
            && m.is_file()
            && !seen.contains(&(m.dev(), m.ino()))
        {
            seen.push((m.dev(), m.ino()));
            out.push(p);
        }
    };
    for p in KNOWN_PATHS {
        add(PathBuf::from(p), &mut seen);
    }
    for pid in crate::procfs::pids() {
        let Some(exe) = crate::procfs::exe(pid) else { continue };
        if exe.to_string_lossy().ends_with(" (deleted)") || !looks_like_chromium(&exe) {
            continue;
        }
        // The same file in our namespace, or through the process's root.
        let Some(real) = crate::procfs::exe_identity(pid) else { continue };
        let same = |p: &Path| std::fs::metadata(p).is_ok_and(|m| (m.dev(), m.ino()) == real);
        if same(&exe) {
            add(exe, &mut seen);
        } else {
            let via_root = crate::procfs::in_root_of(pid, &exe);
            if same(&via_root) {
                add(via_root, &mut seen);
            }
        }
    }
    out
}
