//! Reading the history: filtered, sorted and paged page-load summaries, and whole page loads.
//!
//! Every value reaches SQL as a bound parameter. Bad input is a [`QueryError::Invalid`] that
//! names the parameter, so that an HTTP API can answer 400 with it.
use std::{fmt, str::FromStr};

use serde::Serialize;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, sqlite::SqliteRow};

use super::{StoredPageLoad, parse_time};
use crate::clock::now_unix_ms;
use crate::stitch::model::PageLoad;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A filter, sort or paging parameter that is not valid (HTTP 400).
    #[error("invalid {param}: {reason}")]
    Invalid { param: &'static str, reason: String },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("page load {id}: stored detail is not readable: {source}")]
    Detail { id: i64, source: serde_json::Error },
}

impl QueryError {
    fn invalid(param: &'static str, reason: impl Into<String>) -> Self {
        QueryError::Invalid { param, reason: reason.into() }
    }
}

/// Page loads by their document's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusClass {
    #[serde(rename = "2xx")]
    S2xx,
    #[serde(rename = "3xx")]
    S3xx,
    #[serde(rename = "4xx")]
    S4xx,
    #[serde(rename = "5xx")]
    S5xx,
    /// No HTTP status: a failed lookup or connect, or a page-level error.
    Error,
}

impl FromStr for StatusClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "2xx" => StatusClass::S2xx,
            "3xx" => StatusClass::S3xx,
            "4xx" => StatusClass::S4xx,
            "5xx" => StatusClass::S5xx,
            "error" => StatusClass::Error,
            _ => return Err(format!("{s:?} is not one of 2xx, 3xx, 4xx, 5xx, error")),
        })
    }
}

impl fmt::Display for StatusClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StatusClass::S2xx => "2xx",
            StatusClass::S3xx => "3xx",
            StatusClass::S4xx => "4xx",
            StatusClass::S5xx => "5xx",
            StatusClass::Error => "error",
        })
    }
}

/// Sort order; every order is descending (newest, slowest, biggest first), ties by id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    #[default]
    Started,
    TotalMs,
    Bytes,
    RequestCount,
}

impl FromStr for Sort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "started" | "started_at" | "time" => Sort::Started,
            "total_ms" | "total" | "duration" => Sort::TotalMs,
            "bytes" | "size" => Sort::Bytes,
            "request_count" | "requests" => Sort::RequestCount,
            _ => return Err(format!("{s:?} is not one of started, total_ms, bytes, request_count")),
        })
    }
}

impl Sort {
    fn order_by(self) -> &'static str {
        match self {
            Sort::Started => "p.started_at_ms DESC, p.id DESC",
            Sort::TotalMs => "p.total_ms DESC, p.id DESC",
            Sort::Bytes => "p.bytes DESC, p.id DESC",
            Sort::RequestCount => "p.request_count DESC, p.id DESC",
        }
    }
}

/// What to list. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The page's host: `shop.test` matches `shop.test` and `www.shop.test`, not `myshop.test`.
    pub host: Option<String>,
    /// A substring of the page's URL (case-insensitive for ASCII).
    pub url: Option<String>,
    /// The client's name, exactly (`curl`, `firefox-esr`).
    pub process: Option<String>,
    pub status: Option<StatusClass>,
    /// Started at or after (unix ms).
    pub since_ms: Option<i64>,
    /// Started before (unix ms).
    pub until_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PageRequest {
    /// 1..=500
    pub limit: u32,
    pub offset: u64,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self { limit: DEFAULT_LIMIT, offset: 0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Rows matching the filter, over all pages, counted up to [`COUNT_CAP`].
    pub total: u64,
    /// More than [`COUNT_CAP`] rows match: `total` is the cap.
    pub total_capped: bool,
    pub limit: u32,
    pub offset: u64,
}

/// One row of the history list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PageLoadSummary {
    pub id: i64,
    pub started_at_ms: i64,
    pub process: String,
    pub tgid: u32,
    pub url: Option<String>,
    pub host: Option<String>,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub total_ms: f64,
    pub request_count: u32,
    pub connection_count: u32,
    pub redirect_count: u32,
    pub bytes: u64,
}

