//! The Debian packages the tests and the benchmarks drive: the one list of them, why each is
//! there, and their installation with apt-get where any is missing.
//!
//! `cargo xtask test` installs those of the tests, `cargo xtask bench` those of the
//! benchmarks, `cargo xtask setup --packages` all of them. Only what `dpkg-query` does not
//! show as installed is installed, as root; without root the missing ones and the one command
//! that installs them are printed, and the task fails.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{setup::step, util};

/// Who drives a package's programs or loads its library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum User {
    /// `cargo test` (tracer/tests, the unit tests).
    Tests,
    /// `cargo xtask bench` (tracer/src/bench).
    Bench,
    /// `cargo xtask kernels`: Debian's kernels booted under qemu (xtask/src/kernels).
    Kernels,
    /// `cargo xtask sqlx` (the compile-checked queries' data).
    QueryData,
}

pub struct Package {
    pub name: &'static str,
    pub users: &'static [User],
    /// Why it is on the list.
    pub why: &'static str,
}

const TESTS: &[User] = &[User::Tests];
const BENCH: &[User] = &[User::Bench];
const BOTH: &[User] = &[User::Tests, User::Bench];
const KERNELS: &[User] = &[User::Kernels];

/// Every package the tests and the benchmarks need, besides what a Debian system has anyway.
pub const PACKAGES: &[Package] = &[
    Package { name: "curl", users: BOTH, why: "the OpenSSL client the tests and the benchmarks drive" },
    Package { name: "wget", users: BOTH, why: "the GnuTLS client" },
    Package { name: "ca-certificates", users: TESTS, why: "the system trust store the clients load" },
    Package { name: "iproute2", users: BOTH, why: "`ip netns`: the lab's network namespaces" },
    Package {
        name: "nftables",
        users: TESTS,
        why: "`nft`: the lab's `--http3 drop` rule (UDP 443 dropped inside the lab's namespace; the \
              package's service, which would load /etc/nftables.conf, stays disabled)",
    },
    Package { name: "openssl", users: TESTS, why: "`openssl s_client`/`s_server`/`req` in the kernel and filter tests" },
    Package { name: "libssl3", users: BOTH, why: "OpenSSL, whose functions the TLS uprobes attach to" },
    Package { name: "libgnutls30", users: BOTH, why: "GnuTLS, the same for its functions" },
    Package { name: "libnspr4", users: TESTS, why: "NSPR, Firefox's I/O layer: the NSPR probes" },
    Package { name: "procps", users: TESTS, why: "ps and pgrep, for looking into a failed run by hand" },
    Package { name: "sudo", users: TESTS, why: "how `cargo xtask` runs the root-only steps when not root" },
    Package { name: "dnsutils", users: TESTS, why: "dig, for asking the lab's DNS server by hand" },
    Package { name: "util-linux", users: TESTS, why: "setpriv (the CLI test as `nobody`) and unshare (the faults test)" },
    Package {
        name: "sqlite3",
        users: &[User::Tests, User::QueryData],
        why: "the CLI, crash, fleet and secrets tests read the recorded database with it; `cargo xtask sqlx` migrates its scratch database",
    },
    Package {
        name: "chromium",
        users: TESTS,
        why: "the real-browser page loads (tests/browsers/, in the lab's namespace only) and the \
              dashboard's browser test (tests/dashboard_e2e.rs, over the DevTools protocol)",
    },
    Package { name: "firefox-esr", users: TESTS, why: "the real-browser page loads, and the secrets test" },
    Package { name: "libnss3-tools", users: TESTS, why: "certutil, which imports the lab CA into the browsers' profiles" },
    // The other browsers Debian ships, each traced loading the lab's page (tests/browsers/debian.rs).
    Package { name: "epiphany-browser", users: TESTS, why: "a browser test: WebKitGTK (WebKitNetworkProcess, libsoup, GnuTLS)" },
    Package { name: "falkon", users: TESTS, why: "a browser test: QtWebEngine 5 (BoringSSL inside libQt5WebEngineCore)" },
    Package { name: "qutebrowser", users: TESTS, why: "a browser test: QtWebEngine, from Python" },
    Package { name: "konqueror", users: TESTS, why: "a browser test: QtWebEngine as a KDE part" },
    Package { name: "lynx", users: TESTS, why: "a browser test: text, GnuTLS" },
    Package { name: "w3m", users: TESTS, why: "a browser test: text, OpenSSL" },
    Package { name: "links2", users: TESTS, why: "a browser test: text, OpenSSL" },
    Package { name: "elinks", users: TESTS, why: "a browser test: text, GnuTLS" },
    Package { name: "dillo", users: TESTS, why: "a browser test: FLTK, HTTPS in its OpenSSL plug-in process (https.filter.dpi)" },
    Package { name: "netsurf-gtk", users: TESTS, why: "a browser test: its own engine over libcurl (OpenSSL)" },
    Package { name: "xvfb", users: TESTS, why: "xvfb-run: the GUI browsers' X server, headless" },
    Package { name: "xauth", users: TESTS, why: "xvfb-run's X authority file" },
    Package { name: "dbus-daemon", users: TESTS, why: "dbus-run-session: epiphany's and konqueror's private session bus" },
    Package {
        name: "prometheus",
        users: TESTS,
        why: "tests/fleet.rs starts its own on a free loopback port to scrape the daemon's /metrics \
              (the package's own service is not used)",
    },
    Package {
        name: "nginx",
        users: BOTH,
        why: "the benchmarks' server and the kernel test's TLS server; both start their own on a \
              free loopback port (the package's service is not started, see `install`)",
    },
    Package { name: "wrk", users: BOTH, why: "the benchmarks' load generator, and the kernel test's non-blocking client" },
    Package { name: "bpftrace", users: BENCH, why: "the benchmarks' count-only floor" },
    Package { name: "qemu-system-x86", users: KERNELS, why: "boots the kernel matrix's Debian kernels (TCG where nested KVM does not work)" },
    Package { name: "kmod", users: KERNELS, why: "depmod, which virtme-ng runs over an unpacked kernel's modules; modprobe in the guest" },
    Package { name: "busybox-static", users: KERNELS, why: "virtme-ng's initramfs, which loads the 9p and virtio modules of a Debian kernel" },
    Package { name: "python3-venv", users: KERNELS, why: "the venv under target/kernels/ that virtme-ng is installed into with pip" },
    Package { name: "file", users: KERNELS, why: "virtme-ng reads a kernel image's version with it" },
];

