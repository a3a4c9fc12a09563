//! `tracer bench` (hidden; `cargo xtask bench` builds the daemon and runs it as root): the
//! benchmarks of issue 7. Each prints its figures and appends them, with the machine, the
//! date, the command and the load average, to a Markdown file (BENCHMARKS.md).
//!
//! Method: the modes (nothing, the count-only bpftrace floor, the tracer) are measured in
//! the same run, interleaved round by round (the order rotates), and compared by medians
//! and ratios. The numbers are only as quiet as the machine: the load average is recorded
//! with every section.
//!
//! - 1 and 2 ([`overhead`]): cost per event against the floor, and saturation with nginx/wrk.
//! - 3 and 8 ([`realistic`]): 1,000 requests/s of new TLS connections with a DNS lookup
//!   each; added CPU, and the latency from a page load's last byte to the live feed.
//! - 4 ([`filter`]): nginx's speed while only curl is traced.
//! - 5 ([`pipeline`]): connect storms at rising rates: the highest rate without loss.
//! - 6 ([`history_bench`]): a seeded database of page loads, ingest rate and API latency.
//! - 7 ([`memory`]): the daemon's RSS idle and under the connect storm.
//! - 9 ([`untraced`]): issue 20's target A, `dd bs=1` and small files under an unfiltered
//!   daemon (socket-layer hooks) and under the syscall tracepoints.
pub mod bench_tool;
pub mod load;
pub mod procs;
pub mod seed;
pub mod tools;
pub mod util;

mod suites;
mod untraced;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

pub use suites::{filter, history_bench, memory, overhead, pipeline, realistic};
pub use untraced::untraced;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Run every benchmark briefly with tiny sizes; checks only that each produces numbers.
    #[arg(long)]
    pub smoke: bool,
    /// Shorter runs: fewer rounds, shorter windows, 200,000 page loads, 2 minutes of memory.
    #[arg(long, conflicts_with = "smoke")]
    pub quick: bool,
    /// Run only these benchmarks (1-9, comma-separated; 1 and 2 run together, as do 3 and 8).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=9))]
    pub only: Vec<u8>,
    /// Append the results to this Markdown file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The command line recorded with the results.
    #[arg(long, default_value = "tracer bench")]
    pub command: String,
    /// The build profile of this binary, recorded with the results.
    #[arg(long, default_value = "release")]
    pub profile: String,
    /// Keep the work directory (databases, daemon logs) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
}

/// Sizes and durations of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: &'static str,
    /// Interleaved rounds of off / floor / on.
    pub rounds: usize,
    /// Seconds per workload and mode in benchmark 1.
    pub window_s: f64,
    pub wrk_s: u64,
    pub realistic_s: f64,
    pub realistic_rate: f64,
    pub storm_step_s: f64,
    pub storm_ceiling_count: u64,
    pub history_ingest: u64,
    pub history_total: u64,
    pub api_samples: usize,
    pub memory_s: f64,
    pub memory_idle_s: f64,
    pub memory_rate: f64,
}

impl Plan {
    pub fn of(args: &BenchArgs) -> Plan {
        if args.smoke {
            Plan {
                name: "smoke",
                rounds: 1,
                window_s: 0.5,
                wrk_s: 1,
                realistic_s: 3.0,
                realistic_rate: 200.0,
                storm_step_s: 0.5,
                storm_ceiling_count: 3000,
                history_ingest: 2000,
                history_total: 2000,
                api_samples: 10,
                memory_s: 8.0,
                memory_idle_s: 2.0,
                memory_rate: 2000.0,
            }
        } else if args.quick {
            Plan {
                name: "quick",
                rounds: 2,
                window_s: 2.0,
                wrk_s: 3,
                realistic_s: 8.0,
                realistic_rate: 1000.0,
                storm_step_s: 1.5,
                storm_ceiling_count: 40_000,
                history_ingest: 20_000,
                history_total: 200_000,
                api_samples: 50,
                memory_s: 120.0,
                memory_idle_s: 5.0,
                memory_rate: 10_000.0,
            }
        } else {
            Plan {
                name: "full",
                rounds: 3,
                window_s: 4.0,
                wrk_s: 4,
                realistic_s: 15.0,
                realistic_rate: 1000.0,
                storm_step_s: 2.0,
                storm_ceiling_count: 100_000,
                history_ingest: 50_000,
                history_total: 1_000_000,
                api_samples: 100,
                memory_s: 600.0,
                memory_idle_s: 10.0,
                memory_rate: 10_000.0,
            }
        }
    }
}

/// What the benchmarks share.
pub struct Ctx {
    pub plan: Plan,
    /// This executable: the daemon under test and the workload tools.
    pub exe: PathBuf,
    pub dir: PathBuf,
    pub rt: tokio::runtime::Runtime,
}

