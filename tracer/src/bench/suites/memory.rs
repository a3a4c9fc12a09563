//! Benchmark 7: the daemon's RSS idle and under the connect storm.
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{drained, storm_process};
use crate::bench::{
    Ctx,
    Section,
    procs::{Daemon, HealthCounters},
    util::{self, fmt, thousands},
};

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

