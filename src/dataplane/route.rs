//! Which of a peer's underlay addresses an outbound packet goes to, and for
//! vxlan which of its VTEP MACs, as pure code.
//!
//! flannel's dual-stack model, which its kernel vxlan nodes follow with two
//! devices (`flannel.<VNI>` and `flannel-v6.<VNI>`): inner IPv4 travels over
//! the IPv4 underlay to the peer's `PublicIP` and `BackendData.VtepMAC`, inner
//! IPv6 over the IPv6 underlay to its `PublicIPv6` and `BackendV6Data.VtepMAC`.
//! When this node and the peer share only one underlay family, every packet
//! takes that one: a ringlay node decapsulates either inner family from either
//! underlay (it has one TUN and one VTEP), so an IPv4-only node and a
//! dual-stack node still reach each other's IPv6 pods. A kernel node would not
//! take inner IPv6 on its IPv4 VTEP, but flanneld never runs a network where that
//! is the only way: with IPv6 enabled every flanneld node has an IPv6 underlay.

use std::net::IpAddr;

use crate::table::Peer;
use crate::wire::MacAddr;

/// The underlay families this node tunnels over: IPv4 when its lease has a
/// `PublicIP` (not `0.0.0.0`), IPv6 when it has a `PublicIPv6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Underlays {
    /// Over IPv4.
    pub v4: bool,
    /// Over IPv6.
    pub v6: bool,
}

/// Where one packet to a peer goes on the underlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// The peer's underlay address.
    pub ip: IpAddr,
    /// The peer's VTEP MAC for that family, if its lease has one.
    pub vtep_mac: Option<MacAddr>,
}

/// The hop to `peer` for a packet whose inner destination is IPv6 (`inner_v6`)
/// or IPv4, over `ours`: the inner packet's own family when both ends have it,
/// else the family they share; `None` when they share none.
#[inline]
pub fn hop(peer: &Peer, inner_v6: bool, ours: Underlays) -> Option<Hop> {
    let v4 = (ours.v4 && !peer.public_ip.is_unspecified()).then_some(Hop {
        ip: IpAddr::V4(peer.public_ip),
        vtep_mac: peer.vtep_mac,
    });
    let v6 = peer
        .public_ipv6
        .filter(|a| ours.v6 && !a.is_unspecified())
        .map(|a| Hop {
            ip: IpAddr::V6(a),
            // A lease without a BackendV6Data (a ringlay peer's static entry)
            // has one VTEP for both.
            vtep_mac: peer.vtep_mac_v6.or(peer.vtep_mac),
        });
    if inner_v6 {
        v6.or(v4)
    } else {
        v4.or(v6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendType, SubnetKey};

    const MAC4: MacAddr = MacAddr([0x0e, 0, 0, 0, 0, 4]);
    const MAC6: MacAddr = MacAddr([0x0e, 0, 0, 0, 0, 6]);

    fn peer(v4: &str, v6: Option<&str>) -> Peer {
        Peer {
            key: SubnetKey { v4: None, v6: None },
            public_ip: v4.parse().expect("literal"),
            public_ipv6: v6.map(|a| a.parse().expect("literal")),
            vtep_mac: Some(MAC4),
            vtep_mac_v6: v6.map(|_| MAC6),
            backend: BackendType::Vxlan,
            partial_csum: false,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal")
    }

    const DUAL: Underlays = Underlays { v4: true, v6: true };
    const V4: Underlays = Underlays {
        v4: true,
        v6: false,
    };
    const V6: Underlays = Underlays {
        v4: false,
        v6: true,
    };

    #[test]
    fn dual_stack_ends_keep_each_inner_family_on_its_own_underlay() {
        let p = peer("192.0.2.2", Some("2001:db8::2"));
        assert_eq!(
            hop(&p, false, DUAL),
            Some(Hop {
                ip: ip("192.0.2.2"),
                vtep_mac: Some(MAC4)
            })
        );
        assert_eq!(
            hop(&p, true, DUAL),
            Some(Hop {
                ip: ip("2001:db8::2"),
                vtep_mac: Some(MAC6)
            })
        );
    }

    #[test]
    fn one_shared_family_carries_both() {
        let dual = peer("192.0.2.2", Some("2001:db8::2"));
        assert_eq!(hop(&dual, true, V4).map(|h| h.ip), Some(ip("192.0.2.2")));
        assert_eq!(hop(&dual, false, V6).map(|h| h.ip), Some(ip("2001:db8::2")));
        let v4_only = peer("192.0.2.3", None);
        assert_eq!(
            hop(&v4_only, true, DUAL),
            Some(Hop {
                ip: ip("192.0.2.3"),
                vtep_mac: Some(MAC4)
            })
        );
        let v6_only = peer("0.0.0.0", Some("2001:db8::4"));
        assert_eq!(
            hop(&v6_only, false, DUAL).map(|h| h.ip),
            Some(ip("2001:db8::4"))
        );
    }

    #[test]
    fn no_shared_family_is_no_hop() {
        assert_eq!(hop(&peer("0.0.0.0", Some("2001:db8::4")), true, V4), None);
        assert_eq!(hop(&peer("192.0.2.3", None), false, V6), None);
        assert_eq!(hop(&peer("192.0.2.3", Some("::")), true, V6), None);
    }

    #[test]
    fn a_lease_without_an_ipv6_vtep_mac_uses_its_one_vtep() {
        let mut p = peer("192.0.2.2", Some("2001:db8::2"));
        p.vtep_mac_v6 = None;
        assert_eq!(hop(&p, true, DUAL).and_then(|h| h.vtep_mac), Some(MAC4));
    }
}
