//! What this kernel offers the probes, looked at before anything is loaded: kprobes, the
//! kernel's symbols (functions and BPF helpers), the layout of each tracepoint the programs
//! read (from its `format` file), and offsets inside kernel structures (from its BTF,
//! parsed with `btfparse`). The loader turns this into load-time globals
//! (`tracer_common::layout`) and picks each family's variant from it ([`super::families`]).
use std::path::Path;

use btfparse::{Offset, Readable, TypeInformation};
use serde::Serialize;
use tracer_common::layout::{KernelOffsets, LAYOUT_FIELDS_MAX, MISSING, TRACEPOINTS, TpFields, TpLayout};

use super::system::TRACEFS;

pub const BTF_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// A member the programs read, by the name reports use (`sock.sk_err`), where BTF has it
/// (struct, member path for btfparse), and the [`KernelOffsets`] field it fills.
pub struct BtfMember {
    pub name: &'static str,
    pub structure: &'static str,
    pub path: &'static str,
    pub slot: fn(&mut KernelOffsets) -> &mut u32,
}

macro_rules! member {
    ($name:literal, $structure:literal, $path:literal, $field:ident) => {
        BtfMember { name: $name, structure: $structure, path: $path, slot: |o: &mut KernelOffsets| &mut o.$field }
    };
}

/// Every member of [`KernelOffsets`].
pub const BTF_MEMBERS: &[BtfMember] = &[
    member!("task_struct.signal", "task_struct", "signal", task_signal),
    member!("signal_struct.live", "signal_struct", "live", signal_live),
    member!("task_struct.stack", "task_struct", "stack", task_stack),
    member!("sock.sk_err", "sock", "sk_err", sk_err),
    member!("sock.skc_family", "sock", "__sk_common.skc_family", skc_family),
    member!("sock.skc_num", "sock", "__sk_common.skc_num", skc_num),
    member!("sock.skc_dport", "sock", "__sk_common.skc_dport", skc_dport),
    member!("sock.skc_rcv_saddr", "sock", "__sk_common.skc_rcv_saddr", skc_rcv_saddr),
    member!("sock.skc_daddr", "sock", "__sk_common.skc_daddr", skc_daddr),
    member!("sock.skc_v6_rcv_saddr", "sock", "__sk_common.skc_v6_rcv_saddr", skc_v6_rcv_saddr),
    member!("sock.skc_v6_daddr", "sock", "__sk_common.skc_v6_daddr", skc_v6_daddr),
    member!("sock.sk_protocol", "sock", "sk_protocol", sk_protocol),
    member!("socket.sk", "socket", "sk", socket_sk),
];

/// One tracepoint's layout on this kernel, or why there is none.
#[derive(Debug, Clone)]
pub struct FoundLayout {
    pub fields: &'static TpFields,
    pub layout: Result<TpLayout, String>,
    /// Fields not where the programs were compiled to read them: "child_pid at offset 44
    /// (compiled for 20)", "group_dead missing".
    pub differences: Vec<String>,
}

/// What the kernel offers (see the module documentation). BTF and kallsyms are read only
/// when a question needs them: parsing the kernel's BTF takes about 9 s in a debug build
/// here (0.3 s optimised), and a kernel whose tracepoints and variants need none of it
/// should not pay that at every start.
pub struct KernelSurvey {
    pub release: String,
    /// kprobes can be created (`CONFIG_KPROBES`: /sys/bus/event_source/devices/kprobe).
    pub kprobes: bool,
    pub layouts: Vec<FoundLayout>,
    btf: std::cell::OnceCell<Result<KernelOffsets, String>>,
    /// /proc/kallsyms, read once.
    symbols: std::cell::OnceCell<String>,
}

impl KernelSurvey {
    pub fn of_this_kernel() -> KernelSurvey {
        let layouts = TRACEPOINTS
            .iter()
            .map(|tp| {
                let found = format_text(tp.category, tp.name).and_then(|text| layout_from_format(tp, &text));
                match found {
                    Ok((layout, differences)) => FoundLayout { fields: tp, layout: Ok(layout), differences },
                    Err(e) => FoundLayout { fields: tp, layout: Err(e), differences: Vec::new() },
                }
            })
            .collect();
        KernelSurvey {
            release: crate::procfs::kernel_release(),
            kprobes: Path::new("/sys/bus/event_source/devices/kprobe").exists(),
            layouts,
            btf: std::cell::OnceCell::new(),
            symbols: std::cell::OnceCell::new(),
        }
    }

