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
//! 2. finds the file-name string in `.rodata` (exactly once);
//! 3. scans `.text` in one pass for `lea reg, [rip + disp32]` whose target is that string
//!    (a byte pre-filter on `REX.W 8D modrm(rip)`, then the displacement);
//! 4. walks back from each site to the function start (a 16-byte aligned
//!    `push rbp; mov rbp, rsp` that follows int3 padding, or that is the target of a direct
//!    call), follows the function's control flow from there with a decoder and checks that it
//!    reaches the site, then reads each site's `edi`/`edx`/`r8d` and its call;
//! 5. identifies the functions by the reason codes of their error sites, in address order:
//!    `SSL_write` = `[0x42, 0xe2, 0x6f, 0xd7]`, calling `SSL_do_handshake` = the one `[0x86]`
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
use std::{
    collections::{BTreeMap, HashMap},
    fs::File,
    io::Write as _,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::Instant,
};

use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Instruction, OpKind, Register};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, ObjectSymbolTable};
use serde::{Deserialize, Serialize};

/// Bumped whenever the finder's logic changes: part of the cache key, so results from an
/// older finder are never reused.
pub const FINDER_VERSION: u32 = 1;

/// Where [`find_cached`] keeps its results by default (created 0700).
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/tracer/boringssl";

/// The `__FILE__` string BoringSSL's `ssl_lib.cc` error sites point at.
pub const SSL_LIB_CC: &[u8] = b"../../third_party/boringssl/src/ssl/ssl_lib.cc";

/// ERR_LIB_SSL, the library code every ssl_lib.cc error site passes in `edi`.
const ERR_LIB_SSL: u32 = 0x10;
/// ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED, SSL_R_UNINITIALIZED, SSL_R_BAD_LENGTH(0x6f)...: the
/// reason codes of SSL_write's error sites in address order.
pub const SSL_WRITE_REASONS: &[u32] = &[0x42, 0xe2, 0x6f, 0xd7];
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

/// Well-known install paths of Chromium-family browsers.
const KNOWN_PATHS: &[&str] = &[
    "/usr/lib/chromium/chromium",
    "/usr/lib/chromium-browser/chromium-browser",
    "/opt/google/chrome/chrome",
    "/opt/google/chrome-beta/chrome",
    "/opt/google/chrome-unstable/chrome",
];
/// Executable names that are Chromium-family browsers.
const KNOWN_NAMES: &[&str] =
    &["chromium", "chromium-browser", "chrome", "google-chrome", "electron", "msedge", "brave"];

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
}

