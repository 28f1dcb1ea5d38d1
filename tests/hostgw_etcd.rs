//! The host-gw backend with its leases from a real etcd: three hosts on one switch,
//! etcd in its own namespace on that switch (192.0.2.254:2379), and `ringlay run
//! --etcd-endpoints` on each host (see tests/etcd_cluster.rs for the same cluster
//! over the tunnel backends). `host_gw_over_etcd` checks, in order:
//!
//! - the three nodes acquire distinct subnets and write the lease value flanneld's
//!   host-gw backend writes (`{"PublicIP":…,"PublicIPv6":null,"BackendType":"host-gw"}`);
//!   each host has `<subnet> via <PublicIP> dev eth0 proto 114` for the other two
//!   and none for its own, and every container pair reaches each other (IPv4);
//! - a lease added in etcd for a peer on the segment (a bare namespace at
//!   192.0.2.9) gets its route on every host within seconds, and the peer answers
//!   through it; on a host where a foreign route to that very prefix exists, the
//!   foreign route stays and ringlay says so;
//! - that lease deleted in etcd: its route goes within seconds (the foreign one
//!   stays); a node killed with SIGKILL and its lease deleted in etcd: its routes
//!   go on the others, which still reach each other;
//! - a route deleted by hand comes back at the next reconcile (≤ 11 s), from the
//!   last lease set etcd gave: the withdrawn peers stay withdrawn;
//! - after SIGTERM a node's proto-114 routes are gone and a foreign route inside
//!   the cluster network is still there.
//!
//! Needs root, etcd and etcdctl (skips with a printed reason otherwise; fails
//! under `CI=true`). Loads are counted pings only. Runtime: about 15 s.
//!
//! Run: `cargo test --test hostgw_etcd`.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::cluster::{acquired_subnet, etcd_on_switch, PREFIX};
use common::etcd::require_etcd;
use common::netns::{eventually, require_root, Cluster, Daemon, Netns};

/// A fake peer on the segment: a namespace with only an underlay address.
const PEER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);
/// How long a lease change in etcd may take to reach the routing table.
const LEASE_CHANGE_WITHIN: Duration = Duration::from_secs(3);
/// How long a route deleted by hand may stay missing: the reconcile interval
/// (10 s) and a second of slack.
const RESTORE_WITHIN: Duration = Duration::from_secs(11);

