//! `tracer run`: attach the probes, stream events, serve the dashboard, until Ctrl-C/SIGTERM.
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    db,
    libs::TlsLibrary,
    printer,
    probes::{ProbeConfig, ProbeStatus, Probes},
    stream::{self, StreamStats},
    web,
};

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
    pub probes: ProbeConfig,
    pub queue: usize,
    /// How often to look for TLS libraries that processes loaded since the last look.
    pub rescan: Duration,
}

pub async fn run(config: RunConfig) -> anyhow::Result<()> {
    let mut probes = Probes::load(&config.probes)?;
    let kernel = uname_release();
    eprintln!("tracer {} on kernel {kernel}", env!("CARGO_PKG_VERSION"));
    eprintln!("  {}", probes.kernel.reason);
    for w in &probes.warnings {
        eprintln!("  note: {w}");
    }
    eprint!("{}", summary(&probes.status));

    let stats = Arc::new(StreamStats::default());
    let mut events = stream::spawn_reader(&mut probes, config.queue, stats.clone())?;

    let pool = db::open(&config.db).await?;
    let probes_json = serde_json::to_string(&probes.status)?;
    let run_id = db::record_start(&pool, &kernel, &probes_json).await?;

    let state = web::AppState {
        health: Arc::new(web::Health {
            started: std::time::Instant::now(),
            db_path: config.db.clone(),
            probes: serde_json::to_value(&probes.status)?,
            kernel: serde_json::to_value(&probes.kernel)?,
            stats: stats.clone(),
        }),
    };
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
    eprintln!("dashboard: http://{}", config.listen);
    eprintln!("tracing; Ctrl-C to stop");

    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut lost_tick = tokio::time::interval(Duration::from_secs(1));
    let mut rescan_tick = tokio::time::interval(config.rescan);
    rescan_tick.tick().await; // the first tick is immediate; libraries were just scanned
    let mut last_lost: u64 = 0;
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                match config.print {
                    PrintMode::Off => {}
                    PrintMode::Text => println!("{}", printer::text_line(&ev)),
                    PrintMode::Json => println!("{}", printer::json_line(&ev)),
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
                }
                let dropped = stats.queue_dropped.load(Ordering::Relaxed);
                if dropped > 0 && lost_tick.period() == Duration::from_secs(1) {
                    tracing::debug!("{dropped} events dropped at the consumer queue");
                }
            }
            _ = rescan_tick.tick() => {
                for st in probes.attach_new_libraries() {
                    eprintln!("  new library: {} {} {}", st.point, st.target.as_ref().map(|p| p.display().to_string()).unwrap_or_default(), if st.attached { "attached".to_string() } else { format!("FAILED: {}", st.error.unwrap_or_default()) });
                }
            }
            _ = tokio::signal::ctrl_c() => { eprintln!("interrupted: detaching"); break }
            _ = sigterm.recv() => { eprintln!("terminated: detaching"); break }
        }
    }
    let _ = stop_web.send(());
    let _ = server.await;
    db::record_stop(&pool, run_id).await?;
    pool.close().await;
    drop(probes); // detaches every link
    Ok(())
}

impl Probes {
    /// Attach to TLS libraries that appeared in process maps since the last scan.
    pub fn attach_new_libraries(&mut self) -> Vec<ProbeStatus> {
        let (libs, _) = crate::libs::find_tls_libraries();
        let mut out = Vec::new();
        for lib in libs {
            if self.libraries.iter().any(|l: &TlsLibrary| l.path == lib.path) {
                continue;
            }
            out.extend(crate::probes::attach_library(&mut self.ebpf, &lib));
            self.libraries.push(lib);
        }
        let (bssl, warnings) = crate::probes::attach_boringssl(&mut self.ebpf, &mut self.boringssl_checked);
        for w in warnings {
            tracing::warn!("{w}");
        }
        out.extend(bssl);
        self.status.extend(out.iter().cloned());
        out
    }
}

/// One line per probe family: attached/total, variant, targets; failures spelled out.
pub fn summary(status: &[ProbeStatus]) -> String {
    let mut families: BTreeMap<(String, Option<PathBuf>), Vec<&ProbeStatus>> = BTreeMap::new();
    for s in status {
        families.entry((s.family.clone(), s.target.clone())).or_default().push(s);
    }
    let mut out = String::from("probes:\n");
    for ((family, target), list) in &families {
        let ok = list.iter().filter(|s| s.attached).count();
        let variants: std::collections::BTreeSet<&str> = list.iter().map(|s| s.variant).collect();
        out.push_str(&format!(
            "  {} {:<12} {:>2}/{:<2} {}{}\n",
            if ok == list.len() { "ok  " } else if ok == 0 { "FAIL" } else { "part" },
            family,
            ok,
            list.len(),
            variants.into_iter().collect::<Vec<_>>().join("+"),
            target.as_ref().map(|t| format!(" {}", t.display())).unwrap_or_default(),
        ));
        for s in list.iter().filter(|s| !s.attached) {
            out.push_str(&format!("       {} not attached: {}\n", s.point, s.error.as_deref().unwrap_or("?")));
        }
    }
    out
}

fn uname_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}
