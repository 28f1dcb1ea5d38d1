//! Inner checksums a sender left partial.
//!
//! A Linux sender hands a TCP segment or UDP datagram to a virtual device (veth,
//! a kernel vxlan device on a veth or virtio underlay) with `CHECKSUM_PARTIAL`:
//! the checksum field holds only the folded sum of the pseudo-header, and the rest
//! is left to a NIC that never runs. The kernel's own receivers trust the skb's
//! state and deliver it; a userspace receiver gets the uncompleted bytes, and a
//! stack that checks them drops the packet. This is what a flanneld vxlan node
//! with default offloads sends across a veth underlay (kind, VMs on one host).
//!
//! [`partial_checksum`] recognises such a packet by its field holding exactly the
//! pseudo-header sum — from the headers alone, without a pass over the payload —
//! so that ringlay delivers it as the kernel would: written to the TUN with
//! `NEEDS_CSUM` (the kernel then treats it as a partial checksum from a local
//! sender, virtio 1.x §5.1.6.2), or, without a virtio header, completed first
//! ([`Partial::completed`]). A packet whose field holds anything else is passed on
//! untouched, so the receiving stack still drops one corrupted on the way (a
//! corrupted packet matches the pseudo-header sum by chance with the odds of any
//! one's-complement checksum collision, 1 in 65,536).

use crate::wire::virtio::{self, GsoType};
use crate::wire::{checksum, ipv4, ipv6, tcp, udp, IpProtocol};

use super::{pseudo_header, store_checksum};

/// Where a partial checksum is to be completed: the sum of the bytes from
/// `start`, stored at `start + offset` (virtio's `csum_start` and `csum_offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    /// Where the transport header starts.
    pub start: u16,
    /// Where its checksum field is, from `start`.
    pub offset: u16,
}

impl Partial {
    /// The `virtio_net_hdr` that has the kernel complete the checksum.
    pub fn header(self) -> virtio::Repr {
        virtio::Repr {
            flags: virtio::FLAG_NEEDS_CSUM,
            gso_type: GsoType::None,
            csum_start: self.start,
            csum_offset: self.offset,
            ..virtio::Repr::default()
        }
    }

    /// Where the checksum field is in the packet.
    pub fn field(self) -> usize {
        usize::from(self.start) + usize::from(self.offset)
    }

    /// The finished checksum of `packet`, whose field still holds the
    /// pseudo-header sum, as the kernel's `skb_checksum_help` computes it (a UDP
    /// checksum of 0 is sent as 0xffff, RFC 768).
    pub fn completed(self, packet: &[u8]) -> [u8; 2] {
        let mut field = [0; 2];
        let sum = checksum::data(packet.get(usize::from(self.start)..).unwrap_or(&[]));
        store_checksum(&mut field, sum);
        field
    }
}

/// Whether `packet` (an IP packet) is TCP or UDP with a partial checksum, and if
/// so where it is to be completed.
pub fn partial_checksum(packet: &[u8]) -> Option<Partial> {
    let (v6, protocol, start, l4_len) = match packet.first().map(|b| b >> 4) {
        Some(4) => transport_v4(packet)?,
        Some(6) => transport_v6(packet)?,
        _ => return None,
    };
    check(packet, v6, protocol, start, l4_len)
}

/// [`partial_checksum`] of a packet whose IP header was already read: its
/// transport header (`protocol`) starts at `start` and is `l4_len` bytes long
/// with its payload.
pub(super) fn check(
    packet: &[u8],
    v6: bool,
    protocol: IpProtocol,
    start: usize,
    l4_len: usize,
) -> Option<Partial> {
    let offset = match protocol {
        IpProtocol::Tcp => tcp::CHECKSUM_OFFSET,
        IpProtocol::Udp => udp::CHECKSUM_OFFSET,
        _ => return None,
    };
    let at = start + offset;
    let field = u16::from_be_bytes(packet.get(at..at + 2)?.try_into().ok()?);
    let l4_len = u16::try_from(l4_len).ok()?;
    let pseudo = pseudo_header(packet, v6, protocol.into(), l4_len);
    // A UDP checksum of 0 means "none": nothing to complete.
    (field != 0 && field == pseudo).then_some(Partial {
        start: start as u16,
        offset: offset as u16,
    })
}

