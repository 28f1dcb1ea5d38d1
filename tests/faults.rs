//! The fault suite: a netns cluster with a real etcd on the switch, ringlay on the
//! hosts, real traffic (a ping series every 0.2 s, iperf3) running through each
//! fault, and a recovery bound asserted for each. After every fault etcd is
//! checked with etcdctl (exactly one lease per host's PublicIP, the same keys and
//! values as before: no lease lost or duplicated) and every node's table (its
//! `ringlay status --json` peers) is checked to match etcd within the bound.
//!
//! - etcd killed (SIGKILL) and restarted: the watch resumes, and a lease written
//!   after the restart reaches every node, within [`WATCH_BOUND`];
//! - etcd unreachable from one host only for 30 s (an nftables drop in that host's
//!   namespace): its traffic keeps flowing, the other hosts see lease changes at
//!   once, and after the cut its watch resumes and catches up within
//!   [`PARTITION_BOUND`];
//! - one ringlay SIGKILLed and restarted: same key and value in etcd (subnet and
//!   VtepMAC), the other nodes never drop it, traffic resumes within
//!   [`RESTART_BOUND`] of the restart;
//! - the underlay link of one host down for 5 s: send errors counted, no restart,
//!   traffic back within [`LINK_BOUND`] of link up;
//! - loss, duplication and reordering on one host's underlay (nftables and an
//!   HTB class, as netem would do): a TCP transfer through the overlay completes
//!   and ringlay counts no error or drop of its own;
//! - subnet.env on a full, then read-only filesystem: forwarding continues, a
//!   restart on it keeps forwarding (the file already says the same), a node that
//!   cannot write it at start-up exits with an error naming the file and cause.
//!
//! Each test prints its measured figures (`recovery: …`, `pings answered a/b`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::cluster::{etcd_on_switch, join, status_of, subnet_in, PREFIX, VXLAN_CONFIG};
use common::etcd::{require_etcd, Etcd};
use common::netns::{require_root, Cluster, Daemon, Netns};

/// From etcd answering again after a restart to every node's "watch resumed",
/// and from then to a new lease in every node's table. The watch retries back off
/// to at most 10 s apart; a short outage keeps the delay well below that.
const WATCH_BOUND: Duration = Duration::from_secs(12);
/// From the end of a 30 s partition to the cut-off node's watch resuming and its
/// table matching etcd: the last retry may have begun just before (a request
/// times out after 5 s), then the backoff (at most 10 s) runs out.
const PARTITION_BOUND: Duration = Duration::from_secs(20);
/// How soon a lease change reaches a node whose watch is up.
const CHANGE_BOUND: Duration = Duration::from_secs(3);
/// From a restarted ringlay's `ready` to traffic through it.
const RESTART_BOUND: Duration = Duration::from_secs(3);
/// From the underlay link coming back up to traffic through it.
const LINK_BOUND: Duration = Duration::from_secs(3);

// --- the cluster ----------------------------------------------------------------

/// A cluster of `n` hosts with etcd, ringlay on every host, checked end to end.
struct Setup {
    // Drop order: daemons, etcd, its namespace, then the cluster.
    daemons: Vec<Daemon>,
    e: Etcd,
    _etcd_ns: Netns,
    addrs: Vec<Ipv4Addr>,
    c: Cluster,
}

fn setup(tag: &str, n: usize) -> Setup {
    let c = Cluster::hosts(tag, n);
    let (etcd_ns, e) = etcd_on_switch(&c, tag, VXLAN_CONFIG);
    let hosts: Vec<usize> = (1..=n).collect();
    let (daemons, addrs) = join(&c, &e, &hosts);
    for (k, &from) in hosts.iter().enumerate() {
        let to = addrs[(k + 1) % n];
        assert!(
            c.ping(from, IpAddr::V4(to), 3),
            "{from} -> {to} before the fault"
        );
    }
    Setup {
        daemons,
        e,
        _etcd_ns: etcd_ns,
        addrs,
        c,
    }
}

// --- etcd checks ----------------------------------------------------------------

