//! One forwarding worker: a TUN queue, two UDP sockets and an io_uring, on one CPU.
//!
//! # The loop
//!
//! Socket I/O goes through io_uring: [`RX_SLOTS`] receives stay in flight on the
//! worker's socket in the receive group, and every datagram to a peer is a
//! `sendmsg` from the worker's own sending socket. The TUN queue is watched by a
//! multishot io_uring poll and read and written with plain non-blocking syscalls,
//! because the kernel's TUN file does not support io_uring's non-blocking attempt
//! and would cost a kernel-thread hop per packet (see [`crate::sys::tun`]).
//!
//! Each turn of the loop: one `io_uring_enter` submits everything queued and waits
//! for at least one completion; the ready completions are reaped as one batch; the
//! table snapshot is loaded once for the batch; then
//!
//! ```text
//!  recvmsg done ─▶ sender lookup + decap in place ─▶ write(TUN) ─▶ recvmsg again
//!  sendmsg done ─▶ its slot is free again
//!  TUN readable ─▶ read(TUN) into free slots until empty (or none is free):
//!                  lookup + encap in place ─▶ sendmsg to the peer
//!                  no lease ─▶ ICMP unreachable written back to the TUN
//! ```
//!
//! No packet is copied: a TUN read lands [`HEADROOM`] bytes into its slot, so the
//! vxlan headers are written in front of it; a received datagram is decapsulated
//! where it lies and the inner packet written to the TUN from the same memory.
//! Nothing is allocated per packet. Slots are 64 KiB so that the offload work
//! (TSO super-packets from an IFF_VNET_HDR TUN, GRO on the socket) fits without a
//! redesign.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use crate::drop_reason::DropReason;
use crate::encap::{self, Local, Tunnel, VxlanHeader};
use crate::sys::eventfd::EventFd;
use crate::sys::uring::{Completion, Datagram, Ring, Slot};
use crate::sys::{socket, tun};
use crate::table::{Reader, Snapshot};
use crate::wire::virtio;

use super::icmp;
use super::offload::{complete_checksum, Coalescer, Split};
use super::stats::{Counter, Stats};
use super::Offload;

/// Packet slots for the TUN → peer direction (reads awaiting their send).
pub const TX_SLOTS: u32 = 64;
/// In-flight socket receives per worker.
pub const RX_SLOTS: u32 = 64;
/// Bytes per slot: a 64 KiB packet plus headroom.
pub const SLOT_SIZE: usize = HEADROOM + 65_536;
/// Free bytes in front of every packet read from the TUN: room for its
/// `virtio_net_hdr` and then the vxlan headers.
pub const HEADROOM: usize = 64;
/// ICMP errors each worker may write back per second (the kernel's default
/// `icmp_ratelimit` allows about a thousand per second per host).
const ICMP_PER_SECOND: u32 = 500;
/// Most bytes one segmented send may carry: the UDP payload of a 64 KiB IPv4
/// datagram.
const GSO_MAX_BYTES: usize = 65_535 - 20 - 8;
/// Most datagrams one segmented send may carry (`UDP_MAX_SEGMENTS` of older
/// kernels; newer ones allow more).
const GSO_MAX_SEGMENTS: usize = 64;
/// The `virtio_net_hdr` of a packet that needs nothing done.
const PLAIN_VNET_HDR: [u8; virtio::HEADER_LEN] = [0; virtio::HEADER_LEN];

