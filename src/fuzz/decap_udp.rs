//! Fuzzes udp decapsulation (flannel's format: the payload is the inner IP packet)
//! and the outbound router hop on the same bytes: neither may panic.

use crate::encap::{decap_udp, encap_udp, encap_vxlan, VxlanHeader};
use crate::wire::MacAddr;

/// Runs the target on one input; it panics (a failed check) only on a bug.
pub fn run(data: &[u8]) {
    let (local, sender) = super::host2_and_sender();
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
