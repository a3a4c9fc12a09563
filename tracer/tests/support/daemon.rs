//! `tracer run` as the tests start it: a private database and dashboard port, its output
//! lines through channels, and SIGTERM to stop it (also when a test fails).
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::Receiver,
    time::Duration,
};

use serde_json::Value;

use super::{TRACER, drain, free_port, lines, wait_exit, wait_line};

/// The dashboard's token of a daemon started on `db` without `--token-file` or
/// `TRACER_TOKEN`: the file `token` beside the database, which the daemon writes at its first
/// start, before it attaches anything.
pub fn token_of(db: &Path) -> String {
    let path = db.with_file_name("token");
    let t = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("the daemon's token file {}: {e}", path.display()));
    t.trim().to_string()
}

/// A token file for `--token-file` or `--metrics-token-file`: `token` in `dir`, with `mode`
/// (0600 for the dashboard's token; 0640 for a metrics token shared with Prometheus's group).
pub fn write_token_file(dir: &Path, name: &str, token: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&path).unwrap();
    std::io::Write::write_all(&mut f, format!("{token}\n").as_bytes()).unwrap();
    path
}

/// `GET url` on a daemon's dashboard with its token (`Authorization: Bearer`), through curl.
pub fn get_with_token(url: &str, token: &str) -> String {
    super::http::get_bearer(url, &[], token)
}

/// `tracer run --listen 127.0.0.1:PORT --db DB` on a free port (arguments such as `--json`
/// and `-- COMMAND` follow); the port is returned with it.
pub fn run_command(db: &Path) -> (Command, u16) {
    run_command_on(db, "127.0.0.1")
}

/// [`run_command`] listening on `ip` (e.g. `0.0.0.0`: off loopback) with a port free on
/// loopback.
pub fn run_command_on(db: &Path, ip: &str) -> (Command, u16) {
    let port = free_port().expect("a free loopback port");
    let mut cmd = Command::new(TRACER);
    cmd.args(["run", "--listen", &format!("{ip}:{port}"), "--db"]).arg(db);
    if let Some(ms) = super::quiet_ms() {
        cmd.args(["--quiet-ms", &ms.to_string()]);
    }
    (cmd, port)
}

/// A running `tracer run` with a database in a temporary directory of its own.
pub struct Daemon {
    pub child: Child,
    /// stdout, line by line (`--json` events).
    pub out: Receiver<String>,
    /// stderr after the start-up report; read it, or the daemon may block on a full pipe.
    pub err: Receiver<String>,
    /// stderr up to "tracing;": the start-up report (and what [`Daemon::wait_err`] read).
    pub report: Vec<String>,
    /// The dashboard's port on 127.0.0.1.
    pub port: u16,
    pub db: PathBuf,
    /// The dashboard's token (read from the file the daemon made beside its database).
    pub token: String,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// `tracer run --listen 127.0.0.1:PORT --db DIR/t.db ARGS...`, once it says "tracing;"
    /// (90 s at most).
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::start_on("127.0.0.1", args)
    }

    /// [`Daemon::start`] with `--listen IP:PORT`; its dashboard is still reached on
    /// 127.0.0.1:PORT (for `0.0.0.0`).
    pub fn start_on(ip: &str, args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let (mut cmd, port) = run_command_on(&db, ip);
        let mut child = cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let out = lines(child.stdout.take().unwrap());
        let err = lines(child.stderr.take().unwrap());
        let mut d = Daemon { child, out, err, report: Vec::new(), port, db, token: String::new(), _dir: dir };
        d.wait_err("saying it traces", Duration::from_secs(90), |l| l.starts_with("tracing;"));
        d.token = token_of(&d.db);
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every thread of the daemon as `/proc/PID/task/*/status` shows it: the main thread
    /// holds exactly `main` (effective, permitted and bounding sets), every other thread
    /// nothing at all in any set. Returns the other threads' names (`comm`), or the first
    /// thread that does not hold what it should, as an error.
    pub fn thread_privileges(&self, main: u64) -> Result<Vec<String>, String> {
        let set = |st: &str, name: &str| {
            st.lines().find_map(|l| l.strip_prefix(name)).map(|v| u64::from_str_radix(v.trim(), 16).unwrap()).unwrap()
        };
        let mut others = Vec::new();
        for e in std::fs::read_dir(format!("/proc/{}/task", self.pid())).unwrap().flatten() {
            let tid: u32 = e.file_name().to_str().unwrap().parse().unwrap();
            // A thread that ended since the listing.
            let Ok(st) = std::fs::read_to_string(e.path().join("status")) else { continue };
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default().trim().to_string();
            let sets = ["CapEff:", "CapPrm:", "CapBnd:", "CapInh:", "CapAmb:"].map(|n| set(&st, n));
            let expected = if tid == self.pid() { [main, main, main, 0, 0] } else { [0; 5] };
            if sets != expected {
                return Err(format!("thread {tid} ({comm}) holds eff/prm/bnd/inh/amb {sets:x?}, expected {expected:x?}"));
            }
            if tid != self.pid() {
                others.push(comm);
            }
        }
        Ok(others)
    }

    /// The next stderr line matching `pred` within `timeout` (kept in `report`, with those
    /// before it).
    pub fn wait_err(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        wait_line(&self.err, what, timeout, &mut self.report, pred)
    }

    /// `GET path` on the dashboard with its token (through curl: not a process a test's
    /// filter traces).
    pub fn get(&self, path: &str) -> String {
        get_with_token(&format!("http://127.0.0.1:{}{path}", self.port), &self.token)
    }

    /// The status of `GET path` with these extra curl arguments (e.g. a header), and no token
    /// unless they give one.
    pub fn status_of(&self, path: &str, curl_args: &[&str]) -> u16 {
        super::http::status(&format!("http://127.0.0.1:{}{path}", self.port), curl_args)
    }

    pub fn json(&self, path: &str) -> Value {
        serde_json::from_str(&self.get(path)).unwrap()
    }

    /// A sample of the daemon's own /metrics (name with its labels as exposed), 0 when absent.
    pub fn metric(&self, key: &str) -> f64 {
        let text = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')).map(|v| v.parse().unwrap()))
            .unwrap_or(0.0)
    }

    /// The stored page loads, newest first (`/api/page-loads?limit=500`).
    pub fn page_loads(&self) -> Vec<Value> {
        self.json("/api/page-loads?limit=500")["items"].as_array().unwrap().clone()
    }

    /// SIGTERM, then the exit status (bounded: detaching takes seconds) and the rest of
    /// stdout and stderr. The database stays until the `Daemon` is dropped.
    pub fn stop(&mut self) -> (ExitStatus, Vec<String>, Vec<String>) {
        self.stop_within(Duration::from_secs(120))
    }

    /// [`Daemon::stop`], failing the test unless the daemon exits within `limit`.
    pub fn stop_within(&mut self, limit: Duration) -> (ExitStatus, Vec<String>, Vec<String>) {
        // SAFETY: kill(2) on our own child, not reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = wait_exit(&mut self.child, "tracer run after SIGTERM", limit);
        let mut out = Vec::new();
        drain(&self.out, Duration::from_millis(200), &mut out);
        let mut err = Vec::new();
        drain(&self.err, Duration::from_millis(200), &mut err);
        (status, out, err)
    }
}

impl Drop for Daemon {
    /// A failed test must not leave its daemon running: SIGTERM, then SIGKILL after 120 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: as in stop_within.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + tracer::lab::support::test_bound(Duration::from_secs(120));
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!("tracer run ignored SIGTERM: killing it");
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
