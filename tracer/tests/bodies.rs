//! `--capture-bodies`: the daemon, run twice over the same clients in the lab (curl POSTing
//! a form over HTTP/1.1, curl fetching a 5000-byte body over HTTP/2, the reference fetcher
//! over HTTP/2). Without the flag no body byte reaches the database or the HAR export; with
//! `--capture-bodies=1000` the HAR export holds the form as `postData`, the responses as
//! `content.text` exactly as the clients received them, cut at 1000 bytes and marked so.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tracer::lab::ECHO_BODY;
use tracer::lab::{Lab, LabConfig};

mod support;
use support::{TRACER, daemon::run_command, lab_or_skip, require, run_bounded};

const FORM: &str = "note=B0DYMARK&n=1";
const LIMIT: usize = 1000;
const BIG: usize = 5000;

/// Runs the clients under `tracer run [--capture-bodies=LIMIT] -- sh -c ...`; returns the HAR
/// export of what it stored and the database file's bytes.
fn trace_clients(lab: &Lab, d: &Path, capture: bool) -> (Value, Vec<u8>) {
    let me = TRACER;
    let (ns, ca) = (lab.netns_name(), lab.ca_pem_path().display().to_string());
    let db = d.join(if capture { "with.db" } else { "without.db" });
    let script = format!(
        "set -e
ip netns exec {ns} curl -sS --http1.1 --cacert {ca} -o {d}/echo.out --data '{FORM}' https://www.shop.test/echo
ip netns exec {ns} curl -sS --http2 --cacert {ca} -o {d}/big.out https://static.shop.test/bytes/{BIG}
ip netns exec {ns} curl -sS --http2 --cacert {ca} -o {d}/page.out https://www.shop.test/
ip netns exec {ns} {me} fetch --cacert {ca} https://www.shop.test/ >/dev/null
",
        d = d.display()
    );
    let (mut cmd, _) = run_command(&db);
    cmd.args(["--quiet-ms", "300"]);
    if capture {
        cmd.arg(format!("--capture-bodies={LIMIT}"));
    }
    cmd.args(["--", "sh", "-c", &script]);
    let out = run_bounded(cmd, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tracer run failed: {stderr}");
    let banner = if capture { format!("bodies: STORED, the first {LIMIT} bytes") } else { "bodies: not stored".to_string() };
    assert!(stderr.contains(&banner), "the start banner says whether bodies are stored: {stderr}");

    let mut export = Command::new(me);
    export.args(["export", "--last", "50", "--db"]).arg(&db);
    let har = run_bounded(export, Duration::from_secs(30));
    assert!(har.status.success(), "export failed: {}", String::from_utf8_lossy(&har.stderr));
    let har: Value = serde_json::from_slice(&har.stdout).expect("HAR JSON");
    let mut bytes = std::fs::read(&db).unwrap();
    // The write-ahead log holds recent commits too.
    bytes.extend(std::fs::read(d.join(format!("{}-wal", db.file_name().unwrap().to_str().unwrap()))).unwrap_or_default());
    (har, bytes)
}

/// Entries of `process` for `url`.
fn entries<'a>(har: &'a Value, url: &str) -> Vec<&'a Value> {
    har["log"]["entries"].as_array().unwrap().iter().filter(|e| e["request"]["url"] == url).collect()
}

/// A HAR `content`/`postData`'s bytes (text, or base64 with `encoding`).
fn content_bytes(c: &Value) -> Option<Vec<u8>> {
    let text = c["text"].as_str()?;
    Some(if c["encoding"] == "base64" {
        base64::engine::general_purpose::STANDARD.decode(text).expect("base64 text")
    } else {
        text.as_bytes().to_vec()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_stored_only_when_asked_and_only_up_to_the_limit() {
    let Some(lab) = lab_or_skip("bodies", LabConfig::default()).await else {
        return;
    };
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();

    // Default: nothing of any body anywhere.
    let (har, db) = tokio::task::block_in_place(|| trace_clients(&lab, &d, false));
    let echo = entries(&har, "https://www.shop.test/echo");
    assert_eq!(echo.len(), 1, "curl's POST was traced: {har:#}");
    for e in har["log"]["entries"].as_array().unwrap() {
        assert!(e["request"].get("postData").is_none(), "no request body without the flag: {e:#}");
        assert!(e["response"]["content"].get("text").is_none(), "no response body without the flag: {e:#}");
    }
    for marker in ["B0DYMARK", ECHO_BODY.trim_end()] {
        assert!(!db.windows(marker.len()).any(|w| w == marker.as_bytes()), "{marker:?} is in the database");
    }

    // --capture-bodies=1000.
    let (har, _) = tokio::task::block_in_place(|| trace_clients(&lab, &d, true));
    let echo = entries(&har, "https://www.shop.test/echo");
    assert_eq!(echo.len(), 1, "{har:#}");
    let post = &echo[0]["request"]["postData"];
    assert_eq!(post["text"], FORM, "{post:#}");
    assert_eq!(post["mimeType"], "application/x-www-form-urlencoded");
    let got = std::fs::read(d.join("echo.out")).unwrap();
    assert_eq!(got, ECHO_BODY.as_bytes(), "the lab answered the POST");
    assert_eq!(content_bytes(&echo[0]["response"]["content"]).as_deref(), Some(&got[..]));
    assert!(echo[0]["response"]["content"].get("_truncated").is_none());

    // Over the limit: the first 1000 bytes, exactly as curl got them, and marked cut.
    let big = entries(&har, &format!("https://static.shop.test/bytes/{BIG}"));
    assert_eq!(big.len(), 1, "{har:#}");
    assert_eq!(big[0]["response"]["content"]["size"], BIG);
    let full = std::fs::read(d.join("big.out")).unwrap();
    assert_eq!(full.len(), BIG);
    assert_eq!(content_bytes(&big[0]["response"]["content"]).as_deref(), Some(&full[..LIMIT]));
    assert_eq!(big[0]["response"]["content"]["_truncated"], true);

    // The page over HTTP/2, by curl (OpenSSL) and by the fetcher (its probe points): the
    // HTML curl saved, cut at the limit.
    let page = std::fs::read(d.join("page.out")).unwrap();
    let want = &page[..page.len().min(LIMIT)];
    let pages = entries(&har, "https://www.shop.test/");
    assert_eq!(pages.len(), 2, "curl's and the fetcher's: {har:#}");
    for e in pages {
        assert_eq!(e["response"]["httpVersion"], "HTTP/2", "{e:#}");
        assert_eq!(content_bytes(&e["response"]["content"]).as_deref(), Some(want), "{e:#}");
        assert_eq!(e["response"]["content"].get("_truncated").is_some(), page.len() > LIMIT);
    }
}