const TAG_SEND: u16 = 2;
const TAG_RECV: u16 = 3;
const TAG_TUN_POLL: u16 = 5;
const TAG_RECV_MULTI: u16 = 7;
/// Provided buffers for multishot receives (a power of two).
const RECV_RING_BUFFERS: u16 = 256;
/// Bytes per provided buffer: the recvmsg header, source address and control
/// message, then a datagram (or a GRO train) of up to 64 KiB.
const RECV_RING_BUFFER_SIZE: usize = 65_536 + 128;
const TAG_STOP: u16 = 6;

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
    /// Our overlay address: the source of ICMP errors.
    pub gateway: Ipv4Addr,
    /// The subnet table.
    pub table: Reader,
    /// This worker's counters.
    pub stats: Arc<Stats>,
    /// Signalled to stop the worker.
    pub stop: Arc<EventFd>,
    /// Receive with multishot recvmsg into a provided-buffer ring (the kernel
    /// has one, see [`crate::sys::uring::Features`]).
    pub multishot: bool,
    /// The offloads in use; the TUN queue was opened with `IFF_VNET_HDR` exactly
    /// when [`Offload::vnet_hdr`] says so.
    pub offload: Offload,
}

/// A simple per-second budget for ICMP errors.
struct IcmpBudget {
    window: Instant,
    left: u32,
}

impl IcmpBudget {
    fn take(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window).as_secs() >= 1 {
            self.window = now;
            self.left = ICMP_PER_SECOND;
        }
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }
}

/// Writing to the TUN queue, with or without a `virtio_net_hdr` in front.
struct TunOut<'a> {
    fd: BorrowedFd<'a>,
    stats: &'a Stats,
    vnet: bool,
}

impl TunOut<'_> {
    /// Writes one plain packet.
    #[inline]
    fn write(&self, packet: &[u8]) {
        let written = if self.vnet {
            tun::write_with_header(self.fd, &PLAIN_VNET_HDR, packet)
        } else {
            tun::write_packet(self.fd, packet)
        };
        self.count(written, 1);
    }

    /// Writes a buffer that starts with its own `virtio_net_hdr` (from the
    /// coalescer).
    #[inline]
    fn write_framed(&self, framed: &[u8]) {
        let merged = framed.get(1).is_some_and(|&gso| gso & 0x7f != 0);
        if merged {
            self.stats.add(Counter::CoalescedWrites, 1);
        }
        self.count(tun::write_packet(self.fd, framed), 1);
    }

    #[inline]
    fn count(&self, written: io::Result<usize>, packets: u64) {
        match written {
            Ok(n) => {
                self.stats.add(Counter::TunTxPackets, packets);
                self.stats.add(Counter::TunTxBytes, n as u64);
            }
            Err(_) => self.stats.add(Counter::TunWriteErrors, 1),
        }
    }
}

/// The inbound half of a worker: what decapsulation and the TUN write need.
struct Inbound<'a> {
    out: TunOut<'a>,
    tunnel: Tunnel,
    local: &'a Local,
    snapshot: &'a Snapshot,
    coalescer: Option<&'a mut Coalescer>,
}

impl Inbound<'_> {
    /// Handles one receive: a datagram, or a GRO train of datagrams of `segment`
    /// bytes each (the last may be shorter).
    #[inline]
    fn receive(&mut self, d: Datagram<'_>) {
        let Some(source) = d.source else {
            self.out.stats.count_drop(DropReason::UnknownSender);
            return;
        };
        match d.segment {
            Some(size) if usize::from(size) < d.payload.len() => {
                self.out.stats.add(Counter::GroReceives, 1);
                for datagram in d.payload.chunks(usize::from(size)) {
                    self.deliver(source, datagram);
                }
            }
            _ => self.deliver(source, d.payload),
        }
    }

    /// Decapsulates one datagram and writes (or hands the coalescer) the inner
    /// packet, or counts why not.
    #[inline]
    fn deliver(&mut self, source: SocketAddrV4, payload: &[u8]) {
        let stats = self.out.stats;
        stats.add(Counter::TunnelRxPackets, 1);
        stats.add(Counter::TunnelRxBytes, payload.len() as u64);
        let sender = self
            .snapshot
            .by_public_ip(IpAddr::V4(*source.ip()))
            .map(|p| &p.key);
        let inner = match self.tunnel {
            Tunnel::Udp => encap::decap_udp(payload, self.local, sender),
            Tunnel::Vxlan => encap::decap_vxlan(payload, self.local, sender),
        };
        let r = match inner {
            Ok(r) => r,
            Err(reason) => return stats.count_drop(reason),
        };
        stats.peers.received(*source.ip(), payload.len() as u64);
        match self.coalescer.as_deref_mut() {
            Some(c) => {
                let out = &self.out;
                c.push(&payload[r], &mut |framed: &[u8]| out.write_framed(framed));
            }
            None => self.out.write(&payload[r]),
        }
    }

    /// Writes out whatever the coalescer holds (at the end of every batch).
    fn flush(&mut self) {
        if let Some(c) = self.coalescer.as_deref_mut() {
            let out = &self.out;
            c.flush(&mut |framed: &[u8]| out.write_framed(framed));
        }
    }
}

