//! The TX slot bookkeeping and batch arithmetic of a worker, as pure code.
//!
//! Owns: which TX slots have no operation in flight (the free list), how many
//! datagrams each slot's send carries, when one more datagram fits a GSO batch,
//! how many segments one slot takes, and how many free slots a TUN read needs.
//! Nothing here touches the ring or a file descriptor, so every edge case is a
//! unit test.
//!
//! Invariants: a slot is in the free list exactly when no operation uses it; a
//! batch never exceeds [`GSO_MAX_SEGMENTS`] datagrams nor [`GSO_MAX_BYTES`] bytes.

use std::net::SocketAddr;

use crate::sys::socket;
use crate::sys::uring::Slot;

/// Most bytes one segmented send may carry: the UDP payload of a 64 KiB IPv4
/// datagram.
pub const GSO_MAX_BYTES: usize = 65_535 - 20 - 8;
/// Most datagrams one segmented send may carry (`UDP_MAX_SEGMENTS` of older
/// kernels; newer ones allow more).
pub const GSO_MAX_SEGMENTS: usize = 64;

/// What a completion is for: the ring's `u16` tag, typed. [`Op::tag`] and
/// [`Op::from_tag`] are the only conversions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A `sendmsg` from a TX slot.
    Send,
    /// A single-shot `recvmsg` into an RX slot.
    Recv,
    /// A multishot `recvmsg` into the provided-buffer ring.
    RecvMulti,
    /// The multishot poll on the TUN queue.
    TunPoll,
    /// The multishot read of the TUN queue into lent TX slots.
    TunRead,
    /// The read of the stop eventfd.
    Stop,
}

impl Op {
    /// The ring's user-data tag of this operation.
    pub const fn tag(self) -> u16 {
        match self {
            Op::Send => 2,
            Op::Recv => 3,
            Op::TunPoll => 5,
            Op::Stop => 6,
            Op::RecvMulti => 7,
            Op::TunRead => 8,
        }
    }

    /// The operation a completion's tag names, if any.
    pub const fn from_tag(tag: u16) -> Option<Op> {
        match tag {
            2 => Some(Op::Send),
            3 => Some(Op::Recv),
            5 => Some(Op::TunPoll),
            6 => Some(Op::Stop),
            7 => Some(Op::RecvMulti),
            8 => Some(Op::TunRead),
            _ => None,
        }
    }
}

/// The TX slots: which are free, and how many datagrams each one's send carries.
#[derive(Debug)]
pub struct TxSlots {
    free: Vec<Slot>,
    datagrams: Vec<u32>,
}

impl TxSlots {
    /// Slots `0..count`, all free, each carrying one datagram.
    pub fn new(count: u32) -> TxSlots {
        TxSlots {
            free: (0..count).rev().collect(),
            datagrams: vec![1; count as usize],
        }
    }

    /// How many slots are free.
    #[inline]
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Takes a free slot, if any.
    #[inline]
    pub fn take(&mut self) -> Option<Slot> {
        self.free.pop()
    }

    /// Returns a slot whose operation completed (or never started).
    #[inline]
    pub fn give_back(&mut self, slot: Slot) {
        self.free.push(slot);
    }

    /// Records that `slot`'s send carries `n` datagrams.
    #[inline]
    pub fn set_datagrams(&mut self, slot: Slot, n: u32) {
        self.datagrams[slot as usize] = n;
    }

    /// The datagrams `slot`'s send carries.
    #[inline]
    pub fn datagrams(&self, slot: Slot) -> u32 {
        self.datagrams[slot as usize]
    }
}

/// Free slots a TUN read needs: its own, and with TSO the two that a 64 KiB
/// super-packet's segments take at most.
pub const fn reserve(tso: bool) -> usize {
    if tso {
        3
    } else {
        1
    }
}

/// How many of `free` slots to lend the TUN read ring, which holds `lent` already.
///
/// A multishot read fills every lent slot it can before the worker sees any of
/// them, so each lent slot must find what forwarding it may take still free.
/// Without TSO that is nothing more: a packet leaves from its own slot (or is
/// copied into a GSO batch and its slot returned at once), so every free slot is
/// lent. With TSO, a 64 KiB super-packet keeps one more slot busy until its send
/// completes (the tail [`gathered_head`] leaves to be copied), and cutting one
/// without GSO takes two for a moment: so every lent slot keeps one free slot
/// beside it, and at least two stay free.
pub fn to_lend(free: usize, lent: usize, tso: bool) -> usize {
    if tso {
        (free.saturating_sub(lent) / 2).min(free.saturating_sub(2))
    } else {
        free
    }
}

