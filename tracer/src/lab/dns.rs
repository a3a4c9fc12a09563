//! The lab's authoritative DNS server for the zone `test.` (UDP and TCP port 53).
//!
//! Zone contents (TTL = `LabConfig::dns_ttl`):
//!
//! | name | records |
//! | --- | --- |
//! | `test.` | SOA `ns.test. hostmaster.test.`, NS `ns.test.` |
//! | `ns.test.` | A 10.77.0.1 |
//! | `shop.test.` | A 10.77.0.2 |
//! | `www.shop.test.` | CNAME `edge.cdn.test.` |
//! | `edge.cdn.test.` | A 10.77.0.3, HTTPS `1 . alpn=h2,http/1.1` (`alpn=h3,h2,http/1.1` when `LabConfig::http3` is advertised) |
//! | `static.shop.test.` | A 10.77.0.4 |
//! | `refused.shop.test.` | A 10.77.0.5 (nothing listens there) |
//! | `badcert.shop.test.` | A 10.77.0.6 (a certificate the lab CA did not sign) |
//! | `blackhole.shop.test.` | A 10.77.1.1 (SYNs are dropped) |
//! | `silent.shop.test.` | never answered (queries are received and dropped) |
//!
//! With `LabConfig::ipv6` every A record has an AAAA twin (fd77::N); without it AAAA queries get
//! NOERROR with an empty answer (NODATA, SOA in the authority section). Queries for other types
//! of existing names are NODATA too; names that do not exist (inside or outside `test.`) get
//! NXDOMAIN. CNAMEs are followed inside the answer, so `www.shop.test A` answers with the CNAME
//! and `edge.cdn.test A 10.77.0.3`, and `www.shop.test HTTPS` with the CNAME and the HTTPS
//! record of `edge.cdn.test` (an HTTPS record cannot sit next to a CNAME at the same name).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::svcb::{Alpn, SVCB, SvcParamKey, SvcParamValue};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS, NS, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::{DnsQueryRecord, DnsTransport, LabConfig, LabStats, hosts};

/// Most CNAMEs followed inside one answer.
const MAX_CHAIN: usize = 8;
/// Most messages served per UDP socket / TCP listener / TCP connection.
const MAX_UDP_QUERIES: u64 = 10_000_000;
const MAX_TCP_CONNECTIONS: u64 = 1_000_000;
const MAX_TCP_MESSAGES: usize = 1_000;
/// A TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
const EDNS_PAYLOAD: u16 = 1232;

/// Zone data: lowercase name without trailing dot -> records (A, AAAA, CNAME, HTTPS, ...).
struct Zone {
    names: HashMap<String, Vec<RData>>,
    /// Every name that exists, including empty non-terminals (`cdn.test`).
    existing: BTreeSet<String>,
    ttl: u32,
}

fn name(s: &str) -> Name {
    Name::from_ascii(format!("{s}.")).expect("valid lab name")
}

/// The A-record table (name, address); CNAMEs are in [`CNAMES`].
const A_RECORDS: &[(&str, Ipv4Addr)] = &[
    ("ns.test", hosts::DNS),
    (hosts::SHOP, hosts::SHOP_ADDR),
    (hosts::EDGE, hosts::EDGE_ADDR),
    (hosts::STATIC, hosts::STATIC_ADDR),
    (hosts::REFUSED, hosts::REFUSED_ADDR),
    (hosts::BADCERT, hosts::BADCERT_ADDR),
    (hosts::BLACKHOLE, hosts::BLACKHOLE_ADDR),
];
const CNAMES: &[(&str, &str)] = &[(hosts::WWW, hosts::EDGE)];

/// Canonical form used as a map key.
fn key(n: &str) -> String {
    n.trim_end_matches('.').to_ascii_lowercase()
}

/// IPv4 address `host` resolves to in the lab zone (following CNAMEs).
pub(crate) fn resolve_v4(host: &str) -> Option<Ipv4Addr> {
    let mut cur = key(host);
    for _ in 0..MAX_CHAIN {
        if let Some((_, target)) = CNAMES.iter().find(|(n, _)| *n == cur) {
            cur = key(target);
            continue;
        }
        return A_RECORDS.iter().find(|(n, _)| *n == cur).map(|(_, a)| *a);
    }
    None
}

