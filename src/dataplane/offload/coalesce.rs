//! [`Coalescer`]: decapsulated TCP segments merged into super-packets for the TUN.
//! See the [module documentation](super) for the rules.

use core::ops::Range;

use crate::wire::virtio::{self, GsoType};
use crate::wire::{checksum, ipv4, ipv6, tcp, IpProtocol};

use super::partial::{self, Partial};
use super::pseudo_header;

/// Flows a [`Coalescer`] from [`Coalescer::new`] holds at once.
pub const DEFAULT_FLOWS: usize = 8;

/// Largest IP packet a merged super-packet may become (IPv4's total length limit,
/// kept for IPv6 too).
pub const MAX_PACKET: usize = u16::MAX as usize;

/// Largest IP packet passed through: a full IPv6 payload behind the fixed header.
/// Anything longer cannot be a valid IP packet and is not emitted.
const MAX_PASS: usize = ipv6::HEADER_LEN + u16::MAX as usize;

/// Where the IP packet starts in every emitted frame (after its virtio header).
const VNET: usize = virtio::HEADER_LEN;

/// Flags that stop a segment from merging at all (`tcp_gro_receive` flushes on
/// them).
const NEVER_MERGE: u8 = tcp::FLAG_SYN | tcp::FLAG_RST | tcp::FLAG_URG;

/// Flags that may differ between the segments of a train.
const MAY_DIFFER: u8 = tcp::FLAG_CWR | tcp::FLAG_FIN | tcp::FLAG_PSH;

/// Flags that end a train after the segment carrying them.
const ENDS_TRAIN: u8 = tcp::FLAG_FIN | tcp::FLAG_PSH;

/// A TCP connection, one direction: addresses and ports as they appear in the
/// headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Key {
    v6: bool,
    /// Source then destination; IPv4 uses the first eight bytes.
    addrs: [u8; 32],
    /// Source then destination port.
    ports: [u8; 4],
}

impl Key {
    /// The key of a packet whose IP header of `l3_len` bytes is followed by at
    /// least the TCP ports.
    fn new(packet: &[u8], v6: bool, l3_len: usize) -> Key {
        let mut key = Key {
            v6,
            ..Key::default()
        };
        let addrs = if v6 {
            super::IPV6_ADDRS
        } else {
            super::IPV4_ADDRS
        };
        if let Some(a) = packet.get(addrs) {
            key.addrs[..a.len()].copy_from_slice(a);
        }
        if let Some(p) = packet.get(l3_len..l3_len + 4) {
            key.ports.copy_from_slice(p);
        }
        key
    }
}

/// What is known of a packet's TCP or UDP checksum, which decides the virtio
/// header it is written with alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Csum {
    /// Not checked, or failed: a zero header, so the kernel checks it (and drops
    /// a bad one).
    Unchecked,
    /// Verified, with where it is and the pseudo-header sum: written with the
    /// field reset to that sum and `NEEDS_CSUM`, so the kernel takes it as a
    /// local sender's partial checksum and does not check it again.
    /// (`DATA_VALID`, the virtio flag for "checked", means nothing on a TUN
    /// write — virtio 1.x §5.1.6.2.1, and `virtio_net_hdr_to_skb` reads only
    /// `NEEDS_CSUM` — so the kernel would verify a second time.)
    Verified(Partial, u16),
    /// The field holds the pseudo-header sum only (see [`super::partial`]):
    /// `NEEDS_CSUM`, so the kernel delivers it as its own.
    Partial(Partial),
}

impl Csum {
    /// The checksum of a packet whose IP header was read (see
    /// [`partial::check`]), judged without a pass over the payload: partial, or
    /// left for the kernel to check.
    fn of(packet: &[u8], v6: bool, protocol: IpProtocol, start: usize) -> Csum {
        let l4_len = packet.len().saturating_sub(start);
        partial::check(packet, v6, protocol, start, l4_len).map_or(Csum::Unchecked, Csum::Partial)
    }

    /// The virtio header of `packet` written alone, with a verified checksum
    /// turned into a partial one in place.
    fn header(self, packet: &mut [u8]) -> virtio::Repr {
        match self {
            Csum::Unchecked => virtio::Repr::default(),
            Csum::Verified(p, pseudo) => {
                if let Some(field) = packet.get_mut(p.field()..p.field() + 2) {
                    field.copy_from_slice(&pseudo.to_be_bytes());
                }
                p.header()
            }
            Csum::Partial(p) => p.header(),
        }
    }
}

