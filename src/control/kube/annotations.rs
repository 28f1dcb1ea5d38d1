//! flannel's node annotations (`pkg/subnet/kube/annotations.go`): the keys under
//! `--kube-annotation-prefix`, the values flanneld writes, and a Node read back as
//! a lease.
//!
//! flanneld on a vxlan node writes, with the default prefix:
//!
//! ```text
//! flannel.alpha.coreos.com/kube-subnet-manager   true
//! flannel.alpha.coreos.com/backend-type          vxlan
//! flannel.alpha.coreos.com/backend-data          {"VNI":1,"VtepMAC":"0e:8a:3c:11:22:33"}
//! flannel.alpha.coreos.com/public-ip             192.168.1.10
//! ```
//!
//! and, where the node has an IPv6 lease, `backend-v6-data` and `public-ipv6`. The
//! udp backend's `backend-data` is `null`. A user may set `public-ip-overwrite`
//! (flanneld then publishes that address instead of its interface's) and
//! `node-public-ip` (taken as `--public-ip`), and for IPv6 `public-ipv6-overwrite`
//! and `node-public-ipv6`.
//!
//! A Node is a lease once it carries `kube-subnet-manager: true` and a podCIDR; its
//! annotations are assembled into the lease value flannel would have written in
//! etcd and parsed by [`LeaseAttrs::parse`], so a Node is refused for exactly the
//! reasons an etcd value is, with the annotation named.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::node::NodeLease;
use crate::config::{BackendType, Lease, LeaseAttrs, SubnetKey};
use crate::{Error, Result};

/// The longest annotation prefix Kubernetes accepts (a DNS subdomain).
const MAX_DOMAIN_LEN: usize = 253;
/// The longest name part of an annotation key.
const MAX_NAME_LEN: usize = 63;

/// The annotation names, each appended to the prefix.
const SUBNET_MANAGER: &str = "kube-subnet-manager";
const BACKEND_TYPE: &str = "backend-type";
const BACKEND_DATA: &str = "backend-data";
const BACKEND_V6_DATA: &str = "backend-v6-data";
const PUBLIC_IP: &str = "public-ip";
const PUBLIC_IPV6: &str = "public-ipv6";
const PUBLIC_IP_OVERWRITE: &str = "public-ip-overwrite";
const PUBLIC_IPV6_OVERWRITE: &str = "public-ipv6-overwrite";
const NODE_PUBLIC_IP: &str = "node-public-ip";
const NODE_PUBLIC_IPV6: &str = "node-public-ipv6";

