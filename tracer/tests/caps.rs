//! Bounded state (`tracer::stitch`'s caps.rs, README "Known limits"): a client that never goes
//! quiet for the quiet window gets its work stored as a series of page loads marked as cut,
//! and what the daemon holds stays flat. Needs root (the daemon attaches its probes).
//!
//! The client is one curl process fetching a run of URLs (curl's `[1-N]` globbing, paced by
//! `--rate`) from a local HTTPS server: one TLS connection per request, never 500 ms apart.
//!
//! - `a_busy_client_is_stored_as_cut_page_loads`: seconds, with small caps set by flags; in
//!   the normal suite.
//! - `minutes_of_a_busy_client_with_the_default_caps`: `#[ignore]`d, about 8 minutes, default
//!   caps, the daemon's RSS sampled; run it with
//!   `cargo xtask test -- -p tracer --test caps -- --ignored`.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

mod support;
use support::{Reaped, daemon::Daemon, eventually, http::tls_server, require, root_or_skip, sqlite3};

/// One stored page load of a client, as the `page_loads` table has it.
#[derive(Debug)]
struct Stored {
    id: i64,
    requests: u64,
    connections: u64,
    cut: Option<String>,
}

/// curl fetching `https://SERVER/[1-count]` at `rate` (curl's `--rate`, e.g. `40/s`).
fn busy_curl(server: std::net::SocketAddr, count: u32, rate: &str) -> Reaped {
    let mut curl = Command::new(require("curl"));
    curl.args(["-sk", "--http1.1", "--max-time", "900", "--rate", rate])
        .arg(format!("https://{server}/[1-{count}]"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Reaped::spawn(&mut curl, "busy curl")
}

/// The stored page loads of process `tgid`, oldest first.
fn stored_of(d: &Daemon, tgid: u32) -> Vec<Stored> {
    let rows = sqlite3(
        &d.db,
        &["-separator", "|"],
        &format!(
            "SELECT p.id, p.request_count, p.connection_count, coalesce(p.cut, '') FROM page_loads p
             JOIN processes pr ON pr.id = p.process_id WHERE pr.tgid = {tgid} ORDER BY p.started_ns"
        ),
    );
    rows.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            Stored {
                id: f[0].parse().unwrap(),
                requests: f[1].parse().unwrap(),
                connections: f[2].parse().unwrap(),
                cut: (!f[3].is_empty()).then(|| f[3].to_string()),
            }
        })
        .collect()
}

/// Waits until `count` requests of `tgid` are stored (the last page load closes by quiet).
fn wait_stored(d: &Daemon, tgid: u32, count: u64, limit: Duration) -> Vec<Stored> {
    eventually(&format!("{count} requests of curl {tgid} stored"), limit, || {
        let pages = stored_of(d, tgid);
        (pages.iter().map(|p| p.requests).sum::<u64>() >= count).then_some(pages)
    })
}

/// The most the stitcher held (its own counts, `/api/health`) while `client` ran, sampled
/// every `every` (the health view is refreshed every second), with the daemon's RSS.
struct Samples {
    largest_open_page: u64,
    open_page_requests: u64,
    rss_kib: Vec<u64>,
}

fn sample_while(d: &Daemon, client: &mut Reaped, every: Duration, limit: Duration) -> Samples {
    let mut s = Samples { largest_open_page: 0, open_page_requests: 0, rss_kib: Vec::new() };
    let deadline = Instant::now() + limit;
    while client.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the client did not finish within {limit:?}");
        let held = &d.json("/api/health")["pipeline"]["stitcher"]["held"];
        s.largest_open_page = s.largest_open_page.max(held["largest_open_page"].as_u64().unwrap_or(0));
        s.open_page_requests = s.open_page_requests.max(held["open_page_requests"].as_u64().unwrap_or(0));
        s.rss_kib.push(rss_kib(d.pid()));
        // Sampling, not synchronisation: nothing to await between two samples.
        std::thread::sleep(every);
    }
    assert!(client.wait(Duration::from_secs(5)).success(), "curl failed");
    s
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap()
}

fn caps_hit(d: &Daemon) -> Value {
    d.json("/api/health")["pipeline"]["stitcher"]["caps_hit"].clone()
}

