//! What an operator sees, on real namespaces: metrics scraped (inside the host's
//! namespace) while traffic flows, a forged datagram's drop reason counted,
//! `ringlay status` listing the peers of a three-host cluster, the `--ip-masq`
//! table present while running and gone after SIGTERM, flanneld's `FLANNELD_*`
//! variables taking effect, `/readyz` answering 503 until start-up is done, the
//! etcd metrics (lease expiry, watch reconnects and resyncs), and two daemons
//! in two namespaces each found by a flagless `ringlay status` at its own default
//! status path.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::etcd::{require_etcd, Etcd};
use common::netns::{in_ci, require_root, ringlay_bin, Cluster, Netns};

/// Forges `count` vxlan datagrams from `bind` to 192.0.2.1:8472 whose inner source
/// (100.96.9.9) lies outside the sender's lease: `spoofed_source` on host 1.
const SPOOF_PY: &str = r#"
import socket, struct, sys, time
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
body = struct.pack('!BBHHH', 8, 0, 0, 0x7e57, 1) + b'ringlay ops test'
body = body[:2] + struct.pack('!H', csum(body)) + body[4:]
hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(body), 0, 0x4000, 64, 1, 0,
                  socket.inet_aton('100.96.9.9'), socket.inet_aton('100.96.1.2'))
hdr = hdr[:10] + struct.pack('!H', csum(hdr)) + hdr[12:]
eth = bytes.fromhex('0e0000000100' '0e0000000200' '0800')
frame = struct.pack('!II', 0x08000000, 1 << 8) + eth + hdr + body
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
for _ in range(int(sys.argv[2])):
    s.sendto(frame, ('192.0.2.1', 8472))
    time.sleep(0.01)
"#;

/// Whether `curl` and `nft` are installed; outside CI a missing one skips the
/// test with the reason, in CI it fails (scripts/test.sh installs both).
fn require_tools(test: &str) -> bool {
    for tool in ["curl", "nft"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(!in_ci(), "{test}: {tool} is not installed");
            eprintln!("{test}: skipped: {tool} is not installed (Debian: curl, nftables)");
            return false;
        }
    }
    true
}

