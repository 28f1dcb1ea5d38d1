//! The Node as the watch keeps it: its metadata and the spec's podCIDRs, nothing
//! of `status` (images, conditions, addresses — most of a Node's bytes), which
//! serde skips without building it.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

/// A Node, decoded for the lease table only.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeLease {
    /// Name, resourceVersion and annotations (what the watch and the lease need).
    pub metadata: ObjectMeta,
    /// The subnets the controller manager assigned.
    #[serde(default)]
    pub spec: Option<NodeLeaseSpec>,
}

/// The part of a Node's spec a lease is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NodeLeaseSpec {
    /// `spec.podCIDR`: the node's first (IPv4, or only) subnet.
    #[serde(rename = "podCIDR", default)]
    pub pod_cidr: Option<String>,
    /// `spec.podCIDRs`: one subnet per family, the first equal to `podCIDR`.
    #[serde(rename = "podCIDRs", default)]
    pub pod_cidrs: Option<Vec<String>>,
}

impl NodeLease {
    /// The node's name.
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    /// Its podCIDRs: `podCIDRs`, else `podCIDR` alone, else none (not assigned yet).
    pub fn pod_cidrs(&self) -> Vec<&str> {
        let Some(spec) = &self.spec else {
            return Vec::new();
        };
        match (&spec.pod_cidrs, &spec.pod_cidr) {
            (Some(all), _) if !all.is_empty() => all.iter().map(String::as_str).collect(),
            (_, Some(one)) if !one.is_empty() => vec![one.as_str()],
            _ => Vec::new(),
        }
    }

    /// The annotation `key`, if present.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }
}

impl kube::Resource for NodeLease {
    type DynamicType = ();
    type Scope = kube::core::ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Node".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "nodes".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_node_without_keeping_its_status() {
        let json = r#"{"apiVersion":"v1","kind":"Node",
            "metadata":{"name":"a","resourceVersion":"7","annotations":{"k":"v"}},
            "spec":{"podCIDR":"10.244.1.0/24","podCIDRs":["10.244.1.0/24","fd00::/64"]},
            "status":{"images":[{"names":["x"],"sizeBytes":1}]}}"#;
        let n: NodeLease = serde_json::from_str(json).expect("decode");
        assert_eq!(n.name(), "a");
        assert_eq!(n.pod_cidrs(), ["10.244.1.0/24", "fd00::/64"]);
        assert_eq!(n.annotation("k"), Some("v"));
    }

    #[test]
    fn pod_cidr_alone_and_none() {
        let one: NodeLease =
            serde_json::from_str(r#"{"metadata":{"name":"a"},"spec":{"podCIDR":"10.0.0.0/24"}}"#)
                .expect("decode");
        assert_eq!(one.pod_cidrs(), ["10.0.0.0/24"]);
        let none: NodeLease =
            serde_json::from_str(r#"{"metadata":{"name":"a"},"spec":{}}"#).expect("decode");
        assert!(none.pod_cidrs().is_empty());
    }
}
