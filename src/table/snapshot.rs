//! What readers look packets up in: [`Peer`] (one lease as the data path needs
//! it), the immutable [`Snapshot`] of every lease, and the [`SnapshotBuilder`] that
//! collects leases and builds the lookup structures for a snapshot.
//!
//! A destination is looked up first in its family's indexed path, when the snapshot
//! has one, and in the general LPM only when the slot defers; the slots are derived
//! from the LPM's intervals, so both paths give the same answer. The outer source of
//! a datagram is found in two maps, IPv4 and IPv6 public address → peer. Every
//! structure holds a peer's position in `peers`, and position is recency: the later
//! insert wins every conflict.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::Ipv4Net;

use super::bits::DEFER;
use super::hash::FoldState;
use super::index::Indexed;
use super::intervals::{flatten, Span};
use super::lpm::Lpm;
use crate::config::{BackendType, SubnetKey};
use crate::wire::MacAddr;

/// One lease as the data path needs it: the subnets it owns and how to reach it.
#[derive(Clone, Debug, PartialEq)]
pub struct Peer {
    /// The subnets the lease owns; also the table's key for the lease.
    pub key: SubnetKey,
    /// The peer's public (outer) IPv4 address (`PublicIP`).
    pub public_ip: Ipv4Addr,
    /// The peer's public IPv6 address (`PublicIPv6`), for an IPv6 underlay.
    pub public_ipv6: Option<Ipv6Addr>,
    /// The peer's VTEP MAC (`VtepMAC`), for the vxlan backend: the inner
    /// destination of frames sent over the IPv4 underlay.
    pub vtep_mac: Option<MacAddr>,
    /// The MAC of the peer's IPv6 VTEP (`BackendV6Data.VtepMAC`): the inner
    /// destination of vxlan frames sent over the IPv6 underlay.
    pub vtep_mac_v6: Option<MacAddr>,
    /// The backend the lease was made for.
    pub backend: BackendType,
    /// The peer takes inner checksums left partial (a ringlay node that said so:
    /// [`Features::partial_csum`](crate::config::Features)); segments to it
    /// are sent without completing them.
    pub partial_csum: bool,
}

impl Peer {
    /// True if `addr` is inside one of the peer's subnets: the anti-spoofing check on
    /// the inner source of a datagram received from this peer.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.key.v4.is_some_and(|n| n.contains(&a)),
            IpAddr::V6(a) => self.key.v6.is_some_and(|n| n.contains(&a)),
        }
    }
}

/// An immutable, complete view of every lease: what readers look packets up in.
pub struct Snapshot {
    /// Set once by `Table::publish`, before the snapshot is shared.
    pub(super) generation: u64,
    geometry: Option<(Ipv4Net, u8)>,
    peers: Box<[Peer]>,
    // Visible to the rest of `table` only so the index and lpm tests can inspect them.
    pub(super) index4: Option<Indexed<u32>>,
    pub(super) lpm4: Lpm<u32>,
    pub(super) index6: Option<Indexed<u128>>,
    lpm6: Lpm<u128>,
    by_ip4: HashMap<u32, u32, FoldState>,
    by_ip6: HashMap<u128, u32, FoldState>,
}

impl Snapshot {
    /// The longest-prefix-match peer for an inner IPv4 destination, if any.
    #[inline]
    pub fn lookup_v4(&self, dst: Ipv4Addr) -> Option<&Peer> {
        let a = u32::from(dst);
        let mut i = self.index4.as_ref().map_or(DEFER, |ix| ix.get(a));
        if i == DEFER {
            i = self.lpm4.lookup(a);
        }
        self.peers.get(i as usize)
    }

    /// The longest-prefix-match peer for an inner IPv6 destination, if any.
    #[inline]
    pub fn lookup_v6(&self, dst: Ipv6Addr) -> Option<&Peer> {
        let a = u128::from(dst);
        let mut i = self.index6.as_ref().map_or(DEFER, |ix| ix.get(a));
        if i == DEFER {
            i = self.lpm6.lookup(a);
        }
        self.peers.get(i as usize)
    }

    /// The longest-prefix-match peer for an inner destination of either family.
    #[inline]
    pub fn lookup(&self, dst: IpAddr) -> Option<&Peer> {
        match dst {
            IpAddr::V4(a) => self.lookup_v4(a),
            IpAddr::V6(a) => self.lookup_v6(a),
        }
    }

