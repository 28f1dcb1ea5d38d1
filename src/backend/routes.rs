//! Kernel routes to peers reached without a tunnel: every peer with the host-gw
//! backend, and with `DirectRouting` the peers on this host's L2 segment.
//!
//! Such a peer's subnet is routed `<subnet> via <PublicIP> dev <underlay>`, IPv4
//! and IPv6 (`PublicIPv6`), as flannel's host-gw backend does. A [`RouteSync`] is
//! driven by *the current set of leases*: [`RouteSync::sync`] brings the kernel's
//! table in line with a lease set, whatever produced it (the static file on start,
//! SIGHUP or edit, or a subnet manager's watch and resync), and the control loop
//! calls it every [`RECONCILE_INTERVAL`] too, so a route deleted by hand comes back.
//! Dropping a [`RouteSync`] deletes every route it installed.
//!
//! # Whose routes
//!
//! Every route ringlay installs carries the route protocol [`ROUTE_PROTOCOL`]
//! (114; `ip route show proto 114` lists them). 114 is `r` in ASCII, as in the
//! derived VTEP MACs; it is not assigned in iproute2's `rt_protos` nor in the
//! kernel's `RTPROT_*` list. ringlay only replaces or deletes routes of that
//! protocol, and only inside the network's prefixes (`Network`, `IPv6Network`):
//!
//! * a route of that protocol that no lease wants is stale and is deleted, and
//!   deletes name the protocol so the kernel refuses to delete anything else;
//! * a new route is added exclusively (`NLM_F_EXCL`): if another route to the same
//!   prefix exists (an operator's, a routing daemon's), it stays, and ringlay says
//!   once that it is in the way;
//! * a route of ours that points elsewhere (the lease's PublicIP changed) is
//!   replaced in place.
//!
//! # Directly reachable
//!
//! A peer is reached directly when the kernel's route to its PublicIP leaves
//! through the underlay interface without a gateway: the address is on a connected
//! prefix, the same L2 segment (asked with `RTM_GETROUTE`, as `ip route get`). A
//! route through a peer that is not would be broken (the next hop would be
//! unresolvable), so none is installed. With host-gw that peer is unreachable: an
//! error names it once and it is counted ([`RouteStats::unreachable`]); the rest of
//! the cluster keeps its routes. With `DirectRouting` the tunnel carries its
//! traffic, which is the design, so it is only noted.
//!
//! # DirectRouting and the table
//!
//! With a tunnel backend, the TUN device holds the whole network's route
//! (`100.96.0.0/16 dev ringlay0`), and the table holds every peer. A direct route
//! is more specific (`100.96.2.0/24 via 192.0.2.2`), so the kernel sends that
//! peer's traffic straight onto the underlay and the TUN never sees it; packets
//! from a direct peer arrive as plain IP and are forwarded by the kernel. The table
//! keeps the direct peer too, so that while its route is missing (deleted by hand,
//! until the next reconcile) its traffic falls back to the tunnel rather than
//! being lost, and so that a peer which tunnels to us (a flanneld node without
//! DirectRouting) is still accepted. The daemon keeps *routes ⊆ table* at every
//! moment: on a lease change it calls [`RouteSync::withdraw`] (delete routes the
//! new leases no longer want) *before* publishing the new table, and
//! [`RouteSync::sync`] (add the new routes) *after*.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::{Lease, NetworkConfig, SubnetKey};
use crate::sys::netdev;
use crate::sys::netlink::{Lookup, Route, RouteSocket};
use crate::{Error, Result};

/// The route protocol number (`rtm_protocol`) of every route ringlay installs.
pub const ROUTE_PROTOCOL: u8 = 114;

/// How often the daemon reconciles the routes with the leases when nothing changed.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(10);

/// Which peers get a direct route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The host-gw backend: every peer; one not directly reachable is an error.
    HostGw,
    /// A tunnel backend with `DirectRouting`: the peers on this L2 segment; the
    /// others go through the tunnel.
    DirectRouting,
}

/// Where a peer's public address is, seen from this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// On a connected prefix of the underlay interface: a route through it works.
    Direct,
    /// Not on the underlay's L2 segment; the reason, for the log.
    Indirect(String),
}

