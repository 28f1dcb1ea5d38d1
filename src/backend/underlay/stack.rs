//! The underlay per address family, as flanneld places it (`LookupExtIface` in
//! its `pkg/ipmatch/match.go`, called from `main.go` once the network config is
//! known): pure code over the same host snapshot as [`select`].
//!
//! The network config's `EnableIPv4` and `EnableIPv6` make the [`Stack`]:
//!
//! | stack | the interface | its IPv4 address | its IPv6 address | `PublicIP` | `PublicIPv6` |
//! |-------|---------------|------------------|------------------|------------|--------------|
//! | IPv4  | the IPv4 rules | the rules' | none | `--public-ip`, else the address | none (`--public-ipv6` is ignored) |
//! | IPv6  | the IPv6 rules | none | the rules' | `0.0.0.0` | `--public-ipv6`, else the address |
//! | dual  | the IPv4 rules | the rules' | see below | `--public-ip`, else the IPv4 address | `--public-ipv6`, else the IPv6 address |
//!
//! The IPv6 rules are the IPv4 ones with IPv6 values: `--iface` takes IPv6
//! addresses, `--iface-regex` matches IPv6 addresses, `--iface-can-reach` takes
//! an IPv6 target, `--public-ipv6` names the interface when no flag does, and
//! the fallback is the IPv6 default route's interface.
//!
//! In dual-stack mode one interface carries both families (flanneld's rule):
//! its IPv6 address is `--public-ipv6` when that is one of its addresses (an
//! address of another interface is refused, as flanneld refuses it), else the
//! first global IPv6 address matching the `--iface-regex` that chose it, else its
//! first global IPv6 address. When no flag and no `--public-ip` is given, the
//! interface holding `--public-ipv6` is chosen, else the default route's, and
//! then the IPv6 default route must leave by the same interface.
//!
//! Where ringlay departs from flanneld: the IPv6 address must be global (Go's
//! `IsGlobalUnicast`, which includes unique local addresses). flanneld takes a
//! link-local address when the interface has nothing else, and publishes it as
//! `PublicIPv6`, which no peer can reach without a zone. Here that is an error
//! naming the fix, unless `--public-ipv6` says where peers reach us.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::select::{self, Criteria, Family, Link, Routes, Rule, Selection};
use crate::{Error, Result};

/// The address families the network uses (flanneld's "ip stack").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// `EnableIPv4` only (flannel's default).
    V4,
    /// `EnableIPv6` only.
    V6,
    /// Both.
    Dual,
}

impl Stack {
    /// The stack of a config's `EnableIPv4` and `EnableIPv6`; `None` when neither
    /// is set (the config's own validation refuses that first).
    pub fn of(ipv4: bool, ipv6: bool) -> Option<Stack> {
        match (ipv4, ipv6) {
            (true, false) => Some(Stack::V4),
            (false, true) => Some(Stack::V6),
            (true, true) => Some(Stack::Dual),
            (false, false) => None,
        }
    }

    /// True when the network has IPv4 subnets.
    pub fn has_v4(self) -> bool {
        self != Stack::V6
    }

    /// True when the network has IPv6 subnets.
    pub fn has_v6(self) -> bool {
        self != Stack::V4
    }
}

/// The public addresses the operator gave (`--public-ip`, `--public-ipv6`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Given {
    /// `--public-ip`.
    pub public_ip: Option<Ipv4Addr>,
    /// `--public-ipv6`.
    pub public_ipv6: Option<Ipv6Addr>,
}

/// Where the underlay is, per family.
#[derive(Debug, Clone)]
pub struct Placed {
    /// The interface.
    pub iface: String,
    /// Our IPv4 address on it; `None` in an IPv6-only network.
    pub addr4: Option<Ipv4Addr>,
    /// Our global IPv6 address on it; `None` in an IPv4-only network, or when
    /// it has none and `--public-ipv6` was given.
    pub addr6: Option<Ipv6Addr>,
    /// The rule that chose the interface.
    pub rule: Rule,
}

/// The outcome of [`place`]: the placement or the error to start with, and
/// every rule tried in vain before it.
#[derive(Debug)]
pub struct Placement {
    /// The placement, or why there is none.
    pub placed: Result<Placed>,
    /// The rules that chose nothing, in the order tried.
    pub misses: Vec<select::Miss>,
}

