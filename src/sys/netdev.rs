//! Interface configuration and queries without shelling out to `ip`: the
//! netdevice(7) ioctls on a datagram socket, `if_nametoindex`, `getifaddrs` and
//! `/proc/net/route`.
//!
//! Everything acts in the network namespace of the calling thread (the ioctl
//! socket, the netlink dump behind `getifaddrs`, and `/proc/thread-self/net`).

use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};

use socket2::{Domain, Socket, Type};

use super::error::{context, cvt, invalid_input};
use super::ifreq::{check_name, ifreq, ifreq_ioctl};

/// `RTF_UP` in the flags column of `/proc/net/route` (include/uapi/linux/route.h).
const RTF_UP: u32 = 0x0001;

/// A close-on-exec datagram socket of `domain`, the handle netdevice ioctls go through.
fn ioctl_socket(domain: Domain) -> io::Result<Socket> {
    Socket::new(domain, Type::DGRAM, None).map_err(|e| context(e, "socket for interface ioctls"))
}

/// Runs one ifreq ioctl on `name` through an AF_INET socket, after `fill` set the
/// request's argument; returns the ifreq as the kernel left it.
///
/// # Safety
///
/// As for [`ifreq_ioctl`]: `req` must read and write only the `struct ifreq`.
unsafe fn inet_ifreq(
    name: &str,
    req: libc::Ioctl,
    what: &str,
    fill: impl FnOnce(&mut libc::ifreq),
) -> io::Result<libc::ifreq> {
    let mut ifr = ifreq(name)?;
    fill(&mut ifr);
    let sock = ioctl_socket(Domain::IPV4)?;
    // SAFETY: forwarded from this function's contract.
    unsafe { ifreq_ioctl(sock.as_fd(), req, &mut ifr) }
        .map_err(|e| context(e, format!("{what} {name}")))?;
    Ok(ifr)
}

/// A `struct sockaddr` holding an AF_INET address (port 0), built field by field.
fn sockaddr_v4(addr: Ipv4Addr) -> libc::sockaddr {
    // sockaddr_in: family, then sa_data = port (2 bytes) + address (4) + zero (8).
    let mut sa_data = [0 as libc::c_char; 14];
    for (dst, src) in sa_data[2..6].iter_mut().zip(addr.octets()) {
        *dst = src as libc::c_char;
    }
    libc::sockaddr {
        sa_family: libc::AF_INET as libc::sa_family_t,
        sa_data,
    }
}

/// The IPv4 netmask of a prefix length (`/16` → 255.255.0.0).
fn netmask_v4(prefix_len: u8) -> Ipv4Addr {
    let bits = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    Ipv4Addr::from(bits)
}

/// Sets the interface's MTU (`SIOCSIFMTU`).
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mtu = libc::c_int::try_from(mtu)
        .map_err(|_| invalid_input(format!("{name}: MTU {mtu} is out of range")))?;
    // SAFETY: SIOCSIFMTU reads `ifru_mtu` of the ifreq and nothing else.
    unsafe {
        inet_ifreq(name, libc::SIOCSIFMTU, "SIOCSIFMTU", |ifr| {
            ifr.ifr_ifru.ifru_mtu = mtu
        })
    }
    .map(drop)
}

/// The interface's MTU (`SIOCGIFMTU`).
pub fn mtu(name: &str) -> io::Result<u32> {
    // SAFETY: SIOCGIFMTU writes `ifru_mtu` of the ifreq and nothing else.
    let ifr = unsafe { inet_ifreq(name, libc::SIOCGIFMTU, "SIOCGIFMTU", |_| ()) }?;
    // SAFETY: the kernel filled `ifru_mtu`; every bit pattern is a valid c_int.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| invalid_input(format!("{name}: kernel reported MTU {mtu}")))
}