impl BoringSslOffsets {
    /// The file offset of `function` (SSL_write, SSL_read or SSL_do_handshake: the ones the
    /// finder locates; None for any other).
    pub fn offset_of(&self, function: &str) -> Option<u64> {
        match function {
            "SSL_write" => Some(self.ssl_write),
            "SSL_read" => Some(self.ssl_read),
            "SSL_do_handshake" => Some(self.ssl_do_handshake),
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
    #[error("the string \"{}\" is not in .rodata: not a BoringSSL build", String::from_utf8_lossy(SSL_LIB_CC))]
    StringMissing,
    #[error("the string \"{}\" is in .rodata {count} times, expected once", String::from_utf8_lossy(SSL_LIB_CC), count = .0)]
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

// ---------------------------------------------------------------------------------------
// The file: a read-only mapping, its load segments and build-id.
// ---------------------------------------------------------------------------------------

/// A whole file, read into memory.
///
/// Not mmap: a file mapping always carries VM_MAYEXEC, so the kernel's uprobe_mmap writes
/// int3 breakpoints into *our* mapping at every offset any process has a uprobe on: with the
/// daemon (or a second one) attached to Chromium, the finder would read breakpoints where the
/// prologues are and find nothing. read() sees the page cache, which uprobes never modify.
/// The cost is the file's size in memory for the analysis (about 0.3 GB for Chromium, once per
/// build thanks to the cache).
struct Mapped {
    data: Vec<u8>,
}

impl Mapped {
    fn open(path: &Path) -> Result<Mapped, FindError> {
        let data = std::fs::read(path).map_err(|source| FindError::Io { path: path.to_path_buf(), source })?;
        if data.is_empty() {
            return Err(FindError::NotElf { path: path.to_path_buf(), reason: "empty file".into() });
        }
        Ok(Mapped { data })
    }

    fn bytes(&self) -> &[u8] {
        &self.data
    }
}

/// One PT_LOAD program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
}

/// The file offset of a virtual address, through the load segments.
pub(crate) fn vaddr_to_offset(loads: &[Load], vaddr: u64) -> Option<u64> {
    loads.iter().find(|l| vaddr >= l.vaddr && vaddr - l.vaddr < l.filesz).map(|l| vaddr - l.vaddr + l.offset)
}

/// The virtual address of a file offset, through the load segments.
pub(crate) fn offset_to_vaddr(loads: &[Load], offset: u64) -> Option<u64> {
    loads.iter().find(|l| offset >= l.offset && offset - l.offset < l.filesz).map(|l| offset - l.offset + l.vaddr)
}

/// The NT_GNU_BUILD_ID descriptor in a run of ELF notes (little-endian, 4-byte aligned).
pub(crate) fn parse_build_id_notes(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let u32_at = |b: &[u8], i: usize| b.get(i..i + 4).map(|s| u32::from_le_bytes(s.try_into().unwrap()));
    let align4 = |n: usize| n.checked_add(3).map(|n| n & !3);
    while notes.len() >= 12 {
        let namesz = u32_at(notes, 0)? as usize;
        let descsz = u32_at(notes, 4)? as usize;
        let kind = u32_at(notes, 8)?;
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = 12usize.checked_add(align4(namesz)?)?;
        let desc_end = desc_start.checked_add(descsz)?;
        let name = notes.get(12..name_end)?;
        let desc = notes.get(desc_start..desc_end)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() {
            return Some(desc);
        }
        let next = desc_start.checked_add(align4(descsz)?)?;
        notes = notes.get(next..)?;
    }
    None
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The parts of the ELF file the finder reads.
struct Elf<'a> {
    data: &'a [u8],
    build_id: String,
    loads: Vec<Load>,
    rodata: Option<(u64, &'a [u8])>,
    text: Option<(u64, &'a [u8])>,
    /// GOT slot address -> dynamic symbol name (from .rela.plt / .rela.dyn).
    got_names: HashMap<u64, String>,
}

impl<'a> Elf<'a> {
    fn parse(path: &Path, data: &'a [u8], full: bool) -> Result<Elf<'a>, FindError> {
        let not_elf = |reason: String| FindError::NotElf { path: path.to_path_buf(), reason };
        let file = object::File::parse(data).map_err(|e| not_elf(e.to_string()))?;
        if file.format() != object::BinaryFormat::Elf {
            return Err(not_elf(format!("{:?} file", file.format())));
        }
        if file.architecture() != object::Architecture::X86_64 {
            return Err(not_elf(format!("architecture {:?}", file.architecture())));
        }
        let mut build_id = None;
        for s in file.sections() {
            if s.kind() == object::SectionKind::Note
                && let Some(id) = s.data().ok().and_then(parse_build_id_notes)
            {
                build_id = Some(hex(id));
                break;
            }
        }
        if build_id.is_none() {
            build_id = file.build_id().ok().flatten().map(hex);
        }
        let build_id = build_id.ok_or_else(|| FindError::NoBuildId(path.to_path_buf()))?;
        let loads = file
            .segments()
            .map(|s| {
                let (offset, filesz) = s.file_range();
                Load { vaddr: s.address(), offset, filesz }
            })
            .collect();
        let mut elf = Elf { data, build_id, loads, rodata: None, text: None, got_names: HashMap::new() };
        if !full {
            return Ok(elf);
        }
        let section = |name: &str| -> Option<(u64, &'a [u8])> {
            let s = file.section_by_name(name)?;
            let (off, size) = s.file_range()?;
            let bytes = data.get(off as usize..(off + size) as usize)?;
            Some((s.address(), bytes))
        };
        elf.rodata = section(".rodata");
        elf.text = section(".text");
        if let (Some(relocs), Some(dynsyms)) = (file.dynamic_relocations(), file.dynamic_symbol_table()) {
            for (slot, reloc) in relocs {
                if let object::RelocationTarget::Symbol(idx) = reloc.target()
                    && let Ok(name) = dynsyms.symbol_by_index(idx).and_then(|s| s.name().map(str::to_string))
                {
                    elf.got_names.insert(slot, name);
                }
            }
        }
        Ok(elf)
    }

    /// Bytes at a virtual address, as far as the file holds them.
    fn bytes_at(&self, vaddr: u64, len: usize) -> Option<&'a [u8]> {
        let off = vaddr_to_offset(&self.loads, vaddr)? as usize;
        self.data.get(off..off.checked_add(len)?)
    }

    /// The imported function a PLT stub jumps to: `[endbr64;] [bnd] jmp [rip + slot]`.
    fn plt_name(&self, target: u64) -> Option<&str> {
        let bytes = self.bytes_at(target, 16)?;
        let mut dec = Decoder::with_ip(64, bytes, target, DecoderOptions::NONE);
        for _ in 0..2 {
            let ins = dec.decode();
            if ins.code() == Code::Endbr64 {
                continue;
            }
            if ins.code() == Code::Jmp_rm64 && ins.is_ip_rel_memory_operand() {
                return self.got_names.get(&ins.ip_rel_memory_address()).map(String::as_str);
            }
            return None;
        }
        None
    }
}

/// The GNU build-id of an ELF file, lower-case hex (cheap: reads the headers only).
pub fn build_id(path: &Path) -> Result<String, FindError> {
    // Only the ELF headers and the note are read (object's ReadCache reads on demand): the
    // cache key must not cost reading a 300 MB binary.
    use object::Object as _;
    let file = File::open(path).map_err(|source| FindError::Io { path: path.to_path_buf(), source })?;
    let cache = object::read::ReadCache::new(file);
    let elf = object::File::parse(&cache)
        .map_err(|e| FindError::NotElf { path: path.to_path_buf(), reason: e.to_string() })?;
    match elf.build_id() {
        Ok(Some(id)) if !id.is_empty() => Ok(id.iter().map(|b| format!("{b:02x}")).collect()),
        _ => Err(FindError::NoBuildId(path.to_path_buf())),
    }
}

// ---------------------------------------------------------------------------------------
// Byte scans.
// ---------------------------------------------------------------------------------------

/// Offsets (in `hay`) of `needle` followed by a NUL byte.
pub(crate) fn find_c_string(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    memchr::memmem::find_iter(hay, needle).filter(|&i| hay.get(i + needle.len()) == Some(&0)).collect()
}

/// Virtual addresses of every `lea r64, [rip + disp32]` in `text` whose target is `target`
/// (a byte pre-filter: the instruction boundaries are checked later by decoding).
pub(crate) fn scan_rip_lea(text: &[u8], text_vaddr: u64, target: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for j in memchr::memchr_iter(0x8d, text) {
        // REX.W(+R/X/B) 8D modrm(mod=00, rm=101 => rip+disp32) disp32
        if j == 0 || j + 6 > text.len() {
            continue;
        }
        let (rex, modrm) = (text[j - 1], text[j + 1]);
        if rex & 0xf8 != 0x48 || modrm & 0xc7 != 0x05 {
            continue;
        }
        let disp = i32::from_le_bytes([text[j + 2], text[j + 3], text[j + 4], text[j + 5]]);
        let start = text_vaddr + (j - 1) as u64;
        if (start + 7).wrapping_add(disp as i64 as u64) == target {
            out.push(start);
        }
    }
    out
}

/// For each of the sorted `targets`, how many `call rel32` in `text` go there.
pub(crate) fn count_direct_calls(text: &[u8], text_vaddr: u64, targets: &[u64]) -> Vec<usize> {
    let mut counts = vec![0usize; targets.len()];
    if targets.is_empty() {
        return counts;
    }
    let (lo, hi) = (targets[0], targets[targets.len() - 1]);
    for j in memchr::memchr_iter(0xe8, text) {
        if j + 5 > text.len() {
            break;
        }
        let rel = i32::from_le_bytes([text[j + 1], text[j + 2], text[j + 3], text[j + 4]]);
        let to = (text_vaddr + j as u64 + 5).wrapping_add(rel as i64 as u64);
        if to < lo || to > hi {
            continue;
        }
        if let Ok(k) = targets.binary_search(&to) {
            counts[k] += 1;
        }
    }
    counts
}

/// A view of `.text` with its load address.
#[derive(Clone, Copy)]
pub(crate) struct Text<'a> {
    pub bytes: &'a [u8],
    pub vaddr: u64,
}

impl<'a> Text<'a> {
    fn end(&self) -> u64 {
        self.vaddr + self.bytes.len() as u64
    }
    fn contains(&self, a: u64) -> bool {
        a >= self.vaddr && a < self.end()
    }
    fn byte(&self, a: u64) -> Option<u8> {
        if self.contains(a) { Some(self.bytes[(a - self.vaddr) as usize]) } else { None }
    }
    fn from(&self, a: u64) -> &'a [u8] {
        &self.bytes[(a - self.vaddr) as usize..]
    }
    /// A 16-byte aligned `push rbp; mov rbp, rsp`.
    fn is_prologue(&self, a: u64) -> bool {
        a.is_multiple_of(16) && self.contains(a) && self.from(a).starts_with(&PROLOGUE)
    }
    /// Preceded by int3 padding (or the start of .text): the end of the previous function.
    fn is_padded(&self, a: u64) -> bool {
        a == self.vaddr || self.byte(a.wrapping_sub(1)) == Some(0xcc)
    }
}

/// Possible starts of the function holding `site`, nearest first: every aligned prologue
/// going back, up to and including the first one that follows int3 padding.
pub(crate) fn start_candidates(text: Text, site: u64) -> Vec<u64> {
    let mut out = Vec::new();
    if !text.contains(site) {
        return out;
    }
    let floor = site.saturating_sub(MAX_FUNCTION_BYTES).max(text.vaddr);
    let mut a = site & !15;
    while a >= floor {
        if text.is_prologue(a) {
            out.push(a);
            if text.is_padded(a) {
                break;
            }
        }
        if a < 16 {
            break;
        }
        a -= 16;
    }
    out
}

// ---------------------------------------------------------------------------------------
// Following one function's control flow.
// ---------------------------------------------------------------------------------------

/// One function, decoded by following its branches from the entry.
#[derive(Debug)]
pub(crate) struct Function {
    pub insns: BTreeMap<u64, Instruction>,
}

impl Function {
    /// Direct call targets in address order.
    pub fn calls(&self) -> Vec<u64> {
        self.insns.values().filter(|i| i.code() == Code::Call_rel32_64).map(|i| i.near_branch_target()).collect()
    }
}

/// Decode the function at `start` by following its control flow: conditional and
/// unconditional jumps within `[start, limit)` that do not land on another function's entry;
/// a block ends at ret, jmp, int3/ud2, an indirect jump, or where another function begins.
pub(crate) fn follow_function(text: Text, start: u64, limit: u64) -> Result<Function, String> {
    let limit = limit.min(text.end());
    // Another function's entry: aligned, and a prologue or right after int3 padding.
    let is_entry = |a: u64| a != start && a.is_multiple_of(16) && (text.is_prologue(a) || text.is_padded(a));
    let mut insns = BTreeMap::new();
    let mut work = vec![start];
    while let Some(block) = work.pop() {
        if insns.contains_key(&block) {
            continue;
        }
        let mut dec = Decoder::with_ip(64, &text.from(block)[..(limit - block) as usize], block, DecoderOptions::NONE);
        let mut ins = Instruction::default();
        let mut after_call = false;
        loop {
            let ip = dec.ip();
            if ip >= limit {
                return Err(format!("runs past {limit:#x} (the next function boundary)"));
            }
            if insns.contains_key(&ip) {
                break;
            }
            if ip != block && text.is_prologue(ip) {
                // A call to a noreturn function (__stack_chk_fail, abort) ending a function
                // that the next one follows without padding. Frame-pointer code makes no call
                // before its own prologue, so anything else is a decoding error.
                if after_call {
                    break;
                }
                return Err(format!("falls through into the function at {ip:#x}"));
            }
            dec.decode_out(&mut ins);
            if ins.is_invalid() {
                if dec.last_error() == iced_x86::DecoderError::NoMoreBytes {
                    return Err(format!("runs past {limit:#x} (the next function boundary)"));
                }
                return Err(format!("invalid instruction at {ip:#x}"));
            }
            insns.insert(ip, ins);
            after_call = matches!(ins.flow_control(), FlowControl::Call | FlowControl::IndirectCall);
            if insns.len() > MAX_FUNCTION_INSNS {
                return Err(format!("more than {MAX_FUNCTION_INSNS} instructions"));
            }
            match ins.flow_control() {
                FlowControl::Next | FlowControl::Call | FlowControl::IndirectCall | FlowControl::XbeginXabortXend => {}
                FlowControl::ConditionalBranch => {
                    let t = ins.near_branch_target();
                    if t >= start && t < limit && !is_entry(t) {
                        work.push(t);
                    }
                }
                FlowControl::UnconditionalBranch => {
                    let t = ins.near_branch_target();
                    if t >= start && t < limit && !is_entry(t) {
                        work.push(t);
                    }
                    break;
                }
                FlowControl::IndirectBranch | FlowControl::Return | FlowControl::Interrupt | FlowControl::Exception => {
                    break;
                }
            }
        }
    }
    // Overlapping decodes mean the entry was not a real instruction boundary.
    let mut prev_end = 0u64;
    for (ip, ins) in &insns {
        if *ip < prev_end {
            return Err(format!("overlapping instructions at {ip:#x}"));
        }
        prev_end = ins.next_ip();
    }
    Ok(Function { insns })
}

/// One `OPENSSL_PUT_ERROR` site: the arguments set up around the `lea` of the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorSite {
    pub lea: u64,
    pub lib: Option<u32>,
    pub reason: Option<u32>,
    pub line: Option<u32>,
    /// The function called with these arguments (ERR_put_error).
    pub call: Option<u64>,
}

impl ErrorSite {
    /// The reason code, when the site is a well-formed ERR_LIB_SSL report calling `err_put`.
    fn ssl_reason(&self, err_put: u64) -> Option<u32> {
        (self.lib == Some(ERR_LIB_SSL) && self.call == Some(err_put) && self.line.is_some()).then_some(self.reason)?
    }
}

#[derive(Default)]
struct Args {
    edi: Option<u32>,
    edx: Option<u32>,
    r8d: Option<u32>,
}

impl Args {
    fn slot(&mut self, reg: Register) -> Option<&mut Option<u32>> {
        match reg.full_register() {
            Register::RDI => Some(&mut self.edi),
            Register::RDX => Some(&mut self.edx),
            Register::R8 => Some(&mut self.r8d),
            _ => None,
        }
    }

