//! HTTP/1 start lines and the HTTP/2 client preface. Here is the one rule for what an HTTP/1
//! request line is (RFC 9112, section 3), used both to print a data record's first line
//! ([`first_line`], the `--print` output) and by the HTTP/1 decoder to find where a request
//! starts (choosing the protocol at a connection's start, and finding the next message after a
//! capture gap).
//!
//! Only the request or status line is ever returned: header lines may carry secrets (cookies,
//! authorization tokens) and are never looked at past the first line.

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
pub const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest line returned by [`first_line`], in characters.
pub const FIRST_LINE_MAX: usize = 200;

/// Longest method token accepted (real ones are short; this keeps random text out).
pub const METHOD_MAX: usize = 24;
/// How far to look for the end of a start line.
pub const LINE_SEARCH_MAX: usize = 16 * 1024;

/// The first line of an HTTP/1.x request (`GET /cart HTTP/1.1`) or response
/// (`HTTP/1.1 200 OK`), without its line end, cut to [`FIRST_LINE_MAX`] characters. `None`
/// when the data does not start with a complete, well-formed HTTP/1 first line. The result is
/// printable ASCII only.
///
/// A request target may itself hold secrets in its query string; callers that store lines
/// should redact it.
pub fn first_line(plaintext: &[u8]) -> Option<String> {
    let line = line_of(plaintext)?;
    let text = if line.starts_with(b"HTTP/") {
        status_line(line)?
    } else if is_request_line(line) {
        // Every byte checked: printable ASCII and single spaces.
        String::from_utf8(line.to_vec()).ok()?
    } else {
        return None;
    };
    Some(text.chars().take(FIRST_LINE_MAX).collect())
}

/// `true` when `bytes` start with the complete HTTP/2 client preface.
pub fn is_http2_preface(bytes: &[u8]) -> bool {
    bytes.starts_with(HTTP2_PREFACE)
}

/// `data` starts with a whole HTTP/1 request line, its line end included.
pub fn starts_with_request_line(data: &[u8]) -> bool {
    line_of(data).is_some_and(is_request_line)
}

/// The start of a request line whose end has not arrived yet (one written in pieces: `GE`,
/// `GET /pa`, `GET /path HTTP/1.`): `data` holds no line end within [`LINE_SEARCH_MAX`]
/// bytes, and what it holds is a beginning that [`is_request_line`] could still accept.
pub fn starts_request_line_in_pieces(data: &[u8]) -> bool {
    let data = &data[..data.len().min(LINE_SEARCH_MAX)];
    if data.is_empty() || data.contains(&b'\n') {
        return false;
    }
    let data = data.strip_suffix(b"\r").unwrap_or(data);
    let mut parts = data.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let method_ok = is_method(method);
    match (parts.next(), parts.next()) {
        (None, _) => method_ok,
        (Some(target), None) => method_ok && target.iter().all(u8::is_ascii_graphic),
        (Some(target), Some(version)) => method_ok && is_target(target) && is_http1_version_start(version),
    }
}

/// RFC 9112, section 3, for HTTP/1.x: `method SP request-target SP HTTP-version`, with `line`
/// given without its line end:
/// - method: a token (RFC 9110 tchars), at most [`METHOD_MAX`] of them;
/// - exactly one SP between the parts and none around them: the grammar's rule (the RFC also
///   lets a recipient split on runs of whitespace; this does not, clients send single SPs);
/// - request-target: at least one visible ASCII character (no whitespace, no control);
/// - HTTP-version: `HTTP/1.` and one digit.
pub fn is_request_line(line: &[u8]) -> bool {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    is_method(method) && is_target(target) && is_http1_version(version)
}

