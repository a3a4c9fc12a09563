//! The terminal view: per document hop an httpstat-style box (DNS | TCP | TLS | server
//! processing | transfer), then a waterfall of every request of the page load.

use std::fmt::Write as _;

use super::model::{Entry, Initiator, PageLoad};
use crate::failure::Phase;

/// Width of the waterfall's time axis in characters.
const BAR: usize = 48;

fn fmt_ms(v: Option<f64>) -> String {
    match v {
        Some(ms) if ms >= 100.0 => format!("{ms:.0}ms"),
        Some(ms) => format!("{ms:.1}ms"),
        None => "-".into(),
    }
}

fn size(n: u64) -> String {
    if n >= 10 * 1024 * 1024 {
        format!("{:.1} MiB", n as f64 / 1048576.0)
    } else if n >= 10 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// Server processing as httpstat shows it: request sent + waiting for the first byte.
fn server_ms(e: &Entry) -> Option<f64> {
    match (e.timings.ms(Phase::Send), e.timings.ms(Phase::Wait)) {
        (Some(s), Some(w)) => Some(s + w),
        (None, w) => w,
        (s, None) => s,
    }
}

/// The httpstat box for one entry.
pub fn httpstat(e: &Entry) -> String {
    let t = &e.timings;
    let dns = t.ms(Phase::Dns);
    let tcp = t.ms(Phase::Connect);
    let tls = t.ms(Phase::Tls);
    let server = server_ms(e);
    let transfer = t.ms(Phase::Receive);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "  DNS Lookup   TCP Connection   TLS Handshake   Server Processing   Content Transfer"
    );
    let _ = writeln!(
        s,
        "[ {:^10} | {:^14} | {:^13} | {:^17} | {:^16} ]",
        fmt_ms(dns),
        fmt_ms(tcp),
        fmt_ms(tls),
        fmt_ms(server),
        fmt_ms(transfer)
    );
    // Cumulative, like curl's -w timers (from the start of the request, blocked included).
    let blocked = t.ms(Phase::Blocked).unwrap_or(0.0);
    let namelookup = blocked + dns.unwrap_or(0.0);
    let connect = namelookup + tcp.unwrap_or(0.0);
    let pretransfer = connect + tls.unwrap_or(0.0);
    let starttransfer = pretransfer + server.unwrap_or(0.0);
    let total = starttransfer + transfer.unwrap_or(0.0);
    let _ = writeln!(
        s,
        "  namelookup:{}  connect:{}  pretransfer:{}  starttransfer:{}  total:{}",
        fmt_ms(Some(namelookup)),
        fmt_ms(Some(connect)),
        fmt_ms(Some(pretransfer)),
        fmt_ms(Some(starttransfer)),
        fmt_ms(Some(total))
    );
    s
}

/// A row's bar: each character is one slice of the load's time axis.
fn bar(load: &PageLoad, e: &Entry) -> String {
    let total = load.span.end_ns.saturating_sub(load.span.start_ns).max(1) as f64;
    let mut cells = vec![' '; BAR];
    let pos =
        |ns: u64| (((ns.saturating_sub(load.span.start_ns)) as f64 / total) * BAR as f64) as usize;
    let phases = [
        (Phase::Blocked, '.'),
        (Phase::Dns, 'd'),
        (Phase::Connect, 'c'),
        (Phase::Tls, 's'),
        (Phase::Send, 'w'),
        (Phase::Wait, 'w'),
        (Phase::Receive, 'r'),
    ];
    for (p, ch) in phases {
        if let Some(t) = e.timings.get(p) {
            let a = pos(t.start_ns).min(BAR - 1);
            let b = pos(t.end_ns).min(BAR - 1).max(a);
            // A phase shorter than a cell still shows, unless it is (nearly) empty.
            if t.ms >= 0.05 || p == Phase::Wait {
                for c in cells.iter_mut().take(b + 1).skip(a) {
                    if *c == ' ' || *c == '.' {
                        *c = ch;
                    }
                }
            }
        }
    }
    if e.failure.is_some() {
        let end = pos(e.span.end_ns).min(BAR - 1);
        cells[end] = 'X';
    }
    cells.into_iter().collect()
}

