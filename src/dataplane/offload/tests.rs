//! Unit tests of segmentation and coalescing, on packets built with the crate's
//! emitters, and the property that coalescing gives back what splitting cut.

use core::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use crate::drop_reason::DropReason;
use crate::wire::virtio::{self, GsoType};
use crate::wire::{checksum, ipv4, ipv6, tcp, udp, IpProtocol};

const SRC4: Ipv4Addr = Ipv4Addr::new(100, 96, 1, 2);
const DST4: Ipv4Addr = Ipv4Addr::new(100, 96, 2, 3);
const SRC6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 1, 0, 0, 0, 0, 2);
const DST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 2, 0, 0, 0, 0, 3);

/// NOP, NOP, timestamps (RFC 7323): what Linux puts on every data segment.
const TIMESTAMPS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78];

/// The headers of a test TCP segment.
#[derive(Debug, Clone, Copy)]
struct Tcp {
    v6: bool,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    ident: u16,
    timestamps: bool,
}

impl Tcp {
    fn v4() -> Tcp {
        Tcp {
            v6: false,
            seq: 0x1000_0000,
            ack: 0x2000_0000,
            flags: tcp::FLAG_ACK,
            window: 502,
            ident: 0x4000,
            timestamps: true,
        }
    }

    fn v6() -> Tcp {
        Tcp {
            v6: true,
            ..Tcp::v4()
        }
    }

    fn l3_len(&self) -> usize {
        if self.v6 {
            ipv6::HEADER_LEN
        } else {
            ipv4::HEADER_LEN
        }
    }

    fn hdr_len(&self) -> usize {
        self.l3_len() + tcp::HEADER_LEN + if self.timestamps { 12 } else { 0 }
    }

    /// The packet with every checksum complete, written as the kernel's
    /// `skb_checksum_help` writes it: a sum that folds to 0 is stored as 0xffff
    /// (the same value in one's complement), as `Split` does.
    fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut p = self.headers(payload);
        let sum = transport_sum(&p, self.l3_len());
        let l3 = self.l3_len();
        let csum = if !sum == 0 { 0xffff } else { !sum };
        tcp::Packet::new_unchecked(&mut p[l3..]).set_checksum(csum);
        p
    }

    /// What the kernel hands the TUN for a TSO send: the pseudo-header sum in the
    /// TCP checksum field and a header that says so.
    fn super_packet(&self, payload: &[u8], mss: u16) -> (virtio::Repr, Vec<u8>) {
        let mut p = self.headers(payload);
        let l3 = self.l3_len();
        let pseudo = pseudo(&p, l3);
        tcp::Packet::new_unchecked(&mut p[l3..]).set_checksum(pseudo);
        let vnet = virtio::Repr {
            flags: virtio::FLAG_NEEDS_CSUM,
            gso_type: if self.v6 {
                GsoType::TcpV6
            } else {
                GsoType::TcpV4
            },
            ecn: false,
            hdr_len: self.hdr_len() as u16,
            gso_size: mss,
            csum_start: l3 as u16,
            csum_offset: 16,
        };
        (vnet, p)
    }

    /// IP and TCP headers (TCP checksum 0) and the payload.
    fn headers(&self, payload: &[u8]) -> Vec<u8> {
        let l4_len = self.hdr_len() - self.l3_len() + payload.len();
        let mut p = ip_header(self.v6, IpProtocol::Tcp, l4_len, self.ident);
        let l3 = p.len();
        p.resize(self.hdr_len(), 0);
        let mut t = tcp::Packet::new_unchecked(&mut p[l3..]);
        t.set_src_port(40000);
        t.set_dst_port(5201);
        t.set_seq_number(self.seq);
        t.set_ack_number(self.ack);
        t.set_header_len(self.hdr_len() - l3);
        t.set_flags(self.flags);
        t.set_window(self.window);
        if self.timestamps {
            t.options_mut().copy_from_slice(&TIMESTAMPS);
        }
        p.extend_from_slice(payload);
        p
    }
}

/// An IP header for `l4_len` bytes of `protocol`.
fn ip_header(v6: bool, protocol: IpProtocol, l4_len: usize, ident: u16) -> Vec<u8> {
    if v6 {
        let mut p = vec![0u8; ipv6::HEADER_LEN];
        ipv6::Repr {
            src_addr: SRC6,
            dst_addr: DST6,
            next_header: protocol,
            payload_len: l4_len as u16,
            hop_limit: 63,
            traffic_class: 0,
            flow_label: 0x12345,
        }
        .emit(&mut ipv6::Packet::new_unchecked(&mut p[..]));
        p
    } else {
        let mut p = vec![0u8; ipv4::HEADER_LEN];
        ipv4::Repr {
            src_addr: SRC4,
            dst_addr: DST4,
            protocol,
            payload_len: l4_len,
            ttl: 63,
            dscp_ecn: 0,
            ident,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
        .emit(&mut ipv4::Packet::new_unchecked(&mut p[..]));
        p
    }
}

/// The pseudo-header sum of the packet's transport part, from the crate's own
/// pseudo-header functions.
fn pseudo(p: &[u8], l3: usize) -> u16 {
    let len = (p.len() - l3) as u16;
    if p[0] >> 4 == 6 {
        let ip = ipv6::Packet::new_unchecked(p);
        checksum::pseudo_header_v6(
            ip.src_addr(),
            ip.dst_addr(),
            ip.next_header().into(),
            len.into(),
        )
    } else {
        let ip = ipv4::Packet::new_unchecked(p);
        checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), ip.protocol().into(), len)
    }
}

/// The full sum over the pseudo-header and the transport bytes: 0xffff when the
/// stored checksum verifies.
fn transport_sum(p: &[u8], l3: usize) -> u16 {
    checksum::combine(&[pseudo(p, l3), checksum::data(&p[l3..])])
}

