//! Where the dashboard's token comes from, in this order:
//!
//! 1. `--token-file PATH`: a file the operator made;
//! 2. `TRACER_TOKEN` in the environment (a command-line `--token` would be readable by every
//!    user in `/proc/PID/cmdline`, so there is none);
//! 3. the file `token` beside the database (`/var/lib/tracer/token`), made with a generated
//!    token (32 random bytes, hex) the first time, 0600 and root's, and read at every start
//!    after that, so that the URL a user saved keeps working.
//!
//! A token file must be a regular file (not a symlink) owned by the daemon's user that no one
//! else may read or write: otherwise another user could read the token, or set one they know.
//! The metrics token file (`--metrics-token-file`) is meant to be shared with Prometheus, which
//! runs as a user of its own: it may be readable by its group, but never writable by anyone
//! but its owner, nor a symlink.
use std::{
    io::Write as _,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use super::auth::{TokenError, generate, validate};

/// Name of the generated token's file, in the database's directory.
pub const DEFAULT_FILE: &str = "token";

/// Where the token came from, for the start-up report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token-file`.
    File(PathBuf),
    /// `TRACER_TOKEN`.
    Env,
    /// The file beside the database; `created` on the start that generated it.
    Default { path: PathBuf, created: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("token file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {0} is a symlink: refused; give the real file")]
    Symlink(PathBuf),
    #[error("token file {0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("token file {path} belongs to uid {uid}, not to the daemon's user (uid {euid}): refused")]
    Owner { path: PathBuf, uid: u32, euid: u32 },
    #[error("token file {path} is {what} by other users (mode {mode:04o}): chmod {fix} it")]
    Mode { path: PathBuf, what: &'static str, mode: u32, fix: &'static str },
    #[error("token file {path}: {source}")]
    Token {
        path: PathBuf,
        #[source]
        source: TokenError,
    },
    #[error("TRACER_TOKEN: {0}")]
    Env(#[source] TokenError),
}

/// The dashboard's token (see the module documentation) and where it came from.
pub fn load(token_file: Option<&Path>, env: Option<String>, db: &Path) -> Result<(String, TokenSource), TokenFileError> {
    if let Some(path) = token_file {
        return Ok((read(path, Strictness::Private)?, TokenSource::File(path.to_path_buf())));
    }
    if let Some(t) = env {
        let t = t.trim().to_string();
        validate(&t).map_err(TokenFileError::Env)?;
        return Ok((t, TokenSource::Env));
    }
    let path = beside(db);
    match create(&path) {
        Ok(t) => Ok((t, TokenSource::Default { path, created: true })),
        Err(TokenFileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok((read(&path, Strictness::Private)?, TokenSource::Default { path, created: false }))
        }
        Err(e) => Err(e),
    }
}

/// `--metrics-token-file`: read-only access to `/metrics`.
pub fn load_metrics(path: &Path) -> Result<String, TokenFileError> {
    read(path, Strictness::GroupReadable)
}

/// The default token file for a database: `token` in its directory.
pub fn beside(db: &Path) -> PathBuf {
    db.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).join(DEFAULT_FILE)
}

#[derive(Clone, Copy)]
enum Strictness {
    /// Nobody else may read or write it.
    Private,
    /// Its group may read it; nobody else may write it.
    GroupReadable,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TokenFileError + '_ {
    move |source| TokenFileError::Io { path: path.to_path_buf(), source }
}

