//! `ringlay run`: sets the host up as flanneld does, starts the workers, and runs
//! the control loop until SIGTERM or SIGINT.
//!
//! Start-up, in order (any failure is one clear error and nothing is left behind):
//!
//! 1. check CAP_NET_ADMIN; load and validate the static leases file, or (with etcd)
//!    wait for `<prefix>/config` in etcd;
//! 2. pick the public IP and underlay interface (`--public-ip`, `--iface`, else the
//!    interface of the default route), and this host's lease: by that IP in the
//!    static file, or acquired in etcd ([`control::etcd`]);
//! 3. create the TUN device with one queue per worker, MTU = underlay MTU − the
//!    backend's overhead (flannel's rules), address = the lease's first address with
//!    the *network's* prefix, so the kernel routes the whole network through it;
//! 4. publish the table of every other lease, bind one SO_REUSEPORT socket per
//!    worker, start the workers;
//! 5. with `DirectRouting`, route the peers on this L2 segment directly
//!    ([`control::routes`]), after the table holds them;
//! 6. with `--ip-masq`, install the masquerade table ([`ops::masq`]); write
//!    subnet.env; drop every capability but those still needed ([`privilege`]);
//!    mark the daemon ready (`/readyz`) and log `ready`.
//!
//! The operator endpoints ([`ops`]: metrics, health, the status socket) start
//! before step 1, so that `/readyz` answers 503 during start-up, and stop last.
//!
//! The host-gw backend has no tunnel: no io_uring, TUN or workers. Start-up is 1,
//! 2, a route `<subnet> via <PublicIP> dev <underlay>` per peer (IPv4 and IPv6),
//! then 6 with `FLANNEL_MTU` = the underlay MTU.
//!
//! Then: SIGHUP or an edit of the leases file re-reads it (a bad edit is logged and
//! the previous table stays in force); with etcd, every change the watch reports
//! becomes a new table, and our lease is renewed (if it is taken by another node,
//! the daemon exits with an error — see [`control::etcd`]); SIGUSR1 logs every
//! worker's counters;
//! SIGTERM/SIGINT mark the daemon not ready, delete the masquerade table, stop the
//! workers, close the TUN (the kernel removes the device,
//! its address and route with it) and log the counters a last time.
//!
//! Direct routes (host-gw, DirectRouting) follow the leases: on every reload the
//! routes the new leases drop are deleted *before* the new table is published and
//! the new ones added *after*, so a direct route always has its peer in the table
//! (see [`control::routes`]); every [`RECONCILE_INTERVAL`] they are reconciled
//! anyway, so a route deleted by hand comes back; SIGUSR1 and the exit log their
//! counters; on exit ringlay deletes the routes it installed, and only those.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::config::{Backend, NetworkConfig};
use crate::control::etcd::{self, Follower, View};
use crate::control::routes::{Mode, RECONCILE_INTERVAL};
use crate::control::{self, FileStamp, Lease, LocalLease, RouteSync, StaticLeases};
use crate::dataplane::{Dataplane, Offload, Report, Tunnel, WorkerConfig, WorkerIo};
use crate::encap::Local;
use crate::ops::{self, masq::IpMasq, LeaseInfo};
use crate::privilege;
use crate::sys::uring::Features;
use crate::sys::{caps, cpu, netdev, socket, tun};
use crate::table::Table;
use crate::{Error, Result};

/// Socket buffer size requested per worker socket.
const SOCKET_BUFFER: usize = 4 << 20;
/// How often the leases file is checked for edits.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Where the network config and the leases come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A static leases file (`--static-leases`).
    Static(PathBuf),
    /// etcd, as flanneld uses it (`--etcd-endpoints` and friends).
    Etcd(etcd::Settings),
}

/// What `ringlay run` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the config and the leases come from.
    pub source: Source,
    /// The public IP peers reach us at, if given.
    pub public_ip: Option<Ipv4Addr>,
    /// The underlay interface, if given.
    pub iface: Option<String>,
    /// The TUN device's name.
    pub tun_name: String,
    /// Worker count; `None`: one per CPU this process may run on.
    pub queues: Option<usize>,
    /// Where to write subnet.env.
    pub subnet_file: PathBuf,
    /// Pin worker `k` to the `k`-th CPU this process may run on.
    pub pin_workers: bool,
    /// The offloads to use, where the kernel has them.
    pub offload: Offload,
    /// The operator endpoints: metrics, health, the status socket.
    pub endpoints: ops::http::Endpoints,
    /// Masquerade traffic leaving the cluster network (flanneld's `--ip-masq`).
    pub ip_masq: bool,
}