/// Every lease under `<prefix>/subnets/`: key (`100.96.7.0-24`) → value.
fn leases(e: &Etcd) -> BTreeMap<String, String> {
    e.get_prefix(&format!("{PREFIX}/subnets/"))
        .into_iter()
        .map(|(k, v)| (k.rsplit('/').next().expect("key").to_owned(), v))
        .collect()
}

fn public_ip(value: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(value).expect("lease JSON");
    v["PublicIP"].as_str().expect("PublicIP").to_owned()
}

/// No lease lost or duplicated: the same keys and values as `before`, and exactly
/// one key for each of `hosts`' PublicIPs.
fn assert_leases_intact(e: &Etcd, before: &BTreeMap<String, String>, hosts: &[usize]) {
    let now = leases(e);
    assert_eq!(&now, before, "the leases in etcd changed");
    for &i in hosts {
        let ip = common::netns::underlay_ip(i).to_string();
        let n = now.values().filter(|v| public_ip(v) == ip).count();
        assert_eq!(n, 1, "{n} leases for {ip}: {now:?}");
    }
    println!("etcd: {} leases, one per host, unchanged", now.len());
}

// --- node checks ----------------------------------------------------------------

/// The subnets (`100.96.7.0/24`) in host i's table.
fn table_of(c: &Cluster, i: usize) -> BTreeSet<String> {
    status_of(c, i)["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p["subnet"].as_str().expect("subnet").to_owned())
        .collect()
}

/// What host i's table should hold: every lease in etcd but its own.
fn expected_table(e: &Etcd, i: usize) -> BTreeSet<String> {
    let ip = common::netns::underlay_ip(i).to_string();
    leases(e)
        .into_iter()
        .filter(|(_, v)| public_ip(v) != ip)
        .map(|(k, _)| k.replacen('-', "/", 1))
        .collect()
}

/// Waits until every one of `hosts`' tables matches etcd; panics after `bound`
/// (a stale or missing entry). Returns how long it took.
fn wait_tables(c: &Cluster, e: &Etcd, hosts: &[usize], bound: Duration) -> Duration {
    let start = Instant::now();
    for &i in hosts {
        let want = expected_table(e, i);
        loop {
            let have = table_of(c, i);
            if have == want {
                break;
            }
            assert!(
                start.elapsed() < bound,
                "host {i}'s table after {bound:?}: {have:?}, etcd says {want:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    start.elapsed()
}

/// Host i's error counters and drops by reason, from `ringlay status --json`
/// (only the non-zero ones are listed).
fn errors_and_drops(c: &Cluster, i: usize) -> (serde_json::Value, serde_json::Value) {
    let s = status_of(c, i);
    (s["errors"].clone(), s["drops"].clone())
}

fn is_empty(v: &serde_json::Value) -> bool {
    v.as_object().is_none_or(|m| m.is_empty())
}

fn counter(v: &serde_json::Value, name: &str) -> u64 {
    v[name].as_u64().unwrap_or(0)
}

// --- traffic --------------------------------------------------------------------

/// Seconds since the Unix epoch, as `ping -D` prints them.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// A bounded ping series (`-i 0.2 -W 1 -D`) from a container, running in the
/// background.
struct PingSeries {
    child: Child,
    count: u32,
}

impl PingSeries {
    fn start(c: &Cluster, from: usize, to: Ipv4Addr, count: u32) -> PingSeries {
        let bound = (count / 5 + 10).to_string();
        let count_s = count.to_string();
        let to_s = to.to_string();
        let child = c.container(from).spawn(&[
            "timeout", &bound, "ping", "-4", "-n", "-D", "-c", &count_s, "-i", "0.2", "-W", "1",
            &to_s,
        ]);
        PingSeries { child, count }
    }

    /// Waits for the series to end (it runs under `timeout`).
    fn finish(mut self) -> Pings {
        use std::io::Read;
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        let _ = self.child.wait();
        let replies = out
            .lines()
            .filter(|l| l.contains(" bytes from "))
            .filter_map(|l| {
                let ts = l
                    .strip_prefix('[')?
                    .split(']')
                    .next()?
                    .parse::<f64>()
                    .ok()?;
                let seq = l
                    .split("icmp_seq=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<u32>()
                    .ok()?;
                Some((ts, seq))
            })
            .collect();
        Pings {
            sent: self.count,
            replies,
            out,
        }
    }
}

/// The replies of a ping series: (arrival time, icmp_seq).
struct Pings {
    sent: u32,
    replies: Vec<(f64, u32)>,
    out: String,
}

impl Pings {
    /// Distinct sequence numbers answered.
    fn answered(&self) -> u32 {
        let seqs: BTreeSet<u32> = self.replies.iter().map(|r| r.1).collect();
        seqs.len() as u32
    }

    /// Time from `t` (Unix seconds) to the first reply after it.
    fn first_reply_after(&self, t: f64) -> Option<Duration> {
        self.replies
            .iter()
            .map(|r| r.0)
            .find(|&ts| ts >= t)
            .map(|ts| Duration::from_secs_f64(ts - t))
    }

    /// The longest time without a reply.
    fn longest_gap(&self) -> Duration {
        let gap = self
            .replies
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .fold(0.0, f64::max);
        Duration::from_secs_f64(gap)
    }

    fn report(&self, what: &str) {
        println!(
            "{what}: pings answered {}/{}, longest gap {:.1?}",
            self.answered(),
            self.sent,
            self.longest_gap()
        );
    }
}

fn sleep(d: Duration) {
    std::thread::sleep(d);
}

// --- the faults -----------------------------------------------------------------

#[test]
fn etcd_killed_and_restarted() {
    if !require_root("fault: etcd restart") || !require_etcd("fault: etcd restart") {
        return;
    }
    let mut s = setup("fke", 3);
    let before = leases(&s.e);
    let marks: Vec<usize> = s.daemons.iter().map(|d| d.log().len()).collect();
    // 40 pings (8 s) from container 1 to 2 and 3 to 1, while etcd is down for 3 s.
    let p12 = PingSeries::start(&s.c, 1, s.addrs[1], 40);
    let p31 = PingSeries::start(&s.c, 3, s.addrs[0], 40);
    sleep(Duration::from_secs(1));
    s.e.kill();
    sleep(Duration::from_secs(3));
    s.e.restart();
    let restarted = Instant::now();

    let mut resumed = Duration::ZERO;
    for (d, &m) in s.daemons.iter().zip(&marks) {
        assert!(
            d.wait_log("watch resumed", m, WATCH_BOUND),
            "host {}: no `watch resumed` within {WATCH_BOUND:?} of etcd's restart:\n{}",
            d.host(),
            d.log()
        );
        resumed = resumed.max(restarted.elapsed());
    }
    println!("etcd restart: watch resumed on every node {resumed:.1?} after etcd answered again (bound {WATCH_BOUND:?})");
    assert!(resumed <= WATCH_BOUND);

    // A lease written now arrives everywhere; so does its removal.
    let key = format!("{PREFIX}/subnets/100.96.200.0-24");
    s.e.put(
        &key,
        r#"{"PublicIP":"192.0.2.9","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:09:00"}}"#,
    );
    let added = wait_tables(&s.c, &s.e, &[1, 2, 3], CHANGE_BOUND);
    s.e.del(&key);
    let removed = wait_tables(&s.c, &s.e, &[1, 2, 3], CHANGE_BOUND);
    println!(
        "etcd restart: a lease added after it in every table in {added:.1?}, its removal in {removed:.1?} (bound {CHANGE_BOUND:?})"
    );

    for (p, what) in [(p12.finish(), "1 -> 2"), (p31.finish(), "3 -> 1")] {
        p.report(&format!("etcd restart, {what}"));
        assert!(p.answered() + 2 >= p.sent, "{}", p.out);
    }
    assert_leases_intact(&s.e, &before, &[1, 2, 3]);
}

#[test]
fn etcd_unreachable_from_one_host_for_30s() {
    if !require_root("fault: etcd partition") || !require_etcd("fault: etcd partition") {
        return;
    }
    let s = setup("fkp", 3);
    let before = leases(&s.e);
    let etcd_lease = s.e.lease_ttl(&format!(
        "{PREFIX}/subnets/{}-24",
        Ipv4Addr::from(u32::from(s.addrs[0]) & 0xffff_ff00)
    ));
    let mark = s.daemons[0].log().len();
    // 36 s of pings to and from the cut-off host.
    let p12 = PingSeries::start(&s.c, 1, s.addrs[1], 180);
    let p31 = PingSeries::start(&s.c, 3, s.addrs[0], 180);
    sleep(Duration::from_secs(1));
    let nft = "nft add table inet ringlay_test
         nft add chain inet ringlay_test out '{ type filter hook output priority 0; }'
         nft add chain inet ringlay_test in '{ type filter hook input priority 0; }'
         nft add rule inet ringlay_test out ip daddr 192.0.2.254 tcp dport 2379 drop
         nft add rule inet ringlay_test in ip saddr 192.0.2.254 tcp sport 2379 drop";
    s.c.host(1).sh(nft);
    let cut = Instant::now();

    // A lease written during the cut: the other hosts have it at once.
    sleep(Duration::from_secs(2));
    let key = format!("{PREFIX}/subnets/100.96.200.0-24");
    s.e.put(
        &key,
        r#"{"PublicIP":"192.0.2.9","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:09:00"}}"#,
    );
    let others = wait_tables(&s.c, &s.e, &[2, 3], CHANGE_BOUND);
    println!("etcd partition: hosts 2 and 3 had the new lease in {others:.1?}");
    assert!(
        !table_of(&s.c, 1).contains("100.96.200.0/24"),
        "host 1 cannot have heard of it"
    );

    sleep(Duration::from_secs(30).saturating_sub(cut.elapsed()));
    s.c.host(1).sh("nft delete table inet ringlay_test");
    let lifted = Instant::now();
    println!("etcd partition: cut for {:.1?}", lifted - cut);
    let log = s.daemons[0].log();
    assert!(
        log[mark..].contains("forwarding continues on the last table"),
        "host 1 did not notice the partition:\n{log}"
    );
    assert!(
        s.daemons[0].wait_log("watch resumed", mark, PARTITION_BOUND),
        "host 1: no `watch resumed` within {PARTITION_BOUND:?}:\n{}",
        s.daemons[0].log()
    );
    let resumed = lifted.elapsed();
    wait_tables(
        &s.c,
        &s.e,
        &[1],
        PARTITION_BOUND.saturating_sub(resumed).max(CHANGE_BOUND),
    );
    let caught_up = lifted.elapsed();
    println!(
        "etcd partition: host 1's watch resumed {resumed:.1?} after the cut ended, its table matched etcd after {caught_up:.1?} (bound {PARTITION_BOUND:?})"
    );
    assert!(caught_up <= PARTITION_BOUND, "{caught_up:?}");
    s.e.del(&key);
    wait_tables(&s.c, &s.e, &[1, 2, 3], CHANGE_BOUND);

    for (p, what) in [(p12.finish(), "1 -> 2"), (p31.finish(), "3 -> 1")] {
        p.report(&format!("etcd partition, {what}"));
        assert!(p.answered() + 2 >= p.sent, "{}", p.out);
    }
    // Our lease is held as before: same value, same etcd lease, still running.
    assert_leases_intact(&s.e, &before, &[1, 2, 3]);
    let after = s.e.lease_ttl(&format!(
        "{PREFIX}/subnets/{}-24",
        Ipv4Addr::from(u32::from(s.addrs[0]) & 0xffff_ff00)
    ));
    assert_eq!(
        after.map(|a| a.0),
        etcd_lease.map(|b| b.0),
        "host 1's etcd lease"
    );
    assert!(after.is_some_and(|(_, ttl)| ttl > 23 * 3600), "{after:?}");
}

#[test]
fn ringlay_sigkilled_and_restarted() {
    if !require_root("fault: ringlay SIGKILL") || !require_etcd("fault: ringlay SIGKILL") {
        return;
    }
    let mut s = setup("fkk", 3);
    let before = leases(&s.e);
    let key1 = format!("{}-24", subnet_in(s.daemons[0].subnet_file()));
    let subnet1 = key1.replacen('-', "/", 1);
    let marks: Vec<usize> = s.daemons.iter().map(|d| d.log().len()).collect();

    let p21 = PingSeries::start(&s.c, 2, s.addrs[0], 40);
    sleep(Duration::from_secs(1));
    let killed = Instant::now();
    let status = s.daemons[0].kill();
    println!("ringlay SIGKILL: {status}");
    // While it is gone, the others keep its entry.
    let mut polls = 0;
    while killed.elapsed() < Duration::from_secs(2) {
        for i in [2, 3] {
            assert!(
                table_of(&s.c, i).contains(&subnet1),
                "host {i} lost {subnet1}"
            );
        }
        polls += 1;
    }
    let started = Instant::now();
    let again = s.c.ringlay_etcd(1, s.e.endpoint(), &["--queues", "1"]);
    let ready = unix_now();
    println!(
        "ringlay SIGKILL: restarted, ready {:.1?} after its start ({:.1?} after the kill)",
        started.elapsed(),
        killed.elapsed()
    );
    assert!(
        again.log().contains("kept the lease etcd already had"),
        "{}",
        again.log()
    );
    assert_eq!(
        subnet_in(again.subnet_file()),
        subnet_in(s.daemons[0].subnet_file())
    );
    let p = p21.finish();
    p.report("ringlay SIGKILL, 2 -> 1");
    let recovery = p
        .first_reply_after(ready)
        .unwrap_or_else(|| panic!("no reply after the restart:\n{}", p.out));
    println!("ringlay SIGKILL: recovery {recovery:.1?} after ready (bound {RESTART_BOUND:?})");
    assert!(recovery <= RESTART_BOUND, "{}", p.out);

    // Same key, same value (subnet and VtepMAC); the others never dropped it.
    assert_leases_intact(&s.e, &before, &[1, 2, 3]);
    for (d, &m) in s.daemons.iter().zip(&marks).skip(1) {
        let log = d.log();
        let removed = log[m..]
            .lines()
            .find(|l| l.contains("removed") && l.contains(&key1));
        assert!(removed.is_none(), "host {}: {removed:?}", d.host());
        assert!(table_of(&s.c, d.host()).contains(&subnet1));
    }
    println!(
        "ringlay SIGKILL: hosts 2 and 3 kept {subnet1} in {polls} table checks while it was down"
    );
    wait_tables(&s.c, &s.e, &[1, 2, 3], CHANGE_BOUND);
    assert!(s.c.ping(1, IpAddr::V4(s.addrs[2]), 3));
}

#[test]
fn underlay_link_down_for_5s() {
    if !require_root("fault: link down") || !require_etcd("fault: link down") {
        return;
    }
    let s = setup("fkl", 3);
    let before = leases(&s.e);
    let (errors0, _) = errors_and_drops(&s.c, 1);
    let pid = s.daemons[0].pid();

    let p12 = PingSeries::start(&s.c, 1, s.addrs[1], 55);
    let p21 = PingSeries::start(&s.c, 2, s.addrs[0], 55);
    sleep(Duration::from_secs(2));
    s.c.host(1).sh("ip link set eth0 down");
    sleep(Duration::from_secs(5));
    s.c.host(1).sh("ip link set eth0 up");
    let up = unix_now();
    let (errors, drops) = errors_and_drops(&s.c, 1);

    let p12 = p12.finish();
    let p21 = p21.finish();
    p12.report("link down, 1 -> 2");
    p21.report("link down, 2 -> 1");
    let mut worst = Duration::ZERO;
    for p in [&p12, &p21] {
        let r = p
            .first_reply_after(up)
            .unwrap_or_else(|| panic!("no reply after link up:\n{}", p.out));
        worst = worst.max(r);
        // Everything sent outside the 5 s (25 pings) and the recovery is answered.
        assert!(p.answered() + 25 + 15 >= p.sent, "{}", p.out);
    }
    println!(
        "link down: recovery {worst:.1?} after link up (bound {LINK_BOUND:?}); send_errors {} during the outage; errors {errors}, drops {drops}",
        counter(&errors, "send_errors") - counter(&errors0, "send_errors")
    );
    assert!(worst <= LINK_BOUND);
    // With the link down its routes are gone: the sends failed (ENETUNREACH),
    // were counted, and the worker went on.
    assert!(
        counter(&errors, "send_errors") > counter(&errors0, "send_errors"),
        "{errors}"
    );
    // Still the same process, which noticed nothing it had to restart for.
    assert_eq!(s.daemons[0].pid(), pid);
    let log = s.daemons[0].log();
    assert!(!log.contains("worker failed"), "{log}");
    assert!(s.c.ping(1, IpAddr::V4(s.addrs[2]), 3));
    assert_leases_intact(&s.e, &before, &[1, 2, 3]);
    wait_tables(&s.c, &s.e, &[1, 2, 3], CHANGE_BOUND);
}

/// Loss, duplication and reordering of the vxlan datagrams leaving a host's
/// `eth0`, without `sch_netem` (kernels built without it are common): nftables
/// drops 2 % and duplicates 2 % on the egress hook, and an HTB class limited to
/// 100 Mbit/s delays the datagrams whose inner TCP checksum has its low three
/// bits zero (one in eight, pseudo-random), so that later ones overtake them.
const UNDERLAY_FAULTS: &str = "nft -f - <<'RULES'
table netdev ringlay_test {
    chain egress {
        type filter hook egress device \"eth0\" priority 0;
        ip protocol udp udp dport 8472 numgen random mod 100 < 2 counter drop
        ip protocol udp udp dport 8472 numgen random mod 100 < 2 counter dup to \"eth0\"
    }
}
RULES
tc qdisc add dev eth0 root handle 1: htb default 10 r2q 1000
tc class add dev eth0 parent 1: classid 1:10 htb rate 10gbit
tc class add dev eth0 parent 1: classid 1:20 htb rate 100mbit
tc filter add dev eth0 parent 1: protocol ip u32 match ip protocol 17 0xff \
    match ip dport 8472 0xffff match u8 0x00 0x07 at 87 flowid 1:20";

/// The number after each `counter packets` in an nft listing.
fn nft_counters(listing: &str) -> Vec<u64> {
    listing
        .split("counter packets ")
        .skip(1)
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Packets sent through HTB class `class` (`tc -s class show`).
fn htb_sent(stats: &str, class: &str) -> u64 {
    let rest = stats
        .split(&format!("class htb {class} "))
        .nth(1)
        .unwrap_or_default();
    rest.split(" bytes ")
        .nth(1)
        .and_then(|r| r.split(" pkt").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn underlay_loss_duplication_and_reordering() {
    if !require_root("fault: lossy underlay") || !require_etcd("fault: lossy underlay") {
        return;
    }
    let c = Cluster::hosts("fkn", 3);
    let (_etcd_ns, e) = etcd_on_switch(&c, "fkn", VXLAN_CONFIG);
    // Host 1 sends each datagram on its own (no UDP GSO), so the faults act on
    // datagrams as a lossy network does, not on whole 64 KiB trains.
    let d1 = c.ringlay_etcd(1, e.endpoint(), &["--queues", "1", "--offload", "tso,gro"]);
    let a1 = c.readdress_container(1, subnet_in(d1.subnet_file()));
    let (d23, a23) = join(&c, &e, &[2, 3]);
    let before = leases(&e);
    let base = c.iperf3_to(2, a23[0], 1, 3, 1);
    // What the hosts counted before (e.g. `no_lease` for the containers' first
    // packets, sent before they moved into their leases).
    let counted: Vec<_> = [1, 2].iter().map(|&i| errors_and_drops(&c, i)).collect();

    c.host(1).sh(UNDERLAY_FAULTS);
    let p = PingSeries::start(&c, 3, a1, 30);
    let lossy = c.iperf3_to(2, a23[0], 1, 5, 1);
    let p = p.finish();
    let nft = c.host(1).sh("nft list table netdev ringlay_test");
    let tc = c.host(1).sh("tc -s class show dev eth0");
    c.host(1)
        .sh("nft delete table netdev ringlay_test\ntc qdisc del dev eth0 root");
    let counters = nft_counters(&nft);
    let (dropped, duplicated) = (counters[0], counters[1]);
    let (fast, slow) = (htb_sent(&tc, "1:10"), htb_sent(&tc, "1:20"));
    println!(
        "lossy underlay: TCP 1 -> 2 completed at {lossy:.2} Gbit/s (without the faults {base:.2}); \
         datagrams dropped {dropped}, duplicated {duplicated}, delayed {slow} of {}",
        fast + slow
    );
    assert!(dropped > 0 && duplicated > 0 && slow > 0, "{nft}\n{tc}");
    p.report("lossy underlay, 3 -> 1");
    for (i, before) in [1, 2].into_iter().zip(&counted) {
        let (errors, drops) = errors_and_drops(&c, i);
        println!("lossy underlay: host {i} errors {errors}, drops {drops} (before: {before:?})");
        assert!(is_empty(&errors), "host {i}: {errors}");
        assert_eq!(drops, before.1, "host {i} dropped datagrams");
    }
    // Back pressure on the receiver is counted apart from errors.
    let mark = d23[0].log().len();
    d23[0].sigusr1();
    assert!(d23[0].wait_log("counters:", mark, Duration::from_secs(5)));
    let exhausted: u64 = d23[0].log()[mark..]
        .split("recv_ring_empty=")
        .skip(1)
        .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    println!(
        "lossy underlay: host 2's receive buffer ring ran empty {exhausted} times (not an error)"
    );
    assert_leases_intact(&e, &before, &[1, 2, 3]);
    wait_tables(&c, &e, &[1, 2, 3], CHANGE_BOUND);
}

/// A tmpfs of 16 KiB mounted on a fresh directory, unmounted at drop.
struct TinyFs(PathBuf);

impl TinyFs {
    fn mount(dir: PathBuf) -> TinyFs {
        std::fs::create_dir_all(&dir).expect("mount point");
        sh_root(&format!(
            "mount -t tmpfs -o size=16k,mode=0755 ringlay-test {}",
            dir.display()
        ));
        TinyFs(dir)
    }

    /// Fills what is left of it.
    fn fill(&self) {
        sh_root(&format!(
            "dd if=/dev/zero of={}/fill bs=4k 2>/dev/null || true",
            self.0.display()
        ));
        let probe = std::fs::write(self.0.join("probe"), [0u8; 4096]);
        assert!(probe.is_err(), "{} is not full", self.0.display());
    }

    fn remount(&self, opts: &str) {
        sh_root(&format!("mount -o remount,{opts} {}", self.0.display()));
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        // Lazily: a process of a failed test may still hold a file in it.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .stdin(Stdio::null())
            .status();
    }
}

fn sh_root(script: &str) {
    let out = Command::new("sh")
        .args(["-ec", script])
        .stdin(Stdio::null())
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn subnet_env_on_a_full_then_read_only_filesystem() {
    if !require_root("fault: subnet.env") || !require_etcd("fault: subnet.env") {
        return;
    }
    let c = Cluster::hosts("fks", 3);
    let (_etcd_ns, e) = etcd_on_switch(&c, "fks", VXLAN_CONFIG);
    // Dropped before the cluster removes its directory.
    let fs = TinyFs::mount(c.dir().join("run-flannel"));
    let env1 = fs.0.join("subnet.env");
    let env1_s = env1.display().to_string();
    let args1 = ["--queues", "1", "--subnet-file", env1_s.as_str()];
    let mut d1 = c.ringlay_etcd(1, e.endpoint(), &args1);
    let a1 = c.readdress_container(1, subnet_in(&env1));
    let (_d2, a2) = join(&c, &e, &[2]);
    let a2 = a2[0];
    let written = std::fs::read_to_string(&env1).expect("subnet.env");
    assert!(c.ping(1, IpAddr::V4(a2), 3));

    // Full, then read-only, while running: ringlay writes subnet.env once, at
    // start-up, and never needs to again — not even when its lease is re-created.
    fs.fill();
    let k1 = format!("{PREFIX}/subnets/{}-24", subnet_in(&env1));
    let mark = d1.log().len();
    e.del(&k1);
    assert!(
        d1.wait_log("re-created our lease", mark, Duration::from_secs(5)),
        "{}",
        d1.log()
    );
    fs.remount("ro");
    d1.sighup();
    assert!(c.ping(1, IpAddr::V4(a2), 5), "{}", d1.log());
    assert!(c.ping(2, IpAddr::V4(a1), 5), "{}", d1.log());
    let before = leases(&e);

    // Killed and restarted on the read-only filesystem: the file already holds
    // what it would write, so it says so and forwards.
    let p = PingSeries::start(&c, 2, a1, 30);
    sleep(Duration::from_secs(1));
    d1.kill();
    let d1 = c.ringlay_etcd(1, e.endpoint(), &args1);
    let ready = unix_now();
    let log = d1.log();
    let line = log
        .lines()
        .find(|l| l.contains(&env1_s))
        .unwrap_or_else(|| panic!("no line naming {env1_s}:\n{log}"));
    assert!(line.contains("Read-only file system"), "{line}");
    println!("subnet.env read-only at restart: {line}");
    assert_eq!(std::fs::read_to_string(&env1).ok(), Some(written));
    let p = p.finish();
    p.report("subnet.env read-only, restart, 2 -> 1");
    let recovery = p
        .first_reply_after(ready)
        .unwrap_or_else(|| panic!("no reply after the restart:\n{}", p.out));
    println!("subnet.env read-only: recovery {recovery:.1?} after ready (bound {RESTART_BOUND:?})");
    assert!(recovery <= RESTART_BOUND);

    // A node that has no subnet.env yet cannot start without one: the error names
    // the file and the cause, and nothing is left behind.
    let env3 = fs.0.join("subnet-3.env");
    let env3_s = env3.display().to_string();
    let args3 = ["--queues", "1", "--subnet-file", env3_s.as_str()];
    for (state, cause) in [
        ("ro", "Read-only file system"),
        ("rw", "No space left on device"),
    ] {
        fs.remount(state);
        let err = c
            .try_ringlay_from(
                3,
                c.underlay_ip(3),
                &["--etcd-endpoints", e.endpoint()],
                &args3,
            )
            .expect_err("no subnet.env, no start");
        let line = err
            .lines()
            .find(|l| l.contains(&env3_s))
            .unwrap_or_else(|| panic!("no line naming {env3_s}:\n{err}"));
        assert!(line.contains(cause), "{line}");
        println!("subnet.env {state}, fresh start: {line}");
        let link = c.host(3).exec(&["ip", "link", "show", "ringlay0"]);
        assert!(!link.status.success(), "ringlay0 left behind on host 3");
    }
    // Room again: host 3 starts with the lease it acquired before.
    std::fs::remove_file(fs.0.join("fill")).expect("rm fill");
    let d3 = c.ringlay_etcd(3, e.endpoint(), &args3);
    assert!(
        d3.log().contains("kept the lease etcd already had"),
        "{}",
        d3.log()
    );
    let a3 = c.readdress_container(3, subnet_in(&env3));
    assert!(c.ping(3, IpAddr::V4(a1), 3));
    assert!(c.ping(3, IpAddr::V4(a2), 3));
    let mut all = before.clone();
    all.extend(
        leases(&e)
            .into_iter()
            .filter(|(_, v)| public_ip(v) == "192.0.2.3"),
    );
    assert_leases_intact(&e, &all, &[1, 2, 3]);
    wait_tables(&c, &e, &[1, 2, 3], CHANGE_BOUND);
    drop((d1, d3));
    let _ = a3;
}
