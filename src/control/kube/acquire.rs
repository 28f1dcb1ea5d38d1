//! Our lease in Kubernetes: the subnet is our Node's podCIDR(s), which the
//! controller manager assigns; what we add is how to reach us, in flannel's
//! annotations, and (with `--set-node-network-unavailable`) the NetworkUnavailable
//! condition set to False.
//!
//! Both writes are strategic merge patches of the `nodes/<name>/status`
//! subresource, as flanneld's `PatchStatus`: kube-flannel.yml's ClusterRole allows
//! exactly that, and no write of any Node's spec.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use super::node::NodeLease;
use super::{Settings, WAIT_LOG};
use crate::config::{Features, Lease, NetworkConfig, SubnetKey};
use crate::control::etcd::alloc::lease_value;
use crate::control::{LocalLease, Publics};
use crate::{Error, Result};

/// How often our Node is read again while its podCIDR is missing.
const POLL: Duration = Duration::from_secs(1);
/// The NetworkUnavailable condition's reason: it names who set it.
pub const CONDITION_REASON: &str = "RinglayIsUp";
/// The NetworkUnavailable condition's message.
pub const CONDITION_MESSAGE: &str = "ringlay is running on this node";

/// Our lease, once written.
#[derive(Debug, Clone, Copy)]
pub struct Acquired {
    /// The lease as peers will read it from our annotations.
    pub lease: Lease,
    /// The same, as the daemon uses it.
    pub local: LocalLease,
}

/// Waits for our Node's podCIDR, then writes our annotations (advertising
/// `features` in `backend-data`) and the condition. `public` is where the
/// underlay placed us; the Node's `node-public-ip` and `node-public-ipv6`
/// annotations win over it, as flanneld takes them over its flags.
pub async fn acquire(
    client: &Client,
    settings: &Settings,
    node_name: &str,
    config: &NetworkConfig,
    public: Publics,
    features: Features,
) -> Result<Acquired> {
    let nodes: Api<NodeLease> = Api::all(client.clone());
    let (node, key) = wait_for_pod_cidr(&nodes, node_name, config).await?;
    let public = stored_public(settings, &node, config, public)?;
    let advertised = advertised(settings, &node, config, public)?;
    let vtep_mac = recorded_vtep_mac(settings, &node).unwrap_or_else(|| public.derived_vtep_mac());
    let attrs = lease_value(&config.backend, advertised, vtep_mac, &key, features);
    let wanted = settings.prefix.ours(&attrs);
    let current = node.metadata.annotations.clone().unwrap_or_default();
    let stale: Vec<&String> = wanted
        .keys()
        .filter(|k| current.get(*k) != wanted.get(*k))
        .collect();
    if stale.is_empty() {
        tracing::info!(node = node_name, "our annotations are already current");
    } else {
        tracing::info!(node = node_name, annotations = ?stale, "writing our annotations");
        let patch = serde_json::json!({ "metadata": { "annotations": wanted } });
        patch_status(client, node_name, &patch, "writing our annotations").await?;
    }
    if settings.set_network_unavailable {
        set_network_available(client, node_name).await?;
    }
    let local = LocalLease {
        key,
        public_ip: public.v4,
        public_ipv6: key.v6.and(public.v6),
        vtep_mac,
        vtep_mac_v6: attrs.backend_v6_data.map_or(vtep_mac, |d| d.vtep_mac),
        vtep_mac_derived: false,
    };
    Ok(Acquired {
        lease: Lease { key, attrs },
        local,
    })
}

