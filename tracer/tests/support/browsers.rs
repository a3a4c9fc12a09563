//! Real browsers set up for the lab, for tests/browsers.rs, tests/secrets.rs,
//! tests/dashboard_e2e.rs and the golden recorder (tests/golden.rs): a fresh profile that
//! trusts the lab CA, the flags and prefs that keep them headless and quiet. Browsers run only
//! inside the lab's namespace.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use tracer::lab::Lab;

use super::require;

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A fresh NSS database in `dir` that trusts the lab CA.
pub fn nss_db_with_lab_ca(dir: &Path, ca: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let db = format!("sql:{}", dir.display());
    require("certutil");
    run_ok(Command::new("certutil").args(["-N", "--empty-password", "-d", &db]));
    run_ok(Command::new("certutil").args(["-A", "-t", "C,,", "-n", "lab", "-i"]).arg(ca).args(["-d", &db]));
}

/// Chromium flags for a headless run as root that stays quiet on the network (no QUIC, no
/// background fetches, no component updates or sync).
pub const CHROMIUM_HEADLESS_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// Chromium headless (flags that work as root), loading `url`, printing the DOM and exiting.
pub fn chromium_cmd(lab: &Lab, home: &Path, extra: &[&str], url: &str) -> Command {
    chromium_with(lab, home, CHROMIUM_HEADLESS_FLAGS.iter(), extra, url)
}

/// [`chromium_cmd`] with QUIC allowed: [`CHROMIUM_HEADLESS_FLAGS`] but `--disable-quic`.
pub fn chromium_quic_cmd(lab: &Lab, home: &Path, extra: &[&str], url: &str) -> Command {
    chromium_with(lab, home, CHROMIUM_HEADLESS_FLAGS.iter().filter(|f| **f != "--disable-quic"), extra, url)
}

fn chromium_with<'a>(lab: &Lab, home: &Path, flags: impl Iterator<Item = &'a &'a str>, extra: &[&str], url: &str) -> Command {
    require("chromium");
    let mut cmd = lab.exec_command("chromium");
    cmd.env("HOME", home)
        .args(flags)
        .arg(format!("--user-data-dir={}", home.join("profile").display()))
        .args(extra)
        .arg("--dump-dom")
        .arg(url);
    cmd
}

/// `$HOME` for Chromium under `dir`: Chromium on Linux reads its trust store from the NSS
/// database in `$HOME/.pki/nssdb`.
pub fn chromium_home(dir: &Path, lab: &Lab) -> PathBuf {
    let home = dir.join("home");
    nss_db_with_lab_ca(&home.join(".pki/nssdb"), lab.ca_pem_path());
    home
}

