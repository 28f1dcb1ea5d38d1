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
//! [`VXLAN_HEADERS_LEN`] bytes of headroom in front. Encapsulation writes the tunnel
//! headers into that headroom and returns the range to send; the payload is never
//! copied and nothing is allocated. Decapsulation returns the range of the inner
//! packet inside the received datagram, so the caller can write it to the TUN device
//! straight from the receive buffer.
//!
//! # Forwarding is one router hop
//!
//! Outbound, the inner IPv4 TTL or IPv6 hop limit is decremented once (the IPv4 header
//! checksum is patched incrementally, RFC 1624). A packet that arrives with a TTL of 1
//! or 0 is not forwarded: encapsulation refuses it with [`DropReason::TtlExpired`], which the
//! data path counts (it does not answer with ICMP Time Exceeded; the host's kernel
//! already did so for packets whose TTL ran out on the way into the TUN). Inbound
//! packets are not decremented again.
//!
//! # Refusals
//!
//! Every refused packet gets exactly one [`DropReason`], so that the data path can
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
use crate::drop_reason::DropReason;
use crate::wire::{checksum, ethernet, ipv4, ipv6, vxlan, MacAddr};

/// Bytes the vxlan format puts in front of the inner IP packet: the VXLAN header and
/// the inner Ethernet header, all inside the UDP payload. The caller reserves at
/// least this much headroom. (The MTU a vxlan overlay loses is larger: it also
/// counts the outer IPv4 and UDP headers.)
pub const VXLAN_HEADERS_LEN: usize = vxlan::HEADER_LEN + ethernet::HEADER_LEN;

/// The encapsulation format: what a worker puts around every inner packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunnel {
    /// flannel's udp format.
    Udp,
    /// VXLAN; the VNI is in [`Local`].
    Vxlan,
}

impl Tunnel {
    /// Bytes this format puts in front of the inner packet, inside the UDP payload.
    pub const fn overhead(self) -> usize {
        match self {
            Tunnel::Udp => 0,
            Tunnel::Vxlan => VXLAN_HEADERS_LEN,
        }
    }
}

/// Bytes of the outer IPv4 and UDP headers the kernel adds when the datagram is sent.
pub const OUTER_IPV4_UDP_LEN: usize = 20 + 8;

/// What decapsulation needs to know about this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// Our lease's subnets: inner destinations must fall inside them.
    pub subnets: SubnetKey,
    /// The network's VXLAN VNI (flannel's default is 1).
    pub vni: u32,
    /// Our VTEP MAC: the inner destination MAC of vxlan frames for us over the
    /// IPv4 underlay.
    pub vtep_mac: MacAddr,
    /// Our IPv6 VTEP's MAC (`BackendV6Data.VtepMAC`): the inner destination of
    /// frames for us over the IPv6 underlay. The same as `vtep_mac` unless the
    /// lease says otherwise; frames to either are ours.
    pub vtep_mac_v6: MacAddr,
}

/// The tunnel headers of every vxlan frame to one peer, encoded once (when the
/// peer's lease is learned) so that encapsulation is two copies.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VxlanHeader {
    /// VXLAN header (flags, VNI), then the inner Ethernet destination (the peer's
    /// VTEP MAC) and source (ours): everything but the ethertype.
    bytes: [u8; VXLAN_HEADERS_LEN - 2],
}

