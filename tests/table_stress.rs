//! The table's publish/read protocol under contention: eight readers look packets up
//! while one writer publishes 10,000 snapshots.
//!
//! Every entry is self-validating: its VtepMAC, public addresses and subnets all
//! encode the generation it was built for and which subnet it is, and which subnets
//! a generation holds is a pure function of the generation. So a reader can check,
//! for every lookup, that the entry is whole (all fields agree), that it belongs to
//! a generation that was published and is not older than one it already saw, that
//! its subnet holds the looked-up address, and, for a snapshot held across a batch,
//! that every answer is exactly what that generation must answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use ipnet::{Ipv4Net, Ipv6Net};
use ringlay::config::{BackendType, SubnetKey};
use ringlay::table::{Peer, Snapshot, SnapshotBuilder, Table};
use ringlay::wire::MacAddr;

const READERS: usize = 8;
const GENERATIONS: u64 = 10_000;
/// Subnets `10.0.x.0/24` for x in `0..SUBNETS`, inside network 10.0.0.0/16.
const SUBNETS: u8 = 48;
/// Lookups a reader makes in one held snapshot.
const BATCH: usize = 64;

/// A cheap deterministic mix of (generation, subnet, kind).
fn mix(g: u64, x: u8, kind: u8) -> u64 {
    let mut h = g
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(u64::from(x) << 8 | u64::from(kind));
    h ^= h >> 31;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 29)
}

/// Whether generation `g` holds lease `10.0.x.0/24` (kind 0) or the narrower route
/// `10.0.x.64/26` (kind 1), which splits the lease's index slot. Generation 0 is
/// the table's initial, empty snapshot.
fn present(g: u64, x: u8, kind: u8) -> bool {
    match kind {
        _ if g == 0 => false,
        0 => !mix(g, x, 0).is_multiple_of(4),
        _ => mix(g, x, 1).is_multiple_of(8),
    }
}

fn subnet4(x: u8, kind: u8) -> Ipv4Net {
    let net = if kind == 0 {
        Ipv4Net::new(Ipv4Addr::new(10, 0, x, 0), 24)
    } else {
        Ipv4Net::new(Ipv4Addr::new(10, 0, x, 64), 26)
    };
    net.expect("valid prefix length")
}

fn subnet6(x: u8) -> Ipv6Net {
    Ipv6Net::new(Ipv6Addr::new(0xfd00, 0, 0, u16::from(x), 0, 0, 0, 0), 64)
        .expect("valid prefix length")
}

fn public4(x: u8, kind: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 16, kind, x)
}

fn public6(g: u64, x: u8, kind: u8) -> Ipv6Addr {
    Ipv6Addr::from(
        0x2001_0db8u128 << 96 | u128::from(g) << 16 | u128::from(kind) << 8 | u128::from(x),
    )
}

fn peer(g: u64, x: u8, kind: u8) -> Peer {
    let gb = u32::try_from(g)
        .expect("generation fits in 32 bits")
        .to_be_bytes();
    Peer {
        key: SubnetKey {
            v4: Some(subnet4(x, kind)),
            v6: (kind == 0).then(|| subnet6(x)),
        },
        public_ip: public4(x, kind),
        public_ipv6: Some(public6(g, x, kind)),
        vtep_mac: Some(MacAddr([gb[0], gb[1], gb[2], gb[3], x, kind])),
        vtep_mac_v6: None,
        backend: if kind == 0 {
            BackendType::Vxlan
        } else {
            BackendType::Udp
        },
        partial_csum: kind == 0,
    }
}

fn snapshot_for(g: u64) -> Snapshot {
    let network: Ipv4Net = "10.0.0.0/16".parse().expect("valid network");
    let mut b = SnapshotBuilder::new(Some((network, 24)));
    for x in 0..SUBNETS {
        for kind in 0..2 {
            if present(g, x, kind) {
                b.insert(peer(g, x, kind));
            }
        }
    }
    b.build()
}

/// Checks an entry is whole and decodes the (generation, subnet, kind) it encodes.
fn decode(p: &Peer) -> (u64, u8, u8) {
    let mac = p.vtep_mac.expect("every entry has a VtepMAC").octets();
    let g = u64::from(u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]));
    let (x, kind) = (mac[4], mac[5]);
    assert!(kind < 2 && x < SUBNETS, "torn entry {p:?}");
    assert_eq!(*p, peer(g, x, kind), "torn entry");
    assert!(
        present(g, x, kind),
        "entry {p:?} was never in generation {g}"
    );
    (g, x, kind)
}

/// What generation `g` must answer for 10.0.x.y: (subnet, kind) or nothing.
fn expected(g: u64, x: u8, y: u8) -> Option<(u8, u8)> {
    if x >= SUBNETS {
        return None;
    }
    if (64..128).contains(&y) && present(g, x, 1) {
        return Some((x, 1));
    }
    present(g, x, 0).then_some((x, 0))
}

/// A small xorshift generator: each reader probes different addresses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Per-reader progress shared with the main thread.
struct Seen {
    last: u64,
    batches: u64,
    lookups: u64,
}

impl Seen {
    /// A generation seen now must be published and not older than the last one.
    fn advance(&mut self, g: u64, announced: &AtomicU64) {
        assert!(
            g >= self.last,
            "generation went back from {} to {g}",
            self.last
        );
        assert!(
            g <= announced.load(Ordering::Acquire),
            "generation {g} not published yet"
        );
        self.last = g;
    }
}

