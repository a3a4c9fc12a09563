//! `tracer history`, `tracer show`, `tracer export`, `tracer compare`: read-only views of the
//! history database. They need no privileges beyond reading (and, for the migrations `db::open`
//! applies, writing) the database file.
use std::{
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use sqlx::SqlitePool;

use super::{
    baseline, har, parse_time,
    query::{self, Filter, PageRequest, Sort, StatusClass},
    render,
};

/// The database, as for `tracer run`.
#[derive(clap::Args, Debug, Clone)]
pub struct DbArg {
    /// SQLite history.
    #[arg(long, env = "TRACER_DB", default_value = "/var/lib/tracer/tracer.db")]
    pub db: PathBuf,
}

fn parse_point(s: &str) -> Result<i64, String> {
    parse_time(s, crate::clock::now_unix_ms())
}

#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Page host, exactly or as a suffix: `shop.test` also matches `www.shop.test`.
    #[arg(long)]
    pub host: Option<String>,
    /// Substring of the page's URL.
    #[arg(long, value_name = "PATTERN")]
    pub url: Option<String>,
    /// Client name, exactly (curl, firefox-esr, chromium).
    #[arg(long, value_name = "NAME")]
    pub process: Option<String>,
    /// Document outcome: 2xx, 3xx, 4xx, 5xx or error.
    #[arg(long)]
    pub status: Option<StatusClass>,
    /// Started after T: a duration ago (30m, 1h, 2d) or an RFC 3339 time.
    #[arg(long, value_name = "T", value_parser = parse_point)]
    pub since: Option<i64>,
    /// Started before T (as --since).
    #[arg(long, value_name = "T", value_parser = parse_point)]
    pub until: Option<i64>,
    /// started (newest first), total_ms, bytes or request_count (largest first).
    #[arg(long, default_value = "started")]
    pub sort: Sort,
    /// Rows to show (1-500).
    #[arg(long, default_value_t = query::DEFAULT_LIMIT, value_parser = clap::value_parser!(u32).range(1..=query::MAX_LIMIT as i64))]
    pub limit: u32,
    /// Rows to skip.
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// One JSON object: {items, total, limit, offset}.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Page load id (from `tracer history`).
    pub id: i64,
    /// The stored page load as JSON instead of the waterfall.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["id", "last"])))]
pub struct ExportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// HAR 1.2 (the only format, and the default).
    #[arg(long)]
    pub har: bool,
    /// Page load id.
    pub id: Option<i64>,
    /// The newest N page loads instead of one.
    #[arg(long, value_name = "N", conflicts_with = "id", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub last: Option<u32>,
    /// Write to FILE (created 0600) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Page load id.
    pub id: i64,
    /// The comparison as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Opens an existing history database (never creates one).
pub async fn open_existing(path: &Path) -> anyhow::Result<SqlitePool> {
    if !path.exists() {
        bail!("no history database at {}: start `tracer run` first, or pass --db (or set TRACER_DB)", path.display());
    }
    crate::history::db::open(path).await
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn emit(s: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

fn json_line(v: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

async fn get_or_fail(pool: &SqlitePool, id: i64, db: &Path) -> anyhow::Result<super::StoredPageLoad> {
    match query::get(pool, id).await? {
        Some(s) => Ok(s),
        None => bail!("no page load with id {id} in {}", db.display()),
    }
}

pub async fn history(a: HistoryArgs) -> anyhow::Result<()> {
    let filter =
        Filter { host: a.host, url: a.url, process: a.process, status: a.status, since_ms: a.since, until_ms: a.until };
    let pool = open_existing(&a.db.db).await?;
    let page = query::list(&pool, &filter, a.sort, PageRequest { limit: a.limit, offset: a.offset }).await?;
    pool.close().await;
    emit(&if a.json { json_line(&page)? } else { render::list(&page) })
}

pub async fn show(a: ShowArgs) -> anyhow::Result<()> {
    let pool = open_existing(&a.db.db).await?;
    let s = get_or_fail(&pool, a.id, &a.db.db).await?;
    pool.close().await;
    emit(&if a.json { json_line(&s)? } else { render::show(&s) })
}

pub async fn export(a: ExportArgs) -> anyhow::Result<()> {
    let pool = open_existing(&a.db.db).await?;
    let pages = match (a.id, a.last) {
        (Some(id), _) => vec![get_or_fail(&pool, id, &a.db.db).await?],
        (None, Some(n)) => query::latest(&pool, &Filter::default(), n).await?,
        (None, None) => bail!("give a page load id or --last N"),
    };
    pool.close().await;
    let text = json_line(&har::to_har(&pages))?;
    match &a.out {
        None => emit(&text),
        Some(path) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
            let entries: usize = pages.iter().map(|p| p.page.requests.len()).sum();
            eprintln!("wrote {} page loads ({entries} entries) to {}", pages.len(), path.display());
            Ok(())
        }
    }
}

pub async fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let pool = open_existing(&a.db.db).await?;
    let s = get_or_fail(&pool, a.id, &a.db.db).await?;
    let Some(url) = s.page.url.clone() else {
        bail!("page load {} has no URL to compare", a.id);
    };
    let base = baseline::latest_baseline(&pool, &url).await?;
    pool.close().await;
    let Some(base) = base else {
        bail!("no baseline for {url}; run `tracer fetch --db {} {url}`", a.db.db.display());
    };
    let c = baseline::compare(&s, base);
    emit(&if a.json { json_line(&c)? } else { render::compare(&c, s.started_at_ms, &s.page.client.name) })
}
