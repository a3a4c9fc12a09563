//! Finding freebl's `AES_AEAD`, `ChaCha20Poly1305_Encrypt` and `ChaCha20Poly1305_Decrypt` in
//! NSS's `libfreeblpriv3.so`: where Firefox's QUIC (neqo, through nss-rs's `blapi` backend)
//! seals and opens every packet (issue 22).
//!
//! They are not exported. `FREEBL_GetVector` (exported) returns the address of freebl's
//! function table, `FREEBLVectorStr` (`lib/freebl/loader.h`): a `u16` length and a `u16`
//! version, then one pointer per function in a fixed, append-only order; nss-rs reads the same
//! slots. The finder decodes `FREEBL_GetVector` up to its `ret` and takes the last
//! `lea rax, [rip + X]` into a data section as the table, checks its version (3.x) and that its
//! length covers the slots, reads the three slots (in place, as RELR libraries keep them, or a
//! RELATIVE relocation's addend), and checks each target is a function start in `.text`.
use std::{collections::HashMap, path::Path};

use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Mnemonic, OpKind, Register};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};
use serde::Serialize;

/// The functions wanted, and their slots in `FREEBLVectorStr` (pointer index after the 4-byte
/// length and version header, padded to 8).
pub const CHACHA_ENCRYPT: &str = "ChaCha20Poly1305_Encrypt";
pub const CHACHA_DECRYPT: &str = "ChaCha20Poly1305_Decrypt";
pub const AES_AEAD: &str = "AES_AEAD";
pub const SLOTS: [(&str, usize); 3] = [(CHACHA_ENCRYPT, 234), (CHACHA_DECRYPT, 235), (AES_AEAD, 236)];

const R_X86_64_RELATIVE: u32 = 8;

/// Where the three functions are in one `libfreeblpriv3.so`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FreeblOffsets {
    /// (function, file offset, virtual address), in [`SLOTS`] order.
    pub functions: Vec<(&'static str, u64, u64)>,
    /// The table's address, length and version.
    pub method: String,
}

impl FreeblOffsets {
    pub fn offset_of(&self, function: &str) -> Option<u64> {
        self.functions.iter().find(|f| f.0 == function).map(|f| f.1)
    }
}

/// The file of `path`'s NSS that holds freebl: beside it, or in an `nss/` directory beside it
/// (Debian's system NSS).
pub fn beside(lib: &Path) -> Option<std::path::PathBuf> {
    let dir = lib.parent()?;
    [dir.join("libfreeblpriv3.so"), dir.join("nss/libfreeblpriv3.so")].into_iter().find(|p| p.is_file())
}

/// Find the three functions in the `libfreeblpriv3.so` at `path`. The error says what was
/// wrong.
pub fn find_freebl(path: &Path) -> Result<FreeblOffsets, String> {
    let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    find_in(&data)
}

