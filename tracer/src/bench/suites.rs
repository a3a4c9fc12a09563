//! The benchmarks themselves (see the module documentation of `bench`).
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    net::{SocketAddr, TcpStream},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::{
    Ctx, Section,
    procs::{self, Bpftrace, Daemon, HealthCounters, Nginx, parse_bpftrace_counts, wrk},
    tools::{self, DnsServer, StormListener},
    util::{self, fmt, median, percentile, thousands},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    Floor,
    Tracer,
}

impl Mode {
    fn rotation(round: usize) -> [Mode; 3] {
        let all = [Mode::Off, Mode::Floor, Mode::Tracer];
        [all[round % 3], all[(round + 1) % 3], all[(round + 2) % 3]]
    }

    /// The key of this mode's samples.
    fn key(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Floor => "floor",
            Mode::Tracer => "on",
        }
    }

    /// In floor mode, the count-only program on `hooks`, running (stop it after the round).
    fn start_floor(self, hooks: &[String]) -> Result<Option<Bpftrace>> {
        if self == Mode::Floor { Bpftrace::start(&floor_program(hooks)).map(Some) } else { Ok(None) }
    }
}

/// The floor's hooks: those a daemon started with `args` reports attached (see
/// [`floor_hooks`]).
pub(super) fn attached_hooks(ctx: &Ctx, args: &[&str], own_exe: Option<&std::path::Path>) -> Result<Vec<String>> {
    let d = Daemon::start(&ctx.exe, &ctx.dir, "probe-list", args)?;
    let hooks = floor_hooks(&d.health()?, own_exe);
    d.stop()?;
    Ok(hooks)
}

/// The bpftrace probe specs of every hook the daemon attached (from its `/api/health`),
/// except those at file offsets (BoringSSL) and those in the tracer's own binaries, unless
/// `own_exe` names the binary whose probe points to keep (benchmark 3's load generator).
fn floor_hooks(health: &Value, own_exe: Option<&std::path::Path>) -> Vec<String> {
    let mut hooks = Vec::new();
    for p in health.get("probes").and_then(Value::as_array).into_iter().flatten() {
        if p.get("attached").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let point = p.get("point").and_then(Value::as_str).unwrap_or("");
        let variant = p.get("variant").and_then(Value::as_str).unwrap_or("");
        let target = p.get("target").and_then(Value::as_str);
        let Some((_, name)) = point.split_once(' ') else { continue };
        match (variant, target) {
            ("tracepoint", _) => hooks.push(format!("tracepoint:{name}")),
            // A BTF tracepoint is the same kernel tracepoint ("sock:sock_send_length", or
            // "sock:inet_sock_set_state (connects, at their SYN)"): counted as one.
            ("tp_btf", _) => hooks.push(format!("tracepoint:{}", name.split(' ').next().unwrap_or(name))),
            // Only the libraries the workloads use: bpftrace detaches uprobes one by one, and
            // with every library of the machine (NSPR, NSS, Firefox's NSS) it takes minutes to
            // stop. Hooks that no workload process hits cost the workloads nothing either way.
            ("uprobe" | "uretprobe", Some(t))
                if !name.contains(['@', ' ', '('])
                    && (workload_library(t) || own_exe.is_some_and(|e| std::path::Path::new(t) == e)) =>
            {
                hooks.push(format!("{variant}:{t}:{name}"))
            }
            _ => {}
        }
    }
    hooks.sort();
    hooks.dedup();
    hooks
}

/// OpenSSL (curl, wrk, nginx) and GnuTLS (wget).
fn workload_library(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.starts_with("libssl.so") || file.starts_with("libgnutls.so")
}

pub(super) fn floor_program(hooks: &[String]) -> String {
    format!("BEGIN {{ printf(\"READY\\n\"); }}\n{} {{ @ = count(); }}\n", hooks.join(",\n"))
}

fn census_program(hooks: &[String]) -> String {
    format!("BEGIN {{ printf(\"READY\\n\"); }}\n{} {{ @[comm, probe] = count(); }}\n", hooks.join(",\n"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Connect,
    Dns,
    CurlOpenssl,
    WgetGnutls,
    WrkKeepAlive,
    WrkNewConnection,
}

impl Workload {
    /// Benchmark 2's workloads (throughput under wrk); the others are benchmark 1's.
    fn saturation(self) -> bool {
        matches!(self, Workload::WrkKeepAlive | Workload::WrkNewConnection)
    }
    fn label(self) -> &'static str {
        match self {
            Workload::Connect => "connect/state tracepoints: loopback connect + reset",
            Workload::Dns => "DNS syscall path: UDP query + answer (send/recv)",
            Workload::CurlOpenssl => "OpenSSL uprobes: curl keep-alive GETs to nginx",
            Workload::WgetGnutls => "GnuTLS uprobes: wget keep-alive GETs to nginx",
            Workload::WrkKeepAlive => "nginx HTTPS keep-alive (wrk)",
            Workload::WrkNewConnection => "nginx HTTPS, new connection per request (wrk)",
        }
    }
    /// The processes (comm) whose hook hits the workload causes.
    fn comms(self) -> &'static [&'static str] {
        match self {
            Workload::Connect => &["bench-connect", "bench-accept"],
            Workload::Dns => &["bench-dns", "bench-dnssrv"],
            Workload::CurlOpenssl => &["curl", "nginx"],
            Workload::WgetGnutls => &["wget", "nginx"],
            Workload::WrkKeepAlive | Workload::WrkNewConnection => &["wrk", "nginx"],
        }
    }
}

struct Env {
    nginx: Nginx,
    dns: DnsServer,
    listener: StormListener,
}

