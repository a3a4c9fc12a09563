//! `tracer run -- COMMAND ARGS`: the command, forked and held before its exec until the
//! daemon has put it in the TRACED map and opened its uprobe events, then released; its end
//! ends the run.
use std::{
    ffi::OsString,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

use anyhow::{Context as _, bail};

/// A command forked and waiting before its exec: it runs nothing of its own until
/// [`HeldCommand::release`]. The child reports its pid through a pipe and then waits on a
/// second pipe for a go byte; when that pipe closes without one (this value dropped), it
/// exits instead of running untraced.
pub struct HeldCommand {
    pub pid: u32,
    go: OwnedFd,
    exit: tokio::sync::oneshot::Receiver<CommandEnd>,
}

impl HeldCommand {
    /// Fork `argv` (program and arguments) and wait (10 s at most) for its pid.
    pub fn fork(argv: &[OsString]) -> anyhow::Result<HeldCommand> {
        use std::os::unix::process::CommandExt as _;
        let Some((program, args)) = argv.split_first() else { bail!("no command given after --") };
        let (pid_r, pid_w) = pipe()?;
        let (go_r, go_w) = pipe()?;
        let mut cmd = std::process::Command::new(program);
        // The dashboard's token is the daemon's, not the command's.
        cmd.args(args).env_remove("TRACER_TOKEN");
        let (pw, gr) = (pid_w.as_raw_fd(), go_r.as_raw_fd());
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (getpid, write, read) without allocating.
        unsafe {
            cmd.pre_exec(move || {
                let pid = libc::getpid() as u32;
                let bytes = pid.to_ne_bytes();
                if libc::write(pw, bytes.as_ptr().cast(), 4) != 4 {
                    return Err(std::io::Error::from_raw_os_error(libc::ECANCELED));
                }
                let mut b = [0u8; 1];
                loop {
                    let n = libc::read(gr, b.as_mut_ptr().cast(), 1);
                    if n == 1 {
                        return Ok(());
                    }
                    if n < 0 && *libc::__errno_location() == libc::EINTR {
                        continue;
                    }
                    // The daemon gave up: do not run untraced.
                    return Err(std::io::Error::from_raw_os_error(libc::ECANCELED));
                }
            })
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let name = program.to_string_lossy().into_owned();
        // Command::spawn returns only once the child has exec'd, which it does only after
        // the go byte: spawn (and then wait) on a thread of its own.
        std::thread::Builder::new()
            .name("tracer-command".into())
            .spawn(move || {
                // The child is forked from here, so it gets this thread's rights (the
                // caller's); once it has exec'd, this thread only waits, and drops them all.
                let spawned = cmd.spawn();
                // The child has its copies (or exec'd/failed): close ours, so that a read
                // of the pid pipe ends if the child never wrote.
                drop((pid_w, go_r));
                if let Err(e) = crate::privileges::drop_all_on_this_thread() {
                    // Fail closed: the daemon stops (with this error) rather than keep a
                    // thread with every capability.
                    if let Ok(mut child) = spawned {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                    let _ = tx.send(CommandEnd::Failed(format!("the command's helper thread could not drop its capabilities: {e}")));
                    return;
                }
                let end = match spawned {
                    Ok(mut child) => child.wait().map(CommandEnd::Exited).unwrap_or_else(|e| CommandEnd::Failed(format!("waiting: {e}"))),
                    Err(e) => CommandEnd::Failed(format!("cannot run `{name}`: {e}")),
                };
                let _ = tx.send(end);
            })
            .context("starting the command thread")?;
        let pid = match read_pid(&pid_r, Duration::from_secs(10)) {
            Ok(p) => p,
            Err(e) => {
                drop(go_w);
                return Err(e);
            }
        };
        Ok(HeldCommand { pid, go: go_w, exit: rx })
    }

    /// Let the command exec and run.
    pub fn release(self) -> anyhow::Result<CommandHandle> {
        let one = [1u8];
        // SAFETY: valid fd and buffer.
        if unsafe { libc::write(self.go.as_raw_fd(), one.as_ptr().cast(), 1) } != 1 {
            bail!("releasing the command: {}", std::io::Error::last_os_error());
        }
        Ok(CommandHandle { pid: self.pid, exit: Some(self.exit) })
    }
}

/// How the command of `-- COMMAND` ended.
#[derive(Debug)]
pub enum CommandEnd {
    Exited(std::process::ExitStatus),
    /// It could not be started (or waited for).
    Failed(String),
}

impl CommandEnd {
    /// The daemon's exit code: the command's own, 128+signal when killed, 127 when it could
    /// not start.
    pub fn code(&self) -> u8 {
        use std::os::unix::process::ExitStatusExt as _;
        match self {
            CommandEnd::Exited(s) => match (s.code(), s.signal()) {
                (Some(c), _) => c as u8,
                (None, Some(sig)) => 128u8.saturating_add(sig as u8),
                _ => 1,
            },
            CommandEnd::Failed(_) => 127,
        }
    }
}

impl std::fmt::Display for CommandEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::os::unix::process::ExitStatusExt as _;
        match self {
            CommandEnd::Exited(s) => match (s.code(), s.signal()) {
                (Some(c), _) => write!(f, "command exited with status {c}"),
                (None, Some(sig)) => write!(f, "command killed by signal {sig}"),
                _ => write!(f, "command ended ({s})"),
            },
            CommandEnd::Failed(e) => write!(f, "command failed: {e}"),
        }
    }
}

/// The command started by `-- COMMAND`.
pub struct CommandHandle {
    pub pid: u32,
    exit: Option<tokio::sync::oneshot::Receiver<CommandEnd>>,
}

/// Wait for the command to end; pends forever when there is none (or it already ended).
pub async fn wait_command(handle: &mut Option<CommandHandle>) -> CommandEnd {
    let Some(rx) = handle.as_mut().and_then(|h| h.exit.as_mut()) else {
        return std::future::pending().await;
    };
    let end = rx.await.unwrap_or_else(|_| CommandEnd::Failed("its thread ended without a status".into()));
    if let Some(h) = handle.as_mut() {
        h.exit = None;
    }
    end
}

/// Sleep until `at`; pends forever when None.
pub async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Read the child's pid (4 bytes) with a bound on the wait.
fn read_pid(fd: &OwnedFd, timeout: Duration) -> anyhow::Result<u32> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    let deadline = std::time::Instant::now() + timeout;
    while got < 4 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            bail!("the command did not start within {timeout:?}");
        }
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            bail!("waiting for the command: {e}");
        }
        if r == 0 {
            continue;
        }
        // SAFETY: the buffer has 4 - got bytes left.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf[got..].as_mut_ptr().cast(), 4 - got) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            bail!("waiting for the command: {e}");
        }
        if n == 0 {
            bail!("the command could not be started (fork failed)");
        }
        got += n as usize;
    }
    Ok(u32::from_ne_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dashboard's token is the daemon's: a command started with `-- COMMAND` does not
    /// inherit TRACER_TOKEN from the daemon's environment.
    #[tokio::test]
    async fn the_command_does_not_get_the_dashboard_token() {
        // SAFETY: no other test of this crate reads or writes TRACER_TOKEN (the daemon reads
        // it once, in main).
        unsafe { std::env::set_var("TRACER_TOKEN", "a-token-the-command-must-not-see") };
        let argv: Vec<OsString> = ["sh", "-c", "test -z \"$TRACER_TOKEN\""].iter().map(OsString::from).collect();
        let held = HeldCommand::fork(&argv).unwrap();
        let mut handle = Some(held.release().unwrap());
        let end = tokio::time::timeout(Duration::from_secs(30), wait_command(&mut handle)).await.expect("the command ends");
        assert_eq!(end.code(), 0, "{end:?}: the command saw TRACER_TOKEN");
    }
}