/// Where this host sits on the underlay.
#[derive(Debug, Clone)]
struct Underlay {
    iface: String,
    public_ip: Ipv4Addr,
    mtu: u32,
}

fn underlay(opts: &Options) -> Result<Underlay> {
    let iface = match (&opts.iface, opts.public_ip) {
        (Some(i), _) => i.clone(),
        (None, Some(ip)) => match netdev::iface_with_ipv4(ip) {
            Ok(Some(i)) => i,
            // A public IP not on any interface (behind NAT): use the default route's.
            _ => default_iface()?,
        },
        (None, None) => default_iface()?,
    };
    let public_ip = match opts.public_ip {
        Some(ip) => ip,
        None => netdev::ipv4_addrs(&iface)
            .map_err(|e| Error::setup(format!("reading the addresses of {iface}"), e))?
            .first()
            .map(|(a, _)| *a)
            .ok_or_else(|| {
                Error::invalid(
                    "--iface",
                    &iface,
                    "an interface with an IPv4 address, or give --public-ip",
                )
            })?,
    };
    let mtu =
        netdev::mtu(&iface).map_err(|e| Error::setup(format!("reading the MTU of {iface}"), e))?;
    Ok(Underlay {
        iface,
        public_ip,
        mtu,
    })
}

fn default_iface() -> Result<String> {
    netdev::default_route_iface()
        .map_err(|e| Error::setup("reading the routing table", e))?
        .ok_or_else(|| {
            Error::invalid(
                "--iface",
                "(none)",
                "an underlay interface: there is no default route, so give --iface or --public-ip",
            )
        })
}

/// The tunnel and port of a tunnel backend; host-gw has none.
fn tunnel_of(backend: &Backend) -> Result<(Tunnel, u16, u32)> {
    match *backend {
        Backend::Udp { port, .. } => Ok((Tunnel::Udp, port, 0)),
        Backend::Vxlan { vni, port, .. } => Ok((Tunnel::Vxlan, port, vni)),
        Backend::HostGw => Err(Error::invalid(
            "Backend.Type",
            "host-gw",
            "udp or vxlan: host-gw has no tunnel (run dispatches it to run_host_gw)",
        )),
    }
}

fn network_v4(config: &NetworkConfig) -> Result<Ipv4Net> {
    config.ipv4.as_ref().map(|c| c.network).ok_or_else(|| {
        Error::invalid(
            "EnableIPv4",
            "false",
            "true: ringlay's data path needs an IPv4 network",
        )
    })
}

/// The host's TUN device, configured. Dropping its queues removes it.
fn setup_tun(
    opts: &Options,
    queues: usize,
    mtu: u32,
    gateway: Ipv4Addr,
    network: Ipv4Net,
    local: &LocalLease,
    config: &NetworkConfig,
) -> Result<tun::Tun> {
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
    let name = device.name().to_owned();
    netdev::set_mtu(&name, mtu)
        .map_err(|e| Error::setup(format!("setting MTU {mtu} on {name}"), e))?;
    netdev::set_ipv4(&name, gateway, network.prefix_len()).map_err(|e| {
        Error::setup(
            format!("adding {gateway}/{} to {name}", network.prefix_len()),
            e,
        )
    })?;
    if let (Some(v6), Some(cfg6)) = (local.key.v6, config.ipv6.as_ref()) {
        netdev::add_ipv6(&name, v6.network(), cfg6.network.prefix_len()).map_err(|e| {
            Error::setup(
                format!(
                    "adding {}/{} to {name}",
                    v6.network(),
                    cfg6.network.prefix_len()
                ),
                e,
            )
        })?;
    }
    // ICMP errors the workers write back come from this device's own address;
    // without accept_local the kernel drops them as martians.
    write_sysctl(&format!("net/ipv4/conf/{name}/accept_local"), "1")?;
    // No IPv6 link-local address: the kernel would otherwise send router and
    // multicast-listener solicitations into the tunnel.
    let _ = write_sysctl(&format!("net/ipv6/conf/{name}/addr_gen_mode"), "1");
    netdev::set_up(&name).map_err(|e| Error::setup(format!("bringing {name} up"), e))?;
    Ok(device)
}

