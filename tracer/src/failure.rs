//! A failure, typed once: the phase of loading a resource that failed, Chromium's net error
//! code for it, and what happened in words. The reference fetcher ([`crate::fetch`]) and the
//! stitcher ([`crate::stitch`]) make them; the history stores them; metrics and OTLP label
//! with their phase and code. A leaf: it knows no pipeline stage.
//!
//! Two stored forms, each kept as it has always been written:
//! - The fetcher's (its page load JSON, `baselines.result_json`, its HAR's `_error`): an object
//!   `{"phase", "code", "reason"}`, serde's form of [`Failure`] (`reason` is [`Failure::detail`]).
//! - The stitcher's (`page_loads.error`, `requests.error`, `dns_lookups.error`, HAR `_error`,
//!   `tracer show`, the API's JSON of a traced page load): the text form, `CODE` or
//!   `CODE (detail)` ([`Failure::text`], read back by [`Failure::from_text`]).
//!
//! (`connections.error` is not one: it is what the kernel said of the connect, `ECONNREFUSED`,
//! or the code of the connection's failed handshake, a plain string.)
//!
//! The text form has no room for the phase. A code implies one ([`Code::phase`]: a lookup's
//! codes dns, a connect's connect, a handshake's tls, `ERR_EMPTY_RESPONSE` wait, a body cut
//! short receive); a failure in another phase (a response that never came on a connection
//! whose set-up never finished is a connect failure) keeps it in one field added beside the
//! text in a traced page load's JSON (`detail_json`, and so the API's page load): the
//! optional `"error_phase"`, written only then ([`stored`]). This addition is the only
//! change to stored JSON; rows written before it read back with their code's phase.
//!
//! A code name not listed here is a [`Code::Other`], kept as written; so are the HTTP
//! decoder's reasons, which stand where a code would (`request not captured`; `response
//! header block not decodable (HPACK)`: code and detail, like any text). A text whose ` (`
//! is not closed at its end is all code. Every text reads back as written.
use serde::{Deserialize, Deserializer, Serialize, Serializer, ser::SerializeMap};

/// A phase of loading one resource, in the order a browser goes through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for a connection (all of this origin's connections busy, or the first
    /// connection still being set up).
    Blocked,
    Dns,
    Connect,
    Tls,
    /// Writing the request.
    Send,
    /// Waiting for the response head (server processing + one round trip).
    Wait,
    /// Reading the response body.
    Receive,
    /// Following a Location header.
    Redirect,
}

impl Phase {
    /// The phases an entry's timings can hold, in the order they happen (HAR's order);
    /// `Redirect` is not one.
    pub const TIMED: [Phase; 7] = [
        Phase::Blocked,
        Phase::Dns,
        Phase::Connect,
        Phase::Tls,
        Phase::Send,
        Phase::Wait,
        Phase::Receive,
    ];

    /// Every phase.
    pub const ALL: [Phase; 8] = [
        Phase::Blocked,
        Phase::Dns,
        Phase::Connect,
        Phase::Tls,
        Phase::Send,
        Phase::Wait,
        Phase::Receive,
        Phase::Redirect,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Phase::Blocked => "blocked",
            Phase::Dns => "dns",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Send => "send",
            Phase::Wait => "wait",
            Phase::Receive => "receive",
            Phase::Redirect => "redirect",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The codes, each with its Chromium name, written once.
macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Chromium's net error name for a failure (`ERR_NAME_NOT_RESOLVED`, ...).
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
            /// A code not listed here, or a text that is not a code (the HTTP decoder's
            /// reasons): kept as written.
            Other(String),
        }

        impl Code {
            /// Every listed code (not [`Code::Other`]).
            pub const LISTED: &'static [Code] = &[$(Code::$variant,)*];

            /// The name as Chromium writes it (an `Other` as it was read).
            pub fn name(&self) -> &str {
                match self {
                    $(Code::$variant => $name,)*
                    Code::Other(name) => name,
                }
            }

            /// The code named `name`: a listed one, else `Other(name)`.
            pub fn from_name(name: &str) -> Code {
                match name {
                    $($name => Code::$variant,)*
                    other => Code::Other(other.to_string()),
                }
            }
        }
    };
}

