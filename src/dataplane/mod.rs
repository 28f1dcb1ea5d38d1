//! The forwarding engine: one worker thread per TUN queue, each with its own UDP
//! sockets and io_uring (see [`worker`] for the loop).
//!
//! The control plane reaches the workers only through the [`Table`]: it publishes
//! snapshots, the workers load one per batch. Stopping is an eventfd per worker,
//! which wakes the worker's ring at once.
//!
//! [`Table`]: crate::table::Table

pub mod icmp;
pub mod offload;
pub mod peers;
pub mod route;
pub mod stats;
pub mod worker;

use std::fmt;
use std::io;
use std::net::UdpSocket;
use std::os::fd::OwnedFd;
use std::str::FromStr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::encap::Local;
use crate::sys::eventfd::EventFd;
use crate::table::Table;

pub use crate::encap::Tunnel;
pub use route::Underlays;
pub use stats::{Counter, Report, Stats};

/// The offloads the workers use; each can be switched on its own so that its
/// gain can be measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offload {
    /// TUN segmentation offload: the TUN queues are opened with `IFF_VNET_HDR`
    /// and `TUNSETOFFLOAD`, reads return TCP/UDP super-packets of up to 64 KiB,
    /// cut into segments in userspace ([`offload::Split`]).
    pub tso: bool,
    /// UDP GSO: the segments of one super-packet leave in one `sendmsg` with
    /// `UDP_SEGMENT` (meaningful with `tso`).
    pub gso: bool,
    /// UDP GRO: receives return trains of datagrams (`UDP_GRO`), and the TCP
    /// segments in them are coalesced into super-packets for the TUN
    /// ([`offload::Coalescer`]).
    pub gro: bool,
}

impl Offload {
    /// Every offload.
    pub const ALL: Offload = Offload {
        tso: true,
        gso: true,
        gro: true,
    };
    /// None: one packet per read, send, receive and write.
    pub const OFF: Offload = Offload {
        tso: false,
        gso: false,
        gro: false,
    };

    /// Whether the TUN queues carry a `virtio_net_hdr` before every packet.
    pub const fn vnet_hdr(self) -> bool {
        self.tso || self.gro
    }
}

impl fmt::Display for Offload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on: Vec<&str> = [(self.tso, "tso"), (self.gso, "gso"), (self.gro, "gro")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        if on.is_empty() {
            f.write_str("off")
        } else {
            f.write_str(&on.join(","))
        }
    }
}

impl FromStr for Offload {
    type Err = String;

    /// `all`, `off`, or a comma-separated list of `tso`, `gso`, `gro`.
    fn from_str(s: &str) -> Result<Offload, String> {
        let mut o = Offload::OFF;
        for part in s.split(',').map(str::trim) {
            match part {
                "all" => o = Offload::ALL,
                "off" | "none" => {}
                "tso" => o.tso = true,
                "gso" => o.gso = true,
                "gro" => o.gro = true,
                other => {
                    return Err(format!(
                        "unknown offload {other:?}: use all, off, or a comma-separated list of tso, gso, gro"
                    ))
                }
            }
        }
        Ok(o)
    }
}

/// Packets each TUN queue holds by default (`--tun-queue-len`): the kernel's
/// own default for a TUN device. Lengths from 128 to 8000 made no difference
/// beyond noise to 64-byte loss, throughput or latency (README, Benchmark).
pub const DEFAULT_TUN_QUEUE_LEN: u32 = 500;

/// How the workers read their TUN queues (`--tun-read`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TunRead {
    /// A multishot io_uring read where the kernel has one (Linux 6.7), else
    /// [`TunRead::Poll`].
    #[default]
    Auto,
    /// An io_uring poll, then a `read` syscall per packet.
    Poll,
}

impl fmt::Display for TunRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TunRead::Auto => "auto",
            TunRead::Poll => "poll",
        })
    }
}

impl FromStr for TunRead {
    type Err = String;

    fn from_str(s: &str) -> Result<TunRead, String> {
        match s {
            "auto" => Ok(TunRead::Auto),
            "poll" => Ok(TunRead::Poll),
            other => Err(format!("`{other}`: expected `auto` or `poll`")),
        }
    }
}

/// What every worker is configured with (the same for all of them).
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    /// The tunnel format.
    pub tunnel: Tunnel,
    /// The UDP port peers listen on.
    pub port: u16,
    /// Our lease, VNI and VTEP MAC.
    pub local: Local,
    /// Our overlay addresses: the sources of ICMP errors.
    pub gateways: icmp::Gateways,
    /// The underlay families we tunnel over. The sockets are IPv6 exactly when
    /// this says IPv6 (and then dual-stack if it says IPv4 too).
    pub underlays: Underlays,
    /// Receive with multishot recvmsg into a provided-buffer ring.
    pub multishot: bool,
    /// Read the TUN queues with a multishot io_uring read into the TX slots
    /// (Linux 6.7); otherwise a poll and plain reads.
    pub tun_read_multi: bool,
    /// The offloads in use (the TUN queues must have been opened to match).
    pub offload: Offload,
    /// The TUN device's MTU: no packet written to it without segmentation is
    /// longer.
    pub mtu: u32,
    /// How long a worker with recent traffic spins for more before it sleeps
    /// (zero: never).
    pub busy_poll: std::time::Duration,
}

