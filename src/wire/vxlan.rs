//! VXLAN headers (RFC 7348 §5): the 8 bytes between the outer UDP header and the
//! inner Ethernet frame of flannel's `vxlan` backend.
//!
//! Owns the header layout: flags (I = 0x08), 24 reserved bits, the 24-bit VNI,
//! 8 reserved bits. Invariant: after [`Packet::new_checked`] no accessor panics.
//! The view does not judge the flags: RFC 7348 says receivers ignore the reserved
//! bits, and whether a packet without the I flag is dropped is the decapsulator's
//! decision ([`Repr::parse`] is the strict reading).

use super::{Error, Result};

mod field {
    use core::ops::Range;

    pub const FLAGS: usize = 0;
    pub const RESERVED1: Range<usize> = 1..4;
    pub const VNI: Range<usize> = 4..7;
    pub const RESERVED2: usize = 7;
    pub const PAYLOAD: usize = 8;
}

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// The I flag: the VNI is valid (RFC 7348 §5). Must be set on transmission.
pub const FLAG_I: u8 = 0x08;

/// The largest VNI: the field is 24 bits wide.
pub const VNI_MAX: u32 = 0x00ff_ffff;

/// A view of a VXLAN packet over a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length; accessors may panic if it is
    /// shorter than [`HEADER_LEN`].
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

    /// The flags byte ([`FLAG_I`] and seven reserved bits).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The 24 reserved bits after the flags.
    #[inline]
    pub fn reserved1(&self) -> u32 {
        read_u24(&self.buffer.as_ref()[field::RESERVED1])
    }

    /// The VXLAN network identifier (24 bits).
    #[inline]
    pub fn vni(&self) -> u32 {
        read_u24(&self.buffer.as_ref()[field::VNI])
    }

    /// The reserved byte after the VNI.
    #[inline]
    pub fn reserved2(&self) -> u8 {
        self.buffer.as_ref()[field::RESERVED2]
    }

    /// The inner Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags byte.
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the 24 reserved bits after the flags; higher bits are dropped.
    #[inline]
    pub fn set_reserved1(&mut self, value: u32) {
        write_u24(&mut self.buffer.as_mut()[field::RESERVED1], value);
    }

    /// Sets the VNI; bits above [`VNI_MAX`] are dropped, and the reserved byte that
    /// shares its 32-bit word is left alone.
    #[inline]
    pub fn set_vni(&mut self, vni: u32) {
        write_u24(&mut self.buffer.as_mut()[field::VNI], vni);
    }

    /// Sets the reserved byte after the VNI.
    #[inline]
    pub fn set_reserved2(&mut self, value: u8) {
        self.buffer.as_mut()[field::RESERVED2] = value;
    }

    /// The inner Ethernet frame, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Reads a big-endian 24-bit value from a three-byte `field` range.
#[inline]
fn read_u24(b: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word[1..].copy_from_slice(b);
    u32::from_be_bytes(word)
}

/// Writes the low 24 bits of `v`, big-endian, into a three-byte `field` range.
#[inline]
fn write_u24(b: &mut [u8], v: u32) {
    b.copy_from_slice(&v.to_be_bytes()[1..]);
}

/// A VXLAN header as RFC 7348 §5 says to send it: I flag set, reserved fields zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// VXLAN network identifier (at most [`VNI_MAX`]); flannel's default is 1.
    pub vni: u32,
}

impl Repr {
    /// Reads a checked header. [`Error::Malformed`] without the I flag, whose VNI
    /// RFC 7348 does not define; the reserved bits are ignored as the RFC requires
    /// of receivers.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        if packet.flags() & FLAG_I == 0 {
            return Err(Error::Malformed);
        }
        Ok(Repr { vni: packet.vni() })
    }

    /// Writes the header into `packet`, which must be at least [`HEADER_LEN`] bytes
    /// long: flags [`FLAG_I`], the VNI (masked to 24 bits), reserved bits zero.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_flags(FLAG_I);
        packet.set_reserved1(0);
        packet.set_vni(self.vni);
        packet.set_reserved2(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The header of flannel's default network, VNI 1, followed by the first bytes
    /// of the inner frame (the peer VTEP's MAC).
    const VNI_1: [u8; 12] = [
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x0e, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn parses_golden_header() {
        let p = Packet::new_checked(&VNI_1[..]).expect("12 bytes hold a header");
        assert_eq!(p.flags(), FLAG_I);
        assert_eq!(p.reserved1(), 0);
        assert_eq!(p.vni(), 1);
        assert_eq!(p.reserved2(), 0);
        assert_eq!(p.payload(), &[0x0e, 0, 0, 0]);
        assert_eq!(Repr::parse(&p), Ok(Repr { vni: 1 }));
    }

    #[test]
    fn emits_golden_header() {
        let mut buf = [0xffu8; 8];
        Repr { vni: 1 }.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, VNI_1[..8]);
    }

    #[test]
    fn vni_uses_exactly_bytes_4_to_7() {
        let mut buf = [0u8; 8];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_reserved2(0xaa);
        p.set_vni(0xfedc_ba98);
        assert_eq!(p.vni(), 0xdc_ba98);
        assert_eq!(p.reserved2(), 0xaa);
        p.set_reserved1(0x0123_4567);
        assert_eq!(p.reserved1(), 0x23_4567);
        assert_eq!(buf, [0x00, 0x23, 0x45, 0x67, 0xdc, 0xba, 0x98, 0xaa]);
    }

    #[test]
    fn reserved_bits_are_ignored_but_i_flag_is_required() {
        let p = Packet::new_unchecked([0xff, 1, 2, 3, 0, 0, 7, 9]);
        assert_eq!(Repr::parse(&p), Ok(Repr { vni: 7 }));
        let p = Packet::new_unchecked([0xf7, 0, 0, 0, 0, 0, 7, 0]);
        assert_eq!(Repr::parse(&p), Err(Error::Malformed));
    }

    #[test]
    fn rejects_truncated() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&VNI_1[..n]),
                Err(Error::Truncated),
                "len {n}"
            );
        }
        let p = Packet::new_checked(&VNI_1[..HEADER_LEN]).expect("header only");
        assert!(p.payload().is_empty());
    }

    proptest! {
        #[test]
        fn repr_round_trips(vni in 0..=VNI_MAX) {
            let mut buf = [0u8; HEADER_LEN];
            Repr { vni }.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let p = Packet::new_checked(&buf[..]).expect("header-sized");
            prop_assert_eq!(Repr::parse(&p), Ok(Repr { vni }));
            prop_assert_eq!((p.flags(), p.reserved1(), p.reserved2()), (FLAG_I, 0, 0));
        }

        #[test]
        fn setters_round_trip(flags in any::<u8>(), r1 in 0..=VNI_MAX, vni in 0..=VNI_MAX, r2 in any::<u8>()) {
            let mut buf = [0u8; HEADER_LEN];
            let mut p = Packet::new_unchecked(&mut buf[..]);
            p.set_flags(flags);
            p.set_reserved1(r1);
            p.set_vni(vni);
            p.set_reserved2(r2);
            prop_assert_eq!((p.flags(), p.reserved1(), p.vni(), p.reserved2()), (flags, r1, vni, r2));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.flags(), p.reserved1(), p.reserved2(), Repr::parse(&p));
                prop_assert!(p.vni() <= VNI_MAX);
                prop_assert_eq!(p.payload().len(), bytes.len() - HEADER_LEN);
            }
        }
    }
}
