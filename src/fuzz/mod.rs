//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`), one module per
//! target, each with a `run(data)` entry point. This is test code, not API: it
//! lives in the library so that the fuzz targets and the test that replays every
//! committed input with plain `cargo test` (tests/fuzz_regressions.rs) call the
//! very same function, and cannot drift apart.
//!
//! Committed inputs, replayed by that test for every target in [`TARGETS`]:
//!
//! - `fuzz/corpus/<target>/`: the seed corpora (from real captures and builders);
//! - `fuzz/regressions/<target>/<name>`: every input a fuzzer ever crashed on,
//!   kept after the fix, named after what it found.
//!
//! Each `run` panics only through its checks (or a bug in ringlay): nothing in
//! ringlay may panic on bytes from the network, etcd or the Kubernetes API.

use crate::config::SubnetKey;
use crate::encap::Local;
use crate::wire::MacAddr;

pub mod coalesce;
pub mod decap_udp;
pub mod decap_vxlan;
pub mod etcd_events;
pub mod ip_parse;
pub mod kube_node;
pub mod lease_json;
pub mod net_config;
pub mod split;
pub mod static_leases;
pub mod subnet_key;
pub mod virtio_hdr;

/// Host 2's end of a two-node overlay (VNI 1, VtepMAC 0e:00:00:00:02:00) and the
/// leases of host 1, the sender: what the decapsulation targets check datagrams
/// against.
fn host2_and_sender() -> (Local, SubnetKey) {
    let local = Local {
        subnets: SubnetKey {
            v4: "100.96.2.0/24".parse().ok(),
            v6: "fd00:100:96:2::/64".parse().ok(),
        },
        vni: 1,
        vtep_mac: MacAddr([0x0e, 0, 0, 0, 2, 0]),
        vtep_mac_v6: MacAddr([0x0e, 0, 0, 0, 2, 0]),
    };
    let sender = SubnetKey {
        v4: "100.96.1.0/24".parse().ok(),
        v6: "fd00:100:96:1::/64".parse().ok(),
    };
    (local, sender)
}

/// A target's entry point.
pub type Run = fn(&[u8]);

/// Every fuzz target, by its name in `fuzz/Cargo.toml`, and its body.
pub const TARGETS: &[(&str, Run)] = &[
    ("coalesce", coalesce::run),
    ("decap_udp", decap_udp::run),
    ("decap_vxlan", decap_vxlan::run),
    ("etcd_events", etcd_events::run),
    ("ip_parse", ip_parse::run),
    ("kube_node", kube_node::run),
    ("lease_json", lease_json::run),
    ("net_config", net_config::run),
    ("split", split::run),
    ("static_leases", static_leases::run),
    ("subnet_key", subnet_key::run),
    ("virtio_hdr", virtio_hdr::run),
];
