//! `tracer run`: attach the probes, stream events, serve the dashboard, until Ctrl-C/SIGTERM.
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

pub mod report;

use crate::{
    clock::{WallOffset, monotonic_ns},
    db,
    history::{
        retention::{RetentionConfig, spawn_pruner},
        writer::{HistorySender, WriterConfig, record_run_counters, spawn_writer},
    },
    metrics::{Metrics, MetricsConfig},
    otlp::{HostInfo, OtlpConfig, OtlpSender},
    stitch::{StitchConfig, Stitcher, model::PageLoad},
    filter::{ClientFilter, FilterSpec},
    procfs,
    probes::{KernelFilter, ProbeConfig, Probes},
    stream::{self, StreamStats, printer},
    web,
};

/// The most events taken from the queue per turn of the event loop.
const EVENT_BATCH: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrintMode {
    Off,
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub print: PrintMode,
    pub db: PathBuf,
    pub listen: SocketAddr,
    /// The dashboard's token (`--token`); generated when listening off loopback without one.
    pub token: Option<String>,
    pub probes: ProbeConfig,
    pub queue: usize,
    /// How often to look for TLS libraries that processes loaded since the last look.
    pub rescan: Duration,
    /// Page-load grouping (quiet window ...).
    pub stitch: StitchConfig,
    pub retention: RetentionConfig,
    /// Trace only these clients (`--pid`, `--comm`, `-- COMMAND`); None: every process.
    pub filter: Option<FilterSpec>,
    /// Label bounds of `GET /metrics`.
    pub metrics: MetricsConfig,
    /// `--otlp-endpoint`: export every page load as an OpenTelemetry trace.
    pub otlp: Option<OtlpConfig>,
}