/// The data's first line without its line end (`\n` or `\r\n`), if that end is within
/// [`LINE_SEARCH_MAX`] bytes.
fn line_of(data: &[u8]) -> Option<&[u8]> {
    let window = &data[..data.len().min(LINE_SEARCH_MAX)];
    let end = window.iter().position(|&b| b == b'\n')?;
    let line = &window[..end];
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

fn is_method(m: &[u8]) -> bool {
    !m.is_empty() && m.len() <= METHOD_MAX && m.iter().all(|&b| is_tchar(b))
}

fn is_target(t: &[u8]) -> bool {
    !t.is_empty() && t.iter().all(u8::is_ascii_graphic)
}

/// `HTTP/1.x SP 3DIGIT [SP reason-phrase]`; odd bytes in the reason become `?`.
fn status_line(line: &[u8]) -> Option<String> {
    let version = line.get(..8)?;
    let code = line.get(9..12)?;
    if !is_http1_version(version)
        || line.get(8) != Some(&b' ')
        || !matches!(code[0], b'1'..=b'5')
        || !code.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let mut out = String::from_utf8_lossy(&line[..12]).into_owned();
    match line.get(12..) {
        None | Some([]) => {}
        Some([b' ', reason @ ..]) => {
            out.push(' ');
            out.extend(reason.iter().map(|&b| match b {
                b'\t' => ' ',
                b if b == b' ' || b.is_ascii_graphic() => char::from(b),
                _ => '?',
            }));
        }
        Some(_) => return None,
    }
    Some(out)
}

fn is_http1_version(v: &[u8]) -> bool {
    matches!(v, [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if d.is_ascii_digit())
}

/// What has arrived of an HTTP/1 version: a prefix of `HTTP/1.` and one digit.
fn is_http1_version_start(v: &[u8]) -> bool {
    const STEM: &[u8] = b"HTTP/1.";
    match v.len() {
        n if n <= STEM.len() => STEM.starts_with(v),
        8 => is_http1_version(v),
        _ => false,
    }
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            first_line(b"GET /cart?id=7 HTTP/1.1\r\nHost: shop.test\r\nCookie: secret=1\r\n\r\n")
                .as_deref(),
            Some("GET /cart?id=7 HTTP/1.1")
        );
        assert_eq!(
            first_line(b"POST /api HTTP/1.0\r\n").as_deref(),
            Some("POST /api HTTP/1.0")
        );
        assert_eq!(
            first_line(b"CONNECT shop.test:443 HTTP/1.1\r\n\r\n").as_deref(),
            Some("CONNECT shop.test:443 HTTP/1.1")
        );
        assert_eq!(
            first_line(b"OPTIONS * HTTP/1.1\n").as_deref(),
            Some("OPTIONS * HTTP/1.1")
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            first_line(b"HTTP/1.1 200 OK\r\nSet-Cookie: session=abc\r\n\r\n").as_deref(),
            Some("HTTP/1.1 200 OK")
        );
        assert_eq!(
            first_line(b"HTTP/1.1 404 Not Found\r\n").as_deref(),
            Some("HTTP/1.1 404 Not Found")
        );
        assert_eq!(
            first_line(b"HTTP/1.0 204\r\n").as_deref(),
            Some("HTTP/1.0 204")
        );
        assert_eq!(
            first_line(b"HTTP/1.1 200 \xe9t\xe9\tok\r\n").as_deref(),
            Some("HTTP/1.1 200 ?t? ok")
        );
        assert_eq!(first_line(b"HTTP/1.1 600 Nope\r\n"), None);
        assert_eq!(first_line(b"HTTP/1.1 20 OK\r\n"), None);
        assert_eq!(first_line(b"HTTP/1.1 2000 OK\r\n"), None);
        assert_eq!(first_line(b"HTTP/2 200\r\n"), None);
        assert_eq!(first_line(b"HTTP/1.1  200 OK\r\n"), None);
    }

    #[test]
    fn never_returns_headers() {
        let req = b"GET / HTTP/1.1\r\nAuthorization: Bearer hunter2\r\nCookie: sid=s3cret\r\n\r\n";
        let line = first_line(req).unwrap();
        assert!(
            !line.contains("hunter2") && !line.contains("s3cret") && !line.contains('\r'),
            "{line}"
        );
        // Data that starts with a header line is not a first line.
        assert_eq!(first_line(b"Cookie: sid=s3cret\r\n"), None);
    }

    #[test]
    fn rejects_non_http1() {
        for bad in [
            &b""[..],
            b"G",
            b"GET / HTTP/1.1",      // no line end: cannot tell it is complete
            b"GET /  HTTP/1.1\r\n", // double space
            b"GET / HTTP/2.0\r\n",
            b"GET / HTTPS/1.1\r\n",
            b"GET /\x01 HTTP/1.1\r\n",
            b"G(T / HTTP/1.1\r\n",
            b" / HTTP/1.1\r\n",
            b"GET HTTP/1.1\r\n",
            b"GET / HTTP/1.1 extra\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",
            b"\r\n",
        ] {
            assert_eq!(first_line(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        let long_method = format!("{} / HTTP/1.1\r\n", "A".repeat(METHOD_MAX + 1));
        assert_eq!(first_line(long_method.as_bytes()), None);
    }

    #[test]
    fn long_lines_are_cut_to_200_chars() {
        let target = format!("/{}", "a".repeat(500));
        let req = format!("GET {target} HTTP/1.1\r\n\r\n");
        let line = first_line(req.as_bytes()).unwrap();
        assert_eq!(line.len(), FIRST_LINE_MAX);
        assert!(line.starts_with("GET /aaa"));
        let resp = format!("HTTP/1.1 200 {}\r\n", "x".repeat(300));
        assert_eq!(first_line(resp.as_bytes()).unwrap().len(), FIRST_LINE_MAX);
    }

    #[test]
    fn output_is_printable_ascii_for_random_input() {
        let mut s = 0x1234_5678_9abc_def0u64;
        let mut found = 0;
        for i in 0..20_000 {
            let mut buf: Vec<u8> = match i % 2 {
                0 => b"HTTP/1.1 200 ".to_vec(),
                _ => b"GET /".to_vec(),
            };
            for _ in 0..(i % 40) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                buf.push(s as u8);
            }
            buf.extend_from_slice(b" HTTP/1.1\r\n");
            if let Some(line) = first_line(&buf) {
                found += 1;
                assert!(line.len() <= FIRST_LINE_MAX);
                assert!(
                    line.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
                    "{line:?}"
                );
            }
        }
        assert!(found > 0);
    }

    #[test]
    fn request_line_rule_is_rfc_9112_section_3() {
        let long_method = format!("{} / HTTP/1.1", "A".repeat(METHOD_MAX));
        for ok in [
            "GET / HTTP/1.1",
            "GET http://a.test/x?y=1 HTTP/1.0",
            "CONNECT a.test:443 HTTP/1.1",
            "OPTIONS * HTTP/1.1",
            // Any token is a method; the exchange decoder's old rule took only A-Z, '-', '_'.
            "get / HTTP/1.1",
            "M.SEARCH * HTTP/1.1",
            "X1!#$%&'*+-^_`|~ /p HTTP/1.1",
            long_method.as_str(),
        ] {
            assert!(is_request_line(ok.as_bytes()), "{ok:?}");
        }
        let too_long_method = format!("{} / HTTP/1.1", "A".repeat(METHOD_MAX + 1));
        for bad in [
            // Runs of spaces, spaces around the line: the exchange decoder's old rule took these.
            "GET  / HTTP/1.1",
            "GET /  HTTP/1.1",
            "GET / HTTP/1.1 ",
            "GET / HTTP/1.1  ",
            // A version that is not HTTP/1.<digit>: the old decoder took any `HTTP/1.` prefix.
            "GET / HTTP/1.",
            "GET / HTTP/1.1x",
            "GET / HTTP/1.x",
            // Both old rules refused these.
            " GET / HTTP/1.1",
            "GET\t/ HTTP/1.1",
            "GET / HTTP/1.1\r",
            "GET / HTTP/2.0",
            "PRI * HTTP/2.0",
            "G(T / HTTP/1.1",
            "GET /a b HTTP/1.1",
            "GET / ",
            "GET",
            "",
            too_long_method.as_str(),
        ] {
            assert!(!is_request_line(bad.as_bytes()), "{bad:?}");
        }
    }

    /// The printer and the exchange decoder now agree on the lines where their old rules
    /// did not.
    #[test]
    fn printer_and_exchange_decoder_agree() {
        for (data, request) in [
            (&b"get /lower HTTP/1.1\r\n\r\n"[..], true),
            (b"M.SEARCH * HTTP/1.1\r\n", true),
            (b"GET  /double HTTP/1.1\r\n", false),
            (b"GET /trailing HTTP/1.1 \r\n", false),
            (b"GET /v HTTP/1.12\r\n", false),
            (b"GET /v HTTP/1.\r\n", false),
        ] {
            let text = String::from_utf8_lossy(data);
            assert_eq!(first_line(data).is_some(), request, "{text:?}");
            assert_eq!(starts_with_request_line(data), request, "{text:?}");
        }
    }

    #[test]
    fn request_lines_written_in_pieces() {
        for ok in [
            "G",
            "GE",
            "get",
            "GET ",
            "GET /pa",
            "GET /path ",
            "GET /path H",
            "GET /path HTTP/1.",
            "GET /path HTTP/1.1",
            "GET /path HTTP/1.1\r",
        ] {
            assert!(starts_request_line_in_pieces(ok.as_bytes()), "{ok:?}");
        }
        let long_method = "A".repeat(METHOD_MAX + 1);
        for bad in [
            "",
            " ",
            "GET  ",
            "GET /p  ",
            "GET /p X",
            "GET /p HTTP/2",
            "GET /p HTTP/1.1 ",
            "GET /p\x01",
            "G(T",
            long_method.as_str(),
            // A line end has arrived: the whole line is judged instead.
            "GET / HTTP/1.1\r\n",
            "\x16\x03\x01",
            "\x00\x00\x12\x04",
        ] {
            assert!(!starts_request_line_in_pieces(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn http2_preface() {
        assert!(is_http2_preface(HTTP2_PREFACE));
        let mut with_frames = HTTP2_PREFACE.to_vec();
        with_frames.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert!(is_http2_preface(&with_frames));
        assert!(!is_http2_preface(&HTTP2_PREFACE[..HTTP2_PREFACE.len() - 1]));
        assert!(!is_http2_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r"));
        assert!(!is_http2_preface(b"GET / HTTP/1.1\r\n"));
        assert!(!is_http2_preface(b""));
        assert_eq!(HTTP2_PREFACE.len(), 24);
    }
}