/// The value flanneld's host-gw backend writes for an IPv4 node at `ip`.
fn flannel_host_gw_lease(ip: Ipv4Addr) -> String {
    format!(r#"{{"PublicIP":"{ip}","PublicIPv6":null,"BackendType":"host-gw"}}"#)
}

fn lease_key(net: Ipv4Addr) -> String {
    format!("{PREFIX}/subnets/{net}-24")
}

/// `ip -4 route show` on host i.
fn routes(c: &Cluster, i: usize) -> String {
    c.host(i).sh("ip -4 route show")
}

/// ringlay's route to `net` via `via`, as `ip route show` prints it.
fn our_route(net: Ipv4Addr, via: Ipv4Addr) -> String {
    format!("{net}/24 via {via} dev eth0 proto 114")
}

/// A /24 of the cluster network that none of `taken` is.
fn free_subnet(taken: &[Ipv4Addr]) -> Ipv4Addr {
    (200..=250)
        .map(|k| Ipv4Addr::new(100, 96, k, 0))
        .find(|n| !taken.contains(n))
        .expect("a free /24")
}

#[test]
fn host_gw_over_etcd() {
    if !require_root("host_gw_over_etcd") || !require_etcd("host_gw_over_etcd") {
        return;
    }
    let c = Cluster::hosts("hge", 3);
    let (_etcd_ns, e) = etcd_on_switch(
        &c,
        "hge",
        r#"{"Network":"100.96.0.0/16","Backend":{"Type":"host-gw"}}"#,
    );

    let mut d: Vec<Daemon> = Vec::new();
    let mut nets = Vec::new();
    let mut addrs = Vec::new();
    for i in 1..=3 {
        let daemon = c.ringlay_etcd(i, e.endpoint(), &[]);
        let net = acquired_subnet(&daemon);
        addrs.push(c.readdress_container(i, net));
        nets.push(net);
        d.push(daemon);
    }
    let (mut sorted, n) = (nets.clone(), nets.len());
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), n, "subnets not distinct: {nets:?}");
    // Nothing is added to a packet: the overlay MTU is eth0's.
    let env = std::fs::read_to_string(d[0].subnet_file()).expect("subnet.env");
    assert!(env.contains("FLANNEL_MTU=1500\n"), "{env}");
    for i in 1..=3 {
        c.set_container_mtu(i, 1500);
    }

    // The lease values are flanneld's host-gw values.
    for i in 1..=3 {
        assert_eq!(
            e.get(&lease_key(nets[i - 1])),
            Some(flannel_host_gw_lease(c.underlay_ip(i))),
            "host {i}'s lease"
        );
    }

    // Each host routes the other two subnets via their PublicIPs, not its own.
    for i in 1..=3 {
        let all = || {
            let r = routes(&c, i);
            (1..=3)
                .filter(|&j| j != i)
                .all(|j| r.contains(&our_route(nets[j - 1], c.underlay_ip(j))))
        };
        assert!(
            eventually(LEASE_CHANGE_WITHIN, all),
            "host {i}:\n{}\n{}",
            routes(&c, i),
            d[i - 1].log()
        );
        let own = c
            .host(i)
            .sh(&format!("ip -4 route show {}/24", nets[i - 1]));
        assert!(!own.contains("proto 114"), "host {i}: {own}");
    }
    let mut failed = Vec::new();
    for from in 1..=3 {
        for to in (1..=3).filter(|&t| t != from) {
            if !c.ping(from, IpAddr::V4(addrs[to - 1]), 2) {
                failed.push(format!("c{from} -> c{to} ({})", addrs[to - 1]));
            }
        }
    }
    assert!(failed.is_empty(), "no reply: {failed:?}");

    // A peer on the segment whose lease is added in etcd. Host 2 has a foreign
    // route to its very prefix; host 1 one to another prefix of the network.
    let peer_net = free_subnet(&nets);
    let mut taken = nets.clone();
    taken.push(peer_net);
    let foreign_net = free_subnet(&taken);
    let peer = Netns::new("hge-peer");
    c.attach_to_switch(&peer, PEER_IP);
    let peer_addr = Ipv4Addr::from(u32::from(peer_net) + 1);
    peer.sh(&format!("ip addr add {peer_addr}/32 dev eth0"));
    c.host(2).sh(&format!(
        "ip route add {peer_net}/24 via {PEER_IP} proto static"
    ));
    let foreign = format!("{foreign_net}/24 via 192.0.2.2 dev eth0 proto static");
    c.host(1).sh(&format!(
        "ip route add {foreign_net}/24 via 192.0.2.2 proto static"
    ));
    let mark2 = d[1].log().len();
    e.put(&lease_key(peer_net), &flannel_host_gw_lease(PEER_IP));
    for i in [1, 3] {
        assert!(
            eventually(LEASE_CHANGE_WITHIN, || routes(&c, i)
                .contains(&our_route(peer_net, PEER_IP))),
            "host {i}: no route to the added lease:\n{}\n{}",
            routes(&c, i),
            d[i - 1].log()
        );
    }
    let in_the_way = format!("a route to {peer_net}/24 that ringlay did not install is in the way");
    assert!(
        d[1].wait_log(&in_the_way, mark2, LEASE_CHANGE_WITHIN),
        "{}",
        d[1].log()
    );
    let r2 = c.host(2).sh(&format!("ip -4 route show {peer_net}/24"));
    assert!(
        r2.contains("proto static") && !r2.contains("proto 114"),
        "{r2}"
    );
    let addr_s = peer_addr.to_string();
    let out = c.host(1).exec(&[
        "timeout", "5", "ping", "-4", "-n", "-q", "-c", "2", "-W", "1", "-i", "0.2", &addr_s,
    ]);
    assert!(out.status.success(), "host 1 -> the added peer {peer_addr}");

    // The lease deleted in etcd: its route goes; the foreign one on host 2 stays.
    e.del(&lease_key(peer_net));
    for i in [1, 3] {
        assert!(
            eventually(LEASE_CHANGE_WITHIN, || !routes(&c, i)
                .contains(&format!("{peer_net}/24"))),
            "host {i}: the deleted lease's route stayed:\n{}\n{}",
            routes(&c, i),
            d[i - 1].log()
        );
    }
    let r2 = c.host(2).sh(&format!("ip -4 route show {peer_net}/24"));
    assert!(r2.contains("proto static"), "{r2}");

    // Node 3 crashes (it cannot re-create its lease) and its lease is deleted.
    let status = d[2].kill();
    assert!(!status.success(), "{status}");
    e.del(&lease_key(nets[2]));
    for i in [1, 2] {
        assert!(
            eventually(LEASE_CHANGE_WITHIN, || !routes(&c, i)
                .contains(&format!("{}/24", nets[2]))),
            "host {i}: the dead node's route stayed:\n{}\n{}",
            routes(&c, i),
            d[i - 1].log()
        );
        assert!(
            routes(&c, i).contains(&our_route(nets[2 - i], c.underlay_ip(3 - i))),
            "host {i} lost the route to the live node:\n{}",
            routes(&c, i)
        );
    }
    assert!(c.ping(1, IpAddr::V4(addrs[1]), 2), "c1 -> c2");
    assert!(c.ping(2, IpAddr::V4(addrs[0]), 2), "c2 -> c1");

    // A route deleted by hand comes back at the next reconcile, from the last
    // lease set: the withdrawn ones stay away.
    let mark1 = d[0].log().len();
    let deleted = Instant::now();
    c.host(1).sh(&format!("ip route del {}/24", nets[1]));
    let restored = format!("reconcile: route restored: {}/24 via 192.0.2.2", nets[1]);
    assert!(
        d[0].wait_log(&restored, mark1, RESTORE_WITHIN),
        "{}",
        d[0].log()
    );
    println!(
        "route deleted by hand restored after {:?}",
        deleted.elapsed()
    );
    let r1 = routes(&c, 1);
    assert!(r1.contains(&our_route(nets[1], c.underlay_ip(2))), "{r1}");
    assert!(!r1.contains(&format!("{}/24", nets[2])), "{r1}");
    assert!(!r1.contains(&format!("{peer_net}/24")), "{r1}");
    assert!(c.ping(1, IpAddr::V4(addrs[1]), 2), "c1 -> c2 after restore");

    // SIGTERM: ringlay's routes go, the foreign ones stay.
    for i in [1, 2] {
        let status = d[i - 1].terminate();
        assert!(status.success(), "{status}\n{}", d[i - 1].log());
        let ours = c.host(i).sh("ip -4 route show proto 114");
        assert_eq!(ours.trim(), "", "host {i}: routes left behind");
    }
    assert!(routes(&c, 1).contains(&foreign), "{}", routes(&c, 1));
    let r2 = c.host(2).sh(&format!("ip -4 route show {peer_net}/24"));
    assert!(
        r2.contains("proto static"),
        "the foreign route went on exit: {r2}"
    );
}
