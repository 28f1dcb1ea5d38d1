//! ringlay: a flannel-compatible userspace overlay forwarding engine.
//!
//! The crate is split so that everything that touches bytes from the network or
//! from etcd is pure code without I/O, testable and fuzzable without privileges:
//!
//! | module    | owns                                                   | invariant it keeps |
//! |-----------|--------------------------------------------------------|--------------------|
//! | [`wire`]  | zero-copy views and emitters of every header           | after `new_checked`, no accessor panics |
//! | [`encap`] | adding / stripping the udp and vxlan tunnel headers    | every refused packet has one typed [`drop_reason::DropReason`] |
//! | [`table`] | subnet → peer lookup, published as immutable snapshots | readers never block, allocate, or see a torn entry |
//! | [`config`]| flannel's network config, lease values and subnet keys | byte-compatible with flanneld's JSON in etcd |
//! | [`control`]| lease sources (a static file; etcd: acquisition, renewal, watch), this host's lease, the table it builds, `subnet.env`, the MTU, direct routes (host-gw, DirectRouting) | a refused lease file or etcd value never reaches the table; our own lease is never a peer; a lease is never written over another node's; only routes of ringlay's protocol are replaced or deleted |
//! | [`dataplane`]| the workers: one per TUN queue, each with its sockets and io_uring | no allocation or copy per packet; the table is read once per batch |
//! | [`daemon`]| `ringlay run`: host setup, workers, signals, reloads    | a failed start leaves nothing behind; stop removes the device |
//! | `fuzz`  | the fuzz targets' bodies, shared with the test replaying every committed input; only with the `fuzz` feature (the fuzz crate, tests) | a crash input, once fixed, is replayed by `cargo test` for good |
//! | [`ops`]   | what an operator sees: Prometheus metrics, `/healthz` and `/readyz`, the `ringlay status` socket, `--ip-masq` rules | reads the data path's counters, never writes them; the status socket is root-only; the masquerade table is removed on exit |
//! | [`privilege`]| the capabilities `ringlay run` keeps after set-up, and why | every thread reduces itself after set-up to at most `CAP_NET_ADMIN` (only where routes or the masquerade table need it), with `no_new_privs`; a thread found holding more 5 s later is logged as an error |
//! | [`sys`]   | TUN, interface ioctls, rtnetlink routes, sockets, io_uring, CPU affinity | the only module with `unsafe`; io_uring memory outlives its operations |
//!
//! `unsafe` is denied crate-wide; only [`sys`] allows it.
#![deny(unsafe_code)]

pub mod backend;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod drop_reason;
pub mod encap;
pub mod error;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod ops;
pub mod privilege;
pub mod sys;
pub mod table;
pub mod wire;

pub use error::{Error, Result};
