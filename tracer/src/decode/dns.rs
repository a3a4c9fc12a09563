//! DNS messages as captured by the kernel (UDP payloads, or TCP reads with their 2-byte length
//! prefix), decoded with hickory-proto's wire decoder.
//!
//! The kernel copies at most [`tracer_common::DNS_CAPTURE_MAX`] bytes of a message, so a long
//! answer may arrive cut short. A cut message is an error ([`DnsError::Truncated`]), never a
//! partial or made-up result.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::rdata::svcb::{SVCB, SvcParamValue};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::DecodeError;
use hickory_proto::{ProtoError, ProtoErrorKind};
use serde::Serialize;

/// Size of the fixed DNS header.
const HEADER_LEN: usize = 12;
/// Smallest possible question: root name (1 byte), type and class.
const MIN_QUESTION_LEN: usize = 1 + 2 + 2;
/// Smallest possible resource record: root name, type, class, TTL and RDLENGTH.
const MIN_RECORD_LEN: usize = 1 + 2 + 2 + 4 + 2;

/// Why a DNS message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("empty DNS message")]
    Empty,
    #[error("DNS-over-TCP data of {got} byte(s) is shorter than its 2-byte length prefix")]
    MissingLengthPrefix { got: usize },
    /// The message ends before the data it announces: cut by the capture limit, or lying
    /// about its own size.
    #[error("DNS message truncated in the {what}: {got} byte(s) present, at least {needed} needed")]
    Truncated {
        what: &'static str,
        got: usize,
        needed: usize,
    },
    /// hickory-proto rejected the message (bad label, compression-pointer loop, bad RDATA...).
    #[error("malformed DNS message: {0}")]
    Malformed(ProtoError),
}