/// A TCP segment with a verified (or partial) checksum that may join or start a
/// train.
#[derive(Debug, Clone, Copy)]
struct Segment<'p> {
    key: Key,
    /// Its checksum: verified, or partial.
    csum: Csum,
    /// The IP packet, trimmed to its IP length.
    packet: &'p [u8],
    l3_len: usize,
    /// IP and TCP header length.
    hdr_len: usize,
    seq: u32,
    flags: u8,
}

impl Segment<'_> {
    fn payload_len(&self) -> usize {
        self.packet.len() - self.hdr_len
    }
}

/// What [`Coalescer::push`] does with a packet.
#[derive(Debug, Clone, Copy)]
enum Class<'p> {
    /// Not TCP, or not readable as TCP: passed through, with the header its
    /// checksum calls for.
    Other(Csum),
    /// TCP that cannot merge: written alone, after the flow `Key` if it is held,
    /// with the virtio header its checksum calls for.
    Alone(Key, &'p [u8], Csum),
    /// TCP that may merge.
    Candidate(Segment<'p>),
}

/// Sorts a packet into a [`Class`], verifying the checksums of TCP segments.
fn classify(packet: &[u8]) -> Class<'_> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => classify_v4(packet),
        Some(6) => classify_v6(packet),
        _ => Class::Other(Csum::Unchecked),
    }
}

fn classify_v4(packet: &[u8]) -> Class<'_> {
    let Ok(ip) = ipv4::Packet::new_checked(packet) else {
        return Class::Other(Csum::Unchecked);
    };
    if ip.is_fragment() {
        return Class::Other(Csum::Unchecked);
    }
    let packet = &packet[..usize::from(ip.total_len())];
    let l3_len = ip.header_len();
    if ip.protocol() != IpProtocol::Tcp {
        return Class::Other(Csum::of(packet, false, ip.protocol(), l3_len));
    }
    if l3_len != ipv4::HEADER_LEN {
        // inet_gro_receive: options never merge.
        return tcp_alone(packet, false, l3_len);
    }
    if !ip.verify_checksum() {
        return tcp_alone(packet, false, l3_len);
    }
    classify_tcp(packet, false, l3_len)
}

fn classify_v6(packet: &[u8]) -> Class<'_> {
    let Ok(ip) = ipv6::Packet::new_checked(packet) else {
        return Class::Other(Csum::Unchecked);
    };
    let packet = &packet[..ipv6::HEADER_LEN + usize::from(ip.payload_len())];
    match ip.transport() {
        Ok((IpProtocol::Tcp, ipv6::HEADER_LEN)) => classify_tcp(packet, true, ipv6::HEADER_LEN),
        // Extension headers: kept in order with their flow, never merged.
        Ok((IpProtocol::Tcp, l3_len)) => tcp_alone(packet, true, l3_len),
        Ok((protocol, l3_len)) => Class::Other(Csum::of(packet, true, protocol, l3_len)),
        Err(_) => Class::Other(Csum::Unchecked),
    }
}

/// A TCP packet written alone, or passed through if it has no TCP header.
fn tcp_alone(packet: &[u8], v6: bool, l3_len: usize) -> Class<'_> {
    match packet.get(l3_len..).map(tcp::Packet::new_checked) {
        Some(Ok(_)) => Class::Alone(
            Key::new(packet, v6, l3_len),
            packet,
            Csum::of(packet, v6, IpProtocol::Tcp, l3_len),
        ),
        _ => Class::Other(Csum::Unchecked),
    }
}

