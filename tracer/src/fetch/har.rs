//! HAR 1.2 of a fetched [`PageLoad`], in the types of [`crate::har`] (which lists the rules
//! and the extensions), keys in HAR's order, ms at the fetcher's resolution (1 µs).
//!
//! `-1` marks a phase that did not happen for an entry (`ssl` on http://, `dns`/`connect`/`ssl`
//! on a reused connection); `connect` is TCP plus TLS, or for HTTP/3 the QUIC handshake, which
//! is also its `ssl`. `httpVersion` is `h3` for HTTP/3. The extensions: `_monotonic` gives each
//! phase's CLOCK_MONOTONIC stamps, `_error` a failure, `_connectionReused`, `_dns` the lookup,
//! `_tls` the handshake, `_quic` a QUIC connection (with `wire_handshake`: the client's first
//! Initial to its first 1-RTT packet, as its own socket saw them).

use super::model::{Entry, Initiator, PageLoad, Timed};
use crate::failure::Phase;
use crate::clock::{iso8601_ms, round_fetch_ms};
use crate::har::{self, Cache, Content, Har, NameValue, Page, PageTimings, Request, Response, page_timing_ms};

fn ms(t: Option<&Timed>) -> f64 {
    t.map_or(-1.0, |t| t.ms)
}

/// HAR timings of one entry.
pub fn timings(e: &Entry) -> har::Timings {
    let t = &e.timings;
    let ssl = ms(t.tls.as_ref());
    let connect = match (t.connect.as_ref(), t.tls.as_ref()) {
        (Some(c), Some(s)) => round_fetch_ms(c.ms + s.ms),
        (Some(c), None) => c.ms,
        // QUIC: one handshake is the connect and the TLS phase at once (Chrome's HAR: connect
        // = ssl).
        (None, Some(s)) if e.http_version.as_deref() == Some("HTTP/3") => s.ms,
        (None, _) => -1.0,
    };
    har::Timings {
        blocked: ms(t.blocked.as_ref()),
        dns: ms(t.dns.as_ref()),
        connect,
        send: ms(t.send.as_ref()),
        wait: ms(t.wait.as_ref()),
        receive: ms(t.receive.as_ref()),
        ssl,
    }
}

/// The version as HAR writes it: `h3` for HTTP/3, as Chrome's HAR export does; the others as
/// recorded (`HTTP/1.1`, `HTTP/2`).
fn version(v: Option<&str>) -> String {
    har::http_version(v.unwrap_or(""))
}

