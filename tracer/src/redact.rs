//! What may be kept of a captured HTTP exchange. The daemon runs as root and sees every TLS
//! session's plaintext, so everything it stores, prints, serves or logs goes through here
//! first (the stitcher applies it as it builds a request, the reference fetcher as it finishes
//! a load, the history writer and HAR export only ever see the result).
//!
//! The rules:
//! * Query values are replaced by `*` (`/search?q=*&page=*`); names stay.
//! * URLs lose their user-info (`https://user:pw@host/` -> `https://host/`).
//! * Path segments that look like a token (a JWT, or a long run of base64/hex characters
//!   with letters and digits mixed) are replaced by `*`.
//! * Headers: `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie` and any header
//!   whose name says it carries a credential (`X-Api-Key`, `X-CSRF-Token`, ...) keep their
//!   name with the value [`REDACTED`]. Headers on the [`SAFE_HEADERS`] list keep their value,
//!   unless a word of it looks like a token; URL-valued ones (`Referer`, `Location`,
//!   `Content-Location`, `Origin`) are redacted as URLs. Every other header keeps its name
//!   only: its value is [`REDACTED`].
//! * Bodies are never kept (see `--capture-bodies` in the README for the one exception).

/// What a redacted header value reads.
pub const REDACTED: &str = "[redacted]";

/// Headers whose values describe the exchange without identifying anyone: kept (token check
/// still applied). Lower-case.
pub const SAFE_HEADERS: &[&str] = &[
    // request
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "connection",
    "content-encoding",
    "content-language",
    "content-length",
    "content-type",
    "dnt",
    "host",
    "keep-alive",
    "pragma",
    "priority",
    "range",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
    "sec-fetch-dest",
    "sec-fetch-mode",
    "sec-fetch-site",
    "sec-fetch-user",
    "te",
    "upgrade",
    "upgrade-insecure-requests",
    "user-agent",
    // response
    "accept-ranges",
    "access-control-allow-methods",
    "access-control-allow-origin",
    "age",
    "alt-svc",
    "content-range",
    "date",
    "expires",
    "last-modified",
    "referrer-policy",
    "server",
    "strict-transport-security",
    "transfer-encoding",
    "vary",
    "via",
    "x-content-type-options",
    "x-frame-options",
];

/// Headers whose value is a URL: kept as a redacted URL.
pub const URL_HEADERS: &[&str] = &["referer", "location", "content-location", "origin"];

/// Headers that always carry credentials.
pub const SECRET_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "set-cookie"];

/// Words in a header name that say its value is a credential (`x-api-key`, `x-auth-token`).
const SECRET_NAME_WORDS: &[&str] =
    &["auth", "token", "secret", "key", "session", "csrf", "xsrf", "password", "passwd", "signature", "credential", "cookie"];

/// One header as kept: lower-case name, redacted value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// The value of header `name` as it may be kept.
pub fn header_value(name: &str, value: &str) -> String {
    let name = name.to_ascii_lowercase();
    if is_secret_header(&name) {
        return REDACTED.to_string();
    }
    if URL_HEADERS.contains(&name.as_str()) {
        return url(value.trim());
    }
    if name == "host" {
        let host = authority(value.trim());
        return if contains_token(&host) { REDACTED.to_string() } else { host };
    }
    if SAFE_HEADERS.contains(&name.as_str()) {
        return if contains_token(value) { REDACTED.to_string() } else { value.to_string() };
    }
    REDACTED.to_string()
}

/// Whether a header's value is never kept, by its name.
pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_HEADERS.contains(&name.as_str()) || SECRET_NAME_WORDS.iter().any(|w| name.contains(w))
}

/// Headers as they may be kept (HTTP/2 pseudo-headers are left out: method, path, authority
/// and status have fields of their own).
pub fn headers<'a>(list: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Header> {
    list.into_iter()
        .filter(|(n, _)| !n.starts_with(':'))
        .map(|(n, v)| Header { name: n.to_ascii_lowercase(), value: header_value(n, v) })
        .collect()
}

/// A request target or path (`/a/b?x=1#f`): query values `*`, token-looking segments `*`,
/// path parameters' values `*` (`/app;jsessionid=*`), no fragment. An absolute-form target
/// (`http://user:pw@host/x`, HTTP/1 through a proxy) goes through [`url`], which also drops
/// its user-info.
pub fn path(target: &str) -> String {
    if !target.starts_with('/') && is_absolute(target) {
        return url(target);
    }
    let target = target.split('#').next().unwrap_or(target);
    let (p, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut out: String = p.split('/').map(segment).collect::<Vec<_>>().join("/");
    if let Some(q) = query {
        out.push('?');
        out.push_str(&query_names(q));
    }
    out
}

/// One path segment: `*` when it looks like a token; else its parameters (`;jsessionid=X`,
/// `;sid=X`: servlet containers and others put session ids there) with their values `*`.
fn segment(seg: &str) -> std::borrow::Cow<'_, str> {
    if looks_like_token(seg) {
        return "*".into();
    }
    let Some((base, params)) = seg.split_once(';') else { return seg.into() };
    let params: Vec<String> = params
        .split(';')
        .map(|p| match p.split_once('=') {
            Some((k, _)) => format!("{k}=*"),
            None if looks_like_token(p) => "*".to_string(),
            None => p.to_string(),
        })
        .collect();
    format!("{base};{}", params.join(";")).into()
}

