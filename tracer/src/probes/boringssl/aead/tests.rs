use std::path::Path;

use super::*;
use crate::probes::boringssl::{error_sites::ErrorSite, find_boringssl};

const ERR_PUT: u64 = 0x9000;

fn site(reason: u32) -> ErrorSite {
    ErrorSite { lea: 0, lib: Some(ERR_LIB_CIPHER), reason: Some(reason), line: Some(1), call: Some(ERR_PUT) }
}

fn func(start: u64, reasons: &[u32], calls: &[u64], stack_args: u32) -> FuncSummary {
    FuncSummary { start, lib: ERR_LIB_CIPHER, sites: reasons.iter().map(|&r| site(r)).collect(), calls: calls.to_vec(), stack_args }
}

/// The functions of Chromium 156's aead.cc.inc (see the module documentation), at made-up
/// addresses: init-like ones, sealv, seal, seal_scatter, open, openv_detached, openv.
fn chromium_like() -> Vec<FuncSummary> {
    vec![
        func(0x100, &[0x7c, 0x78], &[ERR_PUT], 0),
        func(0x200, &[CIPHER_R_BUFFER_TOO_SMALL], &[ERR_PUT, 0x400], 4), // seal
        func(0x400, &[CIPHER_R_OUTPUT_ALIASES_INPUT, CIPHER_R_TOO_LARGE, CIPHER_R_CTRL_NOT_IMPLEMENTED], &[ERR_PUT], 4), // sealv
        func(0x500, &[CIPHER_R_BUFFER_TOO_SMALL], &[ERR_PUT, 0x400], 7), // seal_scatter
        func(0x600, &[CIPHER_R_BAD_DECRYPT, CIPHER_R_BUFFER_TOO_SMALL, CIPHER_R_BUFFER_TOO_SMALL], &[ERR_PUT, 0x800, 0x700], 4), // open
        func(0x700, &[CIPHER_R_UNSUPPORTED_TAG_SIZE, CIPHER_R_TOO_LARGE, CIPHER_R_OUTPUT_ALIASES_INPUT, CIPHER_R_CTRL_NOT_IMPLEMENTED], &[ERR_PUT], 4), // openv_detached
        func(0x800, &[CIPHER_R_OUTPUT_ALIASES_INPUT, CIPHER_R_TOO_LARGE, CIPHER_R_CTRL_NOT_IMPLEMENTED, CIPHER_R_BAD_DECRYPT], &[ERR_PUT, 0x900], 2), // openv
    ]
}

#[test]
fn synthetic_aead_functions_are_told_apart() {
    let id = identify_aead(&chromium_like(), ERR_PUT).unwrap();
    assert_eq!(
        id,
        AeadIdentified { seal: 0x200, open: 0x600, sealv: 0x400, openv: 0x800, openv_detached: 0x700, seal_scatter: Some(0x500) }
    );
}

#[test]
fn synthetic_aead_look_alikes_are_refused_with_the_reason() {
    // seal and seal_scatter with the same arity: no guess.
    let mut f = chromium_like();
    f[3].stack_args = 4;
    let e = identify_aead(&f, ERR_PUT).unwrap_err();
    assert!(e.starts_with("EVP_AEAD_CTX_seal: 2 candidates"), "{e}");
    // A seal that does not call sealv.
    let mut f = chromium_like();
    f[1].calls = vec![ERR_PUT];
    let e = identify_aead(&f, ERR_PUT).unwrap_err();
    assert!(e.starts_with("EVP_AEAD_CTX_seal: 0 candidates"), "{e}");
    // No sealv at all (another BoringSSL generation).
    let mut f = chromium_like();
    f.remove(2);
    let e = identify_aead(&f, ERR_PUT).unwrap_err();
    assert!(e.starts_with("EVP_AEAD_CTX_sealv: 0 candidates"), "{e}");
    // An open that does not call openv_detached.
    let mut f = chromium_like();
    f[4].calls = vec![ERR_PUT, 0x800];
    let e = identify_aead(&f, ERR_PUT).unwrap_err();
    assert!(e.starts_with("EVP_AEAD_CTX_open: 0 candidates"), "{e}");
    // Sites of another library code (not ERR_LIB_CIPHER) are not reasons.
    let mut f = chromium_like();
    f[4].lib = 0x10;
    assert!(identify_aead(&f, ERR_PUT).is_err());
    // Sites calling something else than ERR_put_error are not reasons.
    assert!(identify_aead(&chromium_like(), ERR_PUT + 1).is_err());
}

/// Chromium 156: seal and open by their error sites, arity and calls, and verified against
/// quiche's callers. The addresses are those found by hand with objdump (the functions that
/// quiche's `AeadBaseEncrypter::Encrypt`/`EncryptPacket` and `AeadBaseDecrypter::DecryptPacket`
/// call); the file offsets are 0x1000 lower (the text segment's offset and address differ so).
#[test]
fn finds_seal_and_open_in_the_installed_chromium() {
    let path = Path::new("/usr/lib/chromium/chromium");
    assert!(path.is_file(), "{} is not installed", path.display());
    let found = find_boringssl(path).unwrap();
    let a = found.aead.as_ref().unwrap_or_else(|| panic!("AEAD functions not found: {:?}", found.aead_error));
    eprintln!("{a:#?}");
    if crate::probes::boringssl::build_id(path).unwrap() == CHROMIUM_156_BUILD_ID {
        assert_eq!((a.seal_vaddr, a.open_vaddr), (0x9d02b80, 0x9d02fb0), "{}", a.method);
        assert_eq!((a.seal, a.open), (0x9d01b80, 0x9d01fb0), "{}", a.method);
    }
    assert_eq!(a.seal_vaddr - a.seal, found.ssl_write_vaddr - found.ssl_write);
    assert!(a.method.contains("DecryptPacket") && a.method.contains("seal_scatter 0x"), "{}", a.method);
    assert_eq!(found.offset_of("EVP_AEAD_CTX_seal"), Some(a.seal));
    assert_eq!(found.offset_of("EVP_AEAD_CTX_open"), Some(a.open));
    assert_eq!(found.why_not("EVP_AEAD_CTX_open"), None);
    // Every function the QUIC family declares is one the finder locates.
    for set in crate::probes::families::uprobe_sets().filter(|s| s.family.name == "quic_boringssl") {
        for f in set.functions {
            assert!(found.offset_of(f.function).is_some(), "{}", f.function);
        }
    }
}

/// The build these addresses were read from (chromium 156.0.8078.79, Debian).
const CHROMIUM_156_BUILD_ID: &str = "18b9e14a8053fb22e15ca250e8e2985ca1efc3ba";

/// QtWebEngine 5.15 (Chromium 87) has the older `cipher/aead.c`: its TLS functions are found,
/// its AEAD ones are not, and the reason says so.
#[test]
fn qtwebengine_keeps_its_tls_functions_without_the_aead_ones() {
    let path = Path::new("/usr/lib/x86_64-linux-gnu/libQt5WebEngineCore.so.5");
    if !path.is_file() {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{} is not installed (package libqt5webenginecore5)", path.display());
        eprintln!("skipped: {} is not installed", path.display());
        return;
    }
    let found = find_boringssl(path).unwrap();
    assert!(found.ssl_write > 0 && found.aead.is_none());
    let why = found.why_not("EVP_AEAD_CTX_seal").unwrap();
    assert!(why.contains("aead.cc.inc"), "{why}");
    assert_eq!(found.offset_of("EVP_AEAD_CTX_seal"), None);
}
