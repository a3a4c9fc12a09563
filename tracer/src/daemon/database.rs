//! The daemon's database calls. Each runs on a runtime thread ([`on_runtime`]), which holds
//! no capability, so that SQLite's connection threads (started by the thread that opens a
//! connection) hold none either (crate::privileges).
use std::path::Path;

use anyhow::Context as _;

use crate::history::{
    self,
    db::{Pools, ReaderOptions},
};

/// Opens (creates, migrates) the database, once its path has been checked
/// ([`history::db_path::check`]), with a hint when it is a permission problem.
pub(super) async fn open(path: &Path) -> anyhow::Result<Pools> {
    let path = path.to_path_buf();
    on_runtime(async move { history::db::open_pools(&path, ReaderOptions::default()).await }).await.map_err(|e| {
        let denied = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
                || c.to_string().contains("unable to open database file")
        });
        if denied {
            e.context("the daemon opens its database without capabilities: the database and its directory must be writable by its user without CAP_DAC_OVERRIDE (the default /var/lib/tracer is)")
        } else {
            e
        }
    })
}

/// Runs `fut` on a runtime thread rather than on the caller's (the main thread, which keeps
/// capabilities): for everything that may start threads of its own (SQLite connections).
pub(super) async fn on_runtime<T: Send + 'static>(fut: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static) -> anyhow::Result<T> {
    tokio::spawn(fut).await.context("a database task failed")?
}
