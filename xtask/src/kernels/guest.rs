//! Booting a kernel under qemu with virtme-ng and running the suites inside it.
//!
//! virtme-ng shares the host's file system with the guest, read-only, so the test binaries
//! built on the host run in the guest as they are. What the tests write goes to tmpfs the
//! guest script mounts (`/tmp`, where they keep their SQLite databases: WAL does not work on
//! the 9p share, "disk I/O error") and to `/etc` as an overlay (`ip netns exec` bind-mounts
//! `/etc/netns/NS/resolv.conf`, so the lab needs a writable `/etc/netns`). Results come back
//! through one directory shared read-write (`--rwdir`): each suite's output, a `status` line
//! per suite, and the start-up report of `tracer run`. A test binary writes its output to the
//! guest's tmpfs, copied to the share when it ends: once a binary whose output went straight
//! to the 9p share exited 101 at its first write, with nothing written.
//!
//! Without udev on the host, virtme-ng's init cannot find its script ports and runs the
//! script on the console, so the console is kept (`--show-boot-console`) in `console.log`
//! and everything the script says goes to files in the results directory instead.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::util;

/// Guest memory: a Chromium page load in the lab needed more than 2 GiB.
const MEMORY: &str = "3G";

/// How qemu runs the guest's CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    /// Emulation, and why not KVM.
    Tcg { why: String },
}

impl Accel {
    pub fn describe(&self) -> String {
        match self {
            Accel::Kvm => "KVM".into(),
            Accel::Tcg { why } => format!("TCG (emulated; KVM: {why})"),
        }
    }
}

/// A KVM boot that reaches the kernel's root-mount panic within this is a working KVM: a
/// KVM guest gets there in 1-3 s; under TCG the same takes about 20 s here.
const KVM_PROBE_LIMIT: Duration = Duration::from_secs(20);

/// Whether `image` boots under KVM on this machine. `/dev/kvm` may be there and still not
/// work: on the project's machines (nested under Firecracker) `-cpu host` aborts on MSR
/// 0x10a, and other CPU models hang after "Probing EDD". So boot the kernel with no root
/// file system under KVM and `-cpu host` (what virtme-ng uses) and see whether it gets to
/// its panic in time.
pub fn probe_kvm(image: &Path, scratch: &Path) -> Accel {
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return Accel::Tcg { why: "/dev/kvm cannot be opened".into() };
    }
    let log = scratch.join("kvm-probe.log");
    let Ok(out) = std::fs::File::create(&log) else {
        return Accel::Tcg { why: format!("cannot write {}", log.display()) };
    };
    let err = out.try_clone().ok();
    let child = Command::new("qemu-system-x86_64")
        .args(["-accel", "kvm", "-cpu", "host", "-m", "512M", "-nographic", "-no-reboot", "-kernel"])
        .arg(image)
        .args(["-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err.map(Stdio::from).unwrap_or(Stdio::null()))
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Accel::Tcg { why: format!("qemu-system-x86_64 could not start: {e}") },
    };
    let start = Instant::now();
    let exited = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if start.elapsed() > KVM_PROBE_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200)); // polling a child's exit; no event to await
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    if text.contains("Kernel panic") || text.contains("Unable to mount root") {
        return Accel::Kvm;
    }
    let last = text.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no output").to_string();
    let last: String = last.chars().filter(|c| !c.is_control()).take(120).collect();
    Accel::Tcg {
        why: match exited {
            Some(status) => format!("qemu -accel kvm exited ({status}) before the kernel booted: {last}"),
            None => format!("a KVM boot did not reach the kernel within {} s (last output: {last})", KVM_PROBE_LIMIT.as_secs()),
        },
    }
}

/// virtme-ng in a venv of its own under `dir` (pip; created when missing, and made again when
/// it no longer runs: a venv's scripts name its interpreter by absolute path, so a venv copied
/// from another tree whose original was removed has an executable `virtme-run` that fails to
/// start with ENOENT).
pub fn virtme(dir: &Path) -> Result<PathBuf> {
    let run = dir.join("bin").join("virtme-run");
    if util::is_executable(&run) {
        match Command::new(&run).arg("--version").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status() {
            Ok(s) if s.success() => return Ok(run),
            other => {
                eprintln!("kernels: {} does not run ({other:?}): making the venv again", run.display());
                std::fs::remove_dir_all(dir).with_context(|| format!("removing the broken venv {}", dir.display()))?;
            }
        }
    }
    util::run(Command::new("python3").args(["-m", "venv"]).arg(dir)).context("creating the venv for virtme-ng (Debian: python3-venv)")?;
    util::run(Command::new(dir.join("bin").join("pip")).args(["install", "-q", "virtme-ng"])).context("pip install virtme-ng")?;
    if !util::is_executable(&run) {
        bail!("pip installed virtme-ng but {} is missing", run.display());
    }
    Ok(run)
}

