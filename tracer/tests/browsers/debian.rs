//! Every other browser Debian 12 ships (issue 23), one test each: a page load of the lab's site
//! traced with nothing set up on the browser's side, checked against the lab's logs like
//! Chromium's and Firefox's (`check_page_load`), and its README table row written.
//!
//! Each runs in the lab's namespace with a fresh `HOME` (its profile) and trusts the lab CA
//! the way it trusts any CA: the system store (the text browsers, dillo, netsurf, WebKitGTK:
//! `lab_ca_as_system_trust_store`) or the NSS database (QtWebEngine). The GUI ones run under
//! `xvfb-run` and stay open after the page: the run ends when the lab has served the page's
//! resources, and they are stitched with a longer quiet window (below).
use std::{path::Path, process::Command, time::Duration};

use tracer::lab::Lab;

use crate::{
    harness::{Ends, Expect, load_the_lab_page_until},
    support::browsers::{gui_in_lab, in_lab, lab_ca_as_system_trust_store, qtwebengine_env},
    table::{self, Browser, NO_HTTP3},
};

const URL: &str = "http://shop.test/";

/// What every text browser's page load shows: the redirect, the document over HTTP/1.1, no
/// sub-resources (`-dump` loads none), no HTTPS records asked.
const TEXT_BROWSER: Expect = Expect {
    protocol: "HTTP/1.1",
    request_version: None,
    subresources: &[],
    name: "",
    https_rr: false,
    tls_library: "",
    handshake_end_seen: true,
    background_failures: false,
    sends_sni: true,
    loopback_ipc: false,
    table: None,
};

/// A text browser's README row: its own engine, in its own process, without HTTP/3.
const fn text_row(package: &'static str) -> Browser {
    Browser {
        package,
        engine: "its own (text)",
        network_process: "the browser",
        dns_limit: None,
        tls_limit: None,
        requests_limit: None,
        quic: NO_HTTP3,
    }
}

