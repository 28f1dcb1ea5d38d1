//! Interface configuration and queries without shelling out to `ip`: links
//! (index, name, flags, up, MTU), addresses (IPv4 and IPv6, with their `IFA_F_*`
//! flags) and the default route's interface, all over rtnetlink (rtnetlink(7)) through [`RouteSocket`]'s
//! request / dump machinery, so this module holds no `unsafe` of its own.
//!
//! Everything acts in the network namespace of the calling thread: each call
//! opens its own `NETLINK_ROUTE` socket there.
//!
//! Invariants: a name is checked by `check_name` before anything is sent, so a
//! name the kernel could never accept is `InvalidInput`, not an unexplained
//! `EINVAL`; an interface that does not exist is `NotFound` (the kernel's
//! `ENODEV`, which `sys::error` maps); lists keep the kernel's dump order,
//! which is the order `getifaddrs` and `ip addr` show.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteHeader, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::error::invalid_input;
use super::ifreq::check_name;
use super::netlink::RouteSocket;

/// The link message the kernel gives for `name` (`RTM_GETLINK` with `IFLA_IFNAME`).
fn link_by_name(sock: &mut RouteSocket, name: &str) -> io::Result<LinkMessage> {
    check_name(name)?;
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    let what = format!("RTM_GETLINK {name}");
    link_of(sock.request(RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST, &what)?)
        .ok_or_else(|| io::Error::other(format!("{what}: no link in the answer")))
}

/// The name of the interface with index `index` (`RTM_GETLINK` by index).
fn name_of(sock: &mut RouteSocket, index: u32) -> io::Result<String> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    let what = format!("RTM_GETLINK index {index}");
    let link = link_of(sock.request(RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST, &what)?)
        .ok_or_else(|| io::Error::other(format!("{what}: no link in the answer")))?;
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .ok_or_else(|| io::Error::other(format!("{what}: the link has no name")))
}

/// The first link message of an answer.
fn link_of(answer: Vec<RouteNetlinkMessage>) -> Option<LinkMessage> {
    answer.into_iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => Some(l),
        _ => None,
    })
}

/// Changes the link `index` as `fill` says (`RTM_SETLINK`), waiting for the ack.
fn set_link(
    sock: &mut RouteSocket,
    index: u32,
    what: &str,
    fill: impl FnOnce(&mut LinkMessage),
) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    fill(&mut msg);
    sock.request(
        RouteNetlinkMessage::SetLink(msg),
        NLM_F_REQUEST | NLM_F_ACK,
        what,
    )
    .map(drop)
}

/// Sets the interface's MTU (`RTM_SETLINK` with `IFLA_MTU`).
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    // The kernel's MTU is an int (struct net_device); refuse what it cannot hold.
    if libc::c_int::try_from(mtu).is_err() {
        return Err(invalid_input(format!("{name}: MTU {mtu} is out of range")));
    }
    set_link_attribute(name, &format!("mtu {mtu}"), LinkAttribute::Mtu(mtu))
}

/// Sets how many packets the interface's transmit queue holds (`RTM_SETLINK`
/// with `IFLA_TXQLEN`); for a TUN device, each queue's ring of packets waiting
/// for its reader.
pub fn set_tx_queue_len(name: &str, len: u32) -> io::Result<()> {
    set_link_attribute(
        name,
        &format!("txqueuelen {len}"),
        LinkAttribute::TxQueueLen(len),
    )
}

/// One `RTM_SETLINK` of interface `name` carrying `attribute` (`what` names it
/// in an error).
fn set_link_attribute(name: &str, what: &str, attribute: LinkAttribute) -> io::Result<()> {
    let mut sock = RouteSocket::open()?;
    let index = link_by_name(&mut sock, name)?.header.index;
    set_link(
        &mut sock,
        index,
        &format!("RTM_SETLINK {what} {name}"),
        |m| m.attributes.push(attribute),
    )
}

/// The interface's MTU (`IFLA_MTU`).
pub fn mtu(name: &str) -> io::Result<u32> {
    let link = link_by_name(&mut RouteSocket::open()?, name)?;
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
        .ok_or_else(|| io::Error::other(format!("RTM_GETLINK {name}: no IFLA_MTU")))
}