/// One benchmark's result: Markdown for BENCHMARKS.md, and the headline numbers (which the
/// smoke run checks for being numbers at all).
#[derive(Debug, Default)]
pub struct Section {
    pub markdown: String,
    pub numbers: Vec<(String, f64)>,
}

fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())))
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse::<f64>().ok()))
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(f64::NAN);
    let kernel = crate::procfs::kernel_release();
    format!("{cpu}, {cores} cores, {mem_gib:.0} GiB RAM, kernel {kernel}")
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "?".into())
}

fn versions() -> String {
    let v = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .output()
            .ok()
            .map(|o| {
                let t = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
                t.lines().next().unwrap_or("").trim().to_string()
            })
            .unwrap_or_else(|| "missing".into())
    };
    format!("{}; {}; {}", v("bpftrace", "--version"), v("nginx", "-v"), v("wrk", "-v").split(" Copyright").next().unwrap_or(""))
}

fn append(out: Option<&Path>, text: &str) -> Result<()> {
    print!("{text}");
    let _ = std::io::stdout().flush();
    if let Some(path) = out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `tracer bench`.
pub fn main(args: BenchArgs) -> Result<()> {
    let plan = Plan::of(&args);
    crate::lab::check_privileges().context("the benchmarks load eBPF programs and start namespaces")?;
    let exe = std::env::current_exe().context("finding this executable")?;
    let dir = std::env::temp_dir().join(format!("tracer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let rt = tokio::runtime::Runtime::new().context("starting a runtime")?;
    let ctx = Ctx { plan, exe, dir: dir.clone(), rt };
    let want = |n: u8| args.only.is_empty() || args.only.contains(&n);
    let out = args.out.as_deref();
    append(
        out,
        &format!(
            "\n## {} — `{}` ({}, {} build)\n\nMachine: {}. Tools: {}. Load average at start: {}.\n\n",
            now_rfc3339(),
            args.command,
            ctx.plan.name,
            args.profile,
            machine_line(),
            versions(),
            util::loadavg()
        ),
    )?;
    type Bench = fn(&Ctx, &[u8]) -> Result<Vec<Section>>;
    let benches: [(&[u8], &str, Bench); 7] = [
        (&[1, 2], "1+2 overhead", overhead),
        (&[3, 8], "3+8 realistic load and live latency", realistic),
        (&[4], "4 filter", filter),
        (&[5], "5 event pipeline", pipeline),
        (&[6], "6 history at scale", history_bench),
        (&[7], "7 memory", memory),
        (&[9], "9 untraced work (target A)", untraced),
    ];
    let mut failures = Vec::new();
    for (numbers, name, bench) in benches {
        let selected: Vec<u8> = numbers.iter().copied().filter(|n| want(*n)).collect();
        if selected.is_empty() {
            continue;
        }
        eprintln!("bench: {name} (load {})", util::loadavg());
        match bench(&ctx, &selected) {
            Ok(sections) => {
                for s in sections {
                    append(out, &s.markdown)?;
                    let bad: Vec<&String> = s.numbers.iter().filter(|(_, v)| !v.is_finite()).map(|(k, _)| k).collect();
                    if !bad.is_empty() {
                        failures.push(format!("{name}: no number for {bad:?}"));
                    }
                    if s.numbers.is_empty() {
                        failures.push(format!("{name}: produced no numbers"));
                    }
                }
            }
            Err(e) => {
                append(out, &format!("### {name}\n\nFAILED: {e:#}\n\n"))?;
                failures.push(format!("{name}: {e:#}"));
            }
        }
    }
    append(out, &format!("Load average at the end: {}.\n", util::loadavg()))?;
    if args.keep {
        eprintln!("bench: work directory kept: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if !failures.is_empty() {
        bail!("{} benchmark(s) failed or produced no numbers:\n  {}", failures.len(), failures.join("\n  "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct T {
        #[command(flatten)]
        b: BenchArgs,
    }

    #[test]
    fn plans_scale_with_the_mode() {
        let smoke = Plan::of(&T::parse_from(["t", "--smoke"]).b);
        let quick = Plan::of(&T::parse_from(["t", "--quick"]).b);
        let full = Plan::of(&T::parse_from(["t"]).b);
        assert_eq!(full.history_total, 1_000_000);
        assert_eq!(full.memory_s, 600.0);
        assert!(smoke.history_total < quick.history_total && quick.history_total < full.history_total);
        assert!(smoke.memory_s < quick.memory_s && quick.memory_s < full.memory_s);
        assert!(T::try_parse_from(["t", "--smoke", "--quick"]).is_err());
        assert_eq!(T::parse_from(["t", "--only", "1,6"]).b.only, vec![1, 6]);
        assert!(T::try_parse_from(["t", "--only", "10"]).is_err());
        assert_eq!(T::parse_from(["t", "--only", "9"]).b.only, vec![9]);
    }
}
