//! The etcd requests of the subnet manager, over the `etcd-client` crate (etcd's v3
//! API, served by etcd 3.4 and later).
//!
//! Every write is a transaction guarded by a compare, so ringlay never overwrites a
//! lease it does not hold:
//!
//! | request | compare | then | else |
//! |---------|---------|------|------|
//! | create a lease | `version(key) == 0` | put, attached to a new 24 h etcd lease | — (another node won: choose again) |
//! | take back our lease (same PublicIP) | `mod_revision(key) == seen` | put | — (list again) |
//! | take back subnet.env's subnet from a value that is no lease | `mod_revision(key) == seen` | put | — (list again) |
//! | renew | `mod_revision(key) == ours` | put, attached to a new 24 h etcd lease | get the key: who holds it now |
//!
//! Whether a value someone else wrote at a key is a claim on its subnet is decided
//! leniently ([`LeaseAttrs::claimant`]): any JSON object naming a usable address
//! other than ours is another node's lease, even one ringlay's parser refuses (a
//! backend it does not run). Only values that name no node (not JSON, not an
//! object, no usable address) are written over.
//!
//! Every request is counted ([`Registry::requests`]), so the cost of following a
//! cluster can be checked: one list and one watch stream, then nothing per event.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, PutOptions,
    TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream, Watcher,
};
use tokio::time::Instant;

use super::alloc::{choose_free, fits, lease_value, Rng, Taken};
use super::leases::{classify, config_key, subnets_prefix, Applied, Key, LeaseSet};
use super::timing::LEASE_TTL;
use super::Settings;
use crate::config::{Features, LeaseAttrs, NetworkConfig, SubnetKey};
use crate::control::{Publics, VtepMacs};
use crate::wire::MacAddr;
use crate::{Error, Result};

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting to an endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 keepalive: a silent connection (a partition, not a closed socket) is
/// noticed within interval + timeout. etcd refuses pings more often than every 5 s.
const KEEPALIVE: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(5));
/// The largest list or watch response accepted: some 300,000 leases.
const MAX_MESSAGE: usize = 64 << 20;
/// Create attempts before acquisition gives up on a race that keeps being lost.
const ACQUIRE_ATTEMPTS: u32 = 16;

/// A connection to etcd and the key prefix of the network.
#[derive(Clone)]
pub struct Registry {
    client: Client,
    prefix: String,
    endpoints: String,
    requests: Arc<AtomicU64>,
    /// What our lease values advertise beyond flannel's fields.
    features: Features,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("requests", &self.requests())
            .finish()
    }
}

/// A lease this host holds in etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The subnets.
    pub key: SubnetKey,
    /// The value written.
    pub attrs: LeaseAttrs,
    /// The key's `mod_revision` after our last write: renewal compares on it.
    pub mod_revision: i64,
    /// The etcd lease the key is attached to.
    pub lease_id: i64,
    /// When the etcd lease expires (its TTL from our last write).
    pub expires: Instant,
    /// How it was obtained.
    pub how: Acquired,
}

impl Held {
    /// The VTEP MAC the lease names: `BackendData.VtepMAC` (an IPv6-only
    /// lease's `BackendV6Data.VtepMAC`), else the derived one.
    pub fn vtep_mac(&self) -> MacAddr {
        VtepMacs::of(&self.attrs).v4
    }

    /// The IPv6 VTEP MAC the lease names: `BackendV6Data.VtepMAC`, else
    /// [`Held::vtep_mac`].
    pub fn vtep_mac_v6(&self) -> MacAddr {
        VtepMacs::of(&self.attrs).v6
    }
}

/// How a lease was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// A lease with our PublicIP was already in etcd (a restart): kept, with its VtepMAC.
    Reused,
    /// The subnet recorded in subnet.env, which nobody held.
    Previous,
    /// A random free subnet.
    New,
}