    fn apply(&mut self, ins: &Instruction) {
        if ins.op_count() == 0 || ins.op0_kind() != OpKind::Register {
            return;
        }
        let reg = ins.op0_register();
        let value = match ins.code() {
            Code::Mov_r32_imm32 => Some(ins.immediate32()),
            Code::Mov_rm64_imm32 => Some(ins.immediate32()),
            Code::Xor_r32_rm32 | Code::Xor_rm32_r32
                if ins.op1_kind() == OpKind::Register && ins.op1_register() == reg =>
            {
                Some(0)
            }
            // cmp/test read their first operand; everything else is taken as a write.
            Code::Cmp_r32_rm32 | Code::Cmp_rm32_r32 | Code::Cmp_rm32_imm32 | Code::Cmp_rm32_imm8 => return,
            Code::Test_rm32_r32 | Code::Test_rm32_imm32 | Code::Test_rm64_r64 => return,
            _ => None,
        };
        if let Some(slot) = self.slot(reg) {
            *slot = value;
        }
    }
}

/// Read an error site's arguments: the straight-line instructions before the `lea` in the
/// same block, then forward from it to the call (following up to two jumps to a shared call).
pub(crate) fn parse_site(text: Text, func: &Function, lea: u64) -> ErrorSite {
    let mut args = Args::default();
    let mut before = Vec::new();
    let mut cur = lea;
    while before.len() < 12 {
        match func.insns.range(..cur).next_back() {
            Some((&ip, ins)) if ins.next_ip() == cur && ins.flow_control() == FlowControl::Next => {
                before.push(*ins);
                cur = ip;
            }
            _ => break,
        }
    }
    for ins in before.iter().rev() {
        args.apply(ins);
    }
    let mut call = None;
    let mut ip = lea;
    let mut jumps = 0;
    let mut steps = 0;
    'outer: while text.contains(ip) && steps < 24 {
        let mut dec = Decoder::with_ip(64, text.from(ip), ip, DecoderOptions::NONE);
        let mut ins = Instruction::default();
        while steps < 24 {
            steps += 1;
            dec.decode_out(&mut ins);
            if ins.is_invalid() {
                break 'outer;
            }
            match ins.flow_control() {
                FlowControl::Next => args.apply(&ins),
                FlowControl::Call if ins.code() == Code::Call_rel32_64 => {
                    call = Some(ins.near_branch_target());
                    break 'outer;
                }
                FlowControl::UnconditionalBranch if jumps < 2 => {
                    jumps += 1;
                    ip = ins.near_branch_target();
                    continue 'outer;
                }
                _ => break 'outer,
            }
        }
    }
    ErrorSite { lea, lib: args.edi, reason: args.edx, line: args.r8d, call }
}

