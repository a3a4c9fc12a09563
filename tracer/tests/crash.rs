//! Crash safety (issue 8), with the real binary (root): the daemon stores page loads while a
//! shell it traces runs curl against the lab as fast as it can; it is killed with SIGKILL in
//! the middle of that. Then it is started again on the same database. The database opens,
//! `PRAGMA integrity_check` says `ok`, every page load committed before the kill is still
//! there, none is there twice (key: client process and start time), and every stored page load
//! still has all its requests (a batch is one transaction: all of it or none).
use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt as _,
    path::Path,
    process::Stdio,
    sync::mpsc,
    time::{Duration, Instant},
};

use tracer::lab::LabConfig;

mod support;
use support::{daemon::run_command, lab_or_skip, require, run_bounded, sqlite3};

fn count(db: &Path) -> u64 {
    sqlite3(db, &[], "SELECT COUNT(*) FROM page_loads").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_ingest_loses_nothing_committed() {
    let Some(lab) = lab_or_skip("kill_9_during_ingest", LabConfig::default()).await else {
        return;
    };
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tracer.db");
    let script = format!(
        "exec >/dev/null 2>&1 </dev/null
i=0
while [ $i -lt 2000 ]; do ip netns exec {ns} curl -s -o /dev/null --max-time 5 --cacert {ca} https://www.shop.test/echo; i=$((i+1)); done",
        ns = lab.netns_name(),
        ca = lab.ca_pem_path().display()
    );
    let mut daemon = run_command(&db)
        .0
        .args(["--json", "--quiet-ms", "20", "--", "sh", "-c", &script])
        .process_group(0) // the daemon and its command: one SIGKILL for all
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pgid = daemon.id() as i32;
    let (tx, rx) = mpsc::channel();
    let stdout = daemon.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("\"kind\":\"page_load\"") && tx.send(()).is_err() {
                break;
            }
        }
    });
    // Ingest under way: 60 page loads handed to the writer, then read what is committed.
    let deadline = Instant::now() + Duration::from_secs(120);
    for n in 0..60 {
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("only {n} page loads within 120 s"));
    }
    let committed = count(&db);
    // More keep coming while the writer writes; kill in the middle of that.
    for _ in 0..10 {
        let _ = rx.recv_timeout(Duration::from_secs(10));
    }
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let status = daemon.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    assert!(committed > 0, "page loads were committed before the kill");
    eprintln!("kill_9: {committed} page loads committed before the kill");

    // Restart on the same database: it opens (migrations, WAL recovery) and runs.
    let (mut again, _) = run_command(&db);
    again.args(["--", "true"]);
    let out = run_bounded(again, Duration::from_secs(120));
    assert!(out.status.success(), "restart failed: {}", String::from_utf8_lossy(&out.stderr));

    assert_eq!(sqlite3(&db, &[], "PRAGMA integrity_check"), "ok");
    assert_eq!(sqlite3(&db, &[], "PRAGMA foreign_key_check"), "", "no orphan rows");
    let after = count(&db);
    assert!(after >= committed, "{after} page loads after the restart, {committed} committed before the kill");
    let duplicates = sqlite3(
        &db,
        &[],
        "SELECT COUNT(*) FROM (SELECT process_id, started_ns FROM page_loads GROUP BY process_id, started_ns HAVING COUNT(*) > 1)",
    );
    assert_eq!(duplicates, "0", "page loads stored twice");
    let partial = sqlite3(
        &db,
        &[],
        "SELECT COUNT(*) FROM page_loads p WHERE request_count != (SELECT COUNT(*) FROM requests r WHERE r.page_load_id = p.id)",
    );
    assert_eq!(partial, "0", "page loads missing some of their requests");
    // The crashed run is recorded without a stop time, the restart with one.
    assert_eq!(sqlite3(&db, &[], "SELECT COUNT(*) FROM daemon_runs WHERE stopped_at_ms IS NULL"), "1");
    assert_eq!(sqlite3(&db, &[], "SELECT COUNT(*) FROM daemon_runs WHERE stopped_at_ms IS NOT NULL"), "1");
    eprintln!("kill_9: {after} page loads after the restart");
}
