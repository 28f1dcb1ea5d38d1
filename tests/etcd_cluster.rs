//! Real clusters with a real etcd: hosts in network namespaces on one switch, etcd
//! in its own namespace on that switch (192.0.2.254:2379), and `ringlay run` on
//! each host acquiring its lease there.
//!
//! - three ringlay nodes get distinct subnets and every pair of containers reaches
//!   each other, over vxlan (with a fourth host running the kernel's vxlan set up
//!   as flanneld would from the leases in etcd, its own lease written as flanneld
//!   writes it) and over udp; a restarted node keeps its subnet and VtepMAC;
//! - etcd killed for 10 s while traffic flows: forwarding continues, the watch
//!   recovers, and leases added as etcd comes back (before the watch resumes) and
//!   after it resumed arrive; a deleted lease of ours is re-created without
//!   interrupting traffic.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::cluster::{
    acquired_subnet, etcd_on_switch, flannel_decode, join, PREFIX, VXLAN_CONFIG,
};
use common::etcd::require_etcd;
use common::netns::{require_root, vtep_mac, Cluster};

fn ping_all(c: &Cluster, members: &[(usize, Ipv4Addr)]) {
    let mut failed = Vec::new();
    for &(from, _) in members {
        for &(to, addr) in members {
            if from != to && !c.ping(from, IpAddr::V4(addr), 3) {
                failed.push(format!("{from} -> {to} ({addr})"));
            }
        }
    }
    assert!(failed.is_empty(), "no reply: {failed:?}");
}

/// What `flannel_decode` prints for a value, read with serde instead (when Go
/// is missing outside CI).
fn go_like(v: &str) -> String {
    let lease: serde_json::Value = serde_json::from_str(v).expect("lease JSON");
    format!(
        "PublicIP={} BackendType={} VNI={} VtepMAC={}",
        lease["PublicIP"].as_str().unwrap_or_default(),
        lease["BackendType"].as_str().unwrap_or_default(),
        lease["BackendData"]["VNI"],
        lease["BackendData"]["VtepMAC"].as_str().unwrap_or_default()
    )
}

fn distinct(addrs: &[Ipv4Addr]) {
    let mut v = addrs.to_vec();
    v.sort();
    v.dedup();
    assert_eq!(v.len(), addrs.len(), "subnets not distinct: {addrs:?}");
}