impl VxlanHeader {
    /// Encodes the headers for frames from `src_mac` (ours) to `dst_mac` (the peer's
    /// VtepMAC) on VNI `vni` (24 bits; higher bits are ignored).
    pub fn new(vni: u32, src_mac: MacAddr, dst_mac: MacAddr) -> VxlanHeader {
        let mut bytes = [0u8; VXLAN_HEADERS_LEN - 2];
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
fn ip_version(packet: &[u8]) -> Result<u8, DropReason> {
    packet
        .first()
        .map(|b| b >> 4)
        .ok_or(DropReason::IpTruncated)
}

/// Performs the router hop on an inner packet read from the TUN device: validates
/// its IP header, decrements the TTL / hop limit (patching the IPv4 checksum per
/// RFC 1624) and returns the packet's length by its header (trailing bytes are not
/// part of it).
#[inline]
pub fn forward(packet: &mut [u8]) -> Result<usize, DropReason> {
    match ip_version(packet)? {
        4 => {
            let mut ip = ipv4::Packet::new_checked(packet).map_err(DropReason::from_ip)?;
            let ttl = ip.ttl();
            if ttl <= 1 {
                return Err(DropReason::TtlExpired);
            }
            ip.set_ttl(ttl - 1);
            // TTL is the high byte of its 16-bit word: the word drops by 0x0100.
            let csum =
                checksum::update(ip.checksum(), u16::from(ttl) << 8, u16::from(ttl - 1) << 8);
            ip.set_checksum(csum);
            Ok(usize::from(ip.total_len()))
        }
        6 => {
            let mut ip = ipv6::Packet::new_checked(packet).map_err(DropReason::from_ip)?;
            let hops = ip.hop_limit();
            if hops <= 1 {
                return Err(DropReason::TtlExpired);
            }
            ip.set_hop_limit(hops - 1);
            Ok(ipv6::HEADER_LEN + usize::from(ip.payload_len()))
        }
        _ => Err(DropReason::IpVersion),
    }
}

/// The packet at `buf[start..start + len]`, or [`DropReason::NoHeadroom`] if the caller's
/// range does not fit its buffer.
#[inline]
fn packet_at(buf: &mut [u8], start: usize, len: usize) -> Result<&mut [u8], DropReason> {
    let end = start.checked_add(len).ok_or(DropReason::NoHeadroom)?;
    buf.get_mut(start..end).ok_or(DropReason::NoHeadroom)
}

/// flannel's udp format: forwards the inner packet at `buf[start..start + len]` one
/// hop and returns the range of `buf` to send as the UDP payload (the packet itself,
/// without trailing padding).
#[inline]
pub fn encap_udp(buf: &mut [u8], start: usize, len: usize) -> Result<Range<usize>, DropReason> {
    let ip_len = forward(packet_at(buf, start, len)?)?;
    Ok(start..start + ip_len)
}

/// The vxlan format: forwards the inner packet at `buf[start..start + len]` one hop,
/// writes the VXLAN and Ethernet headers into the [`VXLAN_HEADERS_LEN`] bytes before
/// `start`, and returns the range of `buf` to send as the UDP payload.
#[inline]
pub fn encap_vxlan(
    buf: &mut [u8],
    start: usize,
    len: usize,
    hdr: &VxlanHeader,
) -> Result<Range<usize>, DropReason> {
    let head = start
        .checked_sub(VXLAN_HEADERS_LEN)
        .ok_or(DropReason::NoHeadroom)?;
    let packet = packet_at(buf, start, len)?;
    let first = packet.first().copied().unwrap_or(0);
    let ip_len = forward(packet)?;
    write_vxlan_headers(&mut buf[head..start], hdr, first);
    Ok(head..start + ip_len)
}

/// Writes the VXLAN and inner Ethernet headers ([`VXLAN_HEADERS_LEN`] bytes, the
/// length of `out`) for an inner packet whose first byte is `first`: its IP
/// version picks the EtherType. For a send that gathers these headers and the
/// packet from separate places; [`encap_vxlan`] writes them in front of it.
#[inline]
pub fn write_vxlan_headers(out: &mut [u8], hdr: &VxlanHeader, first: u8) {
    let ethertype = if first >> 4 == 6 {
        ethernet::EtherType::Ipv6
    } else {
        ethernet::EtherType::Ipv4
    };
    let (macs, ethertype_field) = out.split_at_mut(VXLAN_HEADERS_LEN - 2);
    macs.copy_from_slice(&hdr.bytes);
    ethertype_field.copy_from_slice(&u16::from(ethertype).to_be_bytes());
}

/// Checks an inbound inner IPv4 packet (header, checksum, addresses against the
/// sender's and our lease) and returns its length by its header.
#[inline]
fn check_inbound_v4(
    packet: &[u8],
    local: &Local,
    sender: Option<&SubnetKey>,
) -> Result<usize, DropReason> {
    let ip = ipv4::Packet::new_checked(packet).map_err(DropReason::from_ip)?;
    if !ip.verify_checksum() {
        return Err(DropReason::IpChecksum);
    }
    let sender = sender.ok_or(DropReason::UnknownSender)?;
    if !contains_v4(sender.v4, ip.src_addr()) {
        return Err(DropReason::SpoofedSource);
    }
    if !contains_v4(local.subnets.v4, ip.dst_addr()) {
        return Err(DropReason::NotOurSubnet);
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
) -> Result<usize, DropReason> {
    let ip = ipv6::Packet::new_checked(packet).map_err(DropReason::from_ip)?;
    let sender = sender.ok_or(DropReason::UnknownSender)?;
    if !contains_v6(sender.v6, ip.src_addr()) {
        return Err(DropReason::SpoofedSource);
    }
    if !contains_v6(local.subnets.v6, ip.dst_addr()) {
        return Err(DropReason::NotOurSubnet);
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
) -> Result<Range<usize>, DropReason> {
    let len = match payload.first().map(|b| b >> 4) {
        None => return Err(DropReason::Truncated),
        Some(4) => check_inbound_v4(payload, local, sender)?,
        Some(6) => check_inbound_v6(payload, local, sender)?,
        Some(_) => return Err(DropReason::IpVersion),
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
) -> Result<Range<usize>, DropReason> {
    if payload.len() < VXLAN_HEADERS_LEN {
        return Err(DropReason::Truncated);
    }
    let (tunnel, rest) = payload.split_at(vxlan::HEADER_LEN);
    let v = vxlan::Packet::new_unchecked(tunnel);
    if v.flags() & vxlan::FLAG_I == 0 {
        return Err(DropReason::VxlanFlags);
    }
    if v.vni() != local.vni {
        return Err(DropReason::WrongVni);
    }
    let (eth, packet) = rest.split_at(ethernet::HEADER_LEN);
    let frame = ethernet::Frame::new_unchecked(eth);
    let ethertype = frame.ethertype();
    if ethertype == ethernet::EtherType::Arp {
        return Err(DropReason::Arp);
    }
    let dst = frame.dst_addr();
    if dst.is_multicast() {
        return Err(DropReason::MulticastMac);
    }
    if dst != local.vtep_mac && dst != local.vtep_mac_v6 {
        return Err(DropReason::NotOurMac);
    }
    let version = match ethertype {
        ethernet::EtherType::Ipv4 => 4,
        ethernet::EtherType::Ipv6 => 6,
        _ => return Err(DropReason::EtherType),
    };
    // The IP header must agree with the ethertype that announced it.
    if ip_version(packet)? != version {
        return Err(DropReason::IpVersion);
    }
    let len = if version == 4 {
        check_inbound_v4(packet, local, sender)?
    } else {
        check_inbound_v6(packet, local, sender)?
    };
    Ok(VXLAN_HEADERS_LEN..VXLAN_HEADERS_LEN + len)
}

#[cfg(test)]
mod tests;
