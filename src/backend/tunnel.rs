//! The tunnel backends, udp and vxlan: the host set-up flanneld would do for its
//! device, done for ringlay's userspace data path, and the data path itself.
//!
//! [`TunnelBackend::start`], in order (any failure is one clear error, and what was
//! already set up is undone by dropping it):
//!
//! 1. probe io_uring; create the TUN device with one queue per worker, MTU =
//!    underlay MTU − the backend's overhead over the underlay's family
//!    ([`super::mtu`]), addresses = the lease's first address of each family with
//!    the *network's* prefix, so the kernel routes the whole network through it;
//!    `accept_local` for the ICMP errors the workers write back;
//! 2. bind one socket per worker in a SO_REUSEPORT receive group on the backend
//!    port (steered by source port), and one sending socket per worker: IPv4
//!    sockets on a node that tunnels over IPv4 only, IPv6 ones (taking IPv4 too
//!    on a dual-stack node) on a node whose lease has a `PublicIPv6`;
//! 3. switch on the offloads the kernel has, of those asked for;
//! 4. start the workers ([`Dataplane`]) on the published table;
//! 5. with `DirectRouting`, route the peers on this L2 segment directly
//!    ([`RouteSync`]), after the table holds them.
//!
//! Dropping a [`TunnelBackend`] deletes the direct routes, stops the workers and
//! closes the TUN queues — the kernel then removes the device, its address and
//! route — and logs the final counters.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;

use ipnet::{Ipv4Net, Ipv6Net};

use super::routes::{Mode, RouteSync};
use super::{mtu, Underlay};
use crate::config::{Backend, Lease, NetworkConfig};
use crate::control::LocalLease;
use crate::dataplane::icmp::Gateways;
use crate::dataplane::{
    Dataplane, Offload, Report, TunRead, Tunnel, Underlays, WorkerConfig, WorkerIo,
};
use crate::encap::Local;
use crate::sys::uring::Features;
use crate::sys::{cpu, netdev, socket, tun};
use crate::table::Table;
use crate::{Error, Result};

/// Socket buffer size requested per worker socket.
const SOCKET_BUFFER: usize = 4 << 20;

/// What the operator chose for the tunnel's host set-up.
#[derive(Debug, Clone)]
pub struct TunnelOptions {
    /// The TUN device's name.
    pub tun_name: String,
    /// Worker count; `None`: one per CPU this process may run on.
    pub queues: Option<usize>,
    /// Pin worker `k` to the `k`-th CPU this process may run on.
    pub pin_workers: bool,
    /// The offloads to use, where the kernel has them.
    pub offload: Offload,
    /// How long a busy worker spins before it sleeps.
    pub busy_poll: std::time::Duration,
    /// How the workers read the TUN queues.
    pub tun_read: TunRead,
    /// Packets each TUN queue holds (the device's txqueuelen).
    pub tun_queue_len: u32,
}

/// A running tunnel backend: the TUN device, its workers and (with
/// `DirectRouting`) the direct routes.
pub struct TunnelBackend {
    routes: Option<RouteSync>,
    dataplane: Option<Dataplane>,
    tun_name: String,
    mtu: u32,
    offload: Offload,
}

/// Most workers started without `--queues`: one per allowed CPU up to this many.
/// Each holds about 2.3 MiB of packet memory; eight carry more than a node's
/// pods usually send, and a larger node that needs more says `--queues`.
pub const DEFAULT_QUEUES_MAX: usize = 8;

/// This host's overlay subnets, each with the network it lies in: the TUN's
/// addresses and routes. At least one family is there.
struct Overlay {
    v4: Option<(Ipv4Net, Ipv4Net)>,
    v6: Option<(Ipv6Net, Ipv6Net)>,
}

