//! From leases to the data path's table, and from two lease sets to what changed.
//!
//! [`build_snapshot`] is the only way the control plane shapes the table: every
//! lease but this host's becomes a [`Peer`], and the snapshot gets the network's
//! geometry so inner IPv4 lookups are one array load. [`diff`] says which leases a
//! reload added, removed or changed, so the daemon logs each change once instead of
//! the whole table.

use std::collections::HashMap;

use super::local::VtepMacs;
use crate::config::Lease;
use crate::config::{BackendType, NetworkConfig, SubnetKey};
use crate::table::{Peer, Snapshot, SnapshotBuilder};

/// Builds the table of every lease except `local` (this host's own, which the
/// kernel routes to the local bridge, not the tunnel).
///
/// A vxlan lease's VTEP MACs are the ones [`VtepMacs::of`] reads from it: its
/// `BackendData.VtepMAC` and `BackendV6Data.VtepMAC`, else the MAC a ringlay node
/// without a listed `VtepMAC` derives for itself from its address. Other
/// backends have no VTEP (`vtep_mac` is `None`).
pub fn build_snapshot(config: &NetworkConfig, leases: &[Lease], local: &SubnetKey) -> Snapshot {
    let geometry = config.ipv4.map(|c| (c.network, c.subnet_len));
    let mut builder = SnapshotBuilder::with_capacity(geometry, leases.len());
    for lease in leases.iter().filter(|l| l.key != *local) {
        builder.insert(peer(lease));
    }
    builder.build()
}

/// The table entry of one lease.
fn peer(lease: &Lease) -> Peer {
    let a = &lease.attrs;
    let backend = a.backend();
    // A peer's lease names its MACs by the rule our own lease follows, so a
    // ringlay node that lists none is reached at the MAC it derives.
    let macs = (backend == BackendType::Vxlan).then(|| VtepMacs::of(a));
    Peer {
        key: lease.key,
        public_ip: a.public_ip,
        public_ipv6: a.public_ipv6,
        vtep_mac: macs.map(|m| m.v4),
        vtep_mac_v6: macs.map(|m| m.v6),
        backend,
        partial_csum: a.features.partial_csum,
    }
}

/// Which leases differ between two lease sets, by key, each list sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseDiff {
    /// Keys in the new set only.
    pub added: Vec<SubnetKey>,
    /// Keys in the old set only.
    pub removed: Vec<SubnetKey>,
    /// Keys in both whose attributes (public IP, backend, VTEP) differ.
    pub changed: Vec<SubnetKey>,
}

