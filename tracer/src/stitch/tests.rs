//! The stitcher on synthetic event streams shaped like what the real clients produce (see
//! tests/browsers.rs for the same behaviour on real browsers).
use std::net::{Ipv4Addr, SocketAddr};

use tracer_common::{DnsSyscall, TlsFunc, TlsLib};

use super::dns_index::LOOKUPS_PER_NAME;
use super::model::{self, PageLoad, Request};
use super::{StitchConfig, Stitcher};
use crate::decode::dns::{DnsAnswer, DnsData, DnsMessage, DnsQuestion};
use crate::failure::{Code, Failure, Phase};
use crate::stream::events::{Direction, Event, EventBody, HandshakePhase, TcpState};

const MS: u64 = 1_000_000;

/// Builds a stream: every call advances the clock by `step` unless given a time.
pub(super) struct Sim {
    t: u64,
    pub(super) events: Vec<Event>,
}

pub(super) fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(ip), port))
}

impl Sim {
    pub(super) fn new() -> Sim {
        Sim { t: 1_000 * MS, events: Vec::new() }
    }

    pub(super) fn at(&mut self, ms: u64) -> &mut Self {
        self.t = 1_000 * MS + ms * MS;
        self
    }

    fn push(&mut self, tgid: u32, comm: &str, body: EventBody) {
        self.t += 10_000;
        self.events.push(Event { ts_ns: self.t, tgid, pid: tgid, comm: comm.into(), body });
    }

    pub(super) fn exec(&mut self, pid: u32, file: &str) {
        self.push(pid, file.rsplit('/').next().unwrap(), EventBody::Exec { filename: file.into() });
    }

    fn fork(&mut self, parent: u32, child: u32) {
        self.push(parent, "parent", EventBody::Fork { child_pid: child });
    }

    pub(super) fn query(&mut self, tgid: u32, id: u16, name: &str, qtype: &str) {
        let m = DnsMessage {
            id,
            is_response: false,
            opcode: "QUERY".into(),
            rcode: "NOERROR".into(),
            truncated: false,
            questions: vec![DnsQuestion { name: name.into(), qtype: qtype.into() }],
            answers: vec![],
        };
        self.dns(tgid, Direction::Send, m);
    }

    pub(super) fn answer(&mut self, tgid: u32, id: u16, name: &str, qtype: &str, rcode: &str, answers: Vec<DnsAnswer>) {
        let m = DnsMessage {
            id,
            is_response: true,
            opcode: "QUERY".into(),
            rcode: rcode.into(),
            truncated: false,
            questions: vec![DnsQuestion { name: name.into(), qtype: qtype.into() }],
            answers,
        };
        self.dns(tgid, Direction::Recv, m);
    }

    fn dns(&mut self, tgid: u32, direction: Direction, m: DnsMessage) {
        self.push(
            tgid,
            "resolver",
            EventBody::Dns {
                fd: 9,
                direction,
                syscall: Some(DnsSyscall::Sendto),
                tcp: false,
                len: 40,
                peer: Some(addr([127, 0, 0, 1], 53)),
                message: Ok(m),
                raw: vec![],
            },
        );
    }

    /// A successful TCP connect: connect record, SYN_SENT, ESTABLISHED.
    pub(super) fn connect(&mut self, tgid: u32, fd: i32, dst: SocketAddr, sk: u64) {
        self.push(tgid, "net", EventBody::TcpState { skaddr: sk, old: TcpState::Close, new: TcpState::SynSent, src: None, dst: Some(dst) });
        self.push(
            tgid,
            "net",
            EventBody::Connect { fd, ret: -115, error: Some("EINPROGRESS"), dst: Some(dst), skaddr: sk, tcp: true, duration_ns: 5_000 },
        );
        self.push(
            0,
            "swapper",
            EventBody::TcpState { skaddr: sk, old: TcpState::SynSent, new: TcpState::Established, src: Some(addr([10, 0, 0, 1], 40000 + fd as u16)), dst: Some(dst) },
        );
    }

    fn close(&mut self, sk: u64, dst: SocketAddr) {
        self.push(0, "swapper", EventBody::TcpState { skaddr: sk, old: TcpState::LastAck, new: TcpState::Close, src: None, dst: Some(dst) });
    }

    fn udp_connect_failed(&mut self, tgid: u32, fd: i32, dst: SocketAddr) {
        self.push(
            tgid,
            "net",
            EventBody::Connect { fd, ret: -101, error: Some("ENETUNREACH"), dst: Some(dst), skaddr: 0, tcp: false, duration_ns: 1_000 },
        );
    }

