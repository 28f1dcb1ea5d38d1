//! Fuzzes udp decapsulation (flannel's format: the payload is the inner IP packet)
//! and the outbound router hop on the same bytes: neither may panic.

use crate::config::SubnetKey;
use crate::encap::{decap_udp, encap_udp, encap_vxlan, Local, VxlanHeader};
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
    if let Ok(r) = decap_udp(data, &local, Some(&sender)) {
        assert!(r.start == 0 && r.end <= data.len());
    }
    // The same bytes as a packet read from the TUN device.
    let mut buf = vec![0u8; 22 + data.len()];
    buf[22..].copy_from_slice(data);
    let mut copy = buf.clone();
    let a = encap_udp(&mut buf, 22, data.len());
    let hdr = VxlanHeader::new(
        1,
        MacAddr([0x0e, 0, 0, 0, 1, 0]),
        MacAddr([0x0e, 0, 0, 0, 2, 0]),
    );
    let b = encap_vxlan(&mut copy, 22, data.len(), &hdr);
    assert_eq!(a.is_ok(), b.is_ok());
}
