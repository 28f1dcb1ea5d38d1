//! Why the data path refused a packet: one [`DropReason`] per cause, each its own
//! drop counter.
//!
//! The reasons belong to the whole data path, not to one stage of it: decapsulation
//! refuses malformed or foreign datagrams, encapsulation refuses packets whose TTL
//! runs out, the offload code refuses virtio-net headers it cannot honour, and the
//! worker's lookup refuses packets no lease covers. Keeping them in one place lets
//! the counters (`dataplane::stats`) index one array by reason.
//!
//! # Invariants
//!
//! * [`DropReason::ALL`] lists every variant in declaration order, so
//!   `reason as usize` indexes it.
//! * [`DropReason::name`] is stable: metrics and the status endpoint publish it, so
//!   renaming one breaks dashboards.

use core::fmt;

use crate::wire;

/// Why a packet was not forwarded. Each variant is one drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
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
    /// apart from [`DropReason::NoLease`], which then counts only unicast misses.
    MulticastDestination,
    /// The destination's lease names no underlay address of a family this node
    /// tunnels over (an IPv6-only peer seen from an IPv4-only node, or the
    /// reverse), so there is nowhere to send the datagram.
    NoUnderlayAddress,
}

impl DropReason {
    /// Every reason, in declaration order: index `r as usize` is `r`'s position.
    pub const ALL: [DropReason; 24] = [
        DropReason::Truncated,
        DropReason::VxlanFlags,
        DropReason::WrongVni,
        DropReason::Arp,
        DropReason::MulticastMac,
        DropReason::NotOurMac,
        DropReason::EtherType,
        DropReason::IpTruncated,
        DropReason::IpVersion,
        DropReason::IpHeaderLen,
        DropReason::IpTotalLen,
        DropReason::IpChecksum,
        DropReason::UnknownSender,
        DropReason::SpoofedSource,
        DropReason::NotOurSubnet,
        DropReason::TtlExpired,
        DropReason::NoLease,
        DropReason::NoVtepMac,
        DropReason::NoHeadroom,
        DropReason::VirtioHeader,
        DropReason::GsoUnsupported,
        DropReason::TransportHeader,
        DropReason::MulticastDestination,
        DropReason::NoUnderlayAddress,
    ];

    /// A stable `snake_case` name, for counters and metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::VxlanFlags => "vxlan_flags",
            DropReason::WrongVni => "wrong_vni",
            DropReason::Arp => "arp",
            DropReason::MulticastMac => "multicast_mac",
            DropReason::NotOurMac => "not_our_mac",
            DropReason::EtherType => "ethertype",
            DropReason::IpTruncated => "ip_truncated",
            DropReason::IpVersion => "ip_version",
            DropReason::IpHeaderLen => "ip_header_len",
            DropReason::IpTotalLen => "ip_total_len",
            DropReason::IpChecksum => "ip_checksum",
            DropReason::UnknownSender => "unknown_sender",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::NotOurSubnet => "not_our_subnet",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::NoLease => "no_lease",
            DropReason::NoVtepMac => "no_vtep_mac",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::VirtioHeader => "virtio_header",
            DropReason::GsoUnsupported => "gso_unsupported",
            DropReason::TransportHeader => "transport_header",
            DropReason::MulticastDestination => "multicast_destination",
            DropReason::NoUnderlayAddress => "no_underlay_address",
        }
    }

    /// Maps a refusal of the inner IP header parser onto its drop reason.
    pub(crate) const fn from_ip(e: wire::Error) -> DropReason {
        match e {
            wire::Error::Truncated => DropReason::IpTruncated,
            wire::Error::Version => DropReason::IpVersion,
            wire::Error::HeaderLen => DropReason::IpHeaderLen,
            wire::Error::TotalLen => DropReason::IpTotalLen,
            wire::Error::Checksum => DropReason::IpChecksum,
            wire::Error::Malformed => DropReason::IpVersion,
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
