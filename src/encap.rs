//! The two tunnel formats, applied in place on caller buffers.
//!
//! * **udp** — flannel's udp backend: the UDP payload *is* the inner IP packet.
//! * **vxlan** — RFC 7348: an 8-byte VXLAN header (flags `I` = 0x08, 24-bit VNI),
//!   then a 14-byte Ethernet header (destination = the peer's VTEP MAC, source = ours,
//!   ethertype IPv4 or IPv6), then the inner IP packet. This is exactly what the Linux
//!   vxlan device (and so flannel's vxlan backend) sends and accepts.
//!
//! The outer IPv4 and UDP headers are not built here: the data path sends the
//! returned range through a UDP socket and the kernel adds them.
//!
//! # Buffers
//!
//! The caller reads an inner packet into a buffer at offset `start`, leaving at least
//! [`VXLAN_OVERHEAD`] bytes of headroom in front. Encapsulation writes the tunnel
//! headers into that headroom and returns the range to send; the payload is never
//! copied and nothing is allocated. Decapsulation returns the range of the inner
//! packet inside the received datagram, so the caller can write it to the TUN device
//! straight from the receive buffer.
//!
//! # Forwarding is one router hop
//!
//! Outbound, the inner IPv4 TTL or IPv6 hop limit is decremented once (the IPv4 header
//! checksum is patched incrementally, RFC 1624). A packet that arrives with a TTL of 1
//! or 0 is not forwarded: encapsulation refuses it with [`Drop::TtlExpired`], which the
//! data path counts (it does not answer with ICMP Time Exceeded; the host's kernel
//! already did so for packets whose TTL ran out on the way into the TUN). Inbound
//! packets are not decremented again.
//!
//! # Refusals
//!
//! Every refused packet gets exactly one [`Drop`] reason, so that the data path can
//! count each cause separately. Decapsulation checks, in order: the datagram's length;
//! the VXLAN `I` flag and VNI; ARP; broadcast and multicast destination MACs; a
//! destination MAC other than ours; the ethertype; the inner IP version, header
//! length, total length (trailing padding is allowed and trimmed) and IPv4 header
//! checksum; that the sender is a known lease; that the inner source lies inside the
//! sender's lease (anti-spoofing); that the inner destination lies inside our lease.

use core::fmt;
use core::net::IpAddr;
use core::ops::Range;

use crate::config::SubnetKey;
use crate::wire::{self, checksum, ethernet, ipv4, ipv6, vxlan, MacAddr};

/// Bytes the vxlan format puts in front of the inner IP packet: the VXLAN header and
/// the inner Ethernet header. The caller reserves at least this much headroom.
pub const VXLAN_OVERHEAD: usize = vxlan::HEADER_LEN + ethernet::HEADER_LEN;

/// Bytes of the outer IPv4 and UDP headers the kernel adds when the datagram is sent.
pub const OUTER_IPV4_UDP_LEN: usize = 20 + 8;

/// Why a packet was not forwarded. Each variant is one drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Drop {
    /// The datagram is shorter than the tunnel header (VXLAN + Ethernet), or empty.
    Truncated,
    /// The VXLAN `I` flag (0x08) is not set (RFC 7348 §5: such frames are discarded).
    VxlanFlags,
    /// The VXLAN VNI is not the network's.
    WrongVni,
    /// The inner frame is ARP. flannel's vxlan nodes install static neighbours, so
    /// ARP across the tunnel means a misconfigured peer.
    Arp,
    /// The inner destination MAC is broadcast or multicast.
    MulticastMac,
    /// The inner destination MAC is unicast but not our VTEP MAC.
    NotOurMac,
    /// The inner ethertype is neither IPv4, IPv6 nor ARP.
    EtherType,
    /// The inner packet is shorter than a minimal IP header.
    IpTruncated,
    /// The IP version is not 4 or 6, or does not match the Ethernet ethertype.
    IpVersion,
    /// The IPv4 header length (IHL) is impossible for the bytes that arrived.
    IpHeaderLen,
    /// The IP total (or payload) length is smaller than the header or larger than the
    /// bytes that arrived.
    IpTotalLen,
    /// The inner IPv4 header checksum does not verify.
    IpChecksum,
    /// The datagram's sender is not the public IP of any known lease.
    UnknownSender,
    /// The inner source address is outside the subnet of the lease that sent it.
    SpoofedSource,
    /// The inner destination address is outside our own lease's subnet.
    NotOurSubnet,
    /// The TTL or hop limit would reach zero at this hop.
    TtlExpired,
    /// No lease covers the inner destination (counted by the data path's lookup).
    NoLease,
    /// The destination's lease has no VTEP MAC, so no vxlan frame can be built.
    NoVtepMac,
    /// The caller's buffer has no room for the tunnel headers (a data-path bug).
    NoHeadroom,
}

