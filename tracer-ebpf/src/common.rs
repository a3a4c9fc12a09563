//! Maps and helpers shared by every probe family.
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated},
    macros::map,
    maps::{PerCpuArray, RingBuf},
    programs::{ProbeContext, RetProbeContext, TracePointContext},
};
use tracer_common::{
    AF_INET, AF_INET6, EventHeader, EventKind, KIND_SLOTS, SockAddr,
    layout::{KernelOffsets, MISSING, TpLayout},
};

/// The one ring buffer every record goes through. User space may resize it at load time.
#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Records that did not fit into the ring buffer, per kind. Never silent: the daemon reads
/// and reports these.
#[map(name = "LOST")]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(KIND_SLOTS, 0);

#[inline(always)]
pub fn count_lost(kind: EventKind) {
    if let Some(p) = LOST.get_ptr_mut(kind as u32) {
        // Per-CPU slot: no other writer while this program runs.
        unsafe { *p += 1 };
    }
}

/// A field of a tracepoint's record, by a plain load. A tracepoint program may read its
/// record directly (aligned loads past the first 8 bytes, checked by the verifier), where
/// `TracePointContext::read_at` calls bpf_probe_read_kernel for each field: a helper call
/// per field was a good part of a state change's cost. `off` must be a constant, a
/// multiple of the size of `T`.
#[inline(always)]
pub fn tp_field<T: Copy>(ctx: &TracePointContext, off: usize) -> T {
    // SAFETY: the verifier bounds and aligns every ctx load of a tracepoint program.
    unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u8).add(off) as *const T) }
}

/// A tracepoint record whose fields are read where this kernel puts them (see
/// `tracer_common::layout`), with [`tp_get!`].
///
/// With the layout the programs were compiled with (`compiled` = 1 in the layout global, a
/// verifier-known constant) each field is a plain load from the record, as [`tp_field`], and
/// the copy is dead code the verifier prunes. Otherwise the record's first `size` bytes are
/// copied once (one helper call) and each field is read at the offset the daemon found in
/// the tracepoint's format file (again a constant to the verifier). The offsets are read
/// from the global at each use, never carried in a struct: the compiler would keep them in
/// stack slots and the verifier would see variable offsets.
pub struct Record<'a, const N: usize> {
    pub ctx: &'a TracePointContext,
    /// The per-CPU copy (null with the compiled layout, or when the map lookup failed).
    copy: *const u8,
}

/// Where a record is copied when its layout is not the compiled one: a per-CPU slot, not
/// the stack (a state change's program already holds its record and event there).
#[map(name = "TP_COPY")]
static TP_COPY: PerCpuArray<[u8; TP_COPY_MAX]> = PerCpuArray::with_max_entries(1, 0);

/// Largest record a program copies (`TpFields::buffer` is at most this).
pub const TP_COPY_MAX: usize = 128;

impl<'a, const N: usize> Record<'a, N> {
    #[inline(always)]
    pub fn new(ctx: &'a TracePointContext, layout: &'static TpLayout) -> Self {
        let mut r = Record { ctx, copy: core::ptr::null() };
        if unsafe { core::ptr::read_volatile(&layout.compiled) } == 0
            && let Some(slot) = TP_COPY.get_ptr_mut(0)
        {
            let mut size = unsafe { core::ptr::read_volatile(&layout.size) } as usize;
            if size > N || size > TP_COPY_MAX {
                size = if N < TP_COPY_MAX { N } else { TP_COPY_MAX };
            }
            unsafe {
                // Zeroed first: a field past what the copy filled reads 0, never a stale record.
                *slot = [0u8; TP_COPY_MAX];
                generated::bpf_probe_read_kernel(slot as *mut _, size as u32, ctx.as_ptr() as *const _);
            }
            r.copy = slot as *const u8;
        }
        r
    }

    /// A field of the copy at `off` (from the layout global); 0 when the field is missing.
    #[inline(always)]
    pub fn copied<T: Copy + Default>(&self, off: u32) -> T {
        let off = off as usize;
        if self.copy.is_null() || off == MISSING as usize || off + core::mem::size_of::<T>() > N || off + core::mem::size_of::<T>() > TP_COPY_MAX {
            return T::default();
        }
        unsafe { core::ptr::read_unaligned(self.copy.add(off) as *const T) }
    }
}

/// `tp_get!(rec, LAYOUT_GLOBAL, layout::set_state::TP, layout::set_state::SKADDR)`: a field
/// of a [`Record`] (type inferred), by the index of its tracepoint's `TpFields`.
#[macro_export]
macro_rules! tp_get {
    ($rec:expr, $layout:ident, $tp:path, $i:path) => {
        if unsafe { core::ptr::read_volatile(&$layout.compiled) } != 0 {
            $crate::common::tp_field($rec.ctx, {
                const OFF: usize = $tp.fields[$i].offset as usize;
                OFF
            })
        } else {
            $rec.copied(unsafe { core::ptr::read_volatile(&$layout.off[$i]) })
        }
    };
}

