//! Classic pcap files (the libpcap 2.4 format that `tcpdump -w` writes) and the
//! outer Ethernet/IPv4/UDP framing of tunnel packets, for tests.
//!
//! The reader accepts both byte orders and both timestamp resolutions, with link
//! type Ethernet (1) or Linux cooked capture (113). The writer emits Ethernet
//! frames, so that frames a test builds (or ringlay emits) can be handed to
//! tshark. Offsets are hand-rolled: this is test code checking the real parsers,
//! not a second implementation of them.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// `LINKTYPE_ETHERNET`: each frame starts with a 14-byte Ethernet header.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// `LINKTYPE_LINUX_SLL`: each frame starts with a 16-byte Linux cooked header
/// (what `tcpdump -i any` records).
pub const LINKTYPE_LINUX_SLL: u32 = 113;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const GLOBAL_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;
const SNAPLEN: u32 = 262_144;

const ETHERNET_HEADER_LEN: usize = 14;
const SLL_HEADER_LEN: usize = 16;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_VLAN: u16 = 0x8100;
const IPV4_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
const IPPROTO_UDP: u8 = 17;

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Capture time since the Unix epoch.
    pub ts: Duration,
    /// The file's link type: [`LINKTYPE_ETHERNET`] or [`LINKTYPE_LINUX_SLL`].
    pub link_type: u32,
    /// The captured bytes, starting with the link-layer header.
    pub data: Vec<u8>,
    /// The frame's length on the wire (more than `data.len()` if the capture
    /// was cut at the snap length).
    pub orig_len: u32,
}

/// Reads every frame of a classic pcap file.
pub fn read_pcap(path: &Path) -> io::Result<Vec<Frame>> {
    let bytes = fs::read(path)?;
    parse_pcap(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// Parses the bytes of a classic pcap file.
pub fn parse_pcap(bytes: &[u8]) -> Result<Vec<Frame>, String> {
    let header = bytes
        .get(..GLOBAL_HEADER_LEN)
        .ok_or_else(|| format!("{} bytes, need a 24-byte global header", bytes.len()))?;
    let magic_le = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    // The magic is written in the writer's byte order; reading it back in one
    // order or the other tells which order every later field uses.
    let (big_endian, nanos) = match magic_le {
        MAGIC_MICROS => (false, false),
        MAGIC_NANOS => (false, true),
        m if m.swap_bytes() == MAGIC_MICROS => (true, false),
        m if m.swap_bytes() == MAGIC_NANOS => (true, true),
        m => return Err(format!("not a classic pcap file (magic {m:#010x})")),
    };
    let u32_at = |b: &[u8], at: usize| -> u32 {
        let raw: [u8; 4] = b[at..at + 4].try_into().expect("4 bytes");
        if big_endian {
            u32::from_be_bytes(raw)
        } else {
            u32::from_le_bytes(raw)
        }
    };
    let link_type = u32_at(header, 20) & 0x0fff_ffff; // upper bits: FCS info
    if link_type != LINKTYPE_ETHERNET && link_type != LINKTYPE_LINUX_SLL {
        return Err(format!(
            "link type {link_type} is not Ethernet (1) or Linux SLL (113)"
        ));
    }

    let mut frames = Vec::new();
    let mut at = GLOBAL_HEADER_LEN;
    while at < bytes.len() {
        let record = bytes.get(at..at + RECORD_HEADER_LEN).ok_or_else(|| {
            format!(
                "frame {}: record header cut short at byte {at}",
                frames.len() + 1
            )
        })?;
        let secs = u32_at(record, 0);
        let frac = u32_at(record, 4);
        let incl_len = u32_at(record, 8) as usize;
        let orig_len = u32_at(record, 12);
        let start = at + RECORD_HEADER_LEN;
        let data = bytes.get(start..start + incl_len).ok_or_else(|| {
            format!(
                "frame {}: {incl_len} bytes announced, file ends first",
                frames.len() + 1
            )
        })?;
        let ts = if nanos {
            Duration::new(u64::from(secs), frac)
        } else {
            Duration::new(u64::from(secs), frac.saturating_mul(1000))
        };
        frames.push(Frame {
            ts,
            link_type,
            data: data.to_vec(),
            orig_len,
        });
        at = start + incl_len;
    }
    Ok(frames)
}

/// Encodes Ethernet frames as a classic pcap file (native byte order,
/// microsecond timestamps). Frame `i` is stamped `i` milliseconds after the
/// epoch, so the output is deterministic.
pub fn encode_pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        GLOBAL_HEADER_LEN
            + frames
                .iter()
                .map(|f| RECORD_HEADER_LEN + f.len())
                .sum::<usize>(),
    );
    out.extend_from_slice(&MAGIC_MICROS.to_ne_bytes());
    out.extend_from_slice(&2u16.to_ne_bytes()); // version 2.4
    out.extend_from_slice(&4u16.to_ne_bytes());
    out.extend_from_slice(&0i32.to_ne_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_ne_bytes()); // sigfigs
    out.extend_from_slice(&SNAPLEN.to_ne_bytes());
    out.extend_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
    for (i, frame) in frames.iter().enumerate() {
        let len = u32::try_from(frame.len()).expect("frame shorter than 4 GiB");
        let micros = u32::try_from(i * 1000).expect("fewer than 4 million frames");
        out.extend_from_slice(&(micros / 1_000_000).to_ne_bytes());
        out.extend_from_slice(&(micros % 1_000_000).to_ne_bytes());
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(frame);
    }
    out
}