/// A UDP datagram as the kernel hands it for USO.
fn udp_super(v6: bool, payload: &[u8], mss: u16) -> (virtio::Repr, Vec<u8>) {
    let l4_len = udp::HEADER_LEN + payload.len();
    let mut p = ip_header(v6, IpProtocol::Udp, l4_len, 7);
    let l3 = p.len();
    p.resize(l3 + udp::HEADER_LEN, 0);
    udp::Repr {
        src_port: 4789,
        dst_port: 8472,
        payload_len: payload.len(),
    }
    .emit(&mut udp::Packet::new_unchecked(&mut p[l3..]));
    p.extend_from_slice(payload);
    let sum = pseudo(&p, l3);
    udp::Packet::new_unchecked(&mut p[l3..]).set_checksum(sum);
    let vnet = virtio::Repr {
        flags: virtio::FLAG_NEEDS_CSUM,
        gso_type: GsoType::UdpL4,
        ecn: false,
        hdr_len: (l3 + udp::HEADER_LEN) as u16,
        gso_size: mss,
        csum_start: l3 as u16,
        csum_offset: 6,
    };
    (vnet, p)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// Every segment of `split`, each in its own vector.
fn segments(split: &Split<'_>) -> Vec<Vec<u8>> {
    (0..split.count())
        .map(|i| {
            let mut out = vec![0u8; split.segment_len(i)];
            assert_eq!(split.write(i, &mut out), out.len(), "segment {i}");
            out
        })
        .collect()
}

/// Asserts that an IP packet's lengths and checksums are right; returns the
/// offset of its transport header.
fn assert_valid(p: &[u8]) -> usize {
    if p[0] >> 4 == 6 {
        let ip = ipv6::Packet::new_checked(p).expect("IPv6 header");
        assert_eq!(ipv6::HEADER_LEN + usize::from(ip.payload_len()), p.len());
        assert_eq!(
            transport_sum(p, ipv6::HEADER_LEN),
            0xffff,
            "transport checksum"
        );
        ipv6::HEADER_LEN
    } else {
        let ip = ipv4::Packet::new_checked(p).expect("IPv4 header");
        assert_eq!(usize::from(ip.total_len()), p.len());
        assert!(ip.verify_checksum(), "IPv4 header checksum");
        assert_eq!(
            transport_sum(p, ip.header_len()),
            0xffff,
            "transport checksum"
        );
        ip.header_len()
    }
}

/// Every frame `push` emitted for `packets` (each pushed as its own buffer),
/// then `flush` too if `flush`, each frame gathered into one buffer.
fn frames<P: AsRef<[u8]>>(co: &mut Coalescer, packets: &[P], flush: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let buffer = |i: u32| packets[i as usize].as_ref();
    for (i, p) in packets.iter().enumerate() {
        let at = Loc {
            buffer: i as u32,
            offset: 0,
        };
        co.push(p.as_ref(), at, &mut |f| out.push(f.to_vec(buffer)));
    }
    if flush {
        co.flush(&mut |f| out.push(f.to_vec(buffer)));
    }
    out
}

/// Everything `push` and `flush` emitted, each buffer split into its virtio
/// header and its packet.
fn run(co: &mut Coalescer, packets: &[Vec<u8>]) -> Vec<(virtio::Repr, Vec<u8>)> {
    let split = |b: Vec<u8>| {
        let h = virtio::Header::new_checked(&b[..]).expect("virtio header");
        let repr = virtio::Repr::parse(&h).expect("infallible");
        assert_eq!(repr.validate(h.payload().len()), Ok(()));
        (repr, h.payload().to_vec())
    };
    frames(co, packets, true).into_iter().map(split).collect()
}

/// Completes a coalesced super-packet's checksum, as the kernel would.
fn completed(vnet: &virtio::Repr, p: &[u8]) -> Vec<u8> {
    let mut p = p.to_vec();
    let single = virtio::Repr {
        gso_type: GsoType::None,
        ..*vnet
    };
    complete_checksum(&single, &mut p).expect("completes");
    p
}

// --- split -------------------------------------------------------------------------

#[test]
fn split_tcpv4_rewrites_every_header() {
    let payload = pattern(4000, 1);
    let t = Tcp {
        flags: tcp::FLAG_ACK | tcp::FLAG_PSH | tcp::FLAG_CWR,
        ..Tcp::v4()
    };
    let (vnet, sp) = t.super_packet(&payload, 1448);
    let split = Split::new(&vnet, &sp).expect("valid super-packet");
    assert_eq!(split.count(), 3);
    assert_eq!(split.stride(), 52 + 1448);
    assert_eq!(
        (0..4).map(|i| split.segment_len(i)).collect::<Vec<_>>(),
        [1500, 1500, 52 + 1104, 0]
    );
    let segs = segments(&split);
    for (i, s) in segs.iter().enumerate() {
        let l3 = assert_valid(s);
        let ip = ipv4::Packet::new_checked(&s[..]).expect("IPv4");
        assert_eq!(ip.ident(), 0x4000 + i as u16);
        assert!(ip.dont_frag());
        let tcp = tcp::Packet::new_checked(&s[l3..]).expect("TCP");
        assert_eq!(tcp.seq_number(), 0x1000_0000 + 1448 * i as u32);
        assert_eq!(tcp.ack_number(), 0x2000_0000);
        assert_eq!(tcp.options(), TIMESTAMPS);
        let want = match i {
            0 => tcp::FLAG_ACK | tcp::FLAG_CWR,
            1 => tcp::FLAG_ACK,
            _ => tcp::FLAG_ACK | tcp::FLAG_PSH,
        };
        assert_eq!(tcp.flags(), want, "segment {i}");
        assert_eq!(
            tcp.payload(),
            &payload[1448 * i..(1448 * (i + 1)).min(4000)]
        );
    }
}

#[test]
fn split_tcpv6_rewrites_every_header() {
    let payload = pattern(3000, 2);
    let t = Tcp {
        flags: tcp::FLAG_ACK | tcp::FLAG_FIN,
        ..Tcp::v6()
    };
    let (vnet, sp) = t.super_packet(&payload, 1000);
    let split = Split::new(&vnet, &sp).expect("valid super-packet");
    assert_eq!(split.count(), 3);
    for (i, s) in segments(&split).iter().enumerate() {
        assert_eq!(s.len(), 40 + 32 + 1000);
        assert_valid(s);
        let tcp = tcp::Packet::new_checked(&s[40..]).expect("TCP");
        assert_eq!(tcp.seq_number(), 0x1000_0000 + 1000 * i as u32);
        assert_eq!(tcp.flags() & tcp::FLAG_FIN != 0, i == 2);
        assert_eq!(tcp.payload(), &payload[1000 * i..1000 * (i + 1)]);
    }
}

#[test]
fn split_udp_l4_v4_and_v6() {
    for v6 in [false, true] {
        let payload = pattern(2500, 3);
        let (vnet, sp) = udp_super(v6, &payload, 1200);
        let split = Split::new(&vnet, &sp).expect("valid USO packet");
        assert_eq!(split.count(), 3);
        let mut joined = Vec::new();
        for s in segments(&split) {
            let l3 = assert_valid(&s);
            let udp = udp::Packet::new_checked(&s[l3..]).expect("UDP");
            assert_eq!(usize::from(udp.len()), s.len() - l3);
            assert_ne!(udp.checksum(), 0);
            joined.extend_from_slice(udp.payload());
        }
        assert_eq!(joined, payload);
    }
}

#[test]
fn split_without_gso_completes_the_checksum() {
    let payload = pattern(700, 4);
    for t in [Tcp::v4(), Tcp::v6()] {
        let (mut vnet, sp) = t.super_packet(&payload, 1448);
        vnet.gso_type = GsoType::None;
        let split = Split::new(&vnet, &sp).expect("valid");
        assert_eq!(split.count(), 1);
        let segs = segments(&split);
        assert_valid(&segs[0]);
        assert_eq!(segs[0], t.packet(&payload));
        let mut in_place = sp.clone();
        assert_eq!(complete_checksum(&vnet, &mut in_place), Ok(()));
        assert_eq!(in_place, segs[0]);
    }
}

#[test]
fn split_passes_a_plain_packet_through() {
    let p = Tcp::v4().packet(b"hello");
    let split = Split::new(&virtio::Repr::default(), &p).expect("no offload");
    assert_eq!((split.count(), split.segment_len(0)), (1, p.len()));
    assert_eq!(segments(&split), std::slice::from_ref(&p));
    let mut q = p.clone();
    assert_eq!(complete_checksum(&virtio::Repr::default(), &mut q), Ok(()));
    assert_eq!(q, p);
}

#[test]
fn split_from_a_whole_tun_read() {
    let (vnet, sp) = Tcp::v6().super_packet(&pattern(2500, 23), 1200);
    let mut read = vec![0u8; virtio::HEADER_LEN];
    vnet.emit(&mut virtio::Header::new_unchecked(&mut read[..]));
    read.extend_from_slice(&sp);
    let from_read = Split::from_read(&read).expect("valid read");
    let direct = Split::new(&vnet, &sp).expect("valid packet");
    assert_eq!(segments(&from_read), segments(&direct));
    assert_eq!(
        Split::from_read(&read[..9]).map(|s| s.count()),
        Err(DropReason::VirtioHeader)
    );
    assert_eq!(
        Split::from_read(&read[..10]).map(|s| s.count()),
        Err(DropReason::VirtioHeader)
    );
}

#[test]
fn split_payload_shorter_than_one_segment() {
    let (vnet, sp) = Tcp::v4().super_packet(&pattern(100, 5), 1448);
    let split = Split::new(&vnet, &sp).expect("valid");
    assert_eq!(split.count(), 1);
    assert_valid(&segments(&split)[0]);
    let (vnet, sp) = Tcp::v4().super_packet(&[], 1448);
    let split = Split::new(&vnet, &sp).expect("valid");
    assert_eq!((split.count(), split.segment_len(0)), (1, 52));
    assert_valid(&segments(&split)[0]);
}

/// Headers from `write_header` followed by the payload at `payload_range` are
/// exactly the segment `write` builds: the gathered send and the copy agree.
#[test]
fn split_headers_and_payload_ranges_make_the_segments() {
    let cases = [
        Tcp::v4().super_packet(&pattern(5000, 7), 1448),
        Tcp::v6().super_packet(&pattern(4000, 8), 1428),
        Tcp::v4().super_packet(&[], 1448),
        udp_super(false, &pattern(3000, 9), 1472),
        udp_super(true, &pattern(2999, 10), 1000),
    ];
    for (vnet, sp) in &cases {
        for partial in [false, true] {
            let split = Split::new(vnet, sp).expect("valid").leave_partial(partial);
            for (i, whole) in segments(&split).iter().enumerate() {
                let mut gathered = vec![0u8; 200];
                let n = split.write_header(i, &mut gathered);
                assert_eq!(n, split.header_len());
                gathered.truncate(n);
                gathered.extend_from_slice(&sp[split.payload_range(i)]);
                assert_eq!(&gathered, whole, "segment {i}, partial {partial}");
            }
            let past = split.payload_range(split.count());
            assert!(past.is_empty());
            assert_eq!(split.write_header(split.count(), &mut [0u8; 200]), 0);
            assert_eq!(split.write_header(0, &mut [0u8; 10]), 0, "too short");
        }
    }
    let (vnet, sp) = Tcp::v4().super_packet(&pattern(100, 1), 1448);
    let single = virtio::Repr {
        gso_type: GsoType::None,
        gso_size: 0,
        ..vnet
    };
    let split = Split::new(&single, &sp).expect("a packet whose checksum is left to us");
    assert_eq!(
        split.write_header(0, &mut [0u8; 200]),
        0,
        "no headers apart"
    );
}

#[test]
fn split_write_refuses_short_buffers_and_bad_indices() {
    let (vnet, sp) = Tcp::v4().super_packet(&pattern(3000, 6), 1448);
    let split = Split::new(&vnet, &sp).expect("valid");
    let mut out = [0u8; 1499];
    assert_eq!(split.write(0, &mut out), 0);
    assert!(out.iter().all(|&b| b == 0), "nothing written");
    let mut out = [0u8; 1500];
    assert_eq!(split.write(3, &mut out), 0);
    assert_eq!(split.write(usize::MAX, &mut out), 0);
    assert_eq!(split.segment_len(usize::MAX), 0);
    assert_eq!(split.write(2, &mut out), 52 + 104);
}

#[test]
fn split_refuses_inconsistent_headers() {
    let payload = pattern(3000, 7);
    let (vnet, sp) = Tcp::v4().super_packet(&payload, 1448);
    let refuse = |vnet: virtio::Repr, p: &[u8]| Split::new(&vnet, p).map(|s| s.count());

    assert_eq!(
        refuse(
            virtio::Repr {
                gso_size: 0,
                ..vnet
            },
            &sp
        ),
        Err(DropReason::VirtioHeader)
    );
    let tv6 = virtio::Repr {
        gso_type: GsoType::TcpV6,
        ..vnet
    };
    assert_eq!(refuse(tv6, &sp), Err(DropReason::GsoUnsupported));
    let ufo = virtio::Repr {
        gso_type: GsoType::Udp,
        ..vnet
    };
    assert_eq!(refuse(ufo, &sp), Err(DropReason::GsoUnsupported));
    let uso = virtio::Repr {
        gso_type: GsoType::UdpL4,
        ..vnet
    };
    assert_eq!(refuse(uso, &sp), Err(DropReason::GsoUnsupported));
    let start = virtio::Repr {
        csum_start: 22,
        ..vnet
    };
    assert_eq!(refuse(start, &sp), Err(DropReason::VirtioHeader));
    // A checksum field in trailing bytes, past the end of the IP packet.
    let far = virtio::Repr {
        gso_type: GsoType::None,
        csum_start: sp.len() as u16,
        csum_offset: 16,
        ..vnet
    };
    let odd = virtio::Repr {
        gso_type: GsoType::None,
        csum_offset: 15,
        ..vnet
    };
    assert_eq!(refuse(odd, &sp), Err(DropReason::VirtioHeader));
    let padded = [&sp[..], &[0u8; 20]].concat();
    assert_eq!(refuse(far, &padded), Err(DropReason::VirtioHeader));
    assert_eq!(
        refuse(far, &padded[..sp.len() + 17]),
        Err(DropReason::VirtioHeader)
    );
    // Truncated IP packet: total length beyond the bytes.
    assert_eq!(refuse(vnet, &sp[..2000]), Err(DropReason::IpTotalLen));
    assert_eq!(refuse(vnet, &sp[..10]), Err(DropReason::VirtioHeader));
    assert_eq!(
        refuse(
            virtio::Repr {
                hdr_len: 0,
                flags: 0,
                ..vnet
            },
            &sp[..10]
        ),
        Err(DropReason::IpTruncated)
    );
    // A TCP data offset beyond the packet.
    let mut bad = sp.clone();
    bad[20 + 12] = 0xf0;
    bad.truncate(20 + 40);
    bad[2..4].copy_from_slice(&60u16.to_be_bytes());
    let fixed = virtio::Repr {
        hdr_len: 20,
        ..vnet
    };
    assert_eq!(refuse(fixed, &bad), Err(DropReason::TransportHeader));
    // A fragment.
    let mut frag = sp.clone();
    ipv4::Packet::new_unchecked(&mut frag[..]).set_more_frags(true);
    assert_eq!(refuse(vnet, &frag), Err(DropReason::GsoUnsupported));
    // Not IP.
    let mut v5 = sp.clone();
    v5[0] = 0x55;
    assert_eq!(refuse(vnet, &v5), Err(DropReason::IpVersion));
    // Segmentation and complete_checksum do not mix.
    let mut p = sp.clone();
    assert_eq!(
        complete_checksum(&vnet, &mut p),
        Err(DropReason::GsoUnsupported)
    );
}

// --- coalesce ----------------------------------------------------------------------

/// Cuts `payload` into full packets of `mss` bytes from `t`, identifiers and
/// sequence numbers advancing.
fn train(t: Tcp, payload: &[u8], mss: usize) -> Vec<Vec<u8>> {
    payload
        .chunks(mss)
        .enumerate()
        .map(|(i, c)| {
            Tcp {
                seq: t.seq.wrapping_add((i * mss) as u32),
                ident: t.ident.wrapping_add(i as u16),
                ..t
            }
            .packet(c)
        })
        .collect()
}

/// Asserts that `out` is one super-packet carrying `payload` after `t`'s headers.
fn assert_super(out: &(virtio::Repr, Vec<u8>), t: Tcp, payload: &[u8], mss: usize) {
    let (vnet, p) = out;
    assert_eq!(vnet.flags, virtio::FLAG_NEEDS_CSUM);
    let (gso_type, l3) = if t.v6 {
        (GsoType::TcpV6, 40)
    } else {
        (GsoType::TcpV4, 20)
    };
    assert_eq!(vnet.gso_type, gso_type);
    assert_eq!(usize::from(vnet.gso_size), mss);
    assert_eq!(usize::from(vnet.hdr_len), t.hdr_len());
    assert_eq!((vnet.csum_start, vnet.csum_offset), (l3, 16));
    let full = completed(vnet, p);
    assert_eq!(assert_valid(&full), usize::from(l3));
    let tcp = tcp::Packet::new_checked(&full[usize::from(l3)..]).expect("TCP");
    assert_eq!(tcp.seq_number(), t.seq);
    assert_eq!(tcp.payload(), payload);
}

#[test]
fn coalesce_merges_a_v4_train() {
    let payload = pattern(10 * 1448, 8);
    let segs = train(Tcp::v4(), &payload, 1448);
    let out = run(&mut Coalescer::new(), &segs);
    assert_eq!(out.len(), 1);
    assert_super(&out[0], Tcp::v4(), &payload, 1448);
    // The kernel would segment it into exactly what arrived.
    let split = Split::new(&out[0].0, &out[0].1).expect("splits");
    assert_eq!(segments(&split), segs);
}

#[test]
fn coalesce_names_the_payload_where_it_was_received() {
    // Four segments back to back in one receive buffer, after 100 bytes of
    // something else: the frame copies their headers once and names every
    // payload in place.
    let t = Tcp::v4();
    let segs = train(t, &pattern(4 * 1000, 15), 1000);
    let mut buffer = vec![0xee; 100];
    let mut at = Vec::new();
    for s in &segs {
        at.push(buffer.len());
        buffer.extend_from_slice(s);
    }
    let mut co = Coalescer::new();
    let mut pieces = Vec::new();
    let mut heads = Vec::new();
    let mut keep = |f: Frame<'_>| {
        heads.push(f.head.to_vec());
        pieces.extend_from_slice(f.pieces);
    };
    for (s, &offset) in segs.iter().zip(&at) {
        let loc = Loc {
            buffer: 7,
            offset: offset as u32,
        };
        co.push(s, loc, &mut keep);
    }
    co.flush(&mut keep);
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].len(), virtio::HEADER_LEN + t.hdr_len());
    let expected: Vec<Piece> = at
        .iter()
        .map(|&offset| Piece {
            buffer: 7,
            start: (offset + t.hdr_len()) as u32,
            len: 1000,
        })
        .collect();
    assert_eq!(pieces, expected);
}

