//! Which underlay interface and address to use, chosen by flanneld's rules, as
//! pure code: a snapshot of the host's links and addresses in, the choice out.
//! The two questions only the kernel can answer (the default route's interface,
//! the route toward an address) come through [`Routes`], so tests answer them too.
//!
//! The rules, in flanneld's order (its `LookupExtIface` and the loop in its
//! `main.go` that calls it):
//!
//! 1. each `--iface`, in order: a name is that link, with its first usable
//!    address; an address is the first link holding it, with that address;
//! 2. each `--iface-regex`, in order: the first link (kernel order) with a usable
//!    address whose text the regex matches, with that address; only if no
//!    address matches, the first link whose name matches, with its first usable
//!    address;
//! 3. `--iface-can-reach`: the link the kernel routes toward that address, with
//!    the route's source address (else the link's first usable address);
//! 4. only when none of 1–3 is given: the link holding `--public-ip` if that is
//!    given, with that address; else the default route's link, with its first
//!    usable address.
//!
//! The first rule that yields a link and an address wins. Each rule tried in
//! vain is a [`Miss`], kept for the log; when rules 1–3 were given and all
//! missed, nothing falls back to rule 4 (flanneld exits then too).
//!
//! A "usable" address is one flanneld's `GetInterfaceIP4Addrs` keeps: of the
//! family asked for, global or link-local unicast (not unspecified, loopback,
//! multicast or the limited broadcast), not deprecated; ordered global before
//! link-local, permanent before not, then without `IFA_F_TEMPORARY` before with
//! it, else in the kernel's order. That bit is also `IFA_F_SECONDARY` (both are
//! 0x01, include/uapi/linux/if_addr.h), so an IPv4 interface's primary address
//! comes before its secondaries, as `ip addr` lists them.
//!
//! The rules are written for either [`Family`]: flanneld chooses per family of
//! the network (EnableIPv4, EnableIPv6) and requires one interface for both;
//! [`stack`](super::stack) applies them per family.

use std::cmp::Ordering;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::str::FromStr;

use regex::Regex;

use crate::Error;

/// `IFA_F_TEMPORARY`, which is also `IFA_F_SECONDARY` (include/uapi/linux/if_addr.h).
const IFA_F_TEMPORARY: u32 = 0x01;
/// `IFA_F_DEPRECATED`: an address past its preferred lifetime.
const IFA_F_DEPRECATED: u32 = 0x20;
/// `IFA_F_PERMANENT`: configured by hand, not by autoconfiguration.
const IFA_F_PERMANENT: u32 = 0x80;

/// The address family the underlay address is chosen in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// True if `ip` is of this family.
    pub fn holds(self, ip: IpAddr) -> bool {
        matches!(
            (self, ip),
            (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_))
        )
    }

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// One `--iface` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfaceArg {
    /// An interface name.
    Name(String),
    /// An address, naming the interface that holds it.
    Addr(IpAddr),
}

impl FromStr for IfaceArg {
    type Err = std::convert::Infallible;

    /// An address if the text parses as one (flanneld tries that first), else a
    /// name: an interface whose name looks like an address cannot be named.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.parse() {
            Ok(ip) => IfaceArg::Addr(ip),
            Err(_) => IfaceArg::Name(s.to_owned()),
        })
    }
}

impl fmt::Display for IfaceArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IfaceArg::Name(n) => f.write_str(n),
            IfaceArg::Addr(ip) => write!(f, "{ip}"),
        }
    }
}

/// What the operator asked for: `--iface`, `--iface-regex`, `--iface-can-reach`.
#[derive(Debug, Clone, Default)]
pub struct Criteria {
    /// `--iface`, in the order given.
    pub ifaces: Vec<IfaceArg>,
    /// `--iface-regex`, in the order given.
    pub regexes: Vec<Regex>,
    /// `--iface-can-reach`.
    pub can_reach: Option<IpAddr>,
}

impl Criteria {
    /// True if no flag was given: the public IP or the default route decides.
    pub fn is_empty(&self) -> bool {
        self.ifaces.is_empty() && self.regexes.is_empty() && self.can_reach.is_none()
    }