/// Runs one workload sized for about `secs`: (operations, seconds).
fn run_workload(ctx: &Ctx, env: &Env, w: Workload, ops_hint: u64) -> Result<(f64, f64)> {
    let secs = ctx.plan.window_s;
    Ok(match w {
        Workload::Connect => {
            let (ok, s) = tools::connect_storm(env.listener.addr, ops_hint, None, 1)?;
            (ok as f64, s)
        }
        Workload::Dns => {
            let (ok, s) = tools::dns_loop(env.dns.addr, ops_hint)?;
            (ok as f64, s)
        }
        Workload::CurlOpenssl | Workload::WgetGnutls => {
            let list = ctx.dir.join("urls.txt");
            let url = env.nginx.url("/");
            let mut f = std::fs::File::create(&list)?;
            for _ in 0..ops_hint {
                if w == Workload::CurlOpenssl {
                    writeln!(f, "url = \"{url}\"")?;
                } else {
                    writeln!(f, "{url}")?;
                }
            }
            drop(f);
            let mut cmd = if w == Workload::CurlOpenssl {
                let mut c = std::process::Command::new("curl");
                c.args(["-k", "-s", "-K"]).arg(&list);
                c
            } else {
                let mut c = std::process::Command::new("wget");
                c.args(["--no-check-certificate", "-q", "-O", "/dev/null", "-i"]).arg(&list);
                c
            };
            let start = Instant::now();
            let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().context("running the TLS client")?;
            let s = start.elapsed().as_secs_f64();
            if !status.success() {
                bail!("{w:?} client failed: {status}");
            }
            (ops_hint as f64, s)
        }
        Workload::WrkKeepAlive | Workload::WrkNewConnection => {
            let r = wrk(&env.nginx.url("/"), ctx.plan.wrk_s.max(secs as u64), 50, w == Workload::WrkNewConnection)?;
            (r.requests, r.requests / r.requests_per_s.max(1e-9))
        }
    })
}

#[derive(Debug, Default, Clone)]
struct Samples {
    rate: BTreeMap<&'static str, Vec<f64>>,
    events_per_op: Vec<f64>,
    lost: f64,
    /// In-kernel time per BPF program run (`kernel.bpf_stats_enabled`), per mode.
    bpf_ns: BTreeMap<&'static str, Vec<f64>>,
    /// Our programs' runs and time by program name, summed over the tracer's rounds, and
    /// the operations of those rounds: the profile printed under benchmarks 1 and 2.
    profile: BTreeMap<String, util::ProgRuns>,
    profile_ops: f64,
}

