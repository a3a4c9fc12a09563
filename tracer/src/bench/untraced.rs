//! Benchmark 9 (issue 20's target A): a process that makes no network calls pays nothing
//! for an unfiltered daemon. `dd if=/dev/zero of=/dev/null bs=1` (two system calls a byte)
//! and a small-files workload (read every file of a git work tree, then `git status` and
//! `git log --stat`) are timed with nothing attached, under the count-only floor on the
//! unfiltered daemon's hooks, under the unfiltered daemon (the variants this kernel gets:
//! no `syscalls:` tracepoint where the socket-layer hooks exist), and under the daemon forced
//! back to the syscall tracepoints (`--probe-variant dns=syscalls`: `tcp_connect` and
//! `tls_fd` follow). Interleaved round by round, the order rotating; medians; speed ratios
//! against nothing attached.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::{
    Ctx, Section,
    procs::{Bpftrace, Daemon},
    suites::{attached_hooks, floor_program},
    util::{self, fmt, median},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    Floor,
    Daemon,
    Syscalls,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Off, Mode::Floor, Mode::Daemon, Mode::Syscalls];

    fn rotation(round: usize) -> [Mode; 4] {
        let a = Mode::ALL;
        [a[round % 4], a[(round + 1) % 4], a[(round + 2) % 4], a[(round + 3) % 4]]
    }

    fn index(self) -> usize {
        Mode::ALL.iter().position(|m| *m == self).expect("a mode")
    }

    /// The daemon's extra arguments in this mode (None: no daemon).
    fn daemon_args(self) -> Option<&'static [&'static str]> {
        match self {
            Mode::Daemon => Some(&[]),
            Mode::Syscalls => Some(&["--probe-variant", "dns=syscalls"]),
            _ => None,
        }
    }
}

/// Bytes `dd bs=1` copies, per plan.
fn dd_count(plan: &str) -> u64 {
    match plan {
        "smoke" => 100_000,
        "quick" => 1_000_000,
        _ => 2_000_000,
    }
}

/// Files of the small-files work tree, per plan.
fn file_count(plan: &str) -> usize {
    match plan {
        "smoke" => 500,
        "quick" => 10_000,
        _ => 30_000,
    }
}

/// One run's cost: wall-clock seconds, and the CPU seconds (user + system) of the command
/// and every process it waited for.
#[derive(Debug, Clone, Copy)]
struct Cost {
    wall: f64,
    cpu: f64,
}

/// CPU seconds of this process's waited-for children so far.
fn children_cpu() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// One run of `cmd`; an error when it fails. CPU time is what the target is about on a shared
/// machine: wall-clock time also counts the waits for a CPU that other work holds (the
/// kernel matrix's guests kept both cores busy during the first runs), while the slow path of
/// the syscall tracepoints is CPU the command itself spends, in the kernel.
fn timed(mut cmd: Command, what: &str) -> Result<Cost> {
    let cpu0 = children_cpu();
    let start = Instant::now();
    let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().with_context(|| format!("starting {what}"))?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = children_cpu() - cpu0;
    if !status.success() {
        bail!("{what} failed: {status}");
    }
    Ok(Cost { wall, cpu })
}

fn dd(count: u64) -> Result<Cost> {
    let mut cmd = Command::new("dd");
    cmd.args(["if=/dev/zero", "of=/dev/null", "bs=1", &format!("count={count}")]);
    timed(cmd, "dd")
}

