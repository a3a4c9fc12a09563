//! Records the eBPF programs write into the ring buffer, shared with user space.
//!
//! Every record starts with [`EventHeader`]; its `kind` (an [`EventKind`] number) says which
//! payload struct follows. All structs are `#[repr(C)]` with explicit padding so that both
//! sides agree on the layout byte for byte; the numbers of [`EventKind`] are stable and only
//! ever added to.
#![no_std]

pub mod layout;

pub const TASK_COMM_LEN: usize = 16;
/// Bytes of a DNS message copied per send/receive (the classic UDP DNS limit).
pub const DNS_CAPTURE_MAX: usize = 512;
/// Upper bound of TLS plaintext copied per library call. The actual amount is the load-time
/// constant `TLS_CAPTURE_BYTES` (default [`TLS_CAPTURE_DEFAULT`]), at most this.
pub const TLS_CAPTURE_MAX: usize = 16384;
pub const TLS_CAPTURE_DEFAULT: usize = 4096;
/// Bytes of an exec'd file name kept.
pub const EXEC_FILENAME_MAX: usize = 128;
/// Number of slots in the kernel's lost-event counter (indexed by kind).
pub const KIND_SLOTS: u32 = 16;

/// Record kinds. Stable numbers: never renumber, only add.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "user", serde(rename_all = "snake_case"))]
pub enum EventKind {
    /// `connect(2)` on an AF_INET/AF_INET6 socket returned ([`ConnectEvent`]).
    Connect = 1,
    /// `inet_sock_set_state`: a TCP socket changed state ([`TcpStateEvent`]).
    TcpState = 2,
    /// `inet_sk_error_report`: an error was reported on a socket, e.g. ECONNREFUSED ([`SockErrorEvent`]).
    SockError = 3,
    /// A DNS message sent or received over UDP/TCP port 53 ([`DnsEvent`]).
    Dns = 4,
    /// TLS plaintext at a library boundary ([`TlsDataEvent`]).
    TlsData = 5,
    /// TLS handshake entry or return ([`TlsHandshakeEvent`]).
    TlsHandshake = 6,
    /// A TLS object was bound to a file descriptor ([`TlsFdEvent`]).
    TlsFd = 7,
    /// A task was created: thread or process ([`ForkEvent`]).
    Fork = 8,
    /// A process called exec ([`ExecEvent`]).
    Exec = 9,
    /// A whole process (thread group) exited (header only).
    Exit = 10,
    /// Plaintext on a TCP socket connected to port 80 (HTTP without TLS), same layout as
    /// [`TlsDataEvent`] with `lib` = [`TlsLib::None`] and `func` a [`DnsSyscall`] number.
    SocketData = 11,
    /// UDP datagrams to or from port 443 (QUIC): the first calls of each socket
    /// ([`QuicDatagramEvent`]).
    QuicDatagram = 12,
    /// A QUIC packet's plaintext where the client's QUIC stack seals or opens it with an AEAD
    /// (BoringSSL's `EVP_AEAD_CTX_seal/open` in Chromium, NSS's `PK11_AEADOp` for Firefox's
    /// neqo) ([`QuicPlaintextEvent`]).
    QuicPlaintext = 13,
}

impl EventKind {
    pub const ALL: [EventKind; 13] = [
        EventKind::Connect,
        EventKind::TcpState,
        EventKind::SockError,
        EventKind::Dns,
        EventKind::TlsData,
        EventKind::TlsHandshake,
        EventKind::TlsFd,
        EventKind::Fork,
        EventKind::Exec,
        EventKind::Exit,
        EventKind::SocketData,
        EventKind::QuicDatagram,
        EventKind::QuicPlaintext,
    ];

    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| *k as u32 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Connect => "connect",
            EventKind::TcpState => "tcp_state",
            EventKind::SockError => "sock_error",
            EventKind::Dns => "dns",
            EventKind::TlsData => "tls_data",
            EventKind::TlsHandshake => "tls_handshake",
            EventKind::TlsFd => "tls_fd",
            EventKind::Fork => "fork",
            EventKind::Exec => "exec",
            EventKind::Exit => "exit",
            EventKind::SocketData => "socket_data",
            EventKind::QuicDatagram => "quic_datagram",
            EventKind::QuicPlaintext => "quic_plaintext",
        }
    }
}