    /// The flags given, as the user writes them, for an error message.
    fn flags(&self) -> String {
        let given = [
            ("--iface", !self.ifaces.is_empty()),
            ("--iface-regex", !self.regexes.is_empty()),
            ("--iface-can-reach", self.can_reach.is_some()),
        ];
        let names: Vec<&str> = given.iter().filter(|g| g.1).map(|g| g.0).collect();
        names.join(", ")
    }

    /// The values given, in the order they are tried.
    fn values(&self) -> String {
        let ifaces = self.ifaces.iter().map(ToString::to_string);
        let regexes = self.regexes.iter().map(|r| r.as_str().to_owned());
        let reach = self.can_reach.iter().map(ToString::to_string);
        let all: Vec<String> = ifaces.chain(regexes).chain(reach).collect();
        all.join(", ")
    }
}

/// One address of a link, as the kernel lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    /// The address.
    pub ip: IpAddr,
    /// Its `IFA_F_*` flags.
    pub flags: u32,
}

/// One link of the host with its addresses (any family, the kernel's order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The interface index.
    pub index: u32,
    /// The interface name.
    pub name: String,
    /// Its addresses.
    pub addrs: Vec<Addr>,
}

impl Link {
    /// The addresses flanneld would use, best first (see the module docs).
    pub fn usable(&self, family: Family) -> Vec<IpAddr> {
        let mut addrs: Vec<&Addr> = self
            .addrs
            .iter()
            .filter(|a| family.holds(a.ip) && is_unicast(a.ip))
            .filter(|a| a.flags & IFA_F_DEPRECATED == 0)
            .collect();
        // Stable: equal addresses keep the kernel's order.
        addrs.sort_by(|a, b| preference(a, b));
        addrs.into_iter().map(|a| a.ip).collect()
    }

    fn first_usable(&self, family: Family) -> Result<IpAddr, String> {
        self.usable(family).first().copied().ok_or_else(|| {
            format!(
                "{} has no usable {} address (unicast, not loopback, not deprecated)",
                self.name,
                family.name()
            )
        })
    }
}

/// Global or link-local unicast: Go's `IsGlobalUnicast || IsLinkLocalUnicast`,
/// which is what flanneld filters with.
fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast())
        }
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_loopback() || a.is_multicast()),
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.is_unicast_link_local(),
    }
}

/// flanneld's order of preference between two usable addresses.
fn preference(a: &Addr, b: &Addr) -> Ordering {
    let rank = |x: &Addr| {
        (
            is_link_local(x.ip),
            x.flags & IFA_F_PERMANENT == 0,
            x.flags & IFA_F_TEMPORARY != 0,
        )
    };
    rank(a).cmp(&rank(b))
}

/// The route the kernel would take toward an address (`ip route get`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTo {
    /// The outgoing interface's index.
    pub oif: u32,
    /// The source address the kernel would pick, if it named one.
    pub src: Option<IpAddr>,
}

/// The routing questions selection asks the kernel.
pub trait Routes {
    /// The index of the default route's interface in `family`, if there is one.
    fn default_route(&self, family: Family) -> io::Result<Option<u32>>;
    /// The route toward `addr`.
    fn route_to(&self, addr: IpAddr) -> io::Result<RouteTo>;
}

/// The rule that chose the interface, or tried to.
#[derive(Debug, Clone)]
pub enum Rule {
    /// One `--iface` value.
    Iface(IfaceArg),
    /// One `--iface-regex` value.
    Regex(Regex),
    /// `--iface-can-reach`.
    CanReach(IpAddr),
    /// `--public-ip` (or `--public-ipv6` for IPv6), when no other flag is given.
    PublicIp(IpAddr),
    /// The default route, when nothing is given.
    DefaultRoute,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Iface(a) => write!(f, "--iface {a}"),
            Rule::Regex(r) => write!(f, "--iface-regex {}", r.as_str()),
            Rule::CanReach(ip) => write!(f, "--iface-can-reach {ip}"),
            Rule::PublicIp(ip @ IpAddr::V4(_)) => write!(f, "--public-ip {ip}"),
            Rule::PublicIp(ip @ IpAddr::V6(_)) => write!(f, "--public-ipv6 {ip}"),
            Rule::DefaultRoute => f.write_str("the default route"),
        }
    }
}

