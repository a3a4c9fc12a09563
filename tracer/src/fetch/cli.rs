//! `tracer fetch URL` and `tracer lab`: argument structs and what they run.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::{FetchOptions, fetch, har, model::PageLoad, render};

/// `tracer fetch`: load a URL like a browser and show every phase.
#[derive(clap::Args, Debug, Clone)]
pub struct FetchArgs {
    /// What you would type into the address bar (`shop.test`, `https://www.shop.test/a b`).
    pub url: String,
    /// Load the page: also fetch its images, scripts and stylesheets (at most 6 connections
    /// per host).
    #[arg(long)]
    pub page: bool,
    /// Print HAR 1.2 JSON instead of the waterfall.
    #[arg(long)]
    pub json: bool,
    /// Trust only the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Do not verify certificates (the chain is still shown).
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// Offer only HTTP/1.1 in ALPN (default: h2 and http/1.1).
    #[arg(long = "http1.1")]
    pub http1_1: bool,
    /// Do not follow redirects.
    #[arg(long)]
    pub no_follow: bool,
    /// Most redirects followed.
    #[arg(long, default_value_t = 20)]
    pub max_redirects: u32,
    /// Most connections per host.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_per_host: u32,
    /// Ask this DNS server (ip:port, repeatable) instead of those in /etc/resolv.conf.
    #[arg(long = "dns-server", value_name = "ADDR")]
    pub dns_servers: Vec<SocketAddr>,
    /// Seconds allowed per connect attempt and for the TLS handshake.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Seconds allowed for waiting for a connection, the response head, and the body.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Send this header with every request (`-H 'Authorization: Bearer ...'`, repeatable).
    /// Recorded like the daemon records headers: credentials are never printed or stored.
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Store the load as a baseline for its URL in the daemon's database (e.g.
    /// /var/lib/tracer/tracer.db).
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s.split_once(':').ok_or("a header is 'Name: value'")?;
    let name = name.trim();
    hyper::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a header name"))?;
    let value = value.trim();
    hyper::header::HeaderValue::from_str(value).map_err(|_| format!("the value of {name} is not a valid header value"))?;
    if name.starts_with(':') || ["host", "content-length", "transfer-encoding", "connection"].contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("{name} is set by the fetcher itself"));
    }
    Ok((name.to_ascii_lowercase(), value.to_string()))
}

fn secs(v: f64, what: &str) -> Result<Duration, String> {
    if v.is_finite() && v > 0.0 && v <= 3600.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("--{what} must be between 0 and 3600 seconds"))
    }
}

impl FetchArgs {
    pub fn options(&self) -> Result<FetchOptions, String> {
        Ok(FetchOptions {
            page: self.page,
            follow_redirects: !self.no_follow,
            max_redirects: self.max_redirects,
            max_connections_per_host: self.max_per_host as usize,
            nameservers: (!self.dns_servers.is_empty()).then(|| self.dns_servers.clone()),
            connect_timeout: secs(self.connect_timeout, "connect-timeout")?,
            timeout: secs(self.timeout, "timeout")?,
            cacert: self.cacert.clone(),
            insecure: self.insecure,
            http1_only: self.http1_1,
            extra_headers: self.headers.clone(),
            ..FetchOptions::default()
        })
    }
}

/// Runs `tracer fetch`. Exit codes: 0 loaded (whatever the HTTP status), 1 a phase failed
/// (DNS, connect, TLS, HTTP) or the baseline could not be stored, 2 invalid URL or usage.
/// With `--db`, `store_baseline` stores the load in that database and returns its row id (the
/// history does it: the fetcher stands beside the pipeline and imports none of it).
pub fn fetch_main(
    rt: &tokio::runtime::Runtime,
    args: FetchArgs,
    store_baseline: impl FnOnce(&std::path::Path, &PageLoad) -> anyhow::Result<i64>,
) -> ExitCode {
    let opts = match args.options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let load = match rt.block_on(fetch(&args.url, &opts)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let mut out = std::io::stdout().lock();
    let printed = if args.json {
        serde_json::to_string_pretty(&har::to_har(&load))
            .map_err(std::io::Error::other)
            .and_then(|j| writeln!(out, "{j}"))
    } else {
        write!(out, "{}", render::waterfall(&load))
    };
    drop(out);
    if let Err(e) = printed
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: writing the output: {e}");
    }
    let mut code = 0u8;
    if let Some(db) = &args.db {
        match store_baseline(db, &load) {
            Ok(id) => eprintln!("stored baseline {id} for {} in {}", load.url, db.display()),
            Err(e) => {
                eprintln!("error: {e:#}");
                code = 1;
            }
        }
    }
    if load.failed() {
        // Like a browser's error page: the code, and what failed.
        let failures: Vec<_> = load
            .entries
            .iter()
            .filter_map(|e| e.failure.as_ref().map(|f| (e.url.clone(), f.clone())))
            .chain(
                load.error
                    .iter()
                    .filter(|f| !load.entries.iter().any(|e| e.failure.as_ref() == Some(f)))
                    .map(|f| (load.final_url.clone(), f.clone())),
            )
            .collect();
        for (url, f) in failures {
            eprintln!("{}: {} failed for {url}: {}", f.code, f.phase, f.detail.as_deref().unwrap_or_default());
        }
        code = 1;
    }
    ExitCode::from(code)
}

