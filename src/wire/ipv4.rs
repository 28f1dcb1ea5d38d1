//! IPv4 headers (RFC 791; DSCP/ECN byte per RFC 2474 and RFC 3168): the inner packet
//! read from the TUN device and the outer header of both tunnels.
//!
//! Owns the fixed 20-byte header, its options and the bounds of the payload.
//! Invariant: after [`Packet::new_checked`] the header length and the total length
//! are consistent with the buffer, so no accessor panics; bytes past the total
//! length (link-layer padding) are allowed and never part of [`Packet::payload`].
//! The header checksum is *not* checked on construction: see
//! [`Packet::verify_checksum`].

use core::net::Ipv4Addr;

use super::{checksum, Error, IpProtocol, Result};

mod field {
    use core::ops::Range;

    /// Version (high nibble) and IHL (low nibble, in 32-bit words).
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    /// Flags (high 3 bits) and fragment offset (low 13 bits, in 8-byte units).
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// The "don't fragment" flag in the flags/fragment-offset word.
const FLAG_DF: u16 = 0x4000;
/// The "more fragments" flag in the flags/fragment-offset word.
const FLAG_MF: u16 = 0x2000;
/// The fragment offset bits of the flags/fragment-offset word.
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet over a buffer.
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

    /// Checks, in this order: the fixed header fits ([`Error::Truncated`]); the
    /// version is 4 ([`Error::Version`]); 20 ≤ IHL×4 ≤ buffer length
    /// ([`Error::HeaderLen`]); IHL×4 ≤ total length ≤ buffer length
    /// ([`Error::TotalLen`]). The checksum is not verified.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Version);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN || header_len > len {
            return Err(Error::HeaderLen);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len || total_len > len {
            return Err(Error::TotalLen);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version (4 for any checked packet).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The former TOS byte: DSCP in the high six bits, ECN in the low two.
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// The ECN codepoint (RFC 3168 §5).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.dscp_ecn() & 0x03
    }

