//! What the daemon needs from the system before it can attach anything.
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

/// Field offsets of a tracepoint, from its format file.
pub fn tracepoint_fields(category: &str, name: &str) -> std::io::Result<Vec<(String, usize)>> {
    let text = std::fs::read_to_string(Path::new(TRACEFS).join("events").join(category).join(name).join("format"))?;
    Ok(parse_format_fields(&text))
}

pub fn parse_format_fields(text: &str) -> Vec<(String, usize)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let decl = l.strip_prefix("field:")?.split(';').next()?;
            // "const void * skaddr" / "__u8 saddr[4]" -> skaddr / saddr
            let name = decl.split_whitespace().last()?.split('[').next()?.trim_start_matches('*');
            let off = l.split("offset:").nth(1)?.split(';').next()?.trim().parse().ok()?;
            Some((name.to_string(), off))
        })
        .collect()
}

/// Compare the offsets the eBPF programs were compiled with against this kernel's.
pub fn check_fields(actual: &[(String, usize)], expected: &[(&str, usize)]) -> Result<(), String> {
    let mut wrong = Vec::new();
    for (name, off) in expected {
        match actual.iter().find(|(n, _)| n == name) {
            Some((_, o)) if o == off => {}
            Some((_, o)) => wrong.push(format!("{name} at offset {o}, expected {off}")),
            None => wrong.push(format!("{name} missing")),
        }
    }
    if wrong.is_empty() { Ok(()) } else { Err(format!("format differs: {}", wrong.join(", "))) }
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

    #[test]
    fn parses_format_files_and_spots_moved_fields() {
        let text = "name: inet_sock_set_state\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;\n";
        let f = parse_format_fields(text);
        assert_eq!(f, vec![("common_type".into(), 0), ("skaddr".into(), 8), ("saddr".into(), 32)]);
        assert!(check_fields(&f, &[("skaddr", 8), ("saddr", 32)]).is_ok());
        let err = check_fields(&f, &[("skaddr", 16), ("daddr", 36)]).unwrap_err();
        assert!(err.contains("skaddr at offset 8, expected 16") && err.contains("daddr missing"), "{err}");
    }
}
