//! `struct virtio_net_hdr` (virtio 1.x §5.1.6; Linux `include/uapi/linux/virtio_net.h`),
//! which a TUN device opened with `IFF_VNET_HDR` puts before every packet it
//! returns and expects before every packet written to it: checksum offload
//! (`NEEDS_CSUM`, `csum_start`, `csum_offset`) and segmentation offload
//! (`gso_type`, `gso_size`, `hdr_len`).
//!
//! Owns the 10-byte layout (TUN's default `TUNSETVNETHDRSZ`; the 12-byte variant
//! with `num_buffers` is not used) and [`Repr::validate`], the check of those fields
//! against the packet that follows. Invariant: after [`Header::new_checked`] no
//! accessor panics.
//!
//! Byte order: the 16-bit fields are **little-endian**. virtio 1.0 defines them so,
//! and the kernel's TUN uses little-endian whenever `TUNSETVNETLE` is set or the host
//! is little-endian (`tun_is_little_endian()` in `drivers/net/tun.c`); on a
//! big-endian host the data path must set `TUNSETVNETLE` for this view to be right.

use super::{Error, Result};

mod field {
    use core::ops::Range;

    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Range<usize> = 2..4;
    pub const GSO_SIZE: Range<usize> = 4..6;
    pub const CSUM_START: Range<usize> = 6..8;
    pub const CSUM_OFFSET: Range<usize> = 8..10;
    pub const PAYLOAD: usize = 10;
}

/// Length of `struct virtio_net_hdr`.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` still
/// has to be computed over the bytes from `csum_start` on (it holds the
/// pseudo-header sum).
pub const FLAG_NEEDS_CSUM: u8 = 1;

/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was already verified.
pub const FLAG_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_ECN`: the high bit of `gso_type`, set when the TCP segments
/// carry CWR and the receiver must keep the ECN state.
pub const GSO_ECN: u8 = 0x80;

/// The segmentation offload type, from the low seven bits of `gso_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GsoType {
    /// `VIRTIO_NET_HDR_GSO_NONE` (0): a single packet.
    #[default]
    None,
    /// `VIRTIO_NET_HDR_GSO_TCPV4` (1): TCP over IPv4 segmentation.
    TcpV4,
    /// `VIRTIO_NET_HDR_GSO_UDP` (3): UDP fragmentation offload (UFO).
    Udp,
    /// `VIRTIO_NET_HDR_GSO_TCPV6` (4): TCP over IPv6 segmentation.
    TcpV6,
    /// `VIRTIO_NET_HDR_GSO_UDP_L4` (5): UDP segmentation (USO).
    UdpL4,
    /// Any other seven-bit value.
    Unknown(u8),
}

impl From<u8> for GsoType {
    /// Converts a seven-bit type; callers mask off the ECN bit first.
    #[inline]
    fn from(n: u8) -> Self {
        match n {
            0 => GsoType::None,
            1 => GsoType::TcpV4,
            3 => GsoType::Udp,
            4 => GsoType::TcpV6,
            5 => GsoType::UdpL4,
            n => GsoType::Unknown(n),
        }
    }
}

impl From<GsoType> for u8 {
    #[inline]
    fn from(t: GsoType) -> u8 {
        match t {
            GsoType::None => 0,
            GsoType::TcpV4 => 1,
            GsoType::Udp => 3,
            GsoType::TcpV6 => 4,
            GsoType::UdpL4 => 5,
            GsoType::Unknown(n) => n,
        }
    }
}

