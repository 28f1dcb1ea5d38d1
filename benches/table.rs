//! Criterion benches for `table`: lookups with a held snapshot (indexed IPv4 path at
//! 1, 1,024 and 65,536 leases; the general path with a million mixed prefixes;
//! IPv6; public address), and the writer's cost to build and publish.
//!
//! Each lookup iteration walks a precomputed list of [`PROBES`] addresses, so the
//! time per lookup is the reported time divided by [`PROBES`] (criterion's
//! `thrpt` line gives it as lookups per second).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use ipnet::{Ipv4Net, Ipv6Net};
use ringlay::config::{BackendType, SubnetKey};
use ringlay::table::{Peer, SnapshotBuilder, Table};
use ringlay::wire::MacAddr;

/// Addresses looked up per iteration.
const PROBES: usize = 4096;

/// splitmix64: cheap, deterministic probe addresses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn peer(v4: Option<Ipv4Net>, v6: Option<Ipv6Net>, i: u32) -> Peer {
    let b = i.to_be_bytes();
    Peer {
        key: SubnetKey { v4, v6 },
        // 100.64.0.0/10 and up: distinct per lease.
        public_ip: Ipv4Addr::from(0x6440_0000u32.wrapping_add(i)),
        public_ipv6: None,
        vtep_mac: Some(MacAddr([0x0e, 0, b[0], b[1], b[2], b[3]])),
        vtep_mac_v6: None,
        backend: BackendType::Vxlan,
        partial_csum: false,
    }
}

fn network() -> Ipv4Net {
    "10.0.0.0/8".parse().expect("valid network")
}

/// `n` /24 leases spread evenly over 10.0.0.0/8.
fn cluster_peers(n: u32) -> Vec<Peer> {
    let step = (1u32 << 16) / n;
    (0..n)
        .map(|i| {
            let net = Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | (i * step) << 8), 24)
                .expect("valid prefix length");
            peer(Some(net), None, i)
        })
        .collect()
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

fn lookup_v4_indexed(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup_v4_indexed");
    g.throughput(Throughput::Elements(PROBES as u64));
    let mut rng = Rng(1);
    let probes: Vec<Ipv4Addr> = (0..PROBES)
        .map(|_| Ipv4Addr::from(0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff)))
        .collect();
    for n in [1u32, 1024, 65536] {
        let table = Table::new();
        let mut b = SnapshotBuilder::new(Some((network(), 24)));
        for p in cluster_peers(n) {
            b.insert(p);
        }
        table.publish(b.build());
        let mut reader = table.reader();
        let snap = reader.snapshot();
        assert!(snap.is_indexed());
        g.bench_with_input(BenchmarkId::from_parameter(n), &probes, |bch, probes| {
            bch.iter(|| {
                for &a in probes {
                    black_box(snap.lookup_v4(a));
                }
            })
        });
    }
    g.finish();
}

fn by_public_ip(c: &mut Criterion) {
    let mut g = c.benchmark_group("by_public_ip");
    g.throughput(Throughput::Elements(PROBES as u64));
    let n = 65536u32;
    let mut b = SnapshotBuilder::new(Some((network(), 24)));
    for p in cluster_peers(n) {
        b.insert(p);
    }
    let snap = b.build();
    let mut rng = Rng(2);
    // Mostly known peers, one in eight unknown (a spoofed or stale sender).
    let probes: Vec<IpAddr> = (0..PROBES)
        .map(|_| {
            let r = rng.next() as u32;
            let i = if r.is_multiple_of(8) {
                n + (r >> 8) % n
            } else {
                (r >> 8) % n
            };
            IpAddr::V4(Ipv4Addr::from(0x6440_0000u32 + i))
        })
        .collect();
    g.bench_with_input(BenchmarkId::from_parameter(n), &probes, |bch, probes| {
        bch.iter(|| {
            for &a in probes {
                black_box(snap.by_public_ip(a));
            }
        })
    });
    g.finish();
}

/// A million prefixes with a BGP-like mix of lengths (mostly /24, some much shorter
/// and longer), nesting freely.
fn mixed_prefixes(n: usize) -> Vec<Ipv4Net> {
    let mut rng = Rng(3);
    (0..n)
        .map(|_| {
            let r = rng.next();
            let len = match r % 100 {
                0..=59 => 24,
                60..=69 => 22 + (r >> 8) as u8 % 2,
                70..=79 => 16 + (r >> 8) as u8 % 6,
                80..=84 => 8 + (r >> 8) as u8 % 8,
                _ => 25 + (r >> 8) as u8 % 8,
            };
            Ipv4Net::new(Ipv4Addr::from((r >> 32) as u32), len)
                .expect("valid prefix length")
                .trunc()
        })
        .collect()
}

