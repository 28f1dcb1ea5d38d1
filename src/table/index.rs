//! The indexed path: one slot per lease-sized block of a network, so a lookup
//! inside the cluster network is one array load.
//!
//! * **IPv4.** flannel leases are all `SubnetLen` long inside one `Network`, so
//!   with the geometry `(network, subnet_len)` known the table keeps
//!   `slots[(addr - network) >> (32 - subnet_len)]`, one `u32` per possible lease
//!   (at most [`MAX_INDEX_SLOTS`]). A slot holds the peer index the longest-prefix
//!   match gives for *every* address of that block (leaf pushing), `NONE`, or
//!   `DEFER` when the block is split by a longer prefix (a route narrower than a
//!   lease); only then does the lookup fall through to the general path. The slots
//!   are derived from the general path's intervals, so both paths always agree.
//! * **IPv6.** flannel has no IPv6 geometry setting, so the builder infers one from
//!   the leases (most common length, inside the prefix they share) and builds the
//!   same slot array when it is dense enough.

use super::bits::Bits;
use super::bits::DEFER;
use super::intervals::Span;

/// The most slots an indexed path may have (`2^(subnet_len - network_len)`);
/// a larger geometry is served by the general path alone. 2^20 slots are 4 MiB.
pub const MAX_INDEX_SLOTS: usize = 1 << 20;

/// The indexed path: one slot per `subnet_len` block of a network (IPv4 from the
/// given geometry, IPv6 from the geometry its leases show).
pub(super) struct Indexed<K> {
    base: K,
    /// `BITS - subnet_len`: blocks are `2^shift` addresses.
    shift: u32,
    slots: Box<[u32]>,
}

impl<K: Bits> Indexed<K> {
    /// Derives the slots from the general path's intervals, so both paths agree:
    /// a block inside one interval takes its answer, a block split between
    /// intervals is `DEFER`. `None` for an inconsistent or too large geometry.
    pub(super) fn new(base: K, net_len: u8, subnet_len: u8, iv: &[(K, u32)]) -> Option<Indexed<K>> {
        if subnet_len < net_len || u32::from(subnet_len) > K::BITS {
            return None;
        }
        let bits = u32::from(subnet_len - net_len);
        if bits > MAX_INDEX_SLOTS.trailing_zeros() {
            return None;
        }
        let shift = K::BITS - u32::from(subnet_len);
        let base = base.mask(net_len);
        let mut i = iv.partition_point(|e| e.0 <= base).saturating_sub(1);
        let mut slots = Vec::with_capacity(1 << bits);
        for j in 0..1usize << bits {
            let (lo, hi) = base.block(j, shift);
            while iv.get(i + 1).is_some_and(|e| e.0 <= lo) {
                i += 1;
            }
            let split = iv.get(i + 1).is_some_and(|e| e.0 <= hi);
            slots.push(match iv.get(i) {
                Some(e) if !split => e.1,
                _ => DEFER,
            });
        }
        Some(Indexed {
            base,
            shift,
            slots: slots.into(),
        })
    }

    /// The slot's answer: a peer index, `NONE`, or `DEFER` (also for addresses
    /// outside the network).
    #[inline]
    pub(super) fn get(&self, a: K) -> u32 {
        // Wrapping: an address below the network becomes a huge offset, which
        // lands past the last slot and so outside the network too.
        let slot = a.wrapping_sub(self.base).slot(self.shift);
        self.slots.get(slot).copied().unwrap_or(DEFER)
    }

