//! Ring-buffer records -> typed events.
//!
//! Records come from the kernel, but are still checked like any other input: a record that
//! is shorter than its kind needs, or of an unknown kind, is an error naming what was
//! wrong, never a panic or an out-of-bounds read.
use std::net::SocketAddr;

use serde::Serialize;
use tracer_common::{
    ConnectEvent, DIR_SEND, DNS_CAPTURE_MAX, DNS_HEAD, DnsEvent, DnsSyscall, EventHeader, EventKind, ExecEvent, ForkEvent,
    AeadLib, HANDSHAKE_ENTER, HEADER_SIZE, QUIC_AAD_MAX, QUIC_CAPTURE_MAX, QUIC_HEAD, QUIC_NONCE_MAX, QUIC_PLAINTEXT_HEAD,
    QUIC_PLAINTEXT_MAX, QuicDatagramEvent, QuicPlaintextEvent, SockAddr, SockErrorEvent, TLS_CAPTURE_MAX,
    TLS_DATA_HEAD, TcpStateEvent,
    TlsDataEvent, TlsFdEvent, TlsFunc, TlsHandshakeEvent, TlsLib, cstr_bytes,
};

use crate::decode::{self, dns::DnsMessage};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record of {got} bytes is shorter than the {HEADER_SIZE}-byte header")]
    NoHeader { got: usize },
    #[error("record has unknown kind {0}")]
    UnknownKind(u32),
    #[error("{kind} record of {got} bytes is shorter than the {need} bytes it needs")]
    Truncated { kind: EventKind, need: usize, got: usize },
}

/// One decoded kernel event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// CLOCK_MONOTONIC ns (bpf_ktime_get_ns).
    pub ts_ns: u64,
    pub tgid: u32,
    pub pid: u32,
    pub comm: String,
    #[serde(flatten)]
    pub body: EventBody,
}

/// The direction of a data record, as the decoders take it.
pub use crate::decode::Direction;

fn direction(d: u8) -> Direction {
    if d == DIR_SEND { Direction::Send } else { Direction::Recv }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    Connect {
        fd: i32,
        /// 0 or -errno.
        ret: i32,
        /// "EINPROGRESS", "ECONNREFUSED", ...; None for 0.
        error: Option<&'static str>,
        dst: Option<SocketAddr>,
        /// Kernel socket address; joins to tcp_state events (0 for non-TCP).
        skaddr: u64,
        tcp: bool,
        duration_ns: u64,
    },
    TcpState {
        skaddr: u64,
        old: TcpState,
        new: TcpState,
        src: Option<SocketAddr>,
        dst: Option<SocketAddr>,
    },
    SockError {
        error: &'static str,
        errno: i32,
        protocol: u16,
        src: Option<SocketAddr>,
        dst: Option<SocketAddr>,
    },
    Dns {
        fd: i32,
        direction: Direction,
        syscall: Option<DnsSyscall>,
        tcp: bool,
        len: u32,
        peer: Option<SocketAddr>,
        /// The decoded message, or why it could not be decoded.
        message: Result<DnsMessage, String>,
        #[serde(skip)]
        raw: Vec<u8>,
    },
    TlsData {
        lib: Option<TlsLib>,
        func: Option<TlsFunc>,
        tls_obj: u64,
        fd: i32,
        direction: Direction,
        len: u32,
        captured: u32,
        duration_ns: u64,
        /// The HTTP/1 request or status line, query values redacted. Plaintext itself is
        /// never printed or stored by default: it holds cookies and tokens.
        first_line: Option<String>,
        http2_preface: bool,
        #[serde(skip)]
        data: Vec<u8>,
    },
    TlsHandshake {
        lib: Option<TlsLib>,
        func: Option<TlsFunc>,
        tls_obj: u64,
        fd: i32,
        phase: HandshakePhase,
        ret: i64,
    },
    TlsFd {
        lib: Option<TlsLib>,
        func: Option<TlsFunc>,
        tls_obj: u64,
        fd: i32,
    },
    /// Plaintext on a port-80 TCP socket (HTTP without TLS).
    SocketData {
        fd: i32,
        direction: Direction,
        syscall: Option<DnsSyscall>,
        len: u32,
        captured: u32,
        duration_ns: u64,
        first_line: Option<String>,
        #[serde(skip)]
        data: Vec<u8>,
    },
    /// UDP datagrams to or from port 443 (QUIC) moved by one call: several with GSO/GRO
    /// ([`quic_segments`] splits them).
    QuicDatagram {
        fd: i32,
        direction: Direction,
        syscall: Option<DnsSyscall>,
        /// Bytes the call moved.
        len: u32,
        captured: u32,
        /// GSO/GRO segment size (0: one datagram).
        segment: u16,
        local: Option<SocketAddr>,
        peer: Option<SocketAddr>,
        #[serde(skip)]
        data: Vec<u8>,
    },
    /// One QUIC packet's plaintext at the client's AEAD: sealed (send) or opened (receive).
    /// Plaintext, header and nonce are never printed or stored: they hold the page's
    /// requests, cookies and tokens.
    QuicPlaintext {
        lib: Option<AeadLib>,
        direction: Direction,
        /// The AEAD context: one per key (connection, direction, key phase).
        ctx: u64,
        /// 0: the packet number is in the nonce (XORed with the key's IV).
        counter: u64,
        /// Plaintext bytes of the packet.
        len: u32,
        captured: u32,
        /// The additional data's (the packet header's) full length.
        aad_len: u32,
        duration_ns: u64,
        /// The packet header, at most `QUIC_AAD_MAX` bytes.
        #[serde(skip)]
        aad: Vec<u8>,
        /// The nonce.
        #[serde(skip)]
        nonce: Vec<u8>,
        #[serde(skip)]
        data: Vec<u8>,
    },
    Fork {
        child_pid: u32,
    },
    Exec {
        filename: String,
    },
    Exit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandshakePhase {
    Enter,
    Return,
}

/// Linux TCP states (include/net/tcp_states.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    Unknown(i32),
}