/// Checks the TCP header and checksum of a packet whose IP header is fit to merge.
fn classify_tcp(packet: &[u8], v6: bool, l3_len: usize) -> Class<'_> {
    let Some(Ok(tcp)) = packet.get(l3_len..).map(tcp::Packet::new_checked) else {
        return Class::Other(Csum::Unchecked);
    };
    let key = Key::new(packet, v6, l3_len);
    let segment = tcp.as_ref();
    let l4_len = match u16::try_from(segment.len()) {
        Ok(len) if packet.len() <= MAX_PACKET => len,
        // Too long for one super-packet (an IPv6 payload near 64 KiB).
        _ => return Class::Alone(key, packet, Csum::of(packet, v6, IpProtocol::Tcp, l3_len)),
    };
    let pseudo = pseudo_header(packet, v6, IpProtocol::Tcp.into(), l4_len);
    let at = Partial {
        start: l3_len as u16,
        offset: tcp::CHECKSUM_OFFSET as u16,
    };
    // Left partial (by a sender across a virtual link, or a ringlay peer told
    // that we complete them): nothing to verify, the kernel completes it. Else
    // the one pass over the segment.
    let csum = if tcp.checksum() == pseudo {
        Csum::Partial(at)
    } else if checksum::combine(&[pseudo, checksum::data(segment)]) == 0xffff {
        Csum::Verified(at, pseudo)
    } else {
        return Class::Alone(key, packet, Csum::Unchecked);
    };
    if tcp.flags() & NEVER_MERGE != 0 || tcp.payload().is_empty() {
        return Class::Alone(key, packet, csum);
    }
    Class::Candidate(Segment {
        key,
        csum,
        packet,
        l3_len,
        hdr_len: l3_len + tcp.header_len(),
        seq: tcp.seq_number(),
        flags: tcp.flags(),
    })
}

/// Most payload pieces one held train gathers: a train of more segments is
/// written as two. With the virtio header and the headers in front, one frame
/// has at most `MAX_PIECES + 1` parts.
pub const MAX_PIECES: usize = 64;

/// Most header bytes of a train: IPv6 (only IPv4 without options and IPv6
/// without extension headers merge), then a TCP header with the most options it
/// can carry.
const HEADERS_MAX: usize = ipv6::HEADER_LEN + tcp::MAX_HEADER_LEN;

/// Where a packet handed to [`Coalescer::push`] lies in the caller's memory:
/// which of its buffers, and at what offset.
///
/// Frames name their payload by it instead of holding a copy, so the caller
/// keeps every buffer it pushed from unchanged until the frames that name it
/// have been written: at the latest, until the next [`Coalescer::flush`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    /// The caller's number for the buffer.
    pub buffer: u32,
    /// Where the packet starts in it.
    pub offset: u32,
}

impl Loc {
    /// Bytes `range` of the packet at this location.
    fn piece(self, range: Range<usize>) -> Piece {
        Piece {
            buffer: self.buffer,
            start: self.offset + range.start as u32,
            len: range.len() as u32,
        }
    }
}

/// Bytes `start..start + len` of the caller's buffer number `buffer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Piece {
    /// The caller's number for the buffer ([`Loc::buffer`]).
    pub buffer: u32,
    /// The first byte.
    pub start: u32,
    /// Bytes from there.
    pub len: u32,
}

impl Piece {
    /// The bytes of the buffer this piece is.
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// One packet for the TUN, as the parts of one gathered write: `head` (a virtio
/// header, then whatever headers the coalescer rewrote), then `pieces` of the
/// packets pushed, in order.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The virtio header, then any rewritten headers.
    pub head: &'a [u8],
    /// The rest of the packet, in the caller's buffers.
    pub pieces: &'a [Piece],
}

impl Frame<'_> {
    /// Whether it is a merged super-packet (its virtio header asks the kernel to
    /// segment it).
    pub fn is_merged(&self) -> bool {
        self.head
            .get(1)
            .is_some_and(|&gso| gso & !virtio::GSO_ECN != 0)
    }

    /// The frame in one buffer, every piece read from `buffer(piece.buffer)`.
    /// For tests, fuzzing and benchmarks (the data path writes the parts
    /// gathered), so a piece outside its buffer panics: it is a bug.
    pub fn to_vec<'b>(&self, buffer: impl Fn(u32) -> &'b [u8]) -> Vec<u8> {
        let mut out = self.head.to_vec();
        for p in self.pieces {
            out.extend_from_slice(&buffer(p.buffer)[p.range()]);
        }
        out
    }
}

/// One held train: its rewritten headers, and where its payload lies.
#[derive(Debug)]
struct Flow {
    /// `VNET` bytes of virtio header, then the train's headers (`hdr_len`
    /// bytes): the first segment's, updated as segments join.
    head: [u8; VNET + HEADERS_MAX],
    /// Every segment's payload, in order (never empty: a segment without payload
    /// does not merge). Allocated once, for [`MAX_PIECES`].
    pieces: Vec<Piece>,
    /// Payload bytes held.
    payload: usize,
    open: bool,
    key: Key,
    /// When the train started, in [`Coalescer`] ticks: the oldest is evicted.
    age: u64,
    l3_len: usize,
    hdr_len: usize,
    gso_size: usize,
    next_seq: u32,
    /// IPv4 identification of the last segment.
    last_ident: u16,
    /// The first segment carried CWR.
    cwr: bool,
    /// The first segment's checksum: how the train is written if nothing joins.
    first_csum: Csum,
}