#[test]
fn coalesce_writes_a_train_of_more_than_max_pieces_segments_as_two() {
    let t = Tcp::v4();
    let payload = pattern((MAX_PIECES + 3) * 100, 16);
    let segs = train(t, &payload, 100);
    let out = run(&mut Coalescer::new(), &segs);
    assert_eq!(out.len(), 2);
    assert_super(&out[0], t, &payload[..MAX_PIECES * 100], 100);
    let rest = Tcp {
        seq: t.seq + (MAX_PIECES * 100) as u32,
        ident: t.ident + MAX_PIECES as u16,
        ..t
    };
    assert_super(&out[1], rest, &payload[MAX_PIECES * 100..], 100);
}

#[test]
fn coalesce_merges_a_v6_train_ending_short_with_psh() {
    let payload = pattern(5 * 1428 + 100, 9);
    let mut segs = train(Tcp::v6(), &payload, 1428);
    let last = Tcp {
        seq: Tcp::v6().seq + 5 * 1428,
        flags: tcp::FLAG_ACK | tcp::FLAG_PSH,
        ..Tcp::v6()
    };
    *segs.last_mut().expect("six") = last.packet(&payload[5 * 1428..]);
    let seen = frames(&mut Coalescer::new(), &segs, false);
    assert_eq!(seen.len(), 1, "PSH ends the train without a flush");
    let h = virtio::Header::new_checked(&seen[0][..]).expect("header");
    let vnet = virtio::Repr::parse(&h).expect("infallible");
    assert_super(&(vnet, h.payload().to_vec()), Tcp::v6(), &payload, 1428);
    let full = completed(&vnet, h.payload());
    let tcp = tcp::Packet::new_checked(&full[40..]).expect("TCP");
    assert_eq!(tcp.flags(), tcp::FLAG_ACK | tcp::FLAG_PSH);
    let split = Split::new(&vnet, h.payload()).expect("splits");
    assert_eq!(segments(&split), segs);
}

