//! `<prefix>/subnets/<key>` values: a lease's attributes, as flannel's
//! `lease.LeaseAttrs` (`pkg/lease/lease.go`) marshals them.
//!
//! flannel's backends write, for example:
//!
//! ```text
//! udp      {"PublicIP":"192.168.1.10","PublicIPv6":null}
//! vxlan    {"PublicIP":"192.168.1.10","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:8a:3c:11:22:33"}}
//! host-gw  {"PublicIP":"192.168.1.10","PublicIPv6":null,"BackendType":"host-gw"}
//! ```
//!
//! [`LeaseAttrs::to_json`] writes the same bytes for the same attributes. A
//! [`Lease`] is a key with its value: the unit every lease source yields.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Value};

use super::json::{self, clip, opt_str, opt_u64, show};
use super::{BackendType, SubnetKey};
use crate::wire::MacAddr;
use crate::{Error, Result};

/// One lease: a subnet key and the attributes flannel stores under it. Every
/// lease source (the static file, etcd) yields these, and the table is built from
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The subnets the lease holds (`<prefix>/subnets/<key>`).
    pub key: SubnetKey,
    /// How to reach the node that holds them (the key's value).
    pub attrs: LeaseAttrs,
}

/// The value of a lease: how to reach the node that holds the subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseAttrs {
    /// `PublicIP`: the node's IPv4 underlay address; `0.0.0.0` when it has none
    /// (flannel writes the zero address for IPv6-only leases).
    pub public_ip: Ipv4Addr,
    /// `PublicIPv6`: the node's IPv6 underlay address; flannel writes `null` for none.
    pub public_ipv6: Option<Ipv6Addr>,
    /// `BackendType`: absent in leases of flannel's udp backend, which means udp
    /// (see [`LeaseAttrs::backend`]).
    pub backend_type: Option<BackendType>,
    /// `BackendData`: the IPv4 VTEP of a vxlan lease. Only read for vxlan leases.
    pub backend_data: Option<VxlanBackendData>,
    /// `BackendV6Data`: the IPv6 VTEP of a vxlan lease. Only read for vxlan leases.
    pub backend_v6_data: Option<VxlanBackendData>,
    /// What a ringlay node adds to flannel's value (see [`Features`]).
    pub features: Features,
}

/// What a ringlay node tells its peers beyond flannel's fields: extra JSON fields
/// in the lease's `BackendData` (for udp and host-gw, a `BackendData` of its
/// own), `"RinglayFeatures":["partial-csum"]`. flanneld decodes `BackendData`
/// into its backend's own struct, and Go's JSON decoder ignores fields a struct
/// lacks, so flanneld nodes read such a lease as before.
///
/// Read leniently: a feature ringlay does not know, or a field of another shape,
/// is no feature (a newer node's lease is never refused for it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Features {
    /// `partial-csum`: the node takes inner TCP and UDP checksums left partial
    /// (the field holding only the pseudo-header sum) and hands them to its
    /// kernel to complete, so a ringlay sender need not compute them: the outer
    /// UDP checksum covers the bytes in flight.
    pub partial_csum: bool,
}

/// The field of `BackendData` that lists a ringlay node's features.
const FEATURES_FIELD: &str = "RinglayFeatures";
/// [`Features::partial_csum`]'s name in it.
const PARTIAL_CSUM: &str = "partial-csum";

impl Features {
    /// The features listed in `obj[field]`, if that is an object.
    fn decode(obj: &Map<String, Value>, field: &str) -> Features {
        let listed = match json::get(obj, field).and_then(|d| d.as_object()) {
            Some(data) => json::get(data, FEATURES_FIELD).and_then(Value::as_array),
            None => None,
        };
        let has = |name: &str| listed.is_some_and(|l| l.iter().any(|v| v.as_str() == Some(name)));
        Features {
            partial_csum: has(PARTIAL_CSUM),
        }
    }

