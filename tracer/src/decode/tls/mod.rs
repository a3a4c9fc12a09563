//! The TLS record layer and the ClientHello, parsed by hand with a bounds-checked reader.
//!
//! Only what a tracer needs is extracted from a ClientHello: the server name (SNI), the ALPN
//! protocols offered, and the versions. Every length field is checked against the bytes that
//! enclose it; data that ends before a declared length is [`TlsError::Truncated`], a length that
//! contradicts its enclosing length is [`TlsError::Malformed`].

use serde::Serialize;

/// Bytes of a TLS record header: type, version, length.
pub const RECORD_HEADER_LEN: usize = 5;
/// The largest record length accepted: 2^14 plaintext plus the 2048 bytes of expansion
/// TLS 1.2 allows for a protected record.
pub const MAX_RECORD_LEN: u16 = 16384 + 2048;

const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const EXT_KEY_SHARE: u16 = 51;
/// quic_transport_parameters (RFC 9001 8.2).
const EXT_QUIC_TRANSPORT_PARAMETERS: u16 = 57;
/// The largest handshake stream QUIC's decoder puts together from CRYPTO frames: a ClientHello
/// with post-quantum key shares is 1.5-2 KB; 64 KiB is far beyond any real one and bounds what
/// hostile input can make us keep.
pub const MAX_HANDSHAKE_MESSAGE: usize = 64 * 1024;
const SNI_HOST_NAME: u8 = 0;

/// Why TLS bytes could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The data ends before a length it declares: cut by the capture, or lying about its size.
    #[error("TLS data truncated in the {what}: {got} byte(s) present, {needed} needed")]
    Truncated {
        what: &'static str,
        got: usize,
        needed: usize,
    },
    #[error("unknown TLS record version 0x{0:04x} (expected 0x0300..=0x0304)")]
    UnknownVersion(u16),
    #[error("TLS record length {0} exceeds the maximum of {MAX_RECORD_LEN}")]
    RecordTooLong(u16),
    #[error("TLS record of type {0} is not a handshake record")]
    NotHandshake(ContentType),
    #[error("TLS handshake message of type {0} is not a ClientHello (1)")]
    NotClientHello(u8),
    #[error("malformed ClientHello: {0}")]
    Malformed(String),
}

/// The record's content type.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentType {
    ChangeCipherSpec,
    Alert,
    Handshake,
    ApplicationData,
    Heartbeat,
    Unknown(u8),
}

impl ContentType {
    pub fn from_u8(v: u8) -> Self {
        match v {
            20 => ContentType::ChangeCipherSpec,
            21 => ContentType::Alert,
            22 => ContentType::Handshake,
            23 => ContentType::ApplicationData,
            24 => ContentType::Heartbeat,
            other => ContentType::Unknown(other),
        }
    }

    pub fn as_u8(self) -> u8 {
        match self {
            ContentType::ChangeCipherSpec => 20,
            ContentType::Alert => 21,
            ContentType::Handshake => 22,
            ContentType::ApplicationData => 23,
            ContentType::Heartbeat => 24,
            ContentType::Unknown(v) => v,
        }
    }
}

impl std::fmt::Display for ContentType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContentType::Unknown(v) => write!(f, "unknown({v})"),
            known => write!(f, "{known:?}({})", known.as_u8()),
        }
    }
}

/// The 5-byte header of a TLS record.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub content_type: ContentType,
    /// 0x0300 (SSL 3.0) to 0x0304; TLS 1.3 records say 0x0303 (0x0301 in a first ClientHello).
    pub version: u16,
    /// Length of the record body that follows the header.
    pub length: u16,
}

/// What a ClientHello says that a tracer cares about.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The host_name of the server_name extension.
    pub sni: Option<String>,
    /// ALPN protocol names offered, in order ("h2", "http/1.1"); bytes that are not printable
    /// ASCII are written as `\xNN`.
    pub alpn: Vec<String>,
    /// The legacy_version field (0x0303 for TLS 1.2 and 1.3).
    pub legacy_version: u16,
    /// The supported_versions extension, in order, GREASE values included (see [`is_grease`]);
    /// empty when the extension is absent (a TLS 1.2-only client).
    pub supported_versions: Vec<u16>,
    /// The named groups of the key_share extension, in order (0x11ec is X25519MLKEM768, whose
    /// 1,216-byte share makes a QUIC ClientHello span two Initial packets); empty when absent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_share_groups: Vec<u16>,
    /// The body of the quic_transport_parameters extension (57), as sent: QUIC clients only
    /// (parsed by `decode::quic::transport_params`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quic_transport_parameters: Option<Vec<u8>>,
}

