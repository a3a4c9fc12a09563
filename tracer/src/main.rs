use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use tracer::{
    daemon::{self, PrintMode, RunConfig},
    probes::ProbeConfig,
};

/// Every page load on this machine, seen from the kernel: DNS, TCP, TLS, HTTP.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach the probes and trace until Ctrl-C/SIGTERM (needs root or CAP_BPF+CAP_PERFMON).
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Print every decoded event, one line each.
    #[arg(long)]
    print: bool,
    /// With --print (or alone): one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// SQLite history.
    #[arg(long, env = "TRACER_DB", default_value = "/var/lib/tracer/tracer.db")]
    db: PathBuf,
    /// Dashboard address.
    #[arg(long, env = "TRACER_LISTEN", default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// TLS plaintext bytes copied per library call (1-16384).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=16384))]
    tls_capture_bytes: u32,
    /// Ring buffer size in MiB (power of two).
    #[arg(long, default_value_t = 16, value_parser = parse_ring_mb)]
    ring_buffer_mb: u32,
    /// Do not attach the TLS library uprobes.
    #[arg(long)]
    no_tls: bool,
    /// Events queued between the ring-buffer reader and its consumers.
    #[arg(long, default_value_t = 65536)]
    queue: usize,
}

fn parse_ring_mb(s: &str) -> Result<u32, String> {
    let v: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if v == 0 || !v.is_power_of_two() || v > 1024 {
        return Err(format!("{v} is not a power of two between 1 and 1024"));
    }
    Ok(v)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Run(a) => rt.block_on(daemon::run(RunConfig {
            print: match (a.print, a.json) {
                (_, true) => PrintMode::Json,
                (true, false) => PrintMode::Text,
                (false, false) => PrintMode::Off,
            },
            db: a.db,
            listen: a.listen,
            probes: ProbeConfig {
                tls_capture_bytes: a.tls_capture_bytes,
                ring_buffer_bytes: a.ring_buffer_mb * 1024 * 1024,
                tls: !a.no_tls,
                extra_libraries: Vec::new(),
            },
            queue: a.queue,
            rescan: Duration::from_secs(10),
        })),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
