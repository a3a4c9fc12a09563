//! The dashboard's JSON API through `app(state).oneshot(...)` on a temporary database of
//! synthetic page loads: filters, sorting, paging, detail, HAR, compare, fetch, health, the
//! live stream, 404 for unknown ids and 400 (never 500) for malformed parameters. No root.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    http::{Request, Response, StatusCode, header},
};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sqlx::SqlitePool;
use tower::ServiceExt as _;
use tracer::{
    clock::{WallOffset, monotonic_ns},
    failure::Failure,
    history::{self, db},
    stitch::{
        StitchConfig, Stitcher,
        model::{ClientInfo, Connection, DnsLookup, PageLoad, Request as Req, Timings, TlsSession},
    },
    stream::{
        StreamStats,
        events::{Event, EventBody},
    },
    serve::web::{self, AppState, FetchSettings, Health, LiveHub},
};

mod support;
use support::fixtures::{self, MS};

/// Monotonic ns of the first synthetic page load.
const T0: u64 = 9_000_000 * MS;
/// Unix ms of T0.
const WALL0: i64 = 1_776_160_800_000;

fn wall() -> WallOffset {
    WallOffset(WALL0 * 1_000_000 - T0 as i64)
}

/// `http://{host}/` -> 301 -> `https://www.{host}/` (TLS, HTTP/2) plus a sub-resource on the
/// same connection.
fn page(client: &str, tgid: u32, host: &str, start_ms: u64, status: Option<u16>, error: Option<&str>) -> PageLoad {
    let start = T0 + start_ms * MS;
    let www = format!("www.{host}");
    let t = |dns: f64, tcp: f64, ssl: f64, send: f64, wait: f64, receive: f64| Timings {
        blocked: if dns >= 0.0 { 0.05 } else { -1.0 },
        ..fixtures::timings(dns, tcp, ssl, send, wait, receive)
    };
    let req = |conn: Option<usize>, dns: Option<usize>, url: String, h: &str, path: &str, st: Option<u16>, at: u64, tm: Timings, bytes: u64| {
        let protocol = if conn == Some(0) { "HTTP/1.1" } else { "HTTP/2" };
        // A request with its own lookup is on a new connection (the sub-resource is not).
        Req { new_connection: dns.is_some(), ..fixtures::request((client, tgid), conn, dns, &url, h, path, protocol, st, at, tm, bytes) }
    };
    let client_info = ClientInfo { tgid, name: client.into(), exe: Some(format!("/usr/bin/{client}")) };
    let lookup = |name: &str, at: u64, chain: Vec<String>, addrs: Vec<&str>, err: Option<&str>| DnsLookup {
        tgid,
        comm: client.into(),
        name: name.into(),
        qtypes: vec!["A".into(), "AAAA".into()],
        started_ns: at,
        ended_ns: Some(at + 2 * MS),
        rcode: Some(if err.is_some() { "NXDOMAIN" } else { "NOERROR" }.into()),
        cname_chain: chain,
        addresses: addrs.into_iter().map(String::from).collect(),
        min_ttl: Some(60),
        server: Some("127.0.0.1:53".into()),
        error: err.map(Failure::from_text),
    };
    if let Some(err) = error {
        let mut r = req(None, Some(0), format!("http://{host}/"), host, "/", None, start, t(2.0, -1.0, -1.0, -1.0, -1.0, -1.0), 0);
        r.error = Some(Failure::from_text(err));
        return fixtures::failed_lookup(client_info, format!("http://{host}/"), start, r, lookup(host, start, vec![], vec![], Some(err)), err);
    }
    let conn = |fd: i32, dst: &str, at: u64, tls: Option<TlsSession>, n: u32| Connection {
        tgid,
        pid: tgid + 1,
        comm: client.into(),
        fd,
        skaddr: 0xffff_0000 + fd as u64,
        src: Some(format!("10.77.0.9:{}", 40000 + fd)),
        dst: Some(dst.into()),
        connect_start_ns: at,
        established_ns: Some(at + MS),
        closed_ns: None,
        error: None,
        tls,
        requests: n,
        quic: None,
    };
    let mut hop = req(Some(0), Some(0), format!("http://{host}/"), host, "/", Some(301), start, t(2.0, 1.0, -1.0, 0.1, 4.0, 0.4), 240);
    hop.redirect_to = Some(format!("https://{www}/"));
    let doc = req(Some(1), Some(1), format!("https://{www}/"), &www, "/", status, start + 8 * MS, t(1.5, 1.0, 3.5, 0.2, 6.0, 1.8), 5187);
    let mut sub =
        req(Some(1), None, format!("https://{www}/app.css"), &www, "/app.css", Some(200), start + 22 * MS, t(-1.0, -1.0, -1.0, 0.1, 3.0, 2.0), 900);
    sub.content_type = Some("text/css".into());
    let tls = TlsSession {
        library: "openssl".into(),
        handshake_start_ns: Some(start + 12 * MS),
        handshake_end_ns: Some(start + 15 * MS),
        estimated: false,
        version: Some("TLSv1.3".into()),
        cipher: Some("TLS_AES_256_GCM_SHA384".into()),
        alpn: Some("h2".into()),
        sni: Some(www.clone()),
    };
    PageLoad {
        client: client_info,
        url: Some(format!("http://{host}/")),
        started_ns: start,
        ended_ns: start + 27 * MS,
        status,
        error: None,
        requests: vec![hop, doc, sub],
        connections: vec![conn(5, "10.77.0.2:80", start + 2 * MS, None, 1), conn(6, "10.77.0.3:443", start + 10 * MS, Some(tls), 2)],
        dns: vec![
            lookup(host, start, vec![], vec!["10.77.0.2"], None),
            lookup(&www, start + 8 * MS, vec![www.clone(), "edge.cdn.test".into()], vec!["10.77.0.3"], None),
        ],
        redirect_chain: vec![0, 1],
        cut: None,
    }
}

