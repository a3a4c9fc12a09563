//! Finding NSS's `SSL_AeadEncrypt` and `SSL_AeadDecrypt` in a `libssl3.so`: where Firefox's
//! QUIC (neqo, through its NSS bindings) seals and opens every packet (issue 22).
//!
//! They are not exported. `SSL_GetExperimentalAPI` (exported) finds them by name in the
//! array `ssl_experimental_functions[] = { {"SSL_" #name, fn}, ... }` (`sslexp.c`): pairs of
//! pointers, a name in `.rodata` then the function in `.text`, in `.data` or `.data.rel.ro`.
//! In a library linked with RELR packed relocations (Firefox ESR's bundled NSS) each slot
//! holds its link-time address in place; with RELA relocations (Debian's system NSS) the slot
//! is zero in the file and its `R_X86_64_RELATIVE` relocation's addend is the address. The
//! finder:
//!
//! 1. finds each name as a C string in `.rodata` (also as the tail of a longer string);
//! 2. finds the one 8-byte aligned slot in `.data`/`.data.rel.ro` whose value is that string's
//!    address (exactly one over all the string's places), and reads the next slot as the
//!    function;
//! 3. checks the table around it: the entries before and after also pair a pointer to an
//!    `SSL_` name with a pointer into `.text`;
//! 4. checks the function: inside `.text`, 16-byte aligned, preceded by padding (int3, a NOP's
//!    last byte) or a `ret`, and its first instruction one a function starts with (`push`,
//!    `sub rsp`, `endbr64`).
//!
//! Errors name what was wrong; a library where they fail keeps its other probes (`tls_nss`).
use std::{collections::HashMap, path::Path};

use iced_x86::{Code, Decoder, DecoderOptions, Mnemonic, OpKind, Register};
use object::{Object, ObjectSection, ObjectSegment};
use serde::Serialize;

/// The functions wanted, by their names in the table.
pub const ENCRYPT: &str = "SSL_AeadEncrypt";
pub const DECRYPT: &str = "SSL_AeadDecrypt";

/// `R_X86_64_RELATIVE`.
const R_X86_64_RELATIVE: u32 = 8;

/// Where the two functions are in one `libssl3.so`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NssAeadOffsets {
    /// File offsets, for uprobes.
    pub encrypt: u64,
    pub decrypt: u64,
    /// Virtual addresses (what `objdump` shows).
    pub encrypt_vaddr: u64,
    pub decrypt_vaddr: u64,
    /// Where each table entry is (virtual address) and how its slots were read.
    pub method: String,
}

