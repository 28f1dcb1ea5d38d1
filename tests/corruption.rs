//! Bits flipped in tunnel datagrams in flight are dropped, and what TCP delivers
//! is intact: a 16 MiB file crosses the overlay both ways while an nftables rule
//! on each host's underlay `eth0` (netdev family, ingress: on arrival, before the
//! kernel looks at any checksum) overwrites one byte inside 2 % of the tunnel
//! datagrams (`numgen random mod 50`, a raw `@th` payload write, which leaves
//! the checksums alone), and its sha256 on arrival is the sender's. (This kernel
//! has no netem; the rule corrupts what the wire delivers just the same.)
//!
//! The underlay veths compute their checksums in software (`ethtool -K eth0 tx
//! off`): with transmit checksum offload a veth leaves the outer checksum to a
//! NIC that never comes, and the receiver trusts it unverified — a flipped bit
//! would then pass unnoticed by any implementation.
//!
//! - ringlay ↔ ringlay (vxlan), both advertising `partial-csum`, so the inner
//!   checksums are left partial: ringlay's sockets send outer UDP checksums, and
//!   the receiving kernel drops a corrupted datagram (`Udp InCsumErrors`).
//! - ringlay ↔ a kernel vxlan node as flanneld configures it: the same, both ways
//!   (on this kernel the vxlan device's datagrams carry an outer UDP checksum
//!   too). Had one arrived without it, the inner TCP checksum would be the
//!   guard: ringlay hands a segment whose checksum fails to the kernel
//!   unverified, and the container's stack drops it (`Tcp InCsumErrors`, also
//!   counted).
//!
//! Each direction also checks that corruption happened and was caught, so the
//! test cannot pass by not corrupting anything. A third test reads the inner
//! checksums off the wire: partial between ringlay nodes that advertise
//! `partial-csum`, complete toward a kernel vxlan node.

mod common;

use std::time::Duration;

use common::netns::{self, Cluster, Netns};

const FILE_MIB: usize = 16;
const PORT: &str = "5101";
/// How long one transfer may take, with retransmissions, before it fails.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(90);

/// Sends the file named by argv[1] to the first client on PORT.
const SERVE_PY: &str = "import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', int(sys.argv[2])))
s.listen(1)
s.settimeout(60)
c, _ = s.accept()
c.sendall(open(sys.argv[1], 'rb').read())
c.close()
";

/// Connects to argv[1]:argv[2] (retrying while the server starts) and writes
/// what it receives to argv[3].
const FETCH_PY: &str = "import socket, sys, time
for attempt in range(50):
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit('no connection')
with open(sys.argv[3], 'wb') as f:
    while True:
        b = c.recv(65536)
        if not b:
            break
        f.write(b)
";

fn python3() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// `name`'s counter in the `proto` (`Udp`, `Tcp`) lines of `ns`'s /proc/net/snmp.
fn snmp(ns: &Netns, proto: &str, name: &str) -> u64 {
    let text = ns.sh("cat /proc/net/snmp");
    let mut rows = text
        .lines()
        .filter(|l| l.starts_with(&format!("{proto}: ")));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
        panic!("no {proto} rows in /proc/net/snmp:\n{text}");
    };
    let at = names
        .split_whitespace()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no {proto} {name}"));
    values
        .split_whitespace()
        .nth(at)
        .and_then(|v| v.parse().ok())
        .expect("counter")
}

