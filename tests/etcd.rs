//! The etcd subnet manager against a real etcd that each test starts on free ports
//! with its own data directory (killed by PID when the test ends): acquisition,
//! reuse, races, flanneld's values, safe renewal, lost leases, compaction, TLS;
//! values at our own key that name no node (written over) and leases of backends
//! ringlay does not run (never written over).
//!
//! These tests need no privileges: they drive the library's [`Registry`] and
//! [`Follower`] directly, and check what etcd holds with etcdctl.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::etcd::{require_etcd, Certs, Etcd};
use ringlay::config::{LeaseAttrs, NetworkConfig, SubnetKey};
use ringlay::control::etcd::alloc::Rng;
use ringlay::control::etcd::{self, Acquired, Follower, Held, Registry, Renewal, Settings, View};
use ringlay::Error;

const PREFIX: &str = "/coreos.com/network";
const VXLAN_CONFIG: &str = r#"{"Network":"100.96.0.0/16","Backend":{"Type":"vxlan"}}"#;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn settings(e: &Etcd) -> Settings {
    Settings {
        endpoints: vec![e.endpoint().to_owned()],
        ..Settings::default()
    }
}

fn key(s: &str) -> SubnetKey {
    s.parse().expect("valid key")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("valid address")
}

fn lease_key(k: &str) -> String {
    format!("{PREFIX}/subnets/{k}")
}

async fn connect(e: &Etcd) -> Registry {
    Registry::connect(&settings(e)).await.expect("connect")
}

/// A fresh etcd (`tag` names its directory) holding the vxlan network config.
fn etcd_with_vxlan_config(tag: &str) -> Etcd {
    let e = Etcd::start(tag);
    e.put(&format!("{PREFIX}/config"), VXLAN_CONFIG);
    e
}

/// Connects to `e` and acquires a lease for 192.0.2.1 under the vxlan config:
/// the registry, the lease held, its etcd key and the value etcd holds there.
async fn acquire_one(e: &Etcd) -> (Registry, Held, String, String) {
    let c = config(VXLAN_CONFIG);
    let mut r = connect(e).await;
    let held = r
        .acquire(&c, ip("192.0.2.1"), None, &mut Rng::from_entropy())
        .await
        .expect("acquire");
    let k = lease_key(&held.key.to_string());
    let ours = e.get(&k).expect("ours");
    (r, held, k, ours)
}

/// Waits (at most 10 s) for a follower's task to end because another node, at
/// `holder`, took our subnet.
async fn gives_up_to(task: tokio::task::JoinHandle<ringlay::Result<()>>, holder: &str) {
    let ended = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the follower gives up")
        .expect("no panic");
    let err = ended.expect_err("taken");
    assert!(matches!(err, Error::LeaseTaken { .. }), "{err:?}");
    assert!(err.to_string().contains(holder), "{err}");
}

fn config(text: &str) -> NetworkConfig {
    NetworkConfig::parse(text).expect("valid config")
}

/// Waits until the latest view satisfies `ok`; panics after `timeout`.
async fn wait_view(
    view: &mut tokio::sync::watch::Receiver<View>,
    timeout: Duration,
    what: &str,
    ok: impl Fn(&View) -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if ok(&view.borrow_and_update()) {
            return;
        }
        match tokio::time::timeout_at(deadline, view.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("{what}: the follower ended"),
            Err(_) => {
                let v = view.borrow();
                let keys: Vec<String> = v.leases.iter().map(|l| l.key.to_string()).collect();
                panic!("{what}: not within {timeout:?}; the view holds {keys:?}");
            }
        }
    }
}

fn has(v: &View, k: &str) -> Option<LeaseAttrs> {
    v.leases
        .iter()
        .find(|l| l.key.to_string() == k)
        .map(|l| l.attrs)
}