/// A view of a virtio-net header over a buffer (the header, then the packet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps a buffer without checking its length; accessors may panic if it is
    /// shorter than [`HEADER_LEN`].
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Header<T> {
        Header { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Header<T>> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// Ensures the buffer holds the whole header: [`Error::Truncated`] otherwise.
    /// Field values are judged by [`Repr::validate`].
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

    /// The flags byte ([`FLAG_NEEDS_CSUM`], [`FLAG_DATA_VALID`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// True when [`FLAG_NEEDS_CSUM`] is set.
    #[inline]
    pub fn needs_csum(&self) -> bool {
        self.flags() & FLAG_NEEDS_CSUM != 0
    }

    /// True when [`FLAG_DATA_VALID`] is set.
    #[inline]
    pub fn data_valid(&self) -> bool {
        self.flags() & FLAG_DATA_VALID != 0
    }

    /// The segmentation type, without the ECN bit.
    #[inline]
    pub fn gso_type(&self) -> GsoType {
        GsoType::from(self.buffer.as_ref()[field::GSO_TYPE] & !GSO_ECN)
    }

    /// The ECN bit of `gso_type`.
    #[inline]
    pub fn ecn(&self) -> bool {
        self.buffer.as_ref()[field::GSO_TYPE] & GSO_ECN != 0
    }

    /// Length of the headers to copy onto every segment (a hint; the kernel may
    /// report its linear length instead).
    #[inline]
    pub fn hdr_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::HDR_LEN)
    }

    /// Payload bytes per segment (the MSS for TCP).
    #[inline]
    pub fn gso_size(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::GSO_SIZE)
    }

    /// Offset in the packet where checksumming starts (the transport header).
    #[inline]
    pub fn csum_start(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CSUM_START)
    }

    /// Offset of the checksum field from `csum_start` (16 for TCP, 6 for UDP).
    #[inline]
    pub fn csum_offset(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CSUM_OFFSET)
    }

    /// The packet after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Sets the flags byte.
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the segmentation type, keeping the ECN bit; only the low seven bits of
    /// an [`GsoType::Unknown`] value are stored.
    #[inline]
    pub fn set_gso_type(&mut self, gso_type: GsoType) {
        let b = &mut self.buffer.as_mut()[field::GSO_TYPE];
        *b = (*b & GSO_ECN) | (u8::from(gso_type) & !GSO_ECN);
    }

    /// Sets or clears the ECN bit of `gso_type`.
    #[inline]
    pub fn set_ecn(&mut self, ecn: bool) {
        let b = &mut self.buffer.as_mut()[field::GSO_TYPE];
        *b = if ecn { *b | GSO_ECN } else { *b & !GSO_ECN };
    }

    /// Sets `hdr_len`.
    #[inline]
    pub fn set_hdr_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::HDR_LEN, len);
    }

    /// Sets `gso_size`.
    #[inline]
    pub fn set_gso_size(&mut self, size: u16) {
        write_u16(self.buffer.as_mut(), field::GSO_SIZE, size);
    }

    /// Sets `csum_start`.
    #[inline]
    pub fn set_csum_start(&mut self, start: u16) {
        write_u16(self.buffer.as_mut(), field::CSUM_START, start);
    }

    /// Sets `csum_offset`.
    #[inline]
    pub fn set_csum_offset(&mut self, offset: u16) {
        write_u16(self.buffer.as_mut(), field::CSUM_OFFSET, offset);
    }

    /// The packet after the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Header<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Reads a little-endian `u16` from a two-byte `field` range.
#[inline]
fn read_u16(d: &[u8], r: core::ops::Range<usize>) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&d[r]);
    u16::from_le_bytes(b)
}

/// Writes a little-endian `u16` into a two-byte `field` range.
#[inline]
fn write_u16(d: &mut [u8], r: core::ops::Range<usize>, v: u16) {
    d[r].copy_from_slice(&v.to_le_bytes());
}