impl TcpState {
    pub fn from_raw(v: i32) -> Self {
        use TcpState::*;
        match v {
            1 => Established,
            2 => SynSent,
            3 => SynRecv,
            4 => FinWait1,
            5 => FinWait2,
            6 => TimeWait,
            7 => Close,
            8 => CloseWait,
            9 => LastAck,
            10 => Listen,
            11 => Closing,
            12 => NewSynRecv,
            other => Unknown(other),
        }
    }

    pub fn name(self) -> String {
        use TcpState::*;
        match self {
            Established => "ESTABLISHED".into(),
            SynSent => "SYN_SENT".into(),
            SynRecv => "SYN_RECV".into(),
            FinWait1 => "FIN_WAIT1".into(),
            FinWait2 => "FIN_WAIT2".into(),
            TimeWait => "TIME_WAIT".into(),
            Close => "CLOSE".into(),
            CloseWait => "CLOSE_WAIT".into(),
            LastAck => "LAST_ACK".into(),
            Listen => "LISTEN".into(),
            Closing => "CLOSING".into(),
            NewSynRecv => "NEW_SYN_RECV".into(),
            Unknown(v) => format!("STATE_{v}"),
        }
    }
}

/// The error of a connect seen at libc that failed before any SYN: libc returned -1 and
/// kept errno where the probe cannot read it (`CONNECT_ERRNO_UNSEEN`).
pub const ERRNO_UNSEEN: &str = "errno not seen at libc";

/// errno names for the values a connect or socket error report carries.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        1 => "EPERM",
        4 => "EINTR",
        11 => "EAGAIN",
        13 => "EACCES",
        22 => "EINVAL",
        // A peer's reset seen on a later send (the lab's servers, browsers' TCP sockets).
        32 => "EPIPE",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        100 => "ENETDOWN",
        101 => "ENETUNREACH",
        103 => "ECONNABORTED",
        104 => "ECONNRESET",
        106 => "EISCONN",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        112 => "EHOSTDOWN",
        113 => "EHOSTUNREACH",
        114 => "EALREADY",
        115 => "EINPROGRESS",
        _ => "EUNKNOWN",
    }
}

fn sockaddr(a: &SockAddr) -> Option<SocketAddr> {
    decode::format_addr(a.family, a.port, &a.addr)
}

