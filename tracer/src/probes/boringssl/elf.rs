//! The file: its bytes, load segments, build-id, and the sections the finder reads.
use std::{collections::HashMap, fs::File, path::Path};

use iced_x86::{Code, Decoder, DecoderOptions};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, ObjectSymbolTable};

use super::FindError;

/// A whole file, read into memory.
///
/// Not mmap: a file mapping always carries VM_MAYEXEC, so the kernel's uprobe_mmap writes
/// int3 breakpoints into *our* mapping at every offset any process has a uprobe on: with the
/// daemon (or a second one) attached to Chromium, the finder would read breakpoints where the
/// prologues are and find nothing. read() sees the page cache, which uprobes never modify.
/// The cost is the file's size in memory for the analysis (about 0.3 GB for Chromium, once per
/// build thanks to the cache).
pub(super) struct Mapped {
    data: Vec<u8>,
}

impl Mapped {
    pub(super) fn open(path: &Path) -> Result<Mapped, FindError> {
        let data = std::fs::read(path).map_err(|source| FindError::Io { path: path.to_path_buf(), source })?;
        if data.is_empty() {
            return Err(FindError::NotElf { path: path.to_path_buf(), reason: "empty file".into() });
        }
        Ok(Mapped { data })
    }

    pub(super) fn bytes(&self) -> &[u8] {
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

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The parts of the ELF file the finder reads.
pub(super) struct Elf<'a> {
    pub(super) data: &'a [u8],
    pub(super) build_id: String,
    pub(super) loads: Vec<Load>,
    pub(super) rodata: Option<(u64, &'a [u8])>,
    pub(super) text: Option<(u64, &'a [u8])>,
    /// GOT slot address -> dynamic symbol name (from .rela.plt / .rela.dyn).
    pub(super) got_names: HashMap<u64, String>,
}

impl<'a> Elf<'a> {
    pub(super) fn parse(path: &Path, data: &'a [u8], full: bool) -> Result<Elf<'a>, FindError> {
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
    pub(super) fn bytes_at(&self, vaddr: u64, len: usize) -> Option<&'a [u8]> {
        let off = vaddr_to_offset(&self.loads, vaddr)? as usize;
        self.data.get(off..off.checked_add(len)?)
    }

    /// The imported function a PLT stub jumps to: `[endbr64;] [bnd] jmp [rip + slot]`.
    pub(super) fn plt_name(&self, target: u64) -> Option<&str> {
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