/// `tracer lab`: the test lab, for trying clients by hand (needs root).
#[derive(clap::Args, Debug, Clone)]
pub struct LabArgs {
    /// Delay before each DNS answer, in ms.
    #[arg(long, default_value_t = 0)]
    pub dns_delay_ms: u64,
    /// Server think time before each response head, in ms.
    #[arg(long, default_value_t = 0)]
    pub think_ms: u64,
    /// Response body rate in bytes per second (default: unthrottled).
    #[arg(long)]
    pub throttle_bps: Option<u64>,
    /// TTL of the lab's DNS records, in seconds.
    #[arg(long, default_value_t = 60)]
    pub dns_ttl: u32,
    /// Answer AAAA queries and listen on the hosts' IPv6 addresses too.
    #[arg(long)]
    pub ipv6: bool,
}

/// Runs `tracer lab` until Ctrl-C or SIGTERM, then removes the lab.
pub fn lab_main(rt: &tokio::runtime::Runtime, args: LabArgs) -> ExitCode {
    use crate::lab::{Lab, LabConfig, hosts};
    let config = LabConfig {
        dns_delay: Duration::from_millis(args.dns_delay_ms),
        dns_ttl: args.dns_ttl,
        ipv6: args.ipv6,
        think_time: Duration::from_millis(args.think_ms),
        body_bytes_per_sec: args.throttle_bps.filter(|b| *b > 0),
    };
    let result = rt.block_on(async move {
        let lab = Lab::start(config).await?;
        let ns = lab.netns_name().to_owned();
        let ca = lab.ca_pem_path().display().to_string();
        let me = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "tracer".into());
        let mut s = String::new();
        use std::fmt::Write as _;
        let _ = writeln!(s, "tracer lab is up.");
        let _ = writeln!(s, "  network namespace: {ns}");
        let _ = writeln!(s, "  CA certificate:    {ca}");
        let _ = writeln!(s, "  DNS server:        {} (and {}:53) in the namespace", lab.dns_server(), hosts::DNS);
        let _ = writeln!(
            s,
            "  settings:          dns delay {} ms, think time {} ms, throttle {}, ttl {} s, ipv6 {}",
            args.dns_delay_ms,
            args.think_ms,
            args.throttle_bps.map_or("off".to_owned(), |b| format!("{b} B/s")),
            args.dns_ttl,
            if args.ipv6 { "on" } else { "off" }
        );
        let _ = writeln!(s, "Names:");
        for (name, what) in [
            (hosts::SHOP, "http :80 and https :443 -> 301 https://www.shop.test/"),
            (hosts::WWW, "CNAME edge.cdn.test; https :443: the page, /echo, /bytes/N, /status/N, /stall"),
            (hosts::EDGE, "https :443 (HTTP/1.1 and HTTP/2)"),
            (hosts::STATIC, "https :443: /app.css, /app.js, /logo.png"),
            (hosts::REFUSED, "resolves, nothing listens (connection refused)"),
            (hosts::BADCERT, "https :443 with a certificate the lab CA did not sign"),
            (hosts::BLACKHOLE, "resolves, SYNs are dropped (connect times out)"),
            (hosts::SILENT, "the DNS server never answers (lookup times out)"),
            ("nope.shop.test", "NXDOMAIN"),
        ] {
            let addr = lab.addr_of(name).map_or("-".to_owned(), |a| a.to_string());
            let _ = writeln!(s, "  {name:<19} {addr:<10} {what}");
        }
        let _ = writeln!(s, "Try:");
        let _ = writeln!(s, "  ip netns exec {ns} curl --cacert {ca} https://www.shop.test/");
        let _ = writeln!(s, "  ip netns exec {ns} {me} fetch --cacert {ca} --page http://shop.test/");
        let _ = writeln!(s, "  ip netns exec {ns} getent ahosts www.shop.test");
        let _ = writeln!(s, "Ctrl-C or SIGTERM stops the lab and removes the namespace.");
        print!("{s}");
        let _ = std::io::stdout().flush();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
        drop(lab);
        eprintln!("tracer lab stopped; namespace {ns} removed");
        anyhow::Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