/// The common head of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// An [`EventKind`] number.
    pub kind: u32,
    /// Size in bytes of the whole record, header included (records with a variable tail
    /// are shorter than their struct).
    pub size: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Process id (thread group id) of the current task. For events raised in softirq
    /// context (TCP SYN_SENT -> ESTABLISHED) this is whatever task was interrupted.
    pub tgid: u32,
    /// Thread id of the current task.
    pub pid: u32,
    /// `comm` of the current thread, NUL-padded.
    pub comm: [u8; TASK_COMM_LEN],
}

pub const HEADER_SIZE: usize = core::mem::size_of::<EventHeader>();

/// Address family numbers as the kernel uses them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// A socket address in a fixed form: IPv4 in the first 4 bytes of `addr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockAddr {
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    pub _pad: u32,
    pub addr: [u8; 16],
}

/// Outcome flags of a connect.
pub const CONNECT_TCP: u32 = 1;
/// Seen at libc's `connect` (client filter on): it failed before any SYN and its errno was
/// not seen (libc returns -1 and keeps errno in thread-local storage); `ret` is -1.
pub const CONNECT_ERRNO_UNSEEN: u32 = 2;
/// Client filter: no probe saw the call (before the process's uprobes were in, or a raw
/// system call); reported at its CLOSE -> SYN_SENT with `ret` EINPROGRESS, whatever the
/// call returned.
pub const CONNECT_AT_SYN: u32 = 4;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectEvent {
    pub header: EventHeader,
    /// `ktime` at syscall entry; `header.ts_ns` is the return.
    pub start_ns: u64,
    /// Kernel socket address, known when the connect started a TCP handshake (0 otherwise).
    /// It is the key that joins this connect to its [`TcpStateEvent`]s.
    pub skaddr: u64,
    pub fd: i32,
    /// Syscall return: 0, or -errno (-115 EINPROGRESS for non-blocking sockets,
    /// -111 ECONNREFUSED, -110 ETIMEDOUT ...).
    pub ret: i32,
    /// [`CONNECT_TCP`] when a TCP state change was seen inside the call;
    /// [`CONNECT_ERRNO_UNSEEN`], [`CONNECT_AT_SYN`].
    pub flags: u32,
    pub _pad: u32,
    pub dst: SockAddr,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TcpStateEvent {
    pub header: EventHeader,
    pub skaddr: u64,
    pub oldstate: i32,
    pub newstate: i32,
    pub src: SockAddr,
    pub dst: SockAddr,
    pub protocol: u16,
    pub _pad: [u8; 6],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockErrorEvent {
    pub header: EventHeader,
    /// Positive errno (111 ECONNREFUSED, 110 ETIMEDOUT, 113 EHOSTUNREACH ...).
    pub error: i32,
    pub protocol: u16,
    pub _pad: u16,
    pub src: SockAddr,
    pub dst: SockAddr,
}

pub const DIR_SEND: u8 = 0;
pub const DIR_RECV: u8 = 1;

/// Which system call carried a DNS message.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
#[cfg_attr(feature = "user", serde(rename_all = "snake_case"))]
pub enum DnsSyscall {
    Write = 1,
    Sendto = 2,
    Sendmsg = 3,
    Sendmmsg = 4,
    Read = 5,
    Recvfrom = 6,
    Recvmsg = 7,
    Recvmmsg = 8,
    Writev = 9,
    Readv = 10,
}

impl DnsSyscall {
    pub fn from_u8(v: u8) -> Option<Self> {
        use DnsSyscall::*;
        [Write, Sendto, Sendmsg, Sendmmsg, Read, Recvfrom, Recvmsg, Recvmmsg, Writev, Readv]
            .into_iter()
            .find(|s| *s as u8 == v)
    }
}

/// The socket carrying the DNS message is TCP (messages have a 2-byte length prefix).
pub const DNS_FLAG_TCP: u8 = 1;

/// One DNS message. Sent cut after `captured` bytes of `data` (see [`DNS_HEAD`]): a query is
/// tens of bytes, and a full-size record made the kernel touch, and the reader copy, ten
/// times more memory than the message.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DnsEvent {
    pub header: EventHeader,
    pub fd: i32,
    /// Bytes the call sent or received for this message.
    pub len: u32,
    /// Bytes copied into `data` (<= [`DNS_CAPTURE_MAX`]).
    pub captured: u32,
    pub direction: u8,
    /// A [`DnsSyscall`] number.
    pub syscall: u8,
    pub flags: u8,
    pub _pad: u8,
    /// The peer (server for a query, source of an answer) when the call named it or the
    /// socket was connected to it; family 0 when unknown.
    pub peer: SockAddr,
    pub data: [u8; DNS_CAPTURE_MAX],
}

/// Bytes of a [`QuicDatagramEvent`]'s call copied: a client's first Initial is at least
/// 1,200 bytes, and with GSO one send carries several datagrams (the ClientHello of a
/// post-quantum key share spans two Initials).
pub const QUIC_CAPTURE_MAX: usize = 4096;

/// The UDP datagrams one send or receive moved on a socket to or from port 443 (QUIC). With
/// GSO (`UDP_SEGMENT`) or GRO (`UDP_GRO`) one call moves several datagrams: every
/// `segment` bytes of the call start the next one (the last may be shorter). Sent cut after
/// `captured` bytes of `data` ([`QUIC_HEAD`]).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QuicDatagramEvent {
    pub header: EventHeader,
    pub fd: i32,
    /// Bytes the call moved (every datagram of it).
    pub len: u32,
    /// Bytes copied into `data` (<= [`QUIC_CAPTURE_MAX`]), from the call's first byte.
    pub captured: u32,
    /// GSO/GRO segment size; 0: the call moved one datagram.
    pub segment: u16,
    /// [`DIR_SEND`] or [`DIR_RECV`].
    pub direction: u8,
    /// A [`DnsSyscall`] number.
    pub syscall: u8,
    /// The socket's own address (family 0 when unknown).
    pub local: SockAddr,
    /// The server (port 443).
    pub peer: SockAddr,
    pub data: [u8; QUIC_CAPTURE_MAX],
}

