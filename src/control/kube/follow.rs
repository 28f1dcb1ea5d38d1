//! Following the cluster's Nodes: one list, then one watch from the list's
//! resourceVersion (with bookmarks, so a quiet watch still advances), each event
//! folded at once into a map of node name → lease, and the lease set handed to
//! the daemon through a `watch` channel that holds only the latest set — once per
//! burst of events that are already waiting, not once per event.
//!
//! A `410 Gone` (the history was compacted) or a broken stream makes the watcher
//! re-list after a backoff with jitter (kube-runtime's default: 0.8 s doubling to
//! 30 s); the re-listed nodes replace the map in one step and the daemon gets one
//! new set, so the table is diffed, not rebuilt from nothing, and forwarding goes
//! on with the last good table meanwhile.
//!
//! A Node whose annotations or podCIDRs are malformed (or outside the network) is
//! skipped with one warning naming it (again only when the reason changes); the
//! lease it had before, if any, stays, as with a malformed etcd value. Two nodes
//! claiming one subnet (or one public IP): the node that held it first keeps it
//! (in a list, the first by name), the other is refused until its next event or
//! the next list. Our own Node is never read as a peer: the set always holds our
//! lease as we wrote it.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::{FutureExt, Stream, StreamExt};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::watch;

use super::node::NodeLease;
use super::Prefix;
use crate::config::{Lease, NetworkConfig};
use crate::Result;

/// The watch's counters, for metrics and status.
#[derive(Debug, Default)]
pub struct KubeStats {
    /// Node events applied (added, modified, deleted, listed).
    pub events: AtomicU64,
    /// Full lists: the first, and one after each lost watch.
    pub lists: AtomicU64,
    /// Errors of the list or watch (each followed by a backoff).
    pub errors: AtomicU64,
    /// Nodes refused right now (malformed annotations or podCIDRs, a taken subnet).
    pub refused: AtomicU64,
}

/// The most events applied before a lease set is published.
const BURST: usize = 1024;

type NodeEvents = Pin<Box<dyn Stream<Item = watcher::Result<watcher::Event<NodeLease>>> + Send>>;

/// The task that follows the Nodes.
pub struct Follower {
    events: NodeEvents,
    prefix: Prefix,
    /// The network config: peers' subnets must lie inside its networks.
    config: NetworkConfig,
    /// Our node's name and lease (`None` for `ringlay watch`, which holds none).
    own: Option<(String, Lease)>,
    /// Every node that is a lease now, ours excluded.
    peers: BTreeMap<String, Lease>,
    /// Nodes refused, with why (warned once per reason).
    refused: BTreeMap<String, String>,
    /// What the Nodes of a list in progress are (between `Init` and `InitDone`).
    listing: Option<Vec<(String, Reading)>>,
    tx: watch::Sender<Vec<Lease>>,
    stats: Arc<KubeStats>,
}

impl Follower {
    /// Lists the Nodes once (retrying with backoff until the API server answers)
    /// and returns the follower with a receiver holding the first lease set,
    /// ours (`own`: our node's name and lease) included.
    pub async fn start(
        client: &Client,
        prefix: Prefix,
        config: NetworkConfig,
        own: Option<(String, Lease)>,
    ) -> Result<(Follower, watch::Receiver<Vec<Lease>>)> {
        let nodes: Api<NodeLease> = Api::all(client.clone());
        let events = watcher(nodes, watcher::Config::default())
            .default_backoff()
            .boxed();
        let (tx, rx) = watch::channel(own.iter().map(|(_, l)| *l).collect());
        let mut follower = Follower {
            events,
            prefix,
            config,
            own,
            peers: BTreeMap::new(),
            refused: BTreeMap::new(),
            listing: None,
            tx,
            stats: Arc::new(KubeStats::default()),
        };
        while follower.stats.lists.load(Ordering::Relaxed) == 0 {
            if !follower.step().await {
                break;
            }
        }
        Ok((follower, rx))
    }

    /// The counters.
    pub fn stats(&self) -> Arc<KubeStats> {
        Arc::clone(&self.stats)
    }

    /// Follows until the daemon drops the receiver.
    pub async fn run(mut self) -> Result<()> {
        while !self.tx.is_closed() && self.step().await {}
        Ok(())
    }

    /// Applies the next event, then every event already waiting (up to
    /// [`BURST`]), and publishes once if the lease set changed: a burst of
    /// events costs one table, not one per event. False once the stream ends.
    async fn step(&mut self) -> bool {
        let Some(next) = self.events.next().await else {
            return false;
        };
        let mut changed = self.handle(next);
        let mut open = true;
        for _ in 1..BURST {
            match self.events.next().now_or_never() {
                Some(Some(next)) => changed |= self.handle(next),
                Some(None) => {
                    open = false;
                    break;
                }
                None => break,
            }
        }
        self.stats
            .refused
            .store(self.refused.len() as u64, Ordering::Relaxed);
        if changed {
            self.publish();
        }
        open
    }