/// Switches on the offloads the kernel has, of those asked for, and says which
/// are in use: TUN segmentation offload (with UDP segmentation where the kernel
/// has it), UDP GSO for sends, UDP GRO on the receive sockets.
fn setup_offload(asked: Offload, device: &tun::Tun, sockets: &[(UdpSocket, UdpSocket)]) -> Offload {
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
/// own receiving worker.
fn bind_sockets(port: u16, n: usize) -> Result<Vec<(UdpSocket, UdpSocket)>> {
    let group = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    let any = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let rx = socket::udp_socket(group, true, SOCKET_BUFFER)
            .map_err(|e| Error::setup(format!("binding UDP port {port}"), e))?;
        let mut tx = None;
        // Ephemeral ports are random: a few tries find one of the right residue.
        for _ in 0..64 {
            let s = socket::udp_socket(any, false, SOCKET_BUFFER)
                .map_err(|e| Error::setup("binding a sending socket", e))?;
            let p = s.local_addr().map(|a| a.port()).unwrap_or(0);
            let fits = usize::from(p) % n == k;
            if fits || tx.is_none() {
                tx = Some(s);
            }
            if fits {
                break;
            }
        }
        let tx = tx.ok_or_else(|| {
            Error::setup("binding a sending socket", std::io::Error::other("no port"))
        })?;
        out.push((rx, tx));
    }
    if n > 1 {
        socket::attach_reuseport_port_steering(&out[0].0, n as u32)
            .map_err(|e| Error::setup("attaching the receive steering program", e))?;
    }
    Ok(out)
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: Options) -> Result<()> {
    if !caps::has_cap_net_admin() {
        return Err(Error::Privilege(
            "ringlay run needs CAP_NET_ADMIN to create its TUN device and routes: run it as \
             root (or grant the capability, e.g. AmbientCapabilities=CAP_NET_ADMIN)"
                .into(),
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // No idle blocking threads: one started before the capabilities are
        // dropped would keep them (see `privilege`).
        .thread_keep_alive(Duration::ZERO)
        .build()
        .map_err(|e| Error::setup("starting the control runtime", e))?;
    // Serving from the start, so that /readyz answers 503 while we set up; dropped
    // last, after everything else is torn down.
    let state = ops::State::new();
    let _endpoints = ops::http::Server::start(&opts.endpoints, Arc::clone(&state))?;
    let (config, peers, local, under, source) = match &opts.source {
        Source::Static(path) => {
            let leases = StaticLeases::load(path)?;
            let under = underlay(&opts)?;
            let local = control::find_local(&leases.leases, under.public_ip)?;
            let peers = leases.leases.clone();
            let config = leases.config;
            (
                config,
                peers,
                local,
                under,
                Running::Static(path.clone(), leases),
            )
        }
        Source::Etcd(settings) => {
            let under = underlay(&opts)?;
            let (config, follower, view) =
                runtime.block_on(etcd_start(&opts, settings, under.public_ip))?;
            let held = *follower.held().expect("a running node holds a lease");
            state.set_follow(follower.stats());
            let local = LocalLease {
                key: held.key,
                public_ip: under.public_ip,
                vtep_mac: held.vtep_mac(),
                vtep_mac_derived: false,
            };
            let peers = view.borrow().leases.to_vec();
            (
                config,
                peers,
                local,
                under,
                Running::Etcd(Box::new(follower), view),
            )
        }
    };
    let lease_info = |tun: Option<String>| LeaseInfo {
        subnet: ops::subnets(&local.key),
        public_ip: under.public_ip,
        vtep_mac: matches!(config.backend, Backend::Vxlan { .. })
            .then(|| local.vtep_mac.to_string()),
        backend: config.backend.backend_type().as_str().to_owned(),
        tun,
    };
    if config.backend == Backend::HostGw {
        state.set_lease(lease_info(None));
        return run_host_gw(
            &opts, &runtime, &config, &peers, &local, &under, source, &state,
        );
    }
    let features = Features::probe().map_err(|e| Error::setup("probing io_uring", e))?;
    if let Some(what) = features.missing() {
        return Err(Error::setup(
            "probing io_uring",
            std::io::Error::other(format!("this kernel lacks {what}")),
        ));
    }
    tracing::info!(
        buffer_ring = features.buf_ring,
        cancel_any = features.cancel_any,
        "io_uring: socket receives by {}",
        if features.buf_ring {
            "multishot recvmsg into a provided buffer ring"
        } else {
            "single-shot recvmsg (no buffer rings before Linux 5.19)"
        }
    );
    if config.backend_defaulted {
        tracing::info!("the network config names no Backend: using udp, as flannel does");
    }
    let (tunnel, port, vni) = tunnel_of(&config.backend)?;
    let network = network_v4(&config)?;
    let subnet = local.key.v4.ok_or_else(|| {
        Error::invalid(
            "subnets",
            local.key,
            "a lease with an IPv4 subnet for this host",
        )
    })?;
    if local.vtep_mac_derived && tunnel == Tunnel::Vxlan {
        tracing::info!(vtep_mac = %local.vtep_mac, "our lease has no VtepMAC: derived one from {}", under.public_ip);
    }
    let mtu = control::tunnel_mtu(&config.backend, under.mtu);
    let cpus =
        cpu::allowed_cpus().map_err(|e| Error::setup("reading this process's CPU set", e))?;
    let queues = opts.queues.unwrap_or(cpus.len().max(1));
    let gateway = subnet.network();

    let device = setup_tun(&opts, queues, mtu, gateway, network, &local, &config)?;
    let queues = device.queues().len();
    let table = Table::new();
    table.publish(control::build_snapshot(&config, &peers, &local.key));
    state.set_table(&table);
    let sockets = bind_sockets(port, queues)?;
    let offload = setup_offload(opts.offload, &device, &sockets);
    tracing::info!(asked = %opts.offload, in_use = %offload, "offloads");
    let settings = WorkerConfig {
        tunnel,
        port,
        local: Local {
            subnets: local.key,
            vni,
            vtep_mac: local.vtep_mac,
        },
        gateway,
        multishot: features.buf_ring,
        offload,
    };
    let tun_name = device.name().to_owned();
    state.set_lease(lease_info(Some(tun_name.clone())));
    let io = device
        .into_queues()
        .into_iter()
        .zip(sockets)
        .enumerate()
        .map(|(k, (tun, (rx, tx)))| WorkerIo {
            tun,
            rx,
            tx,
            cpu: if opts.pin_workers {
                cpus.get(k).copied()
            } else {
                None
            },
        })
        .collect();
    let dataplane = Dataplane::start(io, settings, &table)
        .map_err(|e| Error::setup("starting the workers", e))?;
    state.set_dataplane(dataplane.stats(), offload);
    // After the table holds every peer: a direct route's peer is always in it.
    let mut routes = match direct_routes(&config, &under, &local, &peers) {
        Ok(r) => r,
        Err(e) => {
            let _ = dataplane.stop();
            return Err(e);
        }
    };

    let masq = opts
        .ip_masq
        .then(|| IpMasq::install(network, subnet))
        .transpose();
    let env = control::subnet_env::render(&config, &local.key, mtu, opts.ip_masq);
    let needs = privilege::needs(
        routes
            .is_some()
            .then_some("direct routes are managed (DirectRouting)"),
        opts.ip_masq,
    );
    let masq = match masq
        .and_then(|m| control::subnet_env::write_or_keep(&opts.subnet_file, &env).map(|()| m))
        .and_then(|m| privilege::drop_after_setup(&needs).map(|_| m))
    {
        Ok(m) => m,
        Err(e) => {
            if let Some(r) = &mut routes {
                r.remove_all("start-up failed");
            }
            let _ = dataplane.stop();
            return Err(e);
        }
    };
    state.set_ready(true);
    tracing::info!(
        tun = %tun_name, subnet = %subnet, public_ip = %under.public_ip, iface = %under.iface,
        mtu, backend = config.backend.backend_type().as_str(), port, workers = queues,
        peers = peers.len().saturating_sub(1),
        "ready: forwarding"
    );

    let result = match source {
        Running::Static(path, leases) => runtime.block_on(control_loop(
            &path,
            leases,
            &local,
            &table,
            Some(&dataplane),
            routes.as_mut(),
        )),
        Running::Etcd(follower, view) => runtime.block_on(etcd_loop(
            *follower,
            view,
            &config,
            &local,
            &table,
            Some(&dataplane),
            routes.as_mut(),
        )),
    };

    state.set_ready(false);
    drop(masq);
    if let Some(r) = &mut routes {
        // Before the TUN goes: until then their traffic falls back to the tunnel.
        let n = r.remove_all("stop");
        tracing::info!(
            "final route counters: {}; removed {n} direct routes",
            r.stats()
        );
    }
    let report = Report(dataplane.stats()).to_string();
    for (i, e) in dataplane.stop() {
        tracing::error!(worker = i, "worker failed: {e}");
    }
    for line in report.lines() {
        tracing::info!("final counters: {line}");
    }
    tracing::info!(tun = %tun_name, "stopped; {tun_name} and its route are removed");
    result
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

/// `ringlay run` for the host-gw backend: no tunnel, no workers; a kernel route
/// per peer, kept in line with the leases (file or etcd) until SIGTERM or
/// SIGINT, then removed.
#[allow(clippy::too_many_arguments)]
fn run_host_gw(
    opts: &Options,
    runtime: &tokio::runtime::Runtime,
    config: &NetworkConfig,
    peers: &[Lease],
    local: &LocalLease,
    under: &Underlay,
    source: Running,
    state: &ops::State,
) -> Result<()> {
    let mut routes = RouteSync::new(Mode::HostGw, &under.iface, local.key, config)?;
    routes.sync(peers, "start");
    // host-gw's overlay MTU is the underlay's: nothing is added to a packet.
    let mtu = control::tunnel_mtu(&config.backend, under.mtu);
    let masq = match (opts.ip_masq, config.ipv4.as_ref(), local.key.v4) {
        (true, Some(c), Some(subnet)) => Some(IpMasq::install(c.network, subnet)),
        (true, ..) => {
            tracing::warn!("--ip-masq: no IPv4 network or lease; nothing to masquerade");
            None
        }
        (false, ..) => None,
    }
    .transpose();
    let env = control::subnet_env::render(config, &local.key, mtu, opts.ip_masq);
    let needs = privilege::needs(
        Some("routes are managed (host-gw)"),
        matches!(masq, Ok(Some(_))),
    );
    let masq = match masq
        .and_then(|m| control::subnet_env::write_or_keep(&opts.subnet_file, &env).map(|()| m))
        .and_then(|m| privilege::drop_after_setup(&needs).map(|_| m))
    {
        Ok(m) => m,
        Err(e) => {
            routes.remove_all("start-up failed");
            return Err(e);
        }
    };
    state.set_ready(true);
    let stats = routes.stats();
    tracing::info!(
        subnet = %local.key, public_ip = %under.public_ip, iface = %under.iface, mtu,
        backend = "host-gw", routes = stats.routes, unreachable = stats.unreachable,
        peers = peers.iter().filter(|l| l.key != local.key).count(),
        "ready: routing (host-gw, route protocol {})", control::routes::ROUTE_PROTOCOL
    );
    // No workers read this table; reloads keep it current for the endpoints.
    let table = Table::new();
    table.publish(control::build_snapshot(config, peers, &local.key));
    state.set_table(&table);
    let result = match source {
        Running::Static(path, leases) => runtime.block_on(control_loop(
            &path,
            leases,
            local,
            &table,
            None,
            Some(&mut routes),
        )),
        Running::Etcd(follower, view) => runtime.block_on(etcd_loop(
            *follower,
            view,
            config,
            local,
            &table,
            None,
            Some(&mut routes),
        )),
    };
    state.set_ready(false);
    drop(masq);
    let n = routes.remove_all("stop");
    tracing::info!("final route counters: {}", routes.stats());
    tracing::info!("stopped; removed {n} host-gw routes");
    result
}

/// The lease source the control loop follows.
enum Running {
    Static(PathBuf, StaticLeases),
    Etcd(Box<Follower>, tokio::sync::watch::Receiver<View>),
}

/// With etcd: waits for the network config, acquires our lease and lists the others.
async fn etcd_start(
    opts: &Options,
    settings: &etcd::Settings,
    public_ip: Ipv4Addr,
) -> Result<(NetworkConfig, Follower, tokio::sync::watch::Receiver<View>)> {
    let margin = etcd::timing::check_margin(settings.renew_margin)?;
    let mut registry = etcd::Registry::connect(settings).await?;
    let config = etcd::wait_config(&mut registry).await?;
    // Refuse what the data path cannot run before writing a lease for it.
    if config.backend != Backend::HostGw {
        tunnel_of(&config.backend)?;
        network_v4(&config)?;
    }
    let previous = control::subnet_env::read_subnets(&opts.subnet_file);
    let held = registry
        .acquire(
            &config,
            public_ip,
            previous,
            &mut etcd::alloc::Rng::from_entropy(),
        )
        .await?;
    let how = match held.how {
        etcd::Acquired::Reused => "kept the lease etcd already had for our public IP",
        etcd::Acquired::Previous => "took back the subnet subnet.env recorded",
        etcd::Acquired::New => "acquired a free subnet",
    };
    tracing::info!(
        lease = %held.key, public_ip = %public_ip, vtep_mac = %held.vtep_mac(),
        etcd = registry.endpoints(), "{how}"
    );
    let (follower, view) = Follower::start(registry, config, Some(held), margin).await?;
    Ok((config, follower, view))
}

/// Publishes a table for a view of the leases.
fn publish_view(
    config: &NetworkConfig,
    leases: &[Lease],
    local: &LocalLease,
    table: &Table,
) -> u64 {
    let generation = table.publish(control::build_snapshot(config, leases, &local.key));
    tracing::info!(
        generation,
        peers = leases.iter().filter(|l| l.key != local.key).count(),
        reason = "etcd watch",
        "published a new table"
    );
    generation
}

/// The control loop with etcd: the follower task hands over lease sets, each
/// becomes a table; signals as in [`control_loop`].
async fn etcd_loop(
    follower: Follower,
    mut view: tokio::sync::watch::Receiver<View>,
    config: &NetworkConfig,
    local: &LocalLease,
    table: &Table,
    dataplane: Option<&Dataplane>,
    mut routes: Option<&mut RouteSync>,
) -> Result<()> {
    let (mut hup, mut usr1, mut term, mut int) = signals()?;
    let mut leases = view.borrow().leases.to_vec();
    let mut reconcile = reconcile_interval();
    let mut task = tokio::spawn(follower.run());
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    let ended = |r: std::result::Result<Result<()>, tokio::task::JoinError>| match r {
        Ok(r) => r,
        Err(e) => Err(Error::setup(
            "following etcd",
            std::io::Error::other(e.to_string()),
        )),
    };
    let result = loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break Ok(()); }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break Ok(()); }
            _ = usr1.recv() => log_counters(dataplane, routes.as_deref()),
            _ = hup.recv() => {
                tracing::info!("SIGHUP: the leases come from etcd's watch; nothing to re-read");
            }
            changed = view.changed() => {
                if changed.is_err() {
                    break ended((&mut task).await);
                }
                leases = view.borrow_and_update().leases.to_vec();
                if let Some(r) = routes.as_deref_mut() {
                    // Routes ⊆ table: dropped peers' routes go before their entries.
                    r.withdraw(&leases, "etcd");
                }
                publish_view(config, &leases, local, table);
                if let Some(r) = routes.as_deref_mut() {
                    r.sync(&leases, "etcd");
                }
            }
            _ = reconcile.tick() => {
                if let Some(r) = routes.as_deref_mut() {
                    r.sync(&leases, "reconcile");
                }
            }
            r = &mut task => break ended(r),
            _ = tick.tick() => {
                if let Some(i) = dataplane.and_then(Dataplane::exited) {
                    break Err(Error::setup(format!("worker {i}"), std::io::Error::other("exited unexpectedly")));
                }
            }
        }
    };
    task.abort();
    result
}

