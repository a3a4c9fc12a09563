//! QPACK (RFC 9204): one decoder per direction, its dynamic table fed by that direction's
//! encoder stream, and the field sections of HEADERS frames decoded against it.
//!
//! Our own rather than a crate: the one QPACK crate (`ls-qpack-rs`, bindings to the ls-qpack C
//! library) builds C with cmake and bindgen (libclang) into a daemon whose other decoders are
//! all safe Rust, under the fuzz targets' sanitizer build too, and its decoder is a live
//! endpoint's: it wants the encoder stream in order and whole, and blocks on what has not
//! arrived, where an observer must say which header blocks a capture gap made undecodable and
//! never decode one wrongly. The decoder side of QPACK is small (this file and the static
//! table); the Huffman code is HPACK's, taken from `loona-hpack` (already the HTTP/2 decoder).
//!
//! **Gaps.** Unlike HPACK, decoding a field section never changes the table: only the encoder
//! stream does, and a field section names the entries it needs by absolute index (its Required
//! Insert Count). So a HEADERS frame lost or cut by the capture costs only its own exchange,
//! and a field section that needs entries not yet received waits for them (a blocked stream,
//! bounded by the connection). Bytes lost on the *encoder* stream lose its instruction
//! boundaries: no insert is read after them ([`Decoder::lost`]). The entries before the loss
//! stay right (a field section that needs no later one still decodes exactly), a field section
//! whose Required Insert Count is past them fails. One catch: the Required Insert Count is sent
//! modulo `2 * MaxEntries`, and reads back unambiguously only while the decoder's count is
//! within `MaxEntries` of the encoder's. Every insert instruction takes at least one byte, so
//! while the encoder stream has moved at most `MaxEntries` bytes past the loss that still
//! holds; past that, any field section that uses the dynamic table fails rather than risk a
//! wrong reading.

use std::collections::VecDeque;

use loona_hpack::huffman::HuffmanDecoder;

use super::qpack_static::STATIC_TABLE;
use crate::decode::http::h2::Decoded;

/// Largest dynamic table kept (browsers allow 64 KiB; a larger one fails references to the
/// entries we evicted early, never decodes them wrongly).
pub const MAX_QPACK_TABLE: usize = 64 * 1024;
/// Most bytes of encoder stream held waiting for the rest of an instruction (two strings of
/// at most a table's size).
const MAX_INSTRUCTION: usize = 2 * MAX_QPACK_TABLE + 32;

/// Why a field section or an encoder instruction could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QpackError {
    #[error("QPACK data ends inside the {0}")]
    Truncated(&'static str),
    #[error("QPACK integer too large in the {0}")]
    IntegerTooLarge(&'static str),
    #[error("invalid Huffman string in the {what}: {why}")]
    Huffman { what: &'static str, why: String },
    #[error("static table index {0} (it has 99 entries)")]
    StaticIndex(u64),
    #[error("dynamic table entry {abs} not held (entries {first}..{end} are)")]
    DynamicIndex { abs: u64, first: u64, end: u64 },
    #[error("a reference to dynamic entry {abs}, at or past the Required Insert Count {required}")]
    PastRequired { abs: u64, required: u64 },
    #[error("a reference before entry 0 (Base {base}, relative index {index})")]
    BeforeStart { base: u64, index: u64 },
    #[error("Required Insert Count encoded as {encoded} is invalid with MaxEntries {max_entries}")]
    InsertCount { encoded: u64, max_entries: u64 },
    #[error("Base below zero (Required Insert Count {required}, Delta Base {delta})")]
    NegativeBase { required: u64, delta: u64 },
    #[error("dynamic table capacity {capacity} above the maximum {max} the peer allowed")]
    Capacity { capacity: u64, max: u64 },
    #[error("an entry of {size} bytes does not fit the table capacity {capacity}")]
    EntryTooLarge { size: usize, capacity: usize },
    #[error("an encoder instruction longer than {MAX_INSTRUCTION} bytes")]
    InstructionTooLong,
    #[error(
        "the field section uses the dynamic table but the peer's SETTINGS_QPACK_MAX_TABLE_CAPACITY was not seen"
    )]
    NoSettings,
    #[error(
        "the field section needs dynamic table entries lost in a capture gap on the encoder stream ({0})"
    )]
    EncoderLost(String),
}

