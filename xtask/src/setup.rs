//! `cargo xtask setup`: everything the build needs that is not a crate. Idempotent; prints
//! one line per step. (The Debian packages the tests and benchmarks drive: `packages.rs`.)
//!
//! 1. the nightly toolchain (builds the eBPF crate),
//! 2. its `rust-src` component (`-Z build-std=core` for bpfel-unknown-none),
//! 3. `bpf-linker`, built against the nightly's own libLLVM (see shared/notes/platform.md),
//! 4. tracefs at /sys/kernel/tracing (tracepoint attach needs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::util;

const TRACEFS: &str = "/sys/kernel/tracing";

pub fn setup() -> Result<()> {
    nightly_toolchain()?;
    rust_src()?;
    bpf_linker()?;
    tracefs()?;
    Ok(())
}

pub(crate) fn step(name: &str, outcome: &str) {
    eprintln!("setup: {name:<20} {outcome}");
}

// ---------------------------------------------------------------------------------------
// 1. nightly toolchain

fn nightly_toolchain() -> Result<()> {
    let list = util::output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to manage the nightly toolchain (https://rustup.rs)")?;
    if has_nightly(&list) {
        step("nightly toolchain", "ok");
        return Ok(());
    }
    let mut install = Command::new("rustup");
    install.args(["toolchain", "install", "nightly", "--profile", "minimal"]);
    util::run(&mut install).context(
        "the nightly toolchain is missing and could not be installed; the eBPF crate \
         (tracer-ebpf) is built with nightly (-Z build-std=core). Install it by hand with \
         `rustup toolchain install nightly --profile minimal` and re-run `cargo xtask setup`",
    )?;
    step("nightly toolchain", "installed");
    Ok(())
}

/// Whether `rustup toolchain list` shows the plain `nightly` channel (not a dated
/// `nightly-YYYY-MM-DD`, which `+nightly` would not select).
pub fn has_nightly(toolchain_list: &str) -> bool {
    toolchain_list.lines().any(|line| {
        let name = line.split_whitespace().next().unwrap_or("");
        match name.strip_prefix("nightly") {
            Some("") => true,
            // nightly-<host triple>, but not nightly-2025-01-01-<host triple>
            Some(rest) => {
                rest.starts_with('-') && !rest[1..].starts_with(|c: char| c.is_ascii_digit())
            }
            None => false,
        }
    })
}

// ---------------------------------------------------------------------------------------
// 2. rust-src for nightly

fn rust_src() -> Result<()> {
    let installed = util::output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if has_rust_src(&installed) {
        step("rust-src (nightly)", "ok");
        return Ok(());
    }
    util::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))?;
    step("rust-src (nightly)", "installed");
    Ok(())
}

pub fn has_rust_src(installed_components: &str) -> bool {
    installed_components.lines().any(|line| {
        let name = line.split_whitespace().next().unwrap_or("");
        name == "rust-src" || name.starts_with("rust-src-")
    })
}

// ---------------------------------------------------------------------------------------
// 3. bpf-linker

