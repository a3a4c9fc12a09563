//! `cargo xtask <command>`: developer and CI tasks for the tracer workspace.
//!
//! - `setup [--packages]`: nightly toolchain + rust-src, bpf-linker (built against nightly's
//!   libLLVM), tracefs; with `--packages` also the Debian packages of the tests and benchmarks.
//! - `build [--release]`: setup, then `cargo build -p tracer`.
//! - `run [-- ARGS...]`: setup, release build, then exec `tracer run ARGS...` as root.
//! - `test [-- EXTRA...]`: setup and the tests' Debian packages, then `cargo test ...
//!   -- --test-threads=1` as root; under CI=true the kernel matrix follows.
//! - `fuzz [TARGET] [--seconds N] [--smoke] [--merge]`: the cargo-fuzz targets of tracer/fuzz.
//! - `kernels [--only 6.1,5.10] [--no-host]`: the kernel matrix: the root suites on Debian's
//!   5.10, 6.1 and 6.12 kernels under qemu, then on the host's kernel (see `kernels`).
//! - `bench [--smoke|--quick] [--only N,...]`: setup and the benchmarks' Debian packages,
//!   build, then `tracer bench` as root (results appended to BENCHMARKS.md; the smoke run
//!   writes target/bench-smoke.md).
//! - `sqlx [--check]`: refresh (or check) `.sqlx/`, the data of the compile-checked SQL
//!   queries, after changing a query or adding a migration. `test` checks it under CI=true.
//! - `browsers-table`: README.md's Browsers table from the browser tests' results.
//!
//! The Debian packages are one list, in `packages.rs`; only the missing ones are installed
//! (apt-get, as root; without root the task prints the command and fails).
//!
//! The host build uses the caller's toolchain (stable); only tracer/build.rs (aya-build)
//! switches to nightly, for the eBPF crate.

mod browsers_table;
mod fuzz;
mod kernels;
mod packages;
mod setup;
mod sqlx;
mod util;

