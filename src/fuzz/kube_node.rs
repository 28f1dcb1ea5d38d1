//! A Node as the API server sends it (a list item or a watch event's object),
//! decoded and read as a lease with flannel's default annotation prefix: never
//! panics, and a lease it yields survives a round trip through the annotations
//! ringlay writes (the same annotations again). The input's text, if short, is
//! also tried as an annotation prefix.

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
    let written = prefix.ours(&lease.attrs);
    let mut again = node.clone();
    again.metadata.annotations = Some(written.clone());
    let Ok(Some(read)) = prefix.lease_of(&again) else {
        panic!("our own annotations {written:?} were refused");
    };
    assert_eq!(read.key, lease.key);
    assert_eq!(prefix.ours(&read.attrs), written);
}
