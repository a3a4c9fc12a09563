//! What the daemon needs from the system before it can attach anything: the privilege to
//! load and attach BPF programs, and tracefs.
use std::path::Path;

pub const TRACEFS: &str = "/sys/kernel/tracing";

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error(
        "tracer needs root, or CAP_BPF and CAP_PERFMON (missing: {missing}); run it as root, e.g. `sudo tracer run` or `cargo xtask run`"
    )]
    Privilege { missing: String },
    #[error("tracefs is not mounted at {TRACEFS} and mounting it failed: {0}")]
    Tracefs(std::io::Error),
}

/// Check the privilege to load and attach BPF programs, naming what is missing.
pub fn check_privileges(caps: u64) -> Result<(), SystemError> {
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let mut missing = Vec::new();
    if !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    Err(SystemError::Privilege { missing: missing.join(", ") })
}

/// Mount tracefs when missing (a fresh Firecracker guest has an empty /sys/kernel/tracing);
/// tracepoint attach needs it. Returns whether it mounted.
pub fn ensure_tracefs() -> Result<bool, SystemError> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(false);
    }
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (src, target, fstype) = (c("nodev"), c(TRACEFS), c("tracefs"));
    // SAFETY: valid NUL-terminated strings; no data argument.
    let r = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        return Err(SystemError::Tracefs(std::io::Error::last_os_error()));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_missing_capabilities() {
        let err = check_privileges(0).unwrap_err().to_string();
        assert!(err.contains("CAP_BPF, CAP_PERFMON"), "{err}");
        let err = check_privileges(1 << CAP_BPF).unwrap_err().to_string();
        assert!(err.contains("missing: CAP_PERFMON"), "{err}");
        assert!(check_privileges((1 << CAP_BPF) | (1 << CAP_PERFMON)).is_ok());
        assert!(check_privileges(1 << CAP_SYS_ADMIN).is_ok());
    }
}
