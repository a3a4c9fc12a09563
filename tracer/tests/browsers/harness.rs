//! What every browser test shares: the client's process tree, the probes loaded in this
//! process with their events collected, the stitcher run over them, and the checks of a page
//! load against the lab's own logs.
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use tracer::{
    clock::{WallOffset, monotonic_ns},
    lab::{HttpRequestRecord, Lab, LabConfig},
    probes::{ProbeConfig, Probes},
    stitch::{StitchConfig, Stitcher, model::PageLoad},
    stream::{
        StreamStats,
        events::{Event, EventBody},
        spawn_reader,
    },
};

use crate::support::{self, lab_or_skip, require, temp_dir};

/// Prints how long a test took (its run time is part of what is reviewed).
pub struct Timer(pub &'static str, pub Instant);
impl Drop for Timer {
    fn drop(&mut self) {
        eprintln!("{}: test took {:.1} s", self.0, self.1.elapsed().as_secs_f64());
    }
}

// ---- processes ----

pub fn children_of(pid: u32) -> Vec<u32> {
    tracer::procfs::list_processes().into_iter().filter(|p| p.ppid == pid).map(|p| p.pid).collect()
}

pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in children_of(p) {
            if !out.contains(&c) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

/// A client process tree started in its own process group; killed (tree and group) on drop.
/// Its output is drained as it comes (a full pipe would stall it).
pub struct Client {
    pub child: std::process::Child,
    pub pid: u32,
    pub output: Option<(std::thread::JoinHandle<Vec<u8>>, std::thread::JoinHandle<Vec<u8>>)>,
}

impl Client {
    pub fn spawn(mut cmd: Command) -> Client {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let pid = child.id();
        let drain = |mut r: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = r.read_to_end(&mut v);
                v
            })
        };
        let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
        let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
        Client { child, pid, output: Some((out, err)) }
    }

    /// Wait for the client to exit by itself, at most `limit`; then kill what is left of its
    /// tree. Returns (exited by itself, stdout, stderr).
    pub fn wait(&mut self, limit: Duration) -> (bool, String, String) {
        let deadline = Instant::now() + limit;
        let mut exited = false;
        while Instant::now() < deadline {
            if self.exited() {
                exited = true;
                break;
            }
            // Polling a child's exit: there is no event to await for it.
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop(exited)
    }

    /// Whether the client's first process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// Kill what is left of the client's tree; (`exited`, stdout, stderr).
    pub fn stop(&mut self, exited: bool) -> (bool, String, String) {
        self.kill();
        let _ = self.child.wait();
        // The pipes close when the last process holding them is gone; one that escaped the
        // tree (a daemonised helper) must not hang the test: bounded.
        let (out, err) = match self.output.take() {
            Some((o, e)) => {
                let until = Instant::now() + Duration::from_secs(5);
                while !(o.is_finished() && e.is_finished()) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let take = |h: std::thread::JoinHandle<Vec<u8>>| if h.is_finished() { h.join().unwrap_or_default() } else { Vec::new() };
                (take(o), take(e))
            }
            None => (Vec::new(), Vec::new()),
        };
        (exited, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
    }

    pub fn kill(&mut self) {
        for p in descendants(self.pid) {
            unsafe { libc::kill(p as i32, libc::SIGKILL) };
        }
        unsafe { libc::kill(-(self.pid as i32), libc::SIGKILL) };
        let _ = self.child.kill();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.kill();
        let _ = self.child.wait();
    }
}

// ---- tracing ----

/// Probes loaded and events collected in the background until `stop`.
pub struct Tracing {
    pub probes: Probes,
    pub events: tokio::task::JoinHandle<Vec<Event>>,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub stats: Arc<StreamStats>,
}

impl Tracing {
    pub fn start() -> Tracing {
        Self::start_with(&ProbeConfig::default())
    }

    pub fn start_with(config: &ProbeConfig) -> Tracing {
        let mut probes = Probes::load(config).expect("probes");
        let stats = Arc::new(StreamStats::default());
        let mut rx = spawn_reader(&mut probes, 1 << 19, stats.clone()).unwrap();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let events = tokio::spawn(async move {
            let mut all = Vec::new();
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev { Some(ev) => all.push(ev), None => break },
                    _ = &mut stopped => break,
                }
            }
            // Everything the client did happened before now: drain until the stream reaches
            // this moment (other processes keep it busy, so it never goes quiet), bounded.
            let stop_ns = monotonic_ns();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
                    Ok(Some(ev)) => {
                        let past = ev.ts_ns >= stop_ns;
                        all.push(ev);
                        if past {
                            while let Ok(ev) = rx.try_recv() {
                                all.push(ev);
                            }
                            break;
                        }
                    }
                    _ => break,
                }
            }
            all
        });
        Tracing { probes, events, stop, stats }
    }

    pub fn boringssl_status(&self) -> Vec<String> {
        self.probes
            .status
            .iter()
            .filter(|s| s.family == "tls_boringssl" || s.family.starts_with("quic_"))
            .map(|s| {
                let path = s.target.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
                format!("{} {} {path} {} {}", s.family, s.point, if s.attached { "attached" } else { "FAILED" }, s.error.clone().unwrap_or_default())
            })
            .collect()
    }

    pub async fn finish(self) -> (Vec<Event>, Probes) {
        let _ = self.stop.send(());
        let events = self.events.await.unwrap();
        let lost: u64 = self.probes.lost_counts().map(|c| c.iter().map(|(_, n)| n).sum()).unwrap_or(0);
        let dropped = self.stats.queue_dropped.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!((lost, dropped), (0, 0), "events lost in the kernel / dropped at the queue");
        (events, self.probes)
    }
}