    /// Whether the kernel has the function `name` (kallsyms: functions and BPF helpers such
    /// as `bpf_task_pt_regs`).
    pub fn has_symbol(&self, name: &str) -> bool {
        let text = self.symbols.get_or_init(|| std::fs::read_to_string("/proc/kallsyms").unwrap_or_default());
        kallsyms_has(text, name)
    }

    /// The kernel's BTF offsets (on first use: from the cache of this kernel build, else
    /// parsed), or why there are none.
    pub fn btf(&self) -> Result<&KernelOffsets, &str> {
        self.btf.get_or_init(|| cached_btf_offsets(Path::new(OFFSETS_CACHE_DIR), Path::new(BTF_VMLINUX))).as_ref().map_err(String::as_str)
    }

    /// The offsets the programs are loaded with: BTF's when something asked for them, else
    /// none known (no program path that reads one is then taken).
    pub fn offsets(&self) -> KernelOffsets {
        match self.btf.get() {
            Some(Ok(o)) => *o,
            _ => KernelOffsets::UNKNOWN,
        }
    }

    pub fn has_tracepoint(&self, category: &str, name: &str) -> bool {
        Path::new(TRACEFS).join("events").join(category).join(name).join("format").exists()
    }

    /// The offset of a member of [`BTF_MEMBERS`] by name, if BTF has it.
    pub fn btf_member(&self, name: &str) -> Option<u32> {
        let m = BTF_MEMBERS.iter().find(|m| m.name == name)?;
        let mut o = *self.btf().ok()?;
        let v = *(m.slot)(&mut o);
        (v != MISSING).then_some(v)
    }

    pub fn layout(&self, category: &str, name: &str) -> Option<&FoundLayout> {
        self.layouts.iter().find(|l| l.fields.category == category && l.fields.name == name)
    }
}

fn format_text(category: &str, name: &str) -> Result<String, String> {
    let path = Path::new(TRACEFS).join("events").join(category).join(name).join("format");
    std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{category}:{name} does not exist on this kernel"),
        _ => format!("reading {}: {e}", path.display()),
    })
}

/// `(name, offset, size)` of every field in a tracepoint's format text.
pub fn parse_format_fields(text: &str) -> Vec<(String, u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let decl = l.strip_prefix("field:")?.split(';').next()?;
            // "const void * skaddr" / "__u8 saddr[4]" -> skaddr / saddr
            let name = decl.split_whitespace().last()?.split('[').next()?.trim_start_matches('*');
            let number = |key: &str| l.split(key).nth(1)?.split(';').next()?.trim().parse().ok();
            Some((name.to_string(), number("offset:")?, number("size:")?))
        })
        .collect()
}

/// The layout of `tp`'s fields in a format file, and how it differs from the compiled one.
/// A field of another size than compiled is an error (it would be misread); a missing one is
/// [`MISSING`] (the program gets the fact another way, or the loader reports what is lost).
pub fn layout_from_format(tp: &TpFields, text: &str) -> Result<(TpLayout, Vec<String>), String> {
    let actual = parse_format_fields(text);
    if actual.is_empty() {
        return Err(format!("{}:{}: no fields in its format file", tp.category, tp.name));
    }
    let mut layout = TpLayout { compiled: 1, size: 0, off: [MISSING; LAYOUT_FIELDS_MAX] };
    let mut differences = Vec::new();
    for (i, want) in tp.fields.iter().enumerate() {
        match actual.iter().find(|(n, _, _)| n == want.name) {
            Some((_, off, size)) if *size != want.size => {
                return Err(format!("{}:{}: {} is {size} bytes, not {}", tp.category, tp.name, want.name, want.size));
            }
            Some((_, off, _)) => {
                if *off != want.offset {
                    layout.compiled = 0;
                    differences.push(format!("{} at offset {off} (compiled for {})", want.name, want.offset));
                }
                layout.off[i] = *off;
                layout.size = layout.size.max(off + want.size);
            }
            None => {
                layout.compiled = 0;
                differences.push(format!("{} missing", want.name));
            }
        }
    }
    if layout.size > tp.buffer {
        return Err(format!("{}:{}: its fields end at byte {}, past the program's {}-byte copy", tp.category, tp.name, layout.size, tp.buffer));
    }
    Ok((layout, differences))
}

/// File contents for btfparse.
struct Bytes(Vec<u8>);

impl Readable for Bytes {
    fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
        let start = usize::try_from(offset).ok().filter(|&s| s <= self.0.len());
        match start.and_then(|s| self.0.get(s..s + buffer.len())) {
            Some(src) => {
                buffer.copy_from_slice(src);
                Ok(())
            }
            None => Err(btfparse::Error::new(btfparse::ErrorKind::EOF, "read past the end of the BTF file")),
        }
    }
}

