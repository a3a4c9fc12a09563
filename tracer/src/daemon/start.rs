//! Start-up: attach the probes (and the client filter), start the reader, open the database,
//! start the sinks (history writer, metrics, OTLP exporter, live hub) and the dashboard,
//! start `-- COMMAND`, then drop the capabilities no longer needed. The report goes to stderr
//! as each part is done ([`super::report`]).
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use tokio::sync::mpsc;

use super::{Daemon, FanOut, RunConfig, database, on_runtime, report};
use crate::{
    clock::WallOffset,
    filter::{ClientFilter, FilterSpec},
    history::{
        self, OnStored,
        retention::spawn_pruner,
        writer::{WriterConfig, spawn_writer},
    },
    probes::{KernelFilter, Probes},
    procfs,
    serve::{
        metrics::{self, Metrics},
        otlp::{self, HostInfo},
        web::{self, LiveHub, auth::Access},
    },
    stitch::Stitcher,
    stream::{self, StreamStats, events::Event},
};

/// Everything started, in order; returns the daemon and the queue of events it reads.
pub(super) async fn start(config: &RunConfig) -> anyhow::Result<(Daemon, mpsc::Receiver<Event>)> {
    // Before anything is attached: a bad token is a usage error.
    let (access, generated_token) = Access::for_listen(config.listen.ip(), config.token.clone())?;
    let (mut probes, mut filter) = attach(config)?;
    let kernel = procfs::kernel_release();
    eprint!("{}", report::attached(&kernel, &probes, filter.as_ref()));

    let stats = Arc::new(StreamStats::default());
    let events = stream::spawn_reader(&mut probes, config.queue, stats.clone())?;
    let pool = database::open(&config.db).await?;
    let probes_json = serde_json::to_string(&probes.status)?;
    let run_id = {
        let (pool, kernel) = (pool.clone(), kernel.clone());
        on_runtime(async move { history::db::record_start(&pool, &kernel, &probes_json).await }).await?
    };

    // One monotonic -> wall-clock mapping for everything this run writes or exports.
    let wall = WallOffset::now();
    let live = Arc::new(LiveHub::new(wall));
    // No waiting for a batch to fill: the writer takes whatever is queued when it is free.
    // Under load batches still form while the previous one is written, and the live feed
    // (which shows a page load once stored) is not held back by 200 ms (benchmark 8).
    let on_stored = {
        let live = live.clone();
        OnStored(Arc::new(move |row| live.page_stored(row)))
    };
    let writer_config = WriterConfig { capacity: 4096, wall, flush_every: Duration::ZERO, on_stored: Some(on_stored), ..Default::default() };
    let (history, writer) = spawn_writer(pool.clone(), writer_config);
    let pruner = spawn_pruner(pool.clone(), config.retention.clone(), Duration::from_secs(60));
    let mut stitcher = Stitcher::new(config.stitch.clone());
    seed_processes(&mut stitcher);
    stitcher.ignore_in_progress(config.listen); // the dashboard's own viewers are not page loads

    let metrics = start_metrics(config, &pool, &stats, &probes).await;
    let (otlp, otlp_handle) = match &config.otlp {
        Some(c) => {
            let (sender, handle) = otlp::spawn_exporter(c.clone(), HostInfo::detect(), wall).await?;
            metrics.runtime.set_otlp(sender.stats());
            for addr in sender.collector_addrs() {
                stitcher.ignore_in_progress(addr); // the exporter's posts are not page loads in progress
            }
            (Some(sender), Some(handle))
        }
        None => (None, None),
    };
    let fan_out = FanOut { print: config.print, metrics: metrics.clone(), otlp, history, live: live.clone() };

    let pipeline_counters = Arc::new(Mutex::new(serde_json::Value::Null));
    let health = web::Health {
        started: std::time::Instant::now(),
        db_path: config.db.clone(),
        probes: serde_json::to_value(&probes.status)?,
        kernel: serde_json::to_value(&probes.kernel)?,
        stats: stats.clone(),
        live: pipeline_counters.clone(),
    };
    let mut state = web::AppState::new(health, pool.clone(), live.clone()).with_access(access.clone());
    state.metrics = metrics;
    let dashboard = Dashboard::start(config.listen, state).await?;
    eprint!("{}", report::serving(config, &access, generated_token.as_deref()));
    eprintln!("tracing; Ctrl-C to stop");
    // `-- COMMAND`: started only now that every probe is attached and the reader runs.
    let command = match (&mut filter, &config.filter) {
        (Some(f), Some(FilterSpec::Command(argv))) => {
            let h = f.spawn_command(&mut probes, argv)?;
            eprintln!("started pid {}: {}", h.pid, f.spec().describe());
            Some(h)
        }
        _ => None,
    };
    // Everything that needed the full rights is done: probes attached, database open,
    // dashboard bound, the command forked. Keep only what later attaches need.
    drop_privileges(filter.is_none() && config.probes.tls);
    let daemon = Daemon {
        probes,
        filter,
        stitcher,
        fan_out,
        stats,
        pipeline_counters,
        command,
        pool,
        run_id,
        writer,
        pruner,
        otlp: otlp_handle,
        live,
        dashboard,
    };
    Ok((daemon, events))
}

