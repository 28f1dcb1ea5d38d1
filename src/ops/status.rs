//! `ringlay status`: the document the daemon serves on its unix socket, and its
//! human rendering (fits 80 columns).
//!
//! The socket is created mode 0600 by the daemon (root), so only root can read
//! it; a connection gets one JSON document and is closed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{unix_seconds, LeaseInfo, Sample};
use crate::dataplane::peers::PeerTraffic;
use crate::dataplane::Counter;
use crate::drop_reason::DropReason;

/// Where the daemon listens by default for the TUN device `tun`.
pub fn default_socket(tun: &str) -> PathBuf {
    Path::new("/run/ringlay").join(format!("{tun}.sock"))
}

/// One peer of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer's subnets (see [`super::subnets`]).
    pub subnet: String,
    /// Its public IP.
    pub public_ip: String,
    /// Its VTEP MAC (vxlan), if any.
    pub vtep_mac: Option<String>,
    /// Its backend type.
    pub backend: String,
    /// Datagrams sent to it (`None`: not counted per peer, as with host-gw).
    pub tx_packets: Option<u64>,
    /// Bytes sent to it.
    pub tx_bytes: Option<u64>,
    /// Packets received from it.
    pub rx_packets: Option<u64>,
    /// Bytes received from it.
    pub rx_bytes: Option<u64>,
}

/// Totals over every worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// Packets read from the TUN.
    pub tun_rx_packets: u64,
    /// Bytes read from the TUN.
    pub tun_rx_bytes: u64,
    /// Datagrams sent to peers.
    pub tunnel_tx_packets: u64,
    /// Bytes sent to peers.
    pub tunnel_tx_bytes: u64,
    /// Datagrams received from peers.
    pub tunnel_rx_packets: u64,
    /// Bytes received from peers.
    pub tunnel_rx_bytes: u64,
    /// Packets written to the TUN.
    pub tun_tx_packets: u64,
    /// Bytes written to the TUN.
    pub tun_tx_bytes: u64,
}

/// What `ringlay status --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// ringlay's version.
    pub version: String,
    /// Whether the daemon is ready.
    pub ready: bool,
    /// Our lease.
    pub lease: Option<LeaseInfo>,
    /// When our etcd lease expires (Unix seconds), with etcd.
    pub lease_expires: Option<u64>,
    /// Worker threads.
    pub workers: usize,
    /// Offloads in use (`tso`, `gso`, `gro`).
    pub offloads: Vec<String>,
    /// The table's generation.
    pub table_generation: u64,
    /// When the table was published (Unix seconds).
    pub table_updated: Option<f64>,
    /// Newer tables the workers switched to while running, summed over them.
    #[serde(default)]
    pub table_updates_seen: u64,
    /// Every peer.
    pub peers: Vec<PeerStatus>,
    /// Totals over every worker.
    pub traffic: Traffic,
    /// Drops by reason (non-zero ones), summed over the workers.
    pub drops: BTreeMap<String, u64>,
    /// Data-path errors by kind (non-zero ones), summed over the workers.
    pub errors: BTreeMap<String, u64>,
}