fn entry(load: &PageLoad, e: &Entry) -> har::Entry {
    let timings = timings(e);
    let time = round_fetch_ms(timings.total());
    let start_ms = load.started_at_unix_ms + (load.offset_ms(e.span.start_ns)).round() as i64;
    let query = url::Url::parse(&e.url)
        .map(|u| {
            u.query_pairs()
                .map(|(n, v)| NameValue {
                    name: n.into_owned(),
                    value: v.into_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    let phases: serde_json::Map<String, serde_json::Value> = Phase::TIMED
        .iter()
        .filter_map(|p| {
            e.timings.get(*p).map(|t| {
                (
                    p.name().to_owned(),
                    serde_json::json!([t.start_ns, t.end_ns]),
                )
            })
        })
        .collect();
    let conn = e.connection_id.and_then(|id| load.connections.get(id));
    let new_conn = !e.connection_reused;
    har::Entry {
        pageref: "page_1".into(),
        started_date_time: iso8601_ms(start_ms),
        time,
        request: Request {
            method: e.method.clone(),
            url: e.url.clone(),
            http_version: version(e.http_version.as_deref()),
            cookies: vec![],
            headers: e
                .request_headers
                .iter()
                .map(|h| NameValue {
                    name: h.name.clone(),
                    value: h.value.clone(),
                })
                .collect(),
            query_string: query,
            post_data: None,
            headers_size: e.request_headers_size.map_or(-1, |s| s as i64),
            body_size: 0,
            request_bytes: None,
        },
        response: Response {
            status: e.status.unwrap_or(0),
            status_text: e.status_text.clone().unwrap_or_default(),
            http_version: version(e.http_version.as_deref()),
            cookies: vec![],
            headers: e
                .response_headers
                .iter()
                .map(|h| NameValue {
                    name: h.name.clone(),
                    value: h.value.clone(),
                })
                .collect(),
            content: Content {
                size: e.body_size as i64,
                mime_type: e.mime_type.clone().unwrap_or_default(),
                body: Default::default(),
            },
            redirect_url: e.redirect_url.clone().unwrap_or_default(),
            headers_size: e.response_headers_size.map_or(-1, |s| s as i64),
            body_size: if e.status.is_some() {
                e.body_size as i64
            } else {
                -1
            },
        },
        cache: Cache::default(),
        timings,
        server_ip_address: e.server_address.map(|a| a.ip().to_string()),
        connection: e.connection_id.map(|c| c.to_string()),
        connection_reused: Some(e.connection_reused),
        initiator: Some(match &e.initiator {
            Initiator::Document => "document".into(),
            Initiator::Element { tag } => tag.clone(),
        }),
        monotonic: Some(serde_json::json!({ "start_ns": e.span.start_ns, "end_ns": e.span.end_ns, "phases": phases })),
        error: e
            .failure
            .as_ref()
            .map(|f| serde_json::json!({ "phase": f.phase, "code": f.code, "reason": f.detail })),
        dns: e
            .dns_id
            .filter(|_| new_conn)
            .and_then(|id| load.dns.get(id))
            .and_then(|d| serde_json::to_value(d).ok()),
        tls: conn
            .filter(|_| new_conn)
            .and_then(|c| c.tls.as_ref())
            .and_then(|t| serde_json::to_value(t).ok()),
        quic: conn
            .filter(|_| new_conn)
            .and_then(|c| c.quic.as_ref())
            .and_then(|q| serde_json::to_value(q).ok()),
    }
}

/// The load as a HAR 1.2 log with one page, its keys in HAR's order.
pub fn to_har(load: &PageLoad) -> Har {
    let page = Page {
        started_date_time: iso8601_ms(load.started_at_unix_ms),
        id: "page_1".into(),
        title: load.url.clone(),
        page_timings: PageTimings {
            on_content_load: page_timing_ms(load.document_ms.unwrap_or(-1.0)),
            on_load: page_timing_ms(load.total_ms),
        },
        monotonic_start_ns: Some(load.span.start_ns),
        error: load
            .error
            .as_ref()
            .map(|f| serde_json::json!({ "phase": f.phase, "code": f.code, "reason": f.detail })),
        cut: None,
    };
    let entries = load.entries.iter().map(|e| entry(load, e)).collect();
    Har::new(&load.tracer_version, vec![page], entries)
}

impl PageLoad {
    /// [`to_har`].
    pub fn to_har(&self) -> Har {
        to_har(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Span;
    use crate::fetch::model::*;

    fn t(a: u64, b: u64) -> Option<Timed> {
        Some(Span::new(a * 1_000_000, b * 1_000_000).into())
    }

    fn entry(id: usize, reused: bool, tls: bool) -> Entry {
        let base = if reused { 100 } else { 0 };
        Entry {
            id,
            initiator: if id == 0 {
                Initiator::Document
            } else {
                Initiator::Element { tag: "img".into() }
            },
            redirected_from: None,
            hop: 0,
            method: "GET".into(),
            url: format!("https://a.test/{id}?q=1&r=x%20y"),
            origin: "https://a.test".into(),
            span: Span::new(base * 1_000_000, (base + 100) * 1_000_000).into(),
            timings: Timings {
                blocked: t(base, base + 1),
                dns: if reused { None } else { t(1, 20) },
                connect: if reused { None } else { t(20, 30) },
                tls: if reused || !tls { None } else { t(30, 40) },
                send: t(base + 40, base + 41),
                wait: t(base + 41, base + 90),
                receive: t(base + 90, base + 100),
            },
            connection_id: Some(0),
            connection_reused: reused,
            dns_id: (!reused).then_some(0),
            server_address: Some("10.0.0.1:443".parse().unwrap()),
            http_version: Some("HTTP/2".into()),
            request_headers: vec![Header {
                name: "accept".into(),
                value: "*/*".into(),
            }],
            request_headers_size: None,
            status: Some(200),
            status_text: Some("OK".into()),
            response_headers: vec![],
            response_headers_size: None,
            body_size: 10,
            mime_type: Some("text/html".into()),
            redirect_url: None,
            failure: None,
        }
    }

    fn load() -> PageLoad {
        PageLoad {
            input: "a.test".into(),
            url: "https://a.test/".into(),
            final_url: "https://a.test/".into(),
            page: true,
            started_at_unix_ms: 1_700_000_000_000,
            span: Span::new(0, 200_000_000).into(),
            total_ms: 200.0,
            document_ms: Some(100.0),
            entries: vec![entry(0, false, true), entry(1, true, true)],
            connections: vec![],
            dns: vec![],
            subresources_skipped: 0,
            error: None,
            tracer_version: "0.0.0".into(),
        }
    }

    #[test]
    fn har_timings_use_minus_one_and_connect_includes_ssl() {
        let har = to_har(&load());
        let e0 = &har.log.entries[0];
        assert_eq!(
            e0.timings,
            har::Timings {
                blocked: 1.0,
                dns: 19.0,
                connect: 20.0,
                send: 1.0,
                wait: 49.0,
                receive: 10.0,
                ssl: 10.0
            }
        );
        assert_eq!(e0.time, 100.0);
        let e1 = &har.log.entries[1];
        assert_eq!(
            (e1.timings.dns, e1.timings.connect, e1.timings.ssl),
            (-1.0, -1.0, -1.0)
        );
        assert_eq!(e1.time, 61.0);
        assert_eq!(e1.started_date_time, "2023-11-14T22:13:20.100Z");
        assert_eq!(e0.request.query_string.len(), 2);
        assert_eq!(e0.request.query_string[1].value, "x y");
        let v = serde_json::to_value(&har).unwrap();
        assert_eq!(v["log"]["version"], "1.2");
        assert_eq!(v["log"]["entries"][0]["timings"]["ssl"], 10.0);
        assert_eq!(
            v["log"]["entries"][0]["_monotonic"]["phases"]["dns"][0],
            1_000_000
        );
        assert_eq!(v["log"]["entries"][0]["response"]["redirectURL"], "");
        assert_eq!(v["log"]["pages"][0]["pageTimings"]["onLoad"], 200.0);
        // http:// has no TLS: ssl -1, connect = TCP alone.
        let mut l = load();
        l.entries[0] = entry(0, false, false);
        let e = &to_har(&l).log.entries[0];
        assert_eq!((e.timings.connect, e.timings.ssl), (10.0, -1.0));
    }

    #[test]
    fn http3_entry_has_connect_equal_to_ssl_and_its_quic_connection_once() {
        let mut l = load();
        for e in &mut l.entries {
            e.http_version = Some("HTTP/3".into());
            e.timings.connect = None;
        }
        l.connections.push(Connection {
            id: 0,
            origin: "https://a.test".into(),
            host: "a.test".into(),
            dns_id: Some(0),
            attempts: vec![],
            remote: Some("10.0.0.1:443".parse().unwrap()),
            local: None,
            connect: None,
            tls: None,
            http_version: Some("HTTP/3".into()),
            requests: 2,
            bytes_sent: 3000,
            bytes_received: 5000,
            failure: None,
            quic: Some(QuicInfo {
                version: "QUICv1".into(),
                reason: QuicReason::Forced,
                span: t(30, 40).unwrap(),
                wire_handshake: t(32, 39),
                client_hello_packets: 2,
                zero_rtt: false,
                zero_rtt_accepted: None,
                retry: false,
                datagrams_sent: 6,
                datagrams_received: 7,
                failure: None,
            }),
            fell_back_from: None,
        });
        let v = serde_json::to_value(to_har(&l)).unwrap();
        let e0 = &v["log"]["entries"][0];
        assert_eq!((&e0["request"]["httpVersion"], &e0["timings"]["connect"], &e0["timings"]["ssl"]), (&"h3".into(), &10.0.into(), &10.0.into()));
        assert_eq!(e0["_quic"]["reason"], serde_json::to_value(QuicReason::Forced).unwrap());
        assert_eq!((&e0["_quic"]["wire_handshake"]["start_ns"], &e0["_quic"]["wire_handshake"]["ms"]), (&32_000_000.into(), &7.0.into()));
        assert_eq!(e0["_quic"]["datagrams_received"], 7);
        // The second request reused the connection: no handshake, no `_quic`.
        let e1 = &v["log"]["entries"][1];
        assert_eq!((&e1["timings"]["connect"], e1.get("_quic")), (&(-1.0).into(), None));
    }

    #[test]
    fn waterfall_renders_every_entry() {
        let out = crate::fetch::render::waterfall(&load());
        assert!(out.contains("DNS Lookup"), "{out}");
        assert!(out.contains("https://a.test/1?q=1&r=x%20y"), "{out}");
        assert_eq!(
            out.lines()
                .filter(|l| l.contains("|") && l.contains(" ms"))
                .count(),
            2,
            "{out}"
        );
    }
}