fn read(path: &Path, strictness: Strictness) -> Result<String, TokenFileError> {
    let m = std::fs::symlink_metadata(path).map_err(io(path))?;
    if m.file_type().is_symlink() {
        return Err(TokenFileError::Symlink(path.to_path_buf()));
    }
    if !m.is_file() {
        return Err(TokenFileError::NotAFile(path.to_path_buf()));
    }
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).map_err(io(path))?;
    // Checked on what was opened, not on the name (which could change in between).
    let m = f.metadata().map_err(io(path))?;
    let euid = unsafe { libc::geteuid() };
    let mode = m.mode() & 0o7777;
    match strictness {
        Strictness::Private => {
            if m.uid() != euid {
                return Err(TokenFileError::Owner { path: path.to_path_buf(), uid: m.uid(), euid });
            }
            if mode & 0o077 != 0 {
                let what = if mode & 0o022 != 0 { "writable" } else { "readable" };
                return Err(TokenFileError::Mode { path: path.to_path_buf(), what, mode, fix: "600" });
            }
        }
        Strictness::GroupReadable => {
            if mode & 0o022 != 0 {
                return Err(TokenFileError::Mode { path: path.to_path_buf(), what: "writable", mode, fix: "go-w" });
            }
            if mode & 0o004 != 0 {
                return Err(TokenFileError::Mode { path: path.to_path_buf(), what: "readable", mode, fix: "o-r" });
            }
        }
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(&f, 4096), &mut text).map_err(io(path))?;
    let t = text.trim().to_string();
    validate(&t).map_err(|source| TokenFileError::Token { path: path.to_path_buf(), source })?;
    Ok(t)
}

/// Creates `path` (0600, never through a symlink, never over an existing file) with a new token.
fn create(path: &Path) -> Result<String, TokenFileError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io(path))?;
    let t = generate().map_err(|source| TokenFileError::Token { path: path.to_path_buf(), source })?;
    f.write_all(format!("{t}\n").as_bytes()).and_then(|()| f.sync_all()).map_err(io(path))?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn generated_once_beside_the_database_then_read_back() {
        let t = tempfile::tempdir().unwrap();
        let db = t.path().join("t.db");
        let (first, source) = load(None, None, &db).unwrap();
        let path = t.path().join("token");
        assert_eq!(source, TokenSource::Default { path: path.clone(), created: true });
        assert_eq!(first.len(), 64);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (again, source) = load(None, None, &db).unwrap();
        assert_eq!(again, first, "the same token at the next start");
        assert_eq!(source, TokenSource::Default { path: path.clone(), created: false });
        // TRACER_TOKEN and --token-file come first.
        let (env, source) = load(None, Some("from-the-environment-1".into()), &db).unwrap();
        assert_eq!((env.as_str(), source), ("from-the-environment-1", TokenSource::Env));
        let given = t.path().join("given");
        std::fs::write(&given, "given-in-a-file-123456\n").unwrap();
        chmod(&given, 0o600);
        let (file, _) = load(Some(&given), Some("from-the-environment-1".into()), &db).unwrap();
        assert_eq!(file, "given-in-a-file-123456");
        assert!(matches!(load(None, Some("short".into()), &db), Err(TokenFileError::Env(TokenError::Invalid))));
    }

    #[test]
    fn loose_or_symlinked_token_files_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("tok");
        std::fs::write(&f, "a-token-of-sixteen-plus").unwrap();
        chmod(&f, 0o644);
        let e = load(Some(&f), None, &t.path().join("t.db")).unwrap_err();
        assert!(matches!(e, TokenFileError::Mode { what: "readable", .. }), "{e}");
        assert!(e.to_string().contains("chmod 600") && e.to_string().contains("0644"), "{e}");
        chmod(&f, 0o600);
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(matches!(load(Some(&link), None, &t.path().join("t.db")), Err(TokenFileError::Symlink(_))));
        // A symlink where the default file goes is not followed, nor written through.
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&f, other.path().join("token")).unwrap();
        assert!(matches!(load(None, None, &other.path().join("t.db")), Err(TokenFileError::Symlink(_))));
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "a-token-of-sixteen-plus");
        // The metrics token may be shared with Prometheus's group, not with everyone.
        chmod(&f, 0o640);
        assert_eq!(load_metrics(&f).unwrap(), "a-token-of-sixteen-plus");
        chmod(&f, 0o644);
        assert!(matches!(load_metrics(&f), Err(TokenFileError::Mode { what: "readable", .. })));
        chmod(&f, 0o660);
        assert!(matches!(load_metrics(&f), Err(TokenFileError::Mode { what: "writable", .. })));
        std::fs::write(&f, "short").unwrap();
        chmod(&f, 0o600);
        assert!(matches!(load(Some(&f), None, &t.path().join("t.db")), Err(TokenFileError::Token { .. })));
    }
}
