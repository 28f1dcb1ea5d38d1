//! The Kubernetes subnet manager, as flanneld's `--kube-subnet-mgr`: each node's
//! subnet is its Node's `spec.podCIDR` (`podCIDRs` for dual-stack), and every node
//! publishes how to reach it in flannel's annotations on its Node object, so
//! ringlay and flanneld nodes share one cluster.
//!
//! | module          | owns                                                            | I/O |
//! |-----------------|-----------------------------------------------------------------|-----|
//! | [`annotations`] | flannel's annotation keys and values; a Node → a lease           | none |
//! | [`node`]        | the slim Node the watch keeps (name, podCIDRs, annotations)      | none |
//! | [`client`]      | the API client from a kubeconfig, a URL or the pod's service account; our node's name | the API server |
//! | [`acquire`]     | our lease: wait for the podCIDR, write our annotations, mark the network available | the API server |
//! | [`follow`]      | one list + watch of Nodes, handing the daemon lease sets         | the API server |
//!
//! # Where ringlay departs from flanneld, and why
//!
//! * **No event channel to overflow.** flanneld's informer feeds a channel of 5,000
//!   events; a burst beyond it blocks the informer. ringlay folds each event into
//!   its lease map at once and hands the daemon only the latest lease set (a
//!   `watch` channel), so a burst costs one table, not a queue.
//! * **No full list per resync.** The watch resumes from its last resourceVersion
//!   (with bookmarks); only a `410 Gone` or a broken stream re-lists, after a
//!   backoff with jitter, and the re-listed set is diffed against the table.
//!   Forwarding goes on with the last good table meanwhile.
//! * **Only what the table needs is kept.** The watch decodes Nodes into
//!   [`node::NodeLease`], which skips `status` (images, conditions, addresses), and
//!   keeps one [`Lease`](crate::config::Lease) per node, so memory does not grow
//!   with the size of Node objects.
//! * **A missing podCIDR is waited for, not fatal.** flanneld exits with "pod cidr
//!   not assigned"; ringlay logs what is missing every [`WAIT_LOG`] and keeps
//!   `/readyz` at 503 until the controller manager assigns one.

pub mod acquire;
pub mod annotations;
pub mod client;
pub mod follow;
pub mod node;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::NetworkConfig;
use crate::{Error, Result};

pub use annotations::Prefix;
pub use follow::{Follower, KubeStats};

/// flannel's default annotation prefix.
pub const DEFAULT_PREFIX: &str = "flannel.alpha.coreos.com";
/// Where kube-flannel.yml mounts the network config.
pub const DEFAULT_NET_CONFIG: &str = "/etc/kube-flannel/net-conf.json";
/// How often a missing podCIDR (or node) is reported while waiting for it.
pub const WAIT_LOG: Duration = Duration::from_secs(10);

/// How to reach the API server and what to read there (flanneld's flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `--kube-api-url`: overrides the kubeconfig's server.
    pub api_url: Option<String>,
    /// `--kubeconfig-file`; with neither it nor the URL, the pod's service account.
    pub kubeconfig: Option<PathBuf>,
    /// `--kube-annotation-prefix`, validated.
    pub prefix: Prefix,
    /// `--net-config-path`: the network config (not etcd's) in this mode.
    pub net_config: PathBuf,
    /// `--set-node-network-unavailable`: set the NetworkUnavailable condition to
    /// False once our annotations are written.
    pub set_network_unavailable: bool,
    /// This node's name: `NODE_NAME`; `None` to read it from our pod
    /// (`POD_NAMESPACE`/`POD_NAME`, its `spec.nodeName`).
    pub node_name: Option<String>,
    /// Our pod, to find the node name when `node_name` is `None`.
    pub pod: Option<(String, String)>,
}

/// The network config of `--net-config-path` (kube-flannel.yml's ConfigMap
/// `kube-flannel-cfg`, key `net-conf.json`), validated as etcd's would be.
pub fn read_net_config(path: &Path) -> Result<NetworkConfig> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        action: "read the network config (--net-config-path)",
        source,
    })?;
    NetworkConfig::parse_bytes(&bytes).map_err(|e| Error::InFile {
        path: path.to_owned(),
        source: Box::new(e),
    })
}

/// `ringlay watch --kube-subnet-mgr`: follows the cluster's Nodes and keeps a
/// table of their leases as a node would, logging every table it publishes,
/// without writing anything (it needs only `get`, `list` and `watch` on nodes).
/// Runs until SIGINT or SIGTERM.
pub fn watch_only(settings: &Settings) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::setup("starting the control runtime", e))?;
    runtime.block_on(async {
        let sig =
            |k: SignalKind| signal(k).map_err(|e| Error::setup("installing signal handlers", e));
        let (mut term, mut int) = (sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?);
        let config = read_net_config(&settings.net_config)?;
        let client = client::connect(settings).await?;
        let (follower, mut view) =
            Follower::start(&client, settings.prefix.clone(), config, None).await?;
        let stats = follower.stats();
        let table = crate::table::Table::new();
        let nobody = crate::config::SubnetKey { v4: None, v6: None };
        let publish = |leases: &[crate::config::Lease]| {
            let generation =
                table.publish(crate::control::build_snapshot(&config, leases, &nobody));
            tracing::info!(
                generation,
                peers = table.load().len(),
                "published a new table"
            );
        };
        publish(&view.borrow_and_update().clone());
        let mut task = tokio::spawn(follower.run());
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                changed = view.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let leases = view.borrow_and_update().clone();
                    publish(&leases);
                }
                r = &mut task => {
                    tracing::error!("the Node watch ended: {r:?}");
                    break;
                }
            }
        }
        task.abort();
        tracing::info!(
            lists = stats.lists.load(std::sync::atomic::Ordering::Relaxed),
            events = stats.events.load(std::sync::atomic::Ordering::Relaxed),
            peers = table.load().len(),
            "stopped"
        );
        Ok(())
    })
}
