//! The Prometheus text exposition (format 0.0.4) of a [`Sample`]: pure, no I/O.
//!
//! Names follow Prometheus conventions: a `ringlay_` prefix, `_total` on counters,
//! base units (bytes, seconds). Every drop reason and every data-path error is
//! exported for every worker, zero or not, so a rate over a new reason needs no
//! special case in a dashboard.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::{unix_seconds, LeaseInfo, Sample};
use crate::control::etcd::FollowStats;
use crate::control::kube::KubeStats;
use crate::dataplane::{Counter, Offload, Stats};
use crate::drop_reason::DropReason;
use crate::table::Snapshot;

/// `(counter for packets, counter for bytes, direction label)`.
const DIRECTIONS: [(Counter, Counter, &str); 4] = [
    (Counter::TunRxPackets, Counter::TunRxBytes, "tun_rx"),
    (
        Counter::TunnelTxPackets,
        Counter::TunnelTxBytes,
        "tunnel_tx",
    ),
    (
        Counter::TunnelRxPackets,
        Counter::TunnelRxBytes,
        "tunnel_rx",
    ),
    (Counter::TunTxPackets, Counter::TunTxBytes, "tun_tx"),
];

/// Data-path errors, exported as `ringlay_datapath_errors_total{kind}`.
const ERRORS: [(Counter, &str); 6] = [
    (Counter::SendErrors, "send"),
    (Counter::RecvErrors, "recv"),
    (Counter::TunReadErrors, "tun_read"),
    (Counter::TunWriteErrors, "tun_write"),
    (Counter::NoSendBuffer, "no_send_buffer"),
    (Counter::GsoFallbacks, "gso_fallback"),
];

/// The other per-worker counters: `(counter, metric name, help)`.
const OTHERS: [(Counter, &str, &str); 9] = [
    (
        Counter::IcmpUnreachable,
        "ringlay_icmp_unreachable_sent_total",
        "ICMP destination-unreachable messages written back for packets without a lease.",
    ),
    (
        Counter::IcmpRateLimited,
        "ringlay_icmp_rate_limited_total",
        "ICMP messages not sent because of the rate limit.",
    ),
    (
        Counter::TsoSuperPackets,
        "ringlay_tso_super_packets_total",
        "TUN reads that were segmentation-offload super-packets, cut in userspace.",
    ),
    (
        Counter::GsoSends,
        "ringlay_gso_sends_total",
        "Sends that carried several datagrams (UDP_SEGMENT).",
    ),
    (
        Counter::GatheredSends,
        "ringlay_gathered_sends_total",
        "Super-packets sent gathered from the buffer they were read into, without copying their payload.",
    ),
    (
        Counter::GroReceives,
        "ringlay_gro_receives_total",
        "Receives that returned several coalesced datagrams (UDP_GRO).",
    ),
    (
        Counter::CoalescedWrites,
        "ringlay_coalesced_writes_total",
        "TUN writes that carried several coalesced TCP segments.",
    ),
    (
        Counter::RecvRingEmpty,
        "ringlay_recv_ring_empty_total",
        "Multishot receives re-armed because every receive buffer was in use (no datagram lost).",
    ),
    (
        Counter::TableUpdatesSeen,
        "ringlay_table_updates_seen_total",
        "Newer table snapshots the worker switched to while forwarding.",
    ),
];

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A metric without labels: its family lines and its one sample.
fn single(o: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(o, name, kind, help);
    let _ = writeln!(o, "{name} {value}");
}

/// A label value with `\`, `"` and newlines escaped, as the format requires.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric of `s`.
pub fn render(s: &Sample) -> String {
    let mut out = String::with_capacity(8192);
    let o = &mut out;
    family(o, "ringlay_build_info", "gauge", "ringlay's version.");
    let _ = writeln!(
        o,
        "ringlay_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    single(
        o,
        "ringlay_ready",
        "gauge",
        "1 once the lease is held, the TUN device (or the routes) is up and subnet.env is written.",
        u8::from(s.ready),
    );
    if let Some(l) = &s.lease {
        lease(o, l);
    }
    if let Some(f) = &s.follow {
        etcd(o, f);
    }
    if let Some(k) = &s.kube {
        kube(o, k);
    }
    if let Some((snap, at)) = &s.table {
        table(o, snap, *at);
    }
    if let Some(off) = s.offload {
        offload(o, off);
    }
    if let Some(n) = s.tun_tx_dropped {
        single(
            o,
            "ringlay_tun_tx_dropped_total",
            "counter",
            "Packets the kernel dropped because a TUN queue was full: traffic the workers did not read in time (the device's tx_dropped).",
            n,
        );
    }
    if !s.workers.is_empty() {
        workers(o, &s.workers);
    }
    out
}

