//! QUIC plaintext at the browsers' AEADs (issue 22, the capture side): Chromium and Firefox
//! load the lab's page over HTTP/3, traced like the other browser tests (the real probes in
//! this process, every event collected), and the `quic_plaintext` records are checked against
//! what the wire shows:
//!
//! - seal and open records arrived, from the process that sent the QUIC datagrams to the
//!   lab's server (the browser's network process);
//! - each record's additional data parses as a QUIC header (long or short) whose destination
//!   connection ID is one of the connection IDs the long-header packets on the wire carried,
//!   or one issued in a NEW_CONNECTION_ID frame of the captured plaintext (those are
//!   encrypted on the wire; Firefox's server moves to one after the handshake);
//! - the plaintext of the client's sealed 1-RTT packets parses as QUIC frames, one of which
//!   is a STREAM frame on stream 0 whose data starts with an HTTP/3 HEADERS frame (0x01);
//! - every record holds min(len, capture limit) bytes, and no two seals of one key use the
//!   same nonce (the packet number is in it).
//!
//! Plaintext is asserted on in memory, never printed.
use std::{
    collections::{BTreeSet, HashSet},
    time::{Duration, Instant},
};

use tracer::{
    decode::{
        Direction,
        quic::packet::{Header, split_datagram_lossy},
    },
    lab::{Http3, LabConfig},
    stream::events::{Event, EventBody},
};
use tracer_common::AeadLib;

use crate::{
    debian::GUI_QUIET_MS,
    harness::*,
    support::{
        browsers::{FIREFOX_HTTP3_PREFS, chromium_home, chromium_quic_cmd, firefox_cmd_with_prefs},
        lab_or_skip, temp_dir,
    },
};

fn h3_lab() -> LabConfig {
    LabConfig { http3: Http3::On, ..lab_config() }
}

/// The last frame type the walk did not know (diagnostics).
static UNKNOWN_FRAME: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A QUIC variable-length integer (RFC 9000 16) at `b[*at..]`.
fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let first = *b.get(*at)?;
    let n = 1usize << (first >> 6);
    let bytes = b.get(*at..*at + n)?;
    let mut v = u64::from(first & 0x3f);
    for x in &bytes[1..] {
        v = (v << 8) | u64::from(*x);
    }
    *at += n;
    Some(v)
}

/// The data of the first STREAM frame on stream `id` at offset 0 among a 1-RTT packet's
/// frames, walking the frames a client sends (PADDING, PING, ACK, CRYPTO, NEW_TOKEN, STREAM,
/// flow control, connection IDs, path, close, HANDSHAKE_DONE, DATAGRAM); None at the first
/// frame it does not know or that is cut.
fn stream_data(payload: &[u8], id: u64) -> Option<&[u8]> {
    scan_frames(payload, id, &mut Vec::new())
}

/// [`stream_data`], also collecting into `cids` the connection IDs of the NEW_CONNECTION_ID
/// frames walked.
fn scan_frames<'a>(payload: &'a [u8], id: u64, cids: &mut Vec<Vec<u8>>) -> Option<&'a [u8]> {
    let mut found = None;
    walk(payload, id, cids, &mut found);
    found
}

/// Whether `payload` parses as frames to its end.
fn parses_as_frames(payload: &[u8]) -> bool {
    !payload.is_empty() && walk(payload, u64::MAX, &mut Vec::new(), &mut None).is_some()
}