impl Flow {
    fn new() -> Flow {
        Flow {
            head: [0; VNET + HEADERS_MAX],
            pieces: Vec::with_capacity(MAX_PIECES),
            payload: 0,
            open: false,
            key: Key::default(),
            age: 0,
            l3_len: 0,
            hdr_len: 0,
            gso_size: 0,
            next_seq: 0,
            last_ident: 0,
            cwr: false,
            first_csum: Csum::Unchecked,
        }
    }

    /// Starts a train with `seg`, found at `loc`, to be written in segments that
    /// fit `mtu`.
    fn start(&mut self, seg: &Segment<'_>, loc: Loc, age: u64, mtu: usize) {
        self.head[VNET..VNET + seg.hdr_len].copy_from_slice(&seg.packet[..seg.hdr_len]);
        self.pieces.clear();
        self.pieces.push(loc.piece(seg.hdr_len..seg.packet.len()));
        self.payload = seg.payload_len();
        self.open = true;
        self.key = seg.key;
        self.age = age;
        self.l3_len = seg.l3_len;
        self.hdr_len = seg.hdr_len;
        // A segment longer than the MTU already holds several of the sender's.
        self.gso_size = seg
            .payload_len()
            .min(mtu.saturating_sub(seg.hdr_len).max(1));
        self.next_seq = seg.seq.wrapping_add(seg.payload_len() as u32);
        self.last_ident = if seg.key.v6 {
            0
        } else {
            ipv4::Packet::new_unchecked(seg.packet).ident()
        };
        self.cwr = seg.flags & tcp::FLAG_CWR != 0;
        self.first_csum = seg.csum;
    }

    /// The held packet's headers.
    fn headers(&self) -> &[u8] {
        &self.head[VNET..VNET + self.hdr_len]
    }

    /// Whether `seg` may be appended, by the rules of the module documentation.
    fn accepts(&self, seg: &Segment<'_>) -> bool {
        let payload = seg.payload_len();
        if seg.hdr_len != self.hdr_len
            || seg.l3_len != self.l3_len
            || seg.seq != self.next_seq
            || payload > self.gso_size
            || self.hdr_len + self.payload + payload > MAX_PACKET
            || self.pieces.len() == MAX_PIECES
        {
            return false;
        }
        let held = self.headers();
        let new = &seg.packet[..seg.hdr_len];
        let ip_same = if seg.key.v6 {
            let (a, b) = (
                ipv6::Packet::new_unchecked(held),
                ipv6::Packet::new_unchecked(new),
            );
            a.traffic_class() == b.traffic_class()
                && a.flow_label() == b.flow_label()
                && a.hop_limit() == b.hop_limit()
        } else {
            let (a, b) = (
                ipv4::Packet::new_unchecked(held),
                ipv4::Packet::new_unchecked(new),
            );
            let ident = b.ident();
            a.dscp_ecn() == b.dscp_ecn()
                && a.ttl() == b.ttl()
                && a.dont_frag() == b.dont_frag()
                && (ident == self.last_ident.wrapping_add(1)
                    || b.dont_frag() && ident == self.last_ident)
        };
        let a = tcp::Packet::new_unchecked(&held[self.l3_len..]);
        let b = tcp::Packet::new_unchecked(&new[self.l3_len..]);
        ip_same
            && a.ack_number() == b.ack_number()
            && a.window() == b.window()
            && (a.flags() ^ b.flags()) & !MAY_DIFFER == 0
            && b.flags() & tcp::FLAG_CWR == 0
            && a.options() == b.options()
    }

