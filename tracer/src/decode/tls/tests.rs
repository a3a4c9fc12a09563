//! The TLS record and hello parsers' tests (a real ServerHello is shared with other modules'
//! tests through `server_hello_tests`).
use super::*;

#[cfg(test)]
pub(crate) mod server_hello_tests {
    use super::*;

    /// A real ServerHello, from a rustls client and server talking in memory.
    pub(crate) fn real_server_hello() -> Vec<u8> {
        use std::sync::Arc;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ck = rcgen::generate_simple_self_signed(vec!["shop.test".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ck.cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut c = rustls::ClientConnection::new(Arc::new(client), "shop.test".try_into().unwrap()).unwrap();
        let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        let mut hello = Vec::new();
        c.write_tls(&mut hello).unwrap();
        s.read_tls(&mut &hello[..]).unwrap();
        s.process_new_packets().unwrap();
        let mut out = Vec::new();
        s.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_version_and_cipher_from_a_real_server_hello() {
        let b = real_server_hello();
        let sh = parse_server_hello(&b).unwrap();
        assert_eq!(version_name(sh.version), "TLSv1.3");
        assert!(cipher_suite_name(sh.cipher_suite).starts_with("TLS13_"), "{}", cipher_suite_name(sh.cipher_suite));
        // Every truncation is an error, never a panic or a wrong answer.
        for cut in 0..b.len().min(200) {
            if let Ok(x) = parse_server_hello(&b[..cut]) {
                assert_eq!(x, sh, "cut {cut}");
            }
        }
        // A ClientHello is not a ServerHello.
        let mut not = b.clone();
        not[5] = 1;
        assert!(parse_server_hello(&not).is_err());
        assert_eq!(cipher_suite_name(0xffff), "0xffff");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The first flight of a real rustls client: one record with the ClientHello.
    fn rustls_client_hello() -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let name = rustls::pki_types::ServerName::try_from("shop.test").expect("valid name");
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).expect("write to a Vec");
        }
        out
    }

    fn ext(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut v = ty.to_be_bytes().to_vec();
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn sni_ext(host: &[u8]) -> Vec<u8> {
        let mut entry = vec![SNI_HOST_NAME];
        entry.extend_from_slice(&(host.len() as u16).to_be_bytes());
        entry.extend_from_slice(host);
        let mut data = (entry.len() as u16).to_be_bytes().to_vec();
        data.extend(entry);
        ext(EXT_SERVER_NAME, &data)
    }

    /// ClientHello body (after the 4-byte handshake header); `exts` None = no extensions block.
    fn hello_body(exts: Option<&[u8]>) -> Vec<u8> {
        let mut b = vec![0x03, 0x03];
        b.extend([0x11; 32]); // random
        b.push(0); // session id
        b.extend([0x00, 0x04, 0x13, 0x01, 0xc0, 0x2f]); // two cipher suites
        b.extend([0x01, 0x00]); // null compression
        if let Some(e) = exts {
            b.extend_from_slice(&(e.len() as u16).to_be_bytes());
            b.extend_from_slice(e);
        }
        b
    }

    fn handshake(ty: u8, body: &[u8]) -> Vec<u8> {
        let len = body.len() as u32;
        let mut h = vec![ty, (len >> 16) as u8, (len >> 8) as u8, len as u8];
        h.extend_from_slice(body);
        h
    }

    fn record(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![ty, 0x03, 0x01];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    use crate::test_rng::Rng as Prng;

    #[test]
    fn record_headers() {
        let h = parse_record_header(&[22, 3, 1, 0x02, 0x00, 0xaa]).unwrap();
        assert_eq!(
            h,
            RecordHeader {
                content_type: ContentType::Handshake,
                version: 0x0301,
                length: 512
            }
        );
        for (b, ct) in [
            (20, ContentType::ChangeCipherSpec),
            (21, ContentType::Alert),
            (22, ContentType::Handshake),
            (23, ContentType::ApplicationData),
            (24, ContentType::Heartbeat),
            (99, ContentType::Unknown(99)),
        ] {
            assert_eq!(
                parse_record_header(&[b, 3, 3, 0, 1]).unwrap().content_type,
                ct
            );
            assert_eq!(ct.as_u8(), b);
        }
        assert_eq!(
            parse_record_header(&[23, 3, 0, 0, 1]).unwrap().version,
            0x0300
        );
        assert_eq!(
            parse_record_header(&[23, 3, 4, 0, 1]).unwrap().version,
            0x0304
        );
        assert_eq!(
            parse_record_header(&[23, 2, 0, 0, 1]),
            Err(TlsError::UnknownVersion(0x0200))
        );
        assert_eq!(
            parse_record_header(&[23, 3, 5, 0, 1]),
            Err(TlsError::UnknownVersion(0x0305))
        );
        assert_eq!(
            parse_record_header(&[23, 3, 3, 0x48, 0x00]).unwrap().length,
            18432
        );
        assert_eq!(
            parse_record_header(&[23, 3, 3, 0x48, 0x01]),
            Err(TlsError::RecordTooLong(18433))
        );
        assert_eq!(
            parse_record_header(&[23, 3, 3, 0xff, 0xff]),
            Err(TlsError::RecordTooLong(65535))
        );
        for n in 0..5 {
            assert_eq!(
                parse_record_header(&[23, 3, 3, 0, 1][..n]),
                Err(TlsError::Truncated {
                    what: "record header",
                    got: n,
                    needed: 5
                })
            );
        }
        let msg = TlsError::UnknownVersion(0x0200).to_string();
        assert!(msg.contains("0x0200"), "{msg}");
    }

    #[test]
    fn looks_like_tls() {
        assert!(looks_like_tls_record(&rustls_client_hello()));
        assert!(looks_like_tls_record(&[23, 3, 3, 0, 40]));
        assert!(!looks_like_tls_record(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_tls_record(b"PRI * HTTP/2.0\r\n"));
        assert!(!looks_like_tls_record(&[]));
        assert!(!looks_like_tls_record(&[22, 3, 1]));
        assert!(
            !looks_like_tls_record(&[99, 3, 3, 0, 1]),
            "unknown content type"
        );
        assert!(!looks_like_tls_record(&[23, 3, 3, 0, 0]), "empty record");
    }

    #[test]
    fn real_rustls_client_hello() {
        let bytes = rustls_client_hello();
        let header = parse_record_header(&bytes).unwrap();
        assert_eq!(header.content_type, ContentType::Handshake);
        assert!(
            matches!(header.version, 0x0301 | 0x0303),
            "record version {:#06x}",
            header.version
        );
        assert_eq!(
            usize::from(header.length) + RECORD_HEADER_LEN,
            bytes.len(),
            "one record"
        );

        let hello = parse_client_hello(&bytes).unwrap();
        assert_eq!(hello.sni.as_deref(), Some("shop.test"));
        assert_eq!(hello.alpn, vec!["h2".to_string(), "http/1.1".to_string()]);
        assert_eq!(hello.legacy_version, 0x0303);
        assert_eq!(hello.supported_versions, vec![0x0304, 0x0303]);

        let json = serde_json::to_value(&hello).unwrap();
        assert_eq!(json["sni"], "shop.test");
        assert_eq!(json["alpn"][1], "http/1.1");
    }

    #[test]
    fn every_truncation_of_a_real_client_hello() {
        let bytes = rustls_client_hello();
        for n in 0..bytes.len() {
            let r = parse_client_hello(&bytes[..n]);
            assert!(
                matches!(r, Err(TlsError::Truncated { .. })),
                "cut at {n} of {}: {r:?}",
                bytes.len()
            );
        }
        assert!(parse_client_hello(&bytes).is_ok());
        // Bytes after the record (e.g. the next one) do not matter.
        let mut more = bytes.clone();
        more.extend_from_slice(&[23, 3, 3, 0, 2, 0xde, 0xad]);
        assert_eq!(
            parse_client_hello(&more).unwrap(),
            parse_client_hello(&bytes).unwrap()
        );
    }

    #[test]
    fn lying_length_fields() {
        let bytes = rustls_client_hello();
        let rec_len = u16::from_be_bytes([bytes[3], bytes[4]]);
        let hs_len =
            usize::from(bytes[6]) << 16 | usize::from(bytes[7]) << 8 | usize::from(bytes[8]);

        // Record longer than the data.
        let mut b = bytes.clone();
        b[3..5].copy_from_slice(&(rec_len + 1).to_be_bytes());
        assert_eq!(
            parse_client_hello(&b),
            Err(TlsError::Truncated {
                what: "record",
                got: bytes.len() - 5,
                needed: bytes.len() - 4
            })
        );

        // Record shorter than the handshake message: the rest would be in a next record.
        let mut b = bytes.clone();
        b[3..5].copy_from_slice(&(rec_len - 1).to_be_bytes());
        assert!(matches!(
            parse_client_hello(&b),
            Err(TlsError::Truncated { .. })
        ));

        // Handshake message longer than what exists.
        let mut b = bytes.clone();
        b[8] = b[8].wrapping_add(1);
        if b[8] == 0 {
            b[7] += 1;
        }
        assert_eq!(
            parse_client_hello(&b),
            Err(TlsError::Truncated {
                what: "handshake message",
                got: hs_len + 4,
                needed: hs_len + 5
            })
        );

        // Handshake message shorter than its content: the extensions overrun it.
        let mut b = bytes.clone();
        let shorter = hs_len - 3;
        b[6..9].copy_from_slice(&[(shorter >> 16) as u8, (shorter >> 8) as u8, shorter as u8]);
        assert!(matches!(
            parse_client_hello(&b),
            Err(TlsError::Malformed(_))
        ));

        // A huge handshake length.
        let mut b = bytes.clone();
        b[6..9].copy_from_slice(&[0xff, 0xff, 0xff]);
        assert!(matches!(
            parse_client_hello(&b),
            Err(TlsError::Truncated {
                what: "handshake message",
                needed: 0x1000003,
                ..
            })
        ));
    }

    #[test]
    fn lying_inner_lengths_are_malformed() {
        let good = sni_ext(b"shop.test");
        assert_eq!(
            parse_client_hello(&record(22, &handshake(1, &hello_body(Some(&good)))))
                .unwrap()
                .sni
                .as_deref(),
            Some("shop.test")
        );
        // Extensions block longer / shorter than the message.
        let mut body = hello_body(Some(&good));
        let at = body.len() - good.len() - 2;
        body[at + 1] += 1;
        assert!(matches!(
            parse_client_hello(&record(22, &handshake(1, &body))),
            Err(TlsError::Malformed(_))
        ));
        body[at + 1] -= 2;
        let e = parse_client_hello(&record(22, &handshake(1, &body))).unwrap_err();
        assert!(matches!(e, TlsError::Malformed(_)), "{e}");
        // Host name length larger than its list.
        let mut bad = good.clone();
        bad[8] += 1;
        let e =
            parse_client_hello(&record(22, &handshake(1, &hello_body(Some(&bad))))).unwrap_err();
        assert!(e.to_string().contains("server_name"), "{e}");
        // Session id over 32 bytes.
        let mut body = hello_body(None);
        body[34] = 33;
        assert!(matches!(
            parse_client_hello(&record(22, &handshake(1, &body))),
            Err(TlsError::Malformed(_))
        ));
        // Odd cipher suites length.
        let mut body = hello_body(None);
        body[36] = 3;
        assert!(matches!(
            parse_client_hello(&record(22, &handshake(1, &body))),
            Err(TlsError::Malformed(_))
        ));
    }

    #[test]
    fn hand_built_hellos() {
        // No extensions at all (TLS 1.2 style).
        let h = parse_client_hello(&record(22, &handshake(1, &hello_body(None)))).unwrap();
        assert_eq!(
            h,
            ClientHello {
                legacy_version: 0x0303,
                ..ClientHello::default()
            }
        );

        // GREASE and odd ALPN bytes are kept (escaped), unknown extensions skipped.
        let mut exts = ext(0x0a0a, &[]);
        exts.extend(sni_ext(b"www.shop.test"));
        exts.extend(ext(EXT_ALPN, &[0, 6, 2, b'h', b'2', 2, 0x01, b'z']));
        exts.extend(ext(
            EXT_SUPPORTED_VERSIONS,
            &[6, 0x3a, 0x3a, 0x03, 0x04, 0x03, 0x03],
        ));
        let h = parse_client_hello(&record(22, &handshake(1, &hello_body(Some(&exts))))).unwrap();
        assert_eq!(h.sni.as_deref(), Some("www.shop.test"));
        assert_eq!(h.alpn, vec!["h2".to_string(), "\\x01z".to_string()]);
        assert_eq!(h.supported_versions, vec![0x3a3a, 0x0304, 0x0303]);
        assert!(is_grease(h.supported_versions[0]));
        assert!(!is_grease(0x0304) && !is_grease(0x0a1a) && is_grease(0xfafa));

        // Duplicate extension.
        let mut dup = sni_ext(b"a.test");
        dup.extend(sni_ext(b"b.test"));
        let e =
            parse_client_hello(&record(22, &handshake(1, &hello_body(Some(&dup))))).unwrap_err();
        assert!(e.to_string().contains("duplicate extension 0"), "{e}");

        // A control byte in the SNI.
        let e = parse_client_hello(&record(
            22,
            &handshake(1, &hello_body(Some(&sni_ext(b"a\nb")))),
        ))
        .unwrap_err();
        assert!(
            matches!(e, TlsError::Malformed(ref m) if m.contains("a\\x0ab")),
            "{e}"
        );
    }

    #[test]
    fn hello_split_over_two_records() {
        let bytes = rustls_client_hello();
        let hs = &bytes[5..];
        for split in [1, 3, 4, 50, hs.len() - 1] {
            let mut two = record(22, &hs[..split]);
            two.extend(record(22, &hs[split..]));
            assert_eq!(
                parse_client_hello(&two).unwrap(),
                parse_client_hello(&bytes).unwrap(),
                "split {split}"
            );
            for n in 0..two.len() {
                assert!(
                    matches!(
                        parse_client_hello(&two[..n]),
                        Err(TlsError::Truncated { .. })
                    ),
                    "split {split} cut {n}"
                );
            }
        }
        // The second record must be a handshake record too.
        let mut mixed = record(22, &hs[..10]);
        mixed.extend(record(23, &hs[10..]));
        assert_eq!(
            parse_client_hello(&mixed),
            Err(TlsError::NotHandshake(ContentType::ApplicationData))
        );
    }

    #[test]
    fn not_a_client_hello() {
        assert_eq!(
            parse_client_hello(&record(23, &[1, 2, 3])),
            Err(TlsError::NotHandshake(ContentType::ApplicationData))
        );
        assert_eq!(
            parse_client_hello(&record(22, &handshake(2, &hello_body(None)))),
            Err(TlsError::NotClientHello(2))
        );
        assert!(matches!(
            parse_client_hello(&record(22, &[])),
            Err(TlsError::Malformed(_))
        ));
        assert!(matches!(
            parse_client_hello(&[]),
            Err(TlsError::Truncated { got: 0, .. })
        ));
        assert!(matches!(
            parse_client_hello(&[22]),
            Err(TlsError::Truncated { got: 1, .. })
        ));
        assert!(matches!(
            parse_client_hello(b"GET / HTTP/1.1\r\n"),
            Err(TlsError::UnknownVersion(_))
        ));
        let e = TlsError::NotHandshake(ContentType::Alert).to_string();
        assert!(e.contains("Alert(21)"), "{e}");
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        let mut rng = Prng(0xdead_beef);
        let real = rustls_client_hello();
        let mut ok = 0;
        for i in 0..30_000 {
            let buf: Vec<u8> = match i % 3 {
                0 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
                1 => {
                    // A plausible record and handshake header over random bytes.
                    let n = rng.below(300);
                    let mut b = vec![
                        22,
                        3,
                        1,
                        (n >> 8) as u8,
                        n as u8,
                        1,
                        0,
                        (n >> 8) as u8,
                        n as u8,
                    ];
                    b.extend((0..n).map(|_| rng.next() as u8));
                    b
                }
                _ => {
                    let mut b = real.clone();
                    for _ in 0..1 + rng.below(3) {
                        let at = rng.below(b.len());
                        b[at] = rng.next() as u8;
                    }
                    b
                }
            };
            let _ = looks_like_tls_record(&buf);
            let _ = parse_record_header(&buf);
            match parse_client_hello(&buf) {
                Ok(h) => {
                    ok += 1;
                    if let Some(sni) = &h.sni {
                        assert!(sni.bytes().all(|c| c.is_ascii_graphic()), "{sni:?}");
                    }
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
        assert!(ok > 0, "some mutated hellos still parse");
    }
}
