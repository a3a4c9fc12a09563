//! Benchmark 5: the event pipeline under connect storms at rising rates.
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{drained, storm_process};
use crate::bench::{
    Ctx,
    Section,
    procs::{Daemon, HealthCounters},
    util::{self, fmt, median, thousands},
};

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

