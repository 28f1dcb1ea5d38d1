//! The committed captures (tests/data, made by scripts/capture-frames.sh) hold
//! what tests/data/README.md says they hold, and the pcap and tshark helpers
//! read, build and judge frames correctly, including flagging bad ones.
//!
//! Needs no privileges. The tshark checks skip with a printed reason when tshark
//! is missing, and fail instead under CI (`CI=true`).

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::pcap::{self, Frame};
use common::tshark::{self, DECODE_FLANNEL_UDP_8285, DECODE_VXLAN_8472};

const HOST_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const HOST_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const UNDERLAY_MAC_A: [u8; 6] = [0x02, 0, 0xc0, 0, 0x02, 0x01];
const UNDERLAY_MAC_B: [u8; 6] = [0x02, 0, 0xc0, 0, 0x02, 0x02];
const VTEP_MAC_A: [u8; 6] = [0x0e, 0, 0, 0, 0x01, 0];
const VTEP_MAC_B: [u8; 6] = [0x0e, 0, 0, 0, 0x02, 0];
const VXLAN_PORT: u16 = 8472;
const FLANNEL_UDP_PORT: u16 = 8285;
const VNI: u32 = 1;
/// The kernel picks the outer source port by flow hash inside the namespace's
/// `ip_local_port_range` (vxlan `srcport 0 0`, the default flannel keeps).
const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 32768..=60999;

/// Frames in the committed captures. Regenerating them can change the TCP
/// part (delayed ACKs, a tail-loss-probe retransmission); update these then.
const KERNEL_VXLAN_FRAMES: usize = 26;
const FLANNEL_UDP_FRAMES: usize = 18;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const VXLAN_HEADER_LEN: usize = 8;
const ETHERNET_HEADER_LEN: usize = 14;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn read(name: &str) -> Vec<Frame> {
    pcap::read_pcap(&data(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

/// A temporary file removed on drop, named per process and test.
struct TempFile(PathBuf);

impl TempFile {
    fn new(test: &str) -> Self {
        let name = format!("ringlay-{test}-{}.pcap", std::process::id());
        Self(std::env::temp_dir().join(name))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The inner packet's protocol, as the tests count frames by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Icmp { total_len: usize },
    Icmpv6 { total_len: usize },
    Tcp,
    Udp,
    Udp6,
}

/// Inner IP source and destination and protocol of a raw IPv4 or IPv6 packet,
/// after checking its length fields (and for IPv4 its header checksum).
fn inner_ip(ip: &[u8]) -> (IpAddr, IpAddr, Inner) {
    match ip[0] >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            assert_eq!(total_len, ip.len(), "IPv4 total length matches the payload");
            assert_eq!(
                pcap::internet_checksum(&[&ip[..ihl]]),
                0,
                "inner IPv4 header checksum"
            );
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(&ip[12..16]).unwrap());
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&ip[16..20]).unwrap());
            let kind = match ip[9] {
                1 => Inner::Icmp { total_len },
                6 => Inner::Tcp,
                17 => Inner::Udp,
                p => panic!("unexpected inner IPv4 protocol {p}"),
            };
            (src.into(), dst.into(), kind)
        }
        6 => {
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            assert_eq!(
                plen + 40,
                ip.len(),
                "IPv6 payload length matches the payload"
            );
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap());
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap());
            let kind = match ip[6] {
                58 => Inner::Icmpv6 {
                    total_len: ip.len(),
                },
                17 => Inner::Udp6,
                p => panic!("unexpected inner IPv6 next header {p}"),
            };
            (src.into(), dst.into(), kind)
        }
        v => panic!("inner IP version {v}"),
    }
}

/// The container subnet an overlay address belongs to: 1 for cA's (hA), 2 for
/// cB's (hB).
fn host_of(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            assert_eq!(o[..2], [100, 96], "{a} is in 100.96.0.0/16");
            assert!(
                o[2] == 1 || o[2] == 2,
                "{a} is in 100.96.1.0/24 or 100.96.2.0/24"
            );
            o[2]
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            assert_eq!(s[..3], [0xfd00, 0x100, 0x96], "{a} is in fd00:100:96::/48");
            assert!(
                s[3] == 1 || s[3] == 2,
                "{a} is in fd00:100:96:1::/64 or :2::/64"
            );
            s[3] as u8
        }
    }
}

fn host_ip(n: u8) -> Ipv4Addr {
    if n == 1 {
        HOST_A
    } else {
        HOST_B
    }
}