struct Worker {
    index: usize,
    ring: Ring,
    tun: OwnedFd,
    rx: RawFd,
    tx: UdpSocket,
    tunnel: Tunnel,
    port: u16,
    local: Local,
    gateway: Ipv4Addr,
    stats: Arc<Stats>,
    icmp: IcmpBudget,
    offload: Offload,
    coalescer: Option<Coalescer>,
    /// TX slots with no operation in flight.
    free: Vec<Slot>,
    /// Datagrams each TX slot's send carries.
    datagrams: Vec<u32>,
    /// Plain packets read in this pass, waiting to leave together.
    batch: Option<Batch>,
    /// The TUN queue may hold packets not read yet.
    readable: bool,
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
    let poll_token = stop_slot + 1;
    let ring = Ring::new(1024, stop_slot + 1, SLOT_SIZE)?;
    let mut w = Worker {
        index: p.index,
        ring,
        rx: p.rx.as_raw_fd(),
        tx: p.tx,
        tun: p.tun,
        tunnel: p.tunnel,
        port: p.port,
        local: p.local,
        gateway: p.gateway,
        stats: p.stats,
        icmp: IcmpBudget {
            window: Instant::now(),
            left: ICMP_PER_SECOND,
        },
        offload: p.offload,
        coalescer: p.offload.gro.then(Coalescer::new),
        free: (0..TX_SLOTS).rev().collect(),
        datagrams: vec![1; TX_SLOTS as usize],
        batch: None,
        readable: true,
    };
    let mut table = p.table;
    if p.multishot {
        w.ring
            .enable_recv_ring(RECV_RING_BUFFERS, RECV_RING_BUFFER_SIZE)?;
        w.ring.recv_multi(w.rx, TAG_RECV_MULTI)?;
    } else {
        for s in TX_SLOTS..stop_slot {
            w.ring.recv_from(w.rx, s, HEADROOM, TAG_RECV)?;
        }
    }
    w.ring
        .read(p.stop.as_fd().as_raw_fd(), stop_slot, 0, TAG_STOP)?;
    w.ring
        .poll_readable(w.tun.as_raw_fd(), poll_token, TAG_TUN_POLL)?;
    // Set up: from here on only file descriptors already open are used, so the
    // thread gives up every capability (they are per thread; see `privilege`).
    if let Err(e) = crate::sys::caps::restrict_thread(crate::sys::caps::CapSet::EMPTY) {
        tracing::error!(
            worker = p.index,
            "cannot drop the worker's capabilities: {e}"
        );
    }
    tracing::debug!(worker = p.index, cpu = ?p.cpu, offload = %p.offload, "worker running");