/// The signals both control loops answer: SIGHUP, SIGUSR1, SIGTERM, SIGINT.
fn signals() -> Result<(Signal, Signal, Signal, Signal)> {
    let sig = |k: SignalKind| signal(k).map_err(|e| Error::setup("installing signal handlers", e));
    Ok((
        sig(SignalKind::hangup())?,
        sig(SignalKind::user_defined1())?,
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
    ))
}

/// The route reconcile timer: first tick one interval from now.
fn reconcile_interval() -> tokio::time::Interval {
    tokio::time::interval_at(
        tokio::time::Instant::now() + RECONCILE_INTERVAL,
        RECONCILE_INTERVAL,
    )
}

/// SIGUSR1: logs every worker's counters and the route counters.
fn log_counters(dataplane: Option<&Dataplane>, routes: Option<&RouteSync>) {
    if let Some(d) = dataplane {
        for line in Report(d.stats()).to_string().lines() {
            tracing::info!("counters: {line}");
        }
    }
    if let Some(r) = routes {
        tracing::info!("route counters: {}", r.stats());
    }
}

/// Reloads the leases file; on success publishes the new table and returns the
/// new leases, on failure logs why and keeps the old.
fn reload(
    path: &std::path::Path,
    current: &StaticLeases,
    local: &LocalLease,
    table: &Table,
    routes: Option<&mut RouteSync>,
    why: &str,
) -> Option<StaticLeases> {
    let new = match StaticLeases::load(path) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!("{why}: the leases file was refused, keeping the previous table: {e}");
            return None;
        }
    };
    if new.config != current.config {
        tracing::error!(
            "{why}: the network config changed; that requires a restart, keeping the previous table"
        );
        return None;
    }
    match control::find_local(&new.leases, local.public_ip) {
        Ok(l) if l.key == local.key && l.vtep_mac == local.vtep_mac => {}
        Ok(l) => {
            tracing::error!(
                "{why}: our lease changed ({} → {}); that requires a restart, keeping the previous table",
                local.key,
                l.key
            );
            return None;
        }
        Err(e) => {
            tracing::error!("{why}: keeping the previous table: {e}");
            return None;
        }
    }
    let d = control::diff(&current.leases, &new.leases);
    if d.is_empty() {
        tracing::info!("{why}: leases unchanged");
        return Some(new);
    }
    for k in &d.added {
        tracing::info!(lease = %k, "{why}: lease added");
    }
    for k in &d.removed {
        tracing::info!(lease = %k, "{why}: lease removed");
    }
    for k in &d.changed {
        tracing::info!(lease = %k, "{why}: lease changed");
    }
    if let Some(r) = routes {
        // Routes ⊆ table: the dropped peers' routes go before their table entries.
        r.withdraw(&new.leases, why);
    }
    let generation = table.publish(control::build_snapshot(
        &new.config,
        &new.leases,
        &local.key,
    ));
    tracing::info!(
        generation,
        peers = new.leases.len().saturating_sub(1),
        reason = why,
        "published a new table"
    );
    Some(new)
}