/// All leases under the prefix at one revision, and the config if present.
#[derive(Debug)]
pub struct Listing {
    /// The leases that parsed.
    pub leases: LeaseSet,
    /// The keys that were refused (logged once by the caller).
    pub skipped: Vec<(String, Error)>,
    /// The subnets held, including those of leases whose value was refused.
    pub taken: Taken,
    /// The lease keys whose value (or key) was refused, with what they hold.
    pub refused: HashMap<SubnetKey, Refused>,
    /// The store revision the list was read at: watch from the next one.
    pub revision: i64,
    /// The raw value of `<prefix>/config`, if present.
    pub config: Option<Vec<u8>>,
}

/// A lease key of a [`Listing`] whose value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The key's `mod_revision`: a write over it compares on it.
    pub mod_revision: i64,
    /// The address the value claims the subnet for ([`LeaseAttrs::claimant`]);
    /// `None`: no node's claim, a value that may be written over.
    pub claimant: Option<IpAddr>,
    /// Why it was refused.
    pub reason: String,
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The key was still ours and now expires a full TTL from now.
    Renewed,
    /// The key is gone (deleted, or its etcd lease expired).
    Deleted,
    /// Another node's lease is at the key now (perhaps one ringlay's parser
    /// refuses, see [`LeaseAttrs::claimant`]).
    Taken {
        /// Its PublicIP (or PublicIPv6).
        holder: IpAddr,
    },
}

impl Registry {
    /// Connects to the endpoints. With TLS files given, every endpoint must be
    /// `https://`. Connecting is lazy: an unreachable etcd shows at the first request.
    pub async fn connect(settings: &Settings) -> Result<Registry> {
        let endpoints = settings.endpoints.join(",");
        let mut options = ConnectOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(KEEPALIVE.0, KEEPALIVE.1);
        if let Some(tls) = tls_options(settings)? {
            options = options.with_tls(tls);
        }
        if let Some(user) = &settings.username {
            let password = settings.password.clone().unwrap_or_default();
            options = options.with_user(user.clone(), password);
        }
        let client = Client::connect(&settings.endpoints, Some(options))
            .await
            .map_err(|e| Error::etcd(format!("connecting to {endpoints}"), e))?;
        Ok(Registry {
            client,
            prefix: settings.prefix.trim_end_matches('/').to_owned(),
            endpoints,
            requests: Arc::new(AtomicU64::new(0)),
            features: Features::default(),
        })
    }

    /// Lease values this registry writes advertise `features` (none by default:
    /// then they are flanneld's byte for byte).
    pub fn advertise(&mut self, features: Features) {
        self.features = features;
    }