impl NssAeadOffsets {
    pub fn offset_of(&self, function: &str) -> Option<u64> {
        match function {
            ENCRYPT => Some(self.encrypt),
            DECRYPT => Some(self.decrypt),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NssAeadError {
    #[error("reading {0}")]
    Io(String),
    #[error("not an x86-64 ELF file: {0}")]
    NotElf(String),
    #[error("no {0} section")]
    SectionMissing(&'static str),
    #[error("no string \"{0}\" in .rodata: not an NSS with the experimental AEAD API")]
    NameMissing(&'static str),
    #[error("no pointer to \"{name}\" in .data/.data.rel.ro (the string is at {places})")]
    EntryMissing { name: &'static str, places: String },
    #[error("{count} pointers to \"{name}\" in .data/.data.rel.ro, expected 1 ({slots})")]
    EntryNotUnique { name: &'static str, count: usize, slots: String },
    #[error("{0}")]
    Table(String),
    #[error("{name}: {why}")]
    Function { name: &'static str, why: String },
}

/// The data sections a table may be in: (address, bytes).
struct Sections<'a> {
    rodata: (u64, &'a [u8]),
    text: (u64, &'a [u8]),
    data: Vec<(u64, &'a [u8])>,
    /// Slot address -> addend of its R_X86_64_RELATIVE relocation (RELA libraries).
    relative: HashMap<u64, u64>,
    loads: Vec<(u64, u64, u64)>,
}

impl Sections<'_> {
    /// The pointer a slot holds once relocated: its RELATIVE relocation's addend, else the
    /// value in place (RELR, or no relocation).
    fn slot(&self, addr: u64) -> Option<(u64, &'static str)> {
        if let Some(&a) = self.relative.get(&addr) {
            return Some((a, "rela"));
        }
        for &(base, bytes) in &self.data {
            if addr >= base && addr + 8 <= base + bytes.len() as u64 {
                let i = (addr - base) as usize;
                return Some((u64::from_le_bytes(bytes[i..i + 8].try_into().ok()?), "in place"));
            }
        }
        None
    }

    fn in_rodata(&self, a: u64) -> bool {
        a >= self.rodata.0 && a < self.rodata.0 + self.rodata.1.len() as u64
    }

    fn in_text(&self, a: u64) -> bool {
        a >= self.text.0 && a < self.text.0 + self.text.1.len() as u64
    }

    /// The C string at `a` in .rodata.
    fn name_at(&self, a: u64) -> Option<&str> {
        if !self.in_rodata(a) {
            return None;
        }
        let rest = &self.rodata.1[(a - self.rodata.0) as usize..];
        let end = rest.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&rest[..end]).ok()
    }

    fn file_offset(&self, vaddr: u64) -> Option<u64> {
        self.loads.iter().find(|(va, _, sz)| vaddr >= *va && vaddr - va < *sz).map(|(va, off, _)| vaddr - va + off)
    }
}

fn hexes(v: &[u64]) -> String {
    v.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>().join(", ")
}

/// Find `SSL_AeadEncrypt` and `SSL_AeadDecrypt` in the `libssl3.so` at `path`.
pub fn find_nss_aead(path: &Path) -> Result<NssAeadOffsets, NssAeadError> {
    let data = std::fs::read(path).map_err(|e| NssAeadError::Io(format!("{}: {e}", path.display())))?;
    find_in(&data)
}

/// [`find_nss_aead`] on the file's bytes.
pub fn find_in(data: &[u8]) -> Result<NssAeadOffsets, NssAeadError> {
    let file = object::File::parse(data).map_err(|e| NssAeadError::NotElf(e.to_string()))?;
    if file.format() != object::BinaryFormat::Elf || file.architecture() != object::Architecture::X86_64 {
        return Err(NssAeadError::NotElf(format!("{:?} {:?}", file.format(), file.architecture())));
    }
    let section = |name: &'static str| -> Result<(u64, &[u8]), NssAeadError> {
        let s = file.section_by_name(name).ok_or(NssAeadError::SectionMissing(name))?;
        let (off, size) = s.file_range().ok_or(NssAeadError::SectionMissing(name))?;
        let bytes = data.get(off as usize..(off + size) as usize).ok_or(NssAeadError::SectionMissing(name))?;
        Ok((s.address(), bytes))
    };
    let rodata = section(".rodata")?;
    let text = section(".text")?;
    let data_sections: Vec<(u64, &[u8])> = [".data.rel.ro", ".data"].into_iter().filter_map(|n| section(n).ok()).collect();
    if data_sections.is_empty() {
        return Err(NssAeadError::SectionMissing(".data"));
    }
    let mut relative = HashMap::new();
    if let Some(relocs) = file.dynamic_relocations() {
        for (slot, r) in relocs {
            if let object::RelocationFlags::Elf { r_type } = r.flags()
                && r_type == R_X86_64_RELATIVE
            {
                relative.insert(slot, r.addend() as u64);
            }
        }
    }
    let loads = file
        .segments()
        .map(|s| {
            let (off, size) = s.file_range();
            (s.address(), off, size)
        })
        .collect();
    let s = Sections { rodata, text, data: data_sections, relative, loads };
    let (enc_entry, enc, enc_how) = entry(&s, ENCRYPT)?;
    let (dec_entry, dec, dec_how) = entry(&s, DECRYPT)?;
    if enc == dec {
        return Err(NssAeadError::Table(format!("{ENCRYPT} and {DECRYPT} point at the same function {enc:#x}")));
    }
    let mut offsets = [0u64; 2];
    for (i, (name, a)) in [(ENCRYPT, enc), (DECRYPT, dec)].into_iter().enumerate() {
        check_function(&s, a).map_err(|why| NssAeadError::Function { name, why })?;
        offsets[i] = s.file_offset(a).ok_or_else(|| NssAeadError::Function { name, why: format!("{a:#x} is in no load segment") })?;
    }
    let method = format!(
        "ssl_experimental_functions entries: {ENCRYPT} at {enc_entry:#x} ({enc_how}) -> {enc:#x}, {DECRYPT} at {dec_entry:#x} ({dec_how}) -> {dec:#x}"
    );
    Ok(NssAeadOffsets { encrypt: offsets[0], decrypt: offsets[1], encrypt_vaddr: enc, decrypt_vaddr: dec, method })
}

/// The table entry naming `name`: (entry address, function address, how the slots were read).
fn entry(s: &Sections, name: &'static str) -> Result<(u64, u64, &'static str), NssAeadError> {
    let needle = name.as_bytes();
    let places: Vec<u64> = memchr::memmem::find_iter(s.rodata.1, needle)
        .filter(|&i| s.rodata.1.get(i + needle.len()) == Some(&0))
        .map(|i| s.rodata.0 + i as u64)
        .collect();
    if places.is_empty() {
        return Err(NssAeadError::NameMissing(name));
    }
    let mut slots = Vec::new();
    for &(base, bytes) in &s.data {
        let mut a = base.next_multiple_of(8);
        while a + 16 <= base + bytes.len() as u64 {
            if s.slot(a).is_some_and(|(v, _)| places.contains(&v)) {
                slots.push(a);
            }
            a += 8;
        }
    }
    let slot = match slots.as_slice() {
        [] => return Err(NssAeadError::EntryMissing { name, places: hexes(&places) }),
        [one] => *one,
        more => return Err(NssAeadError::EntryNotUnique { name, count: more.len(), slots: hexes(more) }),
    };
    let (func, how) = s.slot(slot + 8).ok_or_else(|| NssAeadError::Table(format!("{name}: no slot after its entry at {slot:#x}")))?;
    if !s.in_text(func) {
        return Err(NssAeadError::Table(format!("{name}: the entry at {slot:#x} points at {func:#x}, outside .text")));
    }
    // The neighbours: {"SSL_...", function in .text} pairs too (the first and last entry of
    // the table have one neighbour each; a table of one entry is not this table).
    let neighbour = |at: u64| -> bool {
        let (Some((n, _)), Some((f, _))) = (s.slot(at), s.slot(at + 8)) else { return false };
        s.name_at(n).is_some_and(|n| n.starts_with("SSL_")) && s.in_text(f)
    };
    if !(neighbour(slot.wrapping_sub(16)) || neighbour(slot + 16)) {
        return Err(NssAeadError::Table(format!("{name}: the entry at {slot:#x} has no neighbouring {{\"SSL_...\", function}} entry")));
    }
    Ok((slot, func, how))
}

/// Whether `a` looks like a function's first byte (see the module documentation).
fn check_function(s: &Sections, a: u64) -> Result<(), String> {
    if !a.is_multiple_of(16) {
        return Err(format!("{a:#x} is not 16-byte aligned"));
    }
    let i = (a - s.text.0) as usize;
    if i > 0 && !matches!(s.text.1[i - 1], 0xcc | 0x90 | 0x00 | 0xc3) {
        return Err(format!("the byte before {a:#x} ({:#04x}) is no padding and no ret", s.text.1[i - 1]));
    }
    let mut dec = Decoder::with_ip(64, &s.text.1[i..], a, DecoderOptions::NONE);
    let ins = dec.decode();
    let starts = ins.code() == Code::Endbr64
        || ins.mnemonic() == Mnemonic::Push && ins.op0_kind() == OpKind::Register
        || ins.mnemonic() == Mnemonic::Sub && ins.op0_kind() == OpKind::Register && ins.op0_register() == Register::RSP;
    if !starts {
        return Err(format!("{a:#x} starts with {:?}, not push/sub rsp/endbr64", ins.mnemonic()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