/// Detaching every uprobe takes the kernel seconds (an RCU grace period per probe): let
/// it happen while the next test runs instead of in this one's time.
pub fn detach_in_background(probes: Probes) {
    std::thread::spawn(move || drop(probes));
}

/// The process tree of `root` as seen in the events (forks), plus `extra` pids.
pub fn tree_of(events: &[Event], root: u32) -> HashSet<u32> {
    let mut tree: HashSet<u32> = HashSet::from([root]);
    for e in events {
        if let EventBody::Fork { child_pid } = &e.body
            && tree.contains(&e.tgid)
        {
            tree.insert(*child_pid);
        }
    }
    tree
}

/// Stitch the whole stream (every process), seeded with processes alive before tracing.
pub fn stitch(events: &[Event], seed: &[(u32, Option<u32>, String, Option<String>)]) -> Vec<PageLoad> {
    stitch_with(events, seed, support::quiet_ms())
}

/// [`stitch`] with a quiet window of `quiet_ms` (None: the daemon's default).
pub fn stitch_with(events: &[Event], seed: &[(u32, Option<u32>, String, Option<String>)], quiet_ms: Option<u64>) -> Vec<PageLoad> {
    let mut config = StitchConfig::default();
    if let Some(ms) = quiet_ms {
        config.quiet_ns = ms * 1_000_000;
    }
    let mut st = Stitcher::new(config);
    for (pid, ppid, comm, exe) in seed {
        st.learn_process(*pid, *ppid, comm.clone(), exe.clone());
    }
    let mut pages = Vec::new();
    for ev in events {
        pages.extend(st.on_event(ev));
    }
    pages.extend(st.finish());
    pages
}

/// Processes alive now (what the daemon seeds its table with at start-up).
pub fn proc_snapshot() -> Vec<(u32, Option<u32>, String, Option<String>)> {
    tracer::procfs::list_processes()
        .into_iter()
        .map(|p| {
            let exe = tracer::procfs::exe(p.pid).map(|e| e.display().to_string());
            (p.pid, Some(p.ppid), p.comm, exe)
        })
        .collect()
}