    let mut done: Vec<Completion> = Vec::with_capacity(1024);
    // The generation of the table the last batch used: a newer one is counted, so
    // the counters show that tables changed under traffic (and the drop counters
    // whether that cost any packet).
    let mut generation = table.snapshot().generation();
    loop {
        // Wait only when there is nothing left to read from the TUN; otherwise
        // just submit and collect what is ready.
        let want = usize::from(!w.readable || w.free.len() < w.tun_reserve());
        w.ring.submit_and_wait(want)?;
        done.clear();
        w.ring.reap(&mut done);
        let snapshot = table.snapshot();
        if snapshot.generation() != generation {
            generation = snapshot.generation();
            w.stats.add(Counter::TableUpdatesSeen, 1);
        }
        let now = Instant::now();
        {
            let Worker {
                ring,
                tun,
                stats,
                tunnel,
                local,
                coalescer,
                rx,
                offload,
                ..
            } = &mut w;
            let mut inbound = Inbound {
                out: TunOut {
                    fd: tun.as_fd(),
                    stats,
                    vnet: offload.vnet_hdr(),
                },
                tunnel: *tunnel,
                local,
                snapshot,
                coalescer: coalescer.as_mut(),
            };
            for c in &done {
                match c.tag {
                    TAG_RECV => on_recv(ring, &mut inbound, *rx, c)?,
                    TAG_RECV_MULTI => on_recv_multi(ring, &mut inbound, *rx, c)?,
                    _ => {}
                }
            }
            inbound.flush();
        }
        for c in &done {
            match c.tag {
                TAG_SEND => w.on_send(c),
                TAG_TUN_POLL => {
                    w.readable = true;
                    if !c.more {
                        w.ring
                            .poll_readable(w.tun.as_raw_fd(), poll_token, TAG_TUN_POLL)?;
                    }
                }
                TAG_STOP => {
                    tracing::debug!(worker = p.index, "worker stopping");
                    // Dropping the ring cancels and drains every operation in
                    // flight before the slots are freed.
                    return Ok(());
                }
                _ => {}
            }
        }
        if w.readable {
            w.drain_tun(snapshot, now)?;
        }
    }
}

/// What a failed multishot receive (`result` < 0) counts as. `ENOBUFS`: every
/// provided buffer was in use, and the kernel ended the receive before taking a
/// datagram, so nothing was lost (a flood of small datagrams does this); the
/// caller re-arms. Anything else is an error.
fn recv_failure(result: i32) -> Counter {
    if result == -libc::ENOBUFS {
        Counter::RecvRingEmpty
    } else {
        Counter::RecvErrors
    }
}

fn on_recv_multi(
    ring: &mut Ring,
    inbound: &mut Inbound<'_>,
    rx: RawFd,
    c: &Completion,
) -> io::Result<()> {
    if c.result < 0 {
        inbound.out.stats.add(recv_failure(c.result), 1);
    } else if let Some(bid) = c.buffer {
        match ring.received(bid, c.result as usize) {
            Some(d) => inbound.receive(d),
            None => inbound.out.stats.count_drop(DropReason::Truncated),
        }
        ring.recycle(bid);
    }
    if !c.more {
        ring.recv_multi(rx, TAG_RECV_MULTI)?;
    }
    Ok(())
}

fn on_recv(
    ring: &mut Ring,
    inbound: &mut Inbound<'_>,
    rx: RawFd,
    c: &Completion,
) -> io::Result<()> {
    if c.result < 0 {
        inbound.out.stats.add(Counter::RecvErrors, 1);
        return ring.recv_from(rx, c.slot, HEADROOM, TAG_RECV);
    }
    let n = c.result as usize;
    let d = Datagram {
        source: Some(ring.source(c.slot)),
        payload: &ring.buf(c.slot)[HEADROOM..HEADROOM + n],
        segment: ring.segment(c.slot),
    };
    inbound.receive(d);
    ring.recv_from(rx, c.slot, HEADROOM, TAG_RECV)
}

/// Why a packet to `dst` found no lease: a multicast destination (the kernel's own
/// MLD or IGMP reports on the TUN; no lease ever covers one) or a unicast miss.
/// Only reached on a miss, so forwarding pays nothing for it.
#[inline]
fn miss(dst: IpAddr) -> DropReason {
    if dst.is_multicast() {
        DropReason::MulticastDestination
    } else {
        DropReason::NoLease
    }
}

