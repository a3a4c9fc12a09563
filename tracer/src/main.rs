use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use tracer::{
    daemon::{self, PrintMode, RunConfig},
    filter::FilterSpec,
    fetch::{
        self,
        cli::{FetchArgs, LabArgs},
    },
    history,
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
    Run(Box<RunArgs>),
    /// List stored page loads, newest first (filters: --host, --url, --process, --status, --since).
    History(history::cli::HistoryArgs),
    /// One page load: request waterfall, redirect chain, DNS lookups, connections and TLS.
    Show(history::cli::ShowArgs),
    /// Export page loads as HAR 1.2 (`export --har ID` or `export --last N`).
    Export(history::cli::ExportArgs),
    /// A page load next to the latest baseline (`tracer fetch`) of its URL, phase by phase.
    Compare(history::cli::CompareArgs),
    /// Load a URL like a browser, timing DNS, TCP, TLS and HTTP (the reference fetcher).
    Fetch(FetchArgs),
    /// Start the test lab (network namespace, DNS, origins) until Ctrl-C (needs root).
    Lab(LabArgs),
    /// The benchmarks (run them with `cargo xtask bench`).
    #[command(hide = true)]
    Bench(tracer::bench::BenchArgs),
    /// Workloads of the benchmarks, run as processes of their own.
    #[command(hide = true, subcommand)]
    BenchTool(tracer::bench::bench_tool::ToolCommand),
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
    /// Not accepted: a token on the command line is readable by every user in
    /// /proc/PID/cmdline. Use --token-file or TRACER_TOKEN.
    #[arg(long, hide = true)]
    token: Option<String>,
    /// The dashboard's token (16-256 characters), read from this file (owned by root, mode
    /// 0600). Without it: TRACER_TOKEN, else the file `token` beside the database, generated
    /// at the first start. Every route asks for it, loopback included.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// A second, read-only token that opens GET /metrics only (for Prometheus), read from this
    /// file (not a symlink, writable and readable by no one but its owner and group).
    #[arg(long, value_name = "PATH")]
    metrics_token_file: Option<PathBuf>,
    /// The dashboard's TLS certificate (PEM, chain first), with --tls-key. Off loopback
    /// without it, a self-signed one is generated beside the database and its SHA-256
    /// fingerprint printed.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM; mode 0600).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a --listen address off loopback: only on a network you trust, the
    /// token and the history cross it in clear.
    #[arg(long, conflicts_with = "tls_cert")]
    plain_http_trusted_network: bool,
    /// Accept a database directory that another user owns or that group or others may write
    /// (symlinks are refused all the same).
    #[arg(long)]
    insecure_db_dir: bool,
    /// TLS plaintext bytes copied per library call (1-16384; default 4096, 16384 with
    /// --capture-bodies).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=16384))]
    tls_capture_bytes: Option<u32>,
    /// Store HTTP request and response bodies, at most LIMIT bytes of each (default 64k;
    /// e.g. 4096, 16k, 1m; at most 1m). Bodies hold passwords, tokens and personal data:
    /// without this flag no body byte is ever stored.
    #[arg(long, value_name = "LIMIT", num_args = 0..=1, default_missing_value = "64k", value_parser = parse_body_limit)]
    capture_bodies: Option<usize>,
    /// Ring buffer size in MiB (power of two).
    #[arg(long, default_value_t = 16, value_parser = parse_ring_mb)]
    ring_buffer_mb: u32,
    /// Do not attach the TLS library uprobes.
    #[arg(long)]
    no_tls: bool,
    /// Events queued between the ring-buffer reader and its consumers.
    #[arg(long, default_value_t = 65536)]
    queue: usize,
    /// A page load ends after its client has been network-idle this long.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    quiet_ms: u64,
    /// A redirect response holds its page load open this long for the client to follow it
    /// (a browser may pause seconds between a 301 and its next lookup); 0: only the quiet
    /// window applies.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    redirect_hold_ms: u64,
    /// A page load holding this many requests (failed entries included), connections or
    /// lookups is closed and stored marked as cut, even while its client is still busy; the
    /// client's next work opens a new one.
    #[arg(long, env = "TRACER_PAGE_MAX_REQUESTS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    page_max_requests: u64,
    /// A page load open this long (e.g. 5m, 90s) is closed and stored marked as cut.
    #[arg(long, env = "TRACER_PAGE_MAX_AGE", default_value = "5m", value_parser = parse_page_max_age)]
    page_max_age: Duration,
    /// Most page loads open at once: beyond it the oldest is closed and stored marked as cut.
    #[arg(long, env = "TRACER_MAX_OPEN_PAGES", default_value_t = 1_024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_open_pages: u64,
    /// Most connections held: beyond it the oldest is forgotten, after the open page load
    /// holding it is closed and stored marked as cut.
    #[arg(long, env = "TRACER_MAX_CONNECTIONS", default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Most DNS lookups held (pending, and answered ones that connections are joined to):
    /// beyond it the oldest is forgotten, after the open page load holding it is closed and
    /// stored marked as cut.
    #[arg(long, env = "TRACER_MAX_LOOKUPS", default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_lookups: u64,
    /// Most captured plaintext (URLs, headers, bodies) the open page loads hold (e.g. 64m,
    /// 512k): beyond it the oldest holding any is closed and stored marked as cut.
    #[arg(long, env = "TRACER_MAX_CAPTURED_BYTES", default_value = "64m", value_parser = parse_captured_bytes)]
    max_captured_bytes: u64,
    /// Delete page loads older than this (e.g. 30d, 12h); 0 keeps everything.
    #[arg(long, default_value = tracer::history::retention::DEFAULT_RETAIN, value_parser = parse_retain)]
    retain: Retain,
    /// Keep at most this many page loads (the newest).
    #[arg(long)]
    max_page_loads: Option<u64>,
    /// Trace only this process and its descendants (current and future). TLS uprobes are
    /// then attached into the traced processes only.
    #[arg(long, value_name = "PID", conflicts_with_all = ["comm", "command"])]
    pid: Option<u32>,
    /// Trace only processes with this name (comm, first 15 bytes; e.g. firefox-esr), those
    /// running now and those that exec it later, and their descendants.
    #[arg(long, value_name = "NAME", conflicts_with = "command", value_parser = parse_comm)]
    comm: Option<String>,
    /// With a filter: see connects, DNS and plain HTTP for every process as without a filter
    /// (at the socket layer on 6.3+, else at the syscall tracepoints) instead of at libc in the
    /// traced processes. Then nothing of a process that `--comm` catches at its exec is missed
    /// before its uprobes are in; on kernels without the socket-layer hooks every system call
    /// of every process takes the kernel's tracing slow path (an untraced busy server slows
    /// down; benchmark 4).
    #[arg(long)]
    syscall_tracepoints: bool,
    /// With a filter: do not expedite RCU grace periods (/sys/kernel/rcu_expedited) while a
    /// process's uprobes are opened. Then the first of them waits for a normal grace period
    /// (13-15 ms measured here, against 0.2-1.6 ms), and a short-lived program that `--comm`
    /// catches at its exec can finish its DNS and TLS calls before its uprobes are in.
    #[arg(long)]
    no_expedited_attach: bool,
    /// Use this variant for a probe family instead of the one chosen for this kernel
    /// (repeatable), e.g. `tcp_state=kprobe`; the start-up report lists each family's
    /// variants. A variant this kernel cannot run is an error.
    #[arg(long = "probe-variant", value_name = "FAMILY=VARIANT", value_parser = tracer::probes::variants::parse_forced)]
    probe_variant: Vec<(String, String)>,
    /// Export every page load as an OpenTelemetry trace to this collector: OTLP over HTTP
    /// (protobuf), POST to URL/v1/traces (a URL ending in /v1/traces is used as it is),
    /// e.g. http://127.0.0.1:4318.
    #[arg(long, env = "TRACER_OTLP_ENDPOINT", value_name = "URL", value_parser = parse_otlp_endpoint)]
    otlp_endpoint: Option<url::Url>,
    /// Page loads waiting for OTLP export; more are dropped (counted in /metrics) while the
    /// collector is slow or down.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    otlp_queue: u64,
    /// A header sent with every OTLP export, e.g. an API key: NAME=VALUE, repeatable. The env
    /// form is a comma-separated list (as OTEL_EXPORTER_OTLP_HEADERS), values %-encoded.
    /// Values are never logged or shown.
    /// (Parsed after clap, which would echo a rejected value: [`otlp_headers`].)
    #[arg(long = "otlp-header", env = "TRACER_OTLP_HEADERS", hide_env_values = true, value_name = "NAME=VALUE",
          value_delimiter = ',', requires = "otlp_endpoint")]
    otlp_headers: Vec<String>,
    /// Compress OTLP exports: gzip (Content-Encoding: gzip) or none.
    #[arg(long, value_enum, default_value_t = OtlpCompression::None, requires = "otlp_endpoint")]
    otlp_compression: OtlpCompression,
    /// Most distinct `host` label values in /metrics (the busiest in the history first);
    /// other hosts are counted as `other`.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    metrics_max_hosts: u64,
    /// Most distinct `client` label values in /metrics; other clients are `other`.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    metrics_max_clients: u64,
    /// `tracer run [OPTIONS] -- COMMAND ARGS`: start COMMAND once the probes are attached,
    /// trace only it and its descendants, and stop when it exits (with its exit status).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OtlpCompression {
    None,
    Gzip,
}

