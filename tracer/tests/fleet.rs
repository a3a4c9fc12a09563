//! Many machines: `GET /metrics` scraped by a real Prometheus, and OpenTelemetry traces
//! received and decoded by an OTLP/HTTP receiver in the test.
//!
//! Root only (the daemon loads the real probes, the lab builds a namespace). Not root: each
//! test says why it skips; under CI (`CI=true`) a skip is a failure. Prometheus is the Debian
//! package `prometheus` (`cargo xtask test` installs it; missing, the test fails); the test
//! starts its own on a free loopback port with a temporary configuration and data directory,
//! and kills it when it ends.
use std::{
    collections::{BTreeMap, HashMap},
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{KeyValue, any_value::Value as AnyValue},
    trace::v1::{Span, span::SpanKind},
};
use prost::Message as _;
use serde_json::Value;
use tracer::lab::{Lab, LabConfig};

mod support;
use support::{Reaped, daemon::Daemon, eventually, free_port, http, require, root_or_skip, run_bounded, sqlite3};

/// A shell that waits for a line on stdin, then runs `script` (so that its work starts once
/// the daemon traces it).
fn shell(script: &str) -> (Reaped, std::process::ChildStdin) {
    let mut child = Reaped::spawn(Command::new("sh").args(["-c", &format!("read go; {script}")]).stdin(Stdio::piped()).stdout(Stdio::null()), "the test's shell");
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

// ---------------------------------------------------------------------------------------------
// Prometheus

/// `prometheus` on a free loopback port, scraping `target` every second.
struct Prometheus {
    _child: Reaped,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scraping `127.0.0.1:target` with the bearer token in `credentials_file`, as the
    /// README's example does.
    fn start(target: u16, credentials_file: &Path) -> Prometheus {
        let bin = require("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: tracer\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    \
                 authorization:\n      credentials_file: {}\n    \
                 static_configs:\n      - targets: ['127.0.0.1:{target}']\n",
                credentials_file.display()
            ),
        )
        .unwrap();
        let port = free_port().unwrap();
        let log = dir.path().join("prometheus.log");
        let child = Reaped::spawn(
            Command::new(bin)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::create(dir.path().join("prometheus.err")).unwrap()),
            "prometheus",
        );
        let p = Prometheus { _child: child, port, log: dir.path().join("prometheus.err"), _dir: dir };
        eventually("Prometheus ready", Duration::from_secs(60), || {
            let mut curl = Command::new(require("curl"));
            curl.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://127.0.0.1:{port}/-/ready")]);
            (run_bounded(curl, Duration::from_secs(10)).stdout == b"200").then_some(())
        });
        p
    }

    /// An instant query: the result vector as (labels, value).
    fn query(&self, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let body = http::get(&format!("http://127.0.0.1:{}/api/v1/query", self.port), &[("query", promql)]);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "{promql}: {v}");
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let labels = r["metric"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
                (labels, r["value"][1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect()
    }

    /// `sum by (label) (...)` as a map.
    fn by(&self, label: &str, promql: &str) -> BTreeMap<String, f64> {
        self.query(&format!("sum by ({label}) ({promql})")).into_iter().map(|(l, v)| (l.get(label).cloned().unwrap_or_default(), v)).collect()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// The history, read straight from SQLite (read-only, beside the running daemon).
fn sqlite(db: &Path, sql: &str) -> Vec<(String, i64, f64)> {
    sqlite3(db, &["-readonly", "-separator", "\t"], sql)
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            (f.next().unwrap().to_string(), f.next().unwrap().parse().unwrap(), f.next().unwrap_or("0").parse().unwrap_or(0.0))
        })
        .collect()
}

/// The README's example queries (the `promql` block of "Running on many machines"): each
/// query follows a comment line and may span lines.
fn readme_queries() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let block = readme.split("```promql\n").nth(1).expect("a promql block in the README").split("```").next().unwrap();
    let mut queries: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            if !current.is_empty() {
                queries.push(std::mem::take(&mut current));
            }
            continue;
        }
        // A continuation is indented; an unindented line right after a query is a query too.
        if !current.is_empty() && !line.starts_with(' ') {
            queries.push(std::mem::take(&mut current));
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.is_empty() {
        queries.push(current);
    }
    queries
}

