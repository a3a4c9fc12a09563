//! Terminal output: the history table, the waterfall of one page load, the comparison.
use std::fmt::Write as _;

use super::{
    StoredPageLoad,
    baseline::{Comparison, traced_chain},
    query::{Page, PageLoadSummary},
};
use crate::{
    clock::iso8601_ms,
    stitch::model::{PageLoad, Request},
};

/// Width of the waterfall's bar, in characters.
pub const BAR_WIDTH: usize = 40;

/// `2026-04-14 10:00:00.123` (UTC), to the nearest ms.
pub fn time_utc(unix_ms: f64) -> String {
    iso8601_ms(unix_ms.round() as i64).trim_end_matches('Z').replacen('T', " ", 1)
}

pub fn bytes(n: u64) -> String {
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)),
    }
}

/// Cuts `s` to `max` characters, marking the cut with `…`.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n >= width { s.to_string() } else { format!("{s}{}", " ".repeat(width - n)) }
}

fn ms_cell(v: f64) -> String {
    if v >= 0.0 { format!("{v:.2}") } else { "-".into() }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

/// The `tracer history` table.
pub fn list(page: &Page<PageLoadSummary>) -> String {
    let mut out = String::new();
    if page.items.is_empty() {
        let _ = writeln!(out, "no page loads match ({} in total with this filter)", page.total);
        return out;
    }
    let _ = writeln!(
        out,
        "{:>6}  {:<23}  {:<16}  {:<22}  {:>9}  {:>4}  {:>9}  URL",
        "ID", "STARTED (UTC)", "CLIENT", "STATUS", "TOTAL ms", "REQS", "BYTES"
    );
    for s in &page.items {
        let status = match (&s.error, s.status) {
            (Some(e), _) => e.clone(),
            (None, Some(st)) if s.redirect_count > 0 => format!("{st} ({} redir)", s.redirect_count),
            (None, Some(st)) => st.to_string(),
            (None, None) => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:>6}  {:<23}  {:<16}  {:<22}  {:>9.2}  {:>4}  {:>9}  {}",
            s.id,
            time_utc(s.started_at_ms as f64),
            shorten(&format!("{}[{}]", s.process, s.tgid), 16),
            shorten(&status, 22),
            s.total_ms,
            s.request_count,
            bytes(s.bytes),
            s.url.as_deref().unwrap_or("-"),
        );
    }
    let first = page.offset + 1;
    let last = page.offset + page.items.len() as u64;
    let _ = writeln!(out, "{first}-{last} of {} page loads", page.total);
    out
}

/// The phases of a request as laid out on the waterfall: (ms, bar character, column title).
fn phases(r: &Request) -> [(f64, char); 7] {
    let t = &r.timings;
    let tcp = if t.tcp >= 0.0 {
        t.tcp
    } else if t.connect >= 0.0 {
        (t.connect - t.ssl.max(0.0)).max(0.0)
    } else {
        -1.0
    };
    [(t.blocked, '.'), (t.dns, 'd'), (tcp, 't'), (t.ssl, 's'), (t.send, '>'), (t.wait, 'w'), (t.receive, 'r')]
}

/// The bar of one request, `width` characters for the page's whole duration.
pub fn bar(page: &PageLoad, r: &Request, width: usize) -> String {
    let total_ms = page.total_ms().max(0.001);
    let scale = width as f64 / total_ms;
    let mut cursor = r.started_ns.saturating_sub(page.started_ns) as f64 / 1e6;
    let mut segs: Vec<(f64, f64, char)> = Vec::new();
    for (ms, ch) in phases(r) {
        if ms > 0.0 {
            segs.push((cursor, cursor + ms, ch));
            cursor += ms;
        }
    }
    let mut cells = vec![' '; width];
    let mut drawn = false;
    for (col, cell) in cells.iter_mut().enumerate() {
        let at = (col as f64 + 0.5) / scale;
        if let Some(seg) = segs.iter().find(|s| s.0 <= at && at < s.1) {
            *cell = seg.2;
            drawn = true;
        }
    }
    if !drawn {
        // Shorter than a column: one character for its longest phase, where it starts.
        if let Some(longest) = segs.iter().max_by(|a, b| (a.1 - a.0).total_cmp(&(b.1 - b.0))) {
            let col = ((segs[0].0 * scale) as usize).min(width.saturating_sub(1));
            cells[col] = longest.2;
        }
    }
    cells.into_iter().collect()
}

fn host_path(r: &Request) -> String {
    match (&r.host, &r.path) {
        (Some(h), Some(p)) => format!("{h}{p}"),
        (Some(h), None) => h.clone(),
        _ => r
            .url
            .as_deref()
            .map(|u| u.split_once("://").map(|x| x.1).unwrap_or(u).to_string())
            .unwrap_or_else(|| "-".into()),
    }
}

