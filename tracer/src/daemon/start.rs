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
        web::{self, LiveHub, auth::Access, tls::TlsSetup, token::TokenSource},
    },
    stitch::Stitcher,
    stream::{self, StreamStats, events::Event},
};

/// Everything started, in order; returns the daemon and the queue of events it reads.
pub(super) async fn start(config: &RunConfig) -> anyhow::Result<(Daemon, mpsc::Receiver<Event>)> {
    // Before anything is attached or created: the privilege to trace at all (a user without
    // it hears that first), the database's directory, the token, the certificate. Each
    // refusal names what is wrong.
    crate::probes::system::check_privileges(procfs::effective_caps())?;
    history::db_path::check(&config.db, config.insecure_db_dir)?;
    let dashboard_access = DashboardAccess::prepare(config)?;
    let (mut probes, mut filter) = attach(config)?;
    let kernel = procfs::kernel_release();
    eprint!("{}", report::attached(&kernel, &probes, filter.as_ref()));

    let stats = Arc::new(StreamStats::default());
    let events = stream::spawn_reader(&mut probes, config.queue, stats.clone())?;
    let pools = database::open(&config.db).await?;
    let probes_json = serde_json::to_string(&probes.status)?;
    let run_id = {
        let (pool, kernel) = (pools.maintenance.clone(), kernel.clone());
        on_runtime(async move { history::db::record_start(&pool, &kernel, &probes_json).await }).await?
    };

    // One monotonic -> wall-clock mapping for everything this run writes or exports.
    let wall = WallOffset::now();
    let live = Arc::new(LiveHub::new(wall));
    let on_stored = {
        let live = live.clone();
        OnStored(Arc::new(move |row| live.page_stored(row)))
    };
    let (history, writer) = spawn_writer(pools.writer.clone(), WriterConfig::daemon(wall, on_stored));
    let pruner = spawn_pruner(pools.maintenance.clone(), config.retention.clone(), Duration::from_secs(60));
    let mut stitcher = Stitcher::new(config.stitch.clone());
    seed_processes(&mut stitcher);
    stitcher.ignore_in_progress(config.listen); // the dashboard's own viewers are not page loads

    let metrics = start_metrics(config, &pools.reader, &stats, &probes).await;
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
    let mut state = web::AppState::new(health, pools.reader.clone(), live.clone())
        .with_access(dashboard_access.access.clone())
        .with_write_pool(pools.maintenance.clone());
    state.metrics = metrics;
    let dashboard = Dashboard::start(config.listen, state, dashboard_access.tls.as_ref().map(|t| t.config.clone())).await?;
    eprint!("{}", report::serving(config, &dashboard_access.served()));
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
    drop_privileges(filter.is_none() && config.probes.tls)?;
    let daemon = Daemon {
        probes,
        filter,
        stitcher,
        fan_out,
        stats,
        pipeline_counters,
        command,
        pools,
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
    async fn start(listen: SocketAddr, state: web::AppState, tls: Option<Arc<rustls::ServerConfig>>) -> anyhow::Result<Dashboard> {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("dashboard: cannot listen on {listen}"))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let app = web::app(state);
        let server = match tls {
            Some(config) => {
                let listener = web::tls::TlsListener::new(listener, config).context("dashboard: TLS listener")?;
                tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stopped).await })
            }
            None => tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stopped).await }),
        };
        Ok(Dashboard { stop, server })
    }

    /// Stops accepting and waits for the requests in flight (end the live streams first).
    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

/// Keeps on the main thread only the capabilities later attaches need, each listed with its
/// reason; the threads started from here on (dashboard, history, fetcher) hold none. A drop
/// that fails, or leaves more than asked, stops the daemon: it does not run with more rights
/// than it says.
fn drop_privileges(all_process_uprobes: bool) -> anyhow::Result<()> {
    let keep = crate::privileges::keep_after_start(all_process_uprobes);
    let kept = crate::privileges::keep_only_on_this_thread(&keep)
        .and_then(|kept| crate::privileges::verify_this_thread(&kept).map(|()| kept))
        .context("dropping privileges failed: stopping rather than running with rights it does not need")?;
    eprint!("{}", report::privileges(&kept));
    Ok(())
}

/// The dashboard's access rule, its token's source and its TLS, settled before anything is
/// attached (a bad token file or certificate is reported at once).
struct DashboardAccess {
    access: Access,
    token: String,
    token_source: TokenSource,
    tls: Option<TlsSetup>,
}

impl DashboardAccess {
    fn prepare(config: &RunConfig) -> anyhow::Result<DashboardAccess> {
        let a = &config.access;
        let (token, token_source) = web::token::load(a.token_file.as_deref(), a.token_env.clone(), &config.db)?;
        let metrics_token = a.metrics_token_file.as_deref().map(web::token::load_metrics).transpose()?;
        let access = Access::new(config.listen.ip(), &token, metrics_token.as_deref())?;
        let off_loopback = !config.listen.ip().is_loopback();
        let tls = if a.tls_files.is_some() || (off_loopback && !a.plain_http_trusted_network) {
            let given = a.tls_files.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
            Some(web::tls::setup(given, &config.db, &web::tls::names_for(config.listen)).context("the dashboard's TLS certificate")?)
        } else {
            None
        };
        let access = access.with_tls(tls.is_some());
        Ok(DashboardAccess { access, token, token_source, tls })
    }

    /// For the start-up report: the token itself only when stderr is a terminal.
    fn served(&self) -> report::Served<'_> {
        use std::io::IsTerminal as _;
        report::Served {
            show_token: std::io::stderr().is_terminal().then_some(self.token.as_str()),
            token_source: &self.token_source,
            tls: self.tls.as_ref().map(|t| (t.fingerprint.as_str(), &t.source)),
            metrics_token: self.access.has_metrics_token(),
        }
    }
}

/// Processes that started before the daemon: their parent and program, for client trees.
fn seed_processes(stitcher: &mut Stitcher) {
    for p in procfs::list_processes() {
        let exe = procfs::exe(p.pid).map(|e| e.display().to_string());
        stitcher.learn_process(p.pid, Some(p.ppid), p.comm, exe);
    }
}
