//! One QUIC connection seen from its datagrams, both directions, in order: the handshake's
//! facts (version, connection IDs, SNI, ALPN, transport parameters, cipher), its timing, 0-RTT,
//! Retry, Version Negotiation, a CONNECTION_CLOSE in the clear, and the traffic.
//!
//! Timing is the client's view, as the kernel sees its socket: the handshake runs from the
//! client's first Initial to its first 1-RTT (short header) packet, which it may send only
//! once it has the 1-RTT keys, that is, after the server's whole flight (RFC 9001 4.1.4; a
//! 0-RTT client sends 0-RTT packets before, which do not end it).

use serde::Serialize;

use super::initial::{CryptoStream, Frame, InitialKeys, Sender, open_initial};
use super::packet::{ConnectionId, Header, LongType, retry_integrity_ok, split_datagram_lossy};
use super::transport_params::{TransportParameters, parse_transport_parameters};
use crate::decode::Direction;
use crate::decode::tls;

/// Most decoding problems kept word for word (the rest are counted).
pub const MAX_ERRORS_KEPT: usize = 8;

/// Datagrams, packets and bytes one way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    pub datagrams: u64,
    pub packets: u64,
    pub bytes: u64,
    /// CLOCK_MONOTONIC ns of the first and last datagram.
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
}

impl Traffic {
    fn add(&mut self, ts_ns: u64, bytes: usize, packets: usize) {
        self.datagrams += 1;
        self.packets += packets as u64;
        self.bytes += bytes as u64;
        self.first_ns.get_or_insert(ts_ns);
        self.last_ns = Some(self.last_ns.map_or(ts_ns, |l| l.max(ts_ns)));
    }
}

/// A Retry the server sent (RFC 9000 8.1.2): the client must start again with the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RetryInfo {
    pub ts_ns: u64,
    /// The connection ID the server chose; the client's next Initials go to it.
    pub new_dcid: ConnectionId,
    pub token_len: usize,
    /// The Retry Integrity Tag checked out against the client's original connection ID.
    pub integrity_ok: bool,
}

/// A CONNECTION_CLOSE seen in an Initial packet (the only ones readable without keys).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CloseInfo {
    pub ts_ns: u64,
    pub by: Sender,
    /// The transport error code (0x100 + the TLS alert for a crypto error).
    pub code: u64,
    pub reason: String,
}

impl CloseInfo {
    /// The TLS alert of a CRYPTO_ERROR (0x100-0x1ff), e.g. 120 no_application_protocol.
    pub fn tls_alert(&self) -> Option<u8> {
        // Lazily: `then_some` would compute the subtraction for codes below 0x100 too.
        (0x100..=0x1ff).contains(&self.code).then(|| (self.code - 0x100) as u8)
    }
}

/// What a [`QuicTracker`] learnt.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QuicSummary {
    /// The version of the client's (last) Initial packets.
    pub version: Option<u32>,
    /// The destination connection ID of the client's first Initial (it keys the Initials).
    pub original_dcid: Option<ConnectionId>,
    pub client_scid: Option<ConnectionId>,
    /// The server's connection ID (source of its first long-header packet).
    pub server_scid: Option<ConnectionId>,
    pub sni: Option<String>,
    /// ALPN protocols the client offered, in order.
    pub alpn: Vec<String>,
    /// The key_share groups of the ClientHello (0x11ec X25519MLKEM768, 0x1d x25519 ...).
    pub key_share_groups: Vec<u16>,
    pub transport_parameters: Option<TransportParameters>,
    /// The ClientHello's length, and how many of the client's Initial packets carried it.
    pub client_hello_bytes: Option<usize>,
    pub client_hello_packets: u32,
    /// From the ServerHello: `TLS13_AES_128_GCM_SHA256` ...
    pub cipher_suite: Option<String>,
    /// From the ServerHello's supported_versions (QUIC is TLS 1.3 only).
    pub tls_version: Option<String>,
    /// 0-RTT packets the client sent (resumption with early data).
    pub zero_rtt_packets: u64,
    pub retry: Option<RetryInfo>,
    /// The versions of a Version Negotiation packet from the server.
    pub version_negotiation: Vec<u32>,
    pub close: Option<CloseInfo>,
    /// CLOCK_MONOTONIC ns: the client's first Initial.
    pub first_initial_ns: Option<u64>,
    /// The server's first packet, and the datagram that completed its ServerHello.
    pub server_first_ns: Option<u64>,
    pub server_hello_ns: Option<u64>,
    /// The client's first Handshake packet (it carries, or precedes, its Finished).
    pub client_handshake_ns: Option<u64>,
    /// The client's first 1-RTT packet: the end of the handshake as the client's socket
    /// shows it.
    pub first_1rtt_ns: Option<u64>,
    /// Client to server, and back.
    pub sent: Traffic,
    pub received: Traffic,
    /// The first [`MAX_ERRORS_KEPT`] decoding problems, and how many there were.
    pub errors: Vec<String>,
    pub errors_total: u64,
}

