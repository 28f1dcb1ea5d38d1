//! Ethernet II frames (IEEE 802.3 clause 3.2.6 "Length/Type"; RFC 894 for IPv4 over
//! Ethernet): the inner frame of a VXLAN packet (RFC 7348 §5).
//!
//! Owns the 14-byte header: destination MAC, source MAC, EtherType. No 802.1Q tag
//! is parsed; a tagged frame shows EtherType 0x8100 as [`EtherType::Unknown`].
//! Invariant: after [`Frame::new_checked`] no accessor panics.

use super::{Error, MacAddr, Result};

mod field {
    use core::ops::Range;

    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of the Ethernet II header (no 802.1Q tag).
pub const HEADER_LEN: usize = field::PAYLOAD;

/// The EtherType of the frame's payload (IEEE "EtherType" registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// IPv4 (0x0800).
    Ipv4,
    /// IPv6 (0x86dd).
    Ipv6,
    /// ARP (0x0806).
    Arp,
    /// Any other value, including 802.1Q tags and 802.3 lengths.
    Unknown(u16),
}

impl From<u16> for EtherType {
    #[inline]
    fn from(n: u16) -> Self {
        match n {
            0x0800 => EtherType::Ipv4,
            0x86dd => EtherType::Ipv6,
            0x0806 => EtherType::Arp,
            n => EtherType::Unknown(n),
        }
    }
}

impl From<EtherType> for u16 {
    #[inline]
    fn from(t: EtherType) -> u16 {
        match t {
            EtherType::Ipv4 => 0x0800,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Arp => 0x0806,
            EtherType::Unknown(n) => n,
        }
    }
}

/// A view of an Ethernet II frame over a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking its length; accessors may panic if it is
    /// shorter than [`HEADER_LEN`].
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Ensures the buffer holds the whole header: [`Error::Truncated`] otherwise.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        read_mac(&self.buffer.as_ref()[field::DST])
    }

    /// Source MAC address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        read_mac(&self.buffer.as_ref()[field::SRC])
    }

    /// EtherType of the payload.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        let d = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType::from(u16::from_be_bytes([d[0], d[1]]))
    }

    /// Bytes after the header, up to the end of the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source MAC address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(ethertype).to_be_bytes());
    }

    /// Bytes after the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Frame<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Copies six bytes (the length of every MAC field) into a [`MacAddr`].
#[inline]
fn read_mac(b: &[u8]) -> MacAddr {
    let mut octets = [0u8; 6];
    octets.copy_from_slice(b);
    MacAddr(octets)
}

/// The header of an Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Destination MAC address.
    pub dst_addr: MacAddr,
    /// Source MAC address.
    pub src_addr: MacAddr,
    /// EtherType of the payload.
    pub ethertype: EtherType,
}

impl Repr {
    /// Reads the header of a checked frame. Never fails: every 14-byte header is a
    /// valid Ethernet II header.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr> {
        Ok(Repr {
            dst_addr: frame.dst_addr(),
            src_addr: frame.src_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `frame`, which must
    /// be at least that long.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An inner frame as flannel's VXLAN backend builds it: from the sending host's
    /// `flannel.1` VTEP MAC to the peer's, carrying IPv4 (the start of an ICMP echo).
    const FRAME: [u8; 18] = [
        0x0e, 0x00, 0x00, 0x00, 0x02, 0x00, // dst: peer VTEP
        0x0e, 0x00, 0x00, 0x00, 0x01, 0x00, // src: local VTEP
        0x08, 0x00, // IPv4
        0x45, 0x00, 0x00, 0x54, // payload
    ];

    #[test]
    fn parses_golden_frame() {
        let f = Frame::new_checked(&FRAME[..]).expect("18 bytes hold a header");
        assert_eq!(f.dst_addr(), MacAddr([0x0e, 0, 0, 0, 2, 0]));
        assert_eq!(f.src_addr(), MacAddr([0x0e, 0, 0, 0, 1, 0]));
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        assert_eq!(f.payload(), &[0x45, 0x00, 0x00, 0x54]);
    }

    #[test]
    fn emits_golden_frame() {
        let repr = Repr::parse(&Frame::new_unchecked(&FRAME[..])).expect("infallible");
        let mut buf = [0u8; 18];
        buf[HEADER_LEN..].copy_from_slice(&FRAME[HEADER_LEN..]);
        let mut f = Frame::new_unchecked(&mut buf[..]);
        repr.emit(&mut f);
        assert_eq!(f.into_inner(), &FRAME[..]);
    }

    #[test]
    fn header_only_frame_has_empty_payload() {
        let f = Frame::new_checked(&FRAME[..HEADER_LEN]).expect("exactly a header");
        assert!(f.payload().is_empty());
    }

    #[test]
    fn rejects_truncated() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                Frame::new_checked(&FRAME[..n]),
                Err(Error::Truncated),
                "len {n}"
            );
        }
    }

    #[test]
    fn ethertype_round_trips_every_value() {
        for n in 0..=u16::MAX {
            assert_eq!(u16::from(EtherType::from(n)), n);
        }
        assert_eq!(EtherType::from(0x86dd), EtherType::Ipv6);
        assert_eq!(EtherType::from(0x0806), EtherType::Arp);
    }

    proptest! {
        #[test]
        fn setters_round_trip(dst in any::<[u8; 6]>(), src in any::<[u8; 6]>(), et in any::<u16>()) {
            let mut buf = [0u8; HEADER_LEN];
            let repr = Repr { dst_addr: MacAddr(dst), src_addr: MacAddr(src), ethertype: et.into() };
            repr.emit(&mut Frame::new_unchecked(&mut buf[..]));
            let f = Frame::new_checked(&buf[..]).expect("header-sized buffer");
            prop_assert_eq!(Repr::parse(&f), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(f) = Frame::new_checked(&bytes[..]) {
                let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload().len());
                prop_assert_eq!(f.payload().len(), bytes.len() - HEADER_LEN);
            }
        }
    }
}
