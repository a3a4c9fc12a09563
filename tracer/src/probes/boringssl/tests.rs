use std::{
    collections::HashMap,
    fs::File,
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _},
};

use super::{
    cache::{cache_file, trusted},
    candidates::looks_like_chromium,
    control_flow::follow_function,
    elf::{Load, hex, parse_build_id_notes},
    error_sites::{ErrorSite, parse_site},
    identify::Analysis,
    scan::{self, count_direct_calls, find_c_string, scan_rip_lea, start_candidates},
    *,
};

// ---------------------------------------------------------------------------------------
// A tiny x86-64 assembler for synthetic .text buffers.
// ---------------------------------------------------------------------------------------

const BASE: u64 = 0x40_1000;
/// Where the synthetic "ssl_lib.cc" string lives (outside .text, like .rodata).
const FILE_STR: u64 = 0x20_0f8e;
const OTHER_STR: u64 = 0x20_1000;

#[derive(Default)]
struct Asm {
    buf: Vec<u8>,
    labels: HashMap<&'static str, u64>,
    /// (position of the rel32, label, ip after the instruction)
    fixups: Vec<(usize, &'static str, u64)>,
}

impl Asm {
    fn here(&self) -> u64 {
        BASE + self.buf.len() as u64
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
    fn label(&mut self, l: &'static str) -> &mut Self {
        assert!(self.labels.insert(l, self.here()).is_none(), "label {l} twice");
        self
    }
    /// int3 padding to 16 bytes, as between functions.
    fn pad(&mut self) -> &mut Self {
        while !self.here().is_multiple_of(16) {
            self.buf.push(0xcc);
        }
        self
    }
    /// A padded function entry: int3 padding, label, push rbp; mov rbp, rsp.
    fn func(&mut self, l: &'static str) -> &mut Self {
        self.pad().label(l).bytes(&PROLOGUE)
    }
    fn rel32(&mut self, op: &[u8], l: &'static str) -> &mut Self {
        self.bytes(op);
        let pos = self.buf.len();
        self.bytes(&[0; 4]);
        let next = self.here();
        self.fixups.push((pos, l, next));
        self
    }
    fn call(&mut self, l: &'static str) -> &mut Self {
        self.rel32(&[0xe8], l)
    }
    fn jmp(&mut self, l: &'static str) -> &mut Self {
        self.rel32(&[0xe9], l)
    }
    fn je(&mut self, l: &'static str) -> &mut Self {
        self.rel32(&[0x0f, 0x84], l)
    }
    fn test_rdi(&mut self) -> &mut Self {
        self.bytes(&[0x48, 0x85, 0xff])
    }
    /// pop rbp; ret
    fn leave(&mut self) -> &mut Self {
        self.bytes(&[0x5d, 0xc3])
    }
    fn lea_rcx(&mut self, target: u64) -> &mut Self {
        let disp = (target as i64 - (self.here() as i64 + 7)) as i32;
        self.bytes(&[0x48, 0x8d, 0x0d]).bytes(&disp.to_le_bytes())
    }
    fn mov_edi(&mut self, v: u32) -> &mut Self {
        self.bytes(&[0xbf]).bytes(&v.to_le_bytes())
    }
    fn mov_edx(&mut self, v: u32) -> &mut Self {
        self.bytes(&[0xba]).bytes(&v.to_le_bytes())
    }
    fn mov_r8d(&mut self, v: u32) -> &mut Self {
        self.bytes(&[0x41, 0xb8]).bytes(&v.to_le_bytes())
    }
    fn xor_esi(&mut self) -> &mut Self {
        self.bytes(&[0x31, 0xf6])
    }
    /// OPENSSL_PUT_ERROR(SSL, reason) at `line`, calling err_put directly.
    fn put_error(&mut self, reason: u32, line: u32) -> &mut Self {
        self.lea_rcx(FILE_STR).mov_edi(0x10).xor_esi().mov_edx(reason).mov_r8d(line).call("err_put")
    }
    fn finish(&self) -> Vec<u8> {
        let mut out = self.buf.clone();
        for &(pos, l, next) in &self.fixups {
            let to = *self.labels.get(l).unwrap_or_else(|| panic!("label {l} undefined"));
            let rel = (to as i64 - next as i64) as i32;
            out[pos..pos + 4].copy_from_slice(&rel.to_le_bytes());
        }
        out
    }
    fn at(&self, l: &str) -> u64 {
        self.labels[l]
    }
}

/// Options for the synthetic BoringSSL.
#[derive(Clone, Copy)]
struct Shape {
    second_write: bool,
    read_consumes: bool,
    write_calls_handshake: bool,
    peek: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Shape { second_write: false, read_consumes: true, write_calls_handshake: true, peek: true }
    }
}

/// A .text with ERR_put_error, SSL_do_handshake, SSL_write, the read routine, SSL_read,
/// SSL_peek, imports, a caller, and decoys, laid out like Chromium's.
fn synthetic(shape: Shape) -> Asm {
    let mut a = Asm::default();
    // "PLT" stubs and small helpers.
    a.func("memcpy").leave();
    a.func("abort").leave();
    a.func("err_put").leave();
    a.func("consume").leave();
    a.func("clear_error").leave();

    a.func("do_handshake").test_rdi().je("hs_err").call("clear_error").leave();
    a.label("hs_err").put_error(0x86, 731).leave();

    let write = |a: &mut Asm, name: &'static str, e: [&'static str; 5]| {
        a.func(name).test_rdi().je(e[0]).test_rdi().je(e[1]);
        if shape.write_calls_handshake {
            a.call("do_handshake");
        }
        a.test_rdi().je(e[2]).test_rdi().je(e[3]);
        a.label(e[4]).leave();
        // Out-of-line error blocks sharing one call, as clang lays them out.
        a.label(e[0]).lea_rcx(FILE_STR).mov_edi(0x10).xor_esi().mov_edx(0x42).mov_r8d(962);
        a.call("err_put").jmp(e[4]);
        a.label(e[1]).lea_rcx(FILE_STR).mov_edi(0x10).xor_esi().mov_edx(0xe2).mov_r8d(967).call("err_put").jmp(e[4]);
        a.label(e[2]).lea_rcx(FILE_STR).mov_edi(0x10).xor_esi().mov_edx(0x6f).mov_r8d(988).call("err_put").jmp(e[4]);
        // Arguments set before the lea, in the same block.
        a.label(e[3]).mov_edx(0xd7).mov_edi(0x10).lea_rcx(FILE_STR).xor_esi().mov_r8d(982).call("err_put").jmp(e[4]);
    };
    write(&mut a, "ssl_write", ["w_e1", "w_e2", "w_e3", "w_e4", "w_out"]);
    if shape.second_write {
        write(&mut a, "ssl_write2", ["w2_e1", "w2_e2", "w2_e3", "w2_e4", "w2_out"]);
    }

