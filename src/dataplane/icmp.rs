//! ICMP errors the data path writes back into the TUN device, built in caller
//! buffers with the `wire` views (no allocation).
//!
//! A packet whose destination no lease covers is answered as flannel's udp backend
//! answers it: ICMPv4 destination unreachable, code 0 (network unreachable), from
//! this host's overlay address, quoting the offending IP header and the first 8
//! bytes of its payload (RFC 792). RFC 1812 §4.3.2.7's exceptions apply: no error
//! about an ICMP error, a non-initial fragment, or a packet from or to a multicast,
//! broadcast or unspecified address.
//!
//! An IPv6 packet gets the same answer in ICMPv6's terms (RFC 4443 §3.1):
//! destination unreachable, code 0 (no route to destination), from this host's
//! IPv6 overlay address, quoting as much of the packet as fits in the minimum
//! IPv6 MTU; never about an ICMPv6 error, nor from or to a multicast or
//! unspecified address (§2.4 (e)).

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::{checksum, ipv4, ipv6, IpProtocol};

/// ICMPv4 type 3, destination unreachable.
const TYPE_DEST_UNREACHABLE: u8 = 3;
/// Code 0: network unreachable.
const CODE_NET_UNREACHABLE: u8 = 0;
/// ICMP header: type, code, checksum, 4 unused bytes.
const ICMP_HEADER_LEN: usize = 8;
/// The most an ICMPv4 answer can be: our header, the ICMP header, the quoted
/// header (at most 60 bytes) and 8 bytes of its payload.
const MAX_LEN_V4: usize = ipv4::HEADER_LEN + ICMP_HEADER_LEN + 60 + 8;
/// The most an ICMPv6 answer may be: the minimum IPv6 MTU (RFC 4443 §2.4 (c)).
const MAX_LEN_V6: usize = 1280;
/// The most an answer of either family can be: a buffer this long always fits.
pub const MAX_LEN: usize = if MAX_LEN_V6 > MAX_LEN_V4 {
    MAX_LEN_V6
} else {
    MAX_LEN_V4
};
/// ICMPv6 type 1, destination unreachable.
const TYPE6_DEST_UNREACHABLE: u8 = 1;
/// Code 0: no route to destination.
const CODE6_NO_ROUTE: u8 = 0;
/// ICMPv6 types below this are errors (RFC 4443 §2.1).
const TYPE6_FIRST_INFORMATIONAL: u8 = 128;

/// This host's overlay addresses, one per family the overlay has: the sources of
/// the errors (the TUN holds them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gateways {
    /// The IPv4 one, the first address of our IPv4 subnet.
    pub v4: Option<Ipv4Addr>,
    /// The IPv6 one, the first address of our IPv6 subnet.
    pub v6: Option<Ipv6Addr>,
}

impl Gateways {
    /// The answer to `original`, a packet no lease covers, written into `out`
    /// (at least [`MAX_LEN`] bytes): its length, or `None` when none is due or
    /// we have no address of its family.
    pub fn unreachable(&self, original: &[u8], out: &mut [u8]) -> Option<usize> {
        match original.first()? >> 4 {
            4 => net_unreachable_v4(original, self.v4?, out),
            6 => net_unreachable_v6(original, self.v6?, out),
            _ => None,
        }
    }
}

/// Whether an ICMP type is an error message (RFC 1812 §4.3.2.7 forbids answering it).
fn is_icmp_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

fn is_unicast(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast() || a.is_broadcast())
}

