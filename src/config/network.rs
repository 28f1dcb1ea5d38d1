//! `<prefix>/config`: the network config every node reads, with flannel's defaults
//! and checks (`pkg/subnet/config.go`, `CheckNetworkConfig`) and the backend
//! settings flannel's backends read (`pkg/backend/udp`, `pkg/backend/vxlan`).
//!
//! IPv4 and IPv6 follow one rule set with different numbers, so both go through
//! [`resolve`] over `u128` addresses with a [`Family`] table of names and limits.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use super::json::{self, clip, opt_bool, opt_str, opt_u64, show};
use super::BackendType;
use crate::{Error, Result};

/// flannel's udp backend port when `Backend.Port` is absent or 0 (`pkg/backend/udp`).
pub const UDP_DEFAULT_PORT: u16 = 8285;
/// The vxlan port when `Backend.Port` is absent or 0: flannel then leaves the port
/// to the kernel, whose default is 8472 (`drivers/net/vxlan`), not IANA's 4789.
pub const VXLAN_DEFAULT_PORT: u16 = 8472;
/// flannel's vxlan `VNI` when `Backend.VNI` is absent (`pkg/backend/vxlan`).
pub const DEFAULT_VNI: u32 = 1;

/// A VNI is 24 bits (RFC 7348 §5).
const MAX_VNI: u64 = (1 << 24) - 1;
/// The smallest MTU an IPv4 link may have (RFC 791).
const MIN_MTU: u64 = 68;
/// The largest MTU an IP packet can fill.
const MAX_MTU: u64 = 65_535;

/// A validated network config: flannel's `<prefix>/config` with every default
/// resolved. Built by [`NetworkConfig::parse`]; written back by [`NetworkConfig::to_json`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The IPv4 overlay: `Some` unless the config says `"EnableIPv4": false`.
    pub ipv4: Option<Ipv4Config>,
    /// The IPv6 overlay: `Some` when the config says `"EnableIPv6": true`.
    pub ipv6: Option<Ipv6Config>,
    /// The backend and its settings (`Backend`).
    pub backend: Backend,
    /// True when the config had no `Backend` and udp was chosen, as flannel does.
    /// The daemon should log it: udp is rarely what a cluster meant to run.
    pub backend_defaulted: bool,
}

/// The IPv4 part of a [`NetworkConfig`], every field resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Config {
    /// `Network`: the whole overlay, host bits cleared.
    pub network: Ipv4Net,
    /// `SubnetLen`: the prefix length of each node's subnet.
    pub subnet_len: u8,
    /// `SubnetMin`: the lowest subnet address a node may lease.
    pub subnet_min: Ipv4Addr,
    /// `SubnetMax`: the highest subnet address a node may lease.
    pub subnet_max: Ipv4Addr,
}

/// The IPv6 part of a [`NetworkConfig`], every field resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Config {
    /// `IPv6Network`: the whole overlay, host bits cleared.
    pub network: Ipv6Net,
    /// `IPv6SubnetLen`: the prefix length of each node's subnet.
    pub subnet_len: u8,
    /// `IPv6SubnetMin`: the lowest subnet address a node may lease.
    pub subnet_min: Ipv6Addr,
    /// `IPv6SubnetMax`: the highest subnet address a node may lease.
    pub subnet_max: Ipv6Addr,
}

/// The backend and the settings of it that ringlay reads. Settings a backend does
/// not read in flannel are not kept (host-gw reads none, udp only `Port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `{"Type":"udp"}`.
    Udp {
        /// `Port`: the UDP port every node listens on; [`UDP_DEFAULT_PORT`] by default.
        port: u16,
        /// `DirectRouting`: peers on the same L2 segment are reached by plain routes.
        /// flanneld's udp backend ignores this setting; ringlay honours it as for vxlan.
        direct_routing: bool,
    },
    /// `{"Type":"vxlan"}`.
    Vxlan {
        /// `VNI`: the VXLAN network identifier, 0 to 2^24 - 1; [`DEFAULT_VNI`] by default.
        vni: u32,
        /// `Port`: the UDP destination port; [`VXLAN_DEFAULT_PORT`] by default.
        port: u16,
        /// `MTU`: as in flannel, the underlay MTU the overlay MTU is derived from (the
        /// overlay gets `MTU - 50`, see `backend::mtu`); `None` uses the external
        /// interface's MTU.
        mtu: Option<u32>,
        /// `DirectRouting`: peers on the same L2 segment are reached by plain routes.
        direct_routing: bool,
    },
    /// `{"Type":"host-gw"}`.
    HostGw,
}

impl Backend {
    /// What flannel and ringlay use when the config has no `Backend`.
    pub const DEFAULT: Backend = Backend::Udp {
        port: UDP_DEFAULT_PORT,
        direct_routing: false,
    };

    /// The backend's type.
    pub const fn backend_type(&self) -> BackendType {
        match self {
            Backend::Udp { .. } => BackendType::Udp,
            Backend::Vxlan { .. } => BackendType::Vxlan,
            Backend::HostGw => BackendType::HostGw,
        }
    }

    /// True when a tunnel backend should route peers on the same L2 segment
    /// directly (`DirectRouting`); false for host-gw, which routes every peer so.
    pub const fn direct_routing(&self) -> bool {
        match self {
            Backend::Udp { direct_routing, .. } | Backend::Vxlan { direct_routing, .. } => {
                *direct_routing
            }
            Backend::HostGw => false,
        }
    }

    /// The UDP port of the tunnel; `None` for host-gw, which has no tunnel.
    pub const fn port(&self) -> Option<u16> {
        match self {
            Backend::Udp { port, .. } | Backend::Vxlan { port, .. } => Some(*port),
            Backend::HostGw => None,
        }
    }
}

