//! tracer: every page load on this machine, seen from the kernel.
pub mod batch;
pub mod bench;
pub mod clock;
pub mod daemon;
pub mod failure;
pub mod decode;
pub mod fetch;
pub mod filter;
pub mod har;
pub mod history;
pub mod lab;
pub mod privileges;
pub mod probes;
pub mod procfs;
pub mod redact;
pub mod serve;
pub mod stitch;
pub mod stream;

#[cfg(test)]
mod test_rng;