fn bpf_linker() -> Result<()> {
    if let Some(path) = util::find_in_path("bpf-linker") {
        let version = bpf_linker_version(&path)?;
        step("bpf-linker", &format!("ok ({version}, {})", path.display()));
        return Ok(());
    }
    // Installed by `cargo install` but that directory is not on PATH: use it (children of
    // xtask, e.g. the eBPF build in tracer/build.rs, inherit the PATH).
    for dir in install_bin_dirs() {
        let path = dir.join("bpf-linker");
        if util::is_executable(&path) {
            util::prepend_to_path(&dir)?;
            let version = bpf_linker_version(&path)?;
            step(
                "bpf-linker",
                &format!(
                    "ok ({version}, {}; added {} to PATH)",
                    path.display(),
                    dir.display()
                ),
            );
            return Ok(());
        }
    }

    let llvm = nightly_libllvm()?;
    eprintln!(
        "setup: bpf-linker not found; building it against {} (feature llvm-{}), about a minute",
        llvm.dir.join(&llvm.file).display(),
        llvm.major
    );
    let mut install = Command::new("cargo");
    install
        .env("RUSTFLAGS", llvm.rustflags())
        .args([
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{},no-llvm-linking", llvm.major));
    util::run(&mut install).context("building bpf-linker failed")?;

    let path = match util::find_in_path("bpf-linker") {
        Some(path) => path,
        None => {
            let dir = install_bin_dirs()
                .into_iter()
                .find(|d| util::is_executable(&d.join("bpf-linker")))
                .context("`cargo install bpf-linker` succeeded but no bpf-linker binary was found on PATH or in the cargo bin directory")?;
            util::prepend_to_path(&dir)?;
            dir.join("bpf-linker")
        }
    };
    let version = bpf_linker_version(&path)?;
    step(
        "bpf-linker",
        &format!("installed ({version}, {})", path.display()),
    );
    Ok(())
}

/// Where `cargo install` puts binaries: $CARGO_INSTALL_ROOT/bin, $CARGO_HOME/bin (~/.cargo/bin).
fn install_bin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(root) = std::env::var_os("CARGO_INSTALL_ROOT").filter(|r| !r.is_empty()) {
        dirs.push(PathBuf::from(root).join("bin"));
    }
    if let Some(home) = util::cargo_home() {
        dirs.push(home.join("bin"));
    }
    if let Some(home) = util::home_dir() {
        let default = home.join(".cargo").join("bin");
        if !dirs.contains(&default) {
            dirs.push(default);
        }
    }
    dirs
}

/// Runs `bpf-linker --version` (proves it starts, i.e. finds its libLLVM) and returns its output.
fn bpf_linker_version(path: &Path) -> Result<String> {
    let out = util::output(Command::new(path).arg("--version")).context(
        "bpf-linker is installed but does not run; if it cannot find libLLVM, remove it \
         (`cargo uninstall bpf-linker`) and run `cargo xtask setup` to rebuild it against \
         the nightly toolchain's libLLVM",
    )?;
    Ok(out.trim().to_string())
}

/// The nightly toolchain's own libLLVM shared library.
#[derive(Debug, PartialEq, Eq)]
pub struct LibLlvm {
    /// `$(rustc +nightly --print sysroot)/lib`
    pub dir: PathBuf,
    /// e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`
    pub file: String,
    /// e.g. 22
    pub major: u32,
}

impl LibLlvm {
    /// RUSTFLAGS that link bpf-linker against this library and find it again at run time.
    pub fn rustflags(&self) -> String {
        let dir = self.dir.display();
        format!(
            "-C link-arg=-L{dir} -C link-arg=-l:{file} -C link-arg=-Wl,-rpath,{dir}",
            file = self.file
        )
    }
}

fn nightly_libllvm() -> Result<LibLlvm> {
    let sysroot = util::output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let dir = PathBuf::from(sysroot.trim()).join("lib");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let (file, major) = pick_libllvm(&names).with_context(|| {
        format!(
            "no libLLVM.so.<major>... in {} (the nightly toolchain's lib directory); \
             cannot build bpf-linker against it",
            dir.display()
        )
    })?;
    Ok(LibLlvm { dir, file, major })
}

/// Chooses the libLLVM to link against among the file names of the sysroot's lib dir:
/// `libLLVM.so.*` (what platform.md uses) first, else `libLLVM-<major>*.so`.
pub fn pick_libllvm(names: &[String]) -> Option<(String, u32)> {
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    let versioned = sorted
        .iter()
        .filter(|n| n.starts_with("libLLVM.so."))
        .chain(sorted.iter().filter(|n| n.starts_with("libLLVM-")));
    for name in versioned {
        if let Some(major) = llvm_major(name) {
            return Some(((*name).clone(), major));
        }
    }
    None
}

/// The LLVM major version in a libLLVM file name:
/// `libLLVM.so.22.1-rust-1.97.0-nightly` -> 22, `libLLVM-22-rust-1.97.0-nightly.so` -> 22,
/// `libLLVM.so.19.1` -> 19.
pub fn llvm_major(file_name: &str) -> Option<u32> {
    let rest = file_name
        .strip_prefix("libLLVM.so.")
        .or_else(|| file_name.strip_prefix("libLLVM-"))?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() {
        return None;
    }
    digits.parse().ok().filter(|&m| m > 0)
}

// ---------------------------------------------------------------------------------------
// 4. tracefs

fn tracefs() -> Result<()> {
    let tracefs = Path::new(TRACEFS);
    if tracefs.join("events").is_dir() {
        step("tracefs", &format!("ok ({TRACEFS})"));
        return Ok(());
    }
    if !util::is_root()? {
        step(
            "tracefs",
            &format!("not mounted at {TRACEFS}; the daemon mounts it when it starts (as root)"),
        );
        return Ok(());
    }
    let mut mount = Command::new("mount");
    mount.args(["-t", "tracefs", "nodev", TRACEFS]);
    match util::run(&mut mount) {
        Ok(()) if tracefs.join("events").is_dir() => {
            step("tracefs", &format!("mounted ({TRACEFS})"));
            Ok(())
        }
        Ok(()) => bail!(
            "`{}` succeeded but {TRACEFS}/events does not exist",
            util::cmdline(&mount)
        ),
        Err(e) => {
            // Building does not need tracefs and the daemon retries the mount itself, so
            // this is a warning, not a failure.
            step(
                "tracefs",
                &format!("warning: could not mount: {e:#}; the daemon will try again"),
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_from_file_names() {
        assert_eq!(llvm_major("libLLVM.so.22.1-rust-1.97.0-nightly"), Some(22));
        assert_eq!(llvm_major("libLLVM.so.21.1-rust-1.92.0-nightly"), Some(21));
        assert_eq!(llvm_major("libLLVM.so.19.1"), Some(19));
        assert_eq!(llvm_major("libLLVM.so.20"), Some(20));
        assert_eq!(llvm_major("libLLVM-22-rust-1.97.0-nightly.so"), Some(22));
        assert_eq!(llvm_major("libLLVM.so"), None);
        assert_eq!(llvm_major("libLLVM.so.x"), None);
        assert_eq!(llvm_major("librustc_driver-b5a965480ee51f9a.so"), None);
    }

    #[test]
    fn picks_versioned_so_like_platform_notes() {
        let names: Vec<String> = [
            "librustc_driver-b5a965480ee51f9a.so",
            "libLLVM-22-rust-1.97.0-nightly.so",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "rustlib",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            pick_libllvm(&names),
            Some(("libLLVM.so.22.1-rust-1.97.0-nightly".to_string(), 22))
        );
        // Older nightlies only ship libLLVM-<major>-....so.
        let names = vec!["libLLVM-19-rust-1.84.0-nightly.so".to_string()];
        assert_eq!(
            pick_libllvm(&names),
            Some(("libLLVM-19-rust-1.84.0-nightly.so".to_string(), 19))
        );
        assert_eq!(pick_libllvm(&["rustlib".to_string()]), None);
    }

    #[test]
    fn rustflags_match_platform_notes() {
        let llvm = LibLlvm {
            dir: PathBuf::from("/r/toolchains/nightly/lib"),
            file: "libLLVM.so.22.1-rust-1.97.0-nightly".into(),
            major: 22,
        };
        assert_eq!(
            llvm.rustflags(),
            "-C link-arg=-L/r/toolchains/nightly/lib \
             -C link-arg=-l:libLLVM.so.22.1-rust-1.97.0-nightly \
             -C link-arg=-Wl,-rpath,/r/toolchains/nightly/lib"
        );
    }

    #[test]
    fn nightly_detection() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                    nightly-x86_64-unknown-linux-gnu\n\
                    1.95.0-x86_64-unknown-linux-gnu\n";
        assert!(has_nightly(list));
        assert!(has_nightly("nightly\n"));
        assert!(!has_nightly(
            "stable-x86_64-unknown-linux-gnu (active, default)\n"
        ));
        assert!(!has_nightly(
            "nightly-2025-01-01-x86_64-unknown-linux-gnu\n"
        ));
        assert!(!has_nightly("no installed toolchains\n"));
    }

    #[test]
    fn rust_src_detection() {
        let installed =
            "cargo-x86_64-unknown-linux-gnu\nrust-src\nrustc-x86_64-unknown-linux-gnu\n";
        assert!(has_rust_src(installed));
        assert!(!has_rust_src(
            "cargo-x86_64-unknown-linux-gnu\nrust-std-x86_64-unknown-linux-gnu\n"
        ));
    }
}