impl Filter {
    /// Checks every field; the error names the parameter.
    pub fn validate(&self) -> Result<(), QueryError> {
        if let Some(h) = &self.host {
            let h = h.trim().trim_start_matches('.');
            if h.is_empty() {
                return Err(QueryError::invalid("host", "empty"));
            }
            if h.len() > 253
                || !h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
            {
                return Err(QueryError::invalid("host", format!("{h:?} is not a host name or address")));
            }
        }
        if let Some(u) = &self.url {
            if u.is_empty() {
                return Err(QueryError::invalid("url", "empty"));
            }
            if u.len() > 2048 {
                return Err(QueryError::invalid("url", "longer than 2048 characters"));
            }
        }
        if self.process.as_ref().is_some_and(|p| p.trim().is_empty()) {
            return Err(QueryError::invalid("process", "empty"));
        }
        for (param, v) in [("since", self.since_ms), ("until", self.until_ms)] {
            if v.is_some_and(|v| v < 0) {
                return Err(QueryError::invalid(param, "before 1970"));
            }
        }
        if let (Some(s), Some(u)) = (self.since_ms, self.until_ms)
            && u < s
        {
            return Err(QueryError::invalid("until", "earlier than since"));
        }
        Ok(())
    }

    fn push_where(&self, q: &mut QueryBuilder<'_, Sqlite>, walk: Walk) {
        q.push(" WHERE 1=1");
        if let Some(h) = &self.host {
            let h = h.trim().trim_start_matches('.').to_ascii_lowercase();
            q.push(" AND (p.host = ").push_bind(h.clone());
            q.push(" OR p.host LIKE ").push_bind(format!("%.{}", escape_like(&h))).push(" ESCAPE '\\')");
        }
        if let Some(u) = &self.url {
            q.push(" AND p.url LIKE ").push_bind(format!("%{}%", escape_like(u))).push(" ESCAPE '\\'");
        }
        if let Some(p) = &self.process {
            // On page_loads' own column, so rows are filtered while the list index is scanned,
            // before the join fetches their process (`+` keeps SQLite on that covering scan
            // rather than reading every row of the process through the process index, and
            // sorting them, when the matches are common).
            q.push(if walk == Walk::List { " AND +" } else { " AND " });
            q.push("p.process_id IN (SELECT id FROM processes WHERE name = ").push_bind(p.trim().to_string()).push(")");
        }
        if let Some(s) = self.status {
            q.push(match s {
                StatusClass::S2xx => " AND p.status BETWEEN 200 AND 299",
                StatusClass::S3xx => " AND p.status BETWEEN 300 AND 399",
                StatusClass::S4xx => " AND p.status BETWEEN 400 AND 499",
                StatusClass::S5xx => " AND p.status BETWEEN 500 AND 599",
                StatusClass::Error => " AND (p.error IS NOT NULL OR p.status IS NULL)",
            });
        }
        if let Some(s) = self.since_ms {
            q.push(" AND p.started_at_ms >= ").push_bind(s);
        }
        if let Some(u) = self.until_ms {
            q.push(" AND p.started_at_ms < ").push_bind(u);
        }
    }
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Parses query-string style parameters (`host`, `url`, `process`, `status`, `since`, `until`,
/// `sort`, `limit`, `offset`), as the dashboard's API receives them. `since`/`until` accept unix
/// ms, a duration ago (`1h`) or RFC 3339. Unknown parameters are errors.
pub fn parse_params<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(Filter, Sort, PageRequest), QueryError> {
    let mut f = Filter::default();
    let mut sort = Sort::default();
    let mut page = PageRequest::default();
    let now = now_unix_ms();
    let time = |param: &'static str, v: &str| -> Result<i64, QueryError> {
        match v.parse::<i64>() {
            Ok(ms) => Ok(ms),
            Err(_) => parse_time(v, now).map_err(|e| QueryError::invalid(param, e)),
        }
    };
    for (k, v) in pairs {
        match k {
            "host" => f.host = Some(v.to_string()),
            "url" => f.url = Some(v.to_string()),
            "process" => f.process = Some(v.to_string()),
            "status" => f.status = Some(v.parse().map_err(|e| QueryError::invalid("status", e))?),
            "since" => f.since_ms = Some(time("since", v)?),
            "until" => f.until_ms = Some(time("until", v)?),
            "sort" => sort = v.parse().map_err(|e| QueryError::invalid("sort", e))?,
            "limit" => {
                page.limit =
                    v.parse().map_err(|_| QueryError::invalid("limit", format!("{v:?} is not a whole number")))?
            }
            "offset" => {
                page.offset =
                    v.parse().map_err(|_| QueryError::invalid("offset", format!("{v:?} is not a whole number")))?
            }
            _ => {
                return Err(QueryError::Invalid { param: "parameter", reason: format!("unknown parameter {k:?}") });
            }
        }
    }
    f.validate()?;
    check_page(page)?;
    Ok((f, sort, page))
}

fn check_page(page: PageRequest) -> Result<(), QueryError> {
    if page.limit == 0 || page.limit > MAX_LIMIT {
        return Err(QueryError::invalid("limit", format!("{} is not between 1 and {MAX_LIMIT}", page.limit)));
    }
    if page.offset > i64::MAX as u64 {
        return Err(QueryError::invalid("offset", "too large"));
    }
    Ok(())
}

const FROM: &str = " FROM page_loads p JOIN processes pr ON pr.id = p.process_id";
/// FROM, walking the list index (see Walk::List).
const FROM_LIST: &str = " FROM page_loads p INDEXED BY page_loads_list JOIN processes pr ON pr.id = p.process_id";

/// The index a filtered list is answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// `page_loads_list`, newest first, testing each entry: quick when the matches are
    /// common, but rare ones (a client's 5xx, failures) make it read the whole history to
    /// count them. Named, not left to the planner: for a common status class it would take
    /// `page_loads_status` and sort a tenth of the history (628 ms at a million page loads).
    List,
    /// `page_loads_process_status`: one range per process (and status class).
    ProcessStatus,
    /// `page_loads_status`: one range of status codes.
    Status,
    /// `page_loads_failed`: only the failures, newest first.
    Failed,
}

