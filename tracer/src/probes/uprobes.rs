//! Uprobes: the files and functions to probe (built from the family declarations), and
//! attaching them for every process. With the client filter the same targets are enabled per
//! traced process instead (`super::per_process`).
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use aya::{
    Ebpf,
    programs::{
        UProbe,
        uprobe::{UProbeLinkId, UProbeScope},
    },
};

use super::{
    Attachment, ProbeStatus, SCOPE_ALL, boringssl,
    families::{self, ProbedFunction},
    libs::TlsLibrary,
};

/// Where in a file a uprobe goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachAt {
    Symbol(&'static str),
    /// A symbol's file offset, resolved by the daemon (per-process probes).
    Offset(u64),
    /// A file offset found by code signature (BoringSSL); the report shows it.
    FoundOffset(u64),
}

/// One function to probe: entry program, optional return program.
#[derive(Debug, Clone)]
pub struct UprobePoint {
    pub entry: &'static str,
    pub ret: Option<&'static str>,
    /// The function's name, for reports.
    pub name: &'static str,
    pub at: AttachAt,
}

/// A file to put uprobes in, with its attach points.
#[derive(Debug, Clone)]
pub struct UprobeTarget {
    /// The family's name: tls_openssl, libc_sockets, tls_boringssl ...
    pub family: String,
    pub path: PathBuf,
    pub points: Vec<UprobePoint>,
}

impl UprobePoint {
    /// "uprobe SSL_write"; points found by signature carry their offset.
    pub fn label(&self, kind: &str) -> String {
        match self.at {
            AttachAt::FoundOffset(o) => format!("{kind} {} @ {o:#x}", self.name),
            _ => format!("{kind} {}", self.name),
        }
    }
}

/// The points of declared functions, at their symbols.
pub fn symbol_points(functions: &[ProbedFunction]) -> Vec<UprobePoint> {
    functions
        .iter()
        .map(|f| UprobePoint { entry: f.entry, ret: f.ret, name: f.function, at: AttachAt::Symbol(f.function) })
        .collect()
}

/// The attach points of a TLS library: its family's functions. None for a library family
/// that no probe family declares (`families::tests` checks there is none).
pub fn library_target(lib: &TlsLibrary) -> Option<UprobeTarget> {
    let set = families::for_tls_library(lib.family)?;
    Some(UprobeTarget { family: set.family.name.into(), path: lib.path.clone(), points: symbol_points(set.functions) })
}

