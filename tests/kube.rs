//! `ringlay run --kube-subnet-mgr` against a real kube-apiserver (with its etcd)
//! on the test cluster's switch: each ringlay node's subnet is its Node's podCIDR,
//! it writes flannel's annotations byte for byte and sets NetworkUnavailable to
//! False, and it runs with a ServiceAccount token bound only to the ClusterRole of
//! `dist/kube-ringlay.yml` — so these tests also prove that role is enough.
//!
//! - vxlan: three ringlay nodes and a host configured as a flanneld vxlan node from
//!   the annotations (its own written as flanneld writes them): every container
//!   reaches every other; a deleted Node's table entry goes; a malformed
//!   annotation is warned about once and the table keeps the node's last lease.
//! - udp: three ringlay nodes reach each other; `ringlay watch --kube-subnet-mgr`
//!   follows them read-only.
//! - a missing podCIDR is waited for (`/readyz` 503), then used once set; a
//!   restart keeps the VtepMAC our annotation recorded.
//! - the apiserver restarted and its etcd compacted during traffic: no packet
//!   lost, and the watch re-lists and follows again.
//! - dual-stack Nodes: the IPv6 annotations as flanneld writes them, and IPv6
//!   between containers over the IPv6 underlay.
//!
//! Needs root, etcd, kubectl, openssl, curl and the kube-apiserver binary
//! (`scripts/kube-apiserver.sh`); skips with a reason without them, fails with
//! `CI=true`.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use common::kube::{manifest_rbac, require_kube, KubeApiserver, RINGLAY_SA_USER};
use common::netns::{
    eventually, require_command, require_root, ringlay_bin, Cluster, Daemon, Netns,
};

/// One cluster with an apiserver at a time: each takes a core while it starts.
static SERIAL: Mutex<()> = Mutex::new(());

/// The apiserver's address on the switch.
const API_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);
const PREFIX: &str = "flannel.alpha.coreos.com";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const MERGE: &str = "application/merge-patch+json";
const JSON: &str = "application/json";
/// The flanneld-style host's VtepMAC.
const KERNEL_MAC: &str = "0e:00:00:00:04:00";

/// A test cluster with an apiserver on its switch.
struct KubeCluster {
    // Field order is drop order: the daemons' namespaces go with the cluster, the
    // apiserver before its namespace.
    c: Cluster,
    api: KubeApiserver,
    _api_ns: Netns,
    kubeconfig: PathBuf,
    net_conf: PathBuf,
    _serial: std::sync::MutexGuard<'static, ()>,
}

