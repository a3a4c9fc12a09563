//! Where the daemon may keep its database. The daemon runs as root and writes its database,
//! the dashboard token and the TLS key beside it; a path another user controls could turn
//! those writes against it (a symlink to `/etc/shadow` as the database, a directory where
//! another user swaps files between the check and the open). So before anything is created:
//!
//! * the database file and its `-wal`, `-shm` and `-journal` companions, when they exist, are
//!   regular files owned by the daemon's user, never symlinks;
//! * its directory is not a symlink, is owned by the daemon's user and is writable by no one
//!   else (group or others), unless `--insecure-db-dir` says the directory is trusted anyway;
//! * every directory above it (after resolving symlinks there, e.g. `/var/run` -> `/run`) is
//!   owned by root or by the daemon's user, and writable by others only with the sticky bit
//!   (`/tmp`): otherwise whoever may rename entries there could swap the directory. This is
//!   OpenSSH's StrictModes rule.
//!
//! A directory that does not exist yet is created 0700 (the daemon sets umask 077 before
//! anything is created, so every file it makes is 0600 as well).
//!
//! The CLI commands that only read (`history`, `show`, `export`, `compare`) do not check: they
//! run as whoever runs them, with that user's rights.
use std::{
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _},
    path::{Path, PathBuf},
};

/// Files SQLite keeps beside the database.
pub const COMPANIONS: &[&str] = &["-wal", "-shm", "-journal"];

#[derive(Debug, thiserror::Error)]
pub enum DbPathError {
    #[error("database {0} is a symlink: refused (a symlink lets whoever made it point the daemon's writes elsewhere); give the real path")]
    SymlinkFile(PathBuf),
    #[error("database directory {0} is a symlink: refused; give the real path")]
    SymlinkDir(PathBuf),
    #[error("database {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("database {path} belongs to uid {uid}, not to the daemon's user (uid {euid}): refused")]
    FileOwner { path: PathBuf, uid: u32, euid: u32 },
    #[error("database directory {path} is not a directory")]
    NotADir { path: PathBuf },
    #[error(
        "database directory {path} belongs to uid {uid}, not to the daemon's user (uid {euid}): that user could swap the database for a symlink; use a directory root owns, or --insecure-db-dir if that user is trusted"
    )]
    DirOwner { path: PathBuf, uid: u32, euid: u32 },
    #[error(
        "database directory {path} is writable by {who} (mode {mode:04o}): anyone there could swap the database for a symlink; chmod go-w it, use another directory, or --insecure-db-dir if they are trusted"
    )]
    DirWritable { path: PathBuf, who: &'static str, mode: u32 },
    #[error(
        "{path}, above the database directory, is {problem}: whoever controls it could swap the database directory; use another path, or --insecure-db-dir if it is trusted"
    )]
    Ancestor { path: PathBuf, problem: String },
    #[error("database path {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DbPathError + '_ {
    move |source| DbPathError::Io { path: path.to_path_buf(), source }
}

/// Checks `db`'s directory (creating it 0700 when missing) and the files there, as described in
/// the module documentation. `insecure_dir` skips the directory's owner and mode checks, and
/// those of the directories above it; symlinks are refused all the same.
pub fn check(db: &Path, insecure_dir: bool) -> Result<(), DbPathError> {
    let euid = unsafe { libc::geteuid() };
    let dir = match db.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.file_type().is_symlink() => return Err(DbPathError::SymlinkDir(dir)),
        Ok(m) if !m.is_dir() => return Err(DbPathError::NotADir { path: dir }),
        Ok(m) => {
            if !insecure_dir {
                check_dir(&dir, &m, euid)?;
                let real = std::fs::canonicalize(&dir).map_err(io(&dir))?;
                if let Some(parent) = real.parent() {
                    check_ancestors(parent, euid)?;
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !insecure_dir
                && let Some(existing) = dir.ancestors().skip(1).find(|a| a.as_os_str().is_empty() || a.exists())
            {
                let existing = if existing.as_os_str().is_empty() { Path::new(".") } else { existing };
                check_ancestors(&std::fs::canonicalize(existing).map_err(io(existing))?, euid)?;
            }
            // Made by us, 0700 whatever the umask: nobody else can have put anything there.
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io(&dir))?;
        }
        Err(e) => return Err(io(&dir)(e)),
    }
    let mut files = vec![db.to_path_buf()];
    files.extend(COMPANIONS.iter().map(|s| with_suffix(db, s)));
    for f in files {
        match std::fs::symlink_metadata(&f) {
            Ok(m) if m.file_type().is_symlink() => return Err(DbPathError::SymlinkFile(f)),
            Ok(m) if !m.is_file() => return Err(DbPathError::NotAFile { path: f }),
            Ok(m) if m.uid() != euid => return Err(DbPathError::FileOwner { path: f, uid: m.uid(), euid }),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&f)(e)),
        }
    }
    Ok(())
}

