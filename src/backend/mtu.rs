//! The overlay MTU: what the TUN device and `FLANNEL_MTU` get, by flanneld's rules.
//!
//! | backend | flanneld (`Network.MTU()`)                                  | overlay MTU |
//! |---------|-------------------------------------------------------------|-------------|
//! | udp     | `pkg/backend/udp`: interface MTU − `encapOverhead` (28)     | underlay − 28 |
//! | vxlan   | `pkg/backend/vxlan`: `Backend.MTU`, else the interface MTU, − `encapOverhead` (50) | (`Backend.MTU` or underlay) − 50 |
//! | host-gw | `pkg/backend/route_network.go`: the interface MTU           | underlay |
//!
//! Two details matter for mixing ringlay and flanneld nodes:
//!
//! * flannel's vxlan `Backend.MTU` is **not** the overlay MTU: it replaces the
//!   external interface's MTU before the 50 bytes are taken off (the default of the
//!   `MTU` setting is `extIface.Iface.MTU`, the device is created with `MTU - 50`,
//!   and `MTU()` returns `mtu - encapOverhead`). `"MTU": 1400` gives pods 1350.
//!   ringlay does the same, so every node of a network agrees.
//! * flannel subtracts 50 for its IPv6 VTEP too, although an IPv6 outer header is
//!   20 bytes longer (the right figure is 70). ringlay's tunnels use an IPv4
//!   underlay, for which 50 is exact; [`VXLAN_V6_OVERHEAD`] is the figure to use
//!   if that ever changes.
//!
//! flannel's udp backend has no MTU setting, and host-gw has no tunnel.

use crate::config::Backend;
use crate::wire::{ethernet, ipv4, ipv6, udp, vxlan};

/// Bytes flannel's udp backend adds: IPv4 header (20) + UDP header (8).
pub const UDP_OVERHEAD: u32 = (ipv4::HEADER_LEN + udp::HEADER_LEN) as u32;
/// Bytes VXLAN adds over an IPv4 underlay (RFC 7348 §5): IPv4 (20) + UDP (8) +
/// VXLAN (8) + the inner Ethernet header (14).
pub const VXLAN_OVERHEAD: u32 =
    (ipv4::HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN + ethernet::HEADER_LEN) as u32;
/// Bytes VXLAN adds over an IPv6 underlay: the IPv6 header is 40 bytes. flanneld
/// uses [`VXLAN_OVERHEAD`] regardless; ringlay's tunnels are IPv4 today.
pub const VXLAN_V6_OVERHEAD: u32 =
    (ipv6::HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN + ethernet::HEADER_LEN) as u32;

/// The overlay MTU for `backend` over an IPv4 underlay whose interface MTU is
/// `underlay_mtu`, as flanneld computes it (see the module docs). Saturates at 0
/// for an underlay too small to carry the tunnel; the caller should refuse that.
pub fn tunnel_mtu(backend: &Backend, underlay_mtu: u32) -> u32 {
    match *backend {
        Backend::Udp { .. } => underlay_mtu.saturating_sub(UDP_OVERHEAD),
        Backend::Vxlan { mtu, .. } => mtu.unwrap_or(underlay_mtu).saturating_sub(VXLAN_OVERHEAD),
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
                1500
            ),
            1472
        );
        assert_eq!(tunnel_mtu(&vxlan(None), 1500), 1450);
        assert_eq!(tunnel_mtu(&Backend::HostGw, 1500), 1500);
        assert_eq!(tunnel_mtu(&vxlan(None), 9001), 8951);
        assert_eq!(
            tunnel_mtu(
                &Backend::Udp {
                    port: 8285,
                    direct_routing: false
                },
                9000
            ),
            8972
        );
    }

    #[test]
    fn vxlan_mtu_setting_replaces_the_underlay_mtu() {
        // flanneld: cfg.MTU defaults to the interface MTU; MTU() = cfg.MTU - 50.
        assert_eq!(tunnel_mtu(&vxlan(Some(1400)), 1500), 1350);
        assert_eq!(tunnel_mtu(&vxlan(Some(9000)), 1500), 8950);
    }

    #[test]
    fn tiny_underlays_saturate() {
        assert_eq!(tunnel_mtu(&vxlan(None), 40), 0);
        assert_eq!(
            tunnel_mtu(
                &Backend::Udp {
                    port: 8285,
                    direct_routing: false
                },
                0
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
    }
}
