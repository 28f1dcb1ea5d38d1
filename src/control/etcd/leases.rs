//! The leases under `<prefix>/subnets/` as this node knows them: filled by one list,
//! then kept current by the watch's put and delete events. Pure: keys and values in,
//! a lease set and what changed out.
//!
//! A malformed key or value (or a lease outside the network) is skipped: the rest of
//! the set is untouched, and the key is reported once — [`LeaseSet::apply_put`]
//! returns [`Applied::Skipped`] the first time a key is refused and
//! [`Applied::Unchanged`] while it stays refused, so the caller logs one warning per
//! key, not one per event.

use std::collections::{HashMap, HashSet};

use super::alloc::in_network;
use crate::config::json::clip;
use crate::config::Lease;
use crate::config::{LeaseAttrs, NetworkConfig, SubnetKey};
use crate::Error;

/// One lease as read from etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The lease's value.
    pub attrs: LeaseAttrs,
    /// The key's `mod_revision`: the revision of its last write.
    pub mod_revision: i64,
}

/// What an etcd key under the prefix is.
#[derive(Debug)]
pub enum Key {
    /// `<prefix>/config`.
    Config,
    /// `<prefix>/subnets/<key>` with a key that parses.
    Lease(SubnetKey),
    /// `<prefix>/subnets/<key>` with a malformed key.
    Malformed(Error),
    /// Anything else under the prefix (flannel writes nothing else; ignored).
    Other,
}

/// Classifies the etcd key `full` under `prefix`.
pub fn classify(full: &[u8], prefix: &str) -> Key {
    let Ok(text) = std::str::from_utf8(full) else {
        return if full.starts_with(format!("{}/subnets/", prefix.trim_end_matches('/')).as_bytes())
        {
            Key::Malformed(Error::invalid(
                "subnet key",
                clip(&String::from_utf8_lossy(full)),
                "UTF-8 text",
            ))
        } else {
            Key::Other
        };
    };
    if text == config_key(prefix) {
        return Key::Config;
    }
    match SubnetKey::from_etcd_key(text, prefix) {
        None => Key::Other,
        Some(Ok(k)) => Key::Lease(k),
        Some(Err(e)) => Key::Malformed(e),
    }
}

/// `<prefix>/config`.
pub fn config_key(prefix: &str) -> String {
    format!("{}/config", prefix.trim_end_matches('/'))
}

/// `<prefix>/subnets/`, the directory the leases live in.
pub fn subnets_prefix(prefix: &str) -> String {
    format!("{}/subnets/", prefix.trim_end_matches('/'))
}

/// The result of applying one event.
#[derive(Debug)]
pub enum Applied {
    /// A lease that was not in the set.
    Added(SubnetKey),
    /// A lease whose value changed.
    Changed(SubnetKey),
    /// A lease left the set.
    Removed(SubnetKey),
    /// Nothing changed (same value, a repeated refusal, a key not in the set).
    Unchanged,
    /// The key or value was refused for the first time: log it once. If the key held
    /// a good lease before, that lease stays (the last good value is kept).
    Skipped {
        /// The etcd key as text.
        key: String,
        /// Why.
        error: Error,
    },
}

/// Every lease this node knows, by key.
#[derive(Debug, Clone, Default)]
pub struct LeaseSet {
    map: HashMap<SubnetKey, Entry>,
    /// Keys refused and not yet warned about again.
    refused: HashSet<String>,
}

impl LeaseSet {
    /// An empty set.
    pub fn new() -> LeaseSet {
        LeaseSet::default()
    }

    /// The number of leases.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no lease is known.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The lease at `key`.
    pub fn get(&self, key: &SubnetKey) -> Option<&Entry> {
        self.map.get(key)
    }

    /// Every lease, sorted by key.
    pub fn leases(&self) -> Vec<Lease> {
        let mut v: Vec<Lease> = self
            .map
            .iter()
            .map(|(k, e)| Lease {
                key: *k,
                attrs: e.attrs,
            })
            .collect();
        v.sort_unstable_by_key(|l| l.key);
        v
    }

