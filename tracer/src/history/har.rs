//! HAR 1.2 export of stored page loads, in the types of [`crate::har`] (which lists the rules
//! and the extensions), keys sorted, ms at the stored resolution (10 µs).
//!
//! Mapping: one HAR page per page load (`page_<id>`), one entry per request. Headers are the
//! redacted ones the history keeps ([`crate::redact`]: credentials read `[redacted]`); no
//! cookie is captured into the history, so those stay empty, and a body only with
//! `--capture-bodies`; query values arrive redacted (`q=*`). Sizes: `response.headersSize` is
//! the response head's bytes when the stitcher measured it (else -1) and `bodySize` the rest of
//! the response bytes; the request's sizes are unknown (-1), its total bytes are in
//! `_requestBytes`. Timings follow HAR 1.2: `connect` includes `ssl`, -1 for a phase that did
//! not happen, and `send`/`wait`/`receive` (which HAR requires) are 0 then. `time` is the sum of
//! the non-negative phases. Failures are in `_error` (entries and pages), as browsers' exports
//! do. A page load a cap closed while its client was busy has `_cut` on its page.
use std::net::SocketAddr;

use serde_json::{Value, json};

use super::StoredPageLoad;
use crate::{
    clock::{iso8601_ms, round_stored_ms},
    har::{
        self, BodyText, Cache, Content, Har, NameValue, Page, PageTimings, PostData, Response, Timings, page_timing_ms,
        page_timing_unknown,
    },
    redact::Header,
    stitch::model::{CapturedBody, PageLoad, Request},
};

/// A HAR 1.2 log of the given page loads (entries sorted by start, oldest first), as a JSON
/// value: its keys are written sorted, as this export always has.
pub fn to_har(pages: &[StoredPageLoad]) -> Value {
    let mut entries: Vec<(f64, har::Entry)> = Vec::new();
    let mut har_pages = Vec::with_capacity(pages.len());
    for s in pages {
        let page_ref = format!("page_{}", s.id);
        let p = &s.page;
        let loaded = p.status.is_some() && p.error.is_none();
        har_pages.push(Page {
            started_date_time: iso8601_ms(s.started_at_ms),
            id: page_ref.clone(),
            title: p.url.clone().unwrap_or_default(),
            page_timings: PageTimings {
                on_content_load: page_timing_unknown(),
                on_load: if loaded { page_timing_ms(p.total_ms()) } else { page_timing_unknown() },
            },
            monotonic_start_ns: None,
            error: p.error.as_ref().map(|e| json!(e.text())),
            cut: p.cut.map(|c| json!({"cap": c.cap.name(), "limit": c.limit, "text": c.text()})),
        });
        for r in &p.requests {
            let at = s.wall_ms(r.started_ns);
            entries.push((at, entry(s, &page_ref, r, at)));
        }
    }
    entries.sort_by(|a, b| a.0.total_cmp(&b.0));
    let entries = entries.into_iter().map(|(_, e)| e).collect();
    Har::new(env!("CARGO_PKG_VERSION"), har_pages, entries).into_sorted_value()
}

fn entry(s: &StoredPageLoad, page_ref: &str, r: &Request, at: f64) -> har::Entry {
    let p: &PageLoad = &s.page;
    let t = &r.timings;
    let opt = |v: f64| if v >= 0.0 { round_stored_ms(v) } else { -1.0 };
    let req = |v: f64| if v >= 0.0 { round_stored_ms(v) } else { 0.0 };
    let timings = Timings {
        blocked: opt(t.blocked),
        dns: opt(t.dns),
        connect: opt(t.connect),
        send: req(t.send),
        wait: req(t.wait),
        receive: req(t.receive),
        ssl: opt(t.ssl),
    };
    // From the phases as stored (already at this resolution), like the phases themselves.
    let time = round_stored_ms(t.total());
    let url = r
        .url
        .clone()
        .or_else(|| match (&r.host, &r.path) {
            (Some(h), Some(path)) => {
                let tls = r.connection.and_then(|c| p.connections.get(c)).is_some_and(|c| c.tls.is_some());
                Some(format!("{}://{h}{path}", if tls { "https" } else { "http" }))
            }
            _ => None,
        })
        .or_else(|| p.url.clone())
        .unwrap_or_default();
    let http_version = crate::har::http_version(r.protocol.as_deref().unwrap_or_default());
    let (headers_size, body_size) = match (r.status, r.response_header_bytes) {
        (None, _) if r.response_bytes == 0 => (-1i64, -1i64),
        (_, 0) => (-1, r.response_bytes as i64),
        (_, h) => (h as i64, r.response_bytes.saturating_sub(h) as i64),
    };
    let conn = r.connection.and_then(|i| p.connections.get(i).map(|c| (i, c)));
    let server_ip = conn.and_then(|(_, c)| c.dst.as_deref()).map(ip_of);
    let connection_id = conn.map(|(i, c)| {
        c.src
            .as_deref()
            .and_then(|s| s.parse::<SocketAddr>().ok())
            .filter(|a| a.port() != 0)
            .map(|a| a.port().to_string())
            .unwrap_or_else(|| format!("{}.{i}", s.id))
    });
    let response_body = r
        .response_body
        .as_ref()
        .map(|body| body_text(body, header_of(&r.response_headers, "content-encoding")))
        .unwrap_or_default();
    let post_data = r.request_body.as_ref().map(|body| PostData {
        mime_type: header_of(&r.request_headers, "content-type").unwrap_or_default().to_string(),
        body: body_text(body, header_of(&r.request_headers, "content-encoding")),
    });
    har::Entry {
        pageref: page_ref.to_string(),
        started_date_time: iso8601_ms(at.round() as i64),
        time,
        request: har::Request {
            method: r.method.clone().unwrap_or_else(|| "GET".into()),
            query_string: query_string(&url),
            url,
            http_version: http_version.clone(),
            cookies: vec![],
            headers: name_values(&r.request_headers),
            post_data,
            headers_size: -1,
            body_size: -1,
            request_bytes: Some(r.request_bytes),
        },
        response: Response {
            status: r.status.unwrap_or(0),
            status_text: r.status.map(reason).unwrap_or("").to_string(),
            http_version: if r.status.is_some() { http_version } else { String::new() },
            cookies: vec![],
            headers: name_values(&r.response_headers),
            content: Content {
                size: body_size.max(0),
                mime_type: r.content_type.clone().unwrap_or_default(),
                body: response_body,
            },
            redirect_url: r.redirect_to.clone().unwrap_or_default(),
            headers_size,
            body_size,
        },
        cache: Cache::default(),
        timings,
        server_ip_address: server_ip,
        connection: connection_id,
        connection_reused: None,
        initiator: None,
        monotonic: None,
        error: r.error.as_ref().map(|e| json!(e.text())),
        dns: None,
        tls: None,
        quic: None,
    }
}