pub fn dump(tag: &str, events: &[Event], tree: &HashSet<u32>, pages: &[PageLoad]) {
    let Ok(dir) = std::env::var("BROWSER_TRACE_DUMP") else { return };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The tree's events, and socket state changes of the tree's sockets (softirq context
    // carries other pids).
    let socks: HashSet<u64> = events
        .iter()
        .filter(|e| tree.contains(&e.tgid))
        .filter_map(|e| match &e.body {
            EventBody::Connect { skaddr, .. } => Some(*skaddr),
            _ => None,
        })
        .collect();
    let text: String = events
        .iter()
        .filter(|e| {
            tree.contains(&e.tgid) || matches!(&e.body, EventBody::TcpState { skaddr, .. } if socks.contains(skaddr))
        })
        .map(|e| tracer::stream::printer::text_line(e) + "\n")
        .collect();
    std::fs::write(dir.join(format!("{tag}.events.txt")), text).unwrap();
    std::fs::write(dir.join(format!("{tag}.pages.json")), serde_json::to_string_pretty(pages).unwrap()).unwrap();
}

// ---- what is checked ----

pub fn describe(p: &PageLoad) -> String {
    let mut s = format!("page load of {} [{}] {:?} status {:?} error {:?}\n", p.client.name, p.client.tgid, p.url, p.status, p.error);
    for (i, r) in p.requests.iter().enumerate() {
        let t = &r.timings;
        s.push_str(&format!(
            "  #{i} {} {} {:?} {:?} {} conn {:?} dns {:?} comm {} | dns {:.2} tcp {:.2} ssl {:.2} send {:.2} wait {:.2} receive {:.2}{}\n",
            r.method.as_deref().unwrap_or("-"),
            r.url.as_deref().unwrap_or("-"),
            r.status,
            r.protocol,
            if r.new_connection { "new" } else { "reused" },
            r.connection,
            r.dns,
            r.comm,
            t.dns,
            t.tcp,
            t.ssl,
            t.send,
            t.wait,
            t.receive,
            r.error.as_ref().map(|e| format!(" ERROR {}", e.text())).unwrap_or_default()
        ));
    }
    for (i, d) in p.dns.iter().enumerate() {
        s.push_str(&format!(
            "  dns #{i} {} {:?} by {} chain {:?} -> {:?} {:?} {:.2} ms\n",
            d.name,
            d.qtypes,
            d.comm,
            d.cname_chain,
            d.addresses,
            d.error,
            d.ended_ns.map(|e| (e - d.started_ns) as f64 / 1e6).unwrap_or(-1.0)
        ));
    }
    for (i, c) in p.connections.iter().enumerate() {
        s.push_str(&format!(
            "  conn #{i} {} -> {} by {}[{}] tls {:?} requests {}\n",
            c.src.as_deref().unwrap_or("?"),
            c.dst.as_deref().unwrap_or("?"),
            c.comm,
            c.tgid,
            c.tls.as_ref().map(|t| (&t.library, &t.alpn, t.estimated)),
            c.requests
        ));
    }
    s
}

/// (method, host, path, status) of the lab's log, for the hosts of the page.
pub fn served(log: &[HttpRequestRecord]) -> Vec<(String, String, String, u16)> {
    let mut v: Vec<_> = log
        .iter()
        .map(|r| (r.method.clone(), r.host.split(':').next().unwrap_or("").to_string(), r.path.clone(), r.status))
        .collect();
    v.sort();
    v
}

/// The requests of the page load that got a response (a browser that exits right after the
/// load event may leave a late request, such as the favicon, unanswered).
pub fn traced(p: &PageLoad) -> Vec<(String, String, String, u16)> {
    let mut v: Vec<_> = p
        .requests
        .iter()
        .filter(|r| r.method.is_some() && r.status.is_some())
        .map(|r| {
            (
                r.method.clone().unwrap_or_default(),
                r.host.clone().unwrap_or_default().split(':').next().unwrap_or("").to_string(),
                r.path.clone().unwrap_or_default(),
                r.status.unwrap_or(0),
            )
        })
        .collect();
    v.sort();
    v
}

/// The traced requests against the lab's log: the same requests (method, host, path) with
/// the same statuses. The one allowance: a browser that exits right after the load event may
/// leave a late request (the favicon) unread; the lab may or may not have answered it, and
/// the trace shows it without a status and with an error, never with a wrong one.
pub fn compare_with_lab(tag: &str, p: &PageLoad, log: &[HttpRequestRecord], d: &str) {
    let key = |m: &str, h: &str, path: &str| (m.to_string(), h.split(':').next().unwrap_or("").to_string(), path.to_string());
    let unread: Vec<_> = p
        .requests
        .iter()
        .filter(|r| r.method.is_some() && r.status.is_none())
        .map(|r| key(r.method.as_deref().unwrap(), r.host.as_deref().unwrap_or(""), r.path.as_deref().unwrap_or("")))
        .collect();
    for r in p.requests.iter().filter(|r| r.method.is_some() && r.status.is_none()) {
        assert!(r.error.is_some(), "{tag}: {:?} has neither a status nor an error\n{d}", r.url);
        assert!(r.path.as_deref() == Some("/favicon.ico"), "{tag}: {:?} of the page has no response\n{d}", r.url);
    }
    let served: Vec<_> = log.iter().filter(|l| !unread.contains(&key(&l.method, &l.host, &l.path))).cloned().collect();
    assert_eq!(traced(p), self::served(&served), "{tag}: traced requests vs the lab's log\n{d}");
}

pub struct Expect {
    /// HTTP version the page's HTTPS requests use (for HTTP/1.x the response's, as HAR and
    /// the trace show it).
    pub protocol: &'static str,
    /// The version in the client's own request lines, as the lab logs it, where it differs:
    /// lynx and w3m ask in HTTP/1.0 and the lab answers in HTTP/1.1.
    pub request_version: Option<&'static str>,
    /// The page's sub-resources the client loads (browsers with JavaScript all three; curl and
    /// the text browsers none).
    pub subresources: &'static [&'static str],
    /// Client name shown for the page load.
    pub name: &'static str,
    /// Whether the client asks for HTTPS (type 65) records.
    pub https_rr: bool,
    /// TLS library the plaintext came from.
    pub tls_library: &'static str,
    /// Whether the library reports the handshake's end (NSS may finish it inside PR_Write).
    pub handshake_end_seen: bool,
    /// Whether failed lookups of the browser's own (non-lab) hosts may sit in the page load.
    pub background_failures: bool,
    /// Whether the client sends the server name in its ClientHello (dillo 3.0.5's HTTPS
    /// plug-in does not).
    pub sends_sni: bool,
    /// Whether the browser talks to its own helpers over TCP on 127.0.0.1 (dillo and `dpid`):
    /// those connections carry no request and are allowed in its page load.
    pub loopback_ipc: bool,
    /// The README's Browsers table row this test writes when it passes (None: no row).
    pub table: Option<crate::table::Browser>,
}

