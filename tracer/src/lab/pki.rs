//! The lab CA and the origins' certificate (generated fresh for every lab with rcgen).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::hosts;

pub(crate) struct LabPki {
    pub(crate) ca_pem: String,
    pub(crate) server_config: Arc<rustls::ServerConfig>,
    /// `badcert.shop.test`'s: a leaf for that name signed by a throwaway CA that nothing
    /// trusts (clients report an unknown issuer).
    pub(crate) badcert_config: Arc<rustls::ServerConfig>,
    /// The same leaves for HTTP/3 over QUIC: TLS 1.3 only, ALPN `h3`, 0-RTT accepted.
    pub(crate) h3_config: Arc<rustls::ServerConfig>,
    pub(crate) badcert_h3_config: Arc<rustls::ServerConfig>,
    /// Base64 of the SHA-256 of the lab leaf's SubjectPublicKeyInfo: what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes.
    pub(crate) leaf_spki_sha256: String,
}

/// The two server configs of one leaf: TCP (ALPN h2, http/1.1) and QUIC (ALPN h3).
struct LeafConfigs {
    tcp: Arc<rustls::ServerConfig>,
    quic: Arc<rustls::ServerConfig>,
    /// Base64 of the SHA-256 of the leaf's SubjectPublicKeyInfo.
    spki_sha256: String,
}

/// Base64 of the SHA-256 of a certificate's SubjectPublicKeyInfo (DER).
fn spki_sha256(cert_der: &[u8]) -> Result<String> {
    use base64::Engine as _;
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| anyhow::anyhow!("parsing the lab leaf certificate: {e}"))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.tbs_certificate.subject_pki.raw);
    Ok(base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
}

/// Names on the leaf certificate.
const LEAF_NAMES: &[&str] = &[hosts::SHOP, hosts::WWW, hosts::STATIC, hosts::EDGE];

/// Valid from midnight UTC two days ago until midnight UTC 60 days ahead.
fn set_validity(params: &mut CertificateParams) {
    let today = time::OffsetDateTime::now_utc().date();
    let midnight = |days: i64| {
        let d = today.saturating_add(time::Duration::days(days));
        rcgen::date_time_ymd(d.year(), u8::from(d.month()), d.day())
    };
    params.not_before = midnight(-2);
    params.not_after = midnight(60);
}

/// A CA certificate and its key.
fn new_ca(common_name: &str) -> Result<(rcgen::Certificate, KeyPair)> {
    let ca_key = KeyPair::generate().context("generating a lab CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, common_name);
    ca.distinguished_name
        .push(DnType::OrganizationName, "tracer test lab");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut ca);
    let ca_cert = ca.self_signed(&ca_key).context("self-signing a lab CA")?;
    Ok((ca_cert, ca_key))
}

/// Rustls server configs (TCP: ALPN h2, http/1.1; QUIC: ALPN h3) with a leaf for `names`
/// (common name `common_name`) signed by `ca`.
fn leaf_server_config(
    common_name: &str,
    names: &[&str],
    ca: &(rcgen::Certificate, KeyPair),
    key_log: Arc<dyn rustls::KeyLog>,
) -> Result<LeafConfigs> {
    let leaf_key = KeyPair::generate().context("generating a lab server key")?;
    let mut leaf =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    leaf.distinguished_name.push(DnType::CommonName, common_name);
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    set_validity(&mut leaf);
    let leaf_cert = leaf
        .signed_by(&leaf_key, &ca.0, &ca.1)
        .context("signing a lab server cert")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = vec![CertificateDer::from(leaf_cert.der().to_vec())];
    let spki_sha256 = spki_sha256(leaf_cert.der())?;
    let key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("rustls protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key())
        .context("building a lab TLS server config")?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    server.key_log = key_log.clone();
    // QUIC is TLS 1.3 only (RFC 9001 4.2); a max_early_data_size of u32::MAX is how quinn
    // accepts 0-RTT (QUIC allows only 0 or that value).
    let mut quic = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("rustls TLS 1.3 for QUIC")?
        .with_no_client_auth()
        .with_single_cert(chain, key())
        .context("building a lab QUIC TLS server config")?;
    quic.alpn_protocols = vec![b"h3".to_vec()];
    quic.max_early_data_size = u32::MAX;
    quic.key_log = key_log;
    Ok(LeafConfigs {
        tcp: Arc::new(server),
        quic: Arc::new(quic),
        spki_sha256,
    })
}

impl LabPki {
    /// Generates the CA and a leaf certificate for the lab names, and rustls server configs
    /// (TCP: ALPN h2, http/1.1; QUIC: h3) that append TLS secrets to `key_log_path`.
    pub(crate) fn generate(key_log_path: &Path) -> Result<LabPki> {
        let key_log: Arc<dyn rustls::KeyLog> = Arc::new(FileKeyLog::new(key_log_path)?);
        let ca = new_ca("tracer lab CA")?;
        let leaf = leaf_server_config(hosts::WWW, LEAF_NAMES, &ca, key_log.clone())?;
        // Nothing trusts this CA: its key is dropped here.
        let untrusted = new_ca("tracer lab untrusted CA")?;
        let badcert = leaf_server_config(hosts::BADCERT, &[hosts::BADCERT], &untrusted, key_log)?;
        Ok(LabPki {
            ca_pem: ca.0.pem(),
            server_config: leaf.tcp,
            badcert_config: badcert.tcp,
            h3_config: leaf.quic,
            badcert_h3_config: badcert.quic,
            leaf_spki_sha256: leaf.spki_sha256,
        })
    }
}

/// Writes TLS secrets in the NSS key log format (`LABEL <client_random hex> <secret hex>`).
#[derive(Debug)]
struct FileKeyLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl FileKeyLog {
    fn new(path: &Path) -> Result<FileKeyLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(FileKeyLog {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl rustls::KeyLog for FileKeyLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let line = format!("{label} {} {}\n", hex(client_random), hex(secret));
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.write_all(line.as_bytes()) {
            tracing::debug!("lab key log {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod unit {
    #[test]
    fn validity_spans_today_from_midnight() {
        let mut params = rcgen::CertificateParams::default();
        super::set_validity(&mut params);
        let today = time::OffsetDateTime::now_utc().date();
        assert_eq!(params.not_before.date(), today - time::Duration::days(2));
        assert_eq!(params.not_after.date(), today + time::Duration::days(60));
        assert_eq!(params.not_before.time(), time::Time::MIDNIGHT);
    }
}
