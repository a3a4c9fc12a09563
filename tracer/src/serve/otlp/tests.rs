use std::collections::HashMap;

use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceRequest},
    common::v1::any_value::Value,
    trace::v1::Span,
};

use super::*;
use crate::stitch::sample::{MS, failed_dns_page, redirect_page};

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

fn text(span: &Span, key: &str) -> Option<String> {
    match attr(span, key) {
        Some(Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn int(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key) {
        Some(Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

fn counting_ids() -> impl FnMut(&mut [u8]) {
    let mut n = 0u8;
    move |b: &mut [u8]| {
        n = n.wrapping_add(1);
        b.fill(n);
    }
}

const WALL: WallOffset = WallOffset(1_700_000_000_000_000_000);

#[test]
fn endpoint_urls() {
    assert_eq!(traces_url("http://127.0.0.1:4318").unwrap().as_str(), "http://127.0.0.1:4318/v1/traces");
    assert_eq!(traces_url("http://collector:4318/").unwrap().as_str(), "http://collector:4318/v1/traces");
    assert_eq!(traces_url("https://otel.example/otlp").unwrap().as_str(), "https://otel.example/otlp/v1/traces");
    assert_eq!(traces_url("http://c:4318/v1/traces").unwrap().as_str(), "http://c:4318/v1/traces");
    for bad in ["grpc://c:4317", "127.0.0.1:4318", "http://", "http://c/?x=1", "not a url"] {
        let e = traces_url(bad).unwrap_err().to_string();
        assert!(e.contains("--otlp-endpoint") && e.contains(bad), "{bad}: {e}");
    }
}

#[test]
fn a_page_load_is_a_trace_of_requests_and_their_phases() {
    let page = redirect_page(5000 * MS);
    let mut ids = counting_ids();
    let spans = spans::page_spans(&page, WALL, &mut ids);
    let root = &spans[0];
    assert_eq!(root.name, "page_load");
    assert!(root.parent_span_id.is_empty());
    assert_eq!(root.trace_id.len(), 16);
    assert!(spans.iter().all(|s| s.trace_id == root.trace_id && s.span_id.len() == 8));
    let unique: std::collections::HashSet<&Vec<u8>> = spans.iter().map(|s| &s.span_id).collect();
    assert_eq!(unique.len(), spans.len(), "span ids are unique");
    assert_eq!(root.start_time_unix_nano, WALL.unix_ns(page.started_ns));
    assert_eq!(root.end_time_unix_nano, WALL.unix_ns(page.ended_ns));
    assert_eq!(text(root, "url.full").as_deref(), Some("http://shop.test/"));
    assert_eq!(int(root, "http.response.status_code"), Some(200));

    let requests: Vec<&Span> = spans.iter().filter(|s| s.parent_span_id == root.span_id).collect();
    assert_eq!(requests.len(), page.requests.len());
    for (span, r) in requests.iter().zip(&page.requests) {
        assert_eq!(span.kind, opentelemetry_proto::tonic::trace::v1::span::SpanKind::Client as i32);
        assert_eq!(span.name, "GET");
        assert_eq!(text(span, "url.full"), r.url);
        assert_eq!(text(span, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(int(span, "http.response.status_code"), r.status.map(i64::from));
        assert_eq!(text(span, "server.address"), r.host);
        assert_eq!(text(span, "network.protocol.version").as_deref(), Some("1.1"));
        let children: HashMap<String, &Span> =
            spans.iter().filter(|s| s.parent_span_id == span.span_id).map(|s| (s.name.clone(), s)).collect();
        let t = &r.timings;
        for (name, ms) in [("dns", t.dns), ("connect", t.tcp), ("tls", t.ssl), ("send", t.send), ("wait", t.wait), ("receive", t.receive)] {
            match children.get(name) {
                None => assert!(ms < 0.0, "{}: {name} ({ms} ms) has a span", span.name),
                Some(c) => {
                    assert!(ms >= 0.0, "{name} did not happen");
                    assert_eq!(c.end_time_unix_nano - c.start_time_unix_nano, (ms * 1e6).round() as u64, "{name} lasts its HAR time");
                    assert!(c.start_time_unix_nano >= span.start_time_unix_nano && c.end_time_unix_nano <= span.end_time_unix_nano, "{name} inside its request");
                }
            }
        }
        if let (Some(w), Some(rcv)) = (children.get("wait"), children.get("receive")) {
            assert_eq!(w.end_time_unix_nano, rcv.start_time_unix_nano, "receive follows wait");
            assert_eq!(rcv.end_time_unix_nano, span.end_time_unix_nano, "receive ends the request");
        }
    }
    // The https document: DNS of the CNAME'd name, TLS details.
    let doc = requests[1];
    let dns = spans.iter().find(|s| s.parent_span_id == doc.span_id && s.name == "dns").unwrap();
    assert_eq!(text(dns, "dns.question.name").as_deref(), Some("www.shop.test"));
    assert!(matches!(attr(dns, "dns.answers"), Some(Value::ArrayValue(a)) if a.values.len() == 1));
    let tls = spans.iter().find(|s| s.parent_span_id == doc.span_id && s.name == "tls").unwrap();
    assert_eq!(text(tls, "tls.protocol.version").as_deref(), Some("1.3"));
    assert_eq!(text(tls, "tls.client.server_name").as_deref(), Some("www.shop.test"));
    assert_eq!(text(doc, "tls.cipher").as_deref(), Some("TLS_AES_128_GCM_SHA256"));
    assert_eq!(int(doc, "server.port"), Some(443));
    assert_eq!(text(doc, "network.peer.address").as_deref(), Some("10.77.0.3"));
    // The reused connection's request has no set-up phases.
    let css: Vec<&str> = spans.iter().filter(|s| s.parent_span_id == requests[2].span_id).map(|s| s.name.as_str()).collect();
    assert_eq!(css, ["send", "wait", "receive"]);
}

#[test]
fn a_failure_is_an_error_span() {
    let page = failed_dns_page(5000 * MS, "nope.shop.test");
    let spans = spans::page_spans(&page, WALL, &mut counting_ids());
    let root = &spans[0];
    assert_eq!(root.status.as_ref().map(|s| s.code), Some(2), "root status ERROR");
    assert_eq!(text(root, "error.type").as_deref(), Some("ERR_NAME_NOT_RESOLVED"));
    let req = &spans[1];
    assert_eq!(req.name, "HTTP", "no method: the conventions' fallback name");
    assert_eq!(text(req, "error.type").as_deref(), Some("ERR_NAME_NOT_RESOLVED"));
    let dns = &spans[2];
    assert_eq!(dns.name, "dns");
    assert_eq!(text(dns, "dns.question.name").as_deref(), Some("nope.shop.test"));
    assert_eq!(text(dns, "tracer.dns.response_code").as_deref(), Some("NXDOMAIN"));
    assert_eq!(spans.len(), 3);
}

#[test]
fn one_resource_per_client_process() {
    let mut other = redirect_page(0);
    other.client = crate::stitch::model::ClientInfo { tgid: 7, name: "wget".into(), exe: Some("/usr/bin/wget".into()) };
    let pages = [redirect_page(0), other, failed_dns_page(0, "x.test")];
    let host = HostInfo { name: "box1".into(), id: Some("abc".into()), arch: "amd64".into(), os_version: "6.18".into() };
    let req = spans::export_request(&pages, &host, WALL, &mut counting_ids());
    assert_eq!(req.resource_spans.len(), 2);
    let res_attr = |i: usize, key: &str| {
        req.resource_spans[i].resource.as_ref().unwrap().attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.clone()).and_then(|v| v.value)
    };
    assert_eq!(res_attr(0, "service.name"), Some(Value::StringValue("curl".into())));
    assert_eq!(res_attr(0, "process.pid"), Some(Value::IntValue(4242)));
    assert_eq!(res_attr(1, "process.executable.path"), Some(Value::StringValue("/usr/bin/wget".into())));
    assert_eq!(res_attr(1, "host.name"), Some(Value::StringValue("box1".into())));
    assert_eq!(res_attr(1, "host.id"), Some(Value::StringValue("abc".into())));
    let traces = |i: usize| {
        req.resource_spans[i].scope_spans[0].spans.iter().filter(|s| s.parent_span_id.is_empty()).count()
    };
    assert_eq!((traces(0), traces(1)), (2, 1));
    // It survives the wire.
    let back = ExportTraceServiceRequest::decode(req.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, req);
}

#[test]
fn tls_versions() {
    assert_eq!(spans::tls_version("TLSv1.2"), ("tls", "1.2".to_string()));
    assert_eq!(spans::tls_version("SSLv3"), ("ssl", "3".to_string()));
}

#[test]
fn random_ids_are_filled() {
    let mut a = [0u8; 16];
    let mut b = [0u8; 16];
    random_bytes(&mut a);
    random_bytes(&mut b);
    assert_ne!(a, b);
}

// ---------------------------------------------------------------------------------------------
// The exporter against a local receiver

/// A collector on loopback: answers each POST with the next status of `script` (then 200),
/// and hands every decoded request to the test.
fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut out).expect("a gzip body");
    out
}

/// A gzip body (`Content-Encoding: gzip`) is decompressed first, as collectors do.
async fn receiver(
    script: Vec<u16>,
    partial: i64,
) -> (url::Url, tokio::sync::mpsc::UnboundedReceiver<(axum::http::HeaderMap, ExportTraceServiceRequest)>) {
    use axum::{Router, body::Bytes, http::HeaderMap, routing::post};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let script = Arc::new(std::sync::Mutex::new(script.into_iter()));
    let app = Router::new().route(
        "/v1/traces",
        post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            let script = script.clone();
            async move {
                let status = script.lock().unwrap().next().unwrap_or(200);
                if status == 200 {
                    let body = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                        Bytes::from(gunzip(&body))
                    } else {
                        body
                    };
                    let _ = tx.send((headers, ExportTraceServiceRequest::decode(body).unwrap()));
                }
                let answer = ExportTraceServiceResponse {
                    partial_success: (partial > 0).then(|| ExportTracePartialSuccess { rejected_spans: partial, error_message: "no".into() }),
                };
                (axum::http::StatusCode::from_u16(status).unwrap(), answer.encode_to_vec())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (traces_url(&format!("http://{addr}")).unwrap(), rx)
}

fn quick(url: url::Url) -> OtlpConfig {
    OtlpConfig {
        flush_every: Duration::from_millis(50),
        backoff_first: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        timeout: Duration::from_secs(5),
        attempts: 3,
        ..OtlpConfig::new(url)
    }
}

fn host() -> HostInfo {
    HostInfo { name: "box1".into(), id: None, arch: "amd64".into(), os_version: "6.18".into() }
}

#[tokio::test]
async fn exports_batches_and_retries_what_may_succeed() {
    // 503 twice, then accepted, with 2 spans rejected.
    let (url, mut got) = receiver(vec![503, 503], 2).await;
    let (sender, handle) = spawn_exporter(quick(url), host(), WALL).await.unwrap();
    let page = redirect_page(0);
    assert!(sender.offer(&page));
    assert!(sender.offer(&failed_dns_page(0, "nope.test")));
    let (headers, req) = tokio::time::timeout(Duration::from_secs(30), got.recv()).await.expect("an export").unwrap();
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert!(headers.get("content-encoding").is_none(), "not compressed unless asked");
    let spans: usize = req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
    drop(sender);
    let c = handle.finish(Duration::from_secs(10)).await;
    assert_eq!(c.exported_page_loads, 2, "{c:?}");
    assert_eq!(c.failed_attempts, 2, "{c:?}");
    assert_eq!(c.rejected_spans, 2);
    assert_eq!(c.exported_spans, spans as u64 - 2);
    assert_eq!(c.dropped_export_failed + c.dropped_queue_full + c.queued, 0, "{c:?}");
}

#[tokio::test]
async fn a_refusal_is_not_retried() {
    let (url, _got) = receiver(vec![400, 400, 400], 0).await;
    let (sender, handle) = spawn_exporter(quick(url), host(), WALL).await.unwrap();
    sender.offer(&redirect_page(0));
    drop(sender);
    let c = handle.finish(Duration::from_secs(10)).await;
    assert_eq!((c.failed_attempts, c.dropped_export_failed, c.exported_page_loads), (1, 1, 0), "{c:?}");
}

#[tokio::test]
async fn a_collector_that_is_down_costs_counted_drops_and_never_blocks() {
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = traces_url(&format!("http://127.0.0.1:{port}")).unwrap();
    let (sender, handle) = spawn_exporter(OtlpConfig { queue: 4, batch_max: 2, ..quick(url) }, host(), WALL).await.unwrap();
    let page = redirect_page(0);
    let offered = 50;
    let accepted = (0..offered).filter(|_| sender.offer(&page)).count() as u64;
    assert!(accepted < offered, "a queue of 4 cannot take {offered} at once");
    let stats = sender.stats();
    assert_eq!(stats.snapshot().dropped_queue_full, offered - accepted);
    // Wait (bounded) for the exporter to give up on what it took.
    for _ in 0..500 {
        if stats.snapshot().queued == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(sender);
    let c = handle.finish(Duration::from_secs(10)).await;
    assert_eq!(c.exported_page_loads, 0);
    assert_eq!(c.dropped_export_failed, accepted, "{c:?}");
    assert_eq!(c.dropped_queue_full + c.dropped_export_failed, offered, "every page load is accounted for: {c:?}");
    assert!(c.failed_attempts >= 3, "retried: {c:?}");
}

#[tokio::test]
async fn the_exporters_own_posts_are_recognised() {
    let url = traces_url("http://127.0.0.1:4318").unwrap();
    let (sender, _handle) = spawn_exporter(quick(url), host(), WALL).await.unwrap();
    let me = std::process::id();
    let mut own = failed_dns_page(0, "127.0.0.1:4318");
    own.client.tgid = me;
    own.requests[0].error = Some(crate::failure::Failure::from_text("ERR_CONNECTION_REFUSED"));
    assert!(sender.is_own(&own));
    let mut other_port = own.clone();
    other_port.requests[0].host = Some("127.0.0.1:8080".into());
    assert!(!sender.is_own(&other_port), "another port of the same host");
    let mut mine_too = redirect_page(0);
    mine_too.client.tgid = me;
    assert!(!sender.is_own(&mine_too), "the daemon's other traffic (a baseline fetch) is reported");
    let not_me = failed_dns_page(0, "127.0.0.1:4318");
    assert!(!sender.is_own(&not_me), "another process's requests to the collector are reported");
    assert_eq!(sender.stats().snapshot().own_ignored, 1);
}

/// `--otlp-header` and `--otlp-compression gzip`: the collector gets the headers and a gzip
/// body that decodes to the same export.
#[tokio::test]
async fn headers_and_gzip_reach_the_collector() {
    let (url, mut got) = receiver(vec![], 0).await;
    let headers = vec![parse_header("x-api-key=k%3D1 2").unwrap(), parse_header("X-Scope-OrgID = team-a").unwrap()];
    let (sender, handle) = spawn_exporter(OtlpConfig { headers, gzip: true, ..quick(url) }, host(), WALL).await.unwrap();
    assert!(sender.offer(&redirect_page(0)));
    let (h, req) = tokio::time::timeout(Duration::from_secs(30), got.recv()).await.expect("an export").unwrap();
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(h["x-api-key"], "k=1 2", "%-decoded");
    assert_eq!(h["x-scope-orgid"], "team-a");
    assert_eq!(req.resource_spans.len(), 1);
    drop(sender);
    assert_eq!(handle.finish(Duration::from_secs(10)).await.exported_page_loads, 1);
}

#[test]
fn bad_headers_are_named_and_their_values_never_shown() {
    for (arg, want) in [
        ("novalue", "expected NAME=VALUE"),
        ("bad name=x", "\"bad name\" is not a header name"),
        ("content-type=text/plain", "set by the exporter"),
        ("x-key=s3cr3t\u{7f}", "the value of x-key has characters"),
        ("x-key=%ff%fe", "not UTF-8"),
    ] {
        let e = parse_header(arg).unwrap_err();
        assert!(e.contains(want), "{arg}: {e}");
        assert!(!e.contains("s3cr3t") && !e.contains("%ff"), "{arg}: the value is not echoed: {e}");
    }
    let (_, v) = parse_header("authorization=Bearer abc").unwrap();
    assert!(v.is_sensitive());
    assert!(!format!("{v:?}").contains("abc"), "Debug hides a sensitive value");
}

#[test]
fn gzip_shrinks_an_export_and_decodes_back() {
    let pages: Vec<_> = (0..20).map(|i| redirect_page(i * 1000 * MS)).collect();
    // Random trace and span ids, as exported: they do not compress.
    let mut ids = random_bytes;
    let raw = spans::export_request(&pages, &host(), WALL, &mut ids).encode_to_vec();
    let url = traces_url("http://127.0.0.1:4318").unwrap();
    let zipped = encode_body(&OtlpConfig { gzip: true, ..OtlpConfig::new(url.clone()) }, raw.clone());
    eprintln!("20 page loads: {} bytes, gzip {} ({:.2})", raw.len(), zipped.len(), zipped.len() as f64 / raw.len() as f64);
    assert!(zipped.len() * 3 < raw.len(), "{} -> {}", raw.len(), zipped.len());
    assert_eq!(gunzip(&zipped), raw);
    assert_eq!(encode_body(&OtlpConfig::new(url), raw.clone()), raw, "uncompressed unless asked");
}

#[test]
fn a_cut_page_load_says_which_cap_closed_it() {
    use crate::stitch::model::{Cap, PageCut};
    let whole = redirect_page(5000 * MS);
    let spans = spans::page_spans(&whole, WALL, &mut counting_ids());
    assert_eq!(text(&spans[0], "tracer.page_load.cut"), None);
    let cut = PageLoad { cut: Some(PageCut { cap: Cap::PageAge, limit: 300_000 }), ..whole };
    let spans = spans::page_spans(&cut, WALL, &mut counting_ids());
    assert_eq!(text(&spans[0], "tracer.page_load.cut").as_deref(), Some("page_age"));
    assert!(spans[1..].iter().all(|s| attr(s, "tracer.page_load.cut").is_none()), "on the root span only");
}
