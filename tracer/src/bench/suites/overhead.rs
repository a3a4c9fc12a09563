//! Benchmarks 1 and 2: the cost per hook hit against the count-only floor, and saturation
//! (nginx HTTPS under wrk).
use std::{
    collections::BTreeMap,
    io::Write as _,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{Mode, attached_hooks, census_program, floor_program};
use crate::bench::{
    Ctx,
    Section,
    procs::{Bpftrace, Daemon, HealthCounters, Nginx, parse_bpftrace_counts, wrk},
    tools::{self, DnsServer, StormListener},
    util::{self, fmt, median, thousands},
};

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

