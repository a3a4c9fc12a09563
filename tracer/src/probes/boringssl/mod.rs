//! Finding BoringSSL's `SSL_write`, `SSL_read` and `SSL_do_handshake` inside a stripped
//! Chromium (or Chrome, or Electron) binary, by code signature, and returning their file
//! offsets for uprobes.
//!
//! Chromium links BoringSSL statically and ships without symbols. What stays stable across
//! builds is how BoringSSL reports errors: every `OPENSSL_PUT_ERROR` site in `ssl_lib.cc`
//! compiles to a call of `ERR_put_error` with `edi = 0x10` (ERR_LIB_SSL), `edx = reason`,
//! `rcx = lea` of the string `../../third_party/boringssl/src/ssl/ssl_lib.cc` and
//! `r8d = line`. The finder:
//!
//! 1. maps the file, reads the GNU build-id, `.rodata`, `.text` and the load segments;
//! 2. finds the file-name string in `.rodata` (exactly once; Chromium's, or the same path
//!    under another tree's prefix, as in QtWebEngine's `libQt5WebEngineCore.so.5`);
//! 3. scans `.text` in one pass for `lea reg, [rip + disp32]` whose target is that string
//!    (a byte pre-filter on `REX.W 8D modrm(rip)`, then the displacement);
//! 4. walks back from each site to the function start (a 16-byte aligned
//!    `push rbp; mov rbp, rsp` that follows int3 padding, or that is the target of a direct
//!    call), follows the function's control flow from there with a decoder and checks that it
//!    reaches the site, then reads each site's `edi`/`edx`/`r8d` and its call;
//! 5. identifies the functions by the reason codes of their error sites, in address order:
//!    `SSL_write` = `[0x42, 0xe2, 0x6f, 0xd7]` (Chromium 87's BoringSSL: `0xc2` for `0x6f`,
//!    in any order), calling `SSL_do_handshake` = the one `[0x86]`
//!    function it calls; `SSL_read` = `[0x42]`, calling an internal read routine (which calls
//!    `SSL_do_handshake`), then `memcpy` (resolved by its PLT slot's dynamic relocation), then
//!    a consume routine; `SSL_peek` looks the same without the consume call;
//! 6. verifies: exactly one candidate each, the expected call relationships, each entry is a
//!    direct call target, starts with `push rbp`, and is a function boundary.
//!
//! Anything unexpected is an error naming what failed: a uprobe at a wrong offset can crash
//! the browser, so a false negative is always preferred to a guess.
//!
//! Results (and analysis failures) are cached per build-id and finder version
//! ([`find_cached`]), so a second run costs one ELF header parse.
//!
//! Which files: [`candidates`] (Chromium-family executables, QtWebEngine's libraries, any
//! mapped ELF that carries the signature). The AEAD functions Chromium's QUIC seals and
//! opens packets with (issue 22) are found in the same files by [`aead`], over the error
//! sites of `aead.cc.inc` ([`identify::analyse_text`] takes the source path and library
//! code), and kept in [`BoringSslOffsets::aead`].
use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use serde::{Deserialize, Serialize};

mod aead;
mod cache;
mod candidates;
mod control_flow;
mod elf;
mod error_sites;
mod identify;
mod scan;

pub use aead::AeadOffsets;
pub use cache::find_cached;
pub use candidates::candidates;
pub use elf::build_id;
use elf::{Elf, Mapped, offset_to_vaddr, vaddr_to_offset};
use identify::{analyse_text, identify};
use scan::{Text, find_ssl_lib_cc};

/// Bumped whenever the finder's logic changes: part of the cache key, so results from an
/// older finder are never reused.
/// v3: EVP_AEAD_CTX_seal/open (QUIC packet protection) beside the TLS functions.
pub const FINDER_VERSION: u32 = 3;

/// Where [`find_cached`] keeps its results by default (created 0700).
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/tracer/boringssl";

/// The `__FILE__` string BoringSSL's `ssl_lib.cc` error sites point at in Chromium; other
/// trees prefix it (QtWebEngine: `../../3rdparty/chromium/third_party/...`; see
/// `scan::find_ssl_lib_cc`).
pub const SSL_LIB_CC: &[u8] = b"../../third_party/boringssl/src/ssl/ssl_lib.cc";

