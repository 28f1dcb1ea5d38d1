//! io_uring for the data path: a ring together with the memory its operations use.
//!
//! # Why the ring owns the buffers
//!
//! An io_uring operation names a buffer by address; the kernel writes into it (or
//! reads from it) at some later time, until the operation's completion is reaped.
//! Freeing or touching that memory in between is undefined behaviour. [`Ring`]
//! makes that impossible to get wrong from safe code:
//!
//! * the packet memory is one heap allocation of `slots × slot_size` bytes owned by
//!   the ring, never moved or resized, together with one `msghdr` / `iovec` /
//!   socket address per slot for the socket operations; it is made resident when
//!   the ring is built, so that the resident size does not creep up with use;
//! * every operation takes a slot index and marks the slot busy; [`Ring::buf`] and
//!   [`Ring::buf_mut`] refuse (panic, a program bug) to hand out a busy slot, and
//!   a second operation on a busy slot is refused with [`SlotBusy`];
//! * a slot becomes idle only when [`Ring::reap`] returns its completion;
//! * on drop the ring cancels everything in flight and waits for the
//!   cancellations' completions before the memory is freed; should that ever
//!   fail, the memory is leaked rather than freed under the kernel.
//!
//! Submissions are batched: operations queue in the submission ring and reach the
//! kernel with one `io_uring_enter` per [`Ring::submit_and_wait`] (or when the
//! submission ring is full).

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types, IoUring, Probe};

pub use super::cmsg::gro_segment;
use super::cmsg::{IntCmsg, SPACE_INT};
use super::sockaddr::{self, RawSockAddr, SOCKADDR_MAX};

/// Index of a buffer slot of a [`Ring`].
pub type Slot = u32;

/// The smallest page size Linux uses: touching one byte every `PAGE` bytes reaches
/// every page whatever the real size.
const PAGE: usize = 4096;

/// `len` zero bytes, every page of them resident.
///
/// A large zeroed allocation is mapped copy-on-write to the zero page, and each
/// page becomes the process's own only when first written. Packet pools are used
/// piece by piece (the slots a burst needs, the depth a datagram or GRO train
/// reaches), so left alone the resident size would creep up for as long as traffic
/// reaches pages not written before, and each first write would be a page fault on
/// the data path. Writing every page once, here, makes the pools cost what they
/// cost from the start.
fn resident_zeroed(len: usize) -> Box<[u8]> {
    let mut mem = vec![0u8; len].into_boxed_slice();
    for page in mem.chunks_mut(PAGE) {
        // An opaque zero: a store of a constant zero into memory known to be
        // zeroed may be optimised away.
        page[0] = std::hint::black_box(0);
    }
    // The allocation need not start on a page boundary: then its last page holds
    // no chunk's first byte.
    if let Some(last) = mem.last_mut() {
        *last = std::hint::black_box(0);
    }
    mem
}

/// What the kernel supports, probed once at start-up and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// `IORING_OP_READ` (5.6), used for the workers' stop eventfd.
    pub read: bool,
    /// `IORING_OP_SENDMSG` / `IORING_OP_RECVMSG` (5.3).
    pub msg: bool,
    /// `IORING_OP_POLL_ADD` (5.1; multishot since 5.13), used for the TUN queue.
    pub poll: bool,
    /// Cancelling every operation at once (`IORING_ASYNC_CANCEL_ANY`, 5.19).
    pub cancel_any: bool,
    /// Provided-buffer rings for multishot receives (`IORING_REGISTER_PBUF_RING`,
    /// 5.19; multishot recvmsg 6.0).
    pub buf_ring: bool,
    /// Multishot reads into a provided-buffer ring (`IORING_OP_READ_MULTISHOT`,
    /// 6.7), used for the TUN queue: TUN files support io_uring's non-blocking
    /// attempt (`FMODE_NOWAIT`) since 6.4, so a read that finds the queue empty
    /// waits on the queue's poll instead of blocking a kernel worker thread.
    pub read_multi: bool,
    /// How the workers' rings run completion work ([`Ring::task_work`]).
    pub task_work: TaskWork,
}

impl Features {
    /// Probes the running kernel with throwaway rings.
    pub fn probe() -> io::Result<Features> {
        let ring = IoUring::new(2)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        let msg =
            probe.is_supported(opcode::SendMsg::CODE) && probe.is_supported(opcode::RecvMsg::CODE);
        let mut scratch = Ring::new(2, 0, 0)?;
        let buf_ring = msg && scratch.enable_recv_ring(1, 64).is_ok();
        Ok(Features {
            read: probe.is_supported(opcode::Read::CODE),
            msg,
            poll: probe.is_supported(opcode::PollAdd::CODE),
            cancel_any: probe.is_supported(opcode::AsyncCancel2::CODE),
            buf_ring,
            read_multi: buf_ring && probe.is_supported(opcode::ReadMulti::CODE),
            task_work: scratch.task_work(),
        })
    }

    /// What the data path cannot do without, if anything is missing.
    pub fn missing(&self) -> Option<&'static str> {
        if !self.msg {
            Some("IORING_OP_SENDMSG/RECVMSG (Linux 5.3)")
        } else if !self.read {
            Some("IORING_OP_READ (Linux 5.6)")
        } else if !self.poll {
            Some("IORING_OP_POLL_ADD (Linux 5.13 for multishot)")
        } else {
            None
        }
    }
}