    /// The network's key prefix, without a trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The endpoints, comma-separated, for messages.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// How many requests (and watch streams) this registry has made.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The value of `<prefix>/config`, if present.
    pub async fn config(&mut self) -> Result<Option<Vec<u8>>> {
        self.count();
        let key = config_key(&self.prefix);
        let mut resp = self
            .client
            .get(key.as_str(), None)
            .await
            .map_err(|e| Error::etcd(format!("reading {key}"), e))?;
        Ok(resp
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| kv.into_key_value().1))
    }

    /// Every key under the prefix (the config and the leases) in one request.
    pub async fn list(&mut self, config: &NetworkConfig) -> Result<Listing> {
        self.count();
        let dir = format!("{}/", self.prefix);
        let mut resp = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .get(dir.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| Error::etcd(format!("listing {dir}"), e))?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let mut listing = Listing {
            leases: LeaseSet::new(),
            skipped: Vec::new(),
            taken: Taken::default(),
            refused: HashMap::new(),
            revision,
            config: None,
        };
        for kv in resp.take_kvs() {
            let lease = match classify(kv.key(), &self.prefix) {
                Key::Config => {
                    listing.config = Some(kv.value().to_vec());
                    continue;
                }
                Key::Lease(k) => {
                    listing.taken.insert(&k);
                    Some(k)
                }
                // Refused by the set too, so that it remembers the key.
                Key::Malformed(_) => None,
                Key::Other => continue,
            };
            if let Applied::Skipped { key, error } = listing.leases.apply_put(
                config,
                &self.prefix,
                kv.key(),
                kv.value(),
                kv.mod_revision(),
            ) {
                if let Some(k) = lease {
                    let refused = Refused {
                        mod_revision: kv.mod_revision(),
                        claimant: LeaseAttrs::claimant(kv.value()),
                        reason: error.to_string(),
                    };
                    listing.refused.insert(k, refused);
                }
                listing.skipped.push((key, error));
            }
        }
        Ok(listing)
    }

    /// Acquires a lease for this host at `public`, as flanneld does: the lease that
    /// already has our PublicIP (keeping its VtepMAC; on an IPv6-only host, our
    /// PublicIPv6: flanneld looks for PublicIP there too, but every IPv6-only
    /// lease has 0.0.0.0, so it would take another node's), else `previous` (the subnet in subnet.env)
    /// if nobody holds it, else a random free subnet. Each write is a compare-guarded
    /// transaction; a lost race lists again and chooses again.
    ///
    /// A `previous` whose key holds a value that is no node's claim (garbage, see
    /// [`LeaseAttrs::claimant`]) is taken back, compared on that value's
    /// `mod_revision`, so a node that writes a real lease there first wins.
    pub async fn acquire(
        &mut self,
        config: &NetworkConfig,
        public: impl Into<Publics>,
        previous: Option<SubnetKey>,
        rng: &mut Rng,
    ) -> Result<Held> {
        let public = public.into();
        let derived = public.derived_vtep_mac();
        for _ in 0..ACQUIRE_ATTEMPTS {
            let listing = self.list(config).await?;
            // The follower's first listing warns about these, once.
            for (key, error) in &listing.skipped {
                tracing::debug!(key = %key, "skipping a lease etcd holds: {error}");
            }
            let mine = listing
                .leases
                .iter()
                .filter(|(k, e)| public.own(&e.attrs) && fits(config, k))
                .min_by_key(|(k, _)| *k)
                .map(|(k, e)| (*k, *e));
            if let Some((key, entry)) = mine {
                let vtep = VtepMacs::of(&entry.attrs).v4;
                let attrs = lease_value(&config.backend, public, vtep, &key, self.features);
                let guard =
                    Compare::mod_revision(self.key(&key), CompareOp::Equal, entry.mod_revision);
                if let Some(held) = self.put_if(&key, attrs, guard, Acquired::Reused).await? {
                    return Ok(held);
                }
                continue;
            }
            let previous = previous.filter(|p| fits(config, p));
            let garbage = previous.and_then(|p| {
                listing
                    .refused
                    .get(&p)
                    .filter(|r| r.claimant.is_none_or(|a| a == public.address()))
                    .map(|r| (p, r))
            });
            if let Some((p, r)) = garbage {
                tracing::warn!(
                    lease = %p,
                    "the subnet recorded in subnet.env holds a value that is no node's lease ({}); taking it back",
                    r.reason
                );
                let attrs = lease_value(&config.backend, public, derived, &p, self.features);
                let guard = Compare::mod_revision(self.key(&p), CompareOp::Equal, r.mod_revision);
                if let Some(held) = self.put_if(&p, attrs, guard, Acquired::Previous).await? {
                    return Ok(held);
                }
                tracing::info!(lease = %p, "{p} was written meanwhile; listing again");
                continue;
            }
            let (key, how) = match previous.filter(|p| listing.taken.is_free(p)) {
                Some(p) => (p, Acquired::Previous),
                None => (choose_free(config, &listing.taken, rng)?, Acquired::New),
            };
            let attrs = lease_value(&config.backend, public, derived, &key, self.features);
            let guard = Compare::version(self.key(&key), CompareOp::Equal, 0);
            if let Some(held) = self.put_if(&key, attrs, guard, how).await? {
                return Ok(held);
            }
            tracing::info!(lease = %key, "another node created {key} first; choosing again");
        }
        Err(Error::etcd(
            format!("acquiring a lease under {}", subnets_prefix(&self.prefix)),
            etcd_client::Error::InvalidArgs(format!(
                "lost the race for a subnet {ACQUIRE_ATTEMPTS} times in a row"
            )),
        ))
    }

    /// Re-creates our lease at its key after it was deleted, if nobody took it.
    pub async fn reclaim(&mut self, held: &mut Held) -> Result<Renewal> {
        let guard = Compare::version(self.key(&held.key), CompareOp::Equal, 0);
        match self.put_if(&held.key, held.attrs, guard, held.how).await? {
            Some(h) => {
                *held = h;
                Ok(Renewal::Renewed)
            }
            None => match self.current(&held.key).await? {
                None => Ok(Renewal::Deleted),
                Some((Some(holder), _)) if holder != held.attrs.address() => {
                    Ok(Renewal::Taken { holder })
                }
                // Not a lease at all (garbage written by hand): nobody's claim, and
                // no other node takes a subnet whose key exists. Or a value with our
                // own address. Ours again.
                Some((_, rev)) => {
                    held.mod_revision = rev;
                    self.renew(held).await
                }
            },
        }
    }

    /// Renews our lease if the key is still the one we wrote (its `mod_revision` is
    /// ours): the same value, attached to a new 24 h etcd lease; the old etcd lease is
    /// then revoked. If another writer replaced it, nothing is written.
    ///
    /// A key rewritten with our own PublicIP is still ours (a write of ours whose
    /// reply was lost): the renewal continues from its new `mod_revision`. So is a
    /// key whose value is not a lease at all: only another node's lease is a claim
    /// (read leniently: [`LeaseAttrs::claimant`]).
    pub async fn renew(&mut self, held: &mut Held) -> Result<Renewal> {
        for _ in 0..3 {
            let guard =
                Compare::mod_revision(self.key(&held.key), CompareOp::Equal, held.mod_revision);
            let old = held.lease_id;
            if let Some(h) = self.put_if(&held.key, held.attrs, guard, held.how).await? {
                *held = h;
                self.revoke(old).await;
                return Ok(Renewal::Renewed);
            }
            match self.current(&held.key).await? {
                None => return Ok(Renewal::Deleted),
                Some((Some(holder), _)) if holder != held.attrs.address() => {
                    return Ok(Renewal::Taken { holder })
                }
                // Ours, or a value that is no lease (nobody's claim): overwrite it.
                Some((_, rev)) => held.mod_revision = rev,
            }
        }
        let key = self.key(&held.key);
        Err(Error::etcd(
            format!("renewing {key}"),
            etcd_client::Error::InvalidArgs("the key kept changing under the renewal".into()),
        ))
    }

    /// Who claims `key` and its `mod_revision`; `None` when the key is gone. The
    /// claimant is `None` for a value that is no node's claim
    /// ([`LeaseAttrs::claimant`]).
    async fn current(&mut self, key: &SubnetKey) -> Result<Option<(Option<IpAddr>, i64)>> {
        self.count();
        let full = self.key(key);
        let mut resp = self
            .client
            .get(full.as_str(), None)
            .await
            .map_err(|e| Error::etcd(format!("reading {full}"), e))?;
        Ok(resp
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| (LeaseAttrs::claimant(kv.value()), kv.mod_revision())))
    }

    /// Opens a watch on every key under the prefix from `revision` on.
    pub async fn watch(&mut self, revision: i64) -> Result<(Watcher, WatchStream)> {
        self.count();
        let dir = format!("{}/", self.prefix);
        self.client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .watch(
                dir.as_str(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision),
                ),
            )
            .await
            .map_err(|e| Error::etcd(format!("watching {dir} from revision {revision}"), e))
    }

    /// Revokes an etcd lease, best effort (a lease nobody revokes expires anyway).
    pub async fn revoke(&mut self, lease_id: i64) {
        self.count();
        if let Err(e) = self.client.lease_revoke(lease_id).await {
            tracing::debug!(lease_id, "revoking an etcd lease no key uses: {e}");
        }
    }

    fn key(&self, key: &SubnetKey) -> String {
        key.to_etcd_key(&self.prefix)
    }

    /// Grants a 24 h etcd lease and puts `attrs` at `key` attached to it if `guard`
    /// holds; `None` (and the etcd lease revoked) if it does not.
    async fn put_if(
        &mut self,
        key: &SubnetKey,
        attrs: LeaseAttrs,
        guard: Compare,
        how: Acquired,
    ) -> Result<Option<Held>> {
        let full = self.key(key);
        let ttl = i64::try_from(LEASE_TTL.as_secs()).expect("24 h fits in i64");
        self.count();
        let grant = self
            .client
            .lease_grant(ttl, None)
            .await
            .map_err(|e| Error::etcd("granting a 24 h etcd lease", e))?;
        let lease_id = grant.id();
        let granted_at = Instant::now();
        let txn = Txn::new().when([guard]).and_then([TxnOp::put(
            full.as_str(),
            attrs.to_json(),
            Some(PutOptions::new().with_lease(lease_id)),
        )]);
        self.count();
        let resp = match self.client.txn(txn).await {
            Ok(r) => r,
            Err(e) => {
                self.revoke(lease_id).await;
                return Err(Error::etcd(format!("writing {full}"), e));
            }
        };
        if !resp.succeeded() {
            self.revoke(lease_id).await;
            return Ok(None);
        }
        debug_assert!(matches!(
            resp.op_responses().first(),
            Some(TxnOpResponse::Put(_))
        ));
        let mod_revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let expires = granted_at + Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(0));
        Ok(Some(Held {
            key: *key,
            attrs,
            mod_revision,
            lease_id,
            expires,
            how,
        }))
    }
}

