//! DNS with hickory-resolver's name-server pool, against the servers of `/etc/resolv.conf`
//! (or given ones), with no cache at all: every lookup sends real queries. A and AAAA go out
//! in parallel, as glibc's getaddrinfo sends them, each timed on its own. Like a stub
//! resolver the fetcher takes the recursive server's answer as it is (a CNAME chain with its
//! target's records, or NODATA) and does not chase CNAMEs itself, so it asks exactly the
//! questions getaddrinfo asks. `/etc/hosts` is read first, as the system resolver would.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::Hosts;
use hickory_resolver::config::{NameServerConfig, NameServerConfigGroup, ResolverOpts};
use hickory_resolver::name_server::{NameServerPool, TokioConnectionProvider};
use hickory_resolver::proto::op::{Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::proto::xfer::{
    DnsHandle, DnsRequestOptions, FirstAnswer, Protocol, RetryDnsHandle,
};
use hickory_resolver::proto::{ProtoError, ProtoErrorKind};

use super::FetchError;
use crate::clock::{Span, monotonic_ns};
use super::model::{DnsLookup, DnsQuery, DnsRecord, DnsSource};
use crate::failure::{Code, Failure, Phase};

/// Most CNAMEs followed when building the chain.
const MAX_CHAIN: usize = 16;

pub(crate) struct Dns {
    client: RetryDnsHandle<NameServerPool<TokioConnectionProvider>>,
    request: DnsRequestOptions,
    nameservers: Vec<SocketAddr>,
    hosts: Hosts,
}

impl Dns {
    /// `nameservers`: `None` reads `/etc/resolv.conf` (servers, timeout, attempts);
    /// `Some` asks those servers (UDP, then TCP on truncation) with 2 attempts.
    pub(crate) fn new(
        nameservers: Option<&[SocketAddr]>,
        timeout: Option<Duration>,
    ) -> Result<Dns, FetchError> {
        let (group, mut opts) = match nameservers {
            Some(servers) => {
                if servers.is_empty() {
                    return Err(FetchError::Usage("an empty list of name servers".into()));
                }
                let mut group = Vec::new();
                for s in servers {
                    group.push(NameServerConfig::new(*s, Protocol::Udp));
                    group.push(NameServerConfig::new(*s, Protocol::Tcp));
                }
                let mut opts = ResolverOpts::default();
                opts.attempts = 2;
                (NameServerConfigGroup::from(group), opts)
            }
            None => {
                let (config, opts) = hickory_resolver::system_conf::read_system_conf()
                    .map_err(|e| FetchError::Setup(format!("reading /etc/resolv.conf: {e}")))?;
                (
                    NameServerConfigGroup::from(config.name_servers().to_vec()),
                    opts,
                )
            }
        };
        if let Some(t) = timeout {
            opts.timeout = t;
        }
        // One server at a time, in resolv.conf order, as glibc does.
        opts.num_concurrent_reqs = 1;
        let mut nameservers: Vec<SocketAddr> = group.iter().map(|n| n.socket_addr).collect();
        nameservers.dedup();
        let mut request = DnsRequestOptions::default();
        request.recursion_desired = opts.recursion_desired;
        request.use_edns = opts.edns0;
        let attempts = opts.attempts.max(1);
        let pool = NameServerPool::from_config(group, opts, TokioConnectionProvider::default());
        let client = RetryDnsHandle::new(pool, attempts);
        let hosts = Hosts::from_system().unwrap_or_default();
        Ok(Dns {
            client,
            request,
            nameservers,
            hosts,
        })
    }

    /// Resolves `host` (an IDNA-encoded name). Always returns a record; `failure` is set
    /// when no address came back.
    pub(crate) async fn lookup(&self, id: usize, host: &str) -> DnsLookup {
        let start = monotonic_ns();
        let mut lookup = DnsLookup {
            id,
            host: host.to_owned(),
            source: DnsSource::Dns,
            span: Span::new(start, start).into(),
            nameservers: self.nameservers.clone(),
            queries: Vec::new(),
            cname_chain: vec![host.to_owned()],
            addresses: Vec::new(),
            min_ttl: None,
            failure: None,
        };
        let name = match Name::from_ascii(host) {
            Ok(mut n) => {
                n.set_fqdn(true);
                n
            }
            Err(e) => {
                lookup.failure = Some(Failure::new(
                    Phase::Dns,
                    Code::NameNotResolved,
                    format!("invalid name {host}: {e}"),
                ));
                lookup.span = Span::since(start).into();
                return lookup;
            }
        };

        // /etc/hosts first.
        let mut from_hosts = Vec::new();
        for rt in [RecordType::A, RecordType::AAAA] {
            if let Some(l) = self
                .hosts
                .lookup_static_host(&Query::query(name.clone(), rt))
            {
                from_hosts.extend(l.iter().filter_map(rdata_ip));
            }
        }
        if !from_hosts.is_empty() {
            lookup.source = DnsSource::HostsFile;
            lookup.nameservers.clear();
            lookup.addresses = order_addresses(from_hosts);
            lookup.span = Span::since(start).into();
            return lookup;
        }

        let (a, aaaa) = tokio::join!(
            self.query(&name, RecordType::A),
            self.query(&name, RecordType::AAAA)
        );
        lookup.span = Span::since(start).into();
        let mut addrs = Vec::new();
        let mut ttl: Option<u32> = None;
        for q in [&a, &aaaa] {
            for r in &q.records {
                if (r.rtype == "A" || r.rtype == "AAAA")
                    && let Ok(ip) = r.data.parse::<IpAddr>()
                {
                    addrs.push(ip);
                    ttl = Some(ttl.map_or(r.ttl, |t| t.min(r.ttl)));
                }
            }
        }
        lookup.cname_chain = cname_chain(host, a.records.iter().chain(aaaa.records.iter()));
        lookup.addresses = order_addresses(addrs);
        lookup.min_ttl = ttl;
        if lookup.addresses.is_empty() {
            lookup.failure = Some(dns_failure(host, &a, &aaaa, &self.nameservers));
        }
        lookup.queries = vec![a, aaaa];
        lookup
    }

    async fn query(&self, name: &Name, rt: RecordType) -> DnsQuery {
        let start = monotonic_ns();
        let res = self
            .client
            .lookup(Query::query(name.clone(), rt), self.request)
            .first_answer()
            .await;
        let span = Span::since(start).into();
        match res {
            Ok(resp) => {
                let records: Vec<DnsRecord> = resp.answers().iter().map(record).collect();
                let has_type = records.iter().any(|r| r.rtype == rt.to_string());
                DnsQuery {
                    qtype: rt.to_string(),
                    span,
                    rcode: Some(rcode_name(resp.response_code())),
                    error: (!has_type).then(|| "no records of this type".to_owned()),
                    records,
                }
            }
            Err(e) => {
                let (rcode, error) = describe_proto(&e);
                DnsQuery {
                    qtype: rt.to_string(),
                    span,
                    rcode,
                    records: Vec::new(),
                    error: Some(error),
                }
            }
        }
    }
}

/// `NOERROR`, `NXDOMAIN`, ... as dig prints them.
fn rcode_name(rc: ResponseCode) -> String {
    match rc {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

fn rdata_ip(r: &RData) -> Option<IpAddr> {
    match r {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    }
}

fn trim_dot(s: &str) -> String {
    s.trim_end_matches('.').to_ascii_lowercase()
}

fn record(r: &Record) -> DnsRecord {
    let data = match r.data() {
        RData::CNAME(c) => trim_dot(&c.0.to_ascii()),
        other => other.to_string(),
    };
    DnsRecord {
        name: trim_dot(&r.name().to_ascii()),
        rtype: r.record_type().to_string(),
        ttl: r.ttl(),
        data,
    }
}

/// IPv4 first, then IPv6, each in answer order, without duplicates. (The lab and most
/// test setups are IPv4; getaddrinfo's RFC 6724 sorting would put IPv6 first only when the
/// machine has a global IPv6 address.)
fn order_addresses(addrs: Vec<IpAddr>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for want_v4 in [true, false] {
        for a in &addrs {
            if a.is_ipv4() == want_v4 && !out.contains(a) {
                out.push(*a);
            }
        }
    }
    out
}

/// `host`, then each CNAME target in turn.
pub(crate) fn cname_chain<'a>(
    host: &str,
    records: impl Iterator<Item = &'a DnsRecord> + Clone,
) -> Vec<String> {
    let mut chain = vec![trim_dot(host)];
    for _ in 0..MAX_CHAIN {
        let cur = chain.last().cloned().unwrap_or_default();
        let next = records
            .clone()
            .find(|r| r.rtype == "CNAME" && r.name == cur)
            .map(|r| r.data.clone());
        match next {
            Some(n) if !chain.contains(&n) => chain.push(n),
            _ => break,
        }
    }
    chain
}

fn describe_proto(p: &ProtoError) -> (Option<String>, String) {
    match p.kind() {
        ProtoErrorKind::NoRecordsFound { response_code, .. } => {
            let what = match *response_code {
                ResponseCode::NXDomain => "the name does not exist".to_owned(),
                ResponseCode::NoError => "no records of this type".to_owned(),
                other => format!("the server answered {}", rcode_name(other)),
            };
            (Some(rcode_name(*response_code)), what)
        }
        ProtoErrorKind::Timeout => (None, "timed out".into()),
        _ => (None, p.to_string()),
    }
}

/// The failure of a lookup that gave no address: NXDOMAIN wins, then a server error, then a
/// timeout, then "no address records".
fn dns_failure(host: &str, a: &DnsQuery, aaaa: &DnsQuery, servers: &[SocketAddr]) -> Failure {
    let servers = servers
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let rcodes = [a.rcode.as_deref(), aaaa.rcode.as_deref()];
    if rcodes.contains(&Some("NXDOMAIN")) {
        return Failure::new(
            Phase::Dns,
            Code::NameNotResolved,
            format!("NXDOMAIN: {host} does not exist (asked {servers})"),
        );
    }
    for q in [a, aaaa] {
        if let Some(rc) = q.rcode.as_deref().filter(|rc| *rc != "NOERROR") {
            return Failure::new(
                Phase::Dns,
                Code::NameNotResolved,
                format!(
                    "{rc}: the server failed to answer {} {host} (asked {servers})",
                    q.qtype
                ),
            );
        }
    }
    for q in [a, aaaa] {
        if q.rcode.is_none() {
            let err = q.error.clone().unwrap_or_default();
            let code = if err.contains("timed out") {
                Code::NameNotResolved
            } else {
                Code::NameResolutionFailed
            };
            return Failure::new(
                Phase::Dns,
                code,
                format!("{} {host}: {err} (asked {servers})", q.qtype),
            );
        }
    }
    Failure::new(
        Phase::Dns,
        Code::NameNotResolved,
        format!("NODATA: {host} has no A or AAAA records (asked {servers})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, rtype: &str, data: &str) -> DnsRecord {
        DnsRecord {
            name: name.into(),
            rtype: rtype.into(),
            ttl: 60,
            data: data.into(),
        }
    }

    #[test]
    fn chain_follows_cnames_and_stops_on_loops() {
        let rs = [
            rec("www.shop.test", "CNAME", "edge.cdn.test"),
            rec("edge.cdn.test", "A", "10.77.0.3"),
        ];
        assert_eq!(
            cname_chain("www.shop.test.", rs.iter()),
            ["www.shop.test", "edge.cdn.test"]
        );
        let rs = [
            rec("a.test", "CNAME", "b.test"),
            rec("b.test", "CNAME", "a.test"),
        ];
        assert_eq!(cname_chain("a.test", rs.iter()), ["a.test", "b.test"]);
        assert_eq!(cname_chain("x.test", [].iter()), ["x.test"]);
    }

    #[test]
    fn addresses_v4_first_without_duplicates() {
        let v: Vec<IpAddr> = ["fd77::3", "10.77.0.3", "10.77.0.4", "10.77.0.3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let o = order_addresses(v);
        assert_eq!(
            o.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            ["10.77.0.3", "10.77.0.4", "fd77::3"]
        );
    }

    #[test]
    fn failure_prefers_nxdomain() {
        let q = |qtype: &str, rcode: Option<&str>, err: &str| DnsQuery {
            qtype: qtype.into(),
            span: Span::new(0, 0).into(),
            rcode: rcode.map(Into::into),
            records: vec![],
            error: Some(err.into()),
        };
        let s: Vec<SocketAddr> = vec!["127.0.0.1:53".parse().unwrap()];
        let f = dns_failure(
            "nope.test",
            &q("A", Some("NXDOMAIN"), "x"),
            &q("AAAA", None, "timed out"),
            &s,
        );
        assert_eq!(f.code, Code::NameNotResolved);
        assert!(f.detail.as_ref().is_some_and(|d| d.starts_with("NXDOMAIN")), "{f:?}");
        let f = dns_failure(
            "x.test",
            &q("A", Some("SERVFAIL"), "x"),
            &q("AAAA", Some("NOERROR"), "x"),
            &s,
        );
        assert!(f.detail.as_ref().is_some_and(|d| d.starts_with("SERVFAIL")), "{f:?}");
        let f = dns_failure(
            "x.test",
            &q("A", None, "timed out"),
            &q("AAAA", None, "timed out"),
            &s,
        );
        assert!(f.detail.as_ref().is_some_and(|d| d.contains("timed out")), "{f:?}");
        let f = dns_failure(
            "x.test",
            &q("A", Some("NOERROR"), "x"),
            &q("AAAA", Some("NOERROR"), "x"),
            &s,
        );
        assert!(f.detail.as_ref().is_some_and(|d| d.starts_with("NODATA")), "{f:?}");
    }
}
