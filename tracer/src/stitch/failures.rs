//! Failures: every one the stitcher gives a lookup or a request, and the error of a connection.
//!
//! A failure is never a silently missing row: each one is a failed (or partial) entry of
//! its client's page load ([`super::page_loads`]). Each is a [`Failure`]: Chromium's net
//! error code, what was seen (its detail), and the phase that failed, decided here where the
//! failure is (a lookup's: dns; a connect's: connect; a handshake's: tls; a response that
//! never began: wait; one cut short: receive), except that a request's failure on a
//! connection whose set-up never finished is that set-up's ([`settle_phase`], when the page
//! load closes and its connections are final).
//!
//! - Lookups: NXDOMAIN, another rcode, or NOERROR without an address: ERR_NAME_NOT_RESOLVED;
//!   an ICMP error from the DNS server: ERR_NAME_NOT_RESOLVED (DNS server ... unreachable);
//!   no answer by the time the page load closes: ERR_DNS_TIMED_OUT.
//! - Connects: the kernel's ECONNREFUSED: ERR_CONNECTION_REFUSED; ETIMEDOUT, or a socket the
//!   client closed in SYN_SENT: ERR_CONNECTION_TIMED_OUT; ENETUNREACH / EHOSTUNREACH:
//!   ERR_ADDRESS_UNREACHABLE; any other errno: ERR_CONNECTION_FAILED.
//! - TLS handshakes ([`tls_failure`]): a handshake that began and never finished, on a
//!   connection that closed (or whose library call failed) with nothing exchanged. An alert
//!   sent in the clear names the reason (the client's alert: the certificate's problem); a
//!   handshake the client simply hung up on is a cancelled connection, not a failure.
//! - Responses: no response at all: ERR_EMPTY_RESPONSE; a body cut short by the connection's
//!   end: ERR_CONTENT_LENGTH_MISMATCH / ERR_INCOMPLETE_CHUNKED_ENCODING, with who closed first;
//!   a response still owed on an open connection after `response_timeout` of silence:
//!   ERR_TIMED_OUT; what the HTTP decoder itself reports otherwise.
use std::net::SocketAddr;

use tracer_common::TlsLib;

use super::connections::ConnState;
use super::model::{Connection, DnsLookup, Request, ms};
use super::requests::header;
use crate::failure::{Code, Failure, Phase};

/// `ConnState::error` of a connect whose socket the client closed in SYN_SENT with no error
/// reported by the kernel: the client stopped waiting for the SYN's answer.
pub(super) const CLIENT_GAVE_UP_IN_SYN_SENT: &str = "SYN_SENT closed by the client";

/// The error of a lookup all of whose questions were answered: `rcode` is the best of its
/// answers' (NOERROR wins).
pub(super) fn lookup_error(rcode: Option<&str>, has_addresses: bool) -> Option<Failure> {
    match rcode {
        Some("NOERROR") if has_addresses => None,
        Some("NOERROR") => Some(Failure::new(Phase::Dns, Code::NameNotResolved, "no address")),
        Some("NXDOMAIN") => Some(Failure::bare(Phase::Dns, Code::NameNotResolved)),
        Some(other) => Some(Failure::new(Phase::Dns, Code::NameNotResolved, other)),
        None => None,
    }
}

/// The error of a lookup whose DNS server answered with an ICMP error.
pub(super) fn dns_server_unreachable(server: Option<SocketAddr>, error: &str) -> Failure {
    let server = server.map(|d| d.to_string()).unwrap_or_default();
    Failure::new(Phase::Dns, Code::NameNotResolved, format!("DNS server {server} unreachable: {error}"))
}

/// The error of a lookup never answered.
pub(super) fn dns_timed_out(server: Option<SocketAddr>) -> Failure {
    let server = server.map(|s| format!(" from {s}")).unwrap_or_default();
    Failure::new(Phase::Dns, Code::DnsTimedOut, format!("no answer{server}"))
}

/// A connection's `error`, as the kernel or the handshake named it: the connect's errno
/// name (`ECONNREFUSED`), else the code of its failed TLS handshake.
pub(super) fn connection_error(c: &ConnState) -> Option<String> {
    let tls_error = tls_failure(c).map(|f| f.code.to_string());
    c.error.clone().or(tls_error).or_else(|| c.hs_failed.then(|| "TLS handshake failed".to_string()))
}

