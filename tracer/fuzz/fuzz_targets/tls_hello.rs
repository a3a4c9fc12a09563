//! The `tls_hello` fuzz target: the check is in `../checks/tls_hello.rs`, shared with the corpus
//! replay of the normal test run (`tracer/tests/fuzz_corpus.rs`).
#![no_main]

#[path = "../checks/tls_hello.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::run(data));