/// Loads and attaches the probes, and starts the client filter (`--pid`, `--comm`,
/// `-- COMMAND`), whose spec decides what the kernel programs select.
fn attach(config: &RunConfig) -> anyhow::Result<(Probes, Option<ClientFilter>)> {
    let mut probe_config = config.probes.clone();
    if let Some(f) = &config.filter {
        // The spec gives what it selects; the run's flags (--syscall-tracepoints ...) stay.
        let KernelFilter { enabled, comm, .. } = f.kernel();
        probe_config.filter = KernelFilter { enabled, comm, ..config.probes.filter.clone() };
    }
    let mut probes = Probes::load(&probe_config)?;
    let filter = match &config.filter {
        Some(spec) => Some(ClientFilter::start(spec.clone(), &mut probes)?),
        None => None,
    };
    Ok((probes, filter))
}

/// The metrics, their label slots given first to the busiest hosts and clients of the history.
async fn start_metrics(config: &RunConfig, pool: &sqlx::SqlitePool, stats: &Arc<StreamStats>, probes: &Probes) -> Arc<Metrics> {
    let metrics = Arc::new(Metrics::new(config.metrics, stats.clone()));
    // On a runtime thread, like every database call: a connection opened from this thread
    // would start its SQLite worker thread with this thread's capabilities.
    let top = {
        let (pool, limits) = (pool.clone(), config.metrics);
        on_runtime(async move { metrics::top_labels(&pool, limits).await }).await
    };
    match top {
        Ok((hosts, clients)) => metrics.preload_labels(&hosts, &clients),
        Err(e) => tracing::warn!("metrics: {e:#}; label slots go to hosts and clients as they are seen"),
    }
    metrics.runtime.set_probes(&probes.status);
    metrics
}

/// The dashboard's server, running until [`stop`](Self::stop).
pub(super) struct Dashboard {
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Dashboard {
    async fn start(listen: SocketAddr, state: web::AppState) -> anyhow::Result<Dashboard> {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("dashboard: cannot listen on {listen}"))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, web::app(state))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Dashboard { stop, server })
    }

    /// Stops accepting and waits for the requests in flight (end the live streams first).
    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

/// Keeps on the main thread only the capabilities later attaches need; the threads started
/// from here on (dashboard, history, fetcher) hold none.
fn drop_privileges(all_process_uprobes: bool) {
    let keep = crate::privileges::keep_after_start(all_process_uprobes);
    match crate::privileges::keep_only_on_this_thread(&keep) {
        Ok(kept) => eprintln!(
            "privileges: main thread keeps {}; dashboard, history and fetcher threads hold none",
            crate::privileges::names(&kept)
        ),
        Err(e) => tracing::warn!("could not drop capabilities: {e}"),
    }
}

/// Processes that started before the daemon: their parent and program, for client trees.
fn seed_processes(stitcher: &mut Stitcher) {
    for p in procfs::list_processes() {
        let exe = procfs::exe(p.pid).map(|e| e.display().to_string());
        stitcher.learn_process(p.pid, Some(p.ppid), p.comm, exe);
    }
}
