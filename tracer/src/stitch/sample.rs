//! Synthetic page loads for unit tests of what consumes them (metrics, OTLP export).
use super::model::{ClientInfo, Connection, DnsLookup, PageLoad, Request, Timings, TlsSession};
use crate::failure::{Code, Failure, Phase};

pub const MS: u64 = 1_000_000;

/// HAR timings; `connect` is tcp + ssl as in HAR.
pub fn timings(dns: f64, tcp: f64, ssl: f64, send: f64, wait: f64, receive: f64) -> Timings {
    let connect = if tcp < 0.0 { -1.0 } else { crate::clock::round_stored_ms(tcp + ssl.max(0.0)) };
    Timings { blocked: -1.0, dns, connect, tcp, ssl, send, wait, receive }
}

fn lookup(name: &str, cname: &[&str], addr: &str, start: u64, ms: u64) -> DnsLookup {
    DnsLookup {
        tgid: 4242,
        comm: "curl".into(),
        name: name.into(),
        qtypes: vec!["A".into(), "AAAA".into()],
        started_ns: start,
        ended_ns: Some(start + ms * MS),
        rcode: Some("NOERROR".into()),
        cname_chain: cname.iter().map(|c| c.to_string()).collect(),
        addresses: vec![addr.into()],
        min_ttl: Some(60),
        server: Some("10.77.0.1:53".into()),
        error: None,
    }
}

fn conn(dst: &str, start: u64, tcp_ms: u64, tls: Option<TlsSession>) -> Connection {
    Connection {
        tgid: 4242,
        pid: 4243,
        comm: "curl".into(),
        fd: 5,
        skaddr: 0xffff_8881_0000_0000 + start,
        src: Some("10.77.0.9:40000".into()),
        dst: Some(dst.into()),
        connect_start_ns: start,
        established_ns: Some(start + tcp_ms * MS),
        closed_ns: None,
        error: None,
        tls,
        requests: 1,
        quic: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn request(conn: usize, dns: Option<usize>, url: &str, host: &str, status: u16, start: u64, t: Timings, new: bool) -> Request {
    let end = start + (t.total() * 1e6).round() as u64;
    Request {
        connection: Some(conn),
        dns,
        tgid: 4242,
        pid: 4243,
        comm: "curl".into(),
        method: Some("GET".into()),
        url: Some(url.into()),
        host: Some(host.into()),
        path: Some(url.split_once("://").and_then(|(_, r)| r.find('/').map(|i| r[i..].to_string())).unwrap_or("/".into())),
        protocol: Some("HTTP/1.1".into()),
        stream_id: None,
        status: Some(status),
        redirect_to: (status == 301).then(|| "https://www.shop.test/".into()),
        content_type: Some("text/html".into()),
        request_bytes: 78,
        response_bytes: 1000,
        response_header_bytes: 100,
        started_ns: start,
        ended_ns: end,
        timings: t,
        new_connection: new,
        error: None,
        complete: true,
        request_body: None,
        response_body: None,
        request_headers: Vec::new(),
        response_headers: Vec::new(),
    }
}

/// curl -L http://shop.test/: a 301 over plain HTTP, then https://www.shop.test/ (CNAME,
/// TLS 1.3), then /app.css on the same TLS connection. Starts at monotonic `start`.
pub fn redirect_page(start: u64) -> PageLoad {
    let t0 = timings(2.0, 1.0, -1.0, 0.1, 3.0, 0.2);
    let r0 = request(0, Some(0), "http://shop.test/", "shop.test", 301, start, t0, true);
    let s1 = r0.ended_ns + MS;
    let t1 = timings(1.5, 1.0, 4.0, 0.1, 5.0, 1.0);
    let tls = TlsSession {
        library: "openssl".into(),
        handshake_start_ns: Some(s1 + 2500 * 1000 + MS),
        handshake_end_ns: Some(s1 + 2500 * 1000 + 5 * MS),
        estimated: false,
        version: Some("TLSv1.3".into()),
        cipher: Some("TLS_AES_128_GCM_SHA256".into()),
        alpn: Some("http/1.1".into()),
        sni: Some("www.shop.test".into()),
    };
    let r1 = request(1, Some(1), "https://www.shop.test/", "www.shop.test", 200, s1, t1, true);
    let s2 = r1.ended_ns + MS;
    let r2 = request(1, None, "https://www.shop.test/app.css", "www.shop.test", 200, s2, timings(-1.0, -1.0, -1.0, 0.05, 2.0, 0.5), false);
    let end = r2.ended_ns;
    let mut c1 = conn("10.77.0.3:443", s1 + 1500 * 1000, 1, Some(tls));
    c1.requests = 2;
    PageLoad {
        client: ClientInfo { tgid: 4242, name: "curl".into(), exe: Some("/usr/bin/curl".into()) },
        url: Some("http://shop.test/".into()),
        started_ns: start,
        ended_ns: end,
        status: Some(200),
        error: None,
        requests: vec![r0, r1, r2],
        connections: vec![conn("10.77.0.2:80", start + 2 * MS, 1, None), c1],
        dns: vec![lookup("shop.test", &[], "10.77.0.2", start, 2), lookup("www.shop.test", &["edge.cdn.test"], "10.77.0.3", s1, 1)],
        redirect_chain: vec![0, 1],
        cut: None,
    }
}

/// curl https://nope.shop.test/: NXDOMAIN.
pub fn failed_dns_page(start: u64, host: &str) -> PageLoad {
    let mut l = lookup(host, &[], "", start, 1);
    l.addresses.clear();
    l.rcode = Some("NXDOMAIN".into());
    l.error = Some(Failure::bare(Phase::Dns, Code::NameNotResolved));
    let mut r = request(0, Some(0), host, host, 0, start, timings(1.0, -1.0, -1.0, -1.0, -1.0, -1.0), true);
    r.connection = None;
    r.status = None;
    r.method = None;
    r.protocol = None;
    r.path = None;
    r.content_type = None;
    r.request_bytes = 0;
    r.response_bytes = 0;
    r.response_header_bytes = 0;
    r.complete = false;
    r.error = Some(Failure::bare(Phase::Dns, Code::NameNotResolved));
    PageLoad {
        client: ClientInfo { tgid: 4242, name: "curl".into(), exe: Some("/usr/bin/curl".into()) },
        url: Some(host.into()),
        started_ns: start,
        ended_ns: start + MS,
        status: None,
        error: Some(Failure::bare(Phase::Dns, Code::NameNotResolved)),
        requests: vec![r],
        connections: vec![],
        dns: vec![l],
        redirect_chain: vec![0],
        cut: None,
    }
}