use std::ffi::OsString;
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Developer tasks for the tracer workspace"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the build needs (nightly + rust-src, bpf-linker) and mount tracefs. Idempotent.
    ///
    /// With --packages, also the Debian packages that the tests and the benchmarks drive
    /// (browsers, Prometheus, nginx, wrk, bpftrace, ...; `cargo xtask test` and `cargo xtask
    /// bench` install theirs anyway). Only missing ones are installed, with apt-get, as root;
    /// without root the missing ones and the command that installs them are printed.
    Setup {
        /// Also the Debian packages of the tests and the benchmarks.
        #[arg(long)]
        packages: bool,
    },
    /// Setup, then build the daemon (`cargo build -p tracer`).
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Setup, build in release mode, then run `tracer run ARGS...` as root (sudo when needed).
    Run {
        /// Arguments for `tracer run` (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Setup, install the Debian packages the tests drive, then run every test, one at a time,
    /// as root when possible.
    ///
    /// EXTRA goes to `cargo test`; arguments after a second `--` go to the test binaries,
    /// e.g. `cargo xtask test -- -p tracer dns -- --nocapture`. Under CI=true the kernel
    /// matrix (`cargo xtask kernels --no-host`) runs after the tests.
    Test {
        /// Extra `cargo test` arguments (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, build in release mode, then start the test lab (`tracer lab ARGS...`) as root:
    /// a network namespace with DNS for shop.test and HTTP(S) origins; prints how to run a
    /// client inside it.
    Lab {
        /// Arguments for `tracer lab` (after `--`), e.g. `-- --dns-delay-ms 50`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Build the cargo-fuzz targets (tracer/fuzz, nightly) and run each for a fixed time.
    ///
    /// Installs cargo-fuzz when missing. New inputs go to target/fuzz/corpus/TARGET; the
    /// committed corpus (tracer/fuzz/corpus/TARGET) is only read, unless --merge. A crash
    /// fails the run and leaves its input in tracer/fuzz/artifacts/TARGET/.
    Fuzz {
        /// One target (dns, tls_hello, tls_wire, http, url, har, events); all when omitted.
        target: Option<String>,
        /// Seconds per target [default: 60; 10 with --smoke].
        #[arg(long)]
        seconds: Option<u64>,
        /// The short run of `cargo xtask test`: 10 s per target.
        #[arg(long)]
        smoke: bool,
        /// Add the new inputs that reach new code to the committed corpus.
        #[arg(long)]
        merge: bool,
    },
    /// The kernel matrix: the root suites that load probes (kernel, filters, page loads by
    /// curl and wget in the lab, faults) on Debian's own kernels, 5.10, 6.1 and 6.12, booted
    /// under qemu with virtme-ng, then on the host's kernel. One line per kernel.
    ///
    /// Fetches each kernel by name with apt through a private package list, installs
    /// virtme-ng with pip into a venv under target/kernels/, uses KVM where it works and TCG
    /// otherwise. Root only. Logs: target/kernels/run/RELEASE/.
    Kernels {
        /// Only these kernels (5.10, 6.1, 6.12; comma-separated).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Skip the host's own kernel.
        #[arg(long)]
        no_host: bool,
        /// Guests booted at once (default: one per core; the cores are shared among them).
        #[arg(long)]
        jobs: Option<usize>,
        /// Only these suites (variants, kernel, filters, page_loads; comma-separated): a
        /// quicker check of one part while working on it. The matrix is all of them.
        #[arg(long, value_delimiter = ',')]
        suites: Vec<String>,
    },
    /// Setup, install the Debian packages the benchmarks drive (nginx, wrk, bpftrace, ...),
    /// build the daemon, then run the benchmarks as root (see BENCHMARKS.md).
    ///
    /// The full run takes 30-45 minutes and appends its numbers to BENCHMARKS.md. `--smoke`
    /// runs each benchmark for seconds with tiny sizes on the debug build (CI; no timing
    /// assertions) and writes target/bench-smoke.md instead.
    Bench {
        /// Every benchmark briefly; checks only that each produces numbers.
        #[arg(long)]
        smoke: bool,
        /// Shorter durations and sizes.
        #[arg(long, conflicts_with = "smoke")]
        quick: bool,
        /// Only these benchmarks (1-9, comma-separated).
        #[arg(long, value_delimiter = ',')]
        only: Vec<u8>,
        /// Keep the work directory (daemon logs, databases).
        #[arg(long)]
        keep: bool,
    },
    /// Rewrite README.md's "Browsers" table from the browser tests' results
    /// (target/tmp/browser-table/, written by each passing test of tests/browsers/).
    BrowsersTable,
    /// Refresh .sqlx/, the data the compile-checked SQL queries (`sqlx::query!` ...) are checked
    /// against, so that builds need no database: run it after changing a query or adding a
    /// migration, and commit .sqlx/.
    ///
    /// Applies every migration to a scratch database (sqlite3), then builds the tracer crate
    /// against it; each query macro writes its file. With --check, fails unless .sqlx/ is
    /// up to date (`cargo xtask test` runs that under CI=true).
    Sqlx {
        /// Compare a fresh copy with .sqlx/ instead of replacing it.
        #[arg(long)]
        check: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Setup { packages } => setup::setup().and_then(|()| {
            if packages { packages::ensure(&[packages::User::Tests, packages::User::Bench, packages::User::Kernels]) } else { Ok(()) }
        }),
        Cmd::Build { release } => build(release),
        Cmd::Run { args } => run_as_root("run", args),
        Cmd::Lab { args } => run_as_root("lab", args),
        Cmd::Test { args } => test(args),
        Cmd::Fuzz { target, seconds, smoke, merge } => {
            let default = if smoke { fuzz::SMOKE_SECONDS } else { fuzz::DEFAULT_SECONDS };
            setup::setup().and_then(|()| {
                fuzz::fuzz(fuzz::FuzzArgs { target, seconds: seconds.unwrap_or(default), merge })
            })
        }
        Cmd::Bench { smoke, quick, only, keep } => bench(&BenchOptions { smoke, quick, only, keep }),
        Cmd::Kernels { only, no_host, jobs, suites } => kernels::kernels(&kernels::Options { only, no_host, jobs, suites }),
        Cmd::BrowsersTable => browsers_table::browsers_table(&util::workspace_root()),
        Cmd::Sqlx { check } => packages::ensure(&[packages::User::QueryData]).and_then(|()| sqlx::sqlx(check)),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

/// `cargo <args>` in the workspace root, with the caller's toolchain.
fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(util::workspace_root());
    cmd
}

fn build(release: bool) -> Result<()> {
    setup::setup()?;
    cargo_build(release)
}

fn cargo_build(release: bool) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["build", "-p", "tracer"]);
    if release {
        cmd.arg("--release");
    }
    util::run(&mut cmd)
}

/// Build the release daemon and exec `tracer SUBCOMMAND ARGS` as root.
fn run_as_root(subcommand: &str, args: Vec<OsString>) -> Result<()> {
    setup::setup()?;
    cargo_build(true)?;
    let tracer = util::target_dir().join("release").join("tracer");
    if !util::is_executable(&tracer) {
        bail!(
            "the build succeeded but {} does not exist",
            tracer.display()
        );
    }
    let mut run_args = vec![OsString::from(subcommand)];
    run_args.extend(args);

    let mut cmd = if util::is_root()? {
        let mut cmd = Command::new(&tracer);
        cmd.args(&run_args);
        cmd
    } else {
        let sudo = util::find_in_path("sudo")
            .context("needs root (CAP_BPF+CAP_PERFMON): run as root or install sudo")?;
        util::sudo_command(&sudo, tracer.as_os_str(), &run_args)
    };
    // exec: Ctrl-C / SIGTERM reach the daemon directly and its exit code is ours.
    Err(util::exec(&mut cmd))
}

struct BenchOptions {
    smoke: bool,
    quick: bool,
    only: Vec<u8>,
    keep: bool,
}

/// The `tracer bench` arguments for these options: the profile to build (the smoke run uses
/// the debug build the tests already made, the others release), where the results go, and
/// the command line to record with them.
fn bench_args(o: &BenchOptions, root: &std::path::Path, target: &std::path::Path) -> (bool, Vec<OsString>) {
    let release = !o.smoke;
    let mut line = String::from("cargo xtask bench");
    let mut args: Vec<OsString> = vec!["bench".into()];
    if o.smoke {
        line.push_str(" --smoke");
        args.push("--smoke".into());
    }
    if o.quick {
        line.push_str(" --quick");
        args.push("--quick".into());
    }
    if !o.only.is_empty() {
        let only = o.only.iter().map(u8::to_string).collect::<Vec<_>>().join(",");
        line.push_str(&format!(" --only {only}"));
        args.push("--only".into());
        args.push(only.into());
    }
    if o.keep {
        args.push("--keep".into());
    }
    let out = if o.smoke { target.join("bench-smoke.md") } else { root.join("BENCHMARKS.md") };
    args.push("--out".into());
    args.push(out.into_os_string());
    args.push("--command".into());
    args.push(line.into());
    args.push("--profile".into());
    args.push(if release { "release" } else { "debug" }.into());
    (release, args)
}

fn bench(o: &BenchOptions) -> Result<()> {
    setup::setup()?;
    packages::ensure(&[packages::User::Bench])?;
    let target = util::target_dir();
    let (release, args) = bench_args(o, &util::workspace_root(), &target);
    cargo_build(release)?;
    let tracer = target.join(if release { "release" } else { "debug" }).join("tracer");
    let mut cmd = if util::is_root()? {
        let mut cmd = Command::new(&tracer);
        cmd.args(&args);
        cmd
    } else {
        let sudo = util::find_in_path("sudo")
            .context("the benchmarks need root (eBPF, network namespaces): run as root or install sudo")?;
        util::sudo_command(&sudo, tracer.as_os_str(), &args)
    };
    Err(util::exec(&mut cmd))
}

/// Whether `cargo xtask test` runs the kernel matrix after the tests: under CI=true only
/// (it boots emulated kernels, which would take a local run past its 20-minute budget;
/// locally it is `cargo xtask kernels`). The fuzz smoke is not in CI: on a fresh clone it
/// installs cargo-fuzz and builds the tracer a second time with the sanitizer (25 minutes
/// of CI's run of 2026-12-07, which the matrix's 28 would have taken past 90); the normal
/// test run replays every committed corpus input through the same checks instead
/// (tracer/tests/fuzz_corpus.rs), and `cargo xtask fuzz --smoke` searches.
fn wants_ci_extras(_extra: &[String], ci: bool) -> bool {
    ci
}

fn test(extra: Vec<String>) -> Result<()> {
    setup::setup()?;
    packages::ensure(&[packages::User::Tests])?;
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let ci_extras = wants_ci_extras(&extra, ci);
    if ci {
        // The committed query data must be what the queries and migrations give (a stale
        // file still builds, with the types of an older schema).
        sqlx::sqlx(true)?;
    }
    let (cargo_args, harness_args) = test_args(&extra);
    let mut args: Vec<OsString> = vec!["test".into()];
    args.extend(cargo_args.iter().map(OsString::from));
    args.push("--".into());
    args.extend(harness_args.iter().map(OsString::from));

    let mut cmd = if util::is_root()? {
        let mut cmd = cargo();
        cmd.args(&args);
        cmd
    } else if let Some(sudo) = util::find_in_path("sudo") {
        // Build as the calling user first so target/ does not fill with root-owned files;
        // the root run below then only executes the tests.
        eprintln!(
            "xtask: kernel tests need root; building as this user, then running the tests via sudo"
        );
        let mut build = cargo();
        build.arg("test").args(&cargo_args).arg("--no-run");
        util::run(&mut build)?;
        let mut cmd = util::sudo_command(&sudo, "cargo".as_ref(), &args);
        cmd.current_dir(util::workspace_root());
        cmd
    } else {
        eprintln!(
            "xtask: warning: not root and sudo is not installed: tests that load eBPF programs \
             (CAP_BPF+CAP_PERFMON) will be skipped"
        );
        let mut cmd = cargo();
        cmd.args(&args);
        cmd
    };
    if !ci_extras {
        // exec: cargo's exit code is ours, and Ctrl-C reaches cargo and the tests.
        return Err(util::exec(&mut cmd));
    }
    let tests = util::status(&mut cmd)?;
    // The kernel matrix runs even after a failed test run, so that one CI run reports both.
    // The host's kernel is the test run above.
    eprintln!("\nxtask: kernel matrix ({}; the host's kernel is the run above)", kernels::CI_KERNELS.join(", "));
    let matrix = kernels::kernels(&kernels::Options { only: kernels::CI_KERNELS.iter().map(|s| s.to_string()).collect(), no_host: true, jobs: None, suites: Vec::new() });
    if let Err(e) = &matrix {
        eprintln!("xtask: error: {e:#}");
    }
    if !tests.success() {
        bail!("`{}` failed ({tests})", util::cmdline(&cmd));
    }
    matrix
}

/// Splits `cargo xtask test -- EXTRA` into arguments for `cargo test` and for the test
/// binaries (those after a `--` in EXTRA), and makes the tests run one at a time: kernel
/// tests attach probes and must not overlap.
fn test_args(extra: &[String]) -> (Vec<String>, Vec<String>) {
    let (cargo_args, mut harness_args) = match extra.iter().position(|a| a == "--") {
        Some(i) => (extra[..i].to_vec(), extra[i + 1..].to_vec()),
        None => (extra.to_vec(), Vec::new()),
    };
    if !harness_args.iter().any(|a| a.starts_with("--test-threads")) {
        harness_args.push("--test-threads=1".into());
    }
    (cargo_args, harness_args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn test_args_default_is_one_thread() {
        assert_eq!(test_args(&[]), (vec![], s(&["--test-threads=1"])));
    }

    #[test]
    fn test_args_split_cargo_and_harness() {
        assert_eq!(
            test_args(&s(&["-p", "tracer", "dns", "--", "--nocapture"])),
            (
                s(&["-p", "tracer", "dns"]),
                s(&["--nocapture", "--test-threads=1"])
            )
        );
        assert_eq!(
            test_args(&s(&["dns"])),
            (s(&["dns"]), s(&["--test-threads=1"]))
        );
    }

    #[test]
    fn matrix_in_ci_only() {
        assert!(!wants_ci_extras(&[], false));
        assert!(!wants_ci_extras(&s(&["-p", "tracer", "dns"]), false));
        assert!(wants_ci_extras(&s(&["-p", "tracer", "dns"]), true));
    }

    #[test]
    fn test_args_keep_explicit_thread_count() {
        assert_eq!(
            test_args(&s(&["--", "--test-threads=4"])),
            (vec![], s(&["--test-threads=4"]))
        );
    }

    #[test]
    fn bench_args_pick_profile_and_output() {
        let root = std::path::Path::new("/w");
        let target = std::path::Path::new("/w/target");
        let smoke = BenchOptions { smoke: true, quick: false, only: vec![], keep: false };
        let (release, args) = bench_args(&smoke, root, target);
        assert!(!release);
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            s(&["bench", "--smoke", "--out", "/w/target/bench-smoke.md", "--command", "cargo xtask bench --smoke", "--profile", "debug"])
        );
        let full = BenchOptions { smoke: false, quick: true, only: vec![1, 6], keep: true };
        let (release, args) = bench_args(&full, root, target);
        assert!(release);
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            s(&[
                "bench", "--quick", "--only", "1,6", "--keep", "--out", "/w/BENCHMARKS.md", "--command",
                "cargo xtask bench --quick --only 1,6", "--profile", "release"
            ])
        );
        use clap::Parser as _;
        let cli = Cli::try_parse_from(["xtask", "bench", "--smoke", "--only", "3,8"]).unwrap();
        assert!(matches!(cli.command, Cmd::Bench { smoke: true, ref only, .. } if only == &vec![3, 8]));
        assert!(Cli::try_parse_from(["xtask", "bench", "--smoke", "--quick"]).is_err());
    }

    #[test]
    fn cli_parses_trailing_args() {
        use clap::Parser as _;
        let cli = Cli::try_parse_from(["xtask", "test", "--", "-p", "tracer", "--", "--nocapture"])
            .unwrap();
        match cli.command {
            Cmd::Test { args } => assert_eq!(args, s(&["-p", "tracer", "--", "--nocapture"])),
            _ => panic!("not test"),
        }
        let cli = Cli::try_parse_from(["xtask", "run", "--", "--help"]).unwrap();
        match cli.command {
            Cmd::Run { args } => assert_eq!(args, vec![OsString::from("--help")]),
            _ => panic!("not run"),
        }
        let cli = Cli::try_parse_from(["xtask", "fuzz", "http", "--seconds", "300"]).unwrap();
        match cli.command {
            Cmd::Fuzz { target, seconds, smoke, merge } => {
                assert_eq!((target.as_deref(), seconds, smoke, merge), (Some("http"), Some(300), false, false))
            }
            _ => panic!("not fuzz"),
        }
        let cli = Cli::try_parse_from(["xtask", "fuzz", "--smoke"]).unwrap();
        assert!(matches!(cli.command, Cmd::Fuzz { target: None, seconds: None, smoke: true, .. }));
        let cli = Cli::try_parse_from(["xtask", "build", "--release"]).unwrap();
        assert!(matches!(cli.command, Cmd::Build { release: true }));
        let cli = Cli::try_parse_from(["xtask", "setup", "--packages"]).unwrap();
        assert!(matches!(cli.command, Cmd::Setup { packages: true }));
        let cli = Cli::try_parse_from(["xtask", "setup"]).unwrap();
        assert!(matches!(cli.command, Cmd::Setup { packages: false }));
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
