//! Page loads as OpenTelemetry spans (OTLP protobuf messages of `opentelemetry-proto`).
//!
//! One trace per page load: a root span `page_load`, one `CLIENT` span per request (named by
//! its method, as the HTTP semantic conventions say), and under each request the phases that
//! happened: `dns`, `connect` (TCP), `tls`, `send`, `wait` and `receive`. Phase spans have
//! exactly the request's HAR durations (those of the history and the dashboard). They are laid
//! out like the waterfall: dns, connect and tls from the request's start (after any blocked
//! time), send, wait and receive back from its end.
//!
//! Attributes follow the OpenTelemetry semantic conventions where one exists (`url.full`,
//! `http.request.method`, `http.response.status_code`, `server.address`, `server.port`,
//! `network.protocol.version`, `network.peer.address`, `tls.protocol.version`, `tls.cipher`,
//! `tls.client.server_name`, `dns.question.name`, `dns.answers`, `error.type` ...), and are
//! `tracer.*` otherwise. A resource is one traced client process on this host: `service.name`
//! is the client's name (curl, firefox-esr), with `process.*`, `host.*` and `os.*`.
use std::collections::BTreeMap;

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode},
};

use crate::{
    clock::WallOffset,
    failure::Failure,
    stitch::model::{ClientInfo, PageLoad, Request},
};

/// What the resource says about this machine, read once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// `host.name`
    pub name: String,
    /// `host.id`: /etc/machine-id
    pub id: Option<String>,
    /// `host.arch`, in the conventions' spelling (amd64, arm64)
    pub arch: String,
    /// `os.version`: the kernel release
    pub os_version: String,
}

impl HostInfo {
    pub fn detect() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "x86",
            other => other,
        };
        Self {
            name: crate::procfs::hostname().unwrap_or_else(|| "localhost".into()),
            id: std::fs::read_to_string("/etc/machine-id").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
            arch: arch.into(),
            os_version: crate::procfs::kernel_release(),
        }
    }
}

/// Fills a buffer with random bytes (trace and span ids).
pub type IdSource<'a> = &'a mut dyn FnMut(&mut [u8]);

fn id<const N: usize>(ids: &mut dyn FnMut(&mut [u8])) -> Vec<u8> {
    let mut b = [0u8; N];
    ids(&mut b);
    // An all-zero id is invalid in OTLP.
    if b.iter().all(|x| *x == 0) {
        b[N - 1] = 1;
    }
    b.to_vec()
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn s(v: impl Into<String>) -> Value {
    Value::StringValue(v.into())
}

fn i(v: impl Into<i64>) -> Value {
    Value::IntValue(v.into())
}

fn strings(v: &[String]) -> Value {
    Value::ArrayValue(ArrayValue { values: v.iter().map(|x| AnyValue { value: Some(s(x.clone())) }).collect() })
}

/// `host:port` / `[v6]:port` -> (address, port).
fn split_addr(a: &str) -> Option<(String, u16)> {
    a.parse::<std::net::SocketAddr>().ok().map(|sa| (sa.ip().to_string(), sa.port()))
}

/// `TLSv1.3` -> ("tls", "1.3"); `SSLv3` -> ("ssl", "3").
pub fn tls_version(v: &str) -> (&'static str, String) {
    if let Some(rest) = v.strip_prefix("TLSv").or_else(|| v.strip_prefix("TLS ")) {
        ("tls", rest.to_string())
    } else if let Some(rest) = v.strip_prefix("SSLv") {
        ("ssl", rest.to_string())
    } else {
        ("tls", v.to_string())
    }
}

/// Resource attributes of one traced client process on this host.
pub fn resource(client: &ClientInfo, host: &HostInfo) -> Resource {
    let exe_name = client
        .exe
        .as_deref()
        .and_then(|e| std::path::Path::new(e).file_name())
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| client.name.clone());
    let mut attributes = vec![
        kv("service.name", s(client.name.clone())),
        kv("process.pid", i(client.tgid)),
        kv("process.executable.name", s(exe_name)),
    ];
    if let Some(exe) = &client.exe {
        attributes.push(kv("process.executable.path", s(exe.clone())));
    }
    attributes.push(kv("host.name", s(host.name.clone())));
    if let Some(id) = &host.id {
        attributes.push(kv("host.id", s(id.clone())));
    }
    attributes.push(kv("host.arch", s(host.arch.clone())));
    attributes.push(kv("os.type", s("linux")));
    attributes.push(kv("os.version", s(host.os_version.clone())));
    Resource { attributes, ..Default::default() }
}

