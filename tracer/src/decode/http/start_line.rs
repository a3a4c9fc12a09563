//! Small helpers for printing HTTP traffic seen as TLS plaintext.
//!
//! Only the request or status line is ever returned: header lines may carry secrets (cookies,
//! authorization tokens) and are never looked at past the first line.

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
pub const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest line returned by [`first_line`], in characters.
pub const FIRST_LINE_MAX: usize = 200;

/// Longest method token accepted (real ones are short; this keeps random text out).
const METHOD_MAX: usize = 24;
/// How far to look for the end of the first line.
const LINE_SEARCH_MAX: usize = 16 * 1024;

/// The first line of an HTTP/1.x request (`GET /cart HTTP/1.1`) or response
/// (`HTTP/1.1 200 OK`), without its line end, cut to [`FIRST_LINE_MAX`] characters. `None`
/// when the data does not start with a complete, well-formed HTTP/1 first line. The result is
/// printable ASCII only.
///
/// A request target may itself hold secrets in its query string; callers that store lines
/// should redact it.
pub fn first_line(plaintext: &[u8]) -> Option<String> {
    let window = &plaintext[..plaintext.len().min(LINE_SEARCH_MAX)];
    let end = window.iter().position(|&b| b == b'\n')?;
    let line = &window[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = if line.starts_with(b"HTTP/") {
        status_line(line)?
    } else {
        request_line(line)?
    };
    Some(text.chars().take(FIRST_LINE_MAX).collect())
}

/// `true` when `bytes` start with the complete HTTP/2 client preface.
pub fn is_http2_preface(bytes: &[u8]) -> bool {
    bytes.starts_with(HTTP2_PREFACE)
}

/// `method SP request-target SP HTTP/1.x`.
fn request_line(line: &[u8]) -> Option<String> {
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let method_ok =
        !method.is_empty() && method.len() <= METHOD_MAX && method.iter().all(|&b| is_tchar(b));
    let target_ok = !target.is_empty() && target.iter().all(u8::is_ascii_graphic);
    if !(method_ok && target_ok && is_http1_version(version)) {
        return None;
    }
    // All bytes checked: printable ASCII and single spaces.
    String::from_utf8(line.to_vec()).ok()
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