    a.func("read_impl").test_rdi().je("ri_err").call("do_handshake").leave();
    a.label("ri_err").put_error(0xe2, 846).leave();

    a.func("ssl_read").test_rdi().je("r_err").call("read_impl").call("memcpy");
    if shape.read_consumes {
        a.call("consume");
    }
    a.leave();
    a.label("r_err").put_error(0x42, 940).leave();

    if shape.peek {
        a.func("ssl_peek").test_rdi().je("p_err").call("read_impl").call("memcpy").leave();
        a.label("p_err").put_error(0x42, 940).leave();
    }

    // Unpadded function start: the previous one ends with a call to abort at the boundary.
    a.func("before_unpadded").test_rdi().je("bu_x").leave();
    a.label("bu_x");
    while (a.here() + 5) % 16 != 0 {
        a.bytes(&[0x90]);
    }
    a.call("abort");
    assert_eq!(a.here() % 16, 0);
    a.label("unpadded").bytes(&PROLOGUE).test_rdi().je("u_err").leave();
    a.label("u_err").put_error(0x148, 4045).leave();

    // Shrink-wrapped decoy: the prologue is not at the entry; its site must stay unresolved.
    a.func("shrink_decoy_entry_marker").leave(); // a padded function just before
    a.pad().label("shrink");
    a.test_rdi().je("sh_prologue").bytes(&[0xc3]);
    while a.here() % 16 != 0 {
        a.bytes(&[0x90]);
    }
    a.label("sh_prologue").bytes(&PROLOGUE).put_error(0xc2, 1097).leave();

    // A lea of another string and a non-lea 8D byte: not sites.
    a.func("other").lea_rcx(OTHER_STR).bytes(&[0x8d, 0x05]).leave();

    // Chromium's net code calling the entry points.
    a.func("net").call("ssl_write").call("ssl_read").call("do_handshake").call("unpadded");
    if shape.second_write {
        a.call("ssl_write2");
    }
    if shape.peek {
        a.call("ssl_peek");
    }
    a.leave().pad();
    a
}

fn plt_names(a: &Asm) -> impl Fn(u64) -> Option<String> + '_ {
    move |t| {
        if t == a.at("memcpy") {
            Some("memcpy".into())
        } else if t == a.at("abort") {
            Some("abort".into())
        } else {
            None
        }
    }
}

fn analyse(a: &Asm) -> (Vec<u8>, Analysis) {
    let bytes = a.finish();
    let analysis = {
        let text = Text { bytes: &bytes, vaddr: BASE };
        analyse_text(text, FILE_STR, ERR_LIB_SSL).expect("analysis")
    };
    (bytes, analysis)
}

