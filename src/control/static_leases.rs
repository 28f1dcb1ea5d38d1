//! The static leases file: a snapshot of flannel's etcd prefix in one JSON file,
//! for clusters that run without etcd.
//!
//! ```json
//! {"config": {"Network": "100.96.0.0/16", "Backend": {"Type": "vxlan"}},
//!  "subnets": {
//!    "100.96.1.0-24": {"PublicIP": "192.0.2.1", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:01:00"}},
//!    "100.96.2.0-24": {"PublicIP": "192.0.2.2", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:02:00"}}}}
//! ```
//!
//! `config` is the value of `<prefix>/config`, `subnets` maps each key under
//! `<prefix>/subnets/` to its value. Both values may be given as JSON (as above) or
//! as a JSON string holding the text etcd stores, so `etcdctl get` output can be
//! pasted. They are read by [`NetworkConfig::parse_bytes`] and [`LeaseAttrs::parse`],
//! with every flannel default and check those apply.
//!
//! The file is then checked as a whole, for what flannel's subnet manager would
//! never have produced: a lease outside `Network` or not `SubnetLen` long (or the
//! IPv6 twins), two leases for one subnet or one public address, a lease of another
//! backend than the config's, a vxlan lease of another VNI, a VTEP MAC that is
//! multicast or zero. Any of these refuses the whole file, with the key and the field
//! named, so the daemon keeps the table it had rather than publish half an edit.
//!
//! The file is ringlay's own format, so its two top-level fields are matched exactly
//! and anything else is refused; inside the values flannel's rules apply (keys match
//! ignoring case, unknown keys are ignored). A key given twice, which JSON parsers
//! silently collapse to one, is refused.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{Backend, Lease, LeaseAttrs, NetworkConfig, SubnetKey};
use crate::{Error, Result};

/// The largest static leases file ringlay reads, in bytes: room for some 300,000
/// leases, while a file that is not a leases file at all (a device, a log) is
/// refused before it fills memory.
pub const MAX_FILE_LEN: usize = 64 << 20;

/// What error messages call the file.
const WHAT: &str = "static leases file";

/// The longest value text an error message repeats.
const SHOW_LEN: usize = 80;

const CONFIG_EXPECTED: &str = r#"the network config: an object like {"Network":"100.96.0.0/16","Backend":{"Type":"vxlan"}}, or the same as a JSON string, as etcd stores it"#;
const SUBNETS_EXPECTED: &str = r#"an object mapping subnet keys to lease values, like {"100.96.1.0-24":{"PublicIP":"192.0.2.1"}}; {} for no leases"#;
const LEASE_EXPECTED: &str = r#"a lease value: an object like {"PublicIP":"192.0.2.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:01:00"}}, or the same as a JSON string, as etcd stores it"#;

/// A validated static leases file: the network config and every lease, sorted by
/// key (IPv4 subnet, then IPv6 subnet) so equal files give equal values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticLeases {
    /// The network config (`config`).
    pub config: NetworkConfig,
    /// Every lease (`subnets`), sorted by key.
    pub leases: Vec<Lease>,
}