fn underlay_mac(n: u8) -> [u8; 6] {
    if n == 1 {
        UNDERLAY_MAC_A
    } else {
        UNDERLAY_MAC_B
    }
}

fn vtep_mac(n: u8) -> [u8; 6] {
    if n == 1 {
        VTEP_MAC_A
    } else {
        VTEP_MAC_B
    }
}

#[test]
fn kernel_vxlan_capture_holds_flannel_vxlan_frames() {
    let frames = read("kernel-vxlan.pcap");
    assert_eq!(frames.len(), KERNEL_VXLAN_FRAMES);
    let mut kinds = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let n = i + 1;
        assert_eq!(frame.link_type, pcap::LINKTYPE_ETHERNET);
        assert_eq!(frame.data.len() as u32, frame.orig_len, "frame {n} not cut");
        let outer = pcap::split_outer_udp_v4(frame).unwrap_or_else(|| panic!("frame {n}"));
        assert_eq!(outer.dport, VXLAN_PORT, "frame {n}");
        assert!(
            EPHEMERAL_PORTS.contains(&outer.sport),
            "frame {n}: sport {}",
            outer.sport
        );
        assert_eq!(
            pcap::internet_checksum(&[outer.ip_header]),
            0,
            "frame {n} outer IPv4 checksum"
        );
        // This kernel sends the outer UDP checksum (vxlan `udpcsum`); it must be
        // exactly what our builder computes for the same datagram.
        assert_ne!(outer.udp_checksum, 0, "frame {n}");
        let rebuilt = Frame {
            data: pcap::build_outer_udp_v4(
                outer.src_mac,
                outer.dst_mac,
                outer.src,
                outer.dst,
                outer.sport,
                outer.dport,
                outer.payload,
            ),
            ..frame.clone()
        };
        let rebuilt = pcap::split_outer_udp_v4(&rebuilt).unwrap();
        assert_eq!(
            rebuilt.udp_checksum, outer.udp_checksum,
            "frame {n} UDP checksum"
        );

        let vx = outer.payload;
        assert_eq!(vx[0], 0x08, "frame {n}: VXLAN flags, only I set");
        assert_eq!(vx[1..4], [0, 0, 0], "frame {n}: VXLAN reserved");
        let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
        assert_eq!(vni, VNI, "frame {n}");
        assert_eq!(vx[7], 0, "frame {n}: VXLAN reserved");

        let eth = &vx[VXLAN_HEADER_LEN..];
        let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
        assert!(
            ethertype == ETHERTYPE_IPV4 || ethertype == ETHERTYPE_IPV6,
            "frame {n}: inner ethertype {ethertype:#06x}"
        );
        let (src, dst, kind) = inner_ip(&eth[ETHERNET_HEADER_LEN..]);
        let (from, to) = (host_of(src), host_of(dst));
        assert_ne!(from, to, "frame {n} crosses hosts");
        assert_eq!(
            (outer.src, outer.dst),
            (host_ip(from), host_ip(to)),
            "frame {n}"
        );
        assert_eq!(
            (outer.src_mac, outer.dst_mac),
            (underlay_mac(from), underlay_mac(to)),
            "frame {n}"
        );
        assert_eq!(
            eth[6..12],
            vtep_mac(from),
            "frame {n}: inner source is the sender's VtepMAC"
        );
        assert_eq!(
            eth[..6],
            vtep_mac(to),
            "frame {n}: inner destination is the peer's VtepMAC"
        );
        assert_eq!(ethertype == ETHERTYPE_IPV6, src.is_ipv6(), "frame {n}");
        kinds.push(kind);
    }

    let count = |f: &dyn Fn(&Inner) -> bool| kinds.iter().filter(|k| f(k)).count();
    assert_eq!(count(&|k| matches!(k, Inner::Icmp { .. })), 6);
    assert_eq!(count(&|k| matches!(k, Inner::Icmpv6 { .. })), 6);
    assert_eq!(count(&|k| matches!(k, Inner::Udp)), 2);
    assert_eq!(count(&|k| matches!(k, Inner::Udp6)), 2);
    assert_eq!(
        count(&|k| matches!(k, Inner::Tcp)),
        KERNEL_VXLAN_FRAMES - 16
    );
    // The largest DF pings through MTU 1450, both ways: 1514-byte outer frames.
    assert_eq!(count(&|k| *k == Inner::Icmp { total_len: 1450 }), 2);
    assert_eq!(count(&|k| *k == Inner::Icmpv6 { total_len: 1450 }), 2);
    assert_eq!(frames.iter().map(|f| f.data.len()).max(), Some(1514));
}

