//! HAR export (`history::har::to_har`): page loads built from arbitrary data (any strings,
//! indices that point nowhere, timestamps in any order), exported; the output must be valid
//! JSON with one entry per request and numeric timings. Also the stored form's round trip
//! (`detail_json`: a page load written to the database must read back the same, its failures
//! any text in any phase included).
use arbitrary::{Arbitrary, Result, Unstructured};
use serde_json::Value;
use tracer::failure::{Failure, Phase};
use tracer::history::StoredPageLoad;
use tracer::history::har::to_har;
use tracer::redact::Header;
use tracer::stitch::model::{Cap, CapturedBody, ClientInfo, PageCut, Connection, DnsLookup, PageLoad, Request, Timings, TlsSession, ms};

/// A phase in ms as the stitcher makes them: -1 (did not happen) or a whole number of ns.
fn phase(u: &mut Unstructured) -> Result<f64> {
    Ok(if u.arbitrary()? { -1.0 } else { ms(u.arbitrary()?) })
}

fn timings(u: &mut Unstructured) -> Result<Timings> {
    Ok(Timings {
        blocked: phase(u)?,
        dns: phase(u)?,
        connect: phase(u)?,
        tcp: phase(u)?,
        ssl: phase(u)?,
        send: phase(u)?,
        wait: phase(u)?,
        receive: phase(u)?,
    })
}

fn small_vec<T>(u: &mut Unstructured, max: usize, f: impl Fn(&mut Unstructured) -> Result<T>) -> Result<Vec<T>> {
    let n = u.int_in_range(0..=max)?;
    (0..n).map(|_| f(u)).collect()
}

/// A failure (or none) as its stored text form reads them: any text, in any phase.
fn failure(u: &mut Unstructured) -> Result<Option<Failure>> {
    Ok(if u.arbitrary()? { None } else { Some(Failure::from_text(&String::arbitrary(u)?).in_phase(*u.choose(&Phase::ALL)?)) })
}

/// A captured body (or none): any bytes, truncated or not.
fn body(u: &mut Unstructured) -> Result<Option<CapturedBody>> {
    Ok(if u.arbitrary()? { None } else { Some(CapturedBody { data: u.arbitrary()?, truncated: u.arbitrary()? }) })
}

/// An index that usually points into a list of `len` and sometimes past it.
fn index(u: &mut Unstructured, len: usize) -> Result<Option<usize>> {
    Ok(if u.arbitrary()? { None } else { Some(u.int_in_range(0..=len + 1)?) })
}

fn request(u: &mut Unstructured, connections: usize, lookups: usize) -> Result<Request> {
    Ok(Request {
        connection: index(u, connections)?,
        dns: index(u, lookups)?,
        tgid: u.arbitrary()?,
        pid: u.arbitrary()?,
        comm: u.arbitrary()?,
        method: u.arbitrary()?,
        url: u.arbitrary()?,
        host: u.arbitrary()?,
        path: u.arbitrary()?,
        protocol: u.arbitrary()?,
        stream_id: u.arbitrary()?,
        status: u.arbitrary()?,
        redirect_to: u.arbitrary()?,
        content_type: u.arbitrary()?,
        request_bytes: u.arbitrary()?,
        response_bytes: u.arbitrary()?,
        response_header_bytes: u.arbitrary()?,
        started_ns: u.arbitrary()?,
        ended_ns: u.arbitrary()?,
        timings: timings(u)?,
        new_connection: u.arbitrary()?,
        error: failure(u)?,
        complete: u.arbitrary()?,
        request_body: body(u)?,
        response_body: body(u)?,
        request_headers: small_vec(u, 4, header)?,
        response_headers: small_vec(u, 4, header)?,
    })
}

fn header(u: &mut Unstructured) -> Result<Header> {
    Ok(Header { name: u.arbitrary()?, value: u.arbitrary()? })
}