/// Bytes of a [`QuicDatagramEvent`] before its data.
pub const QUIC_HEAD: usize = core::mem::size_of::<QuicDatagramEvent>() - QUIC_CAPTURE_MAX;

/// Bytes of a QUIC packet's plaintext copied per seal or open. A packet is at most the
/// path's datagram size (1,200-1,500 bytes; Chromium's default 1,350, neqo's 1,232 to 1,500),
/// so this holds a whole one.
pub const QUIC_PLAINTEXT_MAX: usize = 2048;
/// Bytes of a packet's additional data (its header: first byte, version and connection IDs,
/// packet number) copied. A short header is 1 + DCID (<= 20) + packet number (<= 4) bytes;
/// a long header's token or length may take it past this, and is cut.
pub const QUIC_AAD_MAX: usize = 64;
/// Bytes of the nonce copied (AES-GCM and ChaCha20-Poly1305 take 12).
pub const QUIC_NONCE_MAX: usize = 16;

/// Which QUIC stack's AEAD boundary produced a [`QuicPlaintextEvent`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
#[cfg_attr(feature = "user", serde(rename_all = "snake_case"))]
pub enum AeadLib {
    /// BoringSSL's `EVP_AEAD_CTX_seal` / `EVP_AEAD_CTX_open` (Chromium's quiche), found by
    /// code signature.
    BoringSsl = 1,
    /// NSS's `PK11_AEADOp` in `libnss3.so` (Firefox's neqo).
    Nss = 2,
}

