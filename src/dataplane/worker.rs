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
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use crate::encap::{self, Drop, Local, VxlanHeader};
use crate::sys::eventfd::EventFd;
use crate::sys::tun;
use crate::sys::uring::{Completion, Ring, Slot};
use crate::table::{Reader, Snapshot};

use super::icmp;
use super::stats::{Counter, Stats};

/// Packet slots for the TUN → peer direction (reads awaiting their send).
pub const TX_SLOTS: u32 = 64;
/// In-flight socket receives per worker.
pub const RX_SLOTS: u32 = 64;
/// Bytes per slot: a 64 KiB packet plus headroom.
pub const SLOT_SIZE: usize = HEADROOM + 65_536;
/// Free bytes in front of every packet: room for the vxlan headers (and, later,
/// a `virtio_net_hdr`).
pub const HEADROOM: usize = 64;
/// ICMP errors each worker may write back per second (the kernel's default
/// `icmp_ratelimit` allows about a thousand per second per host).
const ICMP_PER_SECOND: u32 = 500;

const TAG_SEND: u16 = 2;
const TAG_RECV: u16 = 3;
const TAG_TUN_POLL: u16 = 5;
const TAG_RECV_MULTI: u16 = 7;
/// Provided buffers for multishot receives (a power of two).
const RECV_RING_BUFFERS: u16 = 256;
/// Bytes per provided buffer: the recvmsg header and source address, then a
/// datagram of up to 64 KiB.
const RECV_RING_BUFFER_SIZE: usize = 65_536 + 64;
const TAG_STOP: u16 = 6;

/// The tunnel format a worker speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunnel {
    /// flannel's udp format.
    Udp,
    /// VXLAN; the VNI is in [`Local`].
    Vxlan,
}

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

struct Worker {
    ring: Ring,
    tun: OwnedFd,
    rx: RawFd,
    tx: RawFd,
    tunnel: Tunnel,
    port: u16,
    local: Local,
    gateway: Ipv4Addr,
    stats: Arc<Stats>,
    icmp: IcmpBudget,
    /// TX slots with no operation in flight.
    free: Vec<Slot>,
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
        ring,
        rx: p.rx.as_raw_fd(),
        tx: p.tx.as_raw_fd(),
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
        free: (0..TX_SLOTS).rev().collect(),
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
    tracing::debug!(worker = p.index, cpu = ?p.cpu, "worker running");