impl Zone {
    fn new(config: &LabConfig) -> Zone {
        let mut names: HashMap<String, Vec<RData>> = HashMap::new();
        let apex = hosts::ZONE;
        names.entry(apex.into()).or_default().extend([
            RData::SOA(SOA::new(
                name("ns.test"),
                name("hostmaster.test"),
                1,
                3600,
                600,
                86400,
                config.dns_ttl,
            )),
            RData::NS(NS(name("ns.test"))),
        ]);
        for (n, a) in A_RECORDS {
            let recs = names.entry(key(n)).or_default();
            recs.push(RData::A(A(*a)));
            // The black hole is outside 10.77.0.0/24: it has no IPv6 twin.
            if config.ipv6 && *a != hosts::BLACKHOLE_ADDR {
                recs.push(RData::AAAA(AAAA(hosts::v6_of(*a))));
            }
        }
        for (n, target) in CNAMES {
            names
                .entry(key(n))
                .or_default()
                .push(RData::CNAME(CNAME(name(target))));
        }
        // h3 first when the origins advertise HTTP/3, as the big CDNs publish it.
        let mut alpn: Vec<String> = vec!["h2".into(), "http/1.1".into()];
        if config.http3.advertised() {
            alpn.insert(0, "h3".into());
        }
        names
            .entry(key(hosts::EDGE))
            .or_default()
            .push(RData::HTTPS(HTTPS(SVCB::new(
                1,
                Name::root(),
                vec![(
                    SvcParamKey::Alpn,
                    SvcParamValue::Alpn(Alpn(alpn)),
                )],
            ))));
        let mut existing = BTreeSet::new();
        for n in names.keys() {
            let mut cur = n.as_str();
            loop {
                existing.insert(cur.to_owned());
                match cur.split_once('.') {
                    Some((_, parent)) => cur = parent,
                    None => break,
                }
            }
        }
        Zone {
            names,
            existing,
            ttl: config.dns_ttl,
        }
    }

    fn in_zone(k: &str) -> bool {
        k == hosts::ZONE || k.ends_with(&format!(".{}", hosts::ZONE))
    }

    fn soa(&self) -> Record {
        let rdata = self.names[hosts::ZONE]
            .iter()
            .find(|r| matches!(r, RData::SOA(_)))
            .expect("apex SOA")
            .clone();
        Record::from_rdata(name(hosts::ZONE), self.ttl, rdata)
    }

    /// Fills in the answer for one question: rcode, answer and authority records.
    fn answer(&self, qname: &Name, qtype: RecordType) -> (ResponseCode, Vec<Record>, Vec<Record>) {
        let mut answers = Vec::new();
        let mut owner = qname.clone();
        let mut k = key(&qname.to_ascii());
        for _ in 0..MAX_CHAIN {
            let Some(recs) = self.names.get(&k) else {
                break;
            };
            let Some(RData::CNAME(c)) = recs.iter().find(|r| matches!(r, RData::CNAME(_))) else {
                break;
            };
            if qtype == RecordType::CNAME {
                break;
            }
            answers.push(Record::from_rdata(
                owner.clone(),
                self.ttl,
                RData::CNAME(c.clone()),
            ));
            owner = c.0.clone();
            k = key(&owner.to_ascii());
        }
        if !self.existing.contains(&k) {
            let authority = if Self::in_zone(&k) {
                vec![self.soa()]
            } else {
                Vec::new()
            };
            return (ResponseCode::NXDomain, answers, authority);
        }
        let recs = self.names.get(&k).map(Vec::as_slice).unwrap_or(&[]);
        for r in recs {
            if qtype == RecordType::ANY || r.record_type() == qtype {
                answers.push(Record::from_rdata(owner.clone(), self.ttl, r.clone()));
            }
        }
        let authority = if answers.iter().any(|r| r.record_type() == qtype)
            || (qtype == RecordType::ANY && !answers.is_empty())
        {
            Vec::new()
        } else {
            vec![self.soa()]
        };
        (ResponseCode::NoError, answers, authority)
    }