async fn control_loop(
    path: &std::path::Path,
    mut leases: StaticLeases,
    local: &LocalLease,
    table: &Table,
    dataplane: Option<&Dataplane>,
    mut routes: Option<&mut RouteSync>,
) -> Result<()> {
    let (mut hup, mut usr1, mut term, mut int) = signals()?;
    let mut stamp = FileStamp::of(path).ok();
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    let mut reconcile = reconcile_interval();
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); return Ok(()); }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); return Ok(()); }
            _ = usr1.recv() => log_counters(dataplane, routes.as_deref()),
            _ = hup.recv() => {
                stamp = FileStamp::of(path).ok();
                if let Some(n) = reload(path, &leases, local, table, routes.as_deref_mut(), "SIGHUP") {
                    leases = n;
                    if let Some(r) = routes.as_deref_mut() {
                        r.sync(&leases.leases, "SIGHUP");
                    }
                }
            }
            _ = reconcile.tick() => {
                if let Some(r) = routes.as_deref_mut() {
                    r.sync(&leases.leases, "reconcile");
                }
            }
            _ = tick.tick() => {
                if let Some(i) = dataplane.and_then(Dataplane::exited) {
                    return Err(Error::setup(format!("worker {i}"), std::io::Error::other("exited unexpectedly")));
                }
                let now = FileStamp::of(path).ok();
                let edited = match (&stamp, &now) {
                    (Some(a), Some(b)) => a.changed(b),
                    (None, Some(_)) => true,
                    _ => false,
                };
                if edited {
                    stamp = now;
                    if let Some(n) = reload(path, &leases, local, table, routes.as_deref_mut(), "leases file edited") {
                        leases = n;
                        if let Some(r) = routes.as_deref_mut() {
                            r.sync(&leases.leases, "leases file edited");
                        }
                    }
                }
            }
        }
    }
}