/// The error of a failure's own entry (no request covers it): the TLS handshake's, else
/// the connect's, else the lookup's.
pub(super) fn failed_entry_error(c: Option<&Connection>, l: Option<&DnsLookup>, raw: Option<&ConnState>) -> Failure {
    if let Some(tls) = raw.and_then(tls_failure) {
        return tls;
    }
    let connect = |code| Failure::bare(Phase::Connect, code);
    match (c.and_then(|c| c.error.as_deref()), l.and_then(|l| l.error.clone())) {
        (Some("ECONNREFUSED"), _) => connect(Code::ConnectionRefused),
        (Some("ETIMEDOUT"), _) => Failure::new(
            Phase::Connect,
            Code::ConnectionTimedOut,
            "SYN unanswered: the kernel gave up after its retries, ETIMEDOUT",
        ),
        (Some(CLIENT_GAVE_UP_IN_SYN_SENT), _) => Failure::new(
            Phase::Connect,
            Code::ConnectionTimedOut,
            format!(
                "SYN unanswered: the client closed the socket after {} ms",
                c.and_then(|c| c.closed_ns.map(|e| ms(e.saturating_sub(c.connect_start_ns)))).unwrap_or(-1.0)
            ),
        ),
        (Some("ENETUNREACH"), _) | (Some("EHOSTUNREACH"), _) => connect(Code::AddressUnreachable),
        (Some(other), _) => Failure::new(Phase::Connect, Code::ConnectionFailed, other),
        (None, Some(e)) => e,
        // Nothing names it: no response came ([`settle_phase`] may say which set-up failed).
        (None, None) => Failure::bare(Phase::Wait, Code::Failed),
    }
}

/// The error of an exchange on connection `c`, if it did not complete: in the wait phase
/// when no response began, else in the receive phase.
pub(super) fn exchange_error(x: &crate::decode::http::HttpExchange, c: &ConnState, response_timeout_ns: u64) -> Option<Failure> {
    if x.complete {
        None
    } else if x.response_start_ns.is_none() {
        Some(Failure::bare(Phase::Wait, Code::EmptyResponse))
    } else {
        Some(if c.response_timed_out && c.closed_ns.is_none() {
            Failure::new(
                Phase::Receive,
                Code::TimedOut,
                format!(
                    "the response did not end within {} s of silence; {} body bytes received",
                    response_timeout_ns / 1_000_000_000,
                    x.response_body_bytes
                ),
            )
        } else {
            incomplete_response(x, c.client_closed_first)
        })
    }
}

/// The phase of request `r`'s failure once its page load's connections (`connections`) and
/// lookups (`dns`) are final. A lookup's, connect's or handshake's code names it. Otherwise
/// it is the failure's own (wait or receive), unless `r` ran on a connection whose set-up
/// never finished: then it is the set-up's (connect: the connection failed or was never seen
/// established; tls: `r` opened it and its handshake never ended), or, with no connection,
/// the lookup's when that failed.
pub(super) fn settle_phase(r: &Request, connections: &[Connection], dns: &[DnsLookup]) -> Option<Phase> {
    let failure = r.error.as_ref()?;
    let named = failure.code.phase();
    if matches!(named, Phase::Dns | Phase::Connect | Phase::Tls) {
        return Some(named);
    }
    Some(match r.connection.and_then(|i| connections.get(i)) {
        Some(c) if c.error.is_some() || c.established_ns.is_none() => Phase::Connect,
        Some(c) if r.new_connection && c.tls.as_ref().is_some_and(|t| t.handshake_start_ns.is_some() && t.handshake_end_ns.is_none()) => {
            Phase::Tls
        }
        None if r.dns.and_then(|i| dns.get(i)).is_some_and(|d| d.error.is_some()) => Phase::Dns,
        _ => failure.phase,
    })
}