impl NetworkConfig {
    /// Parses a network config, applies flannel's defaults and checks, and returns
    /// the resolved config. Errors name the field, the value and what is accepted.
    pub fn parse(text: &str) -> Result<NetworkConfig> {
        Self::parse_bytes(text.as_bytes())
    }

    /// [`NetworkConfig::parse`] for raw etcd bytes, which need not be UTF-8.
    pub fn parse_bytes(bytes: &[u8]) -> Result<NetworkConfig> {
        let obj = json::parse_object(bytes, "network config")?;

        // Decode every field first, as Go's json.Unmarshal does, so a value of the
        // wrong type is refused even for a family that is disabled.
        let enable_ipv4 = opt_bool(&obj, "EnableIPv4", "EnableIPv4")?.unwrap_or(true);
        let enable_ipv6 = opt_bool(&obj, "EnableIPv6", "EnableIPv6")?.unwrap_or(false);
        let v4 = RawFamily::decode(&obj, &V4)?;
        let v6 = RawFamily::decode(&obj, &V6)?;
        let (backend, backend_defaulted) = parse_backend(json::get(&obj, "Backend"))?;

        if !enable_ipv4 && !enable_ipv6 {
            return Err(Error::invalid(
                "EnableIPv4",
                false,
                "true, or \"EnableIPv6\": true with an IPv6Network: a network needs an address family",
            ));
        }
        let ipv4 = match enable_ipv4 {
            false => None,
            true => {
                let r = resolve(&V4, &v4)?;
                Some(Ipv4Config {
                    network: Ipv4Net::new(v4_addr(r.base), r.prefix)
                        .expect("resolve keeps IPv4 prefix lengths at most 32"),
                    subnet_len: r.subnet_len,
                    subnet_min: v4_addr(r.min),
                    subnet_max: v4_addr(r.max),
                })
            }
        };
        let ipv6 = match enable_ipv6 {
            false => None,
            true => {
                let r = resolve(&V6, &v6)?;
                Some(Ipv6Config {
                    network: Ipv6Net::new(Ipv6Addr::from(r.base), r.prefix)
                        .expect("resolve keeps IPv6 prefix lengths at most 128"),
                    subnet_len: r.subnet_len,
                    subnet_min: Ipv6Addr::from(r.min),
                    subnet_max: Ipv6Addr::from(r.max),
                })
            }
        };
        Ok(NetworkConfig {
            ipv4,
            ipv6,
            backend,
            backend_defaulted,
        })
    }

    /// The config as compact JSON that flanneld accepts and that parses back to an
    /// equal config. Defaults are written out, so other nodes see the same values.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the config serializes to strings, numbers and bools")
    }
}

impl Ipv4Config {
    /// True when `subnet` is a subnet a node may lease in this network, by flannel's
    /// rule (`isSubnetConfigCompat`): length `SubnetLen`, between `SubnetMin` and `SubnetMax`.
    pub fn accepts(&self, subnet: Ipv4Net) -> bool {
        subnet.prefix_len() == self.subnet_len
            && subnet.trunc() == subnet
            && (self.subnet_min..=self.subnet_max).contains(&subnet.addr())
    }
}

impl Ipv6Config {
    /// True when `subnet` is a subnet a node may lease in this network, by flannel's
    /// rule: length `IPv6SubnetLen`, between `IPv6SubnetMin` and `IPv6SubnetMax`.
    pub fn accepts(&self, subnet: Ipv6Net) -> bool {
        subnet.prefix_len() == self.subnet_len
            && subnet.trunc() == subnet
            && (self.subnet_min..=self.subnet_max).contains(&subnet.addr())
    }
}

impl fmt::Display for NetworkConfig {
    /// The same text as [`NetworkConfig::to_json`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// Writes flannel's field names in the order of flannel's `Config` struct, leaving
/// out what flannel's defaults already say (`EnableIPv4: true`, `EnableIPv6: false`,
/// a `Backend` that was never given).
impl Serialize for NetworkConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if self.ipv4.is_none() {
            m.serialize_entry("EnableIPv4", &false)?;
        }
        if self.ipv6.is_some() {
            m.serialize_entry("EnableIPv6", &true)?;
        }
        if let Some(v4) = &self.ipv4 {
            m.serialize_entry("Network", &v4.network)?;
        }
        if let Some(v6) = &self.ipv6 {
            m.serialize_entry("IPv6Network", &v6.network)?;
        }
        if let Some(v4) = &self.ipv4 {
            m.serialize_entry("SubnetMin", &v4.subnet_min)?;
            m.serialize_entry("SubnetMax", &v4.subnet_max)?;
        }
        if let Some(v6) = &self.ipv6 {
            m.serialize_entry("IPv6SubnetMin", &v6.subnet_min)?;
            m.serialize_entry("IPv6SubnetMax", &v6.subnet_max)?;
        }
        if let Some(v4) = &self.ipv4 {
            m.serialize_entry("SubnetLen", &v4.subnet_len)?;
        }
        if let Some(v6) = &self.ipv6 {
            m.serialize_entry("IPv6SubnetLen", &v6.subnet_len)?;
        }
        if !(self.backend_defaulted && self.backend == Backend::DEFAULT) {
            m.serialize_entry("Backend", &self.backend)?;
        }
        m.end()
    }
}

/// `{"Type":…}` plus the settings the backend reads; vxlan's `Port` is written even
/// when it is the kernel default, so every reader agrees on it.
impl Serialize for Backend {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("Type", self.backend_type().as_str())?;
        match *self {
            Backend::Udp {
                port,
                direct_routing,
            } => {
                m.serialize_entry("Port", &port)?;
                if direct_routing {
                    m.serialize_entry("DirectRouting", &true)?;
                }
            }
            Backend::Vxlan {
                vni,
                port,
                mtu,
                direct_routing,
            } => {
                m.serialize_entry("VNI", &vni)?;
                m.serialize_entry("Port", &port)?;
                if let Some(mtu) = mtu {
                    m.serialize_entry("MTU", &mtu)?;
                }
                if direct_routing {
                    m.serialize_entry("DirectRouting", &true)?;
                }
            }
            Backend::HostGw => {}
        }
        m.end()
    }
}

