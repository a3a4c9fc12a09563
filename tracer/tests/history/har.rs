//! HAR 1.2 export, checked against the HAR 1.2 schema.
use super::*;

/// The HAR 1.2 structure as a JSON Schema (draft-07 subset: type, required, properties, items,
/// minimum, format date-time), after http://www.softwareishard.com/blog/har-12-spec/.
fn har_schema() -> Value {
    let nv = json!({"type": "object", "required": ["name", "value"],
        "properties": {"name": {"type": "string"}, "value": {"type": "string"}, "comment": {"type": "string"}}});
    let cookie = json!({"type": "object", "required": ["name", "value"],
        "properties": {"name": {"type": "string"}, "value": {"type": "string"}}});
    let opt_ms = json!({"type": "number", "minimum": -1});
    json!({
        "type": "object",
        "required": ["log"],
        "properties": {"log": {
            "type": "object",
            "required": ["version", "creator", "entries"],
            "properties": {
                "version": {"type": "string", "enum": ["1.2"]},
                "creator": {"type": "object", "required": ["name", "version"],
                    "properties": {"name": {"type": "string"}, "version": {"type": "string"}}},
                "pages": {"type": "array", "items": {
                    "type": "object",
                    "required": ["startedDateTime", "id", "title", "pageTimings"],
                    "properties": {
                        "startedDateTime": {"type": "string", "format": "date-time"},
                        "id": {"type": "string"},
                        "title": {"type": "string"},
                        "pageTimings": {"type": "object", "properties": {
                            "onContentLoad": opt_ms, "onLoad": opt_ms}}
                    }}},
                "entries": {"type": "array", "items": {
                    "type": "object",
                    "required": ["startedDateTime", "time", "request", "response", "cache", "timings"],
                    "properties": {
                        "pageref": {"type": "string"},
                        "startedDateTime": {"type": "string", "format": "date-time"},
                        "time": {"type": "number", "minimum": 0},
                        "request": {"type": "object",
                            "required": ["method", "url", "httpVersion", "cookies", "headers", "queryString", "headersSize", "bodySize"],
                            "properties": {
                                "method": {"type": "string"}, "url": {"type": "string"}, "httpVersion": {"type": "string"},
                                "cookies": {"type": "array", "items": cookie},
                                "headers": {"type": "array", "items": nv},
                                "queryString": {"type": "array", "items": nv},
                                "headersSize": {"type": "integer", "minimum": -1},
                                "bodySize": {"type": "integer", "minimum": -1}}},
                        "response": {"type": "object",
                            "required": ["status", "statusText", "httpVersion", "cookies", "headers", "content", "redirectURL", "headersSize", "bodySize"],
                            "properties": {
                                "status": {"type": "integer", "minimum": 0},
                                "statusText": {"type": "string"}, "httpVersion": {"type": "string"},
                                "cookies": {"type": "array", "items": cookie},
                                "headers": {"type": "array", "items": nv},
                                "content": {"type": "object", "required": ["size", "mimeType"], "properties": {
                                    "size": {"type": "integer", "minimum": 0}, "mimeType": {"type": "string"}}},
                                "redirectURL": {"type": "string"},
                                "headersSize": {"type": "integer", "minimum": -1},
                                "bodySize": {"type": "integer", "minimum": -1}}},
                        "cache": {"type": "object"},
                        "timings": {"type": "object", "required": ["send", "wait", "receive"], "properties": {
                            "blocked": opt_ms, "dns": opt_ms, "connect": opt_ms, "ssl": opt_ms,
                            "send": {"type": "number", "minimum": 0},
                            "wait": {"type": "number", "minimum": 0},
                            "receive": {"type": "number", "minimum": 0}}},
                        "serverIPAddress": {"type": "string"},
                        "connection": {"type": "string"}
                    }}}
            }}}
    })
}

/// Checks `v` against the subset of JSON Schema used above; returns every violation.
fn validate(schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "number" => v.is_number(),
            "integer" => v.is_i64() || v.is_u64(),
            "boolean" => v.is_boolean(),
            _ => unreachable!(),
        };
        if !ok {
            errors.push(format!("{at}: expected {t}, got {v}"));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        errors.push(format!("{at}: {v} not in {allowed:?}"));
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64())
        && n < min
    {
        errors.push(format!("{at}: {n} < {min}"));
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time") {
        let s = v.as_str().unwrap_or("");
        if time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_err() {
            errors.push(format!("{at}: {s:?} is not an ISO 8601 date-time"));
        }
    }
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req {
            let r = r.as_str().unwrap();
            if v.get(r).is_none() {
                errors.push(format!("{at}: missing {r}"));
            }
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, s) in props {
            if let Some(child) = v.get(k) {
                validate(s, child, &format!("{at}.{k}"), errors);
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, child) in arr.iter().enumerate() {
            validate(items, child, &format!("{at}[{i}]"), errors);
        }
    }
}

