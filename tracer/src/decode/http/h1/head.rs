//! HTTP/1.x message heads: parsed with `httparse`, owned, and the target split into scheme,
//! authority and path; and where a message may start after a capture gap.

use super::super::{
    Direction, FieldList,
    start_line::{starts_request_line_in_pieces, starts_with_request_line},
};

/// Header slots given to httparse.
const PARSE_HEADERS: usize = 256;

/// An owned, parsed message head.
pub(super) struct Head {
    pub(super) len: usize,
    pub(super) method: Option<String>,
    pub(super) target: Option<String>,
    pub(super) status: Option<u16>,
    pub(super) fields: FieldList,
    pub(super) content_length: Result<Option<u64>, ()>,
    pub(super) chunked: bool,
    /// Transfer-Encoding present without chunked last.
    pub(super) other_te: bool,
}

pub(super) fn parser_config() -> httparse::ParserConfig {
    let mut c = httparse::ParserConfig::default();
    c.allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_request_line_delimiters(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .ignore_invalid_headers_in_responses(true)
        .ignore_invalid_headers_in_requests(true);
    c
}

/// `Ok(None)`: not complete yet.
pub(super) fn parse_head(dir: Direction, buf: &[u8]) -> Result<Option<Head>, httparse::Error> {
    let mut slots = [httparse::EMPTY_HEADER; PARSE_HEADERS];
    let config = parser_config();
    match dir {
        Direction::Send => {
            let mut req = httparse::Request::new(&mut slots);
            match config.parse_request(&mut req, buf)? {
                httparse::Status::Partial => Ok(None),
                httparse::Status::Complete(len) => Ok(Some(Head::new(
                    len,
                    req.method.map(str::to_string),
                    req.path.map(str::to_string),
                    None,
                    req.headers,
                ))),
            }
        }
        Direction::Recv => {
            let mut resp = httparse::Response::new(&mut slots);
            match config.parse_response(&mut resp, buf)? {
                httparse::Status::Partial => Ok(None),
                httparse::Status::Complete(len) => {
                    Ok(Some(Head::new(len, None, None, resp.code, resp.headers)))
                }
            }
        }
    }
}

/// The complete lines of a head whose end was not captured, parsed as if the head ended
/// there. `len` is the captured length.
pub(super) fn parse_partial_head(dir: Direction, buf: &[u8]) -> Option<Head> {
    let last_nl = buf.iter().rposition(|&b| b == b'\n')?;
    let mut copy = Vec::with_capacity(last_nl + 3);
    copy.extend_from_slice(&buf[..=last_nl]);
    copy.extend_from_slice(b"\r\n");
    let mut head = match parse_head(dir, &copy) {
        Ok(Some(h)) => h,
        _ => {
            // Maybe only the start line is usable.
            let first_nl = buf.iter().position(|&b| b == b'\n')?;
            let mut copy = buf[..=first_nl].to_vec();
            copy.extend_from_slice(b"\r\n");
            let mut h = parse_head(dir, &copy).ok()??;
            h.fields = FieldList::default();
            h.content_length = Ok(None);
            h.chunked = false;
            h.other_te = false;
            h
        }
    };
    head.len = buf.len();
    Some(head)
}

impl Head {
    pub(super) fn new(
        len: usize,
        method: Option<String>,
        target: Option<String>,
        status: Option<u16>,
        headers: &[httparse::Header<'_>],
    ) -> Head {
        let mut fields = FieldList::default();
        let mut content_length: Result<Option<u64>, ()> = Ok(None);
        let mut chunked = false;
        let mut other_te = false;
        for h in headers {
            fields.push(h.name.as_bytes(), h.value);
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value).ok().map(str::trim);
                // Repeated identical values (`5, 5`) are allowed; different ones are not.
                let mut parsed: Option<u64> = None;
                let mut ok = v.is_some();
                for part in v.unwrap_or("").split(',') {
                    match part.trim().parse::<u64>() {
                        Ok(n) if parsed.is_none_or(|p| p == n) => parsed = Some(n),
                        _ => ok = false,
                    }
                }
                content_length = match (content_length, ok, parsed) {
                    (Ok(None), true, Some(n)) => Ok(Some(n)),
                    (Ok(Some(p)), true, Some(n)) if p == n => Ok(Some(n)),
                    _ => Err(()),
                };
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let v = String::from_utf8_lossy(h.value);
                let last = v
                    .rsplit(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                if last == "chunked" {
                    chunked = true;
                    other_te = false;
                } else if !v.trim().is_empty() {
                    chunked = false;
                    other_te = true;
                }
            }
        }
        Head {
            len,
            method,
            target,
            status,
            fields,
            content_length,
            chunked,
            other_te,
        }
    }
}

pub(super) fn field(fields: &FieldList, name: &str) -> Option<String> {
    fields
        .fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// (scheme, authority, path) of a request target: absolute form `http://host/p` gives all
/// three, origin form `/p` only the path, authority form (CONNECT `host:443`) the authority.
pub(super) fn split_target(target: Option<&str>) -> (Option<String>, Option<String>, Option<String>) {
    let Some(t) = target else {
        return (None, None, None);
    };
    if let Some((scheme, rest)) = t.split_once("://")
        && !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        let (auth, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        return (
            Some(scheme.to_ascii_lowercase()),
            Some(auth.to_string()),
            Some(path),
        );
    }
    if !t.starts_with('/') && t != "*" && !t.contains('/') && t.contains(':') {
        return (None, Some(t.to_string()), None);
    }
    (None, None, Some(t.to_string()))
}

pub(super) fn looks_like_start(dir: Direction, data: &[u8]) -> bool {
    match dir {
        Direction::Send => starts_with_request_line(data),
        Direction::Recv => looks_like_response(data),
    }
}

/// The data starts with an HTTP/1 request line; at the very start of a connection a chunk
/// without a line end (a request line written in pieces) is accepted if it is the start of
/// one.
pub(in crate::decode::http) fn looks_like_request(data: &[u8]) -> bool {
    starts_with_request_line(data) || starts_request_line_in_pieces(data)
}

/// `HTTP/1.x NNN`.
pub(in crate::decode::http) fn looks_like_response(data: &[u8]) -> bool {
    data.len() >= 12
        && data.starts_with(b"HTTP/1.")
        && data[7].is_ascii_digit()
        && data[8] == b' '
        && data[9..12].iter().all(u8::is_ascii_digit)
}
