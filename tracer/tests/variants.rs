//! Probes on the kernel they run on: every family attaches, the report names the variant
//! each choice got; every variant this kernel can run gives the same facts; and the
//! programs' other layout paths (a record copied and read at its format file's offsets, a
//! field the kernel lacks) give the same process tree and state changes as the compiled
//! one. `cargo xtask kernels` runs this on Debian's 5.10, 6.1 and 6.12 too, where those
//! paths are the real ones.
//!
//! Root only (they load the real probes). Under CI (`CI=true`) a skip is a failure.
use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener, TcpStream},
    process::Command,
    time::Duration,
};

use tracer::{
    probes::{
        LayoutOverride, ProbeConfig, Probes,
        families::{self, Points},
        kernel::KernelSurvey,
        variants,
    },
    stream::events::{EventBody, TcpState},
};

mod support;
use support::{root_or_skip, traced::Traced};

/// The variants of `family`'s choice about `what` that this kernel can run.
fn runnable(family: &str, what: &str) -> Vec<&'static str> {
    let survey = KernelSurvey::of_this_kernel();
    families::attach_sets()
        .filter(|(f, _)| f.name == family)
        .filter_map(|(_, a)| match &a.points {
            Points::OneOf(c) if c.what == what => Some(c),
            _ => None,
        })
        .flat_map(|c| c.variants.iter())
        .filter(|v| variants::unmet(&survey, v.needs).is_none())
        .map(|v| v.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_attaches_and_the_report_names_each_choice() {
    if !root_or_skip("variants_report") {
        return;
    }
    let probes = Probes::load(&ProbeConfig { tls: false, ..Default::default() }).expect("loading probes");
    let failed: Vec<String> = probes.status.iter().filter(|s| !s.attached).map(|s| format!("{}: {:?}", s.point, s.error)).collect();
    assert!(failed.is_empty(), "on {}: {failed:#?}", probes.kernel.release);
    let report = probes.kernel.report();
    eprintln!("{report}");
    let errors = probes.kernel.variants.iter().find(|v| v.family == "tcp_state" && v.what == "error reports").expect("the error reports' choice");
    assert!(errors.variant.is_some(), "no error report variant on this kernel: {report}");
    assert!(report.contains("variant: tcp_state error reports: "), "{report}");
    // Every layout that differs from the compiled one is named, with its field.
    let survey = KernelSurvey::of_this_kernel();
    for l in survey.layouts.iter().filter(|l| !l.differences.is_empty()) {
        assert!(probes.kernel.layouts.iter().any(|s| s.contains(l.fields.name)), "{}: {report}", l.fields.name);
    }
    assert!(probes.kernel.unavailable.iter().all(|u| !u.cost.is_empty()), "{report}");
}

/// A refused connect's reason, under each error report variant this kernel runs: the
/// tracepoint (5.14+), the kprobe (kprobes), sk_err at the close (BTF).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_keeps_its_reason_under_each_error_report_variant() {
    if !root_or_skip("variants_errors") {
        return;
    }
    let names = runnable("tcp_state", "error reports");
    // sk_err at the close needs only BTF, which the daemon requires: at least it and one more.
    assert!(names.len() >= 2 && names.contains(&"sk_err_at_close"), "{names:?}");
    for name in names {
        let forced: BTreeMap<String, String> = [("tcp_state".to_string(), name.to_string())].into();
        let mut t = Traced::start(ProbeConfig { tls: false, variants: forced, ..Default::default() }).await;
        let chosen = t.probes.kernel.variants.iter().find(|v| v.what == "error reports").and_then(|v| v.variant.clone());
        assert!(chosen.as_deref().is_some_and(|c| c.starts_with(name)), "{name}: {chosen:?}");
        let closed: SocketAddr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(tokio::net::TcpStream::connect(closed).await.is_err());
        t.wait_for(&format!("ECONNREFUSED to {closed} under variant {name}"), Duration::from_secs(60), |e| {
            matches!(&e.body, EventBody::SockError { errno: 111, dst: Some(d), .. } if *d == closed)
        })
        .await;
        eprintln!("error reports variant {name}: refused connect reported");
    }
}

/// The layout paths of other kernels, on this one: every record copied and read at its
/// format file's offsets, and `sched_process_exit` without `group_dead` (as before 6.16):
/// a thread that ends is not the process's end, a child's fork, exec and exit are seen, and
/// a connect's state changes carry its 4-tuple.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_trees_and_state_changes_with_layouts_from_the_format_files() {
    if !root_or_skip("variants_layouts") {
        return;
    }
    let layout_override =
        LayoutOverride { copy: true, drop_fields: vec![("sched_process_exit".into(), "group_dead".into())] };
    let mut t = Traced::start(ProbeConfig { tls: false, layout_override, ..Default::default() }).await;
    assert!(t.probes.kernel.layouts.iter().any(|l| l.contains("group_dead missing")), "{:?}", t.probes.kernel.layouts);
    let me = std::process::id();

    // A thread of this process ends: not an exit of the process.
    std::thread::spawn(|| ()).join().unwrap();
    let mut child = Command::new("sh").args(["-c", "exit 0"]).spawn().unwrap();
    let child_pid = child.id();
    assert!(child.wait().unwrap().success());
    t.wait_for("this process's fork of sh", Duration::from_secs(60), |e| {
        e.tgid == me && matches!(&e.body, EventBody::Fork { child_pid: c } if *c == child_pid)
    })
    .await;
    t.wait_for("sh's exec", Duration::from_secs(60), |e| e.tgid == child_pid && matches!(&e.body, EventBody::Exec { .. })).await;
    t.wait_for("sh's exit", Duration::from_secs(60), |e| e.tgid == child_pid && matches!(e.body, EventBody::Exit)).await;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let local = tokio::task::spawn_blocking(move || {
        let s = TcpStream::connect(server).unwrap();
        let _peer = listener.accept().unwrap();
        s.local_addr().unwrap()
    })
    .await
    .unwrap();
    t.wait_for("ESTABLISHED with the connect's 4-tuple", Duration::from_secs(60), |e| {
        matches!(&e.body, EventBody::TcpState { new: TcpState::Established, src: Some(s), dst: Some(d), .. } if *s == local && *d == server)
    })
    .await;
    let exits_of_me = t.seen.iter().filter(|e| e.tgid == me && matches!(e.body, EventBody::Exit)).count();
    assert_eq!(exits_of_me, 0, "a thread's end was taken for the process's");
}