/// The names of the packages one of `users` needs, in list order.
pub fn needed_by(users: &[User]) -> Vec<&'static str> {
    PACKAGES.iter().filter(|p| p.users.iter().any(|u| users.contains(u))).map(|p| p.name).collect()
}

/// Installs the packages `users` need that are missing (root only; otherwise fails with the
/// command that installs them), then stops Debian's own nginx service should it run.
pub fn ensure(users: &[User]) -> Result<()> {
    let names = needed_by(users);
    if util::find_in_path("dpkg-query").is_none() {
        // Not Debian: the tests say which program they lack when they need it.
        step("packages", &format!("warning: no dpkg-query here; make sure these are installed: {}", names.join(" ")));
        return Ok(());
    }
    let missing = missing(&names, dpkg_installed)?;
    if missing.is_empty() {
        step("packages", &format!("ok ({} present)", names.len()));
    } else {
        let root = util::is_root()?;
        for mut cmd in install_plan(&missing, root)? {
            util::run(&mut cmd)?;
        }
        step("packages", &format!("installed {}:\n{}", missing.join(" "), reasons(&missing)));
    }
    if names.contains(&"nginx") && util::is_root()? {
        stop_debian_nginx();
    }
    Ok(())
}

/// Those of `names` that `installed` says are not installed.
pub fn missing<'a>(names: &[&'a str], installed: impl Fn(&str) -> Result<bool>) -> Result<Vec<&'a str>> {
    let mut out = Vec::new();
    for name in names {
        if !installed(name)? {
            out.push(*name);
        }
    }
    Ok(out)
}