fn check_dir(dir: &Path, m: &std::fs::Metadata, euid: u32) -> Result<(), DbPathError> {
    if m.uid() != euid {
        return Err(DbPathError::DirOwner { path: dir.to_path_buf(), uid: m.uid(), euid });
    }
    let mode = m.mode() & 0o7777;
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "its group and everyone",
        (true, false) => "its group",
        (false, true) => "everyone",
        (false, false) => return Ok(()),
    };
    Err(DbPathError::DirWritable { path: dir.to_path_buf(), who, mode })
}

/// `dir` (already resolved) and every directory above it, as the module documentation says.
fn check_ancestors(dir: &Path, euid: u32) -> Result<(), DbPathError> {
    for a in dir.ancestors() {
        let m = std::fs::metadata(a).map_err(io(a))?;
        if let Some(problem) = ancestor_problem(&m, euid) {
            return Err(DbPathError::Ancestor { path: a.to_path_buf(), problem });
        }
    }
    Ok(())
}

/// Owned by someone other than root and the daemon's user, or writable by group or others
/// without the sticky bit.
fn ancestor_problem(m: &std::fs::Metadata, euid: u32) -> Option<String> {
    if m.uid() != 0 && m.uid() != euid {
        return Some(format!("owned by uid {}", m.uid()));
    }
    let mode = m.mode() & 0o7777;
    (mode & 0o022 != 0 && mode & 0o1000 == 0).then(|| format!("writable by group or others without the sticky bit (mode {mode:04o})"))
}

/// `tracer.db` + `-wal` -> `tracer.db-wal`.
pub fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_missing_directory_is_created_private() {
        let t = tempfile::tempdir().unwrap();
        let db = t.path().join("a/b/t.db");
        check(&db, false).unwrap();
        for d in [t.path().join("a"), t.path().join("a/b")] {
            assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700, "{}", d.display());
        }
    }

    #[test]
    fn a_pre_existing_directory_is_checked_not_changed() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o755);
        check(&dir.join("t.db"), false).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o755, "left as it was");
        chmod(&dir, 0o777);
        let e = check(&dir.join("t.db"), false).unwrap_err();
        assert!(matches!(e, DbPathError::DirWritable { who: "its group and everyone", .. }), "{e}");
        assert!(e.to_string().contains(&dir.display().to_string()) && e.to_string().contains("0777"), "{e}");
        chmod(&dir, 0o770);
        assert!(matches!(check(&dir.join("t.db"), false), Err(DbPathError::DirWritable { who: "its group", .. })));
        check(&dir.join("t.db"), true).expect("--insecure-db-dir accepts it");
    }

    #[test]
    fn symlinks_are_refused_even_when_the_directory_is_trusted() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, t.path().join("link")).unwrap();
        for insecure in [false, true] {
            let e = check(&t.path().join("link/t.db"), insecure).unwrap_err();
            assert!(matches!(e, DbPathError::SymlinkDir(_)), "{e}");
            assert!(e.to_string().contains("link") && e.to_string().contains("symlink"), "{e}");
        }
        std::os::unix::fs::symlink("/etc/passwd", real.join("t.db")).unwrap();
        assert!(matches!(check(&real.join("t.db"), true), Err(DbPathError::SymlinkFile(_))));
        std::fs::remove_file(real.join("t.db")).unwrap();
        for companion in COMPANIONS {
            let f = with_suffix(&real.join("t.db"), companion);
            std::os::unix::fs::symlink("/etc/passwd", &f).unwrap();
            let e = check(&real.join("t.db"), false).unwrap_err();
            assert!(matches!(&e, DbPathError::SymlinkFile(p) if *p == f), "{companion}: {e}");
            std::fs::remove_file(&f).unwrap();
        }
        check(&real.join("t.db"), false).unwrap();
    }

    /// Needs root: files and directories owned by another user.
    #[test]
    fn other_users_files_and_directories_are_refused() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED other_users_files_and_directories_are_refused: needs root (chown)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        let e = check(&dir.join("t.db"), false).unwrap_err();
        assert!(matches!(e, DbPathError::DirOwner { uid: 65534, .. }), "{e}");
        // Above the directory: a parent another user owns.
        let e = check(&dir.join("sub/t.db"), false).unwrap_err();
        assert!(matches!(&e, DbPathError::Ancestor { path, .. } if *path == dir), "{e}");
        std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
        let db = dir.join("t.db");
        std::fs::write(&db, b"").unwrap();
        std::os::unix::fs::chown(&db, Some(65534), None).unwrap();
        assert!(matches!(check(&db, false), Err(DbPathError::FileOwner { uid: 65534, .. })));
    }
}
