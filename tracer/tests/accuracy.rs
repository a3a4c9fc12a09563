//! Accuracy: the traced phases of a page load against the client's own clocks, in the
//! same run. curl times itself (`-w`); both run inside a lab with real delays (DNS answer
//! delay, server think time) so phases are tens of milliseconds, not noise.
use std::{sync::Arc, time::Duration};

use tracer::{
    lab::LabConfig,
    probes::{ProbeConfig, Probes},
    stitch::{StitchConfig, Stitcher, model::PageLoad},
    stream::{StreamStats, spawn_reader},
};

mod support;
use support::{lab_or_skip, require};

/// Runs `args` in the lab's network namespace `ns`: its pid and standard output. A failed run
/// fails the test, named by its program.
fn run_in_lab(ns: &str, args: &[&str]) -> (u32, Vec<u8>) {
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{} failed ({})", args[0], o.status);
    (pid, o.stdout)
}

/// Trace while `work` runs (it returns the client pids and whatever else it measured);
/// return that and the page loads of those clients.
async fn trace<T: Send + 'static>(work: impl FnOnce() -> (Vec<u32>, T) + Send + 'static) -> (T, Vec<PageLoad>) {
    let mut probes = Probes::load(&ProbeConfig::default()).expect("probes");
    let mut rx = spawn_reader(&mut probes, 1 << 18, Arc::new(StreamStats::default())).unwrap();
    let (pids, extra) = tokio::task::spawn_blocking(work).await.unwrap();
    let mut st = Stitcher::new(StitchConfig::default());
    let mut pages = Vec::new();
    // Drain until the stream has been quiet for 1.5 s (bounded to 20 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(1500), rx.recv()).await {
            Ok(Some(ev)) => pages.extend(st.on_event(&ev)),
            _ => break,
        }
    }
    pages.extend(st.finish());
    pages.retain(|p| pids.contains(&p.client.tgid));
    (extra, pages)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// A preempted client: on this shared 2-core machine, a client's thread can lose the CPU
/// for several ms between the kernel event and its own clock read (seen: 4 ms on a 0.07 ms
/// receive while other builds ran). The accuracy claim is therefore on the median
/// difference, within the phase's tolerance; a single run may be off by this much more.
const PREEMPTION_SLACK_MS: f64 = 10.0;

