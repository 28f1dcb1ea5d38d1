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
use core::net::{Ipv4Addr, Ipv6Addr};
use core::ops::Range;

use ipnet::{Ipv4Net, Ipv6Net};

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
    /// The virtio-net header read from the TUN does not fit the packet after it:
    /// checksum or header offsets beyond it, or not where its headers put them, or
    /// a checksum field that is not a 16-bit word of the sum (odd `csum_offset`).
    VirtioHeader,
    /// The segmentation type is one ringlay does not split (UFO), or it does not
    /// match the packet (a TCP type on UDP, TCPv4 on IPv6, an IP fragment, IPv6
    /// extension headers).
    GsoUnsupported,
    /// The TCP or UDP header is truncated or its length field is impossible.
    TransportHeader,
    /// A packet from the TUN to a multicast address (such as the host's own MLD
    /// reports): an overlay carries unicast only, so no lease covers it. Counted
    /// apart from [`Drop::NoLease`], which then counts only unicast misses.
    MulticastDestination,
}

impl Drop {
    /// Every reason, in declaration order: index `r as usize` is `r`'s position.
    pub const ALL: [Drop; 23] = [
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
        Drop::VirtioHeader,
        Drop::GsoUnsupported,
        Drop::TransportHeader,
        Drop::MulticastDestination,
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
            Drop::VirtioHeader => "virtio_header",
            Drop::GsoUnsupported => "gso_unsupported",
            Drop::TransportHeader => "transport_header",
            Drop::MulticastDestination => "multicast_destination",
        }
    }

    /// Maps a refusal of the inner IP header parser onto its drop reason.
    pub(crate) const fn from_ip(e: wire::Error) -> Drop {
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

/// The tunnel headers of every vxlan frame to one peer, encoded once (when the
/// peer's lease is learned) so that encapsulation is two copies.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VxlanHeader {
    /// VXLAN header (flags, VNI), then the inner Ethernet destination (the peer's
    /// VTEP MAC) and source (ours): everything but the ethertype.
    bytes: [u8; VXLAN_OVERHEAD - 2],
}

impl VxlanHeader {
    /// Encodes the headers for frames from `src_mac` (ours) to `dst_mac` (the peer's
    /// VtepMAC) on VNI `vni` (24 bits; higher bits are ignored).
    pub fn new(vni: u32, src_mac: MacAddr, dst_mac: MacAddr) -> VxlanHeader {
        let mut bytes = [0u8; VXLAN_OVERHEAD - 2];
        let (tunnel, macs) = bytes.split_at_mut(vxlan::HEADER_LEN);
        vxlan::Repr { vni }.emit(&mut vxlan::Packet::new_unchecked(tunnel));
        macs[..6].copy_from_slice(&dst_mac.octets());
        macs[6..].copy_from_slice(&src_mac.octets());
        VxlanHeader { bytes }
    }

    /// The VNI.
    pub fn vni(&self) -> u32 {
        vxlan::Packet::new_unchecked(&self.bytes[..vxlan::HEADER_LEN]).vni()
    }

    /// The inner destination MAC (the peer's VtepMAC).
    pub fn dst_mac(&self) -> MacAddr {
        ethernet::Frame::new_unchecked(&self.bytes[vxlan::HEADER_LEN..]).dst_addr()
    }

    /// The inner source MAC (ours).
    pub fn src_mac(&self) -> MacAddr {
        ethernet::Frame::new_unchecked(&self.bytes[vxlan::HEADER_LEN..]).src_addr()
    }
}

impl fmt::Debug for VxlanHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VxlanHeader")
            .field("vni", &self.vni())
            .field("src_mac", &self.src_mac())
            .field("dst_mac", &self.dst_mac())
            .finish()
    }
}

/// Whether `addr` lies in `net` (`None`: the lease has no subnet of that family).
#[inline]
fn contains_v4(net: Option<Ipv4Net>, addr: Ipv4Addr) -> bool {
    net.is_some_and(|n| {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(n.prefix_len()))
            .unwrap_or(0);
        (addr.to_bits() ^ n.addr().to_bits()) & mask == 0
    })
}

/// Whether `addr` lies in `net` (`None`: the lease has no subnet of that family).
#[inline]
fn contains_v6(net: Option<Ipv6Net>, addr: Ipv6Addr) -> bool {
    net.is_some_and(|n| {
        let mask = u128::MAX
            .checked_shl(128 - u32::from(n.prefix_len()))
            .unwrap_or(0);
        (addr.to_bits() ^ n.addr().to_bits()) & mask == 0
    })
}

/// The IP version from a packet's first nibble, or `IpTruncated` for no bytes.
#[inline]
fn ip_version(packet: &[u8]) -> Result<u8, Drop> {
    packet.first().map(|b| b >> 4).ok_or(Drop::IpTruncated)
}

