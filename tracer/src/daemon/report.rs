//! The start-up report on stderr: what was attached (the header and one line per probe
//! family and file, failures spelled out), then where the daemon stores and serves.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use super::RunConfig;
use crate::{
    filter::ClientFilter,
    probes::{ProbeStatus, Probes, SCOPE_PER_PROCESS},
    serve::web::auth::Access,
};

/// The version and kernel, what the kernel supports, notes, the probe lines and the filter.
pub fn attached(kernel: &str, probes: &Probes, filter: Option<&ClientFilter>) -> String {
    let mut out = format!("tracer {} on kernel {kernel}\n{}", env!("CARGO_PKG_VERSION"), probes.kernel.report());
    for w in &probes.warnings {
        out.push_str(&format!("  note: {w}\n"));
    }
    out.push_str(&summary(&probes.status));
    match filter {
        Some(f) => out.push_str(&format!("filter: {}\n", f.describe())),
        None => out.push_str("filter: none (every process is traced)\n"),
    }
    out
}

/// Where page loads go: the database, bodies, the dashboard (with its token when one was
/// generated: shown this once, on stderr only, never logged), metrics, the OTLP export.
pub fn serving(config: &RunConfig, access: &Access, generated_token: Option<&str>) -> String {
    let mut out = format!("database: {}\n", config.db.display());
    match config.stitch.body_limit {
        0 => out.push_str("bodies: not stored (--capture-bodies stores them)\n"),
        n => out.push_str(&format!("bodies: STORED, the first {n} bytes of each request and response (they may hold secrets)\n")),
    }
    let listen = config.listen;
    match (access, generated_token) {
        (Access::LoopbackOnly, _) => out.push_str(&format!("dashboard: http://{listen} (loopback only)\n")),
        (_, Some(t)) => out.push_str(&format!(
            "dashboard: http://{listen} needs a token; generated for this run (shown only now): {t}\n  open http://{listen}/?token={t} once, or send 'Authorization: Bearer {t}'\n"
        )),
        (_, None) => out.push_str(&format!("dashboard: http://{listen} (token required: the one given with --token)\n")),
    }
    out.push_str(&format!("metrics: http://{listen}/metrics\n"));
    if let Some(c) = &config.otlp {
        // Header names only: their values are credentials.
        let names: Vec<&str> = c.headers.iter().map(|(n, _)| n.as_str()).collect();
        out.push_str(&format!(
            "OTLP export: {} (queue {} page loads{}{})\n",
            c.endpoint,
            c.queue,
            if c.gzip { ", gzip" } else { "" },
            if names.is_empty() { String::new() } else { format!(", headers: {}", names.join(", ")) }
        ));
    }
    out
}

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

    fn config(listen: &str) -> RunConfig {
        RunConfig {
            print: super::super::PrintMode::Off,
            db: "/var/lib/tracer/tracer.db".into(),
            listen: listen.parse().unwrap(),
            token: None,
            probes: Default::default(),
            queue: 1024,
            rescan: std::time::Duration::from_secs(2),
            stitch: Default::default(),
            retention: Default::default(),
            filter: None,
            metrics: Default::default(),
            otlp: None,
        }
    }

    #[test]
    fn where_page_loads_go_with_a_generated_token_shown_once_and_no_header_values() {
        let mut c = config("0.0.0.0:7878");
        c.stitch.body_limit = 512;
        let mut otlp = crate::serve::otlp::OtlpConfig::new("http://collector.test:4318/v1/traces".parse().unwrap());
        otlp.headers.push(("x-api-key".parse().unwrap(), "s3cret".parse().unwrap()));
        otlp.gzip = true;
        c.otlp = Some(otlp);
        let text = serving(&c, &Access::Token("t0k".into()), Some("t0k"));
        assert_eq!(
            text,
            "database: /var/lib/tracer/tracer.db\n\
             bodies: STORED, the first 512 bytes of each request and response (they may hold secrets)\n\
             dashboard: http://0.0.0.0:7878 needs a token; generated for this run (shown only now): t0k\n  \
             open http://0.0.0.0:7878/?token=t0k once, or send 'Authorization: Bearer t0k'\n\
             metrics: http://0.0.0.0:7878/metrics\n\
             OTLP export: http://collector.test:4318/v1/traces (queue 2048 page loads, gzip, headers: x-api-key)\n"
        );
        let loopback = serving(&config("127.0.0.1:7878"), &Access::LoopbackOnly, None);
        assert!(loopback.contains("bodies: not stored (--capture-bodies stores them)\ndashboard: http://127.0.0.1:7878 (loopback only)\n"), "{loopback}");
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
