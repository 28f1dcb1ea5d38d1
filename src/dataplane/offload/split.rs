//! [`Split`]: one TUN read (virtio-net header and IP packet) cut into the packets
//! the wire carries. See the [module documentation](super) for the rules.

use crate::drop_reason::DropReason;
use crate::wire::virtio::{self, GsoType};
use crate::wire::{checksum, ipv4, ipv6, tcp, udp, IpProtocol};

use super::{pseudo_header, store_checksum};

/// What [`Split::write`] does to each segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Copy the packet as it is.
    Whole,
    /// Copy the packet and finish its checksum: sum from `start` to the end, store
    /// the complement at `field`.
    Checksum { start: usize, field: usize },
    /// TCP segmentation.
    Tcp,
    /// UDP segmentation.
    Udp,
}

/// A packet read from the TUN, checked and ready to be written out as
/// [`count`](Self::count) segments. Borrows the packet; holds no buffer.
#[derive(Debug, Clone, Copy)]
pub struct Split<'a> {
    /// The IP packet, trimmed to its IP length unless [`Kind::Whole`].
    packet: &'a [u8],
    kind: Kind,
    /// IPv6 rather than IPv4.
    v6: bool,
    /// Length of the IP header: where the TCP/UDP header starts.
    l3_len: usize,
    /// Length of the IP and TCP/UDP headers: where the payload starts.
    hdr_len: usize,
    /// Payload bytes per segment.
    gso_size: usize,
    count: usize,
    /// Leave each segment's TCP/UDP checksum partial (the pseudo-header sum,
    /// as the local stack handed it over) instead of completing it: for a peer
    /// that completes it itself ([`Split::leave_partial`]).
    partial: bool,
}