/// The destination address of an IP packet, if its header is long enough to hold one.
#[inline]
fn destination(packet: &[u8]) -> Result<IpAddr, DropReason> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => packet
            .get(16..20)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(IpAddr::from)
            .ok_or(DropReason::IpTruncated),
        Some(6) => packet
            .get(24..40)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map(IpAddr::from)
            .ok_or(DropReason::IpTruncated),
        Some(_) => Err(DropReason::IpVersion),
        None => Err(DropReason::IpTruncated),
    }
}

/// Datagrams of one size for one peer, gathered in one slot from consecutive TUN
/// reads, to leave in one `UDP_SEGMENT` send.
#[derive(Debug, Clone, Copy)]
struct Batch {
    slot: Slot,
    dest: SocketAddrV4,
    /// Where the first datagram starts in the slot.
    start: usize,
    /// Where the next one would start.
    end: usize,
    /// Bytes per datagram.
    size: usize,
    count: usize,
}

/// Where an outbound packet goes: the peer's address and, for vxlan, the headers.
struct Route {
    dest: SocketAddrV4,
    vxlan: Option<VxlanHeader>,
}

impl Worker {
    fn tun_out(&self) -> TunOut<'_> {
        TunOut {
            fd: self.tun.as_fd(),
            stats: &self.stats,
            vnet: self.offload.vnet_hdr(),
        }
    }

    /// Free slots a TUN read needs: its own, and with TSO the two that a 64 KiB
    /// super-packet's segments take at most.
    fn tun_reserve(&self) -> usize {
        if self.offload.tso {
            3
        } else {
            1
        }
    }

    /// Reads packets from the TUN queue into free slots until it is empty or no
    /// slot is free, forwarding each.
    fn drain_tun(&mut self, snapshot: &Snapshot, now: Instant) -> io::Result<()> {
        let vnet = if self.offload.vnet_hdr() {
            virtio::HEADER_LEN
        } else {
            0
        };
        let result = self.drain_tun_batched(snapshot, now, vnet);
        self.flush_batch();
        result
    }

    fn drain_tun_batched(
        &mut self,
        snapshot: &Snapshot,
        now: Instant,
        vnet: usize,
    ) -> io::Result<()> {
        // A super-packet needs free slots to be cut into: keep them, rather than
        // read packets that could not be sent.
        let reserve = self.tun_reserve();
        while self.free.len() >= reserve {
            let Some(slot) = self.free.pop() else {
                break;
            };
            let read = tun::read_packet(
                self.tun.as_fd(),
                &mut self.ring.buf_mut(slot)[HEADROOM - vnet..],
            );
            let n = match read {
                Ok(n) if n > vnet => n - vnet,
                // An empty read or an error: wait for the next poll wake-up rather
                // than spin on a queue that is not delivering.
                Ok(_) => {
                    self.free.push(slot);
                    self.readable = false;
                    return Ok(());
                }
                Err(e) => {
                    self.free.push(slot);
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    if e.kind() != io::ErrorKind::WouldBlock {
                        self.stats.add(Counter::TunReadErrors, 1);
                    }
                    self.readable = false;
                    return Ok(());
                }
            };
            self.stats.add(Counter::TunRxPackets, 1);
            self.stats.add(Counter::TunRxBytes, n as u64);
            let hdr = if vnet > 0 {
                let b = &self.ring.buf(slot)[HEADROOM - vnet..HEADROOM];
                virtio::Repr::parse(&virtio::Header::new_unchecked(b)).unwrap_or_default()
            } else {
                virtio::Repr::default()
            };
            let result = if hdr.gso_type == virtio::GsoType::None {
                // A single packet: its checksum (if left to us) completed in place,
                // then forwarded where it lies.
                let packet = &mut self.ring.buf_mut(slot)[HEADROOM..HEADROOM + n];
                complete_checksum(&hdr, packet).and_then(|()| self.forward_plain(snapshot, slot, n))
            } else {
                // Whatever waits in the batch was read first, and may be of the
                // same flow: it leaves first.
                self.flush_batch();
                self.forward_offloaded(snapshot, slot, n, &hdr)
            };
            match result {
                Ok(true) => {}
                Ok(false) => self.free.push(slot),
                Err(reason) => {
                    self.stats.count_drop(reason);
                    if reason == DropReason::NoLease {
                        self.answer_unreachable(slot, n, now);
                    }
                    self.free.push(slot);
                }
            }
        }
        Ok(())
    }

    /// Looks up where the packet at the start of `packet` goes.
    #[inline]
    fn route(&self, snapshot: &Snapshot, packet: &[u8]) -> Result<Route, DropReason> {
        let dst = destination(packet)?;
        let peer = snapshot.lookup(dst).ok_or_else(|| miss(dst))?;
        let vxlan = match self.tunnel {
            Tunnel::Udp => None,
            Tunnel::Vxlan => {
                let mac = peer.vtep_mac.ok_or(DropReason::NoVtepMac)?;
                Some(VxlanHeader::new(self.local.vni, self.local.vtep_mac, mac))
            }
        };
        Ok(Route {
            dest: SocketAddrV4::new(peer.public_ip, self.port),
            vxlan,
        })
    }

    /// Forwards a single, complete packet in place: encapsulates it in its slot
    /// and sends it. Returns whether the slot now has a send in flight.
    #[inline]
    fn forward_plain(
        &mut self,
        snapshot: &Snapshot,
        slot: Slot,
        n: usize,
    ) -> Result<bool, DropReason> {
        let route = self.route(snapshot, &self.ring.buf(slot)[HEADROOM..HEADROOM + n])?;
        let buf = self.ring.buf_mut(slot);
        let range = match &route.vxlan {
            None => encap::encap_udp(buf, HEADROOM, n)?,
            Some(hdr) => encap::encap_vxlan(buf, HEADROOM, n, hdr)?,
        };
        if !self.offload.gso {
            self.datagrams[slot as usize] = 1;
            self.send(slot, range, route.dest, None);
            return Ok(true);
        }
        // With GSO, datagrams of one size for one peer wait in a batch until the
        // TUN queue is drained (or the datagram differs): one send for them all.
        let size = range.len();
        if let Some(b) = self.batch.as_mut() {
            let fits = b.dest == route.dest
                && b.size == size
                && b.count < GSO_MAX_SEGMENTS
                && b.end + size - b.start <= GSO_MAX_BYTES;
            if fits {
                let (src, dst) = self.ring.src_dst(slot, b.slot);
                dst[b.end..b.end + size].copy_from_slice(&src[range]);
                b.end += size;
                b.count += 1;
                return Ok(false);
            }
        }
        self.flush_batch();
        self.batch = Some(Batch {
            slot,
            dest: route.dest,
            start: range.start,
            end: range.end,
            size,
            count: 1,
        });
        Ok(true)
    }

    /// Sends the waiting batch, if any: one datagram plainly, several with
    /// `UDP_SEGMENT`.
    fn flush_batch(&mut self) {
        let Some(b) = self.batch.take() else {
            return;
        };
        self.datagrams[b.slot as usize] = b.count as u32;
        let segment = if b.count > 1 {
            self.stats.add(Counter::GsoSends, 1);
            Some(b.size as u16)
        } else {
            None
        };
        self.send(b.slot, b.start..b.end, b.dest, segment);
    }

    /// Forwards a packet that came with offload work (a TSO/USO super-packet, or a
    /// checksum left to complete): cuts it into segments written, encapsulated,
    /// into other free slots, and sends them as few sends as allowed. The read
    /// slot itself is never sent (returns `Ok(false)`).
    fn forward_offloaded(
        &mut self,
        snapshot: &Snapshot,
        slot: Slot,
        n: usize,
        hdr: &virtio::Repr,
    ) -> Result<bool, DropReason> {
        let packet = &self.ring.buf(slot)[HEADROOM..HEADROOM + n];
        let route = self.route(snapshot, packet)?;
        let (count, stride) = {
            let split = Split::new(hdr, packet)?;
            (split.count(), split.stride())
        };
        if count > 1 {
            self.stats.add(Counter::TsoSuperPackets, 1);
        }
        let overhead = self.tunnel.overhead();
        let chunk = overhead + stride;
        let per_slot = if self.offload.gso {
            (GSO_MAX_BYTES / chunk).clamp(1, GSO_MAX_SEGMENTS)
        } else {
            (SLOT_SIZE / chunk).clamp(1, socket::SEND_MANY_MAX)
        };
        let mut first = 0;
        while first < count {
            let Some(out) = self.free.pop() else {
                for _ in first..count {
                    self.stats.add(Counter::NoSendBuffer, 1);
                }
                break;
            };
            let last = (first + per_slot).min(count);
            let (src, dst) = self.ring.src_dst(slot, out);
            let split = Split::new(hdr, &src[HEADROOM..HEADROOM + n])?;
            let mut end = 0;
            for i in first..last {
                let at = (i - first) * chunk;
                let len = split.write(i, &mut dst[at + overhead..]);
                let range = match &route.vxlan {
                    None => encap::encap_udp(dst, at, len),
                    Some(h) => encap::encap_vxlan(dst, at + overhead, len, h),
                };
                match range {
                    Ok(r) if len > 0 && r.start == at => end = r.end,
                    Ok(_) => {
                        self.free.push(out);
                        return Err(DropReason::NoHeadroom);
                    }
                    Err(reason) => {
                        self.free.push(out);
                        return Err(reason);
                    }
                }
            }
            let datagrams = last - first;
            self.datagrams[out as usize] = datagrams as u32;
            if datagrams == 1 {
                self.send(out, 0..end, route.dest, None);
            } else if self.offload.gso {
                self.stats.add(Counter::GsoSends, 1);
                self.send(out, 0..end, route.dest, Some(chunk as u16));
            } else {
                self.send_each(out, end, chunk, route.dest);
                self.free.push(out);
            }
            first = last;
        }
        Ok(false)
    }

    /// Queues the send of `range` of `slot` (a send that cannot even be queued is
    /// a broken ring: counted and the slot returned).
    #[inline]
    fn send(
        &mut self,
        slot: Slot,
        range: std::ops::Range<usize>,
        dest: SocketAddrV4,
        segment: Option<u16>,
    ) {
        let tx = self.tx.as_raw_fd();
        let (datagrams, bytes) = (u64::from(self.datagrams[slot as usize]), range.len());
        match self.ring.send_to(tx, slot, range, dest, segment, TAG_SEND) {
            // Per peer, a send counts when queued; a failure shows in send_errors.
            Ok(()) => self.stats.peers.sent(*dest.ip(), datagrams, bytes as u64),
            Err(e) => {
                tracing::debug!(worker = self.index, "cannot queue a send: {e}");
                self.stats.add(Counter::SendErrors, 1);
                self.free.push(slot);
            }
        }
    }

    /// Sends the datagrams laid out every `chunk` bytes in `slot[..end]` one by
    /// one, with `sendmmsg` (no segmentation offload).
    fn send_each(&mut self, slot: Slot, end: usize, chunk: usize, dest: SocketAddrV4) {
        let buf = self.ring.buf(slot);
        let mut datagrams: [&[u8]; socket::SEND_MANY_MAX] = [&[]; socket::SEND_MANY_MAX];
        let mut k = 0;
        for (d, at) in datagrams.iter_mut().zip((0..end).step_by(chunk)) {
            *d = &buf[at..(at + chunk).min(end)];
            k += 1;
        }
        let mut sent = 0;
        while sent < k {
            match socket::send_many(&self.tx, dest, &datagrams[sent..k]) {
                Ok(0) => break,
                Ok(m) => {
                    let bytes: usize = datagrams[sent..sent + m].iter().map(|d| d.len()).sum();
                    self.stats.add(Counter::TunnelTxPackets, m as u64);
                    self.stats.add(Counter::TunnelTxBytes, bytes as u64);
                    self.stats.peers.sent(*dest.ip(), m as u64, bytes as u64);
                    sent += m;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if sent < k {
            self.stats.add(Counter::SendErrors, (k - sent) as u64);
        }
    }

    /// Writes an ICMP network-unreachable back into the TUN for the packet in `slot`.
    fn answer_unreachable(&mut self, slot: Slot, n: usize, now: Instant) {
        let mut msg = [0u8; icmp::MAX_LEN];
        let packet = &self.ring.buf(slot)[HEADROOM..HEADROOM + n];
        let Some(len) = icmp::net_unreachable_v4(packet, self.gateway, &mut msg) else {
            return;
        };
        if !self.icmp.take(now) {
            self.stats.add(Counter::IcmpRateLimited, 1);
            return;
        }
        let out = self.tun_out();
        out.write(&msg[..len]);
        // The write counted itself as a TUN packet; it is an ICMP answer.
        self.stats.add(Counter::IcmpUnreachable, 1);
    }

    fn on_send(&mut self, c: &Completion) {
        let datagrams = self.datagrams[c.slot as usize];
        if c.result < 0 {
            if c.result == -libc::EIO && datagrams > 1 && self.offload.gso {
                // The kernel (or the path to this peer) refuses segmented sends:
                // send one datagram at a time from now on.
                self.offload.gso = false;
                self.stats.add(Counter::GsoFallbacks, 1);
                tracing::warn!(
                    worker = self.index,
                    "the kernel refused a segmented send (UDP_SEGMENT, EIO): sending datagrams one by one from now on"
                );
            }
            self.stats.add(Counter::SendErrors, u64::from(datagrams));
            tracing::debug!(errno = -c.result, "send to peer failed");
        } else {
            self.stats
                .add(Counter::TunnelTxPackets, u64::from(datagrams));
            self.stats.add(Counter::TunnelTxBytes, c.result as u64);
        }
        self.free.push(c.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_of_each_family() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[16..20].copy_from_slice(&[100, 96, 2, 2]);
        assert_eq!(destination(&v4), Ok(IpAddr::from([100, 96, 2, 2])));
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[39] = 2;
        assert_eq!(
            destination(&v6),
            Ok(IpAddr::from([
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2u8
            ]))
        );
        assert_eq!(destination(&v4[..19]), Err(DropReason::IpTruncated));
        assert_eq!(destination(&[]), Err(DropReason::IpTruncated));
        assert_eq!(destination(&[0x50; 40]), Err(DropReason::IpVersion));
    }

    #[test]
    fn an_exhausted_receive_ring_is_not_an_error() {
        assert_eq!(recv_failure(-libc::ENOBUFS), Counter::RecvRingEmpty);
        assert_eq!(recv_failure(-libc::EINVAL), Counter::RecvErrors);
        assert_eq!(recv_failure(-libc::ECANCELED), Counter::RecvErrors);
    }

    #[test]
    fn a_multicast_miss_is_not_a_missing_lease() {
        // The kernel's MLDv2 report on a TUN without an IPv6 address: :: -> ff02::16.
        assert_eq!(
            miss("ff02::16".parse().expect("literal")),
            DropReason::MulticastDestination
        );
        assert_eq!(
            miss("224.0.0.22".parse().expect("literal")),
            DropReason::MulticastDestination
        );
        assert_eq!(
            miss("100.96.9.2".parse().expect("literal")),
            DropReason::NoLease
        );
        assert_eq!(
            miss("fd00:100:96:9::2".parse().expect("literal")),
            DropReason::NoLease
        );
    }

    #[test]
    fn icmp_budget_refills_each_second() {
        let t0 = Instant::now();
        let mut b = IcmpBudget {
            window: t0,
            left: 2,
        };
        assert!(b.take(t0));
        assert!(b.take(t0));
        assert!(!b.take(t0));
        assert!(!b.take(t0));
        assert!(b.take(t0 + std::time::Duration::from_secs(1)));
    }
}
