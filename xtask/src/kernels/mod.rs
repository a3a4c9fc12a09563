//! `cargo xtask kernels [--only 6.1,5.10]`: the kernel matrix.
//!
//! The root suites that load probes run on Debian's own kernels, booted under qemu: 5.10
//! (Debian 11), 6.1 (Debian 12) and 6.12 (Debian 13) ([`debian::MATRIX`]), fetched by name
//! with apt through a private package list ([`debian`]) and booted with virtme-ng, the host's
//! file system shared read-only ([`guest`]); then on the host's own kernel, directly. Each
//! kernel gets one line, `kernel 6.1.0-50-amd64: N passed, 0 failed`, with the suites that
//! ran, how qemu ran it (KVM, or TCG and why not KVM), and its start-up report's probe
//! families ([`results`]).
//!
//! Which suites run where ([`SUITES`]): the kernel and filter tests and the page loads of
//! curl and wget in the lab run on every kernel. The accuracy suite compares the trace's
//! timings with the clients' own clocks; under emulation those are meaningless, so it runs on
//! the host only (`cargo xtask test`). Browsers run on the host only: under TCG a Chromium
//! page load takes minutes, past what CI can give (see README "Kernels").

pub mod debian;
pub mod guest;
pub mod results;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::{packages, setup, util};
use debian::{MATRIX, PrivateApt, Series};
use guest::GuestSuite;
use results::SuiteResult;

/// Where a suite runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    /// In every guest, and on the host's kernel.
    EveryKernel,
    /// On the host only, and why.
    HostOnly(&'static str),
}

/// A suite of the matrix: tests of one test binary (`cargo test --test NAME`).
#[derive(Debug)]
pub struct Suite {
    pub name: &'static str,
    pub test_target: &'static str,
    /// The tests of that binary it runs (exact names); empty: all of them.
    pub tests: &'static [&'static str],
    /// Tests of it left out under emulation, and why (they run on the host's kernel).
    pub skip: &'static [(&'static str, &'static str)],
    pub runs: Where,
}

pub const SUITES: &[Suite] = &[
    Suite { name: "variants", test_target: "variants", tests: &[], skip: &[], runs: Where::EveryKernel },
    Suite {
        name: "kernel",
        test_target: "kernel",
        tests: &[],
        skip: &[(
            "a_non_blocking_client_reports_each_handshake_once",
            "it needs wrk to make 20 TLS connections within 1 s, a rate, not a kernel feature",
        )],
        runs: Where::EveryKernel,
    },
    Suite { name: "filters", test_target: "filters", tests: &[], skip: &[], runs: Where::EveryKernel },
    Suite { name: "page_loads", test_target: "browsers", tests: &["curl_page_load", "wget_page_load"], skip: &[], runs: Where::EveryKernel },
    Suite {
        name: "faults",
        test_target: "faults",
        tests: &[],
        skip: &[],
        // Its reasons come from the error reports, which `variants` checks on every kernel
        // under each variant the kernel can run.
        runs: Where::HostOnly(
            "its nine curls run at once, bounded by 15 s: under emulation one took longer (6.1, TCG)",
        ),
    },
    Suite {
        name: "accuracy",
        test_target: "accuracy",
        tests: &[],
        skip: &[],
        runs: Where::HostOnly("timing tolerances of a few ms mean nothing under emulation"),
    },
];

/// The kernels `cargo xtask test` runs under CI=true (after the test run on the host's
/// kernel). One kernel's suites took about 20 minutes under TCG here (README "Kernels"), and
/// the rest of `.ci/run` about 35: all three guests would take CI to some 100 minutes, past
/// its 90-minute limit, so CI runs the two oldest, which differ most from the host's 6.18
/// (issue 19's rule), and 6.12 is `cargo xtask kernels --only 6.12`.
pub const CI_KERNELS: &[&str] = &["5.10", "6.1"];

