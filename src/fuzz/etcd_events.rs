//! Watch events from etcd applied to a `LeaseSet`: arbitrary keys and values, puts
//! and deletes in any order. Never panics; every lease kept is in the network and
//! names an address, and a put refused never replaces a lease that was there.

use crate::config::{LeaseAttrs, NetworkConfig};
use crate::control::etcd::leases::{classify, Applied, Key, LeaseSet};

const PREFIX: &str = "/coreos.com/network";

/// Runs the target on one input; it panics (a failed check) only on a bug.
pub fn run(data: &[u8]) {
    let config = NetworkConfig::parse(r#"{"Network":"100.96.0.0/16","Backend":{"Type":"vxlan"}}"#)
        .expect("a valid config");
    let mut set = LeaseSet::new();
    // Events are separated by 0xff; in each, the first byte picks put or delete,
    // then key and value are split at the first 0x00.
    for (rev, event) in data.split(|&b| b == 0xff).enumerate() {
        let Some((&op, rest)) = event.split_first() else {
            continue;
        };
        let (key_tail, value) = match rest.iter().position(|&b| b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        let mut key = format!("{PREFIX}/subnets/").into_bytes();
        key.extend_from_slice(key_tail);
        let before = set.len();
        let subnet = match classify(&key, PREFIX) {
            Key::Lease(k) => Some(k),
            _ => None,
        };
        let held = subnet.and_then(|k| set.get(&k).copied());
        let put = op & 1 == 0;
        let applied = if put {
            set.apply_put(&config, PREFIX, &key, value, rev as i64)
        } else {
            set.apply_delete(PREFIX, &key)
        };
        match applied {
            Applied::Added(_) => assert_eq!(set.len(), before + 1),
            Applied::Removed(_) => assert_eq!(set.len(), before - 1),
            _ => assert_eq!(set.len(), before),
        }
        if put && set.is_refused(&String::from_utf8_lossy(&key)) {
            let now = subnet.and_then(|k| set.get(&k).copied());
            assert_eq!(now, held, "a refused put replaced the lease");
        }
    }
    for lease in set.leases() {
        assert!(LeaseAttrs::claimant(lease.attrs.to_json().as_bytes()).is_some());
        let net = lease.key.v4.expect("an IPv4 network keeps IPv4 leases");
        assert_eq!(net.prefix_len(), 24);
        assert!(config.ipv4.expect("v4").network.contains(&net));
    }
}