#[test]
fn coalesce_short_segment_ends_the_train() {
    let t = Tcp::v4();
    let a = train(t, &pattern(3 * 1000 + 10, 10), 1000);
    let b = train(
        Tcp {
            seq: t.seq + 3010,
            ident: t.ident + 4,
            ..t
        },
        &pattern(2000, 11),
        1000,
    );
    let all: Vec<_> = a.iter().chain(&b).cloned().collect();
    let out = run(&mut Coalescer::new(), &all);
    assert_eq!(out.len(), 2);
    assert_super(&out[0], t, &pattern(3010, 10), 1000);
    assert_eq!(out[1].0.gso_size, 1000);
}

/// `written` is `sent` (TCP over IPv4) with its verified checksum handed to the
/// kernel as a partial one: `NEEDS_CSUM` at the TCP checksum, the field holding
/// the pseudo-header sum, which completed gives back the sender's checksum.
fn assert_verified_as_partial(written: &(virtio::Repr, Vec<u8>), sent: &[u8]) {
    let (vnet, packet) = written;
    assert_eq!(vnet.flags, virtio::FLAG_NEEDS_CSUM);
    assert_eq!((vnet.csum_start, vnet.csum_offset), (20, 16));
    assert_eq!(vnet.gso_type, virtio::GsoType::None);
    assert_eq!(packet[..36], sent[..36]);
    assert_eq!(packet[38..], sent[38..]);
    let at = super::partial::Partial {
        start: 20,
        offset: 16,
    };
    assert_eq!(at.completed(packet), sent[36..38]);
}