impl LeaseDiff {
    /// True when the two sets were the same: nothing to log, nothing to publish.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares two lease sets by key. A key listed twice in one set (which a
/// validated file never has) counts with its last attributes.
pub fn diff(old: &[Lease], new: &[Lease]) -> LeaseDiff {
    let old_by_key: HashMap<SubnetKey, _> = old.iter().map(|l| (l.key, &l.attrs)).collect();
    let new_by_key: HashMap<SubnetKey, _> = new.iter().map(|l| (l.key, &l.attrs)).collect();
    let mut d = LeaseDiff::default();
    for (key, attrs) in &new_by_key {
        match old_by_key.get(key) {
            None => d.added.push(*key),
            Some(before) if before != attrs => d.changed.push(*key),
            Some(_) => {}
        }
    }
    d.removed = old_by_key
        .keys()
        .filter(|k| !new_by_key.contains_key(k))
        .copied()
        .collect();
    for list in [&mut d.added, &mut d.removed, &mut d.changed] {
        list.sort_unstable();
    }
    d
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::control::derive_vtep_mac;
    use crate::control::static_leases::tests::{parse, VXLAN};

    fn key(s: &str) -> SubnetKey {
        s.parse().expect("valid key")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("valid address")
    }

    const THREE: &str = r#"{"config": {"Network": "100.96.0.0/16", "Backend": {"Type": "vxlan"}},
 "subnets": {
   "100.96.1.0-24": {"PublicIP": "192.0.2.1", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:01:00"}},
   "100.96.2.0-24": {"PublicIP": "192.0.2.2", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:02:00"}},
   "100.96.3.0-24": {"PublicIP": "192.0.2.3", "BackendType": "vxlan"}}}"#;

    #[test]
    fn the_snapshot_holds_every_lease_but_ours() {
        let s = parse(THREE);
        let snap = build_snapshot(&s.config, &s.leases, &key("100.96.1.0-24"));
        assert_eq!(snap.len(), 2);
        assert_eq!(
            snap.geometry(),
            Some(("100.96.0.0/16".parse().expect("valid"), 24))
        );
        assert!(snap.is_indexed());

        // Our own subnet is not tunnelled; our address is not a peer.
        assert!(snap.lookup_v4(ip("100.96.1.7")).is_none());
        assert!(snap.by_public_ip(IpAddr::V4(ip("192.0.2.1"))).is_none());

        let p = snap.lookup_v4(ip("100.96.2.200")).expect("peer 2");
        assert_eq!(p.key, key("100.96.2.0-24"));
        assert_eq!(p.public_ip, ip("192.0.2.2"));
        assert_eq!(p.backend, BackendType::Vxlan);
        assert_eq!(
            p.vtep_mac.map(|m| m.to_string()).as_deref(),
            Some("0e:00:00:00:02:00")
        );
        let by_ip = snap
            .by_public_ip(IpAddr::V4(ip("192.0.2.2")))
            .expect("peer 2");
        assert_eq!(by_ip.key, p.key);

        // A vxlan peer without VtepMAC is reached at the MAC it derives for itself.
        let p = snap.lookup_v4(ip("100.96.3.1")).expect("peer 3");
        assert_eq!(p.vtep_mac, Some(derive_vtep_mac(ip("192.0.2.3"))));

        // Outside every lease, and outside the network.
        assert!(snap.lookup_v4(ip("100.96.4.1")).is_none());
        assert!(snap.lookup_v4(ip("10.0.0.1")).is_none());
    }

    #[test]
    fn udp_peers_have_no_vtep() {
        let s = parse(
            r#"{"config": {"Network": "10.5.0.0/16", "Backend": {"Type": "udp"}},
                "subnets": {"10.5.7.0-24": {"PublicIP": "198.51.100.7"}, "10.5.9.0-24": {"PublicIP": "198.51.100.9"}}}"#,
        );
        let snap = build_snapshot(&s.config, &s.leases, &key("10.5.9.0-24"));
        assert_eq!(snap.len(), 1);
        let p = snap.lookup_v4(ip("10.5.7.1")).expect("peer");
        assert_eq!((p.backend, p.vtep_mac), (BackendType::Udp, None));
    }

    #[test]
    fn dual_stack_peers_are_found_by_both_families() {
        let s = parse(
            r#"{"config": {"EnableIPv6": true, "Network": "100.96.0.0/16", "IPv6Network": "fd00:100:96::/48", "Backend": {"Type": "vxlan"}},
                "subnets": {
                  "100.96.1.0-24&fd00:100:96:1::-64": {"PublicIP": "192.0.2.1", "PublicIPv6": "2001:db8::1", "BackendType": "vxlan"},
                  "100.96.2.0-24&fd00:100:96:2::-64": {"PublicIP": "192.0.2.2", "PublicIPv6": "2001:db8::2", "BackendType": "vxlan"}}}"#,
        );
        let ours = key("100.96.1.0-24&fd00:100:96:1::-64");
        let snap = build_snapshot(&s.config, &s.leases, &ours);
        assert_eq!(snap.len(), 1);
        let v6 = snap
            .lookup_v6("fd00:100:96:2::5".parse().expect("valid"))
            .expect("peer by IPv6");
        assert_eq!(v6.public_ipv6, Some("2001:db8::2".parse().expect("valid")));
        assert!(snap
            .lookup_v6("fd00:100:96:1::5".parse().expect("valid"))
            .is_none());
    }

    #[test]
    fn a_key_not_in_the_leases_excludes_nothing() {
        let s = parse(VXLAN);
        let snap = build_snapshot(&s.config, &s.leases, &key("100.96.9.0-24"));
        assert_eq!(snap.len(), 2);
    }

    #[test]
    fn diff_reports_each_change_once() {
        let old = parse(THREE).leases;
        let text = THREE
            .replace(
                r#""100.96.1.0-24": {"PublicIP": "192.0.2.1""#,
                r#""100.96.1.0-24": {"PublicIP": "192.0.2.11""#,
            )
            .replace(r#""100.96.3.0-24""#, r#""100.96.4.0-24""#);
        let new = parse(&text).leases;
        let d = diff(&old, &new);
        assert_eq!(d.added, [key("100.96.4.0-24")]);
        assert_eq!(d.removed, [key("100.96.3.0-24")]);
        assert_eq!(d.changed, [key("100.96.1.0-24")]);
        assert!(!d.is_empty());

        assert!(diff(&old, &old).is_empty());
        let all_new = diff(&[], &old);
        assert_eq!(
            all_new.added,
            [
                key("100.96.1.0-24"),
                key("100.96.2.0-24"),
                key("100.96.3.0-24")
            ]
        );
        assert_eq!(diff(&old, &[]).removed.len(), 3);
    }

    #[test]
    fn a_changed_vtep_mac_is_a_change() {
        let old = parse(VXLAN).leases;
        let new = parse(&VXLAN.replace("0e:00:00:00:02:00", "0e:00:00:00:02:01")).leases;
        assert_eq!(diff(&old, &new).changed, [key("100.96.2.0-24")]);
    }
}
