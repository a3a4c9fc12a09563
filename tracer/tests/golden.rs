//! Page-load stitching checked against recorded kernel event streams.
//!
//! `tests/golden/<scenario>.records` holds the raw ring-buffer records (hex, one per line)
//! of one scenario, recorded on a real kernel with real clients in a lab namespace;
//! `<scenario>.json` holds the expected page-load summary. Replaying needs no root.
//!
//! Re-record (root): `cargo test -p tracer --test golden -- --ignored --test-threads=1 record`
//! Re-bless the expected summaries after a deliberate change: `UPDATE_GOLDEN=1 cargo test -p tracer --test golden`
mod support;

use std::{collections::HashSet, path::PathBuf, time::Duration};

use serde_json::{Value, json};
use tracer::{
    failure::{Code, Failure, Phase},
    stitch::{StitchConfig, Stitcher, model::PageLoad},
    stream::events::{Event, EventBody, decode_record},
};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("golden")
}

const SCENARIOS: &[&str] = &[
    "single_request",
    "redirect_chain",
    "cname_wget",
    "keepalive_subresources",
    "http2_multiplexing",
    "failed_dns",
    "refused_connect",
    "two_clients",
    "chromium_page",
    "firefox_page",
];

fn replay(records: &str) -> Vec<PageLoad> {
    let mut s = Stitcher::new(StitchConfig::default());
    let mut out = Vec::new();
    for (n, line) in records.lines().enumerate() {
        let bytes = hex_decode(line).unwrap_or_else(|| panic!("line {}: not hex", n + 1));
        let ev = decode_record(&bytes).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
        out.extend(s.on_event(&ev));
    }
    out.extend(s.finish());
    out
}

