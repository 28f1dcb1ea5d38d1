//! The TCP header (RFC 9293 §3.1): the fields segmentation and coalescing read and
//! rewrite (ports, sequence and acknowledgment numbers, data offset, flags, window,
//! checksum), the options as opaque bytes, and the payload.
//!
//! Invariant: after [`Packet::new_checked`] no accessor panics, and
//! [`header_len`](Packet::header_len) lies between [`HEADER_LEN`] and the buffer
//! length. The view covers one segment: its payload runs to the end of the buffer,
//! so the caller trims the buffer to the IP payload first.

use super::{Error, Result};

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Length of the TCP header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

/// Largest TCP header: a data offset of 15 words.
pub const MAX_HEADER_LEN: usize = 60;

/// Offset of the checksum field from the start of the header: virtio's
/// `csum_offset` for TCP.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// FIN: no more data from the sender.
pub const FLAG_FIN: u8 = 0x01;
/// SYN: synchronize sequence numbers.
pub const FLAG_SYN: u8 = 0x02;
/// RST: reset the connection.
pub const FLAG_RST: u8 = 0x04;
/// PSH: push the data to the application.
pub const FLAG_PSH: u8 = 0x08;
/// ACK: the acknowledgment number is significant.
pub const FLAG_ACK: u8 = 0x10;
/// URG: the urgent pointer is significant.
pub const FLAG_URG: u8 = 0x20;
/// ECE: ECN echo (RFC 3168).
pub const FLAG_ECE: u8 = 0x40;
/// CWR: congestion window reduced (RFC 3168).
pub const FLAG_CWR: u8 = 0x80;

/// A view of a TCP segment over a buffer.
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

    /// Checks that the fixed header fits ([`Error::Truncated`]) and that
    /// 20 ≤ data offset × 4 ≤ buffer length ([`Error::HeaderLen`]). The checksum is
    /// not verified.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN || header_len > len {
            return Err(Error::HeaderLen);
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes (data offset × 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flags byte ([`FLAG_FIN`] … [`FLAG_CWR`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Receive window.
    #[inline]
    pub fn window(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WINDOW)
    }

    /// Stored checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The options: the bytes between the fixed header and the data.
    #[inline]
    pub fn options(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        let end = self.header_len().clamp(HEADER_LEN, d.len());
        &d[HEADER_LEN..end]
    }

    /// The data after the header, to the end of the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        &d[self.header_len().min(d.len())..]
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

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, seq: u32) {
        self.buffer.as_mut()[field::SEQ_NUM].copy_from_slice(&seq.to_be_bytes());
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, ack: u32) {
        self.buffer.as_mut()[field::ACK_NUM].copy_from_slice(&ack.to_be_bytes());
    }

    /// Sets the header length in bytes (a multiple of 4 from 20 to 60); the low
    /// (reserved) bits of the byte are cleared.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFF] = ((len / 4) as u8) << 4;
    }

    /// Sets the flags byte.
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the receive window.
    #[inline]
    pub fn set_window(&mut self, window: u16) {
        write_u16(self.buffer.as_mut(), field::WINDOW, window);
    }

    /// Stores a checksum.
    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent(&mut self, urgent: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT, urgent);
    }

    /// The options, mutable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self
            .header_len()
            .clamp(HEADER_LEN, self.buffer.as_ref().len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// The data after the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len().min(self.buffer.as_ref().len());
        &mut self.buffer.as_mut()[start..]
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

/// Reads a big-endian `u32` from a four-byte `field` range.
#[inline]
fn read_u32(d: &[u8], r: core::ops::Range<usize>) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&d[r]);
    u32::from_be_bytes(b)
}

/// Writes a big-endian `u16` into a two-byte `field` range.
#[inline]
fn write_u16(d: &mut [u8], r: core::ops::Range<usize>, v: u16) {
    d[r].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A data segment with the timestamp option (32-byte header) and 4 data bytes:
    /// 40000 → 5201, seq 0x01020304, ack 0x0a0b0c0d, ACK|PSH, window 502,
    /// checksum 0x1234 (not verified here), urgent 0.
    const SEGMENT: [u8; 36] = [
        0x9c, 0x40, 0x14, 0x51, 0x01, 0x02, 0x03, 0x04, 0x0a, 0x0b, 0x0c, 0x0d, 0x80, 0x18, 0x01,
        0xf6, 0x12, 0x34, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x02, b'd', b'a', b't', b'a',
    ];

    #[test]
    fn parses_golden_segment() {
        let p = Packet::new_checked(&SEGMENT[..]).expect("valid");
        assert_eq!((p.src_port(), p.dst_port()), (40000, 5201));
        assert_eq!((p.seq_number(), p.ack_number()), (0x0102_0304, 0x0a0b_0c0d));
        assert_eq!(p.header_len(), 32);
        assert_eq!(p.flags(), FLAG_ACK | FLAG_PSH);
        assert_eq!((p.window(), p.checksum(), p.urgent()), (502, 0x1234, 0));
        assert_eq!(p.options(), &SEGMENT[20..32]);
        assert_eq!(p.payload(), b"data");
    }

    #[test]
    fn setters_round_trip_golden_segment() {
        let mut buf = [0u8; 36];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(40000);
        p.set_dst_port(5201);
        p.set_seq_number(0x0102_0304);
        p.set_ack_number(0x0a0b_0c0d);
        p.set_header_len(32);
        p.set_flags(FLAG_ACK | FLAG_PSH);
        p.set_window(502);
        p.set_checksum(0x1234);
        p.set_urgent(0);
        p.options_mut().copy_from_slice(&SEGMENT[20..32]);
        p.payload_mut().copy_from_slice(b"data");
        assert_eq!(buf, SEGMENT);
    }

    #[test]
    fn rejects_truncated_and_impossible_offsets() {
        for n in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&SEGMENT[..n]), Err(Error::Truncated));
        }
        // A 32-byte header in 31 bytes.
        assert_eq!(Packet::new_checked(&SEGMENT[..31]), Err(Error::HeaderLen));
        let mut short = SEGMENT;
        short[12] = 0x40; // 16 bytes: below the fixed header
        assert_eq!(Packet::new_checked(&short[..]), Err(Error::HeaderLen));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                prop_assert!(p.header_len() >= HEADER_LEN && p.header_len() <= bytes.len());
                prop_assert_eq!(p.options().len() + p.payload().len() + HEADER_LEN, bytes.len());
            }
        }
    }
}