/// One export request: page loads grouped by client process (one resource each).
pub fn export_request(pages: &[PageLoad], host: &HostInfo, wall: WallOffset, ids: IdSource) -> ExportTraceServiceRequest {
    let mut by_client: BTreeMap<(u32, String), (usize, Vec<Span>)> = BTreeMap::new();
    for (n, page) in pages.iter().enumerate() {
        let entry = by_client.entry((page.client.tgid, page.client.name.clone())).or_insert((n, Vec::new()));
        entry.1.extend(page_spans(page, wall, ids));
    }
    let mut groups: Vec<(usize, Vec<Span>)> = by_client.into_values().collect();
    groups.sort_by_key(|(first, _)| *first); // in the order the page loads came
    let scope = InstrumentationScope { name: "tracer".into(), version: env!("CARGO_PKG_VERSION").into(), ..Default::default() };
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(first, spans)| ResourceSpans {
                resource: Some(resource(&pages[first].client, host)),
                scope_spans: vec![ScopeSpans { scope: Some(scope.clone()), spans, ..Default::default() }],
                ..Default::default()
            })
            .collect(),
    }
}

fn error_status(message: Option<&str>) -> Option<Status> {
    message.map(|m| Status { message: m.to_string(), code: StatusCode::Error as i32 })
}

/// The spans of one page load: its root first, then each request followed by its phases.
pub fn page_spans(page: &PageLoad, wall: WallOffset, ids: IdSource) -> Vec<Span> {
    let trace_id = id::<16>(ids);
    let root_id = id::<8>(ids);
    let mut attributes = Vec::new();
    if let Some(url) = &page.url {
        attributes.push(kv("url.full", s(url.clone())));
    }
    if let Some(st) = page.status {
        attributes.push(kv("http.response.status_code", i(st)));
    }
    let error_text = page.error.as_ref().map(Failure::text);
    let error_type = page.error.as_ref().map(|e| e.code.to_string()).or_else(|| page.status.filter(|s| *s >= 400).map(|s| s.to_string()));
    if let Some(e) = &error_type {
        attributes.push(kv("error.type", s(e.clone())));
    }
    attributes.extend([
        kv("tracer.page_load.requests", i(page.requests.len() as i64)),
        kv("tracer.page_load.connections", i(page.connections.len() as i64)),
        kv("tracer.page_load.redirects", i(page.redirect_chain.len().saturating_sub(1) as i64)),
        kv("tracer.page_load.bytes", i(i64::try_from(page.bytes()).unwrap_or(i64::MAX))),
    ]);
    if let Some(cut) = &page.cut {
        // A cap closed it while its client was busy (stitch/caps.rs): the trace is a part.
        attributes.push(kv("tracer.page_load.cut", s(cut.cap.name())));
    }
    let start = wall.unix_ns(page.started_ns);
    let end = wall.unix_ns(page.ended_ns.max(page.started_ns));
    let mut spans = vec![Span {
        trace_id: trace_id.clone(),
        span_id: root_id.clone(),
        name: "page_load".into(),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        status: error_status(error_text.as_deref().or(error_type.as_deref())),
        ..Default::default()
    }];
    for r in &page.requests {
        request_spans(page, r, wall, &trace_id, &root_id, ids, &mut spans);
    }
    spans
}

fn ns(ms: f64) -> u64 {
    (ms.max(0.0) * 1e6).round() as u64
}