/// Places the underlay for `stack` by the rules of the module docs.
pub fn place(
    criteria: &Criteria,
    given: Given,
    stack: Stack,
    links: &[Link],
    routes: &dyn Routes,
) -> Placement {
    match stack {
        Stack::V4 => {
            let s = select::choose(
                criteria,
                given.public_ip.map(IpAddr::V4),
                Family::V4,
                links,
                routes,
            );
            finish(s, |c| Ok(placed(c.iface, v4(c.addr), None, c.rule)))
        }
        Stack::V6 => {
            if let Some(ip) = given.public_ip {
                return refused(Error::invalid(
                    "--public-ip",
                    ip,
                    "no flag in an IPv6-only network: the config has EnableIPv4 false, so our \
                     lease's PublicIP is 0.0.0.0; drop --public-ip (and give --public-ipv6 if \
                     peers reach this host at another IPv6 address)",
                ));
            }
            let by = given.public_ipv6.map(IpAddr::V6);
            let s = select::choose(criteria, by, Family::V6, links, routes);
            finish(s, |c| {
                let addr6 = global_v6(&c.iface, v6(c.addr), given.public_ipv6)?;
                Ok(placed(c.iface, None, addr6, c.rule))
            })
        }
        Stack::Dual => {
            let s = dual_interface(criteria, given, links, routes);
            finish(s, |c| dual(c, given, links, routes))
        }
    }
}

/// The dual-stack interface: by the IPv4 rules, or, with nothing but
/// `--public-ipv6` given, the interface holding it.
fn dual_interface(
    criteria: &Criteria,
    given: Given,
    links: &[Link],
    routes: &dyn Routes,
) -> Selection {
    match (criteria.is_empty(), given.public_ip, given.public_ipv6) {
        (true, None, Some(v6)) => {
            select::choose(criteria, Some(IpAddr::V6(v6)), Family::V6, links, routes)
        }
        _ => select::choose(
            criteria,
            given.public_ip.map(IpAddr::V4),
            Family::V4,
            links,
            routes,
        ),
    }
}

/// The dual-stack placement on the interface `c` chose.
fn dual(c: select::Choice, given: Given, links: &[Link], routes: &dyn Routes) -> Result<Placed> {
    let link = links
        .iter()
        .find(|l| l.name == c.iface)
        .expect("select chooses one of the links it was given");
    let addr4 = match c.addr {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => first_v4(link)?,
    };
    if matches!(c.rule, Rule::DefaultRoute) {
        same_v6_default_route(link, links, routes)?;
    }
    let addr6 = match (given.public_ipv6, c.addr) {
        (Some(p), _) if on_link(link, p) => Some(p),
        (Some(p), _) if links.iter().any(|l| on_link(l, p)) => {
            return Err(other_interface(p, link, links))
        }
        (_, IpAddr::V6(a)) => Some(a),
        _ => {
            let first = match &c.rule {
                Rule::Regex(re) => globals(link).find(|a| re.is_match(&a.to_string())),
                _ => None,
            };
            first.or_else(|| globals(link).next())
        }
    };
    let addr6 = match addr6 {
        Some(a) => global_v6(&c.iface, a, given.public_ipv6)?,
        None if given.public_ipv6.is_some() => None,
        None => return Err(no_global_v6(&c.iface)),
    };
    Ok(placed(c.iface, Some(addr4), addr6, c.rule))
}

/// In dual-stack mode without flags, both default routes must leave by one
/// interface (flanneld: "v6 default route interface … must be the same with v4
/// default route interface …").
fn same_v6_default_route(link: &Link, links: &[Link], routes: &dyn Routes) -> Result<()> {
    let fix = "in a dual-stack network one interface carries both families: route both \
               defaults through it, or name it with --iface";
    let oif = routes
        .default_route(Family::V6)
        .map_err(|e| Error::setup("reading the IPv6 routing table", e))?;
    let Some(oif) = oif else {
        return Err(Error::invalid(
            "--iface",
            "(none given)",
            format!(
                "{} is the IPv4 default route's interface, but there is no IPv6 default \
                 route; {fix}",
                link.name
            ),
        ));
    };
    if oif == link.index {
        return Ok(());
    }
    let v6_name = links
        .iter()
        .find(|l| l.index == oif)
        .map_or_else(|| format!("index {oif}"), |l| l.name.clone());
    Err(Error::invalid(
        "--iface",
        "(none given)",
        format!(
            "the IPv4 default route leaves by {} but the IPv6 one by {v6_name}; {fix}",
            link.name
        ),
    ))
}

/// `addr` as the interface's IPv6 address if it is global; a link-local one
/// only when `--public-ipv6` tells peers where to reach us (then `None`).
fn global_v6(iface: &str, addr: Ipv6Addr, public: Option<Ipv6Addr>) -> Result<Option<Ipv6Addr>> {
    if !addr.is_unicast_link_local() {
        return Ok(Some(addr));
    }
    match public {
        Some(_) => Ok(None),
        None => Err(no_global_v6(iface)),
    }
}