impl<'a> Split<'a> {
    /// Validates the virtio header against the IP packet that follows it.
    ///
    /// - `GSO_NONE`: one segment, the packet itself; its checksum is completed if
    ///   the header says `NEEDS_CSUM`. Without `NEEDS_CSUM` the packet is not
    ///   parsed here (the tunnel's own checks judge it).
    /// - `GSO_TCPV4`, `GSO_TCPV6`, `GSO_UDP_L4`: segments of `gso_size` payload
    ///   bytes each (at least one, even without payload).
    ///
    /// Errors are drop reasons: [`DropReason::VirtioHeader`], [`DropReason::GsoUnsupported`],
    /// [`DropReason::TransportHeader`], or the IP header's own reason.
    pub fn new(vnet: &virtio::Repr, packet: &'a [u8]) -> Result<Split<'a>, DropReason> {
        vnet.validate(packet.len())
            .map_err(|_| DropReason::VirtioHeader)?;
        let whole = Split {
            packet,
            kind: Kind::Whole,
            v6: false,
            l3_len: 0,
            hdr_len: 0,
            gso_size: packet.len(),
            count: 1,
            partial: false,
        };
        match vnet.gso_type {
            GsoType::None if !vnet.needs_csum() => Ok(whole),
            GsoType::None => {
                let (start, field, end) = checksum_range(vnet, packet)?;
                Ok(Split {
                    packet: &packet[..end],
                    kind: Kind::Checksum { start, field },
                    gso_size: end,
                    ..whole
                })
            }
            GsoType::TcpV4 | GsoType::TcpV6 | GsoType::UdpL4 => Self::segmented(vnet, packet),
            GsoType::Udp | GsoType::Unknown(_) => Err(DropReason::GsoUnsupported),
        }
    }

    /// [`new`](Self::new) over one whole TUN read: the virtio-net header, then the
    /// packet. A read shorter than the header is [`DropReason::VirtioHeader`].
    pub fn from_read(read: &'a [u8]) -> Result<Split<'a>, DropReason> {
        let header = virtio::Header::new_checked(read).map_err(|_| DropReason::VirtioHeader)?;
        let vnet = virtio::Repr::parse(&header).map_err(|_| DropReason::VirtioHeader)?;
        Split::new(&vnet, read.get(virtio::HEADER_LEN..).unwrap_or_default())
    }

    /// Checks a super-packet under segmentation.
    fn segmented(vnet: &virtio::Repr, packet: &'a [u8]) -> Result<Split<'a>, DropReason> {
        let ip = Ip::parse(packet)?;
        if ip.fragment || (ip.v6 && ip.protocol != ip.next_header) {
            return Err(DropReason::GsoUnsupported);
        }
        let packet = &packet[..ip.end];
        let transport = &packet[ip.l3_len..];
        let (kind, csum_offset) = match (vnet.gso_type, ip.protocol) {
            (GsoType::TcpV4, IpProtocol::Tcp) if !ip.v6 => (Kind::Tcp, tcp::CHECKSUM_OFFSET),
            (GsoType::TcpV6, IpProtocol::Tcp) if ip.v6 => (Kind::Tcp, tcp::CHECKSUM_OFFSET),
            (GsoType::UdpL4, IpProtocol::Udp) => (Kind::Udp, udp::CHECKSUM_OFFSET),
            _ => return Err(DropReason::GsoUnsupported),
        };
        let l4_len = if kind == Kind::Tcp {
            tcp::Packet::new_checked(transport)
                .map_err(|_| DropReason::TransportHeader)?
                .header_len()
        } else if transport.len() >= udp::HEADER_LEN {
            // The UDP length field is rewritten on every segment, not trusted.
            udp::HEADER_LEN
        } else {
            return Err(DropReason::TransportHeader);
        };
        if vnet.needs_csum()
            && (usize::from(vnet.csum_start) != ip.l3_len
                || usize::from(vnet.csum_offset) != csum_offset)
        {
            return Err(DropReason::VirtioHeader);
        }
        let hdr_len = ip.l3_len + l4_len;
        let gso_size = usize::from(vnet.gso_size);
        let payload = packet.len() - hdr_len;
        Ok(Split {
            packet,
            kind,
            v6: ip.v6,
            l3_len: ip.l3_len,
            hdr_len,
            gso_size,
            count: payload.div_ceil(gso_size).max(1),
            partial: false,
        })
    }

    /// With `partial`, segments keep partial checksums: the field holds the
    /// segment's pseudo-header sum, and no pass over the payload is made. Only
    /// for a receiver that completes them (a ringlay peer that advertises
    /// [`Features::partial_csum`](crate::config::Features)): the outer UDP
    /// checksum covers the bytes on the way.
    #[inline]
    pub fn leave_partial(self, partial: bool) -> Split<'a> {
        Split { partial, ..self }
    }

    /// Number of segments (at least 1).
    #[inline]
    pub fn count(&self) -> usize {
        self.count
    }

    /// Byte length of segment `i`: all are [`stride`](Self::stride) long but the
    /// last, which may be shorter; 0 for `i` ≥ [`count`](Self::count).
    #[inline]
    pub fn segment_len(&self, i: usize) -> usize {
        if i >= self.count {
            return 0;
        }
        let payload = self.packet.len() - self.hdr_len;
        let before = i * self.gso_size;
        self.hdr_len + (payload - before).min(self.gso_size)
    }

    /// Length of every segment except possibly the last one.
    #[inline]
    pub fn stride(&self) -> usize {
        self.hdr_len + self.gso_size
    }

    /// Writes segment `i` into `out[..segment_len(i)]` as a complete, valid IP
    /// packet and returns its length; returns 0 (and writes nothing) if `i` ≥
    /// [`count`](Self::count) or `out` is shorter than the segment.
    pub fn write(&self, i: usize, out: &mut [u8]) -> usize {
        let len = self.segment_len(i);
        let Some(out) = out.get_mut(..len) else {
            return 0;
        };
        if len == 0 {
            return 0;
        }
        match self.kind {
            Kind::Whole => out.copy_from_slice(self.packet),
            Kind::Checksum { .. } if self.partial => out.copy_from_slice(self.packet),
            Kind::Checksum { start, field } => {
                out.copy_from_slice(self.packet);
                let sum = checksum::data(&out[start..]);
                store_checksum(&mut out[field..], sum);
            }
            Kind::Tcp | Kind::Udp => self.write_segment(i, out),
        }
        len
    }

    /// Length of every segment's IP and TCP/UDP headers (of a segmented split;
    /// of a single packet, 0: it has no separate payload).
    #[inline]
    pub fn header_len(&self) -> usize {
        self.hdr_len
    }

    /// Where segment `i`'s payload lies in the packet the split was made from
    /// (empty for `i` ≥ [`count`](Self::count)).
    #[inline]
    pub fn payload_range(&self, i: usize) -> std::ops::Range<usize> {
        if i >= self.count {
            return self.packet.len()..self.packet.len();
        }
        let from = self.hdr_len + i * self.gso_size;
        from..from + (self.segment_len(i) - self.hdr_len)
    }

    /// Writes segment `i`'s headers (IP and TCP/UDP, [`header_len`](Self::header_len)
    /// bytes) into `out` and returns their length, leaving the payload where it is
    /// ([`payload_range`](Self::payload_range)): for a send that gathers headers and
    /// payload from separate places. Returns 0 (and writes nothing) for a single
    /// packet, for `i` ≥ [`count`](Self::count), or if `out` is too short.
    pub fn write_header(&self, i: usize, out: &mut [u8]) -> usize {
        if !matches!(self.kind, Kind::Tcp | Kind::Udp) || i >= self.count {
            return 0;
        }
        let Some(head) = out.get_mut(..self.hdr_len) else {
            return 0;
        };
        head.copy_from_slice(&self.packet[..self.hdr_len]);
        self.fill_header(i, head, &self.packet[self.payload_range(i)]);
        self.hdr_len
    }

    /// Builds segment `i` in `out`, which is exactly `segment_len(i)` long.
    fn write_segment(&self, i: usize, out: &mut [u8]) {
        let (head, payload) = out.split_at_mut(self.hdr_len);
        head.copy_from_slice(&self.packet[..self.hdr_len]);
        payload.copy_from_slice(&self.packet[self.payload_range(i)]);
        self.fill_header(i, head, payload);
    }

    /// Turns `head`, a copy of the super-packet's headers, into segment `i`'s
    /// headers for `payload`: lengths, IPv4 id and checksum, TCP sequence number
    /// and flags, and the TCP/UDP checksum (complete, or partial with
    /// [`leave_partial`](Self::leave_partial)).
    fn fill_header(&self, i: usize, head: &mut [u8], payload: &[u8]) {
        // The one pass over the payload, unless the checksum stays partial.
        let payload_sum = if self.partial {
            0
        } else {
            checksum::data(payload)
        };

        let len = out_len(self.hdr_len, payload.len());
        let (ip, transport) = head.split_at_mut(self.l3_len);
        if self.v6 {
            ipv6::Packet::new_unchecked(&mut *ip).set_payload_len(len - self.l3_len as u16);
        } else {
            let mut ip = ipv4::Packet::new_unchecked(&mut *ip);
            ip.set_total_len(len);
            ip.set_ident(ip.ident().wrapping_add(i as u16));
            ip.fill_checksum();
        }
        let l4_len = len - self.l3_len as u16;
        let protocol = if self.kind == Kind::Tcp {
            let mut tcp = tcp::Packet::new_unchecked(&mut *transport);
            let offset = (i * self.gso_size) as u32;
            tcp.set_seq_number(tcp.seq_number().wrapping_add(offset));
            let mut flags = tcp.flags();
            if i + 1 < self.count {
                flags &= !(tcp::FLAG_FIN | tcp::FLAG_PSH);
            }
            if i > 0 {
                flags &= !tcp::FLAG_CWR;
            }
            tcp.set_flags(flags);
            tcp.set_checksum(0);
            IpProtocol::Tcp
        } else {
            let mut udp = udp::Packet::new_unchecked(&mut *transport);
            udp.set_len(l4_len);
            udp.set_checksum(0);
            IpProtocol::Udp
        };
        let field = match protocol {
            IpProtocol::Tcp => tcp::CHECKSUM_OFFSET,
            _ => udp::CHECKSUM_OFFSET,
        };
        let pseudo = pseudo_header(ip, self.v6, protocol.into(), l4_len);
        if self.partial {
            transport[field..field + 2].copy_from_slice(&pseudo.to_be_bytes());
            return;
        }
        let sum = checksum::combine(&[pseudo, checksum::data(transport), payload_sum]);
        store_checksum(&mut transport[field..], sum);
    }
}

/// A segment's length as an IP length field: it never exceeds the super-packet's,
/// which came from one.
#[inline]
fn out_len(hdr_len: usize, payload: usize) -> u16 {
    u16::try_from(hdr_len + payload).unwrap_or(u16::MAX)
}

/// Completes the checksum of a single packet in place, as [`Split::write`] does for
/// a `GSO_NONE` packet with `NEEDS_CSUM`: without that flag it does nothing.
/// Refuses a header with segmentation ([`DropReason::GsoUnsupported`]) and one whose
/// checksum offsets do not fit the IP packet ([`DropReason::VirtioHeader`]).
pub fn complete_checksum(vnet: &virtio::Repr, packet: &mut [u8]) -> Result<(), DropReason> {
    vnet.validate(packet.len())
        .map_err(|_| DropReason::VirtioHeader)?;
    if vnet.gso_type != GsoType::None {
        return Err(DropReason::GsoUnsupported);
    }
    if !vnet.needs_csum() {
        return Ok(());
    }
    let (start, field, end) = checksum_range(vnet, packet)?;
    let sum = checksum::data(&packet[start..end]);
    store_checksum(&mut packet[field..end], sum);
    Ok(())
}

/// For `NEEDS_CSUM`: where the checksummed bytes start, where the checksum field
/// is, and where the IP packet ends, all checked against the IP header. The field
/// must be a 16-bit word of the sum (an even `csum_offset`), or storing the
/// complement would not make the sum verify.
fn checksum_range(vnet: &virtio::Repr, packet: &[u8]) -> Result<(usize, usize, usize), DropReason> {
    let end = ip_end(packet)?;
    let start = usize::from(vnet.csum_start);
    let field = start + usize::from(vnet.csum_offset);
    if field + 2 > end || !vnet.csum_offset.is_multiple_of(2) {
        return Err(DropReason::VirtioHeader);
    }
    Ok((start, field, end))
}

/// Where the IP packet at the start of `packet` ends, by its length field.
fn ip_end(packet: &[u8]) -> Result<usize, DropReason> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => ipv4::Packet::new_checked(packet)
            .map(|ip| usize::from(ip.total_len()))
            .map_err(DropReason::from_ip),
        Some(6) => ipv6::Packet::new_checked(packet)
            .map(|ip| ipv6::HEADER_LEN + usize::from(ip.payload_len()))
            .map_err(DropReason::from_ip),
        Some(_) => Err(DropReason::IpVersion),
        None => Err(DropReason::IpTruncated),
    }
}

