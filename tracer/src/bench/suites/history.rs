//! Benchmark 6: history at scale (the ingest rate, then the API on a grown database).
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use serde_json::Value;

use crate::bench::{
    Ctx, Section, seed,
    util::{self, fmt, median, percentile, thousands},
};

/// Benchmark 6.
pub fn history_bench(ctx: &Ctx, _which: &[u8]) -> Result<Vec<Section>> {
    let db_path = ctx.dir.join("history.db");
    let plan = ctx.plan.clone();
    // Target D's first half: page loads of one request each, into a database of their own.
    let one_path = ctx.dir.join("history-one-request.db");
    let n = plan.history_ingest;
    let one = ctx.rt.block_on(seed::seed_shaped(&one_path, seed::Shape::OneRequest, n, n, None, 7))?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", one_path.display()));
    }
    let token = crate::serve::web::auth::generate()?;
    let (seeded, addr, server) = ctx.rt.block_on(async {
        let seeded = seed::seed(&db_path, plan.history_ingest, plan.history_total, 7).await?;
        let pool = crate::history::db::open(&db_path).await?;
        let health = crate::serve::web::Health {
            started: Instant::now(),
            db_path: db_path.clone(),
            probes: Value::Null,
            kernel: Value::Null,
            stats: Arc::new(crate::stream::StreamStats::default()),
            live: Arc::new(Mutex::new(Value::Null)),
        };
        let access = crate::serve::web::auth::Access::new(std::net::Ipv4Addr::LOCALHOST.into(), &token, None)?;
        let state = crate::serve::web::AppState::new(health, pool, Arc::new(crate::serve::web::LiveHub::new(crate::clock::WallOffset::now())))
            .with_access(access);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move { axum::serve(listener, crate::serve::web::app(state)).await });
        anyhow::Ok((seeded, addr, server))
    })?;
    let mut rng = fastrand::Rng::with_seed(11);
    let total = seeded.total.max(1);
    let kinds: Vec<(&str, Box<dyn Fn(&mut fastrand::Rng) -> String>)> = vec![
        ("list (newest 50)", Box::new(|_| "/api/page-loads".to_string())),
        ("list, page 20 (offset 1000)", Box::new(|_| "/api/page-loads?offset=1000".to_string())),
        (
            "filtered: host",
            Box::new(|r| format!("/api/page-loads?host={}", seed::HOSTS[r.usize(0..seed::HOSTS.len())])),
        ),
        ("filtered: process + status", Box::new(|_| "/api/page-loads?process=chromium&status=5xx".to_string())),
        ("filtered: status", Box::new(|_| "/api/page-loads?status=5xx".to_string())),
        ("filtered: failures", Box::new(|_| "/api/page-loads?status=error".to_string())),
        ("filtered: url substring", Box::new(|_| "/api/page-loads?url=news".to_string())),
        ("filtered: since 1d, by total_ms", Box::new(|_| "/api/page-loads?since=1d&sort=total_ms".to_string())),
        ("detail", Box::new(move |r| format!("/api/page-loads/{}", r.u64(1..=total)))),
        ("HAR export", Box::new(move |r| format!("/api/page-loads/{}/har", r.u64(1..=total)))),
    ];
    let mut rows = String::new();
    let mut numbers = vec![
        ("ingest page loads/s".into(), seeded.ingested as f64 / seeded.ingest_secs),
        ("ingest requests/s".into(), seeded.ingest_requests as f64 / seeded.ingest_secs),
        ("ingest 1-request page loads/s".into(), one.ingested as f64 / one.ingest_secs),
        ("ingest requests per CPU s".into(), seeded.ingest_requests as f64 / seeded.ingest_cpu_secs.max(1e-9)),
        ("ingest 1-request page loads per CPU s".into(), one.ingested as f64 / one.ingest_cpu_secs.max(1e-9)),
    ];
    // Each kind gets at most this long (but 5 requests at least): filtered lists of a large
    // database take ~0.6 s each, and 100 of each would hold the run for many minutes.
    let budget = Duration::from_secs_f64(ctx.plan.window_s * 5.0);
    for (name, path) in &kinds {
        let mut ms = Vec::new();
        let started = Instant::now();
        for _ in 0..ctx.plan.api_samples {
            if ms.len() >= 5 && started.elapsed() > budget {
                break;
            }
            let p = path(&mut rng);
            let t = Instant::now();
            let (status, _) = util::http_get(addr, &p, &token, Duration::from_secs(60))?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                bail!("GET {p}: {status}");
            }
        }
        let p95 = percentile(&ms, 95.0);
        rows.push_str(&format!(
            "| {name} | {} | {} | **{}** | {} |\n",
            ms.len(),
            fmt(median(&ms), 1),
            fmt(p95, 1),
            fmt(percentile(&ms, 100.0), 1)
        ));
        numbers.push((format!("{name} p95 ms"), p95));
    }
    server.abort();
    let _ = std::fs::remove_file(&db_path);
    let load = util::loadavg();
    let per_cpu = |r: &seed::SeedResult, v: u64| thousands(v as f64 / r.ingest_cpu_secs.max(1e-9));
    let md = format!(
        "### 6. History at scale\n\n\
         Seeding (`tracer bench-tool seed`): {} synthetic page loads (browsers 5-60 requests over 3 hosts, \
         command-line clients 1-3, redirects, CNAME chains, TLS, 2% failures; {} requests in all) stored through \
         the daemon's history writer (`history::spawn_writer` with `WriterConfig::daemon`: its queue, batches of up \
         to {} page loads a transaction, the list row of each for the live feed): **{} page loads/s** (**{} requests/s**; \
         {} requests per CPU second of the seeding process); {} page loads of one request each (curl, DNS + TLS + \
         one GET), into a database of their own: **{} page loads/s** ({} per CPU second). Timed from the first \
         page load queued to the last one committed, {} at a time, generating them left out. The database was then \
         grown to {} page loads by copying those rows in SQL (ids offset, times moved back) in {} s; {:.1} GiB{}. \
         API through the dashboard's router on a loopback socket, up to {} requests of each kind (at most {} s \
         per kind), random ids/hosts. Targets: list \
         and detail p95 < 50 ms; ingest ≥ 20,000 1-request page loads/s and ≥ 100,000 requests/s of the mix.\n\n\
         | request | requests | p50 ms | p95 ms | max ms |\n| --- | --- | --- | --- | --- |\n{rows}\n\
         Load average after the benchmark: {load}.\n\n",
        thousands(seeded.ingested as f64),
        thousands(seeded.ingest_requests as f64),
        seeded.batch,
        thousands(seeded.ingested as f64 / seeded.ingest_secs),
        thousands(seeded.ingest_requests as f64 / seeded.ingest_secs),
        per_cpu(&seeded, seeded.ingest_requests),
        thousands(one.ingested as f64),
        thousands(one.ingested as f64 / one.ingest_secs),
        per_cpu(&one, one.ingested),
        thousands(seed::CHUNK as f64),
        thousands(seeded.total as f64),
        fmt(seeded.grow_secs, 0),
        seeded.db_bytes as f64 / (1u64 << 30) as f64,
        seeded.capped_by_disk.as_ref().map(|c| format!(" (**capped by free disk space**: {c})")).unwrap_or_default(),
        ctx.plan.api_samples,
        budget.as_secs(),
    );
    Ok(vec![Section { markdown: md, numbers }])
}