// ---------------------------------------------------------------------------------------
// Grouping sites into functions, and telling the functions apart.
// ---------------------------------------------------------------------------------------

/// What identification needs to know about one function holding error sites.
#[derive(Debug, Clone)]
pub(crate) struct FuncSummary {
    pub start: u64,
    /// Error sites in address order.
    pub sites: Vec<ErrorSite>,
    /// Direct call targets in address order.
    pub calls: Vec<u64>,
}

impl FuncSummary {
    fn reasons(&self, err_put: u64) -> Vec<Option<u32>> {
        self.sites.iter().map(|s| s.ssl_reason(err_put)).collect()
    }
    fn has_reasons(&self, err_put: u64, want: &[u32]) -> bool {
        let got = self.reasons(err_put);
        got.len() == want.len() && got.iter().zip(want).all(|(g, w)| *g == Some(*w))
    }
    fn calls_to(&self, target: u64) -> bool {
        self.calls.contains(&target)
    }
}

/// The three functions, by virtual address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identified {
    pub ssl_write: u64,
    pub ssl_read: u64,
    pub ssl_do_handshake: u64,
    pub ssl_peek: Option<u64>,
    pub read_impl: u64,
    pub detail: String,
}

fn hex_list(v: &[u32]) -> String {
    let v: Vec<String> = v.iter().map(|a| format!("{a:#x}")).collect();
    format!("[{}]", v.join(", "))
}