/// A real Prometheus scrapes the daemon while the lab serves page loads (curl with a redirect,
/// wget, a name that does not resolve); its histograms' counts and sums, per host, equal the
/// SQLite history's, and so do the page-load, request and failure counters.
#[test]
fn prometheus_scrapes_histograms_that_match_the_history() {
    if !root_or_skip("prometheus_scrapes") {
        return;
    }
    for p in ["curl", "wget"] {
        require(p);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = rt.block_on(Lab::start(LabConfig { dns_delay: Duration::from_millis(5), think_time: Duration::from_millis(10), ..Default::default() })).expect("lab");
    let ca = lab.ca_pem_path().display().to_string();
    let ns = lab.netns_name().to_string();
    let curls = 5;
    // One page load first: once Prometheus has its series, the rest are increases that
    // rate() sees (the README's p95 query).
    let script = format!(
        "ip netns exec {ns} curl -sS -L -o /dev/null --cacert {ca} http://shop.test/ || exit 1; read more; \
         for i in $(seq 2 {curls}); do ip netns exec {ns} curl -sS -L -o /dev/null --cacert {ca} http://shop.test/ || exit 1; done; \
         ip netns exec {ns} wget -q -O /dev/null --ca-certificate {ca} https://www.shop.test/ || exit 2; \
         ip netns exec {ns} wget -q -O /dev/null --ca-certificate {ca} https://static.shop.test/app.css || exit 3; \
         ip netns exec {ns} curl -s -o /dev/null https://nope.shop.test/; test $? = 6 || exit 4"
    );
    let (mut sh, mut go) = shell(&script);
    // Prometheus holds a read-only token: /metrics, and nothing else.
    let secrets = tempfile::tempdir().unwrap();
    let metrics_token = "prometheus-metrics-token-0123456789";
    let metrics_token_file = support::daemon::write_token_file(secrets.path(), "metrics.token", metrics_token, 0o640);
    let mut d = Daemon::start(&["--pid", &sh.id().to_string(), "--metrics-token-file", metrics_token_file.to_str().unwrap()]);
    let bearer = format!("Authorization: Bearer {metrics_token}");
    assert_eq!(d.status_of("/metrics", &["-H", &bearer]), 200, "the metrics token opens /metrics");
    assert_eq!(d.status_of("/api/page-loads", &["-H", &bearer]), 403, "and nothing else");
    assert_eq!(d.status_of("/metrics", &[]), 401);
    let prom = Prometheus::start(d.port, &metrics_token_file);
    eventually("Prometheus scraping the daemon", Duration::from_secs(60), || {
        prom.query("up{job=\"tracer\"}").first().is_some_and(|(_, v)| *v == 1.0).then_some(())
    });

    writeln!(go, "go").unwrap();
    eventually("Prometheus seeing the first TLS handshake", Duration::from_secs(60), || {
        (!prom.query("tracer_tls_duration_seconds_count{host=\"www.shop.test\"}").is_empty()).then_some(())
    });
    writeln!(go, "more").unwrap();
    let status = sh.wait(Duration::from_secs(120));
    assert!(status.success(), "the shell's clients failed: {status:?}");
    let expected = curls + 3;
    eventually("every page load stored", Duration::from_secs(60), || (d.page_loads().len() == expected).then_some(()));
    // Prometheus has scraped the final state once its count of page loads is the history's.
    eventually("Prometheus seeing every page load", Duration::from_secs(60), || {
        let got: f64 = prom.query("sum(tracer_page_loads_total)").iter().map(|(_, v)| v).sum();
        (got == expected as f64).then_some(())
    });

    let histograms = [
        ("dns", "SELECT lower(host), COUNT(*), SUM(dns_ms) FROM requests WHERE dns_ms >= 0 GROUP BY 1"),
        ("connect", "SELECT lower(host), COUNT(*), SUM(connect_ms) FROM requests WHERE connect_ms >= 0 GROUP BY 1"),
        ("tls", "SELECT lower(host), COUNT(*), SUM(ssl_ms) FROM requests WHERE ssl_ms >= 0 GROUP BY 1"),
        ("wait", "SELECT lower(host), COUNT(*), SUM(wait_ms) FROM requests WHERE wait_ms >= 0 GROUP BY 1"),
        ("receive", "SELECT lower(host), COUNT(*), SUM(receive_ms) FROM requests WHERE receive_ms >= 0 GROUP BY 1"),
        ("page_load", "SELECT host, COUNT(*), SUM(total_ms) FROM page_loads GROUP BY 1"),
    ];
    for (family, sql) in histograms {
        let mut stored = sqlite(&d.db, sql);
        stored.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(!stored.is_empty(), "{family}: the history has observations");
        let counts = prom.by("host", &format!("tracer_{family}_duration_seconds_count"));
        let sums = prom.by("host", &format!("tracer_{family}_duration_seconds_sum"));
        let infs = prom.by("host", &format!("tracer_{family}_duration_seconds_bucket{{le=\"+Inf\"}}"));
        let stored_hosts: Vec<&String> = stored.iter().map(|(h, _, _)| h).collect();
        assert_eq!(counts.keys().collect::<Vec<_>>(), stored_hosts, "{family}: the same hosts\n{}", prom.log_tail());
        for (host, n, ms) in &stored {
            assert_eq!(counts[host], *n as f64, "{family} {host}: count");
            assert_eq!(infs[host], *n as f64, "{family} {host}: +Inf bucket");
            assert!((sums[host] - ms / 1000.0).abs() < 1e-6, "{family} {host}: sum {} s, history {ms} ms", sums[host]);
        }
    }
    // The hosts of this run, phase by phase (what the lab serves).
    let tls = prom.by("host", "tracer_tls_duration_seconds_count");
    assert_eq!(tls.keys().map(String::as_str).collect::<Vec<_>>(), ["static.shop.test", "www.shop.test"], "TLS only on the https hosts");
    let clients = prom.by("client", "tracer_page_loads_total");
    assert_eq!(clients.keys().map(String::as_str).collect::<Vec<_>>(), ["curl", "wget"], "clients");

    // Requests by status class and failures, against the history.
    let classes = prom.by("status_class", "tracer_requests_total");
    let stored = sqlite(
        &d.db,
        "SELECT CASE WHEN status IS NULL THEN (CASE WHEN error IS NULL THEN 'unknown' ELSE 'failed' END) \
         ELSE (status / 100) || 'xx' END, COUNT(*), 0 FROM requests GROUP BY 1",
    );
    assert_eq!(classes, stored.iter().map(|(c, n, _)| (c.clone(), *n as f64)).collect(), "requests by status class");
    assert_eq!(classes.get("3xx"), Some(&(curls as f64)), "one redirect per curl -L");
    let failures = prom.query("tracer_failures_total");
    assert_eq!(failures.len(), 1, "{failures:?}");
    let (labels, n) = &failures[0];
    assert_eq!((labels["phase"].as_str(), labels["reason"].as_str(), labels["client"].as_str(), *n), ("dns", "ERR_NAME_NOT_RESOLVED", "curl", 1.0));

    // Events and probes.
    let received: f64 = prom.query("sum(tracer_events_received_total)").iter().map(|(_, v)| v).sum();
    assert!(received > 0.0);
    let attached = prom.by("family", "tracer_probes_attached");
    // Under a filter (`--pid`) connects and DNS are libc uprobes, not syscall tracepoints.
    for family in ["libc_sockets", "tcp_state", "process", "tls_openssl"] {
        assert!(attached.get(family).is_some_and(|n| *n > 0.0), "{family} attached: {attached:?}");
    }
    assert_eq!(prom.query("sum(tracer_events_lost_total)").first().map(|(_, v)| *v), Some(0.0));

    // The README's queries run; the first is the p95 TLS handshake per host (the second needs
    // an hour of history to return anything).
    let queries = readme_queries();
    assert!(queries.len() >= 2 && queries[0].contains("tracer_tls_duration_seconds_bucket"), "{queries:#?}");
    for q in &queries {
        prom.query(q);
    }
    let p95 = prom.query(&queries[0]);
    let www = p95.iter().find(|(l, _)| l.get("host").map(String::as_str) == Some("www.shop.test")).map(|(_, v)| *v);
    assert!(www.is_some_and(|v| v > 0.0 && v <= 60.0), "p95 TLS for www.shop.test: {p95:?}");

    assert!(d.stop().0.success());
}

// ---------------------------------------------------------------------------------------------
// OTLP

/// An OTLP/HTTP receiver on loopback: every decoded export request goes to the channel.
fn otlp_receiver(rt: &tokio::runtime::Runtime) -> (u16, mpsc::Receiver<ExportTraceServiceRequest>) {
    use axum::{Router, body::Bytes, http::HeaderMap, routing::post};
    let (tx, rx) = mpsc::channel();
    let app = Router::new().route(
        "/v1/traces",
        post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                assert_eq!(headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/x-protobuf"));
                let req = ExportTraceServiceRequest::decode(body).expect("an ExportTraceServiceRequest");
                let _ = tx.send(req);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move { axum::serve(listener, app).await });
    (port, rx)
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, AnyValue> {
    kvs.iter().filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?.value?))).collect()
}

