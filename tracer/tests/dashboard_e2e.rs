//! The dashboard end to end, in a real headless Chromium (Debian's `chromium`, driven over the
//! DevTools protocol through `--remote-debugging-pipe`: no WebDriver, no Node.js).
//!
//! Everything runs inside a lab network namespace (browsers must never run in the root
//! namespace): the daemon (`tracer run`; its probes see the whole machine from any
//! namespace), the browser, and curl. The test opens the dashboard, loads
//! `http://shop.test/` with curl (301 -> `https://www.shop.test/`), sees the page load in
//! progress and then in the live list, opens its waterfall and checks every bar and number
//! against the JSON API, hovers a bar, runs "fetch baseline now", visits History and Health,
//! and saves screenshots under `target/dashboard-e2e/`.
//!
//! Needs root; without it the test is skipped (and fails under CI=true).
use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    os::{fd::FromRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::Stdio,
    sync::mpsc,
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::{Value, json};
use tracer::lab::{Lab, LabConfig};

mod support;
use support::{Reaped, TRACER, browsers::CHROMIUM_HEADLESS_FLAGS, lab_or_skip, require};

const PORT: u16 = 7878;

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    let dir = target.join("dashboard-e2e");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

// ---------------------------------------------------------------------------------------------
// HTTP inside the namespace (the dashboard listens on the namespace's loopback)

/// The dashboard's token, given to the daemon with `--token-file` (a 0600 file the test writes).
const TOKEN: &str = "e2e-dashboard-token-0123456789";

/// `GET path` on the dashboard from inside the lab's namespace: (status, body), or status 0
/// when nothing answers.
fn get(lab: &Lab, path: &str) -> (u16, String) {
    let path = path.to_string();
    let (status, body) = lab
        .spawn_in_netns(move || tracer::bench::util::http_get(SocketAddr::from(([127, 0, 0, 1], PORT)), &path, TOKEN, Duration::from_secs(10)))
        .join()
        .unwrap()
        .unwrap()
        .unwrap_or((0, Vec::new()));
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn api(lab: &Lab, path: &str) -> Value {
    let (status, body) = get(lab, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The DevTools protocol over --remote-debugging-pipe (fd 3: commands in, fd 4: replies out,
// each message a JSON text followed by a NUL byte)

struct Browser {
    to: File,
    from: mpsc::Receiver<Value>,
    next: u64,
    session: String,
    _child: Reaped,
}

fn cloexec_pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    (fds[0], fds[1])
}

impl Browser {
    fn launch(lab: &Lab, profile: &Path, log: File) -> Browser {
        let (cmd_r, cmd_w) = cloexec_pipe(); // we write commands, chromium reads fd 3
        let (out_r, out_w) = cloexec_pipe(); // chromium writes fd 4, we read
        let mut cmd = lab.exec_command(require("chromium"));
        cmd.args(CHROMIUM_HEADLESS_FLAGS)
            .args(["--hide-scrollbars", "--window-size=1280,800", "--remote-debugging-pipe"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. The ends
        // are first copied above 10 so that dup2 never gets a descriptor onto itself (which
        // would keep O_CLOEXEC).
        unsafe {
            cmd.pre_exec(move || {
                let a = libc::fcntl(cmd_r, libc::F_DUPFD, 10);
                let b = libc::fcntl(out_w, libc::F_DUPFD, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = Reaped::spawn(&mut cmd, "chromium");
        // SAFETY: we own these descriptors; the child has its copies.
        unsafe {
            libc::close(cmd_r);
            libc::close(out_w);
        }
        let to = unsafe { File::from_raw_fd(cmd_w) };
        let from_file = unsafe { File::from_raw_fd(out_r) };
        let (tx, from) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(from_file);
            loop {
                let mut msg = Vec::new();
                match r.read_until(0, &mut msg) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        msg.pop();
                        if let Ok(v) = serde_json::from_slice::<Value>(&msg)
                            && tx.send(v).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        let mut b = Browser { to, from, next: 0, session: String::new(), _child: child };
        let target = b.call_browser("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = b.call_browser("Target.attachToTarget", json!({ "targetId": target_id, "flatten": true }));
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b.call("Emulation.setDeviceMetricsOverride", json!({ "width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false }));
        b
    }

    fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("writing to chromium");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.from.recv_timeout(left).unwrap_or_else(|_| panic!("no answer from chromium to {method}"));
            if v["id"].as_u64() == Some(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v["result"].clone();
            }
            // Events (no id) are not needed.
        }
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.send(method, params, Some(&s))
    }

    /// Evaluates a JS expression (promises awaited) and returns its value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({ "expression": expr, "awaitPromise": true, "returnByValue": true }));
        if let Some(e) = r.get("exceptionDetails") {
            panic!("JS exception in {expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is truthy; returns its value.
    fn wait_for(&mut self, what: &str, expr: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        // Errors (the page still loading, an element not there yet) count as "not yet".
        let guarded = format!("(async () => {{ try {{ return await ({expr}); }} catch (e) {{ return null; }} }})()");
        loop {
            let v = self.eval(&guarded);
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            if Instant::now() > deadline {
                let body = self.eval("document.body ? document.body.innerText.slice(0, 3000) : ''");
                panic!("timed out waiting for {what} ({expr}); page text:\n{}", body.as_str().unwrap_or(""));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
    }

    fn screenshot(&mut self, path: &Path, full_page: bool) {
        let mut params = json!({ "format": "png" });
        if full_page {
            let m = self.call("Page.getLayoutMetrics", json!({}));
            let size = &m["cssContentSize"];
            params["captureBeyondViewport"] = json!(true);
            params["clip"] = json!({ "x": 0, "y": 0, "width": 1280, "height": size["height"].as_f64().unwrap_or(800.0).max(800.0), "scale": 1 });
        }
        let r = self.call("Page.captureScreenshot", params);
        let png = base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap()).expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }

    fn mouse_move(&mut self, x: f64, y: f64) {
        self.call("Input.dispatchMouseEvent", json!({ "type": "mouseMoved", "x": x, "y": y }));
    }

    fn close(mut self) {
        let _ = self.call_browser("Browser.close", json!({}));
        let deadline = Instant::now() + Duration::from_secs(5);
        while self._child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// A phase's duration as the waterfall draws it (HAR's connect holds ssl: `tcp` is the TCP part).
fn phase_ms(t: &Value, key: &str) -> f64 {
    let f = |k: &str| t[k].as_f64().unwrap_or(-1.0);
    if key == "tcp" {
        if f("tcp") >= 0.0 {
            return f("tcp");
        }
        if f("connect") >= 0.0 {
            return (f("connect") - f("ssl").max(0.0)).max(0.0);
        }
        return -1.0;
    }
    f(key)
}

const PHASES: [&str; 7] = ["blocked", "dns", "tcp", "ssl", "send", "wait", "receive"];

fn fmt_exact(v: f64) -> String {
    if v < 0.0 { "–".to_string() } else { format!("{v:.2} ms") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let started = Instant::now();
    let config = LabConfig { dns_delay: Duration::from_millis(20), think_time: Duration::from_millis(40), ..Default::default() };
    let Some(lab) = lab_or_skip("dashboard_e2e", config).await else {
        return;
    };
    for p in ["chromium", "curl"] {
        require(p);
    }
    let out = artifacts();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("tracer.db");
    let token_file = tmp.path().join("dashboard.token");
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&token_file).unwrap();
        std::io::Write::write_all(&mut f, TOKEN.as_bytes()).unwrap();
    }

    // The daemon, inside the lab's namespace (its dashboard is on the namespace's loopback,
    // its reference fetcher resolves through the lab and trusts the lab CA).
    let daemon_log = File::create(out.join("daemon.log")).unwrap();
    let mut daemon = lab.exec_command(TRACER);
    daemon
        .args(["run", "--db"])
        .arg(&db)
        .args(["--listen", &format!("127.0.0.1:{PORT}")])
        .arg("--token-file")
        .arg(&token_file)
        .env("SSL_CERT_FILE", lab.ca_pem_path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(daemon_log.try_clone().unwrap())
        .stderr(daemon_log);
    let mut daemon = Reaped::spawn(&mut daemon, "tracer run");
    let daemon_pid = daemon.id();
    // Wait for its start-up report rather than knocking on the port (each refused connect
    // would be traced as a failed page load).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(out.join("daemon.log")).unwrap_or_default();
        if log.contains("tracing; Ctrl-C to stop") && get(&lab, "/api/health").0 == 200 {
            break;
        }
        if let Some(st) = daemon.try_wait().unwrap() {
            panic!("tracer run exited ({st}); see {}", out.join("daemon.log").display());
        }
        assert!(Instant::now() < deadline, "the dashboard did not come up; see {}", out.join("daemon.log").display());
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("daemon up after {:?}", started.elapsed());
    let health = api(&lab, "/api/health");
    assert!(health["probes_attached"].as_u64().unwrap() > 0, "{health}");

    // The browser opens the live view.
    let profile = tempfile::tempdir().unwrap();
    let mut b = Browser::launch(&lab, profile.path(), File::create(out.join("chromium.log")).unwrap());
    let base = format!("http://127.0.0.1:{PORT}");
    // Logged in once by the URL with the token (as the daemon prints it on a terminal): the
    // cookie it sets carries every later request, the live stream's included.
    b.navigate(&format!("{base}/?token={TOKEN}#/live"));
    b.wait_for("the live view", "document.body.dataset.view === 'live' && !!document.querySelector('#live-table')", Duration::from_secs(15));
    b.wait_for("the live connection", "document.getElementById('conn').dataset.state === 'up'", Duration::from_secs(10));
    let address = b.eval("location.href");
    assert_eq!(address, json!(format!("{base}/#/live")), "the token is dropped from the address after the login");
    assert_eq!(b.eval("document.cookie"), json!(""), "the token cookie is HttpOnly: the page's scripts cannot read it");
    // No external resources: every resource the page loaded came from the dashboard.
    let foreign = b.eval(&format!("performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('{base}'))"));
    assert_eq!(foreign, json!([]), "external resources");
    // Record what the in-progress indicator shows while curl runs.
    b.eval(
        "window.__progress = []; new MutationObserver(() => window.__progress.push(document.getElementById('progress').title + ' | ' + \
         [...document.querySelectorAll('#live-open tr')].map(r => r.dataset.tgid).join(','))) \
         .observe(document.getElementById('progress'), { childList: true, subtree: true, attributes: true }); true",
    );

    // A page load happens: curl in the lab, http://shop.test/ -> 301 -> https://www.shop.test/,
    // then a second URL on the same origin over the same (reused) connection.
    let curl = lab
        .exec_command("curl")
        .args(["-sS", "-L", "-o", "/dev/null", "-o", "/dev/null", "--cacert"])
        .arg(lab.ca_pem_path())
        .args(["http://shop.test/", "https://www.shop.test/bytes/20000"])
        .spawn()
        .unwrap();
    let curl_pid = curl.id();
    let st = curl.wait_with_output().unwrap().status;
    assert!(st.success(), "curl: {st}");

    // It appears live, with its client, URL, status, request count, bytes and total.
    let row = format!("#live-rows tr[data-tgid=\"{curl_pid}\"]");
    let id = b
        .wait_for("curl's page load in the live list", &format!("(document.querySelector('{row}') || {{}}).dataset?.id"), Duration::from_secs(15))
        .as_str()
        .unwrap()
        .parse::<i64>()
        .unwrap();
    eprintln!("page load {id} live after {:?}", started.elapsed());
    let progress: Vec<String> = serde_json::from_value(b.eval("window.__progress")).unwrap();
    assert!(
        progress.iter().any(|p| p.contains(&format!("curl [{curl_pid}]")) && p.contains(&curl_pid.to_string())),
        "the in-progress indicator never showed curl [{curl_pid}]: {progress:?}"
    );
    let listed = api(&lab, "/api/page-loads?process=curl&limit=10");
    let summary = listed["items"].as_array().unwrap().iter().find(|i| i["id"] == id).cloned().expect("the live row is in the list API");
    assert_eq!(summary["tgid"], curl_pid);
    assert_eq!(summary["url"], "http://shop.test/");
    assert_eq!(summary["status"], 200);
    let cells = b.eval(&format!(
        "[...document.querySelector('{row}').children].map(td => td.innerText.trim())"
    ));
    let cells: Vec<String> = serde_json::from_value(cells).unwrap();
    assert_eq!(cells[1], format!("curl [{curl_pid}]"), "{cells:?}");
    assert_eq!(cells[2], "http://shop.test/");
    assert_eq!(cells[3], "200");
    assert_eq!(cells[5], summary["request_count"].to_string());
    assert_eq!(summary["request_count"], 3, "redirect hop, document, /bytes: {summary}");
    b.screenshot(&out.join("live.png"), false);

    // Open its waterfall.
    b.eval(&format!("document.querySelector('{row}').click(); true"));
    b.wait_for("the waterfall", "document.body.dataset.view === 'page' && document.querySelectorAll('#waterfall tr.wf-row').length", Duration::from_secs(10));
    let detail = api(&lab, &format!("/api/page-loads/{id}"));
    let page = &detail["page"];
    let requests = page["requests"].as_array().unwrap();
    let page_ms = (page["ended_ns"].as_u64().unwrap() - page["started_ns"].as_u64().unwrap()) as f64 / 1e6;

    // Every bar against the API: one row per request, one segment per phase that happened, with
    // the exact duration, and a width and position on the time axis that match it.
    let drawn = b.eval(
        "[...document.querySelectorAll('#waterfall tr.wf-row')].map(tr => { \
           const track = tr.querySelector('.wf-track').getBoundingClientRect(); \
           return { index: Number(tr.dataset.index), width: track.width, \
             segs: [...tr.querySelectorAll('.seg')].map(s => { const r = s.getBoundingClientRect(); \
               return { phase: s.dataset.phase, ms: s.dataset.ms, start: Number(s.dataset.startMs), left: r.left - track.left, width: r.width }; }) }; })",
    );
    let drawn = drawn.as_array().unwrap();
    assert_eq!(drawn.len(), requests.len(), "one row per request");
    for (i, (row, r)) in drawn.iter().zip(requests).enumerate() {
        assert_eq!(row["index"], i);
        let track = row["width"].as_f64().unwrap();
        assert!(track > 300.0, "the bar column is usable at 1280x800: {track}px");
        let segs = row["segs"].as_array().unwrap();
        for key in PHASES {
            let want = phase_ms(&r["timings"], key);
            let seg = segs.iter().find(|s| s["phase"] == key);
            if want < 0.0 {
                assert!(seg.is_none(), "request {i}: {key} did not happen but is drawn");
                continue;
            }
            let seg = seg.unwrap_or_else(|| panic!("request {i}: no {key} bar ({want} ms)"));
            assert_eq!(seg["ms"], format!("{want:.2}"), "request {i} {key}");
            let px = (want / page_ms * track).max(1.0);
            let w = seg["width"].as_f64().unwrap();
            assert!((w - px).abs() <= 1.5, "request {i} {key}: {w}px drawn, {px}px expected");
            let left = seg["start"].as_f64().unwrap() / page_ms * track;
            assert!((seg["left"].as_f64().unwrap() - left).abs() <= 1.5, "request {i} {key}: left {} vs {left}", seg["left"]);
        }
        // The bar starts where the request started.
        let start = (r["started_ns"].as_u64().unwrap() - page["started_ns"].as_u64().unwrap()) as f64 / 1e6;
        let first = segs.iter().map(|s| s["start"].as_f64().unwrap()).fold(f64::MAX, f64::min);
        assert!((first - start).abs() < 0.05, "request {i}: the bar starts at {first} ms, the request at {start} ms");
    }
    let ticks = b.eval("[...document.querySelectorAll('#waterfall .wf-tick-label')].map(t => t.innerText)");
    assert!(ticks.as_array().unwrap().len() >= 3, "time axis: {ticks}");
    let legend = b.eval("[...document.querySelectorAll('.legend-item')].map(l => l.innerText.trim())");
    assert_eq!(legend, json!(["Blocked", "DNS", "Connect", "SSL/TLS", "Send", "Wait (TTFB)", "Receive", "Idle"]));
    // The phase colours are the dev tools' ones.
    let colours = b.eval(
        "['dns','tcp','ssl','wait','receive'].map(k => getComputedStyle(document.querySelector('.legend .seg-' + k)).backgroundColor)",
    );
    assert_eq!(colours, json!(["rgb(31, 140, 140)", "rgb(232, 145, 44)", "rgb(176, 94, 192)", "rgb(124, 197, 118)", "rgb(26, 115, 232)"]));

    // The document's request is selected: its exact numbers; then click the redirect hop.
    let doc_index = page["redirect_chain"].as_array().unwrap().last().unwrap().as_u64().unwrap() as usize;
    for index in [doc_index, 0] {
        if index != doc_index {
            b.eval(&format!("document.querySelector('#waterfall tr.wf-row[data-index=\"{index}\"]').click(); true"));
        }
        b.wait_for("the request detail", &format!("document.querySelector('#request-detail .detail-grid')?.dataset.index === '{index}'"), Duration::from_secs(5));
        let shown = b.eval("Object.fromEntries([...document.querySelectorAll('#request-detail td[data-phase]')].map(td => [td.dataset.phase, td.innerText]))");
        for key in PHASES {
            assert_eq!(shown[key], fmt_exact(phase_ms(&requests[index]["timings"], key)), "request {index} {key}");
        }
        let text = b.eval("document.querySelector('#request-detail').innerText");
        let text = text.as_str().unwrap();
        assert!(text.contains(requests[index]["url"].as_str().unwrap()), "{text}");
        assert!(text.contains(&format!("{} B", requests[index]["response_bytes"])), "{text}");
    }
    // Hover over the document's wait bar: the tooltip has the same numbers.
    let spot = b.eval(&format!(
        "(() => {{ const s = document.querySelector('#waterfall tr.wf-row[data-index=\"{doc_index}\"] .seg-wait').getBoundingClientRect(); \
           return [s.left + s.width / 2, s.top + s.height / 2]; }})()"
    ));
    b.mouse_move(spot[0].as_f64().unwrap(), spot[1].as_f64().unwrap());
    b.wait_for("the tooltip", "!document.getElementById('tooltip').hidden", Duration::from_secs(5));
    let tip = b.eval("document.getElementById('tooltip').innerText");
    let wait = phase_ms(&requests[doc_index]["timings"], "wait");
    assert!(tip.as_str().unwrap().contains(&fmt_exact(wait)), "tooltip {tip} lacks wait {wait}");
    b.mouse_move(5.0, 5.0);

    // Redirect chain, DNS with its CNAME chain, TLS, connection reuse.
    let chain = b.eval("[...document.querySelectorAll('#redirect-chain li')].map(li => li.innerText)");
    let chain: Vec<String> = serde_json::from_value(chain).unwrap();
    assert_eq!(chain.len(), 2, "{chain:?}");
    assert!(chain[0].contains("301") && chain[0].contains("http://shop.test/"), "{chain:?}");
    assert!(chain[1].contains("200") && chain[1].contains("https://www.shop.test/"), "{chain:?}");
    let dns = b.eval("document.querySelector('#dns-table').innerText");
    assert!(dns.as_str().unwrap().contains("www.shop.test → edge.cdn.test"), "{dns}");
    let conns = b.eval("document.querySelector('#connections-table').innerText");
    let tls = page["connections"].as_array().unwrap().iter().find_map(|c| c["tls"].as_object().cloned()).expect("a TLS connection");
    for field in ["version", "cipher", "sni"] {
        if let Some(v) = tls[field].as_str() {
            assert!(conns.as_str().unwrap().contains(v), "connections table lacks TLS {field} {v}: {conns}");
        }
    }
    // Connection reuse: the /bytes request went over the document's connection.
    let chips: Vec<String> = serde_json::from_value(b.eval("[...document.querySelectorAll('#waterfall .conn-chip')].map(c => c.innerText)")).unwrap();
    let want: Vec<String> = requests
        .iter()
        .map(|r| format!("#{} {}", r["connection"], if r["new_connection"] == true { "new" } else { "reused" }))
        .collect();
    assert_eq!(chips, want);
    assert!(chips.iter().any(|c| c.ends_with("reused")), "{chips:?}");
    let facts = b.eval("document.querySelector('#page-facts [data-fact=\"requests\"] .fact-value').innerText");
    assert_eq!(facts, json!(requests.len().to_string()));

    // Comparison: fetch a baseline now (the daemon runs the reference fetcher in the lab).
    b.wait_for("the comparison section", "document.querySelector('#fetch-baseline') && !document.querySelector('#fetch-baseline').disabled", Duration::from_secs(5));
    b.eval("document.querySelector('#fetch-baseline').click(); true");
    b.wait_for("the comparison table", "!!document.querySelector('#compare-table')", Duration::from_secs(25));
    let cmp = api(&lab, &format!("/api/page-loads/{id}/compare"));
    let c = &cmp["comparison"];
    assert_eq!(c["baseline"]["status"], 200, "the reference fetch went through the lab: {cmp}");
    assert_eq!(c["baseline_redirects"], 1);
    let shown = b.eval(
        "Object.fromEntries([...document.querySelectorAll('#compare-table tr[data-phase]')].map(tr => [tr.dataset.phase, [...tr.querySelectorAll('td')].slice(0, 3).map(td => td.innerText)]))",
    );
    for r in c["rows"].as_array().unwrap() {
        let phase = r["phase"].as_str().unwrap();
        let f = |v: &Value| v.as_f64().map(fmt_exact).unwrap_or_else(|| "–".into());
        let diff = r["diff_ms"].as_f64().map(|d| if d == 0.0 { 0.0 } else { d }).map(|d| format!("{}{d:.2} ms", if d > 0.0 { "+" } else { "" })).unwrap_or_else(|| "–".into());
        // Same numbers; the last digit may differ by one (JS toFixed and Rust round a
        // half-way float differently: 150.265 -> "150.27" vs "150.26").
        let want = [f(&r["traced_ms"]), f(&r["baseline_ms"]), diff];
        let got: Vec<String> = (0..3).map(|i| shown[phase][i].as_str().unwrap_or("").to_string()).collect();
        for (g, w) in got.iter().zip(&want) {
            let num = |t: &str| t.trim_end_matches(" ms").trim_start_matches('+').parse::<f64>().ok();
            match (num(g), num(w)) {
                (Some(a), Some(b)) => assert!((a - b).abs() <= 0.0101, "comparison row {phase}: shown {got:?}, API {want:?}"),
                _ => assert_eq!(g, w, "comparison row {phase}: shown {got:?}, API {want:?}"),
            }
        }
    }
    let certs = b.wait_for("the certificate", "document.querySelector('.certs')?.innerText", Duration::from_secs(5));
    assert!(certs.as_str().unwrap().contains("www.shop.test"), "{certs}");
    b.eval("window.scrollTo(0, 0); true");
    b.screenshot(&out.join("page-load.png"), false);
    b.screenshot(&out.join("page-load-full.png"), true);

    // History with a filter, and Health.
    b.navigate(&format!("{base}/#/history?process=curl&status=2xx"));
    b.wait_for("the history list", &format!("document.querySelector('#history-table tr[data-id=\"{id}\"]') && document.querySelector('#history-range')"), Duration::from_secs(10));
    let range = b.eval("document.querySelector('#history-range').innerText");
    assert!(range.as_str().unwrap().starts_with("1–"), "{range}");
    b.screenshot(&out.join("history.png"), false);
    // A malformed filter: the API's 400 is shown and the field is marked.
    b.navigate(&format!("{base}/#/history?status=200"));
    let err = b.wait_for("the filter error", "document.querySelector('.history-status .error-box')?.innerText", Duration::from_secs(10));
    assert!(err.as_str().unwrap().contains("invalid status"), "{err}");
    assert_eq!(b.eval("document.querySelector('#history-filters select[name=status]').classList.contains('invalid')"), json!(true));
    b.navigate(&format!("{base}/#/health"));
    b.wait_for("the health view", "document.querySelectorAll('#probe-table tbody tr').length", Duration::from_secs(10));
    let stats = b.eval("Object.fromEntries([...document.querySelectorAll('#health-stats .stat')].map(s => [s.dataset.stat, s.querySelector('.stat-value').innerText]))");
    assert!(stats["received"].as_str().unwrap().parse::<u64>().unwrap() > 0, "{stats}");
    for k in ["uptime", "events_per_s", "lost", "db", "probes"] {
        assert!(stats.get(k).is_some(), "health shows {k}: {stats}");
    }
    b.screenshot(&out.join("health.png"), false);

    // The daemon stops cleanly while the browser is still connected to the live stream.
    let stopping = Instant::now();
    unsafe { libc::kill(daemon_pid as i32, libc::SIGTERM) };
    let status = daemon.wait(Duration::from_secs(15));
    assert!(status.success(), "tracer run: {status}; see {}", out.join("daemon.log").display());
    eprintln!("daemon stopped {:?} after SIGTERM", stopping.elapsed());
    b.close();
    eprintln!("dashboard e2e done in {:?}; screenshots in {}", started.elapsed(), out.display());
}
