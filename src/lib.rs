//! ringlay: a flannel-compatible userspace overlay forwarding engine.
//!
//! The crate is split so that everything that touches bytes from the network or
//! from etcd is pure code without I/O, testable and fuzzable without privileges:
//!
//! From the ground floor up: a module imports only modules listed above it.
//!
//! | module    | owns                                                   | invariant it keeps |
//! |-----------|--------------------------------------------------------|--------------------|
//! | [`sys`]   | TUN, rtnetlink links, addresses and routes, sockets and their control messages, io_uring, capabilities, CPU affinity | the only module with `unsafe`; io_uring memory outlives its operations |
//! | [`wire`]  | zero-copy views and emitters of every header           | after `new_checked`, no accessor panics |
//! | [`drop_reason`] | why the data path drops a packet: one [`drop_reason::DropReason`] per counter | every drop is counted under exactly one reason |
//! | [`config`]| flannel's network config, lease values ([`config::Lease`]) and subnet keys | byte-compatible with flanneld's JSON in etcd |
//! | [`encap`] | the tunnel formats; adding / stripping the udp and vxlan headers | every refused packet has one typed reason |
//! | [`table`] | subnet → peer lookup, published as immutable snapshots (publication, snapshot, indexed lookup, LPM) | readers never block, allocate, or see a torn entry |
//! | [`control`]| lease sources behind one interface (a static file; etcd: acquisition, renewal, watch; Kubernetes: the podCIDR, flannel's node annotations, the Node watch), this host's lease, the table built from the others, `subnet.env` | a refused lease file, etcd value or node annotation never reaches the table; our own lease is never a peer; a lease is never written over another node's |
//! | [`dataplane`]| the workers: one per TUN queue, each with its sockets and io_uring, in two halves (outbound, inbound) | no allocation or copy per packet; the table is read once per batch |
//! | [`backend`]| each backend's host set-up, owned by one value: the tunnel (TUN device, sockets, offloads, workers, DirectRouting routes) and host-gw (routes); the underlay, the MTU | a failed start leaves nothing behind; dropping a backend undoes what it created; only routes of ringlay's protocol are replaced or deleted |
//! | [`privilege`]| the capabilities `ringlay run` keeps after set-up, and why | every thread reduces itself after set-up to at most `CAP_NET_ADMIN` (only where routes or the masquerade table need it), with `no_new_privs`; a thread found holding more 5 s later is logged as an error |
//! | [`ops`]   | what an operator sees: Prometheus metrics, `/healthz` and `/readyz`, the `ringlay status` socket (server and client), `--ip-masq` rules | reads the data path's counters, never writes them; the status socket is root-only and per network namespace; the masquerade table is removed on exit |
//! | [`daemon`]| `ringlay run`: the start-up sequence, the one control loop, the start-up tail (masquerade, subnet.env, privilege drop) | every lease source and backend runs through the same loop; stop undoes start in reverse order |
//! | `fuzz`    | the fuzz targets' bodies, shared with the test replaying every committed input; only with the `fuzz` feature (the fuzz crate, tests) | a crash input, once fixed, is replayed by `cargo test` for good |
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
