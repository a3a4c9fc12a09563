//! Client filter (`tracer run --pid PID`, `--comm NAME`, `-- COMMAND`), in the style of bcc's
//! tcpconnlat: load-time constants plus a map of traced processes.
//!
//! With `FILTER_ENABLED` = 0 (the default) every check here is constant-false and the
//! verifier prunes it: unfiltered tracing costs nothing extra. With the filter on, every
//! program raised in process context returns first thing unless the current tgid is in
//! `TRACED`. Exceptions, because they run with a random current task:
//! - `inet_sock_set_state` keeps state changes of sockets whose connect/listen a traced
//!   process made (`TRACED_SOCKS`, filled at CLOSE -> SYN_SENT/LISTEN in process context,
//!   emptied at -> CLOSE). Unfiltered, the same map holds every client socket (CLOSE ->
//!   SYN_SENT), so that server-side sockets cost no record: page loads are made of clients;
//! - `inet_sk_error_report` has no socket address: it keeps errors on destinations that a
//!   traced process connected to (`TRACED_FLOWS`).
//!
//! Return programs (syscall exits, uretprobes) act only on their in-flight entry, which only
//! a traced entry program can have made, so that entry is their filter.
use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap},
};
use tracer_common::{FlowKey, SockAddr, TASK_COMM_LEN, TRACED_MAX};

use crate::common::pid_tgid;

/// Load-time constant: 0 = trace every process, 1 = only those in `TRACED`.
#[unsafe(no_mangle)]
static FILTER_ENABLED: u32 = 0;

/// Load-time constant: a process that execs into this `comm` becomes traced (all zero: none).
#[unsafe(no_mangle)]
static FILTER_COMM: [u8; TASK_COMM_LEN] = [0; TASK_COMM_LEN];

/// Traced processes by tgid (and, harmlessly, the thread ids of their threads).
#[map(name = "TRACED")]
static TRACED: HashMap<u32, u8> = HashMap::with_max_entries(TRACED_MAX, 0);

/// Sockets a traced process connected (or listened) with, by kernel socket address.
#[map(name = "TRACED_SOCKS")]
static TRACED_SOCKS: LruHashMap<u64, u8> = LruHashMap::with_max_entries(65536, 0);

/// Destinations traced processes connected to (for error reports, which have no skaddr).
#[map(name = "TRACED_FLOWS")]
static TRACED_FLOWS: LruHashMap<FlowKey, u8> = LruHashMap::with_max_entries(4096, 0);

#[inline(always)]
pub fn enabled() -> bool {
    unsafe { core::ptr::read_volatile(&FILTER_ENABLED) != 0 }
}

#[inline(always)]
pub fn is_traced(tgid: u32) -> bool {
    unsafe { TRACED.get(&tgid) }.is_some()
}

/// First check of every process-context program: true when this event is to be dropped.
#[inline(always)]
pub fn skip() -> bool {
    enabled() && !is_traced((pid_tgid() >> 32) as u32)
}

#[inline(always)]
pub fn add(id: u32) {
    let _ = TRACED.insert(&id, &1, 0);
}

#[inline(always)]
pub fn remove(id: u32) {
    let _ = TRACED.remove(&id);
}

/// With `--comm NAME`: does this comm equal NAME (all 16 bytes, NUL-padded)?
#[inline(always)]
pub fn comm_matches(comm: &[u8; TASK_COMM_LEN]) -> bool {
    let want: [u8; TASK_COMM_LEN] = unsafe { core::ptr::read_volatile(&FILTER_COMM) };
    if want[0] == 0 {
        return false;
    }
    let a = u64::from_ne_bytes([want[0], want[1], want[2], want[3], want[4], want[5], want[6], want[7]]);
    let b = u64::from_ne_bytes([want[8], want[9], want[10], want[11], want[12], want[13], want[14], want[15]]);
    let c = u64::from_ne_bytes([comm[0], comm[1], comm[2], comm[3], comm[4], comm[5], comm[6], comm[7]]);
    let d = u64::from_ne_bytes([comm[8], comm[9], comm[10], comm[11], comm[12], comm[13], comm[14], comm[15]]);
    a == c && b == d
}

#[inline(always)]
pub fn sock_traced(skaddr: u64) -> bool {
    unsafe { TRACED_SOCKS.get(&skaddr) }.is_some()
}

#[inline(always)]
pub fn add_sock(skaddr: u64) {
    let _ = TRACED_SOCKS.insert(&skaddr, &1, 0);
}

#[inline(always)]
pub fn remove_sock(skaddr: u64) {
    let _ = TRACED_SOCKS.remove(&skaddr);
}

#[inline(always)]
fn flow_key(dst: &SockAddr) -> FlowKey {
    FlowKey { family: dst.family, port: dst.port, _pad: 0, addr: dst.addr }
}

#[inline(always)]
pub fn add_flow(dst: &SockAddr) {
    let _ = TRACED_FLOWS.insert(&flow_key(dst), &1, 0);
}

#[inline(always)]
pub fn flow_traced(dst: &SockAddr) -> bool {
    unsafe { TRACED_FLOWS.get(&flow_key(dst)) }.is_some()
}
