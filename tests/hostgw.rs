//! Routes instead of a tunnel, in network namespaces (tests/common/netns.rs):
//!
//! - `host_gw_three_hosts`: the host-gw backend on three hosts of one L2 segment,
//!   dual stack. Every container pair reaches each other over IPv4 and IPv6; a
//!   peer whose PublicIP is behind a gateway gets no route, an error and a count;
//!   a route deleted by hand comes back within the reconcile interval (10 s); a
//!   lease removed from the file (+ SIGHUP) takes its routes with it; a foreign
//!   route inside the network is left alone, also on exit, when ringlay removes
//!   its own; a foreign route to a lease's very prefix stays in place of ours.
//! - `direct_routing_mixed_topology` (vxlan) and `…_udp`: DirectRouting on hosts
//!   1 and 2 (one L2 segment) and host 3 behind a router. Hosts 1 and 2 route to
//!   each other directly (the route is there, and no tunnel datagram passes
//!   between them); host 3 is reached through the tunnel; with the direct route
//!   deleted, the tunnel carries the direct peers' traffic.
//!
//! Leases come from the static leases file; a subnet manager's watch drives the
//! same reconciler with its lease set.
//!
//! Needs root (skips with a printed reason otherwise; fails under `CI=true`).
//! Loads are counted pings only. Runtime: about 20 s with two test threads.
//!
//! Run: `cargo test --test hostgw -- --test-threads=2`.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::time::Duration;

use common::netns::{self, eventually, replace_file, Cluster, Daemon};

/// ringlay's route protocol number, as `ip route show proto` takes it.
const PROTO: &str = "114";
/// How long a route deleted by hand may stay missing: the reconcile interval
/// (10 s) and some slack for a loaded machine.
const RESTORE_WITHIN: Duration = Duration::from_secs(13);

/// `ip [-6] route show proto 114` on host i, one route per line.
fn our_routes(c: &Cluster, i: usize, v6: bool) -> String {
    let family = if v6 { "-6" } else { "-4" };
    c.host(i)
        .sh(&format!("ip {family} route show proto {PROTO}"))
}

/// A dual-stack host-gw leases file for `hosts` (lease
/// `100.96.i.0-24&fd00:100:96:i::-64`, PublicIP 192.0.2.i, PublicIPv6
/// 2001:db8::i), plus lease 9 at 203.0.113.9 / 2001:db8:9::9, off the segment.
fn host_gw_leases(hosts: &[usize]) -> String {
    let mut leases: Vec<String> = hosts
        .iter()
        .map(|&i| {
            format!(
                r#"    "100.96.{i}.0-24&fd00:100:96:{i}::-64": {{"PublicIP": "{}", "PublicIPv6": "2001:db8::{i}", "BackendType": "host-gw"}}"#,
                netns::underlay_ip(i)
            )
        })
        .collect();
    leases.push(
        r#"    "100.96.9.0-24&fd00:100:96:9::-64": {"PublicIP": "203.0.113.9", "PublicIPv6": "2001:db8:9::9", "BackendType": "host-gw"}"#
            .to_owned(),
    );
    format!(
        "{{\"config\": {{\"Network\": \"{}\", \"EnableIPv6\": true, \"IPv6Network\": \"fd00:100:96::/48\", \"Backend\": {{\"Type\": \"host-gw\"}}}},\n \"subnets\": {{\n{}\n }}}}\n",
        netns::NETWORK,
        leases.join(",\n")
    )
}

/// The value of `name=` in the last `route counters:` line of the log.
fn route_counter(d: &Daemon, name: &str) -> Option<u64> {
    let log = d.log();
    let line = log.lines().rev().find(|l| l.contains("route counters:"))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
}

