//! A traced page load compared with the reference fetcher's baseline.
use super::*;

pub(crate) fn fetched(url: &str, started_at_unix_ms: i64) -> tracer::fetch::PageLoad {
    use tracer::fetch::model::*;
    let timed = |start_ms: f64, ms: f64| fixtures::timed(T0, start_ms, ms);
    let entry = |id: usize, url: &str, status: u16, t: Timings, initiator: Initiator| fixtures::fetched_entry(T0, id, url, status, t, initiator);
    let (hop, doc) = fixtures::fetched_redirect_timings(T0);
    let img = Timings { wait: timed(13.0, 50.0), ..Default::default() };
    PageLoad {
        input: url.into(),
        url: url.into(),
        final_url: "https://www.shop.test/".into(),
        page: true,
        started_at_unix_ms,
        span: timed(0.0, 20.0).unwrap(),
        total_ms: 20.0,
        document_ms: Some(13.1),
        entries: vec![
            entry(0, url, 301, hop, Initiator::Document),
            entry(1, "https://www.shop.test/", 200, doc, Initiator::Document),
            entry(2, "https://www.shop.test/logo.png", 200, img, Initiator::Element { tag: "img".into() }),
        ],
        connections: vec![],
        dns: vec![],
        subresources_skipped: 0,
        error: None,
        tracer_version: "test".into(),
    }
}

#[tokio::test]
async fn compare_with_and_without_baseline() {
    let (_dir, _path, pool, id) = seeded().await;
    let stored = history::get(&pool, id[0]).await.unwrap().unwrap();
    assert!(history::latest_baseline(&pool, "http://shop.test/").await.unwrap().is_none());

    tracer::history::baselines::store_baseline(&pool, &fetched("http://shop.test/", 1_776_160_700_000)).await.unwrap();
    let newest =
        tracer::history::baselines::store_baseline(&pool, &fetched("http://shop.test/", 1_776_160_750_000)).await.unwrap();
    tracer::history::baselines::store_baseline(&pool, &fetched("http://other.test/", 1_776_160_790_000)).await.unwrap();
    let b = history::latest_baseline(&pool, "http://shop.test/").await.unwrap().unwrap();
    assert_eq!(b.id, newest);
    assert_eq!(b.fetched_at_ms, Some(1_776_160_750_000));
    assert_eq!(b.chain.len(), 2, "document chain only");
    // "http://shop.test" names the same page.
    assert_eq!(history::latest_baseline(&pool, "http://shop.test").await.unwrap().unwrap().id, newest);

    let c = history::compare(&stored, b);
    let row = |name: &str| c.rows.iter().find(|r| r.phase == name).unwrap().clone();
    // traced chain: hop (dns 2, tcp 1, send .1, wait 4, recv .4) + doc (dns 1.5, tcp 1, ssl 3.5,
    // send .2, wait 6, recv 1.8); baseline: hop (1, .5, -, .1, 2, .2) + doc (1, .5, 2.5, .1, 4, 1).
    assert_eq!((row("dns").traced_ms, row("dns").baseline_ms, row("dns").diff_ms), (Some(3.5), Some(2.0), Some(1.5)));
    assert_eq!((row("tcp").traced_ms, row("tcp").baseline_ms, row("tcp").diff_ms), (Some(2.0), Some(1.0), Some(1.0)));
    assert_eq!((row("tls").traced_ms, row("tls").baseline_ms, row("tls").diff_ms), (Some(3.5), Some(2.5), Some(1.0)));
    assert_eq!(row("wait").diff_ms, Some(4.0));
    assert_eq!((row("blocked").traced_ms, row("blocked").baseline_ms, row("blocked").diff_ms), (None, None, None));
    assert_eq!((row("total").traced_ms, row("total").baseline_ms), (Some(27.1), Some(20.0)));
    assert_eq!((c.traced_redirects, c.baseline_redirects), (1, 1));
    assert_eq!((c.traced_status, c.baseline.status), (Some(200), Some(200)));
}