/// The whole report: DNS, connections, the document chain's httpstat boxes, the waterfall.
pub fn waterfall(load: &PageLoad) -> String {
    let mut s = String::new();
    let requests = load.entries.len();
    let conns = load
        .connections
        .iter()
        .filter(|c| c.remote.is_some())
        .count();
    let bytes: u64 = load.entries.iter().map(|e| e.body_size).sum();
    let target = if load.final_url == load.url {
        load.url.clone()
    } else {
        format!("{} -> {}", load.url, load.final_url)
    };
    let _ = writeln!(
        s,
        "{}  ({} request{}, {} connection{}, {} of bodies, {:.1} ms)",
        target,
        requests,
        if requests == 1 { "" } else { "s" },
        conns,
        if conns == 1 { "" } else { "s" },
        size(bytes),
        load.total_ms
    );
    let _ = writeln!(s);
    for d in &load.dns {
        let chain = d.cname_chain.join(" -> ");
        let addrs: Vec<String> = d.addresses.iter().map(|a| a.to_string()).collect();
        let via = if d.nameservers.is_empty() {
            "/etc/hosts".to_owned()
        } else {
            d.nameservers
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &d.failure {
            None => {
                let ttl = d.min_ttl.map(|t| format!(", ttl {t}s")).unwrap_or_default();
                let _ = writeln!(
                    s,
                    "DNS  {chain} -> {}  ({:.1} ms via {via}{ttl})",
                    addrs.join(", "),
                    d.span.ms
                );
            }
            Some(f) => {
                let _ = writeln!(
                    s,
                    "DNS  {chain}  FAILED {} ({:.1} ms via {via}): {}",
                    f.code, d.span.ms, f.detail.as_deref().unwrap_or_default()
                );
            }
        }
    }
    for c in &load.connections {
        let attempts: Vec<String> = c
            .attempts
            .iter()
            .map(|a| match &a.failure {
                None => format!("{} ok {:.1} ms", a.address, a.span.ms),
                Some(f) => format!("{} {} {:.1} ms", a.address, f.code, a.span.ms),
            })
            .collect();
        let _ = writeln!(
            s,
            "CONN #{} {}  {}  {}  {} requests, {} sent, {} received",
            c.id,
            c.origin,
            attempts.join("; "),
            c.http_version.as_deref().unwrap_or("-"),
            c.requests,
            size(c.bytes_sent),
            size(c.bytes_received)
        );
        if let Some(t) = &c.tls {
            let _ = writeln!(
                s,
                "     TLS {} {} alpn={} sni={} {}{:.1} ms{}",
                t.version.as_deref().unwrap_or("?"),
                t.cipher_suite.as_deref().unwrap_or("?"),
                t.alpn.as_deref().unwrap_or("-"),
                t.sni.as_deref().unwrap_or("-"),
                if t.resumed { "resumed " } else { "" },
                t.span.ms,
                if t.verified {
                    ""
                } else {
                    " (NOT verified: --insecure)"
                }
            );
            for (i, cert) in t.certificates.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "     cert[{i}] subject: {}  issuer: {}  not after: {}",
                    cert.subject, cert.issuer, cert.not_after
                );
            }
            if let Some(f) = &t.failure {
                let _ = writeln!(s, "     TLS FAILED {}: {}", f.code, f.detail.as_deref().unwrap_or_default());
            }
        }
    }
    for e in load
        .entries
        .iter()
        .filter(|e| e.initiator == Initiator::Document)
    {
        let _ = writeln!(s);
        let status = match (e.status, &e.failure) {
            (Some(st), _) => format!("{st} {}", e.status_text.as_deref().unwrap_or("")),
            (None, Some(f)) => f.code.to_string(),
            (None, None) => "-".into(),
        };
        let conn = match e.connection_id {
            Some(id) => format!(
                "conn #{id}{}",
                if e.connection_reused { " reused" } else { "" }
            ),
            None => "no connection".into(),
        };
        let _ = writeln!(
            s,
            "#{} {} {} -> {}  ({}, {}, {})",
            e.id,
            e.method,
            e.url,
            status.trim_end(),
            e.http_version.as_deref().unwrap_or("-"),
            conn,
            size(e.body_size)
        );
        if let Some(to) = &e.redirect_url {
            let _ = writeln!(s, "   Location: {to}");
        }
        s.push_str(&httpstat(e));
        if let Some(f) = &e.failure {
            let _ = writeln!(s, "   {} ({} failed): {}", f.code, f.phase, f.detail.as_deref().unwrap_or_default());
        }
    }
    if let Some(f) = &load.error
        && !load.entries.iter().any(|e| e.failure.as_ref() == Some(f))
    {
        let _ = writeln!(s, "   {} ({} failed): {}", f.code, f.phase, f.detail.as_deref().unwrap_or_default());
    }

    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Waterfall 0 .. {:.1} ms   . blocked  d dns  c tcp  s tls  w send+wait  r receive  X failed",
        load.total_ms
    );
    let url_w = load
        .entries
        .iter()
        .map(|e| e.url.len())
        .max()
        .unwrap_or(10)
        .min(48);
    for e in &load.entries {
        let status = e
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "ERR".into());
        let conn = match e.connection_id {
            Some(id) => format!("#{id}{}", if e.connection_reused { "r" } else { "" }),
            None => "-".into(),
        };
        let mut url = e.url.clone();
        if url.len() > url_w {
            url.truncate(url_w.saturating_sub(3));
            url.push_str("...");
        }
        let _ = writeln!(
            s,
            "{:>2} {:>3} {:<8} {:<4} {:>9} {:<url_w$} |{}| {:>8.1} ms",
            e.id,
            status,
            e.http_version.as_deref().unwrap_or("-"),
            conn,
            size(e.body_size),
            url,
            bar(load, e),
            e.span.ms
        );
    }
    if load.subresources_skipped > 0 {
        let _ = writeln!(
            s,
            "({} more sub-resources not fetched)",
            load.subresources_skipped
        );
    }
    s
}
