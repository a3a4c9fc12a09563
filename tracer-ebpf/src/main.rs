//! eBPF side of the tracer: tracepoint and uprobe programs that report each stage of a
//! page load (connect, TCP state, DNS messages, TLS plaintext, process lifecycle) into one
//! ring buffer. One module per probe family; every program is a thin wrapper around a
//! `try_*` function so that early returns stay readable.
#![no_std]
// For `atomic_xadd` (see tls::fd_unknown_add): the target has no CAS, so no atomic types' RMW.
#![feature(core_intrinsics)]
#![allow(internal_features)]
#![no_main]

mod common;
mod filter;
mod net;
mod dns;
mod libc;
mod sock;
mod tls;
mod quic;
mod process;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
