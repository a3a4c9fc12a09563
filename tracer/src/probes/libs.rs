//! Finding the TLS libraries to probe: the dynamic linker's cache (`/etc/ld.so.cache`, what
//! a newly started program will load) and the memory maps of running processes (bundled
//! copies such as Firefox's own NSS under /usr/lib/firefox-esr/).
use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LibFamily {
    /// OpenSSL libssl (1.1 and 3).
    OpenSsl,
    /// GnuTLS.
    GnuTls,
    /// NSPR: PR_Read/PR_Write carry NSS plaintext (Firefox).
    Nspr,
    /// NSS libssl3: handshake entry points.
    Nss,
    /// The tracer binary's own fetcher (rustls), through its `tracer_tls_*` probe points.
    Fetcher,
}

impl LibFamily {
    /// The shared-library families looked for in the linker cache and process maps.
    pub const ALL: [LibFamily; 4] = [LibFamily::OpenSsl, LibFamily::GnuTls, LibFamily::Nspr, LibFamily::Nss];

    pub fn name(self) -> &'static str {
        match self {
            LibFamily::OpenSsl => "openssl",
            LibFamily::GnuTls => "gnutls",
            LibFamily::Nspr => "nspr",
            LibFamily::Nss => "nss",
            LibFamily::Fetcher => "fetcher",
        }
    }

    /// Which family a library file name belongs to.
    pub fn of_file_name(name: &str) -> Option<LibFamily> {
        if name.starts_with("libssl.so.") {
            Some(LibFamily::OpenSsl)
        } else if name.starts_with("libgnutls.so.") {
            Some(LibFamily::GnuTls)
        } else if name == "libnspr4.so" {
            Some(LibFamily::Nspr)
        } else if name == "libssl3.so" {
            Some(LibFamily::Nss)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct TlsLibrary {
    pub family: LibFamily,
    pub path: PathBuf,
    /// Where it was found: "ld.so.cache" or "maps of pid N".
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LdCacheError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("ld.so.cache: {0}")]
    Format(&'static str),
}

const MAGIC_NEW: &[u8] = b"glibc-ld.so.cache1.1";
const MAGIC_OLD: &[u8] = b"ld.so-1.7.0\0";
const NEW_HEADER: usize = 48;
const NEW_ENTRY: usize = 24;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn cstr_at(b: &[u8], at: usize) -> Option<&str> {
    let rest = b.get(at..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// Parse the glibc ld.so.cache (new format, possibly behind the old one) into
/// (soname, path) pairs.
pub fn parse_ld_so_cache(b: &[u8]) -> Result<Vec<(String, PathBuf)>, LdCacheError> {
    let start = if b.starts_with(MAGIC_NEW) {
        0
    } else if b.starts_with(MAGIC_OLD) {
        let n = u32_at(b, 12).ok_or(LdCacheError::Format("old header cut short"))? as usize;
        // Old entries are 12 bytes; the new table follows, aligned to 8.
        let end = 16usize
            .checked_add(n.checked_mul(12).ok_or(LdCacheError::Format("entry count overflows"))?)
            .ok_or(LdCacheError::Format("entry count overflows"))?;
        let aligned = (end + 7) & !7;
        if !b.get(aligned..).is_some_and(|r| r.starts_with(MAGIC_NEW)) {
            return Err(LdCacheError::Format("old-format cache without a new-format table"));
        }
        aligned
    } else {
        return Err(LdCacheError::Format("unknown magic"));
    };
    let nlibs = u32_at(b, start + 20).ok_or(LdCacheError::Format("header cut short"))? as usize;
    let table = start + NEW_HEADER;
    if nlibs > (b.len().saturating_sub(table)) / NEW_ENTRY {
        return Err(LdCacheError::Format("more entries than the file holds"));
    }
    let mut out = Vec::with_capacity(nlibs);
    for i in 0..nlibs {
        let e = table + i * NEW_ENTRY;
        let flags = u32_at(b, e).ok_or(LdCacheError::Format("entry cut short"))?;
        if !arch_matches(flags) {
            continue;
        }
        // String offsets of the new format are from the start of the new table's header.
        let key = u32_at(b, e + 4).ok_or(LdCacheError::Format("entry cut short"))? as usize;
        let value = u32_at(b, e + 8).ok_or(LdCacheError::Format("entry cut short"))? as usize;
        let (Some(k), Some(v)) = (cstr_at(b, start + key), cstr_at(b, start + value)) else {
            return Err(LdCacheError::Format("string offset outside the file"));
        };
        out.push((k.to_string(), PathBuf::from(v)));
    }
    Ok(out)
}

/// FLAG_ELF_LIBC6 | the architecture bits of this build (glibc's ldconfig.h).
fn arch_matches(flags: u32) -> bool {
    let arch = flags & 0xff00;
    if cfg!(target_arch = "x86_64") {
        arch == 0x0300
    } else if cfg!(target_arch = "aarch64") {
        arch == 0x0a00
    } else {
        true
    }
}

/// Where browsers install their own copies of NSS/NSPR (Debian's firefox-esr, Mozilla's
/// firefox packages and tarball).
const BUNDLED_LIBRARY_DIRS: &[&str] = &["/usr/lib/firefox-esr", "/usr/lib/firefox", "/opt/firefox", "/usr/lib/thunderbird"];

/// Find every TLS library: the linker cache first, then what running processes have mapped.
/// The same file reached through different paths is listed once (uprobes attach to the
/// inode; attaching twice would report every call twice).
pub fn find_tls_libraries() -> (Vec<TlsLibrary>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut found: BTreeMap<(u64, u64), TlsLibrary> = BTreeMap::new();
    let mut add = |family, path: PathBuf, source: String| {
        let Ok(meta) = std::fs::metadata(&path) else { return };
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        found.entry((meta.dev(), meta.ino())).or_insert(TlsLibrary { family, path, source });
    };
    match std::fs::read("/etc/ld.so.cache")
        .map_err(|source| LdCacheError::Io { path: "/etc/ld.so.cache".into(), source })
        .and_then(|b| parse_ld_so_cache(&b))
    {
        Ok(entries) => {
            for (soname, path) in entries {
                if let Some(f) = LibFamily::of_file_name(&soname) {
                    add(f, path, "ld.so.cache".into());
                }
            }
        }
        Err(e) => warnings.push(format!("cannot read the linker cache: {e}")),
    }
    for (pid, path) in crate::procfs::all_mapped_paths() {
        if let Some(f) = path.file_name().and_then(|n| n.to_str()).and_then(LibFamily::of_file_name) {
            add(f, path, format!("maps of pid {pid}"));
        }
    }
    // Bundled copies of browsers that are installed but not running yet: a browser started
    // after the daemon is traced from its first page load, not from the next maps scan.
    for dir in BUNDLED_LIBRARY_DIRS {
        for name in ["libssl3.so", "libnspr4.so"] {
            let path = Path::new(dir).join(name);
            if let Some(f) = LibFamily::of_file_name(name)
                && path.exists()
            {
                add(f, path, format!("bundled in {dir}"));
            }
        }
    }
    (found.into_values().collect(), warnings)
}

/// The C library processes link (`libc.so.6` in the linker cache), by its real path: uprobes
/// attach to the file.
pub fn find_libc() -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    let cache = std::fs::read("/etc/ld.so.cache").context("reading /etc/ld.so.cache")?;
    let entries = parse_ld_so_cache(&cache).context("parsing /etc/ld.so.cache")?;
    let path = entries
        .into_iter()
        .find_map(|(soname, path)| (soname == "libc.so.6").then_some(path))
        .context("no libc.so.6 in /etc/ld.so.cache")?;
    std::fs::canonicalize(&path).with_context(|| format!("resolving {}", path.display()))
}

/// Tracer binaries whose built-in fetcher should be traced: this executable and `tracer`
/// binaries next to it (a test binary in target/debug/deps runs target/debug/tracer).
/// A symbol only a tracer binary has: the fetcher's write probe point (see [`super::families::TLS_FETCHER`]).
const FETCHER_WRITE: &str = "tracer_tls_write";

pub fn fetcher_binaries() -> Vec<TlsLibrary> {
    let mut out: Vec<TlsLibrary> = Vec::new();
    let Ok(me) = std::env::current_exe() else { return out };
    let mut candidates = vec![me.clone()];
    for dir in me.ancestors().skip(1).take(2) {
        candidates.push(dir.join("tracer"));
    }
    for path in candidates {
        let Ok(path) = std::fs::canonicalize(&path) else { continue };
        // Asked with every symbol the family attaches to, so that attaching reads no more.
        let is_fetcher = super::uprobes::SymbolOffsets::read(&path, &super::families::fetcher_symbols())
            .is_ok_and(|t| t.contains(FETCHER_WRITE));
        if out.iter().any(|l| l.path == path) || !is_fetcher {
            continue;
        }
        out.push(TlsLibrary { family: LibFamily::Fetcher, path, source: "tracer binary".into() });
    }
    out
}

/// Whether an ELF file defines `name` (symbol table or dynamic symbols). Only its headers and
/// symbol tables are read (a debug `tracer` binary is 180 MB).
pub fn has_symbol(path: &Path, name: &str) -> bool {
    super::uprobes::SymbolOffsets::read(path, &[name]).is_ok_and(|t| t.contains(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_cache(entries: &[(u32, &str, &str)]) -> Vec<u8> {
        let mut strings = Vec::new();
        let table_len = NEW_HEADER + entries.len() * NEW_ENTRY;
        let mut table = Vec::new();
        for (flags, k, v) in entries {
            let ko = table_len + strings.len();
            strings.extend_from_slice(k.as_bytes());
            strings.push(0);
            let vo = table_len + strings.len();
            strings.extend_from_slice(v.as_bytes());
            strings.push(0);
            table.extend_from_slice(&flags.to_le_bytes());
            table.extend_from_slice(&(ko as u32).to_le_bytes());
            table.extend_from_slice(&(vo as u32).to_le_bytes());
            table.extend_from_slice(&[0u8; 12]);
        }
        let mut b = MAGIC_NEW.to_vec();
        b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        b.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        b.resize(NEW_HEADER, 0);
        b.extend(table);
        b.extend(strings);
        b
    }

    #[test]
    fn parses_a_synthetic_cache_and_filters_arch() {
        let b = new_cache(&[
            (0x0303, "libssl.so.3", "/lib/x86_64-linux-gnu/libssl.so.3"),
            (0x0003, "libssl.so.3", "/lib/i386-linux-gnu/libssl.so.3"),
            (0x0303, "libgnutls.so.30", "/lib/x86_64-linux-gnu/libgnutls.so.30"),
        ]);
        let e = parse_ld_so_cache(&b).unwrap();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(e.len(), 2);
            assert_eq!(e[0], ("libssl.so.3".into(), "/lib/x86_64-linux-gnu/libssl.so.3".into()));
            assert_eq!(e[1].0, "libgnutls.so.30");
        }
    }

    #[test]
    fn rejects_malformed_caches_without_panicking() {
        assert!(parse_ld_so_cache(b"").is_err());
        assert!(parse_ld_so_cache(b"garbage").is_err());
        let good = new_cache(&[(0x0303, "libssl.so.3", "/x/libssl.so.3")]);
        for cut in 0..good.len() {
            // Every cut of a one-entry cache loses the string table or entry: an error.
            assert!(parse_ld_so_cache(&good[..cut]).is_err(), "cut {cut}");
        }
        let mut huge = good.clone();
        huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_ld_so_cache(&huge).is_err());
    }

    #[test]
    fn reads_this_machines_cache() {
        // Every glibc system has one; it must list libc itself.
        let b = std::fs::read("/etc/ld.so.cache").expect("/etc/ld.so.cache");
        let e = parse_ld_so_cache(&b).unwrap();
        assert!(e.iter().any(|(k, _)| k == "libc.so.6"), "{} entries", e.len());
    }

    #[test]
    fn families_of_library_file_names() {
        assert_eq!(LibFamily::of_file_name("libssl3.so"), Some(LibFamily::Nss));
        assert_eq!(LibFamily::of_file_name("libssl.so.1.1"), Some(LibFamily::OpenSsl));
        assert_eq!(LibFamily::of_file_name("libcrypto.so.3"), None);
    }
}
