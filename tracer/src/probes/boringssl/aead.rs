//! Finding BoringSSL's `EVP_AEAD_CTX_seal` and `EVP_AEAD_CTX_open` in the same stripped
//! binaries: where Chromium's QUIC (quiche's `AeadBaseEncrypter::EncryptPacket` and
//! `AeadBaseDecrypter::DecryptPacket`) seals and opens every packet, so their arguments carry
//! the QUIC plaintext (issue 22).
//!
//! The same machinery as for `ssl_lib.cc` ([`super::identify::analyse_text`]), over the error
//! sites of `crypto/fipsmodule/cipher/aead.cc.inc`, whose reports pass `ERR_LIB_CIPHER` (30).
//! In the BoringSSL of Chromium 156 (the `CRYPTO_IOVEC` generation, December 2025 on) the
//! functions with error sites are, by reason set:
//!
//! | function | reasons | calls |
//! | --- | --- | --- |
//! | `EVP_AEAD_CTX_sealv` | TOO_LARGE, OUTPUT_ALIASES_INPUT, CTRL_NOT_IMPLEMENTED | the AEAD's `sealv` (indirect) |
//! | `EVP_AEAD_CTX_seal` | BUFFER_TOO_SMALL | `sealv`; 10 arguments (4 on the stack) |
//! | `EVP_AEAD_CTX_seal_scatter` | BUFFER_TOO_SMALL | `sealv`; 13 arguments (7 on the stack) |
//! | `EVP_AEAD_CTX_openv_detached` | TOO_LARGE, UNSUPPORTED_TAG_SIZE, OUTPUT_ALIASES_INPUT, CTRL_NOT_IMPLEMENTED | |
//! | `EVP_AEAD_CTX_openv` | TOO_LARGE, OUTPUT_ALIASES_INPUT, BAD_DECRYPT, CTRL_NOT_IMPLEMENTED | |
//! | `EVP_AEAD_CTX_open` | BAD_DECRYPT, BUFFER_TOO_SMALL, BUFFER_TOO_SMALL | `openv_detached` and `openv`; 10 arguments |
//!
//! (plus `EVP_AEAD_CTX_new`/`init`/`init_with_direction`/`tag_len`, which are not wanted).
//! `seal` and `seal_scatter` share their checks; their arity tells them apart (the highest
//! stack argument each reads). Then two checks against quiche's own code, found by its
//! source-path strings: the function that holds an `aead_base_decrypter.cc` site
//! (`DecryptPacket`'s QUIC_BUG) calls `open` directly, and a direct call of `seal` lies near
//! `aead_base_encrypter.cc`'s sites (the same translation unit: `Encrypt` and
//! `EncryptPacket`). Chromium's QUIC calls exactly these two (not the scatter/gather forms),
//! which is what makes them the place to probe.
//!
//! Anything else is an error naming what was seen; the TLS functions are unaffected (the
//! caller keeps them and reports QUIC plaintext unavailable with this reason).
use super::{
    PROLOGUE,
    control_flow::follow_function,
    elf::{Elf, offset_to_vaddr, vaddr_to_offset},
    identify::{Analysis, FuncSummary, analyse_text, list},
    scan::{Text, count_direct_calls, find_source_path, scan_rip_lea, start_candidates},
};
use serde::{Deserialize, Serialize};

/// `ERR_LIB_CIPHER` in BoringSSL's `err.h` (ERR_LIB_NONE = 1 ... ERR_LIB_SSL = 16 ...).
pub const ERR_LIB_CIPHER: u32 = 30;
/// `CIPHER_R_*` reason codes (`include/openssl/cipher.h`).
pub const CIPHER_R_BAD_DECRYPT: u32 = 101;
pub const CIPHER_R_BUFFER_TOO_SMALL: u32 = 103;
pub const CIPHER_R_CTRL_NOT_IMPLEMENTED: u32 = 104;
pub const CIPHER_R_OUTPUT_ALIASES_INPUT: u32 = 115;
pub const CIPHER_R_TOO_LARGE: u32 = 117;
pub const CIPHER_R_UNSUPPORTED_TAG_SIZE: u32 = 122;

