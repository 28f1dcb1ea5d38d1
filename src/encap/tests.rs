//! Tests of the tunnel formats: golden bytes, one test per drop reason, and
//! property tests that no input panics and that encap → decap is the identity.

use super::*;
use crate::wire::checksum;
use core::net::{Ipv4Addr, Ipv6Addr};

const MAC_A: MacAddr = MacAddr([0x0e, 0, 0, 0, 0x01, 0]);
const MAC_B: MacAddr = MacAddr([0x0e, 0, 0, 0, 0x02, 0]);

fn key(s: &str) -> SubnetKey {
    let mut k = SubnetKey { v4: None, v6: None };
    for part in s.split('&') {
        if part.contains(':') {
            k.v6 = Some(part.parse().expect("test subnet"));
        } else {
            k.v4 = Some(part.parse().expect("test subnet"));
        }
    }
    k
}

fn lease_a() -> SubnetKey {
    key("100.96.1.0/24&fd00:100:96:1::/64")
}

/// Host B, receiving from host A.
fn local_b() -> Local {
    Local {
        subnets: key("100.96.2.0/24&fd00:100:96:2::/64"),
        vni: 1,
        vtep_mac: MAC_B,
        vtep_mac_v6: MAC_B,
    }
}

/// An ICMP echo request, as `ping` on container A sends it to container B.
fn icmp_v4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
    let mut p = vec![
        0x45, 0x00, 0x00, 0x24, 0x5b, 0x35, 0x40, 0x00, ttl, 0x01, 0x00, 0x00,
    ];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    // ICMP echo request, id 7, seq 1, 8 bytes of data.
    p.extend_from_slice(&[8, 0, 0, 0, 0, 7, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8]);
    let icmp = !checksum::data(&p[20..]);
    p[22..24].copy_from_slice(&icmp.to_be_bytes());
    let csum = !checksum::data(&p[..20]);
    p[10..12].copy_from_slice(&csum.to_be_bytes());
    p
}

/// A UDP datagram over IPv6 with 4 bytes of payload.
fn udp_v6(src: Ipv6Addr, dst: Ipv6Addr, hops: u8) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 12, 17, hops];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[
        0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0, 0, b'p', b'i', b'n', b'g',
    ]);
    p
}

fn a2b_v4() -> Vec<u8> {
    icmp_v4(
        Ipv4Addr::new(100, 96, 1, 2),
        Ipv4Addr::new(100, 96, 2, 2),
        64,
    )
}

fn a2b_v6() -> Vec<u8> {
    udp_v6(
        "fd00:100:96:1::2".parse().expect("addr"),
        "fd00:100:96:2::2".parse().expect("addr"),
        64,
    )
}

/// Puts `packet` into a buffer with `headroom` free bytes in front and `tail` after.
fn buffer(packet: &[u8], headroom: usize, tail: usize) -> Vec<u8> {
    let mut b = vec![0xee; headroom];
    b.extend_from_slice(packet);
    b.extend(std::iter::repeat_n(0xdd, tail));
    b
}

fn hdr_a2b() -> VxlanHeader {
    VxlanHeader::new(1, MAC_A, MAC_B)
}

/// A vxlan datagram from A to B holding `packet`, built by hand (no encap code).
fn vxlan_frame(vni_flags: [u8; 8], dst: MacAddr, ethertype: u16, packet: &[u8]) -> Vec<u8> {
    let mut f = vni_flags.to_vec();
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&MAC_A.octets());
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(packet);
    f
}

const VNI1: [u8; 8] = [0x08, 0, 0, 0, 0, 0, 0x01, 0];

