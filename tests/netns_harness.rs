//! The network-namespace harness (tests/common/netns.rs) builds the testbed it
//! promises, with the kernel alone as the forwarding engine: flannel's vxlan
//! backend (the kernel's vxlan device) on every host carries container traffic
//! between hosts, and the guards leave no namespace and no process behind. The
//! dual-stack and IPv6-only underlays are proven the same way: flanneld-style
//! `flannel.1` + `flannel-v6.1` nodes carry inner IPv4 over the IPv4 underlay and
//! inner IPv6 over the IPv6 one (nftables counters on the hosts show which).
//!
//! Needs root; skips with a printed reason otherwise, and fails instead under CI
//! (`CI=true`). The leases-file test needs nothing.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use common::netns::{self, Cluster, Netns, Underlay, VxlanLease};
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

// --- IPv6 underlays, kernel only -----------------------------------------------------

/// Bytes (and packets) that counter `name` moved between two readings.
fn moved(
    before: &BTreeMap<String, (u64, u64)>,
    after: &BTreeMap<String, (u64, u64)>,
    name: &str,
) -> (u64, u64) {
    let b = before.get(name).copied().unwrap_or((0, 0));
    let a = after
        .get(name)
        .copied()
        .unwrap_or_else(|| panic!("no counter {name}: {after:?}"));
    (a.0 - b.0, a.1 - b.1)
}

/// 2 MiB over TCP each way between containers 1 and 2 at `ip1` / `ip2`.
fn tcp_both_ways(c: &Cluster, ip1: IpAddr, ip2: IpAddr) {
    assert!(
        c.tcp_transfer_intact(2, ip2, 1, 2 << 20),
        "TCP c1 -> c2 ({ip2})"
    );
    assert!(
        c.tcp_transfer_intact(1, ip1, 2, 2 << 20),
        "TCP c2 -> c1 ({ip1})"
    );
}