/// What the kernel's answer to "how is `addr` reached" means for a route through
/// it on the interface `ifindex` (named `iface` in the reason).
pub fn reach_of(lookup: &io::Result<Lookup>, ifindex: u32, iface: &str) -> Reach {
    match lookup {
        Err(e) => Reach::Indirect(format!("the kernel has no route to it ({e})")),
        Ok(l) if !l.unicast => Reach::Indirect("it is not a unicast destination".into()),
        Ok(l) => match (l.gateway, l.oif) {
            (Some(gw), _) => Reach::Indirect(format!("it is reached via the gateway {gw}")),
            (None, Some(oif)) if oif == ifindex => Reach::Direct,
            (None, _) => Reach::Indirect(format!("it is not on a prefix of {iface}")),
        },
    }
}

/// One route the leases call for, and the lease it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// The lease whose subnet the route carries.
    pub key: SubnetKey,
    /// The route: the lease's subnet via its public address on the underlay.
    pub route: Route,
}

/// A peer address that got no route, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrouted {
    /// The peer's lease.
    pub key: SubnetKey,
    /// The public address (IPv4 or IPv6) the route would have gone through.
    pub via: Option<IpAddr>,
    /// Why there is no route.
    pub reason: String,
}

/// The routes `leases` call for on the underlay interface `oif`, every lease but
/// `local`: each IPv4 subnet via `PublicIP`, each IPv6 subnet via `PublicIPv6`,
/// where `reach` says the address is [`Reach::Direct`]. Every other peer address is
/// listed as [`Unrouted`]. `reach` is asked once per address.
pub fn wanted(
    leases: &[Lease],
    local: &SubnetKey,
    oif: u32,
    mut reach: impl FnMut(IpAddr) -> Reach,
) -> (Vec<Wanted>, Vec<Unrouted>) {
    let mut seen: HashMap<IpAddr, Reach> = HashMap::new();
    let mut routes = Vec::new();
    let mut unrouted = Vec::new();
    for lease in leases.iter().filter(|l| l.key != *local) {
        let a = &lease.attrs;
        let v4 = lease
            .key
            .v4
            .map(|n| (IpNet::V4(n), Some(IpAddr::V4(a.public_ip))));
        let v6 = lease
            .key
            .v6
            .map(|n| (IpNet::V6(n), a.public_ipv6.map(IpAddr::V6)));
        for (dst, via) in [v4, v6].into_iter().flatten() {
            let Some(via) = via.filter(|ip| !ip.is_unspecified()) else {
                unrouted.push(Unrouted {
                    key: lease.key,
                    via: None,
                    reason: format!("its lease has no public address of {dst}'s family"),
                });
                continue;
            };
            let verdict = seen.entry(via).or_insert_with(|| reach(via)).clone();
            match verdict {
                Reach::Direct => routes.push(Wanted {
                    key: lease.key,
                    route: Route {
                        dst,
                        gateway: Some(via),
                        oif: Some(oif),
                    },
                }),
                Reach::Indirect(reason) => unrouted.push(Unrouted {
                    key: lease.key,
                    via: Some(via),
                    reason,
                }),
            }
        }
    }
    (routes, unrouted)
}

/// What to change to go from the routes of ours in the kernel to the wanted ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Wanted routes with no route of ours to their prefix.
    pub add: Vec<Wanted>,
    /// Wanted routes whose prefix has a route of ours that differs: (new, old).
    pub replace: Vec<(Wanted, Route)>,
    /// Routes of ours inside `scope` that nothing wants.
    pub delete: Vec<Route>,
}

impl Plan {
    /// True when the kernel already has exactly the wanted routes.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.replace.is_empty() && self.delete.is_empty()
    }
}