fn list(addrs: &[u64]) -> String {
    let v: Vec<String> = addrs.iter().map(|a| format!("{a:#x}")).collect();
    format!("[{}]", v.join(", "))
}

/// Tell SSL_write, SSL_do_handshake and SSL_read apart among the functions with ssl_lib.cc
/// error sites. `plt_name` names the import a call target's PLT stub jumps to.
pub(crate) fn identify(
    funcs: &[FuncSummary],
    err_put: u64,
    plt_name: &dyn Fn(u64) -> Option<String>,
) -> Result<Identified, FindError> {
    let by_start: HashMap<u64, &FuncSummary> = funcs.iter().map(|f| (f.start, f)).collect();
    let handshakes: Vec<u64> =
        funcs.iter().filter(|f| f.has_reasons(err_put, SSL_DO_HANDSHAKE_REASONS)).map(|f| f.start).collect();

    // SSL_write: its reason codes, and it calls exactly one [0x86] function.
    let writes: Vec<&FuncSummary> = funcs.iter().filter(|f| f.has_reasons(err_put, SSL_WRITE_REASONS)).collect();
    if writes.len() != 1 {
        return Err(FindError::Candidates {
            function: "SSL_write",
            count: writes.len(),
            detail: format!(
                "functions whose error reasons are {}: {}",
                hex_list(SSL_WRITE_REASONS),
                list(&writes.iter().map(|f| f.start).collect::<Vec<_>>())
            ),
        });
    }
    let write = writes[0];
    let mut called: Vec<u64> = handshakes.iter().copied().filter(|h| write.calls_to(*h)).collect();
    called.dedup();
    if called.len() != 1 {
        return Err(FindError::Candidates {
            function: "SSL_do_handshake",
            count: called.len(),
            detail: format!(
                "functions with the single error reason 0x86 that SSL_write ({:#x}) calls; all 0x86 functions: {}",
                write.start,
                list(&handshakes)
            ),
        });
    }
    let handshake = called[0];

    // SSL_read / SSL_peek: [0x42], then calls: read routine (which calls SSL_do_handshake),
    // memcpy, and (SSL_read only) an internal consume routine.
    let is_memcpy = |t: u64| matches!(plt_name(t).as_deref(), Some("memcpy" | "__memcpy_chk" | "memmove"));
    let mut reads = Vec::new();
    let mut peeks = Vec::new();
    for f in funcs.iter().filter(|f| f.has_reasons(err_put, SSL_READ_REASONS)) {
        let calls: Vec<u64> = f.calls.iter().copied().filter(|&t| t != err_put).collect();
        let Some(ri) = calls.iter().position(|t| {
            *t != handshake && by_start.get(t).is_some_and(|r| r.calls_to(handshake) && !r.sites.is_empty())
        }) else {
            continue;
        };
        let Some(mi) = calls[ri + 1..].iter().position(|&t| is_memcpy(t)).map(|i| i + ri + 1) else {
            continue;
        };
        // Any internal (non-PLT) call after memcpy is the consume routine; PLT calls there
        // are abort/__stack_chk_fail.
        let consume = calls[mi + 1..].iter().any(|&t| plt_name(t).is_none() && t != calls[ri]);
        if consume { reads.push((f.start, calls[ri])) } else { peeks.push(f.start) }
    }
    if reads.len() != 1 {
        return Err(FindError::Candidates {
            function: "SSL_read",
            count: reads.len(),
            detail: format!(
                "functions with the single reason 0x42 calling a read routine that calls SSL_do_handshake, then memcpy, \
                 then a consume routine: {}; look-alikes without the consume call (SSL_peek): {}",
                list(&reads.iter().map(|r| r.0).collect::<Vec<_>>()),
                list(&peeks)
            ),
        });
    }
    let (read, read_impl) = reads[0];
    // SSL_peek, when present, must share the read routine.
    let peek = match peeks.as_slice() {
        [] => None,
        [p] => Some(*p),
        _ => None,
    };
    if let Some(p) = peek {
        let shares = by_start.get(&p).is_some_and(|f| f.calls_to(read_impl));
        if !shares {
            return Err(FindError::Verification(format!(
                "SSL_peek look-alike {p:#x} does not call SSL_read's read routine {read_impl:#x}"
            )));
        }
    }
    let distinct = [write.start, read, handshake];
    if distinct[0] == distinct[1] || distinct[1] == distinct[2] || distinct[0] == distinct[2] {
        return Err(FindError::Verification(format!("the three functions are not distinct: {}", list(&distinct))));
    }
    let detail = format!(
        "SSL_write {:#x} reasons {} calls SSL_do_handshake {handshake:#x} (reason 0x86; {} such \
         functions); SSL_read {read:#x} reason 0x42 calls read routine {read_impl:#x} (which calls SSL_do_handshake), \
         memcpy, consume; SSL_peek {}",
        write.start,
        hex_list(SSL_WRITE_REASONS),
        handshakes.len(),
        peek.map(|p| format!("{p:#x}")).unwrap_or_else(|| format!("not identified ({} look-alikes)", peeks.len())),
    );
    Ok(Identified {
        ssl_write: write.start,
        ssl_read: read,
        ssl_do_handshake: handshake,
        ssl_peek: peek,
        read_impl,
        detail,
    })
}

