//! This host's lease: the one whose `PublicIP` is ours (on an IPv6-only host,
//! whose `PublicIPv6` is), and the VTEP MAC we answer to.
//!
//! With static leases nobody acquires a lease: the file assigns every node its
//! subnet, and a node finds its own by its public address (`--public-ip`, or the
//! address of `--iface`, as flanneld's flags of the same names choose it; on an
//! IPv6-only host `--public-ipv6` or the interface's IPv6 address).
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
//!
//! A node without an IPv4 address (`PublicIP` `0.0.0.0`, an IPv6-only network)
//! gets [`derive_vtep_mac_v6`] of its `PublicIPv6` instead:
//!
//! ```text
//! 0e:76:w:x:y:z     where w.x.y.z = the XOR of the address's four 32-bit words
//! ```
//!
//! `0x76` (`v`) tells it apart from the IPv4 layout. 128 bits do not fit in 32, so
//! this layout cannot be collision-free; the XOR fold keeps it so for the usual
//! case, nodes whose addresses share their first 96 bits (one underlay subnet of
//! /96 or longer), and an operator can still check it by hand. Nodes numbered
//! otherwise should list their `VtepMAC` in the file.
//!
//! # The IPv6 VTEP
//!
//! ringlay has one TUN device for both families, so a dual-stack node writes the
//! same MAC into `BackendData` and `BackendV6Data` (flanneld has two vxlan devices
//! and writes two random MACs; its peers key each by family, so one MAC for both
//! is as good to them). [`LocalLease::vtep_mac_v6`] is the lease's
//! `BackendV6Data.VtepMAC`, else [`LocalLease::vtep_mac`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::SubnetKey;
use crate::config::{Lease, LeaseAttrs};
use crate::wire::MacAddr;
use crate::{Error, Result};

/// The first two bytes of a derived VTEP MAC: locally administered unicast, then `r`.
const DERIVED_PREFIX: [u8; 2] = [0x0e, 0x72];
/// The second byte of a derived IPv6-only VTEP MAC (`v`), after the same `0x0e`.
const DERIVED_V6_TAG: u8 = 0x76;

/// How many leases an error message lists before it says "and N more".
const LIST_LEN: usize = 16;

/// This host's public addresses, once the network config says which families
/// it uses: what its lease advertises and how it finds that lease again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Publics {
    /// The lease's `PublicIP`; `0.0.0.0` (flannel's "none") in an IPv6-only network.
    pub v4: Ipv4Addr,
    /// The lease's `PublicIPv6`; `None` in an IPv4-only network.
    pub v6: Option<Ipv6Addr>,
}

impl Publics {
    /// The addresses a lease value names.
    pub fn of(attrs: &LeaseAttrs) -> Publics {
        Publics {
            v4: attrs.public_ip,
            v6: attrs.public_ipv6,
        }
    }

    /// The IPv6 address of an IPv6-only host (`v4` 0.0.0.0): the one address
    /// that names it. `None` for a host with an IPv4 address.
    fn v6_only(&self) -> Option<Ipv6Addr> {
        self.v6.filter(|_| self.v4.is_unspecified())
    }

    /// The MAC a lease of this host without a `VtepMAC` gets: the IPv4 layout,
    /// or on an IPv6-only host the IPv6 one (see the module docs).
    pub fn derived_vtep_mac(&self) -> MacAddr {
        self.v6_only()
            .map_or_else(|| derive_vtep_mac(self.v4), derive_vtep_mac_v6)
    }

    /// The address a lease of ours is claimed by ([`LeaseAttrs::address`]):
    /// the IPv4 one, or on an IPv6-only host the IPv6 one.
    pub fn address(&self) -> IpAddr {
        self.v6_only().map_or(IpAddr::V4(self.v4), IpAddr::V6)
    }

    /// Whether `lease` is this host's: the same `PublicIP`, or on an IPv6-only
    /// host the same `PublicIPv6` (all IPv6-only leases share `PublicIP`
    /// 0.0.0.0, so that names no one).
    pub fn own(&self, lease: &LeaseAttrs) -> bool {
        match self.v6_only() {
            Some(v6) => lease.public_ipv6 == Some(v6),
            None => lease.public_ip == self.v4,
        }
    }
}

/// The VTEP MACs a lease names, one rule for our own lease and every peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VtepMacs {
    /// The IPv4 VTEP's: `BackendData.VtepMAC` (an IPv6-only lease's
    /// `BackendV6Data.VtepMAC`), else the one its address derives
    /// ([`Publics::derived_vtep_mac`]).
    pub v4: MacAddr,
    /// The IPv6 VTEP's: `BackendV6Data.VtepMAC`, else [`VtepMacs::v4`] (one VTEP
    /// for both families, as a ringlay node has).
    pub v6: MacAddr,
    /// The lease lists neither and `v4` was derived.
    pub derived: bool,
}

