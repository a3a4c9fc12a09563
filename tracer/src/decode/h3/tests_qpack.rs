//! QPACK: RFC 9204 Appendix B's examples byte for byte, then our own cases (Required Insert
//! Count wrap-around, Huffman, every field line form, hostile input).

use super::qpack::{Decoder, QpackError, Section, required_insert_count};
use super::qpack_static::STATIC_TABLE;
use super::test_util::*;
use crate::decode::http::h2::Decoded;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn decoded(d: &mut Decoder, block: &[u8]) -> Decoded {
    match d.section(block) {
        Section::Decoded(x) => x,
        other => panic!("not decoded: {other:?}"),
    }
}

/// Every field of a section in order, pseudo-headers first as `Decoded` keeps them.
fn all(x: &Decoded) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for (n, f) in [(":method", &x.method), (":scheme", &x.scheme), (":authority", &x.authority), (":path", &x.path), (":status", &x.status)] {
        if let Some(f) = f {
            v.push((n.to_string(), f.clone()));
        }
    }
    v.extend(x.fields.fields.iter().cloned());
    v
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

fn entry(d: &Decoder, abs: u64) -> (String, String) {
    let (n, v) = d.table.get(abs).unwrap();
    (String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned())
}

#[test]
fn rfc9204_b1_literal_field_line_with_name_reference() {
    let mut d = Decoder::default();
    let x = decoded(&mut d, &hex("0000 510b 2f69 6e64 6578 2e68 746d 6c"));
    assert_eq!(all(&x), pairs(&[(":path", "/index.html")]));
    assert_eq!(d.table.size(), 0);
}

#[test]
fn rfc9204_b2_to_b5_dynamic_table() {
    let mut d = Decoder::default();
    d.set_max_capacity(220);
    // B.2: Set Dynamic Table Capacity=220, two inserts with static name references.
    let e = hex("3fbd01 c00f 7777 772e 6578 616d 706c 652e 636f 6d c10c 2f73 616d 706c 652f 7061 7468");
    assert_eq!(d.encoder_bytes(&e), None);
    assert_eq!((d.table.len(), d.table.size(), d.table.inserts()), (2, 106, 2));
    assert_eq!(entry(&d, 0), (":authority".into(), "www.example.com".into()));
    assert_eq!(entry(&d, 1), (":path".into(), "/sample/path".into()));
    // Stream 4: Required Insert Count 2, Base 0; two post-base indexed field lines.
    let x = decoded(&mut d, &hex("0381 10 11"));
    assert_eq!(all(&x), pairs(&[(":authority", "www.example.com"), (":path", "/sample/path")]));

    // B.3: Insert With Literal Name custom-key=custom-value.
    assert_eq!(d.encoder_bytes(&hex("4a63 7573 746f 6d2d 6b65 790c 6375 7374 6f6d 2d76 616c 7565")), None);
    assert_eq!((d.table.len(), d.table.size()), (3, 160));

    // B.4: Duplicate (relative 2 = entry 0), then stream 8: RIC 4, Base 4: dynamic relative 0
    // (entry 3), static 1, dynamic relative 1 (entry 2).
    assert_eq!(d.encoder_bytes(&hex("02")), None);
    assert_eq!((d.table.len(), d.table.size(), d.table.inserts()), (4, 217, 4));
    assert_eq!(entry(&d, 3), (":authority".into(), "www.example.com".into()));
    let x = decoded(&mut d, &hex("0500 80 c1 81"));
    assert_eq!(all(&x), pairs(&[(":authority", "www.example.com"), (":path", "/"), ("custom-key", "custom-value")]));

    // B.5: Insert With Name Reference to dynamic relative 1 (entry 2): custom-key=custom-value2,
    // which evicts entry 0.
    assert_eq!(d.encoder_bytes(&hex("810d 6375 7374 6f6d 2d76 616c 7565 32")), None);
    assert_eq!((d.table.len(), d.table.size(), d.table.inserts()), (4, 215, 5));
    assert_eq!(entry(&d, 4), ("custom-key".into(), "custom-value2".into()));
    assert!(matches!(d.table.get(0), Err(QpackError::DynamicIndex { abs: 0, first: 1, end: 5 })));
    // A section that still names entry 0 (RIC 1 is ambiguous now, so use an explicit form:
    // RIC 5 (encoded 5 % 12 + 1 = 6), Base 5, relative index 4 = entry 0) fails, never guesses.
    assert!(matches!(d.section(&hex("0600 84")), Section::Failed(QpackError::DynamicIndex { abs: 0, .. })));
}

