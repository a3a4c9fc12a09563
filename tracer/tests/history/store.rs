//! Storing page loads: one page load and a batch, written to every table and read back whole.
use super::*;

#[tokio::test]
async fn insert_and_get_round_trip() {
    let (_dir, _path, pool) = temp_db().await;
    let wall = wall_at(1_776_160_800_000);
    let a = page(Spec::default());
    let b = page(Spec { start_ms: 1000, ..Default::default() });
    let id_a = history::insert_page_load(&pool, &a, wall).await.unwrap();
    let id_b = history::insert_page_load(&pool, &b, wall).await.unwrap();
    assert_ne!(id_a, id_b);

    let got = history::get(&pool, id_a).await.unwrap().unwrap();
    assert_eq!(got.id, id_a);
    assert_eq!(got.page, a);
    assert_eq!(got.started_at_ms, 1_776_160_800_000);
    let (id, p): (i64, PageLoad) = history::get(&pool, id_b).await.unwrap().unwrap().into();
    assert_eq!((id, p), (id_b, b));
    assert!(history::get(&pool, 9999).await.unwrap().is_none());

    // One process (same tgid + name), its last_seen from the later page load.
    assert_eq!(counts(&pool).await, vec![1, 2, 4, 4, 2, 6]);
    let (first, last): (i64, i64) =
        sqlx::query_as("SELECT first_seen_ms, last_seen_ms FROM processes").fetch_one(&pool).await.unwrap();
    assert_eq!(first, 1_776_160_800_000);
    assert_eq!(last, 1_776_160_801_027);

    // Columns, as the dashboard will read them.
    let row: (String, Option<String>, Option<i64>, i64, i64, i64, i64, f64) = sqlx::query_as(
        "SELECT url, host, status, request_count, connection_count, redirect_count, bytes, total_ms FROM page_loads WHERE id = ?",
    )
    .bind(id_a)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        ("http://shop.test/".into(), Some("shop.test".into()), Some(200), 3, 2, 1, 240 + 5187 + 1000, 27.1)
    );
    let (cname, addrs, dur): (String, String, f64) = sqlx::query_as(
        "SELECT cname_chain, addresses, duration_ms FROM dns_lookups WHERE page_load_id = ? AND idx = 1",
    )
    .bind(id_a)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(cname, r#"["www.shop.test","edge.cdn.test"]"#);
    assert_eq!(addrs, r#"["10.0.0.3","fd00::3"]"#);
    assert_eq!(dur, 1.5);
    let (tcp_ms, hs_ms, alpn): (f64, f64, String) = sqlx::query_as(
        "SELECT c.tcp_ms, t.handshake_ms, t.alpn FROM connections c JOIN tls_sessions t ON t.connection_id = c.id
         WHERE c.page_load_id = ?",
    )
    .bind(id_a)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((tcp_ms, hs_ms, alpn.as_str()), (1.0, 3.5, "h2"));
    // Requests point at their own page load's connection and lookup rows.
    let (bad,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM requests r LEFT JOIN connections c ON c.id = r.connection_id
         LEFT JOIN dns_lookups d ON d.id = r.dns_lookup_id
         WHERE (r.connection_id IS NOT NULL AND c.page_load_id != r.page_load_id)
            OR (r.dns_lookup_id IS NOT NULL AND d.page_load_id != r.page_load_id)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(bad, 0);
    let (path, connect, ssl, total): (String, f64, f64, f64) =
        sqlx::query_as("SELECT path, connect_ms, ssl_ms, total_ms FROM requests WHERE page_load_id = ? AND idx = 1")
            .bind(id_a)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((path.as_str(), connect, ssl), ("/?q=*", 4.5, 3.5));
    assert!((total - 14.0).abs() < 1e-9);
}

#[tokio::test]
async fn batch_insert_is_one_transaction() {
    let (_dir, _path, pool) = temp_db().await;
    let wall = wall_at(1_776_160_800_000);
    let pages: Vec<PageLoad> = (0..3).map(|i| page(Spec { start_ms: i * 100, ..Default::default() })).collect();
    let ids = history::insert_page_loads(&pool, &pages, wall).await.unwrap();
    assert_eq!(ids.len(), 3);
    // A batch that fails part-way (here: a table gone) leaves nothing of itself behind.
    sqlx::query("DROP TABLE tls_sessions").execute(&pool).await.unwrap();
    let err = history::insert_page_loads(&pool, &pages, wall).await.unwrap_err();
    assert!(format!("{err:#}").contains("tls_sessions"), "{err:#}");
    assert_eq!(count(&pool, "page_loads").await, 3);
    assert_eq!(count(&pool, "requests").await, 9);
}

#[tokio::test]
async fn foreign_keys_on_every_connection() {
    let (_dir, _path, pool) = temp_db().await;
    // Hold several connections at once so that more than one is checked.
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(pool.acquire().await.unwrap());
    }
    for c in conns.iter_mut() {
        let on: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut **c).await.unwrap();
        assert_eq!(on, 1);
    }
}

#[tokio::test]
async fn a_cut_page_load_is_stored_marked_and_says_so_in_show_and_har() {
    use tracer::stitch::model::{Cap, PageCut};
    let (_dir, _path, pool) = temp_db().await;
    let wall = wall_at(1_776_160_800_000);
    let whole = page(Spec::default());
    let cut = PageLoad { cut: Some(PageCut { cap: Cap::PageRequests, limit: 1000 }), ..page(Spec { start_ms: 1000, ..Default::default() }) };
    let id_whole = history::insert_page_load(&pool, &whole, wall).await.unwrap();
    let id_cut = history::insert_page_load(&pool, &cut, wall).await.unwrap();

    let column: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT id, cut FROM page_loads ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(column, vec![(id_whole, None), (id_cut, Some("page_requests".into()))]);
    let stored = history::get(&pool, id_cut).await.unwrap().unwrap();
    assert_eq!(stored.page, cut, "read back whole, cut included");

    let text = history::render::show(&stored);
    assert!(text.contains("cut at 1000 requests, connections or lookups (--page-max-requests)"), "{text}");
    assert!(!history::render::show(&history::get(&pool, id_whole).await.unwrap().unwrap()).contains("cut"));

    let har = history::har::to_har(&[history::get(&pool, id_whole).await.unwrap().unwrap(), stored]);
    let pages = har["log"]["pages"].as_array().unwrap();
    assert_eq!(pages[0].get("_cut"), None);
    assert_eq!(pages[1]["_cut"]["cap"], "page_requests");
    assert_eq!(pages[1]["_cut"]["limit"], 1000);
    assert_eq!(pages[1]["_cut"]["text"], "cut at 1000 requests, connections or lookups (--page-max-requests)");
}