    /// Appends `seg`, found at `loc`, which [`accepts`](Self::accepts) approved;
    /// returns whether the train has ended (a short segment, PSH or FIN).
    fn append(&mut self, seg: &Segment<'_>, loc: Loc) -> bool {
        let payload = seg.payload_len();
        self.pieces.push(loc.piece(seg.hdr_len..seg.packet.len()));
        self.payload += payload;
        self.next_seq = self.next_seq.wrapping_add(payload as u32);
        if !seg.key.v6 {
            self.last_ident = ipv4::Packet::new_unchecked(seg.packet).ident();
        }
        let ends = seg.flags & ENDS_TRAIN;
        if ends != 0 {
            let tcp_header = VNET + self.l3_len..VNET + self.hdr_len;
            let mut held = tcp::Packet::new_unchecked(&mut self.head[tcp_header]);
            held.set_flags(held.flags() | ends);
        }
        ends != 0 || payload < self.gso_size
    }

    /// Finishes the held packet's headers (lengths, IPv4 header checksum, the
    /// pseudo-header sum in the TCP checksum field, the virtio header), hands the
    /// frame to `emit` and closes the flow.
    fn emit(&mut self, emit: &mut impl FnMut(Frame<'_>)) {
        if !self.open {
            return;
        }
        self.open = false;
        let (head, headers) = self.head[..VNET + self.hdr_len].split_at_mut(VNET);
        // A lone segment that fits one `gso_size` goes as it came; one longer than
        // the MTU (its `gso_size` was cut down to fit) needs segmentation.
        let vnet = if self.pieces.len() == 1 && self.payload <= self.gso_size {
            // As it came, but for a verified checksum made partial.
            self.first_csum.header(headers)
        } else {
            let len = u16::try_from(self.hdr_len + self.payload).unwrap_or(u16::MAX);
            let l3_len = self.l3_len as u16;
            if self.key.v6 {
                ipv6::Packet::new_unchecked(&mut *headers).set_payload_len(len - l3_len);
            } else {
                let mut ip = ipv4::Packet::new_unchecked(&mut *headers);
                ip.set_total_len(len);
                ip.fill_checksum();
            }
            let pseudo = pseudo_header(headers, self.key.v6, IpProtocol::Tcp.into(), len - l3_len);
            tcp::Packet::new_unchecked(&mut headers[self.l3_len..]).set_checksum(pseudo);
            virtio::Repr {
                flags: virtio::FLAG_NEEDS_CSUM,
                gso_type: if self.key.v6 {
                    GsoType::TcpV6
                } else {
                    GsoType::TcpV4
                },
                ecn: self.cwr,
                hdr_len: self.hdr_len as u16,
                gso_size: self.gso_size as u16,
                csum_start: l3_len,
                csum_offset: tcp::CHECKSUM_OFFSET as u16,
            }
        };
        vnet.emit(&mut virtio::Header::new_unchecked(head));
        emit(Frame {
            head: &self.head[..VNET + self.hdr_len],
            pieces: &self.pieces,
        });
    }
}

/// Merges the TCP segments of a receive batch into super-packets for the TUN.
///
/// It copies headers, never payload: every [`Frame`] it emits names the payload
/// where the caller's buffers hold it ([`Loc`]). Its memory is allocated once, in
/// the constructor: a few hundred bytes per flow.
#[derive(Debug)]
pub struct Coalescer {
    flows: Vec<Flow>,
    /// The TUN device's MTU: a train longer than it is written for segmentation.
    mtu: usize,
    /// The virtio header of a packet passed through, and its headers when a
    /// verified checksum is rewritten in them.
    pass_head: [u8; VNET + HEADERS_MAX],
    /// Counts trains started, to find the oldest.
    tick: u64,
}

impl Default for Coalescer {
    fn default() -> Coalescer {
        Coalescer::new()
    }
}

impl Coalescer {
    /// A coalescer holding up to [`DEFAULT_FLOWS`] flows.
    pub fn new() -> Coalescer {
        Coalescer::with_flows(DEFAULT_FLOWS)
    }

    /// A coalescer holding up to `flows` flows (at least one), for a TUN device
    /// of any MTU.
    pub fn with_flows(flows: usize) -> Coalescer {
        Coalescer::with_mtu(flows, MAX_PACKET)
    }

    /// A coalescer holding up to `flows` flows for a TUN device whose MTU is
    /// `mtu`. A TCP packet longer than that (a kernel peer's GSO super-packet that
    /// crossed a virtual link whole, which the kernel hands a UDP socket as one
    /// datagram) is written with segmentation at the largest size that fits,
    /// rather than as one packet the kernel could not forward.
    pub fn with_mtu(flows: usize, mtu: usize) -> Coalescer {
        Coalescer {
            mtu: mtu.clamp(ipv4::HEADER_LEN + tcp::HEADER_LEN + 1, MAX_PACKET),
            flows: (0..flows.max(1)).map(|_| Flow::new()).collect(),
            pass_head: [0; VNET + HEADERS_MAX],
            tick: 0,
        }
    }