    /// One item of the stream; whether the lease set changed.
    fn handle(&mut self, next: watcher::Result<watcher::Event<NodeLease>>) -> bool {
        match next {
            Ok(event) => self.apply(event),
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "Kubernetes node watch: {e}; retrying after a backoff, forwarding with the last table"
                );
                false
            }
        }
    }

    fn apply(&mut self, event: watcher::Event<NodeLease>) -> bool {
        use watcher::Event;
        match event {
            Event::Init => {
                self.listing = Some(Vec::new());
                false
            }
            Event::InitApply(node) => {
                // Only the reading is kept, not the Node, while the list lasts.
                let reading = (node.name().to_owned(), self.read(&node));
                if let Some(l) = &mut self.listing {
                    l.push(reading);
                }
                false
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                self.stats.lists.fetch_add(1, Ordering::Relaxed);
                self.replace(listed)
            }
            Event::Apply(node) => {
                self.stats.events.fetch_add(1, Ordering::Relaxed);
                let reading = self.read(&node);
                self.admit(node.name(), reading, None)
            }
            Event::Delete(node) => {
                self.stats.events.fetch_add(1, Ordering::Relaxed);
                self.refused.remove(node.name());
                self.peers.remove(node.name()).is_some()
            }
        }
    }

    /// A re-list: the listed nodes replace the map (a node refused now keeps
    /// the lease it had). Whether the lease set changed.
    fn replace(&mut self, listed: Vec<(String, Reading)>) -> bool {
        let names: std::collections::BTreeSet<&str> =
            listed.iter().map(|(n, _)| n.as_str()).collect();
        self.refused.retain(|name, _| names.contains(name.as_str()));
        let old = std::mem::take(&mut self.peers);
        let nodes = listed.len();
        // In name order, so that of two nodes claiming one subnet the first keeps it.
        let mut listed = listed;
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, reading) in listed {
            let fallback = old.get(&name).copied();
            self.admit(&name, reading, fallback);
        }
        tracing::info!(
            nodes,
            peers = self.peers.len(),
            "listed the cluster's nodes"
        );
        self.peers != old
    }

    /// What `node` is to the table.
    fn read(&self, node: &NodeLease) -> Reading {
        if self.own.as_ref().is_some_and(|(n, _)| n == node.name()) {
            return Reading::Ours;
        }
        match self.prefix.lease_of(node).and_then(|l| self.inside(l)) {
            Ok(Some(l)) => Reading::Lease(l),
            Ok(None) => Reading::NoLease,
            Err(e) => Reading::Refused(e.to_string()),
        }
    }

    /// Puts the node's lease into the map, or takes it out (no lease yet); a
    /// refused node keeps its lease, or `fallback`. Whether its entry changed.
    fn admit(&mut self, name: &str, reading: Reading, fallback: Option<Lease>) -> bool {
        let before = self.peers.remove(name);
        match reading {
            Reading::Ours => return false,
            Reading::NoLease => {
                self.refused.remove(name);
            }
            Reading::Refused(why) => {
                // As with a malformed etcd value: the node keeps the lease it had.
                if let Some(old) = before.or(fallback) {
                    self.peers.insert(name.to_owned(), old);
                }
                self.refuse(name, why);
            }
            Reading::Lease(lease) => match self.holder(&lease) {
                Some(other) => {
                    let why = format!("its subnet or public IP is already node {other}'s");
                    self.refuse(name, why);
                }
                None => {
                    self.refused.remove(name);
                    self.peers.insert(name.to_owned(), lease);
                }
            },
        }
        self.peers.get(name) != before.as_ref()
    }

    /// The node already holding `lease`'s subnet or public IP, if any.
    fn holder(&self, lease: &Lease) -> Option<String> {
        let own = self.own.iter().map(|(n, l)| (n, l));
        own.chain(self.peers.iter())
            .find(|(_, l)| l.key == lease.key || l.attrs.address() == lease.attrs.address())
            .map(|(n, _)| n.clone())
    }

    /// `lease`, if its subnets lie inside the network config's networks.
    fn inside(&self, lease: Option<Lease>) -> Result<Option<Lease>> {
        let Some(l) = lease else { return Ok(None) };
        let v4_out = match (self.config.ipv4, l.key.v4) {
            (Some(c), Some(n)) => !c.network.contains(&n),
            _ => false,
        };
        let v6_out = match (self.config.ipv6, l.key.v6) {
            (Some(c), Some(n)) => !c.network.contains(&n),
            _ => false,
        };
        if v4_out || v6_out {
            return Err(crate::Error::invalid(
                "spec.podCIDRs",
                l.key,
                "subnets of the network config's Network (and IPv6Network)",
            ));
        }
        Ok(Some(l))
    }

    fn refuse(&mut self, name: &str, why: String) {
        if self.refused.get(name) != Some(&why) {
            tracing::warn!(node = name, "skipping the node's lease: {why}");
            self.refused.insert(name.to_owned(), why);
        }
    }

    /// Hands the daemon the lease set: ours, then every peer's.
    fn publish(&mut self) {
        let set: Vec<Lease> = self
            .own
            .iter()
            .map(|(_, l)| *l)
            .chain(self.peers.values().copied())
            .collect();
        self.tx.send_replace(set);
    }
}

/// What a Node is to the table.
#[derive(Debug)]
enum Reading {
    /// Our own Node: never a peer.
    Ours,
    /// No lease yet (no subnet manager annotation, or no podCIDR).
    NoLease,
    /// A lease.
    Lease(Lease),
    /// Malformed, with why.
    Refused(String),
}
