//! flannel's data types: the network config, lease values and subnet keys that
//! flanneld reads and writes under `/coreos.com/network/` in etcd.

use ipnet::{Ipv4Net, Ipv6Net};

/// The backend a network or a lease uses (`Backend.Type`, `BackendType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendType {
    /// flannel's udp backend: the inner IP packet is the UDP payload (port 8285).
    Udp,
    /// VXLAN (RFC 7348), wire-compatible with the kernel's vxlan device (port 8472).
    Vxlan,
    /// Kernel routes via each peer's public IP; no tunnel.
    HostGw,
}

/// A lease's key under `<prefix>/subnets/`: `100.96.1.0-24`, or the dual-stack
/// `100.96.1.0-24&fd00:100:96:1::-64`. It is also the set of subnets the lease owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubnetKey {
    /// The IPv4 subnet of the lease, if any.
    pub v4: Option<Ipv4Net>,
    /// The IPv6 subnet of the lease, if any.
    pub v6: Option<Ipv6Net>,
}