fn start(tag: &str, hosts: usize, backend: &str) -> Option<KubeCluster> {
    let conf = format!(r#"{{"Network": "100.96.0.0/16", "Backend": {{"Type": "{backend}"}}}}"#);
    start_with(tag, &conf, || Cluster::hosts(tag, hosts))
}

/// A cluster of `cluster()`'s hosts with an apiserver, every node reading
/// `conf` as its `net-conf.json`.
fn start_with(tag: &str, conf: &str, cluster: impl FnOnce() -> Cluster) -> Option<KubeCluster> {
    if !require_root(tag) || !require_command(tag, "kubectl", "kubectl") {
        return None;
    }
    let bin = require_kube(tag)?;
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = cluster();
    let api_ns = Netns::new(&format!("{tag}-api"));
    c.attach_to_switch(&api_ns, API_IP);
    let api = KubeApiserver::start_in(&api_ns, API_IP, &bin, tag, &[RINGLAY_SA_USER]);
    let out = api.kubectl(
        api.admin_token(),
        &["apply", "-f", "-"],
        Some(&manifest_rbac()),
    );
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sa = api.token(RINGLAY_SA_USER);
    assert!(
        eventually(Duration::from_secs(10), || api
            .call("GET", "/api/v1/nodes", sa, None)
            .0
            == 200),
        "the ServiceAccount cannot list nodes"
    );
    let kubeconfig = api.write_kubeconfig(sa);
    let net_conf = c.dir().join("net-conf.json");
    std::fs::write(&net_conf, conf).expect("write net-conf.json");
    Some(KubeCluster {
        c,
        api,
        _api_ns: api_ns,
        kubeconfig,
        net_conf,
        _serial: serial,
    })
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

impl KubeCluster {
    fn admin(&self, method: &str, path: &str, body: Option<(&str, &str)>) -> serde_json::Value {
        let (code, text) = self.api.call(method, path, self.api.admin_token(), body);
        assert!((200..300).contains(&code), "{method} {path}: {code} {text}");
        json(&text)
    }

    /// Registers node-i as a kubelet would, with `pod_cidr` if given and
    /// `annotations`.
    fn create_node(&self, i: usize, pod_cidr: Option<&str>, annotations: serde_json::Value) {
        self.create_node_with(i, pod_cidr.as_slice(), annotations);
    }

    /// node-i with `pod_cidrs` (the first is also `podCIDR`, as the node IPAM
    /// controller sets them; none: no podCIDR yet).
    fn create_node_with(&self, i: usize, pod_cidrs: &[&str], annotations: serde_json::Value) {
        let mut node = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": format!("node-{i}"), "annotations": annotations },
            "spec": {},
        });
        if let Some(first) = pod_cidrs.first() {
            node["spec"] = serde_json::json!({ "podCIDR": first, "podCIDRs": pod_cidrs });
        }
        let made = self.admin("POST", "/api/v1/nodes", Some((JSON, &node.to_string())));
        assert_eq!(
            made["kind"], "Node",
            "the apiserver refused node-{i}: {made}"
        );
    }

    fn node(&self, i: usize) -> serde_json::Value {
        self.admin("GET", &format!("/api/v1/nodes/node-{i}"), None)
    }

    /// Our annotations on node-i (those under the flannel prefix).
    fn annotations(&self, i: usize) -> BTreeMap<String, String> {
        let node = self.node(i);
        let all = node["metadata"]["annotations"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        all.into_iter()
            .filter(|(k, _)| k.starts_with(PREFIX))
            .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
            .collect()
    }

    fn annotate(&self, i: usize, annotations: serde_json::Value) {
        let patch = serde_json::json!({ "metadata": { "annotations": annotations } });
        let path = format!("/api/v1/nodes/node-{i}");
        self.admin("PATCH", &path, Some((MERGE, &patch.to_string())));
    }

    fn ringlay(&self, i: usize, extra: &[&str]) -> Result<Daemon, String> {
        let (kc, nc) = (
            self.kubeconfig.display().to_string(),
            self.net_conf.display().to_string(),
        );
        let source = [
            "--kube-subnet-mgr",
            "--kubeconfig-file",
            &kc,
            "--net-config-path",
            &nc,
        ];
        let mut args = vec!["--queues", "1"];
        args.extend_from_slice(extra);
        let node = format!("node-{i}");
        let ip = self.c.underlay_ip(i);
        self.c
            .try_ringlay_env(i, ip, &source, &args, &[("NODE_NAME", &node)])
    }

    /// ringlay on host i as [`KubeCluster::ringlay`] starts it, without waiting
    /// for it to be ready.
    fn spawn_ringlay(&self, i: usize) -> Spawned {
        let (kc, nc) = (
            self.kubeconfig.display().to_string(),
            self.net_conf.display().to_string(),
        );
        let dir = self.c.dir();
        let subnet = dir.join(format!("subnet-{i}.env")).display().to_string();
        let socket = dir.join(format!("status-{i}.sock")).display().to_string();
        let ip = self.c.underlay_ip(i).to_string();
        let bin = ringlay_bin();
        let argv = [
            bin.as_str(),
            "run",
            "--kube-subnet-mgr",
            "--kubeconfig-file",
            &kc,
            "--net-config-path",
            &nc,
            "--public-ip",
            &ip,
            "--subnet-file",
            &subnet,
            "--status-socket",
            &socket,
            "--queues",
            "1",
        ];
        let mut cmd = self.c.host(i).command(&argv);
        cmd.env("NODE_NAME", format!("node-{i}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = self.c.host(i).spawn_command(cmd);
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Spawned { child, lines }
    }

    /// Peers in host i's table, by subnet, from `ringlay status`.
    fn peers(&self, i: usize) -> Vec<String> {
        let status = common::cluster::status_of(&self.c, i);
        let mut subnets: Vec<String> = status["peers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| p["subnet"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        subnets.sort();
        subnets
    }

    /// Every container pings every other.
    fn assert_all_pairs(&self, hosts: &[usize]) {
        for &i in hosts {
            for &j in hosts.iter().filter(|&&j| j != i) {
                let to = IpAddr::V4(self.c.container_ip(j));
                assert!(
                    self.c.ping(i, to, 3),
                    "container {i} cannot reach container {j}"
                );
            }
        }
    }
}

/// A daemon started by [`KubeCluster::spawn_ringlay`], its log lines on a channel.
struct Spawned {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Spawned {
    /// The log up to the first line holding `needle` (within 20 s).
    fn wait_for_line(&self, needle: &str) -> String {
        let mut log = String::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(20)) {
            log += &line;
            log.push('\n');
            if line.contains(needle) {
                return log;
            }
        }
        panic!("no line with {needle:?}:\n{log}");
    }

    /// Waits up to `within` for the process to exit; its status and the rest of
    /// its log. Killed if it does not.
    fn finish(mut self, within: Duration) -> (std::process::ExitStatus, String) {
        let deadline = std::time::Instant::now() + within;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if std::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("still running {within:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader ends at EOF, once the process is gone.
        let rest: Vec<String> = self.lines.iter().collect();
        (status, rest.join("\n"))
    }
}

/// What flanneld writes on a vxlan node with public IP `ip` and VTEP `mac`.
fn flanneld_annotations(ip: Ipv4Addr, mac: &str) -> serde_json::Value {
    serde_json::json!({
        format!("{PREFIX}/kube-subnet-manager"): "true",
        format!("{PREFIX}/backend-type"): "vxlan",
        format!("{PREFIX}/backend-data"): format!(r#"{{"VNI":1,"VtepMAC":"{mac}"}}"#),
        format!("{PREFIX}/public-ip"): ip.to_string(),
    })
}

/// The VtepMAC in node-i's backend-data annotation.
fn vtep_mac_of(k: &KubeCluster, i: usize) -> String {
    let a = k.annotations(i);
    let data = json(&a[&format!("{PREFIX}/backend-data")]);
    data["VtepMAC"].as_str().expect("VtepMAC").to_owned()
}

/// Host i as flanneld's vxlan backend sets a node up: `flannel.1` (VNI 1, port
/// 8472, nolearning, MTU 1450, default offloads) with `100.96.i.0/32`, and for each
/// peer j what flanneld programs from j's annotations: a route onlink via
/// `100.96.j.0`, a permanent neighbour to j's VtepMAC, an fdb entry to j's
/// public-ip.
fn flanneld_vxlan_node(k: &KubeCluster, i: usize, peers: &[usize]) {
    let mut s = format!(
        "ip link add flannel.1 address {KERNEL_MAC} type vxlan id 1 local {ip} dev eth0 dstport 8472 nolearning
         ip link set flannel.1 mtu 1450 up
         ip addr add 100.96.{i}.0/32 dev flannel.1\n",
        ip = k.c.underlay_ip(i)
    );
    for &j in peers {
        let a = k.annotations(j);
        let public_ip = &a[&format!("{PREFIX}/public-ip")];
        let mac = vtep_mac_of(k, j);
        s += &format!(
            "ip route add 100.96.{j}.0/24 via 100.96.{j}.0 dev flannel.1 onlink
             ip neigh add 100.96.{j}.0 lladdr {mac} dev flannel.1 nud permanent
             bridge fdb append {mac} dev flannel.1 dst {public_ip}\n"
        );
    }
    k.c.host(i).sh(&s);
}

fn network_unavailable(node: &serde_json::Value) -> Option<serde_json::Value> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "NetworkUnavailable")
        .cloned()
}

#[test]
fn vxlan_nodes_and_a_flanneld_node_reach_each_other_through_the_node_annotations() {
    let Some(k) = start("kvx", 4, "vxlan") else {
        return;
    };
    for i in 1..=3 {
        k.create_node(i, Some(&format!("100.96.{i}.0/24")), serde_json::json!({}));
    }
    k.create_node(
        4,
        Some("100.96.4.0/24"),
        flanneld_annotations(k.c.underlay_ip(4), KERNEL_MAC),
    );
    let daemons: Vec<Daemon> = (1..=3)
        .map(|i| k.ringlay(i, &[]).unwrap_or_else(|e| panic!("{e}")))
        .collect();

    // Our annotations, byte for byte as flanneld writes them, but for the
    // feature list after flannel's fields in backend-data, which flanneld's
    // decoder ignores (the flanneld-style node below reads it as flanneld would).
    let want: BTreeMap<String, String> = [
        ("kube-subnet-manager", "true".to_owned()),
        ("backend-type", "vxlan".to_owned()),
        (
            "backend-data",
            r#"{"VNI":1,"VtepMAC":"0e:72:c0:00:02:01","RinglayFeatures":["partial-csum"]}"#
                .to_owned(),
        ),
        ("public-ip", "192.0.2.1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{PREFIX}/{k}"), v))
    .collect();
    assert_eq!(k.annotations(1), want);
    for i in 1..=3 {
        let cond =
            network_unavailable(&k.node(i)).unwrap_or_else(|| panic!("node-{i}: no condition"));
        assert_eq!(cond["status"], "False", "{cond}");
        assert_eq!(cond["reason"], "RinglayIsUp", "{cond}");
    }

    let rss = std::fs::read_to_string(format!("/proc/{}/status", daemons[0].pid()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .map(str::to_owned)
        .unwrap_or_default();
    eprintln!("ringlay run --kube-subnet-mgr --queues 1 on host 1: {rss}");
    flanneld_vxlan_node(&k, 4, &[1, 2, 3]);
    assert_eq!(
        k.peers(1),
        ["100.96.2.0/24", "100.96.3.0/24", "100.96.4.0/24"],
        "host 1's table"
    );
    k.assert_all_pairs(&[1, 2, 3, 4]);

    // A malformed annotation: one warning naming the node, the lease it had stays.
    let data = format!("{PREFIX}/backend-data");
    k.annotate(
        2,
        serde_json::json!({ data.clone(): r#"{"VNI":1,"VtepMAC":"not-a-mac"}"# }),
    );
    k.annotate(2, serde_json::json!({ "example.com/unrelated": "1" }));
    let warned = |d: &Daemon| {
        d.log()
            .lines()
            .filter(|l| l.contains("node-2") && l.contains("skipping"))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(10), || warned(&daemons[0]) >= 1),
        "{}",
        daemons[0].log()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(warned(&daemons[0]), 1, "{}", daemons[0].log());
    assert!(
        daemons[0].log().contains("backend-data VtepMAC"),
        "the warning names the field:\n{}",
        daemons[0].log()
    );
    assert_eq!(k.peers(1).len(), 3);
    assert!(
        k.c.ping(1, IpAddr::V4(k.c.container_ip(2)), 3),
        "node-2's last lease was kept"
    );

    // A deleted Node: its table entry goes, and with it the path to its containers.
    k.admin("DELETE", "/api/v1/nodes/node-3", None);
    assert!(
        eventually(Duration::from_secs(10), || k.peers(1)
            == ["100.96.2.0/24", "100.96.4.0/24"]),
        "node-3 still in host 1's table: {:?}",
        k.peers(1)
    );
    assert!(
        !k.c.ping(1, IpAddr::V4(k.c.container_ip(3)), 2),
        "container 3 still reachable"
    );
    assert!(k.c.ping(1, IpAddr::V4(k.c.container_ip(4)), 2));
    drop(daemons);
}

#[test]
fn udp_nodes_reach_each_other_and_watch_follows_read_only() {
    let Some(k) = start("kudp", 3, "udp") else {
        return;
    };
    for i in 1..=3 {
        k.create_node(i, Some(&format!("100.96.{i}.0/24")), serde_json::json!({}));
    }
    let daemons: Vec<Daemon> = (1..=3)
        .map(|i| k.ringlay(i, &[]).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    // flannel's udp backend sets no BackendType: backend-type is empty, backend-data null.
    let a = k.annotations(2);
    assert_eq!(a[&format!("{PREFIX}/backend-type")], "");
    // flannel's is null; ours holds only the feature list.
    assert_eq!(
        a[&format!("{PREFIX}/backend-data")],
        r#"{"RinglayFeatures":["partial-csum"]}"#
    );
    assert_eq!(a[&format!("{PREFIX}/public-ip")], "192.0.2.2");
    k.assert_all_pairs(&[1, 2, 3]);

    // The read-only follower, with the same (read-only suffices) credentials.
    let (kc, nc) = (
        k.kubeconfig.display().to_string(),
        k.net_conf.display().to_string(),
    );
    let bin = ringlay_bin();
    let argv = [
        bin.as_str(),
        "watch",
        "--kube-subnet-mgr",
        "--kubeconfig-file",
        &kc,
        "--net-config-path",
        &nc,
    ];
    let mut cmd = k.c.host(1).command(&argv);
    cmd.stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let child = k.c.host(1).spawn_command(cmd);
    std::thread::sleep(Duration::from_secs(3));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().expect("ringlay watch");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("peers=3"),
        "watch did not see the three nodes:\n{log}"
    );
    drop(daemons);
}

#[test]
fn a_missing_pod_cidr_is_waited_for_and_a_restart_keeps_the_recorded_vtep_mac() {
    let Some(k) = start("kwait", 3, "vxlan") else {
        return;
    };
    // A previous run's annotations, with its VtepMAC.
    let recorded = "0e:aa:00:00:00:01";
    k.create_node(1, None, flanneld_annotations(k.c.underlay_ip(1), recorded));
    k.create_node(2, Some("100.96.2.0/24"), serde_json::json!({}));
    let d2 = k.ringlay(2, &[]).unwrap_or_else(|e| panic!("{e}"));

    let port = "18081";
    std::thread::scope(|s| {
        let assign = s.spawn(|| {
            std::thread::sleep(Duration::from_secs(3));
            let url = format!("http://127.0.0.1:{port}/readyz");
            let out =
                k.c.host(1)
                    .exec(&["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", &url]);
            let waiting = String::from_utf8_lossy(&out.stdout).into_owned();
            let patch = r#"{"spec":{"podCIDR":"100.96.1.0/24","podCIDRs":["100.96.1.0/24"]}}"#;
            k.admin("PATCH", "/api/v1/nodes/node-1", Some((STRATEGIC, patch)));
            waiting
        });
        let d1 = k
            .ringlay(1, &["--healthz-port", port])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            assign.join().expect("assign"),
            "503",
            "/readyz while waiting"
        );
        assert!(d1.log().contains("has no podCIDR yet"), "{}", d1.log());
        assert_eq!(vtep_mac_of(&k, 1), recorded);
        assert_eq!(
            common::cluster::status_of(&k.c, 1)["lease"]["vtep_mac"],
            recorded
        );
        assert!(k.c.ping(1, IpAddr::V4(k.c.container_ip(2)), 3));
        drop(d1);
    });

    // SIGTERM while waiting for a podCIDR: a clean exit, at once.
    k.create_node(3, None, serde_json::json!({}));
    let waiting = k.spawn_ringlay(3);
    let pid = waiting.child.id().to_string();
    let log = waiting.wait_for_line("has no podCIDR yet");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let (status, rest) = waiting.finish(Duration::from_secs(5));
    assert!(status.success(), "{status}: {log}{rest}");
    assert!(
        rest.contains("stopped by a signal before a lease was held"),
        "{log}{rest}"
    );

    // Restarted: the same MAC, and nothing to write.
    let d1 = k.ringlay(1, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(d1.log().contains("already current"), "{}", d1.log());
    assert_eq!(vtep_mac_of(&k, 1), recorded);
    assert!(k.c.ping(2, IpAddr::V4(k.c.container_ip(1)), 3));
    drop((d1, d2));
}

#[test]
fn forwarding_goes_on_while_the_apiserver_restarts_and_the_watch_recovers_from_compaction() {
    let Some(mut k) = start("kcomp", 3, "vxlan") else {
        return;
    };
    for i in 1..=2 {
        k.create_node(i, Some(&format!("100.96.{i}.0/24")), serde_json::json!({}));
    }
    let metrics = "127.0.0.1:19465";
    let d1 = k
        .ringlay(1, &["--metrics-addr", metrics])
        .unwrap_or_else(|e| panic!("{e}"));
    let d2 = k.ringlay(2, &[]).unwrap_or_else(|e| panic!("{e}"));
    let lists = |k: &KubeCluster| -> u64 {
        let out =
            k.c.host(1)
                .exec(&["curl", "-s", &format!("http://{metrics}/metrics")]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("ringlay_kube_node_lists_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(lists(&k), 1);

    // Traffic throughout: 25 s of pings, 5 a second.
    let mut ping = k.c.container(1).command(&[
        "ping",
        "-q",
        "-c",
        "125",
        "-i",
        "0.2",
        "-W",
        "1",
        &k.c.container_ip(2).to_string(),
    ]);
    ping.stdout(std::process::Stdio::piped());
    let ping = k.c.container(1).spawn_command(ping);

    // Writes elsewhere move etcd's revision past what ringlay's watch has seen;
    // then the server goes down, its history is compacted, and it comes back.
    for n in 0..20 {
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("filler-{n}")}});
        k.admin(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some((JSON, &cm.to_string())),
        );
    }
    k.api.kill();
    std::thread::sleep(Duration::from_secs(2));
    let status = k.api.etcd().ctl(&["endpoint", "status", "-w", "json"]);
    let status = json(&String::from_utf8_lossy(&status.stdout));
    let revision = status[0]["Status"]["header"]["revision"]
        .as_i64()
        .expect("etcd revision");
    let out = k.api.etcd().ctl(&["compact", &revision.to_string()]);
    assert!(
        out.status.success(),
        "etcdctl compact: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    k.api.restart();

    // The watch re-lists, then follows: a node added now reaches host 1's table.
    assert!(
        eventually(Duration::from_secs(40), || lists(&k) >= 2),
        "no re-list:\n{}",
        d1.log()
    );
    k.create_node(
        3,
        Some("100.96.3.0/24"),
        flanneld_annotations(k.c.underlay_ip(3), KERNEL_MAC),
    );
    assert!(
        eventually(Duration::from_secs(20), || k.peers(1).len() == 2),
        "node-3 never reached host 1's table: {:?}\n{}",
        k.peers(1),
        d1.log()
    );

    let out = ping.wait_with_output().expect("ping");
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    let received: u32 = summary
        .split(',')
        .find_map(|f| f.trim().strip_suffix(" received"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("ping summary: {summary}"));
    assert!(received >= 123, "forwarding stopped: {summary}");
    drop((d1, d2));
}

/// Where Debian's containernetworking-plugins installs the CNI plugins.
const CNI_BIN: &str = "/usr/lib/cni";

/// A `KEY=value` line of a subnet.env.
/// Dual-stack Nodes (`podCIDRs` of both families, `EnableIPv6` in
/// net-conf.json, hosts with an IPv6 underlay): each ringlay node writes the
/// IPv6 annotations as flanneld does (`public-ipv6`, `backend-v6-data` with the
/// VNI and its VtepMAC) beside the IPv4 ones, and the containers reach each
/// other over both families, IPv6 over the IPv6 underlay only.
#[test]
fn dual_stack_nodes_write_the_ipv6_annotations_and_carry_ipv6_over_ipv6() {
    let conf = r#"{"Network": "100.96.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:100:96::/48", "IPv6SubnetLen": 64, "Backend": {"Type": "vxlan"}}"#;
    let Some(k) = start_with("kdual", conf, || Cluster::dual_stack("kdual", 2)) else {
        return;
    };
    for i in 1..=2 {
        let (v4, v6) = (format!("100.96.{i}.0/24"), format!("fd00:100:96:{i}::/64"));
        k.create_node_with(i, &[&v4, &v6], serde_json::json!({}));
        k.c.count_underlay_sends(i, 8472);
    }
    let daemons: Vec<Daemon> = (1..=2)
        .map(|i| {
            let v6 = k.c.underlay_ip6(i).to_string();
            k.ringlay(i, &["--public-ipv6", &v6])
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    for i in 1..=2 {
        let a = k.annotations(i);
        let get = |name: &str| {
            a.get(&format!("{PREFIX}/{name}"))
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(get("public-ip"), k.c.underlay_ip(i).to_string(), "{a:?}");
        assert_eq!(get("public-ipv6"), k.c.underlay_ip6(i).to_string(), "{a:?}");
        let v4 = json(&get("backend-data"));
        let v6 = json(&get("backend-v6-data"));
        assert_eq!(v6["VNI"], 1, "{a:?}");
        assert_eq!(v6["VtepMAC"], v4["VtepMAC"], "one VTEP MAC for both: {a:?}");
        let env = subnet_env(&daemons[i - 1], "FLANNEL_IPV6_SUBNET");
        assert_eq!(env, format!("fd00:100:96:{i}::1/64"));
    }
    let v6_before = k.c.underlay_sends(1);
    for (from, to) in [(1, 2), (2, 1)] {
        let v6 = IpAddr::V6(k.c.container_ip6(to));
        assert!(k.c.ping(from, v6, 3), "container {from} -> {to} over IPv6");
    }
    let v6_after = k.c.underlay_sends(1);
    let sent = |m: &BTreeMap<String, (u64, u64)>, name: &str| m.get(name).map_or(0, |c| c.0);
    assert!(
        sent(&v6_after, "v6_2") >= 3 + sent(&v6_before, "v6_2"),
        "IPv6 pings went over the IPv6 underlay: {v6_before:?} -> {v6_after:?}"
    );
    assert_eq!(
        sent(&v6_after, "v4_2"),
        sent(&v6_before, "v4_2"),
        "and none over the IPv4 one: {v6_before:?} -> {v6_after:?}"
    );
    k.assert_all_pairs(&[1, 2]);
    drop(daemons);
}

fn subnet_env(d: &Daemon, key: &str) -> String {
    let text = std::fs::read_to_string(d.subnet_file()).expect("subnet.env");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
        .to_owned()
}

/// Runs CNI `command` (ADD, DEL) for the pod in `pod` on host i as the kubelet
/// does through flannel's CNI plugin: the bridge plugin with host-local IPAM,
/// configured from `d`'s subnet.env as flannel's plugin delegates (subnet and
/// MTU from the file, a route to the cluster network, masquerading left to the
/// daemon), with kube-flannel.yml's delegate options. Returns its output.
fn cni(k: &KubeCluster, i: usize, d: &Daemon, pod: &Netns, command: &str) -> String {
    let subnet = subnet_env(d, "FLANNEL_SUBNET");
    let (first, len) = subnet.split_once('/').expect("FLANNEL_SUBNET");
    let first: Ipv4Addr = first.parse().expect("FLANNEL_SUBNET address");
    let network = format!("{}/{len}", Ipv4Addr::from(u32::from(first) - 1));
    let mtu: u32 = subnet_env(d, "FLANNEL_MTU").parse().expect("FLANNEL_MTU");
    let ipmasq = subnet_env(d, "FLANNEL_IPMASQ") == "true";
    let conf = serde_json::json!({
        "cniVersion": "0.3.1", "name": "cbr0", "type": "bridge",
        "bridge": "cni0", "isGateway": true, "isDefaultGateway": true,
        "hairpinMode": true, "ipMasq": !ipmasq, "mtu": mtu,
        "ipam": {
            "type": "host-local",
            "ranges": [[{ "subnet": network }]],
            "routes": [{ "dst": subnet_env(d, "FLANNEL_NETWORK") }],
            "dataDir": k.c.dir().join(format!("cni-{i}")),
        },
    });
    let mut cmd = k.c.host(i).command(&[&format!("{CNI_BIN}/bridge")]);
    cmd.envs([
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", pod.name()),
        ("CNI_NETNS", &format!("/run/netns/{}", pod.name())),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", CNI_BIN),
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("run the bridge plugin");
    use std::io::Write;
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(conf.to_string().as_bytes())
        .expect("CNI config");
    drop(stdin);
    let out = child.wait_with_output().expect("bridge plugin");
    let result = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "CNI {command}: {result}{err}");
    result
}

/// CNI ADD: the pod's address.
fn cni_add(k: &KubeCluster, i: usize, d: &Daemon, pod: &Netns) -> Ipv4Addr {
    let result = cni(k, i, d, pod, "ADD");
    let addr = json(&result)["ips"][0]["address"]
        .as_str()
        .expect("an address")
        .to_owned();
    addr.split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("pod address")
}

#[test]
fn pods_added_by_the_cni_bridge_plugin_from_subnet_env_reach_each_other_in_cluster() {
    let Some(k) = start("kcni", 3, "vxlan") else {
        return;
    };
    if !std::path::Path::new(&format!("{CNI_BIN}/bridge")).exists() {
        let reason = format!("no CNI plugins in {CNI_BIN} (package containernetworking-plugins)");
        assert!(!common::netns::in_ci(), "CI=true and {reason}");
        eprintln!("skipping: {reason}");
        return;
    }
    // Pod subnets apart from the harness's own containers (100.96.i.0/24).
    for i in 1..=2 {
        k.create_node(i, Some(&format!("100.96.1{i}.0/24")), serde_json::json!({}));
    }
    let d1 = k
        .ringlay(1, &["--ip-masq"])
        .unwrap_or_else(|e| panic!("{e}"));

    // Host 2 as in kube-flannel.yml's pod: the service account's token and CA
    // where the kubelet mounts them (in a mount namespace of its own, over a
    // private /run), the API server's address in the environment, and the node
    // name read from our own Pod.
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "ringlay-node-2", "namespace": "kube-flannel" },
        "spec": {
            "nodeName": "node-2", "serviceAccountName": "ringlay",
            "automountServiceAccountToken": false,
            "containers": [{ "name": "ringlay", "image": "localhost/ringlay:0.1.0" }],
        },
    });
    k.admin(
        "POST",
        "/api/v1/namespaces/kube-flannel/pods",
        Some((JSON, &pod.to_string())),
    );
    let sa = k.c.dir().join("serviceaccount");
    std::fs::create_dir_all(&sa).expect("sa dir");
    std::fs::write(sa.join("token"), k.api.token(RINGLAY_SA_USER)).expect("token");
    std::fs::copy(k.api.ca_path(), sa.join("ca.crt")).expect("ca.crt");
    std::fs::write(sa.join("namespace"), "kube-flannel").expect("namespace");
    let mount = format!(
        "set -e
         mount -t tmpfs tmpfs /run
         mkdir -p /run/secrets/kubernetes.io/serviceaccount
         mount --bind {} /run/secrets/kubernetes.io/serviceaccount
         exec \"$@\"",
        sa.display()
    );
    let wrapper = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        &mount,
        "sh",
    ];
    let nc = k.net_conf.display().to_string();
    let api_port = k.api.url().rsplit(':').next().expect("port").to_owned();
    let env = [
        ("KUBERNETES_SERVICE_HOST", "192.0.2.250"),
        ("KUBERNETES_SERVICE_PORT", api_port.as_str()),
        ("POD_NAME", "ringlay-node-2"),
        ("POD_NAMESPACE", "kube-flannel"),
    ];
    let source = ["--kube-subnet-mgr", "--net-config-path", nc.as_str()];
    let d2 =
        k.c.try_ringlay_wrapped(2, &wrapper, &source, &["--queues", "1", "--ip-masq"], &env)
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(subnet_env(&d2, "FLANNEL_SUBNET"), "100.96.12.1/24");
    assert_eq!(
        k.annotations(2)[&format!("{PREFIX}/public-ip")],
        "192.0.2.2"
    );

    let pods = [Netns::new("kcni-pod1"), Netns::new("kcni-pod2")];
    let a1 = cni_add(&k, 1, &d1, &pods[0]);
    let a2 = cni_add(&k, 2, &d2, &pods[1]);
    assert_eq!(
        (a1, a2),
        (
            "100.96.11.2".parse().unwrap(),
            "100.96.12.2".parse().unwrap()
        )
    );
    for (from, to) in [(&pods[0], a2), (&pods[1], a1)] {
        let out = from.exec(&["ping", "-c", "3", "-W", "1", "-i", "0.2", &to.to_string()]);
        assert!(
            out.status.success(),
            "pod in {} cannot reach {to}: {}",
            from.name(),
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // DEL: the pod's interface and its address lease are gone.
    for (i, d, pod, addr) in [(1, &d1, &pods[0], a1), (2, &d2, &pods[1], a2)] {
        cni(&k, i, d, pod, "DEL");
        let links = pod.sh("ip -o link show");
        assert!(
            !links.contains("eth0"),
            "eth0 still in {}: {links}",
            pod.name()
        );
        let leased = k.c.dir().join(format!("cni-{i}/cbr0/{addr}"));
        assert!(!leased.exists(), "{} still leased", leased.display());
    }
    drop((d1, d2));
}
