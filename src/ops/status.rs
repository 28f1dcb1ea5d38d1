//! `ringlay status`, both ends of it: the document the daemon serves, its human
//! rendering (fits 80 columns), the daemon's unix socket (where it lives by
//! default, binding it, serving it) and the client that reads it.
//!
//! Invariants: the socket is bound mode 0600 in a directory of mode 0700, so only
//! root can read it; a connection gets one JSON document and is closed; the
//! daemon removes the socket on exit (and the directory, if it created it and it
//! is empty); two daemons in two network namespaces never share a default path.
//! The HTTP endpoints, served by the same thread, are in [`super::http`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::{unix_seconds, LeaseInfo, Sample, State, CLIENT_TIMEOUT};
use crate::dataplane::peers::PeerTraffic;
use crate::dataplane::Counter;
use crate::drop_reason::DropReason;
use crate::{Error, Result};

/// The directory of the default sockets (shared by every network namespace: `ip
/// netns exec` gives a command its own mount namespace but leaves `/run` as it is).
const RUN_DIR: &str = "/run/ringlay";

/// Where the daemon listens by default for the TUN device `tun`:
/// `/run/ringlay/<tun>-netns<inode>.sock`, with the inode of this process's
/// network namespace (`/proc/self/ns/net`). Every namespace has its own TUN
/// `ringlay0`, so the device name alone would let two daemons of one machine
/// fight over one path; `ringlay status` run in the daemon's namespace sees the
/// same inode, and so finds that daemon without flags. Without `/proc`:
/// `/run/ringlay/<tun>.sock`.
pub fn default_socket(tun: &str) -> PathBuf {
    match netns_inode() {
        Some(ino) => Path::new(RUN_DIR).join(format!("{tun}-netns{ino}.sock")),
        None => Path::new(RUN_DIR).join(format!("{tun}.sock")),
    }
}

/// The inode of this process's network namespace: the same for every process in
/// it, and never another live namespace's (namespaces live on one nsfs).
fn netns_inode() -> Option<u64> {
    std::fs::metadata("/proc/self/ns/net").ok().map(|m| m.ino())
}

/// One peer of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer's subnets (see [`super::subnets`]).
    pub subnet: String,
    /// Its public IP (`0.0.0.0` for an IPv6-only peer).
    pub public_ip: String,
    /// Its public IPv6 address, if it has one.
    #[serde(default)]
    pub public_ipv6: Option<String>,
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
    /// Packets the kernel dropped because a TUN queue was full (the device's
    /// `tx_dropped`; tunnel backends only).
    #[serde(default)]
    pub tun_tx_dropped: Option<u64>,
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
                                t += w.peers.get(p.public_ip.into());
                                if let Some(v6) = p.public_ipv6 {
                                    t += w.peers.get(v6.into());
                                }
                            }
                            t
                        });
                        PeerStatus {
                            subnet: super::subnets(&p.key),
                            public_ip: p.public_ip.to_string(),
                            public_ipv6: p.public_ipv6.map(|a| a.to_string()),
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
            tun_tx_dropped: s.tun_tx_dropped,
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
        self.render_lease(&mut o);
        self.render_traffic(&mut o);
        self.render_peers(&mut o);
        self.render_drops(&mut o);
        o
    }

    /// Readiness, our lease, and the TUN device.
    fn render_lease(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "ringlay {}: {}",
            self.version,
            if self.ready { "ready" } else { "starting" }
        );
        match &self.lease {
            Some(l) => {
                // An IPv6-only lease's PublicIP is 0.0.0.0: its IPv6 address
                // is the one to show first.
                let (first, also) = match l.public_ipv6 {
                    Some(v6) if l.public_ip.is_unspecified() => (v6.to_string(), None),
                    v6 => (l.public_ip.to_string(), v6),
                };
                let _ = writeln!(
                    o,
                    "lease     {} via {} ({}{})",
                    l.subnet,
                    first,
                    l.backend,
                    l.vtep_mac
                        .as_deref()
                        .map(|m| format!(", VtepMAC {m}"))
                        .unwrap_or_default()
                );
                if let Some(v6) = also {
                    let _ = writeln!(o, "          and via {v6} (IPv6)");
                }
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
            if let Some(n) = self.tun_tx_dropped {
                let _ = writeln!(
                    o,
                    "          {n} packets dropped at the TUN queue (not read in time)"
                );
            }
        }
    }

    /// What went to and came from the peers.
    fn render_traffic(&self, o: &mut String) {
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
    }

    /// The table, a line per peer.
    fn render_peers(&self, o: &mut String) {
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
                match (&p.public_ipv6, p.public_ip.as_str()) {
                    (Some(v6), "0.0.0.0") => v6.as_str(),
                    _ => p.public_ip.as_str(),
                },
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
    }

    /// Drops by reason and errors by kind.
    fn render_drops(&self, o: &mut String) {
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
    }
}

