//! HAR 1.2 (<http://www.softwareishard.com/blog/har-12-spec/>): the types and their JSON, for
//! both exports that write it: the fetcher's (`fetch::har`, one fetched page load) and the
//! history's (`history::har`, stored page loads). A leaf: it knows neither model; each export
//! maps its own model onto these types, next to that model.
//!
//! What both exports follow: times in ms, `-1` for a phase that did not happen; `connect`
//! includes `ssl` (for HTTP/3 both are the QUIC handshake); `httpVersion` `h3` for HTTP/3
//! ([`http_version`]); an entry's `time` is the sum of its non-negative phases except `ssl`
//! ([`entry_time`]), rounded at the export's resolution (see [`crate::clock`]). Fields
//! starting with `_` are extensions; each is written only by the export that has it:
//! - the fetcher: `_monotonicStartNs` (page), `_connectionReused`, `_initiator`, `_monotonic`
//!   (CLOCK_MONOTONIC stamps of the entry and its phases), `_dns`, `_tls`, `_quic` (entry; the
//!   last two on the entry that opened the connection);
//! - the history: `_requestBytes` (request), `_contentEncoding` and `_truncated` (a captured
//!   body's content or post data), `_cut` (page: a page load a cap closed while its client was
//!   busy, `{"cap", "limit", "text"}`);
//! - both: `_error` (page and entry), an object for the fetcher, the failure's text for the
//!   history.
//!
//! Two things differ in the JSON text and are kept so that each export stays byte-identical
//! to what it has always written:
//! - key order: the fetcher writes these types as declared (HAR's order); the history's export
//!   has its keys sorted, as it always had ([`Har::into_sorted_value`]);
//! - `pageTimings`: the history writes "not known" as the integer `-1`, the fetcher as `-1.0`
//!   (hence [`serde_json::Number`] there rather than `f64`).

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Har {
    pub log: Log,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Log {
    pub version: String,
    pub creator: Creator,
    pub pages: Vec<Page>,
    pub entries: Vec<Entry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Creator {
    pub name: String,
    pub version: String,
}

impl Har {
    /// A HAR 1.2 log written by tracer `tracer_version`.
    pub fn new(tracer_version: &str, pages: Vec<Page>, entries: Vec<Entry>) -> Har {
        Har {
            log: Log {
                version: "1.2".into(),
                creator: Creator { name: "tracer".into(), version: tracer_version.into() },
                pages,
                entries,
            },
        }
    }

    /// The log as a JSON value, whose objects (a `serde_json::Map` without `preserve_order`)
    /// write their keys sorted: the history's export.
    pub fn into_sorted_value(self) -> Value {
        serde_json::to_value(self).expect("HAR types have string keys only, so they serialise")
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub started_date_time: String,
    pub id: String,
    pub title: String,
    pub page_timings: PageTimings,
    #[serde(rename = "_monotonicStartNs", default, skip_serializing_if = "Option::is_none")]
    pub monotonic_start_ns: Option<u64>,
    #[serde(rename = "_error", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// A page load a cap closed while its client was still busy: `{"cap", "limit", "text"}`.
    #[serde(rename = "_cut", default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<Value>,
}

/// ms since the page's start; -1 when not known. Numbers as written: see the module doc.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageTimings {
    pub on_content_load: Number,
    pub on_load: Number,
}

/// A page timing of `ms`, written as a float; -1 (not known) for a value JSON cannot hold.
pub fn page_timing_ms(ms: f64) -> Number {
    Number::from_f64(ms).unwrap_or_else(page_timing_unknown)
}

/// The integer -1: a page timing not known.
pub fn page_timing_unknown() -> Number {
    Number::from(-1)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub pageref: String,
    pub started_date_time: String,
    pub time: f64,
    pub request: Request,
    pub response: Response,
    pub cache: Cache,
    pub timings: Timings,
    #[serde(rename = "serverIPAddress", default, skip_serializing_if = "Option::is_none")]
    pub server_ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    #[serde(rename = "_connectionReused", default, skip_serializing_if = "Option::is_none")]
    pub connection_reused: Option<bool>,
    #[serde(rename = "_initiator", default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
    #[serde(rename = "_monotonic", default, skip_serializing_if = "Option::is_none")]
    pub monotonic: Option<Value>,
    #[serde(rename = "_error", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    #[serde(rename = "_dns", default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Value>,
    #[serde(rename = "_tls", default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Value>,
    /// The QUIC connection (version, why QUIC, the handshake as the fetcher and its own wire
    /// saw it, datagrams, 0-RTT, Retry, failure).
    #[serde(rename = "_quic", default, skip_serializing_if = "Option::is_none")]
    pub quic: Option<Value>,
}

/// Always empty: nothing is known of the browser's cache.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Cache {}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub method: String,
    pub url: String,
    pub http_version: String,
    pub cookies: Vec<NameValue>,
    pub headers: Vec<NameValue>,
    pub query_string: Vec<NameValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_data: Option<PostData>,
    pub headers_size: i64,
    pub body_size: i64,
    /// All the request's bytes (head and body), when its sizes are otherwise unknown.
    #[serde(rename = "_requestBytes", default, skip_serializing_if = "Option::is_none")]
    pub request_bytes: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub status: u16,
    pub status_text: String,
    pub http_version: String,
    pub cookies: Vec<NameValue>,
    pub headers: Vec<NameValue>,
    pub content: Content,
    #[serde(rename = "redirectURL")]
    pub redirect_url: String,
    pub headers_size: i64,
    pub body_size: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    pub size: i64,
    pub mime_type: String,
    #[serde(flatten)]
    pub body: BodyText,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostData {
    pub mime_type: String,
    #[serde(flatten)]
    pub body: BodyText,
}

/// A captured body as HAR carries it; all empty when none was captured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyText {
    /// UTF-8 as it is, anything else in base64 (then `encoding` is `base64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// The content coding the body is still in (one not decoded).
    #[serde(rename = "_contentEncoding", default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// Bytes are missing: the capture limit, a capture gap, or a body that did not decode.
    #[serde(rename = "_truncated", default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// Milliseconds; -1 when the phase did not happen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub blocked: f64,
    pub dns: f64,
    /// Includes `ssl`.
    pub connect: f64,
    pub send: f64,
    pub wait: f64,
    pub receive: f64,
    pub ssl: f64,
}

impl Timings {
    /// [`entry_time`] of these timings.
    pub fn total(&self) -> f64 {
        entry_time([self.blocked, self.dns, self.connect, self.send, self.wait, self.receive])
    }
}

/// `httpVersion` as Chrome's HAR export writes HTTP/3: `h3` (for `HTTP/3` or `h3`); other
/// versions as the export recorded them (`HTTP/1.1`, `HTTP/2`).
pub fn http_version(v: &str) -> String {
    if v.eq_ignore_ascii_case("HTTP/3") || v == "h3" { "h3".to_owned() } else { v.to_owned() }
}

/// HAR's `time` of an entry, unrounded, from its `blocked, dns, connect, send, wait, receive`:
/// the sum of those that happened (non-negative). `ssl` is not among them: `connect` holds it.
pub fn entry_time(phases: [f64; 6]) -> f64 {
    phases.iter().filter(|v| **v >= 0.0).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: BodyText) -> Entry {
        Entry {
            pageref: "page_1".into(),
            started_date_time: "2026-04-14T10:00:00.000Z".into(),
            time: 1.5,
            request: Request {
                method: "GET".into(),
                url: "https://a.test/".into(),
                http_version: "HTTP/2".into(),
                cookies: vec![],
                headers: vec![],
                query_string: vec![],
                post_data: None,
                headers_size: -1,
                body_size: -1,
                request_bytes: None,
            },
            response: Response {
                status: 200,
                status_text: "OK".into(),
                http_version: "HTTP/2".into(),
                cookies: vec![],
                headers: vec![],
                content: Content { size: 2, mime_type: "text/plain".into(), body },
                redirect_url: String::new(),
                headers_size: -1,
                body_size: 2,
            },
            cache: Cache::default(),
            timings: Timings { blocked: -1.0, dns: -1.0, connect: -1.0, send: 0.5, wait: 1.0, receive: 0.0, ssl: -1.0 },
            server_ip_address: None,
            connection: None,
            connection_reused: None,
            initiator: None,
            monotonic: None,
            error: None,
            dns: None,
            tls: None,
            quic: None,
        }
    }

    #[test]
    fn declared_order_and_sorted_order() {
        let har = Har::new("1.0.0", vec![], vec![entry(BodyText::default())]);
        let declared = serde_json::to_string(&har).unwrap();
        assert!(declared.starts_with(r#"{"log":{"version":"1.2","creator":{"name":"tracer","version":"1.0.0"}"#), "{declared}");
        assert!(declared.contains(r#""content":{"size":2,"mimeType":"text/plain"},"redirectURL""#), "{declared}");
        assert!(declared.contains(r#""cache":{},"timings":{"blocked":-1.0"#), "{declared}");
        let sorted = serde_json::to_string(&har.into_sorted_value()).unwrap();
        assert!(sorted.starts_with(r#"{"log":{"creator":{"name":"tracer","version":"1.0.0"},"entries":[{"cache":{}"#), "{sorted}");
        // Extensions not set are not written.
        assert!(!sorted.contains("\"_"), "{sorted}");
    }

    #[test]
    fn body_fields_sit_in_content_and_truncated_only_when_true() {
        let body = BodyText { text: Some("aGk=".into()), encoding: Some("base64".into()), content_encoding: None, truncated: true };
        let v = Har::new("x", vec![], vec![entry(body)]).into_sorted_value();
        let content = &v["log"]["entries"][0]["response"]["content"];
        assert_eq!(content, &serde_json::json!({"size": 2, "mimeType": "text/plain", "text": "aGk=", "encoding": "base64", "_truncated": true}));
        let plain = BodyText { text: Some("hi".into()), ..BodyText::default() };
        let v = Har::new("x", vec![], vec![entry(plain)]).into_sorted_value();
        assert_eq!(v["log"]["entries"][0]["response"]["content"]["text"], "hi");
        assert!(v["log"]["entries"][0]["response"]["content"].get("_truncated").is_none());
    }

    #[test]
    fn page_timings_keep_their_number_form() {
        let t = PageTimings { on_content_load: page_timing_unknown(), on_load: page_timing_ms(-1.0) };
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"onContentLoad":-1,"onLoad":-1.0}"#);
        assert_eq!(page_timing_ms(f64::NAN), page_timing_unknown());
    }

    #[test]
    fn total_leaves_out_ssl_and_phases_that_did_not_happen() {
        let t = Timings { blocked: -1.0, dns: 2.0, connect: 5.0, send: 0.25, wait: 3.0, receive: 1.0, ssl: 4.0 };
        assert_eq!(t.total(), 11.25);
    }
}