impl StaticLeases {
    /// Parses and validates a static leases file's contents. Errors name the key and
    /// the field, show the value and say what flannel would have written instead.
    pub fn parse(bytes: &[u8]) -> Result<StaticLeases> {
        if bytes.len() > MAX_FILE_LEN {
            return Err(Error::TooLarge {
                what: WHAT,
                len: bytes.len(),
                limit: MAX_FILE_LEN,
            });
        }
        let text =
            std::str::from_utf8(bytes).map_err(|source| Error::NotUtf8 { what: WHAT, source })?;
        let raw = match serde_json::from_str(text)
            .map_err(|source| Error::Json { what: WHAT, source })?
        {
            RawTop::File(raw) => raw,
            RawTop::Other(v) => {
                return Err(Error::invalid(
                    WHAT,
                    show(&v),
                    r#"a JSON object with the fields "config" and "subnets""#,
                ))
            }
        };
        if !raw.unknown.is_empty() {
            return Err(Error::invalid(
                WHAT,
                clip(&raw.unknown.join(", ")),
                r#"only the fields "config" (the network config) and "subnets" (subnet key to lease value); field names are case-sensitive"#,
            ));
        }
        let config = match raw.config.as_slice() {
            [] => return Err(Error::invalid("config", "(absent)", CONFIG_EXPECTED)),
            [value] => parse_config(value)?,
            [..] => {
                return Err(Error::invalid(
                    "config",
                    "(given more than once)",
                    "one config",
                ))
            }
        };
        let entries = match raw.subnets.as_slice() {
            [] => return Err(Error::invalid("subnets", "(absent)", SUBNETS_EXPECTED)),
            [RawSubnets::Entries(Entries(entries))] => entries,
            [RawSubnets::Other(v)] => {
                return Err(Error::invalid("subnets", show(v), SUBNETS_EXPECTED))
            }
            [..] => {
                return Err(Error::invalid(
                    "subnets",
                    "(given more than once)",
                    "one subnets object",
                ))
            }
        };

        let mut seen = Seen::default();
        let mut leases = Vec::with_capacity(entries.len());
        for (key_text, value) in entries {
            let lease = parse_lease(key_text, value, &config)?;
            seen.check(key_text, &lease)?;
            leases.push(lease);
        }
        leases.sort_unstable_by_key(|l| l.key);
        Ok(StaticLeases { config, leases })
    }