#[test]
fn synthetic_build_identifies_the_three_functions() {
    let a = synthetic(Shape::default());
    let (_bytes, an) = analyse(&a);
    assert_eq!(an.err_put, a.at("err_put"));
    let id = identify(&an.funcs, an.err_put, &plt_names(&a)).expect("identified");
    assert_eq!(id.ssl_write, a.at("ssl_write"));
    assert_eq!(id.ssl_read, a.at("ssl_read"));
    assert_eq!(id.ssl_do_handshake, a.at("do_handshake"));
    assert_eq!(id.ssl_peek, Some(a.at("ssl_peek")));
    assert_eq!(id.read_impl, a.at("read_impl"));

    // SSL_write's sites: reasons in address order, lines, the call, also with the arguments
    // set before the lea.
    let w = an.funcs.iter().find(|f| f.start == a.at("ssl_write")).unwrap();
    let got: Vec<(Option<u32>, Option<u32>, Option<u32>)> = w.sites.iter().map(|s| (s.lib, s.reason, s.line)).collect();
    assert_eq!(
        got,
        vec![
            (Some(0x10), Some(0x42), Some(962)),
            (Some(0x10), Some(0xe2), Some(967)),
            (Some(0x10), Some(0x6f), Some(988)),
            (Some(0x10), Some(0xd7), Some(982))
        ]
    );
    assert!(w.sites.iter().all(|s| s.call == Some(a.at("err_put"))));

    // The unpadded function is found through its caller; the shrink-wrapped one is not
    // resolved (its prologue is not its entry).
    let unpadded = an.funcs.iter().find(|f| f.start == a.at("unpadded")).expect("unpadded function resolved");
    assert_eq!(unpadded.sites.len(), 1);
    assert_eq!(an.padded.get(&a.at("unpadded")), Some(&false));
    assert!(an.funcs.iter().all(|f| f.start != a.at("sh_prologue")));
    assert_eq!(an.unresolved.len(), 1, "{:?}", an.unresolved);
    // The function holding `before_unpadded` ends with the abort call and does not run into
    // the next one.
    assert!(an.funcs.iter().all(|f| f.start != a.at("before_unpadded")));
}

#[test]
fn two_ssl_write_lookalikes_are_refused() {
    let a = synthetic(Shape { second_write: true, ..Shape::default() });
    let (_b, an) = analyse(&a);
    match identify(&an.funcs, an.err_put, &plt_names(&a)) {
        Err(FindError::Candidates { function: "SSL_write", count: 2, .. }) => {}
        other => panic!("expected 2 SSL_write candidates, got {other:?}"),
    }
}

#[test]
fn ssl_write_must_call_ssl_do_handshake() {
    let a = synthetic(Shape { write_calls_handshake: false, ..Shape::default() });
    let (_b, an) = analyse(&a);
    match identify(&an.funcs, an.err_put, &plt_names(&a)) {
        Err(FindError::Candidates { function: "SSL_do_handshake", count: 0, .. }) => {}
        other => panic!("expected no SSL_do_handshake, got {other:?}"),
    }
}

#[test]
fn ssl_read_needs_its_consume_call() {
    // Without the consume call SSL_read looks like SSL_peek: two peeks, no read.
    let a = synthetic(Shape { read_consumes: false, ..Shape::default() });
    let (_b, an) = analyse(&a);
    match identify(&an.funcs, an.err_put, &plt_names(&a)) {
        Err(FindError::Candidates { function: "SSL_read", count: 0, detail }) => {
            assert!(detail.contains(&format!("{:#x}", a.at("ssl_peek"))), "{detail}")
        }
        other => panic!("expected no SSL_read, got {other:?}"),
    }
    // SSL_peek is optional.
    let a = synthetic(Shape { peek: false, ..Shape::default() });
    let (_b, an) = analyse(&a);
    let id = identify(&an.funcs, an.err_put, &plt_names(&a)).unwrap();
    assert_eq!((id.ssl_read, id.ssl_peek), (a.at("ssl_read"), None));
}

#[test]
fn memcpy_must_be_named_by_the_plt() {
    let a = synthetic(Shape::default());
    let (_b, an) = analyse(&a);
    let none = |_: u64| None::<String>;
    assert!(matches!(
        identify(&an.funcs, an.err_put, &none),
        Err(FindError::Candidates { function: "SSL_read", count: 0, .. })
    ));
}