/// [`tp_get!`] for a 16-byte field (an IPv6 address).
#[macro_export]
macro_rules! tp_get16 {
    ($rec:expr, $layout:ident, $tp:path, $i:path) => {
        if unsafe { core::ptr::read_volatile(&$layout.compiled) } != 0 {
            $crate::common::tp_bytes16($rec.ctx, {
                const OFF: usize = $tp.fields[$i].offset as usize;
                OFF
            })
        } else {
            $rec.copied::<[u8; 16]>(unsafe { core::ptr::read_volatile(&$layout.off[$i]) })
        }
    };
}

/// Whether this kernel's record has field `$i` (see [`tp_get!`]).
#[macro_export]
macro_rules! tp_has {
    ($layout:ident, $i:path) => {
        unsafe { core::ptr::read_volatile(&$layout.compiled) } != 0
            || unsafe { core::ptr::read_volatile(&$layout.off[$i]) } != tracer_common::layout::MISSING
    };
}

/// Where this kernel keeps the members the programs read (from BTF; see
/// `tracer_common::layout::KernelOffsets`).
#[unsafe(no_mangle)]
pub static KERNEL_OFFSETS: KernelOffsets = KernelOffsets::UNKNOWN;

/// A member of [`KERNEL_OFFSETS`] (`koff!(sk_err)`), a verifier-known constant.
#[macro_export]
macro_rules! koff {
    ($member:ident) => {
        unsafe { core::ptr::read_volatile(&$crate::common::KERNEL_OFFSETS.$member) }
    };
}

/// A `T` at `base + off` in kernel memory (0 when the read fails or the offset is unknown).
#[inline(always)]
pub fn read_kernel<T: Copy + Default>(base: u64, off: u32) -> T {
    if off == MISSING || base == 0 {
        return T::default();
    }
    let mut v = T::default();
    let r = unsafe {
        generated::bpf_probe_read_kernel(&mut v as *mut T as *mut _, core::mem::size_of::<T>() as u32, (base + off as u64) as *const _)
    };
    if r < 0 { T::default() } else { v }
}

/// 16 bytes of a tracepoint's record (an IPv6 address) at a 4-byte aligned offset.
#[inline(always)]
pub fn tp_bytes16(ctx: &TracePointContext, off: usize) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let w: u32 = tp_field(ctx, off + 4 * i);
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
        i += 1;
    }
    out
}

#[inline(always)]
pub fn pid_tgid() -> u64 {
    bpf_get_current_pid_tgid()
}

#[inline(always)]
pub fn now() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
pub fn header(kind: EventKind, size: usize) -> EventHeader {
    let id = bpf_get_current_pid_tgid();
    EventHeader {
        kind: kind as u32,
        size: size as u32,
        ts_ns: now(),
        tgid: (id >> 32) as u32,
        pid: id as u32,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

/// The arguments of a socket call, however the program met it: at a syscall tracepoint
/// (the syscall's record) or, with the client filter, at libc's function of the same name
/// (registers; see `libc`). Read one by one, when needed: most calls are on sockets nobody
/// watches and stop after the fd.
pub trait CallArgs {
    fn get(&self, n: usize) -> Result<u64, u32>;
}

impl CallArgs for TracePointContext {
    #[inline(always)]
    fn get(&self, n: usize) -> Result<u64, u32> {
        // syscalls:sys_enter_*: 8 bytes of common fields, the syscall number, then the args.
        Ok(tp_field::<u64>(self, 16 + 8 * n))
    }
}

impl CallArgs for ProbeContext {
    #[inline(always)]
    fn get(&self, n: usize) -> Result<u64, u32> {
        self.arg::<u64>(n).ok_or(0u32)
    }
}

/// `send` and `recv`: `sendto` and `recvfrom` without the address arguments (4 and 5).
pub struct NoAddr<'a, A>(pub &'a A);

impl<A: CallArgs> CallArgs for NoAddr<'_, A> {
    #[inline(always)]
    fn get(&self, n: usize) -> Result<u64, u32> {
        if n >= 4 { Ok(0) } else { self.0.get(n) }
    }
}

/// A socket call's return value: the syscall's (-errno on failure) at a `sys_exit_*`
/// tracepoint, libc's (-1 on failure, errno unseen) at a uretprobe.
pub trait CallRet {
    fn ret(&self) -> Result<i64, u32>;
}

impl CallRet for TracePointContext {
    #[inline(always)]
    fn ret(&self) -> Result<i64, u32> {
        Ok(tp_field::<i64>(self, 16))
    }
}

impl CallRet for RetProbeContext {
    #[inline(always)]
    fn ret(&self) -> Result<i64, u32> {
        Ok(RetProbeContext::ret::<i64>(self))
    }
}

/// Key for per-process fd maps.
#[inline(always)]
pub fn fd_key(tgid: u32, fd: i32) -> u64 {
    ((tgid as u64) << 32) | (fd as u32 as u64)
}