/// Prefs that keep Firefox quiet: no updates, telemetry, captive-portal or connectivity
/// checks, prediction or prefetch (it can reach only the lab anyway).
pub const FIREFOX_PREFS: &str = r#"
user_pref("app.update.enabled", false);
user_pref("app.update.auto", false);
user_pref("app.normandy.enabled", false);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("browser.startup.page", 0);
user_pref("browser.newtabpage.enabled", false);
user_pref("browser.aboutwelcome.enabled", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("browser.safebrowsing.downloads.enabled", false);
user_pref("browser.safebrowsing.blockedURIs.enabled", false);
user_pref("browser.safebrowsing.provider.mozilla.updateURL", "");
user_pref("browser.search.update", false);
user_pref("browser.search.geoip.url", "");
user_pref("browser.region.network.url", "");
user_pref("browser.region.update.enabled", false);
user_pref("browser.ping-centre.telemetry", false);
user_pref("browser.newtabpage.activity-stream.feeds.telemetry", false);
user_pref("browser.newtabpage.activity-stream.telemetry", false);
user_pref("browser.contentblocking.report.lockwise.enabled", false);
user_pref("captivedetect.canonicalURL", "");
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("network.predictor.enabled", false);
user_pref("network.prefetch-next", false);
user_pref("network.dns.disablePrefetch", true);
user_pref("network.http.speculative-parallel-limit", 0);
user_pref("network.trr.mode", 5);
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("toolkit.telemetry.unified", false);
user_pref("toolkit.telemetry.server", "");
user_pref("extensions.update.enabled", false);
user_pref("extensions.getAddons.cache.enabled", false);
user_pref("extensions.blocklist.enabled", false);
user_pref("extensions.systemAddon.update.enabled", false);
user_pref("services.settings.server", "");
user_pref("security.OCSP.enabled", 0);
user_pref("security.remote_settings.crlite_filters.enabled", false);
user_pref("security.remote_settings.intermediates.enabled", false);
user_pref("media.gmp-manager.url", "");
user_pref("media.gmp-gmpopenh264.enabled", false);
user_pref("identity.fxaccounts.enabled", false);
user_pref("dom.push.enabled", false);
user_pref("dom.push.connection.enabled", false);
user_pref("browser.tabs.remote.autostart", true);
"#;

/// Prefs for HTTP/3 (neqo), on top of [`FIREFOX_PREFS`]. Firefox ESR 153 turns HTTP/3 off for
/// a connection whose certificate chains to a root that is not built in (the lab CA in the
/// profile): its log (`MOZ_LOG=nsHttp:5`) said `Http3Session::Authenticated [...,
/// hasThirdPartyRoots=1]`, then `nsHttpTransaction::DisableHttp3`, and the page went over
/// HTTP/2. `disable_when_third_party_roots_found` is that rule's switch.
///
/// The two fall-back timers: when QUIC has not connected within them, Firefox opens a TCP
/// connection beside it (for an HTTPS record's `h3`, after 50 ms by default; for an Alt-Svc,
/// 100 ms) and takes the document from whichever answers first. In CI's run of 2026-12-07 (load
/// about 8) TCP won: the document came over HTTP/2 beside a finished QUIC connection. The test
/// asks for HTTP/3, so they are set far beyond a lab connection's time (10 s).
pub const FIREFOX_HTTP3_PREFS: &str = r#"
user_pref("network.http.http3.enable", true);
user_pref("network.http.http3.disable_when_third_party_roots_found", false);
user_pref("network.dns.httpssvc.http3_fast_fallback_timeout", 10000);
user_pref("network.http.http3.backup_timer_delay", 10000);
"#;

/// Firefox with a fresh profile under `dir` (lab CA imported, quiet prefs), taking a
/// screenshot of `url` into `dir/shot.png` and exiting.
pub fn firefox_cmd(lab: &Lab, dir: &Path, url: &str) -> Command {
    firefox_cmd_with_prefs(lab, dir, url, "")
}

/// [`firefox_cmd`] with `prefs` (user.js lines) after [`FIREFOX_PREFS`].
pub fn firefox_cmd_with_prefs(lab: &Lab, dir: &Path, url: &str, prefs: &str) -> Command {
    let profile = dir.join("profile");
    nss_db_with_lab_ca(&profile, lab.ca_pem_path());
    std::fs::write(profile.join("user.js"), format!("{FIREFOX_PREFS}{prefs}")).unwrap();
    require("firefox-esr");
    let mut cmd = lab.exec_command("firefox-esr");
    cmd.env("HOME", dir)
        .env("MOZ_HEADLESS", "1")
        .env("MOZ_DISABLE_AUTO_SAFE_MODE", "1")
        .env("MOZ_CRASHREPORTER_DISABLE", "1")
        .args(["--headless", "--no-remote", "--profile"])
        .arg(&profile)
        .arg("--screenshot")
        .arg(dir.join("shot.png"))
        .arg(url);
    cmd
}


/// Makes the lab CA the system trust store inside the lab's namespace: `ip netns exec`
/// bind-mounts `/etc/netns/NS/ssl` over `/etc/ssl`, so a program there finds the lab CA where
/// Debian keeps its CA bundle (`/etc/ssl/certs/ca-certificates.crt`: GnuTLS, OpenSSL's
/// default file, libcurl, glib-networking) and as OpenSSL's hashed `<subject hash>.0` in the
/// same directory (dillo's https dpi and others that only set a CA path). OpenSSL's own
/// configuration is copied beside it, since the bind mount hides the machine's. Removed with
/// the lab's namespace directory.
pub fn lab_ca_as_system_trust_store(lab: &Lab) {
    let ssl = Path::new("/etc/netns").join(lab.netns_name()).join("ssl");
    let certs = ssl.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(lab.ca_pem_path(), certs.join("ca-certificates.crt")).unwrap();
    let out = Command::new(require("openssl")).args(["x509", "-hash", "-noout", "-in"]).arg(lab.ca_pem_path()).output().unwrap();
    assert!(out.status.success(), "openssl x509 -hash: {}", String::from_utf8_lossy(&out.stderr));
    let hash = String::from_utf8(out.stdout).unwrap();
    std::fs::copy(lab.ca_pem_path(), certs.join(format!("{}.0", hash.trim()))).unwrap();
    if Path::new("/etc/ssl/openssl.cnf").is_file() {
        std::fs::copy("/etc/ssl/openssl.cnf", ssl.join("openssl.cnf")).unwrap();
    }
}

/// `program ARGS` in the lab's namespace with `HOME` set to `home` (a fresh directory: the
/// browser's profile and caches go there).
pub fn in_lab(lab: &Lab, home: &Path, program: &str, args: &[&str]) -> Command {
    require(program);
    let mut cmd = lab.exec_command(program);
    cmd.env("HOME", home).env("XDG_CONFIG_HOME", home.join(".config")).env("XDG_CACHE_HOME", home.join(".cache")).args(args);
    cmd
}

/// `program ARGS` under a virtual X server (`xvfb-run -a`, package xvfb) in the lab's namespace,
/// `HOME` as in [`in_lab`]; `dbus` adds a private session bus (`dbus-run-session`) around it.
pub fn gui_in_lab(lab: &Lab, home: &Path, dbus: bool, program: &str, args: &[&str]) -> Command {
    require("xvfb-run");
    require(program);
    let mut cmd = lab.exec_command(if dbus { "dbus-run-session" } else { "xvfb-run" });
    if dbus {
        require("dbus-run-session");
        cmd.args(["--", "xvfb-run"]);
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_RUNTIME_DIR", home)
        .args(["-a", "-s", "-screen 0 1024x768x24", program])
        .args(args);
    cmd
}

/// QtWebEngine (falkon, qutebrowser, konqueror) as root, headless: no sandbox (it refuses to
/// run as root with it), no GPU, no QUIC, nothing in the background. Its Chromium network
/// stack trusts the NSS database in `$HOME/.pki/nssdb`, as Chromium does.
pub fn qtwebengine_env(cmd: &mut Command, home: &Path, lab: &Lab) {
    nss_db_with_lab_ca(&home.join(".pki/nssdb"), lab.ca_pem_path());
    cmd.env("QTWEBENGINE_DISABLE_SANDBOX", "1").env(
        "QTWEBENGINE_CHROMIUM_FLAGS",
        "--no-sandbox --disable-gpu --disable-quic --disable-background-networking --disable-component-update --no-first-run",
    );
}