fn health(db_path: &std::path::Path) -> Health {
    Health {
        started: Instant::now(),
        db_path: db_path.to_path_buf(),
        probes: json!([
            {"family": "tcp_connect", "point": "tracepoint syscalls:sys_enter_connect", "variant": "tracepoint", "attached": true, "error": null, "target": null},
            {"family": "tls_gnutls", "point": "uprobe gnutls_record_send", "variant": "uprobe", "attached": false, "error": "no such symbol", "target": "/lib/libgnutls.so.30"}
        ]),
        kernel: json!({"kprobes": false, "reason": "test"}),
        stats: Arc::new(StreamStats::default()),
        live: Default::default(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
    pool: SqlitePool,
    /// ids in insertion order
    ids: Vec<i64>,
}

/// (client, tgid, host, status, error)
type Spec<'a> = (&'a str, u32, &'a str, Option<u16>, Option<&'a str>);

/// 8 page loads, 1 s apart.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tracer.db");
    let pool = db::open(&path).await.unwrap();
    let specs: [Spec; 8] = [
        ("curl", 100, "shop.test", Some(200), None),
        ("curl", 101, "shop.test", Some(404), None),
        ("wget", 200, "news.test", Some(200), None),
        ("firefox-esr", 300, "shop.test", Some(503), None),
        ("curl", 102, "missing.test", None, Some("ERR_NAME_NOT_RESOLVED")),
        ("chromium", 400, "myshop.test", Some(200), None),
        ("wget", 201, "shop.test", Some(302), None),
        ("curl", 103, "news.test", Some(200), None),
    ];
    let pages: Vec<PageLoad> =
        specs.iter().enumerate().map(|(i, (c, t, h, s, e))| page(c, *t, h, i as u64 * 1000, *s, *e)).collect();
    let ids = history::insert_page_loads(&pool, &pages, wall()).await.unwrap();
    let access = web::auth::Access::new("127.0.0.1".parse().unwrap(), TEST_TOKEN, None).unwrap();
    let state = AppState::new(health(&path), pool.clone(), Arc::new(LiveHub::new(wall()))).with_access(access);
    Fixture { _dir: dir, state, pool, ids }
}

/// The fixtures' dashboard token; [`send`] adds it to every request that has no
/// `Authorization` or `Cookie` of its own.
const TEST_TOKEN: &str = "fixture-dashboard-token-0123456789";

async fn send(state: &AppState, mut req: Request<Body>) -> Response<Body> {
    let h = req.headers_mut();
    if !h.contains_key(header::AUTHORIZATION) && !h.contains_key(header::COOKIE) {
        h.insert(header::AUTHORIZATION, format!("Bearer {TEST_TOKEN}").parse().unwrap());
    }
    send_as_is(state, req).await
}

/// [`send`] without adding the token.
async fn send_as_is(state: &AppState, req: Request<Body>) -> Response<Body> {
    web::app(state.clone()).oneshot(req).await.unwrap()
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, Value) {
    let res = send(state, Request::get(uri).body(Body::empty()).unwrap()).await;
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    (status, v)
}

