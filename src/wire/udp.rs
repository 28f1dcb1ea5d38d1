//! UDP headers (RFC 768) and their checksum over the IPv4 (RFC 768) or IPv6
//! (RFC 8200 §8.1) pseudo-header: the outer transport of both tunnels.
//!
//! Owns the 8-byte header and the datagram bounds. Invariant: after
//! [`Packet::new_checked`] the length field is between 8 and the buffer length, so
//! no accessor panics; bytes past it are never part of [`Packet::payload`].

use core::net::{Ipv4Addr, Ipv6Addr};

use super::{checksum, Error, IpProtocol, Result};

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// Offset of the checksum field from the start of the header: virtio's
/// `csum_offset` for UDP.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// A view of a UDP datagram over a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic unless the caller
    /// has proved what [`check_len`](Self::check_len) checks.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header fits ([`Error::Truncated`]), then that
    /// 8 ≤ length field ≤ buffer length ([`Error::TotalLen`]).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN || field_len > len {
            return Err(Error::TotalLen);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length of the datagram, header included, in bytes.
    #[allow(
        clippy::len_without_is_empty,
        reason = "the field is the datagram length, not a collection size"
    )]
    #[inline]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Checksum as stored (0: none was computed, allowed over IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload: from the end of the header to `len()`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        let end = self.datagram_end();
        &d[HEADER_LEN.min(end)..end]
    }

    /// End of the datagram, clamped to the buffer so that a length changed by a
    /// setter after the check cannot make an accessor panic.
    #[inline]
    fn datagram_end(&self) -> usize {
        usize::from(self.len()).min(self.buffer.as_ref().len())
    }

    /// Sum of the datagram (header with its stored checksum, and payload).
    #[inline]
    fn datagram_sum(&self) -> u16 {
        checksum::data(&self.buffer.as_ref()[..self.datagram_end()])
    }

    #[inline]
    fn pseudo_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        checksum::pseudo_header_v4(src, dst, IpProtocol::Udp.into(), self.len())
    }

    #[inline]
    fn pseudo_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> u16 {
        checksum::pseudo_header_v6(src, dst, IpProtocol::Udp.into(), u32::from(self.len()))
    }

    /// True when the checksum verifies over the IPv4 pseudo-header, or when it is
    /// 0, which over IPv4 means the sender computed none (RFC 768).
    #[inline]
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0
            || checksum::combine(&[self.pseudo_v4(src, dst), self.datagram_sum()]) == 0xffff
    }

    /// True when the checksum verifies over the IPv6 pseudo-header. A stored 0 is
    /// invalid over IPv6 (RFC 8200 §8.1) and never verifies.
    #[inline]
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        self.checksum() != 0
            && checksum::combine(&[self.pseudo_v6(src, dst), self.datagram_sum()]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the length of the datagram, header included.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Stores a checksum; 0 means "none" over IPv4.
    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    /// Stores the complement of a full sum, sending a computed 0 as 0xffff: 0 in
    /// the field means "no checksum" (RFC 768).
    #[inline]
    fn store_sum(&mut self, sum: u16) {
        let csum = !sum;
        self.set_checksum(if csum == 0 { 0xffff } else { csum });
    }

    /// Computes and stores the checksum over the IPv4 pseudo-header and the
    /// `len()` bytes of the datagram.
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let sum = checksum::combine(&[self.pseudo_v4(src, dst), self.datagram_sum()]);
        self.store_sum(sum);
    }

    /// Computes and stores the checksum over the IPv6 pseudo-header and the
    /// `len()` bytes of the datagram.
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let sum = checksum::combine(&[self.pseudo_v6(src, dst), self.datagram_sum()]);
        self.store_sum(sum);
    }

    /// The payload (from the end of the header to `len()`), mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.datagram_end();
        &mut self.buffer.as_mut()[HEADER_LEN.min(end)..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Reads a big-endian `u16` from a two-byte `field` range.
#[inline]
fn read_u16(d: &[u8], r: core::ops::Range<usize>) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&d[r]);
    u16::from_be_bytes(b)
}

/// Writes a big-endian `u16` into a two-byte `field` range.
#[inline]
fn write_u16(d: &mut [u8], r: core::ops::Range<usize>, v: u16) {
    d[r].copy_from_slice(&v.to_be_bytes());
}

/// A UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length in bytes; `HEADER_LEN + payload_len` must fit in a `u16`.
    pub payload_len: usize,
}