/// The interface and address chosen.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The interface's name.
    pub iface: String,
    /// The address on it (flanneld's interface address).
    pub addr: IpAddr,
    /// The rule that chose it.
    pub rule: Rule,
}

/// A rule that chose nothing, and why.
#[derive(Debug, Clone)]
pub struct Miss {
    /// The rule.
    pub rule: Rule,
    /// Why it chose nothing.
    pub why: String,
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.why)
    }
}

/// The outcome of [`choose`]: the choice (or the error to start with), and
/// every rule tried in vain before it.
#[derive(Debug)]
pub struct Selection {
    /// The choice, or why there is none.
    pub choice: crate::Result<Choice>,
    /// The rules that chose nothing, in the order tried.
    pub misses: Vec<Miss>,
}

/// Chooses the underlay interface and its address in `family` from `links`
/// (the host's, in kernel order) by the rules of the module docs.
pub fn choose(
    criteria: &Criteria,
    public_ip: Option<IpAddr>,
    family: Family,
    links: &[Link],
    routes: &dyn Routes,
) -> Selection {
    if criteria.is_empty() {
        return choose_by_default(public_ip, family, links, routes);
    }
    let rules = criteria
        .ifaces
        .iter()
        .map(|a| Rule::Iface(a.clone()))
        .chain(criteria.regexes.iter().map(|r| Rule::Regex(r.clone())))
        .chain(criteria.can_reach.map(Rule::CanReach));
    let mut misses = Vec::new();
    for rule in rules {
        match try_rule(&rule, family, links, routes) {
            Ok((iface, addr)) => {
                let choice = Ok(Choice { iface, addr, rule });
                return Selection { choice, misses };
            }
            Err(why) => misses.push(Miss { rule, why }),
        }
    }
    let tried: Vec<String> = misses.iter().map(ToString::to_string).collect();
    let error = Error::invalid(
        criteria.flags(),
        criteria.values(),
        format!(
            "no usable interface ({}): give an interface name or {} address of this host, \
             a regex matching one's address or name, or an address this host has a route to \
             (see `ip addr` and `ip route get ADDR`)",
            tried.join("; "),
            family.name()
        ),
    );
    Selection {
        choice: Err(error),
        misses,
    }
}

/// Rule 4: `--public-ip`'s interface, else the default route's.
fn choose_by_default(
    public_ip: Option<IpAddr>,
    family: Family,
    links: &[Link],
    routes: &dyn Routes,
) -> Selection {
    let rule = match public_ip {
        Some(ip) => Rule::PublicIp(ip),
        None => Rule::DefaultRoute,
    };
    match try_rule(&rule, family, links, routes) {
        Ok((iface, addr)) => Selection {
            choice: Ok(Choice { iface, addr, rule }),
            misses: Vec::new(),
        },
        Err(why) => Selection {
            choice: Err(default_error(&rule, &why)),
            misses: vec![Miss { rule, why }],
        },
    }
}

/// The start-up error when rule 4 found nothing.
fn default_error(rule: &Rule, why: &str) -> Error {
    match rule {
        Rule::PublicIp(ip) => Error::invalid(
            if ip.is_ipv4() {
                "--public-ip"
            } else {
                "--public-ipv6"
            },
            ip,
            format!(
                "{why}: without --iface, --iface-regex or --iface-can-reach the public IP \
                 must be an address of this host, whose interface is the underlay; behind \
                 NAT, also give --iface (the interface the traffic leaves through)"
            ),
        ),
        _ => Error::invalid(
            "--iface",
            "(none given)",
            format!(
                "{why}: name the underlay with --iface, --iface-regex, --iface-can-reach \
                 or --public-ip"
            ),
        ),
    }
}

