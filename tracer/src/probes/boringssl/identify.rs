//! Grouping error sites into functions, and telling SSL_write, SSL_read and
//! SSL_do_handshake apart among them by their reason codes and calls.
use std::collections::{BTreeMap, HashMap};

use iced_x86::Code;

use super::{
    ERR_LIB_SSL, FindError, MAX_FUNCTION_BYTES, SSL_DO_HANDSHAKE_REASONS, SSL_READ_REASONS, SSL_WRITE_SIGNATURES,
    control_flow::follow_function,
    error_sites::{ErrorSite, parse_site},
    scan::{Text, count_direct_calls, scan_rip_lea, start_candidates},
};

/// What identification needs to know about one function holding error sites.
#[derive(Debug, Clone)]
pub(crate) struct FuncSummary {
    pub start: u64,
    /// The library code the source file's error sites pass (ERR_LIB_SSL for ssl_lib.cc).
    pub lib: u32,
    /// Error sites in address order.
    pub sites: Vec<ErrorSite>,
    /// Direct call targets in address order.
    pub calls: Vec<u64>,
    /// How many 8-byte stack arguments the function reads (`[rbp + 0x10 + 8k]` with frame
    /// pointers: the arguments after the sixth). Tells apart functions of the same checks but
    /// different arity (EVP_AEAD_CTX_seal's 10 arguments, seal_scatter's 13).
    pub stack_args: u32,
}

impl FuncSummary {
    pub(super) fn reasons(&self, err_put: u64) -> Vec<Option<u32>> {
        self.sites.iter().map(|s| s.reason_of(self.lib, err_put)).collect()
    }
    pub(super) fn has_reasons(&self, err_put: u64, want: &[u32]) -> bool {
        let got = self.reasons(err_put);
        got.len() == want.len() && got.iter().zip(want).all(|(g, w)| *g == Some(*w))
    }
    /// The same reasons as `want`, in any order (each once).
    pub(super) fn has_reason_set(&self, err_put: u64, want: &[u32]) -> bool {
        let mut got: Vec<Option<u32>> = self.reasons(err_put);
        let mut want: Vec<Option<u32>> = want.iter().map(|w| Some(*w)).collect();
        got.sort_unstable();
        want.sort_unstable();
        got == want
    }
    pub(super) fn calls_to(&self, target: u64) -> bool {
        self.calls.contains(&target)
    }
}

/// The three functions, by virtual address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identified {
    pub ssl_write: u64,
    pub ssl_read: u64,
    pub ssl_do_handshake: u64,
    pub ssl_peek: Option<u64>,
    pub read_impl: u64,
    pub detail: String,
}

pub(super) fn hex_list(v: &[u32]) -> String {
    let v: Vec<String> = v.iter().map(|a| format!("{a:#x}")).collect();
    format!("[{}]", v.join(", "))
}

pub(super) fn list(addrs: &[u64]) -> String {
    let v: Vec<String> = addrs.iter().map(|a| format!("{a:#x}")).collect();
    format!("[{}]", v.join(", "))
}