/// Reads `Backend`. Absent means udp, as in flannel's `parseBackendType`.
fn parse_backend(value: Option<&Value>) -> Result<(Backend, bool)> {
    let Some(value) = value else {
        return Ok((Backend::DEFAULT, true));
    };
    let Value::Object(obj) = value else {
        return Err(Error::invalid(
            "Backend",
            show(value),
            r#"an object like {"Type":"vxlan"}"#,
        ));
    };
    let name = opt_str(obj, "Type", "Backend.Type", &BackendType::expected())?
        .ok_or_else(|| Error::invalid("Backend.Type", "(absent)", BackendType::expected()))?;
    // flannel lowercases the type before looking the backend up (pkg/backend/manager.go).
    let ty: BackendType = name
        .to_ascii_lowercase()
        .parse()
        .map_err(|_| Error::invalid("Backend.Type", clip(name), BackendType::expected()))?;

    let port = |default: u16| -> Result<u16> {
        let expected = "an integer from 1 to 65535, or 0 for the backend's default";
        match opt_u64(obj, "Port", "Backend.Port", expected)? {
            None | Some(0) => Ok(default),
            Some(p) => u16::try_from(p).map_err(|_| Error::invalid("Backend.Port", p, expected)),
        }
    };
    let backend = match ty {
        BackendType::Udp => Backend::Udp {
            port: port(UDP_DEFAULT_PORT)?,
            direct_routing: opt_bool(obj, "DirectRouting", "Backend.DirectRouting")?
                .unwrap_or(false),
        },
        BackendType::Vxlan => {
            let vni_expected = "an integer from 0 to 16777215 (a 24-bit VXLAN VNI)";
            let vni = match opt_u64(obj, "VNI", "Backend.VNI", vni_expected)? {
                None => DEFAULT_VNI,
                Some(v) if v <= MAX_VNI => v as u32,
                Some(v) => return Err(Error::invalid("Backend.VNI", v, vni_expected)),
            };
            let mtu_expected = "an integer from 68 to 65535, or 0 to derive it from the interface";
            let mtu = match opt_u64(obj, "MTU", "Backend.MTU", mtu_expected)? {
                None | Some(0) => None,
                Some(m) if (MIN_MTU..=MAX_MTU).contains(&m) => Some(m as u32),
                Some(m) => return Err(Error::invalid("Backend.MTU", m, mtu_expected)),
            };
            Backend::Vxlan {
                vni,
                port: port(VXLAN_DEFAULT_PORT)?,
                mtu,
                direct_routing: opt_bool(obj, "DirectRouting", "Backend.DirectRouting")?
                    .unwrap_or(false),
            }
        }
        BackendType::HostGw => Backend::HostGw,
    };
    Ok((backend, false))
}

/// The names and limits of one address family's fields.
struct Family {
    /// Address width in bits: 32 or 128.
    bits: u8,
    enable: &'static str,
    network: &'static str,
    subnet_len: &'static str,
    subnet_min: &'static str,
    subnet_max: &'static str,
    /// `SubnetLen` when unset and the network is large enough (/24, /64).
    default_len: u8,
    /// The longest `SubnetLen` flannel allows (/30, /126).
    max_len: u8,
    network_example: &'static str,
    address_example: &'static str,
}

const V4: Family = Family {
    bits: 32,
    enable: "EnableIPv4",
    network: "Network",
    subnet_len: "SubnetLen",
    subnet_min: "SubnetMin",
    subnet_max: "SubnetMax",
    default_len: 24,
    max_len: 30,
    network_example: "an IPv4 CIDR like 10.244.0.0/16",
    address_example: "an IPv4 address like 10.244.1.0",
};

const V6: Family = Family {
    bits: 128,
    enable: "EnableIPv6",
    network: "IPv6Network",
    subnet_len: "IPv6SubnetLen",
    subnet_min: "IPv6SubnetMin",
    subnet_max: "IPv6SubnetMax",
    default_len: 64,
    max_len: 126,
    network_example: "an IPv6 CIDR like fd00:10:244::/56",
    address_example: "an IPv6 address like fd00:10:244:1::",
};

impl Family {
    /// `addr` as text in this family.
    fn show(&self, addr: u128) -> String {
        match self.bits {
            32 => v4_addr(addr).to_string(),
            _ => Ipv6Addr::from(addr).to_string(),
        }
    }

    /// The host bits of a `/len` network in this family, as a mask.
    fn host_mask(&self, len: u8) -> u128 {
        match u32::from(self.bits - len) {
            128 => u128::MAX,
            shift => (1u128 << shift) - 1,
        }
    }

    /// Parses an address field of this family into a `u128`.
    fn parse_addr(&self, field: &str, text: &str) -> Result<u128> {
        let addr = match self.bits {
            32 => text.parse::<Ipv4Addr>().map(|a| u128::from(u32::from(a))),
            _ => text.parse::<Ipv6Addr>().map(u128::from),
        };
        addr.map_err(|_| Error::invalid(field, clip(text), self.address_example))
    }

    /// Parses a CIDR field of this family, clearing host bits as Go's `net.ParseCIDR` does.
    fn parse_network(&self, text: &str) -> Result<(u128, u8)> {
        let net = match self.bits {
            32 => text
                .parse::<Ipv4Net>()
                .map(|n| (u128::from(u32::from(n.network())), n.prefix_len())),
            _ => text
                .parse::<Ipv6Net>()
                .map(|n| (u128::from(n.network()), n.prefix_len())),
        };
        net.map_err(|_| Error::invalid(self.network, clip(text), self.network_example))
    }
}