/// Packets the interface dropped on transmit (`IFLA_STATS64`'s `tx_dropped`):
/// for a TUN device, what the kernel dropped because a queue was full, i.e. what
/// the reader did not take in time.
pub fn tx_dropped(name: &str) -> io::Result<u64> {
    let link = link_by_name(&mut RouteSocket::open()?, name)?;
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Stats64(s) => Some(s.tx_dropped),
            _ => None,
        })
        .ok_or_else(|| io::Error::other(format!("RTM_GETLINK {name}: no IFLA_STATS64")))
}

/// The interface's `IFF_*` flags (`ifi_flags`), e.g. `IFF_UP`.
pub fn flags(name: &str) -> io::Result<u32> {
    Ok(link_by_name(&mut RouteSocket::open()?, name)?
        .header
        .flags
        .bits())
}

/// Brings the interface up (`RTM_SETLINK` with `IFF_UP` in `ifi_flags` and
/// `ifi_change`, so no other flag is touched).
pub fn set_up(name: &str) -> io::Result<()> {
    let mut sock = RouteSocket::open()?;
    let index = link_by_name(&mut sock, name)?.header.index;
    set_link(&mut sock, index, &format!("RTM_SETLINK up {name}"), |m| {
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
    })
}

/// Gives the interface the IPv4 address `addr/prefix_len`, replacing its primary
/// IPv4 address if it has one, as `SIOCSIFADDR` and `SIOCSIFNETMASK` do
/// (net/ipv4/devinet.c `devinet_ioctl`): the old primary address goes, the new
/// one is added, with the broadcast address of its prefix on a broadcast link.
///
/// The kernel then adds the connected route for the prefix once the interface is
/// up. This is how flannel routes its whole cluster network through its TUN: the
/// address is the lease's `.0` address with the *network's* prefix length, e.g.
/// `100.96.1.0/16`.
pub fn set_ipv4(name: &str, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
    if prefix_len > 32 {
        return Err(invalid_input(format!(
            "{name}: IPv4 prefix length {prefix_len} is over 32"
        )));
    }
    let mut sock = RouteSocket::open()?;
    let link = link_by_name(&mut sock, name)?;
    let index = link.header.index;
    let old = addrs_of(&mut sock, AddressFamily::Inet, Some(index))?;
    if let Some(primary) = old.first() {
        if (primary.addr.ip, primary.addr.prefix_len) != (IpAddr::V4(addr), prefix_len) {
            let what = format!("RTM_DELADDR {} on {name}", primary.addr.ip);
            sock.request(
                RouteNetlinkMessage::DelAddress(primary.msg.clone()),
                NLM_F_REQUEST | NLM_F_ACK,
                &what,
            )?;
        }
    }
    let mut msg = address_message(index, IpAddr::V4(addr), prefix_len);
    if link.header.flags.contains(LinkFlags::Broadcast) && prefix_len < 31 {
        if let Ok(net) = ipnet::Ipv4Net::new(addr, prefix_len) {
            msg.attributes
                .push(AddressAttribute::Broadcast(net.broadcast()));
        }
    }
    sock.request(
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        &format!("RTM_NEWADDR {addr}/{prefix_len} on {name}"),
    )
    .map(drop)
}

/// Adds the IPv6 address `addr/prefix_len` to the interface (`RTM_NEWADDR`).
/// Adding an address the interface has is `EEXIST`, as with `SIOCSIFADDR`.
pub fn add_ipv6(name: &str, addr: Ipv6Addr, prefix_len: u8) -> io::Result<()> {
    if prefix_len > 128 {
        return Err(invalid_input(format!(
            "{name}: IPv6 prefix length {prefix_len} is over 128"
        )));
    }
    let mut sock = RouteSocket::open()?;
    let index = link_by_name(&mut sock, name)?.header.index;
    let msg = address_message(index, IpAddr::V6(addr), prefix_len);
    sock.request(
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        &format!("RTM_NEWADDR {addr}/{prefix_len} on {name}"),
    )
    .map(drop)
}

/// The interface's index; `NotFound` if there is none.
pub fn index(name: &str) -> io::Result<u32> {
    Ok(link_by_name(&mut RouteSocket::open()?, name)?.header.index)
}

/// A request for `addr/prefix_len` on link `index`: `IFA_LOCAL` and
/// `IFA_ADDRESS` both the address, as for a link that is not point-to-point.
fn address_message(index: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.prefix_len = prefix_len;
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Local(addr));
    msg.attributes.push(AddressAttribute::Address(addr));
    msg
}