/// A git work tree of `n` small files (16 directories), committed.
fn small_files_tree(dir: &Path, n: usize) -> Result<PathBuf> {
    let root = dir.join("small-files");
    std::fs::create_dir_all(&root)?;
    for i in 0..n {
        let sub = root.join(format!("d{:02}", i % 16));
        if i < 16 {
            std::fs::create_dir_all(&sub)?;
        }
        std::fs::write(sub.join(format!("f{i}.txt")), format!("file {i}\n{}\n", "x".repeat(i % 200)))?;
    }
    let git = |args: &[&str]| -> Result<()> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["-c", "user.name=bench", "-c", "user.email=bench@bench.test", "-c", "commit.gpgsign=false"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("running git")?;
        if !out.status.success() {
            bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    git(&["init", "-q"])?;
    git(&["add", "-A"])?;
    git(&["commit", "-q", "-m", "small files"])?;
    Ok(root)
}

/// Read every file of the tree, then `git status` and `git log --stat`.
fn small_files(root: &Path) -> Result<Cost> {
    let mut cmd = Command::new("sh");
    cmd.current_dir(root).args([
        "-c",
        "find . -path ./.git -prune -o -type f -print0 | xargs -0 cat >/dev/null && git status --porcelain >/dev/null && git log --stat >/dev/null",
    ]);
    timed(cmd, "the small-files workload")
}

/// `syscalls:` tracepoints a daemon reports attached on `/api/health`.
fn syscall_tracepoints(health: &Value) -> usize {
    health
        .get("probes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("attached").and_then(Value::as_bool) == Some(true))
        .filter(|p| p.get("point").and_then(Value::as_str).is_some_and(|s| s.starts_with("tracepoint syscalls:")))
        .count()
}

/// The variant each family with a choice got, from `/api/health`.
fn variants(health: &Value) -> String {
    let mut out = Vec::new();
    for v in health.pointer("/kernel/variants").and_then(Value::as_array).into_iter().flatten() {
        let family = v.get("family").and_then(Value::as_str).unwrap_or("?");
        if !["tcp_connect", "dns", "tls_fd"].contains(&family) {
            continue;
        }
        let name = v.get("variant").and_then(Value::as_str).unwrap_or("none");
        out.push(format!("{family} {}", name.split(' ').next().unwrap_or(name)));
    }
    out.join(", ")
}

/// Benchmark 9.
pub fn untraced(ctx: &Ctx, _which: &[u8]) -> Result<Vec<Section>> {
    if util::find_program("dd").is_none() || util::find_program("git").is_none() {
        bail!("dd and git are needed (coreutils, git)");
    }
    let count = dd_count(ctx.plan.name);
    let files = file_count(ctx.plan.name);
    let load_start = util::loadavg();
    let tree = small_files_tree(&ctx.dir, files)?;
    // The floor counts the hits of the hooks the unfiltered daemon attaches on this kernel.
    let hooks = attached_hooks(ctx, &[], None)?;
    let mut dd_s: [Vec<Cost>; 4] = Default::default();
    let mut files_s: [Vec<Cost>; 4] = Default::default();
    let mut syscall_tps = [0usize; 4];
    let mut chosen = [String::new(), String::new(), String::new(), String::new()];
    let rounds = ctx.plan.rounds.max(1);
    for round in 0..rounds {
        for mode in Mode::rotation(round) {
            eprintln!("bench: untraced round {} mode {mode:?} (load {})", round + 1, util::loadavg());
            let floor = if mode == Mode::Floor { Some(Bpftrace::start(&floor_program(&hooks))?) } else { None };
            let daemon = match mode.daemon_args() {
                Some(args) => {
                    let d = Daemon::start(&ctx.exe, &ctx.dir, &format!("untraced-{round}-{}", mode.index()), args)?;
                    let h = d.health()?;
                    syscall_tps[mode.index()] = syscall_tracepoints(&h);
                    chosen[mode.index()] = variants(&h);
                    Some(d)
                }
                None => None,
            };
            // Settle: the daemon's start (BTF, libraries) is over when its API answers, but
            // its first rescans follow.
            std::thread::sleep(Duration::from_millis(500));
            dd_s[mode.index()].push(dd(count)?);
            files_s[mode.index()].push(small_files(&tree)?);
            if let Some(f) = floor {
                f.stop()?;
            }
            if let Some(d) = daemon {
                d.stop()?;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tree);
    let med = |v: &[Vec<Cost>; 4], m: Mode, cpu: bool| {
        median(&v[m.index()].iter().map(|c| if cpu { c.cpu } else { c.wall }).collect::<Vec<_>>())
    };
    let ratio_of = |v: &[Vec<Cost>; 4], m: Mode, cpu: bool| med(v, Mode::Off, cpu) / med(v, m, cpu);
    let ratio = |v: &[Vec<Cost>; 4], m: Mode| ratio_of(v, m, true);
    let load_end = util::loadavg();
    let row = |name: &str, v: &[Vec<Cost>; 4]| {
        format!(
            "| {name} | {} | {} | {} | **{}** | {} | {} / {} / {} |\n",
            fmt(med(v, Mode::Off, true), 3),
            fmt(med(v, Mode::Off, false), 3),
            fmt(ratio(v, Mode::Floor), 3),
            fmt(ratio(v, Mode::Daemon), 3),
            fmt(ratio(v, Mode::Syscalls), 3),
            fmt(ratio_of(v, Mode::Floor, false), 3),
            fmt(ratio_of(v, Mode::Daemon, false), 3),
            fmt(ratio_of(v, Mode::Syscalls, false), 3),
        )
    };
    let md = format!(
        "### 9. Untraced work pays nothing (target A)\n\n\
         `dd if=/dev/zero of=/dev/null bs=1 count={count}` and a small-files workload ({files} files in a git work tree: \
         read them all, then `git status` and `git log --stat`), timed with nothing attached, under the count-only bpftrace \
         floor on the {} hooks the unfiltered daemon attaches, under the unfiltered daemon ({}; {} `syscalls:` tracepoints \
         attached), and under the daemon forced to the syscall tracepoints (`--probe-variant dns=syscalls`: {}; {} attached); \
         interleaved, medians of {rounds} runs each. Ratios: the CPU time (user + system, the workload's processes) \
         with nothing attached over that in the mode, i.e. speed per CPU second; the wall-clock ratios beside them also count \
         the waits for a CPU that other work holds. Target: ≥ 0.98 under the daemon.\n\n\
         | workload | CPU s off | wall s off | floor ratio | daemon ratio | syscall tracepoints ratio | wall-clock: floor / daemon / syscalls |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n{}{}\n\
         Load average at the start: {load_start}; at the end: {load_end}.\n\n",
        hooks.len(),
        chosen[Mode::Daemon.index()],
        syscall_tps[Mode::Daemon.index()],
        chosen[Mode::Syscalls.index()],
        syscall_tps[Mode::Syscalls.index()],
        row("dd bs=1", &dd_s),
        row("small files + git", &files_s),
    );
    eprint!("{md}");
    Ok(vec![Section {
        markdown: md,
        numbers: vec![
            ("dd daemon ratio".into(), ratio(&dd_s, Mode::Daemon)),
            ("dd floor ratio".into(), ratio(&dd_s, Mode::Floor)),
            ("dd syscall tracepoints ratio".into(), ratio(&dd_s, Mode::Syscalls)),
            ("small files daemon ratio".into(), ratio(&files_s, Mode::Daemon)),
            ("dd daemon wall-clock ratio".into(), ratio_of(&dd_s, Mode::Daemon, false)),
        ],
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_rotate_through_every_order_position() {
        for round in 0..4 {
            let r = Mode::rotation(round);
            let mut idx: Vec<usize> = r.iter().map(|m| m.index()).collect();
            assert_eq!(r[0], Mode::ALL[round]);
            idx.sort();
            assert_eq!(idx, vec![0, 1, 2, 3]);
        }
        assert_eq!(Mode::Syscalls.daemon_args(), Some(&["--probe-variant", "dns=syscalls"][..]));
        assert!(Mode::Off.daemon_args().is_none() && Mode::Floor.daemon_args().is_none());
    }

    #[test]
    fn syscall_tracepoints_and_variants_are_read_from_health() {
        let h = serde_json::json!({
            "probes": [
                {"point": "tracepoint syscalls:sys_enter_write", "attached": true},
                {"point": "tracepoint syscalls:sys_enter_read", "attached": false},
                {"point": "tp_btf sock:sock_send_length", "attached": true},
            ],
            "kernel": {"variants": [
                {"family": "dns", "variant": "sock_length (tp_btf ...)"},
                {"family": "tcp_state", "variant": "tracepoint (...)"},
            ]}
        });
        assert_eq!(syscall_tracepoints(&h), 1);
        assert_eq!(variants(&h), "dns sock_length");
    }
}
