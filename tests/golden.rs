//! Golden tests against real frames: what the kernel's vxlan device (flannel's vxlan
//! backend) and a flannel-style udp forwarder put on the wire, captured in the
//! two-host testbed (`tests/data/README.md`).
//!
//! * ringlay's decapsulation accepts every captured frame and returns exactly the
//!   inner packet the frame carries;
//! * ringlay's encapsulation of that inner packet reproduces the captured UDP
//!   payload byte for byte (so a kernel vxlan peer receives what it would send);
//! * tshark dissects the frames ringlay emits as VXLAN → Ethernet → IPv4/IPv6 (or,
//!   for flannel's udp format, IP in UDP) with no malformed or checksum warnings.

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use common::pcap::{build_outer_udp_v4, read_pcap, split_outer_udp_v4, write_pcap};
use common::tshark::{self, DECODE_FLANNEL_UDP_8285, DECODE_VXLAN_8472};
use ringlay::config::SubnetKey;
use ringlay::drop_reason::DropReason;
use ringlay::encap::{self, Local, VxlanHeader, VXLAN_HEADERS_LEN};
use ringlay::wire::{checksum, MacAddr};

const HOST_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const HOST_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Host number (1 = hA, 2 = hB) of an underlay address.
fn host(ip: Ipv4Addr) -> u8 {
    match ip {
        HOST_A => 1,
        HOST_B => 2,
        other => panic!("capture holds a frame from unknown host {other}"),
    }
}

fn lease(n: u8) -> SubnetKey {
    SubnetKey {
        v4: Some(format!("100.96.{n}.0/24").parse().expect("subnet")),
        v6: Some(format!("fd00:100:96:{n}::/64").parse().expect("subnet")),
    }
}

fn vtep(n: u8) -> MacAddr {
    MacAddr([0x0e, 0, 0, 0, n, 0])
}

fn local(n: u8) -> Local {
    Local {
        subnets: lease(n),
        vni: 1,
        vtep_mac: vtep(n),
        vtep_mac_v6: vtep(n),
    }
}

/// A captured datagram: who sent it to whom, and its UDP payload.
struct Datagram {
    from: u8,
    to: u8,
    dport: u16,
    payload: Vec<u8>,
}

fn datagrams(file: &str) -> Vec<Datagram> {
    let frames = read_pcap(&data(file)).expect("committed capture is readable");
    assert!(!frames.is_empty());
    frames
        .iter()
        .map(|f| {
            let o = split_outer_udp_v4(f).expect("every captured frame is IPv4/UDP");
            Datagram {
                from: host(o.src),
                to: host(o.dst),
                dport: o.dport,
                payload: o.payload.to_vec(),
            }
        })
        .collect()
}

/// The length of an IP packet by its own header (independent of ringlay's parser).
fn ip_len(p: &[u8]) -> usize {
    match p[0] >> 4 {
        4 => usize::from(u16::from_be_bytes([p[2], p[3]])),
        6 => 40 + usize::from(u16::from_be_bytes([p[4], p[5]])),
        v => panic!("IP version {v}"),
    }
}

