//! Soak: TCP through the overlay while the lease table churns.
//!
//! Two ringlay hosts (vxlan) lease their subnets from a real etcd on the cluster's
//! switch. iperf3 runs TCP from container 1 to container 2 for
//! `RINGLAY_SOAK_SECONDS` (15 by default, so CI stays short; `scripts/soak.sh`
//! runs 60), while another process in etcd's namespace publishes
//! [`RATE`] lease changes per second under `/coreos.com/network/subnets/`: puts
//! and deletes of fake hosts' leases (subnets 100.96.100.0/24 and up, public IPs
//! in 203.0.113.0/24), never the two real hosts' leases. What is measured and
//! asserted:
//!
//! - the publisher reached at least [`MIN_RATE`] changes per second (otherwise
//!   the soak proves nothing);
//! - the daemons published a new table many times a second (the follower
//!   publishes at most every 25 ms, so changes are coalesced), and the workers
//!   switched to most of them while forwarding (`table_updates_seen`);
//! - no packet was dropped (`no_lease` above all: a destination missing from
//!   some table), no data-path error, iperf3 completed. The one drop allowed is
//!   `multicast_destination`: the kernel's own MLD reports on the TUN;
//! - each ringlay's RSS (`VmRSS`), sampled every second after a warm-up, stays
//!   within 5 % (max over min), and its count of open file descriptors does not
//!   change.
//!
//! The publisher is this test binary itself, re-executed inside etcd's namespace
//! (`ip netns exec NS <this binary> --exact <test>`) with [`PUBLISHER_ENV`] set:
//! the test process stays in the root namespace, which has no route to etcd.

mod common;

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::io::Read;
use std::net::IpAddr;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::{counters, etcd_on_switch, join, status_of, PREFIX, VXLAN_CONFIG};
use common::etcd::require_etcd;
use common::netns::{
    require_command, require_root, sum_received_bps, wait_child, wait_listening, Cluster,
};

const TEST_NAME: &str = "iperf3_through_200_lease_changes_per_second";
/// Set in the re-executed publisher: `endpoint;seconds;octet,octet,…`.
const PUBLISHER_ENV: &str = "RINGLAY_SOAK_PUBLISHER";
/// Lease changes published per second.
const RATE: u32 = 200;
/// The least rate the publisher must reach for the soak to count.
const MIN_RATE: f64 = 180.0;
/// Fake leases the publisher cycles through (puts, then deletes, round robin).
const FAKE_LEASES: usize = 100;
/// Time from the start of the load to the first sample.
const WARM_UP: Duration = Duration::from_secs(5);
/// Most the RSS may vary after the warm-up (max / min − 1).
const RSS_SPREAD: f64 = 0.05;
/// The longest soak the test accepts (`RINGLAY_SOAK_SECONDS`).
const MAX_SECONDS: u64 = 600;
const IPERF_PORT: u16 = 5201;

/// The soak's length: `RINGLAY_SOAK_SECONDS`, default 15, at least 10.
fn soak_seconds() -> u64 {
    let s = env::var("RINGLAY_SOAK_SECONDS")
        .ok()
        .map(|v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("RINGLAY_SOAK_SECONDS={v}: not a number"))
        })
        .unwrap_or(15);
    assert!(
        (10..=MAX_SECONDS).contains(&s),
        "RINGLAY_SOAK_SECONDS={s}: must be 10 to {MAX_SECONDS}"
    );
    s
}

/// The counters of one status document that the soak compares.
#[derive(Debug, Clone, Default)]
struct Counters {
    generation: u64,
    updates_seen: u64,
    drops: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    peers: usize,
}

impl Counters {
    fn of(s: &serde_json::Value) -> Counters {
        Counters {
            generation: s["table_generation"].as_u64().expect("table_generation"),
            updates_seen: s["table_updates_seen"]
                .as_u64()
                .expect("table_updates_seen"),
            drops: counters(&s["drops"]),
            errors: counters(&s["errors"]),
            peers: s["peers"].as_array().map_or(0, Vec::len),
        }
    }

