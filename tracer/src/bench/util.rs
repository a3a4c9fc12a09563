//! Small helpers of the benchmarks: a blocking HTTP/1.1 GET for loopback JSON,
//! `/proc` readers (CPU, RSS, load), statistics, and child processes that are stopped when
//! dropped.
use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::Child,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// `GET path` on a loopback server: (status, body). One connection per request.
pub fn http_get(addr: SocketAddr, path: &str, token: &str, timeout: Duration) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::with_capacity(8192);
    s.read_to_end(&mut buf).with_context(|| format!("reading the answer to GET {path}"))?;
    parse_response(&buf).with_context(|| format!("GET {path}"))
}

/// Status and body of an HTTP/1.1 response (plain or chunked body).
pub fn parse_response(buf: &[u8]) -> Result<(u16, Vec<u8>)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf).context("malformed HTTP response")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => bail!("truncated HTTP response head"),
    };
    let status = resp.code.unwrap_or(0);
    let chunked = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding") && String::from_utf8_lossy(h.value).contains("chunked")
    });
    let body = &buf[head..];
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else { bail!("truncated chunk size") };
        let size_text = std::str::from_utf8(&rest[..eol]).context("chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        if rest.len() < size {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

/// GET a JSON document (status must be 200).
pub fn get_json(addr: SocketAddr, path: &str, token: &str) -> Result<serde_json::Value> {
    let (status, body) = http_get(addr, path, token, Duration::from_secs(10))?;
    if status != 200 {
        bail!("GET {path}: status {status}: {}", String::from_utf8_lossy(&body));
    }
    serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))
}

/// `/proc/loadavg`'s three averages, e.g. "2.31 3.47 3.95".
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The 1-minute load average.
pub fn load1() -> f64 {
    loadavg().split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

/// Clock ticks per second (USER_HZ) of `/proc` CPU times.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 { v as f64 } else { 100.0 }
}

/// CPU time of all processes from `/proc/stat` (first line), in ticks: (busy, total).
/// Busy is everything but idle and iowait.
pub fn cpu_busy_ticks() -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_proc_stat(&stat).context("parsing /proc/stat")
}

pub fn parse_proc_stat(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 5 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest, guest_nice are inside user/nice)
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v[4];
    Some((total - idle, total))
}

/// utime + stime of a process (all its threads), in ticks.
pub fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_pid_stat_ticks(&stat)
}

pub fn parse_pid_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // after the comm: state(0) ppid(1) ... utime(11) stime(12)
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU ticks of one of this process's threads.
pub fn thread_cpu_ticks(tid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    parse_pid_stat_ticks(&stat)
}

/// User + system CPU seconds of this process's children that have been waited for.
pub fn children_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return 0.0;
    }
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(ru.ru_utime) + s(ru.ru_stime)
}

/// Resident set size of a process in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `run_time_ns` and `run_cnt` of one BPF program (`kernel.bpf_stats_enabled`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProgRuns {
    pub ns: u64,
    pub runs: u64,
}

/// The BPF programs whose fds process `pid` holds, by program id, with their run counters
/// (`/proc/PID/fdinfo`; the kernel counts them only while `kernel.bpf_stats_enabled` is 1).
/// A program held by two fds is counted once.
pub fn bpf_prog_runs(pid: u32) -> BTreeMap<u32, ProgRuns> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return out };
    for entry in dir.flatten() {
        let is_prog = std::fs::read_link(entry.path()).map(|l| l.to_string_lossy() == "anon_inode:bpf-prog").unwrap_or(false);
        if !is_prog {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy()));
        if let Some((id, runs)) = parse_prog_fdinfo(&info.unwrap_or_default()) {
            out.insert(id, runs);
        }
    }
    out
}

/// Program id and run counters from a BPF program's fdinfo; None without a `prog_id`.
pub fn parse_prog_fdinfo(info: &str) -> Option<(u32, ProgRuns)> {
    let field = |name: &str| info.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok());
    let id = u32::try_from(field("prog_id:")?).ok()?;
    Some((id, ProgRuns { ns: field("run_time_ns:").unwrap_or(0), runs: field("run_cnt:").unwrap_or(0) }))
}

/// Names of the loaded BPF programs among `ids` (the kernel keeps the first 15 bytes).
pub fn bpf_prog_names(ids: impl IntoIterator<Item = u32>) -> BTreeMap<u32, String> {
    let wanted: std::collections::BTreeSet<u32> = ids.into_iter().collect();
    aya::programs::loaded_programs()
        .flatten()
        .filter(|p| wanted.contains(&p.id()))
        .map(|p| (p.id(), p.name_as_str().unwrap_or("?").to_string()))
        .collect()
}

