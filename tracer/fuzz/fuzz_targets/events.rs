//! The `events` fuzz target: the check is in `../checks/events.rs`, shared with the corpus
//! replay of the normal test run (`tracer/tests/fuzz_corpus.rs`).
#![no_main]

#[path = "../checks/events.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::run(data));
