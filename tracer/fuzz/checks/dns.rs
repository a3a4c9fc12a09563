//! DNS messages as the kernel captures them (UDP payload, or TCP with its length prefix):
//! `decode::dns::parse_dns` and everything the daemon does with a decoded message.
use tracer::decode::dns::parse_dns;

/// The target on one input (the fuzz target and the corpus replay test call it).
pub fn run(data: &[u8]) {
    for tcp in [false, true] {
        let Ok(msg) = parse_dns(data, tcp) else { continue };
        // A question takes at least 5 bytes and a record at least 11 after the 12-byte header:
        // what comes out is bounded by what went in.
        assert!(12 + msg.questions.len() * 5 + msg.answers.len() * 11 <= data.len());
        let chain = msg.cname_chain();
        assert!(chain.len() <= msg.answers.len() + 1, "a CNAME chain longer than the answers");
        assert!(msg.addresses().len() <= msg.answers.len());
        let line = msg.to_string();
        assert!(!line.contains(['\n', '\r']), "a printed DNS line spans lines: {line:?}");
        let json = serde_json::to_string(&msg).expect("a DnsMessage serialises");
        serde_json::from_str::<serde_json::Value>(&json).expect("its JSON parses");
    }
}

