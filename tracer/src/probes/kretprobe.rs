//! Kretprobes with room for many calls at once: created through tracefs's `kprobe_events` with
//! an explicit instance count (`r4096:...`), then given our program by `perf_event_open` on the
//! new trace event and `PERF_EVENT_IOC_SET_BPF`, as libbpf's legacy kprobe path does.
//!
//! Why not aya's `KProbe::attach`: it creates the kretprobe with the kernel's default number of
//! instances, and every call blocked inside the probed function holds one until it returns. The
//! default is max(10, 2 x CPUs) on a kernel built with `CONFIG_PREEMPTION` (Debian's 6.1), but
//! only the number of possible CPUs without it (Debian's 5.10): one, in the kernel matrix's
//! one-vCPU guest, where any process blocked in `recvmsg` on an inet socket (the lab's DNS
//! server) made every other receive's return go unseen (3 of 4 runs of `tests/variants.rs` lost
//! a blocking receive; `/sys/kernel/tracing/kprobe_profile` counts such misses per probe).
//! [`MAXACTIVE`] is the kernel's upper bound; an instance is a few dozen bytes.
//!
//! The event is removed when the [`TracefsKretprobe`] is dropped; events left by a daemon that
//! was killed are removed at the next start ([`remove_stale`]), recognised by the group name and
//! the pid in the event's name.
use super::per_process::{PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_SET_BPF, PERF_FLAG_FD_CLOEXEC, PERF_TYPE_TRACEPOINT, PerfEventAttr};
use std::{
    fs::OpenOptions,
    io::Write as _,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

/// Instances per kretprobe: the kernel's maximum (`KRETPROBE_MAXACTIVE_MAX`).
pub const MAXACTIVE: u32 = 4096;

/// The tracefs group of the daemon's kretprobe events.
const GROUP: &str = "tracer_kretprobes";

#[derive(Debug, thiserror::Error)]
pub enum KretprobeError {
    #[error("writing `{line}` to {path}: {source}")]
    Define {
        line: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the id of trace event {event} ({path}): {reason}")]
    EventId { event: String, path: PathBuf, reason: String },
    #[error("perf_event_open on trace event {event} (id {id}): {source}")]
    PerfOpen {
        event: String,
        id: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} on the perf event of {event}: {source}")]
    Ioctl {
        what: &'static str,
        event: String,
        #[source]
        source: std::io::Error,
    },
}

/// One kretprobe event with our program on it; dropping it detaches and removes the event.
#[derive(Debug)]
pub struct TracefsKretprobe {
    perf: Option<OwnedFd>,
    /// `group/name`, as `kprobe_events` takes it for removal.
    event: String,
    kprobe_events: PathBuf,
}

/// The event's name: the function, this process's pid, and a sequence number (a function may
/// be probed by two programs).
fn event_name(function: &str, pid: u32, seq: u32) -> String {
    let f: String = function.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("{f}_{pid}_{seq}")
}

/// The `kprobe_events` line that defines the event.
fn define_line(maxactive: u32, name: &str, function: &str) -> String {
    format!("r{maxactive}:{GROUP}/{name} {function}\n")
}

fn append(path: &Path, line: &str) -> std::io::Result<()> {
    // O_APPEND: a plain write would clear every kprobe event on the machine first.
    OpenOptions::new().append(true).open(path)?.write_all(line.as_bytes())
}

impl TracefsKretprobe {
    /// Define a kretprobe on `function` with `maxactive` instances under `tracefs` and run
    /// `program` (a loaded kprobe program) at each return.
    pub fn attach(tracefs: &Path, program: BorrowedFd<'_>, function: &str, maxactive: u32) -> Result<TracefsKretprobe, KretprobeError> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = event_name(function, std::process::id(), SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let kprobe_events = tracefs.join("kprobe_events");
        let line = define_line(maxactive, &name, function);
        append(&kprobe_events, &line).map_err(|source| KretprobeError::Define { line: line.trim_end().into(), path: kprobe_events.clone(), source })?;
        // From here on, dropping `probe` removes the event whatever fails next.
        let mut probe = TracefsKretprobe { perf: None, event: format!("{GROUP}/{name}"), kprobe_events };
        let id_path = tracefs.join("events").join(GROUP).join(&name).join("id");
        let id: u64 = std::fs::read_to_string(&id_path)
            .map_err(|e| e.to_string())
            .and_then(|s| s.trim().parse().map_err(|e: std::num::ParseIntError| e.to_string()))
            .map_err(|reason| KretprobeError::EventId { event: probe.event.clone(), path: id_path.clone(), reason })?;
        let attr = PerfEventAttr {
            type_: PERF_TYPE_TRACEPOINT,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config: id,
            sample_period: 1,
            wakeup_events: 1,
            ..Default::default()
        };
        // pid -1, cpu 0: a program on a trace event runs on every CPU (it hangs off the
        // event's program array, not this perf event's CPU).
        // SAFETY: `attr` is a valid perf_event_attr of the size it declares.
        let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, &attr as *const PerfEventAttr, -1 as libc::c_int, 0 as libc::c_int, -1 as libc::c_int, PERF_FLAG_FD_CLOEXEC) };
        if fd < 0 {
            return Err(KretprobeError::PerfOpen { event: probe.event.clone(), id, source: std::io::Error::last_os_error() });
        }
        // SAFETY: the syscall returned a new descriptor we own.
        let perf = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        for (what, request, arg) in [("PERF_EVENT_IOC_SET_BPF", PERF_EVENT_IOC_SET_BPF, program.as_raw_fd()), ("PERF_EVENT_IOC_ENABLE", PERF_EVENT_IOC_ENABLE, 0)] {
            // SAFETY: both requests take an int argument.
            if unsafe { libc::ioctl(perf.as_raw_fd(), request, arg) } != 0 {
                return Err(KretprobeError::Ioctl { what, event: probe.event.clone(), source: std::io::Error::last_os_error() });
            }
        }
        probe.perf = Some(perf);
        Ok(probe)
    }

    /// `group/name` of the trace event.
    pub fn event(&self) -> &str {
        &self.event
    }
}