    /// Offers one inner IP packet (already decapsulated and header-checked by the
    /// caller), which lies at `loc`. Whatever becomes ready to be written to the
    /// TUN is passed to `emit` as a [`Frame`]: a 10-byte virtio-net header and
    /// the packet. A packet longer than any IP packet can be is not emitted.
    pub fn push(&mut self, packet: &[u8], loc: Loc, emit: &mut impl FnMut(Frame<'_>)) {
        match classify(packet) {
            Class::Other(csum) => self.pass(packet, loc, csum, emit),
            Class::Alone(key, packet, csum) => {
                if let Some(i) = self.find(&key) {
                    self.flows[i].emit(emit);
                }
                self.pass(packet, loc, csum, emit);
            }
            Class::Candidate(seg) => self.offer(&seg, loc, emit),
        }
    }

    /// Emits every held flow, oldest first (called at the end of every receive
    /// batch). Afterwards no frame names any buffer pushed from.
    pub fn flush(&mut self, emit: &mut impl FnMut(Frame<'_>)) {
        while let Some(i) = self.oldest() {
            self.flows[i].emit(emit);
        }
    }

    /// Merges `seg` into its flow, or starts a train with it.
    fn offer(&mut self, seg: &Segment<'_>, loc: Loc, emit: &mut impl FnMut(Frame<'_>)) {
        if let Some(i) = self.find(&seg.key) {
            if self.flows[i].accepts(seg) {
                if self.flows[i].append(seg, loc) {
                    self.flows[i].emit(emit);
                }
                return;
            }
            // Per-flow order: what is held goes first.
            self.flows[i].emit(emit);
        }
        if seg.flags & ENDS_TRAIN != 0 && seg.packet.len() <= self.mtu {
            // A train that would end at its first segment: nothing to hold.
            self.pass(seg.packet, loc, seg.csum, emit);
            return;
        }
        let slot = match self.flows.iter().position(|f| !f.open) {
            Some(i) => i,
            None => {
                let i = self.oldest().unwrap_or(0);
                self.flows[i].emit(emit);
                i
            }
        };
        self.tick += 1;
        self.flows[slot].start(seg, loc, self.tick, self.mtu);
    }

    /// The open flow of `key`.
    fn find(&self, key: &Key) -> Option<usize> {
        self.flows.iter().position(|f| f.open && f.key == *key)
    }

    /// The open flow that started first.
    fn oldest(&self) -> Option<usize> {
        self.flows
            .iter()
            .enumerate()
            .filter(|(_, f)| f.open)
            .min_by_key(|(_, f)| f.age)
            .map(|(i, _)| i)
    }

    /// Emits `packet`, which lies at `loc`, alone behind the virtio header `csum`
    /// calls for, without segmentation. Only the bytes up to a verified
    /// checksum's field are copied (to rewrite it); the rest is named in place.
    fn pass(&mut self, packet: &[u8], loc: Loc, csum: Csum, emit: &mut impl FnMut(Frame<'_>)) {
        if packet.len() > MAX_PASS {
            return;
        }
        let cut = match csum {
            Csum::Verified(p, _) => p.field() + 2,
            Csum::Unchecked | Csum::Partial(_) => 0,
        };
        // A verified checksum is always within the headers a train may have; if
        // it were not, the kernel would check it again, which is only slower.
        let (csum, cut) = if cut <= HEADERS_MAX.min(packet.len()) {
            (csum, cut)
        } else {
            (Csum::Unchecked, 0)
        };
        let (head, headers) = self.pass_head[..VNET + cut].split_at_mut(VNET);
        headers.copy_from_slice(&packet[..cut]);
        csum.header(headers)
            .emit(&mut virtio::Header::new_unchecked(head));
        let rest = loc.piece(cut..packet.len());
        let pieces = if rest.len == 0 {
            &[][..]
        } else {
            std::slice::from_ref(&rest)
        };
        emit(Frame {
            head: &self.pass_head[..VNET + cut],
            pieces,
        });
    }
}