/// What segmentation needs from an IP header.
#[derive(Debug, Clone, Copy)]
struct Ip {
    v6: bool,
    /// Where the upper-layer header starts.
    l3_len: usize,
    /// Where the IP packet ends (its length field).
    end: usize,
    /// The upper-layer protocol.
    protocol: IpProtocol,
    /// IPv6: the fixed header's next header (IPv4: `protocol`).
    next_header: IpProtocol,
    /// IPv4: a fragment (MF or an offset). IPv6: never (see `next_header`).
    fragment: bool,
}

impl Ip {
    fn parse(packet: &[u8]) -> Result<Ip, DropReason> {
        match packet.first().map(|b| b >> 4) {
            Some(4) => {
                let ip = ipv4::Packet::new_checked(packet).map_err(DropReason::from_ip)?;
                Ok(Ip {
                    v6: false,
                    l3_len: ip.header_len(),
                    end: usize::from(ip.total_len()),
                    protocol: ip.protocol(),
                    next_header: ip.protocol(),
                    fragment: ip.is_fragment(),
                })
            }
            Some(6) => {
                let ip = ipv6::Packet::new_checked(packet).map_err(DropReason::from_ip)?;
                let (protocol, l3_len) = ip.transport().map_err(|_| DropReason::GsoUnsupported)?;
                Ok(Ip {
                    v6: true,
                    l3_len,
                    end: ipv6::HEADER_LEN + usize::from(ip.payload_len()),
                    protocol,
                    next_header: ip.next_header(),
                    fragment: false,
                })
            }
            Some(_) => Err(DropReason::IpVersion),
            None => Err(DropReason::IpTruncated),
        }
    }
}