async fn post_json(state: &AppState, uri: &str, body: &str, content_type: Option<&str>) -> (StatusCode, Value) {
    let mut b = Request::post(uri);
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    let res = send(state, b.body(Body::from(body.to_string())).unwrap()).await;
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn ids_of(v: &Value) -> Vec<i64> {
    v["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn list_filters_sorts_and_pages() {
    let f = fixture().await;
    let id = |i: usize| f.ids[i];
    let (s, v) = get(&f.state, "/api/page-loads").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 8);
    assert_eq!(v["limit"], 50);
    assert_eq!(ids_of(&v), (0..8).rev().map(id).collect::<Vec<_>>(), "newest first");
    let first = &v["items"][0];
    assert_eq!(first["process"], "curl");
    assert_eq!(first["tgid"], 103);
    assert_eq!(first["url"], "http://news.test/");
    assert_eq!(first["status"], 200);
    assert_eq!(first["request_count"], 3);
    assert_eq!(first["bytes"], 240 + 5187 + 900);
    assert_eq!(first["total_ms"], 27.0);
    assert_eq!(first["started_at_ms"], WALL0 + 7000);

    let cases: Vec<(String, Vec<usize>)> = [
        // host matches the host and its subdomains, not myshop.test
        ("host=shop.test", vec![6, 3, 1, 0]),
        ("host=SHOP.test", vec![6, 3, 1, 0]),
        ("url=news", vec![7, 2]),
        ("url=%25", vec![]),
        ("process=wget", vec![6, 2]),
        ("process=firefox-esr", vec![3]),
        ("status=2xx", vec![7, 5, 2, 0]),
        ("status=3xx", vec![6]),
        ("status=4xx", vec![1]),
        ("status=5xx", vec![3]),
        ("status=error", vec![4]),
        ("host=shop.test&status=2xx&process=curl", vec![0]),
        (&*format!("since={}&until={}", WALL0 + 2000, WALL0 + 5000), vec![4, 3, 2]),
        (&*format!("since={}", WALL0 + 6500), vec![7]),
        // blank values (an empty form field) do not filter
        ("host=&url=&status=&process=", vec![7, 6, 5, 4, 3, 2, 1, 0]),
    ]
    .into_iter()
    .map(|(q, v): (&str, Vec<usize>)| (q.to_string(), v))
    .collect();
    for (q, want) in cases {
        let (s, v) = get(&f.state, &format!("/api/page-loads?{q}")).await;
        assert_eq!(s, StatusCode::OK, "{q}: {v}");
        assert_eq!(ids_of(&v), want.iter().map(|i| id(*i)).collect::<Vec<_>>(), "{q}");
        assert_eq!(v["total"], want.len(), "{q}");
    }

    // Sorting: total time, bytes, request count (descending, ties by newest id).
    let (_, v) = get(&f.state, "/api/page-loads?sort=total_ms").await;
    assert_eq!(v["items"].as_array().unwrap().last().unwrap()["id"], id(4), "the failed lookup (2 ms) is the fastest");
    assert_eq!(v["sort"], "total_ms");
    let (_, v) = get(&f.state, "/api/page-loads?sort=requests").await;
    assert_eq!(v["items"].as_array().unwrap().last().unwrap()["id"], id(4));
    let (_, v) = get(&f.state, "/api/page-loads?sort=bytes&status=error").await;
    assert_eq!(ids_of(&v), vec![id(4)]);

    // Paging: the same total on every page, pages do not overlap, the last one is short.
    let mut seen = Vec::new();
    for offset in [0, 3, 6] {
        let (s, v) = get(&f.state, &format!("/api/page-loads?limit=3&offset={offset}")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["total"], 8);
        assert_eq!(v["offset"], offset);
        seen.extend(ids_of(&v));
    }
    assert_eq!(seen, (0..8).rev().map(id).collect::<Vec<_>>());
    let (_, v) = get(&f.state, "/api/page-loads?limit=3&offset=100").await;
    assert_eq!(ids_of(&v), Vec::<i64>::new());
    assert_eq!(v["total"], 8);
}

#[tokio::test]
async fn malformed_parameters_are_400_naming_the_parameter() {
    let f = fixture().await;
    let cases = [
        ("/api/page-loads?limit=0", "limit"),
        ("/api/page-loads?limit=501", "limit"),
        ("/api/page-loads?limit=ten", "limit"),
        ("/api/page-loads?limit=-5", "limit"),
        ("/api/page-loads?offset=-1", "offset"),
        ("/api/page-loads?offset=99999999999999999999", "offset"),
        ("/api/page-loads?status=200", "status"),
        ("/api/page-loads?sort=host", "sort"),
        ("/api/page-loads?since=yesterday", "since"),
        ("/api/page-loads?until=soon", "until"),
        ("/api/page-loads?since=2000&until=1000", "until"),
        ("/api/page-loads?since=-5", "since"),
        ("/api/page-loads?host=a%20b", "host"),
        ("/api/page-loads?host=%3Cscript%3E", "host"),
        ("/api/page-loads?hots=shop.test", "hots"),
        ("/api/page-loads/abc", "id"),
        ("/api/page-loads/1.5", "id"),
        ("/api/page-loads/-1", "id"),
        ("/api/page-loads/99999999999999999999", "id"),
        ("/api/page-loads/x/har", "id"),
        ("/api/page-loads/%00/compare", "id"),
    ];
    for (uri, param) in cases {
        let (s, v) = get(&f.state, uri).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_eq!(v["param"], param, "{uri}: {v}");
        assert!(v["error"].as_str().unwrap().contains(param), "{uri}: {v}");
    }
    let long = format!("/api/page-loads?url={}", "a".repeat(3000));
    let (s, v) = get(&f.state, &long).await;
    assert_eq!((s, v["param"].as_str()), (StatusCode::BAD_REQUEST, Some("url")));
}

#[tokio::test]
async fn odd_input_is_never_a_500() {
    let f = fixture().await;
    let queries = [
        "host=%FF%FE", "url=%E2%80%8B", "url=%27%3B%20DROP%20TABLE%20page_loads%3B--", "url=_", "url=%5C",
        "process=%00", "status=", "since=1e3", "since=9223372036854775807", "until=-9223372036854775808",
        "limit=1&limit=2", "&&&", "=", "host", "sort=%00", "offset=18446744073709551616", "since=2026-13-45T99:99:99Z",
    ];
    for q in queries {
        let (s, v) = get(&f.state, &format!("/api/page-loads?{q}")).await;
        assert!(s == StatusCode::OK || s == StatusCode::BAD_REQUEST, "{q}: {s} {v}");
    }
    for path in ["/api/page-loads/0", "/api/page-loads/9223372036854775807", "/api/page-loads/%20", "/api/page-loads/1/x"] {
        let (s, v) = get(&f.state, path).await;
        assert!(s == StatusCode::NOT_FOUND || s == StatusCode::BAD_REQUEST, "{path}: {s} {v}");
    }
    // The table is still there.
    let (s, v) = get(&f.state, "/api/page-loads").await;
    assert_eq!((s, v["total"].as_u64()), (StatusCode::OK, Some(8)));
}

#[tokio::test]
async fn unknown_ids_and_endpoints_are_404() {
    let f = fixture().await;
    let missing = f.ids.iter().max().unwrap() + 1000;
    for uri in [
        format!("/api/page-loads/{missing}"),
        format!("/api/page-loads/{missing}/har"),
        format!("/api/page-loads/{missing}/compare"),
        "/api/nope".to_string(),
        "/api/page-loads/1/nope".to_string(),
    ] {
        let (s, v) = get(&f.state, &uri).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}: {v}");
        assert!(v["error"].is_string(), "{uri}: {v}");
    }
}

