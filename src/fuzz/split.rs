//! Fuzzes segmentation: a virtio-net header and the packet after it, as read from
//! a TUN device with `IFF_VNET_HDR`. `Split::new` may refuse the input, but once
//! it accepts, every segment must be written whole, within the stride, and be a
//! valid IP packet whose checksums verify; a packet without segmentation must have
//! its checksum completed. Nothing may panic.

use crate::dataplane::offload::{complete_checksum, Split};
use crate::wire::virtio::{self, GsoType};
use crate::wire::{checksum, ipv4, ipv6, IpProtocol};

/// The sum over the pseudo-header and the transport bytes of a segment: 0xffff
/// when its TCP or UDP checksum verifies.
fn transport_sum(p: &[u8]) -> u16 {
    if p[0] >> 4 == 6 {
        let ip = ipv6::Packet::new_checked(p).expect("segments are valid IPv6");
        assert_eq!(ipv6::HEADER_LEN + usize::from(ip.payload_len()), p.len());
        let l4 = &p[ipv6::HEADER_LEN..];
        let proto = u8::from(ip.next_header());
        checksum::combine(&[
            checksum::pseudo_header_v6(ip.src_addr(), ip.dst_addr(), proto, l4.len() as u32),
            checksum::data(l4),
        ])
    } else {
        let ip = ipv4::Packet::new_checked(p).expect("segments are valid IPv4");
        assert_eq!(usize::from(ip.total_len()), p.len());
        assert!(ip.verify_checksum(), "IPv4 header checksum");
        let l4 = ip.payload();
        let proto = u8::from(ip.protocol());
        checksum::combine(&[
            checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), proto, l4.len() as u16),
            checksum::data(l4),
        ])
    }
}

/// Runs the target on one input; it panics (a failed check) only on a bug.
pub fn run(data: &[u8]) {
    let Ok(header) = virtio::Header::new_checked(data) else {
        return;
    };
    let vnet = virtio::Repr::parse(&header).expect("parse accepts every checked header");
    let packet = header.payload();

    let mut in_place = packet.to_vec();
    let completed = complete_checksum(&vnet, &mut in_place);

    let split = Split::new(&vnet, packet);
    let from_read = Split::from_read(data);
    assert_eq!(
        split.map(|s| (s.count(), s.stride())),
        from_read.map(|s| (s.count(), s.stride()))
    );
    let Ok(split) = split else {
        return;
    };
    assert!(split.count() >= 1);
    let mut out = vec![0u8; split.stride().max(split.segment_len(0)) + 1];
    let mut payload = 0;
    for i in 0..split.count() {
        let len = split.segment_len(i);
        assert!(len < out.len());
        if len > 0 {
            assert_eq!(split.write(i, &mut out[..len - 1]), 0, "short buffer");
        }
        assert_eq!(split.write(i, &mut out), len);
        let seg = &out[..len];
        match vnet.gso_type {
            GsoType::None if vnet.needs_csum() => {
                // The stored checksum finishes the sum that the field started.
                assert_eq!(completed, Ok(()));
                assert_eq!(seg, &in_place[..len]);
                let start = usize::from(vnet.csum_start);
                let field = start + usize::from(vnet.csum_offset);
                let prefill = u16::from_be_bytes([packet[field], packet[field + 1]]);
                let sum = checksum::combine(&[prefill, checksum::data(&seg[start..])]);
                assert_eq!(sum, 0xffff);
            }
            GsoType::None => assert_eq!(seg, packet),
            _ => {
                assert_eq!(transport_sum(seg), 0xffff, "transport checksum");
                let transport = if seg[0] >> 4 == 6 {
                    &seg[ipv6::HEADER_LEN..]
                } else {
                    &seg[ipv4::Packet::new_unchecked(seg).header_len()..]
                };
                let proto = if seg[0] >> 4 == 6 {
                    ipv6::Packet::new_unchecked(seg).next_header()
                } else {
                    ipv4::Packet::new_unchecked(seg).protocol()
                };
                let l4_header = match proto {
                    IpProtocol::Tcp => usize::from(transport[12] >> 4) * 4,
                    _ => 8,
                };
                payload += transport.len() - l4_header;
            }
        }
    }
    assert_eq!(split.write(split.count(), &mut out), 0);
    if vnet.gso_type != GsoType::None {
        let whole: usize = (0..split.count()).map(|i| split.segment_len(i)).sum();
        assert_eq!(
            whole - payload,
            split.count() * (split.stride() - usize::from(vnet.gso_size))
        );
    }
}