/// Whether dpkg has `name` installed. (`dpkg -s` also succeeds for a package that was removed
/// but not purged: the status field tells.)
fn dpkg_installed(name: &str) -> Result<bool> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .output()
        .context("could not start dpkg-query")?;
    // A package dpkg never heard of: exit 1, "no packages found matching" on stderr.
    Ok(out.status.success() && is_installed_status(&String::from_utf8_lossy(&out.stdout)))
}

/// `dpkg-query -f '${Status}'` of an installed package: `install ok installed`.
pub fn is_installed_status(status: &str) -> bool {
    status.trim() == "install ok installed"
}

/// One line per package of `names`: what it is there for.
fn reasons(names: &[&str]) -> String {
    let line = |name: &&str| {
        let why = PACKAGES.iter().find(|p| p.name == *name).map_or("", |p| p.why);
        format!("    {name:<16} {why}")
    };
    names.iter().map(line).collect::<Vec<_>>().join("\n")
}

/// The commands that install `missing`: `apt-get update`, then one `apt-get install`, each
/// non-interactive. Without root, an error with the missing packages and that command.
pub fn install_plan(missing: &[&str], root: bool) -> Result<Vec<Command>> {
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        cmd
    };
    let update = apt(&["update"]);
    let mut install = apt(&["install", "-y", "--no-install-recommends"]);
    install.args(missing);
    if !root {
        bail!(
            "missing Debian packages: {}; install them as root with\n    {} && {}\n{}",
            missing.join(" "),
            util::cmdline(&update),
            util::cmdline(&install),
            reasons(missing)
        );
    }
    Ok(vec![update, without_service_starts(install, POLICY_RC_D)])
}

/// Where Debian's package scripts look for a service policy (invoke-rc.d).
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// `cmd` run with a policy at `policy` that exits 101 ("action forbidden"), so that the package
/// scripts start no service (the nginx package would start a server on port 80 that nothing
/// here uses). The policy is removed after the command, whatever its outcome; one the machine
/// already has is left alone.
fn without_service_starts(cmd: Command, policy: &str) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!(
            "if [ -e {policy} ]; then exec \"$@\"; fi; printf '#!/bin/sh\\nexit 101\\n' > {policy} && chmod +x {policy}; \
             \"$@\"; status=$?; rm -f {policy}; exit $status"
        ))
        .arg("sh")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            sh.env(key, value);
        }
    }
    sh
}