/// Parses the 5-byte record header at the start of `bytes` (the body need not be present).
pub fn parse_record_header(bytes: &[u8]) -> Result<RecordHeader, TlsError> {
    let Some(&[ty, v0, v1, l0, l1]) = bytes.first_chunk::<RECORD_HEADER_LEN>() else {
        return Err(TlsError::Truncated {
            what: "record header",
            got: bytes.len(),
            needed: RECORD_HEADER_LEN,
        });
    };
    let version = u16::from_be_bytes([v0, v1]);
    if !(0x0300..=0x0304).contains(&version) {
        return Err(TlsError::UnknownVersion(version));
    }
    let length = u16::from_be_bytes([l0, l1]);
    if length > MAX_RECORD_LEN {
        return Err(TlsError::RecordTooLong(length));
    }
    Ok(RecordHeader {
        content_type: ContentType::from_u8(ty),
        version,
        length,
    })
}

/// A cheap guess that `bytes` start with a TLS record: a known content type, a 3.x version and
/// a plausible non-zero length.
pub fn looks_like_tls_record(bytes: &[u8]) -> bool {
    matches!(
        parse_record_header(bytes),
        Ok(h) if !matches!(h.content_type, ContentType::Unknown(_)) && h.length > 0
    )
}

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 12 == (v >> 4) & 0x0f
}

/// Parses a ClientHello handshake message (type 1, 3-byte length, body) at the start of
/// `bytes`, as QUIC carries it in CRYPTO frames: without the record layer.
pub fn parse_client_hello_message(bytes: &[u8]) -> Result<ClientHello, TlsError> {
    parse_handshake_message(bytes, HANDSHAKE_CLIENT_HELLO).and_then(parse_hello_body)
}

/// Parses a ServerHello handshake message (type 2) at the start of `bytes`, without the record
/// layer (QUIC's Initial CRYPTO frames).
pub fn parse_server_hello_message(bytes: &[u8]) -> Result<ServerHello, TlsError> {
    parse_handshake_message(bytes, HANDSHAKE_SERVER_HELLO).and_then(parse_server_hello_body)
}

/// The body of the handshake message of type `want` at the start of `bytes`.
fn parse_handshake_message(bytes: &[u8], want: u8) -> Result<&[u8], TlsError> {
    let Some(&[ty, a, b, c]) = bytes.first_chunk::<4>() else {
        return Err(TlsError::Truncated {
            what: "handshake message header",
            got: bytes.len(),
            needed: 4,
        });
    };
    if ty != want {
        return Err(if want == HANDSHAKE_CLIENT_HELLO {
            TlsError::NotClientHello(ty)
        } else {
            malformed(format!("handshake type {ty} is not ServerHello (2)"))
        });
    }
    let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
    bytes.get(4..4 + len).ok_or(TlsError::Truncated {
        what: "handshake message",
        got: bytes.len(),
        needed: 4 + len,
    })
}

/// Parses the ClientHello carried by the TLS record(s) at the start of `bytes`. A ClientHello
/// split over several handshake records is put back together.
pub fn parse_client_hello(bytes: &[u8]) -> Result<ClientHello, TlsError> {
    let mut handshake: Vec<u8> = Vec::new();
    let mut rest = bytes;
    loop {
        let header = parse_record_header(rest)?;
        if header.content_type != ContentType::Handshake {
            return Err(TlsError::NotHandshake(header.content_type));
        }
        let len = usize::from(header.length);
        if len == 0 {
            return Err(TlsError::Malformed("empty handshake record".into()));
        }
        let body = &rest[RECORD_HEADER_LEN..];
        let Some(fragment) = body.get(..len) else {
            return Err(TlsError::Truncated {
                what: "record",
                got: body.len(),
                needed: len,
            });
        };
        handshake.extend_from_slice(fragment);
        rest = &body[len..];

        if let Some(&ty) = handshake.first()
            && ty != HANDSHAKE_CLIENT_HELLO
        {
            return Err(TlsError::NotClientHello(ty));
        }
        let needed = match handshake.get(1..4) {
            Some(&[a, b, c]) => 4 + (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c)),
            _ => 4,
        };
        if let Some(message) = handshake.get(4..needed) {
            return parse_hello_body(message);
        }
        if rest.is_empty() {
            return Err(TlsError::Truncated {
                what: "handshake message",
                got: handshake.len(),
                needed,
            });
        }
    }
}

