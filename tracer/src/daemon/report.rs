//! The start-up report's probe lines: one per probe family and file, failures spelled out.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use crate::probes::{ProbeStatus, SCOPE_PER_PROCESS};

/// One line per probe family: attached/total, variant, targets; failures spelled out.
pub fn summary(status: &[ProbeStatus]) -> String {
    let mut families: BTreeMap<(String, Option<PathBuf>), Vec<&ProbeStatus>> = BTreeMap::new();
    for s in status {
        families.entry((s.family.clone(), s.target.clone())).or_default().push(s);
    }
    let mut out = String::from("probes:\n");
    for ((family, target), list) in &families {
        let ok = list.iter().filter(|s| s.attached).count();
        let variants: BTreeSet<&str> = list.iter().map(|s| s.variant).collect();
        let per_process = list.iter().any(|s| s.scope == Some(SCOPE_PER_PROCESS));
        out.push_str(&format!(
            "  {} {:<12} {:>2}/{:<2} {}{}{}\n",
            if ok == list.len() { "ok  " } else if ok == 0 { "FAIL" } else { "part" },
            family,
            ok,
            list.len(),
            variants.into_iter().collect::<Vec<_>>().join("+"),
            target.as_ref().map(|t| format!(" {}", t.display())).unwrap_or_default(),
            if per_process { " (per traced process)" } else { "" },
        ));
        for s in list.iter().filter(|s| !s.attached) {
            out.push_str(&format!("       {} not attached: {}\n", s.point, s.error.as_deref().unwrap_or("?")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(family: &str, point: &str, target: Option<&str>, variant: &'static str, ok: bool, scope: Option<&'static str>) -> ProbeStatus {
        let result = if ok { Ok(()) } else { Err(anyhow::anyhow!("no such symbol")) };
        ProbeStatus::outcome(family, point, target.map(PathBuf::from), variant, scope, &result)
    }

    #[test]
    fn one_line_per_family_and_file_in_name_order_with_failures_spelled_out() {
        let lib = Some("/lib/libssl.so.3");
        let lines = summary(&[
            status("process", "tracepoint sched:sched_process_fork", None, "tracepoint", true, None),
            status("tls_openssl", "uretprobe SSL_write", lib, "uretprobe", true, Some(SCOPE_PER_PROCESS)),
            status("tls_openssl", "uprobe SSL_write", lib, "uprobe", false, Some(SCOPE_PER_PROCESS)),
            status("dns", "tracepoint syscalls:sys_enter_write", None, "tracepoint", false, None),
        ]);
        assert_eq!(
            lines,
            "probes:\n  \
             FAIL dns           0/1  tracepoint\n       \
             tracepoint syscalls:sys_enter_write not attached: no such symbol\n  \
             ok   process       1/1  tracepoint\n  \
             part tls_openssl   1/2  uprobe+uretprobe /lib/libssl.so.3 (per traced process)\n       \
             uprobe SSL_write not attached: no such symbol\n"
        );
    }
}
