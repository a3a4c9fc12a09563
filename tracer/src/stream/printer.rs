//! One line per event for `tracer run --print` (text) and `--json` (one object per line).
//! Plaintext is never printed: only the HTTP request/status line with query values redacted.
use std::fmt::Write as _;

use super::events::{Direction, Event, EventBody, HandshakePhase};

fn opt_addr(a: &Option<std::net::SocketAddr>) -> String {
    a.map(|a| a.to_string()).unwrap_or_else(|| "?".into())
}

pub fn text_line(e: &Event) -> String {
    let mut s = format!("{:>14.6} {}[{}/{}] ", e.ts_ns as f64 / 1e9, e.comm, e.tgid, e.pid);
    let _ = match &e.body {
        EventBody::Connect { fd, ret, error, dst, skaddr, tcp, duration_ns } => write!(
            s,
            "connect fd={fd} -> {} {} ({:.3} ms){}",
            opt_addr(dst),
            match error {
                None => "ok".to_string(),
                Some(name) => format!("{name} ({ret})"),
            },
            *duration_ns as f64 / 1e6,
            if *tcp { format!(" tcp sk={skaddr:#x}") } else { String::new() }
        ),
        EventBody::TcpState { skaddr, old, new, src, dst } => write!(
            s,
            "tcp_state sk={skaddr:#x} {} -> {} {} -> {}",
            opt_addr(src),
            opt_addr(dst),
            old.name(),
            new.name()
        ),
        EventBody::SockError { error, errno, protocol, src, dst } => write!(
            s,
            "sock_error {error} ({errno}) proto={protocol} {} -> {}",
            opt_addr(src),
            opt_addr(dst)
        ),
        EventBody::Dns { fd, direction, syscall, tcp, len, peer, message, .. } => write!(
            s,
            "dns {} fd={fd} {} {}{} via {} ({len} bytes): {}",
            match direction {
                Direction::Send => "send",
                Direction::Recv => "recv",
            },
            match direction {
                Direction::Send => "->",
                Direction::Recv => "<-",
            },
            opt_addr(peer),
            if *tcp { " tcp" } else { "" },
            syscall.map(|s| format!("{s:?}").to_lowercase()).unwrap_or_else(|| "?".into()),
            match message {
                Ok(m) => m.to_string(),
                Err(err) => format!("undecodable: {err}"),
            }
        ),
        EventBody::TlsData { lib, func, tls_obj, fd, direction, len, first_line, http2_preface, .. } => {
            write!(
                s,
                "tls {} {} obj={tls_obj:#x} fd={fd} {} {len} bytes",
                lib.map(|l| format!("{l:?}").to_lowercase()).unwrap_or_default(),
                func.map(|f| format!("{f:?}")).unwrap_or_default(),
                match direction {
                    Direction::Send => "write",
                    Direction::Recv => "read",
                },
            )
            .and_then(|_| match (first_line, http2_preface) {
                (Some(l), _) => write!(s, " \"{l}\""),
                (None, true) => write!(s, " \"HTTP/2 connection preface\""),
                _ => Ok(()),
            })
        }
        EventBody::TlsHandshake { lib, func, tls_obj, fd, phase, ret } => write!(
            s,
            "tls_handshake {} {} obj={tls_obj:#x} fd={fd} {}",
            lib.map(|l| format!("{l:?}").to_lowercase()).unwrap_or_default(),
            func.map(|f| format!("{f:?}")).unwrap_or_default(),
            match phase {
                HandshakePhase::Enter => "enter".to_string(),
                HandshakePhase::Return => format!("return {ret}"),
            }
        ),
        EventBody::TlsFd { lib, func, tls_obj, fd } => write!(
            s,
            "tls_fd {} {} obj={tls_obj:#x} fd={fd}",
            lib.map(|l| format!("{l:?}").to_lowercase()).unwrap_or_default(),
            func.map(|f| format!("{f:?}")).unwrap_or_default(),
        ),
        EventBody::SocketData { fd, direction, syscall, len, first_line, .. } => write!(
            s,
            "socket fd={fd} {} {len} bytes via {}{}",
            match direction {
                Direction::Send => "write",
                Direction::Recv => "read",
            },
            syscall.map(|s| format!("{s:?}").to_lowercase()).unwrap_or_else(|| "?".into()),
            first_line.as_ref().map(|l| format!(" \"{l}\"")).unwrap_or_default()
        ),
        EventBody::QuicDatagram { fd, direction, len, segment, peer, .. } => write!(
            s,
            "quic fd={fd} {} {len} bytes {} {}{}",
            match direction {
                Direction::Send => "sent",
                Direction::Recv => "received",
            },
            match direction {
                Direction::Send => "to",
                Direction::Recv => "from",
            },
            peer.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            if *segment > 0 { format!(" in segments of {segment}") } else { String::new() }
        ),
        // Never the plaintext, the header or the nonce: they carry the page's requests and
        // the connection's IDs.
        EventBody::QuicPlaintext { lib, direction, ctx, len, aad_len, .. } => write!(
            s,
            "quic_plaintext {} {} ctx={ctx:#x} {len} bytes, header {aad_len} bytes",
            lib.map(|l| format!("{l:?}").to_lowercase()).unwrap_or_else(|| "?".into()),
            match direction {
                Direction::Send => "seal",
                Direction::Recv => "open",
            },
        ),
        EventBody::Fork { child_pid } => write!(s, "fork child={child_pid}"),
        EventBody::Exec { filename } => write!(s, "exec {filename}"),
        EventBody::Exit => write!(s, "exit"),
    };
    escape_controls(s)
}