    /// The `"RinglayFeatures":[...]` member, or nothing without any.
    fn json_member(self) -> Option<String> {
        self.partial_csum
            .then(|| format!("\"{FEATURES_FIELD}\":[\"{PARTIAL_CSUM}\"]"))
    }
}

/// A vxlan lease's `BackendData`: `{"VNI":1,"VtepMAC":"0e:8a:3c:11:22:33"}`
/// (flannel's `vxlanLeaseAttrs` in `pkg/backend/vxlan/vxlan_network.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanBackendData {
    /// `VNI`: the VNI the node's vxlan device uses.
    pub vni: u32,
    /// `VtepMAC`: the MAC of the node's VTEP, the inner destination of frames to it.
    pub vtep_mac: MacAddr,
}

impl LeaseAttrs {
    /// Parses a lease value as read from etcd. Refuses values over
    /// [`MAX_DOCUMENT_LEN`](super::MAX_DOCUMENT_LEN) bytes, non-UTF-8 bytes, fields
    /// of the wrong type or form (naming the field), and values that name no
    /// address to reach the node at: neither a `PublicIP` other than `0.0.0.0` nor
    /// a `PublicIPv6` other than `::` (`{}` is no node's lease: a peer sending to
    /// it would send to nowhere).
    pub fn parse(bytes: &[u8]) -> Result<LeaseAttrs> {
        let obj = json::parse_object(bytes, "lease value")?;
        let public_ip_text = opt_str(&obj, "PublicIP", "PublicIP", V4_EXAMPLE)?;
        let public_ip = match public_ip_text {
            None => Ipv4Addr::UNSPECIFIED,
            Some(t) => t
                .parse()
                .map_err(|_| Error::invalid("PublicIP", clip(t), V4_EXAMPLE))?,
        };
        let public_ipv6: Option<Ipv6Addr> = opt_str(&obj, "PublicIPv6", "PublicIPv6", V6_EXAMPLE)?
            .map(|t| {
                t.parse()
                    .map_err(|_| Error::invalid("PublicIPv6", clip(t), V6_EXAMPLE))
            })
            .transpose()?;
        if public_ip.is_unspecified() && public_ipv6.is_none_or(|a| a.is_unspecified()) {
            return Err(Error::invalid(
                "PublicIP",
                public_ip_text.map_or_else(|| "(absent)".to_owned(), clip),
                "the node's underlay address, like 192.168.1.10 (or a PublicIPv6): \
                 a lease without one names no node",
            ));
        }
        // An empty BackendType is what Go's omitempty leaves out: the same as absent.
        let backend_type = opt_str(&obj, "BackendType", "BackendType", &BackendType::expected())?
            .filter(|t| !t.is_empty())
            .map(str::parse::<BackendType>)
            .transpose()?;
        let (backend_data, backend_v6_data) = match backend_type {
            Some(BackendType::Vxlan) => (
                VxlanBackendData::decode(&obj, "BackendData")?,
                VxlanBackendData::decode(&obj, "BackendV6Data")?,
            ),
            // udp and host-gw leases carry no backend data that flannel reads.
            _ => (None, None),
        };
        let features = match Features::decode(&obj, "BackendData") {
            f if f == Features::default() => Features::decode(&obj, "BackendV6Data"),
            f => f,
        };
        Ok(LeaseAttrs {
            public_ip,
            public_ipv6,
            backend_type,
            backend_data,
            backend_v6_data,
            features,
        })
    }

    /// The address that identifies the lease's node: its `PublicIP`, or its
    /// `PublicIPv6` when the `PublicIP` is `0.0.0.0` (an IPv6-only node). This is
    /// what [`LeaseAttrs::claimant`] reads from a value.
    pub fn address(&self) -> IpAddr {
        match self.public_ipv6 {
            Some(v6) if self.public_ip.is_unspecified() => IpAddr::V6(v6),
            _ => IpAddr::V4(self.public_ip),
        }
    }