/// Read a `T` from the front of `bytes` after checking the length.
fn read_record<T: Copy>(kind: EventKind, bytes: &[u8]) -> Result<T, RecordError> {
    let need = std::mem::size_of::<T>();
    if bytes.len() < need {
        return Err(RecordError::Truncated { kind, need, got: bytes.len() });
    }
    // SAFETY: length checked; T is a repr(C) plain-data record (integers and byte arrays,
    // every bit pattern valid); read_unaligned copes with any alignment of the buffer.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

/// `read_record` for a record whose tail after `head` bytes is cut after the `captured`
/// bytes it holds (TLS and socket data, DNS). A record longer than that (as DNS records
/// were before they were cut) decodes the same.
fn read_cut_record<T: Copy>(
    kind: EventKind,
    bytes: &[u8],
    head: usize,
    captured: fn(&T) -> u32,
    max: usize,
) -> Result<(T, &[u8]), RecordError> {
    if bytes.len() < head {
        return Err(RecordError::Truncated { kind, need: head, got: bytes.len() });
    }
    let n = bytes.len().min(std::mem::size_of::<T>());
    let mut ev = std::mem::MaybeUninit::<T>::zeroed();
    // SAFETY: as in `read_record`: T is a repr(C) plain-data record, valid for every bit
    // pattern, zero included; n bytes fit in it and are in `bytes`.
    let ev: T = unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), ev.as_mut_ptr() as *mut u8, n);
        ev.assume_init()
    };
    let captured = captured(&ev) as usize;
    let need = head + captured;
    if captured > max || bytes.len() < need {
        return Err(RecordError::Truncated { kind, need, got: bytes.len() });
    }
    Ok((ev, &bytes[head..need]))
}

fn read_tls_data(kind: EventKind, bytes: &[u8]) -> Result<(TlsDataEvent, &[u8]), RecordError> {
    read_cut_record(kind, bytes, TLS_DATA_HEAD, |e: &TlsDataEvent| e.captured, TLS_CAPTURE_MAX)
}

/// Decode one ring-buffer record: its header, then its kind's payload (`decode_<kind>`).
pub fn decode_record(bytes: &[u8]) -> Result<Event, RecordError> {
    if bytes.len() < HEADER_SIZE {
        return Err(RecordError::NoHeader { got: bytes.len() });
    }
    let raw_kind = u32::from_ne_bytes(bytes[0..4].try_into().expect("4 bytes"));
    let kind = EventKind::from_u32(raw_kind).ok_or(RecordError::UnknownKind(raw_kind))?;
    let h: EventHeader = read_record(kind, bytes)?;
    let body = match kind {
        EventKind::Connect => decode_connect(&h, bytes)?,
        EventKind::TcpState => decode_tcp_state(&h, bytes)?,
        EventKind::SockError => decode_sock_error(&h, bytes)?,
        EventKind::Dns => decode_dns(&h, bytes)?,
        EventKind::TlsData => decode_tls_data(&h, bytes)?,
        EventKind::TlsHandshake => decode_tls_handshake(&h, bytes)?,
        EventKind::TlsFd => decode_tls_fd(&h, bytes)?,
        EventKind::Fork => decode_fork(&h, bytes)?,
        EventKind::Exec => decode_exec(&h, bytes)?,
        EventKind::Exit => decode_exit(&h, bytes)?,
        EventKind::SocketData => decode_socket_data(&h, bytes)?,
        EventKind::QuicDatagram => decode_quic_datagram(&h, bytes)?,
        EventKind::QuicPlaintext => decode_quic_plaintext(&h, bytes)?,
    };
    Ok(Event {
        ts_ns: h.ts_ns,
        tgid: h.tgid,
        pid: h.pid,
        comm: String::from_utf8_lossy(cstr_bytes(&h.comm)).into_owned(),
        body,
    })
}

/// [`EventKind::Connect`]: a `connect(2)` that returned.
pub fn decode_connect(h: &EventHeader, bytes: &[u8]) -> Result<EventBody, RecordError> {
    let e: ConnectEvent = read_record(EventKind::Connect, bytes)?;
    Ok(EventBody::Connect {
        fd: e.fd,
        ret: e.ret,
        error: (e.ret < 0).then(|| {
            if e.flags & tracer_common::CONNECT_ERRNO_UNSEEN != 0 { ERRNO_UNSEEN } else { errno_name(e.ret.saturating_neg()) }
        }),
        dst: sockaddr(&e.dst),
        skaddr: e.skaddr,
        tcp: e.flags & tracer_common::CONNECT_TCP != 0,
        duration_ns: h.ts_ns.saturating_sub(e.start_ns),
    })
}

/// [`EventKind::TcpState`]: a TCP state change.
pub fn decode_tcp_state(_h: &EventHeader, bytes: &[u8]) -> Result<EventBody, RecordError> {
    let e: TcpStateEvent = read_record(EventKind::TcpState, bytes)?;
    Ok(EventBody::TcpState {
        skaddr: e.skaddr,
        old: TcpState::from_raw(e.oldstate),
        new: TcpState::from_raw(e.newstate),
        src: sockaddr(&e.src),
        dst: sockaddr(&e.dst),
    })
}

