//! Socket control messages (cmsg(3)) as a small typed encoder and decoder over
//! bytes: the `UDP_SEGMENT` message a GSO send carries and the `UDP_GRO` message
//! a coalescing receive returns (include/uapi/linux/udp.h).
//!
//! The layout is `struct cmsghdr` (`cmsg_len`, `cmsg_level`, `cmsg_type`) then
//! the data, each message padded to `CMSG_ALIGN` (the alignment of `size_t`).
//! The field offsets are taken from libc's own `cmsghdr`, so they hold on 32-bit
//! targets too, and every read goes through a bounds-checked slice: no pointer
//! arithmetic, no `unsafe`.
//!
//! Invariant: the decoder never reads past the control length the kernel gave,
//! and a message whose `cmsg_len` is shorter than its header or longer than what
//! is left ends the walk instead of being trusted.

use std::mem::{offset_of, size_of};
use std::ops::Range;

/// Field offsets of `struct cmsghdr`.
mod field {
    use super::{offset_of, size_of, Range};

    /// `cmsg_len`, a `size_t` on Linux (`socklen_t` in POSIX).
    pub const LEN: Range<usize> = at(offset_of!(libc::cmsghdr, cmsg_len), size_of::<usize>());
    /// `cmsg_level`, an `int`.
    pub const LEVEL: Range<usize> = at(
        offset_of!(libc::cmsghdr, cmsg_level),
        size_of::<libc::c_int>(),
    );
    /// `cmsg_type`, an `int`.
    pub const TYPE: Range<usize> = at(
        offset_of!(libc::cmsghdr, cmsg_type),
        size_of::<libc::c_int>(),
    );

    const fn at(start: usize, len: usize) -> Range<usize> {
        start..start + len
    }
}

/// `CMSG_ALIGN`: messages and their data start at multiples of `size_t`.
const fn align(len: usize) -> usize {
    let a = size_of::<usize>();
    (len + a - 1) & !(a - 1)
}

/// `CMSG_LEN(0)`: the header, padded, after which the data starts.
pub(crate) const HEADER_LEN: usize = align(size_of::<libc::cmsghdr>());

/// `CMSG_SPACE(sizeof(int))`: room for one message with an `int` (or smaller) payload.
pub(crate) const SPACE_INT: usize = HEADER_LEN + align(size_of::<libc::c_int>());

/// A control area with room for one message with an `int` payload, aligned as
/// `struct cmsghdr` requires, for the kernel to read or fill.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub(crate) struct IntCmsg(pub(crate) [u8; SPACE_INT]);

impl IntCmsg {
    /// Writes the `SOL_UDP`/`UDP_SEGMENT` message carrying the GSO segment size
    /// (a `u16`, net/ipv4/udp.c `udp_cmsg_send`); returns the bytes to pass as
    /// `msg_controllen`.
    pub(crate) fn udp_segment(&mut self, size: u16) -> usize {
        self.encode(libc::SOL_UDP, libc::UDP_SEGMENT, &size.to_ne_bytes())
    }

    /// Writes one message of `level`/`kind` with `data` (at most an `int`).
    fn encode(&mut self, level: libc::c_int, kind: libc::c_int, data: &[u8]) -> usize {
        let buf = &mut self.0;
        buf.fill(0);
        let len = HEADER_LEN + data.len();
        buf[field::LEN].copy_from_slice(&len.to_ne_bytes());
        buf[field::LEVEL].copy_from_slice(&level.to_ne_bytes());
        buf[field::TYPE].copy_from_slice(&kind.to_ne_bytes());
        buf[HEADER_LEN..len].copy_from_slice(data);
        SPACE_INT
    }
}

/// One control message as found in a received control area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cmsg<'a> {
    level: libc::c_int,
    kind: libc::c_int,
    data: &'a [u8],
}

/// Walks the messages of a received control area (`CMSG_FIRSTHDR` /
/// `CMSG_NXTHDR`), stopping at the first malformed one.
struct Iter<'a>(&'a [u8]);

impl<'a> Iterator for Iter<'a> {
    type Item = Cmsg<'a>;