/// A decoded DNS message: the header fields, the question and answer sections. Authority and
/// additional records are checked by the decoder but not kept.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct DnsMessage {
    pub id: u16,
    pub is_response: bool,
    /// "QUERY", "STATUS", "NOTIFY", "UPDATE", ... or "OPCODE<n>".
    pub opcode: String,
    /// "NOERROR", "NXDOMAIN", "SERVFAIL", ... or "RCODE<n>" (EDNS extended codes included).
    pub rcode: String,
    /// The TC bit: the server cut the answer (the client retries over TCP).
    pub truncated: bool,
    pub questions: Vec<DnsQuestion>,
    pub answers: Vec<DnsAnswer>,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct DnsQuestion {
    /// Without the trailing dot; "." for the root. Non-printable bytes are escaped.
    pub name: String,
    /// "A", "AAAA", "CNAME", "HTTPS", ... or "TYPE<n>".
    pub qtype: String,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct DnsAnswer {
    pub name: String,
    pub rtype: String,
    pub ttl: u32,
    pub data: DnsData,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub enum DnsData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    /// An HTTPS record (type 65, the SVCB format). `target` is "." when the record's own
    /// name is the target.
    Https {
        priority: u16,
        target: String,
        alpn: Vec<String>,
        ipv4hint: Vec<Ipv4Addr>,
        ipv6hint: Vec<Ipv6Addr>,
    },
    /// Any other record, in presentation form (printable ASCII only).
    Other(String),
}

/// Decodes one DNS message. With `tcp`, `bytes` starts with the 2-byte big-endian length
/// prefix of DNS over TCP; bytes after the announced length (a following message) are ignored.
pub fn parse_dns(bytes: &[u8], tcp: bool) -> Result<DnsMessage, DnsError> {
    let msg = if tcp { strip_tcp_prefix(bytes)? } else { bytes };
    if msg.is_empty() {
        return Err(DnsError::Empty);
    }
    if msg.len() < HEADER_LEN {
        return Err(DnsError::Truncated {
            what: "header",
            got: msg.len(),
            needed: HEADER_LEN,
        });
    }
    check_section_counts(msg)?;
    let message = Message::from_vec(msg).map_err(|e| classify(e, msg.len()))?;
    Ok(DnsMessage::from_hickory(&message))
}

fn strip_tcp_prefix(bytes: &[u8]) -> Result<&[u8], DnsError> {
    match bytes {
        [] => Err(DnsError::Empty),
        [_] => Err(DnsError::MissingLengthPrefix { got: 1 }),
        [hi, lo, rest @ ..] => {
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            if len == 0 {
                return Err(DnsError::Empty);
            }
            rest.get(..len).ok_or(DnsError::Truncated {
                what: "message announced by the TCP length prefix",
                got: rest.len(),
                needed: len,
            })
        }
    }
}

/// Rejects a message whose header announces more entries than could possibly fit (the usual
/// shape of a cut message), before hickory-proto allocates room for them.
fn check_section_counts(msg: &[u8]) -> Result<(), DnsError> {
    let count = |at: usize| usize::from(u16::from_be_bytes([msg[at], msg[at + 1]]));
    let questions = count(4);
    let records = count(6) + count(8) + count(10);
    let needed = HEADER_LEN + questions * MIN_QUESTION_LEN + records * MIN_RECORD_LEN;
    if needed > msg.len() {
        return Err(DnsError::Truncated {
            what: "sections announced by the header",
            got: msg.len(),
            needed,
        });
    }
    Ok(())
}

/// Sorts hickory-proto's errors into "ran out of bytes" and everything else.
fn classify(err: ProtoError, len: usize) -> DnsError {
    let out_of_bytes = match err.kind() {
        ProtoErrorKind::Msg(m) => {
            *m == DecodeError::InsufficientBytes.to_string()
                || m.starts_with("rdata length too large for remaining bytes")
        }
        _ => false,
    };
    if out_of_bytes {
        DnsError::Truncated {
            what: "records",
            got: len,
            needed: len + 1,
        }
    } else {
        DnsError::Malformed(err)
    }
}

impl DnsMessage {
    fn from_hickory(m: &Message) -> Self {
        DnsMessage {
            id: m.id(),
            is_response: m.message_type() == MessageType::Response,
            opcode: opcode_name(u8::from(m.op_code())),
            rcode: rcode_name(u16::from(m.response_code())),
            truncated: m.truncated(),
            questions: m
                .queries()
                .iter()
                .map(|q| DnsQuestion {
                    name: name_str(q.name()),
                    qtype: type_name(u16::from(q.query_type())),
                })
                .collect(),
            answers: m.answers().iter().map(answer).collect(),
        }
    }

    /// The name asked for, followed by each CNAME target in turn, following the answers in
    /// their order (`["www.shop.test", "edge.cdn.test"]`). Just the question name when there is
    /// no CNAME, empty when there is no question. Names compare case-insensitively; a CNAME
    /// loop stops at the first repeated name.
    pub fn cname_chain(&self) -> Vec<String> {
        let Some(q) = self.questions.first() else {
            return Vec::new();
        };
        let mut chain = vec![q.name.clone()];
        while let Some(current) = chain.last() {
            let next = self.answers.iter().find_map(|a| match &a.data {
                DnsData::Cname(target) if a.name.eq_ignore_ascii_case(current) => Some(target),
                _ => None,
            });
            match next {
                Some(t) if !chain.iter().any(|c| c.eq_ignore_ascii_case(t)) => {
                    chain.push(t.clone())
                }
                _ => break,
            }
        }
        chain
    }

    /// Every A and AAAA address in the answer section, in order.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.answers
            .iter()
            .filter_map(|a| match a.data {
                DnsData::A(ip) => Some(IpAddr::V4(ip)),
                DnsData::Aaaa(ip) => Some(IpAddr::V6(ip)),
                _ => None,
            })
            .collect()
    }
}

/// One line for a live printer:
/// `query id=0x1a2b A shop.test` or
/// `answer id=0x1a2b NOERROR shop.test CNAME edge.cdn.test A 10.0.0.2 (ttl 60)`
/// (the TTL shown is the smallest of the answers).
impl fmt::Display for DnsMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_response {
            write!(f, "answer id=0x{:04x} {}", self.id, self.rcode)?;
        } else {
            write!(f, "query id=0x{:04x}", self.id)?;
        }
        if self.opcode != "QUERY" {
            write!(f, " opcode={}", self.opcode)?;
        }
        if self.truncated {
            f.write_str(" TC")?;
        }
        for q in &self.questions {
            if self.is_response {
                write!(f, " {}", q.name)?;
            } else {
                write!(f, " {} {}", q.qtype, q.name)?;
            }
        }
        if self.is_response {
            for a in &self.answers {
                write!(f, " {} {}", a.rtype, a.data)?;
            }
            if let Some(ttl) = self.answers.iter().map(|a| a.ttl).min() {
                write!(f, " (ttl {ttl})")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for DnsData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsData::A(ip) => write!(f, "{ip}"),
            DnsData::Aaaa(ip) => write!(f, "{ip}"),
            DnsData::Cname(name) => f.write_str(name),
            DnsData::Https {
                priority,
                target,
                alpn,
                ipv4hint,
                ipv6hint,
            } => {
                write!(f, "{priority} {target}")?;
                if !alpn.is_empty() {
                    write!(f, " alpn={}", alpn.join(","))?;
                }
                write_list(f, " ipv4hint=", ipv4hint)?;
                write_list(f, " ipv6hint=", ipv6hint)
            }
            DnsData::Other(s) => f.write_str(s),
        }
    }
}

