//! Socket addresses as the kernel reads and writes them: the bytes of a
//! `sockaddr_in` or `sockaddr_in6`, built from and read back into a
//! [`SocketAddr`], for the `msghdr`s of io_uring sends and receives.
//!
//! The kernel copies a message's name in and out as bytes (`move_addr_to_kernel`,
//! `move_addr_to_user`), so the buffer needs no particular type: it is a byte
//! array as large as the larger of the two, and every field is read and written
//! through a bounds-checked slice at the offsets libc's own structs give. No
//! `unsafe`.
//!
//! An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack IPv6 socket
//! reports for an IPv4 sender) is read back as the IPv4 address, so the rest of
//! ringlay sees one form of every peer address.

use std::mem::{offset_of, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::Range;

/// Bytes of the larger socket address, `sockaddr_in6`.
pub const SOCKADDR_MAX: usize = size_of::<libc::sockaddr_in6>();

/// Field offsets of the two structs.
mod field {
    use super::{offset_of, size_of, Range};

    const fn at(offset: usize, len: usize) -> Range<usize> {
        offset..offset + len
    }

    /// `sa_family`, first in both, in host byte order.
    pub const FAMILY: Range<usize> = at(
        offset_of!(libc::sockaddr_in, sin_family),
        size_of::<libc::sa_family_t>(),
    );
    /// `sin_port` and `sin6_port` (the same offset), in network byte order.
    pub const PORT: Range<usize> = at(offset_of!(libc::sockaddr_in, sin_port), 2);
    /// `sin_addr`.
    pub const ADDR4: Range<usize> = at(offset_of!(libc::sockaddr_in, sin_addr), 4);
    /// `sin6_addr`.
    pub const ADDR6: Range<usize> = at(offset_of!(libc::sockaddr_in6, sin6_addr), 16);
}

// The port sits at one offset in both structs: `PORT` serves either.
const _: () =
    assert!(offset_of!(libc::sockaddr_in, sin_port) == offset_of!(libc::sockaddr_in6, sin6_port));

/// A socket address in the kernel's layout, with its length.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(8))]
pub struct RawSockAddr {
    bytes: [u8; SOCKADDR_MAX],
}

impl Default for RawSockAddr {
    fn default() -> Self {
        RawSockAddr {
            bytes: [0; SOCKADDR_MAX],
        }
    }
}

impl RawSockAddr {
    /// `addr` as a `sockaddr_in` (IPv4) or `sockaddr_in6` (IPv6), and its length.
    pub fn encode(addr: SocketAddr) -> (RawSockAddr, u32) {
        let mut raw = RawSockAddr::default();
        let b = &mut raw.bytes;
        b[field::PORT].copy_from_slice(&addr.port().to_be_bytes());
        let (family, len) = match addr {
            SocketAddr::V4(a) => {
                b[field::ADDR4].copy_from_slice(&a.ip().octets());
                (libc::AF_INET, size_of::<libc::sockaddr_in>())
            }
            SocketAddr::V6(a) => {
                // Flow label and scope id stay zero: tunnel peers are global
                // unicast addresses.
                b[field::ADDR6].copy_from_slice(&a.ip().octets());
                (libc::AF_INET6, size_of::<libc::sockaddr_in6>())
            }
        };
        b[field::FAMILY].copy_from_slice(&(family as libc::sa_family_t).to_ne_bytes());
        (raw, len as u32)
    }

    /// The address the kernel wrote, `len` bytes of it.
    pub fn decode_len(&self, len: usize) -> Option<SocketAddr> {
        decode(self.bytes.get(..len)?)
    }

    /// Where the kernel may write an address (the buffer of a receive).
    pub fn as_mut_ptr(&mut self) -> *mut libc::c_void {
        self.bytes.as_mut_ptr().cast()
    }
}

/// Reads a `sockaddr_in` or `sockaddr_in6` from `name`, as a receive returned
/// it; `None` for another family or a short name. An IPv4-mapped IPv6 address
/// comes back as the IPv4 address.
pub fn decode(name: &[u8]) -> Option<SocketAddr> {
    let family = libc::sa_family_t::from_ne_bytes(name.get(field::FAMILY)?.try_into().ok()?);
    let port = u16::from_be_bytes(name.get(field::PORT)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET if name.len() >= size_of::<libc::sockaddr_in>() => {
            let a: [u8; 4] = name.get(field::ADDR4)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), port)))
        }
        libc::AF_INET6 if name.len() >= size_of::<libc::sockaddr_in6>() => {
            let a: [u8; 16] = name.get(field::ADDR6)?.try_into().ok()?;
            let ip = Ipv6Addr::from(a);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)),
            })
        }
        _ => None,
    }
}

/// The address a socket of `v6_socket` family sends to for `addr`: an IPv4
/// address becomes its IPv4-mapped form on an IPv6 (dual-stack) socket, which
/// takes IPv4 destinations only so.
pub fn for_socket(addr: SocketAddr, v6_socket: bool) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if v6_socket => {
            SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("literal")
    }

    #[test]
    fn both_families_round_trip_in_the_kernels_layout() {
        for addr in ["192.0.2.1:8472", "[2001:db8::1]:8285", "0.0.0.0:0"] {
            let (raw, len) = RawSockAddr::encode(sa(addr));
            assert_eq!(raw.decode_len(len as usize), Some(sa(addr)));
        }
        let (raw, len) = RawSockAddr::encode(sa("192.0.2.1:8472"));
        assert_eq!(len as usize, size_of::<libc::sockaddr_in>());
        // sin_port in network byte order, sin_addr as the octets.
        assert_eq!(&raw.bytes[2..8], &[0x21, 0x18, 192, 0, 2, 1]);
        let (_, len) = RawSockAddr::encode(sa("[2001:db8::1]:1"));
        assert_eq!(len as usize, size_of::<libc::sockaddr_in6>());
    }

    #[test]
    fn a_mapped_sender_reads_as_ipv4_and_junk_as_nothing() {
        let (raw, len) = RawSockAddr::encode(sa("[::ffff:192.0.2.7]:8472"));
        assert_eq!(raw.decode_len(len as usize), Some(sa("192.0.2.7:8472")));
        let (raw, _) = RawSockAddr::encode(sa("[2001:db8::1]:1"));
        assert_eq!(raw.decode_len(20), None, "a short sockaddr_in6");
        assert_eq!(decode(&[]), None);
        let unix = (libc::AF_UNIX as libc::sa_family_t).to_ne_bytes();
        assert_eq!(decode(&[unix[0], unix[1], 0, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn an_ipv6_socket_sends_to_ipv4_peers_by_their_mapped_address() {
        assert_eq!(
            for_socket(sa("192.0.2.1:8472"), true),
            sa("[::ffff:192.0.2.1]:8472")
        );
        assert_eq!(
            for_socket(sa("192.0.2.1:8472"), false),
            sa("192.0.2.1:8472")
        );
        assert_eq!(
            for_socket(sa("[2001:db8::2]:8472"), true),
            sa("[2001:db8::2]:8472")
        );
    }
}
