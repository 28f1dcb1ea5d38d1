//! Per-peer traffic counters of one worker: datagrams and bytes sent to and
//! received from each peer, keyed by the peer's public address (either family:
//! a dual-stack peer is counted under each address it was reached at).
//!
//! The worker is the only writer. A fixed open-addressed table of
//! [`CAPACITY`] entries is allocated once; an entry's key (the address as an
//! IPv6 address, IPv4 ones mapped, in two halves) is written the first time the
//! worker sees the address and published by a release store of its `claimed`
//! flag; it never changes afterwards, so readers (the status socket) can walk the table at any time
//! and see each counter's latest value. Addresses beyond the capacity are not
//! counted per peer (the per-worker totals still count them), and
//! [`PeerCounters::overflow`] says how many datagrams that was.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    /// The key's high and low halves, valid once `claimed` is set.
    key_hi: AtomicU64,
    key_lo: AtomicU64,
    claimed: AtomicBool,
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

/// The table key of `ip`: the address as 128 bits, IPv4 mapped (and an
/// IPv4-mapped IPv6 address so the same as the IPv4 one); `None` for an
/// unspecified address, which names no peer.
#[inline]
fn key_of(ip: IpAddr) -> Option<u128> {
    let v6 = match ip.to_canonical() {
        IpAddr::V4(a) if !a.is_unspecified() => a.to_ipv6_mapped(),
        IpAddr::V6(a) if !a.is_unspecified() => a,
        _ => return None,
    };
    Some(u128::from(v6))
}

/// Where the probe for `key` starts.
#[inline]
fn home(key: u128) -> usize {
    let folded = (key as u64) ^ ((key >> 64) as u64);
    // Fibonacci hashing spreads consecutive addresses.
    (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize & (CAPACITY - 1)
}

impl Entry {
    /// The entry's key, if it is claimed (`order` for the flag).
    #[inline]
    fn key(&self, order: Ordering) -> Option<u128> {
        self.claimed.load(order).then(|| {
            u128::from(self.key_hi.load(Ordering::Relaxed)) << 64
                | u128::from(self.key_lo.load(Ordering::Relaxed))
        })
    }
}

impl PeerCounters {
    /// The entry of `ip`, claimed if new (only the owning worker may call this).
    #[inline]
    fn entry(&self, ip: IpAddr) -> Option<&Entry> {
        let key = key_of(ip)?;
        let mut i = home(key);
        for _ in 0..CAPACITY {
            let e = &self.entries[i];
            match e.key(Ordering::Relaxed) {
                Some(k) if k == key => return Some(e),
                None => {
                    e.key_hi.store((key >> 64) as u64, Ordering::Relaxed);
                    e.key_lo.store(key as u64, Ordering::Relaxed);
                    // Publishes the key: a reader that sees the flag sees both halves.
                    e.claimed.store(true, Ordering::Release);
                    return Some(e);
                }
                Some(_) => i = (i + 1) & (CAPACITY - 1),
            }
        }
        None
    }

    /// Counts `packets` datagrams of `bytes` in all sent to `ip`.
    #[inline]
    pub fn sent(&self, ip: IpAddr, packets: u64, bytes: u64) {
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
    pub fn received(&self, ip: IpAddr, bytes: u64) {
        match self.entry(ip) {
            Some(e) => {
                bump(&e.rx_packets, 1);
                bump(&e.rx_bytes, bytes);
            }
            None => bump(&self.overflow, 1),
        }
    }

    /// What was counted for `ip` (zeros if nothing was).
    pub fn get(&self, ip: IpAddr) -> PeerTraffic {
        let Some(key) = key_of(ip) else {
            return PeerTraffic::default();
        };
        let mut i = home(key);
        for _ in 0..CAPACITY {
            let e = &self.entries[i];
            match e.key(Ordering::Acquire) {
                Some(k) if k == key => {
                    return PeerTraffic {
                        tx_packets: e.tx_packets.load(Ordering::Relaxed),
                        tx_bytes: e.tx_bytes.load(Ordering::Relaxed),
                        rx_packets: e.rx_packets.load(Ordering::Relaxed),
                        rx_bytes: e.rx_bytes.load(Ordering::Relaxed),
                    }
                }
                None => break,
                Some(_) => i = (i + 1) & (CAPACITY - 1),
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
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal")
    }

    #[test]
    fn counts_per_address_and_reports_zeros_for_strangers() {
        let c = PeerCounters::default();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
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
        assert_eq!(c.get(ip("192.0.2.3")), PeerTraffic::default());
        assert_eq!(c.overflow(), 0);
    }

    #[test]
    fn ipv6_addresses_are_keys_and_mapped_ones_are_their_ipv4_address() {
        let c = PeerCounters::default();
        c.sent(ip("2001:db8::1"), 2, 200);
        // An address whose low 64 bits are zero is a key like any other.
        c.sent(ip("2001:db8:1::"), 1, 10);
        c.received(ip("::ffff:192.0.2.1"), 50);
        c.received(ip("192.0.2.1"), 50);
        assert_eq!(c.get(ip("2001:db8::1")).tx_packets, 2);
        assert_eq!(c.get(ip("2001:db8:1::")).tx_bytes, 10);
        assert_eq!(c.get(ip("192.0.2.1")).rx_packets, 2);
        assert_eq!(c.get(ip("::ffff:192.0.2.1")).rx_bytes, 100);
        assert_eq!(c.get(ip("2001:db8::2")), PeerTraffic::default());
    }

    #[test]
    fn a_full_table_counts_the_rest_as_overflow() {
        let c = PeerCounters::default();
        let nth = |n: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
        for n in 1..=CAPACITY as u32 {
            c.sent(nth(n), 1, 10);
        }
        for n in 1..=CAPACITY as u32 {
            assert_eq!(c.get(nth(n)).tx_packets, 1);
        }
        c.sent(ip("198.51.100.7"), 5, 50);
        assert_eq!(c.overflow(), 5);
        assert_eq!(c.get(ip("198.51.100.7")), PeerTraffic::default());
        // Neither unspecified address is ever a key.
        c.received(ip("0.0.0.0"), 1);
        c.received(ip("::"), 1);
        assert_eq!(c.overflow(), 7);
    }
}