/// The page load of `http://shop.test/` as every client must show it.
pub fn check_page_load(tag: &str, p: &PageLoad, lab: &Lab, expect: &Expect) {
    let d = describe(p);
    eprintln!("{tag}: {d}");
    assert_eq!(p.client.name, expect.name, "{tag}: the page load is shown with the client's name\n{d}");
    // The redirect hop, then the document.
    let hops: Vec<_> = p.redirect_chain.iter().map(|i| (p.requests[*i].url.clone(), p.requests[*i].status)).collect();
    assert_eq!(
        hops,
        vec![(Some("http://shop.test/".to_string()), Some(301)), (Some("https://www.shop.test/".to_string()), Some(200))],
        "{tag}: redirect hop\n{d}"
    );
    assert_eq!(p.status, Some(200), "{tag}\n{d}");
    assert_eq!(p.error, None, "{tag}\n{d}");
    assert_eq!(p.url.as_deref(), Some("http://shop.test/"), "{tag}\n{d}");

    // Nothing of the page failed and nothing was decoded twice: every entry is an HTTP
    // request, but for a browser's own background lookups outside the lab (Firefox's remote
    // settings host, Chromium's update hosts: NXDOMAIN here), which do not break the page load.
    // Known race (README, known limits): a browser that exits while its favicon request is
    // in flight may leave that request unanswered and its response decoded on its own
    // ("request not captured"), on a connection the page already used. Only that is allowed.
    let favicon_abandoned = p.requests.iter().any(|r| r.path.as_deref() == Some("/favicon.ico") && r.status.is_none());
    for r in &p.requests {
        let orphan_response = favicon_abandoned
            && r.method.is_none()
            && r.error.as_ref().is_some_and(|e| e.text() == "request not captured")
            && !r.new_connection
            && r.host.as_deref().is_some_and(|h| h.ends_with(".test"));
        if r.method.is_none() && !orphan_response {
            let host = r.host.as_deref().unwrap_or("");
            assert!(
                expect.background_failures && r.error.is_some() && r.status.is_none() && !host.ends_with(".test"),
                "{tag}: entry without a request: {:?} {:?}\n{d}",
                r.url,
                r.error
            );
        }
    }
    // Requests and statuses: exactly what the lab served.
    let log = lab.http_requests();
    compare_with_lab(tag, p, &log, &d);
    let doc = &p.requests[p.redirect_chain[1]];
    assert_eq!(doc.protocol.as_deref(), Some(expect.protocol), "{tag}: protocol of the document\n{d}");
    for r in &p.requests {
        if r.url.as_deref().is_some_and(|u| u.starts_with("https://")) {
            assert_eq!(r.protocol.as_deref(), Some(expect.protocol), "{tag}: {:?}\n{d}", r.url);
            let lab_version = log.iter().find(|l| Some(l.path.as_str()) == r.path.as_deref() && r.host.as_deref() == Some(l.host.split(':').next().unwrap()));
            if let Some(l) = lab_version {
                assert_eq!(l.version, expect.request_version.unwrap_or(expect.protocol), "{tag}: the lab saw the same protocol");
            }
        }
    }
    {
        for &path in expect.subresources {
            assert!(
                p.requests.iter().any(|r| r.host.as_deref() == Some("static.shop.test") && r.path.as_deref() == Some(path) && r.status == Some(200)),
                "{tag}: sub-resource {path}\n{d}"
            );
        }
    }

    // DNS: the names with the CNAME chain, in the dns phase of the right requests.
    let www = p
        .dns
        .iter()
        .find(|l| l.name == "www.shop.test" && !l.addresses.is_empty())
        .unwrap_or_else(|| panic!("{tag}: no lookup of www.shop.test with an address\n{d}"));
    assert_eq!(www.cname_chain, vec!["www.shop.test", "edge.cdn.test"], "{tag}: CNAME chain\n{d}");
    assert_eq!(www.addresses, vec!["10.77.0.3"], "{tag}\n{d}");
    let first_hop = &p.requests[p.redirect_chain[0]];
    for r in [first_hop, doc] {
        assert!(r.timings.dns >= 0.0, "{tag}: dns phase of {:?}\n{d}", r.url);
        let l = &p.dns[r.dns.unwrap_or_else(|| panic!("{tag}: {:?} has no lookup\n{d}", r.url))];
        assert_eq!(Some(l.name.as_str()), r.host.as_deref(), "{tag}: lookup of {:?}\n{d}", r.url);
        // The browser's HTTPS-record query is part of that lookup, so of the dns phase.
        assert_eq!(l.qtypes.iter().any(|t| t == "HTTPS"), expect.https_rr, "{tag}: qtypes {:?} of {:?}\n{d}", l.qtypes, r.url);
        assert!(l.qtypes.iter().any(|t| t == "A"), "{tag}\n{d}");
    }
    if expect.https_rr {
        // The HTTPS-record lookups the browser made are in the page load's dns phase (one
        // lookup per name holding A + HTTPS) and match what the lab answered.
        let asked: HashSet<String> =
            lab.dns_queries().iter().filter(|q| q.qtype == 65 && q.name.ends_with("shop.test")).map(|q| q.name.clone()).collect();
        assert!(!asked.is_empty(), "{tag}: the browser asked for no HTTPS records");
        for name in &asked {
            assert!(
                p.dns.iter().any(|l| &l.name == name && l.qtypes.iter().any(|t| t == "HTTPS")),
                "{tag}: HTTPS lookup of {name} not in the page load\n{d}"
            );
        }
    }
    // Every lookup the lab answered for the page's hosts is in the page load.
    for q in lab.dns_queries() {
        if q.name.ends_with("shop.test") {
            assert!(p.dns.iter().any(|l| l.name == q.name), "{tag}: lookup of {} missing\n{d}", q.name);
        }
    }

    // connect and ssl present and in order for every new connection.
    for r in p.requests.iter().filter(|r| r.new_connection && r.method.is_some()) {
        let t = &r.timings;
        assert!(t.tcp >= 0.0 && t.connect >= t.tcp, "{tag}: connect phase of {:?}\n{d}", r.url);
        let c = &p.connections[r.connection.unwrap()];
        let est = c.established_ns.expect("established");
        assert!(c.connect_start_ns <= est, "{tag}: connect order");
        if let Some(l) = r.dns {
            let l = &p.dns[l];
            // The dns phase (until the answers that gave the address) ends before the connect.
            let dns_end = l.started_ns + (r.timings.dns * 1e6) as u64;
            assert!(dns_end <= c.connect_start_ns + 10_000, "{tag}: dns before connect for {:?}\n{d}", r.url);
        }
        if r.url.as_deref().is_some_and(|u| u.starts_with("https://")) {
            assert!(t.ssl >= 0.0, "{tag}: ssl phase of {:?}\n{d}", r.url);
            let tls = c.tls.as_ref().unwrap();
            assert_eq!(tls.library, expect.tls_library, "{tag}: TLS library\n{d}");
            // From the ServerHello on the wire (the lab's rustls servers speak TLS 1.3).
            assert_eq!(tls.version.as_deref(), Some("TLSv1.3"), "{tag}: TLS version of {:?}: {tls:?}\n{d}", r.url);
            assert!(tls.cipher.as_deref().is_some_and(|c| c.starts_with("TLS13_")), "{tag}: cipher of {:?}: {tls:?}\n{d}", r.url);
            let host = r.url.as_deref().and_then(|u| url::Url::parse(u).ok()).and_then(|u| u.host_str().map(String::from));
            let sni = if expect.sends_sni { host.as_deref() } else { None };
            assert_eq!(tls.sni.as_deref(), sni, "{tag}: SNI (the client sends it: {})\n{d}", expect.sends_sni);
            if expect.handshake_end_seen {
                assert!(!tls.estimated, "{tag}: handshake seen, not estimated, for {:?}\n{d}", r.url);
            } else {
                // NSS finishes the handshake inside the first PR_Write/PR_Read when
                // SSL_ForceHandshake only ever returned "would block": its start is seen,
                // its end is the first plaintext.
                assert!(tls.handshake_start_ns.is_some(), "{tag}: handshake start of {:?}\n{d}", r.url);
            }
            assert!(est <= tls.handshake_end_ns.unwrap(), "{tag}: TLS after TCP");
            assert!(tls.handshake_end_ns.unwrap() <= r.ended_ns, "{tag}: TLS before the response");
        } else {
            assert!(t.ssl < 0.0, "{tag}: no TLS on plain HTTP");
        }
        assert!(t.send >= 0.0 && t.wait >= 0.0 && t.receive >= 0.0, "{tag}: send/wait/receive of {:?}\n{d}", r.url);
    }
    // Connections of the page are the client's: nothing else of the tree leaked in, but for
    // a browser's own local IPC over TCP, which carries no request.
    for c in &p.connections {
        let ipc = expect.loopback_ipc && c.dst.as_deref().is_some_and(|d| d.starts_with("127.0.0.1:")) && c.requests == 0;
        assert!(ipc || c.dst.as_deref().is_some_and(|d| d.starts_with("10.77.0.")), "{tag}: connection to {:?}\n{d}", c.dst);
    }
}