#[test]
fn host_gw_three_hosts() {
    if !netns::require_root("host_gw_three_hosts") {
        return;
    }
    let c = Cluster::hosts("hgw", 3);
    for i in 1..=3 {
        c.host(i)
            .sh(&format!("ip addr add 2001:db8::{i}/64 dev eth0 nodad"));
    }
    // Host 1 reaches lease 9's address through host 3 as a gateway: not on the
    // segment. Hosts 2 and 3 have no route to it at all.
    c.host(1).sh("ip route add 203.0.113.0/24 via 192.0.2.3
         ip route add 100.96.200.0/24 via 192.0.2.2 proto static");
    let foreign = "100.96.200.0/24 via 192.0.2.2";
    // Host 2 has a foreign route to lease 3's very prefix: it stays in place of ours.
    c.host(2)
        .sh("ip route add 100.96.3.0/24 via 192.0.2.3 proto static");

    let all = host_gw_leases(&[1, 2, 3]);
    let mut d: Vec<Daemon> = (1..=3).map(|i| c.ringlay(i, &all, &[])).collect();

    // subnet.env: nothing is added to a packet, so the overlay MTU is eth0's.
    let env = fs::read_to_string(d[0].subnet_file()).expect("subnet.env written");
    assert!(env.contains("FLANNEL_MTU=1500\n"), "{env}");
    for i in 1..=3 {
        c.set_container_mtu(i, 1500);
    }

    let v4 = our_routes(&c, 1, false);
    assert!(v4.contains("100.96.2.0/24 via 192.0.2.2 dev eth0"), "{v4}");
    assert!(v4.contains("100.96.3.0/24 via 192.0.2.3 dev eth0"), "{v4}");
    assert!(!v4.contains("100.96.9.0"), "no route via a gateway: {v4}");
    assert!(
        !v4.contains("100.96.1.0"),
        "no route to our own subnet: {v4}"
    );
    let v6 = our_routes(&c, 1, true);
    assert!(
        v6.contains("fd00:100:96:2::/64 via 2001:db8::2 dev eth0"),
        "{v6}"
    );
    assert!(
        v6.contains("fd00:100:96:3::/64 via 2001:db8::3 dev eth0"),
        "{v6}"
    );

    for from in 1..=3 {
        for to in (1..=3).filter(|&t| t != from) {
            assert!(
                c.ping(from, IpAddr::V4(c.container_ip(to)), 2),
                "IPv4 ping c{from} -> c{to}\n{}",
                d[from - 1].log()
            );
            assert!(
                c.ping(from, IpAddr::V6(c.container_ip6(to)), 2),
                "IPv6 ping c{from} -> c{to}\n{}",
                d[from - 1].log()
            );
        }
    }

    // The peer off the segment: one clear error naming it, and counted.
    let log = d[0].log();
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("100.96.9.0-24")
            && l.contains("203.0.113.9")
            && l.contains("not directly reachable")),
        "{log}"
    );
    let from = d[0].log().len();
    d[0].sigusr1();
    assert!(d[0].wait_log("route counters:", from, Duration::from_secs(5)));
    assert_eq!(route_counter(&d[0], "routes"), Some(4), "{}", d[0].log());
    assert_eq!(
        route_counter(&d[0], "unreachable"),
        Some(2),
        "{}",
        d[0].log()
    );

    // Host 2 left the foreign route to lease 3's prefix alone, and said so once.
    let r2 = c.host(2).sh("ip route show 100.96.3.0/24");
    assert!(r2.contains("proto static"), "{r2}");
    assert!(!our_routes(&c, 2, false).contains("100.96.3.0"));
    assert!(
        d[1].log()
            .contains("a route to 100.96.3.0/24 that ringlay did not install is in the way"),
        "{}",
        d[1].log()
    );

    // A route deleted by hand is back within the reconcile interval.
    let from = d[0].log().len();
    c.host(1).sh("ip route del 100.96.3.0/24");
    assert!(
        d[0].wait_log(
            "route restored: 100.96.3.0/24 via 192.0.2.3",
            from,
            RESTORE_WITHIN
        ),
        "{}",
        d[0].log()
    );
    assert!(our_routes(&c, 1, false).contains("100.96.3.0/24 via 192.0.2.3 dev eth0"));
    assert!(c.ping(1, IpAddr::V4(c.container_ip(3)), 2));
    // ... and said once: the next reconcile finds nothing to do.
    assert_eq!(
        d[0].log()[from..].matches("route restored").count(),
        1,
        "{}",
        d[0].log()
    );

    // A lease removed: its routes go, the others stay.
    let from = d[0].log().len();
    replace_file(&c.dir().join("leases-1.json"), &host_gw_leases(&[1, 2]));
    d[0].sighup();
    assert!(
        d[0].wait_log("route removed: 100.96.3.0/24", from, Duration::from_secs(5)),
        "{}",
        d[0].log()
    );
    assert!(eventually(Duration::from_secs(3), || {
        !our_routes(&c, 1, false).contains("100.96.3.0")
            && !our_routes(&c, 1, true).contains("fd00:100:96:3::")
    }));
    assert!(our_routes(&c, 1, false).contains("100.96.2.0/24 via 192.0.2.2"));
    assert!(!c.ping(1, IpAddr::V4(c.container_ip(3)), 1));
    assert!(c.ping(1, IpAddr::V4(c.container_ip(2)), 2));

    // The foreign route was never touched, and stays after ringlay exits.
    assert!(c.host(1).sh("ip route show").contains(foreign));
    assert!(d[0].terminate().success(), "{}", d[0].log());
    assert_eq!(our_routes(&c, 1, false).trim(), "", "routes left behind");
    assert_eq!(our_routes(&c, 1, true).trim(), "", "routes left behind");
    let left = c.host(1).sh("ip route show proto static");
    assert!(left.contains(foreign), "{left}");
    for daemon in &mut d[1..] {
        assert!(daemon.terminate().success(), "{}", daemon.log());
    }
    let r2 = c.host(2).sh("ip route show 100.96.3.0/24");
    assert!(
        r2.contains("proto static"),
        "the foreign route went on exit: {r2}"
    );
    assert_eq!(
        d[1].log().matches("is in the way").count(),
        1,
        "{}",
        d[1].log()
    );
}

