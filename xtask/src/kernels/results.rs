//! What a kernel's run left behind: each suite's libtest output and exit status, added up
//! into the one line per kernel the matrix prints.

use std::path::Path;

/// One suite's outcome on one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteResult {
    pub suite: String,
    pub passed: u32,
    pub failed: u32,
    /// The test binary's exit status (None: it never reported one: the guest died or timed out).
    pub status: Option<i32>,
    /// Names of the failed tests.
    pub failures: Vec<String>,
    pub seconds: Option<u64>,
}

impl SuiteResult {
    /// A suite fails when a test failed, or when its binary did not exit 0 (a crash, the
    /// time bound) even if no test said so.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.status == Some(0) && self.passed > 0
    }
}

/// The counts of every `test result:` line of a libtest output (one per test binary), and the
/// names of the tests it reported `FAILED`.
pub fn parse_libtest(output: &str) -> (u32, u32, Vec<String>) {
    let (mut passed, mut failed) = (0, 0);
    let mut failures = Vec::new();
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("test result: ") {
            // "ok. 9 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.2s"
            for part in rest.split(';') {
                let words: Vec<&str> = part.split_whitespace().collect();
                let n = |i: usize| words.get(i).and_then(|w| w.parse::<u32>().ok());
                match words.as_slice() {
                    [.., _, "passed"] => passed += n(words.len() - 2).unwrap_or(0),
                    [.., _, "failed"] => failed += n(words.len() - 2).unwrap_or(0),
                    _ => {}
                }
            }
        } else if let Some(name) = line.strip_prefix("test ").and_then(|l| l.strip_suffix(" ... FAILED")) {
            failures.push(name.to_string());
        }
    }
    (passed, failed, failures)
}

/// The `status` file the guest script appends to: `SUITE EXIT SECONDS` per line.
pub fn parse_status(text: &str) -> Vec<(String, i32, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let suite = w.next()?.to_string();
            let code = w.next()?.parse().ok()?;
            let secs = w.next().and_then(|s| s.trim_end_matches('s').parse().ok()).unwrap_or(0);
            Some((suite, code, secs))
        })
        .collect()
}

/// Every suite of `suites` as the run in `dir` left it (`SUITE.log` and `status`); a suite
/// with no status never finished.
pub fn collect(dir: &Path, suites: &[&str]) -> Vec<SuiteResult> {
    let status = parse_status(&std::fs::read_to_string(dir.join("status")).unwrap_or_default());
    suites
        .iter()
        .map(|suite| {
            let log = std::fs::read_to_string(dir.join(format!("{suite}.log"))).unwrap_or_default();
            let (passed, failed, failures) = parse_libtest(&log);
            let st = status.iter().find(|(s, _, _)| s == suite);
            SuiteResult {
                suite: suite.to_string(),
                passed,
                failed,
                status: st.map(|(_, c, _)| *c),
                failures,
                seconds: st.map(|(_, _, s)| *s),
            }
        })
        .collect()
}

/// The `n` slowest tests of the guest's `tests` file (`SUITE TEST EXIT SECONDS` per line),
/// slowest first.
pub fn slowest_tests(text: &str, n: usize) -> Vec<(String, String, u64)> {
    let mut all: Vec<(String, String, u64)> = text
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let [suite, test, _exit, secs] = w.as_slice() else { return None };
            Some((suite.to_string(), test.to_string(), secs.trim_end_matches('s').parse().ok()?))
        })
        .collect();
    all.sort_by(|a, b| b.2.cmp(&a.2));
    all.truncate(n);
    all
}

/// `kernel 6.1.0-50-amd64: 31 passed, 0 failed`: the line the matrix prints per kernel. A
/// suite that did not exit cleanly counts as one failure even when no test reported one.
pub fn kernel_line(release: &str, results: &[SuiteResult]) -> String {
    let passed: u32 = results.iter().map(|r| r.passed).sum();
    let failed: u32 = results.iter().map(|r| if r.failed == 0 && !r.ok() { 1 } else { r.failed }).sum();
    format!("kernel {release}: {passed} passed, {failed} failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "running 3 tests\ntest a ... ok\ntest b ... FAILED\ntest c ... ok\n\nfailures:\n    b\n\n\
                       test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 5 filtered out; finished in 3.1s\n\n\
                       running 1 test\ntest d ... ok\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.2s\n";

    #[test]
    fn libtest_counts_add_up_over_binaries_and_name_the_failures() {
        assert_eq!(parse_libtest(OUT), (3, 1, vec!["b".to_string()]));
        assert_eq!(parse_libtest(""), (0, 0, vec![]));
    }

    #[test]
    fn a_suite_that_never_finished_is_a_failure() {
        let dir = tempdir();
        std::fs::write(dir.join("kernel.log"), OUT).unwrap();
        std::fs::write(dir.join("filters.log"), "test result: ok. 4 passed; 0 failed; 0 ignored\n").unwrap();
        std::fs::write(dir.join("status"), "kernel 101 40s\nfilters 0 12s\n").unwrap();
        let r = collect(&dir, &["kernel", "filters", "page_loads"]);
        assert_eq!((r[0].passed, r[0].failed, r[0].status, r[0].seconds), (3, 1, Some(101), Some(40)));
        assert!(r[1].ok());
        assert_eq!((r[2].passed, r[2].status), (0, None));
        assert!(!r[2].ok());
        assert_eq!(kernel_line("6.1.0-50-amd64", &r), "kernel 6.1.0-50-amd64: 7 passed, 2 failed");
        assert_eq!(kernel_line("6.1.0-50-amd64", &r[1..2]), "kernel 6.1.0-50-amd64: 4 passed, 0 failed");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_slowest_tests_come_first() {
        let text = "kernel a 0 12s\nfilters b 101 300s\ngarbage\nkernel c 0 40s\n";
        let s = slowest_tests(text, 2);
        assert_eq!(s, vec![("filters".into(), "b".into(), 300), ("kernel".into(), "c".into(), 40)]);
    }

    fn tempdir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-kernels-results-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
