//! The etcd subnet manager: flanneld's keys, values and subnet.env, so ringlay and
//! flanneld nodes share one cluster — with the lease handling flannel's users keep
//! asking for.
//!
//! | module     | owns                                                           | I/O |
//! |------------|----------------------------------------------------------------|-----|
//! | [`alloc`]  | choosing a free subnet in `[SubnetMin, SubnetMax]`; our lease value; the random source | none |
//! | [`leases`] | the lease set a list fills and watch events update; refused keys reported once | none |
//! | [`timing`] | backoff with jitter; when to renew                             | none |
//! | [`client`] | the etcd requests: list, compare-guarded create / renew / re-create, watch | etcd |
//! | [`follow`] | the task that follows etcd and hands the daemon lease sets      | etcd |
//!
//! # Keys and values
//!
//! `<prefix>/config` is flannel's network config; `<prefix>/subnets/<key>` holds one
//! lease, attached to a 24 h etcd lease, with flannel's JSON (see
//! [`alloc::lease_value`]). A lease is acquired as flanneld does (the lease with our
//! PublicIP, else the subnet in subnet.env, else a random free one), but every write
//! is a transaction that compares first (see [`client`]), so a node never
//! overwrites a lease it does not hold.
//!
//! # Where ringlay departs from flanneld, and why
//!
//! * **Renewal compares before it writes.** flanneld renews with a plain put, which
//!   clobbers a lease another node took in between (flannel #1289). ringlay's
//!   renewal succeeds only if the key's `mod_revision` is still the one it wrote.
//! * **A lost lease is taken back, not fatal.** flanneld exits when its lease
//!   vanishes (#1240), dropping every container's traffic until it is restarted,
//!   and comes back with a new subnet if another node took the old one meanwhile.
//!   ringlay re-creates a deleted lease at once under the same key (if nobody else
//!   holds it, which the create transaction checks), so the data path, the TUN
//!   address and the containers' addresses stay valid and forwarding never stops.
//!   Only if another node's lease is at the key does it stop claiming the subnet
//!   and exit with [`crate::Error::LeaseTaken`]: the subnet is that node's now,
//!   and the containers here must be re-addressed anyway, which a restart (and
//!   the CNI re-creating them) does.
//! * **No request per event.** flanneld asks etcd for each lease's TTL on every
//!   watch event (O(N²) requests as N nodes join); ringlay applies events as they
//!   come and keeps no expiry per peer: etcd deletes an expired lease, and the watch
//!   reports it.
//! * **Compaction does not loop.** A compacted watch is re-listed after a backoff
//!   delay and watched from the list's revision (#2471).

pub mod alloc;
pub mod client;
pub mod follow;
pub mod leases;
pub mod timing;

use std::path::PathBuf;
use std::time::Duration;

pub use client::{Acquired, Held, Registry, Renewal};
pub use follow::{FollowStats, Follower, View};

/// flannel's default key prefix.
pub const DEFAULT_PREFIX: &str = "/coreos.com/network";
/// flannel's default endpoint.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";
/// How often a missing config is reported while waiting for it.
pub const CONFIG_WAIT_LOG: Duration = Duration::from_secs(10);

/// How to reach etcd and where the network's keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `--etcd-endpoints`.
    pub endpoints: Vec<String>,
    /// `--etcd-prefix`.
    pub prefix: String,
    /// `--etcd-cafile`.
    pub ca_file: Option<PathBuf>,
    /// `--etcd-certfile`.
    pub cert_file: Option<PathBuf>,
    /// `--etcd-keyfile`.
    pub key_file: Option<PathBuf>,
    /// `--etcd-username`.
    pub username: Option<String>,
    /// `--etcd-password`.
    pub password: Option<String>,
    /// `--subnet-lease-renew-margin`.
    pub renew_margin: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            endpoints: vec![DEFAULT_ENDPOINT.to_owned()],
            prefix: DEFAULT_PREFIX.to_owned(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            username: None,
            password: None,
            renew_margin: Duration::from_secs(60 * 60),
        }
    }
}

/// Reads `<prefix>/config`, waiting while it is missing or etcd is unreachable and
/// logging once per [`CONFIG_WAIT_LOG`] which key is expected. A config that is
/// present but refused is an error naming the field.
pub async fn wait_config(registry: &mut Registry) -> crate::Result<crate::config::NetworkConfig> {
    let key = leases::config_key(registry.prefix());
    let mut backoff = timing::Backoff::new(
        Duration::from_millis(200),
        Duration::from_secs(2),
        alloc::Rng::from_entropy(),
    );
    let mut last_log: Option<tokio::time::Instant> = None;
    loop {
        let why = match registry.config().await {
            Ok(Some(bytes)) => {
                return crate::config::NetworkConfig::parse_bytes(&bytes).map_err(|e| {
                    crate::Error::invalid(
                        key.clone(),
                        "(refused)",
                        format!("flannel's network config: {e}"),
                    )
                })
            }
            Ok(None) => format!(
                "waiting for the network config: {key} does not exist yet in etcd at {}; \
                 write flannel's config JSON there (e.g. etcdctl put {key} '{{\"Network\":\"100.96.0.0/16\",\"Backend\":{{\"Type\":\"vxlan\"}}}}')",
                registry.endpoints()
            ),
            Err(e) => format!("waiting for etcd: {e}"),
        };
        if last_log.is_none_or(|t| t.elapsed() >= CONFIG_WAIT_LOG) {
            tracing::warn!("{why}");
            last_log = Some(tokio::time::Instant::now());
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// `ringlay watch`: follows the leases in etcd and keeps a table of them as a node
/// would, logging every table it publishes, without a lease of its own or a data
/// path (no privileges needed). Runs until SIGINT or SIGTERM, then logs how many
/// etcd requests it made.
pub fn watch_only(settings: &Settings) -> crate::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::Error::setup("starting the control runtime", e))?;
    runtime.block_on(async {
        let sig = |k: SignalKind| {
            signal(k).map_err(|e| crate::Error::setup("installing signal handlers", e))
        };
        let (mut term, mut int) = (sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?);
        let mut registry = Registry::connect(settings).await?;
        let config = wait_config(&mut registry).await?;
        let counter = registry.clone();
        let (follower, mut view) =
            Follower::start(registry, config, None, settings.renew_margin).await?;
        let table = crate::table::Table::new();
        let nobody = crate::config::SubnetKey { v4: None, v6: None };
        let publish = |leases: &[crate::config::Lease]| {
            let generation =
                table.publish(crate::control::build_snapshot(&config, leases, &nobody));
            tracing::info!(
                generation,
                peers = table.load().len(),
                requests = counter.requests(),
                "published a new table"
            );
        };
        publish(&view.borrow_and_update().leases.clone());
        let mut task = tokio::spawn(follower.run());
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                changed = view.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let leases = view.borrow_and_update().leases.clone();
                    publish(&leases);
                }
                r = &mut task => {
                    tracing::error!("the follower ended: {r:?}");
                    break;
                }
            }
        }
        task.abort();
        tracing::info!(
            requests = counter.requests(),
            peers = table.load().len(),
            "stopped"
        );
        Ok(())
    })
}
