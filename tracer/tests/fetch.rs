//! The reference fetcher against the lab: the library inside the lab's namespace (a thread made
//! with `spawn_in_netns`, DNS pointed at the lab server), and the `tracer fetch` binary through
//! `ip netns exec` (the namespace's own resolv.conf), next to curl on the same URLs.
//!
//! Needs root (the lab creates a network namespace). Without root each test prints SKIPPED and
//! passes; with CI=true it fails instead.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Output};
use std::time::Duration;

use tracer::clock::monotonic_ns;
use tracer::failure::{Code, Phase};
use tracer::fetch::{self, FetchOptions, Initiator, PageLoad};
use tracer::lab::{Lab, LabConfig, hosts};

mod support;
use support::{TRACER, require, run_bounded};

#[path = "fetch_h3/cases.rs"]
mod http3;

const DNS_DELAY: Duration = Duration::from_millis(50);
const THINK: Duration = Duration::from_millis(100);

/// [`support::lab_or_skip`] for these plain `#[test]`s.
fn blocking_lab_or_skip(test: &str, config: LabConfig) -> Option<Lab> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(support::lab_or_skip(test, config))
}

/// A lab whose DNS answers after 50 ms and whose servers think 100 ms: phases of tens of ms.
fn slow_lab(test: &str) -> Option<Lab> {
    blocking_lab_or_skip(
        test,
        LabConfig {
            dns_delay: DNS_DELAY,
            think_time: THINK,
            ..LabConfig::default()
        },
    )
}

fn lab_options(lab: &Lab) -> FetchOptions {
    FetchOptions {
        nameservers: Some(vec![lab.dns_server()]),
        cacert: Some(lab.ca_pem_path().to_owned()),
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(10),
        ..FetchOptions::default()
    }
}

/// Runs the library's fetch on a thread inside the lab's namespace.
fn fetch_in_lab(lab: &Lab, url: &str, opts: FetchOptions) -> PageLoad {
    let url = url.to_owned();
    let handle = lab.spawn_in_netns(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(fetch::fetch(&url, &opts))
    });
    handle
        .join()
        .expect("fetch thread")
        .expect("entering the lab namespace")
        .expect("fetch")
}

fn run(cmd: Command) -> Output {
    run_bounded(cmd, Duration::from_secs(20))
}