/// Compares the wanted routes with `ours` (the kernel's routes of
/// [`ROUTE_PROTOCOL`]). Routes of ours outside every prefix of `scope` are left
/// out of the plan: they are not this network's.
pub fn plan(wanted: &[Wanted], ours: &[Route], scope: &[IpNet]) -> Plan {
    let in_scope = |r: &Route| scope.iter().any(|s| s.contains(&r.dst));
    let mut have: BTreeMap<IpNet, Vec<Route>> = BTreeMap::new();
    for r in ours.iter().filter(|r| in_scope(r)) {
        have.entry(r.dst).or_default().push(*r);
    }
    let mut p = Plan::default();
    for w in wanted {
        match have.remove(&w.route.dst) {
            None => p.add.push(*w),
            Some(mut old) => {
                if let Some(i) = old.iter().position(|r| *r == w.route) {
                    old.swap_remove(i);
                } else {
                    let first = old.remove(0);
                    p.replace.push((*w, first));
                }
                // Any more of ours to that prefix (at other metrics) are stale.
                p.delete.extend(old);
            }
        }
    }
    p.delete.extend(have.into_values().flatten());
    p
}

/// The routes of `ours` inside `scope` that `leases` (less `local`) no longer
/// want: no lease holds the prefix, or its lease's public address is not the
/// route's gateway. Needs no reachability answer, so it is cheap.
pub fn withdrawn(
    leases: &[Lease],
    local: &SubnetKey,
    ours: &[Route],
    scope: &[IpNet],
) -> Vec<Route> {
    let mut still: HashMap<IpNet, Option<IpAddr>> = HashMap::new();
    for l in leases.iter().filter(|l| l.key != *local) {
        if let Some(n) = l.key.v4 {
            still.insert(IpNet::V4(n), Some(IpAddr::V4(l.attrs.public_ip)));
        }
        if let Some(n) = l.key.v6 {
            still.insert(IpNet::V6(n), l.attrs.public_ipv6.map(IpAddr::V6));
        }
    }
    ours.iter()
        .filter(|r| scope.iter().any(|s| s.contains(&r.dst)))
        .filter(|r| still.get(&r.dst).is_none_or(|via| *via != r.gateway))
        .copied()
        .collect()
}

/// The counters a [`RouteSync`] keeps; `Display` gives one log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteStats {
    /// Routes of ours in place after the last reconcile.
    pub routes: usize,
    /// Routes added for new leases.
    pub added: u64,
    /// Routes added back after they disappeared.
    pub restored: u64,
    /// Routes replaced because the lease's address changed.
    pub replaced: u64,
    /// Routes deleted because no lease wants them.
    pub removed: u64,
    /// Peer addresses that got no route at the last reconcile (host-gw: these
    /// peers are unreachable; DirectRouting: they go through the tunnel).
    pub unreachable: usize,
    /// How many times a peer address was found not directly reachable (each
    /// peer counted once until it changes).
    pub unreachable_reports: u64,
    /// Route changes the kernel refused, or routes another route was in the way of.
    pub failures: u64,
}

impl fmt::Display for RouteStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "routes={} added={} restored={} replaced={} removed={} unreachable={} unreachable_reports={} failures={}",
            self.routes,
            self.added,
            self.restored,
            self.replaced,
            self.removed,
            self.unreachable,
            self.unreachable_reports,
            self.failures
        )
    }
}

/// Keeps the kernel's direct routes in line with a set of leases.
#[derive(Debug)]
pub struct RouteSync {
    socket: RouteSocket,
    mode: Mode,
    iface: String,
    local: SubnetKey,
    scope: Vec<IpNet>,
    /// Prefixes we have put in place: one missing later was deleted by someone.
    installed: HashSet<IpNet>,
    /// Peer addresses reported as unrouted, with the reason, so each is said once.
    unrouted: HashMap<(SubnetKey, Option<IpAddr>), String>,
    /// Prefixes whose last change failed, with the error, so each is said once.
    failing: HashMap<IpNet, String>,
    stats: RouteStats,
}