    /// How much drop `reason` grew from `before` to `self`.
    fn drops_since(&self, before: &Counters, reason: &str) -> u64 {
        let get = |c: &Counters| c.drops.get(reason).copied().unwrap_or(0);
        get(self) - get(before)
    }

    /// Every drop reason and error that grew from `before` to `self`, except the
    /// kernel's own multicast reports on the TUN (`multicast_destination`), which
    /// no overlay forwards.
    fn grown(&self, before: &Counters) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (kind, now, then) in [
            ("drop", &self.drops, &before.drops),
            ("error", &self.errors, &before.errors),
        ] {
            for (k, v) in now {
                let d = v - then.get(k).copied().unwrap_or(0);
                if d > 0 && !(kind == "drop" && k == "multicast_destination") {
                    out.insert(format!("{kind} {k}"), d);
                }
            }
        }
        out
    }
}

/// `VmRSS` of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for {pid}"))
}

/// Open file descriptors of `pid`.
fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count()
}

/// Reads a child's pipe to the end in the background.
fn collect<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut text);
        }
        text
    })
}

/// `(min, max)` of a non-empty sample.
fn span(v: &[u64]) -> (u64, u64) {
    (
        v.iter().copied().min().unwrap_or(0),
        v.iter().copied().max().unwrap_or(0),
    )
}

