//! The inbound half of a worker: peers → TUN.
//!
//! Takes each receive completion (a datagram, or a GRO train of them), finds the
//! sender's lease, decapsulates in place, and writes the inner packet to the TUN
//! queue, or (with GRO) hands it to the coalescer, whose merged super-packets are
//! gathered writes of the received payloads; then it re-arms the receives.
//!
//! Invariants: every datagram is either written or counted under one drop reason;
//! a receive buffer goes back to the kernel (or its receive is re-armed) only
//! after the batch's frames that name it are written, so the kernel cannot
//! receive into memory a frame still points at; a receive is re-armed after
//! every completion that ends it.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use crate::drop_reason::DropReason;
use crate::encap::{self, Local, Tunnel};
use crate::sys::tun;
use crate::sys::uring::{Completion, Datagram, Ring};
use crate::table::Snapshot;
use crate::wire::virtio;

use super::super::offload::{partial_checksum, Coalescer, Frame, Loc, MAX_PIECES};
use super::super::stats::{Counter, Stats};
use super::slots::Op;
use super::{Worker, HEADROOM};

/// The `virtio_net_hdr` of a packet that needs nothing done.
const PLAIN_VNET_HDR: [u8; virtio::HEADER_LEN] = [0; virtio::HEADER_LEN];

/// Receive buffers one flush of the coalescer may name; a batch that holds
/// more (it cannot: see the assertion in the worker) flushes first.
pub(super) const HELD_MAX: usize = 32;

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

    /// Writes a frame of the coalescer in one `writev`: its head, then its
    /// pieces, read from the receive buffers they name.
    #[inline]
    fn write_frame(&self, frame: Frame<'_>, held: &[&[u8]]) {
        if frame.is_merged() {
            self.stats.add(Counter::CoalescedWrites, 1);
        }
        if frame.pieces.len() > MAX_PIECES {
            // More than a train may hold: a bug, never written cut short.
            return self.stats.add(Counter::TunWriteErrors, 1);
        }
        let mut parts = [IoSlice::new(&[]); MAX_PIECES + 1];
        parts[0] = IoSlice::new(frame.head);
        for (part, piece) in parts[1..].iter_mut().zip(frame.pieces) {
            let bytes = held
                .get(piece.buffer as usize)
                .and_then(|b| b.get(piece.range()));
            let Some(bytes) = bytes else {
                // A piece outside what was received: a bug, never written.
                return self.stats.add(Counter::TunWriteErrors, 1);
            };
            *part = IoSlice::new(bytes);
        }
        let n = frame.pieces.len() + 1;
        self.count(tun::write_vectored(self.fd, &parts[..n]), 1);
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

/// The receive buffers of a batch that the coalescer's frames may name, by
/// [`Loc::buffer`].
struct Held<'r> {
    bufs: [&'r [u8]; HELD_MAX],
    len: usize,
}

/// The inbound half of a worker: what decapsulation and the TUN write need.
/// `'r` is the batch's borrow of the receive buffers.
struct Inbound<'a, 'r> {
    out: TunOut<'a>,
    tunnel: Tunnel,
    local: &'a Local,
    snapshot: &'a Snapshot,
    coalescer: Option<&'a mut Coalescer>,
    held: Held<'r>,
}

impl<'r> Inbound<'_, 'r> {
    /// Handles one receive: a datagram, or a GRO train of datagrams of `segment`
    /// bytes each (the last may be shorter).
    #[inline]
    fn receive(&mut self, d: Datagram<'r>) {
        let Some(source) = d.source else {
            self.out.stats.count_drop(DropReason::UnknownSender);
            return;
        };
        let buffer = self.hold(d.payload);
        match d.segment {
            Some(size) if usize::from(size) < d.payload.len() => {
                self.out.stats.add(Counter::GroReceives, 1);
                let size = usize::from(size);
                for (i, datagram) in d.payload.chunks(size).enumerate() {
                    let at = Loc {
                        buffer,
                        offset: (i * size) as u32,
                    };
                    self.deliver(source, datagram, at);
                }
            }
            _ => self.deliver(source, d.payload, Loc { buffer, offset: 0 }),
        }
    }

    /// Keeps `payload` for the coalescer's frames to name until the flush, and
    /// returns its number.
    fn hold(&mut self, payload: &'r [u8]) -> u32 {
        if self.coalescer.is_none() {
            return 0;
        }
        if self.held.len == HELD_MAX {
            self.flush();
        }
        let n = self.held.len;
        self.held.bufs[n] = payload;
        self.held.len += 1;
        n as u32
    }

    /// Decapsulates one datagram, found at `at`, and writes (or hands the
    /// coalescer) the inner packet, or counts why not.
    #[inline]
    fn deliver(&mut self, source: SocketAddr, payload: &[u8], at: Loc) {
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
        let Inbound {
            out,
            coalescer,
            held,
            ..
        } = self;
        match coalescer.as_deref_mut() {
            Some(c) => {
                let loc = Loc {
                    buffer: at.buffer,
                    offset: at.offset + r.start as u32,
                };
                let held = &held.bufs[..held.len];
                c.push(&payload[r], loc, &mut |f| out.write_frame(f, held));
            }
            None => out.write(&payload[r]),
        }
    }

    /// Writes out whatever the coalescer holds (at the end of every batch, or
    /// when [`HELD_MAX`] buffers are held); then no frame names a held buffer.
    fn flush(&mut self) {
        let Inbound {
            out,
            coalescer,
            held,
            ..
        } = self;
        if let Some(c) = coalescer.as_deref_mut() {
            let bufs = &held.bufs[..held.len];
            c.flush(&mut |f| out.write_frame(f, bufs));
        }
        held.len = 0;
    }

    fn on_recv_multi(&mut self, ring: &'r Ring, c: &Completion) {
        if c.result < 0 {
            self.out.stats.add(recv_failure(c.result), 1);
        } else if let Some(bid) = c.buffer {
            match ring.received(bid, c.result as usize) {
                Some(d) => self.receive(d),
                None => self.out.stats.count_drop(DropReason::Truncated),
            }
        }
    }

    fn on_recv(&mut self, ring: &'r Ring, c: &Completion) {
        if c.result < 0 {
            self.out.stats.add(Counter::RecvErrors, 1);
            return;
        }
        let n = c.result as usize;
        self.receive(Datagram {
            source: ring.source(c.slot),
            payload: &ring.buf(c.slot)[HEADROOM..HEADROOM + n],
            segment: ring.segment(c.slot),
        });
    }
}

