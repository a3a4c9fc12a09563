//! The lab over HTTP/3 (root: a lab namespace): the QUIC origins serve what the TCP ones serve,
//! the TCP origins advertise them, and the UDP port drops or refuses when told to.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf as _;
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use super::*;
use support::lab_or_skip;

/// What one HTTP/3 GET got back.
#[derive(Debug)]
struct H3Response {
    status: u16,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

/// One GET over a new QUIC connection to `addr` (SNI `host`), trusting `ca_pem`, bounded to
/// `limit` (quinn's sockets are not connected, so an ICMP error does not end the attempt).
async fn h3_get(addr: SocketAddr, host: &str, path: &str, ca_pem: &str, limit: Duration) -> anyhow::Result<H3Response> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(CertificateDer::pem_slice_iter(ca_pem.as_bytes()).flatten());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let mut endpoint = quinn::Endpoint::client("0.0.0.0:0".parse()?)?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?)));
    let exchange = async {
        let conn = endpoint.connect(addr, host)?.await?;
        let (mut driver, mut send) = ::h3::client::new(h3_quinn::Connection::new(conn)).await?;
        let drive = tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
        let req = hyper::Request::get(format!("https://{host}{path}")).body(())?;
        let mut stream = send.send_request(req).await?;
        stream.finish().await?;
        let resp = stream.recv_response().await?;
        let mut body = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await? {
            body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
        }
        drop(send);
        drive.abort();
        anyhow::Ok(H3Response { status: resp.status().as_u16(), headers: resp.headers().clone(), body })
    };
    let r = tokio::time::timeout(limit, exchange).await;
    endpoint.close(0u32.into(), b"done");
    r.map_err(|_| anyhow::anyhow!("no HTTP/3 answer from {addr} within {limit:?}"))?
}

/// Runs `h3_get` on a thread inside the lab namespace (with a runtime of its own).
fn h3_get_in_lab(lab: &Lab, host: &'static str, path: &'static str) -> anyhow::Result<H3Response> {
    h3_get_within(lab, host, path, Duration::from_secs(5))
}

fn h3_get_within(lab: &Lab, host: &'static str, path: &'static str, limit: Duration) -> anyhow::Result<H3Response> {
    let addr = SocketAddr::new(lab.addr_of(host).expect("a lab host"), 443);
    let ca = lab.ca_pem().to_owned();
    lab.spawn_in_netns(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(h3_get(addr, host, path, &ca, limit))
    })
    .join()
    .expect("the HTTP/3 client thread")?
}

/// The response head of a curl GET of `url` in the lab, lower-cased.
fn curl_head(lab: &Lab, url: &str) -> String {
    let mut cmd = lab.exec_command("curl");
    cmd.args(["-sS", "-D", "-", "-o", "/dev/null", "--max-time", "10", "--cacert"]).arg(lab.ca_pem_path()).arg(url);
    let o = support::run_bounded(cmd, Duration::from_secs(20));
    assert!(o.status.success(), "curl {url}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_ascii_lowercase()
}

/// What a connected UDP socket inside the lab gets back from `addr` after one datagram:
/// `Ok(n)` bytes, or the error (ECONNREFUSED after ICMP port unreachable; a timeout when
/// nothing answers within 500 ms, which is what "drop" means).
fn udp_probe(lab: &Lab, addr: SocketAddr) -> std::io::Result<usize> {
    lab.spawn_in_netns(move || {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.connect(addr)?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        // Not a QUIC packet: a server drops it; only the kernel's answer (or none) counts.
        s.send(b"probe")?;
        let mut buf = [0u8; 64];
        s.recv(&mut buf)
    })
    .join()
    .expect("the UDP probe thread")
    .expect("entering the lab namespace")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_http3_serves_what_tcp_serves() {
    let config = LabConfig { http3: Http3::On, ..LabConfig::default() };
    let Some(lab) = lab_or_skip("lab_http3_serves_what_tcp_serves", config).await else {
        return;
    };
    let page = h3_get_in_lab(&lab, hosts::WWW, "/").expect("GET https://www.shop.test/ over HTTP/3");
    assert_eq!(page.status, 200);
    assert_eq!(page.body, PAGE_HTML.as_bytes());
    assert_eq!(page.headers.get("content-type").unwrap(), "text/html; charset=utf-8");
    let redirect = h3_get_in_lab(&lab, hosts::SHOP, "/a?b=1").unwrap();
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.headers.get("location").unwrap(), "https://www.shop.test/a?b=1");
    let css = h3_get_in_lab(&lab, hosts::STATIC, "/app.css").unwrap();
    assert_eq!((css.status, css.headers.get("content-type").unwrap().to_str().unwrap()), (200, "text/css"));
    assert_eq!(h3_get_in_lab(&lab, hosts::WWW, "/status/503").unwrap().status, 503);
    let bytes = h3_get_in_lab(&lab, hosts::WWW, "/bytes/100000").unwrap();
    assert_eq!(bytes.body.len(), 100_000);

    let log = lab.http_requests();
    let h3: Vec<_> = log.iter().filter(|r| r.version == "HTTP/3").collect();
    assert_eq!(h3.len(), 5, "{log:?}");
    assert!(h3.iter().all(|r| r.tls && r.server.port() == 443), "{h3:?}");
    assert!(h3.iter().any(|r| r.host == "www.shop.test" && r.path == "/" && r.status == 200), "{h3:?}");
    assert!(h3.iter().any(|r| r.server.ip() == IpAddr::V4(hosts::SHOP_ADDR) && r.status == 301), "{h3:?}");
    assert_eq!(lab.quic_handshake_count(), 5);
    // Every QUIC handshake logged its secrets, as the TCP ones do.
    let keylog = std::fs::read_to_string(lab.server_key_log_path()).unwrap();
    assert!(keylog.lines().any(|l| l.starts_with("CLIENT_TRAFFIC_SECRET_0 ")), "{keylog}");

    // Discovery over TCP: every HTTPS origin advertises the UDP port.
    for url in ["https://www.shop.test/", "https://shop.test/", "https://static.shop.test/app.js"] {
        let head = curl_head(&lab, url);
        assert!(head.contains("alt-svc: h3=\":443\"; ma=86400"), "{url}: {head}");
    }
    // Plain HTTP does not (Alt-Svc over http:// is not for h3).
    assert!(!curl_head(&lab, "http://shop.test/").contains("alt-svc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_http3_off_drop_and_refuse() {
    for mode in [Http3::Off, Http3::Drop, Http3::Refuse] {
        let config = LabConfig { http3: mode, ..LabConfig::default() };
        let Some(lab) = lab_or_skip("lab_http3_off_drop_and_refuse", config).await else {
            return;
        };
        let head = curl_head(&lab, "https://www.shop.test/");
        assert_eq!(head.contains("alt-svc: h3"), mode != Http3::Off, "{mode:?}: {head}");
        let edge = SocketAddr::new(IpAddr::V4(hosts::EDGE_ADDR), 443);
        let err = udp_probe(&lab, edge).expect_err("nothing may answer on UDP 443");
        match mode {
            Http3::Drop => assert!(
                matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
                "{mode:?}: {err}"
            ),
            _ => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{mode:?}: {err}"),
        }
        let h3 = h3_get_within(&lab, hosts::WWW, "/", Duration::from_secs(1));
        assert!(h3.is_err(), "{mode:?}: {h3:?}");
        assert_eq!(lab.quic_handshake_count(), 0);
        // TCP still serves the page.
        assert!(lab.http_requests().iter().all(|r| r.version != "HTTP/3"));
    }
}
