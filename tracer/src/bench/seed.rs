//! History at scale: synthetic page loads with realistic shapes (a command-line client's one
//! to three requests; a browser's page of 5-60 requests over several hosts and connections,
//! with redirects, CNAME chains, TLS, failures), ingested through the daemon's history writer,
//! then grown to the target size by copying rows in SQL.
use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use sqlx::SqlitePool;

use crate::{
    clock::{WallOffset, now_unix_ms},
    failure::Failure,
    history,
    stitch::model::{ClientInfo, Connection, DnsLookup, PageLoad, Request, Timings, TlsSession},
};

const MS: u64 = 1_000_000;

pub const HOSTS: [&str; 12] = [
    "shop.test", "news.test", "video.test", "mail.test", "docs.test", "search.test", "maps.test", "bank.test",
    "social.test", "wiki.test", "music.test", "travel.test",
];
const CLIENTS: [(&str, u32); 5] = [("chromium", 30), ("firefox-esr", 25), ("curl", 30), ("wget", 10), ("python3", 5)];

fn pick_client(rng: &mut fastrand::Rng) -> &'static str {
    let mut x = rng.u32(0..100);
    for (name, weight) in CLIENTS {
        if x < weight {
            return name;
        }
        x -= weight;
    }
    "curl"
}

/// What the seeded page loads look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// Benchmark 6's mix: browsers with 5-60 requests, command-line clients with 1-3,
    /// redirects, failures.
    #[default]
    Mixed,
    /// Page loads of one request each (curl fetching a URL over a new TLS connection after a
    /// DNS lookup): the ingest of target D's first half.
    OneRequest,
}

/// Page load number `n`, starting at monotonic `start_ns`, of benchmark 6's mix.
pub fn synthetic_page(rng: &mut fastrand::Rng, n: u64, start_ns: u64) -> PageLoad {
    synthetic_page_of(Shape::Mixed, rng, n, start_ns)
}

