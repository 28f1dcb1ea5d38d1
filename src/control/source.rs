//! Where the leases come from, behind one interface: the static leases file or
//! etcd. The daemon's control loop asks a [`LeaseSource`] for the next lease set
//! and does the same with it whatever the source; another source (Kubernetes) is
//! one more variant here, not one more loop.
//!
//! Each source starts by finding this host's lease and the others
//! ([`LeaseSource::start`]), then reports changes as [`Event`]s:
//!
//! | source | what makes an event | a refused change |
//! |--------|---------------------|------------------|
//! | static file | an edit of the file (checked every [`FILE_CHECK_INTERVAL`]), SIGHUP | logged; the previous table stays |
//! | etcd | the follower's watch ([`etcd::Follower`]) | skipped by the follower with a warning |
//! | Kubernetes | the Node watch ([`kube::Follower`]) | the node skipped with one warning naming it |
//!
//! Invariant: a lease set a source hands out always holds this host's lease
//! unchanged. A static file that moves or drops our lease is refused whole (that
//! needs a restart); in etcd the follower keeps our lease or ends; in
//! Kubernetes our lease is the one we wrote at start, whatever the watch sees.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::etcd::{self, FollowStats, Follower, View};
use super::kube;
use super::{diff, find_local, FileStamp, LocalLease, Publics, StaticLeases};
use crate::config::{Features, Lease, NetworkConfig};
use crate::{Error, Result};

/// How often the leases file is checked for edits.
pub const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Where the network config and the leases come from (what the flags ask for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A static leases file (`--static-leases`).
    Static(PathBuf),
    /// etcd, as flanneld uses it (`--etcd-endpoints` and friends).
    Etcd(etcd::Settings),
    /// The Kubernetes API, as flanneld's `--kube-subnet-mgr`.
    Kube(kube::Settings),
}

/// A started lease source, with what it found at start.
pub struct Started {
    /// The network config.
    pub config: NetworkConfig,
    /// This host's lease.
    pub local: LocalLease,
    /// Every lease, ours included.
    pub leases: Vec<Lease>,
    /// The etcd follower's counters, for the operator endpoints.
    pub follow_stats: Option<Arc<FollowStats>>,
    /// The Kubernetes watch's counters, for the operator endpoints.
    pub kube_stats: Option<Arc<kube::KubeStats>>,
    /// The source, to follow from here on.
    pub source: LeaseSource,
}

/// What a lease source reports.
#[derive(Debug)]
pub enum Event {
    /// A new lease set; `changed` is false when it equals the previous one (a
    /// reload that found nothing new: routes are still reconciled).
    Leases {
        /// Every lease, ours included.
        leases: Vec<Lease>,
        /// Whether the set differs from the previous one.
        changed: bool,
        /// What brought it (for logs).
        why: &'static str,
    },
    /// Nothing to do (a check found no edit, a refused reload).
    Idle,
    /// The source ended: with an error (our lease was taken), or cleanly.
    Ended(Result<()>),
}

/// A running lease source.
pub enum LeaseSource {
    /// The static leases file.
    Static(Box<StaticSource>),
    /// etcd.
    Etcd(EtcdSource),
    /// Kubernetes.
    Kube(KubeSource),
}

impl LeaseSource {
    /// Starts `source`: reads the file, or (etcd) waits for the network config,
    /// acquires our lease and lists the others.
    ///
    /// `place` runs once, as soon as the network config is known and before any
    /// lease is written for it: it refuses a config this host cannot run, and
    /// says where this host is for that config's address families (flanneld,
    /// too, chooses its interface only once it has the config). Its [`Publics`]
    /// are what our lease advertises and how it is found again.
    /// `subnet_file` is where a previous run recorded its subnet. The lease we
    /// write (etcd, Kubernetes) advertises `features`; a static file says itself
    /// what each node has.
    pub async fn start(
        source: &Source,
        subnet_file: &Path,
        features: Features,
        place: impl FnOnce(&NetworkConfig) -> Result<Publics>,
    ) -> Result<Started> {
        match source {
            Source::Static(path) => StaticSource::start(path, place),
            Source::Etcd(settings) => {
                EtcdSource::start(settings, subnet_file, features, place).await
            }
            Source::Kube(settings) => KubeSource::start(settings, features, place).await,
        }
    }

