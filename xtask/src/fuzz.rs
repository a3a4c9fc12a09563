//! `cargo xtask fuzz`: the cargo-fuzz targets of tracer/fuzz (README, "Fuzzing").
//!
//! Builds every target once with `cargo +nightly fuzz build` (release, AddressSanitizer), then
//! runs each for a fixed time. New inputs go to a
//! scratch corpus under target/fuzz/corpus/, so a run never changes the committed corpus in
//! tracer/fuzz/corpus/ (which it reads); `--merge` adds the scratch inputs that reach new code
//! to the committed corpus. A crash fails the run; libFuzzer writes the input that crashed to
//! tracer/fuzz/artifacts/TARGET/ and prints how to reproduce it.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::util;

/// The targets (the `[[bin]]`s of tracer/fuzz/Cargo.toml) and the largest input libFuzzer
/// makes for each: a ring-buffer record carries up to 16 KiB of plaintext after its 72-byte
/// head; a connection transcript gets room for several messages.
pub const TARGETS: &[(&str, usize)] = &[
    ("dns", 4096),
    ("tls_hello", 4096),
    ("tls_wire", 8192),
    ("http", 8192),
    ("url", 4096),
    ("redact", 4096),
    ("har", 8192),
    ("events", 16384 + 128),
    // Records of datagrams and Initial plaintexts: a handshake's worth (a 1.5 KB ClientHello
    // in two Initials, the server's answer) fits.
    ("quic", 8192),
    // Records of decrypted packet payloads both ways: a connection's control and QPACK streams
    // and a few requests fit.
    ("h3", 8192),
];

/// Seconds per target of `--smoke` (the part of `cargo xtask test`): 10 targets, about 110 s
/// after the build.
pub const SMOKE_SECONDS: u64 = 10;
/// Seconds per target of a plain `cargo xtask fuzz`.
pub const DEFAULT_SECONDS: u64 = 60;

/// cargo-fuzz, installed with `cargo install --locked` when missing.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

fn fuzz_crate_dir() -> PathBuf {
    util::workspace_root().join("tracer").join("fuzz")
}

fn fuzz_target_dir() -> PathBuf {
    util::target_dir().join("fuzz")
}

/// `cargo +nightly fuzz ...` in tracer/ (cargo-fuzz finds tracer/fuzz from there), with its
/// own target directory: sanitizer builds share nothing with the normal ones.
fn cargo_fuzz(subcommand: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(util::workspace_root().join("tracer"));
    cmd.args(["+nightly", "fuzz", subcommand]);
    cmd
}