/// Holds one snapshot for a batch: every answer must be exactly generation `g`'s.
fn check_batch(snap: &Snapshot, rng: &mut Rng, seen: &mut Seen, announced: &AtomicU64) {
    let g = snap.generation();
    seen.advance(g, announced);
    let want_len = (0..SUBNETS)
        .map(|x| usize::from(present(g, x, 0)) + usize::from(present(g, x, 1)))
        .sum::<usize>();
    assert_eq!(
        snap.len(),
        want_len,
        "generation {g} has the wrong lease count"
    );
    for _ in 0..BATCH {
        let r = rng.next();
        let (x, y) = ((r % u64::from(SUBNETS + 4)) as u8, (r >> 8) as u8);
        let dst = Ipv4Addr::new(10, 0, x, y);
        let got = snap.lookup_v4(dst).map(decode);
        assert_eq!(
            got.map(|(pg, px, pk)| (pg, (px, pk))),
            expected(g, x, y).map(|e| (g, e)),
            "generation {g}, {dst}"
        );
        if let Some(p) = snap.lookup_v4(dst) {
            assert!(p.contains(IpAddr::V4(dst)));
        }

        let dst6 = Ipv6Addr::new(0xfd00, 0, 0, u16::from(x), 0, 0, 0, u16::from(y));
        let got6 = snap.lookup_v6(dst6).map(decode);
        let want6 = (x < SUBNETS && present(g, x, 0)).then_some((g, x, 0));
        assert_eq!(got6, want6, "generation {g}, {dst6}");

        let kind = (r >> 16) as u8 & 1;
        let by_ip = snap.by_public_ip(IpAddr::V4(public4(x, kind))).map(decode);
        let want_ip = (x < SUBNETS && present(g, x, kind)).then_some((g, x, kind));
        assert_eq!(
            by_ip,
            want_ip,
            "generation {g}, public {}",
            public4(x, kind)
        );
        let by_ip6 = snap
            .by_public_ip(IpAddr::V6(public6(g, x, kind)))
            .map(decode);
        assert_eq!(
            by_ip6,
            want_ip,
            "generation {g}, public {}",
            public6(g, x, kind)
        );
    }
    seen.batches += 1;
    seen.lookups += 4 * BATCH as u64;
}

#[test]
fn readers_never_see_torn_stale_or_freed_entries() {
    let table = Table::new();
    let announced = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(READERS + 1));
    let began = Instant::now();

    let readers: Vec<_> = (0..READERS)
        .map(|id| {
            let table = table.clone();
            let (announced, done, start) = (announced.clone(), done.clone(), start.clone());
            thread::spawn(move || {
                let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (id as u64 + 1) << 32);
                let mut seen = Seen {
                    last: 0,
                    batches: 0,
                    lookups: 0,
                };
                let mut reader = table.reader();
                // One snapshot held across the whole run, as a stalled worker would:
                // it must stay intact however many publishes pass.
                let pinned = table.load_full();
                start.wait();
                while !done.load(Ordering::Acquire) {
                    // The worker's way: one cached snapshot per batch.
                    check_batch(reader.snapshot(), &mut rng, &mut seen, &announced);
                    // Unheld lookups: each through a fresh guard.
                    for _ in 0..8 {
                        let r = rng.next();
                        let (x, y) = ((r % u64::from(SUBNETS)) as u8, (r >> 8) as u8);
                        let dst = Ipv4Addr::new(10, 0, x, y);
                        let guard = table.load();
                        seen.advance(guard.generation(), &announced);
                        if let Some(p) = guard.lookup_v4(dst) {
                            let (g, px, pk) = decode(p);
                            assert_eq!(g, guard.generation());
                            assert_eq!(expected(g, x, y), Some((px, pk)));
                            assert!(p.contains(IpAddr::V4(dst)));
                        }
                        seen.lookups += 1;
                    }
                    if seen.batches.is_multiple_of(4) {
                        // Give the writer a core: the readers outnumber them 4:1.
                        thread::yield_now();
                    }
                }
                // The pinned snapshot (generation 0 or later) is still whole.
                let mut frozen = Seen {
                    last: 0,
                    batches: 0,
                    lookups: 0,
                };
                check_batch(&pinned, &mut rng, &mut frozen, &announced);
                seen
            })
        })
        .collect();

    start.wait();
    for g in 1..=GENERATIONS {
        let snap = snapshot_for(g);
        // Announce before publishing: a reader may see the snapshot before the
        // publish call returns, never before this store.
        announced.store(g, Ordering::Release);
        assert_eq!(table.publish(snap), g);
    }
    // Let every reader finish a few batches on the final generation.
    thread::sleep(Duration::from_millis(20));
    done.store(true, Ordering::Release);

    let mut total = 0;
    for r in readers {
        let seen = r.join().expect("reader thread panicked");
        assert!(seen.batches > 0, "a reader never ran");
        assert!(seen.last <= GENERATIONS);
        total += seen.lookups;
    }
    assert_eq!(table.load().generation(), GENERATIONS);
    // Every reader is gone, so every replaced snapshot has been freed by the writer.
    assert_eq!(table.reclaim(), 0);
    eprintln!(
        "{READERS} readers, {GENERATIONS} snapshots, {total} checked lookups in {:?}",
        began.elapsed()
    );
}
