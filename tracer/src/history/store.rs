//! Writing page loads: `processes` (upserted), `page_loads`, `dns_lookups`, `connections`,
//! `tls_sessions` and `requests`, all of one page load (or of one batch) in one transaction.
//!
//! Only what the model carries is stored: paths, URLs and headers arrive already redacted by
//! the stitcher ([`crate::redact`]); no body has a column.
use std::collections::HashMap;

use anyhow::Context as _;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use super::PageLoadSummary;
use crate::clock::WallOffset;
use crate::failure::Failure;
use crate::stitch::model::{PageLoad, Request, ms};

/// Stores one page load in one transaction and returns its `page_loads.id`.
pub async fn insert_page_load(pool: &SqlitePool, page: &PageLoad, wall: WallOffset) -> anyhow::Result<i64> {
    let ids = insert_page_loads(pool, std::slice::from_ref(page), wall).await?;
    ids.first().copied().context("no id for the stored page load")
}

/// Stores several page loads in one transaction: all of them or none. Returns their ids, in
/// order.
pub async fn insert_page_loads(pool: &SqlitePool, pages: &[PageLoad], wall: WallOffset) -> anyhow::Result<Vec<i64>> {
    if pages.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await.context("starting a history transaction")?;
    let ids = insert_batch(&mut tx, pages, wall).await?;
    tx.commit().await.with_context(|| format!("committing {} page loads", pages.len()))?;
    Ok(ids)
}

/// The list row of `page` stored as `page_loads.id` `id` with `wall`: what [`super::list`]
/// reads back for it (the live feed announces stored rows with it, without reading them).
/// Each field is the value [`insert_batch`] writes to the column the list reads.
pub fn summary_of(id: i64, page: &PageLoad, wall: WallOffset) -> PageLoadSummary {
    PageLoadSummary {
        id,
        started_at_ms: wall.unix_ms(page.started_ns),
        process: page.client.name.clone(),
        tgid: page.client.tgid,
        url: page.url.clone(),
        host: page_host(page),
        status: page.status,
        error: page.error.as_ref().map(Failure::text),
        total_ms: page.total_ms(),
        request_count: page.requests.len() as u32,
        connection_count: page.connections.len() as u32,
        redirect_count: redirect_count(page) as u32,
        bytes: int(page.bytes()) as u64,
    }
}

/// Hops after the first of the redirect chain.
fn redirect_count(page: &PageLoad) -> usize {
    page.redirect_chain.len().saturating_sub(1)
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn dur_ms(start: u64, end: Option<u64>) -> f64 {
    match end {
        Some(e) if e >= start => ms(e - start),
        _ => -1.0,
    }
}

/// Host of a URL (`https://user@Host:8443/x` -> `host`), lower-cased, without port.
pub(crate) fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r)?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    let host =
        if let Some(v6) = hostport.strip_prefix('[') { v6.split(']').next()? } else { hostport.split(':').next()? };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// `host:port` -> `host`, `[::1]:443` -> `::1`; a bare IPv6 address stays as it is.
pub(crate) fn strip_port(h: &str) -> &str {
    if let Some(v6) = h.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match h.split_once(':') {
        Some((host, port)) if !port.contains(':') => host,
        _ => h,
    }
}

/// The page's host: the first request's, else the URL's.
pub(crate) fn page_host(page: &PageLoad) -> Option<String> {
    page.requests.first().and_then(request_host).or_else(|| page.url.as_deref().and_then(url_host))
}

/// A request's host, lower-cased, without port.
pub(crate) fn request_host(r: &Request) -> Option<String> {
    r.host.as_deref().map(|h| strip_port(h).to_ascii_lowercase()).filter(|h| !h.is_empty())
}