/// [`EventKind::SockError`]: an error reported on a socket.
pub fn decode_sock_error(_h: &EventHeader, bytes: &[u8]) -> Result<EventBody, RecordError> {
    let e: SockErrorEvent = read_record(EventKind::SockError, bytes)?;
    Ok(EventBody::SockError {
        error: errno_name(e.error),
        errno: e.error,
        protocol: e.protocol,
        src: sockaddr(&e.src),
        dst: sockaddr(&e.dst),
    })
}

/// [`EventKind::Dns`]: a DNS message, parsed.
pub fn decode_dns(_h: &EventHeader, bytes: &[u8]) -> Result<EventBody, RecordError> {
    let (e, data) = read_cut_record(EventKind::Dns, bytes, DNS_HEAD, |e: &DnsEvent| e.captured, DNS_CAPTURE_MAX)?;
    let raw = data.to_vec();
    let tcp = e.flags & tracer_common::DNS_FLAG_TCP != 0;
    Ok(EventBody::Dns {
        fd: e.fd,
        direction: direction(e.direction),
        syscall: DnsSyscall::from_u8(e.syscall),
        tcp,
        len: e.len,
        peer: sockaddr(&e.peer),
        message: decode::dns::parse_dns(&raw, tcp).map_err(|err| err.to_string()),
        raw,
    })
}

/// [`EventKind::TlsData`]: TLS plaintext at a library boundary.
pub fn decode_tls_data(h: &EventHeader, bytes: &[u8]) -> Result<EventBody, RecordError> {
    let (e, data) = read_tls_data(EventKind::TlsData, bytes)?;
    Ok(EventBody::TlsData {
        lib: TlsLib::from_u8(e.lib),
        func: TlsFunc::from_u8(e.func),
        tls_obj: e.tls_obj,
        fd: e.fd,
        direction: direction(e.direction),
        len: e.len,
        captured: e.captured,
        duration_ns: h.ts_ns.saturating_sub(e.start_ns),
        first_line: decode::http::first_line(data).map(|l| redact_query(&l)),
        http2_preface: decode::http::is_http2_preface(data),
        data: data.to_vec(),
    })
}

/// [`EventKind::TlsHandshake`]: a TLS handshake entry or return.
pub fn decode_tls_handshake(_h: &EventHeader, bytes: &[u8]) -> Result<EventBody, RecordError> {
    let e: TlsHandshakeEvent = read_record(EventKind::TlsHandshake, bytes)?;
    Ok(EventBody::TlsHandshake {
        lib: TlsLib::from_u8(e.lib),
        func: TlsFunc::from_u8(e.func),
        tls_obj: e.tls_obj,
        fd: e.fd,
        phase: if e.phase == HANDSHAKE_ENTER {
            HandshakePhase::Enter
        } else {
            HandshakePhase::Return
        },
        ret: e.ret,
    })
}

/// [`EventKind::TlsFd`]: a TLS object bound to a file descriptor.
pub fn decode_tls_fd(_h: &EventHeader, bytes: &[u8]) -> Result<EventBody, RecordError> {
    let e: TlsFdEvent = read_record(EventKind::TlsFd, bytes)?;
    Ok(EventBody::TlsFd {
        lib: TlsLib::from_u8(e.lib),
        func: TlsFunc::from_u8(e.func),
        tls_obj: e.tls_obj,
        fd: e.fd,
    })
}

/// [`EventKind::Fork`]: a task created.
pub fn decode_fork(_h: &EventHeader, bytes: &[u8]) -> Result<EventBody, RecordError> {
    let e: ForkEvent = read_record(EventKind::Fork, bytes)?;
    Ok(EventBody::Fork { child_pid: e.child_pid })
}

/// [`EventKind::Exec`]: a process exec'd.
pub fn decode_exec(_h: &EventHeader, bytes: &[u8]) -> Result<EventBody, RecordError> {
    let e: ExecEvent = read_record(EventKind::Exec, bytes)?;
    Ok(EventBody::Exec { filename: String::from_utf8_lossy(cstr_bytes(&e.filename)).into_owned() })
}

/// [`EventKind::Exit`]: a thread group exited (the header is the whole record).
pub fn decode_exit(_h: &EventHeader, _bytes: &[u8]) -> Result<EventBody, RecordError> {
    Ok(EventBody::Exit)
}

/// [`EventKind::SocketData`]: plaintext on a port-80 TCP socket.
pub fn decode_socket_data(h: &EventHeader, bytes: &[u8]) -> Result<EventBody, RecordError> {
    let (e, data) = read_tls_data(EventKind::SocketData, bytes)?;
    Ok(EventBody::SocketData {
        fd: e.fd,
        direction: direction(e.direction),
        syscall: DnsSyscall::from_u8(e.func),
        len: e.len,
        captured: e.captured,
        duration_ns: h.ts_ns.saturating_sub(e.start_ns),
        first_line: decode::http::first_line(data).map(|l| redact_query(&l)),
        data: data.to_vec(),
    })
}