impl Walk {
    /// The narrowest index that holds everything `filter` tests, for the default order (the
    /// narrow indexes have no durations or sizes to sort by).
    fn for_filter(filter: &Filter, sort: Sort) -> Walk {
        if sort != Sort::Started || filter.host.is_some() || filter.url.is_some() {
            return Walk::List;
        }
        match (filter.process.is_some(), filter.status) {
            (_, Some(StatusClass::Error)) => Walk::Failed,
            (true, _) => Walk::ProcessStatus,
            (false, Some(_)) => Walk::Status,
            (false, None) => Walk::List,
        }
    }

    fn index(self) -> &'static str {
        match self {
            Walk::List => "page_loads_list",
            Walk::ProcessStatus => "page_loads_process_status",
            Walk::Status => "page_loads_status",
            Walk::Failed => "page_loads_failed",
        }
    }

    /// Whether the index gives the matches in list order. The others give them by status or
    /// process first, and must sort them: they are used only when the matches are at most the
    /// count cap, so the sort stays small; more are found quickly by the list's walk.
    fn in_list_order(self) -> bool {
        matches!(self, Walk::List | Walk::Failed)
    }
}

/// The list counts matching page loads up to this many.
pub const COUNT_CAP: u64 = 10_000;

/// One page of page-load summaries.
pub async fn list(
    pool: &SqlitePool,
    filter: &Filter,
    sort: Sort,
    page: PageRequest,
) -> Result<Page<PageLoadSummary>, QueryError> {
    list_counting_to(pool, filter, sort, page, COUNT_CAP).await
}

