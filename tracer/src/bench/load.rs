//! The realistic load: page loads made of requests that each look up a name (UDP DNS on
//! port 53) and open a new TLS connection (rustls, with its plaintext through the fetcher's
//! probe points, so that the daemon traces it like a library client). Several worker
//! processes share a total rate; each does page loads of `page_requests` requests and then
//! stays quiet longer than the daemon's quiet window, so that each burst is one page load.
use std::{
    net::SocketAddr,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::procs::tool_command;
use super::tools::{dns_first_a, dns_query};
use crate::fetch::probe_points::{TlsObject, Traced};

#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// The DNS server (port 53).
    #[arg(long)]
    pub dns: SocketAddr,
    /// The HTTPS port on 127.0.0.1 (the name `bench.test` resolves there).
    #[arg(long)]
    pub port: u16,
    /// How long to run.
    #[arg(long)]
    pub secs: f64,
    /// Requests per page load.
    #[arg(long, default_value_t = 20)]
    pub page_requests: u32,
    /// Gap between the starts of two requests of a page load.
    #[arg(long, default_value_t = 2000)]
    pub interval_us: u64,
    /// Quiet time after each page load (longer than the daemon's 500 ms quiet window).
    #[arg(long, default_value_t = 600)]
    pub gap_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerCounts {
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    pub page_loads: u64,
    pub secs: f64,
    /// Unix ms of the last byte of each page load's last response.
    pub page_ends_ms: Vec<i64>,
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>> {
    // nginx's throw-away certificate on loopback: no verification, and no session
    // resumption, so that every connection pays a full handshake.
    let setup = crate::fetch::tls::TlsSetup::new(None, true, true).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (config, _) = setup.client_config().context("TLS client config")?;
    let mut config = (*config).clone();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

async fn one_request(dns: SocketAddr, port: u16, tls: Arc<rustls::ClientConfig>, id: u16) -> Result<()> {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    udp.connect(dns).await?;
    udp.send(&dns_query(id, "bench.test")).await?;
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(2), udp.recv(&mut buf)).await.context("DNS timeout")??;
    drop(udp);
    let ip = dns_first_a(&buf[..n]).context("no A record")?;
    let tcp = tokio::net::TcpStream::connect((ip, port)).await?;
    tcp.set_nodelay(true)?;
    let obj = TlsObject::new(tcp.as_raw_fd());
    obj.handshake_started();
    let name = rustls::pki_types::ServerName::try_from("bench.test")?;
    let stream = match tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await {
        Ok(s) => {
            obj.handshake_done();
            s
        }
        Err(e) => {
            obj.handshake_failed();
            return Err(e.into());
        }
    };
    let mut s = Traced::new(stream, obj);
    s.write_all(b"GET / HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: tracer-bench\r\nConnection: close\r\n\r\n").await?;
    let mut body = Vec::with_capacity(512);
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut body)).await.context("response timeout")??;
    if !body.starts_with(b"HTTP/1.1 200") {
        bail!("unexpected answer {:?}", String::from_utf8_lossy(&body[..body.len().min(40)]));
    }
    Ok(())
}

/// One worker process's loop.
pub async fn worker(args: WorkerArgs) -> Result<WorkerCounts> {
    let tls = tls_config()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.secs);
    let mut out = WorkerCounts::default();
    let mut id: u16 = 0;
    while Instant::now() < deadline {
        let mut tasks = tokio::task::JoinSet::new();
        let page_start = Instant::now();
        for i in 0..args.page_requests {
            let due = page_start + Duration::from_micros(args.interval_us * u64::from(i));
            tokio::time::sleep_until(due.into()).await;
            id = id.wrapping_add(1);
            tasks.spawn(one_request(args.dns, args.port, tls.clone(), id));
        }
        while let Some(r) = tasks.join_next().await {
            out.requests += 1;
            match r {
                Ok(Ok(())) => out.ok += 1,
                _ => out.failed += 1,
            }
        }
        out.page_loads += 1;
        out.page_ends_ms.push(crate::clock::now_unix_ms());
        tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
    }
    out.secs = start.elapsed().as_secs_f64();
    Ok(out)
}

/// The whole load: enough workers for `rate` requests/s, run for `secs`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadResult {
    pub workers: usize,
    /// The workers' counts together; `secs` is the longest worker's.
    pub counts: WorkerCounts,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.counts.requests as f64 / self.counts.secs.max(1e-9)
    }
}

impl WorkerCounts {
    /// Adds another worker's counts (the workers run side by side: the time is the longest).
    fn absorb(&mut self, c: WorkerCounts) {
        self.requests += c.requests;
        self.ok += c.ok;
        self.failed += c.failed;
        self.page_loads += c.page_loads;
        self.secs = self.secs.max(c.secs);
        self.page_ends_ms.extend(c.page_ends_ms);
    }
}

/// Workers needed for `rate` requests/s: each does `page_requests` per (burst + gap).
pub fn workers_for(rate: f64, page_requests: u32, interval_us: u64, gap_ms: u64) -> usize {
    // A request itself takes ~1-3 ms on loopback; the cycle is the burst, its tail, the gap.
    let cycle_s = (f64::from(page_requests) * interval_us as f64 / 1e6) + 0.005 + gap_ms as f64 / 1e3;
    let per_worker = f64::from(page_requests) / cycle_s;
    ((rate / per_worker).ceil() as usize).max(1)
}

pub fn run_load(exe: &Path, dns: SocketAddr, port: u16, rate: f64, secs: f64, dir: &Path) -> Result<LoadResult> {
    let (page_requests, interval_us, gap_ms) = (20u32, 2000u64, 600u64);
    let workers = workers_for(rate, page_requests, interval_us, gap_ms);
    let mut children = Vec::new();
    for w in 0..workers {
        let args: Vec<String> = vec![
            "load-worker".into(),
            "--dns".into(),
            dns.to_string(),
            "--port".into(),
            port.to_string(),
            "--secs".into(),
            format!("{secs}"),
            "--page-requests".into(),
            page_requests.to_string(),
            "--interval-us".into(),
            interval_us.to_string(),
            "--gap-ms".into(),
            gap_ms.to_string(),
        ];
        let err: PathBuf = dir.join(format!("load-worker-{w}.err"));
        let child = tool_command(exe, &args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err)?)
            .spawn()
            .context("starting a load worker")?;
        children.push((child, err));
        // Spread the workers' bursts over one cycle.
        std::thread::sleep(Duration::from_millis((gap_ms + 40) / workers as u64));
    }
    let mut total = LoadResult { workers, ..Default::default() };
    for (child, err) in children {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("a load worker failed ({}): {}", out.status, std::fs::read_to_string(&err).unwrap_or_default());
        }
        let c: WorkerCounts = serde_json::from_slice(&out.stdout).context("a load worker's counts")?;
        total.counts.absorb(c);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_count_covers_the_rate() {
        // 20 requests per 0.645 s cycle: ~31 requests/s per worker.
        assert_eq!(workers_for(1000.0, 20, 2000, 600), 33);
        assert_eq!(workers_for(10.0, 20, 2000, 600), 1);
        assert!(workers_for(2000.0, 20, 2000, 600) > workers_for(1000.0, 20, 2000, 600));
    }
}
