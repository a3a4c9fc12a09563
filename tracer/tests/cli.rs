//! The `tracer` binary as a user runs it: start-up report, live JSON events while curl
//! makes a request, clean exit on SIGTERM; and the error a user without privilege gets.
use std::{os::unix::fs::PermissionsExt as _, process::Command, time::Duration};

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
    // The token is not a terminal's to see here (stderr is a pipe): only where it is.
    let dashboard = format!(
        "dashboard: http://127.0.0.1:{port} (the token generated now in {}: open http://127.0.0.1:{port}/?token=TOKEN once, or send 'Authorization: Bearer TOKEN')",
        d.db.with_file_name("token").display(),
        port = d.port
    );
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

    // Each capability kept is listed with its reason (CAP_SYS_PTRACE's line is the last).
    d.wait_err("with the last capability's reason", Duration::from_secs(10), |l| l.starts_with("  CAP_SYS_PTRACE: "));
    for cap in ["CAP_BPF", "CAP_DAC_READ_SEARCH", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"] {
        assert!(d.report.iter().any(|l| l.starts_with(&format!("  {cap}: ")) && l.len() > cap.len() + 20), "{cap}'s reason:\n{}", d.report.join("\n"));
    }

    // Least privilege, as an outside observer sees it: the main thread (whose CapEff is the
    // process's in /proc/PID/status) keeps what later attaches need, every other thread none.
    let keep = tracer::privileges::mask(&tracer::privileges::keep_after_start(true));
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    assert_eq!(tracer::procfs::cap_eff(&status), Some(keep), "{status}");
    let threads = d.thread_privileges(keep).unwrap();
    assert!(threads.len() >= 2, "the runtime's threads were checked ({threads:?})");
    // What the daemon made is its own: the database, its WAL and shared memory, the token (in
    // a directory the test made, which the daemon leaves as it is).
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for f in ["t.db", "t.db-wal", "t.db-shm", "token"] {
        assert_eq!(mode(&d.db.with_file_name(f)), 0o600, "{f}");
    }
    assert!(!d.report.join("\n").contains(&d.token), "the token is never printed off a terminal");
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