/// Benchmarks 1 and 2.
pub fn overhead(ctx: &Ctx, which: &[u8]) -> Result<Vec<Section>> {
    let env = Env { nginx: Nginx::start(&ctx.dir, 1)?, dns: DnsServer::start(true)?, listener: StormListener::start()? };
    let mut workloads = Vec::new();
    if which.contains(&1) {
        workloads.extend([Workload::Connect, Workload::Dns, Workload::CurlOpenssl, Workload::WgetGnutls]);
    }
    if which.contains(&2) {
        workloads.extend([Workload::WrkKeepAlive, Workload::WrkNewConnection]);
    }
    // Which hooks the daemon attaches on this machine: the floor attaches the same.
    let hooks = attached_hooks(ctx, &[], None)?;
    if hooks.is_empty() {
        bail!("the daemon reported no attached hooks");
    }
    eprintln!("bench: the floor counts {} hooks", hooks.len());
    std::fs::write(ctx.dir.join("floor.bt"), floor_program(&hooks))?;
    // In-kernel cost of each BPF program run, ours and the floor's: independent of how busy
    // the shared machine is. Restored when this benchmark ends.
    let _bpf_stats = util::BpfStats::enable();

    // Size each workload for the window, and count its hook hits per operation (our
    // processes only: the machine is shared) with a census program.
    let mut ops_hint: BTreeMap<u8, u64> = BTreeMap::new();
    let mut hits_per_op: BTreeMap<u8, f64> = BTreeMap::new();
    let mut top_hooks: BTreeMap<u8, String> = BTreeMap::new();
    for (i, &w) in workloads.iter().enumerate() {
        let probe_ops = match w {
            Workload::Connect | Workload::Dns => 2000,
            _ => 200,
        };
        let (ops, secs) = run_workload(ctx, &env, w, probe_ops)?;
        let rate = ops / secs;
        ops_hint.insert(i as u8, ((rate * ctx.plan.window_s) as u64).max(100));
        let census = Bpftrace::start(&census_program(&hooks))?;
        let (ops, _) = run_workload(ctx, &env, w, probe_ops)?;
        let lines = census.counts()?;
        census.stop()?;
        let mut total = 0u64;
        let mut per_hook: BTreeMap<String, u64> = BTreeMap::new();
        for (key, n) in parse_bpftrace_counts(&lines) {
            let Some((comm, probe)) = key.split_once(", ") else { continue };
            if w.comms().contains(&comm) {
                total += n;
                let short = probe.rsplit(':').next().unwrap_or(probe).to_string();
                *per_hook.entry(short).or_default() += n;
            }
        }
        hits_per_op.insert(i as u8, total as f64 / ops.max(1.0));
        let mut top: Vec<(String, u64)> = per_hook.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1));
        top_hooks.insert(
            i as u8,
            top.iter().take(4).map(|(h, n)| format!("{h} {:.1}", *n as f64 / ops.max(1.0))).collect::<Vec<_>>().join(", "),
        );
    }

    let mut samples: Vec<Samples> = vec![Samples::default(); workloads.len()];
    for round in 0..ctx.plan.rounds {
        for mode in Mode::rotation(round) {
            eprintln!("bench: overhead round {} mode {mode:?} (load {})", round + 1, util::loadavg());
            let floor = mode.start_floor(&hooks)?;
            let daemon = if mode == Mode::Tracer { Some(Daemon::start(&ctx.exe, &ctx.dir, "overhead", &[])?) } else { None };
            let bpf_pid = floor.as_ref().map(|b| b.pid()).or(daemon.as_ref().map(|d| d.pid()));
            for (i, &w) in workloads.iter().enumerate() {
                let before = daemon.as_ref().map(|d| d.health()).transpose()?.map(|h| HealthCounters::of(&h));
                let bpf_before = bpf_pid.map(util::bpf_prog_runs);
                let (ops, secs) = run_workload(ctx, &env, w, ops_hint[&(i as u8)])?;
                let key = mode.key();
                samples[i].rate.entry(key).or_default().push(ops / secs);
                if let (Some(pid), Some(before)) = (bpf_pid, bpf_before) {
                    let ran = util::prog_runs_since(&before, &util::bpf_prog_runs(pid));
                    let (ns, runs) = ran.values().fold((0, 0), |(ns, runs), p| (ns + p.ns, runs + p.runs));
                    if runs > 0 {
                        samples[i].bpf_ns.entry(key).or_default().push(ns as f64 / runs as f64);
                    }
                    if daemon.is_some() {
                        // Names now: the ids are gone once the daemon stops.
                        let names = util::bpf_prog_names(ran.keys().copied());
                        for (id, r) in &ran {
                            let name = names.get(id).cloned().unwrap_or_else(|| format!("prog {id}"));
                            let e = samples[i].profile.entry(name).or_default();
                            e.ns += r.ns;
                            e.runs += r.runs;
                        }
                        samples[i].profile_ops += ops;
                    }
                }
                if let (Some(d), Some(b)) = (&daemon, before) {
                    std::thread::sleep(Duration::from_millis(1200)); // the lost counter is read every second
                    let delta = HealthCounters::of(&d.health()?).minus(&b);
                    samples[i].events_per_op.push(delta.received / ops.max(1.0));
                    samples[i].lost += delta.lost();
                }
            }
            if let Some(b) = floor {
                b.stop()?;
            }
            if let Some(d) = daemon {
                d.stop()?;
            }
        }
    }

    let load = util::loadavg();
    let mut sections = Vec::new();
    let row = |i: usize| -> (f64, f64, f64) {
        let m = |k: &str| median(samples[i].rate.get(k).map(Vec::as_slice).unwrap_or(&[]));
        (m("off"), m("floor"), m("on"))
    };
    if which.contains(&1) {
        let mut md = format!(
            "### 1. Cost per event against the count-only floor\n\n\
             Each workload runs with nothing attached, under a bpftrace program that only counts hits of every hook \
             the daemon attaches that the workloads can reach (`@ = count()` on {} tracepoints and the OpenSSL and GnuTLS uprobes), and under the daemon; {} interleaved \
             rounds, medians. Added cost per hook hit = (1/rate − 1/rate_off) / hits per operation; hits per operation \
             are counted once per workload by bpftrace for the workload's own processes (the machine is shared). \
             Target: ours ≤ 1.25 × floor.\n\n\
             The last two columns are the kernel's own accounting (`kernel.bpf_stats_enabled`): time inside one BPF \
             program run, ours and the floor's (`count()`), averaged over every run in the window; the trap \
             (uprobe breakpoint, tracepoint dispatch) is not in them and is the same for both.\n\n\
             | probe kind (workload) | ops/s off | floor | tracer | hook hits/op (top hooks per op) | floor ns/hit | tracer ns/hit | tracer/floor | events/op | lost | BPF ns/run floor | BPF ns/run ours |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
            hooks.len(),
            ctx.plan.rounds
        );
        let mut numbers = Vec::new();
        for (i, &w) in workloads.iter().enumerate() {
            if w.saturation() {
                continue;
            }
            let (off, fl, on) = row(i);
            let hits = hits_per_op[&(i as u8)];
            let ns = |r: f64| (1.0 / r - 1.0 / off) / hits * 1e9;
            let (ns_floor, ns_on) = (ns(fl), ns(on));
            let ratio = ns_on / ns_floor;
            let bpf = |k: &str| median(samples[i].bpf_ns.get(k).map(Vec::as_slice).unwrap_or(&[]));
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} |\n",
                w.label(),
                thousands(off),
                thousands(fl),
                thousands(on),
                fmt(hits, 1),
                top_hooks[&(i as u8)],
                fmt(ns_floor, 0),
                fmt(ns_on, 0),
                fmt(ratio, 2),
                fmt(median(&samples[i].events_per_op), 2),
                samples[i].lost,
                fmt(bpf("floor"), 0),
                fmt(bpf("on"), 0),
            ));
            numbers.push((format!("{w:?} tracer ns/hit"), ns_on));
            numbers.push((format!("{w:?} floor ns/hit"), ns_floor));
        }
        md.push_str(
            "| NSPR/NSS uprobes (Firefox) | not measured: no command-line NSPR client in Debian | | | | | | | | | | |\n\n",
        );
        md.push_str(&profile_table(&workloads, &samples, false));
        md.push_str(&format!("Load average after the benchmark: {load}.\n\n"));
        sections.push(Section { markdown: md, numbers });
    }
    if which.contains(&2) {
        let mut md = format!(
            "### 2. Saturation: nginx HTTPS on loopback, wrk (1 thread, 50 connections, {} s)\n\n\
             nginx 1 worker. Floor = the count-only program of benchmark 1 on every hook the daemon attaches. Target: \
             tracer ratio ≥ 0.9 × floor ratio; lost events counted.\n\n\
             | load | req/s off | floor | tracer | floor/off | tracer/off | tracer ratio / floor ratio | events/request | lost events | BPF ns/run floor | BPF ns/run ours |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
            ctx.plan.wrk_s
        );
        let mut numbers = Vec::new();
        for (i, &w) in workloads.iter().enumerate() {
            if !w.saturation() {
                continue;
            }
            let (off, fl, on) = row(i);
            let bpf = |k: &str| median(samples[i].bpf_ns.get(k).map(Vec::as_slice).unwrap_or(&[]));
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                w.label(),
                thousands(off),
                thousands(fl),
                thousands(on),
                fmt(fl / off, 3),
                fmt(on / off, 3),
                fmt((on / off) / (fl / off), 3),
                fmt(median(&samples[i].events_per_op), 2),
                samples[i].lost,
                fmt(bpf("floor"), 0),
                fmt(bpf("on"), 0),
            ));
            numbers.push((format!("{w:?} tracer/off"), on / off));
            numbers.push((format!("{w:?} floor/off"), fl / off));
        }
        md.push('\n');
        md.push_str(&profile_table(&workloads, &samples, true));
        md.push_str(&format!("Load average after the benchmark: {load}.\n\n"));
        sections.push(Section { markdown: md, numbers });
    }
    Ok(sections)
}

/// Programs shown per workload in the profile.
const PROFILE_TOP: usize = 6;