/// What each program of `after` ran since `before`, by program id (programs that did not
/// run are left out).
pub fn prog_runs_since(before: &BTreeMap<u32, ProgRuns>, after: &BTreeMap<u32, ProgRuns>) -> BTreeMap<u32, ProgRuns> {
    after
        .iter()
        .filter_map(|(id, a)| {
            let b = before.get(id).copied().unwrap_or_default();
            let d = ProgRuns { ns: a.ns.saturating_sub(b.ns), runs: a.runs.saturating_sub(b.runs) };
            (d.runs > 0).then_some((*id, d))
        })
        .collect()
}

/// Turns `kernel.bpf_stats_enabled` on, and back to what it was when dropped.
pub struct BpfStats {
    previous: Option<String>,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub fn enable() -> BpfStats {
        let previous = std::fs::read_to_string(BPF_STATS).ok();
        if std::fs::write(BPF_STATS, "1").is_err() {
            return BpfStats { previous: None };
        }
        BpfStats { previous }
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(p) = &self.previous {
            let _ = std::fs::write(BPF_STATS, p.trim());
        }
    }
}

/// Median (NaN for an empty slice).
pub fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// Nearest-rank percentile `p` (0-100) of `values` (NaN for an empty slice).
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    if (p - 50.0).abs() < f64::EPSILON && v.len() % 2 == 0 {
        let n = v.len();
        return (v[n / 2 - 1] + v[n / 2]) / 2.0;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// A child process that gets SIGTERM (then SIGKILL after `grace`) when dropped.
pub struct Guard {
    pub child: Option<Child>,
    pub name: String,
    pub grace: Duration,
}

impl Guard {
    pub fn new(child: Child, name: impl Into<String>) -> Self {
        Guard { child: Some(child), name: name.into(), grace: Duration::from_secs(10) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends `signal` and waits up to `grace` for the exit; SIGKILL after that.
    pub fn stop_with(&mut self, signal: i32) -> Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else { bail!("{} already stopped", self.name) };
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + self.grace;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait()?;
                bail!("{} did not stop within {:?} of signal {signal}; killed ({status})", self.name, self.grace);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fails when the process has already exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait()?
        {
            bail!("{} exited early ({status})", self.name);
        }
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop_with(libc::SIGTERM);
        }
    }
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An executable named `name` in PATH or in the sbin directories (nginx lives in /usr/sbin,
/// which a non-root PATH may lack).
pub fn find_program(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(std::path::PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false))
}

/// Reads a file's text, naming it in the error.
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Formats a number with thousands separators (`1234567.8` -> `1,234,568`).
pub fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

/// `x` with `digits` decimals, or `n/a`.
pub fn fmt(v: f64, digits: usize) -> String {
    if v.is_finite() { format!("{v:.digits$}") } else { "n/a".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[f64::NAN, 7.0], 95.0), 7.0);
    }

    #[test]
    fn proc_parsers() {
        let stat = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_proc_stat(stat), Some((161, 1181)));
        assert_eq!(parse_proc_stat("intr 1 2"), None);
        let pid = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 10 1000 100";
        assert_eq!(parse_pid_stat_ticks(pid), Some(325));
        assert_eq!(parse_pid_stat_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn http_responses() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"ok"[..]));
        let (s, b) =
            parse_response(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .unwrap();
        assert_eq!((s, b.as_slice()), (404, &b"abcde"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }

    #[test]
    fn prog_fdinfo() {
        let info = "pos:\t0\nflags:\t02000002\nprog_type:\t1\nprog_id:\t77\nrun_time_ns:\t123456\nrun_cnt:\t789\n";
        assert_eq!(parse_prog_fdinfo(info), Some((77, ProgRuns { ns: 123456, runs: 789 })));
        assert_eq!(parse_prog_fdinfo("pos:\t0\nprog_id:\t5\n"), Some((5, ProgRuns::default())));
        assert_eq!(parse_prog_fdinfo("pos:\t0\n"), None);
        let before = BTreeMap::from([(1, ProgRuns { ns: 100, runs: 2 }), (2, ProgRuns { ns: 50, runs: 1 })]);
        let after = BTreeMap::from([
            (1, ProgRuns { ns: 400, runs: 5 }),
            (2, ProgRuns { ns: 50, runs: 1 }),
            (3, ProgRuns { ns: 30, runs: 1 }),
        ]);
        // Program 2 did not run; program 3 is new.
        assert_eq!(
            prog_runs_since(&before, &after),
            BTreeMap::from([(1, ProgRuns { ns: 300, runs: 3 }), (3, ProgRuns { ns: 30, runs: 1 })])
        );
    }

    #[test]
    fn number_formatting() {
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1000.0), "-1,000");
        assert_eq!(thousands(f64::NAN), "n/a");
        assert_eq!(fmt(1.234, 1), "1.2");
        assert_eq!(fmt(f64::INFINITY, 1), "n/a");
    }
}