/// [`EventKind::QuicDatagram`]: UDP datagrams of a port-443 socket.
pub fn decode_quic_datagram(_h: &EventHeader, bytes: &[u8]) -> Result<EventBody, RecordError> {
    let (e, data) =
        read_cut_record(EventKind::QuicDatagram, bytes, QUIC_HEAD, |e: &QuicDatagramEvent| e.captured, QUIC_CAPTURE_MAX)?;
    Ok(EventBody::QuicDatagram {
        fd: e.fd,
        direction: direction(e.direction),
        syscall: DnsSyscall::from_u8(e.syscall),
        len: e.len,
        captured: e.captured,
        segment: e.segment,
        local: sockaddr(&e.local),
        peer: sockaddr(&e.peer),
        data: data.to_vec(),
    })
}

/// [`EventKind::QuicPlaintext`]: a QUIC packet's plaintext at the AEAD.
pub fn decode_quic_plaintext(h: &EventHeader, bytes: &[u8]) -> Result<EventBody, RecordError> {
    let kind = EventKind::QuicPlaintext;
    let (e, data) = read_cut_record(kind, bytes, QUIC_PLAINTEXT_HEAD, |e: &QuicPlaintextEvent| e.captured, QUIC_PLAINTEXT_MAX)?;
    let (aad_n, nonce_n) = (e.aad_captured as usize, e.nonce_len as usize);
    if aad_n > QUIC_AAD_MAX || aad_n > e.aad_len as usize || nonce_n > QUIC_NONCE_MAX {
        return Err(RecordError::Truncated { kind, need: QUIC_PLAINTEXT_HEAD + aad_n.max(nonce_n), got: bytes.len() });
    }
    Ok(EventBody::QuicPlaintext {
        lib: AeadLib::from_u8(e.lib),
        direction: direction(e.direction),
        ctx: e.ctx,
        counter: e.counter,
        len: e.len,
        captured: e.captured,
        aad_len: e.aad_len,
        duration_ns: h.ts_ns.saturating_sub(e.start_ns),
        aad: e.aad[..aad_n].to_vec(),
        nonce: e.nonce[..nonce_n].to_vec(),
        data: data.to_vec(),
    })
}

/// Most datagrams one call can carry (the kernel's UDP GSO limit).
pub const QUIC_SEGMENTS_MAX: usize = 64;

/// The datagrams of one call that moved `len` bytes in segments of `segment` (0: one
/// datagram), each as (its length, its captured bytes: a prefix, empty past what was
/// captured). At most [`QUIC_SEGMENTS_MAX`].
pub fn quic_segments(len: u32, segment: u16, data: &[u8]) -> Vec<(u32, &[u8])> {
    let seg = u32::from(segment);
    if seg == 0 || seg >= len {
        return vec![(len, &data[..data.len().min(len as usize)])];
    }
    let mut out = Vec::new();
    let mut at = 0u32;
    while at < len && out.len() < QUIC_SEGMENTS_MAX {
        let n = seg.min(len - at);
        let start = (at as usize).min(data.len());
        let end = (at as usize + n as usize).min(data.len());
        out.push((n, &data[start..end]));
        at += n;
    }
    out
}

