//! Scale: N Nodes in a real kube-apiserver and a node following them.
//!
//! `ringlay watch --kube-subnet-mgr` (the same Node watch and table code as
//! `ringlay run`, without a data path) follows a real kube-apiserver (with its
//! etcd, on 127.0.0.1) while this test registers N Nodes, each with a podCIDR and
//! the annotations flanneld writes, from 4 threads. Measured:
//!
//! * how long from the first write until the node's table holds every lease, and
//!   how long after the last write was acknowledged;
//! * the node's resident memory (VmRSS, and its peak VmHWM);
//! * the node's requests, from the server's own `apiserver_request_total` for
//!   nodes (LIST and WATCH, which the writer does not use): none may come after
//!   the initial list and watch;
//! * a second node started with the N already there: time to its first full table.
//!
//! N is 300 in `cargo test` (a debug build, looser time bound); `scripts/
//! bench-kube-scale.sh` runs it with N = 5,000 and an optimised build, where the
//! targets (≤ 5 s after the last write, ≤ 64 MiB, no request per node) are
//! asserted.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::kube::{require_kube, KubeApiserver};
use common::watcher::Watcher;

const DEFAULT_NODES: usize = 300;
const TIME_TARGET: Duration = Duration::from_secs(5);
const RSS_TARGET_KIB: u64 = 64 * 1024;
const WRITERS: usize = 4;
const PREFIX: &str = "flannel.alpha.coreos.com";

fn nodes_wanted() -> usize {
    std::env::var("RINGLAY_KUBE_SCALE_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_NODES)
}

/// Node `i`: podCIDR the i-th /26 of 100.64.0.0/10, a public IP and VtepMAC of
/// its own, as flanneld on it would have annotated it.
fn node(i: usize) -> String {
    let base = u32::from(std::net::Ipv4Addr::new(100, 64, 0, 0)) + 64 * (i as u32 + 1);
    let cidr = format!("{}/26", std::net::Ipv4Addr::from(base));
    let public =
        std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0)) + i as u32 + 1);
    let mac = format!(
        "0e:72:00:{:02x}:{:02x}:{:02x}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    );
    serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": format!("scale-{i:05}"),
            "annotations": {
                format!("{PREFIX}/kube-subnet-manager"): "true",
                format!("{PREFIX}/backend-type"): "vxlan",
                format!("{PREFIX}/backend-data"): format!(r#"{{"VNI":1,"VtepMAC":"{mac}"}}"#),
                format!("{PREFIX}/public-ip"): public.to_string(),
            },
        },
        "spec": { "podCIDR": cidr, "podCIDRs": [cidr] },
    })
    .to_string()
}

/// The server's request counts for nodes, by verb (from its /metrics).
fn node_requests(api: &KubeApiserver) -> BTreeMap<String, u64> {
    let (code, text) = api.call("GET", "/metrics", api.admin_token(), None);
    assert_eq!(code, 200, "metrics: {text}");
    let mut by_verb = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        if !line.contains(r#"resource="nodes""#) || !line.contains(r#"subresource="""#) {
            continue;
        }
        let verb = line
            .split("verb=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or("?");
        let n: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *by_verb.entry(verb.to_owned()).or_insert(0) += n as u64;
    }
    by_verb
}

fn reads(requests: &BTreeMap<String, u64>) -> u64 {
    ["LIST", "WATCH", "GET"]
        .iter()
        .map(|v| requests.get(*v).copied().unwrap_or(0))
        .sum()
}

fn watch_args(kubeconfig: &str, net_conf: &str) -> Vec<String> {
    [
        "watch",
        "--kube-subnet-mgr",
        "--kubeconfig-file",
        kubeconfig,
        "--net-config-path",
        net_conf,
    ]
    .map(str::to_owned)
    .to_vec()
}

#[test]
fn a_node_follows_thousands_of_nodes_with_one_list_and_one_watch() {
    let Some(bin) = require_kube("kube-scale") else {
        return;
    };
    let n = nodes_wanted();
    let api = KubeApiserver::start(&bin, "kscale", &[]);
    let kubeconfig = api
        .write_kubeconfig(api.admin_token())
        .display()
        .to_string();
    let net_conf = api.dir().join("net-conf.json");
    std::fs::write(
        &net_conf,
        r#"{"Network":"100.64.0.0/10","Backend":{"Type":"vxlan"}}"#,
    )
    .expect("net-conf.json");
    let net_conf = net_conf.display().to_string();
    let args = watch_args(&kubeconfig, &net_conf);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut w = Watcher::start(&argv);
    w.wait_for("published a new table", Duration::from_secs(30));
    thread::sleep(Duration::from_millis(300));
    let before = node_requests(&api);

    // --- N nodes registered while the node watches ---------------------------------
    let t0 = Instant::now();
    let next = AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..WRITERS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let body = node(i);
                let (code, text) = api.call(
                    "POST",
                    "/api/v1/nodes",
                    api.admin_token(),
                    Some(("application/json", &body)),
                );
                assert_eq!(code, 201, "node {i}: {text}");
            });
        }
    });
    let written = Instant::now();
    let (t_full, _) = w.wait_for(&format!("peers={n}"), Duration::from_secs(120));
    let since_first = t_full.duration_since(t0);
    let since_last = t_full.saturating_duration_since(written);
    let (rss, hwm) = w.memory_kib();
    thread::sleep(Duration::from_millis(500));
    let after = node_requests(&api);
    let tables = w
        .log
        .iter()
        .filter(|l| l.contains("published a new table"))
        .count();
    drop(w);

    // --- a node starting with the N already there ----------------------------------
    let t1 = Instant::now();
    let mut w2 = Watcher::start(&argv);
    let (t_full2, _) = w2.wait_for(&format!("peers={n}"), Duration::from_secs(60));
    let start_full = t_full2.duration_since(t1);
    let (rss2, hwm2) = w2.memory_kib();
    drop(w2);

    let made = reads(&after) - reads(&before);
    eprintln!(
        "kube scale, {n} nodes ({} build): writes took {:?}; table complete {:?} after the first \
         write, {:?} after the last ({tables} tables published); node memory VmRSS {} KiB, VmHWM \
         {} KiB; node reads of nodes after its initial list and watch: {made} (server counts \
         before {before:?}, after {after:?}); a node starting with {n} present: full table in \
         {start_full:?}, VmRSS {rss2} KiB, VmHWM {hwm2} KiB",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        written.duration_since(t0),
        since_first,
        since_last,
        rss,
        hwm,
    );
    assert_eq!(
        made, 0,
        "requests after the list grew with the nodes: {before:?} -> {after:?}"
    );
    assert!(
        hwm <= RSS_TARGET_KIB,
        "VmHWM {hwm} KiB over {RSS_TARGET_KIB} KiB"
    );
    let bound = if cfg!(debug_assertions) {
        TIME_TARGET * 6
    } else {
        TIME_TARGET
    };
    assert!(
        since_last <= bound,
        "table complete {since_last:?} after the last write"
    );
}
