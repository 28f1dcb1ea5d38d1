//! Following the leases in etcd: one list, then one watch from the list's revision;
//! renewal of our own lease; config changes. Runs as one task and hands every
//! change to the daemon as a [`View`] through a `tokio::sync::watch` channel, which
//! keeps only the latest: the daemon builds one table per view, never one per event.
//!
//! * **No request per event.** A watch event carries the lease's key and value;
//!   nothing is asked of etcd to apply it (flanneld asks for the TTL of every lease
//!   it sees, O(N²) requests as a cluster starts).
//! * **Batched publishing.** Events are applied to the [`LeaseSet`] as they come;
//!   a view is published at most every [`FLUSH_INTERVAL`], so 10,000 leases written
//!   at once cost a few table builds, not 10,000.
//! * **Compaction and broken streams.** A watch that reports a compaction, is
//!   cancelled, ends or fails is dropped; after a [`Backoff`] delay the prefix is
//!   listed again, diffed against what we had (each difference logged), and a new
//!   watch starts from the new list's revision. A watch can never be re-created at
//!   a compacted revision, so it cannot loop (flannel #2471), and every retry waits.
//! * **etcd away.** Nothing is published while etcd is unreachable: the data path
//!   keeps forwarding on the last table.
//! * **Our lease.** Renewed `margin` before it expires, only if its `mod_revision`
//!   is still ours. If it was deleted (by an operator, or its etcd lease expired
//!   while we could not renew), it is re-created at once under the same key, so
//!   nothing on this host changes; so is a value that names no node (garbage, `{}`),
//!   written over. If another node's lease is there now — any JSON object naming
//!   another usable address, even of a backend ringlay does not run
//!   ([`LeaseAttrs::claimant`]) — we stop claiming the subnet (our etcd lease is
//!   revoked; nothing is written) and [`Follower::run`] returns [`Error::LeaseTaken`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};

use super::alloc::Rng;
use super::client::{Held, Registry, Renewal};
use super::leases::{classify, config_key, Applied, Key, LeaseSet};
use super::timing::{renew_delay, Backoff};
use crate::config::json::clip;
use crate::config::Lease;
use crate::config::{LeaseAttrs, NetworkConfig};
use crate::control::diff;
use crate::{Error, Result};

/// The longest a change waits before it is published.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(25);
/// Individual lease changes logged per published view; more are summed up.
const LOG_EACH: usize = 16;
/// Backoff of watch and list retries.
const RETRY: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(10));
/// Backoff of renewal retries while etcd is away.
const RENEW_RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// What the daemon builds a table from.
#[derive(Debug, Clone)]
pub struct View {
    /// Every lease, ours included, sorted by key.
    pub leases: Arc<Vec<Lease>>,
}

/// Counts of changes since the last published view.
#[derive(Debug, Default)]
struct Pending {
    added: usize,
    removed: usize,
    changed: usize,
    since: Option<Instant>,
}

impl Pending {
    fn total(&self) -> usize {
        self.added + self.removed + self.changed
    }
}

/// The task that follows etcd (see the module docs).
#[derive(Debug)]
pub struct Follower {
    registry: Registry,
    config: NetworkConfig,
    leases: LeaseSet,
    revision: i64,
    held: Option<Held>,
    margin: Duration,
    renew_at: Option<Instant>,
    pending: Pending,
    out: watch::Sender<View>,
    stats: Arc<FollowStats>,
    /// A hash of the last config value reported as refused or as needing a
    /// restart: the same value seen again (a resync) is not reported again.
    config_reported: Option<u64>,
}

/// What the follower did, for the metrics: written by the follower task, read by
/// anyone holding the `Arc`.
#[derive(Debug, Default)]
pub struct FollowStats {
    /// Watches re-established after one was lost (etcd away, compaction, cancel).
    pub watch_reconnects: AtomicU64,
    /// Full listings of the prefix after a lost watch.
    pub resyncs: AtomicU64,
    /// When our lease expires, in seconds since the Unix epoch (0: none held).
    pub lease_expires_unix: AtomicU64,
}

impl FollowStats {
    /// Records `held`'s expiry.
    fn held(&self, held: &Held) {
        let left = held.expires.saturating_duration_since(Instant::now());
        let at = std::time::SystemTime::now() + left;
        let secs = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.lease_expires_unix.store(secs, Ordering::Relaxed);
    }
}

