//! HTTPS for a dashboard off loopback: the token (and the history) must not cross a network
//! in clear. `--tls-cert`/`--tls-key` give a certificate (PEM; the key PKCS#8, PKCS#1 or
//! SEC1); without them the daemon makes a self-signed one the first time, keeps it beside the
//! database (`tls.crt`, and `tls.key` 0600) and uses it at every later start, so that the
//! SHA-256 fingerprint it prints (and writes to `tls.sha256`) stays the one a user pinned.
//!
//! [`TlsListener`] is an [`axum::serve::Listener`]: it accepts TCP connections and runs each
//! TLS handshake on a task of its own, bounded to 10 s, so that a client that connects and
//! says nothing holds up no one else.
use std::{
    io::Write as _,
    net::SocketAddr,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the certificate came from, for the start-up report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    Given { cert: PathBuf },
    Generated { cert: PathBuf, created: bool },
}

/// A server configuration and its certificate's fingerprint.
pub struct TlsSetup {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the leaf certificate (DER), `AB:CD:...` as `openssl x509 -fingerprint -sha256`.
    pub fingerprint: String,
    pub source: CertSource,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key in it ({reason})")]
    NoKey { path: PathBuf, reason: String },
    #[error("{path} is a symlink: refused")]
    Symlink { path: PathBuf },
    #[error("the dashboard's TLS key {path} is readable by other users (mode {mode:04o}): chmod 600 it")]
    KeyMode { path: PathBuf, mode: u32 },
    #[error("the certificate and key do not make a TLS server: {0}")]
    Config(#[source] rustls::Error),
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[source] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_path_buf(), source }
}

/// `--tls-cert`/`--tls-key` when given, else the generated certificate beside `db`, made for
/// `names` (the listen address and the host's name) when it does not exist yet.
pub fn setup(given: Option<(&Path, &Path)>, db: &Path, names: &[String]) -> Result<TlsSetup, TlsError> {
    let (cert_path, key_path, source) = match given {
        Some((c, k)) => (c.to_path_buf(), k.to_path_buf(), CertSource::Given { cert: c.to_path_buf() }),
        None => {
            let dir = db.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
            let created = if std::fs::symlink_metadata(&key).is_ok() { false } else { generate(&cert, &key, names)? };
            (cert.clone(), key, CertSource::Generated { cert, created })
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| TlsError::Io { path: cert_path.clone(), source: std::io::Error::other(e.to_string()) })?
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate { path: cert_path.clone() })?;
    let Some(leaf) = certs.first() else { return Err(TlsError::NoCertificate { path: cert_path }) };
    let fingerprint = fingerprint(leaf);
    let key = read_key(&key_path)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if matches!(source, CertSource::Generated { .. }) {
        // Stored beside the certificate, for whoever pins it later.
        let sha = cert_path.with_file_name("tls.sha256");
        let _ = std::fs::write(&sha, format!("{fingerprint}\n"));
    }
    Ok(TlsSetup { config: Arc::new(config), fingerprint, source })
}

/// The key file, refused when it is a symlink or readable by others.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    use std::os::unix::fs::MetadataExt as _;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) { TlsError::Symlink { path: path.to_path_buf() } } else { io(path)(e) }
    })?;
    let mode = f.metadata().map_err(io(path))?.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyMode { path: path.to_path_buf(), mode });
    }
    let mut pem = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(&f, 1 << 20), &mut pem).map_err(io(path))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::NoKey { path: path.to_path_buf(), reason: e.to_string() })
}

/// A new self-signed certificate for `names`; the key 0600, neither written through a
/// symlink nor over an existing file. Returns true (it was created).
fn generate(cert: &Path, key: &Path, names: &[String]) -> Result<bool, TlsError> {
    let ck = rcgen::generate_simple_self_signed(names.to_vec()).map_err(TlsError::Generate)?;
    let write = |path: &Path, mode: u32, text: String| -> Result<(), TlsError> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io(path))?;
        f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(io(path))
    };
    let _ = std::fs::remove_file(cert); // a certificate without its key is of no use
    write(key, 0o600, ck.key_pair.serialize_pem())?;
    write(cert, 0o644, ck.cert.pem())?;
    Ok(true)
}

/// SHA-256 of `cert`, colon-separated upper-case hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    d.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Names for a generated certificate: the listen address (unless unspecified), the host's
/// name, and `localhost`.
pub fn names_for(listen: SocketAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    if let Some(h) = crate::procfs::hostname() {
        names.push(h);
    }
    names
}

/// TLS connections, handshaken on tasks of their own (see the module documentation).
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        let accept_task = tokio::spawn(async move {
            loop {
                let (sock, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and the like: wait a little, as axum's own listener does.
                        tracing::debug!("dashboard: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("dashboard: TLS handshake with {peer}: {e}"),
                        Err(_) => tracing::debug!("dashboard: TLS handshake with {peer}: timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready, accept_task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task never ends on its own (it is aborted only on drop).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_generated_certificate_is_kept_and_its_fingerprint_stays() {
        let t = tempfile::tempdir().unwrap();
        let db = t.path().join("t.db");
        let first = setup(None, &db, &["localhost".into()]).unwrap();
        assert_eq!(first.source, CertSource::Generated { cert: t.path().join("tls.crt"), created: true });
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        assert_eq!(std::fs::metadata(t.path().join("tls.key")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(t.path().join("tls.sha256")).unwrap().trim(), first.fingerprint);
        let again = setup(None, &db, &["localhost".into()]).unwrap();
        assert_eq!(again.fingerprint, first.fingerprint, "the same certificate at the next start");
        assert_eq!(again.source, CertSource::Generated { cert: t.path().join("tls.crt"), created: false });
        // Given files: used as they are; a key others may read is refused.
        let given = setup(Some((&t.path().join("tls.crt"), &t.path().join("tls.key"))), &t.path().join("x/t.db"), &[]).unwrap();
        assert_eq!(given.fingerprint, first.fingerprint);
        std::fs::set_permissions(t.path().join("tls.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = setup(None, &db, &[]).err().unwrap();
        assert!(matches!(e, TlsError::KeyMode { mode: 0o644, .. }), "{e}");
        let e = setup(Some((&t.path().join("nope.crt"), &t.path().join("tls.key"))), &db, &[]).err().unwrap();
        assert!(e.to_string().contains("nope.crt"), "{e}");
    }
}