/// Installs cargo-fuzz when `cargo fuzz` is not there.
pub fn ensure_cargo_fuzz() -> Result<()> {
    let installed = || {
        Command::new("cargo")
            .args(["+nightly", "fuzz", "--version"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(version) = installed() {
        eprintln!("fuzz: {version:<20} ok");
        return Ok(());
    }
    eprintln!("fuzz: cargo-fuzz not found; installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    util::run(Command::new("cargo").args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
    ]))
    .context("installing cargo-fuzz failed")?;
    match installed() {
        Some(version) => {
            eprintln!("fuzz: {version:<20} installed");
            Ok(())
        }
        None => bail!("`cargo install cargo-fuzz` succeeded but `cargo +nightly fuzz` still does not run"),
    }
}

/// What one target's run did.
#[derive(Debug, PartialEq)]
pub struct RunReport {
    pub target: String,
    pub seconds: u64,
    pub runs: Option<u64>,
    pub ok: bool,
}

/// Options of `cargo xtask fuzz`.
pub struct FuzzArgs {
    pub target: Option<String>,
    pub seconds: u64,
    pub merge: bool,
}

pub fn fuzz(args: FuzzArgs) -> Result<()> {
    let targets: Vec<(&str, usize)> = match &args.target {
        Some(t) => vec![*TARGETS.iter().find(|(name, _)| name == t).with_context(|| {
            format!(
                "unknown fuzz target `{t}`; the targets are {}",
                TARGETS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )
        })?],
        None => TARGETS.to_vec(),
    };
    ensure_cargo_fuzz()?;
    let started = Instant::now();
    build()?;
    eprintln!("fuzz: built in {:.0} s", started.elapsed().as_secs_f64());

    let mut reports = Vec::new();
    for (target, max_len) in &targets {
        let report = run_one(target, *max_len, args.seconds)?;
        let ok = report.ok;
        reports.push(report);
        if ok && args.merge {
            merge(target, *max_len)?;
        }
    }
    eprintln!("\nfuzz: summary ({} s per target, {:.0} s in all)", args.seconds, started.elapsed().as_secs_f64());
    for r in &reports {
        eprintln!("{}", summary_line(r));
    }
    let failed: Vec<&str> = reports.iter().filter(|r| !r.ok).map(|r| r.target.as_str()).collect();
    if !failed.is_empty() {
        bail!(
            "fuzz target(s) failed: {} (the input is in tracer/fuzz/artifacts/TARGET/; reproduce with \
             `cd tracer && cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/FILE`)",
            failed.join(", ")
        );
    }
    Ok(())
}

pub fn summary_line(r: &RunReport) -> String {
    format!(
        "  {:<10} {:>4} s  {:>10} runs  {}",
        r.target,
        r.seconds,
        r.runs.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
        if r.ok { "no crash" } else { "FAILED" }
    )
}

fn build() -> Result<()> {
    let mut cmd = cargo_fuzz("build");
    cmd.arg("--target-dir").arg(fuzz_target_dir());
    util::run(&mut cmd).context("building the fuzz targets failed")
}

fn run_one(target: &str, max_len: usize, seconds: u64) -> Result<RunReport> {
    let scratch = fuzz_target_dir().join("corpus").join(target);
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let committed = fuzz_crate_dir().join("corpus").join(target);
    eprintln!("\nfuzz: {target} for {seconds} s (corpus {}, new inputs to {})", committed.display(), scratch.display());
    let mut cmd = cargo_fuzz("run");
    cmd.arg(target)
        .arg("--target-dir")
        .arg(fuzz_target_dir())
        .arg(&scratch)
        .arg(&committed)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={max_len}"))
        // A slow input is a hang to report, not something to wait 20 minutes for.
        .arg("-timeout=20")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("could not start `{}`", util::cmdline(&cmd)))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut runs = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading libFuzzer's output")?;
        if let Some(n) = executed_units(&line) {
            runs = Some(n);
        }
        // libFuzzer's progress lines (`#1234 NEW cov: ...`) would be hundreds per target.
        if !is_progress_line(&line) {
            eprintln!("{line}");
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    Ok(RunReport { target: target.to_string(), seconds, runs, ok: status.success() })
}

/// Adds the scratch corpus's inputs that reach new code to the committed corpus.
fn merge(target: &str, max_len: usize) -> Result<()> {
    let scratch = fuzz_target_dir().join("corpus").join(target);
    let committed = fuzz_crate_dir().join("corpus").join(target);
    let mut cmd = cargo_fuzz("run");
    cmd.arg(target)
        .arg("--target-dir")
        .arg(fuzz_target_dir())
        .arg(&committed)
        .arg(&scratch)
        .arg("--")
        .arg("-merge=1")
        .arg(format!("-max_len={max_len}"));
    util::run(&mut cmd).with_context(|| format!("merging new inputs of {target} into {}", committed.display()))
}

/// `stat::number_of_executed_units: N` (with -print_final_stats=1), or `Done N runs in S second(s)`.
pub fn executed_units(line: &str) -> Option<u64> {
    if let Some(rest) = line.strip_prefix("stat::number_of_executed_units:") {
        return rest.trim().parse().ok();
    }
    let rest = line.strip_prefix("Done ")?;
    let (n, tail) = rest.split_once(' ')?;
    tail.starts_with("runs in ").then(|| n.parse().ok()).flatten()
}

/// libFuzzer's status lines: `#123\tNEW    cov: ...`, `#4096\tpulse  cov: ...`.
pub fn is_progress_line(line: &str) -> bool {
    line.strip_prefix('#')
        .and_then(|rest| rest.split_once('\t'))
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_the_fuzz_crates_bins() {
        let manifest = std::fs::read_to_string(fuzz_crate_dir().join("Cargo.toml")).unwrap();
        let mut bins: Vec<&str> = manifest
            .split("[[bin]]")
            .skip(1)
            .filter_map(|section| {
                let line = section.lines().find(|l| l.trim_start().starts_with("name"))?;
                Some(line.split('"').nth(1)?)
            })
            .collect();
        let mut ours: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
        bins.sort();
        ours.sort();
        assert_eq!(bins, ours);
        for (name, _) in TARGETS {
            let corpus = fuzz_crate_dir().join("corpus").join(name);
            assert!(
                std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0) > 0,
                "no committed corpus in {}",
                corpus.display()
            );
        }
    }

    #[test]
    fn reads_exec_counts() {
        assert_eq!(executed_units("stat::number_of_executed_units: 123456"), Some(123456));
        assert_eq!(executed_units("Done 98765 runs in 11 second(s)"), Some(98765));
        assert_eq!(executed_units("Done merging"), None);
        assert_eq!(executed_units("#2\tINITED cov: 10 ft: 10 corp: 1/1b exec/s: 0 rss: 30Mb"), None);
    }

    #[test]
    fn progress_lines_are_hidden_and_the_rest_shown() {
        assert!(is_progress_line("#4096\tpulse  cov: 2337 ft: 9010 corp: 700/80Kb"));
        assert!(is_progress_line("#12\tNEW    cov: 100 ft: 120 corp: 5/100b"));
        assert!(!is_progress_line("==1234==ERROR: AddressSanitizer: heap-buffer-overflow"));
        assert!(!is_progress_line("#x\tweird"));
        assert!(!is_progress_line("thread '<unnamed>' panicked at src/decode/http/h2.rs:10:5:"));
    }

    #[test]
    fn summary_names_failures() {
        let r = RunReport { target: "http".into(), seconds: 10, runs: Some(5), ok: false };
        assert!(summary_line(&r).contains("FAILED"));
        let r = RunReport { target: "dns".into(), seconds: 10, runs: None, ok: true };
        let line = summary_line(&r);
        assert!(line.contains("no crash") && line.contains('?'), "{line}");
    }
}
