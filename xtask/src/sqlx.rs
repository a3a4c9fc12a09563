//! `cargo xtask sqlx [--check]`: the query data that sqlx's compile-checked macros
//! (`sqlx::query!`, `query_as!`, `query_scalar!` in tracer/src/history) are checked against,
//! committed in `.sqlx/` so that a build needs no database.
//!
//! A macro checks its SQL against a live database when DATABASE_URL is set, and else reads
//! `.sqlx/query-HASH.json` (HASH: of the SQL text); without that file the build fails. This
//! makes those files the way `cargo sqlx prepare --workspace` does, without sqlx-cli: a
//! scratch database with every migration applied (`sqlite3`), the tracer crate's sources
//! touched so that its macros expand again, then `cargo build -p tracer --lib` with
//! DATABASE_URL, SQLX_OFFLINE=false and SQLX_OFFLINE_DIR: each macro writes its query's file
//! there (sqlx-macros-core, `QueryData::save_in`).
//!
//! `--check` makes them in `target/sqlx-check` and fails unless `.sqlx/` holds the same
//! files with the same JSON: a query changed without its data, or a migration that changed
//! what a query returns. `cargo xtask test` runs it under CI=true.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{setup::step, util};

/// Refreshes `.sqlx/` (or, with `check`, compares a fresh copy with it).
pub fn sqlx(check: bool) -> Result<()> {
    let root = util::workspace_root();
    let committed = root.join(".sqlx");
    let out = if check { util::target_dir().join("sqlx-check") } else { committed.clone() };
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for old in query_files(&out)? {
        fs::remove_file(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    let db = util::target_dir().join("sqlx-schema.db");
    migrated_database(&root.join("migrations"), &db)?;
    touch_sources(&root.join("tracer/src"))?;
    step("sqlx", &format!("expanding the query macros against {}", db.display()));
    let mut build = Command::new("cargo");
    build
        .current_dir(&root)
        .args(["build", "-p", "tracer", "--lib"])
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("SQLX_OFFLINE", "false")
        .env("SQLX_OFFLINE_DIR", &out);
    util::run(&mut build)?;
    let made = query_files(&out)?;
    if made.is_empty() {
        bail!("no query data was written to {}: did the build expand the macros?", out.display());
    }
    if !check {
        step("sqlx", &format!("{} queries in {}: commit them", made.len(), committed.display()));
        return Ok(());
    }
    let differences = compare(&committed, &out)?;
    if !differences.is_empty() {
        bail!(
            ".sqlx/ does not match the queries and migrations ({}); run `cargo xtask sqlx` and commit .sqlx/",
            differences.join("; ")
        );
    }
    step("sqlx", &format!(".sqlx/ holds the data of all {} queries", made.len()));
    Ok(())
}

/// A new SQLite database at `db` with every migration of `dir` applied, in name order.
fn migrated_database(dir: &Path, db: &Path) -> Result<()> {
    let _ = fs::remove_file(db);
    let sqlite3 = util::find_in_path("sqlite3").context("sqlite3 is not installed (Debian package sqlite3)")?;
    let mut migrations: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    migrations.sort();
    for m in &migrations {
        let sql = fs::File::open(m).with_context(|| format!("opening {}", m.display()))?;
        let mut cmd = Command::new(&sqlite3);
        cmd.arg(db).stdin(sql);
        util::run(&mut cmd).with_context(|| format!("applying {}", m.display()))?;
    }
    Ok(())
}

/// Makes cargo compile the tracer crate again (its macros read no file cargo tracks).
fn touch_sources(dir: &Path) -> Result<()> {
    let lib = dir.join("lib.rs");
    let text = fs::read(&lib).with_context(|| format!("reading {}", lib.display()))?;
    fs::write(&lib, text).with_context(|| format!("touching {}", lib.display()))
}

fn query_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("query-") && n.ends_with(".json")))
        .collect();
    files.sort();
    Ok(files)
}

/// What differs between the committed query files and fresh ones, by file name.
fn compare(committed: &Path, fresh: &Path) -> Result<Vec<String>> {
    let names = |dir: &Path| -> Result<BTreeSet<String>> {
        Ok(query_files(dir)?.iter().filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect())
    };
    let (old, new) = (if committed.exists() { names(committed)? } else { BTreeSet::new() }, names(fresh)?);
    let mut out = Vec::new();
    for n in new.difference(&old) {
        out.push(format!("missing {n}"));
    }
    for n in old.difference(&new) {
        out.push(format!("no longer used: {n}"));
    }
    for n in new.intersection(&old) {
        let a = fs::read_to_string(committed.join(n))?;
        let b = fs::read_to_string(fresh.join(n))?;
        if a.trim_end() != b.trim_end() {
            out.push(format!("{n} differs"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_names_what_differs() {
        let dir = std::env::temp_dir().join(format!("xtask-sqlx-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        for d in [&a, &b] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(a.join("query-1.json"), "{}\n").unwrap();
        fs::write(b.join("query-1.json"), "{}").unwrap();
        fs::write(a.join("query-2.json"), "{\"x\": 1}").unwrap();
        fs::write(b.join("query-2.json"), "{\"x\": 2}").unwrap();
        fs::write(a.join("query-3.json"), "{}").unwrap();
        fs::write(b.join("query-4.json"), "{}").unwrap();
        fs::write(b.join("notes.txt"), "not query data").unwrap();
        let got = compare(&a, &b).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(got, vec!["missing query-4.json", "no longer used: query-3.json", "query-2.json differs"]);
    }
}