/// `scheme://...` with a scheme of letters, digits, `+`, `-`, `.`.
fn is_absolute(u: &str) -> bool {
    u.split_once("://").is_some_and(|(scheme, _)| !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
}

/// A host (`:authority`, `Host`, the authority of an absolute-form target) without user-info:
/// `user:pw@shop.test:8443` -> `shop.test:8443`.
pub fn authority(a: &str) -> String {
    a.rsplit_once('@').map_or(a, |(_, h)| h).to_string()
}

/// `a=1&b&c=2` -> `a=*&b&c=*`.
pub fn query_names(q: &str) -> String {
    q.split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) => format!("{k}=*"),
            None if looks_like_token(kv) => "*".to_string(),
            None => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// An absolute URL (or, when it does not parse as one, a path): no user-info, redacted path
/// and query, no fragment.
pub fn url(u: &str) -> String {
    match u.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let tail = if tail.starts_with('#') { "" } else { tail };
            format!("{scheme}://{host}{}", path(tail))
        }
        _ => path(u),
    }
}

/// An HTTP/1 request line (`GET /x?y=1 HTTP/1.1`) or status line, redacted like [`path`].
pub fn request_line(line: &str) -> String {
    let mut parts = line.splitn(3, ' ');
    let (Some(method), Some(target), rest) = (parts.next(), parts.next(), parts.next()) else {
        return line.to_string();
    };
    if method.starts_with("HTTP/") {
        return line.to_string(); // a status line: no target
    }
    let mut out = format!("{method} {}", if target.starts_with('/') { path(target) } else { url(target) });
    if let Some(rest) = rest {
        out.push(' ');
        out.push_str(rest);
    }
    out
}

/// Whether any word of a header value looks like a token.
pub fn contains_token(value: &str) -> bool {
    value
        .split(|c: char| c.is_whitespace() || ",;=\"'".contains(c))
        .any(looks_like_token)
}

/// A JWT (`eyJ...` in three dot-separated base64url parts), or a run of at least 24
/// base64/base64url/hex characters that mixes letters and digits: API keys, session ids,
/// bearer tokens, hex digests. Ordinary words, numbers and file names do not match.
pub fn looks_like_token(s: &str) -> bool {
    let s = s.trim();
    let b64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() == 3 && s.starts_with("eyJ") && parts.iter().take(2).all(|p| p.len() >= 4 && p.chars().all(b64url)) {
        return true;
    }
    let body = s.trim_end_matches('=');
    if body.len() < 24 || !body.chars().all(|c| b64url(c) || c == '+' || c == '/' || c == '%' || c == '~') {
        return false;
    }
    let digits = body.chars().filter(|c| c.is_ascii_digit()).count();
    let letters = body.chars().filter(|c| c.is_ascii_alphabetic()).count();
    // A word with a number in it (`Content-Security-Policy-Report-Only2`) is not a token:
    // ask for digits and letters both in some quantity.
    digits >= 2 && letters >= 2 && digits * 10 >= body.len() / 2 || (letters == 0 && digits >= 24) || mixed_case_noise(body)
}