/// Where our in-kernel time goes, per workload: each program's runs per operation and time
/// per run (the kernel's `bpf_stats`, summed over the tracer's rounds), most costly first.
/// Programs run by other processes of the machine in the window are in it too, which is why
/// the share of the workload's own hooks is what to read. `saturation`: benchmark 2's
/// workloads, else benchmark 1's.
fn profile_table(workloads: &[Workload], samples: &[Samples], saturation: bool) -> String {
    let mut md = String::from(
        "Profile of our programs under the tracer (kernel `bpf_stats`, all tracer rounds; names cut to 15 \
         bytes by the kernel), most costly per operation first:\n\n\
         | workload | program | runs/op | ns/run | ns/op | share of our BPF time |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for (w, s) in workloads.iter().zip(samples).filter(|(w, _)| w.saturation() == saturation) {
        let label = w.label();
        let total: u64 = s.profile.values().map(|p| p.ns).sum();
        if s.profile_ops <= 0.0 || total == 0 {
            md.push_str(&format!("| {label} | no runs counted | | | | |\n"));
            continue;
        }
        let mut progs: Vec<(&String, &util::ProgRuns)> = s.profile.iter().collect();
        progs.sort_by(|a, b| b.1.ns.cmp(&a.1.ns));
        for (name, p) in progs.into_iter().take(PROFILE_TOP) {
            md.push_str(&format!(
                "| {label} | {name} | {} | {} | {} | {}% |\n",
                fmt(p.runs as f64 / s.profile_ops, 2),
                fmt(p.ns as f64 / p.runs.max(1) as f64, 0),
                fmt(p.ns as f64 / s.profile_ops, 0),
                fmt(100.0 * p.ns as f64 / total as f64, 0),
            ));
        }
    }
    md.push('\n');
    md
}

/// Reads `/api/live` and keeps every `page_load` event with the time it arrived.
struct LiveWatcher {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(i64, Value)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LiveWatcher {
    fn start(addr: SocketAddr, token: &str) -> Result<LiveWatcher> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        write!(s, "GET /api/live HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n")?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (st, se) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let mut r = BufReader::new(s);
            let mut event = String::new();
            let mut line = String::new();
            while !st.load(Ordering::Relaxed) {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                    Err(_) => break,
                }
                // Chunked framing lines (sizes) are neither `event:` nor `data:` and are skipped.
                let l = line.trim_end();
                if let Some(e) = l.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = l.strip_prefix("data:")
                    && event == "page_load"
                    && let Ok(v) = serde_json::from_str::<Value>(d.trim())
                    && let Ok(mut seen) = se.lock()
                {
                    seen.push((crate::clock::now_unix_ms(), v));
                }
            }
        });
        Ok(LiveWatcher { stop, seen, thread: Some(thread) })
    }

    fn finish(mut self) -> Vec<(i64, Value)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Benchmarks 3 and 8.
pub fn realistic(ctx: &Ctx, which: &[u8]) -> Result<Vec<Section>> {
    let nginx = Nginx::start(&ctx.dir, 1)?;
    let dns = DnsServer::start(false)?;
    let tck = util::clk_tck();
    let rate = ctx.plan.realistic_rate;
    let secs = ctx.plan.realistic_s;
    // The floor: a count-only bpftrace program on every hook the daemon attaches that this
    // load hits (tracepoints, nginx's OpenSSL, the generator's probe points).
    let hooks = attached_hooks(ctx, &[], Some(&ctx.exe))?;
    let mut busy: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut achieved: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut daemon_cpu = Vec::new();
    let mut latencies = Vec::new();
    let mut expected_pages = 0u64;
    let mut live_pages = 0u64;
    let mut failed = 0u64;
    let mut lost = 0.0;
    for round in 0..ctx.plan.rounds {
        for mode in Mode::rotation(round) {
            eprintln!("bench: realistic round {} mode {mode:?} (load {})", round + 1, util::loadavg());
            let on = mode == Mode::Tracer;
            let floor = mode.start_floor(&hooks)?;
            let daemon = if on { Some(Daemon::start(&ctx.exe, &ctx.dir, "realistic", &[])?) } else { None };
            let watcher = daemon.as_ref().map(|d| LiveWatcher::start(d.addr, &d.token)).transpose()?;
            let h0 = daemon.as_ref().map(|d| d.health()).transpose()?.map(|h| HealthCounters::of(&h));
            let d0 = daemon.as_ref().and_then(|d| util::proc_cpu_ticks(d.pid()));
            let (b0, _) = util::cpu_busy_ticks()?;
            let t = Instant::now();
            let res = super::load::run_load(&ctx.exe, dns.addr, nginx.port, rate, secs, &ctx.dir)?;
            let wall = t.elapsed().as_secs_f64();
            let (b1, _) = util::cpu_busy_ticks()?;
            if let Some(f) = floor {
                f.stop()?;
            }
            let key = mode.key();
            busy.entry(key).or_default().push((b1 - b0) as f64 / tck / wall);
            achieved.entry(key).or_default().push(res.rate());
            failed += res.counts.failed;
            if let (Some(d), Some(d0)) = (&daemon, d0) {
                let d1 = util::proc_cpu_ticks(d.pid()).unwrap_or(d0);
                daemon_cpu.push((d1 - d0) as f64 / tck / wall);
            }
            if let (Some(d), Some(w), Some(h0)) = (daemon, watcher, h0) {
                std::thread::sleep(Duration::from_millis(2500)); // the last page loads' quiet window
                let delta = HealthCounters::of(&d.health()?).minus(&h0);
                lost += delta.lost();
                let seen = w.finish();
                expected_pages += res.counts.page_loads;
                for (recv_ms, v) in seen {
                    if v.get("host").and_then(Value::as_str) != Some("bench.test") {
                        continue;
                    }
                    live_pages += 1;
                    let start = v.get("started_at_ms").and_then(Value::as_f64).unwrap_or(f64::NAN);
                    let total = v.get("total_ms").and_then(Value::as_f64).unwrap_or(f64::NAN);
                    latencies.push(recv_ms as f64 - (start + total));
                }
                d.stop()?;
            }
        }
    }
    let load = util::loadavg();
    let mut out = Vec::new();
    let m = |map: &BTreeMap<&str, Vec<f64>>, k: &str| median(map.get(k).map(Vec::as_slice).unwrap_or(&[]));
    let added = (m(&busy, "on") - m(&busy, "off")) * 100.0;
    let floor_added = (m(&busy, "floor") - m(&busy, "off")) * 100.0;
    if which.contains(&3) {
        let md = format!(
            "### 3. Realistic load: {} requests/s, each a DNS lookup and a new TLS connection\n\n\
             The load generator (`tracer bench-tool load-worker`, rustls through the traced probe points) runs in \
             worker processes, each doing page loads of 20 requests and then staying quiet for 600 ms; DNS on \
             127.0.77.x:53, nginx on loopback. {} interleaved rounds of {} s (nothing, the count-only floor, the \
             tracer), medians. The floor is a bpftrace program that only counts hits of the {} hooks the daemon \
             attaches and this load reaches (syscall and socket tracepoints, nginx's OpenSSL, the generator's probe \
             points). CPU of all processes from `/proc/stat` (this includes the other developers' work on the shared \
             machine, hence the daemon's own CPU beside it). Target: added CPU ≤ 5% of one core.\n\n\
             | | off | count-only floor | tracer on |\n| --- | --- | --- | --- |\n\
             | requests/s achieved | {} | {} | {} |\n\
             | all processes, cores busy | {} | {} | {} |\n\
             | added CPU, % of one core | | {} | **{}** |\n\
             | daemon's own CPU, % of one core | | | {} |\n\
             | failed requests (all runs) | {failed} | | |\n\
             | lost events | | | {lost} |\n\n\
             Load average after the benchmark: {load}.\n\n",
            rate,
            ctx.plan.rounds,
            secs,
            hooks.len(),
            fmt(m(&achieved, "off"), 0),
            fmt(m(&achieved, "floor"), 0),
            fmt(m(&achieved, "on"), 0),
            fmt(m(&busy, "off"), 3),
            fmt(m(&busy, "floor"), 3),
            fmt(m(&busy, "on"), 3),
            fmt(floor_added, 1),
            fmt(added, 1),
            fmt(median(&daemon_cpu) * 100.0, 1),
        );
        out.push(Section {
            markdown: md,
            numbers: vec![
                ("added CPU %".into(), added),
                ("floor added CPU %".into(), floor_added),
                ("daemon CPU %".into(), median(&daemon_cpu) * 100.0),
            ],
        });
    }
    if which.contains(&8) {
        let (p50, p95, max) = (percentile(&latencies, 50.0), percentile(&latencies, 95.0), percentile(&latencies, 100.0));
        let md = format!(
            "### 8. Latency to the user: last byte of a page load -> its row on the live feed\n\n\
             During benchmark 3's tracer rounds, `/api/live` is read; for each page load of the generator the delay is \
             (arrival of its `page_load` event) − (`started_at_ms` + `total_ms`, i.e. its last traced byte), both unix \
             ms. Includes the 500 ms quiet window. Target: p95 < 1 s.\n\n\
             | page loads made | seen on the live feed | p50 ms | p95 ms | max ms |\n| --- | --- | --- | --- | --- |\n\
             | {expected_pages} | {live_pages} | {} | **{}** | {} |\n\n\
             Load average after the benchmark: {load}.\n\n",
            fmt(p50, 0),
            fmt(p95, 0),
            fmt(max, 0)
        );
        out.push(Section { markdown: md, numbers: vec![("live p95 ms".into(), p95)] });
    }
    Ok(out)
}