#[test]
fn dual_stack_kernel_vxlan_nodes_carry_v4_over_v4_and_v6_over_v6() {
    if !netns::require_root("dual_stack_kernel_vxlan") {
        return;
    }
    let c = Cluster::dual_stack("nhds", 2);
    assert_eq!(c.underlay(), Underlay::Dual);
    assert_eq!(
        c.namespace_names().len(),
        5,
        "two hosts, two containers, a switch"
    );
    let eth0 = c.host(1).sh("ip -o addr show dev eth0");
    assert!(eth0.contains("inet 192.0.2.1/24"), "{eth0}");
    assert!(eth0.contains("inet6 2001:db8::1/64"), "{eth0}");
    let (ip4_1, ip4_2): (IpAddr, IpAddr) = (c.container_ip(1).into(), c.container_ip(2).into());
    let (ip6_1, ip6_2): (IpAddr, IpAddr) = (c.container_ip6(1).into(), c.container_ip6(2).into());
    assert!(!c.ping(1, ip6_2, 1), "no route yet");

    c.kernel_vxlan_node_dual(1);
    c.kernel_vxlan_node_dual(2);
    // The devices as flanneld leaves them: its VNI, port, MACs, the kernel's MTU
    // cap for an IPv6 underlay, and the kernel's checksum defaults.
    let v6dev = c.host(1).sh("ip -d -o link show flannel-v6.1");
    eprintln!("host 1: {v6dev}");
    for want in [
        "mtu 1430 ",
        &netns::vtep_mac6(1),
        "vxlan id 1 local 2001:db8::1 dev eth0",
        "dstport 8472",
        "nolearning",
    ] {
        assert!(v6dev.contains(want), "flannel-v6.1 lacks {want:?}: {v6dev}");
    }
    assert!(
        !v6dev.contains(" udp6zerocsumtx"),
        "zero UDP checksums over IPv6: {v6dev}"
    );
    let v4dev = c.host(1).sh("ip -d -o link show flannel.1");
    assert!(
        v4dev.contains("mtu 1450 ") && v4dev.contains(&netns::vtep_mac(1)),
        "{v4dev}"
    );
    assert!(
        c.host(1)
            .sh("ip -6 -o addr show dev flannel-v6.1")
            .contains("fd00:100:96:1::/128"),
        "flannel-v6.1 holds its subnet's network address"
    );

    for i in 1..=2 {
        c.count_underlay_sends(i, 8472);
    }

    // Inner IPv6: the IPv6 underlay only.
    let before = [c.underlay_sends(1), c.underlay_sends(2)];
    let frags = [c.ip6_frag_creates(1), c.ip6_frag_creates(2)];
    // flannel-v6.1's 1430, DF: 1430 − 40 − 8 data bytes cross whole.
    let df = c.container(1).exec(&[
        "timeout",
        "10",
        "ping",
        "-6",
        "-n",
        "-c",
        "2",
        "-W",
        "2",
        "-M",
        "do",
        "-s",
        "1382",
        "fd00:100:96:2::2",
    ]);
    assert!(df.status.success(), "DF ping at 1430: {df:?}");
    assert!(c.ping(1, ip6_2, 3), "c1 -> c2 v6");
    assert!(c.ping(2, ip6_1, 3), "c2 -> c1 v6");
    tcp_both_ways(&c, ip6_1, ip6_2);
    let gbps = c.iperf3_to_ip(2, ip6_2, 1, 2, 1);
    eprintln!("kernel vxlan over IPv6, iperf3 -6 c1 -> c2, 2 s: {gbps:.2} Gbit/s");
    assert!(gbps > 0.05, "{gbps} Gbit/s");
    let after = [c.underlay_sends(1), c.underlay_sends(2)];
    for (i, peer) in [(1, 2), (2, 1)] {
        let v6 = moved(&before[i - 1], &after[i - 1], &format!("v6_{peer}"));
        let v4 = moved(&before[i - 1], &after[i - 1], &format!("v4_{peer}"));
        eprintln!("host {i} -> {peer} during inner IPv6: v6 underlay {v6:?}, v4 underlay {v4:?}");
        assert!(
            v6.1 > 2 << 20,
            "host {i}: inner IPv6 not over the IPv6 underlay: {v6:?}"
        );
        assert_eq!(v4.0, 0, "host {i}: inner IPv6 over the IPv4 underlay");
    }

    for i in 1..=2 {
        assert_eq!(
            c.ip6_frag_creates(i),
            frags[i - 1],
            "host {i} fragmented on the IPv6 underlay"
        );
    }

    // Inner IPv4: the IPv4 underlay only.
    let before = [c.underlay_sends(1), c.underlay_sends(2)];
    assert!(c.ping(1, ip4_2, 3), "c1 -> c2 v4");
    assert!(c.ping(2, ip4_1, 3), "c2 -> c1 v4");
    tcp_both_ways(&c, ip4_1, ip4_2);
    let after = [c.underlay_sends(1), c.underlay_sends(2)];
    for (i, peer) in [(1, 2), (2, 1)] {
        let v6 = moved(&before[i - 1], &after[i - 1], &format!("v6_{peer}"));
        let v4 = moved(&before[i - 1], &after[i - 1], &format!("v4_{peer}"));
        eprintln!("host {i} -> {peer} during inner IPv4: v4 underlay {v4:?}, v6 underlay {v6:?}");
        assert!(
            v4.1 > 2 << 20,
            "host {i}: inner IPv4 not over the IPv4 underlay: {v4:?}"
        );
        assert_eq!(v6.0, 0, "host {i}: inner IPv4 over the IPv6 underlay");
    }
}

#[test]
fn ipv6_only_kernel_vxlan_nodes_carry_v6() {
    if !netns::require_root("ipv6_only_kernel_vxlan") {
        return;
    }
    let c = Cluster::ipv6_only("nh6o", 2);
    for i in 1..=2 {
        let v4 = c.host(i).sh("ip -4 -o addr show dev eth0");
        assert!(v4.trim().is_empty(), "host {i} eth0 has IPv4: {v4}");
        let v4 = c.container(i).sh("ip -4 -o addr show dev eth0");
        assert!(v4.trim().is_empty(), "container {i} has IPv4: {v4}");
        c.kernel_vxlan_node_dual(i);
        let links = c.host(i).sh("ip -o link show");
        assert!(
            links.contains("flannel-v6.1") && !links.contains("flannel.1:"),
            "{links}"
        );
        c.count_underlay_sends(i, 8472);
    }
    let (ip6_1, ip6_2): (IpAddr, IpAddr) = (c.container_ip6(1).into(), c.container_ip6(2).into());
    assert!(c.ping(1, ip6_2, 3), "c1 -> c2");
    assert!(c.ping(2, ip6_1, 3), "c2 -> c1");
    tcp_both_ways(&c, ip6_1, ip6_2);
    let sent = c.underlay_sends(1);
    assert!(sent["v6_2"].1 > 2 << 20, "{sent:?}");
    assert!(!sent.contains_key("v4_2"), "{sent:?}");
}

