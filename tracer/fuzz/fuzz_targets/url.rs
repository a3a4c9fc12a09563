//! The `url` fuzz target: the check is in `../checks/url.rs`, shared with the corpus
//! replay of the normal test run (`tracer/tests/fuzz_corpus.rs`).
#![no_main]

#[path = "../checks/url.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: &str| checks::run(input));