/// Page load number `n` of `shape`. The mix draws the same random numbers as it always has,
/// so its page loads stay those of earlier runs.
pub fn synthetic_page_of(shape: Shape, rng: &mut fastrand::Rng, n: u64, start_ns: u64) -> PageLoad {
    let one = shape == Shape::OneRequest;
    let client = if one { "curl" } else { pick_client(rng) };
    let browser = matches!(client, "chromium" | "firefox-esr");
    let tgid = 1000 + rng.u32(0..200);
    let host = HOSTS[rng.usize(0..HOSTS.len())];
    let www = format!("www.{host}");
    let requests_n: usize = if one {
        1
    } else if browser {
        // Most pages are modest; some are heavy.
        match rng.u32(0..10) {
            0..=4 => rng.usize(5..=20),
            5..=7 => rng.usize(20..=40),
            _ => rng.usize(40..=60),
        }
    } else {
        match rng.u32(0..10) {
            0..=6 => 1,
            7..=8 => 2,
            _ => 3,
        }
    };
    let failed = !one && rng.u32(0..100) < 2;
    let comm = if client == "chromium" { "Chrome_ChildIOT" } else { client };
    let lookup = |name: &str, at: u64, chain: Vec<String>, addr: String, err: Option<&str>| DnsLookup {
        tgid,
        comm: comm.into(),
        name: name.into(),
        qtypes: if client == "chromium" { vec!["A".into(), "HTTPS".into()] } else { vec!["A".into(), "AAAA".into()] },
        started_ns: at,
        ended_ns: Some(at + 2 * MS),
        rcode: Some(if err.is_some() { "NXDOMAIN" } else { "NOERROR" }.into()),
        cname_chain: chain,
        addresses: if err.is_some() { vec![] } else { vec![addr] },
        min_ttl: Some(300),
        server: Some("10.0.0.53:53".into()),
        error: err.map(Failure::from_text),
    };
    if failed {
        let err = if rng.bool() { "ERR_NAME_NOT_RESOLVED" } else { "ERR_CONNECTION_REFUSED" };
        let url = format!("https://{host}/");
        let r = Request {
            connection: None,
            dns: Some(0),
            tgid,
            pid: tgid,
            comm: comm.into(),
            method: Some("GET".into()),
            url: Some(url.clone()),
            host: Some(host.into()),
            path: Some("/".into()),
            protocol: None,
            stream_id: None,
            status: None,
            redirect_to: None,
            content_type: None,
            request_bytes: 0,
            response_bytes: 0,
            response_header_bytes: 0,
            started_ns: start_ns,
            ended_ns: start_ns + 2 * MS,
            timings: Timings { blocked: 0.05, dns: 2.0, ..Default::default() },
            new_connection: false,
            error: Some(Failure::from_text(err)),
            complete: false,
            request_body: None,
                response_body: None,
            request_headers: Vec::new(),
            response_headers: Vec::new(),
        };
        return PageLoad {
            client: ClientInfo { tgid, name: client.into(), exe: Some(format!("/usr/bin/{client}")) },
            url: Some(url),
            started_ns: start_ns,
            ended_ns: start_ns + 2 * MS,
            status: None,
            error: Some(Failure::from_text(err)),
            requests: vec![r],
            connections: vec![],
            dns: vec![lookup(host, start_ns, vec![], String::new(), Some(err))],
            redirect_chain: vec![0],
            cut: None,
        };
    }
    // Hosts the page's requests go to: the document's, a static host, a third party.
    let hosts: Vec<String> = if browser {
        vec![www.clone(), format!("static.{host}"), format!("cdn{}.thirdparty.test", rng.u32(0..5))]
    } else {
        vec![www.clone()]
    };
    let mut dns = Vec::new();
    let mut connections: Vec<Connection> = Vec::new();
    let mut requests = Vec::new();
    let mut t = start_ns;
    // A redirect hop first for a third of the pages.
    let redirect = !one && rng.u32(0..3) == 0;
    let mut redirect_chain = Vec::new();
    let http2 = browser && rng.bool();
    for i in 0..requests_n + usize::from(redirect) {
        let hop = redirect && i == 0;
        let h = if hop {
            host.to_string()
        } else if i <= usize::from(redirect) {
            hosts[0].clone()
        } else {
            hosts[rng.usize(0..hosts.len())].clone()
        };
        // A new connection for a new host, and now and then another one (6 per host at most).
        let same_host: Vec<usize> =
            connections.iter().enumerate().filter(|(_, c)| c.tls.as_ref().and_then(|t| t.sni.as_deref()) == Some(h.as_str()) || (hop && c.dst.as_deref() == Some("10.1.0.1:80"))).map(|(i, _)| i).collect();
        let new_conn = same_host.is_empty() || (!http2 && same_host.len() < 6 && rng.u32(0..3) == 0);
        let mut timings = Timings {
            blocked: rng.f64() * 0.5,
            send: 0.05 + rng.f64() * 0.2,
            wait: 5.0 + rng.f64() * 120.0,
            receive: rng.f64() * 30.0,
            ..Default::default()
        };
        let (conn_idx, dns_idx) = if new_conn {
            let dns_idx = match dns.iter().position(|d: &DnsLookup| d.name == h) {
                Some(d) => Some(d),
                None => {
                    let chain = if h.starts_with("www.") { vec![h.clone(), format!("edge{}.cdn.test", rng.u32(0..9))] } else { vec![] };
                    dns.push(lookup(&h, t, chain, format!("10.1.{}.{}", rng.u8(0..255), rng.u8(1..255)), None));
                    timings.dns = 1.0 + rng.f64() * 40.0;
                    Some(dns.len() - 1)
                }
            };
            let tcp = 0.5 + rng.f64() * 20.0;
            let tls = (!hop).then(|| TlsSession {
                library: match client {
                    "chromium" => "boring_ssl",
                    "firefox-esr" => "nspr",
                    "wget" => "gnutls",
                    _ => "openssl",
                }
                .into(),
                handshake_start_ns: Some(t + (tcp * 1e6) as u64),
                handshake_end_ns: Some(t + (tcp * 2e6) as u64),
                estimated: false,
                version: Some("TLSv1.3".into()),
                cipher: Some("TLS_AES_128_GCM_SHA256".into()),
                alpn: Some(if http2 { "h2" } else { "http/1.1" }.into()),
                sni: Some(h.clone()),
            });
            timings.tcp = tcp;
            timings.ssl = if hop { -1.0 } else { tcp };
            timings.connect = tcp + timings.ssl.max(0.0);
            let fd = 20 + connections.len() as i32;
            connections.push(Connection {
                tgid,
                pid: tgid + 3,
                comm: comm.into(),
                fd,
                skaddr: 0xffff_8880_0000_0000 + n * 64 + fd as u64,
                src: Some(format!("192.168.1.20:{}", 30000 + rng.u16(0..30000))),
                dst: Some(if hop { "10.1.0.1:80".into() } else { format!("10.1.0.{}:443", 2 + dns_idx.unwrap_or(0)) }),
                connect_start_ns: t,
                established_ns: Some(t + (tcp * 1e6) as u64),
                closed_ns: None,
                error: None,
                tls,
                requests: 0,
                quic: None,
            });
            (connections.len() - 1, dns_idx)
        } else {
            (same_host[rng.usize(0..same_host.len())], None)
        };
        connections[conn_idx].requests += 1;
        let path = if i <= usize::from(redirect) {
            "/".to_string()
        } else {
            let kind = ["app.js", "style.css", "logo.png", "font.woff2", "api/items?page=*", "pixel.gif"][rng.usize(0..6)];
            format!("/assets/{}/{kind}", rng.u32(0..1000))
        };
        let scheme = if hop { "http" } else { "https" };
        let status = if hop {
            301
        } else {
            [200, 200, 200, 200, 200, 200, 304, 404, 200, 500][rng.usize(0..10)]
        };
        let bytes = if path == "/" { 20_000 + rng.u64(0..200_000) } else { rng.u64(200..300_000) };
        let total = timings.total();
        requests.push(Request {
            connection: Some(conn_idx),
            dns: dns_idx,
            tgid,
            pid: tgid + 3,
            comm: comm.into(),
            method: Some("GET".into()),
            url: Some(format!("{scheme}://{h}{path}")),
            host: Some(h.clone()),
            path: Some(path.clone()),
            protocol: Some(if http2 && !hop { "HTTP/2" } else { "HTTP/1.1" }.into()),
            stream_id: (http2 && !hop).then_some(1 + 2 * i as u32),
            status: Some(status),
            redirect_to: hop.then(|| format!("https://{www}/")),
            content_type: Some(if path == "/" { "text/html" } else { "application/octet-stream" }.into()),
            request_bytes: 300 + rng.u64(0..600),
            response_bytes: bytes,
            response_header_bytes: 400,
            started_ns: t,
            ended_ns: t + (total * 1e6) as u64,
            timings,
            new_connection: new_conn,
            error: None,
            complete: true,
            request_body: None,
                response_body: None,
            request_headers: Vec::new(),
            response_headers: Vec::new(),
        });
        if i <= usize::from(redirect) {
            redirect_chain.push(requests.len() - 1);
            t += (total * 1e6) as u64;
        } else {
            t += rng.u64(0..8) * MS;
        }
    }
    let ended = requests.iter().map(|r| r.ended_ns).max().unwrap_or(start_ns);
    let doc_status = redirect_chain.last().and_then(|&i| requests[i].status);
    PageLoad {
        client: ClientInfo { tgid, name: client.into(), exe: Some(format!("/usr/bin/{client}")) },
        url: requests.first().and_then(|r| r.url.clone()),
        started_ns: start_ns,
        ended_ns: ended,
        status: doc_status,
        error: None,
        requests,
        connections,
        dns,
        redirect_chain,
        cut: None,
    }
}

