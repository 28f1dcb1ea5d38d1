//! The data path end to end, in network namespaces (tests/common/netns.rs): ringlay
//! on two or three hosts carries container traffic with flannel's udp and vxlan
//! formats, interoperates with the kernel's vxlan device (a flannel vxlan node),
//! honours the TUN MTU, follows the leases file on SIGHUP, drops and counts forged
//! datagrams, answers packets without a lease with ICMP net-unreachable, stops
//! promptly on SIGTERM, and reports CLI mistakes clearly.
//!
//! Needs root (skips with a printed reason otherwise; fails under `CI=true`), except
//! the `--help` part of `cli_errors_are_clear`. Every test builds its own cluster
//! with its own name prefix; loads are bounded (iperf3 2 s, pings counted).
//!
//! Run: `cargo test --test dataplane -- --test-threads=2`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::netns::{self, replace_file, Cluster, Daemon, Netns};

/// Workers (TUN queues) per daemon in every test.
const QUEUES: &str = "2";
/// Iperf3 sanity floor: a correctness test, not a benchmark.
const MIN_GBPS: f64 = 0.05;

// --- helpers ----------------------------------------------------------------------

/// A static leases file listing only `hosts` (lease `100.96.i.0-24`, PublicIP
/// 192.0.2.i), in the format of [`netns::static_leases_json`].
fn leases_json(hosts: &[usize], backend: &str, vteps: bool) -> String {
    let leases: Vec<String> = hosts
        .iter()
        .map(|&i| {
            let ip = netns::underlay_ip(i);
            let value = if vteps {
                format!(
                    r#"{{"PublicIP": "{ip}", "BackendType": "vxlan", "BackendData": {{"VNI": 1, "VtepMAC": "{}"}}}}"#,
                    netns::vtep_mac(i)
                )
            } else {
                format!(r#"{{"PublicIP": "{ip}", "PublicIPv6": null}}"#)
            };
            format!(r#"    "100.96.{i}.0-24": {value}"#)
        })
        .collect();
    format!(
        "{{\"config\": {{\"Network\": \"{}\", \"Backend\": {{\"Type\": \"{backend}\"}}}},\n \"subnets\": {{\n{}\n }}}}\n",
        netns::NETWORK,
        leases.join(",\n")
    )
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `ping -n -c count -W 1 -i 0.2 [extra...] dst` in container `from` (under
/// `timeout`); its output.
fn ping_out(c: &Cluster, from: usize, dst: &str, count: u32, extra: &[&str]) -> Output {
    let count_s = count.to_string();
    let bound = (count / 5 + 5).to_string();
    let mut argv = vec![
        "timeout", &bound, "ping", "-n", "-c", &count_s, "-W", "1", "-i", "0.2",
    ];
    argv.extend_from_slice(extra);
    argv.push(dst);
    c.container(from).exec(&argv)
}

/// One worker's counters: `name → value` from a `counters: worker K: a=1 b=2` line.
type Counters = BTreeMap<String, u64>;

/// The per-worker counters of the last `counters: worker K:` lines in `log`
/// (index K), SIGUSR1's or the final ones.
fn parse_counters(log: &str) -> Vec<Counters> {
    let mut workers: BTreeMap<usize, Counters> = BTreeMap::new();
    for line in log.lines() {
        let Some(rest) = line.split("counters: worker ").nth(1) else {
            continue;
        };
        let Some((k, fields)) = rest.split_once(':') else {
            continue;
        };
        let Ok(k) = k.trim().parse::<usize>() else {
            continue;
        };
        let map = fields
            .split_whitespace()
            .filter_map(|f| {
                let (name, v) = f.split_once('=')?;
                Some((name.to_owned(), v.parse().ok()?))
            })
            .collect();
        workers.insert(k, map);
    }
    workers.into_values().collect()
}

/// Sends SIGUSR1 and returns every worker's counters as the daemon logged them.
fn usr1_counters(d: &Daemon, workers: usize) -> Vec<Counters> {
    let from = d.log().len();
    d.sigusr1();
    let last = format!("counters: worker {}:", workers - 1);
    assert!(
        d.wait_log(&last, from, Duration::from_secs(5)),
        "host {}: no counters after SIGUSR1:\n{}",
        d.host(),
        d.log()
    );
    let log = d.log();
    let counters = parse_counters(&log[from..]);
    assert_eq!(counters.len(), workers, "{}", &log[from..]);
    counters
}

/// The sum of counter `name` over the workers (absent = 0: zero drops are omitted).
fn total(counters: &[Counters], name: &str) -> u64 {
    counters
        .iter()
        .map(|w| w.get(name).copied().unwrap_or(0))
        .sum()
}

fn split(counters: &[Counters], name: &str) -> String {
    counters
        .iter()
        .map(|w| w.get(name).copied().unwrap_or(0).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// A temporary directory removed at drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(netns::unique_name(prefix));
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// --- 1. udp and vxlan between two ringlay hosts ----------------------------------------

/// The offload counters, which must all move with `--offload all` and stay at
/// zero with `--offload off`.
const OFFLOAD_COUNTERS: [&str; 5] = [
    "tso_super_packets",
    "gso_sends",
    "gathered_sends",
    "gro_receives",
    "coalesced_writes",
];

fn two_hosts_ping_and_tcp(prefix: &str, backend: &str, mtu: u32, offload: &str, extra: &[&str]) {
    let c = Cluster::two_hosts(prefix);
    let leases = c.static_leases_json(backend, backend == "vxlan");
    let mut args = vec!["--queues", QUEUES, "--offload", offload];
    args.extend_from_slice(extra);
    let d1 = c.ringlay(1, &leases, &args);
    let d2 = c.ringlay(2, &leases, &args);
    for mode in uring_modes_expected(extra) {
        assert!(
            d1.log().contains(mode),
            "host 1 should log {mode:?}:\n{}",
            d1.log()
        );
    }

    // subnet.env, and the TUN as flanneld would set up its device.
    let env = fs::read_to_string(d1.subnet_file()).expect("subnet.env of host 1");
    for line in [
        "FLANNEL_NETWORK=100.96.0.0/16\n",
        "FLANNEL_SUBNET=100.96.1.1/24\n",
        &format!("FLANNEL_MTU={mtu}\n"),
        "FLANNEL_IPMASQ=false\n",
    ] {
        assert!(env.contains(line), "subnet.env lacks {line:?}:\n{env}");
    }
    let env2 = fs::read_to_string(d2.subnet_file()).expect("subnet.env of host 2");
    assert!(env2.contains("FLANNEL_SUBNET=100.96.2.1/24\n"), "{env2}");
    let link = c
        .host(1)
        .sh("ip -o link show ringlay0; ip -o -4 addr show ringlay0");
    assert!(link.contains(&format!("mtu {mtu} ")), "{link}");
    assert!(link.contains("inet 100.96.1.0/16"), "{link}");
    // Each queue holds --tun-queue-len packets.
    let qlen = flag_value(extra, "--tun-queue-len").map_or(
        ringlay::dataplane::DEFAULT_TUN_QUEUE_LEN.to_string(),
        str::to_string,
    );
    assert!(link.contains(&format!(" qlen {qlen}")), "{link}");

    let ip1: IpAddr = c.container_ip(1).into();
    let ip2: IpAddr = c.container_ip(2).into();
    assert!(c.ping(1, ip2, 3), "{backend}: c1 -> c2\n{}", d1.log());
    assert!(c.ping(2, ip1, 3), "{backend}: c2 -> c1\n{}", d2.log());

    let up = c.iperf3(2, 1, 2, 1);
    let down = c.iperf3(1, 2, 2, 1);
    eprintln!(
        "{backend}: iperf3 2 s, 1 stream: c1 -> c2 {up:.3} Gbit/s, c2 -> c1 {down:.3} Gbit/s"
    );
    assert!(up > MIN_GBPS, "{backend}: c1 -> c2 {up} Gbit/s");
    assert!(down > MIN_GBPS, "{backend}: c2 -> c1 {down} Gbit/s");

    for d in [&d1, &d2] {
        let w = usr1_counters(d, 2);
        let tx = total(&w, "tunnel_tx_packets");
        let rx = total(&w, "tunnel_rx_packets");
        // Two seconds of TCP each way are far more than this many segments/ACKs.
        assert!(tx > 1000 && rx > 1000, "host {}: {w:?}", d.host());
        assert_eq!(total(&w, "send_errors"), 0, "host {}: {w:?}", d.host());
        // Each host sent and received a bulk TCP stream: every mechanism was used
        // (or, switched off, none was).
        for name in OFFLOAD_COUNTERS {
            let n = total(&w, name);
            match offload {
                "all" => assert!(n > 0, "{backend}: host {}: no {name}: {w:?}", d.host()),
                _ => assert_eq!(
                    n,
                    0,
                    "{backend}: host {}: {name} with offloads off",
                    d.host()
                ),
            }
        }
        // A TCP super-packet leaves gathered from the buffer it was read into
        // (only what one send cannot carry is copied), not copied segment by
        // segment.
        let (supers, gathered) = (total(&w, "tso_super_packets"), total(&w, "gathered_sends"));
        assert!(
            gathered * 10 >= supers * 9,
            "{backend}: host {}: {gathered} of {supers} super-packets gathered: {w:?}",
            d.host()
        );
        eprintln!(
            "{backend} offload {offload}: host {} super-packets {} gathered {} gso sends {} gro receives {} coalesced writes {}",
            d.host(),
            total(&w, "tso_super_packets"),
            total(&w, "gathered_sends"),
            total(&w, "gso_sends"),
            total(&w, "gro_receives"),
            total(&w, "coalesced_writes"),
        );
        eprintln!(
            "{backend}: host {} per-worker split: tun_rx {} tunnel_tx {} tunnel_rx {} tun_tx {}",
            d.host(),
            split(&w, "tun_rx_packets"),
            split(&w, "tunnel_tx_packets"),
            split(&w, "tunnel_rx_packets"),
            split(&w, "tun_tx_packets"),
        );
    }
}

/// The value `flag` is given in `args` (as two words), if it is.
fn flag_value<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    args.windows(2).find(|w| w[0] == flag).map(|w| w[1])
}

/// The running kernel's (major, minor) version.
fn kernel_version() -> (u32, u32) {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").expect("kernel release");
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// What the start-up log must say of how the TUN is read (by a multishot read
/// where the kernel has one, 6.7, unless `--tun-read poll` is among `extra`),
/// and of how io_uring runs completion work (deferred from 6.1, at every kernel
/// entry from 5.19, else by interrupting the worker).
fn uring_modes_expected(extra: &[&str]) -> [&'static str; 2] {
    let version = kernel_version();
    let polled = flag_value(extra, "--tun-read") == Some("poll");
    let reads = if polled || version < (6, 7) {
        "TUN reads by a poll and a read syscall per packet"
    } else {
        "TUN reads by a multishot read into the TX slots"
    };
    let task_work = if version < (5, 19) {
        "completion work run by interrupting the worker"
    } else if version < (6, 1) {
        "completion work run at every kernel entry"
    } else {
        "completion work deferred to each worker's wait (DEFER_TASKRUN)"
    };
    [reads, task_work]
}

#[test]
fn udp_two_hosts_ping_and_tcp() {
    if !netns::require_root("udp_two_hosts_ping_and_tcp") {
        return;
    }
    two_hosts_ping_and_tcp("dpudp", "udp", 1472, "all", &[]);
}

#[test]
fn udp_two_hosts_with_polled_tun_reads() {
    if !netns::require_root("udp_two_hosts_with_polled_tun_reads") {
        return;
    }
    // The way kernels before 6.7 read the TUN, chosen on any kernel; and a
    // TUN queue length other than the default.
    let extra = ["--tun-read", "poll", "--tun-queue-len", "2048"];
    two_hosts_ping_and_tcp("dpudppoll", "udp", 1472, "all", &extra);
}

#[test]
fn udp_two_hosts_without_offloads() {
    if !netns::require_root("udp_two_hosts_without_offloads") {
        return;
    }
    two_hosts_ping_and_tcp("dpudpoff", "udp", 1472, "off", &[]);
}

#[test]
fn vxlan_two_hosts_ping_and_tcp() {
    if !netns::require_root("vxlan_two_hosts_ping_and_tcp") {
        return;
    }
    // Workers that spin before sleeping carry the same traffic.
    two_hosts_ping_and_tcp("dpvx", "vxlan", 1450, "all", &["--busy-poll", "50"]);
}

#[test]
fn vxlan_two_hosts_without_offloads() {
    if !netns::require_root("vxlan_two_hosts_without_offloads") {
        return;
    }
    two_hosts_ping_and_tcp("dpvxoff", "vxlan", 1450, "off", &[]);
}

// --- 2. MTU ---------------------------------------------------------------------------

#[test]
fn mtu_exact_fits_and_larger_df_gets_frag_needed() {
    if !netns::require_root("mtu_exact_fits_and_larger_df_gets_frag_needed") {
        return;
    }
    let c = Cluster::two_hosts("dpmtu");
    let leases = c.static_leases_json("vxlan", true);
    let d1 = c.ringlay(1, &leases, &["--queues", QUEUES]);
    let _d2 = c.ringlay(2, &leases, &["--queues", QUEUES]);
    // The containers must not clamp first: only the TUN (1450) limits.
    c.set_container_mtu(1, 1500);
    c.set_container_mtu(2, 1500);

    // 1422 + 8 (ICMP) + 20 (IPv4) = 1450: exactly the TUN MTU, both ways.
    let ok = ping_out(&c, 1, "100.96.2.2", 2, &["-M", "do", "-s", "1422"]);
    assert!(
        ok.status.success(),
        "1450-byte DF ping c1 -> c2:\n{}\n{}",
        text(&ok),
        d1.log()
    );
    let ok = ping_out(&c, 2, "100.96.1.2", 2, &["-M", "do", "-s", "1422"]);
    assert!(
        ok.status.success(),
        "1450-byte DF ping c2 -> c1:\n{}",
        text(&ok)
    );

    // One byte more: host 1's stack refuses it at ringlay0 with fragmentation needed
    // (ping prints `Frag needed and DF set (mtu = 1450)` for the ICMP error, then
    // `local error: message too long, mtu=1450` once the path MTU is cached).
    let big = ping_out(&c, 1, "100.96.2.2", 2, &["-M", "do", "-s", "1423"]);
    let out = text(&big);
    eprintln!("ping -M do -s 1423:\n{out}");
    assert!(
        !big.status.success(),
        "1451-byte DF ping got through:\n{out}"
    );
    assert!(
        out.contains("Frag needed") || out.contains("message too long"),
        "no fragmentation-needed in:\n{out}"
    );
    assert!(
        out.contains("mtu = 1450") || out.contains("mtu=1450"),
        "{out}"
    );
}

// --- 3. kernel vxlan interop ------------------------------------------------------

#[test]
fn kernel_vxlan_interop_both_directions() {
    if !netns::require_root("kernel_vxlan_interop_both_directions") {
        return;
    }
    let c = Cluster::two_hosts("dpkvx");
    // The kernel node exactly as flanneld leaves it, offloads included: on veths a
    // TCP segment of container 2 (CHECKSUM_PARTIAL) crosses flannel.1 and the
    // underlay with its inner checksum never filled in, and ringlay must deliver
    // it as the kernel would (see `kernel_vxlan_interop_tcp_both_ways`).
    c.kernel_vxlan_node(2);
    let leases = c.static_leases_json("vxlan", true);
    let d1 = c.ringlay(1, &leases, &["--queues", QUEUES]);

    assert!(
        c.ping(1, c.container_ip(2).into(), 3),
        "ringlay c1 -> kernel c2\n{}",
        d1.log()
    );
    assert!(
        c.ping(2, c.container_ip(1).into(), 3),
        "kernel c2 -> ringlay c1\n{}",
        d1.log()
    );
    // With offloads on, ringlay hands the kernel 64 KiB UDP_SEGMENT sends. A veth
    // would carry those whole; with its UDP segmentation off, the kernel cuts
    // them before the device as a NIC without it would, so the capture shows the
    // frames a real wire would carry: each standard VXLAN within the 1500 MTU.
    c.host(1)
        .sh("ethtool -K eth0 tx-udp-segmentation off >/dev/null");
    let pcap = c.dir().join("interop-up.pcap");
    let pcap_arg = pcap.display().to_string();
    let mut dump = c.host(1).spawn(&[
        "timeout", "8", "tcpdump", "-n", "-i", "eth0", "-s", "0", "-c", "500", "-w", &pcap_arg,
        "-Q", "out", "udp", "dst", "port", "8472",
    ]);
    thread::sleep(Duration::from_millis(500));
    let up = c.iperf3(2, 1, 2, 1);
    let _ = dump.wait();
    let down = c.iperf3(1, 2, 2, 1);
    eprintln!(
        "ringlay <-> kernel vxlan, iperf3 2 s: c1 -> c2 {up:.3} Gbit/s, c2 -> c1 {down:.3} Gbit/s"
    );
    let frames = common::pcap::read_pcap(&pcap).expect("the capture of host 1's eth0");
    assert!(frames.len() >= 100, "only {} frames captured", frames.len());
    for f in &frames {
        assert!(
            f.orig_len <= 1514,
            "a {}-byte frame on a 1500-MTU wire",
            f.orig_len
        );
        let udp = common::pcap::split_outer_udp_v4(f).expect("an IPv4/UDP frame");
        assert_eq!(udp.dport, 8472);
        assert_eq!(udp.payload.first(), Some(&0x08), "VXLAN I flag");
    }
    let largest = frames.iter().map(|f| f.orig_len).max().unwrap_or(0);
    eprintln!(
        "{} vxlan frames captured, largest {largest} bytes",
        frames.len()
    );
    assert!(up > MIN_GBPS, "c1 -> c2 {up} Gbit/s");
    assert!(down > MIN_GBPS, "c2 -> c1 {down} Gbit/s");

    // The kernel really sent and received on its vxlan device.
    let stats = c.host(2).sh(
        "cat /sys/class/net/flannel.1/statistics/tx_packets /sys/class/net/flannel.1/statistics/rx_packets",
    );
    let v: Vec<u64> = stats
        .split_whitespace()
        .map(|s| s.parse().expect("counter"))
        .collect();
    assert!(v[0] > 1000 && v[1] > 1000, "flannel.1 tx/rx: {v:?}");
    let w = usr1_counters(&d1, 2);
    assert!(total(&w, "tunnel_rx_packets") > 1000, "{w:?}");
    assert!(total(&w, "gso_sends") > 0, "no segmented sends: {w:?}");
    eprintln!(
        "ringlay host 1 per-worker split vs kernel: tunnel_tx {} tunnel_rx {}",
        split(&w, "tunnel_tx_packets"),
        split(&w, "tunnel_rx_packets")
    );
}

/// TCP between a ringlay container and a kernel vxlan node's, 2 s each way (only
/// ringlay → kernel unless `both`): the kernel node runs as flanneld leaves it,
/// so its inner checksums arrive partial, and ringlay runs with `ringlay_args`.
/// (Complete inner checksums from a kernel node, computed in software, are
/// tests/corruption.rs's case.)
fn kernel_vxlan_tcp(tag: &str, both: bool, ringlay_args: &[&str]) {
    let c = Cluster::two_hosts(tag);
    c.kernel_vxlan_node(2);
    let leases = c.static_leases_json("vxlan", true);
    let mut args = vec!["--queues", QUEUES];
    args.extend_from_slice(ringlay_args);
    let d1 = c.ringlay(1, &leases, &args);
    assert!(
        c.ping(1, c.container_ip(2).into(), 3),
        "ringlay c1 -> kernel c2\n{}",
        d1.log()
    );
    let up = c.iperf3(2, 1, 2, 1);
    let down = if both { c.iperf3(1, 2, 2, 1) } else { f64::NAN };
    eprintln!(
        "{tag}: ringlay <-> kernel vxlan, {ringlay_args:?}: \
         c1 -> c2 {up:.3} Gbit/s, c2 -> c1 {down:.3} Gbit/s"
    );
    assert!(up > MIN_GBPS, "c1 -> c2 {up} Gbit/s\n{}", d1.log());
    assert!(
        !both || down > MIN_GBPS,
        "c2 -> c1 {down} Gbit/s\n{}",
        d1.log()
    );
}

#[test]
fn kernel_vxlan_interop_tcp_both_ways() {
    if !netns::require_root("kernel_vxlan_interop_tcp_both_ways") {
        return;
    }
    // Partial inner checksums, written to the TUN with NEEDS_CSUM; the kernel
    // node's GSO super-packets, which cross the veth whole, written for
    // segmentation at the TUN's MTU.
    kernel_vxlan_tcp("dpkvxp", true, &[]);
    // Without a virtio header ringlay completes partial checksums itself (the
    // kernel's ACKs). The kernel's data super-packets it cannot hand on without
    // segmentation offload: kernel -> ringlay TCP needs offloads on (README).
    kernel_vxlan_tcp("dpkvxo", false, &["--offload", "off"]);
}

// --- 4. SIGHUP ----------------------------------------------------------------------

#[test]
fn sighup_changes_reachability() {
    if !netns::require_root("sighup_changes_reachability") {
        return;
    }
    let c = Cluster::hosts("dphup", 3);
    let all = c.static_leases_json("udp", false);
    let d1 = c.ringlay(
        1,
        &leases_json(&[1, 2], "udp", false),
        &["--queues", QUEUES],
    );
    let _d2 = c.ringlay(2, &all, &["--queues", QUEUES]);
    let _d3 = c.ringlay(3, &all, &["--queues", QUEUES]);
    let ip2: IpAddr = c.container_ip(2).into();
    let ip3: IpAddr = c.container_ip(3).into();

    assert!(c.ping(1, ip2, 2), "c1 -> c2 before\n{}", d1.log());
    assert!(
        !c.ping(1, ip3, 1),
        "c1 -> c3 before: host 1 has no lease for it"
    );

    let file = c.dir().join("leases-1.json");
    let from = d1.log().len();
    replace_file(&file, &leases_json(&[1, 3], "udp", false));
    d1.sighup();
    // The edit poll may see the file first; either way both lines follow.
    assert!(
        d1.wait_log("lease removed", from, Duration::from_secs(5)),
        "{}",
        d1.log()
    );
    assert!(
        d1.wait_log("lease added", from, Duration::from_secs(1)),
        "{}",
        d1.log()
    );
    let log = d1.log();
    let after = &log[from..];
    assert!(
        after
            .lines()
            .any(|l| l.contains("lease added") && l.contains("100.96.3.0")),
        "{after}"
    );
    assert!(
        after
            .lines()
            .any(|l| l.contains("lease removed") && l.contains("100.96.2.0")),
        "{after}"
    );
    assert!(c.ping(1, ip3, 2), "c1 -> c3 after SIGHUP\n{}", d1.log());
    assert!(!c.ping(1, ip2, 1), "c1 -> c2 after SIGHUP: lease removed");

    // A malformed file is refused and the table in force is kept.
    let from = d1.log().len();
    replace_file(
        &file,
        "{\"config\": {\"Network\": \"100.96.0.0/16\"}, \"subnets\": {",
    );
    d1.sighup();
    assert!(
        d1.wait_log("refused", from, Duration::from_secs(5)),
        "{}",
        d1.log()
    );
    let log = d1.log();
    assert!(log[from..].contains("keeping"), "{}", &log[from..]);
    assert!(c.ping(1, ip3, 2), "c1 -> c3 after a bad edit\n{}", d1.log());
    assert!(!c.ping(1, ip2, 1), "c1 -> c2 after a bad edit");
    eprintln!("sighup log:\n{}", d1.log());
}

// --- 5. forged datagrams ----------------------------------------------------------

/// Sends `count` rounds of the named forged datagrams (`unknown_sender`,
/// `spoofed_source`, `wrong_vni`, `truncated`) from `bind` to ringlay on host 1
/// (192.0.2.1:8472), 20 ms apart. The vxlan frames carry a valid IPv4/ICMP echo
/// (correct header checksum) to 100.96.1.2 behind the inner Ethernet header
/// 0e:00:00:00:02:00 → host 1's VtepMAC 0e:00:00:00:01:00.
const FORGE_PY: &str = r#"
import socket, struct, sys, time

def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def icmp_echo(src, dst):
    body = struct.pack('!BBHHH', 8, 0, 0, 0x7e57, 1) + b'ringlay dataplane test'
    body = body[:2] + struct.pack('!H', csum(body)) + body[4:]
    hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(body), 0, 0x4000, 64, 1, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack('!H', csum(hdr)) + hdr[12:]
    assert csum(hdr) == 0
    return hdr + body

def vxlan(vni, inner):
    eth = bytes.fromhex('0e0000000100' '0e0000000200' '0800')
    return struct.pack('!II', 0x08000000, vni << 8) + eth + inner

frames = {
    'unknown_sender': vxlan(1, icmp_echo('100.96.2.2', '100.96.1.2')),
    'spoofed_source': vxlan(1, icmp_echo('100.96.9.9', '100.96.1.2')),
    'wrong_vni': vxlan(2, icmp_echo('100.96.2.2', '100.96.1.2')),
    'truncated': bytes(range(10)),
}
bind, count, kinds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((bind, 0))
for _ in range(count):
    for k in kinds:
        s.sendto(frames[k], ('192.0.2.1', 8472))
    time.sleep(0.02)
print('sent', count, 'each of', ' '.join(kinds))
"#;

fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[test]
fn spoofed_datagrams_are_dropped_and_counted() {
    if !netns::require_root("spoofed_datagrams_are_dropped_and_counted") {
        return;
    }
    const COUNT: u64 = 50;
    // Hosts 1 and 2 run ringlay with leases for 1 and 2; host 3 (192.0.2.3, in no
    // lease) runs nothing and is the attacker.
    let c = Cluster::hosts("dpspoof", 3);
    let leases = leases_json(&[1, 2], "vxlan", true);
    let d1 = c.ringlay(1, &leases, &["--queues", QUEUES]);
    let _d2 = c.ringlay(2, &leases, &["--queues", QUEUES]);
    let ip1: IpAddr = c.container_ip(1).into();
    assert!(c.ping(2, ip1, 1), "c2 -> c1 before\n{}", d1.log());

    let n = COUNT.to_string();
    let py = python3();
    let mut attacker = c.host(3).spawn(&[
        "timeout",
        "10",
        py,
        "-c",
        FORGE_PY,
        "192.0.2.3",
        &n,
        "unknown_sender",
    ]);
    let mut known = c.host(2).spawn(&[
        "timeout",
        "10",
        py,
        "-c",
        FORGE_PY,
        "192.0.2.2",
        &n,
        "spoofed_source",
        "wrong_vni",
        "truncated",
    ]);
    // Meanwhile, real traffic still flows.
    let ping = ping_out(&c, 2, "100.96.1.2", 5, &[]);
    let ping_text = text(&ping);
    assert!(
        ping.status.success() && ping_text.contains(" 0% packet loss"),
        "c2 -> c1 during the attack:\n{ping_text}"
    );
    for (who, child) in [("attacker", &mut attacker), ("host 2", &mut known)] {
        let status = child.wait().expect("wait for python");
        assert!(
            status.success(),
            "{who}: forging datagrams failed: {status}"
        );
    }

    let wanted = [
        "drop_unknown_sender",
        "drop_spoofed_source",
        "drop_wrong_vni",
        "drop_truncated",
    ];
    let deadline = Instant::now() + Duration::from_secs(3);
    let w = loop {
        let w = usr1_counters(&d1, 2);
        if wanted.iter().all(|k| total(&w, k) >= COUNT) || Instant::now() >= deadline {
            break w;
        }
        thread::sleep(Duration::from_millis(200));
    };
    for k in wanted {
        eprintln!("host 1 {k}: {} (per worker {})", total(&w, k), split(&w, k));
        assert!(total(&w, k) >= COUNT, "{k} < {COUNT}: {w:?}");
    }
    // None of them reached the TUN: only the 6 real echo requests did (a forged
    // echo accepted by mistake would add up to 50 per kind).
    eprintln!("host 1 counters: {w:?}");
    assert!(total(&w, "tun_tx_packets") < COUNT, "{w:?}");
}

// --- 6. no lease --------------------------------------------------------------------

#[test]
fn no_lease_gets_icmp_unreachable() {
    if !netns::require_root("no_lease_gets_icmp_unreachable") {
        return;
    }
    let c = Cluster::two_hosts("dpnl");
    let leases = c.static_leases_json("vxlan", true);
    let d1 = c.ringlay(1, &leases, &["--queues", QUEUES]);
    let out = ping_out(&c, 1, "100.96.77.1", 2, &[]);
    let t = text(&out);
    eprintln!("ping 100.96.77.1:\n{t}");
    assert!(!out.status.success(), "{t}");

    // ringlay itself saw the packets, found no lease and wrote ICMP errors back...
    let w = usr1_counters(&d1, 2);
    assert!(total(&w, "drop_no_lease") >= 2, "{w:?}");
    assert!(total(&w, "icmp_unreachable") >= 2, "{w:?}");
    // ...and the host must have delivered them to the container.
    let accept_local = c
        .host(1)
        .sh("sysctl -n net.ipv4.conf.all.accept_local net.ipv4.conf.ringlay0.accept_local");
    assert!(
        t.lines()
            .any(|l| l.contains("From 100.96.1.0") && l.contains("Destination Net Unreachable")),
        "ringlay wrote {} ICMP errors into its TUN but none reached the container (their \
         source 100.96.1.0 is a local address of host 1: a martian on input unless \
         accept_local is set; accept_local all/ringlay0 = {}):\n{t}\n{}",
        total(&w, "icmp_unreachable"),
        accept_local
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("/"),
        d1.log()
    );
}

// --- 7. SIGTERM ---------------------------------------------------------------------

#[test]
fn sigterm_stops_within_a_second_and_removes_the_tun() {
    if !netns::require_root("sigterm_stops_within_a_second_and_removes_the_tun") {
        return;
    }
    let c = Cluster::two_hosts("dpterm");
    let leases = c.static_leases_json("udp", false);
    let mut d1 = c.ringlay(1, &leases, &["--queues", QUEUES]);
    let _d2 = c.ringlay(2, &leases, &["--queues", QUEUES]);
    assert!(c.ping(1, c.container_ip(2).into(), 2), "{}", d1.log());
    let host1 = c.host(1).name().to_owned();
    assert!(c
        .host(1)
        .exec(&["ip", "link", "show", "ringlay0"])
        .status
        .success());

    let t0 = Instant::now();
    let status = d1.terminate();
    let took = t0.elapsed();
    eprintln!("SIGTERM to exit: {took:?}");
    assert!(status.success(), "exit {status}:\n{}", d1.log());
    assert!(took < Duration::from_millis(1500), "took {took:?}");

    let show = Command::new("ip")
        .args(["-n", &host1, "link", "show", "ringlay0"])
        .stdin(Stdio::null())
        .output()
        .expect("ip -n link show");
    assert!(
        !show.status.success(),
        "ringlay0 still there:\n{}",
        text(&show)
    );
    let routes = c.host(1).sh("ip -4 route show");
    assert!(!routes.contains("100.96.0.0/16"), "{routes}");
    let log = d1.log();
    assert!(log.contains("final counters"), "{log}");
    let w = parse_counters(&log[log.find("final counters").unwrap_or(0)..]);
    assert_eq!(w.len(), 2, "{log}");
    assert!(total(&w, "tunnel_tx_packets") >= 2, "{w:?}");
}

// --- 8. CLI -------------------------------------------------------------------------

#[test]
fn cli_errors_are_clear() {
    let bin = netns::ringlay_bin();

    // --help: every flag, and each default.
    let help = Command::new(&bin)
        .args(["run", "--help"])
        .output()
        .expect("ringlay run --help");
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let flags = [
        ("--static-leases", None),
        ("--public-ip", Some("[default:")),
        ("--iface", Some("[default:")),
        ("--tun-name", Some("[default: ringlay0]")),
        ("--queues", Some("[default:")),
        ("--subnet-file", Some("[default: /run/flannel/subnet.env]")),
        ("--pin-workers", None),
        ("--log-level", Some("[default: info]")),
    ];
    for (flag, default) in flags {
        let start = help
            .find(&format!("\n      {flag}"))
            .unwrap_or_else(|| panic!("--help lacks {flag}:\n{help}"));
        let section = &help[start + 1..];
        let end = section[1..]
            .find("\n      --")
            .or_else(|| section.find("\n  -h"))
            .map_or(section.len(), |e| e + 1);
        let section = &section[..end];
        if let Some(d) = default {
            assert!(section.contains(d), "{flag} lacks {d}:\n{section}");
        }
    }

    if !netns::require_root("cli_errors_are_clear (the rest)") {
        return;
    }
    let dir = TempDir::new("ringlay-dpcli");
    let leases = dir.0.join("leases.json");
    fs::write(&leases, leases_json(&[2, 3], "udp", false)).expect("write leases");
    let leases_s = leases.display().to_string();
    let subnet_s = dir.0.join("subnet.env").display().to_string();
    let ns = Netns::new("dpcli");
    // An underlay interface holding 192.0.2.1 (a veth pair: no dummy module here).
    ns.sh("ip link add eth0 type veth peer name eth1
         ip addr add 192.0.2.1/24 dev eth0
         ip link set eth1 up
         ip link set eth0 up");

    // A --public-ip that no lease names.
    let out = ns.exec(&[
        "timeout",
        "10",
        &bin,
        "run",
        "--static-leases",
        &leases_s,
        "--public-ip",
        "192.0.2.1",
        "--subnet-file",
        &subnet_s,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("public IP in no lease:\n{stderr}");
    assert!(!out.status.success(), "{stderr}");
    assert_ne!(out.status.code(), Some(124), "timed out: {stderr}");
    assert!(stderr.contains("--public-ip"), "{stderr}");
    assert!(stderr.contains("192.0.2.1"), "{stderr}");
    assert!(!ns
        .exec(&["ip", "link", "show", "ringlay0"])
        .status
        .success());
    assert!(
        !Path::new(&subnet_s).exists(),
        "subnet.env written on failure"
    );

    // Not root: no CAP_NET_ADMIN.
    if !Path::new("/usr/bin/setpriv").exists() && !Path::new("/bin/setpriv").exists() {
        eprintln!("cli_errors_are_clear: no setpriv (util-linux), skipping the non-root part");
        return;
    }
    let out = ns.exec(&[
        "timeout",
        "10",
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        &bin,
        "run",
        "--static-leases",
        &leases_s,
        "--public-ip",
        "192.0.2.1",
        "--subnet-file",
        &subnet_s,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if stderr.starts_with("setpriv:") {
        eprintln!("cli_errors_are_clear: uid 65534 cannot run {bin} ({stderr}); skipping");
        return;
    }
    eprintln!("as uid 65534:\n{stderr}");
    assert!(!out.status.success(), "{stderr}");
    assert_ne!(out.status.code(), Some(124), "timed out: {stderr}");
    assert!(
        stderr.lines().any(|l| l.contains("CAP_NET_ADMIN")),
        "{stderr}"
    );
    assert!(!ns
        .exec(&["ip", "link", "show", "ringlay0"])
        .status
        .success());
}