    /// The next event. Cancel-safe: it only awaits cancel-safe futures, then
    /// acts without awaiting.
    pub async fn next(&mut self) -> Event {
        match self {
            LeaseSource::Static(s) => s.next().await,
            LeaseSource::Etcd(s) => s.next().await,
            LeaseSource::Kube(s) => s.next().await,
        }
    }

    /// SIGHUP: the static file is read again; etcd has nothing to re-read.
    pub fn hangup(&mut self) -> Event {
        match self {
            LeaseSource::Static(s) => s.hangup(),
            LeaseSource::Etcd(_) => {
                tracing::info!("SIGHUP: the leases come from etcd's watch; nothing to re-read");
                Event::Idle
            }
            LeaseSource::Kube(_) => {
                tracing::info!("SIGHUP: the leases come from the Node watch; nothing to re-read");
                Event::Idle
            }
        }
    }
}

/// The static leases file, watched for edits.
pub struct StaticSource {
    path: PathBuf,
    public: Publics,
    current: StaticLeases,
    local: LocalLease,
    stamp: Option<FileStamp>,
    tick: tokio::time::Interval,
}

impl StaticSource {
    fn start(
        path: &Path,
        place: impl FnOnce(&NetworkConfig) -> Result<Publics>,
    ) -> Result<Started> {
        let current = StaticLeases::load(path)?;
        let public = place(&current.config)?;
        let local = find_local(&current.leases, public)?;
        Ok(Started {
            config: current.config,
            local,
            leases: current.leases.clone(),
            follow_stats: None,
            kube_stats: None,
            source: LeaseSource::Static(Box::new(StaticSource {
                path: path.to_owned(),
                public,
                stamp: FileStamp::of(path).ok(),
                tick: tokio::time::interval(FILE_CHECK_INTERVAL),
                current,
                local,
            })),
        })
    }

    /// SIGHUP: the file is read again, edited or not.
    fn hangup(&mut self) -> Event {
        self.stamp = FileStamp::of(&self.path).ok();
        self.reload("SIGHUP")
    }

    async fn next(&mut self) -> Event {
        self.tick.tick().await;
        let now = FileStamp::of(&self.path).ok();
        let edited = match (&self.stamp, &now) {
            (Some(a), Some(b)) => a.changed(b),
            (None, Some(_)) => true,
            _ => false,
        };
        if !edited {
            return Event::Idle;
        }
        self.stamp = now;
        self.reload("leases file edited")
    }