impl Follower {
    /// Lists the prefix once and returns the follower with a receiver holding the
    /// first view. `held` is our lease (`None` to only follow, as `ringlay watch`).
    pub async fn start(
        mut registry: Registry,
        config: NetworkConfig,
        held: Option<Held>,
        margin: Duration,
    ) -> Result<(Follower, watch::Receiver<View>)> {
        let listing = registry.list(&config).await?;
        for (key, error) in &listing.skipped {
            tracing::warn!(key = %clip(key), "skipping a malformed lease: {error}");
        }
        let view = View {
            leases: Arc::new(listing.leases.leases()),
        };
        let (out, rx) = watch::channel(view);
        let renew_at = held.map(|h| renew_instant(&h, margin));
        let stats = Arc::new(FollowStats::default());
        if let Some(h) = &held {
            stats.held(h);
        }
        let f = Follower {
            registry,
            config,
            leases: listing.leases,
            revision: listing.revision,
            held,
            margin,
            renew_at,
            pending: Pending::default(),
            out,
            stats,
            config_reported: None,
        };
        Ok((f, rx))
    }

    /// The follower's counters (shared; they keep counting after [`Follower::run`]
    /// takes the follower).
    pub fn stats(&self) -> Arc<FollowStats> {
        Arc::clone(&self.stats)
    }

    /// Our lease as the follower holds it now.
    pub fn held(&self) -> Option<&Held> {
        self.held.as_ref()
    }