fn parse_hello_body(body: &[u8]) -> Result<ClientHello, TlsError> {
    let mut r = Reader::new(body);
    let legacy_version = r.u16("legacy_version")?;
    r.take(32, "random")?;
    let session_id = r.vec8("legacy_session_id")?;
    if session_id.len() > 32 {
        return Err(malformed(format!(
            "legacy_session_id of {} bytes (at most 32)",
            session_id.len()
        )));
    }
    let suites = r.vec16("cipher_suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(malformed(format!(
            "cipher_suites length {} (must be even and non-zero)",
            suites.len()
        )));
    }
    if r.vec8("legacy_compression_methods")?.is_empty() {
        return Err(malformed("no compression method".to_string()));
    }
    let mut hello = ClientHello {
        legacy_version,
        ..ClientHello::default()
    };
    if r.is_empty() {
        // No extensions at all: legal before TLS 1.3.
        return Ok(hello);
    }
    let mut exts = Reader::new(r.vec16("extensions")?);
    r.finish("ClientHello")?;

    let mut seen: Vec<u16> = Vec::new();
    while !exts.is_empty() {
        let ty = exts.u16("extension type")?;
        let data = exts.vec16("extension data")?;
        if seen.contains(&ty) {
            return Err(malformed(format!("duplicate extension {ty}")));
        }
        seen.push(ty);
        match ty {
            EXT_SERVER_NAME => hello.sni = Some(parse_sni(data)?),
            EXT_ALPN => hello.alpn = parse_alpn(data)?,
            EXT_SUPPORTED_VERSIONS => hello.supported_versions = parse_supported_versions(data)?,
            EXT_KEY_SHARE => hello.key_share_groups = parse_key_share_groups(data)?,
            EXT_QUIC_TRANSPORT_PARAMETERS => hello.quic_transport_parameters = Some(data.to_vec()),
            _ => {}
        }
    }
    Ok(hello)
}

fn parse_sni(data: &[u8]) -> Result<String, TlsError> {
    let mut outer = Reader::new(data);
    let mut list = Reader::new(outer.vec16("server_name list")?);
    outer.finish("server_name extension")?;
    if list.is_empty() {
        return Err(malformed("empty server_name list".to_string()));
    }
    let mut host = None;
    while !list.is_empty() {
        let name_type = list.u8("server_name type")?;
        let name = list.vec16("server_name")?;
        if name_type == SNI_HOST_NAME && host.is_none() {
            if name.is_empty() || name.len() > 255 || !name.iter().all(u8::is_ascii_graphic) {
                return Err(malformed(format!(
                    "invalid SNI host_name {}",
                    escape_bytes(name)
                )));
            }
            host = Some(String::from_utf8_lossy(name).into_owned());
        }
    }
    host.ok_or_else(|| malformed("server_name extension without a host_name".to_string()))
}

fn parse_alpn(data: &[u8]) -> Result<Vec<String>, TlsError> {
    let mut outer = Reader::new(data);
    let mut list = Reader::new(outer.vec16("ALPN protocol list")?);
    outer.finish("ALPN extension")?;
    if list.is_empty() {
        return Err(malformed("empty ALPN protocol list".to_string()));
    }
    let mut protocols = Vec::new();
    while !list.is_empty() {
        let proto = list.vec8("ALPN protocol name")?;
        if proto.is_empty() {
            return Err(malformed("empty ALPN protocol name".to_string()));
        }
        protocols.push(escape_bytes(proto));
    }
    Ok(protocols)
}

fn parse_supported_versions(data: &[u8]) -> Result<Vec<u16>, TlsError> {
    let mut outer = Reader::new(data);
    let list = outer.vec8("supported_versions list")?;
    outer.finish("supported_versions extension")?;
    if list.is_empty() || list.len() % 2 != 0 {
        return Err(malformed(format!(
            "supported_versions list of {} bytes (must be even and non-zero)",
            list.len()
        )));
    }
    Ok(list
        .chunks_exact(2)
        .map(|v| u16::from_be_bytes([v[0], v[1]]))
        .collect())
}