    /// Reads and parses the file at `path`. Errors name the path; a refused file's
    /// error also names the key and field, as [`StaticLeases::parse`] does.
    pub fn load(path: &Path) -> Result<StaticLeases> {
        let io = |source| Error::Io {
            path: path.to_owned(),
            action: "read the static leases file",
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut bytes = Vec::new();
        // One byte over the cap, so an oversized file is refused as such.
        file.take(MAX_FILE_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        StaticLeases::parse(&bytes).map_err(|e| Error::InFile {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }
}

/// `subnets["<key>"]`: how errors name a lease, as a jq path would.
fn at(key_text: &str) -> String {
    format!("subnets[\"{}\"]", clip(key_text))
}

fn parse_config(value: &Value) -> Result<NetworkConfig> {
    let parsed = match value {
        Value::String(text) => NetworkConfig::parse(text),
        Value::Object(_) => NetworkConfig::parse_bytes(&to_bytes(value)),
        other => return Err(Error::invalid("config", show(other), CONFIG_EXPECTED)),
    };
    parsed.map_err(|e| match e {
        Error::Invalid {
            field,
            value,
            expected,
        } => Error::Invalid {
            field: match field.as_str() {
                "network config" => "config".to_owned(),
                _ => format!("config.{field}"),
            },
            value,
            expected,
        },
        // "network config: malformed JSON …" already says where.
        other => other,
    })
}

/// Parses one lease and checks it against the config.
fn parse_lease(key_text: &str, value: &Value, config: &NetworkConfig) -> Result<Lease> {
    let here = at(key_text);
    let key: SubnetKey = key_text.parse().map_err(|e| match e {
        Error::Invalid {
            value, expected, ..
        } => Error::Invalid {
            field: here.clone(),
            value,
            expected: format!("a subnet key: {expected}"),
        },
        other => other,
    })?;
    check_key(&here, &key, config)?;

    let parsed = match value {
        Value::String(text) => LeaseAttrs::parse(text.as_bytes()),
        Value::Object(_) => LeaseAttrs::parse(&to_bytes(value)),
        other => return Err(Error::invalid(&here, show(other), LEASE_EXPECTED)),
    };
    let attrs = parsed.map_err(|e| match e {
        Error::Invalid {
            field,
            value,
            expected,
        } => Error::Invalid {
            field: match field.as_str() {
                "lease value" => here.clone(),
                _ => format!("{here}.{field}"),
            },
            value,
            expected,
        },
        // Malformed JSON inside a string value, or an oversized value.
        other => Error::invalid(&here, clip(&other.to_string()), LEASE_EXPECTED),
    })?;

    if config.ipv4.is_some() && attrs.public_ip.is_unspecified() {
        return Err(Error::invalid(
            format!("{here}.PublicIP"),
            attrs.public_ip,
            "the node's IPv4 underlay address: the config enables IPv4, and peers send to it",
        ));
    }
    let want = config.backend.backend_type();
    if attrs.backend() != want {
        let have = match attrs.backend_type {
            Some(t) => t.as_str().to_owned(),
            None => "(absent, which means udp)".to_owned(),
        };
        return Err(Error::invalid(
            format!("{here}.BackendType"),
            have,
            format!(
                "\"{want}\", the config's Backend.Type: every node of a flannel network runs the backend the config names"
            ),
        ));
    }
    if let Backend::Vxlan { vni, .. } = config.backend {
        for (field, data) in [
            ("BackendData", attrs.backend_data),
            ("BackendV6Data", attrs.backend_v6_data),
        ] {
            let Some(data) = data else { continue };
            if data.vni != vni {
                return Err(Error::invalid(
                    format!("{here}.{field}.VNI"),
                    data.vni,
                    format!(
                        "{vni}, the config's Backend.VNI: a VTEP drops frames of any other VNI"
                    ),
                ));
            }
            let mac = data.vtep_mac;
            if mac.is_multicast() || mac.octets() == [0; 6] {
                return Err(Error::invalid(
                    format!("{here}.{field}.VtepMAC"),
                    mac,
                    "a unicast MAC that is not all zeros, like 0e:00:00:00:01:00 (frames to the node are addressed to it)",
                ));
            }
        }
    }
    Ok(Lease { key, attrs })
}

/// Checks that each subnet of `key` is one flannel could have leased in `config`.
fn check_key(here: &str, key: &SubnetKey, config: &NetworkConfig) -> Result<()> {
    match (config.ipv4, key.v4) {
        (Some(c), Some(n)) if !(c.network.contains(&n) && n.prefix_len() == c.subnet_len) => {
            return Err(Error::invalid(
                here,
                n,
                format!(
                    "a /{} subnet inside Network {}: flannel leases only SubnetLen-long subnets of Network",
                    c.subnet_len, c.network
                ),
            ));
        }
        (Some(c), None) => {
            return Err(Error::invalid(
                here,
                "0.0.0.0-0 (no IPv4 subnet)",
                format!(
                    "a key with a /{} subnet of Network {}: the config enables IPv4, so every lease has one",
                    c.subnet_len, c.network
                ),
            ));
        }
        (None, Some(n)) => {
            return Err(Error::invalid(
                here,
                n,
                "a key without IPv4 (0.0.0.0-0&…): the config says \"EnableIPv4\": false",
            ));
        }
        _ => {}
    }
    match (config.ipv6, key.v6) {
        (Some(c), Some(n)) if !(c.network.contains(&n) && n.prefix_len() == c.subnet_len) => Err(
            Error::invalid(
                here,
                n,
                format!(
                    "an IPv6 part of a /{} subnet inside IPv6Network {}: flannel leases only IPv6SubnetLen-long subnets of IPv6Network",
                    c.subnet_len, c.network
                ),
            ),
        ),
        (Some(c), None) => Err(Error::invalid(
            here,
            "(no IPv6 part)",
            format!(
                "a dual-stack key like 100.96.1.0-24&fd00::-64 with a /{} subnet of IPv6Network {}: the config enables IPv6, so every lease has one",
                c.subnet_len, c.network
            ),
        )),
        (None, Some(n)) => Err(Error::invalid(
            here,
            n,
            "a key without an IPv6 part: the config does not say \"EnableIPv6\": true",
        )),
        _ => Ok(()),
    }
}

/// What earlier leases of the file hold, each with the key text that holds it, to
/// refuse a second lease of the same subnet or the same node.
#[derive(Default)]
struct Seen<'a> {
    keys: HashSet<&'a str>,
    v4: HashMap<Ipv4Net, &'a str>,
    v6: HashMap<Ipv6Net, &'a str>,
    public_ip: HashMap<Ipv4Addr, &'a str>,
    public_ipv6: HashMap<Ipv6Addr, &'a str>,
}

impl<'a> Seen<'a> {
    fn check(&mut self, key_text: &'a str, lease: &Lease) -> Result<()> {
        let here = at(key_text);
        if !self.keys.insert(key_text) {
            return Err(Error::invalid(
                here,
                clip(key_text),
                "one entry per key: this key appears twice, and JSON readers would keep only one of the two",
            ));
        }
        let taken = |other: &str, what: &str| {
            format!(
                "{what} no other lease has: {} has it too, and each subnet and each node holds one lease",
                at(other)
            )
        };
        if let Some(n) = lease.key.v4 {
            if let Some(other) = self.v4.insert(n, key_text) {
                return Err(Error::invalid(here, n, taken(other, "a subnet")));
            }
        }
        if let Some(n) = lease.key.v6 {
            if let Some(other) = self.v6.insert(n, key_text) {
                return Err(Error::invalid(here, n, taken(other, "an IPv6 subnet")));
            }
        }
        // flannel writes 0.0.0.0 for "no IPv4 address"; many leases may say so.
        let ip = lease.attrs.public_ip;
        if !ip.is_unspecified() {
            if let Some(other) = self.public_ip.insert(ip, key_text) {
                return Err(Error::invalid(
                    format!("{here}.PublicIP"),
                    ip,
                    taken(other, "an address"),
                ));
            }
        }
        if let Some(ip) = lease.attrs.public_ipv6 {
            if let Some(other) = self.public_ipv6.insert(ip, key_text) {
                return Err(Error::invalid(
                    format!("{here}.PublicIPv6"),
                    ip,
                    taken(other, "an address"),
                ));
            }
        }
        Ok(())
    }
}

/// `value` as compact JSON bytes, for the parsers that read etcd's bytes.
fn to_bytes(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// A value as an error message shows it: strings without quotes, else compact JSON.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => clip(s),
        other => clip(&other.to_string()),
    }
}

/// `s`, cut to a length an error message can carry.
fn clip(s: &str) -> String {
    match s.char_indices().nth(SHOW_LEN) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

/// The file as read, before any value is interpreted: an object, or anything else
/// (refused with the value shown rather than as "malformed JSON").
#[derive(Deserialize)]
#[serde(untagged)]
enum RawTop {
    File(RawFile),
    Other(Value),
}

/// The top-level fields, every occurrence kept so that duplicates can be refused.
struct RawFile {
    config: Vec<Value>,
    subnets: Vec<RawSubnets>,
    unknown: Vec<String>,
}

/// `subnets`: its entries in file order, duplicates kept, or a value of another type.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawSubnets {
    Entries(Entries),
    Other(Value),
}

/// A JSON object's entries in order, keeping keys that occur twice (a `Map` would
/// keep only the last).
struct Entries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for RawFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a static leases object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<RawFile, A::Error> {
                let mut raw = RawFile {
                    config: Vec::new(),
                    subnets: Vec::new(),
                    unknown: Vec::new(),
                };
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "config" => raw.config.push(map.next_value()?),
                        "subnets" => raw.subnets.push(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            raw.unknown.push(key);
                        }
                    }
                }
                Ok(raw)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of subnet keys")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Entries, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{BackendType, VxlanBackendData};
    use crate::wire::MacAddr;

