//! Tracepoints: attaching a program to a tracefs tracepoint, after checking that the fields
//! it reads are where it was compiled to read them (the tracepoint's format file); and BTF
//! tracepoints (`tp_btf`), which read the kernel's structures through its BTF instead.
use std::path::Path;

use anyhow::Context as _;
use aya::{
    Ebpf,
    programs::{BtfTracePoint, TracePoint, tp_btf::BtfTracePointLinkId, trace_point::TracePointLinkId},
};

use super::{
    families::{BtfTracepoint, Tracepoint},
    system::TRACEFS,
};

/// Attach `tp`'s program (loaded once, however many tracepoints share it) after checking the
/// fields it reads.
pub fn attach_tracepoint(ebpf: &mut Ebpf, tp: &Tracepoint) -> anyhow::Result<TracePointLinkId> {
    let Tracepoint { program, category, name, fields } = *tp;
    if !fields.is_empty() {
        let actual = tracepoint_fields(category, name).with_context(|| format!("reading the format of {category}:{name}"))?;
        check_fields(&actual, fields).map_err(anyhow::Error::msg)?;
    }
    let tp: &mut TracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} not in the object"))?
        .try_into()?;
    // A program attached to several tracepoints is loaded once.
    if tp.fd().is_err() {
        tp.load().with_context(|| format!("verifier rejected {program}"))?;
    }
    tp.attach(category, name).with_context(|| format!("attaching {category}:{name}"))
}

/// Load `btf`'s program against the kernel's BTF and attach it.
pub fn attach_btf_tracepoint(ebpf: &mut Ebpf, btf: &BtfTracepoint) -> anyhow::Result<BtfTracePointLinkId> {
    let BtfTracepoint { program, tracepoint, .. } = *btf;
    let kernel_btf = aya::Btf::from_sys_fs().context("reading the kernel's BTF (/sys/kernel/btf/vmlinux)")?;
    let p: &mut BtfTracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} not in the object"))?
        .try_into()?;
    p.load(tracepoint, &kernel_btf).with_context(|| format!("verifier rejected {program}"))?;
    p.attach().with_context(|| format!("attaching tp_btf/{tracepoint}"))
}

/// Field offsets of a tracepoint, from its format file.
pub fn tracepoint_fields(category: &str, name: &str) -> std::io::Result<Vec<(String, usize)>> {
    let text = std::fs::read_to_string(Path::new(TRACEFS).join("events").join(category).join(name).join("format"))?;
    Ok(parse_format_fields(&text))
}

/// (name, offset) of every field in a tracepoint's format text.
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
    fn parses_format_files_and_spots_moved_fields() {
        let text = "name: inet_sock_set_state\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;\n";
        let f = parse_format_fields(text);
        assert_eq!(f, vec![("common_type".into(), 0), ("skaddr".into(), 8), ("saddr".into(), 32)]);
        assert!(check_fields(&f, &[("skaddr", 8), ("saddr", 32)]).is_ok());
        let err = check_fields(&f, &[("skaddr", 16), ("daddr", 36)]).unwrap_err();
        assert!(err.contains("skaddr at offset 8, expected 16") && err.contains("daddr missing"), "{err}");
    }
}