    /// The peer whose public address is `ip` (the outer source of a received
    /// datagram). An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack
    /// socket reports) is looked up as the IPv4 address.
    #[inline]
    pub fn by_public_ip(&self, ip: IpAddr) -> Option<&Peer> {
        let i = match ip {
            IpAddr::V4(a) => self.by_ip4.get(&u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.by_ip4.get(&u32::from(v4)),
                None => self.by_ip6.get(&u128::from(a)),
            },
        }?;
        self.peers.get(*i as usize)
    }

    /// Every lease, in the order they were (last) inserted into the builder.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// The number of leases.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True if the snapshot holds no lease.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The generation [`Table::publish`] gave the snapshot (0 before publishing).
    ///
    /// [`Table::publish`]: super::Table::publish
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The `(network, subnet_len)` geometry the snapshot was built with.
    pub fn geometry(&self) -> Option<(Ipv4Net, u8)> {
        self.geometry
    }

    /// True if IPv4 lookups inside the network take the indexed path (the geometry
    /// was given, consistent, and at most [`MAX_INDEX_SLOTS`] subnets large).
    ///
    /// [`MAX_INDEX_SLOTS`]: super::MAX_INDEX_SLOTS
    pub fn is_indexed(&self) -> bool {
        self.index4.is_some()
    }

    /// True if IPv6 lookups take an indexed path. flannel has no IPv6 geometry
    /// setting, so the builder infers one: the most common IPv6 lease length inside
    /// the longest prefix those leases share, when the slot array is dense enough.
    pub fn is_indexed_v6(&self) -> bool {
        self.index6.is_some()
    }

    /// A builder holding this snapshot's geometry and leases, for the next snapshot.
    pub fn to_builder(&self) -> SnapshotBuilder {
        let mut b = SnapshotBuilder::with_capacity(self.geometry, self.peers.len());
        for p in self.peers.iter() {
            b.insert(p.clone());
        }
        b
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.generation)
            .field("geometry", &self.geometry)
            .field("peers", &self.peers.len())
            .field("indexed_v4", &self.index4.is_some())
            .field("indexed_v6", &self.index6.is_some())
            .field("v4_intervals", &self.lpm4.iv.len())
            .field("v6_intervals", &self.lpm6.iv.len())
            .finish()
    }
}

/// Collects leases and builds a [`Snapshot`].
#[derive(Debug)]
pub struct SnapshotBuilder {
    geometry: Option<(Ipv4Net, u8)>,
    /// Leases in insertion order; a replaced or removed lease leaves a `None`, so
    /// position is recency and breaks ties between conflicting leases.
    entries: Vec<Option<Peer>>,
    by_key: HashMap<SubnetKey, usize, FoldState>,
}

impl SnapshotBuilder {
    /// An empty builder. `geometry` is the cluster's `(Network, SubnetLen)`: when it
    /// is given and spans at most [`MAX_INDEX_SLOTS`] subnets, IPv4 lookups inside the
    /// network are one array load. Leases of other lengths or outside the network are
    /// still found (by the general path), just more slowly.
    ///
    /// [`MAX_INDEX_SLOTS`]: super::MAX_INDEX_SLOTS
    pub fn new(geometry: Option<(Ipv4Net, u8)>) -> SnapshotBuilder {
        SnapshotBuilder::with_capacity(geometry, 0)
    }

    /// An empty builder with room for `n` leases.
    pub fn with_capacity(geometry: Option<(Ipv4Net, u8)>, n: usize) -> SnapshotBuilder {
        let mut by_key = HashMap::with_hasher(FoldState::default());
        by_key.reserve(n);
        SnapshotBuilder {
            geometry,
            entries: Vec::with_capacity(n),
            by_key,
        }
    }

    /// Adds a lease; a lease with the same key is replaced (last wins) and returned.
    pub fn insert(&mut self, peer: Peer) -> Option<Peer> {
        let pos = self.entries.len();
        let old = self
            .by_key
            .insert(peer.key, pos)
            .and_then(|old| self.entries.get_mut(old).and_then(Option::take));
        self.entries.push(Some(peer));
        old
    }

    /// Removes the lease with key `key`, returning it.
    pub fn remove(&mut self, key: &SubnetKey) -> Option<Peer> {
        let pos = self.by_key.remove(key)?;
        self.entries.get_mut(pos).and_then(Option::take)
    }

