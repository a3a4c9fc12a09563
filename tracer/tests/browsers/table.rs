//! The README's "Browsers" table, from the tests' results: each browser test that passed
//! writes its row to `target/tmp/browser-table/NAME.row` (one Markdown table row), and
//! `cargo xtask browsers-table` puts the rows, in the README's order, between the table's
//! markers. A row is written only after every check of its test passed, so a row says what
//! that run saw: "yes" where the test checked it in full, "partial (why)" or "no (why)" exactly
//! where the test asserts a known limit instead.
use std::path::PathBuf;

use tracer::stitch::model::PageLoad;

/// What the README says of one browser, beside what the test saw.
#[derive(Debug, Clone, Copy)]
pub struct Browser {
    /// The Debian package (its installed version goes in the row).
    pub package: &'static str,
    /// The browser engine and its HTTP stack.
    pub engine: &'static str,
    /// The process that does the network work ("the browser" when it is the one started).
    pub network_process: &'static str,
    /// Set where the test asserts a known limit of that column instead of the full check:
    /// the README's words for it, e.g. "partial (...)".
    pub dns_limit: Option<&'static str>,
    pub tls_limit: Option<&'static str>,
    pub requests_limit: Option<&'static str>,
    /// The QUIC column: whether the browser speaks HTTP/3, and what of it is traced.
    pub quic: &'static str,
}

/// Browsers with no HTTP/3 in their Debian 12 build.
pub const NO_HTTP3: &str = "no (no HTTP/3 in this build)";
/// QtWebEngine's browsers: their tests start them with `--disable-quic` (QtWebEngine's
/// Chromium flags), as the TCP tests of Chromium do; no test loads the lab over HTTP/3 with them.
pub const QUIC_NOT_TESTED: &str = "not tested (the tests start it with `--disable-quic`)";
/// The QUIC cell of a browser whose HTTP/3 tests (`http3.rs`) write it in parts
/// ([`record_quic`]): `cargo xtask browsers-table` puts the parts there, and fails while the
/// browser has none.
pub const QUIC_FROM_HTTP3_TESTS: &str = "{quic: from the HTTP/3 tests}";

/// Chromium's QUIC cell, one part per HTTP/3 test (in the order of the part names).
pub const CHROMIUM_QUIC: [(&str, &str); 4] = [
    ("1-forced", "yes, forced (`--origin-to-force-quic-on`): the document on a QUIC connection with its handshake, SNI, ALPN `h3`, QUIC v1, cipher, HAR `h3`"),
    (
        "2-discovery",
        "by the HTTPS record it tries QUIC but closes it on the lab CA (TLS alert 46: its QUIC takes no root outside its built-in store, see *Browsers*), so the page shows the failed attempt beside TCP; with the root allowed, QUIC by the HTTPS record (racing TCP for the document)",
    ),
    ("3-drop", "UDP 443 dropped: the unanswered attempt beside the TCP fall back"),
    ("4-refuse", "refused: the attempt's ICMP port unreachable beside the TCP fall back"),
];
/// Firefox's QUIC cell.
pub const FIREFOX_QUIC: (&str, &str) = (
    "1-https-record",
    "yes, by the HTTPS record (`network.http.http3.*`; `disable_when_third_party_roots_found` off for the lab CA): the document on a QUIC connection with its handshake, SNI, ALPN `h3`, QUIC v1, cipher, HAR `h3`",
);

/// The installed version of a Debian package (`dpkg-query`), or "?" where dpkg has none.
fn version(package: &str) -> String {
    std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// Where the rows go: `target/tmp/browser-table/`.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-table")
}

/// The row of `b` from its checked page load `p`: the TLS library and the count of requests
/// are the trace's own.
pub fn row(b: &Browser, p: &PageLoad) -> String {
    let libraries: Vec<String> = {
        // Of the connections that carried requests (a preconnect the browser dropped before
        // its handshake shows only on the wire).
        let mut v: Vec<String> =
            p.connections.iter().filter(|c| c.requests > 0).filter_map(|c| c.tls.as_ref()).map(|t| t.library.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    let with_method = p.requests.iter().filter(|r| r.method.is_some() && r.status.is_some()).count();
    let yes = |limit: Option<&str>, what: String| limit.map_or(what, str::to_string);
    [
        format!("`{}`", b.package),
        version(b.package),
        b.engine.to_string(),
        if libraries.is_empty() { "none".into() } else { libraries.join(", ") },
        b.network_process.to_string(),
        yes(b.dns_limit, "yes (CNAME chain)".into()),
        "yes".into(),
        yes(b.tls_limit, "yes".into()),
        yes(b.requests_limit, format!("yes ({with_method}, each as the lab logged it)")),
        b.quic.to_string(),
    ]
    .iter()
    .fold(String::from("|"), |row, cell| format!("{row} {cell} |"))
}

/// Writes `b`'s row (after its test's checks passed).
pub fn record(b: &Browser, p: &PageLoad) {
    let dir = dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.row", b.package));
    std::fs::write(&path, row(b, p) + "\n").unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    eprintln!("{}: README row written to {}", b.package, path.display());
}

/// Writes one part (`name`, `text`) of `package`'s QUIC cell (after its test's checks passed):
/// `target/tmp/browser-table/PACKAGE.quic/NAME`.
pub fn record_quic(package: &str, (name, text): (&str, &str)) {
    let dir = dir().join(format!("{package}.quic"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    eprintln!("{package}: README QUIC cell part written to {}", path.display());
}
