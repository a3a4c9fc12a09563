//! Secrets never leave the daemon (issue 8), end to end with the real binary (root):
//! `tracer run --json -- sh -c SCRIPT` traces a shell that, inside a lab namespace, sends
//! `Authorization: Bearer S3CR3T`, `Cookie: sid=S3CR3T`, `X-Api-Key: S3CR3T` and
//! `?token=S3CR3T` with curl (and user-info in a URL, in an absolute-form target and in a Host
//! header, and a `;jsessionid=S3CR3T` path parameter), with the reference fetcher
//! (`tracer fetch -H`), and with Firefox (the lab's `/account` page sets the cookie with
//! `Set-Cookie` and its script sends it with the bearer token). While the daemon still runs,
//! the API is read with the dashboard's token (list, detail, HAR, health, /metrics), the live
//! feed (`/api/live`) is read for the whole run, and its OTLP export is captured; then the shell ends, and the daemon with it. `S3CR3T` must appear nowhere: not in the database files (`grep -a`), not in
//! the daemon's log at debug level, not in its `--json` output, not in any API answer nor
//! HAR, not in `tracer show --json` or `tracer export --har`. Each client's request is found
//! with its credential headers present and `[redacted]`, so that the test fails when the
//! traffic was not traced at all.
use std::{
    io::Read as _,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tracer::lab::{LAB_SECRET, LabConfig};

mod support;
use support::{TRACER, browsers, daemon::run_command, lab_or_skip, lines, require, run_bounded, wait_line};

/// `GET path` on the daemon's dashboard, with its token.
fn api(port: u16, token: &str, path: &str) -> String {
    support::daemon::get_with_token(&format!("http://127.0.0.1:{port}{path}"), token)
}

fn assert_clean(what: &str, text: &[u8]) {
    let hay = String::from_utf8_lossy(text);
    if let Some(at) = hay.find(LAB_SECRET) {
        let from = hay[..at].char_indices().rev().nth(200).map_or(0, |(i, _)| i);
        let to = hay[at..].char_indices().nth(200).map_or(hay.len(), |(i, _)| at + i);
        panic!("{LAB_SECRET} found in {what}: ...{}...", &hay[from..to]);
    }
}

/// A stand-in OTLP/HTTP collector: every byte posted to it (the protobuf carries its strings
/// as UTF-8) is kept; each request gets an empty 200. Keep-alive is handled by answering
/// every request head + Content-Length body on the same connection.
fn otlp_sink() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let seen = keep.clone();
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                loop {
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        seen.lock().unwrap().extend_from_slice(line.as_bytes());
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    seen.lock().unwrap().extend_from_slice(&body);
                    if w.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n").is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

fn file(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// The request of a stored page load whose path is `path`, with its redacted credentials.
fn request_with<'a>(detail: &'a Value, path: &str) -> Option<&'a Value> {
    detail["page"]["requests"].as_array()?.iter().find(|r| r["path"].as_str() == Some(path))
}

fn header<'a>(r: &'a Value, list: &str, name: &str) -> Option<&'a str> {
    r[list].as_array()?.iter().find(|h| h["name"] == name).and_then(|h| h["value"].as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_appear_nowhere() {
    let started = Instant::now();
    let Some(lab) = lab_or_skip("secrets_appear_nowhere", LabConfig::default()).await else {
        return;
    };
    for p in ["curl", "firefox-esr", "certutil", "sqlite3"] {
        require(p);
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("tracer.db");
    let ns = lab.netns_name().to_string();
    let ca = lab.ca_pem_path().display().to_string();
    let me = TRACER;

    // Firefox: a fresh profile trusting the lab CA, quiet prefs (as tests/browsers.rs).
    let profile = d.join("ff");
    browsers::nss_db_with_lab_ca(&profile, lab.ca_pem_path());
    std::fs::write(profile.join("user.js"), browsers::FIREFOX_PREFS).unwrap();
    let fifo = d.join("go-on");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let s = LAB_SECRET;
    let script = format!(
        "exec >/dev/null 2>&1 </dev/null
ip netns exec {ns} curl -sS -o /dev/null --cacert {ca} -H 'Authorization: Bearer {s}' -H 'Cookie: sid={s}' -H 'X-Api-Key: {s}' 'https://www.shop.test/echo?token={s}'
ip netns exec {ns} curl -sS -o /dev/null --cacert {ca} 'https://user:{s}@www.shop.test/echo?userinfo=1'
ip netns exec {ns} curl -sS -o /dev/null --cacert {ca} --request-target 'https://user:{s}@www.shop.test/echo?absolute=1' -H 'Host: user:{s}@www.shop.test' https://www.shop.test/
ip netns exec {ns} curl -sS -o /dev/null --cacert {ca} 'https://www.shop.test/echo;jsessionid={s}?jsession=1'
ip netns exec {ns} {me} fetch --db {db} --cacert {ca} -H 'Authorization: Bearer {s}' -H 'Cookie: sid={s}' 'https://www.shop.test/echo?fetcher={s}'
HOME={d} MOZ_HEADLESS=1 MOZ_DISABLE_AUTO_SAFE_MODE=1 MOZ_CRASHREPORTER_DISABLE=1 timeout 90 ip netns exec {ns} firefox-esr --headless --no-remote --profile {profile} --screenshot {d}/shot.png https://www.shop.test/account
echo clients-done >{d}/clients-done
read line <{fifo}
",
        d = d.display(),
        db = db.display(),
        profile = profile.display(),
        fifo = fifo.display(),
    );
    let (otlp_port, otlp_seen) = otlp_sink();
    let (mut daemon, port) = run_command(&db);
    let mut daemon = daemon
        .args(["--json", "--quiet-ms", "300", "--otlp-endpoint", &format!("http://127.0.0.1:{otlp_port}")])
        .args(["--", "sh", "-c", &script])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out_rx = lines(daemon.stdout.take().unwrap());
    let err_rx = lines(daemon.stderr.take().unwrap());
    let mut err = Vec::new();
    wait_line(&err_rx, "saying the command started", Duration::from_secs(120), &mut err, |l| l.starts_with("started pid"));
    let token = support::daemon::token_of(&db);
    // The live feed, read for the whole run (as a dashboard would), kept in a file.
    let live_file = d.join("live.txt");
    let mut live = support::Reaped::spawn(
        Command::new(require("curl"))
            .args(["-sN", "--max-time", "400", "-H", &format!("Authorization: Bearer {token}")])
            .arg(format!("http://127.0.0.1:{port}/api/live"))
            .stdout(std::fs::File::create(&live_file).unwrap())
            .stderr(Stdio::null()),
        "curl /api/live",
    );

    // The clients are done when the script says so; their page loads are stored soon after.
    let deadline = Instant::now() + Duration::from_secs(180);
    while !d.join("clients-done").exists() {
        assert!(Instant::now() < deadline, "the clients did not finish within 180 s");
        // Polling a file the script writes: the script's only way to tell us.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(d.join("shot.png").exists(), "firefox loaded the page and took its screenshot");
    let served: Vec<String> = lab.http_requests().into_iter().map(|r| r.path).collect();
    for p in ["/echo?token=S3CR3T", "/echo?fetcher=S3CR3T", "/account", "/account.js"] {
        assert!(served.iter().any(|s| s == p), "the lab served {p}: {served:?}");
    }

    // Read everything the API shows while the daemon runs. Page loads are written in batches:
    // wait (bounded) until the three clients' requests are all stored.
    let mut answers: Vec<(String, String)> = Vec::new();
    let mut found = (None, None, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = api(port, &token, "/api/page-loads?limit=500");
        let v: Value = serde_json::from_str(&list).unwrap();
        answers.push(("list".into(), list.clone()));
        for item in v["items"].as_array().unwrap() {
            let id = item["id"].as_i64().unwrap();
            let detail_text = api(port, &token, &format!("/api/page-loads/{id}"));
            let detail: Value = serde_json::from_str(&detail_text).unwrap();
            answers.push((format!("detail {id}"), detail_text));
            answers.push((format!("har {id}"), api(port, &token, &format!("/api/page-loads/{id}/har"))));
            answers.push((format!("compare {id}"), api(port, &token, &format!("/api/page-loads/{id}/compare"))));
            if let Some(r) = request_with(&detail, "/echo?token=*").filter(|_| item["process"] == "curl") {
                found.0 = Some(r.clone());
            }
            if let Some(r) = request_with(&detail, "/echo?fetcher=*") {
                found.1 = Some(r.clone());
            }
            if let Some(r) = request_with(&detail, "/echo?token=*").filter(|_| item["process"] == "firefox-esr") {
                found.2 = Some(r.clone());
            }
        }
        if (found.0.is_some() && found.1.is_some() && found.2.is_some()) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await; // the writer's batches: no event to await over HTTP
    }
    answers.push(("health".into(), api(port, &token, "/api/health")));
    answers.push(("processes".into(), api(port, &token, "/api/processes")));
    answers.push(("metrics".into(), api(port, &token, "/metrics")));
    // The live feed so far: it carried page loads, and no secret.
    let _ = live.kill();
    let _ = live.child.wait();
    let live_text = std::fs::read_to_string(&live_file).unwrap();
    assert!(live_text.contains("event: page_load") && live_text.contains("event: progress"), "the live feed carried page loads:\n{live_text}");
    answers.push(("the live feed".into(), live_text));

    // Let the script end; the daemon ends with it.
    std::fs::write(&fifo, "go\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = daemon.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the daemon did not exit with its command");
        std::thread::sleep(Duration::from_millis(50)); // polling a child's exit
    };
    // Every line, up to the end of both pipes.
    let out: Vec<String> = out_rx.iter().collect();
    err.extend(err_rx.iter());
    assert_eq!(status.code(), Some(0), "daemon exit; log:\n{}", err.join("\n"));

    // Each client's request was traced, with its credentials present by name only.
    let names = ["curl", "fetcher", "firefox"];
    for (who, r) in names.iter().zip([&found.0, &found.1, &found.2]) {
        let r = r.as_ref().unwrap_or_else(|| panic!("{who}'s request with the token was not stored; log tail:\n{}", err.iter().rev().take(40).rev().cloned().collect::<Vec<_>>().join("\n")));
        assert_eq!(header(r, "request_headers", "authorization"), Some("[redacted]"), "{who}: {r}");
        assert_eq!(header(r, "request_headers", "cookie"), Some("[redacted]"), "{who}: {r}");
    }
    let r = found.0.as_ref().unwrap();
    assert_eq!(header(r, "request_headers", "x-api-key"), Some("[redacted]"), "curl: {r}");
    // User-info in a URL (curl turns it into Basic authorization), in an absolute-form target
    // and in a Host header, and a ;jsessionid= path parameter: each request stored, clean.
    let all = answers.iter().map(|(_, a)| a.as_str()).collect::<Vec<_>>().join("\n");
    for stored in ["https://www.shop.test/echo?userinfo=*", "echo?absolute=*", "/echo;jsessionid=*?jsession=*"] {
        assert!(all.contains(stored), "{stored} is stored");
    }
    assert!(!all.contains("user@"), "no user-info anywhere in the API's answers");
    // Set-Cookie of /account (Firefox) is kept by name only.
    let set_cookie = answers.iter().any(|(_, a)| a.contains("\"set-cookie\"") || a.contains("\"name\":\"set-cookie\""));
    assert!(set_cookie, "the /account response's set-cookie header is stored by name");

    // Nowhere.
    for (what, a) in &answers {
        assert_clean(&format!("API answer {what}"), a.as_bytes());
    }
    assert_clean("the daemon's --json output", out.join("\n").as_bytes());
    // The OTLP export (flushed at exit) carried the page loads, and no secret.
    let exported = otlp_seen.lock().unwrap().clone();
    assert!(
        String::from_utf8_lossy(&exported).contains("/echo?token=*"),
        "the OTLP export carried the curl request ({} bytes posted)",
        exported.len()
    );
    assert_clean("the OTLP export", &exported);
    assert!(out.iter().any(|l| l.contains("\"page_load\"")), "--json printed page loads");
    assert_clean("the daemon's log (RUST_LOG=debug)", err.join("\n").as_bytes());
    for f in ["tracer.db", "tracer.db-wal", "tracer.db-shm"] {
        assert_clean(f, &file(&d.join(f)));
    }
    // Not vacuous: the files just searched hold the page loads. Where they are (the main
    // file, or the WAL when the last connection did not checkpoint) is SQLite's business:
    // CI once saw a 4096-byte main file with everything in the WAL.
    let stored = file(&db).len() + file(&d.join("tracer.db-wal")).len();
    assert!(stored > 8192, "the database files hold data ({stored} bytes)");
    for args in [vec!["show", "--json"], vec!["export", "--har"]] {
        for item in serde_json::from_str::<Value>(&answers[0].1).unwrap()["items"].as_array().unwrap() {
            let id = item["id"].to_string();
            let mut c = Command::new(me);
            c.args(&args).arg(&id).arg("--db").arg(&db);
            let o = run_bounded(c, Duration::from_secs(30));
            assert!(o.status.success(), "tracer {args:?} {id}: {}", String::from_utf8_lossy(&o.stderr));
            assert_clean(&format!("tracer {args:?} {id}"), &o.stdout);
        }
    }
    // And with sqlite's own eyes, every text column of every table.
    let mut dump = String::new();
    Command::new(require("sqlite3")).arg(&db).arg(".dump").stdout(Stdio::piped()).spawn().unwrap().stdout.unwrap().read_to_string(&mut dump).unwrap();
    assert!(dump.contains("[redacted]"), "the dump holds redacted headers");
    assert_clean("sqlite3 .dump", dump.as_bytes());
    eprintln!("secrets_appear_nowhere: took {:.1} s", started.elapsed().as_secs_f64());
}