#[tokio::test]
async fn detail_and_har() {
    let f = fixture().await;
    let id = f.ids[0];
    let (s, v) = get(&f.state, &format!("/api/page-loads/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["id"], id);
    assert_eq!(v["started_at_ms"], WALL0);
    let p = &v["page"];
    assert_eq!(p["client"]["name"], "curl");
    assert_eq!(p["requests"].as_array().unwrap().len(), 3);
    assert_eq!(p["redirect_chain"], json!([0, 1]));
    assert_eq!(p["requests"][1]["timings"]["ssl"], 3.5);
    assert_eq!(p["dns"][1]["cname_chain"], json!(["www.shop.test", "edge.cdn.test"]));
    assert_eq!(p["connections"][1]["tls"]["alpn"], "h2");
    assert_eq!(p["connections"][1]["requests"], 2);
    assert_eq!(p["requests"][2]["new_connection"], false);

    let res = send(&f.state, Request::get(format!("/api/page-loads/{id}/har")).body(Body::empty()).unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(res.headers()[header::CONTENT_DISPOSITION], format!("attachment; filename=\"page-load-{id}.har\""));
    let har: Value = serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(har["log"]["version"], "1.2");
    assert_eq!(har["log"]["pages"][0]["id"], format!("page_{id}"));
    let entries = har["log"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["response"]["status"], 301);
    assert_eq!(entries[1]["timings"]["ssl"], 3.5);
}

fn fetched(url: &str) -> tracer::fetch::PageLoad {
    use tracer::fetch::model::*;
    let timed = |start_ms: f64, ms: f64| fixtures::timed(T0, start_ms, ms);
    let entry = |id: usize, url: &str, status: u16, t: Timings| fixtures::fetched_entry(T0, id, url, status, t, Initiator::Document);
    let (hop, doc) = fixtures::fetched_redirect_timings(T0);
    // A slow server this time: the document waits 40 ms.
    let doc = Timings { wait: timed(8.1, 40.0), receive: timed(48.1, 1.0), ..doc };
    let tls = TlsInfo {
        span: timed(5.5, 2.5).unwrap(),
        sni: Some("www.shop.test".into()),
        version: Some("TLSv1.3".into()),
        cipher_suite: Some("TLS13_AES_256_GCM_SHA384".into()),
        alpn: Some("h2".into()),
        resumed: false,
        certificates: vec![CertificateInfo {
            subject: "CN=www.shop.test".into(),
            issuer: "CN=tracer lab CA".into(),
            not_before: "2026-01-01T00:00:00Z".into(),
            not_after: "2027-01-01T00:00:00Z".into(),
            serial: "01".into(),
            subject_alt_names: vec!["www.shop.test".into(), "edge.cdn.test".into()],
        }],
        verified: true,
        failure: None,
    };
    let connection = Connection {
        id: 1,
        origin: "https://www.shop.test".into(),
        host: "www.shop.test".into(),
        dns_id: Some(1),
        attempts: vec![],
        remote: Some("10.77.0.3:443".parse().unwrap()),
        local: None,
        connect: timed(5.0, 0.5),
        tls: Some(tls),
        http_version: Some("HTTP/2".into()),
        requests: 1,
        bytes_sent: 0,
        bytes_received: 0,
        failure: None,
        quic: None,
        fell_back_from: None,
    };
    PageLoad {
        input: url.into(),
        url: url.into(),
        final_url: "https://www.shop.test/".into(),
        page: false,
        started_at_unix_ms: WALL0 + 60_000,
        span: timed(0.0, 49.1).unwrap(),
        total_ms: 49.1,
        document_ms: Some(49.1),
        entries: vec![entry(0, url, 301, hop), entry(1, "https://www.shop.test/", 200, doc)],
        connections: vec![connection],
        dns: vec![],
        subresources_skipped: 0,
        error: None,
        tracer_version: "test".into(),
    }
}

#[tokio::test]
async fn compare_without_and_with_a_baseline() {
    let f = fixture().await;
    let id = f.ids[0];
    let (s, v) = get(&f.state, &format!("/api/page-loads/{id}/compare")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["comparison"], Value::Null, "no baseline yet");
    assert_eq!(v["url"], "http://shop.test/");

    let bid = tracer::history::baselines::store_baseline(&f.pool, &fetched("http://shop.test/")).await.unwrap();
    let (s, v) = get(&f.state, &format!("/api/page-loads/{id}/compare")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let c = &v["comparison"];
    assert_eq!(c["baseline"]["id"], bid);
    let row = |name: &str| c["rows"].as_array().unwrap().iter().find(|r| r["phase"] == name).unwrap().clone();
    // traced chain: hop + doc; wait 4 + 6 = 10 vs baseline 2 + 40 = 42.
    assert_eq!(row("wait")["traced_ms"], 10.0);
    assert_eq!(row("wait")["baseline_ms"], 42.0);
    assert_eq!(row("wait")["diff_ms"], -32.0);
    assert_eq!(row("tls")["traced_ms"], 3.5);
    assert_eq!(row("tls")["baseline_ms"], 2.5);
    assert_eq!(row("total")["baseline_ms"], 49.1);
    // The certificate comes from the reference fetch.
    assert_eq!(v["baseline_tls"][0]["host"], "www.shop.test");
    assert_eq!(v["baseline_tls"][0]["certificates"][0]["subject"], "CN=www.shop.test");
    assert_eq!(v["baseline_tls"][0]["alpn"], "h2");
}

#[tokio::test]
async fn processes_and_health() {
    let f = fixture().await;
    let (s, v) = get(&f.state, "/api/processes").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v[0], json!({"name": "curl", "page_loads": 4}));
    assert_eq!(v.as_array().unwrap().len(), 4);

    f.state.health.stats.kernel_lost.store(3, std::sync::atomic::Ordering::Relaxed);
    f.state.health.stats.received.store(1000, std::sync::atomic::Ordering::Relaxed);
    let (s, v) = get(&f.state, "/api/health").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["lost_events"], 3);
    assert_eq!(v["events"]["received"], 1000);
    assert!(v["events_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["db_bytes"].as_u64().unwrap() > 0, "{v}");
    assert_eq!((v["probes_attached"].as_u64(), v["probes_total"].as_u64()), (Some(1), Some(2)));
    assert_eq!(v["probes"][1]["variant"], "uprobe");
    assert!(v["uptime_s"].is_u64());
}

/// A one-shot HTTP/1.1 origin on 127.0.0.1: answers `response` to every request, or nothing.
async fn origin(response: Option<&'static str>) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                match response {
                    Some(r) => {
                        let _ = s.write_all(r.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn fetch_baseline_now() {
    let f = fixture().await;
    // Malformed requests.
    let cases: [(&str, Option<&str>, StatusCode, Option<&str>); 8] = [
        (r#"{"url":"http://a.test/"}"#, None, StatusCode::UNSUPPORTED_MEDIA_TYPE, None),
        (r#"{"url":"http://a.test/"}"#, Some("text/plain"), StatusCode::UNSUPPORTED_MEDIA_TYPE, None),
        ("{not json", Some("application/json"), StatusCode::BAD_REQUEST, Some("body")),
        ("{}", Some("application/json"), StatusCode::BAD_REQUEST, Some("url")),
        (r#"{"url":5}"#, Some("application/json"), StatusCode::BAD_REQUEST, Some("body")),
        (r#"{"url":""}"#, Some("application/json"), StatusCode::BAD_REQUEST, Some("url")),
        (r#"{"url":"ftp://a.test/"}"#, Some("application/json"), StatusCode::BAD_REQUEST, Some("url")),
        (r#"{"url":"http://a.test/","nope":1}"#, Some("application/json"), StatusCode::BAD_REQUEST, Some("nope")),
    ];
    for (body, ct, status, param) in cases {
        let (s, v) = post_json(&f.state, "/api/fetch", body, ct).await;
        assert_eq!(s, status, "{body} {ct:?}: {v}");
        if let Some(p) = param {
            assert_eq!(v["param"], p, "{body}: {v}");
        }
    }
    let (s, _) = get(&f.state, "/api/fetch").await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);

    // A real fetch of a local origin: stored as a baseline and returned.
    let addr = origin(Some("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nhello")).await;
    let url = format!("http://{addr}/");
    let (s, v) = post_json(&f.state, "/api/fetch", &json!({ "url": url }).to_string(), Some("application/json; charset=utf-8")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let bid = v["baseline_id"].as_i64().unwrap();
    assert_eq!(v["baseline"]["id"], bid);
    assert_eq!(v["baseline"]["status"], 200);
    assert_eq!(v["load"]["url"], url);
    assert!(v["load"]["total_ms"].as_f64().unwrap() > 0.0);
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM baselines WHERE url = ?").bind(&url).fetch_one(&f.pool).await.unwrap();
    assert_eq!(stored, 1);

    // A failed fetch is a result too (connection refused), not an error of the API.
    let closed = { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap() };
    let (s, v) = post_json(&f.state, "/api/fetch", &json!({ "url": format!("http://{closed}/") }).to_string(), Some("application/json")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["baseline"]["error"], "ERR_CONNECTION_REFUSED");

    // A server that never answers: bounded by the deadline.
    let silent = origin(None).await;
    let mut state = f.state.clone();
    state.fetch = Arc::new(FetchSettings::new(f.state.fetch.options.clone(), Duration::from_millis(800), 1));
    let t = Instant::now();
    let (s, v) = post_json(&state, "/api/fetch", &json!({ "url": format!("http://{silent}/") }).to_string(), Some("application/json")).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{v}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(v["error"].as_str().unwrap().contains("did not finish"), "{v}");
}

/// Reads SSE frames (`event:` + `data:`) from a streaming body.
struct Frames {
    body: Body,
    buf: String,
}

impl Frames {
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        event = e.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if data.is_empty() && event == "message" {
                    continue; // keep-alive comment
                }
                return Some((event, serde_json::from_str(&data).unwrap_or(Value::String(data))));
            }
            let frame = tokio::time::timeout(Duration::from_secs(5), self.body.frame()).await.ok()??.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}

fn connect_event(tgid: u32, comm: &str) -> Event {
    Event {
        ts_ns: monotonic_ns(),
        tgid,
        pid: tgid,
        comm: comm.into(),
        body: EventBody::Connect {
            fd: 5,
            ret: -115,
            error: Some("EINPROGRESS"),
            dst: Some("10.77.0.3:443".parse().unwrap()),
            skaddr: 1,
            tcp: true,
            duration_ns: 1000,
        },
    }
}

/// The live feed as the daemon wires it: the stitcher's open page loads become `progress`,
/// the history writer's stored rows `page_load`.
#[tokio::test]
async fn live_stream_sends_progress_and_stored_page_loads() {
    let f = fixture().await;
    let res = send(&f.state, Request::get("/api/live").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut frames = Frames { body: res.into_body(), buf: String::new() };
    assert_eq!(frames.next().await.unwrap(), ("progress".to_string(), json!({"open": []})));
    assert_eq!(f.state.live.clients(), 1);

    let live = f.state.live.clone();
    let mut stitcher = Stitcher::new(StitchConfig::default());
    stitcher.ignore_in_progress("127.0.0.1:7878".parse().unwrap());
    let feed = |stitcher: &mut Stitcher, ev: &Event| {
        assert!(stitcher.on_event(ev).is_empty());
        live.page_progress(&stitcher.progress());
    };
    // A client connects somewhere: in progress.
    let connect = connect_event(99_000_042, "curl");
    feed(&mut stitcher, &connect);
    let (ev, v) = frames.next().await.unwrap();
    assert_eq!(ev, "progress");
    assert_eq!(v["open"][0]["tgid"], 99_000_042);
    assert_eq!(v["open"][0]["comm"], "curl");
    assert_eq!(v["open"][0]["events"], 1);
    // A server's traffic alone (no connect, no DNS query) is not a page load in progress.
    let mut srv = connect_event(7, "nginx");
    srv.body = EventBody::TlsData {
        lib: None,
        func: None,
        tls_obj: 1,
        fd: 3,
        direction: tracer::stream::events::Direction::Recv,
        len: 10,
        captured: 0,
        duration_ns: 1,
        first_line: None,
        http2_preface: false,
        data: vec![],
    };
    feed(&mut stitcher, &srv);
    // Nor is a viewer connecting to the dashboard.
    let mut viewer = connect_event(99_000_077, "chromium");
    if let EventBody::Connect { dst, .. } = &mut viewer.body {
        *dst = Some("127.0.0.1:7878".parse().unwrap());
    }
    feed(&mut stitcher, &viewer);

    // The client's page load closes once its connect has timed out (3 s) and it was quiet: the
    // indicator clears (had either event above been shown, this frame would list it).
    assert!(stitcher.tick(connect.ts_ns + 3_600 * MS).is_empty(), "a bare connect is no page load");
    live.page_progress(&stitcher.progress());
    let (ev, v) = frames.next().await.unwrap();
    assert_eq!((ev.as_str(), &v), ("progress", &json!({"open": []})));

    // A page load the history writer stores arrives with its id ...
    let on_stored = {
        let live = live.clone();
        history::OnStored(Arc::new(move |row| live.page_stored(row)))
    };
    let config = history::WriterConfig { wall: wall(), flush_every: Duration::ZERO, on_stored: Some(on_stored), ..Default::default() };
    let (writer, handle) = history::spawn_writer(f.pool.clone(), config);
    assert!(writer.send(page("curl", 99_000_042, "shop.test", 20_000, Some(200), None)));
    let (ev, v) = frames.next().await.unwrap();
    assert_eq!(ev, "page_load");
    assert_eq!(v["id"], *f.ids.last().unwrap() + 1);
    assert_eq!(v["process"], "curl");
    assert_eq!(v["tgid"], 99_000_042);
    assert_eq!(v["url"], "http://shop.test/");
    assert_eq!(v["status"], 200);
    assert_eq!(v["request_count"], 3);
    // ... the same summary as the list's row.
    let (_, list) = get(&f.state, "/api/page-loads?limit=1").await;
    assert_eq!(list["items"][0], v);
    drop(writer);
    handle.join().await;

    // Shutdown ends the stream (the server's graceful shutdown would otherwise wait forever).
    f.state.live.shutdown();
    assert!(frames.next().await.is_none());
    assert_eq!(f.state.live.clients(), 0);
}

/// 25,000 page loads: every list query of the dashboard answers quickly. The rows are written
/// with one INSERT each (the history writer's full insert of 25,000 page loads would take most
/// of the test's time); each carries a real page load's detail JSON, so that table scans read
/// as much as on a real database.
#[tokio::test]
async fn list_is_fast_on_a_large_database() {
    let f = fixture().await;
    let clients = ["curl", "wget", "firefox-esr", "chromium", "python3"];
    let hosts = ["shop.test", "news.test", "video.test", "mail.test", "docs.test", "search.test"];
    let statuses = [Some(200), Some(200), Some(200), Some(304), Some(404), Some(500)];
    let detail = serde_json::to_string(&page("curl", 1, "shop.test", 0, Some(200), None)).unwrap();
    let t = Instant::now();
    let mut tx = f.pool.begin().await.unwrap();
    let mut procs = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        for tgid in 0..20i64 {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO processes (tgid, name, first_seen_ms, last_seen_ms) VALUES (?, ?, 0, 0) RETURNING id",
            )
            .bind(10_000 + i as i64 * 100 + tgid)
            .bind(c)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
            procs.push(id);
        }
    }
    for n in 0..25_000i64 {
        let host = hosts[(n % 6) as usize];
        let err = (n % 50 == 0).then_some("ERR_CONNECTION_REFUSED");
        let status = if err.is_some() { None } else { statuses[(n % 6) as usize] };
        sqlx::query(
            "INSERT INTO page_loads (process_id, started_at_ms, started_ns, ended_ns, total_ms, url, host, status, error,
                 request_count, connection_count, redirect_count, bytes, detail_json)
             VALUES (?, ?, 0, 0, ?, ?, ?, ?, ?, ?, 2, 1, ?, ?)",
        )
        .bind(procs[(n % procs.len() as i64) as usize])
        .bind(WALL0 + 10_000 + n * 50)
        .bind(((n * 7919) % 5000) as f64 / 10.0)
        .bind(format!("https://{host}/page/{n}"))
        .bind(host)
        .bind(status.map(i64::from))
        .bind(err)
        .bind(1 + n % 40)
        .bind((n * 104_729) % 3_000_000)
        .bind(&detail)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    eprintln!("inserted 25,000 page loads in {:?}", t.elapsed());
    let queries = [
        "",
        "offset=24000",
        "host=shop.test",
        "process=chromium&status=5xx",
        "host=video.test&sort=total_ms&offset=1000",
        "url=video",
        "status=error",
        "sort=total_ms",
        "sort=bytes&limit=200",
        &format!("since={}&until={}", WALL0 + 100_000, WALL0 + 200_000),
    ];
    for q in queries {
        let t = Instant::now();
        let (s, v) = get(&f.state, &format!("/api/page-loads?{q}")).await;
        let took = t.elapsed();
        assert_eq!(s, StatusCode::OK, "{q}: {v}");
        eprintln!("{q:<50} total {:>6}  {took:?}", v["total"]);
        assert!(took < Duration::from_millis(750), "{q}: {took:?}");
    }
    let t = Instant::now();
    let (s, _) = get(&f.state, "/api/processes").await;
    assert_eq!(s, StatusCode::OK);
    assert!(t.elapsed() < Duration::from_millis(750));
}

/// Every route asks for the token, on loopback as off it: pages, assets, every API endpoint,
/// unknown paths, whatever the method. A bearer header or the cookie set by `/?token=` lets
/// through; the read-only metrics token opens `GET /metrics` and nothing else.
#[tokio::test]
async fn a_token_guards_every_route() {
    let f = fixture().await;
    const TOKEN: &str = "0123456789abcdef-test-token";
    const METRICS: &str = "metrics-only-token-0123456789";
    let id = f.ids[0];
    let routes = [
        "/".to_string(),
        "/favicon.ico".into(),
        "/assets/app.js".into(),
        "/api/page-loads".into(),
        format!("/api/page-loads/{id}"),
        format!("/api/page-loads/{id}/har"),
        format!("/api/page-loads/{id}/compare"),
        "/api/processes".into(),
        "/api/health".into(),
        "/api/live".into(),
        "/metrics".into(),
        "/api/nope".into(),
        "/nope".into(),
    ];
    for listen in ["127.0.0.1", "0.0.0.0"] {
        let access = web::auth::Access::new(listen.parse().unwrap(), TOKEN, Some(METRICS)).unwrap();
        let state = f.state.clone().with_access(access);
        for path in &routes {
            for auth in [None, Some("Bearer wrong-token-wrong-token"), Some("Basic MDEyMzQ1Njc4OWFiY2RlZg=="), Some(TOKEN)] {
                let mut b = Request::get(path.as_str());
                if let Some(a) = auth {
                    b = b.header(header::AUTHORIZATION, a);
                }
                let res = send_as_is(&state, b.body(Body::empty()).unwrap()).await;
                assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{listen}: {path} with {auth:?}");
                assert!(res.headers().get(header::WWW_AUTHENTICATE).is_some(), "{path}");
                assert!(res.headers().get("content-security-policy").is_some(), "{path}: security headers on 401s too");
                let body = res.into_body().collect().await.unwrap().to_bytes();
                let v: Value = serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{path}: 401 body is JSON"));
                assert!(v["error"].as_str().is_some_and(|e| e.contains("token")), "{path}: {v}");
            }
            let res = send_as_is(&state, Request::get(path.as_str()).header(header::AUTHORIZATION, format!("Bearer {TOKEN}")).body(Body::empty()).unwrap()).await;
            assert_ne!(res.status(), StatusCode::UNAUTHORIZED, "{path} with the right token");
            assert_ne!(res.status(), StatusCode::FORBIDDEN, "{path} with the right token");
            // The metrics token: /metrics only.
            let res = send_as_is(&state, Request::get(path.as_str()).header(header::AUTHORIZATION, format!("Bearer {METRICS}")).body(Body::empty()).unwrap()).await;
            if path == "/metrics" {
                assert_eq!(res.status(), StatusCode::OK, "{listen}: /metrics with the metrics token");
            } else {
                assert_eq!(res.status(), StatusCode::FORBIDDEN, "{listen}: {path} with the metrics token");
            }
        }
        // POST too; the metrics token cannot make the daemon fetch.
        for auth in [None, Some(format!("Bearer {METRICS}"))] {
            let mut b = Request::post("/api/fetch").header(header::CONTENT_TYPE, "application/json");
            if let Some(a) = &auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            let res = send_as_is(&state, b.body(Body::from("{\"url\":\"x\"}")).unwrap()).await;
            assert!(matches!(res.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN), "POST /api/fetch with {auth:?}: {}", res.status());
        }
        let res = send_as_is(
            &state,
            Request::post("/api/fetch").header(header::CONTENT_TYPE, "text/plain").header(header::AUTHORIZATION, format!("Bearer {TOKEN}")).body(Body::from("x")).unwrap(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "the full token reaches the handler");
        // A browser without the token gets a page saying what to do.
        let res = send_as_is(&state, Request::get("/").header(header::ACCEPT, "text/html,*/*").body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("?token=TOKEN"), "{}", String::from_utf8_lossy(&body));

        // Browser login: /?token= sets an HttpOnly cookie and redirects to the address without it.
        let res = send_as_is(&state, Request::get(format!("/?x=1&token={TOKEN}")).body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(res.headers()[header::LOCATION], "/?x=1");
        let cookie = res.headers()[header::SET_COOKIE].to_str().unwrap().to_string();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && !cookie.contains("Secure"), "{cookie}");
        let pair = cookie.split(';').next().unwrap().to_string();
        let res = send_as_is(&state, Request::get("/api/health").header(header::COOKIE, format!("other=1; {pair}")).body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::OK);
        let res = send_as_is(&state, Request::get("/api/health").header(header::COOKIE, "tracer_token=nope").body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let res = send_as_is(&state, Request::get("/?token=wrong").body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.headers().get(header::SET_COOKIE).is_none());
        // The metrics token does not log a browser in.
        let res = send_as_is(&state, Request::get(format!("/?token={METRICS}")).body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // Over TLS the cookie is Secure.
    let access = web::auth::Access::new("0.0.0.0".parse().unwrap(), TOKEN, None).unwrap().with_tls(true);
    let res = send_as_is(&f.state.clone().with_access(access), Request::get(format!("/?token={TOKEN}")).body(Body::empty()).unwrap()).await;
    assert!(res.headers()[header::SET_COOKIE].to_str().unwrap().contains("; Secure"));
    // Without a token set, nothing is served.
    let res = send(&f.state.clone().with_access(web::auth::Access::default()), Request::get("/api/health").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

/// On loopback (the default) a request addressed to another name (a page that re-pointed its
/// own name at 127.0.0.1) is refused, token or not.
#[tokio::test]
async fn loopback_dashboard_refuses_other_host_names() {
    let f = fixture().await;
    for host in ["127.0.0.1:7878", "localhost:7878", "[::1]:7878"] {
        let res = send(&f.state, Request::get("/api/health").header(header::HOST, host).body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::OK, "{host}");
    }
    for host in ["evil.test", "evil.test:7878", "192.0.2.1:7878"] {
        let res = send(&f.state, Request::get("/api/health").header(header::HOST, host).body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{host}");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("loopback"), "{v}");
    }
}
