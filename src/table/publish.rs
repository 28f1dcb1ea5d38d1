//! Publication: [`Table`], the handle one writer publishes snapshots through, and
//! [`Reader`], the per-worker handle that reads the current one without blocking.
//!
//! A snapshot is complete before its pointer is swapped in and never mutated
//! afterwards, so a reader sees either the old snapshot or the new one, whole.
//!
//! The swap is [`arc_swap`] rather than `crossbeam-epoch` because
//!
//! * a cached `Arc` makes the per-batch cost one atomic load and a compare, with
//!   no pin/unpin (epoch pinning needs a `SeqCst` fence per batch);
//! * reclamation is exact and local: a snapshot lives while someone holds it, and a
//!   worker stalled in `io_uring_enter` delays only the snapshot it holds, whereas a
//!   stalled pinned epoch participant holds back every deferred free in the process;
//! * it needs no `unsafe` (crossbeam-epoch's `Shared::deref` does), and the crate
//!   denies `unsafe` outside `sys`.
//!
//! The one cost of reference counting is that whoever drops the last `Arc` frees the
//! snapshot, and freeing a million-prefix snapshot on a worker would stall its data
//! path. The table therefore keeps every replaced snapshot in a writer-side retired
//! list and drops it only once the writer holds the last reference
//! ([`Table::reclaim`], also run by every [`Table::publish`]): workers only ever
//! decrement a count, and all frees happen on the writer's thread.
//!
//! Generations are assigned by [`Table::publish`]: the empty snapshot of
//! [`Table::new`] is generation 0 and each publish adds one, so a reader that sees
//! generations go backwards has found a bug.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arc_swap::{ArcSwap, Cache, Guard};

use super::snapshot::{Snapshot, SnapshotBuilder};

/// The shared handle: the control plane publishes through it, workers read through
/// it. Cloning is cheap (two `Arc`s); it is `Send + Sync`.
#[derive(Clone)]
pub struct Table {
    current: Arc<ArcSwap<Snapshot>>,
    writer: Arc<Mutex<Writer>>,
}

/// Writer-only state; readers never touch its lock.
struct Writer {
    generation: u64,
    /// When the current snapshot was published (`None`: never).
    published_at: Option<SystemTime>,
    /// Replaced snapshots some reader may still hold; freed here once only the
    /// writer does, so a worker never pays for a free.
    retired: Vec<Arc<Snapshot>>,
}

impl Table {
    /// A table holding an empty snapshot, generation 0.
    pub fn new() -> Table {
        Table {
            current: Arc::new(ArcSwap::from_pointee(SnapshotBuilder::new(None).build())),
            writer: Arc::new(Mutex::new(Writer {
                generation: 0,
                published_at: None,
                retired: Vec::new(),
            })),
        }
    }

    /// Makes `snapshot` the current one and returns the generation it was given (one
    /// more than the previous). Concurrent publishers are serialized, so generations
    /// grow in publication order. Frees every replaced snapshot no reader holds.
    pub fn publish(&self, mut snapshot: Snapshot) -> u64 {
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        w.generation += 1;
        w.published_at = Some(SystemTime::now());
        snapshot.generation = w.generation;
        // `swap` converts every reader's outstanding borrow of the old snapshot into
        // a counted reference before it returns, so `strong_count` below is exact.
        let old = self.current.swap(Arc::new(snapshot));
        w.retired.push(old);
        w.retired.retain(|s| Arc::strong_count(s) > 1);
        w.generation
    }

    /// Frees the replaced snapshots no reader holds any more, returning how many are
    /// still held. [`Table::publish`] does this too; call it on a timer to free
    /// memory sooner when publishes are rare.
    pub fn reclaim(&self) -> usize {
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        w.retired.retain(|s| Arc::strong_count(s) > 1);
        w.retired.len()
    }

    /// When the current snapshot was published (`None` before the first publish).
    /// Takes the writer's lock: for the control plane, not the workers.
    pub fn published_at(&self) -> Option<SystemTime> {
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .published_at
    }

    /// The current snapshot, borrowed without touching its reference count where
    /// possible. For a per-worker handle that is cheaper still, see [`Table::reader`].
    #[inline]
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A caching read handle for one worker thread.
    pub fn reader(&self) -> Reader {
        Reader {
            cache: Cache::new(Arc::clone(&self.current)),
        }
    }
}

impl Default for Table {
    fn default() -> Table {
        Table::new()
    }
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("current", &**self.current.load())
            .finish()
    }
}

/// A worker's read handle: keeps the current snapshot's `Arc`, so checking for a
/// newer one is a single atomic load.
pub struct Reader {
    cache: Cache<Arc<ArcSwap<Snapshot>>, Arc<Snapshot>>,
}

impl Reader {
    /// The current snapshot; hold it for a whole batch of packets.
    #[inline]
    pub fn snapshot(&mut self) -> &Snapshot {
        self.cache.load()
    }
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::fixtures::*;

    #[test]
    fn publish_numbers_generations_and_readers_follow() {
        let table = Table::new();
        assert_eq!(table.load().generation(), 0);
        let mut reader = table.reader();
        assert_eq!(reader.snapshot().generation(), 0);
        let s = build(cluster(), &[peer4("10.244.1.0/24", "192.0.2.1")]);
        assert_eq!(s.generation(), 0);
        assert_eq!(table.publish(s), 1);
        assert_eq!(reader.snapshot().generation(), 1);
        assert!(reader.snapshot().lookup_v4(v4("10.244.1.1")).is_some());
        let next = table.load().to_builder().build();
        assert_eq!(next.len(), 1);
        assert_eq!(next.geometry(), cluster());
        assert_eq!(table.clone().publish(next), 2);
        assert_eq!(table.load_full().generation(), 2);
        assert_eq!(reader.snapshot().generation(), 2);
    }

    #[test]
    fn replaced_snapshots_are_freed_by_the_writer() {
        let table = Table::new();
        table.publish(SnapshotBuilder::new(None).build());
        let held = table.load_full(); // generation 1, as a stalled worker would
        let mut reader = table.reader(); // caches generation 1 too
        assert_eq!(reader.snapshot().generation(), 1);
        table.publish(SnapshotBuilder::new(None).build());
        assert_eq!(table.reclaim(), 1, "generation 1 is still held");
        drop(held);
        assert_eq!(table.reclaim(), 1, "the reader's cache still holds it");
        assert_eq!(reader.snapshot().generation(), 2);
        // The reader dropped its reference but did not free: the writer's list did.
        assert_eq!(table.reclaim(), 0);
    }

    #[test]
    fn table_is_shareable() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Table>();
        assert_send_sync::<Snapshot>();
        fn assert_send<T: Send + 'static>() {}
        assert_send::<Reader>();
    }
}