/// Benchmark 4.
pub fn filter(ctx: &Ctx, _which: &[u8]) -> Result<Vec<Section>> {
    let nginx = Nginx::start(&ctx.dir, 1)?;
    let lab = ctx.rt.block_on(crate::lab::Lab::start(crate::lab::LabConfig::default()))?;
    // What untraced processes still hit: the tracepoints (the filtered daemon's uprobes, libc
    // and TLS, are in traced processes only). The floor counts hits of just those.
    let mut hooks = attached_hooks(ctx, &["--comm", "curl"], None)?;
    hooks.retain(|h| h.starts_with("tracepoint:"));
    let mut off = Vec::new();
    let mut floor_rates = Vec::new();
    let mut on = Vec::new();
    let mut curl_loads = 0;
    let mut complete = 0;
    let mut curl_runs = 0;
    let mut missing = Vec::new();
    let rounds = if ctx.plan.name == "smoke" { 1 } else { ctx.plan.rounds.max(2) };
    for round in 0..rounds {
        for mode in Mode::rotation(round) {
            eprintln!("bench: filter round {} mode {mode:?} (load {})", round + 1, util::loadavg());
            let traced = mode == Mode::Tracer;
            let floor = mode.start_floor(&hooks)?;
            // A database per round: each round counts its own curls' page loads.
            let daemon = if traced {
                Some(Daemon::start(&ctx.exe, &ctx.dir, &format!("filter-{round}"), &["--comm", "curl"])?)
            } else {
                None
            };
            let r = wrk(&nginx.url("/"), ctx.plan.wrk_s, 50, false)?;
            if let Some(f) = floor {
                f.stop()?;
            }
            match mode {
                Mode::Off => off.push(r.requests_per_s),
                Mode::Floor => floor_rates.push(r.requests_per_s),
                Mode::Tracer => on.push(r.requests_per_s),
            }
            if let Some(d) = daemon {
                for _ in 0..2 {
                    curl_runs += 1;
                    let status = lab
                        .exec_command("curl")
                        .args(["-s", "-o", "/dev/null", "--cacert"])
                        .arg(lab.ca_pem_path())
                        .arg("https://www.shop.test/")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()?;
                    if !status.success() {
                        bail!("curl in the lab failed: {status}");
                    }
                }
                // The round's page loads are stored once each curl's quiet window (500 ms) has
                // passed; wait for both, up to 5 s (a curl missed whole never comes).
                let deadline = Instant::now() + Duration::from_secs(5);
                let list = loop {
                    let list = util::get_json(d.addr, "/api/page-loads?process=curl&limit=50", &d.token)?;
                    let n = list.get("items").and_then(Value::as_array).map_or(0, Vec::len);
                    if n >= 2 || Instant::now() >= deadline {
                        break list;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                };
                for item in list.get("items").and_then(Value::as_array).into_iter().flatten() {
                    let id = item.get("id").and_then(Value::as_i64).unwrap_or(0);
                    curl_loads += 1;
                    let detail = util::get_json(d.addr, &format!("/api/page-loads/{id}"), &d.token)?;
                    let doc = detail.pointer("/page/requests/0/timings").cloned().unwrap_or(Value::Null);
                    let phases = ["dns", "connect", "ssl", "send", "wait", "receive"];
                    let absent: Vec<&str> =
                        phases.iter().copied().filter(|p| doc.get(*p).and_then(Value::as_f64).unwrap_or(-1.0) < 0.0).collect();
                    if absent.is_empty() {
                        complete += 1;
                    } else {
                        missing.push(format!("page load {id}: no {}", absent.join(", ")));
                    }
                }
                d.stop()?;
            }
        }
    }
    drop(lab);
    let ratio = median(&on) / median(&off);
    let floor_ratio = median(&floor_rates) / median(&off);
    let load = util::loadavg();
    let md = format!(
        "### 4. Untraced processes pay nothing (`--comm curl`)\n\n\
         nginx keep-alive throughput (wrk, 1 thread, 50 connections, {} s) with nothing attached, under a count-only \
         bpftrace program on the {} tracepoints the filtered daemon attaches (what an untraced process still hits: \
         its libc socket-call and TLS uprobes are in traced processes only), and with the daemon tracing only curl; interleaved, medians \
         of {} runs each. Meanwhile curl loads `https://www.shop.test/` inside a lab namespace {curl_runs} times \
         (started afresh each time: `--comm` catches it at its exec, and what it does before its uprobes are in is \
         not seen). Target: ratio ≥ 0.97; every curl page load has dns, connect, ssl, send, wait and receive.\n\n\
         | req/s off | req/s count-only floor | req/s tracing curl | floor ratio | ratio | curl runs | page loads stored | with every phase |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n\
         | {} | {} | {} | {} | **{}** | {curl_runs} | {curl_loads} | {complete} |\n\n{}\
         Load average after the benchmark: {load}.\n\n",
        ctx.plan.wrk_s,
        hooks.len(),
        on.len(),
        thousands(median(&off)),
        thousands(median(&floor_rates)),
        thousands(median(&on)),
        fmt(floor_ratio, 3),
        fmt(ratio, 3),
        if missing.is_empty() { String::new() } else { format!("Incomplete: {}.\n\n", missing.join("; ")) }
    );
    Ok(vec![Section {
        markdown: md,
        numbers: vec![
            ("filter ratio".into(), ratio),
            ("filter floor ratio".into(), floor_ratio),
            ("curl page loads".into(), f64::from(curl_loads)),
        ],
    }])
}

/// Runs `bench-tool storm` as a process of its own; (connects, seconds).
fn storm_process(ctx: &Ctx, count: u64, rate: Option<f64>) -> Result<(f64, f64)> {
    let mut args = vec!["storm".to_string(), "--count".into(), count.to_string(), "--threads".into(), "2".into()];
    if let Some(r) = rate {
        args.extend(["--rate".into(), format!("{r}")]);
    }
    let out = procs::tool_command(&ctx.exe, &args).stdin(Stdio::null()).stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("the connect storm failed: {}", out.status);
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("the storm's counts")?;
    Ok((v["connects"].as_f64().unwrap_or(f64::NAN), v["secs"].as_f64().unwrap_or(f64::NAN)))
}

/// Waits until the daemon's received counter stops moving (500 ms) or 15 s pass.
fn drained(d: &Daemon) -> Result<HealthCounters> {
    let mut last = HealthCounters::of(&d.health()?);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        std::thread::sleep(Duration::from_millis(1100));
        let now = HealthCounters::of(&d.health()?);
        if (now.received == last.received && now.lost() == last.lost()) || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// Benchmark 5.
pub fn pipeline(ctx: &Ctx, _which: &[u8]) -> Result<Vec<Section>> {
    let tck = util::clk_tck();
    // The machine's ceiling: unpaced, nothing attached.
    let (n, s) = storm_process(ctx, ctx.plan.storm_ceiling_count, None)?;
    let ceiling = n / s;
    let d = Daemon::start(&ctx.exe, &ctx.dir, "pipeline", &[])?;
    let mut rates: Vec<Option<f64>> =
        [2_000.0, 5_000.0, 10_000.0, 20_000.0, 35_000.0, 50_000.0, 75_000.0, 100_000.0]
            .into_iter()
            .filter(|r| *r < ceiling * 0.95)
            .map(Some)
            .collect();
    if ctx.plan.name == "smoke" {
        rates.truncate(1);
    }
    rates.push(None); // and as fast as it goes under the tracer
    let mut rows = String::new();
    let mut best_lossless = 0.0f64;
    let mut cpu_per_10k = Vec::new();
    for rate in rates {
        let count = ((rate.unwrap_or(ceiling) * ctx.plan.storm_step_s) as u64).max(500);
        let h0 = HealthCounters::of(&d.health()?);
        let c0 = util::proc_cpu_ticks(d.pid()).unwrap_or(0);
        let t = Instant::now();
        let (connects, secs) = storm_process(ctx, count, rate)?;
        let h1 = drained(&d)?;
        let busy_wall = t.elapsed().as_secs_f64();
        let c1 = util::proc_cpu_ticks(d.pid()).unwrap_or(c0);
        let delta = h1.minus(&h0);
        let achieved = connects / secs;
        let cpu_s = (c1 - c0) as f64 / tck;
        let events_per_s = delta.received / secs;
        // Daemon CPU (% of one core) per 10k events/s = CPU seconds per 10k events x 100.
        let per_10k = cpu_s / delta.received.max(1.0) * 10_000.0 * 100.0;
        cpu_per_10k.push(per_10k);
        if delta.lost() == 0.0 && connects >= count as f64 * 0.99 {
            best_lossless = best_lossless.max(achieved);
        }
        rows.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            rate.map(thousands).unwrap_or_else(|| "unpaced".into()),
            thousands(achieved),
            thousands(connects),
            thousands(delta.received),
            fmt(delta.received / connects.max(1.0), 2),
            delta.lost(),
            fmt(cpu_s / busy_wall * 100.0, 0),
            fmt(per_10k, 1),
        ));
        let _ = events_per_s;
    }
    // Every step's storm is one page load of its own; they are stored after the quiet window.
    std::thread::sleep(Duration::from_millis(2000));
    let h = HealthCounters::of(&d.health()?);
    d.stop()?;
    let target = 50_000.0f64.min(ceiling);
    let load = util::loadavg();
    let md = format!(
        "### 5. Event pipeline: connect storms\n\n\
         `tracer bench-tool storm`: 2 threads connect to a loopback listener and reset each connection (no \
         TIME_WAIT), paced to a rate, {} s per step, one process per step. Ceiling of this machine without the \
         tracer (unpaced): **{} connects/s**. Events = records the daemon received (connect enter/exit, state \
         changes, closes, process events of the step; plus the shared machine's own). Target: lossless at ≥ \
         min(50,000, ceiling) = {} connects/s.\n\n\
         | rate asked | achieved connects/s | connects | events received | events/connect | lost | daemon CPU % of a core | daemon CPU % per 10k events/s |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n{rows}\n\
         Highest lossless rate: **{}** connects/s. Page loads stored: {}, dropped by the store: {}.\n\n\
         Load average after the benchmark: {load}.\n\n",
        ctx.plan.storm_step_s,
        thousands(ceiling),
        thousands(target),
        thousands(best_lossless),
        h.stored,
        h.store_dropped,
    );
    Ok(vec![Section {
        markdown: md,
        numbers: vec![
            ("ceiling".into(), ceiling),
            ("lossless rate".into(), best_lossless),
            ("cpu per 10k".into(), median(&cpu_per_10k)),
        ],
    }])
}

