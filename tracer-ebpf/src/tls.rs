//! TLS plaintext at the library boundary: OpenSSL (and BoringSSL by offset), GnuTLS and
//! NSPR/NSS, by uprobes on the file (so processes started before or after the daemon are
//! covered alike).
//!
//! An entry program remembers the call (object, buffer, length) per thread; one shared
//! return program copies the plaintext that was really written or read. While a call is in
//! flight the read/write syscall tracepoints note which fd it used (`learn_fd`), which is
//! how a TLS object is tied to its socket even when it was set up before the daemon started.
//! Nested calls (SSL_connect -> SSL_do_handshake) are counted so only the outermost reports.
use aya_ebpf::{
    macros::{map, uprobe, uretprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
};
use core::intrinsics::AtomicOrdering;
use tracer_common::{
    DIR_RECV, DIR_SEND, EventKind, HANDSHAKE_ENTER, HANDSHAKE_RETURN, TLS_CAPTURE_DEFAULT,
    TLS_CAPTURE_MAX, TLS_DATA_HEAD, TlsDataEvent, TlsFdEvent, TlsFunc, TlsHandshakeEvent, TlsLib,
    handshake_would_block,
};

use crate::common::{header, now, pid_tgid, read_user_bytes, submit, submit_cut};
use crate::filter;

/// Load-time constant: plaintext bytes copied per call (clamped to TLS_CAPTURE_MAX).
#[unsafe(no_mangle)]
static TLS_CAPTURE_BYTES: u32 = TLS_CAPTURE_DEFAULT as u32;

/// Plaintext bytes copied per call, as the daemon set it (shared with the QUIC plaintext).
#[inline(always)]
pub fn capture_bytes() -> u32 {
    unsafe { core::ptr::read_volatile(&TLS_CAPTURE_BYTES) }
}

#[derive(Clone, Copy)]
#[repr(C)]
pub struct TlsCall {
    pub start_ns: u64,
    pub obj: u64,
    pub buf: u64,
    /// `size_t *` of the `_ex` functions, 0 otherwise.
    pub ex_len: u64,
    pub fd: i32,
    pub depth: u32,
    pub lib: u8,
    pub func: u8,
    pub direction: u8,
    /// 1 when `fd` came from TLS_FDS at entry: nothing new to remember at the return.
    pub fd_cached: u8,
    pub _pad2: u32,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct ObjKey {
    tgid: u32,
    _pad: u32,
    obj: u64,
}

/// Data calls in flight, by thread. Removed by the return program on every path.
#[map]
static TLS_CALLS: HashMap<u64, TlsCall> = HashMap::with_max_entries(8192, 0);
/// Handshake calls in flight, by thread.
#[map]
static HANDSHAKES: HashMap<u64, TlsCall> = HashMap::with_max_entries(8192, 0);
/// TLS object -> socket fd, learned from SSL_set_fd & co. or from syscalls inside a call.
/// Cleaned when the object is freed; LRU-bounded for objects never freed.
#[map]
static TLS_FDS: LruHashMap<ObjKey, i32> = LruHashMap::with_max_entries(65536, 0);
/// OpenSSL objects on the server side of their connection (`SSL_set_accept_state`, which
/// nginx, Python and `openssl s_server` call before the handshake). A page-load tracer has no
/// use for a server's plaintext, and copying it cost a busy server more than the trap itself
/// (benchmark 2), so their calls are not recorded at all. Cleaned when the object is freed;
/// LRU-bounded for objects never freed.
#[map]
static SERVER_OBJS: LruHashMap<ObjKey, u8> = LruHashMap::with_max_entries(65536, 0);
/// Objects whose handshake start was reported. A non-blocking client (wrk, a browser's
/// network thread) calls the handshake function again each time its socket is ready, and only
/// the first entry says when the handshake began. Cleared when the handshake ends and when the
/// object is freed; used only for libraries whose free is probed (an address reused without a
/// free seen would otherwise hide the next handshake's start). LRU-bounded.
#[map]
static HS_STARTED: LruHashMap<ObjKey, u8> = LruHashMap::with_max_entries(65536, 0);
/// One record being assembled per CPU (too large for the 512-byte stack).
#[map]
static SCRATCH: PerCpuArray<TlsDataEvent> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn obj_key(obj: u64) -> ObjKey {
    ObjKey { tgid: (pid_tgid() >> 32) as u32, _pad: 0, obj }
}

#[inline(always)]
fn known_fd(obj: u64) -> i32 {
    unsafe { TLS_FDS.get(&obj_key(obj)) }.copied().unwrap_or(-1)
}

/// In-flight calls (entries of TLS_CALLS and HANDSHAKES) that do not know their fd yet, on
/// the whole machine. Every socket call of every process asks [`learn_fd`]; while this is 0
/// (nearly always: an object's fd is known from its first call on) the answer is one array
/// load instead of two hash lookups. Kept exact at each change of an entry; an entry left
/// behind by a thread that died inside a call only sends the check on to the lookups.
#[map]
static FD_UNKNOWN: Array<u64> = Array::with_max_entries(1, 0);

#[inline(always)]
fn fd_unknown_add(delta: i64) {
    if let Some(p) = FD_UNKNOWN.get_ptr_mut(0) {
        // Wrapping add: -1 is a decrement. The result is unused, so this is BPF's plain
        // atomic add (`lock +=`). The bpfel target has no compare-and-swap, so core's
        // atomic types offer no fetch_add here: the intrinsic is what they would call.
        unsafe { core::intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, delta as u64) };
    }
}

/// Whether some in-flight TLS call does not know its fd yet (see [`FD_UNKNOWN`]).
#[inline(always)]
pub fn fd_unknown() -> bool {
    match FD_UNKNOWN.get(0) {
        Some(n) => (unsafe { core::ptr::read_volatile(n) }) != 0,
        None => true,
    }
}

/// Called from the read/write syscall tracepoints: if this thread is inside a TLS call that
/// does not know its fd yet, this is it.
#[inline(always)]
pub fn learn_fd(fd: i32) {
    match FD_UNKNOWN.get(0) {
        Some(n) if unsafe { core::ptr::read_volatile(n) } == 0 => return,
        _ => {}
    }
    let id = pid_tgid();
    if let Some(c) = TLS_CALLS.get_ptr_mut(&id) {
        unsafe {
            if (*c).fd < 0 {
                (*c).fd = fd;
                fd_unknown_add(-1);
            }
        }
    }
    if let Some(c) = HANDSHAKES.get_ptr_mut(&id) {
        unsafe {
            if (*c).fd < 0 {
                (*c).fd = fd;
                fd_unknown_add(-1);
            }
        }
    }
}

#[inline(always)]
fn enter(map: &HashMap<u64, TlsCall>, ctx: &ProbeContext, lib: TlsLib, func: TlsFunc, dir: u8, ex: bool) -> Option<TlsCall> {
    let id = pid_tgid();
    if let Some(c) = map.get_ptr_mut(&id) {
        unsafe { (*c).depth += 1 };
        return None;
    }
    let obj: u64 = ctx.arg(0).unwrap_or(0);
    // `lib` is a constant in each probe, so only OpenSSL's pay for this lookup.
    if lib as u8 == TlsLib::OpenSsl as u8 && unsafe { SERVER_OBJS.get(&obj_key(obj)) }.is_some() {
        return None;
    }
    let fd = known_fd(obj);
    let call = TlsCall {
        start_ns: now(),
        obj,
        buf: ctx.arg(1).unwrap_or(0),
        ex_len: if ex { ctx.arg(3).unwrap_or(0) } else { 0 },
        fd,
        depth: 0,
        lib: lib as u8,
        func: func as u8,
        direction: dir,
        fd_cached: (fd >= 0) as u8,
        _pad2: 0,
    };
    if map.insert(&id, &call, 0).is_ok() && call.fd < 0 {
        fd_unknown_add(1);
    }
    Some(call)
}

/// Pop this thread's call; None while returning from a nested one.
#[inline(always)]
fn leave(map: &HashMap<u64, TlsCall>) -> Option<TlsCall> {
    let id = pid_tgid();
    let c = map.get_ptr_mut(&id)?;
    unsafe {
        if (*c).depth > 0 {
            (*c).depth -= 1;
            return None;
        }
    }
    let call = unsafe { *c };
    let _ = map.remove(&id);
    if call.fd < 0 {
        fd_unknown_add(-1);
    } else if call.fd_cached == 0 {
        // Learned inside this call. (An LRU update on every call, known fd or not, was a
        // good part of the return program's time.)
        let _ = TLS_FDS.insert(&obj_key(call.obj), &call.fd, 0);
    }
    Some(call)
}

fn data_enter(ctx: &ProbeContext, lib: TlsLib, func: TlsFunc, dir: u8, ex: bool) -> u32 {
    // With a client filter the uprobes are attached per traced process; this check is the
    // guard for the rest (a process that left the filter, an attach that raced an exit).
    if filter::skip() {
        return 0;
    }
    let _ = enter(&TLS_CALLS, ctx, lib, func, dir, ex);
    0
}

/// Shared return program of every data function (SSL_read/write[_ex], gnutls_record_*,
/// PR_Read/Write/Recv/Send).
#[uretprobe]
pub fn tls_data_ret(ctx: RetProbeContext) -> u32 {
    // No filter check: only a traced entry made the in-flight call popped here.
    let Some(call) = leave(&TLS_CALLS) else { return 0 };
    let ret: i64 = ctx.ret();
    let n: u64 = if call.ex_len != 0 {
        // SSL_read_ex/SSL_write_ex: 1 on success, count in *ex_len.
        if ret != 1 {
            return 0;
        }
        match unsafe { aya_ebpf::helpers::bpf_probe_read_user(call.ex_len as *const u64) } {
            Ok(v) => v,
            Err(_) => return 0,
        }
    } else {
        // int/ssize_t functions: > 0 bytes moved; <= 0 is EOF, error or "try again".
        let r = if call.func == TlsFunc::gnutls_record_send as u8
            || call.func == TlsFunc::gnutls_record_recv as u8
        {
            ret
        } else {
            ret as i32 as i64
        };
        if r <= 0 {
            return 0;
        }
        r as u64
    };

    emit_plaintext(EventKind::TlsData, &call, n);
    0
}

/// Copy up to TLS_CAPTURE_BYTES of the `n` bytes at `call.buf` into one variable-length
/// record. Shared by TLS data and plain socket data (port 80).
#[inline(always)]
pub fn emit_plaintext(kind: EventKind, call: &TlsCall, n: u64) {
    let Some(ev) = SCRATCH.get_ptr_mut(0) else { return };
    let mut cap = unsafe { core::ptr::read_volatile(&TLS_CAPTURE_BYTES) } as usize;
    if cap > TLS_CAPTURE_MAX {
        cap = TLS_CAPTURE_MAX;
    }
    unsafe {
        (*ev).header = header(kind, 0);
        (*ev).start_ns = call.start_ns;
        (*ev).tls_obj = call.obj;
        (*ev).fd = call.fd;
        (*ev).len = n as u32;
        (*ev).lib = call.lib;
        (*ev).direction = call.direction;
        (*ev).func = call.func;
        (*ev)._pad = 0;
        let mut want = n;
        if want > cap as u64 {
            want = cap as u64;
        }
        let got = read_user_bytes((*ev).data.as_mut_ptr(), call.buf, want, TLS_CAPTURE_MAX);
        (*ev).captured = got;
        submit_cut(ev, TLS_DATA_HEAD, got, kind);
    }
}

fn handshake_enter(ctx: &ProbeContext, lib: TlsLib, func: TlsFunc) -> u32 {
    if filter::skip() {
        return 0;
    }
    if let Some(call) = enter(&HANDSHAKES, ctx, lib, func, 0, false) {
        if matches!(lib, TlsLib::OpenSsl | TlsLib::GnuTls | TlsLib::Nspr) {
            let key = obj_key(call.obj);
            if unsafe { HS_STARTED.get(&key) }.is_some() {
                return 0;
            }
            let _ = HS_STARTED.insert(&key, &1, 0);
        }
        emit_handshake(&call, HANDSHAKE_ENTER, 0);
    }
    0
}

#[uretprobe]
pub fn tls_handshake_ret(ctx: RetProbeContext) -> u32 {
    if let Some(call) = leave(&HANDSHAKES) {
        let ret: i64 = ctx.ret();
        let ret = ret as i32 as i64;
        if handshake_would_block(call.lib, ret) {
            return 0;
        }
        let _ = HS_STARTED.remove(&obj_key(call.obj));
        emit_handshake(&call, HANDSHAKE_RETURN, ret);
    }
    0
}

#[inline(always)]
fn emit_handshake(call: &TlsCall, phase: u8, ret: i64) {
    let ev = TlsHandshakeEvent {
        header: header(EventKind::TlsHandshake, core::mem::size_of::<TlsHandshakeEvent>()),
        tls_obj: call.obj,
        ret,
        fd: call.fd,
        lib: call.lib,
        func: call.func,
        phase,
        _pad: 0,
    };
    submit(&ev, EventKind::TlsHandshake);
}

/// SSL_set_fd(ssl, fd) / gnutls_transport_set_int2(session, recv_fd, send_fd).
/// The caller reads the fd argument with a literal index: a runtime index becomes a
/// variable offset into the context, which the verifier rejects.
#[inline(always)]
fn set_fd(ctx: &ProbeContext, lib: TlsLib, func: TlsFunc, fd: Option<u64>) -> u32 {
    if filter::skip() {
        return 0;
    }
    let obj: u64 = ctx.arg(0).unwrap_or(0);
    let fd = fd.unwrap_or(u64::MAX) as i32;
    if fd < 0 {
        return 0;
    }
    let key = obj_key(obj);
    if unsafe { TLS_FDS.get(&key) } == Some(&fd) {
        // Known already (wrk sets the fd again before each retry of SSL_connect).
        return 0;
    }
    let _ = TLS_FDS.insert(&key, &fd, 0);
    let ev = TlsFdEvent {
        header: header(EventKind::TlsFd, core::mem::size_of::<TlsFdEvent>()),
        tls_obj: obj,
        fd,
        lib: lib as u8,
        func: func as u8,
        _pad: 0,
    };
    submit(&ev, EventKind::TlsFd);
    0
}

/// SSL_free / gnutls_deinit / PR_Close: forget the object.
#[uprobe]
pub fn tls_free(ctx: ProbeContext) -> u32 {
    if filter::skip() {
        return 0;
    }
    let obj: u64 = ctx.arg(0).unwrap_or(0);
    let key = obj_key(obj);
    let _ = TLS_FDS.remove(&key);
    let _ = SERVER_OBJS.remove(&key);
    let _ = HS_STARTED.remove(&key);
    0
}

/// SSL_set_accept_state(ssl): this object serves; see SERVER_OBJS.
#[uprobe]
pub fn ssl_set_accept_state(ctx: ProbeContext) -> u32 {
    if filter::skip() {
        return 0;
    }
    let obj: u64 = ctx.arg(0).unwrap_or(0);
    let _ = SERVER_OBJS.insert(&obj_key(obj), &1, 0);
    0
}

macro_rules! data_probe {
    ($name:ident, $lib:ident, $func:ident, $dir:expr, $ex:expr) => {
        #[uprobe]
        pub fn $name(ctx: ProbeContext) -> u32 {
            data_enter(&ctx, TlsLib::$lib, TlsFunc::$func, $dir, $ex)
        }
    };
}

macro_rules! handshake_probe {
    ($name:ident, $lib:ident, $func:ident) => {
        #[uprobe]
        pub fn $name(ctx: ProbeContext) -> u32 {
            handshake_enter(&ctx, TlsLib::$lib, TlsFunc::$func)
        }
    };
}

// OpenSSL (libssl.so.3 and 1.1)
data_probe!(ssl_write, OpenSsl, SSL_write, DIR_SEND, false);
data_probe!(ssl_read, OpenSsl, SSL_read, DIR_RECV, false);
data_probe!(ssl_write_ex, OpenSsl, SSL_write_ex, DIR_SEND, true);
data_probe!(ssl_read_ex, OpenSsl, SSL_read_ex, DIR_RECV, true);
handshake_probe!(ssl_do_handshake, OpenSsl, SSL_do_handshake);
handshake_probe!(ssl_connect, OpenSsl, SSL_connect);
#[uprobe]
pub fn ssl_set_fd(ctx: ProbeContext) -> u32 {
    set_fd(&ctx, TlsLib::OpenSsl, TlsFunc::SSL_set_fd, ctx.arg(1))
}

// BoringSSL inside a stripped binary, attached at file offsets.
data_probe!(boringssl_write, BoringSsl, SSL_write, DIR_SEND, false);
data_probe!(boringssl_read, BoringSsl, SSL_read, DIR_RECV, false);
handshake_probe!(boringssl_do_handshake, BoringSsl, SSL_do_handshake);

// The built-in fetcher's probe points (tracer_tls_* in the tracer binary), OpenSSL-shaped.
data_probe!(rustls_write, Rustls, SSL_write, DIR_SEND, false);
data_probe!(rustls_read, Rustls, SSL_read, DIR_RECV, false);
handshake_probe!(rustls_handshake, Rustls, SSL_do_handshake);
#[uprobe]
pub fn rustls_set_fd(ctx: ProbeContext) -> u32 {
    set_fd(&ctx, TlsLib::Rustls, TlsFunc::SSL_set_fd, ctx.arg(1))
}

// GnuTLS (libgnutls.so.30)
data_probe!(gnutls_record_send, GnuTls, gnutls_record_send, DIR_SEND, false);
data_probe!(gnutls_record_recv, GnuTls, gnutls_record_recv, DIR_RECV, false);
handshake_probe!(gnutls_handshake, GnuTls, gnutls_handshake);
#[uprobe]
pub fn gnutls_transport_set_int2(ctx: ProbeContext) -> u32 {
    set_fd(&ctx, TlsLib::GnuTls, TlsFunc::gnutls_transport_set_int2, ctx.arg(2))
}

// NSPR (libnspr4.so) and NSS (libssl3.so)
data_probe!(pr_write, Nspr, PR_Write, DIR_SEND, false);
data_probe!(pr_read, Nspr, PR_Read, DIR_RECV, false);
data_probe!(pr_send, Nspr, PR_Send, DIR_SEND, false);
data_probe!(pr_recv, Nspr, PR_Recv, DIR_RECV, false);
handshake_probe!(nss_force_handshake, Nspr, SSL_ForceHandshake);