/// BoringSSL in the candidate binaries not examined yet (`done`; rescans skip those), for
/// every set found by signature (`sets`, each with its name in a failure entry): targets for
/// those where a set's functions were found, failure entries (and warnings) for those where
/// they were not. Each binary is analysed once for all the sets (one cache entry holds every
/// function the finder locates).
pub fn boringssl_targets(
    sets: &[(families::UprobeSet, &str)],
    done: &mut Vec<PathBuf>,
) -> (Vec<UprobeTarget>, Vec<ProbeStatus>, Vec<String>) {
    let mut targets = Vec::new();
    let mut status = Vec::new();
    let mut warnings = Vec::new();
    if sets.is_empty() {
        return (targets, status, warnings);
    }
    for path in boringssl::candidates(done, Path::new(boringssl::DEFAULT_CACHE_DIR)) {
        done.push(path.clone());
        let found = match boringssl::find_cached(&path, Path::new(boringssl::DEFAULT_CACHE_DIR)) {
            Ok(f) => f,
            // Not a BoringSSL build at all (chrome_crashpad_handler and other helpers beside
            // the browser): nothing to trace, nothing to report.
            Err(e) if e.is_not_boringssl() => {
                tracing::debug!("{}: no BoringSSL inside", path.display());
                continue;
            }
            Err(e) => {
                warnings.push(format!(
                    "BoringSSL functions not found in {} ({e}): its TLS and QUIC plaintext are not traced; DNS and TCP still are",
                    path.display()
                ));
                for (set, report_as) in sets {
                    status.push(ProbeStatus::outcome(
                        set.family.name,
                        format!("uprobe {report_as}"),
                        Some(path.clone()),
                        "uprobe",
                        None,
                        &Err::<(), _>(anyhow::anyhow!("{e}")),
                    ));
                }
                continue;
            }
        };
        for (set, _) in sets {
            let family = set.family;
            let mut points = Vec::new();
            let mut missing = Vec::new();
            for f in set.functions {
                match found.offset_of(f.function) {
                    Some(offset) => points.push(UprobePoint { entry: f.entry, ret: f.ret, name: f.function, at: AttachAt::FoundOffset(offset) }),
                    None => {
                        let why = found.why_not(f.function).unwrap_or_else(|| format!("the signature search does not locate {}", f.function));
                        missing.push(why.clone());
                        status.push(ProbeStatus::outcome(
                            family.name,
                            format!("uprobe {}", f.function),
                            Some(path.clone()),
                            "uprobe",
                            None,
                            &Err::<(), _>(anyhow::anyhow!("{why}")),
                        ))
                    }
                }
            }
            if let Some(why) = missing.first() {
                // Said in the start-up report (and each point's failure on /api/health).
                let what = if family.name.starts_with("quic_") { "QUIC plaintext" } else { "plaintext" };
                warnings.push(format!("{what} unavailable for {} ({}): {why}", path.display(), family.name));
            }
            if !points.is_empty() {
                targets.push(UprobeTarget { family: family.name.into(), path: path.clone(), points });
            }
        }
    }
    (targets, status, warnings)
}

/// The target of `set` (a [`families::UprobeFile::BesideLibrary`] set) beside the library at
/// `lib`: the file named `file` in its directory, at the set's symbols; or the failure entry
/// and warning that say why not.
pub fn beside_library_target(set: families::UprobeSet, file: &str, report_as: &str, lib: &Path) -> Result<UprobeTarget, (ProbeStatus, String)> {
    let path = lib.with_file_name(file);
    if path.is_file() {
        return Ok(UprobeTarget { family: set.family.name.into(), path, points: symbol_points(set.functions) });
    }
    let e = anyhow::anyhow!("no {file} beside {}", lib.display());
    Err((
        ProbeStatus::outcome(set.family.name, format!("uprobe {report_as}"), Some(path.clone()), "uprobe", None, &Err::<(), _>(anyhow::anyhow!("{e}"))),
        format!("QUIC plaintext unavailable for the NSS of {} ({}): {e}", lib.display(), set.family.name),
    ))
}

/// The target of `set` (a [`families::UprobeFile::FreeblTable`] set) in the freebl of the NSS
/// library at `lib`, at the offsets its function table gives; or the failure entry and warning
/// that say why not.
pub fn freebl_target(set: families::UprobeSet, report_as: &str, lib: &Path) -> Result<UprobeTarget, (ProbeStatus, String)> {
    let fail = |path: Option<PathBuf>, e: String| {
        (
            ProbeStatus::outcome(set.family.name, format!("uprobe {report_as}"), path, "uprobe", None, &Err::<(), _>(anyhow::anyhow!("{e}"))),
            format!("QUIC plaintext unavailable for the NSS of {} ({}): {e}", lib.display(), set.family.name),
        )
    };
    let path = super::freebl::beside(lib).ok_or_else(|| fail(None, format!("no libfreeblpriv3.so beside {}", lib.display())))?;
    let found = super::freebl::find_freebl(&path).map_err(|e| fail(Some(path.clone()), e))?;
    tracing::debug!("{}: {}", path.display(), found.method);
    let points = set
        .functions
        .iter()
        .filter_map(|f| Some(UprobePoint { entry: f.entry, ret: f.ret, name: f.function, at: AttachAt::FoundOffset(found.offset_of(f.function)?) }))
        .collect();
    Ok(UprobeTarget { family: set.family.name.into(), path, points })
}