#[test]
fn rip_lea_scanner() {
    let mut a = Asm::default();
    a.func("f").lea_rcx(FILE_STR); // hit
    a.lea_rcx(OTHER_STR); // other target
    // lea r8, [rip + disp] (REX.WR): a hit too.
    let disp = (FILE_STR as i64 - (a.here() as i64 + 7)) as i32;
    let r8_at = a.here();
    a.bytes(&[0x4c, 0x8d, 0x05]).bytes(&disp.to_le_bytes());
    // lea rcx, [rbx + disp32] (mod=10): not rip-relative.
    a.bytes(&[0x48, 0x8d, 0x8b]).bytes(&disp.to_le_bytes());
    // 8D without REX.W: not a 64-bit lea.
    a.bytes(&[0x90, 0x8d, 0x0d]).bytes(&disp.to_le_bytes());
    // A truncated lea at the very end must not be read past the buffer.
    a.bytes(&[0x48, 0x8d, 0x0d, 0x01]);
    let bytes = a.finish();
    let hits = scan_rip_lea(&bytes, BASE, FILE_STR);
    assert_eq!(hits, vec![a.at("f") + 4, r8_at]);
    assert!(scan_rip_lea(&[], BASE, FILE_STR).is_empty());
    assert!(scan_rip_lea(&[0x8d], BASE, FILE_STR).is_empty());
}

#[test]
fn direct_call_counter() {
    let mut a = Asm::default();
    a.func("x").leave();
    a.func("y").leave();
    a.func("c").call("x").call("x").call("y").jmp("x").leave();
    let bytes = a.finish();
    let mut targets = vec![a.at("x"), a.at("y"), a.at("c")];
    targets.sort();
    let counts = count_direct_calls(&bytes, BASE, &targets);
    let by: HashMap<u64, usize> = targets.iter().copied().zip(counts).collect();
    assert_eq!(by[&a.at("x")], 2, "jmp is not a call");
    assert_eq!(by[&a.at("y")], 1);
    assert_eq!(by[&a.at("c")], 0);
    assert_eq!(count_direct_calls(&bytes, BASE, &[]), Vec::<usize>::new());
}

#[test]
fn function_start_candidates() {
    let mut a = Asm::default();
    a.func("f1").leave();
    a.func("f2").test_rdi().je("x").leave();
    a.label("x");
    while (a.here() + 4) % 16 != 0 {
        a.bytes(&[0x90]);
    }
    a.bytes(&[0x5d, 0xc3, 0x90, 0x90]); // ends with ret at the boundary
    a.label("aligned_unpadded").bytes(&PROLOGUE).bytes(&[0x90; 3]);
    a.label("unaligned").bytes(&PROLOGUE).bytes(&[0x90; 40]);
    a.label("site").leave();
    let bytes = a.finish();
    let text = Text { bytes: &bytes, vaddr: BASE };
    // Nearest first, up to and including the first padded one; unaligned prologues skipped.
    assert_eq!(start_candidates(text, a.at("site")), vec![a.at("aligned_unpadded"), a.at("f2")]);
    assert!(start_candidates(text, BASE + bytes.len() as u64).is_empty());
    assert_eq!(start_candidates(text, a.at("f1")), vec![a.at("f1")]);
}

#[test]
fn following_a_function() {
    let mut a = Asm::default();
    a.func("f").test_rdi().je("far").leave();
    a.label("far").call("g").bytes(&[0xcc]); // noreturn call, padding
    a.func("g").test_rdi().je("g_tail").leave();
    a.label("g_tail").jmp("f"); // tail call into another function: not followed
    a.func("h").bytes(&[0x90; 7]).call("g"); // ends at the boundary with a call
    assert_eq!(a.here() % 16, 0);
    a.func("k").bytes(&[0x90; 12]); // falls into the next function without a call: error
    a.func("l").leave();
    a.func("bad").bytes(&[0x06]).leave(); // push es: invalid in 64-bit mode
    a.pad();
    let bytes = a.finish();
    let text = Text { bytes: &bytes, vaddr: BASE };
    let end = BASE + bytes.len() as u64;
    let f = follow_function(text, a.at("f"), end).unwrap();
    assert_eq!(f.calls(), vec![a.at("g")]);
    assert!(f.insns.keys().all(|&ip| ip < a.at("g")));
    let g = follow_function(text, a.at("g"), end).unwrap();
    assert!(g.insns.keys().all(|&ip| ip >= a.at("g") && ip < a.at("h")));
    assert!(follow_function(text, a.at("h"), end).is_ok());
    assert!(follow_function(text, a.at("k"), end).unwrap_err().contains("falls through"));
    assert!(follow_function(text, a.at("bad"), end).unwrap_err().contains("invalid"));
    // A limit inside the function.
    assert!(follow_function(text, a.at("f"), a.at("f") + 8).unwrap_err().contains("runs past"));
}

