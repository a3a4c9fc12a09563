//! TLS client set-up with rustls: trust (system store, `--cacert`, or `--insecure`), ALPN,
//! session resumption across the connections of one page load, `SSLKEYLOGFILE`, and a
//! verifier that records the chain the server sent, also when verification fails.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::FetchError;
use super::model::CertificateInfo;
use crate::failure::{Code, Failure, Phase};

/// The chain a server presented, as captured by the verifier.
pub(crate) type Captured = Arc<Mutex<Vec<CertificateDer<'static>>>>;

pub(crate) struct TlsSetup {
    provider: Arc<CryptoProvider>,
    /// `None` with `--insecure`.
    verifier: Option<Arc<WebPkiServerVerifier>>,
    alpn: Vec<Vec<u8>>,
    sessions: Arc<rustls::client::ClientSessionMemoryCache>,
}

impl TlsSetup {
    pub(crate) fn new(
        cacert: Option<&Path>,
        insecure: bool,
        http1_only: bool,
    ) -> Result<TlsSetup, FetchError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = if insecure {
            None
        } else {
            let mut roots = RootCertStore::empty();
            match cacert {
                Some(path) => {
                    let certs = CertificateDer::pem_file_iter(path)
                        .map_err(|e| {
                            FetchError::Usage(format!("--cacert {}: {e}", path.display()))
                        })?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| {
                            FetchError::Usage(format!("--cacert {}: {e}", path.display()))
                        })?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(FetchError::Usage(format!(
                            "--cacert {}: no usable certificate in it",
                            path.display()
                        )));
                    }
                }
                None => {
                    let native = rustls_native_certs::load_native_certs();
                    roots.add_parsable_certificates(native.certs);
                }
            }
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| FetchError::Setup(format!("certificate verifier: {e}")))?,
            )
        };
        let alpn = if http1_only {
            vec![b"http/1.1".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };
        Ok(TlsSetup {
            provider,
            verifier,
            alpn,
            sessions: Arc::new(rustls::client::ClientSessionMemoryCache::new(256)),
        })
    }

    pub(crate) fn insecure(&self) -> bool {
        self.verifier.is_none()
    }

    /// A client config for one connection, and the slot its verifier records the chain in.
    pub(crate) fn client_config(&self) -> Result<(Arc<ClientConfig>, Captured), rustls::Error> {
        let captured: Captured = Arc::default();
        let verifier = RecordingVerifier {
            inner: self.verifier.clone(),
            captured: captured.clone(),
            algorithms: self.provider.signature_verification_algorithms,
        };
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = self.alpn.clone();
        config.resumption = rustls::client::Resumption::store(self.sessions.clone());
        // Writes secrets only when SSLKEYLOGFILE is set.
        config.key_log = Arc::new(rustls::KeyLogFile::new());
        Ok((Arc::new(config), captured))
    }
}

#[derive(Debug)]
struct RecordingVerifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    captured: Captured,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut c) = self.captured.lock() {
            c.clear();
            c.push(end_entity.clone().into_owned());
            c.extend(intermediates.iter().map(|i| i.clone().into_owned()));
        }
        match &self.inner {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Subject, issuer, validity and names of a DER certificate.
pub(crate) fn certificate_info(der: &[u8]) -> CertificateInfo {
    use x509_parser::prelude::*;
    match X509Certificate::from_der(der) {
        Ok((_, c)) => {
            let mut sans = Vec::new();
            if let Ok(Some(ext)) = c.subject_alternative_name() {
                for n in &ext.value.general_names {
                    match n {
                        GeneralName::DNSName(d) => sans.push((*d).to_owned()),
                        GeneralName::IPAddress(b) => sans.push(match b.len() {
                            4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
                            16 => <[u8; 16]>::try_from(*b)
                                .map(|a| std::net::Ipv6Addr::from(a).to_string())
                                .unwrap_or_default(),
                            _ => format!("{b:02x?}"),
                        }),
                        _ => {}
                    }
                }
            }
            CertificateInfo {
                subject: c.subject().to_string(),
                issuer: c.issuer().to_string(),
                not_before: crate::clock::iso8601_s(c.validity().not_before.timestamp()),
                not_after: crate::clock::iso8601_s(c.validity().not_after.timestamp()),
                serial: c.raw_serial_as_string(),
                subject_alt_names: sans,
            }
        }
        Err(e) => CertificateInfo {
            subject: format!("(unparsable certificate: {e})"),
            issuer: String::new(),
            not_before: String::new(),
            not_after: String::new(),
            serial: String::new(),
            subject_alt_names: Vec::new(),
        },
    }
}

/// `TLSv1.3` for rustls' version enum.
pub(crate) fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        other => format!("{other:?}"),
    }
}

/// The browser's error for a failed TLS handshake.
pub(crate) fn tls_failure(e: &std::io::Error) -> Failure {
    let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    let (code, reason) = match tls {
        Some(rustls::Error::InvalidCertificate(ce)) => {
            let code = match ce {
                CertificateError::UnknownIssuer => Code::CertAuthorityInvalid,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    Code::CertDateInvalid
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    Code::CertDateInvalid
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => Code::CertCommonNameInvalid,
                CertificateError::Revoked => Code::CertRevoked,
                _ => Code::CertInvalid,
            };
            (code, format!("invalid certificate: {ce:?}"))
        }
        Some(rustls::Error::NoApplicationProtocol) => (
            Code::AlpnNegotiationFailed,
            "no common application protocol".into(),
        ),
        Some(rustls::Error::AlertReceived(a)) => match a {
            rustls::AlertDescription::ProtocolVersion
            | rustls::AlertDescription::HandshakeFailure => (
                Code::SslVersionOrCipherMismatch,
                format!("the server sent alert {a:?}"),
            ),
            _ => (
                Code::SslProtocolError,
                format!("the server sent alert {a:?}"),
            ),
        },
        Some(other) => (Code::SslProtocolError, other.to_string()),
        None => match e.kind() {
            std::io::ErrorKind::UnexpectedEof => (
                Code::ConnectionClosed,
                "the server closed the connection during the handshake".into(),
            ),
            std::io::ErrorKind::ConnectionReset => (Code::ConnectionReset, e.to_string()),
            std::io::ErrorKind::TimedOut => (Code::TimedOut, "the handshake timed out".into()),
            _ => (Code::SslProtocolError, e.to_string()),
        },
    };
    Failure::new(Phase::Tls, code, reason)
}
