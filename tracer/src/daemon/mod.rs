//! `tracer run`: the daemon. Its pipeline, in the order a record travels:
//!
//! ```text
//! probes (kernel programs, ring buffers)
//!   -> stream::spawn_reader: records decoded into events, a bounded queue
//!   -> event_loop: the client filter (per-process attach), then the stitcher
//!   -> fan_out: printer, metrics, OTLP exporter, history writer, live hub
//!        history writer -> each stored row -> live hub
//! serve::web: the dashboard, its API, /metrics and the live feed, over the history and the hub
//! ```
//!
//! [`run`] is that in three parts: [`start`] (attach, open the database, start the sinks
//! and the dashboard, drop privileges; the report on stderr is [`report`]), the
//! [`event_loop`], and [`Daemon::shutdown`].
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

mod database;
mod event_loop;
mod fan_out;
pub mod report;
mod start;

use crate::{
    filter::{ClientFilter, FilterSpec, command::CommandHandle},
    history::{WriterHandle, retention::RetentionConfig},
    probes::{ProbeConfig, Probes},
    serve::{
        metrics::MetricsConfig,
        otlp::{OtlpConfig, OtlpHandle},
        web::LiveHub,
    },
    stitch::{StitchConfig, Stitcher},
    stream::StreamStats,
};
use database::on_runtime;
use event_loop::EventLoop;
use fan_out::FanOut;
use start::Dashboard;

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
    /// Who may use the dashboard, and over what (token files, TLS).
    pub access: AccessConfig,
    /// `--insecure-db-dir`: accept a database directory others own or may write.
    pub insecure_db_dir: bool,
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

/// The dashboard's token and transport (see `serve::web::token` and `serve::web::tls`).
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// `--token-file`.
    pub token_file: Option<PathBuf>,
    /// `TRACER_TOKEN`.
    pub token_env: Option<String>,
    /// `--metrics-token-file`: a read-only token for `GET /metrics`.
    pub metrics_token_file: Option<PathBuf>,
    /// `--tls-cert` and `--tls-key`.
    pub tls_files: Option<(PathBuf, PathBuf)>,
    /// `--plain-http-trusted-network`: plain HTTP off loopback.
    pub plain_http_trusted_network: bool,
}

/// Run until Ctrl-C/SIGTERM, or until the command of `-- COMMAND` exits. Returns the exit
/// code: 0, or the command's status.
pub async fn run(config: RunConfig) -> anyhow::Result<u8> {
    let (mut daemon, events) = start::start(&config).await?;
    let end = EventLoop {
        events,
        probes: &mut daemon.probes,
        filter: daemon.filter.as_mut(),
        stitcher: &mut daemon.stitcher,
        fan_out: &daemon.fan_out,
        stats: daemon.stats.clone(),
        health: daemon.pipeline_counters.clone(),
        command: daemon.command.take(),
        rescan: config.rescan,
    }
    .run()
    .await?;
    daemon.shutdown().await?;
    if let Some(e) = end.command_error {
        anyhow::bail!("{e}");
    }
    Ok(end.exit_code)
}

/// What a running daemon holds, from [`start`] to [`shutdown`](Daemon::shutdown).
struct Daemon {
    probes: Probes,
    filter: Option<ClientFilter>,
    stitcher: Stitcher,
    fan_out: FanOut,
    stats: Arc<StreamStats>,
    /// The health view's pipeline counters, refreshed by the event loop.
    pipeline_counters: Arc<Mutex<serde_json::Value>>,
    /// `-- COMMAND`, until the event loop takes it.
    command: Option<CommandHandle>,
    pools: crate::history::db::Pools,
    /// This run's `daemon_runs` row.
    run_id: i64,
    writer: WriterHandle,
    pruner: tokio::task::JoinHandle<()>,
    otlp: Option<OtlpHandle>,
    live: Arc<LiveHub>,
    dashboard: Dashboard,
}

impl Daemon {
    /// The dashboard first (its live streams end, then the server), then the page loads still
    /// open, the queues drained, the run recorded, the probes detached.
    async fn shutdown(self) -> anyhow::Result<()> {
        let Daemon { probes, filter, mut stitcher, fan_out, stats, pools, run_id, writer, pruner, otlp, live, dashboard, .. } = self;
        // The live streams would hold the server's graceful shutdown.
        live.shutdown();
        dashboard.stop().await;
        // Page loads still open are complete as far as this run saw them.
        for page in stitcher.finish() {
            fan_out.page_load(page);
        }
        // The senders go: the writer and the exporter drain their queues and stop.
        drop(fan_out);
        let counters = writer.join().await;
        if let Some(h) = otlp {
            let c = h.finish(Duration::from_secs(5)).await;
            eprintln!(
                "OTLP: exported {} page loads ({} spans); dropped {} (queue full) + {} (export failed)",
                c.exported_page_loads, c.exported_spans, c.dropped_queue_full, c.dropped_export_failed
            );
        }
        pruner.abort();
        let lost = probes.lost_counts().map(|c| c.iter().map(|(_, n)| n).sum()).unwrap_or(0);
        let dropped = stats.queue_dropped.load(Ordering::Relaxed) + counters.dropped;
        {
            let pool = pools.maintenance.clone();
            on_runtime(async move { crate::history::db::record_run_counters(&pool, run_id, lost, dropped).await }).await?;
        }
        eprintln!("stored {} page loads ({} dropped)", counters.written, counters.dropped);
        on_runtime(async move {
            crate::history::db::record_stop(&pools.maintenance, run_id).await?;
            pools.reader.close().await;
            pools.maintenance.close().await;
            pools.writer.close().await;
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
        Ok(())
    }
}
