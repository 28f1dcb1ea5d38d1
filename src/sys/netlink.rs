//! Kernel routes over rtnetlink (rtnetlink(7)), without shelling out to `ip`: list
//! the main table's routes of one route protocol, add, replace and delete a route,
//! and ask the kernel how it would reach an address (`RTM_GETROUTE`, as
//! `ip route get` does).
//!
//! Messages are built and parsed by `netlink-packet-route`; this module only sends
//! one request at a time on a blocking `NETLINK_ROUTE` socket and collects the
//! answer up to its `NLMSG_DONE` or acknowledgement. Everything acts in the network
//! namespace the socket was opened in.
//!
//! Invariant: every route this module adds, replaces or deletes carries the route
//! protocol number its caller gives (`rtm_protocol`), and a delete names it too, so
//! the kernel itself refuses to delete a route of another protocol
//! (net/ipv4/fib_semantics.c `fib_nh_match` and `fib_table_delete` compare
//! `fc_protocol` when it is non-zero; net/ipv6/route.c `ip6_route_del` likewise).

use std::io;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::error::context;

/// The main routing table (`RT_TABLE_MAIN`, include/uapi/linux/rtnetlink.h).
const MAIN_TABLE: u8 = RouteHeader::RT_TABLE_MAIN;
/// How often a dump the kernel marks as interrupted (`NLM_F_DUMP_INTR`: the table
/// changed while it was read, so it may miss a route) is read again.
const DUMP_TRIES: usize = 4;

/// One route of the main table, as far as ringlay reads or writes routes: a
/// destination prefix, reached through a gateway on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// The destination prefix (`RTA_DST` and `rtm_dst_len`).
    pub dst: IpNet,
    /// The next hop (`RTA_GATEWAY`); `None` for a route straight onto a link.
    pub gateway: Option<IpAddr>,
    /// The outgoing interface's index (`RTA_OIF`).
    pub oif: Option<u32>,
}

/// How the kernel would send a packet to one address (`ip route get`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    /// The outgoing interface's index.
    pub oif: Option<u32>,
    /// The next hop, when the address is not on a connected prefix.
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would give the packet (`RTA_PREFSRC`).
    pub src: Option<IpAddr>,
    /// True for a unicast route through a plain next hop; false for local,
    /// broadcast, unreachable and such, and for an IPv4 route through an IPv6
    /// next hop (`RTA_VIA`).
    pub unicast: bool,
}

/// A blocking `NETLINK_ROUTE` socket, bound to a kernel-assigned port.
pub struct RouteSocket {
    socket: Socket,
    seq: u32,
}

impl std::fmt::Debug for RouteSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteSocket")
            .field("seq", &self.seq)
            .finish()
    }
}