/// An operation was asked of a slot that already has one in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("io_uring slot {0} already has an operation in flight")]
pub struct SlotBusy(pub Slot);

/// The outcome of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The slot the operation used (now idle again); for a read into the TUN
    /// read ring ([`Ring::read_multi`]), the slot the kernel filled.
    pub slot: Slot,
    /// The caller's tag for the operation kind.
    pub tag: u16,
    /// Bytes transferred (or poll events), or a negated errno.
    pub result: i32,
    /// A multishot operation (a poll) stays armed and will complete again.
    pub more: bool,
    /// The provided buffer the kernel picked, for a multishot receive.
    pub buffer: Option<u16>,
}

/// Most pieces one gathered send ([`Ring::send_gather`]) may name: two per
/// datagram (its headers, its payload) for a train of 64 datagrams.
pub const GATHER_MAX: usize = 128;

/// Per-slot socket metadata, kept at a stable address for `sendmsg`/`recvmsg`.
#[repr(C)]
struct Meta {
    hdr: libc::msghdr,
    /// The pieces of a send, in order; a receive uses the first.
    iov: [libc::iovec; GATHER_MAX],
    /// The destination of a send, the source of a receive.
    addr: RawSockAddr,
    /// Control messages: `UDP_SEGMENT` on a send, `UDP_GRO` on a receive.
    ctrl: IntCmsg,
}

/// One datagram (or, with `UDP_GRO`, a train of them) taken by a receive.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// The sender, if it has an IP address (IPv4-mapped senders read as IPv4).
    pub source: Option<SocketAddr>,
    /// The bytes received.
    pub payload: &'a [u8],
    /// With `UDP_GRO`: the size of every datagram of the train but the last.
    pub segment: Option<u16>,
}

/// One io_uring and the packet memory its operations use.
pub struct Ring {
    // Field order matters: the ring is dropped (closed) before the memory, and
    // `Drop for Ring` drains every operation before either.
    ring: IoUring,
    mem: Box<[u8]>,
    meta: Box<[Meta]>,
    busy: Vec<bool>,
    slot_size: usize,
    inflight: usize,
    recv_ring: Option<RecvRing>,
    /// The TUN read ring: its buffers are slots, lent with [`Ring::lend`].
    read_ring: Option<BufRing>,
    task_work: TaskWork,
}

/// How a ring runs the work a completing operation leaves for the submitting
/// thread (a receive or read that completed in the kernel is posted by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskWork {
    /// Only when the thread waits for completions, in one batch per turn
    /// (`IORING_SETUP_DEFER_TASKRUN`, 6.1, with `SINGLE_ISSUER`, 6.0).
    Deferred,
    /// At the thread's next entry into the kernel, which a worker makes
    /// constantly (`IORING_SETUP_COOP_TASKRUN`, 5.19).
    Cooperative,
    /// By interrupting the thread with an IPI, the kernel's default.
    #[default]
    Interrupting,
}

impl TaskWork {
    /// How it reads in the start-up log.
    pub fn describe(self) -> &'static str {
        match self {
            TaskWork::Deferred => "deferred to each worker's wait (DEFER_TASKRUN)",
            TaskWork::Cooperative => {
                "run at every kernel entry (COOP_TASKRUN; no DEFER_TASKRUN before Linux 6.1)"
            }
            TaskWork::Interrupting => {
                "run by interrupting the worker (no COOP_TASKRUN before Linux 5.19)"
            }
        }
    }
}

/// A ring of `entries` entries, with the most economical [`TaskWork`] the
/// kernel has.
///
/// Deferred work runs once per turn and never in the middle of a TUN write;
/// cooperative work saves the IPI. TASKRUN_FLAG (5.19, with either) has the
/// kernel flag pending work in the submission ring, so a spinning worker sees
/// it without a syscall (and [`Ring::submit_and_wait`] knows to run deferred
/// work). Only this thread submits (SINGLE_ISSUER, 6.0). Older kernels refuse
/// the flags: the newest are dropped first, down to a plain ring.
fn build(entries: u32) -> io::Result<(IoUring, TaskWork)> {
    let mut cooperative = IoUring::builder();
    cooperative.setup_coop_taskrun().setup_taskrun_flag();
    let mut single = cooperative.clone();
    single.setup_single_issuer();
    let mut deferred = single.clone();
    deferred.setup_defer_taskrun();
    for (builder, work) in [
        (deferred, TaskWork::Deferred),
        (single, TaskWork::Cooperative),
        (cooperative, TaskWork::Cooperative),
    ] {
        if let Ok(ring) = builder.build(entries) {
            return Ok((ring, work));
        }
    }
    Ok((IoUring::builder().build(entries)?, TaskWork::Interrupting))
}

/// `IORING_ENTER_GETEVENTS`: an entry that also runs deferred task work.
const ENTER_GETEVENTS: u32 = 1;