/// One worker's file descriptors.
pub struct WorkerIo {
    /// Its TUN queue.
    pub tun: OwnedFd,
    /// Its socket in the receive group on the backend port.
    pub rx: UdpSocket,
    /// Its sending socket (its own source port).
    pub tx: UdpSocket,
    /// The CPU to pin it to, if any.
    pub cpu: Option<usize>,
}

/// Running workers.
pub struct Dataplane {
    workers: Vec<(Arc<EventFd>, JoinHandle<io::Result<()>>)>,
    stats: Vec<Arc<Stats>>,
}

impl Dataplane {
    /// Starts one worker per [`WorkerIo`].
    pub fn start(
        io: Vec<WorkerIo>,
        settings: WorkerConfig,
        table: &Table,
    ) -> io::Result<Dataplane> {
        let mut dp = Dataplane {
            workers: Vec::new(),
            stats: Vec::new(),
        };
        for (index, w) in io.into_iter().enumerate() {
            let stop = Arc::new(EventFd::new()?);
            let stats = Arc::new(Stats::default());
            let params = worker::WorkerParams {
                index,
                cpu: w.cpu,
                tun: w.tun,
                rx: w.rx,
                tx: w.tx,
                tunnel: settings.tunnel,
                port: settings.port,
                local: settings.local,
                gateways: settings.gateways,
                underlays: settings.underlays,
                table: table.reader(),
                stats: stats.clone(),
                stop: stop.clone(),
                multishot: settings.multishot,
                tun_read_multi: settings.tun_read_multi,
                offload: settings.offload,
                mtu: settings.mtu,
                busy_poll: settings.busy_poll,
            };
            let handle = std::thread::Builder::new()
                .name(format!("ringlay-w{index}"))
                .spawn(move || worker::run(params))?;
            dp.workers.push((stop, handle));
            dp.stats.push(stats);
        }
        Ok(dp)
    }

    /// Every worker's counters, in worker order.
    pub fn stats(&self) -> &[Arc<Stats>] {
        &self.stats
    }

    /// The first worker that has exited (none should while running), if any.
    pub fn exited(&self) -> Option<usize> {
        self.workers.iter().position(|(_, h)| h.is_finished())
    }

    /// Stops every worker and waits for them; returns each one's error, if any.
    /// Afterwards there is nothing left for `Drop` to do.
    pub fn stop(mut self) -> Vec<(usize, io::Error)> {
        self.stop_and_join()
    }

    /// Wakes every worker's stop event, then joins them all (leaving none behind).
    fn stop_and_join(&mut self) -> Vec<(usize, io::Error)> {
        for (stop, _) in &self.workers {
            // A worker that cannot be woken has already returned (its ring broke);
            // it is joined below either way.
            let _ = stop.notify();
        }
        let mut errors = Vec::new();
        for (i, (_, handle)) in self.workers.drain(..).enumerate() {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push((i, e)),
                Err(_) => errors.push((i, io::Error::other("worker panicked"))),
            }
        }
        errors
    }
}

impl Drop for Dataplane {
    /// Stops and joins the workers still running, so that a caller that returns
    /// early on an error leaves no thread behind. After [`Dataplane::stop`] there
    /// are none. Errors here have no one to go to: they are logged.
    fn drop(&mut self) {
        for (i, e) in self.stop_and_join() {
            tracing::warn!(worker = i, "worker ended with an error: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_lists_parse_and_print() {
        assert_eq!("all".parse(), Ok(Offload::ALL));
        assert_eq!("off".parse(), Ok(Offload::OFF));
        let tso_gso: Offload = "tso, gso".parse().expect("valid");
        assert_eq!(
            tso_gso,
            Offload {
                tso: true,
                gso: true,
                gro: false
            }
        );
        assert_eq!(tso_gso.to_string(), "tso,gso");
        assert_eq!(Offload::OFF.to_string(), "off");
        assert!(!Offload::OFF.vnet_hdr());
        assert!("gro".parse::<Offload>().expect("valid").vnet_hdr());
        let err = "tso,lro".parse::<Offload>().expect_err("unknown");
        assert!(
            err.contains("\"lro\"") && err.contains("tso, gso, gro"),
            "{err}"
        );
    }
}