#[test]
fn error_site_arguments() {
    let mut a = Asm::default();
    a.func("err_put").leave();
    a.func("f").test_rdi().je("e1").test_rdi().je("e2").label("out").leave();
    // Arguments around the lea, the call shared through a jump.
    a.label("e1")
        .mov_edx(0x42)
        .lea_rcx(FILE_STR)
        .mov_edi(0x10)
        .xor_esi()
        .mov_r8d(962)
        .label("shared")
        .call("err_put")
        .jmp("out");
    // r8d missing, edx overwritten by something untracked.
    a.label("e2").lea_rcx(FILE_STR).mov_edi(0x10).mov_edx(0xe2).bytes(&[0x89, 0xda]).jmp("shared");
    a.pad();
    let bytes = a.finish();
    let text = Text { bytes: &bytes, vaddr: BASE };
    let f = follow_function(text, a.at("f"), BASE + bytes.len() as u64).unwrap();
    let e1 = parse_site(text, &f, a.at("e1") + 5);
    assert_eq!(
        e1,
        ErrorSite {
            lea: a.at("e1") + 5,
            lib: Some(0x10),
            reason: Some(0x42),
            line: Some(962),
            call: Some(a.at("err_put"))
        }
    );
    assert_eq!(e1.ssl_reason(a.at("err_put")), Some(0x42));
    assert_eq!(e1.ssl_reason(a.at("err_put") + 1), None);
    let e2 = parse_site(text, &f, a.at("e2"));
    assert_eq!((e2.lib, e2.reason, e2.line, e2.call), (Some(0x10), None, None, Some(a.at("err_put"))));
    assert_eq!(e2.ssl_reason(a.at("err_put")), None);
}

#[test]
fn build_id_notes() {
    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((name.len() as u32).to_le_bytes());
        v.extend((desc.len() as u32).to_le_bytes());
        v.extend(kind.to_le_bytes());
        v.extend(name);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v.extend(desc);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }
    let id = [
        0x4a, 0x74, 0xf6, 0x49, 0x75, 0x29, 0xd4, 0x2b, 0xb6, 0x12, 0x62, 0xc7, 0x6d, 0x7b, 0x1a, 0xdd, 0x49, 0xc4,
        0xde, 0xa6,
    ];
    let mut notes = note(b"GNU\0", 1, &[0, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]); // ABI tag
    notes.extend(note(b"Crashpad\0", 0x4f464e49, &[1, 2, 3, 4, 5, 6, 7, 8]));
    notes.extend(note(b"GNU\0", 3, &id));
    assert_eq!(parse_build_id_notes(&notes), Some(&id[..]));
    assert_eq!(hex(parse_build_id_notes(&notes).unwrap()), "4a74f6497529d42bb61262c76d7b1add49c4dea6");
    // Not GNU, or no build-id: none.
    assert_eq!(parse_build_id_notes(&note(b"XYZ\0", 3, &id)), None);
    assert_eq!(parse_build_id_notes(&note(b"GNU\0", 1, &id)), None);
    // Truncated or lying sizes: none, no panic.
    for cut in 0..notes.len() - 1 {
        let _ = parse_build_id_notes(&notes[..cut]);
    }
    assert_eq!(parse_build_id_notes(&notes[..notes.len() - 4]), None);
    let mut lying = note(b"GNU\0", 3, &id);
    lying[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(parse_build_id_notes(&lying), None);
    lying[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(parse_build_id_notes(&lying), None);
}

#[test]
fn address_mapping() {
    // Chromium 156's load segments.
    let loads = [
        Load { vaddr: 0, offset: 0, filesz: 0x2d9_0624 },
        Load { vaddr: 0x2d9_2000, offset: 0x2d9_1000, filesz: 0xe11_7810 },
        Load { vaddr: 0x10ea_a820, offset: 0x10ea_8820, filesz: 0xb5_2750 },
    ];
    assert_eq!(vaddr_to_offset(&loads, 0x9da_aaa0), Some(0x9da_9aa0));
    assert_eq!(offset_to_vaddr(&loads, 0x9da_9aa0), Some(0x9da_aaa0));
    assert_eq!(vaddr_to_offset(&loads, 0x1d9_af8e), Some(0x1d9_af8e));
    // In the gap between segments, or past the file: none.
    assert_eq!(vaddr_to_offset(&loads, 0x2d9_1000), None);
    assert_eq!(vaddr_to_offset(&loads, 0x2d9_2000 + 0xe11_7810), None);
    assert_eq!(vaddr_to_offset(&loads, u64::MAX), None);
    assert_eq!(offset_to_vaddr(&loads, 0x2d9_0624), None);
    for v in [0x2d9_2000u64, 0x0500_0000, 0x10ea_a820] {
        assert_eq!(offset_to_vaddr(&loads, vaddr_to_offset(&loads, v).unwrap()), Some(v));
    }
}

#[test]
fn c_string_search() {
    let s = SSL_LIB_CC;
    let mut hay = b"\0abc\0".to_vec();
    hay.extend(s);
    hay.push(0);
    let at = hay.len() - s.len() - 1;
    // Without the NUL it is only a prefix of another string.
    hay.extend(s);
    hay.extend(b"x\0");
    assert_eq!(find_c_string(&hay, s), vec![at]);
    assert!(find_c_string(s, s).is_empty(), "no NUL at the end of the haystack");
}

/// Chromium's path and QtWebEngine's (the same file under another tree) are found at their
/// starts; a path that only ends the same way without being a relative source path is not.
#[test]
fn ssl_lib_cc_under_any_tree() {
    let qt: &[u8] = b"../../3rdparty/chromium/third_party/boringssl/src/ssl/ssl_lib.cc";
    let mut hay = b"\0junk\0".to_vec();
    let chromium_at = hay.len();
    hay.extend(SSL_LIB_CC);
    hay.push(0);
    let qt_at = hay.len();
    hay.extend(qt);
    hay.push(0);
    hay.extend(b"/opt/third_party/boringssl/src/ssl/ssl_lib.cc\0");
    hay.extend(qt);
    hay.extend(b".o\0");
    assert_eq!(scan::find_ssl_lib_cc(&hay), vec![chromium_at, qt_at]);
    assert!(scan::find_ssl_lib_cc(scan::SSL_LIB_CC_SUFFIX).is_empty());
}

#[test]
fn looks_like_chromium_by_name_or_files() {
    assert!(looks_like_chromium(Path::new("/usr/lib/chromium/chromium")));
    assert!(looks_like_chromium(Path::new("/opt/google/chrome/chrome")));
    assert!(looks_like_chromium(Path::new("/opt/app/my-electron")));
    assert!(!looks_like_chromium(Path::new("/usr/bin/curl")));
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("slack");
    std::fs::write(&exe, b"").unwrap();
    assert!(!looks_like_chromium(&exe));
    std::fs::write(dir.path().join("icudtl.dat"), b"").unwrap();
    assert!(!looks_like_chromium(&exe));
    std::fs::write(dir.path().join("v8_context_snapshot.bin"), b"").unwrap();
    assert!(looks_like_chromium(&exe));
}

// ---------------------------------------------------------------------------------------
// Real files.
// ---------------------------------------------------------------------------------------

const CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// Debian's Chromium; missing, the test fails with one line saying so.
fn chromium() -> &'static Path {
    let p = Path::new(CHROMIUM);
    assert!(p.is_file(), "{CHROMIUM} is not installed; `cargo xtask setup --packages` (or `cargo xtask test`) installs it");
    p
}