/// Reads our Node until it exists and has a podCIDR inside the network, logging
/// what is missing every [`WAIT_LOG`].
async fn wait_for_pod_cidr(
    nodes: &Api<NodeLease>,
    name: &str,
    config: &NetworkConfig,
) -> Result<(NodeLease, SubnetKey)> {
    let mut last_log: Option<tokio::time::Instant> = None;
    loop {
        let missing = match nodes.get_opt(name).await {
            Ok(Some(node)) => match pod_cidr_key(&node, config)? {
                Some(key) => return Ok((node, key)),
                None => format!(
                    "node {name} has no podCIDR yet (kube-controller-manager assigns it \
                     with --allocate-node-cidrs); waiting"
                ),
            },
            Ok(None) => format!("node {name} does not exist (yet); waiting"),
            Err(e) => format!("reading node {name}: {e}; retrying"),
        };
        if last_log.is_none_or(|t| t.elapsed() >= WAIT_LOG) {
            tracing::warn!("{missing}");
            last_log = Some(tokio::time::Instant::now());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Our subnet key, once the podCIDRs cover every family the config enables.
/// A podCIDR outside the network is an error: that node was set up for another
/// cluster network than net-conf.json's.
fn pod_cidr_key(node: &NodeLease, config: &NetworkConfig) -> Result<Option<SubnetKey>> {
    let cidrs = node.pod_cidrs();
    if cidrs.is_empty() {
        return Ok(None);
    }
    let mut key = super::annotations::subnet_key(&cidrs)?;
    // A family the network does not enable is no part of our lease (flanneld
    // skips such a podCIDR too).
    key.v4 = key.v4.filter(|_| config.ipv4.is_some());
    key.v6 = key.v6.filter(|_| config.ipv6.is_some());
    let outside = |what: String, network: String| {
        Error::invalid(
            "spec.podCIDR",
            what,
            format!(
                "a subnet of the network config's {network}: kube-controller-manager's \
                 --cluster-cidr must equal net-conf.json's Network"
            ),
        )
    };
    if let Some(c) = config.ipv4 {
        match key.v4 {
            None => return Ok(None),
            Some(n) if !c.network.contains(&n) => {
                return Err(outside(n.to_string(), c.network.to_string()))
            }
            Some(_) => {}
        }
    }
    if let Some(c) = config.ipv6 {
        match key.v6 {
            None => return Ok(None),
            Some(n) if !c.network.contains(&n) => {
                return Err(outside(n.to_string(), c.network.to_string()))
            }
            Some(_) => {}
        }
    }
    Ok(Some(key))
}

/// Our public addresses: the `node-public-ip` and `node-public-ipv6`
/// annotations where set (flanneld takes them over `--public-ip` and
/// `--public-ipv6`) for the families the network has, else the underlay's.
fn stored_public(
    settings: &Settings,
    node: &NodeLease,
    config: &NetworkConfig,
    underlay: Publics,
) -> Result<Publics> {
    let p = &settings.prefix;
    let mut public = underlay;
    if let (Some(_), Some(text)) = (config.ipv4, p.stored_public_ip(node)) {
        public.v4 = parse_annotation_ip(settings, "node-public-ip", text)?;
    }
    if let (Some(_), Some(text)) = (config.ipv6, p.stored_public_ipv6(node)) {
        public.v6 = Some(parse_annotation_ip(settings, "node-public-ipv6", text)?);
    }
    if public != underlay {
        tracing::info!(%public, "using the public address of the node's node-public-ip(v6) annotation");
    }
    Ok(public)
}

/// The addresses peers are told to reach us at: the `public-ip-overwrite` and
/// `public-ipv6-overwrite` annotations where set (a node behind NAT), else ours.
fn advertised(
    settings: &Settings,
    node: &NodeLease,
    config: &NetworkConfig,
    public: Publics,
) -> Result<Publics> {
    let p = &settings.prefix;
    let mut out = public;
    if let (Some(_), Some(text)) = (config.ipv4, p.overwrite(node)) {
        out.v4 = parse_annotation_ip(settings, "public-ip-overwrite", text)?;
    }
    if let (Some(_), Some(text)) = (config.ipv6, p.overwrite6(node)) {
        out.v6 = Some(parse_annotation_ip(
            settings,
            "public-ipv6-overwrite",
            text,
        )?);
    }
    if out != public {
        tracing::info!(advertised = %out, "advertising the address of the node's public-ip(v6)-overwrite annotation");
    }
    Ok(out)
}

/// An address annotation's value, of the family `T` (IPv4 or IPv6).
fn parse_annotation_ip<T: std::str::FromStr + AddressKind>(
    settings: &Settings,
    name: &str,
    text: &str,
) -> Result<T> {
    text.parse().map_err(|_| {
        Error::invalid(
            format!("annotation {}{name}", settings.prefix.as_str()),
            text,
            format!("{}: fix or remove the annotation", T::EXAMPLE),
        )
    })
}

/// What an address annotation of each family should hold, for its error.
trait AddressKind {
    const EXAMPLE: &'static str;
}

impl AddressKind for Ipv4Addr {
    const EXAMPLE: &'static str = "an IPv4 address like 192.168.1.10";
}

impl AddressKind for Ipv6Addr {
    const EXAMPLE: &'static str = "an IPv6 address like 2001:db8::10";
}

/// The VtepMAC our own annotations recorded (a restart keeps it, so peers' fdb
/// entries stay right), if they hold a valid vxlan lease.
fn recorded_vtep_mac(settings: &Settings, node: &NodeLease) -> Option<crate::wire::MacAddr> {
    let lease = settings.prefix.lease_of(node).ok()??;
    let data = lease.attrs.backend_data.or(lease.attrs.backend_v6_data)?;
    Some(data.vtep_mac)
}

/// Sets our Node's NetworkUnavailable condition to False, as flanneld does once
/// its routes are in place, so the scheduler places pods here.
async fn set_network_available(client: &Client, node_name: &str) -> Result<()> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let condition = NodeCondition {
        type_: "NetworkUnavailable".to_owned(),
        status: "False".to_owned(),
        reason: Some(CONDITION_REASON.to_owned()),
        message: Some(CONDITION_MESSAGE.to_owned()),
        last_transition_time: Some(now.clone()),
        last_heartbeat_time: Some(now),
    };
    let patch = serde_json::json!({ "status": { "conditions": [condition] } });
    patch_status(
        client,
        node_name,
        &patch,
        "setting NetworkUnavailable=False",
    )
    .await?;
    tracing::info!(node = node_name, "set NetworkUnavailable=False");
    Ok(())
}

/// How long a status patch is retried while the API server fails (not while it
/// refuses: a 4xx is final), as flanneld retries its annotation patch.
const PATCH_RETRY_FOR: Duration = Duration::from_secs(30);

async fn patch_status(
    client: &Client,
    node_name: &str,
    patch: &serde_json::Value,
    what: &str,
) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        let result = nodes
            .patch_status(node_name, &PatchParams::default(), &Patch::Strategic(patch))
            .await;
        let e = match result {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let refused = matches!(&e, kube::Error::Api(s) if (400..500).contains(&s.code));
        if refused || started.elapsed() >= PATCH_RETRY_FOR {
            let what = format!("{what} on node {node_name} (a patch of nodes/{node_name}/status)");
            return Err(Error::kube(what, e));
        }
        tracing::warn!(node = node_name, "{what}: {e}; retrying in {delay:?}");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cidrs: &[&str]) -> NodeLease {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "n" },
            "spec": { "podCIDRs": cidrs },
        }))
        .expect("node")
    }

    fn key_of(cidrs: &[&str], config: &str) -> Option<String> {
        let config = NetworkConfig::parse(config).expect("valid config");
        pod_cidr_key(&node(cidrs), &config)
            .expect("inside the network")
            .map(|k| k.to_string())
    }

    const DUAL: &str =
        r#"{"Network":"100.96.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:100:96::/48"}"#;
    const V6_ONLY: &str =
        r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:100:96::/48"}"#;

    #[test]
    fn pod_cidrs_of_both_families_make_a_dual_stack_key() {
        let both = ["100.96.1.0/24", "fd00:100:96:1::/64"];
        assert_eq!(
            key_of(&both, DUAL).as_deref(),
            Some("100.96.1.0-24&fd00:100:96:1::-64")
        );
        // A dual-stack network waits for both families.
        assert_eq!(key_of(&both[..1], DUAL), None);
        // A family the network lacks is no part of the lease, as for flanneld.
        assert_eq!(
            key_of(&both, r#"{"Network":"100.96.0.0/16"}"#).as_deref(),
            Some("100.96.1.0-24")
        );
        assert_eq!(
            key_of(&both, V6_ONLY).as_deref(),
            Some("0.0.0.0-0&fd00:100:96:1::-64")
        );
    }
}
