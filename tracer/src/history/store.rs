//! Writing page loads: `processes` (upserted), `page_loads`, `dns_lookups`, `connections`,
//! `tls_sessions` and `requests`, all of one page load (or of one batch) in one transaction.
//!
//! Only what the model carries is stored: paths, URLs and headers arrive already redacted by
//! the stitcher ([`crate::redact`]); no body has a column.
use anyhow::Context as _;
use sqlx::{Sqlite, SqliteConnection, SqlitePool};

use super::WallOffset;
use crate::stitch::model::{PageLoad, Request, ms};

/// Stores one page load in one transaction and returns its `page_loads.id`.
pub async fn insert_page_load(pool: &SqlitePool, page: &PageLoad, wall: WallOffset) -> anyhow::Result<i64> {
    let mut tx = pool.begin().await.context("starting a history transaction")?;
    let id = insert_in(&mut tx, page, wall).await?;
    tx.commit().await.context("committing a page load")?;
    Ok(id)
}

/// Stores several page loads in one transaction: all of them or none.
pub async fn insert_page_loads(pool: &SqlitePool, pages: &[PageLoad], wall: WallOffset) -> anyhow::Result<Vec<i64>> {
    let mut tx = pool.begin().await.context("starting a history transaction")?;
    let mut ids = Vec::with_capacity(pages.len());
    for page in pages {
        ids.push(insert_in(&mut tx, page, wall).await?);
    }
    tx.commit().await.with_context(|| format!("committing {} page loads", pages.len()))?;
    Ok(ids)
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

async fn insert_in(tx: &mut sqlx::Transaction<'_, Sqlite>, page: &PageLoad, wall: WallOffset) -> anyhow::Result<i64> {
    let conn: &mut SqliteConnection = tx;
    let started_at_ms = wall.unix_ms(page.started_ns);
    let ended_at_ms = wall.unix_ms(page.ended_ns.max(page.started_ns));

    let process_id: i64 = sqlx::query_scalar(
        "INSERT INTO processes (tgid, name, exe, first_seen_ms, last_seen_ms) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (tgid, name) DO UPDATE SET
             exe = COALESCE(excluded.exe, processes.exe),
             first_seen_ms = MIN(processes.first_seen_ms, excluded.first_seen_ms),
             last_seen_ms = MAX(processes.last_seen_ms, excluded.last_seen_ms)
         RETURNING id",
    )
    .bind(page.client.tgid as i64)
    .bind(&page.client.name)
    .bind(page.client.exe.as_deref())
    .bind(started_at_ms)
    .bind(ended_at_ms)
    .fetch_one(&mut *conn)
    .await
    .context("upserting the process")?;

    let detail = serde_json::to_string(page).context("serializing the page load")?;
    let page_id = sqlx::query(
        "INSERT INTO page_loads (process_id, started_at_ms, started_ns, ended_ns, total_ms, url, host, status, error,
             request_count, connection_count, redirect_count, bytes, detail_json)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(process_id)
    .bind(started_at_ms)
    .bind(int(page.started_ns))
    .bind(int(page.ended_ns))
    .bind(page.total_ms())
    .bind(page.url.as_deref())
    .bind(page_host(page))
    .bind(page.status.map(i64::from))
    .bind(page.error.as_deref())
    .bind(page.requests.len() as i64)
    .bind(page.connections.len() as i64)
    .bind(page.redirect_chain.len().saturating_sub(1) as i64)
    .bind(int(page.bytes()))
    .bind(detail)
    .execute(&mut *conn)
    .await
    .context("inserting the page load")?
    .last_insert_rowid();

    let mut dns_ids = Vec::with_capacity(page.dns.len());
    for (idx, d) in page.dns.iter().enumerate() {
        let id = sqlx::query(
            "INSERT INTO dns_lookups (page_load_id, idx, tgid, comm, name, qtypes, started_at_ms, duration_ms, rcode,
                 cname_chain, addresses, min_ttl, server, error)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(page_id)
        .bind(idx as i64)
        .bind(d.tgid as i64)
        .bind(&d.comm)
        .bind(&d.name)
        .bind(d.qtypes.join(","))
        .bind(wall.unix_ms(d.started_ns))
        .bind(dur_ms(d.started_ns, d.ended_ns))
        .bind(d.rcode.as_deref())
        .bind(cname_chain_json(&d.name, &d.cname_chain))
        .bind(serde_json::to_string(&d.addresses).unwrap_or_else(|_| "[]".into()))
        .bind(d.min_ttl.map(i64::from))
        .bind(d.server.as_deref())
        .bind(d.error.as_deref())
        .execute(&mut *conn)
        .await
        .context("inserting a DNS lookup")?
        .last_insert_rowid();
        dns_ids.push(id);
    }

    let mut conn_ids = Vec::with_capacity(page.connections.len());
    for (idx, c) in page.connections.iter().enumerate() {
        let id = sqlx::query(
            "INSERT INTO connections (page_load_id, idx, tgid, comm, src, dst, started_at_ms, tcp_ms, error, requests)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(page_id)
        .bind(idx as i64)
        .bind(c.tgid as i64)
        .bind(&c.comm)
        .bind(c.src.as_deref())
        .bind(c.dst.as_deref())
        .bind(wall.unix_ms(c.connect_start_ns))
        .bind(dur_ms(c.connect_start_ns, c.established_ns))
        .bind(c.error.as_deref())
        .bind(c.requests as i64)
        .execute(&mut *conn)
        .await
        .context("inserting a connection")?
        .last_insert_rowid();
        conn_ids.push(id);
        if let Some(t) = &c.tls {
            let handshake_ms = match t.handshake_start_ns {
                Some(s) => dur_ms(s, t.handshake_end_ns),
                None => -1.0,
            };
            sqlx::query(
                "INSERT INTO tls_sessions (connection_id, page_load_id, library, handshake_ms, estimated, version, cipher, alpn, sni)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(page_id)
            .bind(&t.library)
            .bind(handshake_ms)
            .bind(t.estimated)
            .bind(t.version.as_deref())
            .bind(t.cipher.as_deref())
            .bind(t.alpn.as_deref())
            .bind(t.sni.as_deref())
            .execute(&mut *conn)
            .await
            .context("inserting a TLS session")?;
        }
    }

    for (idx, r) in page.requests.iter().enumerate() {
        insert_request(conn, page_id, idx, r, &conn_ids, &dns_ids, wall).await?;
    }
    Ok(page_id)
}

async fn insert_request(
    conn: &mut SqliteConnection,
    page_id: i64,
    idx: usize,
    r: &Request,
    conn_ids: &[i64],
    dns_ids: &[i64],
    wall: WallOffset,
) -> anyhow::Result<()> {
    let t = &r.timings;
    sqlx::query(
        "INSERT INTO requests (page_load_id, idx, connection_id, dns_lookup_id, tgid, comm, method, url, host, path,
             protocol, status, redirect_to, content_type, request_bytes, response_bytes, started_at_ms,
             blocked_ms, dns_ms, connect_ms, ssl_ms, send_ms, wait_ms, receive_ms, total_ms, new_connection, error, complete,
             request_headers, response_headers)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(page_id)
    .bind(idx as i64)
    .bind(r.connection.and_then(|i| conn_ids.get(i).copied()))
    .bind(r.dns.and_then(|i| dns_ids.get(i).copied()))
    .bind(r.tgid as i64)
    .bind(&r.comm)
    .bind(r.method.as_deref())
    .bind(r.url.as_deref())
    .bind(r.host.as_deref())
    .bind(r.path.as_deref())
    .bind(r.protocol.as_deref())
    .bind(r.status.map(i64::from))
    .bind(r.redirect_to.as_deref())
    .bind(r.content_type.as_deref())
    .bind(int(r.request_bytes))
    .bind(int(r.response_bytes))
    .bind(wall.unix_ms(r.started_ns))
    .bind(t.blocked)
    .bind(t.dns)
    .bind(t.connect)
    .bind(t.ssl)
    .bind(t.send)
    .bind(t.wait)
    .bind(t.receive)
    .bind(t.total())
    .bind(r.new_connection)
    .bind(r.error.as_deref())
    .bind(r.complete)
    .bind(serde_json::to_string(&r.request_headers).context("serializing request headers")?)
    .bind(serde_json::to_string(&r.response_headers).context("serializing response headers")?)
    .execute(conn)
    .await
    .context("inserting a request")?;
    Ok(())
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

    #[test]
    fn durations() {
        assert_eq!(dur_ms(1_000_000, Some(3_500_000)), 2.5);
        assert_eq!(dur_ms(1_000_000, None), -1.0);
        assert_eq!(dur_ms(3_000_000, Some(1_000_000)), -1.0);
    }
}