    /// Builds the response to a raw query. `None` when the bytes are not even a DNS header.
    /// Returns the response bytes and the record for the query log (name, qtype, rcode).
    fn respond(&self, query: &[u8], tcp: bool) -> Option<(Vec<u8>, String, u16, u16)> {
        let req = match Message::from_vec(query) {
            Ok(m) => m,
            Err(_) => {
                if query.len() < 12 {
                    return None;
                }
                let id = u16::from_be_bytes([query[0], query[1]]);
                let resp = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                return Some((
                    resp.to_vec().ok()?,
                    String::new(),
                    0,
                    ResponseCode::FormErr.into(),
                ));
            }
        };
        if req.message_type() != MessageType::Query {
            return None;
        }
        let mut resp = Message::new();
        resp.set_id(req.id())
            .set_message_type(MessageType::Response)
            .set_op_code(req.op_code())
            .set_authoritative(true)
            .set_recursion_desired(req.recursion_desired())
            // Clients use the lab server as their resolver: say recursion is available.
            .set_recursion_available(true)
            .set_checking_disabled(req.checking_disabled());
        resp.add_queries(req.queries().iter().cloned());
        let mut udp_limit = 512usize;
        if let Some(edns) = req.extensions() {
            let mut e = Edns::new();
            e.set_max_payload(EDNS_PAYLOAD);
            resp.set_edns(e);
            udp_limit = usize::from(edns.max_payload().clamp(512, EDNS_PAYLOAD));
        }
        let (qname, qtype) = match (req.op_code(), req.queries()) {
            // A DNS server that is down: the query arrives and nothing comes back.
            (OpCode::Query, [q]) if key(&q.name().to_ascii()) == hosts::SILENT => return None,
            (OpCode::Query, [q]) => {
                let (rcode, answers, authority) = self.answer(q.name(), q.query_type());
                resp.set_response_code(rcode);
                resp.insert_answers(answers);
                resp.insert_name_servers(authority);
                (key(&q.name().to_ascii()), u16::from(q.query_type()))
            }
            (OpCode::Query, _) => {
                resp.set_response_code(ResponseCode::FormErr);
                (String::new(), 0)
            }
            _ => {
                resp.set_response_code(ResponseCode::NotImp);
                (String::new(), 0)
            }
        };
        let rcode = u16::from(resp.response_code());
        let mut bytes = resp.to_vec().ok()?;
        if !tcp && bytes.len() > udp_limit {
            // Too big for this UDP response: truncate, the client retries over TCP.
            resp.take_answers();
            resp.take_name_servers();
            resp.set_truncated(true);
            bytes = resp.to_vec().ok()?;
        }
        Some((bytes, qname, qtype, rcode))
    }
}

/// Binds the DNS sockets (127.0.0.1:53, 10.77.0.1:53, and ::1 / fd77::1 with IPv6) and spawns
/// the server tasks on the current (lab) runtime.
pub(crate) async fn start(config: &LabConfig, stats: Arc<LabStats>) -> Result<()> {
    let zone = Arc::new(Zone::new(config));
    let mut addrs: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into(), hosts::DNS.into()];
    if config.ipv6 {
        addrs.push(std::net::Ipv6Addr::LOCALHOST.into());
        addrs.push(hosts::v6_of(hosts::DNS).into());
    }
    for ip in addrs {
        let sa = SocketAddr::new(ip, 53);
        let udp = UdpSocket::bind(sa)
            .await
            .with_context(|| format!("binding DNS udp {sa}"))?;
        let tcp = TcpListener::bind(sa)
            .await
            .with_context(|| format!("binding DNS tcp {sa}"))?;
        tokio::spawn(serve_udp(
            udp,
            sa,
            zone.clone(),
            stats.clone(),
            config.dns_delay,
        ));
        tokio::spawn(serve_tcp(
            tcp,
            sa,
            zone.clone(),
            stats.clone(),
            config.dns_delay,
        ));
    }
    Ok(())
}

async fn serve_udp(
    sock: UdpSocket,
    local: SocketAddr,
    zone: Arc<Zone>,
    stats: Arc<LabStats>,
    delay: Duration,
) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 4096];
    for _ in 0..MAX_UDP_QUERIES {
        let (len, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("lab dns udp {local}: recv: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        stats.dns_received();
        let query = buf[..len].to_vec();
        let (sock, zone, stats) = (sock.clone(), zone.clone(), stats.clone());
        // Each answer is handled on its own so a delay does not serialise the answers to an
        // A + AAAA pair (glibc sends both at once and waits for both).
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if let Some((resp, name, qtype, rcode)) = zone.respond(&query, false) {
                // Logged before sending, so a client that has its answer finds it in the log.
                stats.dns_answered(DnsQueryRecord {
                    name,
                    qtype,
                    transport: DnsTransport::Udp,
                    rcode,
                    server: local,
                    client: peer,
                    received_by_then: 0, // set by dns_answered
                });
                let _ = sock.send_to(&resp, peer).await;
            }
        });
    }
}