/// [`KernelOffsets`] from a BTF file; members it lacks stay [`MISSING`] (a bitfield too:
/// `sk_protocol` before 5.6).
pub fn btf_offsets(path: &Path) -> Result<KernelOffsets, String> {
    let data = std::fs::read(path).map_err(|e| format!("no BTF at {}: {e}", path.display()))?;
    let types = TypeInformation::new(&Bytes(data)).map_err(|e| format!("parsing {}: {e:?}", path.display()))?;
    let mut offsets = KernelOffsets::UNKNOWN;
    for m in BTF_MEMBERS {
        let Some(id) = types.id_of(m.structure) else { continue };
        if let Ok((_, Offset::ByteOffset(off))) = types.offset_of(id, m.path) {
            *(m.slot)(&mut offsets) = off;
        }
    }
    Ok(offsets)
}

/// Whether /proc/kallsyms text names `name` (a line `ADDR TYPE name`, or `name\t[module]`).
/// A byte search, not a parse of its 120,000 lines (2 s in a debug build).
pub fn kallsyms_has(text: &str, name: &str) -> bool {
    let needle = format!(" {name}");
    memchr::memmem::find_iter(text.as_bytes(), needle.as_bytes()).any(|i| {
        let end = i + needle.len();
        let ends = matches!(text.as_bytes().get(end), None | Some(b'\n' | b'\t' | b' '));
        // " T name": the word before is the one-letter symbol type.
        let typed = i >= 2 && text.as_bytes()[i - 2] == b' ' && text.as_bytes()[i - 1].is_ascii_alphabetic();
        ends && typed
    })
}

/// Where the BTF offsets of each kernel build are kept: BTF takes seconds to parse (tens of
/// seconds under emulation), and a build's offsets never change.
pub const OFFSETS_CACHE_DIR: &str = "/var/cache/tracer/kernel-offsets";

/// [`btf_offsets`] through a cache keyed by this kernel build (release and `/proc/version`,
/// which holds the build's compiler and date). A cache that cannot be read or written is
/// only slower, never wrong: the key names the build.
pub fn cached_btf_offsets(dir: &Path, btf: &Path) -> Result<KernelOffsets, String> {
    let version = std::fs::read_to_string("/proc/version").unwrap_or_default();
    let key: u64 = version.bytes().fold(0xcbf29ce484222325, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3)); // FNV-1a
    let file = dir.join(format!("{}-{key:016x}.json", crate::procfs::kernel_release()));
    // A cache written by an older daemon lacks the members added since: read BTF again.
    let cached = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice::<CachedOffsets>(&b).ok());
    if let Some(o) = cached.filter(|c| BTF_MEMBERS.iter().all(|m| c.0.contains_key(m.name))) {
        return Ok(o.into());
    }
    let offsets = btf_offsets(btf)?;
    let _ = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&file, serde_json::to_vec(&CachedOffsets::from(offsets)).unwrap_or_default()));
    Ok(offsets)
}

/// [`KernelOffsets`] as the cache stores it: by member name.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedOffsets(std::collections::BTreeMap<String, u32>);

impl From<KernelOffsets> for CachedOffsets {
    fn from(mut o: KernelOffsets) -> Self {
        CachedOffsets(BTF_MEMBERS.iter().map(|m| (m.name.to_string(), *(m.slot)(&mut o))).collect())
    }
}

impl From<CachedOffsets> for KernelOffsets {
    fn from(c: CachedOffsets) -> Self {
        let mut o = KernelOffsets::UNKNOWN;
        for m in BTF_MEMBERS {
            if let Some(v) = c.0.get(m.name) {
                *(m.slot)(&mut o) = *v;
            }
        }
        o
    }
}

