//! tracer: every page load on this machine, seen from the kernel.
pub mod bench;
pub mod batch;
pub mod daemon;
pub mod db;
pub mod decode;
pub mod events;
pub mod http;
pub mod fetch;
pub mod filter;
pub mod history;
pub mod metrics;
pub mod otlp;
pub mod printer;
pub mod privileges;
pub mod probes;
pub mod procfs;
pub mod redact;
pub mod stitch;
pub mod stream;
pub mod web;
#[cfg(test)]
mod test_rng;

pub mod lab;