impl VtepMacs {
    /// The MACs of the lease value `attrs`.
    pub fn of(attrs: &LeaseAttrs) -> VtepMacs {
        let given = attrs
            .backend_data
            .or(attrs.backend_v6_data)
            .map(|d| d.vtep_mac);
        let v4 = given.unwrap_or_else(|| Publics::of(attrs).derived_vtep_mac());
        VtepMacs {
            v4,
            v6: attrs.backend_v6_data.map_or(v4, |d| d.vtep_mac),
            derived: given.is_none(),
        }
    }
}

/// An IPv4-only host's addresses.
impl From<Ipv4Addr> for Publics {
    fn from(v4: Ipv4Addr) -> Publics {
        Publics { v4, v6: None }
    }
}

impl std::fmt::Display for Publics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.v6 {
            None => write!(f, "{}", self.v4),
            Some(v6) if self.v4.is_unspecified() => write!(f, "{v6}"),
            Some(v6) => write!(f, "{} and {v6}", self.v4),
        }
    }
}

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

/// Finds this host's lease: the one whose `PublicIP` is `public.v4`, or on an
/// IPv6-only host (`public.v4` 0.0.0.0) whose `PublicIPv6` is `public.v6`.
///
/// Errors when no lease has it (listing the addresses the leases have, and saying
/// which flag sets ours), when two leases have it, or when we have no address at
/// all (0.0.0.0 and no IPv6 address: flannel's "no IPv4 address" names no host).
pub fn find_local(leases: &[Lease], public: impl Into<Publics>) -> Result<LocalLease> {
    let public = public.into();
    let by_v6 = public.v6_only();
    let (flag, ours, field) = match by_v6 {
        Some(v6) => (
            "public IPv6 (--public-ipv6, or the IPv6 address of --iface)",
            v6.to_string(),
            "PublicIPv6",
        ),
        None => (
            "public IP (--public-ip, or the address of --iface)",
            public.v4.to_string(),
            "PublicIP",
        ),
    };
    if by_v6.is_none() && public.v4.is_unspecified() {
        return Err(Error::invalid(
            flag,
            public.v4,
            "this host's IPv4 underlay address: 0.0.0.0 names no host",
        ));
    }
    let mut mine = leases.iter().filter(|l| public.own(&l.attrs));
    let Some(lease) = mine.next() else {
        return Err(not_listed(leases, flag, &ours, field, by_v6.is_some()));
    };
    if let Some(other) = mine.next() {
        return Err(Error::invalid(
            flag,
            ours,
            format!(
                "an address exactly one lease has, but {} and {} both have it",
                lease.key, other.key
            ),
        ));
    }
    // Our lease names our own addresses, so it derives the MAC ours would.
    let macs = VtepMacs::of(&lease.attrs);
    Ok(LocalLease {
        key: lease.key,
        public_ip: public.v4,
        public_ipv6: lease.attrs.public_ipv6,
        vtep_mac: macs.v4,
        vtep_mac_v6: macs.v6,
        vtep_mac_derived: macs.derived,
    })
}

/// The error for an address no lease has: which addresses the leases have.
fn not_listed(leases: &[Lease], flag: &str, ours: &str, field: &str, v6: bool) -> Error {
    let address = |l: &Lease| match (v6, l.attrs.public_ipv6) {
        (true, Some(a)) => a.to_string(),
        (true, None) => "none".to_owned(),
        (false, _) => l.attrs.public_ip.to_string(),
    };
    let listed: Vec<String> = leases
        .iter()
        .take(LIST_LEN)
        .map(|l| format!("{} ({})", address(l), l.key))
        .collect();
    let have = match leases.len() {
        0 => "the static leases file has no leases".to_owned(),
        n if n <= LIST_LEN => format!("the leases' {field}s are {}", listed.join(", ")),
        n => format!(
            "the leases' {field}s are {} and {} more",
            listed.join(", "),
            n - LIST_LEN
        ),
    };
    let set = if v6 { "--public-ipv6" } else { "--public-ip" };
    Error::invalid(
        flag,
        ours,
        format!(
            "the {field} of one lease: {have}; add a lease for this host, or set {set} (or --iface) to the address its lease names"
        ),
    )
}

/// The VTEP MAC of a node whose lease has no `VtepMAC`: `0e:72:` followed by the
/// four octets of its public IP (see the module docs). Locally administered,
/// unicast, and a pure function of the address.
pub fn derive_vtep_mac(public_ip: Ipv4Addr) -> MacAddr {
    let [a, b, c, d] = public_ip.octets();
    let [p, q] = DERIVED_PREFIX;
    MacAddr([p, q, a, b, c, d])
}