/// The stored CNAME chain: a JSON array with the question name first.
fn cname_chain_json(name: &str, chain: &[String]) -> String {
    let mut v: Vec<&str> = Vec::with_capacity(chain.len() + 1);
    if chain.first().map(|c| !c.eq_ignore_ascii_case(name)).unwrap_or(true) {
        v.push(name);
    }
    v.extend(chain.iter().map(String::as_str));
    serde_json::to_string(&v).unwrap_or_else(|_| "[]".into())
}

/// Rows per multi-row `INSERT ... VALUES (...), (...)`. One statement per row made each row a
/// round trip to sqlx's SQLite thread; that hand-off, not SQLite, was most of the time of a
/// batch. A statement of all of a batch's rows was the other extreme: its SQL differs with
/// every batch, so SQLite parsed and compiled it anew each time (the parser was 3-5% of a
/// profile of 1-request page loads). Statements of [`ROWS`] rows, and of 16, 8, 4, 2 and 1
/// for the rest, have a handful of texts per table, each prepared once and kept in the
/// connection's statement cache.
const ROWS: usize = 32;

/// Inserts `rows` with multi-row statements of [`ROWS`] rows and then of halving sizes (see
/// there), each prepared once per connection. The values are bound borrowed from the page
/// loads (`'a`), not copied first.
async fn insert_rows<'a, T>(
    conn: &mut SqliteConnection,
    head: &str,
    rows: &[T],
    what: &str,
    mut bind: impl FnMut(&mut sqlx::query_builder::Separated<'_, 'a, Sqlite, &'static str>, &T),
) -> anyhow::Result<()> {
    let mut rest = rows;
    while !rest.is_empty() {
        let n = if rest.len() >= ROWS { ROWS } else { 1 << rest.len().ilog2() };
        let (chunk, after) = rest.split_at(n);
        let mut q = QueryBuilder::<'a, Sqlite>::new(head);
        q.push_values(chunk, |mut b, row| bind(&mut b, row));
        q.build().persistent(true).execute(&mut *conn).await.with_context(|| format!("inserting {what}"))?;
        rest = after;
    }
    Ok(())
}

async fn max_id(conn: &mut SqliteConnection, table: &str) -> anyhow::Result<i64> {
    let v: Option<i64> = sqlx::query_scalar(&format!("SELECT MAX(id) FROM {table}"))
        .fetch_one(&mut *conn)
        .await
        .with_context(|| format!("reading the last id of {table}"))?;
    Ok(v.unwrap_or(0))
}

/// A client of a batch: (tgid, name), exe, first and last seen (unix ms).
type Client<'a> = ((u32, &'a str), Option<&'a str>, i64, i64);