impl RouteSync {
    /// A reconciler for the routes of `config`'s network through the underlay
    /// interface `iface`, for the peers of the host holding `local`. Opens the
    /// route socket; changes nothing yet.
    pub fn new(mode: Mode, iface: &str, local: SubnetKey, config: &NetworkConfig) -> Result<Self> {
        netdev::index(iface)
            .map_err(|e| Error::setup(format!("finding the underlay interface {iface}"), e))?;
        let socket = RouteSocket::open().map_err(|e| Error::setup("opening a route socket", e))?;
        let scope = config
            .ipv4
            .map(|c| IpNet::V4(c.network))
            .into_iter()
            .chain(config.ipv6.map(|c| IpNet::V6(c.network)))
            .collect();
        Ok(RouteSync {
            socket,
            mode,
            iface: iface.to_owned(),
            local,
            scope,
            installed: HashSet::new(),
            unrouted: HashMap::new(),
            failing: HashMap::new(),
            stats: RouteStats::default(),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> RouteStats {
        self.stats
    }

    /// Brings the kernel's routes in line with `leases`: adds the missing, puts
    /// back the deleted, replaces the changed and deletes the stale, logging each
    /// change once (`why` says what triggered it). Errors are logged, not
    /// returned: one bad route must not stop the others.
    pub fn sync(&mut self, leases: &[Lease], why: &str) {
        let ifindex = match netdev::index(&self.iface) {
            Ok(i) => i,
            Err(e) => {
                self.fail_once(None, why, format!("the underlay interface is gone: {e}"));
                return;
            }
        };
        let ours = match self.socket.routes(ROUTE_PROTOCOL) {
            Ok(r) => r,
            Err(e) => {
                self.fail_once(None, why, format!("reading the routing table: {e}"));
                return;
            }
        };
        self.failing.remove(&catch_all());
        let (iface, socket) = (&self.iface, &mut self.socket);
        let (want, unrouted) = wanted(leases, &self.local, ifindex, |ip| {
            reach_of(&socket.lookup(ip), ifindex, iface)
        });
        self.report_unrouted(&unrouted, why);
        let p = plan(&want, &ours, &self.scope);
        // Routes already in place are ours to restore too (after a restart, say).
        for w in &want {
            let changing = p.add.iter().chain(p.replace.iter().map(|(n, _)| n));
            if !changing.clone().any(|c| c.route.dst == w.route.dst) {
                self.installed.insert(w.route.dst);
            }
        }
        for old in &p.delete {
            self.delete(old, why, "no lease wants it");
        }
        for (new, old) in &p.replace {
            self.replace(new, old, why);
        }
        for new in &p.add {
            self.add(new, why);
        }
        let wanted_dsts: HashSet<IpNet> = want.iter().map(|w| w.route.dst).collect();
        self.failing
            .retain(|k, _| *k == catch_all() || wanted_dsts.contains(k));
        self.installed.retain(|k| wanted_dsts.contains(k));
        self.stats.routes = self.installed.len();
    }

    /// Replaces our route that points elsewhere with `new`'s.
    fn replace(&mut self, new: &Wanted, old: &Route, why: &str) {
        match self.socket.replace(&new.route, ROUTE_PROTOCOL) {
            Ok(()) => {
                tracing::info!(
                    "{why}: route changed: {} was {}, now {} (peer {})",
                    new.route.dst,
                    show(old),
                    show(&new.route),
                    new.key
                );
                self.stats.replaced += 1;
                self.succeeded(new.route.dst);
            }
            Err(e) => self.fail_once(
                Some(new.route.dst),
                why,
                format!(
                    "replacing the route to {} (peer {}): {e}",
                    new.route.dst, new.key
                ),
            ),
        }
    }

    /// Adds `new`'s route, exclusively: one already in the way stays.
    fn add(&mut self, new: &Wanted, why: &str) {
        match self.socket.add(&new.route, ROUTE_PROTOCOL) {
            Ok(()) => {
                if self.installed.contains(&new.route.dst) {
                    tracing::warn!(
                        "{why}: route restored: {} (peer {}); it had disappeared",
                        show(&new.route),
                        new.key
                    );
                    self.stats.restored += 1;
                } else {
                    tracing::info!(
                        "{why}: route added: {} (peer {})",
                        show(&new.route),
                        new.key
                    );
                    self.stats.added += 1;
                }
                self.succeeded(new.route.dst);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let (dst, via) = (new.route.dst, show_gw(&new.route));
                let msg = format!(
                    "a route to {dst} that ringlay did not install is in the way of \
                 peer {}'s route via {via}; leaving it alone",
                    new.key
                );
                self.fail_once(Some(dst), why, msg);
            }
            Err(e) => self.fail_once(
                Some(new.route.dst),
                why,
                format!(
                    "adding the route {} (peer {}): {e}",
                    show(&new.route),
                    new.key
                ),
            ),
        }
    }

    /// Deletes the routes of ours that `leases` no longer want: a lease gone, or
    /// its public address changed. Adds nothing and asks the kernel about no peer
    /// address, so it is cheap to call right before publishing a new table.
    pub fn withdraw(&mut self, leases: &[Lease], why: &str) {
        let ours = match self.socket.routes(ROUTE_PROTOCOL) {
            Ok(r) => r,
            Err(e) => {
                self.fail_once(None, why, format!("reading the routing table: {e}"));
                return;
            }
        };
        for r in withdrawn(leases, &self.local, &ours, &self.scope) {
            self.delete(&r, why, "its lease is gone or moved");
        }
    }

    /// Deletes every route of ours in the network's prefixes (on exit). Returns
    /// how many were deleted.
    pub fn remove_all(&mut self, why: &str) -> usize {
        let ours = match self.socket.routes(ROUTE_PROTOCOL) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{why}: reading the routing table to remove our routes: {e}");
                return 0;
            }
        };
        let mut n = 0;
        for r in ours
            .iter()
            .filter(|r| self.scope.iter().any(|s| s.contains(&r.dst)))
        {
            match self.socket.delete(r, ROUTE_PROTOCOL) {
                Ok(()) => {
                    tracing::debug!("{why}: route removed: {}", show(r));
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::error!("{why}: removing the route {}: {e}", show(r)),
            }
        }
        self.installed.clear();
        self.stats.routes = 0;
        n
    }

    fn delete(&mut self, r: &Route, why: &str, because: &str) {
        match self.socket.delete(r, ROUTE_PROTOCOL) {
            Ok(()) => {
                tracing::info!("{why}: route removed: {} ({because})", show(r));
                self.stats.removed += 1;
                self.installed.remove(&r.dst);
                self.failing.remove(&r.dst);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.installed.remove(&r.dst);
            }
            Err(e) => self.fail_once(
                Some(r.dst),
                why,
                format!("removing the route {}: {e}", show(r)),
            ),
        }
    }

    fn succeeded(&mut self, dst: IpNet) {
        self.installed.insert(dst);
        self.failing.remove(&dst);
    }

    /// Logs `msg` (after `why`) and counts a failure, unless the same message was
    /// the last one said for `dst` (`None`: the table as a whole).
    fn fail_once(&mut self, dst: Option<IpNet>, why: &str, msg: String) {
        let k = dst.unwrap_or_else(catch_all);
        if self.failing.get(&k) != Some(&msg) {
            tracing::error!("{why}: {msg}");
            self.stats.failures += 1;
            self.failing.insert(k, msg);
        }
    }

    fn report_unrouted(&mut self, now: &[Unrouted], why: &str) {
        let mut current = HashMap::with_capacity(now.len());
        for u in now {
            let id = (u.key, u.via);
            if self.unrouted.get(&id) != Some(&u.reason) {
                let via = u.via.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
                match self.mode {
                    Mode::HostGw => tracing::error!(
                        "{why}: peer {} (public address {via}) is not directly reachable on {}: {}; \
                         host-gw needs every node on one L2 segment, so no route to it is \
                         installed and its containers are unreachable from here",
                        u.key,
                        self.iface,
                        u.reason
                    ),
                    Mode::DirectRouting => tracing::info!(
                        "{why}: peer {} (public address {via}) is not on {}'s L2 segment ({}): \
                         reached through the tunnel",
                        u.key,
                        self.iface,
                        u.reason
                    ),
                }
                self.stats.unreachable_reports += 1;
            }
            current.insert(id, u.reason.clone());
        }
        for (key, via) in self.unrouted.keys() {
            if !current.contains_key(&(*key, *via)) {
                tracing::info!("{why}: peer {key}: no longer without a direct route");
            }
        }
        self.stats.unreachable = current.len();
        self.unrouted = current;
    }
}

/// The key under which failures of the table as a whole are remembered.
fn catch_all() -> IpNet {
    IpNet::V4(ipnet::Ipv4Net::default())
}

fn show(r: &Route) -> String {
    format!("{} via {}", r.dst, show_gw(r))
}

fn show_gw(r: &Route) -> String {
    r.gateway
        .map_or_else(|| "(no gateway)".to_owned(), |g| g.to_string())
}

/// On exit, and on a failed start alike: the routes ringlay installed go, and only
/// those (for DirectRouting, before the TUN device goes, so that until then their
/// traffic falls back to the tunnel).
impl Drop for RouteSync {
    fn drop(&mut self) {
        let n = self.remove_all("stop");
        match self.mode {
            Mode::HostGw => {
                tracing::info!("final route counters: {}", self.stats);
                tracing::info!("stopped; removed {n} host-gw routes");
            }
            Mode::DirectRouting => tracing::info!(
                "final route counters: {}; removed {n} direct routes",
                self.stats
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::static_leases::tests::parse;

    const HOST_GW: &str = r#"{"config": {"EnableIPv6": true, "Network": "100.96.0.0/16", "IPv6Network": "fd00:100:96::/48", "Backend": {"Type": "host-gw"}},
 "subnets": {
   "100.96.1.0-24&fd00:100:96:1::-64": {"PublicIP": "192.0.2.1", "PublicIPv6": "2001:db8::1", "BackendType": "host-gw"},
   "100.96.2.0-24&fd00:100:96:2::-64": {"PublicIP": "192.0.2.2", "PublicIPv6": "2001:db8::2", "BackendType": "host-gw"},
   "100.96.3.0-24&fd00:100:96:3::-64": {"PublicIP": "198.51.100.3", "BackendType": "host-gw"}}}"#;

    fn key(s: &str) -> SubnetKey {
        s.parse().expect("valid key")
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("valid prefix")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("valid address")
    }

    fn route(dst: &str, gw: &str, oif: u32) -> Route {
        Route {
            dst: net(dst),
            gateway: Some(ip(gw)),
            oif: Some(oif),
        }
    }

    /// 192.0.2.0/24 and 2001:db8::/64 are on the segment; anything else is not.
    fn segment(addr: IpAddr) -> Reach {
        let on = ["192.0.2.0/24", "2001:db8::/64"]
            .iter()
            .any(|n| net(n).contains(&addr));
        if on {
            Reach::Direct
        } else {
            Reach::Indirect("it is reached via the gateway 192.0.2.254".into())
        }
    }

    #[test]
    fn every_peer_on_the_segment_gets_a_route_per_family() {
        let s = parse(HOST_GW);
        let local = key("100.96.1.0-24&fd00:100:96:1::-64");
        let mut asked = Vec::new();
        let (want, unrouted) = wanted(&s.leases, &local, 7, |a| {
            asked.push(a);
            segment(a)
        });
        let routes: Vec<Route> = want.iter().map(|w| w.route).collect();
        assert_eq!(
            routes,
            [
                route("100.96.2.0/24", "192.0.2.2", 7),
                route("fd00:100:96:2::/64", "2001:db8::2", 7)
            ]
        );
        assert!(want
            .iter()
            .all(|w| w.key == key("100.96.2.0-24&fd00:100:96:2::-64")));
        // Peer 3: its IPv4 address is behind a gateway, and it has no IPv6 address.
        assert_eq!(unrouted.len(), 2);
        assert_eq!(unrouted[0].via, Some(ip("198.51.100.3")));
        assert!(unrouted[0].reason.contains("gateway"), "{:?}", unrouted[0]);
        assert_eq!(unrouted[1].via, None);
        // Our own addresses are never asked about.
        assert!(!asked.contains(&ip("192.0.2.1")));
        assert_eq!(asked.len(), 3, "{asked:?}");
    }

    #[test]
    fn plans_add_replace_delete_and_leave_the_rest() {
        let k2 = key("100.96.2.0-24");
        let k3 = key("100.96.3.0-24");
        let w = |k, r| Wanted { key: k, route: r };
        let wanted = [
            w(k2, route("100.96.2.0/24", "192.0.2.2", 7)),
            w(k3, route("100.96.3.0/24", "192.0.2.3", 7)),
        ];
        let scope = [net("100.96.0.0/16")];
        assert_eq!(plan(&wanted, &[], &scope).add, wanted);
        let ours = [
            route("100.96.2.0/24", "192.0.2.2", 7),  // in place
            route("100.96.3.0/24", "192.0.2.33", 7), // moved
            route("100.96.4.0/24", "192.0.2.4", 7),  // stale
            route("10.0.0.0/24", "192.0.2.4", 7),    // not this network's
        ];
        let p = plan(&wanted, &ours, &scope);
        assert!(p.add.is_empty());
        assert_eq!(p.replace, [(wanted[1], ours[1])]);
        assert_eq!(p.delete, [ours[2]]);
        assert!(plan(&wanted, &ours[..1], &scope).add == [wanted[1]]);
        assert!(plan(&wanted, &wanted.map(|w| w.route), &scope).is_empty());
        // A second route of ours to one prefix is stale.
        let twice = [wanted[0].route, route("100.96.2.0/24", "192.0.2.9", 7)];
        let p = plan(&wanted[..1], &twice, &scope);
        assert_eq!((p.add.len(), p.replace.len()), (0, 0));
        assert_eq!(p.delete, [twice[1]]);
    }

    #[test]
    fn withdrawn_are_the_routes_of_gone_or_moved_leases() {
        let s = parse(HOST_GW);
        let local = key("100.96.1.0-24&fd00:100:96:1::-64");
        let scope = [net("100.96.0.0/16"), net("fd00:100:96::/48")];
        let ours = [
            route("100.96.2.0/24", "192.0.2.2", 7),        // kept
            route("fd00:100:96:2::/64", "2001:db8::2", 7), // kept
            route("100.96.3.0/24", "192.0.2.3", 7),        // lease 3 is at 198.51.100.3
            route("100.96.4.0/24", "192.0.2.4", 7),        // no lease
            route("fd00:100:96:3::/64", "2001:db8::3", 7), // lease 3 has no PublicIPv6
            route("100.96.1.0/24", "192.0.2.1", 7),        // our own subnet
            route("10.9.0.0/16", "192.0.2.4", 7),          // not this network's
        ];
        let gone = withdrawn(&s.leases, &local, &ours, &scope);
        assert_eq!(gone, [ours[2], ours[3], ours[4], ours[5]]);
    }

    #[test]
    fn reachability_from_the_kernels_answer() {
        let l = |gateway: Option<&str>, oif, unicast| {
            Ok(Lookup {
                oif: Some(oif),
                gateway: gateway.map(ip),
                src: None,
                unicast,
            })
        };
        assert_eq!(reach_of(&l(None, 7, true), 7, "eth0"), Reach::Direct);
        let Reach::Indirect(why) = reach_of(&l(Some("192.0.2.254"), 7, true), 7, "eth0") else {
            panic!("via a gateway is not direct");
        };
        assert!(why.contains("192.0.2.254"), "{why}");
        assert!(
            matches!(reach_of(&l(None, 8, true), 7, "eth0"), Reach::Indirect(w) if w.contains("eth0"))
        );
        assert!(matches!(
            reach_of(&l(None, 7, false), 7, "eth0"),
            Reach::Indirect(_)
        ));
        let unreachable = Err(io::Error::from_raw_os_error(libc::ENETUNREACH));
        assert!(
            matches!(reach_of(&unreachable, 7, "eth0"), Reach::Indirect(w) if w.contains("no route"))
        );
    }

    #[test]
    fn stats_print_as_one_line() {
        let s = RouteStats {
            routes: 2,
            unreachable: 1,
            ..RouteStats::default()
        };
        let line = s.to_string();
        assert!(line.starts_with("routes=2 "), "{line}");
        assert!(line.contains(" unreachable=1 "), "{line}");
        assert!(!line.contains('\n'));
    }
}
