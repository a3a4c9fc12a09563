//! Small helpers for running external commands with useful errors, finding programs on
//! PATH, and checking for root. std only.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use anyhow::{Context as _, Result, bail};

/// The workspace root (the parent of xtask/).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory for this workspace (honours CARGO_TARGET_DIR).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                // cargo resolves a relative CARGO_TARGET_DIR against its working directory,
                // which is the workspace root for every cargo command xtask starts.
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// The command line of `cmd`, shell-like, with the environment variables set on it
/// (e.g. `RUSTFLAGS=... cargo install ...`), for error messages.
pub fn cmdline(cmd: &Command) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            parts.push(format!("{}={}", key.to_string_lossy(), quote(value)));
        }
    }
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with inherited stdio and fails unless it exits successfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = status(cmd)?;
    if !status.success() {
        bail!("`{}` failed ({status})", cmdline(cmd));
    }
    Ok(())
}

/// Runs `cmd` with inherited stdio and returns its exit status (failing only when it
/// cannot be started).
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    cmd.status()
        .with_context(|| format!("could not start `{}`", cmdline(cmd)))
}

/// Runs `cmd`, captures stdout, and fails (showing stderr) unless it exits successfully.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{}`", cmdline(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            cmdline(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout)
        .with_context(|| format!("`{}`: output is not UTF-8", cmdline(cmd)))
}

/// Replaces this process with `cmd` (signals such as Ctrl-C then go straight to it and its
/// exit code becomes ours). Returns only on failure.
pub fn exec(cmd: &mut Command) -> anyhow::Error {
    let line = cmdline(cmd);
    let err = cmd.exec();
    anyhow::Error::new(err).context(format!("could not exec `{line}`"))
}

/// Finds an executable file named `name` in the directories of PATH.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Puts `dir` at the front of this process's PATH (inherited by every child) unless it is
/// already there.
pub fn prepend_to_path(dir: &Path) -> Result<()> {
    let old = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&old).any(|d| d == dir) {
        return Ok(());
    }
    let new =
        std::env::join_paths(std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&old)))
            .with_context(|| format!("cannot add {} to PATH", dir.display()))?;
    // SAFETY: xtask is single-threaded; nothing reads the environment concurrently.
    unsafe { std::env::set_var("PATH", new) };
    Ok(())
}

pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// $CARGO_HOME, or ~/.cargo.
pub fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| home_dir().map(|h| h.join(".cargo")))
}

/// $RUSTUP_HOME, or ~/.rustup.
pub fn rustup_home() -> Option<PathBuf> {
    std::env::var_os("RUSTUP_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| home_dir().map(|h| h.join(".rustup")))
}

/// The effective uid of this process.
pub fn euid() -> Result<u32> {
    // /proc/self/status: "Uid:\t<real>\t<effective>\t<saved>\t<fs>"
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(uid) = parse_effective_uid(&status)
    {
        return Ok(uid);
    }
    let out = output(Command::new("id").arg("-u"))?;
    out.trim()
        .parse()
        .with_context(|| format!("`id -u` printed {out:?}, not a number"))
}

pub fn parse_effective_uid(proc_status: &str) -> Option<u32> {
    proc_status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
}

pub fn is_root() -> Result<bool> {
    Ok(euid()? == 0)
}

/// A command that runs `program args...` as root through `sudo -E`, keeping PATH and the
/// rustup/cargo homes of the calling user (sudo's secure_path would otherwise hide
/// ~/.cargo/bin, and a reset HOME would make rustup look in root's home).
pub fn sudo_command(sudo: &Path, program: &OsStr, args: &[OsString]) -> Command {
    let mut cmd = Command::new(sudo);
    cmd.arg("-E").arg("env");
    let mut var = |name: &str, value: Option<OsString>| {
        if let Some(value) = value {
            let mut kv = OsString::from(format!("{name}="));
            kv.push(value);
            cmd.arg(kv);
        }
    };
    var("PATH", std::env::var_os("PATH"));
    var("RUSTUP_HOME", rustup_home().map(PathBuf::into_os_string));
    var("CARGO_HOME", cargo_home().map(PathBuf::into_os_string));
    cmd.arg(program).args(args);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_uid_is_second_field() {
        let status = "Name:\tx\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_effective_uid(status), Some(0));
        assert_eq!(parse_effective_uid("Name:\tx\n"), None);
    }

    #[test]
    fn cmdline_quotes_and_shows_env() {
        let mut cmd = Command::new("cargo");
        cmd.env("RUSTFLAGS", "-C link-arg=-L/x y").args([
            "install",
            "bpf-linker",
            "--features",
            "llvm-22,no-llvm-linking",
        ]);
        assert_eq!(
            cmdline(&cmd),
            "RUSTFLAGS='-C link-arg=-L/x y' cargo install bpf-linker --features llvm-22,no-llvm-linking"
        );
    }
}