#[test]
fn udp_encap_decrements_ttl_and_keeps_checksum_valid() {
    let pkt = a2b_v4();
    let mut buf = buffer(&pkt, 32, 6);
    let r = encap_udp(&mut buf, 32, pkt.len() + 6).expect("forwarded");
    assert_eq!(r, 32..32 + pkt.len(), "trailing padding is not sent");
    let out = &buf[r];
    assert_eq!(out[8], 63, "TTL decremented once");
    assert_eq!(
        checksum::data(&out[..20]),
        0xffff,
        "header checksum still valid"
    );
    let mut expect = pkt.clone();
    expect[8] = 63;
    expect[10..12].fill(0);
    let c = !checksum::data(&expect[..20]);
    expect[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(out, &expect[..]);
}

#[test]
fn vxlan_encap_golden_bytes() {
    let pkt = a2b_v4();
    let mut buf = buffer(&pkt, 64, 0);
    let r = encap_vxlan(&mut buf, 64, pkt.len(), &hdr_a2b()).expect("forwarded");
    assert_eq!(r, 64 - VXLAN_HEADERS_LEN..64 + pkt.len());
    let out = &buf[r];
    let head: [u8; 22] = [
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, // VXLAN: I flag, VNI 1
        0x0e, 0x00, 0x00, 0x00, 0x02, 0x00, // dst = B's VtepMAC
        0x0e, 0x00, 0x00, 0x00, 0x01, 0x00, // src = A's VtepMAC
        0x08, 0x00, // IPv4
    ];
    assert_eq!(&out[..22], &head);
    assert_eq!(out[22 + 8], 63);
    assert_eq!(checksum::data(&out[22..42]), 0xffff);
    assert_eq!(&out[42..], &pkt[20..], "payload untouched");
}

#[test]
fn vxlan_encap_ipv6_uses_86dd_and_decrements_hop_limit() {
    let pkt = a2b_v6();
    let mut buf = buffer(&pkt, 22, 0);
    let hdr = VxlanHeader::new(0x00ab_cdef, MAC_A, MAC_B);
    let r = encap_vxlan(&mut buf, 22, pkt.len(), &hdr).expect("forwarded");
    assert_eq!(r, 0..buf.len());
    assert_eq!(&buf[..8], &[0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
    assert_eq!(&buf[20..22], &[0x86, 0xdd]);
    assert_eq!(buf[22 + 7], 63);
}

#[test]
fn ttl_one_or_zero_is_not_forwarded() {
    for ttl in [0, 1] {
        let mut p = icmp_v4(
            Ipv4Addr::new(100, 96, 1, 2),
            Ipv4Addr::new(100, 96, 2, 2),
            ttl,
        );
        let len = p.len();
        assert_eq!(encap_udp(&mut p, 0, len), Err(DropReason::TtlExpired));
        let mut b = buffer(&p, 22, 0);
        assert_eq!(
            encap_vxlan(&mut b, 22, len, &hdr_a2b()),
            Err(DropReason::TtlExpired)
        );
    }
    let mut p = udp_v6(
        "fd00:100:96:1::2".parse().expect("a"),
        "fd00:100:96:2::2".parse().expect("a"),
        1,
    );
    let len = p.len();
    assert_eq!(encap_udp(&mut p, 0, len), Err(DropReason::TtlExpired));
    // TTL 2 goes out with 1.
    let mut p = icmp_v4(
        Ipv4Addr::new(100, 96, 1, 2),
        Ipv4Addr::new(100, 96, 2, 2),
        2,
    );
    let len = p.len();
    encap_udp(&mut p, 0, len).expect("ttl 2 is forwarded");
    assert_eq!(p[8], 1);
}

#[test]
fn missing_headroom_or_bad_range_is_refused_not_panicked() {
    let pkt = a2b_v4();
    let mut buf = buffer(&pkt, 21, 0);
    assert_eq!(
        encap_vxlan(&mut buf, 21, pkt.len(), &hdr_a2b()),
        Err(DropReason::NoHeadroom)
    );
    assert_eq!(
        encap_udp(&mut buf, 21, pkt.len() + 1),
        Err(DropReason::NoHeadroom)
    );
    assert_eq!(
        encap_udp(&mut buf, usize::MAX, 2),
        Err(DropReason::NoHeadroom)
    );
}

#[test]
fn outbound_rejects_malformed_inner_packets() {
    let mut empty: [u8; 0] = [];
    assert_eq!(encap_udp(&mut empty, 0, 0), Err(DropReason::IpTruncated));
    let mut arp_like = [0x00u8; 28];
    assert_eq!(encap_udp(&mut arp_like, 0, 28), Err(DropReason::IpVersion));
    let mut short = a2b_v4();
    short.truncate(30); // total length says 36
    assert_eq!(encap_udp(&mut short, 0, 30), Err(DropReason::IpTotalLen));
}

#[test]
fn vxlan_round_trip_v4_and_v6() {
    for pkt in [a2b_v4(), a2b_v6()] {
        let mut buf = buffer(&pkt, 40, 0);
        let r = encap_vxlan(&mut buf, 40, pkt.len(), &hdr_a2b()).expect("forwarded");
        let sent = buf[r].to_vec();
        let inner = decap_vxlan(&sent, &local_b(), Some(&lease_a())).expect("accepted");
        assert_eq!(inner, VXLAN_HEADERS_LEN..sent.len());
        // Same packet, one hop later.
        assert_eq!(sent[inner].len(), pkt.len());
    }
}

#[test]
fn udp_round_trip_v4_and_v6() {
    for pkt in [a2b_v4(), a2b_v6()] {
        let mut buf = pkt.clone();
        let r = encap_udp(&mut buf, 0, pkt.len()).expect("forwarded");
        let inner = decap_udp(&buf[r.clone()], &local_b(), Some(&lease_a())).expect("accepted");
        assert_eq!(inner, 0..pkt.len());
    }
}

#[test]
fn decap_trims_link_padding() {
    let pkt = a2b_v4();
    let mut f = vxlan_frame(VNI1, MAC_B, 0x0800, &pkt);
    f.extend_from_slice(&[0; 10]);
    assert_eq!(
        decap_vxlan(&f, &local_b(), Some(&lease_a())),
        Ok(VXLAN_HEADERS_LEN..VXLAN_HEADERS_LEN + pkt.len())
    );
    let mut u = pkt.clone();
    u.extend_from_slice(&[0; 3]);
    assert_eq!(
        decap_udp(&u, &local_b(), Some(&lease_a())),
        Ok(0..pkt.len())
    );
}

/// Every decap drop reason, each provoked by exactly one defect.
#[test]
fn vxlan_decap_drop_reasons() {
    let pkt = a2b_v4();
    let sender = Some(lease_a());
    let local = local_b();
    let check = |frame: &[u8], want: DropReason| {
        assert_eq!(
            decap_vxlan(frame, &local, sender.as_ref()),
            Err(want),
            "{want}"
        );
    };
    let good = vxlan_frame(VNI1, MAC_B, 0x0800, &pkt);
    assert!(decap_vxlan(&good, &local, sender.as_ref()).is_ok());

    check(&good[..VXLAN_HEADERS_LEN - 1], DropReason::Truncated);
    check(&[], DropReason::Truncated);
    check(
        &vxlan_frame([0, 0, 0, 0, 0, 0, 1, 0], MAC_B, 0x0800, &pkt),
        DropReason::VxlanFlags,
    );
    check(
        &vxlan_frame([0x08, 0, 0, 0, 0, 0, 2, 0], MAC_B, 0x0800, &pkt),
        DropReason::WrongVni,
    );
    check(
        &vxlan_frame(VNI1, MacAddr::BROADCAST, 0x0806, &[0; 28]),
        DropReason::Arp,
    );
    check(&vxlan_frame(VNI1, MAC_B, 0x0806, &[0; 28]), DropReason::Arp);
    check(
        &vxlan_frame(VNI1, MacAddr::BROADCAST, 0x0800, &pkt),
        DropReason::MulticastMac,
    );
    check(
        &vxlan_frame(VNI1, MacAddr([0x01, 0, 0x5e, 0, 0, 1]), 0x0800, &pkt),
        DropReason::MulticastMac,
    );
    check(
        &vxlan_frame(VNI1, MacAddr([0x0e, 0, 0, 0, 3, 0]), 0x0800, &pkt),
        DropReason::NotOurMac,
    );
    check(
        &vxlan_frame(VNI1, MAC_B, 0x88cc, &pkt),
        DropReason::EtherType,
    );
    check(
        &vxlan_frame(VNI1, MAC_B, 0x0800, &pkt[..19]),
        DropReason::IpTruncated,
    );
    check(
        &vxlan_frame(VNI1, MAC_B, 0x86dd, &pkt),
        DropReason::IpVersion,
    );
    check(
        &vxlan_frame(VNI1, MAC_B, 0x0800, &a2b_v6()),
        DropReason::IpVersion,
    );

    let mut bad_ihl = pkt.clone();
    bad_ihl[0] = 0x44;
    check(
        &vxlan_frame(VNI1, MAC_B, 0x0800, &bad_ihl),
        DropReason::IpHeaderLen,
    );
    check(
        &vxlan_frame(VNI1, MAC_B, 0x0800, &pkt[..pkt.len() - 1]),
        DropReason::IpTotalLen,
    );
    let mut bad_sum = pkt.clone();
    bad_sum[10] ^= 0x40;
    check(
        &vxlan_frame(VNI1, MAC_B, 0x0800, &bad_sum),
        DropReason::IpChecksum,
    );

    assert_eq!(
        decap_vxlan(&good, &local, None),
        Err(DropReason::UnknownSender)
    );
    let spoofed = icmp_v4(
        Ipv4Addr::new(100, 96, 3, 2),
        Ipv4Addr::new(100, 96, 2, 2),
        64,
    );
    check(
        &vxlan_frame(VNI1, MAC_B, 0x0800, &spoofed),
        DropReason::SpoofedSource,
    );
    let elsewhere = icmp_v4(
        Ipv4Addr::new(100, 96, 1, 2),
        Ipv4Addr::new(100, 96, 3, 2),
        64,
    );
    check(
        &vxlan_frame(VNI1, MAC_B, 0x0800, &elsewhere),
        DropReason::NotOurSubnet,
    );

    // A sender whose lease has no IPv6 subnet cannot source IPv6 packets.
    let v4_only = key("100.96.1.0/24");
    let f6 = vxlan_frame(VNI1, MAC_B, 0x86dd, &a2b_v6());
    assert_eq!(
        decap_vxlan(&f6, &local, Some(&v4_only)),
        Err(DropReason::SpoofedSource)
    );
    assert!(decap_vxlan(&f6, &local, sender.as_ref()).is_ok());
}

#[test]
fn udp_decap_drop_reasons() {
    let pkt = a2b_v4();
    let local = local_b();
    let s = Some(lease_a());
    assert_eq!(
        decap_udp(&[], &local, s.as_ref()),
        Err(DropReason::Truncated)
    );
    assert_eq!(
        decap_udp(&pkt[..10], &local, s.as_ref()),
        Err(DropReason::IpTruncated)
    );
    assert_eq!(
        decap_udp(&[0x50; 40], &local, s.as_ref()),
        Err(DropReason::IpVersion)
    );
    assert_eq!(
        decap_udp(&pkt[..30], &local, s.as_ref()),
        Err(DropReason::IpTotalLen)
    );
    let mut bad = pkt.clone();
    bad[12] ^= 1;
    assert_eq!(
        decap_udp(&bad, &local, s.as_ref()),
        Err(DropReason::IpChecksum)
    );
    assert_eq!(
        decap_udp(&pkt, &local, None),
        Err(DropReason::UnknownSender)
    );
    let other = key("100.96.3.0/24");
    assert_eq!(
        decap_udp(&pkt, &local, Some(&other)),
        Err(DropReason::SpoofedSource)
    );
    let mut to_c = icmp_v4(
        Ipv4Addr::new(100, 96, 1, 2),
        Ipv4Addr::new(100, 96, 4, 9),
        64,
    );
    assert_eq!(
        decap_udp(&to_c, &local, s.as_ref()),
        Err(DropReason::NotOurSubnet)
    );
    to_c.truncate(20);
    assert_eq!(
        decap_udp(&to_c, &local, s.as_ref()),
        Err(DropReason::IpTotalLen)
    );
}

#[test]
fn drop_table_is_in_declaration_order_with_unique_names() {
    let mut names = std::collections::HashSet::new();
    for (i, d) in DropReason::ALL.iter().enumerate() {
        assert_eq!(*d as usize, i);
        assert!(names.insert(d.name()), "duplicate name {}", d.name());
    }
}

proptest::proptest! {
    #[test]
    fn decap_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let _ = decap_vxlan(&bytes, &local_b(), Some(&lease_a()));
        let _ = decap_udp(&bytes, &local_b(), Some(&lease_a()));
        let _ = decap_vxlan(&bytes, &local_b(), None);
    }

    #[test]
    fn encap_never_panics(mut bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200), start in 0usize..220, len in 0usize..220) {
        let mut copy = bytes.clone();
        let _ = encap_udp(&mut bytes, start, len);
        let _ = encap_vxlan(&mut copy, start, len, &hdr_a2b());
    }

    #[test]
    fn vxlan_decap_of_mutated_frames_never_panics_and_accepts_only_valid(
        flips in proptest::collection::vec((0usize..80, proptest::num::u8::ANY), 0..4)
    ) {
        let mut f = vxlan_frame(VNI1, MAC_B, 0x0800, &a2b_v4());
        for (i, b) in flips {
            let i = i % f.len();
            f[i] ^= b;
        }
        if let Ok(r) = decap_vxlan(&f, &local_b(), Some(&lease_a())) {
            // Whatever is accepted is a well-formed IPv4 packet between the leases.
            let ip = ipv4::Packet::new_checked(&f[r]).expect("accepted packets parse");
            proptest::prop_assert!(ip.verify_checksum());
            proptest::prop_assert!(lease_a().v4.expect("v4").contains(&ip.src_addr()));
        }
    }
}