/// `tracer show`: summary, waterfall, redirect chain, DNS lookups, connections.
pub fn show(s: &StoredPageLoad) -> String {
    let p = &s.page;
    let mut out = String::new();
    let _ = writeln!(out, "page load {}  {}", s.id, p.url.as_deref().unwrap_or("(no URL)"));
    let exe = p.client.exe.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
    let _ = writeln!(
        out,
        "  client {}[{}]{exe}  started {} UTC",
        p.client.name,
        p.client.tgid,
        time_utc(s.started_at_ms as f64)
    );
    let status = p.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "  status {status}  total {:.2} ms  {}  {}  {}  {}",
        p.total_ms(),
        plural(p.requests.len(), "request"),
        plural(p.connections.len(), "connection"),
        plural(p.redirect_chain.len().saturating_sub(1), "redirect"),
        bytes(p.bytes())
    );
    if let Some(e) = &p.error {
        let _ = writeln!(out, "  error {}", e.text());
    }
    if let Some(c) = &p.cut {
        // The client was still busy: what it did next is the next page load.
        let _ = writeln!(out, "  {}; the client's next work is in the next page load", c.text());
    }

    out.push('\n');
    let scale = format!("0 .. {:.2} ms", p.total_ms());
    let _ = writeln!(
        out,
        "  {:>3}  {:<7} {:<6} {:<36} {:<9} {:<w$}  {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}",
        "#",
        "METHOD",
        "STATUS",
        "HOST+PATH",
        "PROTO",
        scale,
        "DNS",
        "TCP",
        "SSL",
        "SEND",
        "WAIT",
        "RECV",
        "TOTAL",
        w = BAR_WIDTH + 2
    );
    for (i, r) in p.requests.iter().enumerate() {
        let ph = phases(r);
        let status = match (r.status, &r.error) {
            (Some(s), _) => s.to_string(),
            (None, Some(_)) => "ERR".into(),
            (None, None) => "-".into(),
        };
        let _ = writeln!(
            out,
            "  {:>3}  {:<7} {:<6} {} {:<9} |{}|  {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}",
            i,
            r.method.as_deref().unwrap_or("-"),
            status,
            pad(&shorten(&host_path(r), 36), 36),
            shorten(r.protocol.as_deref().unwrap_or("-"), 9),
            bar(p, r, BAR_WIDTH),
            ms_cell(ph[1].0),
            ms_cell(ph[2].0),
            ms_cell(ph[3].0),
            ms_cell(ph[4].0),
            ms_cell(ph[5].0),
            ms_cell(ph[6].0),
            format!("{:.2}", r.timings.total()),
        );
        if let Some(e) = &r.error {
            let _ = writeln!(out, "  {:>3}  error {}", "", e.text());
        }
    }
    let _ = writeln!(out, "  bars: . blocked  d dns  t tcp  s ssl  > send  w wait  r receive");

    let chain = traced_chain(p);
    if p.redirect_chain.len() > 1 {
        out.push_str("\nRedirect chain\n");
        for (n, r) in chain.iter().enumerate() {
            let target = r.redirect_to.as_deref().map(|t| format!(" -> {t}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}. {} {} {}{target}",
                n + 1,
                r.method.as_deref().unwrap_or("-"),
                r.url.clone().unwrap_or_else(|| host_path(r)),
                r.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            );
        }
    }

    if !p.dns.is_empty() {
        out.push_str("\nDNS lookups\n");
        for (i, d) in p.dns.iter().enumerate() {
            let dur =
                d.ended_ns.filter(|e| *e >= d.started_ns).map(|e| format!("{:.2} ms", (e - d.started_ns) as f64 / 1e6));
            let _ = writeln!(
                out,
                "  [{i}] {} {}  {}  {}{}  {}[{}]",
                d.name,
                d.qtypes.join(","),
                dur.unwrap_or_else(|| "no answer".into()),
                d.rcode.as_deref().unwrap_or("-"),
                d.server.as_deref().map(|s| format!("  via {s}")).unwrap_or_default(),
                d.comm,
                d.tgid,
            );
            if !d.cname_chain.is_empty() {
                let mut names = vec![d.name.as_str()];
                names.extend(d.cname_chain.iter().map(String::as_str).filter(|c| !c.eq_ignore_ascii_case(&d.name)));
                let _ = writeln!(out, "      CNAME {}", names.join(" -> "));
            }
            if !d.addresses.is_empty() {
                let ttl = d.min_ttl.map(|t| format!("  (min TTL {t} s)")).unwrap_or_default();
                let _ = writeln!(out, "      addresses {}{ttl}", d.addresses.join(", "));
            }
            if let Some(e) = &d.error {
                let _ = writeln!(out, "      error {}", e.text());
            }
        }
    }

    if !p.connections.is_empty() {
        out.push_str("\nConnections\n");
        for (i, c) in p.connections.iter().enumerate() {
            let transport = if c.quic.is_some() { "quic" } else { "tcp" };
            let tcp = c
                .established_ns
                .filter(|e| *e >= c.connect_start_ns)
                .map(|e| format!("{transport} {:.2} ms", (e - c.connect_start_ns) as f64 / 1e6))
                .unwrap_or_else(|| "not established".into());
            let _ = writeln!(
                out,
                "  [{i}] {} -> {}  {}[{}] fd {}  {tcp}  {} request{}",
                c.src.as_deref().unwrap_or("?"),
                c.dst.as_deref().unwrap_or("?"),
                c.comm,
                c.pid,
                c.fd,
                c.requests,
                if c.requests == 1 { "" } else { "s" },
            );
            if let Some(t) = &c.tls {
                let hs = match (t.handshake_start_ns, t.handshake_end_ns) {
                    (Some(a), Some(b)) if b >= a => format!("handshake {:.2} ms", (b - a) as f64 / 1e6),
                    _ => "handshake not seen".into(),
                };
                let mut parts = vec![format!("TLS {}", t.library)];
                parts.extend(t.version.clone());
                parts.extend(t.cipher.clone());
                parts.extend(t.alpn.as_ref().map(|a| format!("alpn {a}")));
                parts.extend(t.sni.as_ref().map(|s| format!("sni {s}")));
                parts.push(if t.estimated { format!("{hs} (estimated)") } else { hs });
                let _ = writeln!(out, "      {}", parts.join("  "));
            }
            if let Some(q) = &c.quic {
                let mut parts = vec![format!("QUIC {}", q.version.as_deref().unwrap_or("?"))];
                parts.extend(q.original_dcid.as_ref().map(|d| format!("dcid {d}")));
                if !q.alpn_offered.is_empty() {
                    parts.push(format!("alpn offered {}", q.alpn_offered.join(",")));
                }
                parts.extend(q.zero_rtt.then(|| "0-RTT".to_string()));
                parts.extend(q.retry.then(|| "Retry".to_string()));
                if !q.version_negotiation.is_empty() {
                    parts.push(format!("version negotiation {}", q.version_negotiation.join(",")));
                }
                parts.push(format!("{} datagrams out, {} in", q.datagrams_sent, q.datagrams_received));
                parts.extend(q.fell_back_to.map(|t| format!("fell back to TCP [{t}]")));
                let _ = writeln!(out, "      {}", parts.join("  "));
            }
            if let Some(e) = &c.error {
                let _ = writeln!(out, "      error {e}");
            }
        }
    }
    out
}