/// `program ARGS http://shop.test/` in the lab with the lab CA as the system trust store; it
/// prints the page and exits.
fn text_browser(program: &'static str, args: &'static [&'static str]) -> impl FnOnce(&Lab, &Path) -> Command {
    move |lab, dir| {
        lab_ca_as_system_trust_store(lab);
        let mut cmd = in_lab(lab, dir, program, args);
        cmd.arg(URL);
        cmd
    }
}

fn printed_the_page(out: &str, _: &Path) {
    assert!(out.contains("Lab Shop"), "the browser printed the lab's page: {out}");
}

/// How long a text browser may take (it exits by itself after the page).
const TEXT_ENDS: Ends = Ends { limit: Duration::from_secs(30), served: None, quiet_ms: None };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lynx_page_load() {
    let expect = Expect { name: "lynx", tls_library: "gnutls", request_version: Some("HTTP/1.0"), table: Some(text_row("lynx")), ..TEXT_BROWSER };
    load_the_lab_page_until("lynx", &["lynx", "openssl"], &TEXT_ENDS, &expect, text_browser("lynx", &["-dump"]), printed_the_page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3m_page_load() {
    let expect = Expect { name: "w3m", tls_library: "openssl", request_version: Some("HTTP/1.0"), table: Some(text_row("w3m")), ..TEXT_BROWSER };
    load_the_lab_page_until("w3m", &["w3m", "openssl"], &TEXT_ENDS, &expect, text_browser("w3m", &["-dump"]), printed_the_page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links2_page_load() {
    let expect = Expect { name: "links2", tls_library: "openssl", table: Some(text_row("links2")), ..TEXT_BROWSER };
    load_the_lab_page_until("links2", &["links2", "openssl"], &TEXT_ENDS, &expect, text_browser("links2", &["-dump"]), printed_the_page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elinks_page_load() {
    let expect = Expect { name: "elinks", tls_library: "gnutls", table: Some(text_row("elinks")), ..TEXT_BROWSER };
    // ELinks does not check certificates unless told to; told, it uses the system store.
    let args = &["-dump", "-no-home", "-eval", "set connection.ssl.cert_verify = 1"];
    load_the_lab_page_until("elinks", &["elinks", "openssl"], &TEXT_ENDS, &expect, text_browser("elinks", args), printed_the_page).await;
}

/// A GUI browser's page load is not one burst: under Xvfb on a loaded machine WebKitGTK took
/// 2.3 s between the redirect's response and its next lookup, and falkon 1.5 s, so the
/// daemon's 500 ms quiet window cut the page load in three. Their tests stitch with 5 s (the
/// daemon's `--quiet-ms 5000`), as the kernel matrix's slow guests do.
pub const GUI_QUIET_MS: u64 = 5_000;

/// The GUI browsers' run: until the lab has served `served`, at most 120 s.
const fn gui_ends(served: &'static [&'static str]) -> Ends {
    Ends { limit: Duration::from_secs(120), served: Some(served), quiet_ms: Some(GUI_QUIET_MS) }
}

fn nothing_to_check(_: &str, _: &Path) {}

/// netsurf-gtk: its own engine, fetching through libcurl (OpenSSL) in the browser's process.
/// JavaScript is off in Debian's build, so it loads the style sheet and the image, not the
/// script. Its search bar's provider icon (`www.google.com`) is looked up at start: an
/// NXDOMAIN of a non-lab host, background work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netsurf_page_load() {
    const SERVED: &[&str] = &["/app.css", "/logo.png"];
    let expect = Expect {
        name: "netsurf-gtk",
        tls_library: "openssl",
        subresources: SERVED,
        background_failures: true,
        table: Some(Browser { package: "netsurf-gtk", engine: "its own, libcurl", ..text_row("netsurf-gtk") }),
        ..TEXT_BROWSER
    };
    let netsurf = |lab: &Lab, dir: &Path| {
        lab_ca_as_system_trust_store(lab);
        gui_in_lab(lab, dir, false, "netsurf-gtk", &[URL])
    };
    load_the_lab_page_until("netsurf", &["netsurf-gtk", "openssl"], &gui_ends(SERVED), &expect, netsurf, nothing_to_check).await;
}

/// dillo 3.0.5: plain HTTP in the browser, HTTPS through its `https.filter.dpi` plug-in
/// (OpenSSL), one process per connection, which `dpid` starts (dillo starts `dpid`); dillo
/// talks to `dpid` and the plug-ins over TCP on 127.0.0.1. It loads style sheets and images,
/// not scripts, and sends no SNI. `dpid` writes its keys to `~/.dillo`, which must
/// exist (with a fresh `HOME` dillo does not create it before starting `dpid`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dillo_page_load() {
    const SERVED: &[&str] = &["/app.css", "/logo.png"];
    let expect = Expect {
        name: "dillo",
        tls_library: "openssl",
        subresources: SERVED,
        sends_sni: false,
        loopback_ipc: true,
        table: Some(Browser {
            package: "dillo",
            engine: "its own; HTTPS in a plug-in process",
            network_process: "the browser (HTTP); `https.filter.dpi` under `dpid` (HTTPS)",
            tls_limit: Some("yes (no SNI: dillo 3.0.5 sends none); its TCP to `dpid` on 127.0.0.1 shows as connections without requests"),
            ..text_row("dillo")
        }),
        ..TEXT_BROWSER
    };
    let dillo = |lab: &Lab, dir: &Path| {
        lab_ca_as_system_trust_store(lab);
        std::fs::create_dir_all(dir.join(".dillo")).unwrap();
        gui_in_lab(lab, dir, false, "dillo", &[URL])
    };
    load_the_lab_page_until("dillo", &["dillo", "openssl"], &gui_ends(SERVED), &expect, dillo, nothing_to_check).await;
}

/// WebKitGTK's settings for epiphany, in GLib's key-file settings backend under the fresh
/// `HOME`: no ad-block filter download, no safe-browsing or tracking-prevention lists, no
/// session restore or default-browser question.
const EPIPHANY_SETTINGS: &str = "[org/gnome/epiphany/web]\n\
    enable-adblock=false\n\
    enable-safe-browsing=false\n\
    enable-itp=false\n\
    [org/gnome/epiphany]\n\
    ask-for-default=false\n\
    restore-session-policy='never'\n";

/// epiphany-browser (WebKitGTK 2.4x): the network work runs in `WebKitNetworkProcess`, a child
/// of the browser; libsoup 3 over glib-networking, so GnuTLS; DNS through GLib's resolver
/// threads (libc `getaddrinfo`). It needs a session bus (`dbus-run-session`) and, as root,
/// WebKit's sandbox off (else its web process crashes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epiphany_page_load() {
    const SERVED: &[&str] = &["/app.css", "/app.js", "/logo.png"];
    let expect = Expect {
        name: "epiphany",
        tls_library: "gnutls",
        protocol: "HTTP/2",
    request_version: None,
        subresources: SERVED,
        table: Some(Browser {
            package: "epiphany-browser",
            engine: "WebKitGTK, libsoup 3",
            network_process: "`WebKitNetworkProcess`",
            ..text_row("epiphany-browser")
        }),
        ..TEXT_BROWSER
    };
    let epiphany = |lab: &Lab, dir: &Path| {
        lab_ca_as_system_trust_store(lab);
        let settings = dir.join(".config/glib-2.0/settings");
        std::fs::create_dir_all(&settings).unwrap();
        std::fs::write(settings.join("keyfile"), EPIPHANY_SETTINGS).unwrap();
        let profile = dir.join("profile");
        let mut cmd = gui_in_lab(lab, dir, true, "epiphany-browser", &[&format!("--profile={}", profile.display()), URL]);
        cmd.env("GSETTINGS_BACKEND", "keyfile").env("WEBKIT_DISABLE_SANDBOX_THIS_IS_DANGEROUS", "1");
        cmd
    };
    load_the_lab_page_until("epiphany", &["epiphany-browser", "openssl"], &gui_ends(SERVED), &expect, epiphany, nothing_to_check).await;
}

/// QtWebEngine 5.15's row: Chromium 87's network stack, in the browser's own process, with
/// BoringSSL inside `libQt5WebEngineCore.so.5`.
const fn qtwebengine_row(package: &'static str) -> Browser {
    Browser {
        package,
        engine: "QtWebEngine 5.15 (Chromium 87's net)",
        network_process: "the browser (QtWebEngine runs Chromium's network service in process)",
        dns_limit: None,
        tls_limit: None,
        requests_limit: None,
        quic: table::QUIC_NOT_TESTED,
    }
}

/// What QtWebEngine's page load shows: Chromium 87's network stack (HTTP/2; its DNS
/// client asks for A records only, no HTTPS records yet) with BoringSSL found by signature in
/// libQt5WebEngineCore.
const QTWEBENGINE: Expect = Expect {
    protocol: "HTTP/2",
    request_version: None,
    subresources: &["/app.css", "/app.js", "/logo.png"],
    name: "",
    https_rr: false,
    tls_library: "boringssl",
    handshake_end_seen: true,
    background_failures: true,
    sends_sni: true,
    loopback_ipc: false,
    table: None,
};

/// falkon's settings: no ad-block (its first start downloads EasyList), no DNS prefetch.
const FALKON_SETTINGS: &str = "[AdBlock]\nenabled=false\n[Web-Browser-Settings]\nDNSPrefetch=false\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falkon_page_load() {
    let expect = Expect { name: "falkon", table: Some(qtwebengine_row("falkon")), ..QTWEBENGINE };
    let falkon = |lab: &Lab, dir: &Path| {
        let profile = dir.join(".config/falkon/profiles/default");
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::write(profile.join("settings.ini"), FALKON_SETTINGS).unwrap();
        let mut cmd = gui_in_lab(lab, dir, false, "falkon", &["--no-extensions", URL]);
        qtwebengine_env(&mut cmd, dir, lab);
        cmd
    };
    load_the_lab_page_until("falkon", &["falkon", "certutil"], &gui_ends(QTWEBENGINE.subresources), &expect, falkon, nothing_to_check).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qutebrowser_page_load() {
    let expect = Expect { name: "qutebrowser", table: Some(qtwebengine_row("qutebrowser")), ..QTWEBENGINE };
    let qutebrowser = |lab: &Lab, dir: &Path| {
        let basedir = dir.join("qutebrowser");
        let mut cmd = gui_in_lab(
            lab,
            dir,
            false,
            "qutebrowser",
            &["--basedir", &basedir.display().to_string(), "-s", "content.blocking.enabled", "false", URL],
        );
        qtwebengine_env(&mut cmd, dir, lab);
        cmd
    };
    load_the_lab_page_until("qutebrowser", &["qutebrowser", "certutil"], &gui_ends(QTWEBENGINE.subresources), &expect, qutebrowser, nothing_to_check)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn konqueror_page_load() {
    let expect = Expect { name: "konqueror", table: Some(qtwebengine_row("konqueror")), ..QTWEBENGINE };
    let konqueror = |lab: &Lab, dir: &Path| {
        let mut cmd = gui_in_lab(lab, dir, true, "konqueror", &[URL]);
        qtwebengine_env(&mut cmd, dir, lab);
        cmd
    };
    load_the_lab_page_until("konqueror", &["konqueror", "certutil"], &gui_ends(QTWEBENGINE.subresources), &expect, konqueror, nothing_to_check)
        .await;
}
