//! The `tracer` binary as a user runs it: start-up report, live JSON events while curl
//! makes a request, clean exit on SIGTERM; and the error a user without privilege gets.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tracer::lab::support::{free_port, lines, root_or_skip, wait_line};

#[test]
fn run_json_streams_events_and_exits_zero_on_sigterm() {
    if !root_or_skip("run_json") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracer"))
        .args(["run", "--json", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(&db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(child.stdout.take().unwrap());
    let err = lines(child.stderr.take().unwrap());
    let mut errs = Vec::new();
    wait_line(&err, "announcing the probes", Duration::from_secs(60), &mut errs, |l| l.starts_with("probes:"));
    wait_line(&err, "with the database path", Duration::from_secs(30), &mut errs, |l| l == format!("database: {}", db.display()));
    wait_line(&err, "with the dashboard", Duration::from_secs(30), &mut errs, |l| {
        l == format!("dashboard: http://127.0.0.1:{port} (loopback only)")
    });
    wait_line(&err, "saying it traces", Duration::from_secs(30), &mut errs, |l| l.starts_with("tracing;"));
    let privileges = wait_line(&err, "with the privileges kept", Duration::from_secs(30), &mut errs, |l| l.starts_with("privileges:"));
    // Unfiltered, with TLS: uprobes for every process on libraries found later need CAP_SYS_ADMIN.
    assert!(privileges.contains("CAP_BPF,CAP_DAC_READ_SEARCH,CAP_PERFMON,CAP_SYS_ADMIN,CAP_SYS_PTRACE;"), "{privileges}");

    // Least privilege, as an outside observer sees it: the main thread (whose CapEff is the
    // process's in /proc/PID/status) keeps what later attaches need, every other thread none.
    let keep = tracer::privileges::mask(&tracer::privileges::keep_after_start(true));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    assert_eq!(tracer::procfs::cap_eff(&status), Some(keep), "{status}");
    let mut threads = 0;
    for e in std::fs::read_dir(format!("/proc/{}/task", child.id())).unwrap().flatten() {
        let tid: u32 = e.file_name().to_str().unwrap().parse().unwrap();
        let Ok(st) = std::fs::read_to_string(e.path().join("status")) else { continue };
        let eff = tracer::procfs::cap_eff(&st).unwrap();
        let bounding = st.lines().find_map(|l| l.strip_prefix("CapBnd:")).map(|v| u64::from_str_radix(v.trim(), 16).unwrap());
        if tid == child.id() {
            assert_eq!(bounding, Some(keep), "main thread's bounding set");
        } else {
            assert_eq!(eff, 0, "thread {tid} holds capabilities: {st}");
            assert_eq!(bounding, Some(0), "thread {tid}'s bounding set");
            threads += 1;
        }
    }
    assert!(threads >= 2, "the runtime's threads were checked ({threads})");
    let report = errs.join("\n");
    assert!(report.contains("tcp_connect") && report.contains("tcp_state") && report.contains("dns"), "{report}");
    assert!(report.contains("tls_openssl"), "OpenSSL probes reported: {report}");

    // The dashboard answers, and curl's request to it is traced.
    let health = Command::new("curl").args(["-sS", &format!("http://127.0.0.1:{port}/api/health")]).output().unwrap();
    assert!(health.status.success());
    let v: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    assert!(v["probes"].as_array().is_some_and(|p| !p.is_empty()), "{v}");
    let curl_pid = {
        let c = Command::new("curl").args(["-sS", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/")]).spawn().unwrap();
        let pid = c.id();
        assert!(c.wait_with_output().unwrap().status.success());
        pid
    };
    let mut outs = Vec::new();
    let connect = wait_line(&out, "with curl's connect", Duration::from_secs(15), &mut outs, |l| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v["kind"] == "connect" && v["tgid"] == curl_pid)
    });
    let v: serde_json::Value = serde_json::from_str(&connect).unwrap();
    assert_eq!(v["dst"], format!("127.0.0.1:{port}"));
    assert_eq!(v["comm"], "curl");

    // SIGTERM: detach and exit 0.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "tracer did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50)); // polling a child's exit; no event to await
    };
    assert_eq!(status.code(), Some(0), "exit code after SIGTERM");
    // The run was recorded with its stop time.
    let conn = Command::new("sqlite3").arg(&db).arg("SELECT COUNT(*) FROM daemon_runs WHERE stopped_at_ms IS NOT NULL").output();
    if let Ok(o) = conn {
        if o.status.success() {
            assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1");
        }
    }
}

#[test]
fn without_privilege_the_error_names_what_is_missing() {
    if !root_or_skip("no_privilege") {
        return;
    }
    // Drop to nobody with no capabilities, the way an ordinary user would run it.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(env!("CARGO_BIN_EXE_tracer"))
        .args(["run", "--db", "/tmp/never-created.db"])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CAP_BPF") && err.contains("CAP_PERFMON") && err.contains("root"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "one error line: {err}");
}

#[test]
fn unknown_flags_get_clap_usage_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_tracer")).args(["run", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
    let out = Command::new(env!("CARGO_BIN_EXE_tracer")).args(["run", "--ring-buffer-mb", "3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a power of two"));
    for (bad, says) in [("grpc://collector:4317", "http or https"), ("collector:4318", "http or https"), ("http://", "")] {
        let out = Command::new(env!("CARGO_BIN_EXE_tracer")).args(["run", "--otlp-endpoint", bad]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--otlp-endpoint") && err.contains(bad) && err.contains(says), "{bad}: {err}");
    }
    // A bad --otlp-header names the header, never its value (a credential); without an
    // endpoint it is an error too.
    let run = |args: &[&str], env: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tracer"));
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