#[test]
fn flannel_udp_capture_holds_raw_ipv4_payloads() {
    let frames = read("flannel-udp.pcap");
    assert_eq!(frames.len(), FLANNEL_UDP_FRAMES);
    let mut kinds = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let n = i + 1;
        let outer = pcap::split_outer_udp_v4(frame).unwrap_or_else(|| panic!("frame {n}"));
        // The forwarder sends from the socket it receives on: 8285 both ends.
        assert_eq!(
            (outer.sport, outer.dport),
            (FLANNEL_UDP_PORT, FLANNEL_UDP_PORT),
            "frame {n}"
        );
        assert_eq!(
            outer.payload[0] >> 4,
            4,
            "frame {n}: payload is an IPv4 packet"
        );
        let (src, dst, kind) = inner_ip(outer.payload);
        let (from, to) = (host_of(src), host_of(dst));
        assert_ne!(
            from, to,
            "frame {n} goes between 100.96.1.0/24 and 100.96.2.0/24"
        );
        assert_eq!(
            (outer.src, outer.dst),
            (host_ip(from), host_ip(to)),
            "frame {n}"
        );
        assert_eq!(
            (outer.src_mac, outer.dst_mac),
            (underlay_mac(from), underlay_mac(to)),
            "frame {n}"
        );
        kinds.push(kind);
    }
    let count = |f: &dyn Fn(&Inner) -> bool| kinds.iter().filter(|k| f(k)).count();
    assert_eq!(count(&|k| matches!(k, Inner::Icmp { .. })), 6);
    assert_eq!(count(&|k| *k == Inner::Icmp { total_len: 1472 }), 2);
    assert_eq!(count(&|k| matches!(k, Inner::Udp)), 2);
    assert_eq!(count(&|k| matches!(k, Inner::Tcp)), FLANNEL_UDP_FRAMES - 8);
    assert_eq!(frames.iter().map(|f| f.data.len()).max(), Some(1514));
}

#[test]
fn tshark_dissects_kernel_vxlan_capture_cleanly() {
    let Ok(d) = tshark::dissect(&data("kernel-vxlan.pcap"), &[DECODE_VXLAN_8472]) else {
        return;
    };
    assert_eq!(d.frames.len(), KERNEL_VXLAN_FRAMES);
    d.assert_clean();
    let mut v6 = 0;
    for f in &d.frames {
        let p = &f.protocols;
        if p.starts_with("eth:ethertype:ip:udp:vxlan:eth:ethertype:ipv6:") {
            v6 += 1;
        } else {
            assert!(
                p.starts_with("eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:"),
                "frame {}: {p}",
                f.number
            );
        }
    }
    assert_eq!(v6, 8);
}

#[test]
fn tshark_dissects_flannel_udp_capture_cleanly() {
    let Ok(d) = tshark::dissect(&data("flannel-udp.pcap"), &[DECODE_FLANNEL_UDP_8285]) else {
        return;
    };
    assert_eq!(d.frames.len(), FLANNEL_UDP_FRAMES);
    d.assert_clean();
    for f in &d.frames {
        assert!(
            f.protocols.starts_with("eth:ethertype:ip:udp:ip:"),
            "frame {}: {}",
            f.number,
            f.protocols
        );
    }
}

/// Frames built by `build_outer_udp_v4` dissect cleanly (so its checksums are
/// right), and the tshark helper flags a bad inner checksum and a truncated
/// frame (so it cannot pass everything).
#[test]
fn tshark_helper_flags_corrupted_frames() {
    let frames = read("kernel-vxlan.pcap");
    let outer = pcap::split_outer_udp_v4(&frames[0]).unwrap();
    let build = |payload: &[u8]| {
        pcap::build_outer_udp_v4(
            VTEP_MAC_A, // any MACs do for the outer header
            VTEP_MAC_B, HOST_A, HOST_B, 40000, VXLAN_PORT, payload,
        )
    };
    let good = build(outer.payload);
    let mut bad_inner = outer.payload.to_vec();
    bad_inner[VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN + 10] ^= 0x5a; // inner IPv4 checksum
    let bad_inner = build(&bad_inner);
    let mut truncated = good.clone();
    truncated.truncate(60); // outer IPv4 total length now promises more than is there

    let file = TempFile::new("corrupted");
    pcap::write_pcap(&file.0, &[good, bad_inner, truncated]).unwrap();
    let Ok(d) = tshark::dissect(&file.0, &[DECODE_VXLAN_8472]) else {
        return;
    };
    assert_eq!(d.frames.len(), 3);
    assert_eq!(
        d.frames[0].problems(),
        Vec::<String>::new(),
        "{}",
        d.verbose
    );
    assert!(d.frames[0]
        .protocols
        .contains(":udp:vxlan:eth:ethertype:ip:icmp"));

    let bad = &d.frames[1];
    assert_eq!(bad.bad_checksums, ["ip.checksum.status"], "{}", d.verbose);
    assert!(
        bad.problems()
            .iter()
            .any(|p| p.to_lowercase().contains("checksum")),
        "{:?}",
        bad.problems()
    );
    assert!(
        d.frames[2].malformed,
        "truncated frame flagged: {}",
        d.verbose
    );

    let caught = std::panic::catch_unwind(|| d.assert_clean());
    assert!(
        caught.is_err(),
        "assert_clean must reject the corrupted frames"
    );
}