/// `tracer compare`.
pub fn compare(c: &Comparison, started_at_ms: i64, client: &str) -> String {
    let mut out = String::new();
    let b = &c.baseline;
    let _ =
        writeln!(out, "page load {}  {}  ({client}, {} UTC)", c.page_load_id, c.url, time_utc(started_at_ms as f64));
    let _ = writeln!(
        out,
        "baseline {}  {}{}",
        b.id,
        b.url,
        b.fetched_at_ms.map(|t| format!("  (tracer fetch, {} UTC)", time_utc(t as f64))).unwrap_or_default()
    );
    let outcome = |status: Option<u16>, error: &Option<String>, redirects: usize| {
        let mut s = match (error, status) {
            (Some(e), _) => e.clone(),
            (None, Some(st)) => st.to_string(),
            (None, None) => "-".into(),
        };
        if redirects > 0 {
            let _ = write!(s, " after {redirects} redirect{}", if redirects == 1 { "" } else { "s" });
        }
        s
    };
    out.push('\n');
    let _ = writeln!(out, "  {:<10} {:>24} {:>24}", "", "traced", "baseline");
    let _ = writeln!(
        out,
        "  {:<10} {:>24} {:>24}",
        "outcome",
        outcome(c.traced_status, &c.traced_error, c.traced_redirects),
        outcome(b.status, &b.error, c.baseline_redirects)
    );
    out.push('\n');
    let _ = writeln!(out, "  {:<10} {:>10} {:>10} {:>10}", "phase (ms)", "traced", "baseline", "diff");
    for r in &c.rows {
        let diff = r.diff_ms.map(|d| format!("{d:+.2}")).unwrap_or_else(|| "-".into());
        let _ =
            writeln!(out, "  {:<10} {:>10} {:>10} {:>10}", r.phase, opt_ms(r.traced_ms), opt_ms(r.baseline_ms), diff);
    }
    let _ = writeln!(
        out,
        "\n  phases are summed over the document's redirect chain; document = their sum; diff = traced - baseline; - = did not happen"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_helpers() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(2048), "2.0 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
        assert_eq!(time_utc(1_776_160_800_123.0), "2026-04-14 10:00:00.123");
    }
}