#[test]
fn coalesce_lone_packet_goes_out_with_its_checksum_partial() {
    let p = Tcp::v4().packet(&pattern(1448, 12));
    let out = run(&mut Coalescer::new(), std::slice::from_ref(&p));
    assert_eq!(out.len(), 1);
    assert_verified_as_partial(&out[0], &p);
}

#[test]
fn coalesce_passes_other_protocols_through_at_once() {
    let (_, mut udp) = udp_super(false, b"dns?", 1000);
    let sum = transport_sum(&udp, 20);
    udp::Packet::new_unchecked(&mut udp[20..]).set_checksum(!sum);
    let not_ip = b"\x00not ip".to_vec();
    let seen = frames(&mut Coalescer::new(), &[udp.clone(), not_ip], false);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0][..10], [0; 10]);
    assert_eq!(seen[0][10..], udp[..]);
    assert_eq!(seen[1][10..], b"\x00not ip"[..]);
}

#[test]
fn coalesce_bad_checksum_goes_alone_after_its_flow() {
    let t = Tcp::v4();
    let mut segs = train(t, &pattern(4 * 1448, 13), 1448);
    segs[2][60] ^= 0x01; // one payload bit
    let out = run(&mut Coalescer::new(), &segs);
    assert_eq!(out.len(), 3);
    assert_super(&out[0], t, &pattern(2 * 1448, 13), 1448);
    assert_eq!(out[1].0, virtio::Repr::default());
    assert_eq!(out[1].1, segs[2]);
    // The next one is out of sequence with what was held: it starts a new train.
    assert_verified_as_partial(&out[2], &segs[3]);

    let mut bad_ip = segs[0].clone();
    bad_ip[8] ^= 1; // TTL, header checksum not updated
    let out = run(&mut Coalescer::new(), &[bad_ip.clone()]);
    assert_eq!(out, [(virtio::Repr::default(), bad_ip)]);
}

#[test]
fn coalesce_keeps_flow_order_across_a_gap() {
    let t = Tcp::v4();
    let segs = train(t, &pattern(6 * 1448, 14), 1448);
    // The fourth segment is lost: the fifth cannot join.
    let arrived = [&segs[..3], &segs[4..]].concat();
    let out = run(&mut Coalescer::new(), &arrived);
    assert_eq!(out.len(), 2);
    assert_super(&out[0], t, &pattern(6 * 1448, 14)[..3 * 1448], 1448);
    assert_super(
        &out[1],
        Tcp {
            seq: t.seq + 4 * 1448,
            ..t
        },
        &pattern(6 * 1448, 14)[4 * 1448..],
        1448,
    );
}

#[test]
fn coalesce_requires_equal_headers() {
    let t = Tcp::v4();
    let a = t.packet(&pattern(1000, 15));
    let next = Tcp {
        seq: t.seq + 1000,
        ident: t.ident + 1,
        ..t
    };
    let cases = [
        (
            "ack",
            Tcp {
                ack: t.ack + 1,
                ..next
            },
        ),
        ("window", Tcp { window: 1, ..next }),
        (
            "flags",
            Tcp {
                flags: tcp::FLAG_ACK | tcp::FLAG_ECE,
                ..next
            },
        ),
        (
            "cwr",
            Tcp {
                flags: tcp::FLAG_ACK | tcp::FLAG_CWR,
                ..next
            },
        ),
        (
            "options",
            Tcp {
                timestamps: false,
                ..next
            },
        ),
        (
            "ident",
            Tcp {
                ident: t.ident + 2,
                ..next
            },
        ),
        (
            "seq",
            Tcp {
                seq: t.seq + 999,
                ..next
            },
        ),
    ];
    for (what, b) in cases {
        let out = run(
            &mut Coalescer::new(),
            &[a.clone(), b.packet(&pattern(1000, 16))],
        );
        assert_eq!(out.len(), 2, "{what} differs");
        assert!(
            out.iter().all(|(v, _)| v.gso_type == GsoType::None),
            "{what}"
        );
    }
    // A longer second segment cannot join; a fixed identifier with DF can.
    let longer = next.packet(&pattern(1001, 16));
    assert_eq!(run(&mut Coalescer::new(), &[a.clone(), longer]).len(), 2);
    let fixed = Tcp {
        ident: t.ident,
        ..next
    }
    .packet(&pattern(1000, 16));
    assert_eq!(run(&mut Coalescer::new(), &[a, fixed]).len(), 1);
}

#[test]
fn coalesce_never_merges_syn_rst_or_empty() {
    let t = Tcp::v4();
    for flags in [
        tcp::FLAG_SYN,
        tcp::FLAG_RST | tcp::FLAG_ACK,
        tcp::FLAG_URG | tcp::FLAG_ACK,
    ] {
        let segs = train(Tcp { flags, ..t }, &pattern(2000, 17), 1000);
        let out = run(&mut Coalescer::new(), &segs);
        assert_eq!(out.len(), 2, "flags {flags:#x}");
        for (written, sent) in out.iter().zip(&segs) {
            assert_verified_as_partial(written, sent);
        }
    }
    let acks = [t.packet(&[]), t.packet(&[])];
    assert_eq!(run(&mut Coalescer::new(), &acks).len(), 2);
}

