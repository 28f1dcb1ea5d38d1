//! The outbound half of a worker: TUN → peers.
//!
//! Reads packets from the TUN queue into free TX slots, looks each destination up
//! in the table snapshot, encapsulates it in place, cuts TSO super-packets into
//! segments, gathers datagrams into GSO batches and queues the sends; a packet no
//! lease covers is answered with an ICMP network-unreachable (rate limited).
//!
//! Invariants: a slot taken from the free list is either sent (and returned when
//! its send completes) or returned at once; nothing is allocated per packet.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Instant;

use crate::drop_reason::DropReason;
use crate::encap::{self, Tunnel, VxlanHeader};
use crate::sys::tun;
use crate::sys::uring::{Completion, Slot, GATHER_MAX};
use crate::sys::{sockaddr, socket};
use crate::table::Snapshot;
use crate::wire::{ipv4, ipv6, virtio};

use super::super::icmp;
use super::super::offload::{complete_checksum, Split};
use super::super::route;
use super::super::stats::Counter;
use super::inbound::TunOut;
use super::slots::{self, Batch, Op};
use super::{TunReads, Worker, HEADROOM, PACKET_AREA, SEGMENT_HEADERS_MAX, SLOT_SIZE};

/// ICMP errors each worker may write back per second (the kernel's default
/// `icmp_ratelimit` allows about a thousand per second per host).
pub(super) const ICMP_PER_SECOND: u32 = 500;

/// A simple per-second budget for ICMP errors.
pub(super) struct IcmpBudget {
    pub(super) window: Instant,
    pub(super) left: u32,
}

impl IcmpBudget {
    pub(super) fn take(&mut self, now: Instant) -> bool {
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
///
/// Only the fixed header has to be there: the lookup needs nothing more, and what
/// else is wrong with the packet is found (and counted) by encapsulation.
#[inline]
fn destination(packet: &[u8]) -> Result<IpAddr, DropReason> {
    match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= ipv4::HEADER_LEN => {
            Ok(IpAddr::V4(ipv4::Packet::new_unchecked(packet).dst_addr()))
        }
        Some(6) if packet.len() >= ipv6::HEADER_LEN => {
            Ok(IpAddr::V6(ipv6::Packet::new_unchecked(packet).dst_addr()))
        }
        Some(4 | 6) | None => Err(DropReason::IpTruncated),
        Some(_) => Err(DropReason::IpVersion),
    }
}

/// A super-packet read into a slot, routed and measured: what cutting it into
/// segments and sending them needs.
struct SuperPacket<'r> {
    /// The slot it was read into.
    slot: Slot,
    /// Its length from `HEADROOM` on.
    len: usize,
    /// The virtio-net header that came with it.
    vnet: virtio::Repr,
    route: &'r Route,
    /// Its segments.
    count: usize,
    /// Bytes every segment but the last takes on the wire: the tunnel headers,
    /// the IP and TCP/UDP headers, the payload.
    chunk: usize,
}

/// Where an outbound packet goes: the peer's address and, for vxlan, the headers.
struct Route {
    /// The peer's address, in the form our socket sends to.
    dest: SocketAddr,
    vxlan: Option<VxlanHeader>,
    /// The peer completes partial inner checksums: segments go to it unfinished.
    partial_csum: bool,
}