/// One line on a terminal, whatever other processes put into their names, file names or
/// request lines: control characters (newlines, escape sequences) are written escaped.
fn escape_controls(line: String) -> String {
    if !line.chars().any(char::is_control) {
        return line;
    }
    line.chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

pub fn json_line(e: &Event) -> String {
    serde_json::to_string(e).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::events::TcpState;

    fn ev(body: EventBody) -> Event {
        Event { ts_ns: 1_500_000_000, tgid: 10, pid: 11, comm: "curl".into(), body }
    }

    #[test]
    fn lines_name_what_happened() {
        let l = text_line(&ev(EventBody::Connect {
            fd: 5,
            ret: -111,
            error: Some("ECONNREFUSED"),
            dst: Some("127.0.0.1:9".parse().unwrap()),
            skaddr: 0xabc,
            tcp: true,
            duration_ns: 250_000,
        }));
        assert!(l.contains("curl[10/11] connect fd=5 -> 127.0.0.1:9 ECONNREFUSED (-111) (0.250 ms) tcp sk=0xabc"), "{l}");
        let l = text_line(&ev(EventBody::TcpState {
            skaddr: 1,
            old: TcpState::SynSent,
            new: TcpState::Established,
            src: None,
            dst: Some("[::1]:443".parse().unwrap()),
        }));
        assert!(l.ends_with("? -> [::1]:443 SYN_SENT -> ESTABLISHED"), "{l}");
    }

    /// Found by the `events` fuzz target: an exec'd file name with CR LF split the line.
    #[test]
    fn control_characters_are_escaped() {
        let mut e = ev(EventBody::Exec { filename: "/tmp/a\r\nFAKE 1 line\x1b[2J".into() });
        e.comm = "evil\n".into();
        let line = text_line(&e);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.contains(r"evil\n[") && line.contains(r"exec /tmp/a\r\nFAKE 1 line\u{1b}[2J"), "{line}");
    }

    #[test]
    fn json_has_kind_tag_and_no_plaintext() {
        let e = ev(EventBody::TlsData {
            lib: Some(tracer_common::TlsLib::OpenSsl),
            func: Some(tracer_common::TlsFunc::SSL_write),
            tls_obj: 1,
            fd: 3,
            direction: Direction::Send,
            len: 40,
            captured: 40,
            duration_ns: 1,
            first_line: Some("GET / HTTP/1.1".into()),
            http2_preface: false,
            data: b"GET / HTTP/1.1\r\nAuthorization: Bearer S3CR3T\r\n\r\n".to_vec(),
        });
        let j = json_line(&e);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["kind"], "tls_data");
        assert_eq!(v["first_line"], "GET / HTTP/1.1");
        assert!(!j.contains("S3CR3T"));
        assert!(!text_line(&e).contains("S3CR3T"));
    }
}