impl TunnelBackend {
    /// Sets the host up for `config`'s tunnel and starts forwarding on `table`,
    /// which must already hold `leases`.
    pub fn start(
        config: &NetworkConfig,
        local: &LocalLease,
        under: &Underlay,
        leases: &[Lease],
        table: &Table,
        opts: &TunnelOptions,
    ) -> Result<TunnelBackend> {
        let (tunnel, port, vni) = tunnel_of(&config.backend)?;
        let overlay = overlay(config, local)?;
        let underlays = Underlays {
            v4: !local.public_ip.is_unspecified(),
            v6: local.public_ipv6.is_some(),
        };
        let uring = probe_uring(opts.tun_read)?;
        if config.backend_defaulted {
            tracing::info!("the network config names no Backend: using udp, as flannel does");
        }
        if local.vtep_mac_derived && tunnel == Tunnel::Vxlan {
            tracing::info!(vtep_mac = %local.vtep_mac, "our lease has no VtepMAC: derived one from {}", local.public_ip);
        }
        let mtu = mtu::tunnel_mtu(&config.backend, under.mtu, underlays.v6);
        let cpus =
            cpu::allowed_cpus().map_err(|e| Error::setup("reading this process's CPU set", e))?;
        let queues = opts
            .queues
            .unwrap_or(cpus.len().clamp(1, DEFAULT_QUEUES_MAX));
        let device = create_tun(opts, queues, mtu)?;
        configure_tun(device.name(), &overlay)?;
        let sockets = bind_sockets(port, device.queues().len(), underlays)?;
        let offload = negotiate_offload(opts.offload, &device, &sockets);
        tracing::info!(asked = %opts.offload, in_use = %offload, "offloads");
        let settings = WorkerConfig {
            tunnel,
            port,
            local: Local {
                subnets: local.key,
                vni,
                vtep_mac: local.vtep_mac,
                vtep_mac_v6: local.vtep_mac_v6,
            },
            gateways: Gateways {
                v4: overlay.v4.map(|(_, subnet)| subnet.network()),
                v6: overlay.v6.map(|(_, subnet)| subnet.network()),
            },
            underlays,
            multishot: uring.buf_ring,
            tun_read_multi: uring.read_multi,
            offload,
            mtu,
            busy_poll: opts.busy_poll,
        };
        let tun_name = device.name().to_owned();
        let pin = |k: usize| opts.pin_workers.then(|| cpus.get(k).copied()).flatten();
        let io = device
            .into_queues()
            .into_iter()
            .zip(sockets)
            .enumerate()
            .map(|(k, (tun, (rx, tx)))| WorkerIo {
                tun,
                rx,
                tx,
                cpu: pin(k),
            })
            .collect();
        let dataplane = Dataplane::start(io, settings, table)
            .map_err(|e| Error::setup("starting the workers", e))?;
        let mut backend = TunnelBackend {
            routes: None,
            dataplane: Some(dataplane),
            tun_name,
            mtu,
            offload,
        };
        // After the table holds every peer: a direct route's peer is always in it.
        backend.routes = direct_routes(config, under, local, leases)?;
        Ok(backend)
    }

    /// The running workers.
    pub fn dataplane(&self) -> &Dataplane {
        self.dataplane
            .as_ref()
            .expect("the data path runs until the backend is dropped")
    }

    /// The direct routes (`DirectRouting`), if any.
    pub fn routes(&mut self) -> Option<&mut RouteSync> {
        self.routes.as_mut()
    }

    /// Whether it keeps direct routes (`DirectRouting`).
    pub fn has_routes(&self) -> bool {
        self.routes.is_some()
    }

    /// The TUN device's name.
    pub fn tun_name(&self) -> &str {
        &self.tun_name
    }

    /// The overlay MTU (the TUN device's).
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// The offloads in use.
    pub fn offload(&self) -> Offload {
        self.offload
    }
}

impl Drop for TunnelBackend {
    fn drop(&mut self) {
        // Before the TUN goes: until then the direct peers' traffic falls back to
        // the tunnel.
        drop(self.routes.take());
        let Some(dataplane) = self.dataplane.take() else {
            return;
        };
        let report = Report(dataplane.stats()).to_string();
        for (i, e) in dataplane.stop() {
            tracing::error!(worker = i, "worker failed: {e}");
        }
        for line in report.lines() {
            tracing::info!("final counters: {line}");
        }
        let tun = &self.tun_name;
        tracing::info!(tun = %tun, "stopped; {tun} and its route are removed");
    }
}

/// Refuses a config this backend cannot run (checked before a lease is written
/// for it).
pub fn check(config: &NetworkConfig) -> Result<()> {
    tunnel_of(&config.backend).map(drop)
}

/// The tunnel format, port and VNI of a tunnel backend.
fn tunnel_of(backend: &Backend) -> Result<(Tunnel, u16, u32)> {
    match *backend {
        Backend::Udp { port, .. } => Ok((Tunnel::Udp, port, 0)),
        Backend::Vxlan { vni, port, .. } => Ok((Tunnel::Vxlan, port, vni)),
        Backend::HostGw => Err(Error::invalid(
            "Backend.Type",
            "host-gw",
            "udp or vxlan: host-gw has no tunnel",
        )),
    }
}