async fn serve_tcp(
    listener: TcpListener,
    local: SocketAddr,
    zone: Arc<Zone>,
    stats: Arc<LabStats>,
    delay: Duration,
) {
    for _ in 0..MAX_TCP_CONNECTIONS {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("lab dns tcp {local}: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (zone, stats) = (zone.clone(), stats.clone());
        tokio::spawn(async move {
            let _ = serve_tcp_conn(stream, local, peer, &zone, &stats, delay).await;
        });
    }
}

async fn serve_tcp_conn(
    mut stream: TcpStream,
    local: SocketAddr,
    peer: SocketAddr,
    zone: &Zone,
    stats: &LabStats,
    delay: Duration,
) -> std::io::Result<()> {
    for _ in 0..MAX_TCP_MESSAGES {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return Ok(()),
        };
        let mut query = vec![0u8; len];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        stats.dns_received();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let Some((resp, name, qtype, rcode)) = zone.respond(&query, true) else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(resp.len() + 2);
        out.extend_from_slice(&(resp.len() as u16).to_be_bytes());
        out.extend_from_slice(&resp);
        stats.dns_answered(DnsQueryRecord {
            name,
            qtype,
            transport: DnsTransport::Tcp,
            rcode,
            server: local,
            client: peer,
            received_by_then: 0, // set by dns_answered
        });
        stream.write_all(&out).await?;
    }
    Ok(())
}

#[cfg(test)]
mod unit {
    use super::*;
    use hickory_proto::op::Query;

    fn ask(zone: &Zone, qname: &str, qtype: RecordType) -> Message {
        let mut m = Message::new();
        m.set_id(7).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(qname).unwrap(), qtype));
        let (bytes, ..) = zone.respond(&m.to_vec().unwrap(), false).unwrap();
        Message::from_vec(&bytes).unwrap()
    }

    #[test]
    fn lab_zone_answers() {
        let zone = Zone::new(&LabConfig::default());
        let r = ask(&zone, "WWW.shop.test.", RecordType::A);
        assert_eq!(r.id(), 7);
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert_eq!(r.answers().len(), 2);
        assert_eq!(r.answers()[0].record_type(), RecordType::CNAME);
        assert_eq!(r.answers()[1].data(), &RData::A(A(hosts::EDGE_ADDR)));
        assert!(r.answers().iter().all(|a| a.ttl() == 60));

        let r = ask(&zone, "shop.test.", RecordType::AAAA);
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert!(r.answers().is_empty());
        assert_eq!(r.name_servers().len(), 1);

        let r = ask(&zone, "www.shop.test.", RecordType::HTTPS);
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert_eq!(r.answers().len(), 2);
        let RData::HTTPS(h) = r.answers()[1].data() else {
            panic!("no HTTPS record: {r:?}")
        };
        assert_eq!(h.svc_priority(), 1);
        assert!(h.target_name().is_root());

        let r = ask(&zone, "nope.shop.test.", RecordType::A);
        assert_eq!(r.response_code(), ResponseCode::NXDomain);
        let r = ask(&zone, "example.com.", RecordType::A);
        assert_eq!(r.response_code(), ResponseCode::NXDomain);
        let r = ask(&zone, "cdn.test.", RecordType::A);
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert!(r.answers().is_empty());

        let zone6 = Zone::new(&LabConfig {
            ipv6: true,
            ..LabConfig::default()
        });
        let r = ask(&zone6, "static.shop.test.", RecordType::AAAA);
        assert_eq!(r.answers().len(), 1);
        assert_eq!(
            r.answers()[0].data(),
            &RData::AAAA(AAAA(hosts::v6_of(hosts::STATIC_ADDR)))
        );

        assert_eq!(resolve_v4("www.shop.test"), Some(hosts::EDGE_ADDR));
        assert_eq!(resolve_v4("nope.test"), None);
    }

    /// The HTTPS record's alpn: `h3` first exactly when HTTP/3 is advertised (drop and refuse
    /// advertise it too, so that a client tries QUIC and falls back).
    #[test]
    fn https_record_alpn_follows_the_http3_setting() {
        use super::super::Http3;
        let alpn_of = |http3: Http3| -> Vec<String> {
            let zone = Zone::new(&LabConfig {
                http3,
                ..LabConfig::default()
            });
            let r = ask(&zone, "edge.cdn.test.", RecordType::HTTPS);
            let RData::HTTPS(h) = r.answers()[0].data() else {
                panic!("no HTTPS record: {r:?}")
            };
            h.svc_params()
                .iter()
                .find_map(|(k, v)| match (k, v) {
                    (SvcParamKey::Alpn, SvcParamValue::Alpn(a)) => Some(a.0.clone()),
                    _ => None,
                })
                .expect("an alpn parameter")
        };
        assert_eq!(alpn_of(Http3::Off), ["h2", "http/1.1"]);
        for on in [Http3::On, Http3::Drop, Http3::Refuse] {
            assert_eq!(alpn_of(on), ["h3", "h2", "http/1.1"], "{on:?}");
        }
    }
}
