//! Criterion benches of segmentation and coalescing on one core: a 64 KiB TCP/IPv4
//! super-packet (timestamps on, as Linux sends them) split into MSS-sized segments,
//! and those segments coalesced back, in bytes of IP packet per second.
//!
//! `split` copies every segment out (the copying path); `gather` writes only the
//! segments' headers, as a gathered send does, with complete checksums (toward a
//! kernel node), and `gather-partial` leaves them partial (toward a ringlay peer
//! that advertises partial-csum): no pass over the payload at all.

// criterion_group! and criterion_main! generate undocumented items.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringlay::dataplane::offload::{Coalescer, Frame, Loc, Split};
use ringlay::wire::virtio::{self, GsoType};
use ringlay::wire::{checksum, ipv4, tcp, IpProtocol};

/// IPv4 (20) + TCP with timestamps (32).
const HDR_LEN: usize = 52;

/// The largest TSO packet Linux hands a TUN with `mss`-byte segments: as many whole
/// segments as fit in 64 KiB of IP packet.
fn super_packet(mss: usize) -> (virtio::Repr, Vec<u8>) {
    let payload = (usize::from(u16::MAX) - HDR_LEN) / mss * mss;
    let mut p = vec![0u8; HDR_LEN + payload];
    ipv4::Repr {
        src_addr: Ipv4Addr::new(100, 96, 1, 2),
        dst_addr: Ipv4Addr::new(100, 96, 2, 3),
        protocol: IpProtocol::Tcp,
        payload_len: p.len() - 20,
        ttl: 64,
        dscp_ecn: 0,
        ident: 1,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut p[..]));
    let l4_len = (p.len() - 20) as u16;
    let mut t = tcp::Packet::new_unchecked(&mut p[20..]);
    t.set_src_port(40000);
    t.set_dst_port(5201);
    t.set_seq_number(1);
    t.set_ack_number(1);
    t.set_header_len(HDR_LEN - 20);
    t.set_flags(tcp::FLAG_ACK | tcp::FLAG_PSH);
    t.set_window(502);
    t.options_mut()
        .copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    for (i, b) in t.payload_mut().iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    let (src, dst) = (Ipv4Addr::new(100, 96, 1, 2), Ipv4Addr::new(100, 96, 2, 3));
    t.set_checksum(checksum::pseudo_header_v4(src, dst, 6, l4_len));
    let vnet = virtio::Repr {
        flags: virtio::FLAG_NEEDS_CSUM,
        gso_type: GsoType::TcpV4,
        ecn: false,
        hdr_len: HDR_LEN as u16,
        gso_size: mss as u16,
        csum_start: 20,
        csum_offset: 16,
    };
    (vnet, p)
}

fn bench(c: &mut Criterion) {
    for mss in [1398usize, 1448] {
        let (vnet, sp) = super_packet(mss);
        let split = Split::new(&vnet, &sp).expect("valid super-packet");
        let stride = split.stride();
        let count = split.count();
        // Every segment in its own slot of one batch buffer, as the worker sends.
        let mut out = vec![0u8; count * stride];
        let bytes: usize = (0..count).map(|i| split.segment_len(i)).sum();

        let mut g = c.benchmark_group("offload/64KiB");
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_with_input(BenchmarkId::new("split", mss), &sp, |b, sp| {
            b.iter(|| {
                let split = Split::new(&vnet, black_box(sp)).expect("valid");
                let mut n = 0;
                for (i, slot) in out.chunks_mut(stride).enumerate() {
                    n += split.write(i, slot);
                }
                black_box(n)
            })
        });

        // The gathered send's work: only each segment's headers are written (the
        // checksum still reads the payload), beside the super-packet.
        let mut headers = vec![0u8; count * 128];
        g.bench_with_input(BenchmarkId::new("gather", mss), &sp, |b, sp| {
            b.iter(|| {
                let split = Split::new(&vnet, black_box(sp)).expect("valid");
                let mut n = 0;
                for (i, slot) in headers.chunks_mut(128).enumerate() {
                    n += split.write_header(i, slot) + split.payload_range(i).len();
                }
                black_box(n)
            })
        });
        g.bench_with_input(BenchmarkId::new("gather-partial", mss), &sp, |b, sp| {
            b.iter(|| {
                let split = Split::new(&vnet, black_box(sp))
                    .expect("valid")
                    .leave_partial(true);
                let mut n = 0;
                for (i, slot) in headers.chunks_mut(128).enumerate() {
                    n += split.write_header(i, slot) + split.payload_range(i).len();
                }
                black_box(n)
            })
        });

        // The segments as received: one buffer, a segment every `stride` bytes.
        let segments: Vec<(&[u8], Loc)> = out
            .chunks(stride)
            .enumerate()
            .map(|(i, s)| {
                let at = Loc {
                    buffer: 0,
                    offset: (i * stride) as u32,
                };
                (&s[..split.segment_len(i)], at)
            })
            .collect();
        let mut co = Coalescer::new();
        let mut emitted = 0;
        for &(s, at) in &segments {
            co.push(s, at, &mut |_| emitted += 1);
        }
        co.flush(&mut |_| emitted += 1);
        assert_eq!(emitted, 1, "the segments coalesce into one super-packet");
        // Each frame is resolved into the parts of its write, as the worker does.
        g.bench_with_input(
            BenchmarkId::new("coalesce", mss),
            &segments,
            |b, segments| {
                b.iter(|| {
                    let mut len = 0;
                    let mut emit = |f: Frame<'_>| {
                        len += f.head.len();
                        for p in f.pieces {
                            len += black_box(&out[p.range()]).len();
                        }
                    };
                    for &(s, at) in segments {
                        co.push(black_box(s), at, &mut emit);
                    }
                    co.flush(&mut emit);
                    black_box(len)
                })
            },
        );
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
