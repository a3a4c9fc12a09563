//! User-space decoders for the bytes the eBPF programs capture: DNS messages, the TLS record
//! layer and ClientHello, HTTP (the first line of HTTP/1.x traffic, and whole HTTP/1.x and
//! HTTP/2 exchanges from a connection's plaintext), QUIC packets (headers, the Initial
//! packets decrypted with their public keys, the handshake of a connection, the frames of any
//! decrypted payload), and HTTP/3 exchanges from a connection's decrypted QUIC payloads
//! ([`h3`], with QPACK; the same exchanges as HTTP/1 and HTTP/2).
//!
//! Every decoder takes untrusted, possibly truncated bytes (the kernel copies at most a fixed
//! number of bytes per event) and returns an error that names what was wrong; none of them
//! panics on any input.

pub mod dns;
pub mod h3;
pub mod http;
pub mod quic;
pub mod tls;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use serde::Serialize;
use tracer_common::{AF_INET, AF_INET6, SockAddr};

/// Which way a connection's bytes moved: sent by the traced client, or received by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Send,
    Recv,
}

/// Turns the kernel's fixed address form (see [`tracer_common::SockAddr`]) into a
/// [`SocketAddr`]: `AF_INET` (2) uses `addr[0..4]`, `AF_INET6` (10) uses all 16 bytes, both in
/// network byte order; `port` is in host byte order. Any other family (0 = unknown) gives
/// `None`.
pub fn format_addr(family: u16, port: u16, addr: &[u8; 16]) -> Option<SocketAddr> {
    match family {
        AF_INET => {
            let ip = Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        AF_INET6 => {
            let ip = Ipv6Addr::from(*addr);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)))
        }
        _ => None,
    }
}

/// [`format_addr`] applied to a whole [`SockAddr`].
pub fn sock_addr(sa: &SockAddr) -> Option<SocketAddr> {
    format_addr(sa.family, sa.port, &sa.addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_uses_first_four_bytes() {
        let mut addr = [0xffu8; 16];
        addr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let sa = format_addr(AF_INET, 443, &addr).expect("AF_INET is known");
        assert_eq!(sa, "10.0.0.2:443".parse::<SocketAddr>().unwrap());
        assert_eq!(sa.to_string(), "10.0.0.2:443");
    }

    #[test]
    fn ipv6_uses_all_sixteen_bytes() {
        let ip: Ipv6Addr = "2001:db8::1:2".parse().unwrap();
        let sa = format_addr(AF_INET6, 53, &ip.octets()).expect("AF_INET6 is known");
        assert_eq!(sa.to_string(), "[2001:db8::1:2]:53");
        assert_eq!(sa.port(), 53);
    }

    #[test]
    fn unknown_families_are_none() {
        let addr = [1u8; 16];
        for family in [0u16, 1, 3, 9, 11, 17, u16::MAX] {
            assert_eq!(format_addr(family, 80, &addr), None, "family {family}");
        }
    }

    #[test]
    fn sock_addr_matches_format_addr() {
        let sa = SockAddr {
            family: AF_INET,
            port: 8080,
            _pad: 0,
            addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        };
        assert_eq!(sock_addr(&sa), Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(sock_addr(&SockAddr::default()), None);
    }
}
