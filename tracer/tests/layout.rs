//! The layout's rule (README, *Layout*): a record travels probes -> stream -> decode -> filter
//! -> stitch -> history -> serve, `daemon/` wires them, and a module imports only the stages
//! before it, the leaves, and what stands beside the path as listed here. This test reads every
//! `crate::` path in the library's code (tests left out: they may reach anywhere) and fails on
//! an import the table below does not allow, naming the file and the import.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Modules that import nothing of the crate but other leaves.
const LEAVES: &[&str] = &["batch", "clock", "failure", "har", "privileges", "procfs", "redact", "test_rng"];

/// What each top-level module may import besides itself and the leaves.
fn allowed(module: &str) -> Option<&'static [&'static str]> {
    Some(match module {
        "probes" => &[],
        "stream" => &["probes", "decode"],
        "decode" => &[],
        "filter" => &["probes", "stream"],
        "stitch" => &["stream", "decode"],
        "history" => &["stitch", "fetch"],
        "serve" => &["history", "stitch", "stream", "probes", "fetch"],
        "daemon" => &["probes", "stream", "decode", "filter", "stitch", "history", "serve"],
        // Beside the path: the fetcher uses the lab's test support only; the lab nothing.
        "fetch" => &["lab"],
        "lab" => &[],
        // The benchmarks drive the whole daemon, the fetcher, the lab and the dashboard.
        "bench" => &["probes", "stream", "decode", "filter", "stitch", "history", "serve", "daemon", "fetch", "lab"],
        leaf if LEAVES.contains(&leaf) => &[],
        _ => return None,
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code without comments and without its test code: files named `tests*.rs` or
/// `test_util.rs` are left out whole, and a file's `#[cfg(test)]` items from that line on
/// (the crate keeps its unit tests at the end of a file).
fn code_of(path: &Path, text: &str) -> String {
    let name = path.file_name().unwrap().to_string_lossy();
    if name.starts_with("tests") || name == "test_util.rs" {
        return String::new();
    }
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        // A trailing comment may name a path in prose.
        let code = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// The top-level modules `code` names through `crate::`: `crate::a::b`, and each first name
/// of a `crate::{a::x, b, c::{..}}` group.
fn imported_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while let Some(i) = code[at..].find("crate::") {
        let start = at + i + "crate::".len();
        at = start;
        // `$crate::` in a macro, or `tracer_crate::` style names, are not this crate's paths.
        let before = code[..start - "crate::".len()].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if bytes.get(start) == Some(&b'{') {
            let mut depth = 0usize;
            let mut name = String::new();
            let mut expect_name = true;
            for (j, c) in code[start..].char_indices() {
                match c {
                    '{' => {
                        depth += 1;
                        if depth > 1 {
                            expect_name = false;
                        }
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            if !name.is_empty() {
                                out.insert(std::mem::take(&mut name));
                            }
                            at = start + j;
                            break;
                        }
                    }
                    ',' if depth == 1 => {
                        if !name.is_empty() {
                            out.insert(std::mem::take(&mut name));
                        }
                        expect_name = true;
                    }
                    c if depth == 1 && expect_name && (c.is_alphanumeric() || c == '_') => name.push(c),
                    c if depth == 1 && expect_name && !name.is_empty() && !c.is_whitespace() => {
                        out.insert(std::mem::take(&mut name));
                        expect_name = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = code[start..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn every_import_follows_the_pipeline_order() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut broken = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue; // the crate root and the command line wire everything.
        }
        let text = std::fs::read_to_string(path).unwrap();
        let Some(allow) = allowed(&module) else {
            broken.push(format!("{}: top-level module `{module}` has no row in this test's table", rel.display()));
            continue;
        };
        for import in imported_modules(&code_of(path, &text)) {
            if import == module || LEAVES.contains(&import.as_str()) && LEAVES.contains(&module.as_str()) {
                continue;
            }
            let fine = allow.contains(&import.as_str()) || LEAVES.contains(&import.as_str()) && !LEAVES.contains(&module.as_str());
            seen.entry(module.clone()).or_default().insert(import.clone());
            if !fine {
                broken.push(format!("{} imports crate::{import}, which `{module}` may not", rel.display()));
            }
        }
    }
    assert!(broken.is_empty(), "imports against the layout's rule:\n{}", broken.join("\n"));
    // The reading itself must see the imports the pipeline is made of.
    for (module, import) in [("stitch", "stream"), ("history", "stitch"), ("serve", "history"), ("daemon", "serve")] {
        assert!(
            seen.get(module).is_some_and(|s| s.contains(import)),
            "{module} -> {import} not seen: the import reader is broken ({seen:?})"
        );
    }
}

#[test]
fn the_import_reader_reads_groups_and_paths() {
    let code = "use crate::{stitch::model::{A, B}, clock, history::{self, db}};\nlet x = crate::serve::metrics::f();\nmacro_rules! m { () => { $crate::probes::x } }";
    let got = imported_modules(code);
    let want: BTreeSet<String> = ["stitch", "clock", "history", "serve"].iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want);
    let commented = code_of(Path::new("x.rs"), "//! crate::daemon\nuse crate::clock; // crate::serve\n#[cfg(test)]\nmod tests { use crate::bench; }\n");
    assert_eq!(imported_modules(&commented), ["clock".to_string()].into_iter().collect());
}