/// The buffer group id of the receive ring.
const RECV_GROUP: u16 = 0;
/// The buffer group id of the TUN read ring.
const READ_GROUP: u16 = 1;
/// The slot token reported by multishot receives (they use no slot).
pub const RECV_MULTI_TOKEN: Slot = u32::MAX - 1;
/// The slot token a multishot read is submitted with; its completions report
/// the slot they filled instead.
const READ_MULTI_TOKEN: Slot = u32::MAX - 2;

/// A provided-buffer ring (`IORING_REGISTER_PBUF_RING`, 5.19): the shared ring of
/// `struct io_uring_buf` entries naming the buffers a multishot operation of its
/// group may fill, in the order they were published.
struct BufRing {
    /// The entries, page-aligned.
    entries: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
    count: u16,
    tail: u16,
}

impl BufRing {
    /// An empty ring of `count` (a power of two) entries, registered as buffer
    /// group `group` of `ring`.
    ///
    /// # Safety
    ///
    /// The returned ring must outlive the registration: be dropped only once
    /// `ring` is closed.
    unsafe fn register(ring: &IoUring, count: u16, group: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count must be a power of two",
            ));
        }
        let layout = std::alloc::Layout::from_size_align(usize::from(count) * 16, 4096)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the layout has a non-zero size (count ≥ 1).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let entries = std::ptr::NonNull::new(ptr)
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let br = BufRing {
            entries,
            layout,
            count,
            tail: 0,
        };
        // SAFETY: the entries stay allocated and unmoved as long as `br`, which
        // the caller keeps until the ring is closed.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                entries.as_ptr() as u64,
                count,
                group,
                0,
            )?;
        }
        Ok(br)
    }

    /// Publishes buffer `bid`, `len` bytes at `addr`, to the kernel at the tail.
    ///
    /// The caller keeps the memory valid, and untouched, until the kernel
    /// reports the buffer used (or the ring is closed).
    fn push(&mut self, addr: *mut u8, len: u32, bid: u16) {
        let idx = usize::from(self.tail & (self.count - 1));
        // SAFETY: `idx < count`, so the 16-byte entry lies inside the allocation;
        // the kernel reads entries only below the published tail, and this one is
        // at the tail, so nothing reads it while it is written.
        unsafe {
            let e = self.entries.as_ptr().add(idx * 16);
            e.cast::<u64>().write_unaligned(addr as u64);
            e.add(8).cast::<u32>().write_unaligned(len);
            e.add(12).cast::<u16>().write_unaligned(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the u16 at offset 14 of the ring (it overlays the
        // first entry's `resv`), 2-byte aligned in a page-aligned allocation; the
        // kernel reads it with acquire semantics, so publish with release.
        unsafe {
            std::sync::atomic::AtomicU16::from_ptr(self.entries.as_ptr().add(14).cast())
                .store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `BufRing::register` with this layout; the ring
        // that registered it is closed (or the registration failed) by now.
        unsafe { std::alloc::dealloc(self.entries.as_ptr(), self.layout) }
    }
}

/// The receive ring: buffers of its own for multishot receives, each handed
/// back with [`Ring::recycle`].
struct RecvRing {
    ring: BufRing,
    /// The buffers themselves.
    mem: Box<[u8]>,
    size: usize,
    /// The `msghdr` every multishot recvmsg of this ring uses (only its name and
    /// control lengths matter): boxed so its address is stable.
    hdr: Box<libc::msghdr>,
}

impl RecvRing {
    /// Hands buffer `bid` (back) to the kernel.
    fn push(&mut self, bid: u16) {
        let addr = self.mem[usize::from(bid) * self.size..].as_mut_ptr();
        self.ring.push(addr, self.size as u32, bid);
    }
}

fn encode(slot: Slot, tag: u16) -> u64 {
    (u64::from(tag) << 32) | u64::from(slot)
}

fn decode(user_data: u64) -> (Slot, u16) {
    (user_data as u32, (user_data >> 32) as u16)
}

/// The user data of internal operations (cancellations) that name no slot.
const INTERNAL: u64 = u64::MAX;

impl Ring {
    /// A ring of `entries` submission entries with `slots` buffers of `slot_size`
    /// bytes each.
    pub fn new(entries: u32, slots: u32, slot_size: usize) -> io::Result<Ring> {
        let (ring, task_work) = build(entries)?;
        let total = (slots as usize).checked_mul(slot_size).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "io_uring buffer pool too large",
            )
        })?;
        let meta = (0..slots)
            // SAFETY: all-zero is a valid value of these plain C structs (null
            // pointers, zero lengths); each is filled in before the kernel sees it.
            .map(|_| unsafe { std::mem::zeroed::<Meta>() })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Ok(Ring {
            ring,
            mem: resident_zeroed(total),
            meta,
            busy: vec![false; slots as usize],
            slot_size,
            inflight: 0,
            recv_ring: None,
            read_ring: None,
            task_work,
        })
    }

    /// How this ring runs completion work.
    pub fn task_work(&self) -> TaskWork {
        self.task_work
    }

    /// Bytes per slot.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.busy.len() as u32
    }

    /// Operations submitted or queued whose completion has not been reaped.
    pub fn inflight(&self) -> usize {
        self.inflight
    }

    fn range(&self, slot: Slot) -> Range<usize> {
        let start = slot as usize * self.slot_size;
        start..start + self.slot_size
    }

    /// The memory of an idle slot.
    ///
    /// # Panics
    ///
    /// If the slot has an operation in flight (a bug in the caller's bookkeeping).
    pub fn buf(&self, slot: Slot) -> &[u8] {
        assert!(!self.busy[slot as usize], "slot {slot} is busy");
        &self.mem[self.range(slot)]
    }

    /// The memory of an idle slot, mutable.
    ///
    /// # Panics
    ///
    /// If the slot has an operation in flight (a bug in the caller's bookkeeping).
    pub fn buf_mut(&mut self, slot: Slot) -> &mut [u8] {
        assert!(!self.busy[slot as usize], "slot {slot} is busy");
        let r = self.range(slot);
        &mut self.mem[r]
    }

    /// The memory of two distinct idle slots: `src` to read, `dst` to write (e.g.
    /// to cut a packet in one into segments in the other).
    ///
    /// # Panics
    ///
    /// If either slot is busy, or they are the same slot.
    pub fn src_dst(&mut self, src: Slot, dst: Slot) -> (&[u8], &mut [u8]) {
        assert_ne!(src, dst, "src_dst needs two slots");
        assert!(!self.busy[src as usize], "slot {src} is busy");
        assert!(!self.busy[dst as usize], "slot {dst} is busy");
        let (a, b) = (self.range(src), self.range(dst));
        if a.start < b.start {
            let (lo, hi) = self.mem.split_at_mut(b.start);
            (&lo[a], &mut hi[..self.slot_size])
        } else {
            let (lo, hi) = self.mem.split_at_mut(a.start);
            (&hi[..self.slot_size], &mut lo[b])
        }
    }

    /// The source address of the datagram last received into `slot` by
    /// [`Ring::recv_from`], if it has an IP address.
    pub fn source(&self, slot: Slot) -> Option<SocketAddr> {
        let m = &self.meta[slot as usize];
        m.addr.decode_len(m.hdr.msg_namelen as usize)
    }

    /// The GRO segment size of the datagrams last received into `slot` by
    /// [`Ring::recv_from`], if the kernel coalesced them.
    pub fn segment(&self, slot: Slot) -> Option<u16> {
        let m = &self.meta[slot as usize];
        let len = m.hdr.msg_controllen.min(SPACE_INT);
        gro_segment(&m.ctrl.0[..len])
    }

    /// Claims an idle slot and returns the address range of `sub` inside it.
    fn claim(&mut self, slot: Slot, sub: Range<usize>) -> Result<(*mut u8, u32), SlotBusy> {
        let busy = self.busy.get_mut(slot as usize).ok_or(SlotBusy(slot))?;
        if *busy {
            return Err(SlotBusy(slot));
        }
        assert!(
            sub.start <= sub.end && sub.end <= self.slot_size,
            "range {sub:?} outside a {}-byte slot",
            self.slot_size
        );
        *busy = true;
        let base = slot as usize * self.slot_size + sub.start;
        // The pointer is into `mem`, which lives (unmoved) as long as the ring and
        // is freed only after every operation completed (see `Drop`).
        let ptr = self.mem[base..].as_mut_ptr();
        Ok((ptr, (sub.end - sub.start) as u32))
    }

    /// Queues an entry, submitting first if the submission ring is full.
    ///
    /// # Safety
    ///
    /// Every buffer and `msghdr` the entry points to must stay valid until its
    /// completion is reaped: callers pass only pointers into `self.mem` and
    /// `self.meta` of a slot they just claimed.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the caller guarantees the entry's pointers outlive the operation.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                self.inflight += 1;
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Reads from `fd` into `slot` at `offset` (to the slot's end).
    pub fn read(&mut self, fd: RawFd, slot: Slot, offset: usize, tag: u16) -> io::Result<()> {
        let (ptr, len) = self.claim(slot, offset..self.slot_size).map_err(busy_err)?;
        let e = opcode::Read::new(types::Fd(fd), ptr, len)
            .build()
            .user_data(encode(slot, tag));
        // SAFETY: `ptr` points into the claimed slot of `self.mem`.
        unsafe { self.push(&e) }
    }

    /// Writes `range` of `slot` to `fd`.
    pub fn write(
        &mut self,
        fd: RawFd,
        slot: Slot,
        range: Range<usize>,
        tag: u16,
    ) -> io::Result<()> {
        let (ptr, len) = self.claim(slot, range).map_err(busy_err)?;
        let e = opcode::Write::new(types::Fd(fd), ptr, len)
            .build()
            .user_data(encode(slot, tag));
        // SAFETY: `ptr` points into the claimed slot of `self.mem`.
        unsafe { self.push(&e) }
    }

    /// Sends `range` of `slot` to `dest` on socket `fd`: one datagram, or with
    /// `segment` a train of datagrams of that size (the last may be shorter) cut
    /// by the kernel (`UDP_SEGMENT`, Linux 4.18).
    pub fn send_to(
        &mut self,
        fd: RawFd,
        slot: Slot,
        range: Range<usize>,
        dest: SocketAddr,
        segment: Option<u16>,
        tag: u16,
    ) -> io::Result<()> {
        self.send_gather(fd, slot, &[range], dest, segment, tag)
    }

    /// Sends the `pieces` of `slot`, in order, as if they were one buffer: one
    /// datagram, or with `segment` a train the kernel cuts every `segment` bytes
    /// of the whole. A datagram may so be made of headers from one part of the
    /// slot and a payload left where it was read, without copying it together.
    /// At most [`GATHER_MAX`] pieces, each inside the slot.
    ///
    /// The whole slot stays busy until the completion is reaped: that is what
    /// keeps every piece, and the `iovec`s naming them, alive and unchanged while
    /// the kernel may read them.
    pub fn send_gather(
        &mut self,
        fd: RawFd,
        slot: Slot,
        pieces: &[Range<usize>],
        dest: SocketAddr,
        segment: Option<u16>,
        tag: u16,
    ) -> io::Result<()> {
        if pieces.len() > GATHER_MAX
            || pieces
                .iter()
                .any(|p| p.start > p.end || p.end > self.slot_size)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "gathered send: too many pieces, or a piece outside the slot",
            ));
        }
        let (base, _) = self.claim(slot, 0..self.slot_size).map_err(busy_err)?;
        let m = &mut self.meta[slot as usize];
        let (addr, addr_len) = RawSockAddr::encode(dest);
        m.addr = addr;
        for (iov, piece) in m.iov.iter_mut().zip(pieces) {
            *iov = libc::iovec {
                // In bounds: every piece was checked against the slot above.
                iov_base: base.wrapping_add(piece.start).cast(),
                iov_len: piece.len(),
            };
        }
        m.hdr.msg_name = m.addr.as_mut_ptr();
        m.hdr.msg_namelen = addr_len;
        m.hdr.msg_iov = m.iov.as_mut_ptr();
        m.hdr.msg_iovlen = pieces.len();
        match segment {
            Some(size) => {
                m.hdr.msg_controllen = m.ctrl.udp_segment(size);
                m.hdr.msg_control = (&raw mut m.ctrl).cast();
            }
            None => {
                m.hdr.msg_control = std::ptr::null_mut();
                m.hdr.msg_controllen = 0;
            }
        }
        let e = opcode::SendMsg::new(types::Fd(fd), &raw const m.hdr)
            .build()
            .user_data(encode(slot, tag));
        // SAFETY: the msghdr, iovecs and address live in `self.meta[slot]`, and
        // every piece lies in the claimed slot of `self.mem`; both stay unmoved and
        // untouched (the slot is busy) until the completion is reaped.
        unsafe { self.push(&e) }
    }

    /// Receives one datagram on socket `fd` into `slot` at `offset`; its source is
    /// then available from [`Ring::source`] and its GRO segment size from
    /// [`Ring::segment`].
    pub fn recv_from(&mut self, fd: RawFd, slot: Slot, offset: usize, tag: u16) -> io::Result<()> {
        let (ptr, len) = self.claim(slot, offset..self.slot_size).map_err(busy_err)?;
        let m = &mut self.meta[slot as usize];
        m.iov[0] = libc::iovec {
            iov_base: ptr.cast(),
            iov_len: len as usize,
        };
        m.hdr.msg_name = m.addr.as_mut_ptr();
        m.hdr.msg_namelen = SOCKADDR_MAX as u32;
        m.hdr.msg_iov = m.iov.as_mut_ptr();
        m.hdr.msg_iovlen = 1;
        m.hdr.msg_control = (&raw mut m.ctrl).cast();
        m.hdr.msg_controllen = SPACE_INT;
        m.hdr.msg_flags = 0;
        let e = opcode::RecvMsg::new(types::Fd(fd), &raw mut m.hdr)
            .build()
            .user_data(encode(slot, tag));
        // SAFETY: as for `send_to`: everything the kernel touches lives in
        // `self.meta[slot]` and the claimed slot of `self.mem`.
        unsafe { self.push(&e) }
    }

    /// Arms a multishot poll for readability of `fd`: a completion with `tag` each
    /// time it becomes readable, until one arrives with `more == false` (then arm
    /// again). `token` is reported as the completion's slot; it should lie past the
    /// buffer slots, as a poll uses no memory.
    pub fn poll_readable(&mut self, fd: RawFd, token: Slot, tag: u16) -> io::Result<()> {
        let e = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(encode(token, tag));
        // SAFETY: a poll references no memory.
        unsafe { self.push(&e) }
    }

    /// Registers a ring of `count` (a power of two) provided buffers of `size`
    /// bytes for [`Ring::recv_multi`]. Fails on kernels without buffer rings.
    pub fn enable_recv_ring(&mut self, count: u16, size: usize) -> io::Result<()> {
        // SAFETY: the receive ring is a field of this ring, dropped after the
        // io_uring is closed (field order, and `Drop for Ring` drains first).
        let ring = unsafe { BufRing::register(&self.ring, count, RECV_GROUP)? };
        // SAFETY: all-zero is a valid msghdr; the lengths are set right below.
        let mut hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        // Room for either family's address: the kernel reports the length it wrote.
        hdr.msg_namelen = SOCKADDR_MAX as u32;
        hdr.msg_controllen = SPACE_INT;
        let mut rr = RecvRing {
            ring,
            mem: resident_zeroed(usize::from(count) * size),
            size,
            hdr,
        };
        for bid in 0..count {
            rr.push(bid);
        }
        self.recv_ring = Some(rr);
        Ok(())
    }

    /// Registers the TUN read ring, which holds the slots lent to it
    /// ([`Ring::lend`]) for [`Ring::read_multi`]. Fails on kernels without
    /// buffer rings.
    pub fn enable_read_ring(&mut self) -> io::Result<()> {
        let count = u16::try_from(self.slots().next_power_of_two())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many slots"))?;
        // SAFETY: as for the receive ring: a field dropped after the io_uring.
        self.read_ring = Some(unsafe { BufRing::register(&self.ring, count, READ_GROUP)? });
        Ok(())
    }

    /// Lends idle `slot` to the TUN read ring: a multishot read may fill
    /// `range` of it. The slot stays busy until a completion reports it filled.
    pub fn lend(&mut self, slot: Slot, range: Range<usize>) -> io::Result<()> {
        let bid = u16::try_from(slot).map_err(|_| busy_err(SlotBusy(slot)))?;
        if self.read_ring.is_none() {
            return Err(io::Error::other("no read buffer ring"));
        }
        let (ptr, len) = self.claim(slot, range).map_err(busy_err)?;
        if let Some(r) = self.read_ring.as_mut() {
            r.push(ptr, len, bid);
        }
        Ok(())
    }

    /// Arms a multishot read of `fd` into the slots lent to the read ring: a
    /// completion with `tag` per read, its [`Completion::slot`] the slot filled,
    /// until one arrives with `more == false` (`-ENOBUFS` when no lent slot was
    /// left: lend more and arm again).
    pub fn read_multi(&mut self, fd: RawFd, tag: u16) -> io::Result<()> {
        if self.read_ring.is_none() {
            return Err(io::Error::other("no read buffer ring"));
        }
        let e = opcode::ReadMulti::new(types::Fd(fd), 0, READ_GROUP)
            .build()
            .user_data(encode(READ_MULTI_TOKEN, tag));
        // SAFETY: the kernel writes only into buffers of the read ring: slots
        // claimed (busy) by `lend` until the completion naming them is reaped,
        // in memory freed only after every operation has drained.
        unsafe { self.push(&e) }
    }

    /// Arms a multishot `recvmsg` on socket `fd` into the provided-buffer ring:
    /// a completion with `tag` and a [`Completion::buffer`] per datagram.
    pub fn recv_multi(&mut self, fd: RawFd, tag: u16) -> io::Result<()> {
        let br = self
            .recv_ring
            .as_ref()
            .ok_or_else(|| io::Error::other("no receive buffer ring"))?;
        let e = opcode::RecvMsgMulti::new(types::Fd(fd), &raw const *br.hdr, RECV_GROUP)
            .build()
            .user_data(encode(RECV_MULTI_TOKEN, tag));
        // SAFETY: the msghdr is boxed in the buffer ring, which outlives every
        // operation (see `enable_recv_ring`); the kernel writes only into buffers
        // of the registered ring.
        unsafe { self.push(&e) }
    }

    /// The datagram a multishot receive put into provided buffer `bid` (`len`
    /// bytes, the completion's result); `None` for a truncated datagram or a
    /// malformed buffer.
    pub fn received(&self, bid: u16, len: usize) -> Option<Datagram<'_>> {
        let br = self.recv_ring.as_ref()?;
        let start = usize::from(bid) * br.size;
        let buf = br.mem.get(start..start + len.min(br.size))?;
        let out = types::RecvMsgOut::parse(buf, &br.hdr).ok()?;
        if out.is_payload_truncated() || out.is_name_data_truncated() {
            return None;
        }
        let source = sockaddr::decode(out.name_data());
        let segment = gro_segment(out.control_data());
        let payload = out.payload_data();
        let offset = payload.as_ptr() as usize - buf.as_ptr() as usize;
        let len = payload.len();
        Some(Datagram {
            source,
            payload: buf.get(offset..offset + len)?,
            segment,
        })
    }

    /// Hands provided buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        if let Some(rr) = self.recv_ring.as_mut() {
            if bid < rr.ring.count {
                rr.push(bid);
            }
        }
    }

    /// Whether a completion is ready to reap, or the kernel has completion work
    /// pending that the next entry into it will post (`IORING_SQ_TASKRUN`). No
    /// syscall: both are read from the shared rings.
    pub fn has_work(&mut self) -> bool {
        !self.ring.completion().is_empty() || self.ring.submission().taskrun()
    }

    /// Submits everything queued and waits until at least `want` completions are
    /// ready (`EINTR` from a signal counts as a spurious wake-up, not an error).
    pub fn submit_and_wait(&mut self, want: usize) -> io::Result<()> {
        let entered = if want == 0 && self.task_work == TaskWork::Deferred {
            // Deferred work runs only in an entry that asks for events, and the
            // kernel may leave some of it pending without raising the TASKRUN
            // flag again (it runs a bounded amount per entry), so the crate's
            // test of that flag is not enough: always ask, wait for none.
            let queued = self.ring.submission().len() as u32;
            // SAFETY: no argument is passed (`None`); the entries submitted were
            // queued by `push`, whose callers keep what they name alive until
            // their completions are reaped.
            unsafe {
                self.ring
                    .submitter()
                    .enter::<libc::sigset_t>(queued, 0, ENTER_GETEVENTS, None)
            }
        } else {
            self.ring.submit_and_wait(want)
        };
        match entered {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Moves every ready completion into `out` (appending), marking their slots idle.
    pub fn reap(&mut self, out: &mut Vec<Completion>) {
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            let more = io_uring::cqueue::more(cqe.flags());
            if !more {
                // A multishot operation stays in flight until its last completion.
                self.inflight = self.inflight.saturating_sub(1);
            }
            if cqe.user_data() == INTERNAL {
                continue;
            }
            let (mut slot, tag) = decode(cqe.user_data());
            let buffer = io_uring::cqueue::buffer_select(cqe.flags());
            if slot == READ_MULTI_TOKEN {
                // A read names the lent slot it filled, which is idle again.
                if let Some(bid) = buffer {
                    slot = Slot::from(bid);
                    if let Some(b) = self.busy.get_mut(slot as usize) {
                        *b = false;
                    }
                }
            } else if !more {
                if let Some(b) = self.busy.get_mut(slot as usize) {
                    *b = false;
                }
            }
            out.push(Completion {
                slot,
                tag,
                result: cqe.result(),
                more,
                buffer,
            });
        }
    }

    /// Cancels every operation in flight and waits for all of them to complete.
    /// Returns false if they did not drain (the memory must then not be freed).
    fn drain(&mut self) -> bool {
        if self.inflight == 0 {
            return true;
        }
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(INTERNAL);
        // SAFETY: a cancellation references no memory.
        if unsafe { self.push(&cancel) }.is_err() {
            return false;
        }
        let mut sink = Vec::new();
        for _ in 0..1000 {
            if self.submit_and_wait(1).is_err() {
                return false;
            }
            self.reap(&mut sink);
            sink.clear();
            if self.inflight == 0 {
                return true;
            }
        }
        false
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if !self.drain() {
            // The kernel may still write into the slots and the receive
            // buffers, and read the buffer rings: never free any of them.
            std::mem::forget(std::mem::take(&mut self.mem));
            std::mem::forget(std::mem::take(&mut self.meta));
            std::mem::forget(self.recv_ring.take());
            std::mem::forget(self.read_ring.take());
        }
    }
}