/// Largest `--capture-bodies` limit: every open exchange may hold this much per direction.
const MAX_BODY_LIMIT: usize = 1024 * 1024;

/// `4096`, `16k`, `1m`, `1g` (binary units) -> bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, unit) = match t.strip_suffix(['k', 'm', 'g']) {
        Some(n) => (n, 1024u64.pow(if t.ends_with('k') { 1 } else if t.ends_with('m') { 2 } else { 3 })),
        None => (t.as_str(), 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (e.g. 4096, 16k, 1m)"))?;
    n.checked_mul(unit).ok_or_else(|| format!("{s:?} is too large"))
}

/// A `--capture-bodies` limit: 1 ..= 1 MiB.
fn parse_body_limit(s: &str) -> Result<usize, String> {
    match parse_size(s) {
        Ok(b) if (1..=MAX_BODY_LIMIT as u64).contains(&b) => Ok(b as usize),
        Ok(_) | Err(_) => Err(format!("{s:?}: the body limit is 1 byte to 1m")),
    }
}

/// `--retain`: a duration, or 0 for none.
#[derive(Clone, Debug)]
struct Retain(Option<Duration>);

fn parse_retain(s: &str) -> Result<Retain, String> {
    tracer::history::retention::parse_retain_flag(s).map(Retain)
}

