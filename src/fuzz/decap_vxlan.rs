//! Fuzzes vxlan decapsulation with arbitrary UDP payloads: it must never panic, and
//! whatever it accepts must be a well-formed inner packet between the two leases.

use crate::config::SubnetKey;
use crate::encap::{decap_vxlan, Local};
use crate::wire::MacAddr;

/// Runs the target on one input; it panics (a failed check) only on a bug.
pub fn run(data: &[u8]) {
    let local = Local {
        subnets: SubnetKey {
            v4: "100.96.2.0/24".parse().ok(),
            v6: "fd00:100:96:2::/64".parse().ok(),
        },
        vni: 1,
        vtep_mac: MacAddr([0x0e, 0, 0, 0, 2, 0]),
    };
    let sender = SubnetKey {
        v4: "100.96.1.0/24".parse().ok(),
        v6: "fd00:100:96:1::/64".parse().ok(),
    };
    if let Ok(r) = decap_vxlan(data, &local, Some(&sender)) {
        assert!(r.start == 22 && r.end <= data.len() && r.start < r.end);
    }
    let _ = decap_vxlan(data, &local, None);
}