    /// The number of leases held.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True if no lease is held.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Builds the snapshot (generation 0 until [`Table::publish`] numbers it).
    ///
    /// Cost: one sort of each family's prefixes, plus one pass over the index slots.
    ///
    /// [`Table::publish`]: super::Table::publish
    pub fn build(self) -> Snapshot {
        let peers: Box<[Peer]> = self.entries.into_iter().flatten().collect();
        // Peer indexes share the u32 space with the NONE and DEFER markers.
        assert!(
            peers.len() < DEFER as usize,
            "a snapshot holds fewer than 2^32 - 2 leases"
        );

        let mut spans4 = Vec::with_capacity(peers.len());
        let mut spans6 = Vec::new();
        for (i, p) in (0u32..).zip(peers.iter()) {
            if let Some(n) = p.key.v4 {
                spans4.push(Span::v4(n, i));
            }
            if let Some(n) = p.key.v6 {
                spans6.push(Span::v6(n, i));
            }
        }
        let lpm4 = Lpm::new(flatten(&mut spans4));
        let index4 = self.geometry.and_then(|(net, len)| {
            Indexed::new(u32::from(net.network()), net.prefix_len(), len, &lpm4.iv)
        });
        let lpm6 = Lpm::new(flatten(&mut spans6));
        let index6 = Indexed::infer(&spans6, &lpm6.iv);

        let mut by_ip4 = HashMap::with_capacity_and_hasher(peers.len(), FoldState::default());
        let mut by_ip6 = HashMap::with_hasher(FoldState::default());
        for (i, p) in (0u32..).zip(peers.iter()) {
            by_ip4.insert(u32::from(p.public_ip), i);
            if let Some(a) = p.public_ipv6 {
                by_ip6.insert(u128::from(a), i);
            }
        }

        Snapshot {
            generation: 0,
            geometry: self.geometry,
            peers,
            index4,
            lpm4,
            index6,
            lpm6,
            by_ip4,
            by_ip6,
        }
    }
}

#[cfg(test)]
mod tests {
    use ipnet::Ipv6Net;
    use proptest::prelude::*;

    use super::*;
    use crate::table::fixtures::*;

    #[test]
    fn exact_matches_indexed_and_general() {
        let peers = [
            peer4("10.244.1.0/24", "192.0.2.1"),
            peer4("10.244.2.0/24", "192.0.2.2"),
            peer4("10.244.255.0/24", "192.0.2.3"),
        ];
        for geometry in [cluster(), None] {
            let s = build(geometry, &peers);
            assert_eq!(s.is_indexed(), geometry.is_some());
            for (addr, want) in [
                ("10.244.1.0", Some("10.244.1.0/24")),
                ("10.244.1.255", Some("10.244.1.0/24")),
                ("10.244.2.77", Some("10.244.2.0/24")),
                ("10.244.255.255", Some("10.244.255.0/24")),
                ("10.244.0.1", None),
                ("10.244.3.1", None),
                ("10.243.255.255", None),
                ("10.245.0.0", None),
                ("0.0.0.0", None),
                ("255.255.255.255", None),
            ] {
                assert_eq!(
                    v4_net_of(s.lookup_v4(v4(addr))),
                    want.map(net4),
                    "{addr} with geometry {geometry:?}"
                );
            }
        }
    }

    #[test]
    fn nested_prefixes_take_the_longest() {
        let peers = [
            peer4("10.244.0.0/16", "192.0.2.1"),
            peer4("10.244.5.0/24", "192.0.2.2"),
            peer4("10.244.5.128/25", "192.0.2.3"),
            peer4("10.244.5.200/32", "192.0.2.4"),
            peer4("10.0.0.0/8", "192.0.2.5"),
        ];
        for geometry in [cluster(), None] {
            let s = build(geometry, &peers);
            for (addr, want) in [
                ("10.244.9.9", "10.244.0.0/16"),
                ("10.244.5.1", "10.244.5.0/24"),
                ("10.244.5.127", "10.244.5.0/24"),
                ("10.244.5.128", "10.244.5.128/25"),
                ("10.244.5.199", "10.244.5.128/25"),
                ("10.244.5.200", "10.244.5.200/32"),
                ("10.244.5.201", "10.244.5.128/25"),
                ("10.244.5.255", "10.244.5.128/25"),
                ("10.244.6.0", "10.244.0.0/16"),
                ("10.1.2.3", "10.0.0.0/8"),
                ("10.245.0.0", "10.0.0.0/8"),
            ] {
                assert_eq!(
                    v4_net_of(s.lookup_v4(v4(addr))),
                    Some(net4(want)),
                    "{addr} with geometry {geometry:?}"
                );
            }
            assert_eq!(s.lookup_v4(v4("11.0.0.0")), None);
        }
    }

