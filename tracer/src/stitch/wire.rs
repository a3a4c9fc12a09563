//! TLS seen on the wire: the record layer of a connection's socket traffic, for clients whose
//! TLS library is not probed (a Chromium build whose BoringSSL functions were not found).
//!
//! Only record headers are read (content type and length), and the ClientHello for its server
//! name and ALPN offer. That is enough for the handshake's timing from the client's side: it
//! starts with the write that carries the ClientHello and ends with the client's first
//! application-data record after the server has answered (TLS 1.3: the client's encrypted
//! Finished; TLS 1.2: the first request, after the server's Finished). Application-data
//! records after that give an opaque exchange: the first client record starts it, the first
//! server record after it is the response's start, the last one its end.
//!
//! Capture is partial (the first bytes of each call): record bodies past the capture are
//! skipped by their announced length; a header that falls past the capture loses the
//! direction, which then stops being parsed (what was learned so far stays).
use crate::decode::tls::{
    ContentType, RECORD_HEADER_LEN, looks_like_tls_record, parse_client_hello, parse_record_header, parse_server_hello,
};
use crate::decode::Direction;

/// Whether a connection's first sent bytes are a TLS handshake record (a ClientHello).
pub fn starts_tls(data: &[u8]) -> bool {
    looks_like_tls_record(data) && data[0] == ContentType::Handshake.as_u8()
}

#[derive(Debug, Default, Clone)]
struct Cursor {
    /// Bytes of the current record's body still to come.
    skip: u64,
    /// Header bytes of a record split between two calls.
    partial: Vec<u8>,
    /// Lost sync (a header past the capture, or not a TLS record): no more parsing.
    lost: bool,
}

#[derive(Debug, Default, Clone)]
pub struct WireTls {
    pub sni: Option<String>,
    /// From the ServerHello: the negotiated version and cipher suite numbers.
    pub server_version: Option<u16>,
    pub cipher_suite: Option<u16>,
    pub alpn_offered: Vec<String>,
    /// Start of the call that sent the ClientHello.
    pub hello_ns: Option<u64>,
    /// End of the first call that received a server record.
    pub server_first_ns: Option<u64>,
    /// Start of the client's first application-data record after the server's first record.
    pub handshake_end_ns: Option<u64>,
    /// The server sent an alert before the handshake ended.
    pub alert_in_handshake: bool,
    /// The description of the first alert each side sent in the clear (before its write keys:
    /// all of a TLS 1.2 handshake; under TLS 1.3 a client until it has read the server's
    /// Finished, so OpenSSL's alert for a certificate it rejects is seen, while a client that
    /// switches keys earlier sends it encrypted, as application data: not seen here).
    pub client_alert: Option<u8>,
    pub server_alert: Option<u8>,
    /// Application data after the handshake: the first client record's start, the end of
    /// the client's records before the first answer, the first server record after them, the
    /// last server record's end. Approximate: TLS 1.3 session tickets are application data
    /// too.
    pub app_send_ns: Option<u64>,
    pub app_send_end_ns: Option<u64>,
    pub app_recv_start_ns: Option<u64>,
    pub app_recv_end_ns: Option<u64>,
    pub app_bytes_sent: u64,
    pub app_bytes_received: u64,
    /// Records seen per direction: handshake, application data, other.
    pub records: [[u32; 3]; 2],
    cursors: [Cursor; 2],
    /// The server's first record, gathered across calls when its body does not come with
    /// its header: OpenSSL reads a record's 5-byte header and its body with two read()s.
    /// Bounded by [`SERVER_HELLO_MAX`].
    server_hello: Option<Vec<u8>>,
}

/// How much of the server's first record is gathered to read the ServerHello from (a
/// ServerHello with a classic key share is about 100-130 bytes; post-quantum shares ~1.2 KiB).
const SERVER_HELLO_MAX: usize = RECORD_HEADER_LEN + 2048;

fn idx(dir: Direction) -> usize {
    match dir {
        Direction::Send => 0,
        Direction::Recv => 1,
    }
}

