//! The QUIC decoder on real datagrams: a quinn client and server on 127.0.0.1, with a UDP
//! relay between them that records every datagram, its direction and when it passed (no root
//! needed). The relay stands where the kernel side will capture: at the client's socket.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::UdpSocket;

use super::*;
use crate::clock::monotonic_ns;
use crate::decode::Direction;

/// One datagram that passed the relay.
#[derive(Clone, Debug)]
pub(crate) struct Recorded {
    pub(crate) ts_ns: u64,
    pub(crate) dir: Direction,
    pub(crate) bytes: Vec<u8>,
}

pub(crate) type Log = Arc<Mutex<Vec<Recorded>>>;

/// A relay on 127.0.0.1 in front of `server`: what a client sends to it goes to the server
/// from another socket, and back. Stops after 20,000 datagrams or when its task is aborted.
pub(crate) async fn relay(server: SocketAddr) -> (SocketAddr, Log, tokio::task::JoinHandle<()>) {
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    let log: Log = Arc::default();
    let rec = log.clone();
    let task = tokio::spawn(async move {
        let mut client: Option<SocketAddr> = None;
        let (mut a, mut b) = (vec![0u8; 65536], vec![0u8; 65536]);
        for _ in 0..20_000 {
            tokio::select! {
                Ok((n, from)) = front.recv_from(&mut a) => {
                    client = Some(from);
                    rec.lock().unwrap().push(Recorded { ts_ns: monotonic_ns(), dir: Direction::Send, bytes: a[..n].to_vec() });
                    let _ = back.send_to(&a[..n], server).await;
                }
                Ok((n, _)) = back.recv_from(&mut b) => {
                    rec.lock().unwrap().push(Recorded { ts_ns: monotonic_ns(), dir: Direction::Recv, bytes: b[..n].to_vec() });
                    if let Some(c) = client {
                        let _ = front.send_to(&b[..n], c).await;
                    }
                }
            }
        }
    });
    (addr, log, task)
}

/// A self-signed certificate for `quic.test`, also as PEM.
fn cert() -> (CertificateDer<'static>, PrivateKeyDer<'static>, String) {
    let c = rcgen::generate_simple_self_signed(vec!["quic.test".to_owned()]).unwrap();
    (
        CertificateDer::from(c.cert.der().to_vec()),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key_pair.serialize_der())),
        c.cert.pem(),
    )
}

/// A quinn server on 127.0.0.1 (ALPN h3) that echoes each bidirectional stream; with `retry`
/// it answers a first Initial from an address not yet validated with a Retry. Its
/// certificate (for `quic.test`) comes back as DER and PEM.
pub(crate) fn echo_server_pem(retry: bool) -> (quinn::Endpoint, CertificateDer<'static>, String) {
    let (c, key, pem) = cert();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![c.clone()], key)
        .unwrap();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls.max_early_data_size = u32::MAX;
    let config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls).unwrap()));
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let ep = endpoint.clone();
    tokio::spawn(async move {
        for _ in 0..16 {
            let Some(incoming) = ep.accept().await else { return };
            if retry && !incoming.remote_address_validated() {
                let _ = incoming.retry();
                continue;
            }
            tokio::spawn(async move {
                let Ok(conn) = incoming.accept().map(|c| c.into_0rtt()) else { return };
                // Serve 0-RTT streams as they come (the handshake finishes meanwhile).
                let conn = match conn {
                    Ok((conn, _)) => conn,
                    Err(connecting) => match connecting.await {
                        Ok(c) => c,
                        Err(_) => return,
                    },
                };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    if let Ok(data) = recv.read_to_end(64 * 1024).await {
                        let _ = send.write_all(&data).await;
                        let _ = send.finish();
                    }
                }
            });
        }
    });
    (endpoint, c, pem)
}

fn echo_server(retry: bool) -> (quinn::Endpoint, CertificateDer<'static>) {
    let (e, c, _) = echo_server_pem(retry);
    (e, c)
}

/// A client endpoint that trusts `ca` and offers `alpn` (h3 first), with early data on, a
/// 7 s idle timeout and a 1,000,000-byte receive window.
pub(crate) fn client(ca: &CertificateDer<'static>, alpn: &[Vec<u8>]) -> quinn::Endpoint {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = alpn.to_vec();
    tls.enable_early_data = true;
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(Duration::from_secs(7).try_into().unwrap()));
    transport.receive_window(1_000_000u32.into());
    config.transport_config(Arc::new(transport));
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(config);
    ep
}

/// Sends `msg` on a new stream of `conn` and reads the echo.
pub(crate) async fn echo(conn: &quinn::Connection, msg: &[u8]) -> Vec<u8> {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(msg).await.unwrap();
    send.finish().unwrap();
    recv.read_to_end(64 * 1024).await.unwrap()
}

/// Closes `conn` and returns what the relay recorded up to then (the close included, once the
/// endpoint has sent it: bounded to 2 s).
pub(crate) async fn take_after_close(log: &Log, conn: quinn::Connection, endpoint: &quinn::Endpoint) -> Vec<Recorded> {
    conn.close(0u32.into(), b"done");
    // The close is itself a datagram; wait for the endpoint to have sent it.
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    std::mem::take(&mut *log.lock().unwrap())
}