impl QuicSummary {
    /// From the client's first Initial to its first 1-RTT packet, in ns.
    pub fn handshake_ns(&self) -> Option<u64> {
        Some(self.first_1rtt_ns?.saturating_sub(self.first_initial_ns?))
    }
    /// Whether the client sent 0-RTT data.
    pub fn zero_rtt(&self) -> bool {
        self.zero_rtt_packets > 0
    }
    /// Whether the handshake got as far as 1-RTT.
    pub fn handshake_done(&self) -> bool {
        self.first_1rtt_ns.is_some()
    }
}

/// Feed it a connection's datagrams in the order the client's socket moved them.
#[derive(Debug, Default)]
pub struct QuicTracker {
    summary: QuicSummary,
    keys: Option<InitialKeys>,
    /// The connection ID the current keys were derived from.
    keys_dcid: Option<ConnectionId>,
    client_crypto: CryptoStream,
    server_crypto: CryptoStream,
    client_hello_done: bool,
    server_hello_done: bool,
}

impl QuicTracker {
    pub fn new() -> QuicTracker {
        QuicTracker::default()
    }

    pub fn summary(&self) -> &QuicSummary {
        &self.summary
    }

    pub fn into_summary(self) -> QuicSummary {
        self.summary
    }

    fn error(&mut self, e: impl std::fmt::Display) {
        self.summary.errors_total += 1;
        if self.summary.errors.len() < MAX_ERRORS_KEPT {
            self.summary.errors.push(e.to_string());
        }
    }

    /// One datagram: `Send` is client to server, `Recv` server to client, `ts_ns` when the
    /// client's socket moved it (CLOCK_MONOTONIC). Undecodable input is counted and kept as
    /// an error text; it never stops the tracker.
    pub fn feed(&mut self, ts_ns: u64, dir: Direction, datagram: &[u8]) {
        self.feed_partial(ts_ns, dir, datagram, datagram.len());
    }

    /// [`Self::feed`] for a datagram of `len` bytes of which only the first ones were
    /// captured (`captured`): the traffic counts `len`; what was captured is decoded (a packet
    /// cut by the capture is an error, the packets before it are read).
    pub fn feed_partial(&mut self, ts_ns: u64, dir: Direction, datagram: &[u8], len: usize) {
        let len = len.max(datagram.len());
        let short_dcid_len = match dir {
            Direction::Send => self.summary.server_scid.as_ref().map(ConnectionId::len),
            Direction::Recv => self.summary.client_scid.as_ref().map(ConnectionId::len),
        };
        let (packets, err) = split_datagram_lossy(datagram, short_dcid_len);
        match dir {
            Direction::Send => self.summary.sent.add(ts_ns, len, packets.len()),
            Direction::Recv => self.summary.received.add(ts_ns, len, packets.len()),
        }
        if let Some(e) = err {
            self.error(format!("{} datagram of {} bytes: {e}", dir_name(dir), datagram.len()));
        }
        for p in &packets {
            match dir {
                Direction::Send => self.client_packet(ts_ns, datagram, p),
                Direction::Recv => self.server_packet(ts_ns, datagram, p),
            }
        }
        self.parse_hellos(ts_ns);
    }

    fn client_packet(&mut self, ts_ns: u64, datagram: &[u8], p: &super::packet::Packet) {
        match &p.header {
            Header::Long { ty: LongType::Initial, version, dcid, scid, .. } => {
                let s = &mut self.summary;
                s.first_initial_ns.get_or_insert(ts_ns);
                s.original_dcid.get_or_insert_with(|| dcid.clone());
                s.client_scid.get_or_insert_with(|| scid.clone());
                let version_changed = s.version.is_some_and(|v| v != *version);
                s.version = Some(*version);
                // Keys come from this DCID unless a Retry already set them (then the client's
                // DCID is the Retry's) or the client moved to another version after a Version
                // Negotiation (new keys, and its handshake starts over).
                let stale = self.keys.as_ref().is_none_or(|k| k.version() != *version);
                if stale || version_changed {
                    self.derive_keys(*version, dcid.clone());
                }
                let Some(keys) = &self.keys else { return };
                match open_initial(keys, Sender::Client, datagram, p) {
                    Ok((_, frames)) => {
                        let mut crypto = false;
                        for f in frames {
                            match f {
                                Frame::Crypto { offset, data } => {
                                    crypto = true;
                                    self.client_crypto.add(offset, &data);
                                }
                                Frame::ConnectionClose { code, reason, .. } => {
                                    self.close(ts_ns, Sender::Client, code, reason);
                                }
                                _ => {}
                            }
                        }
                        if crypto && !self.client_hello_done {
                            self.summary.client_hello_packets += 1;
                        }
                    }
                    Err(e) => self.error(format!("client Initial: {e}")),
                }
            }
            Header::Long { ty: LongType::ZeroRtt, .. } => self.summary.zero_rtt_packets += 1,
            Header::Long { ty: LongType::Handshake, .. } => {
                self.summary.client_handshake_ns.get_or_insert(ts_ns);
            }
            Header::Short { .. } => {
                if self.summary.first_initial_ns.is_some() {
                    self.summary.first_1rtt_ns.get_or_insert(ts_ns);
                }
            }
            Header::Long { ty: LongType::Retry, .. } | Header::Retry { .. } => {
                self.error("a Retry packet from the client");
            }
            Header::VersionNegotiation { .. } => self.error("a Version Negotiation packet from the client"),
            Header::UnknownVersion { version, .. } => {
                self.summary.first_initial_ns.get_or_insert(ts_ns);
                self.summary.version = Some(*version);
            }
        }
    }

