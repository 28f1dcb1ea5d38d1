//! Hostile input on the tunnel port, in network namespaces: two ringlay hosts and
//! an attacker on one switch. Host 3 holds no lease and runs no ringlay; from its
//! own underlay address (192.0.2.3) and from forged ones (host 2's 192.0.2.2, and
//! 192.0.2.77 / 192.0.2.200 that nobody holds) it sends host 1's tunnel port
//! every kind of bad datagram: random bytes, truncated and oversized frames,
//! inner packets longer than their datagram, forged outer sources, other VNIs,
//! ARP, broadcast and multicast MACs, wrong VXLAN flags, inner addresses outside
//! the subnets.
//!
//! For each backend (vxlan on 8472, udp on 8285):
//!
//! 1. each kind in a phase of its own, paced: every datagram the kernel delivered
//!    to ringlay's sockets (`Udp: InDatagrams` of host 1's namespace) is counted
//!    by ringlay as received and dropped for the expected reason; none reaches
//!    the TUN or is credited to the real peer; every datagram sent is either
//!    counted so or shown dropped by the kernel (`InErrors`, reassembly failures);
//! 2. iperf3 between the containers for 5 s, then again for 5 s while the
//!    attacker floods every kind as fast as it can for 5 s: both complete with a
//!    non-zero throughput (printed);
//! 3. afterwards the daemon still runs and forwards (ping), and it counted no
//!    error of its own.
//!
//! Forged sources use `IP_TRANSPARENT` sockets (a forged IP source from another
//! MAC passes a Linux bridge). A frame forged from a real peer's address whose
//! inner packet is one that peer could send is indistinguishable from the peer's
//! traffic (flannel's formats carry no authentication, RFC 7348 §7) and is not
//! sent here: the underlay must keep forged sources out.
//!
//! And hostile values in etcd while two ringlay nodes follow it
//! ([`hostile_etcd_values`]): values of 1 MiB, not UTF-8, JSON of the wrong
//! types, objects naming no address (`{}`); keys of another prefix length,
//! outside the network, not a subnet, not UTF-8; garbage over a peer's lease and
//! over a node's own lease (`{}` included); a network
//! config that is not JSON and one with another network. Each bad key is
//! warned about once (not again on later events nor after the resync that an
//! etcd restart causes), the table keeps its peers, traffic flows, nothing exits.
//!
//! Needs root, python3, etcd and etcdctl. Run: `cargo test --test hostile`.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::{acquired_subnet, counters, etcd_on_switch, status, PREFIX, VXLAN_CONFIG};
use common::etcd::require_etcd;
use common::netns::{require_command, require_root, vtep_mac, Cluster, Daemon, Netns};

/// The attacker: `python3 -c FLOOD_PY BACKEND OWN_IP PEER_IP MODE ARGS...`.
///
/// * `count KIND N PPS`: sends N datagrams of one kind at about PPS per second.
/// * `flood SECONDS MAX`: every kind in turn, as fast as it goes, until SECONDS
///   passed or MAX datagrams were sent.
///
/// Prints a JSON object: datagrams sent per kind.
const FLOOD_PY: &str = r#"
import json, os, random, socket, struct, sys, time

BACKEND, OWN, PEER, MODE = sys.argv[1:5]
TARGET = ('192.0.2.1', 8472 if BACKEND == 'vxlan' else 8285)
UNKNOWN = ['192.0.2.77', '192.0.2.200']
OUR_MAC, PEER_MAC = bytes.fromhex('0e0000000100'), bytes.fromhex('0e0000000200')
OUR_C, PEER_C = '100.96.1.2', '100.96.2.2'
IP_TRANSPARENT = 19
rnd = random.Random(8)

def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def ipv4(src, dst, payload=b'hostile input', total=None, good=True):
    udp = struct.pack('!HHHH', 40000, 9, 8 + len(payload), 0) + payload
    tl = 20 + len(udp) if total is None else total
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, tl, 0, 0x4000, 64, 17, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    c = csum(h)
    if not good:
        c = c ^ 0x5a5a
    return h[:10] + struct.pack('!H', c) + h[12:] + udp

