//! Scale: 10,000 leases in etcd and a node following them.
//!
//! `ringlay watch` (the same follower and table code as `ringlay run`, without a
//! data path, so it needs no namespace) follows a real etcd while this test writes
//! 10,000 flannel vxlan leases in transactions of 100. Measured:
//!
//! * how long from the first write until the node's table holds every lease, and
//!   how long after the last write was acknowledged;
//! * the node's resident memory (VmRSS, and its peak VmHWM);
//! * the etcd requests the node made: its own count, and etcd's
//!   `grpc_server_started_total` for the methods the writer does not use (Range,
//!   Watch) — none may come after the initial list;
//! * a second node started with the 10,000 already there: time to its first full
//!   table, its memory and requests (the same three as with an empty prefix).
//!
//! The figures are printed (`--nocapture`); `scripts/bench-etcd-scale.sh` runs this
//! test with an optimised build. The targets (≤ 2 s, ≤ 64 MiB, no request per
//! lease) are asserted in optimised builds; a debug build checks memory and
//! requests and gives the time a looser bound.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::etcd::{require_etcd, Etcd};
use common::watcher::Watcher;
use etcd_client::{Client, PutOptions, Txn, TxnOp};

const PREFIX: &str = "/coreos.com/network";
const LEASES: usize = 10_000;
const BATCH: usize = 100;
/// The issue's targets.
const TIME_TARGET: Duration = Duration::from_secs(2);
const RSS_TARGET_KIB: u64 = 64 * 1024;

/// The `requests=N` field of a log line.
fn requests_in(line: &str) -> u64 {
    line.split("requests=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no requests= in {line}"))
}

/// Lease `i`: the i-th /30 of 100.96.0.0/16 after the network's first, on one of
/// the documentation ranges' addresses, with a distinct VtepMAC.
fn lease(i: usize) -> (String, String) {
    let base = u32::from(std::net::Ipv4Addr::new(100, 96, 0, 0)) + 4 * (i as u32 + 1);
    let net = std::net::Ipv4Addr::from(base);
    let ranges = [[192, 0, 2], [198, 51, 100], [203, 0, 113]];
    let r = ranges[i % 3];
    let host = (i / 3) % 254 + 1;
    let value = format!(
        r#"{{"PublicIP":"{}.{}.{}.{host}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"0e:72:{:02x}:{:02x}:{:02x}:{:02x}"}}}}"#,
        r[0],
        r[1],
        r[2],
        (i >> 24) & 0xff,
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    );
    (format!("{PREFIX}/subnets/{net}-30"), value)
}

/// Sums the methods of etcd's request counts that a watching node uses and the
/// writer does not (it uses LeaseGrant and Txn).
fn node_methods(m: &std::collections::BTreeMap<String, u64>) -> u64 {
    ["Range", "Watch"]
        .iter()
        .map(|k| m.get(*k).copied().unwrap_or(0))
        .sum()
}

#[test]
fn ten_thousand_leases_reach_a_watching_node() {
    if !require_etcd("scale") {
        return;
    }
    let optimised = !cfg!(debug_assertions);
    let e = Etcd::start("scale");
    e.put(
        &format!("{PREFIX}/config"),
        r#"{"Network":"100.96.0.0/16","SubnetLen":30,"Backend":{"Type":"vxlan"}}"#,
    );

    // --- a node watching while 10,000 leases are written ---------------------------
    let mut w = Watcher::start(&["watch", "--etcd-endpoints", e.endpoint()]);
    w.wait_for("published a new table", Duration::from_secs(10));
    // Its watch opens right after the first table.
    thread::sleep(Duration::from_millis(500));
    let (rss0, _) = w.memory_kib();
    let etcd_before = e.handled();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let t0 = Instant::now();
    let written = rt.block_on(async {
        let mut c = Client::connect([e.endpoint()], None)
            .await
            .expect("connect");
        let ttl = c.lease_grant(86_400, None).await.expect("grant").id();
        for chunk in (0..LEASES).collect::<Vec<_>>().chunks(BATCH) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|&i| {
                    let (k, v) = lease(i);
                    TxnOp::put(k, v, Some(PutOptions::new().with_lease(ttl)))
                })
                .collect();
            c.txn(Txn::new().and_then(ops)).await.expect("txn");
        }
        Instant::now()
    });
    let (t_full, full_line) = w.wait_for("peers=10000", Duration::from_secs(60));
    let since_first = t_full.duration_since(t0);
    let since_last = t_full.saturating_duration_since(written);
    let (rss, hwm) = w.memory_kib();
    // Let anything late show in the counters.
    thread::sleep(Duration::from_millis(500));
    let etcd_after = e.handled();
    let node_requests = requests_in(&full_line);
    let etcd_node_requests = node_methods(&etcd_after) - node_methods(&etcd_before);
    let txns =
        etcd_after.get("Txn").copied().unwrap_or(0) - etcd_before.get("Txn").copied().unwrap_or(0);
    let tables = w
        .log
        .iter()
        .filter(|l| l.contains("published a new table"))
        .count();
    drop(w);

    // --- a node starting with the 10,000 already there ------------------------------
    let etcd_before2 = e.handled();
    let t2 = Instant::now();
    let mut w2 = Watcher::start(&["watch", "--etcd-endpoints", e.endpoint()]);
    let (t2_full, line2) = w2.wait_for("peers=10000", Duration::from_secs(60));
    let start_time = t2_full.duration_since(t2);
    let (rss2, hwm2) = w2.memory_kib();
    let start_requests = requests_in(&line2);
    drop(w2);
    let etcd_start_requests = node_methods(&e.handled()) - node_methods(&etcd_before2);

    println!(
        "\nscale: {LEASES} leases written in {} transactions of {BATCH} ({} build)",
        txns,
        if optimised { "optimised" } else { "debug" }
    );
    println!(
        "  watching node: table complete {:.0} ms after the first write, {:.0} ms after the last was acknowledged (writes took {:.0} ms); {tables} tables built",
        since_first.as_secs_f64() * 1e3,
        since_last.as_secs_f64() * 1e3,
        written.duration_since(t0).as_secs_f64() * 1e3
    );
    println!("  watching node: RSS {rss0} KiB before, {rss} KiB after, peak {hwm} KiB");
    println!(
        "  watching node: etcd requests in all: {node_requests} (its count: config, list, watch); while the 10,000 arrived: {etcd_node_requests} (etcd's Range/Watch count)"
    );
    println!(
        "  starting node: full table {:.0} ms after start, RSS {rss2} KiB, peak {hwm2} KiB, requests {start_requests} (its count), {etcd_start_requests} (etcd's count)",
        start_time.as_secs_f64() * 1e3
    );

    assert_eq!(node_requests, 3, "one config read, one list, one watch");
    assert_eq!(etcd_node_requests, 0, "etcd saw no node request per lease");
    assert!(
        start_requests <= 3,
        "a start is one config read, one list, one watch: {start_requests}"
    );
    assert!(
        hwm <= RSS_TARGET_KIB && hwm2 <= RSS_TARGET_KIB,
        "RSS over 64 MiB"
    );
    let bound = if optimised {
        TIME_TARGET
    } else {
        TIME_TARGET * 10
    };
    assert!(
        since_first <= bound && start_time <= bound,
        "over {bound:?}: {since_first:?} while watching, {start_time:?} at start"
    );
}