fn connection(u: &mut Unstructured) -> Result<Connection> {
    let tls = if u.arbitrary()? {
        Some(TlsSession {
            library: u.arbitrary()?,
            handshake_start_ns: u.arbitrary()?,
            handshake_end_ns: u.arbitrary()?,
            estimated: u.arbitrary()?,
            version: u.arbitrary()?,
            cipher: u.arbitrary()?,
            alpn: u.arbitrary()?,
            sni: u.arbitrary()?,
        })
    } else {
        None
    };
    Ok(Connection {
        tgid: u.arbitrary()?,
        pid: u.arbitrary()?,
        comm: u.arbitrary()?,
        fd: u.arbitrary()?,
        skaddr: u.arbitrary()?,
        // Usually an address (the HAR's serverIPAddress and connection come from them).
        src: if u.arbitrary()? { Some(format!("{}", std::net::SocketAddr::arbitrary(u)?)) } else { u.arbitrary()? },
        dst: if u.arbitrary()? { Some(format!("{}", std::net::SocketAddr::arbitrary(u)?)) } else { u.arbitrary()? },
        connect_start_ns: u.arbitrary()?,
        established_ns: u.arbitrary()?,
        closed_ns: u.arbitrary()?,
        error: u.arbitrary()?,
        tls,
        requests: u.arbitrary()?,
        quic: None,
    })
}

fn lookup(u: &mut Unstructured) -> Result<DnsLookup> {
    Ok(DnsLookup {
        tgid: u.arbitrary()?,
        comm: u.arbitrary()?,
        name: u.arbitrary()?,
        qtypes: u.arbitrary()?,
        started_ns: u.arbitrary()?,
        ended_ns: u.arbitrary()?,
        rcode: u.arbitrary()?,
        cname_chain: u.arbitrary()?,
        addresses: u.arbitrary()?,
        min_ttl: u.arbitrary()?,
        server: u.arbitrary()?,
        error: failure(u)?,
    })
}

fn page_load(u: &mut Unstructured) -> Result<StoredPageLoad> {
    let connections = small_vec(u, 8, connection)?;
    let dns = small_vec(u, 8, lookup)?;
    let requests = small_vec(u, 16, |u| request(u, connections.len(), dns.len()))?;
    let redirect_chain = small_vec(u, 8, |u| u.int_in_range(0..=requests.len() + 1))?;
    let page = PageLoad {
        client: ClientInfo { tgid: u.arbitrary()?, name: u.arbitrary()?, exe: u.arbitrary()? },
        url: u.arbitrary()?,
        started_ns: u.arbitrary()?,
        ended_ns: u.arbitrary()?,
        status: u.arbitrary()?,
        error: failure(u)?,
        requests,
        connections,
        dns,
        redirect_chain,
        cut: if u.arbitrary()? { Some(PageCut { cap: *u.choose(&Cap::ALL)?, limit: u.arbitrary()? }) } else { None },
    };
    // The wall-clock anchor is the daemon's clock when it stored the page load: 1970..2100.
    Ok(StoredPageLoad { id: u.arbitrary()?, started_at_ms: u.int_in_range(0..=4_102_444_800_000)?, page })
}

fn number(v: &Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// The target on one input (the fuzz target and the corpus replay test call it).
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(pages) = small_vec(&mut u, 3, page_load) else { return };

    for p in &pages {
        let stored = serde_json::to_string(p).expect("a page load serialises");
        let back: StoredPageLoad = serde_json::from_str(&stored).expect("a stored page load reads back");
        assert_eq!(&back, p, "detail_json round trip");
    }

    let har = to_har(&pages);
    let text = serde_json::to_string_pretty(&har).expect("HAR serialises");
    let parsed: Value = serde_json::from_str(&text).expect("the HAR export is valid JSON");
    let log = &parsed["log"];
    assert_eq!(log["version"], "1.2");
    assert_eq!(log["pages"].as_array().expect("pages").len(), pages.len());
    let entries = log["entries"].as_array().expect("entries");
    let requests: usize = pages.iter().map(|p| p.page.requests.len()).sum();
    assert_eq!(entries.len(), requests, "one entry per request");
    for e in entries {
        assert!(number(&e["time"], "time") >= 0.0, "negative entry time: {e}");
        for phase in ["blocked", "dns", "connect", "ssl", "send", "wait", "receive"] {
            let v = number(&e["timings"][phase], phase);
            assert!(v >= -1.0, "{phase} = {v}");
        }
        for phase in ["send", "wait", "receive"] {
            assert!(number(&e["timings"][phase], phase) >= 0.0, "HAR requires {phase} >= 0: {e}");
        }
        let started = e["startedDateTime"].as_str().expect("startedDateTime");
        assert_eq!(started.len(), "2026-01-01T00:00:00.000Z".len(), "startedDateTime {started}");
        number(&e["response"]["status"], "status");
        number(&e["response"]["bodySize"], "bodySize");
        assert!(e["request"]["url"].is_string());
    }
}

