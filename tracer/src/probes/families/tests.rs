//! The families' declarations checked against each other and against the eBPF object's
//! program names.
use std::collections::BTreeSet;

use super::*;

/// Every program named here, variants' included, with the kind of section it must be in.
fn programs() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for (_, _, points) in all_points() {
        match points {
            Points::Tracepoints(tps) => out.extend(tps.iter().map(|t| (t.program, "tracepoint"))),
            Points::BtfTracepoint(b) => out.push((b.program, "tp_btf")),
            Points::Kprobe(k) => out.push((k.program, k.kind())),
            Points::Uprobes { functions, .. } => {
                for f in *functions {
                    out.push((f.entry, "uprobe"));
                    out.extend(f.ret.map(|r| (r, "uretprobe")));
                }
            }
            Points::OneOf(_) => panic!("a variant's points hold another choice"),
        }
    }
    out
}

/// A choice's variants have distinct names, each says what it uses, and what no variant
/// gives is said. A variant that needs another family's variant names one that exists,
/// of a family declared with a choice.
#[test]
fn variants_are_named_and_say_what_they_use() {
    for (f, a) in attach_sets() {
        let Points::OneOf(choice) = &a.points else { continue };
        let names: BTreeSet<&str> = choice.variants.iter().map(|v| v.name).collect();
        assert_eq!(names.len(), choice.variants.len(), "{}", f.name);
        assert!(choice.variants.iter().all(|v| !v.uses.is_empty() && (!v.points.is_empty() || v.global.is_some())), "{}", f.name);
        assert!(!choice.without.is_empty(), "{}", f.name);
        for v in choice.variants {
            for need in v.needs {
                let Need::Variant(family, any_of) = need else { continue };
                assert_ne!(*family, f.name, "{}: {} needs its own family", f.name, v.name);
                for name in *any_of {
                    let exists = attach_sets().any(|(g, b)| {
                        g.name == *family && matches!(&b.points, Points::OneOf(c) if c.variants.iter().any(|w| w.name == *name))
                    });
                    assert!(exists, "{}: {} needs {family}={name}, which is not declared", f.name, v.name);
                }
            }
        }
    }
}

/// The socket calls of every process (no client filter) can be seen with no `syscalls:`
/// tracepoint: each family that has syscall tracepoints has a variant without any, and
/// it is the preferred one.
#[test]
fn every_syscall_tracepoint_has_a_preferred_variant_without_one() {
    for (f, a) in attach_sets() {
        let uses_syscalls = |p: &Points| matches!(p, Points::Tracepoints(tps) if tps.iter().any(|t| t.category == "syscalls"));
        match &a.points {
            Points::OneOf(choice) => {
                let first = &choice.variants[0];
                if choice.variants.iter().any(|v| v.points.iter().any(uses_syscalls)) {
                    assert!(!first.points.iter().any(uses_syscalls), "{}: preferred {} uses syscalls", f.name, first.name);
                    assert!(choice.variants.iter().any(|v| v.name == SYSCALLS), "{}", f.name);
                }
            }
            p => assert!(!uses_syscalls(p), "{}: syscall tracepoints outside a choice", f.name),
        }
    }
}

/// Every tracepoint whose program reads fields is one of tracer-common's layouts, so its
/// layout global exists; and what stands in for a missing field is for one of them.
#[test]
fn tracepoints_with_fields_have_a_layout() {
    for (_, _, points) in all_points() {
        let Points::Tracepoints(tps) = points else { continue };
        for t in *tps {
            if let Some(tp) = t.fields {
                assert_eq!((tp.category, tp.name), (t.category, t.name));
                assert!(tracer_common::layout::TRACEPOINTS.iter().any(|l| (l.category, l.name, l.global) == (tp.category, tp.name, tp.global)), "{}", t.name);
            }
            for (field, _) in t.if_missing {
                assert!(t.fields.is_some_and(|tp| tp.fields.iter().any(|f| f.name == *field)), "{}: {field}", t.name);
            }
        }
    }
}

#[test]
fn every_program_named_is_in_the_ebpf_object_as_its_kind() {
    use object::{Object, ObjectSection, ObjectSymbol};
    let file = object::File::parse(super::super::EBPF_OBJECT).expect("the eBPF object parses");
    for (program, kind) in programs() {
        let sym = file.symbols().find(|s| s.name() == Ok(program)).unwrap_or_else(|| panic!("program {program} not in the object"));
        let section = sym.section_index().and_then(|i| file.section_by_index(i).ok()).expect("a program's section");
        let name = section.name().unwrap_or_default();
        assert!(name == kind || name.starts_with(&format!("{kind}/")), "{program} is in section {name}, not {kind}");
    }
}

#[test]
fn names_are_unique_and_every_kind_has_a_family() {
    let names: BTreeSet<&str> = FAMILIES.iter().map(|f| f.name).collect();
    assert_eq!(names.len(), FAMILIES.len());
    for kind in EventKind::ALL {
        assert!(FAMILIES.iter().any(|f| f.emits.contains(&kind)), "no family emits {kind:?}");
    }
    assert!(FAMILIES.iter().all(|f| !f.emits.is_empty() && !f.attach.is_empty()));
}

/// The client filter's promise: no syscall tracepoint while it sees the calls at libc.
#[test]
fn syscall_tracepoints_give_way_to_libc() {
    for (f, when, points) in all_points() {
        if let Points::Tracepoints(tps) = points {
            for t in tps.iter().filter(|t| t.category == "syscalls") {
                assert_eq!(when, When::SocketCallsAtSyscalls, "{}: {}", f.name, t.name);
            }
        }
    }
}

#[test]
fn every_tls_library_family_is_declared_with_its_report_name() {
    for lib in LibFamily::ALL.into_iter().chain([LibFamily::Fetcher]) {
        let set = for_tls_library(lib).unwrap_or_else(|| panic!("{lib:?} undeclared"));
        assert_eq!(set.family.name, format!("tls_{}", lib.name()));
        assert!(!set.functions.is_empty());
    }
}
