//! The host-gw backend: no tunnel, no TUN device, no workers. Every peer's subnet
//! is a kernel route `<subnet> via <PublicIP> dev <underlay>` (IPv4 and IPv6),
//! kept in line with the leases by a [`RouteSync`]; the overlay MTU is the
//! underlay's, since nothing is added to a packet.
//!
//! Dropping a [`HostGw`] deletes the routes it installed, and only those.

use super::routes::{Mode, RouteSync, ROUTE_PROTOCOL};
use super::Underlay;
use crate::config::{Lease, NetworkConfig};
use crate::control::LocalLease;
use crate::Result;

/// A running host-gw backend: the peers' routes.
pub struct HostGw {
    routes: RouteSync,
    mtu: u32,
}

impl HostGw {
    /// Installs a route per peer of `leases`.
    pub fn start(
        config: &NetworkConfig,
        local: &LocalLease,
        under: &Underlay,
        leases: &[Lease],
    ) -> Result<HostGw> {
        let mut routes = RouteSync::new(Mode::HostGw, &under.iface, local.key, config)?;
        routes.sync(leases, "start");
        let stats = routes.stats();
        tracing::info!(
            routes = stats.routes,
            unreachable = stats.unreachable,
            "host-gw: peer routes on {} (route protocol {ROUTE_PROTOCOL})",
            under.iface
        );
        Ok(HostGw {
            routes,
            mtu: super::mtu::tunnel_mtu(&config.backend, under.mtu, false),
        })
    }

    /// The peers' routes.
    pub fn routes(&mut self) -> &mut RouteSync {
        &mut self.routes
    }

    /// The overlay MTU: the underlay's.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }
}