fn lease(o: &mut String, l: &LeaseInfo) {
    family(
        o,
        "ringlay_lease_info",
        "gauge",
        "This host's lease: subnet, public IPs and backend (value always 1).",
    );
    let _ = writeln!(
        o,
        "ringlay_lease_info{{subnet=\"{}\",public_ip=\"{}\",public_ipv6=\"{}\",backend=\"{}\",vtep_mac=\"{}\"}} 1",
        escape(&l.subnet),
        l.public_ip,
        l.public_ipv6.map(|a| a.to_string()).unwrap_or_default(),
        escape(&l.backend),
        escape(l.vtep_mac.as_deref().unwrap_or(""))
    );
}

fn etcd(o: &mut String, f: &FollowStats) {
    let expires = f.lease_expires_unix.load(Ordering::Relaxed);
    if expires > 0 {
        single(
            o,
            "ringlay_lease_expiry_timestamp_seconds",
            "gauge",
            "When our lease in etcd expires unless renewed (Unix time).",
            expires,
        );
    }
    single(
        o,
        "ringlay_etcd_watch_reconnects_total",
        "counter",
        "Watches of the etcd prefix re-established after one was lost.",
        f.watch_reconnects.load(Ordering::Relaxed),
    );
    single(
        o,
        "ringlay_etcd_resyncs_total",
        "counter",
        "Full listings of the etcd prefix after a lost watch.",
        f.resyncs.load(Ordering::Relaxed),
    );
}

fn kube(o: &mut String, k: &KubeStats) {
    let rows = [
        ("ringlay_kube_node_events_total", "counter", "Node events (added, modified, deleted) applied to the lease map.", &k.events),
        ("ringlay_kube_node_lists_total", "counter", "Full lists of the cluster's Nodes: the first, and one after each lost watch (410 Gone, a broken stream).", &k.lists),
        ("ringlay_kube_watch_errors_total", "counter", "Errors of the Node list or watch, each followed by a backoff.", &k.errors),
        ("ringlay_kube_nodes_refused", "gauge", "Nodes whose lease is refused now (malformed annotations or podCIDRs, a subnet or public IP already held).", &k.refused),
    ];
    for (name, kind, help, value) in rows {
        single(o, name, kind, help, value.load(Ordering::Relaxed));
    }
}

fn table(o: &mut String, snap: &Snapshot, at: Option<SystemTime>) {
    single(
        o,
        "ringlay_table_peers",
        "gauge",
        "Peers (leases other than ours) in the current table.",
        snap.len(),
    );
    single(
        o,
        "ringlay_table_generation",
        "gauge",
        "The current table's generation (one more per publish).",
        snap.generation(),
    );
    if let Some(at) = at {
        single(
            o,
            "ringlay_table_last_update_timestamp_seconds",
            "gauge",
            "When the current table was published (Unix time).",
            format_args!("{:.3}", unix_seconds(at)),
        );
    }
}

fn offload(o: &mut String, off: Offload) {
    family(
        o,
        "ringlay_offload_enabled",
        "gauge",
        "1 for each offload in use (tso, gso, gro), 0 otherwise.",
    );
    for (name, on) in [("tso", off.tso), ("gso", off.gso), ("gro", off.gro)] {
        let _ = writeln!(
            o,
            "ringlay_offload_enabled{{feature=\"{name}\"}} {}",
            u8::from(on)
        );
    }
}

