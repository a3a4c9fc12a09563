//! The processes a benchmark drives: the daemon under test, nginx (Debian's, on a free
//! loopback port with a throw-away configuration), wrk, bpftrace for the count-only floor, and
//! the benchmarks' own workloads as `tracer bench-tool` processes.
use std::{
    io::{BufRead as _, BufReader},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::util::{self, Guard};
use crate::lab::support::free_port;

/// `tracer run` started by the benchmark, with its own database and dashboard port.
pub struct Daemon {
    guard: Guard,
    pub addr: SocketAddr,
    /// The dashboard's token (given to the daemon in TRACER_TOKEN).
    pub token: String,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `exe run --db DIR/NAME.db --listen 127.0.0.1:PORT EXTRA...` and waits until its
    /// API answers (probes attached).
    pub fn start(exe: &Path, dir: &Path, name: &str, extra: &[&str]) -> Result<Daemon> {
        let port = free_port().context("binding 127.0.0.1:0")?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log = dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let token = crate::serve::web::auth::generate()?;
        let child = Command::new(exe)
            .arg("run")
            .arg("--db")
            .arg(dir.join(format!("{name}.db")))
            .arg("--listen")
            .arg(addr.to_string())
            .args(extra)
            .env("RUST_LOG", "warn")
            .env("TRACER_TOKEN", &token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {} run", exe.display()))?;
        let mut guard = Guard::new(child, format!("tracer daemon ({name})"));
        guard.grace = Duration::from_secs(60);
        let mut d = Daemon { guard, addr, token, log };
        util::wait_for(Duration::from_secs(120), "the daemon's API", || {
            if let Err(e) = d.guard.check_running() {
                bail!("{e}; its log ({}):\n{}", d.log.display(), util::read_text(&d.log).unwrap_or_default());
            }
            Ok(util::get_json(d.addr, "/api/health", &d.token).ok())
        })?;
        Ok(d)
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn health(&self) -> Result<Value> {
        util::get_json(self.addr, "/api/health", &self.token)
    }

    /// SIGTERM and wait for the exit (detaching takes a few seconds).
    pub fn stop(mut self) -> Result<()> {
        let status = self.guard.stop_with(libc::SIGTERM)?;
        if !status.success() {
            bail!("the daemon exited with {status}; log {}", self.log.display());
        }
        Ok(())
    }
}

/// Counters of one `/api/health` answer that the benchmarks compare before and after.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HealthCounters {
    pub received: f64,
    pub kernel_lost: f64,
    pub queue_dropped: f64,
    pub stored: f64,
    pub store_dropped: f64,
}

impl HealthCounters {
    pub fn of(h: &Value) -> Self {
        let n = |p: &str| h.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
        HealthCounters {
            received: n("/events/received"),
            kernel_lost: n("/events/kernel_lost"),
            queue_dropped: n("/events/queue_dropped"),
            stored: n("/pipeline/history/written"),
            store_dropped: n("/pipeline/history/dropped"),
        }
    }

    pub fn minus(&self, before: &Self) -> Self {
        HealthCounters {
            received: self.received - before.received,
            kernel_lost: self.kernel_lost - before.kernel_lost,
            queue_dropped: self.queue_dropped - before.queue_dropped,
            stored: self.stored - before.stored,
            store_dropped: self.store_dropped - before.store_dropped,
        }
    }

    /// Events lost anywhere between the kernel and the history.
    pub fn lost(&self) -> f64 {
        self.kernel_lost + self.queue_dropped
    }
}

/// Debian's nginx serving HTTPS on a free loopback port: one worker, no access log, a small
/// fixed answer. Its certificate is for `bench.test` and 127.0.0.1.
pub struct Nginx {
    guard: Guard,
    pub port: u16,
    pub cert_pem: PathBuf,
}

impl Nginx {
    pub fn start(dir: &Path, workers: usize) -> Result<Nginx> {
        let nginx = util::find_program("nginx")
            .context("nginx is not installed (`cargo xtask bench` installs it)")?;
        let dir = dir.join("nginx");
        std::fs::create_dir_all(dir.join("logs")).with_context(|| format!("creating {}", dir.display()))?;
        let cert = rcgen::generate_simple_self_signed(vec!["bench.test".to_string(), "127.0.0.1".to_string()])
            .context("generating nginx's certificate")?;
        let cert_pem = dir.join("cert.pem");
        let key_pem = dir.join("key.pem");
        std::fs::write(&cert_pem, cert.cert.pem())?;
        std::fs::write(&key_pem, cert.key_pair.serialize_pem())?;
        let port = free_port().context("binding 127.0.0.1:0")?;
        let conf = format!(
            "worker_processes {workers};\n\
             daemon off;\n\
             pid {dir}/nginx.pid;\n\
             error_log {dir}/logs/error.log warn;\n\
             events {{ worker_connections 8192; }}\n\
             http {{\n\
               access_log off;\n\
               keepalive_requests 10000000;\n\
               client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;\n\
               uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;\n\
               server {{\n\
                 listen 127.0.0.1:{port} ssl;\n\
                 ssl_certificate {cert}; ssl_certificate_key {key};\n\
                 ssl_protocols TLSv1.2 TLSv1.3;\n\
                 location / {{ default_type text/plain; return 200 \"ok\\n\"; }}\n\
               }}\n\
             }}\n",
            dir = dir.display(),
            cert = cert_pem.display(),
            key = key_pem.display(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("logs/error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nginx")?;
        let mut guard = Guard::new(child, "nginx");
        // Bounded for a failed start, not for speed: with every probe attached (its libssl's
        // uprobes trap on each call) nginx took over 20 s to listen on 6.1 under TCG at load 20.
        util::wait_for(Duration::from_secs(90), "nginx to listen", || {
            if let Err(e) = guard.check_running() {
                bail!("{e}: {}", util::read_text(&dir.join("logs/error.log")).unwrap_or_default());
            }
            Ok(TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()))
        })?;
        Ok(Nginx { guard, port, cert_pem })
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// The master's pid and its workers'.
    pub fn pids(&self) -> Vec<u32> {
        let master = self.guard.pid();
        let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap_or_default();
        std::iter::once(master).chain(children.split_whitespace().filter_map(|p| p.parse().ok())).collect()
    }
}

/// One wrk run against `url`: requests per second. `close`: a new connection (and TLS
/// handshake) per request.
pub fn wrk(url: &str, secs: u64, connections: u32, close: bool) -> Result<WrkResult> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", "-c", &connections.to_string(), "-d", &format!("{secs}s"), "--timeout", "5s"]);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(url);
    let out = cmd.output().context("running wrk (`cargo xtask bench` installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("wrk failed ({}): {}{}", out.status, text, String::from_utf8_lossy(&out.stderr));
    }
    parse_wrk(&text).with_context(|| format!("wrk printed no Requests/sec:\n{text}"))
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WrkResult {
    pub requests_per_s: f64,
    pub requests: f64,
    /// Socket errors and non-2xx answers.
    pub errors: f64,
}

pub fn parse_wrk(text: &str) -> Option<WrkResult> {
    let rps = text.lines().find_map(|l| l.trim().strip_prefix("Requests/sec:"))?.trim().parse().ok()?;
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN);
    let mut errors = 0.0;
    for l in text.lines() {
        let l = l.trim();
        if let Some(rest) = l.strip_prefix("Socket errors:") {
            errors += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        if let Some(rest) = l.strip_prefix("Non-2xx or 3xx responses:") {
            errors += rest.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    Some(WrkResult { requests_per_s: rps, requests, errors })
}

/// A running bpftrace program. Its stdout is collected; `stop` sends SIGINT, which makes
/// bpftrace print its maps and exit.
pub struct Bpftrace {
    guard: Guard,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Bpftrace {
    /// Starts `bpftrace -e PROGRAM`; returns once its BEGIN probe ran (every probe attached).
    /// PROGRAM must print "READY" in BEGIN.
    pub fn start(program: &str) -> Result<Bpftrace> {
        let mut child = Command::new("bpftrace")
            .arg("-e")
            .arg(program)
            .env("BPFTRACE_MAP_KEYS_MAX", "65536")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting bpftrace")?;
        let stdout = child.stdout.take().context("bpftrace stdout")?;
        let stderr = child.stderr.take().context("bpftrace stderr")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(mut v) = l2.lock() {
                    v.push(line);
                }
            }
        });
        let l3 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut v) = l3.lock() {
                    v.push(format!("stderr: {line}"));
                }
            }
        });
        let mut guard = Guard::new(child, "bpftrace");
        guard.grace = Duration::from_secs(180);
        let mut b = Bpftrace { guard, lines, reader: Some(reader) };
        util::wait_for(Duration::from_secs(120), "bpftrace to attach", || {
            if let Err(e) = b.guard.check_running() {
                bail!("{e}: {}", b.lines.lock().map(|l| l.join("\n")).unwrap_or_default());
            }
            Ok(b.lines.lock().map(|l| l.iter().any(|x| x.trim() == "READY")).unwrap_or(false).then_some(()))
        })?;
        Ok(b)
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// The maps as they are now: SIGUSR1 makes bpftrace print them and go on.
    pub fn counts(&self) -> Result<Vec<String>> {
        let mark = self.lines.lock().map(|l| l.len()).unwrap_or(0);
        // SAFETY: kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(self.guard.pid() as i32, libc::SIGUSR1) };
        let mut seen = 0;
        let mut stable = 0;
        util::wait_for(Duration::from_secs(30), "bpftrace to print its maps", || {
            let lines = self.lines.lock().map(|l| l[mark.min(l.len())..].to_vec()).unwrap_or_default();
            let n = lines.iter().filter(|l| l.trim_start().starts_with('@')).count();
            // Printed maps arrive in one go; wait until two polls see the same count.
            if n > 0 && n == seen {
                stable += 1;
            } else {
                stable = 0;
            }
            seen = n;
            Ok((stable >= 2).then_some(lines))
        })
    }

    /// SIGINT and wait for the exit. bpftrace 0.17 sometimes never exits after SIGINT on this
    /// machine (seen with ~45 tracepoints and uprobes under heavy load); after 30 s it gets
    /// SIGKILL, which is only a note: the counts, when wanted, come from [`Self::counts`].
    pub fn stop(mut self) -> Result<()> {
        self.guard.grace = Duration::from_secs(30);
        if let Err(e) = self.guard.stop_with(libc::SIGINT) {
            eprintln!("bench: note: {e}");
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        Ok(())
    }
}

/// `@...: N` lines of bpftrace's map dump: (key text inside the brackets, or "" for a scalar
/// map; value).
pub fn parse_bpftrace_counts(lines: &[String]) -> Vec<(String, u64)> {
    lines
        .iter()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix('@')?;
            let (key, value) = rest.rsplit_once(": ")?;
            let value: u64 = value.trim().parse().ok()?;
            let key = match (key.find('['), key.rfind(']')) {
                (Some(a), Some(b)) if b > a => key[a + 1..b].to_string(),
                _ => String::new(),
            };
            Some((key, value))
        })
        .collect()
}

