//! What the integration tests share. Each test binary that needs it says `mod support;`.
//!
//! - here: the root check and free ports (from `tracer::lab::support`, which the lab's own
//!   unit tests and the benchmarks use too), the programs a test drives, child processes and
//!   the lines they print, bounded waits, temporary directories, `sqlite3`;
//! - [`daemon`]: `tracer run` with a private database and dashboard port;
//! - [`http`]: GETs through curl, and a local TLS server;
//! - [`browsers`]: Chromium and Firefox set up for the lab;
//! - [`fixtures`]: synthetic page loads for the history and the dashboard's API;
//! - [`traced`]: the real probes loaded in the test's process, their events awaited.
//!
//! A program a test drives that is not installed fails the test with one line naming it
//! ([`require`]), with or without CI: `cargo xtask test` installs them all. A root-only test
//! run without root skips ([`root_or_skip`]), and fails instead under `CI=true`.
// Every test binary uses only a part of this module.
#![allow(dead_code, unused_imports)]

/// The quiet window that closes a page load, when `TRACER_TEST_QUIET_MS` sets one (else the
/// daemon's 500 ms). The kernel matrix sets it in its emulated guests, where every client runs
/// some 30 times slower: there wget took 3.3 s between a redirect's response and its next
/// lookup (GnuTLS loading its CA store), and its page load was cut in two.
pub fn quiet_ms() -> Option<u64> {
    std::env::var("TRACER_TEST_QUIET_MS").ok().and_then(|v| v.parse().ok())
}

pub mod browsers;
pub mod daemon;
pub mod fixtures;
pub mod http;
pub mod traced;

use std::{
    io::{BufRead as _, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
    sync::mpsc::Receiver,
    time::{Duration, Instant},
};

pub use tracer::lab::support::{free_port, lab_or_skip, root_or_skip, run_bounded};

/// The `tracer` binary of this build.
pub const TRACER: &str = env!("CARGO_BIN_EXE_tracer");

/// The path of `program`, which this test drives. Missing, the test fails with one line
/// saying so: every program a test drives is in the package list of `cargo xtask setup`.
pub fn require(program: &str) -> PathBuf {
    tracer::bench::util::find_program(program).unwrap_or_else(|| {
        panic!("`{program}` is not installed; `cargo xtask setup --packages` (or `cargo xtask test`) installs it")
    })
}

/// Lines of a child's pipe, delivered through a channel so a test can wait with a bound.
pub fn lines(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for the first line matching `pred` (every line read is kept in `seen`), panicking
/// with what was seen when none comes within `timeout`.
pub fn wait_line(rx: &Receiver<String>, what: &str, timeout: Duration, seen: &mut Vec<String>, pred: impl Fn(&str) -> bool) -> String {
    let timeout = tracer::lab::support::test_bound(timeout);
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                seen.push(l.clone());
                if pred(&l) {
                    return l;
                }
            }
            Err(_) => panic!("no line {what} within {timeout:?}; got:\n{}", seen.join("\n")),
        }
    }
}

/// Everything that arrives within `d`.
pub fn drain(rx: &Receiver<String>, d: Duration, seen: &mut Vec<String>) {
    let deadline = Instant::now() + d;
    while let Ok(l) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        seen.push(l);
    }
}

/// Polls `check` every 250 ms until it gives a value, at most `limit`. For state that
/// another process reaches (a scrape, a batch written) with no event the test could await.
pub fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let limit = tracer::lab::support::test_bound(limit);
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The exit status of `child` within `limit`; past that the child is killed and the test
/// fails.
pub fn wait_exit(child: &mut Child, what: &str, limit: Duration) -> ExitStatus {
    let limit = tracer::lab::support::test_bound(limit);
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50)); // polling a child's exit; no event to await
    }
}

/// A child process killed and reaped when the test ends, also when it fails.
pub struct Reaped {
    pub child: Child,
    name: &'static str,
}

impl Reaped {
    pub fn new(child: Child, name: &'static str) -> Reaped {
        Reaped { child, name }
    }

    pub fn spawn(cmd: &mut Command, name: &'static str) -> Reaped {
        Reaped::new(cmd.spawn().unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}")), name)
    }

    /// The exit status within `limit` (see [`wait_exit`]).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        wait_exit(&mut self.child, self.name, limit)
    }
}

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            eprintln!("killing {} (pid {})", self.name, self.child.id());
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A temporary directory named after the test (`tracer-TAG-XXXXXX`), removed when dropped.
pub fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("tracer-{tag}-")).tempdir().unwrap()
}

/// `sqlite3 ARGS DB QUERY`'s output, trimmed (bounded; a failed query fails the test).
pub fn sqlite3(db: &Path, args: &[&str], query: &str) -> String {
    let mut c = Command::new(require("sqlite3"));
    c.args(args).arg(db).arg(query);
    let out = run_bounded(c, Duration::from_secs(30));
    assert!(out.status.success(), "sqlite3 {query}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