    fn server_packet(&mut self, ts_ns: u64, datagram: &[u8], p: &super::packet::Packet) {
        match &p.header {
            Header::Retry { version, scid, token, .. } => {
                let bytes = &datagram[p.start..p.start + p.len];
                let integrity_ok = self
                    .summary
                    .original_dcid
                    .as_ref()
                    .is_some_and(|o| retry_integrity_ok(*version, o.as_bytes(), bytes));
                self.summary.retry = Some(RetryInfo {
                    ts_ns,
                    new_dcid: scid.clone(),
                    token_len: token.len(),
                    integrity_ok,
                });
                if integrity_ok {
                    // The client's next Initials go to the server's new ID and are keyed by it;
                    // its handshake starts over at CRYPTO offset 0.
                    self.derive_keys(*version, scid.clone());
                }
            }
            Header::VersionNegotiation { versions, .. } => {
                self.summary.server_first_ns.get_or_insert(ts_ns);
                self.summary.version_negotiation = versions.clone();
            }
            Header::Long { ty, scid, .. } => {
                self.summary.server_first_ns.get_or_insert(ts_ns);
                if self.summary.server_scid.is_none() && *ty != LongType::ZeroRtt {
                    self.summary.server_scid = Some(scid.clone());
                }
                if *ty != LongType::Initial {
                    return;
                }
                let Some(keys) = &self.keys else {
                    self.error("a server Initial before any client Initial");
                    return;
                };
                match open_initial(keys, Sender::Server, datagram, p) {
                    Ok((_, frames)) => {
                        for f in frames {
                            match f {
                                Frame::Crypto { offset, data } => self.server_crypto.add(offset, &data),
                                Frame::ConnectionClose { code, reason, .. } => {
                                    self.close(ts_ns, Sender::Server, code, reason);
                                }
                                _ => {}
                            }
                        }
                    }
                    Err(e) => self.error(format!("server Initial: {e}")),
                }
            }
            Header::Short { .. } | Header::UnknownVersion { .. } => {
                self.summary.server_first_ns.get_or_insert(ts_ns);
            }
        }
    }

    fn derive_keys(&mut self, version: u32, dcid: ConnectionId) {
        match InitialKeys::new(version, dcid.as_bytes()) {
            Ok(k) => self.keys = Some(k),
            Err(e) => {
                self.keys = None;
                self.error(format!("Initial keys: {e}"));
            }
        }
        if self.keys_dcid.is_some() {
            self.client_crypto = CryptoStream::default();
            self.server_crypto = CryptoStream::default();
        }
        self.keys_dcid = Some(dcid);
    }

    fn close(&mut self, ts_ns: u64, by: Sender, code: u64, reason: String) {
        if self.summary.close.is_none() {
            self.summary.close = Some(CloseInfo { ts_ns, by, code, reason });
        }
    }

    fn parse_hellos(&mut self, ts_ns: u64) {
        if !self.client_hello_done
            && let Some((_, msg)) = self.client_crypto.first_message()
        {
            self.client_hello_done = true;
            match tls::parse_client_hello_message(msg) {
                Ok(ch) => {
                    let s = &mut self.summary;
                    s.client_hello_bytes = Some(msg.len());
                    s.sni = ch.sni;
                    s.alpn = ch.alpn;
                    s.key_share_groups = ch.key_share_groups;
                    match ch.quic_transport_parameters.as_deref().map(parse_transport_parameters) {
                        Some(Ok(tp)) => self.summary.transport_parameters = Some(tp),
                        Some(Err(e)) => self.error(format!("transport parameters: {e}")),
                        None => self.error("a ClientHello without QUIC transport parameters"),
                    }
                }
                Err(e) => self.error(format!("ClientHello: {e}")),
            }
        }
        if !self.server_hello_done
            && let Some((_, msg)) = self.server_crypto.first_message()
        {
            self.server_hello_done = true;
            match tls::parse_server_hello_message(msg) {
                Ok(sh) => {
                    self.summary.server_hello_ns = Some(ts_ns);
                    self.summary.cipher_suite = Some(tls::cipher_suite_name(sh.cipher_suite));
                    self.summary.tls_version = Some(tls::version_name(sh.version));
                }
                Err(e) => self.error(format!("ServerHello: {e}")),
            }
        }
    }
}

fn dir_name(d: Direction) -> &'static str {
    match d {
        Direction::Send => "client",
        Direction::Recv => "server",
    }
}
