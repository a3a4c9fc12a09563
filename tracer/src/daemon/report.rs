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
    serve::web::{tls::CertSource, token::TokenSource},
};

/// The version and kernel, what the kernel supports, notes, the probe lines and the filter.
pub fn attached(kernel: &str, probes: &Probes, filter: Option<&ClientFilter>) -> String {
    let mut out = format!("tracer {} on kernel {kernel}\n{}", env!("CARGO_PKG_VERSION"), probes.kernel.report());
    for w in &probes.warnings {
        out.push_str(&format!("  note: {w}\n"));
    }
    out.push_str(&summary(&probes.status));
    out.push_str(&syscall_tracepoints(&probes.status));
    match filter {
        Some(f) => out.push_str(&format!("filter: {}\n", f.describe())),
        None => out.push_str("filter: none (every process is traced)\n"),
    }
    out
}

/// How the dashboard is served, for [`serving`].
pub struct Served<'a> {
    /// The token, only when it may be shown: stderr is a terminal (not a journal or a file).
    pub show_token: Option<&'a str>,
    pub token_source: &'a TokenSource,
    /// The certificate's fingerprint and where it came from, when serving HTTPS.
    pub tls: Option<(&'a str, &'a CertSource)>,
    /// `--metrics-token-file` was given.
    pub metrics_token: bool,
}