def vx(inner, flags=0x08, vni=1, dst=OUR_MAC, src=PEER_MAC, et=0x0800):
    return struct.pack('!II', flags << 24, vni << 8) + dst + src + struct.pack('!H', et) + inner

def frame(inner):
    return vx(inner) if BACKEND == 'vxlan' else inner

def good_inner():
    return ipv4(PEER_C, OUR_C)

HEAD = 22 if BACKEND == 'vxlan' else 0
ARP = struct.pack('!HHBBH6s4s6s4s', 1, 0x0800, 6, 4, 1, PEER_MAC,
                  socket.inet_aton('100.96.2.0'), b'\0' * 6, socket.inet_aton('100.96.1.0'))

def k_random():
    return OWN, os.urandom(rnd.randint(1, 1400))

def k_truncated():
    if BACKEND == 'vxlan':
        return OWN, os.urandom(rnd.randint(0, HEAD - 1))
    n = rnd.randint(0, 19)
    return OWN, (b'\x45' + os.urandom(n - 1)) if n else b''

def k_oversized():
    if rnd.random() < 0.5:
        # a 65000-byte datagram (fragmented on the wire) whose inner packet claims more
        return OWN, frame(ipv4(PEER_C, OUR_C, os.urandom(65000 - HEAD - 28), total=65535))
    # a small datagram whose inner packet claims 1400 bytes
    return OWN, frame(ipv4(PEER_C, OUR_C, os.urandom(100), total=1400))

def k_spoof_unknown():
    return rnd.choice([OWN] + UNKNOWN), frame(good_inner())

def k_spoof_peer():
    src = rnd.choice(['100.96.9.9', '100.96.1.7', '198.51.100.9'])
    return PEER, frame(ipv4(src, OUR_C))

def k_not_our_subnet():
    dst = rnd.choice(['100.96.9.9', '198.51.100.7', '100.96.2.3'])
    return PEER, frame(ipv4(PEER_C, dst))

def k_ip_checksum():
    return OWN, frame(ipv4(PEER_C, OUR_C, good=False))

def k_wrong_vni():
    return OWN, vx(good_inner(), vni=rnd.choice([0, 2, 0xffffff]))

def k_arp():
    return OWN, vx(ARP, dst=rnd.choice([b'\xff' * 6, OUR_MAC]), et=0x0806)

def k_multicast():
    dst = rnd.choice([b'\xff' * 6, bytes.fromhex('01005e0000fb'), bytes.fromhex('333300000001')])
    return OWN, vx(good_inner(), dst=dst)

def k_vxlan_flags():
    return OWN, vx(good_inner(), flags=rnd.choice([0x00, 0x80, 0x77]))

def k_not_our_mac():
    return OWN, vx(good_inner(), dst=bytes.fromhex('0e0000000900'))

def k_vxlan_frames():
    return OWN, vx(good_inner(), vni=rnd.choice([1, 2]))

COMMON = ['random', 'truncated', 'oversized', 'spoof_unknown', 'spoof_peer',
          'not_our_subnet', 'ip_checksum']
KINDS = COMMON + (['wrong_vni', 'arp', 'multicast', 'vxlan_flags', 'not_our_mac']
                  if BACKEND == 'vxlan' else ['vxlan_frames'])

socks = {}
def sock(src):
    s = socks.get(src)
    if s is None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if src != OWN:
            s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.bind((src, 0))
        socks[src] = s
    return s

sent = {}
def send(kind):
    src, data = globals()['k_' + kind]()
    sock(src).sendto(data, TARGET)
    sent[kind] = sent.get(kind, 0) + 1

if MODE == 'count':
    kind, n, pps = sys.argv[5], int(sys.argv[6]), float(sys.argv[7])
    start = time.monotonic()
    for i in range(n):
        send(kind)
        ahead = start + (i + 1) / pps - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
elif MODE == 'flood':
    secs, most = float(sys.argv[5]), int(sys.argv[6])
    end = time.monotonic() + secs
    total, rounds = 0, 0
    while total < most and time.monotonic() < end:
        for kind in KINDS:
            # one 65000-byte datagram is 45 fragments: a twentieth as often
            if kind == 'oversized' and rounds % 20:
                continue
            send(kind)
            total += 1
        rounds += 1