pub fn find_in(data: &[u8]) -> Result<FreeblOffsets, String> {
    let file = object::File::parse(data).map_err(|e| format!("not an ELF file: {e}"))?;
    if file.architecture() != object::Architecture::X86_64 {
        return Err(format!("architecture {:?}", file.architecture()));
    }
    let text = file.section_by_name(".text").ok_or("no .text section")?;
    let (text_addr, text_len) = (text.address(), text.size());
    let text_bytes = text.data().map_err(|e| format!(".text: {e}"))?;
    let datas: Vec<(u64, &[u8])> = [".data.rel.ro", ".data"]
        .into_iter()
        .filter_map(|n| file.section_by_name(n))
        .filter_map(|s| Some((s.address(), s.data().ok()?)))
        .collect();
    let mut relative = HashMap::new();
    if let Some(relocs) = file.dynamic_relocations() {
        for (slot, r) in relocs {
            if matches!(r.flags(), object::RelocationFlags::Elf { r_type } if r_type == R_X86_64_RELATIVE) {
                relative.insert(slot, r.addend() as u64);
            }
        }
    }
    let get_vector = file
        .dynamic_symbols()
        .find(|s| s.name() == Ok("FREEBL_GetVector") && s.is_definition())
        .ok_or("no FREEBL_GetVector: not NSS's freebl")?
        .address();
    let in_text = |a: u64| a >= text_addr && a < text_addr + text_len;
    if !in_text(get_vector) {
        return Err(format!("FREEBL_GetVector {get_vector:#x} is outside .text"));
    }
    let in_data = |a: u64| datas.iter().find(|(b, d)| a >= *b && a < b + d.len() as u64).map(|(b, d)| &d[(a - b) as usize..]);
    // Its code up to the ret: the last rip-relative lea into rax of a data address.
    let mut dec = Decoder::with_ip(64, &text_bytes[(get_vector - text_addr) as usize..], get_vector, DecoderOptions::NONE);
    let mut table = None;
    for _ in 0..64 {
        let ins = dec.decode();
        if ins.is_invalid() {
            break;
        }
        if ins.code() == Code::Lea_r64_m && ins.op0_register() == Register::RAX && ins.is_ip_rel_memory_operand() {
            let t = ins.ip_rel_memory_address();
            if in_data(t).is_some() {
                table = Some(t);
            }
        }
        if ins.flow_control() == FlowControl::Return {
            break;
        }
    }
    let table = table.ok_or("FREEBL_GetVector loads no table address into rax before its ret")?;
    let head = in_data(table).filter(|b| b.len() >= 4).ok_or("the table is cut")?;
    let (length, version) = (u16::from_le_bytes([head[0], head[1]]) as usize, u16::from_le_bytes([head[2], head[3]]));
    if version >> 8 != 3 {
        return Err(format!("table at {table:#x}: version {version:#06x}, not 3.x"));
    }
    let slot = |i: usize| -> Result<(u64, &'static str), String> {
        let at = table + 8 + 8 * i as u64;
        if 8 + 8 * (i + 1) > length {
            return Err(format!("table at {table:#x}: length {length} does not reach slot {i}"));
        }
        if let Some(&a) = relative.get(&at) {
            return Ok((a, "rela"));
        }
        let b = in_data(at).filter(|b| b.len() >= 8).ok_or_else(|| format!("slot {i} at {at:#x} is cut"))?;
        Ok((u64::from_le_bytes(b[..8].try_into().unwrap()), "in place"))
    };
    let mut functions = Vec::new();
    let mut how = "";
    for (name, i) in SLOTS {
        let (a, h) = slot(i)?;
        how = h;
        if !in_text(a) {
            return Err(format!("{name}: slot {i} points at {a:#x}, outside .text"));
        }
        check_function(text_bytes, text_addr, a).map_err(|e| format!("{name}: {e}"))?;
        let off = file
            .segments()
            .find_map(|s| {
                let (fo, fs) = s.file_range();
                (a >= s.address() && a - s.address() < fs).then(|| a - s.address() + fo)
            })
            .ok_or_else(|| format!("{name}: {a:#x} is in no load segment"))?;
        functions.push((name, off, a));
    }
    if functions[0].2 == functions[1].2 || functions[1].2 == functions[2].2 || functions[0].2 == functions[2].2 {
        return Err(format!("the three slots do not point at three functions: {functions:x?}"));
    }
    let method = format!("FREEBL_GetVector {get_vector:#x} -> table {table:#x} (length {length}, version {version:#06x}), slots read {how}");
    Ok(FreeblOffsets { functions, method })
}