/// This host's subnet of each family the network has. A family the network
/// enables must be in our lease: the TUN routes it.
fn overlay(config: &NetworkConfig, local: &LocalLease) -> Result<Overlay> {
    let missing = |family: &str| {
        Error::invalid(
            "subnets",
            local.key,
            format!("a lease with an {family} subnet for this host: the network enables {family}"),
        )
    };
    let v4 = match config.ipv4 {
        Some(c) => Some((c.network, local.key.v4.ok_or_else(|| missing("IPv4"))?)),
        None => None,
    };
    let v6 = match config.ipv6 {
        Some(c) => Some((c.network, local.key.v6.ok_or_else(|| missing("IPv6"))?)),
        None => None,
    };
    Ok(Overlay { v4, v6 })
}

/// Checks that io_uring has what the workers need, and says (and logs) how they
/// receive from the sockets and read the TUN queues.
fn probe_uring(tun_read: TunRead) -> Result<Features> {
    let mut features = Features::probe().map_err(|e| Error::setup("probing io_uring", e))?;
    if let Some(what) = features.missing() {
        return Err(Error::setup(
            "probing io_uring",
            std::io::Error::other(format!("this kernel lacks {what}")),
        ));
    }
    features.read_multi &= tun_read == TunRead::Auto;
    let tun_reads = match (features.read_multi, tun_read) {
        (true, _) => "a multishot read into the TX slots",
        (false, TunRead::Poll) => "a poll and a read syscall per packet (--tun-read poll)",
        (false, TunRead::Auto) => {
            "a poll and a read syscall per packet (no IORING_OP_READ_MULTISHOT before Linux 6.7)"
        }
    };
    let task_work = features.task_work.describe();
    tracing::info!(
        buffer_ring = features.buf_ring,
        cancel_any = features.cancel_any,
        read_multishot = features.read_multi,
        task_work = ?features.task_work,
        "io_uring: socket receives by {}; TUN reads by {tun_reads}; completion work {task_work}",
        if features.buf_ring {
            "multishot recvmsg into a provided buffer ring"
        } else {
            "single-shot recvmsg (no buffer rings before Linux 5.19)"
        }
    );
    Ok(features)
}

/// The TUN device with `queues` queues (one if the kernel refuses multi-queue),
/// with its MTU set. Dropping its queues removes it.
fn create_tun(opts: &TunnelOptions, queues: usize, mtu: u32) -> Result<tun::Tun> {
    let name = &opts.tun_name;
    let vnet = opts.offload.vnet_hdr();
    let device = match tun::Tun::create(name, queues, vnet) {
        Err(e) if queues > 1 && crate::sys::error::raw_os_error(&e) == Some(libc::EINVAL) => {
            tracing::warn!("the kernel refused a multi-queue TUN ({e}); running one worker");
            tun::Tun::create(name, 1, vnet)
        }
        other => other,
    }
    .map_err(|e| Error::setup(format!("creating TUN device {name}"), e))?;
    let name = device.name();
    netdev::set_mtu(name, mtu)
        .map_err(|e| Error::setup(format!("setting MTU {mtu} on {name}"), e))?;
    // Each queue's ring of packets for its worker is this long (the kernel
    // resizes the rings when it changes).
    let len = opts.tun_queue_len;
    netdev::set_tx_queue_len(name, len)
        .map_err(|e| Error::setup(format!("setting txqueuelen {len} on {name}"), e))?;
    Ok(device)
}

/// Gives the TUN device its addresses and brings it up.
fn configure_tun(name: &str, overlay: &Overlay) -> Result<()> {
    if let Some((network, subnet)) = overlay.v4 {
        let (gateway, prefix) = (subnet.network(), network.prefix_len());
        netdev::set_ipv4(name, gateway, prefix)
            .map_err(|e| Error::setup(format!("adding {gateway}/{prefix} to {name}"), e))?;
        // ICMP errors the workers write back come from this device's own
        // address; without accept_local the kernel drops them as martians.
        write_sysctl(&format!("net/ipv4/conf/{name}/accept_local"), "1")?;
    }
    if let Some((network, subnet)) = overlay.v6 {
        let (addr, prefix) = (subnet.network(), network.prefix_len());
        netdev::add_ipv6(name, addr, prefix)
            .map_err(|e| Error::setup(format!("adding {addr}/{prefix} to {name}"), e))?;
    }
    // No IPv6 link-local address: the kernel would otherwise send router and
    // multicast-listener solicitations into the tunnel.
    let _ = write_sysctl(&format!("net/ipv6/conf/{name}/addr_gen_mode"), "1");
    netdev::set_up(name).map_err(|e| Error::setup(format!("bringing {name} up"), e))
}