/// One family's fields as the document gives them, before defaults and checks.
struct RawFamily {
    network: Option<(u128, u8)>,
    subnet_len: Option<u64>,
    subnet_min: Option<u128>,
    subnet_max: Option<u128>,
}

impl RawFamily {
    fn decode(obj: &Map<String, Value>, fam: &Family) -> Result<RawFamily> {
        let network = opt_str(obj, fam.network, fam.network, fam.network_example)?
            .map(|t| fam.parse_network(t))
            .transpose()?;
        let subnet_len = opt_u64(
            obj,
            fam.subnet_len,
            fam.subnet_len,
            "a non-negative integer (a prefix length)",
        )?;
        let addr = |field: &str| -> Result<Option<u128>> {
            opt_str(obj, field, field, fam.address_example)?
                .map(|t| fam.parse_addr(field, t))
                .transpose()
        };
        Ok(RawFamily {
            network,
            subnet_len,
            subnet_min: addr(fam.subnet_min)?,
            subnet_max: addr(fam.subnet_max)?,
        })
    }
}

/// One family's resolved values.
struct Resolved {
    base: u128,
    prefix: u8,
    subnet_len: u8,
    min: u128,
    max: u128,
}

/// flannel's `CheckNetworkConfig` for one family, plus `SubnetMax >= SubnetMin`
/// (flannel accepts the reverse, then finds no subnet to lease).
fn resolve(fam: &Family, raw: &RawFamily) -> Result<Resolved> {
    let (base, prefix) = network(fam, raw)?;
    let subnet_len = subnet_len(fam, raw, prefix)?;
    let (min, max) = subnet_range(fam, raw, base, prefix, subnet_len)?;
    Ok(Resolved {
        base,
        prefix,
        subnet_len,
        min,
        max,
    })
}

/// The family's network: present, not /0, and large enough for four subnets.
fn network(fam: &Family, raw: &RawFamily) -> Result<(u128, u8)> {
    let (base, prefix) = raw.network.ok_or_else(|| {
        Error::invalid(
            fam.network,
            "(absent)",
            format!(
                "{} (required while {} is true)",
                fam.network_example, fam.enable
            ),
        )
    })?;
    let net_text = format!("{}/{}", fam.show(base), prefix);
    if base == 0 && prefix == 0 {
        // flannel's IP4Net.Empty(): the zero network means "not configured".
        return Err(Error::invalid(
            fam.network,
            net_text,
            format!(
                "{} (a /0 network is flannel's \"unset\")",
                fam.network_example
            ),
        ));
    }
    // Four subnets of at least four addresses each: /28 for IPv4, /124 for IPv6.
    let longest_prefix = fam.max_len - 2;
    if prefix > longest_prefix {
        return Err(Error::invalid(
            fam.network,
            net_text,
            format!(
                "a network with a prefix of /{longest_prefix} or shorter, \
                 large enough for four subnets of /{} each",
                fam.max_len
            ),
        ));
    }
    Ok((base, prefix))
}

/// `SubnetLen`: the default, or a length that leaves at least four subnets.
fn subnet_len(fam: &Family, raw: &RawFamily, prefix: u8) -> Result<u8> {
    match raw.subnet_len {
        None | Some(0) if prefix <= fam.default_len - 2 => Ok(fam.default_len),
        None | Some(0) => Ok(prefix + 2),
        Some(n) => {
            let lo = prefix + 2;
            if n < u64::from(lo) || n > u64::from(fam.max_len) {
                return Err(Error::invalid(
                    fam.subnet_len,
                    n,
                    format!(
                        "an integer from {lo} (the {} prefix length {prefix} + 2, so it holds \
                         at least four subnets) to {}, or 0 for the default",
                        fam.network, fam.max_len
                    ),
                ));
            }
            Ok(n as u8)
        }
    }
}

/// `SubnetMin` and `SubnetMax`: inside the network, on subnet boundaries, in order.
fn subnet_range(
    fam: &Family,
    raw: &RawFamily,
    base: u128,
    prefix: u8,
    subnet_len: u8,
) -> Result<(u128, u128)> {
    let net_text = format!("{}/{}", fam.show(base), prefix);
    let net_host = fam.host_mask(prefix);
    let sub_host = fam.host_mask(subnet_len);
    let inside = |field: &str, addr: u128| -> Result<u128> {
        if addr & !net_host != base {
            return Err(Error::invalid(
                field,
                fam.show(addr),
                format!("an address inside {} {net_text}", fam.network),
            ));
        }
        Ok(addr)
    };
    // Zero means unset. The first subnet is skipped: its address is the network's.
    let min = match raw.subnet_min.filter(|&a| a != 0) {
        None => base + sub_host + 1,
        Some(a) => inside(fam.subnet_min, a)?,
    };
    let max = match raw.subnet_max.filter(|&a| a != 0) {
        None => (base | net_host) & !sub_host,
        Some(a) => inside(fam.subnet_max, a)?,
    };
    for (field, addr) in [(fam.subnet_min, min), (fam.subnet_max, max)] {
        if addr & sub_host != 0 {
            return Err(Error::invalid(
                field,
                fam.show(addr),
                format!(
                    "an address on a /{subnet_len} boundary ({} is {subnet_len}), such as {}",
                    fam.subnet_len,
                    fam.show(addr & !sub_host)
                ),
            ));
        }
    }
    if max < min {
        return Err(Error::invalid(
            fam.subnet_max,
            fam.show(max),
            format!(
                "an address not below {} ({})",
                fam.subnet_min,
                fam.show(min)
            ),
        ));
    }
    Ok((min, max))
}