fn write_list<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    label: &str,
    items: &[T],
) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        f.write_str(if i == 0 { label } else { "," })?;
        write!(f, "{item}")?;
    }
    Ok(())
}

fn answer(r: &Record) -> DnsAnswer {
    DnsAnswer {
        name: name_str(r.name()),
        rtype: type_name(u16::from(r.record_type())),
        ttl: r.ttl(),
        data: match r.data() {
            RData::A(a) => DnsData::A(a.0),
            RData::AAAA(a) => DnsData::Aaaa(a.0),
            RData::CNAME(c) => DnsData::Cname(name_str(&c.0)),
            RData::HTTPS(h) => https(&h.0),
            other => DnsData::Other(presentation(other)),
        },
    }
}

fn https(svcb: &SVCB) -> DnsData {
    let mut alpn = Vec::new();
    let mut ipv4hint = Vec::new();
    let mut ipv6hint = Vec::new();
    for (_, value) in svcb.svc_params() {
        match value {
            SvcParamValue::Alpn(a) => alpn.extend(a.0.iter().map(|s| printable(s))),
            SvcParamValue::Ipv4Hint(h) => ipv4hint.extend(h.0.iter().map(|a| a.0)),
            SvcParamValue::Ipv6Hint(h) => ipv6hint.extend(h.0.iter().map(|a| a.0)),
            _ => {}
        }
    }
    DnsData::Https {
        priority: svcb.svc_priority(),
        target: name_str(svcb.target_name()),
        alpn,
        ipv4hint,
        ipv6hint,
    }
}

/// RDATA in presentation form. Written through `fmt::Write` rather than `to_string()`, which
/// panics when a `Display` impl fails (hickory's OPT does, and an OPT can sit in the answers).
fn presentation(rdata: &RData) -> String {
    let mut s = String::new();
    match write!(s, "{rdata}") {
        Ok(()) => printable(&s),
        Err(_) => "(not displayable)".to_string(),
    }
}

/// Names as ASCII (IDNA labels stay in `xn--` form, odd bytes are escaped), without the
/// trailing dot; the root is ".".
fn name_str(name: &Name) -> String {
    let s = name.to_ascii();
    let s = s.strip_suffix('.').unwrap_or(&s);
    if s.is_empty() {
        ".".to_string()
    } else {
        printable(s)
    }
}

/// Keeps printable ASCII, escapes everything else (so a printer cannot be fed control bytes).
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == ' ' || c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// Mnemonic of a record type, "TYPE<n>" (RFC 3597 style) for types hickory does not name.
fn type_name(code: u16) -> String {
    match RecordType::from(code) {
        // hickory gives ANAME a private-use number; ZERO is not a real type.
        RecordType::Unknown(_) | RecordType::ZERO | RecordType::ANAME => format!("TYPE{code}"),
        known => <&'static str>::from(known).to_string(),
    }
}

fn opcode_name(code: u8) -> String {
    match code {
        0 => "QUERY".into(),
        1 => "IQUERY".into(),
        2 => "STATUS".into(),
        4 => "NOTIFY".into(),
        5 => "UPDATE".into(),
        6 => "DSO".into(),
        n => format!("OPCODE{n}"),
    }
}