/// One test binary to run in the guest, with the tests of it that belong to the suite.
#[derive(Debug, Clone)]
pub struct GuestSuite {
    pub name: String,
    pub binary: PathBuf,
    /// Test names to run (exact); empty: all of them.
    pub tests: Vec<String>,
    /// Test names left out (exact).
    pub skip: Vec<String>,
}

/// The script the guest runs: tmpfs and environment, then each suite bounded by `limit`,
/// its output in `OUT/SUITE.log` and `SUITE EXIT SECONDS` appended to `OUT/status`; then the
/// start-up report of `tracer run` (every family, its variant and what failed) in
/// `OUT/report.txt`.
pub fn script(out: &Path, workspace: &Path, tracer: &Path, suites: &[GuestSuite], limit: Duration) -> String {
    let q = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let mut s = String::new();
    s.push_str("#!/bin/sh\n# Written by `cargo xtask kernels`: runs inside the guest.\n");
    s.push_str(&format!("out={}\n", q(out)));
    s.push_str("exec >\"$out/guest.log\" 2>&1\n");
    s.push_str("echo \"kernel $(uname -r)\"\n");
    // The host's tree is read-only here: the tests' temporary files and databases go to tmpfs.
    s.push_str("mount -t tmpfs -o mode=1777 tmpfs /tmp && mkdir -p /tmp/home /tmp/out\n");
    s.push_str("[ -d /sys/kernel/tracing/events ] || mount -t tracefs nodev /sys/kernel/tracing\n");
    s.push_str("ip link set lo up\n");
    // BoringSSL's offsets in the host's Chromium, found on the host (the search reads the
    // whole binary: minutes under emulation, for every test that loads the TLS probes).
    s.push_str(&format!(
        "if [ -d \"$out/{SEEDED_CACHE}\" ]; then mkdir -p -m 700 /var/cache/tracer && cp -a \"$out/{SEEDED_CACHE}\" {BORINGSSL_CACHE}; fi\n"
    ));
    s.push_str("export CI=true RUST_BACKTRACE=1 HOME=/tmp/home TMPDIR=/tmp\n");
    // Clients run some 30 times slower under emulation: wget's 3.3 s between a redirect and its
    // next lookup cut its page load in two at the default 500 ms (tests/support: quiet_ms).
    s.push_str(&format!("export TRACER_TEST_QUIET_MS={GUEST_QUIET_MS}\n"));
    // The tests' time bounds (which say "it did not hang") stretched for the same reason.
    s.push_str(&format!("export TRACER_TEST_TIME_SCALE={GUEST_TIME_SCALE}\n"));
    s.push_str(&format!("cd {}\n", q(&workspace.join("tracer"))));
    // The start-up report first (every family, its variant, what failed), with the time a
    // load and detach of every probe takes here. Its database in a directory of its own: the
    // daemon refuses one in a directory others may write (/tmp).
    s.push_str(&format!(
        "mkdir -m 700 /tmp/report; start=$(date +%s); RUST_LOG=tracer::probes=debug timeout 600 {} run --db /tmp/report/report.db --listen 127.0.0.1:17878 -- true 2>\"$out/report.txt\" >/dev/null; echo \"report $? $(( $(date +%s) - start ))s\" >>\"$out/report.txt\"\n",
        q(tracer)
    ));
    for suite in suites {
        // One test at a time, each bounded by `limit`: a test that hangs costs its own bound,
        // not the suite's, and `OUT/tests` gets `SUITE TEST EXIT SECONDS` per test, which is
        // where the matrix's time goes (under TCG one suite took 15 min; only per-test times
        // say which test).
        let words = |v: &[String]| v.join(" ");
        s.push_str(&format!(
            "suite_start=$(date +%s); rc=0
             for t in $({bin} --list --format terse 2>/dev/null | sed -n 's/: test$//p'); do
               case ' {skip} ' in *\" $t \"*) continue;; esac
               if [ -n '{only}' ]; then case ' {only} ' in *\" $t \"*) ;; *) continue;; esac; fi
               t0=$(date +%s); timeout -k 10 {limit} {bin} --exact \"$t\" --test-threads=1 >>/tmp/out/{name}.log 2>&1; e=$?
               echo \"{name} $t $e $(( $(date +%s) - t0 ))s\" >>\"$out/tests\"; [ $e -eq 0 ] || rc=$e
             done
             echo \"{name} $rc $(( $(date +%s) - suite_start ))s\" >>\"$out/status\"; cp /tmp/out/{name}.log \"$out/\"
",
            bin = q(&suite.binary),
            skip = words(&suite.skip),
            only = words(&suite.tests),
            limit = limit.as_secs(),
            name = suite.name,
        ));
    }
    s.push_str("echo done >\"$out/done\"\n");
    s
}

/// How much longer the tests' time bounds are in a guest (`tracer::lab::support::test_bound`).
pub const GUEST_TIME_SCALE: u32 = 4;