/// Copy `len` bytes (clamped to `max`) from user memory into `dst`. Returns the bytes copied.
///
/// # Safety
/// `dst` must point to at least `max` writable bytes.
///
/// Not inlined: a BPF-to-BPF call of its own, verified in each caller's context (so `max` is
/// the caller's constant), keeps the clamped length in the register the helper takes. Inlined
/// into the large socket-layer kretprobes, the compiler checked the length in one register and
/// passed a copy reloaded from the stack, and the verifiers of 5.10 and 6.1 (which do not carry
/// a bound over to a spilled copy, as 6.18's does) rejected it: "R2 unbounded memory access".
#[inline(never)]
pub unsafe fn read_user_bytes(dst: *mut u8, src: u64, len: u64, max: usize) -> u32 {
    // The clamp is written so that the verifier sees the bound on the very register it
    // checks the size argument with.
    let mut n = len as usize;
    if n > max {
        n = max;
    }
    if n == 0 || src == 0 {
        return 0;
    }
    let r = unsafe {
        generated::bpf_probe_read_user(dst as *mut _, n as u32, src as *const _)
    };
    if r < 0 { 0 } else { n as u32 }
}

/// Read a user-space `struct sockaddr` (IPv4 or IPv6 only) into a [`SockAddr`].
#[inline(always)]
pub fn read_user_sockaddr(ptr: u64) -> Option<SockAddr> {
    if ptr == 0 {
        return None;
    }
    let head: [u8; 16] = unsafe { aya_ebpf::helpers::bpf_probe_read_user(ptr as *const [u8; 16]) }.ok()?;
    let family = u16::from_ne_bytes([head[0], head[1]]);
    let port = u16::from_be_bytes([head[2], head[3]]);
    let mut out = SockAddr { family, port, _pad: 0, addr: [0; 16] };
    if family == AF_INET {
        out.addr[0] = head[4];
        out.addr[1] = head[5];
        out.addr[2] = head[6];
        out.addr[3] = head[7];
        Some(out)
    } else if family == AF_INET6 {
        let full: [u8; 28] =
            unsafe { aya_ebpf::helpers::bpf_probe_read_user(ptr as *const [u8; 28]) }.ok()?;
        let mut i = 0;
        while i < 16 {
            out.addr[i] = full[8 + i];
            i += 1;
        }
        Some(out)
    } else {
        None
    }
}

// bpf_ringbuf_output/submit flags and the bpf_ringbuf_query field (uapi/linux/bpf.h).
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// Flags for a record the daemon must act on at once (an exec: with `--comm` it attaches
/// the TLS uprobes into the new program before that program reaches its first TLS call).
pub const WAKE_NOW: u64 = BPF_RB_FORCE_WAKEUP;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// The reader is woken once this much is waiting (1/64 of the default 16 MiB buffer).
const WAKEUP_AT_BYTES: u64 = 256 * 1024;

/// Flags for a record of `size` bytes. By default the kernel wakes the reader whenever it
/// has caught up, i.e. for nearly every record of a light load: an irq_work per record, which
/// is a self-IPI (a VM exit on a virtual machine, microseconds) on the traced process's CPU,
/// and a context switch of the reader per event. The reader drains on a short timer instead
/// (tracer::stream), and is woken early by the one record that takes the backlog past
/// [`WAKEUP_AT_BYTES`]. Only that one: waking for every record while the backlog stays above
/// (a reader that falls behind) made each record pay the IPI, 3-6 us a record in the DNS
/// loop of benchmark 1 with a slow (debug) daemon, which slowed the traced program fivefold.
#[inline(always)]
pub fn wakeup_flags(size: usize) -> u64 {
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA);
    if waiting < WAKEUP_AT_BYTES && waiting + size as u64 >= WAKEUP_AT_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// Send a record assembled in a scratch buffer, cut after its `head` bytes and the `captured`
/// bytes of its tail. The record starts with its header, whose size is set here. A full ring
/// buffer is counted, never silent.
///
/// # Safety
/// `ev` points to a whole `T` whose first field is an [`EventHeader`].
#[inline(always)]
pub unsafe fn submit_cut<T>(ev: *mut T, head: usize, captured: u32, kind: EventKind) {
    let mut size = head + captured as usize;
    if size > core::mem::size_of::<T>() {
        size = core::mem::size_of::<T>();
    }
    unsafe {
        (*(ev as *mut EventHeader)).size = size as u32;
        let bytes = core::slice::from_raw_parts(ev as *const u8, size);
        if EVENTS.output::<[u8]>(bytes, wakeup_flags(size)).is_err() {
            count_lost(kind);
        }
    }
}

/// Send a fixed-size record; a full ring buffer is counted, never silent.
#[inline(always)]
pub fn submit<T>(ev: &T, kind: EventKind) {
    if EVENTS.output::<T>(ev, wakeup_flags(core::mem::size_of::<T>())).is_err() {
        count_lost(kind);
    }
}
