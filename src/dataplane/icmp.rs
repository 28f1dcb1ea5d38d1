//! ICMP errors the data path writes back into the TUN device, built in caller
//! buffers with the `wire` views (no allocation).
//!
//! A packet whose destination no lease covers is answered as flannel's udp backend
//! answers it: ICMPv4 destination unreachable, code 0 (network unreachable), from
//! this host's overlay address, quoting the offending IP header and the first 8
//! bytes of its payload (RFC 792). RFC 1812 §4.3.2.7's exceptions apply: no error
//! about an ICMP error, a non-initial fragment, or a packet from or to a multicast,
//! broadcast or unspecified address. IPv6 packets without a lease are dropped and
//! counted only.

use core::net::Ipv4Addr;

use crate::wire::{checksum, ipv4, IpProtocol};

/// ICMPv4 type 3, destination unreachable.
const TYPE_DEST_UNREACHABLE: u8 = 3;
/// Code 0: network unreachable.
const CODE_NET_UNREACHABLE: u8 = 0;
/// ICMP header: type, code, checksum, 4 unused bytes.
const ICMP_HEADER_LEN: usize = 8;
/// The most an answer can be: our header, the ICMP header, the quoted header (at
/// most 60 bytes) and 8 bytes of its payload.
pub const MAX_LEN: usize = ipv4::HEADER_LEN + ICMP_HEADER_LEN + 60 + 8;

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
}