/// ERR_LIB_SSL, the library code every ssl_lib.cc error site passes in `edi`.
const ERR_LIB_SSL: u32 = 0x10;
/// ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED, SSL_R_UNINITIALIZED, SSL_R_BAD_LENGTH(0x6f)...: the
/// reason codes of SSL_write's error sites in address order.
pub const SSL_WRITE_REASONS: &[u32] = &[0x42, 0xe2, 0x6f, 0xd7];
/// The same four checks in older BoringSSL (Chromium 87, inside QtWebEngine 5.15), whose
/// third is SSL_R_PROTOCOL_IS_SHUTDOWN (0xc2), and whose compiler laid the sites out in another
/// order: SSL_write is recognised by the set of its reasons, in any order.
pub const SSL_WRITE_REASONS_CHROMIUM_87: &[u32] = &[0x42, 0xe2, 0xc2, 0xd7];
/// Every known SSL_write signature.
pub const SSL_WRITE_SIGNATURES: &[&[u32]] = &[SSL_WRITE_REASONS, SSL_WRITE_REASONS_CHROMIUM_87];
/// SSL_R_CONNECTION_TYPE_NOT_SET: SSL_do_handshake's only error site.
pub const SSL_DO_HANDSHAKE_REASONS: &[u32] = &[0x86];
/// ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED: SSL_read's (and SSL_peek's) only error site.
pub const SSL_READ_REASONS: &[u32] = &[0x42];

/// `push rbp; mov rbp, rsp`
const PROLOGUE: [u8; 4] = [0x55, 0x48, 0x89, 0xe5];
/// How far back from an error site a function start is searched for.
const MAX_FUNCTION_BYTES: u64 = 64 * 1024;
/// Instructions decoded per function at most.
const MAX_FUNCTION_INSNS: usize = 20_000;

/// Where BoringSSL's functions are in one build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoringSslOffsets {
    /// The file analysed (the cache is keyed by build-id, so this is where it was first seen).
    pub path: PathBuf,
    /// GNU build-id, lower-case hex.
    pub build_id: String,
    /// File offsets, for `UProbe::attach(offset, path, scope)` (aya's `AbsoluteOffset`).
    pub ssl_write: u64,
    pub ssl_read: u64,
    pub ssl_do_handshake: u64,
    /// The same functions as virtual addresses in the ELF file (what `objdump` shows).
    pub ssl_write_vaddr: u64,
    pub ssl_read_vaddr: u64,
    pub ssl_do_handshake_vaddr: u64,
    /// How they were found and verified, in one line.
    pub method: String,
    pub finder_version: u32,
    /// Time the analysis took, in milliseconds (of the original run when cached).
    pub scan_ms: u64,
    /// Whether this came from the cache.
    #[serde(default)]
    pub from_cache: bool,
    /// `EVP_AEAD_CTX_seal` / `EVP_AEAD_CTX_open` (QUIC packet protection), when found
    /// (`aead`); otherwise why not (`aead_error`). The TLS functions above do not depend on it.
    #[serde(default)]
    pub aead: Option<AeadOffsets>,
    #[serde(default)]
    pub aead_error: Option<String>,
}

impl BoringSslOffsets {
    /// The file offset of `function` (SSL_write, SSL_read or SSL_do_handshake: the ones the
    /// finder locates; None for any other).
    pub fn offset_of(&self, function: &str) -> Option<u64> {
        match function {
            "SSL_write" => Some(self.ssl_write),
            "SSL_read" => Some(self.ssl_read),
            "SSL_do_handshake" => Some(self.ssl_do_handshake),
            "EVP_AEAD_CTX_seal" => self.aead.as_ref().map(|a| a.seal),
            "EVP_AEAD_CTX_open" => self.aead.as_ref().map(|a| a.open),
            _ => None,
        }
    }