    fn next(&mut self) -> Option<Cmsg<'a>> {
        let rest = self.0;
        let int = |r: Range<usize>| Some(libc::c_int::from_ne_bytes(rest.get(r)?.try_into().ok()?));
        let len = usize::from_ne_bytes(rest.get(field::LEN)?.try_into().ok()?);
        if len < HEADER_LEN || len > rest.len() {
            self.0 = &[];
            return None;
        }
        let msg = Cmsg {
            level: int(field::LEVEL)?,
            kind: int(field::TYPE)?,
            data: &rest[HEADER_LEN..len],
        };
        self.0 = rest.get(align(len)..).unwrap_or(&[]);
        Some(msg)
    }
}

/// The GRO segment size in a received control area: the `SOL_UDP`/`UDP_GRO`
/// message's `int`, if there is one and it is a positive `u16`.
pub fn gro_segment(control: &[u8]) -> Option<u16> {
    let msg = Iter(control).find(|m| m.level == libc::SOL_UDP && m.kind == libc::UDP_GRO)?;
    let size =
        libc::c_int::from_ne_bytes(msg.data.get(..size_of::<libc::c_int>())?.try_into().ok()?);
    u16::try_from(size).ok().filter(|s| *s > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A control area with one message of `level`/`kind` carrying `data`.
    fn area(level: libc::c_int, kind: libc::c_int, data: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; HEADER_LEN + align(data.len())];
        out[field::LEN].copy_from_slice(&(HEADER_LEN + data.len()).to_ne_bytes());
        out[field::LEVEL].copy_from_slice(&level.to_ne_bytes());
        out[field::TYPE].copy_from_slice(&kind.to_ne_bytes());
        out[HEADER_LEN..HEADER_LEN + data.len()].copy_from_slice(data);
        out
    }

    #[test]
    fn layout_is_libc_s() {
        assert_eq!(HEADER_LEN, size_of::<libc::cmsghdr>());
        // SAFETY: CMSG_LEN and CMSG_SPACE only compute a length.
        let (len0, space) = unsafe { (libc::CMSG_LEN(0), libc::CMSG_SPACE(4)) };
        assert_eq!(HEADER_LEN, len0 as usize);
        assert_eq!(SPACE_INT, space as usize);
    }

    #[test]
    fn udp_segment_encodes_one_message() {
        let mut c = IntCmsg([0; SPACE_INT]);
        assert_eq!(c.udp_segment(1400), SPACE_INT);
        let want = area(libc::SOL_UDP, libc::UDP_SEGMENT, &1400u16.to_ne_bytes());
        assert_eq!(&c.0[..], &want[..]);
        let msgs: Vec<_> = Iter(&c.0).collect();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].data, 1400u16.to_ne_bytes());
    }

    #[test]
    fn gro_segment_is_found_after_other_messages() {
        let mut control = area(libc::SOL_IP, libc::IP_TOS, &[0x10]);
        control.extend(area(libc::SOL_UDP, libc::UDP_GRO, &1448i32.to_ne_bytes()));
        assert_eq!(gro_segment(&control), Some(1448));
        assert_eq!(gro_segment(&control[..HEADER_LEN]), None, "truncated");
    }

    #[test]
    fn malformed_areas_yield_nothing() {
        assert_eq!(gro_segment(&[]), None);
        let mut bad = area(libc::SOL_UDP, libc::UDP_GRO, &1448i32.to_ne_bytes());
        // cmsg_len shorter than the header, then longer than the area.
        bad[field::LEN].copy_from_slice(&1usize.to_ne_bytes());
        assert_eq!(gro_segment(&bad), None);
        bad[field::LEN].copy_from_slice(&1000usize.to_ne_bytes());
        assert_eq!(gro_segment(&bad), None);
        // A zero or oversized segment size is no segment size.
        assert_eq!(
            gro_segment(&area(libc::SOL_UDP, libc::UDP_GRO, &0i32.to_ne_bytes())),
            None
        );
        assert_eq!(
            gro_segment(&area(libc::SOL_UDP, libc::UDP_GRO, &70000i32.to_ne_bytes())),
            None
        );
        // Too short a payload.
        assert_eq!(gro_segment(&area(libc::SOL_UDP, libc::UDP_GRO, &[5])), None);
    }
}
