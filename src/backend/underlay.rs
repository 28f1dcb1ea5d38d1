//! Where this host sits on the underlay: the interface its tunnels (or host-gw
//! routes) leave through, the public IP peers reach it at, and that interface's
//! MTU — chosen as flanneld chooses them from `--iface` and `--public-ip`.

use std::net::Ipv4Addr;

use crate::sys::netdev;
use crate::{Error, Result};

/// This host's place on the underlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    /// The underlay interface.
    pub iface: String,
    /// The public IPv4 address peers reach this host at (the lease's `PublicIP`).
    pub public_ip: Ipv4Addr,
    /// The underlay interface's MTU.
    pub mtu: u32,
}

impl Underlay {
    /// The interface is `iface` if given, else the one holding `public_ip`, else
    /// the default route's (also for a public IP on no interface: behind NAT).
    /// The public IP is `public_ip` if given, else the interface's first IPv4
    /// address.
    pub fn find(iface: Option<&str>, public_ip: Option<Ipv4Addr>) -> Result<Underlay> {
        let iface = match (iface, public_ip) {
            (Some(i), _) => i.to_owned(),
            (None, Some(ip)) => match netdev::iface_with_ipv4(ip) {
                Ok(Some(i)) => i,
                _ => default_iface()?,
            },
            (None, None) => default_iface()?,
        };
        let public_ip = match public_ip {
            Some(ip) => ip,
            None => first_ipv4(&iface)?,
        };
        let mtu = netdev::mtu(&iface)
            .map_err(|e| Error::setup(format!("reading the MTU of {iface}"), e))?;
        Ok(Underlay {
            iface,
            public_ip,
            mtu,
        })
    }
}

fn first_ipv4(iface: &str) -> Result<Ipv4Addr> {
    netdev::ipv4_addrs(iface)
        .map_err(|e| Error::setup(format!("reading the addresses of {iface}"), e))?
        .first()
        .map(|(a, _)| *a)
        .ok_or_else(|| {
            Error::invalid(
                "--iface",
                iface,
                "an interface with an IPv4 address, or give --public-ip",
            )
        })
}

fn default_iface() -> Result<String> {
    netdev::default_route_iface()
        .map_err(|e| Error::setup("reading the routing table", e))?
        .ok_or_else(|| {
            Error::invalid(
                "--iface",
                "(none)",
                "an underlay interface: there is no default route, so give --iface or --public-ip",
            )
        })
}