    /// The example of the module docs: two vxlan nodes.
    pub(crate) const VXLAN: &str = r#"{"config": {"Network": "100.96.0.0/16", "Backend": {"Type": "vxlan"}},
 "subnets": {
   "100.96.2.0-24": {"PublicIP": "192.0.2.2", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:02:00"}},
   "100.96.1.0-24": {"PublicIP": "192.0.2.1", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:01:00"}}}}"#;

    /// flannel's udp backend: no BackendType in the leases; the config as etcd text.
    const UDP: &str = r#"{"config": "{\"Network\":\"10.5.0.0/16\",\"Backend\":{\"Type\":\"udp\",\"Port\":8285}}",
 "subnets": {
   "10.5.7.0-24": "{\"PublicIP\":\"198.51.100.7\",\"PublicIPv6\":null}",
   "10.5.9.0-24": {"PublicIP": "198.51.100.9", "PublicIPv6": null}}}"#;

    /// Dual-stack vxlan, as flannel writes it on dual-stack nodes.
    const DUAL: &str = r#"{"config": {"EnableIPv6": true, "Network": "100.96.0.0/16", "IPv6Network": "fd00:100:96::/48", "Backend": {"Type": "vxlan", "VNI": 4}},
 "subnets": {
   "100.96.1.0-24&fd00:100:96:1::-64": {"PublicIP": "192.0.2.1", "PublicIPv6": "2001:db8::1", "BackendType": "vxlan",
      "BackendData": {"VNI": 4, "VtepMAC": "0e:00:00:00:01:00"}, "BackendV6Data": {"VNI": 4, "VtepMAC": "0e:00:00:00:01:06"}},
   "100.96.2.0-24&fd00:100:96:2::-64": {"PublicIP": "192.0.2.2", "PublicIPv6": "2001:db8::2", "BackendType": "vxlan",
      "BackendData": {"VNI": 4, "VtepMAC": "0e:00:00:00:02:00"}, "BackendV6Data": {"VNI": 4, "VtepMAC": "0e:00:00:00:02:06"}}}}"#;

    pub(crate) fn parse(text: &str) -> StaticLeases {
        StaticLeases::parse(text.as_bytes()).expect("a valid static leases file")
    }

    /// Refuses `text`, checks the error names `field`, returns the message.
    fn refuse(text: &str, field: &str) -> String {
        let err = StaticLeases::parse(text.as_bytes()).expect_err(field);
        let msg = err.to_string();
        assert!(
            matches!(&err, Error::Invalid { field: f, .. } if f == field),
            "expected field {field}: {msg}"
        );
        msg
    }

    fn mac(s: &str) -> MacAddr {
        s.parse().expect("valid MAC")
    }

    /// The VXLAN example with `subnets` replaced.
    fn vxlan_with(subnets: &str) -> String {
        format!(
            r#"{{"config": {{"Network": "100.96.0.0/16", "Backend": {{"Type": "vxlan"}}}}, "subnets": {{{subnets}}}}}"#
        )
    }

    fn vx(ip: &str, vni: u32, mac: &str) -> String {
        format!(
            r#"{{"PublicIP": "{ip}", "BackendType": "vxlan", "BackendData": {{"VNI": {vni}, "VtepMAC": "{mac}"}}}}"#
        )
    }

    #[test]
    fn the_documented_example_parses_sorted() {
        let s = parse(VXLAN);
        assert_eq!(
            s.config.backend,
            Backend::Vxlan {
                vni: 1,
                port: 8472,
                mtu: None,
                direct_routing: false
            }
        );
        let keys: Vec<String> = s.leases.iter().map(|l| l.key.to_string()).collect();
        assert_eq!(keys, ["100.96.1.0-24", "100.96.2.0-24"]);
        assert_eq!(
            s.leases[0].attrs,
            LeaseAttrs {
                public_ip: Ipv4Addr::new(192, 0, 2, 1),
                public_ipv6: None,
                backend_type: Some(BackendType::Vxlan),
                backend_data: Some(VxlanBackendData {
                    vni: 1,
                    vtep_mac: mac("0e:00:00:00:01:00")
                }),
                backend_v6_data: None,
                features: Default::default(),
            }
        );
    }

    #[test]
    fn udp_leases_and_values_as_etcd_text() {
        let s = parse(UDP);
        assert_eq!(
            s.config.backend,
            Backend::Udp {
                port: 8285,
                direct_routing: false
            }
        );
        assert_eq!(s.leases.len(), 2);
        assert_eq!(s.leases[0].key.to_string(), "10.5.7.0-24");
        assert_eq!(s.leases[0].attrs.backend_type, None);
        assert_eq!(s.leases[0].attrs.backend(), BackendType::Udp);
        assert_eq!(s.leases[1].attrs.public_ip, Ipv4Addr::new(198, 51, 100, 9));
    }

    #[test]
    fn a_vxlan_lease_without_vtep_mac_is_accepted() {
        let s = parse(&vxlan_with(
            r#""100.96.3.0-24": {"PublicIP": "192.0.2.3", "BackendType": "vxlan"}"#,
        ));
        assert_eq!(s.leases[0].attrs.backend_data, None);
    }

    #[test]
    fn dual_stack() {
        let s = parse(DUAL);
        assert!(s.config.ipv6.is_some());
        let l = &s.leases[1];
        assert_eq!(l.key.to_string(), "100.96.2.0-24&fd00:100:96:2::-64");
        assert_eq!(
            l.attrs.public_ipv6,
            Some("2001:db8::2".parse().expect("valid"))
        );
        assert_eq!(
            l.attrs.backend_v6_data.map(|d| d.vtep_mac),
            Some(mac("0e:00:00:00:02:06"))
        );
    }

    #[test]
    fn empty_subnets_are_allowed() {
        assert!(parse(&vxlan_with("")).leases.is_empty());
    }

    #[test]
    fn host_gw_leases() {
        let s = parse(
            r#"{"config": {"Network": "10.9.0.0/16", "Backend": {"Type": "host-gw"}},
                "subnets": {"10.9.4.0-24": {"PublicIP": "203.0.113.4", "BackendType": "host-gw"}}}"#,
        );
        assert_eq!(s.leases[0].attrs.backend(), BackendType::HostGw);
    }