impl Drop {
    /// Every reason, in declaration order: index `r as usize` is `r`'s position.
    pub const ALL: [Drop; 19] = [
        Drop::Truncated,
        Drop::VxlanFlags,
        Drop::WrongVni,
        Drop::Arp,
        Drop::MulticastMac,
        Drop::NotOurMac,
        Drop::EtherType,
        Drop::IpTruncated,
        Drop::IpVersion,
        Drop::IpHeaderLen,
        Drop::IpTotalLen,
        Drop::IpChecksum,
        Drop::UnknownSender,
        Drop::SpoofedSource,
        Drop::NotOurSubnet,
        Drop::TtlExpired,
        Drop::NoLease,
        Drop::NoVtepMac,
        Drop::NoHeadroom,
    ];

    /// A stable `snake_case` name, for counters and metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            Drop::Truncated => "truncated",
            Drop::VxlanFlags => "vxlan_flags",
            Drop::WrongVni => "wrong_vni",
            Drop::Arp => "arp",
            Drop::MulticastMac => "multicast_mac",
            Drop::NotOurMac => "not_our_mac",
            Drop::EtherType => "ethertype",
            Drop::IpTruncated => "ip_truncated",
            Drop::IpVersion => "ip_version",
            Drop::IpHeaderLen => "ip_header_len",
            Drop::IpTotalLen => "ip_total_len",
            Drop::IpChecksum => "ip_checksum",
            Drop::UnknownSender => "unknown_sender",
            Drop::SpoofedSource => "spoofed_source",
            Drop::NotOurSubnet => "not_our_subnet",
            Drop::TtlExpired => "ttl_expired",
            Drop::NoLease => "no_lease",
            Drop::NoVtepMac => "no_vtep_mac",
            Drop::NoHeadroom => "no_headroom",
        }
    }

    /// Maps a refusal of the inner IP header parser onto its drop reason.
    const fn from_ip(e: wire::Error) -> Drop {
        match e {
            wire::Error::Truncated => Drop::IpTruncated,
            wire::Error::Version => Drop::IpVersion,
            wire::Error::HeaderLen => Drop::IpHeaderLen,
            wire::Error::TotalLen => Drop::IpTotalLen,
            wire::Error::Checksum => Drop::IpChecksum,
            wire::Error::Malformed => Drop::IpVersion,
        }
    }
}

impl fmt::Display for Drop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What decapsulation needs to know about this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// Our lease's subnets: inner destinations must fall inside them.
    pub subnets: SubnetKey,
    /// The network's VXLAN VNI (flannel's default is 1).
    pub vni: u32,
    /// Our VTEP MAC: the inner destination MAC of every vxlan frame for us.
    pub vtep_mac: MacAddr,
}

/// The VXLAN header fields of one outgoing frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanHeader {
    /// The network's VNI (24 bits).
    pub vni: u32,
    /// Our VTEP MAC, the inner source MAC.
    pub src_mac: MacAddr,
    /// The peer's VTEP MAC from its lease, the inner destination MAC.
    pub dst_mac: MacAddr,
}

/// The addresses of an inner packet, once its header has been validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Inner {
    src: IpAddr,
    dst: IpAddr,
    /// The packet's length by its own header: bytes past it are link padding.
    len: usize,
}

/// Validates an inner IP packet (either version, from its first nibble).
#[inline]
fn parse_inner(packet: &[u8]) -> Result<Inner, Drop> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => parse_inner_v4(packet),
        Some(6) => parse_inner_v6(packet),
        Some(_) => Err(Drop::IpVersion),
        None => Err(Drop::IpTruncated),
    }
}

