//! The fetcher over HTTP/3 in the lab (`LabConfig::http3`): forced, discovered through the
//! HTTPS record, and falling back to TCP when UDP 443 drops or refuses. Part of `--test fetch`.

use std::time::Duration;

use tracer::fetch::model::QuicReason;
use tracer::fetch::quic::{Http3Mode, RACE_DELAY};
use tracer::failure::{Code, Phase};
use tracer::fetch::{self, Connection, PageLoad};
use tracer::lab::{Http3, Lab, LabConfig, hosts};

use super::{blocking_lab_or_skip, fetch_in_lab, lab_options, text, tracer_fetch};

fn h3_lab(test: &str, http3: Http3) -> Option<Lab> {
    blocking_lab_or_skip(
        test,
        LabConfig { dns_delay: Duration::from_millis(20), think_time: Duration::from_millis(30), http3, ..LabConfig::default() },
    )
}

fn with_http3(lab: &Lab, mode: Http3Mode) -> fetch::FetchOptions {
    fetch::FetchOptions { http3: mode, ..lab_options(lab) }
}

fn quic_conns(load: &PageLoad) -> Vec<&Connection> {
    load.connections.iter().filter(|c| c.quic.is_some()).collect()
}

#[test]
fn http3_forced_and_discovered_through_the_https_record() {
    let Some(lab) = h3_lab("http3_forced_and_discovered_through_the_https_record", Http3::On) else {
        return;
    };
    // Forced: the document over QUIC, the handshake timed by the fetcher and on the wire.
    let load = fetch_in_lab(&lab, "https://www.shop.test/", with_http3(&lab, Http3Mode::Force));
    assert!(!load.failed(), "{load:#?}");
    let doc = &load.entries[0];
    assert_eq!((doc.status, doc.http_version.as_deref()), (Some(200), Some("HTTP/3")));
    let c = &load.connections[doc.connection_id.unwrap()];
    let q = c.quic.as_ref().expect("a QUIC connection");
    assert_eq!((q.version.as_str(), q.reason), ("QUICv1", QuicReason::Forced));
    assert!(q.failure.is_none() && c.attempts.is_empty() && c.connect.is_none());
    let tls = c.tls.as_ref().unwrap();
    assert_eq!((tls.version.as_deref(), tls.alpn.as_deref(), tls.sni.as_deref()), (Some("TLSv1.3"), Some("h3"), Some("www.shop.test")));
    assert!(tls.cipher_suite.as_deref().is_some_and(|s| s.starts_with("TLS13_")), "{tls:?}");
    assert!(!tls.certificates.is_empty() && tls.verified);
    assert_eq!(c.remote, Some(std::net::SocketAddr::new(hosts::EDGE_ADDR.into(), 443)));
    // The request paid the handshake: HAR connect == ssl, no TCP.
    assert!(doc.timings.connect.is_none());
    let hs = doc.timings.tls.expect("the QUIC handshake as the TLS phase");
    assert_eq!(hs, q.span);
    // The wire's handshake (first Initial .. first 1-RTT packet) and the fetcher's (connect ..
    // handshake done) are the same handshake: the wire's lies inside the fetcher's, and ends
    // with it (the median of five loads within 5 ms). Their starts differ by the client's own
    // work before its first Initial (quinn builds the ClientHello and its key shares: 1-2 ms
    // idle, in a debug build, 4-9 ms in one load of three; 5-12 ms on CI's machine), which is
    // the fetcher's time but not the wire's, so the start is not held to a tolerance.
    let mut end_gaps = Vec::new();
    for run in 0..5 {
        let load = if run == 0 { load.clone() } else { fetch_in_lab(&lab, "https://www.shop.test/", with_http3(&lab, Http3Mode::Force)) };
        let doc = &load.entries[0];
        let q = load.connections[doc.connection_id.unwrap()].quic.as_ref().expect("a QUIC connection");
        let hs = doc.timings.tls.expect("the QUIC handshake as the TLS phase");
        let wire = q.wire_handshake.expect("the handshake seen on the wire");
        let ms = |ns: u64| ns as f64 / 1e6;
        eprintln!(
            "run {run}: wire {:.3} ms, fetcher {:.3} ms; the wire starts {:.3} ms later and ends {:.3} ms earlier",
            wire.ms,
            hs.ms,
            ms(wire.start_ns) - ms(hs.start_ns),
            ms(hs.end_ns) - ms(wire.end_ns)
        );
        assert!(wire.ms > 0.0 && wire.start_ns >= hs.start_ns && wire.end_ns <= hs.end_ns, "run {run}: wire {wire:?} not within the fetcher's {hs:?}");
        end_gaps.push(ms(hs.end_ns) - ms(wire.end_ns));
        // The HAR carries the wire's handshake beside the fetcher's.
        let har = serde_json::to_value(fetch::har::to_har(&load)).unwrap();
        assert_eq!(har["log"]["entries"][0]["_quic"]["wire_handshake"]["start_ns"], wire.start_ns, "run {run}");
    }
    let mut sorted = end_gaps.clone();
    sorted.sort_by(f64::total_cmp);
    assert!(sorted[2] < 5.0, "the fetcher's handshake ends this many ms after the wire's, five loads: {end_gaps:?}");
    let handshakes = end_gaps.len();
    assert!(q.client_hello_packets >= 1 && q.datagrams_sent >= 2 && q.datagrams_received >= 2, "{q:?}");
    assert!(doc.timings.wait.unwrap().ms >= 25.0, "think time is in wait: {:?}", doc.timings);
    assert!(c.bytes_received > 0 && c.bytes_sent > 0);
    let har = fetch::har::to_har(&load);
    let e = &serde_json::to_value(&har).unwrap()["log"]["entries"][0];
    assert_eq!(e["request"]["httpVersion"], "h3");
    assert_eq!(e["response"]["httpVersion"], "h3");
    assert!(e["timings"]["connect"].as_f64().unwrap() > 0.0);
    assert_eq!(e["timings"]["connect"], e["timings"]["ssl"]);
    let logged: Vec<_> = lab.http_requests().into_iter().filter(|r| r.version == "HTTP/3").collect();
    assert_eq!(logged.len(), handshakes, "{logged:?}");
    assert_eq!(lab.quic_handshake_count(), handshakes as u64);

    // By discovery: http://shop.test/ (TCP) redirects to https://www.shop.test/, whose HTTPS
    // record (through the CNAME) lists h3: QUIC; static.shop.test has no HTTPS record: TCP,
    // and its responses advertise h3 for later connections.
    lab.reset_stats();
    let opts = fetch::FetchOptions { page: true, ..with_http3(&lab, Http3Mode::Auto) };
    let load = fetch_in_lab(&lab, "http://shop.test/", opts);
    assert!(!load.failed(), "{load:#?}");
    let versions: Vec<_> = load.entries.iter().map(|e| (e.url.as_str(), e.http_version.as_deref())).collect();
    assert_eq!(versions[0], ("http://shop.test/", Some("HTTP/1.1")), "{versions:?}");
    assert_eq!(versions[1], ("https://www.shop.test/", Some("HTTP/3")), "{versions:?}");
    assert!(load.entries[2..].iter().all(|e| e.http_version.as_deref() == Some("HTTP/2")), "{versions:?}");
    let www = load.dns.iter().find(|d| d.host == "www.shop.test").unwrap();
    assert_eq!(www.https_alpn, ["h3", "h2", "http/1.1"]);
    assert!(www.queries.iter().any(|q| q.qtype == "HTTPS" && q.rcode.as_deref() == Some("NOERROR")));
    let quic = quic_conns(&load);
    assert_eq!(quic.len(), 1);
    assert_eq!(quic[0].quic.as_ref().unwrap().reason, QuicReason::HttpsRecord);
    // The lab saw the same: the document over HTTP/3, the sub-resources over HTTP/2.
    let log = lab.http_requests();
    assert!(log.iter().any(|r| r.version == "HTTP/3" && r.path == "/" && r.host == "www.shop.test"), "{log:?}");
    assert!(log.iter().filter(|r| r.host == "static.shop.test").all(|r| r.version == "HTTP/2"), "{log:?}");

    // --no-http3 (or --http1.1): the HTTPS record is not even asked for.
    lab.reset_stats();
    let load = fetch_in_lab(&lab, "https://www.shop.test/", with_http3(&lab, Http3Mode::Off));
    assert_eq!(load.entries[0].http_version.as_deref(), Some("HTTP/2"));
    assert!(quic_conns(&load).is_empty());
    assert!(!lab.dns_queries().iter().any(|q| q.qtype == 65), "{:?}", lab.dns_queries());
}