    #[test]
    fn default_routes_catch_everything_else() {
        let peers = [
            peer4("0.0.0.0/0", "192.0.2.1"),
            peer4("10.244.1.0/24", "192.0.2.2"),
            peer6("::/0", "192.0.2.3"),
            peer6("fd00:1::/64", "192.0.2.4"),
        ];
        for geometry in [cluster(), None] {
            let s = build(geometry, &peers);
            assert_eq!(
                v4_net_of(s.lookup_v4(v4("10.244.1.9"))),
                Some(net4("10.244.1.0/24"))
            );
            for a in ["10.244.2.1", "0.0.0.0", "255.255.255.255", "8.8.8.8"] {
                assert_eq!(
                    v4_net_of(s.lookup_v4(v4(a))),
                    Some(net4("0.0.0.0/0")),
                    "{a}"
                );
            }
            assert_eq!(
                v6_net_of(s.lookup_v6(v6("fd00:1::5"))),
                Some(net6("fd00:1::/64"))
            );
            for a in ["::", "fd00:2::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"] {
                assert_eq!(v6_net_of(s.lookup_v6(v6(a))), Some(net6("::/0")), "{a}");
            }
        }
    }

    #[test]
    fn empty_and_outside_everything() {
        let s = SnapshotBuilder::new(cluster()).build();
        assert!(s.is_empty());
        assert_eq!(s.len(), 0);
        assert_eq!(s.lookup(IpAddr::V4(v4("10.244.1.1"))), None);
        assert_eq!(s.lookup(IpAddr::V6(v6("fd00::1"))), None);
        assert_eq!(s.by_public_ip(IpAddr::V4(v4("192.0.2.1"))), None);

        let s = build(cluster(), &[peer4("10.244.1.0/24", "192.0.2.1")]);
        for a in [
            "10.244.0.255",
            "10.244.2.0",
            "172.16.0.1",
            "255.255.255.255",
        ] {
            assert_eq!(s.lookup_v4(v4(a)), None, "{a}");
        }
        assert_eq!(s.lookup_v6(v6("::ffff:10.244.1.1")), None);
    }

    #[test]
    fn ipv6_longest_prefix() {
        let peers = [
            peer6("fd00:10::/48", "192.0.2.1"),
            peer6("fd00:10:0:1::/64", "192.0.2.2"),
            peer6("fd00:10:0:1::80/121", "192.0.2.3"),
            peer6("fd00:10:0:2::/64", "192.0.2.4"),
            peer6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124", "192.0.2.5"),
        ];
        let s = build(None, &peers);
        for (addr, want) in [
            ("fd00:10::1", Some("fd00:10::/48")),
            ("fd00:10:0:1::1", Some("fd00:10:0:1::/64")),
            ("fd00:10:0:1::80", Some("fd00:10:0:1::80/121")),
            ("fd00:10:0:1::ff", Some("fd00:10:0:1::80/121")),
            ("fd00:10:0:1::100", Some("fd00:10:0:1::/64")),
            ("fd00:10:0:2:ffff:ffff:ffff:ffff", Some("fd00:10:0:2::/64")),
            ("fd00:10:0:3::", Some("fd00:10::/48")),
            ("fd00:11::", None),
            ("::", None),
            (
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                Some("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124"),
            ),
        ] {
            assert_eq!(v6_net_of(s.lookup_v6(v6(addr))), want.map(net6), "{addr}");
        }
    }

    #[test]
    fn duplicate_key_last_wins_and_remove() {
        let mut b = SnapshotBuilder::new(cluster());
        assert!(b.insert(peer4("10.244.1.0/24", "192.0.2.1")).is_none());
        b.insert(peer4("10.244.2.0/24", "192.0.2.2"));
        let old = b.insert(peer4("10.244.1.0/24", "192.0.2.9"));
        assert_eq!(old.map(|p| p.public_ip), Some(v4("192.0.2.1")));
        assert_eq!(b.len(), 2);
        let gone = b.remove(&peer4("10.244.2.0/24", "0.0.0.0").key);
        assert_eq!(gone.map(|p| p.public_ip), Some(v4("192.0.2.2")));
        assert!(b.remove(&peer4("10.244.2.0/24", "0.0.0.0").key).is_none());
        let s = b.build();
        assert_eq!(s.len(), 1);
        let p = s.lookup_v4(v4("10.244.1.1")).expect("leased");
        assert_eq!(p.public_ip, v4("192.0.2.9"));
        assert_eq!(s.lookup_v4(v4("10.244.2.1")), None);
        assert_eq!(s.by_public_ip(IpAddr::V4(v4("192.0.2.1"))), None);
        assert_eq!(s.by_public_ip(IpAddr::V4(v4("192.0.2.2"))), None);
        assert_eq!(s.peers().len(), 1);
    }