/// A function's first byte: 16-byte aligned, after padding, a ret or an unconditional jump (the
/// previous function's last instruction; Debian's NSS 3.87 packs its functions so), starting
/// with a push, `sub rsp` or `endbr64`.
fn check_function(text: &[u8], text_addr: u64, a: u64) -> Result<(), String> {
    if !a.is_multiple_of(16) {
        return Err(format!("{a:#x} is not 16-byte aligned"));
    }
    let i = (a - text_addr) as usize;
    let after_jmp = (i >= 2 && text[i - 2] == 0xeb) || (i >= 5 && text[i - 5] == 0xe9);
    if i > 0 && !matches!(text[i - 1], 0xcc | 0x90 | 0x00 | 0xc3) && !after_jmp {
        return Err(format!("the byte before {a:#x} ({:#04x}) is no padding, ret or jmp", text[i - 1]));
    }
    let ins = Decoder::with_ip(64, &text[i..], a, DecoderOptions::NONE).decode();
    let starts = ins.code() == Code::Endbr64
        || ins.mnemonic() == Mnemonic::Push && ins.op0_kind() == OpKind::Register
        || ins.mnemonic() == Mnemonic::Sub && ins.op0_kind() == OpKind::Register && ins.op0_register() == Register::RSP;
    if !starts {
        return Err(format!("{a:#x} starts with {:?}, not push/sub rsp/endbr64", ins.mnemonic()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Firefox ESR 153's bundled freebl (RELR: slots in place): the table at 0xfed98, version
    /// 3.50, and the three functions where objdump shows them (the ChaCha ones check a
    /// 12-byte nonce first: `cmpl $0xc, 0x58(%rsp)`).
    #[test]
    fn finds_the_aead_functions_in_firefoxs_freebl() {
        let path = Path::new("/usr/lib/firefox-esr/libfreeblpriv3.so");
        if !path.is_file() {
            eprintln!("{} is not installed: skipped", path.display());
            return;
        }
        let f = find_freebl(path).unwrap();
        eprintln!("{f:x?}");
        assert!(f.method.contains("table 0xfed98") && f.method.contains("in place"), "{}", f.method);
        let vaddrs: Vec<u64> = f.functions.iter().map(|x| x.2).collect();
        assert_eq!(vaddrs, [0x33530, 0x33640, 0x77480]);
        let data = std::fs::read(path).unwrap();
        for (name, off, _) in &f.functions {
            assert!(matches!(data[*off as usize], 0x55 | 0x41 | 0x53), "{name} at {off:#x}");
        }
        assert_eq!(beside(Path::new("/usr/lib/firefox-esr/libssl3.so")).as_deref(), Some(path));
    }

    /// Debian's system NSS keeps freebl under `nss/` (RELA: slots by relocation).
    #[test]
    fn finds_the_aead_functions_in_the_system_freebl() {
        let Some(path) = beside(Path::new("/usr/lib/x86_64-linux-gnu/libssl3.so")) else {
            eprintln!("no system freebl: skipped");
            return;
        };
        let f = find_freebl(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("{f:x?}");
        assert_eq!(f.functions.len(), 3);
        if f.method.contains("version 0x0325") {
            // Debian 12's NSS 3.87: table at 0xb7220 by RELATIVE relocations.
            let vaddrs: Vec<u64> = f.functions.iter().map(|x| x.2).collect();
            assert_eq!(vaddrs, [0x16370, 0x16440, 0x1c6d0], "{}", f.method);
            assert!(f.method.contains("rela"), "{}", f.method);
        }
    }

    #[test]
    fn other_files_say_what_is_missing() {
        assert!(find_in(b"not an ELF file").unwrap_err().contains("not an ELF"));
        let e = find_freebl(Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")).unwrap_err();
        assert!(e.contains("no FREEBL_GetVector"), "{e}");
        assert!(find_freebl(Path::new("/nonexistent/libfreeblpriv3.so")).unwrap_err().starts_with("reading"));
        let text = [0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0x55, 0x48, 0x89, 0xe5, 0x48, 0x89, 0xe5];
        assert!(check_function(&text, 0x1000, 0x1010).is_ok());
        assert!(check_function(&text, 0x1000, 0x1011).unwrap_err().contains("aligned"));
        let mut t2 = text;
        t2[15] = 0x48;
        t2[14] = 0x48;
        assert!(check_function(&t2, 0x1000, 0x1010).unwrap_err().contains("no padding"));
        let mut t3 = text;
        t3[16] = 0x48;
        assert!(check_function(&t3, 0x1000, 0x1010).unwrap_err().contains("not push"));
    }
}