/// Walk the frames; Some when the whole payload was read.
fn walk<'a>(payload: &'a [u8], id: u64, cids: &mut Vec<Vec<u8>>, found: &mut Option<&'a [u8]>) -> Option<()> {
    let mut at = 0;
    while at < payload.len() {
        let ty = varint(payload, &mut at)?;
        match ty {
            0x00 | 0x01 | 0x1e => {}
            0x02 | 0x03 => {
                varint(payload, &mut at)?;
                varint(payload, &mut at)?;
                let ranges = varint(payload, &mut at)?;
                varint(payload, &mut at)?;
                for _ in 0..ranges.min(1024) * 2 {
                    varint(payload, &mut at)?;
                }
                if ty == 0x03 {
                    for _ in 0..3 {
                        varint(payload, &mut at)?;
                    }
                }
            }
            0x04 => (0..3).try_for_each(|_| varint(payload, &mut at).map(drop))?,
            0x05 => (0..2).try_for_each(|_| varint(payload, &mut at).map(drop))?,
            0x06 => {
                varint(payload, &mut at)?;
                at += varint(payload, &mut at)? as usize;
            }
            0x07 => at += varint(payload, &mut at)? as usize,
            0x08..=0x0f => {
                let stream = varint(payload, &mut at)?;
                let offset = if ty & 0x04 != 0 { varint(payload, &mut at)? } else { 0 };
                let len = if ty & 0x02 != 0 { varint(payload, &mut at)? as usize } else { payload.len() - at };
                let data = payload.get(at..at.checked_add(len)?)?;
                if stream == id && offset == 0 && found.is_none() {
                    *found = Some(data);
                }
                at += len;
            }
            0x10 | 0x12 | 0x13 | 0x14 | 0x16 | 0x17 | 0x19 => {
                varint(payload, &mut at)?;
            }
            0x11 | 0x15 => (0..2).try_for_each(|_| varint(payload, &mut at).map(drop))?,
            0x18 => {
                varint(payload, &mut at)?;
                varint(payload, &mut at)?;
                let n = *payload.get(at)? as usize;
                cids.push(payload.get(at + 1..at + 1 + n)?.to_vec());
                at += 1 + n + 16;
            }
            0x1a | 0x1b => at += 8,
            0x1c | 0x1d => {
                varint(payload, &mut at)?;
                if ty == 0x1c {
                    varint(payload, &mut at)?;
                }
                at += varint(payload, &mut at)? as usize;
            }
            0x30 => at = payload.len(),
            0x31 => at += varint(payload, &mut at)? as usize,
            // ACK_FREQUENCY and IMMEDIATE_ACK (RFC 9000 extension draft; neqo sends them).
            0xaf => (0..4).try_for_each(|_| varint(payload, &mut at).map(drop))?,
            0x1f => {}
            other => {
                UNKNOWN_FRAME.store(other, std::sync::atomic::Ordering::Relaxed);
                return None;
            }
        }
    }
    (at == payload.len()).then_some(())
}

/// Whether a request stream's first bytes are HTTP/3 frames whose first frame of a known type
/// is HEADERS (0x01): reserved (grease) types `0x1f * N + 0x21` and unknown ones before it are
/// skipped, as RFC 9114 9 lets a client send them.
fn starts_with_headers(data: &[u8]) -> bool {
    let mut at = 0;
    for _ in 0..4 {
        let (Some(ty), Some(len)) = (varint(data, &mut at), varint(data, &mut at)) else { return false };
        match ty {
            0x01 => return true,
            0x00 | 0x03..=0x0d => return false,
            _ => at += len as usize,
        }
    }
    false
}

/// A QUIC header in an AEAD's additional data: (long header, destination connection ID
/// candidates). A long header names its DCID; a short header's DCID length is not in it, so
/// every known ID that the bytes after the first byte start with is a candidate. The fixed bit
/// may be clear (RFC 9287: quinn, the lab's server, announces `grease_quic_bit`, and neqo then
/// clears it in about half its packets); the reserved bits may not.
fn dcid_matches(aad: &[u8], ids: &BTreeSet<Vec<u8>>) -> Result<(bool, Vec<u8>), String> {
    let first = *aad.first().ok_or("empty header")?;
    if first & if first & 0x80 != 0 { 0x0c } else { 0x18 } != 0 {
        return Err(format!("first byte {first:#04x} with reserved bits set"));
    }
    if first & 0x80 != 0 {
        let version = u32::from_be_bytes(aad.get(1..5).ok_or("long header cut before its version")?.try_into().unwrap());
        if version != 1 {
            return Err(format!("version {version:#x}"));
        }
        let n = *aad.get(5).ok_or("cut before the DCID length")? as usize;
        let dcid = aad.get(6..6 + n).ok_or("cut in the DCID")?.to_vec();
        return if ids.contains(&dcid) { Ok((true, dcid)) } else { Err(format!("long header DCID of {n} bytes not seen on the wire")) };
    }
    // The packet number (1-4 bytes) follows the DCID: the longest ID that fits and matches.
    ids.iter()
        .filter(|id| aad.len() > id.len() && aad.len() - 1 - id.len() <= 4 && aad[1..].starts_with(id))
        .max_by_key(|id| id.len())
        .map(|id| (false, id.clone()))
        .ok_or_else(|| format!("short header of {} bytes with no known DCID", aad.len()))
}

