//! The `h3` fuzz target: the check is in `../checks/h3.rs`, shared with the corpus replay of
//! the normal test run (`tracer/tests/fuzz_corpus.rs`).
#![no_main]

#[path = "../checks/h3.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::run(data);
});