#[inline]
fn parse_inner_v4(packet: &[u8]) -> Result<Inner, Drop> {
    let ip = ipv4::Packet::new_checked(packet).map_err(Drop::from_ip)?;
    Ok(Inner {
        src: ip.src_addr().into(),
        dst: ip.dst_addr().into(),
        len: usize::from(ip.total_len()),
    })
}

#[inline]
fn parse_inner_v6(packet: &[u8]) -> Result<Inner, Drop> {
    let ip = ipv6::Packet::new_checked(packet).map_err(Drop::from_ip)?;
    Ok(Inner {
        src: ip.src_addr().into(),
        dst: ip.dst_addr().into(),
        len: ipv6::HEADER_LEN + usize::from(ip.payload_len()),
    })
}

/// Performs the router hop on an inner packet read from the TUN device: validates
/// its IP header, decrements the TTL / hop limit (patching the IPv4 checksum per
/// RFC 1624) and returns the packet's length by its header (trailing bytes are not
/// part of it).
#[inline]
pub fn forward(packet: &mut [u8]) -> Result<usize, Drop> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let len = parse_inner_v4(packet)?.len;
            let mut ip = ipv4::Packet::new_unchecked(packet);
            let ttl = ip.ttl();
            if ttl <= 1 {
                return Err(Drop::TtlExpired);
            }
            // TTL is the high byte of the 16-bit word it shares with the protocol.
            let proto = u8::from(ip.protocol());
            let old = u16::from_be_bytes([ttl, proto]);
            let new = u16::from_be_bytes([ttl - 1, proto]);
            ip.set_ttl(ttl - 1);
            let csum = checksum::update(ip.checksum(), old, new);
            ip.set_checksum(csum);
            Ok(len)
        }
        Some(6) => {
            let len = parse_inner_v6(packet)?.len;
            let mut ip = ipv6::Packet::new_unchecked(packet);
            let hops = ip.hop_limit();
            if hops <= 1 {
                return Err(Drop::TtlExpired);
            }
            ip.set_hop_limit(hops - 1);
            Ok(len)
        }
        Some(_) => Err(Drop::IpVersion),
        None => Err(Drop::IpTruncated),
    }
}

/// The packet at `buf[start..start + len]`, or [`Drop::NoHeadroom`] if the caller's
/// range does not fit its buffer.
#[inline]
fn packet_at(buf: &mut [u8], start: usize, len: usize) -> Result<&mut [u8], Drop> {
    let end = start.checked_add(len).ok_or(Drop::NoHeadroom)?;
    buf.get_mut(start..end).ok_or(Drop::NoHeadroom)
}

/// flannel's udp format: forwards the inner packet at `buf[start..start + len]` one
/// hop and returns the range of `buf` to send as the UDP payload (the packet itself,
/// without trailing padding).
#[inline]
pub fn encap_udp(buf: &mut [u8], start: usize, len: usize) -> Result<Range<usize>, Drop> {
    let ip_len = forward(packet_at(buf, start, len)?)?;
    Ok(start..start + ip_len)
}

/// The vxlan format: forwards the inner packet at `buf[start..start + len]` one hop,
/// writes the VXLAN and Ethernet headers into the [`VXLAN_OVERHEAD`] bytes before
/// `start`, and returns the range of `buf` to send as the UDP payload.
#[inline]
pub fn encap_vxlan(
    buf: &mut [u8],
    start: usize,
    len: usize,
    hdr: &VxlanHeader,
) -> Result<Range<usize>, Drop> {
    let head = start.checked_sub(VXLAN_OVERHEAD).ok_or(Drop::NoHeadroom)?;
    let packet = packet_at(buf, start, len)?;
    let ethertype = match packet.first().map(|b| b >> 4) {
        Some(6) => ethernet::EtherType::Ipv6,
        _ => ethernet::EtherType::Ipv4,
    };
    let ip_len = forward(packet)?;
    let (tunnel, eth) = buf[head..start].split_at_mut(vxlan::HEADER_LEN);
    let mut v = vxlan::Packet::new_unchecked(tunnel);
    v.set_flags(vxlan::FLAG_I);
    v.set_reserved1(0);
    v.set_vni(hdr.vni);
    v.set_reserved2(0);
    let mut e = ethernet::Frame::new_unchecked(eth);
    e.set_dst_addr(hdr.dst_mac);
    e.set_src_addr(hdr.src_mac);
    e.set_ethertype(ethertype);
    Ok(head..start + ip_len)
}