/// The daemon's bound status socket: dropping it removes the socket, and its
/// directory if [`bind`] created it and it is empty.
#[derive(Debug)]
pub struct Socket {
    path: PathBuf,
    /// The socket's directory, if we created it.
    created_dir: Option<PathBuf>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(d) = &self.created_dir {
            // Only if empty: another daemon's socket may live there.
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Binds the status socket at `path`, mode 0600 in a directory of mode 0700 it
/// creates if missing (and then removes again on drop), and returns it with the
/// listener [`serve`] takes. A socket another live ringlay answers on is left
/// alone (with a warning, and `None`: no status socket for us); a stale one is
/// replaced.
pub fn bind(path: &Path) -> Result<Option<(Socket, std::os::unix::net::UnixListener)>> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        tracing::warn!(
            socket = %path.display(),
            "another ringlay answers on this status socket: running without one (give --status-socket)"
        );
        return Ok(None);
    }
    let fail = |e| Error::setup(format!("creating the status socket {}", path.display()), e);
    let mut created = None;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Created 0700 (less the umask) rather than chmod-ed after: never wider.
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {
                created = Some(dir.to_path_buf());
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(fail)?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(e)),
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(fail(e)),
        _ => {}
    }
    // Bound 0600 from the start (not chmod-ed after), then made exactly 0600
    // whatever the umask took away.
    let listener = crate::sys::socket::unix_listener(path, 0o600).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    let socket = Socket {
        path: path.to_path_buf(),
        created_dir: created,
    };
    Ok(Some((socket, listener)))
}

/// Answers every connection to `listener` with the status of `state`, until the
/// task is dropped. Runs on the endpoint thread's runtime.
pub async fn serve(listener: std::os::unix::net::UnixListener, state: Arc<State>) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("serving the status socket: {e}");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let doc = Status::of(&state.sample());
                    let mut json = serde_json::to_vec(&doc).unwrap_or_default();
                    json.push(b'\n');
                    let _ = tokio::time::timeout(CLIENT_TIMEOUT, stream.write_all(&json)).await;
                });
            }
            Err(e) => {
                tracing::debug!("accepting a status connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads the status from the daemon's socket at `path` (the `ringlay status` client).
pub fn fetch(path: &Path) -> io::Result<Status> {
    use std::io::Read;
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf)?;
    serde_json::from_slice(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
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
                public_ipv6: Some("2001:db8::1".parse().expect("literal")),
                vtep_mac: Some("0e:00:00:00:01:00".into()),
                backend: "vxlan".into(),
                tun: Some("ringlay0".into()),
            }),
            lease_expires: None,
            workers: 2,
            offloads: vec!["tso".into(), "gro".into()],
            tun_tx_dropped: Some(0),
            table_generation: 3,
            table_updated: Some(1.0),
            table_updates_seen: 2,
            peers: vec![PeerStatus {
                subnet: "100.96.200.0/24".into(),
                public_ip: "198.51.100.200".into(),
                public_ipv6: None,
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
        assert!(text.contains("via 192.0.2.1 (vxlan"), "{text}");
        assert!(text.contains("and via 2001:db8::1 (IPv6)"), "{text}");
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
    fn default_socket_is_per_network_namespace() {
        let ino = std::fs::metadata("/proc/self/ns/net")
            .expect("/proc is mounted")
            .ino();
        assert_eq!(
            default_socket("ringlay0"),
            PathBuf::from(format!("/run/ringlay/ringlay0-netns{ino}.sock"))
        );
    }

    #[test]
    fn bound_socket_is_root_only_and_removed_on_drop() {
        let dir = std::env::temp_dir().join(format!("ringlay-status-{}", std::process::id()));
        let path = dir.join("s.sock");
        let (socket, _listener) = bind(&path).expect("binds").expect("no other daemon");
        let mode = |p: &Path| std::fs::metadata(p).expect("exists").mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        drop(socket);
        assert!(!path.exists() && !dir.exists());
    }

    #[test]
    fn human_bytes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
