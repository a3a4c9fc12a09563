//! QUIC plaintext where the browsers' QUIC stacks seal and open packets (issue 22): BoringSSL's
//! `EVP_AEAD_CTX_seal` / `EVP_AEAD_CTX_open` inside Chromium (at file offsets found by code
//! signature), and NSS's `PK11_AEADOp` (`libnss3.so`), which Firefox's neqo calls for both.
//!
//! A seal is recorded at its entry (its input is the plaintext). An open's arguments are kept
//! per thread at its entry, and its output is recorded at its return when it succeeded; the
//! entry is removed at every return, whatever the outcome.
//!
//! Only calls whose additional data could be a QUIC packet header are kept: not empty, and
//! its first byte has QUIC's fixed bit (0x40). That drops, for one byte read, the TCP TLS
//! records Chromium's BoringSSL protects with the same functions (TLS 1.3's AAD is the record
//! header, 0x17 0x03 0x03 ...; TLS 1.2's starts with the 8-byte sequence number, whose high
//! byte is 0), and other users that pass no AAD. What remains for user space: matching the
//! header to a QUIC connection it knows (by its destination connection ID); another AEAD user
//! whose AAD happens to start with 0x40 set is not QUIC and matches none.
//!
//! Arguments (System V x86-64):
//! - `EVP_AEAD_CTX_seal/open(ctx, out, size_t *out_len, max_out_len, nonce, nonce_len,
//!   in, in_len, ad, ad_len)`: six in registers, `in`, `in_len`, `ad`, `ad_len` on the stack;
//!   returns 1 on success.
//! - `PK11_AEADOp(PK11Context *ctx, ivGen, int fixedbits, iv, int ivlen, aad, int aadlen,
//!   out, int *outlen, int maxout, tag, int taglen, in, int inlen)`: `aadlen` and the eight
//!   after it on the stack; returns SECSuccess (0). Which way it goes is the context's
//!   `operation`, its first field (`CKA_NSS_MESSAGE | CKA_ENCRYPT` = 0x82000104, or
//!   `| CKA_DECRYPT` = 0x82000105), as `PK11_AEADOp` itself reads it; any other context is
//!   left alone.
use aya_ebpf::{
    EbpfContext,
    helpers::bpf_probe_read_user,
    macros::{map, uprobe, uretprobe},
    maps::{LruHashMap, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{
    AeadLib, DIR_RECV, DIR_SEND, EventKind, QUIC_AAD_MAX, QUIC_NONCE_MAX, QUIC_PLAINTEXT_HEAD, QUIC_PLAINTEXT_MAX,
    QuicPlaintextEvent,
};

use crate::common::{header, now, pid_tgid, read_user_bytes, submit_cut};
use crate::filter;

/// QUIC's fixed bit in a packet's first byte (RFC 9000 17.2, 17.3).
const QUIC_FIXED_BIT: u8 = 0x40;
/// `PK11Context.operation` of a message-encrypting and a message-decrypting context.
const CKA_NSS_MESSAGE_ENCRYPT: u64 = 0x8200_0104;
const CKA_NSS_MESSAGE_DECRYPT: u64 = 0x8200_0105;

/// An AEAD call as its entry saw it.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct AeadCall {
    pub start_ns: u64,
    pub ctx: u64,
    pub counter: u64,
    /// The plaintext: the input of a seal, the output buffer of an open.
    pub buf: u64,
    /// A seal's input length (0 for an open: its length is read at the return).
    pub len: u64,
    /// An open's output length pointer (`size_t *` for BoringSSL, `unsigned *` for NSS).
    pub out_len: u64,
    pub aad: u64,
    pub aad_len: u64,
    pub nonce: u64,
    pub nonce_len: u64,
    pub lib: u8,
    pub direction: u8,
    pub _pad: [u8; 6],
}

/// Opens in flight, by thread; removed by the return program on every path. LRU: a thread
/// that dies inside a call leaves its entry to be pushed out, not to fill the map.
#[map]
static AEAD_CALLS: LruHashMap<u64, AeadCall> = LruHashMap::with_max_entries(8192, 0);
/// One record being assembled per CPU (too large for the stack).
#[map]
static AEAD_SCRATCH: PerCpuArray<QuicPlaintextEvent> = PerCpuArray::with_max_entries(1, 0);

/// The `n`th 8-byte stack argument at a function's entry (the return address is at `sp`).
#[inline(always)]
fn stack_arg(ctx: &ProbeContext, n: u64) -> u64 {
    let regs = ctx.as_ptr() as *const aya_ebpf::bindings::pt_regs;
    let sp = unsafe { (*regs).rsp };
    unsafe { bpf_probe_read_user((sp + 8 * (n + 1)) as *const u64) }.unwrap_or(0)
}

/// Whether the additional data could be a QUIC header: not empty, fixed bit set.
#[inline(always)]
fn looks_like_quic(aad: u64, aad_len: u64) -> bool {
    if aad == 0 || aad_len == 0 {
        return false;
    }
    match unsafe { bpf_probe_read_user(aad as *const u8) } {
        Ok(b) => b & QUIC_FIXED_BIT != 0,
        Err(_) => false,
    }
}

/// The call's arguments, by library (`lib` is a constant in each program).
#[inline(always)]
fn read_call(ctx: &ProbeContext, lib: AeadLib, direction: u8) -> AeadCall {
    let arg = |n: usize| -> u64 { ctx.arg(n).unwrap_or(0) };
    let mut c = AeadCall {
        start_ns: now(),
        ctx: arg(0),
        counter: 0,
        buf: 0,
        len: 0,
        out_len: 0,
        aad: 0,
        aad_len: 0,
        nonce: 0,
        nonce_len: 0,
        lib: lib as u8,
        direction,
        _pad: [0; 6],
    };
    match lib {
        AeadLib::BoringSsl => {
            c.nonce = arg(4);
            c.nonce_len = arg(5);
            c.aad = stack_arg(ctx, 2);
            c.aad_len = stack_arg(ctx, 3);
            if direction == DIR_SEND {
                c.buf = stack_arg(ctx, 0);
                c.len = stack_arg(ctx, 1);
            } else {
                c.buf = arg(1);
                c.out_len = arg(2);
            }
        }
        AeadLib::Nss => {
            c.nonce = arg(3);
            c.nonce_len = arg(4) & 0xffff_ffff;
            c.aad = arg(5);
            c.aad_len = stack_arg(ctx, 0) & 0xffff_ffff;
            if direction == DIR_SEND {
                c.buf = stack_arg(ctx, 6);
                c.len = stack_arg(ctx, 7) & 0xffff_ffff;
            } else {
                c.buf = stack_arg(ctx, 1);
                c.out_len = stack_arg(ctx, 2);
            }
        }
    }
    c
}

/// Entry of a seal: the record, now.
#[inline(always)]
fn seal_entry(ctx: &ProbeContext, lib: AeadLib) -> u32 {
    // With a client filter the uprobes are attached per traced process; this check is the
    // guard for the rest (as for the TLS probes).
    if filter::skip() {
        return 0;
    }
    let call = read_call(ctx, lib, DIR_SEND);
    if !looks_like_quic(call.aad, call.aad_len) {
        return 0;
    }
    emit(&call, call.len);
    0
}

/// Entry of an open: remember the call for its return.
#[inline(always)]
fn open_entry(ctx: &ProbeContext, lib: AeadLib) -> u32 {
    if filter::skip() {
        return 0;
    }
    let call = read_call(ctx, lib, DIR_RECV);
    if !looks_like_quic(call.aad, call.aad_len) {
        return 0;
    }
    let _ = AEAD_CALLS.insert(&pid_tgid(), &call, 0);
    0
}

/// Shared return program of both opens: the output, when the open succeeded.
#[uretprobe]
pub fn quic_aead_open_ret(ctx: RetProbeContext) -> u32 {
    let id = pid_tgid();
    let Some(c) = (unsafe { AEAD_CALLS.get(&id) }) else { return 0 };
    let call = *c;
    let _ = AEAD_CALLS.remove(&id);
    let ret: i64 = ctx.ret();
    let ok = if call.lib == AeadLib::BoringSsl as u8 { ret as i32 == 1 } else { ret as i32 == 0 };
    if !ok || call.out_len == 0 {
        return 0;
    }
    let n = if call.lib == AeadLib::BoringSsl as u8 {
        unsafe { bpf_probe_read_user(call.out_len as *const u64) }.unwrap_or(0)
    } else {
        unsafe { bpf_probe_read_user(call.out_len as *const u32) }.unwrap_or(0) as u64
    };
    emit(&call, n);
    0
}

/// Copy up to `QUIC_PLAINTEXT_MAX` (and `TLS_CAPTURE_BYTES`) of the `n` plaintext bytes, the
/// header and the nonce into one record, cut after the plaintext captured.
#[inline(always)]
fn emit(call: &AeadCall, n: u64) {
    let Some(ev) = AEAD_SCRATCH.get_ptr_mut(0) else { return };
    let mut cap = crate::tls::capture_bytes() as u64;
    if cap > QUIC_PLAINTEXT_MAX as u64 {
        cap = QUIC_PLAINTEXT_MAX as u64;
    }
    unsafe {
        (*ev).header = header(EventKind::QuicPlaintext, 0);
        (*ev).start_ns = call.start_ns;
        (*ev).ctx = call.ctx;
        (*ev).counter = call.counter;
        (*ev).len = n as u32;
        (*ev).aad_len = call.aad_len as u32;
        (*ev).lib = call.lib;
        (*ev).direction = call.direction;
        (*ev).aad_captured = read_user_bytes((*ev).aad.as_mut_ptr(), call.aad, call.aad_len, QUIC_AAD_MAX) as u8;
        (*ev).nonce_len = read_user_bytes((*ev).nonce.as_mut_ptr(), call.nonce, call.nonce_len, QUIC_NONCE_MAX) as u8;
        let want = if n > cap { cap } else { n };
        let got = read_user_bytes((*ev).data.as_mut_ptr(), call.buf, want, QUIC_PLAINTEXT_MAX);
        (*ev).captured = got;
        submit_cut(ev, QUIC_PLAINTEXT_HEAD, got, EventKind::QuicPlaintext);
    }
}

#[uprobe]
pub fn quic_boringssl_seal(ctx: ProbeContext) -> u32 {
    seal_entry(&ctx, AeadLib::BoringSsl)
}

#[uprobe]
pub fn quic_boringssl_open(ctx: ProbeContext) -> u32 {
    open_entry(&ctx, AeadLib::BoringSsl)
}

/// `PK11_AEADOp`: a seal or an open by its context's operation.
#[uprobe]
pub fn quic_nss_aead(ctx: ProbeContext) -> u32 {
    let pk11_ctx: u64 = ctx.arg(0).unwrap_or(0);
    if pk11_ctx == 0 {
        return 0;
    }
    match unsafe { bpf_probe_read_user(pk11_ctx as *const u64) } {
        Ok(CKA_NSS_MESSAGE_ENCRYPT) => seal_entry(&ctx, AeadLib::Nss),
        Ok(CKA_NSS_MESSAGE_DECRYPT) => open_entry(&ctx, AeadLib::Nss),
        _ => 0,
    }
}
