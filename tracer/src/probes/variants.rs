//! Choosing, per kernel, how each family attaches: the variant of every [`Choice`] (the
//! first whose [`Need`]s the kernel meets, unless `--probe-variant` forces one), the
//! tracepoint layouts and kernel offsets the programs are loaded with, and the report of it
//! all ([`KernelSupport`]): which variant each family got and why, which layouts differ from
//! the compiled one, and what no variant can give on this kernel, with its cost.
use std::{collections::BTreeMap, path::Path};

use tracer_common::layout::{KernelOffsets, MISSING};

use super::{
    families::{self, Choice, Family, GROUP_DEAD_FROM_TASK, Need, Points, Tracepoint, Variant, When},
    kernel::{BTF_VMLINUX, KernelSupport, KernelSurvey, Unavailable, VariantChoice},
};

/// A variant forced with `--probe-variant FAMILY=NAME` that does not exist or that this
/// kernel cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForcedVariantError {
    #[error("--probe-variant {family}={variant}: {family} has no variant {variant} (it has: {known})")]
    Unknown { family: String, variant: String, known: String },
    #[error("--probe-variant {family}={variant}: this kernel lacks {missing}")]
    Unmet { family: String, variant: String, missing: String },
}

/// What the loader attaches and loads on this kernel.
pub struct Plan {
    /// Concrete attach points (variants resolved), with family and when, in declaration order.
    pub points: Vec<(&'static Family, When, &'static Points)>,
    /// `u32` globals set to 1 by the chosen variants.
    pub flags: Vec<&'static str>,
    pub offsets: KernelOffsets,
    pub support: KernelSupport,
}

/// The variants chosen so far in a plan, by family (a family may have several choices).
pub type Chosen = BTreeMap<&'static str, Vec<&'static str>>;

/// The first unmet need of `needs` on this kernel, in words. Needs of another family's
/// variant ([`Need::Variant`]) are about the run, not the kernel: met here (see
/// [`unmet_in_plan`]).
pub fn unmet(survey: &KernelSurvey, needs: &[Need]) -> Option<String> {
    unmet_in_plan(survey, needs, None)
}

/// [`unmet`], with the needs of other families' variants checked against `chosen`.
pub fn unmet_in_plan(survey: &KernelSurvey, needs: &[Need], chosen: Option<&Chosen>) -> Option<String> {
    needs.iter().find_map(|n| match *n {
        Need::Variant(family, any_of) => {
            let got = chosen?.get(family);
            let wanted = any_of.join(" or ");
            match got {
                Some(names) if any_of.iter().any(|n| names.contains(n)) => None,
                Some(names) => Some(format!("{family}'s {wanted} variant ({family} got {})", names.join(", "))),
                None => Some(format!("{family}'s {wanted} variant ({family} is not attached in this run)")),
            }
        }
        Need::Tracepoint(c, t) if !survey.has_tracepoint(c, t) => Some(format!("tracepoint {c}:{t}")),
        Need::Kprobes if !survey.kprobes => Some("kprobes (CONFIG_KPROBES)".to_string()),
        Need::Symbol(s) if !survey.has_symbol(s) => Some(format!("{s} (not in /proc/kallsyms)")),
        Need::Btf(members) => {
            let missing: Vec<&str> = members.iter().copied().filter(|m| survey.btf_member(m).is_none()).collect();
            match (survey.btf(), missing.is_empty()) {
                (Err(e), _) => Some(format!("BTF ({e})")),
                (Ok(_), false) => Some(format!("{} in BTF", missing.join(", "))),
                _ => None,
            }
        }
        _ => None,
    })
}

/// The variant of `choice` for this kernel: the forced one, or the first whose needs are
/// met. Returns it (None: none works here) and why.
pub fn choose<'a>(
    survey: &KernelSurvey,
    family: &str,
    choice: &'a Choice,
    forced: &BTreeMap<String, String>,
    chosen: &Chosen,
) -> Result<(Option<&'a Variant>, String), ForcedVariantError> {
    if let Some(name) = forced.get(family) {
        if let Some(v) = choice.variants.iter().find(|v| v.name == name) {
            if let Some(missing) = unmet_in_plan(survey, v.needs, Some(chosen)) {
                return Err(ForcedVariantError::Unmet { family: family.into(), variant: name.clone(), missing });
            }
            return Ok((Some(v), "forced with --probe-variant".to_string()));
        }
        // A family with several choices is forced per choice: the name may be another's.
        if !any_choice_of(family).any(|c| c.variants.iter().any(|v| v.name == name)) {
            let known: Vec<&str> = any_choice_of(family).flat_map(|c| c.variants.iter().map(|v| v.name)).collect();
            return Err(ForcedVariantError::Unknown { family: family.into(), variant: name.clone(), known: known.join(", ") });
        }
    }
    Ok(first_met(survey, choice, chosen))
}