/// The TLS settings from `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`.
fn tls_options(settings: &Settings) -> Result<Option<TlsOptions>> {
    let any =
        settings.ca_file.is_some() || settings.cert_file.is_some() || settings.key_file.is_some();
    let https = settings.endpoints.iter().any(|e| e.starts_with("https://"));
    if !any {
        return Ok(None);
    }
    if !https {
        return Err(Error::invalid(
            "--etcd-endpoints",
            settings.endpoints.join(","),
            "https:// endpoints: --etcd-cafile, --etcd-certfile and --etcd-keyfile are for TLS",
        ));
    }
    let read = |path: &std::path::Path, action: &'static str| {
        std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            action,
            source,
        })
    };
    let mut tls = TlsOptions::new();
    if let Some(ca) = &settings.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca, "read the etcd CA file")?));
    }
    match (&settings.cert_file, &settings.key_file) {
        (Some(c), Some(k)) => {
            tls = tls.identity(Identity::from_pem(
                read(c, "read the etcd client certificate")?,
                read(k, "read the etcd client key")?,
            ));
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(Error::invalid(
                "--etcd-keyfile",
                "(absent)",
                "the client certificate's key file: --etcd-certfile needs it",
            ))
        }
        (None, Some(_)) => {
            return Err(Error::invalid(
                "--etcd-certfile",
                "(absent)",
                "the client certificate: --etcd-keyfile needs it",
            ))
        }
    }
    Ok(Some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(endpoint: &str) -> Settings {
        Settings {
            endpoints: vec![endpoint.to_owned()],
            ..Settings::default()
        }
    }

    #[test]
    fn no_tls_files_no_tls() {
        assert!(tls_options(&with("https://192.0.2.254:2379"))
            .expect("plain")
            .is_none());
    }

    #[test]
    fn tls_files_need_https_and_pairs() {
        let mut s = with("http://192.0.2.254:2379");
        s.ca_file = Some("/nonexistent/ca.pem".into());
        let err = tls_options(&s).expect_err("http").to_string();
        assert!(err.starts_with("--etcd-endpoints: "), "{err}");

        let mut s = with("https://192.0.2.254:2379");
        s.cert_file = Some("/nonexistent/client.pem".into());
        let err = tls_options(&s).expect_err("no key").to_string();
        assert!(err.starts_with("--etcd-keyfile: "), "{err}");
        s.cert_file = None;
        s.key_file = Some("/nonexistent/client.key".into());
        let err = tls_options(&s).expect_err("no cert").to_string();
        assert!(err.starts_with("--etcd-certfile: "), "{err}");

        let mut s = with("https://192.0.2.254:2379");
        s.ca_file = Some("/nonexistent/ca.pem".into());
        let err = tls_options(&s).expect_err("missing file").to_string();
        assert!(
            err.contains("/nonexistent/ca.pem") && err.contains("read the etcd CA file"),
            "{err}"
        );
    }
}