/// Performs the router hop on an inner packet read from the TUN device: validates
/// its IP header, decrements the TTL / hop limit (patching the IPv4 checksum per
/// RFC 1624) and returns the packet's length by its header (trailing bytes are not
/// part of it).
#[inline]
pub fn forward(packet: &mut [u8]) -> Result<usize, Drop> {
    match ip_version(packet)? {
        4 => {
            let mut ip = ipv4::Packet::new_checked(packet).map_err(Drop::from_ip)?;
            let ttl = ip.ttl();
            if ttl <= 1 {
                return Err(Drop::TtlExpired);
            }
            ip.set_ttl(ttl - 1);
            // TTL is the high byte of its 16-bit word: the word drops by 0x0100.
            let csum =
                checksum::update(ip.checksum(), u16::from(ttl) << 8, u16::from(ttl - 1) << 8);
            ip.set_checksum(csum);
            Ok(usize::from(ip.total_len()))
        }
        6 => {
            let mut ip = ipv6::Packet::new_checked(packet).map_err(Drop::from_ip)?;
            let hops = ip.hop_limit();
            if hops <= 1 {
                return Err(Drop::TtlExpired);
            }
            ip.set_hop_limit(hops - 1);
            Ok(ipv6::HEADER_LEN + usize::from(ip.payload_len()))
        }
        _ => Err(Drop::IpVersion),
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
    let ethertype = match packet.first() {
        Some(b) if b >> 4 == 6 => ethernet::EtherType::Ipv6,
        _ => ethernet::EtherType::Ipv4,
    };
    let ip_len = forward(packet)?;
    let (macs, ethertype_field) = buf[head..start].split_at_mut(VXLAN_OVERHEAD - 2);
    macs.copy_from_slice(&hdr.bytes);
    ethertype_field.copy_from_slice(&u16::from(ethertype).to_be_bytes());
    Ok(head..start + ip_len)
}

/// Checks an inbound inner IPv4 packet (header, checksum, addresses against the
/// sender's and our lease) and returns its length by its header.
#[inline]
fn check_inbound_v4(
    packet: &[u8],
    local: &Local,
    sender: Option<&SubnetKey>,
) -> Result<usize, Drop> {
    let ip = ipv4::Packet::new_checked(packet).map_err(Drop::from_ip)?;
    if !ip.verify_checksum() {
        return Err(Drop::IpChecksum);
    }
    let sender = sender.ok_or(Drop::UnknownSender)?;
    if !contains_v4(sender.v4, ip.src_addr()) {
        return Err(Drop::SpoofedSource);
    }
    if !contains_v4(local.subnets.v4, ip.dst_addr()) {
        return Err(Drop::NotOurSubnet);
    }
    Ok(usize::from(ip.total_len()))
}

/// Checks an inbound inner IPv6 packet (header, addresses against the sender's and
/// our lease) and returns its length by its header.
#[inline]
fn check_inbound_v6(
    packet: &[u8],
    local: &Local,
    sender: Option<&SubnetKey>,
) -> Result<usize, Drop> {
    let ip = ipv6::Packet::new_checked(packet).map_err(Drop::from_ip)?;
    let sender = sender.ok_or(Drop::UnknownSender)?;
    if !contains_v6(sender.v6, ip.src_addr()) {
        return Err(Drop::SpoofedSource);
    }
    if !contains_v6(local.subnets.v6, ip.dst_addr()) {
        return Err(Drop::NotOurSubnet);
    }
    Ok(ipv6::HEADER_LEN + usize::from(ip.payload_len()))
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
    let len = match payload.first().map(|b| b >> 4) {
        None => return Err(Drop::Truncated),
        Some(4) => check_inbound_v4(payload, local, sender)?,
        Some(6) => check_inbound_v6(payload, local, sender)?,
        Some(_) => return Err(Drop::IpVersion),
    };
    Ok(0..len)
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
    let (tunnel, rest) = payload.split_at(vxlan::HEADER_LEN);
    let v = vxlan::Packet::new_unchecked(tunnel);
    if v.flags() & vxlan::FLAG_I == 0 {
        return Err(Drop::VxlanFlags);
    }
    if v.vni() != local.vni {
        return Err(Drop::WrongVni);
    }
    let (eth, packet) = rest.split_at(ethernet::HEADER_LEN);
    let frame = ethernet::Frame::new_unchecked(eth);
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
    let version = match ethertype {
        ethernet::EtherType::Ipv4 => 4,
        ethernet::EtherType::Ipv6 => 6,
        _ => return Err(Drop::EtherType),
    };
    // The IP header must agree with the ethertype that announced it.
    if ip_version(packet)? != version {
        return Err(Drop::IpVersion);
    }
    let len = if version == 4 {
        check_inbound_v4(packet, local, sender)?
    } else {
        check_inbound_v6(packet, local, sender)?
    };
    Ok(VXLAN_OVERHEAD..VXLAN_OVERHEAD + len)
}

#[cfg(test)]
mod tests;