/// Stored as the daemon stores it (the history database) and read back: the same page load,
/// every phase included. Returns it as read back (what the API serves).
pub async fn assert_stored(tag: &str, p: &PageLoad) -> tracer::history::StoredPageLoad {
    let tmp = temp_dir(&format!("browsers-{tag}-db"));
    let pool = tracer::history::db::open(&tmp.path().join("tracer.db")).await.expect("database");
    let id = tracer::history::insert_page_load(&pool, p, WallOffset::now()).await.expect("stored");
    let back = tracer::history::get(&pool, id).await.expect("query").expect("the stored page load");
    assert_eq!(&back.page, p, "{tag}: the page load reads back as stored");
    let listed = tracer::history::query::latest(&pool, &Default::default(), 10).await.expect("list");
    assert!(listed.iter().any(|s| s.id == id && s.page.client.name == p.client.name), "{tag}: listed in the history");
    pool.close().await;
    back
}

/// The page load of `client` that starts at the lab's first URL.
pub fn page_of<'a>(tag: &str, pages: &'a [PageLoad], client: u32) -> &'a PageLoad {
    page_in_tree(tag, pages, &HashSet::from([client]))
}

/// The page load that starts at the lab's first URL, by a client in `tree` (a browser started
/// through `xvfb-run` or `dbus-run-session` is a child of the process the test started).
pub fn page_in_tree<'a>(tag: &str, pages: &'a [PageLoad], tree: &HashSet<u32>) -> &'a PageLoad {
    let mine: Vec<&PageLoad> = pages.iter().filter(|p| tree.contains(&p.client.tgid)).collect();
    let all: Vec<String> = pages.iter().map(|p| format!("{} [{}] {:?} ({} requests)", p.client.name, p.client.tgid, p.url, p.requests.len())).collect();
    let found: Vec<&&PageLoad> = mine.iter().filter(|p| p.url.as_deref() == Some("http://shop.test/")).collect();
    assert_eq!(found.len(), 1, "{tag}: one page load of http://shop.test/ by one of {tree:?}; page loads: {all:#?}");
    found[0]
}

