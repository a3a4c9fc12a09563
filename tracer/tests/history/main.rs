//! The page-load history: storage, queries, retention, the writer, HAR export and the
//! `history` / `show` / `export` / `compare` commands. No root needed: temp databases and
//! synthetic page loads.
use std::{
    path::{Path, PathBuf},
    process::Command,
    str::FromStr,
    time::Duration,
};

use serde_json::{Value, json};
use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqlitePoolOptions},
};
use tracer::{
    clock::{WallOffset, now_unix_ms},
    failure::Failure,
    history::{
        self, Filter, db, PageRequest, RetentionConfig, Sort, StatusClass, StoredPageLoad, WriterConfig,
        query::{self, QueryError},
    },
    stitch::model::{ClientInfo, Connection, DnsLookup, PageLoad, TlsSession},
};

#[path = "../support/mod.rs"]
mod support;
use support::fixtures::{self, MS, request, timings};

/// Monotonic ns of the first synthetic page load.
const T0: u64 = 5_000_000 * MS;

// ---------------------------------------------------------------------------------------------
// Synthetic page loads

struct Spec<'a> {
    client: &'a str,
    tgid: u32,
    /// http://{host}/ -> 301 -> https://www.{host}/ -> status, plus one sub-resource.
    host: &'a str,
    start_ms: u64,
    status: Option<u16>,
    error: Option<&'a str>,
    sub_bytes: u64,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Spec {
            client: "curl",
            tgid: 100,
            host: "shop.test",
            start_ms: 0,
            status: Some(200),
            error: None,
            sub_bytes: 1000,
        }
    }
}

fn page(s: Spec) -> PageLoad {
    let start = T0 + s.start_ms * MS;
    let www = format!("www.{}", s.host);
    let client = ClientInfo { tgid: s.tgid, name: s.client.into(), exe: Some(format!("/usr/bin/{}", s.client)) };
    let dns0 = DnsLookup {
        tgid: s.tgid,
        comm: s.client.into(),
        name: s.host.into(),
        qtypes: vec!["A".into(), "AAAA".into()],
        started_ns: start,
        ended_ns: Some(start + 2 * MS),
        rcode: Some("NOERROR".into()),
        cname_chain: vec![],
        addresses: vec!["10.0.0.2".into()],
        min_ttl: Some(300),
        server: Some("10.0.0.1:53".into()),
        error: None,
    };
    if let Some(err) = s.error {
        // A failed lookup: one request without a connection, no status.
        let dns = DnsLookup {
            rcode: Some("NXDOMAIN".into()),
            addresses: vec![],
            min_ttl: None,
            error: Some(Failure::from_text(err)),
            ..dns0
        };
        let mut r = request(
            (s.client, s.tgid),
            None,
            Some(0),
            &format!("http://{}/", s.host),
            s.host,
            "/",
            "HTTP/1.1",
            None,
            start,
            timings(2.0, -1.0, -1.0, -1.0, -1.0, -1.0),
            0,
        );
        r.error = Some(Failure::from_text(err));
        r.content_type = None;
        return fixtures::failed_lookup(client, format!("http://{}/", s.host), start, r, dns, err);
    }
    let dns1 = DnsLookup {
        name: www.clone(),
        qtypes: vec!["A".into(), "AAAA".into(), "HTTPS".into()],
        started_ns: start + 8 * MS,
        ended_ns: Some(start + 9 * MS + MS / 2),
        cname_chain: vec![www.clone(), "edge.cdn.test".into()],
        addresses: vec!["10.0.0.3".into(), "fd00::3".into()],
        min_ttl: Some(60),
        ..dns0.clone()
    };
    let conn0 = Connection {
        tgid: s.tgid,
        pid: s.tgid + 1,
        comm: s.client.into(),
        fd: 5,
        skaddr: 0xffff_8881_2a17_40c0,
        src: Some("10.0.0.9:51056".into()),
        dst: Some("10.0.0.2:80".into()),
        connect_start_ns: start + 2 * MS,
        established_ns: Some(start + 3 * MS),
        closed_ns: Some(start + 8 * MS),
        error: None,
        tls: None,
        requests: 1,
        quic: None,
    };
    let conn1 = Connection {
        fd: 6,
        skaddr: 0xffff_8881_2a17_4100,
        src: Some("[fd00::9]:51060".into()),
        dst: Some("[fd00::3]:443".into()),
        connect_start_ns: start + 9 * MS + MS / 2,
        established_ns: Some(start + 10 * MS + MS / 2),
        closed_ns: None,
        tls: Some(TlsSession {
            library: "openssl".into(),
            handshake_start_ns: Some(start + 10 * MS + MS / 2),
            handshake_end_ns: Some(start + 14 * MS),
            estimated: false,
            version: Some("TLSv1.3".into()),
            cipher: Some("TLS_AES_256_GCM_SHA384".into()),
            alpn: Some("h2".into()),
            sni: Some(www.clone()),
        }),
        requests: 2,
        ..conn0.clone()
    };
    let mut hop = request(
        (s.client, s.tgid),
        Some(0),
        Some(0),
        &format!("http://{}/", s.host),
        s.host,
        "/",
        "HTTP/1.1",
        Some(301),
        start,
        timings(2.0, 1.0, -1.0, 0.1, 4.0, 0.4),
        240,
    );
    hop.redirect_to = Some(format!("https://{www}/"));
    let doc = request(
        (s.client, s.tgid),
        Some(1),
        Some(1),
        &format!("https://{www}/?q=*"),
        &www,
        "/?q=*",
        "HTTP/2",
        s.status,
        start + 8 * MS,
        timings(1.5, 1.0, 3.5, 0.2, 6.0, 1.8),
        5187,
    );
    let mut sub = request(
        (s.client, s.tgid),
        Some(1),
        None,
        &format!("https://{www}/logo.png"),
        &www,
        "/logo.png",
        "HTTP/2",
        Some(200),
        start + 22 * MS,
        timings(-1.0, -1.0, -1.0, 0.1, 3.0, 2.0),
        s.sub_bytes,
    );
    sub.content_type = Some("image/png".into());
    sub.new_connection = false;
    sub.stream_id = Some(3);
    PageLoad {
        client,
        url: Some(format!("http://{}/", s.host)),
        started_ns: start,
        ended_ns: start + 27 * MS + MS / 10,
        status: s.status,
        error: None,
        requests: vec![hop, doc, sub],
        connections: vec![conn0, conn1],
        dns: vec![dns0, dns1],
        redirect_chain: vec![0, 1],
        cut: None,
    }
}