fn lpm_v4_1m(c: &mut Criterion) {
    let nets = mixed_prefixes(1_000_000);
    let peers: Vec<Peer> = (0u32..)
        .zip(&nets)
        .map(|(i, n)| peer(Some(*n), None, i))
        .collect();
    let mut g = c.benchmark_group("lpm_v4_1m");

    g.sample_size(10);
    g.throughput(Throughput::Elements(peers.len() as u64));
    g.bench_function("build", |bch| {
        bch.iter(|| {
            let mut b = SnapshotBuilder::with_capacity(None, peers.len());
            for p in &peers {
                b.insert(p.clone());
            }
            b.build()
        })
    });

    let mut b = SnapshotBuilder::with_capacity(None, peers.len());
    for p in &peers {
        b.insert(p.clone());
    }
    let snap = b.build();
    let mut rng = Rng(4);
    // Half uniformly random, half inside a random prefix (so nested answers count).
    let probes: Vec<Ipv4Addr> = (0..PROBES)
        .map(|i| {
            let r = rng.next();
            if i % 2 == 0 {
                Ipv4Addr::from(r as u32)
            } else {
                let n = nets[(r >> 32) as usize % nets.len()];
                let host = (r as u32) & !u32::from(n.netmask());
                Ipv4Addr::from(u32::from(n.network()) | host)
            }
        })
        .collect();
    g.sample_size(30);
    g.throughput(Throughput::Elements(PROBES as u64));
    g.bench_with_input("lookup", &probes, |bch, probes| {
        bch.iter(|| {
            for &a in probes {
                black_box(snap.lookup_v4(a));
            }
        })
    });
    g.finish();
}

/// 65,536 dual-stack leases whose /64s sit `spacing` /64s apart from fd00::/64.
fn v6_snapshot(n: u32, spacing: u32) -> ringlay::table::Snapshot {
    let mut b = SnapshotBuilder::new(None);
    for i in 0..n {
        let v6 = Ipv6Net::new(
            Ipv6Addr::from(0xfd00u128 << 112 | u128::from(i) << (64 + spacing)),
            64,
        )
        .expect("valid prefix length");
        let v4 =
            Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | i << 8), 24).expect("valid prefix length");
        b.insert(peer(Some(v4), Some(v6), i));
    }
    b.build()
}

fn lookup_v6(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup_v6");
    g.throughput(Throughput::Elements(PROBES as u64));
    let n = 65536u32;
    // Dense /64s in fd00::/48 (the inferred index), then spread so far apart that
    // no index pays off (the general path: binary search over the intervals).
    for (name, spacing) in [("indexed", 0u32), ("general", 16)] {
        let snap = v6_snapshot(n, spacing);
        assert_eq!(snap.is_indexed_v6(), spacing == 0);
        let mut rng = Rng(5);
        let probes: Vec<Ipv6Addr> = (0..PROBES)
            .map(|_| {
                let r = rng.next();
                let lease = u128::from(r as u32 % n) << (64 + spacing);
                Ipv6Addr::from(0xfd00u128 << 112 | lease | u128::from(r >> 32))
            })
            .collect();
        g.bench_with_input(BenchmarkId::new(name, n), &probes, |bch, probes| {
            bch.iter(|| {
                for &a in probes {
                    black_box(snap.lookup_v6(a));
                }
            })
        });
    }
    g.finish();
}

fn publish(c: &mut Criterion) {
    let mut g = c.benchmark_group("publish");
    g.sample_size(20);
    let n = 65536u32;
    let peers = cluster_peers(n);
    let table = Table::new();
    let mut reader = table.reader();
    g.bench_function(BenchmarkId::new("build_and_publish", n), |bch| {
        bch.iter(|| {
            let mut b = SnapshotBuilder::with_capacity(Some((network(), 24)), peers.len());
            for p in &peers {
                b.insert(p.clone());
            }
            table.publish(b.build())
        })
    });
    // What a worker pays per batch to pick up the current snapshot.
    g.bench_function("reader_snapshot", |bch| {
        bch.iter(|| black_box(reader.snapshot().generation()))
    });
    g.finish();
}

fn main() {
    let mut c = config().configure_from_args();
    lookup_v4_indexed(&mut c);
    by_public_ip(&mut c);
    lpm_v4_1m(&mut c);
    lookup_v6(&mut c);
    publish(&mut c);
    c.final_summary();
}