/// Every field of a virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Repr {
    /// Flags byte ([`FLAG_NEEDS_CSUM`], [`FLAG_DATA_VALID`]), kept as received.
    pub flags: u8,
    /// Segmentation type.
    pub gso_type: GsoType,
    /// The ECN bit of `gso_type`.
    pub ecn: bool,
    /// Length of the headers copied onto every segment.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts, from the start of the packet.
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl Repr {
    /// Reads a checked header. Never fails: every value is representable, and
    /// [`validate`](Self::validate) judges them.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(header: &Header<T>) -> Result<Repr> {
        Ok(Repr {
            flags: header.flags(),
            gso_type: header.gso_type(),
            ecn: header.ecn(),
            hdr_len: header.hdr_len(),
            gso_size: header.gso_size(),
            csum_start: header.csum_start(),
            csum_offset: header.csum_offset(),
        })
    }

    /// Writes all ten bytes into `header`, which must be at least [`HEADER_LEN`]
    /// bytes long.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut Header<T>) {
        header.set_flags(self.flags);
        header.set_gso_type(self.gso_type);
        header.set_ecn(self.ecn);
        header.set_hdr_len(self.hdr_len);
        header.set_gso_size(self.gso_size);
        header.set_csum_start(self.csum_start);
        header.set_csum_offset(self.csum_offset);
    }

    /// True when [`FLAG_NEEDS_CSUM`] is set.
    #[inline]
    pub const fn needs_csum(&self) -> bool {
        self.flags & FLAG_NEEDS_CSUM != 0
    }

    /// Checks the fields against the `packet_len` bytes that follow the header,
    /// so that offload code can index the packet with them:
    ///
    /// - an unknown `gso_type` is [`Error::Malformed`];
    /// - with `NEEDS_CSUM`, the two checksum bytes at `csum_start + csum_offset`
    ///   must lie inside the packet, else [`Error::HeaderLen`];
    /// - with segmentation, `gso_size` must be non-zero ([`Error::Malformed`]) and
    ///   `hdr_len` at most the packet length ([`Error::HeaderLen`]).
    #[inline]
    pub fn validate(&self, packet_len: usize) -> Result<()> {
        if let GsoType::Unknown(_) = self.gso_type {
            return Err(Error::Malformed);
        }
        if self.needs_csum() {
            let csum_end = usize::from(self.csum_start) + usize::from(self.csum_offset) + 2;
            if csum_end > packet_len {
                return Err(Error::HeaderLen);
            }
        }
        if self.gso_type != GsoType::None {
            if self.gso_size == 0 {
                return Err(Error::Malformed);
            }
            if usize::from(self.hdr_len) > packet_len {
                return Err(Error::HeaderLen);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What TUN returns before a TCP/IPv4 TSO super-packet: NEEDS_CSUM, GSO_TCPV4,
    /// hdr_len 52 (IPv4 20 + TCP with timestamps 32), gso_size 1448, checksum from
    /// byte 20 at offset 16 (the TCP checksum); all little-endian.
    const TSO: [u8; 10] = [0x01, 0x01, 0x34, 0x00, 0xa8, 0x05, 0x14, 0x00, 0x10, 0x00];

    fn tso_repr() -> Repr {
        Repr {
            flags: FLAG_NEEDS_CSUM,
            gso_type: GsoType::TcpV4,
            ecn: false,
            hdr_len: 52,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: 16,
        }
    }

    #[test]
    fn parses_golden_tso_header() {
        let mut buf = [0u8; 10 + 52 + 4 * 1448];
        buf[..10].copy_from_slice(&TSO);
        let h = Header::new_checked(&buf[..]).expect("long enough");
        assert!(h.needs_csum() && !h.data_valid());
        assert_eq!((h.gso_type(), h.ecn()), (GsoType::TcpV4, false));
        assert_eq!((h.hdr_len(), h.gso_size()), (52, 1448));
        assert_eq!((h.csum_start(), h.csum_offset()), (20, 16));
        assert_eq!(h.payload().len(), 52 + 4 * 1448);
        let repr = Repr::parse(&h).expect("infallible");
        assert_eq!(repr, tso_repr());
        assert_eq!(repr.validate(h.payload().len()), Ok(()));
    }

    #[test]
    fn emits_golden_tso_header() {
        let mut buf = [0xffu8; 10];
        tso_repr().emit(&mut Header::new_unchecked(&mut buf[..]));
        assert_eq!(buf, TSO);
    }

    #[test]
    fn ecn_bit_is_separate_from_type() {
        let h = Header::new_unchecked([0, 0x84, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!((h.gso_type(), h.ecn()), (GsoType::TcpV6, true));
        let mut buf = [0u8; 10];
        let mut h = Header::new_unchecked(&mut buf[..]);
        h.set_ecn(true);
        h.set_gso_type(GsoType::UdpL4);
        assert_eq!(buf[1], 0x85);
        let mut h = Header::new_unchecked(&mut buf[..]);
        h.set_ecn(false);
        assert_eq!(h.gso_type(), GsoType::UdpL4);
        assert_eq!(buf[1], 0x05);
    }

    #[test]
    fn plain_packet_needs_nothing() {
        let repr = Repr::default();
        assert_eq!(repr.validate(0), Ok(()));
        let repr = Repr {
            flags: FLAG_DATA_VALID,
            ..Repr::default()
        };
        assert_eq!(repr.validate(60), Ok(()));
    }

    #[test]
    fn validate_errors() {
        let tso = tso_repr();
        // Checksum field must end inside the packet: 20 + 16 + 2 = 38.
        assert_eq!(
            Repr {
                gso_type: GsoType::None,
                ..tso
            }
            .validate(38),
            Ok(())
        );
        assert_eq!(
            Repr {
                gso_type: GsoType::None,
                ..tso
            }
            .validate(37),
            Err(Error::HeaderLen)
        );
        // Fields at their maximum must not overflow the arithmetic.
        let huge = Repr {
            csum_start: u16::MAX,
            csum_offset: u16::MAX,
            ..Repr::default()
        };
        assert_eq!(
            Repr {
                flags: FLAG_NEEDS_CSUM,
                ..huge
            }
            .validate(usize::from(u16::MAX)),
            Err(Error::HeaderLen)
        );
        // Without NEEDS_CSUM the checksum offsets are not looked at.
        assert_eq!(huge.validate(0), Ok(()));
        // Segmentation needs a segment size and headers inside the packet.
        assert_eq!(
            Repr { gso_size: 0, ..tso }.validate(6000),
            Err(Error::Malformed)
        );
        assert_eq!(Repr { flags: 0, ..tso }.validate(51), Err(Error::HeaderLen));
        assert_eq!(Repr { flags: 0, ..tso }.validate(52), Ok(()));
        // Unknown types (2 is the retired UFO-v6 slot) are refused.
        assert_eq!(
            Repr {
                gso_type: GsoType::Unknown(2),
                ..tso
            }
            .validate(6000),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn rejects_truncated() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                Header::new_checked(&TSO[..n]),
                Err(Error::Truncated),
                "len {n}"
            );
        }
        assert!(Header::new_checked(&TSO[..])
            .expect("header only")
            .payload()
            .is_empty());
    }

    #[test]
    fn gso_type_round_trips_every_value() {
        for n in 0..=u8::MAX {
            assert_eq!(u8::from(GsoType::from(n)), n);
        }
    }

    fn repr_strategy() -> impl Strategy<Value = Repr> {
        (any::<u8>(), 0u8..0x80, any::<bool>(), any::<[u16; 4]>()).prop_map(
            |(flags, t, ecn, [a, b, c, d])| Repr {
                flags,
                gso_type: GsoType::from(t),
                ecn,
                hdr_len: a,
                gso_size: b,
                csum_start: c,
                csum_offset: d,
            },
        )
    }

    proptest! {
        #[test]
        fn repr_round_trips(repr in repr_strategy()) {
            let mut buf = [0u8; HEADER_LEN];
            repr.emit(&mut Header::new_unchecked(&mut buf[..]));
            let h = Header::new_checked(&buf[..]).expect("header-sized");
            prop_assert_eq!(Repr::parse(&h), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(h) = Header::new_checked(&bytes[..]) {
                let _ = (h.needs_csum(), h.data_valid());
                let repr = Repr::parse(&h).expect("infallible");
                let _ = repr.validate(h.payload().len());
                let mut out = [0u8; HEADER_LEN];
                repr.emit(&mut Header::new_unchecked(&mut out[..]));
                prop_assert_eq!(&out[..], &bytes[..HEADER_LEN]);
            }
        }
    }
}
