//! Choosing a free subnet in `[SubnetMin, SubnetMax]`, and the lease value this host
//! writes. Pure: the taken subnets and the random source are arguments.
//!
//! flanneld picks a random free subnet so that nodes starting together rarely race
//! for the same one; ringlay does the same. A race that still happens is settled by
//! etcd (the create transaction of the loser fails) and the loser picks again.
//!
//! The random source is [`Rng`], SplitMix64 seeded from the standard library's
//! per-process random hash keys and the clock: subnet choice and backoff jitter need
//! spread between nodes, not secrecy.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::config::{
    Backend, Features, Ipv4Config, Ipv6Config, LeaseAttrs, NetworkConfig, SubnetKey,
    VxlanBackendData,
};
use crate::control::Publics;
use crate::wire::MacAddr;
use crate::{Error, Result};

/// Random probes before a full scan of the range: with a range that is mostly free,
/// one or two probes find a subnet.
const PROBES: u32 = 64;
/// Ranges longer than this are never scanned whole (a /48 of /112s would be 2^64
/// subnets); a range this long is exhausted only in theory.
const SCAN_LIMIT: u128 = 1 << 22;

/// SplitMix64: a small, fast, well-spread generator (Steele, Lea, Flood 2014).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded differently in every process and at every call.
    pub fn from_entropy() -> Rng {
        let mut h = RandomState::new().build_hasher();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.write_u128(now);
        h.write_u32(std::process::id());
        Rng(h.finish())
    }

    /// A generator with a fixed seed (tests).
    pub const fn seeded(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`), without modulo bias worth the name for the
    /// ranges used here.
    pub fn below(&mut self, n: u128) -> u128 {
        let r = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
        if n == 0 {
            0
        } else {
            r % n
        }
    }
}

/// The subnets of one family's range, as indices: subnet `i` starts at
/// `min + i * step`.
#[derive(Debug, Clone, Copy)]
struct Range {
    min: u128,
    step: u128,
    count: u128,
}

impl Range {
    fn new(min: u128, max: u128, host_bits: u32) -> Range {
        let step = 1u128 << host_bits;
        Range {
            min,
            step,
            count: if max < min { 0 } else { (max - min) / step + 1 },
        }
    }

    fn at(&self, i: u128) -> u128 {
        self.min + i * self.step
    }

    /// A random index whose subnet `taken` does not hold; `None` when all are taken.
    fn choose(&self, taken: &HashSet<u128>, rng: &mut Rng) -> Option<u128> {
        if self.count == 0 {
            return None;
        }
        for _ in 0..PROBES {
            let i = rng.below(self.count);
            if !taken.contains(&self.at(i)) {
                return Some(self.at(i));
            }
        }
        if self.count > SCAN_LIMIT {
            return None;
        }
        let free = self.count - self.taken_in(taken);
        if free == 0 {
            return None;
        }
        let mut pick = rng.below(free);
        (0..self.count).map(|i| self.at(i)).find(|a| {
            if taken.contains(a) {
                return false;
            }
            if pick == 0 {
                return true;
            }
            pick -= 1;
            false
        })
    }

    /// How many of the range's subnets `taken` holds.
    fn taken_in(&self, taken: &HashSet<u128>) -> u128 {
        taken
            .iter()
            .filter(|&&a| {
                a >= self.min
                    && (a - self.min).is_multiple_of(self.step)
                    && (a - self.min) / self.step < self.count
            })
            .count() as u128
    }
}

fn v4_range(c: &Ipv4Config) -> Range {
    Range::new(
        u128::from(u32::from(c.subnet_min)),
        u128::from(u32::from(c.subnet_max)),
        32 - u32::from(c.subnet_len),
    )
}

fn v6_range(c: &Ipv6Config) -> Range {
    Range::new(
        u128::from(c.subnet_min),
        u128::from(c.subnet_max),
        128 - u32::from(c.subnet_len),
    )
}

/// The subnets the leases in etcd hold, per family.
#[derive(Debug, Clone, Default)]
pub struct Taken {
    v4: HashSet<u128>,
    v6: HashSet<u128>,
}

impl Taken {
    /// Records the subnets of `key` as taken.
    pub fn insert(&mut self, key: &SubnetKey) {
        if let Some(n) = key.v4 {
            self.v4.insert(u128::from(u32::from(n.network())));
        }
        if let Some(n) = key.v6 {
            self.v6.insert(u128::from(n.network()));
        }
    }

    /// True when neither subnet of `key` is taken.
    pub fn is_free(&self, key: &SubnetKey) -> bool {
        key.v4
            .is_none_or(|n| !self.v4.contains(&u128::from(u32::from(n.network()))))
            && key
                .v6
                .is_none_or(|n| !self.v6.contains(&u128::from(n.network())))
    }
}

/// True when `key` is a lease this network could have given: each family the config
/// enables present, of `SubnetLen`, within `[SubnetMin, SubnetMax]`; no other family.
pub fn fits(config: &NetworkConfig, key: &SubnetKey) -> bool {
    let v4 = match (config.ipv4, key.v4) {
        (Some(c), Some(n)) => c.accepts(n),
        (None, None) => true,
        _ => false,
    };
    let v6 = match (config.ipv6, key.v6) {
        (Some(c), Some(n)) => c.accepts(n),
        (None, None) => true,
        _ => false,
    };
    v4 && v6
}

/// True when `key` lies in the network at all (inside `Network`, of `SubnetLen`),
/// whatever `SubnetMin`/`SubnetMax` say: such a lease is a peer the table can route to.
pub fn in_network(config: &NetworkConfig, key: &SubnetKey) -> bool {
    let v4 = match (config.ipv4, key.v4) {
        (Some(c), Some(n)) => n.prefix_len() == c.subnet_len && c.network.contains(&n),
        (_, None) => true,
        (None, Some(_)) => false,
    };
    let v6 = match (config.ipv6, key.v6) {
        (Some(c), Some(n)) => n.prefix_len() == c.subnet_len && c.network.contains(&n),
        (_, None) => true,
        (None, Some(_)) => false,
    };
    v4 && v6 && (key.v4.is_some() || key.v6.is_some())
}

/// A random free subnet of each family the config enables, or
/// [`Error::NoFreeSubnet`] naming the range and how many of it are taken.
pub fn choose_free(config: &NetworkConfig, taken: &Taken, rng: &mut Rng) -> Result<SubnetKey> {
    let v4 = match config.ipv4 {
        None => None,
        Some(c) => {
            let range = v4_range(&c);
            let a = range
                .choose(&taken.v4, rng)
                .ok_or_else(|| Error::NoFreeSubnet {
                    min: c.subnet_min.to_string(),
                    max: c.subnet_max.to_string(),
                    len: c.subnet_len,
                    total: range.count,
                    taken: range.taken_in(&taken.v4),
                })?;
            let addr =
                Ipv4Addr::from(u32::try_from(a).expect("an IPv4 range holds IPv4 addresses"));
            Some(Ipv4Net::new(addr, c.subnet_len).expect("SubnetLen is a valid IPv4 prefix"))
        }
    };
    let v6 = match config.ipv6 {
        None => None,
        Some(c) => {
            let range = v6_range(&c);
            let a = range
                .choose(&taken.v6, rng)
                .ok_or_else(|| Error::NoFreeSubnet {
                    min: c.subnet_min.to_string(),
                    max: c.subnet_max.to_string(),
                    len: c.subnet_len,
                    total: range.count,
                    taken: range.taken_in(&taken.v6),
                })?;
            Some(
                Ipv6Net::new(Ipv6Addr::from(a), c.subnet_len)
                    .expect("IPv6SubnetLen is a valid IPv6 prefix"),
            )
        }
    };
    Ok(SubnetKey { v4, v6 })
}

/// The lease value this host writes, as flanneld's backend of the same type does
/// (`newSubnetAttrs` in flannel's `pkg/backend/vxlan/vxlan.go`, `RegisterNetwork`
/// in `pkg/backend/hostgw/hostgw.go` and `pkg/backend/udp/udp_amd64.go`):
///
/// * `PublicIP` is `public.v4` when the lease has an IPv4 subnet, else `0.0.0.0`
///   (an IPv6-only lease); `PublicIPv6` is `public.v6` when it has an IPv6 subnet,
///   else `null`;
/// * vxlan writes `BackendType` and, per family the lease has, `BackendData` and
///   `BackendV6Data` `{VNI, VtepMAC}`: an IPv6-only lease has no `BackendData`.
///   ringlay has one VTEP for both families, so both carry `vtep_mac`;
/// * host-gw writes `BackendType` only;
/// * udp writes no `BackendType`, as flannel's udp backend. flannel's udp has no
///   IPv6 at all; ringlay's writes `PublicIPv6` as the others do, without which
///   an IPv6-only lease would name no address;
/// * `features` (none: flanneld's value exactly) are added as [`Features`] says.
pub fn lease_value(
    backend: &Backend,
    public: Publics,
    vtep_mac: MacAddr,
    key: &SubnetKey,
    features: Features,
) -> LeaseAttrs {
    let public_ipv6 = key.v6.and(public.v6);
    let mut attrs = LeaseAttrs {
        public_ip: key.v4.map_or(Ipv4Addr::UNSPECIFIED, |_| public.v4),
        public_ipv6,
        backend_type: None,
        backend_data: None,
        backend_v6_data: None,
        features,
    };
    match *backend {
        Backend::Vxlan { vni, .. } => {
            let data = VxlanBackendData { vni, vtep_mac };
            attrs.backend_type = Some(crate::config::BackendType::Vxlan);
            attrs.backend_data = key.v4.map(|_| data);
            attrs.backend_v6_data = public_ipv6.map(|_| data);
        }
        Backend::HostGw => {
            attrs.backend_type = Some(crate::config::BackendType::HostGw);
            // No tunnel: nothing for a peer to leave partial.
            attrs.features = Features::default();
        }
        Backend::Udp { .. } => {}
    }
    attrs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> NetworkConfig {
        NetworkConfig::parse(text).expect("valid config")
    }

    fn key(s: &str) -> SubnetKey {
        s.parse().expect("valid key")
    }

    const NET: &str = r#"{"Network":"100.96.0.0/16","Backend":{"Type":"vxlan"}}"#;

    #[test]
    fn chooses_inside_the_range_and_avoids_taken_subnets() {
        let c = config(
            r#"{"Network":"100.96.0.0/16","SubnetMin":"100.96.10.0","SubnetMax":"100.96.13.0"}"#,
        );
        let mut taken = Taken::default();
        for k in ["100.96.10.0-24", "100.96.11.0-24", "100.96.13.0-24"] {
            taken.insert(&key(k));
        }
        for seed in 0..50 {
            let got = choose_free(&c, &taken, &mut Rng::seeded(seed)).expect("one is free");
            assert_eq!(got, key("100.96.12.0-24"), "seed {seed}");
        }
        let mut rng = Rng::seeded(7);
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let k = choose_free(&c, &Taken::default(), &mut rng).expect("all free");
            assert!(fits(&c, &k), "{k}");
            seen.insert(k);
        }
        assert_eq!(seen.len(), 4, "every subnet gets chosen: {seen:?}");
    }

    #[test]
    fn exhaustion_names_the_range_and_the_count() {
        let c = config(
            r#"{"Network":"100.96.0.0/16","SubnetMin":"100.96.1.0","SubnetMax":"100.96.2.0"}"#,
        );
        let mut taken = Taken::default();
        taken.insert(&key("100.96.1.0-24"));
        taken.insert(&key("100.96.2.0-24"));
        taken.insert(&key("100.96.9.0-24")); // outside the range: not counted
        let err = choose_free(&c, &taken, &mut Rng::seeded(1)).expect_err("full");
        assert!(
            matches!(
                err,
                Error::NoFreeSubnet {
                    total: 2,
                    taken: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("from 100.96.1.0 to 100.96.2.0"), "{msg}");
        assert!(msg.contains("all 2 subnets /24"), "{msg}");
        assert!(msg.contains("taken by 2 leases"), "{msg}");
    }

    #[test]
    fn the_default_range_and_dual_stack() {
        // flannel's defaults: SubnetMin = Network + 1 subnet, SubnetMax = the last but one.
        let c = config(NET);
        let mut rng = Rng::seeded(3);
        for _ in 0..100 {
            let k = choose_free(&c, &Taken::default(), &mut rng).expect("free");
            let n = k.v4.expect("v4");
            assert!(n.addr() >= Ipv4Addr::new(100, 96, 1, 0), "{n}");
            assert!(n.addr() <= Ipv4Addr::new(100, 96, 255, 0), "{n}");
            assert_eq!(k.v6, None);
        }
        let c = config(
            r#"{"Network":"100.96.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:100:96::/48"}"#,
        );
        let k = choose_free(&c, &Taken::default(), &mut rng).expect("free");
        assert!(fits(&c, &k), "{k}");
        assert_eq!(k.v6.map(|n| n.prefix_len()), Some(64));
    }

    #[test]
    fn a_full_scan_finds_the_last_free_subnet_of_a_large_range() {
        let c = config(r#"{"Network":"10.0.0.0/8","SubnetLen":24}"#);
        let range = v4_range(&c.ipv4.expect("v4"));
        let mut taken = Taken::default();
        for i in 0..range.count {
            if i != 40_000 {
                taken.v4.insert(range.at(i));
            }
        }
        let k = choose_free(&c, &taken, &mut Rng::seeded(9)).expect("one free");
        let want = Ipv4Addr::from(u32::try_from(range.at(40_000)).expect("v4"));
        assert_eq!(k.v4.map(|n| n.addr()), Some(want));
    }

    #[test]
    fn fits_and_in_network() {
        let c = config(
            r#"{"Network":"100.96.0.0/16","SubnetMin":"100.96.10.0","SubnetMax":"100.96.20.0"}"#,
        );
        assert!(fits(&c, &key("100.96.10.0-24")));
        assert!(!fits(&c, &key("100.96.9.0-24")));
        assert!(in_network(&c, &key("100.96.9.0-24")));
        assert!(!in_network(&c, &key("100.97.9.0-24")));
        assert!(!in_network(&c, &key("100.96.9.0-25")));
        assert!(!fits(&c, &key("100.96.10.0-24&fd00::-64")));
    }

    #[test]
    fn lease_values_are_flannels() {
        let mac: MacAddr = "0e:72:c0:00:02:01".parse().expect("mac");
        let ip = Ipv4Addr::new(192, 0, 2, 1);
        let vx = Backend::Vxlan {
            vni: 1,
            port: 8472,
            mtu: None,
            direct_routing: false,
        };
        assert_eq!(
            lease_value(
                &vx,
                ip.into(),
                mac,
                &key("100.96.1.0-24"),
                Features::default()
            )
            .to_json(),
            r#"{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:72:c0:00:02:01"}}"#
        );
        assert_eq!(
            lease_value(
                &Backend::DEFAULT,
                ip.into(),
                mac,
                &key("100.96.1.0-24"),
                Features::default()
            )
            .to_json(),
            r#"{"PublicIP":"192.0.2.1","PublicIPv6":null}"#
        );
    }

    #[test]
    fn dual_stack_and_ipv6_only_lease_values_are_flannels() {
        let mac: MacAddr = "0e:72:c0:00:02:01".parse().expect("mac");
        let v6: Ipv6Addr = "2001:db8::1".parse().expect("v6");
        let dual = Publics {
            v4: Ipv4Addr::new(192, 0, 2, 1),
            v6: Some(v6),
        };
        let vx = Backend::Vxlan {
            vni: 1,
            port: 8472,
            mtu: None,
            direct_routing: false,
        };
        let dual_key = key("100.96.1.0-24&fd00:100:96:1::-64");
        assert_eq!(
            lease_value(&vx, dual, mac, &dual_key, Features::default()).to_json(),
            r#"{"PublicIP":"192.0.2.1","PublicIPv6":"2001:db8::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:72:c0:00:02:01"},"BackendV6Data":{"VNI":1,"VtepMAC":"0e:72:c0:00:02:01"}}"#
        );
        // IPv6 only: flanneld's zero PublicIP, and no BackendData.
        let only = Publics {
            v4: Ipv4Addr::UNSPECIFIED,
            v6: Some(v6),
        };
        let v6_key = SubnetKey {
            v4: None,
            v6: Some("fd00:100:96:1::/64".parse().expect("net")),
        };
        let mac6 = only.derived_vtep_mac();
        assert_eq!(
            lease_value(&vx, only, mac6, &v6_key, Features::default()).to_json(),
            r#"{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::1","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"0e:76:20:01:0d:b9"}}"#
        );
        assert_eq!(
            lease_value(&Backend::HostGw, only, mac6, &v6_key, Features::default()).to_json(),
            r#"{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::1","BackendType":"host-gw"}"#
        );
        assert_eq!(
            lease_value(&Backend::HostGw, dual, mac, &dual_key, Features::default()).to_json(),
            r#"{"PublicIP":"192.0.2.1","PublicIPv6":"2001:db8::1","BackendType":"host-gw"}"#
        );
        // An IPv4-only lease never carries an IPv6 address, whatever was given.
        assert_eq!(
            lease_value(&vx, dual, mac, &key("100.96.1.0-24"), Features::default()).to_json(),
            r#"{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:72:c0:00:02:01"}}"#
        );
    }

    #[test]
    fn rng_spreads() {
        let mut r = Rng::seeded(0);
        let mut buckets = [0u32; 8];
        for _ in 0..8000 {
            buckets[usize::try_from(r.below(8)).expect("small")] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (800..1200).contains(&b)),
            "{buckets:?}"
        );
        assert_ne!(
            Rng::from_entropy().next_u64(),
            Rng::from_entropy().next_u64()
        );
    }
}