pub const SEALV_REASONS: &[u32] = &[CIPHER_R_TOO_LARGE, CIPHER_R_OUTPUT_ALIASES_INPUT, CIPHER_R_CTRL_NOT_IMPLEMENTED];
pub const SEAL_REASONS: &[u32] = &[CIPHER_R_BUFFER_TOO_SMALL];
pub const OPENV_DETACHED_REASONS: &[u32] =
    &[CIPHER_R_TOO_LARGE, CIPHER_R_UNSUPPORTED_TAG_SIZE, CIPHER_R_OUTPUT_ALIASES_INPUT, CIPHER_R_CTRL_NOT_IMPLEMENTED];
pub const OPENV_REASONS: &[u32] = &[CIPHER_R_TOO_LARGE, CIPHER_R_OUTPUT_ALIASES_INPUT, CIPHER_R_BAD_DECRYPT, CIPHER_R_CTRL_NOT_IMPLEMENTED];
pub const OPEN_REASONS: &[u32] = &[CIPHER_R_BAD_DECRYPT, CIPHER_R_BUFFER_TOO_SMALL, CIPHER_R_BUFFER_TOO_SMALL];
/// Stack arguments of `EVP_AEAD_CTX_seal` and `EVP_AEAD_CTX_open` (10 arguments, 6 in
/// registers).
pub const SEAL_OPEN_STACK_ARGS: u32 = 4;

/// The source path of `aead.cc.inc` (any tree's prefix before it).
pub const AEAD_CC_SUFFIX: &[u8] = b"third_party/boringssl/src/crypto/fipsmodule/cipher/aead.cc.inc";
/// quiche's AEAD wrappers, whose QUIC_BUG sites load their file names.
pub const QUICHE_DECRYPTER_SUFFIX: &[u8] = b"quic/core/crypto/aead_base_decrypter.cc";
pub const QUICHE_ENCRYPTER_SUFFIX: &[u8] = b"quic/core/crypto/aead_base_encrypter.cc";
/// How far from an `aead_base_encrypter.cc` site a direct call of `seal` is looked for.
const ENCRYPTER_WINDOW: u64 = 16 * 1024;

/// Where `EVP_AEAD_CTX_seal` and `EVP_AEAD_CTX_open` are in one build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AeadOffsets {
    /// File offsets, for uprobes.
    pub seal: u64,
    pub open: u64,
    /// Virtual addresses (what `objdump` shows).
    pub seal_vaddr: u64,
    pub open_vaddr: u64,
    /// How they were found and verified, in one line.
    pub method: String,
}

/// The functions told apart by their reasons and calls (virtual addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AeadIdentified {
    pub seal: u64,
    pub open: u64,
    pub sealv: u64,
    pub openv: u64,
    pub openv_detached: u64,
    /// `seal_scatter`, when its look-alike was seen.
    pub seal_scatter: Option<u64>,
}

fn one(name: &str, found: &[&FuncSummary], what: &str) -> Result<u64, String> {
    match found {
        [f] => Ok(f.start),
        _ => Err(format!("{name}: {} candidates instead of 1 ({what}: {})", found.len(), list(&found.iter().map(|f| f.start).collect::<Vec<_>>()))),
    }
}

