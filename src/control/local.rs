//! This host's lease: the one whose `PublicIP` is ours, and the VTEP MAC we answer to.
//!
//! With static leases nobody acquires a lease: the file assigns every node its
//! subnet, and a node finds its own by its public address (`--public-ip`, or the
//! address of `--iface`, as flanneld's flags of the same names choose it).
//!
//! # The derived VTEP MAC
//!
//! flanneld gives its vxlan device a random MAC and publishes it in the lease's
//! `VtepMAC`. A static file may leave `BackendData` out; then the MAC is
//! [`derive_vtep_mac`] of the node's public IP, a layout every ringlay node computes
//! the same way, so this host and its peers agree on it without a lease write and
//! across restarts. The layout is
//!
//! ```text
//! 0e:72:a:b:c:d     for PublicIP a.b.c.d (each octet in hex)
//! ```
//!
//! `0x0e` has the locally administered bit set and the group bit clear (IEEE 802
//! §8.2.2), so the address is unicast and cannot collide with a vendor-assigned one;
//! `0x72` (`r`) marks it as ringlay's. The public address is kept whole, so two nodes
//! with different addresses always get different MACs, and an operator can read the
//! node off a captured frame. flanneld nodes must still be listed with their
//! `VtepMAC`: their device's MAC is random.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::config::Lease;
use crate::config::SubnetKey;
use crate::wire::MacAddr;
use crate::{Error, Result};

/// The first two bytes of a derived VTEP MAC: locally administered unicast, then `r`.
const DERIVED_PREFIX: [u8; 2] = [0x0e, 0x72];

/// How many leases an error message lists before it says "and N more".
const LIST_LEN: usize = 16;

/// This host's lease, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalLease {
    /// The subnets this host routes to its own containers.
    pub key: SubnetKey,
    /// This host's public (underlay) IPv4 address, the lease's `PublicIP`;
    /// `0.0.0.0` on a host without an IPv4 underlay (flannel's IPv6-only lease).
    pub public_ip: Ipv4Addr,
    /// This host's public IPv6 address, the lease's `PublicIPv6`, if it has one.
    pub public_ipv6: Option<Ipv6Addr>,
    /// The MAC of this host's VTEP: the lease's `VtepMAC`, or the derived one.
    pub vtep_mac: MacAddr,
    /// The MAC of this host's IPv6 VTEP: the lease's `BackendV6Data.VtepMAC`,
    /// else [`LocalLease::vtep_mac`].
    pub vtep_mac_v6: MacAddr,
    /// True when the lease had no `VtepMAC` and [`derive_vtep_mac`] chose it. The
    /// daemon should log it: a flanneld peer cannot know a derived MAC unless the
    /// file lists it.
    pub vtep_mac_derived: bool,
}

/// Finds the lease whose `PublicIP` is `public_ip`.
///
/// Errors when no lease has it (listing the addresses the leases have, and saying
/// which flag sets ours), when two leases have it, or when `public_ip` is 0.0.0.0
/// (flannel's "no IPv4 address", which IPv6-only leases share).
pub fn find_local(leases: &[Lease], public_ip: Ipv4Addr) -> Result<LocalLease> {
    const FLAG: &str = "public IP (--public-ip, or the address of --iface)";
    if public_ip.is_unspecified() {
        return Err(Error::invalid(
            FLAG,
            public_ip,
            "this host's IPv4 underlay address: 0.0.0.0 names no host",
        ));
    }
    let mut mine = leases.iter().filter(|l| l.attrs.public_ip == public_ip);
    let Some(lease) = mine.next() else {
        let listed: Vec<String> = leases
            .iter()
            .take(LIST_LEN)
            .map(|l| format!("{} ({})", l.attrs.public_ip, l.key))
            .collect();
        let have = match leases.len() {
            0 => "the static leases file has no leases".to_owned(),
            n if n <= LIST_LEN => format!("the leases' PublicIPs are {}", listed.join(", ")),
            n => format!(
                "the leases' PublicIPs are {} and {} more",
                listed.join(", "),
                n - LIST_LEN
            ),
        };
        return Err(Error::invalid(
            FLAG,
            public_ip,
            format!(
                "the PublicIP of one lease: {have}; add a lease for this host, or set --public-ip (or --iface) to the address its lease names"
            ),
        ));
    };
    if let Some(other) = mine.next() {
        return Err(Error::invalid(
            FLAG,
            public_ip,
            format!(
                "an address exactly one lease has, but {} and {} both have it",
                lease.key, other.key
            ),
        ));
    }
    let given = lease.attrs.backend_data.map(|d| d.vtep_mac);
    let vtep_mac = given.unwrap_or_else(|| derive_vtep_mac(public_ip));
    Ok(LocalLease {
        key: lease.key,
        public_ip,
        public_ipv6: lease.attrs.public_ipv6,
        vtep_mac,
        vtep_mac_v6: lease.attrs.backend_v6_data.map_or(vtep_mac, |d| d.vtep_mac),
        vtep_mac_derived: given.is_none(),
    })
}