/// One test's bound inside a guest (the slowest under TCG here: the filters' untraced curl,
/// 30 s of its own bound and some 5 min with its daemon's start and stop).
const TEST_LIMIT: Duration = Duration::from_secs(10 * 60);
/// A whole guest's bound: boot, the start-up report and every suite (about 25 min under TCG).
const GUEST_LIMIT: Duration = Duration::from_secs(60 * 60);

pub struct Options {
    /// Only these series (`6.1`, `5.10`, `6.12`); empty: all of them.
    pub only: Vec<String>,
    /// Skip the host's own kernel (its suites ran already, e.g. in `cargo xtask test`).
    pub no_host: bool,
    /// Guests booted at once (default: one per core, at most one per kernel); the cores are
    /// shared out among them.
    pub jobs: Option<usize>,
    /// Only these suites, by [`Suite::name`]; empty: every suite that runs in every kernel.
    pub suites: Vec<String>,
}

/// Guests at once and vCPUs each, for `kernels` guests on `cores` host cores. Under TCG a
/// guest's work is mostly one thread at a time (a test waits for its daemon's start: the
/// verifier, reading symbol tables), so two one-vCPU guests side by side on two cores do
/// about twice the work of one two-vCPU guest.
pub fn share_cores(kernels: usize, cores: usize, jobs: Option<usize>) -> (usize, usize) {
    let jobs = jobs.unwrap_or(cores).clamp(1, kernels.max(1));
    (jobs, (cores / jobs).max(1))
}