/// Error sites found and grouped into functions.
pub(crate) struct Analysis {
    pub funcs: Vec<FuncSummary>,
    pub err_put: u64,
    pub sites: usize,
    /// Sites whose function could not be delimited, with the reason.
    pub unresolved: Vec<(u64, String)>,
    /// Direct callers of every function start considered.
    pub callers: HashMap<u64, usize>,
    /// Whether each chosen function start follows int3 padding (else it was chosen because
    /// it is a direct call target).
    pub padded: HashMap<u64, bool>,
}

/// Steps 3-5: sites -> functions -> summaries.
pub(crate) fn analyse_text(text: Text, target: u64) -> Result<Analysis, FindError> {
    let sites = scan_rip_lea(text.bytes, text.vaddr, target);
    if sites.is_empty() {
        return Err(FindError::NoErrorSites);
    }
    let per_site: Vec<Vec<u64>> = sites.iter().map(|&s| start_candidates(text, s)).collect();
    let mut all: Vec<u64> = per_site.iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    let counts = count_direct_calls(text.bytes, text.vaddr, &all);
    let callers: HashMap<u64, usize> = all.iter().copied().zip(counts).collect();

    let mut unresolved = Vec::new();
    let mut groups: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (&site, cands) in sites.iter().zip(&per_site) {
        match cands.iter().find(|&&c| text.is_padded(c) || callers.get(&c).copied().unwrap_or(0) > 0) {
            Some(&start) => groups.entry(start).or_default().push(site),
            None => unresolved.push((site, "no function start found before it".to_string())),
        }
    }
    let starts: Vec<u64> = groups.keys().copied().collect();
    let mut funcs = Vec::new();
    for (i, (&start, group)) in groups.iter().enumerate() {
        let next_start = starts.get(i + 1).copied().unwrap_or(u64::MAX);
        let limit = next_start.min(start + MAX_FUNCTION_BYTES).min(text.end());
        let func = match follow_function(text, start, limit) {
            Ok(f) => f,
            Err(e) => {
                unresolved.extend(group.iter().map(|&s| (s, format!("function at {start:#x}: {e}"))));
                continue;
            }
        };
        let mut ok = true;
        for &s in group {
            let is_lea = func.insns.get(&s).is_some_and(|i| {
                i.code() == Code::Lea_r64_m && i.is_ip_rel_memory_operand() && i.ip_rel_memory_address() == target
            });
            if !is_lea {
                unresolved.push((s, format!("not reached from the function start {start:#x}")));
                ok = false;
            }
        }
        if !ok {
            continue;
        }
        // Every lea of the string the decode found (it may also reach sites grouped elsewhere
        // through a jump; those then belong to both and the reason lists show it).
        let site_addrs: Vec<u64> = func
            .insns
            .iter()
            .filter(|(_, i)| {
                i.code() == Code::Lea_r64_m && i.is_ip_rel_memory_operand() && i.ip_rel_memory_address() == target
            })
            .map(|(&a, _)| a)
            .collect();
        let sites: Vec<ErrorSite> = site_addrs.iter().map(|&a| parse_site(text, &func, a)).collect();
        funcs.push(FuncSummary { start, sites, calls: func.calls() });
    }
    // ERR_put_error: the function most sites call.
    let mut votes: HashMap<u64, usize> = HashMap::new();
    for s in funcs.iter().flat_map(|f| &f.sites) {
        if let (Some(c), Some(ERR_LIB_SSL)) = (s.call, s.lib) {
            *votes.entry(c).or_default() += 1;
        }
    }
    let Some((&err_put, _)) = votes.iter().max_by_key(|(a, n)| (**n, std::cmp::Reverse(**a))) else {
        return Err(FindError::Verification(format!(
            "none of the {} ssl_lib.cc sites is a recognisable ERR_put_error(0x10, ...) call",
            sites.len()
        )));
    };
    let padded = starts.iter().map(|&s| (s, text.is_padded(s))).collect();
    Ok(Analysis { funcs, err_put, sites: sites.len(), unresolved, callers, padded })
}