    /// For IPv6, where flannel has no geometry setting: the most common lease length
    /// inside the longest prefix all leases of that length share, when that gives a
    /// dense enough array (at least one lease per 16 slots, or at most 4096 slots).
    pub(super) fn infer(spans: &[Span<K>], iv: &[(K, u32)]) -> Option<Indexed<K>> {
        let mut counts = [0usize; 129];
        for s in spans {
            if let Some(c) = counts.get_mut(s.len as usize) {
                *c += 1;
            }
        }
        let (len, &count) = counts.iter().enumerate().rev().max_by_key(|&(_, c)| *c)?;
        let len = u8::try_from(len).ok()?;
        let mut same = spans.iter().filter(|s| s.len == len).map(|s| s.start);
        let first = same.next()?;
        let (lo, hi) = same.fold((first, first), |(lo, hi), s| (lo.min(s), hi.max(s)));
        let net_len = u8::try_from((lo.common_prefix(hi)).min(u32::from(len))).ok()?;
        let slots = 1usize.checked_shl(u32::from(len - net_len))?;
        if slots > (16 * count).max(4096) {
            return None;
        }
        Indexed::new(lo, net_len, len, iv)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use ipnet::Ipv6Net;
    use proptest::prelude::*;

    use super::*;
    use crate::config::SubnetKey;
    use crate::table::fixtures::*;
    use crate::table::Peer;

    #[test]
    fn indexed_slots_defer_to_longer_prefixes() {
        // A /26 route inside one lease's block splits that slot; its neighbours stay
        // direct, and a covering /12 answers the blocks no lease holds.
        let peers = [
            peer4("10.240.0.0/12", "192.0.2.1"),
            peer4("10.244.1.0/24", "192.0.2.2"),
            peer4("10.244.1.64/26", "192.0.2.3"),
        ];
        let s = build(cluster(), &peers);
        let ix = s.index4.as_ref().expect("geometry is valid");
        assert_eq!(ix.slots.len(), 256);
        assert_eq!(ix.slots[1], DEFER);
        assert_eq!(ix.slots[0], 0);
        assert_eq!(ix.slots[2], 0);
        assert_eq!(
            v4_net_of(s.lookup_v4(v4("10.244.1.63"))),
            Some(net4("10.244.1.0/24"))
        );
        assert_eq!(
            v4_net_of(s.lookup_v4(v4("10.244.1.64"))),
            Some(net4("10.244.1.64/26"))
        );
        assert_eq!(
            v4_net_of(s.lookup_v4(v4("10.244.1.128"))),
            Some(net4("10.244.1.0/24"))
        );
        assert_eq!(
            v4_net_of(s.lookup_v4(v4("10.244.7.1"))),
            Some(net4("10.240.0.0/12"))
        );
    }

    #[test]
    fn unusable_geometry_falls_back_to_the_general_path() {
        let peers = [peer4("10.0.1.0/24", "192.0.2.1")];
        for geometry in [
            (net4("10.0.0.0/16"), 8),  // subnet shorter than network
            (net4("10.0.0.0/16"), 33), // not a length
            (net4("10.0.0.0/8"), 32),  // 2^24 slots > MAX_INDEX_SLOTS
        ] {
            let s = build(Some(geometry), &peers);
            assert!(!s.is_indexed(), "{geometry:?}");
            assert_eq!(
                v4_net_of(s.lookup_v4(v4("10.0.1.1"))),
                Some(net4("10.0.1.0/24"))
            );
        }
        // Extremes that are usable: one slot covering everything, and /32 slots.
        let s = build(
            Some((net4("0.0.0.0/0"), 0)),
            &[peer4("0.0.0.0/0", "192.0.2.1")],
        );
        assert!(s.is_indexed());
        assert!(s.lookup_v4(v4("255.255.255.255")).is_some());
        let s = build(
            Some((net4("10.0.0.0/12"), 32)),
            &[peer4("10.0.0.7/32", "192.0.2.1")],
        );
        assert!(s.is_indexed());
        assert!(s.lookup_v4(v4("10.0.0.7")).is_some());
        assert!(s.lookup_v4(v4("10.0.0.8")).is_none());
        // A network written with host bits still indexes from its base.
        let s = build(Some((net4("10.0.0.9/16"), 24)), &peers);
        assert!(s.is_indexed());
        assert!(s.lookup_v4(v4("10.0.1.1")).is_some());
    }

    #[test]
    fn ipv6_geometry_is_inferred() {
        // flannel-style: /64 leases in fd00:10::/48, plus one odd /80 route.
        let mut peers: Vec<Peer> = (0..300u16)
            .map(|i| peer6(&format!("fd00:10:0:{:x}::/64", i * 7), "192.0.2.1"))
            .collect();
        peers.push(peer6("fd00:10:0:7:1::/80", "192.0.2.2"));
        let s = build(None, &peers);
        assert!(s.is_indexed_v6());
        let ix = s.index6.as_ref().expect("inferred");
        // 0 ..= 299 * 7 = 2093 spans 12 bits of the /64 numbers.
        assert_eq!(ix.slots.len(), 4096);
        assert_eq!(
            v6_net_of(s.lookup_v6(v6("fd00:10:0:7::1"))),
            Some(net6("fd00:10:0:7::/64"))
        );
        assert_eq!(
            v6_net_of(s.lookup_v6(v6("fd00:10:0:7:1::1"))),
            Some(net6("fd00:10:0:7:1::/80"))
        );
        assert_eq!(s.lookup_v6(v6("fd00:10:0:8::1")), None);
        assert_eq!(s.lookup_v6(v6("fd00:11::1")), None);
        // Two leases far apart would need a sparse array: binary search instead.
        let s = build(
            None,
            &[
                peer6("fd00::/64", "192.0.2.1"),
                peer6("fd00:0:ffff:ffff::/64", "192.0.2.2"),
            ],
        );
        assert!(!s.is_indexed_v6());
        assert!(s.lookup_v6(v6("fd00:0:ffff:ffff::9")).is_some());
    }

    fn addr4() -> impl Strategy<Value = u32> {
        prop_oneof![
            4 => any::<u16>().prop_map(|l| 0x0a00_0000 | u32::from(l)),
            1 => any::<u32>(),
        ]
    }

    proptest! {
        #[test]
        fn v4_matches_reference_on_both_paths(
            nets in proptest::collection::vec(prefix4(), 0..40),
            subnet_len in 16u8..=28,
            addrs in proptest::collection::vec(addr4(), 0..64),
        ) {
            let inserted = peers_from4(&nets);
            // Duplicate keys collapse to the last insert; the reference must see
            // the deduplicated, recency-ordered list the builder keeps.
            let indexed = build(Some((net4("10.0.0.0/16"), subnet_len)), &inserted);
            let general = build(None, &inserted);
            prop_assert!(indexed.is_indexed());
            let peers = indexed.peers().to_vec();
            prop_assert_eq!(&peers, &general.peers().to_vec());
            for a in addrs.into_iter().chain(edges4(&peers)) {
                let a = Ipv4Addr::from(a);
                let want = naive_v4(&peers, a);
                prop_assert_eq!(v4_net_of(indexed.lookup_v4(a)).map(|n| n.trunc()), want, "indexed {}", a);
                prop_assert_eq!(v4_net_of(general.lookup_v4(a)).map(|n| n.trunc()), want, "general {}", a);
                prop_assert_eq!(indexed.lookup_v4(a), general.lookup_v4(a));
            }
        }

        #[test]
        fn v6_indexed_matches_reference(
            leases in proptest::collection::hash_set(0u16..4096, 10..30),
            others in proptest::collection::vec((any::<u16>(), 96u8..=128), 0..10),
            addrs in proptest::collection::vec(any::<u16>(), 0..64),
        ) {
            // Distinct /120 leases inside fd00::/108 (4096 slots); others nest in and around.
            let base = 0xfd00u128 << 112;
            let nets: Vec<Ipv6Net> = leases
                .iter()
                .map(|&l| (u128::from(l) << 8, 120))
                .chain(others.iter().map(|&(l, len)| (u128::from(l) << 4, len)))
                .map(|(off, len)| {
                    Ipv6Net::new(Ipv6Addr::from(base | off), len).expect("length at most 128").trunc()
                })
                .collect();
            let inserted: Vec<Peer> = nets
                .iter()
                .map(|n| Peer { key: SubnetKey { v4: None, v6: Some(*n) }, ..peer4("0.0.0.0/0", "192.0.2.1") })
                .collect();
            let s = build(None, &inserted);
            prop_assert!(s.is_indexed_v6());
            let peers = s.peers().to_vec();
            let mut probes: Vec<u128> = addrs.iter().map(|&a| base | u128::from(a) << 4 | u128::from(a >> 12)).collect();
            for n in &nets {
                let (b, e) = (u128::from(n.network()), u128::from(n.broadcast()));
                probes.extend([b, e, b.wrapping_sub(1), e.wrapping_add(1)]);
            }
            for a in probes {
                let a = Ipv6Addr::from(a);
                prop_assert_eq!(v6_net_of(s.lookup_v6(a)).map(|n| n.trunc()), naive_v6(&peers, a), "{}", a);
            }
        }
    }
}