/// What a reviewer checks: who, what, in which order, with which outcome.
fn summary(pages: &[PageLoad]) -> Value {
    let mut pages: Vec<&PageLoad> = pages.iter().collect();
    pages.sort_by(|a, b| (&a.client.name, &a.url).cmp(&(&b.client.name, &b.url)));
    Value::Array(
        pages
            .iter()
            .map(|p| {
                json!({
                    "client": p.client.name,
                    "url": p.url,
                    "status": p.status,
                    "error": text(&p.error),
                    "redirect_chain": p.redirect_chain.iter().map(|i| p.requests[*i].url.clone()).collect::<Vec<_>>(),
                    "connections": p.connections.len(),
                    "requests": p.requests.iter().map(|r| json!({
                        "method": r.method, "url": r.url, "status": r.status, "protocol": r.protocol,
                        "new_connection": r.new_connection, "error": text(&r.error),
                        "phases": phases(r),
                    })).collect::<Vec<_>>(),
                    "dns": p.dns.iter().map(|d| json!({
                        "name": d.name, "qtypes": d.qtypes, "rcode": d.rcode, "cname_chain": d.cname_chain,
                        "addresses": d.addresses, "error": text(&d.error),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// A failure in its stored text form.
fn text(f: &Option<Failure>) -> Option<String> {
    f.as_ref().map(Failure::text)
}

fn phases(r: &tracer::stitch::model::Request) -> Vec<&'static str> {
    let t = &r.timings;
    [("dns", t.dns), ("tcp", t.tcp), ("ssl", t.ssl), ("send", t.send), ("wait", t.wait), ("receive", t.receive)]
        .into_iter()
        .filter(|(_, v)| *v >= 0.0)
        .map(|(n, _)| n)
        .collect()
}

/// Timing invariants every stitched page load must satisfy.
fn check_invariants(name: &str, pages: &[PageLoad]) {
    for p in pages {
        assert!(p.ended_ns >= p.started_ns, "{name}: page ends before it starts");
        for r in &p.requests {
            assert!(r.ended_ns >= r.started_ns, "{name}: {:?} ends before it starts", r.url);
            assert!(r.started_ns >= p.started_ns && r.ended_ns <= p.ended_ns, "{name}: request outside its page load");
            let t = &r.timings;
            for v in [t.blocked, t.dns, t.connect, t.tcp, t.ssl, t.send, t.wait, t.receive] {
                assert!(v == -1.0 || v >= 0.0, "{name}: phase {v}");
            }
            if t.connect >= 0.0 && t.ssl >= 0.0 {
                assert!(t.connect >= t.ssl, "{name}: HAR connect includes ssl");
            }
            if !r.new_connection {
                assert!(t.dns < 0.0 && t.connect < 0.0 && t.ssl < 0.0, "{name}: reused connection pays no setup");
            }
            // The phases fit inside the request's span (1 ms of rounding slack).
            let span = (r.ended_ns - r.started_ns) as f64 / 1e6;
            assert!(t.total() <= span + 1.0, "{name}: phases {} > span {span} for {:?}", t.total(), r.url);
        }
    }
}

#[test]
fn golden_scenarios_stitch_as_recorded() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut missing = Vec::new();
    for name in SCENARIOS {
        let records = golden_dir().join(format!("{name}.records"));
        let Ok(text) = std::fs::read_to_string(&records) else {
            missing.push(*name);
            continue;
        };
        let pages = replay(&text);
        check_invariants(name, &pages);
        // Deterministic: a second replay gives exactly the same page loads.
        assert_eq!(pages, replay(&text), "{name}: replay is not deterministic");
        let got = summary(&pages);
        let expected_path = golden_dir().join(format!("{name}.json"));
        if update {
            std::fs::write(&expected_path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
            eprintln!("wrote {}", expected_path.display());
            continue;
        }
        assert!(expected_path.exists(), "{name}: no expected summary; bless one with UPDATE_GOLDEN=1 after reviewing it");
        let expected: Value = serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
        assert_eq!(got, expected, "{name}: page loads differ from {}", expected_path.display());
    }
    assert!(missing.is_empty(), "golden recordings missing: {missing:?} (record them as root, see the file's header)");
}

fn scenario(name: &str) -> Vec<PageLoad> {
    let text = std::fs::read_to_string(golden_dir().join(format!("{name}.records")))
        .unwrap_or_else(|e| panic!("{name}.records: {e}"));
    replay(&text)
}

/// The properties each scenario exists for, stated outright (the snapshot covers the rest).
#[test]
fn scenarios_show_what_they_are_about() {
    let p = scenario("redirect_chain");
    assert_eq!(p.len(), 1, "one page load for the whole redirect chain");
    let hops: Vec<_> = p[0].redirect_chain.iter().map(|i| (&p[0].requests[*i].url, p[0].requests[*i].status)).collect();
    assert_eq!(
        hops,
        vec![(&Some("http://shop.test/".to_string()), Some(301)), (&Some("https://www.shop.test/".to_string()), Some(200))]
    );
    assert_eq!(p[0].status, Some(200));
    let www = p[0].dns.iter().find(|d| d.name == "www.shop.test").expect("www lookup");
    assert_eq!(www.cname_chain, vec!["www.shop.test", "edge.cdn.test"]);

    let p = scenario("http2_multiplexing");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].connections.len(), 1, "three streams over one connection");
    assert_eq!(p[0].requests.len(), 3);
    assert!(p[0].requests.iter().all(|r| r.protocol.as_deref() == Some("HTTP/2") && r.status == Some(200)));
    assert_eq!(p[0].requests.iter().filter(|r| r.new_connection).count(), 1);

    let p = scenario("keepalive_subresources");
    assert_eq!((p[0].connections.len(), p[0].requests.len()), (1, 4), "four requests over one kept-alive connection");
    let big = p[0].requests.iter().find(|r| r.url.as_deref() == Some("https://www.shop.test/bytes/20000")).unwrap();
    assert!(big.response_bytes >= 20_000, "body bytes counted beyond the capture: {}", big.response_bytes);

    let p = scenario("failed_dns");
    assert_eq!(p[0].error, Some(Failure::bare(Phase::Dns, Code::NameNotResolved)));
    assert!(p[0].requests[0].timings.dns > 0.0);

    let p = scenario("refused_connect");
    assert_eq!(p[0].error, Some(Failure::bare(Phase::Connect, Code::ConnectionRefused)));
    assert_eq!(p[0].requests.len(), 1);

    // Real browsers: the page load is the browser's (not its network process's thread), with
    // the redirect hop, the CNAME chain and the HTTPS-record lookups in its dns phase, every
    // sub-resource, and the browser's background lookups kept out of it.
    for (name, client, protocol, qtypes) in [
        ("chromium_page", "chromium", "HTTP/2", vec!["HTTPS", "A"]),
        ("firefox_page", "firefox-esr", "HTTP/2", vec!["HTTPS", "A", "AAAA"]),
    ] {
        let pages = scenario(name);
        let p: Vec<_> = pages.iter().filter(|p| p.url.as_deref() == Some("http://shop.test/")).collect();
        assert_eq!(p.len(), 1, "{name}: one page load of the navigation");
        let p = p[0];
        assert_eq!(p.client.name, client, "{name}");
        let hops: Vec<_> = p.redirect_chain.iter().map(|i| (p.requests[*i].url.clone().unwrap(), p.requests[*i].status)).collect();
        assert_eq!(hops, vec![("http://shop.test/".into(), Some(301)), ("https://www.shop.test/".into(), Some(200))], "{name}");
        let www = p.dns.iter().find(|d| d.name == "www.shop.test").expect("www lookup");
        assert_eq!(www.cname_chain, vec!["www.shop.test", "edge.cdn.test"], "{name}");
        assert_eq!(www.qtypes, qtypes, "{name}: A and HTTPS records asked in one lookup");
        let doc = &p.requests[p.redirect_chain[1]];
        assert_eq!(doc.protocol.as_deref(), Some(protocol), "{name}");
        assert_eq!(p.dns[doc.dns.unwrap()].name, "www.shop.test", "{name}: the document's lookup");
        assert!(doc.timings.dns >= 0.0 && doc.timings.tcp >= 0.0 && doc.timings.ssl >= 0.0, "{name}: {:?}", doc.timings);
        for path in ["/app.css", "/app.js", "/logo.png"] {
            assert!(
                p.requests.iter().any(|r| r.host.as_deref() == Some("static.shop.test") && r.path.as_deref() == Some(path) && r.status == Some(200)),
                "{name}: {path}"
            );
        }
        assert!(p.dns.iter().all(|d| d.name.ends_with(".test")) || name == "firefox_page", "{name}: background lookups kept out");
    }

    let p = scenario("two_clients");
    let mut clients: Vec<_> = p.iter().map(|p| p.client.name.as_str()).collect();
    clients.sort();
    assert_eq!(clients, vec!["curl", "wget"], "concurrent clients are separate page loads");
}

#[test]
fn truncated_recordings_never_panic() {
    // Cutting a stream anywhere (a crash mid-recording) must still stitch without panics.
    for (name, step) in [("redirect_chain", 3), ("chromium_page", 7), ("firefox_page", 7)] {
        let Ok(text) = std::fs::read_to_string(golden_dir().join(format!("{name}.records"))) else {
            panic!("{name}.records missing");
        };
        let lines: Vec<&str> = text.lines().collect();
        for cut in (0..lines.len()).step_by(step) {
            let pages = replay(&lines[..cut].join("\n"));
            check_invariants("cut", &pages);
        }
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---- recording (root) ----

fn scenario_commands(name: &str, ca: &str) -> Vec<Vec<String>> {
    let c = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match name {
        "single_request" => vec![c(&["curl", "-sS", "-o", "/dev/null", "--http1.1", "--cacert", ca, "https://static.shop.test/echo"])],
        "redirect_chain" => vec![c(&["curl", "-sS", "-o", "/dev/null", "-L", "--http1.1", "--cacert", ca, "http://shop.test/"])],
        "cname_wget" => vec![c(&["wget", "-q", "-O", "/dev/null", "--ca-certificate", ca, "https://www.shop.test/"])],
        "keepalive_subresources" => vec![c(&[
            "curl", "-sS", "--http1.1", "--cacert", ca, "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
            "https://www.shop.test/", "https://www.shop.test/echo", "https://www.shop.test/bytes/20000", "https://www.shop.test/echo",
        ])],
        "http2_multiplexing" => vec![c(&[
            "curl", "-sS", "--http2", "--parallel", "--cacert", ca,
            "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
            "https://static.shop.test/app.css", "https://static.shop.test/app.js", "https://static.shop.test/logo.png",
        ])],
        "failed_dns" => vec![c(&["curl", "-sS", "-o", "/dev/null", "--cacert", ca, "https://nope.shop.test/"])],
        "refused_connect" => vec![c(&["curl", "-sS", "-o", "/dev/null", "http://refused.shop.test/"])],
        "two_clients" => vec![
            c(&["curl", "-sS", "-o", "/dev/null", "--http1.1", "--cacert", ca, "https://www.shop.test/"]),
            c(&["wget", "-q", "-O", "/dev/null", "--ca-certificate", ca, "https://static.shop.test/app.css"]),
        ],
        "chromium_page" | "firefox_page" => vec![],
        other => panic!("unknown scenario {other}"),
    }
}

/// The browser scenarios: Chromium (built-in BoringSSL, HTTP/2) and Firefox (NSS/NSPR)
/// loading the lab's page (http://shop.test/ -> 301 -> https://www.shop.test/ and its
/// sub-resources), each with a fresh profile under `dir` that trusts the lab CA.
fn browser_command(name: &str, lab: &tracer::lab::Lab, dir: &std::path::Path) -> Option<std::process::Command> {
    match name {
        "chromium_page" => {
            let home = support::browsers::chromium_home(dir, lab);
            Some(support::browsers::chromium_cmd(lab, &home, &[], "http://shop.test/"))
        }
        "firefox_page" => Some(support::browsers::firefox_cmd(lab, dir, "http://shop.test/")),
        _ => None,
    }
}

/// Keep the records of the clients' process trees and of their sockets (state changes in
/// softirq context carry another task's pid).
fn filter_records(records: Vec<(Vec<u8>, Event)>, roots: &[u32]) -> Vec<Vec<u8>> {
    let mut tree: HashSet<u32> = roots.iter().copied().collect();
    for (_, e) in &records {
        if let EventBody::Fork { child_pid } = &e.body {
            if tree.contains(&e.tgid) {
                tree.insert(*child_pid);
            }
        }
    }
    let mut sockets = HashSet::new();
    let mut dsts = HashSet::new();
    let mut socket_fds = HashSet::new();
    for (_, e) in &records {
        if let EventBody::Connect { skaddr, dst, fd, .. } = &e.body {
            if tree.contains(&e.tgid) {
                sockets.insert(*skaddr);
                dsts.extend(*dst);
                socket_fds.insert((e.tgid, *fd));
            }
        }
    }
    records
        .into_iter()
        .filter(|(_, e)| match &e.body {
            EventBody::TcpState { skaddr, .. } => sockets.contains(skaddr),
            EventBody::SockError { dst, .. } => dst.is_some_and(|d| dsts.contains(&d)),
            // Plaintext calls on fds that were never a connected socket (Firefox's PR_Write to
            // its profile files) are left out; those on fd numbers that were (a file reusing a
            // closed socket's number: noise the stitcher must ignore) are kept.
            EventBody::TlsData { fd, .. } if *fd >= 0 => tree.contains(&e.tgid) && socket_fds.contains(&(e.tgid, *fd)),
            _ => tree.contains(&e.tgid),
        })
        .map(|(raw, _)| raw)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "records golden files: run as root, on purpose"]
async fn record_golden_scenarios() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "recording needs root");
    let only = std::env::var("GOLDEN_ONLY").ok();
    std::fs::create_dir_all(golden_dir()).unwrap();
    for name in SCENARIOS {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let lab = tracer::lab::Lab::start(tracer::lab::LabConfig {
            dns_delay: Duration::from_millis(20),
            think_time: Duration::from_millis(30),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut probes = tracer::probes::Probes::load(&tracer::probes::ProbeConfig::default()).unwrap();
        let mut rx = tracer::stream::spawn_raw_reader(&mut probes, 1 << 18, Default::default()).unwrap();
        let ca = lab.ca_pem_path().to_str().unwrap().to_string();
        let mut children = Vec::new();
        for cmd in scenario_commands(name, &ca) {
            let child = lab.exec_command(&cmd[0]).args(&cmd[1..]).spawn().unwrap();
            children.push(child);
        }
        let scratch = std::env::temp_dir().join(format!("tracer-golden-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).unwrap();
        if let Some(mut cmd) = browser_command(name, &lab, &scratch) {
            use std::os::unix::process::CommandExt as _;
            cmd.process_group(0).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
            children.push(cmd.spawn().unwrap());
        }
        let roots: Vec<u32> = children.iter().map(|c| c.id()).collect();
        for mut c in children {
            // Bounded: a browser that does not finish is killed (its whole process group).
            let deadline = std::time::Instant::now() + Duration::from_secs(90);
            let status = loop {
                if let Some(st) = c.try_wait().unwrap() {
                    break Some(st);
                }
                if std::time::Instant::now() > deadline {
                    unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
                    let _ = c.kill();
                    let _ = c.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            eprintln!("{name}: client exited with {:?}", status.and_then(|s| s.code()));
        }
        let _ = std::fs::remove_dir_all(&scratch);
        // Collect until the stream has been quiet for a second (bounded to 15 s).
        let mut all = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                Ok(Some(r)) => all.push(r),
                _ => break,
            }
        }
        let kept = filter_records(all, &roots);
        let text: String = kept.iter().map(|r| hex_encode(r) + "\n").collect();
        std::fs::write(golden_dir().join(format!("{name}.records")), text).unwrap();
        eprintln!("{name}: {} records", kept.len());
        drop(probes);
        drop(lab);
    }
}
