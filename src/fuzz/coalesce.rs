//! Fuzzes coalescing with a sequence of packets, as decapsulated from the network.
//! Input: one byte choosing how many flows are held (1 to 8), then packets, each a
//! big-endian two-byte length and that many bytes. Every frame emitted, gathered
//! into one buffer, must begin with a virtio-net header that validates against
//! the packet after it; a merged super-packet must split again into segments whose checksums verify, and a
//! packet handed on with `NEEDS_CSUM` (a checksum verified, or left partial by
//! its sender) must verify once completed, as the kernel completes it.

use crate::dataplane::offload::{Coalescer, Loc, Split, MAX_PACKET};
use crate::wire::virtio::{self, GsoType};
use crate::wire::{checksum, ipv4, ipv6};

/// Checks one buffer the coalescer emitted.
fn check(buf: &[u8]) {
    let header = virtio::Header::new_checked(buf).expect("a virtio header leads");
    let vnet = virtio::Repr::parse(&header).expect("infallible");
    let packet = header.payload();
    assert_eq!(vnet.validate(packet.len()), Ok(()));
    if vnet.gso_type == GsoType::None && !vnet.needs_csum() {
        return;
    }
    assert!(packet.len() <= MAX_PACKET);
    let split = Split::new(&vnet, packet).expect("a merged super-packet splits");
    assert!(split.count() >= 2 || vnet.gso_type == GsoType::None);
    let mut out = vec![0u8; split.stride()];
    for i in 0..split.count() {
        let len = split.write(i, &mut out);
        assert!(len > 0);
        let seg = &out[..len];
        let start = usize::from(vnet.csum_start);
        let l4 = &seg[start..];
        let sum = if seg[0] >> 4 == 6 {
            let ip = ipv6::Packet::new_checked(seg).expect("IPv6");
            let (protocol, at) = ip.transport().expect("a transport header");
            assert_eq!(at, start);
            checksum::combine(&[
                checksum::pseudo_header_v6(
                    ip.src_addr(),
                    ip.dst_addr(),
                    protocol.into(),
                    l4.len() as u32,
                ),
                checksum::data(l4),
            ])
        } else {
            let ip = ipv4::Packet::new_checked(seg).expect("IPv4");
            assert!(ip.verify_checksum());
            assert_eq!(ip.header_len(), start);
            checksum::combine(&[
                checksum::pseudo_header_v4(
                    ip.src_addr(),
                    ip.dst_addr(),
                    ip.protocol().into(),
                    l4.len() as u16,
                ),
                checksum::data(l4),
            ])
        };
        assert_eq!(sum, 0xffff, "every segment handed on had a valid checksum");
    }
}

/// Runs the target on one input; it panics (a failed check) only on a bug.
pub fn run(data: &[u8]) {
    let Some((&flows, mut rest)) = data.split_first() else {
        return;
    };
    let mut co = Coalescer::with_flows(usize::from(flows % 8) + 1);
    // Every packet is pushed where it lies in the input, which frames name.
    let whole = |_| data;
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (packet, next) = tail.split_at(len);
        let at = Loc {
            buffer: 0,
            offset: (data.len() - tail.len()) as u32,
        };
        co.push(packet, at, &mut |f| check(&f.to_vec(whole)));
        rest = next;
    }
    co.flush(&mut |f| check(&f.to_vec(whole)));
}
