//! Byte scans over `.text` and `.rodata`: the file-name string, the `lea`s that load it,
//! direct calls, and the possible starts of the function around an error site.
use super::{MAX_FUNCTION_BYTES, PROLOGUE};

/// Offsets (in `hay`) of `needle` followed by a NUL byte.
pub(crate) fn find_c_string(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    memchr::memmem::find_iter(hay, needle).filter(|&i| hay.get(i + needle.len()) == Some(&0)).collect()
}

/// Offsets (in `hay`) of the C strings that name BoringSSL's `ssl_lib.cc` as a relative
/// source path: Chromium's own `../../third_party/boringssl/src/ssl/ssl_lib.cc`, and the
/// same file inside another tree, such as QtWebEngine's
/// `../../3rdparty/chromium/third_party/boringssl/src/ssl/ssl_lib.cc`. Each offset is the
/// string's start (what the error sites' `lea` loads).
pub(crate) fn find_ssl_lib_cc(hay: &[u8]) -> Vec<usize> {
    find_source_path(hay, SSL_LIB_CC_SUFFIX)
}

/// Offsets (in `hay`) of the C strings that are a relative source path (`../` first) ending
/// in `suffix`, under any tree's prefix (see [`find_ssl_lib_cc`]).
pub(crate) fn find_source_path(hay: &[u8], suffix: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    for end in find_c_string(hay, suffix) {
        // Back to the string's start: the byte after the previous NUL (bounded: a path).
        let floor = end.saturating_sub(MAX_SOURCE_PATH);
        let start = hay[floor..end].iter().rposition(|&b| b == 0).map_or(floor, |z| floor + z + 1);
        if hay[start..end].starts_with(b"../") && hay[start..end].iter().all(|b| b.is_ascii_graphic()) && !out.contains(&start) {
            out.push(start);
        }
    }
    out
}

/// The part of `ssl_lib.cc`'s path that every tree embedding BoringSSL shares.
pub(crate) const SSL_LIB_CC_SUFFIX: &[u8] = b"third_party/boringssl/src/ssl/ssl_lib.cc";
/// The longest source path prefix looked at before [`SSL_LIB_CC_SUFFIX`].
const MAX_SOURCE_PATH: usize = 256;

/// Virtual addresses of every `lea r64, [rip + disp32]` in `text` whose target is `target`
/// (a byte pre-filter: the instruction boundaries are checked later by decoding).
pub(crate) fn scan_rip_lea(text: &[u8], text_vaddr: u64, target: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for j in memchr::memchr_iter(0x8d, text) {
        // REX.W(+R/X/B) 8D modrm(mod=00, rm=101 => rip+disp32) disp32
        if j == 0 || j + 6 > text.len() {
            continue;
        }
        let (rex, modrm) = (text[j - 1], text[j + 1]);
        if rex & 0xf8 != 0x48 || modrm & 0xc7 != 0x05 {
            continue;
        }
        let disp = i32::from_le_bytes([text[j + 2], text[j + 3], text[j + 4], text[j + 5]]);
        let start = text_vaddr + (j - 1) as u64;
        if (start + 7).wrapping_add(disp as i64 as u64) == target {
            out.push(start);
        }
    }
    out
}

/// For each of the sorted `targets`, how many `call rel32` in `text` go there.
pub(crate) fn count_direct_calls(text: &[u8], text_vaddr: u64, targets: &[u64]) -> Vec<usize> {
    let mut counts = vec![0usize; targets.len()];
    if targets.is_empty() {
        return counts;
    }
    let (lo, hi) = (targets[0], targets[targets.len() - 1]);
    for j in memchr::memchr_iter(0xe8, text) {
        if j + 5 > text.len() {
            break;
        }
        let rel = i32::from_le_bytes([text[j + 1], text[j + 2], text[j + 3], text[j + 4]]);
        let to = (text_vaddr + j as u64 + 5).wrapping_add(rel as i64 as u64);
        if to < lo || to > hi {
            continue;
        }
        if let Ok(k) = targets.binary_search(&to) {
            counts[k] += 1;
        }
    }
    counts
}

/// A view of `.text` with its load address.
#[derive(Clone, Copy)]
pub(crate) struct Text<'a> {
    pub bytes: &'a [u8],
    pub vaddr: u64,
}

impl<'a> Text<'a> {
    pub(super) fn end(&self) -> u64 {
        self.vaddr + self.bytes.len() as u64
    }
    pub(super) fn contains(&self, a: u64) -> bool {
        a >= self.vaddr && a < self.end()
    }
    pub(super) fn byte(&self, a: u64) -> Option<u8> {
        if self.contains(a) { Some(self.bytes[(a - self.vaddr) as usize]) } else { None }
    }
    pub(super) fn from(&self, a: u64) -> &'a [u8] {
        &self.bytes[(a - self.vaddr) as usize..]
    }
    /// A 16-byte aligned `push rbp; mov rbp, rsp`.
    pub(super) fn is_prologue(&self, a: u64) -> bool {
        a.is_multiple_of(16) && self.contains(a) && self.from(a).starts_with(&PROLOGUE)
    }
    /// Preceded by int3 padding (or the start of .text): the end of the previous function.
    pub(super) fn is_padded(&self, a: u64) -> bool {
        a == self.vaddr || self.byte(a.wrapping_sub(1)) == Some(0xcc)
    }
}

/// Possible starts of the function holding `site`, nearest first: every aligned prologue
/// going back, up to and including the first one that follows int3 padding.
pub(crate) fn start_candidates(text: Text, site: u64) -> Vec<u64> {
    let mut out = Vec::new();
    if !text.contains(site) {
        return out;
    }
    let floor = site.saturating_sub(MAX_FUNCTION_BYTES).max(text.vaddr);
    let mut a = site & !15;
    while a >= floor {
        if text.is_prologue(a) {
            out.push(a);
            if text.is_padded(a) {
                break;
            }
        }
        if a < 16 {
            break;
        }
        a -= 16;
    }
    out
}
