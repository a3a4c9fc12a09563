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

/// Firefox's QUIC (neqo) seals and opens every packet with NSS's `SSL_AeadEncrypt` /
/// `SSL_AeadDecrypt`, found in each `libssl3.so` through its experimental-API table
/// (`super::nss_aead`).
pub static QUIC_NSS: Family = Family {
    name: "quic_nss",
    emits: &[EventKind::QuicPlaintext],
    attach: &[Attach {
        when: When::Tls,
        points: Points::Uprobes {
            file: UprobeFile::ExperimentalApi { library: LibFamily::Nss, report_as: "SSL_AeadEncrypt/SSL_AeadDecrypt (experimental API table)" },
            functions: &[
                probe("quic_nss_encrypt", None, "SSL_AeadEncrypt"),
                probe("quic_nss_decrypt", Some("quic_aead_open_ret"), "SSL_AeadDecrypt"),
            ],
        },
    }],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::families::{FAMILIES, uprobe_sets};

    /// Both families are listed, emit the QUIC plaintext kind, and their open has its return
    /// program (the output exists only there); seals need none (their input is the plaintext).
    #[test]
    fn quic_families_are_listed_with_their_return_programs() {
        for f in [&QUIC_BORINGSSL, &QUIC_NSS] {
            assert!(FAMILIES.iter().any(|g| std::ptr::eq(*g, f)), "{} not in FAMILIES", f.name);
            assert_eq!(f.emits, &[EventKind::QuicPlaintext]);
            let set = uprobe_sets().find(|s| std::ptr::eq(s.family, f)).unwrap();
            assert_eq!(set.when, When::Tls);
            let open = set.functions.iter().find(|p| p.function.contains("open") || p.function.contains("Decrypt")).unwrap();
            assert_eq!(open.ret, Some("quic_aead_open_ret"), "{}", f.name);
            assert!(set.functions.iter().filter(|p| p.ret.is_none()).count() == 1, "{}", f.name);
        }
        // The NSS set goes into NSS libraries; the BoringSSL set into binaries found by signature.
        assert!(matches!(uprobe_sets().find(|s| std::ptr::eq(s.family, &QUIC_NSS)).unwrap().file, UprobeFile::ExperimentalApi { library: LibFamily::Nss, .. }));
        assert!(matches!(uprobe_sets().find(|s| std::ptr::eq(s.family, &QUIC_BORINGSSL)).unwrap().file, UprobeFile::FoundBySignature { .. }));
    }

    /// The functions named are the ones the finders locate.
    #[test]
    fn functions_are_the_finders_names() {
        use crate::probes::nss_aead::{DECRYPT, ENCRYPT};
        let names = |f: &Family| -> Vec<&'static str> {
            f.attach.iter().flat_map(|a| match &a.points {
                Points::Uprobes { functions, .. } => functions.iter().map(|p| p.function).collect(),
                _ => Vec::new(),
            }).collect()
        };
        assert_eq!(names(&QUIC_NSS), vec![ENCRYPT, DECRYPT]);
        assert_eq!(names(&QUIC_BORINGSSL), vec!["EVP_AEAD_CTX_seal", "EVP_AEAD_CTX_open"]);
    }
}