impl WireTls {
    /// One socket call: `len` bytes moved, the first `data.len()` of them captured, between
    /// `start_ns` and `ts_ns`.
    pub fn feed(&mut self, dir: Direction, start_ns: u64, ts_ns: u64, len: u32, data: &[u8]) {
        let data = &data[..data.len().min(len as usize)];
        let d = idx(dir);
        if self.cursors[d].lost {
            return;
        }
        let total = len as u64;
        let mut pos: u64 = 0;
        while pos < total {
            let cur = &mut self.cursors[d];
            if cur.skip > 0 {
                let n = cur.skip.min(total - pos);
                if d == 1 {
                    let ends = cur.skip == n;
                    self.gather_server_hello(data, pos, n, ends);
                }
                let cur = &mut self.cursors[d];
                cur.skip -= n;
                pos += n;
                continue;
            }
            // A record header at `pos` (possibly completing one begun in the last call).
            let need = RECORD_HEADER_LEN - cur.partial.len();
            let avail = data.len() as u64;
            if pos >= avail {
                cur.lost = true;
                return;
            }
            let take = (need as u64).min(avail - pos).min(total - pos) as usize;
            let record_start = pos as usize;
            cur.partial.extend_from_slice(&data[record_start..record_start + take]);
            pos += take as u64;
            if cur.partial.len() < RECORD_HEADER_LEN {
                // The rest of the header comes with the next call (if it was captured here).
                if pos < total {
                    cur.lost = true;
                }
                return;
            }
            let header = std::mem::take(&mut cur.partial);
            let Ok(h) = parse_record_header(&header) else {
                cur.lost = true;
                return;
            };
            cur.skip = u64::from(h.length);
            let fresh_header = take == RECORD_HEADER_LEN;
            let mut record = fresh_header.then(|| &data[record_start..]);
            if dir == Direction::Recv && self.server_first_ns.is_none() && h.content_type == ContentType::Handshake {
                let whole = RECORD_HEADER_LEN + usize::from(h.length);
                if record.is_none_or(|r| r.len() < whole.min(SERVER_HELLO_MAX)) {
                    // The body comes (partly) with later calls: gather it, parse when complete.
                    self.server_hello = Some(header.clone());
                    record = None;
                }
            }
            self.on_record(dir, h.content_type, u64::from(h.length), start_ns, ts_ns, record);
        }
    }

    /// `n` bytes of the current server record's body at `pos` of this call (`data` holds the
    /// captured part); `ends` when they finish the record. Parses the ServerHello once enough
    /// is gathered; gives up when the capture has a gap.
    fn gather_server_hello(&mut self, data: &[u8], pos: u64, n: u64, ends: bool) {
        let Some(buf) = self.server_hello.as_mut() else { return };
        let want = SERVER_HELLO_MAX - buf.len();
        let from = (pos as usize).min(data.len());
        let to = (pos.saturating_add(n) as usize).min(data.len()).min(from + want);
        buf.extend_from_slice(&data[from..to]);
        let gap = to - from < (n as usize).min(want);
        if buf.len() >= SERVER_HELLO_MAX || ends || gap {
            let buf = self.server_hello.take().unwrap_or_default();
            if let Ok(sh) = parse_server_hello(&buf) {
                self.server_version = Some(sh.version);
                self.cipher_suite = Some(sh.cipher_suite);
            }
        }
    }

    fn on_record(&mut self, dir: Direction, ty: ContentType, length: u64, start_ns: u64, ts_ns: u64, record: Option<&[u8]>) {
        let d = idx(dir);
        let kind = match ty {
            ContentType::Handshake => 0,
            ContentType::ApplicationData => 1,
            _ => 2,
        };
        self.records[d][kind] = self.records[d][kind].saturating_add(1);
        if ty == ContentType::Alert && length == 2 {
            // A plaintext alert: level, description.
            if let Some(desc) = record.and_then(|r| r.get(RECORD_HEADER_LEN + 1)) {
                let slot = if dir == Direction::Send { &mut self.client_alert } else { &mut self.server_alert };
                slot.get_or_insert(*desc);
            }
        }
        match (dir, ty) {
            (Direction::Send, ContentType::Handshake) if self.hello_ns.is_none() => {
                self.hello_ns = Some(start_ns);
                if let Some(hello) = record.and_then(|r| parse_client_hello(r).ok()) {
                    self.sni = hello.sni;
                    self.alpn_offered = hello.alpn;
                }
            }
            (Direction::Recv, _) if self.server_first_ns.is_none() => {
                self.server_first_ns = Some(ts_ns);
                if let Some(sh) = record.and_then(|r| parse_server_hello(r).ok()) {
                    self.server_version = Some(sh.version);
                    self.cipher_suite = Some(sh.cipher_suite);
                }
                if ty == ContentType::Alert {
                    self.alert_in_handshake = true;
                }
            }
            (Direction::Recv, ContentType::Alert) if self.handshake_end_ns.is_none() => {
                self.alert_in_handshake = true;
            }
            (Direction::Send, ContentType::ApplicationData) => {
                // Only a handshake that was seen to start can end: application data sent
                // before any ClientHello (a capture that began mid-connection, or a hostile
                // stream) would make the handshake end before it starts.
                if self.handshake_end_ns.is_none() && self.hello_ns.is_some() {
                    self.handshake_end_ns = Some(start_ns);
                    // A server that already sent application-data records speaks TLS 1.3
                    // (its handshake is encrypted): this record is the client's Finished, not
                    // a request. Under TLS 1.2 the first one is the first request.
                    if self.records[1][1] > 0 {
                        return;
                    }
                }
                self.app_send_ns.get_or_insert(start_ns);
                if self.app_recv_start_ns.is_none() {
                    self.app_send_end_ns = Some(ts_ns);
                }
                self.app_bytes_sent += length;
            }
            (Direction::Recv, ContentType::ApplicationData) if self.app_send_ns.is_some() => {
                self.app_recv_start_ns.get_or_insert(start_ns);
                self.app_recv_end_ns = Some(ts_ns);
                self.app_bytes_received += length;
            }
            _ => {}
        }
    }