fn attach_uprobe(ebpf: &mut Ebpf, program: &str, at: AttachAt, path: &Path) -> anyhow::Result<UProbeLinkId> {
    let up: &mut UProbe = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} not in the object"))?
        .try_into()?;
    if up.fd().is_err() {
        up.load().with_context(|| format!("verifier rejected {program}"))?;
    }
    match at {
        AttachAt::Symbol(symbol) => up
            .attach(symbol, path, UProbeScope::AllProcesses)
            .with_context(|| format!("attaching to {symbol} in {}", path.display())),
        AttachAt::Offset(offset) | AttachAt::FoundOffset(offset) => up
            .attach(offset, path, UProbeScope::AllProcesses)
            .with_context(|| format!("attaching at {offset:#x} in {}", path.display())),
    }
}

/// Attach every point of `target` for every process; each attach point reported on its own.
/// Return probe first: an entry without its return would leave calls in flight.
///
/// Symbols are resolved here, once per file, and attached by offset: aya's own lookup reads
/// the whole file at every attach point (a debug `tracer` binary with its fetcher probe
/// points is 180 MB: 7 reads of it per load, a minute under emulation).
pub fn attach_target(ebpf: &mut Ebpf, target: &UprobeTarget, links: &mut Vec<Attachment>) -> Vec<ProbeStatus> {
    let mut out = Vec::new();
    let symbols = SymbolOffsets::of_target(target);
    for p in &target.points {
        let at = match (p.at, &symbols) {
            (AttachAt::Symbol(name), Some(Ok(table))) => match table.offset(name) {
                Ok(offset) => AttachAt::Offset(offset),
                Err(_) => p.at, // aya's lookup then says what is wrong
            },
            (at, _) => at,
        };
        let mut ok = true;
        if let Some(ret) = p.ret {
            let r = attach_uprobe(ebpf, ret, at, &target.path).map(|id| links.push(Attachment::UProbe(ret, id)));
            ok = r.is_ok();
            out.push(ProbeStatus::outcome(&target.family, p.label("uretprobe"), Some(target.path.clone()), "uretprobe", Some(SCOPE_ALL), &r));
        }
        let r = if ok {
            attach_uprobe(ebpf, p.entry, at, &target.path).map(|id| links.push(Attachment::UProbe(p.entry, id)))
        } else {
            Err(anyhow::anyhow!("skipped: its return probe did not attach"))
        };
        out.push(ProbeStatus::outcome(&target.family, p.label("uprobe"), Some(target.path.clone()), "uprobe", Some(SCOPE_ALL), &r));
    }
    out
}

/// A file: its path, device, inode, size and modification time (seconds, nanoseconds).
type FileKey = (std::path::PathBuf, u64, u64, u64, i64, i64);

/// Symbol look-ups already made: the file, the names asked for, what was found. Only the
/// names asked for are kept (a few per file), and a few dozen files at most.
#[allow(clippy::type_complexity)]
static READ_BEFORE: std::sync::Mutex<Vec<(FileKey, Vec<String>, std::collections::HashMap<String, u64>)>> = std::sync::Mutex::new(Vec::new());
const READ_BEFORE_MAX: usize = 64;

/// A file's symbols as uprobe file offsets (the translation aya applies to a symbol), so
/// that per-process probes are defined without aya's lookup.
pub(crate) struct SymbolOffsets {
    table: std::collections::HashMap<String, u64>,
}

impl SymbolOffsets {
    /// The offsets of the symbols `target` attaches to (only those: a debug `tracer` binary
    /// has some 300k symbols, and a table of all of them took 1.7 s per load here, 45 s under
    /// emulation). The file is mapped, not read: only the pages of its headers and symbol
    /// tables are touched (a debug `tracer` binary is 180 MB, most of it debug info).
    pub(crate) fn of_target(target: &UprobeTarget) -> Option<anyhow::Result<SymbolOffsets>> {
        let wanted: Vec<&str> = target.points.iter().filter_map(|p| if let AttachAt::Symbol(s) = p.at { Some(s) } else { None }).collect();
        (!wanted.is_empty()).then(|| SymbolOffsets::read(&target.path, &wanted))
    }