fn s(v: &str) -> AnyValue {
    AnyValue::StringValue(v.to_string())
}

/// `curl -L http://shop.test/` (a 301, then https://www.shop.test/ through a CNAME) exported
/// as one trace: a root span, a CLIENT span per request with the conventions' attributes,
/// and under each the phases that happened, with the stored page load's HAR durations.
#[test]
fn otlp_export_has_the_span_tree_of_a_known_page_load() {
    if !root_or_skip("otlp_export") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = rt.block_on(Lab::start(LabConfig { dns_delay: Duration::from_millis(5), think_time: Duration::from_millis(10), ..Default::default() })).expect("lab");
    let (port, received) = otlp_receiver(&rt);
    let ca = lab.ca_pem_path().display().to_string();
    let ns = lab.netns_name().to_string();
    let (mut sh, mut go) = shell(&format!("ip netns exec {ns} curl -sS -L -o /dev/null --cacert {ca} http://shop.test/"));
    let mut d = Daemon::start(&["--pid", &sh.id().to_string(), "--otlp-endpoint", &format!("http://127.0.0.1:{port}")]);
    writeln!(go, "go").unwrap();
    assert!(sh.wait(Duration::from_secs(60)).success());

    let summary = eventually("the page load stored", Duration::from_secs(60), || d.page_loads().into_iter().next());
    let stored = d.json(&format!("/api/page-loads/{}", summary["id"]));
    let page = &stored["page"];
    let tgid = page["client"]["tgid"].as_i64().unwrap();
    let mut spans: Vec<Span> = Vec::new();
    let mut resource = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !spans.iter().any(|s| s.parent_span_id.is_empty()) {
        let req = received.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("an OTLP export within 60 s");
        for rs in req.resource_spans {
            let r = attrs(&rs.resource.unwrap_or_default().attributes);
            if r.get("process.pid") == Some(&AnyValue::IntValue(tgid)) {
                resource = r;
                spans.extend(rs.scope_spans.into_iter().flat_map(|s| s.spans));
            }
        }
    }
    // The resource: the client process on this host.
    assert_eq!(resource["service.name"], s("curl"));
    assert_eq!(resource["process.executable.name"], s("curl"));
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(resource["host.name"], s(hostname.trim()));
    assert_eq!(resource["os.type"], s("linux"));

    let roots: Vec<&Span> = spans.iter().filter(|s| s.parent_span_id.is_empty()).collect();
    assert_eq!(roots.len(), 1, "one trace for one page load");
    let root = roots[0];
    assert!(spans.iter().all(|s| s.trace_id == root.trace_id));
    let ra = attrs(&root.attributes);
    assert_eq!(root.name, "page_load");
    assert_eq!(ra["url.full"], s("http://shop.test/"));
    assert_eq!(ra["http.response.status_code"], AnyValue::IntValue(page["status"].as_i64().unwrap()));
    let start_ms = root.start_time_unix_nano as f64 / 1e6;
    assert!((start_ms - stored["started_at_ms"].as_f64().unwrap()).abs() < 1.0, "root starts at the stored wall-clock time");
    let total_ms = (root.end_time_unix_nano - root.start_time_unix_nano) as f64 / 1e6;
    assert!((total_ms - summary["total_ms"].as_f64().unwrap()).abs() < 0.01, "root lasts the page load");

    let requests: Vec<&Span> = spans.iter().filter(|s| s.parent_span_id == root.span_id).collect();
    let stored_requests = page["requests"].as_array().unwrap();
    assert_eq!(requests.len(), stored_requests.len());
    assert_eq!(requests.len(), 2, "the redirect and the document");
    for (span, r) in requests.iter().zip(stored_requests) {
        let a = attrs(&span.attributes);
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(span.name, "GET");
        assert_eq!(a["http.request.method"], s("GET"));
        assert_eq!(a["url.full"], s(r["url"].as_str().unwrap()));
        assert_eq!(a["http.response.status_code"], AnyValue::IntValue(r["status"].as_i64().unwrap()));
        assert_eq!(a["server.address"], s(r["host"].as_str().unwrap()));
        // HTTP/1.1 for the plain redirect, HTTP/2 by ALPN for the document.
        let protocol = r["protocol"].as_str().unwrap();
        assert_eq!(a["network.protocol.version"], s(protocol.trim_start_matches("HTTP/")));
        let conn = &page["connections"][r["connection"].as_u64().unwrap() as usize];
        let dst: std::net::SocketAddr = conn["dst"].as_str().unwrap().parse().unwrap();
        assert_eq!(a["network.peer.address"], s(&dst.ip().to_string()));
        assert_eq!(a["server.port"], AnyValue::IntValue(dst.port().into()));
        let children: HashMap<String, &Span> =
            spans.iter().filter(|c| c.parent_span_id == span.span_id).map(|c| (c.name.clone(), c)).collect();
        let t = &r["timings"];
        for (name, key) in [("dns", "dns"), ("connect", "tcp"), ("tls", "ssl"), ("send", "send"), ("wait", "wait"), ("receive", "receive")] {
            let ms = t[key].as_f64().unwrap();
            match children.get(name) {
                None => assert!(ms < 0.0, "{}: no {name} span, but {ms} ms stored", a["url.full"].clone().string()),
                Some(c) => {
                    let dur = (c.end_time_unix_nano - c.start_time_unix_nano) as f64 / 1e6;
                    assert!((dur - ms).abs() < 0.001, "{name}: {dur} ms exported, {ms} ms stored");
                    assert!(c.start_time_unix_nano >= span.start_time_unix_nano && c.end_time_unix_nano <= span.end_time_unix_nano);
                }
            }
        }
        for name in ["dns", "connect", "wait", "receive"] {
            assert!(children.contains_key(name), "{name} span under {:?}", a["url.full"]);
        }
        let dns = attrs(&children["dns"].attributes);
        let lookup = &page["dns"][r["dns"].as_u64().unwrap() as usize];
        assert_eq!(dns["dns.question.name"], s(lookup["name"].as_str().unwrap()));
        assert_eq!(dns["dns.question.name"], s(r["host"].as_str().unwrap()));
        let https = r["url"].as_str().unwrap().starts_with("https://");
        assert_eq!(children.contains_key("tls"), https, "a tls span exactly on the https request");
        if https {
            let tls = attrs(&children["tls"].attributes);
            let session = &conn["tls"];
            assert_eq!(tls["tls.client.server_name"], s(session["sni"].as_str().unwrap()));
            assert_eq!(tls["tracer.tls.library"], s(session["library"].as_str().unwrap()));
            match session["version"].as_str() {
                Some(v) => assert_eq!(tls["tls.protocol.version"], s(v.trim_start_matches("TLSv"))),
                None => assert!(!tls.contains_key("tls.protocol.version"), "no version stored, none exported"),
            }
        }
    }
    assert_eq!(d.metric("tracer_otlp_page_loads_exported_total"), 1.0);
    assert_eq!(d.metric("tracer_otlp_page_loads_dropped_total{reason=\"queue_full\"}"), 0.0);
    assert!(d.stop().0.success());
}