    /// Reads the file again. A file that cannot be read or parsed, changes the
    /// network config or moves our lease is refused (logged; the previous leases
    /// stay in force).
    fn reload(&mut self, why: &'static str) -> Event {
        let new = match StaticLeases::load(&self.path) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(
                    "{why}: the leases file was refused, keeping the previous table: {e}"
                );
                return Event::Idle;
            }
        };
        if let Err(e) = self.acceptable(&new) {
            tracing::error!("{why}: {e}, keeping the previous table");
            return Event::Idle;
        }
        let d = diff(&self.current.leases, &new.leases);
        if d.is_empty() {
            tracing::info!("{why}: leases unchanged");
        }
        for k in &d.added {
            tracing::info!(lease = %k, "{why}: lease added");
        }
        for k in &d.removed {
            tracing::info!(lease = %k, "{why}: lease removed");
        }
        for k in &d.changed {
            tracing::info!(lease = %k, "{why}: lease changed");
        }
        self.current = new;
        Event::Leases {
            leases: self.current.leases.clone(),
            changed: !d.is_empty(),
            why,
        }
    }

    /// Whether `new` can replace the running leases without a restart.
    fn acceptable(&self, new: &StaticLeases) -> std::result::Result<(), String> {
        if new.config != self.current.config {
            return Err("the network config changed; that requires a restart".into());
        }
        match find_local(&new.leases, self.public) {
            Ok(l) if l.key == self.local.key && l.vtep_mac == self.local.vtep_mac => Ok(()),
            Ok(l) => Err(format!(
                "our lease changed ({} → {}); that requires a restart",
                self.local.key, l.key
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// etcd: the follower task (watch, renewal) and the views it hands over.
pub struct EtcdSource {
    view: watch::Receiver<View>,
    task: JoinHandle<Result<()>>,
}

impl EtcdSource {
    async fn start(
        settings: &etcd::Settings,
        subnet_file: &Path,
        features: Features,
        place: impl FnOnce(&NetworkConfig) -> Result<Publics>,
    ) -> Result<Started> {
        let margin = etcd::timing::check_margin(settings.renew_margin)?;
        let mut registry = etcd::Registry::connect(settings).await?;
        registry.advertise(features);
        let config = etcd::wait_config(&mut registry).await?;
        let public = place(&config)?;
        let previous = super::subnet_env::read_subnets(subnet_file);
        let mut rng = etcd::alloc::Rng::from_entropy();
        let held = registry
            .acquire(&config, public, previous, &mut rng)
            .await?;
        let how = match held.how {
            etcd::Acquired::Reused => "kept the lease etcd already had for our public address",
            etcd::Acquired::Previous => "took back the subnet subnet.env recorded",
            etcd::Acquired::New => "acquired a free subnet",
        };
        tracing::info!(
            lease = %held.key, public = %public, vtep_mac = %held.vtep_mac(),
            etcd = registry.endpoints(), "{how}"
        );
        let (follower, view) = Follower::start(registry, config, Some(held), margin).await?;
        let local = LocalLease {
            key: held.key,
            public_ip: public.v4,
            public_ipv6: held.attrs.public_ipv6,
            vtep_mac: held.vtep_mac(),
            vtep_mac_v6: held.vtep_mac_v6(),
            vtep_mac_derived: false,
        };
        let leases = view.borrow().leases.to_vec();
        let follow_stats = Some(follower.stats());
        let task = tokio::spawn(follower.run());
        Ok(Started {
            config,
            local,
            leases,
            follow_stats,
            kube_stats: None,
            source: LeaseSource::Etcd(EtcdSource { view, task }),
        })
    }

    async fn next(&mut self) -> Event {
        tokio::select! {
            changed = self.view.changed() => match changed {
                Ok(()) => Event::Leases {
                    leases: self.view.borrow_and_update().leases.to_vec(),
                    changed: true,
                    why: "etcd watch",
                },
                Err(_) => Event::Ended(ended((&mut self.task).await)),
            },
            r = &mut self.task => Event::Ended(ended(r)),
        }
    }
}

impl Drop for EtcdSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Kubernetes: the Node watch task and the lease sets it hands over.
pub struct KubeSource {
    view: watch::Receiver<Vec<Lease>>,
    task: JoinHandle<Result<()>>,
}

impl KubeSource {
    async fn start(
        settings: &kube::Settings,
        features: Features,
        place: impl FnOnce(&NetworkConfig) -> Result<Publics>,
    ) -> Result<Started> {
        let config = kube::read_net_config(&settings.net_config)?;
        let public = place(&config)?;
        let client = kube::client::connect(settings).await?;
        let node = kube::client::node_name(&client, settings).await?;
        let ours =
            kube::acquire::acquire(&client, settings, &node, &config, public, features).await?;
        tracing::info!(
            lease = %ours.lease.key, node, public_ip = %ours.lease.attrs.public_ip,
            public_ipv6 = ?ours.lease.attrs.public_ipv6,
            vtep_mac = %ours.local.vtep_mac, "our lease is our node's podCIDR"
        );
        let own = Some((node, ours.lease));
        let (follower, view) =
            kube::Follower::start(&client, settings.prefix.clone(), config, own).await?;
        let kube_stats = Some(follower.stats());
        let leases = view.borrow().clone();
        let task = tokio::spawn(follower.run());
        Ok(Started {
            config,
            local: ours.local,
            leases,
            follow_stats: None,
            kube_stats,
            source: LeaseSource::Kube(KubeSource { view, task }),
        })
    }

    async fn next(&mut self) -> Event {
        tokio::select! {
            changed = self.view.changed() => match changed {
                Ok(()) => Event::Leases {
                    leases: self.view.borrow_and_update().clone(),
                    changed: true,
                    why: "Kubernetes node watch",
                },
                Err(_) => Event::Ended(ended((&mut self.task).await)),
            },
            r = &mut self.task => Event::Ended(ended(r)),
        }
    }
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the follower task's end means.
fn ended(r: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    r.unwrap_or_else(|e| {
        Err(Error::setup(
            "following etcd",
            std::io::Error::other(e.to_string()),
        ))
    })
}
