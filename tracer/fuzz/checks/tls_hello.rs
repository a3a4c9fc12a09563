//! The TLS record header, ClientHello and ServerHello parsers (`decode::tls`).
use tracer::decode::tls::{
    is_grease, looks_like_tls_record, parse_client_hello, parse_record_header, parse_server_hello,
};

/// The target on one input (the fuzz target and the corpus replay test call it).
pub fn run(data: &[u8]) {
    if let Ok(h) = parse_record_header(data) {
        assert!((0x0300..=0x0304).contains(&h.version));
        assert!(h.length <= tracer::decode::tls::MAX_RECORD_LEN);
    }
    let _ = looks_like_tls_record(data);
    if let Ok(hello) = parse_client_hello(data) {
        // Everything reported comes from the input: its size bounds the lists.
        assert!(hello.alpn.len() <= data.len());
        assert!(hello.supported_versions.len() * 2 <= data.len());
        if let Some(sni) = &hello.sni {
            assert!(!sni.is_empty() && sni.len() <= 255, "SNI of {} bytes", sni.len());
            assert!(sni.bytes().all(|b| b.is_ascii_graphic()), "SNI not printable: {sni:?}");
        }
        // ALPN names reach logs and the database: printable ASCII only (the rest escaped).
        for proto in &hello.alpn {
            assert!(!proto.is_empty() && proto.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
        }
        let _ = hello.supported_versions.iter().filter(|v| is_grease(**v)).count();
        serde_json::to_string(&hello).expect("a ClientHello serialises");
    }
    let _ = parse_server_hello(data);
}