/// The VTEP MAC of an IPv6-only node whose lease has no `VtepMAC`: `0e:76:`
/// followed by the XOR of its `PublicIPv6`'s four 32-bit words (see the module
/// docs). Locally administered, unicast, and a pure function of the address.
pub fn derive_vtep_mac_v6(public_ipv6: Ipv6Addr) -> MacAddr {
    let bits = u128::from(public_ipv6);
    // Truncating to u32 keeps each word's 32 bits.
    let fold = (0..4).fold(0u32, |acc, i| acc ^ (bits >> (32 * i)) as u32);
    let [a, b, c, d] = fold.to_be_bytes();
    MacAddr([0x0e, DERIVED_V6_TAG, a, b, c, d])
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

    /// An IPv6-only network: every PublicIP is 0.0.0.0.
    const V6_ONLY: &str = r#"{"config": {"EnableIPv4": false, "EnableIPv6": true,
            "IPv6Network": "fd00:100:96::/48", "Backend": {"Type": "vxlan"}},
        "subnets": {
            "0.0.0.0-0&fd00:100:96:1::-64": {"PublicIP": "0.0.0.0", "PublicIPv6": "2001:db8::1",
                "BackendType": "vxlan", "BackendV6Data": {"VNI": 1, "VtepMAC": "0e:00:00:00:01:06"}},
            "0.0.0.0-0&fd00:100:96:2::-64": {"PublicIP": "0.0.0.0", "PublicIPv6": "2001:db8::2",
                "BackendType": "vxlan"}}}"#;

    fn v6_only(v6: &str) -> Publics {
        Publics {
            v4: Ipv4Addr::UNSPECIFIED,
            v6: Some(v6.parse().expect("valid")),
        }
    }

    #[test]
    fn an_ipv6_only_host_finds_its_lease_by_its_ipv6_address() {
        let s = parse(V6_ONLY);
        let local = find_local(&s.leases, v6_only("2001:db8::1")).expect("listed");
        assert_eq!(local.key.to_string(), "0.0.0.0-0&fd00:100:96:1::-64");
        assert_eq!(local.public_ip, Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            local.public_ipv6,
            Some("2001:db8::1".parse().expect("valid"))
        );
        assert_eq!(local.vtep_mac.to_string(), "0e:00:00:00:01:06");
        assert_eq!(local.vtep_mac_v6, local.vtep_mac);
        // Without a VtepMAC: the IPv6 layout, not the IPv4 one of 0.0.0.0.
        let local = find_local(&s.leases, v6_only("2001:db8::2")).expect("listed");
        assert!(local.vtep_mac_derived);
        assert_eq!(local.vtep_mac.to_string(), "0e:76:20:01:0d:ba");
        assert_eq!(local.vtep_mac_v6, local.vtep_mac);

        let err = find_local(&s.leases, v6_only("2001:db8::9")).expect_err("not listed");
        let msg = err.to_string();
        assert!(msg.starts_with("public IPv6 (--public-ipv6"), "{msg}");
        assert!(
            msg.contains("the leases' PublicIPv6s are 2001:db8::1 (0.0.0.0-0&fd00:100:96:1::-64), 2001:db8::2"),
            "{msg}"
        );
        assert!(msg.contains("set --public-ipv6"), "{msg}");
    }

    #[test]
    fn a_dual_stack_host_finds_its_lease_by_its_ipv4_address() {
        let s = parse(
            r#"{"config": {"Network": "100.96.0.0/16", "EnableIPv6": true,
                "IPv6Network": "fd00:100:96::/48", "Backend": {"Type": "vxlan"}},
                "subnets": {"100.96.1.0-24&fd00:100:96:1::-64": {"PublicIP": "192.0.2.1",
                    "PublicIPv6": "2001:db8::1", "BackendType": "vxlan",
                    "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:01:00"},
                    "BackendV6Data": {"VNI": 1, "VtepMAC": "0e:00:00:00:01:06"}}}}"#,
        );
        let public = Publics {
            v4: ip("192.0.2.1"),
            v6: Some("2001:db8::77".parse().expect("valid")),
        };
        let local = find_local(&s.leases, public).expect("by its IPv4 address");
        assert_eq!(
            local.public_ipv6,
            Some("2001:db8::1".parse().expect("valid"))
        );
        assert_eq!(local.vtep_mac.to_string(), "0e:00:00:00:01:00");
        assert_eq!(local.vtep_mac_v6.to_string(), "0e:00:00:00:01:06");
    }

    #[test]
    fn derived_ipv6_macs_fold_the_address() {
        let mac = |s: &str| derive_vtep_mac_v6(s.parse().expect("valid")).to_string();
        // The layout is part of the format: peers compute it too.
        assert_eq!(mac("2001:db8::1"), "0e:76:20:01:0d:b9");
        assert_eq!(mac("::"), "0e:76:00:00:00:00");
        // Addresses sharing their first 96 bits never collide.
        let macs: std::collections::HashSet<String> = (1..=300u32)
            .map(|i| mac(&format!("2001:db8::{i:x}")))
            .collect();
        assert_eq!(macs.len(), 300);
        let m = derive_vtep_mac_v6("2001:db8:1::5".parse().expect("valid"));
        assert!(m.is_unicast() && m.is_local());
        assert_ne!(
            m,
            derive_vtep_mac_v6("2001:db8:2::5".parse().expect("valid"))
        );
        assert_eq!(
            v6_only("2001:db8::1").derived_vtep_mac(),
            derive_vtep_mac_v6("2001:db8::1".parse().expect("valid"))
        );
        assert_eq!(
            Publics::from(ip("192.0.2.3")).derived_vtep_mac(),
            derive_vtep_mac(ip("192.0.2.3"))
        );
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