/// Segments of `chunk` bytes (tunnel headers + one segment) one slot carries: with
/// GSO as many as one segmented send allows, without as many as fit the slot and
/// one `sendmmsg`.
pub fn per_slot(gso: bool, chunk: usize, slot_size: usize) -> usize {
    if gso {
        per_send(chunk)
    } else {
        (slot_size / chunk).clamp(1, socket::SEND_MANY_MAX)
    }
}

/// Datagrams of `chunk` bytes one `UDP_SEGMENT` send carries (at least 1).
#[inline]
pub fn per_send(chunk: usize) -> usize {
    (GSO_MAX_BYTES / chunk.max(1)).clamp(1, GSO_MAX_SEGMENTS)
}

/// The `UDP_SEGMENT` size of a send of `datagrams` datagrams of `size` bytes
/// (the last may be shorter): none for a single datagram.
#[inline]
pub fn segment_size(datagrams: usize, size: usize) -> Option<u16> {
    (datagrams > 1).then_some(size as u16)
}

/// Whether a super-packet's `count` segments leave in one gathered send: each
/// `chunk` bytes on the wire (tunnel headers, IP and TCP/UDP headers, payload)
/// but the last, which is `last` bytes; within the segment and byte limits of one
/// `UDP_SEGMENT` send.
#[inline]
pub fn one_send(count: usize, chunk: usize, last: usize) -> bool {
    (1..=GSO_MAX_SEGMENTS).contains(&count) && (count - 1) * chunk + last <= GSO_MAX_BYTES
}

/// How many of a super-packet's `count` segments (each `chunk` bytes on the wire
/// but the last, `last` bytes) leave in one gathered send from the slot it was
/// read into: all if they fit one `UDP_SEGMENT` send, else as many as one carries,
/// the rest then taking one more send (copied). 0 when that is not enough: a
/// small MSS makes more segments than two sends carry, and the whole
/// super-packet is copied.
pub fn gathered_head(count: usize, chunk: usize, last: usize) -> usize {
    if one_send(count, chunk, last) {
        return count;
    }
    let one = per_send(chunk);
    if count <= 2 * one {
        one
    } else {
        0
    }
}

/// Datagrams of one size for one peer, gathered in one slot from consecutive TUN
/// reads, to leave in one `UDP_SEGMENT` send.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    /// The slot the datagrams are gathered in.
    pub slot: Slot,
    /// The peer they go to.
    pub dest: SocketAddr,
    /// Where the first datagram starts in the slot.
    pub start: usize,
    /// Where the next one would start.
    pub end: usize,
    /// Bytes per datagram.
    pub size: usize,
    /// Datagrams gathered.
    pub count: usize,
}

