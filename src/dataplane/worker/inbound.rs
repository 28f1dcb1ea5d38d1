//! The inbound half of a worker: peers → TUN.
//!
//! Takes each receive completion (a datagram, or a GRO train of them), finds the
//! sender's lease, decapsulates in place, hands the inner packet to the coalescer
//! (with GRO) or writes it to the TUN queue, and re-arms the receive.
//!
//! Invariants: every datagram is either written or counted under one drop reason;
//! a receive is re-armed after every completion that ends it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use crate::drop_reason::DropReason;
use crate::encap::{self, Local, Tunnel};
use crate::sys::tun;
use crate::sys::uring::{Completion, Datagram, Ring};
use crate::table::Snapshot;
use crate::wire::virtio;

use super::super::offload::{partial_checksum, Coalescer};
use super::super::stats::{Counter, Stats};
use super::slots::Op;
use super::{Worker, HEADROOM};

/// The `virtio_net_hdr` of a packet that needs nothing done.
const PLAIN_VNET_HDR: [u8; virtio::HEADER_LEN] = [0; virtio::HEADER_LEN];

/// Writing to the TUN queue, with or without a `virtio_net_hdr` in front.
pub(super) struct TunOut<'a> {
    pub(super) fd: BorrowedFd<'a>,
    pub(super) stats: &'a Stats,
    pub(super) vnet: bool,
}

impl TunOut<'_> {
    /// Writes one plain packet. One whose TCP or UDP checksum its sender left
    /// partial (see [`partial`](super::super::offload::partial)) goes with
    /// `NEEDS_CSUM`, or completed where the queue carries no virtio header.
    #[inline]
    pub(super) fn write(&self, packet: &[u8]) {
        let written = match (self.vnet, partial_checksum(packet)) {
            (true, None) => tun::write_with_header(self.fd, &PLAIN_VNET_HDR, packet),
            (false, None) => tun::write_packet(self.fd, packet),
            (true, Some(p)) => {
                let mut hdr = PLAIN_VNET_HDR;
                p.header()
                    .emit(&mut virtio::Header::new_unchecked(&mut hdr[..]));
                tun::write_with_header(self.fd, &hdr, packet)
            }
            (false, Some(p)) => {
                // The completed field is written in place of the partial one,
                // without copying the packet.
                let (head, tail) = packet.split_at(p.field());
                let csum = p.completed(packet);
                tun::write_gather(self.fd, &[head, &csum, tail.get(2..).unwrap_or(&[])])
            }
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
    fn deliver(&mut self, source: SocketAddr, payload: &[u8]) {
        let stats = self.out.stats;
        stats.add(Counter::TunnelRxPackets, 1);
        stats.add(Counter::TunnelRxBytes, payload.len() as u64);
        let sender = self.snapshot.by_public_ip(source.ip()).map(|p| &p.key);
        let inner = match self.tunnel {
            Tunnel::Udp => encap::decap_udp(payload, self.local, sender),
            Tunnel::Vxlan => encap::decap_vxlan(payload, self.local, sender),
        };
        let r = match inner {
            Ok(r) => r,
            Err(reason) => return stats.count_drop(reason),
        };
        stats.peers.received(source.ip(), payload.len() as u64);
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

impl Worker {
    /// Handles every receive completion of a batch against one table snapshot,
    /// re-arming each receive, then writes out what the coalescer holds.
    pub(super) fn receive_all(
        &mut self,
        snapshot: &Snapshot,
        done: &[Completion],
    ) -> io::Result<()> {
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
        } = self;
        let rx = rx.as_raw_fd();
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
        for c in done {
            match Op::from_tag(c.tag) {
                Some(Op::Recv) => on_recv(ring, &mut inbound, rx, c)?,
                Some(Op::RecvMulti) => on_recv_multi(ring, &mut inbound, rx, c)?,
                _ => {}
            }
        }
        inbound.flush();
        Ok(())
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
        ring.recv_multi(rx, Op::RecvMulti.tag())?;
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
        return ring.recv_from(rx, c.slot, HEADROOM, Op::Recv.tag());
    }
    let n = c.result as usize;
    let d = Datagram {
        source: ring.source(c.slot),
        payload: &ring.buf(c.slot)[HEADROOM..HEADROOM + n],
        segment: ring.segment(c.slot),
    };
    inbound.receive(d);
    ring.recv_from(rx, c.slot, HEADROOM, Op::Recv.tag())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exhausted_receive_ring_is_not_an_error() {
        assert_eq!(recv_failure(-libc::ENOBUFS), Counter::RecvRingEmpty);
        assert_eq!(recv_failure(-libc::EINVAL), Counter::RecvErrors);
        assert_eq!(recv_failure(-libc::ECANCELED), Counter::RecvErrors);
    }
}