/// The interface's `IFF_*` flags (`SIOCGIFFLAGS`), e.g. `IFF_UP`.
pub fn flags(name: &str) -> io::Result<u32> {
    // SAFETY: SIOCGIFFLAGS writes `ifru_flags` of the ifreq and nothing else.
    let ifr = unsafe { inet_ifreq(name, libc::SIOCGIFFLAGS, "SIOCGIFFLAGS", |_| ()) }?;
    // SAFETY: the kernel filled `ifru_flags`; every bit pattern is a valid c_short.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    // The flags are an unsigned 16-bit field carried in a short.
    Ok(u32::from(flags as u16))
}

/// Brings the interface up: `SIOCGIFFLAGS`, then `SIOCSIFFLAGS` with `IFF_UP |
/// IFF_RUNNING` added (the kernel keeps `IFF_RUNNING` to itself; asking is harmless).
pub fn set_up(name: &str) -> io::Result<()> {
    let flags = flags(name)?;
    let up = (flags | (libc::IFF_UP | libc::IFF_RUNNING) as u32) as u16 as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads `ifru_flags` of the ifreq and nothing else.
    unsafe {
        inet_ifreq(name, libc::SIOCSIFFLAGS, "SIOCSIFFLAGS", |ifr| {
            ifr.ifr_ifru.ifru_flags = up
        })
    }
    .map(drop)
}

/// Gives the interface the IPv4 address `addr/prefix_len` (`SIOCSIFADDR`, then
/// `SIOCSIFNETMASK`), replacing its primary IPv4 address if it has one.
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
    let sa_addr = sockaddr_v4(addr);
    // SAFETY: SIOCSIFADDR on an AF_INET socket reads `ifru_addr` and nothing else.
    unsafe {
        inet_ifreq(
            name,
            libc::SIOCSIFADDR,
            &format!("SIOCSIFADDR {addr}"),
            |ifr| {
                ifr.ifr_ifru.ifru_addr = sa_addr;
            },
        )
    }?;
    // Without the netmask the kernel would use the classful one (/8 for 100.x).
    let sa_mask = sockaddr_v4(netmask_v4(prefix_len));
    // SAFETY: SIOCSIFNETMASK reads `ifru_netmask` and nothing else.
    unsafe {
        inet_ifreq(
            name,
            libc::SIOCSIFNETMASK,
            &format!("SIOCSIFNETMASK /{prefix_len}"),
            |ifr| {
                ifr.ifr_ifru.ifru_netmask = sa_mask;
            },
        )
    }
    .map(drop)
}

/// Adds the IPv6 address `addr/prefix_len` to the interface (`SIOCSIFADDR` with a
/// `struct in6_ifreq` on an AF_INET6 socket, net/ipv6/addrconf.c
/// `addrconf_add_ifaddr`). Adding an address the interface has is `EEXIST`.
pub fn add_ipv6(name: &str, addr: Ipv6Addr, prefix_len: u8) -> io::Result<()> {
    if prefix_len > 128 {
        return Err(invalid_input(format!(
            "{name}: IPv6 prefix length {prefix_len} is over 128"
        )));
    }
    let ifindex = libc::c_int::try_from(index(name)?)
        .map_err(|_| invalid_input(format!("{name}: interface index out of range")))?;
    let mut req = libc::in6_ifreq {
        ifr6_addr: libc::in6_addr {
            s6_addr: addr.octets(),
        },
        ifr6_prefixlen: u32::from(prefix_len),
        ifr6_ifindex: ifindex,
    };
    let sock = ioctl_socket(Domain::IPV6)?;
    // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads one `struct in6_ifreq`
    // through the pointer, which points to `req`, live for the whole call.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFADDR, &raw mut req) };
    cvt(ret)
        .map(drop)
        .map_err(|e| context(e, format!("SIOCSIFADDR {addr}/{prefix_len} on {name}")))
}

/// The interface's index (`if_nametoindex`); `NotFound` if there is none.
pub fn index(name: &str) -> io::Result<u32> {
    check_name(name)?;
    let cname = CString::new(name).map_err(|_| invalid_input("interface name contains NUL"))?;
    // SAFETY: `cname` is a NUL-terminated string, live for the whole call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(context(
            io::Error::last_os_error(),
            format!("if_nametoindex {name}"),
        ));
    }
    Ok(index)
}