#[test]
fn coalesce_cwr_sets_the_ecn_bit() {
    let t = Tcp {
        flags: tcp::FLAG_ACK | tcp::FLAG_CWR,
        ..Tcp::v4()
    };
    let mut segs = train(t, &pattern(3000, 18), 1000);
    for (i, s) in segs.iter_mut().enumerate().skip(1) {
        *s = Tcp {
            seq: t.seq + 1000 * i as u32,
            ident: t.ident + i as u16,
            ..Tcp::v4()
        }
        .packet(&pattern(3000, 18)[1000 * i..1000 * (i + 1)]);
    }
    let out = run(&mut Coalescer::new(), &segs);
    assert_eq!(out.len(), 1);
    assert!(out[0].0.ecn);
    let split = Split::new(&out[0].0, &out[0].1).expect("splits");
    assert_eq!(segments(&split), segs);
}

#[test]
fn coalesce_stays_within_64k() {
    let t = Tcp::v4();
    let payload = pattern(60 * 1448, 19);
    let segs = train(t, &payload, 1448);
    let out = run(&mut Coalescer::new(), &segs);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|(_, p)| p.len() <= MAX_PACKET));
    let first = (MAX_PACKET - 52) / 1448;
    assert_super(&out[0], t, &payload[..first * 1448], 1448);
}

#[test]
fn coalesce_evicts_the_oldest_flow() {
    let mut co = Coalescer::with_flows(2);
    let flows: Vec<Tcp> = (0..3)
        .map(|i| Tcp {
            seq: 1000 * i,
            ack: 7 + i,
            ..Tcp::v4()
        })
        .collect();
    // Distinct ports make distinct flows.
    let packet = |t: &Tcp, port: u16, payload: &[u8]| {
        let mut p = t.headers(payload);
        tcp::Packet::new_unchecked(&mut p[20..]).set_src_port(port);
        let sum = transport_sum(&p, 20);
        tcp::Packet::new_unchecked(&mut p[20..]).set_checksum(!sum);
        p
    };
    let pushed: Vec<_> = flows
        .iter()
        .enumerate()
        .map(|(i, t)| packet(t, 1000 + i as u16, b"first"))
        .collect();
    let mut seen = frames(&mut co, &pushed, false);
    assert_eq!(seen.len(), 1, "the third flow evicts the first");
    let tcp = tcp::Packet::new_checked(&seen[0][30..]).expect("TCP");
    assert_eq!(tcp.src_port(), 1000);
    co.flush(&mut |f| seen.push(f.to_vec(|i| &pushed[i as usize][..])));
    assert_eq!(seen.len(), 3);
    let ports: Vec<u16> = seen
        .iter()
        .map(|b| tcp::Packet::new_unchecked(&b[30..]).src_port())
        .collect();
    assert_eq!(ports, [1000, 1001, 1002]);
}

#[test]
fn coalesce_writes_options_and_extension_headers_alone_in_order() {
    let t = Tcp::v4();
    let segs = train(t, &pattern(2000, 20), 1000);
    // The same flow's next segment with an IPv4 option (NOP padding to 24 bytes).
    let mut opt = vec![0u8; 24];
    opt[..20].copy_from_slice(&segs[1][..20]);
    opt[0] = 0x46;
    opt[20] = 1; // NOP
    opt.extend_from_slice(&segs[1][20..]);
    let total = opt.len() as u16;
    let mut ip = ipv4::Packet::new_unchecked(&mut opt[..]);
    ip.set_total_len(total);
    ip.fill_checksum();
    let out = run(&mut Coalescer::new(), &[segs[0].clone(), opt.clone()]);
    assert_eq!(out.len(), 2);
    assert_eq!(
        completed(&out[0].0, &out[0].1),
        segs[0],
        "the held segment goes first"
    );
    assert_eq!(out[1], (virtio::Repr::default(), opt));

    // IPv6 with a hop-by-hop header before TCP.
    let p6 = Tcp::v6().packet(&pattern(100, 21));
    let mut ext = p6[..40].to_vec();
    ext[6] = 0; // next header: hop-by-hop
    ext.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // TCP next, PadN
    ext.extend_from_slice(&p6[40..]);
    let len = (ext.len() - 40) as u16;
    ipv6::Packet::new_unchecked(&mut ext[..]).set_payload_len(len);
    let out = run(&mut Coalescer::new(), &[ext.clone(), ext.clone()]);
    assert_eq!(out.len(), 2);
    assert!(out
        .iter()
        .all(|(v, p)| *v == virtio::Repr::default() && *p == ext));
}

#[test]
fn coalesce_trims_padding_after_the_ip_packet() {
    let t = Tcp::v4();
    let segs = train(t, &pattern(3000, 22), 1000);
    let padded: Vec<Vec<u8>> = segs.iter().map(|s| [&s[..], &[0xee; 6]].concat()).collect();
    let out = run(&mut Coalescer::new(), &padded);
    assert_eq!(out.len(), 1);
    assert_super(&out[0], t, &pattern(3000, 22), 1000);
}

// --- properties --------------------------------------------------------------------