impl Status {
    /// The status of `s`.
    pub fn of(s: &Sample) -> Status {
        let sum = |c: Counter| s.workers.iter().map(|w| w.get(c)).sum::<u64>();
        let mut drops = BTreeMap::new();
        for d in DropReason::ALL {
            let n = s.workers.iter().map(|w| w.drops(d)).sum::<u64>();
            if n > 0 {
                drops.insert(d.name().to_owned(), n);
            }
        }
        let mut errors = BTreeMap::new();
        for c in [
            Counter::SendErrors,
            Counter::RecvErrors,
            Counter::TunReadErrors,
            Counter::TunWriteErrors,
            Counter::NoSendBuffer,
        ] {
            let n = sum(c);
            if n > 0 {
                errors.insert(c.name().to_owned(), n);
            }
        }
        let (peers, table_generation, table_updated) = match &s.table {
            Some((snap, at)) => (
                snap.peers()
                    .iter()
                    .map(|p| {
                        // With workers (the tunnel backends), each counts per peer.
                        let t = (!s.workers.is_empty()).then(|| {
                            let mut t = PeerTraffic::default();
                            for w in &s.workers {
                                t += w.peers.get(p.public_ip);
                            }
                            t
                        });
                        PeerStatus {
                            subnet: super::subnets(&p.key),
                            public_ip: p.public_ip.to_string(),
                            vtep_mac: p.vtep_mac.map(|m| m.to_string()),
                            backend: p.backend.as_str().to_owned(),
                            tx_packets: t.map(|t| t.tx_packets),
                            tx_bytes: t.map(|t| t.tx_bytes),
                            rx_packets: t.map(|t| t.rx_packets),
                            rx_bytes: t.map(|t| t.rx_bytes),
                        }
                    })
                    .collect(),
                snap.generation(),
                at.map(unix_seconds),
            ),
            None => (Vec::new(), 0, None),
        };
        let offloads = s
            .offload
            .map(|o| {
                [(o.tso, "tso"), (o.gso, "gso"), (o.gro, "gro")]
                    .into_iter()
                    .filter(|&(on, _)| on)
                    .map(|(_, n)| n.to_owned())
                    .collect()
            })
            .unwrap_or_default();
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ready: s.ready,
            lease: s.lease.clone(),
            lease_expires: s
                .follow
                .as_ref()
                .map(|f| {
                    f.lease_expires_unix
                        .load(std::sync::atomic::Ordering::Relaxed)
                })
                .filter(|&t| t > 0),
            workers: s.workers.len(),
            offloads,
            table_generation,
            table_updated,
            table_updates_seen: sum(Counter::TableUpdatesSeen),
            peers,
            traffic: Traffic {
                tun_rx_packets: sum(Counter::TunRxPackets),
                tun_rx_bytes: sum(Counter::TunRxBytes),
                tunnel_tx_packets: sum(Counter::TunnelTxPackets),
                tunnel_tx_bytes: sum(Counter::TunnelTxBytes),
                tunnel_rx_packets: sum(Counter::TunnelRxPackets),
                tunnel_rx_bytes: sum(Counter::TunnelRxBytes),
                tun_tx_packets: sum(Counter::TunTxPackets),
                tun_tx_bytes: sum(Counter::TunTxBytes),
            },
            drops,
            errors,
        }
    }

    /// The human view: at most 80 columns wide.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(1024);
        let _ = writeln!(
            o,
            "ringlay {}: {}",
            self.version,
            if self.ready { "ready" } else { "starting" }
        );
        match &self.lease {
            Some(l) => {
                let _ = writeln!(
                    o,
                    "lease     {} via {} ({}{})",
                    l.subnet,
                    l.public_ip,
                    l.backend,
                    l.vtep_mac
                        .as_deref()
                        .map(|m| format!(", VtepMAC {m}"))
                        .unwrap_or_default()
                );
            }
            None => o.push_str("lease     (none yet)\n"),
        }
        if let Some(t) = self.lease_expires {
            let left = t as f64 - unix_seconds(std::time::SystemTime::now());
            let _ = writeln!(o, "expires   in {:.1} h (etcd)", left / 3600.0);
        }
        if let Some(tun) = self.lease.as_ref().and_then(|l| l.tun.as_deref()) {
            let off = if self.offloads.is_empty() {
                "off".to_owned()
            } else {
                self.offloads.join(",")
            };
            let _ = writeln!(
                o,
                "device    {tun}, {} worker{}, offloads {off}",
                self.workers,
                if self.workers == 1 { "" } else { "s" }
            );
        }
        let t = &self.traffic;
        let _ = writeln!(
            o,
            "sent      {} packets, {} to peers",
            t.tunnel_tx_packets,
            bytes(t.tunnel_tx_bytes)
        );
        let _ = writeln!(
            o,
            "received  {} packets, {} from peers",
            t.tunnel_rx_packets,
            bytes(t.tunnel_rx_bytes)
        );
        let _ = writeln!(
            o,
            "\npeers ({}, table generation {}, workers switched tables {} times):",
            self.peers.len(),
            self.table_generation,
            self.table_updates_seen
        );
        let _ = writeln!(
            o,
            "{:<19} {:<15} {:<17} {:<7} {:>8} {:>8}",
            "SUBNET", "PUBLIC IP", "VTEP MAC", "BACKEND", "TX", "RX"
        );
        for p in &self.peers {
            let cell = |pk: Option<u64>, by: Option<u64>| match (pk, by) {
                (Some(_), Some(b)) => bytes(b),
                _ => "-".to_owned(),
            };
            let _ = writeln!(
                o,
                "{:<19} {:<15} {:<17} {:<7} {:>8} {:>8}",
                // The IPv6 subnet, if any, is in --json: one family fits 80 columns.
                p.subnet.split(',').next().unwrap_or_default(),
                p.public_ip,
                p.vtep_mac.as_deref().unwrap_or("-"),
                p.backend,
                cell(p.tx_packets, p.tx_bytes),
                cell(p.rx_packets, p.rx_bytes)
            );
        }
        if self
            .peers
            .iter()
            .any(|p| p.tx_packets.is_none() || p.rx_packets.is_none())
        {
            o.push_str("(TX/RX per peer: counted by the tunnel workers only, shown as -)\n");
        }
        if self.drops.is_empty() {
            o.push_str("\ndrops: none\n");
        } else {
            o.push_str("\ndrops:\n");
            for (k, v) in &self.drops {
                let _ = writeln!(o, "  {k:<24} {v}");
            }
        }
        if !self.errors.is_empty() {
            o.push_str("errors:\n");
            for (k, v) in &self.errors {
                let _ = writeln!(o, "  {k:<24} {v}");
            }
        }
        o
    }
}