/// Debian's nginx service, should it run (installed earlier without the policy): stopped,
/// through its own pid file only. The benchmarks and tests start their own nginx.
fn stop_debian_nginx() {
    let pid = std::fs::read_to_string("/run/nginx.pid").unwrap_or_default();
    let Some(nginx) = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| util::is_executable(std::path::Path::new(p))) else {
        return;
    };
    if pid.trim().is_empty() {
        return;
    }
    step("packages", &format!("stopping Debian's nginx service (pid {}); the benchmarks run their own", pid.trim()));
    if let Err(e) = util::run(Command::new(nginx).args(["-s", "quit"])) {
        step("packages", &format!("warning: {e:#}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_list_with_a_reason_each() {
        let mut names: Vec<&str> = PACKAGES.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PACKAGES.len(), "a package is listed twice");
        for p in PACKAGES {
            assert!(!p.why.is_empty() && !p.users.is_empty(), "{}", p.name);
        }
    }

    #[test]
    fn tests_and_benchmarks_each_get_theirs() {
        let tests = needed_by(&[User::Tests]);
        let bench = needed_by(&[User::Bench]);
        for p in ["chromium", "firefox-esr", "libnss3-tools", "prometheus", "sqlite3", "curl", "nginx", "wrk", "falkon", "lynx", "xvfb"] {
            assert!(tests.contains(&p), "{p} for the tests");
        }
        for p in ["nginx", "wrk", "bpftrace", "curl", "wget", "iproute2"] {
            assert!(bench.contains(&p), "{p} for the benchmarks");
        }
        assert!(!tests.contains(&"bpftrace") && !bench.contains(&"chromium"));
        let kernels = needed_by(&[User::Kernels]);
        for p in ["qemu-system-x86", "kmod", "busybox-static", "python3-venv"] {
            assert!(kernels.contains(&p) && !tests.contains(&p), "{p} for the kernel matrix only");
        }
        assert_eq!(needed_by(&[User::Tests, User::Bench, User::Kernels, User::QueryData]).len(), PACKAGES.len());
    }

    #[test]
    fn dpkg_status_field() {
        assert!(is_installed_status("install ok installed"));
        assert!(is_installed_status("install ok installed\n"));
        assert!(!is_installed_status("deinstall ok config-files"));
        assert!(!is_installed_status("unknown ok not-installed"));
        assert!(!is_installed_status(""));
    }

    /// A package that does not exist is missing, and without root the error names it and the
    /// one command that installs it; with root the plan is that command, run as nothing here.
    #[test]
    fn a_missing_package_is_named_with_the_command_that_installs_it() {
        const FAKE: &str = "tracer-xtask-no-such-package";
        let only_curl = |name: &str| Ok(name == "curl");
        assert_eq!(missing(&["curl", FAKE], only_curl).unwrap(), vec![FAKE]);
        if util::find_in_path("dpkg-query").is_some() {
            // The real status check: dpkg itself is installed, the fake package is not.
            assert_eq!(missing(&["dpkg", FAKE], dpkg_installed).unwrap(), vec![FAKE]);
        }

        let err = install_plan(&[FAKE, "wrk"], false).expect_err("no plan without root").to_string();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines[0], format!("missing Debian packages: {FAKE} wrk; install them as root with"), "{err}");
        assert_eq!(
            lines[1],
            format!(
                "    DEBIAN_FRONTEND=noninteractive apt-get update && \
                 DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {FAKE} wrk"
            ),
            "{err}"
        );
        assert!(lines[3].starts_with("    wrk ") && lines[3].contains("load generator"), "why each is needed: {err}");

        let plan = install_plan(&[FAKE], true).unwrap();
        let lines: Vec<String> = plan.iter().map(util::cmdline).collect();
        assert_eq!(lines[0], "DEBIAN_FRONTEND=noninteractive apt-get update");
        assert!(lines[1].starts_with("DEBIAN_FRONTEND=noninteractive sh -c "), "{}", lines[1]);
        assert!(lines[1].contains("exit 101") && lines[1].contains("rm -f /usr/sbin/policy-rc.d"), "{}", lines[1]);
        assert!(
            lines[1].ends_with(&format!(" sh apt-get install -y --no-install-recommends {FAKE}")),
            "{}",
            lines[1]
        );
    }

    /// The policy is in place while the command runs, the command's exit status is passed on,
    /// and the policy is gone after it; a policy already there stays.
    #[test]
    fn no_service_starts_during_the_install() {
        let policy = std::env::temp_dir().join(format!("xtask-policy-rc.d-{}", std::process::id()));
        let policy = policy.to_str().unwrap();
        let _ = std::fs::remove_file(policy);
        let mut probe = Command::new("sh");
        probe.args(["-c", &format!("test -x {policy} && {policy}; exit $?")]);
        assert_eq!(without_service_starts(probe, policy).status().unwrap().code(), Some(101), "the policy forbids");
        assert!(!std::path::Path::new(policy).exists(), "and is removed after");
        assert!(without_service_starts(Command::new("true"), policy).status().unwrap().success());

        std::fs::write(policy, "#!/bin/sh\nexit 0\n").unwrap();
        let mut probe = Command::new("sh");
        probe.args(["-c", &format!("grep -q 'exit 0' {policy}")]);
        assert!(without_service_starts(probe, policy).status().unwrap().success(), "the machine's own policy is used");
        assert!(std::path::Path::new(policy).exists(), "and kept");
        std::fs::remove_file(policy).unwrap();
    }
}