fn first_met<'a>(survey: &KernelSurvey, choice: &'a Choice, chosen: &Chosen) -> (Option<&'a Variant>, String) {
    let mut skipped = Vec::new();
    for v in choice.variants {
        match unmet_in_plan(survey, v.needs, Some(chosen)) {
            None if skipped.is_empty() => return (Some(v), "preferred; the kernel has what it needs".to_string()),
            None => return (Some(v), format!("this kernel lacks {}", skipped.join("; "))),
            Some(missing) => skipped.push(format!("{missing} ({})", v.name)),
        }
    }
    (None, format!("this kernel lacks {}", skipped.join("; ")))
}

fn any_choice_of(family: &str) -> impl Iterator<Item = &'static Choice> + '_ {
    families::attach_sets().filter(move |(f, _)| f.name == family).filter_map(|(_, a)| match &a.points {
        Points::OneOf(c) => Some(c),
        _ => None,
    })
}

/// The plan for this kernel and run (`wanted`: which [`When`]s apply).
pub fn plan(survey: &KernelSurvey, wanted: &dyn Fn(When) -> bool, forced: &BTreeMap<String, String>) -> Result<Plan, ForcedVariantError> {
    for family in forced.keys() {
        if any_choice_of(family).next().is_none() {
            let with_choices: Vec<&str> = families::FAMILIES.iter().filter(|f| any_choice_of(f.name).next().is_some()).map(|f| f.name).collect();
            return Err(ForcedVariantError::Unknown {
                family: family.clone(),
                variant: forced[family].clone(),
                known: format!("no variants; families with variants: {}", with_choices.join(", ")),
            });
        }
    }
    let resolved = resolve_choices(survey, wanted, forced)?;
    let mut points = Vec::new();
    let mut flags = Vec::new();
    let mut variants = Vec::new();
    let mut unavailable = Vec::new();
    for (i, (family, attach)) in families::attach_sets().enumerate() {
        if !wanted(attach.when) {
            continue;
        }
        match &attach.points {
            Points::OneOf(choice) => {
                let (chosen, why) = resolved[&i].clone();
                variants.push(VariantChoice {
                    family: family.name.into(),
                    what: choice.what.into(),
                    variant: chosen.map(|v| format!("{} ({})", v.name, v.uses)),
                    why,
                });
                match chosen {
                    Some(v) => {
                        points.extend(v.points.iter().map(|p| (family, attach.when, p)));
                        flags.extend(v.global);
                        if let Some(m) = v.misses {
                            unavailable.push(Unavailable { family: family.name.into(), what: choice.what.into(), cost: m.into() });
                        }
                    }
                    None => unavailable.push(Unavailable { family: family.name.into(), what: choice.what.into(), cost: choice.without.into() }),
                }
            }
            p => {
                if let Points::Tracepoints(tps) = p {
                    for t in *tps {
                        unavailable.extend(missing_fields(survey, family, t));
                    }
                }
                points.push((family, attach.when, p));
            }
        }
    }
    let layouts = survey
        .layouts
        .iter()
        .filter(|l| !l.differences.is_empty())
        .map(|l| format!("{}:{}: {}", l.fields.category, l.fields.name, l.differences.join(", ")))
        .collect();
    let reason = format!(
        "kernel {}: kprobes {}, BTF {}; tracepoint layouts from their format files",
        survey.release,
        if survey.kprobes { "available" } else { "unavailable (no /sys/bus/event_source/devices/kprobe: CONFIG_KPROBES unset)" },
        if Path::new(BTF_VMLINUX).exists() { "available" } else { "unavailable (no /sys/kernel/btf/vmlinux)" },
    );
    Ok(Plan {
        points,
        flags,
        offsets: survey.offsets(),
        support: KernelSupport {
            release: survey.release.clone(),
            kprobes: survey.kprobes,
            btf: Path::new(BTF_VMLINUX).exists(),
            reason,
            variants,
            layouts,
            unavailable,
        },
    })
}

