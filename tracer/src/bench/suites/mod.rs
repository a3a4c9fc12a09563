//! The benchmarks themselves (see the module documentation of `bench`), a file each:
//! `overhead.rs` (1 and 2), `realistic.rs` (3 and 8), `filter.rs` (4), `pipeline.rs` (5),
//! `history.rs` (6) and `memory.rs` (7); benchmark 9 is `bench/untraced.rs`. What more than one
//! of them uses is here: the modes and their rotation, the count-only floor's hooks and
//! program, and the connect storm run as a process of its own.
use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::{
    Ctx,
    procs::{self, Bpftrace, Daemon, HealthCounters},
};

pub mod filter;
pub mod history;
pub mod memory;
pub mod overhead;
pub mod pipeline;
pub mod realistic;

pub use filter::filter;
pub use history::history_bench;
pub use memory::memory;
pub use overhead::overhead;
pub use pipeline::pipeline;
pub use realistic::realistic;

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
