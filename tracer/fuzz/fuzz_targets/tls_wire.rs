//! The `tls_wire` fuzz target: the check is in `../checks/tls_wire.rs`, shared with the corpus
//! replay of the normal test run (`tracer/tests/fuzz_corpus.rs`).
#![no_main]

#[path = "../checks/transcript.rs"]
mod transcript;
#[path = "../checks/tls_wire.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|t: transcript::Transcript| checks::run(t));