    /// Why the finder does not locate `function` in this build (None when it does, or when
    /// the function is not one it looks for).
    pub fn why_not(&self, function: &str) -> Option<String> {
        match function {
            "EVP_AEAD_CTX_seal" | "EVP_AEAD_CTX_open" if self.aead.is_none() => {
                Some(self.aead_error.clone().unwrap_or_else(|| "the AEAD functions were not searched".into()))
            }
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an x86-64 ELF file: {reason}")]
    NotElf { path: PathBuf, reason: String },
    #[error("{0}: no GNU build-id note")]
    NoBuildId(PathBuf),
    #[error("no {0} section (section headers stripped?)")]
    SectionMissing(&'static str),
    #[error("no string \"../…/third_party/boringssl/src/ssl/ssl_lib.cc\" in .rodata: not a BoringSSL build")]
    StringMissing,
    #[error("the string \"../…/third_party/boringssl/src/ssl/ssl_lib.cc\" is in .rodata {0} times, expected once")]
    StringNotUnique(usize),
    #[error("no instruction in .text loads the address of ssl_lib.cc")]
    NoErrorSites,
    #[error("{function}: {count} candidates instead of 1 ({detail})")]
    Candidates { function: &'static str, count: usize, detail: String },
    #[error("verification failed: {0}")]
    Verification(String),
    #[error("cached analysis of build-id {build_id} (finder v{FINDER_VERSION}) failed: {error}")]
    CachedFailure { build_id: String, error: String },
}

impl FindError {
    /// The binary holds no BoringSSL at all (a browser's helper such as the crash handler),
    /// as opposed to a BoringSSL whose functions could not be told apart. Also in the
    /// cached form of the error.
    pub fn is_not_boringssl(&self) -> bool {
        match self {
            FindError::StringMissing => true,
            FindError::CachedFailure { error, .. } => *error == FindError::StringMissing.to_string(),
            _ => false,
        }
    }

    /// Whether the same bytes would give the same error again (so it may be cached).
    fn is_deterministic(&self) -> bool {
        !matches!(self, FindError::Io { .. } | FindError::CachedFailure { .. })
    }
}

/// Find BoringSSL's SSL_write, SSL_read and SSL_do_handshake in a stripped x86-64 binary.
/// Takes a second or two for a 300 MB Chromium; see [`find_cached`].
pub fn find_boringssl(path: &Path) -> Result<BoringSslOffsets, FindError> {
    let t0 = Instant::now();
    let map = Mapped::open(path)?;
    let elf = Elf::parse(path, map.bytes(), true)?;
    let (ro_addr, rodata) = elf.rodata.ok_or(FindError::SectionMissing(".rodata"))?;
    let (text_addr, text_bytes) = elf.text.ok_or(FindError::SectionMissing(".text"))?;
    let hits = find_ssl_lib_cc(rodata);
    let string_vaddr = match hits.as_slice() {
        [] => return Err(FindError::StringMissing),
        [one] => ro_addr + *one as u64,
        more => return Err(FindError::StringNotUnique(more.len())),
    };
    let text = Text { bytes: text_bytes, vaddr: text_addr };
    let analysis = analyse_text(text, string_vaddr, ERR_LIB_SSL)?;
    let plt_name = |t: u64| elf.plt_name(t).map(str::to_string);
    let id = identify(&analysis.funcs, analysis.err_put, &plt_name)?;

    // Final checks on the three entries.
    let mut caller_counts = Vec::new();
    for (name, a) in [("SSL_write", id.ssl_write), ("SSL_read", id.ssl_read), ("SSL_do_handshake", id.ssl_do_handshake)]
    {
        if !text.is_prologue(a) {
            return Err(FindError::Verification(format!(
                "{name} at {a:#x} does not start with push rbp; mov rbp, rsp"
            )));
        }
        let callers = analysis.callers.get(&a).copied().unwrap_or(0);
        if callers == 0 {
            return Err(FindError::Verification(format!("{name} at {a:#x} is not the target of any direct call")));
        }
        caller_counts.push(callers);
    }
    let offset = |name: &str, a: u64| {
        let off = vaddr_to_offset(&elf.loads, a)
            .ok_or_else(|| FindError::Verification(format!("{name} at {a:#x} is in no load segment")))?;
        if offset_to_vaddr(&elf.loads, off) != Some(a) {
            return Err(FindError::Verification(format!("{name}: file offset {off:#x} does not map back to {a:#x}")));
        }
        if elf.data.get(off as usize..off as usize + 4) != Some(&PROLOGUE[..]) {
            return Err(FindError::Verification(format!("{name}: file offset {off:#x} does not hold the prologue")));
        }
        Ok(off)
    };
    let ssl_write = offset("SSL_write", id.ssl_write)?;
    let ssl_read = offset("SSL_read", id.ssl_read)?;
    let ssl_do_handshake = offset("SSL_do_handshake", id.ssl_do_handshake)?;
    // The AEAD functions are searched only once the TLS ones are found, and their failure
    // leaves the TLS ones standing.
    let (aead, aead_error) = match aead::find_aead(&elf) {
        Ok(a) => (Some(a), None),
        Err(e) => (None, Some(e)),
    };
    let scan_ms = t0.elapsed().as_millis() as u64;
    let method = format!(
        "finder v{FINDER_VERSION}: {} lea sites of ssl_lib.cc ({string_vaddr:#x}) in {} functions ({} unresolved), \
         ERR_put_error {:#x}; {}; direct callers write/read/handshake {}/{}/{}",
        analysis.sites,
        analysis.funcs.len(),
        analysis.unresolved.len(),
        analysis.err_put,
        id.detail,
        caller_counts[0],
        caller_counts[1],
        caller_counts[2],
    );
    Ok(BoringSslOffsets {
        path: path.to_path_buf(),
        build_id: elf.build_id.clone(),
        ssl_write,
        ssl_read,
        ssl_do_handshake,
        ssl_write_vaddr: id.ssl_write,
        ssl_read_vaddr: id.ssl_read,
        ssl_do_handshake_vaddr: id.ssl_do_handshake,
        method,
        finder_version: FINDER_VERSION,
        scan_ms,
        from_cache: false,
        aead,
        aead_error,
    })
}

/// A human-readable account of what the finder sees in a binary: every function with
/// ssl_lib.cc error sites (start, direct callers, reasons and lines, direct calls) and the
/// sites it could not place. For diagnosing a build the finder rejects.
pub fn describe(path: &Path) -> Result<String, FindError> {
    use std::fmt::Write as _;
    let map = Mapped::open(path)?;
    let elf = Elf::parse(path, map.bytes(), true)?;
    let (ro_addr, rodata) = elf.rodata.ok_or(FindError::SectionMissing(".rodata"))?;
    let (text_addr, text_bytes) = elf.text.ok_or(FindError::SectionMissing(".text"))?;
    let hits = find_ssl_lib_cc(rodata);
    let [one] = hits.as_slice() else {
        return Err(if hits.is_empty() { FindError::StringMissing } else { FindError::StringNotUnique(hits.len()) });
    };
    let string_vaddr = ro_addr + *one as u64;
    let text = Text { bytes: text_bytes, vaddr: text_addr };
    let a = analyse_text(text, string_vaddr, ERR_LIB_SSL)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "build-id {}; ssl_lib.cc at {string_vaddr:#x}; {} sites; ERR_put_error {:#x}",
        elf.build_id, a.sites, a.err_put
    );
    for f in &a.funcs {
        let sites: Vec<String> = f
            .sites
            .iter()
            .map(|s| match (s.reason, s.line) {
                (Some(r), Some(l)) if s.lib == Some(ERR_LIB_SSL) && s.call == Some(a.err_put) => format!("{r:#x}@{l}"),
                _ => format!("?{:x}(lib {:?} reason {:?} line {:?} call {:?})", s.lea, s.lib, s.reason, s.line, s.call),
            })
            .collect();
        let calls: Vec<String> = f
            .calls
            .iter()
            .map(|&c| match elf.plt_name(c) {
                Some(n) => format!("{n}@plt"),
                None if c == a.err_put => "ERR_put_error".to_string(),
                None => format!("{c:#x}"),
            })
            .collect();
        let _ = writeln!(
            out,
            "{:#x} callers {} padded {}: reasons [{}] calls [{}]",
            f.start,
            a.callers.get(&f.start).copied().unwrap_or(0),
            a.padded.get(&f.start).copied().unwrap_or(false),
            sites.join(", "),
            calls.join(", ")
        );
    }
    for (site, why) in &a.unresolved {
        let _ = writeln!(out, "unresolved site {site:#x}: {why}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
