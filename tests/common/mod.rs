//! Helpers shared by the integration tests: reading and writing classic pcap
//! files, building outer Ethernet/IPv4/UDP frames, dissecting captures with
//! tshark, running a real etcd (and a real kube-apiserver on top of one), and
//! clusters of daemons that lease their subnets in it. Independent of the ringlay
//! crate (std, and serde_json to read etcdctl's output), so the helpers stay usable
//! while the library changes underneath them.

// Each integration test is its own crate that compiles this module and uses only
// part of it; the rest would warn as dead code in every test that does not.
#![allow(dead_code)]

pub mod cluster;
pub mod etcd;
pub mod kube;
pub mod netns;
pub mod pcap;
pub mod tshark;
pub mod watcher;