/// Writes into `out` an ICMP network-unreachable message from `src` answering the
/// IPv4 packet `original`, and returns its length; `None` when no answer is due or
/// possible (`out` shorter than [`MAX_LEN`] never is, for a valid `original`).
pub fn net_unreachable_v4(original: &[u8], src: Ipv4Addr, out: &mut [u8]) -> Option<usize> {
    let orig = ipv4::Packet::new_checked(original).ok()?;
    if orig.frag_offset() != 0 || !is_unicast(orig.src_addr()) || !is_unicast(orig.dst_addr()) {
        return None;
    }
    let header_len = orig.header_len();
    if orig.protocol() == IpProtocol::Icmp
        && orig.payload().first().is_none_or(|&t| is_icmp_error(t))
    {
        return None;
    }
    let quoted = &original[..(header_len + 8).min(usize::from(orig.total_len()))];
    let len = ipv4::HEADER_LEN + ICMP_HEADER_LEN + quoted.len();
    let out = out.get_mut(..len)?;

    let repr = ipv4::Repr {
        src_addr: src,
        dst_addr: orig.src_addr(),
        protocol: IpProtocol::Icmp,
        payload_len: len - ipv4::HEADER_LEN,
        ttl: 64,
        dscp_ecn: 0,
        ident: 0,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
    };
    let (ip, icmp) = out.split_at_mut(ipv4::HEADER_LEN);
    repr.emit(&mut ipv4::Packet::new_unchecked(&mut *ip));
    icmp[..ICMP_HEADER_LEN].copy_from_slice(&[
        TYPE_DEST_UNREACHABLE,
        CODE_NET_UNREACHABLE,
        0,
        0,
        0,
        0,
        0,
        0,
    ]);
    icmp[ICMP_HEADER_LEN..].copy_from_slice(quoted);
    let sum = !checksum::data(icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(len)
}

/// Writes into `out` an ICMPv6 destination-unreachable (no route) from `src`
/// answering the IPv6 packet `original`, and returns its length; `None` when no
/// answer is due or possible (see the module docs).
pub fn net_unreachable_v6(original: &[u8], src: Ipv6Addr, out: &mut [u8]) -> Option<usize> {
    let orig = ipv6::Packet::new_checked(original).ok()?;
    let unicast = |a: Ipv6Addr| !(a.is_unspecified() || a.is_multicast());
    if !unicast(orig.src_addr()) || !unicast(orig.dst_addr()) {
        return None;
    }
    // An ICMPv6 error is never answered. Behind extension headers the type is
    // not looked for: such a packet is answered, as the kernel would.
    if orig.next_header() == IpProtocol::Icmpv6
        && orig
            .payload()
            .first()
            .is_none_or(|&t| t < TYPE6_FIRST_INFORMATIONAL)
    {
        return None;
    }
    let room = MAX_LEN_V6 - ipv6::HEADER_LEN - ICMP_HEADER_LEN;
    let quoted = &original[..(ipv6::HEADER_LEN + usize::from(orig.payload_len())).min(room)];
    let icmp_len = ICMP_HEADER_LEN + quoted.len();
    let out = out.get_mut(..ipv6::HEADER_LEN + icmp_len)?;
    let repr = ipv6::Repr {
        src_addr: src,
        dst_addr: orig.src_addr(),
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp_len as u16,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
    };
    let (ip, icmp) = out.split_at_mut(ipv6::HEADER_LEN);
    repr.emit(&mut ipv6::Packet::new_unchecked(&mut *ip));
    icmp[..ICMP_HEADER_LEN].fill(0);
    icmp[0] = TYPE6_DEST_UNREACHABLE;
    icmp[1] = CODE6_NO_ROUTE;
    icmp[ICMP_HEADER_LEN..].copy_from_slice(quoted);
    let pseudo = checksum::pseudo_header_v6(
        src,
        orig.src_addr(),
        IpProtocol::Icmpv6.into(),
        icmp_len as u32,
    );
    let sum = !checksum::combine(&[pseudo, checksum::data(icmp)]);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(ipv6::HEADER_LEN + icmp_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_packet(src: [u8; 4], dst: [u8; 4], frag: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 1];
        p.extend_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&[64, 17, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 20, 0, 0]);
        p.extend_from_slice(&[7u8; 12]);
        let c = !checksum::data(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn answers_with_a_valid_net_unreachable() {
        let orig = udp_packet([100, 96, 1, 2], [100, 96, 9, 9], 0);
        let mut out = [0u8; MAX_LEN];
        let gw = Ipv4Addr::new(100, 96, 1, 0);
        let len = net_unreachable_v4(&orig, gw, &mut out).expect("answered");
        assert_eq!(len, 20 + 8 + 28);
        let ip = ipv4::Packet::new_checked(&out[..len]).expect("valid IPv4");
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), gw);
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(100, 96, 1, 2));
        assert_eq!(ip.protocol(), IpProtocol::Icmp);
        let icmp = ip.payload();
        assert_eq!(&icmp[..2], &[3, 0]);
        assert_eq!(checksum::data(icmp), 0xffff);
        assert_eq!(&icmp[8..], &orig[..28]);
    }

    #[test]
    fn stays_silent_where_rfc1812_says_so() {
        let mut out = [0u8; MAX_LEN];
        let gw = Ipv4Addr::new(100, 96, 1, 0);
        let frag = udp_packet([100, 96, 1, 2], [100, 96, 9, 9], 185);
        assert_eq!(net_unreachable_v4(&frag, gw, &mut out), None);
        let mcast = udp_packet([100, 96, 1, 2], [224, 0, 0, 1], 0);
        assert_eq!(net_unreachable_v4(&mcast, gw, &mut out), None);
        let unspec = udp_packet([0, 0, 0, 0], [100, 96, 9, 9], 0);
        assert_eq!(net_unreachable_v4(&unspec, gw, &mut out), None);
        let mut icmp_err = udp_packet([100, 96, 1, 2], [100, 96, 9, 9], 0);
        icmp_err[9] = 1;
        icmp_err[20] = 3;
        icmp_err[10..12].fill(0);
        let c = !checksum::data(&icmp_err[..20]);
        icmp_err[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(net_unreachable_v4(&icmp_err, gw, &mut out), None);
        assert_eq!(net_unreachable_v4(&[0x45, 0], gw, &mut out), None);
        let orig = udp_packet([100, 96, 1, 2], [100, 96, 9, 9], 0);
        assert_eq!(net_unreachable_v4(&orig, gw, &mut out[..30]), None);
    }

    /// An IPv6 UDP packet from `src` to `dst` with `payload` bytes of payload.
    fn udp6_packet(src: &str, dst: &str, payload: usize) -> Vec<u8> {
        let mut p = vec![0u8; ipv6::HEADER_LEN + 8 + payload];
        let repr = ipv6::Repr {
            src_addr: src.parse().expect("literal"),
            dst_addr: dst.parse().expect("literal"),
            next_header: IpProtocol::Udp,
            payload_len: (8 + payload) as u16,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        };
        repr.emit(&mut ipv6::Packet::new_unchecked(&mut p[..]));
        p
    }

    #[test]
    fn answers_ipv6_with_a_valid_no_route() {
        let gw: Ipv6Addr = "fd00:100:96:1::".parse().expect("literal");
        let orig = udp6_packet("fd00:100:96:1::2", "fd00:100:96:9::9", 12);
        let mut out = [0u8; MAX_LEN];
        let len = net_unreachable_v6(&orig, gw, &mut out).expect("answered");
        assert_eq!(len, 40 + 8 + orig.len());
        let ip = ipv6::Packet::new_checked(&out[..len]).expect("valid IPv6");
        assert_eq!((ip.src_addr(), ip.next_header()), (gw, IpProtocol::Icmpv6));
        assert_eq!(
            ip.dst_addr(),
            "fd00:100:96:1::2".parse::<Ipv6Addr>().expect("literal")
        );
        let icmp = ip.payload();
        assert_eq!(&icmp[..2], &[1, 0]);
        let pseudo = checksum::pseudo_header_v6(gw, ip.dst_addr(), 58, icmp.len() as u32);
        assert_eq!(checksum::combine(&[pseudo, checksum::data(icmp)]), 0xffff);
        assert_eq!(&icmp[8..], &orig[..]);

        // A long packet is quoted only as far as the minimum MTU allows.
        let big = udp6_packet("fd00:100:96:1::2", "fd00:100:96:9::9", 1400);
        assert_eq!(net_unreachable_v6(&big, gw, &mut out), Some(1280));
    }

    #[test]
    fn stays_silent_where_rfc4443_says_so() {
        let gw: Ipv6Addr = "fd00:100:96:1::".parse().expect("literal");
        let mut out = [0u8; MAX_LEN];
        let mcast = udp6_packet("fd00:100:96:1::2", "ff02::16", 4);
        assert_eq!(net_unreachable_v6(&mcast, gw, &mut out), None);
        let unspec = udp6_packet("::", "fd00:100:96:9::9", 4);
        assert_eq!(net_unreachable_v6(&unspec, gw, &mut out), None);
        let mut icmp_err = udp6_packet("fd00:100:96:1::2", "fd00:100:96:9::9", 4);
        icmp_err[6] = 58;
        icmp_err[40] = 1;
        assert_eq!(net_unreachable_v6(&icmp_err, gw, &mut out), None);
        // An echo request (128) is answered.
        icmp_err[40] = 128;
        assert!(net_unreachable_v6(&icmp_err, gw, &mut out).is_some());
        assert_eq!(net_unreachable_v6(&[0x60, 0], gw, &mut out), None);
        assert_eq!(net_unreachable_v6(&icmp_err, gw, &mut out[..60]), None);
    }
}
