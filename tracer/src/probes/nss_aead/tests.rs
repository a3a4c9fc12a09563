use super::*;

const FIREFOX: &str = "/usr/lib/firefox-esr/libssl3.so";
const SYSTEM: &str = "/usr/lib/x86_64-linux-gnu/libssl3.so";

fn require(path: &str) -> bool {
    let there = Path::new(path).exists();
    if !there {
        eprintln!("{path} is not installed (package firefox-esr / libnss3): skipped");
    }
    there
}

/// Firefox ESR 153's bundled NSS (RELR: the table's slots hold their addresses in place).
/// The virtual addresses are what `objdump -d` shows there; the file offsets are 0x1000
/// lower (`.text` is at 0x1ca60, file offset 0x1ba60).
#[test]
fn finds_the_aead_functions_in_firefoxs_nss() {
    if !require(FIREFOX) {
        return;
    }
    let f = find_nss_aead(Path::new(FIREFOX)).unwrap();
    eprintln!("{f:?}");
    assert_eq!((f.encrypt_vaddr, f.decrypt_vaddr), (0x3d830, 0x3d960), "{}", f.method);
    assert_eq!((f.encrypt, f.decrypt), (0x3c830, 0x3c960), "{}", f.method);
    assert!(f.method.contains("in place"), "{}", f.method);
    assert_eq!((f.offset_of(ENCRYPT), f.offset_of(DECRYPT), f.offset_of("SSL_Other")), (Some(0x3c830), Some(0x3c960), None));
}

/// Debian's system NSS (RELA: the slots are zero in the file, their RELATIVE relocations
/// hold the addresses).
#[test]
fn finds_the_aead_functions_in_the_system_nss() {
    if !require(SYSTEM) {
        return;
    }
    let f = find_nss_aead(Path::new(SYSTEM)).unwrap();
    eprintln!("{f:?}");
    assert!(f.method.contains("rela"), "{}", f.method);
    assert_ne!(f.encrypt, f.decrypt);
    // Both are thin wrappers around one routine with a direction argument: edx 0 (encrypt)
    // and 1 (decrypt) before the same call.
    let data = std::fs::read(SYSTEM).unwrap();
    for (off, want) in [(f.encrypt, [0x31, 0xd2].as_slice()), (f.decrypt, [0xba, 0x01, 0, 0, 0].as_slice())] {
        let body = &data[off as usize..off as usize + 0x40];
        assert!(memchr::memmem::find(body, want).is_some(), "{off:#x}: {body:02x?}");
    }
}

#[test]
fn files_without_the_table_say_what_is_missing() {
    assert!(matches!(find_in(b"not an ELF file"), Err(NssAeadError::NotElf(_))));
    let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    assert_eq!(find_nss_aead(Path::new(libc)), Err(NssAeadError::NameMissing(ENCRYPT)));
    assert!(matches!(find_nss_aead(Path::new("/nonexistent/libssl3.so")), Err(NssAeadError::Io(_))));
}

// Synthetic tables: .rodata at 0x1000, .text at 0x2000, .data at 0x3000.

const RO: u64 = 0x1000;
const TEXT: u64 = 0x2000;
const DATA: u64 = 0x3000;

struct Synth {
    rodata: Vec<u8>,
    text: Vec<u8>,
    data: Vec<u8>,
    relative: HashMap<u64, u64>,
}

impl Synth {
    /// Names at .rodata, three functions at 0x2010, 0x2030, 0x2050 (int3 padding, push rbp),
    /// and a table of {name, function} in .data in place.
    fn new(entries: &[(&str, u64)]) -> Synth {
        let mut rodata = vec![0u8; 16];
        let mut data = Vec::new();
        for (name, func) in entries {
            let at = RO + rodata.len() as u64;
            rodata.extend_from_slice(name.as_bytes());
            rodata.push(0);
            data.extend_from_slice(&at.to_le_bytes());
            data.extend_from_slice(&func.to_le_bytes());
        }
        let mut text = vec![0xccu8; 0x80];
        for f in [0x10usize, 0x30, 0x50] {
            text[f..f + 4].copy_from_slice(&[0x55, 0x48, 0x89, 0xe5]);
            text[f + 4] = 0xc3;
        }
        Synth { rodata, text, data, relative: HashMap::new() }
    }
    fn sections(&self) -> Sections<'_> {
        Sections {
            rodata: (RO, &self.rodata),
            text: (TEXT, &self.text),
            data: vec![(DATA, &self.data)],
            relative: self.relative.clone(),
            loads: vec![(0, 0, 0x10000)],
        }
    }
}