/// Run until Ctrl-C/SIGTERM, or until the command of `-- COMMAND` exits. Returns the exit
/// code: 0, or the command's status.
pub async fn run(config: RunConfig) -> anyhow::Result<u8> {
    // Before anything is attached: a bad token is a usage error.
    let (access, generated_token) = web::auth::Access::for_listen(config.listen.ip(), config.token.clone())?;
    let mut probe_config = config.probes.clone();
    if let Some(f) = &config.filter {
        // The spec gives what it selects; the run's flags (--syscall-tracepoints ...) stay.
        let KernelFilter { enabled, comm, .. } = f.kernel();
        probe_config.filter = KernelFilter { enabled, comm, ..config.probes.filter.clone() };
    }
    let mut probes = Probes::load(&probe_config)?;
    let mut filter = match &config.filter {
        Some(spec) => Some(ClientFilter::start(spec.clone(), &mut probes)?),
        None => None,
    };
    let kernel = procfs::kernel_release();
    eprintln!("tracer {} on kernel {kernel}", env!("CARGO_PKG_VERSION"));
    eprint!("{}", probes.kernel.report());
    for w in &probes.warnings {
        eprintln!("  note: {w}");
    }
    eprint!("{}", report::summary(&probes.status));
    match &filter {
        Some(f) => eprintln!("filter: {}", f.describe()),
        None => eprintln!("filter: none (every process is traced)"),
    }

    let stats = Arc::new(StreamStats::default());
    let mut events = stream::spawn_reader(&mut probes, config.queue, stats.clone())?;

    // Every use of the database from here runs on a runtime thread (`on_runtime`), which holds
    // no capability, so that SQLite's connection threads (started by the thread that opens a
    // connection) hold none either (crate::privileges).
    let db_path = config.db.clone();
    let pool = on_runtime(async move { db::open(&db_path).await }).await.map_err(|e| {
        let denied = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
                || c.to_string().contains("unable to open database file")
        });
        if denied {
            e.context("the daemon opens its database without capabilities: the database and its directory must be writable by its user without CAP_DAC_OVERRIDE (the default /var/lib/tracer is)")
        } else {
            e
        }
    })?;
    let probes_json = serde_json::to_string(&probes.status)?;
    let run_id = {
        let (pool, kernel) = (pool.clone(), kernel.clone());
        on_runtime(async move { db::record_start(&pool, &kernel, &probes_json).await }).await?
    };

    // One monotonic -> wall-clock mapping for everything this run writes or exports.
    let wall = WallOffset::now();
    // No waiting for a batch to fill: the writer takes whatever is queued when it is free.
    // Under load batches still form while the previous one is written, and the live feed
    // (which shows a page load once stored) is not held back by 200 ms (benchmark 8).
    let (history, writer) = spawn_writer(pool.clone(), WriterConfig { capacity: 4096, wall, flush_every: Duration::ZERO, ..Default::default() });
    let pruner = spawn_pruner(pool.clone(), config.retention.clone(), Duration::from_secs(60));
    let mut stitcher = Stitcher::new(config.stitch.clone());
    seed_processes(&mut stitcher);
    let live = Arc::new(std::sync::Mutex::new(serde_json::Value::Null));

    let hub = Arc::new(web::LiveHub::new(config.stitch.quiet_ns));
    hub.ignore_destination(config.listen); // the dashboard's own viewers are not page loads

    let metrics = Arc::new(Metrics::new(config.metrics, stats.clone()));
    // On a runtime thread, like every database call: a connection opened from this thread
    // would start its SQLite worker thread with this thread's capabilities.
    let top = {
        let (pool, limits) = (pool.clone(), config.metrics);
        on_runtime(async move { crate::metrics::top_labels(&pool, limits).await }).await
    };
    match top {
        Ok((hosts, clients)) => metrics.preload_labels(&hosts, &clients),
        Err(e) => tracing::warn!("metrics: {e:#}; label slots go to hosts and clients as they are seen"),
    }
    metrics.runtime.set_probes(&probes.status);
    let (otlp, otlp_handle) = match &config.otlp {
        Some(c) => {
            let (sender, handle) = crate::otlp::spawn_exporter(c.clone(), HostInfo::detect(), wall).await?;
            metrics.runtime.set_otlp(sender.stats());
            for addr in sender.collector_addrs() {
                hub.ignore_destination(addr); // the exporter's posts are not page loads in progress
            }
            (Some(sender), Some(handle))
        }
        None => (None, None),
    };
    let sinks = Sinks { print: config.print, history: &history, hub: &hub, metrics: &metrics, otlp: otlp.as_ref() };

    let mut state = web::AppState::new(
        web::Health {
            started: std::time::Instant::now(),
            db_path: config.db.clone(),
            probes: serde_json::to_value(&probes.status)?,
            kernel: serde_json::to_value(&probes.kernel)?,
            stats: stats.clone(),
            live: live.clone(),
        },
        pool.clone(),
        hub.clone(),
    )
    .with_access(access.clone());
    state.metrics = metrics.clone();
    let live_feed = web::spawn_live(state.clone());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("dashboard: cannot listen on {}", config.listen))?;
    let (stop_web, web_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, web::app(state))
            .with_graceful_shutdown(async {
                let _ = web_stopped.await;
            })
            .await
    });
    eprintln!("database: {}", config.db.display());
    match config.stitch.body_limit {
        0 => eprintln!("bodies: not stored (--capture-bodies stores them)"),
        n => eprintln!("bodies: STORED, the first {n} bytes of each request and response (they may hold secrets)"),
    }
    match (&access, &generated_token) {
        (web::auth::Access::LoopbackOnly, _) => eprintln!("dashboard: http://{} (loopback only)", config.listen),
        // Shown this once, on stderr only: it is never logged.
        (_, Some(t)) => eprintln!(
            "dashboard: http://{} needs a token; generated for this run (shown only now): {t}\n  open http://{}/?token={t} once, or send 'Authorization: Bearer {t}'",
            config.listen, config.listen
        ),
        (_, None) => eprintln!("dashboard: http://{} (token required: the one given with --token)", config.listen),
    }
    eprintln!("metrics: http://{}/metrics", config.listen);
    if let Some(c) = &config.otlp {
        // Header names only: their values are credentials.
        let names: Vec<&str> = c.headers.iter().map(|(n, _)| n.as_str()).collect();
        eprintln!(
            "OTLP export: {} (queue {} page loads{}{})",
            c.endpoint,
            c.queue,
            if c.gzip { ", gzip" } else { "" },
            if names.is_empty() { String::new() } else { format!(", headers: {}", names.join(", ")) }
        );
    }
    eprintln!("tracing; Ctrl-C to stop");
    // `-- COMMAND`: started only now that every probe is attached and the reader runs.
    let mut command = match (&mut filter, &config.filter) {
        (Some(f), Some(FilterSpec::Command(argv))) => {
            let h = f.spawn_command(&mut probes, argv)?;
            eprintln!("started pid {}: {}", h.pid, f.spec().describe());
            Some(h)
        }
        _ => None,
    };
    // Everything that needed the full rights is done: probes attached, database open,
    // dashboard bound, the command forked. Keep only what later attaches need.
    let keep = crate::privileges::keep_after_start(filter.is_none() && config.probes.tls);
    match crate::privileges::keep_only_on_this_thread(&keep) {
        Ok(kept) => eprintln!(
            "privileges: main thread keeps {}; dashboard, history and fetcher threads hold none",
            crate::privileges::names(&kept)
        ),
        Err(e) => tracing::warn!("could not drop capabilities: {e}"),
    }
    let mut exit_code = 0u8;
    let mut command_error = None;
    let mut stop_at: Option<tokio::time::Instant> = None;

    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut lost_tick = tokio::time::interval(Duration::from_secs(1));
    let mut stitch_tick = tokio::time::interval(Duration::from_millis(100));
    let mut rescan_tick = tokio::time::interval(config.rescan);
    rescan_tick.tick().await; // the first tick is immediate; libraries were just scanned
    let mut last_lost: u64 = 0;
    let mut newest_event_ns: u64 = 0;
    let mut batch = Vec::with_capacity(EVENT_BATCH);
    loop {
        tokio::select! {
            // Events in batches: one turn of this select per batch, not per event (at 180k
            // events/s the per-turn cost of its eight branches showed).
            n = events.recv_many(&mut batch, EVENT_BATCH) => {
                if n == 0 { break }
                for ev in batch.drain(..) {
                    newest_event_ns = newest_event_ns.max(ev.ts_ns);
                    if let Some(f) = filter.as_mut() {
                        f.on_event(&mut probes, &ev);
                    }
                    match config.print {
                        PrintMode::Off => {}
                        PrintMode::Text => println!("{}", printer::text_line(&ev)),
                        PrintMode::Json => println!("{}", printer::json_line(&ev)),
                    }
                    hub.observe(&ev);
                    for page in stitcher.on_event(&ev) {
                        deliver(page, &sinks);
                    }
                }
            }
            _ = stitch_tick.tick() => {
                // A page load closes after its client's quiet window. While the daemon is
                // behind (events still queued), the clock for that is the newest event read,
                // not now: otherwise a busy client's page load is cut into pieces by events
                // that were already made but not yet read (seen under benchmark 3's load).
                let now = if events.is_empty() { monotonic_ns() } else { newest_event_ns };
                for page in stitcher.tick(now) {
                    deliver(page, &sinks);
                }
            }
            _ = lost_tick.tick() => {
                if let Ok(counts) = probes.lost_counts() {
                    let total: u64 = counts.iter().map(|(_, n)| n).sum();
                    if total > last_lost {
                        let detail: Vec<String> = counts.iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{k}={n}")).collect();
                        tracing::warn!("ring buffer full: {} events lost so far ({})", total, detail.join(" "));
                        last_lost = total;
                    }
                    stats.kernel_lost.store(total, Ordering::Relaxed);
                    metrics.runtime.set_kernel_lost(&counts);
                }
                metrics.runtime.set_history(history.counters());
                if let Some(f) = filter.as_mut() {
                    f.tick(&mut probes);
                }
                if let Ok(mut l) = live.lock() {
                    *l = serde_json::json!({
                        "stitcher": stitcher.stats,
                        "history": history.counters(),
                        "filter": filter.as_ref().map(|f| f.snapshot()),
                        "otlp": otlp.as_ref().map(|o| o.stats().snapshot()),
                    });
                }
                let dropped = stats.queue_dropped.load(Ordering::Relaxed);
                if dropped > 0 && lost_tick.period() == Duration::from_secs(1) {
                    tracing::debug!("{dropped} events dropped at the consumer queue");
                }
            }
            _ = rescan_tick.tick() => {
                let new = probes.attach_new_libraries();
                if !new.is_empty() {
                    metrics.runtime.set_probes(&probes.status);
                }
                for st in new {
                    eprintln!("  new library: {} {} {}", st.point, st.target.as_ref().map(|p| p.display().to_string()).unwrap_or_default(), if st.attached { "attached".to_string() } else { format!("FAILED: {}", st.error.unwrap_or_default()) });
                }
            }
            end = crate::filter::command::wait_command(&mut command) => {
                eprintln!("{end}: detaching");
                if let crate::filter::command::CommandEnd::Failed(e) = &end {
                    command_error = Some(e.clone());
                    break;
                }
                exit_code = end.code();
                // Its last records may still be on their way through the ring buffer.
                stop_at = Some(tokio::time::Instant::now() + Duration::from_millis(300));
            }
            _ = crate::filter::command::sleep_until(stop_at) => break,
            _ = tokio::signal::ctrl_c() => { eprintln!("interrupted: detaching"); break }
            _ = sigterm.recv() => { eprintln!("terminated: detaching"); break }
        }
    }
    hub.shutdown(); // ends the live streams, which would hold the graceful shutdown
    let _ = stop_web.send(());
    let _ = server.await;
    // Page loads still open are complete as far as this run saw them.
    for page in stitcher.finish() {
        deliver(page, &sinks);
    }
    drop(history);
    drop(otlp);
    let counters = writer.join().await;
    if let Some(h) = otlp_handle {
        let c = h.finish(Duration::from_secs(5)).await;
        eprintln!(
            "OTLP: exported {} page loads ({} spans); dropped {} (queue full) + {} (export failed)",
            c.exported_page_loads, c.exported_spans, c.dropped_queue_full, c.dropped_export_failed
        );
    }
    live_feed.abort();
    pruner.abort();
    let lost = probes.lost_counts().map(|c| c.iter().map(|(_, n)| n).sum()).unwrap_or(0);
    let dropped = stats.queue_dropped.load(Ordering::Relaxed) + counters.dropped;
    {
        let pool = pool.clone();
        on_runtime(async move { record_run_counters(&pool, run_id, lost, dropped).await }).await?;
    }
    eprintln!("stored {} page loads ({} dropped)", counters.written, counters.dropped);
    on_runtime(async move {
        db::record_stop(&pool, run_id).await?;
        pool.close().await;
        anyhow::Ok(())
    })
    .await?;
    if let Some(f) = &filter {
        eprintln!(
            "per-process uprobes: {} traced processes seen, {} roots' events closed, {} attach failures",
            f.stats.processes_total, f.stats.detached_total, f.stats.attach_failures
        );
    }
    let t = std::time::Instant::now();
    let n = probes.detach_all();
    eprintln!("detached {n} probes in {} ms", t.elapsed().as_millis());
    if let Some(e) = command_error {
        anyhow::bail!("{e}");
    }
    Ok(exit_code)
}