/// What the kernel offers, in the start-up report and on `/api/health` (`kernel`).
#[derive(Debug, Clone, Serialize, Default)]
pub struct KernelSupport {
    pub release: String,
    pub kprobes: bool,
    pub btf: bool,
    /// One line: what the probes use on this kernel, and why.
    pub reason: String,
    /// The variant each family with a choice got, and why.
    pub variants: Vec<VariantChoice>,
    /// Tracepoints whose layout differs from the compiled one, read from their format file.
    pub layouts: Vec<String>,
    /// What this kernel cannot give, and what it costs.
    pub unavailable: Vec<Unavailable>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VariantChoice {
    pub family: String,
    /// The set of attach points the choice is about ("error reports").
    pub what: String,
    /// The chosen variant's name, or None when no variant works here.
    pub variant: Option<String>,
    pub why: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Unavailable {
    pub family: String,
    pub what: String,
    /// What the user loses.
    pub cost: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::layout::{exit, fork, set_state};

    /// 6.1's sched_process_fork, from a Debian 6.1.0-50 kernel.
    const FORK_6_1: &str = "name: sched_process_fork\nID: 300\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:pid_t parent_pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:0;\n\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n";
    const EXIT_6_1: &str = "format:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;\n";

    #[test]
    fn a_moved_field_is_read_where_the_format_file_says() {
        let (l, diff) = layout_from_format(&fork::TP, FORK_6_1).unwrap();
        assert_eq!((l.compiled, l.size, l.off[fork::CHILD_PID]), (0, 48, 44));
        assert_eq!(diff, vec!["child_pid at offset 44 (compiled for 20)".to_string()]);
    }

    #[test]
    fn a_missing_field_is_marked_missing_not_refused() {
        let (l, diff) = layout_from_format(&exit::TP, EXIT_6_1).unwrap();
        assert_eq!((l.compiled, l.off[exit::GROUP_DEAD]), (0, MISSING));
        assert_eq!(diff, vec!["group_dead missing".to_string()]);
    }

    #[test]
    fn the_compiled_layout_is_recognised_and_a_resized_field_refused() {
        let mut text = String::from("format:\n");
        for f in set_state::TP.fields {
            text.push_str(&format!("\tfield:int {};\toffset:{};\tsize:{};\tsigned:0;\n", f.name, f.offset, f.size));
        }
        let (l, diff) = layout_from_format(&set_state::TP, &text).unwrap();
        assert_eq!(l, TpLayout::compiled(&set_state::TP));
        assert!(diff.is_empty());
        let resized = text.replace("skaddr;\toffset:8;\tsize:8", "skaddr;\toffset:8;\tsize:4");
        let err = layout_from_format(&set_state::TP, &resized).unwrap_err();
        assert!(err.contains("skaddr is 4 bytes, not 8"), "{err}");
        assert!(layout_from_format(&set_state::TP, "nothing here").is_err());
    }

    #[test]
    fn kallsyms_names_are_matched_whole() {
        let text = "ffffffff814d02a0 T bpf_task_pt_regs\nffffffff81e7b2e0 t sock_def_error_report\n0000000000000000 t veth_open\t[veth]\n";
        assert!(kallsyms_has(text, "bpf_task_pt_regs"));
        assert!(kallsyms_has(text, "sock_def_error_report"));
        assert!(kallsyms_has(text, "veth_open"));
        assert!(!kallsyms_has(text, "bpf_task_pt"), "a prefix is not the symbol");
        assert!(!kallsyms_has(text, "task_pt_regs"), "nor a suffix");
    }

    /// A cached build's offsets come back as they went in; a member missing from the cache
    /// file stays missing.
    #[test]
    fn cached_offsets_round_trip() {
        let mut o = KernelOffsets::UNKNOWN;
        o.sk_err = 356;
        o.task_signal = 2712;
        let back: KernelOffsets = CachedOffsets::from(o).into();
        assert_eq!(back, o);
        let partial: CachedOffsets = serde_json::from_str(r#"{"sock.sk_err": 7}"#).unwrap();
        let p: KernelOffsets = partial.into();
        assert_eq!((p.sk_err, p.task_stack), (7, MISSING));
    }

    #[test]
    fn format_fields_keep_name_offset_and_size() {
        let f = parse_format_fields("\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;\n");
        assert_eq!(f, vec![("skaddr".into(), 8, 8), ("saddr".into(), 32, 4)]);
    }

    /// The machine's own BTF has every member the programs read (this kernel is 5.6+; BTF
    /// is a requirement of the daemon, see README "Requirements").
    #[test]
    fn this_kernels_btf_gives_every_member() {
        let o = btf_offsets(Path::new(BTF_VMLINUX)).unwrap();
        let mut probe = o;
        for m in BTF_MEMBERS {
            assert_ne!(*(m.slot)(&mut probe), MISSING, "{} not found in BTF", m.name);
        }
        // struct sock starts with struct sock_common, whose first member is the address pair.
        assert_eq!(o.skc_daddr, 0);
        assert_eq!(o.skc_rcv_saddr, 4);
        assert!(btf_offsets(Path::new("/nonexistent/btf")).unwrap_err().contains("no BTF at"));
    }
}