codes! {
    NameNotResolved => "ERR_NAME_NOT_RESOLVED",
    NameResolutionFailed => "ERR_NAME_RESOLUTION_FAILED",
    DnsTimedOut => "ERR_DNS_TIMED_OUT",
    ConnectionRefused => "ERR_CONNECTION_REFUSED",
    ConnectionTimedOut => "ERR_CONNECTION_TIMED_OUT",
    AddressUnreachable => "ERR_ADDRESS_UNREACHABLE",
    AddressInvalid => "ERR_ADDRESS_INVALID",
    AccessDenied => "ERR_ACCESS_DENIED",
    ConnectionFailed => "ERR_CONNECTION_FAILED",
    SslProtocolError => "ERR_SSL_PROTOCOL_ERROR",
    SslVersionOrCipherMismatch => "ERR_SSL_VERSION_OR_CIPHER_MISMATCH",
    CertAuthorityInvalid => "ERR_CERT_AUTHORITY_INVALID",
    CertDateInvalid => "ERR_CERT_DATE_INVALID",
    CertCommonNameInvalid => "ERR_CERT_COMMON_NAME_INVALID",
    CertRevoked => "ERR_CERT_REVOKED",
    CertInvalid => "ERR_CERT_INVALID",
    AlpnNegotiationFailed => "ERR_ALPN_NEGOTIATION_FAILED",
    EmptyResponse => "ERR_EMPTY_RESPONSE",
    InvalidHttpResponse => "ERR_INVALID_HTTP_RESPONSE",
    ContentLengthMismatch => "ERR_CONTENT_LENGTH_MISMATCH",
    IncompleteChunkedEncoding => "ERR_INCOMPLETE_CHUNKED_ENCODING",
    Http2ProtocolError => "ERR_HTTP2_PROTOCOL_ERROR",
    ConnectionClosed => "ERR_CONNECTION_CLOSED",
    ConnectionReset => "ERR_CONNECTION_RESET",
    TimedOut => "ERR_TIMED_OUT",
    TooManyRedirects => "ERR_TOO_MANY_REDIRECTS",
    UnsafeRedirect => "ERR_UNSAFE_REDIRECT",
    InvalidUrl => "ERR_INVALID_URL",
    /// Chromium's generic failure.
    Failed => "ERR_FAILED",
}

impl Code {
    /// The phase a failure with this code is in unless it says otherwise. A lookup's,
    /// connect's and handshake's codes (any `ERR_SSL_*`, `ERR_CERT_*`) name their phase;
    /// `ERR_EMPTY_RESPONSE` is no response head (wait); a redirect's codes, redirect; the
    /// rest (time-outs, a connection that closed or reset, the HTTP decoder's reasons)
    /// happen most often while a response is read (receive).
    pub fn phase(&self) -> Phase {
        match self {
            Code::NameNotResolved | Code::NameResolutionFailed | Code::DnsTimedOut => Phase::Dns,
            Code::ConnectionRefused
            | Code::ConnectionTimedOut
            | Code::AddressUnreachable
            | Code::AddressInvalid
            | Code::AccessDenied
            | Code::ConnectionFailed => Phase::Connect,
            Code::SslProtocolError
            | Code::SslVersionOrCipherMismatch
            | Code::CertAuthorityInvalid
            | Code::CertDateInvalid
            | Code::CertCommonNameInvalid
            | Code::CertRevoked
            | Code::CertInvalid
            | Code::AlpnNegotiationFailed => Phase::Tls,
            Code::Other(name) if name.starts_with("ERR_SSL_") || name.starts_with("ERR_CERT_") => Phase::Tls,
            Code::EmptyResponse => Phase::Wait,
            Code::TooManyRedirects | Code::UnsafeRedirect => Phase::Redirect,
            Code::InvalidHttpResponse
            | Code::ContentLengthMismatch
            | Code::IncompleteChunkedEncoding
            | Code::Http2ProtocolError
            | Code::ConnectionClosed
            | Code::ConnectionReset
            | Code::TimedOut
            | Code::InvalidUrl
            | Code::Failed
            | Code::Other(_) => Phase::Receive,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Code, D::Error> {
        Ok(Code::from_name(&String::deserialize(d)?))
    }
}

/// Why a phase failed, with the code a browser shows. Serde's form and `Display` are the
/// fetcher's (an object; `CODE (phase failed: detail)`); a traced page load's fields are
/// written as the text form, through [`stored`] (or [`Failure::text`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub phase: Phase,
    pub code: Code,
    /// What happened, in words (`NXDOMAIN from 127.0.0.1:53`, `connection refused`).
    #[serde(rename = "reason", default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Failure {
    pub fn new(phase: Phase, code: Code, detail: impl Into<String>) -> Failure {
        Failure { phase, code, detail: Some(detail.into()) }
    }

    /// A failure whose code says it all.
    pub fn bare(phase: Phase, code: Code) -> Failure {
        Failure { phase, code, detail: None }
    }

    /// The text form: `CODE`, or `CODE (detail)`.
    pub fn text(&self) -> String {
        match &self.detail {
            Some(d) => format!("{} ({d})", self.code),
            None => self.code.to_string(),
        }
    }

    /// A failure from its text form, in its code's phase ([`Code::phase`]). `CODE (detail)`
    /// is a text with ` (` whose end is the closing `)`; any other text is all code. Lossless:
    /// `Failure::from_text(t).text() == t` for every `t`.
    pub fn from_text(text: &str) -> Failure {
        let (code, detail) = match text.split_once(" (") {
            Some((code, rest)) if rest.ends_with(')') => (code, Some(rest[..rest.len() - 1].to_string())),
            _ => (text, None),
        };
        let code = Code::from_name(code);
        Failure { phase: code.phase(), code, detail }
    }

    /// The same failure in `phase`.
    pub fn in_phase(self, phase: Phase) -> Failure {
        Failure { phase, ..self }
    }
}

/// The fetcher's words: `CODE (phase failed: detail)`.
impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{} ({} failed: {d})", self.code, self.phase),
            None => write!(f, "{} ({} failed)", self.code, self.phase),
        }
    }
}

