//! Where this host sits on the underlay: the interface its tunnels (or host-gw
//! routes) leave through, its address there, the public IP peers reach it at,
//! and that interface's MTU — chosen as flanneld chooses them from `--iface`,
//! `--iface-regex`, `--iface-can-reach` and `--public-ip`.
//!
//! The rules are pure code in [`select`] (one family) and [`stack`] (the
//! families the network config enables); this module only takes the snapshot
//! of the host they run over (links and addresses, the default route, a route
//! lookup) and logs what they decided.

pub mod select;
pub mod stack;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::control::Publics;
use crate::sys::{netdev, netlink};
use crate::{Error, Result};

use select::{Addr, Family, Link, RouteTo, Routes};
pub use select::{Criteria, IfaceArg};
pub use stack::{Given, Stack};

/// This host's place on the underlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    /// The underlay interface.
    pub iface: String,
    /// Our IPv4 address on it (flanneld's interface address): the `--iface`
    /// address, the `--iface-regex` match, the route's source toward
    /// `--iface-can-reach`, else the interface's first usable address;
    /// `0.0.0.0` in an IPv6-only network.
    pub iface_addr: Ipv4Addr,
    /// The public IPv4 address peers reach this host at (the lease's `PublicIP`):
    /// `--public-ip` if given, else [`Underlay::iface_addr`]; `0.0.0.0` in an
    /// IPv6-only network, as flanneld writes it.
    pub public_ip: Ipv4Addr,
    /// Our global IPv6 address on the interface, when the network has IPv6
    /// (`None` only when it has none and `--public-ipv6` was given).
    pub iface_addr6: Option<Ipv6Addr>,
    /// The public IPv6 address peers reach this host at (the lease's
    /// `PublicIPv6`): `--public-ipv6` if given, else [`Underlay::iface_addr6`].
    pub public_ipv6: Option<Ipv6Addr>,
    /// The underlay interface's MTU.
    pub mtu: u32,
}

impl Underlay {
    /// Places the underlay for the families of `stack` by `criteria` and the
    /// public addresses `given`, as [`stack`] describes (per family, as flanneld
    /// does once it knows the network config); fails, naming the flag and the
    /// fix, when no interface is usable. In an IPv6-only network
    /// [`Underlay::iface_addr`] and [`Underlay::public_ip`] are `0.0.0.0`.
    pub fn find(criteria: &Criteria, given: Given, stack: Stack) -> Result<Underlay> {
        let links = host_links()?;
        let placement = stack::place(criteria, given, stack, &links, &Kernel);
        for miss in &placement.misses {
            tracing::info!("not the underlay: {miss}");
        }
        let placed = placement.placed?;
        let mtu = netdev::mtu(&placed.iface)
            .map_err(|e| Error::setup(format!("reading the MTU of {}", placed.iface), e))?;
        let iface_addr = placed.addr4.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let public_ip = match stack.has_v4() {
            true => given.public_ip.unwrap_or(iface_addr),
            false => Ipv4Addr::UNSPECIFIED,
        };
        let public_ipv6 = match stack.has_v6() {
            true => given.public_ipv6.or(placed.addr6),
            false => None,
        };
        if let (false, Some(ignored)) = (stack.has_v6(), given.public_ipv6) {
            tracing::warn!(%ignored, "--public-ipv6 is ignored: the network config has no IPv6 (EnableIPv6 false)");
        }
        let show6 = |a: Option<Ipv6Addr>| a.map_or_else(|| "-".to_owned(), |a| a.to_string());
        tracing::info!(
            iface = %placed.iface, %iface_addr, %public_ip,
            iface_addr6 = %show6(placed.addr6), public_ipv6 = %show6(public_ipv6), mtu,
            "underlay chosen by {}", placed.rule
        );
        Ok(Underlay {
            iface: placed.iface,
            iface_addr,
            public_ip,
            iface_addr6: placed.addr6,
            public_ipv6,
            mtu,
        })
    }

    /// The public addresses our lease advertises.
    pub fn publics(&self) -> Publics {
        Publics {
            v4: self.public_ip,
            v6: self.public_ipv6,
        }
    }
}

/// Every link with its addresses, in the kernel's order.
fn host_links() -> Result<Vec<Link>> {
    let listing = |e| Error::setup("listing the interfaces and their addresses", e);
    let names = netdev::links().map_err(listing)?;
    let addrs = netdev::addresses().map_err(listing)?;
    Ok(names
        .into_iter()
        .map(|(index, name)| Link {
            index,
            name,
            addrs: addrs
                .iter()
                .filter(|a| a.index == index)
                .map(|a| Addr {
                    ip: a.ip,
                    flags: a.flags,
                })
                .collect(),
        })
        .collect())
}

/// The kernel's answers, asked in the calling thread's network namespace.
struct Kernel;

impl Routes for Kernel {
    fn default_route(&self, family: Family) -> io::Result<Option<u32>> {
        match family {
            Family::V4 => netdev::default_route_index(),
            Family::V6 => netdev::default_route6_index(),
        }
    }

    /// `RTM_GETROUTE` for the address, as `ip route get` and flanneld ask: the
    /// kernel's own answer names the interface and the source address it would
    /// use. (A connected UDP socket would give the source address only, and the
    /// interface holding that address is not always the one the route leaves by,
    /// e.g. with `src` set to an address on another link.)
    fn route_to(&self, addr: IpAddr) -> io::Result<RouteTo> {
        let lookup = netlink::RouteSocket::open()?.lookup(addr)?;
        let oif = lookup.oif.ok_or_else(|| {
            io::Error::other(format!(
                "RTM_GETROUTE {addr}: the kernel named no interface"
            ))
        })?;
        Ok(RouteTo {
            oif,
            src: lookup.src,
        })
    }
}