/// Tell SSL_write, SSL_do_handshake and SSL_read apart among the functions with ssl_lib.cc
/// error sites. `plt_name` names the import a call target's PLT stub jumps to.
pub(crate) fn identify(
    funcs: &[FuncSummary],
    err_put: u64,
    plt_name: &dyn Fn(u64) -> Option<String>,
) -> Result<Identified, FindError> {
    let by_start: HashMap<u64, &FuncSummary> = funcs.iter().map(|f| (f.start, f)).collect();
    let handshakes: Vec<u64> =
        funcs.iter().filter(|f| f.has_reasons(err_put, SSL_DO_HANDSHAKE_REASONS)).map(|f| f.start).collect();

    // SSL_write: its reason codes, and it calls exactly one [0x86] function.
    let writes: Vec<&FuncSummary> =
        funcs.iter().filter(|f| SSL_WRITE_SIGNATURES.iter().any(|sig| f.has_reason_set(err_put, sig))).collect();
    if writes.len() != 1 {
        return Err(FindError::Candidates {
            function: "SSL_write",
            count: writes.len(),
            detail: format!(
                "functions whose error reasons are one of {}: {}",
                SSL_WRITE_SIGNATURES.iter().map(|s| hex_list(s)).collect::<Vec<_>>().join(" "),
                list(&writes.iter().map(|f| f.start).collect::<Vec<_>>())
            ),
        });
    }
    let write = writes[0];
    let mut called: Vec<u64> = handshakes.iter().copied().filter(|h| write.calls_to(*h)).collect();
    called.dedup();
    if called.len() != 1 {
        return Err(FindError::Candidates {
            function: "SSL_do_handshake",
            count: called.len(),
            detail: format!(
                "functions with the single error reason 0x86 that SSL_write ({:#x}) calls; all 0x86 functions: {}",
                write.start,
                list(&handshakes)
            ),
        });
    }
    let handshake = called[0];

    // SSL_read / SSL_peek: [0x42], then calls: read routine (which calls SSL_do_handshake),
    // memcpy, and (SSL_read only) an internal consume routine.
    let is_memcpy = |t: u64| matches!(plt_name(t).as_deref(), Some("memcpy" | "__memcpy_chk" | "memmove"));
    let mut reads = Vec::new();
    let mut peeks = Vec::new();
    for f in funcs.iter().filter(|f| f.has_reasons(err_put, SSL_READ_REASONS)) {
        let calls: Vec<u64> = f.calls.iter().copied().filter(|&t| t != err_put).collect();
        let Some(ri) = calls.iter().position(|t| {
            *t != handshake && by_start.get(t).is_some_and(|r| r.calls_to(handshake) && !r.sites.is_empty())
        }) else {
            continue;
        };
        let Some(mi) = calls[ri + 1..].iter().position(|&t| is_memcpy(t)).map(|i| i + ri + 1) else {
            continue;
        };
        // Any internal (non-PLT) call after memcpy is the consume routine; PLT calls there
        // are abort/__stack_chk_fail.
        let consume = calls[mi + 1..].iter().any(|&t| plt_name(t).is_none() && t != calls[ri]);
        if consume { reads.push((f.start, calls[ri])) } else { peeks.push(f.start) }
    }
    if reads.len() != 1 {
        return Err(FindError::Candidates {
            function: "SSL_read",
            count: reads.len(),
            detail: format!(
                "functions with the single reason 0x42 calling a read routine that calls SSL_do_handshake, then memcpy, \
                 then a consume routine: {}; look-alikes without the consume call (SSL_peek): {}",
                list(&reads.iter().map(|r| r.0).collect::<Vec<_>>()),
                list(&peeks)
            ),
        });
    }
    let (read, read_impl) = reads[0];
    // SSL_peek, when present, must share the read routine.
    let peek = match peeks.as_slice() {
        [] => None,
        [p] => Some(*p),
        _ => None,
    };
    if let Some(p) = peek {
        let shares = by_start.get(&p).is_some_and(|f| f.calls_to(read_impl));
        if !shares {
            return Err(FindError::Verification(format!(
                "SSL_peek look-alike {p:#x} does not call SSL_read's read routine {read_impl:#x}"
            )));
        }
    }
    let distinct = [write.start, read, handshake];
    if distinct[0] == distinct[1] || distinct[1] == distinct[2] || distinct[0] == distinct[2] {
        return Err(FindError::Verification(format!("the three functions are not distinct: {}", list(&distinct))));
    }
    let detail = format!(
        "SSL_write {:#x} reasons {} calls SSL_do_handshake {handshake:#x} (reason 0x86; {} such \
         functions); SSL_read {read:#x} reason 0x42 calls read routine {read_impl:#x} (which calls SSL_do_handshake), \
         memcpy, consume; SSL_peek {}",
        write.start,
        hex_list(&write.reasons(err_put).into_iter().flatten().collect::<Vec<_>>()),
        handshakes.len(),
        peek.map(|p| format!("{p:#x}")).unwrap_or_else(|| format!("not identified ({} look-alikes)", peeks.len())),
    );
    Ok(Identified {
        ssl_write: write.start,
        ssl_read: read,
        ssl_do_handshake: handshake,
        ssl_peek: peek,
        read_impl,
        detail,
    })
}