/// The stitcher's stored form of an `Option<Failure>` field, for
/// `#[serde(flatten, with = "crate::failure::stored")]` on a field named `error`: `"error"`
/// holds the text form (or null), and `"error_phase"` the phase, only when it is not the
/// code's ([`Code::phase`]).
pub mod stored {
    use super::*;

    pub fn serialize<S: Serializer>(failure: &Option<Failure>, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("error", &failure.as_ref().map(Failure::text))?;
        if let Some(f) = failure.as_ref().filter(|f| f.phase != f.code.phase()) {
            map.serialize_entry("error_phase", &f.phase)?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Failure>, D::Error> {
        #[derive(Deserialize)]
        struct Stored {
            #[serde(default)]
            error: Option<String>,
            #[serde(default)]
            error_phase: Option<Phase>,
        }
        let Stored { error, error_phase } = Stored::deserialize(d)?;
        Ok(error.map(|text| {
            let f = Failure::from_text(&text);
            match error_phase {
                Some(phase) => f.in_phase(phase),
                None => f,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_code_reads_back_from_its_name_and_text() {
        for code in Code::LISTED {
            assert_eq!(&Code::from_name(code.name()), code);
            assert!(code.name().starts_with("ERR_"), "{code:?}");
            for f in [Failure::bare(code.phase(), code.clone()), Failure::new(code.phase(), code.clone(), "what (was) seen")] {
                assert_eq!(Failure::from_text(&f.text()), f, "{}", f.text());
            }
        }
        assert_eq!(Code::from_name("ERR_QUIC_PROTOCOL_ERROR"), Code::Other("ERR_QUIC_PROTOCOL_ERROR".into()));
    }

    #[test]
    fn stored_texts_of_old_rows_parse_into_code_and_detail() {
        let cases: [(&str, Phase, Code, Option<&str>); 8] = [
            ("ERR_NAME_NOT_RESOLVED", Phase::Dns, Code::NameNotResolved, None),
            (
                "ERR_NAME_NOT_RESOLVED (DNS server 10.77.0.8:53 unreachable: ECONNREFUSED)",
                Phase::Dns,
                Code::NameNotResolved,
                Some("DNS server 10.77.0.8:53 unreachable: ECONNREFUSED"),
            ),
            ("ERR_CONNECTION_REFUSED", Phase::Connect, Code::ConnectionRefused, None),
            (
                "ERR_CERT_AUTHORITY_INVALID (the client sent TLS alert unknown_ca (48) during the handshake)",
                Phase::Tls,
                Code::CertAuthorityInvalid,
                Some("the client sent TLS alert unknown_ca (48) during the handshake"),
            ),
            ("ERR_EMPTY_RESPONSE", Phase::Wait, Code::EmptyResponse, None),
            // The HTTP decoder's reasons: code-like up to their first parenthesis.
            (
                "response header block not decodable (HPACK)",
                Phase::Receive,
                Code::Other("response header block not decodable".into()),
                Some("HPACK"),
            ),
            ("request not captured", Phase::Receive, Code::Other("request not captured".into()), None),
            // A parenthesis that does not close the text: all code.
            (
                "request header block not decodable (HPACK); connection closed before a response",
                Phase::Receive,
                Code::Other("request header block not decodable (HPACK); connection closed before a response".into()),
                None,
            ),
        ];
        for (text, phase, code, detail) in cases {
            let f = Failure::from_text(text);
            assert_eq!(f, Failure { phase, code, detail: detail.map(String::from) }, "{text}");
            assert_eq!(f.text(), text);
        }
        for text in ["", " (x)", "ERR_X ()", "a (b", "a (b) (c", "ERR_TIMED_OUT (x) y)", "(", ")"] {
            assert_eq!(Failure::from_text(text).text(), text, "{text:?}");
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Row {
        id: u32,
        #[serde(flatten, with = "stored")]
        error: Option<Failure>,
        complete: bool,
    }

    #[test]
    fn the_stitchers_stored_form_is_the_text_with_the_phase_only_where_the_code_does_not_give_it() {
        let row = |error| Row { id: 1, error, complete: false };
        let cases = [
            (row(None), r#"{"id":1,"error":null,"complete":false}"#),
            (
                row(Some(Failure::new(Phase::Dns, Code::NameNotResolved, "no address"))),
                r#"{"id":1,"error":"ERR_NAME_NOT_RESOLVED (no address)","complete":false}"#,
            ),
            (row(Some(Failure::bare(Phase::Wait, Code::EmptyResponse))), r#"{"id":1,"error":"ERR_EMPTY_RESPONSE","complete":false}"#),
            (
                row(Some(Failure::bare(Phase::Connect, Code::EmptyResponse))),
                r#"{"id":1,"error":"ERR_EMPTY_RESPONSE","error_phase":"connect","complete":false}"#,
            ),
            (
                row(Some(Failure::from_text("request not captured").in_phase(Phase::Wait))),
                r#"{"id":1,"error":"request not captured","error_phase":"wait","complete":false}"#,
            ),
        ];
        for (row, json) in cases {
            assert_eq!(serde_json::to_string(&row).unwrap(), json);
            assert_eq!(serde_json::from_str::<Row>(json).unwrap(), row, "{json}");
        }
        // Before `error_phase`: the code's phase.
        let old: Row = serde_json::from_str(r#"{"id":1,"error":"ERR_TIMED_OUT (stalled)","complete":true}"#).unwrap();
        assert_eq!(old.error, Some(Failure::new(Phase::Receive, Code::TimedOut, "stalled")));
    }

    /// Texts made of the pieces that matter to the text form (` (`, `)`, code names, words),
    /// in any phase: each reads back as written, through the text and through [`stored`].
    #[test]
    fn any_text_in_any_phase_reads_back_as_written() {
        let pieces = ["ERR_EMPTY_RESPONSE", "ERR_SSL_X", "ERR_CERT_REVOKED", " (", ")", "(", " ", "a", "; ", "é", "\"", ""];
        let mut rng = crate::test_rng::Rng(0x5eed_fa11);
        for _ in 0..20_000 {
            let text: String = (0..rng.below(7)).map(|_| pieces[rng.below(pieces.len())]).collect();
            let failure = Failure::from_text(&text).in_phase(Phase::ALL[rng.below(Phase::ALL.len())]);
            assert_eq!(failure.text(), text);
            let row = Row { id: 7, error: Some(failure), complete: true };
            let json = serde_json::to_string(&row).unwrap();
            assert_eq!(serde_json::from_str::<Row>(&json).unwrap(), row, "{json}");
        }
    }

    #[test]
    fn the_fetchers_stored_form_is_an_object_and_its_words_name_the_phase() {
        let f = Failure::new(Phase::Dns, Code::NameNotResolved, "NXDOMAIN");
        let json = r#"{"phase":"dns","code":"ERR_NAME_NOT_RESOLVED","reason":"NXDOMAIN"}"#;
        assert_eq!(serde_json::to_string(&f).unwrap(), json);
        assert_eq!(serde_json::from_str::<Failure>(json).unwrap(), f);
        let unknown: Failure = serde_json::from_str(r#"{"phase":"send","code":"ERR_H3","reason":"x"}"#).unwrap();
        assert_eq!(unknown.code, Code::Other("ERR_H3".into()));
        assert_eq!(f.to_string(), "ERR_NAME_NOT_RESOLVED (dns failed: NXDOMAIN)");
        assert_eq!(f.text(), "ERR_NAME_NOT_RESOLVED (NXDOMAIN)");
    }
}