impl AeadLib {
    pub fn from_u8(v: u8) -> Option<Self> {
        [AeadLib::BoringSsl, AeadLib::Nss].into_iter().find(|l| *l as u8 == v)
    }
}

/// One QUIC packet's plaintext at the AEAD: at a seal's entry (the input, [`DIR_SEND`]) or at
/// an open's successful return (the output, [`DIR_RECV`]). The kernel keeps only calls whose additional data could be a QUIC header
/// (not empty, first byte with the fixed bit 0x40: a TLS 1.3 record's AAD starts 0x17 and a
/// TLS 1.2 one with the 8-byte sequence number, so the TCP TLS records the same functions
/// protect are dropped); user space still has to match the header to a QUIC connection it
/// knows (other users of the AEAD with such AAD are possible). The record is cut after
/// `captured` bytes of `data`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QuicPlaintextEvent {
    pub header: EventHeader,
    /// `ktime` at the function's entry; `header.ts_ns` is when the record was made (the entry
    /// for a seal, the return for an open).
    pub start_ns: u64,
    /// The AEAD context (`EVP_AEAD_CTX *` / `PK11Context *`): one per key, direction and
    /// connection (a key update makes a new one).
    pub ctx: u64,
    /// Reserved for a packet number a library passes on its own (0: both libraries probed
    /// take the nonce, which carries the packet number XORed with the key's IV).
    pub counter: u64,
    /// Plaintext bytes of the packet (the input's length at a seal, `*out_len` at an open).
    pub len: u32,
    /// Bytes of plaintext in `data` (<= [`QUIC_PLAINTEXT_MAX`]).
    pub captured: u32,
    /// The additional data's full length; `aad` holds the first `aad_captured` bytes.
    pub aad_len: u32,
    pub aad_captured: u8,
    /// Bytes in `nonce`.
    pub nonce_len: u8,
    /// An [`AeadLib`] number.
    pub lib: u8,
    /// [`DIR_SEND`] (seal) or [`DIR_RECV`] (open).
    pub direction: u8,
    pub nonce: [u8; QUIC_NONCE_MAX],
    pub aad: [u8; QUIC_AAD_MAX],
    pub data: [u8; QUIC_PLAINTEXT_MAX],
}

/// Bytes of a [`QuicPlaintextEvent`] before its data.
pub const QUIC_PLAINTEXT_HEAD: usize = core::mem::size_of::<QuicPlaintextEvent>() - QUIC_PLAINTEXT_MAX;

/// TLS libraries probed.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
#[cfg_attr(feature = "user", serde(rename_all = "snake_case"))]
pub enum TlsLib {
    /// Not TLS: plaintext read from the socket itself (port 80).
    None = 0,
    OpenSsl = 1,
    GnuTls = 2,
    Nspr = 3,
    BoringSsl = 4,
    /// The built-in fetcher's rustls, through its probe points.
    Rustls = 5,
}

impl TlsLib {
    pub fn from_u8(v: u8) -> Option<Self> {
        use TlsLib::*;
        [None, OpenSsl, GnuTls, Nspr, BoringSsl, Rustls].into_iter().find(|l| *l as u8 == v)
    }
}

/// The library function that produced a [`TlsDataEvent`] or [`TlsHandshakeEvent`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
#[allow(non_camel_case_types)]
pub enum TlsFunc {
    SSL_write = 1,
    SSL_read = 2,
    SSL_write_ex = 3,
    SSL_read_ex = 4,
    SSL_do_handshake = 5,
    SSL_connect = 6,
    gnutls_record_send = 7,
    gnutls_record_recv = 8,
    gnutls_handshake = 9,
    PR_Write = 10,
    PR_Read = 11,
    PR_Send = 12,
    PR_Recv = 13,
    SSL_ForceHandshake = 14,
    SSL_set_fd = 15,
    gnutls_transport_set_int2 = 16,
}