#[test]
fn a_busy_client_is_stored_as_cut_page_loads() {
    if !root_or_skip("caps") {
        return;
    }
    let (server, _rt) = tls_server(100);
    // A quiet window of 1 s, twice the default: the paced curl below stays busy (200 ms apart)
    // even when a loaded machine delays it.
    let d = Daemon::start(&["--page-max-requests", "20", "--page-max-age", "2s", "--quiet-ms", "1000"]);

    // 110 requests at 40/s: the request cap bites every 20 (half a second each).
    let mut curl = busy_curl(server, 110, "40/s");
    let tgid = curl.id();
    let held = sample_while(&d, &mut curl, Duration::from_millis(300), Duration::from_secs(60));
    let pages = wait_stored(&d, tgid, 110, Duration::from_secs(30));
    eprintln!("request cap: {:?}", pages.iter().map(|p| (p.requests, p.connections, p.cut.as_deref())).collect::<Vec<_>>());
    assert_eq!(pages.iter().map(|p| p.requests).sum::<u64>(), 110, "nothing lost or twice: {pages:#?}");
    let cut: Vec<&Stored> = pages.iter().filter(|p| p.cut.is_some()).collect();
    assert!(cut.len() >= 4, "{pages:#?}");
    for p in &cut {
        assert_eq!(p.cut.as_deref(), Some("page_requests"), "{pages:#?}");
        // A page load closes when its 20th connection opens: that connection's request may
        // finish into the next one.
        assert!((18..=20).contains(&p.requests) && p.connections <= 20, "{pages:#?}");
    }
    assert!(held.largest_open_page < 20 && held.open_page_requests < 20 * 3, "held at most {} / {}", held.largest_open_page, held.open_page_requests);

    // The page load says so, in the API (the dashboard's page view) and in HAR.
    let detail = d.json(&format!("/api/page-loads/{}", cut[0].id));
    assert_eq!(detail["page"]["cut"], serde_json::json!({"cap": "page_requests", "limit": 20}), "{detail}");
    let har: Value = serde_json::from_str(&d.get(&format!("/api/page-loads/{}/har", cut[0].id))).unwrap();
    assert_eq!(har["log"]["pages"][0]["_cut"]["cap"], "page_requests");

    // 30 requests at 5/s: six seconds of work, never quiet; the age cap bites every 2 s.
    let mut curl = busy_curl(server, 30, "5/s");
    let slow = curl.id();
    sample_while(&d, &mut curl, Duration::from_millis(500), Duration::from_secs(60));
    let pages = wait_stored(&d, slow, 30, Duration::from_secs(30));
    eprintln!("age cap: {:?}", pages.iter().map(|p| (p.requests, p.cut.as_deref())).collect::<Vec<_>>());
    assert_eq!(pages.iter().map(|p| p.requests).sum::<u64>(), 30, "{pages:#?}");
    let aged = pages.iter().filter(|p| p.cut.as_deref() == Some("page_age")).count();
    assert!(aged >= 2, "{pages:#?}");

    // Counted where a fleet looks (refreshed every second).
    let hit = eventually("the caps counted", Duration::from_secs(5), || {
        let hit = caps_hit(&d);
        (hit["page_age"].as_u64() >= Some(aged as u64)).then_some(hit)
    });
    assert!(hit["page_requests"].as_u64() >= Some(cut.len() as u64), "{hit}");
    assert!(d.metric("tracer_caps_hit_total{cap=\"page_requests\"}") >= cut.len() as f64);
    assert!(d.metric("tracer_caps_hit_total{cap=\"page_age\"}") >= aged as f64);
}

#[test]
#[ignore = "about 8 minutes: cargo xtask test -- -p tracer --test caps -- --ignored"]
fn minutes_of_a_busy_client_with_the_default_caps() {
    if !root_or_skip("caps_long") {
        return;
    }
    let (server, _rt) = tls_server(1000);
    // The default caps. The quiet window is 2 s rather than 500 ms: the second curl is paced
    // 333 ms apart (under 1,000 requests in 5 minutes), and on a loaded machine a gap of more
    // than 500 ms ended its page load by quiet (seen: 6 page loads of 16 to 589 requests).
    let d = Daemon::start(&["--quiet-ms", "2000"]);

    // Two minutes at 20/s: 2,400 requests, the 1,000-request cap bites twice.
    let mut curl = busy_curl(server, 2_400, "20/s");
    let fast = curl.id();
    let first = sample_while(&d, &mut curl, Duration::from_secs(5), Duration::from_secs(300));
    // Five and a half minutes at 3/s: 990 requests, the 5-minute cap bites once.
    let mut curl = busy_curl(server, 990, "3/s");
    let slow = curl.id();
    let second = sample_while(&d, &mut curl, Duration::from_secs(10), Duration::from_secs(600));

    let pages = wait_stored(&d, fast, 2_400, Duration::from_secs(60));
    eprintln!("request cap: {:?}", pages.iter().map(|p| (p.requests, p.cut.as_deref())).collect::<Vec<_>>());
    assert_eq!(pages.iter().filter(|p| p.cut.as_deref() == Some("page_requests")).count(), 2, "{pages:#?}");
    let pages = wait_stored(&d, slow, 990, Duration::from_secs(60));
    eprintln!("age cap: {:?}", pages.iter().map(|p| (p.requests, p.cut.as_deref())).collect::<Vec<_>>());
    assert_eq!(pages.iter().filter(|p| p.cut.as_deref() == Some("page_age")).count(), 1, "{pages:#?}");
    assert!(first.largest_open_page < 1_000 && second.largest_open_page < 1_000);

    // Flat memory: RSS after the first minute against the end of the run. Before the caps
    // the open page load's requests grew with the run.
    let rss: Vec<u64> = first.rss_kib.iter().chain(&second.rss_kib).copied().collect();
    let settled = rss[rss.len().min(12)];
    let end = *rss.last().unwrap();
    eprintln!("daemon RSS: settled {settled} KiB, end {end} KiB, max {} KiB ({} samples)", rss.iter().max().unwrap(), rss.len());
    eprintln!("daemon RSS (KiB), every 5 s then every 10 s: {rss:?}");
    assert!(end <= settled + settled / 4 + 8 * 1024, "RSS grew from {settled} KiB to {end} KiB");
}
