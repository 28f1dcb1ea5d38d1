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
pub mod stats;
pub mod worker;

use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::encap::Local;
use crate::sys::eventfd::EventFd;
use crate::table::Table;

pub use stats::{Counter, Report, Stats};
pub use worker::Tunnel;

/// What every worker shares.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The tunnel format.
    pub tunnel: Tunnel,
    /// The UDP port peers listen on.
    pub port: u16,
    /// Our lease, VNI and VTEP MAC.
    pub local: Local,
    /// Our overlay address: the source of ICMP errors.
    pub gateway: Ipv4Addr,
    /// Receive with multishot recvmsg into a provided-buffer ring.
    pub multishot: bool,
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
    pub fn start(io: Vec<WorkerIo>, settings: Settings, table: &Table) -> io::Result<Dataplane> {
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
                gateway: settings.gateway,
                table: table.reader(),
                stats: stats.clone(),
                stop: stop.clone(),
                multishot: settings.multishot,
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
    pub fn stop(self) -> Vec<(usize, io::Error)> {
        for (stop, _) in &self.workers {
            // A worker that cannot be woken has already returned (its ring broke);
            // it is joined below either way.
            let _ = stop.notify();
        }
        let mut errors = Vec::new();
        for (i, (_, handle)) in self.workers.into_iter().enumerate() {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push((i, e)),
                Err(_) => errors.push((i, io::Error::other("worker panicked"))),
            }
        }
        errors
    }
}
