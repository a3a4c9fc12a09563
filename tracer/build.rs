//! Builds the eBPF object (tracer-ebpf) for bpfel-unknown-none with the nightly toolchain
//! and bpf-linker; `cargo xtask setup` installs both when missing.
fn main() -> anyhow::Result<()> {
    // sqlx::migrate! embeds the migrations: a new one must rebuild the crate.
    println!("cargo:rerun-if-changed=../migrations");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("tracer-ebpf");
    let root = root.to_str().expect("utf-8 path");
    aya_build::build_ebpf(
        [aya_build::Package { name: "tracer-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::Nightly,
    )
}
