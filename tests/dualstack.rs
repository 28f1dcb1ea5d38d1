//! The IPv6 underlay end to end: real etcd on the cluster's switch, real `ringlay
//! run` daemons (ended by PID), real containers in network namespaces.
//!
//! - dual stack, vxlan and udp: every container pair pings over IPv4 and IPv6,
//!   TCP over IPv6 (and IPv4) arrives intact, and nftables counters on the hosts
//!   show inner IPv6 riding the IPv6 underlay only and inner IPv4 the IPv4 one;
//!   the leases, subnet.env and `ringlay status` carry the IPv6 half;
//! - IPv6 only (`EnableIPv4: false`, no IPv4 address on any underlay, etcd on
//!   `[2001:db8::fe]:2379`): ping and TCP, subnet.env, and the lease in etcd;
//! - interop with a flanneld dual-stack node (the kernel's `flannel.1` and
//!   `flannel-v6.1`, offloads as the kernel leaves them), both ways, both families;
//! - anti-spoofing over the IPv6 underlay: an inner source outside the sending
//!   peer's subnet, and a sender that is no peer, are dropped and counted.
//!
//! Needs root, etcd and python3 (skips with a reason otherwise; fails under
//! `CI=true`). Run one at a time on a small machine, e.g.
//! `cargo test --test dualstack vxlan_dual_stack -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv6Addr};
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::{
    counters, dual_config, etcd_on_switch_at, ipv6_only_config, join_dual,
    kernel_vxlan_node_dual_etcd, mtu_in, put_flannel_lease, status_of, Member, ETCD_IP, ETCD_IP6,
    PREFIX,
};
use common::etcd::{require_etcd, Etcd};
use common::netns::{self, require_root, Cluster, Underlay, VxlanLease};

/// What each TCP transfer carries.
const TRANSFER: usize = 4 << 20;
/// flannel's vxlan and udp ports.
const VXLAN_PORT: u16 = 8472;
const UDP_PORT: u16 = 8285;

type Sends = BTreeMap<String, (u64, u64)>;

fn can_run(test: &str) -> bool {
    require_root(test)
        && require_etcd(test)
        && netns::require_command(test, "python3", "python3")
        && netns::require_command(test, "nft", "nftables")
}

/// (packets, bytes) counter `name` moved between two readings.
fn moved(before: &Sends, after: &Sends, name: &str) -> (u64, u64) {
    let b = before.get(name).copied().unwrap_or((0, 0));
    let a = after
        .get(name)
        .copied()
        .unwrap_or_else(|| panic!("no counter {name}: {after:?}"));
    (a.0 - b.0, a.1 - b.1)
}

fn all_sends(c: &Cluster) -> Vec<Sends> {
    (1..=c.len()).map(|i| c.underlay_sends(i)).collect()
}

/// Pings every ordered pair of members at the address `addr` picks; panics
/// listing every pair without a reply.
fn ping_pairs(c: &Cluster, members: &[Member], addr: impl Fn(&Member) -> IpAddr) {
    let mut failed = Vec::new();
    for from in members {
        for to in members.iter().filter(|m| m.host != from.host) {
            let a = addr(to);
            if !c.ping(from.host, a, 3) {
                failed.push(format!("c{} -> c{} ({a})", from.host, to.host));
            }
        }
    }
    let logs: Vec<String> = members.iter().map(|m| m.daemon.log()).collect();
    assert!(
        failed.is_empty(),
        "no reply: {failed:?}\n{}",
        logs.join("\n---\n")
    );
}

/// The lease values in etcd, by key (the part after `subnets/`).
fn leases(e: &Etcd) -> BTreeMap<String, serde_json::Value> {
    e.get_prefix(&format!("{PREFIX}/subnets/"))
        .into_iter()
        .map(|(k, v)| {
            let key = k.rsplit('/').next().expect("key").to_owned();
            let j = serde_json::from_str(&v).unwrap_or_else(|e| panic!("{k}: {e}: {v}"));
            (key, j)
        })
        .collect()
}