impl RouteSocket {
    /// Opens a route socket in the calling thread's network namespace.
    pub fn open() -> io::Result<RouteSocket> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|e| context(e, "socket(NETLINK_ROUTE)"))?;
        socket
            .bind_auto()
            .map_err(|e| context(e, "binding the netlink socket"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| context(e, "connecting the netlink socket to the kernel"))?;
        Ok(RouteSocket { socket, seq: 0 })
    }

    /// Every route of the main table, IPv4 and IPv6, whose route protocol is
    /// `protocol`. Cached clones and multipath routes are left out. A dump the
    /// table changed under is read again, so the list misses no route.
    pub fn routes(&mut self, protocol: u8) -> io::Result<Vec<Route>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let answer = self.dump(
                || {
                    let mut msg = RouteMessage::default();
                    msg.header.address_family = family;
                    RouteNetlinkMessage::GetRoute(msg)
                },
                "RTM_GETROUTE dump",
            )?;
            out.extend(answer.iter().filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => route_of(r, protocol),
                _ => None,
            }));
        }
        Ok(out)
    }

    /// Adds `route` with `protocol`; `AlreadyExists` (EEXIST) if the table has a
    /// route to that prefix already (of any protocol: nothing is replaced).
    pub fn add(&mut self, route: &Route, protocol: u8) -> io::Result<()> {
        self.change(route, protocol, NLM_F_CREATE | NLM_F_EXCL, "add")
    }

    /// Replaces the route to `route.dst` (same prefix, TOS and metric) with
    /// `route`, or adds it if there is none. The caller must know that the route
    /// it replaces is its own: the kernel matches on the prefix only.
    pub fn replace(&mut self, route: &Route, protocol: u8) -> io::Result<()> {
        self.change(route, protocol, NLM_F_CREATE | NLM_F_REPLACE, "replace")
    }

    /// Deletes the route to `route.dst` of `protocol` (and through `route`'s
    /// gateway and interface, where given); `NotFound` (ESRCH) if there is none.
    pub fn delete(&mut self, route: &Route, protocol: u8) -> io::Result<()> {
        let msg = route_message(route, protocol);
        self.request(
            RouteNetlinkMessage::DelRoute(msg),
            NLM_F_REQUEST | NLM_F_ACK,
            &format!("RTM_DELROUTE {}", route.dst),
        )
        .map(drop)
    }

    /// How the kernel would route a packet to `addr` (`RTM_GETROUTE` for the
    /// address). An address with no route at all is `ENETUNREACH` or
    /// `EHOSTUNREACH`.
    pub fn lookup(&mut self, addr: IpAddr) -> io::Result<Lookup> {
        let mut msg = RouteMessage::default();
        let (family, len, dst) = match addr {
            IpAddr::V4(a) => (AddressFamily::Inet, 32, RouteAddress::Inet(a)),
            IpAddr::V6(a) => (AddressFamily::Inet6, 128, RouteAddress::Inet6(a)),
        };
        msg.header.address_family = family;
        msg.header.destination_prefix_length = len;
        msg.attributes.push(RouteAttribute::Destination(dst));
        let answer = self.request(
            RouteNetlinkMessage::GetRoute(msg),
            NLM_F_REQUEST,
            &format!("RTM_GETROUTE {addr}"),
        )?;
        answer
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Some(lookup_of(r)),
                _ => None,
            })
            .ok_or_else(|| io::Error::other(format!("RTM_GETROUTE {addr}: no route in the answer")))
    }

    fn change(&mut self, route: &Route, protocol: u8, flags: u16, what: &str) -> io::Result<()> {
        let mut msg = route_message(route, protocol);
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_REQUEST | NLM_F_ACK | flags,
            &format!("RTM_NEWROUTE ({what}) {}", route.dst),
        )
        .map(drop)
    }

    /// Dumps what `msg` asks for (`NLM_F_DUMP`), reading the dump again when the
    /// kernel marks it interrupted, so the answer misses nothing that was there
    /// all along. `msg` builds the request afresh for each try.
    pub(super) fn dump(
        &mut self,
        msg: impl Fn() -> RouteNetlinkMessage,
        what: &str,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut tries = 1;
        loop {
            match self.request(msg(), NLM_F_REQUEST | NLM_F_DUMP, what) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted && tries < DUMP_TRIES => {
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// Sends one request and reads the answer: every message up to `NLMSG_DONE`
    /// for a dump, the one answer for a lookup, or the acknowledgement. An error
    /// acknowledgement becomes the `io::Error` of its errno; a dump the kernel
    /// marked `NLM_F_DUMP_INTR` is `Interrupted`.
    pub(super) fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .map_err(|e| context(e, format!("{what}: send")))?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let wants_ack = flags & NLM_F_ACK != 0;
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            let (bytes, _) = self
                .socket
                .recv_from_full()
                .map_err(|e| context(e, format!("{what}: receive")))?;
            let mut at = 0;
            while at < bytes.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[at..])
                    .map_err(|e| {
                        io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
                    })?;
                let len = reply.header.length as usize;
                if len == 0 {
                    break;
                }
                // Messages are padded to 4 bytes (NLMSG_ALIGN).
                at += (len + 3) & !3;
                if reply.header.sequence_number != seq {
                    continue; // an answer to an earlier request that gave up
                }
                interrupted |= reply.header.flags & NLM_F_DUMP_INTR != 0;
                match reply.payload {
                    NetlinkPayload::Done(_) if interrupted => {
                        return Err(io::Error::new(
                            io::ErrorKind::Interrupted,
                            format!("{what}: the table changed during the dump"),
                        ));
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(_) => Err(context(e.to_io(), what)),
                        };
                    }
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump && !wants_ack {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The request message for `route` in the main table, with `protocol`.
fn route_message(route: &Route, protocol: u8) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let (family, len, dst) = match route.dst {
        IpNet::V4(n) => (
            AddressFamily::Inet,
            n.prefix_len(),
            RouteAddress::Inet(n.network()),
        ),
        IpNet::V6(n) => (
            AddressFamily::Inet6,
            n.prefix_len(),
            RouteAddress::Inet6(n.network()),
        ),
    };
    msg.header.address_family = family;
    msg.header.destination_prefix_length = len;
    msg.header.table = MAIN_TABLE;
    msg.header.protocol = RouteProtocol::from(protocol);
    // Deletes match any scope at RT_SCOPE_NOWHERE; adds set their own.
    msg.header.scope = RouteScope::NoWhere;
    msg.attributes.push(RouteAttribute::Destination(dst));
    match route.gateway {
        Some(IpAddr::V4(g)) => msg
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(g))),
        Some(IpAddr::V6(g)) => msg
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet6(g))),
        None => {}
    }
    if let Some(oif) = route.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    msg
}

