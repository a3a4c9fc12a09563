//! Every committed fuzz corpus input, replayed through its target's check in the normal test
//! build (`tracer/fuzz/checks/`, the same code `cargo fuzz` runs): each input that once found
//! new coverage, and each crash that was fixed and kept, stays checked on every test run,
//! without the sanitizer build. The coverage-guided search itself is `cargo xtask fuzz`
//! (README "Fuzzing").
use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
};

use arbitrary::{Arbitrary, Unstructured};

#[path = "../fuzz/checks/transcript.rs"]
mod transcript;

#[path = "../fuzz/checks/dns.rs"]
mod dns;
#[path = "../fuzz/checks/events.rs"]
mod events;
#[path = "../fuzz/checks/h3.rs"]
mod h3;
#[path = "../fuzz/checks/har.rs"]
mod har;
#[path = "../fuzz/checks/http.rs"]
mod http;
#[path = "../fuzz/checks/quic.rs"]
mod quic;
#[path = "../fuzz/checks/redact.rs"]
mod redact;
#[path = "../fuzz/checks/tls_hello.rs"]
mod tls_hello;
#[path = "../fuzz/checks/tls_wire.rs"]
mod tls_wire;
#[path = "../fuzz/checks/url.rs"]
mod url;

/// What libFuzzer hands a target whose input is a `&str`: nothing when the bytes are not UTF-8.
fn as_str(data: &[u8], run: fn(&str)) {
    if let Ok(s) = std::str::from_utf8(data) {
        run(s);
    }
}

/// What libFuzzer hands a target whose input is `Arbitrary`: the whole input taken as one value.
fn as_arbitrary<'a, T: Arbitrary<'a>>(data: &'a [u8], run: fn(T)) {
    if let Ok(t) = T::arbitrary_take_rest(Unstructured::new(data)) {
        run(t);
    }
}

/// Every fuzz target (the bins of tracer/fuzz/Cargo.toml) and how its input reaches its check.
const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("dns", dns::run),
    ("events", events::run),
    ("h3", |d| {
        h3::run(d);
    }),
    ("har", har::run),
    ("http", |d| as_arbitrary(d, http::run)),
    ("quic", quic::run),
    ("redact", |d| as_str(d, redact::run)),
    ("tls_hello", tls_hello::run),
    ("tls_wire", |d| as_arbitrary(d, tls_wire::run)),
    ("url", |d| as_str(d, url::run)),
];

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the committed corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_is_replayed() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml")).unwrap();
    let bins: Vec<&str> = manifest.lines().filter_map(|l| l.strip_prefix("name = \"")?.strip_suffix('"')).filter(|n| *n != "tracer-fuzz").collect();
    let mut replayed: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    replayed.sort_unstable();
    let mut bins = bins;
    bins.sort_unstable();
    assert_eq!(replayed, bins, "a fuzz target without its corpus replay here (or the other way round)");
}

#[test]
fn every_committed_corpus_input_passes_its_check() {
    let mut failures = Vec::new();
    for (target, check) in TARGETS {
        let files = corpus(target);
        assert!(!files.is_empty(), "{target}: no committed corpus");
        for f in &files {
            let data = std::fs::read(f).unwrap();
            if let Err(e) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
                let why = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                failures.push(format!("{target}: {}: {why}", f.display()));
            }
        }
        eprintln!("{target}: {} inputs", files.len());
    }
    assert!(failures.is_empty(), "{} corpus input(s) fail their check:\n{}", failures.len(), failures.join("\n"));
}

/// The hand-made `h3` seeds reach whole exchanges (so the fuzzer starts deep in the decoder).
#[test]
fn the_h3_seeds_decode_to_exchanges() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/h3");
    let get = h3::run(&std::fs::read(dir.join("seed-get")).unwrap());
    assert_eq!(get.len(), 1);
    assert!(get[0].complete && get[0].status == Some(200) && get[0].path.as_deref() == Some("/index.html"), "{get:?}");
    let blocked = h3::run(&std::fs::read(dir.join("seed-blocked-reordered")).unwrap());
    assert!(blocked.iter().any(|x| x.complete && x.authority.as_deref() == Some("shop.test")), "{blocked:?}");
    let faults = h3::run(&std::fs::read(dir.join("seed-faults")).unwrap());
    assert_eq!(faults.len(), 3, "{faults:?}");
    assert!(faults.iter().all(|x| !x.complete), "{faults:?}");
}