/// Why a connection's TLS handshake failed, browser-style, when it began and never finished
/// and the connection closed (or a library call said it failed) with nothing exchanged. The
/// reason is only as good as what is visible: an alert sent in the clear (TLS 1.2, or before
/// the server's first flight) names it; otherwise it is a generic protocol error.
pub(super) fn tls_failure(c: &ConnState) -> Option<Failure> {
    let wire = c.wire.as_ref();
    let probed = c.tls_lib.is_some_and(|l| l != TlsLib::None);
    let started = c.hs_start_ns.is_some() || wire.is_some_and(|w| w.hello_ns.is_some());
    // With a probed library its handshake calls decide: under TLS 1.3 the client's encrypted
    // alert looks like its Finished on the wire.
    let finished = if probed {
        c.hs_end_ns.is_some()
    } else {
        wire.is_some_and(|w| w.handshake_end_ns.is_some()) && wire.is_none_or(|w| w.client_alert.is_none())
    } || c.exchanges > 0
        || c.first_data_ns.is_some();
    if !started || finished || c.error.is_some() || (c.closed_ns.is_none() && !c.hs_failed) {
        return None;
    }
    if let Some(a) = wire.and_then(|w| w.client_alert) {
        let code = match a {
            48 => Code::CertAuthorityInvalid,
            45 => Code::CertDateInvalid,
            44 => Code::CertRevoked,
            42 | 43 | 46 => Code::CertInvalid,
            40 | 70 | 71 => Code::SslVersionOrCipherMismatch,
            _ => Code::SslProtocolError,
        };
        return Some(Failure::new(Phase::Tls, code, format!("the client sent TLS alert {} during the handshake", alert_name(a))));
    }
    if let Some(a) = wire.and_then(|w| w.server_alert) {
        let code = if matches!(a, 40 | 70 | 71) { Code::SslVersionOrCipherMismatch } else { Code::SslProtocolError };
        return Some(Failure::new(Phase::Tls, code, format!("the server sent TLS alert {} during the handshake", alert_name(a))));
    }
    // No alert, no failed library call, and the client hung up: a connection the client
    // cancelled (a browser's speculative connect or a lost race: Firefox closes such sockets
    // mid-handshake), not a failure to report.
    if !c.hs_failed && c.client_closed_first != Some(false) {
        return None;
    }
    let who = match c.client_closed_first {
        Some(true) => "the client closed the connection",
        Some(false) => "the server closed the connection",
        None => "the library's handshake call failed",
    };
    Some(Failure::new(
        Phase::Tls,
        Code::SslProtocolError,
        format!("handshake not finished: {who}; no alert in the clear, so the reason is not visible"),
    ))
}

/// RFC 8446 section 6 alert names, for the ones a failed handshake sends.
fn alert_name(a: u8) -> String {
    let name = match a {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        112 => "unrecognized_name",
        120 => "no_application_protocol",
        _ => return format!("{a}"),
    };
    format!("{name} ({a})")
}