/// One address of one interface, as `getifaddrs` lists it.
struct IfAddr {
    name: String,
    addr: IpAddr,
    netmask: Option<IpAddr>,
}

/// The IP address in a `sockaddr` of family AF_INET or AF_INET6.
///
/// # Safety
///
/// `sa` must be null or point to a sockaddr whose whole size, as its family says,
/// is readable.
unsafe fn ip_of(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: non-null, and by the contract at least the family is readable.
    let family = libc::c_int::from(unsafe { (*sa).sa_family });
    match family {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in; read_unaligned
            // makes no assumption about the pointer's alignment.
            let sin = unsafe { sa.cast::<libc::sockaddr_in>().read_unaligned() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6 = unsafe { sa.cast::<libc::sockaddr_in6>().read_unaligned() };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// Every IP address of every interface, in the kernel's order (`getifaddrs`).
fn if_addrs() -> io::Result<Vec<IfAddr>> {
    /// Frees the list when dropped, also if reading it panics.
    struct List(*mut libc::ifaddrs);
    impl Drop for List {
        fn drop(&mut self) {
            // SAFETY: the pointer came from a successful getifaddrs and is freed
            // once, here; nothing borrowed from the list outlives `List`.
            unsafe { libc::freeifaddrs(self.0) }
        }
    }

    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes the list head through the pointer, which points
    // to `head`, live for the whole call.
    cvt(unsafe { libc::getifaddrs(&raw mut head) }).map_err(|e| context(e, "getifaddrs"))?;
    let list = List(head);
    let mut out = Vec::new();
    let mut node = list.0.cast_const();
    while !node.is_null() {
        // SAFETY: `node` is a non-null element of the list getifaddrs built,
        // which stays allocated until `list` is dropped at the end of this fn.
        let ifa = unsafe { &*node };
        // SAFETY: getifaddrs fills ifa_addr and ifa_netmask with null or with
        // sockaddrs sized for their family.
        if let Some(addr) = unsafe { ip_of(ifa.ifa_addr) } {
            // SAFETY: ifa_name is a NUL-terminated string in the list's memory.
            let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
            out.push(IfAddr {
                name: name.to_string_lossy().into_owned(),
                addr,
                // SAFETY: as for ifa_addr.
                netmask: unsafe { ip_of(ifa.ifa_netmask) },
            });
        }
        node = ifa.ifa_next.cast_const();
    }
    drop(list);
    Ok(out)
}

/// The prefix length of a contiguous netmask (its number of one bits).
fn prefix_len_of(netmask: Option<IpAddr>) -> u8 {
    match netmask {
        Some(IpAddr::V4(m)) => u32::from(m).count_ones() as u8,
        Some(IpAddr::V6(m)) => u128::from(m).count_ones() as u8,
        None => 0,
    }
}

/// The interface's IPv4 addresses with their prefix lengths, in the kernel's
/// order: the first is "the interface's first IPv4 address" flannel means.
pub fn ipv4_addrs(name: &str) -> io::Result<Vec<(Ipv4Addr, u8)>> {
    check_name(name)?;
    Ok(if_addrs()?
        .into_iter()
        .filter(|a| a.name == name)
        .filter_map(|a| match a.addr {
            IpAddr::V4(v4) => Some((v4, prefix_len_of(a.netmask))),
            IpAddr::V6(_) => None,
        })
        .collect())
}

/// The interface's IPv6 addresses with their prefix lengths, in the kernel's order.
pub fn ipv6_addrs(name: &str) -> io::Result<Vec<(Ipv6Addr, u8)>> {
    check_name(name)?;
    Ok(if_addrs()?
        .into_iter()
        .filter(|a| a.name == name)
        .filter_map(|a| match a.addr {
            IpAddr::V6(v6) => Some((v6, prefix_len_of(a.netmask))),
            IpAddr::V4(_) => None,
        })
        .collect())
}

/// The interface holding the IPv4 address `addr`, if any (the first in kernel order).
pub fn iface_with_ipv4(addr: Ipv4Addr) -> io::Result<Option<String>> {
    Ok(if_addrs()?
        .into_iter()
        .find(|a| a.addr == IpAddr::V4(addr))
        .map(|a| a.name))
}

/// The interface of the IPv4 default route with the lowest metric, if there is one.
///
/// Reads `/proc/thread-self/net/route` (this thread's namespace; `/proc/net` is the
/// main thread's), or `/proc/net/route` on kernels before 3.17.
pub fn default_route_iface() -> io::Result<Option<String>> {
    let text = match fs::read_to_string("/proc/thread-self/net/route") {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::read_to_string("/proc/net/route").map_err(|e| context(e, "read /proc/net/route"))?
        }
        Err(e) => return Err(context(e, "read /proc/thread-self/net/route")),
    };
    Ok(parse_default_route(&text))
}

/// The interface of the lowest-metric default route (destination and mask 0, flag
/// `RTF_UP`) in the text of `/proc/net/route`; the first one listed on a tie.
/// Lines that do not parse are skipped.
pub fn parse_default_route(text: &str) -> Option<String> {
    let mut best: Option<(u32, &str)> = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT
        let [iface, dest, _gw, flags, _refcnt, _use, metric, mask, ..] = fields[..] else {
            continue;
        };
        let (Ok(dest), Ok(flags), Ok(metric), Ok(mask)) = (
            u32::from_str_radix(dest, 16),
            u32::from_str_radix(flags, 16),
            metric.parse::<u32>(),
            u32::from_str_radix(mask, 16),
        ) else {
            continue; // the header line, or garbage
        };
        if dest != 0 || mask != 0 || flags & RTF_UP == 0 {
            continue;
        }
        if best.is_none_or(|(m, _)| metric < m) {
            best = Some((metric, iface));
        }
    }
    best.map(|(_, iface)| iface.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    #[test]
    fn default_route_from_a_real_table() {
        let text = format!(
            "{HEADER}\
             eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             eth0\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
        );
        assert_eq!(parse_default_route(&text).as_deref(), Some("eth0"));
    }

    #[test]
    fn lowest_metric_wins_and_ties_keep_the_first() {
        let text = format!(
            "{HEADER}\
             wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
             eth1\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             eth0\t00000000\t0103A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        );
        assert_eq!(parse_default_route(&text).as_deref(), Some("eth1"));
    }

    #[test]
    fn no_default_route() {
        assert_eq!(parse_default_route(""), None);
        assert_eq!(parse_default_route(HEADER), None);
        // A /0 destination with a non-zero mask, a route that is not up, and a
        // truncated line are not default routes.
        let text = format!(
            "{HEADER}\
             eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t000000FF\t0\t0\t0\n\
             eth1\t00000000\t0102A8C0\t0002\t0\t0\t100\t00000000\t0\t0\t0\n\
             eth2\t00000000\t0102A8C0\n\
             eth3\tzz\t0102A8C0\t0003\t0\t0\t1\t00000000\t0\t0\t0\n"
        );
        assert_eq!(parse_default_route(&text), None);
    }

    #[test]
    fn netmasks() {
        assert_eq!(netmask_v4(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(netmask_v4(16), Ipv4Addr::new(255, 255, 0, 0));
        assert_eq!(netmask_v4(20), Ipv4Addr::new(255, 255, 240, 0));
        assert_eq!(netmask_v4(32), Ipv4Addr::BROADCAST);
        assert_eq!(prefix_len_of(Some(IpAddr::V4(netmask_v4(24)))), 24);
    }

    #[test]
    fn sockaddr_layout_is_sockaddr_in() {
        let sa = sockaddr_v4(Ipv4Addr::new(100, 96, 1, 0));
        assert_eq!(libc::c_int::from(sa.sa_family), libc::AF_INET);
        let data: Vec<u8> = sa.sa_data.iter().map(|&c| c as u8).collect();
        assert_eq!(data, [0, 0, 100, 96, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
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
