//! Network namespace plumbing: create / delete the lab namespace, enter it from a thread, run
//! the servers on a dedicated thread inside it, and clean up after dead processes.

use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{LabConfig, LabStats, hosts};

pub(crate) const NAME_PREFIX: &str = "tracer-lab-";
pub(crate) const NETNS_RUN_DIR: &str = "/run/netns";
const NETNS_ETC_DIR: &str = "/etc/netns";
/// Longest any `ip` invocation may take.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `ip` with `args` (and optional stdin), bounded in time; fails with its stderr.
fn ip(args: &[&str], stdin: Option<&str>) -> Result<()> {
    run_bounded(Command::new("ip").args(args), stdin, "`ip` (package iproute2)")
}

/// Runs `cmd` (with optional stdin), bounded in time; fails with its stderr. `what` names the
/// program in errors.
fn run_bounded(cmd: &mut Command, stdin: Option<&str>, what: &str) -> Result<()> {
    let args: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {what}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .with_context(|| format!("writing to {what}"))?;
    }
    let deadline = Instant::now() + IP_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{}` did not finish within {IP_TIMEOUT:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read as _;
            let _ = e.read_to_string(&mut err);
        }
        bail!("`{}` failed ({status}): {}", args.join(" "), err.trim());
    }
    Ok(())
}

/// The lab's network namespace and its `/etc/netns/<name>/` directory; deleted on drop.
pub(crate) struct Namespace {
    name: String,
}

impl Namespace {
    pub(crate) fn create(name: &str) -> Result<Namespace> {
        ip(&["netns", "add", name], None).context("creating the lab network namespace")?;
        // From here on, Drop removes whatever exists.
        let ns = Namespace {
            name: name.to_owned(),
        };

        let mut batch = String::from("link set lo up\n");
        for n in hosts::FIRST_HOST..=hosts::LAST_HOST {
            batch.push_str(&format!("addr add 10.77.0.{n}/32 dev lo\n"));
            // Always: with a non-loopback IPv6 address present, glibc's getaddrinfo
            // (AI_ADDRCONFIG) asks for AAAA next to A, as it does on an ordinary machine.
            let v6 = hosts::v6_of(std::net::Ipv4Addr::new(10, 77, 0, n));
            batch.push_str(&format!("addr add {v6}/128 dev lo nodad\n"));
        }
        // The black hole: routed into loopback but not a local address. With forwarding off
        // (the default) the kernel drops what arrives for it without an ICMP error, so a
        // connect to it stays in SYN_SENT until the client or the SYN retries give up.
        batch.push_str(&format!("route add {}/32 dev lo\n", hosts::BLACKHOLE_ADDR));
        ip(&["-n", name, "-batch", "-"], Some(&batch))
            .context("configuring the lab namespace's loopback")?;

        let etc = Path::new(NETNS_ETC_DIR).join(name);
        std::fs::create_dir_all(&etc).with_context(|| format!("creating {}", etc.display()))?;
        std::fs::write(
            etc.join("resolv.conf"),
            "# tracer lab: the lab DNS server inside this namespace\n\
             nameserver 127.0.0.1\n\
             options timeout:1 attempts:2\n",
        )
        .with_context(|| format!("writing {}/resolv.conf", etc.display()))?;
        Ok(ns)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Drops every UDP packet to port 443 inside the namespace, without an ICMP error: an
    /// nftables table of the namespace's own (the root namespace's rules are not touched, and
    /// the table goes with the namespace).
    pub(crate) fn drop_udp_443(&self) -> Result<()> {
        const RULES: &str = "table inet tracer_lab {\n\
             \tchain input {\n\
             \t\ttype filter hook input priority 0; policy accept;\n\
             \t\tudp dport 443 drop\n\
             \t}\n\
             }\n";
        run_bounded(
            Command::new("ip").args(["netns", "exec", &self.name, "nft", "-f", "-"]),
            Some(RULES),
            "`nft` (package nftables)",
        )
        .context("adding the lab's UDP 443 drop rule")
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        delete_namespace(&self.name);
    }
}

/// Deletes namespace `name` (the lab creates no veth: the namespace has only `lo`, which goes
/// with it) and `/etc/netns/<name>/`. Best effort; logs failures.
fn delete_namespace(name: &str) {
    if Path::new(NETNS_RUN_DIR).join(name).exists()
        && let Err(e) = ip(&["netns", "delete", name], None)
    {
        tracing::warn!("tracer::lab: deleting namespace {name}: {e:#}");
    }
    let etc = Path::new(NETNS_ETC_DIR).join(name);
    if etc.exists()
        && let Err(e) = std::fs::remove_dir_all(&etc)
    {
        tracing::warn!("tracer::lab: removing {}: {e}", etc.display());
    }
}

/// Moves the calling thread into the network namespace at `path` (`/run/netns/<name>`).
pub(crate) fn enter_netns(path: &Path) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: setns on a valid fd; only the calling thread's network namespace changes.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| {
            format!(
                "setns({}, CLONE_NEWNET) (needs CAP_SYS_ADMIN)",
                path.display()
            )
        });
    }
    Ok(())
}

/// Removes labs left behind by processes that are gone: namespaces `tracer-lab-<pid>-<n>`
/// whose `<pid>` no longer runs, their `/etc/netns/` directories and their temp directories.
/// Returns the names of the namespaces removed.
pub fn cleanup_stale() -> Result<Vec<String>> {
    super::check_privileges()?;
    let mut names = std::collections::BTreeSet::new();
    let tmp = std::env::temp_dir();
    for dir in [
        Path::new(NETNS_RUN_DIR),
        Path::new(NETNS_ETC_DIR),
        tmp.as_path(),
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.take(10_000).flatten() {
            if let Some(name) = entry.file_name().to_str()
                && let Some(pid) = creator_pid(name)
                && !crate::procfs::exists(pid)
            {
                names.insert(name.to_owned());
            }
        }
    }
    let mut removed = Vec::new();
    for name in names {
        let had_ns = Path::new(NETNS_RUN_DIR).join(&name).exists();
        delete_namespace(&name);
        let tmp_dir: PathBuf = tmp.join(&name);
        if tmp_dir.is_dir() {
            let _ = std::fs::remove_dir_all(&tmp_dir);
        }
        if had_ns {
            tracing::info!("tracer::lab: removed stale namespace {name}");
            removed.push(name);
        }
    }
    Ok(removed)
}

/// `tracer-lab-<pid>-<n>` -> pid.
fn creator_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// What the server thread needs to build the servers.
pub(crate) struct ServerSetup {
    pub(crate) config: LabConfig,
    pub(crate) stats: Arc<LabStats>,
    pub(crate) tls: Arc<rustls::ServerConfig>,
    /// For `badcert.shop.test`: a certificate the lab CA did not sign.
    pub(crate) badcert_tls: Arc<rustls::ServerConfig>,
    /// The QUIC (TLS 1.3, ALPN h3) configs of the same two leaves.
    pub(crate) h3_tls: Arc<rustls::ServerConfig>,
    pub(crate) badcert_h3_tls: Arc<rustls::ServerConfig>,
}

/// The OS thread that lives inside the namespace and runs the servers on its own
/// single-threaded tokio runtime.
pub(crate) struct ServerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long start-up and shutdown of the server thread may take.
const THREAD_START_TIMEOUT: Duration = Duration::from_secs(10);
const THREAD_STOP_TIMEOUT: Duration = Duration::from_secs(3);

impl ServerThread {
    pub(crate) async fn spawn(ns_name: &str, setup: ServerSetup) -> Result<ServerThread> {
        let path = Path::new(NETNS_RUN_DIR).join(ns_name);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<()>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name(format!("lab-{}", ns_name.trim_start_matches(NAME_PREFIX)))
            .spawn(move || {
                server_thread_main(&path, setup, ready_tx, stop_rx);
                let _ = done_tx.send(());
            })
            .context("spawning the lab server thread")?;
        let me = ServerThread {
            stop: Some(stop_tx),
            done: done_rx,
            thread: Some(thread),
        };
        match tokio::time::timeout(THREAD_START_TIMEOUT, ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(me),
            Ok(Ok(Err(e))) => Err(e.context("starting the lab servers")),
            Ok(Err(_)) => bail!("the lab server thread exited during start-up"),
            Err(_) => bail!("the lab servers did not start within {THREAD_START_TIMEOUT:?}"),
        }
    }

    /// Stops the servers and waits (bounded) for the thread to finish.
    pub(crate) fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            match self.done.recv_timeout(THREAD_STOP_TIMEOUT) {
                Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = thread.join();
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    tracing::warn!("tracer::lab: server thread did not stop in time; detaching it");
                }
            }
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

fn server_thread_main(
    ns_path: &Path,
    setup: ServerSetup,
    ready: tokio::sync::oneshot::Sender<Result<()>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    if let Err(e) = enter_netns(ns_path) {
        let _ = ready.send(Err(e));
        return;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(
                anyhow::Error::new(e).context("building the lab runtime")
            ));
            return;
        }
    };
    rt.block_on(async move {
        // Bind everything first (inside the namespace), then report readiness.
        let started = async {
            super::dns::start(&setup.config, setup.stats.clone()).await?;
            super::http::start(
                &setup.config,
                setup.stats.clone(),
                setup.tls.clone(),
                setup.badcert_tls.clone(),
            )
            .await?;
            super::h3::start(
                &setup.config,
                setup.stats.clone(),
                setup.h3_tls.clone(),
                setup.badcert_h3_tls.clone(),
            )
            .await?;
            anyhow::Ok(())
        }
        .await;
        let ok = started.is_ok();
        let _ = ready.send(started);
        if ok {
            // Runs until the Lab is dropped (or the Lab side vanished).
            let _ = stop.await;
        }
    });
    // Cancels every server task and closes every socket.
    rt.shutdown_timeout(Duration::from_millis(500));
}