/// The matrix: prints one line per kernel; fails when any suite failed on any kernel.
pub fn kernels(opts: &Options) -> Result<()> {
    if !util::is_root()? {
        bail!("the kernel matrix boots kernels and loads probes: run it as root");
    }
    setup::setup()?;
    packages::ensure(&[packages::User::Tests, packages::User::Kernels])?;
    let chosen = choose(&opts.only)?;
    let root = util::target_dir().join("kernels");
    std::fs::create_dir_all(&root)?;

    let guest_suites: Vec<&Suite> = SUITES.iter().filter(|s| s.runs == Where::EveryKernel).collect();
    for wanted in &opts.suites {
        if !guest_suites.iter().any(|s| s.name == wanted.as_str()) {
            let known: Vec<&str> = guest_suites.iter().map(|s| s.name).collect();
            bail!("--suites {wanted}: not a suite of the matrix (it has {})", known.join(", "));
        }
    }
    let guest_suites: Vec<&Suite> = guest_suites.into_iter().filter(|s| opts.suites.is_empty() || opts.suites.iter().any(|w| w == s.name)).collect();
    let binaries = build_tests(&guest_suites)?;
    let tracer = util::target_dir().join("debug").join("tracer");
    let suites: Vec<GuestSuite> = guest_suites
        .iter()
        .map(|s| GuestSuite {
            name: s.name.into(),
            binary: binaries.iter().find(|(t, _)| t == s.test_target).map(|(_, b)| b.clone()).expect("built above"),
            tests: s.tests.iter().map(|t| t.to_string()).collect(),
            skip: s.skip.iter().map(|(t, _)| t.to_string()).collect(),
        })
        .collect();

    // The host's start-up report first: it also fills the BoringSSL cache the guests get.
    let host_report = startup_report(tracer.as_path(), &root.join("host-report.db"));
    let mut lines = Vec::new();
    let mut all_ok = true;
    if !chosen.is_empty() {
        let apt = PrivateApt::new(&root.join("apt"))?;
        apt.update()?;
        let virtme = guest::virtme(&root.join("venv"))?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (jobs, cpus) = share_cores(chosen.len(), cores, opts.jobs);
        eprintln!("kernels: {} guest(s) at a time, {cpus} vCPU(s) each ({cores} cores here)", jobs);
        // Fetching and unpacking one after the other (one apt), booting side by side.
        let mut prepared = Vec::new();
        for series in &chosen {
            prepared.push((series, prepare_guest(&apt, series, &root, &tracer, &suites)));
        }
        let mut outcomes: Vec<(&Series, Result<KernelRun>)> = Vec::new();
        for batch in prepared.chunks(jobs) {
            let done: Vec<(&Series, Result<KernelRun>)> = std::thread::scope(|scope| {
                let running: Vec<_> = batch
                    .iter()
                    .map(|(series, guest)| {
                        let virtme = &virtme;
                        (*series, scope.spawn(move || match guest {
                            Ok(g) => boot_guest(virtme, g, cpus),
                            Err(e) => Err(anyhow::anyhow!("{e:#}")),
                        }))
                    })
                    .collect();
                running.into_iter().map(|(series, h)| (series, h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the guest's thread panicked"))))).collect()
            });
            outcomes.extend(done);
        }
        for (series, outcome) in outcomes {
            match outcome {
                Ok(k) => {
                    all_ok &= k.results.iter().all(SuiteResult::ok);
                    println!("{}", k.describe());
                    lines.push(k);
                }
                Err(e) => {
                    all_ok = false;
                    let line = format!("kernel {} ({}): 0 passed, 1 failed: {e:#}", series.series, series.debian);
                    println!("{line}");
                }
            }
        }
    }
    if !opts.no_host {
        let k = run_host(&root, &suites, host_report)?;
        all_ok &= k.results.iter().all(SuiteResult::ok);
        println!("{}", k.describe());
        lines.push(k);
    }
    let host_only: Vec<String> =
        SUITES.iter().filter_map(|s| if let Where::HostOnly(why) = s.runs { Some(format!("{} ({why})", s.name)) } else { None }).collect();
    println!("\nkernel matrix:");
    for k in &lines {
        println!("  {}", results::kernel_line(&k.release, &k.results));
    }
    println!("  suites in every kernel: {}", suites.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "));
    println!("  on the host only (cargo xtask test): {}", host_only.join("; "));
    for s in SUITES {
        for (t, why) in s.skip {
            println!("  {}: {t} runs on the host only: {why}", s.name);
        }
    }
    if !all_ok {
        bail!("the kernel matrix failed (logs under {})", root.join("run").display());
    }
    Ok(())
}

/// The series `--only` names, in matrix order; all of them by default.
pub fn choose(only: &[String]) -> Result<Vec<Series>> {
    if only.is_empty() {
        return Ok(MATRIX.to_vec());
    }
    for o in only {
        if !MATRIX.iter().any(|s| s.series == o) {
            let known: Vec<&str> = MATRIX.iter().map(|s| s.series).collect();
            bail!("--only {o}: not a kernel of the matrix (it has {})", known.join(", "));
        }
    }
    Ok(MATRIX.iter().filter(|s| only.iter().any(|o| o == s.series)).copied().collect())
}

/// A kernel's run: what ran and how it went.
struct KernelRun {
    release: String,
    how: String,
    results: Vec<SuiteResult>,
    report: String,
    /// The slowest tests, `SUITE TEST SECONDS`, slowest first (empty on the host).
    slowest: Vec<(String, String, u64)>,
}

impl KernelRun {
    fn describe(&self) -> String {
        let mut s = format!("{} ({})", results::kernel_line(&self.release, &self.results), self.how);
        for r in &self.results {
            let secs = r.seconds.map(|s| format!(", {s} s")).unwrap_or_default();
            let status = match r.status {
                Some(0) => String::new(),
                Some(124) | Some(137) => format!(", a test stopped at its time bound ({} min)", TEST_LIMIT.as_secs() / 60),
                Some(c) => format!(", exit {c}"),
                None => ", did not run to the end".into(),
            };
            s.push_str(&format!("\n    {}: {} passed, {} failed{secs}{status}", r.suite, r.passed, r.failed));
            for f in &r.failures {
                s.push_str(&format!("\n      FAILED {f}"));
            }
        }
        if !self.slowest.is_empty() {
            let list: Vec<String> = self.slowest.iter().map(|(suite, test, secs)| format!("{suite}::{test} {secs} s")).collect();
            s.push_str(&format!("\n    slowest: {}", list.join(", ")));
        }
        let families: Vec<&str> = self.report.lines().filter(|l| l.starts_with("  ") && (l.contains(" ok ") || l.contains("FAIL") || l.contains("part") || l.contains("not attached") || l.contains("variant"))).collect();
        if !families.is_empty() {
            s.push_str("\n    start-up report (tracer run):");
            for l in families {
                s.push_str(&format!("\n    {l}"));
            }
        }
        s
    }
}

/// A guest ready to boot: its kernel unpacked, its script written, how qemu will run it.
struct PreparedGuest {
    series: Series,
    image: PathBuf,
    release: String,
    accel: guest::Accel,
    out: PathBuf,
    script: PathBuf,
    names: Vec<String>,
}

fn prepare_guest(apt: &PrivateApt, series: &Series, root: &Path, tracer: &Path, suites: &[GuestSuite]) -> Result<PreparedGuest> {
    let package = apt.resolve(series)?;
    eprintln!("kernels: {} ({}): {package}", series.series, series.debian);
    let kernel = apt.unpack(&package, root)?;
    let out = root.join("run").join(&kernel.release);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let accel = guest::probe_kvm(&kernel.image, &out);
    guest::seed_cache(&out)?;
    let script = out.join("guest.sh");
    std::fs::write(&script, guest::script(&out, &util::workspace_root(), tracer, suites, TEST_LIMIT))?;
    Ok(PreparedGuest {
        series: *series,
        image: kernel.image.clone(),
        release: kernel.release.clone(),
        accel,
        out,
        script,
        names: suites.iter().map(|s| s.name.clone()).collect(),
    })
}

fn boot_guest(virtme: &Path, g: &PreparedGuest, cpus: usize) -> Result<KernelRun> {
    eprintln!("kernels: booting {} under {}, {cpus} vCPU(s)", g.release, g.accel.describe());
    let start = Instant::now();
    guest::boot(virtme, &g.image, &g.accel, cpus, &g.out, &g.script, GUEST_LIMIT)?;
    let names: Vec<&str> = g.names.iter().map(String::as_str).collect();
    let k = KernelRun {
        release: g.release.clone(),
        how: format!("{}, {}, {cpus} vCPU(s), in {} s", g.series.debian, g.accel.describe(), start.elapsed().as_secs()),
        results: results::collect(&g.out, &names),
        report: std::fs::read_to_string(g.out.join("report.txt")).unwrap_or_default(),
        slowest: results::slowest_tests(&std::fs::read_to_string(g.out.join("tests")).unwrap_or_default(), 5),
    };
    eprintln!("kernels: {} done in {} s", g.release, start.elapsed().as_secs());
    Ok(k)
}

/// The start-up report of `tracer run -- true` on this kernel (stderr up to its exit).
fn startup_report(tracer: &Path, db: &Path) -> String {
    let _ = std::fs::remove_file(db);
    Command::new(tracer)
        .args(["run", "--db"])
        .arg(db)
        .args(["--listen", "127.0.0.1:0", "--", "true"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_else(|e| format!("tracer run could not start: {e}"))
}

/// The same suites on the host's kernel, directly.
fn run_host(root: &Path, suites: &[GuestSuite], report: String) -> Result<KernelRun> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim().to_string();
    let out = root.join("run").join(format!("host-{release}"));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let start = Instant::now();
    let mut status = String::new();
    for s in suites {
        let log = std::fs::File::create(out.join(format!("{}.log", s.name)))?;
        let mut cmd = Command::new(&s.binary);
        cmd.current_dir(util::workspace_root().join("tracer")).arg("--test-threads=1");
        if !s.tests.is_empty() {
            cmd.arg("--exact").args(&s.tests);
        }
        // The host's kernel runs every test: what is skipped in guests is skipped for emulation.
        let t = Instant::now();
        let code = cmd.stdout(log.try_clone()?).stderr(log).status().with_context(|| format!("running {}", s.binary.display()))?;
        status.push_str(&format!("{} {} {}s\n", s.name, code.code().unwrap_or(-1), t.elapsed().as_secs()));
    }
    std::fs::write(out.join("status"), status)?;
    let names: Vec<&str> = suites.iter().map(|s| s.name.as_str()).collect();
    Ok(KernelRun {
        release,
        how: format!("the host's kernel, in {} s", start.elapsed().as_secs()),
        results: results::collect(&out, &names),
        report,
        slowest: Vec::new(),
    })
}

/// Builds the test binaries of `suites` (and the daemon they drive) and returns each test
/// target's executable.
fn build_tests(suites: &[&Suite]) -> Result<Vec<(String, PathBuf)>> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(util::workspace_root()).args(["test", "-p", "tracer", "--no-run", "--message-format=json-render-diagnostics"]);
    for s in suites {
        cmd.args(["--test", s.test_target]);
    }
    let json = util::output(&mut cmd).context("building the matrix's test binaries")?;
    let found = test_executables(&json);
    for s in suites {
        if !found.iter().any(|(t, _)| t == s.test_target) {
            bail!("cargo built no executable for --test {}", s.test_target);
        }
    }
    Ok(found)
}

/// `(test target, executable)` of every test artifact in cargo's JSON messages.
pub fn test_executables(json_lines: &str) -> Vec<(String, PathBuf)> {
    json_lines
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\"") && l.contains("\"kind\":[\"test\"]"))
        .filter_map(|l| {
            let name = string_after(l, "\"target\":{")?.split("\"name\":\"").nth(1)?.split('"').next()?.to_string();
            let exe = l.split("\"executable\":\"").nth(1)?.split('"').next()?;
            Some((name, PathBuf::from(exe)))
        })
        .collect()
}

fn string_after<'a>(s: &'a str, marker: &str) -> Option<&'a str> {
    s.find(marker).map(|i| &s[i + marker.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_share_the_cores() {
        assert_eq!(share_cores(2, 2, None), (2, 1), "two kernels on two cores: side by side, one vCPU each");
        assert_eq!(share_cores(3, 2, None), (2, 1));
        assert_eq!(share_cores(1, 2, None), (1, 2), "one kernel gets both cores");
        assert_eq!(share_cores(3, 2, Some(1)), (1, 2));
        assert_eq!(share_cores(2, 1, None), (1, 1));
        assert_eq!(share_cores(0, 4, None), (1, 4));
    }

    #[test]
    fn only_picks_series_of_the_matrix_in_order() {
        let all = choose(&[]).unwrap();
        assert_eq!(all.iter().map(|s| s.series).collect::<Vec<_>>(), vec!["5.10", "6.1", "6.12"]);
        let two = choose(&["6.1".into(), "5.10".into()]).unwrap();
        assert_eq!(two.iter().map(|s| s.series).collect::<Vec<_>>(), vec!["5.10", "6.1"]);
        let err = choose(&["4.19".into()]).unwrap_err().to_string();
        assert!(err.contains("--only 4.19") && err.contains("5.10, 6.1, 6.12"), "{err}");
    }

    #[test]
    fn test_executables_come_from_cargo_json() {
        let json = concat!(
            r#"{"reason":"compiler-artifact","package_id":"x","target":{"kind":["test"],"crate_types":["bin"],"name":"kernel","src_path":"/w/tracer/tests/kernel.rs"},"executable":"/w/target/debug/deps/kernel-ab12","fresh":true}"#,
            "\n",
            r#"{"reason":"compiler-artifact","package_id":"x","target":{"kind":["bin"],"crate_types":["bin"],"name":"tracer"},"executable":"/w/target/debug/tracer","fresh":true}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(test_executables(json), vec![("kernel".to_string(), PathBuf::from("/w/target/debug/deps/kernel-ab12"))]);
    }

    #[test]
    fn every_suite_runs_somewhere_and_accuracy_stays_on_the_host() {
        assert!(SUITES.iter().any(|s| s.name == "kernel" && s.runs == Where::EveryKernel));
        assert!(matches!(SUITES.iter().find(|s| s.name == "accuracy").unwrap().runs, Where::HostOnly(_)));
        assert!(CI_KERNELS.iter().all(|k| MATRIX.iter().any(|s| s.series == *k)));
    }
}