/// Checks the inner packet's addresses against the sender's and our own lease.
#[inline]
fn check_addresses(inner: &Inner, local: &Local, sender: Option<&SubnetKey>) -> Result<(), Drop> {
    let sender = sender.ok_or(Drop::UnknownSender)?;
    let (src_ok, dst_ok) = match (inner.src, inner.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (
            sender.v4.is_some_and(|n| n.contains(&s)),
            local.subnets.v4.is_some_and(|n| n.contains(&d)),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => (
            sender.v6.is_some_and(|n| n.contains(&s)),
            local.subnets.v6.is_some_and(|n| n.contains(&d)),
        ),
        // parse_inner never mixes families.
        _ => (false, false),
    };
    if !src_ok {
        Err(Drop::SpoofedSource)
    } else if !dst_ok {
        Err(Drop::NotOurSubnet)
    } else {
        Ok(())
    }
}

/// Validates an inner IPv4 header's checksum; IPv6 has none.
#[inline]
fn check_ip_checksum(packet: &[u8]) -> Result<(), Drop> {
    if packet.first().map(|b| b >> 4) == Some(4)
        && !ipv4::Packet::new_unchecked(packet).verify_checksum()
    {
        return Err(Drop::IpChecksum);
    }
    Ok(())
}

/// flannel's udp format, inbound: `payload` is a received UDP payload, `sender` the
/// lease whose PublicIP sent it (`None` if no lease has that address). Returns the
/// range of the inner IP packet inside `payload`.
#[inline]
pub fn decap_udp(
    payload: &[u8],
    local: &Local,
    sender: Option<&SubnetKey>,
) -> Result<Range<usize>, Drop> {
    if payload.is_empty() {
        return Err(Drop::Truncated);
    }
    let inner = parse_inner(payload)?;
    check_ip_checksum(payload)?;
    check_addresses(&inner, local, sender)?;
    Ok(0..inner.len)
}

/// The vxlan format, inbound: `payload` is a received UDP payload (VXLAN header,
/// inner Ethernet frame), `sender` the lease whose PublicIP sent it. Returns the
/// range of the inner IP packet inside `payload`.
#[inline]
pub fn decap_vxlan(
    payload: &[u8],
    local: &Local,
    sender: Option<&SubnetKey>,
) -> Result<Range<usize>, Drop> {
    if payload.len() < VXLAN_OVERHEAD {
        return Err(Drop::Truncated);
    }
    let v = vxlan::Packet::new_unchecked(payload);
    if v.flags() & vxlan::FLAG_I == 0 {
        return Err(Drop::VxlanFlags);
    }
    if v.vni() != local.vni {
        return Err(Drop::WrongVni);
    }
    let frame = ethernet::Frame::new_unchecked(&payload[vxlan::HEADER_LEN..]);
    let ethertype = frame.ethertype();
    if ethertype == ethernet::EtherType::Arp {
        return Err(Drop::Arp);
    }
    let dst = frame.dst_addr();
    if dst.is_multicast() {
        return Err(Drop::MulticastMac);
    }
    if dst != local.vtep_mac {
        return Err(Drop::NotOurMac);
    }
    let packet = &payload[VXLAN_OVERHEAD..];
    let version = match ethertype {
        ethernet::EtherType::Ipv4 => 4,
        ethernet::EtherType::Ipv6 => 6,
        _ => return Err(Drop::EtherType),
    };
    // The IP header must agree with the ethertype that announced it.
    match packet.first() {
        None => return Err(Drop::IpTruncated),
        Some(b) if b >> 4 != version => return Err(Drop::IpVersion),
        Some(_) => {}
    }
    let inner = parse_inner(packet)?;
    check_ip_checksum(packet)?;
    check_addresses(&inner, local, sender)?;
    Ok(VXLAN_OVERHEAD..VXLAN_OVERHEAD + inner.len)
}

#[cfg(test)]
mod tests;