/// The page-load quiet window the tests use in a guest (the daemon's default: 500 ms). 5 s
/// was not enough for wget on 6.1 with one vCPU at load 12-20: GnuTLS loading its CA store
/// between the redirect and the next lookup took longer, and the page load was cut in two.
pub const GUEST_QUIET_MS: u64 = 10_000;

/// Where the daemon caches BoringSSL's offsets (tracer::probes::boringssl::DEFAULT_CACHE_DIR).
pub const BORINGSSL_CACHE: &str = "/var/cache/tracer/boringssl";
/// The host's cache, copied into the results directory for the guest.
const SEEDED_CACHE: &str = "boringssl-cache";

/// Copies the host's BoringSSL cache next to the guest's results, for the guest script.
pub fn seed_cache(out: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(BORINGSSL_CACHE) else { return Ok(()) };
    let dst = out.join(SEEDED_CACHE);
    std::fs::create_dir_all(&dst)?;
    for e in entries.flatten() {
        std::fs::copy(e.path(), dst.join(e.file_name()))?;
    }
    Ok(())
}

/// Boots `image` (modules beside it) and runs `script_path` in it, with `out` shared
/// read-write; the whole run bounded by `limit`. The console goes to `OUT/console.log`.
pub fn boot(virtme_run: &Path, image: &Path, accel: &Accel, cpus: usize, out: &Path, script_path: &Path, limit: Duration) -> Result<()> {
    let console = std::fs::File::create(out.join("console.log"))?;
    let mut cmd = Command::new(virtme_run);
    cmd.arg("--kimg")
        .arg(image)
        .args(["--mods=auto", "--memory", MEMORY, "--cpus", &cpus.to_string(), "--show-boot-console"])
        .arg("--rwdir")
        .arg(out)
        .args(["--overlay-rwdir", "/etc", "--script-sh"])
        .arg(format!("sh '{}'", script_path.display()))
        .stdin(Stdio::null())
        .stdout(console.try_clone()?)
        .stderr(console);
    if *accel != Accel::Kvm {
        cmd.arg("--disable-kvm");
    }
    let mut child = cmd.spawn().with_context(|| format!("starting {}", util::cmdline(&cmd)))?;
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait()? {
            // virtme-run's own exit status is 255 when its init found no script ports (no
            // udev here); what counts is what the script wrote.
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the guest did not finish within {} min (console: {})", limit.as_secs() / 60, out.join("console.log").display());
        }
        std::thread::sleep(Duration::from_secs(1)); // polling a child's exit; no event to await
    }
    if !out.join("done").exists() {
        let mut tail = String::new();
        if let Ok(mut f) = std::fs::File::open(out.join("console.log")) {
            let _ = f.read_to_string(&mut tail);
        }
        let tail: Vec<&str> = tail.lines().rev().take(15).collect();
        bail!(
            "the guest stopped before its script finished; last console lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_runs_each_suite_bounded_and_records_its_status() {
        let suites = vec![
            GuestSuite { name: "kernel".into(), binary: "/w/target/debug/deps/kernel-1".into(), tests: vec![], skip: vec![] },
            GuestSuite {
                name: "page_loads".into(),
                binary: "/w/target/debug/deps/browsers-2".into(),
                tests: vec!["curl_page_load".into(), "wget_page_load".into()],
                skip: vec!["slow".into()],
            },
        ];
        let s = script(Path::new("/w/target/kernels/run/6.1"), Path::new("/w"), Path::new("/w/target/debug/tracer"), &suites, Duration::from_secs(900));
        assert!(s.contains("mount -t tmpfs -o mode=1777 tmpfs /tmp"), "{s}");
        assert!(s.contains("export CI=true"), "a skipped kernel test fails in the guest too: {s}");
        assert!(s.contains("export TRACER_TEST_QUIET_MS=10000"), "{s}");
        assert!(s.contains("export TRACER_TEST_TIME_SCALE=4"), "{s}");
        assert!(s.contains("for t in $('/w/target/debug/deps/kernel-1' --list --format terse"), "{s}");
        assert!(s.contains("timeout -k 10 900 '/w/target/debug/deps/kernel-1' --exact \"$t\" --test-threads=1 >>/tmp/out/kernel.log 2>&1"), "{s}");
        assert!(s.contains("case ' slow ' in"), "{s}");
        assert!(s.contains("if [ -n 'curl_page_load wget_page_load' ]; then case ' curl_page_load wget_page_load ' in"), "{s}");
        assert!(s.contains("echo \"kernel $t $e "), "{s}");
        assert!(s.contains("cp /tmp/out/kernel.log \"$out/\""), "{s}");
        assert!(s.contains("echo \"page_loads $rc "), "{s}");
        assert!(s.contains("mkdir -m 700 /tmp/report; "), "{s}");
        assert!(s.contains("'/w/target/debug/tracer' run --db /tmp/report/report.db"), "{s}");
        assert!(s.trim_end().ends_with("echo done >\"$out/done\""), "{s}");
    }
}