/// Benchmark 6.
pub fn history_bench(ctx: &Ctx, _which: &[u8]) -> Result<Vec<Section>> {
    let db_path = ctx.dir.join("history.db");
    let plan = ctx.plan.clone();
    // Target D's first half: page loads of one request each, into a database of their own.
    let one_path = ctx.dir.join("history-one-request.db");
    let one = ctx.rt.block_on(async {
        let pool = crate::history::db::open(&one_path).await?;
        let n = plan.history_ingest;
        let r = super::seed::seed_shaped(&pool, super::seed::Shape::OneRequest, n, n, 1000, 7).await;
        pool.close().await;
        r
    })?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", one_path.display()));
    }
    let token = crate::serve::web::auth::generate()?;
    let (seeded, addr, server) = ctx.rt.block_on(async {
        let pool = crate::history::db::open(&db_path).await?;
        let seeded = super::seed::seed(&pool, plan.history_ingest, plan.history_total, 1000, 7).await?;
        let health = crate::serve::web::Health {
            started: Instant::now(),
            db_path: db_path.clone(),
            probes: Value::Null,
            kernel: Value::Null,
            stats: Arc::new(crate::stream::StreamStats::default()),
            live: Arc::new(Mutex::new(Value::Null)),
        };
        let access = crate::serve::web::auth::Access::new(std::net::Ipv4Addr::LOCALHOST.into(), &token, None)?;
        let state = crate::serve::web::AppState::new(health, pool, Arc::new(crate::serve::web::LiveHub::new(crate::clock::WallOffset::now())))
            .with_access(access);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move { axum::serve(listener, crate::serve::web::app(state)).await });
        anyhow::Ok((seeded, addr, server))
    })?;
    let db_bytes = std::fs::metadata(&db_path).map(|m| m.len()).unwrap_or(0);
    let mut rng = fastrand::Rng::with_seed(11);
    let total = seeded.total.max(1);
    let kinds: Vec<(&str, Box<dyn Fn(&mut fastrand::Rng) -> String>)> = vec![
        ("list (newest 50)", Box::new(|_| "/api/page-loads".to_string())),
        ("list, page 20 (offset 1000)", Box::new(|_| "/api/page-loads?offset=1000".to_string())),
        (
            "filtered: host",
            Box::new(|r| format!("/api/page-loads?host={}", super::seed::HOSTS[r.usize(0..super::seed::HOSTS.len())])),
        ),
        ("filtered: process + status", Box::new(|_| "/api/page-loads?process=chromium&status=5xx".to_string())),
        ("filtered: status", Box::new(|_| "/api/page-loads?status=5xx".to_string())),
        ("filtered: failures", Box::new(|_| "/api/page-loads?status=error".to_string())),
        ("filtered: url substring", Box::new(|_| "/api/page-loads?url=news".to_string())),
        ("filtered: since 1d, by total_ms", Box::new(|_| "/api/page-loads?since=1d&sort=total_ms".to_string())),
        ("detail", Box::new(move |r| format!("/api/page-loads/{}", r.u64(1..=total)))),
        ("HAR export", Box::new(move |r| format!("/api/page-loads/{}/har", r.u64(1..=total)))),
    ];
    let mut rows = String::new();
    let mut numbers = vec![
        ("ingest page loads/s".into(), seeded.ingested as f64 / seeded.ingest_secs),
        ("ingest requests/s".into(), seeded.ingest_requests as f64 / seeded.ingest_secs),
        ("ingest 1-request page loads/s".into(), one.ingested as f64 / one.ingest_secs),
    ];
    // Each kind gets at most this long (but 5 requests at least): filtered lists of a large
    // database take ~0.6 s each, and 100 of each would hold the run for many minutes.
    let budget = Duration::from_secs_f64(ctx.plan.window_s * 5.0);
    for (name, path) in &kinds {
        let mut ms = Vec::new();
        let started = Instant::now();
        for _ in 0..ctx.plan.api_samples {
            if ms.len() >= 5 && started.elapsed() > budget {
                break;
            }
            let p = path(&mut rng);
            let t = Instant::now();
            let (status, _) = util::http_get(addr, &p, &token, Duration::from_secs(60))?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                bail!("GET {p}: {status}");
            }
        }
        let p95 = percentile(&ms, 95.0);
        rows.push_str(&format!(
            "| {name} | {} | {} | **{}** | {} |\n",
            ms.len(),
            fmt(median(&ms), 1),
            fmt(p95, 1),
            fmt(percentile(&ms, 100.0), 1)
        ));
        numbers.push((format!("{name} p95 ms"), p95));
    }
    server.abort();
    let _ = std::fs::remove_file(&db_path);
    let load = util::loadavg();
    let md = format!(
        "### 6. History at scale\n\n\
         Seeding (`tracer bench-tool seed`): {} synthetic page loads (browsers 5-60 requests over 3 hosts, \
         command-line clients 1-3, redirects, CNAME chains, TLS, 2% failures; {} requests in all) written through \
         `history::insert_page_loads` in batches of {}: **{} page loads/s** (**{} requests/s**); {} page loads of one \
         request each (curl, DNS + TLS + one GET), into a database of their own: **{} page loads/s**. The database was then \
         grown to {} page loads by copying those rows in SQL (ids offset, times moved back) in {} s; {:.1} GiB{}. \
         API through the dashboard's router on a loopback socket, up to {} requests of each kind (at most {} s \
         per kind), random ids/hosts. Targets: list \
         and detail p95 < 50 ms; ingest ≥ 20,000 1-request page loads/s and ≥ 100,000 requests/s of the mix.\n\n\
         | request | requests | p50 ms | p95 ms | max ms |\n| --- | --- | --- | --- | --- |\n{rows}\n\
         Load average after the benchmark: {load}.\n\n",
        thousands(seeded.ingested as f64),
        thousands(seeded.ingest_requests as f64),
        seeded.batch,
        thousands(seeded.ingested as f64 / seeded.ingest_secs),
        thousands(seeded.ingest_requests as f64 / seeded.ingest_secs),
        thousands(one.ingested as f64),
        thousands(one.ingested as f64 / one.ingest_secs),
        thousands(seeded.total as f64),
        fmt(seeded.grow_secs, 0),
        db_bytes as f64 / (1u64 << 30) as f64,
        seeded.capped_by_disk.as_ref().map(|c| format!(" (**capped by free disk space**: {c})")).unwrap_or_default(),
        ctx.plan.api_samples,
        budget.as_secs(),
    );
    Ok(vec![Section { markdown: md, numbers }])
}