/// Tell `EVP_AEAD_CTX_seal` and `EVP_AEAD_CTX_open` apart among the functions with
/// `aead.cc.inc` error sites (see the module documentation).
pub(crate) fn identify_aead(funcs: &[FuncSummary], err_put: u64) -> Result<AeadIdentified, String> {
    let with_set = |want: &[u32]| -> Vec<&FuncSummary> { funcs.iter().filter(|f| f.has_reason_set(err_put, want)).collect() };
    let sealv = one("EVP_AEAD_CTX_sealv", &with_set(SEALV_REASONS), "reasons TOO_LARGE, OUTPUT_ALIASES_INPUT, CTRL_NOT_IMPLEMENTED")?;
    let seal_like: Vec<&FuncSummary> = with_set(SEAL_REASONS).into_iter().filter(|f| f.calls_to(sealv)).collect();
    let seals: Vec<&FuncSummary> = seal_like.iter().copied().filter(|f| f.stack_args == SEAL_OPEN_STACK_ARGS).collect();
    let seal = one("EVP_AEAD_CTX_seal", &seals, &format!("reason BUFFER_TOO_SMALL, calling sealv {sealv:#x}, 4 stack arguments"))
        .map_err(|e| format!("{e}; look-alikes' stack arguments: {:?}", seal_like.iter().map(|f| (f.start, f.stack_args)).collect::<Vec<_>>()))?;
    let seal_scatter = match seal_like.iter().filter(|f| f.start != seal).collect::<Vec<_>>().as_slice() {
        [s] => Some(s.start),
        _ => None,
    };
    let openv_detached = one(
        "EVP_AEAD_CTX_openv_detached",
        &with_set(OPENV_DETACHED_REASONS),
        "reasons TOO_LARGE, UNSUPPORTED_TAG_SIZE, OUTPUT_ALIASES_INPUT, CTRL_NOT_IMPLEMENTED",
    )?;
    let openv = one("EVP_AEAD_CTX_openv", &with_set(OPENV_REASONS), "reasons TOO_LARGE, OUTPUT_ALIASES_INPUT, BAD_DECRYPT, CTRL_NOT_IMPLEMENTED")?;
    let opens: Vec<&FuncSummary> = with_set(OPEN_REASONS)
        .into_iter()
        .filter(|f| f.calls_to(openv) && f.calls_to(openv_detached) && f.stack_args == SEAL_OPEN_STACK_ARGS)
        .collect();
    let open = one("EVP_AEAD_CTX_open", &opens, "reasons BAD_DECRYPT, BUFFER_TOO_SMALL x2, calling openv and openv_detached, 4 stack arguments")?;
    let all = [seal, open, sealv, openv, openv_detached];
    for (i, a) in all.iter().enumerate() {
        if all[i + 1..].contains(a) {
            return Err(format!("the AEAD functions are not distinct: {}", list(&all)));
        }
    }
    Ok(AeadIdentified { seal, open, sealv, openv, openv_detached, seal_scatter })
}

/// The functions of `text` that load `target` (a source path), each decoded from its start
/// (the nearest prologue that follows padding or is called directly) and holding the `lea`:
/// (site, function start, its direct calls). Sites whose function cannot be delimited are
/// left out.
fn functions_loading(text: Text, target: u64) -> Vec<(u64, u64, Vec<u64>)> {
    let mut out = Vec::new();
    for site in scan_rip_lea(text.bytes, text.vaddr, target) {
        let cands = start_candidates(text, site);
        let mut sorted = cands.clone();
        sorted.sort_unstable();
        let callers = count_direct_calls(text.bytes, text.vaddr, &sorted);
        let called = |c: u64| sorted.binary_search(&c).is_ok_and(|k| callers[k] > 0);
        let Some(&start) = cands.iter().find(|&&c| text.is_padded(c) || called(c)) else { continue };
        let limit = (start + super::MAX_FUNCTION_BYTES).min(text.end());
        let Ok(func) = follow_function(text, start, limit) else { continue };
        if func.insns.contains_key(&site) {
            out.push((site, start, func.calls()));
        }
    }
    out
}

/// Direct calls (`e8 rel32`) of `target` within `window` bytes of `around`.
fn calls_near(text: Text, around: u64, window: u64, target: u64) -> Vec<u64> {
    let lo = around.saturating_sub(window).max(text.vaddr);
    let hi = (around + window).min(text.end());
    let bytes = &text.bytes[(lo - text.vaddr) as usize..(hi - text.vaddr) as usize];
    memchr::memchr_iter(0xe8, bytes)
        .filter(|&j| j + 5 <= bytes.len())
        .filter_map(|j| {
            let rel = i32::from_le_bytes(bytes[j + 1..j + 5].try_into().unwrap());
            let at = lo + j as u64;
            ((at + 5).wrapping_add(rel as i64 as u64) == target).then_some(at)
        })
        .collect()
}

/// One source path's string in `.rodata`, exactly once: its virtual address.
fn unique_string(rodata: &[u8], ro_addr: u64, suffix: &[u8]) -> Result<u64, String> {
    match find_source_path(rodata, suffix).as_slice() {
        [] => Err(format!("no string \"../…/{}\" in .rodata", String::from_utf8_lossy(suffix))),
        [one] => Ok(ro_addr + *one as u64),
        more => Err(format!("the string \"../…/{}\" is in .rodata {} times, expected once", String::from_utf8_lossy(suffix), more.len())),
    }
}

