//! Benchmarks 3 and 8: the realistic load (1,000 requests/s of new TLS connections with a
//! DNS lookup each), its added CPU, and the latency from a page load's last byte to the live feed.
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    net::{SocketAddr, TcpStream},
    sync::{Arc, Mutex, atomic::{AtomicBool, Ordering}},
    time::{Duration, Instant},
};

use anyhow::Result;
use serde_json::Value;

use super::{Mode, attached_hooks};
use crate::bench::{
    Ctx,
    Section,
    procs::{Daemon, HealthCounters, Nginx},
    tools::DnsServer,
    util::{self, fmt, median, percentile},
};

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
    // Daemon CPU seconds per request made, in µs (target C).
    let mut daemon_us_per_request = Vec::new();
    // The load's own processes: the workers, nginx and the DNS server thread. Unlike
    // /proc/stat, other work on the shared machine is not in it; the probes' in-kernel time
    // is, as it runs in the processes that hit the hooks.
    let mut workload: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let workload_cpu_s = || {
        let ticks: u64 = nginx.pids().into_iter().filter_map(util::proc_cpu_ticks).sum::<u64>()
            + util::thread_cpu_ticks(dns.tid.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(0);
        util::children_cpu_s() + ticks as f64 / tck
    };
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
            let w0 = workload_cpu_s();
            let t = Instant::now();
            let res = crate::bench::load::run_load(&ctx.exe, dns.addr, nginx.port, rate, secs, &ctx.dir)?;
            let wall = t.elapsed().as_secs_f64();
            let (b1, _) = util::cpu_busy_ticks()?;
            let w1 = workload_cpu_s();
            if let Some(f) = floor {
                f.stop()?;
            }
            let key = mode.key();
            busy.entry(key).or_default().push((b1 - b0) as f64 / tck / wall);
            workload.entry(key).or_default().push((w1 - w0) / wall);
            achieved.entry(key).or_default().push(res.rate());
            failed += res.counts.failed;
            if let (Some(d), Some(d0)) = (&daemon, d0) {
                let d1 = util::proc_cpu_ticks(d.pid()).unwrap_or(d0);
                daemon_cpu.push((d1 - d0) as f64 / tck / wall);
                if res.counts.requests > 0 {
                    daemon_us_per_request.push((d1 - d0) as f64 / tck / res.counts.requests as f64 * 1e6);
                }
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
    // Target B by the load's own processes and the daemon, which other work does not move.
    let daemon_median = median(&daemon_cpu);
    let own_added = (m(&workload, "on") + daemon_median - m(&workload, "off")) * 100.0;
    let own_floor_added = (m(&workload, "floor") - m(&workload, "off")) * 100.0;
    let per_request_us = median(&daemon_us_per_request);
    if which.contains(&3) {
        let md = format!(
            "### 3. Realistic load: {} requests/s, each a DNS lookup and a new TLS connection\n\n\
             The load generator (`tracer bench-tool load-worker`, rustls through the traced probe points) runs in \
             worker processes, each doing page loads of 20 requests and then staying quiet for 600 ms; DNS on \
             127.0.77.x:53, nginx on loopback. {} interleaved rounds of {} s (nothing, the count-only floor, the \
             tracer), medians. The floor is a bpftrace program that only counts hits of the {} hooks the daemon \
             attaches and this load reaches (syscall and socket tracepoints, nginx's OpenSSL, the generator's probe \
             points). CPU of all processes from `/proc/stat` (this includes the other developers' work on the shared \
             machine, hence the daemon's own CPU beside it), and, unmoved by other work, that of the load's own \
             processes (the workers, nginx, the DNS server thread: the probes' in-kernel time is charged to them) \
             plus the daemon's. Targets (issue 20): B, added CPU ≤ 8% of one core; C, the daemon's CPU per request \
             ≤ 25 µs.\n\n\
             | | off | count-only floor | tracer on |\n| --- | --- | --- | --- |\n\
             | requests/s achieved | {} | {} | {} |\n\
             | all processes, cores busy | {} | {} | {} |\n\
             | added CPU, % of one core | | {} | **{}** |\n\
             | the load's processes (+ the daemon), cores busy | {} | {} | {} |\n\
             | added CPU by them, % of one core (B) | | {} | **{}** |\n\
             | daemon's own CPU, % of one core | | | {} |\n\
             | daemon's CPU per request, µs (C) | | | **{}** |\n\
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
            fmt(m(&workload, "off"), 3),
            fmt(m(&workload, "floor"), 3),
            fmt(m(&workload, "on") + daemon_median, 3),
            fmt(own_floor_added, 1),
            fmt(own_added, 1),
            fmt(daemon_median * 100.0, 1),
            fmt(per_request_us, 1),
        );
        out.push(Section {
            markdown: md,
            numbers: vec![
                ("added CPU %".into(), added),
                ("floor added CPU %".into(), floor_added),
                ("daemon CPU %".into(), daemon_median * 100.0),
                ("added CPU by the load and the daemon %".into(), own_added),
                ("floor added CPU by the load %".into(), own_floor_added),
                ("daemon CPU per request us".into(), per_request_us),
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