/// Family, protocol, transport offset and length of an unfragmented IPv4 packet.
fn transport_v4(packet: &[u8]) -> Option<(bool, IpProtocol, usize, usize)> {
    let ip = ipv4::Packet::new_checked(packet).ok()?;
    if ip.is_fragment() {
        return None;
    }
    let start = ip.header_len();
    let l4_len = usize::from(ip.total_len()).checked_sub(start)?;
    Some((false, ip.protocol(), start, l4_len))
}

/// The same for IPv6, past any extension headers.
fn transport_v6(packet: &[u8]) -> Option<(bool, IpProtocol, usize, usize)> {
    let ip = ipv6::Packet::new_checked(packet).ok()?;
    let (protocol, start) = ip.transport().ok()?;
    let l4_len = (ipv6::HEADER_LEN + usize::from(ip.payload_len())).checked_sub(start)?;
    Some((true, protocol, start, l4_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP/IPv4 packet with `payload`, its checksum field set to `csum`.
    fn tcp4(payload: &[u8], csum: Option<u16>) -> Vec<u8> {
        let total = 20 + 20 + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[100, 96, 2, 2]);
        p[16..20].copy_from_slice(&[100, 96, 1, 2]);
        let mut ip = ipv4::Packet::new_unchecked(&mut p[..]);
        ip.fill_checksum();
        p[20..22].copy_from_slice(&5201u16.to_be_bytes());
        p[22..24].copy_from_slice(&40000u16.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = tcp::FLAG_ACK;
        p[40..].copy_from_slice(payload);
        let pseudo = pseudo_header(&p, false, 6, (total - 20) as u16);
        let value = csum.unwrap_or(pseudo);
        p[36..38].copy_from_slice(&value.to_be_bytes());
        p
    }

    #[test]
    fn a_pseudo_header_sum_is_partial_and_completes_to_a_valid_checksum() {
        let mut p = tcp4(b"hello, partial world", None);
        let partial = partial_checksum(&p).expect("partial");
        assert_eq!(
            partial,
            Partial {
                start: 20,
                offset: 16
            }
        );
        let header = partial.header();
        assert_eq!(header.flags, virtio::FLAG_NEEDS_CSUM);
        assert_eq!((header.csum_start, header.csum_offset), (20, 16));
        let done = partial.completed(&p);
        p[partial.field()..partial.field() + 2].copy_from_slice(&done);
        let pseudo = pseudo_header(&p, false, 6, (p.len() - 20) as u16);
        let sum = checksum::combine(&[pseudo, checksum::data(&p[20..])]);
        assert_eq!(sum, 0xffff, "the completed checksum verifies");
        assert_eq!(partial_checksum(&p), None, "complete now");
    }

    #[test]
    fn anything_else_is_left_alone() {
        // A corrupted (or simply complete) checksum is not partial.
        let p = tcp4(b"abc", Some(0x1234));
        assert_eq!(partial_checksum(&p), None);
        // Not TCP or UDP; truncated; not IP.
        let mut icmp = tcp4(b"abc", None);
        icmp[9] = 1;
        assert_eq!(partial_checksum(&icmp), None);
        assert_eq!(partial_checksum(&tcp4(b"abc", None)[..30]), None);
        assert_eq!(partial_checksum(&[]), None);
        assert_eq!(partial_checksum(&[0x50; 40]), None);
    }

    #[test]
    fn a_udp_checksum_of_zero_means_none() {
        let mut p = tcp4(b"abcd", None);
        p[9] = 17;
        let len = (p.len() - 20) as u16;
        p[24..26].copy_from_slice(&len.to_be_bytes());
        p[26..28].copy_from_slice(&0u16.to_be_bytes());
        assert_eq!(partial_checksum(&p), None);
        let pseudo = pseudo_header(&p, false, 17, len);
        p[26..28].copy_from_slice(&pseudo.to_be_bytes());
        assert_eq!(
            partial_checksum(&p),
            Some(Partial {
                start: 20,
                offset: 6
            })
        );
    }
}
