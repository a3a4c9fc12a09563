//! The `history` / `show` / `export` / `compare` commands, through the binary.
use super::*;
use crate::{compare::fetched, har::assert_valid_har};

fn tracer(db: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tracer"))
        .args(args)
        .arg("--db")
        .arg(db)
        .env_remove("TRACER_DB")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[tokio::test]
async fn cli_history_show_export_compare() {
    let (dir, path, pool, id) = seeded().await;

    // history
    let (code, out, err) = tracer(&path, &["history"]);
    assert_eq!(code, 0, "{err}");
    println!("{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("ID") && lines[0].contains("URL"), "{out}");
    assert_eq!(lines.len(), 1 + 6 + 1, "{out}");
    assert!(lines[1].trim_start().starts_with(&id[5].to_string()), "newest first:\n{out}");
    assert!(out.contains("ERR_NAME_NOT_RESOLVED"), "{out}");
    assert!(out.contains("2026-04-14 10:00:00.000"), "{out}");
    assert!(lines.last().unwrap().contains("of 6 page loads"), "{out}");

    let (code, out, err) = tracer(&path, &["history", "--host", "shop.test", "--status", "2xx", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["total"], 1);
    assert_eq!(v["items"][0]["id"], id[0]);
    let (code, out, _) =
        tracer(&path, &["history", "--process", "firefox-esr", "--since", "2026-04-14T10:01:30Z", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect::<Vec<_>>(),
        vec![id[4]]
    );
    // --since 1h: all synthetic page loads are in 2026-04-14 (the past or the future, it does
    // not matter: the filter is checked against a fixed set above), so only check it parses.
    let (code, _, err) = tracer(&path, &["history", "--since", "1h"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = tracer(&path, &["history", "--status", "200"]);
    assert_eq!(code, 2);
    assert!(err.contains("2xx, 3xx, 4xx, 5xx, error"), "{err}");
    let (code, _, err) = tracer(&path, &["history", "--since", "yesterday"]);
    assert_eq!(code, 2);
    assert!(err.contains("RFC 3339"), "{err}");
    let (code, _, err) = tracer(&path, &["history", "--limit", "501"]);
    assert_eq!(code, 2, "{err}");

    // show
    let (code, out, err) = tracer(&path, &["show", &id[0].to_string()]);
    assert_eq!(code, 0, "{err}");
    println!("{out}");
    assert!(out.contains(&format!("page load {}  http://shop.test/", id[0])), "{out}");
    assert!(out.contains("client curl[100] (/usr/bin/curl)"), "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.contains('|')).collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(rows[0].contains("GET") && rows[0].contains("301") && rows[0].contains("shop.test/"), "{}", rows[0]);
    assert!(
        rows[1].contains("www.shop.test/?q=*") && rows[1].contains("HTTP/2") && rows[1].contains("3.50"),
        "{}",
        rows[1]
    );
    // The hop starts at 0 with its DNS; the image starts later (bar offset).
    let bar = |row: &str| row.split('|').nth(1).unwrap().to_string();
    assert!(bar(rows[0]).starts_with('d'), "{}", rows[0]);
    assert!(bar(rows[2]).starts_with(' '), "{}", rows[2]);
    assert!(bar(rows[1]).contains('s') && bar(rows[1]).contains('w'), "{}", rows[1]);
    assert_eq!(bar(rows[0]).chars().count(), 40);
    assert!(out.contains("Redirect chain"), "{out}");
    assert!(out.contains("-> https://www.shop.test/"), "{out}");
    assert!(out.contains("CNAME www.shop.test -> edge.cdn.test"), "{out}");
    assert!(out.contains("addresses 10.0.0.3, fd00::3  (min TTL 60 s)"), "{out}");
    assert!(
        out.contains("TLS openssl  TLSv1.3  TLS_AES_256_GCM_SHA384  alpn h2  sni www.shop.test  handshake 3.50 ms"),
        "{out}"
    );
    assert!(out.contains("[fd00::9]:51060 -> [fd00::3]:443"), "{out}");

    let (code, out, _) = tracer(&path, &["show", &id[3].to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("error ERR_NAME_NOT_RESOLVED"), "{out}");

    let (code, out, err) = tracer(&path, &["show", &id[0].to_string(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: StoredPageLoad = serde_json::from_str(&out).unwrap();
    assert_eq!(v, history::get(&pool, id[0]).await.unwrap().unwrap());

    let (code, out, err) = tracer(&path, &["show", "4242"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("no page load with id 4242"), "{err}");

    // export
    let (code, out, err) = tracer(&path, &["export", "--har", &id[0].to_string()]);
    assert_eq!(code, 0, "{err}");
    let har: Value = serde_json::from_str(&out).unwrap();
    assert_valid_har(&har);
    assert_eq!(har["log"]["pages"].as_array().unwrap().len(), 1);
    assert_eq!(har["log"]["entries"].as_array().unwrap().len(), 3);
    let file = dir.path().join("last.har");
    let (code, out, err) = tracer(&path, &["export", "--har", "--last", "2", "--out", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("wrote 2 page loads (6 entries)"), "{err}");
    let har: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_valid_har(&har);
    let page_ids: Vec<&str> =
        har["log"]["pages"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(page_ids, [format!("page_{}", id[4]), format!("page_{}", id[5])]);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let (code, _, err) = tracer(&path, &["export", "--har", "4242"]);
    assert_eq!(code, 1);
    assert!(err.contains("no page load with id 4242"), "{err}");
    let (code, _, err) = tracer(&path, &["export", "--har"]);
    assert_eq!(code, 2, "{err}");

    // compare, before and after a baseline exists
    let (code, out, err) = tracer(&path, &["compare", &id[0].to_string()]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains(&format!(
            "no baseline for http://shop.test/; run `tracer fetch --db {} http://shop.test/`",
            path.display()
        )),
        "{err}"
    );
    tracer::history::baselines::store_baseline(&pool, &fetched("http://shop.test/", 1_776_160_750_000)).await.unwrap();
    let (code, out, err) = tracer(&path, &["compare", &id[0].to_string()]);
    assert_eq!(code, 0, "{err}");
    println!("{out}");
    assert!(out.contains("baseline 1  http://shop.test/  (tracer fetch, 2026-04-14 09:59:10.000 UTC)"), "{out}");
    let line = |name: &str| {
        out.lines().find(|l| l.trim_start().starts_with(name)).unwrap_or_else(|| panic!("{name}: {out}")).to_string()
    };
    let words = |l: String| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(words(line("dns")), ["dns", "3.50", "2.00", "+1.50"]);
    assert_eq!(words(line("tls")), ["tls", "3.50", "2.50", "+1.00"]);
    assert_eq!(words(line("blocked")), ["blocked", "-", "-", "-"]);
    assert_eq!(words(line("total")), ["total", "27.10", "20.00", "+7.10"]);
    let (code, out, _) = tracer(&path, &["compare", &id[0].to_string(), "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["baseline"]["id"], 1);
    let (code, _, err) = tracer(&path, &["compare", "4242"]);
    assert_eq!(code, 1);
    assert!(err.contains("no page load with id 4242"), "{err}");

    // A database that does not exist is not created.
    let missing = dir.path().join("nope.db");
    let (code, _, err) = tracer(&missing, &["history"]);
    assert_eq!(code, 1);
    assert!(err.contains("no history database at"), "{err}");
    assert!(!missing.exists());
}