#[test]
fn three_ringlay_nodes_and_a_kernel_flannel_node_over_vxlan() {
    if !require_root("etcd vxlan cluster") || !require_etcd("etcd vxlan cluster") {
        return;
    }
    let c = Cluster::hosts("etv", 4);
    let (_etcd_ns, e) = etcd_on_switch(
        &c,
        "etv",
        r#"{"Network":"100.96.0.0/16","Backend":{"Type":"vxlan"}}"#,
    );
    // Host 4 is a flanneld node: its lease, as flanneld's vxlan backend writes it.
    let flannel_lease = format!(
        r#"{{"PublicIP":"192.0.2.4","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{}"}}}}"#,
        vtep_mac(4)
    );
    e.put(&format!("{PREFIX}/subnets/100.96.4.0-24"), &flannel_lease);

    let (daemons, addrs) = join(&c, &e, &[1, 2, 3]);
    distinct(&addrs);
    assert!(!addrs.contains(&Ipv4Addr::new(100, 96, 4, 2)), "{addrs:?}");

    // The kernel node, configured from the leases in etcd as flanneld would.
    let mut script = format!(
        "ip link add flannel.1 address {} type vxlan id 1 local 192.0.2.4 dev eth0 dstport 8472 nolearning
         ip link set flannel.1 mtu 1450 up
         ip addr add 100.96.4.0/32 dev flannel.1\n",
        vtep_mac(4)
    );
    let mut seen = 0;
    let theirs: Vec<(String, String)> = e
        .get_prefix(&format!("{PREFIX}/subnets/"))
        .into_iter()
        .filter(|(k, _)| !k.ends_with("/100.96.4.0-24"))
        .collect();
    // Read as flanneld reads them: Go's decoder into flannel's fields, which
    // passes over the feature list ringlay adds to BackendData.
    let values: Vec<String> = theirs.iter().map(|(_, v)| v.clone()).collect();
    for v in &values {
        assert!(v.contains(r#""RinglayFeatures":["partial-csum"]"#), "{v}");
    }
    let decoded = match flannel_decode("etcd vxlan cluster", &values) {
        Some(d) => d,
        None => values.iter().map(|v| go_like(v)).collect(),
    };
    for ((k, v), line) in theirs.iter().zip(&decoded) {
        let key = k.rsplit('/').next().expect("key");
        let net = key.trim_end_matches("-24");
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} not decoded from {v}: {line}"))
                .to_owned()
        };
        assert_eq!(field("BackendType"), "vxlan", "{v}");
        assert_eq!(field("VNI"), "1", "{v}");
        let (mac, public) = (field("VtepMAC"), field("PublicIP"));
        script += &format!(
            "ip route add {net}/24 via {net} dev flannel.1 onlink
             ip neigh add {net} lladdr {mac} dev flannel.1 nud permanent
             bridge fdb append {mac} dev flannel.1 dst {public}\n"
        );
        seen += 1;
    }
    assert_eq!(seen, 3, "three ringlay leases in etcd");
    c.host(4).sh(&script);

    for d in &daemons {
        assert!(
            d.log().contains("acquired a free subnet"),
            "host {}:\n{}",
            d.host(),
            d.log()
        );
    }
    let members: Vec<(usize, Ipv4Addr)> = vec![
        (1, addrs[0]),
        (2, addrs[1]),
        (3, addrs[2]),
        (4, Ipv4Addr::new(100, 96, 4, 2)),
    ];
    ping_all(&c, &members);

    // TCP both ways between two ringlay nodes, which leave inner checksums
    // partial for each other (both advertise partial-csum), and with the
    // kernel node, which gets them complete.
    for (server, client) in [(2, 1), (1, 2), (4, 1), (1, 4)] {
        let (_, at) = members[server - 1];
        let gbps = c.iperf3_to(server, at, client, 2, 1);
        assert!(gbps > 0.05, "TCP {client} -> {server}: {gbps} Gbit/s");
    }

    // A restart of host 1 keeps its subnet and VtepMAC: the kernel node, which
    // learnt them once from etcd, still reaches it.
    let k1 = format!("{PREFIX}/subnets/{}-24", acquired_subnet(&daemons[0]));
    let before = e.get(&k1).expect("host 1's lease");
    let mut daemons = daemons;
    let status = daemons[0].terminate();
    assert!(status.success(), "{status}\n{}", daemons[0].log());
    let again = c.ringlay_etcd(1, e.endpoint(), &["--queues", "1"]);
    assert!(
        again.log().contains("kept the lease etcd already had"),
        "{}",
        again.log()
    );
    assert_eq!(acquired_subnet(&again), acquired_subnet(&daemons[0]));
    assert_eq!(e.get(&k1), Some(before), "same value, same VtepMAC");
    ping_all(&c, &[(1, addrs[0]), (4, Ipv4Addr::new(100, 96, 4, 2))]);
}

#[test]
fn three_ringlay_nodes_over_udp() {
    if !require_root("etcd udp cluster") || !require_etcd("etcd udp cluster") {
        return;
    }
    let c = Cluster::hosts("etu", 3);
    let (_etcd_ns, e) = etcd_on_switch(
        &c,
        "etu",
        r#"{"Network":"100.96.0.0/16","Backend":{"Type":"udp"}}"#,
    );
    let (_daemons, addrs) = join(&c, &e, &[1, 2, 3]);
    distinct(&addrs);
    for (k, v) in e.get_prefix(&format!("{PREFIX}/subnets/")) {
        assert!(!v.contains("BackendType"), "{k}: flannel's udp value: {v}");
    }
    let members: Vec<(usize, Ipv4Addr)> = (1..=3).zip(addrs.iter().copied()).collect();
    ping_all(&c, &members);
}

