//! What an operator sees of a running daemon: Prometheus metrics and health
//! endpoints over HTTP ([`http`]), `ringlay status` over a root-only unix socket
//! ([`status`]), and flannel's `--ip-masq` rules in nftables ([`masq`]).
//!
//! The daemon fills one shared [`State`] as start-up progresses; the endpoints only
//! read it. Nothing here touches the data path: the workers' [`Stats`] are atomics
//! the workers alone write, and the table is read through its published snapshots.
//!
//! Per-peer traffic comes from each worker's [`PeerCounters`], keyed by the
//! peer's public IP and summed here; the host-gw backend has no workers, so its
//! per-peer columns show `-`.
//!
//! [`PeerCounters`]: crate::dataplane::peers::PeerCounters

pub mod http;
pub mod masq;
pub mod metrics;
pub mod status;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::config::SubnetKey;
use crate::control::etcd::FollowStats;
use crate::control::kube::KubeStats;
use crate::dataplane::{Offload, Stats};
use crate::table::{Snapshot, Table};

/// How long a client of the HTTP endpoints or the status socket may take to send
/// its request and read the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// This host's lease, as the endpoints show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseInfo {
    /// The lease's subnets (e.g. `100.96.1.0/24`; see [`subnets`]).
    pub subnet: String,
    /// The public IP peers reach us at (`0.0.0.0` in an IPv6-only network).
    pub public_ip: Ipv4Addr,
    /// The public IPv6 address peers reach us at, when the network has IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ipv6: Option<std::net::Ipv6Addr>,
    /// Our VTEP MAC (vxlan), if any.
    pub vtep_mac: Option<String>,
    /// The backend type: `udp`, `vxlan` or `host-gw`.
    pub backend: String,
    /// The TUN device (none with host-gw).
    pub tun: Option<String>,
}

/// What the daemon has set up so far; shared between the daemon and the endpoints.
#[derive(Debug, Default)]
pub struct State {
    ready: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    lease: Option<LeaseInfo>,
    workers: Vec<Arc<Stats>>,
    offload: Option<Offload>,
    table: Option<Table>,
    follow: Option<Arc<FollowStats>>,
    kube: Option<Arc<KubeStats>>,
}

/// A consistent read of the [`State`] for one response.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Whether the daemon is ready (lease held, device or routes up, subnet.env written).
    pub ready: bool,
    /// Our lease, once held.
    pub lease: Option<LeaseInfo>,
    /// Every worker's counters (empty with host-gw or before the workers start).
    pub workers: Vec<Arc<Stats>>,
    /// The offloads in use (`None` with host-gw or before the workers start).
    pub offload: Option<Offload>,
    /// The current table and when it was published.
    pub table: Option<(Arc<Snapshot>, Option<SystemTime>)>,
    /// The etcd follower's counters (etcd only).
    pub follow: Option<Arc<FollowStats>>,
    /// The Kubernetes Node watch's counters (Kubernetes only).
    pub kube: Option<Arc<KubeStats>>,
    /// Packets the kernel dropped at the TUN device's queues, read when the
    /// sample is taken (tunnel backends only).
    pub tun_tx_dropped: Option<u64>,
}

impl State {
    /// A fresh state, not ready, shared.
    pub fn new() -> Arc<State> {
        Arc::new(State::default())
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records our lease.
    pub fn set_lease(&self, lease: LeaseInfo) {
        self.inner().lease = Some(lease);
    }

    /// Records the workers' counters and the offloads in use.
    pub fn set_dataplane(&self, workers: &[Arc<Stats>], offload: Offload) {
        let mut i = self.inner();
        i.workers = workers.to_vec();
        i.offload = Some(offload);
    }

    /// Records the table the daemon publishes to.
    pub fn set_table(&self, table: &Table) {
        self.inner().table = Some(table.clone());
    }

    /// Records the etcd follower's counters.
    pub fn set_follow(&self, follow: Arc<FollowStats>) {
        self.inner().follow = Some(follow);
    }

    /// Records the Kubernetes Node watch's counters.
    pub fn set_kube(&self, kube: Arc<KubeStats>) {
        self.inner().kube = Some(kube);
    }

    /// Marks the daemon ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the daemon is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Reads everything at once.
    pub fn sample(&self) -> Sample {
        let i = self.inner();
        let tun = i.lease.as_ref().and_then(|l| l.tun.as_deref());
        Sample {
            tun_tx_dropped: tun.and_then(|t| crate::sys::netdev::tx_dropped(t).ok()),
            ready: self.is_ready(),
            lease: i.lease.clone(),
            workers: i.workers.clone(),
            offload: i.offload,
            table: i.table.as_ref().map(|t| (t.load_full(), t.published_at())),
            follow: i.follow.clone(),
            kube: i.kube.clone(),
        }
    }
}

/// A lease's subnets in CIDR notation: `100.96.1.0/24`, or both families
/// separated by a comma.
pub fn subnets(key: &SubnetKey) -> String {
    match (key.v4, key.v6) {
        (Some(a), Some(b)) => format!("{a},{b}"),
        (Some(a), None) => a.to_string(),
        (None, Some(b)) => b.to_string(),
        (None, None) => key.to_string(),
    }
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
