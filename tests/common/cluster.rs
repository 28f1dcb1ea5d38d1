//! A [`Cluster`] whose daemons lease their subnets in a real etcd, as flanneld's
//! nodes do, and what the tests read back from those daemons.
//!
//! - [`etcd_on_switch`]: etcd in its own namespace on the cluster's switch (so a
//!   cluster of three hosts or more), with the network config written.
//! - [`join`]: ringlay on some hosts, each container moved into the subnet its
//!   host acquired ([`acquired_subnet`], read from subnet.env).
//! - [`status`] / [`status_of`]: a daemon's `ringlay status --json`;
//!   [`counters`] turns one of its counter objects into a map.
//! - IPv6 underlays: [`dual_config`] / [`ipv6_only_config`] (network configs),
//!   [`etcd_on_switch_at`] (etcd reachable on 192.0.2.254 and/or 2001:db8::fe,
//!   listening on either), [`join_dual`] (ringlay with `--public-ipv6`, each
//!   container moved into both leased subnets, [`Member`]),
//!   [`put_flannel_lease`] / [`vxlan_leases`] (leases as flanneld writes and
//!   reads them) and [`kernel_vxlan_node_dual_etcd`] (a flanneld dual-stack
//!   kernel node that writes its lease and follows the others in etcd).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::etcd::Etcd;
use super::netns::{ringlay_bin, Cluster, Daemon, Netns, VxlanHalf, VxlanLease};

/// flannel's default etcd prefix.
pub const PREFIX: &str = "/coreos.com/network";
/// etcd's address on the underlay, on the switch.
pub const ETCD_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// The network config of a vxlan overlay over the containers' 100.96.0.0/16.
/// Nodes acquire their subnets among 100.96.1.0–100.96.63.0 only, so the fixed
/// keys tests write (100.96.98.0/24, 100.96.200.0/24, …) never land on a node's
/// own lease by chance.
pub const VXLAN_CONFIG: &str = r#"{"Network":"100.96.0.0/16","SubnetMin":"100.96.1.0","SubnetMax":"100.96.63.0","Backend":{"Type":"vxlan"}}"#;

/// etcd's IPv6 address on the underlay, on the switch.
pub const ETCD_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe);

/// A dual-stack network config: 100.96.0.0/16 in /24s and fd00:100:96::/48 in
/// /64s, nodes leasing among the first 63 of each, over `backend`.
pub fn dual_config(backend: &str) -> String {
    format!(
        r#"{{"Network":"100.96.0.0/16","SubnetMin":"100.96.1.0","SubnetMax":"100.96.63.0","EnableIPv6":true,"IPv6Network":"fd00:100:96::/48","IPv6SubnetLen":64,"IPv6SubnetMin":"fd00:100:96:1::","IPv6SubnetMax":"fd00:100:96:3f::","Backend":{{"Type":"{backend}"}}}}"#
    )
}

/// An IPv6-only network config (`EnableIPv4: false`): fd00:100:96::/48 in /64s
/// among the first 63, over `backend`.
pub fn ipv6_only_config(backend: &str) -> String {
    format!(
        r#"{{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:100:96::/48","IPv6SubnetLen":64,"IPv6SubnetMin":"fd00:100:96:1::","IPv6SubnetMax":"fd00:100:96:3f::","Backend":{{"Type":"{backend}"}}}}"#
    )
}

/// etcd in its own namespace (`<tag>-etcd`) on the cluster's switch, reachable
/// on the families the underlay has (192.0.2.254 and 2001:db8::fe) and
/// listening on `listen` (one of them), with `config` at `<prefix>/config`.
pub fn etcd_on_switch_at(c: &Cluster, tag: &str, listen: IpAddr, config: &str) -> (Netns, Etcd) {
    let ns = Netns::new(&format!("{tag}-etcd"));
    let u = c.underlay();
    c.attach_to_switch_at(
        &ns,
        u.has_v4().then_some(ETCD_IP),
        u.has_v6().then_some(ETCD_IP6),
    );
    let e = Etcd::start_in(&ns, listen, tag);
    e.put(&format!("{PREFIX}/config"), config);
    (ns, e)
}

/// The IPv6 subnet (network address) in a subnet.env's `FLANNEL_IPV6_SUBNET`,
/// which must be a /64.
pub fn subnet6_in(file: &Path) -> Ipv6Addr {
    let text =
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("FLANNEL_IPV6_SUBNET="))
        .unwrap_or_else(|| panic!("no FLANNEL_IPV6_SUBNET in:\n{text}"));
    assert!(line.ends_with("/64"), "{line}");
    let addr: Ipv6Addr = line
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("FLANNEL_IPV6_SUBNET address: {line}"));
    Ipv6Addr::from(u128::from(addr) & !((1u128 << 64) - 1))
}