/// Writes Ethernet frames to `path` as a classic pcap file (see [`encode_pcap`]).
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> io::Result<()> {
    fs::write(path, encode_pcap(frames))
}

/// The outer headers of an Ethernet/IPv4/UDP frame, and its UDP payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterUdp<'a> {
    /// Ethernet source (zero for Linux SLL, which records only the sender).
    pub src_mac: [u8; 6],
    /// Ethernet destination (zero for Linux SLL).
    pub dst_mac: [u8; 6],
    /// The IPv4 header, options included.
    pub ip_header: &'a [u8],
    /// IPv4 source address.
    pub src: Ipv4Addr,
    /// IPv4 destination address.
    pub dst: Ipv4Addr,
    /// UDP source port.
    pub sport: u16,
    /// UDP destination port.
    pub dport: u16,
    /// The UDP checksum field as sent (zero: the sender did not compute one).
    pub udp_checksum: u16,
    /// The UDP payload, bounded by the UDP length field (Ethernet padding cut off).
    pub payload: &'a [u8],
}

/// Splits an Ethernet (optionally VLAN-tagged) or Linux SLL frame carrying
/// IPv4/UDP into its outer fields and UDP payload. `None` if the frame is not
/// IPv4/UDP, is a fragment, or its length fields do not fit the captured bytes.
pub fn split_outer_udp_v4(frame: &Frame) -> Option<OuterUdp<'_>> {
    let data = frame.data.as_slice();
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?))
    };
    let mac = |at: usize| -> Option<[u8; 6]> { data.get(at..at + 6)?.try_into().ok() };
    let (src_mac, dst_mac, mut ethertype, mut l3) = match frame.link_type {
        LINKTYPE_ETHERNET => (mac(6)?, mac(0)?, be16(12)?, ETHERNET_HEADER_LEN),
        LINKTYPE_LINUX_SLL => ([0; 6], [0; 6], be16(14)?, SLL_HEADER_LEN),
        _ => return None,
    };
    if ethertype == ETHERTYPE_VLAN {
        ethertype = be16(l3 + 2)?;
        l3 += 4;
    }
    if ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = data.get(l3..)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < IPV4_HEADER_LEN {
        return None;
    }
    let total_len = usize::from(u16::from_be_bytes(ip.get(2..4)?.try_into().ok()?));
    let frag = u16::from_be_bytes(ip.get(6..8)?.try_into().ok()?);
    if *ip.get(9)? != IPPROTO_UDP || frag & 0x3fff != 0 || total_len < ihl + UDP_HEADER_LEN {
        return None;
    }
    let ip = ip.get(..total_len)?;
    let udp = &ip[ihl..];
    let udp_len = usize::from(u16::from_be_bytes(udp[4..6].try_into().ok()?));
    if udp_len < UDP_HEADER_LEN || udp_len > udp.len() {
        return None;
    }
    let addr = |at: usize| Ipv4Addr::from(<[u8; 4]>::try_from(&ip[at..at + 4]).expect("4 bytes"));
    Some(OuterUdp {
        src_mac,
        dst_mac,
        ip_header: &ip[..ihl],
        src: addr(12),
        dst: addr(16),
        sport: u16::from_be_bytes([udp[0], udp[1]]),
        dport: u16::from_be_bytes([udp[2], udp[3]]),
        udp_checksum: u16::from_be_bytes([udp[6], udp[7]]),
        payload: &udp[UDP_HEADER_LEN..udp_len],
    })
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`: the
/// ones' complement of the ones' complement sum of 16-bit big-endian words, an
/// odd final byte padded with zero. Summing a header that holds a correct
/// checksum gives 0.
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The UDP checksum of a datagram over IPv4 (RFC 768): the Internet checksum
/// over the pseudo-header and the UDP header + payload with the checksum field
/// zero. A computed 0 is sent as 0xffff, since 0 means "no checksum".
pub fn udp_v4_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let len = u16::try_from(udp.len()).expect("UDP datagram fits 16 bits");
    let mut zeroed = udp.to_vec();
    zeroed[6..8].fill(0);
    let pseudo = [
        &src.octets()[..],
        &dst.octets()[..],
        &[0, IPPROTO_UDP],
        &len.to_be_bytes()[..],
    ]
    .concat();
    match internet_checksum(&[&pseudo, &zeroed]) {
        0 => 0xffff,
        sum => sum,
    }
}

/// Builds a complete Ethernet + IPv4 + UDP frame around `payload`, with a
/// correct IPv4 header checksum and a correct UDP checksum. The IPv4 header has
/// no options, ID 0, DF clear, TTL 64, as a tunnel endpoint would send it.
pub fn build_outer_udp_v4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = UDP_HEADER_LEN + payload.len();
    let total_len = IPV4_HEADER_LEN + udp_len;
    let total_len16 = u16::try_from(total_len).expect("payload fits one IPv4 packet");

    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let csum = udp_v4_checksum(src_ip, dst_ip, &udp);
    udp[6..8].copy_from_slice(&csum.to_be_bytes());

    let mut ip = [0u8; IPV4_HEADER_LEN];
    ip[0] = 0x45; // version 4, IHL 5
    ip[2..4].copy_from_slice(&total_len16.to_be_bytes());
    ip[8] = 64; // TTL
    ip[9] = IPPROTO_UDP;
    ip[12..16].copy_from_slice(&src_ip.octets());
    ip[16..20].copy_from_slice(&dst_ip.octets());
    let csum = internet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());

    let mut frame = Vec::with_capacity(ETHERNET_HEADER_LEN + total_len);
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&udp);
    frame
}