/// What seeding did.
#[derive(Debug, Clone, Default)]
pub struct SeedResult {
    /// Page loads written through the daemon's history writer, and how fast: wall-clock
    /// seconds, and the CPU seconds of this process meanwhile (writer, SQLite, runtime; the
    /// machine is shared, and the CPU time does not count the waits for a core).
    pub ingested: u64,
    pub ingest_secs: f64,
    pub ingest_cpu_secs: f64,
    pub ingest_requests: u64,
    /// The writer's most page loads per transaction.
    pub batch: usize,
    /// Page loads in the database at the end, and how long the SQL copies took.
    pub total: u64,
    /// Set when the free disk space did not allow the asked-for total.
    pub capped_by_disk: Option<String>,
    pub grow_secs: f64,
    pub db_bytes: u64,
}

/// Page loads generated before each timed stretch of the ingest: generating them is the
/// seeding tool's cost, not the store's.
pub const CHUNK: u64 = 5_000;

/// Writes `ingest` synthetic page loads of benchmark 6's mix into the database at `path`
/// through the daemon's history writer ([`ingest`]), then copies rows until it holds `total`
/// page loads.
pub async fn seed(path: &Path, ingest: u64, total: u64, seed: u64) -> Result<SeedResult> {
    seed_shaped(path, Shape::Mixed, ingest, total, None, seed).await
}

