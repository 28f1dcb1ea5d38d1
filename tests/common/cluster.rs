//! A [`Cluster`] whose daemons lease their subnets in a real etcd, as flanneld's
//! nodes do, and what the tests read back from those daemons.
//!
//! - [`etcd_on_switch`]: etcd in its own namespace on the cluster's switch (so a
//!   cluster of three hosts or more), with the network config written.
//! - [`join`]: ringlay on some hosts, each container moved into the subnet its
//!   host acquired ([`acquired_subnet`], read from subnet.env).
//! - [`status`] / [`status_of`]: a daemon's `ringlay status --json`;
//!   [`counters`] turns one of its counter objects into a map.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::etcd::Etcd;
use super::netns::{ringlay_bin, Cluster, Daemon, Netns};

/// flannel's default etcd prefix.
pub const PREFIX: &str = "/coreos.com/network";
/// etcd's address on the underlay, on the switch.
pub const ETCD_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// The network config of a vxlan overlay over the containers' 100.96.0.0/16.
/// Nodes acquire their subnets among 100.96.1.0–100.96.63.0 only, so the fixed
/// keys tests write (100.96.98.0/24, 100.96.200.0/24, …) never land on a node's
/// own lease by chance.
pub const VXLAN_CONFIG: &str = r#"{"Network":"100.96.0.0/16","SubnetMin":"100.96.1.0","SubnetMax":"100.96.63.0","Backend":{"Type":"vxlan"}}"#;

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
