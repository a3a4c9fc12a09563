//! What the lab's own tests, the integration tests (through `tracer/tests/support`) and the
//! benchmarks share: the skip rule of root-only tests, a lab or a skip, bounded commands, and
//! free loopback ports. Test helpers that nothing in `src` uses live in `tracer/tests/support`.
use std::io::{Read, Write as _};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{Lab, LabConfig};

/// True when this process may load eBPF programs and build namespaces. Otherwise says why
/// and returns false, except under CI (`CI=true`), where a skipped kernel test is a failure.
pub fn root_or_skip(test: &str) -> bool {
    let Err(e) = super::check_privileges() else { return true };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: CI=true forbids skipping this kernel test, and it cannot run: {e}");
    }
    // Straight to the process's stderr: libtest's capture would hide an eprintln!.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {e} (run `cargo xtask test`)");
    false
}

/// Starts a lab, or returns None (after saying why, see [`root_or_skip`]) when this process
/// lacks root.
pub async fn lab_or_skip(test: &str, config: LabConfig) -> Option<Lab> {
    if !root_or_skip(test) {
        return None;
    }
    Some(Lab::start(config).await.expect("starting the lab"))
}

/// A test's time bound, stretched by `TRACER_TEST_TIME_SCALE` (a whole number; 1 when unset).
/// The bounds say "it did not hang", not how fast: the kernel matrix sets 4 in its emulated
/// guests, where a client runs some 30 times slower than here and a loopback curl beside a
/// loading daemon passed its 30 s bound on one run and not on the next (5.10, TCG).
pub fn test_bound(limit: Duration) -> Duration {
    let scale = std::env::var("TRACER_TEST_TIME_SCALE").ok().and_then(|v| v.parse::<u32>().ok()).unwrap_or(1).max(1);
    limit * scale
}

/// Run a command to completion with its output captured, killing it after `limit` (see
/// [`test_bound`]).
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let limit = test_bound(limit);
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {desc}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out_t = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err_t = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for the child") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {limit:?}");
        }
        // Polling a child's exit: there is no event to await for it.
        std::thread::sleep(Duration::from_millis(5));
    };
    Output { status, stdout: out_t.join().unwrap_or_default(), stderr: err_t.join().unwrap_or_default() }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now (free when asked; the caller
/// binds it, or hands it to a server, right after).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