fn parse_key_share_groups(data: &[u8]) -> Result<Vec<u16>, TlsError> {
    let mut outer = Reader::new(data);
    let mut list = Reader::new(outer.vec16("key_share client_shares")?);
    outer.finish("key_share extension")?;
    let mut groups = Vec::new();
    while !list.is_empty() {
        groups.push(list.u16("key_share group")?);
        list.vec16("key_exchange")?;
    }
    Ok(groups)
}

/// Printable ASCII as is, anything else as `\xNN`.
fn escape_bytes(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_graphic() || c == b' ' {
            s.push(char::from(c));
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    s
}

fn malformed(msg: String) -> TlsError {
    TlsError::Malformed(msg)
}

/// What a ServerHello says: the version and cipher suite the server chose.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerHello {
    /// The negotiated version: supported_versions (TLS 1.3) or else legacy_version.
    pub version: u16,
    pub cipher_suite: u16,
}

const HANDSHAKE_SERVER_HELLO: u8 = 2;

/// Parse a ServerHello at the start of `bytes` (a TLS handshake record). Only the first
/// record is needed: the ServerHello comes first and is short.
pub fn parse_server_hello(bytes: &[u8]) -> Result<ServerHello, TlsError> {
    let header = parse_record_header(bytes)?;
    if header.content_type != ContentType::Handshake {
        return Err(TlsError::NotHandshake(header.content_type));
    }
    let body = &bytes[RECORD_HEADER_LEN..];
    let body = body.get(..usize::from(header.length)).unwrap_or(body);
    let mut r = Reader::new(body);
    let ty = r.u8("handshake type")?;
    if ty != HANDSHAKE_SERVER_HELLO {
        return Err(malformed(format!("handshake type {ty} is not ServerHello (2)")));
    }
    let len_bytes = r.take(3, "handshake length")?;
    let len = usize::from(len_bytes[0]) << 16 | usize::from(len_bytes[1]) << 8 | usize::from(len_bytes[2]);
    parse_server_hello_body(r.take(len, "ServerHello")?)
}

fn parse_server_hello_body(body: &[u8]) -> Result<ServerHello, TlsError> {
    let mut r = Reader::new(body);
    let legacy_version = r.u16("legacy_version")?;
    r.take(32, "random")?;
    r.vec8("session id")?;
    let cipher_suite = r.u16("cipher suite")?;
    r.u8("compression method")?;
    let mut version = legacy_version;
    if !r.is_empty() {
        let n = usize::from(r.u16("extensions length")?);
        let mut ext = Reader::new(r.take(n, "extensions")?);
        while !ext.is_empty() {
            let ty = ext.u16("extension type")?;
            let n = usize::from(ext.u16("extension length")?);
            let data = ext.take(n, "extension data")?;
            if ty == EXT_SUPPORTED_VERSIONS && data.len() == 2 {
                version = u16::from_be_bytes([data[0], data[1]]);
            }
        }
    }
    Ok(ServerHello { version, cipher_suite })
}

/// "TLSv1.3", "TLSv1.2" ... for a version number.
pub fn version_name(v: u16) -> String {
    match v {
        0x0304 => "TLSv1.3".into(),
        0x0303 => "TLSv1.2".into(),
        0x0302 => "TLSv1.1".into(),
        0x0301 => "TLSv1.0".into(),
        other => format!("0x{other:04x}"),
    }
}

/// The IANA name of a cipher suite, as rustls knows them ("TLS13_AES_128_GCM_SHA256").
pub fn cipher_suite_name(v: u16) -> String {
    match rustls::CipherSuite::from(v) {
        rustls::CipherSuite::Unknown(_) => format!("0x{v:04x}"),
        known => format!("{known:?}"),
    }
}

/// A cursor over bytes whose reads fail, naming the field, instead of running past the end.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], TlsError> {
        if n > self.buf.len() {
            return Err(malformed(format!(
                "{what} needs {n} byte(s), only {} left in the enclosing length",
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, TlsError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, TlsError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn vec8(&mut self, what: &str) -> Result<&'a [u8], TlsError> {
        let n = self.u8(what)?;
        self.take(usize::from(n), what)
    }

    fn vec16(&mut self, what: &str) -> Result<&'a [u8], TlsError> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }

    /// The enclosing structure must be used up exactly.
    fn finish(&self, what: &str) -> Result<(), TlsError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(malformed(format!(
                "{} unexpected byte(s) at the end of the {what}",
                self.buf.len()
            )))
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) use tests::server_hello_tests;
