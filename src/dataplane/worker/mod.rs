//! One forwarding worker: a TUN queue, two UDP sockets and an io_uring, on one CPU.
//!
//! # The loop
//!
//! Socket I/O goes through io_uring: [`RX_SLOTS`] receives stay in flight on the
//! worker's socket in the receive group, and every datagram to a peer is a
//! `sendmsg` from the worker's own sending socket. The TUN queue is read by io_uring
//! too, where the kernel allows it (see `TunReads`): a multishot read fills the
//! free TX slots lent to the ring's read ring, in the kernel, so a burst of
//! packets costs no syscall per packet; a slot's packet leaves from where it was
//! read, and the slot is lent again once its send completes. On kernels before
//! 6.7 a multishot poll on the queue says when to read, and plain non-blocking
//! `read`s drain it. TUN writes are plain `writev`s (a merged super-packet is
//! gathered from the receive buffers, see `inbound`).
//!
//! Each turn of the loop: one `io_uring_enter` submits everything queued and waits
//! for at least one completion; the ready completions are reaped as one batch; the
//! table snapshot is loaded once for the batch; then
//!
//! ```text
//!  recvmsg done ─▶ sender lookup + decap in place ─▶ writev(TUN)
//!                  (after the batch's writes: buffer back, recvmsg again)
//!  sendmsg done ─▶ its slot is free again
//!  TUN read done ─▶ (or, polled: TUN readable ─▶ read(TUN) into free slots)
//!                  lookup + encap in place ─▶ sendmsg to the peer
//!                  no lease ─▶ ICMP unreachable written back to the TUN
//!  end of turn  ─▶ free slots lent to the read ring; the read re-armed if it ended
//! ```
//!
//! No packet is copied: a TUN read lands [`HEADROOM`] bytes into its slot, so the
//! vxlan headers are written in front of it; a received datagram is decapsulated
//! where it lies and the inner packet written to the TUN from the same memory.
//! Nothing is allocated per packet. Slots are 64 KiB so that the offload work
//! (TSO super-packets from an IFF_VNET_HDR TUN, GRO on the socket) fits without a
//! redesign.
//!
//! # Layout
//!
//! This module starts the thread and runs the loop (submit, reap, dispatch);
//! `outbound` is TUN → peers, `inbound` is peers → TUN, and [`slots`] is the
//! TX slot and batch arithmetic, pure and unit-tested.

mod inbound;
mod outbound;
pub mod slots;

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::encap::{Local, Tunnel};
use crate::sys::eventfd::EventFd;
use crate::sys::tun;
use crate::sys::uring::{Completion, Ring, Slot};
use crate::table::{Reader, Snapshot};

use super::icmp::Gateways;
use super::offload::{Coalescer, DEFAULT_FLOWS};
use super::route::Underlays;
use super::stats::{Counter, Stats};
use super::Offload;
use outbound::{IcmpBudget, ICMP_PER_SECOND};
use slots::{Batch, Op, TxSlots};

/// Packet slots for the TUN → peer direction (reads awaiting their send).
///
/// Sized by what is in flight, not by the worst case: a send is tried when the
/// loop next enters the kernel and nearly always completes there, so a slot is
/// busy for one turn of the loop; a turn reads at most this many packets (a
/// super-packet, or a GSO batch of small ones, per slot) before it submits.
/// `scripts/bench-overlay.sh` measured 16 (and 16 receive buffers) against 64
/// (and 256): the same throughput, with 2.3 MiB per worker instead of 21 MiB
/// (`scripts/bench-memory.sh`).
pub const TX_SLOTS: u32 = 16;
/// In-flight socket receives per worker (kernels without buffer rings).
pub const RX_SLOTS: u32 = 16;
/// Free bytes in front of every packet read from the TUN: room for its
/// `virtio_net_hdr` and then the vxlan headers.
pub const HEADROOM: usize = 64;
/// Where a slot's packet area ends: the headroom and a 64 KiB packet.
pub const PACKET_AREA: usize = HEADROOM + 65_536;
/// Most segments of one super-packet sent gathered from its slot: one send's
/// [`GATHER_MAX`](crate::sys::uring::GATHER_MAX) pieces, two per segment.
pub const GATHER_SEGMENTS: usize = crate::sys::uring::GATHER_MAX / 2;
/// Most bytes of headers one gathered segment needs: the vxlan headers, an IPv4
/// header with options (IPv6 without extension headers is shorter) and a TCP
/// header with options.
pub const SEGMENT_HEADERS_MAX: usize = crate::encap::VXLAN_HEADERS_LEN + 60 + 60;
/// Bytes per slot: the packet area, then room for the headers of every segment
/// of a gathered send.
pub const SLOT_SIZE: usize = PACKET_AREA + GATHER_SEGMENTS * SEGMENT_HEADERS_MAX;
// Every segment one `UDP_SEGMENT` send may carry has its two pieces.
const _: () = assert!(GATHER_SEGMENTS >= slots::GSO_MAX_SEGMENTS);
/// Provided buffers for multishot receives (a power of two).
///
/// Every buffer is handed back at the end of the loop turn that received into
/// it, so these hold one turn's datagrams or GRO trains (16 trains are 1 MiB);
/// when they run out the kernel keeps the rest in the socket's receive buffer
/// and the receive is re-armed (counted as `recv_ring_empty`), nothing is lost.
const RECV_RING_BUFFERS: u16 = 16;
/// Bytes per provided buffer: the recvmsg header, source address and control
/// message, then a datagram (or a GRO train) of up to 64 KiB.
const RECV_RING_BUFFER_SIZE: usize = 65_536 + 128;
// A batch's receives fit what the coalescer's frames may name at once.
const _: () = assert!(RX_SLOTS as usize <= inbound::HELD_MAX);
const _: () = assert!(RECV_RING_BUFFERS as usize <= inbound::HELD_MAX);