async fn list_counting_to(
    pool: &SqlitePool,
    filter: &Filter,
    sort: Sort,
    page: PageRequest,
    cap: u64,
) -> Result<Page<PageLoadSummary>, QueryError> {
    filter.validate()?;
    check_page(page)?;

    // Counting every match of a broad filter scans the whole history (0.5 s at a million
    // page loads): counting stops past the cap. Where a narrow index can answer the filter,
    // the count runs on it, and tells which walk suits the page (see Walk::in_list_order).
    let mut walk = Walk::for_filter(filter, sort);
    let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM (SELECT 1 FROM page_loads p INDEXED BY ");
    count.push(walk.index());
    filter.push_where(&mut count, walk);
    count.push(" LIMIT ").push_bind(cap.min(i64::MAX as u64 - 1) as i64 + 1).push(")");
    let counted: i64 = count.build_query_scalar().fetch_one(pool).await?;
    let counted = counted.max(0) as u64;
    if counted > cap && !walk.in_list_order() {
        walk = Walk::List;
    }

    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT p.id, p.started_at_ms, pr.name, pr.tgid, p.url, p.host, p.status, p.error, p.total_ms,
                p.request_count, p.connection_count, p.redirect_count, p.bytes",
    );
    let this_page = |q: &mut QueryBuilder<'_, Sqlite>| {
        q.push(" ORDER BY ").push(sort.order_by());
        q.push(" LIMIT ").push_bind(page.limit as i64);
        q.push(" OFFSET ").push_bind(page.offset as i64);
    };
    if walk == Walk::List {
        q.push(FROM_LIST);
        filter.push_where(&mut q, walk);
        this_page(&mut q);
    } else {
        // The page's ids from the index alone (at most a sort of `cap` small entries), then
        // only their rows.
        q.push(FROM);
        q.push(" WHERE p.id IN (SELECT p.id FROM page_loads p INDEXED BY ").push(walk.index());
        filter.push_where(&mut q, walk);
        this_page(&mut q);
        q.push(") ORDER BY ").push(sort.order_by());
    }
    let rows = q.build().fetch_all(pool).await?;
    let items = rows.iter().map(summary).collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Page {
        items,
        total: counted.min(cap),
        total_capped: counted > cap,
        limit: page.limit,
        offset: page.offset,
    })
}

/// One `page_loads` row joined with its process, in the column order of the list query
/// (also used by the dashboard's live feed).
pub(crate) fn summary(r: &SqliteRow) -> Result<PageLoadSummary, sqlx::Error> {
    let u = |v: i64| v.max(0) as u64;
    Ok(PageLoadSummary {
        id: r.try_get(0)?,
        started_at_ms: r.try_get(1)?,
        process: r.try_get(2)?,
        tgid: u(r.try_get(3)?) as u32,
        url: r.try_get(4)?,
        host: r.try_get(5)?,
        status: r.try_get::<Option<i64>, _>(6)?.map(|s| s.clamp(0, u16::MAX as i64) as u16),
        error: r.try_get(7)?,
        total_ms: r.try_get(8)?,
        request_count: u(r.try_get(9)?) as u32,
        connection_count: u(r.try_get(10)?) as u32,
        redirect_count: u(r.try_get(11)?) as u32,
        bytes: u(r.try_get(12)?),
    })
}

fn stored(r: &SqliteRow) -> Result<StoredPageLoad, QueryError> {
    let id: i64 = r.try_get(0)?;
    let started_at_ms: i64 = r.try_get(1)?;
    let json: String = r.try_get(2)?;
    let page: PageLoad = serde_json::from_str(&json).map_err(|source| QueryError::Detail { id, source })?;
    Ok(StoredPageLoad { id, started_at_ms, page })
}