impl TlsFunc {
    pub fn from_u8(v: u8) -> Option<Self> {
        use TlsFunc::*;
        [
            SSL_write,
            SSL_read,
            SSL_write_ex,
            SSL_read_ex,
            SSL_do_handshake,
            SSL_connect,
            gnutls_record_send,
            gnutls_record_recv,
            gnutls_handshake,
            PR_Write,
            PR_Read,
            PR_Send,
            PR_Recv,
            SSL_ForceHandshake,
            SSL_set_fd,
            gnutls_transport_set_int2,
        ]
        .into_iter()
        .find(|f| *f as u8 == v)
    }
}

/// Plaintext passed to or returned from a TLS library. The record is cut after
/// `captured` bytes of `data`: its real size is `header.size`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TlsDataEvent {
    pub header: EventHeader,
    /// `ktime` at function entry; `header.ts_ns` is the return.
    pub start_ns: u64,
    /// The library's connection object (`SSL *`, `gnutls_session_t`, `PRFileDesc *`).
    pub tls_obj: u64,
    /// Socket fd under the TLS object, -1 when not (yet) known.
    pub fd: i32,
    /// Bytes written or read by the call (its successful return).
    pub len: u32,
    /// Bytes of plaintext in `data`.
    pub captured: u32,
    pub lib: u8,
    /// [`DIR_SEND`] for writes, [`DIR_RECV`] for reads.
    pub direction: u8,
    /// A [`TlsFunc`] number.
    pub func: u8,
    pub _pad: u8,
    pub data: [u8; TLS_CAPTURE_MAX],
}

pub const TLS_DATA_HEAD: usize = core::mem::size_of::<TlsDataEvent>() - TLS_CAPTURE_MAX;

/// Bytes of a [`DnsEvent`] before its message.
pub const DNS_HEAD: usize = core::mem::size_of::<DnsEvent>() - DNS_CAPTURE_MAX;

pub const HANDSHAKE_ENTER: u8 = 0;
pub const HANDSHAKE_RETURN: u8 = 1;