/// The error of a response that did not complete. A body cut short by the connection's end is
/// named as Chromium names it: ERR_CONTENT_LENGTH_MISMATCH (announced length) or
/// ERR_INCOMPLETE_CHUNKED_ENCODING, with the bytes received and who closed first.
/// What the HTTP decoder reports otherwise is the failure's text, as it wrote it.
fn incomplete_response(x: &crate::decode::http::HttpExchange, client_closed_first: Option<bool>) -> Failure {
    let reason = x.partial_reason.as_deref().unwrap_or("partial response");
    if reason != "connection closed before the response ended" {
        return match &x.partial_reason {
            Some(reason) => Failure::from_text(reason).in_phase(Phase::Receive),
            None => Failure::new(Phase::Receive, Code::ConnectionClosed, "partial response"),
        };
    }
    let who = match client_closed_first {
        Some(true) => "the client closed the connection",
        Some(false) => "the server closed the connection",
        None => "the connection closed",
    };
    let length = header(&x.response_headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    let chunked = header(&x.response_headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let (code, detail) = match length {
        Some(n) => (Code::ContentLengthMismatch, format!("{who} after {} of {n} body bytes", x.response_body_bytes)),
        None if chunked => (Code::IncompleteChunkedEncoding, format!("{who} after {} body bytes", x.response_body_bytes)),
        None => (Code::ConnectionClosed, format!("{who}: {reason}")),
    };
    Failure::new(Phase::Receive, code, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stitch::model::PageLoad;
    use crate::stitch::sample::{MS, failed_dns_page, redirect_page};

    #[test]
    fn a_lookups_failures_are_in_the_dns_phase() {
        let server = Some(SocketAddr::from(([127, 0, 0, 53], 53)));
        let cases = [
            (lookup_error(Some("NXDOMAIN"), false), "ERR_NAME_NOT_RESOLVED"),
            (lookup_error(Some("NOERROR"), false), "ERR_NAME_NOT_RESOLVED (no address)"),
            (lookup_error(Some("SERVFAIL"), false), "ERR_NAME_NOT_RESOLVED (SERVFAIL)"),
            (Some(dns_server_unreachable(server, "ECONNREFUSED")), "ERR_NAME_NOT_RESOLVED (DNS server 127.0.0.53:53 unreachable: ECONNREFUSED)"),
            (Some(dns_timed_out(server)), "ERR_DNS_TIMED_OUT (no answer from 127.0.0.53:53)"),
            (Some(dns_timed_out(None)), "ERR_DNS_TIMED_OUT (no answer)"),
        ];
        for (failure, text) in cases {
            let failure = failure.expect(text);
            assert_eq!((failure.phase, failure.text().as_str()), (Phase::Dns, text));
            assert_eq!(Failure::from_text(text), failure, "the stored text reads back the same");
        }
        assert_eq!(lookup_error(Some("NOERROR"), true), None);
        assert_eq!(lookup_error(None, false), None);
    }

    #[test]
    fn a_failed_entrys_error_is_its_handshakes_else_its_connects_else_its_lookups() {
        let page = redirect_page(0);
        let mut c = page.connections[1].clone();
        c.closed_ns = Some(c.connect_start_ns + 2_000 * MS);
        let connect = |errno: &str| failed_entry_error(Some(&Connection { error: Some(errno.into()), ..c.clone() }), None, None);
        let cases = [
            (connect("ECONNREFUSED"), Phase::Connect, "ERR_CONNECTION_REFUSED"),
            (connect("ETIMEDOUT"), Phase::Connect, "ERR_CONNECTION_TIMED_OUT (SYN unanswered: the kernel gave up after its retries, ETIMEDOUT)"),
            (connect(CLIENT_GAVE_UP_IN_SYN_SENT), Phase::Connect, "ERR_CONNECTION_TIMED_OUT (SYN unanswered: the client closed the socket after 2000 ms)"),
            (connect("ENETUNREACH"), Phase::Connect, "ERR_ADDRESS_UNREACHABLE"),
            (connect("EHOSTUNREACH"), Phase::Connect, "ERR_ADDRESS_UNREACHABLE"),
            (connect("EPERM"), Phase::Connect, "ERR_CONNECTION_FAILED (EPERM)"),
            (failed_entry_error(None, Some(&failed_dns_page(0, "nope.test").dns[0]), None), Phase::Dns, "ERR_NAME_NOT_RESOLVED"),
            (failed_entry_error(Some(&c), Some(&page.dns[1]), None), Phase::Wait, "ERR_FAILED"),
        ];
        for (failure, phase, text) in cases {
            assert_eq!((failure.phase, failure.text().as_str()), (phase, text));
            assert_eq!(Failure::from_text(text).in_phase(phase), failure, "the stored text reads back the same");
        }
    }

    #[test]
    fn a_requests_failure_on_a_connection_whose_set_up_never_finished_is_the_set_ups() {
        let page = redirect_page(0);
        let settled = |page: &PageLoad, r: &Request, f: Failure| settle_phase(&Request { error: Some(f), ..r.clone() }, &page.connections, &page.dns);
        let mut r = page.requests[1].clone();
        // A lookup's, connect's or handshake's code names its phase.
        assert_eq!(settled(&page, &r, Failure::from_text("ERR_NAME_NOT_RESOLVED (timed out)")), Some(Phase::Dns));
        assert_eq!(settled(&page, &r, Failure::from_text("ERR_CONNECTION_TIMED_OUT")), Some(Phase::Connect));
        assert_eq!(settled(&page, &r, Failure::from_text("ERR_CERT_DATE_INVALID (x)").in_phase(Phase::Receive)), Some(Phase::Tls));
        // Otherwise the failure's own phase, on a connection that was set up.
        let cut = Failure::new(Phase::Receive, Code::ConnectionClosed, "partial response");
        assert_eq!(settled(&page, &r, cut.clone()), Some(Phase::Receive));
        assert_eq!(settled(&page, &r, Failure::bare(Phase::Wait, Code::EmptyResponse)), Some(Phase::Wait));
        // The connection that opened with this request never finished its handshake: tls.
        let mut broken = page.clone();
        broken.connections[1].tls.as_mut().unwrap().handshake_end_ns = None;
        assert_eq!(settled(&broken, &r, Failure::bare(Phase::Wait, Code::EmptyResponse)), Some(Phase::Tls));
        r.new_connection = false;
        assert_eq!(settled(&broken, &r, Failure::bare(Phase::Wait, Code::EmptyResponse)), Some(Phase::Wait));
        // A connection never seen established, or failed: connect.
        let mut unseen = page.clone();
        unseen.connections[1].established_ns = None;
        assert_eq!(settled(&unseen, &r, cut.clone()), Some(Phase::Connect));
        let mut failed = page.clone();
        failed.connections[1].error = Some("TLS handshake failed".into());
        assert_eq!(settled(&failed, &r, cut), Some(Phase::Connect));
        // No connection: the lookup's when that failed.
        let nx = failed_dns_page(0, "nope.test");
        assert_eq!(settled(&nx, &nx.requests[0], Failure::bare(Phase::Wait, Code::Failed)), Some(Phase::Dns));
        assert_eq!(settle_phase(&Request { error: None, ..r }, &page.connections, &page.dns), None);
    }
}