    /// Total length of the datagram, header included, in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification, used to reassemble fragments.
    #[inline]
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    fn flags_and_offset(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLG_OFF)
    }

    /// The "don't fragment" flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_and_offset() & FLAG_DF != 0
    }

    /// The "more fragments" flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_and_offset() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_and_offset() & FRAG_OFFSET_MASK) << 3
    }

    /// True for any fragment of a fragmented datagram (first, middle or last).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        read_addr(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        read_addr(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// True when the header (options included) sums to 0xffff, i.e. the stored
    /// checksum is right (RFC 1071). A header whose length field runs past the
    /// buffer never verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        match self.buffer.as_ref().get(..self.header_len()) {
            Some(header) => checksum::data(header) == 0xffff,
            None => false,
        }
    }

    /// The options, between the fixed header and `header_len()`.
    #[inline]
    pub fn options(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        let (start, end) = bounds(d.len(), HEADER_LEN, self.header_len());
        &d[start..end]
    }

    /// The payload: from `header_len()` to `total_len()`, without trailing padding.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        let (start, end) = bounds(d.len(), self.header_len(), usize::from(self.total_len()));
        &d[start..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version nibble.
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes; it is stored in 32-bit words, so the low two
    /// bits are dropped, and it must be at most 60. [`payload`](Self::payload)
    /// follows the new value: check the packet again before trusting it.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP/ECN byte.
    #[inline]
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Sets the total length (header and payload) in bytes.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    #[inline]
    fn set_flags_and_offset(&mut self, word: u16) {
        write_u16(self.buffer.as_mut(), field::FLG_OFF, word);
    }

    /// Sets or clears the "don't fragment" flag.
    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        let w = self.flags_and_offset() & !FLAG_DF;
        self.set_flags_and_offset(if value { w | FLAG_DF } else { w });
    }

    /// Sets or clears the "more fragments" flag.
    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        let w = self.flags_and_offset() & !FLAG_MF;
        self.set_flags_and_offset(if value { w | FLAG_MF } else { w });
    }

    /// Sets the fragment offset in bytes; the low three bits are dropped.
    #[inline]
    pub fn set_frag_offset(&mut self, offset: u16) {
        let w = self.flags_and_offset() & !FRAG_OFFSET_MASK;
        self.set_flags_and_offset(w | (offset >> 3));
    }

    /// Sets the time to live.
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol of the payload.
    #[inline]
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.into();
    }

    /// Stores a header checksum.
    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    /// Computes and stores the header checksum over `header_len()` bytes (a header
    /// length past the buffer is clamped to it).
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let d = self.buffer.as_ref();
        let end = self.header_len().min(d.len());
        let sum = checksum::data(&d[..end]);
        self.set_checksum(!sum);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The options, mutable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        let d = self.buffer.as_mut();
        let (start, end) = bounds(d.len(), HEADER_LEN, header_len);
        &mut d[start..end]
    }

    /// The payload (from `header_len()` to `total_len()`), mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (header_len, total_len) = (self.header_len(), usize::from(self.total_len()));
        let d = self.buffer.as_mut();
        let (start, end) = bounds(d.len(), header_len, total_len);
        &mut d[start..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Clamps `start..end` into a buffer of `len` bytes, so that a view whose length
/// fields were changed by a setter after the check yields a short slice instead of
/// panicking. On a checked packet the clamp never changes anything.
#[inline]
fn bounds(len: usize, start: usize, end: usize) -> (usize, usize) {
    let end = end.min(len);
    (start.min(end), end)
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

/// Reads an address from a four-byte `field` range.
#[inline]
fn read_addr(d: &[u8], r: core::ops::Range<usize>) -> Ipv4Addr {
    let mut b = [0u8; 4];
    b.copy_from_slice(&d[r]);
    Ipv4Addr::from(b)
}

/// An IPv4 header without options: what ringlay writes as a tunnel's outer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: IpProtocol,
    /// Payload length in bytes; `HEADER_LEN + payload_len` must fit in a `u16`.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP/ECN byte.
    pub dscp_ecn: u8,
    /// Identification.
    pub ident: u16,
    /// The "don't fragment" flag.
    pub dont_frag: bool,
    /// The "more fragments" flag.
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
}

impl Repr {
    /// Reads a checked packet's header. Options are skipped (`payload_len` counts
    /// from the end of them); the checksum is not verified.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.payload().len(),
            ttl: packet.ttl(),
            dscp_ecn: packet.dscp_ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
        })
    }

    /// Header plus payload length.
    #[inline]
    pub const fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes a 20-byte header, checksum included, into `packet`, which must be at
    /// least [`HEADER_LEN`] bytes long. The payload is left to the caller.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        debug_assert!(
            self.total_len() <= usize::from(u16::MAX),
            "IPv4 datagram too long"
        );
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN);
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len(self.total_len() as u16);
        packet.set_ident(self.ident);
        packet.set_flags_and_offset(0);
        packet.set_dont_frag(self.dont_frag);
        packet.set_more_frags(self.more_frags);
        packet.set_frag_offset(self.frag_offset);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An ICMP echo request as `ping` sends it between two flannel pod subnets
    /// (100.96.1.2 → 100.96.2.2, 56 data bytes, DF set, TTL 64); both the IPv4 and
    /// the ICMP checksums are correct.
    const ECHO: [u8; 84] = [
        0x45, 0x00, 0x00, 0x54, 0x5b, 0x35, 0x40, 0x00, 0x40, 0x01, 0x13, 0xb0, 0x64, 0x60, 0x01,
        0x02, 0x64, 0x60, 0x02, 0x02, // IPv4 header
        0x08, 0x00, 0xc0, 0x3a, 0x1c, 0x2d, 0x00, 0x01, // ICMP echo, id 0x1c2d, seq 1
        0x6c, 0x1f, 0x5a, 0x66, 0x00, 0x00, 0x00, 0x00, 0x8b, 0x3e, 0x0b, 0x00, 0x00, 0x00, 0x00,
        0x00, // timestamp
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e,
        0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d,
        0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
    ];

    fn echo_repr() -> Repr {
        Repr {
            src_addr: Ipv4Addr::new(100, 96, 1, 2),
            dst_addr: Ipv4Addr::new(100, 96, 2, 2),
            protocol: IpProtocol::Icmp,
            payload_len: 64,
            ttl: 64,
            dscp_ecn: 0,
            ident: 0x5b35,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
    }

    #[test]
    fn parses_golden_echo() {
        let p = Packet::new_checked(&ECHO[..]).expect("valid packet");
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp_ecn(), 0);
        assert_eq!(p.ecn(), 0);
        assert_eq!(p.total_len(), 84);
        assert_eq!(p.ident(), 0x5b35);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::Icmp);
        assert_eq!(p.checksum(), 0x13b0);
        assert_eq!(p.src_addr(), Ipv4Addr::new(100, 96, 1, 2));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(100, 96, 2, 2));
        assert!(p.verify_checksum());
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), &ECHO[20..]);
        // The ICMP checksum covers the whole ICMP message.
        assert_eq!(checksum::data(p.payload()), 0xffff);
        assert_eq!(Repr::parse(&p), Ok(echo_repr()));
    }

    #[test]
    fn emits_golden_echo() {
        let mut buf = [0u8; 84];
        buf[20..].copy_from_slice(&ECHO[20..]);
        echo_repr().emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, ECHO);
    }

    #[test]
    fn detects_corrupted_checksum() {
        let mut buf = ECHO;
        buf[8] = 63; // TTL changed without updating the checksum
        assert!(!Packet::new_checked(&buf[..])
            .expect("still well-formed")
            .verify_checksum());
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.fill_checksum();
        assert!(p.verify_checksum());
    }

    #[test]
    fn trailing_padding_is_not_payload() {
        let mut buf = [0u8; 100];
        buf[..84].copy_from_slice(&ECHO);
        buf[84..].fill(0xee);
        let p = Packet::new_checked(&buf[..]).expect("padding is allowed");
        assert_eq!(p.payload(), &ECHO[20..]);
    }

    #[test]
    fn options_sit_between_header_and_payload() {
        // IHL 6: one word of options (Router Alert, RFC 2113), 4 bytes of payload.
        let mut buf = [0u8; 28];
        buf[0] = 0x46;
        buf[3] = 28;
        buf[20..24].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        buf[24..].copy_from_slice(&[1, 2, 3, 4]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.fill_checksum();
        let p = Packet::new_checked(&buf[..]).expect("valid options");
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn fragment_fields() {
        let mut buf = ECHO;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_dont_frag(false);
        p.set_more_frags(true);
        p.set_frag_offset(1480);
        assert!(!p.dont_frag() && p.more_frags() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        assert_eq!(&buf[6..8], &[0x20, 0xb9]);
    }

    #[test]
    fn errors_in_documented_order() {
        // Truncated wins over everything else.
        for n in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&ECHO[..n]),
                Err(Error::Truncated),
                "len {n}"
            );
        }
        // Version 6 in an IPv4 view.
        let mut b = ECHO;
        b[0] = 0x65;
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::Version));
        // Version is checked before the (also broken) header length.
        b[0] = 0x61;
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::Version));
        // IHL below 5.
        for ihl in 0..5u8 {
            b[0] = 0x40 | ihl;
            assert_eq!(
                Packet::new_checked(&b[..]),
                Err(Error::HeaderLen),
                "ihl {ihl}"
            );
        }
        // IHL 15 (60 bytes) beyond a 40-byte buffer.
        b[0] = 0x4f;
        assert_eq!(Packet::new_checked(&b[..40]), Err(Error::HeaderLen));
        // Total length shorter than the header.
        b[0] = 0x46;
        b[2..4].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::TotalLen));
        // Total length beyond the buffer.
        b[0] = 0x45;
        b[2..4].copy_from_slice(&85u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::TotalLen));
        // Header-only datagram is fine.
        b[2..4].copy_from_slice(&20u16.to_be_bytes());
        let p = Packet::new_checked(&b[..]).expect("header-only");
        assert!(p.payload().is_empty());
    }

    #[test]
    fn broken_setters_never_panic_the_payload() {
        let mut buf = ECHO;
        let mut p = Packet::new_checked(&mut buf[..]).expect("valid");
        p.set_total_len(9000);
        assert_eq!(p.payload().len(), 64);
        p.set_header_len(60);
        p.set_total_len(30);
        assert!(p.payload().is_empty());
        assert_eq!(p.options().len(), 40);
        assert!(p.payload_mut().is_empty());
    }

    fn repr_strategy() -> impl Strategy<Value = Repr> {
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u8>(),
            0usize..=65515,
            any::<u8>(),
            any::<u8>(),
            any::<u16>(),
            any::<(bool, bool)>(),
            0u16..8192,
        )
            .prop_map(|(s, d, proto, len, ttl, tos, ident, (df, mf), off)| Repr {
                src_addr: s.into(),
                dst_addr: d.into(),
                protocol: proto.into(),
                payload_len: len,
                ttl,
                dscp_ecn: tos,
                ident,
                dont_frag: df,
                more_frags: mf,
                frag_offset: off << 3,
            })
    }

    proptest! {
        #[test]
        fn repr_round_trips(repr in repr_strategy()) {
            let mut buf = vec![0u8; repr.total_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let p = Packet::new_checked(&buf[..]).expect("emitted header is valid");
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(Repr::parse(&p), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..96), v4 in any::<bool>()) {
            if v4 && !bytes.is_empty() {
                // Steer half the cases past the version check.
                bytes[0] = 0x40 | (bytes[0] & 0x0f);
            }
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.version(), p.dscp_ecn(), p.ecn(), p.ident(), p.dont_frag(), p.more_frags());
                let _ = (p.frag_offset(), p.ttl(), p.protocol(), p.checksum(), p.src_addr(), p.dst_addr());
                let _ = p.verify_checksum();
                prop_assert_eq!(p.options().len(), p.header_len() - HEADER_LEN);
                prop_assert_eq!(p.payload().len(), usize::from(p.total_len()) - p.header_len());
                prop_assert!(Repr::parse(&p).is_ok());
            }
        }
    }
}