impl Drop for TracefsKretprobe {
    fn drop(&mut self) {
        // The perf event holds the trace event busy: close it before removing the event.
        drop(self.perf.take());
        let _ = append(&self.kprobe_events, &format!("-:{}\n", self.event));
    }
}

/// Remove the kretprobe events of daemons that are gone (killed before they could), from the
/// lines of `kprobe_events`. Returns the events removed.
pub fn remove_stale(tracefs: &Path) -> Vec<String> {
    let path = tracefs.join("kprobe_events");
    let Ok(text) = std::fs::read_to_string(&path) else { return Vec::new() };
    let mut removed = Vec::new();
    for event in stale_events(&text, |pid| Path::new(&format!("/proc/{pid}")).exists()) {
        if append(&path, &format!("-:{event}\n")).is_ok() {
            removed.push(event);
        }
    }
    removed
}

/// The `group/name` of every event of ours in `kprobe_events` whose daemon is not `alive`.
fn stale_events(text: &str, alive: impl Fn(u32) -> bool) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            // r4096:tracer_kretprobes/inet_recvmsg_1234_0 inet_recvmsg
            let event = l.split_whitespace().next()?.split_once(':')?.1;
            let name = event.strip_prefix(GROUP)?.strip_prefix('/')?;
            let mut parts = name.rsplitn(3, '_');
            let (_seq, pid) = (parts.next()?, parts.next()?.parse::<u32>().ok()?);
            (!alive(pid)).then(|| event.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_lines() {
        assert_eq!(event_name("inet6_recvmsg", 42, 3), "inet6_recvmsg_42_3");
        assert_eq!(event_name("tcp_v4_connect.isra.0", 1, 0), "tcp_v4_connect_isra_0_1_0");
        assert_eq!(define_line(4096, "inet_recvmsg_42_0", "inet_recvmsg"), "r4096:tracer_kretprobes/inet_recvmsg_42_0 inet_recvmsg\n");
    }

    #[test]
    fn stale_events_are_ours_of_dead_pids_only() {
        let text = "r4096:tracer_kretprobes/inet_recvmsg_100_0 inet_recvmsg\n\
                    r4096:tracer_kretprobes/inet6_recvmsg_200_1 inet6_recvmsg\n\
                    r16:other/inet_recvmsg_100_0 inet_recvmsg\n\
                    p:tracer_kretprobes/garbage x\n";
        assert_eq!(stale_events(text, |pid| pid == 200), ["tracer_kretprobes/inet_recvmsg_100_0"]);
        assert!(stale_events(text, |_| true).is_empty());
    }
}