#[test]
fn fresh_acquisition_writes_flannels_value_on_a_24h_lease() {
    if !require_etcd("fresh_acquisition") {
        return;
    }
    let e = etcd_with_vxlan_config("fresh");
    rt().block_on(async {
        let mut r = connect(&e).await;
        let c = etcd::wait_config(&mut r).await.expect("config");
        let held = r
            .acquire(&c, ip("192.0.2.1"), None, &mut Rng::from_entropy())
            .await
            .expect("acquire");
        assert_eq!(held.how, Acquired::New);
        let n = held.key.v4.expect("v4");
        assert!(c.ipv4.expect("v4").accepts(n), "{n}");
        let value = e.get(&lease_key(&held.key.to_string())).expect("written");
        assert_eq!(
            value,
            r#"{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:72:c0:00:02:01"}}"#
        );
        let (id, ttl) = e
            .lease_ttl(&lease_key(&held.key.to_string()))
            .expect("attached to an etcd lease");
        assert_eq!(id, held.lease_id);
        assert!((86_000..=86_400).contains(&ttl), "ttl {ttl}");
    });
}

#[test]
fn udp_lease_value_is_flannels_udp_value() {
    if !require_etcd("udp_value") {
        return;
    }
    let e = Etcd::start("udp");
    e.put(
        &format!("{PREFIX}/config"),
        r#"{"Network":"100.96.0.0/16","Backend":{"Type":"udp"}}"#,
    );
    rt().block_on(async {
        let mut r = connect(&e).await;
        let c = etcd::wait_config(&mut r).await.expect("config");
        let held = r
            .acquire(&c, ip("192.0.2.3"), None, &mut Rng::from_entropy())
            .await
            .expect("acquire");
        let value = e.get(&lease_key(&held.key.to_string())).expect("written");
        assert_eq!(value, r#"{"PublicIP":"192.0.2.3","PublicIPv6":null}"#);
    });
}

#[test]
fn a_restart_reuses_the_subnet_and_vtep_mac_and_subnet_env_is_honoured() {
    if !require_etcd("reuse") {
        return;
    }
    let e = etcd_with_vxlan_config("reuse");
    // What flanneld left behind: its random VtepMAC.
    e.put(
        &lease_key("100.96.33.0-24"),
        r#"{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"7a:1b:2c:3d:4e:5f"}}"#,
    );
    rt().block_on(async {
        let c = config(VXLAN_CONFIG);
        let mut r = connect(&e).await;
        let first = r
            .acquire(&c, ip("192.0.2.1"), None, &mut Rng::from_entropy())
            .await
            .expect("acquire");
        assert_eq!(first.how, Acquired::Reused);
        assert_eq!(first.key, key("100.96.33.0-24"));
        assert_eq!(first.vtep_mac().to_string(), "7a:1b:2c:3d:4e:5f");
        // A second start (the same node restarting) gets the same again, even when
        // subnet.env names another subnet.
        let mut r2 = connect(&e).await;
        let again = r2
            .acquire(
                &c,
                ip("192.0.2.1"),
                Some(key("100.96.34.0-24")),
                &mut Rng::from_entropy(),
            )
            .await
            .expect("acquire");
        assert_eq!(again.how, Acquired::Reused);
        assert_eq!(again.key, first.key);
        assert_eq!(again.vtep_mac(), first.vtep_mac());
        assert!(again.mod_revision > first.mod_revision);

        // A node with no lease but a subnet.env gets the subnet it recorded.
        let prev = r
            .acquire(
                &c,
                ip("192.0.2.2"),
                Some(key("100.96.42.0-24")),
                &mut Rng::from_entropy(),
            )
            .await
            .expect("acquire");
        assert_eq!(
            (prev.how, prev.key),
            (Acquired::Previous, key("100.96.42.0-24"))
        );
        // ... unless someone holds it: then a free one.
        let other = r
            .acquire(
                &c,
                ip("192.0.2.3"),
                Some(key("100.96.42.0-24")),
                &mut Rng::from_entropy(),
            )
            .await
            .expect("acquire");
        assert_eq!(other.how, Acquired::New);
        assert_ne!(other.key, prev.key);
    });
}

#[test]
fn two_nodes_racing_for_the_only_free_subnet() {
    if !require_etcd("race") {
        return;
    }
    let e = Etcd::start("race");
    let text = r#"{"Network":"100.96.0.0/16","SubnetMin":"100.96.5.0","SubnetMax":"100.96.6.0","Backend":{"Type":"vxlan"}}"#;
    e.put(&format!("{PREFIX}/config"), text);
    e.put(
        &lease_key("100.96.6.0-24"),
        r#"{"PublicIP":"192.0.2.9","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:09:00"}}"#,
    );
    let c = config(text);
    let results = rt().block_on(async {
        let (mut a, mut b) = (connect(&e).await, connect(&e).await);
        let (mut ra, mut rb) = (Rng::seeded(1), Rng::seeded(2));
        let (x, y) = tokio::join!(
            a.acquire(&c, ip("192.0.2.1"), None, &mut ra),
            b.acquire(&c, ip("192.0.2.2"), None, &mut rb),
        );
        vec![x, y]
    });
    let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert_eq!(won[0].key, key("100.96.5.0-24"));
    let lost = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("one lost");
    assert!(
        matches!(
            lost,
            Error::NoFreeSubnet {
                total: 2,
                taken: 2,
                ..
            }
        ),
        "{lost:?}"
    );
    let msg = lost.to_string();
    assert!(msg.contains("from 100.96.5.0 to 100.96.6.0"), "{msg}");
    // Only the winner's value is there, written once.
    let v = e.get(&lease_key("100.96.5.0-24")).expect("written");
    let winner_ip = won[0].attrs.public_ip.to_string();
    assert!(v.contains(&winner_ip), "{v}");
}

#[test]
fn leases_written_by_flanneld_appear_in_the_view_and_deletes_remove_them() {
    if !require_etcd("flannel_values") {
        return;
    }
    let e = etcd_with_vxlan_config("flannel");
    rt().block_on(async {
        let r = connect(&e).await;
        let counter = r.clone();
        let (f, mut view) = Follower::start(r, config(VXLAN_CONFIG), None, Duration::from_secs(3600))
            .await
            .expect("start");
        let task = tokio::spawn(f.run());
        let after_start = counter.requests();

        // flanneld's vxlan backend, and its udp backend (no BackendType).
        e.put(
            &lease_key("100.96.7.0-24"),
            r#"{"PublicIP":"192.0.2.7","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"9e:aa:bb:cc:dd:07"}}"#,
        );
        e.put(&lease_key("100.96.8.0-24"), r#"{"PublicIP":"192.0.2.8","PublicIPv6":null}"#);
        // Garbage: skipped, the rest untouched.
        e.put(&lease_key("100.96.9.0-24"), "{not json");
        e.put(&format!("{PREFIX}/subnets/garbage"), r#"{"PublicIP":"192.0.2.10"}"#);
        wait_view(&mut view, Duration::from_secs(5), "both leases", |v| {
            has(v, "100.96.7.0-24").is_some() && has(v, "100.96.8.0-24").is_some()
        })
        .await;
        let v = view.borrow().clone();
        let vx = has(&v, "100.96.7.0-24").expect("vxlan");
        assert_eq!(
            vx.backend_data.map(|d| d.vtep_mac.to_string()),
            Some("9e:aa:bb:cc:dd:07".into())
        );
        let udp = has(&v, "100.96.8.0-24").expect("udp");
        assert_eq!(udp.backend(), ringlay::config::BackendType::Udp);
        assert_eq!(udp.backend_type, None);
        assert_eq!(v.leases.len(), 2, "malformed leases are skipped");

        e.del(&lease_key("100.96.7.0-24"));
        wait_view(&mut view, Duration::from_secs(5), "the delete", |v| {
            has(v, "100.96.7.0-24").is_none() && has(v, "100.96.8.0-24").is_some()
        })
        .await;
        // No request per event: the watch delivered all of it.
        assert_eq!(counter.requests(), after_start + 1, "only the watch stream was opened");
        task.abort();
    });
}

#[test]
fn renewal_never_overwrites_a_key_another_writer_replaced() {
    if !require_etcd("renewal") {
        return;
    }
    let e = etcd_with_vxlan_config("renew");
    rt().block_on(async {
        let (mut r, mut held, k, ours) = acquire_one(&e).await;

        // A renewal of a key that is still ours: same value, a new etcd lease, the
        // old one revoked.
        let (old_lease, old_rev) = (held.lease_id, held.mod_revision);
        assert_eq!(r.renew(&mut held).await.expect("renew"), Renewal::Renewed);
        assert_ne!(held.lease_id, old_lease);
        assert!(held.mod_revision > old_rev);
        assert_eq!(e.get(&k).as_deref(), Some(ours.as_str()));
        assert_eq!(e.lease_ttl(&k).map(|(id, _)| id), Some(held.lease_id));
        let leases = String::from_utf8_lossy(&e.ctl(&["lease", "list"]).stdout).into_owned();
        assert!(!leases.contains(&format!("{old_lease:x}")), "old lease revoked: {leases}");

        // Another writer replaces it; the renewal must not write.
        let theirs = r#"{"PublicIP":"192.0.2.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:63:00"}}"#;
        e.put(&k, theirs);
        let rev_before = e.revision();
        assert_eq!(
            r.renew(&mut held).await.expect("renew"),
            Renewal::Taken {
                holder: ip("192.0.2.99").into()
            }
        );
        assert_eq!(e.get(&k).as_deref(), Some(theirs));
        assert_eq!(e.revision(), rev_before, "nothing was written");

        // Deleted: a renewal says so, and reclaim re-creates it.
        e.del(&k);
        assert_eq!(r.renew(&mut held).await.expect("renew"), Renewal::Deleted);
        assert_eq!(r.reclaim(&mut held).await.expect("reclaim"), Renewal::Renewed);
        assert_eq!(e.get(&k).as_deref(), Some(ours.as_str()));
    });
}

#[test]
fn the_follower_recreates_a_deleted_or_overwritten_lease_and_gives_up_a_taken_one() {
    if !require_etcd("follower_own") {
        return;
    }
    let e = etcd_with_vxlan_config("own");
    rt().block_on(async {
        let (r, held, k, ours) = acquire_one(&e).await;
        // A margin of all but 2 s of the TTL: the follower renews every ~2 s.
        let margin = etcd::timing::LEASE_TTL - Duration::from_secs(2);
        let (f, _view) = Follower::start(r, config(VXLAN_CONFIG), Some(held), margin)
            .await
            .expect("start");
        let task = tokio::spawn(f.run());

        // Renewals keep the value and move the etcd lease.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(e.get(&k).as_deref(), Some(ours.as_str()));
        assert_ne!(
            e.lease_ttl(&k).map(|(id, _)| id),
            Some(held.lease_id),
            "renewed"
        );

        // Deleted by hand: back within moments, same value.
        e.del(&k);
        let deadline = Instant::now() + Duration::from_secs(5);
        while e.get(&k).is_none() {
            assert!(Instant::now() < deadline, "our lease was not re-created");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(e.get(&k).as_deref(), Some(ours.as_str()));

        // Overwritten with values that are no lease (no node's claim): ours again.
        for garbage in [
            "{not a lease",
            r#"{"PublicIP":7}"#,
            "{}",
            r#"{"PublicIP":"0.0.0.0","PublicIPv6":null}"#,
        ] {
            e.put(&k, garbage);
            let deadline = Instant::now() + Duration::from_secs(5);
            while e.get(&k).as_deref() != Some(ours.as_str()) {
                assert!(Instant::now() < deadline, "{garbage:?} stayed at our key");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        // Taken by another node: never overwritten, and the follower stops.
        let theirs = r#"{"PublicIP":"192.0.2.99","PublicIPv6":null}"#;
        e.put(&k, theirs);
        gives_up_to(task, "192.0.2.99").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(e.get(&k).as_deref(), Some(theirs), "never overwritten");
    });
}

/// A genuine flannel lease of the wireguard backend (which ringlay does not run):
/// ringlay's parser refuses it, but it holds the subnet for its node.
const WIREGUARD: &str = r#"{"PublicIP":"192.0.2.77","PublicIPv6":null,"BackendType":"wireguard","BackendData":{"PublicKey":"dGVzdCBrZXkgZm9yIGEgd2lyZWd1YXJkIGxlYXNlIQ=="}}"#;

#[test]
fn values_naming_no_node_are_written_over_and_other_backends_leases_are_not() {
    if !require_etcd("other_backends") {
        return;
    }
    let e = etcd_with_vxlan_config("otherbe");
    rt().block_on(async {
        let (mut r, mut held, k, ours) = acquire_one(&e).await;

        // No address: no node's claim; the renewal writes ours back.
        for garbage in ["{}", r#"{"PublicIP":"0.0.0.0"}"#, "[1]"] {
            e.put(&k, garbage);
            assert_eq!(r.renew(&mut held).await.expect("renew"), Renewal::Renewed);
            assert_eq!(e.get(&k).as_deref(), Some(ours.as_str()), "{garbage}");
        }
        // Another node's lease of a backend ringlay does not run: taken, as any
        // other node's lease, by renewal and by reclaim alike, and never written.
        e.put(&k, WIREGUARD);
        let rev = e.revision();
        let taken = Renewal::Taken {
            holder: ip("192.0.2.77").into(),
        };
        assert_eq!(r.renew(&mut held).await.expect("renew"), taken);
        assert_eq!(r.reclaim(&mut held).await.expect("reclaim"), taken);
        assert_eq!(e.get(&k).as_deref(), Some(WIREGUARD));
        assert_eq!(e.revision(), rev, "nothing was written");

        // The follower gives up the subnet when the wireguard lease is written
        // over ours (through its watch).
        e.del(&k);
        assert_eq!(
            r.reclaim(&mut held).await.expect("reclaim"),
            Renewal::Renewed
        );
        let (f, _view) = Follower::start(
            r,
            config(VXLAN_CONFIG),
            Some(held),
            Duration::from_secs(3600),
        )
        .await
        .expect("start");
        let task = tokio::spawn(f.run());
        tokio::time::sleep(Duration::from_millis(500)).await;
        e.put(&k, WIREGUARD);
        gives_up_to(task, "192.0.2.77").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(e.get(&k).as_deref(), Some(WIREGUARD), "never overwritten");
    });
}

#[test]
fn a_restart_takes_its_previous_subnet_back_from_a_value_naming_no_node() {
    if !require_etcd("previous_garbage") {
        return;
    }
    let e = etcd_with_vxlan_config("prevgarb");
    rt().block_on(async {
        let c = config(VXLAN_CONFIG);
        let mut r = connect(&e).await;
        let mut rng = Rng::from_entropy();
        // Garbage at subnet.env's subnet: taken back, over that very value.
        for (i, garbage) in ["{not a lease", "{}", r#"{"PublicIP":"0.0.0.0"}"#]
            .iter()
            .enumerate()
        {
            let prev = format!("100.96.{}.0-24", 50 + i);
            e.put(&lease_key(&prev), garbage);
            let me = ip(&format!("192.0.2.{}", 1 + i));
            let held = r
                .acquire(&c, me, Some(key(&prev)), &mut rng)
                .await
                .expect("acquire");
            assert_eq!(
                (held.how, held.key),
                (Acquired::Previous, key(&prev)),
                "{garbage}"
            );
            let v = e.get(&lease_key(&prev)).expect("written");
            assert!(v.contains(&format!(r#""PublicIP":"{me}""#)), "{v}");
        }
        // Another node's lease there, even of a backend ringlay does not run: a
        // new subnet, the lease untouched.
        e.put(&lease_key("100.96.60.0-24"), WIREGUARD);
        let held = r
            .acquire(&c, ip("192.0.2.9"), Some(key("100.96.60.0-24")), &mut rng)
            .await
            .expect("acquire");
        assert_eq!(held.how, Acquired::New);
        assert_ne!(held.key, key("100.96.60.0-24"));
        assert_eq!(
            e.get(&lease_key("100.96.60.0-24")).as_deref(),
            Some(WIREGUARD)
        );
        // The lease with our PublicIP still comes first.
        e.put(&lease_key("100.96.61.0-24"), "{}");
        let again = r
            .acquire(&c, ip("192.0.2.9"), Some(key("100.96.61.0-24")), &mut rng)
            .await
            .expect("acquire");
        assert_eq!((again.how, again.key), (Acquired::Reused, held.key));
        assert_eq!(e.get(&lease_key("100.96.61.0-24")).as_deref(), Some("{}"));
    });
}

/// A `tracing` writer into a shared buffer, to read what the follower logged.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_resync_writes_back_garbage_on_our_key_and_gives_up_a_taken_one() {
    if !require_etcd("resync_own") {
        return;
    }
    // Our subnet is picked from 100.96.1.0–100.96.63.0, so the other node's
    // lease below (100.96.200.0/24) is never ours by chance.
    let ranged = r#"{"Network":"100.96.0.0/16","SubnetMin":"100.96.1.0","SubnetMax":"100.96.63.0","Backend":{"Type":"vxlan"}}"#;
    let e = Etcd::start("resyncown");
    e.put(&format!("{PREFIX}/config"), ranged);
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The runtime is single-threaded: the follower's task logs on this thread.
    let _log = tracing::subscriber::set_default(subscriber);
    rt().block_on(async {
        let c = config(ranged);
        let mut r = connect(&e).await;
        let me = ip("192.0.2.1");
        let held = r
            .acquire(&c, me, None, &mut Rng::from_entropy())
            .await
            .expect("acquire");
        let k = lease_key(&held.key.to_string());
        let ours = e.get(&k).expect("ours");
        // Listed now; the watch starts when `run` does, at a compacted revision:
        // what is written in between is only seen by the resync's listing.
        let start =
            |r: Registry, held| Follower::start(r, c, Some(held), Duration::from_secs(3600));
        let (f, _view) = start(r.clone(), held).await.expect("start");
        e.put(&k, "{}");
        e.put(
            &lease_key("100.96.200.0-24"),
            r#"{"PublicIP":"192.0.2.200"}"#,
        );
        e.compact(e.revision());
        let task = tokio::spawn(f.run());
        let deadline = Instant::now() + Duration::from_secs(10);
        while e.get(&k).as_deref() != Some(ours.as_str()) {
            assert!(
                Instant::now() < deadline,
                "our lease was not written back:\n{}",
                log.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!task.is_finished(), "the follower ended:\n{}", log.text());
        task.abort();
        let text = log.text();
        assert!(
            text.contains("replaced by one that is not a lease"),
            "{text}"
        );
        assert!(
            !text.contains("WAS DELETED"),
            "the key was never deleted:\n{text}"
        );

        // The same with another node's wireguard lease there: taken, not written.
        let held = r
            .acquire(&c, me, None, &mut Rng::from_entropy())
            .await
            .expect("acquire");
        assert_eq!(held.how, Acquired::Reused);
        let (f, _view) = start(r.clone(), held).await.expect("start");
        e.put(&k, WIREGUARD);
        e.put(
            &lease_key("100.96.201.0-24"),
            r#"{"PublicIP":"192.0.2.201"}"#,
        );
        e.compact(e.revision());
        gives_up_to(tokio::spawn(f.run()), "192.0.2.77").await;
        assert_eq!(e.get(&k).as_deref(), Some(WIREGUARD), "never overwritten");
    });
}

#[test]
fn compaction_during_a_watch_relists_once_without_a_loop() {
    if !require_etcd("compaction") {
        return;
    }
    let e = etcd_with_vxlan_config("compact");
    e.put(
        &lease_key("100.96.1.0-24"),
        r#"{"PublicIP":"192.0.2.1","PublicIPv6":null}"#,
    );
    rt().block_on(async {
        let r = connect(&e).await;
        let counter = r.clone();
        // Listed now; the watch starts only when `run` does.
        let (f, mut view) =
            Follower::start(r, config(VXLAN_CONFIG), None, Duration::from_secs(3600))
                .await
                .expect("start");
        for i in 2..=6 {
            e.put(
                &lease_key(&format!("100.96.{i}.0-24")),
                &format!(r#"{{"PublicIP":"192.0.2.{i}","PublicIPv6":null}}"#),
            );
        }
        e.del(&lease_key("100.96.1.0-24"));
        e.compact(e.revision());
        let before = counter.requests();
        let task = tokio::spawn(f.run());
        wait_view(&mut view, Duration::from_secs(10), "the re-list", |v| {
            (2..=6).all(|i| has(v, &format!("100.96.{i}.0-24")).is_some())
                && has(v, "100.96.1.0-24").is_none()
        })
        .await;
        // Still watching: a later put arrives.
        e.put(
            &lease_key("100.96.7.0-24"),
            r#"{"PublicIP":"192.0.2.7","PublicIPv6":null}"#,
        );
        wait_view(&mut view, Duration::from_secs(5), "a put after", |v| {
            has(v, "100.96.7.0-24").is_some()
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The compacted watch, one list, one new watch: no loop.
        let made = counter.requests() - before;
        assert!(made <= 4, "{made} requests after a compaction");
        task.abort();
    });
}

#[test]
fn a_missing_config_is_waited_for_and_a_malformed_one_refused() {
    if !require_etcd("config") {
        return;
    }
    let e = Etcd::start("config");
    rt().block_on(async {
        let mut r = connect(&e).await;
        let waiting =
            tokio::time::timeout(Duration::from_millis(1500), etcd::wait_config(&mut r)).await;
        assert!(
            waiting.is_err(),
            "still waiting while the config is missing"
        );
        e.put(
            &format!("{PREFIX}/config"),
            r#"{"Network":"100.96.0.0/16","SubnetLen":40}"#,
        );
        let err = etcd::wait_config(&mut r).await.expect_err("refused");
        let msg = err.to_string();
        assert!(msg.contains("/coreos.com/network/config"), "{msg}");
        assert!(msg.contains("SubnetLen"), "{msg}");
        e.put(&format!("{PREFIX}/config"), VXLAN_CONFIG);
        assert_eq!(
            etcd::wait_config(&mut r).await.expect("config"),
            config(VXLAN_CONFIG)
        );
    });
}

#[test]
fn tls_endpoint_with_client_certificates() {
    if !require_etcd("tls") {
        return;
    }
    let certs = Certs::generate("tls");
    let e = Etcd::start_tls("tls", &certs);
    e.put(&format!("{PREFIX}/config"), VXLAN_CONFIG);
    rt().block_on(async {
        let mut s = settings(&e);
        assert!(s.endpoints[0].starts_with("https://"));
        s.ca_file = Some(certs.path("ca.pem"));
        s.cert_file = Some(certs.path("client.pem"));
        s.key_file = Some(certs.path("client.key"));
        let mut r = Registry::connect(&s).await.expect("connect");
        let c = etcd::wait_config(&mut r).await.expect("config over TLS");
        let held = r
            .acquire(&c, ip("192.0.2.1"), None, &mut Rng::from_entropy())
            .await
            .expect("acquire over TLS");
        assert!(e.get(&lease_key(&held.key.to_string())).is_some());

        // Without a client certificate the server refuses.
        s.cert_file = None;
        s.key_file = None;
        let mut r = Registry::connect(&s).await.expect("connect is lazy");
        assert!(r.config().await.is_err(), "no client certificate: refused");
        // TLS files with plain http endpoints are a flag error.
        s.endpoints = vec!["http://127.0.0.1:2379".into()];
        let err = Registry::connect(&s)
            .await
            .expect_err("http with TLS files");
        assert!(err.to_string().contains("--etcd-endpoints"), "{err}");
    });
}

#[test]
fn username_and_password() {
    if !require_etcd("auth") {
        return;
    }
    let e = etcd_with_vxlan_config("auth");
    for args in [
        &["user", "add", "root:ringlay-test"][..],
        &["auth", "enable"][..],
    ] {
        let out = e.ctl(args);
        assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
    }
    rt().block_on(async {
        let mut s = settings(&e);
        // Without credentials: refused.
        let mut r = connect(&e).await;
        assert!(r.config().await.is_err(), "auth is on: refused");
        s.username = Some("root".into());
        s.password = Some("ringlay-test".into());
        let mut r = Registry::connect(&s).await.expect("authenticated");
        let c = etcd::wait_config(&mut r).await.expect("config");
        r.acquire(&c, ip("192.0.2.1"), None, &mut Rng::from_entropy())
            .await
            .expect("acquire as root");
        s.password = Some("wrong".into());
        let err = Registry::connect(&s).await.expect_err("wrong password");
        assert!(err.to_string().contains("etcd"), "{err}");
    });
}

const DUAL_VXLAN_CONFIG: &str = r#"{"Network":"100.96.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:100:96::/48","Backend":{"Type":"vxlan"}}"#;
const V6_ONLY_VXLAN_CONFIG: &str = r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:100:96::/48","Backend":{"Type":"vxlan"}}"#;

fn v6(s: &str) -> std::net::Ipv6Addr {
    s.parse().expect("valid address")
}

/// A dual-stack node through the lease source the daemon starts: the place
/// callback sees the config before any lease is written, and the value etcd
/// holds is flanneld's, byte for byte, with one VTEP for both families.
#[test]
fn dual_stack_vxlan_lease_is_flanneld_bytes() {
    if !require_etcd("dual_stack_vxlan_lease") {
        return;
    }
    use ringlay::config::Features;
    use ringlay::control::source::{LeaseSource, Source};
    use ringlay::control::Publics;

    let e = Etcd::start("dual-stack-vxlan-lease");
    e.put(&format!("{PREFIX}/config"), DUAL_VXLAN_CONFIG);
    let subnet_file = e.dir().join("subnet.env");
    rt().block_on(async {
        let mut seen = None;
        let place = |c: &NetworkConfig| {
            seen = Some(*c);
            Ok(Publics {
                v4: ip("192.0.2.1"),
                v6: Some(v6("2001:db8::1")),
            })
        };
        let source = Source::Etcd(settings(&e));
        let started = LeaseSource::start(&source, &subnet_file, Features::default(), place)
            .await
            .expect("start");
        assert_eq!(seen, Some(config(DUAL_VXLAN_CONFIG)), "placed for the config");
        let local = started.local;
        assert!(local.key.v4.is_some() && local.key.v6.is_some(), "{}", local.key);
        assert_eq!(local.public_ip, ip("192.0.2.1"));
        assert_eq!(local.public_ipv6, Some(v6("2001:db8::1")));
        assert_eq!(local.vtep_mac.to_string(), "0e:72:c0:00:02:01");
        assert_eq!(local.vtep_mac_v6, local.vtep_mac);
        let value = e.get(&lease_key(&local.key.to_string())).expect("our lease");
        assert_eq!(
            value,
            r#"{"PublicIP":"192.0.2.1","PublicIPv6":"2001:db8::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:72:c0:00:02:01"},"BackendV6Data":{"VNI":1,"VtepMAC":"0e:72:c0:00:02:01"}}"#
        );
        // A config this host cannot run is refused before anything is written.
        drop(started);
        let refuse = |_: &NetworkConfig| Err(Error::invalid("Backend", "x", "refused by the test"));
        let err = LeaseSource::start(&source, &subnet_file, Features::default(), refuse)
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("refused by the test"), "{err}");
        assert_eq!(e.get_prefix(&format!("{PREFIX}/subnets/")).len(), 1);
    });
}

/// IPv6-only nodes: flanneld's zero PublicIP and no BackendData; each node
/// finds its own lease again by PublicIPv6 (not by the 0.0.0.0 they share),
/// and derives its VTEP MAC from its IPv6 address.
#[test]
fn ipv6_only_leases_are_flanneld_bytes_and_found_again_by_public_ipv6() {
    if !require_etcd("ipv6_only_leases") {
        return;
    }
    use ringlay::control::Publics;

    let e = Etcd::start("ipv6-only-leases");
    e.put(&format!("{PREFIX}/config"), V6_ONLY_VXLAN_CONFIG);
    let c = config(V6_ONLY_VXLAN_CONFIG);
    let at = |a: &str| Publics {
        v4: Ipv4Addr::UNSPECIFIED,
        v6: Some(v6(a)),
    };
    rt().block_on(async {
        let mut a = connect(&e).await;
        let first = a
            .acquire(&c, at("2001:db8::1"), None, &mut Rng::from_entropy())
            .await
            .expect("acquire");
        assert_eq!(first.how, Acquired::New);
        assert!(first.key.v4.is_none() && first.key.v6.is_some(), "{}", first.key);
        let k = lease_key(&first.key.to_string());
        assert!(k.contains("/subnets/0.0.0.0-0&fd00:100:96:"), "{k}");
        assert_eq!(
            e.get(&k).expect("ours"),
            r#"{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::1","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"0e:76:20:01:0d:b9"}}"#
        );
        // Another IPv6-only node gets its own subnet, not ours.
        let mut b = connect(&e).await;
        let second = b
            .acquire(&c, at("2001:db8::2"), None, &mut Rng::from_entropy())
            .await
            .expect("acquire");
        assert_eq!(second.how, Acquired::New);
        assert_ne!(second.key, first.key);
        // A restart of the first finds its lease by PublicIPv6 and keeps it.
        let mut again = connect(&e).await;
        let kept = again
            .acquire(&c, at("2001:db8::1"), None, &mut Rng::from_entropy())
            .await
            .expect("acquire");
        assert_eq!((kept.how, kept.key), (Acquired::Reused, first.key));
        assert_eq!(kept.vtep_mac(), first.vtep_mac());
        assert_eq!(e.get_prefix(&format!("{PREFIX}/subnets/")).len(), 2);
    });
}