#[test]
fn etcd_outage_forwarding_continues_and_the_watch_recovers() {
    if !require_root("etcd outage") || !require_etcd("etcd outage") {
        return;
    }
    let c = Cluster::hosts("eto", 3);
    let (_etcd_ns, mut e) = etcd_on_switch(&c, "eto", VXLAN_CONFIG);
    let (daemons, addrs) = join(&c, &e, &[1, 2]);
    distinct(&addrs);
    ping_all(&c, &[(1, addrs[0]), (2, addrs[1])]);
    let marks: Vec<usize> = daemons.iter().map(|d| d.log().len()).collect();

    // 48 pings at 4 per second (12 s), while etcd is down for 10 s of them.
    let target = addrs[1].to_string();
    let mut ping = c.container(1).spawn(&[
        "timeout", "25", "ping", "-n", "-q", "-c", "48", "-i", "0.25", "-W", "1", &target,
    ]);
    std::thread::sleep(Duration::from_millis(500));
    e.kill();
    std::thread::sleep(Duration::from_secs(10));
    for d in &daemons {
        assert!(
            d.log()[marks[d.host() - 1]..].contains("forwarding continues on the last table"),
            "host {} noticed the outage:\n{}",
            d.host(),
            d.log()
        );
    }
    e.restart();
    // Added as soon as etcd is back, while the nodes' watches are still down:
    // they find it when they list again.
    e.put(
        &format!("{PREFIX}/subnets/100.96.98.0-24"),
        r#"{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:03:00"}}"#,
    );
    let out = ping.wait_with_output_bounded();
    let received = out
        .split(" received")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("ping output: {out}"));
    println!("during the 10 s etcd outage: {received}/48 pings answered");
    assert!(
        received >= 46,
        "{received}/48 replies during the outage:\n{out}"
    );

    // The watch recovers (retries back off to at most 10 s apart).
    for d in &daemons {
        assert!(
            d.wait_log(
                "watch resumed",
                marks[d.host() - 1],
                Duration::from_secs(20)
            ),
            "host {}:\n{}",
            d.host(),
            d.log()
        );
    }
    for d in &daemons {
        if let Some(l) = d.log().lines().find(|l| l.contains("watch resumed")) {
            println!("host {}: {l}", d.host());
        }
        assert!(
            d.wait_log(
                "100.96.98.0-24",
                marks[d.host() - 1],
                Duration::from_secs(5)
            ),
            "host {}: the lease added while its watch was down:\n{}",
            d.host(),
            d.log()
        );
    }
    // A lease added now arrives at both through the watch. (It replaces the one
    // above: one lease per PublicIP.)
    e.del(&format!("{PREFIX}/subnets/100.96.98.0-24"));
    let mark2: Vec<usize> = daemons.iter().map(|d| d.log().len()).collect();
    e.put(
        &format!("{PREFIX}/subnets/100.96.99.0-24"),
        r#"{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:03:00"}}"#,
    );
    for d in &daemons {
        assert!(
            d.wait_log(
                "100.96.99.0-24",
                mark2[d.host() - 1],
                Duration::from_secs(5)
            ),
            "host {}:\n{}",
            d.host(),
            d.log()
        );
    }

    // Our lease deleted by hand: re-created under the same key, traffic unaffected.
    let k1 = format!("{PREFIX}/subnets/{}-24", u32_net(addrs[0]));
    let before = e.get(&k1).expect("host 1's lease");
    let mark3 = daemons[0].log().len();
    e.del(&k1);
    assert!(
        daemons[0].wait_log("re-created our lease", mark3, Duration::from_secs(5)),
        "{}",
        daemons[0].log()
    );
    assert_eq!(e.get(&k1), Some(before));
    ping_all(&c, &[(1, addrs[0]), (2, addrs[1])]);
}

/// The subnet's network address of a container address in a /24.
fn u32_net(a: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a) & 0xffff_ff00)
}

/// Waiting on a child with a bound, returning its stdout.
trait WaitBounded {
    fn wait_with_output_bounded(&mut self) -> String;
}

impl WaitBounded for std::process::Child {
    fn wait_with_output_bounded(&mut self) -> String {
        use std::io::Read;
        // The command runs under `timeout`, so wait returns.
        let _ = self.wait();
        let mut s = String::new();
        if let Some(mut o) = self.stdout.take() {
            let _ = o.read_to_string(&mut s);
        }
        s
    }
}