fn no_global_v6(iface: &str) -> Error {
    Error::invalid(
        "--public-ipv6",
        "(none given)",
        format!(
            "EnableIPv6 is true but {iface} has no global IPv6 address: add one or set \
             --public-ipv6 (peers cannot reach a link-local address)"
        ),
    )
}

fn other_interface(p: Ipv6Addr, link: &Link, links: &[Link]) -> Error {
    let holder = links
        .iter()
        .find(|l| on_link(l, p))
        .map_or("another interface", |l| l.name.as_str());
    Error::invalid(
        "--public-ipv6",
        p,
        format!(
            "an address of {iface} or of no interface here (behind NAT): it is on {holder}, \
             but the underlay is {iface}, and in a dual-stack network one interface carries \
             both families; choose {holder} with --iface, or give an address of {iface}",
            iface = link.name
        ),
    )
}

/// The link's usable global IPv6 addresses, best first.
fn globals(link: &Link) -> impl Iterator<Item = Ipv6Addr> + '_ {
    link.usable(Family::V6).into_iter().filter_map(|a| match a {
        IpAddr::V6(a) if !a.is_unicast_link_local() => Some(a),
        _ => None,
    })
}

fn first_v4(link: &Link) -> Result<Ipv4Addr> {
    match link.usable(Family::V4).first() {
        Some(IpAddr::V4(a)) => Ok(*a),
        _ => Err(Error::invalid(
            "--public-ipv6",
            "(the interface's)",
            format!(
                "EnableIPv4 is true but {} has no usable IPv4 address: add one, or choose \
                 the interface with --iface",
                link.name
            ),
        )),
    }
}

fn on_link(link: &Link, ip: Ipv6Addr) -> bool {
    link.addrs.iter().any(|a| a.ip == IpAddr::V6(ip))
}

fn placed(iface: String, addr4: Option<Ipv4Addr>, addr6: Option<Ipv6Addr>, rule: Rule) -> Placed {
    Placed {
        iface,
        addr4,
        addr6,
        rule,
    }
}

fn v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => unreachable!("select::choose in Family::V4 chooses an IPv4 address"),
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V6(a) => a,
        IpAddr::V4(_) => unreachable!("select::choose in Family::V6 chooses an IPv6 address"),
    }
}

fn finish(s: Selection, then: impl FnOnce(select::Choice) -> Result<Placed>) -> Placement {
    Placement {
        placed: s.choice.and_then(then),
        misses: s.misses,
    }
}