impl Repr {
    /// Reads a checked datagram's header. The checksum is not verified here: it
    /// needs the IP addresses (see [`Packet::verify_checksum_v4`]).
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: packet.payload().len(),
        })
    }

    /// Header plus payload length.
    #[inline]
    pub const fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header into `packet`, which must be at least [`HEADER_LEN`] bytes
    /// long, with checksum 0. Once the payload is in place, call
    /// [`Packet::fill_checksum_v4`] or [`Packet::fill_checksum_v6`], or leave 0
    /// ("no checksum") over IPv4.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        debug_assert!(
            self.total_len() <= usize::from(u16::MAX),
            "UDP datagram too long"
        );
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(self.total_len() as u16);
        packet.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A datagram to flannel's udp backend port 8285 (10.0.0.1:51234 →
    /// 10.0.0.2:8285), payload "hello, ringlay\n", checksum 0x6279 computed by
    /// hand over the IPv4 pseudo-header.
    const V4: [u8; 23] = [
        0xc8, 0x22, 0x20, 0x5d, 0x00, 0x17, 0x62, 0x79, // header
        0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x2c, 0x20, 0x72, 0x69, 0x6e, 0x67, 0x6c, 0x61, 0x79, 0x0a,
    ];

    /// The UDP part of a DNS query for `example.com`, fd00:100:96:1::2 port 40000
    /// → fd00:100:96:2::2 port 53, checksum 0x5c61 (see the IPv6 tests).
    const V6: [u8; 37] = [
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x25, 0x5c, 0x61, // header
        0x3a, 0x2b, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78,
        0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00, 0x01,
    ];

    fn src6() -> Ipv6Addr {
        "fd00:100:96:1::2".parse().expect("literal address")
    }

    fn dst6() -> Ipv6Addr {
        "fd00:100:96:2::2".parse().expect("literal address")
    }

    #[test]
    fn parses_and_verifies_golden_v4() {
        let p = Packet::new_checked(&V4[..]).expect("valid datagram");
        assert_eq!(
            (p.src_port(), p.dst_port(), p.len(), p.checksum()),
            (51234, 8285, 23, 0x6279)
        );
        assert_eq!(p.payload(), b"hello, ringlay\n");
        assert!(p.verify_checksum_v4(SRC4, DST4));
        assert!(!p.verify_checksum_v4(SRC4, Ipv4Addr::new(10, 0, 0, 3)));
        assert_eq!(
            Repr::parse(&p),
            Ok(Repr {
                src_port: 51234,
                dst_port: 8285,
                payload_len: 15
            })
        );
    }

    #[test]
    fn emits_and_fills_golden_v4() {
        let mut buf = [0u8; 23];
        buf[HEADER_LEN..].copy_from_slice(b"hello, ringlay\n");
        let mut p = Packet::new_unchecked(&mut buf[..]);
        Repr {
            src_port: 51234,
            dst_port: 8285,
            payload_len: 15,
        }
        .emit(&mut p);
        assert_eq!(p.checksum(), 0);
        p.fill_checksum_v4(SRC4, DST4);
        assert_eq!(buf, V4);
    }

    #[test]
    fn zero_checksum_means_none_over_v4_only() {
        let mut buf = V4;
        buf[6..8].fill(0);
        let p = Packet::new_checked(&buf[..]).expect("valid");
        assert!(p.verify_checksum_v4(SRC4, DST4));
        assert!(!p.verify_checksum_v6(src6(), dst6()));
    }

    #[test]
    fn parses_and_verifies_golden_v6() {
        let p = Packet::new_checked(&V6[..]).expect("valid datagram");
        assert_eq!(
            (p.src_port(), p.dst_port(), p.len(), p.checksum()),
            (40000, 53, 37, 0x5c61)
        );
        assert!(p.verify_checksum_v6(src6(), dst6()));
        assert!(!p.verify_checksum_v6(dst6(), dst6()));
        let mut buf = V6;
        buf[20] ^= 0x01; // flip a bit in the DNS name
        assert!(!Packet::new_checked(&buf[..])
            .expect("valid")
            .verify_checksum_v6(src6(), dst6()));
    }

    #[test]
    fn fills_golden_v6() {
        let mut buf = V6;
        buf[6..8].fill(0);
        Packet::new_unchecked(&mut buf[..]).fill_checksum_v6(src6(), dst6());
        assert_eq!(buf, V6);
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose a payload word that makes the complemented sum 0: with checksum
        // and last word zero, the sum of everything else is s, so a last word of
        // !s brings the total to 0xffff.
        let mut buf = [0u8; 10];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        Repr {
            src_port: 1,
            dst_port: 2,
            payload_len: 2,
        }
        .emit(&mut p);
        let s = checksum::combine(&[p.pseudo_v4(SRC4, DST4), p.datagram_sum()]);
        p.payload_mut().copy_from_slice(&(!s).to_be_bytes());
        p.fill_checksum_v4(SRC4, DST4);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum_v4(SRC4, DST4));
    }

    #[test]
    fn length_errors() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&V4[..n]),
                Err(Error::Truncated),
                "len {n}"
            );
        }
        let mut b = V4;
        for bad in [0u16, 7, 24, 0xffff] {
            b[4..6].copy_from_slice(&bad.to_be_bytes());
            assert_eq!(
                Packet::new_checked(&b[..]),
                Err(Error::TotalLen),
                "len field {bad}"
            );
        }
        // Header-only datagram, with trailing bytes that are not payload.
        b[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert!(Packet::new_checked(&b[..])
            .expect("valid")
            .payload()
            .is_empty());
    }

    proptest! {
        #[test]
        fn repr_and_checksums_round_trip(
            src_port in any::<u16>(), dst_port in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            s4 in any::<[u8; 4]>(), d4 in any::<[u8; 4]>(),
            s6 in any::<[u8; 16]>(), d6 in any::<[u8; 16]>(),
        ) {
            let repr = Repr { src_port, dst_port, payload_len: payload.len() };
            let mut buf = vec![0u8; repr.total_len()];
            let mut p = Packet::new_unchecked(&mut buf[..]);
            repr.emit(&mut p);
            p.payload_mut().copy_from_slice(&payload);
            p.fill_checksum_v4(s4.into(), d4.into());
            prop_assert!(p.checksum() != 0);
            prop_assert!(p.verify_checksum_v4(s4.into(), d4.into()));
            p.fill_checksum_v6(s6.into(), d6.into());
            prop_assert!(p.checksum() != 0);
            prop_assert!(p.verify_checksum_v6(s6.into(), d6.into()));
            let p = Packet::new_checked(&buf[..]).expect("emitted datagram is valid");
            prop_assert_eq!(Repr::parse(&p), Ok(repr));
            prop_assert_eq!(p.payload(), &payload[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port(), p.checksum());
                let _ = p.verify_checksum_v4(SRC4, DST4);
                let _ = p.verify_checksum_v6(src6(), dst6());
                prop_assert_eq!(p.payload().len(), usize::from(p.len()) - HEADER_LEN);
            }
        }
    }
}