fn rcode_name(code: u16) -> String {
    let name = match code {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        11 => "DSOTYPENI",
        16 => "BADVERS",
        17 => "BADKEY",
        18 => "BADTIME",
        19 => "BADMODE",
        20 => "BADNAME",
        21 => "BADALG",
        22 => "BADTRUNC",
        23 => "BADCOOKIE",
        n => return format!("RCODE{n}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::svcb::{Alpn, IpHint, SvcParamKey};
    use hickory_proto::rr::rdata::{A, CNAME, HTTPS, SOA};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("valid test name")
    }

    fn base(id: u16, response: bool, qname: &str, qtype: RecordType) -> Message {
        let mut m = Message::new();
        m.set_id(id)
            .set_message_type(if response {
                MessageType::Response
            } else {
                MessageType::Query
            })
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(name(qname), qtype));
        if response {
            m.set_recursion_available(true);
        }
        m
    }

    fn query_shop() -> Vec<u8> {
        base(0x1a2b, false, "shop.test.", RecordType::A)
            .to_vec()
            .unwrap()
    }

    fn cname_response() -> Vec<u8> {
        let mut m = base(0x1a2b, true, "www.shop.test.", RecordType::A);
        m.add_answer(Record::from_rdata(
            name("www.shop.test."),
            300,
            RData::CNAME(CNAME(name("edge.cdn.test."))),
        ));
        m.add_answer(Record::from_rdata(
            name("edge.cdn.test."),
            60,
            RData::A(A::new(10, 0, 0, 2)),
        ));
        m.to_vec().unwrap()
    }

    fn nxdomain() -> Vec<u8> {
        let mut m = base(0x0042, true, "nope.shop.test.", RecordType::AAAA);
        m.set_response_code(ResponseCode::NXDomain);
        let soa = SOA::new(
            name("ns.test."),
            name("admin.test."),
            7,
            3600,
            600,
            86400,
            30,
        );
        m.add_name_server(Record::from_rdata(name("test."), 30, RData::SOA(soa)));
        m.to_vec().unwrap()
    }

    fn https_response() -> Vec<u8> {
        let mut m = base(0x0707, true, "shop.test.", RecordType::HTTPS);
        let svcb = SVCB::new(
            1,
            Name::root(),
            vec![
                (
                    SvcParamKey::Alpn,
                    SvcParamValue::Alpn(Alpn(vec!["h2".into()])),
                ),
                (
                    SvcParamKey::Ipv4Hint,
                    SvcParamValue::Ipv4Hint(IpHint(vec![A::new(10, 0, 0, 2)])),
                ),
            ],
        );
        m.add_answer(Record::from_rdata(
            name("shop.test."),
            120,
            RData::HTTPS(HTTPS(svcb)),
        ));
        m.to_vec().unwrap()
    }

    fn with_prefix(msg: &[u8]) -> Vec<u8> {
        let mut v = (msg.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(msg);
        v
    }

    use crate::test_rng::Rng as Prng;

    /// Everything a printer or the JSON writer does with a decoded message.
    fn exercise(m: &DnsMessage) {
        let line = m.to_string();
        assert!(
            line.chars().all(|c| c == ' ' || c.is_ascii_graphic()),
            "unprintable: {line:?}"
        );
        serde_json::to_string(m).expect("serializable");
        let _ = m.cname_chain();
        let _ = m.addresses();
    }

    #[test]
    fn query_for_shop_test() {
        let m = parse_dns(&query_shop(), false).unwrap();
        assert_eq!(m.id, 0x1a2b);
        assert!(!m.is_response);
        assert_eq!(m.opcode, "QUERY");
        assert_eq!(m.rcode, "NOERROR");
        assert!(!m.truncated);
        assert_eq!(
            m.questions,
            vec![DnsQuestion {
                name: "shop.test".into(),
                qtype: "A".into()
            }]
        );
        assert!(m.answers.is_empty());
        assert_eq!(m.to_string(), "query id=0x1a2b A shop.test");
        assert_eq!(m.cname_chain(), vec!["shop.test".to_string()]);
        assert!(m.addresses().is_empty());
    }

    #[test]
    fn response_with_cname_chain() {
        let m = parse_dns(&cname_response(), false).unwrap();
        assert!(m.is_response);
        assert_eq!(m.rcode, "NOERROR");
        assert_eq!(m.answers.len(), 2);
        assert_eq!(
            m.answers[0],
            DnsAnswer {
                name: "www.shop.test".into(),
                rtype: "CNAME".into(),
                ttl: 300,
                data: DnsData::Cname("edge.cdn.test".into()),
            }
        );
        assert_eq!(m.answers[1].data, DnsData::A(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(m.answers[1].ttl, 60);
        assert_eq!(
            m.cname_chain(),
            vec!["www.shop.test".to_string(), "edge.cdn.test".to_string()]
        );
        assert_eq!(m.addresses(), vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))]);
        assert_eq!(
            m.to_string(),
            "answer id=0x1a2b NOERROR www.shop.test CNAME edge.cdn.test A 10.0.0.2 (ttl 60)"
        );
    }

    #[test]
    fn nxdomain_response() {
        let m = parse_dns(&nxdomain(), false).unwrap();
        assert_eq!(m.id, 0x42);
        assert_eq!(m.rcode, "NXDOMAIN");
        assert_eq!(m.questions[0].qtype, "AAAA");
        assert!(m.answers.is_empty(), "the SOA is in the authority section");
        assert!(m.addresses().is_empty());
        assert_eq!(m.to_string(), "answer id=0x0042 NXDOMAIN nope.shop.test");
    }

    #[test]
    fn https_record_with_alpn_and_ipv4hint() {
        let m = parse_dns(&https_response(), false).unwrap();
        assert_eq!(m.questions[0].qtype, "HTTPS");
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].rtype, "HTTPS");
        assert_eq!(
            m.answers[0].data,
            DnsData::Https {
                priority: 1,
                target: ".".into(),
                alpn: vec!["h2".into()],
                ipv4hint: vec![Ipv4Addr::new(10, 0, 0, 2)],
                ipv6hint: vec![],
            }
        );
        assert_eq!(
            m.to_string(),
            "answer id=0x0707 NOERROR shop.test HTTPS 1 . alpn=h2 ipv4hint=10.0.0.2 (ttl 120)"
        );
        // HTTPS hints are not answers' addresses.
        assert!(m.addresses().is_empty());
    }

    #[test]
    fn other_types_and_unknown_type_names() {
        let mut m = base(1, false, "shop.test.", RecordType::Unknown(123));
        m.add_query(Query::query(name("shop.test."), RecordType::AAAA));
        let d = parse_dns(&m.to_vec().unwrap(), false).unwrap();
        assert_eq!(d.questions[0].qtype, "TYPE123");
        assert_eq!(d.questions[1].qtype, "AAAA");
        assert_eq!(
            d.to_string(),
            "query id=0x0001 TYPE123 shop.test AAAA shop.test"
        );
        assert_eq!(type_name(0), "TYPE0");
        assert_eq!(type_name(65), "HTTPS");
        assert_eq!(type_name(64), "SVCB");
    }

    #[test]
    fn rcode_opcode_and_flags() {
        let mut m = base(9, true, "shop.test.", RecordType::A);
        m.set_response_code(ResponseCode::ServFail)
            .set_truncated(true);
        let d = parse_dns(&m.to_vec().unwrap(), false).unwrap();
        assert_eq!(d.rcode, "SERVFAIL");
        assert!(d.truncated);
        assert_eq!(d.to_string(), "answer id=0x0009 SERVFAIL TC shop.test");
        assert_eq!(rcode_name(3), "NXDOMAIN");
        assert_eq!(rcode_name(15), "RCODE15");
        assert_eq!(opcode_name(5), "UPDATE");
        assert_eq!(opcode_name(9), "OPCODE9");
    }

    #[test]
    fn aaaa_and_other_records() {
        let mut m = base(5, true, "shop.test.", RecordType::AAAA);
        let ip: Ipv6Addr = "2001:db8::2".parse().unwrap();
        m.add_answer(Record::from_rdata(
            name("shop.test."),
            30,
            RData::AAAA(ip.into()),
        ));
        m.add_answer(Record::from_rdata(
            name("shop.test."),
            30,
            RData::TXT(hickory_proto::rr::rdata::TXT::new(vec![
                "hi\u{1}there".into(),
            ])),
        ));
        let d = parse_dns(&m.to_vec().unwrap(), false).unwrap();
        assert_eq!(d.answers[0].data, DnsData::Aaaa(ip));
        assert_eq!(d.addresses(), vec![IpAddr::V6(ip)]);
        assert_eq!(d.answers[1].rtype, "TXT");
        match &d.answers[1].data {
            DnsData::Other(s) => {
                assert!(s.contains("hi") && s.contains("there"), "{s}");
                assert!(!s.contains('\u{1}'), "control byte must be escaped: {s:?}");
            }
            other => panic!("expected Other, got {other:?}"),
        }
        exercise(&d);
    }

    #[test]
    fn opt_record_in_the_answers_does_not_panic() {
        // hickory's Display for OPT returns fmt::Error, which `to_string()` turns into a panic.
        let mut buf = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        buf.extend_from_slice(&[
            4, b's', b'h', b'o', b'p', 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1,
        ]);
        buf.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 4, 0, 10, 0, 0]); // root-owned OPT
        let m = parse_dns(&buf, false).unwrap();
        assert_eq!(m.answers[0].rtype, "OPT");
        assert_eq!(
            m.answers[0].data,
            DnsData::Other("(not displayable)".into())
        );
        exercise(&m);
    }

    #[test]
    fn serializes_to_json() {
        let m = parse_dns(&cname_response(), false).unwrap();
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["id"], 0x1a2b);
        assert_eq!(v["rcode"], "NOERROR");
        assert_eq!(v["questions"][0]["name"], "www.shop.test");
        assert_eq!(v["answers"][0]["data"]["Cname"], "edge.cdn.test");
        assert_eq!(v["answers"][1]["data"]["A"], "10.0.0.2");
    }

    #[test]
    fn tcp_length_prefix() {
        let msg = cname_response();
        let framed = with_prefix(&msg);
        assert_eq!(
            parse_dns(&framed, true).unwrap(),
            parse_dns(&msg, false).unwrap()
        );

        // A following message after the announced length is ignored.
        let mut two = framed.clone();
        two.extend_from_slice(&with_prefix(&query_shop()));
        assert_eq!(parse_dns(&two, true).unwrap().answers.len(), 2);

        // The prefix read as a DNS header is not a DNS message of its own.
        assert!(parse_dns(&framed, false).is_err());
        assert!(matches!(parse_dns(&[], true), Err(DnsError::Empty)));
        assert!(matches!(
            parse_dns(&[0], true),
            Err(DnsError::MissingLengthPrefix { got: 1 })
        ));
        assert!(matches!(parse_dns(&[0, 0], true), Err(DnsError::Empty)));
        assert!(matches!(
            parse_dns(&framed[..framed.len() - 1], true),
            Err(DnsError::Truncated { got, needed, .. }) if got == msg.len() - 1 && needed == msg.len()
        ));
        // A prefix announcing more than is there.
        let mut lying = framed.clone();
        lying[..2].copy_from_slice(&((msg.len() + 10) as u16).to_be_bytes());
        assert!(matches!(
            parse_dns(&lying, true),
            Err(DnsError::Truncated { .. })
        ));
    }

    #[test]
    fn empty_and_one_byte() {
        assert!(matches!(parse_dns(&[], false), Err(DnsError::Empty)));
        assert!(matches!(
            parse_dns(&[0x1a], false),
            Err(DnsError::Truncated {
                what: "header",
                got: 1,
                needed: 12
            })
        ));
        let e = parse_dns(&[0x1a], false).unwrap_err().to_string();
        assert!(e.contains("header") && e.contains("12"), "{e}");
    }

    #[test]
    fn every_truncation_is_an_error() {
        for (label, msg) in [
            ("query", query_shop()),
            ("cname", cname_response()),
            ("nxdomain", nxdomain()),
            ("https", https_response()),
        ] {
            assert!(parse_dns(&msg, false).is_ok(), "{label} complete");
            for n in 0..msg.len() {
                let r = parse_dns(&msg[..n], false);
                assert!(
                    r.is_err(),
                    "{label} cut at {n} of {} decoded: {r:?}",
                    msg.len()
                );
            }
            let framed = with_prefix(&msg);
            assert!(parse_dns(&framed, true).is_ok(), "{label} framed");
            for n in 0..framed.len() {
                assert!(
                    parse_dns(&framed[..n], true).is_err(),
                    "{label} framed cut at {n}"
                );
            }
        }
    }

    #[test]
    fn cut_inside_records_is_reported_as_truncated() {
        let msg = cname_response();
        // Cut in the middle of the last record's RDATA (the A address).
        let r = parse_dns(&msg[..msg.len() - 2], false);
        assert!(matches!(r, Err(DnsError::Truncated { .. })), "{r:?}");
    }

    #[test]
    fn compression_pointer_loops_are_rejected() {
        // Header: id 0x0001, query, 1 question.
        let header = [0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
        // A name that points at itself.
        let mut selfloop = header.to_vec();
        selfloop.extend_from_slice(&[0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01]);
        assert!(matches!(
            parse_dns(&selfloop, false),
            Err(DnsError::Malformed(_))
        ));
        // Label "a" then a pointer back to it: a.a.a.a...
        let mut labelloop = header.to_vec();
        labelloop.extend_from_slice(&[0x01, b'a', 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01]);
        assert!(matches!(
            parse_dns(&labelloop, false),
            Err(DnsError::Malformed(_))
        ));
        // A forward pointer past the end.
        let mut forward = header.to_vec();
        forward.extend_from_slice(&[0xc0, 0xff, 0x00, 0x01, 0x00, 0x01]);
        assert!(parse_dns(&forward, false).is_err());
    }

    #[test]
    fn counts_larger_than_the_message_are_truncated() {
        let mut msg = query_shop();
        msg[5] = 0xff; // 255 questions
        assert!(matches!(
            parse_dns(&msg, false),
            Err(DnsError::Truncated {
                what: "sections announced by the header",
                ..
            })
        ));
    }

    #[test]
    fn cname_chain_stops_on_loops_and_ignores_case() {
        let mut m = base(3, true, "A.test.", RecordType::A);
        m.add_answer(Record::from_rdata(
            name("a.test."),
            1,
            RData::CNAME(CNAME(name("b.test."))),
        ));
        m.add_answer(Record::from_rdata(
            name("B.TEST."),
            1,
            RData::CNAME(CNAME(name("a.test."))),
        ));
        let d = parse_dns(&m.to_vec().unwrap(), false).unwrap();
        assert_eq!(
            d.cname_chain(),
            vec!["A.test".to_string(), "b.test".to_string()]
        );
        assert_eq!(
            DnsMessage {
                questions: vec![],
                ..d
            }
            .cname_chain(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Prng(0x9e37_79b9_7f4a_7c15);
        let mut ok = 0;
        for i in 0..20_000 {
            let len = rng.below(600);
            let mut buf = rng.bytes(len);
            // Every other buffer gets plausible small section counts so decoding goes deeper.
            if i % 2 == 0 && buf.len() >= 12 {
                for at in [4, 6, 8, 10] {
                    buf[at] = 0;
                    buf[at + 1] = (rng.next() % 3) as u8;
                }
            }
            for tcp in [false, true] {
                if let Ok(m) = parse_dns(&buf, tcp) {
                    ok += 1;
                    exercise(&m);
                }
            }
        }
        // Not a hard property, but random data decoding often would mean the checks are lax.
        assert!(ok < 2_000, "{ok} random buffers decoded");
    }

    #[test]
    fn mutated_messages_never_panic() {
        let mut rng = Prng(42);
        let seeds = [query_shop(), cname_response(), nxdomain(), https_response()];
        let (mut ok, mut err) = (0, 0);
        for _ in 0..20_000 {
            let mut buf = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(buf.len());
                buf[at] = rng.next() as u8;
            }
            match parse_dns(&buf, false) {
                Ok(m) => {
                    ok += 1;
                    exercise(&m);
                }
                Err(e) => {
                    err += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        assert!(ok > 0 && err > 0, "ok {ok} err {err}");
    }

    /// One answer of every record type with random RDATA: hickory's RDATA decoders and our
    /// conversion and printing must not panic (an OPT in the answers once could, via Display).
    #[test]
    fn every_record_type_with_random_rdata() {
        let mut rng = Prng(7);
        let mut types: Vec<u16> = (0..=300).collect();
        types.extend([32768, 32769, 65305, 65535]);
        for rtype in types {
            for _ in 0..40 {
                let rdlen = rng.below(64);
                let mut buf = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
                buf.extend_from_slice(&[
                    4, b's', b'h', b'o', b'p', 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1,
                ]);
                buf.extend_from_slice(&[0xc0, 0x0c]);
                buf.extend_from_slice(&rtype.to_be_bytes());
                buf.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
                buf.extend_from_slice(&(rdlen as u16).to_be_bytes());
                buf.extend(rng.bytes(rdlen));
                if let Ok(m) = parse_dns(&buf, false) {
                    exercise(&m);
                    assert_eq!(m.answers[0].rtype, type_name(rtype));
                    assert_eq!(m.answers[0].ttl, 60);
                }
            }
        }
    }
}
