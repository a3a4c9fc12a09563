//! Lists: filters, sorting and pages over a seeded history.
use super::*;

#[tokio::test]
async fn list_filters_sort_and_pages() {
    let (_dir, _path, pool, id) = seeded().await;
    let all = PageRequest::default();
    let list = |f: Filter, sort: Sort, page: PageRequest| {
        let pool = pool.clone();
        async move { history::list(&pool, &f, sort, page).await.unwrap() }
    };

    let p = list(Filter::default(), Sort::Started, all).await;
    assert_eq!(ids(&p), vec![id[5], id[4], id[3], id[2], id[1], id[0]]);
    assert_eq!(p.total, 6);
    let first = &p.items[5];
    assert_eq!(first.process, "curl");
    assert_eq!(first.host.as_deref(), Some("shop.test"));
    assert_eq!((first.request_count, first.connection_count, first.redirect_count), (3, 2, 1));
    assert_eq!(first.started_at_ms, 1_776_160_800_000);

    // host: exact or suffix on a label boundary.
    let f = Filter { host: Some("shop.test".into()), ..Default::default() };
    assert_eq!(ids(&list(f, Sort::Started, all).await), vec![id[5], id[2], id[0]]);
    let f = Filter { host: Some("CDN.shop.test".into()), ..Default::default() };
    assert_eq!(ids(&list(f, Sort::Started, all).await), vec![id[2]]);
    let f = Filter { host: Some("hop.test".into()), ..Default::default() };
    assert!(ids(&list(f, Sort::Started, all).await).is_empty());
    // url substring, LIKE wildcards taken literally.
    let f = Filter { url: Some("nx.te".into()), ..Default::default() };
    assert_eq!(ids(&list(f, Sort::Started, all).await), vec![id[3]]);
    let f = Filter { url: Some("%".into()), ..Default::default() };
    assert!(ids(&list(f, Sort::Started, all).await).is_empty());
    let f = Filter { url: Some("_hop".into()), ..Default::default() };
    assert!(ids(&list(f, Sort::Started, all).await).is_empty());
    // process
    let f = Filter { process: Some("firefox-esr".into()), ..Default::default() };
    assert_eq!(ids(&list(f, Sort::Started, all).await), vec![id[4], id[1]]);
    // status classes
    for (class, want) in [
        (StatusClass::S2xx, vec![id[1], id[0]]),
        (StatusClass::S3xx, vec![id[5]]),
        (StatusClass::S4xx, vec![id[2]]),
        (StatusClass::S5xx, vec![id[4]]),
        (StatusClass::Error, vec![id[3]]),
    ] {
        let f = Filter { status: Some(class), ..Default::default() };
        assert_eq!(ids(&list(f, Sort::Started, all).await), want, "{class}");
    }
    // time range: [since, until)
    let f = Filter { since_ms: Some(1_776_160_860_000), until_ms: Some(1_776_161_040_000), ..Default::default() };
    assert_eq!(ids(&list(f, Sort::Started, all).await), vec![id[3], id[2], id[1]]);
    // combined
    let f = Filter { process: Some("curl".into()), status: Some(StatusClass::S2xx), ..Default::default() };
    assert_eq!(ids(&list(f, Sort::Started, all).await), vec![id[0]]);

    // sorts: biggest first, ties newest id first
    let p = list(Filter::default(), Sort::Bytes, all).await;
    assert_eq!(p.items[0].id, id[2]);
    assert_eq!(p.items.last().unwrap().id, id[3]);
    let p = list(Filter::default(), Sort::TotalMs, all).await;
    assert_eq!(p.items.last().unwrap().id, id[3]);
    assert!(p.items.windows(2).all(|w| w[0].total_ms >= w[1].total_ms));
    let p = list(Filter::default(), Sort::RequestCount, all).await;
    assert_eq!(p.items.last().unwrap().id, id[3]);
    assert_eq!(p.items[0].id, id[5]);

    // paging
    let p = list(Filter::default(), Sort::Started, PageRequest { limit: 2, offset: 2 }).await;
    assert_eq!(ids(&p), vec![id[3], id[2]]);
    assert_eq!((p.total, p.limit, p.offset), (6, 2, 2));
    let p = list(Filter::default(), Sort::Started, PageRequest { limit: 2, offset: 10 }).await;
    assert!(p.items.is_empty());
    assert_eq!(p.total, 6);

    // malformed input names the parameter
    for (f, page, param) in [
        (Filter::default(), PageRequest { limit: 501, offset: 0 }, "limit"),
        (Filter::default(), PageRequest { limit: 0, offset: 0 }, "limit"),
        (Filter { host: Some("a b".into()), ..Default::default() }, all, "host"),
        (Filter { host: Some("x' OR 1=1 --".into()), ..Default::default() }, all, "host"),
        (Filter { url: Some(String::new()), ..Default::default() }, all, "url"),
        (Filter { since_ms: Some(10), until_ms: Some(5), ..Default::default() }, all, "until"),
    ] {
        match history::list(&pool, &f, Sort::Started, page).await {
            Err(QueryError::Invalid { param: p, .. }) => assert_eq!(p, param),
            other => panic!("{param}: {other:?}"),
        }
    }
    // The dashboard's form of the same.
    let (f, sort, page) = query::parse_params([("status", "5xx"), ("sort", "bytes"), ("limit", "1")]).unwrap();
    assert_eq!(ids(&history::list(&pool, &f, sort, page).await.unwrap()), vec![id[4]]);
    let e = query::parse_params([("status", "600")]).unwrap_err();
    assert!(e.to_string().starts_with("invalid status:"), "{e}");

    // latest N (export --last), oldest first
    let last = query::latest(&pool, &Filter::default(), 2).await.unwrap();
    assert_eq!(last.iter().map(|s| s.id).collect::<Vec<_>>(), vec![id[4], id[5]]);
}