/// A validated `--kube-annotation-prefix`, normalized as flannel normalizes it:
/// `example.com` → `example.com/`, `example.com/flannel` → `example.com/flannel-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    /// Validates `text` as flannel's `newAnnotations` does: at most one `/`; then
    /// the prefix must have the form `fqdn/` or `fqdn/name-`, with the domain's
    /// dot-separated labels and the name of `a-z`, `0-9`, `-` and `_`. (flannel's
    /// pattern checks only the tail of the prefix; ringlay checks it whole, since
    /// the API server refuses such keys on the first write anyway.)
    pub fn parse(text: &str) -> Result<Prefix> {
        let refuse = |why: &str| {
            Error::invalid(
                "--kube-annotation-prefix",
                text,
                format!(
                    "{why}: the prefix must be in the format fqdn/[0-9a-z-_]*, \
                     like flannel.alpha.coreos.com (the default) or example.com/overlay"
                ),
            )
        };
        let mut prefix = text.to_owned();
        match text.matches('/').count() {
            0 => prefix.push('/'),
            1 => {}
            _ => return Err(refuse("it can contain at most a single '/'")),
        }
        if !(prefix.ends_with('/') || prefix.ends_with('-')) {
            prefix.push('-');
        }
        let (domain, name) = prefix.split_once('/').unwrap_or((&prefix, ""));
        let allowed = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
        };
        if domain.len() > MAX_DOMAIN_LEN
            || domain.split('.').count() < 2
            || !domain.split('.').all(allowed)
        {
            return Err(refuse("the part before '/' is not a domain name"));
        }
        if !name.is_empty() && (!allowed(name) || name.len() + SUBNET_MANAGER.len() > MAX_NAME_LEN)
        {
            return Err(refuse(
                "the part after '/' holds characters other than a-z, 0-9, - and _, or is too long",
            ));
        }
        Ok(Prefix(prefix))
    }

    /// The normalized prefix, as keys begin with it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The full key of annotation `name`.
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.0)
    }

    /// The annotations flanneld writes on its own Node for `attrs`: keys and values
    /// byte for byte, and the same choice of which to write (`AcquireLease` in
    /// flannel's `kube.go`): the IPv4 pair (`backend-data`, `public-ip`) unless a
    /// vxlan lease has no IPv4 VTEP, the IPv6 pair (`backend-v6-data`,
    /// `public-ipv6`) for a vxlan lease with an IPv6 VTEP or a host-gw lease with an
    /// IPv6 address. udp leases have no `BackendType`: their `backend-type` is empty.
    /// `backend-data` holds the lease's `BackendData` as etcd would (with our
    /// [`Features`](crate::config::Features), which flanneld ignores), or `null`.
    pub fn ours(&self, attrs: &LeaseAttrs) -> BTreeMap<String, String> {
        let vxlan = attrs.backend_type == Some(BackendType::Vxlan);
        let mut out = BTreeMap::new();
        out.insert(self.key(SUBNET_MANAGER), "true".to_owned());
        let backend_type = attrs.backend_type.map_or("", |t| t.as_str());
        out.insert(self.key(BACKEND_TYPE), backend_type.to_owned());
        if !vxlan || attrs.backend_data.is_some() {
            let data = attrs.backend_data_json();
            out.insert(
                self.key(BACKEND_DATA),
                data.unwrap_or_else(|| "null".into()),
            );
            out.insert(self.key(PUBLIC_IP), attrs.public_ip.to_string());
        }
        let host_gw = attrs.backend_type == Some(BackendType::HostGw);
        if let Some(v6) = attrs.public_ipv6 {
            if (vxlan && attrs.backend_v6_data.is_some()) || host_gw {
                let data = attrs.backend_v6_data_json();
                out.insert(
                    self.key(BACKEND_V6_DATA),
                    data.unwrap_or_else(|| "null".into()),
                );
                out.insert(self.key(PUBLIC_IPV6), v6.to_string());
            }
        }
        out
    }

    /// The address to advertise instead of ours (`public-ip-overwrite`, set by a
    /// user or a tool for a node behind NAT): flanneld copies it into its own
    /// `public-ip` annotation at start; its data path keeps the interface's address.
    pub fn overwrite<'a>(&self, node: &'a NodeLease) -> Option<&'a str> {
        node.annotation(&self.key(PUBLIC_IP_OVERWRITE))
            .filter(|v| !v.is_empty())
    }

    /// The public IP a user stored for this node (`node-public-ip`): flanneld
    /// takes it as if given with `--public-ip`, over the flag.
    pub fn stored_public_ip<'a>(&self, node: &'a NodeLease) -> Option<&'a str> {
        node.annotation(&self.key(NODE_PUBLIC_IP))
            .filter(|v| !v.is_empty())
    }

    /// [`Prefix::overwrite`] for IPv6 (`public-ipv6-overwrite`): flanneld copies
    /// it into its own `public-ipv6` annotation.
    pub fn overwrite6<'a>(&self, node: &'a NodeLease) -> Option<&'a str> {
        node.annotation(&self.key(PUBLIC_IPV6_OVERWRITE))
            .filter(|v| !v.is_empty())
    }

    /// [`Prefix::stored_public_ip`] for IPv6 (`node-public-ipv6`): flanneld takes
    /// it as if given with `--public-ipv6`.
    pub fn stored_public_ipv6<'a>(&self, node: &'a NodeLease) -> Option<&'a str> {
        node.annotation(&self.key(NODE_PUBLIC_IPV6))
            .filter(|v| !v.is_empty())
    }

    /// Whether a subnet manager (flanneld's or ringlay's) runs on `node`.
    pub fn managed(&self, node: &NodeLease) -> bool {
        node.annotation(&self.key(SUBNET_MANAGER)) == Some("true")
    }

    /// `node` as a lease: `Ok(None)` while it is no lease yet (no subnet manager
    /// annotation, or no podCIDR), an error naming the annotation for a node whose
    /// annotations or podCIDRs are malformed.
    pub fn lease_of(&self, node: &NodeLease) -> Result<Option<Lease>> {
        if !self.managed(node) {
            return Ok(None);
        }
        let cidrs = node.pod_cidrs();
        if cidrs.is_empty() {
            return Ok(None);
        }
        let key = subnet_key(&cidrs)?;
        let value = self.lease_value(node);
        let attrs =
            LeaseAttrs::parse(value.to_string().as_bytes()).map_err(|e| self.name_annotation(e))?;
        // A static file may leave a VTEP out (its MAC is then derived); a Node's
        // VTEP is the one its own subnet manager made, random for flanneld, so
        // without it the node cannot be reached.
        let vxlan = attrs.backend() == BackendType::Vxlan;
        if vxlan && key.v4.is_some() && attrs.backend_data.is_none() {
            return Err(Error::invalid(
                format!("annotation {}", self.key(BACKEND_DATA)),
                "(absent)",
                r#"a vxlan node's VTEP, like {"VNI":1,"VtepMAC":"0e:8a:3c:11:22:33"}"#,
            ));
        }
        Ok(Some(Lease { key, attrs }))
    }

    /// `e` with the lease value's field (`PublicIP`, `BackendData.VtepMAC`)
    /// named as the annotation it came from (`<prefix>public-ip`,
    /// `<prefix>backend-data VtepMAC`).
    fn name_annotation(&self, e: Error) -> Error {
        let Error::Invalid {
            field,
            value,
            expected,
        } = e
        else {
            return e;
        };
        let (head, rest) = field
            .split_once('.')
            .map_or((field.as_str(), ""), |(h, r)| (h, r));
        let name = match head {
            "PublicIP" => PUBLIC_IP,
            "PublicIPv6" => PUBLIC_IPV6,
            "BackendType" => BACKEND_TYPE,
            "BackendData" => BACKEND_DATA,
            "BackendV6Data" => BACKEND_V6_DATA,
            _ => {
                return Error::Invalid {
                    field,
                    value,
                    expected,
                }
            }
        };
        let field = match rest {
            "" => format!("annotation {}", self.key(name)),
            r => format!("annotation {} {r}", self.key(name)),
        };
        Error::Invalid {
            field,
            value,
            expected,
        }
    }

    /// The lease value flannel would have stored in etcd for `node`'s annotations.
    fn lease_value(&self, node: &NodeLease) -> serde_json::Value {
        let text = |name| node.annotation(&self.key(name));
        // backend-data is JSON inside the annotation; a value that is not JSON is
        // passed on as a string, which LeaseAttrs::parse refuses by name.
        let json = |name| {
            text(name)
                .map(|t| serde_json::from_str(t).unwrap_or(serde_json::Value::String(t.to_owned())))
        };
        let mut value = serde_json::Map::new();
        let fields = [
            ("PublicIP", text(PUBLIC_IP).map(serde_json::Value::from)),
            ("PublicIPv6", text(PUBLIC_IPV6).map(serde_json::Value::from)),
            (
                "BackendType",
                text(BACKEND_TYPE).map(serde_json::Value::from),
            ),
            ("BackendData", json(BACKEND_DATA)),
            ("BackendV6Data", json(BACKEND_V6_DATA)),
        ];
        for (field, v) in fields {
            if let Some(v) = v {
                value.insert(field.to_owned(), v);
            }
        }
        serde_json::Value::Object(value)
    }
}

