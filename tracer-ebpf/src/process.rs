//! Process lifecycle, so that user space can build process trees (a browser's network
//! process is not the one the user started) even for processes that exit quickly.
use aya_ebpf::{EbpfContext, helpers::bpf_probe_read_kernel_str_bytes, macros::tracepoint, programs::TracePointContext};
use tracer_common::{EXEC_FILENAME_MAX, EventKind, ExecEvent, ForkEvent};

use crate::common::{EVENTS, WAKE_NOW, count_lost, header, pid_tgid, submit, tp_field};
use crate::filter;

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    // Current task is the parent; child_pid at offset 20.
    let child: i32 = tp_field(&ctx, 20);
    if filter::enabled() {
        // A traced parent's children are traced. child_pid is a task id: for a new process
        // it is the child's tgid; for a thread it is a thread id (harmless in the map, and
        // removed when the thread exits).
        if !filter::is_traced((pid_tgid() >> 32) as u32) {
            return 0;
        }
        filter::add(child as u32);
    }
    let ev = ForkEvent {
        header: header(EventKind::Fork, core::mem::size_of::<ForkEvent>()),
        child_pid: child as u32,
        _pad: 0,
    };
    submit(&ev, EventKind::Fork);
    0
}

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    if filter::enabled() {
        // The comm is already the new program's here (set during the binary's load).
        let tgid = (pid_tgid() >> 32) as u32;
        if !filter::is_traced(tgid) {
            let comm = aya_ebpf::helpers::bpf_get_current_comm().unwrap_or([0; 16]);
            if !filter::comm_matches(&comm) {
                return 0;
            }
            filter::add(tgid);
        }
    }
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        count_lost(EventKind::Exec);
        return 0;
    };
    let ev = entry.as_mut_ptr();
    unsafe {
        (*ev).header = header(EventKind::Exec, core::mem::size_of::<ExecEvent>());
        (*ev).filename = [0; EXEC_FILENAME_MAX];
        // __data_loc char[] filename: low 16 bits offset, high 16 bits length.
        let loc: u32 = tp_field(&ctx, 8);
        let off = (loc & 0xffff) as usize;
        let src = (ctx.as_ptr() as *const u8).add(off);
        let _ = bpf_probe_read_kernel_str_bytes(src, &mut (*ev).filename);
    }
    entry.submit(WAKE_NOW);
    0
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    // Only when the whole thread group is gone.
    let group_dead: u8 = tp_field(&ctx, 32);
    if filter::enabled() {
        let id = pid_tgid();
        let (tgid, tid) = ((id >> 32) as u32, id as u32);
        if tid != tgid {
            // A thread of a traced process may have been added at its creation.
            filter::remove(tid);
        }
        if group_dead == 0 || !filter::is_traced(tgid) {
            return 0;
        }
        let h = header(EventKind::Exit, tracer_common::HEADER_SIZE);
        submit(&h, EventKind::Exit);
        filter::remove(tgid);
        return 0;
    }
    if group_dead == 0 {
        return 0;
    }
    let h = header(EventKind::Exit, tracer_common::HEADER_SIZE);
    submit(&h, EventKind::Exit);
    0
}