/// Everything one worker owns.
pub struct WorkerParams {
    /// Worker number (for logs).
    pub index: usize,
    /// CPU to pin the thread to, if any.
    pub cpu: Option<usize>,
    /// This worker's TUN queue.
    pub tun: OwnedFd,
    /// This worker's socket in the receive group on the backend port.
    pub rx: UdpSocket,
    /// This worker's sending socket.
    pub tx: UdpSocket,
    /// The tunnel format.
    pub tunnel: Tunnel,
    /// The UDP port peers listen on.
    pub port: u16,
    /// Our lease, VNI and VTEP MAC.
    pub local: Local,
    /// Our overlay addresses: the sources of ICMP errors.
    pub gateways: Gateways,
    /// The underlay families we tunnel over; the sockets are IPv6 when it
    /// includes IPv6.
    pub underlays: Underlays,
    /// The subnet table.
    pub table: Reader,
    /// This worker's counters.
    pub stats: Arc<Stats>,
    /// Signalled to stop the worker.
    pub stop: Arc<EventFd>,
    /// Receive with multishot recvmsg into a provided-buffer ring (the kernel
    /// has one, see [`crate::sys::uring::Features`]).
    pub multishot: bool,
    /// Read the TUN queue with a multishot io_uring read into lent TX slots
    /// (the kernel has `IORING_OP_READ_MULTISHOT`); otherwise poll and `read`.
    pub tun_read_multi: bool,
    /// The offloads in use; the TUN queue was opened with `IFF_VNET_HDR` exactly
    /// when [`Offload::vnet_hdr`] says so.
    pub offload: Offload,
    /// The TUN device's MTU.
    pub mtu: u32,
    /// How long a worker with recent traffic spins before it sleeps (zero: never).
    pub busy_poll: Duration,
}

struct Worker {
    // Field order matters: the ring is dropped first, and its drop drains every
    // operation in flight, before the sockets and the TUN queue close.
    index: usize,
    ring: Ring,
    tun: OwnedFd,
    rx: UdpSocket,
    tx: UdpSocket,
    /// Kept for the read of it that is in flight.
    stop: Arc<EventFd>,
    poll_token: Slot,
    tunnel: Tunnel,
    port: u16,
    local: Local,
    gateways: Gateways,
    underlays: Underlays,
    stats: Arc<Stats>,
    icmp: IcmpBudget,
    offload: Offload,
    coalescer: Option<Coalescer>,
    /// The TX slots: which are free, and the datagrams each one's send carries.
    tx_slots: TxSlots,
    /// Plain packets read in this pass, waiting to leave together.
    batch: Option<Batch>,
    /// How the TUN queue is read, and where that stands.
    tun_reads: TunReads,
    spin: Spin,
}

/// How a worker reads its TUN queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TunReads {
    /// A multishot poll says when the queue is readable; plain `read`s into
    /// free slots then drain it (kernels before 6.7).
    Polled {
        /// The queue may hold packets not read yet.
        readable: bool,
    },
    /// A multishot io_uring read fills the free slots lent to the ring's read
    /// ring, in the kernel, without a syscall per packet; each slot is lent
    /// again once its packet has left.
    Multishot {
        /// The read is in flight (it ends when it finds no lent slot).
        armed: bool,
        /// Slots lent and not yet filled.
        lent: usize,
    },
}