    /// Follows until our lease is taken (the only error it returns).
    pub async fn run(mut self) -> Result<()> {
        let mut backoff = Backoff::new(RETRY.0, RETRY.1, Rng::from_entropy());
        let mut renew_backoff = Backoff::new(RENEW_RETRY.0, RENEW_RETRY.1, Rng::from_entropy());
        let mut listed = true;
        let mut outage: Option<Instant> = None;
        loop {
            if self.renew_at.is_some_and(|t| t <= Instant::now()) {
                self.renew(&mut renew_backoff).await?;
            }
            if !listed {
                if let Err(e) = self.resync().await {
                    if matches!(e, Error::LeaseTaken { .. }) {
                        return Err(e);
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        "etcd unreachable ({e}); forwarding continues on the last table; retrying in {delay:.1?}"
                    );
                    outage.get_or_insert_with(Instant::now);
                    sleep(delay).await;
                    continue;
                }
            }
            let (watcher, mut stream) = match self.registry.watch(self.revision + 1).await {
                Ok(w) => {
                    // etcd confirmed the watch (the client waits for its creation).
                    backoff.reset();
                    if let Some(t) = outage.take() {
                        tracing::info!(
                            revision = self.revision,
                            "watch resumed after {:.1?}: the table is in step with etcd again, watching from revision {}",
                            t.elapsed(),
                            self.revision + 1
                        );
                    }
                    w
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        "etcd unreachable ({e}); forwarding continues on the last table; retrying in {delay:.1?}"
                    );
                    outage.get_or_insert_with(Instant::now);
                    listed = false;
                    sleep(delay).await;
                    continue;
                }
            };
            let why = loop {
                let flush_at = self.pending.since.map(|t| t + FLUSH_INTERVAL);
                let renew_at = self.renew_at;
                tokio::select! {
                    biased;
                    () = sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                        self.publish();
                    }
                    () = sleep_until(renew_at.unwrap_or_else(Instant::now)), if renew_at.is_some() => {
                        self.renew(&mut renew_backoff).await?;
                    }
                    msg = stream.message() => match msg {
                        Ok(Some(resp)) => {
                            if resp.compact_revision() > 0 {
                                break format!(
                                    "revision {} was compacted (etcd keeps history from {})",
                                    self.revision + 1,
                                    resp.compact_revision()
                                );
                            }
                            if resp.canceled() {
                                break format!("etcd cancelled the watch: {}", resp.cancel_reason());
                            }
                            for ev in resp.events() {
                                self.apply(ev).await?;
                            }
                        }
                        Ok(None) => break "the watch stream ended".to_owned(),
                        Err(e) => break format!("the watch stream failed: {e}"),
                    }
                }
            };
            drop(stream);
            drop(watcher);
            if self.pending.total() > 0 {
                self.publish();
            }
            outage.get_or_insert_with(Instant::now);
            let delay = backoff.next_delay();
            tracing::warn!(
                "watch of {}/ lost: {why}; forwarding continues on the last table; listing again in {delay:.1?}",
                self.registry.prefix()
            );
            listed = false;
            self.stats.watch_reconnects.fetch_add(1, Ordering::Relaxed);
            sleep(delay).await;
        }
    }

    /// Applies one watch event.
    async fn apply(&mut self, ev: &etcd_client::Event) -> Result<()> {
        let Some(kv) = ev.kv() else { return Ok(()) };
        let put = ev.event_type() == etcd_client::EventType::Put;
        self.revision = self.revision.max(kv.mod_revision());
        let prefix = self.registry.prefix().to_owned();
        match classify(kv.key(), &prefix) {
            Key::Config => {
                self.config_event(put.then(|| kv.value()));
                return Ok(());
            }
            Key::Lease(k) if self.held.is_some_and(|h| h.key == k) => {
                self.own_event(put, kv.value(), kv.mod_revision()).await?;
            }
            _ => {}
        }
        let applied = if put {
            self.leases.apply_put(
                &self.config,
                &prefix,
                kv.key(),
                kv.value(),
                kv.mod_revision(),
            )
        } else {
            self.leases.apply_delete(&prefix, kv.key())
        };
        self.note(applied);
        Ok(())
    }

    /// Records a change for the next view and logs it.
    fn note(&mut self, applied: Applied) {
        let each = self.pending.total() < LOG_EACH;
        match applied {
            Applied::Added(k) => {
                self.pending.added += 1;
                if each {
                    tracing::info!(lease = %k, reason = "etcd watch", "lease added");
                }
            }
            Applied::Removed(k) => {
                self.pending.removed += 1;
                if each {
                    tracing::info!(lease = %k, reason = "etcd watch", "lease removed");
                }
            }
            Applied::Changed(k) => {
                self.pending.changed += 1;
                if each {
                    tracing::info!(lease = %k, reason = "etcd watch", "lease changed");
                }
            }
            Applied::Skipped { key, error } => {
                tracing::warn!(key = %clip(&key), "skipping a malformed lease, the rest of the table is unchanged: {error}");
                return;
            }
            Applied::Unchanged => return,
        }
        self.pending.since.get_or_insert_with(Instant::now);
    }

    /// Hands the current lease set to the daemon.
    fn publish(&mut self) {
        let p = std::mem::take(&mut self.pending);
        if p.total() > LOG_EACH {
            tracing::info!(
                added = p.added,
                removed = p.removed,
                changed = p.changed,
                leases = self.leases.len(),
                "leases changed"
            );
        }
        self.out.send_replace(View {
            leases: Arc::new(self.leases.leases()),
        });
    }

    /// Lists the prefix again, diffs it against what we had, and publishes.
    async fn resync(&mut self) -> Result<()> {
        let mut listing = self.registry.list(&self.config).await?;
        // Our key's value if it was refused: the set keeps no entry for it.
        let own_refused = self.held.and_then(|h| listing.refused.remove(&h.key));
        self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
        listing.leases.keep_last_good(
            &self.leases,
            self.registry.prefix(),
            self.held.map(|h| h.key),
        );
        // Keys refused before were reported then: only new refusals are news.
        for (key, error) in &listing.skipped {
            if !self.leases.is_refused(key) {
                tracing::warn!(key = %clip(key), "skipping a malformed lease: {error}");
            }
        }
        self.config_event(listing.config.as_deref());
        let before = self.leases.leases();
        let after = listing.leases.leases();
        let d = diff(&before, &after);
        for (what, keys) in [
            ("added", &d.added),
            ("removed", &d.removed),
            ("changed", &d.changed),
        ] {
            for k in keys.iter().take(LOG_EACH) {
                tracing::info!(lease = %k, reason = "etcd resync", "lease {what} while the watch was down");
            }
            if keys.len() > LOG_EACH {
                tracing::info!("and {} more leases {what}", keys.len() - LOG_EACH);
            }
        }
        self.leases = listing.leases;
        self.revision = listing.revision;
        if let Some(h) = self.held {
            let now = self.leases.get(&h.key).copied();
            match (now, own_refused) {
                (None, Some(r)) => match r.claimant {
                    Some(holder) if holder != h.attrs.address() => {
                        self.taken(holder.to_string()).await?;
                    }
                    _ => self.write_back(h, r.mod_revision, &r.reason).await?,
                },
                (None, None) => self.own_event(false, &[], listing.revision).await?,
                (Some(e), _) if e.mod_revision != h.mod_revision => {
                    let value = e.attrs.to_json();
                    self.own_event(true, value.as_bytes(), e.mod_revision)
                        .await?;
                }
                (Some(_), _) => {}
            }
        }
        self.pending.since.get_or_insert_with(Instant::now);
        self.publish();
        Ok(())
    }

    /// Our own key was written or deleted by someone (or by us).
    async fn own_event(&mut self, put: bool, value: &[u8], mod_revision: i64) -> Result<()> {
        let Some(mut held) = self.held else {
            return Ok(());
        };
        if put {
            if mod_revision == held.mod_revision {
                return Ok(()); // our own write
            }
            // Another node's claim even if ringlay's parser refuses it (a backend
            // ringlay does not run): never written over.
            let why = match (LeaseAttrs::claimant(value), LeaseAttrs::parse(value)) {
                (Some(holder), _) if holder != held.attrs.address() => {
                    return self.taken(holder.to_string()).await;
                }
                (_, Ok(_)) => {
                    held.mod_revision = mod_revision;
                    self.held = Some(held);
                    return Ok(());
                }
                (_, Err(e)) => e.to_string(),
            };
            return self.write_back(held, mod_revision, &why).await;
        }
        tracing::error!(
            lease = %held.key,
            "OUR LEASE WAS DELETED from etcd (by hand, or its etcd lease expired); re-creating it under the same key"
        );
        match self.registry.reclaim(&mut held).await {
            Ok(Renewal::Renewed) => {
                tracing::warn!(lease = %held.key, revision = held.mod_revision, "re-created our lease; forwarding was not interrupted");
                self.hold(held);
                Ok(())
            }
            Ok(Renewal::Taken { holder }) => self.taken(holder.to_string()).await,
            Ok(Renewal::Deleted) => Ok(()),
            Err(e) => {
                // etcd went away in between: the next list finds the key missing
                // and tries again.
                tracing::warn!(lease = %held.key, "re-creating our lease failed, will retry: {e}");
                Ok(())
            }
        }
    }

    /// `held` was just written (renewed, written back or re-created): keep it,
    /// schedule its next renewal and show it in the stats.
    fn hold(&mut self, held: Held) {
        self.held = Some(held);
        self.renew_at = Some(renew_instant(&held, self.margin));
        self.stats.held(&held);
    }

    /// Our key holds a value at `mod_revision` that is no node's lease (`why` it
    /// was refused): nobody claims the subnet (and no other node acquires a subnet
    /// whose key exists). Puts ours back over it.
    async fn write_back(&mut self, mut held: Held, mod_revision: i64, why: &str) -> Result<()> {
        tracing::error!(
            lease = %held.key,
            "our lease's value was replaced by one that is not a lease ({why}); writing ours back"
        );
        held.mod_revision = mod_revision;
        self.held = Some(held);
        match self.registry.renew(&mut held).await {
            Ok(Renewal::Renewed) => {
                tracing::warn!(lease = %held.key, revision = held.mod_revision, "wrote our lease back");
                self.hold(held);
                Ok(())
            }
            Ok(Renewal::Taken { holder }) => self.taken(holder.to_string()).await,
            // Its delete event re-creates it.
            Ok(Renewal::Deleted) => Ok(()),
            Err(e) => {
                // The renewal, compared on the value now there, retries.
                tracing::warn!(lease = %held.key, "writing our lease back failed, will retry: {e}");
                self.renew_at = Some(Instant::now() + RENEW_RETRY.0);
                Ok(())
            }
        }
    }

    /// Another node holds our subnet: stop claiming it and give up.
    async fn taken(&mut self, holder: String) -> Result<()> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        self.renew_at = None;
        self.registry.revoke(held.lease_id).await;
        tracing::error!(
            lease = %held.key, holder = %holder,
            "OUR LEASE WAS TAKEN by another node: no longer claiming {}", held.key
        );
        Err(Error::LeaseTaken {
            key: held.key.to_string(),
            holder,
        })
    }

    /// Renews our lease now; on an etcd error schedules a retry.
    async fn renew(&mut self, backoff: &mut Backoff) -> Result<()> {
        let Some(mut held) = self.held else {
            self.renew_at = None;
            return Ok(());
        };
        match self.registry.renew(&mut held).await {
            Ok(Renewal::Renewed) => {
                backoff.reset();
                self.hold(held);
                tracing::info!(lease = %held.key, revision = held.mod_revision, "renewed our lease for 24 h");
                Ok(())
            }
            Ok(Renewal::Deleted) => self.own_event(false, &[], 0).await,
            Ok(Renewal::Taken { holder }) => self.taken(holder.to_string()).await,
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(lease = %held.key, "renewing our lease failed ({e}); retrying in {delay:.1?}");
                self.renew_at = Some(Instant::now() + delay);
                Ok(())
            }
        }
    }

    /// `<prefix>/config` was written (`Some`) or deleted (`None`).
    fn config_event(&mut self, value: Option<&[u8]>) {
        let key = config_key(self.registry.prefix());
        let Some(value) = value else {
            self.config_reported = None;
            tracing::warn!("{key} was deleted; continuing with the config in force");
            return;
        };
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            value.hash(&mut h);
            h.finish()
        };
        if self.config_reported == Some(hash) {
            return;
        }
        let new = match NetworkConfig::parse_bytes(value) {
            Ok(c) => c,
            Err(e) => {
                self.config_reported = Some(hash);
                tracing::error!("{key} was changed to a config ringlay refuses; continuing with the config in force: {e}");
                return;
            }
        };
        if new == self.config {
            self.config_reported = None;
            return;
        }
        let (restart, range) = config_changes(&self.config, &new);
        if restart.is_empty() {
            tracing::info!(
                "{key} changed: {}; applied (the range only governs acquiring a lease)",
                range.join(", ")
            );
            self.config = new;
        } else {
            self.config_reported = Some(hash);
            tracing::warn!(
                "{key} changed: {}; that requires a restart of ringlay, which keeps running with the config it started with",
                restart.iter().chain(&range).cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
}

/// When to renew `held`: `margin` before it expires, or now.
fn renew_instant(held: &Held, margin: Duration) -> Instant {
    let now = Instant::now();
    now + renew_delay(held.expires.saturating_duration_since(now), margin)
}

/// What changed between two configs: the changes that need a restart (the network,
/// the subnet length, the backend), and those applied at once (SubnetMin/SubnetMax).
pub fn config_changes(old: &NetworkConfig, new: &NetworkConfig) -> (Vec<String>, Vec<String>) {
    let mut restart = Vec::new();
    let mut range = Vec::new();
    match (old.ipv4, new.ipv4) {
        (Some(a), Some(b)) => {
            if a.network != b.network {
                restart.push(format!("Network {} → {}", a.network, b.network));
            }
            if a.subnet_len != b.subnet_len {
                restart.push(format!("SubnetLen {} → {}", a.subnet_len, b.subnet_len));
            }
            if a.subnet_min != b.subnet_min {
                range.push(format!("SubnetMin {} → {}", a.subnet_min, b.subnet_min));
            }
            if a.subnet_max != b.subnet_max {
                range.push(format!("SubnetMax {} → {}", a.subnet_max, b.subnet_max));
            }
        }
        (a, b) if a.is_some() != b.is_some() => {
            restart.push(format!("EnableIPv4 {} → {}", a.is_some(), b.is_some()));
        }
        _ => {}
    }
    match (old.ipv6, new.ipv6) {
        (Some(a), Some(b)) => {
            if a.network != b.network {
                restart.push(format!("IPv6Network {} → {}", a.network, b.network));
            }
            if a.subnet_len != b.subnet_len {
                restart.push(format!("IPv6SubnetLen {} → {}", a.subnet_len, b.subnet_len));
            }
            if a.subnet_min != b.subnet_min || a.subnet_max != b.subnet_max {
                range.push(format!(
                    "IPv6SubnetMin/Max {}–{} → {}–{}",
                    a.subnet_min, a.subnet_max, b.subnet_min, b.subnet_max
                ));
            }
        }
        (a, b) if a.is_some() != b.is_some() => {
            restart.push(format!("EnableIPv6 {} → {}", a.is_some(), b.is_some()));
        }
        _ => {}
    }
    if old.backend != new.backend {
        restart.push(format!(
            "Backend {} → {}",
            crate::config::NetworkConfig::to_json(old),
            crate::config::NetworkConfig::to_json(new)
        ));
    }
    (restart, range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> NetworkConfig {
        NetworkConfig::parse(text).expect("valid")
    }

    #[test]
    fn config_changes_sort_restart_from_range() {
        let a = config(r#"{"Network":"100.96.0.0/16","Backend":{"Type":"vxlan"}}"#);
        let b = config(
            r#"{"Network":"100.96.0.0/16","SubnetMax":"100.96.100.0","Backend":{"Type":"vxlan"}}"#,
        );
        let (restart, range) = config_changes(&a, &b);
        assert!(restart.is_empty(), "{restart:?}");
        assert_eq!(range, ["SubnetMax 100.96.255.0 → 100.96.100.0"]);

        let c = config(r#"{"Network":"100.97.0.0/16","Backend":{"Type":"udp"}}"#);
        let (restart, _) = config_changes(&a, &c);
        assert_eq!(restart.len(), 2, "{restart:?}");
        assert!(restart[0].starts_with("Network 100.96.0.0/16 → 100.97.0.0/16"));
        assert!(restart[1].starts_with("Backend "));
    }
}