/// One address of one interface, as the kernel dumps it.
struct IfAddr {
    addr: Address,
    /// The message as dumped, which is also what deletes the address.
    msg: AddressMessage,
}

/// The [`IfAddr`] of a dumped message: its `IFA_LOCAL`, else its `IFA_ADDRESS`
/// (on a point-to-point link `IFA_ADDRESS` is the peer), as `getifaddrs` reads it.
fn if_addr_of(msg: AddressMessage) -> Option<IfAddr> {
    let (mut local, mut address) = (None, None);
    let mut flags = u32::from(msg.header.flags.bits());
    for a in &msg.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Flags(f) => flags = f.bits(),
            _ => {}
        }
    }
    let addr = Address {
        index: msg.header.index,
        ip: local.or(address)?,
        prefix_len: msg.header.prefix_len,
        flags,
    };
    Some(IfAddr { addr, msg })
}

/// Every address of `family` (of link `index` only, if given), in the kernel's order.
fn addrs_of(
    sock: &mut RouteSocket,
    family: AddressFamily,
    index: Option<u32>,
) -> io::Result<Vec<IfAddr>> {
    let answer = sock.dump(
        || {
            let mut msg = AddressMessage::default();
            msg.header.family = family;
            RouteNetlinkMessage::GetAddress(msg)
        },
        "RTM_GETADDR dump",
    )?;
    Ok(answer
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) => if_addr_of(a),
            _ => None,
        })
        .filter(|a| index.is_none_or(|i| a.addr.index == i))
        .collect())
}

/// The interface's IPv4 addresses with their prefix lengths, in the kernel's
/// order: the first is "the interface's first IPv4 address" flannel means.
pub fn ipv4_addrs(name: &str) -> io::Result<Vec<(Ipv4Addr, u8)>> {
    let mut sock = RouteSocket::open()?;
    let index = link_by_name(&mut sock, name)?.header.index;
    Ok(addrs_of(&mut sock, AddressFamily::Inet, Some(index))?
        .into_iter()
        .filter_map(|a| match a.addr.ip {
            IpAddr::V4(v4) => Some((v4, a.addr.prefix_len)),
            IpAddr::V6(_) => None,
        })
        .collect())
}

/// The interface's IPv6 addresses with their prefix lengths, in the kernel's order.
pub fn ipv6_addrs(name: &str) -> io::Result<Vec<(Ipv6Addr, u8)>> {
    let mut sock = RouteSocket::open()?;
    let index = link_by_name(&mut sock, name)?.header.index;
    Ok(addrs_of(&mut sock, AddressFamily::Inet6, Some(index))?
        .into_iter()
        .filter_map(|a| match a.addr.ip {
            IpAddr::V6(v6) => Some((v6, a.addr.prefix_len)),
            IpAddr::V4(_) => None,
        })
        .collect())
}

/// One address of one interface, as the kernel lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// The interface's index.
    pub index: u32,
    /// The address (`IFA_LOCAL`, else `IFA_ADDRESS`).
    pub ip: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// Its `IFA_F_*` flags (include/uapi/linux/if_addr.h), e.g. `IFA_F_SECONDARY`:
    /// the 32-bit `IFA_FLAGS` if the kernel sent it, else the 8 bits of
    /// `ifa_flags` (the attribute exists because the header ran out of bits).
    pub flags: u32,
}

/// Every link's index and name, in the kernel's dump order (the order
/// `getifaddrs`, `ip link` and Go's `net.Interfaces` show).
pub fn links() -> io::Result<Vec<(u32, String)>> {
    let answer = RouteSocket::open()?.dump(
        || RouteNetlinkMessage::GetLink(LinkMessage::default()),
        "RTM_GETLINK dump",
    )?;
    Ok(answer
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => {
                let name = l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })?;
                Some((l.header.index, name))
            }
            _ => None,
        })
        .collect())
}

/// Every IPv4 address of every interface, then every IPv6 address, each family
/// in the kernel's order.
pub fn addresses() -> io::Result<Vec<Address>> {
    let mut sock = RouteSocket::open()?;
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        out.extend(
            addrs_of(&mut sock, family, None)?
                .into_iter()
                .map(|a| a.addr),
        );
    }
    Ok(out)
}

