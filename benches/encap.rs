//! Criterion benches of the tunnel formats: encap and decap for udp and vxlan with
//! 64-byte and 1400-byte inner IPv4 packets, every decap check enabled.

// criterion_group! and criterion_main! generate undocumented items.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringlay::config::SubnetKey;
use ringlay::encap::{self, Local, VxlanHeader, VXLAN_HEADERS_LEN};
use ringlay::wire::{checksum, MacAddr};

const MAC_A: MacAddr = MacAddr([0x0e, 0, 0, 0, 1, 0]);
const MAC_B: MacAddr = MacAddr([0x0e, 0, 0, 0, 2, 0]);
const HEADROOM: usize = 64;

/// A UDP-in-IPv4 packet of `len` bytes from container A to container B.
fn inner(len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&Ipv4Addr::new(100, 96, 1, 2).octets());
    p[16..20].copy_from_slice(&Ipv4Addr::new(100, 96, 2, 2).octets());
    let c = !checksum::data(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// Keeps a result alive without copying it out byte by byte: criterion's own
/// fallback black box reads a routine's return value with volatile byte loads,
/// which would cost more than the code under test.
#[inline(always)]
fn consume<T>(r: T) {
    black_box(&r);
}

fn subnets(v4: &str) -> SubnetKey {
    SubnetKey {
        v4: Some(v4.parse().expect("subnet")),
        v6: None,
    }
}

fn bench(c: &mut Criterion) {
    let hdr = VxlanHeader::new(1, MAC_A, MAC_B);
    let local = Local {
        subnets: subnets("100.96.2.0/24"),
        vni: 1,
        vtep_mac: MAC_B,
        vtep_mac_v6: MAC_B,
    };
    let sender = subnets("100.96.1.0/24");

    for size in [64usize, 1400] {
        let pkt = inner(size);
        let mut g = c.benchmark_group(format!("encap/{size}B"));
        g.throughput(Throughput::Elements(1));

        let mut buf = vec![0u8; HEADROOM + size];
        buf[HEADROOM..].copy_from_slice(&pkt);
        g.bench_function("udp", |b| {
            b.iter(|| {
                // Restore the TTL so every iteration forwards (one byte, no copy of
                // the payload); the checksum patch keeps the header valid.
                buf[HEADROOM + 8] = 64;
                consume(encap::encap_udp(black_box(&mut buf), HEADROOM, size))
            })
        });
        g.bench_function("vxlan", |b| {
            b.iter(|| {
                buf[HEADROOM + 8] = 64;
                black_box(encap::encap_vxlan(
                    black_box(&mut buf),
                    HEADROOM,
                    size,
                    &hdr,
                ))
            })
        });
        g.finish();

        let mut g = c.benchmark_group(format!("decap/{size}B"));
        g.throughput(Throughput::Elements(1));
        let mut frame = vec![0u8; HEADROOM + size];
        frame[HEADROOM..].copy_from_slice(&pkt);
        let r = encap::encap_vxlan(&mut frame, HEADROOM, size, &hdr).expect("valid packet");
        let vx = frame[r].to_vec();
        assert_eq!(vx.len(), VXLAN_HEADERS_LEN + size);
        let udp = vx[VXLAN_HEADERS_LEN..].to_vec();
        assert!(encap::decap_vxlan(&vx, &local, Some(&sender)).is_ok());
        g.bench_function("udp", |b| {
            b.iter(|| consume(encap::decap_udp(black_box(&udp), &local, Some(&sender))))
        });
        g.bench_function("vxlan", |b| {
            b.iter(|| consume(encap::decap_vxlan(black_box(&vx), &local, Some(&sender))))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