impl Worker {
    fn tun_out(&self) -> TunOut<'_> {
        TunOut {
            fd: self.tun.as_fd(),
            stats: &self.stats,
            vnet: self.offload.vnet_hdr(),
        }
    }

    /// Bytes of `virtio_net_hdr` in front of every packet read from the TUN.
    fn vnet_len(&self) -> usize {
        if self.offload.vnet_hdr() {
            virtio::HEADER_LEN
        } else {
            0
        }
    }

    /// Reads packets from the TUN queue into free slots until it is empty or no
    /// slot is free, forwarding each (the polled way, see [`TunReads`]).
    pub(super) fn drain_tun(&mut self, snapshot: &Snapshot, now: Instant) {
        self.drain_tun_batched(snapshot, now);
        self.flush_batch();
    }

    fn drain_tun_batched(&mut self, snapshot: &Snapshot, now: Instant) {
        let vnet = self.vnet_len();
        // A super-packet needs free slots to be cut into: keep them, rather than
        // read packets that could not be sent.
        let reserve = slots::reserve(self.offload.tso);
        while self.tx_slots.free() >= reserve {
            let Some(slot) = self.tx_slots.take() else {
                break;
            };
            let read = tun::read_packet(
                self.tun.as_fd(),
                &mut self.ring.buf_mut(slot)[HEADROOM - vnet..PACKET_AREA],
            );
            match read {
                Ok(n) if n > vnet => self.forward_read(snapshot, slot, n - vnet, now),
                // An empty read or an error: wait for the next poll wake-up rather
                // than spin on a queue that is not delivering.
                Ok(_) => {
                    self.tx_slots.give_back(slot);
                    self.tun_reads = TunReads::Polled { readable: false };
                    return;
                }
                Err(e) => {
                    self.tx_slots.give_back(slot);
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    if e.kind() != io::ErrorKind::WouldBlock {
                        self.stats.add(Counter::TunReadErrors, 1);
                    }
                    self.tun_reads = TunReads::Polled { readable: false };
                    return;
                }
            }
        }
    }

    /// Lends every free slot [`slots::to_lend`] allows to the TUN read ring,
    /// and arms the multishot read if it has ended and a slot is lent.
    pub(super) fn lend_free_slots(&mut self) -> io::Result<()> {
        let TunReads::Multishot { armed, lent } = self.tun_reads else {
            return Ok(());
        };
        let area = HEADROOM - self.vnet_len()..PACKET_AREA;
        let mut lent = lent;
        for _ in 0..slots::to_lend(self.tx_slots.free(), lent, self.offload.tso) {
            let Some(slot) = self.tx_slots.take() else {
                break;
            };
            self.ring.lend(slot, area.clone())?;
            lent += 1;
        }
        let arm = !armed && lent > 0;
        if arm {
            self.ring
                .read_multi(self.tun.as_raw_fd(), Op::TunRead.tag())?;
        }
        self.tun_reads = TunReads::Multishot {
            armed: armed || arm,
            lent,
        };
        Ok(())
    }

    /// A completion of the multishot TUN read: forwards the packet it put into
    /// a lent slot. The read ends (`more` unset) when it found no lent slot
    /// (`ENOBUFS`, the packets wait in the TUN queue), and the next
    /// [`Worker::lend_free_slots`] arms it again. It may also end on an error:
    /// then re-arming would fail again at once, a busy loop, so the worker
    /// reads by poll from then on (the slots still lent stay unused).
    pub(super) fn on_tun_read(
        &mut self,
        snapshot: &Snapshot,
        c: &Completion,
        now: Instant,
    ) -> io::Result<()> {
        let TunReads::Multishot { armed, lent } = self.tun_reads else {
            return Ok(());
        };
        let filled = c.buffer.is_some();
        self.tun_reads = TunReads::Multishot {
            armed: armed && c.more,
            lent: lent - usize::from(filled),
        };
        if c.result < 0 && c.result != -libc::ENOBUFS {
            self.stats.add(Counter::TunReadErrors, 1);
            if !c.more {
                tracing::warn!(
                    worker = self.index,
                    errno = -c.result,
                    "the multishot TUN read failed: reading the TUN by poll from now on"
                );
                self.tun_reads = TunReads::Polled { readable: true };
                self.arm_tun_poll()?;
            }
        }
        if filled {
            let vnet = self.vnet_len();
            match usize::try_from(c.result) {
                Ok(n) if n > vnet => self.forward_read(snapshot, c.slot, n - vnet, now),
                _ => self.tx_slots.give_back(c.slot),
            }
        }
        Ok(())
    }

    /// Forwards the packet of `n` bytes a TUN read put at `HEADROOM` of `slot`
    /// (its `virtio_net_hdr`, if any, right in front): the slot either carries
    /// its send or is returned.
    fn forward_read(&mut self, snapshot: &Snapshot, slot: Slot, n: usize, now: Instant) {
        self.stats.add(Counter::TunRxPackets, 1);
        self.stats.add(Counter::TunRxBytes, n as u64);
        let vnet = self.vnet_len();
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
            Ok(false) => self.tx_slots.give_back(slot),
            Err(reason) => {
                self.stats.count_drop(reason);
                if reason == DropReason::NoLease {
                    self.answer_unreachable(slot, n, now);
                }
                self.tx_slots.give_back(slot);
            }
        }
    }

    /// Looks up where the packet at the start of `packet` goes.
    #[inline]
    fn route(&self, snapshot: &Snapshot, packet: &[u8]) -> Result<Route, DropReason> {
        let dst = destination(packet)?;
        let peer = snapshot.lookup(dst).ok_or_else(|| miss(dst))?;
        let hop =
            route::hop(peer, dst.is_ipv6(), self.underlays).ok_or(DropReason::NoUnderlayAddress)?;
        let vxlan = match self.tunnel {
            Tunnel::Udp => None,
            Tunnel::Vxlan => {
                let mac = hop.vtep_mac.ok_or(DropReason::NoVtepMac)?;
                let ours = match hop.ip {
                    IpAddr::V4(_) => self.local.vtep_mac,
                    IpAddr::V6(_) => self.local.vtep_mac_v6,
                };
                Some(VxlanHeader::new(self.local.vni, ours, mac))
            }
        };
        Ok(Route {
            dest: sockaddr::for_socket(SocketAddr::new(hop.ip, self.port), self.underlays.v6),
            vxlan,
            partial_csum: peer.partial_csum,
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
            self.tx_slots.set_datagrams(slot, 1);
            self.send(slot, range, route.dest, None);
            return Ok(true);
        }
        // With GSO, datagrams of one size for one peer wait in a batch until the
        // TUN queue is drained (or the datagram differs): one send for them all.
        let size = range.len();
        if let Some(b) = self.batch.as_mut() {
            if b.fits(route.dest, size) {
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
    pub(super) fn flush_batch(&mut self) {
        let Some(b) = self.batch.take() else {
            return;
        };
        self.tx_slots.set_datagrams(b.slot, b.count as u32);
        let segment = slots::segment_size(b.count, b.size);
        self.send(b.slot, b.start..b.end, b.dest, segment);
    }

    /// Forwards a packet that came with offload work (a TSO/USO super-packet, or a
    /// checksum left to complete). With GSO, its segments leave gathered from the
    /// slot they were read into ([`Worker::forward_gathered`]); otherwise they are
    /// cut, encapsulated, into other free slots and sent as few sends as allowed,
    /// and the read slot itself is never sent (returns `Ok(false)`).
    fn forward_offloaded(
        &mut self,
        snapshot: &Snapshot,
        slot: Slot,
        n: usize,
        hdr: &virtio::Repr,
    ) -> Result<bool, DropReason> {
        let packet = &self.ring.buf(slot)[HEADROOM..HEADROOM + n];
        let route = self.route(snapshot, packet)?;
        let overhead = self.tunnel.overhead();
        let (count, chunk, last, headers) = {
            let split = Split::new(hdr, packet)?;
            let count = split.count();
            let last = overhead + split.segment_len(count - 1);
            (count, overhead + split.stride(), last, split.header_len())
        };
        if count > 1 {
            self.stats.add(Counter::TsoSuperPackets, 1);
        }
        let sp = SuperPacket {
            slot,
            len: n,
            vnet: *hdr,
            route: &route,
            count,
            chunk,
        };
        let head = slots::gathered_head(count, chunk, last);
        if self.offload.gso && head > 0 && overhead + headers <= SEGMENT_HEADERS_MAX {
            return self.forward_gathered(&sp, head);
        }
        let per_slot = slots::per_slot(self.offload.gso, chunk, SLOT_SIZE);
        let mut first = 0;
        while first < count {
            let last = (first + per_slot).min(count);
            let Some((out, end)) = self.cut(&sp, first..last)? else {
                // No free slot: these segments and the rest are lost, and counted.
                self.stats.add(Counter::NoSendBuffer, (count - last) as u64);
                break;
            };
            self.send_cut(&sp, out, end, last - first);
            first = last;
        }
        Ok(false)
    }

    /// Sends the first `head` of a super-packet's segments gathered from its own
    /// slot ([`Worker::send_gathered`]) and the rest, which one send cannot carry
    /// (a 64 KiB TCP super-packet is 46 segments of 1,472 bytes on the wire, one
    /// send at most 65,507 bytes), copied into a second slot and sent after it.
    /// The rest is copied first: once the gathered send is queued its slot may
    /// not be read.
    fn forward_gathered(&mut self, sp: &SuperPacket<'_>, head: usize) -> Result<bool, DropReason> {
        let tail = if head < sp.count {
            self.cut(sp, head..sp.count)?
        } else {
            None
        };
        if let Err(reason) = self.send_gathered(sp, head) {
            if let Some((out, _)) = tail {
                self.tx_slots.give_back(out);
            }
            return Err(reason);
        }
        if let Some((out, end)) = tail {
            self.send_cut(sp, out, end, sp.count - head);
        }
        Ok(true)
    }

    /// Copies segments `range` of the super-packet, encapsulated, into a free
    /// slot, one every `chunk` bytes; returns that slot and where its last
    /// segment ends, or `None` (counted) when no slot is free.
    fn cut(
        &mut self,
        sp: &SuperPacket<'_>,
        range: Range<usize>,
    ) -> Result<Option<(Slot, usize)>, DropReason> {
        let Some(out) = self.tx_slots.take() else {
            self.stats.add(Counter::NoSendBuffer, range.len() as u64);
            return Ok(None);
        };
        let overhead = self.tunnel.overhead();
        let (src, dst) = self.ring.src_dst(sp.slot, out);
        let split = match Split::new(&sp.vnet, &src[HEADROOM..HEADROOM + sp.len]) {
            Ok(split) => split.leave_partial(sp.route.partial_csum),
            Err(reason) => {
                self.tx_slots.give_back(out);
                return Err(reason);
            }
        };
        let first = range.start;
        let mut end = 0;
        for i in range {
            let at = (i - first) * sp.chunk;
            let len = split.write(i, &mut dst[at + overhead..]);
            let encapsulated = match &sp.route.vxlan {
                None => encap::encap_udp(dst, at, len),
                Some(h) => encap::encap_vxlan(dst, at + overhead, len, h),
            };
            match encapsulated {
                Ok(r) if len > 0 && r.start == at => end = r.end,
                Ok(_) => {
                    self.tx_slots.give_back(out);
                    return Err(DropReason::NoHeadroom);
                }
                Err(reason) => {
                    self.tx_slots.give_back(out);
                    return Err(reason);
                }
            }
        }
        Ok(Some((out, end)))
    }

    /// Sends the `datagrams` segments [`Worker::cut`] laid out every `chunk` bytes
    /// in `out[..end]`: one plain send, one `UDP_SEGMENT` send, or without GSO
    /// one by one.
    fn send_cut(&mut self, sp: &SuperPacket<'_>, out: Slot, end: usize, datagrams: usize) {
        self.tx_slots.set_datagrams(out, datagrams as u32);
        if self.offload.gso || datagrams == 1 {
            let segment = slots::segment_size(datagrams, sp.chunk);
            self.send(out, 0..end, sp.route.dest, segment);
        } else {
            self.send_each(out, end, sp.chunk, sp.route.dest);
            self.tx_slots.give_back(out);
        }
    }

    /// Sends the first `head` segments of the super-packet in one `UDP_SEGMENT`
    /// send without copying their payload: each segment's tunnel and IP/TCP (or
    /// UDP) headers are written into the slot's header area, behind the packet,
    /// and the send gathers them with the payload slices where the TUN read left
    /// them. The slot carries the send, so the payload stays untouched until the
    /// kernel is done with it.
    fn send_gathered(&mut self, sp: &SuperPacket<'_>, head: usize) -> Result<(), DropReason> {
        let overhead = self.tunnel.overhead();
        let mut pieces: [Range<usize>; GATHER_MAX] = std::array::from_fn(|_| 0..0);
        let mut k = 0;
        {
            let (packet_area, header_area) = self.ring.buf_mut(sp.slot).split_at_mut(PACKET_AREA);
            let packet = &mut packet_area[HEADROOM..HEADROOM + sp.len];
            // The router hop, once for every segment: their headers are cut from
            // the super-packet's.
            encap::forward(packet)?;
            let first = packet[0];
            let split = Split::new(&sp.vnet, packet)?.leave_partial(sp.route.partial_csum);
            let mut at = 0;
            for i in 0..head {
                let out = &mut header_area[at..at + SEGMENT_HEADERS_MAX];
                if let Some(v) = &sp.route.vxlan {
                    encap::write_vxlan_headers(&mut out[..overhead], v, first);
                }
                let len = overhead + split.write_header(i, &mut out[overhead..]);
                pieces[k] = PACKET_AREA + at..PACKET_AREA + at + len;
                let payload = split.payload_range(i);
                pieces[k + 1] = HEADROOM + payload.start..HEADROOM + payload.end;
                k += 2;
                at += len;
            }
        }
        self.tx_slots.set_datagrams(sp.slot, head as u32);
        self.stats.add(Counter::GatheredSends, 1);
        let segment = slots::segment_size(head, sp.chunk);
        self.send_pieces(sp.slot, &pieces[..k], sp.route.dest, segment);
        Ok(())
    }

    /// Queues the send of `range` of `slot` (a send that cannot even be queued is
    /// a broken ring: counted and the slot returned).
    #[inline]
    fn send(&mut self, slot: Slot, range: Range<usize>, dest: SocketAddr, segment: Option<u16>) {
        self.send_pieces(slot, &[range], dest, segment);
    }

    /// Queues the send of the `pieces` of `slot`, gathered into one buffer (see
    /// [`Worker::send`]).
    fn send_pieces(
        &mut self,
        slot: Slot,
        pieces: &[Range<usize>],
        dest: SocketAddr,
        segment: Option<u16>,
    ) {
        let tx = self.tx.as_raw_fd();
        let datagrams = u64::from(self.tx_slots.datagrams(slot));
        let bytes: usize = pieces.iter().map(|p| p.len()).sum();
        match self
            .ring
            .send_gather(tx, slot, pieces, dest, segment, Op::Send.tag())
        {
            // Per peer, a send counts when queued; a failure shows in send_errors.
            Ok(()) => {
                if segment.is_some() {
                    self.stats.add(Counter::GsoSends, 1);
                }
                self.stats.peers.sent(dest.ip(), datagrams, bytes as u64);
            }
            Err(e) => {
                tracing::debug!(worker = self.index, "cannot queue a send: {e}");
                self.stats.add(Counter::SendErrors, 1);
                self.tx_slots.give_back(slot);
            }
        }
    }

    /// Sends the datagrams laid out every `chunk` bytes in `slot[..end]` one by
    /// one, with `sendmmsg` (no segmentation offload).
    fn send_each(&mut self, slot: Slot, end: usize, chunk: usize, dest: SocketAddr) {
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
                    self.stats.peers.sent(dest.ip(), m as u64, bytes as u64);
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

    /// Writes an ICMP network-unreachable (ICMPv6 no-route) back into the TUN
    /// for the packet in `slot`.
    fn answer_unreachable(&mut self, slot: Slot, n: usize, now: Instant) {
        let mut msg = [0u8; icmp::MAX_LEN];
        let packet = &self.ring.buf(slot)[HEADROOM..HEADROOM + n];
        let Some(len) = self.gateways.unreachable(packet, &mut msg) else {
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

    pub(super) fn on_send(&mut self, c: &Completion) {
        let datagrams = self.tx_slots.datagrams(c.slot);
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
        self.tx_slots.give_back(c.slot);
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