/// The per-worker counters.
fn workers(o: &mut String, workers: &[Arc<Stats>]) {
    family(
        o,
        "ringlay_packets_total",
        "counter",
        "Packets per worker and direction: tun_rx (read from the TUN), tunnel_tx (sent to peers), tunnel_rx (received from peers), tun_tx (written to the TUN).",
    );
    for (w, st) in workers.iter().enumerate() {
        for (p, _, dir) in DIRECTIONS {
            let _ = writeln!(
                o,
                "ringlay_packets_total{{worker=\"{w}\",direction=\"{dir}\"}} {}",
                st.get(p)
            );
        }
    }
    family(
        o,
        "ringlay_bytes_total",
        "counter",
        "Bytes per worker and direction (tunnel directions count the UDP payload).",
    );
    for (w, st) in workers.iter().enumerate() {
        for (_, b, dir) in DIRECTIONS {
            let _ = writeln!(
                o,
                "ringlay_bytes_total{{worker=\"{w}\",direction=\"{dir}\"}} {}",
                st.get(b)
            );
        }
    }
    family(
        o,
        "ringlay_drops_total",
        "counter",
        "Packets dropped per worker and reason.",
    );
    for (w, st) in workers.iter().enumerate() {
        for d in DropReason::ALL {
            let _ = writeln!(
                o,
                "ringlay_drops_total{{worker=\"{w}\",reason=\"{}\"}} {}",
                d.name(),
                st.drops(d)
            );
        }
    }
    family(
        o,
        "ringlay_datapath_errors_total",
        "counter",
        "Data-path errors per worker and kind.",
    );
    for (w, st) in workers.iter().enumerate() {
        for (c, kind) in ERRORS {
            let _ = writeln!(
                o,
                "ringlay_datapath_errors_total{{worker=\"{w}\",kind=\"{kind}\"}} {}",
                st.get(c)
            );
        }
    }
    for (c, name, help) in OTHERS {
        family(o, name, "counter", help);
        for (w, st) in workers.iter().enumerate() {
            let _ = writeln!(o, "{name}{{worker=\"{w}\"}} {}", st.get(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::dataplane::{Offload, Stats};
    use crate::ops::{LeaseInfo, Sample};

    fn sample() -> Sample {
        let w0 = Arc::new(Stats::default());
        w0.add(Counter::TunRxPackets, 3);
        w0.add(Counter::TunRxBytes, 252);
        w0.count_drop(DropReason::SpoofedSource);
        w0.add(Counter::TableUpdatesSeen, 5);
        Sample {
            ready: true,
            lease: Some(LeaseInfo {
                subnet: "100.96.1.0/24".into(),
                public_ip: "192.0.2.1".parse().expect("literal"),
                public_ipv6: None,
                vtep_mac: None,
                backend: "udp".into(),
                tun: Some("ringlay0".into()),
            }),
            workers: vec![w0, Arc::new(Stats::default())],
            offload: Some(Offload::ALL),
            table: None,
            follow: None,
            kube: None,
            tun_tx_dropped: Some(7),
        }
    }

    #[test]
    fn renders_counters_per_worker_and_reason() {
        let text = render(&sample());
        for line in [
            "ringlay_ready 1",
            "ringlay_packets_total{worker=\"0\",direction=\"tun_rx\"} 3",
            "ringlay_bytes_total{worker=\"0\",direction=\"tun_rx\"} 252",
            "ringlay_drops_total{worker=\"0\",reason=\"spoofed_source\"} 1",
            "ringlay_drops_total{worker=\"1\",reason=\"spoofed_source\"} 0",
            "ringlay_offload_enabled{feature=\"gro\"} 1",
            "ringlay_table_updates_seen_total{worker=\"0\"} 5",
            "ringlay_table_updates_seen_total{worker=\"1\"} 0",
            "ringlay_tun_tx_dropped_total 7",
            "ringlay_lease_info{subnet=\"100.96.1.0/24\",public_ip=\"192.0.2.1\",public_ipv6=\"\",backend=\"udp\",vtep_mac=\"\"} 1",
            "# TYPE ringlay_drops_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn every_sample_line_is_well_formed() {
        for line in render(&sample()).lines() {
            if line.starts_with('#') {
                continue;
            }
            let (name, value) = line.rsplit_once(' ').expect("name value");
            assert!(name.starts_with("ringlay_"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let metric = name.split('{').next().expect("a name");
            assert!(
                metric
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{line}"
            );
        }
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
