//! Zero-copy views and emitters of the headers ringlay reads and writes.
//!
//! Every header follows one pattern (after smoltcp): a view `Packet<T: AsRef<[u8]>>`
//! (or `Frame`, `Header`) over a borrowed or owned buffer, built with `new_checked`
//! when the bytes come from outside (a TUN read, a socket, a fuzzer) and with
//! `new_unchecked` only when the caller has already proved the length. After
//! `check_len` succeeds, no accessor may panic. Offsets live in a private `field`
//! module of `Range<usize>` constants.
//!
//! Nothing here performs I/O or allocates.

pub mod checksum;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;
pub mod mac;
pub mod tcp;
pub mod udp;
pub mod virtio;
pub mod vxlan;

pub use mac::MacAddr;

use core::fmt;

/// Why a header view refused a buffer. Small and `Copy` so that the data path can
/// map each variant onto a drop counter without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the fixed header requires.
    Truncated,
    /// The version field is not the one this parser handles (IPv4 ≠ 4, IPv6 ≠ 6).
    Version,
    /// The header length field is impossible: IPv4 IHL < 5 or beyond the buffer, an
    /// IPv6 extension header that runs past the packet, a virtio `hdr_len` beyond it.
    HeaderLen,
    /// A total or payload length field is smaller than the header or larger than the
    /// bytes that arrived.
    TotalLen,
    /// A checksum does not verify.
    Checksum,
    /// Any other field holds a value the format forbids.
    Malformed,
}

impl fmt::Display for Error {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "buffer shorter than the header",
            Error::Version => "wrong IP version",
            Error::HeaderLen => "header length field inconsistent with the bytes",
            Error::TotalLen => "length field inconsistent with the bytes",
            Error::Checksum => "checksum mismatch",
            Error::Malformed => "field value forbidden by the format",
        })
    }
}

impl std::error::Error for Error {}

/// `Result` with [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers"), used both as the
/// IPv4 `protocol` field and as the IPv6 `next header` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// IPv6 Hop-by-Hop Options (0).
    HopByHop,
    /// ICMP (1).
    Icmp,
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// IPv6 Routing header (43).
    Ipv6Route,
    /// IPv6 Fragment header (44).
    Ipv6Frag,
    /// Encapsulating Security Payload (50).
    Esp,
    /// Authentication Header (51).
    Ah,
    /// ICMPv6 (58).
    Icmpv6,
    /// IPv6 No Next Header (59).
    Ipv6NoNxt,
    /// IPv6 Destination Options (60).
    Ipv6Opts,
    /// Any other number.
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    #[inline]
    fn from(n: u8) -> Self {
        match n {
            0 => IpProtocol::HopByHop,
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            43 => IpProtocol::Ipv6Route,
            44 => IpProtocol::Ipv6Frag,
            50 => IpProtocol::Esp,
            51 => IpProtocol::Ah,
            58 => IpProtocol::Icmpv6,
            59 => IpProtocol::Ipv6NoNxt,
            60 => IpProtocol::Ipv6Opts,
            n => IpProtocol::Unknown(n),
        }
    }
}

impl From<IpProtocol> for u8 {
    #[inline]
    fn from(p: IpProtocol) -> u8 {
        match p {
            IpProtocol::HopByHop => 0,
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Ipv6Route => 43,
            IpProtocol::Ipv6Frag => 44,
            IpProtocol::Esp => 50,
            IpProtocol::Ah => 51,
            IpProtocol::Icmpv6 => 58,
            IpProtocol::Ipv6NoNxt => 59,
            IpProtocol::Ipv6Opts => 60,
            IpProtocol::Unknown(n) => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_protocol_round_trips_every_number() {
        for n in 0..=u8::MAX {
            assert_eq!(u8::from(IpProtocol::from(n)), n);
        }
    }
}