/// The connection IDs the long-header packets of `tree`'s QUIC datagrams carried (to any
/// server: Firefox also takes static.shop.test over HTTP/3, by its Alt-Svc), and the processes
/// that sent datagrams to `server`.
fn wire_ids(events: &[Event], tree: &HashSet<u32>, server: &str) -> (BTreeSet<Vec<u8>>, BTreeSet<u32>) {
    let mut ids = BTreeSet::new();
    let mut senders = BTreeSet::new();
    for e in events.iter().filter(|e| tree.contains(&e.tgid)) {
        let EventBody::QuicDatagram { direction, len, segment, peer, data, .. } = &e.body else { continue };
        if *direction == Direction::Send && peer.map(|p| p.to_string()).as_deref() == Some(server) {
            senders.insert(e.tgid);
        }
        for (_, d) in tracer::stream::events::quic_segments(*len, *segment, data) {
            for p in split_datagram_lossy(d, None).0 {
                if let Header::Long { dcid, scid, .. } = &p.header {
                    ids.insert(dcid.as_bytes().to_vec());
                    ids.insert(scid.as_bytes().to_vec());
                }
            }
        }
    }
    (ids, senders)
}

/// What the records of one run add up to.
#[derive(Debug, Default)]
struct Counts {
    seals: usize,
    opens: usize,
    seal_bytes: u64,
    open_bytes: u64,
    long_headers: usize,
    short_headers: usize,
    /// Client packets whose plaintext has stream 0's first bytes, an HTTP/3 HEADERS frame.
    request_headers: usize,
    /// Opens whose DCID is a client ID seen only in the client's own long-header records.
    opens_by_own_header: usize,
    /// 1-RTT records whose whole plaintext parses as QUIC frames.
    frames_parse: usize,
    /// Records whose header has the fixed bit clear (greased, RFC 9287), and of the
    /// `request_headers` packets.
    greased: usize,
    greased_request_headers: usize,
    /// Seals with a (context, nonce) seen before: the same packet sealed again, or a context
    /// freed and its address reused.
    nonce_repeats: usize,
}

