//! HTTP for the tests: GETs through curl (a separate process, which a daemon under a client
//! filter does not trace), and a local HTTPS server with a self-signed certificate.
use std::{net::SocketAddr, process::Command, sync::Arc, time::Duration};

use super::{require, run_bounded};

/// `GET url` through curl (failing the test on an error status); `form`: pairs sent
/// URL-encoded as the query.
pub fn get(url: &str, form: &[(&str, &str)]) -> String {
    get_curl(url, form, &[])
}

/// [`get`] with `Authorization: Bearer TOKEN` (a tracer daemon's dashboard).
pub fn get_bearer(url: &str, form: &[(&str, &str)], token: &str) -> String {
    get_curl(url, form, &["-H", &format!("Authorization: Bearer {token}")])
}

/// The status code of `GET url` with these extra curl arguments (no `--fail`).
pub fn status(url: &str, extra: &[&str]) -> u16 {
    let mut curl = Command::new(require("curl"));
    curl.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20"]).args(extra).arg(url);
    let out = run_bounded(curl, Duration::from_secs(30));
    assert!(out.status.success(), "GET {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("GET {url}: no status: {:?}", out.stdout))
}

fn get_curl(url: &str, form: &[(&str, &str)], extra: &[&str]) -> String {
    let mut curl = Command::new(require("curl"));
    curl.args(["-sS", "--fail-with-body", "--max-time", "20"]).args(extra).args(["-G", url]);
    for (k, v) in form {
        curl.arg("--data-urlencode").arg(format!("{k}={v}"));
    }
    let out = run_bounded(curl, Duration::from_secs(30));
    assert!(out.status.success(), "GET {url} {form:?}: {}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stdout).unwrap()
}

/// An HTTPS server on loopback with a self-signed certificate for `localhost`: it reads one
/// request head per connection and answers 200 with `body_len` bytes, then closes. Runs on
/// the current tokio runtime until that runtime ends.
pub async fn spawn_tls_server(body_len: usize) -> SocketAddr {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(sock).await else { return };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let body = vec![b'x'; body_len];
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n");
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(&body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// [`spawn_tls_server`] on a runtime of its own, so that plain `#[test]`s can use it; the
/// server stops when the runtime is dropped.
pub fn tls_server(body_len: usize) -> (SocketAddr, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let addr = rt.block_on(spawn_tls_server(body_len));
    (addr, rt)
}