/// The subnet key of a node's podCIDRs: at most one per family, host bits clear.
pub fn subnet_key(cidrs: &[&str]) -> Result<SubnetKey> {
    const EXPECTED: &str = "one subnet per family with no host bits set, like 10.244.1.0/24 \
                            or [10.244.1.0/24, fd00:10:244:1::/64]";
    let mut key = SubnetKey { v4: None, v6: None };
    for text in cidrs {
        let net: IpNet = text
            .parse()
            .map_err(|_| Error::invalid("spec.podCIDRs", text, EXPECTED))?;
        if net.trunc() != net {
            return Err(Error::invalid("spec.podCIDRs", text, EXPECTED));
        }
        let duplicate = match net {
            IpNet::V4(n) => key.v4.replace(n).is_some(),
            IpNet::V6(n) => key.v6.replace(n).is_some(),
        };
        if duplicate {
            return Err(Error::invalid("spec.podCIDRs", cidrs.join(","), EXPECTED));
        }
    }
    // flannel's keys hold IPv4 prefixes of 1..=31 and IPv6 of 1..=127: the key's
    // own parser says which lengths it takes.
    key.to_string()
        .parse()
        .map_err(|_| Error::invalid("spec.podCIDRs", cidrs.join(","), EXPECTED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VxlanBackendData;

    const P: &str = "flannel.alpha.coreos.com";

    fn prefix() -> Prefix {
        Prefix::parse(P).expect("default prefix")
    }

    fn node(cidrs: &[&str], annotations: &[(&str, &str)]) -> NodeLease {
        let annotations: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| (format!("{P}/{k}"), serde_json::Value::from(*v)))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "n", "annotations": annotations },
            "spec": { "podCIDRs": cidrs },
        }))
        .expect("node")
    }

    fn vxlan_attrs(v6: bool) -> LeaseAttrs {
        let data = VxlanBackendData {
            vni: 1,
            vtep_mac: "0e:8a:3c:11:22:33".parse().expect("mac"),
        };
        LeaseAttrs {
            public_ip: "192.168.1.10".parse().expect("ip"),
            public_ipv6: v6.then(|| "2001:db8::10".parse().expect("ip")),
            backend_type: Some(BackendType::Vxlan),
            backend_data: Some(data),
            backend_v6_data: v6.then_some(data),
            features: Default::default(),
        }
    }

    fn keyed(map: &BTreeMap<String, String>) -> Vec<(String, String)> {
        map.iter()
            .map(|(k, v)| (k.trim_start_matches(&format!("{P}/")).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn prefixes_normalize_as_flannels() {
        let ok = |t: &str, want: &str| assert_eq!(Prefix::parse(t).expect(t).as_str(), want);
        ok("flannel.alpha.coreos.com", "flannel.alpha.coreos.com/");
        ok("example.com/", "example.com/");
        ok("example.com/overlay", "example.com/overlay-");
        ok("example.com/over_lay-", "example.com/over_lay-");
        for bad in [
            "a/b/c",
            "nodots",
            "Upper.example.com",
            "example.com/UPPER",
            "",
            "/x",
            "exa mple.com",
        ] {
            let e = Prefix::parse(bad).expect_err(bad).to_string();
            assert!(e.starts_with("--kube-annotation-prefix: "), "{e}");
            assert!(e.contains("fqdn/[0-9a-z-_]*"), "{e}");
        }
    }

    #[test]
    fn a_vxlan_node_writes_flanneld_annotations_byte_for_byte() {
        assert_eq!(
            keyed(&prefix().ours(&vxlan_attrs(false))),
            [
                ("backend-data", r#"{"VNI":1,"VtepMAC":"0e:8a:3c:11:22:33"}"#),
                ("backend-type", "vxlan"),
                ("kube-subnet-manager", "true"),
                ("public-ip", "192.168.1.10"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        let dual = keyed(&prefix().ours(&vxlan_attrs(true)));
        assert!(dual.contains(&(
            "backend-v6-data".into(),
            r#"{"VNI":1,"VtepMAC":"0e:8a:3c:11:22:33"}"#.into()
        )));
        assert!(dual.contains(&("public-ipv6".into(), "2001:db8::10".into())));
    }

    #[test]
    fn udp_and_host_gw_write_null_backend_data() {
        let mut udp = vxlan_attrs(false);
        udp.backend_type = None;
        udp.backend_data = None;
        let a = keyed(&prefix().ours(&udp));
        assert!(a.contains(&("backend-type".into(), String::new())), "{a:?}");
        assert!(a.contains(&("backend-data".into(), "null".into())), "{a:?}");
        let mut hostgw = udp;
        hostgw.backend_type = Some(BackendType::HostGw);
        let a = keyed(&prefix().ours(&hostgw));
        assert!(
            a.contains(&("backend-type".into(), "host-gw".into())),
            "{a:?}"
        );
    }

    #[test]
    fn a_flanneld_node_reads_as_its_lease() {
        let n = node(
            &["10.244.3.0/24"],
            &[
                ("kube-subnet-manager", "true"),
                ("backend-type", "vxlan"),
                ("backend-data", r#"{"VNI":1,"VtepMAC":"0e:8a:3c:11:22:33"}"#),
                ("public-ip", "192.168.1.10"),
            ],
        );
        let lease = prefix().lease_of(&n).expect("valid").expect("a lease");
        assert_eq!(lease.key.to_string(), "10.244.3.0-24");
        assert_eq!(lease.attrs, vxlan_attrs(false));
    }

    #[test]
    fn nodes_without_a_subnet_manager_or_pod_cidr_are_no_lease_yet() {
        let managed = [("kube-subnet-manager", "true"), ("public-ip", "192.0.2.1")];
        assert_eq!(prefix().lease_of(&node(&[], &managed)).expect("ok"), None);
        let unmanaged = [("public-ip", "192.0.2.1")];
        assert_eq!(
            prefix()
                .lease_of(&node(&["10.244.1.0/24"], &unmanaged))
                .expect("ok"),
            None
        );
        let other = [("kube-subnet-manager", "false"), ("public-ip", "192.0.2.1")];
        assert_eq!(
            prefix()
                .lease_of(&node(&["10.244.1.0/24"], &other))
                .expect("ok"),
            None
        );
    }

    #[test]
    fn malformed_nodes_are_refused_naming_the_field() {
        let base = |extra: (&'static str, &'static str)| {
            vec![
                ("kube-subnet-manager", "true"),
                ("backend-type", "vxlan"),
                extra,
            ]
        };
        let ip = "annotation flannel.alpha.coreos.com/public-ip";
        let data = "annotation flannel.alpha.coreos.com/backend-data";
        // (podCIDRs, annotations, the field the error names)
        type Case<'a> = (&'a [&'a str], Vec<(&'a str, &'a str)>, &'a str);
        let cases: [Case; 7] = [
            // A vxlan node without its VTEP cannot be reached.
            (&["10.244.1.0/24"], base(("public-ip", "192.0.2.1")), data),
            (&["10.244.1.0/24"], base(("public-ip", "not-an-ip")), ip),
            (
                &["10.244.1.0/24"],
                vec![("kube-subnet-manager", "true")],
                ip,
            ),
            (
                &["10.244.1.0/24"],
                vec![
                    ("kube-subnet-manager", "true"),
                    ("backend-type", "vxlan"),
                    ("public-ip", "192.0.2.1"),
                    ("backend-data", r#"{"VNI":1,"VtepMAC":"zz"}"#),
                ],
                "annotation flannel.alpha.coreos.com/backend-data VtepMAC",
            ),
            (
                &["10.244.1.0/24"],
                vec![
                    ("kube-subnet-manager", "true"),
                    ("backend-type", "vxlan"),
                    ("public-ip", "192.0.2.1"),
                    ("backend-data", "{not json"),
                ],
                data,
            ),
            (
                &["10.244.1.1/24"],
                base(("public-ip", "192.0.2.1")),
                "spec.podCIDRs",
            ),
            (
                &["10.244.1.0/24", "10.244.2.0/24"],
                base(("public-ip", "192.0.2.1")),
                "spec.podCIDRs",
            ),
        ];
        for (cidrs, annotations, field) in cases {
            let e = prefix()
                .lease_of(&node(cidrs, &annotations))
                .expect_err(field)
                .to_string();
            assert!(e.starts_with(field), "{field}: {e}");
        }
    }

    #[test]
    fn dual_stack_pod_cidrs_make_one_key() {
        let key = subnet_key(&["10.244.1.0/24", "fd00:10:244:1::/64"]).expect("dual");
        assert_eq!(key.to_string(), "10.244.1.0-24&fd00:10:244:1::-64");
    }

    #[test]
    fn overwrite_and_stored_public_ip_are_read_from_our_node() {
        let n = node(
            &[],
            &[
                ("public-ip-overwrite", "203.0.113.7"),
                ("node-public-ip", "192.0.2.9"),
            ],
        );
        assert_eq!(prefix().overwrite(&n), Some("203.0.113.7"));
        assert_eq!(prefix().stored_public_ip(&n), Some("192.0.2.9"));
        assert_eq!(prefix().overwrite(&node(&[], &[])), None);
        let n = node(
            &[],
            &[
                ("public-ipv6-overwrite", "2001:db8:7::7"),
                ("node-public-ipv6", "2001:db8::9"),
                ("public-ip-overwrite", ""),
            ],
        );
        assert_eq!(prefix().overwrite6(&n), Some("2001:db8:7::7"));
        assert_eq!(prefix().stored_public_ipv6(&n), Some("2001:db8::9"));
        assert_eq!(
            prefix().overwrite(&n),
            None,
            "empty is unset, as for flanneld"
        );
    }

    #[test]
    fn dual_stack_and_ipv6_only_nodes_write_flanneld_annotations() {
        // What flanneld's vxlan backend writes on a dual-stack node (with its
        // two devices' MACs; ringlay's one VTEP makes them equal).
        let dual = keyed(&prefix().ours(&vxlan_attrs(true)));
        assert_eq!(
            dual,
            [
                ("backend-data", r#"{"VNI":1,"VtepMAC":"0e:8a:3c:11:22:33"}"#),
                ("backend-type", "vxlan"),
                (
                    "backend-v6-data",
                    r#"{"VNI":1,"VtepMAC":"0e:8a:3c:11:22:33"}"#
                ),
                ("kube-subnet-manager", "true"),
                ("public-ip", "192.168.1.10"),
                ("public-ipv6", "2001:db8::10"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        // IPv6 only: no BackendData, so neither backend-data nor public-ip.
        let mut only = vxlan_attrs(true);
        only.public_ip = std::net::Ipv4Addr::UNSPECIFIED;
        only.backend_data = None;
        assert_eq!(
            keyed(&prefix().ours(&only)),
            [
                ("backend-type", "vxlan"),
                (
                    "backend-v6-data",
                    r#"{"VNI":1,"VtepMAC":"0e:8a:3c:11:22:33"}"#
                ),
                ("kube-subnet-manager", "true"),
                ("public-ipv6", "2001:db8::10"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        // host-gw IPv6 only: flanneld's `null` data, and its PublicIP 0.0.0.0.
        only.backend_type = Some(BackendType::HostGw);
        only.backend_v6_data = None;
        assert_eq!(
            keyed(&prefix().ours(&only)),
            [
                ("backend-data", "null"),
                ("backend-type", "host-gw"),
                ("backend-v6-data", "null"),
                ("kube-subnet-manager", "true"),
                ("public-ip", "0.0.0.0"),
                ("public-ipv6", "2001:db8::10"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        // And read back, an IPv6-only Node is that lease.
        let n = node(
            &["fd00:10:244:1::/64"],
            &[
                ("kube-subnet-manager", "true"),
                ("backend-type", "vxlan"),
                (
                    "backend-v6-data",
                    r#"{"VNI":1,"VtepMAC":"0e:8a:3c:11:22:33"}"#,
                ),
                ("public-ipv6", "2001:db8::10"),
            ],
        );
        let lease = prefix().lease_of(&n).expect("valid").expect("a lease");
        assert_eq!(lease.attrs.address().to_string(), "2001:db8::10");
        assert_eq!(lease.key.to_string(), "0.0.0.0-0&fd00:10:244:1::-64");
    }
}
