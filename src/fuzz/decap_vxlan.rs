//! Fuzzes vxlan decapsulation with arbitrary UDP payloads: it must never panic, and
//! whatever it accepts must be a well-formed inner packet between the two leases.

use crate::encap::decap_vxlan;

/// Runs the target on one input; it panics (a failed check) only on a bug.
pub fn run(data: &[u8]) {
    let (local, sender) = super::host2_and_sender();
    if let Ok(r) = decap_vxlan(data, &local, Some(&sender)) {
        assert!(r.start == 22 && r.end <= data.len() && r.start < r.end);
    }
    let _ = decap_vxlan(data, &local, None);
}
