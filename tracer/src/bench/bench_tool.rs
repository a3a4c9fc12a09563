//! `tracer bench-tool ...`: the benchmarks' workloads (a connect storm, a load worker, the
//! history seeder) run as processes of their own, so that each is a client of its own for the
//! stitcher. [`super::procs::tool_command`] starts them.
use anyhow::{Context as _, Result};

use super::{load, seed, tools};

/// `tracer bench-tool ...`: workloads run as their own processes.
#[derive(clap::Subcommand, Debug)]
pub enum ToolCommand {
    /// A bounded connect storm against a listener of its own; prints `{"connects", "secs"}`.
    Storm {
        #[arg(long)]
        count: u64,
        /// Connects per second (all threads); unpaced without it.
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// One worker of the realistic load: page loads of new TLS connections, each after a DNS
    /// lookup; prints its counts as JSON.
    LoadWorker(load::WorkerArgs),
    /// Fill a history database with synthetic page loads (benchmark 6's seeding tool).
    Seed {
        #[arg(long)]
        db: std::path::PathBuf,
        /// Page loads in the database at the end.
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        /// Of those, written through the history store (the rest are copies made in SQL).
        #[arg(long, default_value_t = 50_000)]
        ingest: u64,
        /// Most page loads per transaction [default: the daemon's writer's].
        #[arg(long)]
        batch: Option<usize>,
        /// Page loads of one request each (curl over a new TLS connection), not benchmark 6's mix.
        #[arg(long)]
        one_request: bool,
    },
}

pub fn tool_main(cmd: ToolCommand) -> Result<()> {
    match cmd {
        ToolCommand::Storm { count, rate, threads } => {
            let listener = tools::StormListener::start()?;
            let (connects, secs) = tools::connect_storm(listener.addr, count, rate, threads)?;
            drop(listener);
            println!("{}", serde_json::json!({ "connects": connects, "secs": secs }));
            Ok(())
        }
        ToolCommand::Seed { db, count, ingest, batch, one_request } => {
            let shape = if one_request { seed::Shape::OneRequest } else { seed::Shape::Mixed };
            let rt = tokio::runtime::Runtime::new().context("runtime")?;
            let r = rt.block_on(seed::seed_shaped(&db, shape, ingest.min(count), count, batch, 7))?;
            println!(
                "ingested {} page loads ({} requests) in {:.1} s ({:.1} CPU s), batches of up to {}: {:.0} page loads/s, \
                 {:.0} per CPU second; {} in the database after {:.1} s of copying",
                r.ingested,
                r.ingest_requests,
                r.ingest_secs,
                r.ingest_cpu_secs,
                r.batch,
                r.ingested as f64 / r.ingest_secs,
                r.ingested as f64 / r.ingest_cpu_secs.max(1e-9),
                r.total,
                r.grow_secs
            );
            Ok(())
        }
        ToolCommand::LoadWorker(args) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("runtime")?;
            let out = rt.block_on(load::worker(args))?;
            println!("{}", serde_json::to_string(&out)?);
            Ok(())
        }
    }
}
