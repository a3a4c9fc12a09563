//! Benchmark 4: untraced processes pay nothing (nginx's keep-alive throughput while the
//! daemon traces only `--comm curl`).
use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use serde_json::Value;

use super::{Mode, attached_hooks};
use crate::bench::{
    Ctx,
    Section,
    procs::{Daemon, Nginx, wrk},
    util::{self, fmt, median, thousands},
};

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