/// Replace query values in a request line: `GET /a?token=xyz&b=1 HTTP/1.1` ->
/// `GET /a?token=*&b=* HTTP/1.1`. Query values often carry tokens.
pub fn redact_query(line: &str) -> String {
    crate::redact::request_line(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::{AF_INET, TASK_COMM_LEN};

    fn header(kind: EventKind, size: usize) -> EventHeader {
        let mut comm = [0u8; TASK_COMM_LEN];
        comm[..4].copy_from_slice(b"curl");
        EventHeader { kind: kind as u32, size: size as u32, ts_ns: 5_000, tgid: 42, pid: 43, comm }
    }

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain repr(C) value.
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
            .to_vec()
    }

    fn v4(a: [u8; 4], port: u16) -> SockAddr {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&a);
        SockAddr { family: AF_INET, port, _pad: 0, addr }
    }

    /// A TCP connect to 127.0.0.1:9 refused (-111), 4 us after it began.
    fn refused_connect() -> ConnectEvent {
        ConnectEvent {
            header: header(EventKind::Connect, std::mem::size_of::<ConnectEvent>()),
            start_ns: 1_000,
            skaddr: 0xffff_8888_0000_1000,
            fd: 7,
            ret: -111,
            flags: tracer_common::CONNECT_TCP,
            _pad: 0,
            dst: v4([127, 0, 0, 1], 9),
        }
    }

    #[test]
    fn decodes_a_refused_connect() {
        let e = decode_record(&bytes_of(&refused_connect())).unwrap();
        assert_eq!((e.tgid, e.pid, e.comm.as_str()), (42, 43, "curl"));
        match e.body {
            EventBody::Connect { fd, ret, error, dst, tcp, duration_ns, skaddr } => {
                assert_eq!((fd, ret, error, tcp, duration_ns), (7, -111, Some("ECONNREFUSED"), true, 4_000));
                assert_eq!(dst, Some("127.0.0.1:9".parse().unwrap()));
                assert_eq!(skaddr, 0xffff_8888_0000_1000);
            }
            other => panic!("wrong body {other:?}"),
        }
    }

    /// Seen at libc (client filter): -1 before any SYN, errno unknown. It must not read as
    /// EPERM (errno 1).
    #[test]
    fn a_libc_connect_failure_says_its_errno_was_not_seen() {
        let ev = ConnectEvent { ret: -1, flags: tracer_common::CONNECT_ERRNO_UNSEEN, skaddr: 0, ..refused_connect() };
        match decode_record(&bytes_of(&ev)).unwrap().body {
            EventBody::Connect { ret, error, tcp, .. } => assert_eq!((ret, error, tcp), (-1, Some(ERRNO_UNSEEN), false)),
            other => panic!("wrong body {other:?}"),
        }
    }

    /// A return code no kernel gives (i32::MIN: its negation overflows) decodes as an unknown
    /// errno, not a panic (found by the `events` fuzz target).
    #[test]
    fn a_connect_returning_i32_min_decodes() {
        let ev = ConnectEvent { ret: i32::MIN, ..refused_connect() };
        match decode_record(&bytes_of(&ev)).unwrap().body {
            EventBody::Connect { ret, error, .. } => assert_eq!((ret, error), (i32::MIN, Some(errno_name(i32::MAX)))),
            other => panic!("wrong body {other:?}"),
        }
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        assert_eq!(decode_record(&[]).unwrap_err(), RecordError::NoHeader { got: 0 });
        assert_eq!(decode_record(&[1, 0, 0]).unwrap_err(), RecordError::NoHeader { got: 3 });
        let mut b = bytes_of(&header(EventKind::Connect, 0));
        b[0] = 200;
        assert_eq!(decode_record(&b).unwrap_err(), RecordError::UnknownKind(200));
        // A connect record cut after its header.
        let b = bytes_of(&header(EventKind::Connect, 0));
        assert!(matches!(
            decode_record(&b).unwrap_err(),
            RecordError::Truncated { kind: EventKind::Connect, got: 40, .. }
        ));
    }

    #[test]
    fn tls_data_tail_is_bounded_by_captured_and_record_length() {
        let mut ev: TlsDataEvent = unsafe { std::mem::zeroed() };
        ev.header = header(EventKind::TlsData, 0);
        ev.start_ns = 4_000;
        ev.fd = 5;
        ev.len = 300;
        let line = b"GET /search?q=secret&page=2 HTTP/1.1\r\nHost: x\r\nCookie: sid=S3CR3T\r\n\r\n";
        ev.captured = line.len() as u32;
        ev.data[..line.len()].copy_from_slice(line);
        ev.lib = TlsLib::OpenSsl as u8;
        ev.func = TlsFunc::SSL_write as u8;
        let full = bytes_of(&ev);
        let record = &full[..TLS_DATA_HEAD + line.len()];
        let e = decode_record(record).unwrap();
        match &e.body {
            EventBody::TlsData { first_line, data, len, duration_ns, .. } => {
                assert_eq!(first_line.as_deref(), Some("GET /search?q=*&page=* HTTP/1.1"));
                assert_eq!(data.as_slice(), line);
                assert_eq!((*len, *duration_ns), (300, 1_000));
            }
            other => panic!("wrong body {other:?}"),
        }
        // The JSON form never carries the plaintext.
        let json = serde_json::to_string(&e).unwrap();
        assert!(!json.contains("S3CR3T"), "{json}");
        assert!(!json.contains("secret"), "{json}");
        // One byte short of what `captured` promises.
        assert!(matches!(
            decode_record(&record[..record.len() - 1]).unwrap_err(),
            RecordError::Truncated { kind: EventKind::TlsData, .. }
        ));
        // `captured` larger than the buffer can hold.
        let mut lying = ev;
        lying.captured = u32::MAX;
        assert!(decode_record(&bytes_of(&lying)).is_err());
    }

    /// A DNS record comes cut after its message; a full-size one (as recorded before they
    /// were cut) decodes the same.
    #[test]
    fn dns_tail_is_bounded_by_captured_and_record_length() {
        // A query for www.shop.test, type A.
        let query: &[u8] = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x04shop\x04test\x00\x00\x01\x00\x01";
        let mut ev: DnsEvent = unsafe { std::mem::zeroed() };
        ev.header = header(EventKind::Dns, DNS_HEAD + query.len());
        ev.fd = 3;
        ev.len = query.len() as u32;
        ev.captured = query.len() as u32;
        ev.syscall = DnsSyscall::Sendmmsg as u8;
        ev.peer = v4([127, 0, 0, 53], 53);
        ev.data[..query.len()].copy_from_slice(query);
        let full = bytes_of(&ev);
        let cut = &full[..DNS_HEAD + query.len()];
        for record in [cut, full.as_slice()] {
            match decode_record(record).unwrap().body {
                EventBody::Dns { fd, raw, message, peer, syscall, .. } => {
                    assert_eq!((fd, raw.as_slice(), syscall), (3, query, Some(DnsSyscall::Sendmmsg)));
                    assert_eq!(peer, Some("127.0.0.53:53".parse().unwrap()));
                    let m = message.unwrap();
                    assert_eq!((m.id, m.questions[0].name.as_str()), (0x1234, "www.shop.test"));
                }
                other => panic!("wrong body {other:?}"),
            }
        }
        // One byte short of what `captured` promises.
        assert!(matches!(
            decode_record(&cut[..cut.len() - 1]).unwrap_err(),
            RecordError::Truncated { kind: EventKind::Dns, .. }
        ));
        // `captured` larger than the message buffer.
        let mut lying = ev;
        lying.captured = DNS_CAPTURE_MAX as u32 + 1;
        assert!(decode_record(&bytes_of(&lying)).is_err());
    }

    #[test]
    fn every_prefix_of_every_record_kind_is_handled() {
        let mut tls: TlsDataEvent = unsafe { std::mem::zeroed() };
        tls.header = header(EventKind::TlsData, 0);
        tls.captured = 3;
        let mut dns: DnsEvent = unsafe { std::mem::zeroed() };
        dns.header = header(EventKind::Dns, 0);
        dns.captured = 5;
        let records: Vec<Vec<u8>> = vec![
            bytes_of(&ConnectEvent {
                header: header(EventKind::Connect, 0),
                start_ns: 0,
                skaddr: 0,
                fd: 1,
                ret: 0,
                flags: 0,
                _pad: 0,
                dst: v4([10, 0, 0, 1], 443),
            }),
            bytes_of(&TcpStateEvent {
                header: header(EventKind::TcpState, 0),
                skaddr: 1,
                oldstate: 2,
                newstate: 1,
                src: v4([10, 0, 0, 2], 5555),
                dst: v4([10, 0, 0, 1], 443),
                protocol: 6,
                _pad: [0; 6],
            }),
            bytes_of(&header(EventKind::Exit, HEADER_SIZE)),
            bytes_of(&tls)[..TLS_DATA_HEAD + 3].to_vec(),
            bytes_of(&dns)[..DNS_HEAD + 5].to_vec(),
        ];
        for r in &records {
            assert!(decode_record(r).is_ok());
            for cut in 0..r.len() {
                // Every record here is exactly as long as it needs to be: any cut is an error.
                assert!(decode_record(&r[..cut]).is_err(), "cut {cut} of {}", r.len());
            }
        }
    }

    fn quic(len: u32, segment: u16, data: &[u8]) -> Vec<u8> {
        let mut e = QuicDatagramEvent {
            header: header(EventKind::QuicDatagram, 0),
            fd: 7,
            len,
            captured: data.len() as u32,
            segment,
            direction: DIR_SEND,
            syscall: DnsSyscall::Sendmsg as u8,
            local: v4([127, 0, 0, 1], 40000),
            peer: v4([10, 77, 0, 3], 443),
            data: [0; QUIC_CAPTURE_MAX],
        };
        e.data[..data.len()].copy_from_slice(data);
        bytes_of(&e)[..QUIC_HEAD + data.len()].to_vec()
    }

    /// A QUIC record decodes with its addresses and captured bytes; a cut one or one that
    /// claims more than it holds is an error.
    #[test]
    fn quic_datagram_records_decode_and_are_checked() {
        let r = quic(2400, 1200, &[0xc3; 100]);
        let ev = decode_record(&r).unwrap();
        let EventBody::QuicDatagram { fd, direction, syscall, len, captured, segment, local, peer, data } = ev.body else { panic!("{ev:?}") };
        assert_eq!((fd, direction, syscall, len, captured, segment), (7, Direction::Send, Some(DnsSyscall::Sendmsg), 2400, 100, 1200));
        assert_eq!((local.unwrap().to_string(), peer.unwrap().to_string()), ("127.0.0.1:40000".to_string(), "10.77.0.3:443".to_string()));
        assert_eq!(data, vec![0xc3; 100]);
        assert!(decode_record(&r[..r.len() - 1]).is_err());
        let mut lying = r.clone();
        let at = std::mem::offset_of!(QuicDatagramEvent, captured);
        lying[at..at + 4].copy_from_slice(&(QUIC_CAPTURE_MAX as u32 + 1).to_ne_bytes());
        assert!(decode_record(&lying).is_err());
    }

    /// A QUIC plaintext record decodes with its header, nonce and plaintext; a cut one, or one
    /// claiming more header or nonce bytes than its fields hold, is an error.
    #[test]
    fn quic_plaintext_records_decode_and_are_checked() {
        let mut e: QuicPlaintextEvent = unsafe { std::mem::zeroed() };
        e.header = header(EventKind::QuicPlaintext, 0);
        e.header.ts_ns = 9_000;
        e.start_ns = 8_000;
        (e.ctx, e.len, e.captured, e.aad_len, e.aad_captured, e.nonce_len) = (0xabc, 1300, 40, 80, QUIC_AAD_MAX as u8, 12);
        (e.lib, e.direction) = (AeadLib::BoringSsl as u8, DIR_SEND);
        e.aad[0] = 0x41;
        e.nonce[11] = 7;
        e.data[..40].fill(0x0d);
        let r = bytes_of(&e)[..QUIC_PLAINTEXT_HEAD + 40].to_vec();
        let ev = decode_record(&r).unwrap();
        let EventBody::QuicPlaintext { lib, direction, ctx, len, captured, aad_len, duration_ns, aad, nonce, data, .. } = ev.body else { panic!("{ev:?}") };
        assert_eq!((lib, direction, ctx, len, captured, aad_len, duration_ns), (Some(AeadLib::BoringSsl), Direction::Send, 0xabc, 1300, 40, 80, 1_000));
        assert_eq!((aad.len(), aad[0], nonce.len(), nonce[11], data), (QUIC_AAD_MAX, 0x41, 12, 7, vec![0x0d; 40]));
        assert!(decode_record(&r[..r.len() - 1]).is_err());
        for (field, bad) in [(std::mem::offset_of!(QuicPlaintextEvent, aad_captured), QUIC_AAD_MAX as u8 + 1), (std::mem::offset_of!(QuicPlaintextEvent, nonce_len), QUIC_NONCE_MAX as u8 + 1)] {
            let mut lying = r.clone();
            lying[field] = bad;
            assert!(decode_record(&lying).is_err(), "field at {field}");
        }
    }

    /// GSO/GRO: a call's bytes are datagrams of `segment` bytes, the last shorter; past what
    /// was captured a datagram has its length and no bytes.
    #[test]
    fn quic_segments_split_a_call_into_its_datagrams() {
        let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        assert_eq!(quic_segments(1250, 0, &data[..1250]), vec![(1250, &data[..1250])]);
        assert_eq!(quic_segments(1000, 1200, &data[..1000]), vec![(1000, &data[..1000])]);
        let segs = quic_segments(2700, 1200, &data[..2500]);
        assert_eq!(segs.iter().map(|(n, b)| (*n, b.len())).collect::<Vec<_>>(), vec![(1200, 1200), (1200, 1200), (300, 100)]);
        assert_eq!(segs[1].1[0], data[1200]);
        let many = quic_segments(u32::MAX, 1, &data);
        assert_eq!(many.len(), QUIC_SEGMENTS_MAX);
        assert_eq!(quic_segments(3000, 1000, &data[..10]).iter().map(|(n, b)| (*n, b.len())).collect::<Vec<_>>(), vec![(1000, 10), (1000, 0), (1000, 0)]);
    }

    #[test]
    fn redacts_query_values_only() {
        assert_eq!(redact_query("GET / HTTP/1.1"), "GET / HTTP/1.1");
        assert_eq!(redact_query("GET /a?t=1&flag HTTP/1.1"), "GET /a?t=*&flag HTTP/1.1");
        assert_eq!(redact_query("HTTP/1.1 200 OK"), "HTTP/1.1 200 OK");
    }
}
