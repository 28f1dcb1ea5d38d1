//! IPv6 headers (RFC 8200): the inner packet read from the TUN device and the outer
//! header of both tunnels over IPv6.
//!
//! Owns the fixed 40-byte header and the walk over extension headers
//! ([`Packet::transport`]) that finds the upper-layer header. Invariant: after
//! [`Packet::new_checked`] the payload length fits the buffer, so no accessor
//! panics; bytes past it (link-layer padding) are allowed and never part of
//! [`Packet::payload`]. Jumbograms (RFC 2675, payload length 0 with a Hop-by-Hop
//! option) are not supported: their payload reads as empty.

use core::net::Ipv6Addr;

use super::{Error, IpProtocol, Result};

mod field {
    use core::ops::Range;

    /// Version (4 bits), traffic class (8 bits), flow label (20 bits).
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;

    /// In every extension header: the next header, then (except for Fragment) a
    /// length byte (RFC 8200 §4.2, RFC 4302 §2.2).
    pub const EXT_NXT_HDR: usize = 0;
    pub const EXT_LEN: usize = 1;
    /// In a Fragment header: offset (13 bits, 8-byte units), 2 reserved bits, M.
    pub const FRAG_OFF: Range<usize> = 2..4;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// The flow label: the low 20 bits of the first word.
const FLOW_LABEL_MASK: u32 = 0x000f_ffff;
/// Where the traffic class and the version sit in the first word.
const TC_SHIFT: u32 = 20;
const VERSION_SHIFT: u32 = 28;

/// Length of a Fragment header (RFC 8200 §4.5).
const FRAG_HEADER_LEN: usize = 8;

/// How many extension headers [`Packet::transport`] walks before giving up with
/// [`Error::Malformed`]. RFC 8200 §4.1 recommends each kind at most once and
/// Destination Options at most twice, so a conforming chain this walk skips has at
/// most six (Hop-by-Hop, two Destination Options, Routing, Fragment, AH); eight
/// leaves room for newer kinds without letting a crafted chain cost much.
pub const MAX_EXT_HEADERS: usize = 8;

/// A view of an IPv6 packet over a buffer.
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
    /// version is 6 ([`Error::Version`]); 40 + payload length ≤ buffer length
    /// ([`Error::TotalLen`]).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Version);
        }
        if HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(Error::TotalLen);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn first_word(&self) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.buffer.as_ref()[field::VER_TC_FLOW]);
        u32::from_be_bytes(b)
    }

    /// IP version (6 for any checked packet).
    #[inline]
    pub fn version(&self) -> u8 {
        (self.first_word() >> VERSION_SHIFT) as u8
    }

    /// Traffic class: DSCP in the high six bits, ECN in the low two.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.first_word() >> TC_SHIFT) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.first_word() & FLOW_LABEL_MASK
    }

    /// Length of everything after the fixed header, extension headers included.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        let mut b = [0u8; 2];
        b.copy_from_slice(&self.buffer.as_ref()[field::LENGTH]);
        u16::from_be_bytes(b)
    }

    /// The header that follows the fixed header.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        read_addr(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        read_addr(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// The payload: the `payload_len()` bytes after the fixed header, extension
    /// headers included, without trailing padding.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        &d[HEADER_LEN.min(d.len())..self.payload_end()]
    }

    /// End of the payload, clamped to the buffer so that a payload length changed
    /// by a setter after the check cannot make [`payload`](Self::payload) panic.
    #[inline]
    fn payload_end(&self) -> usize {
        let len = self.buffer.as_ref().len();
        (HEADER_LEN + usize::from(self.payload_len())).min(len)
    }

    /// Finds the upper-layer header by walking the extension headers (RFC 8200
    /// §4): returns its protocol and its offset from the start of the packet.
    ///
    /// Hop-by-Hop, Routing and Destination Options headers are skipped by their
    /// length field, as is AH (RFC 4302 §2.2), and the Fragment header is 8 bytes.
    /// For a non-first fragment (offset ≠ 0) the walk stops at the fragment's next
    /// header and its data, which is not the start of that header. Any other
    /// number, ESP and No Next Header included, ends the walk as it is.
    ///
    /// Errors: an extension header that runs past the payload is
    /// [`Error::HeaderLen`]; more than [`MAX_EXT_HEADERS`] is [`Error::Malformed`].
    #[inline]
    pub fn transport(&self) -> Result<(IpProtocol, usize)> {
        let d = self.buffer.as_ref();
        // Everything the walk reads is inside the payload.
        let packet = &d[..self.payload_end()];
        let mut next = self.next_header();
        let mut offset = HEADER_LEN;
        let mut walked = 0;
        loop {
            let ext_len = match next {
                IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
                    (usize::from(ext_len_byte(packet, offset)?) + 1) * 8
                }
                IpProtocol::Ah => (usize::from(ext_len_byte(packet, offset)?) + 2) * 4,
                IpProtocol::Ipv6Frag => FRAG_HEADER_LEN,
                upper => return Ok((upper, offset)),
            };
            if walked == MAX_EXT_HEADERS {
                return Err(Error::Malformed);
            }
            walked += 1;
            let header = packet
                .get(offset..offset + ext_len)
                .ok_or(Error::HeaderLen)?;
            let header_next = IpProtocol::from(header[field::EXT_NXT_HDR]);
            offset += ext_len;
            if next == IpProtocol::Ipv6Frag {
                let mut word = [0u8; 2];
                word.copy_from_slice(&header[field::FRAG_OFF]);
                if u16::from_be_bytes(word) >> 3 != 0 {
                    // A later fragment: the upper-layer header is in the first one.
                    return Ok((header_next, offset));
                }
            }
            next = header_next;
        }
    }
}

