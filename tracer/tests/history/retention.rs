//! Retention: by age and by count, with every row of a page load, and the pruner's timer.
use super::*;

#[tokio::test]
async fn retention_by_age_cascades() {
    let (_dir, _path, pool) = temp_db().await;
    let now = now_unix_ms();
    let day = 86_400_000i64;
    // Three old page loads (40, 35 and 31 days ago; one of them from its own process) and two
    // recent ones.
    for (ago, client, tgid) in [(40, "curl", 1), (35, "wget", 2), (31, "curl", 1), (1, "curl", 1), (0, "curl", 3)] {
        let p = page(Spec { client, tgid, ..Default::default() });
        history::insert_page_load(&pool, &p, wall_at(now - ago * day - 1000)).await.unwrap();
    }
    assert_eq!(counts(&pool).await, vec![3, 5, 10, 10, 5, 15]);
    let n = history::prune(&pool, Some(history::parse_retain("30d").unwrap()), None).await.unwrap();
    assert_eq!(n, 3);
    // Children went with their page loads; the wget process has nothing left.
    assert_eq!(counts(&pool).await, vec![2, 2, 4, 4, 2, 6]);
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM processes ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(names, ["curl", "curl"]);
    // Nothing more to do.
    assert_eq!(history::prune(&pool, Some(Duration::from_secs(30 * 86_400)), None).await.unwrap(), 0);
    assert_eq!(history::prune(&pool, None, None).await.unwrap(), 0);
}

#[tokio::test]
async fn retention_by_count_keeps_the_newest() {
    let (_dir, _path, pool, id) = seeded().await;
    let n = history::prune(&pool, None, Some(4)).await.unwrap();
    assert_eq!(n, 2);
    let left = history::list(&pool, &Filter::default(), Sort::Started, PageRequest::default()).await.unwrap();
    assert_eq!(ids(&left), vec![id[5], id[4], id[3], id[2]]);
    // Child rows of exactly the remaining page loads.
    assert_eq!(counts(&pool).await[1..], [4, 7, 6, 3, 10]);
    for t in ["dns_lookups", "connections", "tls_sessions", "requests"] {
        let orphans: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {t} WHERE page_load_id NOT IN (SELECT id FROM page_loads)"
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(orphans, 0, "{t}");
    }
    assert_eq!(history::prune(&pool, None, Some(0)).await.unwrap(), 4);
    assert_eq!(counts(&pool).await, vec![0, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn pruner_task_runs_on_its_timer() {
    let (_dir, _path, pool, _) = seeded().await;
    let task = history::spawn_pruner(
        pool.clone(),
        RetentionConfig { retain: None, max_page_loads: Some(1) },
        Duration::from_millis(50),
    );
    for _ in 0..100 {
        if count(&pool, "page_loads").await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&pool, "page_loads").await, 1);
    task.abort();
    // No limit: the task ends at once.
    let idle = history::spawn_pruner(pool.clone(), RetentionConfig::default(), Duration::from_millis(10));
    tokio::time::timeout(Duration::from_secs(5), idle).await.unwrap().unwrap();
}