else:
    sys.exit('unknown mode ' + MODE)
print(json.dumps(sent))
"#;

/// Datagrams per counted phase, and their pace (the debug build keeps up with it).
const PHASE_COUNT: u32 = 400;
const PHASE_PPS: u32 = 2000;
/// Oversized datagrams are 45 fragments each: fewer, slower.
const OVERSIZED_COUNT: u32 = 100;
const OVERSIZED_PPS: u32 = 200;
/// How long the flood and each iperf3 run last.
const FLOOD_SECS: u32 = 5;
/// At most this many datagrams in one flood.
const FLOOD_MAX: u32 = 2_000_000;

/// The drop reasons of the receive path (the others are the TUN side's: a
/// packet the host's kernel routes into the TUN without a lease, e.g. IPv6
/// neighbour discovery, counts as `no_lease` at any time).
const INBOUND: &[&str] = &[
    "truncated",
    "vxlan_flags",
    "wrong_vni",
    "arp",
    "multicast_mac",
    "not_our_mac",
    "ethertype",
    "ip_truncated",
    "ip_version",
    "ip_header_len",
    "ip_total_len",
    "ip_checksum",
    "unknown_sender",
    "spoofed_source",
    "not_our_subnet",
];

/// Each kind and the drop reasons its datagrams may be counted under (`None`:
/// any reason of the receive path, for random bytes).
fn kinds(backend: &str) -> Vec<(&'static str, Option<&'static [&'static str]>)> {
    let mut v: Vec<(&str, Option<&[&str]>)> = vec![
        ("random", None),
        (
            "truncated",
            Some(if backend == "vxlan" {
                &["truncated"]
            } else {
                &["truncated", "ip_truncated"]
            }),
        ),
        ("oversized", Some(&["ip_total_len"])),
        ("spoof_unknown", Some(&["unknown_sender"])),
        ("spoof_peer", Some(&["spoofed_source"])),
        ("not_our_subnet", Some(&["not_our_subnet"])),
        ("ip_checksum", Some(&["ip_checksum"])),
    ];
    if backend == "vxlan" {
        v.extend([
            ("wrong_vni", Some(&["wrong_vni"][..])),
            ("arp", Some(&["arp"][..])),
            ("multicast", Some(&["multicast_mac"][..])),
            ("vxlan_flags", Some(&["vxlan_flags"][..])),
            ("not_our_mac", Some(&["not_our_mac"][..])),
        ]);
    } else {
        // VXLAN frames on the udp port: version 0 where an IP header should be.
        v.push(("vxlan_frames", Some(&["ip_version"][..])));
    }
    v
}

/// What a phase compares before and after.
#[derive(Debug, Clone, PartialEq)]
struct Counts {
    drops: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    tunnel_rx: u64,
    tun_tx: u64,
    /// Datagrams credited to the real peer (host 2).
    peer_rx: u64,
    /// `Udp: InDatagrams`, `Udp: InErrors`, `Ip: ReasmFails` of host 1's namespace.
    udp_in: u64,
    udp_in_errors: u64,
    reasm_fails: u64,
}

impl Counts {
    fn read(ns: &Netns, socket: &Path) -> Counts {
        let s = status(ns, socket);
        let peer_rx = s["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["public_ip"] == "192.0.2.2"))
            .and_then(|p| p["rx_packets"].as_u64())
            .unwrap_or_else(|| panic!("no counted peer 192.0.2.2 in {s}"));
        let snmp = ns.sh("cat /proc/net/snmp");
        Counts {
            drops: counters(&s["drops"]),
            errors: counters(&s["errors"]),
            tunnel_rx: s["traffic"]["tunnel_rx_packets"].as_u64().expect("rx"),
            tun_tx: s["traffic"]["tun_tx_packets"].as_u64().expect("tun_tx"),
            peer_rx,
            udp_in: snmp_field(&snmp, "Udp", "InDatagrams"),
            udp_in_errors: snmp_field(&snmp, "Udp", "InErrors"),
            reasm_fails: snmp_field(&snmp, "Ip", "ReasmFails"),
        }
    }

    fn drops_of(&self, reasons: Option<&[&str]>) -> u64 {
        self.drops
            .iter()
            .filter(|(k, _)| reasons.unwrap_or(INBOUND).contains(&k.as_str()))
            .map(|(_, v)| v)
            .sum()
    }
}

/// A field of `/proc/net/snmp`: a header line `Proto: names...` then a line of values.
fn snmp_field(snmp: &str, proto: &str, field: &str) -> u64 {
    let tag = format!("{proto}:");
    let mut lines = snmp.lines().filter(|l| l.starts_with(&tag));
    let (names, values) = (lines.next(), lines.next());
    let (Some(names), Some(values)) = (names, values) else {
        panic!("no {proto} in /proc/net/snmp:\n{snmp}");
    };
    let i = names
        .split_whitespace()
        .position(|n| n == field)
        .unwrap_or_else(|| panic!("no {proto} {field} in /proc/net/snmp"));
    values
        .split_whitespace()
        .nth(i)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{proto} {field} in /proc/net/snmp:\n{snmp}"))
}

/// Runs the attacker on host 3 and returns what it sent per kind.
fn attack(c: &Cluster, backend: &str, args: &[&str], bound_secs: u32) -> BTreeMap<String, u64> {
    let bound = bound_secs.to_string();
    let mut argv = vec![
        "timeout",
        &bound,
        "python3",
        "-c",
        FLOOD_PY,
        backend,
        "192.0.2.3",
        "192.0.2.2",
    ];
    argv.extend_from_slice(args);
    let out = c.host(3).exec(&argv);
    assert!(
        out.status.success(),
        "attacker {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "attacker output {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Reads the counters until ringlay has taken in every datagram the kernel
/// delivered since `before` (and they stopped moving), at most 10 s.
fn settle(ns: &Netns, socket: &Path, before: &Counts) -> Counts {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = Counts::read(ns, socket);
    loop {
        thread::sleep(Duration::from_millis(200));
        let now = Counts::read(ns, socket);
        let caught_up = now.tunnel_rx - before.tunnel_rx == now.udp_in - before.udp_in;
        if (caught_up && now == last) || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

/// One row of the per-kind table.
struct Row {
    kind: &'static str,
    sent: u64,
    counted: u64,
    kernel_dropped: u64,
}

fn hostile_input(backend: &str) {
    let test = format!("hostile_input_{backend}");
    if !require_root(&test) || !require_command(&test, "python3", "python3") {
        return;
    }
    let started = Instant::now();
    let c = Cluster::hosts(&format!("hostile{}", &backend[..1]), 3);
    // Host 3 is the attacker: no lease, no ringlay.
    let leases = {
        let all = c.static_leases_json(backend, backend == "vxlan");
        let v: serde_json::Value = serde_json::from_str(&all).expect("leases JSON");
        let mut v = v;
        v["subnets"]
            .as_object_mut()
            .expect("subnets")
            .remove("100.96.3.0-24");
        v.to_string()
    };
    let d1 = c.ringlay(1, &leases, &["--queues", "2"]);
    let _d2 = c.ringlay(2, &leases, &["--queues", "2"]);
    let socket = c.dir().join("status-1.sock");
    let h1 = c.host(1);
    let c2: IpAddr = c.container_ip(2).into();
    assert!(c.ping(1, c2, 2), "c1 -> c2 before\n{}", d1.log());

    // --- 1. each kind on its own, counted ---
    let mut rows = Vec::new();
    for (kind, reasons) in kinds(backend) {
        let (n, pps) = if kind == "oversized" {
            (OVERSIZED_COUNT, OVERSIZED_PPS)
        } else {
            (PHASE_COUNT, PHASE_PPS)
        };
        let before = Counts::read(h1, &socket);
        let sent = attack(
            &c,
            backend,
            &["count", kind, &n.to_string(), &pps.to_string()],
            60,
        );
        assert_eq!(sent.get(kind).copied(), Some(u64::from(n)), "{sent:?}");
        let after = settle(h1, &socket, &before);
        let received = after.tunnel_rx - before.tunnel_rx;
        let delivered = after.udp_in - before.udp_in;
        let counted = after.drops_of(reasons) - before.drops_of(reasons);
        let all_drops = after.drops_of(None) - before.drops_of(None);
        let kernel_dropped =
            (after.udp_in_errors - before.udp_in_errors) + (after.reasm_fails - before.reasm_fails);
        let why = format!(
            "{backend} {kind}: sent {n}, kernel delivered {delivered}, ringlay received \
             {received}, counted {counted} under {reasons:?}, dropped {all_drops} in all, \
             kernel dropped {kernel_dropped}\nbefore {before:?}\nafter {after:?}"
        );
        assert_eq!(received, delivered, "ringlay missed datagrams: {why}");
        assert_eq!(
            counted, received,
            "not counted by the expected reason: {why}"
        );
        assert_eq!(all_drops, counted, "{why}");
        assert_eq!(after.tun_tx, before.tun_tx, "reached the TUN: {why}");
        assert_eq!(after.peer_rx, before.peer_rx, "credited to the peer: {why}");
        assert_eq!(after.errors, before.errors, "ringlay errors: {why}");
        // Every datagram is either counted by ringlay or shown dropped by the kernel.
        if kind == "oversized" {
            assert!(
                received + kernel_dropped >= u64::from(n) && received >= u64::from(n) / 4,
                "{why}"
            );
        } else {
            assert_eq!(received + kernel_dropped, u64::from(n), "{why}");
        }
        rows.push(Row {
            kind,
            sent: u64::from(n),
            counted,
            kernel_dropped,
        });
    }
    eprintln!("{backend}: kind, sent, counted by ringlay under its reason, dropped by the kernel");
    for r in &rows {
        eprintln!(
            "{backend}:   {:<15} {:>5} {:>5} {:>5}",
            r.kind, r.sent, r.counted, r.kernel_dropped
        );
    }

    // --- 2. TCP without and with the flood, back to back ---
    let quiet = c.iperf3(1, 2, FLOOD_SECS, 1);
    let before = Counts::read(h1, &socket);
    let (during, sent) = thread::scope(|s| {
        let flood = s.spawn(|| {
            attack(
                &c,
                backend,
                &["flood", &FLOOD_SECS.to_string(), &FLOOD_MAX.to_string()],
                FLOOD_SECS + 30,
            )
        });
        // Let the flood start first, so that it covers the whole transfer.
        thread::sleep(Duration::from_millis(200));
        let gbps = c.iperf3(1, 2, FLOOD_SECS, 1);
        (gbps, flood.join().expect("flood thread"))
    });
    let after = settle(h1, &socket, &before);
    let flooded: u64 = sent.values().sum();
    let dropped = after.drops_of(None) - before.drops_of(None);
    eprintln!(
        "{backend}: iperf3 c2 -> c1 {FLOOD_SECS} s: {quiet:.3} Gbit/s without the flood, \
         {during:.3} Gbit/s during it; flood {flooded} datagrams ({sent:?}), \
         {dropped} dropped by ringlay, {} by the kernel",
        (after.udp_in_errors - before.udp_in_errors) + (after.reasm_fails - before.reasm_fails)
    );
    assert!(quiet > 0.0 && during > 0.0, "{quiet} {during}");
    assert!(dropped > 0, "the flood was not counted: {after:?}");

    // --- 3. still alive, forwarding, no errors of its own ---
    assert!(c.ping(1, c2, 3), "c1 -> c2 after the flood\n{}", d1.log());
    assert!(c.ping(2, c.container_ip(1).into(), 3), "c2 -> c1 after");
    let end = Counts::read(h1, &socket);
    assert!(end.errors.is_empty(), "ringlay errors: {:?}", end.errors);
    assert!(
        !d1.log().contains("panicked"),
        "ringlay panicked:\n{}",
        d1.log()
    );
    check_running(&d1);
    eprintln!("{test}: took {:.1?}", started.elapsed());
}

/// The daemon answers on its status socket and has not exited.
fn check_running(d: &Daemon) {
    let alive = std::fs::read_to_string(format!("/proc/{}/stat", d.pid()))
        .is_ok_and(|s| !s.contains(") Z"));
    assert!(alive, "ringlay exited:\n{}", d.log());
}

#[test]
fn hostile_input_vxlan() {
    hostile_input("vxlan");
}

#[test]
fn hostile_input_udp() {
    hostile_input("udp");
}

// --- hostile values in etcd ------------------------------------------------------

/// The warning a skipped lease gets.
const SKIPPED: &str = "skipping a malformed lease";

/// The keys (under `<prefix>/subnets/`) and values a hostile writer puts.
fn hostile_leases() -> Vec<(Vec<u8>, Vec<u8>)> {
    let vx = |ip: &str, data: &str| {
        format!(r#"{{"PublicIP":"{ip}","BackendType":"vxlan","BackendData":{data}}}"#).into_bytes()
    };
    let udp = br#"{"PublicIP":"192.0.2.150","PublicIPv6":null}"#.to_vec();
    let key = |k: &str| format!("{PREFIX}/subnets/{k}").into_bytes();
    vec![
        // values
        (key("100.96.200.0-24"), vec![b'{'; 1 << 20]),
        (
            key("100.96.201.0-24"),
            b"{\"PublicIP\":\"192.0.2.\xff\xfe\"}".to_vec(),
        ),
        (
            key("100.96.202.0-24"),
            br#"{"PublicIP":7,"PublicIPv6":null}"#.to_vec(),
        ),
        (
            key("100.96.203.0-24"),
            vx("192.0.2.203", r#""0e:00:00:00:cb:00""#),
        ),
        (
            key("100.96.204.0-24"),
            vx(
                "192.0.2.204",
                r#"{"VNI":"1","VtepMAC":"0e:00:00:00:cc:00"}"#,
            ),
        ),
        (
            key("100.96.205.0-24"),
            vx("192.0.2.205", r#"{"VNI":1,"VtepMAC":[14,0,0,0,205,0]}"#),
        ),
        (
            key("100.96.206.0-24"),
            br#"["PublicIP","192.0.2.206"]"#.to_vec(),
        ),
        (key("100.96.207.0-24"), b"null".to_vec()),
        // objects naming no node to send to
        (key("100.96.210.0-24"), b"{}".to_vec()),
        (
            key("100.96.211.0-24"),
            br#"{"PublicIP":"0.0.0.0"}"#.to_vec(),
        ),
        // keys
        (key("100.96.0.0-16"), udp.clone()),
        (key("100.96.208.0-25"), udp.clone()),
        (key("100.97.1.0-24"), udp.clone()),
        (key("10.0.0.0-24"), udp.clone()),
        (key("garbage"), udp.clone()),
        (key("100.96.209.0-24/extra"), udp.clone()),
        ([key(""), b"\xff\xfe-24".to_vec()].concat(), udp),
    ]
}

#[test]
fn hostile_etcd_values() {
    let test = "hostile_etcd_values";
    if !require_root(test) || !require_etcd(test) {
        return;
    }
    let started = Instant::now();
    let c = Cluster::hosts("hostetcd", 3);
    let (_etcd_ns, mut e) = etcd_on_switch(&c, "hostetcd", VXLAN_CONFIG);
    // The lease of a node that runs no ringlay: garbage is written over it below.
    let absent = format!("{PREFIX}/subnets/100.96.99.0-24");
    e.put(
        &absent,
        &format!(
            r#"{{"PublicIP":"192.0.2.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{}"}}}}"#,
            vtep_mac(99)
        ),
    );
    let d1 = c.ringlay_etcd(1, e.endpoint(), &["--queues", "1"]);
    let d2 = c.ringlay_etcd(2, e.endpoint(), &["--queues", "1"]);
    let (s1, s2) = (acquired_subnet(&d1), acquired_subnet(&d2));
    let a1 = c.readdress_container(1, s1);
    let a2 = c.readdress_container(2, s2);
    assert!(c.ping(1, a2.into(), 2), "c1 -> c2\n{}", d1.log());
    let socket = c.dir().join("status-1.sock");
    let peers = |ns: &Netns| -> Vec<String> {
        let s = status(ns, &socket);
        let mut v: Vec<String> = s["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .map(|p| format!("{} {}", p["subnet"], p["public_ip"]))
            .collect();
        v.sort();
        v
    };
    let before = peers(c.host(1));
    assert_eq!(before.len(), 2, "host 2 and the absent node: {before:?}");
    let from = (d1.log().len(), d2.log().len());

    // --- bad keys and values ---
    let bad = hostile_leases();
    for (k, v) in &bad {
        e.put_bytes(k, v);
    }
    // Garbage over the absent node's lease (its last good value stays; one
    // warning while the key stays refused) and over host 2's own (host 2 writes
    // its lease back; both hosts warn once per garbage value, then take the
    // restored value).
    let own2 = format!("{PREFIX}/subnets/{}-24", s2);
    e.put(&absent, "{\"PublicIP\":");
    e.put(&absent, "{}");
    let own_garbage = ["not a lease", "{}", r#"{"PublicIP":"0.0.0.0"}"#];
    let expected_warnings = bad.len() + 1 + own_garbage.len();
    let ours2 = "\"PublicIP\":\"192.0.2.2\"";
    for garbage in own_garbage {
        e.put(&own2, garbage);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !e.get(&own2).is_some_and(|v| v.contains(ours2)) {
            assert!(
                Instant::now() < deadline,
                "host 2 did not write its lease back over {garbage:?}: {:?}\n{}",
                e.get(&own2),
                d2.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    // --- a hostile network config: not JSON, then another network ---
    let config_key = format!("{PREFIX}/config");
    e.put(&config_key, "{\"Network\": ");
    e.put(&config_key, "{\"Network\": ");
    let other = r#"{"Network": "10.0.0.0/8", "Backend": {"Type": "udp"}}"#;
    e.put(&config_key, other);
    e.put(&config_key, other);

    // --- a later good event, then a resync after an etcd restart ---
    let later = format!("{PREFIX}/subnets/100.96.98.0-24");
    e.put(&later, r#"{"PublicIP":"192.0.2.98","PublicIPv6":null}"#);
    assert!(
        d1.wait_log(
            "lease added lease=100.96.98.0-24",
            from.0,
            Duration::from_secs(10)
        ),
        "the later lease was not seen:\n{}",
        d1.log()
    );
    e.del(&later);
    thread::sleep(Duration::from_secs(1));
    let before_restart = d1.log().len();
    e.restart();
    assert!(
        d1.wait_log("watch resumed", before_restart, Duration::from_secs(30)),
        "no resync after the etcd restart:\n{}",
        d1.log()
    );
    thread::sleep(Duration::from_secs(1));

    // --- one warning per bad key, table and traffic intact ---
    for (i, d) in [(1, &d1), (2, &d2)] {
        let log = d.log();
        let log = &log[if i == 1 { from.0 } else { from.1 }..];
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(SKIPPED)).collect();
        assert_eq!(
            lines.len(),
            expected_warnings,
            "host {i}: {} warnings for {expected_warnings} bad keys:\n{}",
            lines.len(),
            lines.join("\n")
        );
        for (k, _) in &bad {
            let Ok(k) = std::str::from_utf8(k) else {
                continue;
            };
            let n = lines
                .iter()
                .filter(|l| l.trim_end().ends_with(&format!("key={k}")))
                .count();
            assert_eq!(
                n,
                1,
                "host {i}: {n} warnings for {k}:\n{}",
                lines.join("\n")
            );
        }
        let longest = log.lines().map(str::len).max().unwrap_or(0);
        assert!(longest < 2000, "host {i}: a log line of {longest} bytes");
        let refused = log.matches("a config ringlay refuses").count();
        let restart = log.matches("requires a restart").count();
        assert_eq!(
            (refused, restart),
            (1, 1),
            "host {i} config reports:\n{log}"
        );
        assert!(!log.contains("panicked"), "host {i}:\n{log}");
        check_running(d);
    }
    eprintln!(
        "host 1 after {} bad keys, 5 overwritten leases, 2 bad configs and an etcd restart:\n{}",
        bad.len(),
        d1.log()[from.0..]
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(peers(c.host(1)), before, "host 1's table changed");
    assert!(c.ping(1, a2.into(), 3), "c1 -> c2 after\n{}", d1.log());
    assert!(c.ping(2, a1.into(), 3), "c2 -> c1 after\n{}", d2.log());
    eprintln!("{test}: took {:.1?}", started.elapsed());
}