/// Runs a worker until its stop event fires. Errors are setup failures or a
/// broken ring; per-packet problems are counted, never returned.
pub fn run(p: WorkerParams) -> io::Result<()> {
    if let Some(cpu) = p.cpu {
        if let Err(e) = crate::sys::cpu::pin_current_thread(cpu) {
            tracing::warn!(worker = p.index, cpu, "cannot pin worker thread: {e}");
        }
    }
    tun::set_nonblocking(p.tun.as_fd())?;
    // Receive slots only where the kernel lacks buffer rings: multishot recvmsg
    // receives into the provided-buffer ring instead.
    let rx_slots = if p.multishot { 0 } else { RX_SLOTS };
    let stop_slot = TX_SLOTS + rx_slots;
    let ring = Ring::new(1024, stop_slot + 1, SLOT_SIZE)?;
    let (index, cpu, multishot, table) = (p.index, p.cpu, p.multishot, p.table);
    let mut w = Worker {
        index,
        ring,
        tun: p.tun,
        rx: p.rx,
        tx: p.tx,
        stop: p.stop,
        poll_token: stop_slot + 1,
        tunnel: p.tunnel,
        port: p.port,
        local: p.local,
        gateways: p.gateways,
        underlays: p.underlays,
        stats: p.stats,
        icmp: IcmpBudget {
            window: Instant::now(),
            left: ICMP_PER_SECOND,
        },
        offload: p.offload,
        coalescer: p
            .offload
            .gro
            .then(|| Coalescer::with_mtu(DEFAULT_FLOWS, p.mtu as usize)),
        tx_slots: TxSlots::new(TX_SLOTS),
        batch: None,
        tun_reads: if p.tun_read_multi {
            TunReads::Multishot {
                armed: false,
                lent: 0,
            }
        } else {
            TunReads::Polled { readable: true }
        },
        spin: Spin::new(p.busy_poll),
    };
    w.arm(multishot, stop_slot)?;
    // Set up: from here on only file descriptors already open are used, so the
    // thread gives up every capability (they are per thread; see `privilege`).
    if let Err(e) = crate::sys::caps::restrict_thread(crate::sys::caps::CapSet::EMPTY) {
        tracing::error!(worker = index, "cannot drop the worker's capabilities: {e}");
    }
    tracing::debug!(worker = index, cpu = ?cpu, offload = %w.offload, "worker running");
    w.serve(table)
}

impl Worker {
    /// Queues the operations that stay armed: the receives, the read of the stop
    /// event and the poll on the TUN queue.
    fn arm(&mut self, multishot: bool, stop_slot: Slot) -> io::Result<()> {
        let rx = self.rx.as_raw_fd();
        if multishot {
            self.ring
                .enable_recv_ring(RECV_RING_BUFFERS, RECV_RING_BUFFER_SIZE)?;
            self.ring.recv_multi(rx, Op::RecvMulti.tag())?;
        } else {
            for s in TX_SLOTS..stop_slot {
                self.ring.recv_from(rx, s, HEADROOM, Op::Recv.tag())?;
            }
        }
        self.ring
            .read(self.stop.as_fd().as_raw_fd(), stop_slot, 0, Op::Stop.tag())?;
        match self.tun_reads {
            TunReads::Polled { .. } => self.arm_tun_poll(),
            TunReads::Multishot { .. } => {
                self.ring.enable_read_ring()?;
                self.lend_free_slots()
            }
        }
    }

    /// The loop: submit and wait, reap a batch, load the table once for it, handle
    /// the receives, then the other completions, then read the TUN queue.
    fn serve(&mut self, mut table: Reader) -> io::Result<()> {
        let mut done: Vec<Completion> = Vec::with_capacity(1024);
        // The generation of the table the last batch used: a newer one is counted,
        // so the counters show that tables changed under traffic (and the drop
        // counters whether that cost any packet).
        let mut generation = table.snapshot().generation();
        loop {
            // Wait only when there is nothing left to read from the TUN; otherwise
            // just submit and collect what is ready. A multishot read reads in
            // the kernel: its packets arrive as completions.
            let starved = self.tx_slots.free() < slots::reserve(self.offload.tso);
            let mut want = match self.tun_reads {
                TunReads::Polled { readable } => usize::from(!readable || starved),
                TunReads::Multishot { .. } => 1,
            };
            if want == 1 && self.spin.worth_it(Instant::now()) {
                // Submit what is queued, then spin a while for the next
                // completion instead of sleeping into a wake-up.
                self.ring.submit_and_wait(0)?;
                if self.spin.until_work(&mut self.ring) {
                    want = 0;
                }
            }
            self.ring.submit_and_wait(want)?;
            done.clear();
            self.ring.reap(&mut done);
            let snapshot = table.snapshot();
            if snapshot.generation() != generation {
                generation = snapshot.generation();
                self.stats.add(Counter::TableUpdatesSeen, 1);
            }
            let now = Instant::now();
            if !done.is_empty() {
                self.spin.saw_work(now);
            }
            self.receive_all(snapshot, &done)?;
            if self.complete(snapshot, &done, now)? == Flow::Stop {
                tracing::debug!(worker = self.index, "worker stopping");
                // Dropping the ring cancels and drains every operation in flight
                // before the slots are freed.
                return Ok(());
            }
            match self.tun_reads {
                TunReads::Polled { readable: true } => self.drain_tun(snapshot, now),
                TunReads::Polled { readable: false } => {}
                TunReads::Multishot { .. } => {
                    self.flush_batch();
                    self.lend_free_slots()?;
                }
            }
        }
    }

