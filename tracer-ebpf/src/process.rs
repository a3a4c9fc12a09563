//! Process lifecycle, so that user space can build process trees (a browser's network
//! process is not the one the user started) even for processes that exit quickly.
//!
//! The records' layouts come from the kernel's format files (`Record`): `child_pid` moved
//! from offset 44 (5.10-6.12, where the comms are arrays) to 20 (6.18). Where
//! `sched_process_exit` has no `group_dead` (before 6.16), whether the whole thread group is
//! gone is read from the task: `task->signal->live`, which the exiting thread has already
//! decremented when the tracepoint fires (do_exit), is 0 for the last one. Two threads
//! exiting at once can both see 0: the group is then reported gone twice, which user space
//! takes as once.
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_task, bpf_probe_read_kernel_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{
    EXEC_FILENAME_MAX, EventKind, ExecEvent, ForkEvent,
    layout::{self, MISSING, TpLayout},
};

use crate::common::{EVENTS, Record, WAKE_NOW, count_lost, header, pid_tgid, read_kernel, submit};
use crate::{filter, koff, tp_get, tp_has};

#[unsafe(no_mangle)]
static LAYOUT_FORK: TpLayout = TpLayout::compiled(&layout::fork::TP);
#[unsafe(no_mangle)]
static LAYOUT_EXEC: TpLayout = TpLayout::compiled(&layout::exec::TP);
#[unsafe(no_mangle)]
static LAYOUT_EXIT: TpLayout = TpLayout::compiled(&layout::exit::TP);

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    // Current task is the parent.
    let rec: Record<'_, 64> = Record::new(&ctx, &LAYOUT_FORK);
    let child: i32 = tp_get!(rec, LAYOUT_FORK, layout::fork::TP, layout::fork::CHILD_PID);
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
    let rec: Record<'_, 32> = Record::new(&ctx, &LAYOUT_EXEC);
    // __data_loc char[] filename: low 16 bits offset, high 16 bits length.
    let loc: u32 = tp_get!(rec, LAYOUT_EXEC, layout::exec::TP, layout::exec::FILENAME);
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        count_lost(EventKind::Exec);
        return 0;
    };
    let ev = entry.as_mut_ptr();
    unsafe {
        (*ev).header = header(EventKind::Exec, core::mem::size_of::<ExecEvent>());
        (*ev).filename = [0; EXEC_FILENAME_MAX];
        let off = (loc & 0xffff) as usize;
        let src = (ctx.as_ptr() as *const u8).add(off);
        let _ = bpf_probe_read_kernel_str_bytes(src, &mut (*ev).filename);
    }
    entry.submit(WAKE_NOW);
    0
}

/// Whether the exiting thread is the last of its group.
#[inline(always)]
fn group_dead(rec: &Record<'_, 48>, tgid: u32, tid: u32) -> bool {
    if tp_has!(LAYOUT_EXIT, layout::exit::GROUP_DEAD) {
        let dead: u8 = tp_get!(rec, LAYOUT_EXIT, layout::exit::TP, layout::exit::GROUP_DEAD);
        return dead != 0;
    }
    let (signal_off, live_off) = (koff!(task_signal), koff!(signal_live));
    if signal_off == MISSING || live_off == MISSING {
        // No BTF to read the task with: the group leader's exit stands for the group's
        // (a process whose main thread ends before its others is reported early).
        return tid == tgid;
    }
    let task = unsafe { bpf_get_current_task() };
    let signal: u64 = read_kernel(task, signal_off);
    signal != 0 && read_kernel::<i32>(signal, live_off) == 0
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let rec: Record<'_, 48> = Record::new(&ctx, &LAYOUT_EXIT);
    let id = pid_tgid();
    let (tgid, tid) = ((id >> 32) as u32, id as u32);
    if filter::enabled() {
        if tid != tgid {
            // A thread of a traced process may have been added at its creation.
            filter::remove(tid);
        }
        if !filter::is_traced(tgid) || !group_dead(&rec, tgid, tid) {
            return 0;
        }
        let h = header(EventKind::Exit, tracer_common::HEADER_SIZE);
        submit(&h, EventKind::Exit);
        filter::remove(tgid);
        return 0;
    }
    if !group_dead(&rec, tgid, tid) {
        return 0;
    }
    let h = header(EventKind::Exit, tracer_common::HEADER_SIZE);
    submit(&h, EventKind::Exit);
    0
}