trait StringValue {
    fn string(self) -> String;
}

impl StringValue for AnyValue {
    fn string(self) -> String {
        match self {
            AnyValue::StringValue(s) => s,
            other => format!("{other:?}"),
        }
    }
}

/// The collector is down (nothing listens on its port): page loads are still traced and
/// stored, every one given to the exporter is counted as dropped, and the exporter's own
/// failed connections to the collector are not reported as page loads.
#[test]
fn otlp_collector_down_costs_counted_drops_not_tracing() {
    if !root_or_skip("otlp_down") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = rt.block_on(Lab::start(LabConfig::default())).expect("lab");
    let port = free_port().unwrap(); // nothing listens there
    // The daemon traces this test process's tree: the curls it starts and the daemon itself
    // (its child, so that the exporter's own connects are seen), and not the rest of the
    // machine (other tests, benchmarks), whose events could overflow the ring buffer.
    let me = std::process::id().to_string();
    let mut d = Daemon::start(&["--pid", &me, "--otlp-endpoint", &format!("http://127.0.0.1:{port}"), "--otlp-queue", "1"]);
    let ca = lab.ca_pem_path().display().to_string();
    let n = 6;
    let mut pids = Vec::new();
    for i in 0..n {
        let mut curl = lab.exec_command("curl");
        curl.args(["-sS", "-o", "/dev/null", "--cacert", &ca, "https://www.shop.test/"]);
        let mut child = Reaped::spawn(curl.stdin(Stdio::null()), "curl");
        pids.push(child.id() as u64);
        assert!(child.wait(Duration::from_secs(30)).success());
        if i == 0 {
            // The exporter is now retrying its first batch (for ~7 s, with back-off): the
            // next page loads meet a queue of one.
            eventually("a failed export", Duration::from_secs(30), || {
                (d.metric("tracer_otlp_export_attempts_failed_total") >= 1.0).then_some(())
            });
        }
    }
    // Tracing goes on: each curl's page load is stored.
    eventually("the curls' page loads stored", Duration::from_secs(60), || {
        let stored = d.page_loads().iter().filter(|p| pids.contains(&p["tgid"].as_u64().unwrap_or(0))).count();
        (stored == n).then_some(())
    });
    // Every page load offered is dropped: at the full queue, or after the retries.
    let dropped = eventually("the drops counted", Duration::from_secs(90), || {
        let full = d.metric("tracer_otlp_page_loads_dropped_total{reason=\"queue_full\"}");
        let failed = d.metric("tracer_otlp_page_loads_dropped_total{reason=\"export_failed\"}");
        (full + failed >= n as f64 && failed >= 1.0).then_some((full, failed))
    });
    assert!(dropped.0 >= 1.0, "a queue of 1 overflows while the exporter retries: {dropped:?}");
    assert_eq!(d.metric("tracer_otlp_page_loads_exported_total"), 0.0);
    assert!(d.metric("tracer_otlp_export_attempts_failed_total") >= 2.0, "retried");
    // The exporter's refused connects were seen and left out.
    assert!(d.metric("tracer_otlp_own_page_loads_ignored_total") >= 1.0);
    let me = d.pid() as u64;
    let own: Vec<Value> = d.page_loads().into_iter().filter(|p| p["tgid"].as_u64() == Some(me)).collect();
    assert!(own.is_empty(), "the daemon's posts to the collector are not page loads: {own:#?}");
    let health = d.json("/api/health");
    assert_eq!(health["pipeline"]["otlp"]["exported_page_loads"], 0, "{health}");
    assert!(d.stop().0.success());
}