/// Each wanted choice's variant and why, by its index in [`families::attach_sets`]. A choice
/// whose variants need another family's variant ([`Need::Variant`]) is resolved after that
/// family's choices, whatever the order of declaration.
fn resolve_choices(
    survey: &KernelSurvey,
    wanted: &dyn Fn(When) -> bool,
    forced: &BTreeMap<String, String>,
) -> Result<BTreeMap<usize, (Option<&'static Variant>, String)>, ForcedVariantError> {
    let mut pending: Vec<(usize, &'static Family, &'static Choice)> = families::attach_sets()
        .enumerate()
        .filter(|(_, (_, a))| wanted(a.when))
        .filter_map(|(i, (f, a))| match &a.points {
            Points::OneOf(c) => Some((i, f, c)),
            _ => None,
        })
        .collect();
    let mut chosen = Chosen::new();
    let mut out = BTreeMap::new();
    while !pending.is_empty() {
        let families_pending: Vec<&str> = pending.iter().map(|(_, f, _)| f.name).collect();
        // Ready: no variant waits for a family whose choice is still open.
        let ready = pending.iter().position(|(_, f, c)| {
            c.variants.iter().flat_map(|v| v.needs.iter()).all(|n| match n {
                Need::Variant(other, _) => *other == f.name || !families_pending.contains(other),
                _ => true,
            })
        });
        // A loop of needs (a declaration error, checked by the families' tests): in order.
        let (i, family, choice) = pending.remove(ready.unwrap_or(0));
        let (variant, why) = choose(survey, family.name, choice, forced, &chosen)?;
        if let Some(v) = variant {
            chosen.entry(family.name).or_default().push(v.name);
        }
        out.insert(i, (variant, why));
    }
    Ok(out)
}

/// Fields of `t` this kernel lacks and what that costs: nothing but a note where something
/// stands in for them (with what), the tracepoint itself where nothing does.
fn missing_fields(survey: &KernelSurvey, family: &Family, t: &Tracepoint) -> Vec<Unavailable> {
    let Some(found) = survey.layout(t.category, t.name) else { return Vec::new() };
    let Ok(layout) = &found.layout else { return Vec::new() };
    let mut out = Vec::new();
    for (i, field) in found.fields.fields.iter().enumerate() {
        if layout.off[i] != MISSING {
            continue;
        }
        match t.if_missing.iter().find(|(f, _)| *f == field.name) {
            Some((_, instead))
                if *instead == GROUP_DEAD_FROM_TASK
                    && (survey.btf_member("task_struct.signal").is_none() || survey.btf_member("signal_struct.live").is_none()) =>
            {
                out.push(Unavailable {
                    family: family.name.into(),
                    what: format!("{}:{} {}", t.category, t.name, field.name),
                    cost: "no BTF to read the task with: a process is taken as gone when its main thread exits, so one whose main thread ends first leaves its tree early".into(),
                })
            }
            Some(_) => {}
            None => out.push(Unavailable {
                family: family.name.into(),
                what: format!("{}:{}", t.category, t.name),
                cost: format!("its field {} is missing on this kernel: the tracepoint is not attached", field.name),
            }),
        }
    }
    out
}

/// The globals the programs are loaded with: each tracepoint's layout and the kernel offsets
/// (names as in the eBPF object).
pub fn layout_globals(survey: &KernelSurvey) -> Vec<(&'static str, tracer_common::layout::TpLayout)> {
    survey.layouts.iter().filter_map(|l| l.layout.as_ref().ok().map(|layout| (l.fields.global, *layout))).collect()
}

/// `FAMILY=VARIANT` of `--probe-variant`.
pub fn parse_forced(s: &str) -> Result<(String, String), String> {
    let (f, v) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected FAMILY=VARIANT, e.g. tcp_state=kprobe"))?;
    if f.is_empty() || v.is_empty() {
        return Err(format!("{s:?}: expected FAMILY=VARIANT, e.g. tcp_state=kprobe"));
    }
    Ok((f.to_string(), v.to_string()))
}

