//! The finder's results (and deterministic failures) cached per build-id and finder version.
use std::{
    fs::File,
    io::Write as _,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{BoringSslOffsets, FINDER_VERSION, FindError, PROLOGUE, elf::build_id, find_boringssl};

/// What the cache holds for one build-id: the offsets, or why they could not be found.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct CacheEntry {
    build_id: String,
    finder_version: u32,
    #[serde(default)]
    found: Option<BoringSslOffsets>,
    #[serde(default)]
    error: Option<String>,
}

pub(super) fn cache_file(cache_dir: &Path, build_id: &str) -> PathBuf {
    cache_dir.join(format!("{build_id}.v{FINDER_VERSION}.json"))
}

/// A cached result is used only when its offsets still hold the prologue in this file.
pub(super) fn cached_offsets_hold(path: &Path, o: &BoringSslOffsets) -> bool {
    use std::os::unix::fs::FileExt as _;
    let Ok(f) = File::open(path) else { return false };
    let aead = o.aead.as_ref().map(|a| [a.seal, a.open]).unwrap_or_default().into_iter().filter(|&off| off != 0);
    [o.ssl_write, o.ssl_read, o.ssl_do_handshake].into_iter().chain(aead).all(|off| {
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b, off).is_ok() && b == PROLOGUE
    })
}

pub(super) fn write_cache(cache_dir: &Path, entry: &CacheEntry) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(cache_dir)?;
    let final_path = cache_file(cache_dir, &entry.build_id);
    let tmp = cache_dir.join(format!(".{}.{}.tmp", entry.build_id, std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &final_path)
}

/// Offsets decide where breakpoints go in a browser: only a cache that nobody else can write
/// is trusted (owned by us, not group/world-writable, not a symlink).
pub(super) fn trusted(p: &Path) -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    std::fs::symlink_metadata(p).is_ok_and(|m| m.uid() == euid && m.mode() & 0o022 == 0 && !m.file_type().is_symlink())
}

/// [`find_boringssl`] with a cache in `cache_dir` (e.g. [`DEFAULT_CACHE_DIR`]) keyed by the
/// file's build-id and the finder's version. Deterministic failures are cached too (returned
/// as [`FindError::CachedFailure`]). A cache that cannot be written is logged, not fatal.
pub fn find_cached(path: &Path, cache_dir: &Path) -> Result<BoringSslOffsets, FindError> {
    let build_id = build_id(path)?;
    let file = cache_file(cache_dir, &build_id);
    if cache_dir.exists() && !trusted(cache_dir) {
        tracing::warn!("boringssl cache {} is not owned by us or is writable by others: not used", cache_dir.display());
        return find_boringssl(path);
    }
    if trusted(&file)
        && let Ok(bytes) = std::fs::read(&file)
    {
        match serde_json::from_slice::<CacheEntry>(&bytes) {
            Ok(entry) if entry.build_id == build_id && entry.finder_version == FINDER_VERSION => {
                if let Some(mut found) = entry.found {
                    if found.build_id == build_id && cached_offsets_hold(path, &found) {
                        found.path = path.to_path_buf();
                        found.from_cache = true;
                        return Ok(found);
                    }
                    tracing::warn!(
                        "boringssl cache {} does not match {}: analysing again",
                        file.display(),
                        path.display()
                    );
                } else if let Some(error) = entry.error {
                    return Err(FindError::CachedFailure { build_id, error });
                }
            }
            _ => tracing::warn!("boringssl cache {} unreadable: analysing again", file.display()),
        }
    }
    let result = find_boringssl(path);
    let entry = match &result {
        Ok(found) => Some(CacheEntry {
            build_id: build_id.clone(),
            finder_version: FINDER_VERSION,
            found: Some(found.clone()),
            error: None,
        }),
        Err(e) if e.is_deterministic() => Some(CacheEntry {
            build_id: build_id.clone(),
            finder_version: FINDER_VERSION,
            found: None,
            error: Some(e.to_string()),
        }),
        Err(_) => None,
    };
    if let Some(entry) = entry
        && let Err(e) = write_cache(cache_dir, &entry)
    {
        tracing::warn!("cannot write the boringssl cache in {}: {e}", cache_dir.display());
    }
    result
}

/// Whether a mapped file is worth the finder (see `candidates`): not when its build-id's
/// cache entry says it holds no BoringSSL, nor when a read of its bytes finds no `ssl_lib.cc`
/// path (that is then cached, so the next start of the daemon reads only its ELF header). A
/// file without a build-id is not (the finder keys everything by it).
pub(super) fn may_embed_boringssl(path: &Path, cache_dir: &Path) -> bool {
    let Ok(build_id) = build_id(path) else { return false };
    let file = cache_file(cache_dir, &build_id);
    let usable = !cache_dir.exists() || trusted(cache_dir);
    if usable
        && trusted(&file)
        && let Ok(entry) = std::fs::read(&file).map_err(drop).and_then(|b| serde_json::from_slice::<CacheEntry>(&b).map_err(drop))
        && entry.build_id == build_id
        && entry.finder_version == FINDER_VERSION
    {
        return entry.error.as_deref() != Some(FindError::StringMissing.to_string().as_str());
    }
    if super::candidates::carries_the_signature(path) {
        return true;
    }
    let entry = CacheEntry { build_id, finder_version: FINDER_VERSION, found: None, error: Some(FindError::StringMissing.to_string()) };
    if usable && let Err(e) = write_cache(cache_dir, &entry) {
        tracing::debug!("cannot write the boringssl cache in {}: {e}", cache_dir.display());
    }
    false
}