    /// Arms the multishot poll that says when the TUN queue is readable.
    fn arm_tun_poll(&mut self) -> io::Result<()> {
        let tun = self.tun.as_raw_fd();
        self.ring
            .poll_readable(tun, self.poll_token, Op::TunPoll.tag())
    }

    /// Handles the completions other than receives: sends, TUN reads, the TUN
    /// poll, stop.
    fn complete(
        &mut self,
        snapshot: &Snapshot,
        done: &[Completion],
        now: Instant,
    ) -> io::Result<Flow> {
        for c in done {
            match Op::from_tag(c.tag) {
                Some(Op::Send) => self.on_send(c),
                Some(Op::TunRead) => self.on_tun_read(snapshot, c, now)?,
                Some(Op::TunPoll) => {
                    self.tun_reads = TunReads::Polled { readable: true };
                    if !c.more {
                        self.arm_tun_poll()?;
                    }
                }
                Some(Op::Stop) => return Ok(Flow::Stop),
                Some(Op::Recv | Op::RecvMulti) | None => {}
            }
        }
        Ok(Flow::Continue)
    }
}

/// The bounded, adaptive spin before a worker sleeps (`--busy-poll`).
///
/// Sleeping in `io_uring_enter` costs a wake-up when the next packet arrives: the
/// scheduler has to run the worker again, possibly on a CPU that went idle. With
/// traffic flowing, the next completion is usually microseconds away, so the
/// worker first spins for up to `budget`, watching the completion queue and the
/// ring's pending-task-work flag (`IORING_SQ_TASKRUN`: a receive or the TUN
/// poll has completed in the kernel but not yet been posted; entering the kernel
/// posts it). It spins only while traffic is recent ([`IDLE_AFTER`]), so an idle
/// node sleeps at once and costs no CPU.
struct Spin {
    budget: Duration,
    last_work: Option<Instant>,
}

/// Without a completion for this long, a worker sleeps without spinning.
const IDLE_AFTER: Duration = Duration::from_millis(10);

impl Spin {
    fn new(budget: Duration) -> Spin {
        Spin {
            budget,
            last_work: None,
        }
    }

    /// Records that a batch brought completions.
    fn saw_work(&mut self, now: Instant) {
        self.last_work = Some(now);
    }

    /// Whether to spin now: a budget is set and traffic is recent.
    fn worth_it(&self, now: Instant) -> bool {
        !self.budget.is_zero()
            && self
                .last_work
                .is_some_and(|t| now.saturating_duration_since(t) < IDLE_AFTER)
    }

    /// Spins until the ring has work or the budget is spent; returns whether it
    /// has work (then the caller must not wait).
    fn until_work(&self, ring: &mut Ring) -> bool {
        let deadline = Instant::now() + self.budget;
        loop {
            if ring.has_work() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::hint::spin_loop();
        }
    }
}

/// Whether the loop goes on after a batch of completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_only_with_a_budget_and_recent_traffic() {
        let t0 = Instant::now();
        let mut off = Spin::new(Duration::ZERO);
        off.saw_work(t0);
        assert!(!off.worth_it(t0), "--busy-poll 0 never spins");

        let mut spin = Spin::new(Duration::from_micros(50));
        assert!(
            !spin.worth_it(t0),
            "no traffic yet: an idle node sleeps at once"
        );
        spin.saw_work(t0);
        assert!(spin.worth_it(t0 + Duration::from_millis(1)));
        assert!(!spin.worth_it(t0 + IDLE_AFTER), "traffic stopped: sleep");
    }
}