/// A cursor over a field section or encoder instructions.
struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cur<'a> {
    fn u8(&mut self, what: &'static str) -> Result<u8, QpackError> {
        let v = *self.b.get(self.pos).ok_or(QpackError::Truncated(what))?;
        self.pos += 1;
        Ok(v)
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], QpackError> {
        let rest = &self.b[self.pos..];
        if (rest.len() as u64) < n {
            return Err(QpackError::Truncated(what));
        }
        self.pos += n as usize;
        Ok(&rest[..n as usize])
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.b.len()
    }

    /// An integer with an `bits`-bit prefix in `first` (RFC 7541 5.1, RFC 9204 4.1.1).
    fn int(&mut self, first: u8, bits: u8, what: &'static str) -> Result<u64, QpackError> {
        let mask: u8 = if bits >= 8 { 0xff } else { (1u8 << bits) - 1 };
        let mut v = u64::from(first & mask);
        if v < u64::from(mask) {
            return Ok(v);
        }
        let mut shift = 0u32;
        loop {
            let b = self.u8(what)?;
            if shift > 55 {
                return Err(QpackError::IntegerTooLarge(what));
            }
            v = v
                .checked_add(u64::from(b & 0x7f) << shift)
                .filter(|v| *v < 1 << 62)
                .ok_or(QpackError::IntegerTooLarge(what))?;
            shift += 7;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
    }

    /// A string literal whose H bit is `h_bit` of `first` and whose length has a
    /// `bits`-bit prefix; Huffman-coded ones are decoded.
    fn string(
        &mut self,
        first: u8,
        h_bit: u8,
        bits: u8,
        huffman: &mut HuffmanDecoder,
        what: &'static str,
    ) -> Result<Vec<u8>, QpackError> {
        let len = self.int(first, bits, what)?;
        let raw = self.take(len, what)?;
        if first & h_bit != 0 {
            huffman.decode(raw).map_err(|e| QpackError::Huffman { what, why: e.to_string() })
        } else {
            Ok(raw.to_vec())
        }
    }
}

/// The dynamic table of one direction.
#[derive(Debug, Default)]
pub(super) struct Table {
    /// Oldest first; the first has absolute index `dropped`.
    entries: VecDeque<(Vec<u8>, Vec<u8>)>,
    dropped: u64,
    size: usize,
    capacity: usize,
}

fn entry_size(name: &[u8], value: &[u8]) -> usize {
    name.len() + value.len() + 32
}

impl Table {
    /// Entries inserted since the start (the next one's absolute index).
    pub(super) fn inserts(&self) -> u64 {
        self.dropped + self.entries.len() as u64
    }

    pub(super) fn size(&self) -> usize {
        self.size
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn get(&self, abs: u64) -> Result<(&[u8], &[u8]), QpackError> {
        let err = QpackError::DynamicIndex { abs, first: self.dropped, end: self.inserts() };
        let i = abs.checked_sub(self.dropped).ok_or(err.clone())?;
        let (n, v) = self.entries.get(usize::try_from(i).map_err(|_| err.clone())?).ok_or(err)?;
        Ok((n, v))
    }

    fn evict_to(&mut self, room: usize) {
        while self.size > room {
            let Some((n, v)) = self.entries.pop_front() else { break };
            self.size -= entry_size(&n, &v);
            self.dropped += 1;
        }
    }

    fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.min(MAX_QPACK_TABLE);
        self.evict_to(self.capacity);
    }

    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) -> Result<(), QpackError> {
        let size = entry_size(&name, &value);
        if size > self.capacity {
            return Err(QpackError::EntryTooLarge { size, capacity: self.capacity });
        }
        self.evict_to(self.capacity - size);
        self.size += size;
        self.entries.push_back((name, value));
        Ok(())
    }
}

/// What became of a field section.
#[derive(Debug)]
pub(super) enum Section {
    Decoded(Decoded),
    /// It needs entries not received yet (or the peer's SETTINGS): try again when the
    /// encoder stream has moved.
    Blocked,
    Failed(QpackError),
}

/// One direction's QPACK decoder: the table its encoder stream builds, what the peer allowed.
pub(super) struct Decoder {
    pub(super) table: Table,
    /// The peer's SETTINGS_QPACK_MAX_TABLE_CAPACITY, once its SETTINGS was seen.
    max_capacity: Option<u64>,
    /// Encoder stream bytes waiting for the rest of their instruction.
    pending: Vec<u8>,
    /// The encoder stream offset of `pending`'s first byte.
    offset: u64,
    /// Where the encoder stream was lost (bytes lost or not readable): nothing after it is read.
    lost_at: Option<u64>,
    /// The highest encoder stream offset seen (from the stream's frames, read or not).
    pub(super) high: u64,
    huffman: HuffmanDecoder,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            table: Table::default(),
            max_capacity: None,
            pending: Vec::new(),
            offset: 0,
            lost_at: None,
            high: 0,
            huffman: HuffmanDecoder::new(),
        }
    }
}

impl Decoder {
    /// The peer's SETTINGS_QPACK_MAX_TABLE_CAPACITY.
    pub(super) fn set_max_capacity(&mut self, max: u64) {
        self.max_capacity = Some(max);
    }