/// What one rule yields: the interface's name and the address, or why nothing.
fn try_rule(
    rule: &Rule,
    family: Family,
    links: &[Link],
    routes: &dyn Routes,
) -> Result<(String, IpAddr), String> {
    match rule {
        Rule::Iface(IfaceArg::Name(name)) => {
            let link = links
                .iter()
                .find(|l| &l.name == name)
                .ok_or_else(|| format!("there is no interface {name}"))?;
            Ok((link.name.clone(), link.first_usable(family)?))
        }
        Rule::Iface(IfaceArg::Addr(ip)) | Rule::PublicIp(ip) => holding(*ip, family, links),
        Rule::Regex(re) => matching(re, family, links),
        Rule::CanReach(ip) => reaching(*ip, family, links, routes),
        Rule::DefaultRoute => default_route_link(family, links, routes),
    }
}

/// The first link holding `ip` (any of its addresses, usable or not: flanneld's
/// `GetInterfaceByIP`), with `ip` as its address.
fn holding(ip: IpAddr, family: Family, links: &[Link]) -> Result<(String, IpAddr), String> {
    if !family.holds(ip) {
        return Err(format!("{ip} is not an {} address", family.name()));
    }
    links
        .iter()
        .find(|l| l.addrs.iter().any(|a| a.ip == ip))
        .map(|l| (l.name.clone(), ip))
        .ok_or_else(|| format!("no interface has the address {ip}"))
}

/// Rule 2: addresses first, across every link, then names.
fn matching(re: &Regex, family: Family, links: &[Link]) -> Result<(String, IpAddr), String> {
    for link in links {
        if let Some(ip) = link
            .usable(family)
            .into_iter()
            .find(|ip| re.is_match(&ip.to_string()))
        {
            return Ok((link.name.clone(), ip));
        }
    }
    let link = links.iter().find(|l| re.is_match(&l.name)).ok_or_else(|| {
        let seen: Vec<String> = links.iter().map(|l| describe(l, family)).collect();
        format!(
            "matches no interface's {} address or name (there are {})",
            family.name(),
            seen.join(", ")
        )
    })?;
    Ok((link.name.clone(), link.first_usable(family)?))
}

/// `eth0 [192.0.2.1]`: a link and its usable addresses, for a message.
fn describe(link: &Link, family: Family) -> String {
    let addrs: Vec<String> = link
        .usable(family)
        .iter()
        .map(ToString::to_string)
        .collect();
    format!("{} [{}]", link.name, addrs.join(" "))
}

/// Rule 3: the route's interface and source address. A source of the other
/// family (an IPv6 `--iface-can-reach` for the IPv4 address) is not used; the
/// interface's first usable address is, as when the kernel names no source.
fn reaching(
    ip: IpAddr,
    family: Family,
    links: &[Link],
    routes: &dyn Routes,
) -> Result<(String, IpAddr), String> {
    let route = routes.route_to(ip).map_err(|e| format!("no route: {e}"))?;
    let link = by_index(links, route.oif)?;
    let addr = match route.src {
        Some(src) if family.holds(src) => src,
        _ => link.first_usable(family)?,
    };
    Ok((link.name.clone(), addr))
}

/// The default route's link with its first usable address.
fn default_route_link(
    family: Family,
    links: &[Link],
    routes: &dyn Routes,
) -> Result<(String, IpAddr), String> {
    let oif = routes
        .default_route(family)
        .map_err(|e| format!("reading the routing table: {e}"))?
        .ok_or_else(|| format!("there is no {} default route", family.name()))?;
    let link = by_index(links, oif)?;
    Ok((link.name.clone(), link.first_usable(family)?))
}

