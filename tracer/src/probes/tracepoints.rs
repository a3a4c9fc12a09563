//! Tracepoints: attaching a program to a tracefs tracepoint, whose record it reads at the
//! offsets this kernel's format file gives (loaded with the program as its layout global,
//! see [`super::kernel`]); BTF tracepoints (`tp_btf`), which read the kernel's structures
//! through its BTF instead; and kprobes.
use anyhow::{Context as _, bail};
use aya::{
    Ebpf,
    programs::{BtfTracePoint, KProbe, TracePoint, kprobe::KProbeLinkId, tp_btf::BtfTracePointLinkId, trace_point::TracePointLinkId},
};
use tracer_common::layout::MISSING;

use std::{os::fd::AsFd as _, path::Path};

use super::{
    Attachment,
    families::{BtfTracepoint, Kprobe, Tracepoint},
    kernel::KernelSurvey,
    kretprobe,
    system::TRACEFS,
};

/// Attach `tp`'s program (loaded once, however many tracepoints share it). A field it reads
/// that this kernel lacks keeps it from attaching unless the declaration names what stands
/// in for it.
pub fn attach_tracepoint(ebpf: &mut Ebpf, tp: &Tracepoint, survey: &KernelSurvey) -> anyhow::Result<TracePointLinkId> {
    let Tracepoint { program, category, name, fields, if_missing } = *tp;
    if fields.is_some() {
        let found = survey.layout(category, name).with_context(|| format!("no layout read for {category}:{name}"))?;
        let layout = found.layout.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        let missing: Vec<&str> = found
            .fields
            .fields
            .iter()
            .enumerate()
            .filter(|(i, f)| layout.off[*i] == MISSING && !if_missing.iter().any(|(m, _)| m == &f.name))
            .map(|(_, f)| f.name)
            .collect();
        if !missing.is_empty() {
            bail!("format differs: {} missing", missing.join(", "));
        }
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

/// Load `k`'s program and attach it at the entry (or return) of its kernel function. A
/// kretprobe gets [`kretprobe::MAXACTIVE`] instances through tracefs (see that module for why);
/// where tracefs refuses, aya's attach with the kernel's default, and a warning.
pub fn attach_kprobe(ebpf: &mut Ebpf, k: &Kprobe) -> anyhow::Result<Attachment> {
    let p: &mut KProbe = ebpf
        .program_mut(k.program)
        .with_context(|| format!("program {} not in the object", k.program))?
        .try_into()?;
    if p.fd().is_err() {
        p.load().with_context(|| format!("verifier rejected {}", k.program))?;
    }
    if k.ret {
        let fd = p.fd()?.as_fd();
        match kretprobe::TracefsKretprobe::attach(Path::new(TRACEFS), fd, k.function, kretprobe::MAXACTIVE) {
            Ok(probe) => return Ok(Attachment::Kretprobe(probe)),
            Err(e) => tracing::warn!("kretprobe {} with {} instances: {e}; attaching with the kernel's default instead", k.function, kretprobe::MAXACTIVE),
        }
    }
    let id: KProbeLinkId = p.attach(k.function, 0).with_context(|| format!("attaching kprobe {}", k.function))?;
    Ok(Attachment::KProbe(k.program, id))
}

/// Load `btf`'s program against the kernel's BTF and attach it. `kernel_btf`: the kernel's
/// BTF, read on first use and kept for the next program.
pub fn attach_btf_tracepoint(ebpf: &mut Ebpf, btf: &BtfTracepoint, kernel_btf: &mut Option<aya::Btf>) -> anyhow::Result<BtfTracePointLinkId> {
    let BtfTracepoint { program, tracepoint, .. } = *btf;
    if kernel_btf.is_none() {
        *kernel_btf = Some(aya::Btf::from_sys_fs().context("reading the kernel's BTF (/sys/kernel/btf/vmlinux)")?);
    }
    let kernel_btf = kernel_btf.as_ref().expect("read above");
    let p: &mut BtfTracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} not in the object"))?
        .try_into()?;
    p.load(tracepoint, kernel_btf).with_context(|| format!("verifier rejected {program}"))?;
    p.attach().with_context(|| format!("attaching tp_btf/{tracepoint}"))
}