fn name_values(headers: &[Header]) -> Vec<NameValue> {
    headers.iter().map(|h| NameValue { name: h.name.clone(), value: h.value.clone() }).collect()
}

fn header_of<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers.iter().find(|h| h.name == name).map(|h| h.value.as_str())
}

/// Decoded bodies larger than this are cut (a compressed body may expand a thousandfold).
const MAX_DECODED_BODY: u64 = 16 * 1024 * 1024;

/// HAR's fields for a captured body: `text` (UTF-8 as it is, anything else in base64 with
/// `encoding`), decoded from gzip/deflate as browsers show it. A body cut by the capture limit
/// or a gap says so in `_truncated`; one in a coding we do not decode (br, zstd) stays as sent,
/// named in `_contentEncoding`.
fn body_text(body: &CapturedBody, content_encoding: Option<&str>) -> BodyText {
    use base64::Engine;
    use std::io::Read;
    let coding = content_encoding.map(|c| c.trim().to_ascii_lowercase()).filter(|c| !c.is_empty() && c != "identity");
    let mut out = BodyText { truncated: body.truncated, ..BodyText::default() };
    let decoded: Option<Vec<u8>> = match coding.as_deref() {
        None => Some(body.data.clone()),
        Some(c @ ("gzip" | "x-gzip" | "deflate")) => {
            let mut buf = Vec::new();
            let reader: Box<dyn Read + '_> = match c {
                "deflate" => Box::new(flate2::read::ZlibDecoder::new(&body.data[..])),
                _ => Box::new(flate2::read::GzDecoder::new(&body.data[..])),
            };
            // A truncated stream decodes as far as it goes; what came out is kept.
            let result = reader.take(MAX_DECODED_BODY).read_to_end(&mut buf);
            if result.is_err() || buf.len() as u64 >= MAX_DECODED_BODY {
                out.truncated = true;
            }
            if result.is_err() && buf.is_empty() { None } else { Some(buf) }
        }
        Some(_) => None,
    };
    match decoded {
        Some(bytes) => match String::from_utf8(bytes) {
            Ok(text) => out.text = Some(text),
            Err(e) => {
                out.text = Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes()));
                out.encoding = Some("base64".into());
            }
        },
        None => {
            out.text = Some(base64::engine::general_purpose::STANDARD.encode(&body.data));
            out.encoding = Some("base64".into());
            out.content_encoding = Some(coding.unwrap_or_default());
        }
    }
    out
}

/// `10.0.0.2:443` -> `10.0.0.2`, `[fd00::2]:443` -> `fd00::2`; anything else as it is.
fn ip_of(dst: &str) -> String {
    match dst.parse::<SocketAddr>() {
        Ok(a) => a.ip().to_string(),
        Err(_) => dst.trim_start_matches('[').trim_end_matches(']').to_string(),
    }
}

/// The query's pairs as they are in the URL: the history keeps its values redacted (`q=*`),
/// so nothing is percent-decoded.
fn query_string(url: &str) -> Vec<NameValue> {
    let Some((_, q)) = url.split_once('?') else { return Vec::new() };
    let q = q.split('#').next().unwrap_or("");
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            NameValue { name: k.to_string(), value: v.to_string() }
        })
        .collect()
}

/// The standard reason phrase (the wire's own is not kept).
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(ip_of("10.0.0.2:443"), "10.0.0.2");
        assert_eq!(ip_of("[fd00::2]:443"), "fd00::2");
        assert_eq!(ip_of("weird"), "weird");
        let nv = |name: &str, value: &str| NameValue { name: name.into(), value: value.into() };
        assert_eq!(query_string("https://a.test/s?q=*&lang=*&flag#frag"), vec![nv("q", "*"), nv("lang", "*"), nv("flag", "")]);
        assert!(query_string("https://a.test/").is_empty());
        assert_eq!(reason(404), "Not Found");
    }
}