fn busy_err(e: SlotBusy) -> io::Error {
    io::Error::other(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;

    /// The resident size, in KiB, of the mapping of this process holding `addr`.
    fn resident_kib_at(addr: usize) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line
                .split_whitespace()
                .next()
                .and_then(|r| r.split_once('-'))
                .and_then(|(lo, hi)| {
                    Some((
                        usize::from_str_radix(lo, 16).ok()?,
                        usize::from_str_radix(hi, 16).ok()?,
                    ))
                });
            if let Some((lo, hi)) = range {
                inside = (lo..hi).contains(&addr);
            } else if inside {
                if let Some(kib) = line.strip_prefix("Rss:") {
                    return kib.trim().trim_end_matches("kB").trim().parse().ok();
                }
            }
        }
        None
    }

    #[test]
    fn packet_memory_is_resident_from_the_start() {
        // 64 MiB: far above the allocator's mmap threshold, so the allocation is a
        // mapping of its own, and untouched it would be all zero page.
        let len = 64 << 20;
        let mem = resident_zeroed(len);
        assert!(mem.iter().step_by(PAGE).all(|&b| b == 0));
        let rss = resident_kib_at(mem.as_ptr() as usize).expect("mapping in smaps");
        assert!(
            rss >= (len / 1024) as u64,
            "only {rss} KiB of {len} bytes resident"
        );
    }

    #[test]
    fn user_data_round_trips() {
        assert_eq!(decode(encode(7, 3)), (7, 3));
        assert_eq!(
            decode(encode(u32::MAX - 1, u16::MAX)),
            (u32::MAX - 1, u16::MAX)
        );
        assert_ne!(encode(u32::MAX, u16::MAX), INTERNAL);
    }

    /// Collects `n` completions, failing the test instead of hanging.
    fn wait_for(ring: &mut Ring, n: usize) -> Vec<Completion> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut done = Vec::new();
        while done.len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "only {done:?} completed"
            );
            ring.submit_and_wait(0).expect("submit");
            ring.reap(&mut done);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        done
    }

    /// Unix datagram pairs: real sockets with no network traffic at all.
    #[test]
    fn receive_write_read_and_send_complete() {
        let features = Features::probe().expect("io_uring available");
        assert!(features.msg && features.read && features.poll);
        assert_eq!(features.missing(), None);
        let (tx, rx) = UnixDatagram::pair().expect("socketpair");
        let mut ring = Ring::new(16, 4, 2048).expect("ring");
        ring.recv_from(rx.as_raw_fd(), 0, 16, 1).expect("recv");
        let again = ring.recv_from(rx.as_raw_fd(), 0, 16, 1);
        assert!(again.is_err(), "a busy slot is refused");
        ring.buf_mut(1)[100..105].copy_from_slice(b"hello");
        ring.write(tx.as_raw_fd(), 1, 100..105, 2).expect("write");
        let done = wait_for(&mut ring, 2);
        assert!(done.iter().all(|c| c.result == 5 && !c.more), "{done:?}");
        assert_eq!(&ring.buf(0)[16..21], b"hello");

        ring.buf_mut(2)[..3].copy_from_slice(b"abc");
        ring.write(tx.as_raw_fd(), 2, 0..3, 3).expect("write");
        ring.read(rx.as_raw_fd(), 3, 8, 4).expect("read");
        let done = wait_for(&mut ring, 2);
        assert!(done.iter().all(|c| c.result == 3), "{done:?}");
        assert_eq!(&ring.buf(3)[8..11], b"abc");

        // sendmsg with an IPv4 destination on a unix socket: the kernel refuses it,
        // and the refusal arrives as a completion that frees the slot.
        let dest: SocketAddr = "192.0.2.2:8472".parse().expect("literal");
        ring.send_to(tx.as_raw_fd(), 1, 100..105, dest, Some(100), 5)
            .expect("send");
        let done = wait_for(&mut ring, 1);
        assert_eq!(done[0].result, -libc::EINVAL);
        assert_eq!(ring.inflight(), 0);
        let _ = ring.buf(1);
    }

    #[test]
    fn multishot_receive_into_recycled_provided_buffers() {
        let (tx, rx) = UnixDatagram::pair().expect("socketpair");
        let mut ring = Ring::new(16, 1, 64).expect("ring");
        ring.enable_recv_ring(4, 256)
            .expect("buffer ring (kernel 5.19+)");
        ring.recv_multi(rx.as_raw_fd(), 9).expect("recv_multi");
        // Ten datagrams through four buffers: only works if recycling works.
        for i in 0..10u8 {
            tx.send(&[i; 5]).expect("send");
            let done = wait_for(&mut ring, 1);
            let c = done[0];
            assert_eq!(
                (c.tag, c.slot, c.more),
                (9, RECV_MULTI_TOKEN, true),
                "{c:?}"
            );
            let bid = c.buffer.expect("a provided buffer");
            let d = ring.received(bid, c.result as usize).expect("parsed");
            assert_eq!(d.source, None, "a unix socket has no IP source");
            assert_eq!(d.payload, &[i; 5]);
            assert_eq!(d.segment, None);
            ring.recycle(bid);
        }
        assert!(ring.enable_recv_ring(3, 64).is_err(), "not a power of two");
    }

    #[test]
    fn multishot_read_into_lent_slots() {
        let features = Features::probe().expect("io_uring available");
        if !features.read_multi {
            eprintln!("skipped: this kernel has no IORING_OP_READ_MULTISHOT (Linux 6.7)");
            return;
        }
        let (tx, rx) = UnixDatagram::pair().expect("socketpair");
        let mut ring = Ring::new(16, 3, 256).expect("ring");
        ring.enable_read_ring().expect("read ring");
        ring.lend(0, 10..256).expect("lend");
        ring.lend(1, 10..256).expect("lend");
        assert!(ring.lend(1, 10..256).is_err(), "a lent slot is busy");
        ring.read_multi(rx.as_raw_fd(), 4).expect("read_multi");
        tx.send(b"one").expect("send");
        tx.send(b"two").expect("send");
        let done = wait_for(&mut ring, 2);
        let filled: Vec<_> = done
            .iter()
            .map(|c| (c.slot, c.tag, c.result, c.more))
            .collect();
        assert_eq!(
            filled,
            [(0, 4, 3, true), (1, 4, 3, true)],
            "in the order lent"
        );
        assert_eq!(&ring.buf(0)[10..13], b"one");
        assert_eq!(&ring.buf(1)[10..13], b"two");

        // No lent slot left: the read ends, and the datagram waits in the socket.
        tx.send(b"three").expect("send");
        let done = wait_for(&mut ring, 1);
        assert_eq!((done[0].result, done[0].more), (-libc::ENOBUFS, false));
        ring.lend(2, 0..256).expect("lend");
        ring.read_multi(rx.as_raw_fd(), 4).expect("read_multi");
        let done = wait_for(&mut ring, 1);
        assert_eq!((done[0].slot, done[0].result), (2, 5));
        assert_eq!(&ring.buf(2)[..5], b"three");
    }

    #[test]
    fn multishot_poll_stays_armed() {
        let (tx, rx) = UnixDatagram::pair().expect("socketpair");
        let mut ring = Ring::new(8, 1, 64).expect("ring");
        ring.poll_readable(rx.as_raw_fd(), 100, 7).expect("poll");
        tx.send(b"x").expect("send");
        let done = wait_for(&mut ring, 1);
        assert_eq!((done[0].slot, done[0].tag, done[0].more), (100, 7, true));
        assert_eq!(ring.inflight(), 1, "a multishot poll stays in flight");
    }

    #[test]
    fn drop_with_operations_in_flight_cancels_them() {
        let (_tx, rx) = UnixDatagram::pair().expect("socketpair");
        let mut ring = Ring::new(8, 2, 256).expect("ring");
        ring.recv_from(rx.as_raw_fd(), 0, 0, 1).expect("recv");
        ring.recv_from(rx.as_raw_fd(), 1, 0, 1).expect("recv");
        ring.submit_and_wait(0).expect("submit");
        assert_eq!(ring.inflight(), 2);
        drop(ring); // must return: both receives are cancelled and reaped
    }
}
