//! The backends: what each one sets up on this host, and owns until it stops.
//!
//! | backend family | module | owns (undone when dropped) |
//! |----------------|--------|----------------------------|
//! | udp, vxlan | [`tunnel`] | the TUN device (addresses, MTU, sysctls, offloads), the sockets and their steering, the running [`Dataplane`], the `DirectRouting` routes |
//! | host-gw | [`hostgw`] | a kernel route per peer |
//!
//! Shared by both: where this host sits on the underlay ([`underlay`]), the
//! overlay MTU by flannel's rules ([`mtu`]), and the kernel route reconciler
//! ([`routes`]).
//!
//! [`Installed`] is the one value the daemon holds for the running backend.
//! Invariants: a start that fails leaves nothing behind (each owner undoes what it
//! created in `Drop`); the routes a backend installs are deleted before the TUN
//! device goes; only routes of ringlay's route protocol are ever replaced or
//! deleted ([`routes::ROUTE_PROTOCOL`]).
//!
//! [`Dataplane`]: crate::dataplane::Dataplane

pub mod hostgw;
pub mod mtu;
pub mod routes;
pub mod tunnel;
pub mod underlay;

pub use hostgw::HostGw;
pub use routes::RouteSync;
pub use tunnel::{TunnelBackend, TunnelOptions};
pub use underlay::Underlay;

use crate::config::{Backend, Lease, NetworkConfig};
use crate::control::LocalLease;
use crate::dataplane::{Dataplane, Report};
use crate::table::Table;
use crate::Result;

/// The running backend.
pub enum Installed {
    /// udp or vxlan: the userspace data path.
    Tunnel(TunnelBackend),
    /// host-gw: kernel routes.
    HostGw(HostGw),
}

impl Installed {
    /// Refuses a config this host cannot run, before a lease is written for it.
    pub fn check(config: &NetworkConfig) -> Result<()> {
        match config.backend {
            Backend::HostGw => Ok(()),
            _ => tunnel::check(config),
        }
    }

    /// Starts the backend `config` names, on `table` (which must already hold
    /// `leases`).
    pub fn start(
        config: &NetworkConfig,
        local: &LocalLease,
        under: &Underlay,
        leases: &[Lease],
        table: &Table,
        opts: &TunnelOptions,
    ) -> Result<Installed> {
        Ok(match config.backend {
            Backend::HostGw => Installed::HostGw(HostGw::start(config, local, under, leases)?),
            _ => Installed::Tunnel(TunnelBackend::start(
                config, local, under, leases, table, opts,
            )?),
        })
    }

    /// The overlay MTU (`FLANNEL_MTU`).
    pub fn mtu(&self) -> u32 {
        match self {
            Installed::Tunnel(t) => t.mtu(),
            Installed::HostGw(h) => h.mtu(),
        }
    }

    /// The running workers (tunnel backends only).
    pub fn dataplane(&self) -> Option<&Dataplane> {
        match self {
            Installed::Tunnel(t) => Some(t.dataplane()),
            Installed::HostGw(_) => None,
        }
    }

    /// The kernel routes this backend keeps in line with the leases, if any.
    pub fn routes(&mut self) -> Option<&mut RouteSync> {
        match self {
            Installed::Tunnel(t) => t.routes(),
            Installed::HostGw(h) => Some(h.routes()),
        }
    }

    /// Why the control thread must keep CAP_NET_ADMIN after set-up, if it must:
    /// routes are reconciled and deleted on exit.
    pub fn route_privilege(&self) -> Option<&'static str> {
        match self {
            Installed::HostGw(_) => Some("routes are managed (host-gw)"),
            Installed::Tunnel(t) => t
                .has_routes()
                .then_some("direct routes are managed (DirectRouting)"),
        }
    }

    /// The TUN device's name (tunnel backends only).
    pub fn tun_name(&self) -> Option<&str> {
        match self {
            Installed::Tunnel(t) => Some(t.tun_name()),
            Installed::HostGw(_) => None,
        }
    }

    /// Logs every worker's counters and the route counters (SIGUSR1).
    pub fn log_counters(&mut self) {
        if let Some(d) = self.dataplane() {
            for line in Report(d.stats()).to_string().lines() {
                tracing::info!("counters: {line}");
            }
        }
        if let Some(r) = self.routes() {
            tracing::info!("route counters: {}", r.stats());
        }
    }

    /// An error if a worker has exited (none should while running).
    pub fn check_running(&self) -> Result<()> {
        match self.dataplane().and_then(Dataplane::exited) {
            Some(i) => Err(crate::Error::setup(
                format!("worker {i}"),
                std::io::Error::other("exited unexpectedly"),
            )),
            None => Ok(()),
        }
    }
}
