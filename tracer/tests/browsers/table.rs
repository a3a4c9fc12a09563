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
/// Browsers that speak HTTP/3 (after Alt-Svc or an HTTPS record): the lab serves none in these
/// tests, and the daemon does not capture UDP 443 yet (issue 20's socket hooks).
pub const HTTP3_NOT_CAPTURED: &str = "no (UDP 443 not captured yet: issue 20; the lab's HTTP/3 is off here)";

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
