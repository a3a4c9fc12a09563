//! Without the lab (no root needed): a plain HTTP/1.1 server on 127.0.0.1.
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::Full;
use hyper::{Response, body::Incoming};
use hyper_util::rt::TokioIo;

use super::*;

const PAGE: &str = r#"<html><head><link rel="stylesheet" href="/a.css"><script src="/b.js"></script></head>
    <body><img src="/c.png"><img src="/missing.png"></body></html>"#;

/// Serves PAGE at `/`, 404 for `/missing.png`, a 302 chain at `/r/N`, and `ok` elsewhere;
/// counts accepted connections.
async fn server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        for _ in 0..1000 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let path = req.uri().path().to_owned();
                    let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
                    if path == "/" {
                        *resp.body_mut() = Full::new(Bytes::from_static(PAGE.as_bytes()));
                        resp.headers_mut()
                            .insert("content-type", "text/html".parse().unwrap());
                    } else if path == "/missing.png" {
                        *resp.status_mut() = StatusCode::NOT_FOUND;
                    } else if let Some(n) =
                        path.strip_prefix("/r/").and_then(|n| n.parse::<u32>().ok())
                    {
                        *resp.status_mut() = StatusCode::FOUND;
                        let next = if n == 0 {
                            "/done".to_owned()
                        } else {
                            format!("/r/{}", n - 1)
                        };
                        resp.headers_mut().insert("location", next.parse().unwrap());
                    }
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn page_over_kept_alive_http11_connections() {
    let (addr, accepted) = server().await;
    let opts = FetchOptions {
        page: true,
        max_connections_per_host: 2,
        nameservers: Some(vec!["127.0.0.1:9".parse().unwrap()]),
        ..FetchOptions::default()
    };
    let load = load(&format!("{addr}"), &opts).await.unwrap();
    assert_eq!(load.url, format!("http://{addr}/"));
    assert_eq!(load.entries.len(), 5, "{load:#?}");
    assert!(load.dns.is_empty(), "an IP literal needs no lookup");
    let doc = &load.entries[0];
    assert_eq!(doc.status, Some(200));
    assert!(doc.timings.dns.is_none() && doc.timings.tls.is_none());
    assert!(
        doc.timings.connect.is_some()
            && doc.timings.send.is_some()
            && doc.timings.wait.is_some()
    );
    // A 404 is a response, not a failure.
    assert!(!load.failed());
    assert!(load.entries.iter().any(|e| e.status == Some(404)));
    // Four requests, at most two connections for the sub-resources plus the document's
    // (kept alive and reused).
    let conns = accepted.load(Ordering::Relaxed);
    assert!(conns <= 2, "{conns} connections");
    assert!(load.entries.iter().filter(|e| e.connection_reused).count() >= 3);
    assert!(
        load.entries
            .iter()
            .all(|e| e.response_headers_size.is_some() && e.request_headers_size.is_some())
    );
}

#[tokio::test]
async fn redirect_limit_and_refused() {
    let (addr, _) = server().await;
    let opts = FetchOptions {
        max_redirects: 3,
        ..FetchOptions::default()
    };
    let ok = load(&format!("http://{addr}/r/2"), &opts).await.unwrap();
    assert!(!ok.failed());
    assert_eq!(ok.entries.len(), 4);
    assert_eq!(ok.final_url, format!("http://{addr}/done"));
    assert!(ok.entries[1..].iter().all(|e| e.connection_reused));
    assert_eq!(ok.entries[3].redirected_from, Some(2));
    let too_many = load(&format!("http://{addr}/r/5"), &opts).await.unwrap();
    assert_eq!(
        too_many.error.as_ref().unwrap().code,
        Code::TooManyRedirects
    );
    assert_eq!(too_many.entries.len(), 4);
    let no_follow = load(
        &format!("http://{addr}/r/5"),
        &FetchOptions {
            follow_redirects: false,
            ..opts.clone()
        },
    )
    .await
    .unwrap();
    assert!(!no_follow.failed());
    assert_eq!(no_follow.entries.len(), 1);

    // A port nobody listens on (bound then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = load(&format!("http://127.0.0.1:{port}/"), &opts)
        .await
        .unwrap();
    let f = refused.error.as_ref().unwrap();
    assert_eq!(
        (f.phase, f.code.clone()),
        (Phase::Connect, Code::ConnectionRefused)
    );
}

#[tokio::test]
async fn invalid_url_is_an_error() {
    let e = load("http://[::1", &FetchOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 2);
}

mod dns_tests {
    //! Lookups that fail, against tiny DNS servers on 127.0.0.1.
    use std::time::Duration;

    use hickory_proto::op::{Message, MessageType, ResponseCode};

    use super::super::*;

    /// A UDP DNS server on 127.0.0.1 that answers every query with `rcode` (or never, with
    /// `None`). Serves at most 50 queries.
    async fn dns_server(rcode: Option<ResponseCode>) -> std::net::SocketAddr {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            for _ in 0..50 {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let (Some(rc), Ok(q)) = (rcode, Message::from_vec(&buf[..n])) else {
                    continue;
                };
                let mut r = Message::new();
                r.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .set_response_code(rc);
                r.add_queries(q.queries().to_vec());
                let _ = sock.send_to(&r.to_vec().unwrap(), peer).await;
            }
        });
        addr
    }

    async fn dns_failure(server: std::net::SocketAddr) -> (Failure, PageLoad) {
        let opts = FetchOptions {
            nameservers: Some(vec![server]),
            dns_timeout: Some(Duration::from_millis(200)),
            ..FetchOptions::default()
        };
        let l = load("http://x.test/", &opts).await.unwrap();
        (l.error.clone().expect("a failure"), l)
    }

    #[tokio::test]
    async fn servfail_and_timeout_fail_the_dns_phase() {
        let (f, l) = dns_failure(dns_server(Some(ResponseCode::ServFail)).await).await;
        assert_eq!(
            (f.phase, f.code.clone()),
            (Phase::Dns, Code::NameNotResolved)
        );
        assert!(f.detail.as_ref().is_some_and(|d| d.starts_with("SERVFAIL")), "{f:?}");
        assert_eq!(l.dns[0].queries[0].rcode.as_deref(), Some("SERVFAIL"));

        let (f, l) = dns_failure(dns_server(Some(ResponseCode::NXDomain)).await).await;
        assert!(f.detail.as_ref().is_some_and(|d| d.starts_with("NXDOMAIN")), "{f:?}");
        assert!(l.entries[0].timings.dns.is_some() && l.entries[0].timings.connect.is_none());

        let start = std::time::Instant::now();
        let (f, l) = dns_failure(dns_server(None).await).await;
        assert_eq!(f.phase, Phase::Dns);
        assert!(f.detail.as_ref().is_some_and(|d| d.contains("timed out")), "{f:?}");
        assert!(l.dns[0].queries.iter().all(|q| q.rcode.is_none()));
        // 200 ms per try, 2 tries.
        assert!(
            start.elapsed() >= Duration::from_millis(350)
                && start.elapsed() < Duration::from_secs(5)
        );
    }
}

mod send_check {
    fn is_send<T: Send>(_: &T) {}

    #[allow(dead_code)]
    fn fetch_future_is_send(opts: &crate::fetch::FetchOptions) {
        // The dashboard spawns fetches on its runtime.
        is_send(&crate::fetch::fetch("x", opts));
    }
}