impl KernelSupport {
    /// The start-up report's lines about the kernel: what it offers, each choice, each
    /// layout read from a format file, and what is unavailable with its cost.
    pub fn report(&self) -> String {
        let mut out = format!("  {}\n", self.reason);
        for v in &self.variants {
            match &v.variant {
                Some(name) => out.push_str(&format!("  variant: {} {}: {name}: {}\n", v.family, v.what, v.why)),
                None => out.push_str(&format!("  variant: {} {}: none works here: {}\n", v.family, v.what, v.why)),
            }
        }
        for l in &self.layouts {
            out.push_str(&format!("  layout: {l}\n"));
        }
        for u in &self.unavailable {
            out.push_str(&format!("  unavailable: {} {}: {}\n", u.family, u.what, u.cost));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_variants_parse_and_bad_ones_are_named() {
        assert_eq!(parse_forced("tcp_state=kprobe"), Ok(("tcp_state".into(), "kprobe".into())));
        assert!(parse_forced("tcp_state").unwrap_err().contains("FAMILY=VARIANT"));
        assert!(parse_forced("=x").is_err());
    }

    /// On this kernel: whatever it lacks, the plan says which variant each choice got, and
    /// forcing a variant it cannot run, or one that does not exist, is a clear error.
    #[test]
    fn the_plan_names_each_choice_and_refuses_impossible_forcing() {
        let survey = KernelSurvey::of_this_kernel();
        let all = |_: When| true;
        let p = plan(&survey, &all, &BTreeMap::new()).unwrap();
        let tcp: Vec<&VariantChoice> = p.support.variants.iter().filter(|v| v.family == "tcp_state").collect();
        assert_eq!(tcp.len(), 2, "{:?}", p.support.variants);
        assert!(tcp.iter().all(|v| !v.why.is_empty()));
        let report = p.support.report();
        assert!(report.contains("variant: tcp_state error reports: "), "{report}");

        let mut forced = BTreeMap::new();
        forced.insert("tcp_state".to_string(), "no_such".to_string());
        let err = plan(&survey, &all, &forced).err().unwrap().to_string();
        assert!(err.contains("tcp_state has no variant no_such") && err.contains("kprobe"), "{err}");
        forced.insert("tcp_state".to_string(), "kprobe".to_string());
        match plan(&survey, &all, &forced) {
            Ok(p) => assert!(survey.kprobes && p.support.variants.iter().any(|v| v.why == "forced with --probe-variant")),
            Err(e) => assert!(!survey.kprobes && e.to_string().contains("this kernel lacks kprobes"), "{e}"),
        }
        let mut forced = BTreeMap::new();
        forced.insert("process".to_string(), "kprobe".to_string());
        let err = plan(&survey, &all, &forced).err().unwrap().to_string();
        assert!(err.contains("families with variants: tcp_connect, tcp_state, dns, tls_fd"), "{err}");
    }

    /// The socket calls' three families go together: tls_fd and tcp_connect take the
    /// socket-layer variant only with dns's, whatever the order they are declared in, and a
    /// mix that cannot work is refused when forced.
    #[test]
    fn the_socket_call_families_choose_together() {
        let survey = KernelSurvey::of_this_kernel();
        let all = |_: When| true;
        let got = |p: &Plan, family: &str, what: &str| {
            p.support.variants.iter().find(|v| v.family == family && v.what == what).and_then(|v| v.variant.clone()).unwrap_or_default()
        };
        let p = plan(&survey, &all, &BTreeMap::new()).unwrap();
        let dns = got(&p, "dns", "socket calls");
        let sock = unmet(&survey, families::DNS_SOCK_NEEDS).is_none();
        let kprobe = unmet(&survey, families::DNS_KPROBE_NEEDS).is_none();
        let layer = sock || kprobe;
        let expected = if sock { "sock_length" } else if kprobe { "kprobe" } else { "syscalls" };
        assert!(dns.starts_with(expected), "{dns}");
        // tls_fd takes dns's variant of the same name; tcp_connect is at the SYN with either.
        assert!(got(&p, "tls_fd", "fds under TLS calls, writev/readv").starts_with(expected));
        assert_eq!(got(&p, "tcp_connect", "connects").starts_with("tp_btf"), layer);
        let sock = layer;
        // The syscall tracepoints are attached exactly when dns falls back to them.
        let syscalls = p.points.iter().any(|(_, _, pts)| matches!(pts, Points::Tracepoints(t) if t.iter().any(|t| t.category == "syscalls")));
        assert_eq!(syscalls, !sock);

        // Forced back to the syscalls: all three follow dns.
        let forced: BTreeMap<String, String> = [("dns".to_string(), "syscalls".to_string())].into();
        let p = plan(&survey, &all, &forced).unwrap();
        assert!(got(&p, "tls_fd", "fds under TLS calls, writev/readv").starts_with("syscalls"));
        assert!(got(&p, "tcp_connect", "connects").starts_with("syscalls"));
        // tcp_connect at the SYN with dns at the syscalls: UDP connects would go unseen.
        let forced: BTreeMap<String, String> =
            [("dns".to_string(), "syscalls".to_string()), ("tcp_connect".to_string(), "tp_btf".to_string())].into();
        let err = plan(&survey, &all, &forced).err().unwrap().to_string();
        assert!(err.contains("dns's sock_length or kprobe variant (dns got syscalls)"), "{err}");
        // The other way round works (connects at the syscalls, data at the socket layer).
        if sock {
            let forced: BTreeMap<String, String> = [("tcp_connect".to_string(), "syscalls".to_string())].into();
            let p = plan(&survey, &all, &forced).unwrap();
            assert!(got(&p, "dns", "socket calls").starts_with(expected));
        }
    }
}