/// The interface holding the IPv4 address `addr`, if any (the first in kernel order).
pub fn iface_with_ipv4(addr: Ipv4Addr) -> io::Result<Option<String>> {
    let mut sock = RouteSocket::open()?;
    let found = addrs_of(&mut sock, AddressFamily::Inet, None)?
        .into_iter()
        .find(|a| a.addr.ip == IpAddr::V4(addr));
    found.map(|a| name_of(&mut sock, a.addr.index)).transpose()
}

/// The interface of the IPv4 default route with the lowest metric in the main
/// table, if there is one (what `/proc/net/route` would show first).
pub fn default_route_iface() -> io::Result<Option<String>> {
    let mut sock = RouteSocket::open()?;
    default_route_index_on(&mut sock, AddressFamily::Inet)?
        .map(|oif| name_of(&mut sock, oif))
        .transpose()
}

/// The index of [`default_route_iface`]'s interface.
pub fn default_route_index() -> io::Result<Option<u32>> {
    default_route_index_on(&mut RouteSocket::open()?, AddressFamily::Inet)
}

/// The index of the IPv6 default route's interface, chosen as for IPv4 (`::/0`,
/// unicast, main table, the lowest metric, one next hop on a link), if any:
/// flanneld's `GetDefaultV6GatewayInterface`. A multipath default (`RTA_MULTIPATH`,
/// no `RTA_OIF`) names no single interface and is skipped, as for IPv4.
pub fn default_route6_index() -> io::Result<Option<u32>> {
    default_route_index_on(&mut RouteSocket::open()?, AddressFamily::Inet6)
}

fn default_route_index_on(
    sock: &mut RouteSocket,
    family: AddressFamily,
) -> io::Result<Option<u32>> {
    let answer = sock.dump(
        || {
            let mut msg = RouteMessage::default();
            msg.header.address_family = family;
            RouteNetlinkMessage::GetRoute(msg)
        },
        "RTM_GETROUTE dump",
    )?;
    let routes = answer.iter().filter_map(|m| match m {
        RouteNetlinkMessage::NewRoute(r) => Some(r),
        _ => None,
    });
    Ok(default_route_oif(family, routes))
}