fn by_index(links: &[Link], index: u32) -> Result<&Link, String> {
    links
        .iter()
        .find(|l| l.index == index)
        .ok_or_else(|| format!("the route's interface (index {index}) is gone"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host of the tests: `lo`; eth0 192.0.2.1 (the default route's);
    /// eth1 198.51.100.1 with a secondary 198.51.100.11 and a link-local
    /// 169.254.0.7 listed first; eth2 203.0.113.1; eth3 with no IPv4 address.
    fn host() -> Vec<Link> {
        let link = |index, name: &str, addrs: &[(&str, u32)]| Link {
            index,
            name: name.to_owned(),
            addrs: addrs
                .iter()
                .map(|&(ip, flags)| Addr {
                    ip: ip.parse().expect("valid address"),
                    flags,
                })
                .collect(),
        };
        const PERM: u32 = IFA_F_PERMANENT;
        vec![
            link(1, "lo", &[("127.0.0.1", PERM), ("::1", PERM)]),
            link(2, "eth0", &[("192.0.2.1", PERM), ("2001:db8::1", PERM)]),
            link(
                3,
                "eth1",
                &[
                    ("169.254.0.7", PERM),
                    ("198.51.100.11", PERM | IFA_F_TEMPORARY),
                    ("198.51.100.1", PERM),
                ],
            ),
            link(4, "eth2", &[("203.0.113.1", PERM)]),
            link(5, "eth3", &[("fe80::3", PERM)]),
        ]
    }

    /// The kernel of the tests: the default route leaves by `default`; 10.9.0.0/16
    /// by eth1 from 198.51.100.11, 2001:db8:9::/48 by eth2, everything else has
    /// no route.
    struct FakeRoutes {
        default: Option<u32>,
    }

    impl Routes for FakeRoutes {
        fn default_route(&self, _: Family) -> io::Result<Option<u32>> {
            Ok(self.default)
        }
        fn route_to(&self, addr: IpAddr) -> io::Result<RouteTo> {
            match addr {
                IpAddr::V4(a) if a.octets()[..2] == [10, 9] => Ok(RouteTo {
                    oif: 3,
                    src: Some(ip("198.51.100.11")),
                }),
                IpAddr::V6(a) if a.segments()[..3] == [0x2001, 0xdb8, 9] => Ok(RouteTo {
                    oif: 4,
                    src: Some(ip("2001:db8:9::4")),
                }),
                _ => Err(io::Error::from_raw_os_error(libc::ENETUNREACH)),
            }
        }
    }

    const KERNEL: FakeRoutes = FakeRoutes { default: Some(2) };

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("valid address")
    }

    fn ifaces(values: &[&str]) -> Criteria {
        Criteria {
            ifaces: values
                .iter()
                .map(|v| v.parse().expect("infallible"))
                .collect(),
            ..Criteria::default()
        }
    }

    fn regexes(values: &[&str]) -> Criteria {
        Criteria {
            regexes: values
                .iter()
                .map(|v| Regex::new(v).expect("valid"))
                .collect(),
            ..Criteria::default()
        }
    }

    /// The chosen interface and address, or the error's text.
    fn pick(c: &Criteria, public_ip: Option<&str>) -> Result<(String, IpAddr), String> {
        let s = choose(c, public_ip.map(ip), Family::V4, &host(), &KERNEL);
        s.choice
            .map(|c| (c.iface, c.addr))
            .map_err(|e| e.to_string())
    }

    fn chose(iface: &str, addr: &str) -> Result<(String, IpAddr), String> {
        Ok((iface.to_owned(), ip(addr)))
    }

    #[test]
    fn usable_addresses_are_unicast_and_best_first() {
        let h = host();
        assert_eq!(h[0].usable(Family::V4), Vec::<IpAddr>::new(), "loopback");
        // Global before link-local; the secondary (IFA_F_TEMPORARY's bit) after
        // the primary although the kernel listed it first.
        assert_eq!(
            h[2].usable(Family::V4),
            [ip("198.51.100.1"), ip("198.51.100.11"), ip("169.254.0.7")]
        );
        assert_eq!(h[4].usable(Family::V6), [ip("fe80::3")]);
        let mut deprecated = h[3].clone();
        deprecated.addrs[0].flags |= IFA_F_DEPRECATED;
        assert!(deprecated.usable(Family::V4).is_empty());
        // Not permanent (e.g. from DHCP) comes after permanent.
        let mut dhcp = h[2].clone();
        dhcp.addrs[2].flags = 0;
        assert_eq!(dhcp.usable(Family::V4)[0], ip("198.51.100.11"));
    }

    #[test]
    fn iface_by_name_takes_its_first_usable_address() {
        assert_eq!(
            pick(&ifaces(&["eth1"]), None),
            chose("eth1", "198.51.100.1")
        );
    }

    #[test]
    fn iface_by_address_takes_that_address() {
        assert_eq!(
            pick(&ifaces(&["198.51.100.11"]), None),
            chose("eth1", "198.51.100.11")
        );
        // Any address names its interface, usable or not.
        assert_eq!(
            pick(&ifaces(&["127.0.0.1"]), None),
            chose("lo", "127.0.0.1")
        );
    }

    #[test]
    fn ifaces_are_tried_in_order_and_the_first_usable_wins() {
        let c = ifaces(&[
            "nosuch0",
            "eth3",
            "192.0.2.9",
            "2001:db8::1",
            "eth2",
            "eth0",
        ]);
        let s = choose(&c, None, Family::V4, &host(), &KERNEL);
        let choice = s.choice.expect("eth2 is usable");
        assert_eq!(
            (choice.iface.as_str(), choice.addr),
            ("eth2", ip("203.0.113.1"))
        );
        assert_eq!(choice.rule.to_string(), "--iface eth2");
        let why: Vec<String> = s.misses.iter().map(ToString::to_string).collect();
        assert_eq!(
            why,
            [
                "--iface nosuch0: there is no interface nosuch0",
                "--iface eth3: eth3 has no usable IPv4 address (unicast, not loopback, not deprecated)",
                "--iface 192.0.2.9: no interface has the address 192.0.2.9",
                "--iface 2001:db8::1: 2001:db8::1 is not an IPv4 address",
            ]
        );
    }

    #[test]
    fn regex_matches_addresses_before_names() {
        // eth0 comes first and its name matches, but eth2's address matches.
        assert_eq!(
            pick(&regexes(&["eth0|^203\\."]), None),
            chose("eth2", "203.0.113.1")
        );
        // The matching address, not the interface's first.
        assert_eq!(
            pick(&regexes(&["^198\\.51\\.100\\.1[0-9]$"]), None),
            chose("eth1", "198.51.100.11")
        );
        // Unanchored, like Go's MatchString.
        assert_eq!(pick(&regexes(&["th2"]), None), chose("eth2", "203.0.113.1"));
        // Loopback's address is not usable, so this matches nothing.
        assert!(pick(&regexes(&["^127\\."]), None).is_err());
    }

    #[test]
    fn regex_naming_an_interface_without_an_address_misses() {
        // eth3 matches by name but has no IPv4 address: that regex misses (as
        // flanneld's does), and the next is tried.
        assert_eq!(
            pick(&regexes(&["^eth3$", "^eth1$"]), None),
            chose("eth1", "198.51.100.1")
        );
        let s = choose(&regexes(&["^eth3$"]), None, Family::V4, &host(), &KERNEL);
        assert!(
            s.misses[0].why.contains("eth3 has no usable IPv4"),
            "{:?}",
            s.misses
        );
    }

    #[test]
    fn can_reach_takes_the_routes_interface_and_source() {
        let c = Criteria {
            can_reach: Some(ip("10.9.0.1")),
            ..Criteria::default()
        };
        assert_eq!(pick(&c, None), chose("eth1", "198.51.100.11"));
        // An IPv6 destination: its route's interface, with an IPv4 address of it.
        let c = Criteria {
            can_reach: Some(ip("2001:db8:9::1")),
            ..Criteria::default()
        };
        assert_eq!(pick(&c, None), chose("eth2", "203.0.113.1"));
        let c = Criteria {
            can_reach: Some(ip("10.1.0.1")),
            ..Criteria::default()
        };
        let err = pick(&c, None).expect_err("no route");
        assert!(
            err.contains("--iface-can-reach 10.1.0.1: no route: "),
            "{err}"
        );
    }

    #[test]
    fn iface_then_regex_then_can_reach() {
        let all = Criteria {
            ifaces: vec!["nosuch0".parse().expect("infallible")],
            regexes: vec![Regex::new("^eth2$").expect("valid")],
            can_reach: Some(ip("10.9.0.1")),
        };
        assert_eq!(pick(&all, None), chose("eth2", "203.0.113.1"));
        let no_regex = Criteria {
            regexes: vec![Regex::new("^nomatch$").expect("valid")],
            ..all.clone()
        };
        assert_eq!(pick(&no_regex, None), chose("eth1", "198.51.100.11"));
        let first = Criteria {
            ifaces: vec!["eth0".parse().expect("infallible")],
            ..all
        };
        assert_eq!(pick(&first, None), chose("eth0", "192.0.2.1"));
    }

    #[test]
    fn the_public_ip_does_not_steer_a_given_iface() {
        assert_eq!(
            pick(&ifaces(&["eth2"]), Some("192.0.2.1")),
            chose("eth2", "203.0.113.1")
        );
    }

    #[test]
    fn nothing_given_is_the_public_ips_interface_else_the_default_route() {
        let none = Criteria::default();
        assert_eq!(
            pick(&none, Some("198.51.100.11")),
            chose("eth1", "198.51.100.11")
        );
        assert_eq!(pick(&none, None), chose("eth0", "192.0.2.1"));
        let err = pick(&none, Some("198.18.0.1")).expect_err("on no interface");
        assert!(
            err.starts_with("--public-ip: \"198.18.0.1\" is invalid"),
            "{err}"
        );
        assert!(err.contains("behind NAT, also give --iface"), "{err}");

        let routes = FakeRoutes { default: None };
        let s = choose(&none, None, Family::V4, &host(), &routes);
        let err = s.choice.expect_err("no default route").to_string();
        assert!(err.starts_with("--iface: \"(none given)\""), "{err}");
        assert!(err.contains("there is no IPv4 default route"), "{err}");
        let routes = FakeRoutes { default: Some(5) };
        let s = choose(&none, None, Family::V4, &host(), &routes);
        let err = s.choice.expect_err("eth3 has no IPv4").to_string();
        assert!(err.contains("eth3 has no usable IPv4 address"), "{err}");
    }

    #[test]
    fn nothing_matching_fails_without_falling_back() {
        // The default route's eth0 is usable, but flags were given.
        let c = Criteria {
            ifaces: vec!["nosuch0".parse().expect("infallible")],
            regexes: vec![Regex::new("^nomatch$").expect("valid")],
            can_reach: None,
        };
        let err = pick(&c, Some("192.0.2.1")).expect_err("nothing matches");
        assert!(
            err.starts_with("--iface, --iface-regex: \"nosuch0, ^nomatch$\" is invalid"),
            "{err}"
        );
        assert!(
            err.contains("--iface nosuch0: there is no interface nosuch0"),
            "{err}"
        );
        assert!(
            err.contains("--iface-regex ^nomatch$: matches no interface's IPv4 address or name"),
            "{err}"
        );
        assert!(
            err.contains("eth1 [198.51.100.1 198.51.100.11 169.254.0.7]"),
            "{err}"
        );
    }

    #[test]
    fn ipv6_chooses_by_the_same_rules() {
        let s = choose(&ifaces(&["eth0"]), None, Family::V6, &host(), &KERNEL);
        assert_eq!(s.choice.expect("eth0 has IPv6").addr, ip("2001:db8::1"));
        let s = choose(&regexes(&["^fe80:"]), None, Family::V6, &host(), &KERNEL);
        assert_eq!(s.choice.expect("eth3's link-local").iface, "eth3");
        let c = Criteria {
            can_reach: Some(ip("2001:db8:9::1")),
            ..Criteria::default()
        };
        let s = choose(&c, None, Family::V6, &host(), &KERNEL);
        assert_eq!(s.choice.expect("routed").addr, ip("2001:db8:9::4"));
    }

    #[test]
    fn iface_values_parse_as_addresses_first() {
        assert_eq!("eth0".parse(), Ok(IfaceArg::Name("eth0".into())));
        assert_eq!("192.0.2.1".parse(), Ok(IfaceArg::Addr(ip("192.0.2.1"))));
        assert_eq!("fd00::1".parse(), Ok(IfaceArg::Addr(ip("fd00::1"))));
    }
}