#[test]
fn required_insert_count_wraps_as_rfc9204_4_5_1_1_says() {
    // MaxEntries 6 (capacity 220): FullRange 12.
    assert_eq!(required_insert_count(0, 6, 0), Ok(0));
    assert_eq!(required_insert_count(3, 6, 2), Ok(2));
    // 30 inserts received; the encoder's count 31 encodes as 31 % 12 + 1 = 8.
    assert_eq!(required_insert_count(8, 6, 30), Ok(31));
    assert_eq!(required_insert_count(7, 6, 30), Ok(30));
    // 25 % 12 + 1 = 2, received 30: within MaxEntries below.
    assert_eq!(required_insert_count(2, 6, 30), Ok(25));
    assert!(required_insert_count(13, 6, 30).is_err(), "larger than FullRange");
    assert!(required_insert_count(1, 0, 0).is_err(), "no dynamic table");
    assert!(required_insert_count(12, 6, 0).is_err(), "more than MaxEntries ahead of an empty table");
    assert!(required_insert_count(1, u64::MAX, 0).is_err());
}

#[test]
fn huffman_strings_and_every_field_line_form() {
    let mut d = Decoder::default();
    d.set_max_capacity(4096);
    // RFC 7541 C.4.1's Huffman code of "www.example.com" as an inserted value (H bit set).
    let huff = hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff");
    let mut e = set_capacity(4096);
    e.extend(qint(0xc0, 6, AUTHORITY));
    e.extend(qint(0x80, 7, huff.len() as u64));
    e.extend(&huff);
    e.extend(insert_literal("x-a", "1"));
    e.extend(insert_dynamic_name(0, "2")); // x-a again
    e.extend(duplicate(2)); // entry 0
    assert_eq!(d.encoder_bytes(&e), None);
    assert_eq!(entry(&d, 0), (":authority".into(), "www.example.com".into()));
    assert_eq!(entry(&d, 2), ("x-a".into(), "2".into()));
    assert_eq!(entry(&d, 3), (":authority".into(), "www.example.com".into()));
    // RIC 4 (encoded 5), Base 2 (sign, delta 1): relative 0 = entry 1, post-base 0/1 = entries 2/3.
    let mut b = prefix(5, true, 1);
    b.extend(indexed_static(GET));
    b.extend(indexed_dynamic(0));
    b.extend(indexed_post_base(1));
    b.extend(literal_post_base_name(0, "3"));
    b.extend(literal_dynamic_name(1, "/p"));
    // A literal name, Huffman-coded value ("no-cache" is a8eb 1064 9cbf in RFC 7541 C.4.2).
    b.extend(qstr(0x20, 3, "cache-control"));
    let nc = hex("a8eb 1064 9cbf");
    b.extend(qint(0x80, 7, nc.len() as u64));
    b.extend(&nc);
    let x = decoded(&mut d, &b);
    assert_eq!(x.method.as_deref(), Some("GET"));
    assert_eq!(x.authority.as_deref(), Some("www.example.com"));
    assert_eq!(x.fields.fields, pairs(&[("x-a", "1"), ("x-a", "3"), ("cache-control", "no-cache")]));
    // relative 1 from Base 2 is entry 0, :authority: only the first :authority counts, the
    // literal value "/p" is not kept as the authority.
    assert_eq!(STATIC_TABLE.len(), 99);
    assert_eq!(STATIC_TABLE[98], (&b"x-frame-options"[..], &b"sameorigin"[..]));
}