impl Worker {
    /// Handles every receive completion of a batch against one table snapshot,
    /// writes out what the coalescer holds, then hands the buffers back and
    /// re-arms the receives.
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
            held: Held {
                bufs: [&[]; HELD_MAX],
                len: 0,
            },
        };
        for c in done {
            match Op::from_tag(c.tag) {
                Some(Op::Recv) => inbound.on_recv(ring, c),
                Some(Op::RecvMulti) => inbound.on_recv_multi(ring, c),
                _ => {}
            }
        }
        inbound.flush();
        // Only now may the kernel receive into these buffers again: until the
        // flush, frames named them.
        let rx = rx.as_raw_fd();
        for c in done {
            rearm(ring, rx, c)?;
        }
        Ok(())
    }
}

/// Hands back the buffer of a receive completion and re-arms the receive if the
/// completion ended it.
fn rearm(ring: &mut Ring, rx: RawFd, c: &Completion) -> io::Result<()> {
    match Op::from_tag(c.tag) {
        Some(Op::RecvMulti) => {
            if let (true, Some(bid)) = (c.result >= 0, c.buffer) {
                ring.recycle(bid);
            }
            if c.more {
                return Ok(());
            }
            ring.recv_multi(rx, Op::RecvMulti.tag())
        }
        Some(Op::Recv) => ring.recv_from(rx, c.slot, HEADROOM, Op::Recv.tag()),
        _ => Ok(()),
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