#[allow(clippy::too_many_arguments)]
fn request_spans(
    page: &PageLoad,
    r: &Request,
    wall: WallOffset,
    trace_id: &[u8],
    parent: &[u8],
    ids: IdSource,
    out: &mut Vec<Span>,
) {
    let span_id = id::<8>(ids);
    let conn = r.connection.and_then(|c| page.connections.get(c));
    let lookup = r.dns.and_then(|d| page.dns.get(d));
    let tls = conn.and_then(|c| c.tls.as_ref());
    let mut a = Vec::new();
    if let Some(url) = &r.url {
        a.push(kv("url.full", s(url.clone())));
    }
    if let Some(m) = &r.method {
        a.push(kv("http.request.method", s(m.clone())));
    }
    if let Some(st) = r.status {
        a.push(kv("http.response.status_code", i(st)));
    }
    let peer = conn.and_then(|c| c.dst.as_deref()).and_then(split_addr);
    if let Some(host) = crate::history::store::request_host(r) {
        a.push(kv("server.address", s(host)));
    }
    let url_port = r.url.as_deref().and_then(|u| url::Url::parse(u).ok()).and_then(|u| u.port_or_known_default());
    if let Some(port) = url_port.or(peer.as_ref().map(|p| p.1)) {
        a.push(kv("server.port", i(port)));
    }
    if let Some(p) = &r.protocol {
        a.push(kv("network.protocol.name", s("http")));
        a.push(kv("network.protocol.version", s(p.strip_prefix("HTTP/").unwrap_or(p).to_string())));
    }
    if let Some((addr, port)) = &peer {
        a.push(kv("network.transport", s(transport(conn))));
        a.push(kv("network.peer.address", s(addr.clone())));
        a.push(kv("network.peer.port", i(*port)));
    }
    if let Some(t) = tls {
        push_tls(&mut a, t);
    }
    if let Some(ct) = &r.content_type {
        a.push(kv("tracer.http.response.content_type", s(ct.clone())));
    }
    a.push(kv("http.request.size", i(i64::try_from(r.request_bytes).unwrap_or(i64::MAX))));
    a.push(kv("http.response.size", i(i64::try_from(r.response_bytes).unwrap_or(i64::MAX))));
    if let Some(loc) = &r.redirect_to {
        a.push(kv("tracer.http.redirect_to", s(loc.clone())));
    }
    a.push(kv("tracer.new_connection", Value::BoolValue(r.new_connection)));
    a.push(kv("thread.id", i(r.pid)));
    let error_text = r.error.as_ref().map(Failure::text);
    let error_type = r.error.as_ref().map(|e| e.code.to_string()).or_else(|| r.status.filter(|s| *s >= 400).map(|s| s.to_string()));
    if let Some(e) = &error_type {
        a.push(kv("error.type", s(e.clone())));
    }
    let start = wall.unix_ns(r.started_ns);
    let end = wall.unix_ns(r.ended_ns.max(r.started_ns));
    out.push(Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.clone(),
        parent_span_id: parent.to_vec(),
        name: r.method.clone().unwrap_or_else(|| "HTTP".into()),
        kind: SpanKind::Client as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: a,
        status: error_status(error_text.as_deref().or(error_type.as_deref())),
        ..Default::default()
    });

    // The phases, laid out as in the waterfall and clamped to the request.
    let t = &r.timings;
    let mut phase = |name: &str, from: u64, to: u64, attributes: Vec<KeyValue>, error: Option<&str>| {
        let from = from.clamp(start, end);
        out.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: id::<8>(ids),
            parent_span_id: span_id.clone(),
            name: name.into(),
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: from,
            end_time_unix_nano: to.clamp(from, end),
            attributes,
            status: error_status(error),
            ..Default::default()
        });
    };
    let mut cursor = start;
    if t.dns >= 0.0 {
        let mut attrs = Vec::new();
        let mut error = None;
        if let Some(l) = lookup {
            attrs.push(kv("dns.question.name", s(l.name.clone())));
            if !l.addresses.is_empty() {
                attrs.push(kv("dns.answers", strings(&l.addresses)));
            }
            if !l.qtypes.is_empty() {
                attrs.push(kv("tracer.dns.question.types", strings(&l.qtypes)));
            }
            if !l.cname_chain.is_empty() {
                attrs.push(kv("tracer.dns.cname_chain", strings(&l.cname_chain)));
            }
            if let Some(rc) = &l.rcode {
                attrs.push(kv("tracer.dns.response_code", s(rc.clone())));
            }
            if let Some(ttl) = l.min_ttl {
                attrs.push(kv("tracer.dns.min_ttl", i(ttl)));
            }
            if let Some((addr, port)) = l.server.as_deref().and_then(split_addr) {
                attrs.push(kv("network.peer.address", s(addr)));
                attrs.push(kv("network.peer.port", i(port)));
            }
            if let Some(e) = &l.error {
                attrs.push(kv("error.type", s(e.code.to_string())));
                error = Some(e.text());
            }
        }
        phase("dns", cursor, cursor + ns(t.dns), attrs, error.as_deref());
        cursor += ns(t.dns);
    }
    cursor += ns(t.blocked);
    if t.tcp >= 0.0 {
        let mut attrs = vec![kv("network.transport", s("tcp"))];
        if let Some((addr, port)) = &peer {
            attrs.push(kv("network.peer.address", s(addr.clone())));
            attrs.push(kv("network.peer.port", i(*port)));
        }
        if let Some((addr, port)) = conn.and_then(|c| c.src.as_deref()).and_then(split_addr) {
            attrs.push(kv("network.local.address", s(addr)));
            attrs.push(kv("network.local.port", i(port)));
        }
        let error = conn.and_then(|c| c.error.as_deref());
        if let Some(e) = error {
            attrs.push(kv("error.type", s(e.to_string())));
        }
        phase("connect", cursor, cursor + ns(t.tcp), attrs, error);
        cursor += ns(t.tcp);
    }
    if t.ssl >= 0.0 {
        let mut attrs = Vec::new();
        if let Some(tls) = tls {
            push_tls(&mut attrs, tls);
            attrs.push(kv("tracer.tls.library", s(tls.library.clone())));
            attrs.push(kv("tracer.tls.estimated", Value::BoolValue(tls.estimated)));
        }
        phase("tls", cursor, cursor + ns(t.ssl), attrs, None);
    }
    let mut back = end;
    let mut tail = Vec::new();
    if t.receive >= 0.0 {
        tail.push(("receive", back.saturating_sub(ns(t.receive)), back));
        back = back.saturating_sub(ns(t.receive));
    }
    if t.wait >= 0.0 {
        tail.push(("wait", back.saturating_sub(ns(t.wait)), back));
        back = back.saturating_sub(ns(t.wait));
    }
    if t.send >= 0.0 {
        tail.push(("send", back.saturating_sub(ns(t.send)), back));
    }
    for (name, from, to) in tail.into_iter().rev() {
        phase(name, from, to, Vec::new(), None);
    }
}

fn push_tls(a: &mut Vec<KeyValue>, t: &crate::stitch::model::TlsSession) {
    if let Some(v) = &t.version {
        let (name, version) = tls_version(v);
        a.push(kv("tls.protocol.name", s(name)));
        a.push(kv("tls.protocol.version", s(version)));
    }
    if let Some(c) = &t.cipher {
        a.push(kv("tls.cipher", s(c.clone())));
    }
    if let Some(sni) = &t.sni {
        a.push(kv("tls.client.server_name", s(sni.clone())));
    }
    if let Some(alpn) = &t.alpn {
        a.push(kv("tls.next_protocol", s(alpn.clone())));
    }
}

/// `udp` for a QUIC connection (HTTP/3), else `tcp`.
fn transport(conn: Option<&crate::stitch::model::Connection>) -> &'static str {
    if conn.is_some_and(|c| c.quic.is_some()) { "udp" } else { "tcp" }
}