#[test]
fn pcap_round_trips_and_reads_both_byte_orders() {
    let frames = vec![vec![0xaa; 60], vec![0x55; 1514], Vec::new()];
    let bytes = pcap::encode_pcap(&frames);
    let read = pcap::parse_pcap(&bytes).unwrap();
    assert_eq!(
        read.iter().map(|f| f.data.clone()).collect::<Vec<_>>(),
        frames
    );
    assert_eq!(read[1].ts, Duration::from_millis(1));

    // The same file written on a machine of the other byte order: swap every
    // 32-bit field of the global and record headers (and the two 16-bit
    // version fields).
    let mut swapped = bytes.clone();
    swapped[0..4].reverse();
    swapped[4..6].reverse();
    swapped[6..8].reverse();
    for at in (8..24).step_by(4) {
        swapped[at..at + 4].reverse();
    }
    let mut at = 24;
    for f in &frames {
        for field in 0..4 {
            swapped[at + field * 4..at + field * 4 + 4].reverse();
        }
        at += 16 + f.len();
    }
    assert_eq!(pcap::parse_pcap(&swapped).unwrap(), read);

    // Nanosecond magic.
    let mut nanos = bytes.clone();
    nanos[0..4].copy_from_slice(&0xa1b2_3c4d_u32.to_ne_bytes());
    assert_eq!(
        pcap::parse_pcap(&nanos).unwrap()[1].ts,
        Duration::from_micros(1)
    );

    assert!(pcap::parse_pcap(&bytes[..20]).is_err());
    assert!(pcap::parse_pcap(&bytes[..bytes.len() - 1]).is_err());
    let mut other_link = bytes;
    other_link[20..24].copy_from_slice(&101u32.to_ne_bytes()); // LINKTYPE_RAW
    assert!(pcap::parse_pcap(&other_link).is_err());
}

#[test]
fn outer_udp_builder_and_splitter_agree() {
    let payload = b"ringlay";
    let frame = pcap::build_outer_udp_v4(
        VTEP_MAC_A,
        VTEP_MAC_B,
        HOST_A,
        HOST_B,
        41000,
        FLANNEL_UDP_PORT,
        payload,
    );
    assert_eq!(frame.len(), 14 + 20 + 8 + payload.len());
    let frame = Frame {
        ts: Duration::ZERO,
        link_type: pcap::LINKTYPE_ETHERNET,
        orig_len: frame.len() as u32,
        data: frame,
    };
    let o = pcap::split_outer_udp_v4(&frame).unwrap();
    assert_eq!((o.src_mac, o.dst_mac), (VTEP_MAC_A, VTEP_MAC_B));
    assert_eq!(
        (o.src, o.dst, o.sport, o.dport),
        (HOST_A, HOST_B, 41000, FLANNEL_UDP_PORT)
    );
    assert_eq!(o.payload, payload);
    assert_eq!(pcap::internet_checksum(&[o.ip_header]), 0);
    // RFC 1071's worked example: the sum of these words is ddf2, so the
    // checksum is its complement.
    let words = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(pcap::internet_checksum(&[&words]), !0xddf2);

    // Ethernet padding after the IPv4 packet is not payload.
    let mut padded = frame.clone();
    padded.data.extend_from_slice(&[0; 8]);
    assert_eq!(pcap::split_outer_udp_v4(&padded).unwrap().payload, payload);
    // A frame cut inside the UDP payload is refused, not read past its end.
    let mut cut = frame;
    cut.data.truncate(14 + 20 + 8 + 2);
    assert!(pcap::split_outer_udp_v4(&cut).is_none());
}