/// `tracer fetch ARGS` inside the lab (resolv.conf of the namespace).
fn tracer_fetch(lab: &Lab, args: &[&str]) -> Output {
    let mut cmd = lab.exec_command(TRACER);
    cmd.arg("fetch")
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("TRACER_DB");
    run(cmd)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ms(load: &PageLoad, entry: usize, p: Phase) -> f64 {
    load.entries[entry]
        .timings
        .ms(p)
        .unwrap_or_else(|| panic!("entry {entry} has no {p} phase: {load:#?}"))
}

/// Every phase inside the entry's span and in browser order; all inside the load's span.
fn check_stamps(load: &PageLoad) {
    for e in &load.entries {
        assert!(
            e.span.start_ns >= load.span.start_ns && e.span.end_ns <= load.span.end_ns,
            "entry {} outside the load",
            e.id
        );
        let mut last = e.span.start_ns;
        for p in Phase::TIMED {
            if let Some(t) = e.timings.get(p) {
                assert!(
                    t.start_ns >= last,
                    "entry {} phase {p} starts before the previous phase ended",
                    e.id
                );
                assert!(
                    t.end_ns >= t.start_ns && t.end_ns <= e.span.end_ns,
                    "entry {} phase {p} out of its span",
                    e.id
                );
                let d = (t.end_ns - t.start_ns) as f64 / 1e6;
                assert!(
                    (d - t.ms).abs() < 0.01,
                    "entry {} phase {p}: ms {} vs stamps {d}",
                    e.id,
                    t.ms
                );
                last = t.end_ns;
            }
        }
    }
}

#[test]
fn redirect_chain_cname_chain_and_every_phase() {
    let Some(lab) = slow_lab("redirect_chain_cname_chain_and_every_phase") else {
        return;
    };
    let before = monotonic_ns();
    let load = fetch_in_lab(&lab, "shop.test", lab_options(&lab));
    let after = monotonic_ns();
    assert!(!load.failed(), "{load:#?}");
    assert_eq!(load.url, "http://shop.test/");
    assert_eq!(load.final_url, "https://www.shop.test/");
    // The same clock as bpf_ktime_get_ns: the stamps fall between the test's own readings.
    assert!(before <= load.span.start_ns && load.span.end_ns <= after);
    check_stamps(&load);

    // Hop 0: http://shop.test/ -> 301, plain HTTP/1.1, no TLS.
    assert_eq!(load.entries.len(), 2, "{load:#?}");
    let (hop0, hop1) = (&load.entries[0], &load.entries[1]);
    assert_eq!(hop0.url, "http://shop.test/");
    assert_eq!(hop0.status, Some(301));
    assert_eq!(hop0.redirect_url.as_deref(), Some("https://www.shop.test/"));
    assert_eq!(hop0.http_version.as_deref(), Some("HTTP/1.1"));
    assert!(hop0.timings.tls.is_none());
    // Hop 1: https://www.shop.test/ -> 200 over HTTP/2, its own connection.
    assert_eq!(hop1.url, "https://www.shop.test/");
    assert_eq!(hop1.status, Some(200));
    assert_eq!(hop1.redirected_from, Some(0));
    assert_eq!(hop1.hop, 1);
    assert_eq!(hop1.http_version.as_deref(), Some("HTTP/2"));
    assert_ne!(hop0.connection_id, hop1.connection_id);
    assert_eq!(hop1.body_size as usize, tracer::lab::PAGE_HTML.len());
    assert_eq!(
        hop1.server_address,
        Some(SocketAddr::new(IpAddr::V4(hosts::EDGE_ADDR), 443))
    );

    // Every phase measured, and the lab's delays show where they should.
    for p in Phase::TIMED {
        ms(&load, 1, p);
    }
    for entry in [0, 1] {
        let dns = ms(&load, entry, Phase::Dns);
        assert!(
            (45.0..1000.0).contains(&dns),
            "entry {entry} dns {dns} ms (lab delay 50 ms)"
        );
        let wait = ms(&load, entry, Phase::Wait);
        assert!(
            (95.0..1000.0).contains(&wait),
            "entry {entry} wait {wait} ms (think time 100 ms)"
        );
        assert!(ms(&load, entry, Phase::Connect) < 50.0);
    }
    assert!(ms(&load, 1, Phase::Tls) > 0.0);

    // DNS: the CNAME chain, the answers and TTLs; A and AAAA asked, edge.cdn.test never asked.
    let www = load
        .dns
        .iter()
        .find(|d| d.host == "www.shop.test")
        .expect("lookup of www.shop.test");
    assert_eq!(www.cname_chain, ["www.shop.test", "edge.cdn.test"]);
    assert_eq!(www.addresses, [IpAddr::V4(hosts::EDGE_ADDR)]);
    assert_eq!(www.min_ttl, Some(60));
    assert_eq!(www.nameservers, [lab.dns_server()]);
    let a = www.queries.iter().find(|q| q.qtype == "A").unwrap();
    assert_eq!(a.rcode.as_deref(), Some("NOERROR"));
    assert!(a.records.iter().any(|r| r.rtype == "CNAME"
        && r.name == "www.shop.test"
        && r.data == "edge.cdn.test"
        && r.ttl == 60));
    assert!(
        a.records
            .iter()
            .any(|r| r.rtype == "A" && r.name == "edge.cdn.test" && r.data == "10.77.0.3")
    );
    let asked: Vec<(String, u16)> = lab
        .dns_queries()
        .iter()
        .map(|q| (q.name.clone(), q.qtype))
        .collect();
    assert!(
        asked.contains(&("www.shop.test".into(), 1))
            && asked.contains(&("www.shop.test".into(), 28)),
        "{asked:?}"
    );
    assert!(
        !asked.iter().any(|(n, _)| n == "edge.cdn.test"),
        "a stub resolver does not chase the CNAME: {asked:?}"
    );

    // TLS: version, suite, ALPN, SNI and the lab's chain.
    let conn = &load.connections[hop1.connection_id.unwrap()];
    let tls = conn.tls.as_ref().expect("TLS info");
    assert_eq!(tls.version.as_deref(), Some("TLSv1.3"));
    assert!(
        tls.cipher_suite
            .as_deref()
            .is_some_and(|s| s.starts_with("TLS13_")),
        "{tls:?}"
    );
    assert_eq!(tls.alpn.as_deref(), Some("h2"));
    assert_eq!(tls.sni.as_deref(), Some("www.shop.test"));
    assert!(tls.verified);
    let leaf = &tls.certificates[0];
    assert!(leaf.subject.contains("www.shop.test"), "{leaf:?}");
    assert!(leaf.issuer.contains("tracer lab CA"), "{leaf:?}");
    assert!(
        leaf.not_after.len() == 20 && leaf.not_after.ends_with('Z'),
        "{leaf:?}"
    );
    assert!(
        leaf.subject_alt_names.iter().any(|n| n == "www.shop.test"),
        "{leaf:?}"
    );
    assert_eq!(conn.attempts.len(), 1);
    assert!(conn.bytes_received > 0 && conn.bytes_sent > 0);

    // The lab saw exactly these two requests.
    let reqs: Vec<(String, String, u16)> = lab
        .http_requests()
        .iter()
        .map(|r| (r.host.clone(), r.version.clone(), r.status))
        .collect();
    assert_eq!(
        reqs,
        [
            ("shop.test".into(), "HTTP/1.1".into(), 301),
            ("www.shop.test".into(), "HTTP/2".into(), 200)
        ]
    );
}

#[test]
fn page_load_fetches_subresources_over_shared_connections() {
    let Some(lab) = slow_lab("page_load_fetches_subresources_over_shared_connections") else {
        return;
    };
    let load = fetch_in_lab(
        &lab,
        "http://shop.test/",
        FetchOptions {
            page: true,
            ..lab_options(&lab)
        },
    );
    assert!(!load.failed(), "{load:#?}");
    check_stamps(&load);
    let subs: Vec<_> = load
        .entries
        .iter()
        .filter(|e| matches!(e.initiator, Initiator::Element { .. }))
        .collect();
    let mut urls: Vec<&str> = subs.iter().map(|e| e.url.as_str()).collect();
    urls.sort();
    assert_eq!(
        urls,
        [
            "https://static.shop.test/app.css",
            "https://static.shop.test/app.js",
            "https://static.shop.test/logo.png"
        ]
    );
    assert!(
        subs.iter()
            .all(|e| e.status == Some(200) && e.http_version.as_deref() == Some("HTTP/2"))
    );
    // HTTP/2: one connection carries the three; the first opened it, the others reused it.
    let conn_ids: std::collections::BTreeSet<_> = load
        .entries
        .iter()
        .map(|e| e.connection_id.unwrap())
        .collect();
    assert!(
        conn_ids.len() < load.entries.len(),
        "fewer connections than requests"
    );
    assert_eq!(
        conn_ids.len(),
        3,
        "shop.test:80, www.shop.test:443, static.shop.test:443"
    );
    let opened: Vec<_> = subs.iter().filter(|e| !e.connection_reused).collect();
    assert_eq!(opened.len(), 1);
    for e in subs.iter().filter(|e| e.connection_reused) {
        assert!(e.timings.dns.is_none() && e.timings.connect.is_none() && e.timings.tls.is_none());
        assert_eq!(e.connection_id, opened[0].connection_id);
    }
    let static_conn = &load.connections[opened[0].connection_id.unwrap()];
    assert_eq!(static_conn.requests, 3);
    // Sub-resources start after the document's body.
    let doc_end = load
        .entries
        .iter()
        .filter(|e| e.initiator == Initiator::Document)
        .map(|e| e.span.end_ns)
        .max()
        .unwrap();
    assert!(subs.iter().all(|e| e.span.start_ns >= doc_end));
    // One TLS handshake per https origin in the lab.
    assert_eq!(lab.tls_handshake_count(), 2);

    // HTTP/1.1 with one connection per host: the three go one after the other over one
    // kept-alive connection, and wait for it (blocked).
    lab.reset_stats();
    let opts = FetchOptions {
        page: true,
        http1_only: true,
        max_connections_per_host: 1,
        ..lab_options(&lab)
    };
    let load = fetch_in_lab(&lab, "http://shop.test/", opts);
    assert!(!load.failed(), "{load:#?}");
    let subs: Vec<_> = load
        .entries
        .iter()
        .filter(|e| matches!(e.initiator, Initiator::Element { .. }))
        .collect();
    assert_eq!(subs.len(), 3);
    assert!(
        subs.iter()
            .all(|e| e.http_version.as_deref() == Some("HTTP/1.1"))
    );
    let ids: std::collections::BTreeSet<_> = subs.iter().map(|e| e.connection_id).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(subs.iter().filter(|e| e.connection_reused).count(), 2);
    let max_blocked = subs
        .iter()
        .map(|e| e.timings.ms(Phase::Blocked).unwrap())
        .fold(0.0, f64::max);
    assert!(
        max_blocked >= 2.0 * THINK.as_millis() as f64 * 0.9,
        "the last one waited for two others: {max_blocked} ms"
    );
    assert_eq!(lab.tcp_accept_count(), 3);
}

/// A redirect to a URL the fetcher refuses is a failure whose reason names the target
/// redacted: no user-info, no query value (the raw Location is never stored).
#[test]
fn a_refused_redirect_is_reported_redacted() {
    let Some(lab) = blocking_lab_or_skip("a_refused_redirect_is_reported_redacted", LabConfig::default()) else {
        return;
    };
    let load = fetch_in_lab(&lab, "https://www.shop.test/unsafe-redirect", lab_options(&lab));
    let f = load.error.as_ref().expect("failure");
    assert_eq!((f.phase, f.code.clone()), (Phase::Redirect, Code::UnsafeRedirect), "{f:?}");
    let reason = f.detail.as_deref().unwrap_or_default();
    assert_eq!(reason, "redirect to ftp://files.shop.test/x?token=* cannot be followed");
    let all = serde_json::to_string(&load).unwrap();
    assert!(!all.contains(tracer::lab::LAB_SECRET), "{all}");
}

#[test]
fn nxdomain_and_connection_refused_are_failed_phases() {
    let Some(lab) = slow_lab("nxdomain_and_connection_refused_are_failed_phases") else {
        return;
    };
    let load = fetch_in_lab(&lab, "http://nope.shop.test/", lab_options(&lab));
    assert!(load.failed());
    let f = load.error.as_ref().expect("failure");
    assert_eq!(
        (f.phase, f.code.clone()),
        (Phase::Dns, Code::NameNotResolved)
    );
    assert!(f.detail.as_deref().unwrap_or_default().contains("NXDOMAIN"), "{f:?}");
    let e = &load.entries[0];
    assert!(ms(&load, 0, Phase::Dns) >= 45.0);
    assert!(e.timings.connect.is_none() && e.status.is_none() && e.connection_id.is_none());
    assert_eq!(
        load.dns[0]
            .queries
            .iter()
            .filter(|q| q.rcode.as_deref() == Some("NXDOMAIN"))
            .count(),
        2
    );

    let load = fetch_in_lab(&lab, "https://refused.shop.test/", lab_options(&lab));
    let f = load.error.as_ref().expect("failure");
    assert_eq!(
        (f.phase, f.code.clone()),
        (Phase::Connect, Code::ConnectionRefused)
    );
    assert!(
        f.detail.as_deref().unwrap_or_default().contains("10.77.0.5:443") && f.detail.as_deref().unwrap_or_default().contains("ECONNREFUSED"),
        "{f:?}"
    );
    let e = &load.entries[0];
    assert!(e.timings.dns.is_some() && e.timings.connect.is_some() && e.timings.tls.is_none());
    let conn = &load.connections[e.connection_id.unwrap()];
    assert_eq!(conn.attempts.len(), 1);
    assert_eq!(
        conn.attempts[0].address,
        SocketAddr::new(IpAddr::V4(hosts::REFUSED_ADDR), 443)
    );
    assert_eq!(
        conn.attempts[0].failure.as_ref().unwrap().code,
        Code::ConnectionRefused
    );
}

#[test]
fn untrusted_certificate_fails_tls_unless_insecure() {
    let Some(lab) = blocking_lab_or_skip(
        "untrusted_certificate_fails_tls_unless_insecure",
        LabConfig::default(),
    ) else {
        return;
    };
    // No --cacert: the system store does not know the lab CA.
    let opts = FetchOptions {
        cacert: None,
        ..lab_options(&lab)
    };
    let load = fetch_in_lab(&lab, "https://www.shop.test/", opts.clone());
    let f = load.error.as_ref().expect("failure");
    assert_eq!(
        (f.phase, f.code.clone()),
        (Phase::Tls, Code::CertAuthorityInvalid)
    );
    let tls = load.connections[0].tls.as_ref().unwrap();
    assert!(
        tls.certificates[0].subject.contains("www.shop.test"),
        "the chain is recorded even so: {tls:?}"
    );
    assert!(load.entries[0].timings.tls.is_some() && load.entries[0].timings.send.is_none());

    let load = fetch_in_lab(
        &lab,
        "https://www.shop.test/",
        FetchOptions {
            insecure: true,
            ..opts
        },
    );
    assert!(!load.failed(), "{load:#?}");
    assert!(!load.connections[0].tls.as_ref().unwrap().verified);
}

#[test]
fn alpn_chooses_http2_or_http11() {
    let Some(lab) = blocking_lab_or_skip("alpn_chooses_http2_or_http11", LabConfig::default())
    else {
        return;
    };
    for (http1_only, alpn, version) in [(false, "h2", "HTTP/2"), (true, "http/1.1", "HTTP/1.1")] {
        lab.reset_stats();
        let load = fetch_in_lab(
            &lab,
            "https://www.shop.test/echo",
            FetchOptions {
                http1_only,
                ..lab_options(&lab)
            },
        );
        assert!(!load.failed(), "{load:#?}");
        assert_eq!(
            load.connections[0].tls.as_ref().unwrap().alpn.as_deref(),
            Some(alpn)
        );
        assert_eq!(load.entries[0].http_version.as_deref(), Some(version));
        assert_eq!(
            load.entries[0].body_size as usize,
            tracer::lab::ECHO_BODY.len()
        );
        assert_eq!(lab.http_requests()[0].version, version);
        // Header sizes are known for HTTP/1.1 only.
        assert_eq!(load.entries[0].response_headers_size.is_some(), http1_only);
    }
}

#[test]
fn cli_waterfall_har_exit_codes_and_baseline() {
    let Some(lab) = slow_lab("cli_waterfall_har_exit_codes_and_baseline") else {
        return;
    };
    let ca = lab.ca_pem_path().to_str().unwrap().to_owned();

    // The waterfall, through the namespace's own resolv.conf.
    let out = tracer_fetch(&lab, &["--cacert", &ca, "http://shop.test/"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for want in [
        "DNS Lookup",
        "TCP Connection",
        "TLS Handshake",
        "Server Processing",
        "Content Transfer",
        "www.shop.test -> edge.cdn.test -> 10.77.0.3",
        "301 Moved Permanently",
        "HTTP/2",
        "TLSv1.3",
        "Waterfall",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}");
    }

    // --json: HAR 1.2 with -1 for the phases that did not happen.
    let before = monotonic_ns();
    let out = tracer_fetch(
        &lab,
        &["--cacert", &ca, "--page", "--json", "http://shop.test/"],
    );
    let after = monotonic_ns();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let har: serde_json::Value = serde_json::from_slice(&out.stdout).expect("HAR is JSON");
    let log = &har["log"];
    assert_eq!(log["version"], "1.2");
    assert_eq!(log["creator"]["name"], "tracer");
    assert_eq!(log["pages"][0]["id"], "page_1");
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    let mut reused = 0;
    for e in entries {
        let t = &e["timings"];
        for k in [
            "blocked", "dns", "connect", "send", "wait", "receive", "ssl",
        ] {
            let v = t[k]
                .as_f64()
                .unwrap_or_else(|| panic!("timings.{k} missing in {e}"));
            assert!(v == -1.0 || v >= 0.0, "timings.{k} = {v}");
        }
        let sum: f64 = ["blocked", "dns", "connect", "send", "wait", "receive"]
            .iter()
            .map(|k| t[*k].as_f64().unwrap())
            .filter(|v| *v >= 0.0)
            .sum();
        assert!(
            (e["time"].as_f64().unwrap() - sum).abs() < 0.01,
            "time is the sum of the phases: {e}"
        );
        for k in ["startedDateTime", "request", "response", "cache", "pageref"] {
            assert!(!e[k].is_null(), "{k} missing in {e}");
        }
        assert!(
            e["request"]["headers"].is_array() && e["response"]["content"]["mimeType"].is_string()
        );
        let start = e["_monotonic"]["start_ns"].as_u64().unwrap();
        assert!(
            before <= start && start <= after,
            "monotonic stamps on the test's clock"
        );
        if e["_connectionReused"] == true {
            reused += 1;
            assert_eq!(
                (t["dns"].as_f64(), t["connect"].as_f64(), t["ssl"].as_f64()),
                (Some(-1.0), Some(-1.0), Some(-1.0)),
                "{e}"
            );
        }
    }
    assert_eq!(
        reused, 2,
        "two of the three static.shop.test requests reuse the first's HTTP/2 connection"
    );
    let first = &entries[0];
    assert_eq!(first["request"]["url"], "http://shop.test/");
    assert_eq!(first["response"]["status"], 301);
    assert_eq!(first["response"]["redirectURL"], "https://www.shop.test/");
    assert_eq!(first["timings"]["ssl"], -1.0, "no TLS on the http:// hop");
    assert!(first["timings"]["connect"].as_f64().unwrap() >= 0.0);
    assert_eq!(entries[1]["response"]["httpVersion"], "HTTP/2");
    assert!(entries[1]["timings"]["ssl"].as_f64().unwrap() > 0.0);
    let connect = entries[1]["timings"]["connect"].as_f64().unwrap();
    assert!(
        connect >= entries[1]["timings"]["ssl"].as_f64().unwrap(),
        "HAR's connect includes ssl"
    );

    // Exit codes: invalid URL 2, failed phases 1 with the browser's error.
    for (args, code, want) in [
        (vec!["http://exa mple.test/"], 2, "invalid URL"),
        (vec!["ftp://shop.test/"], 2, "unsupported scheme"),
        (
            vec!["--cacert", &ca, "nope.shop.test"],
            1,
            "ERR_NAME_NOT_RESOLVED",
        ),
        (
            vec!["--cacert", &ca, "https://refused.shop.test/"],
            1,
            "ERR_CONNECTION_REFUSED",
        ),
        (
            vec!["https://www.shop.test/"],
            1,
            "ERR_CERT_AUTHORITY_INVALID",
        ),
        (
            vec!["--cacert", "/nonexistent/ca.pem", "https://www.shop.test/"],
            2,
            "--cacert",
        ),
    ] {
        let out = tracer_fetch(&lab, &args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: no {want:?} in {stderr}");
    }

    // --db: stored as a baseline for its URL.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tracer.db");
    let out = tracer_fetch(
        &lab,
        &["--cacert", &ca, "--db", db.to_str().unwrap(), "shop.test"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows = rt.block_on(async {
        let pool = tracer::history::db::open(&db).await.unwrap();
        tracer::history::baselines::baselines_for(&pool, "http://shop.test/", 10)
            .await
            .unwrap()
    });
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].load.final_url, "https://www.shop.test/");
    assert_eq!(rows[0].load.entries.len(), 2);
    assert!(rows[0].error.is_none());
}

/// curl's `-w` timers are cumulative from its start; per phase: dns = namelookup,
/// connect = connect - namelookup, ssl = appconnect - connect, wait = starttransfer -
/// pretransfer (the fetcher's send + wait).
#[derive(Debug, Clone, Copy)]
struct PhaseMs {
    dns: f64,
    connect: f64,
    ssl: f64,
    wait: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
fn timings_agree_with_curl() {
    let Some(lab) = slow_lab("timings_agree_with_curl") else {
        return;
    };
    require("curl");
    let ca = lab.ca_pem_path().to_str().unwrap().to_owned();
    let url = "https://www.shop.test/";
    const RUNS: usize = 5;
    let mut curl = Vec::new();
    let mut ours = Vec::new();
    // Interleaved, so that both see the same machine load.
    for _ in 0..RUNS {
        let mut cmd = lab.exec_command("curl");
        cmd.args(["-sS", "-o", "/dev/null", "--max-time", "10", "--cacert", &ca, "-w"])
            .arg("%{time_namelookup} %{time_connect} %{time_appconnect} %{time_pretransfer} %{time_starttransfer} %{http_version}")
            .arg(url);
        let out = run(cmd);
        assert!(out.status.success(), "curl: {}", text(&out.stderr));
        let s = text(&out.stdout);
        let v: Vec<f64> = s
            .split_whitespace()
            .take(5)
            .map(|x| x.parse::<f64>().unwrap() * 1000.0)
            .collect();
        assert_eq!(
            s.split_whitespace().nth(5),
            Some("2"),
            "curl spoke HTTP/2 as the fetcher does: {s}"
        );
        curl.push(PhaseMs {
            dns: v[0],
            connect: v[1] - v[0],
            ssl: v[2] - v[1],
            wait: v[4] - v[3],
        });

        let out = tracer_fetch(&lab, &["--cacert", &ca, "--json", url]);
        assert!(out.status.success(), "tracer fetch: {}", text(&out.stderr));
        let har: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let t = &har["log"]["entries"][0]["timings"];
        let f = |k: &str| t[k].as_f64().unwrap();
        // HAR connect includes ssl; the TCP part alone is connect - ssl.
        ours.push(PhaseMs {
            dns: f("dns"),
            connect: f("connect") - f("ssl"),
            ssl: f("ssl"),
            wait: f("send") + f("wait"),
        });
    }
    // Tolerance: |fetcher - curl| <= max(15 ms, 30 %) per phase, on medians of 5 runs.
    // Why: both clients make the same exchanges with the same lab (A+AAAA in parallel, TCP,
    // a TLS 1.3 handshake, one HTTP/2 request), so the medians differ only by what each
    // client does around them: curl's resolver thread versus hickory on the runtime; OpenSSL
    // versus rustls, and curl reading the CA file inside its appconnect time (the fetcher
    // reads it before it starts; measured: the fetcher's ssl is 2-5 ms shorter); user-space
    // scheduling on a 2-core machine that other builds share (single runs vary by 5-30 ms,
    // the median of 5 removes most of it); and the lab's 1 ms timer granularity. Measured
    // medians differed by at most 5 ms. 15 ms stays well under the 50 ms DNS delay and the
    // 100 ms think time being measured, so a phase put in the wrong bucket (the think time
    // counted as TLS, a missing or extra 50 ms DNS query) still fails the test.
    type Getter = fn(&PhaseMs) -> f64;
    let phases: [(&str, Getter); 4] = [
        ("dns", |p| p.dns),
        ("connect", |p| p.connect),
        ("ssl", |p| p.ssl),
        ("wait", |p| p.wait),
    ];
    let mut report = String::from("phase     curl ms  fetcher ms  diff ms  (medians of 5 runs)\n");
    let mut bad = Vec::new();
    for (name, get) in phases {
        let c = median(curl.iter().map(get).collect());
        let o = median(ours.iter().map(get).collect());
        let diff = o - c;
        report.push_str(&format!("{name:<8} {c:>8.2} {o:>11.2} {diff:>+8.2}\n"));
        let tolerance = f64::max(15.0, 0.3 * c.max(o));
        if diff.abs() > tolerance {
            bad.push(format!(
                "{name}: curl {c:.2} ms, fetcher {o:.2} ms, tolerance {tolerance:.1} ms"
            ));
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "fetcher vs curl on {url} (lab: dns delay 50 ms, think 100 ms)\n{report}"
    );
    assert!(bad.is_empty(), "{}\n{report}", bad.join("\n"));
    // And both saw the lab's delays.
    assert!(median(ours.iter().map(|p| p.dns).collect()) >= 45.0);
    assert!(median(ours.iter().map(|p| p.wait).collect()) >= 95.0);
}