    /// Two reads per symbol table (its entries, its strings), not page faults on a mapping: a
    /// debug `tracer` binary's tables are 17 MB, and on the 9p share of an emulated guest,
    /// faulting them in page by page took 15 s per look-up (a read of each, under 1 s).
    ///
    /// A file read once is not read again while it is unchanged (same device, inode, size and
    /// modification time) for a subset of the same names: the fetcher's binary is read to
    /// find out whether it is one, then to attach (a debug `tracer`'s tables: 6 s a read on
    /// 5.10 under TCG, twice per daemon start).
    pub(crate) fn read(path: &Path, wanted: &[&str]) -> anyhow::Result<SymbolOffsets> {
        use std::os::unix::fs::MetadataExt as _;
        let key = std::fs::metadata(path).ok().map(|m| (path.to_path_buf(), m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
        let mut memo = READ_BEFORE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, _, table)) = memo.iter().find(|(k, names, _)| Some(k) == key.as_ref() && wanted.iter().all(|w| names.iter().any(|n| n == w))) {
            return Ok(SymbolOffsets { table: table.clone() });
        }
        let read = Self::read_file(path, wanted)?;
        if let Some(key) = key {
            if memo.len() == READ_BEFORE_MAX {
                memo.remove(0);
            }
            memo.push((key, wanted.iter().map(|w| w.to_string()).collect(), read.table.clone()));
        }
        Ok(read)
    }

    fn read_file(path: &Path, wanted: &[&str]) -> anyhow::Result<SymbolOffsets> {
        use object::{Object, ObjectSection, ObjectSymbol, read::ReadRef as _};
        let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let data = object::read::ReadCache::new(file);
        let elf = object::File::parse(&data).with_context(|| format!("parsing {}", path.display()))?;
        let translate = matches!(elf.kind(), object::ObjectKind::Dynamic | object::ObjectKind::Executable);
        let to_offset = |index: usize, address: u64| -> Option<u64> {
            if !translate {
                return Some(address);
            }
            let section = elf.section_by_index(object::SectionIndex(index)).ok()?;
            let (file_off, _) = section.file_range()?;
            Some(address - section.address() + file_off)
        };
        let mut table = std::collections::HashMap::new();
        if matches!(elf.format(), object::BinaryFormat::Elf) && elf.is_64() && elf.is_little_endian() {
            // Dynamic symbols first, like aya's lookup.
            for (symbols, strings) in [(".dynsym", ".dynstr"), (".symtab", ".strtab")] {
                let (Some(sym), Some(str_)) = (elf.section_by_name(symbols), elf.section_by_name(strings)) else { continue };
                let (Some((so, ss)), Some((to, ts))) = (sym.file_range(), str_.file_range()) else { continue };
                let entries = (&data).read_bytes_at(so, ss).map_err(|()| anyhow::anyhow!("{}: {symbols} unreadable", path.display()))?;
                let names = (&data).read_bytes_at(to, ts).map_err(|()| anyhow::anyhow!("{}: {strings} unreadable", path.display()))?;
                for e in entries.chunks_exact(24) {
                    let Some(found) = elf64_definition(e, names, wanted) else { continue };
                    if table.contains_key(found.0) {
                        continue;
                    }
                    if let Some(offset) = to_offset(found.1, found.2) {
                        table.insert(found.0.to_string(), offset);
                    }
                }
            }
        } else {
            for sym in elf.dynamic_symbols().chain(elf.symbols()) {
                let Ok(name) = sym.name() else { continue };
                if !wanted.contains(&name) || !sym.is_definition() || table.contains_key(name) {
                    continue;
                }
                let offset = match sym.section_index() {
                    Some(index) => to_offset(index.0, sym.address()),
                    None if !translate => Some(sym.address()),
                    None => None,
                };
                if let Some(offset) = offset {
                    table.insert(name.to_string(), offset);
                }
            }
        }
        Ok(SymbolOffsets { table })
    }