    /// Every entry, unordered.
    pub fn iter(&self) -> impl Iterator<Item = (&SubnetKey, &Entry)> {
        self.map.iter()
    }

    /// Applies a put of `value` at the etcd key `full` (at `mod_revision`).
    pub fn apply_put(
        &mut self,
        config: &NetworkConfig,
        prefix: &str,
        full: &[u8],
        value: &[u8],
        mod_revision: i64,
    ) -> Applied {
        let key = match classify(full, prefix) {
            Key::Lease(k) => k,
            Key::Malformed(error) => return self.refuse(full, error),
            Key::Config | Key::Other => return Applied::Unchanged,
        };
        if !in_network(config, &key) {
            let error = Error::invalid(
                "subnet key",
                key,
                "a subnet of the network config's Network, SubnetLen long",
            );
            return self.refuse(full, error);
        }
        let attrs = match LeaseAttrs::parse(value) {
            Ok(a) => a,
            Err(error) => return self.refuse(full, error),
        };
        self.refused.remove(&lossy(full));
        let entry = Entry {
            attrs,
            mod_revision,
        };
        match self.map.insert(key, entry) {
            None => Applied::Added(key),
            Some(old) if old.attrs != attrs => Applied::Changed(key),
            Some(_) => Applied::Unchanged,
        }
    }

    /// Whether the etcd key `key` (as text) was refused and not written since: a
    /// fresh listing uses it to warn only about keys not reported before.
    pub fn is_refused(&self, key: &str) -> bool {
        self.refused.contains(key)
    }

    /// After a fresh listing (this set) replaces `old`: a key whose value is now
    /// refused keeps the lease `old` held for it, as a refused write seen by the
    /// watch does, so a resync does not drop a peer for a bad write either. The
    /// key `except` (our own, which is written back instead) is not kept.
    pub fn keep_last_good(&mut self, old: &LeaseSet, prefix: &str, except: Option<SubnetKey>) {
        let dir = subnets_prefix(prefix);
        for (k, e) in &old.map {
            if Some(*k) != except
                && !self.map.contains_key(k)
                && self.refused.contains(&format!("{dir}{k}"))
            {
                self.map.insert(*k, *e);
            }
        }
    }

    /// Applies a delete of the etcd key `full`.
    pub fn apply_delete(&mut self, prefix: &str, full: &[u8]) -> Applied {
        self.refused.remove(&lossy(full));
        match classify(full, prefix) {
            Key::Lease(k) if self.map.remove(&k).is_some() => Applied::Removed(k),
            _ => Applied::Unchanged,
        }
    }