fn bytes_at(path: &Path, off: u64, n: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt as _;
    let mut b = vec![0; n];
    File::open(path).unwrap().read_exact_at(&mut b, off).unwrap();
    b
}

#[test]
fn finds_the_functions_in_the_installed_chromium() {
    let path = chromium();
    let t = Instant::now();
    let found = find_boringssl(path).unwrap_or_else(|e| panic!("finder failed on {CHROMIUM}: {e}"));
    eprintln!("found in {:?}: {found:#?}", t.elapsed());
    assert_eq!(found.build_id, build_id(path).unwrap());
    assert_eq!(found.build_id.len(), 40);
    let offs = [found.ssl_write, found.ssl_read, found.ssl_do_handshake];
    let vaddrs = [found.ssl_write_vaddr, found.ssl_read_vaddr, found.ssl_do_handshake_vaddr];
    for (off, vaddr) in offs.iter().zip(vaddrs) {
        // Each offset lands on push rbp (0x55); mov rbp, rsp follows.
        assert_eq!(bytes_at(path, *off, 4), PROLOGUE, "offset {off:#x}");
        // All three are in .text, whose file offset and address differ by one constant.
        assert_eq!(vaddr - off, found.ssl_write_vaddr - found.ssl_write);
        assert_eq!(vaddr % 16, 0);
    }
    assert!(offs[0] != offs[1] && offs[1] != offs[2] && offs[0] != offs[2]);
    assert!(found.method.contains("SSL_peek"), "{}", found.method);
    assert!(!found.from_cache);
    // Every function the family declares is one the finder locates.
    let declared = crate::probes::families::TLS_BORINGSSL.attach.iter().flat_map(|a| match a.points {
        crate::probes::families::Points::Uprobes { functions, .. } => functions,
        _ => &[],
    });
    let offsets: Vec<Option<u64>> = declared.map(|f| found.offset_of(f.function)).collect();
    assert_eq!(offsets, [Some(found.ssl_write), Some(found.ssl_read), Some(found.ssl_do_handshake)]);
}