    pub(crate) fn contains(&self, symbol: &str) -> bool {
        self.table.contains_key(symbol)
    }

    pub(crate) fn offset(&self, symbol: &str) -> anyhow::Result<u64> {
        self.table.get(symbol).copied().with_context(|| format!("symbol {symbol} not found"))
    }
}

/// One Elf64_Sym (little-endian, 24 bytes) that defines one of `wanted`: its name, section
/// index and value. Defined: in a section (not undefined, absolute or common), and a function,
/// an object, an IFUNC or untyped.
fn elf64_definition<'n>(entry: &[u8], names: &'n [u8], wanted: &[&str]) -> Option<(&'n str, usize, u64)> {
    let name_at = u32::from_le_bytes(entry[0..4].try_into().ok()?) as usize;
    let kind = entry[4] & 0xf;
    let shndx = u16::from_le_bytes(entry[6..8].try_into().ok()?);
    let value = u64::from_le_bytes(entry[8..16].try_into().ok()?);
    if shndx == 0 || shndx >= 0xff00 || !matches!(kind, 0 | 1 | 2 | 10) {
        return None;
    }
    let rest = names.get(name_at..)?;
    let name = std::str::from_utf8(&rest[..rest.iter().position(|&b| b == 0)?]).ok()?;
    wanted.contains(&name).then_some((name, shndx as usize, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What object's own symbol iteration gives (the whole file mapped into memory), as the
    /// reference for the two-read look-up.
    fn reference(path: &Path, name: &str) -> Option<u64> {
        use object::{Object, ObjectSection, ObjectSymbol};
        let data = std::fs::read(path).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let sym = file.dynamic_symbols().chain(file.symbols()).find(|s| s.name() == Ok(name) && s.is_definition())?;
        let section = file.section_by_index(sym.section_index()?).ok()?;
        Some(sym.address() - section.address() + section.file_range()?.0)
    }

    #[test]
    fn symbols_are_found_at_the_offsets_object_gives() {
        let libc = Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6");
        let me = std::env::current_exe().unwrap();
        let fetcher = "tracer_tls_write";
        for (path, names) in [(libc, vec!["connect", "sendmmsg", "__close_nocancel"]), (me.as_path(), vec![fetcher])] {
            let table = SymbolOffsets::read(path, &names).unwrap();
            for name in names {
                let want = reference(path, name).unwrap_or_else(|| panic!("{name} is not in {}", path.display()));
                assert_eq!(table.offset(name).unwrap(), want, "{name} in {}", path.display());
            }
        }
        let none = SymbolOffsets::read(libc, &["no_such_function_here"]).unwrap();
        assert!(!none.contains("no_such_function_here") && none.offset("connect").is_err(), "only wanted names are looked up");
        assert!(SymbolOffsets::read(Path::new("/nonexistent/lib.so"), &["x"]).is_err());
    }

    #[test]
    fn a_file_is_read_again_only_when_it_changed() {
        let libc = Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6");
        let copy = std::env::temp_dir().join(format!("tracer-symbols-{}.so", std::process::id()));
        std::fs::copy(libc, &copy).unwrap();
        let first = SymbolOffsets::read(&copy, &["connect", "sendmmsg"]).unwrap();
        // A subset of the names asked before: answered from the first read.
        let again = SymbolOffsets::read(&copy, &["connect"]).unwrap();
        assert_eq!(again.offset("connect").unwrap(), first.offset("connect").unwrap());
        // Replaced by something that is no ELF: its size and time differ, so it is read again.
        std::fs::write(&copy, b"not an ELF file").unwrap();
        let replaced = SymbolOffsets::read(&copy, &["connect"]);
        std::fs::remove_file(&copy).unwrap();
        assert!(replaced.is_err(), "a changed file must be read again, not answered from memory");
    }
}
