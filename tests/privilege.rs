//! Least privilege, on real namespaces: after set-up every thread of `ringlay
//! run` holds only the capabilities the daemon still needs (read from
//! `/proc/<pid>/task/*/status`), with `NoNewPrivs` set, and everything it does
//! afterwards still works with what it kept.
//!
//! - `udp_drops_every_capability`, `vxlan_drops_every_capability`: static
//!   leases, no `--ip-masq`: every thread ends with empty effective, permitted,
//!   inheritable, ambient and bounding sets; traffic flows; a SIGHUP reload
//!   publishes the new table; SIGTERM exits cleanly and removes the status
//!   socket; the status socket is 0600 and subnet.env 0644.
//! - `host_gw_with_ip_masq_keeps_only_net_admin`: host-gw and `--ip-masq`: only
//!   `CAP_NET_ADMIN` is left (in the main thread; the others have none); a route
//!   deleted by hand is restored; SIGTERM removes the routes and the nftables
//!   table.
//! - `vxlan_with_ip_masq_keeps_only_net_admin`: the tunnel with `--ip-masq`: the
//!   main thread keeps `CAP_NET_ADMIN` for the table's removal at exit, which
//!   happens.
//! - `etcd_lease_recreated_without_capabilities`: leases from etcd: nothing is
//!   kept, and deleting our lease's key in etcd still gets it re-created.
//! - `started_like_the_service_with_net_admin_only`: started as dist/ringlay.service
//!   starts it (root, bounding set CAP_NET_ADMIN, so no CAP_SETPCAP): it sets up
//!   and forwards, gives up CAP_NET_ADMIN in every thread, and says that the
//!   bounding set stays as given (no_new_privs keeps it out of reach).
//!
//! Needs root (skips with a printed reason otherwise; fails under `CI=true`), and
//! `nft` and `etcd` for the tests that use them. Loads are counted pings only.
//! Runtime: about 15 s with two test threads (the host-gw route restore waits for
//! the 10 s reconcile).
//!
//! Run: `cargo test --test privilege -- --test-threads=2`.

mod common;

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::{acquired_subnet, etcd_on_switch, PREFIX, VXLAN_CONFIG};
use common::etcd::require_etcd;
use common::netns::{self, eventually, Cluster, Daemon};
use ringlay::sys::caps::{CapSet, TaskCaps, CAP_NET_ADMIN};

/// How long a route deleted by hand may stay missing: the reconcile interval
/// (10 s) and some slack for a loaded machine.
const RESTORE_WITHIN: Duration = Duration::from_secs(13);
/// ringlay's route protocol number.
const PROTO: &str = "114";

/// Every thread of process `pid`: (tid, name, capabilities).
fn threads(pid: u32) -> Vec<(String, String, TaskCaps)> {
    let dir = format!("/proc/{pid}/task");
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let entry = entry.expect("task entry");
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
            continue; // exited meanwhile
        };
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or("")
            .trim()
            .to_owned();
        let caps =
            TaskCaps::parse(&status).unwrap_or_else(|| panic!("no capability lines in:\n{status}"));
        out.push((entry.file_name().to_string_lossy().into_owned(), name, caps));
    }
    out
}