fn sha256(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Checksum errors the receiving side of container `to` can count: its host's
/// UDP (outer checksums) and its container's TCP (inner checksums).
fn caught(c: &Cluster, to: usize) -> (u64, u64) {
    (
        snmp(c.host(to), "Udp", "InCsumErrors"),
        snmp(c.container(to), "Tcp", "InCsumErrors"),
    )
}

/// Sends the file from container `from` to container `to`; asserts
/// it arrives intact and that corrupted frames were caught on the way.
fn transfer(c: &Cluster, file: &std::path::Path, from: usize, to: usize) {
    let got = c.dir().join(format!("got-{from}-{to}"));
    let before = caught(c, to);
    let (file_s, got_s) = (file.display().to_string(), got.display().to_string());
    let limit = TRANSFER_TIMEOUT.as_secs().to_string();
    // The receiver listens and fetches: it connects to the sender's server.
    let server =
        c.container(from)
            .spawn(&["timeout", &limit, python3(), "-c", SERVE_PY, &file_s, PORT]);
    let from_ip = c.container_ip(from).to_string();
    let out = c.container(to).exec(&[
        "timeout",
        &limit,
        python3(),
        "-c",
        FETCH_PY,
        &from_ip,
        PORT,
        &got_s,
    ]);
    let served = server.wait_with_output().expect("server");
    assert!(
        out.status.success() && served.status.success(),
        "transfer {from} -> {to} failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&served.stderr)
    );
    assert_eq!(
        sha256(&got),
        sha256(file),
        "the file {from} -> {to} arrived changed"
    );
    let after = caught(c, to);
    let (udp, tcp) = (after.0 - before.0, after.1 - before.1);
    eprintln!(
        "{from} -> {to}: intact; dropped on the way: {udp} datagrams (outer UDP checksum), \
         {tcp} segments (inner TCP checksum)"
    );
    assert!(
        udp + tcp > 0,
        "no corruption was caught: the test corrupted nothing"
    );
}

/// Software checksums on both hosts' underlay, and 2 % of the tunnel datagrams
/// arriving there corrupted: the byte 100 bytes into the UDP header (inside the
/// inner TCP payload of a full segment; shorter datagrams are left alone).
fn corrupt_underlay(c: &Cluster) {
    for i in 1..=2 {
        c.host(i).sh("ethtool -K eth0 tx off >/dev/null
             nft -f - <<'EOF'
table netdev ringlay_corrupt {
  chain ingress {
    type filter hook ingress device \"eth0\" priority 0;
    udp dport 8472 numgen random mod 50 == 0 @th,800,8 set 0x55
  }
}
EOF");
    }
}

fn random_file(c: &Cluster) -> std::path::PathBuf {
    let path = c.dir().join("payload");
    let mut bytes = vec![0u8; FILE_MIB << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in bytes.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(&path, bytes).expect("write payload");
    path
}

fn require(test: &str) -> bool {
    netns::require_root(test)
        && netns::require_command(test, "nft", "nftables")
        && netns::require_command(test, "ethtool", "ethtool")
}

/// Two hosts with corrupting underlays, a transfer each way between their
/// containers: host 1 runs ringlay, host 2 ringlay too (both advertising
/// partial-csum) or, with `kernel_peer`, the kernel's vxlan as flanneld sets it up.
fn corrupted_transfers(tag: &str, kernel_peer: bool) {
    let c = Cluster::two_hosts(tag);
    let leases = if kernel_peer {
        c.kernel_vxlan_node(2);
        c.static_leases_json("vxlan", true)
    } else {
        with_partial_csum(&c.static_leases_json("vxlan", true))
    };
    let _d1 = c.ringlay(1, &leases, &["--queues", "1"]);
    let _d2 = (!kernel_peer).then(|| c.ringlay(2, &leases, &["--queues", "1"]));
    assert!(c.ping(1, c.container_ip(2).into(), 3));
    corrupt_underlay(&c);
    let file = random_file(&c);
    transfer(&c, &file, 1, 2);
    transfer(&c, &file, 2, 1);
}

/// The one test that turns transmit checksum offload off (on the underlay veths,
/// see the module docs), for both kinds of peer.
#[test]
fn corrupted_datagrams_are_dropped_and_tcp_delivers_intact() {
    if !require("corrupt") {
        return;
    }
    corrupted_transfers("crr", false);
    corrupted_transfers("crk", true);
}

/// Inner TCP segments with payload in the vxlan datagrams host 1 sends while
/// container 1 sends to container 2 for 2 s: (partial, complete, bad), judged
/// from the captured bytes (a partial checksum holds the pseudo-header sum).
fn inner_checksums_sent_by_host1(c: &Cluster) -> (u32, u32, u32) {
    let file = c.dir().join("h1.pcap");
    let file_s = file.display().to_string();
    let filter = "udp dst port 8472 and src host 192.0.2.1";
    let mut cmd = c.host(1).command(&[
        "timeout", "6", "tcpdump", "-i", "eth0", "-n", "-p", "-U", "-c", "3000", "-w", &file_s,
        filter,
    ]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut dump = c.host(1).spawn_command(cmd);
    let mut line = String::new();
    let mut stderr = std::io::BufReader::new(dump.stderr.take().expect("stderr"));
    std::io::BufRead::read_line(&mut stderr, &mut line).expect("tcpdump's first line");
    assert!(line.contains("listening"), "tcpdump: {line}");
    let _ = c.iperf3(2, 1, 2, 1);
    let _ = dump.wait();
    let frames = common::pcap::read_pcap(&file).expect("read the capture");
    let (mut partial, mut complete, mut bad) = (0, 0, 0);
    for f in &frames {
        let Some(outer) = common::pcap::split_outer_udp_v4(f) else {
            continue;
        };
        // VXLAN header, inner Ethernet, inner IPv4.
        let Some(ip) = outer.payload.get(8 + 14..) else {
            continue;
        };
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ip[0] >> 4 != 4 || ip[9] != 6 || total > ip.len() || total < ihl + 20 {
            continue;
        }
        let tcp = &ip[ihl..total];
        let data_offset = usize::from(tcp[12] >> 4) * 4;
        if tcp.len() <= data_offset {
            continue; // no payload: a pure ACK
        }
        let len = (tcp.len() as u16).to_be_bytes();
        let pseudo = [&ip[12..20], &[0, 6][..], &len[..]];
        let field = u16::from_be_bytes([tcp[16], tcp[17]]);
        if common::pcap::internet_checksum(&[pseudo[0], pseudo[1], pseudo[2], tcp]) == 0 {
            complete += 1;
        } else if field == !common::pcap::internet_checksum(&pseudo) {
            partial += 1;
        } else {
            bad += 1;
        }
    }
    (partial, complete, bad)
}

/// `leases` with every vxlan lease advertising partial-csum, as ringlay nodes
/// write their own.
fn with_partial_csum(leases: &str) -> String {
    leases.replace(
        r#""VtepMAC": "0e:00:00:00:0"#,
        r#""RinglayFeatures": ["partial-csum"], "VtepMAC": "0e:00:00:00:0"#,
    )
}

#[test]
fn inner_checksums_stay_partial_between_ringlay_nodes_and_complete_toward_a_kernel_node() {
    if !require("csum_wire") || !netns::require_command("csum_wire", "tcpdump", "tcpdump") {
        return;
    }
    // Without UDP GSO each datagram leaves on its own, so the capture holds
    // them one by one.
    let args = ["--queues", "1", "--offload", "tso,gro"];
    let c = Cluster::two_hosts("cwr");
    let leases = with_partial_csum(&c.static_leases_json("vxlan", true));
    let _d1 = c.ringlay(1, &leases, &args);
    let _d2 = c.ringlay(2, &leases, &args);
    let (partial, complete, bad) = inner_checksums_sent_by_host1(&c);
    eprintln!("ringlay -> ringlay: {partial} partial, {complete} complete, {bad} bad");
    assert!(
        partial > 100 && complete * 10 < partial && bad == 0,
        "{partial}/{complete}/{bad}"
    );
    drop((_d1, _d2));

    let c = Cluster::two_hosts("cwk");
    c.kernel_vxlan_node(2);
    let _d1 = c.ringlay(1, &c.static_leases_json("vxlan", true), &args);
    let (partial, complete, bad) = inner_checksums_sent_by_host1(&c);
    eprintln!("ringlay -> kernel vxlan: {partial} partial, {complete} complete, {bad} bad");
    assert!(
        complete > 100 && partial == 0 && bad == 0,
        "{partial}/{complete}/{bad}"
    );
}
