//! The sub-resources a browser would load for a document: `img[src]`, `script[src]` and
//! `link[rel~=stylesheet][href]`, resolved against the document URL (or its `<base href>`).

use scraper::{Html, Selector};
use url::Url;

/// A sub-resource reference found in a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subresource {
    /// `img`, `script` or `link`.
    pub tag: String,
    pub url: Url,
}

/// Sub-resources of `html` in document order, without duplicates and without anything that
/// is not http(s). Returns at most `limit` of them, and how many more there were.
pub fn subresources(html: &str, document_url: &Url, limit: usize) -> (Vec<Subresource>, usize) {
    let doc = Html::parse_document(html);
    let sel = |s: &str| Selector::parse(s).expect("static selector");
    let base = doc
        .select(&sel("base[href]"))
        .next()
        .and_then(|b| b.value().attr("href"))
        .and_then(|h| document_url.join(h.trim()).ok())
        .unwrap_or_else(|| document_url.clone());
    let all = sel("img[src], script[src], link[href]");
    let mut out: Vec<Subresource> = Vec::new();
    let mut more = 0;
    let mut seen = std::collections::HashSet::new();
    for el in doc.select(&all) {
        let v = el.value();
        let tag = v.name().to_ascii_lowercase();
        let reference = match tag.as_str() {
            "img" | "script" => v.attr("src"),
            "link" => {
                let rel = v.attr("rel").unwrap_or("");
                if rel
                    .split_ascii_whitespace()
                    .any(|t| t.eq_ignore_ascii_case("stylesheet"))
                {
                    v.attr("href")
                } else {
                    None
                }
            }
            _ => None,
        };
        let Some(reference) = reference.map(str::trim).filter(|r| !r.is_empty()) else {
            continue;
        };
        let Ok(mut url) = base.join(reference) else {
            continue;
        };
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            continue;
        }
        url.set_fragment(None);
        if seen.contains(&url) {
            continue;
        }
        seen.insert(url.clone());
        if out.len() >= limit {
            more += 1;
            continue;
        }
        out.push(Subresource { tag, url });
    }
    (out, more)
}

/// Whether a Content-Type names an HTML document.
pub fn is_html(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case("text/html")
            || essence.eq_ignore_ascii_case("application/xhtml+xml")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_img_script_stylesheet() {
        let base = Url::parse("https://www.shop.test/dir/page.html").unwrap();
        let html = r#"<!doctype html><html><head>
            <link rel="stylesheet" href="/a.css"><link rel="icon" href="/favicon.ico">
            <link rel="preload stylesheet" href="b.css">
            <script src="https://static.shop.test/app.js"></script><script>inline()</script>
            </head><body><img src="img/x.png#frag"><img src="img/x.png"><img src="data:image/png;base64,AA==">
            <img src="javascript:alert(1)"><img src=""><IMG SRC="//cdn.test/y.png"></body></html>"#;
        let (subs, more) = subresources(html, &base, 100);
        let got: Vec<(String, String)> = subs
            .iter()
            .map(|s| (s.tag.clone(), s.url.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("link".into(), "https://www.shop.test/a.css".into()),
                ("link".into(), "https://www.shop.test/dir/b.css".into()),
                ("script".into(), "https://static.shop.test/app.js".into()),
                ("img".into(), "https://www.shop.test/dir/img/x.png".into()),
                ("img".into(), "https://cdn.test/y.png".into()),
            ]
        );
        assert_eq!(more, 0);
        let (subs, more) = subresources(html, &base, 2);
        assert_eq!(subs.len(), 2);
        assert_eq!(more, 3);
    }

    #[test]
    fn base_href_and_lab_page() {
        let base = Url::parse("http://a.test/x/").unwrap();
        let (subs, _) = subresources(
            r#"<base href="https://b.test/s/"><img src="i.png">"#,
            &base,
            10,
        );
        assert_eq!(subs[0].url.as_str(), "https://b.test/s/i.png");
        let page = Url::parse("https://www.shop.test/").unwrap();
        let (subs, _) = subresources(crate::lab::PAGE_HTML, &page, 10);
        assert_eq!(subs.len(), 3);
        assert!(
            subs.iter()
                .all(|s| s.url.host_str() == Some("static.shop.test"))
        );
    }

    #[test]
    fn html_content_types() {
        assert!(is_html(Some("text/html; charset=utf-8")));
        assert!(is_html(Some("TEXT/HTML")));
        assert!(!is_html(Some("text/plain")));
        assert!(!is_html(None));
    }
}
