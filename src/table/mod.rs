//! The subnet → peer table: which peer owns an inner destination address, and which
//! peer a datagram's outer source address belongs to.
//!
//! # Invariants
//!
//! One writer (the control plane) builds an immutable [`Snapshot`] with a
//! [`SnapshotBuilder`] and hands it to [`Table::publish`]. Workers read through a
//! [`Reader`] (one per worker thread), which caches an `Arc` of the current snapshot:
//! [`Reader::snapshot`] costs one atomic load and a pointer compare when nothing
//! changed, so a worker calls it once per batch and then looks up every packet of
//! the batch in the same snapshot. Readers never block, never allocate on lookup and
//! cannot see a half-built snapshot: a snapshot is complete before its pointer is
//! swapped in, and it is never mutated afterwards.
//!
//! Conflicts resolve the same way everywhere: when two leases claim the same prefix
//! or the same public address, the one inserted into the builder later wins.
//!
//! # Layout
//!
//! * `publish`: [`Table`] and [`Reader`], the publish/read protocol over
//!   [`arc_swap`], generations, and freeing replaced snapshots on the writer's thread.
//! * `snapshot`: [`Peer`], [`Snapshot`] and [`SnapshotBuilder`], which assemble the
//!   structures below from the leases and answer lookups from them.
//! * `index`: the indexed path, one slot per lease-sized block of the cluster
//!   network (IPv4 from the given geometry, IPv6 from one inferred from the leases).
//! * `lpm`: the general longest-prefix match, a bucket index over disjoint intervals.
//! * `intervals`: resolves nested prefixes into those disjoint intervals; the index
//!   is derived from the same intervals, so both paths always agree.
//! * `bits`: the address widths (IPv4 as `u32`, IPv6 as `u128`) both paths work over.
//! * `hash`: the hasher of the snapshot's maps.
//!
//! Every path answers with a peer's position in the snapshot's peer list, a `u32`;
//! the two values no peer can have, `NONE` and `DEFER`, are defined in `bits`.

mod bits;
#[cfg(test)]
mod fixtures;
mod hash;
mod index;
mod intervals;
mod lpm;
mod publish;
mod snapshot;

pub use index::MAX_INDEX_SLOTS;
pub use publish::{Reader, Table};
pub use snapshot::{Peer, Snapshot, SnapshotBuilder};
