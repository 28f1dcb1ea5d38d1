//! A Node as the API server sends it (a list item or a watch event's object),
//! decoded and read as a lease with flannel's default annotation prefix: never
//! panics, and a lease of the shape ringlay writes survives a round trip through
//! the annotations ringlay writes (the same annotations again). The input's text, if short, is
//! also tried as an annotation prefix.

use crate::config::BackendType;
use crate::control::kube::node::NodeLease;
use crate::control::kube::{Prefix, DEFAULT_PREFIX};

/// Runs the target on one input; it panics (a failed check) only on a bug.
pub fn run(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if text.len() <= 300 {
            let _ = Prefix::parse(text);
        }
    }
    let Ok(node) = serde_json::from_slice::<NodeLease>(data) else {
        return;
    };
    let prefix = Prefix::parse(DEFAULT_PREFIX).expect("the default prefix is valid");
    let Ok(Some(lease)) = prefix.lease_of(&node) else {
        return;
    };
    // The round trip holds for the leases ringlay writes (an IPv4 public address;
    // a vxlan lease with its VTEP): flanneld's rules leave out the address of a
    // lease without them.
    let a = &lease.attrs;
    let vxlan = a.backend_type == Some(BackendType::Vxlan);
    if a.public_ip.is_unspecified() || (vxlan && a.backend_data.is_none()) {
        return;
    }
    let written = prefix.ours(&lease.attrs);
    let mut again = node.clone();
    again.metadata.annotations = Some(written.clone());
    let Ok(Some(read)) = prefix.lease_of(&again) else {
        panic!("our own annotations {written:?} were refused");
    };
    assert_eq!(read.key, lease.key);
    assert_eq!(prefix.ours(&read.attrs), written);
}