    #[test]
    fn malformed_keys_are_named() {
        let msg = refuse(
            &vxlan_with(r#""100.96.1.0/24": {"PublicIP": "192.0.2.1"}"#),
            r#"subnets["100.96.1.0/24"]"#,
        );
        assert!(msg.contains("a.b.c.d-N"), "{msg}");
        refuse(
            &vxlan_with(r#""100.96.1.1-24": {"PublicIP": "192.0.2.1"}"#),
            r#"subnets["100.96.1.1-24"]"#,
        );
    }

    #[test]
    fn subnets_outside_the_network_or_of_another_length_are_refused() {
        let msg = refuse(
            &vxlan_with(&format!(
                r#""100.97.1.0-24": {}"#,
                vx("192.0.2.1", 1, "0e:00:00:00:01:00")
            )),
            r#"subnets["100.97.1.0-24"]"#,
        );
        assert!(msg.contains("inside Network 100.96.0.0/16"), "{msg}");
        let msg = refuse(
            &vxlan_with(&format!(
                r#""100.96.1.0-25": {}"#,
                vx("192.0.2.1", 1, "0e:00:00:00:01:00")
            )),
            r#"subnets["100.96.1.0-25"]"#,
        );
        assert!(msg.contains("a /24 subnet"), "{msg}");
        // A dual-stack key whose IPv6 part is outside IPv6Network.
        let text = DUAL.replace("fd00:100:96:2::-64", "fd00:100:97:2::-64");
        let msg = refuse(&text, r#"subnets["100.96.2.0-24&fd00:100:97:2::-64"]"#);
        assert!(msg.contains("IPv6Network fd00:100:96::/48"), "{msg}");
        // An IPv4-only key in a dual-stack network, and a dual-stack key in an IPv4 one.
        let text = DUAL.replace("100.96.2.0-24&fd00:100:96:2::-64", "100.96.2.0-24");
        let msg = refuse(&text, r#"subnets["100.96.2.0-24"]"#);
        assert!(msg.contains("enables IPv6"), "{msg}");
        let msg = refuse(
            &vxlan_with(&format!(
                r#""100.96.1.0-24&fd00::-64": {}"#,
                vx("192.0.2.1", 1, "0e:00:00:00:01:00")
            )),
            r#"subnets["100.96.1.0-24&fd00::-64"]"#,
        );
        assert!(msg.contains("EnableIPv6"), "{msg}");
    }

    #[test]
    fn two_leases_of_one_node_are_refused_naming_both() {
        let msg = refuse(
            &vxlan_with(&format!(
                r#""100.96.1.0-24": {}, "100.96.2.0-24": {}"#,
                vx("192.0.2.1", 1, "0e:00:00:00:01:00"),
                vx("192.0.2.1", 1, "0e:00:00:00:02:00")
            )),
            r#"subnets["100.96.2.0-24"].PublicIP"#,
        );
        assert!(
            msg.contains(r#"subnets["100.96.1.0-24"] has it too"#),
            "{msg}"
        );
        let text = DUAL.replace("2001:db8::2", "2001:db8::1");
        refuse(
            &text,
            r#"subnets["100.96.2.0-24&fd00:100:96:2::-64"].PublicIPv6"#,
        );
    }

    #[test]
    fn one_subnet_leased_twice_is_refused() {
        // The same key twice, which a JSON map would silently collapse.
        let msg = refuse(
            &vxlan_with(&format!(
                r#""100.96.1.0-24": {}, "100.96.1.0-24": {}"#,
                vx("192.0.2.1", 1, "0e:00:00:00:01:00"),
                vx("192.0.2.2", 1, "0e:00:00:00:02:00")
            )),
            r#"subnets["100.96.1.0-24"]"#,
        );
        assert!(msg.contains("appears twice"), "{msg}");
        // Two spellings of one subnet.
        let msg = refuse(
            &vxlan_with(&format!(
                r#""100.96.1.0-24": {}, "100.96.1.0-024": {}"#,
                vx("192.0.2.1", 1, "0e:00:00:00:01:00"),
                vx("192.0.2.2", 1, "0e:00:00:00:02:00")
            )),
            r#"subnets["100.96.1.0-024"]"#,
        );
        assert!(
            msg.contains(r#"subnets["100.96.1.0-24"] has it too"#),
            "{msg}"
        );
        // Two dual-stack leases sharing the IPv6 subnet.
        let text = DUAL.replace("fd00:100:96:2::-64", "fd00:100:96:1::-64");
        refuse(&text, r#"subnets["100.96.2.0-24&fd00:100:96:1::-64"]"#);
    }

    #[test]
    fn a_lease_of_another_backend_is_refused_naming_both() {
        let msg = refuse(
            &vxlan_with(r#""100.96.1.0-24": {"PublicIP": "192.0.2.1", "BackendType": "host-gw"}"#),
            r#"subnets["100.96.1.0-24"].BackendType"#,
        );
        assert!(
            msg.contains(r#""host-gw""#) && msg.contains(r#""vxlan""#),
            "{msg}"
        );
        // A udp lease (no BackendType) in a vxlan network.
        let msg = refuse(
            &vxlan_with(r#""100.96.1.0-24": {"PublicIP": "192.0.2.1"}"#),
            r#"subnets["100.96.1.0-24"].BackendType"#,
        );
        assert!(
            msg.contains("absent, which means udp") && msg.contains(r#""vxlan""#),
            "{msg}"
        );
    }

    #[test]
    fn a_vxlan_lease_of_another_vni_is_refused() {
        let msg = refuse(
            &vxlan_with(&format!(
                r#""100.96.1.0-24": {}"#,
                vx("192.0.2.1", 2, "0e:00:00:00:01:00")
            )),
            r#"subnets["100.96.1.0-24"].BackendData.VNI"#,
        );
        assert!(
            msg.contains("\"2\" is invalid: 1, the config's Backend.VNI"),
            "{msg}"
        );
        let text = DUAL.replace(
            r#""VNI": 4, "VtepMAC": "0e:00:00:00:02:06""#,
            r#""VNI": 5, "VtepMAC": "0e:00:00:00:02:06""#,
        );
        refuse(
            &text,
            r#"subnets["100.96.2.0-24&fd00:100:96:2::-64"].BackendV6Data.VNI"#,
        );
    }

    #[test]
    fn multicast_or_zero_vtep_macs_are_refused() {
        for bad in [
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
        ] {
            refuse(
                &vxlan_with(&format!(r#""100.96.1.0-24": {}"#, vx("192.0.2.1", 1, bad))),
                r#"subnets["100.96.1.0-24"].BackendData.VtepMAC"#,
            );
        }
    }

    #[test]
    fn lease_value_errors_are_named_inside_the_lease() {
        refuse(
            &vxlan_with(r#""100.96.1.0-24": {"PublicIP": "192.0.2"}"#),
            r#"subnets["100.96.1.0-24"].PublicIP"#,
        );
        refuse(
            &vxlan_with(r#""100.96.1.0-24": {"BackendType": "vxlan"}"#),
            r#"subnets["100.96.1.0-24"].PublicIP"#,
        );
        refuse(
            &vxlan_with(
                r#""100.96.1.0-24": {"PublicIP": "192.0.2.1", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "zz"}}"#,
            ),
            r#"subnets["100.96.1.0-24"].BackendData.VtepMAC"#,
        );
        refuse(
            &vxlan_with(r#""100.96.1.0-24": 7"#),
            r#"subnets["100.96.1.0-24"]"#,
        );
        refuse(
            &vxlan_with(r#""100.96.1.0-24": "{not json""#),
            r#"subnets["100.96.1.0-24"]"#,
        );
        refuse(
            &vxlan_with(r#""100.96.1.0-24": "[1]""#),
            r#"subnets["100.96.1.0-24"]"#,
        );
    }

    #[test]
    fn config_errors_are_named_inside_config() {
        refuse(
            r#"{"config": {"Network": "100.96.0.0"}, "subnets": {}}"#,
            "config.Network",
        );
        refuse(
            r#"{"config": "{\"Network\":\"100.96.0.0/16\",\"Backend\":{\"Type\":\"ipip\"}}", "subnets": {}}"#,
            "config.Backend.Type",
        );
        refuse(r#"{"config": 1, "subnets": {}}"#, "config");
        refuse(r#"{"config": "[1]", "subnets": {}}"#, "config");
        let err = StaticLeases::parse(br#"{"config": "{", "subnets": {}}"#).expect_err("bad JSON");
        assert!(
            err.to_string()
                .starts_with("network config: malformed JSON"),
            "{err}"
        );
    }

    #[test]
    fn top_level_shape_is_checked() {
        let msg = refuse(
            r#"{"config": {"Network": "100.96.0.0/16"}, "subnets": {}, "Subnets": {}, "leases": []}"#,
            WHAT,
        );
        assert!(msg.contains(r#""Subnets, leases" is invalid"#), "{msg}");
        assert!(
            msg.contains(r#""config""#) && msg.contains(r#""subnets""#),
            "{msg}"
        );
        refuse(r#"{"subnets": {}}"#, "config");
        refuse(r#"{"config": {"Network": "100.96.0.0/16"}}"#, "subnets");
        refuse(
            r#"{"config": {"Network": "100.96.0.0/16"}, "subnets": []}"#,
            "subnets",
        );
        refuse(
            r#"{"config": {"Network": "100.96.0.0/16"}, "subnets": null}"#,
            "subnets",
        );
        refuse(
            r#"{"config": {"Network": "100.96.0.0/16"}, "config": {"Network": "100.97.0.0/16"}, "subnets": {}}"#,
            "config",
        );
        refuse("[]", WHAT);
        let err = StaticLeases::parse(b"{\"config\":").expect_err("truncated");
        assert!(matches!(err, Error::Json { what: WHAT, .. }), "{err}");
        let err = StaticLeases::parse(b"{\"a\":\"\xff\"}").expect_err("not UTF-8");
        assert!(matches!(err, Error::NotUtf8 { .. }), "{err}");
        let big = vec![b' '; MAX_FILE_LEN + 1];
        let err = StaticLeases::parse(&big).expect_err("too large");
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    }

    #[test]
    fn load_names_the_path() {
        let t = crate::control::TempDir::new("static-leases");
        let path = t.0.join("leases.json");
        std::fs::write(&path, VXLAN).expect("write");
        assert_eq!(StaticLeases::load(&path).expect("loads"), parse(VXLAN));

        std::fs::write(
            &path,
            vxlan_with(r#""100.96.1.0-24": {"PublicIP": "192.0.2.1"}"#),
        )
        .expect("write");
        let err = StaticLeases::load(&path).expect_err("refused");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{}: subnets[", path.display())),
            "{msg}"
        );
        assert!(
            matches!(&err, Error::InFile { source, .. } if matches!(**source, Error::Invalid { .. }))
        );

        let missing = t.0.join("missing.json");
        let err = StaticLeases::load(&missing).expect_err("missing");
        assert!(
            matches!(&err, Error::Io { path, .. } if *path == missing),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("cannot read the static leases file"),
            "{err}"
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_on_edits_of_a_valid_file(
            at in 0usize..VXLAN.len(),
            byte in proptest::prelude::any::<u8>(),
            cut in proptest::prelude::any::<bool>(),
        ) {
            let mut bytes = VXLAN.as_bytes().to_vec();
            if cut {
                bytes.truncate(at);
            } else {
                bytes[at] = byte;
            }
            if let Ok(s) = StaticLeases::parse(&bytes) {
                proptest::prop_assert!(s.leases.windows(2).all(|w| w[0].key < w[1].key));
            }
        }
    }
}