/// `FLANNEL_MTU` of a subnet.env.
pub fn mtu_in(file: &Path) -> u32 {
    let text =
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    text.lines()
        .find_map(|l| l.strip_prefix("FLANNEL_MTU="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no FLANNEL_MTU in:\n{text}"))
}

/// A ringlay node of a dual-stack or IPv6-only cluster and its container's
/// addresses in the subnets it leased.
#[derive(Debug)]
pub struct Member {
    /// The daemon.
    pub daemon: Daemon,
    /// Its host (1-based).
    pub host: usize,
    /// The container's IPv4 address (`None` on an IPv6-only cluster).
    pub v4: Option<Ipv4Addr>,
    /// The container's IPv6 address.
    pub v6: Ipv6Addr,
}

/// Starts ringlay with etcd on each of `hosts` ([`Cluster::ringlay_etcd_dual`]:
/// `--public-ip` and `--public-ipv6` as the underlay has them, one worker, then
/// `extra`), moves each container into the subnets its host leased (read from
/// its subnet.env) and sets the container veth MTU to its `FLANNEL_MTU`.
pub fn join_dual(c: &Cluster, e: &Etcd, hosts: &[usize], extra: &[&str]) -> Vec<Member> {
    let mut args = vec!["--queues", "1"];
    args.extend_from_slice(extra);
    hosts
        .iter()
        .map(|&i| {
            let d = c.ringlay_etcd_dual(i, e.endpoint(), &args);
            let v4 = c
                .underlay()
                .has_v4()
                .then(|| c.readdress_container(i, acquired_subnet(&d)));
            let v6 = c.readdress_container6(i, subnet6_in(d.subnet_file()));
            c.set_container_mtu(i, mtu_in(d.subnet_file()));
            Member {
                daemon: d,
                host: i,
                v4,
                v6,
            }
        })
        .collect()
}

/// Writes `lease` at its key as flanneld writes it ([`VxlanLease::flannel_value`]).
pub fn put_flannel_lease(e: &Etcd, lease: &VxlanLease) {
    e.put(
        &format!("{PREFIX}/subnets/{}", lease.key()),
        &lease.flannel_value(),
    );
}

/// Every vxlan lease in etcd, read as flanneld reads them: the key's subnets,
/// `PublicIP` / `PublicIPv6`, and the VtepMACs of `BackendData` /
/// `BackendV6Data`. A half missing any of these is left out; panics on a value
/// that is not JSON.
pub fn vxlan_leases(e: &Etcd) -> Vec<(String, VxlanLease)> {
    e.get_prefix(&format!("{PREFIX}/subnets/"))
        .into_iter()
        .map(|(k, v)| {
            let key = k.rsplit('/').next().expect("a key").to_owned();
            let j: serde_json::Value =
                serde_json::from_str(&v).unwrap_or_else(|e| panic!("{k}: {e}: {v}"));
            let (k4, k6) = match key.split_once('&') {
                Some((a, b)) => (a.to_owned(), Some(b.to_owned())),
                None => (key.clone(), None),
            };
            let half =
                |net: &str, public: &str, data: &str| -> Option<(String, u8, String, String)> {
                    let (a, len) = net.rsplit_once('-')?;
                    let len: u8 = len.parse().ok()?;
                    let public = j[public].as_str()?.to_owned();
                    let mac = j[data]["VtepMAC"].as_str()?.to_owned();
                    (len > 0).then(|| (a.to_owned(), len, public, mac))
                };
            let v4 = half(&k4, "PublicIP", "BackendData").and_then(|(a, len, p, m)| {
                Some(VxlanHalf {
                    subnet: a.parse().ok()?,
                    prefix_len: len,
                    public_ip: p.parse().ok()?,
                    vtep_mac: m,
                })
            });
            let v6 = k6
                .and_then(|k6| half(&k6, "PublicIPv6", "BackendV6Data"))
                .and_then(|(a, len, p, m)| {
                    Some(VxlanHalf {
                        subnet: a.parse().ok()?,
                        prefix_len: len,
                        public_ip: p.parse().ok()?,
                        vtep_mac: m,
                    })
                });
            (key, VxlanLease { v4, v6 })
        })
        .collect()
}

/// Makes host i a flanneld dual-stack (or IPv6-only) vxlan node in etcd: writes
/// `own` as flanneld writes it, then configures `flannel.1` / `flannel-v6.1`
/// ([`Cluster::kernel_vxlan_node_for`]) for every other vxlan lease in etcd.
/// Returns how many remote leases it configured.
pub fn kernel_vxlan_node_dual_etcd(c: &Cluster, e: &Etcd, i: usize, own: &VxlanLease) -> usize {
    put_flannel_lease(e, own);
    let peers: Vec<VxlanLease> = vxlan_leases(e)
        .into_iter()
        .filter(|(k, _)| *k != own.key())
        .map(|(_, l)| l)
        .collect();
    c.kernel_vxlan_node_for(i, own, &peers);
    peers.len()
}

/// etcd in its own namespace (`<tag>-etcd`) on the cluster's switch at
/// [`ETCD_IP`], with `config` at `<prefix>/config`.
pub fn etcd_on_switch(c: &Cluster, tag: &str, config: &str) -> (Netns, Etcd) {
    let ns = Netns::new(&format!("{tag}-etcd"));
    c.attach_to_switch(&ns, ETCD_IP);
    let e = Etcd::start_in(&ns, ETCD_IP, tag);
    e.put(&format!("{PREFIX}/config"), config);
    (ns, e)
}

/// The subnet (its network address) recorded in a subnet.env, which must be a /24.
pub fn subnet_in(file: &Path) -> Ipv4Addr {
    let text =
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("FLANNEL_SUBNET="))
        .unwrap_or_else(|| panic!("no FLANNEL_SUBNET in:\n{text}"));
    let addr: Ipv4Addr = line
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("FLANNEL_SUBNET address");
    assert!(line.ends_with("/24"), "{line}");
    Ipv4Addr::from(u32::from(addr) & 0xffff_ff00)
}

/// The subnet (its network address) a daemon wrote to its subnet.env.
pub fn acquired_subnet(d: &Daemon) -> Ipv4Addr {
    subnet_in(d.subnet_file())
}

/// Starts ringlay (one worker) with etcd on each of `hosts`, moves each container
/// into the subnet its host acquired, and returns the daemons and the containers'
/// addresses, in the order of `hosts`.
pub fn join(c: &Cluster, e: &Etcd, hosts: &[usize]) -> (Vec<Daemon>, Vec<Ipv4Addr>) {
    let mut daemons = Vec::new();
    let mut addrs = Vec::new();
    for &i in hosts {
        let d = c.ringlay_etcd(i, e.endpoint(), &["--queues", "1"]);
        addrs.push(c.readdress_container(i, acquired_subnet(&d)));
        daemons.push(d);
    }
    (daemons, addrs)
}

/// Where the harness puts host i's status socket.
pub fn status_socket(c: &Cluster, i: usize) -> PathBuf {
    c.dir().join(format!("status-{i}.sock"))
}

/// `ringlay status --json` of the daemon listening on `socket`, run in `ns`.
pub fn status(ns: &Netns, socket: &Path) -> serde_json::Value {
    let bin = ringlay_bin();
    let sock = socket.display().to_string();
    let out = ns.exec(&["timeout", "5", &bin, "status", "--json", "--socket", &sock]);
    assert!(
        out.status.success(),
        "ringlay status --socket {sock}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

/// `ringlay status --json` of host i's daemon.
pub fn status_of(c: &Cluster, i: usize) -> serde_json::Value {
    status(c.host(i), &status_socket(c, i))
}

/// A counter object of a status document (`drops`, `errors`: name → count, only
/// the non-zero ones listed) as a map; anything else is an empty map.
pub fn counters(v: &serde_json::Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// Decodes each lease value as flanneld does (Go's encoding/json into structs
/// of flannel's field names: `tests/data/flannel-decode/main.go`) and returns
/// one line per value: `PublicIP=… BackendType=… VNI=… VtepMAC=…`, or
/// `error: …`. None when Go is missing (outside CI; `CI=true` fails).
pub fn flannel_decode(test: &str, values: &[String]) -> Option<Vec<String>> {
    if !super::netns::require_command(test, "go", "golang-go") {
        return None;
    }
    let dir = std::env::temp_dir().join(super::netns::unique_name("ringlay-go"));
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/flannel-decode/main.go");
    let mut child = std::process::Command::new("go")
        .arg("run")
        .arg(&program)
        .env("GOPATH", dir.join("gopath"))
        .env("GOCACHE", dir.join("cache"))
        .env("GO111MODULE", "off")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("go run");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        for v in values {
            writeln!(stdin, "{v}").expect("write a value");
        }
    }
    let out = child.wait_with_output().expect("go run");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "go run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}