fn track(rec: &[Recorded]) -> QuicSummary {
    let mut t = QuicTracker::new();
    for r in rec {
        t.feed(r.ts_ns, r.dir, &r.bytes);
    }
    t.into_summary()
}

/// Many long ALPN names, h3 first: a ClientHello over 1,200 bytes, which a QUIC client must
/// split over two Initial packets, as a post-quantum key share makes Chromium's do.
pub(crate) fn long_alpn() -> Vec<Vec<u8>> {
    let mut alpn = vec![b"h3".to_vec()];
    alpn.extend((0..12).map(|i| format!("tracer-test-protocol-{i:02}-{}", "x".repeat(70)).into_bytes()));
    alpn
}

#[tokio::test]
async fn quinn_handshake_seen_from_the_wire() {
    let (server, ca) = echo_server(false);
    let (relay_addr, log, relay_task) = relay(server.local_addr().unwrap()).await;
    let ep = client(&ca, &long_alpn());
    let started = monotonic_ns();
    let conn = ep.connect(relay_addr, "quic.test").unwrap().await.unwrap();
    let connected = monotonic_ns();
    assert_eq!(echo(&conn, b"ping").await, b"ping");
    let rec = take_after_close(&log, conn, &ep).await;
    relay_task.abort();

    let s = track(&rec);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.version, Some(VERSION_1));
    assert_eq!(s.sni.as_deref(), Some("quic.test"));
    assert_eq!(s.alpn.len(), 13);
    assert_eq!(s.alpn[0], "h3");
    assert!(s.client_hello_bytes.unwrap() > 1200, "{s:?}");
    assert!(s.client_hello_packets >= 2, "{s:?}");
    // rustls prefers AES-256-GCM, and TLS 1.3 it is.
    assert_eq!(s.cipher_suite.as_deref(), Some("TLS13_AES_256_GCM_SHA384"));
    assert_eq!(s.tls_version.as_deref(), Some("TLSv1.3"));
    let tp = s.transport_parameters.as_ref().unwrap();
    assert_eq!(tp.max_idle_timeout_ms, Some(7000));
    assert_eq!(tp.initial_max_data, Some(1_000_000));
    assert_eq!(tp.initial_source_connection_id, s.client_scid);
    // The timeline: first Initial, the server's answer and ServerHello, the client's Handshake
    // packet, its first 1-RTT packet; inside what the client measured around connect().
    let (first, sh, hs, done) = (
        s.first_initial_ns.unwrap(),
        s.server_hello_ns.unwrap(),
        s.client_handshake_ns.unwrap(),
        s.first_1rtt_ns.unwrap(),
    );
    assert!(started <= first && first < sh && sh <= hs && hs <= done, "{s:?}");
    assert!(s.handshake_ns().unwrap() > 0);
    assert!(first - started < connected - started, "{s:?}");
    assert!(s.server_scid.is_some() && s.client_scid.is_some());
    assert!(!s.zero_rtt() && s.retry.is_none() && s.close.is_none());
    assert_eq!(s.sent.datagrams + s.received.datagrams, rec.len() as u64);
    assert_eq!(s.sent.bytes + s.received.bytes, rec.iter().map(|r| r.bytes.len() as u64).sum::<u64>());
}

#[tokio::test]
async fn quinn_zero_rtt_and_retry_seen_from_the_wire() {
    // 0-RTT: a second connection to the same name resumes and sends its stream early.
    let (server, ca) = echo_server(false);
    let (relay_addr, log, relay_task) = relay(server.local_addr().unwrap()).await;
    let ep = client(&ca, &[b"h3".to_vec()]);
    let conn = ep.connect(relay_addr, "quic.test").unwrap().await.unwrap();
    assert_eq!(echo(&conn, b"first").await, b"first");
    // The session ticket arrives after the handshake; the echo's answer came after it.
    let first = take_after_close(&log, conn, &ep).await;
    assert!(!track(&first).zero_rtt());
    let (conn, accepted) = ep.connect(relay_addr, "quic.test").unwrap().into_0rtt().expect("a resumable session");
    assert_eq!(echo(&conn, b"early").await, b"early");
    assert!(accepted.await, "the server took the 0-RTT data");
    let rec = take_after_close(&log, conn, &ep).await;
    relay_task.abort();
    let s = track(&rec);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert!(s.zero_rtt(), "{s:?}");
    assert!(s.handshake_done());
    assert_eq!(s.sni.as_deref(), Some("quic.test"));

    // Retry: the server makes the client prove its address first.
    let (server, ca) = echo_server(true);
    let (relay_addr, log, relay_task) = relay(server.local_addr().unwrap()).await;
    let ep = client(&ca, &[b"h3".to_vec()]);
    let conn = ep.connect(relay_addr, "quic.test").unwrap().await.unwrap();
    assert_eq!(echo(&conn, b"after retry").await, b"after retry");
    let rec = take_after_close(&log, conn, &ep).await;
    relay_task.abort();
    let s = track(&rec);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let retry = s.retry.as_ref().expect("a Retry");
    assert!(retry.integrity_ok);
    assert!(retry.token_len > 0);
    assert_ne!(Some(&retry.new_dcid), s.original_dcid.as_ref());
    assert_eq!(s.sni.as_deref(), Some("quic.test"));
    assert!(s.cipher_suite.is_some() && s.handshake_done());
}