/// The lease (key, value) whose PublicIPv6 is `ip`.
fn lease_of(e: &Etcd, ip: Ipv6Addr) -> (String, serde_json::Value) {
    let all = leases(e);
    all.iter()
        .find(|(_, v)| v["PublicIPv6"].as_str() == Some(&ip.to_string()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap_or_else(|| panic!("no lease with PublicIPv6 {ip}: {all:?}"))
}

/// Asserts that host `m.host`'s subnet.env is flanneld's for a dual-stack or
/// IPv6-only lease.
fn check_subnet_env(m: &Member, with_v4: bool) -> String {
    let env = fs::read_to_string(m.daemon.subnet_file()).expect("subnet.env");
    let v6net = u128::from(m.v6) & !((1u128 << 64) - 1);
    let first = Ipv6Addr::from(v6net + 1);
    for line in [
        "FLANNEL_IPV6_NETWORK=fd00:100:96::/48\n".to_owned(),
        format!("FLANNEL_IPV6_SUBNET={first}/64\n"),
        "FLANNEL_IPMASQ=false\n".to_owned(),
    ] {
        assert!(
            env.contains(&line),
            "host {}: subnet.env lacks {line:?}:\n{env}",
            m.host
        );
    }
    assert!(env.contains("FLANNEL_MTU="), "{env}");
    assert_eq!(env.contains("FLANNEL_NETWORK="), with_v4, "{env}");
    assert_eq!(env.contains("FLANNEL_SUBNET="), with_v4, "{env}");
    env
}

/// Checks each daemon's `ringlay status --json`: every other member is a peer
/// with its `public_ipv6`.
fn check_status_peers(c: &Cluster, members: &[Member]) {
    for m in members {
        let s = status_of(c, m.host);
        let peers = s["peers"].as_array().expect("peers");
        for o in members.iter().filter(|o| o.host != m.host) {
            let want = c.underlay_ip6(o.host).to_string();
            assert!(
                peers
                    .iter()
                    .any(|p| p["public_ipv6"].as_str() == Some(&want)),
                "host {}: no peer with public_ipv6 {want}: {s:#}",
                m.host
            );
        }
    }
}

/// Per-peer `tx_bytes` that host `i`'s status reports for the peer at `peer6`.
fn peer_tx_bytes(c: &Cluster, i: usize, peer6: Ipv6Addr) -> u64 {
    let s = status_of(c, i);
    let want = peer6.to_string();
    s["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["public_ipv6"].as_str() == Some(&want)))
        .and_then(|p| p["tx_bytes"].as_u64())
        .unwrap_or_else(|| panic!("host {i}: no tx_bytes for peer {want}: {s:#}"))
}

/// Phase of [`family_split`]: inner traffic of one family between members 0 and
/// 1 (pings between all pairs, one TCP transfer each way), then the counters on
/// every host: the peers' `<family>_<j>` counters carried it, the other
/// family's stayed at 0.
fn family_split(c: &Cluster, members: &[Member], inner_v6: bool) {
    let (used, unused) = if inner_v6 { ("v6", "v4") } else { ("v4", "v6") };
    let addr = |m: &Member| -> IpAddr {
        if inner_v6 {
            m.v6.into()
        } else {
            m.v4.expect("an IPv4 container address").into()
        }
    };
    let before = all_sends(c);
    let frags_before: Vec<u64> = members.iter().map(|m| c.ip6_frag_creates(m.host)).collect();
    ping_pairs(c, members, addr);
    let (a, b) = (&members[0], &members[1]);
    // The largest packet both the container (FLANNEL_MTU) and the TUN allow, DF,
    // crosses whole. (flanneld itself writes FLANNEL_MTU=1450 beside a 1430
    // flannel-v6.1, so only the smaller of the two is promised.)
    let flannel_mtu = mtu_in(a.daemon.subnet_file());
    let tun = c.host(a.host).sh("ip -o link show ringlay0");
    let tun_mtu: u32 = tun
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no mtu in {tun}"));
    eprintln!(
        "host {}: FLANNEL_MTU {flannel_mtu}, TUN MTU {tun_mtu}",
        a.host
    );
    let mtu = flannel_mtu.min(tun_mtu);
    let size = (mtu - if inner_v6 { 48 } else { 28 }).to_string();
    let dst = addr(b).to_string();
    let fam = if inner_v6 { "-6" } else { "-4" };
    let out = c.container(a.host).exec(&[
        "timeout", "10", "ping", fam, "-n", "-c", "2", "-W", "2", "-M", "do", "-s", &size, &dst,
    ]);
    assert!(
        out.status.success(),
        "DF ping of {size} data bytes (MTU {mtu}) c{} -> c{}: {}{}",
        a.host,
        b.host,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        c.tcp_transfer_intact(b.host, addr(b), a.host, TRANSFER),
        "TCP c{} -> c{} over inner {used}\n{}\n---\n{}",
        a.host,
        b.host,
        a.daemon.log(),
        b.daemon.log()
    );
    assert!(
        c.tcp_transfer_intact(a.host, addr(a), b.host, TRANSFER),
        "TCP c{} -> c{} over inner {used}\n{}\n---\n{}",
        b.host,
        a.host,
        b.daemon.log(),
        a.daemon.log()
    );
    let after = all_sends(c);
    for m in members {
        for o in members.iter().filter(|o| o.host != m.host) {
            let (bi, ai) = (&before[m.host - 1], &after[m.host - 1]);
            let yes = moved(bi, ai, &format!("{used}_{}", o.host));
            let no = moved(bi, ai, &format!("{unused}_{}", o.host));
            eprintln!(
                "host {} -> {} during inner {used}: {used} underlay {yes:?}, {unused} underlay {no:?}",
                m.host, o.host
            );
            assert!(
                yes.0 > 0,
                "host {} -> {}: inner {used} did not use the {used} underlay",
                m.host,
                o.host
            );
            assert_eq!(
                no.0, 0,
                "host {} -> {}: inner {used} went over the {unused} underlay",
                m.host, o.host
            );
        }
    }
    // Nothing was sent as outer IPv6 fragments: every datagram fit the underlay.
    for (m, b) in members.iter().zip(&frags_before) {
        let made = c.ip6_frag_creates(m.host) - b;
        assert_eq!(
            made, 0,
            "host {}: {made} IPv6 fragments on the underlay",
            m.host
        );
    }
    // The bulk went where it should: both transfers' bytes on the pair's counters.
    for (from, to) in [(a, b), (b, a)] {
        let yes = moved(
            &before[from.host - 1],
            &after[from.host - 1],
            &format!("{used}_{}", to.host),
        );
        assert!(
            yes.1 as usize > TRANSFER,
            "host {} -> {}: {yes:?}",
            from.host,
            to.host
        );
    }
}

/// A dual-stack cluster of `n` ringlay nodes over `backend` (etcd on the
/// switch at 192.0.2.254): leases, subnet.env, status, then inner IPv6 over
/// the IPv6 underlay only and inner IPv4 over the IPv4 underlay only, and the
/// per-peer counts covering both. `extra` goes to every `ringlay run`.
fn dual_stack_cluster(tag: &str, backend: &str, port: u16, n: usize, extra: &[&str]) {
    let c = Cluster::dual_stack(tag, n);
    let (_etcd_ns, e) = etcd_on_switch_at(&c, tag, ETCD_IP.into(), &dual_config(backend));
    let hosts: Vec<usize> = (1..=n).collect();
    let members = join_dual(&c, &e, &hosts, extra);

    // Leases: dual keys, flannel's IPv6 fields.
    for m in &members {
        let (key, v) = lease_of(&e, c.underlay_ip6(m.host));
        assert!(
            key.contains("&fd00:100:96:") && key.ends_with("-64"),
            "{key}"
        );
        assert_eq!(
            v["PublicIP"],
            c.underlay_ip(m.host).to_string(),
            "{key}: {v}"
        );
        if backend == "vxlan" {
            assert_eq!(v["BackendType"], "vxlan", "{v}");
            assert_eq!(v["BackendV6Data"]["VNI"], 1, "{key}: {v}");
            assert!(v["BackendV6Data"]["VtepMAC"].is_string(), "{key}: {v}");
            assert!(v["BackendData"]["VtepMAC"].is_string(), "{key}: {v}");
        }
        let env = check_subnet_env(m, true);
        eprintln!("host {}: {key} = {v}\n{env}", m.host);
    }
    check_status_peers(&c, &members);

    for i in 1..=n {
        c.count_underlay_sends(i, port);
    }
    let (a, b) = (&members[0], &members[1]);
    let tx0 = peer_tx_bytes(&c, a.host, c.underlay_ip6(b.host));
    family_split(&c, &members, true);
    let tx6 = peer_tx_bytes(&c, a.host, c.underlay_ip6(b.host));
    family_split(&c, &members, false);
    let tx4 = peer_tx_bytes(&c, a.host, c.underlay_ip6(b.host));
    eprintln!(
        "host {} per-peer tx_bytes to {}: {tx0} -> {tx6} (v6) -> {tx4} (v4)",
        a.host, b.host
    );
    assert!(
        tx6 - tx0 > TRANSFER as u64,
        "per-peer counts miss the IPv6 underlay: {tx0} -> {tx6}"
    );
    assert!(
        tx4 - tx6 > TRANSFER as u64,
        "per-peer counts miss the IPv4 underlay: {tx6} -> {tx4}"
    );

    let gbps = c.iperf3_to_ip(b.host, b.v6.into(), a.host, 2, 1);
    eprintln!(
        "{backend} over the IPv6 underlay, iperf3 -6 c{} -> c{}, 2 s: {gbps:.3} Gbit/s",
        a.host, b.host
    );
    assert!(gbps > 0.05, "{gbps} Gbit/s");
    for m in &members {
        let s = status_of(&c, m.host);
        assert!(
            counters(&s["errors"]).is_empty(),
            "host {}: {:#}",
            m.host,
            s["errors"]
        );
    }
}

#[test]
fn vxlan_dual_stack_v6_over_v6_and_v4_over_v4() {
    if !can_run("vxlan_dual_stack") {
        return;
    }
    dual_stack_cluster("dsvx", "vxlan", VXLAN_PORT, 3, &[]);
}

/// The same without offloads (one datagram per send, `sendmmsg` to IPv4-mapped
/// and IPv6 peers alike) and with two workers per node.
#[test]
fn vxlan_dual_stack_without_offloads() {
    if !can_run("vxlan_dual_stack_without_offloads") {
        return;
    }
    dual_stack_cluster(
        "dsvo",
        "vxlan",
        VXLAN_PORT,
        2,
        &["--offload", "off", "--queues", "2"],
    );
}

#[test]
fn udp_dual_stack_v6_over_v6_and_v4_over_v4() {
    if !can_run("udp_dual_stack") {
        return;
    }
    dual_stack_cluster("dsud", "udp", UDP_PORT, 2, &[]);
}

#[test]
fn ipv6_only_vxlan_cluster_with_etcd_on_ipv6() {
    if !can_run("ipv6_only_vxlan") {
        return;
    }
    let c = Cluster::ipv6_only("ds6o", 2);
    assert_eq!(c.underlay(), Underlay::V6Only);
    for i in 1..=2 {
        let v4 = c.host(i).sh("ip -4 -o addr show scope global");
        assert!(v4.trim().is_empty(), "host {i} has IPv4: {v4}");
    }
    let (_etcd_ns, e) = etcd_on_switch_at(&c, "ds6o", ETCD_IP6.into(), &ipv6_only_config("vxlan"));
    assert_eq!(e.endpoint(), "http://[2001:db8::fe]:2379");
    let members = join_dual(&c, &e, &[1, 2], &[]);

    for m in &members {
        assert_eq!(m.v4, None);
        let env = check_subnet_env(m, false);
        let (key, v) = lease_of(&e, c.underlay_ip6(m.host));
        eprintln!("host {}: {key} = {v}\n{env}", m.host);
        // flanneld's key and value for a lease without IPv4.
        let v6net = Ipv6Addr::from(u128::from(m.v6) & !((1u128 << 64) - 1));
        assert_eq!(key, format!("0.0.0.0-0&{v6net}-64"));
        assert_eq!(v["PublicIP"], "0.0.0.0", "{v}");
        assert_eq!(v["PublicIPv6"], c.underlay_ip6(m.host).to_string(), "{v}");
        assert_eq!(v["BackendType"], "vxlan", "{v}");
        assert_eq!(v["BackendV6Data"]["VNI"], 1, "{v}");
        let mac = v["BackendV6Data"]["VtepMAC"].as_str().unwrap_or_default();
        assert_eq!(mac.len(), 17, "a VtepMAC: {v}");
        assert!(
            v["BackendData"]["VtepMAC"].is_null(),
            "an IPv4 VTEP without IPv4: {v}"
        );
        // The TUN carries the IPv6 subnet and no IPv4.
        let tun = c.host(m.host).sh("ip -o addr show dev ringlay0");
        assert!(tun.contains(&format!("inet6 {v6net}")), "{tun}");
        assert!(!tun.contains("inet "), "{tun}");
    }
    check_status_peers(&c, &members);
    for i in 1..=2 {
        c.count_underlay_sends(i, VXLAN_PORT);
    }
    let before = all_sends(&c);
    ping_pairs(&c, &members, |m| m.v6.into());
    let (a, b) = (&members[0], &members[1]);
    assert!(
        c.tcp_transfer_intact(b.host, b.v6.into(), a.host, TRANSFER),
        "TCP c1 -> c2\n{}",
        a.daemon.log()
    );
    assert!(
        c.tcp_transfer_intact(a.host, a.v6.into(), b.host, TRANSFER),
        "TCP c2 -> c1\n{}",
        b.daemon.log()
    );
    let after = all_sends(&c);
    for (i, j) in [(1, 2), (2, 1)] {
        let v6 = moved(&before[i - 1], &after[i - 1], &format!("v6_{j}"));
        assert!(v6.1 as usize > TRANSFER, "host {i} -> {j}: {v6:?}");
    }
    // An overlay address no lease covers gets ICMPv6 no-route from the TUN's
    // address, as an IPv4 one gets network unreachable.
    let subnet = |m: &Member| m.v6.segments()[3];
    let free = (1..=u16::MAX)
        .find(|n| members.iter().all(|m| subnet(m) != *n))
        .expect("a /64 no member holds");
    let out = c.container(a.host).sh(&format!(
        "ping -6 -c 1 -W 2 fd00:100:96:{free:x}::9 2>&1 || true"
    ));
    let [p0, p1, p2, p3, ..] = a.v6.segments();
    let gateway = format!("From {}", Ipv6Addr::new(p0, p1, p2, p3, 0, 0, 0, 0));
    assert!(
        out.contains(&gateway) && out.contains("No route"),
        "ping to a subnet without a lease: {out}"
    );
}

#[test]
fn interop_with_a_flanneld_dual_stack_kernel_node() {
    if !can_run("dual_stack_kernel_interop") {
        return;
    }
    let c = Cluster::dual_stack("dsko", 2);
    let (_etcd_ns, e) = etcd_on_switch_at(&c, "dsko", ETCD_IP.into(), &dual_config("vxlan"));
    // Host 2 is flanneld's: its lease first (so ringlay leases another subnet),
    // its devices once ringlay's lease is in etcd.
    let own = VxlanLease::of_host(2, Underlay::Dual);
    put_flannel_lease(&e, &own);
    let mut members = join_dual(&c, &e, &[1], &[]);
    let peers = kernel_vxlan_node_dual_etcd(&c, &e, 2, &own);
    assert_eq!(peers, 1, "the kernel node sees ringlay's lease");
    let fdb = c.host(2).sh("bridge fdb show dev flannel-v6.1");
    assert!(
        fdb.contains("dst 2001:db8::1"),
        "ringlay's lease has no usable IPv6 half for flanneld: {fdb}"
    );
    let r = members.remove(0);
    let (r4, r6): (IpAddr, IpAddr) = (r.v4.expect("IPv4").into(), r.v6.into());
    let (k4, k6): (IpAddr, IpAddr) = (c.container_ip(2).into(), c.container_ip6(2).into());

    c.count_underlay_sends(1, VXLAN_PORT);
    c.count_underlay_sends(2, VXLAN_PORT);
    let before = all_sends(&c);
    for (from, to, what) in [
        (1, k6, "ringlay -> kernel v6"),
        (2, r6, "kernel -> ringlay v6"),
    ] {
        assert!(c.ping(from, to, 3), "{what}\n{}", r.daemon.log());
    }
    // TCP both ways over inner IPv6: the kernel's segments arrive with partial
    // inner checksums and as GSO super-packets, as flanneld leaves it.
    assert!(
        c.tcp_transfer_intact(2, k6, 1, TRANSFER),
        "TCP v6 ringlay -> kernel\n{}",
        r.daemon.log()
    );
    assert!(
        c.tcp_transfer_intact(1, r6, 2, TRANSFER),
        "TCP v6 kernel -> ringlay\n{}",
        r.daemon.log()
    );
    let mid = all_sends(&c);
    for (from, to, what) in [
        (1, k4, "ringlay -> kernel v4"),
        (2, r4, "kernel -> ringlay v4"),
    ] {
        assert!(c.ping(from, to, 3), "{what}\n{}", r.daemon.log());
    }
    assert!(
        c.tcp_transfer_intact(2, k4, 1, TRANSFER),
        "TCP v4 ringlay -> kernel\n{}",
        r.daemon.log()
    );
    assert!(
        c.tcp_transfer_intact(1, r4, 2, TRANSFER),
        "TCP v4 kernel -> ringlay\n{}",
        r.daemon.log()
    );
    let after = all_sends(&c);
    let up6 = c.iperf3_to_ip(2, k6, 1, 2, 1);
    let down6 = c.iperf3_to_ip(1, r6, 2, 2, 1);
    eprintln!("ringlay <-> kernel flannel-v6.1, iperf3 -6 2 s: c1 -> c2 {up6:.3}, c2 -> c1 {down6:.3} Gbit/s");
    assert!(
        up6 > 0.05 && down6 > 0.05,
        "{up6} / {down6} Gbit/s\n{}",
        r.daemon.log()
    );

    // Each family over its own underlay, in both directions.
    for (i, j) in [(1, 2), (2, 1)] {
        let v6 = moved(&before[i - 1], &mid[i - 1], &format!("v6_{j}"));
        let v4_during_v6 = moved(&before[i - 1], &mid[i - 1], &format!("v4_{j}"));
        let v4 = moved(&mid[i - 1], &after[i - 1], &format!("v4_{j}"));
        let v6_during_v4 = moved(&mid[i - 1], &after[i - 1], &format!("v6_{j}"));
        eprintln!("host {i} -> {j}: inner v6 {v6:?} (v4 underlay {v4_during_v6:?}), inner v4 {v4:?} (v6 underlay {v6_during_v4:?})");
        assert!(
            v6.1 as usize > TRANSFER && v4.1 as usize > TRANSFER,
            "host {i} -> {j}"
        );
        assert_eq!(
            v4_during_v6.0, 0,
            "host {i} -> {j}: inner v6 over the v4 underlay"
        );
        assert_eq!(
            v6_during_v4.0, 0,
            "host {i} -> {j}: inner v4 over the v6 underlay"
        );
    }
    // The kernel's IPv6 device really carried it (a frame to the wrong inner MAC
    // would be dropped there, not counted as received by IP).
    let stats = c.host(2).sh(
        "cat /sys/class/net/flannel-v6.1/statistics/rx_packets /sys/class/net/flannel-v6.1/statistics/tx_packets",
    );
    let v: Vec<u64> = stats
        .split_whitespace()
        .map(|s| s.parse().expect("counter"))
        .collect();
    assert!(v[0] > 100 && v[1] > 100, "flannel-v6.1 rx/tx: {v:?}");
    let s = status_of(&c, 1);
    eprintln!("ringlay drops: {:#}", s["drops"]);
}

// --- anti-spoofing over the IPv6 underlay ----------------------------------------------

/// Sends `count` rounds of forged VXLAN datagrams from `[bind]` to
/// `[dst]:8472`, 20 ms apart: an Ethernet frame `src_mac` → `dst_mac` carrying
/// an IPv6 ICMPv6 echo request `inner_src` → `inner_dst` (valid checksum).
/// argv: bind dst dst_mac src_mac inner_src inner_dst count.
const FORGE6_PY: &str = r#"
import socket, struct, sys, time

def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

bind, dst, dmac, smac, isrc, idst, count = sys.argv[1:8]
src6, dst6 = socket.inet_pton(socket.AF_INET6, isrc), socket.inet_pton(socket.AF_INET6, idst)
body = struct.pack('!BBHHH', 128, 0, 0, 0x7e57, 1) + b'ringlay dualstack test'
pseudo = src6 + dst6 + struct.pack('!IxxxB', len(body), 58)
body = body[:2] + struct.pack('!H', csum(pseudo + body)) + body[4:]
ip6 = struct.pack('!IHBB', 6 << 28, len(body), 58, 64) + src6 + dst6
eth = bytes.fromhex(dmac.replace(':', '')) + bytes.fromhex(smac.replace(':', '')) + b'\x86\xdd'
frame = struct.pack('!II', 0x08000000, 1 << 8) + eth + ip6 + body
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((bind, 0))
for _ in range(int(count)):
    s.sendto(frame, (dst, 8472))
    time.sleep(0.02)
print('sent', count)
"#;

#[test]
fn spoofed_and_unknown_datagrams_over_ipv6_are_dropped_and_counted() {
    if !can_run("dual_stack_spoofing") {
        return;
    }
    const COUNT: u64 = 50;
    // Hosts 1 and 2 run ringlay; host 3 (2001:db8::3, in no lease) is the attacker.
    let c = Cluster::dual_stack("dssp", 3);
    let (_etcd_ns, e) = etcd_on_switch_at(&c, "dssp", ETCD_IP.into(), &dual_config("vxlan"));
    let members = join_dual(&c, &e, &[1, 2], &[]);
    let (a, b) = (&members[0], &members[1]);
    assert!(
        c.ping(b.host, a.v6.into(), 2),
        "c2 -> c1 v6 before
{}",
        a.daemon.log()
    );
    let (_, lease1) = lease_of(&e, c.underlay_ip6(1));
    let (_, lease2) = lease_of(&e, c.underlay_ip6(2));
    let mac1 = lease1["BackendV6Data"]["VtepMAC"]
        .as_str()
        .expect("host 1's IPv6 VtepMAC")
        .to_owned();
    let mac2 = lease2["BackendV6Data"]["VtepMAC"]
        .as_str()
        .expect("host 2's IPv6 VtepMAC")
        .to_owned();
    // Outside every lease (nodes lease fd00:100:96:1:: to :3f::).
    let outside = Ipv6Addr::new(0xfd00, 0x100, 0x96, 0xf0, 0, 0, 0, 9).to_string();
    let (dst, c1, c2) = (
        c.underlay_ip6(1).to_string(),
        a.v6.to_string(),
        b.v6.to_string(),
    );
    let n = COUNT.to_string();
    let before = counters(&status_of(&c, 1)["drops"]);
    let tun_before = status_of(&c, 1)["traffic"]["tun_tx_packets"]
        .as_u64()
        .unwrap_or(0);

    let py = netns::python3();
    let from2 = c.underlay_ip6(2).to_string();
    let from3 = c.underlay_ip6(3).to_string();
    let mut spoofed = c.host(2).spawn(&[
        "timeout", "10", py, "-c", FORGE6_PY, &from2, &dst, &mac1, &mac2, &outside, &c1, &n,
    ]);
    let mut unknown = c.host(3).spawn(&[
        "timeout", "10", py, "-c", FORGE6_PY, &from3, &dst, &mac1, &mac2, &c2, &c1, &n,
    ]);
    // Meanwhile real IPv6 traffic still flows.
    assert!(
        c.ping(b.host, a.v6.into(), 5),
        "c2 -> c1 v6 during the attack"
    );
    for (who, child) in [("host 2", &mut spoofed), ("host 3", &mut unknown)] {
        let status = child.wait().expect("wait for python");
        assert!(status.success(), "{who}: forging failed: {status}");
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let drops = loop {
        let d = counters(&status_of(&c, 1)["drops"]);
        let got = |k: &str| d.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
        if (got("spoofed_source") >= COUNT && got("unknown_sender") >= COUNT)
            || Instant::now() >= deadline
        {
            break d;
        }
        thread::sleep(Duration::from_millis(200));
    };
    eprintln!("host 1 drops: {drops:?}");
    for k in ["spoofed_source", "unknown_sender"] {
        let got = drops.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
        assert!(
            got >= COUNT,
            "{k}: {got} < {COUNT}: {drops:?}\n{}",
            a.daemon.log()
        );
    }
    // None reached the TUN: only the few real echo requests did.
    let tun_after = status_of(&c, 1)["traffic"]["tun_tx_packets"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        tun_after - tun_before < COUNT,
        "{tun_before} -> {tun_after} written to the TUN"
    );
}
