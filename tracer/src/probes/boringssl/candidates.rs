//! The binaries worth analysing: Chromium-family browsers installed or running, the shared
//! libraries that embed Chromium's network stack (QtWebEngine's `libQt5WebEngineCore.so.5`,
//! `libQt6WebEngineCore.so.6`: falkon, qutebrowser, konqueror), whether installed (in the
//! linker's cache) or mapped, and any other ELF file a process maps that carries BoringSSL's
//! `ssl_lib.cc` path (a quick search of its bytes; see [`carries_the_signature`]).
//!
//! Issue 22's QUIC AEAD functions are to be found in the same files: what is listed here is
//! every file that embeds BoringSSL, not only those with TLS over TCP.
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
/// Shared libraries (by file name, as the linker's cache lists them) that embed Chromium's
/// network stack and its BoringSSL.
pub(super) const KNOWN_LIBRARY_NAMES: &[&str] = &["libQt5WebEngineCore.so.5", "libQt6WebEngineCore.so.6"];
/// BoringSSL's code is about 1 MB: a smaller mapped file cannot hold it, and is not read.
const MIN_EMBEDDING_SIZE: u64 = 1 << 20;
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

/// Binaries worth analysing: the well-known install paths that exist, the executables of
/// running processes that look like Chromium, Chrome or Electron, the known libraries that
/// embed Chromium's network stack (from the linker's cache), and every other file-backed
/// executable mapping of a running process that carries the signature (its build-id's entry
/// in `cache_dir` answers that without reading the file, after the first time). A process in another
/// mount namespace is reached through `/proc/PID/root`. Deduplicated by inode; paths in
/// `examined` are neither listed nor read again, and the mapped files found without the
/// signature are added to it.
pub fn candidates(examined: &mut Vec<PathBuf>, cache_dir: &Path) -> Vec<PathBuf> {
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
    for p in known_libraries() {
        add(p, &mut seen);
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
    for (_, path) in crate::procfs::all_mapped_paths() {
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        // Listed already (a known path), or looked at before.
        if examined.contains(&path) || seen.contains(&(meta.dev(), meta.ino())) {
            continue;
        }
        if meta.len() >= MIN_EMBEDDING_SIZE && super::cache::may_embed_boringssl(&path, cache_dir) {
            add(path, &mut seen);
        } else {
            examined.push(path);
        }
    }
    out.retain(|p| !examined.contains(p));
    out
}

/// The [`KNOWN_LIBRARY_NAMES`] the linker's cache lists (installed, whether running or not:
/// a browser started after the daemon is traced from its first page).
fn known_libraries() -> Vec<PathBuf> {
    let Ok(cache) = std::fs::read("/etc/ld.so.cache") else { return Vec::new() };
    let entries = crate::probes::libs::parse_ld_so_cache(&cache).unwrap_or_default();
    entries.into_iter().filter(|(name, _)| KNOWN_LIBRARY_NAMES.contains(&name.as_str())).map(|(_, p)| p).collect()
}

/// Whether the file holds BoringSSL's `ssl_lib.cc` path (its shared suffix, NUL-terminated)
/// anywhere: read in 8 MiB pieces, so that memory stays bounded whatever the file's size. A
/// prefilter only: the finder then looks for the whole path in `.rodata`. A file that does not
/// hold it is never read again (the caller's `examined`).
pub(super) fn carries_the_signature(path: &Path) -> bool {
    use std::io::Read as _;
    const PIECE: usize = 8 << 20;
    let needle: Vec<u8> = [super::scan::SSL_LIB_CC_SUFFIX, b"\0"].concat();
    let Ok(mut file) = std::fs::File::open(path) else { return false };
    let finder = memchr::memmem::Finder::new(&needle);
    // Each piece starts with the last bytes of the one before, so a match across the seam
    // is seen.
    let mut buf = vec![0u8; PIECE + needle.len()];
    let mut kept = 0;
    loop {
        let n = match file.read(&mut buf[kept..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let filled = kept + n;
        if finder.find(&buf[..filled]).is_some() {
            return true;
        }
        kept = (needle.len() - 1).min(filled);
        buf.copy_within(filled - kept..filled, 0);
    }
}
