//! Lab tests with real clients (getent, curl, wget) run inside the lab namespace.
//! They need root; without it they print a skip message, or fail when CI=true.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::*;
use support::lab_or_skip;

fn run(cmd: Command) -> Output {
    support::run_bounded(cmd, Duration::from_secs(20))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `curl -sS --max-time 10 --cacert CA <args>` inside the lab.
fn curl(lab: &Lab, args: &[&str]) -> Output {
    let mut cmd = lab.exec_command("curl");
    cmd.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(lab.ca_pem_path())
        .args(args);
    run(cmd)
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_getent_resolves_through_lab_dns() {
    let Some(lab) = lab_or_skip("lab_getent_resolves_through_lab_dns", LabConfig::default()).await
    else {
        return;
    };
    let mut cmd = lab.exec_command("getent");
    cmd.args(["ahosts", "www.shop.test"]);
    let o = run(cmd);
    assert!(o.status.success(), "getent ahosts failed: {}", stderr(&o));
    let out = stdout(&o);
    let addrs: std::collections::BTreeSet<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        addrs.into_iter().collect::<Vec<_>>(),
        vec!["10.77.0.3"],
        "{out}"
    );
    assert!(
        out.contains("edge.cdn.test"),
        "canonical name missing: {out}"
    );

    let mut cmd = lab.exec_command("getent");
    cmd.args(["hosts", "nope.shop.test"]);
    let o = run(cmd);
    assert_eq!(
        o.status.code(),
        Some(2),
        "nope.shop.test must not resolve: {}",
        stdout(&o)
    );

    for (host, addr) in [
        ("shop.test", "10.77.0.2"),
        ("static.shop.test", "10.77.0.4"),
    ] {
        let mut cmd = lab.exec_command("getent");
        cmd.args(["ahostsv4", host]);
        let o = run(cmd);
        assert!(stdout(&o).starts_with(addr), "{host}: {}", stdout(&o));
        assert_eq!(lab.addr_of(host), Some(addr.parse().unwrap()));
    }
    assert_eq!(lab.addr_of("www.shop.test"), Some(hosts::EDGE_ADDR.into()));
    assert_eq!(lab.addr_of("nope.shop.test"), None);

    let queries = lab.dns_queries();
    assert!(lab.dns_query_count() >= 4, "{queries:?}");
    let www: Vec<_> = queries
        .iter()
        .filter(|q| q.name == "www.shop.test")
        .collect();
    assert!(
        www.iter().any(|q| q.qtype == 1 && q.rcode == 0),
        "{queries:?}"
    );
    assert!(
        www.iter().any(|q| q.qtype == 28 && q.rcode == 0),
        "{queries:?}"
    );
    // glibc sent A and AAAA from one socket.
    assert!(
        www.iter()
            .any(|a| a.qtype == 1 && www.iter().any(|b| b.qtype == 28 && b.client == a.client)),
        "{queries:?}"
    );
    assert!(
        queries
            .iter()
            .any(|q| q.name == "nope.shop.test" && q.rcode == 3),
        "{queries:?}"
    );

    // The namespace holds nothing but the loopback device.
    let mut cmd = lab.exec_command("ip");
    cmd.args(["-o", "link"]);
    let links = stdout(&run(cmd));
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains(": lo:"), "{links}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_curl_https_http1_and_http2() {
    let Some(lab) = lab_or_skip("lab_curl_https_http1_and_http2", LabConfig::default()).await
    else {
        return;
    };
    for (flag, want) in [
        (None, "2"),
        (Some("--http2"), "2"),
        (Some("--http1.1"), "1.1"),
    ] {
        let mut args = vec!["-w", "\n%{http_code} %{http_version}"];
        args.extend(flag);
        args.push("https://www.shop.test/");
        let o = curl(&lab, &args);
        assert!(o.status.success(), "curl {flag:?}: {}", stderr(&o));
        let out = stdout(&o);
        let (body, meta) = out.rsplit_once('\n').unwrap();
        assert_eq!(body, PAGE_HTML, "curl {flag:?}");
        assert_eq!(meta, format!("200 {want}"), "curl {flag:?}");
    }
    for path in ["app.css", "app.js", "logo.png"] {
        let url = format!("https://static.shop.test/{path}");
        let o = curl(
            &lab,
            &[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{content_type}",
                &url,
            ],
        );
        assert!(
            stdout(&o).starts_with("200 "),
            "{url}: {} {}",
            stdout(&o),
            stderr(&o)
        );
    }
    let o = curl(&lab, &["https://www.shop.test/echo"]);
    assert_eq!(stdout(&o), ECHO_BODY);
    let o = curl(
        &lab,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "https://www.shop.test/missing",
        ],
    );
    assert_eq!(stdout(&o), "404");

    let reqs = lab.http_requests();
    assert!(
        reqs.iter()
            .any(|r| r.version == "HTTP/2" && r.host == "www.shop.test"),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.version == "HTTP/1.1" && r.path == "/"),
        "{reqs:?}"
    );
    assert!(lab.tls_handshake_count() >= 7);
    // TLS secrets were logged for every handshake.
    let keylog = std::fs::read_to_string(lab.server_key_log_path()).unwrap();
    assert!(
        keylog
            .lines()
            .any(|l| l.starts_with("CLIENT_TRAFFIC_SECRET_0 ")),
        "{keylog}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_curl_redirect_and_refused() {
    let Some(lab) = lab_or_skip("lab_curl_redirect_and_refused", LabConfig::default()).await else {
        return;
    };
    let o = curl(
        &lab,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            "http://shop.test/",
        ],
    );
    assert_eq!(stdout(&o), "301 https://www.shop.test/", "{}", stderr(&o));
    // Following the redirect ends on the page.
    let o = curl(
        &lab,
        &[
            "-L",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{url_effective}",
            "http://shop.test/",
        ],
    );
    assert_eq!(stdout(&o), "200 https://www.shop.test/", "{}", stderr(&o));
    // refused.shop.test resolves but nothing listens: curl exit 7 (couldn't connect).
    let o = curl(&lab, &["https://refused.shop.test/"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    // An unknown name: curl exit 6 (couldn't resolve).
    let o = curl(&lab, &["https://nope.shop.test/"]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_wget_https() {
    let Some(lab) = lab_or_skip("lab_wget_https", LabConfig::default()).await else {
        return;
    };
    let mut cmd = lab.exec_command("wget");
    cmd.args(["-q", "--timeout=10", "--tries=1"])
        .arg(format!("--ca-certificate={}", lab.ca_pem_path().display()))
        .args(["-O-", "https://www.shop.test/"]);
    let o = run(cmd);
    assert!(o.status.success(), "wget: {}", stderr(&o));
    assert_eq!(stdout(&o), PAGE_HTML);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_two_labs_do_not_clash_and_clean_up() {
    let Some(a) = lab_or_skip(
        "lab_two_labs_do_not_clash_and_clean_up",
        LabConfig::default(),
    )
    .await
    else {
        return;
    };
    let b = Lab::start(LabConfig::default()).await.expect("second lab");
    assert_ne!(a.netns_name(), b.netns_name());
    assert_ne!(a.ca_pem(), b.ca_pem());
    for lab in [&a, &b] {
        let o = curl(lab, &["https://www.shop.test/echo"]);
        assert_eq!(
            stdout(&o),
            ECHO_BODY,
            "{}: {}",
            lab.netns_name(),
            stderr(&o)
        );
    }
    // Each lab's clients trust only their own CA.
    let mut cmd = a.exec_command("curl");
    cmd.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(b.ca_pem_path())
        .arg("https://www.shop.test/echo");
    let o = run(cmd);
    assert_eq!(
        o.status.code(),
        Some(60),
        "cert of lab a must not verify with b's CA"
    );

    let name = a.netns_name().to_owned();
    let dir = a.dir().to_owned();
    assert!(netns_exists(&name));
    assert!(
        Path::new("/etc/netns")
            .join(&name)
            .join("resolv.conf")
            .exists()
    );
    drop(a);
    assert!(!netns_exists(&name), "namespace {name} left behind");
    assert!(
        !Path::new("/etc/netns").join(&name).exists(),
        "/etc/netns/{name} left behind"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
    // The other lab is unaffected.
    let o = curl(&b, &["https://www.shop.test/echo"]);
    assert_eq!(stdout(&o), ECHO_BODY, "{}", stderr(&o));
}

/// Sends one DNS query from inside the lab namespace (UDP or TCP) and returns the answer.
fn dns_query(lab: &Lab, qname: &str, qtype: RecordType, tcp: bool) -> Message {
    let mut m = Message::new();
    m.set_id(0x1234).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(qname).unwrap(), qtype));
    let q = m.to_vec().unwrap();
    let answer = lab
        .spawn_in_netns(move || -> anyhow::Result<Vec<u8>> {
            let t = Some(Duration::from_secs(3));
            if tcp {
                let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, 53))?;
                s.set_read_timeout(t)?;
                s.write_all(&(q.len() as u16).to_be_bytes())?;
                s.write_all(&q)?;
                let mut len = [0u8; 2];
                s.read_exact(&mut len)?;
                let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                s.read_exact(&mut buf)?;
                Ok(buf)
            } else {
                let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
                s.set_read_timeout(t)?;
                s.send_to(&q, (Ipv4Addr::LOCALHOST, 53))?;
                let mut buf = vec![0u8; 4096];
                let n = s.recv(&mut buf)?;
                buf.truncate(n);
                Ok(buf)
            }
        })
        .join()
        .unwrap()
        .expect("entering the lab namespace")
        .expect("dns query from inside the lab");
    Message::from_vec(&answer).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_dns_records_transports_and_delay() {
    let config = LabConfig {
        dns_delay: Duration::from_millis(300),
        ..LabConfig::default()
    };
    let Some(lab) = lab_or_skip("lab_dns_records_transports_and_delay", config).await else {
        return;
    };
    for tcp in [false, true] {
        let t0 = Instant::now();
        let r = dns_query(&lab, "www.shop.test.", RecordType::HTTPS, tcp);
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "dns_delay not applied"
        );
        assert_eq!(r.id(), 0x1234);
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert!(r.authoritative());
        let https = r
            .answers()
            .iter()
            .find_map(|a| match a.data() {
                RData::HTTPS(h) => Some(h.clone()),
                _ => None,
            })
            .expect("HTTPS record");
        assert_eq!(https.svc_priority(), 1);
        let alpn = format!("{:?}", https.svc_params());
        assert!(alpn.contains("h2") && alpn.contains("http/1.1"), "{alpn}");
        assert!(r.answers().iter().all(|a| a.ttl() == 60));

        let r = dns_query(&lab, "shop.test.", RecordType::AAAA, tcp);
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert!(r.answers().is_empty());
        let r = dns_query(&lab, "nope.shop.test.", RecordType::A, tcp);
        assert_eq!(r.response_code(), ResponseCode::NXDomain);
        let r = dns_query(&lab, "refused.shop.test.", RecordType::A, tcp);
        assert_eq!(r.answers()[0].data(), &RData::A(hosts::REFUSED_ADDR.into()));
    }
    assert_eq!(lab.dns_query_count(), 8);
    let log = lab.dns_queries();
    assert_eq!(
        log.iter()
            .filter(|q| q.transport == DnsTransport::Tcp)
            .count(),
        4,
        "{log:?}"
    );

    // glibc's A + AAAA pair is answered in parallel (one delay, not two): both queries had
    // arrived when the first of them was answered.
    let before = lab.dns_query_count();
    let t0 = Instant::now();
    let mut cmd = lab.exec_command("getent");
    cmd.args(["ahosts", "static.shop.test"]);
    let o = run(cmd);
    assert!(t0.elapsed() >= Duration::from_millis(300), "dns_delay not applied");
    assert!(stdout(&o).starts_with("10.77.0.4"), "{}", stdout(&o));
    let pair: Vec<_> = lab.dns_queries().into_iter().filter(|q| q.name == "static.shop.test").collect();
    assert_eq!(pair.iter().map(|q| q.qtype).collect::<std::collections::BTreeSet<_>>(), [1, 28].into(), "{pair:?}");
    assert!(pair.iter().all(|q| q.received_by_then == before + 2), "answered one at a time: {pair:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_think_time_and_throttle() {
    let config = LabConfig {
        think_time: Duration::from_millis(200),
        body_bytes_per_sec: Some(40_000),
        ..LabConfig::default()
    };
    let Some(lab) = lab_or_skip("lab_think_time_and_throttle", config).await else {
        return;
    };
    for flag in ["--http1.1", "--http2"] {
        let o = curl(
            &lab,
            &[
                flag,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download} %{time_appconnect} %{time_starttransfer} %{time_total}",
                "https://www.shop.test/bytes/20000",
            ],
        );
        let out = stdout(&o);
        let f: Vec<&str> = out.split(' ').collect();
        assert_eq!(&f[..2], ["200", "20000"], "{out} {}", stderr(&o));
        let appconnect: f64 = f[2].parse().unwrap();
        let ttfb: f64 = f[3].parse().unwrap();
        let total: f64 = f[4].parse().unwrap();
        assert!(ttfb - appconnect >= 0.19, "think time: {out}");
        // 20000 bytes at 40000 B/s: about half a second after the head.
        assert!(
            total - ttfb >= 0.4 && total - ttfb < 1.5,
            "throttle ({flag}): {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_ipv6_records() {
    let config = LabConfig {
        ipv6: true,
        ..LabConfig::default()
    };
    let Some(lab) = lab_or_skip("lab_ipv6_records", config).await else {
        return;
    };
    let mut cmd = lab.exec_command("getent");
    cmd.args(["ahostsv6", "www.shop.test"]);
    let o = run(cmd);
    assert!(stdout(&o).starts_with("fd77::3 "), "{}", stdout(&o));
    let o = curl(
        &lab,
        &["-6", "-w", " %{remote_ip}", "https://www.shop.test/echo"],
    );
    assert_eq!(stdout(&o), format!("{ECHO_BODY} fd77::3"), "{}", stderr(&o));
    assert_eq!(
        lab.addr6_of("static.shop.test"),
        Some("fd77::4".parse().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_cleanup_stale_removes_dead_labs() {
    if lab_or_skip("lab_cleanup_stale_removes_dead_labs", LabConfig::default())
        .await
        .is_none()
    {
        return;
    }
    // A pid that is certainly dead: a child that has exited and been reaped.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let name = format!("tracer-lab-{dead}-0");
    let o = run({
        let mut c = Command::new("ip");
        c.args(["netns", "add", &name]);
        c
    });
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::create_dir_all(Path::new("/etc/netns").join(&name)).unwrap();
    std::fs::write(Path::new("/etc/netns").join(&name).join("resolv.conf"), "").unwrap();

    let removed = cleanup_stale().unwrap();
    assert!(removed.contains(&name), "{removed:?}");
    assert!(!netns_exists(&name));
    assert!(!Path::new("/etc/netns").join(&name).exists());
}