fn refused(e: Error) -> Placement {
    Placement {
        placed: Err(e),
        misses: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::underlay::select::{Addr, RouteTo};
    use regex::Regex;
    use std::io;

    const PERM: u32 = 0x80;

    /// eth0: 192.0.2.1, fe80::1, 2001:db8::1 (both default routes by default);
    /// eth1: 198.51.100.1, 2001:db8:1::1, 2001:db8:1::2; eth2: 203.0.113.1 and
    /// a link-local only; eth3: 2001:db8:3::1 only.
    fn host() -> Vec<Link> {
        let link = |index, name: &str, addrs: &[&str]| Link {
            index,
            name: name.to_owned(),
            addrs: addrs
                .iter()
                .map(|ip| Addr {
                    ip: ip.parse().expect("valid address"),
                    flags: PERM,
                })
                .collect(),
        };
        vec![
            link(1, "lo", &["127.0.0.1", "::1"]),
            link(2, "eth0", &["192.0.2.1", "fe80::1", "2001:db8::1"]),
            link(
                3,
                "eth1",
                &["198.51.100.1", "2001:db8:1::1", "2001:db8:1::2"],
            ),
            link(4, "eth2", &["203.0.113.1", "fe80::2"]),
            link(5, "eth3", &["2001:db8:3::1"]),
        ]
    }

    /// Default routes per family by interface index; 2001:db8:9::/48 is routed
    /// by eth1 from 2001:db8:1::2.
    struct Kernel {
        v4: Option<u32>,
        v6: Option<u32>,
    }

    impl Routes for Kernel {
        fn default_route(&self, family: Family) -> io::Result<Option<u32>> {
            Ok(match family {
                Family::V4 => self.v4,
                Family::V6 => self.v6,
            })
        }
        fn route_to(&self, addr: IpAddr) -> io::Result<RouteTo> {
            match addr {
                IpAddr::V6(a) if a.segments()[..3] == [0x2001, 0xdb8, 9] => Ok(RouteTo {
                    oif: 3,
                    src: Some("2001:db8:1::2".parse().expect("valid")),
                }),
                _ => Err(io::Error::from_raw_os_error(libc::ENETUNREACH)),
            }
        }
    }

    const BOTH_ETH0: Kernel = Kernel {
        v4: Some(2),
        v6: Some(2),
    };

    fn given(v4: Option<&str>, v6: Option<&str>) -> Given {
        Given {
            public_ip: v4.map(|s| s.parse().expect("valid")),
            public_ipv6: v6.map(|s| s.parse().expect("valid")),
        }
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

    /// `iface addr4 addr6` of the placement, or the error's text.
    fn run(c: &Criteria, g: Given, stack: Stack, k: &Kernel) -> Result<String, String> {
        let p = place(c, g, stack, &host(), k)
            .placed
            .map_err(|e| e.to_string())?;
        let show = |a: Option<String>| a.unwrap_or_else(|| "-".into());
        Ok(format!(
            "{} {} {}",
            p.iface,
            show(p.addr4.map(|a| a.to_string())),
            show(p.addr6.map(|a| a.to_string()))
        ))
    }

    fn ok(s: &str) -> Result<String, String> {
        Ok(s.to_owned())
    }

    #[test]
    fn stack_of_the_config_flags() {
        assert_eq!(Stack::of(true, false), Some(Stack::V4));
        assert_eq!(Stack::of(false, true), Some(Stack::V6));
        assert_eq!(Stack::of(true, true), Some(Stack::Dual));
        assert_eq!(Stack::of(false, false), None);
    }

    #[test]
    fn ipv4_only_is_unchanged_and_ignores_ipv6() {
        let none = Criteria::default();
        assert_eq!(
            run(&none, given(None, None), Stack::V4, &BOTH_ETH0),
            ok("eth0 192.0.2.1 -")
        );
        assert_eq!(
            run(
                &none,
                given(None, Some("2001:db8::1")),
                Stack::V4,
                &BOTH_ETH0
            ),
            ok("eth0 192.0.2.1 -")
        );
    }

    #[test]
    fn dual_stack_takes_the_ipv4_interface_and_its_global_ipv6() {
        let none = Criteria::default();
        // The global address, not the link-local listed before it.
        assert_eq!(
            run(&none, given(None, None), Stack::Dual, &BOTH_ETH0),
            ok("eth0 192.0.2.1 2001:db8::1")
        );
        assert_eq!(
            run(
                &ifaces(&["eth1"]),
                given(None, None),
                Stack::Dual,
                &BOTH_ETH0
            ),
            ok("eth1 198.51.100.1 2001:db8:1::1")
        );
        // --public-ipv6 on the interface is its IPv6 address.
        assert_eq!(
            run(
                &ifaces(&["eth1"]),
                given(None, Some("2001:db8:1::2")),
                Stack::Dual,
                &BOTH_ETH0
            ),
            ok("eth1 198.51.100.1 2001:db8:1::2")
        );
        // A regex's matching IPv6 address.
        let re = Criteria {
            regexes: vec![Regex::new("^198\\.|::2$").expect("valid")],
            ..Criteria::default()
        };
        assert_eq!(
            run(&re, given(None, None), Stack::Dual, &BOTH_ETH0),
            ok("eth1 198.51.100.1 2001:db8:1::2")
        );
        // Only --public-ipv6: the interface holding it, with its IPv4 address.
        assert_eq!(
            run(
                &none,
                given(None, Some("2001:db8:1::2")),
                Stack::Dual,
                &BOTH_ETH0
            ),
            ok("eth1 198.51.100.1 2001:db8:1::2")
        );
        // Behind NAT: an address of no interface, and the interface's own.
        assert_eq!(
            run(
                &ifaces(&["eth0"]),
                given(None, Some("2001:db8:77::1")),
                Stack::Dual,
                &BOTH_ETH0
            ),
            ok("eth0 192.0.2.1 2001:db8::1")
        );
    }

    #[test]
    fn dual_stack_refusals_name_the_flag_and_the_fix() {
        let err = run(
            &ifaces(&["eth2"]),
            given(None, None),
            Stack::Dual,
            &BOTH_ETH0,
        )
        .expect_err("link-local only");
        assert!(
            err.contains("EnableIPv6 is true but eth2 has no global IPv6 address")
                && err.contains("add one or set --public-ipv6"),
            "{err}"
        );
        // With --public-ipv6 there is nothing to guess: no interface address.
        assert_eq!(
            run(
                &ifaces(&["eth2"]),
                given(None, Some("2001:db8:77::1")),
                Stack::Dual,
                &BOTH_ETH0
            ),
            ok("eth2 203.0.113.1 -")
        );
        let err = run(
            &ifaces(&["eth0"]),
            given(None, Some("2001:db8:1::1")),
            Stack::Dual,
            &BOTH_ETH0,
        )
        .expect_err("on eth1");
        assert!(
            err.starts_with("--public-ipv6: \"2001:db8:1::1\" is invalid"),
            "{err}"
        );
        assert!(
            err.contains("it is on eth1, but the underlay is eth0"),
            "{err}"
        );
        let err = run(
            &Criteria::default(),
            given(None, None),
            Stack::Dual,
            &Kernel {
                v4: Some(2),
                v6: Some(3),
            },
        )
        .expect_err("two default routes");
        assert!(
            err.contains("the IPv4 default route leaves by eth0 but the IPv6 one by eth1"),
            "{err}"
        );
        let err = run(
            &Criteria::default(),
            given(None, None),
            Stack::Dual,
            &Kernel {
                v4: Some(2),
                v6: None,
            },
        )
        .expect_err("no IPv6 default route");
        assert!(err.contains("there is no IPv6 default route"), "{err}");
        // eth3 has no IPv4 address: the IPv4 rules miss it.
        let err = run(
            &ifaces(&["eth3"]),
            given(None, None),
            Stack::Dual,
            &BOTH_ETH0,
        )
        .expect_err("no IPv4");
        assert!(err.contains("eth3 has no usable IPv4 address"), "{err}");
    }

    #[test]
    fn ipv6_only_chooses_by_the_ipv6_rules() {
        let v6_default = Kernel {
            v4: None,
            v6: Some(5),
        };
        assert_eq!(
            run(
                &Criteria::default(),
                given(None, None),
                Stack::V6,
                &v6_default
            ),
            ok("eth3 - 2001:db8:3::1")
        );
        // --iface takes IPv6 addresses; an IPv4 one misses.
        assert_eq!(
            run(
                &ifaces(&["192.0.2.1", "2001:db8:1::2"]),
                given(None, None),
                Stack::V6,
                &v6_default
            ),
            ok("eth1 - 2001:db8:1::2")
        );
        // --iface-regex matches IPv6 addresses.
        let re = Criteria {
            regexes: vec![Regex::new(":3::").expect("valid")],
            ..Criteria::default()
        };
        assert_eq!(
            run(&re, given(None, None), Stack::V6, &v6_default),
            ok("eth3 - 2001:db8:3::1")
        );
        // --iface-can-reach takes an IPv6 target: the route's source.
        let reach = Criteria {
            can_reach: Some("2001:db8:9::1".parse().expect("valid")),
            ..Criteria::default()
        };
        assert_eq!(
            run(&reach, given(None, None), Stack::V6, &v6_default),
            ok("eth1 - 2001:db8:1::2")
        );
        // Without flags, --public-ipv6 names the interface.
        assert_eq!(
            run(
                &Criteria::default(),
                given(None, Some("2001:db8::1")),
                Stack::V6,
                &v6_default
            ),
            ok("eth0 - 2001:db8::1")
        );
    }

    #[test]
    fn ipv6_only_refusals() {
        let v6_default = Kernel {
            v4: Some(2),
            v6: None,
        };
        let err = run(
            &Criteria::default(),
            given(None, None),
            Stack::V6,
            &v6_default,
        )
        .expect_err("no v6 default");
        assert!(err.contains("there is no IPv6 default route"), "{err}");
        let err = run(
            &Criteria::default(),
            given(Some("192.0.2.1"), None),
            Stack::V6,
            &BOTH_ETH0,
        )
        .expect_err("--public-ip");
        assert!(
            err.starts_with("--public-ip: \"192.0.2.1\" is invalid"),
            "{err}"
        );
        assert!(err.contains("EnableIPv4 false"), "{err}");
        let err = run(&ifaces(&["eth2"]), given(None, None), Stack::V6, &BOTH_ETH0)
            .expect_err("link-local");
        assert!(err.contains("eth2 has no global IPv6 address"), "{err}");
        let err = run(
            &Criteria::default(),
            given(None, Some("2001:db8:77::1")),
            Stack::V6,
            &BOTH_ETH0,
        )
        .expect_err("on no interface");
        assert!(
            err.starts_with("--public-ipv6: \"2001:db8:77::1\" is invalid"),
            "{err}"
        );
    }
}