/// The VTEP MAC of a node whose lease has no `VtepMAC`: `0e:72:` followed by the
/// four octets of its public IP (see the module docs). Locally administered,
/// unicast, and a pure function of the address.
pub fn derive_vtep_mac(public_ip: Ipv4Addr) -> MacAddr {
    let [a, b, c, d] = public_ip.octets();
    let [p, q] = DERIVED_PREFIX;
    MacAddr([p, q, a, b, c, d])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::static_leases::tests::{parse, VXLAN};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("valid address")
    }

    #[test]
    fn finds_our_lease_with_its_vtep_mac() {
        let s = parse(VXLAN);
        let local = find_local(&s.leases, ip("192.0.2.2")).expect("listed");
        assert_eq!(local.key.to_string(), "100.96.2.0-24");
        assert_eq!(local.public_ip, ip("192.0.2.2"));
        assert_eq!(local.vtep_mac.to_string(), "0e:00:00:00:02:00");
        assert!(!local.vtep_mac_derived);
    }

    #[test]
    fn a_lease_without_vtep_mac_gets_the_derived_one() {
        let s = parse(
            r#"{"config": {"Network": "100.96.0.0/16", "Backend": {"Type": "vxlan"}},
                "subnets": {"100.96.3.0-24": {"PublicIP": "192.0.2.3", "BackendType": "vxlan"}}}"#,
        );
        let local = find_local(&s.leases, ip("192.0.2.3")).expect("listed");
        assert!(local.vtep_mac_derived);
        assert_eq!(local.vtep_mac, derive_vtep_mac(ip("192.0.2.3")));
        assert_eq!(local.vtep_mac.to_string(), "0e:72:c0:00:02:03");
    }

    #[test]
    fn derived_macs_are_stable_local_unicast_and_distinct() {
        let addrs = [
            "192.0.2.1",
            "192.0.2.2",
            "10.0.0.1",
            "1.0.0.10",
            "255.255.255.255",
            "0.0.0.1",
        ];
        let macs: Vec<MacAddr> = addrs.iter().map(|a| derive_vtep_mac(ip(a))).collect();
        for (a, m) in addrs.iter().zip(&macs) {
            assert!(m.is_unicast() && m.is_local(), "{a} → {m}");
            assert_eq!(*m, derive_vtep_mac(ip(a)), "stable for {a}");
        }
        for i in 0..macs.len() {
            for j in i + 1..macs.len() {
                assert_ne!(macs[i], macs[j], "{} vs {}", addrs[i], addrs[j]);
            }
        }
        // The layout is part of the format: peers compute it too.
        assert_eq!(
            derive_vtep_mac(ip("10.0.0.1")).to_string(),
            "0e:72:0a:00:00:01"
        );
    }

    #[test]
    fn no_lease_lists_the_addresses_and_the_flags() {
        let s = parse(VXLAN);
        let err = find_local(&s.leases, ip("192.0.2.9")).expect_err("not listed");
        let msg = err.to_string();
        assert!(matches!(&err, Error::Invalid { value, .. } if value == "192.0.2.9"));
        assert!(
            msg.contains("192.0.2.1 (100.96.1.0-24), 192.0.2.2 (100.96.2.0-24)"),
            "{msg}"
        );
        assert!(
            msg.contains("--public-ip") && msg.contains("--iface"),
            "{msg}"
        );

        let err = find_local(&[], ip("192.0.2.9")).expect_err("no leases");
        assert!(err.to_string().contains("has no leases"), "{err}");

        let many: Vec<Lease> = (1..=20u8)
            .map(|i| {
                let mut l = s.leases[0];
                l.attrs.public_ip = Ipv4Addr::new(192, 0, 2, i);
                l
            })
            .collect();
        let err = find_local(&many, ip("192.0.2.99")).expect_err("not listed");
        assert!(err.to_string().contains("and 4 more"), "{err}");
    }

    #[test]
    fn unspecified_or_shared_addresses_are_refused() {
        let s = parse(VXLAN);
        let err = find_local(&s.leases, Ipv4Addr::UNSPECIFIED).expect_err("0.0.0.0");
        assert!(err.to_string().contains("names no host"), "{err}");
        // find_local takes any slice, not only a validated file's.
        let twice = [s.leases[0], s.leases[0]];
        let err = find_local(&twice, ip("192.0.2.1")).expect_err("ambiguous");
        assert!(err.to_string().contains("both have it"), "{err}");
    }
}
