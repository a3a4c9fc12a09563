//! QUIC plaintext where the browsers' QUIC stacks seal and open packets (issue 22): BoringSSL's
//! `EVP_AEAD_CTX_seal` / `EVP_AEAD_CTX_open` inside Chromium (at file offsets found by code
//! signature), and NSS's: freebl's `AES_AEAD` and `ChaCha20Poly1305_Encrypt/Decrypt` (found
//! through freebl's function table), which Firefox ESR 153's neqo calls (nss-rs's `blapi`
//! backend), and `PK11_AEADOp` (`libnss3.so`), which neqo called before.
//!
//! A seal is recorded at its entry (its input is the plaintext). An open's arguments are kept
//! per thread at its entry, and its output is recorded at its return when it succeeded; the
//! entry is removed at every return, whatever the outcome.
//!
//! Only calls whose additional data could be a QUIC packet header are kept: not empty, its
//! first byte's reserved bits zero (as in every unprotected header) and its length one a header
//! of that form can have. The fixed bit (0x40) is not required: a peer that announced
//! `grease_quic_bit` (RFC 9287) lets the other side clear it, and neqo and quinn then do in
//! about half their packets, long headers included. That drops the TCP TLS records Chromium's
//! BoringSSL and NSS protect with the same functions (TLS 1.3's AAD is the record header,
//! 0x17 0x03 0x03 ..., whose 0x17 has a short header's reserved bit 0x10; TLS and DTLS 1.2's
//! is 13 bytes with the record type and version at 8 and 9) and other users that pass no AAD.
//! What remains for user space: matching the header to a QUIC connection it knows (by its
//! destination connection ID); another AEAD user whose AAD passes is not QUIC and matches
//! none.
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

/// A packet's first byte (RFC 9000 17.2, 17.3): the long header form, and the reserved bits of
/// a long and of a short header (zero once header protection is off, as in the AEAD's input).
const QUIC_LONG_FORM: u8 = 0x80;
const QUIC_LONG_RESERVED: u8 = 0x0c;
const QUIC_SHORT_RESERVED: u8 = 0x18;
/// The shortest long header: first byte, version, two connection ID lengths (the IDs may be
/// empty), the length and a 1-byte packet number.
const QUIC_LONG_MIN: u64 = 9;
/// The longest connection ID (RFC 9000 17.2).
const QUIC_CID_MAX: u64 = 20;
/// TLS 1.2's and DTLS 1.2's additional data: 13 bytes, the record type (20-24) at 8 and the
/// version's major byte (3, or DTLS's 0xfe) at 9.
const TLS12_AAD_LEN: u64 = 13;
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

/// Whether the additional data could be a QUIC header (see the module documentation): the
/// fixed bit is not looked at.
#[inline(always)]
fn looks_like_quic(aad: u64, aad_len: u64) -> bool {
    if aad == 0 || aad_len == 0 {
        return false;
    }
    let Ok(first) = (unsafe { bpf_probe_read_user(aad as *const u8) }) else { return false };
    if first & QUIC_LONG_FORM != 0 {
        return first & QUIC_LONG_RESERVED == 0 && aad_len >= QUIC_LONG_MIN;
    }
    // A short header: the first byte, the destination connection ID (0-20 bytes), the packet
    // number (its length in the first byte's low bits).
    let pn_len = u64::from(first & 0x03) + 1;
    if first & QUIC_SHORT_RESERVED != 0 || aad_len < 1 + pn_len || aad_len - 1 - pn_len > QUIC_CID_MAX {
        return false;
    }
    if aad_len == TLS12_AAD_LEN {
        let Ok(t) = (unsafe { bpf_probe_read_user((aad + 8) as *const [u8; 2]) }) else { return false };
        if (0x14..=0x18).contains(&t[0]) && (t[1] == 0x03 || t[1] == 0xfe) {
            return false;
        }
    }
    true
}