/// The length byte of the extension header at `offset`, or [`Error::HeaderLen`] if
/// the packet ends before it.
#[inline]
fn ext_len_byte(packet: &[u8], offset: usize) -> Result<u8> {
    packet
        .get(offset + field::EXT_LEN)
        .copied()
        .ok_or(Error::HeaderLen)
}

/// Reads an address from a sixteen-byte `field` range.
#[inline]
fn read_addr(d: &[u8], r: core::ops::Range<usize>) -> Ipv6Addr {
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[r]);
    Ipv6Addr::from(b)
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn set_first_word(&mut self, word: u32) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&word.to_be_bytes());
    }

    /// Sets the version nibble.
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let w = self.first_word() & !(0xf << VERSION_SHIFT);
        self.set_first_word(w | (u32::from(version & 0x0f) << VERSION_SHIFT));
    }

    /// Sets the traffic class.
    #[inline]
    pub fn set_traffic_class(&mut self, tc: u8) {
        let w = self.first_word() & !(0xff << TC_SHIFT);
        self.set_first_word(w | (u32::from(tc) << TC_SHIFT));
    }

    /// Sets the flow label; only its low 20 bits are kept.
    #[inline]
    pub fn set_flow_label(&mut self, label: u32) {
        let w = self.first_word() & !FLOW_LABEL_MASK;
        self.set_first_word(w | (label & FLOW_LABEL_MASK));
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    /// Sets the header that follows the fixed header.
    #[inline]
    pub fn set_next_header(&mut self, next: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = next.into();
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The payload (the `payload_len()` bytes after the fixed header), mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.payload_end();
        let d = self.buffer.as_mut();
        let start = HEADER_LEN.min(d.len());
        &mut d[start..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The fixed IPv6 header: what ringlay writes as a tunnel's outer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// The header that follows.
    pub next_header: IpProtocol,
    /// Payload length in bytes, extension headers included.
    pub payload_len: u16,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Repr {
    /// Reads a checked packet's fixed header. Never fails: every checked fixed
    /// header is representable.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len(),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Header plus payload length.
    #[inline]
    pub const fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }

    /// Writes the 40-byte fixed header into `packet`, which must be at least
    /// [`HEADER_LEN`] bytes long. The payload is left to the caller.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_first_word(6 << VERSION_SHIFT);
        packet.set_traffic_class(self.traffic_class);
        packet.set_flow_label(self.flow_label);
        packet.set_payload_len(self.payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A DNS query for `example.com` from a pod to a pod on another host
    /// (fd00:100:96:1::2 port 40000 → fd00:100:96:2::2 port 53), flow label
    /// 0x12345, hop limit 64, with a correct UDP checksum (0x5c61).
    const DNS_QUERY: [u8; 77] = [
        0x60, 0x01, 0x23, 0x45, 0x00, 0x25, 0x11, 0x40, // version..hop limit
        0xfd, 0x00, 0x01, 0x00, 0x00, 0x96, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x02, // src
        0xfd, 0x00, 0x01, 0x00, 0x00, 0x96, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x02, // dst
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x25, 0x5c, 0x61, // UDP header
        0x3a, 0x2b, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // DNS
        0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x01,
        0x00, 0x01,
    ];

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().expect("literal address")
    }

    fn dns_repr() -> Repr {
        Repr {
            src_addr: addr("fd00:100:96:1::2"),
            dst_addr: addr("fd00:100:96:2::2"),
            next_header: IpProtocol::Udp,
            payload_len: 37,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0x12345,
        }
    }

    #[test]
    fn parses_golden_query() {
        let p = Packet::new_checked(&DNS_QUERY[..]).expect("valid packet");
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 37);
        assert_eq!(p.next_header(), IpProtocol::Udp);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), addr("fd00:100:96:1::2"));
        assert_eq!(p.dst_addr(), addr("fd00:100:96:2::2"));
        assert_eq!(p.payload(), &DNS_QUERY[40..]);
        assert_eq!(p.transport(), Ok((IpProtocol::Udp, 40)));
        assert_eq!(Repr::parse(&p), Ok(dns_repr()));
    }

    #[test]
    fn emits_golden_query() {
        let mut buf = [0u8; 77];
        buf[40..].copy_from_slice(&DNS_QUERY[40..]);
        dns_repr().emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, DNS_QUERY);
    }

    #[test]
    fn traffic_class_and_flow_label_do_not_overlap() {
        let mut buf = DNS_QUERY;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_traffic_class(0xb8); // DSCP EF
        assert_eq!(p.flow_label(), 0x12345);
        p.set_flow_label(0xfff_ffff);
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0xb8, 0xf_ffff)
        );
        assert_eq!(&buf[..4], &[0x6b, 0x8f, 0xff, 0xff]);
    }

    #[test]
    fn errors_in_documented_order() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&DNS_QUERY[..n]),
                Err(Error::Truncated),
                "len {n}"
            );
        }
        let mut b = DNS_QUERY;
        b[0] = 0x40;
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::Version));
        // Version wins over an impossible payload length.
        b[4] = 0xff;
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::Version));
        b[0] = 0x60;
        assert_eq!(Packet::new_checked(&b[..]), Err(Error::TotalLen));
        // One byte short of the stated payload.
        assert_eq!(Packet::new_checked(&DNS_QUERY[..76]), Err(Error::TotalLen));
    }

    #[test]
    fn trailing_padding_is_not_payload() {
        let mut buf = [0xeeu8; 90];
        buf[..77].copy_from_slice(&DNS_QUERY);
        let p = Packet::new_checked(&buf[..]).expect("padding is allowed");
        assert_eq!(p.payload(), &DNS_QUERY[40..]);
    }

    /// Builds a packet with the given extension headers (each its raw bytes, whose
    /// first byte is overwritten with the next header) followed by `upper`.
    fn with_ext(first: u8, exts: &[(&[u8], u8)], upper_len: usize) -> Vec<u8> {
        let mut buf = DNS_QUERY[..40].to_vec();
        buf[field::NXT_HDR] = first;
        for (bytes, next) in exts {
            let start = buf.len();
            buf.extend_from_slice(bytes);
            buf[start] = *next;
        }
        buf.resize(buf.len() + upper_len, 0);
        let payload_len = u16::try_from(buf.len() - HEADER_LEN).expect("small test packet");
        buf[field::LENGTH].copy_from_slice(&payload_len.to_be_bytes());
        buf
    }

    const HBH_PADN: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];
    const FIRST_FRAG: [u8; 8] = [0, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef];
    const LATER_FRAG: [u8; 8] = [0, 0, 0x05, 0xc8, 0xde, 0xad, 0xbe, 0xef];

    #[test]
    fn transport_skips_extension_headers() {
        // Hop-by-Hop (8) → Destination Options (16) → Routing (8) → TCP.
        let dst_opts = [0u8, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let routing = [0u8, 0, 4, 0, 0, 0, 0, 0];
        let buf = with_ext(0, &[(&HBH_PADN, 60), (&dst_opts, 43), (&routing, 6)], 20);
        let p = Packet::new_checked(&buf[..]).expect("valid");
        assert_eq!(p.transport(), Ok((IpProtocol::Tcp, 72)));
    }

    #[test]
    fn transport_through_first_fragment_and_ah() {
        // AH with payload length 4 is (4 + 2) * 4 = 24 bytes (RFC 4302 §2.2).
        let mut ah = [0u8; 24];
        ah[1] = 4;
        let buf = with_ext(44, &[(&FIRST_FRAG, 51), (&ah, 17)], 8);
        let p = Packet::new_checked(&buf[..]).expect("valid");
        assert_eq!(p.transport(), Ok((IpProtocol::Udp, 72)));
    }

    #[test]
    fn transport_stops_at_later_fragment() {
        let buf = with_ext(44, &[(&LATER_FRAG, 17)], 100);
        let p = Packet::new_checked(&buf[..]).expect("valid");
        assert_eq!(p.transport(), Ok((IpProtocol::Udp, 48)));
    }

    #[test]
    fn transport_returns_esp_and_no_next_as_is() {
        let buf = with_ext(0, &[(&HBH_PADN, 50)], 16);
        let p = Packet::new_checked(&buf[..]).expect("valid");
        assert_eq!(p.transport(), Ok((IpProtocol::Esp, 48)));
        let buf = with_ext(59, &[], 0);
        let p = Packet::new_checked(&buf[..]).expect("valid");
        assert_eq!(p.transport(), Ok((IpProtocol::Ipv6NoNxt, 40)));
    }

    #[test]
    fn transport_rejects_header_past_payload() {
        // Hop-by-Hop claiming 16 bytes in an 8-byte payload.
        let mut buf = with_ext(0, &[(&HBH_PADN, 6)], 0);
        buf[HEADER_LEN + 1] = 1;
        let p = Packet::new_checked(&buf[..]).expect("fixed header is fine");
        assert_eq!(p.transport(), Err(Error::HeaderLen));
        // No room even for the length byte.
        let buf = with_ext(43, &[], 1);
        let p = Packet::new_checked(&buf[..]).expect("fixed header is fine");
        assert_eq!(p.transport(), Err(Error::HeaderLen));
        // Bytes past the payload length (padding) must not count.
        let mut padded = with_ext(0, &[(&HBH_PADN, 6)], 0);
        padded[HEADER_LEN + 1] = 1;
        padded.resize(100, 0);
        let p = Packet::new_checked(&padded[..]).expect("fixed header is fine");
        assert_eq!(p.transport(), Err(Error::HeaderLen));
        // A fragment header cut short.
        let buf = with_ext(44, &[], 7);
        let p = Packet::new_checked(&buf[..]).expect("fixed header is fine");
        assert_eq!(p.transport(), Err(Error::HeaderLen));
    }

    #[test]
    fn transport_caps_the_walk() {
        let opts: [(&[u8], u8); MAX_EXT_HEADERS] = [(&HBH_PADN, 60); MAX_EXT_HEADERS];
        let mut last = opts;
        last[MAX_EXT_HEADERS - 1].1 = 17;
        let buf = with_ext(60, &last, 8);
        let p = Packet::new_checked(&buf[..]).expect("valid");
        assert_eq!(
            p.transport(),
            Ok((IpProtocol::Udp, 40 + 8 * MAX_EXT_HEADERS))
        );
        let buf = with_ext(60, &opts, 8);
        let p = Packet::new_checked(&buf[..]).expect("valid");
        assert_eq!(p.transport(), Err(Error::Malformed));
    }

    fn repr_strategy() -> impl Strategy<Value = Repr> {
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u8>(),
            0u16..2000,
            any::<u8>(),
            any::<u8>(),
            0u32..(1 << 20),
        )
            .prop_map(|(s, d, nh, len, hl, tc, fl)| Repr {
                src_addr: s.into(),
                dst_addr: d.into(),
                next_header: nh.into(),
                payload_len: len,
                hop_limit: hl,
                traffic_class: tc,
                flow_label: fl,
            })
    }

    proptest! {
        #[test]
        fn repr_round_trips(repr in repr_strategy()) {
            let mut buf = vec![0u8; repr.total_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let p = Packet::new_checked(&buf[..]).expect("emitted header is valid");
            prop_assert_eq!(Repr::parse(&p), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..160), v6 in any::<bool>()) {
            if v6 && bytes.len() >= HEADER_LEN {
                // Steer half the cases past the version and length checks, into the
                // extension header walk.
                bytes[0] = 0x60 | (bytes[0] & 0x0f);
                let len = u16::try_from(bytes.len() - HEADER_LEN).expect("short vec");
                bytes[field::LENGTH].copy_from_slice(&len.to_be_bytes());
                bytes[field::NXT_HDR] = [0, 43, 44, 51, 60, 6, 17][usize::from(bytes[field::NXT_HDR] % 7)];
            }
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.version(), p.traffic_class(), p.flow_label(), p.next_header());
                let _ = (p.hop_limit(), p.src_addr(), p.dst_addr());
                prop_assert_eq!(p.payload().len(), usize::from(p.payload_len()));
                if let Ok((_, offset)) = p.transport() {
                    prop_assert!(offset <= HEADER_LEN + usize::from(p.payload_len()));
                }
                prop_assert!(Repr::parse(&p).is_ok());
            }
        }
    }
}
