//! Per-peer traffic counters of one worker: datagrams and bytes sent to and
//! received from each peer, keyed by the peer's public IPv4 address.
//!
//! The worker is the only writer. A fixed open-addressed table of
//! [`CAPACITY`] entries is allocated once; an entry's key is claimed with a
//! release store the first time the worker sees the address and never changes
//! afterwards, so readers (the status socket) can walk the table at any time
//! and see each counter's latest value. Addresses beyond the capacity are not
//! counted per peer (the per-worker totals still count them), and
//! [`PeerCounters::overflow`] says how many datagrams that was.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Peers one worker can count separately (a power of two).
pub const CAPACITY: usize = 1024;

/// What a worker counted for one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerTraffic {
    /// Datagrams sent to the peer.
    pub tx_packets: u64,
    /// Bytes of those datagrams (UDP payload).
    pub tx_bytes: u64,
    /// Datagrams received from the peer and delivered.
    pub rx_packets: u64,
    /// Bytes of those datagrams (UDP payload).
    pub rx_bytes: u64,
}

impl std::ops::AddAssign for PeerTraffic {
    fn add_assign(&mut self, o: PeerTraffic) {
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
    }
}

#[derive(Debug, Default)]
struct Entry {
    /// The peer's address as a big-endian `u32`; 0 while the entry is free.
    key: AtomicU32,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
}

/// One worker's per-peer counters.
#[derive(Debug)]
pub struct PeerCounters {
    entries: Box<[Entry]>,
    overflow: AtomicU64,
}

impl Default for PeerCounters {
    fn default() -> Self {
        PeerCounters {
            entries: (0..CAPACITY).map(|_| Entry::default()).collect(),
            overflow: AtomicU64::new(0),
        }
    }
}

/// Adds `n` to a counter only the calling thread writes.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl PeerCounters {
    /// The entry of `ip`, claimed if new (only the owning worker may call this).
    #[inline]
    fn entry(&self, ip: Ipv4Addr) -> Option<&Entry> {
        let key = u32::from(ip);
        if key == 0 {
            return None;
        }
        let mask = CAPACITY - 1;
        // Fibonacci hashing spreads consecutive addresses.
        let mut i = (key.wrapping_mul(0x9E37_79B9) >> 22) as usize & mask;
        for _ in 0..CAPACITY {
            let e = &self.entries[i];
            match e.key.load(Ordering::Relaxed) {
                k if k == key => return Some(e),
                0 => {
                    e.key.store(key, Ordering::Release);
                    return Some(e);
                }
                _ => i = (i + 1) & mask,
            }
        }
        None
    }

    /// Counts `packets` datagrams of `bytes` in all sent to `ip`.
    #[inline]
    pub fn sent(&self, ip: Ipv4Addr, packets: u64, bytes: u64) {
        match self.entry(ip) {
            Some(e) => {
                bump(&e.tx_packets, packets);
                bump(&e.tx_bytes, bytes);
            }
            None => bump(&self.overflow, packets),
        }
    }

    /// Counts one datagram of `bytes` received from `ip` and delivered.
    #[inline]
    pub fn received(&self, ip: Ipv4Addr, bytes: u64) {
        match self.entry(ip) {
            Some(e) => {
                bump(&e.rx_packets, 1);
                bump(&e.rx_bytes, bytes);
            }
            None => bump(&self.overflow, 1),
        }
    }

    /// What was counted for `ip` (zeros if nothing was).
    pub fn get(&self, ip: Ipv4Addr) -> PeerTraffic {
        let key = u32::from(ip);
        let mask = CAPACITY - 1;
        let mut i = (key.wrapping_mul(0x9E37_79B9) >> 22) as usize & mask;
        for _ in 0..CAPACITY {
            let e = &self.entries[i];
            match e.key.load(Ordering::Acquire) {
                k if k == key && key != 0 => {
                    return PeerTraffic {
                        tx_packets: e.tx_packets.load(Ordering::Relaxed),
                        tx_bytes: e.tx_bytes.load(Ordering::Relaxed),
                        rx_packets: e.rx_packets.load(Ordering::Relaxed),
                        rx_bytes: e.rx_bytes.load(Ordering::Relaxed),
                    }
                }
                0 => break,
                _ => i = (i + 1) & mask,
            }
        }
        PeerTraffic::default()
    }

    /// Datagrams not counted per peer because the table was full.
    pub fn overflow(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_reports_zeros_for_strangers() {
        let c = PeerCounters::default();
        let a = Ipv4Addr::new(192, 0, 2, 1);
        let b = Ipv4Addr::new(192, 0, 2, 2);
        c.sent(a, 3, 4200);
        c.sent(a, 1, 100);
        c.received(a, 1400);
        c.received(b, 60);
        assert_eq!(
            c.get(a),
            PeerTraffic {
                tx_packets: 4,
                tx_bytes: 4300,
                rx_packets: 1,
                rx_bytes: 1400
            }
        );
        assert_eq!(c.get(b).rx_packets, 1);
        assert_eq!(c.get(Ipv4Addr::new(192, 0, 2, 3)), PeerTraffic::default());
        assert_eq!(c.overflow(), 0);
    }

    #[test]
    fn a_full_table_counts_the_rest_as_overflow() {
        let c = PeerCounters::default();
        for n in 1..=CAPACITY as u32 {
            c.sent(Ipv4Addr::from(0x0a00_0000 + n), 1, 10);
        }
        for n in 1..=CAPACITY as u32 {
            assert_eq!(c.get(Ipv4Addr::from(0x0a00_0000 + n)).tx_packets, 1);
        }
        c.sent(Ipv4Addr::new(198, 51, 100, 7), 5, 50);
        assert_eq!(c.overflow(), 5);
        assert_eq!(
            c.get(Ipv4Addr::new(198, 51, 100, 7)),
            PeerTraffic::default()
        );
        // 0.0.0.0 is never a key.
        c.received(Ipv4Addr::UNSPECIFIED, 1);
        assert_eq!(c.overflow(), 6);
    }
}