/// The outgoing interface of the lowest-metric default route of `family` (prefix
/// length 0, unicast, main table, one next hop on a link) among `routes`; the
/// first one listed on a tie. A route without `RTA_PRIORITY` has metric 0.
fn default_route_oif<'a>(
    family: AddressFamily,
    routes: impl Iterator<Item = &'a RouteMessage>,
) -> Option<u32> {
    let mut best: Option<(u32, u32)> = None;
    for r in routes {
        let h = &r.header;
        if h.address_family != family
            || h.destination_prefix_length != 0
            || h.kind != RouteType::Unicast
        {
            continue;
        }
        let (mut table, mut metric, mut oif) = (u32::from(h.table), 0, None);
        for a in &r.attributes {
            match a {
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Priority(p) => metric = *p,
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        let Some(oif) = oif else { continue };
        if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
            continue;
        }
        if best.is_none_or(|(m, _)| metric < m) {
            best = Some((metric, oif));
        }
    }
    best.map(|(_, oif)| oif)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dumped IPv4 route to `/len` in `table` through `oif` with `metric`.
    fn route(len: u8, table: u8, oif: u32, metric: Option<u32>, kind: RouteType) -> RouteMessage {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.destination_prefix_length = len;
        r.header.table = table;
        r.header.kind = kind;
        r.attributes.push(RouteAttribute::Oif(oif));
        if let Some(m) = metric {
            r.attributes.push(RouteAttribute::Priority(m));
        }
        r
    }

    const MAIN: u8 = RouteHeader::RT_TABLE_MAIN;

    #[test]
    fn default_route_from_a_real_table() {
        let table = [
            route(0, MAIN, 2, Some(100), RouteType::Unicast),
            route(24, MAIN, 2, Some(100), RouteType::Unicast),
        ];
        assert_eq!(
            default_route_oif(AddressFamily::Inet, table.iter()),
            Some(2)
        );
    }

    #[test]
    fn lowest_metric_wins_and_ties_keep_the_first() {
        let table = [
            route(0, MAIN, 3, Some(600), RouteType::Unicast),
            route(0, MAIN, 5, Some(100), RouteType::Unicast),
            route(0, MAIN, 4, Some(100), RouteType::Unicast),
        ];
        assert_eq!(
            default_route_oif(AddressFamily::Inet, table.iter()),
            Some(5)
        );
        // No RTA_PRIORITY is metric 0, which beats any other.
        let table = [
            route(0, MAIN, 3, Some(1), RouteType::Unicast),
            route(0, MAIN, 6, None, RouteType::Unicast),
        ];
        assert_eq!(
            default_route_oif(AddressFamily::Inet, table.iter()),
            Some(6)
        );
    }

    #[test]
    fn no_default_route() {
        assert_eq!(default_route_oif(AddressFamily::Inet, [].iter()), None);
        // A non-/0 destination, another table, an unreachable default and an
        // IPv6 default are not the IPv4 default route of the main table.
        let mut v6 = route(0, MAIN, 9, None, RouteType::Unicast);
        v6.header.address_family = AddressFamily::Inet6;
        let mut in_table_100 = route(0, 0, 8, None, RouteType::Unicast);
        in_table_100.attributes.push(RouteAttribute::Table(100));
        let table = [
            route(8, MAIN, 2, None, RouteType::Unicast),
            route(0, 100, 3, None, RouteType::Unicast),
            in_table_100,
            route(0, MAIN, 4, None, RouteType::Unreachable),
            v6,
        ];
        assert_eq!(default_route_oif(AddressFamily::Inet, table.iter()), None);
    }

    #[test]
    fn ipv6_default_route_by_the_same_rules() {
        let v6 = |oif, metric, kind| {
            let mut r = route(0, MAIN, oif, metric, kind);
            r.header.address_family = AddressFamily::Inet6;
            r
        };
        let table = [
            route(0, MAIN, 2, None, RouteType::Unicast),
            v6(7, Some(1024), RouteType::Unreachable),
            v6(3, Some(1024), RouteType::Unicast),
            v6(4, Some(100), RouteType::Unicast),
        ];
        assert_eq!(
            default_route_oif(AddressFamily::Inet6, table.iter()),
            Some(4)
        );
        assert_eq!(
            default_route_oif(AddressFamily::Inet, table.iter()),
            Some(2)
        );
    }

    #[test]
    fn local_address_wins_over_the_peer() {
        let lease = Ipv4Addr::new(100, 96, 1, 0);
        let mut msg = address_message(7, IpAddr::V4(lease), 16);
        let a = if_addr_of(msg.clone()).expect("has an address").addr;
        assert_eq!((a.index, a.ip, a.prefix_len), (7, IpAddr::V4(lease), 16));
        // Point-to-point: IFA_ADDRESS is the peer, IFA_LOCAL ours.
        msg.attributes = vec![
            AddressAttribute::Address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
            AddressAttribute::Local(IpAddr::V4(lease)),
        ];
        assert_eq!(if_addr_of(msg).expect("local").addr.ip, IpAddr::V4(lease));
    }

    #[test]
    fn address_flags_prefer_ifa_flags_to_the_header() {
        use netlink_packet_route::address::{AddressFlags, AddressHeaderFlags};
        let mut msg = address_message(3, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 24);
        msg.header.flags = AddressHeaderFlags::Secondary;
        assert_eq!(if_addr_of(msg.clone()).expect("address").addr.flags, 0x01);
        // The kernel sends both; only IFA_FLAGS holds the bits past 0x80.
        let all = AddressFlags::Secondary | AddressFlags::Permanent | AddressFlags::Noprefixroute;
        msg.attributes.push(AddressAttribute::Flags(all));
        assert_eq!(if_addr_of(msg).expect("address").addr.flags, 0x281);
    }

    #[test]
    fn links_and_addresses_list_loopback_without_privileges() {
        let links = links().expect("RTM_GETLINK dump");
        let lo = links.iter().find(|(_, n)| n == "lo").expect("lo is listed");
        let addrs = addresses().expect("RTM_GETADDR dump");
        assert!(addrs
            .iter()
            .any(|a| a.index == lo.0 && a.ip == IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }

    #[test]
    fn loopback_is_there_without_privileges() {
        assert_eq!(index("lo").expect("lo exists"), 1);
        assert!(mtu("lo").expect("lo has an MTU") > 0);
        assert_eq!(
            flags("lo").expect("lo flags") & libc::IFF_LOOPBACK as u32,
            libc::IFF_LOOPBACK as u32
        );
        let err = index("rl-no-such-if").expect_err("no such interface");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }
}