pub(crate) fn assert_valid_har(har: &Value) {
    let mut errors = Vec::new();
    validate(&har_schema(), har, "$", &mut errors);
    assert!(errors.is_empty(), "HAR 1.2 violations:\n{}", errors.join("\n"));
    // What the schema cannot say: pagerefs resolve, time = sum of the phases (connect holds
    // ssl), entries in start order.
    let pages: Vec<&str> = har["log"]["pages"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    let entries = har["log"]["entries"].as_array().unwrap();
    let mut last = String::new();
    for e in entries {
        assert!(pages.contains(&e["pageref"].as_str().unwrap()), "{e}");
        let t = &e["timings"];
        let sum: f64 = ["blocked", "dns", "connect", "send", "wait", "receive"]
            .iter()
            .filter_map(|k| t.get(*k).and_then(Value::as_f64))
            .filter(|v| *v >= 0.0)
            .sum();
        assert!((sum - e["time"].as_f64().unwrap()).abs() < 0.011, "{e}");
        if t["ssl"].as_f64().unwrap() >= 0.0 {
            assert!(t["connect"].as_f64().unwrap() >= t["ssl"].as_f64().unwrap(), "{e}");
        }
        let at = e["startedDateTime"].as_str().unwrap().to_string();
        assert!(at >= last, "entries out of order");
        last = at;
    }
}

#[tokio::test]
async fn har_export_is_valid_har_1_2() {
    let (_dir, _path, pool, id) = seeded().await;
    let pages = query::latest(&pool, &Filter::default(), 6).await.unwrap();
    let har = history::to_har(&pages);
    assert_valid_har(&har);
    let log = &har["log"];
    assert_eq!(log["version"], "1.2");
    assert_eq!(log["creator"]["name"], "tracer");
    assert_eq!(log["pages"].as_array().unwrap().len(), 6);
    assert_eq!(log["entries"].as_array().unwrap().len(), 5 * 3 + 1);
    let p0 = &log["pages"][0];
    assert_eq!(p0["id"], format!("page_{}", id[0]));
    assert_eq!(p0["startedDateTime"], "2026-04-14T10:00:00.000Z");
    assert_eq!(p0["title"], "http://shop.test/");
    assert_eq!(p0["pageTimings"]["onLoad"], 27.1);
    assert_eq!(p0["pageTimings"]["onContentLoad"], -1);
    let nx = log["pages"].as_array().unwrap().iter().find(|p| p["id"] == format!("page_{}", id[3])).unwrap();
    assert_eq!(nx["pageTimings"]["onLoad"], -1);
    assert_eq!(nx["_error"], "ERR_NAME_NOT_RESOLVED");

    // The first page's entries: the redirect hop, the document, the image.
    let e: Vec<&Value> =
        log["entries"].as_array().unwrap().iter().filter(|e| e["pageref"] == format!("page_{}", id[0])).collect();
    assert_eq!(e.len(), 3);
    assert_eq!(e[0]["startedDateTime"], "2026-04-14T10:00:00.000Z");
    assert_eq!(e[1]["startedDateTime"], "2026-04-14T10:00:00.008Z");
    assert_eq!(e[0]["response"]["status"], 301);
    assert_eq!(e[0]["response"]["statusText"], "Moved Permanently");
    assert_eq!(e[0]["response"]["redirectURL"], "https://www.shop.test/");
    assert_eq!(e[0]["serverIPAddress"], "10.0.0.2");
    assert_eq!(e[0]["connection"], "51056");
    assert_eq!(e[0]["timings"]["ssl"], -1.0);
    let doc = e[1];
    assert_eq!(doc["request"]["url"], "https://www.shop.test/?q=*");
    assert_eq!(doc["request"]["queryString"], json!([{"name": "q", "value": "*"}]));
    assert_eq!(doc["request"]["httpVersion"], "HTTP/2");
    assert_eq!(doc["request"]["headers"], json!([]));
    assert_eq!(doc["request"]["cookies"], json!([]));
    assert_eq!(doc["response"]["headersSize"], 120);
    assert_eq!(doc["response"]["bodySize"], 5187 - 120);
    assert_eq!(doc["response"]["content"], json!({"size": 5187 - 120, "mimeType": "text/html"}));
    assert_eq!(doc["serverIPAddress"], "fd00::3");
    assert_eq!(
        doc["timings"],
        json!({"blocked": -1.0, "dns": 1.5, "connect": 4.5, "ssl": 3.5, "send": 0.2, "wait": 6.0, "receive": 1.8})
    );
    assert_eq!(doc["time"], 14.0);
    // A failed lookup: status 0, no sizes, its error, HAR's required phases 0.
    let failed = log["entries"].as_array().unwrap().iter().find(|e| e["pageref"] == format!("page_{}", id[3])).unwrap();
    assert_eq!(failed["response"]["status"], 0);
    assert_eq!(failed["response"]["bodySize"], -1);
    assert_eq!(failed["_error"], "ERR_NAME_NOT_RESOLVED");
    assert_eq!(failed["timings"]["send"], 0.0);
    assert!(failed.get("serverIPAddress").is_none());

    // An empty export is still a HAR.
    assert_valid_har(&history::to_har(&[]));
}

#[test]
fn har_validator_catches_violations() {
    let mut bad = history::to_har(&[StoredPageLoad { id: 1, started_at_ms: 0, page: page(Spec::default()) }]);
    bad["log"]["entries"][0]["timings"]["wait"] = json!(-1);
    bad["log"]["entries"][1]["request"].as_object_mut().unwrap().remove("headersSize");
    bad["log"]["pages"][0]["startedDateTime"] = json!("yesterday");
    bad["log"]["entries"][2]["response"]["status"] = json!("200");
    let mut errors = Vec::new();
    validate(&har_schema(), &bad, "$", &mut errors);
    assert_eq!(errors.len(), 4, "{errors:#?}");
}
