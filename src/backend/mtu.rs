//! The overlay MTU: what the TUN device and `FLANNEL_MTU` get, by flanneld's rules.
//!
//! | backend | flanneld (`Network.MTU()`)                                  | overlay MTU over IPv4 | over IPv6 |
//! |---------|-------------------------------------------------------------|-------------|-----------|
//! | udp     | `pkg/backend/udp`: interface MTU − `encapOverhead` (28)     | underlay − 28 | underlay − 48 |
//! | vxlan   | `pkg/backend/vxlan`: `Backend.MTU`, else the interface MTU, − `encapOverhead` (50) | (`Backend.MTU` or underlay) − 50 | (`Backend.MTU` or underlay) − 70 |
//! | host-gw | `pkg/backend/route_network.go`: the interface MTU           | underlay | underlay |
//!
//! Three details matter for mixing ringlay and flanneld nodes:
//!
//! * flannel's vxlan `Backend.MTU` is **not** the overlay MTU: it replaces the
//!   external interface's MTU before the 50 bytes are taken off (the default of the
//!   `MTU` setting is `extIface.Iface.MTU`, the device is created with `MTU - 50`,
//!   and `MTU()` returns `mtu - encapOverhead`). `"MTU": 1400` gives pods 1350.
//!   ringlay does the same, so every node of a network agrees.
//! * flanneld asks for `MTU - 50` for its IPv6 VTEP (`flannel-v6.<VNI>`) too,
//!   although an IPv6 outer header is 20 bytes longer; the kernel clamps the
//!   device to its lower device's MTU − 70 (`vxlan_config_apply`), so a
//!   flanneld node's IPv6 VTEP runs at 1430 on a 1500 underlay while its
//!   `FLANNEL_MTU` says 1450, and its pods rely on the VTEP's ICMPv6 Packet Too
//!   Big for the difference.
//! * ringlay has one TUN for both inner families, so a node that tunnels over
//!   IPv6 takes the IPv6 figure for the whole overlay ([`VXLAN_V6_OVERHEAD`],
//!   [`UDP_V6_OVERHEAD`]): no packet a pod sends is too big for either underlay,
//!   at the price of 20 bytes for inner IPv4 in a dual-stack network. Larger
//!   packets from flanneld pods (up to 1450) are still delivered: the TUN takes
//!   them, and the pod's own link MTU decides the rest.
//!
//! flannel's udp backend has no MTU setting and no IPv6 underlay, and host-gw
//! has no tunnel.

use crate::config::Backend;
use crate::wire::{ethernet, ipv4, ipv6, udp, vxlan};

/// Bytes flannel's udp backend adds: IPv4 header (20) + UDP header (8).
pub const UDP_OVERHEAD: u32 = (ipv4::HEADER_LEN + udp::HEADER_LEN) as u32;
/// Bytes the udp backend adds over an IPv6 underlay: IPv6 (40) + UDP (8).
pub const UDP_V6_OVERHEAD: u32 = (ipv6::HEADER_LEN + udp::HEADER_LEN) as u32;
/// Bytes VXLAN adds over an IPv4 underlay (RFC 7348 §5): IPv4 (20) + UDP (8) +
/// VXLAN (8) + the inner Ethernet header (14).
pub const VXLAN_OVERHEAD: u32 =
    (ipv4::HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN + ethernet::HEADER_LEN) as u32;
/// Bytes VXLAN adds over an IPv6 underlay: the IPv6 header is 40 bytes (the
/// kernel's `VXLAN6_HEADROOM`).
pub const VXLAN_V6_OVERHEAD: u32 =
    (ipv6::HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN + ethernet::HEADER_LEN) as u32;

/// The overlay MTU for `backend` over an underlay whose interface MTU is
/// `underlay_mtu`, with the IPv6 overhead when the node tunnels over IPv6
/// (`ipv6_underlay`; see the module docs). Saturates at 0 for an underlay too
/// small to carry the tunnel; the caller should refuse that.
pub fn tunnel_mtu(backend: &Backend, underlay_mtu: u32, ipv6_underlay: bool) -> u32 {
    let (udp, vxlan) = if ipv6_underlay {
        (UDP_V6_OVERHEAD, VXLAN_V6_OVERHEAD)
    } else {
        (UDP_OVERHEAD, VXLAN_OVERHEAD)
    };
    match *backend {
        Backend::Udp { .. } => underlay_mtu.saturating_sub(udp),
        Backend::Vxlan { mtu, .. } => mtu.unwrap_or(underlay_mtu).saturating_sub(vxlan),
        Backend::HostGw => underlay_mtu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vxlan(mtu: Option<u32>) -> Backend {
        Backend::Vxlan {
            vni: 1,
            port: 8472,
            mtu,
            direct_routing: false,
        }
    }

    #[test]
    fn flannels_rules() {
        assert_eq!(
            tunnel_mtu(
                &Backend::Udp {
                    port: 8285,
                    direct_routing: false
                },
                1500,
                false
            ),
            1472
        );
        assert_eq!(tunnel_mtu(&vxlan(None), 1500, false), 1450);
        assert_eq!(tunnel_mtu(&Backend::HostGw, 1500, false), 1500);
        assert_eq!(tunnel_mtu(&vxlan(None), 9001, false), 8951);
        assert_eq!(
            tunnel_mtu(
                &Backend::Udp {
                    port: 8285,
                    direct_routing: false
                },
                9000,
                false
            ),
            8972
        );
    }

    #[test]
    fn vxlan_mtu_setting_replaces_the_underlay_mtu() {
        // flanneld: cfg.MTU defaults to the interface MTU; MTU() = cfg.MTU - 50.
        assert_eq!(tunnel_mtu(&vxlan(Some(1400)), 1500, false), 1350);
        assert_eq!(tunnel_mtu(&vxlan(Some(9000)), 1500, false), 8950);
    }

    #[test]
    fn tiny_underlays_saturate() {
        assert_eq!(tunnel_mtu(&vxlan(None), 40, false), 0);
        assert_eq!(
            tunnel_mtu(
                &Backend::Udp {
                    port: 8285,
                    direct_routing: false
                },
                0,
                false
            ),
            0
        );
    }

    #[test]
    fn overheads_are_flannels_constants() {
        // pkg/backend/udp and pkg/backend/vxlan: encapOverhead = 28 and 50.
        assert_eq!(UDP_OVERHEAD, 28);
        assert_eq!(VXLAN_OVERHEAD, 50);
        assert_eq!(VXLAN_V6_OVERHEAD, 70);
        assert_eq!(UDP_V6_OVERHEAD, 48);
    }

    #[test]
    fn an_ipv6_underlay_takes_its_longer_header() {
        // The kernel's own IPv6 VTEP on a 1500 underlay runs at 1430.
        assert_eq!(tunnel_mtu(&vxlan(None), 1500, true), 1430);
        assert_eq!(tunnel_mtu(&vxlan(Some(1400)), 1500, true), 1330);
        let udp = Backend::Udp {
            port: 8285,
            direct_routing: false,
        };
        assert_eq!(tunnel_mtu(&udp, 1500, true), 1452);
        assert_eq!(tunnel_mtu(&Backend::HostGw, 1500, true), 1500);
    }
}
