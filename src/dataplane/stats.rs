//! Per-worker counters: packets and bytes per direction, drops per reason, errors.
//!
//! Each worker is the only writer of its own [`Stats`], so an increment is a
//! relaxed load and store (no locked read-modify-write on the hot path); readers
//! (the SIGUSR1 report, the exit summary) see each counter's latest value.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::drop_reason::DropReason;

/// What a worker counts, besides drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Packets read from the TUN queue.
    TunRxPackets,
    /// Bytes read from the TUN queue.
    TunRxBytes,
    /// Datagrams sent to peers.
    TunnelTxPackets,
    /// Bytes of those datagrams (UDP payload).
    TunnelTxBytes,
    /// Datagrams received from the tunnel socket.
    TunnelRxPackets,
    /// Bytes of those datagrams (UDP payload).
    TunnelRxBytes,
    /// Packets written to the TUN queue.
    TunTxPackets,
    /// Bytes written to the TUN queue.
    TunTxBytes,
    /// ICMP destination-unreachable messages written back for packets without a lease.
    IcmpUnreachable,
    /// ICMP messages not sent because of the rate limit.
    IcmpRateLimited,
    /// Failed sends to a peer (errno from `sendmsg`).
    SendErrors,
    /// Failed receives on the tunnel socket.
    RecvErrors,
    /// Failed reads from the TUN queue.
    TunReadErrors,
    /// Failed writes to the TUN queue.
    TunWriteErrors,
    /// TUN reads that were segmentation-offload super-packets, cut in userspace.
    TsoSuperPackets,
    /// Sends that carried several datagrams (`UDP_SEGMENT`).
    GsoSends,
    /// Super-packets whose segments left in one send gathered from the slot they
    /// were read into: headers written beside them, no payload copied.
    GatheredSends,
    /// Receives that returned several coalesced datagrams (`UDP_GRO`).
    GroReceives,
    /// TUN writes that carried several coalesced TCP segments.
    CoalescedWrites,
    /// Segments sent one by one because the kernel refused a segmented send.
    GsoFallbacks,
    /// Packets dropped because every send buffer was in flight.
    NoSendBuffer,
    /// Multishot receives that stopped because every provided buffer was in use
    /// (`ENOBUFS`). Back-pressure, not a loss: the datagrams wait in the socket
    /// and the receive is re-armed.
    RecvRingEmpty,
    /// Newer table snapshots the worker switched to. The generation is compared
    /// once per batch, so a table replaced before the worker's next batch is
    /// skipped, and not counted.
    TableUpdatesSeen,
}

impl Counter {
    /// Every counter, in declaration order.
    pub const ALL: [Counter; 23] = [
        Counter::TunRxPackets,
        Counter::TunRxBytes,
        Counter::TunnelTxPackets,
        Counter::TunnelTxBytes,
        Counter::TunnelRxPackets,
        Counter::TunnelRxBytes,
        Counter::TunTxPackets,
        Counter::TunTxBytes,
        Counter::IcmpUnreachable,
        Counter::IcmpRateLimited,
        Counter::SendErrors,
        Counter::RecvErrors,
        Counter::TunReadErrors,
        Counter::TunWriteErrors,
        Counter::TsoSuperPackets,
        Counter::GsoSends,
        Counter::GatheredSends,
        Counter::GroReceives,
        Counter::CoalescedWrites,
        Counter::GsoFallbacks,
        Counter::NoSendBuffer,
        Counter::RecvRingEmpty,
        Counter::TableUpdatesSeen,
    ];

    /// A stable `snake_case` name.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::TunRxPackets => "tun_rx_packets",
            Counter::TunRxBytes => "tun_rx_bytes",
            Counter::TunnelTxPackets => "tunnel_tx_packets",
            Counter::TunnelTxBytes => "tunnel_tx_bytes",
            Counter::TunnelRxPackets => "tunnel_rx_packets",
            Counter::TunnelRxBytes => "tunnel_rx_bytes",
            Counter::TunTxPackets => "tun_tx_packets",
            Counter::TunTxBytes => "tun_tx_bytes",
            Counter::IcmpUnreachable => "icmp_unreachable",
            Counter::IcmpRateLimited => "icmp_rate_limited",
            Counter::SendErrors => "send_errors",
            Counter::RecvErrors => "recv_errors",
            Counter::TunReadErrors => "tun_read_errors",
            Counter::TunWriteErrors => "tun_write_errors",
            Counter::TsoSuperPackets => "tso_super_packets",
            Counter::GsoSends => "gso_sends",
            Counter::GatheredSends => "gathered_sends",
            Counter::GroReceives => "gro_receives",
            Counter::CoalescedWrites => "coalesced_writes",
            Counter::GsoFallbacks => "gso_fallbacks",
            Counter::NoSendBuffer => "no_send_buffer",
            Counter::RecvRingEmpty => "recv_ring_empty",
            Counter::TableUpdatesSeen => "table_updates_seen",
        }
    }
}

/// One worker's counters.
#[derive(Debug, Default)]
pub struct Stats {
    counters: [AtomicU64; Counter::ALL.len()],
    drops: [AtomicU64; DropReason::ALL.len()],
    /// Datagrams and bytes per peer.
    pub peers: super::peers::PeerCounters,
}

/// Adds `n` to a counter that only the calling thread writes.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl Stats {
    /// Adds `n` to `counter` (only the owning worker may call this).
    #[inline]
    pub fn add(&self, counter: Counter, n: u64) {
        bump(&self.counters[counter as usize], n);
    }

    /// Counts one packet dropped for `reason` (only the owning worker may call this).
    #[inline]
    pub fn count_drop(&self, reason: DropReason) {
        bump(&self.drops[reason as usize], 1);
    }

    /// The current value of `counter`.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].load(Ordering::Relaxed)
    }

    /// The packets dropped for `reason` so far.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Ordering::Relaxed)
    }

    /// The total of every drop reason.
    pub fn total_drops(&self) -> u64 {
        DropReason::ALL.iter().map(|&d| self.drops(d)).sum()
    }
}

/// A printable report of several workers' counters: one line per worker with the
/// traffic counters, then every non-zero drop reason and error.
pub struct Report<'a>(pub &'a [std::sync::Arc<Stats>]);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            let mut line = format!("worker {i}:");
            for c in Counter::ALL {
                let v = s.get(c);
                if v != 0 || (c as usize) < Counter::IcmpUnreachable as usize {
                    let _ = write!(line, " {}={v}", c.name());
                }
            }
            for d in DropReason::ALL {
                let v = s.drops(d);
                if v != 0 {
                    let _ = write!(line, " drop_{}={v}", d.name());
                }
            }
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_and_reports() {
        let s = Arc::new(Stats::default());
        s.add(Counter::TunRxPackets, 3);
        s.add(Counter::TunRxBytes, 300);
        s.count_drop(DropReason::SpoofedSource);
        s.count_drop(DropReason::SpoofedSource);
        assert_eq!(s.get(Counter::TunRxPackets), 3);
        assert_eq!(s.drops(DropReason::SpoofedSource), 2);
        assert_eq!(s.total_drops(), 2);
        let text = Report(&[s.clone(), Arc::new(Stats::default())]).to_string();
        assert!(
            text.contains("worker 0: tun_rx_packets=3 tun_rx_bytes=300"),
            "{text}"
        );
        assert!(text.contains("drop_spoofed_source=2"), "{text}");
        assert!(text.contains("worker 1: tun_rx_packets=0"), "{text}");
    }

    #[test]
    fn counter_table_is_in_declaration_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