/// Asserts that every thread of `d` holds at most `keep` (effective, permitted,
/// inheritable, ambient and bounding) with `NoNewPrivs` 1, that the main thread
/// holds exactly `keep` in its effective and permitted sets, and that there are
/// at least `min_threads` threads. Returns the thread names.
fn assert_reduced(d: &Daemon, keep: CapSet, min_threads: usize) -> Vec<String> {
    let all = threads(d.pid());
    let pid = d.pid().to_string();
    let mut names = Vec::new();
    for (tid, name, caps) in &all {
        assert!(
            caps.within(keep, keep),
            "thread {tid} ({name}) holds more than {keep}: {caps:?}\n{}",
            d.log()
        );
        assert_eq!(caps.inheritable, CapSet::EMPTY, "thread {tid} ({name})");
        assert_eq!(caps.ambient, CapSet::EMPTY, "thread {tid} ({name})");
        if *tid == pid {
            assert_eq!(caps.effective, keep, "main thread");
            assert_eq!(caps.permitted, keep, "main thread");
            assert_eq!(caps.bounding, keep, "main thread");
        } else {
            // Only the control loop (the main thread) needs anything.
            assert_eq!(caps.effective, CapSet::EMPTY, "thread {tid} ({name})");
        }
        names.push(name.clone());
    }
    assert!(
        all.len() >= min_threads,
        "only {} threads: {names:?}",
        all.len()
    );
    names
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn udp_drops_every_capability() {
    drops_every_capability("prvu", "udp");
}

#[test]
fn vxlan_drops_every_capability() {
    drops_every_capability("prvx", "vxlan");
}

fn drops_every_capability(prefix: &str, backend: &str) {
    if !netns::require_root(&format!("{backend}_drops_every_capability")) {
        return;
    }
    let started = Instant::now();
    let c = Cluster::hosts(prefix, 2);
    let vteps = backend == "vxlan";
    let leases = c.static_leases_json(backend, vteps);
    let mut d1 = c.ringlay(1, &leases, &["--queues", "2"]);
    let mut d2 = c.ringlay(2, &leases, &["--queues", "2"]);
    for d in [&d1, &d2] {
        assert!(
            d.log()
                .contains("capabilities dropped, no_new_privs set; kept none"),
            "{}",
            d.log()
        );
        // main, the endpoint thread, two workers.
        let names = assert_reduced(d, CapSet::EMPTY, 4);
        assert!(
            names.iter().filter(|n| n.starts_with("ringlay-w")).count() == 2,
            "{names:?}"
        );
    }
    assert!(c.ping(1, IpAddr::V4(c.container_ip(2)), 3), "{}", d1.log());
    assert!(c.ping(2, IpAddr::V4(c.container_ip(1)), 3), "{}", d2.log());

    // Root-only files: the status socket and its directory; subnet.env written
    // by root alone (readable, as flanneld's).
    let socket = c.dir().join("status-1.sock");
    assert_eq!(mode(&socket), 0o600, "{}", socket.display());
    assert_eq!(mode(d1.subnet_file()), 0o644);

    // A SIGHUP reload: a third lease appears in the table.
    netns::replace_file(
        &c.dir().join("leases-1.json"),
        &netns::static_leases_json(3, backend, vteps),
    );
    let from = d1.log().len();
    d1.sighup();
    assert!(
        d1.wait_log("lease added", from, Duration::from_secs(5)),
        "{}",
        d1.log()
    );
    assert!(
        d1.wait_log("published a new table", from, Duration::from_secs(5)),
        "{}",
        d1.log()
    );
    assert_reduced(&d1, CapSet::EMPTY, 4);
    assert!(c.ping(1, IpAddr::V4(c.container_ip(2)), 3), "{}", d1.log());

    for d in [&mut d1, &mut d2] {
        let status = d.terminate();
        assert!(status.success(), "{status}\n{}", d.log());
        assert!(d.log().contains("stopped"), "{}", d.log());
        assert!(!d.log().contains("ERROR"), "{}", d.log());
    }
    assert!(!socket.exists(), "status socket left behind");
    assert!(
        !c.host(1).sh("ip link show").contains("ringlay0"),
        "the TUN device is gone"
    );
    eprintln!("{backend}: took {:.1?}", started.elapsed());
}

#[test]
fn host_gw_with_ip_masq_keeps_only_net_admin() {
    let test = "host_gw_with_ip_masq_keeps_only_net_admin";
    if !netns::require_root(test) || !netns::require_command(test, "nft", "nftables") {
        return;
    }
    let started = Instant::now();
    let c = Cluster::hosts("prvh", 2);
    let leases = c
        .static_leases_json("host-gw", false)
        .replace(r#""PublicIPv6": null"#, r#""BackendType": "host-gw""#);
    let mut d1 = c.ringlay(1, &leases, &["--ip-masq"]);
    let mut d2 = c.ringlay(2, &leases, &[]);
    let admin = CapSet::only(CAP_NET_ADMIN);
    assert!(
        d1.log().contains(
            "kept CAP_NET_ADMIN: routes are managed (host-gw); the --ip-masq nftables table is deleted at exit"
        ),
        "{}",
        d1.log()
    );
    assert!(
        d2.log()
            .contains("kept CAP_NET_ADMIN: routes are managed (host-gw)"),
        "{}",
        d2.log()
    );
    for d in [&d1, &d2] {
        assert_reduced(d, admin, 2);
    }
    let nft = || c.host(1).exec(&["nft", "list", "table", "ip", "ringlay"]);
    assert!(nft().status.success(), "{}", d1.log());
    assert!(c.ping(1, IpAddr::V4(c.container_ip(2)), 3), "{}", d1.log());

    // Routes are still reconciled: a route deleted by hand comes back.
    let from = d1.log().len();
    c.host(1).sh("ip route del 100.96.2.0/24");
    assert!(
        d1.wait_log(
            "route restored: 100.96.2.0/24 via 192.0.2.2",
            from,
            RESTORE_WITHIN
        ),
        "{}",
        d1.log()
    );
    assert!(c.ping(1, IpAddr::V4(c.container_ip(2)), 3), "{}", d1.log());

    // SIGTERM: the routes and the table go.
    let status = d1.terminate();
    assert!(status.success(), "{status}\n{}", d1.log());
    assert!(
        c.host(1)
            .sh(&format!("ip route show proto {PROTO}"))
            .trim()
            .is_empty(),
        "routes left behind\n{}",
        d1.log()
    );
    assert!(
        d1.log().contains("removed 1 host-gw routes"),
        "{}",
        d1.log()
    );
    assert!(!nft().status.success(), "table ip ringlay left behind");
    assert!(!d1.log().contains("ERROR"), "{}", d1.log());
    let _ = d2.terminate();
    eprintln!("took {:.1?}", started.elapsed());
}

#[test]
fn vxlan_with_ip_masq_keeps_only_net_admin() {
    let test = "vxlan_with_ip_masq_keeps_only_net_admin";
    if !netns::require_root(test) || !netns::require_command(test, "nft", "nftables") {
        return;
    }
    let c = Cluster::hosts("prvm", 2);
    let leases = c.static_leases_json("vxlan", true);
    let mut d1 = c.ringlay(1, &leases, &["--queues", "2", "--ip-masq"]);
    let _d2 = c.ringlay(2, &leases, &["--queues", "1"]);
    assert!(
        d1.log()
            .contains("kept CAP_NET_ADMIN: the --ip-masq nftables table is deleted at exit"),
        "{}",
        d1.log()
    );
    assert_reduced(&d1, CapSet::only(CAP_NET_ADMIN), 4);
    assert!(c.ping(1, IpAddr::V4(c.container_ip(2)), 3), "{}", d1.log());
    let nft = || c.host(1).exec(&["nft", "list", "table", "ip", "ringlay"]);
    assert!(nft().status.success());
    let status = d1.terminate();
    assert!(status.success(), "{status}\n{}", d1.log());
    assert!(
        d1.log()
            .contains("ip-masq: removed nftables table ip ringlay"),
        "{}",
        d1.log()
    );
    assert!(!nft().status.success(), "table ip ringlay left behind");
}

#[test]
fn etcd_lease_recreated_without_capabilities() {
    let test = "etcd_lease_recreated_without_capabilities";
    if !netns::require_root(test) || !require_etcd(test) {
        return;
    }
    let started = Instant::now();
    // Three hosts: a two-host cluster has no switch for etcd to sit on.
    let c = Cluster::hosts("prve", 3);
    let (_etcd_ns, e) = etcd_on_switch(&c, "prve", VXLAN_CONFIG);
    let d1 = c.ringlay_etcd(1, e.endpoint(), &["--queues", "1"]);
    let d2 = c.ringlay_etcd(2, e.endpoint(), &["--queues", "1"]);
    for d in [&d1, &d2] {
        assert!(
            d.log()
                .contains("capabilities dropped, no_new_privs set; kept none"),
            "{}",
            d.log()
        );
        assert_reduced(d, CapSet::EMPTY, 3);
    }
    let (s1, s2) = (acquired_subnet(&d1), acquired_subnet(&d2));
    let a1 = c.readdress_container(1, s1);
    let a2 = c.readdress_container(2, s2);
    assert!(c.ping(1, IpAddr::V4(a2), 3), "{}", d1.log());

    // Our key deleted behind our back: re-created, with no capability at all.
    let key = format!("{PREFIX}/subnets/{s1}-24");
    let value = e.get(&key).expect("our lease");
    let from = d1.log().len();
    e.del(&key);
    assert!(
        d1.wait_log("re-created our lease", from, Duration::from_secs(20)),
        "{}",
        d1.log()
    );
    assert!(
        eventually(Duration::from_secs(5), || e.get(&key).as_deref()
            == Some(value.as_str())),
        "{key} = {:?}",
        e.get(&key)
    );
    assert_reduced(&d1, CapSet::EMPTY, 3);
    assert!(c.ping(2, IpAddr::V4(a1), 3), "{}", d2.log());
    eprintln!("took {:.1?}", started.elapsed());
}

#[test]
fn started_like_the_service_with_net_admin_only() {
    let test = "started_like_the_service_with_net_admin_only";
    if !netns::require_root(test) || !netns::require_command(test, "setpriv", "util-linux") {
        return;
    }
    let c = Cluster::hosts("prvs", 2);
    let leases = c.static_leases_json("vxlan", true);
    let _d2 = c.ringlay(2, &leases, &["--queues", "1"]);
    let leases_file = c.dir().join("leases-1.json");
    fs::write(&leases_file, &leases).expect("leases file");
    let log_file = c.dir().join("ringlay-1.log");
    let bin = netns::ringlay_bin();
    let (leases_s, subnet_s, socket_s) = (
        leases_file.display().to_string(),
        c.dir().join("subnet-1.env").display().to_string(),
        c.dir().join("status-1.sock").display().to_string(),
    );
    // As systemd runs the unit: root, CapabilityBoundingSet=CAP_NET_ADMIN (so
    // every set is CAP_NET_ADMIN after exec).
    let mut cmd = c.host(1).command(&[
        "setpriv",
        "--bounding-set",
        "-all,+net_admin",
        "--",
        &bin,
        "run",
        "--static-leases",
        &leases_s,
        "--public-ip",
        "192.0.2.1",
        "--subnet-file",
        &subnet_s,
        "--status-socket",
        &socket_s,
        "--queues",
        "2",
    ]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log_file).expect("log file"));
    let mut child = c.host(1).spawn_command(cmd);
    let log = || fs::read_to_string(&log_file).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(10), || log()
            .contains("ready: forwarding")),
        "{}",
        log()
    );
    let admin = CapSet::only(CAP_NET_ADMIN);
    assert!(log().contains("kept none"), "{}", log());
    assert!(
        log().contains("the bounding set stays as it was given"),
        "{}",
        log()
    );
    let all = threads(child.id());
    assert!(all.len() >= 4, "{all:?}");
    for (tid, name, caps) in &all {
        assert!(
            caps.within(CapSet::EMPTY, admin),
            "thread {tid} ({name}): {caps:?}"
        );
        assert_eq!(caps.bounding, admin, "thread {tid} ({name})");
    }
    assert!(c.ping(1, IpAddr::V4(c.container_ip(2)), 3), "{}", log());
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(killed);
    let exited = eventually(Duration::from_secs(5), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "no exit after SIGTERM\n{}", log());
    assert!(log().contains("stopped"), "{}", log());
}