/// The [`Route`] of a dumped message, if it is a main-table unicast route of
/// `protocol` with a single next hop and not a cached clone.
fn route_of(msg: &RouteMessage, protocol: u8) -> Option<Route> {
    let h = &msg.header;
    if u8::from(h.protocol) != protocol
        || h.kind != RouteType::Unicast
        || h.flags.contains(RouteFlags::Cloned)
    {
        return None;
    }
    let mut table = u32::from(h.table);
    let (mut dst, mut gateway, mut oif) = (None, None, None);
    for a in &msg.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = ip_of(d),
            RouteAttribute::Gateway(g) => gateway = ip_of(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::MultiPath(_) => return None,
            _ => {}
        }
    }
    if table != u32::from(MAIN_TABLE) {
        return None;
    }
    let len = h.destination_prefix_length;
    let dst = match (h.address_family, dst) {
        (AddressFamily::Inet, Some(IpAddr::V4(a))) => IpNet::V4(Ipv4Net::new(a, len).ok()?),
        (AddressFamily::Inet, None) => IpNet::V4(Ipv4Net::new([0; 4].into(), len).ok()?),
        (AddressFamily::Inet6, Some(IpAddr::V6(a))) => IpNet::V6(Ipv6Net::new(a, len).ok()?),
        (AddressFamily::Inet6, None) => IpNet::V6(Ipv6Net::new([0u16; 8].into(), len).ok()?),
        _ => return None,
    };
    Some(Route { dst, gateway, oif })
}

/// The [`Lookup`] of the kernel's answer to an address query.
fn lookup_of(msg: &RouteMessage) -> Lookup {
    let mut l = Lookup {
        oif: None,
        gateway: None,
        src: None,
        unicast: msg.header.kind == RouteType::Unicast,
    };
    for a in &msg.attributes {
        match a {
            RouteAttribute::Oif(i) => l.oif = Some(*i),
            RouteAttribute::Gateway(g) => l.gateway = ip_of(g),
            RouteAttribute::PrefSource(s) => l.src = ip_of(s),
            // An IPv4 route through an IPv6 next hop (RTA_VIA) has a gateway too.
            RouteAttribute::Via(_) => l.unicast = false,
            _ => {}
        }
    }
    l
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("valid prefix")
    }

    #[test]
    fn requests_name_the_main_table_and_the_protocol() {
        let r = Route {
            dst: net("100.96.2.0/24"),
            gateway: Some("192.0.2.2".parse().expect("valid")),
            oif: Some(7),
        };
        let msg = route_message(&r, 114);
        assert_eq!(msg.header.table, MAIN_TABLE);
        assert_eq!(u8::from(msg.header.protocol), 114);
        assert_eq!(msg.header.destination_prefix_length, 24);
        assert_eq!(msg.header.address_family, AddressFamily::Inet);
        // What a dump of that route gives back is the same route.
        let mut dumped = msg.clone();
        dumped.header.kind = RouteType::Unicast;
        assert_eq!(route_of(&dumped, 114), Some(r));
        // Of another protocol, it is not ours.
        assert_eq!(route_of(&dumped, 4), None);
    }

    #[test]
    fn ipv6_routes_round_trip() {
        let r = Route {
            dst: net("fd00:100:96:2::/64"),
            gateway: Some("2001:db8::2".parse().expect("valid")),
            oif: Some(3),
        };
        let mut msg = route_message(&r, 114);
        assert_eq!(msg.header.address_family, AddressFamily::Inet6);
        msg.header.kind = RouteType::Unicast;
        assert_eq!(route_of(&msg, 114), Some(r));
        msg.header.table = 100;
        assert_eq!(route_of(&msg, 114), None, "another table");
    }

    #[test]
    fn the_socket_opens_and_lists_without_privileges() {
        let mut s = RouteSocket::open().expect("NETLINK_ROUTE");
        // Listing needs no privilege; protocol 253 is unassigned, so likely empty.
        s.routes(253).expect("dump");
        let l = s.lookup("127.0.0.1".parse().expect("valid")).expect("lo");
        assert!(!l.unicast, "127.0.0.1 is a local route: {l:?}");
        assert_eq!(l.src, Some("127.0.0.1".parse().expect("valid")), "{l:?}");
    }
}