/// Error sites found and grouped into functions.
pub(crate) struct Analysis {
    pub funcs: Vec<FuncSummary>,
    pub err_put: u64,
    pub sites: usize,
    /// Sites whose function could not be delimited, with the reason.
    pub unresolved: Vec<(u64, String)>,
    /// Direct callers of every function start considered.
    pub callers: HashMap<u64, usize>,
    /// Whether each chosen function start follows int3 padding (else it was chosen because
    /// it is a direct call target).
    pub padded: HashMap<u64, bool>,
}

/// Steps 3-5: sites -> functions -> summaries, for the error sites of one source file
/// (`target`, the address of its path string) whose reports pass library code `lib`.
pub(crate) fn analyse_text(text: Text, target: u64, lib: u32) -> Result<Analysis, FindError> {
    let sites = scan_rip_lea(text.bytes, text.vaddr, target);
    if sites.is_empty() {
        return Err(FindError::NoErrorSites);
    }
    let per_site: Vec<Vec<u64>> = sites.iter().map(|&s| start_candidates(text, s)).collect();
    let mut all: Vec<u64> = per_site.iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    let counts = count_direct_calls(text.bytes, text.vaddr, &all);
    let callers: HashMap<u64, usize> = all.iter().copied().zip(counts).collect();

    let mut unresolved = Vec::new();
    let mut groups: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (&site, cands) in sites.iter().zip(&per_site) {
        match cands.iter().find(|&&c| text.is_padded(c) || callers.get(&c).copied().unwrap_or(0) > 0) {
            Some(&start) => groups.entry(start).or_default().push(site),
            None => unresolved.push((site, "no function start found before it".to_string())),
        }
    }
    let starts: Vec<u64> = groups.keys().copied().collect();
    let mut funcs = Vec::new();
    for (i, (&start, group)) in groups.iter().enumerate() {
        let next_start = starts.get(i + 1).copied().unwrap_or(u64::MAX);
        let limit = next_start.min(start + MAX_FUNCTION_BYTES).min(text.end());
        let func = match follow_function(text, start, limit) {
            Ok(f) => f,
            Err(e) => {
                unresolved.extend(group.iter().map(|&s| (s, format!("function at {start:#x}: {e}"))));
                continue;
            }
        };
        let mut ok = true;
        for &s in group {
            let is_lea = func.insns.get(&s).is_some_and(|i| {
                i.code() == Code::Lea_r64_m && i.is_ip_rel_memory_operand() && i.ip_rel_memory_address() == target
            });
            if !is_lea {
                unresolved.push((s, format!("not reached from the function start {start:#x}")));
                ok = false;
            }
        }
        if !ok {
            continue;
        }
        // Every lea of the string the decode found (it may also reach sites grouped elsewhere
        // through a jump; those then belong to both and the reason lists show it).
        let site_addrs: Vec<u64> = func
            .insns
            .iter()
            .filter(|(_, i)| {
                i.code() == Code::Lea_r64_m && i.is_ip_rel_memory_operand() && i.ip_rel_memory_address() == target
            })
            .map(|(&a, _)| a)
            .collect();
        let sites: Vec<ErrorSite> = site_addrs.iter().map(|&a| parse_site(text, &func, a)).collect();
        funcs.push(FuncSummary { start, lib, sites, calls: func.calls(), stack_args: func.stack_args() });
    }
    // ERR_put_error: the function most sites call.
    let mut votes: HashMap<u64, usize> = HashMap::new();
    for s in funcs.iter().flat_map(|f| &f.sites) {
        if let (Some(c), Some(l)) = (s.call, s.lib)
            && l == lib
        {
            *votes.entry(c).or_default() += 1;
        }
    }
    let Some((&err_put, _)) = votes.iter().max_by_key(|(a, n)| (**n, std::cmp::Reverse(**a))) else {
        return Err(FindError::Verification(format!(
            "none of the {} {} sites is a recognisable ERR_put_error({lib:#x}, ...) call",
            sites.len(),
            if lib == ERR_LIB_SSL { "ssl_lib.cc" } else { "error" }
        )));
    };
    let padded = starts.iter().map(|&s| (s, text.is_padded(s))).collect();
    Ok(Analysis { funcs, err_put, sites: sites.len(), unresolved, callers, padded })
}