/// `n` bytes in a short human unit.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status {
        Status {
            version: "0.1.0".into(),
            ready: true,
            lease: Some(LeaseInfo {
                subnet: "100.96.1.0/24".into(),
                public_ip: "192.0.2.1".parse().expect("literal"),
                vtep_mac: Some("0e:00:00:00:01:00".into()),
                backend: "vxlan".into(),
                tun: Some("ringlay0".into()),
            }),
            lease_expires: None,
            workers: 2,
            offloads: vec!["tso".into(), "gro".into()],
            table_generation: 3,
            table_updated: Some(1.0),
            table_updates_seen: 2,
            peers: vec![PeerStatus {
                subnet: "100.96.200.0/24".into(),
                public_ip: "198.51.100.200".into(),
                vtep_mac: Some("0e:00:00:00:c8:00".into()),
                backend: "vxlan".into(),
                tx_packets: None,
                tx_bytes: None,
                rx_packets: None,
                rx_bytes: None,
            }],
            traffic: Traffic::default(),
            drops: [("spoofed_source".to_owned(), 7)].into_iter().collect(),
            errors: BTreeMap::new(),
        }
    }

    #[test]
    fn fits_80_columns() {
        let text = status().render();
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line:?} is too wide");
        }
        assert!(text.contains("100.96.200.0/24"), "{text}");
        assert!(text.contains("spoofed_source"), "{text}");
        assert!(
            text.contains("table generation 3, workers switched tables 2 times"),
            "{text}"
        );
    }

    #[test]
    fn json_round_trip() {
        let s = status();
        let json = serde_json::to_string(&s).expect("serializes");
        assert_eq!(serde_json::from_str::<Status>(&json).expect("parses"), s);
    }

    #[test]
    fn human_bytes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