// ---- the clients ----

/// Trace one client run: start tracing, run `cmd` to its end (bounded), collect, stitch.
pub async fn trace_client_with(
    tag: &str,
    cmd: Command,
    limit: Duration,
    config: &ProbeConfig,
) -> (u32, Vec<Event>, Vec<PageLoad>, Duration, String) {
    trace_client_until(tag, cmd, &Run { limit, config: config.clone(), ..Run::default() }).await
}

/// When a traced client run ends, and how it is stitched.
pub struct Run<'a> {
    /// The longest the client may take.
    pub limit: Duration,
    pub config: ProbeConfig,
    /// For a browser that does not exit after a page (the GUI ones): polled every 100 ms, the
    /// run ends when it says the lab has served what the browser was to load.
    pub done: Option<&'a dyn Fn() -> bool>,
    /// The stitcher's quiet window (default: the daemon's, or `TRACER_TEST_QUIET_MS`).
    pub quiet_ms: Option<u64>,
}

impl Default for Run<'_> {
    fn default() -> Self {
        Run { limit: Duration::from_secs(60), config: ProbeConfig::default(), done: None, quiet_ms: None }
    }
}

/// [`trace_client_with`], ending as `run` says: the client exits by itself, or `run.done`
/// says the lab served the page (then the client is stopped).
pub async fn trace_client_until(tag: &str, cmd: Command, run: &Run<'_>) -> (u32, Vec<Event>, Vec<PageLoad>, Duration, String) {
    let seed = proc_snapshot();
    let tl = Instant::now();
    let tracing = Tracing::start_with(&run.config);
    eprintln!("{tag}: probes loaded in {:.2} s", tl.elapsed().as_secs_f64());
    let bssl = tracing.boringssl_status();
    let t0 = Instant::now();
    let mut client = Client::spawn(cmd);
    let pid = client.pid;
    let deadline = t0 + run.limit;
    let mut finished = false;
    while Instant::now() < deadline {
        if client.exited() || run.done.is_some_and(|d| d()) {
            finished = true;
            break;
        }
        // Polling the client's exit or the lab's log: neither has an event to await.
        tokio::time::sleep(Duration::from_millis(if run.done.is_some() { 100 } else { 20 })).await;
    }
    let (exited, out, err) = tokio::task::spawn_blocking(move || client.stop(finished)).await.unwrap();
    let took = t0.elapsed();
    let tf = Instant::now();
    let (events, probes) = tracing.finish().await;
    eprintln!("{tag}: collected in {:.2} s", tf.elapsed().as_secs_f64());
    detach_in_background(probes);
    let pages = stitch_with(&events, &seed, run.quiet_ms.or(support::quiet_ms()));
    let tree = tree_of(&events, pid);
    dump(tag, &events, &tree, &pages);
    eprintln!("{tag}: client {pid} ran {:.1} s (finished: {exited}); {} events; boringssl: {bssl:?}", took.as_secs_f64(), events.len());
    assert!(exited, "{tag}: the client did not finish within {:?}\nstderr: {err}", run.limit);
    (pid, events, pages, took, out)
}