/// A leases file for `backend` (udp or vxlan) with DirectRouting for hosts
/// 1..=3; host 3's PublicIP is `ip3`.
fn direct_routing_leases(backend: &str, ip3: Ipv4Addr) -> String {
    let leases: Vec<String> = (1..=3)
        .map(|i| {
            let ip = if i == 3 { ip3 } else { netns::underlay_ip(i) };
            let value = match backend {
                "vxlan" => format!(
                    r#"{{"PublicIP": "{ip}", "BackendType": "vxlan", "BackendData": {{"VNI": 1, "VtepMAC": "{}"}}}}"#,
                    netns::vtep_mac(i)
                ),
                _ => format!(r#"{{"PublicIP": "{ip}"}}"#),
            };
            format!(r#"    "100.96.{i}.0-24": {value}"#)
        })
        .collect();
    format!(
        "{{\"config\": {{\"Network\": \"{}\", \"Backend\": {{\"Type\": \"{backend}\", \"DirectRouting\": true}}}},\n \"subnets\": {{\n{}\n }}}}\n",
        netns::NETWORK,
        leases.join(",\n")
    )
}

/// Captures tunnel datagrams (UDP to or from `port`) on host 1's eth0 while
/// `traffic` runs; the capture's lines, as `tcpdump -n -r` prints them.
fn tunnel_frames_on_h1(c: &Cluster, port: u16, traffic: impl FnOnce()) -> String {
    let file = c.dir().join("h1-tunnel.pcap");
    let file_s = file.display().to_string();
    let filter = format!("udp port {port}");
    let mut cmd = c.host(1).command(&[
        "timeout", "8", "tcpdump", "-i", "eth0", "-n", "-p", "-U", "-w", &file_s, &filter,
    ]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut dump = c.host(1).spawn_command(cmd);
    // tcpdump says "listening on eth0" once the capture is open.
    let mut line = String::new();
    let stderr = dump.stderr.take().expect("piped stderr");
    let mut stderr = BufReader::new(stderr);
    stderr.read_line(&mut line).expect("tcpdump's first line");
    assert!(line.contains("listening"), "tcpdump: {line}");
    traffic();
    let status = dump.wait().expect("tcpdump ends within its timeout");
    // `timeout` ends it with SIGTERM (exit 124): that is the normal end.
    assert!(
        status.code() == Some(124) || status.success(),
        "tcpdump: {status}"
    );
    let out = c.host(1).exec(&["tcpdump", "-n", "-r", &file_s]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn direct_routing_mixed_topology() {
    if !netns::require_root("direct_routing_mixed_topology") {
        return;
    }
    mixed_topology("drx", "vxlan", 8472);
}

#[test]
fn direct_routing_mixed_topology_udp() {
    if !netns::require_root("direct_routing_mixed_topology_udp") {
        return;
    }
    mixed_topology("dru", "udp", 8285);
}

/// Hosts 1 and 2 on one segment, host 3 behind a router, `backend` with
/// DirectRouting; its tunnel runs on UDP `port`.
fn mixed_topology(prefix: &str, backend: &str, port: u16) {
    let c = Cluster::hosts(prefix, 3);
    // The switch becomes a router too: hosts 1 and 2 stay on the bridge
    // (192.0.2.0/24, router 192.0.2.254); host 3 moves to 198.51.100.0/24 on
    // the router's port p3.
    let ip3 = Ipv4Addr::new(198, 51, 100, 3);
    c.switch().sh("sysctl -qw net.ipv4.ip_forward=1
         ip addr add 192.0.2.254/24 dev br0
         ip link set p3 nomaster
         ip addr add 198.51.100.254/24 dev p3");
    c.host(3).sh(&format!(
        "ip addr flush dev eth0
         ip addr add {ip3}/24 dev eth0
         ip route add default via 198.51.100.254"
    ));
    for i in 1..=2 {
        c.host(i).sh("ip route add 198.51.100.0/24 via 192.0.2.254");
    }

    let leases = direct_routing_leases(backend, ip3);
    let args = ["--queues", "1"];
    let d1 = c.ringlay(1, &leases, &args);
    let d2 = c.ringlay(2, &leases, &args);
    let d3 = c.ringlay_at(3, ip3, &leases, &args);

    // Hosts 1 and 2: a direct route to each other, none to host 3.
    let r1 = our_routes(&c, 1, false);
    assert!(r1.contains("100.96.2.0/24 via 192.0.2.2 dev eth0"), "{r1}");
    assert!(!r1.contains("100.96.3.0"), "{r1}");
    let r2 = our_routes(&c, 2, false);
    assert!(r2.contains("100.96.1.0/24 via 192.0.2.1 dev eth0"), "{r2}");
    assert_eq!(
        our_routes(&c, 3, false).trim(),
        "",
        "host 3 has no direct peer"
    );
    assert!(
        d1.log().contains("100.96.3.0-24") && d1.log().contains("reached through the tunnel"),
        "{}",
        d1.log()
    );
    let get = c.host(1).sh("ip route get 100.96.2.2");
    assert!(get.contains("via 192.0.2.2 dev eth0"), "{get}");
    let get = c.host(1).sh("ip route get 100.96.3.2");
    assert!(get.contains("dev ringlay0"), "{get}");

    // Traffic between hosts 1 and 2 carries no tunnel datagram; to host 3 it does.
    let frames = tunnel_frames_on_h1(&c, port, || {
        // Through the tunnel first: proves the capture sees VXLAN.
        for (from, to) in [(1, 3), (3, 1)] {
            assert!(
                c.ping(from, IpAddr::V4(c.container_ip(to)), 3),
                "c{from} -> c{to} (tunnel)\n{}\n{}",
                d1.log(),
                d3.log()
            );
        }
        for (from, to) in [(1, 2), (2, 1)] {
            assert!(
                c.ping(from, IpAddr::V4(c.container_ip(to)), 3),
                "c{from} -> c{to} (direct)"
            );
        }
    });
    assert!(
        !frames.contains("192.0.2.2."),
        "{backend} tunnel between the direct peers:\n{frames}"
    );
    assert!(
        frames.contains(&format!("> 198.51.100.3.{port}")),
        "no {backend} tunnel to host 3:\n{frames}"
    );
    assert!(c.ping(2, IpAddr::V4(c.container_ip(3)), 2), "c2 -> c3");

    // Without the direct route, the tunnel carries the traffic.
    c.host(1).sh("ip route del 100.96.2.0/24 proto 114");
    assert!(
        c.ping(1, IpAddr::V4(c.container_ip(2)), 2),
        "c1 -> c2 via the tunnel"
    );
    drop((d1, d2, d3));
    assert_eq!(our_routes(&c, 2, false).trim(), "", "routes left behind");
}