/// `curl` as `nobody` (a local user without any right on the daemon): the status of `GET url`
/// with these extra arguments. `/api/live` never ends: a time-out after the head is its 200.
fn status_as_nobody(url: &str, extra: &[&str]) -> u16 {
    let mut c = Command::new(require("setpriv"));
    c.args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--"])
        .arg(require("curl"))
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3"])
        .args(extra)
        .arg(url);
    let out = support::run_bounded(c, Duration::from_secs(20));
    let code = out.status.code();
    assert!(code == Some(0) || code == Some(28), "curl as nobody: {:?} {}", code, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Another local user reaches nothing without the token, on loopback too: the dashboard, the
/// API, /metrics and the live feed answer 401, and 200 with the token; the token file is not
/// theirs to read.
#[test]
fn every_route_needs_the_token_for_another_local_user() {
    if !root_or_skip("every_route_needs_the_token") {
        return;
    }
    let d = Daemon::start(&[]);
    let bearer = format!("Authorization: Bearer {}", d.token);
    for path in ["/", "/assets/app.js", "/api/page-loads", "/api/health", "/api/processes", "/metrics", "/api/live"] {
        let url = format!("http://127.0.0.1:{}{path}", d.port);
        assert_eq!(status_as_nobody(&url, &[]), 401, "{path} without the token");
        assert_eq!(status_as_nobody(&url, &["-H", "Authorization: Bearer not-the-token-0123456789"]), 401, "{path} with a wrong one");
        assert_eq!(status_as_nobody(&url, &["-H", &bearer]), 200, "{path} with the token");
    }
    let mut cat = Command::new(require("setpriv"));
    cat.args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--", "cat"]).arg(d.db.with_file_name("token"));
    let out = support::run_bounded(cat, Duration::from_secs(10));
    assert!(!out.status.success() && out.stdout.is_empty(), "nobody cannot read the token file");
    // A token on the command line is refused (every user reads /proc/PID/cmdline).
    let out = support::run_bounded(
        {
            let mut c = Command::new(TRACER);
            c.args(["run", "--token", "a-token-on-the-command-line"]);
            c
        },
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token-file"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A database path another user could turn against the daemon is refused before anything is
/// attached or created, with a message naming the problem: a world-writable directory, one
/// another user owns, a symlinked directory, a symlinked database file or -wal.
#[test]
fn refuses_a_database_path_that_could_be_turned_against_it() {
    if !root_or_skip("refuses_a_database_path") {
        return;
    }
    let t = support::temp_dir("dbpath");
    let set_mode = |p: &std::path::Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let world = t.path().join("world");
    std::fs::create_dir(&world).unwrap();
    set_mode(&world, 0o777);
    let theirs = t.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
    let real = t.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, t.path().join("link")).unwrap();
    let files = t.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", files.join("t.db")).unwrap();
    let wal = t.path().join("wal");
    std::fs::create_dir(&wal).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", wal.join("t.db-wal")).unwrap();
    let cases = [
        (world.join("t.db"), format!("database directory {} is writable by its group and everyone (mode 0777)", world.display())),
        (theirs.join("t.db"), format!("database directory {} belongs to uid 65534", theirs.display())),
        (t.path().join("link/t.db"), format!("database directory {} is a symlink: refused", t.path().join("link").display())),
        (files.join("t.db"), format!("database {} is a symlink: refused", files.join("t.db").display())),
        (wal.join("t.db"), format!("database {} is a symlink: refused", wal.join("t.db-wal").display())),
    ];
    for (db, message) in &cases {
        let (c, _) = support::daemon::run_command(db);
        let out = support::run_bounded(c, Duration::from_secs(30));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", db.display());
        assert!(err.contains(message.as_str()), "{}: expected {message:?} in:\n{err}", db.display());
        assert!(!err.contains("probes:"), "refused before anything is attached:\n{err}");
        assert!(!db.with_file_name("token").exists(), "nothing created in {}", db.display());
    }
    assert_eq!(std::fs::read_to_string("/etc/passwd").unwrap().lines().next().map(|l| l.starts_with("root:")), Some(true));
}

/// `curl ARGS URL` as root: its status code, or 0 when no HTTP answer came.
fn status_of(url: &str, extra: &[&str]) -> u16 {
    let mut c = Command::new(require("curl"));
    c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"]).args(extra).arg(url);
    String::from_utf8_lossy(&support::run_bounded(c, Duration::from_secs(20)).stdout).trim().parse().unwrap_or(0)
}

/// Off loopback the dashboard is HTTPS: a self-signed certificate is made beside the
/// database, its SHA-256 fingerprint printed (the one a client sees) and stored; plain HTTP
/// gets no answer; the token is asked as on loopback. Plain HTTP off loopback needs
/// --plain-http-trusted-network, and the report warns about it.
#[test]
fn off_loopback_the_dashboard_is_https_with_a_printed_fingerprint() {
    if !root_or_skip("off_loopback_https") {
        return;
    }
    let mut d = Daemon::start_on("0.0.0.0", &[]);
    let https = format!("https://0.0.0.0:{}", d.port);
    assert!(d.report.iter().any(|l| l.starts_with(&format!("dashboard: {https} ("))), "{:#?}", d.report);
    let cert = d.db.with_file_name("tls.crt");
    let line = d.report.iter().find(|l| l.starts_with("TLS certificate: ")).unwrap_or_else(|| panic!("{:#?}", d.report)).clone();
    assert!(line.starts_with(&format!("TLS certificate: self-signed, generated now, {}; SHA-256 fingerprint ", cert.display())), "{line}");
    let printed = line.rsplit(' ').next().unwrap().to_string();
    // The fingerprint a client computes from what the server sends.
    let script = format!(
        "echo | {openssl} s_client -connect 127.0.0.1:{port} -servername localhost 2>/dev/null | {openssl} x509 -noout -fingerprint -sha256",
        openssl = require("openssl").display(),
        port = d.port
    );
    let mut sh = Command::new("sh");
    sh.args(["-c", &script]);
    let seen = String::from_utf8(support::run_bounded(sh, Duration::from_secs(20)).stdout).unwrap();
    assert_eq!(seen.trim().rsplit('=').next(), Some(printed.as_str()), "openssl saw {seen:?}");
    assert_eq!(std::fs::read_to_string(d.db.with_file_name("tls.sha256")).unwrap().trim(), printed);
    let mode = std::fs::metadata(d.db.with_file_name("tls.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key is the daemon's alone");
    let url = format!("https://localhost:{}/api/health", d.port);
    let bearer = format!("Authorization: Bearer {}", d.token);
    assert_eq!(status_of(&url, &["-k"]), 401);
    assert_eq!(status_of(&url, &["-k", "-H", &bearer]), 200);
    assert_eq!(status_of(&format!("http://127.0.0.1:{}/api/health", d.port), &["-H", &bearer]), 0, "no plain HTTP");
    // The login cookie is Secure over HTTPS.
    let mut c = Command::new(require("curl"));
    c.args(["-sk", "-o", "/dev/null", "-D", "-", &format!("https://localhost:{}/?token={}", d.port, d.token)]);
    let head = String::from_utf8(support::run_bounded(c, Duration::from_secs(20)).stdout).unwrap();
    assert!(head.to_ascii_lowercase().contains("set-cookie: tracer_token=") && head.contains("HttpOnly; SameSite=Strict; Secure"), "{head}");
    d.stop();

    let d = Daemon::start_on("0.0.0.0", &["--plain-http-trusted-network"]);
    assert!(d.report.iter().any(|l| l.starts_with("WARNING: plain HTTP off loopback")), "{:#?}", d.report);
    assert_eq!(status_of(&format!("http://127.0.0.1:{}/api/health", d.port), &["-H", &format!("Authorization: Bearer {}", d.token)]), 200);
    assert_eq!(status_of(&format!("http://127.0.0.1:{}/api/health", d.port), &[]), 401);
}

/// On a terminal (a pty from `script`) the start-up report gives the dashboard's URL with the
/// token, once; the token is the one in the file beside the database.
#[test]
fn on_a_terminal_the_url_carries_the_token() {
    if !root_or_skip("on_a_terminal_the_url_carries_the_token") {
        return;
    }
    let dir = support::temp_dir("tty");
    let db = dir.path().join("t.db");
    let port = support::free_port().unwrap();
    // `timeout` bounds the daemon; killing `script` hangs its terminal up, which ends it too.
    let inner = format!("timeout -s INT 90 {TRACER} run --no-tls --listen 127.0.0.1:{port} --db {}", db.display());
    let mut script = support::Reaped::spawn(
        Command::new(require("script")).args(["-q", "-e", "-c", &inner, "/dev/null"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()),
        "script (tracer run on a pty)",
    );
    let out = support::lines(script.stdout.take().unwrap());
    let mut seen = Vec::new();
    let line = wait_line(&out, "with the dashboard's URL", Duration::from_secs(90), &mut seen, |l| l.starts_with("dashboard: "));
    let token = support::daemon::token_of(&db);
    assert!(
        line.trim_end().starts_with(&format!("dashboard: http://127.0.0.1:{port}/?token={token} (open it once; the token generated now in ")),
        "{line}"
    );
    wait_line(&out, "saying it traces", Duration::from_secs(30), &mut seen, |l| l.starts_with("tracing;"));
    let shown = seen.iter().filter(|l| l.contains(&token)).count();
    assert_eq!(shown, 1, "the token is shown once:\n{}", seen.join("\n"));
}