/// Where a function keeps its arguments (a constant in each program).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `EVP_AEAD_CTX_seal/open`.
    BoringSsl,
    /// `PK11_AEADOp`.
    Pk11,
    /// freebl's `ChaCha20Poly1305_Encrypt/Decrypt(ctx, out, unsigned *outLen, maxOut, in,
    /// unsigned inLen, nonce, nonceLen, ad, adLen, tag)`.
    FreeblChaCha,
    /// freebl's `AES_AEAD(ctx, out, unsigned *outLen, maxOut, in, unsigned inLen,
    /// CK_GCM_MESSAGE_PARAMS *params, paramsLen, aad, aadLen)`: the nonce is `params->pIv`
    /// (`ulIvLen` after it), the tag `params->pTag` (at 32).
    FreeblAes,
}

impl Layout {
    fn lib(self) -> AeadLib {
        if self == Layout::BoringSsl { AeadLib::BoringSsl } else { AeadLib::Nss }
    }
}

/// A `u64` at a user address (0 when unreadable).
#[inline(always)]
fn user_u64(at: u64) -> u64 {
    unsafe { bpf_probe_read_user(at as *const u64) }.unwrap_or(0)
}

/// The call's arguments, by layout.
#[inline(always)]
fn read_call(ctx: &ProbeContext, layout: Layout, direction: u8) -> AeadCall {
    let lib = layout.lib();
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
    match layout {
        Layout::BoringSsl => {
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
        Layout::FreeblChaCha | Layout::FreeblAes => {
            if layout == Layout::FreeblChaCha {
                c.nonce = stack_arg(ctx, 0);
                c.nonce_len = stack_arg(ctx, 1) & 0xffff_ffff;
            } else {
                let params = stack_arg(ctx, 0);
                c.nonce = user_u64(params);
                c.nonce_len = user_u64(params + 8);
            }
            c.aad = stack_arg(ctx, 2);
            c.aad_len = stack_arg(ctx, 3) & 0xffff_ffff;
            if direction == DIR_SEND {
                c.buf = arg(4);
                c.len = arg(5) & 0xffff_ffff;
            } else {
                c.buf = arg(1);
                c.out_len = arg(2);
            }
        }
        Layout::Pk11 => {
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
fn seal_entry(ctx: &ProbeContext, layout: Layout) -> u32 {
    // With a client filter the uprobes are attached per traced process; this check is the
    // guard for the rest (as for the TLS probes).
    if filter::skip() {
        return 0;
    }
    let call = read_call(ctx, layout, DIR_SEND);
    if !looks_like_quic(call.aad, call.aad_len) {
        return 0;
    }
    emit(&call, call.len);
    0
}

/// Entry of an open: remember the call for its return.
#[inline(always)]
fn open_entry(ctx: &ProbeContext, layout: Layout) -> u32 {
    if filter::skip() {
        return 0;
    }
    let call = read_call(ctx, layout, DIR_RECV);
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
    unsafe {
        fill(ev, call, call.buf, n);
        submit_cut(ev, QUIC_PLAINTEXT_HEAD, (*ev).captured, EventKind::QuicPlaintext);
    }
}

/// Plaintext bytes copied of `n`: `TLS_CAPTURE_BYTES`, at most `QUIC_PLAINTEXT_MAX`.
#[inline(always)]
fn capture_of(n: u64) -> u64 {
    let mut cap = crate::tls::capture_bytes() as u64;
    if cap > QUIC_PLAINTEXT_MAX as u64 {
        cap = QUIC_PLAINTEXT_MAX as u64;
    }
    if n > cap { cap } else { n }
}

/// Fill the record at `ev` for `call`, with `n` plaintext bytes at `buf`.
///
/// # Safety
/// `ev` points to a whole record (a per-CPU scratch or a map value).
#[inline(always)]
unsafe fn fill(ev: *mut QuicPlaintextEvent, call: &AeadCall, buf: u64, n: u64) {
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
        (*ev).captured = read_user_bytes((*ev).data.as_mut_ptr(), buf, capture_of(n), QUIC_PLAINTEXT_MAX);
    }
}

/// An `AES_AEAD` call in flight: whether it seals or opens is not in its arguments (the AES
/// context's direction is private to freebl), so its input is copied at the entry (a seal
/// in place overwrites it) with the tag buffer's 16 bytes, and the return decides: a seal
/// wrote a new tag there, an open only read it.
#[repr(C)]
pub struct AesPending {
    pub output: u64,
    pub out_len: u64,
    pub tag_ptr: u64,
    pub tag: [u64; 2],
    /// The record as a seal, its plaintext the input.
    pub ev: QuicPlaintextEvent,
}

/// `AES_AEAD` calls in flight, by thread; removed by the return program on every path. LRU
/// as [`AEAD_CALLS`].
#[map]
static AES_PENDING: LruHashMap<u64, AesPending> = LruHashMap::with_max_entries(1024, 0);
#[map]
static AES_SCRATCH: PerCpuArray<AesPending> = PerCpuArray::with_max_entries(1, 0);

/// `AES_AEAD`'s entry (see [`AesPending`]).
#[uprobe]
pub fn quic_freebl_aes_aead(ctx: ProbeContext) -> u32 {
    if filter::skip() {
        return 0;
    }
    let mut call = read_call(&ctx, Layout::FreeblAes, DIR_SEND);
    if !looks_like_quic(call.aad, call.aad_len) {
        return 0;
    }
    let Some(p) = AES_SCRATCH.get_ptr_mut(0) else { return 0 };
    let params = stack_arg(&ctx, 0);
    call.direction = DIR_SEND;
    unsafe {
        (*p).output = ctx.arg(1).unwrap_or(0);
        (*p).out_len = ctx.arg(2).unwrap_or(0);
        (*p).tag_ptr = user_u64(params + 32);
        (*p).tag = [user_u64((*p).tag_ptr), user_u64((*p).tag_ptr + 8)];
        fill(&raw mut (*p).ev, &call, call.buf, call.len);
        let _ = AES_PENDING.insert(&pid_tgid(), &*p, 0);
    }
    0
}

/// `AES_AEAD`'s return: a seal's record as copied at the entry, or the open's output.
#[uretprobe]
pub fn quic_freebl_aes_ret(ctx: RetProbeContext) -> u32 {
    let id = pid_tgid();
    let Some(p) = AES_PENDING.get_ptr_mut(&id) else { return 0 };
    let ret: i64 = ctx.ret();
    if ret as i32 == 0 {
        unsafe {
            let tag_ptr = (*p).tag_ptr;
            let sealed = tag_ptr != 0 && [user_u64(tag_ptr), user_u64(tag_ptr + 8)] != (*p).tag;
            let ev = &raw mut (*p).ev;
            if !sealed {
                let n = bpf_probe_read_user((*p).out_len as *const u32).unwrap_or(0) as u64;
                (*ev).header = header(EventKind::QuicPlaintext, 0);
                (*ev).direction = DIR_RECV;
                (*ev).len = n as u32;
                (*ev).captured = read_user_bytes((*ev).data.as_mut_ptr(), (*p).output, capture_of(n), QUIC_PLAINTEXT_MAX);
            }
            submit_cut(ev, QUIC_PLAINTEXT_HEAD, (*ev).captured, EventKind::QuicPlaintext);
        }
    }
    let _ = AES_PENDING.remove(&id);
    0
}

#[uprobe]
pub fn quic_freebl_chacha_seal(ctx: ProbeContext) -> u32 {
    seal_entry(&ctx, Layout::FreeblChaCha)
}

#[uprobe]
pub fn quic_freebl_chacha_open(ctx: ProbeContext) -> u32 {
    open_entry(&ctx, Layout::FreeblChaCha)
}

#[uprobe]
pub fn quic_boringssl_seal(ctx: ProbeContext) -> u32 {
    seal_entry(&ctx, Layout::BoringSsl)
}

#[uprobe]
pub fn quic_boringssl_open(ctx: ProbeContext) -> u32 {
    open_entry(&ctx, Layout::BoringSsl)
}

/// `PK11_AEADOp`: a seal or an open by its context's operation.
#[uprobe]
pub fn quic_nss_aead(ctx: ProbeContext) -> u32 {
    let pk11_ctx: u64 = ctx.arg(0).unwrap_or(0);
    if pk11_ctx == 0 {
        return 0;
    }
    match unsafe { bpf_probe_read_user(pk11_ctx as *const u64) } {
        Ok(CKA_NSS_MESSAGE_ENCRYPT) => seal_entry(&ctx, Layout::Pk11),
        Ok(CKA_NSS_MESSAGE_DECRYPT) => open_entry(&ctx, Layout::Pk11),
        _ => 0,
    }
}