/// Switches on the offloads the kernel has, of those asked for, and says which
/// are in use: TUN segmentation offload (with UDP segmentation where the kernel
/// has it), UDP GSO for sends, UDP GRO on the receive sockets.
fn negotiate_offload(
    asked: Offload,
    device: &tun::Tun,
    sockets: &[(UdpSocket, UdpSocket)],
) -> Offload {
    let mut on = asked;
    if asked.tso {
        let tcp = tun::TUN_F_CSUM | tun::TUN_F_TSO4 | tun::TUN_F_TSO6;
        let queue = device.queues()[0].as_fd();
        let uso = tun::set_offload(queue, tcp | tun::TUN_F_USO4 | tun::TUN_F_USO6);
        if uso.is_err() {
            if let Err(e) = tun::set_offload(queue, tcp) {
                tracing::warn!("the TUN device refuses segmentation offload ({e}): tso off");
                on.tso = false;
            } else {
                tracing::info!(
                    "TUN offload: TCP segmentation (this kernel has no UDP segmentation for TUN)"
                );
            }
        }
    }
    if asked.gso && !matches!(socket::udp_segment_supported(), Ok(true)) {
        tracing::warn!("this kernel has no UDP_SEGMENT (Linux 4.18): gso off");
        on.gso = false;
    }
    if asked.gro {
        let set = sockets
            .iter()
            .try_for_each(|(rx, _)| socket::set_udp_gro(rx, true));
        if let Err(e) = set {
            tracing::warn!("cannot turn on UDP_GRO (Linux 5.0): gro off ({e})");
            for (rx, _) in sockets {
                let _ = socket::set_udp_gro(rx, false);
            }
            on.gro = false;
        }
    }
    on
}

/// Sets `/proc/sys/<key>` (in this network namespace).
fn write_sysctl(key: &str, value: &str) -> Result<()> {
    let path = std::path::Path::new("/proc/sys").join(key);
    std::fs::write(&path, value).map_err(|source| Error::Io {
        path,
        action: "set the sysctl",
        source,
    })
}

/// Per worker: a socket in the receive group on the backend port, and a sending
/// socket whose source port is the worker's number modulo `n` — so that the peer's
/// receive group (steered by source port) gives each of our workers' traffic its
/// own receiving worker. IPv6 sockets when `underlays` has IPv6 (dual-stack when
/// it has IPv4 too), else IPv4 ones: the workers send to addresses of that form
/// ([`Underlays`]).
fn bind_sockets(port: u16, n: usize, underlays: Underlays) -> Result<Vec<(UdpSocket, UdpSocket)>> {
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let rx = udp_socket(port, true, underlays)
            .map_err(|e| Error::setup(format!("binding UDP port {port}"), e))?;
        out.push((rx, sending_socket(k, n, underlays)?));
    }
    if n > 1 {
        socket::attach_reuseport_port_steering(&out[0].0, n as u32)
            .map_err(|e| Error::setup("attaching the receive steering program", e))?;
    }
    Ok(out)
}

/// One worker socket on `port` (0: an ephemeral one) of the family `underlays`
/// calls for.
fn udp_socket(port: u16, reuseport: bool, underlays: Underlays) -> std::io::Result<UdpSocket> {
    match (underlays.v4, underlays.v6) {
        (_, false) => {
            let any = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
            socket::udp_socket(any, reuseport, SOCKET_BUFFER)
        }
        (false, true) => {
            let any = SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), port);
            socket::udp_socket(any, reuseport, SOCKET_BUFFER)
        }
        (true, true) => socket::dual_stack_udp_socket(port, reuseport, SOCKET_BUFFER),
    }
}

/// A sending socket whose ephemeral port is `k` modulo `n` if a few tries find
/// one (ports are random), else any.
fn sending_socket(k: usize, n: usize, underlays: Underlays) -> Result<UdpSocket> {
    let mut fallback = None;
    for _ in 0..64 {
        let s = udp_socket(0, false, underlays)
            .map_err(|e| Error::setup("binding a sending socket", e))?;
        let p = s.local_addr().map(|a| a.port()).unwrap_or(0);
        if usize::from(p) % n == k {
            return Ok(s);
        }
        fallback.get_or_insert(s);
    }
    fallback
        .ok_or_else(|| Error::setup("binding a sending socket", std::io::Error::other("no port")))
}

/// With `DirectRouting`, the reconciler of the direct routes, synced once with
/// `leases`; `None` without.
fn direct_routes(
    config: &NetworkConfig,
    under: &Underlay,
    local: &LocalLease,
    leases: &[Lease],
) -> Result<Option<RouteSync>> {
    if !config.backend.direct_routing() {
        return Ok(None);
    }
    let mut r = RouteSync::new(Mode::DirectRouting, &under.iface, local.key, config)?;
    r.sync(leases, "start");
    tracing::info!(
        "DirectRouting: {} peer routes on {}, {} peer addresses through the tunnel",
        r.stats().routes,
        under.iface,
        r.stats().unreachable
    );
    Ok(Some(r))
}