pub fn lab_config() -> LabConfig {
    LabConfig { dns_delay: Duration::from_millis(10), think_time: Duration::from_millis(20), ..Default::default() }
}

/// One client loads `http://shop.test/` in a fresh lab, traced from before it starts: its
/// page load as `expect` says, against the lab's logs, and stored. `command` gives the client's
/// command line (a scratch directory for its profile), `loaded` checks what the client itself
/// says (its stdout, its directory) before the trace is.
pub async fn load_the_lab_page(
    tag: &'static str,
    programs: &[&str],
    limit: Duration,
    expect: &Expect,
    command: impl FnOnce(&Lab, &Path) -> Command,
    loaded: impl FnOnce(&str, &Path),
) {
    load_the_lab_page_until(tag, programs, &Ends { limit, served: None, quiet_ms: None }, expect, command, loaded).await
}

/// How a browser's run ends.
pub struct Ends {
    /// The longest it may take.
    pub limit: Duration,
    /// For a browser that stays open after the page (the GUI ones): the paths whose requests
    /// the lab must have logged for the page to be loaded; the browser is stopped once they
    /// are and the lab then had nothing new for a second.
    pub served: Option<&'static [&'static str]>,
    /// The stitcher's quiet window for this browser (None: the daemon's default).
    pub quiet_ms: Option<u64>,
}

