//! Fixtures shared by the table's unit tests: addresses, leases and snapshots, and
//! the naive longest-prefix match every lookup path is checked against.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use proptest::prelude::*;

use super::{Peer, Snapshot, SnapshotBuilder};
use crate::config::{BackendType, SubnetKey};

pub(super) fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("test IPv4 address")
}

pub(super) fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("test IPv6 address")
}

pub(super) fn net4(s: &str) -> Ipv4Net {
    s.parse().expect("test IPv4 prefix")
}

pub(super) fn net6(s: &str) -> Ipv6Net {
    s.parse().expect("test IPv6 prefix")
}

pub(super) fn peer4(net: &str, public: &str) -> Peer {
    Peer {
        key: SubnetKey {
            v4: Some(net4(net)),
            v6: None,
        },
        public_ip: v4(public),
        public_ipv6: None,
        vtep_mac: None,
        vtep_mac_v6: None,
        backend: BackendType::Vxlan,
        partial_csum: false,
    }
}

pub(super) fn peer6(net: &str, public: &str) -> Peer {
    Peer {
        key: SubnetKey {
            v4: None,
            v6: Some(net6(net)),
        },
        public_ip: v4(public),
        public_ipv6: None,
        vtep_mac: None,
        vtep_mac_v6: None,
        backend: BackendType::Vxlan,
        partial_csum: false,
    }
}

pub(super) fn build(geometry: Option<(Ipv4Net, u8)>, peers: &[Peer]) -> Snapshot {
    let mut b = SnapshotBuilder::new(geometry);
    for p in peers {
        b.insert(p.clone());
    }
    b.build()
}

pub(super) fn v4_net_of(p: Option<&Peer>) -> Option<Ipv4Net> {
    p.and_then(|p| p.key.v4)
}

pub(super) fn v6_net_of(p: Option<&Peer>) -> Option<Ipv6Net> {
    p.and_then(|p| p.key.v6)
}

const CLUSTER: &str = "10.244.0.0/16";

pub(super) fn cluster() -> Option<(Ipv4Net, u8)> {
    Some((net4(CLUSTER), 24))
}

/// The reference: scan every lease, keep the longest match, later wins ties.
pub(super) fn naive_v4(peers: &[Peer], a: Ipv4Addr) -> Option<Ipv4Net> {
    let mut best: Option<Ipv4Net> = None;
    for n in peers.iter().filter_map(|p| p.key.v4) {
        if n.contains(&a) && best.is_none_or(|b| n.prefix_len() >= b.prefix_len()) {
            best = Some(n.trunc());
        }
    }
    best
}

pub(super) fn naive_v6(peers: &[Peer], a: Ipv6Addr) -> Option<Ipv6Net> {
    let mut best: Option<Ipv6Net> = None;
    for n in peers.iter().filter_map(|p| p.key.v6) {
        if n.contains(&a) && best.is_none_or(|b| n.prefix_len() >= b.prefix_len()) {
            best = Some(n.trunc());
        }
    }
    best
}

/// Prefixes packed into 10.0.0.0/16 (so they nest and collide), with a few
/// shorter ones that cover the whole network.
pub(super) fn prefix4() -> impl Strategy<Value = Ipv4Net> {
    prop_oneof![
        8 => (any::<u16>(), 16u8..=32),
        1 => (any::<u16>(), 0u8..16),
    ]
    .prop_map(|(low, len)| {
        Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | u32::from(low)), len)
            .expect("length at most 32")
            .trunc()
    })
}

/// Every boundary of every prefix and its neighbours, where bugs hide.
pub(super) fn edges4(peers: &[Peer]) -> Vec<u32> {
    let mut v = vec![0, u32::MAX];
    for n in peers.iter().filter_map(|p| p.key.v4) {
        let (s, e) = (u32::from(n.network()), u32::from(n.broadcast()));
        v.extend([s, e, s.wrapping_sub(1), e.wrapping_add(1)]);
    }
    v
}

pub(super) fn peers_from4(nets: &[Ipv4Net]) -> Vec<Peer> {
    (0u32..)
        .zip(nets)
        .map(|(i, n)| Peer {
            key: SubnetKey {
                v4: Some(*n),
                v6: None,
            },
            public_ip: Ipv4Addr::from(i),
            public_ipv6: None,
            vtep_mac: None,
            vtep_mac_v6: None,
            backend: BackendType::Udp,
            partial_csum: false,
        })
        .collect()
}