    let mut done: Vec<Completion> = Vec::with_capacity(1024);
    loop {
        // Wait only when there is nothing left to read from the TUN; otherwise
        // just submit and collect what is ready.
        let want = usize::from(!w.readable || w.free.is_empty());
        w.ring.submit_and_wait(want)?;
        done.clear();
        w.ring.reap(&mut done);
        let snapshot = table.snapshot();
        let now = Instant::now();
        for c in &done {
            match c.tag {
                TAG_SEND => w.on_send(c),
                TAG_RECV => w.on_recv(snapshot, c)?,
                TAG_RECV_MULTI => w.on_recv_multi(snapshot, c)?,
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

/// Counts a received datagram, decapsulates it and writes the inner packet to the
/// TUN queue (or counts why not).
#[inline]
fn deliver(w: &Worker, snapshot: &Snapshot, source: SocketAddrV4, payload: &[u8]) {
    w.stats.add(Counter::TunnelRxPackets, 1);
    w.stats.add(Counter::TunnelRxBytes, payload.len() as u64);
    let sender = snapshot
        .by_public_ip(IpAddr::V4(*source.ip()))
        .map(|p| &p.key);
    let inner = match w.tunnel {
        Tunnel::Udp => encap::decap_udp(payload, &w.local, sender),
        Tunnel::Vxlan => encap::decap_vxlan(payload, &w.local, sender),
    };
    match inner {
        Ok(r) => match tun::write_packet(w.tun.as_fd(), &payload[r]) {
            Ok(written) => {
                w.stats.add(Counter::TunTxPackets, 1);
                w.stats.add(Counter::TunTxBytes, written as u64);
            }
            Err(_) => w.stats.add(Counter::TunWriteErrors, 1),
        },
        Err(reason) => w.stats.count_drop(reason),
    }
}

/// The destination address of an IP packet, if its header is long enough to hold one.
#[inline]
fn destination(packet: &[u8]) -> Result<IpAddr, Drop> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => packet
            .get(16..20)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(IpAddr::from)
            .ok_or(Drop::IpTruncated),
        Some(6) => packet
            .get(24..40)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map(IpAddr::from)
            .ok_or(Drop::IpTruncated),
        Some(_) => Err(Drop::IpVersion),
        None => Err(Drop::IpTruncated),
    }
}

impl Worker {
    /// Reads packets from the TUN queue into free slots until it is empty or no
    /// slot is free, forwarding each.
    fn drain_tun(&mut self, snapshot: &Snapshot, now: Instant) -> io::Result<()> {
        while let Some(slot) = self.free.pop() {
            let read = tun::read_packet(self.tun.as_fd(), &mut self.ring.buf_mut(slot)[HEADROOM..]);
            let n = match read {
                Ok(n) if n > 0 => n,
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
            match self.encapsulate(snapshot, slot, n) {
                Ok((range, dest)) => self.ring.send_to(self.tx, slot, range, dest, TAG_SEND)?,
                Err(reason) => {
                    self.stats.count_drop(reason);
                    if reason == Drop::NoLease {
                        self.answer_unreachable(slot, n, now);
                    }
                    self.free.push(slot);
                }
            }
        }
        Ok(())
    }

    /// Looks up the packet's peer and encapsulates it in place.
    #[inline]
    fn encapsulate(
        &mut self,
        snapshot: &Snapshot,
        slot: Slot,
        n: usize,
    ) -> Result<(std::ops::Range<usize>, SocketAddrV4), Drop> {
        let buf = self.ring.buf_mut(slot);
        let dst = destination(&buf[HEADROOM..HEADROOM + n])?;
        let peer = snapshot.lookup(dst).ok_or(Drop::NoLease)?;
        let dest = SocketAddrV4::new(peer.public_ip, self.port);
        let range = match self.tunnel {
            Tunnel::Udp => encap::encap_udp(buf, HEADROOM, n)?,
            Tunnel::Vxlan => {
                let mac = peer.vtep_mac.ok_or(Drop::NoVtepMac)?;
                let hdr = VxlanHeader::new(self.local.vni, self.local.vtep_mac, mac);
                encap::encap_vxlan(buf, HEADROOM, n, &hdr)?
            }
        };
        Ok((range, dest))
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
        match tun::write_packet(self.tun.as_fd(), &msg[..len]) {
            Ok(_) => self.stats.add(Counter::IcmpUnreachable, 1),
            Err(_) => self.stats.add(Counter::TunWriteErrors, 1),
        }
    }

    fn on_send(&mut self, c: &Completion) {
        if c.result < 0 {
            self.stats.add(Counter::SendErrors, 1);
            tracing::debug!(errno = -c.result, "send to peer failed");
        } else {
            self.stats.add(Counter::TunnelTxPackets, 1);
            self.stats.add(Counter::TunnelTxBytes, c.result as u64);
        }
        self.free.push(c.slot);
    }

    fn on_recv_multi(&mut self, snapshot: &Snapshot, c: &Completion) -> io::Result<()> {
        if c.result < 0 {
            // ENOBUFS: every provided buffer was in use; the receive re-arms below.
            self.stats.add(Counter::RecvErrors, 1);
        } else if let Some(bid) = c.buffer {
            match self.ring.received(bid, c.result as usize) {
                Some((Some(source), payload)) => deliver(self, snapshot, source, payload),
                Some((None, _)) => self.stats.count_drop(Drop::UnknownSender),
                None => self.stats.count_drop(Drop::Truncated),
            }
            self.ring.recycle(bid);
        }
        if !c.more {
            self.ring.recv_multi(self.rx, TAG_RECV_MULTI)?;
        }
        Ok(())
    }

    fn on_recv(&mut self, snapshot: &Snapshot, c: &Completion) -> io::Result<()> {
        if c.result < 0 {
            self.stats.add(Counter::RecvErrors, 1);
            return self.ring.recv_from(self.rx, c.slot, HEADROOM, TAG_RECV);
        }
        let n = c.result as usize;
        let source = self.ring.source(c.slot);
        let payload = &self.ring.buf(c.slot)[HEADROOM..HEADROOM + n];
        deliver(self, snapshot, source, payload);
        self.ring.recv_from(self.rx, c.slot, HEADROOM, TAG_RECV)
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
        assert_eq!(destination(&v4[..19]), Err(Drop::IpTruncated));
        assert_eq!(destination(&[]), Err(Drop::IpTruncated));
        assert_eq!(destination(&[0x50; 40]), Err(Drop::IpVersion));
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