    fn refuse(&mut self, full: &[u8], error: Error) -> Applied {
        let key = lossy(full);
        if self.refused.insert(key.clone()) {
            Applied::Skipped { key, error }
        } else {
            Applied::Unchanged
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/coreos.com/network";
    const VX: &[u8] = br#"{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:01:00"}}"#;
    const UDP: &[u8] = br#"{"PublicIP":"192.0.2.2","PublicIPv6":null}"#;

    fn config() -> NetworkConfig {
        NetworkConfig::parse(r#"{"Network":"100.96.0.0/16","Backend":{"Type":"vxlan"}}"#)
            .expect("valid")
    }

    #[test]
    fn classifies_keys() {
        assert!(matches!(
            classify(b"/coreos.com/network/config", P),
            Key::Config
        ));
        assert!(matches!(
            classify(b"/coreos.com/network/subnets/100.96.1.0-24", P),
            Key::Lease(_)
        ));
        assert!(matches!(
            classify(b"/coreos.com/network/subnets/100.96.1.0", P),
            Key::Malformed(_)
        ));
        assert!(matches!(
            classify(b"/coreos.com/network/subnets/\xff", P),
            Key::Malformed(_)
        ));
        assert!(matches!(
            classify(b"/coreos.com/network/other", P),
            Key::Other
        ));
        assert!(matches!(classify(b"/elsewhere/config", P), Key::Other));
        // A long key that is not UTF-8: the error carries a clipped copy.
        let long = [
            &b"/coreos.com/network/subnets/\xff"[..],
            &[b'k'; 1 << 20][..],
        ]
        .concat();
        match classify(&long, P) {
            Key::Malformed(e) => {
                assert!(e.to_string().len() < 1000, "{} bytes", e.to_string().len())
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(config_key("/x/"), "/x/config");
        assert_eq!(subnets_prefix("/x"), "/x/subnets/");
    }

    #[test]
    fn puts_and_deletes() {
        let c = config();
        let mut s = LeaseSet::new();
        let k1 = b"/coreos.com/network/subnets/100.96.1.0-24";
        let k2 = b"/coreos.com/network/subnets/100.96.2.0-24";
        assert!(matches!(s.apply_put(&c, P, k1, VX, 5), Applied::Added(_)));
        assert!(matches!(s.apply_put(&c, P, k2, UDP, 6), Applied::Added(_)));
        assert!(matches!(s.apply_put(&c, P, k1, VX, 7), Applied::Unchanged));
        assert_eq!(
            s.get(&"100.96.1.0-24".parse().expect("key"))
                .map(|e| e.mod_revision),
            Some(7)
        );
        assert!(matches!(
            s.apply_put(&c, P, k1, UDP, 8),
            Applied::Changed(_)
        ));
        assert_eq!(s.len(), 2);
        assert!(matches!(s.apply_delete(P, k2), Applied::Removed(_)));
        assert!(matches!(s.apply_delete(P, k2), Applied::Unchanged));
        let l = s.leases();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].key.to_string(), "100.96.1.0-24");
    }

    #[test]
    fn a_malformed_value_is_skipped_once_and_the_rest_stays() {
        let c = config();
        let mut s = LeaseSet::new();
        let k1 = b"/coreos.com/network/subnets/100.96.1.0-24";
        let k3 = b"/coreos.com/network/subnets/100.96.3.0-24";
        s.apply_put(&c, P, k1, VX, 1);
        let first = s.apply_put(&c, P, k3, b"{not json", 2);
        match first {
            Applied::Skipped { key, error } => {
                assert_eq!(key, "/coreos.com/network/subnets/100.96.3.0-24");
                assert!(error.to_string().contains("malformed JSON"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.apply_put(&c, P, k3, b"{not json", 3),
            Applied::Unchanged
        ));
        // A bad write over a good lease keeps the good one.
        assert!(matches!(
            s.apply_put(&c, P, k1, br#"{"PublicIP":"x"}"#, 4),
            Applied::Skipped { .. }
        ));
        assert_eq!(s.len(), 1);
        // Fixed: accepted, and a later refusal is reported again.
        assert!(matches!(s.apply_put(&c, P, k3, UDP, 5), Applied::Added(_)));
        assert!(matches!(
            s.apply_put(&c, P, k3, b"[]", 6),
            Applied::Skipped { .. }
        ));
        // A malformed key and a lease outside the network are refused too.
        assert!(matches!(
            s.apply_put(&c, P, b"/coreos.com/network/subnets/bogus", UDP, 7),
            Applied::Skipped { .. }
        ));
        assert!(matches!(
            s.apply_put(&c, P, b"/coreos.com/network/subnets/10.0.0.0-24", UDP, 8),
            Applied::Skipped { .. }
        ));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn hostile_keys_and_values_are_refused_once_each() {
        let c = config();
        let mut s = LeaseSet::new();
        let good = b"/coreos.com/network/subnets/100.96.1.0-24";
        s.apply_put(&c, P, good, VX, 1);
        let huge = vec![b'x'; 1 << 20];
        let long_key = [&b"/coreos.com/network/subnets/"[..], &[b'k'; 4096][..]].concat();
        let cases: [(&[u8], &[u8]); 12] = [
            (b"/coreos.com/network/subnets/100.96.10.0-24", &huge),
            (b"/coreos.com/network/subnets/100.96.11.0-24", b"\xff\xfe{\x80}"),
            (b"/coreos.com/network/subnets/100.96.12.0-24", br#"{"PublicIP":7}"#),
            (
                b"/coreos.com/network/subnets/100.96.13.0-24",
                br#"{"PublicIP":"192.0.2.13","BackendType":"vxlan","BackendData":"x"}"#,
            ),
            (
                b"/coreos.com/network/subnets/100.96.14.0-24",
                br#"{"PublicIP":"192.0.2.14","BackendType":"vxlan","BackendData":{"VNI":"1","VtepMAC":"0e:00:00:00:0e:00"}}"#,
            ),
            (b"/coreos.com/network/subnets/100.96.15.0-24", br#"["PublicIP"]"#),
            (b"/coreos.com/network/subnets/100.96.16.0-24", b"null"),
            (b"/coreos.com/network/subnets/100.96.0.0-16", UDP),
            (b"/coreos.com/network/subnets/100.97.1.0-24", UDP),
            (b"/coreos.com/network/subnets/100.96.17.0-25", UDP),
            (b"/coreos.com/network/subnets/\xff\xfe", UDP),
            (&long_key, UDP),
        ];
        for (i, (key, value)) in cases.iter().enumerate() {
            let rev = 10 + i as i64;
            match s.apply_put(&c, P, key, value, rev) {
                Applied::Skipped { error, .. } => {
                    assert!(error.to_string().len() < 1000, "{error}");
                }
                other => panic!("case {i}: {other:?}"),
            }
            assert!(s.is_refused(&lossy(key)), "case {i}");
            // Written again: no second report.
            assert!(matches!(
                s.apply_put(&c, P, key, value, rev + 100),
                Applied::Unchanged
            ));
        }
        assert_eq!(s.len(), 1);
        assert!(s.get(&"100.96.1.0-24".parse().expect("key")).is_some());
    }

    #[test]
    fn a_value_naming_no_address_keeps_the_peers_last_good_value() {
        let c = config();
        let mut s = LeaseSet::new();
        let k1 = b"/coreos.com/network/subnets/100.96.1.0-24";
        s.apply_put(&c, P, k1, VX, 1);
        for (i, value) in [&b"{}"[..], br#"{"PublicIP":"0.0.0.0"}"#]
            .iter()
            .enumerate()
        {
            match s.apply_put(&c, P, k1, value, 2 + i as i64) {
                // Warned about once: the key stays refused until a good write.
                Applied::Skipped { error, .. } if i == 0 => {
                    assert!(error.to_string().starts_with("PublicIP: "), "{error}");
                }
                Applied::Unchanged if i == 1 => {}
                other => panic!("{other:?}"),
            }
            let kept = s.get(&"100.96.1.0-24".parse().expect("key")).expect("kept");
            assert_eq!(
                (kept.attrs.public_ip.to_string(), kept.mod_revision),
                ("192.0.2.1".into(), 1)
            );
        }
    }

    #[test]
    fn a_relisting_keeps_the_last_good_value_of_a_refused_key() {
        let c = config();
        let k1 = b"/coreos.com/network/subnets/100.96.1.0-24";
        let k2 = b"/coreos.com/network/subnets/100.96.2.0-24";
        let k3 = b"/coreos.com/network/subnets/100.96.3.0-24";
        let mut old = LeaseSet::new();
        old.apply_put(&c, P, k1, VX, 1);
        old.apply_put(&c, P, k2, UDP, 2);
        old.apply_put(&c, P, k3, UDP, 3);
        // The listing: garbage at k1 and k3 (ours), k2 deleted.
        let mut new = LeaseSet::new();
        new.apply_put(&c, P, k1, b"{garbage", 4);
        new.apply_put(&c, P, k3, b"{garbage", 5);
        let ours: SubnetKey = "100.96.3.0-24".parse().expect("key");
        new.keep_last_good(&old, P, Some(ours));
        let keys: Vec<String> = new.leases().iter().map(|l| l.key.to_string()).collect();
        assert_eq!(keys, ["100.96.1.0-24"]);
        assert_eq!(
            new.get(&"100.96.1.0-24".parse().expect("key"))
                .map(|e| e.mod_revision),
            Some(1)
        );
    }
}