/// Where page loads go: the database, bodies, the dashboard (its URL with the token only on a
/// terminal: a journal keeps what it is given), its certificate, metrics, the OTLP export.
pub fn serving(config: &RunConfig, served: &Served) -> String {
    let mut out = format!("database: {}\n", config.db.display());
    match config.stitch.body_limit {
        0 => out.push_str("bodies: not stored (--capture-bodies stores them)\n"),
        n => out.push_str(&format!("bodies: STORED, the first {n} bytes of each request and response (they may hold secrets)\n")),
    }
    let base = format!("{}://{}", if served.tls.is_some() { "https" } else { "http" }, config.listen);
    let source = match served.token_source {
        TokenSource::File(p) => format!("the token in {}", p.display()),
        TokenSource::Env => "the token in TRACER_TOKEN".into(),
        TokenSource::Default { path, created: true } => format!("the token generated now in {}", path.display()),
        TokenSource::Default { path, created: false } => format!("the token in {}", path.display()),
    };
    match served.show_token {
        Some(t) => out.push_str(&format!("dashboard: {base}/?token={t} (open it once; {source})\n")),
        None => out.push_str(&format!("dashboard: {base} ({source}: open {base}/?token=TOKEN once, or send 'Authorization: Bearer TOKEN')\n")),
    }
    if let Some((fingerprint, cert)) = served.tls {
        let what = match cert {
            CertSource::Given { cert } => format!("{}", cert.display()),
            CertSource::Generated { cert, created: true } => format!("self-signed, generated now, {}", cert.display()),
            CertSource::Generated { cert, created: false } => format!("self-signed, {}", cert.display()),
        };
        out.push_str(&format!("TLS certificate: {what}; SHA-256 fingerprint {fingerprint}\n"));
    } else if !config.listen.ip().is_loopback() {
        out.push_str("WARNING: plain HTTP off loopback (--plain-http-trusted-network): the token and the history cross the network in clear\n");
    }
    out.push_str(&format!(
        "metrics: {base}/metrics ({})\n",
        if served.metrics_token { "the dashboard's token, or the read-only one of --metrics-token-file" } else { "the dashboard's token" }
    ));
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

/// What the main thread keeps after start-up, each with why; every other thread holds none.
pub fn privileges(kept: &caps::CapsHashSet) -> String {
    let mut out = format!(
        "privileges: main thread keeps {}; every other thread (dashboard, API, history, fetcher, the -- COMMAND helper) holds none\n",
        crate::privileges::names(kept)
    );
    let mut caps: Vec<_> = kept.iter().copied().collect();
    caps.sort_by_key(|c| c.to_string());
    for c in caps {
        out.push_str(&format!("  {c}: {}\n", crate::privileges::reason(c)));
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

/// Whether any `syscalls:` tracepoint is attached: one puts every system call of every
/// process on the kernel's tracing slow path, which is what a user pays for most.
pub fn syscall_tracepoints(status: &[ProbeStatus]) -> String {
    let attached: Vec<&str> =
        status.iter().filter(|s| s.attached && s.point.starts_with("tracepoint syscalls:")).map(|s| &s.point["tracepoint ".len()..]).collect();
    if attached.is_empty() {
        "syscall tracepoints: none attached (system calls stay on the kernel's fast path)\n".to_string()
    } else {
        format!(
            "syscall tracepoints: {} attached ({}): every system call of every process takes the kernel's tracing slow path\n",
            attached.len(),
            attached.join(", ")
        )
    }
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
            access: Default::default(),
            insecure_db_dir: false,
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
    fn where_page_loads_go_with_the_token_only_on_a_terminal_and_no_header_values() {
        let mut c = config("0.0.0.0:7878");
        c.stitch.body_limit = 512;
        let mut otlp = crate::serve::otlp::OtlpConfig::new("http://collector.test:4318/v1/traces".parse().unwrap());
        otlp.headers.push(("x-api-key".parse().unwrap(), "s3cret".parse().unwrap()));
        otlp.gzip = true;
        c.otlp = Some(otlp);
        let source = TokenSource::Default { path: "/var/lib/tracer/token".into(), created: true };
        let cert = CertSource::Generated { cert: "/var/lib/tracer/tls.crt".into(), created: false };
        let text = serving(&c, &Served { show_token: Some("t0k"), token_source: &source, tls: Some(("AB:CD", &cert)), metrics_token: true });
        assert_eq!(
            text,
            "database: /var/lib/tracer/tracer.db\n\
             bodies: STORED, the first 512 bytes of each request and response (they may hold secrets)\n\
             dashboard: https://0.0.0.0:7878/?token=t0k (open it once; the token generated now in /var/lib/tracer/token)\n\
             TLS certificate: self-signed, /var/lib/tracer/tls.crt; SHA-256 fingerprint AB:CD\n\
             metrics: https://0.0.0.0:7878/metrics (the dashboard's token, or the read-only one of --metrics-token-file)\n\
             OTLP export: http://collector.test:4318/v1/traces (queue 2048 page loads, gzip, headers: x-api-key)\n"
        );
        // Not a terminal: where the token is, never the token.
        let source = TokenSource::File("/etc/tracer/token".into());
        let loopback = serving(&config("127.0.0.1:7878"), &Served { show_token: None, token_source: &source, tls: None, metrics_token: false });
        assert!(
            loopback.contains("bodies: not stored (--capture-bodies stores them)\ndashboard: http://127.0.0.1:7878 (the token in /etc/tracer/token: open http://127.0.0.1:7878/?token=TOKEN once, or send 'Authorization: Bearer TOKEN')\nmetrics: http://127.0.0.1:7878/metrics (the dashboard's token)\n"),
            "{loopback}"
        );
        let plain = serving(&config("10.0.0.1:7878"), &Served { show_token: None, token_source: &TokenSource::Env, tls: None, metrics_token: false });
        assert!(plain.contains("WARNING: plain HTTP off loopback"), "{plain}");
    }

    #[test]
    fn attached_syscall_tracepoints_are_named_and_their_absence_said() {
        let none = syscall_tracepoints(&[
            status("dns", "tp_btf sock:sock_send_length", None, "tp_btf", true, None),
            status("dns", "tracepoint syscalls:sys_enter_write", None, "tracepoint", false, None),
        ]);
        assert!(none.starts_with("syscall tracepoints: none attached"), "{none}");
        let some = syscall_tracepoints(&[
            status("tcp_connect", "tracepoint syscalls:sys_enter_connect", None, "tracepoint", true, None),
            status("tcp_connect", "tracepoint syscalls:sys_exit_connect", None, "tracepoint", true, None),
        ]);
        assert!(some.starts_with("syscall tracepoints: 2 attached (syscalls:sys_enter_connect, syscalls:sys_exit_connect)"), "{some}");
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