/// `--max-captured-bytes`: 64k ..= 64g (less could not hold one page load's headers).
fn parse_captured_bytes(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        b if (64 * 1024..=64 << 30).contains(&b) => Ok(b),
        _ => Err(format!("{s:?}: the captured-bytes cap is 64k to 64g")),
    }
}

/// `--page-max-age`: a duration of at least a second.
fn parse_page_max_age(s: &str) -> Result<Duration, String> {
    let d = tracer::history::parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("invalid page age {s:?}: must be at least 1s"));
    }
    Ok(d)
}

fn parse_comm(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains('\0') {
        return Err("a process name is 1-15 bytes without NUL".into());
    }
    Ok(s.to_string())
}

fn parse_otlp_endpoint(s: &str) -> Result<url::Url, String> {
    tracer::serve::otlp::traces_url(s).map_err(|e| match e {
        tracer::serve::otlp::OtlpError::Endpoint { reason, .. } => reason,
        other => other.to_string(),
    })
}

/// `--otlp-header` values as headers. A bad one is a usage error that names the header but,
/// unlike clap's own errors, does not echo the value: it may be a credential.
fn otlp_headers(args: &[String]) -> Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)> {
    args.iter()
        .map(|a| {
            tracer::serve::otlp::parse_header(a).unwrap_or_else(|e| {
                use clap::CommandFactory as _;
                Cli::command().error(clap::error::ErrorKind::ValueValidation, format!("invalid --otlp-header: {e}")).exit()
            })
        })
        .collect()
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
    if matches!(cli.command, Command::Run(_)) {
        // Before anything is created: the database, its -wal/-shm, the token file, the TLS key
        // are the daemon's alone, whatever umask it was started with.
        // SAFETY: umask(2) cannot fail.
        unsafe { libc::umask(0o077) };
    }
    // `run`: the runtime's threads (dashboard, history writer, fetcher ...) hold no
    // capability; only the main thread, which attaches the probes, does (tracer::privileges).
    let rt = match &cli.command {
        Command::Run(_) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .on_thread_start(|| {
                // Fail closed: a thread that serves the network must not keep root's rights.
                if let Err(e) = tracer::privileges::drop_all_on_this_thread() {
                    eprintln!("error: a runtime thread could not drop its capabilities: {e}; stopping");
                    std::process::exit(1);
                }
            })
            .build(),
        _ => tokio::runtime::Runtime::new(),
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Run(a) => {
            let a = *a;
            if a.token.is_some() {
                eprintln!("error: --token is not accepted: every user can read a command line (/proc/PID/cmdline); put the token in a file (--token-file, mode 0600) or in TRACER_TOKEN");
                return ExitCode::from(2);
            }
            let filter = match (a.pid, a.comm, a.command.is_empty()) {
                (Some(p), _, _) => Some(FilterSpec::Pid(p)),
                (None, Some(c), _) => Some(FilterSpec::Comm(c)),
                (None, None, false) => Some(FilterSpec::Command(a.command)),
                (None, None, true) => None,
            };
            if a.no_expedited_attach && filter.is_none() {
                eprintln!("error: --no-expedited-attach goes with a client filter (--pid, --comm or -- COMMAND): without one nothing is attached per process");
                return ExitCode::from(2);
            }
            if a.syscall_tracepoints && filter.is_none() {
                eprintln!("error: --syscall-tracepoints goes with a client filter (--pid, --comm or -- COMMAND): without one they are always used");
                return ExitCode::from(2);
            }
            let config = RunConfig {
                print: match (a.print, a.json) {
                    (_, true) => PrintMode::Json,
                    (true, false) => PrintMode::Text,
                    (false, false) => PrintMode::Off,
                },
                db: a.db,
                listen: a.listen,
                access: daemon::AccessConfig {
                    token_file: a.token_file,
                    token_env: std::env::var("TRACER_TOKEN").ok(),
                    metrics_token_file: a.metrics_token_file,
                    tls_files: a.tls_cert.zip(a.tls_key),
                    plain_http_trusted_network: a.plain_http_trusted_network,
                },
                insecure_db_dir: a.insecure_db_dir,
                probes: ProbeConfig {
                    // Bodies need whole reads: the most the probes copy per call.
                    tls_capture_bytes: a.tls_capture_bytes.unwrap_or(if a.capture_bodies.is_some() {
                        tracer_common::TLS_CAPTURE_MAX as u32
                    } else {
                        tracer_common::TLS_CAPTURE_DEFAULT as u32
                    }),
                    ring_buffer_bytes: a.ring_buffer_mb * 1024 * 1024,
                    tls: !a.no_tls,
                    extra_libraries: Vec::new(),
                    filter: tracer::probes::KernelFilter {
                        syscall_tracepoints: a.syscall_tracepoints,
                        no_expedited_attach: a.no_expedited_attach,
                        ..Default::default()
                    },
                    variants: a.probe_variant.into_iter().collect(),
                    layout_override: Default::default(),
                },
                queue: a.queue,
                rescan: Duration::from_secs(10),
                stitch: tracer::stitch::StitchConfig {
                    quiet_ns: a.quiet_ms * 1_000_000,
                    redirect_hold_ns: a.redirect_hold_ms * 1_000_000,
                    body_limit: a.capture_bodies.unwrap_or(0),
                    page_max_requests: a.page_max_requests as usize,
                    page_max_age_ns: u64::try_from(a.page_max_age.as_nanos()).unwrap_or(u64::MAX),
                    max_open_pages: a.max_open_pages as usize,
                    max_connections: a.max_connections as usize,
                    max_lookups: a.max_lookups as usize,
                    max_captured_bytes: a.max_captured_bytes,
                    ..Default::default()
                },
                retention: tracer::history::retention::RetentionConfig { retain: a.retain.0, max_page_loads: a.max_page_loads },
                filter,
                metrics: tracer::serve::metrics::MetricsConfig {
                    max_hosts: a.metrics_max_hosts as usize,
                    max_clients: a.metrics_max_clients as usize,
                },
                otlp: a.otlp_endpoint.map(|url| tracer::serve::otlp::OtlpConfig {
                    queue: a.otlp_queue as usize,
                    headers: otlp_headers(&a.otlp_headers),
                    gzip: a.otlp_compression == OtlpCompression::Gzip,
                    ..tracer::serve::otlp::OtlpConfig::new(url)
                }),
            };
            match rt.block_on(daemon::run(config)) {
                // 0, or the exit status of the command of `-- COMMAND`.
                Ok(code) => return ExitCode::from(code),
                Err(e) => Err(e),
            }
        }
        Command::History(a) => rt.block_on(history::cli::history(a)),
        Command::Show(a) => rt.block_on(history::cli::show(a)),
        Command::Export(a) => rt.block_on(history::cli::export(a)),
        Command::Compare(a) => rt.block_on(history::cli::compare(a)),
        Command::Fetch(a) => {
            return fetch::cli::fetch_main(&rt, a, |db, load| rt.block_on(history::baselines::store_in(db, load)));
        }
        Command::Lab(a) => return fetch::cli::lab_main(&rt, a),
        // Both build their own runtimes (the benchmarks block on child processes).
        Command::Bench(a) => {
            drop(rt);
            tracer::bench::main(a)
        }
        Command::BenchTool(t) => {
            drop(rt);
            tracer::bench::bench_tool::tool_main(t)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_body_limit, parse_captured_bytes, parse_page_max_age};

    #[test]
    fn body_limits_take_units_and_are_bounded() {
        assert_eq!(parse_body_limit("4096"), Ok(4096));
        assert_eq!(parse_body_limit("16k"), Ok(16 * 1024));
        assert_eq!(parse_body_limit("1M"), Ok(1024 * 1024));
        for bad in ["0", "2m", "1025k", "k", "-1", "ten", "99999999999999999999k"] {
            let err = parse_body_limit(bad).expect_err(bad);
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn cap_values_are_checked() {
        assert_eq!(parse_captured_bytes("64m"), Ok(64 << 20));
        assert_eq!(parse_captured_bytes("1G"), Ok(1 << 30));
        for bad in ["1k", "65g", "lots", "99999999999g"] {
            let err = parse_captured_bytes(bad).expect_err(bad);
            assert!(err.contains(bad), "{bad}: {err}");
        }
        assert_eq!(parse_page_max_age("5m"), Ok(std::time::Duration::from_secs(300)));
        for bad in ["0s", "5", "5 minutes"] {
            let err = parse_page_max_age(bad).expect_err(bad);
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
