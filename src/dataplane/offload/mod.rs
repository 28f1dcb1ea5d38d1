//! Segmentation and receive offload in userspace, between the TUN device (opened
//! with `IFF_VNET_HDR` and `TUNSETOFFLOAD`) and the tunnel: the pure half of the
//! data path's GSO/GRO. Nothing here performs I/O; [`Split`] allocates nothing and
//! [`Coalescer`] allocates its buffers once, in its constructor.
//!
//! # Outbound: [`Split`] (TSO/USO)
//!
//! Every TUN read starts with a `virtio_net_hdr` (virtio 1.x §5.1.6) and may carry a
//! TCP or UDP "super-packet" of up to 64 KiB that the kernel left unsegmented.
//! [`Split`] cuts it into the packets the wire would have carried, as the kernel's
//! `tcp_gso_segment` and `__udp_gso_segment` do:
//!
//! - the IP and TCP/UDP headers are copied onto every segment; the header length
//!   comes from the headers themselves, never from `hdr_len` (which the kernel may
//!   set to its linear length instead);
//! - every segment but the last carries exactly `gso_size` payload bytes;
//! - IPv4: total length, identification (+1 per segment) and header checksum are
//!   rewritten; IPv6: the payload length;
//! - TCP: the sequence number advances by the payload before it; FIN and PSH stay
//!   on the last segment only, CWR on the first only (RFC 3168 §6.1.2);
//! - UDP (`GSO_UDP_L4`): the length of each datagram;
//! - the TCP or UDP checksum of every segment is computed in full (a computed UDP
//!   checksum of 0 is sent as 0xffff, RFC 768).
//!
//! A packet without segmentation is one segment: itself, its checksum completed
//! when the header says `NEEDS_CSUM` (the field then holds the pseudo-header sum and
//! the sum of the bytes from `csum_start` on finishes it, as `skb_checksum_help`
//! does). [`complete_checksum`] does the same in place.
//!
//! Refused: a header that does not fit the packet ([`DropReason::VirtioHeader`]); UFO, a
//! type that does not match the packet, IPv4 fragments and IPv6 extension headers
//! under segmentation ([`DropReason::GsoUnsupported`]); a broken IP header (the IP drop
//! reasons of [`encap`](crate::encap)); a broken TCP/UDP header
//! ([`DropReason::TransportHeader`]).
//!
//! # Inbound: [`Coalescer`] (GRO)
//!
//! Decapsulated packets are merged into TCP super-packets before they are written
//! to the TUN, which the kernel accepts from a `virtio_net_hdr` with `GSO_TCPV4` or
//! `GSO_TCPV6` and segments again only if it must forward them. The rules follow
//! the kernel's `tcp_gro_receive` and `inet_gro_receive`/`ipv6_gro_receive`:
//!
//! - only TCP over IPv4 without options or fragmentation, or over IPv6 without
//!   extension headers; only segments whose IPv4 header and TCP checksums verify,
//!   or whose TCP checksum is partial (a segment that fails is written alone,
//!   untouched, with a zero header so that the kernel checks and drops it);
//! - same addresses and ports; the next sequence number; the same acknowledgment
//!   number, window, header length and options (timestamps included), and the same
//!   flags but for CWR, PSH and FIN; IPv4: the same TOS, TTL and DF, and an
//!   identification one above the previous (or unchanged, with DF); IPv6: the same
//!   traffic class, flow label and hop limit;
//! - the first segment's payload length is the train's `gso_size`: a longer segment
//!   cannot join, a shorter one joins as the last. PSH or FIN ends the train after
//!   the segment that carries it; CWR starts a new one (the virtio ECN bit is then
//!   set); SYN, RST, URG and segments without payload never merge;
//! - a super-packet stays within 65535 bytes of IP packet.
//!
//! Per-flow order is kept: when a packet of a held flow cannot join it, the flow is
//! written first. A merged super-packet carries `NEEDS_CSUM` with the pseudo-header
//! sum in its TCP checksum field; a lone packet goes out as it came, but for a
//! verified checksum, which is handed on as a partial one (`NEEDS_CSUM`, the
//! field reset to the pseudo-header sum) so that the kernel does not verify it
//! again. Anything not TCP is written at once. The coalescer copies headers,
//! never payload: every [`Frame`] names the payload where the caller's buffers
//! hold it ([`Loc`]).
//!
//! A TCP or UDP packet whose checksum field holds only the pseudo-header sum (its
//! sender left it partial across a virtual link, [`partial`]) is treated as
//! verified for merging, and a lone one is written with `NEEDS_CSUM`, so that the
//! kernel delivers it as it delivers its own.
//!
//! [`DropReason::VirtioHeader`]: crate::drop_reason::DropReason::VirtioHeader
//! [`DropReason::GsoUnsupported`]: crate::drop_reason::DropReason::GsoUnsupported
//! [`DropReason::TransportHeader`]: crate::drop_reason::DropReason::TransportHeader

mod coalesce;
pub mod partial;
mod split;

pub use coalesce::{Coalescer, Frame, Loc, Piece, DEFAULT_FLOWS, MAX_PACKET, MAX_PIECES};
pub use partial::{partial_checksum, Partial};
pub use split::{complete_checksum, Split};

use core::ops::Range;

use crate::wire::checksum;

/// The source and destination addresses of an IPv4 header, back to back: the
/// address part of its pseudo-header.
const IPV4_ADDRS: Range<usize> = 12..20;

/// The source and destination addresses of an IPv6 header.
const IPV6_ADDRS: Range<usize> = 8..40;

/// Stores the complement of a finished sum, never 0: 0xffff is the same value in
/// one's complement arithmetic, and a UDP checksum of 0 would mean "none".
#[inline]
fn store_checksum(field: &mut [u8], sum: u16) {
    let csum = !sum;
    let csum = if csum == 0 { 0xffff } else { csum };
    if let Some(f) = field.get_mut(..2) {
        f.copy_from_slice(&csum.to_be_bytes());
    }
}

/// The sum of the IPv4 or IPv6 pseudo-header whose addresses sit in `ip` (its
/// first bytes), for protocol `protocol` and transport length `len`.
#[inline]
fn pseudo_header(ip: &[u8], v6: bool, protocol: u8, len: u16) -> u16 {
    let addrs = if v6 {
        ip.get(IPV6_ADDRS)
    } else {
        ip.get(IPV4_ADDRS)
    };
    let addrs = addrs.unwrap_or(&[]);
    checksum::combine(&[checksum::data(addrs), u16::from(protocol), len])
}

#[cfg(test)]
mod tests;