/// [`seed`] with page loads of `shape`; `batch` overrides the writer's most page loads per
/// transaction (for experiments: benchmark 6 keeps the daemon's).
pub async fn seed_shaped(path: &Path, shape: Shape, ingest: u64, total: u64, batch: Option<usize>, seed: u64) -> Result<SeedResult> {
    // The daemon's own pools: the writer's connection is set up as the daemon's is.
    let pools = history::db::open_pools(path, history::db::ReaderOptions::default()).await?;
    let mut res = self::ingest(&pools.writer, shape, ingest, batch, seed).await?;
    let pool = &pools.maintenance;
    // A database of realistic page loads takes ~15 KB each (1,000,000: ~15 GB). On a shared
    // disk, grow only as far as leaves 5 GiB free, counting the write-ahead log of a copy.
    let mut total = total;
    let used = file_bytes(path);
    let per_page = used as f64 / res.ingested.max(1) as f64;
    let free = free_bytes(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")));
    let reserve = 5u64 << 30;
    let allowed = ((free + used).saturating_sub(reserve) as f64 / (per_page * 1.5)) as u64;
    if allowed < total {
        res.capped_by_disk = Some(format!(
            "{:.1} KB per page load, {:.1} GiB free: {} page loads would need ~{:.1} GiB",
            per_page / 1e3,
            free as f64 / (1u64 << 30) as f64,
            total,
            total as f64 * per_page * 1.5 / (1u64 << 30) as f64
        ));
        total = allowed.max(res.ingested);
    }
    let g = Instant::now();
    grow(pool, total).await?;
    res.grow_secs = g.elapsed().as_secs_f64();
    res.total = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM page_loads").fetch_one(pool).await? as u64;
    for p in [&pools.writer, &pools.maintenance, &pools.reader] {
        p.close().await;
    }
    res.db_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(res)
}

/// Stores `n` synthetic page loads of `shape` through the daemon's history writer
/// ([`history::spawn_writer`] with [`history::WriterConfig::daemon`], on the daemon's writer
/// connection `pool`): the code `tracer run` stores page loads with, list rows for the live
/// feed included. Timed from the first page load queued to the last one committed, a chunk
/// at a time, generation left out.
async fn ingest(pool: &SqlitePool, shape: Shape, n: u64, batch: Option<usize>, seed: u64) -> Result<SeedResult> {
    let mut rng = fastrand::Rng::with_seed(seed);
    // Monotonic time of the first page load, mapped to 30 days ago.
    let t0: u64 = 1_000_000 * 1_000 * MS;
    let wall = WallOffset((now_unix_ms() - 30 * 86_400_000) * 1_000_000 - t0 as i64);
    // The daemon hands each stored row to the live feed; here it is only counted.
    let told = Arc::new(AtomicU64::new(0));
    let on_stored = {
        let told = told.clone();
        history::OnStored(Arc::new(move |_row| {
            told.fetch_add(1, Ordering::Relaxed);
        }))
    };
    let mut config = history::WriterConfig::daemon(wall, on_stored);
    if let Some(b) = batch {
        config.batch_max = b.max(1);
    }
    let mut res = SeedResult { batch: config.batch_max, ..Default::default() };
    let (sender, writer) = history::spawn_writer(pool.clone(), config);
    let (me, tck) = (std::process::id(), super::util::clk_tck());
    let cpu_ticks = || super::util::proc_cpu_ticks(me).unwrap_or(0);
    let mut next_start = t0;
    let mut done = 0u64;
    while done < n {
        let chunk = (n - done).min(CHUNK);
        let pages: Vec<PageLoad> = (0..chunk)
            .map(|i| {
                next_start += rng.u64(100..4000) * MS;
                synthetic_page_of(shape, &mut rng, done + i, next_start)
            })
            .collect();
        res.ingest_requests += pages.iter().map(|p| p.requests.len() as u64).sum::<u64>();
        let (started, cpu) = (Instant::now(), cpu_ticks());
        for page in pages {
            if !sender.send_waiting(page).await {
                bail!("the history writer stopped: {}", sender.counters().last_error.unwrap_or_default());
            }
        }
        done += chunk;
        while told.load(Ordering::Relaxed) < done {
            let c = sender.counters();
            if c.dropped > 0 {
                bail!("the history writer dropped {} page loads: {}", c.dropped, c.last_error.unwrap_or_default());
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        res.ingest_secs += started.elapsed().as_secs_f64();
        res.ingest_cpu_secs += cpu_ticks().saturating_sub(cpu) as f64 / tck;
    }
    drop(sender);
    let c = writer.join().await;
    if c.written != n {
        bail!("the history writer stored {} of {n} page loads: {}", c.written, c.last_error.unwrap_or_default());
    }
    res.ingested = n;
    res.ingest_secs = res.ingest_secs.max(1e-9);
    Ok(res)
}

/// The database with its write-ahead log.
fn file_bytes(db: &Path) -> u64 {
    let wal = std::path::PathBuf::from(format!("{}-wal", db.display()));
    [db.to_path_buf(), wal].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
}

/// Bytes free for unprivileged use on the file system of `dir`.
fn free_bytes(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return 0 };
    // SAFETY: statvfs fills the struct we pass; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    st.f_bavail as u64 * st.f_frsize as u64
}

async fn max_id(pool: &SqlitePool, table: &str) -> Result<i64> {
    Ok(sqlx::query_scalar::<_, Option<i64>>(&format!("SELECT MAX(id) FROM {table}")).fetch_one(pool).await?.unwrap_or(0))
}

/// Doubles the page loads (with their rows in every table, ids offset, times moved before the
/// oldest) until there are `total`.
async fn grow(pool: &SqlitePool, total: u64) -> Result<()> {
    loop {
        let p = max_id(pool, "page_loads").await?;
        if p <= 0 || p as u64 >= total {
            return Ok(());
        }
        let m = p.min(total as i64 - p); // copy page loads 1..=m
        let (d, c, t, r) = (
            max_id(pool, "dns_lookups").await?,
            max_id(pool, "connections").await?,
            max_id(pool, "tls_sessions").await?,
            max_id(pool, "requests").await?,
        );
        let (lo, hi): (i64, i64) =
            sqlx::query_as("SELECT MIN(started_at_ms), MAX(started_at_ms) FROM page_loads").fetch_one(pool).await?;
        let shift = hi - lo + 1000;
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO page_loads (id, process_id, started_at_ms, started_ns, ended_ns, total_ms, url, host, status, error,
                 request_count, connection_count, redirect_count, bytes, detail_json)
             SELECT id + ?1, process_id, started_at_ms - ?2, started_ns, ended_ns, total_ms, url, host, status, error,
                 request_count, connection_count, redirect_count, bytes, detail_json FROM page_loads WHERE id <= ?3",
        )
        .bind(p)
        .bind(shift)
        .bind(m)
        .execute(&mut *tx)
        .await
        .context("copying page_loads")?;
        sqlx::query(
            "INSERT INTO dns_lookups (id, page_load_id, idx, tgid, comm, name, qtypes, started_at_ms, duration_ms, rcode,
                 cname_chain, addresses, min_ttl, server, error)
             SELECT id + ?1, page_load_id + ?2, idx, tgid, comm, name, qtypes, started_at_ms - ?3, duration_ms, rcode,
                 cname_chain, addresses, min_ttl, server, error FROM dns_lookups WHERE page_load_id <= ?4",
        )
        .bind(d)
        .bind(p)
        .bind(shift)
        .bind(m)
        .execute(&mut *tx)
        .await
        .context("copying dns_lookups")?;
        sqlx::query(
            "INSERT INTO connections (id, page_load_id, idx, tgid, comm, src, dst, started_at_ms, tcp_ms, error, requests)
             SELECT id + ?1, page_load_id + ?2, idx, tgid, comm, src, dst, started_at_ms - ?3, tcp_ms, error, requests
             FROM connections WHERE page_load_id <= ?4",
        )
        .bind(c)
        .bind(p)
        .bind(shift)
        .bind(m)
        .execute(&mut *tx)
        .await
        .context("copying connections")?;
        sqlx::query(
            "INSERT INTO tls_sessions (id, connection_id, page_load_id, library, handshake_ms, estimated, version, cipher, alpn, sni)
             SELECT id + ?1, connection_id + ?2, page_load_id + ?3, library, handshake_ms, estimated, version, cipher, alpn, sni
             FROM tls_sessions WHERE page_load_id <= ?4",
        )
        .bind(t)
        .bind(c)
        .bind(p)
        .bind(m)
        .execute(&mut *tx)
        .await
        .context("copying tls_sessions")?;
        sqlx::query(
            "INSERT INTO requests (id, page_load_id, idx, connection_id, dns_lookup_id, tgid, comm, method, url, host, path,
                 protocol, status, redirect_to, content_type, request_bytes, response_bytes, started_at_ms,
                 blocked_ms, dns_ms, connect_ms, ssl_ms, send_ms, wait_ms, receive_ms, total_ms, new_connection, error, complete)
             SELECT id + ?1, page_load_id + ?2, idx, connection_id + ?3, dns_lookup_id + ?4, tgid, comm, method, url, host, path,
                 protocol, status, redirect_to, content_type, request_bytes, response_bytes, started_at_ms - ?5,
                 blocked_ms, dns_ms, connect_ms, ssl_ms, send_ms, wait_ms, receive_ms, total_ms, new_connection, error, complete
             FROM requests WHERE page_load_id <= ?6",
        )
        .bind(r)
        .bind(p)
        .bind(c)
        .bind(d)
        .bind(shift)
        .bind(m)
        .execute(&mut *tx)
        .await
        .context("copying requests")?;
        tx.commit().await.context("committing a copy")?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_pages_have_realistic_shapes() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut sizes = Vec::new();
        let mut failed = 0;
        for n in 0..2000 {
            let p = synthetic_page(&mut rng, n, 1_000 * MS);
            assert!(!p.requests.is_empty() && p.requests.len() <= 61, "{} requests", p.requests.len());
            for r in &p.requests {
                if let Some(c) = r.connection {
                    assert!(c < p.connections.len());
                }
                if let Some(d) = r.dns {
                    assert!(d < p.dns.len());
                }
            }
            assert!(p.redirect_chain.iter().all(|&i| i < p.requests.len()));
            assert!(p.ended_ns >= p.started_ns);
            failed += usize::from(p.error.is_some());
            sizes.push(p.requests.len());
        }
        assert!(sizes.contains(&1) && sizes.iter().any(|&s| s >= 40), "both small and heavy pages");
        assert!((10..100).contains(&failed), "about 2% failures, got {failed}");
    }

    #[tokio::test]
    async fn seeding_ingests_then_grows_with_consistent_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let r = seed_shaped(&path, Shape::Mixed, 30, 100, Some(8), 1).await.unwrap();
        assert_eq!((r.ingested, r.total, r.batch), (30, 100, 8));
        assert!(r.ingest_secs > 0.0 && r.ingest_requests >= 30, "{r:?}");
        let pool = crate::history::db::open(&path).await.unwrap();
        // Every child row points at an existing page load / connection / lookup.
        let orphans: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM requests WHERE page_load_id NOT IN (SELECT id FROM page_loads)
                        OR (connection_id IS NOT NULL AND connection_id NOT IN (SELECT id FROM connections))
                        OR (dns_lookup_id IS NOT NULL AND dns_lookup_id NOT IN (SELECT id FROM dns_lookups)))
                  + (SELECT COUNT(*) FROM tls_sessions WHERE connection_id NOT IN (SELECT id FROM connections))",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(orphans, 0);
        let per_page: Vec<(i64, i64)> =
            sqlx::query_as("SELECT p.request_count, (SELECT COUNT(*) FROM requests r WHERE r.page_load_id = p.id) FROM page_loads p")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(per_page.len(), 100);
        assert!(per_page.iter().all(|(a, b)| a == b));
        let got = history::get(&pool, 100).await.unwrap().unwrap();
        assert!(!got.page.requests.is_empty());
    }
}