    /// The handshake as seen on the wire: (start, end).
    pub fn handshake(&self) -> Option<(u64, Option<u64>)> {
        self.hello_ns.map(|s| (s, self.handshake_end_ns))
    }

    /// Whether the client sent application data after the handshake (a request).
    pub fn exchanged(&self) -> bool {
        self.app_send_ns.is_some()
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) fn record(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![ty, 3, 3];
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// A minimal ClientHello with SNI `host` and ALPN h2.
    pub(crate) fn client_hello(host: &str) -> Vec<u8> {
        let mut ext = Vec::new();
        // server_name
        let mut sn = vec![0u8];
        sn.extend_from_slice(&(host.len() as u16).to_be_bytes());
        sn.extend_from_slice(host.as_bytes());
        let mut sni = (sn.len() as u16).to_be_bytes().to_vec();
        sni.extend_from_slice(&sn);
        ext.extend_from_slice(&0u16.to_be_bytes());
        ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        ext.extend_from_slice(&sni);
        // alpn
        let alpn = [0u8, 3, 2, b'h', b'2'];
        ext.extend_from_slice(&16u16.to_be_bytes());
        ext.extend_from_slice(&(alpn.len() as u16).to_be_bytes());
        ext.extend_from_slice(&alpn);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
        body.extend_from_slice(&[1, 0]); // compression
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1u8];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        record(22, &hs)
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::{client_hello, record};
    use super::*;

    #[test]
    fn tls13_handshake_and_exchange() {
        let mut w = WireTls::default();
        let hello = client_hello("www.shop.test");
        assert!(starts_tls(&hello));
        w.feed(Direction::Send, 100, 110, hello.len() as u32, &hello);
        // ServerHello + CCS + encrypted handshake in one read.
        let mut s = record(22, &[2; 90]);
        s.extend(record(20, &[1]));
        s.extend(record(23, &[0; 2000]));
        w.feed(Direction::Recv, 200, 210, s.len() as u32, &s);
        // Client CCS + Finished (encrypted), then the request.
        let mut c = record(20, &[1]);
        c.extend(record(23, &[0; 53]));
        w.feed(Direction::Send, 300, 305, c.len() as u32, &c);
        let req = record(23, &[0; 400]);
        w.feed(Direction::Send, 310, 312, req.len() as u32, &req);
        let resp = record(23, &[0; 5000]);
        // Only the first 100 bytes captured: the body is skipped by its length.
        w.feed(Direction::Recv, 400, 420, resp.len() as u32, &resp[..100]);
        let resp2 = record(23, &[0; 10]);
        w.feed(Direction::Recv, 430, 440, resp2.len() as u32, &resp2);
        assert_eq!(w.sni.as_deref(), Some("www.shop.test"));
        assert_eq!(w.alpn_offered, vec!["h2"]);
        assert_eq!(w.handshake(), Some((100, Some(300))));
        assert_eq!((w.app_send_ns, w.app_recv_start_ns, w.app_recv_end_ns), (Some(310), Some(400), Some(440)));
        assert_eq!(w.app_bytes_received, 5010);
    }

    /// Found by the `tls_wire` fuzz target: application data before the ClientHello ended the
    /// handshake before it started.
    #[test]
    fn application_data_before_the_hello_does_not_end_the_handshake() {
        let mut w = WireTls::default();
        let early = record(23, &[0; 20]);
        w.feed(Direction::Send, 60, 61, early.len() as u32, &early);
        let hello = client_hello("c.test");
        w.feed(Direction::Send, 110, 111, hello.len() as u32, &hello);
        assert_eq!(w.handshake(), Some((110, None)));
        let s = record(22, &[2; 90]);
        w.feed(Direction::Recv, 120, 121, s.len() as u32, &s);
        let req = record(23, &[0; 100]);
        w.feed(Direction::Send, 130, 131, req.len() as u32, &req);
        assert_eq!(w.handshake(), Some((110, Some(130))));
    }

    #[test]
    fn tls12_handshake_ends_at_the_first_request() {
        let mut w = WireTls::default();
        let hello = client_hello("a.test");
        w.feed(Direction::Send, 0, 1, hello.len() as u32, &hello);
        w.feed(Direction::Recv, 10, 11, 0, &[]);
        let s = record(22, &[2; 300]);
        w.feed(Direction::Recv, 20, 21, s.len() as u32, &s);
        let mut c = record(22, &[0; 70]);
        c.extend(record(20, &[1]));
        c.extend(record(22, &[0; 40]));
        w.feed(Direction::Send, 30, 31, c.len() as u32, &c);
        let mut f = record(20, &[1]);
        f.extend(record(22, &[0; 40]));
        w.feed(Direction::Recv, 40, 41, f.len() as u32, &f);
        let req = record(23, &[0; 100]);
        w.feed(Direction::Send, 50, 51, req.len() as u32, &req);
        assert_eq!(w.handshake(), Some((0, Some(50))));
        assert_eq!(w.app_send_ns, Some(50), "TLS 1.2: the first application record is the request");
    }

    /// OpenSSL reads each record's 5-byte header, then its body, with two read()s; the
    /// ServerHello is gathered across them (and across a body split in two).
    #[test]
    fn server_hello_read_header_then_body() {
        use crate::decode::tls::{cipher_suite_name, server_hello_tests::real_server_hello, version_name};
        let flight = real_server_hello();
        let expected = parse_server_hello(&flight).unwrap();
        let first_len = RECORD_HEADER_LEN + usize::from(u16::from_be_bytes([flight[3], flight[4]]));
        for split in [None, Some(7), Some(first_len - RECORD_HEADER_LEN - 1)] {
            let mut w = WireTls::default();
            let hello = client_hello("www.shop.test");
            w.feed(Direction::Send, 0, 1, hello.len() as u32, &hello);
            w.feed(Direction::Recv, 10, 11, 5, &flight[..5]);
            let body = &flight[5..first_len];
            match split {
                None => w.feed(Direction::Recv, 12, 13, body.len() as u32, body),
                Some(k) => {
                    w.feed(Direction::Recv, 12, 13, k as u32, &body[..k]);
                    w.feed(Direction::Recv, 14, 15, (body.len() - k) as u32, &body[k..]);
                }
            }
            // The rest of the flight (CCS, encrypted records) as one read.
            let rest = &flight[first_len..];
            w.feed(Direction::Recv, 20, 21, rest.len() as u32, rest);
            assert_eq!(w.server_version, Some(expected.version), "split {split:?}");
            assert_eq!(w.cipher_suite, Some(expected.cipher_suite), "split {split:?}");
            assert_eq!(version_name(expected.version), "TLSv1.3");
            assert!(cipher_suite_name(expected.cipher_suite).starts_with("TLS13_"));
            assert_eq!(w.server_first_ns, Some(11), "timing is the header's read");
        }
        // Header and part of the body in one call, the rest in the next.
        let mut w = WireTls::default();
        w.feed(Direction::Recv, 10, 11, 40, &flight[..40]);
        w.feed(Direction::Recv, 12, 13, (flight.len() - 40) as u32, &flight[40..]);
        assert_eq!(w.cipher_suite, Some(expected.cipher_suite));
        // A body past the capture: nothing is made up.
        let mut w = WireTls::default();
        w.feed(Direction::Recv, 10, 11, 5, &flight[..5]);
        w.feed(Direction::Recv, 12, 13, (first_len - 5) as u32, &flight[5..12]);
        assert_eq!((w.server_version, w.cipher_suite), (None, None));
        assert!(w.server_hello.is_none(), "given up, not held");
    }

    #[test]
    fn headers_split_between_calls_and_lost_sync() {
        let mut w = WireTls::default();
        let hello = client_hello("b.test");
        w.feed(Direction::Send, 0, 1, 3, &hello[..3]);
        w.feed(Direction::Send, 2, 3, (hello.len() - 3) as u32, &hello[3..]);
        assert_eq!(w.records[0][0], 1);
        // A header past the capture: the direction is lost, nothing panics.
        let big = record(23, &[0; 100]);
        let mut two = big.clone();
        two.extend(record(23, &[0; 10]));
        w.feed(Direction::Recv, 5, 6, two.len() as u32, &two[..50]);
        assert!(w.cursors[1].lost);
        w.feed(Direction::Recv, 7, 8, 10, &[0xff; 10]);
        // Garbage is not a record.
        let mut g = WireTls::default();
        g.feed(Direction::Send, 0, 1, 10, b"GET / HTTP");
        assert!(g.cursors[0].lost && g.hello_ns.is_none());
    }
}