/// Benchmark 7.
pub fn memory(ctx: &Ctx, _which: &[u8]) -> Result<Vec<Section>> {
    let d = Daemon::start(&ctx.exe, &ctx.dir, "memory", &[])?;
    std::thread::sleep(Duration::from_secs_f64(ctx.plan.memory_idle_s));
    let mib = |kib: u64| kib as f64 / 1024.0;
    let idle = mib(util::rss_kib(d.pid()).unwrap_or(0));
    let start = Instant::now();
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut connects = 0.0;
    let h0 = HealthCounters::of(&d.health()?);
    // One storm process per second: each is a client, and so a page load, of its own (an
    // always-busy client's page load never ends; see README, Known limits).
    let chunk = 1.0f64.min(ctx.plan.memory_s);
    while start.elapsed().as_secs_f64() < ctx.plan.memory_s {
        let (n, _) = storm_process(ctx, (ctx.plan.memory_rate * chunk) as u64, Some(ctx.plan.memory_rate))?;
        connects += n;
        samples.push((start.elapsed().as_secs_f64(), mib(util::rss_kib(d.pid()).unwrap_or(0))));
    }
    let h = drained(&d)?.minus(&h0);
    let after = mib(util::rss_kib(d.pid()).unwrap_or(0));
    d.stop()?;
    let max = samples.iter().map(|s| s.1).fold(idle, f64::max);
    let at_1min = samples.iter().find(|s| s.0 >= 60.0).map(|s| s.1).unwrap_or(f64::NAN);
    let end = samples.last().map(|s| s.1).unwrap_or(f64::NAN);
    let slope = if ctx.plan.memory_s > 90.0 {
        (end - at_1min) / ((samples.last().map(|s| s.0).unwrap_or(60.0) - 60.0) / 60.0)
    } else {
        f64::NAN
    };
    let series: Vec<String> =
        samples.iter().step_by((samples.len() / 12).max(1)).map(|(t, r)| format!("{t:.0}s {r:.0}")).collect();
    let load = util::loadavg();
    let md = format!(
        "### 7. Memory\n\n\
         Daemon RSS (`/proc/PID/status` VmRSS) after {} s idle, then under benchmark 5's load: connect storms of \
         {} connects/s in 1 s processes for {} s ({} connects, {} events received, {} lost). Targets: idle < 64 MiB, \
         under load < 256 MiB, flat after the first minute.\n\n\
         | idle MiB | max under load | at 1 min | at the end | after draining | growth after 1 min, MiB/min |\n\
         | --- | --- | --- | --- | --- | --- |\n\
         | **{}** | **{}** | {} | {} | {} | {} |\n\n\
         RSS over time (s MiB): {}.\n\n\
         Load average after the benchmark: {load}.\n\n",
        ctx.plan.memory_idle_s,
        thousands(ctx.plan.memory_rate),
        ctx.plan.memory_s,
        thousands(connects),
        thousands(h.received),
        h.lost(),
        fmt(idle, 1),
        fmt(max, 1),
        fmt(at_1min, 1),
        fmt(end, 1),
        fmt(after, 1),
        fmt(slope, 2),
        series.join(", "),
    );
    Ok(vec![Section { markdown: md, numbers: vec![("idle MiB".into(), idle), ("max MiB".into(), max)] }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_hooks_follow_the_daemons_attach_report() {
        let health = serde_json::json!({"probes": [
            {"family": "tcp_connect", "point": "tracepoint syscalls:sys_enter_connect", "variant": "tracepoint", "attached": true},
            {"family": "tcp_connect", "point": "tracepoint syscalls:sys_enter_connect", "variant": "tracepoint", "attached": true},
            {"family": "tls_openssl", "point": "uprobe SSL_write", "target": "/usr/lib/x86_64-linux-gnu/libssl.so.3", "variant": "uprobe", "attached": true},
            {"family": "tls_openssl", "point": "uretprobe SSL_read", "target": "/usr/lib/x86_64-linux-gnu/libssl.so.3", "variant": "uretprobe", "attached": true},
            {"family": "tls_openssl", "point": "uprobe SSL_free", "target": "/usr/lib/x86_64-linux-gnu/libssl.so.3", "variant": "uprobe", "attached": false},
            {"family": "tls_boringssl", "point": "uprobe SSL_write @ 0x9daaaa0", "target": "/usr/lib/chromium/chromium", "variant": "uprobe", "attached": true},
            {"family": "tls_fetcher", "point": "uprobe tracer_tls_write", "target": "/work/target/release/tracer", "variant": "uprobe", "attached": true},
            {"family": "tls_nss", "point": "uprobe SSL_ForceHandshake", "target": "/usr/lib/firefox-esr/libssl3.so", "variant": "uprobe", "attached": true}
        ]});
        assert_eq!(
            floor_hooks(&health, None),
            vec![
                "tracepoint:syscalls:sys_enter_connect",
                "uprobe:/usr/lib/x86_64-linux-gnu/libssl.so.3:SSL_write",
                "uretprobe:/usr/lib/x86_64-linux-gnu/libssl.so.3:SSL_read",
            ]
        );
        let own = floor_hooks(&health, Some(std::path::Path::new("/work/target/release/tracer")));
        assert!(own.contains(&"uprobe:/work/target/release/tracer:tracer_tls_write".to_string()) && own.len() == 4, "{own:?}");
        let p = floor_program(&floor_hooks(&health, None));
        assert!(p.starts_with("BEGIN { printf(\"READY\\n\"); }\n"));
        assert!(p.ends_with("SSL_read { @ = count(); }\n"));
        assert!(census_program(&["tracepoint:a:b".into()]).contains("@[comm, probe] = count();"));
    }

    #[test]
    fn modes_rotate_each_round() {
        assert_eq!(Mode::rotation(0), [Mode::Off, Mode::Floor, Mode::Tracer]);
        assert_eq!(Mode::rotation(1), [Mode::Floor, Mode::Tracer, Mode::Off]);
        assert_eq!(Mode::rotation(3), Mode::rotation(0));
    }
}