// ---------------------------------------------------------------------------------------
// The public entry points.
// ---------------------------------------------------------------------------------------

/// Find BoringSSL's SSL_write, SSL_read and SSL_do_handshake in a stripped x86-64 binary.
/// Takes a second or two for a 300 MB Chromium; see [`find_cached`].
pub fn find_boringssl(path: &Path) -> Result<BoringSslOffsets, FindError> {
    let t0 = Instant::now();
    let map = Mapped::open(path)?;
    let elf = Elf::parse(path, map.bytes(), true)?;
    let (ro_addr, rodata) = elf.rodata.ok_or(FindError::SectionMissing(".rodata"))?;
    let (text_addr, text_bytes) = elf.text.ok_or(FindError::SectionMissing(".text"))?;
    let hits = find_c_string(rodata, SSL_LIB_CC);
    let string_vaddr = match hits.as_slice() {
        [] => return Err(FindError::StringMissing),
        [one] => ro_addr + *one as u64,
        more => return Err(FindError::StringNotUnique(more.len())),
    };
    let text = Text { bytes: text_bytes, vaddr: text_addr };
    let analysis = analyse_text(text, string_vaddr)?;
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
    let hits = find_c_string(rodata, SSL_LIB_CC);
    let [one] = hits.as_slice() else {
        return Err(if hits.is_empty() { FindError::StringMissing } else { FindError::StringNotUnique(hits.len()) });
    };
    let string_vaddr = ro_addr + *one as u64;
    let text = Text { bytes: text_bytes, vaddr: text_addr };
    let a = analyse_text(text, string_vaddr)?;
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

/// What the cache holds for one build-id: the offsets, or why they could not be found.
#[derive(Debug, Serialize, Deserialize)]
struct CacheEntry {
    build_id: String,
    finder_version: u32,
    #[serde(default)]
    found: Option<BoringSslOffsets>,
    #[serde(default)]
    error: Option<String>,
}

fn cache_file(cache_dir: &Path, build_id: &str) -> PathBuf {
    cache_dir.join(format!("{build_id}.v{FINDER_VERSION}.json"))
}

/// A cached result is used only when its offsets still hold the prologue in this file.
fn cached_offsets_hold(path: &Path, o: &BoringSslOffsets) -> bool {
    use std::os::unix::fs::FileExt as _;
    let Ok(f) = File::open(path) else { return false };
    [o.ssl_write, o.ssl_read, o.ssl_do_handshake].iter().all(|&off| {
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b, off).is_ok() && b == PROLOGUE
    })
}