#[test]
fn cache_by_build_id() {
    let path = chromium();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("boringssl");
    let first = find_cached(path, &cache).unwrap();
    assert!(!first.from_cache);
    let meta = std::fs::metadata(&cache).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o700);
    let file = cache_file(&cache, &first.build_id);
    assert!(file.file_name().unwrap().to_str().unwrap().contains(&format!(".v{FINDER_VERSION}.")));
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
    let t = Instant::now();
    let second = find_cached(path, &cache).unwrap();
    let took = t.elapsed();
    eprintln!("cached lookup took {took:?} (analysis {} ms)", first.scan_ms);
    // Served from the cache: no analysis ran (the time is printed, not asserted).
    assert!(second.from_cache);
    assert_eq!(
        (second.ssl_write, second.ssl_read, second.ssl_do_handshake),
        (first.ssl_write, first.ssl_read, first.ssl_do_handshake)
    );

    // A cache entry whose offsets do not hold the prologue is not trusted.
    let mut entry: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    entry["found"]["ssl_write"] = serde_json::json!(first.ssl_write + 1);
    std::fs::write(&file, serde_json::to_vec(&entry).unwrap()).unwrap();
    let third = find_cached(path, &cache).unwrap();
    assert!(!third.from_cache);
    assert_eq!(third.ssl_write, first.ssl_write);
    // (Unreadable JSON and untrusted files take the same path: see `cache_trust`.)
}

#[test]
fn cache_trust() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let set = |p: &Path, mode: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    set(dir.path(), 0o700);
    assert!(trusted(dir.path()));
    set(dir.path(), 0o777);
    assert!(!trusted(dir.path()));
    set(dir.path(), 0o755);
    assert!(trusted(dir.path()));
    let file = dir.path().join("x.json");
    std::fs::write(&file, b"{}").unwrap();
    set(&file, 0o600);
    assert!(trusted(&file));
    set(&file, 0o666);
    assert!(!trusted(&file));
    set(&file, 0o620);
    assert!(!trusted(&file));
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    assert!(!trusted(&link));
    assert!(!trusted(&dir.path().join("missing")));

    // Through find_cached, with a small non-BoringSSL ELF file (cheap to analyse): a planted
    // entry is used only while nobody else can write it.
    let ls = Path::new("/bin/ls");
    let Ok(id) = build_id(ls) else {
        eprintln!("SKIP: /bin/ls missing or without build-id");
        return;
    };
    let cache = dir.path().join("cache");
    std::fs::DirBuilder::new().mode(0o700).create(&cache).unwrap();
    let planted = serde_json::json!({"build_id": id, "finder_version": FINDER_VERSION, "error": "planted"});
    let entry = cache_file(&cache, &id);
    std::fs::write(&entry, planted.to_string()).unwrap();
    set(&entry, 0o600);
    assert!(matches!(find_cached(ls, &cache), Err(FindError::CachedFailure { error, .. }) if error == "planted"));
    set(&entry, 0o666);
    assert!(matches!(find_cached(ls, &cache), Err(FindError::StringMissing)));
    // Rewritten by that analysis, 0600.
    assert_eq!(std::fs::metadata(&entry).unwrap().mode() & 0o777, 0o600);
    std::fs::write(&entry, planted.to_string()).unwrap();
    set(&entry, 0o600);
    set(&cache, 0o777);
    assert!(matches!(find_cached(ls, &cache), Err(FindError::StringMissing)));
    // Unreadable JSON: analysed again.
    set(&cache, 0o700);
    std::fs::write(&entry, b"{not json").unwrap();
    assert!(matches!(find_cached(ls, &cache), Err(FindError::StringMissing)));
}

#[test]
fn non_boringssl_binaries_fail_and_the_failure_is_cached() {
    let path = Path::new("/bin/ls");
    if !path.is_file() || build_id(path).is_err() {
        eprintln!("SKIP: /bin/ls missing or without build-id");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    match find_cached(path, dir.path()) {
        Err(FindError::StringMissing) => {}
        other => panic!("expected StringMissing, got {other:?}"),
    }
    match find_cached(path, dir.path()) {
        Err(FindError::CachedFailure { error, .. }) => assert!(error.contains("ssl_lib.cc"), "{error}"),
        other => panic!("expected the cached failure, got {other:?}"),
    }
    // Not an ELF file / missing file.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not an elf").unwrap();
    assert!(matches!(find_boringssl(&junk), Err(FindError::NotElf { .. })));
    assert!(matches!(find_boringssl(&dir.path().join("missing")), Err(FindError::Io { .. })));
    assert!(matches!(find_cached(&junk, dir.path()), Err(FindError::NotElf { .. })));
}

#[test]
fn candidates_include_the_installed_chromium() {
    let cache = tempfile::tempdir().unwrap();
    let mut examined = Vec::new();
    let found = candidates(&mut examined, cache.path());
    if Path::new(CHROMIUM).is_file() {
        assert!(found.iter().any(|p| p == Path::new(CHROMIUM)), "{found:?}");
    }
    // QtWebEngine's library, from the linker's cache, running or not.
    if Path::new(QT5_WEBENGINE).is_file() {
        assert!(found.iter().any(|p| p.canonicalize().ok() == Path::new(QT5_WEBENGINE).canonicalize().ok()), "{found:?}");
    }
    // What was examined is not listed again.
    let again = candidates(&mut examined.iter().cloned().chain(found.iter().cloned()).collect(), cache.path());
    assert!(again.iter().all(|p| !found.contains(p)), "{again:?}");
    // No duplicates.
    let mut sorted = found.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), found.len());
}