/// Whether a handshake call of `lib` (a [`TlsLib`] number) returning `ret` only says "not
/// yet, call again" (a non-blocking socket not ready). Such returns are not reported by the
/// kernel (wrk called SSL_connect 7-8 times per connection), and the stitcher ignores any it
/// finds in older recordings: one definition for both.
pub fn handshake_would_block(lib: u8, ret: i64) -> bool {
    if lib == TlsLib::OpenSsl as u8 || lib == TlsLib::BoringSsl as u8 {
        ret == -1 || ret == 0
    } else if lib == TlsLib::GnuTls as u8 {
        ret == -28 || ret == -52 // GNUTLS_E_AGAIN, GNUTLS_E_INTERRUPTED
    } else {
        ret == -1
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TlsHandshakeEvent {
    pub header: EventHeader,
    pub tls_obj: u64,
    /// Function return value (valid for [`HANDSHAKE_RETURN`]): 1 done for OpenSSL,
    /// 0 done for GnuTLS/NSS, negative/other values mean "not yet" or failure.
    pub ret: i64,
    pub fd: i32,
    pub lib: u8,
    pub func: u8,
    pub phase: u8,
    pub _pad: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TlsFdEvent {
    pub header: EventHeader,
    pub tls_obj: u64,
    pub fd: i32,
    pub lib: u8,
    pub func: u8,
    pub _pad: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkEvent {
    pub header: EventHeader,
    /// Thread id of the new task (equal to its tgid when it is a new process).
    pub child_pid: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub header: EventHeader,
    pub filename: [u8; EXEC_FILENAME_MAX],
}

/// Load-time constants the daemon sets with `EbpfLoader::set_global` (names are the
/// symbol names in the eBPF object).
pub mod globals {
    pub const TLS_CAPTURE_BYTES: &str = "TLS_CAPTURE_BYTES";
    /// `u32`: 0 traces every process (the default); 1 traces only the processes in
    /// [`super::maps::TRACED`] (`tracer run --pid/--comm/-- COMMAND`).
    pub const FILTER_ENABLED: &str = "FILTER_ENABLED";
    /// `[u8; 16]`: with the filter on, a process whose new `comm` equals these bytes after an
    /// exec becomes traced (`--comm NAME`, NUL-padded, at most 15 bytes). All zero: none.
    pub const FILTER_COMM: &str = "FILTER_COMM";
}

/// Map names in the eBPF object.
pub mod maps {
    pub const EVENTS: &str = "EVENTS";
    pub const LOST: &str = "LOST";
    /// Client filter: tgid (`u32`) -> `u8` of the traced processes (and the thread ids of
    /// their threads, which is harmless). Seeded by the daemon; the fork/exec/exit programs
    /// keep it up to date.
    pub const TRACED: &str = "TRACED";
    /// Client filter: kernel socket addresses (`u64`) whose connect/listen a traced process
    /// made, so their softirq-context state changes are kept. LRU.
    pub const TRACED_SOCKS: &str = "TRACED_SOCKS";
    /// Client filter: destinations ([`super::FlowKey`]) a traced process connected to, so the
    /// error reports (which carry no socket address) for them are kept. LRU.
    pub const TRACED_FLOWS: &str = "TRACED_FLOWS";
}

/// Capacity of [`maps::TRACED`].
pub const TRACED_MAX: u32 = 65536;

/// Key of [`maps::TRACED_FLOWS`]: a destination address and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowKey {
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    pub _pad: u32,
    pub addr: [u8; 16],
}

#[cfg(feature = "user")]
mod user {
    use super::*;

    // SAFETY: plain-old-data repr(C) structs with explicit padding, no pointers.
    unsafe impl aya::Pod for SockAddr {}
    unsafe impl aya::Pod for layout::TpLayout {}
    unsafe impl aya::Pod for layout::KernelOffsets {}

    impl core::fmt::Display for EventKind {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str(self.name())
        }
    }
}

/// `comm` bytes up to the first NUL.
pub fn cstr_bytes(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_stable() {
        assert_eq!(HEADER_SIZE, 40);
        assert_eq!(core::mem::size_of::<SockAddr>(), 24);
        assert_eq!(core::mem::align_of::<TlsDataEvent>(), 8);
        // The variable tail starts right after the fixed head.
        assert_eq!(TLS_DATA_HEAD, 40 + 8 + 8 + 4 + 4 + 4 + 4);
        assert_eq!(DNS_HEAD, 40 + 4 + 4 + 4 + 4 + 24);
        assert_eq!(core::mem::size_of::<DnsEvent>(), DNS_HEAD + DNS_CAPTURE_MAX);
        assert_eq!(QUIC_PLAINTEXT_HEAD, 40 + 8 + 8 + 8 + 4 + 4 + 4 + 4 + QUIC_NONCE_MAX + QUIC_AAD_MAX);
        assert_eq!(core::mem::align_of::<QuicPlaintextEvent>(), 8);
    }

    #[test]
    fn kinds_round_trip_and_reject_unknown() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_u32(k as u32), Some(k));
            assert!((k as u32) < KIND_SLOTS);
        }
        assert_eq!(EventKind::from_u32(0), None);
        assert_eq!(EventKind::from_u32(999), None);
        assert_eq!(TlsFunc::from_u8(200), None);
        assert_eq!(TlsFunc::from_u8(4), Some(TlsFunc::SSL_read_ex));
    }
}