/// `curl` of `url` inside `ns`: (HTTP status, body).
fn get(ns: &Netns, url: &str) -> (u16, String) {
    let out = ns.exec(&[
        "curl",
        "-sS",
        "--max-time",
        "3",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        url,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// The sum of every sample of `metric` whose labels contain each of `labels`.
fn sum(metrics: &str, metric: &str, labels: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.split(['{', ' '])
                .next()
                .is_some_and(|name| name == metric)
        })
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .map(|v| v as u64)
        .sum()
}

fn status(ns: &Netns, socket: &Path, json: bool) -> String {
    let bin = ringlay_bin();
    let sock = socket.display().to_string();
    let mut argv = vec![bin.as_str(), "status", "--socket", sock.as_str()];
    if json {
        argv.push("--json");
    }
    let out = ns.exec(&argv);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ringlay status: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn metrics_status_masquerade_and_flanneld_env() {
    if !require_root("metrics_status_masquerade_and_flanneld_env")
        || !require_tools("metrics_status_masquerade_and_flanneld_env")
    {
        return;
    }
    let started = Instant::now();
    let c = Cluster::hosts("ops", 3);
    let leases = c.static_leases_json("vxlan", true);
    let socket = c.dir().join("status-1.sock");
    let socket_s = socket.display().to_string();
    let mut d1 = c.ringlay(
        1,
        &leases,
        &[
            "--queues",
            "2",
            "--metrics-addr",
            "192.0.2.1:9465",
            "--status-socket",
            &socket_s,
            "--ip-masq",
            "--log-format",
            "json",
        ],
    );
    // Host 2 is configured the flanneld way, through FLANNELD_* variables only.
    let leases_2 = c.dir().join("leases-2.json");
    std::fs::write(&leases_2, &leases).expect("writing the leases");
    let leases_2 = leases_2.display().to_string();
    let socket_2 = c.dir().join("status-2.sock").display().to_string();
    let mut d2 = c
        .try_ringlay_env(
            2,
            c.underlay_ip(2),
            &["--static-leases", &leases_2],
            &["--queues", "1", "--status-socket", &socket_2],
            &[
                ("FLANNELD_HEALTHZ_IP", "192.0.2.2"),
                ("FLANNELD_HEALTHZ_PORT", "9466"),
                ("FLANNELD_IP_MASQ", "true"),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let socket_3 = c.dir().join("status-3.sock").display().to_string();
    let _d3 = c.ringlay(3, &leases, &["--queues", "1", "--status-socket", &socket_3]);

    // --- metrics move with traffic ---
    let url = "http://192.0.2.1:9465/metrics";
    let c2: IpAddr = c.container_ip(2).into();
    let c3: IpAddr = c.container_ip(3).into();
    assert!(c.ping(1, c2, 2), "c1 -> c2\n{}", d1.log());
    let (code, before) = get(c.host(1), url);
    assert_eq!(code, 200, "{before}");
    assert!(
        before.contains("# TYPE ringlay_packets_total counter"),
        "{before}"
    );
    let tx = |m: &str| sum(m, "ringlay_packets_total", &["direction=\"tunnel_tx\""]);
    let rx = |m: &str| sum(m, "ringlay_bytes_total", &["direction=\"tunnel_rx\""]);
    assert!(tx(&before) >= 2 && rx(&before) > 0, "{before}");
    assert!(c.ping(1, c3, 3), "c1 -> c3\n{}", d1.log());
    let (_, after) = get(c.host(1), url);
    assert!(
        tx(&after) >= tx(&before) + 3,
        "tunnel_tx did not move:\n{after}"
    );
    assert_eq!(sum(&after, "ringlay_table_peers", &[]), 2, "{after}");
    assert_eq!(sum(&after, "ringlay_ready", &[]), 1, "{after}");
    assert!(
        after.contains("ringlay_lease_info{subnet=\"100.96.1.0/24\""),
        "{after}"
    );
    assert!(
        after.contains("ringlay_offload_enabled{feature=\"tso\"}"),
        "{after}"
    );

    // --- a spoofed datagram's reason is counted ---
    let spoofed = |m: &str| sum(m, "ringlay_drops_total", &["reason=\"spoofed_source\""]);
    assert_eq!(spoofed(&after), 0, "{after}");
    let out = c.host(2).exec(&[
        "timeout",
        "10",
        "python3",
        "-c",
        SPOOF_PY,
        "192.0.2.2",
        "20",
    ]);
    assert!(out.status.success(), "forging: {out:?}");
    let deadline = Instant::now() + Duration::from_secs(3);
    let m = loop {
        let (_, m) = get(c.host(1), url);
        if spoofed(&m) >= 20 || Instant::now() >= deadline {
            break m;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert!(spoofed(&m) >= 20, "spoofed_source not counted:\n{m}");

    // --- the TUN queue's drops show: with the workers stopped, the kernel drops
    // what does not fit in the queue (txqueuelen 500), and the metric counts it ---
    let dropped = |m: &str| sum(m, "ringlay_tun_tx_dropped_total", &[]);
    let (_, m) = get(c.host(1), url);
    assert!(m.contains("ringlay_tun_tx_dropped_total "), "{m}");
    let before = dropped(&m);
    let pid = d1.pid().to_string();
    c.host(1).sh(&format!("kill -STOP {pid}"));
    let py = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         [s.sendto(b'x'*64,('{c2}',9)) for _ in range(2000)]"
    );
    let flood = c
        .container(1)
        .exec(&["timeout", "10", "python3", "-c", &py]);
    c.host(1).sh(&format!("kill -CONT {pid}"));
    assert!(flood.status.success(), "flood: {flood:?}");
    let (_, m) = get(c.host(1), url);
    assert!(
        dropped(&m) >= before + 500,
        "tun tx_dropped {} -> {}:\n{m}",
        before,
        dropped(&m)
    );

    // --- ringlay status lists the peers ---
    let text = status(c.host(1), &socket, false);
    eprintln!("{text}");
    for want in [
        "100.96.1.0/24",
        "100.96.2.0/24",
        "100.96.3.0/24",
        "192.0.2.3",
        "spoofed_source",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&status(c.host(1), &socket, true)).expect("status --json");
    let peers = json["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 2, "{json}");
    assert_eq!(json["ready"], true, "{json}");
    assert!(json["tun_tx_dropped"].as_u64() >= Some(500), "{json}");
    // Per peer: the pings each way (2 to host 2, 3 to host 3) and their replies;
    // the forged datagrams were dropped, so they count as nobody's traffic.
    for (ip, pings) in [("192.0.2.2", 2), ("192.0.2.3", 3)] {
        let p = peers
            .iter()
            .find(|p| p["public_ip"] == ip)
            .unwrap_or_else(|| panic!("no peer {ip}: {json}"));
        let n = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{k} of {ip}: {p}"));
        assert!(n("tx_packets") >= pings && n("rx_packets") >= pings, "{p}");
        assert!(
            n("rx_packets") < pings + 10,
            "forged datagrams counted: {p}"
        );
        assert!(
            n("tx_bytes") >= 84 * pings && n("rx_bytes") >= 84 * pings,
            "{p}"
        );
    }
    let mode = std::fs::metadata(&socket).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    assert_eq!(mode.ok(), Some(0o600), "status socket mode");

    // --- FLANNELD_* took effect on host 2 ---
    assert_eq!(get(c.host(2), "http://192.0.2.2:9466/healthz").0, 200);
    assert_eq!(get(c.host(2), "http://192.0.2.2:9466/readyz").0, 200);
    assert_eq!(get(c.host(2), "http://192.0.2.2:9466/metrics").0, 404);
    let env2 = std::fs::read_to_string(d2.subnet_file()).expect("subnet.env 2");
    assert!(env2.contains("FLANNEL_IPMASQ=true"), "{env2}");

    // --- the masquerade table lives as long as the daemon ---
    let nft = |i: usize| c.host(i).exec(&["nft", "list", "table", "ip", "ringlay"]);
    let table = nft(1);
    let rules = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.status.success(), "{table:?}");
    assert!(
        rules.contains("ip saddr 100.96.0.0/16 ip daddr != 224.0.0.0/4")
            && rules.contains("masquerade"),
        "{rules}"
    );
    let env1 = std::fs::read_to_string(d1.subnet_file()).expect("subnet.env 1");
    assert!(env1.contains("FLANNEL_IPMASQ=true"), "{env1}");
    assert!(
        d1.log().contains("\"message\":\"ready: forwarding\""),
        "JSON logs:\n{}",
        d1.log()
    );
    let status1 = d1.terminate();
    assert!(status1.success(), "{status1}\n{}", d1.log());
    assert!(
        !nft(1).status.success(),
        "table ip ringlay left behind on host 1"
    );
    assert!(!socket.exists(), "status socket left behind");
    assert!(nft(2).status.success(), "host 2's table (FLANNELD_IP_MASQ)");
    let _ = d2.terminate();
    assert!(
        !nft(2).status.success(),
        "table ip ringlay left behind on host 2"
    );
    eprintln!("took {:.1?}", started.elapsed());
}

#[test]
fn readyz_answers_503_until_started() {
    if !require_root("readyz_answers_503_until_started")
        || !require_etcd("readyz_answers_503_until_started")
        || !require_tools("readyz_answers_503_until_started")
    {
        return;
    }
    const ETCD_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
    let c = Cluster::hosts("opsready", 3);
    let ns = Netns::new("opsready-etcd");
    c.attach_to_switch(&ns, ETCD_IP);
    let mut e = Etcd::start_in(&ns, ETCD_IP, "opsready");
    let socket = c.dir().join("status-1.sock").display().to_string();
    let url = "http://192.0.2.1:9467/readyz";
    let mut d = thread::scope(|s| {
        // The daemon waits for the network config; the harness waits for `ready`.
        let daemon = s.spawn(|| {
            c.try_ringlay_from(
                1,
                c.underlay_ip(1),
                &["--etcd-endpoints", e.endpoint()],
                &[
                    "--queues",
                    "1",
                    "--status-socket",
                    &socket,
                    "--healthz-ip",
                    "192.0.2.1",
                    "--healthz-port",
                    "9467",
                    "--metrics-addr",
                    "192.0.2.1:9468",
                ],
            )
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let (code, body) = loop {
            let r = get(c.host(1), url);
            if r.0 != 0 || Instant::now() >= deadline {
                break r;
            }
            thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(code, 503, "/readyz before the config exists: {body}");
        assert_eq!(get(c.host(1), "http://192.0.2.1:9467/healthz").0, 200);
        e.put(
            "/coreos.com/network/config",
            r#"{"Network": "100.96.0.0/16", "Backend": {"Type": "vxlan"}}"#,
        );
        let d = daemon
            .join()
            .expect("the starting thread")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(get(c.host(1), url).0, 200, "{}", d.log());
        // With etcd: our lease's expiry, about 24 h ahead, and the watch counters.
        let (code, m) = get(c.host(1), "http://192.0.2.1:9468/metrics");
        assert_eq!(code, 200, "{m}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let expiry = sum(&m, "ringlay_lease_expiry_timestamp_seconds", &[]);
        assert!(
            (now + 23 * 3600..=now + 25 * 3600).contains(&expiry),
            "expiry {expiry}, now {now}:\n{m}"
        );
        assert!(m.contains("ringlay_etcd_watch_reconnects_total 0"), "{m}");
        assert!(m.contains("ringlay_etcd_resyncs_total 0"), "{m}");
        d
    });
    // etcd restarted: the watch is re-established after a full listing.
    e.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    let m = loop {
        let (_, m) = get(c.host(1), "http://192.0.2.1:9468/metrics");
        let counted = sum(&m, "ringlay_etcd_watch_reconnects_total", &[]) >= 1
            && sum(&m, "ringlay_etcd_resyncs_total", &[]) >= 1;
        if counted || Instant::now() >= deadline {
            break m;
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert!(
        sum(&m, "ringlay_etcd_watch_reconnects_total", &[]) >= 1
            && sum(&m, "ringlay_etcd_resyncs_total", &[]) >= 1,
        "no reconnect counted:\n{m}\n{}",
        d.log()
    );
    let _ = d.terminate();
}

/// `stat -L -c %i /proc/self/ns/net` in `ns`: the inode the default status path
/// of a daemon in `ns` is named after.
fn netns_inode(ns: &Netns) -> String {
    let out = ns.exec(&["stat", "-L", "-c", "%i", "/proc/self/ns/net"]);
    assert!(out.status.success(), "stat /proc/self/ns/net failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn default_status_socket_is_per_network_namespace() {
    if !require_root("default_status_socket_is_per_network_namespace") {
        return;
    }
    let c = Cluster::two_hosts("opsdef");
    let leases = c.static_leases_json("vxlan", true);
    let bin = ringlay_bin();
    let paths: Vec<_> = [1, 2]
        .map(|i| format!("/run/ringlay/ringlay0-netns{}.sock", netns_inode(c.host(i))))
        .into();
    assert_ne!(paths[0], paths[1], "two namespaces, one inode");
    // Started at once, several times: with one path for both, one of the two
    // either failed to bind or answered for the other.
    for round in 0..3 {
        let daemons = thread::scope(|s| {
            let starts = [1, 2].map(|i| {
                let leases = &leases;
                let c = &c;
                s.spawn(move || c.try_ringlay_default_status(i, leases, &["--queues", "1"]))
            });
            starts.map(|t| {
                t.join()
                    .expect("start thread")
                    .unwrap_or_else(|e| panic!("round {round}: {e}"))
            })
        });
        for (k, i) in [1usize, 2].into_iter().enumerate() {
            assert!(
                Path::new(&paths[k]).exists(),
                "round {round}: no {}",
                paths[k]
            );
            // No flag: the default path of the namespace `ringlay status` runs in.
            let out = c.host(i).exec(&["timeout", "5", &bin, "status", "--json"]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "round {round}: ringlay status on host {i}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            let subnet = doc["lease"]["subnet"].as_str().unwrap_or_default();
            assert!(
                subnet.starts_with(&format!("100.96.{i}.0/24")),
                "round {round}: host {i}'s ringlay status shows lease {subnet}"
            );
        }
        drop(daemons);
        for p in &paths {
            assert!(!Path::new(p).exists(), "round {round}: {p} left behind");
        }
    }
}
