//! tracer: every page load on this machine, seen from the kernel.
pub mod batch;
pub mod bench;
pub mod clock;
pub mod daemon;
pub mod db;
pub mod failure;
pub mod decode;
pub mod fetch;
pub mod filter;
pub mod har;
pub mod history;
pub mod lab;
pub mod metrics;
pub mod otlp;
pub mod privileges;
pub mod probes;
pub mod procfs;
pub mod redact;
pub mod stitch;
pub mod stream;
pub mod web;

#[cfg(test)]
mod test_rng;