#[test]
fn http3_falls_back_to_tcp_when_udp_drops_or_refuses() {
    for mode in [Http3::Refuse, Http3::Drop] {
        let Some(lab) = h3_lab("http3_falls_back_to_tcp_when_udp_drops_or_refuses", mode) else {
            return;
        };
        let load = fetch_in_lab(&lab, "https://www.shop.test/", with_http3(&lab, Http3Mode::Auto));
        assert!(!load.failed(), "{mode:?}: {load:#?}");
        let doc = &load.entries[0];
        assert_eq!((doc.status, doc.http_version.as_deref()), (Some(200), Some("HTTP/2")), "{mode:?}");
        let tcp = &load.connections[doc.connection_id.unwrap()];
        let from = tcp.fell_back_from.expect("the TCP connection fell back from QUIC");
        let attempt = &load.connections[from];
        let q = attempt.quic.as_ref().unwrap();
        let f = q.failure.as_ref().expect("the QUIC attempt failed");
        assert_eq!(f.phase, Phase::Connect);
        match mode {
            // ICMP port unreachable comes back to the connected socket: no waiting.
            Http3::Refuse => {
                assert_eq!(f.code, Code::QuicProtocolError, "{f:?}");
                assert!(f.detail.as_deref().is_some_and(|d| d.contains("ECONNREFUSED")), "{f:?}");
                assert!(q.span.ms < RACE_DELAY.as_millis() as f64, "{q:?}");
            }
            // Nothing comes back: TCP starts after the race delay.
            _ => {
                assert_eq!(f.code, Code::QuicHandshakeFailed, "{f:?}");
                assert!(q.span.ms >= RACE_DELAY.as_millis() as f64 - 1.0, "{q:?}");
                assert_eq!(q.datagrams_received, 0);
            }
        }
        assert!(q.datagrams_sent >= 1);
        // The entry's connect counts from the QUIC attempt (a failed attempt before TCP).
        let connect = doc.timings.connect.unwrap();
        assert_eq!(connect.start_ns, q.span.start_ns, "{mode:?}");
        assert!(connect.end_ns >= tcp.connect.unwrap().end_ns);
        assert_eq!(lab.quic_handshake_count(), 0);
        assert!(lab.http_requests().iter().all(|r| r.version != "HTTP/3"));

        // Forced, the same failure fails the load.
        let load = fetch_in_lab(&lab, "https://www.shop.test/", fetch::FetchOptions { connect_timeout: Duration::from_millis(700), ..with_http3(&lab, Http3Mode::Force) });
        let f = load.error.as_ref().expect("a failed load");
        let want = if mode == Http3::Refuse { Code::QuicProtocolError } else { Code::QuicHandshakeFailed };
        assert_eq!(f.code, want, "{mode:?}: {f:?}");
        assert!(load.connections.iter().all(|c| c.quic.is_some()), "no TCP when forced");
    }
}

#[test]
fn cli_http3_waterfall_and_har() {
    let Some(lab) = h3_lab("cli_http3_waterfall_and_har", Http3::On) else {
        return;
    };
    let ca = lab.ca_pem_path().to_str().unwrap().to_owned();
    let out = tracer_fetch(&lab, &["--cacert", &ca, "--http3", "https://www.shop.test/"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for want in ["HTTP/3", "QUIC QUICv1 10.77.0.3:443", "via --http3", "alpn=h3", "TLSv1.3"] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}");
    }
    let out = tracer_fetch(&lab, &["--cacert", &ca, "--http3", "--json", "https://www.shop.test/"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let har: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(har["log"]["entries"][0]["response"]["httpVersion"], "h3");
    // --http3 with --http1.1 is a usage error.
    let out = tracer_fetch(&lab, &["--http3", "--http1.1", "https://www.shop.test/"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