/// The checks of the module documentation on the records of `lib` from `tree`.
fn check_plaintext(tag: &str, events: &[Event], pid: u32, lib: AeadLib, h3_requests: usize) -> Counts {
    let tree = tree_of(events, pid);
    let (ids, senders) = wire_ids(events, &tree, "10.77.0.3:443");
    assert!(!senders.is_empty(), "{tag}: no QUIC datagram to 10.77.0.3:443 from the browser's tree");
    assert!(!ids.is_empty(), "{tag}: no long-header packet on the wire");
    let cap = tracer::probes::ProbeConfig::default().tls_capture_bytes.min(tracer_common::QUIC_PLAINTEXT_MAX as u32);
    // The connection IDs each side issued in NEW_CONNECTION_ID frames (encrypted on the wire:
    // seen only in the plaintext): a peer may switch to one after the handshake.
    let mut issued = Vec::new();
    for e in events.iter().filter(|e| tree.contains(&e.tgid)) {
        if let EventBody::QuicPlaintext { data, .. } = &e.body {
            scan_frames(data, 0, &mut issued);
        }
    }
    // The source connection IDs of the records' own long headers (the client's, in its
    // Initial and Handshake seals; the server's, in its opens).
    let mut own = BTreeSet::new();
    for e in events.iter().filter(|e| tree.contains(&e.tgid)) {
        if let EventBody::QuicPlaintext { aad, .. } = &e.body
            && aad.first().is_some_and(|b| b & 0x80 != 0)
            && let Some(&n) = aad.get(5)
            && let Some(&m) = aad.get(6 + n as usize)
            && let Some(scid) = aad.get(7 + n as usize..7 + n as usize + m as usize)
        {
            own.insert(scid.to_vec());
        }
    }
    let wire = ids.len();
    let mut ids = ids;
    ids.extend(issued.iter().cloned());
    let mut c = Counts::default();
    let mut unmatched = Vec::new();
    let mut others = 0usize;
    let mut nonces: HashSet<(u64, Vec<u8>)> = HashSet::new();
    for e in events {
        let EventBody::QuicPlaintext { lib: l, direction, ctx, len, captured, aad_len, aad, nonce, data, .. } = &e.body else { continue };
        if !tree.contains(&e.tgid) {
            eprintln!("{tag}: a record from {}[{}] {direction:?} {len} bytes, header {aad_len}", e.comm, e.tgid);
            others += 1;
            continue;
        }
        assert_eq!(*l, Some(lib), "{tag}: a record of another library in the browser's tree");
        assert!(senders.contains(&e.tgid), "{tag}: a record from pid {} ({}), which sent no QUIC datagram (senders {senders:?})", e.tgid, e.comm);
        assert_eq!(*captured, (*len).min(cap), "{tag}: captured bytes of a {len}-byte packet");
        assert!(aad.len() as u32 == (*aad_len).min(tracer_common::QUIC_AAD_MAX as u32), "{tag}: header bytes {} of {aad_len}", aad.len());
        match dcid_matches(aad, &ids) {
            Ok((true, _)) => c.long_headers += 1,
            // A client's 1-RTT packet goes to an ID the server chose (quinn's are 8 bytes):
            // an empty match would prove nothing.
            Ok((false, id)) if id.is_empty() && *direction == Direction::Send => unmatched.push("a sealed short header with no server ID".into()),
            Ok((false, _)) => c.short_headers += 1,
            // Not on the wire's captured long headers nor issued in a captured frame: a
            // server's packet to a client ID that only the client's own long-header records
            // show. Nothing else: the 3-byte client IDs Firefox's opens went to when seals with
            // a greased fixed bit were dropped are in its NEW_CONNECTION_ID frames.
            Err(why) => match dcid_matches(aad, &own) {
                Ok((false, id)) if *direction == Direction::Recv && !id.is_empty() => c.opens_by_own_header += 1,
                _ => unmatched.push(format!("{why} ({direction:?}, header {aad:02x?}, ctx {ctx:#x})")),
            },
        }
        if aad[0] & 0x40 == 0 {
            c.greased += 1;
        }
        if aad[0] & 0x80 == 0 && *captured == *len && parses_as_frames(data) {
            c.frames_parse += 1;
        }
        match direction {
            Direction::Send => {
                c.seals += 1;
                c.seal_bytes += u64::from(*len);
                if aad[0] & 0x80 == 0 && stream_data(data, 0).is_some_and(starts_with_headers) {
                    c.request_headers += 1;
                    c.greased_request_headers += usize::from(aad[0] & 0x40 == 0);
                }
                assert_eq!(nonce.len(), 12, "{tag}: a seal's nonce");
                if !nonces.insert((*ctx, nonce.clone())) {
                    c.nonce_repeats += 1;
                }
            }
            Direction::Recv => {
                c.opens += 1;
                c.open_bytes += u64::from(*len);
            }
        }
    }
    eprintln!("{tag}: last unknown frame type {:#x}", UNKNOWN_FRAME.load(std::sync::atomic::Ordering::Relaxed));
    eprintln!("{tag}: {c:?}; {wire} connection IDs on the wire, {} issued in NEW_CONNECTION_ID frames; {others} records from other processes", issued.len());
    assert!(unmatched.is_empty(), "{tag}: {} of {} records' headers do not match the wire: {unmatched:?}", unmatched.len(), c.seals + c.opens);
    assert!(c.seals >= 2 && c.opens >= 2, "{tag}: seals and opens: {c:?}");
    assert!(c.short_headers > 0 && c.long_headers > 0, "{tag}: 1-RTT and handshake packets: {c:?}");
    // Firefox sometimes carries the document over TCP (the HTTPS record races): a request
    // stream is looked for when the lab served one over HTTP/3.
    eprintln!("{tag}: the lab served {h3_requests} request(s) over HTTP/3");
    if h3_requests > 0 {
        assert!(c.request_headers >= 1, "{tag}: no sealed packet starts stream 0 with an HTTP/3 HEADERS frame: {c:?}");
    }
    // Every 1-RTT packet's plaintext is QUIC frames (a seal taken for an open, or the other
    // way round, would be ciphertext here).
    assert_eq!(c.frames_parse, c.short_headers + c.opens_by_own_header, "{tag}: 1-RTT plaintexts that parse as frames: {c:?}");
    c
}