#[test]
fn iperf3_through_200_lease_changes_per_second() {
    if let Ok(spec) = env::var(PUBLISHER_ENV) {
        publisher::run(&spec);
        return;
    }
    if !require_root(TEST_NAME)
        || !require_etcd(TEST_NAME)
        || !require_command(TEST_NAME, "iperf3", "iperf3")
    {
        return;
    }
    let secs = soak_seconds();
    // The switch (and etcd on it) needs three hosts; ringlay runs on two.
    let c = Cluster::hosts("soak", 3);
    let (etcd_ns, e) = etcd_on_switch(&c, "soak", VXLAN_CONFIG);
    let (mut daemons, addrs) = join(&c, &e, &[1, 2]);
    let real: Vec<u8> = addrs.iter().map(|a| a.octets()[2]).collect();
    assert_ne!(real[0], real[1], "distinct subnets");
    assert!(
        c.ping(1, IpAddr::V4(addrs[1]), 3),
        "container 1 reaches container 2"
    );

    // Fake leases: the first FAKE_LEASES /24s from 100.96.100.0 that no real host has.
    let octets: Vec<String> = (100u8..=254)
        .filter(|o| !real.contains(o))
        .take(FAKE_LEASES)
        .map(|o| o.to_string())
        .collect();
    let start: Vec<Counters> = daemons
        .iter()
        .map(|d| Counters::of(&status_of(&c, d.host())))
        .collect();

    // The load: the iperf3 server, the publisher, the iperf3 client.
    let bound = (secs + 30).to_string();
    let port = IPERF_PORT.to_string();
    let mut server_cmd = c
        .container(2)
        .command(&["timeout", &bound, "iperf3", "-s", "-1", "-p", &port]);
    server_cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut server = c.container(2).spawn_command(server_cmd);
    wait_listening(c.container(2), IPERF_PORT, Duration::from_secs(5));

    let exe = env::current_exe().expect("path of this test binary");
    let exe = exe.display().to_string();
    let mut pub_cmd = etcd_ns.command(&[&exe, "--exact", TEST_NAME, "--nocapture"]);
    pub_cmd
        .env(
            PUBLISHER_ENV,
            format!("{};{secs};{}", e.endpoint(), octets.join(",")),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut publisher = etcd_ns.spawn_command(pub_cmd);
    let pub_out = collect(publisher.stdout.take());
    let pub_err = collect(publisher.stderr.take());

    let began = Instant::now();
    let target = addrs[1].to_string();
    let t = secs.to_string();
    let mut client_cmd = c.container(1).command(&[
        "timeout", &bound, "iperf3", "-c", &target, "-p", &port, "-t", &t, "-J",
    ]);
    client_cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut client = c.container(1).spawn_command(client_cmd);
    let client_out = collect(client.stdout.take());
    let client_err = collect(client.stderr.take());

    // Warm-up, then one sample a second until a second before iperf3 ends.
    thread::sleep(WARM_UP);
    let first: Vec<Counters> = daemons
        .iter()
        .map(|d| Counters::of(&status_of(&c, d.host())))
        .collect();
    let mut rss: Vec<Vec<u64>> = vec![Vec::new(); daemons.len()];
    let mut fds: Vec<Vec<u64>> = vec![Vec::new(); daemons.len()];
    let end = began + Duration::from_secs(secs - 1);
    let mut next = Instant::now();
    while next <= end {
        for (k, d) in daemons.iter().enumerate() {
            rss[k].push(rss_kib(d.pid()));
            fds[k].push(open_fds(d.pid()) as u64);
        }
        next += Duration::from_secs(1);
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let last: Vec<Counters> = daemons
        .iter()
        .map(|d| Counters::of(&status_of(&c, d.host())))
        .collect();
    let window = began.elapsed().saturating_sub(WARM_UP);

    let deadline = began + Duration::from_secs(secs + 30);
    let left = || deadline.saturating_duration_since(Instant::now());
    let client_status = wait_child(&mut client, left());
    let json = client_out.join().unwrap_or_default();
    let client_stderr = client_err.join().unwrap_or_default();
    let pub_status = wait_child(&mut publisher, left());
    let pub_text = pub_out.join().unwrap_or_default();
    let pub_stderr = pub_err.join().unwrap_or_default();
    let _ = wait_child(&mut server, Duration::from_secs(5));
    // Let the last published table reach the workers' counters, then read them.
    thread::sleep(Duration::from_millis(500));
    let finish: Vec<Counters> = daemons
        .iter()
        .map(|d| Counters::of(&status_of(&c, d.host())))
        .collect();

    // --- figures ---
    println!("soak: {secs} s of iperf3 TCP container 1 -> container 2 over vxlan, {RATE} lease changes/s requested");
    let published = publisher::Result::parse(&pub_text).unwrap_or_else(|| {
        panic!("publisher ({pub_status:?}) reported nothing:\n{pub_text}\n{pub_stderr}")
    });
    println!(
        "publisher: {} changes ({} puts, {} deletes, {} failed) in {:.1} s = {:.1}/s",
        published.changes,
        published.puts,
        published.deletes,
        published.errors,
        published.secs,
        published.rate()
    );
    let gbps = sum_received_bps(&json).map(|b| b / 1e9);
    match gbps {
        Some(g) => println!("iperf3: {g:.3} Gbit/s received over {secs} s"),
        None => println!("iperf3: no result ({client_status:?}):\n{json}\n{client_stderr}"),
    }
    for (k, d) in daemons.iter().enumerate() {
        let (gen, seen) = (
            last[k].generation - first[k].generation,
            last[k].updates_seen - first[k].updates_seen,
        );
        println!(
            "host {}: in the {:.1} s window after the warm-up, {gen} tables published, the worker switched to {seen} ({:.1}/s); whole soak: {} published, {} switched to; {} peers at the end",
            d.host(),
            window.as_secs_f64(),
            seen as f64 / window.as_secs_f64(),
            finish[k].generation - start[k].generation,
            finish[k].updates_seen - start[k].updates_seen,
            finish[k].peers
        );
        let grown = finish[k].grown(&start[k]);
        println!(
            "host {}: during the soak: no_lease drops {}, other drops and errors {}, the kernel's multicast reports dropped {}",
            d.host(),
            finish[k].drops_since(&start[k], "no_lease"),
            if grown.is_empty() {
                "none".to_owned()
            } else {
                format!("{grown:?}")
            },
            finish[k].drops_since(&start[k], "multicast_destination"),
        );
        let (lo, hi) = span(&rss[k]);
        let (flo, fhi) = span(&fds[k]);
        println!(
            "host {}: VmRSS {lo}..{hi} KiB over {} samples (spread {:.2} %), open fds {flo}..{fhi}",
            d.host(),
            rss[k].len(),
            (hi as f64 / lo.max(1) as f64 - 1.0) * 100.0
        );
        println!("host {}: RSS samples (KiB): {:?}", d.host(), rss[k]);
    }

    // --- assertions ---
    assert_eq!(
        pub_status.map(|s| s.success()),
        Some(true),
        "publisher failed:\n{pub_text}\n{pub_stderr}"
    );
    assert_eq!(published.errors, 0, "failed changes:\n{pub_text}");
    assert!(
        published.rate() >= MIN_RATE,
        "the publisher reached only {:.1} changes/s (at least {MIN_RATE} needed)",
        published.rate()
    );
    assert!(
        published.secs >= secs as f64 - 1.0,
        "the publisher ran {:.1} s of {secs}",
        published.secs
    );
    assert_eq!(
        client_status.map(|s| s.success()),
        Some(true),
        "iperf3 client failed:\n{json}\n{client_stderr}"
    );
    assert!(gbps.is_some_and(|g| g > 0.0), "iperf3 gave no throughput");
    let min_tables = window.as_secs_f64() * 10.0;
    for (k, d) in daemons.iter().enumerate() {
        let h = d.host();
        let gen = last[k].generation - first[k].generation;
        let seen = last[k].updates_seen - first[k].updates_seen;
        // The follower publishes at most every 25 ms (40 tables/s): with 200
        // changes/s, well over 10 a second must come.
        assert!(
            gen as f64 >= min_tables,
            "host {h}: only {gen} tables published in {window:?}"
        );
        // The worker forwards all the time, so it meets most tables: it misses only
        // those replaced while it was between batches (on a loaded machine it may
        // wait for a CPU longer than the 25 ms between two tables).
        assert!(
            seen as f64 >= gen as f64 * 0.5,
            "host {h}: the worker switched to only {seen} of {gen} tables"
        );
        assert_eq!(
            finish[k].drops_since(&start[k], "no_lease"),
            0,
            "host {h}: packets without a lease while the table changed"
        );
        let grown = finish[k].grown(&start[k]);
        assert!(
            grown.is_empty(),
            "host {h}: drops or errors during the soak: {grown:?}\n{}",
            d.log()
        );
        let (lo, hi) = span(&rss[k]);
        assert!(rss[k].len() >= 3, "host {h}: too few samples");
        assert!(
            hi as f64 <= lo as f64 * (1.0 + RSS_SPREAD),
            "host {h}: VmRSS {lo}..{hi} KiB varies more than {} %: {:?}",
            RSS_SPREAD * 100.0,
            rss[k]
        );
        let (flo, fhi) = span(&fds[k]);
        assert_eq!(flo, fhi, "host {h}: open fds changed: {:?}", fds[k]);
    }
    for d in &mut daemons {
        let s = d.terminate();
        assert!(s.success(), "host {}: {s}\n{}", d.host(), d.log());
        let log = d.log();
        for line in log.lines().filter(|l| l.contains("final counters")) {
            println!("host {}: {}", d.host(), line.trim());
        }
        assert!(
            !log.contains("panicked"),
            "host {}: a panic:\n{log}",
            d.host()
        );
    }
}

/// The publishing side, run inside etcd's namespace.
mod publisher {
    use std::time::Duration;

    use etcd_client::Client;
    use tokio::task::JoinSet;
    use tokio::time::{sleep_until, Instant};

    use super::{FAKE_LEASES, PREFIX, RATE};

    /// Changes in flight at most (each is one request).
    const IN_FLIGHT: usize = 32;

    /// What the publisher did.
    #[derive(Debug, Default)]
    pub struct Result {
        pub changes: u64,
        pub puts: u64,
        pub deletes: u64,
        pub errors: u64,
        pub secs: f64,
    }

    impl Result {
        /// Successful changes per second.
        pub fn rate(&self) -> f64 {
            self.changes as f64 / self.secs.max(1e-9)
        }

        fn line(&self) -> String {
            format!(
                "published changes={} puts={} deletes={} errors={} secs={:.3}",
                self.changes, self.puts, self.deletes, self.errors, self.secs
            )
        }

        /// Reads back [`Result::line`] from the publisher's output.
        pub fn parse(text: &str) -> Option<Result> {
            let line = text.lines().find_map(|l| l.strip_prefix("published "))?;
            let mut r = Result::default();
            for kv in line.split_whitespace() {
                let (k, v) = kv.split_once('=')?;
                match k {
                    "changes" => r.changes = v.parse().ok()?,
                    "puts" => r.puts = v.parse().ok()?,
                    "deletes" => r.deletes = v.parse().ok()?,
                    "errors" => r.errors = v.parse().ok()?,
                    "secs" => r.secs = v.parse().ok()?,
                    _ => return None,
                }
            }
            Some(r)
        }
    }

    /// The value of fake lease `i`: flannel's vxlan lease of a host at 203.0.113.(i+1).
    fn value(i: usize) -> String {
        format!(
            r#"{{"PublicIP":"203.0.113.{}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"0e:00:cb:00:71:{:02x}"}}}}"#,
            i + 1,
            i + 1
        )
    }

    /// `spec` is `endpoint;seconds;octet,…`: publishes [`RATE`] changes a second for
    /// that long, putting and deleting the leases `100.96.<octet>.0-24` in turn, and
    /// prints a [`Result`] line.
    pub fn run(spec: &str) {
        let mut parts = spec.split(';');
        let endpoint = parts.next().expect("endpoint").to_owned();
        let secs: u64 = parts.next().and_then(|s| s.parse().ok()).expect("seconds");
        let keys: Vec<String> = parts
            .next()
            .expect("octets")
            .split(',')
            .map(|o| format!("{PREFIX}/subnets/100.96.{o}.0-24"))
            .collect();
        assert!(!keys.is_empty() && keys.len() <= FAKE_LEASES, "{spec}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let r = rt.block_on(publish(&endpoint, secs, &keys));
        println!("{}", r.line());
    }

    async fn publish(endpoint: &str, secs: u64, keys: &[String]) -> Result {
        let client = Client::connect([endpoint], None)
            .await
            .expect("connect to etcd");
        let mut present = vec![false; keys.len()];
        let interval = Duration::from_secs(1) / RATE;
        let start = Instant::now();
        let stop = start + Duration::from_secs(secs);
        let mut tasks: JoinSet<(bool, std::result::Result<(), String>)> = JoinSet::new();
        let mut r = Result::default();
        let note = |r: &mut Result, done: (bool, std::result::Result<(), String>)| match done {
            (put, Ok(())) => {
                r.changes += 1;
                if put {
                    r.puts += 1;
                } else {
                    r.deletes += 1;
                }
            }
            (_, Err(e)) => {
                if r.errors == 0 {
                    println!("first failed change: {e}");
                }
                r.errors += 1;
            }
        };
        for k in 0u32.. {
            let due = start + interval * k;
            if due >= stop {
                break;
            }
            sleep_until(due).await;
            while let Some(done) = tasks.try_join_next() {
                note(&mut r, done.expect("change task"));
            }
            while tasks.len() >= IN_FLIGHT {
                if let Some(done) = tasks.join_next().await {
                    note(&mut r, done.expect("change task"));
                }
            }
            let i = k as usize % keys.len();
            let put = !present[i];
            present[i] = put;
            let key = keys[i].clone();
            let mut kv = client.kv_client();
            tasks.spawn(async move {
                let res = if put {
                    kv.put(key, value(i), None).await.map(|_| ())
                } else {
                    kv.delete(key, None).await.map(|_| ())
                };
                (put, res.map_err(|e| e.to_string()))
            });
        }
        while let Some(done) = tasks.join_next().await {
            note(&mut r, done.expect("change task"));
        }
        r.secs = start.elapsed().as_secs_f64();
        r
    }
}
