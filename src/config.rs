//! flannel's data types: the network config, lease values and subnet keys that
//! flanneld reads and writes under `/coreos.com/network/` in etcd.
//!
//! | etcd key                      | type              | flannel source it mirrors |
//! |-------------------------------|-------------------|---------------------------|
//! | `<prefix>/config`             | [`NetworkConfig`] | `pkg/subnet/config.go` (`ParseConfig`, `CheckNetworkConfig`), `pkg/backend/{udp,vxlan}` |
//! | `<prefix>/subnets/<key>` key  | [`SubnetKey`]     | `pkg/subnet/subnet.go` (`ParseSubnetKey`, `MakeSubnetKey`) |
//! | `<prefix>/subnets/<key>` value| [`LeaseAttrs`]    | `pkg/lease/lease.go` (`LeaseAttrs`), `pkg/backend/vxlan/vxlan_network.go` |
//! | a key with its value          | [`Lease`]         | `pkg/lease/lease.go` (`Lease`) |
//!
//! Everything here is pure: text or bytes in, validated values out. Invariants:
//!
//! * a [`NetworkConfig`] that [`NetworkConfig::parse`] returns has every default
//!   resolved and every flannel check passed, so the control plane never re-checks it;
//! * [`NetworkConfig::to_json`], [`LeaseAttrs::to_json`] and `SubnetKey`'s `Display`
//!   produce text flanneld accepts, and parsing that text gives back an equal value;
//! * input never panics: every refusal is a [`crate::Error`] naming the field, the
//!   value and what would be accepted. Documents are capped at [`MAX_DOCUMENT_LEN`].
//!
//! # How ringlay reads flannel's JSON
//!
//! flanneld decodes with Go's `encoding/json`, so ringlay follows its rules where
//! they change what is accepted:
//!
//! * **Object keys match case-insensitively** (`"network"` sets `Network`, and the
//!   vxlan backend's own tags are the lowercase `vni`, `port`, `directRouting`).
//!   When a document holds two spellings of one key, ringlay prefers the exact one.
//! * **Unknown keys are ignored** (`EnableNFTables`, vxlan's `GBP`, `Learning`,
//!   `MacPrefix`, other backends' settings).
//! * **Zero means unset** for `SubnetLen`, `SubnetMin`, `SubnetMax` and their IPv6
//!   twins, as in `CheckNetworkConfig`, and for vxlan's `Port` and `MTU`, as in the
//!   kernel. `VNI: 0` is VNI 0, since flannel sets the default before decoding.
//! * `Network` and `IPv6Network` are read like Go's `net.ParseCIDR`: host bits are
//!   cleared (`10.1.2.3/16` means `10.1.0.0/16`).
//!
//! Where ringlay differs, it refuses at parse time what would fail later in flannel:
//!
//! * `SubnetMax` below `SubnetMin` (flannel accepts it, then finds no subnet to lease);
//! * a `VNI` over 24 bits, a `Port` over 65535, an `MTU` outside 68..=65535 (the
//!   kernel would refuse them when flannel creates the device);
//! * `EnableIPv4` and `EnableIPv6` both false.
//!
//! And it is lenient in two places: a JSON `null` is the same as an absent key (Go
//! refuses `null` for a few address fields), and udp's `Port: 0` means 8285 (flannel
//! would bind an ephemeral port no peer sends to).
//!
//! # Backend omitted
//!
//! flannel's `parseBackendType` picks `udp` when the config has no `Backend`.
//! ringlay does the same, so it keeps talking to flannel nodes that did so, and
//! records it in [`NetworkConfig::backend_defaulted`] so the daemon can log that
//! the slow udp backend was chosen by default rather than asked for.

pub(crate) mod json;
mod key;
mod lease;
mod network;

use core::fmt;
use core::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};

pub use json::MAX_DOCUMENT_LEN;
pub use lease::{Features, Lease, LeaseAttrs, VxlanBackendData};
pub use network::{
    Backend, Ipv4Config, Ipv6Config, NetworkConfig, DEFAULT_VNI, UDP_DEFAULT_PORT,
    VXLAN_DEFAULT_PORT,
};

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

impl BackendType {
    /// Every backend ringlay implements, in the order error messages list them.
    pub const ALL: [BackendType; 3] = [BackendType::Udp, BackendType::Vxlan, BackendType::HostGw];

    /// flannel's name for the backend: `"udp"`, `"vxlan"` or `"host-gw"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BackendType::Udp => "udp",
            BackendType::Vxlan => "vxlan",
            BackendType::HostGw => "host-gw",
        }
    }

    /// The known names as an error message's "expected" text.
    pub(crate) fn expected() -> String {
        let names: Vec<String> = Self::ALL
            .iter()
            .map(|t| format!("\"{}\"", t.as_str()))
            .collect();
        format!(
            "one of {} (the backends ringlay implements)",
            names.join(", ")
        )
    }
}

impl fmt::Display for BackendType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses flannel's exact spelling, as written in a lease's `BackendType`.
///
/// The network config's `Backend.Type` is case-insensitive (flannel lowercases it
/// in `pkg/backend/manager.go`); [`NetworkConfig::parse`] lowercases before this.
impl FromStr for BackendType {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| crate::Error::invalid("BackendType", json::clip(s), Self::expected()))
    }
}

/// A lease's key under `<prefix>/subnets/`: `100.96.1.0-24`, or the dual-stack
/// `100.96.1.0-24&fd00:100:96:1::-64`. It is also the set of subnets the lease owns.
///
/// flannel always writes an IPv4 part; a lease without an IPv4 subnet is written
/// with flannel's empty network, `0.0.0.0-0&fd00:100:96:1::-64`, and `v4` is `None`.
/// See [`SubnetKey::from_str`](#impl-FromStr-for-SubnetKey) for the exact form.
///
/// Keys order by IPv4 subnet, then IPv6 subnet (a missing one first): the order
/// lease lists are kept in, so equal sets give equal lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubnetKey {
    /// The IPv4 subnet of the lease, if any.
    pub v4: Option<Ipv4Net>,
    /// The IPv6 subnet of the lease, if any.
    pub v6: Option<Ipv6Net>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_type_names_round_trip() {
        for t in BackendType::ALL {
            assert_eq!(t.as_str().parse::<BackendType>().expect("own name"), t);
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(
            BackendType::ALL.map(BackendType::as_str),
            ["udp", "vxlan", "host-gw"]
        );
        let err = "hostgw"
            .parse::<BackendType>()
            .expect_err("not flannel's name");
        assert_eq!(
            err.to_string(),
            r#"BackendType: "hostgw" is invalid: one of "udp", "vxlan", "host-gw" (the backends ringlay implements)"#
        );
    }
}
