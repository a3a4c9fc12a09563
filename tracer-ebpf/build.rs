use which::which;

/// Rebuild when bpf-linker changes (it is not a cargo dependency).
fn main() {
    if let Ok(p) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}