/// Prints the per-phase table of `diffs` (trace minus the client's own clock) and asserts
/// that each phase's median |difference| is within its tolerance and no single run is off
/// by more than tolerance + [`PREEMPTION_SLACK_MS`]. Phases with no pairs are skipped
/// (the caller asserts which phases must have some).
fn check_phases(against: &str, names: &[&str], diffs: &[Vec<f64>], tolerance: &[f64], extra: &[Vec<f64>]) {
    let mut report = format!("phase      n  {against} median  trace-{against} median  worst |diff|  tolerance\n");
    for i in 0..names.len() {
        if diffs[i].is_empty() {
            continue;
        }
        let worst = diffs[i].iter().map(|d| d.abs()).fold(0.0, f64::max);
        let own = extra.get(i).filter(|v| !v.is_empty()).map(|v| format!("{:>8.2} ms", median(v.clone()))).unwrap_or_else(|| "       -   ".into());
        report.push_str(&format!(
            "{:<10} {}  {own}  {:>+14.2} ms  {:>9.2} ms  {:>6.1} ms\n",
            names[i],
            diffs[i].len(),
            median(diffs[i].clone()),
            worst,
            tolerance[i]
        ));
    }
    eprintln!("{report}");
    for i in 0..names.len() {
        if diffs[i].is_empty() {
            continue;
        }
        let med = median(diffs[i].iter().map(|d| d.abs()).collect());
        let worst = diffs[i].iter().map(|d| d.abs()).fold(0.0, f64::max);
        assert!(med <= tolerance[i], "{}: trace and {against} differ by {med:.2} ms (median; tolerance {}):\n{report}", names[i], tolerance[i]);
        assert!(
            worst <= tolerance[i] + PREEMPTION_SLACK_MS,
            "{}: one run differs from {against} by {worst:.2} ms (tolerance {} + {PREEMPTION_SLACK_MS} ms of preemption):\n{report}",
            names[i],
            tolerance[i]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traced_phases_agree_with_curls_own_timers() {
    let config = LabConfig { dns_delay: Duration::from_millis(40), think_time: Duration::from_millis(60), ..Default::default() };
    let Some(lab) = lab_or_skip("accuracy_curl", config).await else {
        return;
    };
    require("curl");
    let ca = lab.ca_pem_path().to_str().unwrap().to_string();
    let ns = lab.netns_name().to_string();
    const RUNS: usize = 5;
    let (runs, pages) = trace(move || {
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            let timers = "%{time_namelookup} %{time_connect} %{time_appconnect} %{time_pretransfer} %{time_starttransfer} %{time_total}";
            let (pid, out) = run_in_lab(&ns, &["curl", "-sS", "-o", "/dev/null", "--http1.1", "--cacert", &ca, "-w", timers, "https://www.shop.test/"]);
            let t: Vec<f64> = String::from_utf8(out).unwrap().split_whitespace().map(|x| x.parse::<f64>().unwrap() * 1000.0).collect();
            runs.push((pid, t));
        }
        (runs.iter().map(|(p, _)| *p).collect(), runs)
    })
    .await;

    // Per phase: (traced - curl) differences over the runs.
    let names = ["dns", "tcp", "ssl", "send+wait", "receive"];
    let mut diffs: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut curl_values: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for (pid, t) in &runs {
        let page = pages
            .iter()
            .find(|p| p.client.tgid == *pid)
            .unwrap_or_else(|| panic!("no page load traced for curl pid {pid}; got {:#?}", pages.iter().map(|p| (&p.client, &p.url)).collect::<Vec<_>>()));
        assert_eq!(page.requests.len(), 1, "one request per curl run");
        let r = &page.requests[0];
        assert_eq!(r.status, Some(200));
        // The ClientHello on the wire names the server (the library calls carry only
        // plaintext, so this comes from the port-443 socket capture).
        let tls = page.connections[r.connection.expect("connection")].tls.as_ref().expect("TLS session");
        assert_eq!(tls.sni.as_deref(), Some("www.shop.test"), "{tls:?}");
        let x = &r.timings;
        // curl's cumulative timers -> per-phase durations.
        let curl = [t[0], t[1] - t[0], t[2] - t[1], t[4] - t[3], t[5] - t[4]];
        let traced = [x.dns, x.tcp, x.ssl, x.send + x.wait, x.receive];
        for i in 0..names.len() {
            assert!(traced[i] >= 0.0, "{}: phase not traced: {:?}", names[i], x);
            diffs[i].push(traced[i] - curl[i]);
            curl_values[i].push(curl[i]);
        }
    }
    // Tolerances, and why. curl stamps its clock in user space around its own calls, the
    // trace stamps the kernel's (syscalls, library calls), so each phase differs by the
    // user-space work around it:
    // - dns: curl's namelookup includes starting the resolver thread, reading
    //   /etc/hosts, nsswitch and resolv.conf before the first query and waking the waiting
    //   thread afterwards; the trace runs from the first query sent to the last answer
    //   received. With a 40 ms answer delay, 5 ms absorbs that (and shows a real error).
    // - tcp, ssl: both sides are sub-millisecond to a few ms on loopback; curl's poll loop
    //   adds up to ~1 ms per phase. 3 ms.
    // - send+wait: dominated by the 60 ms server think time; 5 ms.
    // - receive: the small page arrives in one read; 3 ms.
    let tolerance = [5.0, 3.0, 3.0, 5.0, 3.0];
    check_phases("curl", &names, &diffs, &tolerance, &curl_values);
    // The delays are visible where they belong.
    assert!(median(curl_values[0].clone()) >= 40.0 && median(diffs[0].clone()).abs() < 5.0);
}

/// The reference fetcher measures itself; the same fetch, traced from the kernel (its rustls
/// plaintext through its probe points), must show the same requests, redirect hops and
/// hosts, with the same phase durations within a stated tolerance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traced_fetch_agrees_with_the_fetchers_own_timings() {
    let config = LabConfig { dns_delay: Duration::from_millis(30), think_time: Duration::from_millis(50), ..Default::default() };
    let Some(lab) = lab_or_skip("accuracy_fetch", config).await else {
        return;
    };
    let ca = lab.ca_pem_path().to_str().unwrap().to_string();
    let ns = lab.netns_name().to_string();
    // Several runs, so that the median per phase stands on a dozen requests.
    let (runs, pages) = trace(move || {
        let mut runs = Vec::new();
        for _ in 0..FETCH_RUNS {
            let (pid, out) = run_in_lab(&ns, &[env!("CARGO_BIN_EXE_tracer"), "fetch", "--json", "--page", "--cacert", &ca, "http://shop.test/"]);
            let har: serde_json::Value = serde_json::from_slice(&out).unwrap();
            runs.push((pid, har));
        }
        (runs.iter().map(|(pid, _)| *pid).collect(), runs)
    })
    .await;
    let names = ["dns", "tcp", "ssl", "send+wait", "receive"];
    let mut diffs: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for (pid, har) in &runs {
        compare_fetch(*pid, har, &pages, &names, &mut diffs);
    }
    // Tolerances, and why: the fetcher stamps its clock in user space around awaits (a
    // tokio task wakes after the kernel event), the trace at the syscall or probe point.
    // - dns: hickory's lookup includes building the query, spawning the UDP exchange and
    //   waking the task; with a 30 ms answer delay 5 ms shows a misattribution, not noise.
    // - tcp: the fetcher's connect ends when the task is polled after ESTABLISHED: 2 ms.
    // - ssl: both end at the same probe point, the trace starts at ESTABLISHED and the
    //   fetcher when its task resumes after connect: 3 ms.
    // - send+wait: 50 ms think time dominates; both end when the response head is read: 5 ms.
    // - receive: small bodies, one or two reads: 3 ms.
    let tolerance = [5.0, 2.0, 3.0, 5.0, 3.0];
    for i in 0..names.len() {
        assert!(!diffs[i].is_empty() || names[i] == "dns", "no {} phase compared", names[i]);
    }
    check_phases("fetcher", &names, &diffs, &tolerance, &[]);
}

const FETCH_RUNS: usize = 3;

/// One fetch's HAR against its traced page load: the same requests (URL and status), the
/// same redirect hops, and, per request and phase, the trace's duration minus the
/// fetcher's own (into `diffs`).
fn compare_fetch(pid: u32, har: &serde_json::Value, pages: &[PageLoad], names: &[&str], diffs: &mut [Vec<f64>]) {
    let page = pages.iter().find(|p| p.client.tgid == pid).unwrap_or_else(|| panic!("fetch {pid} not traced"));
    let entries = har["log"]["entries"].as_array().unwrap();
    let mut fetched: Vec<(String, u64)> =
        entries.iter().map(|e| (e["request"]["url"].as_str().unwrap().to_string(), e["response"]["status"].as_u64().unwrap())).collect();
    let mut traced: Vec<(String, u64)> =
        page.requests.iter().map(|r| (r.url.clone().unwrap_or_default(), r.status.unwrap_or(0) as u64)).collect();
    fetched.sort();
    traced.sort();
    assert_eq!(traced, fetched, "the trace shows the fetcher's requests");
    let hops: Vec<String> = page.redirect_chain.iter().map(|i| page.requests[*i].url.clone().unwrap()).collect();
    assert_eq!(hops, vec!["http://shop.test/", "https://www.shop.test/"]);

    // Phase by phase, per request: (fetcher span, traced duration).
    let span = |e: &serde_json::Value, name: &str| -> Option<f64> {
        let p = &e["_monotonic"]["phases"][name];
        Some((p[1].as_u64()? - p[0].as_u64()?) as f64 / 1e6)
    };
    for e in entries {
        let url = e["request"]["url"].as_str().unwrap();
        let r = page.requests.iter().find(|r| r.url.as_deref() == Some(url)).unwrap();
        let t = &r.timings;
        let fetcher = [
            span(e, "dns"),
            span(e, "connect"),
            span(e, "tls"),
            span(e, "send").zip(span(e, "wait")).map(|(a, b)| a + b),
            span(e, "receive"),
        ];
        let trace = [t.dns, t.tcp, t.ssl, t.send + t.wait, t.receive];
        eprintln!("{url} {} fetcher {fetcher:?} trace {trace:?}", r.protocol.as_deref().unwrap_or("?"));
        for i in 0..names.len() {
            match (fetcher[i], trace[i] >= 0.0) {
                (Some(f), true) => diffs[i].push(trace[i] - f),
                (None, false) => {}
                (f, _) => panic!("{url}: phase {} present on one side only (fetcher {f:?}, trace {})", names[i], trace[i]),
            }
        }
    }
}

/// `tracer fetch --http3` in a lab that serves HTTP/3, traced by the daemon (unfiltered):
/// the stored page load has the QUIC connection from the datagrams the kernel side captured
/// on UDP 443 (socket-layer hooks, 6.3+), its handshake timed (client's first Initial to its
/// first 1-RTT packet), SNI and ALPN from the decrypted Initial; the traced handshake's edges
/// agree with the same two datagrams as the fetcher's own socket saw them (its HAR's
/// `_quic.wire_handshake`) within 1 ms (the median over the runs; a single run within that plus
/// the preemption slack), and lie within the fetcher's handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traced_http3_fetch_has_a_timed_quic_connection() {
    let config = LabConfig { dns_delay: Duration::from_millis(20), think_time: Duration::from_millis(30), http3: tracer::lab::Http3::On, ..Default::default() };
    let Some(lab) = lab_or_skip("accuracy_http3", config).await else {
        return;
    };
    tokio::task::block_in_place(|| http3_fetch_traced(&lab));
}