    /// Whose claim the value at a lease key is, read leniently: the address of a
    /// JSON object's `PublicIP` (or, without a usable one, its `PublicIPv6`) when
    /// it is a usable address, whatever the rest of the value holds. `None` for a
    /// value that is no node's claim: not a JSON object (or over
    /// [`MAX_DOCUMENT_LEN`](super::MAX_DOCUMENT_LEN) bytes), or one naming no
    /// usable address.
    ///
    /// [`LeaseAttrs::parse`] refuses values that are genuine leases of a backend
    /// ringlay does not run (`wireguard`, `ipip`, `extension`, `alloc`) or of a
    /// vxlan `BackendData` it does not read: those still hold the subnet for
    /// their node, and must never be written over. For a value `parse` accepts,
    /// this is `Some(attrs.address())`.
    pub fn claimant(bytes: &[u8]) -> Option<IpAddr> {
        let obj = json::parse_object(bytes, "lease value").ok()?;
        let text = |key| match json::get(&obj, key) {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        };
        let v4 = text("PublicIP")
            .and_then(|t| t.parse::<Ipv4Addr>().ok())
            .filter(|a| !a.is_unspecified());
        let v6 = text("PublicIPv6")
            .and_then(|t| t.parse::<Ipv6Addr>().ok())
            .filter(|a| !a.is_unspecified());
        v4.map(IpAddr::V4).or(v6.map(IpAddr::V6))
    }

    /// The backend the lease's node runs: a lease without `BackendType` is udp's.
    pub fn backend(&self) -> BackendType {
        self.backend_type.unwrap_or(BackendType::Udp)
    }

    /// The value as flannel marshals it: its field order and spelling, `PublicIPv6`
    /// always present (`null` when absent), the other optional fields left out.
    pub fn to_json(&self) -> String {
        let mut out = format!("{{\"PublicIP\":\"{}\",\"PublicIPv6\":", self.public_ip);
        // Writing to a String cannot fail.
        let _ = match self.public_ipv6 {
            Some(a) => write!(out, "\"{a}\""),
            None => write!(out, "null"),
        };
        if let Some(t) = self.backend_type {
            let _ = write!(out, ",\"BackendType\":\"{t}\"");
        }
        for (name, data) in [
            ("BackendData", self.backend_data_json()),
            ("BackendV6Data", self.backend_v6_data_json()),
        ] {
            if let Some(d) = data {
                let _ = write!(out, ",\"{name}\":{d}");
            }
        }
        out.push('}');
        out
    }
}

impl LeaseAttrs {
    /// `BackendData` as flannel marshals it (`{"VNI":1,"VtepMAC":"…"}`), with
    /// our [`Features`] after flannel's fields; for a lease without a VTEP, an
    /// object of the features alone, or `None` without any.
    pub fn backend_data_json(&self) -> Option<String> {
        let features = self.features.json_member();
        match (self.backend_data, features) {
            (Some(d), f) => Some(d.json_with(f.as_deref())),
            // An IPv6-only vxlan lease lists them in BackendV6Data; a vxlan
            // BackendData without its VTEP would be refused, so one without
            // either advertises nothing.
            (None, Some(_)) if self.backend_type == Some(BackendType::Vxlan) => None,
            (None, Some(f)) => Some(format!("{{{f}}}")),
            (None, None) => None,
        }
    }

    /// `BackendV6Data` likewise (the features only where `BackendData` is absent).
    pub fn backend_v6_data_json(&self) -> Option<String> {
        let features = self
            .features
            .json_member()
            .filter(|_| self.backend_data.is_none());
        self.backend_v6_data
            .map(|d| d.json_with(features.as_deref()))
    }
}