#[test]
fn hostile_sections_and_instructions_fail_with_a_reason() {
    let mut d = Decoder::default();
    d.set_max_capacity(100);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "ends inside the Required Insert Count"),
        (hex("00"), "ends inside the Delta Base"),
        (hex("0000 ff"), "ends inside"),
        (hex("0000 ff ff ff ff ff ff ff ff ff ff ff 01"), "too large"),
        (hex("0000 ff 45"), "static table index"),
        (hex("0000 5f 7f 05 61"), "ends inside the field line value"),
        (hex("0000 2f ff 00"), "ends inside"),
        (hex("0000 5183 ffff ff"), "invalid Huffman"),
        (hex("0000 80"), "before entry 0"),
        (hex("0000 10"), "at or past the Required Insert Count"),
        (hex("09 00"), "Required Insert Count encoded as 9 is invalid"),
    ];
    for (b, want) in cases {
        match d.section(&b) {
            Section::Failed(e) => assert!(e.to_string().contains(want), "{b:02x?}: {e} (wanted {want})"),
            other => panic!("{b:02x?} gave {other:?}"),
        }
    }
    // RIC 1 of a table with no entry yet: blocked, not failed.
    assert!(matches!(d.section(&hex("02 00 80")), Section::Blocked));
    // A capacity above the peer's maximum stops the encoder stream.
    let e = d.encoder_bytes(&set_capacity(200)).expect("an error");
    assert_eq!(e, QpackError::Capacity { capacity: 200, max: 100 });
    assert_eq!(d.encoder_bytes(&insert_literal("a", "b")), None, "nothing is read after it");
    assert_eq!(d.table.inserts(), 0);
    // An entry larger than the capacity.
    let mut d = Decoder::default();
    d.set_max_capacity(64);
    let e = d.encoder_bytes(&[set_capacity(40), insert_literal("name", "value")].concat());
    assert_eq!(e, Some(QpackError::EntryTooLarge { size: 41, capacity: 40 }));
}

#[test]
fn encoder_instructions_split_anywhere_give_the_same_table() {
    let stream = [
        set_capacity(300),
        insert_literal("x-one", "1"),
        insert_static_name(STATUS_200, "201"),
        insert_dynamic_name(1, "one"),
        duplicate(0),
    ]
    .concat();
    for cut in 0..=stream.len() {
        let mut d = Decoder::default();
        d.set_max_capacity(300);
        assert_eq!(d.encoder_bytes(&stream[..cut]), None);
        assert_eq!(d.encoder_bytes(&stream[cut..]), None);
        assert_eq!(d.table.inserts(), 4, "cut at {cut}");
        assert_eq!(entry(&d, 2), ("x-one".into(), "one".into()));
        assert_eq!(entry(&d, 3), entry(&d, 2));
        assert_eq!(entry(&d, 1), (":status".into(), "201".into()));
    }
}

#[test]
fn a_lost_encoder_stream_keeps_the_entries_before_it() {
    let mut d = Decoder::default();
    d.set_max_capacity(320); // MaxEntries 10
    assert_eq!(d.encoder_bytes(&[set_capacity(320), insert_literal("x-a", "1")].concat()), None);
    d.lost();
    d.high = 15; // 9 bytes read, 6 after the loss: at most 6 entries unseen
    // RIC 1, Base 1: entry 0 is still known and right.
    let x = decoded(&mut d, &[prefix(2, false, 0), indexed_dynamic(0)].concat());
    assert_eq!(x.fields.fields, pairs(&[("x-a", "1")]));
    // RIC 2 needs an entry inserted after the loss.
    assert!(matches!(d.section(&[prefix(3, false, 0), indexed_dynamic(0)].concat()), Section::Failed(QpackError::EncoderLost(_))));
    // With more encoder bytes after the loss than MaxEntries, RIC 1 is ambiguous: it fails.
    d.high = 1000;
    assert!(matches!(d.section(&[prefix(2, false, 0), indexed_dynamic(0)].concat()), Section::Failed(QpackError::EncoderLost(_))));
    // The static table alone still decodes.
    let x = decoded(&mut d, &[prefix(0, false, 0), indexed_static(GET)].concat());
    assert_eq!(x.method.as_deref(), Some("GET"));
}