/// The low 32 bits of `addr` as an IPv4 address; IPv4 values never have more.
fn v4_addr(addr: u128) -> Ipv4Addr {
    Ipv4Addr::from(addr as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> NetworkConfig {
        NetworkConfig::parse(text).expect("a config flannel accepts")
    }

    /// The error for `text`, checked to name `field`, as every refusal must.
    fn refuse(text: &str, field: &str) -> String {
        let err = NetworkConfig::parse(text).expect_err(text).to_string();
        assert!(err.starts_with(&format!("{field}: ")), "{text}: {err}");
        err
    }

    fn v4(cfg: &NetworkConfig) -> Ipv4Config {
        cfg.ipv4.expect("IPv4 is enabled")
    }

    fn v6(cfg: &NetworkConfig) -> Ipv6Config {
        cfg.ipv6.expect("IPv6 is enabled")
    }

    fn round_trip(cfg: &NetworkConfig) {
        let text = cfg.to_json();
        assert_eq!(
            &NetworkConfig::parse(&text).expect("to_json output parses"),
            cfg,
            "{text}"
        );
    }

    #[test]
    fn kubernetes_vxlan_config() {
        let cfg = parse(r#"{"Network":"100.96.0.0/16","Backend":{"Type":"vxlan"}}"#);
        assert_eq!(
            v4(&cfg),
            Ipv4Config {
                network: "100.96.0.0/16".parse().expect("valid"),
                subnet_len: 24,
                subnet_min: Ipv4Addr::new(100, 96, 1, 0),
                subnet_max: Ipv4Addr::new(100, 96, 255, 0),
            }
        );
        assert_eq!(cfg.ipv6, None);
        assert_eq!(
            cfg.backend,
            Backend::Vxlan {
                vni: 1,
                port: 8472,
                mtu: None,
                direct_routing: false
            }
        );
        assert!(!cfg.backend_defaulted);
        assert_eq!(
            cfg.to_json(),
            r#"{"Network":"100.96.0.0/16","SubnetMin":"100.96.1.0","SubnetMax":"100.96.255.0","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1,"Port":8472}}"#
        );
        round_trip(&cfg);
    }

    #[test]
    fn flannel_docs_udp_config_with_explicit_range() {
        let cfg = parse(
            r#"{
                "Network": "10.0.0.0/8",
                "SubnetLen": 20,
                "SubnetMin": "10.10.0.0",
                "SubnetMax": "10.99.0.0",
                "Backend": {"Type": "udp", "Port": 7890}
            }"#,
        );
        let v4 = v4(&cfg);
        assert_eq!(v4.subnet_len, 20);
        assert_eq!(v4.subnet_min, Ipv4Addr::new(10, 10, 0, 0));
        assert_eq!(v4.subnet_max, Ipv4Addr::new(10, 99, 0, 0));
        assert_eq!(
            cfg.backend,
            Backend::Udp {
                port: 7890,
                direct_routing: false
            }
        );
        assert_eq!(cfg.backend.port(), Some(7890));
        round_trip(&cfg);
    }

    #[test]
    fn dual_stack_config() {
        let cfg = parse(
            r#"{"EnableIPv6": true, "Network": "10.42.0.0/16", "IPv6Network": "2001:cafe:42::/56",
                "Backend": {"Type": "vxlan", "VNI": 4096, "Port": 4789, "MTU": 1400}}"#,
        );
        assert_eq!(v4(&cfg).subnet_len, 24);
        let v6 = v6(&cfg);
        assert_eq!(
            v6.network,
            "2001:cafe:42::/56".parse::<Ipv6Net>().expect("valid")
        );
        assert_eq!(v6.subnet_len, 64);
        assert_eq!(
            v6.subnet_min,
            "2001:cafe:42:1::".parse::<Ipv6Addr>().expect("valid")
        );
        assert_eq!(
            v6.subnet_max,
            "2001:cafe:42:ff::".parse::<Ipv6Addr>().expect("valid")
        );
        assert_eq!(
            cfg.backend,
            Backend::Vxlan {
                vni: 4096,
                port: 4789,
                mtu: Some(1400),
                direct_routing: false
            }
        );
        round_trip(&cfg);
    }

    #[test]
    fn ipv6_only_config() {
        let cfg = parse(
            r#"{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56",
                "Backend": {"Type": "host-gw"}}"#,
        );
        assert_eq!(cfg.ipv4, None);
        assert_eq!(v6(&cfg).subnet_len, 64);
        assert!(cfg
            .to_json()
            .starts_with(r#"{"EnableIPv4":false,"EnableIPv6":true,"#));
        round_trip(&cfg);
    }

    #[test]
    fn host_gw_ignores_settings_it_does_not_read() {
        let cfg = parse(
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw","DirectRouting":true,"Port":1}}"#,
        );
        assert_eq!(cfg.backend, Backend::HostGw);
        assert_eq!(cfg.backend.port(), None);
        assert!(cfg.to_json().ends_with(r#""Backend":{"Type":"host-gw"}}"#));
        round_trip(&cfg);
    }

    #[test]
    fn vxlan_direct_routing_and_flannels_lowercase_tags() {
        // flannel's VXLANConfig tags are lowercase; Go matches keys ignoring case.
        let cfg = parse(
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"VXLAN","vni":7,"port":8472,"directRouting":true,"GBP":true,"Learning":false,"MacPrefix":"0E:2A"}}"#,
        );
        assert_eq!(
            cfg.backend,
            Backend::Vxlan {
                vni: 7,
                port: 8472,
                mtu: None,
                direct_routing: true
            }
        );
        round_trip(&cfg);
        assert!(cfg.backend.direct_routing());
    }

    #[test]
    fn udp_direct_routing_is_read_and_written_only_when_on() {
        let cfg =
            parse(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"udp","DirectRouting":true}}"#);
        assert_eq!(
            cfg.backend,
            Backend::Udp {
                port: UDP_DEFAULT_PORT,
                direct_routing: true
            }
        );
        assert!(cfg.backend.direct_routing());
        assert!(cfg
            .to_json()
            .ends_with(r#""Backend":{"Type":"udp","Port":8285,"DirectRouting":true}}"#));
        round_trip(&cfg);
        let off = parse(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}"#);
        assert!(!off.backend.direct_routing());
        assert!(off
            .to_json()
            .ends_with(r#""Backend":{"Type":"udp","Port":8285}}"#));
        assert!(!Backend::HostGw.direct_routing());
    }

    #[test]
    fn backend_omitted_defaults_to_udp_and_says_so() {
        let cfg = parse(r#"{"Network":"10.1.0.0/16"}"#);
        assert_eq!(
            cfg.backend,
            Backend::Udp {
                port: 8285,
                direct_routing: false
            }
        );
        assert!(cfg.backend_defaulted);
        assert_eq!(
            cfg.to_json(),
            r#"{"Network":"10.1.0.0/16","SubnetMin":"10.1.1.0","SubnetMax":"10.1.255.0","SubnetLen":24}"#
        );
        round_trip(&cfg);
        // null is the same as absent.
        assert!(parse(r#"{"Network":"10.1.0.0/16","Backend":null}"#).backend_defaulted);
        // An explicit udp backend is not "defaulted", and is written back.
        let explicit = parse(r#"{"Network":"10.1.0.0/16","Backend":{"Type":"udp"}}"#);
        assert!(!explicit.backend_defaulted);
        assert!(explicit
            .to_json()
            .contains(r#""Backend":{"Type":"udp","Port":8285}"#));
        round_trip(&explicit);
    }

    #[test]
    fn zero_means_unset() {
        let cfg = parse(
            r#"{"Network":"10.1.0.0/16","SubnetLen":0,"SubnetMin":"0.0.0.0","SubnetMax":"0.0.0.0",
                "Backend":{"Type":"vxlan","Port":0,"MTU":0}}"#,
        );
        assert_eq!(
            cfg,
            parse(r#"{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan"}}"#)
        );
        // ... except for VNI, which flannel sets to 1 before decoding, so 0 is 0.
        let cfg = parse(r#"{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan","VNI":0}}"#);
        assert!(matches!(cfg.backend, Backend::Vxlan { vni: 0, .. }));
    }

    #[test]
    fn subnet_len_defaults_follow_flannels_rule() {
        // /22 or shorter: /24; longer: prefix + 2; longer than /28: refused.
        for (network, len, min, max) in [
            ("10.0.0.0/8", 24, "10.0.1.0", "10.255.255.0"),
            ("10.0.0.0/22", 24, "10.0.1.0", "10.0.3.0"),
            ("10.0.0.0/23", 25, "10.0.0.128", "10.0.1.128"),
            ("10.0.0.0/26", 28, "10.0.0.16", "10.0.0.48"),
            ("10.0.0.0/28", 30, "10.0.0.4", "10.0.0.12"),
            ("0.0.0.0/1", 24, "0.0.1.0", "127.255.255.0"),
            ("128.0.0.0/1", 24, "128.0.1.0", "255.255.255.0"),
        ] {
            let cfg = parse(&format!(r#"{{"Network":"{network}"}}"#));
            let v4 = v4(&cfg);
            assert_eq!(v4.subnet_len, len, "{network}");
            assert_eq!(v4.subnet_min.to_string(), min, "{network}");
            assert_eq!(v4.subnet_max.to_string(), max, "{network}");
            round_trip(&cfg);
        }
        let err = refuse(r#"{"Network":"10.0.0.0/29"}"#, "Network");
        assert!(err.contains("/28 or shorter"), "{err}");
    }

    #[test]
    fn ipv6_subnet_len_defaults_follow_flannels_rule() {
        for (network, len, min, max) in [
            ("fd00::/48", 64, "fd00:0:0:1::", "fd00:0:0:ffff::"),
            ("fd00::/62", 64, "fd00:0:0:1::", "fd00:0:0:3::"),
            ("fd00::/63", 65, "fd00::8000:0:0:0", "fd00:0:0:1:8000::"),
            ("fd00::/124", 126, "fd00::4", "fd00::c"),
            ("8000::/1", 64, "8000:0:0:1::", "ffff:ffff:ffff:ffff::"),
        ] {
            let cfg = parse(&format!(
                r#"{{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"{network}"}}"#
            ));
            let v6 = v6(&cfg);
            assert_eq!(v6.subnet_len, len, "{network}");
            assert_eq!(v6.subnet_min.to_string(), min, "{network}");
            assert_eq!(v6.subnet_max.to_string(), max, "{network}");
            round_trip(&cfg);
        }
        refuse(
            r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/125"}"#,
            "IPv6Network",
        );
    }

    #[test]
    fn host_bits_of_the_network_are_cleared_as_go_parse_cidr_does() {
        let cfg =
            parse(r#"{"Network":"10.1.2.3/16","EnableIPv6":true,"IPv6Network":"fd00::1/48"}"#);
        assert_eq!(v4(&cfg).network.to_string(), "10.1.0.0/16");
        assert_eq!(v6(&cfg).network.to_string(), "fd00::/48");
    }

    #[test]
    fn keys_match_ignoring_case_and_unknown_keys_are_ignored() {
        let cfg = parse(
            r#"{"network":"10.1.0.0/16","SUBNETLEN":26,"EnableNFTables":true,"Comment":"x","backend":{"type":"Host-GW"}}"#,
        );
        assert_eq!(v4(&cfg).subnet_len, 26);
        assert_eq!(cfg.backend, Backend::HostGw);
    }

    #[test]
    fn subnet_len_out_of_range_is_refused_with_the_range() {
        let err = refuse(r#"{"Network":"10.1.0.0/16","SubnetLen":33}"#, "SubnetLen");
        assert!(err.contains("\"33\""), "{err}");
        assert!(err.contains("from 18") && err.contains("to 30"), "{err}");
        refuse(r#"{"Network":"10.1.0.0/16","SubnetLen":31}"#, "SubnetLen");
        // flannel wants at least four subnets: /17 in a /16 is too few.
        refuse(r#"{"Network":"10.1.0.0/16","SubnetLen":17}"#, "SubnetLen");
        refuse(r#"{"Network":"10.1.0.0/16","SubnetLen":16}"#, "SubnetLen");
        assert_eq!(
            v4(&parse(r#"{"Network":"10.1.0.0/16","SubnetLen":18}"#)).subnet_len,
            18
        );
        assert_eq!(
            v4(&parse(r#"{"Network":"10.1.0.0/16","SubnetLen":30}"#)).subnet_len,
            30
        );
        refuse(
            r#"{"EnableIPv6":true,"Network":"10.1.0.0/16","IPv6Network":"fd00::/56","IPv6SubnetLen":127}"#,
            "IPv6SubnetLen",
        );
        refuse(
            r#"{"EnableIPv6":true,"Network":"10.1.0.0/16","IPv6Network":"fd00::/56","IPv6SubnetLen":57}"#,
            "IPv6SubnetLen",
        );
    }

    #[test]
    fn subnet_range_checks() {
        let err = refuse(
            r#"{"Network":"10.1.0.0/16","SubnetMin":"10.2.0.0"}"#,
            "SubnetMin",
        );
        assert!(err.contains("inside Network 10.1.0.0/16"), "{err}");
        refuse(
            r#"{"Network":"10.1.0.0/16","SubnetMax":"10.0.255.0"}"#,
            "SubnetMax",
        );
        let err = refuse(
            r#"{"Network":"10.1.0.0/16","SubnetMin":"10.1.1.1"}"#,
            "SubnetMin",
        );
        assert!(
            err.contains("/24 boundary") && err.contains("10.1.1.0"),
            "{err}"
        );
        refuse(
            r#"{"Network":"10.1.0.0/16","SubnetMax":"10.1.255.128"}"#,
            "SubnetMax",
        );
        let err = refuse(
            r#"{"Network":"10.1.0.0/16","SubnetMin":"10.1.9.0","SubnetMax":"10.1.8.0"}"#,
            "SubnetMax",
        );
        assert!(err.contains("not below SubnetMin (10.1.9.0)"), "{err}");
        // SubnetMin may be the network's first subnet if given explicitly.
        assert_eq!(
            v4(&parse(
                r#"{"Network":"10.1.0.0/16","SubnetMin":"10.1.0.0"}"#
            ))
            .subnet_min,
            Ipv4Addr::new(10, 1, 0, 0)
        );
        let six = r#""EnableIPv6":true,"Network":"10.1.0.0/16","IPv6Network":"fd00::/48""#;
        refuse(
            &format!(r#"{{{six},"IPv6SubnetMin":"fd01::"}}"#),
            "IPv6SubnetMin",
        );
        refuse(
            &format!(r#"{{{six},"IPv6SubnetMax":"fd01::"}}"#),
            "IPv6SubnetMax",
        );
        refuse(
            &format!(r#"{{{six},"IPv6SubnetMin":"fd00:0:0:1::1"}}"#),
            "IPv6SubnetMin",
        );
        refuse(
            &format!(r#"{{{six},"IPv6SubnetMax":"fd00:0:0:1::1"}}"#),
            "IPv6SubnetMax",
        );
        refuse(
            &format!(r#"{{{six},"IPv6SubnetMin":"fd00:0:0:9::","IPv6SubnetMax":"fd00:0:0:8::"}}"#),
            "IPv6SubnetMax",
        );
        let cfg = parse(&format!(
            r#"{{{six},"IPv6SubnetMin":"fd00:0:0:10::","IPv6SubnetMax":"fd00:0:0:20::"}}"#
        ));
        assert_eq!(v6(&cfg).subnet_max.to_string(), "fd00:0:0:20::");
        round_trip(&cfg);
    }

    #[test]
    fn missing_or_empty_networks_are_refused() {
        let err = refuse(r#"{"Backend":{"Type":"vxlan"}}"#, "Network");
        assert!(err.contains("EnableIPv4"), "{err}");
        refuse(r#"{"Network":"0.0.0.0/0"}"#, "Network");
        refuse(
            r#"{"EnableIPv6":true,"Network":"10.1.0.0/16"}"#,
            "IPv6Network",
        );
        refuse(
            r#"{"EnableIPv6":true,"Network":"10.1.0.0/16","IPv6Network":"::/0"}"#,
            "IPv6Network",
        );
        refuse(
            r#"{"EnableIPv4":false,"Network":"10.1.0.0/16"}"#,
            "EnableIPv4",
        );
    }

    #[test]
    fn a_disabled_family_is_not_checked_but_must_be_well_typed() {
        let cfg = parse(
            r#"{"EnableIPv6":false,"Network":"10.1.0.0/16","IPv6Network":"fd00::/125","IPv6SubnetLen":3}"#,
        );
        assert_eq!(cfg.ipv6, None);
        refuse(
            r#"{"Network":"10.1.0.0/16","IPv6SubnetLen":"64"}"#,
            "IPv6SubnetLen",
        );
    }

    #[test]
    fn malformed_values_name_their_field() {
        for (text, field) in [
            (r#"{"Network":"10.1.0.0"}"#, "Network"),
            (r#"{"Network":"10.1.0.0/33"}"#, "Network"),
            (r#"{"Network":"fd00::/48"}"#, "Network"),
            (r#"{"Network":16}"#, "Network"),
            (r#"{"Network":"10.1.0.0/16","SubnetLen":"24"}"#, "SubnetLen"),
            (r#"{"Network":"10.1.0.0/16","SubnetLen":24.5}"#, "SubnetLen"),
            (r#"{"Network":"10.1.0.0/16","SubnetLen":-1}"#, "SubnetLen"),
            (
                r#"{"Network":"10.1.0.0/16","SubnetMin":"10.1.1"}"#,
                "SubnetMin",
            ),
            (
                r#"{"Network":"10.1.0.0/16","SubnetMax":["10.1.1.0"]}"#,
                "SubnetMax",
            ),
            (
                r#"{"Network":"10.1.0.0/16","EnableIPv4":"yes"}"#,
                "EnableIPv4",
            ),
            (r#"{"Network":"10.1.0.0/16","EnableIPv6":1}"#, "EnableIPv6"),
            (
                r#"{"Network":"10.1.0.0/16","IPv6Network":"10.2.0.0/16"}"#,
                "IPv6Network",
            ),
            (
                r#"{"Network":"10.1.0.0/16","IPv6SubnetMin":"10.2.0.0"}"#,
                "IPv6SubnetMin",
            ),
            (r#"{"Network":"10.1.0.0/16","Backend":"vxlan"}"#, "Backend"),
            (r#"{"Network":"10.1.0.0/16","Backend":{}}"#, "Backend.Type"),
            (
                r#"{"Network":"10.1.0.0/16","Backend":{"Type":7}}"#,
                "Backend.Type",
            ),
            (
                r#"{"Network":"10.1.0.0/16","Backend":{"Type":"udp","Port":65536}}"#,
                "Backend.Port",
            ),
            (
                r#"{"Network":"10.1.0.0/16","Backend":{"Type":"udp","Port":"8285"}}"#,
                "Backend.Port",
            ),
            (
                r#"{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan","VNI":16777216}}"#,
                "Backend.VNI",
            ),
            (
                r#"{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan","VNI":-1}}"#,
                "Backend.VNI",
            ),
            (
                r#"{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan","MTU":67}}"#,
                "Backend.MTU",
            ),
            (
                r#"{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan","MTU":65536}}"#,
                "Backend.MTU",
            ),
            (
                r#"{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan","DirectRouting":"true"}}"#,
                "Backend.DirectRouting",
            ),
        ] {
            refuse(text, field);
        }
    }

    #[test]
    fn unknown_backend_types_list_the_known_ones() {
        for name in ["wireguard", "ipip", "alloc", "aws-vpc", ""] {
            let err = refuse(
                &format!(r#"{{"Network":"10.1.0.0/16","Backend":{{"Type":"{name}"}}}}"#),
                "Backend.Type",
            );
            assert!(err.contains(r#""udp", "vxlan", "host-gw""#), "{err}");
        }
    }

    #[test]
    fn documents_that_are_not_objects_are_refused() {
        for text in [
            "",
            "null",
            "[]",
            "\"Network\"",
            "{",
            r#"{"Network":"10.1.0.0/16"} x"#,
        ] {
            let err = NetworkConfig::parse(text).expect_err(text).to_string();
            assert!(err.starts_with("network config: "), "{err}");
        }
        let err = NetworkConfig::parse_bytes(b"{\"Network\":\"10.1.0.0/16\xff\"}")
            .expect_err("not UTF-8");
        assert!(err.to_string().contains("UTF-8"), "{err}");
    }

    #[test]
    fn accepts_checks_a_lease_against_the_config() {
        let cfg =
            parse(r#"{"Network":"10.1.0.0/16","SubnetMin":"10.1.10.0","SubnetMax":"10.1.20.0"}"#);
        let v4 = v4(&cfg);
        let net = |s: &str| s.parse::<Ipv4Net>().expect("valid");
        assert!(v4.accepts(net("10.1.10.0/24")));
        assert!(v4.accepts(net("10.1.20.0/24")));
        assert!(!v4.accepts(net("10.1.21.0/24")));
        assert!(!v4.accepts(net("10.1.10.0/25")));
        assert!(!v4.accepts(net("10.1.10.1/24")));
        let cfg = parse(r#"{"EnableIPv6":true,"Network":"10.1.0.0/16","IPv6Network":"fd00::/48"}"#);
        let v6 = v6(&cfg);
        assert!(v6.accepts("fd00:0:0:5::/64".parse().expect("valid")));
        assert!(!v6.accepts("fd00::/64".parse().expect("valid")));
        assert!(!v6.accepts("fd01:0:0:5::/64".parse().expect("valid")));
    }

    fn arb_config() -> impl Strategy<Value = String> {
        (
            any::<u32>(),
            1u8..=28,
            any::<u128>(),
            1u8..=124,
            0u8..=3,
            prop_oneof![
                Just(String::new()),
                Just(r#","Backend":{"Type":"udp","Port":9000}"#.to_owned()),
                (0u32..=0xff_ffff, any::<u16>(), any::<bool>()).prop_map(|(vni, port, dr)| format!(
                    r#","Backend":{{"Type":"vxlan","VNI":{vni},"Port":{port},"DirectRouting":{dr}}}"#
                )),
                Just(r#","Backend":{"Type":"host-gw"}"#.to_owned()),
            ],
        )
            .prop_map(|(a4, p4, a6, p6, families, backend)| {
                let n4 = Ipv4Net::new(Ipv4Addr::from(a4), p4).expect("valid");
                let n6 = Ipv6Net::new(Ipv6Addr::from(a6), p6).expect("valid");
                format!(
                    r#"{{"EnableIPv4":{},"EnableIPv6":{},"Network":"{n4}","IPv6Network":"{n6}"{backend}}}"#,
                    families & 1 == 0,
                    families & 2 != 0,
                )
            })
    }

    proptest! {
        #[test]
        fn serialize_then_parse_is_identity(text in arb_config()) {
            if let Ok(cfg) = NetworkConfig::parse(&text) {
                let again = NetworkConfig::parse(&cfg.to_json()).expect("to_json output parses");
                prop_assert_eq!(again, cfg);
            }
        }
    }
}