impl VxlanBackendData {
    /// `{"VNI":…,"VtepMAC":"…"}`, then `extra` (a JSON member) if given.
    fn json_with(self, extra: Option<&str>) -> String {
        let mut out = format!("{{\"VNI\":{},\"VtepMAC\":\"{}\"", self.vni, self.vtep_mac);
        if let Some(e) = extra {
            out.push(',');
            out.push_str(e);
        }
        out.push('}');
        out
    }
}

const V4_EXAMPLE: &str = "an IPv4 address like 192.168.1.10";
const V6_EXAMPLE: &str = "an IPv6 address like 2001:db8::10, or null";
const VNI_EXAMPLE: &str = "an integer from 0 to 4294967295";
const MAC_EXAMPLE: &str = "a MAC address like 0e:00:00:00:01:00";

impl VxlanBackendData {
    /// Reads `obj[field]`; absent (or null) is `None`, as for one family of a
    /// single-stack vxlan lease.
    fn decode(obj: &Map<String, Value>, field: &'static str) -> Result<Option<VxlanBackendData>> {
        let Some(value) = json::get(obj, field) else {
            return Ok(None);
        };
        let Value::Object(data) = value else {
            return Err(Error::invalid(
                field,
                show(value),
                r#"an object like {"VNI":1,"VtepMAC":"0e:00:00:00:01:00"}"#,
            ));
        };
        let vni_field = format!("{field}.VNI");
        let vni = opt_u64(data, "VNI", &vni_field, VNI_EXAMPLE)?
            .ok_or_else(|| Error::invalid(&vni_field, "(absent)", VNI_EXAMPLE))?;
        let vni = u32::try_from(vni).map_err(|_| Error::invalid(&vni_field, vni, VNI_EXAMPLE))?;
        let mac_field = format!("{field}.VtepMAC");
        let mac = opt_str(data, "VtepMAC", &mac_field, MAC_EXAMPLE)?
            .ok_or_else(|| Error::invalid(&mac_field, "(absent)", MAC_EXAMPLE))?;
        let vtep_mac = mac
            .parse()
            .map_err(|_| Error::invalid(&mac_field, clip(mac), MAC_EXAMPLE))?;
        Ok(Some(VxlanBackendData { vni, vtep_mac }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> LeaseAttrs {
        LeaseAttrs::parse(text.as_bytes()).expect("a lease value flannel writes")
    }

    fn refuse(text: &[u8], field: &str) -> String {
        let err = LeaseAttrs::parse(text).expect_err(field).to_string();
        assert!(err.starts_with(&format!("{field}: ")), "{err}");
        err
    }

    fn mac(s: &str) -> MacAddr {
        s.parse().expect("valid MAC")
    }

    /// Written by flannel's vxlan backend on an IPv4 node.
    const VXLAN: &str = r#"{"PublicIP":"192.168.1.10","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:8a:3c:11:22:33"}}"#;
    /// Written by flannel's udp backend: no BackendType at all.
    const UDP: &str = r#"{"PublicIP":"192.168.1.11","PublicIPv6":null}"#;
    /// Written by flannel's host-gw backend.
    const HOST_GW: &str =
        r#"{"PublicIP":"192.168.1.12","PublicIPv6":null,"BackendType":"host-gw"}"#;
    /// Written by flannel's vxlan backend on a dual-stack node.
    const VXLAN_DUAL: &str = r#"{"PublicIP":"192.168.1.13","PublicIPv6":"2001:db8::13","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:8a:3c:11:22:34"},"BackendV6Data":{"VNI":1,"VtepMAC":"6e:8a:3c:11:22:35"}}"#;
    /// Written by flannel's vxlan backend on an IPv6-only node: the zero PublicIP.
    const VXLAN_V6_ONLY: &str = r#"{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::14","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"6e:8a:3c:11:22:36"}}"#;

    #[test]
    fn ringlay_features_ride_in_backend_data() {
        let vx = r#"{"PublicIP":"192.168.1.10","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:8a:3c:11:22:33","RinglayFeatures":["partial-csum"]}}"#;
        let l = parse(vx);
        assert!(l.features.partial_csum);
        assert_eq!(l.backend_data.map(|d| d.vni), Some(1));
        assert_eq!(l.to_json(), vx);
        // Without features, flannel's value exactly.
        let plain = LeaseAttrs {
            features: Features::default(),
            ..l
        };
        assert_eq!(plain.to_json(), VXLAN);
        // udp: flannel's udp backend writes no BackendData; ours holds the list.
        let udp = r#"{"PublicIP":"192.168.1.11","PublicIPv6":null,"BackendData":{"RinglayFeatures":["partial-csum"]}}"#;
        let u = parse(udp);
        assert!(u.features.partial_csum);
        assert_eq!(u.to_json(), udp);
        // Unknown features and other shapes are no feature, and refuse nothing.
        for other in [
            r#"{"PublicIP":"192.0.2.1","BackendData":{"RinglayFeatures":["warp-drive"]}}"#,
            r#"{"PublicIP":"192.0.2.1","BackendData":{"RinglayFeatures":"partial-csum"}}"#,
            r#"{"PublicIP":"192.0.2.1","BackendData":{"RinglayFeatures":[1,null]}}"#,
        ] {
            assert_eq!(parse(other).features, Features::default(), "{other}");
        }
    }

    #[test]
    fn flannel_vxlan_lease() {
        let l = parse(VXLAN);
        assert_eq!(
            l,
            LeaseAttrs {
                public_ip: Ipv4Addr::new(192, 168, 1, 10),
                public_ipv6: None,
                backend_type: Some(BackendType::Vxlan),
                backend_data: Some(VxlanBackendData {
                    vni: 1,
                    vtep_mac: mac("0e:8a:3c:11:22:33")
                }),
                backend_v6_data: None,
                features: Features::default(),
            }
        );
        assert_eq!(l.to_json(), VXLAN);
    }

    #[test]
    fn flannel_udp_lease_has_no_backend_type_and_means_udp() {
        let l = parse(UDP);
        assert_eq!(l.backend_type, None);
        assert_eq!(l.backend(), BackendType::Udp);
        assert_eq!(l.public_ip, Ipv4Addr::new(192, 168, 1, 11));
        assert_eq!(l.to_json(), UDP);
    }

    #[test]
    fn flannel_host_gw_lease() {
        let l = parse(HOST_GW);
        assert_eq!(l.backend(), BackendType::HostGw);
        assert_eq!(l.to_json(), HOST_GW);
    }

    #[test]
    fn flannel_dual_stack_and_ipv6_only_vxlan_leases() {
        let l = parse(VXLAN_DUAL);
        assert_eq!(l.public_ipv6, Some("2001:db8::13".parse().expect("valid")));
        assert_eq!(
            l.backend_v6_data.map(|d| d.vtep_mac),
            Some(mac("6e:8a:3c:11:22:35"))
        );
        assert_eq!(l.to_json(), VXLAN_DUAL);
        let l = parse(VXLAN_V6_ONLY);
        assert_eq!(l.public_ip, Ipv4Addr::UNSPECIFIED);
        assert_eq!(l.backend_data, None);
        assert!(l.backend_v6_data.is_some());
        assert_eq!(l.to_json(), VXLAN_V6_ONLY);
    }

    #[test]
    fn lenient_where_go_is() {
        // Keys match ignoring case; unknown keys, spacing and an empty BackendType
        // (what omitempty would have left out) are accepted.
        let l = parse(
            r#"{ "publicip": "10.0.0.1", "BackendType": "", "Extra": [1], "BackendData": null }"#,
        );
        assert_eq!(l.public_ip, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(l.backend_type, None);
        // Backend data of a non-vxlan lease is not read.
        let l =
            parse(r#"{"PublicIP":"10.0.0.1","BackendType":"host-gw","BackendData":"whatever"}"#);
        assert_eq!(l.backend_data, None);
    }

    #[test]
    fn a_value_naming_no_address_is_no_lease() {
        // What Go would read as the zero address: a lease nobody can be reached at.
        for text in [
            &br#"{}"#[..],
            br#"{"PublicIP":"0.0.0.0"}"#,
            br#"{"PublicIP":"0.0.0.0","PublicIPv6":null,"BackendType":"host-gw"}"#,
            br#"{"PublicIP":"0.0.0.0","PublicIPv6":"::"}"#,
            br#"{"PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:8a:3c:11:22:33"}}"#,
        ] {
            let err = refuse(text, "PublicIP");
            assert!(err.contains("names no node"), "{err}");
            assert_eq!(LeaseAttrs::claimant(text), None);
        }
        assert!(refuse(b"{}", "PublicIP").contains("(absent)"));
        // IPv6 only: flannel's zero PublicIP and a PublicIPv6.
        let l = parse(r#"{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::14"}"#);
        assert_eq!(
            l.address(),
            "2001:db8::14".parse::<IpAddr>().expect("valid")
        );
    }

    #[test]
    fn claimant_reads_the_address_of_values_parse_refuses() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("valid");
        // Genuine leases of backends ringlay does not run, or vxlan data it refuses.
        for (text, who) in [
            (
                r#"{"PublicIP":"192.0.2.7","PublicIPv6":null,"BackendType":"wireguard","BackendData":{"PublicKey":"x"}}"#,
                "192.0.2.7",
            ),
            (
                r#"{"PublicIP":"192.0.2.8","BackendType":"ipip"}"#,
                "192.0.2.8",
            ),
            (
                r#"{"publicip":"192.0.2.9","BackendType":"vxlan","BackendData":{"VNI":"1"}}"#,
                "192.0.2.9",
            ),
            (
                r#"{"PublicIP":7,"PublicIPv6":"2001:db8::7","BackendType":"extension"}"#,
                "2001:db8::7",
            ),
            (
                r#"{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::8","BackendType":"alloc"}"#,
                "2001:db8::8",
            ),
        ] {
            assert!(LeaseAttrs::parse(text.as_bytes()).is_err(), "{text}");
            assert_eq!(
                LeaseAttrs::claimant(text.as_bytes()),
                Some(ip(who)),
                "{text}"
            );
        }
        // No node's claim: not an object, not JSON, no usable address.
        for text in [
            &b"not a lease"[..],
            b"{\"PublicIP\":",
            b"null",
            br#"["PublicIP","192.0.2.6"]"#,
            br#"{"PublicIP":7}"#,
            br#"{"PublicIP":"192.0.2"}"#,
            b"{\"PublicIP\":\"192.0.2.\xff\"}",
        ] {
            assert_eq!(
                LeaseAttrs::claimant(text),
                None,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        // Every lease parse accepts is claimed by its address.
        for text in [VXLAN, UDP, HOST_GW, VXLAN_DUAL, VXLAN_V6_ONLY] {
            assert_eq!(
                LeaseAttrs::claimant(text.as_bytes()),
                Some(parse(text).address())
            );
        }
    }

    #[test]
    fn refusals_name_the_field() {
        let err = refuse(
            br#"{"PublicIP":"10.0.0.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:8a:3c:11:22"}}"#,
            "BackendData.VtepMAC",
        );
        assert!(
            err.contains("0e:8a:3c:11:22") && err.contains("0e:00:00:00:01:00"),
            "{err}"
        );
        refuse(
            br#"{"PublicIP":"10.0.0.1","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":7}}"#,
            "BackendV6Data.VtepMAC",
        );
        refuse(
            br#"{"PublicIP":"10.0.0.1","BackendType":"vxlan","BackendData":{"VNI":1}}"#,
            "BackendData.VtepMAC",
        );
        refuse(
            br#"{"PublicIP":"10.0.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"0e:8a:3c:11:22:33"}}"#,
            "BackendData.VNI",
        );
        refuse(
            br#"{"PublicIP":"10.0.0.1","BackendType":"vxlan","BackendData":{"VNI":4294967296,"VtepMAC":"0e:8a:3c:11:22:33"}}"#,
            "BackendData.VNI",
        );
        refuse(
            br#"{"PublicIP":"10.0.0.1","BackendType":"vxlan","BackendData":[1]}"#,
            "BackendData",
        );
        refuse(br#"{"PublicIP":"10.0.0"}"#, "PublicIP");
        refuse(br#"{"PublicIP":"2001:db8::1"}"#, "PublicIP");
        refuse(br#"{"PublicIP":167772161}"#, "PublicIP");
        refuse(
            br#"{"PublicIP":"10.0.0.1","PublicIPv6":"10.0.0.1"}"#,
            "PublicIPv6",
        );
        let err = refuse(
            br#"{"PublicIP":"10.0.0.1","BackendType":"wireguard"}"#,
            "BackendType",
        );
        assert!(err.contains(r#""udp", "vxlan", "host-gw""#), "{err}");
        // A lease's BackendType is compared exactly by flannel's backends.
        refuse(
            br#"{"PublicIP":"10.0.0.1","BackendType":"VXLAN"}"#,
            "BackendType",
        );
    }

    #[test]
    fn refuses_non_utf8_oversized_and_malformed_values() {
        let err = LeaseAttrs::parse(b"{\"PublicIP\":\"10.0.0.1\xc3\x28\"}").expect_err("not UTF-8");
        assert!(
            matches!(
                err,
                Error::NotUtf8 {
                    what: "lease value",
                    ..
                }
            ),
            "{err}"
        );
        let mut big = UDP.as_bytes().to_vec();
        big.resize(crate::config::MAX_DOCUMENT_LEN + 1, b' ');
        let err = LeaseAttrs::parse(&big).expect_err("too large");
        assert!(err.to_string().contains("at most 65536 bytes"), "{err}");
        for text in [&b""[..], b"null", b"\"x\"", b"{\"PublicIP\":", b"[]"] {
            let err = LeaseAttrs::parse(text).expect_err("malformed");
            assert!(err.to_string().starts_with("lease value: "), "{err}");
        }
    }

    fn arb_data() -> impl Strategy<Value = Option<VxlanBackendData>> {
        proptest::option::of((any::<u32>(), any::<[u8; 6]>()).prop_map(|(vni, m)| {
            VxlanBackendData {
                vni,
                vtep_mac: MacAddr(m),
            }
        }))
    }

    proptest! {
        #[test]
        fn to_json_then_parse_is_identity(
            ip in any::<u32>(),
            ip6 in proptest::option::of(any::<u128>()),
            ty in proptest::option::of(proptest::sample::select(BackendType::ALL.to_vec())),
            data in arb_data(),
            data6 in arb_data(),
            partial in any::<bool>(),
        ) {
            // A lease names an address (see a_value_naming_no_address_is_no_lease).
            prop_assume!(ip != 0 || ip6.is_some_and(|a| a != 0));
            let vxlan = ty == Some(BackendType::Vxlan);
            let l = LeaseAttrs {
                public_ip: Ipv4Addr::from(ip),
                public_ipv6: ip6.map(Ipv6Addr::from),
                backend_type: ty,
                backend_data: data.filter(|_| vxlan),
                backend_v6_data: data6.filter(|_| vxlan),
                // What a value without a VTEP cannot carry (see backend_data_json).
                features: Features {
                    partial_csum: partial && (!vxlan || data.is_some() || data6.is_some()),
                },
            };
            prop_assert_eq!(LeaseAttrs::parse(l.to_json().as_bytes()).expect("to_json output parses"), l);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(l) = LeaseAttrs::parse(&bytes) {
                prop_assert_eq!(LeaseAttrs::claimant(&bytes), Some(l.address()));
            }
        }
    }
}