impl Batch {
    /// Whether a datagram of `size` bytes to `dest` may join: same peer, same size,
    /// and the send stays within the segment and byte limits.
    #[inline]
    pub fn fits(&self, dest: SocketAddr, size: usize) -> bool {
        self.dest == dest
            && self.size == size
            && self.count < GSO_MAX_SEGMENTS
            && self.end + size - self.start <= GSO_MAX_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_send_holds_what_the_kernel_takes() {
        assert!(one_send(1, 100, 100));
        assert!(
            one_send(44, 1472, 1472),
            "44 full vxlan segments of a 1450 MTU"
        );
        assert!(!one_send(45, 1472, 1472), "65,007 + 1,472 bytes: too many");
        assert!(one_send(45, 1450, 500));
        assert!(
            !one_send(65, 100, 100),
            "more segments than one send carries"
        );
        assert!(!one_send(0, 100, 100));
    }

    #[test]
    fn one_send_size_and_segment() {
        assert_eq!(per_send(1472), 44);
        assert_eq!(per_send(100), GSO_MAX_SEGMENTS);
        assert_eq!(
            per_send(70_000),
            1,
            "a datagram larger than a send still goes alone"
        );
        assert_eq!(segment_size(1, 1472), None, "one datagram is a plain send");
        assert_eq!(segment_size(2, 1472), Some(1472));
    }

    #[test]
    fn a_64k_super_packet_is_gathered_but_for_its_last_segments() {
        // 46 vxlan segments of a 1450 MTU: 44 gathered, 2 copied.
        assert_eq!(gathered_head(46, 1472, 1000), 44);
        assert_eq!(gathered_head(44, 1472, 1472), 44, "all in one send");
        assert_eq!(gathered_head(1, 1472, 60), 1);
        // A 536-byte MSS: 107 segments of 610 bytes, one send carries 64.
        assert_eq!(gathered_head(107, 610, 610), 64);
        assert_eq!(
            gathered_head(129, 610, 610),
            0,
            "more than two sends: copied"
        );
    }

    const PEER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::new(10, 0, 0, 2),
        8285,
    ));

    fn batch(size: usize, count: usize) -> Batch {
        Batch {
            slot: 0,
            dest: PEER,
            start: 64,
            end: 64 + size * count,
            size,
            count,
        }
    }

    #[test]
    fn tags_round_trip_and_unknown_tags_are_none() {
        for op in [
            Op::Send,
            Op::Recv,
            Op::RecvMulti,
            Op::TunPoll,
            Op::TunRead,
            Op::Stop,
        ] {
            assert_eq!(Op::from_tag(op.tag()), Some(op));
        }
        assert_eq!(Op::from_tag(0), None);
        assert_eq!(Op::from_tag(u16::MAX), None);
    }

    #[test]
    fn a_batch_holds_at_most_64_segments() {
        assert!(batch(100, 63).fits(PEER, 100));
        assert!(!batch(100, 64).fits(PEER, 100));
    }

    #[test]
    fn a_batch_holds_at_most_65507_bytes() {
        // 65,507 = 65,535 - 20 - 8: exactly full still fits, one byte more does not.
        let b = Batch {
            end: 64 + GSO_MAX_BYTES - 1000,
            count: 1,
            ..batch(1000, 1)
        };
        assert_eq!(GSO_MAX_BYTES, 65_507);
        assert!(b.fits(PEER, 1000));
        let over = Batch {
            end: b.end + 1,
            ..b
        };
        assert!(!over.fits(PEER, 1000));
    }

    #[test]
    fn a_short_or_foreign_datagram_ends_the_batch() {
        let b = batch(1400, 3);
        assert!(!b.fits(PEER, 1399), "a last short segment leaves alone");
        let other: SocketAddr = "10.0.0.3:8285".parse().expect("literal");
        assert!(!b.fits(other, 1400));
    }

    #[test]
    fn with_tso_each_lent_slot_keeps_one_free_beside_it() {
        assert_eq!(to_lend(16, 0, false), 16, "without TSO, every free slot");
        assert_eq!(to_lend(16, 0, true), 8);
        assert_eq!(to_lend(8, 8, true), 0);
        assert_eq!(to_lend(9, 7, true), 1);
        assert_eq!(to_lend(4, 0, true), 2);
        assert_eq!(to_lend(3, 0, true), 1, "two stay free");
        assert_eq!(to_lend(2, 0, true), 0);
        assert_eq!(to_lend(1, 5, true), 0);
        for free in 0..=16 {
            for lent in 0..=16 - free {
                let k = to_lend(free, lent, true);
                assert!(free - k >= lent + k || k == 0, "{free} {lent} {k}");
                assert!(k == 0 || free - k >= 2, "{free} {lent} {k}");
            }
        }
    }

    #[test]
    fn segments_per_slot_with_and_without_gso() {
        let slot = 64 + 65_536;
        // GSO: bounded by the bytes of one send, then by the segment limit.
        assert_eq!(per_slot(true, 1472, slot), 65_507 / 1472);
        assert_eq!(per_slot(true, 100, slot), GSO_MAX_SEGMENTS);
        // sendmmsg: bounded by the slot, then by one sendmmsg.
        assert_eq!(per_slot(false, 1472, slot), slot / 1472);
        assert_eq!(per_slot(false, 100, slot), socket::SEND_MANY_MAX);
        // A chunk larger than the limit still takes one slot each.
        assert_eq!(per_slot(true, 70_000, slot), 1);
        assert_eq!(per_slot(false, 70_000, slot), 1);
    }

    #[test]
    fn a_read_reserves_more_slots_with_tso() {
        assert_eq!(reserve(false), 1);
        assert_eq!(reserve(true), 3);
    }

    #[test]
    fn slots_are_handed_out_lowest_first_and_come_back() {
        let mut s = TxSlots::new(2);
        assert_eq!(s.free(), 2);
        assert_eq!(s.take(), Some(0));
        assert_eq!(s.take(), Some(1));
        assert_eq!(s.take(), None);
        s.set_datagrams(1, 7);
        assert_eq!(s.datagrams(1), 7);
        assert_eq!(s.datagrams(0), 1);
        s.give_back(1);
        assert_eq!(s.free(), 1);
    }
}