    #[test]
    fn conflicting_leases_later_insert_wins() {
        // Same IPv4 subnet, different keys (dual-stack halves differ), same public IP.
        let mut a = peer4("10.244.1.0/24", "192.0.2.1");
        a.key.v6 = Some(net6("fd00:1::/64"));
        let mut b = peer4("10.244.1.0/24", "192.0.2.1");
        b.key.v6 = Some(net6("fd00:2::/64"));
        for geometry in [cluster(), None] {
            let s = build(geometry, &[a.clone(), b.clone()]);
            assert_eq!(s.len(), 2);
            assert_eq!(s.lookup_v4(v4("10.244.1.1")), Some(&b));
            assert_eq!(s.by_public_ip(IpAddr::V4(v4("192.0.2.1"))), Some(&b));
            assert_eq!(s.lookup_v6(v6("fd00:1::1")), Some(&a));
            let s = build(geometry, &[b.clone(), a.clone()]);
            assert_eq!(s.lookup_v4(v4("10.244.1.1")), Some(&a));
        }
    }

    #[test]
    fn by_public_ip_both_families() {
        let mut p = peer4("10.244.1.0/24", "192.0.2.1");
        p.public_ipv6 = Some(v6("2001:db8::1"));
        let q = peer4("10.244.2.0/24", "192.0.2.2");
        let s = build(cluster(), &[p.clone(), q.clone()]);
        assert_eq!(s.by_public_ip(IpAddr::V4(v4("192.0.2.1"))), Some(&p));
        assert_eq!(s.by_public_ip(IpAddr::V4(v4("192.0.2.2"))), Some(&q));
        assert_eq!(s.by_public_ip(IpAddr::V6(v6("2001:db8::1"))), Some(&p));
        assert_eq!(s.by_public_ip(IpAddr::V6(v6("::ffff:192.0.2.2"))), Some(&q));
        assert_eq!(s.by_public_ip(IpAddr::V4(v4("192.0.2.3"))), None);
        assert_eq!(s.by_public_ip(IpAddr::V6(v6("2001:db8::2"))), None);
        // The anti-spoofing check a worker makes after this lookup.
        assert!(p.contains(IpAddr::V4(v4("10.244.1.200"))));
        assert!(!p.contains(IpAddr::V4(v4("10.244.2.1"))));
        assert!(!p.contains(IpAddr::V6(v6("fd00::1"))));
    }

    proptest! {
        #[test]
        fn v6_matches_reference(
            nets in proptest::collection::vec(
                (any::<u32>(), 0u8..=128).prop_map(|(low, len)| {
                    // Vary bits near every length so prefixes of all sizes collide.
                    let spread = u128::from(low) << (low % 97);
                    Ipv6Net::new(Ipv6Addr::from((0xfd00u128 << 112) | spread), len)
                        .expect("length at most 128")
                        .trunc()
                }),
                0..40,
            ),
            addrs in proptest::collection::vec(any::<u128>(), 0..32),
        ) {
            let inserted: Vec<Peer> = nets
                .iter()
                .map(|n| Peer { key: SubnetKey { v4: None, v6: Some(*n) }, ..peer4("0.0.0.0/0", "192.0.2.1") })
                .collect();
            let s = build(None, &inserted);
            let peers = s.peers().to_vec();
            let mut probes: Vec<u128> = vec![0, u128::MAX];
            for n in &nets {
                let (b, e) = (u128::from(n.network()), u128::from(n.broadcast()));
                probes.extend([b, e, b.wrapping_sub(1), e.wrapping_add(1), b | (e >> 1 & !b)]);
            }
            for a in addrs.into_iter().chain(probes) {
                let a = Ipv6Addr::from(a);
                prop_assert_eq!(v6_net_of(s.lookup_v6(a)).map(|n| n.trunc()), naive_v6(&peers, a), "{}", a);
            }
        }
    }
}