/// Frames in kernel-vxlan6.pcap (see tests/data/README.md).
const KERNEL_VXLAN6_FRAMES: usize = 26;

/// flanneld's dual-stack node, as the data path over an IPv6 underlay must meet
/// it: inner IPv6 only ever over the IPv6 underlay (2001:db8::N) and inner IPv4
/// over the IPv4 one; over IPv6 the outer UDP checksum is present and valid (the
/// kernel's default, `noudp6zerocsumtx`), and the inner destination MAC is the
/// receiver's `flannel-v6.1` VtepMAC (0e:00:00:06:0N:00, its lease's
/// `BackendV6Data`), not its `flannel.1` one; the largest frame is 1514 bytes
/// (MTU 1430 = 1500 − 70).
#[test]
fn kernel_vxlan6_capture_holds_dual_stack_flannel_frames() {
    let frames = read("kernel-vxlan6.pcap");
    assert_eq!(frames.len(), KERNEL_VXLAN6_FRAMES);
    let (mut over_v4, mut over_v6) = (0, 0);
    for (i, f) in frames.iter().enumerate() {
        let d = &f.data;
        let outer = u16::from_be_bytes([d[12], d[13]]);
        let (udp_at, src6_dst6) = match outer {
            ETHERTYPE_IPV4 => (ETHERNET_HEADER_LEN + usize::from(d[14] & 0x0f) * 4, None),
            ETHERTYPE_IPV6 => {
                assert_eq!(d[14 + 6], 17, "frame {i}: UDP right after the IPv6 header");
                let src = Ipv6Addr::from(<[u8; 16]>::try_from(&d[22..38]).expect("16 bytes"));
                let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&d[38..54]).expect("16 bytes"));
                (ETHERNET_HEADER_LEN + 40, Some((src, dst)))
            }
            other => panic!("frame {i}: outer ethertype {other:#06x}"),
        };
        let udp = &d[udp_at..];
        assert_eq!(
            u16::from_be_bytes([udp[2], udp[3]]),
            VXLAN_PORT,
            "frame {i}"
        );
        let vx = &udp[8..];
        assert_eq!(vx[0], 0x08, "frame {i}: VXLAN I flag");
        assert_eq!(
            u32::from_be_bytes([vx[4], vx[5], vx[6], 0]) >> 8,
            VNI,
            "frame {i}"
        );
        let inner = &vx[VXLAN_HEADER_LEN..];
        let inner_type = u16::from_be_bytes([inner[12], inner[13]]);
        let inner_dst_mac = &inner[0..6];
        match src6_dst6 {
            None => {
                over_v4 += 1;
                assert_eq!(
                    inner_type, ETHERTYPE_IPV4,
                    "frame {i}: inner IPv6 over the IPv4 underlay"
                );
                let to = d[14 + 19]; // last byte of the outer IPv4 destination
                assert_eq!(inner_dst_mac, [0x0e, 0, 0, 0, to, 0], "frame {i}");
            }
            Some((src, dst)) => {
                over_v6 += 1;
                assert_eq!(
                    inner_type, ETHERTYPE_IPV6,
                    "frame {i}: inner IPv4 over the IPv6 underlay"
                );
                let to = dst.octets()[15];
                assert_eq!(
                    dst.segments()[..7],
                    [0x2001, 0xdb8, 0, 0, 0, 0, 0],
                    "frame {i}: {dst}"
                );
                assert_eq!(
                    inner_dst_mac,
                    [0x0e, 0, 0, 0x06, to, 0],
                    "frame {i}: not flannel-v6.1's MAC"
                );
                // RFC 8200 §8.1: no zero checksum over IPv6; this one is complete.
                let len = u16::from_be_bytes([udp[4], udp[5]]);
                assert_eq!(usize::from(len), udp.len(), "frame {i}");
                assert_ne!(
                    u16::from_be_bytes([udp[6], udp[7]]),
                    0,
                    "frame {i}: zero UDP checksum over IPv6"
                );
                let mut pseudo = Vec::new();
                pseudo.extend_from_slice(&src.octets());
                pseudo.extend_from_slice(&dst.octets());
                pseudo.extend_from_slice(&u32::from(len).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, 17]);
                assert_eq!(
                    pcap::internet_checksum(&[&pseudo, udp]),
                    0,
                    "frame {i}: outer UDP checksum"
                );
            }
        }
    }
    assert_eq!(
        (over_v4, over_v6),
        (18, 8),
        "IPv4-underlay and IPv6-underlay frames"
    );
    assert_eq!(frames.iter().map(|f| f.data.len()).max(), Some(1514));
}
