//! The reference fetcher's address-bar parser (`fetch::address::parse_address`) and what the
//! fetcher derives from its result: the origin, the host to resolve, the request target.
use tracer::fetch::address::{Origin, host_for_connect, parse_address, request_target, request_url};

/// The target on one input (the fuzz target and the corpus replay test call it).
pub fn run(input: &str) {
    let Ok(url) = parse_address(input) else { return };
    assert!(matches!(url.scheme(), "http" | "https"), "fetchable scheme: {url}");
    let host = host_for_connect(&url);
    assert!(!host.is_empty(), "no host in {url}");
    // What goes on the request line must not break it.
    let target = request_target(&url);
    assert!(target.starts_with('/'), "request target {target:?} of {url}");
    assert!(!target.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()), "request target {target:?}");
    assert!(!host.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()), "host {host:?}");
    let sent = request_url(&url);
    assert!(sent.fragment().is_none() && sent.username().is_empty() && sent.password().is_none());
    let origin = Origin::of(&url);
    assert_eq!(origin.is_tls(), url.scheme() == "https");
    let _ = origin.to_string();
    // The parsed URL, typed again, is the same URL (what the fetcher stores is re-parsed
    // when a baseline is fetched again).
    let again = parse_address(url.as_str()).unwrap_or_else(|e| panic!("{url} does not parse again: {e}"));
    assert_eq!(again, url, "typed {input:?}");
}

