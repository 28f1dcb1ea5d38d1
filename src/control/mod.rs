//! The control plane: where leases come from, which one is ours, the table built
//! from the others, and what this host tells the container runtime.
//!
//! These pieces are pure or touch only the files they are named for; the daemon's
//! control loop (which owns the signals and the [`Table`]) drives them through
//! [`source::LeaseSource`]:
//!
//! | module            | owns                                                        | I/O |
//! |-------------------|-------------------------------------------------------------|-----|
//! | [`source`]        | the lease sources behind one interface: start, then lease-set events | through the sources |
//! | [`etcd`]          | the etcd subnet manager: acquiring, renewing and following leases in flannel's keys | etcd |
//! | [`kube`]          | the Kubernetes subnet manager: our Node's podCIDR and flannel's annotations, the Node watch | the API server |
//! | [`static_leases`] | the static leases file: flannel's etcd prefix in one JSON file, validated as a whole | reads the file |
//! | [`local`]         | this host's public addresses; picking its lease by them; the VTEP MAC | none |
//! | [`lease_table`]   | leases → table [`Snapshot`]; lease diffs for logging        | none |
//! | [`subnet_env`]    | `subnet.env` as flanneld writes it; atomic replacement      | writes the file |
//! | [`watch`]         | noticing that a file was edited or replaced                 | `stat` |
//!
//! Invariants:
//!
//! * a [`StaticLeases`] that parsing returns is one flannel could have produced:
//!   every lease inside the network and of its subnet length, one lease per subnet
//!   and per public address, the config's backend and VNI throughout. A bad edit is
//!   refused whole, so the daemon keeps publishing the table it had;
//! * [`build_snapshot`] never puts this host's own lease in the table, so the data
//!   path never tunnels to itself;
//! * the VTEP MAC of a lease without `VtepMAC` is a pure function of its public IP
//!   ([`derive_vtep_mac`], or [`derive_vtep_mac_v6`] of an IPv6-only lease's
//!   `PublicIPv6`), so this host and every peer agree on it without talking;
//!
//! [`Table`]: crate::table::Table
//! [`Snapshot`]: crate::table::Snapshot

pub mod etcd;
pub mod kube;
pub mod lease_table;
pub mod local;
pub mod source;
pub mod static_leases;
pub mod subnet_env;
pub mod watch;

pub use lease_table::{build_snapshot, diff, LeaseDiff};
pub use local::{derive_vtep_mac, derive_vtep_mac_v6, find_local, LocalLease, Publics, VtepMacs};
pub use static_leases::StaticLeases;
pub use watch::FileStamp;

/// A fresh directory under the system temp dir, unique to the process and the
/// test's tag, removed on drop.
#[cfg(test)]
pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

#[cfg(test)]
impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ringlay-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

#[cfg(test)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