fn write_cache(cache_dir: &Path, entry: &CacheEntry) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(cache_dir)?;
    let final_path = cache_file(cache_dir, &entry.build_id);
    let tmp = cache_dir.join(format!(".{}.{}.tmp", entry.build_id, std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &final_path)
}

/// Offsets decide where breakpoints go in a browser: only a cache that nobody else can write
/// is trusted (owned by us, not group/world-writable, not a symlink).
fn trusted(p: &Path) -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    std::fs::symlink_metadata(p).is_ok_and(|m| m.uid() == euid && m.mode() & 0o022 == 0 && !m.file_type().is_symlink())
}

/// [`find_boringssl`] with a cache in `cache_dir` (e.g. [`DEFAULT_CACHE_DIR`]) keyed by the
/// file's build-id and the finder's version. Deterministic failures are cached too (returned
/// as [`FindError::CachedFailure`]). A cache that cannot be written is logged, not fatal.
pub fn find_cached(path: &Path, cache_dir: &Path) -> Result<BoringSslOffsets, FindError> {
    let build_id = build_id(path)?;
    let file = cache_file(cache_dir, &build_id);
    if cache_dir.exists() && !trusted(cache_dir) {
        tracing::warn!("boringssl cache {} is not owned by us or is writable by others: not used", cache_dir.display());
        return find_boringssl(path);
    }
    if trusted(&file)
        && let Ok(bytes) = std::fs::read(&file)
    {
        match serde_json::from_slice::<CacheEntry>(&bytes) {
            Ok(entry) if entry.build_id == build_id && entry.finder_version == FINDER_VERSION => {
                if let Some(mut found) = entry.found {
                    if found.build_id == build_id && cached_offsets_hold(path, &found) {
                        found.path = path.to_path_buf();
                        found.from_cache = true;
                        return Ok(found);
                    }
                    tracing::warn!(
                        "boringssl cache {} does not match {}: analysing again",
                        file.display(),
                        path.display()
                    );
                } else if let Some(error) = entry.error {
                    return Err(FindError::CachedFailure { build_id, error });
                }
            }
            _ => tracing::warn!("boringssl cache {} unreadable: analysing again", file.display()),
        }
    }
    let result = find_boringssl(path);
    let entry = match &result {
        Ok(found) => Some(CacheEntry {
            build_id: build_id.clone(),
            finder_version: FINDER_VERSION,
            found: Some(found.clone()),
            error: None,
        }),
        Err(e) if e.is_deterministic() => Some(CacheEntry {
            build_id: build_id.clone(),
            finder_version: FINDER_VERSION,
            found: None,
            error: Some(e.to_string()),
        }),
        Err(_) => None,
    };
    if let Some(entry) = entry
        && let Err(e) = write_cache(cache_dir, &entry)
    {
        tracing::warn!("cannot write the boringssl cache in {}: {e}", cache_dir.display());
    }
    result
}

/// Whether an executable looks like a Chromium-family browser: a known name, or Chromium's
/// data files next to it (Electron apps have arbitrary names but ship these).
fn looks_like_chromium(exe: &Path) -> bool {
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

#[cfg(test)]
mod tests;