/// Uprobes at the very offsets the finder looks for must not blind it: the kernel writes
/// breakpoints into every executable-capable mapping of a probed file (a regression: the
/// finder used mmap and failed whenever the daemon was attached to Chromium).
#[test]
fn finds_the_functions_while_uprobes_are_attached_to_them() {
    if !crate::lab::support::root_or_skip("finds_the_functions_while_uprobes_are_attached_to_them") {
        return;
    }
    let path = chromium();
    let found = find_boringssl(path).expect("finder without probes");
    let events = Path::new(crate::probes::system::TRACEFS).join("uprobe_events");
    if !events.exists() {
        crate::probes::system::ensure_tracefs().expect("tracefs");
    }
    let group = format!("tracer_bssl_test_{}", std::process::id());
    let defs: Vec<String> = [found.ssl_write, found.ssl_read, found.ssl_do_handshake]
        .iter()
        .enumerate()
        .map(|(i, off)| format!("p:{group}/p{i} {}:{off:#x}", path.display()))
        .collect();
    let write = |line: &str| {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new().append(true).open(&events).expect("uprobe_events");
        f.write_all(format!("{line}\n").as_bytes())
    };
    for d in &defs {
        write(d).expect("defining a uprobe");
    }
    let enable = Path::new(crate::probes::system::TRACEFS).join("events").join(&group).join("enable");
    std::fs::write(&enable, "1").expect("enabling the uprobes");
    let again = find_boringssl(path);
    // Remove the probes before asserting, whatever happened.
    let _ = std::fs::write(&enable, "0");
    for i in 0..defs.len() {
        let _ = write(&format!("-:{group}/p{i}"));
    }
    let again = again.expect("finder with uprobes attached at the three offsets");
    assert_eq!(
        (again.ssl_write, again.ssl_read, again.ssl_do_handshake),
        (found.ssl_write, found.ssl_read, found.ssl_do_handshake)
    );
}

#[test]
fn not_a_boringssl_build_is_recognised_also_from_the_cache() {
    assert!(FindError::StringMissing.is_not_boringssl());
    let cached = FindError::CachedFailure { build_id: "ab".into(), error: FindError::StringMissing.to_string() };
    assert!(cached.is_not_boringssl());
    // A BoringSSL whose functions could not be told apart is a real failure to report.
    let ambiguous = FindError::Candidates { function: "SSL_write", count: 2, detail: String::new() };
    assert!(!ambiguous.is_not_boringssl());
    let cached = FindError::CachedFailure { build_id: "ab".into(), error: ambiguous.to_string() };
    assert!(!cached.is_not_boringssl());
}

/// QtWebEngine 5's library (Debian 12's falkon, qutebrowser, konqueror).
const QT5_WEBENGINE: &str = "/usr/lib/x86_64-linux-gnu/libQt5WebEngineCore.so.5";

/// The signature is found anywhere in a file, also across the seam between two 8 MiB reads,
/// and not in a file that only holds the path's start.
#[test]
fn the_signature_prefilter_reads_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let with = dir.path().join("with");
    let mut bytes = vec![0u8; (8 << 20) - 10];
    bytes.extend(b"../../3rdparty/chromium/third_party/boringssl/src/ssl/ssl_lib.cc\0tail");
    std::fs::write(&with, &bytes).unwrap();
    assert!(candidates::carries_the_signature(&with));
    let without = dir.path().join("without");
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&without, &bytes).unwrap();
    assert!(!candidates::carries_the_signature(&without));
    assert!(!candidates::carries_the_signature(&dir.path().join("missing")));
}

/// QtWebEngine 5.15's BoringSSL (Chromium 87's) inside libQt5WebEngineCore.so.5: found by the
/// same signature under its `3rdparty/chromium` path.
#[test]
fn finds_boringssl_in_qtwebengine() {
    let path = Path::new(QT5_WEBENGINE);
    if !path.is_file() {
        // Installed with falkon by `cargo xtask test`: a skip only outside CI.
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{QT5_WEBENGINE} is not installed (package libqt5webenginecore5)");
        eprintln!("skipped: {QT5_WEBENGINE} is not installed (package libqt5webenginecore5)");
        return;
    }
    let found = find_boringssl(path).unwrap_or_else(|e| panic!("finder failed on {QT5_WEBENGINE}: {e}\n{}", describe(path).unwrap_or_default()));
    eprintln!("{found:?}");
    for off in [found.ssl_write, found.ssl_read, found.ssl_do_handshake] {
        assert!(off > 0);
    }
    assert_ne!(found.ssl_write, found.ssl_read);
}
