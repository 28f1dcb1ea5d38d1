//! The network-namespace harness (tests/common/netns.rs) builds the testbed it
//! promises, with the kernel alone as the forwarding engine: flannel's vxlan
//! backend (the kernel's vxlan device) on every host carries container traffic
//! between hosts, and the guards leave no namespace and no process behind.
//!
//! Needs root; skips with a printed reason otherwise, and fails instead under CI
//! (`CI=true`). The leases-file test needs nothing.

mod common;

use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use common::netns::{self, Cluster, Netns};
use ringlay::config::{LeaseAttrs, NetworkConfig, SubnetKey};

/// Names `ip netns list` shows now.
fn netns_list() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// State letter of `pid` from /proc, if it still exists.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

#[test]
fn two_hosts_kernel_vxlan_carries_ping_and_iperf3_and_cleans_up() {
    if !netns::require_root("two_hosts_kernel_vxlan") {
        return;
    }
    let names;
    let mut sleeper;
    {
        let c = Cluster::two_hosts("nh2");
        names = c.namespace_names();
        assert_eq!(names.len(), 4);
        let listed = netns_list();
        for n in &names {
            assert!(listed.contains(n), "{n} not in {listed:?}");
        }

        // Not yet a flannel node: the hosts have no route to the other subnet.
        assert!(!c.ping(1, c.container_ip(2).into(), 1));

        c.kernel_vxlan_node(1);
        c.kernel_vxlan_node(2);
        let mac = c.host(1).sh("cat /sys/class/net/flannel.1/address");
        assert_eq!(mac.trim(), netns::vtep_mac(1));

        assert!(c.ping(1, c.container_ip(2).into(), 3), "c1 -> c2");
        assert!(c.ping(2, c.container_ip(1).into(), 3), "c2 -> c1");
        assert!(c.ping(1, IpAddr::V6(c.container_ip6(2)), 3), "c1 -> c2 v6");
        assert!(c.ping(2, IpAddr::V6(c.container_ip6(1)), 3), "c2 -> c1 v6");

        let gbps = c.iperf3(2, 1, 2, 1);
        eprintln!("kernel vxlan, iperf3 c1 -> c2, 2 s, 1 stream: {gbps:.2} Gbit/s");
        assert!(gbps > 0.05, "{gbps} Gbit/s");

        // The traffic really went through the tunnel.
        let tx = c
            .host(1)
            .sh("cat /sys/class/net/flannel.1/statistics/tx_packets");
        assert!(tx.trim().parse::<u64>().expect("counter") > 1000, "{tx}");

        // A process left running is ended by the guard.
        sleeper = c.host(1).spawn(&["sleep", "30"]);
        assert_eq!(proc_state(sleeper.id()).map(|s| s != 'Z'), Some(true));
    }
    let listed = netns_list();
    for n in &names {
        assert!(!listed.contains(n), "{n} left behind: {listed:?}");
    }
    // Ended by SIGTERM, and only waiting to be reaped.
    assert_eq!(proc_state(sleeper.id()), Some('Z'), "sleep still running");
    let status = sleeper.wait().expect("wait for sleep");
    assert_eq!(status.signal(), Some(15), "{status}");
}

#[test]
fn three_hosts_on_a_switch_kernel_vxlan_mesh() {
    if !netns::require_root("three_hosts_kernel_vxlan") {
        return;
    }
    let c = Cluster::hosts("nh3", 3);
    assert_eq!(c.namespace_names().len(), 7);
    for i in 1..=3 {
        c.kernel_vxlan_node(i);
    }
    for from in 1..=3 {
        for to in (1..=3).filter(|&to| to != from) {
            assert!(
                c.ping(from, c.container_ip(to).into(), 2),
                "c{from} -> c{to}"
            );
        }
    }
    assert!(c.ping(3, IpAddr::V6(c.container_ip6(1)), 2), "c3 -> c1 v6");
}

#[test]
fn netns_guard_runs_commands_and_deletes_itself() {
    if !netns::require_root("netns_guard") {
        return;
    }
    let name;
    {
        let ns = Netns::new("nhg");
        name = ns.name().to_owned();
        assert!(name.starts_with(&format!("nhg-{}-", std::process::id())));
        assert!(ns.sh("ip -o link show lo").contains("UP"));
        let out = ns.exec(&["sh", "-c", "echo out; echo err >&2; exit 3"]);
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
        let failed = std::panic::catch_unwind(|| ns.sh("false"));
        assert!(failed.is_err(), "sh panics on failure");
    }
    assert!(!netns_list().contains(&name));
}

#[test]
fn static_leases_parse_as_flannel_config_and_leases() {
    for (backend, vteps) in [("vxlan", true), ("udp", false)] {
        let text = netns::static_leases_json(3, backend, vteps);
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let config = serde_json::to_string(&v["config"]).unwrap();
        let parsed = NetworkConfig::parse(&config).expect("flannel network config");
        let ipv4 = parsed.ipv4.expect("IPv4 network");
        assert_eq!(ipv4.network.to_string(), netns::NETWORK);
        assert_eq!(ipv4.subnet_len, 24);
        assert_eq!(parsed.backend.backend_type().to_string(), backend);
        let subnets = v["subnets"].as_object().expect("subnets object");
        assert_eq!(subnets.len(), 3);
        for i in 1..=3 {
            let key = format!("100.96.{i}.0-24");
            key.parse::<SubnetKey>().expect("subnet key");
            let lease = serde_json::to_vec(&subnets[&key]).unwrap();
            LeaseAttrs::parse(&lease).expect("lease value");
            assert_eq!(subnets[&key]["PublicIP"], format!("192.0.2.{i}"));
            if vteps {
                assert_eq!(subnets[&key]["BackendType"], "vxlan");
                assert_eq!(
                    subnets[&key]["BackendData"]["VtepMAC"],
                    format!("0e:00:00:00:0{i}:00")
                );
                assert_eq!(subnets[&key]["BackendData"]["VNI"], 1);
            } else {
                assert!(subnets[&key]["PublicIPv6"].is_null());
            }
        }
    }
}

#[test]
fn iperf3_json_sum_received_is_read() {
    let json = r#"{"start": {}, "intervals": [{"sum": {"bits_per_second": 1}}],
        "end": {"streams": [], "sum_sent": {"bits_per_second": 9.5e9},
                "sum_received": {"seconds": 2.0, "bits_per_second": 9.25e9, "sender": false}}}"#;
    assert_eq!(netns::sum_received_bps(json), Some(9.25e9));
    assert_eq!(
        netns::sum_received_bps(r#"{"error": "unable to connect"}"#),
        None
    );
}