    pub(super) fn socket(&mut self, tgid: u32, fd: i32, direction: Direction, syscall: DnsSyscall, data: &[u8]) {
        self.push(
            tgid,
            "net",
            EventBody::SocketData {
                fd,
                direction,
                syscall: Some(syscall),
                len: data.len() as u32,
                captured: data.len() as u32,
                duration_ns: 1_000,
                first_line: None,
                data: data.to_vec(),
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn tls(&mut self, tgid: u32, lib: TlsLib, func: TlsFunc, obj: u64, fd: i32, direction: Direction, data: &[u8]) {
        self.push(
            tgid,
            "net",
            EventBody::TlsData {
                lib: Some(lib),
                func: Some(func),
                tls_obj: obj,
                fd,
                direction,
                len: data.len() as u32,
                captured: data.len() as u32,
                duration_ns: 1_000,
                first_line: None,
                http2_preface: false,
                data: data.to_vec(),
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn handshake(&mut self, tgid: u32, lib: TlsLib, func: TlsFunc, obj: u64, fd: i32, phase: HandshakePhase, ret: i64) {
        self.push(tgid, "net", EventBody::TlsHandshake { lib: Some(lib), func: Some(func), tls_obj: obj, fd, phase, ret });
    }

    pub(super) fn run(&self) -> Vec<PageLoad> {
        self.run_with(StitchConfig::default())
    }

    pub(super) fn run_with(&self, cfg: StitchConfig) -> Vec<PageLoad> {
        let mut s = Stitcher::new(cfg);
        let mut out = Vec::new();
        for e in &self.events {
            out.extend(s.on_event(e));
        }
        out.extend(s.finish());
        out
    }
}

pub(super) fn a(name: &str, ip: [u8; 4]) -> DnsAnswer {
    DnsAnswer { name: name.into(), rtype: "A".into(), ttl: 60, data: DnsData::A(Ipv4Addr::from(ip)) }
}

fn cname(name: &str, target: &str) -> DnsAnswer {
    DnsAnswer { name: name.into(), rtype: "CNAME".into(), ttl: 60, data: DnsData::Cname(target.into()) }
}

fn https_rr(name: &str) -> DnsAnswer {
    DnsAnswer {
        name: name.into(),
        rtype: "HTTPS".into(),
        ttl: 60,
        data: DnsData::Https { priority: 1, target: ".".into(), alpn: vec!["h2".into()], ipv4hint: vec![], ipv6hint: vec![] },
    }
}

fn get(host: &str, path: &str, nav: bool) -> Vec<u8> {
    let extra = if nav { "Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Mode: navigate\r\n" } else { "Sec-Fetch-Mode: no-cors\r\n" };
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").into_bytes()
}

fn plain_get(host: &str, path: &str) -> Vec<u8> {
    // Browsers send no fetch metadata to plain-HTTP origins; a navigation asks for an upgrade.
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade-Insecure-Requests: 1\r\n\r\n").into_bytes()
}

pub(super) fn ok(body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

fn moved(to: &str) -> Vec<u8> {
    format!("HTTP/1.1 301 Moved Permanently\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

pub(super) const SHOP: [u8; 4] = [10, 77, 0, 2];
const EDGE: [u8; 4] = [10, 77, 0, 3];

/// Chromium: the launcher script execs the browser, which starts its network service with
/// `/proc/self/exe`; the service does all the network work under thread names.
fn chromium_processes(s: &mut Sim) {
    s.exec(100, "/usr/bin/chromium");
    s.exec(100, "/usr/lib/chromium/chromium");
    s.fork(100, 101);
    s.exec(101, "/proc/self/exe");
}

#[test]
fn a_browsers_network_process_is_shown_as_the_browser() {
    let mut s = Sim::new();
    chromium_processes(&mut s);
    s.query(101, 1, "shop.test", "A");
    s.answer(101, 1, "shop.test", "A", "NOERROR", vec![a("shop.test", SHOP)]);
    s.connect(101, 20, addr(SHOP, 80), 0xa);
    s.socket(101, 20, Direction::Send, DnsSyscall::Sendto, &plain_get("shop.test", "/"));
    s.socket(101, 20, Direction::Recv, DnsSyscall::Read, &ok("hi"));
    let pages = s.run();
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].client.tgid, 100);
    assert_eq!(pages[0].client.name, "chromium");
    assert_eq!(pages[0].client.exe.as_deref(), Some("/usr/lib/chromium/chromium"));
}

#[test]
fn background_work_before_a_navigation_is_its_own_page_load() {
    let mut s = Sim::new();
    chromium_processes(&mut s);
    // The IPv6 reachability probe and an update host that does not resolve.
    s.udp_connect_failed(101, 30, SocketAddr::new("2001:4860:4860::8888".parse().unwrap(), 443));
    s.query(101, 2, "clients2.google.com", "A");
    s.answer(101, 2, "clients2.google.com", "A", "NXDOMAIN", vec![]);
    s.at(200);
    s.query(101, 3, "shop.test", "HTTPS");
    s.query(101, 4, "shop.test", "A");
    s.answer(101, 3, "shop.test", "HTTPS", "NOERROR", vec![]);
    s.answer(101, 4, "shop.test", "A", "NOERROR", vec![a("shop.test", SHOP)]);
    // Chromium preconnects a second socket it never uses.
    s.connect(101, 20, addr(SHOP, 80), 0xa);
    s.connect(101, 21, addr(SHOP, 80), 0xb);
    s.socket(101, 20, Direction::Send, DnsSyscall::Sendto, &plain_get("shop.test", "/"));
    s.socket(101, 20, Direction::Recv, DnsSyscall::Read, &moved("https://www.shop.test/"));
    // The browser process resolves an update host while the page loads.
    s.query(100, 5, "update.googleapis.com", "A");
    s.answer(100, 5, "update.googleapis.com", "A", "NXDOMAIN", vec![]);
    s.query(101, 6, "www.shop.test", "A");
    s.answer(101, 6, "www.shop.test", "A", "NOERROR", vec![cname("www.shop.test", "edge.cdn.test"), a("edge.cdn.test", EDGE)]);
    s.connect(101, 22, addr(EDGE, 443), 0xc);
    s.handshake(101, TlsLib::BoringSsl, TlsFunc::SSL_do_handshake, 0x77, 22, HandshakePhase::Enter, 0);
    s.handshake(101, TlsLib::BoringSsl, TlsFunc::SSL_do_handshake, 0x77, 22, HandshakePhase::Return, 1);
    s.tls(101, TlsLib::BoringSsl, TlsFunc::SSL_write, 0x77, 22, Direction::Send, &get("www.shop.test", "/", true));
    s.tls(101, TlsLib::BoringSsl, TlsFunc::SSL_read, 0x77, 22, Direction::Recv, &ok("page"));
    let pages = s.run();
    let nav: Vec<_> = pages.iter().filter(|p| p.url.as_deref() == Some("http://shop.test/")).collect();
    assert_eq!(nav.len(), 1, "{pages:#?}");
    let p = nav[0];
    let hops: Vec<_> = p.redirect_chain.iter().map(|i| (p.requests[*i].url.clone().unwrap(), p.requests[*i].status)).collect();
    assert_eq!(hops, vec![("http://shop.test/".to_string(), Some(301)), ("https://www.shop.test/".to_string(), Some(200))]);
    assert!(p.requests.iter().all(|r| r.method.is_some()), "no background entries in the page: {:#?}", p.requests);
    assert!(p.dns.iter().all(|d| d.name.ends_with("shop.test")), "{:?}", p.dns);
    assert_eq!(p.dns[0].qtypes, vec!["HTTPS", "A"]);
    assert!(p.requests[0].timings.dns >= 0.0);
    assert_eq!(p.connections.len(), 3, "both preconnects and the TLS connection");
    // The background work is reported, on its own.
    let others: Vec<_> = pages.iter().filter(|p| p.url.as_deref() != Some("http://shop.test/")).collect();
    assert!(others.iter().all(|p| p.requests.iter().all(|r| r.method.is_none() && r.error.is_some())), "{others:#?}");
    let failed: usize = others.iter().map(|p| p.requests.len()).sum();
    assert_eq!(failed, 3, "IPv6 probe, clients2, update: {others:#?}");
}

#[test]
fn a_new_navigation_ends_the_previous_page_load() {
    let mut s = Sim::new();
    chromium_processes(&mut s);
    s.query(101, 1, "www.shop.test", "A");
    s.answer(101, 1, "www.shop.test", "A", "NOERROR", vec![a("www.shop.test", EDGE)]);
    s.connect(101, 22, addr(EDGE, 443), 0xc);
    s.tls(101, TlsLib::BoringSsl, TlsFunc::SSL_write, 0x77, 22, Direction::Send, &get("www.shop.test", "/", true));
    s.tls(101, TlsLib::BoringSsl, TlsFunc::SSL_read, 0x77, 22, Direction::Recv, &ok("page"));
    s.tls(101, TlsLib::BoringSsl, TlsFunc::SSL_write, 0x77, 22, Direction::Send, &get("www.shop.test", "/a.css", false));
    s.tls(101, TlsLib::BoringSsl, TlsFunc::SSL_read, 0x77, 22, Direction::Recv, &ok("css"));
    s.tls(101, TlsLib::BoringSsl, TlsFunc::SSL_write, 0x77, 22, Direction::Send, &get("www.shop.test", "/next", true));
    s.tls(101, TlsLib::BoringSsl, TlsFunc::SSL_read, 0x77, 22, Direction::Recv, &ok("next"));
    let pages = s.run();
    let urls: Vec<_> = pages.iter().map(|p| (p.url.clone().unwrap(), p.requests.len())).collect();
    assert_eq!(urls, vec![("https://www.shop.test/".to_string(), 2), ("https://www.shop.test/next".to_string(), 1)]);
}

#[test]
fn a_peeked_response_is_decoded_once() {
    // wget peeks at the response head (recv MSG_PEEK), then reads head and body.
    let mut s = Sim::new();
    s.exec(200, "/usr/bin/wget");
    s.connect(200, 4, addr(SHOP, 80), 0xa);
    s.socket(200, 4, Direction::Send, DnsSyscall::Write, b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n");
    let resp = moved("https://www.shop.test/");
    s.socket(200, 4, Direction::Recv, DnsSyscall::Recvfrom, &resp);
    let cut = resp.len() - 4;
    s.socket(200, 4, Direction::Recv, DnsSyscall::Read, &resp[..cut]);
    s.socket(200, 4, Direction::Recv, DnsSyscall::Read, &resp[cut..]);
    s.close(0xa, addr(SHOP, 80));
    let pages = s.run();
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].requests.len(), 1, "{:#?}", pages[0].requests);
    assert_eq!(pages[0].requests[0].status, Some(301));
    assert_eq!(pages[0].requests[0].error, None);
}

#[test]
fn a_real_recv_is_not_mistaken_for_a_peek() {
    // curl receives with recv(2) too: two different responses on a kept-alive connection.
    let mut s = Sim::new();
    s.exec(300, "/usr/bin/curl");
    s.connect(300, 5, addr(SHOP, 80), 0xa);
    s.socket(300, 5, Direction::Send, DnsSyscall::Sendto, b"GET /a HTTP/1.1\r\nHost: shop.test\r\n\r\n");
    s.socket(300, 5, Direction::Recv, DnsSyscall::Recvfrom, &ok("a"));
    s.socket(300, 5, Direction::Send, DnsSyscall::Sendto, b"GET /a HTTP/1.1\r\nHost: shop.test\r\n\r\n");
    s.socket(300, 5, Direction::Recv, DnsSyscall::Recvfrom, &ok("a"));
    // The page closes while the connection stays open: the last receive is released then.
    let pages = s.run_with(StitchConfig::default());
    let statuses: Vec<_> = pages[0].requests.iter().map(|r| (r.path.clone().unwrap(), r.status)).collect();
    assert_eq!(statuses, vec![("/a".to_string(), Some(200)), ("/a".to_string(), Some(200))]);
}

#[test]
fn firefox_nspr_on_plain_sockets_files_and_peeks() {
    let mut s = Sim::new();
    s.exec(400, "/usr/bin/firefox-esr");
    // Plain HTTP: the socket probes and PR_Write/PR_Read both carry the same bytes.
    s.connect(400, 58, addr(SHOP, 80), 0xa);
    let req = plain_get("shop.test", "/");
    s.socket(400, 58, Direction::Send, DnsSyscall::Sendto, &req);
    s.tls(400, TlsLib::Nspr, TlsFunc::PR_Write, 0x10, 58, Direction::Send, &req);
    let resp = moved("https://www.shop.test/");
    s.socket(400, 58, Direction::Recv, DnsSyscall::Recvfrom, &resp);
    s.tls(400, TlsLib::Nspr, TlsFunc::PR_Read, 0x10, 58, Direction::Recv, &resp);
    // TLS: PR_Recv peeks at one byte (PR_MSG_PEEK) before and between real reads.
    s.connect(400, 84, addr(EDGE, 443), 0xc);
    s.handshake(400, TlsLib::Nspr, TlsFunc::SSL_ForceHandshake, 0x20, -1, HandshakePhase::Enter, 0);
    s.handshake(400, TlsLib::Nspr, TlsFunc::SSL_ForceHandshake, 0x20, 84, HandshakePhase::Return, -1);
    let resp2 = ok("page");
    s.tls(400, TlsLib::Nspr, TlsFunc::PR_Recv, 0x20, 84, Direction::Recv, &resp2[..1]);
    s.tls(400, TlsLib::Nspr, TlsFunc::PR_Write, 0x20, 84, Direction::Send, &get("www.shop.test", "/", true));
    s.tls(400, TlsLib::Nspr, TlsFunc::PR_Recv, 0x20, 84, Direction::Recv, &resp2[..1]);
    s.tls(400, TlsLib::Nspr, TlsFunc::PR_Read, 0x20, 84, Direction::Recv, &resp2);
    // The TLS connection closes; its fd number is reused for a file written through NSPR.
    s.close(0xc, addr(EDGE, 443));
    s.tls(400, TlsLib::Nspr, TlsFunc::PR_Write, 0x30, 84, Direction::Send, b"GET /not-http HTTP/1.1\r\n\r\n");
    // A file on an fd number of a live connection: another PRFileDesc.
    s.tls(400, TlsLib::Nspr, TlsFunc::PR_Write, 0x31, 58, Direction::Send, b"sqlite page");
    let pages = s.run();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    let p = &pages[0];
    let reqs: Vec<_> = p.requests.iter().map(|r| (r.url.clone().unwrap(), r.status, r.error.clone())).collect();
    assert_eq!(
        reqs,
        vec![("http://shop.test/".to_string(), Some(301), None), ("https://www.shop.test/".to_string(), Some(200), None)],
        "plain HTTP is http://, decoded once; the peeks are not data"
    );
    assert!(p.connections[0].tls.is_none());
    let tls = p.connections[1].tls.as_ref().unwrap();
    assert_eq!(tls.library, "nspr");
    assert!(tls.handshake_start_ns.is_some());
}

#[test]
fn lookups_asked_one_after_the_other_are_one_and_connects_need_only_the_address() {
    // Firefox: res_nquery asks HTTPS, then getaddrinfo asks A + AAAA; it connects as soon as
    // the A answer is in, while its HTTPS query for the next name is still out.
    let mut s = Sim::new();
    s.exec(400, "/usr/bin/firefox-esr");
    s.query(400, 1, "shop.test", "HTTPS");
    s.answer(400, 1, "shop.test", "HTTPS", "NOERROR", vec![]);
    s.t += 20 * MS;
    s.query(400, 2, "shop.test", "A");
    s.query(400, 3, "shop.test", "AAAA");
    s.answer(400, 2, "shop.test", "A", "NOERROR", vec![a("shop.test", SHOP)]);
    s.answer(400, 3, "shop.test", "AAAA", "NOERROR", vec![]);
    s.connect(400, 58, addr(SHOP, 80), 0xa);
    s.socket(400, 58, Direction::Send, DnsSyscall::Write, &plain_get("shop.test", "/"));
    s.socket(400, 58, Direction::Recv, DnsSyscall::Read, &moved("https://www.shop.test/"));
    s.query(400, 4, "www.shop.test", "HTTPS");
    s.query(400, 5, "www.shop.test", "A");
    s.answer(400, 5, "www.shop.test", "A", "NOERROR", vec![cname("www.shop.test", "edge.cdn.test"), a("edge.cdn.test", EDGE)]);
    s.connect(400, 84, addr(EDGE, 443), 0xc);
    s.answer(400, 4, "www.shop.test", "HTTPS", "NOERROR", vec![cname("www.shop.test", "edge.cdn.test"), https_rr("edge.cdn.test")]);
    s.tls(400, TlsLib::Nspr, TlsFunc::PR_Write, 0x20, 84, Direction::Send, &get("www.shop.test", "/", true));
    s.tls(400, TlsLib::Nspr, TlsFunc::PR_Read, 0x20, 84, Direction::Recv, &ok("page"));
    let pages = s.run();
    assert_eq!(pages.len(), 1);
    let p = &pages[0];
    assert_eq!(p.dns.len(), 2, "{:#?}", p.dns);
    assert_eq!(p.dns[0].qtypes, vec!["HTTPS", "A", "AAAA"]);
    let first = &p.requests[0];
    assert!(first.timings.dns >= 20.0, "the dns phase covers the HTTPS query too: {:?}", first.timings);
    let doc = &p.requests[1];
    let l = &p.dns[doc.dns.expect("the document has its lookup although HTTPS was not answered yet")];
    assert_eq!(l.name, "www.shop.test");
    assert_eq!(l.cname_chain, vec!["www.shop.test", "edge.cdn.test"]);
    assert!(doc.timings.dns >= 0.0);
}

#[test]
fn an_address_family_asked_alone_without_an_address_is_no_failure_when_the_name_resolved() {
    // WebKitGTK (GLib's resolver): A and AAAA from two threads, then AAAA alone again 0.8 s
    // later; the lab has no AAAA. Neither AAAA lookup is a failure of the page load; an AAAA
    // alone for a name never resolved still is.
    let mut s = Sim::new();
    s.exec(500, "/usr/bin/epiphany");
    s.query(500, 1, "shop.test", "AAAA");
    s.query(500, 2, "shop.test", "A");
    s.answer(500, 2, "shop.test", "A", "NOERROR", vec![a("shop.test", SHOP)]);
    s.answer(500, 1, "shop.test", "AAAA", "NOERROR", vec![]);
    s.connect(500, 58, addr(SHOP, 80), 0xa);
    s.socket(500, 58, Direction::Send, DnsSyscall::Write, &plain_get("shop.test", "/"));
    s.t += 400 * MS;
    s.query(500, 3, "shop.test", "AAAA");
    s.answer(500, 3, "shop.test", "AAAA", "NOERROR", vec![]);
    s.socket(500, 58, Direction::Recv, DnsSyscall::Read, &moved("https://www.shop.test/"));
    s.query(500, 4, "nope.shop.test", "AAAA");
    s.answer(500, 4, "nope.shop.test", "AAAA", "NOERROR", vec![]);
    let pages = s.run();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    let p = &pages[0];
    let failed: Vec<_> = p.requests.iter().filter(|r| r.error.is_some()).map(|r| r.host.clone()).collect();
    assert_eq!(failed, vec![Some("nope.shop.test".to_string())], "{:#?}", p.requests);
    assert!(p.dns.iter().filter(|l| l.name == "shop.test").all(|l| l.error.is_none()), "{:#?}", p.dns);
}

#[test]
fn the_lookup_named_by_the_request_wins_and_its_cname_target_lookup_counts() {
    // Firefox resolves www.shop.test, then its CNAME target edge.cdn.test, then connects.
    let mut s = Sim::new();
    s.exec(400, "/usr/bin/firefox-esr");
    s.query(400, 1, "www.shop.test", "A");
    s.answer(400, 1, "www.shop.test", "A", "NOERROR", vec![cname("www.shop.test", "edge.cdn.test"), a("edge.cdn.test", EDGE)]);
    s.t += 5 * MS;
    s.query(400, 2, "edge.cdn.test", "A");
    s.t += 10 * MS;
    s.answer(400, 2, "edge.cdn.test", "A", "NOERROR", vec![a("edge.cdn.test", EDGE)]);
    s.connect(400, 84, addr(EDGE, 443), 0xc);
    s.tls(400, TlsLib::Nspr, TlsFunc::PR_Write, 0x20, 84, Direction::Send, &get("www.shop.test", "/", true));
    s.tls(400, TlsLib::Nspr, TlsFunc::PR_Read, 0x20, 84, Direction::Recv, &ok("page"));
    let pages = s.run();
    let r = &pages[0].requests[0];
    assert_eq!(pages[0].dns[r.dns.unwrap()].name, "www.shop.test");
    assert!(r.timings.dns >= 15.0, "until the CNAME target was resolved: {:?}", r.timings);
    assert!(r.timings.blocked < 1.0);
}

#[test]
fn a_slow_response_keeps_its_page_load_open() {
    let mut s = Sim::new();
    s.exec(300, "/usr/bin/curl");
    s.connect(300, 5, addr(SHOP, 80), 0xa);
    s.socket(300, 5, Direction::Send, DnsSyscall::Sendto, b"GET /slow HTTP/1.1\r\nHost: shop.test\r\n\r\n");
    s.t += 3_000 * MS; // server think time, far beyond the quiet window
    s.socket(300, 5, Direction::Recv, DnsSyscall::Read, &ok("late"));
    s.socket(300, 5, Direction::Send, DnsSyscall::Sendto, b"GET /next HTTP/1.1\r\nHost: shop.test\r\n\r\n");
    s.socket(300, 5, Direction::Recv, DnsSyscall::Read, &ok("next"));
    let pages = s.run();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert_eq!(pages[0].requests.len(), 2);
    assert!(pages[0].requests[0].timings.wait >= 3_000.0);
}

/// A browser that pauses seconds between a redirect and following it (WebKitGTK under Xvfb:
/// 2.3 s), while another process keeps the stitcher's clock moving: one page load, both hops.
fn slow_redirect_follow(pause_ms: u64) -> Sim {
    let mut s = Sim::new();
    s.exec(300, "/usr/bin/epiphany");
    s.exec(900, "/usr/bin/other");
    s.query(300, 1, "shop.test", "A");
    s.answer(300, 1, "shop.test", "A", "NOERROR", vec![a("shop.test", SHOP)]);
    s.connect(300, 5, addr(SHOP, 80), 0xa);
    s.socket(300, 5, Direction::Send, DnsSyscall::Sendto, &plain_get("shop.test", "/"));
    s.socket(300, 5, Direction::Recv, DnsSyscall::Read, &moved("https://www.shop.test/"));
    // Another process's lookups every 200 ms: each one's time is the stitcher's now.
    let base = s.t;
    for i in 1..=pause_ms / 200 {
        s.t = base + i * 200 * MS;
        s.query(900, i as u16, "elsewhere.test", "A");
    }
    s.t = base + pause_ms * MS;
    s.query(300, 2, "www.shop.test", "A");
    s.answer(300, 2, "www.shop.test", "A", "NOERROR", vec![a("www.shop.test", EDGE)]);
    s.connect(300, 6, addr(EDGE, 443), 0xb);
    s.tls(300, TlsLib::BoringSsl, TlsFunc::SSL_write, 0x70, 6, Direction::Send, &get("www.shop.test", "/", true));
    s.tls(300, TlsLib::BoringSsl, TlsFunc::SSL_read, 0x70, 6, Direction::Recv, &ok("page"));
    s
}

#[test]
fn a_redirect_holds_its_page_load_open_until_the_client_follows_it() {
    let hops = |pages: &[PageLoad]| -> Vec<Vec<Option<u16>>> {
        pages
            .iter()
            .filter(|p| p.client.tgid == 300)
            .map(|p| p.redirect_chain.iter().map(|i| p.requests[*i].status).collect())
            .collect()
    };
    let s = slow_redirect_follow(2_300);
    assert_eq!(hops(&s.run()), vec![vec![Some(301), Some(200)]], "one page load, the redirect and the page it led to");
    // Without the hold the 500 ms quiet window splits it (what the rule is for).
    let split = s.run_with(StitchConfig { redirect_hold_ns: 0, ..StitchConfig::default() });
    assert_eq!(hops(&split), vec![vec![Some(301)], vec![Some(200)]]);
    // The hold is bounded: a redirect not followed within it ends its page load.
    let late = slow_redirect_follow(6_000).run();
    assert_eq!(hops(&late), vec![vec![Some(301)], vec![Some(200)]]);
}

#[test]
fn tls_seen_only_on_the_wire_gives_sni_timing_and_an_opaque_exchange() {
    // A Chromium build whose BoringSSL was not found: the socket traffic of a TLS port.
    let mut s = Sim::new();
    chromium_processes(&mut s);
    s.query(101, 1, "www.shop.test", "A");
    s.answer(101, 1, "www.shop.test", "A", "NOERROR", vec![cname("www.shop.test", "edge.cdn.test"), a("edge.cdn.test", EDGE)]);
    s.connect(101, 22, addr(EDGE, 443), 0xc);
    let rec = |ty: u8, n: usize| {
        let mut v = vec![ty, 3, 3];
        v.extend_from_slice(&(n as u16).to_be_bytes());
        v.extend(std::iter::repeat_n(0u8, n));
        v
    };
    s.socket(101, 22, Direction::Send, DnsSyscall::Sendto, &super::wire::tests_support::client_hello("www.shop.test"));
    let mut server = rec(22, 90);
    server.extend(rec(20, 1));
    server.extend(rec(23, 2000));
    s.t += 5 * MS;
    s.socket(101, 22, Direction::Recv, DnsSyscall::Read, &server);
    let mut fin = rec(20, 1);
    fin.extend(rec(23, 53));
    s.socket(101, 22, Direction::Send, DnsSyscall::Sendto, &fin);
    s.socket(101, 22, Direction::Send, DnsSyscall::Sendto, &rec(23, 300));
    s.t += 20 * MS;
    s.socket(101, 22, Direction::Recv, DnsSyscall::Read, &rec(23, 800));
    s.close(0xc, addr(EDGE, 443));
    let pages = s.run();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    let p = &pages[0];
    assert_eq!(p.client.name, "chromium");
    assert_eq!(p.url.as_deref(), Some("https://www.shop.test/"));
    let r = &p.requests[0];
    assert_eq!((r.method.as_deref(), r.status, r.error.as_ref()), (None, None, None));
    assert!(r.timings.dns >= 0.0 && r.timings.tcp >= 0.0 && r.timings.ssl >= 5.0 && r.timings.wait >= 20.0, "{:?}", r.timings);
    let tls = p.connections[0].tls.as_ref().unwrap();
    assert_eq!((tls.library.as_str(), tls.sni.as_deref(), tls.estimated), ("wire", Some("www.shop.test"), false));
}

#[test]
fn nspr_plain_http_on_another_port_is_http() {
    // No socket capture off port 80: NSPR's PR_Write/PR_Read are the only plaintext, and
    // without an NSS handshake the connection is plain HTTP.
    let mut s = Sim::new();
    s.exec(400, "/usr/bin/firefox-esr");
    s.connect(400, 60, addr(SHOP, 8080), 0xa);
    s.tls(400, TlsLib::Nspr, TlsFunc::PR_Write, 0x10, 60, Direction::Send, &plain_get("shop.test:8080", "/"));
    s.tls(400, TlsLib::Nspr, TlsFunc::PR_Read, 0x10, 60, Direction::Recv, &ok("x"));
    let pages = s.run();
    assert_eq!(pages[0].requests[0].url.as_deref(), Some("http://shop.test:8080/"));
    assert!(pages[0].connections[0].tls.is_none());
}

/// Credentials in headers, query, Location and Set-Cookie never reach the model (and so
/// neither the history, the API, HAR nor `--json`); the headers themselves are kept by name.
#[test]
fn secrets_in_headers_and_urls_are_redacted_in_the_page_load() {
    let mut s = Sim::new();
    s.exec(310, "/usr/bin/curl");
    s.connect(310, 5, addr(SHOP, 80), 0xb);
    s.socket(
        310,
        5,
        Direction::Send,
        DnsSyscall::Sendto,
        b"GET /login?token=S3CR3T&next=/a HTTP/1.1\r\nHost: shop.test\r\nAuthorization: Bearer S3CR3T\r\nCookie: sid=S3CR3T\r\nAccept: */*\r\nReferer: https://u:S3CR3T@shop.test/x?k=S3CR3T\r\nX-Trace: S3CR3T\r\n\r\n",
    );
    s.socket(
        310,
        5,
        Direction::Recv,
        DnsSyscall::Read,
        b"HTTP/1.1 302 Found\r\nLocation: /home?sid=S3CR3T\r\nSet-Cookie: sid=S3CR3T; HttpOnly\r\nServer: lab\r\nContent-Length: 0\r\n\r\n",
    );
    let pages = s.run();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    let r = &pages[0].requests[0];
    let json = serde_json::to_string(&pages).unwrap();
    assert!(!json.contains("S3CR3T"), "a secret reached the page load: {json}");
    assert_eq!(r.path.as_deref(), Some("/login?token=*&next=*"));
    assert_eq!(r.redirect_to.as_deref(), Some("http://shop.test/home?sid=*"));
    let value = |list: &[model::Header], name: &str| list.iter().find(|h| h.name == name).map(|h| h.value.clone());
    assert_eq!(value(&r.request_headers, "authorization").as_deref(), Some(crate::redact::REDACTED));
    assert_eq!(value(&r.request_headers, "cookie").as_deref(), Some(crate::redact::REDACTED));
    assert_eq!(value(&r.request_headers, "x-trace").as_deref(), Some(crate::redact::REDACTED));
    assert_eq!(value(&r.request_headers, "accept").as_deref(), Some("*/*"));
    assert_eq!(value(&r.request_headers, "referer").as_deref(), Some("https://shop.test/x?k=*"));
    assert_eq!(value(&r.response_headers, "set-cookie").as_deref(), Some(crate::redact::REDACTED));
    assert_eq!(value(&r.response_headers, "server").as_deref(), Some("lab"));
}

/// In-flight state is bounded: connections that never close are forgotten when there are
/// too many (oldest first) or when they have been idle too long, and each is counted.
#[test]
fn connections_that_never_close_are_evicted_by_count_and_age() {
    let cfg = StitchConfig { max_connections: 8, max_idle_ns: 60_000 * MS, ..Default::default() };
    let mut st = Stitcher::new(cfg);
    let mut s = Sim::new();
    for i in 0..20u16 {
        s.connect(400 + u32::from(i), 5, addr(SHOP, 80), 0x1000 + u64::from(i));
    }
    for e in &s.events {
        st.on_event(e);
    }
    assert!(st.conns.by_id.len() <= 8, "{} connections held", st.conns.by_id.len());
    assert_eq!(st.stats.evicted_connections, 12);
    assert!(st.conns.by_sk.len() <= 8 && st.conns.by_fd.len() <= 8);
    let by_tuple: Vec<u64> = st.conns.by_tuple.values().flatten().copied().collect();
    assert_eq!(by_tuple.len(), st.conns.by_id.len(), "each kept connection is indexed once by its addresses");
    assert!(by_tuple.iter().all(|id| st.conns.by_id.contains_key(id)), "no evicted connection is indexed");
    // The newest survive.
    assert!(st.conns.by_sk.contains_key(&(0x1000 + 19)));
    assert!(!st.conns.by_sk.contains_key(&0x1000));

    // Idle beyond max_idle: everything goes at the next event.
    let later = s.t + 61_000 * MS;
    st.on_event(&Event { ts_ns: later, tgid: 999, pid: 999, comm: "x".into(), body: EventBody::Exec { filename: "/bin/x".into() } });
    assert_eq!(st.conns.by_id.len(), 0, "idle connections are evicted");
    assert_eq!(st.stats.evicted_connections, 20);
}

/// A connect closed in SYN_SENT: the client gave up (no report), or a RST whose report comes
/// after the close (as tcp_done_with_error orders them) or before the connect record.
#[test]
fn a_connect_closed_in_syn_sent_is_a_timeout_unless_the_kernel_reports_a_reason() {
    let dst = addr([10, 77, 1, 1], 443);
    let syn_sent = |s: &mut Sim, tgid: u32, sk: u64| {
        s.push(tgid, "curl", EventBody::TcpState { skaddr: sk, old: TcpState::Close, new: TcpState::SynSent, src: None, dst: Some(dst) });
        s.push(tgid, "curl", EventBody::Connect { fd: 5, ret: -115, error: Some("EINPROGRESS"), dst: Some(dst), skaddr: sk, tcp: true, duration_ns: 5_000 });
    };
    let closed = |s: &mut Sim, tgid: u32, sk: u64| {
        s.push(tgid, "curl", EventBody::TcpState { skaddr: sk, old: TcpState::SynSent, new: TcpState::Close, src: None, dst: Some(dst) });
    };
    let refused = |s: &mut Sim| {
        s.push(0, "swapper", EventBody::SockError { error: "ECONNREFUSED", errno: 111, protocol: 6, src: None, dst: Some(dst) });
    };
    // The client closes its socket after 2 s without an answer.
    let mut s = Sim::new();
    syn_sent(&mut s, 7, 0x1);
    s.at(2000);
    closed(&mut s, 7, 0x1);
    let pages = s.run();
    let err = pages[0].error.as_ref().unwrap();
    assert!(err.text().starts_with("ERR_CONNECTION_TIMED_OUT (SYN unanswered: the client closed the socket after 2000"), "{err:?}");
    assert_eq!(err.phase, Phase::Connect);
    // RST: reported after the close.
    let mut s = Sim::new();
    syn_sent(&mut s, 8, 0x2);
    closed(&mut s, 8, 0x2);
    refused(&mut s);
    assert_eq!(s.run()[0].error, Some(Failure::bare(Phase::Connect, Code::ConnectionRefused)));
    // RST: state changes and report before the connect record.
    let mut s = Sim::new();
    s.push(9, "curl", EventBody::TcpState { skaddr: 0x3, old: TcpState::Close, new: TcpState::SynSent, src: None, dst: Some(dst) });
    closed(&mut s, 9, 0x3);
    refused(&mut s);
    s.push(9, "curl", EventBody::Connect { fd: 5, ret: -115, error: Some("EINPROGRESS"), dst: Some(dst), skaddr: 0x3, tcp: true, duration_ns: 5_000 });
    assert_eq!(s.run()[0].error, Some(Failure::bare(Phase::Connect, Code::ConnectionRefused)));
}

/// An error report names a socket only by its addresses: among many connections to the same
/// server it finds the one with that source port (through the address index, not a scan).
#[test]
fn an_error_report_finds_its_connection_among_many_to_the_same_server() {
    let dst = addr(SHOP, 443);
    let mut s = Sim::new();
    for fd in 5..45 {
        s.connect(7, fd, dst, 0x100 + fd as u64);
    }
    // The connection on fd 20 (source port 40020) is reset by the peer.
    s.push(0, "swapper", EventBody::SockError { error: "ECONNRESET", errno: 104, protocol: 6, src: Some(addr([10, 0, 0, 1], 40020)), dst: Some(dst) });
    let mut st = Stitcher::new(StitchConfig::default());
    for e in &s.events {
        st.on_event(e);
    }
    let errors: Vec<(i32, &str)> = st.conns.by_id.values().filter_map(|c| Some((c.fd, c.error.as_deref()?))).collect();
    assert_eq!(errors, vec![(20, "ECONNRESET")]);
}

/// A handshake that began and never finished, with no alert in the clear: a generic TLS error
/// that says who closed, not a missing row.
#[test]
fn an_unfinished_handshake_without_a_visible_alert_is_a_protocol_error() {
    let dst = addr(EDGE, 443);
    let mut s = Sim::new();
    s.connect(7, 5, dst, 0x1);
    // GnuTLS says the handshake failed (-43, GNUTLS_E_CERTIFICATE_ERROR); OpenSSL's -1 could
    // as well be "would block", and a client hanging up after it is not taken as a failure.
    s.handshake(7, TlsLib::GnuTls, TlsFunc::gnutls_handshake, 0xa, 5, HandshakePhase::Enter, 0);
    s.handshake(7, TlsLib::GnuTls, TlsFunc::gnutls_handshake, 0xa, 5, HandshakePhase::Return, -43);
    s.push(7, "curl", EventBody::TcpState { skaddr: 0x1, old: TcpState::Established, new: TcpState::FinWait1, src: None, dst: Some(dst) });
    s.push(0, "swapper", EventBody::TcpState { skaddr: 0x1, old: TcpState::FinWait2, new: TcpState::Close, src: None, dst: Some(dst) });
    let pages = s.run();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    let err = pages[0].error.as_ref().unwrap();
    assert!(err.text().starts_with("ERR_SSL_PROTOCOL_ERROR (handshake not finished: the client closed the connection"), "{err:?}");
    assert_eq!(pages[0].connections[0].error.as_deref(), Some("ERR_SSL_PROTOCOL_ERROR"));
    assert_eq!(pages[0].requests[0].error.as_ref().map(|f| f.phase), Some(Phase::Tls));
}

/// A handshake the client abandons with no alert and no failed library call (Firefox closing
/// a speculative connection) is not a failure.
#[test]
fn a_handshake_the_client_abandons_is_not_a_failure() {
    let dst = addr(EDGE, 443);
    let mut s = Sim::new();
    s.connect(7, 5, dst, 0x1);
    s.handshake(7, TlsLib::OpenSsl, TlsFunc::SSL_connect, 0xa, 5, HandshakePhase::Enter, 0);
    s.push(7, "curl", EventBody::TcpState { skaddr: 0x1, old: TcpState::Established, new: TcpState::FinWait1, src: None, dst: Some(dst) });
    s.push(0, "swapper", EventBody::TcpState { skaddr: 0x1, old: TcpState::FinWait2, new: TcpState::Close, src: None, dst: Some(dst) });
    let pages = s.run();
    assert!(pages.iter().all(|p| p.error.is_none() && p.requests.iter().all(|r| r.error.is_none())), "{pages:#?}");
}

/// A lookup nobody answered is a failed entry of its own when the page load closes.
#[test]
fn an_unanswered_lookup_is_a_dns_timeout() {
    let mut s = Sim::new();
    s.query(7, 1, "silent.shop.test", "A");
    s.query(7, 2, "silent.shop.test", "AAAA");
    let pages = s.run();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert_eq!(pages[0].error, Some(Failure::new(Phase::Dns, Code::DnsTimedOut, "no answer from 127.0.0.1:53")));
    assert_eq!(pages[0].error.as_ref().map(Failure::text).as_deref(), Some("ERR_DNS_TIMED_OUT (no answer from 127.0.0.1:53)"));
    assert_eq!(pages[0].dns[0].error, pages[0].error);
}

/// A resolver's retries (new ids, 5 s apart, as glibc and hickory send them) of a question
/// nobody answers are one lookup and one failed entry, not one per try.
#[test]
fn retries_of_an_unanswered_question_are_one_lookup() {
    let mut s = Sim::new();
    s.query(7, 1, "silent.shop.test", "A");
    s.query(7, 2, "silent.shop.test", "AAAA");
    s.at(5_000).query(7, 3, "silent.shop.test", "A");
    s.query(7, 4, "silent.shop.test", "AAAA");
    s.at(10_000).query(7, 5, "silent.shop.test", "A");
    s.query(7, 6, "silent.shop.test", "AAAA");
    let pages = s.run();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert_eq!(pages[0].dns.len(), 1, "{:#?}", pages[0].dns);
    assert_eq!(pages[0].requests.len(), 1, "{:#?}", pages[0].requests);
    assert!(pages[0].error.as_ref().is_some_and(|e| e.code == Code::DnsTimedOut));
}

/// The answer to a retry ends the lookup the first query began.
#[test]
fn an_answer_to_a_retry_ends_the_first_querys_lookup() {
    let mut s = Sim::new();
    s.exec(7, "/usr/bin/curl");
    s.query(7, 1, "shop.test", "A");
    s.at(5_000).query(7, 2, "shop.test", "A");
    s.at(5_020).answer(7, 2, "shop.test", "A", "NOERROR", vec![a("shop.test", SHOP)]);
    s.connect(7, 5, addr(SHOP, 80), 0xa);
    s.socket(7, 5, Direction::Send, DnsSyscall::Sendto, &plain_get("shop.test", "/"));
    s.socket(7, 5, Direction::Recv, DnsSyscall::Read, &ok("hi"));
    let pages = s.run();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert_eq!(pages[0].dns.len(), 1, "{:#?}", pages[0].dns);
    assert!(pages[0].dns[0].error.is_none(), "{:#?}", pages[0].dns);
    let r = &pages[0].requests[0];
    assert!(r.timings.dns >= 5_019.0 && r.error.is_none(), "{r:#?}");
}

/// A server that stalls mid-body on a connection the client keeps open: after
/// `response_timeout` of silence the page load closes with the request as it stands.
#[test]
fn a_body_stalled_past_the_response_timeout_is_reported_partial() {
    let mut s = Sim::new();
    s.exec(300, "/usr/bin/curl");
    s.connect(300, 5, addr(SHOP, 80), 0xa);
    s.socket(300, 5, Direction::Send, DnsSyscall::Sendto, b"GET /stall HTTP/1.1\r\nHost: shop.test\r\n\r\n");
    let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 2048\r\n\r\n".to_vec();
    head.extend(std::iter::repeat_n(b's', 1024));
    s.socket(300, 5, Direction::Recv, DnsSyscall::Read, &head);
    // Much later, anything else (the stitcher's clock moves with the events).
    s.t += 3_000 * MS;
    s.exec(301, "/usr/bin/true");
    let cfg = StitchConfig { response_timeout_ns: 2_000 * MS, ..StitchConfig::default() };
    let pages = s.run_with(cfg);
    let p = pages.iter().find(|p| p.client.tgid == 300).expect("curl's page load");
    let r = &p.requests[0];
    assert_eq!((r.status, r.complete), (Some(200), false));
    assert_eq!(
        r.error.as_ref().map(Failure::text).as_deref(),
        Some("ERR_TIMED_OUT (the response did not end within 2 s of silence; 1024 body bytes received)")
    );
    assert_eq!(r.error.as_ref().map(|f| f.phase), Some(Phase::Receive));
    assert_eq!(p.error, r.error);
}

/// An HTTP/2 connection's set-up belongs to the request that opened it (its first stream),
/// even when a later stream's exchange ends first.
#[test]
fn http2_setup_phases_go_to_the_first_stream_even_when_it_ends_last() {
    use crate::decode::http::tests_h2::{DATA, EH, ES, HEADERS, client_start, enc, frame, req, settings};
    let dst = addr(EDGE, 443);
    let mut s = Sim::new();
    s.exec(7, "/usr/bin/fetcher");
    s.query(7, 1, "example.com", "A");
    s.at(30).answer(7, 1, "example.com", "A", "NOERROR", vec![a("example.com", EDGE)]);
    s.connect(7, 5, dst, 0x1);
    s.handshake(7, TlsLib::OpenSsl, TlsFunc::SSL_connect, 0xa, 5, HandshakePhase::Enter, 0);
    s.handshake(7, TlsLib::OpenSsl, TlsFunc::SSL_connect, 0xa, 5, HandshakePhase::Return, 1);
    let (mut ce, mut se) = (loona_hpack::Encoder::new(), loona_hpack::Encoder::new());
    let first = [client_start(), frame(HEADERS, EH | ES, 1, &enc(&mut ce, &req("GET", "/page")))].concat();
    s.tls(7, TlsLib::OpenSsl, TlsFunc::SSL_write, 0xa, 5, Direction::Send, &first);
    s.tls(7, TlsLib::OpenSsl, TlsFunc::SSL_write, 0xa, 5, Direction::Send, &frame(HEADERS, EH | ES, 3, &enc(&mut ce, &req("GET", "/logo"))));
    let head = |se: &mut loona_hpack::Encoder<'static>| enc(se, &[(":status", "200")]);
    // Stream 3 ends first; stream 1 later.
    let r3 = [settings(&[]), frame(HEADERS, EH, 3, &head(&mut se)), frame(DATA, ES, 3, b"png")].concat();
    s.tls(7, TlsLib::OpenSsl, TlsFunc::SSL_read, 0xa, 5, Direction::Recv, &r3);
    let r1 = [frame(HEADERS, EH, 1, &head(&mut se)), frame(DATA, ES, 1, b"<html>")].concat();
    s.tls(7, TlsLib::OpenSsl, TlsFunc::SSL_read, 0xa, 5, Direction::Recv, &r1);
    let pages = s.run();
    let requests: Vec<&Request> = pages.iter().flat_map(|p| &p.requests).collect();
    assert_eq!(requests.len(), 2, "{pages:#?}");
    let by_path = |p: &str| *requests.iter().find(|r| r.path.as_deref() == Some(p)).unwrap_or_else(|| panic!("no {p}: {requests:#?}"));
    let (page, logo) = (by_path("/page"), by_path("/logo"));
    assert!(page.new_connection && page.timings.dns >= 0.0 && page.timings.tcp >= 0.0 && page.timings.ssl >= 0.0, "{page:#?}");
    assert!(!logo.new_connection && logo.timings.dns < 0.0 && logo.timings.tcp < 0.0 && logo.timings.ssl < 0.0, "{logo:#?}");
}

/// Lookups are matched only against the newest few per process and name, and everything
/// that points at an evicted lookup goes with it: matching costs stay flat however many
/// lookups are kept.
#[test]
fn the_lookup_index_stays_small_and_is_cleaned_on_eviction() {
    let cfg = StitchConfig { max_lookups: 50, ..StitchConfig::default() };
    let mut st = Stitcher::new(cfg);
    let mut s = Sim::new();
    for i in 0..200u16 {
        // 20 processes asking for the same name, 10 times each, answered each time.
        let tgid = 1000 + u32::from(i % 20);
        s.query(tgid, i, "shop.test", "A");
        s.answer(tgid, i, "shop.test", "A", "NOERROR", vec![a("shop.test", SHOP)]);
    }
    // The last process connects: the newest lookup is its.
    s.connect(1019, 5, addr(SHOP, 80), 0xa);
    for ev in &s.events {
        st.on_event(ev);
    }
    assert!(st.dns.by_id.len() <= 50, "{}", st.dns.by_id.len());
    let indexed: usize = st.dns.by_name.values().flat_map(|m| m.values()).map(|v| v.len()).sum();
    assert!(indexed <= 50 && st.dns.by_name.values().flat_map(|m| m.values()).all(|v| v.len() <= LOOKUPS_PER_NAME));
    assert!(st.dns.by_name.values().flat_map(|m| m.values()).flatten().all(|id| st.dns.by_id.contains_key(id)), "no evicted lookup is indexed");
    assert!(st.dns.by_dns_id.values().all(|id| st.dns.by_id.contains_key(id)), "no DNS id points at an evicted lookup");
    assert!(st.dns.by_dns_id.len() <= 50);
    let conn = st.conns.by_id.values().find(|c| c.tgid == 1019).expect("the connection");
    let newest = st.dns.by_id.values().filter(|l| l.tgid == 1019).map(|l| l.id).max();
    assert_eq!(conn.dns, newest);
}
