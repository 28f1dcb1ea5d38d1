//! Where this host sits on the underlay: the interface its tunnels (or host-gw
//! routes) leave through, its address there, the public IP peers reach it at,
//! and that interface's MTU — chosen as flanneld chooses them from `--iface`,
//! `--iface-regex`, `--iface-can-reach` and `--public-ip`.
//!
//! The rules are pure code in [`select`]; this module only takes the snapshot
//! of the host they run over (links and addresses, the default route, a route
//! lookup) and logs what they decided.

pub mod select;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::sys::{netdev, netlink};
use crate::{Error, Result};

use select::{Addr, Family, Link, RouteTo, Routes};
pub use select::{Criteria, IfaceArg};

/// This host's place on the underlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    /// The underlay interface.
    pub iface: String,
    /// Our IPv4 address on it (flanneld's interface address): the `--iface`
    /// address, the `--iface-regex` match, the route's source toward
    /// `--iface-can-reach`, else the interface's first usable address.
    pub iface_addr: Ipv4Addr,
    /// The public IPv4 address peers reach this host at (the lease's `PublicIP`):
    /// `--public-ip` if given, else [`Underlay::iface_addr`].
    pub public_ip: Ipv4Addr,
    /// Our IPv6 address on the interface, when the network has IPv6 and the
    /// interface a usable global address.
    pub iface_addr6: Option<Ipv6Addr>,
    /// The public IPv6 address peers reach this host at (the lease's
    /// `PublicIPv6`): `--public-ipv6` if given, else [`Underlay::iface_addr6`].
    pub public_ipv6: Option<Ipv6Addr>,
    /// The underlay interface's MTU.
    pub mtu: u32,
}

impl Underlay {
    /// Chooses the interface by `criteria` (else the one holding `public_ip`, else
    /// the default route's) as [`select`] describes; fails, naming the flag and
    /// the fix, when none is usable.
    pub fn find(criteria: &Criteria, public_ip: Option<Ipv4Addr>) -> Result<Underlay> {
        let links = host_links()?;
        let selection = select::choose(
            criteria,
            public_ip.map(IpAddr::V4),
            Family::V4,
            &links,
            &Kernel,
        );
        for miss in &selection.misses {
            tracing::info!("not the underlay: {miss}");
        }
        let choice = selection.choice?;
        let IpAddr::V4(iface_addr) = choice.addr else {
            unreachable!("select::choose in Family::V4 chooses an IPv4 address")
        };
        let mtu = netdev::mtu(&choice.iface)
            .map_err(|e| Error::setup(format!("reading the MTU of {}", choice.iface), e))?;
        let public_ip = public_ip.unwrap_or(iface_addr);
        tracing::info!(
            iface = %choice.iface, %iface_addr, %public_ip, mtu,
            "underlay chosen by {}", choice.rule
        );
        Ok(Underlay {
            iface: choice.iface,
            iface_addr,
            public_ip,
            iface_addr6: None,
            public_ipv6: None,
            mtu,
        })
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
            Family::V6 => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the underlay is IPv4 only",
            )),
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