/// A wall offset that puts `T0` at `unix_ms`.
fn wall_at(unix_ms: i64) -> WallOffset {
    WallOffset(unix_ms * 1_000_000 - T0 as i64)
}

async fn temp_db() -> (tempfile::TempDir, PathBuf, SqlitePool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tracer.db");
    let pool = db::open(&path).await.unwrap();
    (dir, path, pool)
}

async fn count(pool: &SqlitePool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(pool).await.unwrap()
}

const TABLES: [&str; 6] = ["processes", "page_loads", "dns_lookups", "connections", "tls_sessions", "requests"];

async fn counts(pool: &SqlitePool) -> Vec<i64> {
    let mut v = Vec::new();
    for t in TABLES {
        v.push(count(pool, t).await);
    }
    v
}

/// Six page loads of four clients and five hosts, a minute apart (for lists, retention, export).
async fn seeded() -> (tempfile::TempDir, PathBuf, SqlitePool, Vec<i64>) {
    let (dir, path, pool) = temp_db().await;
    let base = 1_776_160_800_000i64;
    let specs = [
        Spec { host: "shop.test", start_ms: 0, ..Default::default() },
        Spec { host: "myshop.test", start_ms: 60_000, client: "firefox-esr", tgid: 200, ..Default::default() },
        Spec { host: "cdn.shop.test", start_ms: 120_000, status: Some(404), sub_bytes: 50_000, ..Default::default() },
        Spec {
            host: "nx.test",
            start_ms: 180_000,
            status: None,
            error: Some("ERR_NAME_NOT_RESOLVED"),
            ..Default::default()
        },
        Spec {
            host: "api.test",
            start_ms: 240_000,
            status: Some(503),
            client: "firefox-esr",
            tgid: 200,
            ..Default::default()
        },
        Spec {
            host: "shop.test",
            start_ms: 300_000,
            status: Some(302),
            client: "chromium",
            tgid: 300,
            ..Default::default()
        },
    ];
    let mut ids = Vec::new();
    for s in specs {
        ids.push(history::insert_page_load(&pool, &page(s), wall_at(base)).await.unwrap());
    }
    (dir, path, pool, ids)
}

fn ids(p: &history::Page<history::PageLoadSummary>) -> Vec<i64> {
    p.items.iter().map(|s| s.id).collect()
}

mod store;
mod queries;
mod retention;
mod writer;
mod har;
mod compare;
mod cli;
