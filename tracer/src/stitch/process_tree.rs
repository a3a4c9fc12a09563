//! The client process tree: whose page load an event belongs to.
//!
//! fork/exec events build a table of processes (parent, command name, program); the daemon
//! seeds it from /proc for processes that started before it. A forked child gets its parent's
//! program, and the command name of the thread that forked. An exec sets the program, except
//! an exec of `/proc/self/exe` (how Chromium starts its helpers), which keeps the program the
//! process had.
//!
//! A *client* is the root of a process tree: walk up from the process that did the work while
//! the parent runs the same program, that is the same path or the same file name (a launcher
//! and what it runs: `/usr/bin/firefox-esr` -> `/usr/lib/firefox-esr/firefox-esr`). The client
//! is named by that root's program file name, else its command name (`chromium`,
//! `firefox-esr`), not by the thread that did the work (`Chrome_ChildIOT`, `Socket Thread`).
//! A browser's network helper runs another program than the browser: WebKitGTK's
//! `WebKitNetworkProcess`, QtWebEngine's `QtWebEngineProcess`, dillo's `dpid` and its
//! `*.dpi` plug-ins (HTTPS in `https.filter.dpi`). Those ([`is_browser_helper`]) belong to
//! their parent: the walk goes on through them, so epiphany's page load is `epiphany`'s, not
//! `WebKitNetworkProcess`'s.
//!
//! Exits are not acted on: the table keeps the newest `max_processes` processes, by when they
//! were first seen.
use std::collections::{HashMap, VecDeque};

use super::model::ClientInfo;

#[derive(Debug, Clone, Default)]
struct ProcInfo {
    ppid: Option<u32>,
    comm: String,
    exe: Option<String>,
}

pub(super) struct ProcessTree {
    procs: HashMap<u32, ProcInfo>,
    /// Processes in the order they were first seen: the oldest go first beyond `max`.
    order: VecDeque<u32>,
    max: usize,
}

impl ProcessTree {
    pub(super) fn new(max: usize) -> Self {
        Self { procs: HashMap::new(), order: VecDeque::new(), max }
    }

    /// A process that started before the daemon (from /proc).
    pub(super) fn learn(&mut self, tgid: u32, ppid: Option<u32>, comm: String, exe: Option<String>) {
        self.insert(tgid, ProcInfo { ppid, comm, exe });
    }

    fn insert(&mut self, tgid: u32, info: ProcInfo) {
        if self.procs.insert(tgid, info).is_none() {
            self.order.push_back(tgid);
            while self.order.len() > self.max {
                if let Some(old) = self.order.pop_front() {
                    self.procs.remove(&old);
                }
            }
        }
    }

    pub(super) fn fork(&mut self, parent: u32, comm: &str, child: u32) {
        let exe = self.procs.get(&parent).and_then(|p| p.exe.clone());
        self.insert(child, ProcInfo { ppid: Some(parent), comm: comm.to_string(), exe });
    }

    pub(super) fn exec(&mut self, tgid: u32, comm: &str, filename: &str) {
        let prev = self.procs.get(&tgid);
        let ppid = prev.and_then(|p| p.ppid);
        // A process that re-executes itself (Chromium starts its helpers with
        // `/proc/self/exe`) keeps the program it had.
        let exe = if filename.starts_with("/proc/self/") || filename.starts_with("/proc/thread-self/") {
            prev.and_then(|p| p.exe.clone()).or_else(|| Some(filename.to_string()))
        } else {
            Some(filename.to_string())
        };
        self.insert(tgid, ProcInfo { ppid, comm: comm.to_string(), exe });
    }

    /// Root of the process tree: walk up while the parent runs the same program.
    pub(super) fn client_of(&self, tgid: u32) -> u32 {
        let mut cur = tgid;
        for _ in 0..64 {
            let Some(p) = self.procs.get(&cur) else { break };
            let Some(ppid) = p.ppid else { break };
            let Some(parent) = self.procs.get(&ppid) else { break };
            let same = match (&p.exe, &parent.exe) {
                (Some(a), Some(b)) => same_program(a, b) || is_browser_helper(a),
                _ => false,
            };
            if !same {
                break;
            }
            cur = ppid;
        }
        cur
    }

    /// Who a page load is shown as: `fallback_comm` (its first request's process) only when the
    /// client is not in the table.
    pub(super) fn client_info(&self, client: u32, fallback_comm: &str) -> ClientInfo {
        let p = self.procs.get(&client);
        let exe = p.and_then(|p| p.exe.clone());
        let name = exe
            .as_deref()
            .and_then(|e| e.rsplit('/').next())
            .map(str::to_string)
            .or_else(|| p.map(|p| p.comm.clone()))
            .unwrap_or_else(|| fallback_comm.to_string());
        ClientInfo { tgid: client, name, exe }
    }
}

/// Programs that browsers start for their network work, which are part of the browser that
/// started them (by file name): WebKitGTK's network and web processes, QtWebEngine's helper,
/// dillo's plug-in daemon and its plug-ins.
pub(super) fn is_browser_helper(exe: &str) -> bool {
    let name = exe.rsplit('/').next().unwrap_or(exe);
    matches!(name, "WebKitNetworkProcess" | "WebKitWebProcess" | "QtWebEngineProcess" | "dpid") || name.ends_with(".dpi")
}

/// Whether two executables are the same program: the same path, or the same file name (a
/// launcher and what it runs: `/usr/bin/firefox-esr` -> `/usr/lib/firefox-esr/firefox-esr`,
/// the `/usr/bin/chromium` script -> `/usr/lib/chromium/chromium`).
fn same_program(a: &str, b: &str) -> bool {
    a == b || (!a.is_empty() && a.rsplit('/').next() == b.rsplit('/').next())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A helper's work is its browser's: epiphany -> WebKitNetworkProcess, dillo -> dpid ->
    /// https.filter.dpi; the walk stops at the launcher above the browser (xvfb-run's shell).
    #[test]
    fn browser_helpers_belong_to_the_browser_that_started_them() {
        let mut t = ProcessTree::new(100);
        t.learn(1, None, "sh".into(), Some("/usr/bin/xvfb-run".into()));
        t.learn(10, Some(1), "epiphany".into(), Some("/usr/bin/epiphany-browser".into()));
        t.fork(10, "epiphany", 11);
        t.exec(11, "WebKitNetworkP", "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/WebKitNetworkProcess");
        assert_eq!(t.client_of(11), 10);
        assert_eq!(t.client_info(t.client_of(11), "pool").name, "epiphany-browser");

        t.learn(20, Some(1), "dillo".into(), Some("/usr/bin/dillo".into()));
        t.fork(20, "dillo", 21);
        t.exec(21, "dpid", "/usr/libexec/dillo/dpid");
        t.fork(21, "dpid", 22);
        t.exec(22, "https.filter.dp", "/usr/lib/x86_64-linux-gnu/dillo/dpi/https/https.filter.dpi");
        assert_eq!(t.client_of(22), 20);

        // Any other child program is a client of its own (curl started by a shell script).
        t.learn(30, Some(1), "bash".into(), Some("/usr/bin/bash".into()));
        t.fork(30, "bash", 31);
        t.exec(31, "curl", "/usr/bin/curl");
        assert_eq!(t.client_of(31), 31);
        assert!(!is_browser_helper("/usr/bin/curl") && is_browser_helper("QtWebEngineProcess"));
    }
}