/// A command that runs `exe bench-tool ARGS` under `sh`, which stays its parent: the tool is
/// then the root of its own process tree, a client of its own for the stitcher (a `tracer`
/// child of the `tracer bench` process would be counted as the same client).
pub fn tool_command(exe: &std::path::Path, args: &[String]) -> std::process::Command {
    let mut cmd = std::process::Command::new("sh");
    // Two commands, so that sh cannot exec the tool in its own place.
    cmd.arg("-c").arg("\"$@\"; exit $?").arg("sh").arg(exe).arg("bench-tool").args(args);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output() {
        let text = "Running 5s test @ https://127.0.0.1:8443/\n  1 threads and 50 connections\n\
                    Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   1.00ms  0.5ms  10ms  90%\n\
                    310000 requests in 5.00s, 40.00MB read\n  Socket errors: connect 0, read 3, write 0, timeout 2\n\
                    Non-2xx or 3xx responses: 7\nRequests/sec:  62000.25\nTransfer/sec:      8.00MB\n";
        let r = parse_wrk(text).unwrap();
        assert_eq!(r.requests_per_s, 62000.25);
        assert_eq!(r.requests, 310000.0);
        assert_eq!(r.errors, 12.0);
        assert!(parse_wrk("nothing").is_none());
    }

    #[test]
    fn bpftrace_maps() {
        let lines: Vec<String> = [
            "Attaching 3 probes...",
            "READY",
            "",
            "@: 1234",
            "@[curl, uprobe:/usr/lib/x86_64-linux-gnu/libssl.so.3:SSL_write]: 56",
            "@[bench-dns, tracepoint:syscalls:sys_enter_sendto]: 7",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            parse_bpftrace_counts(&lines),
            vec![
                (String::new(), 1234),
                ("curl, uprobe:/usr/lib/x86_64-linux-gnu/libssl.so.3:SSL_write".to_string(), 56),
                ("bench-dns, tracepoint:syscalls:sys_enter_sendto".to_string(), 7),
            ]
        );
    }

    #[test]
    fn health_counters() {
        let h: Value = serde_json::json!({"events": {"received": 10, "kernel_lost": 2, "queue_dropped": 1},
            "pipeline": {"history": {"written": 5, "dropped": 0}}});
        let c = HealthCounters::of(&h);
        assert_eq!(c.lost(), 3.0);
        assert_eq!(c.minus(&HealthCounters::default()).stored, 5.0);
        assert_eq!(HealthCounters::of(&serde_json::json!({})), HealthCounters::default());
    }
}