/// Chromium forced onto HTTP/3 for the page's origin (as `http3::chromium_http3_forced`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_quic_plaintext() {
    let tag = "chromium_quic_plaintext";
    let _timer = Timer(tag, Instant::now());
    let Some(lab) = lab_or_skip(tag, h3_lab()).await else { return };
    let tmp = temp_dir(&format!("browsers-{tag}"));
    let flags = ["--origin-to-force-quic-on=www.shop.test:443".to_string(), format!("--ignore-certificate-errors-spki-list={}", lab.leaf_spki_sha256())];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cmd = chromium_quic_cmd(&lab, &chromium_home(tmp.path(), &lab), &flags, "http://shop.test/");
    let run = Run { limit: Duration::from_secs(60), ..Run::default() };
    let (pid, events, _pages, _took, dom) = trace_client_until(tag, cmd, &run).await;
    assert!(dom.contains("Lab Shop"), "{tag}: chromium loaded the page");
    assert!(lab.quic_handshake_count() >= 1, "{tag}: the lab saw a QUIC handshake");
    let h3 = lab.http_requests().iter().filter(|r| r.version == "HTTP/3").count();
    assert!(h3 >= 1, "{tag}: the lab served the document over HTTP/3");
    check_plaintext(tag, &events, pid, AeadLib::BoringSsl, h3);
}

/// Firefox ESR with HTTP/3 (as `http3::firefox_http3`): neqo through NSS. Firefox ESR 153's
/// nss-rs is built with its `blapi` backend, which calls freebl's AES-GCM and
/// ChaCha20-Poly1305 through `FREEBL_GetVector`'s table (not `PK11_AEADOp`, not
/// `SSL_AeadEncrypt`), so the records come from the freebl probes.
///
/// The lab's quinn announces `grease_quic_bit` (RFC 9287), so neqo clears the fixed bit of
/// about half its packets, long headers included (9-19 records of 43-68 per load; the
/// request's HEADERS packet in 6 loads of 8): a capture that required the bit lost them, and
/// with them the NEW_CONNECTION_ID frames naming the client IDs the server's packets then went
/// to (the test passed 4 loads of 7 then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_quic_plaintext() {
    let tag = "firefox_quic_plaintext";
    let _timer = Timer(tag, Instant::now());
    let Some(lab) = lab_or_skip(tag, h3_lab()).await else { return };
    let tmp = temp_dir(&format!("browsers-{tag}"));
    let cmd = firefox_cmd_with_prefs(&lab, tmp.path(), "http://shop.test/", FIREFOX_HTTP3_PREFS);
    let run = Run { limit: Duration::from_secs(90), quiet_ms: Some(GUI_QUIET_MS), ..Run::default() };
    let (pid, events, _pages, _took, _) = trace_client_until(tag, cmd, &run).await;
    assert!(tmp.path().join("shot.png").exists(), "{tag}: firefox took its screenshot");
    assert!(lab.quic_handshake_count() >= 1, "{tag}: the lab saw a QUIC handshake");
    let h3 = lab.http_requests().iter().filter(|r| r.version == "HTTP/3").count();
    check_plaintext(tag, &events, pid, AeadLib::Nss, h3);
}

#[test]
fn frames_and_headers_of_synthetic_packets() {
    // PADDING, ACK(largest 3, delay 0, 0 ranges, first 0), STREAM(id 0, off, len) "\x01\x05..."
    let p = [0x00, 0x02, 0x03, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x03, 0x01, 0x05, 0xaa];
    assert_eq!(stream_data(&p, 0), Some(&[0x01, 0x05, 0xaa][..]));
    assert_eq!(stream_data(&p, 4), None);
    assert_eq!(stream_data(&[0x40], 0), None, "cut varint");
    let ids: BTreeSet<Vec<u8>> = [vec![], vec![1, 2, 3, 4, 5, 6, 7, 8]].into();
    assert_eq!(dcid_matches(&[0x41, 1, 2, 3, 4, 5, 6, 7, 8, 0x09], &ids), Ok((false, vec![1, 2, 3, 4, 5, 6, 7, 8])));
    assert_eq!(dcid_matches(&[0x41, 0x09], &ids), Ok((false, vec![])));
    assert_eq!(dcid_matches(&[0xc1, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0], &ids).map(|m| m.0), Ok(true));
    assert!(dcid_matches(&[0x17, 3, 3, 0, 10], &ids).is_err(), "TLS 1.3 record header");
    assert!(dcid_matches(&[0xc1, 0, 0, 0, 1, 2, 9, 9], &ids).is_err(), "unknown DCID");
    // HEADERS first, after a grease frame, or not at all (DATA first).
    assert!(starts_with_headers(&[0x01, 0x02, 0xd1, 0xd7]));
    assert!(starts_with_headers(&[0x21, 0x01, 0xff, 0x01, 0x00]));
    assert!(!starts_with_headers(&[0x00, 0x01, 0xff]));
    assert!(parses_as_frames(&p) && !parses_as_frames(&[0x0a, 0x00, 0x05]) && !parses_as_frames(&[]));
}
