//! The `tracer` binary as a user runs it: start-up report, live JSON events while curl
//! makes a request, clean exit on SIGTERM; and the error a user without privilege gets.
use std::{process::Command, time::Duration};

mod support;
use support::{TRACER, daemon::Daemon, require, root_or_skip, sqlite3, wait_line};

#[test]
fn run_json_streams_events_and_exits_zero_on_sigterm() {
    if !root_or_skip("run_json") {
        return;
    }
    let mut d = Daemon::start(&["--json"]);
    let privileges = d.wait_err("with the privileges kept", Duration::from_secs(30), |l| l.starts_with("privileges:"));
    // The start-up report, in this order.
    let dashboard = format!("dashboard: http://127.0.0.1:{} (loopback only)", d.port);
    let database = format!("database: {}", d.db.display());
    let at = |what: &str, pred: &dyn Fn(&str) -> bool| {
        d.report.iter().position(|l| pred(l)).unwrap_or_else(|| panic!("no line {what} in the start-up report:\n{}", d.report.join("\n")))
    };
    let order = [
        at("announcing the probes", &|l| l.starts_with("probes:")),
        at("with the database path", &|l| l == database),
        at("with the dashboard", &|l| l == dashboard),
        at("saying it traces", &|l| l.starts_with("tracing;")),
        at("with the privileges kept", &|l| l.starts_with("privileges:")),
    ];
    assert!(order.is_sorted(), "start-up report out of order ({order:?}):\n{}", d.report.join("\n"));
    // Unfiltered, with TLS: uprobes for every process on libraries found later need CAP_SYS_ADMIN.
    assert!(privileges.contains("CAP_BPF,CAP_DAC_READ_SEARCH,CAP_PERFMON,CAP_SYS_ADMIN,CAP_SYS_PTRACE;"), "{privileges}");

    // Least privilege, as an outside observer sees it: the main thread (whose CapEff is the
    // process's in /proc/PID/status) keeps what later attaches need, every other thread none.
    let keep = tracer::privileges::mask(&tracer::privileges::keep_after_start(true));
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    assert_eq!(tracer::procfs::cap_eff(&status), Some(keep), "{status}");
    let mut threads = 0;
    for e in std::fs::read_dir(format!("/proc/{}/task", d.pid())).unwrap().flatten() {
        let tid: u32 = e.file_name().to_str().unwrap().parse().unwrap();
        let Ok(st) = std::fs::read_to_string(e.path().join("status")) else { continue };
        let eff = tracer::procfs::cap_eff(&st).unwrap();
        let bounding = st.lines().find_map(|l| l.strip_prefix("CapBnd:")).map(|v| u64::from_str_radix(v.trim(), 16).unwrap());
        if tid == d.pid() {
            assert_eq!(bounding, Some(keep), "main thread's bounding set");
        } else {
            assert_eq!(eff, 0, "thread {tid} holds capabilities: {st}");
            assert_eq!(bounding, Some(0), "thread {tid}'s bounding set");
            threads += 1;
        }
    }
    assert!(threads >= 2, "the runtime's threads were checked ({threads})");
    let report = d.report.join("\n");
    assert!(report.contains("tcp_connect") && report.contains("tcp_state") && report.contains("dns"), "{report}");
    assert!(report.contains("tls_openssl"), "OpenSSL probes reported: {report}");

    // The dashboard answers, and curl's request to it is traced.
    let v = d.json("/api/health");
    assert!(v["probes"].as_array().is_some_and(|p| !p.is_empty()), "{v}");
    let curl_pid = {
        let c = Command::new(require("curl")).args(["-sS", "-o", "/dev/null", &format!("http://127.0.0.1:{}/", d.port)]).spawn().unwrap();
        let pid = c.id();
        assert!(c.wait_with_output().unwrap().status.success());
        pid
    };
    let mut outs = Vec::new();
    let connect = wait_line(&d.out, "with curl's connect", Duration::from_secs(15), &mut outs, |l| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v["kind"] == "connect" && v["tgid"] == curl_pid)
    });
    let v: serde_json::Value = serde_json::from_str(&connect).unwrap();
    assert_eq!(v["dst"], format!("127.0.0.1:{}", d.port));
    assert_eq!(v["comm"], "curl");

    // SIGTERM: detach and exit 0.
    let (status, _, _) = d.stop_within(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "exit code after SIGTERM");
    // The run was recorded with its stop time.
    assert_eq!(sqlite3(&d.db, &[], "SELECT COUNT(*) FROM daemon_runs WHERE stopped_at_ms IS NOT NULL"), "1");
}

#[test]
fn without_privilege_the_error_names_what_is_missing() {
    if !root_or_skip("no_privilege") {
        return;
    }
    // Drop to nobody with no capabilities, the way an ordinary user would run it.
    let out = Command::new(require("setpriv"))
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(TRACER)
        .args(["run", "--db", "/tmp/never-created.db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CAP_BPF") && err.contains("CAP_PERFMON") && err.contains("root"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "one error line: {err}");
}

#[test]
fn unknown_flags_get_clap_usage_errors() {
    let out = Command::new(TRACER).args(["run", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
    let out = Command::new(TRACER).args(["run", "--ring-buffer-mb", "3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a power of two"));
    for (bad, says) in [("grpc://collector:4317", "http or https"), ("collector:4318", "http or https"), ("http://", "")] {
        let out = Command::new(TRACER).args(["run", "--otlp-endpoint", bad]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--otlp-endpoint") && err.contains(bad) && err.contains(says), "{bad}: {err}");
    }
    // A bad --otlp-header names the header, never its value (a credential); without an
    // endpoint it is an error too.
    let run = |args: &[&str], env: Option<&str>| {
        let mut c = Command::new(TRACER);
        c.arg("run").args(args).env_remove("TRACER_OTLP_HEADERS");
        if let Some(v) = env {
            c.env("TRACER_OTLP_HEADERS", v);
        }
        let out = c.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let ep = ["--otlp-endpoint", "http://127.0.0.1:4318"];
    for (args, env) in [
        (vec![ep[0], ep[1], "--otlp-header", "x-key=S3CR3T\u{1}"], None),
        (vec![ep[0], ep[1]], Some("a=1,x-key=S3CR3T\u{1}")),
    ] {
        let (code, err) = run(&args, env);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("--otlp-header") && err.contains("x-key"), "{err}");
        assert!(!err.contains("S3CR3T"), "the value is not echoed: {err}");
    }
    let (code, err) = run(&["--otlp-header", "x-key=1"], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--otlp-endpoint"), "{err}");
}