async fn insert_batch(tx: &mut sqlx::Transaction<'_, Sqlite>, pages: &[PageLoad], wall: WallOffset) -> anyhow::Result<Vec<i64>> {
    let conn: &mut SqliteConnection = tx;

    // Processes first: one row per client of the batch. Being a write, it also takes the
    // database's write lock, so that the ids read below stay ours until the commit.
    let mut clients: Vec<Client<'_>> = Vec::new();
    let mut client_of: HashMap<(u32, &str), usize> = HashMap::new();
    for page in pages {
        let key = (page.client.tgid, page.client.name.as_str());
        let first = wall.unix_ms(page.started_ns);
        let last = wall.unix_ms(page.ended_ns.max(page.started_ns));
        match client_of.get(&key) {
            Some(&i) => {
                let c = &mut clients[i];
                c.1 = page.client.exe.as_deref().or(c.1);
                c.2 = c.2.min(first);
                c.3 = c.3.max(last);
            }
            None => {
                client_of.insert(key, clients.len());
                clients.push((key, page.client.exe.as_deref(), first, last));
            }
        }
    }
    // One upsert statement for up to 1,000 clients: a statement per client was a round trip
    // each, and a batch of curls has as many clients as page loads. RETURNING's order is not
    // the rows' order: each id is matched to its client by (tgid, name).
    let mut process_ids = vec![0i64; clients.len()];
    for chunk in clients.chunks(1000) {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO processes (tgid, name, exe, first_seen_ms, last_seen_ms) ");
        q.push_values(chunk, |mut b, ((tgid, name), exe, first, last)| {
            b.push_bind(i64::from(*tgid)).push_bind(*name).push_bind(*exe).push_bind(*first).push_bind(*last);
        });
        q.push(
            " ON CONFLICT (tgid, name) DO UPDATE SET
                 exe = COALESCE(excluded.exe, processes.exe),
                 first_seen_ms = MIN(processes.first_seen_ms, excluded.first_seen_ms),
                 last_seen_ms = MAX(processes.last_seen_ms, excluded.last_seen_ms)
             RETURNING id, tgid, name",
        );
        let returned: Vec<(i64, i64, String)> =
            q.build_query_as().persistent(false).fetch_all(&mut *conn).await.context("upserting the processes")?;
        for (id, tgid, name) in returned {
            let Ok(tgid) = u32::try_from(tgid) else { continue };
            if let Some(&i) = client_of.get(&(tgid, name.as_str())) {
                process_ids[i] = id;
            }
        }
    }
    let process_of = |page: &PageLoad| {
        client_of.get(&(page.client.tgid, page.client.name.as_str())).map(|&i| process_ids[i]).unwrap_or(0)
    };

    // Ids are given here (the next after the last), so that child rows can name their
    // parents without reading each id back.
    let first_page = max_id(conn, "page_loads").await? + 1;
    let first_dns = max_id(conn, "dns_lookups").await? + 1;
    let first_conn = max_id(conn, "connections").await? + 1;
    let mut dns_base = Vec::with_capacity(pages.len());
    let mut conn_base = Vec::with_capacity(pages.len());
    let (mut dns_n, mut conn_n) = (0i64, 0i64);
    for page in pages {
        dns_base.push(first_dns + dns_n);
        conn_base.push(first_conn + conn_n);
        dns_n += page.dns.len() as i64;
        conn_n += page.connections.len() as i64;
    }
    let details: Vec<String> =
        pages.iter().map(serde_json::to_string).collect::<Result<_, _>>().context("serializing a page load")?;
    let page_rows: Vec<usize> = (0..pages.len()).collect();
    insert_rows(
        conn,
        "INSERT INTO page_loads (id, process_id, started_at_ms, started_ns, ended_ns, total_ms, url, host, status, error,
             request_count, connection_count, redirect_count, bytes, detail_json, cut) ",
        &page_rows,
        "page loads",
        |b, &i| {
            let page = &pages[i];
            b.push_bind(first_page + i as i64)
                .push_bind(process_of(page))
                .push_bind(wall.unix_ms(page.started_ns))
                .push_bind(int(page.started_ns))
                .push_bind(int(page.ended_ns))
                .push_bind(page.total_ms())
                .push_bind(page.url.as_deref())
                .push_bind(page_host(page))
                .push_bind(page.status.map(i64::from))
                .push_bind(page.error.as_ref().map(Failure::text))
                .push_bind(page.requests.len() as i64)
                .push_bind(page.connections.len() as i64)
                .push_bind(redirect_count(page) as i64)
                .push_bind(int(page.bytes()))
                .push_bind(details[i].as_str())
                .push_bind(page.cut.map(|c| c.cap.name()));
        },
    )
    .await?;

    let dns_rows: Vec<(usize, usize)> =
        pages.iter().enumerate().flat_map(|(p, page)| (0..page.dns.len()).map(move |d| (p, d))).collect();
    insert_rows(
        conn,
        "INSERT INTO dns_lookups (id, page_load_id, idx, tgid, comm, name, qtypes, started_at_ms, duration_ms, rcode,
             cname_chain, addresses, min_ttl, server, error) ",
        &dns_rows,
        "DNS lookups",
        |b, &(p, idx)| {
            let d = &pages[p].dns[idx];
            b.push_bind(dns_base[p] + idx as i64)
                .push_bind(first_page + p as i64)
                .push_bind(idx as i64)
                .push_bind(d.tgid as i64)
                .push_bind(d.comm.as_str())
                .push_bind(d.name.as_str())
                .push_bind(d.qtypes.join(","))
                .push_bind(wall.unix_ms(d.started_ns))
                .push_bind(dur_ms(d.started_ns, d.ended_ns))
                .push_bind(d.rcode.as_deref())
                .push_bind(cname_chain_json(&d.name, &d.cname_chain))
                .push_bind(serde_json::to_string(&d.addresses).unwrap_or_else(|_| "[]".into()))
                .push_bind(d.min_ttl.map(i64::from))
                .push_bind(d.server.as_deref())
                .push_bind(d.error.as_ref().map(Failure::text));
        },
    )
    .await?;

    let conn_rows: Vec<(usize, usize)> =
        pages.iter().enumerate().flat_map(|(p, page)| (0..page.connections.len()).map(move |c| (p, c))).collect();
    insert_rows(
        conn,
        "INSERT INTO connections (id, page_load_id, idx, tgid, comm, src, dst, started_at_ms, tcp_ms, error, requests) ",
        &conn_rows,
        "connections",
        |b, &(p, idx)| {
            let c = &pages[p].connections[idx];
            b.push_bind(conn_base[p] + idx as i64)
                .push_bind(first_page + p as i64)
                .push_bind(idx as i64)
                .push_bind(c.tgid as i64)
                .push_bind(c.comm.as_str())
                .push_bind(c.src.as_deref())
                .push_bind(c.dst.as_deref())
                .push_bind(wall.unix_ms(c.connect_start_ns))
                .push_bind(dur_ms(c.connect_start_ns, c.established_ns))
                .push_bind(c.error.as_deref())
                .push_bind(c.requests as i64);
        },
    )
    .await?;

    let tls_rows: Vec<(usize, usize)> = conn_rows.iter().copied().filter(|&(p, c)| pages[p].connections[c].tls.is_some()).collect();
    insert_rows(
        conn,
        "INSERT INTO tls_sessions (connection_id, page_load_id, library, handshake_ms, estimated, version, cipher, alpn, sni) ",
        &tls_rows,
        "TLS sessions",
        |b, &(p, idx)| {
            let Some(t) = &pages[p].connections[idx].tls else { return };
            let handshake_ms = match t.handshake_start_ns {
                Some(s) => dur_ms(s, t.handshake_end_ns),
                None => -1.0,
            };
            b.push_bind(conn_base[p] + idx as i64)
                .push_bind(first_page + p as i64)
                .push_bind(t.library.as_str())
                .push_bind(handshake_ms)
                .push_bind(t.estimated)
                .push_bind(t.version.as_deref())
                .push_bind(t.cipher.as_deref())
                .push_bind(t.alpn.as_deref())
                .push_bind(t.sni.as_deref());
        },
    )
    .await?;

    let req_rows: Vec<(usize, usize)> =
        pages.iter().enumerate().flat_map(|(p, page)| (0..page.requests.len()).map(move |r| (p, r))).collect();
    insert_rows(
        conn,
        "INSERT INTO requests (page_load_id, idx, connection_id, dns_lookup_id, tgid, comm, method, url, host, path,
             protocol, status, redirect_to, content_type, request_bytes, response_bytes, started_at_ms,
             blocked_ms, dns_ms, connect_ms, ssl_ms, send_ms, wait_ms, receive_ms, total_ms, new_connection, error, complete,
             request_headers, response_headers) ",
        &req_rows,
        "requests",
        |b, &(p, idx)| {
            let page = &pages[p];
            let r: &Request = &page.requests[idx];
            let t = &r.timings;
            // An index that points nowhere stores NULL, as before.
            let connection = r.connection.filter(|&i| i < page.connections.len()).map(|i| conn_base[p] + i as i64);
            let dns = r.dns.filter(|&i| i < page.dns.len()).map(|i| dns_base[p] + i as i64);
            b.push_bind(first_page + p as i64)
                .push_bind(idx as i64)
                .push_bind(connection)
                .push_bind(dns)
                .push_bind(r.tgid as i64)
                .push_bind(r.comm.as_str())
                .push_bind(r.method.as_deref())
                .push_bind(r.url.as_deref())
                .push_bind(r.host.as_deref())
                .push_bind(r.path.as_deref())
                .push_bind(r.protocol.as_deref())
                .push_bind(r.status.map(i64::from))
                .push_bind(r.redirect_to.as_deref())
                .push_bind(r.content_type.as_deref())
                .push_bind(int(r.request_bytes))
                .push_bind(int(r.response_bytes))
                .push_bind(wall.unix_ms(r.started_ns))
                .push_bind(t.blocked)
                .push_bind(t.dns)
                .push_bind(t.connect)
                .push_bind(t.ssl)
                .push_bind(t.send)
                .push_bind(t.wait)
                .push_bind(t.receive)
                .push_bind(t.total())
                .push_bind(r.new_connection)
                .push_bind(r.error.as_ref().map(Failure::text))
                .push_bind(r.complete)
                // Lists of (name, redacted value) strings: serializing them cannot fail.
                .push_bind(serde_json::to_string(&r.request_headers).unwrap_or_else(|_| "[]".into()))
                .push_bind(serde_json::to_string(&r.response_headers).unwrap_or_else(|_| "[]".into()));
        },
    )
    .await?;
    Ok((0..pages.len() as i64).map(|i| first_page + i).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(url_host("https://WWW.Shop.test/x?y").as_deref(), Some("www.shop.test"));
        assert_eq!(url_host("http://u:p@h.test:8080").as_deref(), Some("h.test"));
        assert_eq!(url_host("https://[::1]:8443/").as_deref(), Some("::1"));
        assert_eq!(url_host("nonsense"), None);
        assert_eq!(url_host("http:///x"), None);
        assert_eq!(strip_port("Shop.test:8443"), "Shop.test");
        assert_eq!(strip_port("[fd00::3]:443"), "fd00::3");
        assert_eq!(strip_port("fd00::3"), "fd00::3");
        assert_eq!(strip_port("shop.test"), "shop.test");
    }

    #[test]
    fn cname_chain() {
        assert_eq!(cname_chain_json("www.shop.test", &[]), r#"["www.shop.test"]"#);
        assert_eq!(
            cname_chain_json("www.shop.test", &["edge.cdn.test".into()]),
            r#"["www.shop.test","edge.cdn.test"]"#
        );
        assert_eq!(
            cname_chain_json("www.shop.test", &["www.shop.test".into(), "edge.cdn.test".into()]),
            r#"["www.shop.test","edge.cdn.test"]"#
        );
    }

    /// The summary built from a page load is the row the list reads back, field for field.
    #[tokio::test]
    async fn the_summary_of_a_stored_page_load_is_its_list_row() {
        use crate::stitch::sample::{MS, failed_dns_page, redirect_page};
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::history::db::open(&dir.path().join("t.db")).await.unwrap();
        let wall = WallOffset(1_776_160_800_000_000_000 - 1_000 * MS as i64);
        let mut wget = failed_dns_page(2_000 * MS, "Nope.Shop.test:8443");
        wget.client.name = "wget".into();
        wget.client.tgid = 4_000_000_123;
        let pages = vec![redirect_page(1_000 * MS), wget, redirect_page(3_000 * MS)];
        let ids = insert_page_loads(&pool, &pages, wall).await.unwrap();
        let page = super::super::PageRequest { limit: 10, offset: 0 };
        let mut listed = super::super::list(&pool, &Default::default(), Default::default(), page).await.unwrap().items;
        listed.reverse(); // newest first
        let built: Vec<PageLoadSummary> = ids.iter().zip(&pages).map(|(id, p)| summary_of(*id, p, wall)).collect();
        assert_eq!(built, listed);
        assert_eq!(built[1].host.as_deref(), Some("nope.shop.test"), "the host as stored: lower case, no port");
    }

    /// A batch's rows go out in statements of 32 rows, then 16, 8, 4, 2 and 1: every row is
    /// stored once, with its own page load and position, whatever the count.
    #[tokio::test]
    async fn rows_past_a_statements_size_are_all_stored_in_order() {
        use crate::stitch::sample::{MS, redirect_page};
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::history::db::open(&dir.path().join("t.db")).await.unwrap();
        // 3 requests each: 13 page loads make 39 request rows (32 + 4 + 2 + 1) and 26 of
        // lookups and of connections (16 + 8 + 2).
        let pages: Vec<PageLoad> = (0..13).map(|i| redirect_page((1_000 + 100 * i) * MS)).collect();
        let ids = insert_page_loads(&pool, &pages, WallOffset(0)).await.unwrap();
        let rows: Vec<(i64, i64, String)> =
            sqlx::query_as("SELECT page_load_id, idx, url FROM requests ORDER BY page_load_id, idx").fetch_all(&pool).await.unwrap();
        let want: Vec<(i64, i64, String)> = ids
            .iter()
            .zip(&pages)
            .flat_map(|(id, p)| p.requests.iter().enumerate().map(move |(i, r)| (*id, i as i64, r.url.clone().unwrap())))
            .collect();
        assert_eq!(rows.len(), 39);
        assert_eq!(rows, want);
        for table in ["dns_lookups", "connections"] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(DISTINCT page_load_id || '/' || idx) FROM {table}"))
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(n, 26, "{table}");
        }
    }

    /// The processes of a batch are upserted in one statement: each page load gets its own
    /// client's row, a client stored before keeps its id, and its times widen.
    #[tokio::test]
    async fn each_page_load_gets_its_clients_process_row() {
        use crate::stitch::sample::{MS, redirect_page};
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::history::db::open(&dir.path().join("t.db")).await.unwrap();
        let client = |tgid: u32, name: &str, start: u64| {
            let mut p = redirect_page(start * MS);
            p.client.tgid = tgid;
            p.client.name = name.into();
            p
        };
        let first = insert_page_loads(&pool, &[client(7, "curl", 5_000)], WallOffset(0)).await.unwrap();
        let owner = |id: i64| {
            let pool = pool.clone();
            async move {
                sqlx::query_as::<_, (i64, String, i64, i64, i64)>(
                    "SELECT p.tgid, p.name, p.id, p.first_seen_ms, p.last_seen_ms FROM page_loads l JOIN processes p ON p.id = l.process_id WHERE l.id = ?",
                )
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
            }
        };
        let curl_before = owner(first[0]).await;
        let batch = vec![client(9, "wget", 1_000), client(7, "curl", 9_000), client(7, "curl-helper", 2_000), client(9, "wget", 3_000)];
        let ids = insert_page_loads(&pool, &batch, WallOffset(0)).await.unwrap();
        let got: Vec<(i64, String)> = {
            let mut v = Vec::new();
            for id in &ids {
                let o = owner(*id).await;
                v.push((o.0, o.1));
            }
            v
        };
        assert_eq!(got, vec![(9, "wget".into()), (7, "curl".into()), (7, "curl-helper".into()), (9, "wget".into())]);
        let curl_after = owner(ids[1]).await;
        assert_eq!(curl_after.2, curl_before.2, "the stored client keeps its row");
        assert_eq!((curl_after.3, curl_after.4 > curl_before.4), (5_000, true), "first seen kept, last seen later");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM processes").fetch_one(&pool).await.unwrap();
        assert_eq!(n, 3);
    }

    #[test]
    fn durations() {
        assert_eq!(dur_ms(1_000_000, Some(3_500_000)), 2.5);
        assert_eq!(dur_ms(1_000_000, None), -1.0);
        assert_eq!(dur_ms(3_000_000, Some(1_000_000)), -1.0);
    }
}