fn tcp_strategy() -> impl Strategy<Value = (Tcp, u8)> {
    (
        any::<bool>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        any::<u16>(),
        any::<bool>(),
        prop_oneof![
            Just(0u8),
            Just(tcp::FLAG_PSH),
            Just(tcp::FLAG_FIN | tcp::FLAG_PSH),
            Just(tcp::FLAG_CWR),
            Just(tcp::FLAG_ECE),
        ],
    )
        .prop_map(|(v6, seq, ack, window, ident, timestamps, extra)| {
            (
                Tcp {
                    v6,
                    seq,
                    ack,
                    flags: tcp::FLAG_ACK | extra,
                    window,
                    ident,
                    timestamps,
                },
                extra,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Split a kernel-style super-packet, check every segment, coalesce them back
    /// and compare with the original.
    #[test]
    fn split_then_coalesce_round_trips(
        (t, _) in tcp_strategy(),
        mss in 1usize..2000,
        len in 0usize..20000,
        seed in any::<u8>(),
    ) {
        let payload = pattern(len, seed);
        let (vnet, sp) = t.super_packet(&payload, mss as u16);
        let split = Split::new(&vnet, &sp).expect("valid super-packet");
        prop_assert_eq!(split.count(), len.div_ceil(mss).max(1));
        let segs = segments(&split);
        let mut stream = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let l3 = assert_valid(s);
            let tcp = tcp::Packet::new_checked(&s[l3..]).expect("TCP");
            prop_assert_eq!(tcp.seq_number(), t.seq.wrapping_add((i * mss) as u32));
            prop_assert_eq!(tcp.ack_number(), t.ack);
            stream.extend_from_slice(tcp.payload());
        }
        prop_assert_eq!(&stream, &payload);

        let out = run(&mut Coalescer::new(), &segs);
        if len == 0 {
            prop_assert_eq!(out.len(), 1);
            prop_assert_eq!(&out[0].1, &segs[0]);
            return Ok(());
        }
        // Trains end at 64 KiB or MAX_PIECES segments, or after CWR... which
        // only the first carries.
        let per_train = ((MAX_PACKET - t.hdr_len()) / mss).min(MAX_PIECES);
        prop_assert_eq!(out.len(), segs.len().div_ceil(per_train.max(1)));
        let mut stream = Vec::new();
        let mut back = Vec::new();
        for (vnet, p) in &out {
            let full = completed(vnet, p);
            let l3 = assert_valid(&full);
            let tcp = tcp::Packet::new_checked(&full[l3..]).expect("TCP");
            stream.extend_from_slice(tcp.payload());
            let split = Split::new(vnet, p).expect("coalesced packets split");
            back.extend(segments(&split));
        }
        prop_assert_eq!(&stream, &payload);
        prop_assert_eq!(&back, &segs);
    }

    /// Two flows interleaved at random, some segments corrupted, some ending a
    /// train, with one or two flow slots: splitting what comes out gives back, for
    /// each flow, exactly the segments that went in, in their order.
    #[test]
    fn interleaved_flows_keep_their_order(
        picks in proptest::collection::vec((any::<bool>(), 0u8..20), 1..80),
        mss in 1usize..1500,
        slots in 1usize..3,
    ) {
        let mut next = [Tcp::v4(), Tcp::v6()];
        let mut pushed: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
        let mut input = Vec::new();
        for (v6, roll) in picks {
            let f = usize::from(v6);
            let len = if roll == 1 { mss / 2 } else { mss };
            let t = Tcp {
                flags: if roll == 2 { tcp::FLAG_ACK | tcp::FLAG_PSH } else { tcp::FLAG_ACK },
                ..next[f]
            };
            let mut p = t.packet(&pattern(len, roll));
            if roll == 3 {
                let last = p.len() - 1;
                p[last] ^= 0x40; // a bad checksum, or a bad header if no payload
            }
            next[f].seq = next[f].seq.wrapping_add(len as u32);
            next[f].ident = next[f].ident.wrapping_add(1);
            pushed[f].push(p.clone());
            input.push(p);
        }
        let out = run(&mut Coalescer::with_flows(slots), &input);
        let mut got: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
        for (vnet, p) in &out {
            let f = usize::from(p[0] >> 4 == 6);
            if vnet.gso_type == GsoType::None && vnet.needs_csum() {
                // Verified: handed to the kernel as a partial checksum.
                got[f].push(completed(vnet, p));
            } else if vnet.gso_type == GsoType::None {
                got[f].push(p.clone());
            } else {
                got[f].extend(segments(&Split::new(vnet, p).expect("splits")));
            }
        }
        prop_assert_eq!(&got, &pushed);
    }

    #[test]
    fn uso_split_is_valid(v6 in any::<bool>(), mss in 1usize..3000, len in 0usize..20000, seed in any::<u8>()) {
        let payload = pattern(len, seed);
        let (vnet, sp) = udp_super(v6, &payload, mss as u16);
        let split = Split::new(&vnet, &sp).expect("valid USO packet");
        let mut stream = Vec::new();
        for s in segments(&split) {
            let l3 = assert_valid(&s);
            stream.extend_from_slice(udp::Packet::new_checked(&s[l3..]).expect("UDP").payload());
        }
        prop_assert_eq!(stream, payload);
    }

    #[test]
    fn arbitrary_input_never_panics(
        header in any::<[u8; 10]>(),
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let h = virtio::Header::new_checked(&header[..]).expect("ten bytes");
        let vnet = virtio::Repr::parse(&h).expect("infallible");
        if let Ok(split) = Split::new(&vnet, &body) {
            let mut out = vec![0u8; split.stride().max(split.segment_len(0))];
            for i in 0..split.count().min(400) {
                prop_assert_eq!(split.write(i, &mut out), split.segment_len(i));
            }
        }
        let mut p = body.clone();
        let _ = complete_checksum(&vnet, &mut p);
        let mut co = Coalescer::with_flows(2);
        // Every frame's pieces lie within what was pushed.
        let mut check = |f: Frame<'_>| assert!(f.to_vec(|_| &body[..]).len() >= 10);
        co.push(&body, Loc::default(), &mut check);
        co.flush(&mut check);
    }
}

// --- fuzz seeds --------------------------------------------------------------------

/// Writes the seed corpora of the `split` and `coalesce` fuzz targets from the
/// builders above: `cargo test --lib write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "regenerates fuzz/corpus/{split,coalesce}"]
fn write_fuzz_seeds() {
    let dir = |target: &str| {
        let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        std::fs::create_dir_all(&d).expect("corpus directory");
        d
    };
    let vnet_bytes = |vnet: &virtio::Repr, p: &[u8]| {
        let mut b = vec![0u8; virtio::HEADER_LEN];
        vnet.emit(&mut virtio::Header::new_unchecked(&mut b[..]));
        b.extend_from_slice(p);
        b
    };

    let split = dir("split");
    let psh = Tcp {
        flags: tcp::FLAG_ACK | tcp::FLAG_PSH,
        ..Tcp::v4()
    };
    let fin6 = Tcp {
        flags: tcp::FLAG_ACK | tcp::FLAG_FIN,
        ..Tcp::v6()
    };
    let cwr = Tcp {
        flags: tcp::FLAG_ACK | tcp::FLAG_CWR,
        timestamps: false,
        ..Tcp::v4()
    };
    let mut seeds: Vec<(&str, virtio::Repr, Vec<u8>)> = Vec::new();
    let (v, p) = psh.super_packet(&pattern(450, 1), 100);
    seeds.push(("tso-v4-psh-mss100", v, p));
    let (v, p) = fin6.super_packet(&pattern(300, 2), 128);
    seeds.push(("tso-v6-fin-mss128", v, p));
    let (v, p) = cwr.super_packet(&pattern(200, 3), 64);
    seeds.push(("tso-v4-cwr-no-options", v, p));
    let (v, p) = udp_super(false, &pattern(333, 4), 100);
    seeds.push(("uso-v4-mss100", v, p));
    let (v, p) = udp_super(true, &pattern(200, 5), 90);
    seeds.push(("uso-v6-mss90", v, p));
    let (mut v, p) = Tcp::v4().super_packet(&pattern(60, 6), 1448);
    v.gso_type = GsoType::None;
    seeds.push(("csum-only-tcp-v4", v, p));
    seeds.push((
        "plain-tcp-v6",
        virtio::Repr::default(),
        Tcp::v6().packet(b"hello"),
    ));
    for (name, v, p) in &seeds {
        std::fs::write(split.join(name), vnet_bytes(v, p)).expect("seed written");
    }

    let coalesce = dir("coalesce");
    let framed = |packets: &[Vec<u8>]| {
        let mut b = vec![7u8]; // eight flows
        for p in packets {
            b.extend_from_slice(&(p.len() as u16).to_be_bytes());
            b.extend_from_slice(p);
        }
        b
    };
    let v4 = train(Tcp::v4(), &pattern(500, 7), 100);
    let mut v6 = train(Tcp::v6(), &pattern(350, 8), 100);
    let last = Tcp {
        seq: Tcp::v6().seq + 300,
        flags: tcp::FLAG_ACK | tcp::FLAG_PSH,
        ..Tcp::v6()
    };
    *v6.last_mut().expect("four") = last.packet(&pattern(350, 8)[300..]);
    let (_, mut udp) = udp_super(false, b"query", 100);
    let sum = transport_sum(&udp, 20);
    udp::Packet::new_unchecked(&mut udp[20..]).set_checksum(!sum);
    let mut bad = v4[2].clone();
    bad[60] ^= 1;
    let mixed = vec![
        v4[0].clone(),
        v6[0].clone(),
        v4[1].clone(),
        udp,
        v6[1].clone(),
        bad,
        v4[3].clone(),
        t_ack(),
    ];
    std::fs::write(coalesce.join("train-v4"), framed(&v4)).expect("seed written");
    std::fs::write(coalesce.join("train-v6-psh"), framed(&v6)).expect("seed written");
    std::fs::write(coalesce.join("mixed-flows"), framed(&mixed)).expect("seed written");
}

/// A pure ACK.
fn t_ack() -> Vec<u8> {
    Tcp {
        seq: Tcp::v4().ack,
        ack: Tcp::v4().seq,
        ..Tcp::v4()
    }
    .packet(&[])
}

// --- partial checksums and super-packets from kernel peers ---------------------------

#[test]
fn coalesce_takes_partial_checksums_as_the_kernel_would() {
    // A kernel sender across a virtual link: the pseudo-header sum only.
    let t = Tcp::v4();
    let (_, lone) = t.super_packet(&pattern(100, 1), 1400);
    let out = run(&mut Coalescer::new(), std::slice::from_ref(&lone));
    assert_eq!(out.len(), 1);
    let (vnet, p) = &out[0];
    assert_eq!(vnet.flags, virtio::FLAG_NEEDS_CSUM);
    assert_eq!(vnet.gso_type, GsoType::None);
    assert_eq!((vnet.csum_start, vnet.csum_offset), (20, 16));
    assert_eq!(p, &lone, "written as it came");
    assert_valid(&completed(vnet, p));
    // A train of partial segments merges like verified ones.
    let seg = |i: u32| {
        let t = Tcp {
            seq: t.seq + i * 1000,
            ident: t.ident + i as u16,
            ..t
        };
        t.super_packet(&pattern(1000, i as u8), 1000).1
    };
    let out = run(&mut Coalescer::new(), &[seg(0), seg(1), seg(2)]);
    assert_eq!(out.len(), 1, "one super-packet");
    assert_eq!(out[0].0.gso_type, GsoType::TcpV4);
    assert_eq!(out[0].0.gso_size, 1000);
    // Neither verified nor partial: written alone, untouched, for the kernel to drop.
    let mut bad = seg(0);
    let l3 = t.l3_len();
    tcp::Packet::new_unchecked(&mut bad[l3..]).set_checksum(0x1234);
    let out = run(&mut Coalescer::new(), std::slice::from_ref(&bad));
    assert_eq!(out[0].0, virtio::Repr::default());
    assert_eq!(out[0].1, bad);
}

#[test]
fn a_super_packet_longer_than_the_mtu_is_written_for_segmentation() {
    // The kernel hands a UDP socket a GSO skb that crossed a veth whole as one
    // datagram: its inner packet is a 14 KB TCP super-packet.
    let t = Tcp::v4();
    let payload = pattern(14_000, 7);
    let (_, big) = t.super_packet(&payload, 1398);
    let mtu = 1450;
    let out = run(&mut Coalescer::with_mtu(8, mtu), &[big]);
    assert_eq!(out.len(), 1);
    let (vnet, p) = &out[0];
    assert_eq!(vnet.gso_type, GsoType::TcpV4);
    assert_eq!(vnet.flags, virtio::FLAG_NEEDS_CSUM);
    assert_eq!(usize::from(vnet.gso_size), mtu - t.hdr_len());
    assert_eq!(&p[t.hdr_len()..], &payload[..]);
    // Cut as the kernel would, every segment fits the MTU and verifies.
    let split = Split::new(vnet, p).expect("valid");
    for s in segments(&split) {
        assert!(s.len() <= mtu, "{} bytes", s.len());
        assert_valid(&s);
    }
    // At or under the MTU nothing changes: a lone packet stays unsegmented.
    let (_, small) = t.super_packet(&pattern(1000, 3), 1000);
    let out = run(&mut Coalescer::with_mtu(8, mtu), &[small]);
    assert_eq!(out[0].0.gso_type, GsoType::None);
}

#[test]
fn split_can_leave_checksums_partial_for_a_peer_that_completes_them() {
    for (vnet, packet) in [
        Tcp::v4().super_packet(&pattern(5000, 31), 1448),
        Tcp::v6().super_packet(&pattern(3000, 32), 1000),
        udp_super(false, &pattern(2500, 33), 1200),
        udp_super(true, &pattern(2500, 34), 1200),
    ] {
        let split = Split::new(&vnet, &packet).expect("splits");
        let complete = segments(&split);
        let partial = segments(&split.leave_partial(true));
        assert_eq!(partial.len(), complete.len());
        for (p, c) in partial.iter().zip(&complete) {
            // What the receiver sees: the field holds the pseudo-header sum...
            let at = super::partial::partial_checksum(p).expect("looks partial");
            assert_eq!(p[..at.field()], c[..at.field()]);
            assert_eq!(p[at.field() + 2..], c[at.field() + 2..]);
            // ...and completing it, as the receiving kernel does, gives the
            // checksum the sender would have computed.
            assert_eq!(at.completed(p), c[at.field()..at.field() + 2]);
        }
    }
}