/// Find, identify and verify `EVP_AEAD_CTX_seal` and `EVP_AEAD_CTX_open` in `elf` (whose
/// TLS functions were found already). The error says what was wrong.
pub(crate) fn find_aead(elf: &Elf) -> Result<AeadOffsets, String> {
    let (ro_addr, rodata) = elf.rodata.ok_or("no .rodata section")?;
    let (text_addr, text_bytes) = elf.text.ok_or("no .text section")?;
    let text = Text { bytes: text_bytes, vaddr: text_addr };
    let aead_cc = unique_string(rodata, ro_addr, AEAD_CC_SUFFIX)?;
    let analysis: Analysis = analyse_text(text, aead_cc, ERR_LIB_CIPHER).map_err(|e| format!("aead.cc.inc: {e}"))?;
    let id = identify_aead(&analysis.funcs, analysis.err_put)?;

    // quiche's own calls: DecryptPacket (which holds an aead_base_decrypter.cc site) calls
    // open; Encrypt/EncryptPacket, beside aead_base_encrypter.cc's sites, call seal.
    let decrypter = unique_string(rodata, ro_addr, QUICHE_DECRYPTER_SUFFIX).map_err(|e| format!("quiche: {e}"))?;
    let encrypter = unique_string(rodata, ro_addr, QUICHE_ENCRYPTER_SUFFIX).map_err(|e| format!("quiche: {e}"))?;
    let dec_funcs = functions_loading(text, decrypter);
    let decrypt_packet: Vec<u64> = dec_funcs.iter().filter(|(_, _, calls)| calls.contains(&id.open)).map(|(_, s, _)| *s).collect();
    if decrypt_packet.is_empty() {
        return Err(format!(
            "verification: no function holding an aead_base_decrypter.cc site calls EVP_AEAD_CTX_open {:#x} (functions: {})",
            id.open,
            list(&dec_funcs.iter().map(|f| f.1).collect::<Vec<_>>())
        ));
    }
    let enc_sites = scan_rip_lea(text.bytes, text.vaddr, encrypter);
    let seal_calls: Vec<u64> = enc_sites.iter().flat_map(|&s| calls_near(text, s, ENCRYPTER_WINDOW, id.seal)).collect();
    if seal_calls.is_empty() {
        return Err(format!(
            "verification: no direct call of EVP_AEAD_CTX_seal {:#x} within {ENCRYPTER_WINDOW} bytes of aead_base_encrypter.cc's sites {}",
            id.seal,
            list(&enc_sites)
        ));
    }

    let mut offsets = [0u64; 2];
    for (i, (name, a)) in [("EVP_AEAD_CTX_seal", id.seal), ("EVP_AEAD_CTX_open", id.open)].into_iter().enumerate() {
        if !text.is_prologue(a) {
            return Err(format!("verification: {name} at {a:#x} does not start with push rbp; mov rbp, rsp"));
        }
        let off = vaddr_to_offset(&elf.loads, a).ok_or_else(|| format!("verification: {name} at {a:#x} is in no load segment"))?;
        if offset_to_vaddr(&elf.loads, off) != Some(a) || elf.data.get(off as usize..off as usize + 4) != Some(&PROLOGUE[..]) {
            return Err(format!("verification: {name}: file offset {off:#x} does not map back to {a:#x} with its prologue"));
        }
        offsets[i] = off;
    }
    let method = format!(
        "{} lea sites of aead.cc.inc ({aead_cc:#x}) in {} functions, ERR_put_error {:#x}; EVP_AEAD_CTX_seal {:#x} \
         (BUFFER_TOO_SMALL, calls sealv {:#x}, 4 stack args; seal_scatter {}), EVP_AEAD_CTX_open {:#x} (BAD_DECRYPT, \
         BUFFER_TOO_SMALL x2, calls openv {:#x} and openv_detached {:#x}); quiche: DecryptPacket {} calls open, seal called at {}",
        analysis.sites,
        analysis.funcs.len(),
        analysis.err_put,
        id.seal,
        id.sealv,
        id.seal_scatter.map(|s| format!("{s:#x}")).unwrap_or_else(|| "not seen".into()),
        id.open,
        id.openv,
        id.openv_detached,
        list(&decrypt_packet),
        list(&seal_calls),
    );
    Ok(AeadOffsets { seal: offsets[0], open: offsets[1], seal_vaddr: id.seal, open_vaddr: id.open, method })
}

#[cfg(test)]
mod tests;