/// How long the lab must have had nothing new before a browser that stays open is stopped.
const LAB_QUIET: Duration = Duration::from_secs(1);

/// [`load_the_lab_page`] for a browser that ends as `ends` says.
pub async fn load_the_lab_page_until(
    tag: &'static str,
    programs: &[&str],
    ends: &Ends,
    expect: &Expect,
    command: impl FnOnce(&Lab, &Path) -> Command,
    loaded: impl FnOnce(&str, &Path),
) {
    let _timer = Timer(tag, Instant::now());
    let Some(lab) = lab_or_skip(tag, lab_config()).await else {
        return;
    };
    for p in programs {
        require(p);
    }
    let tmp = temp_dir(&format!("browsers-{tag}"));
    let cmd = command(&lab, tmp.path());
    // Done when the lab has served every path and then nothing new (no query, no request)
    // came for LAB_QUIET: a browser stopped in the middle of a lookup (falkon's own
    // getaddrinfo of the page's host for its favicon) leaves a lookup without its answer.
    let last_change = std::cell::Cell::new((0u64, 0usize, Instant::now()));
    let served = |paths: &[&str]| {
        let log = lab.http_requests();
        let now = (lab.dns_query_count(), log.len());
        let (dns, http, since) = last_change.get();
        if now != (dns, http) {
            last_change.set((now.0, now.1, Instant::now()));
            return false;
        }
        since.elapsed() >= LAB_QUIET && paths.iter().all(|p| log.iter().any(|r| r.path == *p && r.status != 0))
    };
    let done = ends.served.map(|paths| move || served(paths));
    let run = Run {
        limit: ends.limit,
        done: done.as_ref().map(|d| d as &dyn Fn() -> bool),
        quiet_ms: ends.quiet_ms,
        ..Run::default()
    };
    let (pid, events, pages, _took, out) = trace_client_until(tag, cmd, &run).await;
    loaded(&out, tmp.path());
    let p = page_in_tree(tag, &pages, &tree_of(&events, pid));
    check_page_load(tag, p, &lab, expect);
    assert_stored(tag, p).await;
    if let Some(b) = &expect.table {
        crate::table::record(b, p);
    }
}

/// SIGSTOP a process and its descendants (listed until no new one appears); returns them,
/// parents first.
pub fn stop_tree(root: u32) -> Vec<u32> {
    let mut stopped = vec![root];
    unsafe { libc::kill(root as i32, libc::SIGSTOP) };
    for _ in 0..5 {
        let fresh: Vec<u32> = descendants(root).into_iter().filter(|p| !stopped.contains(p)).collect();
        if fresh.is_empty() {
            break;
        }
        for p in fresh {
            unsafe { libc::kill(p as i32, libc::SIGSTOP) };
            stopped.push(p);
        }
    }
    stopped
}