/// Long runs with upper and lower case and digits interleaved, as random base64 is.
fn mixed_case_noise(s: &str) -> bool {
    let upper = s.chars().filter(|c| c.is_ascii_uppercase()).count();
    let lower = s.chars().filter(|c| c.is_ascii_lowercase()).count();
    let digits = s.chars().filter(|c| c.is_ascii_digit()).count();
    upper >= 3 && lower >= 3 && digits >= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_and_path_parameters_are_dropped() {
        assert_eq!(path("http://user:S3CR3T@shop.test/a?x=1"), "http://shop.test/a?x=*");
        assert_eq!(path("/app;jsessionid=S3CR3T/page;v=2?q=1"), "/app;jsessionid=*/page;v=*?q=*");
        assert_eq!(path("/a;flag/b"), "/a;flag/b");
        assert_eq!(url("https://u:p@shop.test/x;JSESSIONID=S3CR3T"), "https://shop.test/x;JSESSIONID=*");
        assert_eq!(authority("user:S3CR3T@shop.test:8443"), "shop.test:8443");
        assert_eq!(authority("shop.test"), "shop.test");
        assert_eq!(header_value("Host", "u:S3CR3T@shop.test"), "shop.test");
        assert_eq!(request_line("GET http://u:S3CR3T@shop.test/;sid=S3CR3T HTTP/1.1"), "GET http://shop.test/;sid=* HTTP/1.1");
    }

    #[test]
    fn credentials_headers_are_always_redacted() {
        for (n, v) in [
            ("Authorization", "Bearer S3CR3T"),
            ("authorization", "Basic dXNlcjpwYXNz"),
            ("Proxy-Authorization", "Basic x"),
            ("Cookie", "sid=S3CR3T"),
            ("set-cookie", "sid=S3CR3T; Path=/; HttpOnly"),
            ("X-Api-Key", "abc"),
            ("X-Auth-Token", "abc"),
            ("X-CSRF-Token", "abc"),
            ("x-amz-security-token", "abc"),
        ] {
            assert_eq!(header_value(n, v), REDACTED, "{n}");
            assert!(is_secret_header(n), "{n}");
        }
    }

    #[test]
    fn safe_headers_keep_their_value_unless_it_looks_like_a_token() {
        assert_eq!(header_value("Accept", "text/html,*/*;q=0.8"), "text/html,*/*;q=0.8");
        assert_eq!(header_value("user-agent", "curl/7.88.1"), "curl/7.88.1");
        assert_eq!(header_value("content-type", "text/html; charset=utf-8"), "text/html; charset=utf-8");
        assert_eq!(header_value("sec-fetch-mode", "navigate"), "navigate");
        assert_eq!(header_value("server", "tracer-lab"), "tracer-lab");
        // A safe name carrying a token-looking word is still redacted.
        assert_eq!(header_value("user-agent", "app/1.0 eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"), REDACTED);
        assert_eq!(header_value("Accept-Language", "en 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"), REDACTED);
    }

    #[test]
    fn unknown_headers_keep_only_their_name() {
        assert_eq!(header_value("x-request-id", "42"), REDACTED);
        assert_eq!(header_value("if-none-match", "\"abc\""), REDACTED);
        let h = headers([(":path", "/x?t=1"), ("Accept", "*/*"), ("Cookie", "a=b"), ("X-Thing", "v")]);
        assert_eq!(
            h,
            vec![
                Header { name: "accept".into(), value: "*/*".into() },
                Header { name: "cookie".into(), value: REDACTED.into() },
                Header { name: "x-thing".into(), value: REDACTED.into() },
            ]
        );
    }

    #[test]
    fn url_headers_are_redacted_as_urls() {
        assert_eq!(header_value("Referer", "https://u:pw@shop.test/a?token=S3CR3T#f"), "https://shop.test/a?token=*");
        assert_eq!(header_value("Location", "/login?next=%2Fx&sid=S3CR3T"), "/login?next=*&sid=*");
        assert_eq!(header_value("origin", "https://shop.test"), "https://shop.test");
    }

    #[test]
    fn paths_lose_query_values_and_token_segments() {
        assert_eq!(path("/"), "/");
        assert_eq!(path("/search?q=shoes&page=2"), "/search?q=*&page=*");
        assert_eq!(path("/a?flag&t=1#frag"), "/a?flag&t=*");
        assert_eq!(path("/static/app.3f2a9b8c.js"), "/static/app.3f2a9b8c.js");
        assert_eq!(path("/reset/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl/x"), "/reset/*/x");
        assert_eq!(path("/files/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"), "/files/*");
        assert_eq!(path("/api/v2/users/42/orders"), "/api/v2/users/42/orders");
        assert_eq!(path("/x?AbCdEfGh12345678IjKlMnOp90"), "/x?*");
    }

    #[test]
    fn urls_lose_user_info() {
        assert_eq!(url("https://user:S3CR3T@shop.test:8443/p?k=v"), "https://shop.test:8443/p?k=*");
        assert_eq!(url("http://shop.test"), "http://shop.test");
        assert_eq!(url("http://shop.test#frag"), "http://shop.test");
        assert_eq!(url("/relative?x=1"), "/relative?x=*");
    }

    #[test]
    fn request_lines() {
        assert_eq!(request_line("GET / HTTP/1.1"), "GET / HTTP/1.1");
        assert_eq!(request_line("GET /a?t=1&flag HTTP/1.1"), "GET /a?t=*&flag HTTP/1.1");
        assert_eq!(request_line("HTTP/1.1 200 OK"), "HTTP/1.1 200 OK");
        assert_eq!(request_line("GET http://u:p@proxy.test/x?y=2 HTTP/1.1"), "GET http://proxy.test/x?y=* HTTP/1.1");
    }

    #[test]
    fn token_detection() {
        for t in [
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "dGhpcyBpcyBhIHNlY3JldCB0b2tlbiB2YWx1ZQ==",
            "123456789012345678901234",
        ] {
            assert!(looks_like_token(t), "{t}");
        }
        for t in [
            "",
            "S3CR3T",
            "text/html",
            "application/xhtml+xml",
            "Mozilla/5.0",
            "keep-alive",
            "max-age=31536000",
            "includeSubDomains",
            "strict-origin-when-cross-origin",
            "no-store",
            "app.3f2a9b8c.js",
            "Wed, 21 Oct 2015 07:28:00 GMT",
        ] {
            assert!(!looks_like_token(t), "{t}");
        }
    }
}