/// Runs `fut` on a runtime thread rather than on the caller's (the main thread, which keeps
/// capabilities): for everything that may start threads of its own (SQLite connections).
async fn on_runtime<T: Send + 'static>(fut: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static) -> anyhow::Result<T> {
    tokio::spawn(fut).await.context("a database task failed")?
}

/// Where finished page loads go. None of them waits: the history and the OTLP exporter take
/// them through bounded queues (`try_send`, drops counted), the metrics are updated in place.
struct Sinks<'a> {
    print: PrintMode,
    history: &'a HistorySender,
    hub: &'a web::LiveHub,
    metrics: &'a Metrics,
    otlp: Option<&'a OtlpSender>,
}

fn deliver(page: PageLoad, sinks: &Sinks) {
    if sinks.otlp.is_some_and(|o| o.is_own(&page)) {
        // The exporter's own posts to the collector: not the user's traffic, and exporting
        // them would feed the exporter with its own retries.
        sinks.hub.page_done(&page);
        return;
    }
    match sinks.print {
        PrintMode::Off => {}
        PrintMode::Text => println!("{}", printer::page_load_line(&page)),
        PrintMode::Json => println!("{}", serde_json::json!({ "kind": "page_load", "page_load": page })),
    }
    sinks.hub.page_done(&page);
    sinks.metrics.observe(&page);
    if let Some(o) = sinks.otlp {
        o.offer(&page);
    }
    sinks.history.send(page);
}

/// Processes that started before the daemon: their parent and program, for client trees.
fn seed_processes(stitcher: &mut Stitcher) {
    for p in procfs::list_processes() {
        let exe = procfs::exe(p.pid).map(|e| e.display().to_string());
        stitcher.learn_process(p.pid, Some(p.ppid), p.comm, exe);
    }
}