#[test]
fn vxlan_lease_keys_and_values_are_flanneld_s_and_ringlay_reads_them() {
    let dual = VxlanLease::of_host(2, Underlay::Dual);
    assert_eq!(dual.key(), "100.96.2.0-24&fd00:100:96:2::-64");
    assert_eq!(
        dual.flannel_value(),
        r#"{"PublicIP":"192.0.2.2","PublicIPv6":"2001:db8::2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:02:00"},"BackendV6Data":{"VNI":1,"VtepMAC":"0e:00:00:06:02:00"}}"#
    );
    let v6 = VxlanLease::of_host(3, Underlay::V6Only);
    assert_eq!(v6.key(), "0.0.0.0-0&fd00:100:96:3::-64");
    assert_eq!(
        v6.flannel_value(),
        r#"{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::3","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"0e:00:00:06:03:00"}}"#
    );
    let v4 = VxlanLease::of_host(1, Underlay::V4);
    assert_eq!(v4.key(), "100.96.1.0-24");
    assert!(v4.flannel_value().contains(r#""PublicIPv6":null"#));
    for l in [&dual, &v6, &v4] {
        let key: SubnetKey = l.key().parse().expect("ringlay reads the key");
        let attrs =
            LeaseAttrs::parse(l.flannel_value().as_bytes()).expect("ringlay reads the value");
        assert_eq!(key.v6.is_some(), l.v6.is_some(), "{}", l.key());
        assert_eq!(attrs.public_ipv6, l.v6.as_ref().map(|h| h.public_ip));
        assert_eq!(
            attrs.backend_v6_data.map(|d| d.vtep_mac.to_string()),
            l.v6.as_ref().map(|h| h.vtep_mac.clone())
        );
    }
    let text = "table inet ringlay_test {\n\tcounter v4_2 {\n\t\tpackets 3 bytes 252\n\t}\n\tcounter v6_2 {\n\t\tpackets 0 bytes 0\n\t}\n}\n";
    let m = netns::parse_nft_counters(text);
    assert_eq!(m["v4_2"], (3, 252));
    assert_eq!(m["v6_2"], (0, 0));
}

#[test]
fn dual_stack_kernel_nodes_configured_from_etcd() {
    if !netns::require_root("dual_stack_kernel_etcd")
        || !common::etcd::require_etcd("dual_stack_kernel_etcd")
    {
        return;
    }
    use common::cluster::{self, PREFIX};
    let c = Cluster::dual_stack("nhde", 2);
    let (_ns, e) = cluster::etcd_on_switch_at(
        &c,
        "nhde",
        cluster::ETCD_IP6.into(),
        &cluster::dual_config("vxlan"),
    );
    let own: Vec<VxlanLease> = (1..=2)
        .map(|i| VxlanLease::of_host(i, Underlay::Dual))
        .collect();
    cluster::put_flannel_lease(&e, &own[0]);
    cluster::put_flannel_lease(&e, &own[1]);
    // Read back as flanneld reads them.
    let read = cluster::vxlan_leases(&e);
    assert_eq!(read.len(), 2, "{read:?}");
    for (key, lease) in &read {
        let want = own.iter().find(|l| l.key() == *key).expect("one of ours");
        assert_eq!(lease, want);
    }
    assert_eq!(
        e.get(&format!("{PREFIX}/subnets/{}", own[1].key()))
            .as_deref(),
        Some(own[1].flannel_value().as_str())
    );
    for i in 1..=2 {
        assert_eq!(
            cluster::kernel_vxlan_node_dual_etcd(&c, &e, i, &own[i - 1]),
            1
        );
    }
    for (from, to) in [(1, 2), (2, 1)] {
        assert!(
            c.ping(from, c.container_ip(to).into(), 2),
            "c{from} -> c{to} v4"
        );
        assert!(
            c.ping(from, c.container_ip6(to).into(), 2),
            "c{from} -> c{to} v6"
        );
    }
}