const GOOD: &[(&str, u64)] = &[("SSL_GetCurrentEpoch", 0x2050), ("SSL_AeadDecrypt", 0x2030), ("SSL_AeadEncrypt", 0x2010)];

#[test]
fn synthetic_table_in_place_and_by_relocation() {
    let s = Synth::new(GOOD);
    assert_eq!(entry(&s.sections(), ENCRYPT).unwrap(), (DATA + 32, 0x2010, "in place"));
    assert_eq!(entry(&s.sections(), DECRYPT).unwrap(), (DATA + 16, 0x2030, "in place"));
    assert!(check_function(&s.sections(), 0x2010).is_ok());
    // RELA: zero slots, addends in the relocations.
    let mut rela = Synth::new(GOOD);
    for i in 0..rela.data.len() / 8 {
        let v = u64::from_le_bytes(rela.data[i * 8..i * 8 + 8].try_into().unwrap());
        rela.relative.insert(DATA + 8 * i as u64, v);
    }
    rela.data.iter_mut().for_each(|b| *b = 0);
    assert_eq!(entry(&rela.sections(), ENCRYPT).unwrap(), (DATA + 32, 0x2010, "rela"));
}

#[test]
fn synthetic_table_errors_name_what_is_wrong() {
    let s = Synth::new(&[("SSL_Foo", 0x2010), ("SSL_Bar", 0x2030)]);
    assert_eq!(entry(&s.sections(), ENCRYPT), Err(NssAeadError::NameMissing(ENCRYPT)));

    // The name is there, but nothing points at it.
    let mut s = Synth::new(GOOD);
    s.data[32..40].copy_from_slice(&0x4444u64.to_le_bytes());
    assert!(matches!(entry(&s.sections(), ENCRYPT), Err(NssAeadError::EntryMissing { .. })));

    // Two slots point at it.
    let mut s = Synth::new(GOOD);
    let name = u64::from_le_bytes(s.data[32..40].try_into().unwrap());
    s.data[0..8].copy_from_slice(&name.to_le_bytes());
    let e = entry(&s.sections(), ENCRYPT).unwrap_err();
    assert!(matches!(e, NssAeadError::EntryNotUnique { count: 2, .. }), "{e}");

    // The function slot points outside .text.
    let e = entry(&Synth::new(&[("SSL_GetCurrentEpoch", 0x2050), ("SSL_AeadEncrypt", 0x9999)]).sections(), ENCRYPT).unwrap_err();
    assert!(e.to_string().contains("outside .text"), "{e}");

    // A lone entry is not the table.
    let e = entry(&Synth::new(&[("SSL_AeadEncrypt", 0x2010)]).sections(), ENCRYPT).unwrap_err();
    assert!(e.to_string().contains("no neighbouring"), "{e}");

    // Functions: misaligned, not after padding, not a prologue.
    let s = Synth::new(GOOD);
    assert!(check_function(&s.sections(), 0x2011).unwrap_err().contains("not 16-byte aligned"));
    let mut s = Synth::new(GOOD);
    s.text[0x2f] = 0x48;
    assert!(check_function(&s.sections(), 0x2030).unwrap_err().contains("no padding"));
    let mut s = Synth::new(GOOD);
    s.text[0x30..0x33].copy_from_slice(&[0x48, 0x89, 0xe5]);
    assert!(check_function(&s.sections(), 0x2030).unwrap_err().contains("not push"));
}
