//! What the daemon keeps of a captured URL, request target or host (`tracer::redact`): any
//! string a client sent, through `path`, `url`, `authority` and `request_line`.
use tracer::redact;

/// The target on one input (the fuzz target and the corpus replay test call it).
pub fn run(input: &str) {
    let host = redact::authority(input);
    assert!(!host.contains('@'), "user-info left in {host:?} (from {input:?})");
    for kept in [redact::path(input), redact::url(input)] {
        // No query value survives: every `=` in the query is followed by `*`.
        if let Some((_, q)) = kept.split_once('?') {
            for kv in q.split('&') {
                if let Some((_, v)) = kv.split_once('=') {
                    assert_eq!(v, "*", "query value kept in {kept:?} (from {input:?})");
                }
            }
        }
        assert!(!kept.contains('#'), "fragment kept in {kept:?}");
        // An absolute URL loses its user-info.
        if let Some((scheme, rest)) = kept.split_once("://")
            && !scheme.is_empty()
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            assert!(!authority.contains('@'), "user-info kept in {kept:?} (from {input:?})");
        }
    }
    let _ = redact::request_line(input);
}

