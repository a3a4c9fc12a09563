//! The history writer: batches, drops, errors (read-only database, full disk) and the stored rows it reports.
use super::*;

fn writer_config(capacity: usize, batch_max: usize) -> WriterConfig {
    WriterConfig { capacity, batch_max, flush_every: Duration::from_millis(200), wall: wall_at(1_776_160_800_000), on_stored: None }
}

/// The live feed's source: each committed page load's list row, in the order stored, ids
/// included.
#[tokio::test]
async fn writer_tells_each_stored_row() {
    use std::sync::{Arc, Mutex};
    let (_dir, _path, pool) = temp_db().await;
    let told = Arc::new(Mutex::new(Vec::new()));
    let sink = told.clone();
    let on_stored = history::OnStored(Arc::new(move |s| sink.lock().unwrap().push(s)));
    let (tx, handle) = history::spawn_writer(pool.clone(), WriterConfig { on_stored: Some(on_stored), ..writer_config(8, 2) });
    for i in 0..3 {
        assert!(tx.send(page(Spec { start_ms: i, ..Default::default() })));
    }
    drop(tx);
    assert_eq!(handle.join().await.batches, 2, "2 + 1");
    let listed = history::list(&pool, &Filter::default(), Sort::default(), PageRequest { limit: 10, offset: 0 }).await.unwrap();
    let mut told = told.lock().unwrap().clone();
    told.reverse(); // the list is newest first
    assert_eq!(told.len(), 3);
    assert_eq!(told, listed.items);
}

#[tokio::test]
async fn writer_batches_and_counts_drops() {
    let (_dir, _path, pool) = temp_db().await;
    let (tx, handle) = history::spawn_writer(pool.clone(), writer_config(4, 3));
    // The writer cannot run before this test awaits (current-thread runtime): the queue of 4
    // fills and the other 6 are refused.
    let accepted = (0..10).filter(|i| tx.send(page(Spec { start_ms: *i, ..Default::default() }))).count();
    assert_eq!(accepted, 4);
    assert_eq!(tx.dropped(), 6);
    drop(tx);
    let c = handle.join().await;
    assert_eq!(c.queued, 4);
    assert_eq!(c.written, 4);
    assert_eq!(c.batches, 2, "3 + 1");
    assert_eq!(c.dropped, 6);
    assert_eq!(c.dropped_queue_full, 6);
    assert_eq!((c.write_errors, c.dropped_write_failed), (0, 0));
    assert_eq!(count(&pool, "page_loads").await, 4);
}

/// The seeder's way in: where `send` refuses once the queue is full (the test above: the
/// writer cannot run until the test awaits), `send_waiting` waits for room, so every page
/// load is stored.
#[tokio::test]
async fn send_waiting_waits_for_room_instead_of_dropping() {
    let (_dir, _path, pool) = temp_db().await;
    let (tx, handle) = history::spawn_writer(pool.clone(), writer_config(2, 3));
    for i in 0..10 {
        assert!(tx.send_waiting(page(Spec { start_ms: i, ..Default::default() })).await);
    }
    assert_eq!(tx.dropped(), 0);
    drop(tx);
    let c = handle.join().await;
    assert_eq!((c.queued, c.written, c.dropped), (10, 10, 0));
    assert_eq!(count(&pool, "page_loads").await, 10);
}

#[tokio::test]
async fn writer_waits_for_a_batch_then_flushes() {
    let (_dir, _path, pool) = temp_db().await;
    let (tx, handle) = history::spawn_writer(pool.clone(), writer_config(100, 64));
    let t0 = std::time::Instant::now();
    assert!(tx.send(page(Spec::default())));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tx.send(page(Spec { start_ms: 1, ..Default::default() })));
    // Both arrive within the 200 ms window: one transaction.
    for _ in 0..100 {
        if handle.counters().written == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = handle.counters();
    assert_eq!((c.written, c.batches), (2, 1));
    assert!(t0.elapsed() >= Duration::from_millis(190), "{:?}", t0.elapsed());
    // The writer stops once every sender is gone; a clone keeps it running.
    let tx2 = tx.clone();
    drop(tx);
    assert!(tx2.send(page(Spec { start_ms: 2, ..Default::default() })));
    drop(tx2);
    let c = handle.join().await;
    assert_eq!((c.written, c.batches, c.dropped), (3, 2, 0));
}

#[tokio::test]
async fn read_only_database_counts_errors_and_keeps_rows() {
    let (_dir, path, pool) = temp_db().await;
    let wall = wall_at(1_776_160_800_000);
    history::insert_page_load(&pool, &page(Spec::default()), wall).await.unwrap();
    history::insert_page_load(&pool, &page(Spec { start_ms: 5, ..Default::default() }), wall).await.unwrap();
    let before = counts(&pool).await;

    // mode=ro (chmod 0444 does not stop root, who runs the kernel tests).
    let ro = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::from_str(&format!("sqlite://{}?mode=ro", path.display())).unwrap())
        .await
        .unwrap();
    let (tx, handle) = history::spawn_writer(ro.clone(), writer_config(16, 2));
    for i in 0..5 {
        assert!(tx.send(page(Spec { start_ms: 100 + i, ..Default::default() })));
    }
    drop(tx);
    let c = handle.join().await;
    assert_eq!(c.written, 0);
    assert_eq!(c.write_errors, 3, "batches of 2 + 2 + 1");
    assert_eq!(c.dropped_write_failed, 5);
    assert_eq!(c.dropped, 5);
    let last = c.last_error.unwrap();
    assert!(last.contains("readonly") || last.contains("read-only") || last.contains("read only"), "{last}");
    assert_eq!(counts(&pool).await, before);
}

#[tokio::test]
async fn full_disk_is_survived() {
    let (_dir, path, pool) = temp_db().await;
    let wall = wall_at(1_776_160_800_000);
    history::insert_page_load(&pool, &page(Spec::default()), wall).await.unwrap();
    // One connection whose database may not grow: SQLITE_FULL, as on a full disk.
    let small = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display())).unwrap())
        .await
        .unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(&small).await.unwrap();
    sqlx::query(&format!("PRAGMA max_page_count = {pages}")).execute(&small).await.unwrap();
    let (tx, handle) = history::spawn_writer(small.clone(), writer_config(32, 64));
    // Enough data to need new pages.
    for i in 0..20 {
        assert!(tx.send(page(Spec { start_ms: 10 + i, ..Default::default() })));
    }
    wait_for(|| handle.counters().write_errors == 1).await;
    let c = handle.counters();
    assert_eq!((c.written, c.dropped_write_failed), (0, 20));
    assert!(c.last_error.as_deref().unwrap_or("").contains("full"), "{:?}", c.last_error);
    // Room again: the writer goes on.
    sqlx::query("PRAGMA max_page_count = 1073741823").execute(&small).await.unwrap();
    assert!(tx.send(page(Spec { start_ms: 99, ..Default::default() })));
    drop(tx);
    let c = handle.join().await;
    assert_eq!((c.written, c.write_errors, c.dropped), (1, 1, 20));
    assert_eq!(count(&pool, "page_loads").await, 2);
    assert_eq!(count(&pool, "requests").await, 6);
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..250 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out");
}

#[tokio::test]
async fn run_counters_are_recorded() {
    let (_dir, _path, pool) = temp_db().await;
    let run = db::record_start(&pool, "6.18", "[]").await.unwrap();
    history::record_run_counters(&pool, run, 12, 34).await.unwrap();
    let got: (i64, i64) = sqlx::query_as("SELECT lost_events, dropped_events FROM daemon_runs WHERE id = ?")
        .bind(run)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(got, (12, 34));
}
