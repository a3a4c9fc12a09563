//! The QUIC plaintext families (issue 22): where the browsers' QUIC stacks seal and open
//! packets with an AEAD (tracer-ebpf's `quic` module). Declared here beside
//! [`super::families`] (whose module documentation says how families work) and listed in its
//! [`FAMILIES`](super::families::FAMILIES).
use tracer_common::EventKind;

use super::{
    families::{Attach, Family, Points, UprobeFile, When, probe},
    libs::LibFamily,
};

/// Chromium's QUIC (quiche) seals and opens every packet with BoringSSL's
/// `EVP_AEAD_CTX_seal` / `EVP_AEAD_CTX_open`, found by code signature beside the TLS
/// functions (`super::boringssl`, `aead.rs`). A build where they are not found keeps its TLS
/// probes (`tls_boringssl`); the report says why its QUIC plaintext is unavailable.
pub static QUIC_BORINGSSL: Family = Family {
    name: "quic_boringssl",
    emits: &[EventKind::QuicPlaintext],
    attach: &[Attach {
        when: When::Tls,
        points: Points::Uprobes {
            file: UprobeFile::FoundBySignature { report_as: "EVP_AEAD_CTX_seal/EVP_AEAD_CTX_open (by signature)" },
            functions: &[
                probe("quic_boringssl_seal", None, "EVP_AEAD_CTX_seal"),
                probe("quic_boringssl_open", Some("quic_aead_open_ret"), "EVP_AEAD_CTX_open"),
            ],
        },
    }],
};

/// Firefox's QUIC (neqo, through nss-rs) seals and opens every packet with NSS: with nss-rs's
/// `blapi` backend (Firefox ESR 153) freebl's `AES_AEAD` and `ChaCha20Poly1305_Encrypt` /
/// `_Decrypt`, found through freebl's function table (`super::freebl`); else `PK11_AEADOp`
/// (exported by `libnss3.so`), one function for both: the context's operation
/// (its first field, `CKA_NSS_MESSAGE | CKA_ENCRYPT` or `| CKA_DECRYPT`, which `PK11_AEADOp`
/// itself compares first) says which. Since nss-rs 2026-05 ("bypass SSL AEAD wrapper in
/// RecordProtection") neqo no longer calls `SSL_AeadEncrypt` / `SSL_AeadDecrypt` (Firefox
/// ESR 153 made none in a page load over HTTP/3); those wrappers end in `PK11_AEADOp` too
/// (`libssl3.so` imports it), so older neqo builds are covered by the same probe. NSS's own
/// TLS records also pass through it: their additional data is dropped in the kernel (see
/// tracer-ebpf's `quic` module). Attached to the `libnss3.so` beside each `libssl3.so`
/// found (Firefox's bundled copy, the system's).
pub static QUIC_NSS: Family = Family {
    name: "quic_nss",
    emits: &[EventKind::QuicPlaintext],
    attach: &[
        Attach {
            when: When::Tls,
            points: Points::Uprobes {
                file: UprobeFile::BesideLibrary { library: LibFamily::Nss, file: "libnss3.so", report_as: "PK11_AEADOp (libnss3.so)" },
                functions: &[probe("quic_nss_aead", Some("quic_aead_open_ret"), "PK11_AEADOp")],
            },
        },
        // nss-rs's `blapi` backend (Firefox ESR 153): freebl's primitives, below PK11.
        Attach {
            when: When::Tls,
            points: Points::Uprobes {
                file: UprobeFile::FreeblTable { library: LibFamily::Nss, report_as: "AES_AEAD/ChaCha20Poly1305_Encrypt/Decrypt (freebl's table)" },
                functions: &[
                    probe("quic_freebl_chacha_seal", None, "ChaCha20Poly1305_Encrypt"),
                    probe("quic_freebl_chacha_open", Some("quic_aead_open_ret"), "ChaCha20Poly1305_Decrypt"),
                    probe("quic_freebl_aes_aead", Some("quic_freebl_aes_ret"), "AES_AEAD"),
                ],
            },
        },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::families::{FAMILIES, uprobe_sets};

    /// Both families are listed, emit the QUIC plaintext kind, and every function whose
    /// output may be the plaintext has the shared return program.
    #[test]
    fn quic_families_are_listed_with_their_return_programs() {
        for f in [&QUIC_BORINGSSL, &QUIC_NSS] {
            assert!(FAMILIES.iter().any(|g| std::ptr::eq(*g, f)), "{} not in FAMILIES", f.name);
            assert_eq!(f.emits, &[EventKind::QuicPlaintext]);
            for set in uprobe_sets().filter(|s| std::ptr::eq(s.family, f)) {
                assert_eq!(set.when, When::Tls);
                // Every set has a function whose output is read at its return.
                assert!(set.functions.iter().any(|p| p.ret.is_some()), "{}", f.name);
            }
        }
        assert!(matches!(
            uprobe_sets().find(|s| std::ptr::eq(s.family, &QUIC_NSS)).unwrap().file,
            UprobeFile::BesideLibrary { library: LibFamily::Nss, file: "libnss3.so", .. }
        ));
        assert!(matches!(uprobe_sets().find(|s| std::ptr::eq(s.family, &QUIC_BORINGSSL)).unwrap().file, UprobeFile::FoundBySignature { .. }));
    }

    /// `PK11_AEADOp` is exported by the NSS libraries beside the `libssl3.so` copies on this
    /// machine (Firefox's bundled one and the system's), where the loader looks for it.
    #[test]
    fn pk11_aeadop_is_beside_every_libssl3() {
        for lib in ["/usr/lib/firefox-esr/libssl3.so", "/usr/lib/x86_64-linux-gnu/libssl3.so"] {
            let lib = std::path::Path::new(lib);
            if !lib.is_file() {
                eprintln!("{} is not installed: skipped", lib.display());
                continue;
            }
            let nss3 = lib.with_file_name("libnss3.so");
            let table = crate::probes::uprobes::SymbolOffsets::read(&nss3, &["PK11_AEADOp"]).unwrap();
            assert!(table.offset("PK11_AEADOp").unwrap() > 0, "{}", nss3.display());
        }
    }
}