/// A whole page load, or None for an unknown id.
pub async fn get(pool: &SqlitePool, id: i64) -> Result<Option<StoredPageLoad>, QueryError> {
    let row = sqlx::query("SELECT id, started_at_ms, detail_json FROM page_loads WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(stored).transpose()
}

/// The newest `n` page loads matching `filter`, oldest first (for `export --last N`).
pub async fn latest(pool: &SqlitePool, filter: &Filter, n: u32) -> Result<Vec<StoredPageLoad>, QueryError> {
    filter.validate()?;
    if n == 0 || n > MAX_LIMIT * 20 {
        return Err(QueryError::invalid("last", format!("{n} is not between 1 and {}", MAX_LIMIT * 20)));
    }
    let mut q = QueryBuilder::<Sqlite>::new("SELECT p.id, p.started_at_ms, p.detail_json");
    q.push(FROM_LIST);
    filter.push_where(&mut q, Walk::List);
    q.push(" ORDER BY p.started_at_ms DESC, p.id DESC LIMIT ").push_bind(n as i64);
    let rows = q.build().fetch_all(pool).await?;
    let mut out = rows.iter().map(stored).collect::<Result<Vec<_>, _>>()?;
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_sort_parse() {
        assert_eq!("2xx".parse::<StatusClass>().unwrap(), StatusClass::S2xx);
        assert_eq!("ERROR".parse::<StatusClass>().unwrap(), StatusClass::Error);
        assert!("200".parse::<StatusClass>().is_err());
        assert_eq!("total_ms".parse::<Sort>().unwrap(), Sort::TotalMs);
        assert_eq!("request_count".parse::<Sort>().unwrap(), Sort::RequestCount);
        assert!("host".parse::<Sort>().is_err());
    }

    fn param_of(e: QueryError) -> &'static str {
        match e {
            QueryError::Invalid { param, .. } => param,
            other => panic!("not a parameter error: {other}"),
        }
    }

    #[test]
    fn params_name_the_bad_one() {
        let (f, sort, page) = parse_params([
            ("host", "shop.test"),
            ("status", "4xx"),
            ("sort", "bytes"),
            ("limit", "10"),
            ("since", "1000"),
        ])
        .unwrap();
        assert_eq!(f.host.as_deref(), Some("shop.test"));
        assert_eq!(f.status, Some(StatusClass::S4xx));
        assert_eq!(f.since_ms, Some(1000));
        assert_eq!(sort, Sort::Bytes);
        assert_eq!(page, PageRequest { limit: 10, offset: 0 });

        assert_eq!(param_of(parse_params([("status", "200")]).unwrap_err()), "status");
        assert_eq!(param_of(parse_params([("sort", "x")]).unwrap_err()), "sort");
        assert_eq!(param_of(parse_params([("limit", "501")]).unwrap_err()), "limit");
        assert_eq!(param_of(parse_params([("limit", "0")]).unwrap_err()), "limit");
        assert_eq!(param_of(parse_params([("limit", "ten")]).unwrap_err()), "limit");
        assert_eq!(param_of(parse_params([("offset", "-1")]).unwrap_err()), "offset");
        assert_eq!(param_of(parse_params([("since", "yesterday")]).unwrap_err()), "since");
        assert_eq!(param_of(parse_params([("since", "2000"), ("until", "1000")]).unwrap_err()), "until");
        assert_eq!(param_of(parse_params([("host", "a b")]).unwrap_err()), "host");
        assert_eq!(param_of(parse_params([("host", "")]).unwrap_err()), "host");
        assert_eq!(param_of(parse_params([("url", "")]).unwrap_err()), "url");
        assert_eq!(param_of(parse_params([("process", " ")]).unwrap_err()), "process");
        let e = parse_params([("hots", "x")]).unwrap_err();
        assert!(e.to_string().contains("unknown parameter \"hots\""), "{e}");
        let e = parse_params([("status", "200")]).unwrap_err();
        assert_eq!(e.to_string(), "invalid status: \"200\" is not one of 2xx, 3xx, 4xx, 5xx, error");
    }

    /// Counting stops past the cap; below it the total is exact.
    #[tokio::test]
    async fn the_count_stops_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::history::db::open(&dir.path().join("t.db")).await.unwrap();
        let pages: Vec<_> = (0..12).map(|i| crate::stitch::sample::failed_dns_page(1_000_000 * (i + 1), "a.test")).collect();
        crate::history::insert_page_loads(&pool, &pages, crate::clock::WallOffset::now()).await.unwrap();
        let page = PageRequest { limit: 3, offset: 0 };
        let capped = list_counting_to(&pool, &Filter::default(), Sort::default(), page, 5).await.unwrap();
        assert_eq!((capped.total, capped.total_capped, capped.items.len()), (5, true, 3));
        let exact = list_counting_to(&pool, &Filter::default(), Sort::default(), page, 12).await.unwrap();
        assert_eq!((exact.total, exact.total_capped), (12, false));
    }

    /// Every walk lists the same page as the list's own walk: the narrow indexes while the
    /// matches are within the cap (with the cap at 1, the list walk answers).
    #[tokio::test]
    async fn every_walk_lists_the_same_page_loads() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::history::db::open(&dir.path().join("t.db")).await.unwrap();
        // Two curl processes (the filter names both) and a wget; statuses in another cycle,
        // with failures (an error, or no status).
        let clients = [(10, "curl"), (11, "curl"), (20, "wget")];
        let statuses = [Some(200), Some(503), Some(204), Some(404), Some(502), None, Some(200)];
        let pages: Vec<_> = (0..42u64)
            .map(|i| {
                let mut p = crate::stitch::sample::redirect_page(1_000_000_000 * (i + 1));
                (p.client.tgid, p.client.name) = (clients[i as usize % 3].0, clients[i as usize % 3].1.into());
                p.status = statuses[i as usize % statuses.len()];
                if i % 11 == 0 {
                    p.error = Some(crate::failure::Failure::from_text("ERR_CONNECTION_RESET"));
                }
                p
            })
            .collect();
        let count = |f: &dyn Fn(&crate::stitch::model::PageLoad) -> bool| pages.iter().filter(|p| f(p)).count() as u64;
        let failed = |p: &crate::stitch::model::PageLoad| p.error.is_some() || p.status.is_none();
        let curl = |p: &crate::stitch::model::PageLoad| p.client.name == "curl";
        let class = |p: &crate::stitch::model::PageLoad, c: u16| p.status.is_some_and(|s| s / 100 == c);
        crate::history::insert_page_loads(&pool, &pages, crate::clock::WallOffset::now()).await.unwrap();
        let page = PageRequest { limit: 3, offset: 1 };
        let f = |process: Option<&str>, status: Option<StatusClass>| Filter {
            process: process.map(Into::into),
            status,
            ..Default::default()
        };
        // The page expected: newest first, the second to the fourth match.
        let expect = |f: &dyn Fn(&crate::stitch::model::PageLoad) -> bool| {
            let m: Vec<_> = pages.iter().rev().filter(|p| f(p)).skip(1).take(3).map(|p| (p.client.name.clone(), p.status, p.error.as_ref().map(crate::failure::Failure::text))).collect();
            m
        };
        for (f, walk, matches, want) in [
            (f(Some("curl"), None), Walk::ProcessStatus, count(&curl), expect(&curl)),
            (f(Some("curl"), Some(StatusClass::S5xx)), Walk::ProcessStatus, count(&|p| curl(p) && class(p, 5)), expect(&|p| curl(p) && class(p, 5))),
            (f(Some("wget"), Some(StatusClass::S2xx)), Walk::ProcessStatus, count(&|p| !curl(p) && class(p, 2)), expect(&|p| !curl(p) && class(p, 2))),
            (f(None, Some(StatusClass::S4xx)), Walk::Status, count(&|p| class(p, 4)), expect(&|p| class(p, 4))),
            (f(None, Some(StatusClass::Error)), Walk::Failed, count(&failed), expect(&failed)),
            (f(Some("curl"), Some(StatusClass::Error)), Walk::Failed, count(&|p| curl(p) && failed(p)), expect(&|p| curl(p) && failed(p))),
        ] {
            assert_eq!(Walk::for_filter(&f, Sort::Started), walk, "{f:?}");
            assert!(matches > 4, "{f:?}: {matches} matches are too few to page through");
            let narrow = list_counting_to(&pool, &f, Sort::Started, page, 100).await.unwrap();
            let by_list = list_counting_to(&pool, &f.clone(), Sort::Bytes, page, 100).await.unwrap();
            let capped = list_counting_to(&pool, &f, Sort::Started, page, 1).await.unwrap();
            assert_eq!((narrow.total, narrow.total_capped), (matches, false), "{f:?}");
            assert_eq!((by_list.total, capped.total, capped.total_capped), (matches, 1, true), "{f:?}");
            assert_eq!(narrow.items, capped.items, "{f:?}");
            let got: Vec<_> = narrow.items.iter().map(|s| (s.process.clone(), s.status, s.error.clone())).collect();
            assert_eq!(got, want, "{f:?}");
            if let Some(name) = f.process.as_deref() {
                assert!(narrow.items.iter().all(|s| s.process == name), "{f:?}");
            }
            assert!(narrow.items.windows(2).all(|w| w[0].started_at_ms > w[1].started_at_ms), "{f:?}");
        }
        // What the narrow indexes cannot answer goes the list's way.
        assert_eq!(Walk::for_filter(&f(Some("curl"), None), Sort::Bytes), Walk::List);
        assert_eq!(Walk::for_filter(&Filter { host: Some("a.test".into()), ..f(Some("curl"), None) }, Sort::Started), Walk::List);
        assert_eq!(Walk::for_filter(&Filter::default(), Sort::Started), Walk::List);
    }

    #[test]
    fn like_is_escaped() {
        assert_eq!(escape_like("a%b_c\\d"), "a\\%b\\_c\\\\d");
    }
}