fn http3_fetch_traced(lab: &tracer::lab::Lab) {
    use support::{daemon::Daemon, eventually};
    let probe = Probes::load(&ProbeConfig { tls: false, ..Default::default() }).expect("probes");
    let sock = probe.kernel.variants.iter().any(|v| v.family == "dns" && v.variant.as_deref().is_some_and(|n| n.starts_with("sock_length")));
    drop(probe);
    if !sock {
        // The syscall tracepoints capture no UDP 443 (the socket-layer hooks are 6.3+).
        eprintln!("skip: this kernel has no socket-layer hooks (sock_send_length), so no QUIC capture");
        return;
    }
    let mut d = Daemon::start(&[]);
    let ca = lab.ca_pem_path().to_str().unwrap().to_string();
    let mut diffs = Vec::new();
    for run in 0..3 {
        let fetch = [env!("CARGO_BIN_EXE_tracer"), "fetch", "--json", "--page", "--http3", "--cacert", &ca, "https://www.shop.test/"];
        let (pid, out) = run_in_lab(lab.netns_name(), &fetch);
        let har: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let e = &har["log"]["entries"][0];
        assert_eq!(e["request"]["httpVersion"], "h3", "the fetch went over HTTP/3: {e}");
        let p = &e["_monotonic"]["phases"]["tls"];
        let (fetcher_start, fetcher_end) = (p[0].as_u64().unwrap(), p[1].as_u64().unwrap());
        let w = &e["_quic"]["wire_handshake"];
        let (own_start, own_end) = (w["start_ns"].as_u64().expect("the fetcher's wire handshake"), w["end_ns"].as_u64().unwrap());
        // The page load is stored once the fetch's quiet window has passed.
        let page = eventually(&format!("run {run}: the stored page load of tracer fetch {pid}"), Duration::from_secs(30), || {
            d.page_loads().iter().find_map(|item| {
                let detail = d.json(&format!("/api/page-loads/{}", item["id"]));
                (detail["page"]["client"]["tgid"] == pid).then(|| detail["page"].clone())
            })
        });
        let conns = page["connections"].as_array().unwrap();
        let c = conns.iter().find(|c| !c["quic"].is_null()).unwrap_or_else(|| panic!("run {run}: no QUIC connection: {page:#}"));
        let q = &c["quic"];
        assert_eq!(q["version"], "QUICv1", "{q}");
        assert!(q["datagrams_sent"].as_u64().unwrap() >= 2 && q["datagrams_received"].as_u64().unwrap() >= 2, "{q}");
        let (start, end) = (q["handshake_start_ns"].as_u64().expect("handshake start"), q["handshake_end_ns"].as_u64().expect("handshake end"));
        assert!(end > start, "{q}");
        assert_eq!((c["tls"]["sni"].as_str(), c["tls"]["alpn"].as_str()), (Some("www.shop.test"), Some("h3")), "{c}");
        let traced_hs = (end - start) as f64 / 1e6;
        let r = page["requests"].as_array().unwrap().iter().find(|r| r["protocol"] == "HTTP/3").unwrap_or_else(|| panic!("no HTTP/3 entry: {page:#}"));
        assert!((r["timings"]["ssl"].as_f64().unwrap() - traced_hs).abs() < 0.01, "{r}");
        let ms = |a: u64, b: u64| (a as f64 - b as f64) / 1e6;
        eprintln!(
            "run {run}: traced QUIC handshake {traced_hs:.2} ms, the fetcher's socket's {:.2} ms, the fetcher's {:.2} ms; traced - own: start {:+.3} ms, end {:+.3} ms",
            ms(own_end, own_start),
            ms(fetcher_end, fetcher_start),
            ms(start, own_start),
            ms(end, own_end)
        );
        assert!(start >= fetcher_start && end <= fetcher_end + 1_000_000, "run {run}: traced {start}..{end} not within the fetcher's {fetcher_start}..{fetcher_end}");
        diffs.push(ms(start, own_start));
        diffs.push(ms(end, own_end));
    }
    let (status, _, _) = d.stop();
    assert!(status.success());
    // The same two datagrams stamped in the kernel's send and by the fetcher's socket after
    // its send returned. The fetcher's own handshake is not the reference: it starts before
    // quinn builds the ClientHello (1-12 ms of client work in a debug build, by load), which
    // the wire does not see.
    let tolerance = 1.0;
    let m = median(diffs.iter().map(|d| d.abs()).collect());
    assert!(m <= tolerance, "median |traced - own socket| QUIC handshake edge {m:.3} ms > {tolerance} ms: {diffs:?}");
    assert!(diffs.iter().all(|d| d.abs() <= tolerance + PREEMPTION_SLACK_MS), "{diffs:?}");
}