/// Undoes one router hop on a captured inner packet, so that ringlay's own hop gives
/// back the captured bytes.
fn one_hop_earlier(p: &mut [u8]) {
    match p[0] >> 4 {
        4 => {
            p[8] += 1;
            p[10..12].fill(0);
            let c = !checksum::data(&p[..usize::from(p[0] & 0x0f) * 4]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        _ => p[7] += 1,
    }
}

#[test]
fn kernel_vxlan_frames_decap_to_their_inner_packets() {
    let dgs = datagrams("kernel-vxlan.pcap");
    assert_eq!(dgs.len(), 26);
    let (mut v4, mut v6) = (0, 0);
    for (i, d) in dgs.iter().enumerate() {
        assert_eq!(d.dport, 8472, "frame {}", i + 1);
        let r = encap::decap_vxlan(&d.payload, &local(d.to), Some(&lease(d.from)))
            .unwrap_or_else(|e| panic!("frame {} refused: {e}", i + 1));
        let inner = &d.payload[VXLAN_HEADERS_LEN..];
        assert_eq!(r, VXLAN_HEADERS_LEN..VXLAN_HEADERS_LEN + ip_len(inner));
        match inner[0] >> 4 {
            4 => v4 += 1,
            _ => v6 += 1,
        }
    }
    assert_eq!((v4, v6), (18, 8), "frames 7-12 and 25-26 are IPv6");
    // Frames 5 and 11 carry inner packets of exactly the vxlan MTU.
    assert_eq!(ip_len(&dgs[4].payload[VXLAN_HEADERS_LEN..]), 1450);
    assert_eq!(ip_len(&dgs[10].payload[VXLAN_HEADERS_LEN..]), 1450);
}

#[test]
fn kernel_vxlan_frames_are_refused_where_they_do_not_belong() {
    for d in datagrams("kernel-vxlan.pcap") {
        // Delivered to the sender itself: the inner MAC is not ours.
        let wrong_host = encap::decap_vxlan(&d.payload, &local(d.from), Some(&lease(d.from)));
        assert_eq!(wrong_host, Err(DropReason::NotOurMac));
        // From an address no lease holds.
        assert_eq!(
            encap::decap_vxlan(&d.payload, &local(d.to), None),
            Err(DropReason::UnknownSender)
        );
        // A sender whose lease is another subnet: spoofed.
        assert_eq!(
            encap::decap_vxlan(&d.payload, &local(d.to), Some(&lease(3))),
            Err(DropReason::SpoofedSource)
        );
        // Another VNI.
        let other_vni = Local {
            vni: 2,
            ..local(d.to)
        };
        assert_eq!(
            encap::decap_vxlan(&d.payload, &other_vni, Some(&lease(d.from))),
            Err(DropReason::WrongVni)
        );
    }
}

#[test]
fn ringlay_vxlan_encap_reproduces_the_kernels_frames() {
    for (i, d) in datagrams("kernel-vxlan.pcap").iter().enumerate() {
        let mut buf = vec![0u8; 64];
        buf.extend_from_slice(&d.payload[VXLAN_HEADERS_LEN..]);
        one_hop_earlier(&mut buf[64..]);
        let len = buf.len() - 64;
        let hdr = VxlanHeader::new(1, vtep(d.from), vtep(d.to));
        let r = encap::encap_vxlan(&mut buf, 64, len, &hdr).expect("forwarded");
        assert_eq!(&buf[r], &d.payload[..], "frame {}", i + 1);
    }
}

#[test]
fn flannel_udp_frames_decap_and_reencap_identically() {
    let dgs = datagrams("flannel-udp.pcap");
    assert_eq!(dgs.len(), 18);
    for (i, d) in dgs.iter().enumerate() {
        assert_eq!(d.dport, 8285);
        let r = encap::decap_udp(&d.payload, &local(d.to), Some(&lease(d.from)))
            .unwrap_or_else(|e| panic!("frame {} refused: {e}", i + 1));
        assert_eq!(r, 0..d.payload.len());
        let mut buf = d.payload.clone();
        one_hop_earlier(&mut buf);
        let len = buf.len();
        let r = encap::encap_udp(&mut buf, 0, len).expect("forwarded");
        assert_eq!(&buf[r], &d.payload[..], "frame {}", i + 1);
    }
}

/// Where a test writes its pcap: unique per process, removed by the guard.
struct TempPcap(PathBuf);

impl TempPcap {
    fn new(name: &str) -> TempPcap {
        TempPcap(
            std::env::temp_dir().join(format!("ringlay-golden-{}-{name}.pcap", std::process::id())),
        )
    }
}

impl std::ops::Drop for TempPcap {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Forwards each captured inner packet through ringlay (one real hop: TTL and
/// checksum patched), wraps the result in outer headers as the kernel's UDP socket
/// would, and has tshark judge the frames.
fn tshark_judges(file: &str, vxlan: bool) {
    let dgs = datagrams(file);
    let mut frames = Vec::new();
    for (i, d) in dgs.iter().enumerate() {
        let inner = if vxlan {
            &d.payload[VXLAN_HEADERS_LEN..]
        } else {
            &d.payload[..]
        };
        let mut buf = vec![0u8; 64];
        buf.extend_from_slice(inner);
        let len = inner.len();
        let r = if vxlan {
            let hdr = VxlanHeader::new(1, vtep(d.from), vtep(d.to));
            encap::encap_vxlan(&mut buf, 64, len, &hdr)
        } else {
            encap::encap_udp(&mut buf, 64, len)
        }
        .expect("forwarded");
        let (src, dst) = (
            [HOST_A, HOST_B][usize::from(d.from - 1)],
            [HOST_A, HOST_B][usize::from(d.to - 1)],
        );
        let mac = |n: u8| [0x02, 0, 0xc0, 0, 0x02, n];
        let sport = 40000 + i as u16;
        frames.push(build_outer_udp_v4(
            mac(d.from),
            mac(d.to),
            src,
            dst,
            sport,
            d.dport,
            &buf[r],
        ));
    }
    let pcap = TempPcap::new(if vxlan { "vxlan" } else { "udp" });
    write_pcap(&pcap.0, &frames).expect("write pcap");
    let rule = if vxlan {
        DECODE_VXLAN_8472
    } else {
        DECODE_FLANNEL_UDP_8285
    };
    let dissection = match tshark::dissect(&pcap.0, &[rule]) {
        Ok(d) => d,
        Err(skip) => {
            eprintln!("skipped: {skip}");
            return;
        }
    };
    dissection.assert_clean();
    assert_eq!(dissection.frames.len(), frames.len());
    for f in &dissection.frames {
        let want = if vxlan {
            ":udp:vxlan:eth:ethertype:ip"
        } else {
            ":udp:ip"
        };
        assert!(
            f.protocols.contains(want),
            "frame {}: {} lacks {want}",
            f.number,
            f.protocols
        );
    }
}

#[test]
fn tshark_dissects_ringlay_vxlan_frames_cleanly() {
    tshark_judges("kernel-vxlan.pcap", true);
}

#[test]
fn tshark_dissects_ringlay_udp_frames_cleanly() {
    tshark_judges("flannel-udp.pcap", false);
}