    /// Encoder stream bytes were lost: no further instruction can be found.
    pub(super) fn lost(&mut self) {
        self.lost_at.get_or_insert(self.offset);
        self.pending = Vec::new();
    }

    /// The next bytes of the encoder stream. Returns the error that stopped it, if one did now.
    pub(super) fn encoder_bytes(&mut self, data: &[u8]) -> Option<QpackError> {
        if self.lost_at.is_some() {
            return None;
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(data);
        let mut used = 0;
        let result = loop {
            let mut c = Cur { b: &pending[used..], pos: 0 };
            if c.is_empty() {
                break None;
            }
            match self.instruction(&mut c) {
                Ok(()) => used += c.pos,
                Err(QpackError::Truncated(_)) if pending.len() - used <= MAX_INSTRUCTION => break None,
                Err(QpackError::Truncated(_)) => break Some(QpackError::InstructionTooLong),
                Err(e) => break Some(e),
            }
        };
        pending.drain(..used);
        self.pending = pending;
        self.offset += used as u64;
        if result.is_some() {
            self.lost();
        }
        result
    }

    /// One encoder instruction (RFC 9204 4.3).
    fn instruction(&mut self, c: &mut Cur<'_>) -> Result<(), QpackError> {
        let first = c.u8("encoder instruction")?;
        if first & 0x80 != 0 {
            // Insert with Name Reference: 1 T index(6), value.
            let index = c.int(first, 6, "Insert with Name Reference index")?;
            let vfirst = c.u8("Insert with Name Reference value")?;
            let value = c.string(vfirst, 0x80, 7, &mut self.huffman, "Insert with Name Reference value")?;
            let name = if first & 0x40 != 0 {
                static_entry(index)?.0.to_vec()
            } else {
                let abs = self.relative(index)?;
                self.table.get(abs)?.0.to_vec()
            };
            self.table.insert(name, value)
        } else if first & 0x40 != 0 {
            // Insert with Literal Name: 01 H len(5) name, value.
            let name = c.string(first, 0x20, 5, &mut self.huffman, "Insert with Literal Name name")?;
            let vfirst = c.u8("Insert with Literal Name value")?;
            let value = c.string(vfirst, 0x80, 7, &mut self.huffman, "Insert with Literal Name value")?;
            self.table.insert(name, value)
        } else if first & 0x20 != 0 {
            // Set Dynamic Table Capacity: 001 capacity(5).
            let capacity = c.int(first, 5, "Set Dynamic Table Capacity")?;
            let max = self.max_capacity.unwrap_or(MAX_QPACK_TABLE as u64);
            if capacity > max {
                return Err(QpackError::Capacity { capacity, max });
            }
            self.table.set_capacity(capacity as usize);
            Ok(())
        } else {
            // Duplicate: 000 index(5).
            let index = c.int(first, 5, "Duplicate index")?;
            let abs = self.relative(index)?;
            let (n, v) = self.table.get(abs)?;
            let (n, v) = (n.to_vec(), v.to_vec());
            self.table.insert(n, v)
        }
    }

    /// An encoder instruction's relative index as an absolute one.
    fn relative(&self, index: u64) -> Result<u64, QpackError> {
        let inserts = self.table.inserts();
        inserts.checked_sub(index + 1).ok_or(QpackError::BeforeStart { base: inserts, index })
    }

    /// Decodes a field section (a HEADERS frame's payload). Never changes the table.
    pub(super) fn section(&mut self, block: &[u8]) -> Section {
        match self.section_inner(block) {
            Ok(s) => s,
            Err(e) => Section::Failed(e),
        }
    }

    fn section_inner(&mut self, block: &[u8]) -> Result<Section, QpackError> {
        let mut c = Cur { b: block, pos: 0 };
        let first = c.u8("Required Insert Count")?;
        let encoded = c.int(first, 8, "Required Insert Count")?;
        let required = if encoded == 0 {
            0
        } else {
            let Some(max) = self.max_capacity else {
                // Not decodable before the SETTINGS is seen; that may still come.
                return if self.lost_at.is_some() { Err(QpackError::NoSettings) } else { Ok(Section::Blocked) };
            };
            let max_entries = max / 32;
            let required = required_insert_count(encoded, max_entries, self.table.inserts())?;
            if let Some(at) = self.lost_at {
                let unseen = self.high.saturating_sub(at);
                if required > self.table.inserts() {
                    return Err(QpackError::EncoderLost(format!(
                        "Required Insert Count {required}, {} entries read before the loss",
                        self.table.inserts()
                    )));
                }
                if unseen > max_entries {
                    return Err(QpackError::EncoderLost(format!(
                        "{unseen} encoder stream bytes since the loss, more than MaxEntries {max_entries}: \
                         the Required Insert Count is ambiguous"
                    )));
                }
            } else if required > self.table.inserts() {
                return Ok(Section::Blocked);
            }
            required
        };
        let second = c.u8("Delta Base")?;
        let delta = c.int(second, 7, "Delta Base")?;
        let base = if second & 0x80 == 0 {
            required.checked_add(delta).ok_or(QpackError::IntegerTooLarge("Delta Base"))?
        } else {
            required.checked_sub(delta + 1).ok_or(QpackError::NegativeBase { required, delta })?
        };
        let mut d = Decoded::default();
        while !c.is_empty() {
            self.field_line(&mut c, required, base, &mut d)?;
        }
        Ok(Section::Decoded(d))
    }

    /// A dynamic reference, checked against the Required Insert Count and the table.
    fn dynamic(&self, abs: u64, required: u64) -> Result<(&[u8], &[u8]), QpackError> {
        if abs >= required {
            return Err(QpackError::PastRequired { abs, required });
        }
        self.table.get(abs)
    }

    /// One field line representation (RFC 9204 4.5.2-4.5.6).
    fn field_line(&mut self, c: &mut Cur<'_>, required: u64, base: u64, d: &mut Decoded) -> Result<(), QpackError> {
        let first = c.u8("field line")?;
        let before = |index: u64| base.checked_sub(index + 1).ok_or(QpackError::BeforeStart { base, index });
        if first & 0x80 != 0 {
            // Indexed Field Line: 1 T index(6).
            let index = c.int(first, 6, "Indexed Field Line")?;
            let (n, v) = if first & 0x40 != 0 { static_entry(index)? } else { self.dynamic(before(index)?, required)? };
            d.add(n, v);
        } else if first & 0x40 != 0 {
            // Literal Field Line with Name Reference: 01 N T index(4), value.
            let index = c.int(first, 4, "Literal Field Line with Name Reference")?;
            let vfirst = c.u8("field line value")?;
            let value = c.string(vfirst, 0x80, 7, &mut self.huffman, "field line value")?;
            let n = if first & 0x10 != 0 { static_entry(index)?.0 } else { self.dynamic(before(index)?, required)?.0 };
            d.add(n, &value);
        } else if first & 0x20 != 0 {
            // Literal Field Line with Literal Name: 001 N H len(3) name, value.
            let name = c.string(first, 0x08, 3, &mut self.huffman, "field line name")?;
            let vfirst = c.u8("field line value")?;
            let value = c.string(vfirst, 0x80, 7, &mut self.huffman, "field line value")?;
            d.add(&name, &value);
        } else if first & 0x10 != 0 {
            // Indexed Field Line with Post-Base Index: 0001 index(4).
            let index = c.int(first, 4, "Indexed Field Line with Post-Base Index")?;
            let abs = base.checked_add(index).ok_or(QpackError::IntegerTooLarge("post-base index"))?;
            let (n, v) = self.dynamic(abs, required)?;
            d.add(n, v);
        } else {
            // Literal Field Line with Post-Base Name Reference: 0000 N index(3), value.
            let index = c.int(first, 3, "Literal Field Line with Post-Base Name Reference")?;
            let vfirst = c.u8("field line value")?;
            let value = c.string(vfirst, 0x80, 7, &mut self.huffman, "field line value")?;
            let abs = base.checked_add(index).ok_or(QpackError::IntegerTooLarge("post-base index"))?;
            let n = self.dynamic(abs, required)?.0;
            d.add(n, &value);
        }
        Ok(())
    }
}

fn static_entry(index: u64) -> Result<(&'static [u8], &'static [u8]), QpackError> {
    usize::try_from(index).ok().and_then(|i| STATIC_TABLE.get(i)).copied().ok_or(QpackError::StaticIndex(index))
}

/// RFC 9204 4.5.1.1: the Required Insert Count from its encoded form, with `inserts` entries
/// received so far.
pub(super) fn required_insert_count(encoded: u64, max_entries: u64, inserts: u64) -> Result<u64, QpackError> {
    if encoded == 0 {
        return Ok(0);
    }
    let bad = QpackError::InsertCount { encoded, max_entries };
    let full_range = max_entries.checked_mul(2).ok_or(bad.clone())?;
    if encoded > full_range {
        return Err(bad);
    }
    let max_value = inserts.saturating_add(max_entries);
    let max_wrapped = max_value / full_range * full_range;
    let mut required = max_wrapped + encoded - 1;
    if required > max_value {
        if required <= full_range {
            return Err(bad);
        }
        required -= full_range;
    }
    if required == 0 {
        return Err(bad);
    }
    Ok(required)
}
