//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! [`data`] sums 32-bit native-endian words into a 64-bit accumulator, which the
//! compiler vectorizes, and converts to network order once at the end: the one's
//! complement sum is independent of byte order (RFC 1071 §2(B)), so no per-word swap
//! is needed. A 64 KiB super-packet has 16 Ki words, far below the 2^32 that could
//! overflow the accumulator.
//!
//! Sums are kept *uncomplemented* until the last step: combine a pseudo-header sum
//! with a payload sum with [`combine`], then store `!sum` in the header.

use core::net::{Ipv4Addr, Ipv6Addr};

/// Folds a 64-bit accumulator of 16-bit words into a 16-bit one's complement sum.
#[inline]
const fn fold(mut acc: u64) -> u16 {
    acc = (acc >> 32) + (acc & 0xffff_ffff);
    acc = (acc >> 32) + (acc & 0xffff_ffff);
    acc = (acc >> 16) + (acc & 0xffff);
    acc = (acc >> 16) + (acc & 0xffff);
    acc as u16
}

/// The one's complement sum of `bytes` taken as big-endian 16-bit words (an odd
/// trailing byte is padded with zero), not complemented.
#[inline]
pub fn data(bytes: &[u8]) -> u16 {
    let (words, rest) = bytes.as_chunks::<4>();
    let mut acc: u64 = words
        .iter()
        .map(|w| u64::from(u32::from_ne_bytes(*w)))
        .sum();
    let (pairs, tail) = rest.as_chunks::<2>();
    for p in pairs {
        acc += u64::from(u16::from_ne_bytes(*p));
    }
    if let [last] = tail {
        acc += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    // Summed in native order: convert the folded result to the value of the
    // big-endian words (a no-op on big-endian machines).
    u16::from_be(fold(acc))
}

/// One's complement sum of several partial sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The sum of the IPv4 pseudo-header (RFC 768, RFC 793): source, destination,
/// protocol and the transport length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u16 {
    let s = src.to_bits();
    let d = dst.to_bits();
    fold(
        u64::from(s >> 16)
            + u64::from(s & 0xffff)
            + u64::from(d >> 16)
            + u64::from(d & 0xffff)
            + u64::from(protocol)
            + u64::from(len),
    )
}

/// The sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, the
/// upper-layer packet length and the next header value.
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u16 {
    let mut acc: u64 = 0;
    for seg in src.segments().into_iter().chain(dst.segments()) {
        acc += u64::from(seg);
    }
    acc += u64::from(len >> 16) + u64::from(len & 0xffff) + u64::from(next_header);
    fold(acc)
}

/// Updates a stored checksum `old_csum` after one 16-bit word of the covered data
/// changed from `old` to `new`: RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, which,
/// unlike eqn. 2, never produces the 0x0000 that RFC 1071 forbids.
#[inline]
pub fn update(old_csum: u16, old: u16, new: u16) -> u16 {
    !combine(&[!old_csum, !old, new])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: the textbook per-word loop of RFC 1071.
    fn naive(bytes: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for c in bytes.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            acc += u32::from(w);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        assert_eq!(
            data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn ipv4_header_golden() {
        // The inner IPv4 header of an ICMP echo (100.96.1.2 -> 100.96.2.2, TTL 63)
        // captured from the kernel's vxlan device (tests/data/kernel-vxlan.pcap,
        // frame 1); the kernel stored checksum 0x01cb.
        let hdr = [
            0x45, 0x00, 0x00, 0x54, 0x6e, 0x1a, 0x40, 0x00, 0x3f, 0x01, 0x01, 0xcb, 0x64, 0x60,
            0x01, 0x02, 0x64, 0x60, 0x02, 0x02,
        ];
        assert_eq!(data(&hdr), 0xffff);
        let mut zeroed = hdr;
        zeroed[10..12].fill(0);
        assert_eq!(!data(&zeroed), 0x01cb);
        assert_eq!(!data(&zeroed), naive_complement(&zeroed));
    }

    fn naive_complement(b: &[u8]) -> u16 {
        !naive(b)
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let mut hdr = [
            0x45u8, 0x00, 0x00, 0x54, 0x5b, 0x35, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 100, 96, 1,
            2, 100, 96, 2, 2,
        ];
        let csum = !data(&hdr);
        hdr[10..12].copy_from_slice(&csum.to_be_bytes());
        for ttl in (0..=0x40u8).rev() {
            let old = u16::from_be_bytes([hdr[8], hdr[9]]);
            hdr[8] = ttl;
            let new = u16::from_be_bytes([hdr[8], hdr[9]]);
            let upd = update(u16::from_be_bytes([hdr[10], hdr[11]]), old, new);
            hdr[10..12].copy_from_slice(&upd.to_be_bytes());
            assert_eq!(data(&hdr), 0xffff, "ttl {ttl}");
        }
    }

    proptest::proptest! {
        #[test]
        fn wide_sum_equals_naive(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..3000), skip in 0usize..8) {
            let b = &bytes[skip.min(bytes.len())..];
            proptest::prop_assert_eq!(data(b), naive(b));
        }

        #[test]
        fn update_equals_recompute(mut bytes in proptest::collection::vec(proptest::num::u8::ANY, 2..200), idx in 0usize..100, new in proptest::num::u16::ANY) {
            let words = bytes.len() / 2;
            let i = (idx % words) * 2;
            let stored = !data(&bytes);
            let old = u16::from_be_bytes([bytes[i], bytes[i + 1]]);
            bytes[i..i + 2].copy_from_slice(&new.to_be_bytes());
            let upd = update(stored, old, new);
            // Equal as one's complement numbers (0x0000 and 0xffff are both zero).
            let want = !data(&bytes);
            proptest::prop_assert!(upd == want || (upd == 0xffff && want == 0) || (upd == 0 && want == 0xffff));
        }

        #[test]
        fn combine_is_concatenation(a in proptest::collection::vec(proptest::num::u8::ANY, 0..100), b in proptest::collection::vec(proptest::num::u8::ANY, 0..100)) {
            // Only for an even-length first part, as word alignment must hold.
            let a = &a[..a.len() & !1];
            let mut ab = a.to_vec();
            ab.extend_from_slice(&b);
            let lhs = combine(&[data(a), data(&b)]);
            let rhs = data(&ab);
            proptest::prop_assert!(lhs == rhs || (lhs ^ rhs) == 0xffff && (lhs == 0 || rhs == 0));
        }
    }

    #[test]
    fn pseudo_headers_match_manual_layout() {
        let (s, d) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
        let mut ph = Vec::new();
        ph.extend_from_slice(&s.octets());
        ph.extend_from_slice(&d.octets());
        ph.extend_from_slice(&[0, 17, 0, 58]);
        assert_eq!(pseudo_header_v4(s, d, 17, 58), data(&ph));

        let (s6, d6): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::1".parse().expect("valid address"),
            "2001:db8::2".parse().expect("valid address"),
        );
        let mut ph6 = Vec::new();
        ph6.extend_from_slice(&s6.octets());
        ph6.extend_from_slice(&d6.octets());
        ph6.extend_from_slice(&70000u32.to_be_bytes());
        ph6.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(pseudo_header_v6(s6, d6, 17, 70000), data(&ph6));
    }
}
